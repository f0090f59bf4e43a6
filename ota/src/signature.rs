//! Signatures: ed25519 over the manifest's exact bytes (detached, stored in the bundle).
//!
//! Key files are text: `#` comment lines, then one line of hex (32 bytes). Signing keys
//! used by the test suite live in `ota/test-keys/` and are named `TEST-ONLY-*`; release
//! keys are never in the repository.

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Length of a signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// Why a key or signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The key file could not be read or does not hold a key.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// No trusted key verifies the signature.
    #[error("signature does not verify against any of the {trusted} trusted key(s)")]
    Invalid {
        /// How many keys were tried.
        trusted: usize,
    },
    /// The operating system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// A key pair for signing bundles.
pub struct Keypair {
    /// The secret half.
    pub signing: SigningKey,
}

impl Keypair {
    /// A new random key pair.
    pub fn generate() -> Result<Self, SignatureError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| SignatureError::Random(e.to_string()))?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The public half.
    pub fn verifying(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Writes the secret key (mode 0600) and the public key as text files.
    pub fn write(&self, secret: &Path, public: &Path, comment: &str) -> std::io::Result<()> {
        let sec = format!(
            "# {comment}\n# ed25519 signing key (secret)\n{}\n",
            hex::encode(self.signing.to_bytes())
        );
        fs::write(secret, sec)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(secret, fs::Permissions::from_mode(0o600))?;
        }
        fs::write(public, public_key_text(&self.verifying(), comment))
    }
}

/// The text form of a public key.
pub fn public_key_text(key: &VerifyingKey, comment: &str) -> String {
    format!(
        "# {comment}\n# ed25519 verifying key\n{}\n",
        hex::encode(key.to_bytes())
    )
}

fn read_key_bytes(path: &Path) -> Result<[u8; 32], SignatureError> {
    let err = |reason: String| SignatureError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| err("no key line (only comments)".into()))?;
    let bytes = hex::decode(line).map_err(|e| err(format!("not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| err(format!("{} bytes; an ed25519 key is 32", b.len())))
}

/// Reads a signing key file.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, SignatureError> {
    Ok(SigningKey::from_bytes(&read_key_bytes(path)?))
}

/// Reads a public key file.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, SignatureError> {
    VerifyingKey::from_bytes(&read_key_bytes(path)?).map_err(|e| SignatureError::KeyFile {
        path: path.to_owned(),
        reason: format!("not an ed25519 public key: {e}"),
    })
}

/// Signs manifest bytes.
pub fn sign(key: &SigningKey, manifest: &[u8]) -> [u8; SIGNATURE_LEN] {
    key.sign(manifest).to_bytes()
}

/// The public keys a device trusts (more than one during a key rotation).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<VerifyingKey>,
}

impl Keyring {
    /// A keyring holding these keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        Self { keys }
    }

    /// Reads every key file given.
    pub fn load(paths: &[PathBuf]) -> Result<Self, SignatureError> {
        Ok(Self::new(
            paths
                .iter()
                .map(|p| load_verifying_key(p))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Verifies a detached signature over `manifest`; returns the index of the key that
    /// verified it.
    pub fn verify(
        &self,
        manifest: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<usize, SignatureError> {
        let sig = Signature::from_bytes(signature);
        self.keys
            .iter()
            .position(|k| k.verify(manifest, &sig).is_ok())
            .ok_or(SignatureError::Invalid {
                trusted: self.keys.len(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_only_the_signed_bytes_and_only_with_a_trusted_key() {
        let kp = Keypair::generate().unwrap();
        let other = Keypair::generate().unwrap();
        let sig = sign(&kp.signing, b"manifest");
        let ring = Keyring::new(vec![other.verifying(), kp.verifying()]);
        assert_eq!(ring.verify(b"manifest", &sig).unwrap(), 1);
        assert!(ring.verify(b"manifesT", &sig).is_err());
        let untrusted = Keyring::new(vec![other.verifying()]);
        assert!(matches!(
            untrusted.verify(b"manifest", &sig),
            Err(SignatureError::Invalid { trusted: 1 })
        ));
    }

    #[test]
    fn key_files_round_trip_and_bad_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let kp = Keypair::generate().unwrap();
        let (s, p) = (dir.path().join("k.key"), dir.path().join("k.pub"));
        kp.write(&s, &p, "unit test").unwrap();
        assert_eq!(
            load_signing_key(&s).unwrap().to_bytes(),
            kp.signing.to_bytes()
        );
        assert_eq!(load_verifying_key(&p).unwrap(), kp.verifying());
        fs::write(&p, "# nothing\n").unwrap();
        let e = load_verifying_key(&p).unwrap_err().to_string();
        assert!(e.contains("k.pub") && e.contains("no key line"), "{e}");
    }
}
