//! Sans-I/O enforcement of "record every hearing" (每庭必录) and of device health, as one
//! alarm engine.
//!
//! The shell feeds it hearings, what rooms and devices report, and time; it answers with
//! alarms raised, updated (escalated, repeated) and cleared. One alarm per condition
//! (kind + subject) while it holds: a condition that keeps holding updates its alarm, it
//! never opens another. Unacknowledged alarms escalate one level every `escalate_after`
//! up to level 3. Acknowledging stops escalation; resolving closes the alarm with who and
//! when; a condition that stops holding clears it automatically.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::hearings::{Hearing, HearingStatus};

/// What an alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// A hearing is past its start plus grace and its room is not recording.
    NotRecording,
    /// The room recorded, then stopped before the hearing closed.
    StoppedEarly,
    /// Recording, but no segment closed for longer than the stall limit.
    RecordingStalled,
    /// A source of the room is lost while its hearing runs.
    SourceLost,
    /// A device of the room is offline while its hearing runs.
    DeviceOffline,
    /// The hearing was not opened within the late limit after its start.
    OpenedLate,
    /// Free disk space below the threshold, or forecast to run out during today's hearings.
    DiskLow,
    /// A temperature above the threshold.
    TemperatureHigh,
    /// The device clock is off by more than the limit.
    ClockDrift,
    /// The agent restarted too often in a short time.
    RestartLoop,
    /// A hearing patrol finding of a device (庭审智能巡查): its level is the finding's
    /// severity (urgent findings are level 3 at once).
    Patrol,
    /// A device's recordings volume is below its low watermark and nothing on it can be
    /// evicted (every segment is un-archived or under legal hold): recording goes on, but
    /// stops when the disk is full.
    RecordingAtRisk,
}

/// Who or what an alarm concerns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Subject {
    Hearing {
        hearing: String,
    },
    Source {
        hearing: String,
        source: String,
    },
    Device {
        device: String,
    },
    /// A patrol finding: the device, the finding type and where (source, or source/seat).
    Finding {
        device: String,
        finding: String,
        source: String,
    },
}

/// One alarm's identity: at most one open alarm per key.
pub type AlarmKey = (AlarmKind, Subject);

/// A condition that holds: the alarm's court, room and message (empty: keep the open
/// alarm's message).
type Hold = (Option<String>, Option<String>, String);

/// Who did something, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// An alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Unique id (kind, subject and raise time).
    pub id: String,
    pub kind: AlarmKind,
    pub subject: Subject,
    pub court: Option<String>,
    pub room: Option<String>,
    /// 1 (notice) to 3 (urgent); grows while unacknowledged.
    pub level: u8,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub raised_at: OffsetDateTime,
    /// When the condition was last confirmed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub acknowledged: Option<Stamp>,
    /// Set when closed: by a person, or `condition cleared` automatically.
    pub resolved: Option<Stamp>,
    /// When the level last went up (absent: never since raised).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub escalated_at: Option<OffsetDateTime>,
    /// The patrol finding behind a `patrol` alarm (the latest one of its condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<FindingRef>,
    /// Notes people added (inspectors' console, `gavelctl`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// A note on an alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub text: String,
}

/// A patrol finding as the alarm engine sees it: enough to link the alarm to the
/// finding's snapshot and to the recording at its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRef {
    pub device: String,
    /// The finding's event id (shared by its start and end).
    pub event_id: String,
    /// Finding type (`signal_lost`, `disturbance`...).
    pub kind: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
    /// Alarm level of its severity (1-3).
    pub level: u8,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<OffsetDateTime>,
    /// The hearing recorded at the time, and the offset on its timeline (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hearing_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<u64>,
    /// What the analyzer measured.
    #[serde(default)]
    pub detail: String,
}

/// Recording state a room reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RoomRecording {
    Idle,
    Recording,
    /// Recording, with these sources lost.
    Degraded {
        lost: Vec<String>,
    },
}

/// Health facts of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceHealth {
    pub device: String,
    pub court: Option<String>,
    pub room: Option<String>,
    /// Free and total bytes of the recording volume.
    pub disk_free: u64,
    pub disk_total: u64,
    /// Recording write rate, bytes per second (0 when idle).
    pub write_rate: u64,
    pub max_temperature: Option<f64>,
    /// Clock offset from the reference, milliseconds.
    pub clock_offset_ms: Option<f64>,
}

/// What the shell feeds the engine. Serializable: in a controller cluster every instance
/// forwards its inputs to the elected leader over the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// A hearing was created or changed.
    Hearing(Hearing),
    /// The clerk opened the hearing.
    Opened {
        hearing: String,
        by: String,
    },
    /// The hearing was closed.
    Closed {
        hearing: String,
    },
    /// A room's recording state.
    Room {
        court: String,
        room: String,
        state: RoomRecording,
    },
    /// A segment of the room closed (recording makes progress).
    Segment {
        court: String,
        room: String,
    },
    /// A device of a room went online or offline.
    Presence {
        device: String,
        court: String,
        room: String,
        online: bool,
    },
    /// A device (re)started its agent.
    Boot {
        device: String,
        /// The new boot's id: a boot reported twice (by two controller instances) counts
        /// once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        boot_id: Option<String>,
    },
    /// Health facts.
    Health(DeviceHealth),
    Acknowledge {
        alarm: String,
        by: String,
    },
    Resolve {
        alarm: String,
        by: String,
    },
    /// A patrol finding started or ended on a device of `court`/`room`.
    Finding {
        court: String,
        room: String,
        finding: FindingRef,
    },
    /// A device's storage policy raised (`on`) or cleared a condition of its recordings
    /// volume (`storage` events): `recording_at_risk` is [`AlarmKind::RecordingAtRisk`],
    /// `disk_full_forecast` holds [`AlarmKind::DiskLow`].
    Storage {
        device: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        court: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// `recording_at_risk` or `disk_full_forecast`.
        alarm: String,
        on: bool,
        detail: String,
    },
    /// Someone added a note to an alarm.
    Note {
        alarm: String,
        by: String,
        text: String,
    },
    Tick,
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Raised(Alarm),
    Updated(Alarm),
    Cleared(Alarm),
}

/// Thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long after a hearing's start the room may still be starting to record.
    pub grace: Duration,
    /// No segment for this long while recording is a stall.
    pub stall_after: Duration,
    /// Not opened this long after the scheduled start is late.
    pub late_after: Duration,
    /// Unacknowledged alarms rise one level per this interval.
    pub escalate_after: Duration,
    /// Minimum free disk share (0-1).
    pub disk_free_min: f64,
    pub temperature_max: f64,
    pub clock_drift_max_ms: f64,
    /// This many boots within `restart_window` is a loop.
    pub restart_loop: usize,
    pub restart_window: Duration,
    /// A patrol alarm holds this long after its finding ended (so a short one, such as
    /// a disturbance, is still seen), unless resolved by hand first.
    pub finding_linger: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grace: Duration::seconds(60),
            stall_after: Duration::seconds(45),
            late_after: Duration::minutes(10),
            escalate_after: Duration::minutes(5),
            disk_free_min: 0.10,
            temperature_max: 70.0,
            clock_drift_max_ms: 1000.0,
            restart_loop: 3,
            restart_window: Duration::minutes(10),
            finding_linger: Duration::minutes(5),
        }
    }
}

#[derive(Debug, Default)]
struct RoomState {
    state: Option<RoomRecording>,
    /// The room has recorded during the current hearing.
    recorded: bool,
    last_segment: Option<OffsetDateTime>,
    offline: BTreeMap<String, bool>,
}

/// The engine.
#[derive(Debug, Default)]
pub struct Engine {
    settings: Settings,
    hearings: BTreeMap<String, (Hearing, Option<OffsetDateTime>)>,
    /// Rooms by court, then room (looked up without allocating).
    rooms: BTreeMap<String, BTreeMap<String, RoomState>>,
    health: BTreeMap<String, DeviceHealth>,
    boots: BTreeMap<String, Vec<OffsetDateTime>>,
    /// Latest boot id per device.
    last_boot: BTreeMap<String, String>,
    alarms: BTreeMap<AlarmKey, Alarm>,
    /// Conditions resolved by a person while still holding: not raised again until they
    /// have cleared once.
    muted: std::collections::BTreeSet<AlarmKey>,
    /// Closed alarms, kept for the shell to persist (cleared on take).
    history: Vec<Alarm>,
    /// Patrol findings by (device, event id), with their court and room.
    findings: BTreeMap<(String, String), (String, String, FindingRef)>,
    /// Storage conditions devices reported as holding, by (device, condition): court,
    /// room and the device's detail.
    storage: BTreeMap<(String, String), StorageCondition>,
}

/// A storage condition a device reported as holding: court, room and the device's detail.
type StorageCondition = (Option<String>, Option<String>, String);

impl Engine {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// Open alarms.
    pub fn open(&self) -> impl Iterator<Item = &Alarm> {
        self.alarms.values()
    }

    /// Alarms closed since the last call.
    pub fn take_closed(&mut self) -> Vec<Alarm> {
        std::mem::take(&mut self.history)
    }

    /// Takes over alarms that were open before (stored by a previous leader): a condition
    /// that still holds updates its stored alarm instead of raising another one, and one
    /// that no longer holds clears it on the next evaluation. Closed alarms are ignored.
    pub fn restore(&mut self, alarms: impl IntoIterator<Item = Alarm>) {
        for a in alarms {
            if a.resolved.is_none() {
                self.alarms.insert((a.kind, a.subject.clone()), a);
            }
        }
    }

    /// Applies one input at `now` and re-evaluates every condition.
    pub fn handle(&mut self, now: OffsetDateTime, input: Input) -> Vec<Output> {
        let mut out = self.apply(now, input);
        self.evaluate(now, &mut out);
        out
    }

    /// Applies many inputs, then evaluates once: what the shell does with a burst.
    ///
    /// Design: evaluation walks every hearing and device (O(n)); applying a burst of inputs
    /// before one evaluation keeps the cost per second bounded by the tick and the burst
    /// rate instead of the message rate.
    pub fn handle_batch(
        &mut self,
        now: OffsetDateTime,
        inputs: impl IntoIterator<Item = Input>,
    ) -> Vec<Output> {
        let mut out = self.apply_only(now, inputs);
        self.evaluate(now, &mut out);
        out
    }

    /// Applies inputs without evaluating conditions; the shell calls [`Engine::evaluate_now`]
    /// later (it bounds how often it evaluates). Acknowledge and resolve still answer at once.
    pub fn apply_only(
        &mut self,
        now: OffsetDateTime,
        inputs: impl IntoIterator<Item = Input>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        for input in inputs {
            out.extend(self.apply(now, input));
        }
        out
    }

    /// Evaluates every condition at `now`.
    pub fn evaluate_now(&mut self, now: OffsetDateTime) -> Vec<Output> {
        let mut out = Vec::new();
        self.evaluate(now, &mut out);
        out
    }

    /// Applies one input without evaluating conditions (acknowledge and resolve answer at once).
    fn apply(&mut self, now: OffsetDateTime, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Hearing(h) => {
                let opened = self.hearings.get(&h.id).and_then(|(_, o)| *o);
                self.hearings.insert(h.id.clone(), (h, opened));
            }
            Input::Opened { hearing, .. } => {
                if let Some((h, opened)) = self.hearings.get_mut(&hearing) {
                    h.status = HearingStatus::InProgress;
                    opened.get_or_insert(now);
                    h.opened_at.get_or_insert(now);
                }
            }
            Input::Closed { hearing } => {
                if let Some((h, _)) = self.hearings.get_mut(&hearing) {
                    h.status = HearingStatus::Closed;
                    h.closed_at.get_or_insert(now);
                }
            }
            Input::Room { court, room, state } => {
                let r = self
                    .rooms
                    .entry(court)
                    .or_default()
                    .entry(room)
                    .or_default();
                if state != RoomRecording::Idle {
                    r.recorded = true;
                    r.last_segment.get_or_insert(now);
                }
                r.state = Some(state);
            }
            Input::Segment { court, room } => {
                self.rooms
                    .entry(court)
                    .or_default()
                    .entry(room)
                    .or_default()
                    .last_segment = Some(now);
            }
            Input::Presence {
                device,
                court,
                room,
                online,
            } => {
                self.rooms
                    .entry(court)
                    .or_default()
                    .entry(room)
                    .or_default()
                    .offline
                    .insert(device, !online);
            }
            Input::Boot { device, boot_id } => {
                if let Some(id) = boot_id {
                    if self.last_boot.get(&device) == Some(&id) {
                        return out;
                    }
                    self.last_boot.insert(device.clone(), id);
                }
                let window = self.settings.restart_window;
                let boots = self.boots.entry(device).or_default();
                boots.push(now);
                boots.retain(|t| now - *t <= window);
            }
            Input::Health(h) => {
                self.health.insert(h.device.clone(), h);
            }
            Input::Acknowledge { alarm, by } => {
                if let Some(a) = self.alarms.values_mut().find(|a| a.id == alarm)
                    && a.acknowledged.is_none()
                {
                    a.acknowledged = Some(Stamp { by, at: now });
                    out.push(Output::Updated(a.clone()));
                }
            }
            Input::Resolve { alarm, by } => {
                if let Some(key) = self
                    .alarms
                    .iter()
                    .find(|(_, a)| a.id == alarm)
                    .map(|(k, _)| k.clone())
                    && let Some(mut a) = self.alarms.remove(&key)
                {
                    self.muted.insert(key);
                    a.resolved = Some(Stamp { by, at: now });
                    self.history.push(a.clone());
                    out.push(Output::Cleared(a));
                }
            }
            Input::Finding {
                court,
                room,
                finding,
            } => {
                self.findings.insert(
                    (finding.device.clone(), finding.event_id.clone()),
                    (court, room, finding),
                );
            }
            Input::Storage {
                device,
                court,
                room,
                alarm,
                on,
                detail,
            } => {
                if on {
                    self.storage.insert((device, alarm), (court, room, detail));
                } else {
                    self.storage.remove(&(device, alarm));
                }
            }
            Input::Note { alarm, by, text } => {
                if let Some(a) = self.alarms.values_mut().find(|a| a.id == alarm) {
                    a.notes.push(Note { by, at: now, text });
                    out.push(Output::Updated(a.clone()));
                }
            }
            Input::Tick => {}
        }
        out
    }

    /// The key of a finding's alarm: one alarm per device, finding type and place.
    fn finding_key(f: &FindingRef) -> AlarmKey {
        let source = match &f.seat {
            Some(seat) => format!("{}/{seat}", f.source),
            None => f.source.clone(),
        };
        (
            AlarmKind::Patrol,
            Subject::Finding {
                device: f.device.clone(),
                finding: f.kind.clone(),
                source,
            },
        )
    }

    /// The latest finding behind a patrol alarm's key.
    fn finding_of(&self, key: &AlarmKey) -> Option<&FindingRef> {
        self.findings
            .values()
            .filter(|(_, _, f)| Self::finding_key(f) == *key)
            .map(|(_, _, f)| f)
            .max_by_key(|f| f.started_at)
    }

    /// Every condition that holds now, with its alarm's court, room and message.
    ///
    /// Design: this runs several times a second over every hearing and device (50,000
    /// rooms in the benchmark), so it allocates only for conditions that hold, and formats
    /// a message only for a new alarm or one whose message carries a changing figure; an
    /// open alarm otherwise keeps its message (an empty one here means "unchanged").
    fn conditions(&self, now: OffsetDateTime) -> BTreeMap<AlarmKey, Hold> {
        let s = &self.settings;
        let mut holds = BTreeMap::new();
        let mut hold = |key: AlarmKey,
                        court: &Option<String>,
                        room: &Option<String>,
                        message: &dyn Fn() -> String| {
            let keep = self.alarms.contains_key(&key) && key.0 != AlarmKind::RecordingStalled;
            let message = if keep { String::new() } else { message() };
            holds.insert(key, (court.clone(), room.clone(), message));
        };
        for (id, (h, opened)) in &self.hearings {
            if matches!(h.status, HearingStatus::Closed | HearingStatus::Cancelled) {
                continue;
            }
            let running = now >= h.scheduled_start && now < h.scheduled_end;
            if !running {
                continue;
            }
            let room = self.rooms.get(&h.court).and_then(|r| r.get(&h.room));
            let place = (Some(h.court.clone()), Some(h.room.clone()));
            let hearing = || Subject::Hearing {
                hearing: id.clone(),
            };
            if opened.is_none() && now >= h.scheduled_start + s.late_after {
                hold(
                    (AlarmKind::OpenedLate, hearing()),
                    &place.0,
                    &place.1,
                    &|| {
                        format!(
                            "hearing {} not opened {} min after its start",
                            h.case_number,
                            s.late_after.whole_minutes()
                        )
                    },
                );
            }
            let state = room.and_then(|r| r.state.as_ref());
            let idle = state.is_none_or(|st| *st == RoomRecording::Idle);
            let recorded = room.is_some_and(|r| r.recorded);
            if idle {
                if recorded {
                    hold(
                        (AlarmKind::StoppedEarly, hearing()),
                        &place.0,
                        &place.1,
                        &|| {
                            format!(
                                "recording of {} stopped before the hearing closed",
                                h.case_number
                            )
                        },
                    );
                } else if now >= h.scheduled_start + s.grace {
                    hold(
                        (AlarmKind::NotRecording, hearing()),
                        &place.0,
                        &place.1,
                        &|| {
                            format!(
                                "{} started at {} and {} is not recording",
                                h.case_number,
                                gavel_protocol::rfc3339(h.scheduled_start),
                                h.room
                            )
                        },
                    );
                }
            } else if let Some(last) = room.and_then(|r| r.last_segment)
                && now - last > s.stall_after
            {
                hold(
                    (AlarmKind::RecordingStalled, hearing()),
                    &place.0,
                    &place.1,
                    &|| {
                        format!(
                            "no recording progress in {} for {} s",
                            h.room,
                            (now - last).whole_seconds()
                        )
                    },
                );
            }
            if let Some(RoomRecording::Degraded { lost }) = state {
                for source in lost {
                    let key = (
                        AlarmKind::SourceLost,
                        Subject::Source {
                            hearing: id.clone(),
                            source: source.clone(),
                        },
                    );
                    hold(key, &place.0, &place.1, &|| {
                        format!("source {source} lost during {}", h.case_number)
                    });
                }
            }
            if let Some(r) = room {
                for (device, offline) in &r.offline {
                    if *offline {
                        let key = (
                            AlarmKind::DeviceOffline,
                            Subject::Device {
                                device: device.clone(),
                            },
                        );
                        hold(key, &place.0, &place.1, &|| {
                            format!("{device} offline during {}", h.case_number)
                        });
                    }
                }
            }
        }
        let mut remaining = None;
        for (device, h) in &self.health {
            let subject = || Subject::Device {
                device: device.clone(),
            };
            if h.disk_total > 0 {
                let share = h.disk_free as f64 / h.disk_total as f64;
                if share < s.disk_free_min {
                    hold((AlarmKind::DiskLow, subject()), &h.court, &h.room, &|| {
                        format!("{device}: {:.0}% disk free", share * 100.0)
                    });
                } else if h.write_rate > 0 {
                    let per_room =
                        remaining.get_or_insert_with(|| self.remaining_hearing_time(now));
                    let left = match (&h.court, &h.room) {
                        (Some(c), Some(r)) => per_room
                            .get(&(c.as_str(), r.as_str()))
                            .copied()
                            .unwrap_or(Duration::ZERO),
                        _ => Duration::ZERO,
                    };
                    let needed = h
                        .write_rate
                        .saturating_mul(u64::try_from(left.whole_seconds()).unwrap_or(0));
                    if needed > h.disk_free {
                        hold((AlarmKind::DiskLow, subject()), &h.court, &h.room, &|| {
                            format!(
                                "{device}: disk forecast to fill during today's hearings ({} GB needed, {} GB free)",
                                needed / 1_000_000_000,
                                h.disk_free / 1_000_000_000
                            )
                        });
                    }
                }
            }
            if let Some(t) = h.max_temperature
                && t > s.temperature_max
            {
                hold(
                    (AlarmKind::TemperatureHigh, subject()),
                    &h.court,
                    &h.room,
                    &|| format!("{device}: {t:.1} °C"),
                );
            }
            if let Some(o) = h.clock_offset_ms
                && o.abs() > s.clock_drift_max_ms
            {
                hold(
                    (AlarmKind::ClockDrift, subject()),
                    &h.court,
                    &h.room,
                    &|| format!("{device}: clock off by {:.1} s", o / 1000.0),
                );
            }
        }
        for (device, boots) in &self.boots {
            let recent = boots
                .iter()
                .filter(|t| now - **t <= s.restart_window)
                .count();
            if recent >= s.restart_loop {
                let (court, room) = self
                    .health
                    .get(device)
                    .map(|h| (h.court.clone(), h.room.clone()))
                    .unwrap_or((None, None));
                let key = (
                    AlarmKind::RestartLoop,
                    Subject::Device {
                        device: device.clone(),
                    },
                );
                hold(key, &court, &room, &|| {
                    format!(
                        "{device}: {recent} agent starts in {} min",
                        s.restart_window.whole_minutes()
                    )
                });
            }
        }
        for ((device, condition), (court, room, detail)) in &self.storage {
            let kind = match condition.as_str() {
                "recording_at_risk" => AlarmKind::RecordingAtRisk,
                _ => AlarmKind::DiskLow,
            };
            let key = (
                kind,
                Subject::Device {
                    device: device.clone(),
                },
            );
            hold(key, court, room, &|| format!("{device}: {detail}"));
        }
        for (court, room, f) in self.findings.values() {
            let holding = f.ended_at.is_none_or(|end| now - end < s.finding_linger);
            if holding {
                let (court, room) = (Some(court.clone()), Some(room.clone()));
                hold(Self::finding_key(f), &court, &room, &|| {
                    let place = match &f.seat {
                        Some(seat) => format!("{} {seat}", f.source),
                        None => f.source.clone(),
                    };
                    format!("{}: {} on {place}: {}", f.device, f.kind, f.detail)
                });
            }
        }
        holds
    }

    /// Time of hearings still ahead today per (court, room), from now to their ends.
    ///
    /// Design: computed once per evaluation in one pass over the hearings; looking it up per
    /// device instead of scanning every hearing per device (devices x hearings) is what
    /// keeps a 50,000-room evaluation in milliseconds.
    fn remaining_hearing_time(&self, now: OffsetDateTime) -> BTreeMap<(&str, &str), Duration> {
        let end_of_day = now.replace_time(time::Time::MIDNIGHT) + Duration::days(1);
        let mut per_room: BTreeMap<(&str, &str), Duration> = BTreeMap::new();
        for (h, _) in self.hearings.values() {
            if matches!(h.status, HearingStatus::Closed | HearingStatus::Cancelled) {
                continue;
            }
            let from = h.scheduled_start.max(now);
            let to = h.scheduled_end.min(end_of_day);
            if to > from {
                *per_room
                    .entry((h.court.as_str(), h.room.as_str()))
                    .or_insert(Duration::ZERO) += to - from;
            }
        }
        per_room
    }

    fn evaluate(&mut self, now: OffsetDateTime, out: &mut Vec<Output>) {
        let linger = self.settings.finding_linger;
        self.findings
            .retain(|_, (_, _, f)| f.ended_at.is_none_or(|end| now - end < linger));
        let holds = self.conditions(now);
        self.muted.retain(|k| holds.contains_key(k));
        // Clear what no longer holds.
        let gone: Vec<AlarmKey> = self
            .alarms
            .keys()
            .filter(|k| !holds.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(mut a) = self.alarms.remove(&key) {
                a.resolved = Some(Stamp {
                    by: "condition cleared".into(),
                    at: now,
                });
                self.history.push(a.clone());
                out.push(Output::Cleared(a));
            }
        }
        for (key, (court, room, message)) in holds {
            if self.muted.contains(&key) {
                continue;
            }
            match self.alarms.get_mut(&key) {
                Some(a) => {
                    // Design: a changed message (a number in it moved) is kept silently;
                    // only escalation and acknowledgement are news, so nothing storms.
                    a.updated_at = now;
                    if key.0 == AlarmKind::Patrol
                        && let Some(f) = self
                            .findings
                            .values()
                            .filter(|(_, _, f)| Self::finding_key(f) == key)
                            .map(|(_, _, f)| f)
                            .max_by_key(|f| f.started_at)
                        && a.finding.as_ref() != Some(f)
                    {
                        a.finding = Some(f.clone());
                    }
                    if !message.is_empty() {
                        a.message = message;
                    }
                    let mut changed = false;
                    if a.acknowledged.is_none() && a.level < 3 {
                        let due =
                            a.escalated_at.unwrap_or(a.raised_at) + self.settings.escalate_after;
                        if now >= due {
                            a.level += 1;
                            a.escalated_at = Some(now);
                            changed = true;
                        }
                    }
                    if changed {
                        out.push(Output::Updated(a.clone()));
                    }
                }
                None => {
                    let finding = self.finding_of(&key).cloned();
                    let level = match key.0 {
                        // Design: a finding's alarm starts at its severity's level, so an
                        // urgent finding (disturbance, signal lost) is urgent at once.
                        AlarmKind::Patrol => finding.as_ref().map_or(2, |f| f.level.clamp(1, 3)),
                        AlarmKind::OpenedLate | AlarmKind::ClockDrift => 1,
                        // Design: a hearing not recorded is urgent from the start (level 2:
                        // the room and the court's duty technician); unacknowledged, it
                        // reaches level 3 (inspectors) one step later.
                        _ => 2,
                    };
                    let alarm = Alarm {
                        id: format!(
                            "{:?}-{}-{}",
                            key.0,
                            subject_text(&key.1),
                            now.unix_timestamp_nanos() / 1_000_000
                        )
                        .to_lowercase(),
                        kind: key.0,
                        subject: key.1.clone(),
                        court,
                        room,
                        level,
                        message,
                        raised_at: now,
                        updated_at: now,
                        acknowledged: None,
                        resolved: None,
                        escalated_at: None,
                        finding,
                        notes: Vec::new(),
                    };
                    out.push(Output::Raised(alarm.clone()));
                    self.alarms.insert(key, alarm);
                }
            }
        }
    }
}

fn subject_text(s: &Subject) -> String {
    match s {
        Subject::Hearing { hearing } => hearing.clone(),
        Subject::Source { hearing, source } => format!("{hearing}-{source}"),
        Subject::Device { device } => device.clone(),
        Subject::Finding {
            device,
            finding,
            source,
        } => format!("{device}-{finding}-{}", source.replace('/', "-")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hearings::Party;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-27 09:00 +8);

    fn hearing() -> Hearing {
        Hearing {
            id: "h1".into(),
            case_number: "(2026)浙0106民初1234号".into(),
            court: "hz".into(),
            room: "room-101".into(),
            scheduled_start: T0,
            scheduled_end: T0 + Duration::hours(1),
            judge: "王法官".into(),
            parties: vec![Party {
                role: "plaintiff".into(),
                name: "张三".into(),
            }],
            status: HearingStatus::Scheduled,
            opened_at: None,
            closed_at: None,
            history: Vec::new(),
        }
    }

    fn room(state: RoomRecording) -> Input {
        Input::Room {
            court: "hz".into(),
            room: "room-101".into(),
            state,
        }
    }

    fn raised(out: &[Output]) -> Vec<AlarmKind> {
        out.iter()
            .filter_map(|o| match o {
                Output::Raised(a) => Some(a.kind),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hearing_start_without_recording_raises_alarm_after_grace() {
        let mut e = Engine::new(Settings::default());
        e.handle(T0 - Duration::minutes(5), Input::Hearing(hearing()));
        assert!(raised(&e.handle(T0 + Duration::seconds(59), Input::Tick)).is_empty());
        let out = e.handle(T0 + Duration::seconds(60), Input::Tick);
        assert_eq!(raised(&out), [AlarmKind::NotRecording]);
        // No storm: the condition keeps holding, the alarm is not raised again.
        assert!(raised(&e.handle(T0 + Duration::seconds(61), Input::Tick)).is_empty());
        assert_eq!(e.open().count(), 1);
    }

    #[test]
    fn a_moved_hearing_is_enforced_at_its_new_time_and_a_cancelled_one_raises_nothing() {
        let mut e = Engine::new(Settings::default());
        e.handle(T0 - Duration::minutes(5), Input::Hearing(hearing()));
        let out = e.handle(T0 + Duration::seconds(60), Input::Tick);
        assert_eq!(raised(&out), [AlarmKind::NotRecording]);
        // Moved an hour later: the replaced hearing no longer runs, its alarm clears.
        let mut moved = hearing();
        moved.scheduled_start = T0 + Duration::hours(1);
        moved.scheduled_end = T0 + Duration::hours(2);
        let out = e.handle(T0 + Duration::seconds(61), Input::Hearing(moved.clone()));
        assert!(
            matches!(out.as_slice(), [Output::Cleared(a)] if a.kind == AlarmKind::NotRecording),
            "{out:?}"
        );
        assert!(raised(&e.handle(T0 + Duration::minutes(30), Input::Tick)).is_empty());
        // ...and is enforced at its new start.
        let new_start = moved.scheduled_start;
        let out = e.handle(new_start + Duration::seconds(60), Input::Tick);
        assert_eq!(raised(&out), [AlarmKind::NotRecording]);
        // Cancelled: the alarm clears and nothing is raised while it would have run.
        moved.status = HearingStatus::Cancelled;
        let out = e.handle(new_start + Duration::seconds(61), Input::Hearing(moved));
        assert!(matches!(out.as_slice(), [Output::Cleared(_)]), "{out:?}");
        assert!(raised(&e.handle(new_start + Duration::minutes(20), Input::Tick)).is_empty());
        assert_eq!(e.open().count(), 0);
    }

    #[test]
    fn recording_clears_the_alarm_and_stopping_early_raises_a_different_one() {
        let s = Settings {
            stall_after: Duration::hours(1),
            ..Settings::default()
        };
        let mut e = Engine::new(s);
        e.handle(T0, Input::Hearing(hearing()));
        e.handle(
            T0,
            Input::Opened {
                hearing: "h1".into(),
                by: "clerk".into(),
            },
        );
        e.handle(T0 + Duration::minutes(2), Input::Tick);
        let out = e.handle(T0 + Duration::minutes(3), room(RoomRecording::Recording));
        assert!(
            matches!(out.as_slice(), [Output::Cleared(a)] if a.kind == AlarmKind::NotRecording && a.resolved.as_ref().is_some_and(|r| r.by == "condition cleared"))
        );
        let out = e.handle(T0 + Duration::minutes(20), room(RoomRecording::Idle));
        assert_eq!(raised(&out), [AlarmKind::StoppedEarly]);
        // Closing the hearing ends the obligation.
        let out = e.handle(
            T0 + Duration::minutes(21),
            Input::Closed {
                hearing: "h1".into(),
            },
        );
        assert!(matches!(out.as_slice(), [Output::Cleared(_)]));
    }

    #[test]
    fn an_unacknowledged_alarm_escalates_and_acknowledging_stops_it() {
        let s = Settings {
            escalate_after: Duration::minutes(5),
            ..Settings::default()
        };
        let mut e = Engine::new(s);
        e.handle(T0, Input::Hearing(hearing()));
        e.handle(
            T0,
            Input::Opened {
                hearing: "h1".into(),
                by: "clerk".into(),
            },
        );
        e.handle(T0, room(RoomRecording::Recording));
        e.handle(
            T0 + Duration::minutes(1),
            Input::Segment {
                court: "hz".into(),
                room: "room-101".into(),
            },
        );
        let out = e.handle(T0 + Duration::minutes(2), Input::Tick);
        assert_eq!(raised(&out), [AlarmKind::RecordingStalled]);
        let id = e.open().next().map(|a| a.id.clone()).expect("alarm");
        assert_eq!(e.open().next().map(|a| a.level), Some(2));
        let out = e.handle(T0 + Duration::minutes(12), Input::Tick);
        assert!(matches!(out.as_slice(), [Output::Updated(a)] if a.level == 3));
        let out = e.handle(
            T0 + Duration::minutes(13),
            Input::Acknowledge {
                alarm: id.clone(),
                by: "inspector-li".into(),
            },
        );
        assert!(
            matches!(out.as_slice(), [Output::Updated(a)] if a.acknowledged.as_ref().is_some_and(|s| s.by == "inspector-li"))
        );
        let out = e.handle(
            T0 + Duration::minutes(14),
            Input::Resolve {
                alarm: id,
                by: "tech-wang".into(),
            },
        );
        assert!(
            matches!(out.as_slice(), [Output::Cleared(a)] if a.resolved.as_ref().is_some_and(|s| s.by == "tech-wang"))
        );
        assert_eq!(e.take_closed().len(), 1);
        // Resolved by hand while the stall persists: not raised again until it clears.
        assert!(raised(&e.handle(T0 + Duration::minutes(15), Input::Tick)).is_empty());
        e.handle(
            T0 + Duration::minutes(16),
            Input::Segment {
                court: "hz".into(),
                room: "room-101".into(),
            },
        );
        let out = e.handle(T0 + Duration::minutes(18), Input::Tick);
        assert_eq!(
            raised(&out),
            [AlarmKind::RecordingStalled],
            "a new stall is a new alarm"
        );
    }

    #[test]
    fn a_lost_source_and_an_offline_device_during_a_hearing_raise_alarms() {
        let mut e = Engine::new(Settings::default());
        e.handle(T0, Input::Hearing(hearing()));
        e.handle(T0, room(RoomRecording::Recording));
        let out = e.handle(
            T0 + Duration::seconds(5),
            room(RoomRecording::Degraded {
                lost: vec!["cam-judge".into()],
            }),
        );
        assert_eq!(raised(&out), [AlarmKind::SourceLost]);
        let out = e.handle(
            T0 + Duration::seconds(6),
            Input::Presence {
                device: "room-101-cam-2".into(),
                court: "hz".into(),
                room: "room-101".into(),
                online: false,
            },
        );
        assert_eq!(raised(&out), [AlarmKind::DeviceOffline]);
        // Outside any hearing an offline device is not a hearing alarm.
        let out = e.handle(T0 + Duration::hours(2), Input::Tick);
        assert!(out.iter().all(|o| matches!(o, Output::Cleared(_))));
    }

    #[test]
    fn a_hearing_not_opened_in_time_is_late() {
        let s = Settings {
            stall_after: Duration::hours(1),
            ..Settings::default()
        };
        let mut e = Engine::new(s);
        e.handle(T0, Input::Hearing(hearing()));
        e.handle(T0, room(RoomRecording::Recording));
        assert!(raised(&e.handle(T0 + Duration::minutes(9), Input::Tick)).is_empty());
        assert_eq!(
            raised(&e.handle(T0 + Duration::minutes(10), Input::Tick)),
            [AlarmKind::OpenedLate]
        );
        let out = e.handle(
            T0 + Duration::minutes(11),
            Input::Opened {
                hearing: "h1".into(),
                by: "clerk".into(),
            },
        );
        assert!(matches!(out.as_slice(), [Output::Cleared(a)] if a.kind == AlarmKind::OpenedLate));
    }

    #[test]
    fn health_conditions_share_the_engine() {
        let mut e = Engine::new(Settings::default());
        e.handle(T0, Input::Hearing(hearing()));
        let health = DeviceHealth {
            device: "room-101-terminal".into(),
            court: Some("hz".into()),
            room: Some("room-101".into()),
            disk_free: 200_000_000_000,
            disk_total: 1_000_000_000_000,
            // 100 MB/s for the hour of hearing left needs 360 GB > 200 GB free.
            write_rate: 100_000_000,
            max_temperature: Some(75.0),
            clock_offset_ms: Some(-1500.0),
        };
        let mut kinds = raised(&e.handle(T0 - Duration::minutes(1), Input::Health(health)));
        kinds.sort();
        assert_eq!(
            kinds,
            [
                AlarmKind::DiskLow,
                AlarmKind::TemperatureHigh,
                AlarmKind::ClockDrift
            ]
        );
        for i in 0..3 {
            e.handle(
                T0 + Duration::minutes(i),
                Input::Boot {
                    device: "room-101-terminal".into(),
                    boot_id: Some(format!("boot-{i}")),
                },
            );
        }
        assert_eq!(
            e.open()
                .filter(|a| a.kind == AlarmKind::RestartLoop)
                .count(),
            1
        );
        // Boots age out of the window: the loop alarm clears.
        let out = e.handle(T0 + Duration::minutes(30), Input::Tick);
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Cleared(a) if a.kind == AlarmKind::RestartLoop))
        );
        assert_eq!(
            e.open()
                .filter(|a| a.kind == AlarmKind::RestartLoop)
                .count(),
            0
        );
    }

    #[test]
    fn a_new_leader_restoring_an_open_alarm_updates_it_instead_of_raising_again() {
        let mut first = Engine::new(Settings::default());
        first.handle(T0 - Duration::minutes(5), Input::Hearing(hearing()));
        let out = first.handle(T0 + Duration::seconds(60), Input::Tick);
        let stored: Vec<Alarm> = out
            .iter()
            .filter_map(|o| match o {
                Output::Raised(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(stored.len(), 1);
        // The leader dies; the next one starts from the store.
        let mut next = Engine::new(Settings::default());
        next.restore(stored.clone());
        next.handle(T0 + Duration::seconds(70), Input::Hearing(hearing()));
        let out = next.handle(T0 + Duration::seconds(71), Input::Tick);
        assert!(raised(&out).is_empty(), "{out:?}");
        assert_eq!(
            next.open().map(|a| a.id.clone()).collect::<Vec<_>>(),
            [stored[0].id.clone()]
        );
        // Once the room records, the restored alarm clears like any other.
        let out = next.handle(T0 + Duration::seconds(72), room(RoomRecording::Recording));
        assert!(matches!(&out[..], [Output::Cleared(a)] if a.id == stored[0].id));
    }

    /// Measures one evaluation at benchmark scale (25,000 running hearings, half of them
    /// unrecorded, 50,000 devices reporting health). Run with
    /// `cargo test --release -p gavel-fleet -- --ignored --nocapture evaluation_cost`.
    #[test]
    #[ignore = "measurement, not a check"]
    fn evaluation_cost_at_50000_rooms() {
        let mut e = Engine::new(Settings::default());
        let mut inputs = Vec::new();
        for i in 0..25_000 {
            let mut h = hearing();
            h.id = format!("h{i}");
            h.room = format!("room-{i}");
            inputs.push(Input::Hearing(h));
            if i % 2 == 1 {
                inputs.push(Input::Room {
                    court: "hz".into(),
                    room: format!("room-{i}"),
                    state: RoomRecording::Recording,
                });
            }
        }
        for i in 0..50_000 {
            inputs.push(Input::Health(DeviceHealth {
                device: format!("d{i}"),
                court: Some("hz".into()),
                room: Some(format!("room-{i}")),
                disk_free: 750_000_000_000,
                disk_total: 1_000_000_000_000,
                write_rate: 1_000_000,
                max_temperature: Some(48.0),
                clock_offset_ms: Some(0.8),
            }));
        }
        let now = T0 + Duration::seconds(90);
        let raised = e.handle_batch(now, inputs).len();
        assert_eq!(raised, 12_500);
        let start = std::time::Instant::now();
        let rounds = 20;
        for i in 0..rounds {
            e.evaluate_now(now + Duration::seconds(i));
        }
        println!(
            "one evaluation, 25,000 hearings and 50,000 devices: {:.1} ms",
            start.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds as i32)
        );
    }

    #[test]
    fn a_boot_reported_by_two_controller_instances_counts_once() {
        let mut e = Engine::new(Settings::default());
        let boot = |i: i64| Input::Boot {
            device: "d".into(),
            boot_id: Some(format!("boot-{i}")),
        };
        // Two restarts, each reported twice: not yet a loop (3 starts).
        for i in 0..2 {
            e.handle(T0 + Duration::minutes(i), boot(i));
            e.handle(T0 + Duration::minutes(i), boot(i));
        }
        assert_eq!(e.open().count(), 0);
        let out = e.handle(T0 + Duration::minutes(2), boot(2));
        assert_eq!(raised(&out), [AlarmKind::RestartLoop]);
    }

    #[test]
    fn a_batch_of_inputs_evaluates_like_the_same_inputs_one_by_one() {
        let inputs = vec![
            Input::Hearing(hearing()),
            room(RoomRecording::Degraded {
                lost: vec!["cam-1".into()],
            }),
            Input::Presence {
                device: "room-101-terminal".into(),
                court: "hz".into(),
                room: "room-101".into(),
                online: false,
            },
        ];
        let now = T0 + Duration::seconds(5);
        let mut one = Engine::new(Settings::default());
        let mut kinds_one = Vec::new();
        for i in inputs.clone() {
            kinds_one.extend(raised(&one.handle(now, i)));
        }
        let mut batch = Engine::new(Settings::default());
        let mut kinds_batch = raised(&batch.handle_batch(now, inputs));
        kinds_one.sort();
        kinds_batch.sort();
        assert_eq!(kinds_one, kinds_batch);
        assert_eq!(
            kinds_batch,
            [AlarmKind::SourceLost, AlarmKind::DeviceOffline]
        );
    }

    #[test]
    fn inputs_round_trip_through_json_for_forwarding_to_the_leader() {
        let inputs = vec![
            Input::Hearing(hearing()),
            room(RoomRecording::Degraded {
                lost: vec!["cam-1".into()],
            }),
            Input::Health(DeviceHealth {
                device: "d".into(),
                court: Some("hz".into()),
                room: None,
                disk_free: 1,
                disk_total: 2,
                write_rate: 3,
                max_temperature: Some(40.5),
                clock_offset_ms: None,
            }),
            Input::Acknowledge {
                alarm: "a".into(),
                by: "clerk".into(),
            },
            Input::Tick,
        ];
        let json = serde_json::to_string(&inputs).expect("encode");
        let back: Vec<Input> = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, inputs);
    }

    #[test]
    fn the_disk_forecast_counts_only_the_devices_own_room() {
        let mut e = Engine::new(Settings::default());
        let mut other = hearing();
        other.id = "h2".into();
        other.room = "room-102".into();
        e.handle(T0 - Duration::minutes(5), Input::Hearing(hearing()));
        e.handle(T0 - Duration::minutes(5), Input::Hearing(other));
        let health = |room: &str| DeviceHealth {
            device: format!("{room}-terminal"),
            court: Some("hz".into()),
            room: Some(room.into()),
            // 50% free, but the hour of hearing at 1 MB/s needs 3.6 GB.
            disk_free: 2_000_000_000,
            disk_total: 4_000_000_000,
            write_rate: 1_000_000,
            max_temperature: None,
            clock_offset_ms: None,
        };
        let out = e.handle(T0, Input::Health(health("room-101")));
        assert_eq!(raised(&out), [AlarmKind::DiskLow]);
        // A room without hearings today has nothing to fill.
        let out = e.handle(T0, Input::Health(health("room-103")));
        assert!(raised(&out).is_empty(), "{out:?}");
    }

    fn finding(kind: &str, level: u8, ended: Option<OffsetDateTime>) -> Input {
        Input::Finding {
            court: "hz".into(),
            room: "room-101".into(),
            finding: FindingRef {
                device: "hz-101-terminal".into(),
                event_id: format!("cam-judge-{kind}-1"),
                kind: kind.into(),
                source: "cam-judge".into(),
                seat: None,
                level,
                started_at: T0,
                ended_at: ended,
                hearing_id: Some("h1".into()),
                offset_ms: Some(60_000),
                detail: "no frame for 4 s".into(),
            },
        }
    }

    #[test]
    fn a_device_reporting_recording_at_risk_raises_an_urgent_alarm_until_it_clears() {
        let mut e = Engine::new(Settings::default());
        let storage = |on: bool| Input::Storage {
            device: "hz-101-terminal".into(),
            court: Some("hz".into()),
            room: Some("room-101".into()),
            alarm: "recording_at_risk".into(),
            on,
            detail: "9 MB free, nothing can be evicted".into(),
        };
        let out = e.handle(T0, storage(true));
        let Some(Output::Raised(a)) = out.first() else {
            panic!("not raised: {out:?}");
        };
        assert_eq!(a.kind, AlarmKind::RecordingAtRisk);
        assert_eq!(a.level, 2);
        assert!(
            a.message.contains("nothing can be evicted"),
            "{}",
            a.message
        );
        assert!(raised(&e.handle(T0 + Duration::seconds(1), storage(true))).is_empty());
        let out = e.handle(T0 + Duration::seconds(2), storage(false));
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Cleared(a) if a.kind == AlarmKind::RecordingAtRisk)),
            "{out:?}"
        );
    }

    #[test]
    fn an_urgent_finding_is_an_urgent_alarm_of_its_room_at_once() {
        let mut e = Engine::new(Settings::default());
        let out = e.handle(T0, finding("signal_lost", 3, None));
        let Some(Output::Raised(a)) = out.first() else {
            panic!("not raised: {out:?}");
        };
        assert_eq!(a.kind, AlarmKind::Patrol);
        assert_eq!(a.level, 3);
        assert_eq!(a.room.as_deref(), Some("room-101"));
        let f = a.finding.as_ref().expect("finding linked");
        assert_eq!(f.hearing_id.as_deref(), Some("h1"));
        assert_eq!(f.offset_ms, Some(60_000));
        // The same condition again (another event) updates, never raises twice.
        assert!(
            raised(&e.handle(T0 + Duration::seconds(1), finding("signal_lost", 3, None)))
                .is_empty()
        );
    }

    #[test]
    fn a_finding_alarm_clears_once_the_finding_ended_and_lingered() {
        let mut e = Engine::new(Settings::default());
        e.handle(T0, finding("blurred", 2, None));
        let end = T0 + Duration::seconds(30);
        let out = e.handle(end, finding("blurred", 2, Some(end)));
        assert!(out.is_empty(), "still lingering: {out:?}");
        let out = e.handle(end + Duration::minutes(5), Input::Tick);
        assert!(
            matches!(out.as_slice(), [Output::Cleared(a)] if a.kind == AlarmKind::Patrol),
            "{out:?}"
        );
    }

    #[test]
    fn a_note_on_an_alarm_is_kept_with_who_and_when() {
        let mut e = Engine::new(Settings::default());
        e.handle(T0, finding("occluded", 2, None));
        let id = e.open().next().expect("open").id.clone();
        let out = e.handle(
            T0 + Duration::seconds(5),
            Input::Note {
                alarm: id,
                by: "inspector-li".into(),
                text: "called the clerk".into(),
            },
        );
        let Some(Output::Updated(a)) = out.first() else {
            panic!("{out:?}");
        };
        assert_eq!(a.notes.len(), 1);
        assert_eq!(a.notes[0].by, "inspector-li");
    }
}
