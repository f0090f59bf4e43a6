//! Offline verification of a hearing folder against its signed manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::chain::first_broken;
use crate::key::{public_from_hex, verify_hex};
use crate::manifest::{MANIFEST_FILE, SIGNATURE_FILE};
use crate::{EvidenceError, Manifest, Signature, sha256_file};

/// Something wrong with a hearing's files or manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The signature does not match the manifest's bytes.
    SignatureInvalid,
    /// The manifest is signed by another key than the one the caller trusts.
    UntrustedKey { key: String },
    /// The manifest's own chain does not link up from this segment on.
    ChainBroken { index: u64 },
    /// The segment's file is there but its content is not what was recorded.
    Changed { index: u64, file: String },
    /// The segment's file is missing.
    Removed { index: u64, file: String },
    /// The segment's file holds the content of another segment (files swapped or moved).
    Reordered {
        index: u64,
        file: String,
        holds: u64,
    },
    /// A file that no segment of the manifest names; `copy_of` when it holds a segment's
    /// content.
    Added { file: String, copy_of: Option<u64> },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::SignatureInvalid => write!(f, "manifest signature is invalid"),
            Finding::UntrustedKey { key } => {
                write!(f, "manifest is signed by an untrusted key {key}")
            }
            Finding::ChainBroken { index } => {
                write!(f, "hash chain of the manifest breaks at segment {index}")
            }
            Finding::Changed { index, file } => write!(f, "segment {index} ({file}) was changed"),
            Finding::Removed { index, file } => write!(f, "segment {index} ({file}) was removed"),
            Finding::Reordered { index, file, holds } => write!(
                f,
                "segment {index} ({file}) was reordered: it holds segment {holds}'s content"
            ),
            Finding::Added {
                file,
                copy_of: None,
            } => write!(f, "{file} was added"),
            Finding::Added {
                file,
                copy_of: Some(i),
            } => write!(f, "{file} was added (a copy of segment {i})"),
        }
    }
}

/// Result of verifying one hearing folder.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub hearing_id: String,
    pub segments: usize,
    pub sources: usize,
    pub gaps: usize,
    /// Public key that signed the manifest, hex.
    pub key: String,
    /// Whether the key was checked against one the caller trusts (else only against the
    /// key named in `manifest.sig`).
    pub key_pinned: bool,
    pub findings: Vec<Finding>,
}

impl Report {
    /// No findings.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Compares the manifest's segments with the files present (relative path -> SHA-256).
pub fn check_files(manifest: &Manifest, files: &BTreeMap<String, String>) -> Vec<Finding> {
    let mut by_hash: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &manifest.segments {
        by_hash.entry(s.sha256.as_str()).or_insert(s.index);
    }
    let named: BTreeSet<&str> = manifest.segments.iter().map(|s| s.file.as_str()).collect();
    let mut findings = Vec::new();
    for s in &manifest.segments {
        match files.get(&s.file) {
            None => findings.push(Finding::Removed {
                index: s.index,
                file: s.file.clone(),
            }),
            Some(h) if *h == s.sha256 => {}
            Some(h) => match by_hash.get(h.as_str()) {
                Some(&holds) => findings.push(Finding::Reordered {
                    index: s.index,
                    file: s.file.clone(),
                    holds,
                }),
                None => findings.push(Finding::Changed {
                    index: s.index,
                    file: s.file.clone(),
                }),
            },
        }
    }
    for (file, h) in files {
        if !named.contains(file.as_str()) {
            findings.push(Finding::Added {
                file: file.clone(),
                copy_of: by_hash.get(h.as_str()).copied(),
            });
        }
    }
    findings
}

/// Verifies the hearing folder `dir`: the signature of its manifest (against `trusted` when
/// given), the manifest's hash chain, and every file against its segment.
pub fn verify(dir: &Path, trusted: Option<&VerifyingKey>) -> Result<Report, EvidenceError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let sig_path = dir.join(SIGNATURE_FILE);
    let bytes = std::fs::read(&manifest_path).map_err(|e| EvidenceError::io(&manifest_path, e))?;
    let sig_bytes = std::fs::read(&sig_path).map_err(|e| EvidenceError::io(&sig_path, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| EvidenceError::Format {
        path: manifest_path.display().to_string(),
        what: "manifest",
        message: e.to_string(),
    })?;
    let sig: Signature = serde_json::from_slice(&sig_bytes).map_err(|e| EvidenceError::Format {
        path: sig_path.display().to_string(),
        what: "manifest signature",
        message: e.to_string(),
    })?;
    let mut findings = Vec::new();
    let named = public_from_hex(&sig.public_key);
    let key = match (trusted, named) {
        (Some(t), Some(n)) if t != &n => {
            findings.push(Finding::UntrustedKey {
                key: sig.public_key.clone(),
            });
            Some(*t)
        }
        (Some(t), _) => Some(*t),
        (None, n) => n,
    };
    if sig.algorithm != "ed25519" || !key.is_some_and(|k| verify_hex(&k, &bytes, &sig.signature)) {
        findings.push(Finding::SignatureInvalid);
    }
    if let Some(index) = first_broken(&manifest.hearing_id, &manifest.segments) {
        findings.push(Finding::ChainBroken { index });
    } else {
        let head = manifest
            .segments
            .last()
            .map(|s| s.chain.clone())
            .unwrap_or_else(|| crate::genesis(&manifest.hearing_id));
        if head != manifest.chain_head {
            findings.push(Finding::ChainBroken {
                index: manifest.segments.len() as u64,
            });
        }
    }
    let files = hash_files(dir)?;
    findings.extend(check_files(&manifest, &files));
    Ok(Report {
        hearing_id: manifest.hearing_id.clone(),
        segments: manifest.segments.len(),
        sources: manifest.sources.len(),
        gaps: manifest.gaps.len(),
        key: sig.public_key,
        key_pinned: trusted.is_some(),
        findings,
    })
}

/// Every media file under `dir` (the folder itself and one level of source folders),
/// relative path -> SHA-256; the manifest, its signature and temporary files excluded.
pub fn hash_files(dir: &Path) -> Result<BTreeMap<String, String>, EvidenceError> {
    let mut out = BTreeMap::new();
    let mut walk = vec![(dir.to_path_buf(), String::new(), 0)];
    while let Some((folder, prefix, depth)) = walk.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|e| EvidenceError::io(&folder, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| EvidenceError::io(&folder, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let rel = format!("{prefix}{name}");
            if path.is_dir() {
                if depth == 0 {
                    walk.push((path, format!("{rel}/"), depth + 1));
                }
                continue;
            }
            if depth == 0 && (name == MANIFEST_FILE || name == SIGNATURE_FILE) {
                continue;
            }
            if name.ends_with(".tmp") {
                continue;
            }
            out.insert(rel, sha256_file(&path)?.0);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceKey;
    use crate::chain::tests::chain;

    fn manifest(n: u64) -> Manifest {
        let segments = chain("h1", n);
        Manifest {
            format: crate::manifest::FORMAT,
            hearing_id: "h1".into(),
            device_id: Some("dev".into()),
            started: time::macros::datetime!(2026-11-27 09:30 UTC),
            ended: None,
            sources: vec![],
            chain_head: segments.last().map(|s| s.chain.clone()).unwrap_or_default(),
            segments,
            gaps: vec![],
        }
    }

    fn files(m: &Manifest) -> BTreeMap<String, String> {
        m.segments
            .iter()
            .map(|s| (s.file.clone(), s.sha256.clone()))
            .collect()
    }

    #[test]
    fn matching_files_give_no_finding() {
        let m = manifest(6);
        assert!(check_files(&m, &files(&m)).is_empty());
    }

    #[test]
    fn one_changed_one_removed_and_two_swapped_segments_are_each_named() {
        let m = manifest(8);
        let mut f = files(&m);
        f.insert(m.segments[1].file.clone(), "00".repeat(32));
        f.remove(&m.segments[3].file);
        let (a, b) = (m.segments[4].clone(), m.segments[6].clone());
        f.insert(a.file.clone(), b.sha256.clone());
        f.insert(b.file.clone(), a.sha256.clone());
        let found = check_files(&m, &f);
        assert_eq!(
            found,
            [
                Finding::Changed {
                    index: 1,
                    file: m.segments[1].file.clone()
                },
                Finding::Removed {
                    index: 3,
                    file: m.segments[3].file.clone()
                },
                Finding::Reordered {
                    index: 4,
                    file: a.file.clone(),
                    holds: 6
                },
                Finding::Reordered {
                    index: 6,
                    file: b.file.clone(),
                    holds: 4
                },
            ]
        );
    }

    #[test]
    fn an_added_file_is_named_and_a_copy_says_of_which_segment() {
        let m = manifest(2);
        let mut f = files(&m);
        f.insert("cam-a/99999.ts".into(), m.segments[0].sha256.clone());
        f.insert("cam-b/extra.ts".into(), "11".repeat(32));
        let found = check_files(&m, &f);
        assert_eq!(
            found,
            [
                Finding::Added {
                    file: "cam-a/99999.ts".into(),
                    copy_of: Some(0)
                },
                Finding::Added {
                    file: "cam-b/extra.ts".into(),
                    copy_of: None
                },
            ]
        );
    }

    #[test]
    fn a_signed_folder_verifies_and_an_edited_manifest_does_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = DeviceKey::from_secret([7; 32]);
        let mut m = manifest(0);
        std::fs::create_dir(dir.path().join("cam-a")).expect("mkdir");
        let (sha, bytes) = {
            let p = dir.path().join("cam-a/00000.ts");
            std::fs::write(&p, b"segment bytes").expect("write");
            sha256_file(&p).expect("hash")
        };
        let mut e = chain("h1", 1).remove(0);
        e.file = "cam-a/00000.ts".into();
        e.sha256 = sha;
        e.bytes = bytes;
        e.chain = crate::link(&crate::genesis("h1"), &e);
        m.chain_head = e.chain.clone();
        m.segments = vec![e];
        m.write_signed(dir.path(), &key).expect("write");

        let report = verify(dir.path(), Some(&key.public())).expect("verify");
        assert!(report.ok(), "{:?}", report.findings);
        assert!(report.key_pinned);

        let other = DeviceKey::from_secret([8; 32]);
        let report = verify(dir.path(), Some(&other.public())).expect("verify");
        assert!(report.findings.contains(&Finding::SignatureInvalid));

        let path = dir.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace("\"dev\"", "\"dew\"")).expect("edit");
        let report = verify(dir.path(), None).expect("verify");
        assert_eq!(report.findings, [Finding::SignatureInvalid]);
    }
}
