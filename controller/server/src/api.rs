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
    /// Where hearing changes go so devices' schedules follow.
    pub schedules: crate::schedules::SchedulePublisher,
    /// Pre-roll of the schedules (which hearing of a room is due now).
    pub pre_roll: time::Duration,
    /// Courts' UTC offset for imported times without one.
    pub utc_offset: time::UtcOffset,
    /// Gathers a hearing's evidence for its compliance record.
    pub compliance: crate::compliance::Sources,
    /// Asks for a hearing to be assessed again (after a close).
    pub compliance_trigger: crate::compliance::ComplianceTrigger,
    /// Relays devices' live HLS to browsers.
    pub live: crate::live::LiveProxy,
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
        crate::campaigns::act,
        hearing_compliance,
        compliance_report,
        timeline,
        crate::hearings_api::list_hearings,
        crate::hearings_api::create_hearing,
        crate::hearings_api::import_hearings,
        crate::hearings_api::get_hearing,
        crate::hearings_api::move_hearing,
        crate::hearings_api::cancel_hearing,
        crate::hearings_api::open_hearing,
        crate::hearings_api::close_hearing,
        list_alarms,
        alarm_history,
        ack_alarm,
        resolve_alarm,
        crate::recording::room_recording,
        crate::recording::hearing_recording,
        crate::hall::view,
        crate::hall::call_next,
        crate::hall::recall,
        crate::hall::lookup,
        crate::hall::check_code,
        crate::walls::list,
        crate::walls::show,
        crate::walls::set,
        crate::walls::focus,
        crate::patrol::list_findings,
        crate::patrol::finding_snapshot,
        crate::patrol::live_snapshot,
        crate::live::relay,
        crate::patrol::live,
        crate::patrol::recording_at,
        crate::patrol::add_note,
        crate::patrol::patrol_report,
        crate::archive::upload_status,
        crate::archive::upload,
        crate::archive::hearing_index,
        crate::archive::playlist,
        crate::archive::source_mp4,
        crate::archive::serve_segment,
        crate::archive::audio_clip,
        crate::transcripts::transcript,
        crate::transcripts::correct_line,
        crate::transcripts::sign_off,
        crate::transcripts::list_corrections,
        crate::transcripts::search
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
        crate::walls::WallEntry,
        crate::walls::SetWall,
        crate::walls::FocusWall,
        crate::campaigns::CampaignView,
        crate::campaigns::CreateCampaign,
        gavel_fleet::hearings::Hearing,
        gavel_fleet::hearings::HearingStatus,
        gavel_fleet::hearings::HearingChange,
        gavel_fleet::hearings::ChangeAction,
        gavel_fleet::hearings::Party,
        gavel_fleet::hearings::RowError,
        crate::hearings_api::NewHearing,
        crate::hearings_api::MoveHearing,
        crate::hearings_api::CancelHearing,
        crate::hearings_api::FieldErrors,
        Actor,
        crate::recording::RecordingRequest,
        crate::recording::RecordingResult,
        crate::recording::DeviceAnswer,
        gavel_fleet::hall::HallView,
        gavel_fleet::hall::ServiceView,
        gavel_fleet::hall::WindowView,
        gavel_fleet::hall::Call,
        gavel_fleet::hall::PublicCase,
        gavel_fleet::hall::PublicHearing,
        crate::hall::CallRequest,
        crate::hall::CallResult,
        crate::hall::LookupRequest,
        crate::hall::CheckCode,
        crate::patrol::NewNote,
        crate::archive::ArchivedHearing,
        crate::archive::ArchivedSource,
        crate::store::ArchivedSegment,
        crate::transcripts::TranscriptView,
        crate::transcripts::NewText,
        crate::transcripts::SignRequest,
        crate::transcripts::export::Line,
        crate::transcripts::export::SignOff,
        crate::transcripts::export::Correction,
        crate::transcripts::db::Hit
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
        .route("/api/v1/hearings/{id}/compliance", get(hearing_compliance))
        .route("/api/v1/reports/compliance", get(compliance_report))
        .route("/api/v1/timeline", get(timeline))
        .route(
            "/api/v1/hearings/{id}/recording/{action}",
            post(crate::recording::hearing_recording),
        )
        .route(
            "/api/v1/rooms/{court}/{room}/recording/{action}",
            post(crate::recording::room_recording),
        )
        .route("/api/v1/alarms", get(list_alarms))
        .route("/api/v1/alarms/history", get(alarm_history))
        .route("/api/v1/alarms/{id}/ack", post(ack_alarm))
        .route("/api/v1/alarms/{id}/resolve", post(resolve_alarm))
        .merge(crate::hearings_api::routes())
        .merge(crate::patrol::routes())
        .merge(crate::live::routes())
        .merge(crate::transcripts::routes())
        .with_state(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Error body: `{"error": "..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiErrorBody {
    pub error: String,
}

/// An error answer: status and the `error` text.
pub struct ApiError(pub StatusCode, pub String);

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
    let timeout = req
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.clamp(1, 600_000)))
        .unwrap_or(s.command_timeout);
    command_device(&s, id, req.command, timeout).await.map(Json)
}

/// Sends a command to a device and waits up to `timeout` for its ack.
pub(crate) async fn command_device(
    s: &AppState,
    id: DeviceId,
    body: CommandBody,
    timeout: Duration,
) -> Result<Ack, ApiError> {
    let record = s
        .fleet
        .get(id.clone())
        .await
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no device {id}")))?;
    let name = body.name();
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
    let now = OffsetDateTime::now_utc();
    let command = Command {
        v: PROTOCOL_VERSION,
        ts: now,
        id: uuid::Uuid::new_v4().to_string(),
        expires: Some(now + timeout),
        body,
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
            Ok(ack)
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
                Ok(Push::Compliance(c)) => sse("compliance", &c),
                Ok(Push::Transcript(line)) => sse("transcript", &line),
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

/// Who does it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// User name recorded with the action.
    pub by: String,
}

/// A hearing's compliance record: scheduled against recorded coverage per source, gaps
/// with reasons, hash chain and seal per device, transcript. The stored record once the
/// hearing is closed and assessed; assessed on the spot (verdict `open`) before that.
#[utoipa::path(get, path = "/api/v1/hearings/{id}/compliance", params(("id" = String, Path, description = "Hearing id")),
    responses((status = 200, description = "Compliance record", body = Object), (status = 404, body = ApiErrorBody)))]
async fn hearing_compliance(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<gavel_fleet::compliance::Compliance>, ApiError> {
    let h = s
        .enforcer
        .hearing(&id)
        .await
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no hearing {id}")))?;
    let stored = s.store.compliance(&id).await.map_err(internal)?;
    match stored {
        Some(c)
            if h.status == gavel_fleet::hearings::HearingStatus::Closed
                && c.verdict != gavel_fleet::compliance::Verdict::Pending =>
        {
            Ok(Json(c))
        }
        _ => {
            s.fleet.flush().await;
            let c = s.compliance.assess(&h).await.map_err(internal)?;
            // A closed hearing assessed here is stored too, so reports agree with it.
            if h.status == gavel_fleet::hearings::HearingStatus::Closed {
                s.store.save_compliance(&c).await.map_err(internal)?;
            }
            Ok(Json(c))
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Which day (the courts' local date; today when absent) and in which form.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReportQuery {
    /// Court id (required for the compliance report).
    pub court: Option<String>,
    /// `YYYY-MM-DD` in the courts' local time; today when absent.
    pub date: Option<String>,
    /// `json` (default), `csv` or `html`.
    pub format: Option<String>,
}

fn report_date(q: &ReportQuery, offset: time::UtcOffset) -> Result<time::Date, ApiError> {
    match &q.date {
        None => Ok(time::OffsetDateTime::now_utc().to_offset(offset).date()),
        Some(d) => time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|_| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("date {d:?}: expected YYYY-MM-DD"),
                )
            }),
    }
}

/// The daily compliance report of a court: share of hearings fully recorded, every
/// exception explained. JSON, CSV (`format=csv`) or a printable page (`format=html`).
#[utoipa::path(get, path = "/api/v1/reports/compliance", params(ReportQuery),
    responses((status = 200, description = "Daily report", body = Object), (status = 400, body = ApiErrorBody)))]
async fn compliance_report(
    State(s): State<AppState>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let court = q
        .court
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "court is required".into()))?;
    let offset = s.utc_offset;
    let date = report_date(&q, offset)?;
    let hearings = s.enforcer.hearings().await;
    let (from, to) = day_bounds(date, offset);
    let records = s
        .store
        .compliance_between(Some(&court), from, to)
        .await
        .map_err(internal)?;
    let map = records
        .into_iter()
        .map(|c| (c.hearing_id.clone(), c))
        .collect();
    let report = gavel_fleet::report::daily(&court, date, offset, &hearings, &map);
    let name = format!("compliance-{court}-{date}");
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => Json(report).into_response(),
        "csv" => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.csv\""),
                ),
            ],
            report.to_csv(offset),
        )
            .into_response(),
        "html" => Html(report.to_html(offset)).into_response(),
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("format {other:?}: expected json, csv or html"),
            ));
        }
    })
}

fn day_bounds(
    date: time::Date,
    offset: time::UtcOffset,
) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let from = date.midnight().assume_offset(offset);
    (from, from + time::Duration::days(1))
}

/// One hearing on the timeline.
#[derive(Debug, Serialize)]
struct TimelineHearing {
    id: String,
    case_number: String,
    judge: String,
    status: gavel_fleet::hearings::HearingStatus,
    #[serde(with = "time::serde::rfc3339")]
    start: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    end: time::OffsetDateTime,
    verdict: Option<gavel_fleet::compliance::Verdict>,
    /// Recorded spans (Unix ms), the union over the hearing's sources that recorded most.
    recorded: Vec<(i64, i64)>,
    exceptions: Vec<String>,
}

/// A room's day.
#[derive(Debug, Serialize)]
struct TimelineRoom {
    court: String,
    room: String,
    hearings: Vec<TimelineHearing>,
}

/// Today's (or `date`'s) hearings per room with what was recorded of them, for the
/// dashboard's timeline.
#[utoipa::path(get, path = "/api/v1/timeline", params(ReportQuery),
    responses((status = 200, description = "Rooms with their hearings and recorded spans", body = Object)))]
async fn timeline(
    State(s): State<AppState>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let offset = s.utc_offset;
    let date = report_date(&q, offset)?;
    let (from, to) = day_bounds(date, offset);
    let stored: std::collections::BTreeMap<String, gavel_fleet::compliance::Compliance> = s
        .store
        .compliance_between(q.court.as_deref().filter(|c| !c.is_empty()), from, to)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|c| (c.hearing_id.clone(), c))
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let devices = s.fleet.list().await;
    let mut rooms: std::collections::BTreeMap<(String, String), Vec<TimelineHearing>> =
        Default::default();
    for h in s.enforcer.hearings().await {
        if h.scheduled_start < from
            || h.scheduled_start >= to
            || q.court
                .as_deref()
                .is_some_and(|c| !c.is_empty() && c != h.court)
        {
            continue;
        }
        use gavel_fleet::hearings::HearingStatus as St;
        // Live coverage for the hearing in progress; stored records for closed ones.
        let c = match stored.get(&h.id) {
            Some(c) => Some(c.clone()),
            None if h.status == St::InProgress
                || (h.status == St::Scheduled && h.scheduled_start <= now) =>
            {
                s.compliance.assess_with(&h, &devices).await.ok()
            }
            None => None,
        };
        let recorded = c
            .as_ref()
            .and_then(|c| {
                c.sources
                    .iter()
                    .max_by(|a, b| a.recorded_s.total_cmp(&b.recorded_s))
            })
            .map(|src| src.recorded.clone())
            .unwrap_or_default();
        rooms
            .entry((h.court.clone(), h.room.clone()))
            .or_default()
            .push(TimelineHearing {
                id: h.id.clone(),
                case_number: h.case_number.clone(),
                judge: h.judge.clone(),
                status: h.status,
                start: h.scheduled_start,
                end: h.scheduled_end,
                verdict: c
                    .as_ref()
                    .map(|c| c.verdict)
                    .filter(|v| *v != gavel_fleet::compliance::Verdict::Open),
                recorded,
                exceptions: c.map(|c| c.exceptions).unwrap_or_default(),
            });
    }
    let list: Vec<TimelineRoom> = rooms
        .into_iter()
        .map(|((court, room), mut hearings)| {
            hearings.sort_by_key(|h| h.start);
            TimelineRoom {
                court,
                room,
                hearings,
            }
        })
        .collect();
    Ok(Json(serde_json::json!({
        "date": date.to_string(),
        "from": gavel_protocol::rfc3339(from),
        "to": gavel_protocol::rfc3339(to),
        "now": gavel_protocol::rfc3339(now),
        "rooms": list,
    }))
    .into_response())
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
            "/api/v1/hearings/{id}/compliance",
            "/api/v1/reports/compliance",
            "/api/v1/timeline",
            "/api/v1/hearings",
            "/api/v1/hearings/import",
            "/api/v1/hearings/{id}",
            "/api/v1/hearings/{id}/cancel",
            "/api/v1/hearings/{id}/open",
            "/api/v1/hearings/{id}/close",
            "/api/v1/alarms",
            "/api/v1/alarms/history",
            "/api/v1/alarms/{id}/ack",
            "/api/v1/alarms/{id}/resolve",
            "/api/v1/rooms/{court}/{room}/recording/{action}",
            "/api/v1/hearings/{id}/recording/{action}",
            "/api/v1/hall/{court}",
            "/api/v1/hall/{court}/windows/{window}/call",
            "/api/v1/hall/{court}/windows/{window}/recall",
            "/api/v1/hall/lookup",
            "/api/v1/hall/check-code",
            "/api/v1/findings",
            "/api/v1/findings/{device}/{event_id}/snapshot.jpg",
            "/api/v1/devices/{id}/snapshot.jpg",
            "/api/v1/patrol/live",
            "/api/v1/hearings/{id}/recording-at",
            "/api/v1/alarms/{id}/notes",
            "/api/v1/reports/patrol",
            "/api/v1/archive/uploads/{device}/{hearing}/{source}/{file}",
            "/api/v1/archive/hearings/{hearing}",
            "/api/v1/archive/hearings/{hearing}/audio",
            "/api/v1/archive/hearings/{hearing}/{source}/index.m3u8",
            "/api/v1/archive/hearings/{hearing}/{source}/video.mp4",
            "/api/v1/archive/files/{device}/{hearing}/{source}/{file}",
            "/api/v1/hearings/{id}/transcript",
            "/api/v1/hearings/{id}/transcript/lines/{line}",
            "/api/v1/hearings/{id}/transcript/sign-off",
            "/api/v1/hearings/{id}/transcript/corrections",
            "/api/v1/transcripts/search",
        ] {
            assert!(paths.contains_key(p), "{p} missing from OpenAPI");
        }
        assert!(doc["components"]["schemas"]["DeviceRecord"].is_object());
        let hearing = &paths["/api/v1/hearings/{id}"];
        assert!(hearing["get"].is_object() && hearing["patch"].is_object());
        assert!(paths["/api/v1/hearings"]["post"].is_object());
        for schema in [
            "Hearing",
            "HearingChange",
            "NewHearing",
            "MoveHearing",
            "CancelHearing",
        ] {
            assert!(
                doc["components"]["schemas"][schema].is_object(),
                "{schema} missing from OpenAPI"
            );
        }
    }
}
