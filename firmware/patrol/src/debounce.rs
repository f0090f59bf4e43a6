//! Onset and clear hold times: a condition becomes a finding only after it has held for
//! its onset time, and the finding ends only after the condition has been gone for the
//! clear time. Flicker in between changes nothing.

use time::{Duration, OffsetDateTime};

/// An edge of a debounced condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The condition has held since `since` for at least the onset time.
    Started { since: OffsetDateTime },
    /// The condition has been gone since `since` for at least the clear time.
    Ended { since: OffsetDateTime },
}

/// One debounced condition.
#[derive(Debug, Clone)]
pub struct Debounce {
    onset: Duration,
    clear: Duration,
    /// When the condition began holding (while it holds).
    holding_since: Option<OffsetDateTime>,
    /// Whether the finding is open.
    active: bool,
    /// While active: when the condition stopped holding.
    gone_since: Option<OffsetDateTime>,
}

impl Debounce {
    /// Hold times in seconds.
    pub fn new(onset_s: f64, clear_s: f64) -> Self {
        Self {
            onset: Duration::seconds_f64(onset_s.max(0.0)),
            clear: Duration::seconds_f64(clear_s.max(0.0)),
            holding_since: None,
            active: false,
            gone_since: None,
        }
    }

    /// Whether the finding is open.
    pub fn active(&self) -> bool {
        self.active
    }

    /// Feeds one observation of the condition at `now`.
    pub fn update(&mut self, now: OffsetDateTime, holds: bool) -> Option<Edge> {
        if holds {
            let since = *self.holding_since.get_or_insert(now);
            self.gone_since = None;
            if !self.active && now - since >= self.onset {
                self.active = true;
                return Some(Edge::Started { since });
            }
        } else {
            self.holding_since = None;
            if self.active {
                let gone = *self.gone_since.get_or_insert(now);
                if now - gone >= self.clear {
                    self.active = false;
                    self.gone_since = None;
                    return Some(Edge::Ended { since: gone });
                }
            }
        }
        None
    }

    /// Ends an open finding at once (the source went away, the analyzer was turned off).
    pub fn reset(&mut self, now: OffsetDateTime) -> Option<Edge> {
        self.holding_since = None;
        let was = self.active;
        self.active = false;
        let since = self.gone_since.take().unwrap_or(now);
        was.then_some(Edge::Ended { since })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-27 09:00 UTC);

    fn at(s: i64) -> OffsetDateTime {
        T0 + Duration::seconds(s)
    }

    #[test]
    fn a_condition_becomes_a_finding_only_after_its_onset_hold() {
        let mut d = Debounce::new(5.0, 3.0);
        for s in 0..5 {
            assert_eq!(d.update(at(s), true), None);
        }
        assert_eq!(d.update(at(5), true), Some(Edge::Started { since: at(0) }));
        assert!(d.active());
    }

    #[test]
    fn flicker_shorter_than_the_onset_never_starts_a_finding() {
        let mut d = Debounce::new(5.0, 3.0);
        for s in 0..30 {
            assert_eq!(d.update(at(s), s % 4 != 3), None);
        }
    }

    #[test]
    fn a_finding_ends_after_the_clear_hold_at_the_time_the_condition_went() {
        let mut d = Debounce::new(0.0, 3.0);
        assert!(matches!(d.update(at(0), true), Some(Edge::Started { .. })));
        assert_eq!(d.update(at(1), false), None);
        assert_eq!(
            d.update(at(2), true),
            None,
            "came back before the clear hold"
        );
        assert_eq!(d.update(at(3), false), None);
        assert_eq!(d.update(at(5), false), None);
        assert_eq!(d.update(at(6), false), Some(Edge::Ended { since: at(3) }));
        assert!(!d.active());
    }
}
