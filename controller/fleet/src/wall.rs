//! Video walls (sans-I/O): each wall's configuration and the focus rule.
//!
//! The shell feeds the core what operators set (layout and sources, a focus by hand) and
//! every alarm change; the core answers with the configurations to publish, retained, to
//! each wall device. The focus rule: a **new urgent alarm** for a room (level 3, the
//! engine's highest, which patrol findings enter at, or a kind that means the room has a
//! problem now: a lost source, an offline device, a hearing not recorded, a stalled
//! recording) moves that room into the focus tile of every wall that shows it. Each alarm
//! moves the focus once: a later update of the same alarm does not take the focus back
//! after an operator moved it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use gavel_protocol::{PROTOCOL_VERSION, Wall, WallFocus, WallLayout, WallSource};
use time::OffsetDateTime;

use crate::enforcement::{Alarm, AlarmKind};
use crate::hearings::{Hearing, HearingStatus};

/// How many alarm ids the core remembers as having moved a focus.
const REMEMBERED_ALARMS: usize = 4096;

/// What the shell tells the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Walls loaded from the store at start (published again: the broker may have lost
    /// its retained messages).
    Restore(Vec<(String, Wall)>),
    /// An operator sets a wall's layout and sources (the focus stays if its room is still
    /// on the wall).
    Set {
        device: String,
        layout: WallLayout,
        sources: Vec<WallSource>,
    },
    /// An operator moves a room into focus (`Some((court, room))`) or clears the focus.
    Focus {
        device: String,
        room: Option<(String, String)>,
        by: String,
    },
    /// An alarm was raised or updated (cleared alarms change nothing).
    Alarm(Box<Alarm>),
    /// The hearings as they stand (on every change and periodically): each source's
    /// label shows the case of its room's current hearing.
    Hearings(Vec<Hearing>),
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Store and publish (retained) this configuration for the wall device.
    Publish { device: String, wall: Box<Wall> },
}

/// Why an operator's change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WallError {
    #[error("no wall is configured for {0}")]
    UnknownWall(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// How long before its scheduled start a hearing's case is shown on the wall.
const CASE_AHEAD: time::Duration = time::Duration::minutes(10);

/// The case number of the room's current hearing: the one in progress, else a scheduled
/// one from 10 minutes before its start to its end (the earliest first).
pub fn current_case(
    hearings: &[Hearing],
    court: &str,
    room: &str,
    now: OffsetDateTime,
) -> Option<String> {
    let in_room = hearings
        .iter()
        .filter(|h| h.court == court && h.room == room);
    let in_progress = in_room
        .clone()
        .filter(|h| h.status == HearingStatus::InProgress)
        .min_by_key(|h| h.scheduled_start);
    in_progress
        .or_else(|| {
            in_room
                .filter(|h| {
                    h.status == HearingStatus::Scheduled
                        && h.scheduled_start - CASE_AHEAD <= now
                        && now < h.scheduled_end
                })
                .min_by_key(|h| h.scheduled_start)
        })
        .map(|h| h.case_number.clone())
}

/// Whether an alarm is urgent enough to take a wall's focus.
pub fn is_urgent(alarm: &Alarm) -> bool {
    alarm.level >= 3
        || matches!(
            alarm.kind,
            AlarmKind::SourceLost
                | AlarmKind::DeviceOffline
                | AlarmKind::NotRecording
                | AlarmKind::RecordingStalled
        )
}

/// The walls and the focus rule.
#[derive(Debug, Default)]
pub struct Walls {
    walls: BTreeMap<String, Wall>,
    focused: BTreeSet<String>,
    focused_order: VecDeque<String>,
}

/// A wall's next version: grows by one, or jumps to the wall clock in milliseconds, so
/// versions keep growing across controller restarts.
fn next_version(previous: u64, now: OffsetDateTime) -> u64 {
    let ms = (now.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    (previous + 1).max(ms)
}

impl Walls {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the walls with what the store holds, publishing nothing (a controller
    /// cluster shares one table: every instance reloads it before it decides).
    pub fn replace(&mut self, walls: impl IntoIterator<Item = (String, Wall)>) {
        self.walls = walls.into_iter().collect();
    }

    /// Every wall's configuration, by device.
    pub fn all(&self) -> &BTreeMap<String, Wall> {
        &self.walls
    }

    /// One wall's configuration.
    pub fn get(&self, device: &str) -> Option<&Wall> {
        self.walls.get(device)
    }

    /// Feeds one input at `now`; refusals name what was wrong.
    pub fn handle(&mut self, now: OffsetDateTime, input: Input) -> Result<Vec<Output>, WallError> {
        match input {
            Input::Restore(walls) => {
                let mut out = Vec::new();
                for (device, wall) in walls {
                    self.walls.insert(device.clone(), wall.clone());
                    out.push(Output::Publish {
                        device,
                        wall: Box::new(wall),
                    });
                }
                Ok(out)
            }
            Input::Set {
                device,
                layout,
                sources,
            } => {
                let previous = self.walls.get(&device);
                let focus = previous.and_then(|w| w.focus.clone()).filter(|f| {
                    sources
                        .iter()
                        .any(|s| s.court == f.court && s.room == f.room)
                });
                let wall = Wall {
                    v: PROTOCOL_VERSION,
                    ts: now,
                    version: next_version(previous.map_or(0, |w| w.version), now),
                    layout,
                    sources,
                    focus,
                };
                gavel_protocol::Message::validate(&wall).map_err(|i| WallError::Invalid {
                    field: i.field,
                    reason: i.reason,
                })?;
                Ok(vec![self.store(device, wall)])
            }
            Input::Focus { device, room, by } => {
                let wall = self
                    .walls
                    .get(&device)
                    .ok_or_else(|| WallError::UnknownWall(device.clone()))?;
                let focus = match room {
                    None => None,
                    Some((court, room)) => {
                        if !wall
                            .sources
                            .iter()
                            .any(|s| s.court == court && s.room == room)
                        {
                            return Err(WallError::Invalid {
                                field: "room".into(),
                                reason: format!("{court}/{room} is not on wall {device}"),
                            });
                        }
                        Some(WallFocus {
                            court,
                            room,
                            reason: format!("operator {by}"),
                            alarm: None,
                            at: now,
                        })
                    }
                };
                let mut wall = wall.clone();
                wall.focus = focus;
                wall.ts = now;
                wall.version = next_version(wall.version, now);
                Ok(vec![self.store(device, wall)])
            }
            Input::Alarm(alarm) => Ok(self.alarm(now, &alarm)),
            Input::Hearings(hearings) => {
                let mut out = Vec::new();
                let devices: Vec<String> = self.walls.keys().cloned().collect();
                for device in devices {
                    let Some(mut wall) = self.walls.get(&device).cloned() else {
                        continue;
                    };
                    let mut changed = false;
                    for s in &mut wall.sources {
                        let case = current_case(&hearings, &s.court, &s.room, now);
                        if case.is_some() && s.case_number != case {
                            s.case_number = case;
                            changed = true;
                        }
                    }
                    if changed {
                        wall.ts = now;
                        wall.version = next_version(wall.version, now);
                        out.push(self.store(device, wall));
                    }
                }
                Ok(out)
            }
        }
    }

    fn store(&mut self, device: String, wall: Wall) -> Output {
        self.walls.insert(device.clone(), wall.clone());
        Output::Publish {
            device,
            wall: Box::new(wall),
        }
    }

    fn alarm(&mut self, now: OffsetDateTime, alarm: &Alarm) -> Vec<Output> {
        if alarm.resolved.is_some() || !is_urgent(alarm) || self.focused.contains(&alarm.id) {
            return Vec::new();
        }
        let (Some(court), Some(room)) = (&alarm.court, &alarm.room) else {
            return Vec::new();
        };
        self.focused.insert(alarm.id.clone());
        self.focused_order.push_back(alarm.id.clone());
        if self.focused_order.len() > REMEMBERED_ALARMS
            && let Some(old) = self.focused_order.pop_front()
        {
            self.focused.remove(&old);
        }
        let showing: Vec<String> = self
            .walls
            .iter()
            .filter(|(_, w)| {
                w.sources
                    .iter()
                    .any(|s| &s.court == court && &s.room == room)
                    && w.focus
                        .as_ref()
                        .is_none_or(|f| (&f.court, &f.room) != (court, room))
            })
            .map(|(d, _)| d.clone())
            .collect();
        let mut out = Vec::new();
        for device in showing {
            let Some(mut wall) = self.walls.get(&device).cloned() else {
                continue;
            };
            let kind = serde_json::to_value(alarm.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut reason = format!("{kind} (level {}): {}", alarm.level, alarm.message);
            if reason.len() > 200 {
                let mut cut = 200;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
            }
            wall.focus = Some(WallFocus {
                court: court.clone(),
                room: room.clone(),
                reason,
                alarm: Some(alarm.id.clone()),
                at: now,
            });
            wall.ts = now;
            wall.version = next_version(wall.version, now);
            out.push(self.store(device, wall));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforcement::{Stamp, Subject};

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_770_000 + s).expect("ts")
    }

    fn source(court: &str, room: &str) -> WallSource {
        WallSource {
            court: court.into(),
            room: room.into(),
            case_number: None,
            url: format!("rtsp://cam/{room}/main"),
            sub_url: None,
        }
    }

    fn alarm(id: &str, kind: AlarmKind, level: u8, room: &str) -> Alarm {
        Alarm {
            id: id.into(),
            kind,
            subject: Subject::Device {
                device: format!("{room}-cam"),
            },
            court: Some("hz".into()),
            room: Some(room.into()),
            level,
            message: format!("{room} has a problem"),
            raised_at: t(0),
            updated_at: t(0),
            acknowledged: None,
            resolved: None,
            escalated_at: None,
            finding: None,
            notes: Vec::new(),
        }
    }

    fn walls() -> Walls {
        let mut w = Walls::new();
        w.handle(
            t(0),
            Input::Set {
                device: "wall-1".into(),
                layout: WallLayout::FocusPlus5,
                sources: ["r1", "r2", "r3"].iter().map(|r| source("hz", r)).collect(),
            },
        )
        .expect("set");
        w.handle(
            t(0),
            Input::Set {
                device: "wall-2".into(),
                layout: WallLayout::Grid2,
                sources: vec![source("hz", "r1"), source("other", "r9")],
            },
        )
        .expect("set");
        w
    }

    fn published(out: &[Output]) -> Vec<(String, Option<String>)> {
        out.iter()
            .map(|Output::Publish { device, wall }| {
                (device.clone(), wall.focus.as_ref().map(|f| f.room.clone()))
            })
            .collect()
    }

    #[test]
    fn an_urgent_alarm_moves_its_room_into_focus_on_every_wall_that_shows_it() {
        let mut w = walls();
        let out = w
            .handle(
                t(5),
                Input::Alarm(Box::new(alarm("a1", AlarmKind::SourceLost, 2, "r1"))),
            )
            .expect("alarm");
        assert_eq!(
            published(&out),
            [
                ("wall-1".to_owned(), Some("r1".to_owned())),
                ("wall-2".to_owned(), Some("r1".to_owned()))
            ]
        );
        let Output::Publish { wall, .. } = &out[0];
        let focus = wall.focus.as_ref().expect("focus");
        assert_eq!(focus.alarm.as_deref(), Some("a1"));
        assert!(
            focus.reason.starts_with("source_lost (level 2)"),
            "{}",
            focus.reason
        );
    }

    #[test]
    fn a_level_3_finding_of_any_kind_takes_the_focus_and_a_notice_does_not() {
        let mut w = walls();
        let out = w
            .handle(
                t(5),
                Input::Alarm(Box::new(alarm("n", AlarmKind::ClockDrift, 1, "r2"))),
            )
            .expect("alarm");
        assert!(out.is_empty());
        let out = w
            .handle(
                t(6),
                Input::Alarm(Box::new(alarm("f", AlarmKind::DiskLow, 3, "r2"))),
            )
            .expect("alarm");
        assert_eq!(
            published(&out),
            [("wall-1".to_owned(), Some("r2".to_owned()))]
        );
    }

    #[test]
    fn a_room_no_wall_shows_and_an_alarm_without_a_room_change_nothing() {
        let mut w = walls();
        let out = w
            .handle(
                t(5),
                Input::Alarm(Box::new(alarm("x", AlarmKind::SourceLost, 3, "r7"))),
            )
            .expect("alarm");
        assert!(out.is_empty());
        let mut a = alarm("y", AlarmKind::SourceLost, 3, "r1");
        a.room = None;
        assert!(
            w.handle(t(5), Input::Alarm(Box::new(a)))
                .expect("alarm")
                .is_empty()
        );
    }

    #[test]
    fn each_alarm_moves_the_focus_once_so_an_operator_can_move_it_back() {
        let mut w = walls();
        let a = alarm("a1", AlarmKind::DeviceOffline, 2, "r2");
        w.handle(t(5), Input::Alarm(Box::new(a.clone())))
            .expect("alarm");
        w.handle(
            t(6),
            Input::Focus {
                device: "wall-1".into(),
                room: Some(("hz".into(), "r3".into())),
                by: "duty.li".into(),
            },
        )
        .expect("focus");
        // The same alarm escalates: no second move.
        let mut escalated = a;
        escalated.level = 3;
        let out = w
            .handle(t(7), Input::Alarm(Box::new(escalated)))
            .expect("alarm");
        assert!(out.is_empty());
        assert_eq!(
            w.get("wall-1")
                .and_then(|x| x.focus.as_ref())
                .map(|f| f.room.as_str()),
            Some("r3")
        );
    }

    fn hearing(room: &str, case: &str, start: i64, status: HearingStatus) -> Hearing {
        Hearing {
            id: format!("h-{case}"),
            case_number: case.into(),
            court: "hz".into(),
            room: room.into(),
            scheduled_start: t(start),
            scheduled_end: t(start + 3600),
            judge: "王法官".into(),
            parties: Vec::new(),
            status,
            opened_at: None,
            closed_at: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn labels_show_the_case_of_the_rooms_current_hearing() {
        let mut w = walls();
        let hearings = vec![
            hearing("r1", "(2026)1号", 60, HearingStatus::Scheduled),
            hearing("r2", "(2026)2号", 5000, HearingStatus::Scheduled),
            hearing("r3", "(2026)3号", -100, HearingStatus::InProgress),
            hearing("r3", "(2026)4号", 10, HearingStatus::Cancelled),
        ];
        let out = w
            .handle(t(0), Input::Hearings(hearings.clone()))
            .expect("hearings");
        let cases: Vec<Option<String>> = w
            .get("wall-1")
            .expect("wall")
            .sources
            .iter()
            .map(|s| s.case_number.clone())
            .collect();
        // r1 starts within 10 minutes; r2 is far off; r3 is in progress.
        assert_eq!(
            cases,
            [Some("(2026)1号".into()), None, Some("(2026)3号".into())]
        );
        assert_eq!(out.len(), 2, "both walls show r1");
        // Nothing changed: nothing published.
        assert!(
            w.handle(t(1), Input::Hearings(hearings))
                .expect("ok")
                .is_empty()
        );
    }

    #[test]
    fn a_resolved_alarm_takes_no_focus() {
        let mut w = walls();
        let mut a = alarm("a1", AlarmKind::SourceLost, 3, "r1");
        a.resolved = Some(Stamp {
            by: "condition cleared".into(),
            at: t(1),
        });
        assert!(
            w.handle(t(2), Input::Alarm(Box::new(a)))
                .expect("ok")
                .is_empty()
        );
    }

    #[test]
    fn versions_only_grow_even_when_the_clock_steps_back() {
        let mut w = walls();
        let v1 = w.get("wall-1").expect("wall").version;
        w.handle(
            t(-1000),
            Input::Focus {
                device: "wall-1".into(),
                room: None,
                by: "x".into(),
            },
        )
        .expect("focus");
        assert_eq!(w.get("wall-1").expect("wall").version, v1 + 1);
    }

    #[test]
    fn setting_sources_keeps_a_focus_still_on_the_wall_and_drops_one_that_is_not() {
        let mut w = walls();
        w.handle(
            t(1),
            Input::Alarm(Box::new(alarm("a", AlarmKind::SourceLost, 2, "r2"))),
        )
        .expect("alarm");
        w.handle(
            t(2),
            Input::Set {
                device: "wall-1".into(),
                layout: WallLayout::Grid3,
                sources: vec![source("hz", "r2"), source("hz", "r4")],
            },
        )
        .expect("set");
        assert!(w.get("wall-1").expect("wall").focus.is_some());
        w.handle(
            t(3),
            Input::Set {
                device: "wall-1".into(),
                layout: WallLayout::Grid3,
                sources: vec![source("hz", "r4")],
            },
        )
        .expect("set");
        assert!(w.get("wall-1").expect("wall").focus.is_none());
    }

    #[test]
    fn bad_changes_are_refused_naming_the_field() {
        let mut w = walls();
        let mut bad = source("hz", "r1");
        bad.url = "http://x".into();
        let err = w
            .handle(
                t(1),
                Input::Set {
                    device: "wall-1".into(),
                    layout: WallLayout::Single,
                    sources: vec![bad],
                },
            )
            .expect_err("refused");
        assert!(matches!(err, WallError::Invalid { ref field, .. } if field == "sources[0].url"));
        let err = w
            .handle(
                t(1),
                Input::Focus {
                    device: "wall-1".into(),
                    room: Some(("hz".into(), "r9".into())),
                    by: "x".into(),
                },
            )
            .expect_err("refused");
        assert!(err.to_string().contains("not on wall wall-1"), "{err}");
        let err = w
            .handle(
                t(1),
                Input::Focus {
                    device: "wall-9".into(),
                    room: None,
                    by: "x".into(),
                },
            )
            .expect_err("refused");
        assert_eq!(err, WallError::UnknownWall("wall-9".into()));
    }
}
