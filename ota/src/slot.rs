//! Slots: the A/B copies of the root image. A slot is a file (a plain file in tests and
//! in the simulated fleet, a block device such as `/dev/mmcblk0p3` on hardware), with a
//! small status record saying which version it holds.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::manifest::Version;

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotName {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl SlotName {
    /// The other slot.
    pub fn other(self) -> Self {
        match self {
            SlotName::A => SlotName::B,
            SlotName::B => SlotName::A,
        }
    }

    /// Both slots.
    pub const ALL: [SlotName; 2] = [SlotName::A, SlotName::B];

    fn lower(self) -> &'static str {
        match self {
            SlotName::A => "a",
            SlotName::B => "b",
        }
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlotName::A => "A",
            SlotName::B => "B",
        })
    }
}

/// What a slot holds, recorded after its image was written and verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    /// Version of the image, when one was installed.
    pub version: Option<Version>,
    /// SHA-256 of the image.
    pub sha256: Option<String>,
    /// Image size in bytes.
    pub size: u64,
}

/// A slot operation failed.
#[derive(Debug, thiserror::Error)]
#[error("slot {slot} ({path}): {source}")]
pub struct SlotError {
    /// Which slot.
    pub slot: SlotName,
    /// The file involved.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// File-backed slots: `slot-a.img` / `slot-b.img` and their `slot-X.json` records in one
/// folder, or any two paths (block devices) given to [`FileSlots::with_paths`].
#[derive(Debug, Clone)]
pub struct FileSlots {
    images: [PathBuf; 2],
    records: [PathBuf; 2],
}

fn idx(s: SlotName) -> usize {
    match s {
        SlotName::A => 0,
        SlotName::B => 1,
    }
}

impl FileSlots {
    /// Slots stored as files in `dir` (created if missing).
    pub fn in_dir(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let img = |s: SlotName| dir.join(format!("slot-{}.img", s.lower()));
        let rec = |s: SlotName| dir.join(format!("slot-{}.json", s.lower()));
        Ok(Self::with_paths(
            [img(SlotName::A), img(SlotName::B)],
            [rec(SlotName::A), rec(SlotName::B)],
        ))
    }

    /// Slots at explicit image and record paths.
    pub fn with_paths(images: [PathBuf; 2], records: [PathBuf; 2]) -> Self {
        Self { images, records }
    }

    /// The image path of a slot.
    pub fn image_path(&self, s: SlotName) -> &Path {
        &self.images[idx(s)]
    }

    fn err(&self, slot: SlotName, path: &Path) -> impl Fn(io::Error) -> SlotError {
        let path = path.to_owned();
        move |source| SlotError {
            slot,
            path: path.clone(),
            source,
        }
    }

    /// The slot's record; empty when none was written.
    pub fn info(&self, s: SlotName) -> Result<SlotInfo, SlotError> {
        let p = &self.records[idx(s)];
        match fs::read(p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| SlotError {
                slot: s,
                path: p.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SlotInfo::default()),
            Err(e) => Err(self.err(s, p)(e)),
        }
    }

    /// Writes the slot's record atomically.
    pub fn set_info(&self, s: SlotName, info: &SlotInfo) -> Result<(), SlotError> {
        let p = &self.records[idx(s)];
        let bytes = serde_json::to_vec(info).unwrap_or_default();
        fsutil::write_atomic(p, &bytes).map_err(self.err(s, p))
    }

    /// Opens the slot for writing from the start (truncating a plain file).
    pub fn writer(&self, s: SlotName) -> Result<SlotWriter, SlotError> {
        let p = &self.images[idx(s)];
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(p)
            .map_err(self.err(s, p))?;
        Ok(SlotWriter {
            file: io::BufWriter::with_capacity(256 * 1024, file),
            hash: Sha256::new(),
            written: 0,
        })
    }

    /// Reads the whole image of a slot (a delta's base).
    pub fn read_image(&self, s: SlotName, size: u64) -> Result<Vec<u8>, SlotError> {
        let p = &self.images[idx(s)];
        let mut buf = Vec::with_capacity(size as usize);
        File::open(p)
            .and_then(|f| f.take(size).read_to_end(&mut buf))
            .map_err(self.err(s, p))?;
        Ok(buf)
    }

    /// SHA-256 of the first `size` bytes of a slot, read back from storage.
    pub fn hash_image(&self, s: SlotName, size: u64) -> Result<String, SlotError> {
        let p = &self.images[idx(s)];
        let mut f = File::open(p).map_err(self.err(s, p))?.take(size);
        let (h, n) = crate::bundle::sha256_reader(&mut f).map_err(self.err(s, p))?;
        if n != size {
            return Err(self.err(s, p)(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("holds {n} bytes, expected {size}"),
            )));
        }
        Ok(h)
    }

    /// Writes an image and its record directly (factory provisioning and tests).
    pub fn provision(&self, s: SlotName, image: &[u8], version: Version) -> Result<(), SlotError> {
        let mut w = self.writer(s)?;
        w.write_all(image)
            .map_err(self.err(s, self.image_path(s)))?;
        let (sha256, size) = w.finish().map_err(self.err(s, self.image_path(s)))?;
        self.set_info(
            s,
            &SlotInfo {
                version: Some(version),
                sha256: Some(sha256),
                size,
            },
        )
    }
}

/// Writes an image into a slot, hashing as it goes.
pub struct SlotWriter {
    file: io::BufWriter<File>,
    hash: Sha256,
    written: u64,
}

impl Write for SlotWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl SlotWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and fsyncs; returns the SHA-256 of what was written and its length.
    pub fn finish(self) -> io::Result<(String, u64)> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((hex::encode(self.hash.finalize()), self.written))
    }
}
