//! # gavel-evidence
//!
//! What makes a recording evidence: every closed segment's SHA-256 is linked into a hash
//! chain per hearing; each hearing's [`Manifest`] (sources, segments, gaps, hashes, chain
//! head) is signed with the device's ed25519 key; [`verify`] checks a hearing folder
//! against its manifest offline and names every segment that was changed, removed,
//! reordered or added.
//!
//! This crate does no media work and links no native library, so the technician CLI can
//! verify recordings without GStreamer.

pub mod chain;
pub mod key;
pub mod manifest;
pub mod seal;
pub mod verify;

pub use chain::{SegmentEntry, genesis, link};
pub use key::DeviceKey;
pub use manifest::{Gap, Manifest, ManifestSource, Signature};
pub use seal::Seal;
pub use verify::{Finding, Report};

/// Why an evidence operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid {what}: {message}")]
    Format {
        path: String,
        what: &'static str,
        message: String,
    },
    /// The device key file is readable by others than its owner.
    #[error("{path}: device key is readable by others (mode {mode:o}); expected 0600")]
    KeyPermissions { path: String, mode: u32 },
}

impl EvidenceError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// SHA-256 of a file, lowercase hex, read in 1 MiB blocks.
pub fn sha256_file(path: &std::path::Path) -> Result<(String, u64), EvidenceError> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| EvidenceError::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| EvidenceError::io(path, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), total))
}
