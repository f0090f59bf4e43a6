//! Hearing awareness on the device: whether a room may be disturbed now.
//!
//! The controller will fill [`RoomSchedule`] from hearings (a later issue); tests inject
//! it. Times are Unix seconds so the device and the controller agree without a time zone.

use serde::{Deserialize, Serialize};

/// When the room is busy, as the device knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSchedule {
    /// A hearing is in progress now (overrides the intervals: a hearing may overrun).
    #[serde(default)]
    pub in_session: bool,
    /// Busy intervals `[start, end)` in Unix seconds (scheduled hearings).
    #[serde(default)]
    pub busy: Vec<(i64, i64)>,
}

/// Why a step must wait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// A hearing is in progress.
    #[error("a hearing is in progress")]
    InSession,
    /// A hearing starts within the guard window, or is scheduled now.
    #[error("a hearing is scheduled from {start} to {end} (Unix s), within the guard window")]
    Upcoming {
        /// Start of the busy interval.
        start: i64,
        /// End of the busy interval.
        end: i64,
    },
}

impl RoomSchedule {
    /// Whether an install or reboot may run at `now`: not in session, and no busy
    /// interval overlapping `[now, now + guard_s)`.
    pub fn may_disturb(&self, now: i64, guard_s: i64) -> Result<(), Busy> {
        if self.in_session {
            return Err(Busy::InSession);
        }
        match self
            .busy
            .iter()
            .find(|(s, e)| *s < now + guard_s && *e > now)
        {
            Some(&(start, end)) => Err(Busy::Upcoming { start, end }),
            None => Ok(()),
        }
    }

    /// Whether download-heavy steps may run: only not while a hearing is in session
    /// (the recording and the live sub-stream need the link).
    pub fn may_download(&self, now: i64) -> Result<(), Busy> {
        if self.in_session {
            return Err(Busy::InSession);
        }
        match self.busy.iter().find(|(s, e)| *s <= now && *e > now) {
            Some(&(start, end)) => Err(Busy::Upcoming { start, end }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_install_in_session_or_within_the_guard_window() {
        let s = RoomSchedule {
            in_session: false,
            busy: vec![(1000, 2000)],
        };
        assert!(s.may_disturb(0, 600).is_ok());
        assert!(matches!(
            s.may_disturb(500, 600),
            Err(Busy::Upcoming { .. })
        ));
        assert!(s.may_disturb(1500, 600).is_err());
        assert!(s.may_disturb(2000, 600).is_ok());
        assert!(s.may_download(500).is_ok());
        assert!(s.may_download(1500).is_err());
        let live = RoomSchedule {
            in_session: true,
            busy: vec![],
        };
        assert_eq!(live.may_disturb(0, 0), Err(Busy::InSession));
    }
}
