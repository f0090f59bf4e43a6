//! The device's signing key: ed25519, generated on first start and kept in the data folder
//! with mode 0600.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::EvidenceError;

/// The device's signing key.
pub struct DeviceKey {
    key: SigningKey,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Design: never print the secret half.
        f.debug_struct("DeviceKey")
            .field("public", &self.public_hex())
            .finish()
    }
}

impl DeviceKey {
    /// Loads the key at `path` (32 secret bytes, hex), or creates it there with mode 0600
    /// when the file does not exist. Refuses a key file others can read.
    pub fn load_or_create(path: &Path) -> Result<Self, EvidenceError> {
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(EvidenceError::KeyPermissions {
                        path: path.display().to_string(),
                        mode,
                    });
                }
                let text = std::fs::read_to_string(path).map_err(|e| EvidenceError::io(path, e))?;
                let bad = |message: String| EvidenceError::Format {
                    path: path.display().to_string(),
                    what: "device key",
                    message,
                };
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .map_err(|e| bad(e.to_string()))?
                    .try_into()
                    .map_err(|_| bad("expected 32 bytes".into()))?;
                Ok(Self {
                    key: SigningKey::from_bytes(&bytes),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::getrandom(&mut secret)
                    .map_err(|e| EvidenceError::io(path, std::io::Error::other(e.to_string())))?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| EvidenceError::io(path, e))?;
                file.write_all(hex::encode(secret).as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| EvidenceError::io(path, e))?;
                Ok(Self {
                    key: SigningKey::from_bytes(&secret),
                })
            }
            Err(e) => Err(EvidenceError::io(path, e)),
        }
    }

    /// A key from 32 secret bytes (tests).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The public half.
    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public half, lowercase hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.public().as_bytes())
    }

    /// Signs `message`; the signature as lowercase hex.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }
}

/// Parses a public key from hex.
pub fn public_from_hex(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Whether `signature_hex` is `key`'s signature of `message`.
pub fn verify_hex(key: &VerifyingKey, message: &[u8], signature_hex: &str) -> bool {
    let Some(bytes) = hex::decode(signature_hex.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_with_owner_only_permissions_and_loaded_after() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("device.key");
        let first = DeviceKey::load_or_create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = DeviceKey::load_or_create(&path).expect("load");
        assert_eq!(first.public_hex(), again.public_hex());
        let sig = again.sign_hex(b"manifest");
        assert!(verify_hex(&first.public(), b"manifest", &sig));
        assert!(!verify_hex(&first.public(), b"manifesT", &sig));
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("device.key");
        DeviceKey::load_or_create(&path).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = DeviceKey::load_or_create(&path).expect_err("refused");
        assert!(matches!(
            err,
            EvidenceError::KeyPermissions { mode: 0o644, .. }
        ));
    }
}
