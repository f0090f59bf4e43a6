//! Speaker-follow: points the room's PTZ camera at whoever is speaking.
//!
//! A sans-I/O core. [`Follow::handle`] takes the time and one input (a seat's voice
//! activity or audio level, or a tick) and returns the camera moves to make. It never
//! reads the clock: `now` is a monotonic [`Duration`] from any fixed origin, so tests
//! script a conversation in milliseconds.
//!
//! The rules, in order:
//! 1. A seat *starts speaking* once its voice has been active for `debounce` (a cough or
//!    a door slam does not move the camera), and *stops* once it has been silent for
//!    `release` (pauses between words do not either).
//! 2. While the seat on camera is still speaking, the camera stays, whoever else talks
//!    over it: overlapping speech never makes the camera swing back and forth.
//! 3. When the seat on camera has stopped, the camera goes to the seat that has been
//!    speaking longest, but never before the current shot has been held for `hold`.
//! 4. When nobody has spoken for `overview_after`, the camera returns to the overview
//!    preset (again not before `hold`).
//!
//! Seats without a preset are heard but never framed.

use std::collections::BTreeMap;
use std::time::Duration;

/// Configured behaviour of speaker-follow (from the profile's `[capabilities.follow]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FollowSettings {
    /// Preset of each seat that can be framed, by seat id.
    pub presets: BTreeMap<String, u8>,
    /// Preset showing the whole room.
    pub overview_preset: u8,
    /// Voice must be active this long before a seat counts as speaking.
    pub debounce: Duration,
    /// Voice must be silent this long before a speaking seat counts as stopped.
    pub release: Duration,
    /// Shortest time a shot is held before the camera may move again.
    pub hold: Duration,
    /// Silence of every seat this long sends the camera back to the overview.
    pub overview_after: Duration,
    /// Audio level at or above which a seat's voice counts as active (for
    /// [`Input::Level`]).
    pub threshold_dbfs: f64,
}

impl Default for FollowSettings {
    fn default() -> Self {
        Self {
            presets: BTreeMap::new(),
            overview_preset: 0,
            debounce: Duration::from_millis(500),
            release: Duration::from_millis(1200),
            hold: Duration::from_millis(3000),
            overview_after: Duration::from_millis(8000),
            threshold_dbfs: -40.0,
        }
    }
}

impl From<&gavel_profile::FollowSettings> for FollowSettings {
    fn from(p: &gavel_profile::FollowSettings) -> Self {
        let ms = |v: u32| Duration::from_millis(u64::from(v));
        Self {
            presets: p.presets.clone(),
            overview_preset: p.overview_preset,
            debounce: ms(p.debounce_ms),
            release: ms(p.release_ms),
            hold: ms(p.hold_ms),
            overview_after: ms(p.overview_after_ms),
            threshold_dbfs: p.threshold_dbfs,
        }
    }
}

/// What the core is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A voice-activity decision for one seat's microphone.
    Voice {
        /// Seat id.
        seat: String,
        /// Whether voice is present now.
        active: bool,
    },
    /// An audio level for one seat's microphone (from the recording engine's meters);
    /// compared against `threshold_dbfs`.
    Level {
        /// Seat id.
        seat: String,
        /// Short-term level in dBFS.
        dbfs: f64,
    },
    /// Time passed; lets timers (debounce, release, hold, overview) fire.
    Tick,
}

/// What the camera shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shot {
    /// The whole room.
    Overview,
    /// One seat, by id.
    Seat(String),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Move the camera to `preset`, which frames `shot`.
    GotoPreset {
        /// The shot the preset frames.
        shot: Shot,
        /// Camera preset number.
        preset: u8,
    },
}

/// Debounced voice state of one seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeatState {
    /// Not speaking.
    Silent,
    /// Voice active since `since`, not yet for `debounce`.
    Onset { since: Duration },
    /// Speaking; the turn started at `since` (when voice first became active).
    Speaking { since: Duration },
    /// Was speaking (turn started at `since`), silent since `silent_since`, not yet for
    /// `release`.
    Releasing {
        since: Duration,
        silent_since: Duration,
    },
}

impl SeatState {
    fn speaking(self) -> bool {
        matches!(self, Self::Speaking { .. } | Self::Releasing { .. })
    }
}

/// The speaker-follow state machine.
#[derive(Debug)]
pub struct Follow {
    settings: FollowSettings,
    /// Debounced voice state per seat (only seats that have been heard).
    seats: BTreeMap<String, SeatState>,
    /// What the camera was last told to show; `None` before the first move.
    shot: Option<Shot>,
    /// When the camera was last told to move.
    shot_since: Duration,
    /// When the last speaking seat stopped (start of the room's silence); `None` while
    /// someone speaks or before anyone has.
    silent_since: Option<Duration>,
}

impl Follow {
    /// A core with `settings`; the camera position is unknown until the first input.
    pub fn new(settings: FollowSettings) -> Self {
        Self {
            settings,
            seats: BTreeMap::new(),
            shot: None,
            shot_since: Duration::ZERO,
            silent_since: None,
        }
    }

    /// What the camera was last told to show.
    pub fn shot(&self) -> Option<&Shot> {
        self.shot.as_ref()
    }

    /// Handles one input at time `now` (monotonic, never decreasing) and returns the
    /// moves to make. The first call always moves the camera somewhere, so its position
    /// is known.
    pub fn handle(&mut self, now: Duration, input: Input) -> Vec<Output> {
        match input {
            Input::Voice { seat, active } => self.voice(now, seat, active),
            Input::Level { seat, dbfs } => {
                let active = dbfs.is_finite() && dbfs >= self.settings.threshold_dbfs;
                self.voice(now, seat, active)
            }
            Input::Tick => {}
        }
        self.advance_timers(now);
        self.decide(now)
    }

    /// The next time after `now` at which a [`Input::Tick`] could change something, if
    /// any; a shell may sleep until then instead of ticking at a fixed rate.
    pub fn next_deadline(&self, now: Duration) -> Option<Duration> {
        let s = &self.settings;
        let mut deadlines: Vec<Duration> = self
            .seats
            .values()
            .filter_map(|st| match *st {
                SeatState::Onset { since } => Some(since + s.debounce),
                SeatState::Releasing { silent_since, .. } => Some(silent_since + s.release),
                _ => None,
            })
            .collect();
        if self.shot.is_some() {
            deadlines.push(self.shot_since + s.hold);
        }
        if let Some(quiet) = self.silent_since
            && self.shot != Some(Shot::Overview)
        {
            deadlines.push(quiet + s.overview_after);
        }
        deadlines.into_iter().filter(|&d| d > now).min()
    }

    fn voice(&mut self, now: Duration, seat: String, active: bool) {
        let state = self.seats.entry(seat).or_insert(SeatState::Silent);
        *state = match (*state, active) {
            (SeatState::Silent, true) => SeatState::Onset { since: now },
            (SeatState::Onset { .. }, false) => SeatState::Silent,
            (SeatState::Speaking { since }, false) => SeatState::Releasing {
                since,
                silent_since: now,
            },
            (SeatState::Releasing { since, .. }, true) => SeatState::Speaking { since },
            (same, _) => same,
        };
    }

    fn advance_timers(&mut self, now: Duration) {
        let s = &self.settings;
        let mut stopped_at = None;
        for state in self.seats.values_mut() {
            match *state {
                SeatState::Onset { since } if now >= since + s.debounce => {
                    *state = SeatState::Speaking { since };
                }
                SeatState::Releasing { silent_since, .. } if now >= silent_since + s.release => {
                    *state = SeatState::Silent;
                    stopped_at =
                        Some(stopped_at.map_or(silent_since, |t: Duration| t.max(silent_since)));
                }
                _ => {}
            }
        }
        let anyone = self.seats.values().any(|st| st.speaking());
        if anyone {
            self.silent_since = None;
        } else if let Some(t) = stopped_at {
            self.silent_since = Some(t);
        }
    }

    fn decide(&mut self, now: Duration) -> Vec<Output> {
        let s = &self.settings;
        let framed = |seat: &str| s.presets.contains_key(seat);
        let first_move = self.shot.is_none();
        let held = first_move || now >= self.shot_since + s.hold;

        // Rule 2: the seat on camera keeps it while it speaks.
        if let Some(Shot::Seat(current)) = &self.shot
            && self.seats.get(current).is_some_and(|st| st.speaking())
        {
            return Vec::new();
        }
        // Rule 3: the longest-speaking framed seat (ties: seat id order).
        let next = self
            .seats
            .iter()
            .filter(|(id, _)| framed(id))
            .filter_map(|(id, st)| match *st {
                SeatState::Speaking { since } => Some((since, id)),
                _ => None,
            })
            .min()
            .map(|(_, id)| id.clone());
        if let Some(seat) = next {
            return if held {
                self.go(now, Shot::Seat(seat))
            } else {
                Vec::new()
            };
        }
        // Rule 4: back to the overview after a long silence (or at the very start).
        let anyone = self.seats.values().any(|st| st.speaking());
        let quiet_long = self
            .silent_since
            .is_some_and(|t| now >= t + s.overview_after);
        if first_move || (!anyone && quiet_long && held && self.shot != Some(Shot::Overview)) {
            return self.go(now, Shot::Overview);
        }
        Vec::new()
    }

    fn go(&mut self, now: Duration, shot: Shot) -> Vec<Output> {
        let preset = match &shot {
            Shot::Overview => self.settings.overview_preset,
            Shot::Seat(id) => match self.settings.presets.get(id) {
                Some(p) => *p,
                None => return Vec::new(),
            },
        };
        self.shot = Some(shot.clone());
        self.shot_since = now;
        vec![Output::GotoPreset { shot, preset }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings() -> FollowSettings {
        FollowSettings {
            presets: [("judge", 1), ("plaintiff", 3), ("defendant", 4)]
                .into_iter()
                .map(|(s, p)| (s.to_owned(), p))
                .collect(),
            overview_preset: 9,
            debounce: ms(500),
            release: ms(1000),
            hold: ms(3000),
            overview_after: ms(5000),
            threshold_dbfs: -40.0,
        }
    }

    fn voice(seat: &str, active: bool) -> Input {
        Input::Voice {
            seat: seat.into(),
            active,
        }
    }

    fn goto(seat: &str, preset: u8) -> Vec<Output> {
        vec![Output::GotoPreset {
            shot: Shot::Seat(seat.into()),
            preset,
        }]
    }

    fn overview() -> Vec<Output> {
        vec![Output::GotoPreset {
            shot: Shot::Overview,
            preset: 9,
        }]
    }

    /// A core already moved to the overview at t=0.
    fn started() -> Follow {
        let mut f = Follow::new(settings());
        assert_eq!(f.handle(ms(0), Input::Tick), overview());
        f
    }

    #[test]
    fn the_first_input_moves_the_camera_to_the_overview() {
        let mut f = Follow::new(settings());
        assert_eq!(f.handle(ms(0), Input::Tick), overview());
        assert_eq!(f.handle(ms(10), Input::Tick), vec![]);
    }

    #[test]
    fn a_seat_is_framed_only_after_the_debounce_time() {
        let mut f = started();
        f.handle(ms(4000), voice("judge", true));
        assert_eq!(f.handle(ms(4499), Input::Tick), vec![]);
        assert_eq!(f.handle(ms(4500), Input::Tick), goto("judge", 1));
    }

    #[test]
    fn a_short_burst_shorter_than_the_debounce_does_not_move_the_camera() {
        let mut f = started();
        f.handle(ms(4000), voice("plaintiff", true));
        f.handle(ms(4300), voice("plaintiff", false));
        assert_eq!(f.handle(ms(6000), Input::Tick), vec![]);
        assert_eq!(f.shot(), Some(&Shot::Overview));
    }

    #[test]
    fn pauses_between_words_shorter_than_the_release_keep_the_speaker_framed() {
        let mut f = started();
        f.handle(ms(4000), voice("judge", true));
        assert_eq!(f.handle(ms(4500), Input::Tick), goto("judge", 1));
        f.handle(ms(5000), voice("judge", false));
        f.handle(ms(5900), voice("judge", true));
        f.handle(ms(6000), voice("plaintiff", true));
        assert_eq!(
            f.handle(ms(9000), Input::Tick),
            vec![],
            "judge still speaking"
        );
    }

    #[test]
    fn overlapping_speech_does_not_take_the_camera_from_the_current_speaker() {
        let mut f = started();
        f.handle(ms(4000), voice("judge", true));
        f.handle(ms(4500), Input::Tick);
        f.handle(ms(9000), voice("defendant", true));
        for t in (9000..15000).step_by(100) {
            assert_eq!(f.handle(ms(t), Input::Tick), vec![], "at {t} ms");
        }
        // The judge stops; the defendant, still talking, gets the camera after release.
        f.handle(ms(15000), voice("judge", false));
        assert_eq!(f.handle(ms(15999), Input::Tick), vec![]);
        assert_eq!(f.handle(ms(16000), Input::Tick), goto("defendant", 4));
    }

    #[test]
    fn the_camera_holds_a_shot_for_the_hold_time_before_moving_again() {
        let mut f = started();
        f.handle(ms(1000), voice("judge", true));
        assert_eq!(f.handle(ms(3000), Input::Tick), goto("judge", 1));
        f.handle(ms(3200), voice("judge", false));
        f.handle(ms(3300), voice("plaintiff", true));
        // Judge released at 4200 and plaintiff debounced at 3800, but hold runs to 6000.
        assert_eq!(f.handle(ms(5999), Input::Tick), vec![]);
        assert_eq!(f.handle(ms(6000), Input::Tick), goto("plaintiff", 3));
    }

    #[test]
    fn the_longest_speaking_seat_wins_when_the_camera_is_free() {
        let mut f = started();
        f.handle(ms(4000), voice("defendant", true));
        f.handle(ms(4100), voice("plaintiff", true));
        // Both debounced by 4600; the defendant started first.
        assert_eq!(f.handle(ms(4600), Input::Tick), goto("defendant", 4));
    }

    #[test]
    fn silence_returns_the_camera_to_the_overview_after_the_configured_time() {
        let mut f = started();
        f.handle(ms(4000), voice("judge", true));
        f.handle(ms(4500), Input::Tick);
        f.handle(ms(10000), voice("judge", false));
        // Silent since 10000 (confirmed by the release at 11000); overview at 15000.
        assert_eq!(f.handle(ms(14999), Input::Tick), vec![]);
        assert_eq!(f.handle(ms(15000), Input::Tick), overview());
        assert_eq!(f.handle(ms(20000), Input::Tick), vec![], "moves once");
    }

    #[test]
    fn a_seat_without_a_preset_is_never_framed() {
        let mut f = started();
        f.handle(ms(4000), voice("clerk", true));
        assert_eq!(f.handle(ms(8000), Input::Tick), vec![]);
        assert_eq!(f.shot(), Some(&Shot::Overview));
    }

    #[test]
    fn levels_above_the_threshold_count_as_voice() {
        let mut f = started();
        let level = |dbfs| Input::Level {
            seat: "plaintiff".into(),
            dbfs,
        };
        f.handle(ms(4000), level(-60.0));
        f.handle(ms(4100), level(-20.0));
        assert_eq!(f.handle(ms(4600), level(-25.0)), goto("plaintiff", 3));
        f.handle(ms(5000), level(f64::NAN));
        assert_eq!(f.handle(ms(5500), Input::Tick), vec![], "release pending");
    }

    #[test]
    fn next_deadline_names_the_debounce_end_of_a_new_voice() {
        let mut f = started();
        f.handle(ms(4000), voice("judge", true));
        assert_eq!(f.next_deadline(ms(4000)), Some(ms(4500)));
        f.handle(ms(4500), Input::Tick);
        f.handle(ms(5000), voice("judge", false));
        assert_eq!(f.next_deadline(ms(5000)), Some(ms(6000)), "release");
    }
}
