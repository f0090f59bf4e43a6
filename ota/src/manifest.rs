//! The manifest: what a bundle contains and where it may be installed.
//!
//! The signature covers the manifest's exact bytes; the manifest holds the SHA-256 of the
//! payload, so one signature check plus one hash authenticates the whole bundle.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// A firmware version `MAJOR.MINOR.PATCH`, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Incompatible changes.
    pub major: u32,
    /// Features.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

impl Version {
    /// A version from its three parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version {0:?} is not MAJOR.MINOR.PATCH (three non-negative integers)")]
pub struct BadVersion(pub String);

impl FromStr for Version {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadVersion(s.to_owned());
        let mut parts = s.trim().split('.');
        let mut next = || -> Result<u32, BadVersion> {
            parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())
        };
        let v = Version::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The image that ends up in the slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// How the payload turns into the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The payload is the image.
    Full,
    /// The payload is a [`crate::delta`] against [`Manifest::delta_base`].
    Delta,
}

/// The bytes after the signature in the bundle file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadInfo {
    /// Full image or delta.
    pub encoding: Encoding,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// The image a delta applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaBase {
    /// Version of the base image.
    pub version: Version,
    /// SHA-256 of the base image: the active slot must hold exactly this.
    pub sha256: String,
    /// Size of the base image.
    pub size: u64,
}

/// What a bundle contains and where it may go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format, [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Version of the image.
    pub version: Version,
    /// Device profiles (`device-profiles/*.toml` names) this image runs on.
    pub compatible: Vec<String>,
    /// The device must already run at least this version (migrations in between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<Version>,
    /// The image written to the slot.
    pub image: ImageInfo,
    /// The payload carried by the bundle.
    pub payload: PayloadInfo,
    /// Set for delta bundles: the base the delta applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_base: Option<DeltaBase>,
    /// Free text for people (release notes title).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A manifest that parsed but says something impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not valid JSON/TOML for a manifest.
    #[error("manifest does not parse: {0}")]
    Parse(String),
    /// A field holds an unacceptable value.
    #[error("manifest field `{field}` is invalid: {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn check_sha(field: &'static str, s: &str) -> Result<(), ManifestError> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            field,
            format!("{s:?} is not 64 lower-case hex digits"),
        ));
    }
    Ok(())
}

/// Longest manifest accepted, bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

impl Manifest {
    /// Parses JSON bytes (the form stored in bundles) and validates them.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// The JSON bytes stored in a bundle.
    pub fn to_json(&self) -> Vec<u8> {
        // Design: serialising a struct of strings and integers cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses TOML (for people writing manifests by hand) and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks everything serde cannot express.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format != MANIFEST_FORMAT {
            return Err(invalid(
                "format",
                format!(
                    "{} is not supported (this build reads {MANIFEST_FORMAT})",
                    self.format
                ),
            ));
        }
        if self.compatible.is_empty() {
            return Err(invalid("compatible", "names no device profile"));
        }
        for p in &self.compatible {
            if p.is_empty()
                || p.len() > 64
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    "compatible",
                    format!("{p:?} is not a profile name"),
                ));
            }
        }
        if let Some(min) = self.min_version
            && min > self.version
        {
            return Err(invalid(
                "min_version",
                format!("{min} is newer than the bundle's version {}", self.version),
            ));
        }
        check_sha("image.sha256", &self.image.sha256)?;
        check_sha("payload.sha256", &self.payload.sha256)?;
        match (self.payload.encoding, &self.delta_base) {
            (Encoding::Full, None) => {
                if self.payload.size != self.image.size || self.payload.sha256 != self.image.sha256
                {
                    return Err(invalid(
                        "payload",
                        "a full payload must equal the image (same size and sha256)",
                    ));
                }
            }
            (Encoding::Delta, Some(base)) => {
                check_sha("delta_base.sha256", &base.sha256)?;
                if base.version >= self.version {
                    return Err(invalid(
                        "delta_base.version",
                        format!("{} is not older than {}", base.version, self.version),
                    ));
                }
            }
            (Encoding::Full, Some(_)) => {
                return Err(invalid("delta_base", "set on a full payload"));
            }
            (Encoding::Delta, None) => {
                return Err(invalid("delta_base", "missing on a delta payload"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let h = "a".repeat(64);
        Manifest {
            format: 1,
            version: Version::new(1, 2, 3),
            compatible: vec!["courtroom-terminal".into()],
            min_version: Some(Version::new(1, 0, 0)),
            image: ImageInfo {
                size: 10,
                sha256: h.clone(),
            },
            payload: PayloadInfo {
                encoding: Encoding::Full,
                size: 10,
                sha256: h,
            },
            delta_base: None,
            description: None,
        }
    }

    #[test]
    fn versions_order_numerically_not_as_text() {
        let a: Version = "1.10.0".parse().unwrap();
        let b: Version = "1.9.7".parse().unwrap();
        assert!(a > b);
        assert!("1.2".parse::<Version>().is_err());
        assert!("1.2.3.4".parse::<Version>().is_err());
        assert!("1.x.3".parse::<Version>().is_err());
    }

    #[test]
    fn manifest_round_trips_through_json_and_toml() {
        let m = sample();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        let t = toml::to_string(&m).unwrap();
        assert_eq!(Manifest::from_toml(&t).unwrap(), m);
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut m = sample();
        m.compatible.clear();
        assert!(m.validate().unwrap_err().to_string().contains("compatible"));
        let mut m = sample();
        m.image.sha256 = "XYZ".into();
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("image.sha256")
        );
        let mut m = sample();
        m.min_version = Some(Version::new(2, 0, 0));
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("min_version")
        );
        let mut m = sample();
        m.payload.encoding = Encoding::Delta;
        assert!(m.validate().unwrap_err().to_string().contains("delta_base"));
    }
}
