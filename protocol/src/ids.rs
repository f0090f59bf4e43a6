//! Validated identifiers that appear in topics and messages.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest device id accepted anywhere.
pub const MAX_ID_LEN: usize = 64;

/// A device id: 1-64 characters of `a-z 0-9 - _ .`, starting with a letter or digit.
///
/// Design: the id is a topic level and a broker ACL user name, so it must never contain
/// `/`, `+`, `#` or upper case (Mosquitto ACLs are case-sensitive; ids are not).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        validate(&id)?;
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceId::new(s)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DeviceId::new(s).map_err(serde::de::Error::custom)
    }
}

fn validate(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: id.len() });
    }
    let first = id.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(IdError::BadStart(crate::topic::clip(id)));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::BadChar {
            id: crate::topic::clip(id),
            ch: c,
        });
    }
    Ok(())
}

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong { len: usize },
    #[error("id {0:?} must start with a lower-case letter or a digit")]
    BadStart(String),
    #[error("id {id:?} contains {ch:?}; only a-z, 0-9, '-', '_' and '.' are allowed")]
    BadChar { id: String, ch: char },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_a_topic_level_are_refused() {
        for bad in [
            "",
            "a/b",
            "a+b",
            "a#",
            "Room1",
            "-x",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "room-101.cam_2", "0abc"] {
            assert!(DeviceId::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn deserializing_an_invalid_id_fails() {
        let r: Result<DeviceId, _> = serde_json::from_str("\"a/b\"");
        assert!(r.is_err());
    }
}
