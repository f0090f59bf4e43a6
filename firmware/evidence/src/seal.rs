//! The seal: a device's signed statement, sent to the controller when a hearing's
//! recording is finished, of what the hearing's manifest holds.
//!
//! Design: the manifest itself stays on the device (it can hold thousands of segment
//! entries); the controller already has every segment's entry from the segment events, so
//! it recomputes the hash chain and only needs the device to sign its head. The seal text
//! is a fixed line format (like the chain's), so verifying never depends on a serializer.

use ed25519_dalek::VerifyingKey;

use crate::{DeviceKey, key};

/// What a device signs when a hearing's recording is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub hearing_id: String,
    /// Segments in the chain.
    pub segments: u64,
    /// The chain's last link (the genesis when there is no segment).
    pub chain_head: String,
    /// SHA-256 of the signed `manifest.json`, lowercase hex.
    pub manifest_sha256: String,
}

impl Seal {
    /// The signed text.
    pub fn canonical(&self) -> String {
        format!(
            "gavel-seal/1\nhearing_id={}\nsegments={}\nchain_head={}\nmanifest_sha256={}\n",
            self.hearing_id, self.segments, self.chain_head, self.manifest_sha256
        )
    }

    /// The device key's signature of the seal, lowercase hex.
    pub fn sign(&self, key: &DeviceKey) -> String {
        key.sign_hex(self.canonical().as_bytes())
    }

    /// Whether `signature_hex` is `public`'s signature of this seal.
    pub fn verify(&self, public: &VerifyingKey, signature_hex: &str) -> bool {
        key::verify_hex(public, self.canonical().as_bytes(), signature_hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal() -> Seal {
        Seal {
            hearing_id: "h-1".into(),
            segments: 12,
            chain_head: "ab".repeat(32),
            manifest_sha256: "cd".repeat(32),
        }
    }

    #[test]
    fn a_seal_verifies_with_its_key_only() {
        let key = DeviceKey::from_secret([7; 32]);
        let other = DeviceKey::from_secret([8; 32]);
        let sig = seal().sign(&key);
        assert!(seal().verify(&key.public(), &sig));
        assert!(!seal().verify(&other.public(), &sig));
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let key = DeviceKey::from_secret([7; 32]);
        let sig = seal().sign(&key);
        let mut s = seal();
        s.segments = 11;
        assert!(!s.verify(&key.public(), &sig));
        let mut s = seal();
        s.chain_head = "ac".repeat(32);
        assert!(!s.verify(&key.public(), &sig));
        let mut s = seal();
        s.hearing_id = "h-2".into();
        assert!(!s.verify(&key.public(), &sig));
        assert!(!seal().verify(&key.public(), "zz"));
    }
}
