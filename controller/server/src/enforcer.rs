//! The task that owns the enforcement engine: feeds it hearings, device presence and
//! health and a 1 s tick; persists hearings and alarms; pushes alarm changes to dashboards.
//!
//! The engine runs only on the scheduler: in single-node mode that is this instance, in a
//! cluster the instance that won the election (ADR 0007). A cluster instance forwards every
//! engine input to the broker topic `gavel/v1/ctl/enforce`; the scheduler applies them. On
//! taking over, a scheduler rebuilds the engine from the database (hearings, open alarms,
//! devices' presence and health, each room's latest recording event), so conditions that
//! arose while no instance led are raised, and alarms already stored are not raised again.
//!
//! Every change of a hearing's schedule (import, create, move, cancel) arrives as one
//! request, [`EnforcerHandle::upsert`], is checked by the pure
//! [`gavel_fleet::hearings::book`] rules against the known hearings, and is then stored,
//! remembered and handed to the engine; opening and closing likewise. Each change of a
//! room's hearings is announced to the schedule publisher (the devices' schedules follow).

use std::sync::Arc;
use std::time::Duration;

use gavel_fleet::DeviceRecord;
use gavel_fleet::enforcement::{Alarm, DeviceHealth, Engine, Input, Output, RoomRecording};
use gavel_fleet::hearings::book::{self, Change, ChangeError};
use gavel_fleet::hearings::{Hearing, HearingStatus};
use gavel_protocol::{Event, EventBody, RecordingState, filter};
use rumqttc::{AsyncClient, Event as MqttEvent, EventLoop, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::election::Leadership;
use crate::fleet_actor::Push;
use crate::metrics::Metrics;
use crate::schedules::SchedulePublisher;
use crate::store::{Store, alarm_key};

/// Most inputs applied before one evaluation.
const MAX_BATCH: usize = 20_000;
/// Inputs are evaluated at most this often (and on every 1 s tick).
///
/// Design: one evaluation walks every hearing, device and open alarm: tens of
/// milliseconds at 25,000 hearings. Evaluating after every burst kept a core busy with
/// health telemetry from 50,000 devices; 250 ms bounds that at four evaluations a second
/// and adds at most 250 ms to an alarm's latency.
const EVALUATE_EVERY: Duration = Duration::from_millis(250);
/// Hearings per forwarded message on import.
const FORWARD_CHUNK: usize = 500;
/// A new cluster scheduler waits this long before reading the database, so that what the
/// other instances received just before (and forwarded to nobody) is flushed by then
/// (their fleet tasks write behind every 500 ms).
const TAKEOVER_SETTLE: Duration = Duration::from_millis(1500);

enum Request {
    Input(Input),
    /// Inputs forwarded by a cluster instance (ignored unless this instance leads).
    Forwarded(Vec<Input>),
    /// A schedule change; answered with the changed hearings after they are stored.
    Upsert(Change, oneshot::Sender<Result<Vec<Hearing>, UpsertError>>),
    Hearings(oneshot::Sender<Vec<Hearing>>),
    Alarms(oneshot::Sender<Vec<Alarm>>),
}

/// Why a schedule change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpsertError {
    #[error(transparent)]
    Refused(#[from] ChangeError),
    /// Checked and valid, but the database refused it; nothing changed.
    #[error("storing hearings failed: {0}")]
    Store(String),
    #[error("the enforcement task has stopped")]
    Stopped,
    /// In a cluster with no scheduler elected right now.
    #[error("this instance is not the scheduler")]
    NotScheduler,
}

/// An alarm change as the scheduler announces it to every instance.
#[derive(Debug, Serialize, Deserialize)]
struct Announced {
    change: String,
    alarm: Alarm,
}

/// How a cluster instance reaches the scheduler: the broker, and the shared database for
/// reads.
#[derive(Clone)]
struct ClusterLink {
    client: AsyncClient,
    store: Store,
}

/// Cloneable handle to the enforcement task (or, in a cluster, to the elected scheduler).
#[derive(Clone)]
pub struct EnforcerHandle {
    tx: mpsc::Sender<Request>,
    cluster: Option<ClusterLink>,
    schedules: SchedulePublisher,
}

impl EnforcerHandle {
    /// Hands an input to the engine (presence, health, open/close, ack/resolve).
    pub async fn input(&self, input: Input) {
        match &self.cluster {
            Some(link) => {
                persist_status(&link.store, &self.schedules, &input).await;
                let payload = serde_json::to_vec(&[&input]).unwrap_or_default();
                if let Err(e) = link
                    .client
                    .publish(filter::cluster_inputs(), QoS::AtLeastOnce, false, payload)
                    .await
                {
                    warn!(error = %e, "could not forward an input to the scheduler");
                }
            }
            None => {
                let _ = self.tx.send(Request::Input(input)).await;
            }
        }
    }

    /// Like [`EnforcerHandle::input`] but never waits (for the fleet task's hot path).
    pub fn try_input(&self, input: Input) {
        let sent = match &self.cluster {
            Some(link) => {
                let payload = serde_json::to_vec(&[&input]).unwrap_or_default();
                link.client
                    .try_publish(filter::cluster_inputs(), QoS::AtLeastOnce, false, payload)
                    .is_ok()
            }
            None => self.tx.try_send(Request::Input(input)).is_ok(),
        };
        if !sent {
            warn!("enforcement queue full; an input was dropped");
        }
    }

    /// Checks a schedule change against the known hearings, stores the changed hearings
    /// and enforces them from now on. Returns them (an import leaves out unchanged ones).
    pub async fn upsert(&self, change: Change) -> Result<Vec<Hearing>, UpsertError> {
        if let Some(link) = &self.cluster {
            // Design: any instance checks and stores (the database is shared); the
            // scheduler is told through the broker, or reads them when it takes over.
            let known: std::collections::BTreeMap<String, Hearing> = link
                .store
                .load_hearings()
                .await
                .map_err(|e| UpsertError::Store(e.to_string()))?
                .into_iter()
                .map(|h| (h.id.clone(), h))
                .collect();
            let changed = book::apply(&known, change, OffsetDateTime::now_utc())?;
            link.store
                .save_hearings(&changed)
                .await
                .map_err(|e| UpsertError::Store(e.to_string()))?;
            info!(hearings = changed.len(), "hearings stored");
            announce_rooms(&self.schedules, &known, &changed);
            for chunk in changed.chunks(FORWARD_CHUNK) {
                let inputs: Vec<Input> = chunk.iter().cloned().map(Input::Hearing).collect();
                let payload = serde_json::to_vec(&inputs).unwrap_or_default();
                if let Err(e) = link
                    .client
                    .publish(filter::cluster_inputs(), QoS::AtLeastOnce, false, payload)
                    .await
                {
                    warn!(error = %e, "could not forward hearings to the scheduler");
                }
            }
            return Ok(changed);
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Upsert(change, tx)).await.is_err() {
            return Err(UpsertError::Stopped);
        }
        rx.await.unwrap_or(Err(UpsertError::Stopped))
    }

    /// One hearing.
    pub async fn hearing(&self, id: &str) -> Option<Hearing> {
        self.hearings().await.into_iter().find(|h| h.id == id)
    }

    /// Every known hearing.
    pub async fn hearings(&self) -> Vec<Hearing> {
        if let Some(link) = &self.cluster {
            return link.store.load_hearings().await.unwrap_or_else(|e| {
                warn!(error = %e, "loading hearings failed");
                Vec::new()
            });
        }
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Hearings(tx)).await;
        rx.await.unwrap_or_default()
    }

    /// Open alarms.
    pub async fn alarms(&self) -> Vec<Alarm> {
        if let Some(link) = &self.cluster {
            return link.store.open_alarms().await.unwrap_or_else(|e| {
                warn!(error = %e, "loading open alarms failed");
                Vec::new()
            });
        }
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Alarms(tx)).await;
        rx.await.unwrap_or_default()
    }
}

/// A hearing opened or closed through this instance is stored at once, whoever leads.
async fn persist_status(store: &Store, schedules: &SchedulePublisher, input: &Input) {
    let (Input::Opened { hearing: id, .. } | Input::Closed { hearing: id }) = input else {
        return;
    };
    match store.load_hearings().await {
        Ok(list) => {
            if let Some(mut h) = list.into_iter().find(|h| &h.id == id) {
                mark(&mut h, input);
                if let Err(e) = store.save_hearings(std::slice::from_ref(&h)).await {
                    warn!(error = %e, "saving a hearing failed");
                }
                schedules.hearings_changed(&h.court, &h.room);
            }
        }
        Err(e) => warn!(error = %e, "loading hearings failed"),
    }
}

/// Sets a hearing's status (and when) from an open or close input.
fn mark(h: &mut Hearing, input: &Input) {
    let now = OffsetDateTime::now_utc();
    if matches!(input, Input::Opened { .. }) {
        h.status = HearingStatus::InProgress;
        h.opened_at.get_or_insert(now);
    } else {
        h.status = HearingStatus::Closed;
        h.closed_at.get_or_insert(now);
    }
}

/// Tells the schedule publisher about every room whose hearings changed: the new room of
/// each hearing and, for a move, the old one.
fn announce_rooms(
    schedules: &SchedulePublisher,
    known: &std::collections::BTreeMap<String, Hearing>,
    changed: &[Hearing],
) {
    let mut rooms = std::collections::BTreeSet::new();
    for h in changed {
        if let Some(old) = known.get(&h.id) {
            rooms.insert((old.court.clone(), old.room.clone()));
        }
        rooms.insert((h.court.clone(), h.room.clone()));
    }
    for (court, room) in &rooms {
        schedules.hearings_changed(court, room);
    }
}

/// The engine input for a device's health facts, if it reported any.
pub fn health_input(record: &DeviceRecord) -> Option<Input> {
    let h = record.health.as_ref()?;
    // The recording volume if reported, else the fullest one.
    let volume = h
        .volumes
        .iter()
        .find(|v| v.mount == "/data")
        .or_else(|| h.volumes.iter().min_by_key(|v| v.free_bytes));
    Some(Input::Health(DeviceHealth {
        device: record.id.to_string(),
        court: record.court.clone(),
        room: record.room.clone(),
        disk_free: volume.map_or(0, |v| v.free_bytes),
        disk_total: volume.map_or(0, |v| v.total_bytes),
        write_rate: 0,
        max_temperature: h.temperatures.iter().map(|t| t.celsius).reduce(f64::max),
        clock_offset_ms: h.clock.offset_ms,
    }))
}

/// The engine input for a recording or segment event of a device in `court`/`room`.
pub fn recording_input(court: String, room: String, event: &Event) -> Option<Input> {
    match &event.body {
        EventBody::Recording { state, lost, .. } => {
            let state = match state {
                RecordingState::Idle | RecordingState::Stopping => RoomRecording::Idle,
                RecordingState::Starting | RecordingState::Recording => RoomRecording::Recording,
                RecordingState::Degraded => RoomRecording::Degraded { lost: lost.clone() },
            };
            Some(Input::Room { court, room, state })
        }
        EventBody::Segment { .. } => Some(Input::Segment { court, room }),
        _ => None,
    }
}

/// What the enforcement task needs.
pub struct EnforcerParts {
    pub settings: gavel_fleet::enforcement::Settings,
    pub store: Store,
    pub push: broadcast::Sender<Push>,
    pub metrics: Arc<Metrics>,
    /// Whether this instance is the scheduler.
    pub leadership: Leadership,
    /// In a cluster: the broker (host, port) for forwarding and announcing.
    pub cluster_broker: Option<(String, u16)>,
    /// TLS for the cluster link (an external broker with the generated configuration).
    pub cluster_tls: Option<crate::ingest::ClientTls>,
    /// Told of every change of a room's hearings.
    pub schedules: SchedulePublisher,
}

/// Starts the enforcement task (and, in a cluster, its broker link).
pub fn spawn(
    parts: EnforcerParts,
    shutdown: CancellationToken,
) -> (EnforcerHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(8192);
    let (cluster, announce) = match &parts.cluster_broker {
        Some((host, port)) => {
            let (client, eventloop) = cluster_client(host, *port, parts.cluster_tls.as_ref());
            tokio::spawn(run_link(
                client.clone(),
                eventloop,
                tx.clone(),
                parts.push.clone(),
                shutdown.clone(),
            ));
            (
                Some(ClusterLink {
                    client: client.clone(),
                    store: parts.store.clone(),
                }),
                Some(client),
            )
        }
        None => (None, None),
    };
    let schedules = parts.schedules.clone();
    let task = tokio::spawn(run(parts, announce, rx, shutdown));
    (
        EnforcerHandle {
            tx,
            cluster,
            schedules,
        },
        task,
    )
}

fn cluster_client(
    host: &str,
    port: u16,
    tls: Option<&crate::ingest::ClientTls>,
) -> (AsyncClient, EventLoop) {
    let id = format!("gavel-controller-link-{}", uuid::Uuid::new_v4().simple());
    let mut options = MqttOptions::new(id, host, port);
    if let Some(tls) = tls {
        options.set_transport(tls.transport());
    }
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_clean_session(true)
        .set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    AsyncClient::new(options, 8192)
}

/// Drives the cluster link: forwarded inputs go to the local task (which drops them unless
/// it leads); announced alarm changes go to this instance's dashboards.
async fn run_link(
    client: AsyncClient,
    mut eventloop: EventLoop,
    tx: mpsc::Sender<Request>,
    push: broadcast::Sender<Push>,
    shutdown: CancellationToken,
) {
    let mut reconnect = crate::ingest::Reconnect::default();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                reconnect.connected();
                for topic in [filter::cluster_inputs(), filter::cluster_alarms()] {
                    if let Err(e) = client.try_subscribe(topic, QoS::AtLeastOnce) {
                        warn!(error = %e, "cluster link could not subscribe");
                    }
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                if p.topic == filter::cluster_inputs() {
                    match serde_json::from_slice::<Vec<Input>>(&p.payload) {
                        Ok(inputs) => {
                            let _ = tx.send(Request::Forwarded(inputs)).await;
                        }
                        Err(e) => warn!(error = %e, "unreadable forwarded input; dropped"),
                    }
                } else if p.topic == filter::cluster_alarms() {
                    match serde_json::from_slice::<Announced>(&p.payload) {
                        Ok(a) => {
                            let change = match a.change.as_str() {
                                "raised" => "raised",
                                "cleared" => "cleared",
                                _ => "updated",
                            };
                            let _ = push.send(Push::Alarm {
                                change,
                                alarm: Box::new(a.alarm),
                            });
                        }
                        Err(e) => warn!(error = %e, "unreadable alarm announcement; dropped"),
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if !reconnect
                    .wait(&e, "cluster link lost the broker", &shutdown)
                    .await
                {
                    break;
                }
            }
        }
    }
    let _ = client.try_disconnect();
}

/// The engine and what it needs while this instance leads.
struct Term {
    engine: Engine,
    known: std::collections::BTreeMap<String, Hearing>,
    store: Store,
    push: broadcast::Sender<Push>,
    metrics: Arc<Metrics>,
    announce: Option<AsyncClient>,
    schedules: SchedulePublisher,
}

async fn run(
    parts: EnforcerParts,
    announce: Option<AsyncClient>,
    mut rx: mpsc::Receiver<Request>,
    shutdown: CancellationToken,
) {
    let EnforcerParts {
        settings,
        store,
        push,
        metrics,
        mut leadership,
        cluster_broker,
        schedules,
        ..
    } = parts;
    let clustered = cluster_broker.is_some();
    loop {
        // Follower: wait for leadership, dropping forwarded inputs (a leader reads the
        // database when it takes over).
        while !*leadership.borrow() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = leadership.changed() => if changed.is_err() { return },
                r = rx.recv() => match r {
                    None => return,
                    Some(r) => answer_without_engine(r),
                },
            }
        }
        let mut pending = Vec::new();
        if clustered {
            let settle = tokio::time::sleep(TAKEOVER_SETTLE);
            tokio::pin!(settle);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    () = &mut settle => break,
                    r = rx.recv() => match r {
                        None => return,
                        Some(Request::Input(i)) => pending.push(i),
                        Some(Request::Forwarded(list)) => pending.extend(list),
                        Some(other) => answer_without_engine(other),
                    },
                }
            }
        }
        let mut term = Term {
            engine: Engine::new(settings),
            known: Default::default(),
            store: store.clone(),
            push: push.clone(),
            metrics: metrics.clone(),
            announce: announce.clone(),
            schedules: schedules.clone(),
        };
        term.take_over(pending).await;
        metrics.scheduler.set(1);
        let go_on = term.run(&mut rx, &mut leadership, &shutdown).await;
        metrics.scheduler.set(0);
        if !go_on {
            return;
        }
        info!("no longer the scheduler; enforcement engine dropped");
    }
}

/// Replies to a query while this instance does not run the engine.
fn answer_without_engine(r: Request) {
    match r {
        Request::Upsert(_, reply) => {
            let _ = reply.send(Err(UpsertError::NotScheduler));
        }
        Request::Hearings(reply) => {
            let _ = reply.send(Vec::new());
        }
        Request::Alarms(reply) => {
            let _ = reply.send(Vec::new());
        }
        Request::Input(_) | Request::Forwarded(_) => {}
    }
}

impl Term {
    /// Rebuilds the engine from the database, then applies what arrived meanwhile.
    async fn take_over(&mut self, pending: Vec<Input>) {
        let now = OffsetDateTime::now_utc();
        let mut inputs = Vec::new();
        match self.store.load_hearings().await {
            Ok(hearings) => {
                for h in hearings {
                    let status = h.status;
                    let id = h.id.clone();
                    self.known.insert(id.clone(), h.clone());
                    inputs.push(Input::Hearing(h));
                    if status == HearingStatus::InProgress {
                        inputs.push(Input::Opened {
                            hearing: id,
                            by: "restored".into(),
                        });
                    }
                }
            }
            Err(e) => warn!(error = %e, "loading hearings failed"),
        }
        match self.store.open_alarms().await {
            Ok(alarms) => {
                info!(open = alarms.len(), "open alarms restored");
                self.engine.restore(alarms);
            }
            Err(e) => warn!(error = %e, "loading open alarms failed"),
        }
        match self.store.load_devices().await {
            Ok(devices) => {
                for d in &devices {
                    if let (Some(court), Some(room)) = (&d.court, &d.room) {
                        inputs.push(Input::Presence {
                            device: d.id.to_string(),
                            court: court.clone(),
                            room: room.clone(),
                            online: d.online,
                        });
                    }
                    inputs.extend(health_input(d));
                }
            }
            Err(e) => warn!(error = %e, "loading devices failed"),
        }
        match self.store.latest_recording_events().await {
            Ok(events) => {
                for (court, room, event) in events {
                    inputs.extend(recording_input(court, room, &event));
                }
            }
            Err(e) => warn!(error = %e, "loading recording states failed"),
        }
        info!(
            hearings = self.known.len(),
            pending = pending.len(),
            "enforcement engine rebuilt from the database"
        );
        inputs.extend(pending);
        let out = self.engine.handle_batch(now, inputs);
        self.publish(out).await;
    }

    /// Runs while this instance leads. Returns `false` when the process shuts down.
    async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Request>,
        leadership: &mut Leadership,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut evaluated = tokio::time::Instant::now();
        // Inputs applied since the last evaluation.
        let mut dirty = false;
        loop {
            let due = evaluated + EVALUATE_EVERY;
            let out = tokio::select! {
                _ = shutdown.cancelled() => return false,
                changed = leadership.changed() => {
                    if changed.is_err() || !*leadership.borrow() {
                        return true;
                    }
                    continue;
                }
                _ = tick.tick() => {
                    evaluated = tokio::time::Instant::now();
                    dirty = false;
                    self.engine.evaluate_now(OffsetDateTime::now_utc())
                }
                () = tokio::time::sleep_until(due), if dirty => {
                    evaluated = tokio::time::Instant::now();
                    dirty = false;
                    self.engine.evaluate_now(OffsetDateTime::now_utc())
                }
                request = rx.recv() => match request {
                    None => return false,
                    Some(first) => {
                        // Design: drain the queue; apply the burst, evaluate at most every
                        // EVALUATE_EVERY.
                        let mut batch = Vec::new();
                        let mut out = self.request(first, &mut batch).await;
                        while batch.len() < MAX_BATCH {
                            let Ok(next) = rx.try_recv() else { break };
                            out.extend(self.request(next, &mut batch).await);
                        }
                        dirty |= !batch.is_empty();
                        out.extend(self.engine.apply_only(OffsetDateTime::now_utc(), batch));
                        out
                    }
                },
            };
            self.publish(out).await;
        }
    }

    /// Handles one request: inputs join `batch`; queries are answered after applying it.
    async fn request(&mut self, request: Request, batch: &mut Vec<Input>) -> Vec<Output> {
        match request {
            Request::Input(input) => {
                self.note_status(&input).await;
                batch.push(input);
                Vec::new()
            }
            Request::Forwarded(inputs) => {
                for input in inputs {
                    self.note_status(&input).await;
                    if let Input::Hearing(h) = &input {
                        self.known.insert(h.id.clone(), h.clone());
                    }
                    batch.push(input);
                }
                Vec::new()
            }
            Request::Upsert(change, reply) => {
                let result = match book::apply(&self.known, change, OffsetDateTime::now_utc()) {
                    Ok(changed) => match self.store.save_hearings(&changed).await {
                        Ok(()) => {
                            announce_rooms(&self.schedules, &self.known, &changed);
                            for h in &changed {
                                info!(hearing = %h.id, status = ?h.status, start = %gavel_protocol::rfc3339(h.scheduled_start), room = %h.room, "hearing stored");
                                self.known.insert(h.id.clone(), h.clone());
                                batch.push(Input::Hearing(h.clone()));
                            }
                            Ok(changed)
                        }
                        Err(e) => Err(UpsertError::Store(e.to_string())),
                    },
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
                Vec::new()
            }
            Request::Hearings(reply) => {
                let _ = reply.send(self.known.values().cloned().collect());
                Vec::new()
            }
            Request::Alarms(reply) => {
                let out = self
                    .engine
                    .handle_batch(OffsetDateTime::now_utc(), std::mem::take(batch));
                let _ = reply.send(self.engine.open().cloned().collect());
                out
            }
        }
    }

    /// Keeps the hearing's stored status in step with open/close.
    async fn note_status(&mut self, input: &Input) {
        if let Input::Opened { hearing, .. } | Input::Closed { hearing } = input
            && let Some(h) = self.known.get_mut(hearing)
        {
            mark(h, input);
            if let Err(e) = self.store.save_hearings(std::slice::from_ref(h)).await {
                warn!(error = %e, "saving a hearing failed");
            }
            self.schedules.hearings_changed(&h.court, &h.room);
        }
    }

    /// Stores alarm changes, then announces them. A raise the database refuses (another
    /// scheduler stored an open alarm for the condition) is not announced; the engine
    /// adopts the stored alarm instead.
    async fn publish(&mut self, out: Vec<Output>) {
        if out.is_empty() {
            return;
        }
        let changes: Vec<(&'static str, Alarm)> = out
            .into_iter()
            .map(|o| match o {
                Output::Raised(a) => ("raised", a),
                Output::Updated(a) => ("updated", a),
                Output::Cleared(a) => ("cleared", a),
            })
            .collect();
        let rows: Vec<(bool, Alarm)> = changes
            .iter()
            .map(|(what, a)| (*what == "raised", a.clone()))
            .collect();
        let refused = match self.store.save_alarms(&rows).await {
            Ok(refused) => refused,
            Err(e) => {
                self.metrics.store_errors.inc();
                warn!(error = %e, "saving alarms failed");
                Vec::new()
            }
        };
        if !refused.is_empty() {
            let keys: std::collections::BTreeSet<String> = refused.iter().map(alarm_key).collect();
            warn!(
                alarms = refused.len(),
                "raises refused: their conditions already have a stored open alarm; adopting it"
            );
            match self.store.open_alarms().await {
                Ok(open) => self
                    .engine
                    .restore(open.into_iter().filter(|a| keys.contains(&alarm_key(a)))),
                Err(e) => warn!(error = %e, "loading open alarms failed"),
            }
        }
        let refused_ids: std::collections::BTreeSet<&str> =
            refused.iter().map(|a| a.id.as_str()).collect();
        for (what, alarm) in changes {
            if refused_ids.contains(alarm.id.as_str()) {
                continue;
            }
            match what {
                "raised" => {
                    self.metrics.alarms_raised.inc();
                    warn!(alarm = %alarm.id, kind = ?alarm.kind, level = alarm.level, message = %alarm.message, "alarm raised");
                }
                "cleared" => {
                    info!(alarm = %alarm.id, by = ?alarm.resolved.as_ref().map(|r| &r.by), "alarm closed");
                }
                _ => {}
            }
            match &self.announce {
                Some(client) => {
                    let payload = serde_json::to_vec(&Announced {
                        change: what.to_owned(),
                        alarm,
                    })
                    .unwrap_or_default();
                    if let Err(e) = client
                        .publish(filter::cluster_alarms(), QoS::AtLeastOnce, false, payload)
                        .await
                    {
                        warn!(error = %e, "could not announce an alarm change");
                    }
                }
                None => {
                    let _ = self.push.send(Push::Alarm {
                        change: what,
                        alarm: Box::new(alarm),
                    });
                }
            }
        }
        self.metrics
            .alarms_open
            .set(self.engine.open().count() as i64);
    }
}
