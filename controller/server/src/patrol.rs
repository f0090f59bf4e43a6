//! Hearing patrol at the controller: findings into the alarm engine, the findings API,
//! finding snapshots, live tiles (a `snapshot` command to the room's device), the
//! recording at a finding's time, alarm notes, the patrol report, and the inspectors'
//! console page (`/patrol`).

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use gavel_fleet::enforcement::{FindingRef, Input};
use gavel_fleet::hearings::HearingStatus;
use gavel_fleet::patrol::{FindingRecord, Period};
use gavel_protocol::{CommandBody, DeviceId, Event, EventBody, Outcome, Reply};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::api::{ApiError, AppState};

/// The engine input for a patrol finding event of a device in `court`/`room`.
pub fn finding_input(court: String, room: String, device: &str, event: &Event) -> Option<Input> {
    let EventBody::Finding {
        finding,
        source,
        seat,
        severity,
        started_at,
        ended_at,
        recording,
        detail,
        ..
    } = &event.body
    else {
        return None;
    };
    Some(Input::Finding {
        court,
        room,
        finding: FindingRef {
            device: device.to_owned(),
            event_id: event.id.clone(),
            kind: finding.as_str().to_owned(),
            source: source.clone(),
            seat: seat.clone(),
            level: severity.level(),
            started_at: *started_at,
            ended_at: *ended_at,
            hearing_id: recording.as_ref().map(|r| r.hearing_id.clone()),
            offset_ms: recording.as_ref().map(|r| r.offset_ms),
            detail: detail.clone().unwrap_or_default(),
        },
    })
}

/// The patrol routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/patrol", get(console))
        .route("/api/v1/findings", get(list_findings))
        .route(
            "/api/v1/findings/{device}/{event_id}/snapshot.jpg",
            get(finding_snapshot),
        )
        .route("/api/v1/devices/{id}/snapshot.jpg", get(live_snapshot))
        .route("/api/v1/patrol/live", get(live))
        .route("/api/v1/hearings/{id}/recording-at", get(recording_at))
        .route("/api/v1/alarms/{id}/notes", post(add_note))
        .route("/api/v1/reports/patrol", get(patrol_report))
}

async fn console() -> Html<&'static str> {
    Html(include_str!("../assets/patrol.html"))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Filters of the findings list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FindingsQuery {
    pub court: Option<String>,
    pub room: Option<String>,
    /// Finding type (`signal_lost`...).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// How far back, hours (default 24, at most 24 * 31).
    pub hours: Option<i64>,
    /// Most findings returned, newest first (default 200).
    pub limit: Option<usize>,
}

/// Patrol findings, newest first, with their start and end merged.
#[utoipa::path(get, path = "/api/v1/findings", params(FindingsQuery),
    responses((status = 200, description = "Findings, newest first", body = [Object])))]
pub async fn list_findings(
    State(s): State<AppState>,
    Query(q): Query<FindingsQuery>,
) -> Result<Json<Vec<FindingRecord>>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 31);
    let rows = s
        .store
        .finding_events(
            now - time::Duration::hours(hours),
            now + time::Duration::minutes(1),
        )
        .await
        .map_err(internal)?;
    let keep = |v: &Option<String>, want: &Option<String>| {
        want.as_deref()
            .filter(|w| !w.is_empty())
            .is_none_or(|w| v.as_deref() == Some(w))
    };
    let list: Vec<FindingRecord> = gavel_fleet::patrol::fold(
        rows.into_iter()
            .map(|r| (r.device, r.court, r.room, r.event)),
    )
    .into_iter()
    .filter(|f| keep(&f.court, &q.court) && keep(&f.room, &q.room))
    .filter(|f| keep(&Some(f.kind.clone()), &q.kind))
    .take(q.limit.unwrap_or(200).clamp(1, 10_000))
    .collect();
    Ok(Json(list))
}

fn jpeg(bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response()
}

fn decode_snapshot(s: &gavel_protocol::Snapshot) -> Result<Vec<u8>, ApiError> {
    let b64 = s
        .jpeg_base64
        .as_deref()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "snapshot kept on the device".into()))?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| internal(format!("stored snapshot unreadable: {e}")))
}

/// The JPEG that came with a finding.
#[utoipa::path(get, path = "/api/v1/findings/{device}/{event_id}/snapshot.jpg",
    params(("device" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, content_type = "image/jpeg"), (status = 404)))]
pub async fn finding_snapshot(
    State(s): State<AppState>,
    Path((device, event_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let events = s
        .store
        .finding_event(&device, &event_id)
        .await
        .map_err(internal)?;
    for e in events {
        if let EventBody::Finding {
            snapshot: Some(snap),
            ..
        } = &e.body
        {
            return Ok(jpeg(decode_snapshot(snap)?));
        }
    }
    Err(ApiError(
        StatusCode::NOT_FOUND,
        format!("no snapshot for finding {event_id} of {device}"),
    ))
}

/// Which source a live snapshot shows.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SnapshotQuery {
    pub source: Option<String>,
}

/// A JPEG of a device's latest patrol frame, asked of the device now (console tiles).
#[utoipa::path(get, path = "/api/v1/devices/{id}/snapshot.jpg", params(("id" = String, Path), SnapshotQuery),
    responses((status = 200, content_type = "image/jpeg"), (status = 404), (status = 409), (status = 504)))]
pub async fn live_snapshot(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let id = DeviceId::new(&id)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("device id: {e}")))?;
    let ack = crate::api::command_device(
        &s,
        id,
        CommandBody::Snapshot { source: q.source },
        std::time::Duration::from_secs(5),
    )
    .await?;
    match ack.outcome {
        Outcome::Ok {
            reply: Reply::Snapshot { snapshot, .. },
        } => Ok(jpeg(decode_snapshot(&snapshot)?)),
        Outcome::Ok { .. } => Err(internal("unexpected reply")),
        Outcome::Rejected { reason } => Err(ApiError(StatusCode::CONFLICT, reason)),
        Outcome::Failed { error } => Err(ApiError(StatusCode::NOT_FOUND, error)),
    }
}

/// A live hearing as the console shows it.
#[derive(Debug, Serialize)]
pub struct LiveRoom {
    court: String,
    room: String,
    hearing_id: String,
    case_number: String,
    judge: String,
    status: HearingStatus,
    #[serde(with = "time::serde::rfc3339")]
    start: OffsetDateTime,
    /// The room's device that patrols (its snapshots fill the tile).
    patrol_device: Option<String>,
    /// Every device of the room with whether it is online.
    devices: Vec<(String, bool)>,
    /// The room's live sub-streams a browser can play (HLS relayed by the controller).
    live: Vec<LiveFeed>,
}

/// One live sub-stream of a room.
#[derive(Debug, Serialize)]
pub struct LiveFeed {
    device: String,
    source: String,
    /// The HLS playlist through the controller.
    url: String,
}

/// The HLS feeds of online devices that stream.
fn live_feeds(devices: &[&gavel_fleet::DeviceRecord]) -> Vec<LiveFeed> {
    devices
        .iter()
        .filter(|d| d.online)
        .filter_map(|d| d.live.as_ref().filter(|l| l.hls.is_some()).map(|l| (d, l)))
        .flat_map(|(d, l)| {
            l.sources.iter().map(move |source| LiveFeed {
                device: d.id.to_string(),
                source: source.clone(),
                url: format!("/api/v1/devices/{}/live/{source}/index.m3u8", d.id),
            })
        })
        .collect()
}

/// Hearings running now (opened, or scheduled now), one per room, with the room's
/// patrolling device.
#[utoipa::path(get, path = "/api/v1/patrol/live", params(FindingsQuery),
    responses((status = 200, description = "Live hearings", body = [Object])))]
pub async fn live(
    State(s): State<AppState>,
    Query(q): Query<FindingsQuery>,
) -> Json<Vec<LiveRoom>> {
    let now = OffsetDateTime::now_utc();
    let devices = s.fleet.list().await;
    let mut out: Vec<LiveRoom> = Vec::new();
    for h in s.enforcer.hearings().await {
        let running = h.status == HearingStatus::InProgress
            || (h.status == HearingStatus::Scheduled
                && now >= h.scheduled_start
                && now < h.scheduled_end);
        if !running
            || q.court
                .as_deref()
                .is_some_and(|c| !c.is_empty() && c != h.court)
            || out.iter().any(|r| r.court == h.court && r.room == h.room)
        {
            continue;
        }
        let in_room: Vec<_> = devices
            .iter()
            .filter(|d| d.court.as_deref() == Some(&h.court) && d.room.as_deref() == Some(&h.room))
            .collect();
        let patrol_device = in_room
            .iter()
            .find(|d| {
                d.capabilities.iter().any(|c| {
                    c.name == "patrol" && c.state == gavel_protocol::CapabilityState::Running
                })
            })
            .map(|d| d.id.to_string());
        out.push(LiveRoom {
            court: h.court.clone(),
            room: h.room.clone(),
            hearing_id: h.id.clone(),
            case_number: h.case_number.clone(),
            judge: h.judge.clone(),
            status: h.status,
            start: h.scheduled_start,
            patrol_device,
            devices: in_room
                .iter()
                .map(|d| (d.id.to_string(), d.online))
                .collect(),
            live: live_feeds(&in_room),
        });
    }
    out.sort_by(|a, b| (&a.court, &a.room).cmp(&(&b.court, &b.room)));
    Json(out)
}

/// The offset on a hearing's timeline.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct OffsetQuery {
    pub offset_ms: u64,
}

/// One source's segment at an offset.
#[derive(Debug, Serialize)]
struct SegmentAt {
    device: String,
    source: String,
    index: u64,
    file: String,
    sha256: String,
    /// The segment's start on the hearing's timeline, ms.
    segment_offset_ms: u64,
    duration_ms: u64,
    /// Where in the segment the offset falls, ms.
    seek_ms: u64,
}

/// The recording of a hearing at an offset on its timeline: per source, the segment
/// that holds it and where to seek (the console's click-through from a finding).
#[utoipa::path(get, path = "/api/v1/hearings/{id}/recording-at", params(("id" = String, Path), OffsetQuery),
    responses((status = 200, description = "Segments at the offset, per source", body = Object)))]
pub async fn recording_at(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<OffsetQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let events = s.store.hearing_events(&id).await.map_err(internal)?;
    let at_ns = q.offset_ms.saturating_mul(1_000_000);
    let mut best: std::collections::BTreeMap<String, SegmentAt> = Default::default();
    let mut sources = std::collections::BTreeSet::new();
    for (device, _, e) in &events {
        if let EventBody::Segment {
            source,
            index,
            file,
            sha256,
            offset_ns,
            duration_ns,
            ..
        } = &e.body
        {
            sources.insert(source.clone());
            // The segment holding the offset, else the last one that starts before it.
            let holds = *offset_ns <= at_ns && at_ns < offset_ns + duration_ns;
            let before = *offset_ns <= at_ns;
            let replace = match best.get(source) {
                None => before || holds,
                Some(b) => holds || (before && *offset_ns / 1_000_000 >= b.segment_offset_ms),
            };
            if replace {
                best.insert(
                    source.clone(),
                    SegmentAt {
                        device: device.clone(),
                        source: source.clone(),
                        index: *index,
                        file: file.clone(),
                        sha256: sha256.clone(),
                        segment_offset_ms: offset_ns / 1_000_000,
                        duration_ms: duration_ns / 1_000_000,
                        seek_ms: q.offset_ms.saturating_sub(offset_ns / 1_000_000),
                    },
                );
            }
        }
    }
    Ok(Json(serde_json::json!({
        "hearing_id": id,
        "offset_ms": q.offset_ms,
        "sources": sources,
        "segments": best.into_values().collect::<Vec<_>>(),
    })))
}

/// A note on an alarm.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewNote {
    pub by: String,
    pub text: String,
}

/// Adds a note to an open alarm (inspectors' console).
#[utoipa::path(post, path = "/api/v1/alarms/{id}/notes", params(("id" = String, Path)), request_body = NewNote,
    responses((status = 204), (status = 400), (status = 404)))]
pub async fn add_note(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(n): Json<NewNote>,
) -> Result<StatusCode, ApiError> {
    let text = n.text.trim();
    if text.is_empty() || text.len() > 1000 || n.by.trim().is_empty() || n.by.len() > 100 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "by: 1-100 characters; text: 1-1000 characters".into(),
        ));
    }
    if !s.enforcer.alarms().await.iter().any(|a| a.id == id) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no open alarm {id}"),
        ));
    }
    s.enforcer
        .input(Input::Note {
            alarm: id,
            by: n.by,
            text: text.to_owned(),
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The patrol report's parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PatrolReportQuery {
    pub court: String,
    /// `day` (default) or `week`.
    pub period: Option<String>,
    /// First local date (`YYYY-MM-DD`, default today; a week starts on it).
    pub date: Option<String>,
    /// `json` (default), `csv` or `html`.
    pub format: Option<String>,
}

/// The patrol report of a court for a day or a week: hearings patrolled, findings by type
/// and room, unresolved items.
#[utoipa::path(get, path = "/api/v1/reports/patrol", params(PatrolReportQuery),
    responses((status = 200, description = "JSON, CSV or HTML report"), (status = 400)))]
pub async fn patrol_report(
    State(s): State<AppState>,
    Query(q): Query<PatrolReportQuery>,
) -> Result<Response, ApiError> {
    let offset = s.utc_offset;
    let period = match q.period.as_deref().unwrap_or("day") {
        "day" => Period::Day,
        "week" => Period::Week,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("period {other:?}: expected day or week"),
            ));
        }
    };
    let date = match q.date.as_deref() {
        Some(d) => time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("date {d:?}: {e}")))?,
        None => OffsetDateTime::now_utc().to_offset(offset).date(),
    };
    let from = date.midnight().assume_offset(offset);
    let to = from + period.length();
    let rows = s
        .store
        .finding_events(from - time::Duration::days(1), to + time::Duration::days(1))
        .await
        .map_err(internal)?;
    let findings = gavel_fleet::patrol::fold(
        rows.into_iter()
            .map(|r| (r.device, r.court, r.room, r.event)),
    );
    let hearings = s.enforcer.hearings().await;
    let alarms = s.enforcer.alarms().await;
    let report = gavel_fleet::patrol::report(
        &q.court,
        period,
        from,
        OffsetDateTime::now_utc(),
        &hearings,
        &findings,
        &alarms,
    );
    let name = format!("patrol-{}-{}", q.court, date);
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
            report.to_csv(),
        )
            .into_response(),
        "html" => Html(report.to_html()).into_response(),
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("format {other:?}: expected json, csv or html"),
            ));
        }
    })
}
