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

/// A hearing's archive and retention state on the device (store `meta` key
/// `archive/<hearing>`), kept apart from the chained segment entries, which never change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveState {
    /// Under legal hold: no segment of the hearing is evicted.
    #[serde(default)]
    pub hold: bool,
    /// Segments the archive acknowledged, by chain index, with the SHA-256 it computed.
    #[serde(default)]
    pub acked: BTreeMap<u64, String>,
    /// Segments whose file was deleted by the storage policy (each was acknowledged).
    #[serde(default)]
    pub evicted: std::collections::BTreeSet<u64>,
}

/// A chained segment with its archive state, as the uploader and the storage policy see
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentState {
    pub hearing_id: String,
    pub entry: SegmentEntry,
    pub hold: bool,
    pub archived: bool,
    pub evicted: bool,
}

fn archive_key(hearing: &str) -> String {
    format!("archive/{hearing}")
}

impl Index {
    /// The archive state of hearing `id` (default: nothing archived, no hold).
    pub fn archive_state(&self, id: &str) -> Result<ArchiveState, RecordError> {
        match self.store.get_meta(&archive_key(id))? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| RecordError::Index(e.to_string())),
            None => Ok(ArchiveState::default()),
        }
    }

    fn put_archive_state(&self, id: &str, state: &ArchiveState) -> Result<(), RecordError> {
        Ok(self.store.put_meta(&archive_key(id), &json(state)?)?)
    }

    /// Records the archive's acknowledgement of segment `index` (durably, before the
    /// segment may be evicted).
    pub fn mark_archived(&self, id: &str, index: u64, sha256: &str) -> Result<(), RecordError> {
        let mut state = self.archive_state(id)?;
        state.acked.insert(index, sha256.to_owned());
        self.put_archive_state(id, &state)
    }

    /// Sets or lifts the legal hold of hearing `id`.
    pub fn set_hold(&self, id: &str, hold: bool) -> Result<(), RecordError> {
        let mut state = self.archive_state(id)?;
        state.hold = hold;
        self.put_archive_state(id, &state)
    }

    /// Deletes the file of an archived, unheld segment and records the eviction.
    ///
    /// Design: checked again here, against the store, whatever the caller decided: a
    /// segment that is not acknowledged, or whose hearing is held, is refused.
    pub fn evict(&self, id: &str, index: u64) -> Result<u64, RecordError> {
        let mut state = self.archive_state(id)?;
        if state.hold {
            return Err(RecordError::Index(format!(
                "segment {index} of hearing {id} is under legal hold: not evicted"
            )));
        }
        if !state.acked.contains_key(&index) {
            return Err(RecordError::Index(format!(
                "segment {index} of hearing {id} is not archived: not evicted"
            )));
        }
        let entry = self
            .segments(id)?
            .into_iter()
            .find(|s| s.index == index)
            .ok_or_else(|| RecordError::Index(format!("hearing {id} has no segment {index}")))?;
        let path = self.hearing_dir(id).join(&entry.file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RecordError::Io {
                    path: path.display().to_string(),
                    source: e,
                });
            }
        }
        state.evicted.insert(index);
        self.put_archive_state(id, &state)?;
        Ok(entry.bytes)
    }

    /// Every chained segment of every hearing with its archive state.
    pub fn segment_states(&self) -> Result<Vec<SegmentState>, RecordError> {
        let mut out = Vec::new();
        for (id, _) in self.store.hearings()? {
            let state = self.archive_state(&id)?;
            for entry in self.segments(&id)? {
                out.push(SegmentState {
                    hearing_id: id.clone(),
                    hold: state.hold,
                    archived: state.acked.contains_key(&entry.index),
                    evicted: state.evicted.contains(&entry.index),
                    entry,
                });
            }
        }
        Ok(out)
    }

    /// The number the next segment file of `source` gets: one past the highest on disk
    /// or in the chain (evicted files leave the chain's names taken).
    pub fn next_file_number(&self, id: &str, source: &str) -> Result<u32, RecordError> {
        let on_disk = next_file_number(&self.hearing_dir(id).join(source));
        let chained = self
            .segments(id)?
            .iter()
            .filter(|s| s.source == source)
            .filter_map(|s| {
                s.file
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.strip_suffix(".ts"))
                    .and_then(|n| n.parse::<u32>().ok())
            })
            .map(|n| n + 1)
            .max()
            .unwrap_or(0);
        Ok(on_disk.max(chained))
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
    fn only_archived_unheld_segments_are_evicted_and_their_numbers_stay_taken() {
        let dir = tempfile::tempdir().expect("tmp");
        let ix = index(dir.path());
        let rec = record();
        let folder = ix.hearing_dir("h1").join("cam");
        std::fs::create_dir_all(&folder).expect("mkdir");
        for i in 0..2u64 {
            std::fs::write(folder.join(format!("{i:05}.ts")), format!("data {i}")).expect("w");
            ix.append(
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
        }
        let refused = ix.evict("h1", 0).expect_err("not archived");
        assert!(refused.to_string().contains("not archived"), "{refused}");
        assert!(folder.join("00000.ts").exists());
        let sha = ix.segments("h1").expect("segments")[0].sha256.clone();
        ix.mark_archived("h1", 0, &sha).expect("ack");
        ix.set_hold("h1", true).expect("hold");
        let refused = ix.evict("h1", 0).expect_err("held");
        assert!(refused.to_string().contains("legal hold"), "{refused}");
        ix.set_hold("h1", false).expect("lift");
        assert_eq!(ix.evict("h1", 0).expect("evicted"), 6);
        assert!(!folder.join("00000.ts").exists());
        assert!(folder.join("00001.ts").exists());
        let states = ix.segment_states().expect("states");
        assert!(states[0].evicted && states[0].archived);
        assert!(!states[1].evicted && !states[1].archived);
        // With every file gone, the next file still follows the chain.
        std::fs::remove_file(folder.join("00001.ts")).expect("rm");
        assert_eq!(next_file_number(&folder), 0);
        assert_eq!(ix.next_file_number("h1", "cam").expect("next"), 2);
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
