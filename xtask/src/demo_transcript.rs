//! Live transcription in the demo: room-101's terminal transcribes its seat microphones
//! (English court sentences spoken by espeak-ng, played by the simulated audio host of
//! `demo::follow`) with whisper tiny.en on the device; the narration prints each final
//! line as the controller receives it, with its seat and its time on the recording, then
//! the proofreading page's address and a transcript search. Without the model
//! (`cargo xtask models`) the scene says so and the terminal runs without transcription.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::demo::say;
use crate::root;

/// The terminal that transcribes.
pub(crate) const TERMINAL: &str = "room-101-terminal";

/// The whisper model the demo's terminal runs: small enough for a busy 2-core machine.
const MODEL: &str = "tiny.en";

/// `GAVEL_MODELS_DIR` for the terminal, when the model is there.
pub(crate) fn models_dir() -> Option<PathBuf> {
    let dir = root().join("models/cache");
    dir.join(format!("whisper/ggml-{MODEL}.bin"))
        .is_file()
        .then_some(dir)
}

/// A copy of `device-profiles/` in `<dir>/profiles` whose courtroom terminal transcribes
/// English with tiny.en (the shipped profile runs Mandarin with base).
pub(crate) fn profiles(dir: &Path) -> Result<PathBuf, String> {
    let from = root().join("device-profiles");
    let to = dir.join("profiles");
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    for sub in ["", "vocabulary"] {
        std::fs::create_dir_all(to.join(sub)).map_err(|e| io(&to, e))?;
        for entry in std::fs::read_dir(from.join(sub)).map_err(|e| io(&from, e))? {
            let path = entry.map_err(|e| io(&from, e))?.path();
            if path.extension().is_some_and(|x| x == "toml") {
                let name = path.file_name().unwrap_or_default();
                std::fs::copy(&path, to.join(sub).join(name)).map_err(|e| io(&path, e))?;
            }
        }
    }
    let terminal = to.join("courtroom-terminal.toml");
    let text = std::fs::read_to_string(&terminal).map_err(|e| io(&terminal, e))?;
    let mut in_transcribe = false;
    let mut changed = 0;
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with('[') {
                in_transcribe = l.trim() == "[capabilities.transcribe]";
            }
            let key = l.split('=').next().unwrap_or("").trim();
            match (in_transcribe, key) {
                (true, "model") => {
                    changed += 1;
                    format!("model = \"whisper-{MODEL}\"")
                }
                (true, "language") => {
                    changed += 1;
                    "language = \"en\"".to_owned()
                }
                _ => l.to_owned(),
            }
        })
        .collect();
    if changed != 2 {
        return Err(format!(
            "{}: no [capabilities.transcribe] model and language to set",
            terminal.display()
        ));
    }
    std::fs::write(&terminal, edited.join("\n") + "\n").map_err(|e| io(&terminal, e))?;
    Ok(to)
}

/// Where the demo's transcript narration stands.
pub(crate) struct Scene {
    hearing: Option<String>,
    shown: BTreeSet<String>,
    pointed: bool,
    searched: bool,
    said_missing: bool,
}

impl Scene {
    pub(crate) fn new() -> Self {
        Self {
            hearing: None,
            shown: BTreeSet::new(),
            pointed: false,
            searched: false,
            said_missing: false,
        }
    }

    /// Whether the scene has what the demo's check asks for: a final line at the
    /// controller, where the model is there to transcribe.
    pub(crate) fn check(&self) -> Result<(), String> {
        if models_dir().is_some() && self.shown.is_empty() {
            return Err(format!(
                "no transcript line of room-101's hearing reached the controller (see {TERMINAL}.log)"
            ));
        }
        Ok(())
    }

    /// One look: `hearing` asks what room-101's terminal records now, `json` runs
    /// `gavelctl --json`, `gavelctl` runs it for people.
    pub(crate) fn tick(
        &mut self,
        t0: Instant,
        elapsed: Duration,
        url: &str,
        hearing: impl FnOnce() -> Option<String>,
        json: impl Fn(&[&str]) -> Result<Value, String>,
        gavelctl: impl Fn(&[&str]) -> Result<String, String>,
    ) {
        if models_dir().is_none() {
            if !self.said_missing {
                self.said_missing = true;
                say(
                    t0,
                    &format!(
                        "transcription is not shown: no models/cache/whisper/ggml-{MODEL}.bin (run `cargo xtask models`)"
                    ),
                );
            }
            return;
        }
        if self.hearing.is_none() {
            self.hearing = hearing();
        }
        let Some(h) = self.hearing.clone() else {
            return;
        };
        let Ok(t) = json(&["transcripts", "show", &h]) else {
            return;
        };
        let lines = t["lines"].as_array().cloned().unwrap_or_default();
        for l in lines.iter().filter(|l| l["final"] == true) {
            let id = l["id"].as_str().unwrap_or_default().to_owned();
            if !self.shown.insert(id) {
                continue;
            }
            let at = l["offset_ns"].as_u64().unwrap_or(0) / 1_000_000_000;
            say(
                t0,
                &format!(
                    "room-101 transcript ({} on the terminal): {:>9} at {:02}:{:02}  {}",
                    l["model"].as_str().unwrap_or("?"),
                    l["seat"].as_str().unwrap_or("?"),
                    at / 60,
                    at % 60,
                    l["text"].as_str().unwrap_or("").trim()
                ),
            );
        }
        if !self.pointed && self.shown.len() >= 2 {
            self.pointed = true;
            say(
                t0,
                &format!(
                    "clerk: proofread against the audio and sign off at {url}/hearings/{h}/transcript (exports: SRT, WebVTT, HTML, DOCX)"
                ),
            );
        }
        if !self.searched && self.shown.len() >= 3 && elapsed >= Duration::from_secs(20) {
            self.searched = true;
            match gavelctl(&["transcripts", "search", "court"]) {
                Ok(out) => say(
                    t0,
                    &format!(
                        "clerk: gavelctl transcripts search court -> {}",
                        out.lines().last().unwrap_or("").trim()
                    ),
                ),
                Err(e) => say(t0, &format!("transcript search failed: {e}")),
            }
        }
    }
}
