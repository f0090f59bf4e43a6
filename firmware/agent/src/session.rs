//! The room's schedule as the device knows it: the one seam through which hearings reach
//! the OTA flow (no download while a hearing is in session; no install or reboot while in
//! session or within the guard window before one).
//!
//! Design: a single `watch` of [`RoomSchedule`]. Each source writes only its own field,
//! so sources never overwrite each other:
//! - `in_session`: the recorder, while it records a hearing ([`ScheduleFeed::set_in_session`],
//!   driven from `record::feed_schedule`);
//! - `busy`: the device-side cached room schedule, upcoming hearings as `[start, end)` Unix
//!   seconds ([`ScheduleFeed::set_busy`]).
//!
//! Readers (the OTA task) hold a `watch::Receiver` from [`ScheduleFeed::subscribe`].

use tokio::sync::watch;

pub use gavel_ota::window::RoomSchedule;

/// Writes the device's view of its room's schedule; cheap to clone.
#[derive(Debug, Clone)]
pub struct ScheduleFeed(watch::Sender<RoomSchedule>);

impl Default for ScheduleFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl ScheduleFeed {
    /// A feed starting with a free room.
    pub fn new() -> Self {
        Self(watch::Sender::new(RoomSchedule::default()))
    }

    /// A hearing is (or no longer is) in progress in the room.
    pub fn set_in_session(&self, in_session: bool) {
        self.0.send_if_modified(|s| {
            let changed = s.in_session != in_session;
            s.in_session = in_session;
            changed
        });
    }

    /// The room's scheduled hearings, `[start, end)` in Unix seconds.
    pub fn set_busy(&self, busy: Vec<(i64, i64)>) {
        self.0.send_if_modified(|s| {
            let changed = s.busy != busy;
            s.busy = busy;
            changed
        });
    }

    /// The schedule now.
    pub fn current(&self) -> RoomSchedule {
        self.0.borrow().clone()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<RoomSchedule> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_and_cached_schedule_each_set_their_own_field() {
        let feed = ScheduleFeed::new();
        let mut rx = feed.subscribe();
        feed.set_busy(vec![(100, 200)]);
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();
        feed.set_in_session(true);
        feed.set_in_session(true);
        let s = rx.borrow_and_update().clone();
        assert_eq!(
            s,
            RoomSchedule {
                in_session: true,
                busy: vec![(100, 200)]
            }
        );
        feed.set_in_session(true);
        assert!(!rx.has_changed().expect("open"), "no change, no wake-up");
        feed.set_in_session(false);
        assert_eq!(feed.current().busy, vec![(100, 200)]);
    }
}
