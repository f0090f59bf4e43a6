//! A court's legal vocabulary: versioned configuration (`device-profiles/vocabulary/*.toml`)
//! turned into whisper's initial prompt.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::TranscribeError;

/// A vocabulary file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocabulary {
    /// Version named on every transcript line made with it.
    pub version: String,
    /// A sentence per language that sets the register (and, for `zh`, the script).
    #[serde(default)]
    pub prompt: BTreeMap<String, String>,
    /// Terms per language.
    #[serde(default)]
    pub terms: BTreeMap<String, Vec<String>>,
}

impl Vocabulary {
    /// Reads and checks a vocabulary file.
    pub fn load(path: &Path) -> Result<Self, TranscribeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TranscribeError::Vocabulary(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
            .map_err(|e| TranscribeError::Vocabulary(format!("{}: {e}", path.display())))
    }

    /// Parses and checks vocabulary TOML.
    pub fn parse(text: &str) -> Result<Self, String> {
        let v: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        if v.version.trim().is_empty() {
            return Err("version: empty".into());
        }
        for lang in v.prompt.keys().chain(v.terms.keys()) {
            if !matches!(lang.as_str(), "en" | "zh") {
                return Err(format!("language {lang:?}: only en and zh are transcribed"));
            }
        }
        Ok(v)
    }

    /// whisper's initial prompt for `language` (`auto`: none; the prompt's own language
    /// would bias detection).
    pub fn prompt(&self, language: &str) -> Option<String> {
        if language == "auto" {
            return None;
        }
        let mut p = self.prompt.get(language).cloned().unwrap_or_default();
        if let Some(terms) = self.terms.get(language).filter(|t| !t.is_empty()) {
            let sep = if language == "zh" { "、" } else { ", " };
            if !p.is_empty() {
                p.push(' ');
            }
            p.push_str(&terms.join(sep));
            p.push_str(if language == "zh" { "。" } else { "." });
        }
        (!p.is_empty()).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_vocabulary_parses_and_prompts_in_each_language() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../device-profiles/vocabulary/court-legal.toml");
        let v = Vocabulary::load(&path).expect("vocabulary");
        assert!(v.version.starts_with("court-legal-"));
        let zh = v.prompt("zh").expect("zh prompt");
        assert!(zh.contains("简体中文") && zh.contains("诉讼请求"), "{zh}");
        assert!(v.prompt("en").expect("en prompt").contains("objection"));
        assert_eq!(v.prompt("auto"), None);
    }

    #[test]
    fn a_vocabulary_without_version_or_with_an_unknown_language_is_refused_with_the_key() {
        assert!(
            Vocabulary::parse("[prompt]\nen = \"x\"")
                .unwrap_err()
                .contains("version")
        );
        let e = Vocabulary::parse("version = \"1\"\n[terms]\nfr = [\"juge\"]").unwrap_err();
        assert!(e.contains("\"fr\""), "{e}");
    }
}
