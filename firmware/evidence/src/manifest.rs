//! The signed hearing manifest: `manifest.json` (the exact bytes that are signed) and
//! `manifest.sig` next to it in the hearing folder.
//!
//! Design: the signature covers the file's bytes as written, not a re-serialisation, so a
//! verifier needs no canonical JSON. The manifest is rewritten (to a temporary file, then
//! renamed) after every closed segment, so a crash leaves the last complete one.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{DeviceKey, EvidenceError, SegmentEntry};

/// Manifest file name in a hearing folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Signature file name in a hearing folder.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// Format version written.
pub const FORMAT: u32 = 1;

/// A recorded source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSource {
    pub id: String,
    /// `rtsp`, `v4l2`, `alsa`, `test`.
    pub kind: String,
    /// Where it was read from, without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// A span in which a source recorded nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub source: String,
    /// Start on the hearing timeline (ns after the hearing started).
    pub from_ns: u64,
    /// End on the hearing timeline; absent while the gap is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ns: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub wall_from: OffsetDateTime,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub wall_to: Option<OffsetDateTime>,
    /// Why (connection lost, stalled, recorder crashed).
    pub reason: String,
}

/// Everything needed to check a hearing's recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub hearing_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Wall-clock start of the hearing's timeline.
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    /// Set when the recording was stopped cleanly.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended: Option<OffsetDateTime>,
    pub sources: Vec<ManifestSource>,
    /// Closed segments in chain order.
    pub segments: Vec<SegmentEntry>,
    pub gaps: Vec<Gap>,
    /// The last link of the chain (the genesis when there is no segment).
    pub chain_head: String,
}

/// Contents of `manifest.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Device public key, hex.
    pub public_key: String,
    /// Signature of the bytes of `manifest.json`, hex.
    pub signature: String,
}

impl Manifest {
    /// Writes `manifest.json` and `manifest.sig` into `dir`, each atomically and durably.
    /// Returns the SHA-256 of the manifest's bytes (lowercase hex), for the [`crate::Seal`].
    pub fn write_signed(&self, dir: &Path, key: &DeviceKey) -> Result<String, EvidenceError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| EvidenceError::Format {
            path: dir.display().to_string(),
            what: "manifest",
            message: e.to_string(),
        })?;
        let sig = Signature {
            algorithm: "ed25519".into(),
            public_key: key.public_hex(),
            signature: key.sign_hex(&bytes),
        };
        let sig_bytes = serde_json::to_vec_pretty(&sig).map_err(|e| EvidenceError::Format {
            path: dir.display().to_string(),
            what: "manifest signature",
            message: e.to_string(),
        })?;
        // Design: the manifest is renamed into place first; a crash between the two renames
        // leaves a manifest whose signature fails, which recovery rewrites at next start.
        write_atomic(&dir.join(MANIFEST_FILE), &bytes)?;
        write_atomic(&dir.join(SIGNATURE_FILE), &sig_bytes)?;
        use sha2::Digest;
        Ok(hex::encode(sha2::Sha256::digest(&bytes)))
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvidenceError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| EvidenceError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| EvidenceError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| EvidenceError::io(path, e))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
