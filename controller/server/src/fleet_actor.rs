//! The task that owns the fleet core: feeds it messages and ticks, writes its outputs
//! behind to the store, pushes changes to dashboards and hands acks to waiting commands.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gavel_fleet::sequence::{Cursor, SeqOutput, Sequencer};
use gavel_fleet::{ChangeKind, DeviceRecord, Fleet, Input, Output, Summary};
use gavel_protocol::{
    Ack, Channel, Command, CommandBody, DeviceId, DeviceMessage, DeviceTopic, Event, EventBody,
    PROTOCOL_VERSION, Receipt,
};
use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::store::Store;

/// What dashboards receive.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Push {
    Device {
        kind: ChangeKind,
        record: Box<DeviceRecord>,
    },
    Summary(Summary),
    /// An alarm was raised, updated or cleared.
    Alarm {
        change: &'static str,
        alarm: Box<gavel_fleet::enforcement::Alarm>,
    },
    /// An `ota` event from a device (for the campaign task).
    Ota {
        device: DeviceId,
        event: Box<Event>,
    },
    /// A campaign's state or progress changed (the campaign view as JSON).
    Campaign(Box<serde_json::Value>),
    /// A hearing's compliance record was (re)assessed.
    Compliance(Box<gavel_fleet::compliance::Compliance>),
    /// A transcript line arrived (partial or final) or was corrected (the proofreading
    /// page's live view).
    Transcript(Box<serde_json::Value>),
}

/// A request to the fleet task.
enum Request {
    Message(DeviceId, Box<DeviceMessage>),
    List(oneshot::Sender<Vec<DeviceRecord>>),
    Get(DeviceId, oneshot::Sender<Option<DeviceRecord>>),
    Snapshot(oneshot::Sender<(Summary, Vec<DeviceRecord>)>),
    Flush(oneshot::Sender<()>),
}

/// Cloneable handle to the fleet task.
#[derive(Clone)]
pub struct FleetHandle {
    tx: mpsc::Sender<Request>,
    /// In a cluster: the registry every instance writes, read instead of this instance's
    /// partial view (it sees only its share of the device traffic).
    shared: Option<Store>,
}

impl FleetHandle {
    /// Hands a device message to the core; waits when the queue is full (backpressure).
    pub async fn message(&self, device: DeviceId, message: DeviceMessage) {
        let _ = self
            .tx
            .send(Request::Message(device, Box::new(message)))
            .await;
    }

    pub async fn list(&self) -> Vec<DeviceRecord> {
        if let Some(store) = &self.shared {
            return shared_devices(store).await;
        }
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::List(tx)).await;
        rx.await.unwrap_or_default()
    }

    pub async fn get(&self, id: DeviceId) -> Option<DeviceRecord> {
        if let Some(store) = &self.shared {
            return store.load_device(&id).await.unwrap_or_else(|e| {
                warn!(error = %e, "loading a device from the shared registry failed");
                None
            });
        }
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Get(id, tx)).await;
        rx.await.ok().flatten()
    }

    /// Writes pending records and events to the store now (read-your-writes for the API).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Flush(tx)).await;
        let _ = rx.await;
    }

    pub async fn snapshot(&self) -> (Summary, Vec<DeviceRecord>) {
        if let Some(store) = &self.shared {
            let devices = shared_devices(store).await;
            let summary = Fleet::restore(devices.clone()).summary();
            return (summary, devices);
        }
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Snapshot(tx)).await;
        rx.await.unwrap_or_default()
    }
}

async fn shared_devices(store: &Store) -> Vec<DeviceRecord> {
    store.load_devices().await.unwrap_or_else(|e| {
        warn!(error = %e, "loading the shared device registry failed");
        Vec::new()
    })
}

/// Who waits for which ack: correlation id -> (device, reply channel).
type Waiters = HashMap<String, (DeviceId, oneshot::Sender<Ack>)>;

/// Commands waiting for their ack, by correlation id.
#[derive(Clone, Default)]
pub struct PendingAcks {
    inner: Arc<Mutex<Waiters>>,
}

impl PendingAcks {
    /// Registers a waiter for the ack of command `id` sent to `device`.
    pub fn wait(&self, device: DeviceId, id: String) -> oneshot::Receiver<Ack> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut map) = self.inner.lock() {
            map.insert(id, (device, tx));
        }
        rx
    }

    /// Drops the waiter for `id` (timed out).
    pub fn forget(&self, id: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(id);
        }
    }

    fn resolve(&self, device: &DeviceId, ack: Ack) {
        let Ok(mut map) = self.inner.lock() else {
            return;
        };
        match map.remove(&ack.id) {
            // Design: a device can only answer its own commands.
            Some((expected, tx)) if &expected == device => {
                let _ = tx.send(ack);
            }
            Some(entry) => {
                warn!(device = %device, command = %ack.id, "ack for another device's command ignored");
                map.insert(ack.id.clone(), entry);
            }
            None => debug!(device = %device, command = %ack.id, "ack for no waiting command"),
        }
    }
}

/// What the fleet task starts from and talks to.
pub struct FleetParts {
    pub fleet: Fleet,
    pub sequencer: Sequencer,
    pub store: Store,
    pub push: broadcast::Sender<Push>,
    pub acks: PendingAcks,
    pub metrics: Arc<Metrics>,
    /// For receipts and replay requests to devices.
    pub mqtt: AsyncClient,
    /// Where presence, boots and health go for alarm enforcement.
    pub enforcer: Option<crate::enforcer::EnforcerHandle>,
    /// Told when a device seals a hearing's recording (after the seal is stored).
    pub compliance: Option<crate::compliance::ComplianceTrigger>,
    /// Told of every birth, so a recording device gets its room's schedule.
    pub schedules: Option<crate::schedules::SchedulePublisher>,
    /// Told of every stored `ticket` event (the service hall's queue).
    pub hall: Option<crate::hall::HallHandle>,
    /// One instance of a cluster: reads go to the shared registry, and silence is no
    /// verdict (this instance sees only part of each device's traffic; the broker's last
    /// will reports a dead device).
    pub clustered: bool,
    /// Told of every certificate renewal request, after it is stored.
    pub renewals: Option<tokio::sync::mpsc::UnboundedSender<(gavel_protocol::DeviceId, String)>>,
}

/// The fleet summary is published at most this often.
const SUMMARY_EVERY: Duration = Duration::from_millis(500);

/// Starts the fleet task.
pub fn spawn(
    parts: FleetParts,
    shutdown: CancellationToken,
) -> (FleetHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(4096);
    let actor = Actor {
        fleet: parts.fleet,
        sequencer: parts.sequencer,
        store: parts.store,
        push: parts.push,
        acks: parts.acks,
        metrics: parts.metrics,
        mqtt: parts.mqtt,
        enforcer: parts.enforcer,
        compliance: parts.compliance,
        schedules: parts.schedules,
        hall: parts.hall,
        renewals: parts.renewals,
        stale_verdicts: !parts.clustered,
        summary_due: false,
        summary_sent: std::time::Instant::now() - SUMMARY_EVERY,
        boots: HashMap::new(),
        dirty: BTreeMap::new(),
        events: Vec::new(),
        cursors: Vec::new(),
    };
    let shared = parts.clustered.then(|| actor.store.clone());
    (
        FleetHandle { tx, shared },
        tokio::spawn(actor.run(rx, shutdown)),
    )
}

struct Actor {
    fleet: Fleet,
    sequencer: Sequencer,
    store: Store,
    push: broadcast::Sender<Push>,
    acks: PendingAcks,
    metrics: Arc<Metrics>,
    mqtt: AsyncClient,
    enforcer: Option<crate::enforcer::EnforcerHandle>,
    compliance: Option<crate::compliance::ComplianceTrigger>,
    schedules: Option<crate::schedules::SchedulePublisher>,
    hall: Option<crate::hall::HallHandle>,
    renewals: Option<tokio::sync::mpsc::UnboundedSender<(DeviceId, String)>>,
    /// Whether a silent device is declared stale (single node only).
    stale_verdicts: bool,
    /// The summary changed since it was last published.
    summary_due: bool,
    /// When the summary was last published.
    summary_sent: std::time::Instant,
    /// Last boot id seen per device (a new one is an agent start).
    boots: HashMap<DeviceId, String>,
    dirty: BTreeMap<DeviceId, DeviceRecord>,
    /// Events delivered by the sequencer, waiting to be stored.
    events: Vec<(DeviceId, Event, OffsetDateTime)>,
    /// Stream positions waiting to be stored with them.
    cursors: Vec<Cursor>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.update_gauges();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let now = OffsetDateTime::now_utc();
                    if self.stale_verdicts {
                        let out = self.fleet.handle(now, Input::Tick);
                        self.apply(out);
                    }
                    let seq_out = self.sequencer.tick(now);
                    self.apply_sequenced(seq_out);
                    self.publish_summary();
                    self.flush().await;
                }
                request = rx.recv() => match request {
                    Some(r) => self.request(r).await,
                    None => break,
                },
            }
        }
        self.flush().await;
        info!(
            devices = self.fleet.summary().devices,
            "fleet state flushed"
        );
    }

    async fn request(&mut self, request: Request) {
        match request {
            Request::Message(device, message) => {
                let out = self.fleet.handle(
                    OffsetDateTime::now_utc(),
                    Input::Message {
                        device,
                        message: *message,
                    },
                );
                self.apply(out);
                if self.events.len() >= 512 {
                    self.flush().await;
                }
            }
            Request::List(tx) => {
                let _ = tx.send(self.fleet.devices().cloned().collect());
            }
            Request::Get(id, tx) => {
                let _ = tx.send(self.fleet.get(&id).cloned());
            }
            Request::Flush(tx) => {
                self.flush().await;
                let _ = tx.send(());
            }
            Request::Snapshot(tx) => {
                let _ = tx.send((
                    self.fleet.summary(),
                    self.fleet.devices().cloned().collect(),
                ));
            }
        }
    }

    fn apply(&mut self, outputs: Vec<Output>) {
        let mut summary_changed = false;
        for output in outputs {
            match output {
                Output::Persist(record) => {
                    self.dirty.insert(record.id.clone(), *record);
                }
                Output::Changed { kind, record } => {
                    self.enforce(kind, &record);
                    match kind {
                        ChangeKind::Online | ChangeKind::Offline | ChangeKind::Appeared => {
                            info!(device = %record.id, change = ?kind, cause = ?record.offline_cause, "device {kind:?}");
                            summary_changed = true;
                        }
                        ChangeKind::Birth => {
                            info!(device = %record.id, profile = ?record.profile, version = ?record.firmware_version, "device birth");
                            if let Some(s) = &self.schedules {
                                s.device_born(record.id.clone());
                            }
                            summary_changed = true;
                        }
                        ChangeKind::Health => {}
                    }
                    let _ = self.push.send(Push::Device { kind, record });
                }
                Output::Event { device, event } => {
                    let out = self
                        .sequencer
                        .observe(OffsetDateTime::now_utc(), device, *event);
                    self.apply_sequenced(out);
                }
                Output::Ack { device, ack } => self.acks.resolve(&device, ack),
                Output::StaleStatus { device, status } => {
                    debug!(device = %device, bd_seq = status.bd_seq, "stale status from an older session ignored");
                }
            }
        }
        if summary_changed {
            self.summary_due = true;
            if self.summary_sent.elapsed() >= SUMMARY_EVERY {
                self.publish_summary();
            }
        }
    }

    /// Publishes the fleet summary if it changed since it was last published.
    ///
    /// Design: the summary walks every device (O(n)); computing it per birth made
    /// registering 50,000 devices quadratic. A change is published at once unless one was
    /// published within `SUMMARY_EVERY`; then the next tick publishes it.
    fn publish_summary(&mut self) {
        if std::mem::take(&mut self.summary_due) {
            self.summary_sent = std::time::Instant::now();
            self.update_gauges();
            let _ = self.push.send(Push::Summary(self.fleet.summary()));
        }
    }

    /// Tells the enforcement engine what matters to it: presence in a room, agent starts,
    /// health facts.
    fn enforce(&mut self, kind: ChangeKind, record: &DeviceRecord) {
        use gavel_fleet::enforcement::Input as E;
        let Some(enforcer) = &self.enforcer else {
            return;
        };
        let device = record.id.to_string();
        match kind {
            ChangeKind::Online | ChangeKind::Offline => {
                if let (Some(court), Some(room)) = (&record.court, &record.room) {
                    enforcer.try_input(E::Presence {
                        device: device.clone(),
                        court: court.clone(),
                        room: room.clone(),
                        online: record.online,
                    });
                }
                if let Some(boot) = &record.boot_id
                    && record.online
                    && self.boots.insert(record.id.clone(), boot.clone()).as_ref() != Some(boot)
                {
                    enforcer.try_input(E::Boot {
                        device,
                        boot_id: Some(boot.clone()),
                    });
                }
            }
            ChangeKind::Health => {
                if let Some(input) = crate::enforcer::health_input(record) {
                    enforcer.try_input(input);
                }
            }
            ChangeKind::Appeared | ChangeKind::Birth => {}
        }
    }

    /// Recording events tell the enforcement engine whether a room records.
    fn enforce_recording(&self, device: &DeviceId, event: &Event) {
        let Some(enforcer) = &self.enforcer else {
            return;
        };
        let Some(record) = self.fleet.get(device) else {
            return;
        };
        if let gavel_protocol::EventBody::Storage { alarm, detail, .. } = &event.body {
            enforcer.try_input(gavel_fleet::enforcement::Input::Storage {
                device: device.to_string(),
                court: record.court.clone(),
                room: record.room.clone(),
                alarm: alarm.as_str().to_owned(),
                on: event.phase != gavel_protocol::Phase::End,
                detail: detail.clone().unwrap_or_default(),
            });
        }
        let (Some(court), Some(room)) = (record.court.clone(), record.room.clone()) else {
            return;
        };
        if let Some(input) =
            crate::patrol::finding_input(court.clone(), room.clone(), device.as_str(), event)
        {
            enforcer.try_input(input);
        }
        if let Some(input) = crate::enforcer::recording_input(court, room, event) {
            enforcer.try_input(input);
        }
    }

    fn apply_sequenced(&mut self, outputs: Vec<SeqOutput>) {
        for output in outputs {
            match output {
                SeqOutput::Deliver { device, event } => {
                    self.metrics.events_applied.inc();
                    self.enforce_recording(&device, &event);
                    if matches!(event.body, gavel_protocol::EventBody::Ota { .. }) {
                        let _ = self.push.send(Push::Ota {
                            device: device.clone(),
                            event: event.clone(),
                        });
                    }
                    self.events
                        .push((device, *event, OffsetDateTime::now_utc()));
                }
                SeqOutput::Duplicate {
                    device,
                    boot_id,
                    seq,
                } => {
                    self.metrics.events_duplicate.inc();
                    debug!(%device, %boot_id, seq, "duplicate event dropped");
                }
                SeqOutput::AskReplay {
                    device,
                    boot_id,
                    from_seq,
                } => {
                    self.metrics.replay_requests.inc();
                    info!(%device, %boot_id, from_seq, "gap in events; asking the device to replay");
                    let now = OffsetDateTime::now_utc();
                    let command = Command {
                        v: PROTOCOL_VERSION,
                        ts: now,
                        id: uuid::Uuid::new_v4().to_string(),
                        expires: Some(now + time::Duration::seconds(30)),
                        body: CommandBody::Replay { boot_id, from_seq },
                    };
                    let topic = DeviceTopic::new(device, Channel::Cmd).to_string();
                    if let Err(e) = self.mqtt.try_publish(
                        topic,
                        QoS::AtLeastOnce,
                        false,
                        gavel_protocol::encode(&command),
                    ) {
                        warn!(error = %e, "could not send a replay request");
                    }
                }
                SeqOutput::Lost {
                    device,
                    boot_id,
                    from_seq,
                    to_seq,
                } => {
                    self.metrics
                        .events_lost
                        .inc_by(to_seq.saturating_sub(from_seq) + 1);
                    tracing::error!(%device, %boot_id, from_seq, to_seq, "events never arrived despite replays; skipped");
                }
            }
        }
    }

    /// Tells devices which of their events are stored, so they can delete them.
    fn send_receipts(&mut self) {
        for c in self.sequencer.take_receipts() {
            let receipt = Receipt {
                v: PROTOCOL_VERSION,
                ts: OffsetDateTime::now_utc(),
                boot_id: c.boot_id,
                through_seq: c.next - 1,
            };
            let topic = DeviceTopic::new(c.device, Channel::Receipt).to_string();
            if let Err(e) = self.mqtt.try_publish(
                topic,
                QoS::AtLeastOnce,
                true,
                gavel_protocol::encode(&receipt),
            ) {
                warn!(error = %e, "could not send a receipt; the device will resend and we re-receipt");
            }
        }
    }

    fn update_gauges(&self) {
        let s = self.fleet.summary();
        self.metrics.devices.set(s.devices as i64);
        self.metrics.online.set(s.online as i64);
    }

    async fn flush(&mut self) {
        self.cursors.extend(self.sequencer.take_dirty());
        if self.dirty.is_empty() && self.events.is_empty() && self.cursors.is_empty() {
            return;
        }
        let records: Vec<DeviceRecord> = self.dirty.values().cloned().collect();
        match self
            .store
            .save_batch(&records, &self.events, &self.cursors)
            .await
        {
            Ok(()) => {
                if let Some(h) = &self.hall {
                    for (device, event, _) in &self.events {
                        if matches!(event.body, EventBody::Ticket { .. })
                            && let Some(court) =
                                self.fleet.get(device).and_then(|r| r.court.clone())
                        {
                            h.ticket(device, &court, event);
                        }
                    }
                }
                if let Some(c) = &self.compliance {
                    // A final transcript line may complete a closed hearing's record: one
                    // trigger per hearing and batch.
                    let mut transcribed = std::collections::BTreeSet::new();
                    for (_, event, _) in &self.events {
                        match &event.body {
                            EventBody::Sealed { hearing_id, .. } => c.changed(hearing_id),
                            EventBody::Transcript { hearing_id, .. }
                                if event.phase == gavel_protocol::Phase::End =>
                            {
                                transcribed.insert(hearing_id.as_str());
                            }
                            _ => {}
                        }
                    }
                    for h in transcribed {
                        c.changed(h);
                    }
                }
                for (device, event, _) in &self.events {
                    if let Some(line) = crate::transcripts::live_line(device.as_str(), event) {
                        let _ = self.push.send(Push::Transcript(Box::new(line)));
                    }
                }
                if let Some(r) = &self.renewals {
                    for (device, event, _) in &self.events {
                        if let EventBody::CertRenewal { csr, .. } = &event.body {
                            let _ = r.send((device.clone(), csr.clone()));
                        }
                    }
                }
                self.dirty.clear();
                self.events.clear();
                self.cursors.clear();
                // Design: receipts only after the commit: a device deletes an event only
                // once it is durably ours.
                self.send_receipts();
            }
            Err(e) => {
                // Design: keep everything and retry on the next tick; nothing is lost
                // while the controller runs, and devices keep events until the receipt.
                self.metrics.store_errors.inc();
                warn!(error = %e, records = records.len(), events = self.events.len(), "saving to the database failed; will retry");
            }
        }
    }
}
