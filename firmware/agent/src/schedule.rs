//! The device's schedule core: when to start and stop recording by the room's schedule.
//! Sans-I/O: given the time and what the recorder reports, it answers with what to do;
//! the agent's room shell (`room.rs`) carries it out.
//!
//! Rules:
//! - A hearing that is scheduled or in progress starts recording at `start - pre_roll`.
//! - It keeps recording until the schedule says it is closed or cancelled, or someone stops
//!   it (clerk, controller). Without word, a safety stop ends it at `end + overrun`, or
//!   earlier when the room's next hearing is due (never before its own scheduled end).
//! - Cancelled and closed hearings never start; a hearing whose recording was stopped on
//!   this device never starts again (the recorder refuses it too: a stopped hearing is
//!   never appended to).
//! - A hearing the recorder resumed after a restart is kept as if this core had started
//!   it; a recording the schedule does not know (a clerk's ad hoc hearing) is left alone.
//! - Schedules only move forward: a version not newer than the one held is ignored, and
//!   one for another room is refused.

use std::collections::{BTreeMap, BTreeSet};

use gavel_protocol::{Placement, Schedule, ScheduledHearing, ScheduledStatus};
use time::{Duration, OffsetDateTime};

/// Who the core says it is in audit records.
pub const BY_SCHEDULE: &str = "schedule";

/// How long a failed start waits before it is tried again.
pub const RETRY: Duration = Duration::seconds(5);

/// Schedule core settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// How long past its scheduled end an unclosed hearing keeps recording.
    pub overrun: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            overrun: Duration::minutes(60),
        }
    }
}

/// What the core is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A schedule arrived from the controller.
    Schedule(Schedule),
    /// The hearing the recorder records now (none when idle).
    Recorder { hearing: Option<String> },
    /// The recorder refused to start a hearing because its recording was already stopped.
    Ended { hearing: String },
    /// Time passes.
    Tick,
}

/// What the core asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Keep this schedule in the device store (it is the newest).
    Store(Schedule),
    /// Start recording a hearing.
    Start { hearing: String, reason: String },
    /// Stop recording a hearing.
    Stop { hearing: String, reason: String },
}

/// Why a schedule was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("schedule version {got} is the one held")]
    Same { got: u64 },
    #[error("schedule version {got} is older than the one held ({have})")]
    Older { have: u64, got: u64 },
    #[error("schedule is for {court}/{room}, but this device is installed in {own}")]
    OtherRoom {
        court: String,
        room: String,
        own: String,
    },
}

/// The schedule core.
#[derive(Debug)]
pub struct Core {
    settings: Settings,
    placement: Option<Placement>,
    /// The newest schedule held.
    schedule: Option<Schedule>,
    /// The hearing the recorder records, as last reported.
    recording: Option<String>,
    /// Hearings whose recording was stopped on this device (never started again).
    done: BTreeSet<String>,
    /// Starts asked for, by hearing: not asked again before this time.
    retry_at: BTreeMap<String, OffsetDateTime>,
}

fn due_status(h: &ScheduledHearing) -> bool {
    matches!(
        h.status,
        ScheduledStatus::Scheduled | ScheduledStatus::InProgress
    )
}

fn pre_roll_start(h: &ScheduledHearing) -> OffsetDateTime {
    h.start - Duration::seconds(i64::from(h.pre_roll_s))
}

impl Core {
    /// A core holding `stored` (the schedule kept in the device store), if any.
    pub fn new(settings: Settings, placement: Option<Placement>, stored: Option<Schedule>) -> Self {
        Self {
            settings,
            placement,
            schedule: stored,
            recording: None,
            done: BTreeSet::new(),
            retry_at: BTreeMap::new(),
        }
    }

    /// The schedule held.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// The hearing of the schedule due now (window open, not closed or cancelled), for a
    /// clerk who starts without naming one.
    pub fn due(&self, now: OffsetDateTime) -> Option<&ScheduledHearing> {
        let list = self.schedule.as_ref().map(|s| s.hearings.as_slice())?;
        list.iter()
            .filter(|h| due_status(h) && !self.done.contains(&h.id))
            .find(|h| pre_roll_start(h) <= now && now < self.stop_at(list, h))
    }

    /// When the recording of `h` stops without word: `end + overrun`, or when the room's
    /// next hearing is due, but not before `h`'s own scheduled end.
    fn stop_at(&self, list: &[ScheduledHearing], h: &ScheduledHearing) -> OffsetDateTime {
        let safety = h.end + self.settings.overrun;
        let next = list
            .iter()
            .filter(|n| n.id != h.id && due_status(n) && !self.done.contains(&n.id))
            .filter(|n| n.start > h.start)
            .map(pre_roll_start)
            .min();
        match next {
            Some(next) => safety.min(next.max(h.end)),
            None => safety,
        }
    }

    /// Feeds the core one input at `now`.
    pub fn handle(&mut self, now: OffsetDateTime, input: Input) -> Result<Vec<Output>, Refused> {
        let mut out = Vec::new();
        match input {
            Input::Schedule(s) => {
                if let Some(p) = &self.placement
                    && (p.court != s.court || p.room != s.room)
                {
                    return Err(Refused::OtherRoom {
                        court: s.court,
                        room: s.room,
                        own: format!("{}/{}", p.court, p.room),
                    });
                }
                if let Some(have) = self.schedule.as_ref().map(|s| s.version) {
                    if s.version == have {
                        return Err(Refused::Same { got: s.version });
                    }
                    if s.version < have {
                        return Err(Refused::Older {
                            have,
                            got: s.version,
                        });
                    }
                }
                self.schedule = Some(s.clone());
                out.push(Output::Store(s));
            }
            Input::Recorder { hearing } => {
                if let Some(previous) = self.recording.take()
                    && hearing.as_ref() != Some(&previous)
                {
                    // Design: the recorder only lets go of a hearing when it is stopped
                    // (or the agent stops), so it is done on this device.
                    self.done.insert(previous);
                }
                if let Some(h) = &hearing {
                    self.retry_at.remove(h);
                }
                self.recording = hearing;
            }
            Input::Ended { hearing } => {
                self.done.insert(hearing);
            }
            Input::Tick => {}
        }
        out.extend(self.decide(now));
        Ok(out)
    }

    fn decide(&mut self, now: OffsetDateTime) -> Option<Output> {
        let list: &[ScheduledHearing] = self
            .schedule
            .as_ref()
            .map(|s| s.hearings.as_slice())
            .unwrap_or_default();
        if let Some(current) = &self.recording {
            let h = list.iter().find(|h| &h.id == current)?;
            if self.done.contains(current) {
                return None;
            }
            let reason = match h.status {
                ScheduledStatus::Closed => "hearing closed".to_owned(),
                ScheduledStatus::Cancelled => "hearing cancelled".to_owned(),
                _ if now >= self.stop_at(list, h) => {
                    if now >= h.end + self.settings.overrun {
                        format!(
                            "safety stop: {} min past the scheduled end without a close",
                            self.settings.overrun.whole_minutes()
                        )
                    } else {
                        "safety stop: the room's next hearing is due".to_owned()
                    }
                }
                _ => return None,
            };
            let hearing = current.clone();
            self.done.insert(hearing.clone());
            return Some(Output::Stop { hearing, reason });
        }
        let h = list
            .iter()
            .filter(|h| due_status(h) && !self.done.contains(&h.id))
            .filter(|h| self.retry_at.get(&h.id).is_none_or(|t| *t <= now))
            .find(|h| pre_roll_start(h) <= now && now < self.stop_at(list, h))?;
        let hearing = h.id.clone();
        let reason = if now < h.start {
            format!(
                "scheduled start {} (pre-roll {} s)",
                gavel_protocol::rfc3339(h.start),
                h.pre_roll_s
            )
        } else {
            format!("scheduled start {}", gavel_protocol::rfc3339(h.start))
        };
        self.retry_at.insert(hearing.clone(), now + RETRY);
        Some(Output::Start { hearing, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_protocol::PROTOCOL_VERSION;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-27 09:00 UTC);

    fn hearing(
        id: &str,
        start: OffsetDateTime,
        minutes: i64,
        status: ScheduledStatus,
    ) -> ScheduledHearing {
        ScheduledHearing {
            id: id.into(),
            case_number: id.into(),
            start,
            end: start + Duration::minutes(minutes),
            pre_roll_s: 60,
            status,
        }
    }

    fn schedule(version: u64, hearings: Vec<ScheduledHearing>) -> Schedule {
        Schedule {
            v: PROTOCOL_VERSION,
            ts: T0,
            court: "hz".into(),
            room: "r1".into(),
            version,
            hearings,
        }
    }

    fn core() -> Core {
        Core::new(
            Settings {
                overrun: Duration::minutes(30),
            },
            Some(Placement {
                court: "hz".into(),
                room: "r1".into(),
            }),
            None,
        )
    }

    fn starts(out: &[Output]) -> Vec<&str> {
        out.iter()
            .filter_map(|o| match o {
                Output::Start { hearing, .. } => Some(hearing.as_str()),
                _ => None,
            })
            .collect()
    }

    fn stops(out: &[Output]) -> Vec<&str> {
        out.iter()
            .filter_map(|o| match o {
                Output::Stop { hearing, .. } => Some(hearing.as_str()),
                _ => None,
            })
            .collect()
    }

    fn tick(c: &mut Core, t: OffsetDateTime) -> Vec<Output> {
        c.handle(t, Input::Tick).expect("tick")
    }

    #[test]
    fn a_hearing_starts_at_its_start_minus_pre_roll_and_is_stored() {
        let mut c = core();
        let out = c
            .handle(
                T0 - Duration::minutes(10),
                Input::Schedule(schedule(
                    1,
                    vec![hearing("h1", T0, 60, ScheduledStatus::Scheduled)],
                )),
            )
            .expect("taken");
        assert!(matches!(&out[..], [Output::Store(s)] if s.version == 1));
        assert!(starts(&tick(&mut c, T0 - Duration::seconds(61))).is_empty());
        let out = tick(&mut c, T0 - Duration::seconds(60));
        assert_eq!(starts(&out), ["h1"]);
        assert!(
            matches!(&out[0], Output::Start { reason, .. } if reason.contains("pre-roll 60 s"))
        );
    }

    #[test]
    fn a_failed_start_is_tried_again_after_the_retry_delay_and_not_before() {
        let mut c = core();
        c.handle(
            T0,
            Input::Schedule(schedule(
                1,
                vec![hearing("h1", T0, 60, ScheduledStatus::Scheduled)],
            )),
        )
        .expect("taken");
        assert!(starts(&tick(&mut c, T0 + Duration::seconds(1))).is_empty());
        assert!(starts(&tick(&mut c, T0 + Duration::seconds(4))).is_empty());
        assert_eq!(starts(&tick(&mut c, T0 + Duration::seconds(5))), ["h1"]);
    }

    #[test]
    fn cancelled_and_closed_hearings_never_start() {
        let mut c = core();
        let out = c
            .handle(
                T0,
                Input::Schedule(schedule(
                    1,
                    vec![
                        hearing("c", T0, 30, ScheduledStatus::Cancelled),
                        hearing("x", T0 + Duration::minutes(30), 30, ScheduledStatus::Closed),
                    ],
                )),
            )
            .expect("taken");
        assert!(starts(&out).is_empty());
        for m in 0..70 {
            assert!(starts(&tick(&mut c, T0 + Duration::minutes(m))).is_empty());
        }
    }

    #[test]
    fn recording_continues_past_the_end_until_closed_by_a_new_schedule() {
        let mut c = core();
        c.handle(
            T0,
            Input::Schedule(schedule(
                1,
                vec![hearing("h1", T0, 60, ScheduledStatus::InProgress)],
            )),
        )
        .expect("taken");
        c.handle(
            T0,
            Input::Recorder {
                hearing: Some("h1".into()),
            },
        )
        .expect("ok");
        assert!(stops(&tick(&mut c, T0 + Duration::minutes(70))).is_empty());
        let out = c
            .handle(
                T0 + Duration::minutes(75),
                Input::Schedule(schedule(
                    2,
                    vec![hearing("h1", T0, 60, ScheduledStatus::Closed)],
                )),
            )
            .expect("taken");
        assert_eq!(stops(&out), ["h1"]);
        assert!(matches!(&out[1], Output::Stop { reason, .. } if reason == "hearing closed"));
        // Not stopped twice, not started again.
        c.handle(
            T0 + Duration::minutes(75),
            Input::Recorder { hearing: None },
        )
        .expect("ok");
        assert!(tick(&mut c, T0 + Duration::minutes(76)).is_empty());
    }

    #[test]
    fn without_word_the_safety_stop_ends_recording_at_end_plus_overrun() {
        let mut c = core();
        c.handle(
            T0,
            Input::Schedule(schedule(
                1,
                vec![hearing("h1", T0, 60, ScheduledStatus::Scheduled)],
            )),
        )
        .expect("taken");
        c.handle(
            T0,
            Input::Recorder {
                hearing: Some("h1".into()),
            },
        )
        .expect("ok");
        assert!(stops(&tick(&mut c, T0 + Duration::minutes(89))).is_empty());
        let out = tick(&mut c, T0 + Duration::minutes(90));
        assert_eq!(stops(&out), ["h1"]);
        assert!(
            matches!(&out[0], Output::Stop { reason, .. } if reason.contains("safety stop: 30 min"))
        );
    }

    #[test]
    fn an_unclosed_hearing_gives_way_to_the_next_one_but_not_before_its_own_end() {
        let mut c = core();
        let next_start = T0 + Duration::minutes(60);
        c.handle(
            T0,
            Input::Schedule(schedule(
                1,
                vec![
                    hearing("h1", T0, 60, ScheduledStatus::InProgress),
                    hearing("h2", next_start, 60, ScheduledStatus::Scheduled),
                ],
            )),
        )
        .expect("taken");
        c.handle(
            T0,
            Input::Recorder {
                hearing: Some("h1".into()),
            },
        )
        .expect("ok");
        // h2's pre-roll begins a minute before h1's scheduled end: h1 keeps its minute.
        assert!(tick(&mut c, next_start - Duration::seconds(30)).is_empty());
        let out = tick(&mut c, next_start);
        assert_eq!(stops(&out), ["h1"]);
        // Once the recorder has let go of h1, h2 starts.
        let out = c
            .handle(next_start, Input::Recorder { hearing: None })
            .expect("ok");
        assert_eq!(starts(&out), ["h2"]);
    }

    #[test]
    fn a_hearing_stopped_by_a_clerk_is_not_started_again() {
        let mut c = core();
        c.handle(
            T0,
            Input::Schedule(schedule(
                1,
                vec![hearing("h1", T0, 60, ScheduledStatus::Scheduled)],
            )),
        )
        .expect("taken");
        c.handle(
            T0,
            Input::Recorder {
                hearing: Some("h1".into()),
            },
        )
        .expect("ok");
        c.handle(
            T0 + Duration::minutes(20),
            Input::Recorder { hearing: None },
        )
        .expect("ok");
        for s in 0..120 {
            assert!(tick(&mut c, T0 + Duration::minutes(20) + Duration::seconds(s)).is_empty());
        }
        // Nor one the recorder says was already stopped (before a restart).
        let mut c = core();
        c.handle(
            T0,
            Input::Schedule(schedule(
                1,
                vec![hearing("h1", T0, 60, ScheduledStatus::Scheduled)],
            )),
        )
        .expect("taken");
        c.handle(
            T0,
            Input::Ended {
                hearing: "h1".into(),
            },
        )
        .expect("ok");
        assert!(tick(&mut c, T0 + Duration::minutes(1)).is_empty());
    }

    #[test]
    fn after_a_restart_mid_hearing_the_resumed_recording_is_kept_and_still_stopped_on_close() {
        let stored = schedule(3, vec![hearing("h1", T0, 60, ScheduledStatus::Scheduled)]);
        let mut c = Core::new(Settings::default(), None, Some(stored));
        // The recorder resumed h1 by itself at start.
        let out = c
            .handle(
                T0 + Duration::minutes(30),
                Input::Recorder {
                    hearing: Some("h1".into()),
                },
            )
            .expect("ok");
        assert!(out.is_empty(), "{out:?}");
        let out = c
            .handle(
                T0 + Duration::minutes(40),
                Input::Schedule(schedule(
                    4,
                    vec![hearing("h1", T0, 60, ScheduledStatus::Closed)],
                )),
            )
            .expect("taken");
        assert_eq!(stops(&out), ["h1"]);
        // A restart that finds the recorder idle mid-hearing starts it (the recorder
        // resumes or refuses as ended).
        let stored = schedule(3, vec![hearing("h1", T0, 60, ScheduledStatus::Scheduled)]);
        let mut c = Core::new(Settings::default(), None, Some(stored));
        assert_eq!(starts(&tick(&mut c, T0 + Duration::minutes(30))), ["h1"]);
    }

    #[test]
    fn older_same_and_foreign_schedules_are_refused_and_the_held_one_kept() {
        let mut c = core();
        c.handle(
            T0,
            Input::Schedule(schedule(
                5,
                vec![hearing("h1", T0, 60, ScheduledStatus::Scheduled)],
            )),
        )
        .expect("taken");
        assert_eq!(
            c.handle(T0, Input::Schedule(schedule(4, vec![]))),
            Err(Refused::Older { have: 5, got: 4 })
        );
        assert_eq!(
            c.handle(T0, Input::Schedule(schedule(5, vec![]))),
            Err(Refused::Same { got: 5 })
        );
        let mut other = schedule(9, vec![]);
        other.room = "r2".into();
        let err = c
            .handle(T0, Input::Schedule(other))
            .expect_err("other room");
        assert!(err.to_string().contains("installed in hz/r1"), "{err}");
        assert_eq!(c.schedule().map(|s| s.version), Some(5));
        assert_eq!(c.schedule().map(|s| s.hearings.len()), Some(1));
    }

    #[test]
    fn a_clerks_unscheduled_recording_is_left_alone() {
        let mut c = core();
        c.handle(
            T0,
            Input::Schedule(schedule(
                1,
                vec![hearing(
                    "h1",
                    T0 + Duration::hours(3),
                    60,
                    ScheduledStatus::Scheduled,
                )],
            )),
        )
        .expect("taken");
        c.handle(
            T0,
            Input::Recorder {
                hearing: Some("adhoc-1".into()),
            },
        )
        .expect("ok");
        for m in 0..120 {
            assert!(tick(&mut c, T0 + Duration::minutes(m)).is_empty());
        }
    }

    #[test]
    fn the_due_hearing_is_the_one_whose_window_holds_now() {
        let mut c = core();
        c.handle(
            T0,
            Input::Schedule(schedule(
                1,
                vec![hearing("h1", T0, 60, ScheduledStatus::Scheduled)],
            )),
        )
        .expect("taken");
        assert_eq!(
            c.due(T0 + Duration::minutes(5)).map(|h| h.id.as_str()),
            Some("h1")
        );
        assert!(c.due(T0 - Duration::minutes(5)).is_none());
        assert!(c.due(T0 + Duration::minutes(95)).is_none());
    }
}
