//! Sans-I/O rollout core: OTA campaigns in waves, halted by failures, planned around
//! hearings.
//!
//! A [`Campaign`] targets devices (by profile, court, room, tag or an explicit list),
//! splits them into waves (a canary room, then a share, then the rest), and on every
//! [`Campaign::handle`] says which devices to send an install command to now. A device is
//! only sent the command when its room is free for the whole expected install (plus a
//! guard window) and, when maintenance windows are configured, inside one. A wave halts
//! the campaign when its failures pass the threshold. Pause, resume and abort are inputs.
//! The shell persists the campaign, sends the commands and feeds back device results.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// A device the campaign may target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetDevice {
    /// Device id.
    pub id: String,
    /// Profile name.
    pub profile: String,
    /// Court id.
    pub court: String,
    /// Room id within the court.
    pub room: String,
    /// Free tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Which devices a campaign targets. Set fields must all match; `devices`, when not
/// empty, is an explicit list that is intersected with the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Only this profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Only this court.
    #[serde(default)]
    pub court: Option<String>,
    /// Only this room (with `court`, or any court).
    #[serde(default)]
    pub room: Option<String>,
    /// Only devices with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Only these devices.
    #[serde(default)]
    pub devices: Vec<String>,
}

impl Selector {
    /// Whether a device is targeted.
    pub fn matches(&self, d: &TargetDevice) -> bool {
        self.profile.as_ref().is_none_or(|p| *p == d.profile)
            && self.court.as_ref().is_none_or(|c| *c == d.court)
            && self.room.as_ref().is_none_or(|r| *r == d.room)
            && self.tag.as_ref().is_none_or(|t| d.tags.contains(t))
            && (self.devices.is_empty() || self.devices.contains(&d.id))
    }
}

/// How big a wave is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "n", rename_all = "snake_case")]
pub enum WaveSize {
    /// All devices of this many rooms (the canary).
    Rooms(usize),
    /// This percentage of all targeted devices (rounded up, whole rooms).
    Percent(u8),
    /// Everything left.
    Rest,
}

/// A daily maintenance window in UTC, `[start_hour, end_hour)`, may wrap midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    /// First hour (0-23).
    pub start_hour: u8,
    /// Hour the window closes (0-23).
    pub end_hour: u8,
}

impl MaintenanceWindow {
    fn contains(&self, t: OffsetDateTime) -> bool {
        let h = t.to_offset(time::UtcOffset::UTC).hour();
        if self.start_hour <= self.end_hour {
            (self.start_hour..self.end_hour).contains(&h)
        } else {
            h >= self.start_hour || h < self.end_hour
        }
    }
}

/// When a room is busy: hearings in progress and scheduled. Filled from the hearings by
/// [`room_schedules`]; tests inject it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSchedule {
    /// A hearing is in progress now (it may overrun its schedule).
    #[serde(default)]
    pub in_session: bool,
    /// Scheduled busy intervals `[start, end)`.
    #[serde(default)]
    pub busy: Vec<(OffsetDateTime, OffsetDateTime)>,
}

impl RoomSchedule {
    /// Free for all of `[from, to)`.
    pub fn free(&self, from: OffsetDateTime, to: OffsetDateTime) -> bool {
        !self.in_session && !self.busy.iter().any(|(s, e)| *s < to && *e > from)
    }
}

/// Every room's schedule from its hearings at `now`: in session while a hearing is open,
/// or is due (from its start minus the `pre_roll` its devices start recording with) and
/// not closed; busy for every hearing not closed or cancelled, pre-roll included.
pub fn room_schedules(
    hearings: &[crate::hearings::Hearing],
    pre_roll: Duration,
    now: OffsetDateTime,
) -> BTreeMap<(String, String), RoomSchedule> {
    use crate::hearings::HearingStatus as S;
    let mut out: BTreeMap<(String, String), RoomSchedule> = BTreeMap::new();
    for h in hearings {
        if matches!(h.status, S::Closed | S::Cancelled) {
            continue;
        }
        let r = out.entry((h.court.clone(), h.room.clone())).or_default();
        let from = h.scheduled_start - pre_roll;
        // An open hearing may overrun its schedule: it holds the room until closed.
        if h.status == S::InProgress || (from <= now && now < h.scheduled_end) {
            r.in_session = true;
        }
        if h.scheduled_end > now {
            r.busy.push((from, h.scheduled_end));
        }
    }
    for r in out.values_mut() {
        r.busy.sort();
    }
    out
}

/// Settings of a campaign (configured, persisted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSpec {
    /// Campaign id.
    pub id: String,
    /// Bundle version being rolled out.
    pub version: String,
    /// URL of the bundle the devices download.
    pub bundle_url: String,
    /// Which devices.
    pub selector: Selector,
    /// Waves, in order. A trailing `Rest` is implied if missing.
    pub waves: Vec<WaveSize>,
    /// A wave halts the campaign when its failed share exceeds this (0.0-1.0).
    pub failure_threshold: f64,
    /// Devices installing at once (controller load and uplink).
    pub max_in_flight: usize,
    /// How long an install takes end to end (download at the cap, write, reboot, health).
    pub expected_install: Duration,
    /// A room must be free this long after the expected install too.
    pub guard: Duration,
    /// A device that has not reported after this is counted as failed.
    pub install_timeout: Duration,
    /// When set, installs start only inside one of these windows.
    #[serde(default)]
    pub maintenance: Vec<MaintenanceWindow>,
}

impl CampaignSpec {
    /// Defaults for a bundle id and URL: canary room, 10 %, rest; halt above 20 %.
    pub fn new(id: &str, version: &str, bundle_url: &str) -> Self {
        Self {
            id: id.into(),
            version: version.into(),
            bundle_url: bundle_url.into(),
            selector: Selector::default(),
            waves: vec![WaveSize::Rooms(1), WaveSize::Percent(10), WaveSize::Rest],
            failure_threshold: 0.2,
            max_in_flight: 200,
            expected_install: Duration::minutes(10),
            guard: Duration::minutes(30),
            install_timeout: Duration::hours(2),
            maintenance: Vec::new(),
        }
    }
}

/// Where one device stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeviceState {
    /// Not sent yet.
    Pending,
    /// Install command sent at this time.
    Installing {
        /// When it was sent.
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
    /// Installed and committed.
    Succeeded,
    /// Refused, rolled back, or silent past the timeout.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Where the campaign stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CampaignState {
    /// Sending installs for the current wave.
    Running,
    /// Paused by a person: nothing new is sent; results are still recorded.
    Paused,
    /// Stopped by the failure threshold.
    Halted {
        /// Why.
        reason: String,
    },
    /// Stopped by a person.
    Aborted,
    /// Every wave finished.
    Completed,
}

/// What the shell feeds the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// Time passes: send what may be sent, time out the silent.
    Tick,
    /// A device finished: `Ok(())` committed, `Err(reason)` refused or rolled back.
    Result {
        /// Device id.
        device: String,
        /// Outcome.
        outcome: Result<(), String>,
    },
    /// A room's schedule changed.
    Schedule {
        /// Court id.
        court: String,
        /// Room id.
        room: String,
        /// Its schedule.
        schedule: RoomSchedule,
    },
    /// Stop sending new installs.
    Pause,
    /// Continue after a pause or a halt.
    Resume,
    /// Stop for good.
    Abort,
}

/// What the core asks the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send the install command to this device.
    Install {
        /// Device id.
        device: String,
    },
    /// A wave began.
    WaveStarted {
        /// Wave index from 0.
        wave: usize,
        /// Devices in it.
        devices: usize,
    },
    /// The campaign changed state.
    State(CampaignState),
}

/// Progress counts, for the dashboard and `gavelctl`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Devices targeted.
    pub total: usize,
    /// Not sent yet.
    pub pending: usize,
    /// Sent, waiting for a result.
    pub installing: usize,
    /// Committed.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
    /// Current wave index.
    pub wave: usize,
    /// Number of waves.
    pub waves: usize,
    /// Pending devices of the current wave held back by their room's schedule.
    pub deferred_by_hearing: usize,
}

enum Kind {
    Record,
    Decide,
}

/// One campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Campaign {
    /// Its settings.
    pub spec: CampaignSpec,
    /// Its state.
    pub state: CampaignState,
    /// Device ids of each wave.
    pub waves: Vec<Vec<String>>,
    /// Index of the wave being rolled out.
    pub wave: usize,
    /// Each targeted device's state.
    pub devices: BTreeMap<String, DeviceState>,
    /// Each targeted device's (court, room).
    rooms: BTreeMap<String, (String, String)>,
    /// Room schedules by (court, room).
    #[serde(skip)]
    schedules: BTreeMap<(String, String), RoomSchedule>,
    /// Whether `WaveStarted` was emitted for `wave`.
    announced: bool,
    /// Devices held back by a hearing at the last tick.
    deferred: usize,
}

impl Campaign {
    /// Plans a campaign over the fleet: selects targets and splits them into waves of
    /// whole rooms (a room is never split across waves).
    pub fn plan(spec: CampaignSpec, fleet: &[TargetDevice]) -> Self {
        let mut by_room: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut rooms = BTreeMap::new();
        for d in fleet.iter().filter(|d| spec.selector.matches(d)) {
            by_room
                .entry((d.court.clone(), d.room.clone()))
                .or_default()
                .push(d.id.clone());
            rooms.insert(d.id.clone(), (d.court.clone(), d.room.clone()));
        }
        let total: usize = by_room.values().map(Vec::len).sum();
        let mut room_list: Vec<Vec<String>> = by_room.into_values().collect();
        room_list.reverse(); // pop() takes rooms in key order
        let mut waves = Vec::new();
        let mut sizes = spec.waves.clone();
        if sizes.last() != Some(&WaveSize::Rest) {
            sizes.push(WaveSize::Rest);
        }
        for size in sizes {
            if room_list.is_empty() {
                break;
            }
            let mut wave = Vec::new();
            match size {
                WaveSize::Rooms(n) => {
                    for _ in 0..n.max(1) {
                        if let Some(r) = room_list.pop() {
                            wave.extend(r);
                        }
                    }
                }
                WaveSize::Percent(p) => {
                    let want = (total * p as usize).div_ceil(100).max(1);
                    while wave.len() < want {
                        match room_list.pop() {
                            Some(r) => wave.extend(r),
                            None => break,
                        }
                    }
                }
                WaveSize::Rest => {
                    while let Some(r) = room_list.pop() {
                        wave.extend(r);
                    }
                }
            }
            waves.push(wave);
        }
        let devices = rooms
            .keys()
            .map(|id| (id.clone(), DeviceState::Pending))
            .collect();
        Self {
            spec,
            state: CampaignState::Running,
            waves,
            wave: 0,
            devices,
            rooms,
            schedules: BTreeMap::new(),
            announced: false,
            deferred: 0,
        }
    }

    /// Counts for display.
    pub fn progress(&self) -> Progress {
        let mut p = Progress {
            total: self.devices.len(),
            wave: self.wave,
            waves: self.waves.len(),
            deferred_by_hearing: self.deferred,
            ..Default::default()
        };
        for s in self.devices.values() {
            match s {
                DeviceState::Pending => p.pending += 1,
                DeviceState::Installing { .. } => p.installing += 1,
                DeviceState::Succeeded => p.succeeded += 1,
                DeviceState::Failed { .. } => p.failed += 1,
            }
        }
        p
    }

    fn set_state(&mut self, s: CampaignState, out: &mut Vec<Output>) {
        if self.state != s {
            self.state = s.clone();
            out.push(Output::State(s));
        }
    }

    /// Applies one input at `now`.
    pub fn handle(&mut self, now: OffsetDateTime, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        let input_kind = match &input {
            Input::Result { .. } | Input::Schedule { .. } => Kind::Record,
            _ => Kind::Decide,
        };
        match input {
            Input::Tick => {}
            Input::Result { device, outcome } => {
                if let Some(s) = self.devices.get_mut(&device)
                    && matches!(s, DeviceState::Installing { .. } | DeviceState::Pending)
                {
                    *s = match outcome {
                        Ok(()) => DeviceState::Succeeded,
                        Err(reason) => DeviceState::Failed { reason },
                    };
                }
            }
            Input::Schedule {
                court,
                room,
                schedule,
            } => {
                self.schedules.insert((court, room), schedule);
            }
            Input::Pause => {
                if self.state == CampaignState::Running {
                    self.set_state(CampaignState::Paused, &mut out);
                }
            }
            Input::Resume => {
                if matches!(
                    self.state,
                    CampaignState::Paused | CampaignState::Halted { .. }
                ) {
                    self.set_state(CampaignState::Running, &mut out);
                }
            }
            Input::Abort => {
                if !matches!(self.state, CampaignState::Completed) {
                    self.set_state(CampaignState::Aborted, &mut out);
                }
            }
        }
        // Design: results and schedules only record; the decisions (halt, next wave, new
        // installs) run on ticks and commands, so a flood of results costs O(log n) each
        // and the shell's regular tick (500 ms) bounds the reaction time.
        if matches!(input_kind, Kind::Decide) {
            self.step(now, &mut out);
        }
        out
    }

    fn step(&mut self, now: OffsetDateTime, out: &mut Vec<Output>) {
        // Silent devices fail after the timeout, whatever the campaign's state.
        for s in self.devices.values_mut() {
            if let DeviceState::Installing { since } = s
                && now - *since > self.spec.install_timeout
            {
                *s = DeviceState::Failed {
                    reason: "no result before the install timeout".into(),
                };
            }
        }
        loop {
            if self.state != CampaignState::Running {
                return;
            }
            let Some(wave) = self.waves.get(self.wave) else {
                self.set_state(CampaignState::Completed, out);
                return;
            };
            if !self.announced {
                self.announced = true;
                out.push(Output::WaveStarted {
                    wave: self.wave,
                    devices: wave.len(),
                });
            }
            let (mut failed, mut done) = (0usize, 0usize);
            for id in wave {
                match self.devices.get(id) {
                    Some(DeviceState::Failed { .. }) => {
                        failed += 1;
                        done += 1;
                    }
                    Some(DeviceState::Succeeded) => done += 1,
                    _ => {}
                }
            }
            let share = failed as f64 / wave.len().max(1) as f64;
            if share > self.spec.failure_threshold {
                let reason = format!(
                    "wave {} failed on {failed} of {} devices ({:.0} % > threshold {:.0} %)",
                    self.wave,
                    wave.len(),
                    share * 100.0,
                    self.spec.failure_threshold * 100.0
                );
                self.set_state(CampaignState::Halted { reason }, out);
                return;
            }
            if done == wave.len() {
                self.wave += 1;
                self.announced = false;
                continue;
            }
            self.dispatch(now, out);
            return;
        }
    }

    fn may_start(&self, now: OffsetDateTime, device: &str) -> bool {
        if !self.spec.maintenance.is_empty()
            && !self.spec.maintenance.iter().any(|w| w.contains(now))
        {
            return false;
        }
        let Some(room) = self.rooms.get(device) else {
            return false;
        };
        self.schedules
            .get(room)
            .is_none_or(|s| s.free(now, now + self.spec.expected_install + self.spec.guard))
    }

    fn dispatch(&mut self, now: OffsetDateTime, out: &mut Vec<Output>) {
        let in_flight = self
            .devices
            .values()
            .filter(|s| matches!(s, DeviceState::Installing { .. }))
            .count();
        let mut room = self.spec.max_in_flight.saturating_sub(in_flight);
        if room == 0 {
            // Design: at capacity nothing can start; skip the wave scan (the deferred
            // count shown keeps its last value).
            return;
        }
        let mut deferred = 0;
        let mut start = BTreeSet::new();
        for id in &self.waves[self.wave] {
            if self.devices.get(id) != Some(&DeviceState::Pending) {
                continue;
            }
            if !self.may_start(now, id) {
                deferred += 1;
                continue;
            }
            if room == 0 {
                continue;
            }
            room -= 1;
            start.insert(id.clone());
        }
        self.deferred = deferred;
        for id in start {
            self.devices
                .insert(id.clone(), DeviceState::Installing { since: now });
            out.push(Output::Install { device: id });
        }
    }
}

#[cfg(test)]
mod tests;
