//! The campaign task: owns the OTA campaigns (`gavel_fleet::rollout::Campaign` cores),
//! ticks them every second, sends `ota_install` commands, turns device acks and `ota`
//! events into results, persists every change and pushes progress to the dashboard.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gavel_fleet::rollout::{
    Campaign, CampaignSpec, CampaignState, Input, Output, Progress, RoomSchedule, Selector,
    TargetDevice,
};
use gavel_protocol::{
    Channel, Command, CommandBody, DeviceId, DeviceTopic, EventBody, OtaStage, Outcome,
    PROTOCOL_VERSION,
};
use rumqttc::{AsyncClient, QoS};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::ApiErrorBody;
use crate::fleet_actor::{FleetHandle, PendingAcks, Push};
use crate::ota::{BundleRepo, PublishedBundle};
use crate::store::Store;

/// A campaign as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignView {
    /// Campaign id.
    pub id: String,
    /// Bundle version.
    pub version: String,
    /// Bundle file name.
    pub bundle: String,
    /// State (`running`, `paused`, `halted` with a reason, `aborted`, `completed`).
    #[schema(value_type = Object)]
    pub state: CampaignState,
    /// Counts.
    #[schema(value_type = Object)]
    pub progress: Progress,
}

/// What `POST /api/v1/ota/campaigns` takes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CreateCampaign {
    /// Campaign id (default: `ota-{version}-{time}`).
    #[serde(default)]
    pub id: Option<String>,
    /// Published bundle name.
    pub bundle: String,
    /// Which devices.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub selector: Selector,
    /// Failed share of a wave that halts the campaign (default 0.2).
    #[serde(default)]
    pub failure_threshold: Option<f64>,
    /// Installs at once (default 200).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Download cap sent to devices, bits per second (default: the device's own).
    #[serde(default)]
    pub max_bits_per_s: Option<u64>,
    /// Daily maintenance windows in UTC (`{"start_hour": 22, "end_hour": 6}`); when set,
    /// installs start only inside one (and never in a room in session).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub maintenance: Vec<gavel_fleet::rollout::MaintenanceWindow>,
}

/// Stored form of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    bundle: PublishedBundle,
    max_bits_per_s: Option<u64>,
    campaign: Campaign,
}

enum Request {
    Create(
        CreateCampaign,
        oneshot::Sender<Result<CampaignView, String>>,
    ),
    List(oneshot::Sender<Vec<CampaignView>>),
    Get(String, oneshot::Sender<Option<CampaignView>>),
    Act(String, Input, oneshot::Sender<Option<CampaignView>>),
    Result(String, Result<(), String>),
    Schedule(String, String, RoomSchedule),
}

/// Cloneable handle to the campaign task.
#[derive(Clone)]
pub struct CampaignsHandle {
    tx: mpsc::Sender<Request>,
}

impl CampaignsHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Feeds a room's schedule (hearings) to every campaign.
    pub async fn schedule(&self, court: String, room: String, schedule: RoomSchedule) {
        let _ = self.tx.send(Request::Schedule(court, room, schedule)).await;
    }
}

/// What the campaign task needs.
pub struct CampaignTask {
    /// Device registry.
    pub fleet: FleetHandle,
    /// Persistence.
    pub store: Store,
    /// Published bundles.
    pub bundles: BundleRepo,
    /// Ack waiters.
    pub acks: PendingAcks,
    /// MQTT client for commands.
    pub mqtt: AsyncClient,
    /// Dashboard pushes (and where `ota` events arrive).
    pub push: broadcast::Sender<Push>,
    /// Base URL devices download bundles from.
    pub base_url: String,
    campaigns: BTreeMap<String, Stored>,
    /// The latest schedule of every room (new campaigns start from it).
    rooms: BTreeMap<(String, String), RoomSchedule>,
    /// Where the hearings are (and the devices' pre-roll): a new campaign reads the
    /// rooms' schedules from them at once.
    hearings: Option<(crate::enforcer::EnforcerHandle, time::Duration)>,
    dirty: bool,
}

impl CampaignTask {
    /// A task over these parts; campaigns are loaded from the store when it starts.
    pub fn new(
        fleet: FleetHandle,
        store: Store,
        bundles: BundleRepo,
        acks: PendingAcks,
        mqtt: AsyncClient,
        push: broadcast::Sender<Push>,
        base_url: String,
    ) -> Self {
        Self {
            fleet,
            store,
            bundles,
            acks,
            mqtt,
            push,
            base_url,
            campaigns: BTreeMap::new(),
            rooms: BTreeMap::new(),
            hearings: None,
            dirty: false,
        }
    }

    /// Reads the rooms' schedules from the hearings when a campaign is created.
    pub fn with_hearings(
        mut self,
        enforcer: crate::enforcer::EnforcerHandle,
        pre_roll: time::Duration,
    ) -> Self {
        self.hearings = Some((enforcer, pre_roll));
        self
    }

    /// Spawns the task.
    ///
    /// Campaigns advance only while `leadership` says this instance is the scheduler; an
    /// instance that becomes the scheduler reloads them from the database first.
    pub fn spawn(
        mut self,
        leadership: crate::election::Leadership,
        shutdown: CancellationToken,
    ) -> (CampaignsHandle, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let handle = CampaignsHandle { tx: tx.clone() };
        let task = tokio::spawn(async move {
            let mut events = self.push.subscribe();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut leading = false;
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let now_leading = *leadership.borrow();
                        if now_leading && !leading {
                            self.reload().await;
                        }
                        leading = now_leading;
                        if !leading {
                            continue;
                        }
                        let now = OffsetDateTime::now_utc();
                        let ids: Vec<String> = self.campaigns.keys().cloned().collect();
                        for id in ids {
                            self.feed(&tx, &id, now, Input::Tick).await;
                        }
                        self.persist().await;
                    }
                    r = rx.recv() => match r {
                        Some(r) => self.request(&tx, r).await,
                        None => break,
                    },
                    e = events.recv() => match e {
                        Ok(Push::Ota { device, event }) => self.ota_event(&device, &event),
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(n)) => warn!(n, "campaign task missed pushes"),
                        Err(broadcast::error::RecvError::Closed) => {}
                    },
                }
            }
            self.persist().await;
        });
        (handle, task)
    }

    /// Replaces the campaigns in memory with the stored ones.
    async fn reload(&mut self) {
        match self.store.load_campaigns().await {
            Ok(list) => {
                self.campaigns.clear();
                for json in list {
                    match serde_json::from_str::<Stored>(&json) {
                        Ok(s) => {
                            self.campaigns.insert(s.campaign.spec.id.clone(), s);
                        }
                        Err(e) => warn!(error = %e, "stored campaign does not parse; skipped"),
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot load campaigns"),
        }
    }

    fn view(s: &Stored) -> CampaignView {
        CampaignView {
            id: s.campaign.spec.id.clone(),
            version: s.campaign.spec.version.clone(),
            bundle: s.bundle.name.clone(),
            state: s.campaign.state.clone(),
            progress: s.campaign.progress(),
        }
    }

    async fn persist(&mut self) {
        if !self.dirty {
            return;
        }
        for s in self.campaigns.values() {
            let json = serde_json::to_string(s).unwrap_or_default();
            if let Err(e) = self.store.save_campaign(&s.campaign.spec.id, &json).await {
                warn!(error = %e, "cannot store campaign; retrying next tick");
                return;
            }
        }
        self.dirty = false;
    }

    fn ota_event(&mut self, device: &DeviceId, event: &gavel_protocol::Event) {
        let EventBody::Ota {
            campaign,
            stage,
            detail,
            ..
        } = &event.body
        else {
            return;
        };
        let outcome = match stage {
            OtaStage::Committed => Ok(()),
            OtaStage::RolledBack | OtaStage::Rejected | OtaStage::Interrupted => {
                Err(detail.clone().unwrap_or_else(|| format!("{stage:?}")))
            }
            _ => return,
        };
        for s in self.campaigns.values_mut() {
            if campaign.as_ref().is_some_and(|c| *c != s.campaign.spec.id) {
                continue;
            }
            if s.campaign.devices.contains_key(device.as_str()) {
                s.campaign.handle(
                    OffsetDateTime::now_utc(),
                    Input::Result {
                        device: device.to_string(),
                        outcome: outcome.clone(),
                    },
                );
                self.dirty = true;
            }
        }
    }

    async fn request(&mut self, tx: &mpsc::Sender<Request>, r: Request) {
        let now = OffsetDateTime::now_utc();
        match r {
            Request::Create(c, reply) => {
                let _ = reply.send(self.create(tx, c, now).await);
            }
            Request::List(reply) => {
                let _ = reply.send(self.campaigns.values().map(Self::view).collect());
            }
            Request::Get(id, reply) => {
                let _ = reply.send(self.campaigns.get(&id).map(Self::view));
            }
            Request::Act(id, input, reply) => {
                if self.campaigns.contains_key(&id) {
                    self.feed(tx, &id, now, input).await;
                }
                let _ = reply.send(self.campaigns.get(&id).map(Self::view));
            }
            Request::Result(device, outcome) => {
                for s in self.campaigns.values_mut() {
                    if s.campaign.devices.contains_key(&device) {
                        s.campaign.handle(
                            now,
                            Input::Result {
                                device: device.clone(),
                                outcome: outcome.clone(),
                            },
                        );
                        self.dirty = true;
                    }
                }
            }
            Request::Schedule(court, room, schedule) => {
                self.rooms
                    .insert((court.clone(), room.clone()), schedule.clone());
                for s in self.campaigns.values_mut() {
                    s.campaign.handle(
                        now,
                        Input::Schedule {
                            court: court.clone(),
                            room: room.clone(),
                            schedule: schedule.clone(),
                        },
                    );
                }
            }
        }
    }

    async fn create(
        &mut self,
        tx: &mpsc::Sender<Request>,
        c: CreateCampaign,
        now: OffsetDateTime,
    ) -> Result<CampaignView, String> {
        let bundle = self
            .bundles
            .get(&c.bundle)
            .ok_or_else(|| format!("no published bundle {}", c.bundle))?;
        let id = c
            .id
            .clone()
            .unwrap_or_else(|| format!("ota-{}-{}", bundle.manifest.version, now.unix_timestamp()));
        if self.campaigns.contains_key(&id) {
            return Err(format!("campaign {id} exists"));
        }
        let threshold = c.failure_threshold.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(format!("failure_threshold {threshold} is outside 0-1"));
        }
        let url = format!("{}/api/v1/ota/bundles/{}", self.base_url, bundle.name);
        let mut spec = CampaignSpec::new(&id, &bundle.manifest.version.to_string(), &url);
        spec.selector = c.selector;
        spec.failure_threshold = threshold;
        if let Some(n) = c.max_in_flight {
            spec.max_in_flight = n.max(1);
        }
        if let Some(w) = c
            .maintenance
            .iter()
            .find(|w| w.start_hour > 23 || w.end_hour > 23 || w.start_hour == w.end_hour)
        {
            return Err(format!(
                "maintenance window {}-{}: hours are 0-23 and the window is not empty",
                w.start_hour, w.end_hour
            ));
        }
        spec.maintenance = c.maintenance;
        // Only devices whose profile the bundle supports, and that are placed.
        let fleet: Vec<TargetDevice> = self
            .fleet
            .list()
            .await
            .into_iter()
            .filter_map(|d| {
                Some(TargetDevice {
                    id: d.id.to_string(),
                    profile: d
                        .profile
                        .filter(|p| bundle.manifest.compatible.contains(p))?,
                    court: d.court?,
                    room: d.room?,
                    tags: d.tags,
                })
            })
            .collect();
        let mut campaign = Campaign::plan(spec, &fleet);
        if campaign.devices.is_empty() {
            return Err("the selector matches no placed device of a compatible profile".into());
        }
        // Design: the rooms' schedules before the first dispatch, so a room in session is
        // never sent an install in the moment after creation.
        if let Some((enforcer, pre_roll)) = &self.hearings {
            let hearings = enforcer.hearings().await;
            let fresh = gavel_fleet::rollout::room_schedules(&hearings, *pre_roll, now);
            for key in self.rooms.keys().cloned().collect::<Vec<_>>() {
                if !fresh.contains_key(&key) {
                    self.rooms.insert(key, RoomSchedule::default());
                }
            }
            self.rooms.extend(fresh);
        }
        for ((court, room), schedule) in &self.rooms {
            campaign.handle(
                now,
                Input::Schedule {
                    court: court.clone(),
                    room: room.clone(),
                    schedule: schedule.clone(),
                },
            );
        }
        info!(campaign = %id, devices = campaign.devices.len(), waves = campaign.waves.len(), "campaign created");
        self.campaigns.insert(
            id.clone(),
            Stored {
                bundle,
                max_bits_per_s: c.max_bits_per_s,
                campaign,
            },
        );
        self.dirty = true;
        self.feed(tx, &id, now, Input::Tick).await;
        self.persist().await;
        self.campaigns
            .get(&id)
            .map(Self::view)
            .ok_or_else(|| "campaign vanished".into())
    }

    async fn feed(
        &mut self,
        tx: &mpsc::Sender<Request>,
        id: &str,
        now: OffsetDateTime,
        input: Input,
    ) {
        let Some(s) = self.campaigns.get_mut(id) else {
            return;
        };
        let before = (s.campaign.state.clone(), s.campaign.progress());
        let out = s.campaign.handle(now, input);
        let after = (s.campaign.state.clone(), s.campaign.progress());
        if before != after || !out.is_empty() {
            self.dirty = true;
            let _ = self.push.send(Push::Campaign(Box::new(
                serde_json::to_value(Self::view(s)).unwrap_or_default(),
            )));
        }
        let (bundle, cap) = (s.bundle.clone(), s.max_bits_per_s);
        for o in out {
            match o {
                Output::Install { device } => {
                    self.send_install(tx, id, &device, &bundle, cap, now).await
                }
                Output::WaveStarted { wave, devices } => {
                    info!(campaign = %id, wave, devices, "wave started")
                }
                Output::State(st) => info!(campaign = %id, state = ?st, "campaign state"),
            }
        }
    }

    async fn send_install(
        &self,
        tx: &mpsc::Sender<Request>,
        campaign: &str,
        device: &str,
        bundle: &PublishedBundle,
        cap: Option<u64>,
        now: OffsetDateTime,
    ) {
        let fail = |reason: String| {
            let tx = tx.clone();
            let device = device.to_owned();
            async move {
                let _ = tx.send(Request::Result(device, Err(reason))).await;
            }
        };
        let Ok(id) = DeviceId::new(device) else {
            fail("bad device id".into()).await;
            return;
        };
        let command = Command {
            v: PROTOCOL_VERSION,
            ts: now,
            id: uuid::Uuid::new_v4().to_string(),
            expires: Some(now + time::Duration::hours(1)),
            body: CommandBody::OtaInstall {
                campaign: Some(campaign.to_owned()),
                version: bundle.manifest.version.to_string(),
                url: format!("{}/api/v1/ota/bundles/{}", self.base_url, bundle.name),
                size: bundle.size,
                sha256: bundle.sha256.clone(),
                max_bits_per_s: cap,
                force: false,
            },
        };
        let waiter = self.acks.wait(id.clone(), command.id.clone());
        let topic = DeviceTopic::new(id, Channel::Cmd).to_string();
        if let Err(e) = self
            .mqtt
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                gavel_protocol::encode(&command),
            )
            .await
        {
            self.acks.forget(&command.id);
            fail(format!("broker: {e}")).await;
            return;
        }
        // A refusal in the ack is a result; an accepted install reports by `ota` events.
        let tx = tx.clone();
        let device = device.to_owned();
        tokio::spawn(async move {
            if let Ok(Ok(ack)) = tokio::time::timeout(Duration::from_secs(60), waiter).await {
                let reason = match ack.outcome {
                    Outcome::Rejected { reason } => Some(format!("rejected: {reason}")),
                    Outcome::Failed { error } => Some(format!("failed: {error}")),
                    Outcome::Ok { .. } => None,
                };
                if let Some(r) = reason {
                    let _ = tx.send(Request::Result(device, Err(r))).await;
                }
            }
        });
    }
}

/// The campaign routes.
pub fn routes(handle: CampaignsHandle) -> Router {
    Router::new()
        .route("/api/v1/ota/campaigns", get(list).post(create))
        .route("/api/v1/ota/campaigns/{id}", get(show))
        .route("/api/v1/ota/campaigns/{id}/{action}", post(act))
        .with_state(handle)
}

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ApiErrorBody { error: msg.into() })).into_response()
}

/// Campaigns with their progress.
#[utoipa::path(get, path = "/api/v1/ota/campaigns", responses((status = 200, body = [CampaignView])))]
pub async fn list(State(h): State<CampaignsHandle>) -> Response {
    match h.ask(Request::List).await {
        Some(v) => Json(v).into_response(),
        None => err(StatusCode::SERVICE_UNAVAILABLE, "campaign task stopped"),
    }
}

/// Starts a campaign.
#[utoipa::path(post, path = "/api/v1/ota/campaigns", request_body = CreateCampaign,
    responses((status = 201, body = CampaignView), (status = 422, body = ApiErrorBody)))]
pub async fn create(State(h): State<CampaignsHandle>, Json(c): Json<CreateCampaign>) -> Response {
    match h.ask(|tx| Request::Create(c, tx)).await {
        Some(Ok(v)) => (StatusCode::CREATED, Json(v)).into_response(),
        Some(Err(e)) => err(StatusCode::UNPROCESSABLE_ENTITY, e),
        None => err(StatusCode::SERVICE_UNAVAILABLE, "campaign task stopped"),
    }
}

/// One campaign.
#[utoipa::path(get, path = "/api/v1/ota/campaigns/{id}", params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignView), (status = 404, body = ApiErrorBody)))]
pub async fn show(State(h): State<CampaignsHandle>, Path(id): Path<String>) -> Response {
    match h.ask(|tx| Request::Get(id.clone(), tx)).await {
        Some(Some(v)) => Json(v).into_response(),
        Some(None) => err(StatusCode::NOT_FOUND, format!("no campaign {id}")),
        None => err(StatusCode::SERVICE_UNAVAILABLE, "campaign task stopped"),
    }
}

/// `pause`, `resume` or `abort` a campaign.
#[utoipa::path(post, path = "/api/v1/ota/campaigns/{id}/{action}",
    params(("id" = String, Path, description = "Campaign id"), ("action" = String, Path, description = "pause, resume or abort")),
    responses((status = 200, body = CampaignView), (status = 404, body = ApiErrorBody)))]
pub async fn act(
    State(h): State<CampaignsHandle>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let input = match action.as_str() {
        "pause" => Input::Pause,
        "resume" => Input::Resume,
        "abort" => Input::Abort,
        other => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("unknown action {other:?}; pause, resume or abort"),
            );
        }
    };
    match h.ask(|tx| Request::Act(id.clone(), input, tx)).await {
        Some(Some(v)) => Json(v).into_response(),
        Some(None) => err(StatusCode::NOT_FOUND, format!("no campaign {id}")),
        None => err(StatusCode::SERVICE_UNAVAILABLE, "campaign task stopped"),
    }
}

/// Keeps the campaigns' view of every room's schedule following the hearings: every 2 s,
/// rooms whose schedule changed (in session, busy spans) are sent to the campaign task.
pub fn follow_hearings(
    campaigns: CampaignsHandle,
    enforcer: crate::enforcer::EnforcerHandle,
    pre_roll: time::Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: BTreeMap<(String, String), RoomSchedule> = BTreeMap::new();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let hearings = enforcer.hearings().await;
            let now = OffsetDateTime::now_utc();
            let next = gavel_fleet::rollout::room_schedules(&hearings, pre_roll, now);
            for (key, schedule) in &next {
                if last.get(key) != Some(schedule) {
                    campaigns
                        .schedule(key.0.clone(), key.1.clone(), schedule.clone())
                        .await;
                }
            }
            for key in last.keys().filter(|k| !next.contains_key(*k)) {
                campaigns
                    .schedule(key.0.clone(), key.1.clone(), RoomSchedule::default())
                    .await;
            }
            last = next;
        }
    })
}
