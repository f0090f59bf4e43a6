//! # gavel-store
//!
//! The device's durable state in one redb file: the event outbox (events waiting until the
//! controller confirms it has stored them), the recording index (one record per hearing and
//! one per segment, in hash-chain order), and small keyed records (configuration, cached
//! schedule, counters). Every write is a committed transaction with immediate durability
//! (fsync) before the call returns: a record the caller was told is written survives
//! SIGKILL and power loss. `docs/adr/0003-device-store.md` explains why redb, not sled.
//!
//! Calls block on disk I/O; async callers use `spawn_blocking`.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

/// Outbox: global append key -> JSON [`OutboxEntry`].
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Small keyed records.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Recording index: hearing id -> JSON hearing record (owned by `gavel-record`).
const HEARINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("hearings");
/// Recording index: (hearing id, chain index) -> JSON segment record (owned by `gavel-record`).
const SEGMENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("segments");
/// Meta key holding the next outbox key.
const NEXT_KEY: &str = "outbox.next_key";

/// One event waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Boot of the agent that produced the event.
    pub boot_id: String,
    /// Sequence number within that boot.
    pub seq: u64,
    /// When it was appended, Unix milliseconds.
    pub appended_ms: i64,
    /// The encoded event (a `gavel_protocol::Event`), as published.
    pub payload: Vec<u8>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("device store {path}: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("device store: {0}")]
    Db(#[from] redb::Error),
    #[error("device store entry {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    /// A segment was appended at an index that is not the end of its hearing's chain.
    #[error("segment {index} of hearing {hearing}: expected index {expected}")]
    ChainOrder {
        hearing: String,
        index: u64,
        expected: u64,
    },
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::Db(e.into())
    }
}

/// Outbox size for health telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events not yet confirmed by the controller.
    pub depth: u64,
    /// Append time of the oldest of them, Unix milliseconds.
    pub oldest_ms: Option<i64>,
}

/// The device store.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store file at `path`, recovering after an unclean stop.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let tx = db.begin_write()?;
        tx.open_table(OUTBOX)?;
        tx.open_table(META)?;
        tx.open_table(HEARINGS)?;
        tx.open_table(SEGMENTS)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Appends an event durably; returns its outbox key. When this returns, the event
    /// survives a crash.
    pub fn append(&self, entry: &OutboxEntry) -> Result<u64, StoreError> {
        let bytes = encode_entry(entry)?;
        let tx = self.db.begin_write()?;
        let key = {
            // Design: keys never repeat, even after the outbox empties, so a sender's
            // cursor ("everything from key K on") can never skip a new entry.
            let mut meta = tx.open_table(META)?;
            let next = meta
                .get(NEXT_KEY)?
                .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
                .unwrap_or(0);
            let mut table = tx.open_table(OUTBOX)?;
            let key = next.max(table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(0));
            table.insert(key, bytes.as_slice())?;
            meta.insert(NEXT_KEY, (key + 1).to_le_bytes().as_slice())?;
            key
        };
        tx.commit()?;
        Ok(key)
    }

    /// Up to `limit` entries with key `>= from`, in key (append) order.
    pub fn entries_from(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for item in table.range(from..)?.take(limit) {
            let (k, v) = item?;
            out.push((k.value(), decode_entry(k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Removes the entries of boot `boot_id` with `seq <= through`: the controller has
    /// stored them. Returns how many were removed.
    pub fn confirm(&self, boot_id: &str, through: u64) -> Result<usize, StoreError> {
        let tx = self.db.begin_write()?;
        let removed = {
            let mut table = tx.open_table(OUTBOX)?;
            let mut doomed = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                let (boot, seq) = decode_header(k.value(), v.value())?;
                if boot == boot_id {
                    // Design: a boot's entries are appended in seq order, so the first
                    // one past `through` ends the scan.
                    if seq > through {
                        break;
                    }
                    doomed.push(k.value());
                }
            }
            for k in &doomed {
                table.remove(k)?;
            }
            doomed.len()
        };
        tx.commit()?;
        Ok(removed)
    }

    /// Number of entries and the oldest append time.
    pub fn stats(&self) -> Result<OutboxStats, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OUTBOX)?;
        let oldest_ms = match table.first()? {
            Some((k, v)) => Some(decode_entry(k.value(), v.value())?.appended_ms),
            None => None,
        };
        Ok(OutboxStats {
            depth: table.len()?,
            oldest_ms,
        })
    }

    /// Stores a small record under `key` durably.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(META)?.insert(key, value)?;
        tx.commit()?;
        Ok(())
    }

    /// Reads the record under `key`.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }
}

/// Entry layout: boot id length (u8), boot id, seq (u64 LE), appended (i64 LE), payload.
/// A compact header that `confirm` reads without touching the payload.
fn encode_entry(entry: &OutboxEntry) -> Result<Vec<u8>, StoreError> {
    let boot = entry.boot_id.as_bytes();
    let len = u8::try_from(boot.len()).map_err(|_| StoreError::Corrupt {
        key: "new".into(),
        message: format!("boot id is {} bytes; at most 255", boot.len()),
    })?;
    let mut out = Vec::with_capacity(1 + boot.len() + 16 + entry.payload.len());
    out.push(len);
    out.extend_from_slice(boot);
    out.extend_from_slice(&entry.seq.to_le_bytes());
    out.extend_from_slice(&entry.appended_ms.to_le_bytes());
    out.extend_from_slice(&entry.payload);
    Ok(out)
}

fn corrupt(key: u64, what: &str) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        message: what.into(),
    }
}

impl Store {
    /// Stores the record of hearing `id` durably (replacing an earlier one).
    pub fn put_hearing(&self, id: &str, record: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(HEARINGS)?.insert(id, record)?;
        tx.commit()?;
        Ok(())
    }

    /// The record of hearing `id`.
    pub fn hearing(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HEARINGS)?;
        Ok(table.get(id)?.map(|v| v.value().to_vec()))
    }

    /// Every hearing record, by id.
    pub fn hearings(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HEARINGS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Appends segment `index` to hearing `hearing`'s chain together with the hearing's
    /// updated record, in one durable transaction.
    ///
    /// Design: the index must be exactly one past the last stored segment, so the chain in
    /// the store can never have a hole or a rewritten link.
    pub fn append_segment(
        &self,
        hearing: &str,
        index: u64,
        segment: &[u8],
        hearing_record: &[u8],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(SEGMENTS)?;
            let expected = table
                .range((hearing, 0)..=(hearing, u64::MAX))?
                .next_back()
                .transpose()?
                .map(|(k, _)| k.value().1 + 1)
                .unwrap_or(0);
            if index != expected {
                return Err(StoreError::ChainOrder {
                    hearing: hearing.to_owned(),
                    index,
                    expected,
                });
            }
            table.insert((hearing, index), segment)?;
            tx.open_table(HEARINGS)?.insert(hearing, hearing_record)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces the record of an existing segment (archive acknowledgement, legal hold,
    /// eviction); the chain fields inside are the caller's to keep.
    pub fn update_segment(
        &self,
        hearing: &str,
        index: u64,
        segment: &[u8],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(SEGMENTS)?;
            if table.get((hearing, index))?.is_none() {
                return Err(StoreError::Corrupt {
                    key: format!("{hearing}/{index}"),
                    message: "no such segment".into(),
                });
            }
            table.insert((hearing, index), segment)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The segments of hearing `hearing` in chain order.
    pub fn segments(&self, hearing: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SEGMENTS)?;
        let mut out = Vec::new();
        for item in table.range((hearing, 0)..=(hearing, u64::MAX))? {
            let (k, v) = item?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }
}

fn decode_header(key: u64, bytes: &[u8]) -> Result<(&str, u64), StoreError> {
    let (&len, rest) = bytes
        .split_first()
        .ok_or_else(|| corrupt(key, "empty entry"))?;
    let len = usize::from(len);
    if rest.len() < len + 16 {
        return Err(corrupt(key, "entry shorter than its header"));
    }
    let boot =
        std::str::from_utf8(&rest[..len]).map_err(|_| corrupt(key, "boot id is not UTF-8"))?;
    let seq = u64::from_le_bytes(
        rest[len..len + 8]
            .try_into()
            .map_err(|_| corrupt(key, "bad seq"))?,
    );
    Ok((boot, seq))
}

fn decode_entry(key: u64, bytes: &[u8]) -> Result<OutboxEntry, StoreError> {
    let (boot, seq) = decode_header(key, bytes)?;
    let at = 1 + boot.len() + 8;
    let appended_ms = i64::from_le_bytes(
        bytes[at..at + 8]
            .try_into()
            .map_err(|_| corrupt(key, "bad time"))?,
    );
    Ok(OutboxEntry {
        boot_id: boot.to_owned(),
        seq,
        appended_ms,
        payload: bytes[at + 8..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(boot: &str, seq: u64) -> OutboxEntry {
        OutboxEntry {
            boot_id: boot.into(),
            seq,
            appended_ms: seq as i64,
            payload: format!("event {seq}").into_bytes(),
        }
    }

    #[test]
    fn appended_entries_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.redb");
        {
            let s = Store::open(&path).expect("open");
            for seq in 0..5 {
                assert_eq!(s.append(&entry("b1", seq)).expect("append"), seq);
            }
        }
        let s = Store::open(&path).expect("reopen");
        let all = s.entries_from(0, 100).expect("read");
        assert_eq!(all.len(), 5);
        assert_eq!(all[3], (3, entry("b1", 3)));
        assert_eq!(s.entries_from(4, 100).expect("read").len(), 1);
    }

    #[test]
    fn confirming_removes_only_that_boots_entries_up_to_the_sequence() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("s.redb")).expect("open");
        for seq in 0..3 {
            s.append(&entry("old", seq)).expect("append");
        }
        for seq in 0..3 {
            s.append(&entry("new", seq)).expect("append");
        }
        assert_eq!(s.confirm("new", 1).expect("confirm"), 2);
        let left: Vec<(String, u64)> = s
            .entries_from(0, 100)
            .expect("read")
            .into_iter()
            .map(|(_, e)| (e.boot_id, e.seq))
            .collect();
        assert_eq!(
            left,
            [
                ("old".into(), 0),
                ("old".into(), 1),
                ("old".into(), 2),
                ("new".into(), 2)
            ]
        );
        assert_eq!(s.stats().expect("stats").depth, 4);
        assert_eq!(s.stats().expect("stats").oldest_ms, Some(0));
    }

    #[test]
    fn keys_keep_growing_after_the_outbox_empties() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("s.redb")).expect("open");
        s.append(&entry("b", 0)).expect("append");
        s.append(&entry("b", 1)).expect("append");
        s.confirm("b", 1).expect("confirm");
        assert_eq!(s.stats().expect("stats").depth, 0);
        assert_eq!(s.append(&entry("b", 2)).expect("append"), 2);
    }

    #[test]
    fn segments_append_only_at_the_end_of_their_hearings_chain() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.redb");
        {
            let s = Store::open(&path).expect("open");
            s.append_segment("h1", 0, b"s0", b"h1v1").expect("first");
            s.append_segment("h2", 0, b"x0", b"h2v1")
                .expect("other hearing");
            s.append_segment("h1", 1, b"s1", b"h1v2").expect("second");
            let err = s
                .append_segment("h1", 1, b"again", b"h1v3")
                .expect_err("repeat");
            assert!(
                matches!(err, StoreError::ChainOrder { expected: 2, .. }),
                "{err}"
            );
            assert!(s.append_segment("h1", 5, b"hole", b"h").is_err());
        }
        let s = Store::open(&path).expect("reopen");
        assert_eq!(
            s.segments("h1").expect("segments"),
            [(0, b"s0".to_vec()), (1, b"s1".to_vec())]
        );
        assert_eq!(
            s.hearing("h1").expect("hearing").as_deref(),
            Some(&b"h1v2"[..])
        );
        assert_eq!(s.hearings().expect("all").len(), 2);
        s.update_segment("h1", 0, b"s0-archived").expect("update");
        assert_eq!(s.segments("h1").expect("segments")[0].1, b"s0-archived");
        assert!(s.update_segment("h1", 9, b"x").is_err());
    }

    #[test]
    fn meta_records_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("s.redb")).expect("open");
        assert_eq!(s.get_meta("schedule").expect("get"), None);
        s.put_meta("schedule", b"v1").expect("put");
        assert_eq!(
            s.get_meta("schedule").expect("get").as_deref(),
            Some(&b"v1"[..])
        );
    }
}
