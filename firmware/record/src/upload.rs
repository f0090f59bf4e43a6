//! The archive upload scheduler, sans I/O: which closed segment goes to the controller's
//! archive next, when to retry after a failure, and when a segment counts as archived.
//!
//! The shell scans the segment index every second and passes the closed segments that are
//! neither acknowledged nor evicted ([`Input::Pending`]); the core answers with at most one
//! [`Output::Upload`] at a time (the tribunal link is shared with live patrol, so segments
//! go one after the other under the bandwidth cap) and, on the archive's answer,
//! [`Output::Archived`] only when the SHA-256 the controller computed on arrival equals the
//! device's own.
//!
//! Design: "archived" is the device's promise that the segment may be evicted; it is given
//! only on a verified acknowledgement, never on a timeout or a 2xx without a matching hash.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

/// A closed segment waiting for the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSegment {
    pub hearing_id: String,
    pub index: u64,
    /// Path relative to the hearing folder (`<source>/NNNNN.ts`).
    pub file: String,
    /// The device's SHA-256 of the file, lowercase hex.
    pub sha256: String,
    pub bytes: u64,
    pub wall_start: OffsetDateTime,
}

impl PendingSegment {
    fn key(&self) -> Key {
        (self.hearing_id.clone(), self.index)
    }
}

/// A segment's identity: hearing and chain index.
pub type Key = (String, u64);

/// Why an upload attempt failed, as the shell classifies the archive's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused or cut, timeout. The link is down: back off.
    Unreachable(String),
    /// The archive does not know the segment yet (its `segment` event has not reached the
    /// controller): try again shortly, the link is fine.
    NotYet(String),
    /// The bytes that arrived do not hash to the segment's SHA-256: the archive dropped
    /// them; upload again from the start.
    HashMismatch(String),
    /// Any other refusal (server error, bad request): back off.
    Refused(String),
}

/// What the shell tells the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Every closed segment that is neither acknowledged nor evicted, as of this scan.
    Pending(Vec<PendingSegment>),
    /// The archive acknowledged the segment with the SHA-256 it computed on arrival.
    Acked { key: Key, sha256: String },
    /// The attempt failed.
    Failed { key: Key, failure: Failure },
    /// Time passes.
    Tick,
}

/// What the core asks the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Upload this segment (resume from what the archive already holds; from zero when
    /// `restart`).
    Upload {
        segment: PendingSegment,
        restart: bool,
    },
    /// Mark the segment archived in the index (it may now be evicted).
    Archived { key: Key, sha256: String },
    /// Log: the acknowledgement carried another hash; the segment is not archived.
    AckMismatch {
        key: Key,
        expected: String,
        got: String,
    },
}

/// Retry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSettings {
    /// First back-off after the link fails.
    pub backoff_min: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// Wait before asking again about a segment the archive does not know yet.
    pub not_yet: Duration,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            not_yet: Duration::from_secs(2),
        }
    }
}

/// The upload scheduler.
#[derive(Debug, Clone, Default)]
pub struct Uploader {
    settings: UploadSettings,
    /// Segments waiting, by key, from the latest scan.
    pending: BTreeMap<Key, PendingSegment>,
    /// The segment being uploaded.
    in_flight: Option<Key>,
    /// No upload starts before this time (back-off).
    not_before: Duration,
    /// Current back-off after consecutive link failures (zero: none).
    backoff: Duration,
    /// Segments whose last attempt ended in a hash mismatch: their next upload restarts.
    restart: std::collections::BTreeSet<Key>,
    /// Per segment, when it may be tried again (the archive did not know it yet).
    later: BTreeMap<Key, Duration>,
    /// Counters for health and logs.
    pub stats: UploadStats,
}

/// What the scheduler has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    pub archived: u64,
    pub failures: u64,
    pub mismatches: u64,
}

impl Uploader {
    pub fn new(settings: UploadSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// Segments waiting (including the one in flight).
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// The segment being uploaded.
    pub fn in_flight(&self) -> Option<&Key> {
        self.in_flight.as_ref()
    }

    /// Applies `input` at monotonic time `now`.
    pub fn handle(&mut self, now: Duration, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Pending(segments) => {
                self.pending = segments.into_iter().map(|s| (s.key(), s)).collect();
                let pending = &self.pending;
                self.later.retain(|k, _| pending.contains_key(k));
                self.restart.retain(|k| pending.contains_key(k));
            }
            Input::Acked { key, sha256 } => {
                if self.in_flight.as_ref() == Some(&key) {
                    self.in_flight = None;
                }
                match self.pending.get(&key) {
                    Some(s) if s.sha256 == sha256 => {
                        self.pending.remove(&key);
                        self.restart.remove(&key);
                        self.backoff = Duration::ZERO;
                        self.stats.archived += 1;
                        out.push(Output::Archived { key, sha256 });
                    }
                    Some(s) => {
                        self.stats.mismatches += 1;
                        out.push(Output::AckMismatch {
                            key: key.clone(),
                            expected: s.sha256.clone(),
                            got: sha256,
                        });
                        self.restart.insert(key);
                        self.fail_link(now);
                    }
                    // Not waiting (evicted or acknowledged meanwhile): nothing to mark.
                    None => {}
                }
            }
            Input::Failed { key, failure } => {
                if self.in_flight.as_ref() == Some(&key) {
                    self.in_flight = None;
                }
                self.stats.failures += 1;
                match failure {
                    Failure::NotYet(_) => {
                        self.later.insert(key, now + self.settings.not_yet);
                    }
                    Failure::HashMismatch(_) => {
                        self.stats.mismatches += 1;
                        self.restart.insert(key);
                        self.fail_link(now);
                    }
                    Failure::Unreachable(_) | Failure::Refused(_) => self.fail_link(now),
                }
            }
            Input::Tick => {}
        }
        if self.in_flight.is_none() && now >= self.not_before {
            let next = self
                .pending
                .values()
                .filter(|s| self.later.get(&s.key()).is_none_or(|t| now >= *t))
                .min_by(|a, b| {
                    (a.wall_start, &a.hearing_id, a.index).cmp(&(
                        b.wall_start,
                        &b.hearing_id,
                        b.index,
                    ))
                })
                .cloned();
            if let Some(segment) = next {
                let key = segment.key();
                self.later.remove(&key);
                let restart = self.restart.remove(&key);
                self.in_flight = Some(key);
                out.push(Output::Upload { segment, restart });
            }
        }
        out
    }

    fn fail_link(&mut self, now: Duration) {
        self.backoff = if self.backoff.is_zero() {
            self.settings.backoff_min
        } else {
            (self.backoff * 2).min(self.settings.backoff_max)
        };
        self.not_before = now + self.backoff;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn seg(h: &str, i: u64, minute: u8) -> PendingSegment {
        PendingSegment {
            hearing_id: h.into(),
            index: i,
            file: format!("cam/{i:05}.ts"),
            sha256: format!("{:064x}", i + 1),
            bytes: 1000,
            wall_start: datetime!(2026-11-27 09:00 UTC) + time::Duration::minutes(minute.into()),
        }
    }

    fn uploads(out: &[Output]) -> Vec<(String, u64, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Upload { segment, restart } => {
                    Some((segment.hearing_id.clone(), segment.index, *restart))
                }
                _ => None,
            })
            .collect()
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_oldest_segment_goes_first_and_one_at_a_time() {
        let mut u = Uploader::new(UploadSettings::default());
        let out = u.handle(
            S,
            Input::Pending(vec![seg("b", 0, 5), seg("a", 1, 1), seg("a", 0, 0)]),
        );
        assert_eq!(uploads(&out), [("a".into(), 0, false)]);
        // Another scan while it is in flight starts nothing more.
        let out = u.handle(2 * S, Input::Pending(vec![seg("a", 0, 0), seg("a", 1, 1)]));
        assert!(uploads(&out).is_empty());
    }

    #[test]
    fn a_segment_is_archived_only_on_an_ack_with_its_own_hash() {
        let mut u = Uploader::new(UploadSettings::default());
        u.handle(S, Input::Pending(vec![seg("a", 0, 0), seg("a", 1, 1)]));
        let out = u.handle(
            2 * S,
            Input::Acked {
                key: ("a".into(), 0),
                sha256: "f".repeat(64),
            },
        );
        assert!(
            !out.iter().any(|o| matches!(o, Output::Archived { .. })),
            "{out:?}"
        );
        assert!(
            out.iter().any(|o| matches!(o, Output::AckMismatch { .. })),
            "{out:?}"
        );
        // Backed off, then the same segment again, from the start.
        assert!(uploads(&u.handle(2 * S, Input::Tick)).is_empty());
        let out = u.handle(4 * S, Input::Tick);
        assert_eq!(uploads(&out), [("a".into(), 0, true)]);
        let out = u.handle(
            5 * S,
            Input::Acked {
                key: ("a".into(), 0),
                sha256: seg("a", 0, 0).sha256,
            },
        );
        assert_eq!(
            out[0],
            Output::Archived {
                key: ("a".into(), 0),
                sha256: seg("a", 0, 0).sha256
            }
        );
        assert_eq!(uploads(&out), [("a".into(), 1, false)], "next one at once");
    }

    #[test]
    fn link_failures_back_off_doubling_up_to_the_limit_and_a_success_resets() {
        let settings = UploadSettings {
            backoff_min: S,
            backoff_max: 4 * S,
            not_yet: S,
        };
        let mut u = Uploader::new(settings);
        let mut now = S;
        u.handle(now, Input::Pending(vec![seg("a", 0, 0)]));
        let mut waits = Vec::new();
        for _ in 0..5 {
            u.handle(
                now,
                Input::Failed {
                    key: ("a".into(), 0),
                    failure: Failure::Unreachable("refused".into()),
                },
            );
            let start = now;
            loop {
                now += Duration::from_millis(100);
                if !uploads(&u.handle(now, Input::Tick)).is_empty() {
                    break;
                }
            }
            waits.push((now - start).as_millis());
        }
        assert_eq!(waits, [1000, 2000, 4000, 4000, 4000]);
        u.handle(
            now,
            Input::Acked {
                key: ("a".into(), 0),
                sha256: seg("a", 0, 0).sha256,
            },
        );
        u.handle(now, Input::Pending(vec![seg("a", 1, 1)]));
        u.handle(
            now,
            Input::Failed {
                key: ("a".into(), 1),
                failure: Failure::Refused("503".into()),
            },
        );
        assert!(uploads(&u.handle(now + Duration::from_millis(900), Input::Tick)).is_empty());
        assert_eq!(
            uploads(&u.handle(now + S, Input::Tick)).len(),
            1,
            "1 s again"
        );
    }

    #[test]
    fn a_segment_the_archive_does_not_know_yet_waits_without_holding_up_the_others() {
        let mut u = Uploader::new(UploadSettings::default());
        u.handle(S, Input::Pending(vec![seg("a", 0, 0), seg("a", 1, 1)]));
        let out = u.handle(
            S,
            Input::Failed {
                key: ("a".into(), 0),
                failure: Failure::NotYet("no segment event".into()),
            },
        );
        assert_eq!(uploads(&out), [("a".into(), 1, false)]);
        u.handle(
            S,
            Input::Acked {
                key: ("a".into(), 1),
                sha256: seg("a", 1, 1).sha256,
            },
        );
        assert!(uploads(&u.handle(2 * S, Input::Tick)).is_empty());
        assert_eq!(
            uploads(&u.handle(3 * S, Input::Tick)),
            [("a".into(), 0, false)]
        );
    }

    #[test]
    fn a_hash_mismatch_restarts_the_upload_from_zero() {
        let mut u = Uploader::new(UploadSettings::default());
        u.handle(S, Input::Pending(vec![seg("a", 0, 0)]));
        u.handle(
            S,
            Input::Failed {
                key: ("a".into(), 0),
                failure: Failure::HashMismatch("got 00..".into()),
            },
        );
        assert_eq!(
            uploads(&u.handle(3 * S, Input::Tick)),
            [("a".into(), 0, true)]
        );
        assert_eq!(u.stats.mismatches, 1);
    }

    #[test]
    fn a_segment_that_left_the_scan_is_not_uploaded_or_marked() {
        let mut u = Uploader::new(UploadSettings::default());
        u.handle(S, Input::Pending(vec![seg("a", 0, 0)]));
        u.handle(S, Input::Pending(vec![]));
        let out = u.handle(
            S,
            Input::Acked {
                key: ("a".into(), 0),
                sha256: seg("a", 0, 0).sha256,
            },
        );
        assert!(out.is_empty(), "{out:?}");
    }
}
