//! Compliance proof per hearing: scheduled against recorded coverage per source, gaps with
//! their reasons, the hash chain recomputed from the segment events, the device's seal
//! verified, transcript presence. Pure: the shell gathers the evidence, this decides.
//!
//! Invariants:
//! - A hearing is `complete` only when every source that recorded it covers the required
//!   window without a gap longer than the tolerance, every recording device's chain is
//!   intact and its seal verifies with its pinned key, and a transcript is present where
//!   the room transcribes.
//! - Every reason it is not complete is written out in `exceptions`, for people.
//! - Late delivery (a link outage) is not an exception: the device recorded; the delay is
//!   reported in `notes` and per source.

use std::collections::{BTreeMap, BTreeSet};

use gavel_evidence::{Seal, SegmentEntry, key::public_from_hex};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::hearings::{Hearing, HearingStatus};

/// How the assessment is made.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Uncovered spans up to this long are not gaps (segment boundaries, the open
    /// segment lost in a crash).
    pub tolerance: Duration,
    /// Deliveries later than this are mentioned in the notes.
    pub late_delivery: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tolerance: Duration::seconds(2),
            late_delivery: Duration::seconds(10),
        }
    }
}

/// A segment event as the controller stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRec {
    pub device: String,
    pub source: String,
    pub index: u64,
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub offset_ns: u64,
    pub duration_ns: u64,
    pub wall_start: OffsetDateTime,
    pub chain: String,
    /// Absent from agents that predate it: their chain cannot be recomputed.
    pub stream_start_ns: Option<u64>,
    pub recovered: bool,
    /// When the controller stored it.
    pub received: OffsetDateTime,
}

/// A source-lost event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRec {
    pub device: String,
    pub source: String,
    pub lost_at: OffsetDateTime,
    pub recovered_at: Option<OffsetDateTime>,
    pub detail: Option<String>,
}

/// A device's seal of the hearing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealRec {
    pub device: String,
    pub segments: u64,
    pub chain_head: String,
    pub manifest_sha256: String,
    pub public_key: String,
    pub signature: String,
}

/// Everything the controller knows about a hearing's recording.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Devices of the room that record: each should have recorded the hearing.
    pub recording_devices: BTreeSet<String>,
    /// Sources each device said it records (its `recording` events).
    pub sources: BTreeMap<String, BTreeSet<String>>,
    pub segments: Vec<SegmentRec>,
    pub lost: Vec<LostRec>,
    pub seals: Vec<SealRec>,
    /// Evidence keys pinned per device (first seen), hex.
    pub pinned_keys: BTreeMap<String, String>,
    /// A device of the room transcribes, so a transcript is required.
    pub transcript_required: bool,
    pub transcript_present: bool,
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Verdict {
    /// Recorded in full and proven.
    Complete,
    /// Recorded with exceptions (gaps, broken or missing proof).
    Incomplete,
    /// Nothing was recorded.
    NotRecorded,
    /// Closed, but a recording device has not sealed it yet (it may be offline).
    Pending,
    /// Not closed yet.
    Open,
    Cancelled,
}

/// A span a source did not record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapSpan {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub seconds: f64,
    pub reason: String,
}

/// Coverage of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceCoverage {
    pub device: String,
    pub source: String,
    pub segments: u64,
    pub required_s: f64,
    pub recorded_s: f64,
    /// `recorded_s / required_s`, 0..1.
    pub coverage: f64,
    pub gaps: Vec<GapSpan>,
    /// Longest time from a segment's end to its arrival at the controller.
    pub max_delivery_delay_s: f64,
    /// Recorded spans clipped to the required window (for the timeline).
    pub recorded: Vec<(i64, i64)>,
}

/// The hash chain of one device, recomputed from its segment events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChainCheck {
    Verified {
        segments: u64,
    },
    /// The entry at `index` is missing or does not link to the one before.
    Broken {
        index: u64,
        why: String,
    },
    Unverifiable {
        why: String,
    },
}

/// The seal of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SealCheck {
    Verified {
        public_key: String,
    },
    Missing,
    /// The signature does not verify, or the key is not the device's pinned one, or the
    /// sealed chain differs from the segments received.
    Invalid {
        why: String,
    },
}

/// Proof from one recording device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProof {
    pub device: String,
    pub chain: ChainCheck,
    pub seal: SealCheck,
}

/// The compliance record of a hearing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compliance {
    pub hearing_id: String,
    pub case_number: String,
    pub court: String,
    pub room: String,
    pub judge: String,
    #[serde(with = "time::serde::rfc3339")]
    pub scheduled_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub scheduled_end: OffsetDateTime,
    /// The window that had to be recorded: opened (or scheduled start) to closed (or
    /// scheduled end).
    #[serde(with = "time::serde::rfc3339")]
    pub required_from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub required_to: OffsetDateTime,
    pub verdict: Verdict,
    pub sources: Vec<SourceCoverage>,
    pub devices: Vec<DeviceProof>,
    pub transcript_required: bool,
    pub transcript_present: bool,
    /// Why it is not complete, one sentence each.
    pub exceptions: Vec<String>,
    /// Worth knowing but not exceptions (late delivery after an outage).
    pub notes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub computed_at: OffsetDateTime,
}

fn secs(d: Duration) -> f64 {
    (d.as_seconds_f64() * 10.0).round() / 10.0
}

fn hhmmss(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// The required window of a hearing.
pub fn required_window(h: &Hearing) -> (OffsetDateTime, OffsetDateTime) {
    let from = h.opened_at.unwrap_or(h.scheduled_start);
    let to = h.closed_at.unwrap_or(h.scheduled_end).max(from);
    (from, to)
}

/// Assesses a hearing at `now`.
pub fn assess(
    hearing: &Hearing,
    evidence: &Evidence,
    settings: Settings,
    now: OffsetDateTime,
) -> Compliance {
    let (from, to) = required_window(hearing);
    let mut c = Compliance {
        hearing_id: hearing.id.clone(),
        case_number: hearing.case_number.clone(),
        court: hearing.court.clone(),
        room: hearing.room.clone(),
        judge: hearing.judge.clone(),
        scheduled_start: hearing.scheduled_start,
        scheduled_end: hearing.scheduled_end,
        required_from: from,
        required_to: to,
        verdict: Verdict::Open,
        sources: Vec::new(),
        devices: Vec::new(),
        transcript_required: evidence.transcript_required,
        transcript_present: evidence.transcript_present,
        exceptions: Vec::new(),
        notes: Vec::new(),
        computed_at: now,
    };
    if hearing.status == HearingStatus::Cancelled {
        c.verdict = Verdict::Cancelled;
        return c;
    }

    // Sources: every source a device declared, and every source it sent segments of.
    let mut by_source: BTreeMap<(String, String), Vec<&SegmentRec>> = BTreeMap::new();
    for (device, sources) in &evidence.sources {
        for s in sources {
            by_source.entry((device.clone(), s.clone())).or_default();
        }
    }
    for seg in &evidence.segments {
        by_source
            .entry((seg.device.clone(), seg.source.clone()))
            .or_default()
            .push(seg);
    }
    let end = to.min(now.max(from));
    for ((device, source), mut segs) in by_source {
        segs.sort_by_key(|s| (s.wall_start, s.index));
        let cov = coverage(&device, &source, &segs, &evidence.lost, from, end, settings);
        if cov.max_delivery_delay_s >= settings.late_delivery.as_seconds_f64() {
            c.notes.push(format!(
                "{device}/{source}: segments arrived up to {:.0} s after they were recorded (link outage); the device kept recording",
                cov.max_delivery_delay_s
            ));
        }
        // Times for people in the court's offset (the schedule's).
        let local = hearing.scheduled_start.offset();
        for g in &cov.gaps {
            c.exceptions.push(format!(
                "{device}/{source}: not recorded {}–{} ({:.1} s): {}",
                hhmmss(g.from.to_offset(local)),
                hhmmss(g.to.to_offset(local)),
                g.seconds,
                g.reason
            ));
        }
        c.sources.push(cov);
    }

    // Devices: each recording device's chain and seal.
    let mut devices: BTreeSet<String> = evidence.recording_devices.clone();
    devices.extend(evidence.sources.keys().cloned());
    devices.extend(evidence.segments.iter().map(|s| s.device.clone()));
    let mut pending = Vec::new();
    for device in &devices {
        let segs: Vec<&SegmentRec> = evidence
            .segments
            .iter()
            .filter(|s| &s.device == device)
            .collect();
        if segs.is_empty() && !evidence.sources.contains_key(device) {
            c.exceptions.push(format!(
                "{device} is a recording device of the room and recorded nothing"
            ));
            continue;
        }
        let (chain, head) = check_chain(&hearing.id, &segs);
        let seal = match evidence.seals.iter().find(|s| &s.device == device) {
            None => {
                pending.push(device.clone());
                SealCheck::Missing
            }
            Some(s) => check_seal(
                &hearing.id,
                s,
                &segs,
                head.as_deref(),
                &evidence.pinned_keys,
            ),
        };
        match &chain {
            ChainCheck::Verified { .. } => {}
            ChainCheck::Broken { index, why } => c.exceptions.push(format!(
                "{device}: hash chain broken at segment {index}: {why}"
            )),
            ChainCheck::Unverifiable { why } => c
                .exceptions
                .push(format!("{device}: hash chain not verifiable: {why}")),
        }
        if let SealCheck::Invalid { why } = &seal {
            c.exceptions.push(format!("{device}: seal invalid: {why}"));
        }
        c.devices.push(DeviceProof {
            device: device.clone(),
            chain,
            seal,
        });
    }
    if c.transcript_required && !c.transcript_present {
        c.exceptions.push("no transcript".into());
    }

    let recorded_anything = c.sources.iter().any(|s| s.segments > 0);
    c.verdict = if hearing.status != HearingStatus::Closed {
        Verdict::Open
    } else if !recorded_anything && pending.len() == devices.len() {
        // Nothing arrived: either nothing was recorded or it has not arrived yet.
        if devices.is_empty() {
            c.exceptions.push("the room has no recording device".into());
            Verdict::NotRecorded
        } else if c.sources.is_empty() {
            Verdict::NotRecorded
        } else {
            Verdict::Pending
        }
    } else if !pending.is_empty() {
        for d in &pending {
            c.notes.push(format!(
                "waiting for {d} to seal the recording (it may be offline)"
            ));
        }
        Verdict::Pending
    } else if !recorded_anything {
        Verdict::NotRecorded
    } else if c.exceptions.is_empty() {
        Verdict::Complete
    } else {
        Verdict::Incomplete
    };
    if c.verdict == Verdict::NotRecorded && c.exceptions.is_empty() {
        c.exceptions.push("nothing was recorded".into());
    }
    c
}

fn coverage(
    device: &str,
    source: &str,
    segs: &[&SegmentRec],
    lost: &[LostRec],
    from: OffsetDateTime,
    to: OffsetDateTime,
    settings: Settings,
) -> SourceCoverage {
    let mut spans: Vec<(OffsetDateTime, OffsetDateTime)> = Vec::new();
    let mut delay = Duration::ZERO;
    for s in segs {
        let start = s.wall_start;
        let end = start + Duration::nanoseconds(i64::try_from(s.duration_ns).unwrap_or(i64::MAX));
        delay = delay.max(s.received - end);
        let (a, b) = (start.max(from), end.min(to));
        if a < b {
            match spans.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => spans.push((a, b)),
            }
        }
    }
    let recorded: Duration = spans.iter().map(|(a, b)| *b - *a).sum();
    let required = to - from;
    // Uncovered spans, including before the first and after the last.
    let mut gaps = Vec::new();
    let mut cursor = from;
    let mut holes = Vec::new();
    for (a, b) in &spans {
        if *a > cursor {
            holes.push((cursor, *a));
        }
        cursor = cursor.max(*b);
    }
    if to > cursor {
        holes.push((cursor, to));
    }
    for (a, b) in holes {
        if b - a <= settings.tolerance {
            continue;
        }
        let reason = lost
            .iter()
            .filter(|l| l.device == device && l.source == source)
            .find(|l| l.lost_at <= b && l.recovered_at.is_none_or(|r| r >= a))
            .map(|l| match &l.detail {
                Some(d) => format!("source lost ({d})"),
                None => "source lost".to_owned(),
            })
            .unwrap_or_else(|| {
                if spans.is_empty() {
                    "nothing recorded".to_owned()
                } else if a == from {
                    "recording started late".to_owned()
                } else if b == to {
                    "recording stopped early".to_owned()
                } else {
                    "no segment recorded".to_owned()
                }
            });
        gaps.push(GapSpan {
            from: a,
            to: b,
            seconds: secs(b - a),
            reason,
        });
    }
    let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    SourceCoverage {
        device: device.to_owned(),
        source: source.to_owned(),
        segments: segs.len() as u64,
        required_s: secs(required),
        recorded_s: secs(recorded),
        coverage: if required.is_positive() {
            (recorded.as_seconds_f64() / required.as_seconds_f64()).clamp(0.0, 1.0)
        } else {
            1.0
        },
        gaps,
        max_delivery_delay_s: secs(delay.max(Duration::ZERO)),
        recorded: spans.iter().map(|(a, b)| (ms(*a), ms(*b))).collect(),
    }
}

/// Recomputes a device's chain; returns the check and the head when intact.
fn check_chain(hearing_id: &str, segs: &[&SegmentRec]) -> (ChainCheck, Option<String>) {
    let mut by_index: Vec<&SegmentRec> = segs.to_vec();
    by_index.sort_by_key(|s| s.index);
    by_index.dedup_by_key(|s| s.index);
    let mut prev = gavel_evidence::genesis(hearing_id);
    for (i, s) in by_index.iter().enumerate() {
        let i = i as u64;
        if s.index != i {
            return (
                ChainCheck::Broken {
                    index: i,
                    why: "segment missing".into(),
                },
                None,
            );
        }
        let Some(stream_start_ns) = s.stream_start_ns else {
            return (
                ChainCheck::Unverifiable {
                    why: "the device's firmware does not report stream_start_ns".into(),
                },
                None,
            );
        };
        let entry = SegmentEntry {
            index: s.index,
            source: s.source.clone(),
            file: s.file.clone(),
            sha256: s.sha256.clone(),
            bytes: s.bytes,
            offset_ns: s.offset_ns,
            duration_ns: s.duration_ns,
            wall_start: s.wall_start,
            stream_start_ns,
            recovered: s.recovered,
            chain: String::new(),
        };
        let link = gavel_evidence::link(&prev, &entry);
        if link != s.chain {
            return (
                ChainCheck::Broken {
                    index: i,
                    why: "link does not match the segment's contents".into(),
                },
                None,
            );
        }
        prev = link;
    }
    (
        ChainCheck::Verified {
            segments: by_index.len() as u64,
        },
        Some(prev),
    )
}

fn check_seal(
    hearing_id: &str,
    s: &SealRec,
    segs: &[&SegmentRec],
    head: Option<&str>,
    pinned: &BTreeMap<String, String>,
) -> SealCheck {
    let invalid = |why: String| SealCheck::Invalid { why };
    if let Some(p) = pinned.get(&s.device)
        && p != &s.public_key
    {
        return invalid(format!(
            "signed with key {}…, but the device's key is {}…",
            &s.public_key.get(..12).unwrap_or(""),
            &p.get(..12).unwrap_or("")
        ));
    }
    let Some(key) = public_from_hex(&s.public_key) else {
        return invalid("the public key is not an ed25519 key".into());
    };
    let seal = Seal {
        hearing_id: hearing_id.to_owned(),
        segments: s.segments,
        chain_head: s.chain_head.clone(),
        manifest_sha256: s.manifest_sha256.clone(),
    };
    if !seal.verify(&key, &s.signature) {
        return invalid("the signature does not verify".into());
    }
    let received = segs.iter().map(|x| x.index).collect::<BTreeSet<_>>().len() as u64;
    if s.segments != received {
        return invalid(format!(
            "sealed {} segments, {} received",
            s.segments, received
        ));
    }
    match head {
        Some(h) if h == s.chain_head => SealCheck::Verified {
            public_key: s.public_key.clone(),
        },
        Some(_) => invalid("the sealed chain head differs from the segments received".into()),
        None if s.segments == 0 => SealCheck::Verified {
            public_key: s.public_key.clone(),
        },
        None => invalid("the chain it seals could not be recomputed".into()),
    }
}

#[cfg(test)]
mod tests;
