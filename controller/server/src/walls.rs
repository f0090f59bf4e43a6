//! Video walls: the task that owns `gavel_fleet::wall::Walls`, its REST API and the
//! retained `wall` topic of each wall device.
//!
//! Operators set a wall's layout and sources (`PUT /api/v1/walls/{device}`, `gavelctl wall
//! layout`) and move the focus by hand (`POST /api/v1/walls/{device}/focus`); the task
//! also follows every alarm change from the enforcement task (the `push` broadcast) and
//! applies the focus rule. Each new configuration is stored (table `walls`), then
//! published retained with QoS 1 on `gavel/v1/dev/{device}/wall`; at start every stored
//! configuration is published again (an embedded broker forgets retained messages).

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gavel_fleet::wall::{Input, Output, WallError, Walls};
use gavel_protocol::{Channel, DeviceId, DeviceTopic, Wall, WallLayout, WallSource};
use rumqttc::{AsyncClient, QoS};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::ApiErrorBody;
use crate::enforcer::EnforcerHandle;
use crate::fleet_actor::Push;
use crate::store::Store;

enum Request {
    Input(Input, oneshot::Sender<Result<Vec<Output>, WallError>>),
    List(oneshot::Sender<Vec<(String, Wall)>>),
}

/// Cloneable handle to the wall task.
#[derive(Clone)]
pub struct WallsHandle {
    tx: mpsc::Sender<Request>,
}

/// A wall as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WallEntry {
    pub device: String,
    /// The `Wall` message the device is sent (layout, sources, focus, version).
    #[schema(value_type = Object)]
    pub wall: Wall,
}

/// `PUT /api/v1/walls/{device}`: the wall's layout and sources in tile order.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct SetWall {
    /// `1`, `2x2`, `3x3` or `1+5`.
    #[schema(value_type = String)]
    pub layout: WallLayout,
    /// `{court, room, case_number?, url, sub_url?}` per source.
    #[schema(value_type = Vec<Object>)]
    pub sources: Vec<WallSource>,
}

/// `POST /api/v1/walls/{device}/focus`: a room into the focus tile, or no focus.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct FocusWall {
    /// The room to show in the focus tile; absent or null: clear the focus.
    #[serde(default)]
    pub room: Option<String>,
    /// Its court (default: the court of the wall's source for that room).
    #[serde(default)]
    pub court: Option<String>,
    pub by: String,
}

impl WallsHandle {
    async fn input(&self, input: Input) -> Result<Vec<Output>, WallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Input(input, tx))
            .await
            .map_err(|_| WallError::UnknownWall("(the wall task has stopped)".into()))?;
        rx.await
            .map_err(|_| WallError::UnknownWall("(the wall task has stopped)".into()))?
    }

    /// Every wall.
    pub async fn list(&self) -> Vec<(String, Wall)> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::List(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// Starts the wall task.
pub fn spawn(
    store: Store,
    mqtt: AsyncClient,
    push: &broadcast::Sender<Push>,
    enforcer: EnforcerHandle,
    shutdown: CancellationToken,
) -> (WallsHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(64);
    let alarms = push.subscribe();
    let task = tokio::spawn(run(store, mqtt, rx, alarms, enforcer, shutdown));
    (WallsHandle { tx }, task)
}

async fn load(store: &Store) -> Vec<(String, Wall)> {
    match store.load_walls().await {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|(device, json)| match serde_json::from_str::<Wall>(&json) {
                Ok(w) => Some((device, w)),
                Err(e) => {
                    warn!(%device, error = %e, "stored wall configuration unreadable; skipped");
                    None
                }
            })
            .collect(),
        Err(e) => {
            warn!(error = %e, "loading wall configurations failed");
            Vec::new()
        }
    }
}

async fn run(
    store: Store,
    mqtt: AsyncClient,
    mut rx: mpsc::Receiver<Request>,
    mut alarms: broadcast::Receiver<Push>,
    enforcer: EnforcerHandle,
    shutdown: CancellationToken,
) {
    let mut walls = Walls::new();
    // Case numbers in the tiles' labels follow the rooms' hearings.
    let mut cases = tokio::time::interval(std::time::Duration::from_secs(10));
    cases.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stored = load(&store).await;
    if !stored.is_empty() {
        info!(walls = stored.len(), "wall configurations restored");
    }
    if let Ok(out) = walls.handle(OffsetDateTime::now_utc(), Input::Restore(stored)) {
        publish(&store, &mqtt, out, false).await;
    }
    loop {
        let (input, reply) = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = cases.tick() => (Input::Hearings(enforcer.hearings().await), None),
            r = rx.recv() => match r {
                Some(Request::Input(input, reply)) => (input, Some(reply)),
                Some(Request::List(reply)) => {
                    walls.replace(load(&store).await);
                    let _ = reply.send(walls.all().iter().map(|(d, w)| (d.clone(), w.clone())).collect());
                    continue;
                }
                None => break,
            },
            a = alarms.recv() => match a {
                Ok(Push::Alarm { change, alarm }) if change != "cleared" => (Input::Alarm(alarm), None),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "the wall task fell behind the alarm stream");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        // Design: the table is the truth (shared by a controller cluster); reloading a few
        // rows before each decision costs about a millisecond.
        walls.replace(load(&store).await);
        let set = match &input {
            Input::Set { device, .. } => Some(device.clone()),
            _ => None,
        };
        let mut result = walls.handle(OffsetDateTime::now_utc(), input);
        if let Ok(out) = &mut result {
            // A wall just set gets its case numbers at once (in the answer too).
            if let Some(device) = set
                && let Ok(more) = walls.handle(
                    OffsetDateTime::now_utc(),
                    Input::Hearings(enforcer.hearings().await),
                )
            {
                for o in more {
                    let Output::Publish { device: d, .. } = &o;
                    if *d == device
                        && let Some(first) = out.first_mut()
                    {
                        *first = o;
                    } else {
                        out.push(o);
                    }
                }
            }
            publish(&store, &mqtt, out.clone(), true).await;
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

async fn publish(store: &Store, mqtt: &AsyncClient, out: Vec<Output>, save: bool) {
    for Output::Publish { device, wall } in out {
        let Ok(id) = DeviceId::new(device.clone()) else {
            warn!(%device, "not a device id; wall configuration not published");
            continue;
        };
        if save {
            let json = serde_json::to_string(&*wall).unwrap_or_default();
            if let Err(e) = store.save_wall(&device, &json).await {
                warn!(%device, error = %e, "storing a wall configuration failed");
            }
        }
        let topic = DeviceTopic::new(id, Channel::Wall).to_string();
        match mqtt
            .publish(
                topic,
                QoS::AtLeastOnce,
                true,
                gavel_protocol::encode(&*wall),
            )
            .await
        {
            Ok(()) => info!(
                %device,
                version = wall.version,
                layout = %wall.layout,
                focus = ?wall.focus.as_ref().map(|f| format!("{}/{} ({})", f.court, f.room, f.reason)),
                "wall configuration published"
            ),
            Err(e) => warn!(%device, error = %e, "could not publish a wall configuration"),
        }
    }
}

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ApiErrorBody { error: msg.into() })).into_response()
}

fn answer(device: &str, result: Result<Vec<Output>, WallError>) -> Response {
    match result {
        Ok(out) => match out.into_iter().next() {
            Some(Output::Publish { device, wall }) => Json(WallEntry {
                device,
                wall: *wall,
            })
            .into_response(),
            None => err(StatusCode::INTERNAL_SERVER_ERROR, "nothing changed"),
        },
        Err(e @ WallError::UnknownWall(_)) => err(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => err(StatusCode::BAD_REQUEST, format!("wall {device}: {e}")),
    }
}

/// The wall routes.
pub fn routes(walls: WallsHandle) -> Router {
    Router::new()
        .route("/api/v1/walls", get(list))
        .route("/api/v1/walls/{device}", get(show).put(set))
        .route("/api/v1/walls/{device}/focus", post(focus))
        .with_state(walls)
}

#[utoipa::path(get, path = "/api/v1/walls", responses((status = 200, body = [WallEntry])))]
pub async fn list(State(walls): State<WallsHandle>) -> Response {
    let all: Vec<WallEntry> = walls
        .list()
        .await
        .into_iter()
        .map(|(device, wall)| WallEntry { device, wall })
        .collect();
    Json(all).into_response()
}

#[utoipa::path(get, path = "/api/v1/walls/{device}", params(("device" = String, Path)),
    responses((status = 200, body = WallEntry), (status = 404, body = ApiErrorBody)))]
pub async fn show(State(walls): State<WallsHandle>, UrlPath(device): UrlPath<String>) -> Response {
    match walls.list().await.into_iter().find(|(d, _)| *d == device) {
        Some((device, wall)) => Json(WallEntry { device, wall }).into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            format!("no wall is configured for {device}"),
        ),
    }
}

#[utoipa::path(put, path = "/api/v1/walls/{device}", params(("device" = String, Path)), request_body = SetWall,
    responses((status = 200, body = WallEntry), (status = 400, description = "A bad field, named", body = ApiErrorBody)))]
pub async fn set(
    State(walls): State<WallsHandle>,
    UrlPath(device): UrlPath<String>,
    Json(body): Json<SetWall>,
) -> Response {
    if let Err(e) = DeviceId::new(device.clone()) {
        return err(StatusCode::BAD_REQUEST, format!("device {device:?}: {e}"));
    }
    let result = walls
        .input(Input::Set {
            device: device.clone(),
            layout: body.layout,
            sources: body.sources,
        })
        .await;
    answer(&device, result)
}

#[utoipa::path(post, path = "/api/v1/walls/{device}/focus", params(("device" = String, Path)), request_body = FocusWall,
    responses((status = 200, body = WallEntry), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
pub async fn focus(
    State(walls): State<WallsHandle>,
    UrlPath(device): UrlPath<String>,
    Json(body): Json<FocusWall>,
) -> Response {
    let by = body.by.trim().to_owned();
    if by.is_empty() || by.len() > gavel_protocol::MAX_TEXT {
        return err(StatusCode::BAD_REQUEST, "`by` must name who does it");
    }
    let room = match body.room {
        None => None,
        Some(room) => {
            let court = match body.court {
                Some(c) => c,
                None => walls
                    .list()
                    .await
                    .into_iter()
                    .find(|(d, _)| *d == device)
                    .and_then(|(_, w)| w.sources.into_iter().find(|s| s.room == room))
                    .map(|s| s.court)
                    .unwrap_or_default(),
            };
            Some((court, room))
        }
    };
    let result = walls
        .input(Input::Focus {
            device: device.clone(),
            room,
            by,
        })
        .await;
    answer(&device, result)
}
