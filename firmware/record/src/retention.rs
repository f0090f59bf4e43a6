//! Storage policy, sans I/O: free-space watermarks, eviction of archived segments only,
//! a disk-full forecast from the write rate, and the "recording at risk" alarm.
//!
//! The shell samples the recordings volume (statvfs) every few seconds and passes the
//! segments with their archive and legal-hold state; the core answers which segments to
//! delete and which alarms to raise or clear. It never deletes anything itself.
//!
//! Design: a segment is a candidate only when the archive has acknowledged it (verified by
//! hash on arrival) and it carries no legal hold; everything else is kept even if
//! recording fails for want of space, and the core says so with an alarm instead.

use std::collections::VecDeque;
use std::time::Duration;

use time::OffsetDateTime;

/// Watermarks and forecast settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Start evicting when free space falls below this.
    pub low_free_bytes: u64,
    /// Evict until free space is back above this.
    pub high_free_bytes: u64,
    /// Raise the forecast alarm when the disk would fill within this time at the current
    /// write rate.
    pub forecast_horizon: Duration,
    /// Write rate is measured over this window.
    pub rate_window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            low_free_bytes: 20 << 30,
            high_free_bytes: 40 << 30,
            forecast_horizon: Duration::from_secs(6 * 3600),
            rate_window: Duration::from_secs(300),
        }
    }
}

/// A segment on disk as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSegment {
    pub hearing_id: String,
    pub index: u64,
    pub file: String,
    pub bytes: u64,
    pub wall_start: OffsetDateTime,
    /// The archive has acknowledged it (hash verified on arrival).
    pub archived: bool,
    /// Under legal hold: never evicted.
    pub legal_hold: bool,
}

/// An alarm the policy raises (and later clears).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Alarm {
    /// At the current write rate the disk fills within the forecast horizon.
    DiskFullForecast,
    /// Free space is below the low watermark and nothing can be evicted: recording goes
    /// on, but will stop when the disk is full.
    RecordingAtRisk,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delete this segment's file and mark it evicted in the index.
    Evict(StoredSegment),
    /// Raise an alarm (once, until cleared); `seconds_left` is the forecast, if any.
    Raise {
        alarm: Alarm,
        free_bytes: u64,
        seconds_left: Option<u64>,
    },
    /// The condition is over.
    Clear(Alarm),
}

/// The storage policy core.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    policy: Policy,
    /// Recent (monotonic time, free bytes) samples within the rate window.
    samples: VecDeque<(Duration, u64)>,
    /// Alarms currently raised.
    raised: Vec<Alarm>,
}

impl Retention {
    /// A core applying `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            samples: VecDeque::new(),
            raised: Vec::new(),
        }
    }

    /// Bytes per second the free space is shrinking by (0 when it is not).
    pub fn write_rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, f0)), Some(&(t1, f1))) if t1 > t0 && f0 > f1 => {
                (f0 - f1) as f64 / (t1 - t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Applies a sample of the volume (`free_bytes` at monotonic time `now`) given the
    /// segments on it.
    pub fn handle(
        &mut self,
        now: Duration,
        free_bytes: u64,
        segments: &[StoredSegment],
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.samples.push_back((now, free_bytes));
        while let Some(&(t, _)) = self.samples.front() {
            if now.saturating_sub(t) > self.policy.rate_window {
                self.samples.pop_front();
            } else {
                break;
            }
        }

        // Eviction below the low watermark: oldest archived, unheld segments first, until
        // the high watermark would be reached.
        let mut projected = free_bytes;
        if free_bytes < self.policy.low_free_bytes {
            let mut candidates: Vec<&StoredSegment> = segments
                .iter()
                .filter(|s| s.archived && !s.legal_hold)
                .collect();
            candidates.sort_by_key(|s| (s.wall_start, s.hearing_id.clone(), s.index));
            for s in candidates {
                if projected >= self.policy.high_free_bytes {
                    break;
                }
                projected += s.bytes;
                out.push(Action::Evict(s.clone()));
            }
        }
        let at_risk = projected < self.policy.low_free_bytes;
        self.set(Alarm::RecordingAtRisk, at_risk, projected, None, &mut out);

        // Forecast on what will be free after eviction.
        let rate = self.write_rate();
        let seconds_left = (rate > 0.0).then(|| (projected as f64 / rate) as u64);
        let soon = seconds_left.is_some_and(|s| s < self.policy.forecast_horizon.as_secs());
        self.set(
            Alarm::DiskFullForecast,
            soon,
            projected,
            seconds_left,
            &mut out,
        );
        out
    }

    fn set(
        &mut self,
        alarm: Alarm,
        on: bool,
        free_bytes: u64,
        seconds_left: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        let raised = self.raised.contains(&alarm);
        if on && !raised {
            self.raised.push(alarm);
            out.push(Action::Raise {
                alarm,
                free_bytes,
                seconds_left,
            });
        } else if !on && raised {
            self.raised.retain(|a| *a != alarm);
            out.push(Action::Clear(alarm));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const GB: u64 = 1 << 30;

    fn policy() -> Policy {
        Policy {
            low_free_bytes: 10 * GB,
            high_free_bytes: 20 * GB,
            forecast_horizon: Duration::from_secs(3600),
            rate_window: Duration::from_secs(300),
        }
    }

    fn seg(i: u64, archived: bool, hold: bool) -> StoredSegment {
        StoredSegment {
            hearing_id: "h".into(),
            index: i,
            file: format!("cam/{i:05}.ts"),
            bytes: 4 * GB,
            wall_start: datetime!(2026-11-27 09:00 UTC) + Duration::from_secs(i * 10),
            archived,
            legal_hold: hold,
        }
    }

    fn evicted(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Evict(s) => Some(s.index),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn nothing_is_evicted_above_the_low_watermark() {
        let mut r = Retention::new(policy());
        let out = r.handle(Duration::ZERO, 15 * GB, &[seg(0, true, false)]);
        assert!(evicted(&out).is_empty());
    }

    #[test]
    fn below_the_low_watermark_the_oldest_archived_unheld_segments_go_until_the_high_one() {
        let mut r = Retention::new(policy());
        let segs = [
            seg(0, false, false),
            seg(1, true, true),
            seg(2, true, false),
            seg(3, true, false),
            seg(4, true, false),
            seg(5, true, false),
        ];
        let out = r.handle(Duration::ZERO, 9 * GB, &segs);
        // 9 + 4 + 4 + 4 = 21 GB >= 20 GB: three segments, oldest first.
        assert_eq!(evicted(&out), [2, 3, 4]);
        assert!(!out.iter().any(|a| matches!(a, Action::Raise { .. })));
    }

    #[test]
    fn unarchived_and_held_segments_are_never_evicted_and_the_recording_is_flagged_at_risk() {
        let mut r = Retention::new(policy());
        let segs = [
            seg(0, false, false),
            seg(1, true, true),
            seg(2, false, true),
        ];
        let out = r.handle(Duration::ZERO, 2 * GB, &segs);
        assert!(evicted(&out).is_empty());
        assert!(out.contains(&Action::Raise {
            alarm: Alarm::RecordingAtRisk,
            free_bytes: 2 * GB,
            seconds_left: None
        }));
        // Raised once, not on every sample.
        let again = r.handle(Duration::from_secs(5), 2 * GB, &segs);
        assert!(!again.iter().any(|a| matches!(a, Action::Raise { .. })));
        // Cleared once space is back.
        let later = r.handle(Duration::from_secs(10), 30 * GB, &segs);
        assert!(later.contains(&Action::Clear(Alarm::RecordingAtRisk)));
    }

    #[test]
    fn the_disk_full_forecast_fires_early_from_the_write_rate() {
        let mut r = Retention::new(policy());
        // 100 GB free, shrinking 50 MB/s: full in ~34 min, inside the 1 h horizon.
        let mb = 1 << 20;
        assert!(r.handle(Duration::ZERO, 100 * GB, &[]).is_empty());
        let out = r.handle(Duration::from_secs(60), 100 * GB - 60 * 50 * mb, &[]);
        let Some(Action::Raise {
            alarm: Alarm::DiskFullForecast,
            seconds_left: Some(left),
            ..
        }) = out.first()
        else {
            panic!("forecast alarm expected: {out:?}");
        };
        assert!((1900..2100).contains(left), "{left}");
        // At 1 MB/s it is days away: no alarm.
        let mut slow = Retention::new(policy());
        slow.handle(Duration::ZERO, 100 * GB, &[]);
        assert!(
            slow.handle(Duration::from_secs(60), 100 * GB - 60 * mb, &[])
                .is_empty()
        );
    }

    #[test]
    fn samples_older_than_the_window_do_not_count_toward_the_rate() {
        let mut r = Retention::new(policy());
        r.handle(Duration::ZERO, 100 * GB, &[]);
        r.handle(Duration::from_secs(400), 50 * GB, &[]);
        r.handle(Duration::from_secs(500), 50 * GB, &[]);
        assert_eq!(
            r.write_rate(),
            0.0,
            "the drop before the window is forgotten"
        );
    }
}
