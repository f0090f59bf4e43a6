//! # gavel-fleet
//!
//! Sans-I/O fleet core: which devices exist, where they are installed, what they run and
//! whether they are alive. [`Fleet::handle`] takes the time and one [`Input`] and returns
//! [`Output`]s for the shell to carry out (persist, push to dashboards, route acks). It
//! never reads the clock and does no I/O.
//!
//! Liveness rules:
//! - A birth or `online` status of a session (boot id + bd_seq) marks the device online,
//!   unless that very session has already been declared dead (a retained birth replayed
//!   after its will).
//! - An `offline` status (the last will, or a clean shutdown) marks it offline, unless it
//!   belongs to an older session of the same boot than the one we know (a stale will).
//! - A device that is online but silent for longer than its liveness timeout is marked
//!   offline as `stale` on the next tick; any message from it brings it back.

pub mod compliance;
pub mod enforcement;
pub mod hall;
pub mod hearings;
pub mod patrol;
pub mod report;
pub mod rollout;
pub mod schedule;
pub mod sequence;
pub mod wall;

use std::collections::BTreeMap;

use gavel_protocol::{
    Ack, Birth, Capability, DeviceId, DeviceMessage, Event, Health, OfflineReason, Presence, Status,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// Why the controller considers a device offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OfflineCause {
    /// The broker published the device's last will.
    ConnectionLost,
    /// The agent announced a clean shutdown.
    Shutdown,
    /// The agent announced a restart.
    Restart,
    /// Nothing heard from the device for longer than its liveness timeout.
    Stale,
}

impl From<OfflineReason> for OfflineCause {
    fn from(r: OfflineReason) -> Self {
        match r {
            OfflineReason::ConnectionLost => OfflineCause::ConnectionLost,
            OfflineReason::Shutdown => OfflineCause::Shutdown,
            OfflineReason::Restart => OfflineCause::Restart,
        }
    }
}

/// A device as the controller knows it. This is what the API serves and the store keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceRecord {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: DeviceId,
    /// Court the device is installed in, from its birth.
    pub court: Option<String>,
    /// Room the device is installed in, from its birth.
    pub room: Option<String>,
    pub profile: Option<String>,
    pub firmware_version: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub capabilities: Vec<Capability>,
    /// Tags from the device's birth (set when it was provisioned).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where the device serves its sources live (RTSP, HLS), from its birth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub live: Option<gavel_protocol::LiveEndpoints>,
    /// Boot id of the latest known session.
    pub boot_id: Option<String>,
    /// Birth/death sequence of the latest known session.
    pub bd_seq: u64,
    /// The session (boot id, bd_seq) whose death we have seen, if any.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub dead_session: Option<(String, u64)>,
    pub keepalive_s: u16,
    pub health_interval_s: u32,
    pub online: bool,
    pub offline_cause: Option<OfflineCause>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: OffsetDateTime,
    /// When `online` last changed.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub since: OffsetDateTime,
    /// Latest health telemetry.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub health: Option<Health>,
    /// Device clock minus controller clock at the latest health message, in milliseconds
    /// (includes transit time; a rough drift indicator).
    pub clock_skew_ms: Option<i64>,
}

impl DeviceRecord {
    fn new(id: DeviceId, now: OffsetDateTime) -> Self {
        Self {
            id,
            court: None,
            room: None,
            profile: None,
            firmware_version: None,
            hostname: None,
            capabilities: Vec::new(),
            tags: Vec::new(),
            live: None,
            boot_id: None,
            bd_seq: 0,
            dead_session: None,
            keepalive_s: 10,
            health_interval_s: 10,
            online: false,
            offline_cause: None,
            first_seen: now,
            last_seen: now,
            since: now,
            health: None,
            clock_skew_ms: None,
        }
    }

    /// How long the device may be silent before it is declared stale.
    pub fn liveness_timeout(&self) -> Duration {
        let by_health = 3 * i64::from(self.health_interval_s);
        let by_keepalive = 2 * i64::from(self.keepalive_s);
        Duration::seconds(by_health.max(by_keepalive).max(5))
    }

    fn is_dead_session(&self, boot_id: &str, bd_seq: u64) -> bool {
        self.dead_session
            .as_ref()
            .is_some_and(|(b, s)| b == boot_id && *s == bd_seq)
    }
}

/// What the shell feeds the core.
// Design: inputs are moved once into `handle`, never stored; boxing the message would
// only add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    /// A decoded message from a device.
    Message {
        device: DeviceId,
        message: DeviceMessage,
    },
    /// Time passed: check liveness.
    Tick,
}

/// What changed, for dashboards and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// First time this device was seen.
    Appeared,
    /// It went online.
    Online,
    /// It went offline.
    Offline,
    /// Its birth (profile, version, placement, capabilities) changed.
    Birth,
    /// New health telemetry.
    Health,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Persist this record (insert or replace).
    Persist(Box<DeviceRecord>),
    /// Tell dashboards; `record` is the state after the change.
    Changed {
        kind: ChangeKind,
        record: Box<DeviceRecord>,
    },
    /// Store this event in the device's event log.
    Event { device: DeviceId, event: Box<Event> },
    /// Hand this acknowledgement to whoever waits for its command.
    Ack { device: DeviceId, ack: Ack },
    /// A status was ignored because it belongs to an older session (a late will).
    StaleStatus { device: DeviceId, status: Status },
}

/// Counts for the fleet summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Summary {
    pub devices: usize,
    pub online: usize,
    pub offline: usize,
    pub courts: usize,
    pub rooms: usize,
}

/// The fleet registry.
#[derive(Debug, Default)]
pub struct Fleet {
    devices: BTreeMap<DeviceId, DeviceRecord>,
}

impl Fleet {
    /// An empty fleet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fleet restored from persisted records.
    pub fn restore(records: impl IntoIterator<Item = DeviceRecord>) -> Self {
        Self {
            devices: records.into_iter().map(|r| (r.id.clone(), r)).collect(),
        }
    }

    /// One device.
    pub fn get(&self, id: &DeviceId) -> Option<&DeviceRecord> {
        self.devices.get(id)
    }

    /// All devices, by id.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.devices.values()
    }

    /// Counts of devices, online devices, courts and rooms.
    pub fn summary(&self) -> Summary {
        let online = self.devices.values().filter(|d| d.online).count();
        let courts: std::collections::BTreeSet<_> = self
            .devices
            .values()
            .filter_map(|d| d.court.as_ref())
            .collect();
        let rooms: std::collections::BTreeSet<_> = self
            .devices
            .values()
            .filter_map(|d| Some((d.court.as_ref()?, d.room.as_ref()?)))
            .collect();
        Summary {
            devices: self.devices.len(),
            online,
            offline: self.devices.len() - online,
            courts: courts.len(),
            rooms: rooms.len(),
        }
    }

    /// Applies one input at time `now`.
    pub fn handle(&mut self, now: OffsetDateTime, input: Input) -> Vec<Output> {
        match input {
            Input::Tick => self.tick(now),
            Input::Message { device, message } => self.message(now, device, message),
        }
    }

    fn tick(&mut self, now: OffsetDateTime) -> Vec<Output> {
        let mut out = Vec::new();
        for record in self.devices.values_mut() {
            if record.online && now - record.last_seen > record.liveness_timeout() {
                record.online = false;
                record.offline_cause = Some(OfflineCause::Stale);
                record.since = now;
                push_change(&mut out, ChangeKind::Offline, record);
            }
        }
        out
    }

    fn message(
        &mut self,
        now: OffsetDateTime,
        device: DeviceId,
        message: DeviceMessage,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let appeared = !self.devices.contains_key(&device);
        let record = self
            .devices
            .entry(device.clone())
            .or_insert_with(|| DeviceRecord::new(device.clone(), now));
        if appeared {
            out.push(Output::Changed {
                kind: ChangeKind::Appeared,
                record: Box::new(record.clone()),
            });
        }
        record.last_seen = now;
        match message {
            DeviceMessage::Birth(b) => birth(record, now, b, &mut out),
            DeviceMessage::Status(s) => status(record, now, s, &mut out),
            DeviceMessage::Health(h) => {
                revive_if_stale(record, now, &mut out);
                record.clock_skew_ms = Some((h.ts - now).whole_milliseconds() as i64);
                record.health = Some(h);
                push_change(&mut out, ChangeKind::Health, record);
            }
            DeviceMessage::Event(e) => {
                revive_if_stale(record, now, &mut out);
                out.push(Output::Persist(Box::new(record.clone())));
                out.push(Output::Event {
                    device,
                    event: Box::new(e),
                });
            }
            DeviceMessage::Ack(ack) => {
                revive_if_stale(record, now, &mut out);
                out.push(Output::Persist(Box::new(record.clone())));
                out.push(Output::Ack { device, ack });
            }
        }
        out
    }
}

fn push_change(out: &mut Vec<Output>, kind: ChangeKind, record: &DeviceRecord) {
    out.push(Output::Persist(Box::new(record.clone())));
    out.push(Output::Changed {
        kind,
        record: Box::new(record.clone()),
    });
}

fn set_online(record: &mut DeviceRecord, now: OffsetDateTime, out: &mut Vec<Output>) {
    if !record.online {
        record.online = true;
        record.offline_cause = None;
        record.since = now;
        push_change(out, ChangeKind::Online, record);
    }
}

fn revive_if_stale(record: &mut DeviceRecord, now: OffsetDateTime, out: &mut Vec<Output>) {
    // Design: a device declared offline by its will or its own shutdown stays offline
    // until its next birth; only a controller-side `stale` verdict is undone by traffic.
    let unknown = record.boot_id.is_none() && record.offline_cause.is_none();
    if record.offline_cause == Some(OfflineCause::Stale) || unknown {
        set_online(record, now, out);
    }
}

fn birth(record: &mut DeviceRecord, now: OffsetDateTime, b: Birth, out: &mut Vec<Output>) {
    let changed = record.profile.as_deref() != Some(&b.profile)
        || record.firmware_version.as_deref() != Some(&b.firmware_version)
        || record.capabilities != b.capabilities
        || record.court.as_deref() != b.placement.as_ref().map(|p| p.court.as_str())
        || record.room.as_deref() != b.placement.as_ref().map(|p| p.room.as_str());
    let changed = changed || record.tags != b.tags || record.live != b.live;
    record.tags = b.tags;
    record.live = b.live;
    record.profile = Some(b.profile);
    record.firmware_version = Some(b.firmware_version);
    record.hostname = Some(b.hostname);
    record.capabilities = b.capabilities;
    record.court = b.placement.as_ref().map(|p| p.court.clone());
    record.room = b.placement.map(|p| p.room);
    record.keepalive_s = b.keepalive_s;
    record.health_interval_s = b.health_interval_s;
    let dead = record.is_dead_session(&b.boot_id, b.bd_seq);
    record.boot_id = Some(b.boot_id);
    record.bd_seq = b.bd_seq;
    if changed {
        push_change(out, ChangeKind::Birth, record);
    } else {
        out.push(Output::Persist(Box::new(record.clone())));
    }
    if !dead {
        set_online(record, now, out);
    }
}

fn status(record: &mut DeviceRecord, now: OffsetDateTime, s: Status, out: &mut Vec<Output>) {
    let same_boot = record.boot_id.as_deref() == Some(s.boot_id.as_str());
    if same_boot && s.bd_seq < record.bd_seq {
        out.push(Output::StaleStatus {
            device: record.id.clone(),
            status: s,
        });
        return;
    }
    match s.state {
        Presence::Online => {
            if record.is_dead_session(&s.boot_id, s.bd_seq) {
                return;
            }
            record.boot_id = Some(s.boot_id);
            record.bd_seq = s.bd_seq;
            set_online(record, now, out);
        }
        Presence::Offline => {
            let cause = s
                .reason
                .map(OfflineCause::from)
                .unwrap_or(OfflineCause::ConnectionLost);
            record.dead_session = Some((s.boot_id.clone(), s.bd_seq));
            record.boot_id = Some(s.boot_id);
            record.bd_seq = s.bd_seq;
            if record.online || record.offline_cause != Some(cause) {
                record.online = false;
                record.offline_cause = Some(cause);
                record.since = now;
                push_change(out, ChangeKind::Offline, record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_protocol::{CapabilityState, PROTOCOL_VERSION, Placement};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-27 09:00 UTC);

    fn dev() -> DeviceId {
        DeviceId::new("hz-101-terminal").expect("id")
    }

    fn birth_msg(boot: &str, bd_seq: u64) -> DeviceMessage {
        DeviceMessage::Birth(Birth {
            v: PROTOCOL_VERSION,
            ts: T0,
            boot_id: boot.into(),
            bd_seq,
            seq_base: 0,
            profile: "courtroom-terminal".into(),
            firmware_version: "0.1.0".into(),
            hostname: "h".into(),
            placement: Some(Placement {
                court: "hz".into(),
                room: "room-101".into(),
            }),
            capabilities: vec![Capability {
                name: "health".into(),
                state: CapabilityState::Running,
                detail: None,
            }],
            keepalive_s: 10,
            health_interval_s: 5,
            tags: Vec::new(),
            live: None,
        })
    }

    fn msg(message: DeviceMessage) -> Input {
        Input::Message {
            device: dev(),
            message,
        }
    }

    fn kinds(out: &[Output]) -> Vec<ChangeKind> {
        out.iter()
            .filter_map(|o| match o {
                Output::Changed { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_birth_from_a_new_device_makes_it_appear_online_in_its_room() {
        let mut f = Fleet::new();
        let out = f.handle(T0, msg(birth_msg("b1", 0)));
        assert_eq!(
            kinds(&out),
            [ChangeKind::Appeared, ChangeKind::Birth, ChangeKind::Online]
        );
        let d = f.get(&dev()).expect("known");
        assert!(d.online);
        assert_eq!(d.room.as_deref(), Some("room-101"));
        assert_eq!(
            f.summary(),
            Summary {
                devices: 1,
                online: 1,
                offline: 0,
                courts: 1,
                rooms: 1
            }
        );
    }

    #[test]
    fn the_last_will_marks_the_device_offline_as_connection_lost() {
        let mut f = Fleet::new();
        f.handle(T0, msg(birth_msg("b1", 0)));
        let out = f.handle(T0, msg(DeviceMessage::Status(Status::death("b1", 0))));
        assert_eq!(kinds(&out), [ChangeKind::Offline]);
        let d = f.get(&dev()).expect("known");
        assert!(!d.online);
        assert_eq!(d.offline_cause, Some(OfflineCause::ConnectionLost));
    }

    #[test]
    fn a_will_from_an_older_session_does_not_take_the_new_one_offline() {
        let mut f = Fleet::new();
        f.handle(T0, msg(birth_msg("b1", 3)));
        let out = f.handle(T0, msg(DeviceMessage::Status(Status::death("b1", 2))));
        assert!(matches!(out.as_slice(), [Output::StaleStatus { .. }]));
        assert!(f.get(&dev()).expect("known").online);
    }

    #[test]
    fn a_retained_birth_replayed_after_its_will_keeps_the_device_offline() {
        let mut f = Fleet::new();
        // A controller subscribing late may get the retained status before the birth.
        f.handle(T0, msg(DeviceMessage::Status(Status::death("b1", 0))));
        f.handle(T0, msg(birth_msg("b1", 0)));
        assert!(!f.get(&dev()).expect("known").online);
        // The next session's birth brings it back.
        f.handle(T0, msg(birth_msg("b1", 1)));
        assert!(f.get(&dev()).expect("known").online);
    }

    #[test]
    fn a_new_boot_after_a_will_comes_back_online() {
        let mut f = Fleet::new();
        f.handle(T0, msg(birth_msg("b1", 0)));
        f.handle(T0, msg(DeviceMessage::Status(Status::death("b1", 0))));
        let out = f.handle(T0, msg(birth_msg("b2", 0)));
        assert!(kinds(&out).contains(&ChangeKind::Online));
    }

    #[test]
    fn a_silent_device_goes_stale_after_its_liveness_timeout_and_revives_on_traffic() {
        let mut f = Fleet::new();
        f.handle(T0, msg(birth_msg("b1", 0)));
        let timeout = f.get(&dev()).expect("known").liveness_timeout();
        assert_eq!(timeout, Duration::seconds(20));
        assert!(f.handle(T0 + timeout, Input::Tick).is_empty());
        let out = f.handle(T0 + timeout + Duration::seconds(1), Input::Tick);
        assert_eq!(kinds(&out), [ChangeKind::Offline]);
        assert_eq!(
            f.get(&dev()).expect("known").offline_cause,
            Some(OfflineCause::Stale)
        );
        let health: Health =
            gavel_protocol::decode(include_bytes!("../../../protocol/fixtures/health.json"))
                .expect("fixture");
        let out = f.handle(
            T0 + Duration::minutes(1),
            msg(DeviceMessage::Health(health)),
        );
        assert!(kinds(&out).contains(&ChangeKind::Online));
    }

    #[test]
    fn health_after_a_clean_shutdown_does_not_resurrect_the_device() {
        let mut f = Fleet::new();
        f.handle(T0, msg(birth_msg("b1", 0)));
        let bye = Status::going_offline("b1", 0, OfflineReason::Shutdown, T0);
        f.handle(T0, msg(DeviceMessage::Status(bye)));
        let health: Health =
            gavel_protocol::decode(include_bytes!("../../../protocol/fixtures/health.json"))
                .expect("fixture");
        f.handle(T0, msg(DeviceMessage::Health(health)));
        let d = f.get(&dev()).expect("known");
        assert!(!d.online);
        assert_eq!(d.offline_cause, Some(OfflineCause::Shutdown));
    }

    #[test]
    fn acks_are_routed_and_restored_fleets_keep_their_devices() {
        let mut f = Fleet::new();
        f.handle(T0, msg(birth_msg("b1", 0)));
        let ack: Ack =
            gavel_protocol::decode(include_bytes!("../../../protocol/fixtures/ack-pong.json"))
                .expect("fixture");
        let out = f.handle(T0, msg(DeviceMessage::Ack(ack.clone())));
        assert!(out.contains(&Output::Ack { device: dev(), ack }));
        let restored = Fleet::restore(f.devices().cloned().collect::<Vec<_>>());
        assert_eq!(restored.get(&dev()), f.get(&dev()));
    }
}
