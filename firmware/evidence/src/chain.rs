//! The per-hearing hash chain over closed segments.
//!
//! Design: a link is `SHA-256(previous link || canonical text of the segment entry)`, and
//! the first link starts from [`genesis`] of the hearing id. The canonical text is a fixed
//! line format rather than JSON, so verification never depends on how a serializer orders
//! or spells fields.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// One closed segment as recorded in the device store and in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Position in the hearing's chain, from 0.
    pub index: u64,
    /// Source id.
    pub source: String,
    /// File path relative to the hearing folder, e.g. `cam-judge/00003.ts`.
    pub file: String,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// File size.
    pub bytes: u64,
    /// Start on the hearing's shared timeline: nanoseconds after the hearing started.
    pub offset_ns: u64,
    /// Duration of the media in the segment.
    pub duration_ns: u64,
    /// Wall-clock start.
    #[serde(with = "time::serde::rfc3339")]
    pub wall_start: OffsetDateTime,
    /// Start in the recording pipeline's own stream time (running time), nanoseconds.
    pub stream_start_ns: u64,
    /// Closed by crash recovery rather than by the recorder (its end is where the data
    /// stops; its duration is an upper bound from wall-clock time).
    #[serde(default)]
    pub recovered: bool,
    /// Chain link after this segment, lowercase hex.
    pub chain: String,
}

impl SegmentEntry {
    /// The canonical text hashed into the chain (every field but `chain`).
    pub fn canonical(&self) -> String {
        format!(
            "index={}\nsource={}\nfile={}\nsha256={}\nbytes={}\noffset_ns={}\nduration_ns={}\nwall_start_ns={}\nstream_start_ns={}\nrecovered={}\n",
            self.index,
            self.source,
            self.file,
            self.sha256,
            self.bytes,
            self.offset_ns,
            self.duration_ns,
            self.wall_start.unix_timestamp_nanos(),
            self.stream_start_ns,
            self.recovered,
        )
    }
}

/// The link before the first segment of a hearing.
pub fn genesis(hearing_id: &str) -> String {
    hex::encode(Sha256::digest(format!("gavel-chain/1\n{hearing_id}\n")))
}

/// The link after `entry`, given the link before it.
pub fn link(previous: &str, entry: &SegmentEntry) -> String {
    let mut h = Sha256::new();
    h.update(previous.as_bytes());
    h.update(b"\n");
    h.update(entry.canonical().as_bytes());
    hex::encode(h.finalize())
}

/// Checks every link of `entries` from the hearing's genesis; returns the index of the
/// first entry whose link or position is wrong.
pub fn first_broken(hearing_id: &str, entries: &[SegmentEntry]) -> Option<u64> {
    let mut prev = genesis(hearing_id);
    for (i, e) in entries.iter().enumerate() {
        if e.index != i as u64 || link(&prev, e) != e.chain {
            return Some(i as u64);
        }
        prev = e.chain.clone();
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use time::macros::datetime;

    /// A chain of `n` segments of 10 s over two sources.
    pub(crate) fn chain(hearing: &str, n: u64) -> Vec<SegmentEntry> {
        let mut prev = genesis(hearing);
        (0..n)
            .map(|i| {
                let source = if i % 2 == 0 { "cam-a" } else { "cam-b" };
                let mut e = SegmentEntry {
                    index: i,
                    source: source.into(),
                    file: format!("{source}/{:05}.ts", i / 2),
                    sha256: hex::encode(Sha256::digest(format!("content {i}"))),
                    bytes: 1000 + i,
                    offset_ns: (i / 2) * 10_000_000_000,
                    duration_ns: 10_000_000_000,
                    wall_start: datetime!(2026-11-27 09:30 UTC),
                    stream_start_ns: 0,
                    recovered: false,
                    chain: String::new(),
                };
                e.chain = link(&prev, &e);
                prev = e.chain.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(first_broken("h", &chain("h", 6)), None);
    }

    #[test]
    fn a_changed_hash_breaks_the_chain_at_that_segment() {
        let mut c = chain("h", 6);
        c[3].sha256 = c[2].sha256.clone();
        assert_eq!(first_broken("h", &c), Some(3));
    }

    #[test]
    fn a_removed_or_swapped_entry_breaks_the_chain() {
        let mut c = chain("h", 6);
        c.remove(2);
        assert_eq!(first_broken("h", &c), Some(2));
        let mut c = chain("h", 6);
        c.swap(1, 4);
        assert_eq!(first_broken("h", &c), Some(1));
    }

    #[test]
    fn a_chain_does_not_verify_under_another_hearing_id() {
        assert_eq!(first_broken("other", &chain("h", 2)), Some(0));
    }
}
