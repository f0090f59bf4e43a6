//! The bundle: one file carrying a manifest, its detached signature and the payload.
//!
//! ```text
//! offset 0   "GAVELOTA"            magic, 8 bytes
//!        8   u32 LE                container format (1)
//!       12   u32 LE                manifest length M (at most 64 KiB)
//!       16   M bytes               manifest, JSON
//!     16+M   64 bytes              ed25519 signature over the manifest bytes
//!     80+M   payload.size bytes    payload (image or delta)
//! ```
//!
//! Design: the header is small and comes first, so a device can check the signature and
//! compatibility after downloading a few kilobytes (HTTP Range), before the payload.
//! `sign` rewrites only the 64 signature bytes, so build and sign can run on different
//! machines (the release key never touches the build host).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::manifest::{MAX_MANIFEST_BYTES, Manifest, ManifestError};
use crate::signature::{self, Keyring, SIGNATURE_LEN, SignatureError};

/// First bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"GAVELOTA";
/// Container format this build writes and reads.
pub const CONTAINER_FORMAT: u32 = 1;
/// Signature bytes of a bundle that was built but not signed yet.
pub const UNSIGNED: [u8; SIGNATURE_LEN] = [0; SIGNATURE_LEN];

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing the file failed.
    #[error("bundle {path}: {source}")]
    Io {
        /// The bundle file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file does not start with the bundle magic.
    #[error("not a Gavel bundle (bad magic)")]
    BadMagic,
    /// The container format is newer than this build.
    #[error("bundle container format {0} is not supported (this build reads {CONTAINER_FORMAT})")]
    UnsupportedFormat(u32),
    /// The file ends before the header, manifest or payload does.
    #[error("bundle is truncated: {what} needs {expected} bytes, the file has {actual}")]
    Truncated {
        /// Which part is cut short.
        what: &'static str,
        /// Bytes needed.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// The file is longer than the manifest says.
    #[error("bundle has {extra} unexpected bytes after the payload")]
    TrailingBytes {
        /// Extra bytes.
        extra: u64,
    },
    /// The manifest length field is out of range.
    #[error("manifest length {0} is out of range (1 to {MAX_MANIFEST_BYTES})")]
    ManifestLength(u32),
    /// The bundle was never signed.
    #[error("bundle is not signed")]
    Unsigned,
    /// The signature does not verify (wrong key or tampered manifest).
    #[error("signature invalid: {0}")]
    Signature(#[from] SignatureError),
    /// The (authenticated) manifest is malformed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The payload does not match the manifest's hash (tampered or corrupt payload).
    #[error("payload sha256 is {actual}, the signed manifest says {expected}")]
    PayloadHash {
        /// From the manifest.
        expected: String,
        /// Computed.
        actual: String,
    },
}

/// A bundle whose header has been read. Nothing is trusted until [`Bundle::verify`].
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle file.
    pub path: PathBuf,
    /// The manifest's bytes exactly as signed.
    pub manifest_bytes: Vec<u8>,
    /// The detached signature.
    pub signature: [u8; SIGNATURE_LEN],
    /// Where the payload starts in the file.
    pub payload_offset: u64,
    /// The file's length.
    pub file_len: u64,
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a bundle with the given signature (use [`UNSIGNED`] to sign later).
/// Returns the number of bytes written.
pub fn write(
    out: &Path,
    manifest: &Manifest,
    signature: &[u8; SIGNATURE_LEN],
    payload: &mut dyn Read,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, BundleError> {
    let e = io_err(out);
    let mbytes = manifest.to_json();
    let mut f = io::BufWriter::new(File::create(out).map_err(&e)?);
    f.write_all(MAGIC).map_err(&e)?;
    f.write_all(&CONTAINER_FORMAT.to_le_bytes()).map_err(&e)?;
    f.write_all(&(mbytes.len() as u32).to_le_bytes())
        .map_err(&e)?;
    f.write_all(&mbytes).map_err(&e)?;
    f.write_all(signature).map_err(&e)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let r = payload.read(&mut buf).map_err(&e)?;
        if r == 0 {
            break;
        }
        f.write_all(&buf[..r]).map_err(&e)?;
        n += r as u64;
        progress(n);
    }
    let f = f.into_inner().map_err(|x| e(x.into_error()))?;
    f.sync_all().map_err(&e)?;
    Ok(16 + mbytes.len() as u64 + SIGNATURE_LEN as u64 + n)
}

/// Signs a built bundle in place: rewrites its 64 signature bytes.
pub fn sign_in_place(path: &Path, key: &SigningKey) -> Result<Manifest, BundleError> {
    let b = Bundle::open(path)?;
    let manifest = Manifest::from_json(&b.manifest_bytes)?;
    let sig = signature::sign(key, &b.manifest_bytes);
    let e = io_err(path);
    let mut f = OpenOptions::new().write(true).open(path).map_err(&e)?;
    f.seek(SeekFrom::Start(16 + b.manifest_bytes.len() as u64))
        .map_err(&e)?;
    f.write_all(&sig).map_err(&e)?;
    f.sync_all().map_err(&e)?;
    Ok(manifest)
}

/// SHA-256 of everything `r` yields, lower-case hex, with the byte count.
pub fn sha256_reader(r: &mut dyn Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = r.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// SHA-256 of a byte slice, lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Bundle {
    /// Reads the header, manifest bytes and signature. Checks only the container shape.
    pub fn open(path: &Path) -> Result<Self, BundleError> {
        let e = io_err(path);
        let mut f = File::open(path).map_err(&e)?;
        let file_len = f.metadata().map_err(&e)?.len();
        Self::read_header(&mut f, file_len, path)
    }

    /// Reads the header from any reader (the first bytes of a download).
    pub fn read_header(r: &mut dyn Read, file_len: u64, path: &Path) -> Result<Self, BundleError> {
        let e = io_err(path);
        let truncated = |what, expected| BundleError::Truncated {
            what,
            expected,
            actual: file_len,
        };
        if file_len < 16 {
            return Err(truncated("header", 16));
        }
        let mut head = [0u8; 16];
        r.read_exact(&mut head).map_err(&e)?;
        if &head[..8] != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let format = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if format != CONTAINER_FORMAT {
            return Err(BundleError::UnsupportedFormat(format));
        }
        let mlen = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        if mlen == 0 || mlen as usize > MAX_MANIFEST_BYTES {
            return Err(BundleError::ManifestLength(mlen));
        }
        let payload_offset = 16 + mlen as u64 + SIGNATURE_LEN as u64;
        if file_len < payload_offset {
            return Err(truncated("manifest and signature", payload_offset));
        }
        let mut manifest_bytes = vec![0u8; mlen as usize];
        r.read_exact(&mut manifest_bytes).map_err(&e)?;
        let mut signature = [0u8; SIGNATURE_LEN];
        r.read_exact(&mut signature).map_err(&e)?;
        Ok(Self {
            path: path.to_owned(),
            manifest_bytes,
            signature,
            payload_offset,
            file_len,
        })
    }

    /// Checks the signature and then parses the manifest: nothing unauthenticated is parsed.
    pub fn authenticate(&self, keyring: &Keyring) -> Result<Manifest, BundleError> {
        if self.signature == UNSIGNED {
            return Err(BundleError::Unsigned);
        }
        keyring.verify(&self.manifest_bytes, &self.signature)?;
        Ok(Manifest::from_json(&self.manifest_bytes)?)
    }

    /// Checks the payload's length and hash against an authenticated manifest.
    pub fn check_payload(&self, manifest: &Manifest) -> Result<(), BundleError> {
        let expected = self.payload_offset + manifest.payload.size;
        if self.file_len < expected {
            return Err(BundleError::Truncated {
                what: "payload",
                expected,
                actual: self.file_len,
            });
        }
        if self.file_len > expected {
            return Err(BundleError::TrailingBytes {
                extra: self.file_len - expected,
            });
        }
        let mut r = self.payload_reader()?;
        let (actual, _) = sha256_reader(&mut r).map_err(io_err(&self.path))?;
        if actual != manifest.payload.sha256 {
            return Err(BundleError::PayloadHash {
                expected: manifest.payload.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Full verification: signature, manifest, payload length and hash.
    pub fn verify(&self, keyring: &Keyring) -> Result<Manifest, BundleError> {
        let m = self.authenticate(keyring)?;
        self.check_payload(&m)?;
        Ok(m)
    }

    /// A reader over the payload bytes.
    pub fn payload_reader(&self) -> Result<impl Read + use<>, BundleError> {
        let e = io_err(&self.path);
        let mut f = File::open(&self.path).map_err(&e)?;
        f.seek(SeekFrom::Start(self.payload_offset)).map_err(&e)?;
        Ok(BufReader::new(f).take(self.file_len - self.payload_offset))
    }
}

/// What to build a bundle from.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// Version of the image.
    pub version: crate::manifest::Version,
    /// Compatible device profiles.
    pub compatible: Vec<String>,
    /// Minimum installed version, if any.
    pub min_version: Option<crate::manifest::Version>,
    /// The image file.
    pub image: PathBuf,
    /// For a delta bundle: the base image file and its version.
    pub base: Option<(PathBuf, crate::manifest::Version)>,
    /// Free text.
    pub description: Option<String>,
}

/// Builds an unsigned bundle (full, or delta when `spec.base` is set). Returns the
/// manifest and, for a delta, the size figures. `progress` gets payload bytes written.
pub fn build(
    out: &Path,
    spec: &BuildSpec,
    progress: &mut dyn FnMut(u64),
) -> Result<(Manifest, Option<crate::delta::DeltaStats>), BundleError> {
    use crate::manifest::{DeltaBase, Encoding, ImageInfo, MANIFEST_FORMAT, PayloadInfo};
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| BundleError::Io {
            path: p.to_owned(),
            source,
        })
    };
    let image = read(&spec.image)?;
    let image_info = ImageInfo {
        size: image.len() as u64,
        sha256: sha256(&image),
    };
    let (payload, encoding, delta_base, stats) = match &spec.base {
        None => (image, Encoding::Full, None, None),
        Some((base_path, base_version)) => {
            let base = read(base_path)?;
            let (d, stats) = crate::delta::encode(&base, &image, crate::delta::DEFAULT_BLOCK)
                .map_err(|source| BundleError::Io {
                    path: spec.image.clone(),
                    source,
                })?;
            let db = DeltaBase {
                version: *base_version,
                sha256: sha256(&base),
                size: base.len() as u64,
            };
            (d, Encoding::Delta, Some(db), Some(stats))
        }
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        version: spec.version,
        compatible: spec.compatible.clone(),
        min_version: spec.min_version,
        image: image_info,
        payload: PayloadInfo {
            encoding,
            size: payload.len() as u64,
            sha256: sha256(&payload),
        },
        delta_base,
        description: spec.description.clone(),
    };
    manifest.validate()?;
    write(out, &manifest, &UNSIGNED, &mut &payload[..], progress)?;
    Ok((manifest, stats))
}
