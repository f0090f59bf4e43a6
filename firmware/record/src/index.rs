//! The segment index in the device store, the hash chain, crash recovery and manifests.
//!
//! Calls block on disk I/O (hashing, fsync); the recorder runs them on blocking threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gavel_evidence::{DeviceKey, Gap, Manifest, ManifestSource, Seal, SegmentEntry};
use gavel_store::Store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::RecordError;

/// Below this size an unclosed segment holds no frame (MPEG-TS tables only).
const MIN_MEDIA_BYTES: usize = 4 * 188;

/// A segment file that is being written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSegment {
    /// Path relative to the hearing folder.
    pub file: String,
    #[serde(with = "time::serde::rfc3339")]
    pub wall_start: OffsetDateTime,
    /// Running time of the pipeline at the segment's start.
    pub stream_start_ns: u64,
}

/// A hearing's record in the device store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HearingRecord {
    pub hearing_id: String,
    #[serde(default)]
    pub device_id: Option<String>,
    /// Wall-clock zero of the hearing's timeline.
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    /// Set when the recording was stopped; absent while it should be recording (a
    /// restarted recorder resumes it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
    pub sources: Vec<ManifestSource>,
    #[serde(default)]
    pub gaps: Vec<Gap>,
    /// Per source, the segment being written.
    #[serde(default)]
    pub open: BTreeMap<String, OpenSegment>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub by: Option<String>,
}

impl HearingRecord {
    /// Records a gap, replacing the earlier state of the same gap.
    pub fn put_gap(&mut self, gap: Gap) {
        match self
            .gaps
            .iter_mut()
            .find(|g| g.source == gap.source && g.from_ns == gap.from_ns)
        {
            Some(g) => *g = gap,
            None => self.gaps.push(gap),
        }
    }
}

/// A closed segment before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSegment {
    pub source: String,
    /// Path relative to the hearing folder.
    pub file: String,
    pub wall_start: OffsetDateTime,
    pub stream_start_ns: u64,
    pub duration_ns: u64,
    pub recovered: bool,
}

/// The recordings folder and the index in the store.
/// A finished hearing's manifest and signed seal.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub manifest: Manifest,
    pub seal: Seal,
    /// ed25519 signature of the seal text, hex.
    pub signature: String,
    /// The device's evidence key, hex.
    pub public_key: String,
}

pub struct Index {
    store: Arc<Store>,
    root: PathBuf,
    key: DeviceKey,
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
    serde_json::to_vec(value).map_err(|e| RecordError::Index(e.to_string()))
}

impl Index {
    /// The index over `store`, with hearing folders under `root`, signing with `key`.
    pub fn new(store: Arc<Store>, root: PathBuf, key: DeviceKey) -> Self {
        Self { store, root, key }
    }

    /// The device key's public half, hex.
    pub fn public_key(&self) -> String {
        self.key.public_hex()
    }

    /// Folder of hearing `id`.
    pub fn hearing_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The record of hearing `id`.
    pub fn load(&self, id: &str) -> Result<Option<HearingRecord>, RecordError> {
        self.store
            .hearing(id)?
            .map(|b| serde_json::from_slice(&b).map_err(|e| RecordError::Index(e.to_string())))
            .transpose()
    }

    /// Stores `record` durably.
    pub fn save(&self, record: &HearingRecord) -> Result<(), RecordError> {
        Ok(self.store.put_hearing(&record.hearing_id, &json(record)?)?)
    }

    /// The hearing that was recording when the recorder last stopped without stopping it.
    pub fn active(&self) -> Result<Option<HearingRecord>, RecordError> {
        for (_, bytes) in self.store.hearings()? {
            let r: HearingRecord =
                serde_json::from_slice(&bytes).map_err(|e| RecordError::Index(e.to_string()))?;
            if r.ended.is_none() {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Segments of hearing `id`, in chain order.
    pub fn segments(&self, id: &str) -> Result<Vec<SegmentEntry>, RecordError> {
        self.store
            .segments(id)?
            .into_iter()
            .map(|(_, b)| serde_json::from_slice(&b).map_err(|e| RecordError::Index(e.to_string())))
            .collect()
    }

    /// Hashes a closed segment, links it into the chain and stores it with `record` in one
    /// transaction; then rewrites the signed manifest.
    pub fn append(
        &self,
        record: &HearingRecord,
        segment: NewSegment,
    ) -> Result<SegmentEntry, RecordError> {
        let dir = self.hearing_dir(&record.hearing_id);
        let (sha256, bytes) = gavel_evidence::sha256_file(&dir.join(&segment.file))?;
        let existing = self.segments(&record.hearing_id)?;
        let (index, prev) = match existing.last() {
            Some(last) => (last.index + 1, last.chain.clone()),
            None => (0, gavel_evidence::genesis(&record.hearing_id)),
        };
        let offset_ns = (segment.wall_start - record.started)
            .whole_nanoseconds()
            .max(0) as u64;
        let mut entry = SegmentEntry {
            index,
            source: segment.source,
            file: segment.file,
            sha256,
            bytes,
            offset_ns,
            duration_ns: segment.duration_ns,
            wall_start: segment.wall_start,
            stream_start_ns: segment.stream_start_ns,
            recovered: segment.recovered,
            chain: String::new(),
        };
        entry.chain = gavel_evidence::link(&prev, &entry);
        self.store
            .append_segment(&record.hearing_id, index, &json(&entry)?, &json(record)?)?;
        self.write_manifest(record)?;
        Ok(entry)
    }

    /// Writes the hearing's signed manifest from the store.
    pub fn write_manifest(&self, record: &HearingRecord) -> Result<Manifest, RecordError> {
        self.write_manifest_hashed(record).map(|(m, _)| m)
    }

    /// Writes the hearing's signed manifest and signs its [`Seal`]: the manifest, the
    /// seal, its signature (hex) and the device's public key (hex).
    pub fn seal(&self, record: &HearingRecord) -> Result<Sealed, RecordError> {
        let (manifest, manifest_sha256) = self.write_manifest_hashed(record)?;
        let seal = Seal {
            hearing_id: manifest.hearing_id.clone(),
            segments: manifest.segments.len() as u64,
            chain_head: manifest.chain_head.clone(),
            manifest_sha256,
        };
        Ok(Sealed {
            signature: seal.sign(&self.key),
            public_key: self.key.public_hex(),
            seal,
            manifest,
        })
    }

    fn write_manifest_hashed(
        &self,
        record: &HearingRecord,
    ) -> Result<(Manifest, String), RecordError> {
        let segments = self.segments(&record.hearing_id)?;
        let manifest = Manifest {
            format: gavel_evidence::manifest::FORMAT,
            hearing_id: record.hearing_id.clone(),
            device_id: record.device_id.clone(),
            started: record.started,
            ended: record.ended,
            sources: record.sources.clone(),
            chain_head: segments
                .last()
                .map(|s| s.chain.clone())
                .unwrap_or_else(|| gavel_evidence::genesis(&record.hearing_id)),
            segments,
            gaps: record.gaps.clone(),
        };
        let dir = self.hearing_dir(&record.hearing_id);
        std::fs::create_dir_all(&dir).map_err(|e| RecordError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let sha = manifest.write_signed(&dir, &self.key)?;
        Ok((manifest, sha))
    }

    /// Chains the segment files of `source` that were written but never closed (the
    /// recorder was killed, or the pipeline torn down); files without any timestamp hold
    /// no media and are removed. Clears the source's open segment in `record`.
    pub fn recover_source(
        &self,
        record: &mut HearingRecord,
        source: &str,
    ) -> Result<Vec<SegmentEntry>, RecordError> {
        let dir = self.hearing_dir(&record.hearing_id).join(source);
        let chained: std::collections::BTreeSet<String> = self
            .segments(&record.hearing_id)?
            .into_iter()
            .map(|s| s.file)
            .collect();
        let open = record.open.remove(source);
        let mut files: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".ts"))
                .map(|n| format!("{source}/{n}"))
                .filter(|f| !chained.contains(f))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        let mut out = Vec::new();
        for file in files {
            let path = self.hearing_dir(&record.hearing_id).join(&file);
            let data = std::fs::read(&path).map_err(|e| RecordError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
            let duration_ns = match crate::ts::duration_ns(&data) {
                Some(d) => d,
                // Design: only a file too short to hold one frame (tables at most) is
                // removed; anything bigger is kept and chained, even if unreadable.
                None if data.len() < MIN_MEDIA_BYTES => {
                    warn!(file = %path.display(), bytes = data.len(), "segment holds no media; removed");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                None => {
                    warn!(file = %path.display(), bytes = data.len(), "segment has no readable timestamp; chained with duration 0");
                    0
                }
            };
            let (wall_start, stream_start_ns) = match &open {
                Some(o) if o.file == file => (o.wall_start, o.stream_start_ns),
                _ => {
                    let modified = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .map(OffsetDateTime::from)
                        .unwrap_or_else(|_| OffsetDateTime::now_utc());
                    (modified - Duration::from_nanos(duration_ns), 0)
                }
            };
            info!(%file, duration_ms = duration_ns / 1_000_000, "recovered an unclosed segment");
            out.push(self.append(
                record,
                NewSegment {
                    source: source.to_owned(),
                    file,
                    wall_start,
                    stream_start_ns,
                    duration_ns,
                    recovered: true,
                },
            )?);
        }
        self.save(record)?;
        Ok(out)
    }

    /// Per source, where its recorded media ends on the timeline.
    pub fn ends_ns(&self, record: &HearingRecord) -> Result<BTreeMap<String, u64>, RecordError> {
        let mut ends = BTreeMap::new();
        for s in self.segments(&record.hearing_id)? {
            let end = s.offset_ns + s.duration_ns;
            let e = ends.entry(s.source.clone()).or_insert(0);
            *e = end.max(*e);
        }
        Ok(ends)
    }
}

/// The number the next segment file in `dir` gets (one past the highest present).
pub fn next_file_number(dir: &Path) -> u32 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".ts")
                        .and_then(|n| n.parse::<u32>().ok())
                })
                .map(|n| n + 1)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn index(dir: &Path) -> Index {
        let store = Arc::new(Store::open(&dir.join("s.redb")).expect("store"));
        Index::new(
            store,
            dir.join("recordings"),
            DeviceKey::from_secret([3; 32]),
        )
    }

    fn record() -> HearingRecord {
        HearingRecord {
            hearing_id: "h1".into(),
            device_id: None,
            started: datetime!(2026-11-27 09:30 UTC),
            ended: None,
            sources: vec![],
            gaps: vec![],
            open: BTreeMap::new(),
            reason: None,
            by: None,
        }
    }

    #[test]
    fn appended_segments_form_a_chain_that_the_signed_manifest_verifies() {
        let dir = tempfile::tempdir().expect("tmp");
        let ix = index(dir.path());
        let rec = record();
        let folder = ix.hearing_dir("h1").join("cam");
        std::fs::create_dir_all(&folder).expect("mkdir");
        for i in 0..3u64 {
            std::fs::write(folder.join(format!("{i:05}.ts")), format!("data {i}")).expect("w");
            let e = ix
                .append(
                    &rec,
                    NewSegment {
                        source: "cam".into(),
                        file: format!("cam/{i:05}.ts"),
                        wall_start: rec.started + Duration::from_secs(2 * i),
                        stream_start_ns: 0,
                        duration_ns: 2_000_000_000,
                        recovered: false,
                    },
                )
                .expect("append");
            assert_eq!(e.index, i);
            assert_eq!(e.offset_ns, 2_000_000_000 * i);
        }
        assert!(ix.load("h1").expect("load").is_some());
        let report = gavel_evidence::verify::verify(&ix.hearing_dir("h1"), None).expect("verify");
        assert!(report.ok(), "{:?}", report.findings);
        assert_eq!(report.segments, 3);
        assert_eq!(ix.ends_ns(&rec).expect("ends")["cam"], 6_000_000_000);
        assert_eq!(next_file_number(&folder), 3);
    }

    #[test]
    fn recovery_drops_empty_files_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tmp");
        let ix = index(dir.path());
        let mut rec = record();
        let folder = ix.hearing_dir("h1").join("cam");
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(folder.join("00000.ts"), b"").expect("w");
        assert!(
            ix.recover_source(&mut rec, "cam")
                .expect("recover")
                .is_empty()
        );
        assert!(!folder.join("00000.ts").exists());
        assert!(
            ix.recover_source(&mut rec, "cam")
                .expect("again")
                .is_empty()
        );
    }
}
