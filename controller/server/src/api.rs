//! HTTP API under `/api/v1`, its OpenAPI document, Prometheus `/metrics`, the dashboard
//! at `/` and its server-sent event stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use gavel_fleet::{DeviceRecord, Summary};
use gavel_protocol::{
    Ack, Channel, Command, CommandBody, DeviceId, DeviceTopic, Outcome, PROTOCOL_VERSION,
};
use rumqttc::{AsyncClient, QoS};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use utoipa::OpenApi;

use crate::fleet_actor::{FleetHandle, PendingAcks, Push};
use crate::ingest::{IngestReport, RejectLog};
use crate::metrics::{CommandLabel, Metrics};
use crate::store::{Store, StoredEvent};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub fleet: FleetHandle,
    pub store: Store,
    pub push: broadcast::Sender<Push>,
    pub acks: PendingAcks,
    pub mqtt: AsyncClient,
    pub metrics: Arc<Metrics>,
    pub rejects: RejectLog,
    pub command_timeout: Duration,
    pub enforcer: crate::enforcer::EnforcerHandle,
    /// Courts' UTC offset for imported times without one.
    pub utc_offset: time::UtcOffset,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gavel controller API",
        version = "1",
        description = "Fleet registry, device commands and live updates for Gavel courtroom devices."
    ),
    paths(
        service_health,
        fleet_summary,
        list_devices,
        get_device,
        device_events,
        send_command,
        ingest_report,
        stream,
        crate::ota::list,
        crate::ota::publish,
        crate::ota::serve,
        crate::campaigns::list,
        crate::campaigns::create,
        crate::campaigns::show,
        crate::campaigns::act
    ),
    components(schemas(
        DeviceRecord,
        Summary,
        gavel_fleet::OfflineCause,
        gavel_fleet::ChangeKind,
        StoredEvent,
        IngestReport,
        crate::ingest::Reject,
        CommandRequest,
        ServiceHealth,
        ApiErrorBody,
        crate::ota::PublishedBundle,
        crate::campaigns::CampaignView,
        crate::campaigns::CreateCampaign
    ))
)]
pub struct ApiDoc;

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/health", get(service_health))
        .route("/api/v1/fleet", get(fleet_summary))
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/devices/{id}", get(get_device))
        .route("/api/v1/devices/{id}/events", get(device_events))
        .route("/api/v1/devices/{id}/commands", post(send_command))
        .route("/api/v1/ingest", get(ingest_report))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/hearings", get(list_hearings))
        .route("/api/v1/hearings/import", post(import_hearings))
        .route("/api/v1/hearings/{id}/open", post(open_hearing))
        .route("/api/v1/hearings/{id}/close", post(close_hearing))
        .route("/api/v1/alarms", get(list_alarms))
        .route("/api/v1/alarms/history", get(alarm_history))
        .route("/api/v1/alarms/{id}/ack", post(ack_alarm))
        .route("/api/v1/alarms/{id}/resolve", post(resolve_alarm))
        .with_state(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Error body: `{"error": "..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiErrorBody {
    pub error: String,
}

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiErrorBody { error: self.1 })).into_response()
    }
}

fn device_id(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("device id: {e}")))
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("../assets/dashboard.html"))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Liveness of the controller itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceHealth {
    pub status: String,
    pub version: String,
    pub broker_connected: bool,
    pub database: String,
}

#[utoipa::path(get, path = "/api/v1/health", responses((status = 200, body = ServiceHealth)))]
async fn service_health(State(s): State<AppState>) -> Json<ServiceHealth> {
    Json(ServiceHealth {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        broker_connected: s.metrics.broker_connected.get() == 1,
        database: format!("{:?}", s.store.backend()).to_lowercase(),
    })
}

#[utoipa::path(get, path = "/api/v1/fleet", responses((status = 200, body = Summary)))]
async fn fleet_summary(State(s): State<AppState>) -> Json<Summary> {
    Json(s.fleet.snapshot().await.0)
}

/// Filters for the device list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeviceFilter {
    /// Only devices of this court.
    pub court: Option<String>,
    /// Only devices of this room.
    pub room: Option<String>,
    /// Only online (true) or offline (false) devices.
    pub online: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/devices", params(DeviceFilter), responses((status = 200, body = [DeviceRecord])))]
async fn list_devices(
    State(s): State<AppState>,
    Query(f): Query<DeviceFilter>,
) -> Json<Vec<DeviceRecord>> {
    let devices = s
        .fleet
        .list()
        .await
        .into_iter()
        .filter(|d| f.court.as_ref().is_none_or(|c| d.court.as_ref() == Some(c)))
        .filter(|d| f.room.as_ref().is_none_or(|r| d.room.as_ref() == Some(r)))
        .filter(|d| f.online.is_none_or(|o| d.online == o))
        .collect();
    Json(devices)
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceRecord), (status = 404, body = ApiErrorBody)))]
async fn get_device(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeviceRecord>, ApiError> {
    let id = device_id(&id)?;
    s.fleet
        .get(id.clone())
        .await
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no device {id}")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// How many events, newest first (1-100000, default 50).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/events", params(("id" = String, Path, description = "Device id"), EventsQuery),
    responses((status = 200, body = [StoredEvent])))]
async fn device_events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<StoredEvent>>, ApiError> {
    let id = device_id(&id)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 100_000);
    s.fleet.flush().await;
    s.store
        .events(&id, limit)
        .await
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A command for a device: `{"type": "ping"}`, `{"type": "get_config"}` or
/// `{"type": "restart", "reason": "..."}`; optional `timeout_ms`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CommandRequest {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub command: CommandBody,
    pub timeout_ms: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/commands", params(("id" = String, Path, description = "Device id")),
    request_body = CommandRequest,
    responses((status = 200, description = "The device's ack", body = Object),
        (status = 404, body = ApiErrorBody), (status = 409, description = "Device offline", body = ApiErrorBody),
        (status = 504, description = "No ack in time", body = ApiErrorBody)))]
async fn send_command(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<CommandRequest>,
) -> Result<Json<Ack>, ApiError> {
    let id = device_id(&id)?;
    let record = s
        .fleet
        .get(id.clone())
        .await
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no device {id}")))?;
    let name = req.command.name();
    let count = |outcome: &str| {
        s.metrics
            .commands
            .get_or_create(&CommandLabel {
                command: name.into(),
                outcome: outcome.into(),
            })
            .inc();
    };
    if !record.online {
        count("offline");
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("device {id} is offline"),
        ));
    }
    let timeout = req
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.clamp(1, 600_000)))
        .unwrap_or(s.command_timeout);
    let now = OffsetDateTime::now_utc();
    let command = Command {
        v: PROTOCOL_VERSION,
        ts: now,
        id: uuid::Uuid::new_v4().to_string(),
        expires: Some(now + timeout),
        body: req.command,
    };
    let waiter = s.acks.wait(id.clone(), command.id.clone());
    let topic = DeviceTopic::new(id.clone(), Channel::Cmd).to_string();
    if let Err(e) = s
        .mqtt
        .publish(
            topic,
            QoS::AtLeastOnce,
            false,
            gavel_protocol::encode(&command),
        )
        .await
    {
        s.acks.forget(&command.id);
        count("publish_failed");
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("broker: {e}"),
        ));
    }
    match tokio::time::timeout(timeout, waiter).await {
        Ok(Ok(ack)) => {
            count(match ack.outcome {
                Outcome::Ok { .. } => "ok",
                Outcome::Rejected { .. } => "rejected",
                Outcome::Failed { .. } => "failed",
            });
            Ok(Json(ack))
        }
        _ => {
            s.acks.forget(&command.id);
            count("timeout");
            Err(ApiError(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "device {id} did not acknowledge {name} within {} ms",
                    timeout.as_millis()
                ),
            ))
        }
    }
}

#[utoipa::path(get, path = "/api/v1/ingest", responses((status = 200, body = IngestReport)))]
async fn ingest_report(State(s): State<AppState>) -> Json<IngestReport> {
    Json(s.rejects.report())
}

fn sse(name: &str, data: &impl Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "null".into()))
}

#[derive(Serialize)]
struct Snapshot {
    summary: Summary,
    devices: Vec<DeviceRecord>,
}

/// Server-sent events: `snapshot` first, then `device` and `summary` as they change.
#[utoipa::path(get, path = "/api/v1/stream", responses((status = 200, description = "text/event-stream of snapshot, device and summary events")))]
async fn stream(
    State(s): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut rx = s.push.subscribe();
    let fleet = s.fleet.clone();
    let metrics = s.metrics.clone();
    let stream = async_stream(move |tx| async move {
        metrics.stream_clients.inc();
        let (summary, devices) = fleet.snapshot().await;
        let mut open = tx
            .send(sse("snapshot", &Snapshot { summary, devices }))
            .await
            .is_ok();
        while open {
            let event = match rx.recv().await {
                Ok(Push::Device { kind, record }) => sse(
                    "device",
                    &serde_json::json!({ "kind": kind, "record": record }),
                ),
                Ok(Push::Summary(summary)) => sse("summary", &summary),
                Ok(Push::Alarm { change, alarm }) => sse(
                    "alarm",
                    &serde_json::json!({ "change": change, "alarm": alarm }),
                ),
                Ok(Push::Campaign(view)) => sse("campaign", &view),
                Ok(Push::Ota { .. }) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let (summary, devices) = fleet.snapshot().await;
                    sse("snapshot", &Snapshot { summary, devices })
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            open = tx.send(event).await.is_ok();
        }
        metrics.stream_clients.dec();
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A stream fed by a task through a channel; the task stops when the client goes away.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}

/// Hearings known to the controller, by start time.
#[utoipa::path(get, path = "/api/v1/hearings", responses((status = 200, description = "Hearings", body = [Object])))]
async fn list_hearings(State(s): State<AppState>) -> Json<Vec<gavel_fleet::hearings::Hearing>> {
    let mut list = s.enforcer.hearings().await;
    list.sort_by_key(|h| h.scheduled_start);
    Json(list)
}

/// Import hearings from CSV (columns `case_number,court,room,start,end,judge,parties`):
/// all or nothing; every bad row is named by line and field.
#[utoipa::path(post, path = "/api/v1/hearings/import", request_body(content = String, content_type = "text/csv"),
    responses((status = 200, description = "Imported: {\"imported\": N}", body = Object),
        (status = 422, description = "Nothing imported: {\"errors\": [{line, field, message}]}", body = Object)))]
async fn import_hearings(State(s): State<AppState>, body: String) -> Response {
    match gavel_fleet::hearings::import_csv(&body, s.utc_offset) {
        Ok(list) => match s.enforcer.import(list).await {
            Ok(n) => Json(serde_json::json!({ "imported": n })).into_response(),
            Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        },
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "error": format!("{} problem(s); nothing imported", errors.len()), "errors": errors })),
        )
            .into_response(),
    }
}

/// Who does it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// User name recorded with the action.
    pub by: String,
}

async fn hearing_exists(s: &AppState, id: &str) -> Result<(), ApiError> {
    if s.enforcer.hearings().await.iter().any(|h| h.id == id) {
        Ok(())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no hearing {id}")))
    }
}

/// The clerk opens the hearing.
#[utoipa::path(post, path = "/api/v1/hearings/{id}/open", params(("id" = String, Path, description = "Hearing id")), request_body = Actor,
    responses((status = 204), (status = 404, body = ApiErrorBody)))]
async fn open_hearing(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(a): Json<Actor>,
) -> Result<StatusCode, ApiError> {
    hearing_exists(&s, &id).await?;
    s.enforcer
        .input(gavel_fleet::enforcement::Input::Opened {
            hearing: id,
            by: a.by,
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The hearing is closed.
#[utoipa::path(post, path = "/api/v1/hearings/{id}/close", params(("id" = String, Path, description = "Hearing id")), request_body = Actor,
    responses((status = 204), (status = 404, body = ApiErrorBody)))]
async fn close_hearing(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(_a): Json<Actor>,
) -> Result<StatusCode, ApiError> {
    hearing_exists(&s, &id).await?;
    s.enforcer
        .input(gavel_fleet::enforcement::Input::Closed { hearing: id })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Open alarms.
#[utoipa::path(get, path = "/api/v1/alarms", responses((status = 200, description = "Open alarms", body = [Object])))]
async fn list_alarms(State(s): State<AppState>) -> Json<Vec<gavel_fleet::enforcement::Alarm>> {
    let mut list = s.enforcer.alarms().await;
    list.sort_by(|a, b| b.level.cmp(&a.level).then(a.raised_at.cmp(&b.raised_at)));
    Json(list)
}

/// The latest alarms, open and closed (with who acknowledged and resolved them).
#[utoipa::path(get, path = "/api/v1/alarms/history", params(EventsQuery), responses((status = 200, body = [Object])))]
async fn alarm_history(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    s.store
        .alarm_history(q.limit.unwrap_or(100).clamp(1, 100_000))
        .await
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn alarm_exists(s: &AppState, id: &str) -> Result<(), ApiError> {
    if s.enforcer.alarms().await.iter().any(|a| a.id == id) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no open alarm {id}"),
        ))
    }
}

/// Acknowledge an alarm: it stops escalating.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/ack", params(("id" = String, Path, description = "Alarm id")), request_body = Actor,
    responses((status = 204), (status = 404, body = ApiErrorBody)))]
async fn ack_alarm(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(a): Json<Actor>,
) -> Result<StatusCode, ApiError> {
    alarm_exists(&s, &id).await?;
    s.enforcer
        .input(gavel_fleet::enforcement::Input::Acknowledge {
            alarm: id,
            by: a.by,
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Resolve an alarm by hand; it is not raised again until its condition has cleared.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/resolve", params(("id" = String, Path, description = "Alarm id")), request_body = Actor,
    responses((status = 204), (status = 404, body = ApiErrorBody)))]
async fn resolve_alarm(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(a): Json<Actor>,
) -> Result<StatusCode, ApiError> {
    alarm_exists(&s, &id).await?;
    s.enforcer
        .input(gavel_fleet::enforcement::Input::Resolve {
            alarm: id,
            by: a.by,
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_every_api_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/api/v1/health",
            "/api/v1/fleet",
            "/api/v1/devices",
            "/api/v1/devices/{id}",
            "/api/v1/devices/{id}/events",
            "/api/v1/devices/{id}/commands",
            "/api/v1/ingest",
            "/api/v1/stream",
        ] {
            assert!(paths.contains_key(p), "{p} missing from OpenAPI");
        }
        assert!(doc["components"]["schemas"]["DeviceRecord"].is_object());
    }
}
