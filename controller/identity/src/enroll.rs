//! One-time enrollment tokens: what a technician gives a new device so it can ask for its
//! certificate. Only the token's SHA-256 is stored; the token itself is shown once.

use sha2::{Digest, Sha256};

/// A token as shown to the technician: `gvl-` and 32 lowercase hex digits (128 random bits).
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(format!("gvl-{}", hex::encode(bytes)))
}

/// What is stored and looked up: the SHA-256 of the token text (trimmed), lowercase hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Where an enrolled device belongs, written into its configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub court: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Device profile (`courtroom-terminal`, `ip-camera`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed_the_same_whatever_the_surrounding_space() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert_ne!(a, b);
        assert!(a.starts_with("gvl-") && a.len() == 36, "{a}");
        assert_eq!(token_hash(&a), token_hash(&format!(" {a}\n")));
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
