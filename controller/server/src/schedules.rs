//! The schedule publisher: keeps every recording device's retained `schedule` topic equal
//! to its room's hearings.
//!
//! Entry point for anything that changes hearings (CSV import, open, close, and later the
//! REST create/move/cancel and iCalendar import): [`SchedulePublisher::hearings_changed`]
//! with the court and room. The fleet task calls [`SchedulePublisher::device_born`] for
//! every birth, so a device that was away, new or moved gets its room's schedule.
//! The room's schedule itself is computed by the pure `gavel_fleet::schedule`.

use gavel_fleet::schedule::{Settings, Versions, room_hearings};
use gavel_protocol::{Channel, DeviceId, DeviceTopic};
use rumqttc::{AsyncClient, QoS};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::enforcer::EnforcerHandle;
use crate::fleet_actor::FleetHandle;

enum Request {
    RoomChanged { court: String, room: String },
    DeviceBorn { device: DeviceId },
}

/// Cloneable handle to the schedule publisher. Never waits: requests are queued.
#[derive(Clone)]
pub struct SchedulePublisher {
    tx: mpsc::Sender<Request>,
}

/// The receiving end, handed to [`spawn`] once the tasks it asks are running.
pub struct Inbox(mpsc::Receiver<Request>);

/// A publisher handle and its inbox (the task starts with [`spawn`]).
pub fn channel() -> (SchedulePublisher, Inbox) {
    let (tx, rx) = mpsc::channel(4096);
    (SchedulePublisher { tx }, Inbox(rx))
}

impl SchedulePublisher {
    /// The hearings of `court`/`room` changed: publish the room's schedule to each of its
    /// recording devices. Call it after the change is visible through
    /// `EnforcerHandle::hearings` (the schedule is read from there); a hearing moved to
    /// another room changes both rooms: call it for each.
    pub fn hearings_changed(&self, court: &str, room: &str) {
        let request = Request::RoomChanged {
            court: court.to_owned(),
            room: room.to_owned(),
        };
        if self.tx.try_send(request).is_err() {
            warn!(%court, %room, "schedule queue full; the room's schedule goes out with its devices' next birth");
        }
    }

    /// A device announced itself: publish its room's schedule to it if it records.
    pub fn device_born(&self, device: DeviceId) {
        if self.tx.try_send(Request::DeviceBorn { device }).is_err() {
            warn!("schedule queue full; a device's schedule was not sent");
        }
    }
}

/// Whether a device records (its birth names the `record` capability).
fn records(record: &gavel_fleet::DeviceRecord) -> bool {
    record.capabilities.iter().any(|c| c.name == "record")
}

/// Starts the publisher.
pub fn spawn(
    inbox: Inbox,
    settings: Settings,
    enforcer: EnforcerHandle,
    fleet: FleetHandle,
    mqtt: AsyncClient,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(inbox.0, settings, enforcer, fleet, mqtt, shutdown))
}

async fn run(
    mut rx: mpsc::Receiver<Request>,
    settings: Settings,
    enforcer: EnforcerHandle,
    fleet: FleetHandle,
    mqtt: AsyncClient,
    shutdown: CancellationToken,
) {
    let mut versions = Versions::default();
    loop {
        let request = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = rx.recv() => match r {
                Some(r) => r,
                None => break,
            },
        };
        let (court, room, only) = match request {
            Request::RoomChanged { court, room } => (court, room, None),
            Request::DeviceBorn { device } => {
                let Some(record) = fleet.get(device.clone()).await else {
                    continue;
                };
                let (Some(court), Some(room)) = (record.court.clone(), record.room.clone()) else {
                    continue;
                };
                if !records(&record) {
                    continue;
                }
                (court, room, Some(device))
            }
        };
        let hearings = enforcer.hearings().await;
        let now = OffsetDateTime::now_utc();
        let list = room_hearings(&hearings, &court, &room, now, &settings);
        let schedule = versions.schedule(&court, &room, list, now);
        let devices: Vec<DeviceId> = match only {
            Some(d) => vec![d],
            None => fleet
                .list()
                .await
                .into_iter()
                .filter(|d| d.court.as_deref() == Some(&court) && d.room.as_deref() == Some(&room))
                .filter(records)
                .map(|d| d.id)
                .collect(),
        };
        let payload = gavel_protocol::encode(&schedule);
        for device in &devices {
            let topic = DeviceTopic::new(device.clone(), Channel::Schedule).to_string();
            match mqtt
                .publish(topic, QoS::AtLeastOnce, true, payload.clone())
                .await
            {
                Ok(()) => {
                    debug!(%device, version = schedule.version, "schedule published")
                }
                Err(e) => warn!(%device, error = %e, "could not publish a schedule"),
            }
        }
        info!(%court, %room, version = schedule.version, hearings = schedule.hearings.len(), devices = devices.len(), "room schedule published");
    }
}
