//! Hearing transcripts at the controller (issue 6, the controller's side): the lines the
//! room's devices send as `transcript` events, stored with the hearing (`db`), the
//! proofreading page (`/hearings/{id}/transcript`: play a line's audio, correct it, sign
//! the transcript off), full-text search, and the exports (`export`: SRT, WebVTT, the
//! formatted transcript document as HTML and DOCX).
//!
//! Who may change a transcript: administrators, and clerks and judges of the hearing's
//! court (`Action::Proofread`); everyone signed in may read and export it.

pub mod db;
pub mod export;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use gavel_fleet::hearings::{Hearing, HearingStatus};
use gavel_identity::access::Principal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::api::{ApiError, ApiErrorBody, AppState};
use db::{Editor, SearchQuery, TranscriptError};
use export::{Correction, Document, Line, SignOff};

/// The transcript routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hearings/{id}/transcript", get(page))
        .route("/api/v1/hearings/{id}/transcript", get(transcript))
        .route(
            "/api/v1/hearings/{id}/transcript/lines/{line}",
            put(correct_line),
        )
        .route(
            "/api/v1/hearings/{id}/transcript/corrections",
            get(list_corrections),
        )
        .route("/api/v1/hearings/{id}/transcript/sign-off", post(sign_off))
        .route("/api/v1/transcripts/search", get(search))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("../../assets/transcript.html"))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl From<TranscriptError> for ApiError {
    fn from(e: TranscriptError) -> Self {
        let status = match &e {
            TranscriptError::NoLine { .. } => StatusCode::NOT_FOUND,
            TranscriptError::Partial(_)
            | TranscriptError::SignedOff { .. }
            | TranscriptError::Empty(_) => StatusCode::CONFLICT,
            TranscriptError::BadText(_) => StatusCode::BAD_REQUEST,
            TranscriptError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// A hearing's transcript as the API and the proofreading page read it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TranscriptView {
    pub hearing_id: String,
    /// The hearing (absent when the controller does not know it: a clerk's ad hoc hearing).
    #[schema(value_type = Option<Object>)]
    pub hearing: Option<Hearing>,
    /// Every line in reading order, partial ones included (`final: false`).
    pub lines: Vec<Line>,
    pub signoff: Option<SignOff>,
    /// SHA-256 of the final lines as they stand now.
    pub sha256: String,
    /// Signed off and unchanged since (`false` when a line changed after the sign-off,
    /// `null` while not signed).
    pub intact: Option<bool>,
}

/// How a transcript is wanted.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FormatQuery {
    /// `json` (default), `srt`, `vtt`, `html` or `docx`.
    pub format: Option<String>,
}

/// Stand-in for a hearing the controller does not hold (lines for an ad hoc hearing).
fn unknown_hearing(id: &str) -> Hearing {
    Hearing {
        id: id.to_owned(),
        case_number: "—".into(),
        court: "—".into(),
        room: "—".into(),
        scheduled_start: OffsetDateTime::UNIX_EPOCH,
        scheduled_end: OffsetDateTime::UNIX_EPOCH,
        judge: "—".into(),
        parties: Vec::new(),
        status: HearingStatus::Scheduled,
        opened_at: None,
        closed_at: None,
        history: Vec::new(),
    }
}

async fn view(s: &AppState, id: &str) -> Result<TranscriptView, ApiError> {
    let hearing = s.enforcer.hearing(id).await;
    let lines = db::lines(&s.store, id).await.map_err(internal)?;
    if hearing.is_none() && lines.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no hearing {id} and no transcript for it"),
        ));
    }
    let signoff = db::signoff(&s.store, id).await.map_err(internal)?;
    let (sha256, _) = export::digest(id, &lines);
    let intact = signoff.as_ref().map(|so| so.sha256 == sha256);
    Ok(TranscriptView {
        hearing_id: id.to_owned(),
        hearing,
        lines,
        signoff,
        sha256,
        intact,
    })
}

fn attachment(content_type: &str, name: String, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// A hearing's transcript: JSON (lines with machine and current text, sign-off), SRT or
/// WebVTT (final lines on the hearing's timeline, the seat as speaker), or the formatted
/// transcript document (header with case, court, room, judge, parties, times; lines with
/// time and seat; corrected text; sign-off) as HTML or DOCX.
#[utoipa::path(get, path = "/api/v1/hearings/{id}/transcript", params(("id" = String, Path), FormatQuery),
    responses((status = 200, description = "The transcript", body = TranscriptView),
        (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
pub async fn transcript(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let v = view(&s, &id).await?;
    let format = q.format.as_deref().unwrap_or("json");
    let hearing = v.hearing.clone().unwrap_or_else(|| unknown_hearing(&id));
    let doc = || Document {
        hearing: &hearing,
        lines: &v.lines,
        signoff: v.signoff.as_ref(),
        utc_offset: s.utc_offset,
        made_at: OffsetDateTime::now_utc(),
    };
    let name = |ext: &str| format!("transcript-{id}.{ext}");
    Ok(match format {
        "json" => Json(&v).into_response(),
        "srt" => attachment(
            "application/x-subrip; charset=utf-8",
            name("srt"),
            export::srt(&v.lines).into_bytes(),
        ),
        "vtt" => attachment(
            "text/vtt; charset=utf-8",
            name("vtt"),
            export::vtt(&v.lines).into_bytes(),
        ),
        "html" => Html(export::html(&doc())).into_response(),
        "docx" => attachment(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            name("docx"),
            export::docx(&doc()).map_err(internal)?,
        ),
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("format {other:?}: expected json, srt, vtt, html or docx"),
            ));
        }
    })
}

/// A correction of one line.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewText {
    /// The corrected text (1-4000 characters).
    pub text: String,
    /// Who corrects, when sign-in is off (with sign-in, the signed-in user).
    #[serde(default)]
    pub by: Option<String>,
}

/// Who acts: the signed-in user, or (sign-in off) the name the request gives.
fn editor(
    who: Option<Extension<Principal>>,
    by: Option<String>,
    peer: std::net::SocketAddr,
) -> Editor {
    match who {
        Some(Extension(p)) => Editor {
            user: p.user,
            role: Some(p.role.to_string()),
            source: Some(peer.ip().to_string()),
        },
        None => Editor {
            user: by
                .filter(|b| !b.trim().is_empty())
                .unwrap_or_else(|| "(sign-in off)".into()),
            role: None,
            source: Some(peer.ip().to_string()),
        },
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("request body: {}: {}", e.path(), e.inner()),
        )
    })
}

/// Corrects a final line (the machine text is kept; the correction and an audit row are
/// written together). 409 once the transcript is signed off or while the line is partial.
#[utoipa::path(put, path = "/api/v1/hearings/{id}/transcript/lines/{line}",
    params(("id" = String, Path), ("line" = String, Path, description = "Line id (tr-...)")),
    request_body = NewText,
    responses((status = 200, description = "The line as it now stands", body = Line),
        (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
pub async fn correct_line(
    State(s): State<AppState>,
    Path((id, line)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    who: Option<Extension<Principal>>,
    body: Bytes,
) -> Result<Json<Line>, ApiError> {
    let req: NewText = parse(&body)?;
    let who = editor(who, req.by, peer);
    let line = db::correct(
        &s.store,
        &id,
        &line,
        &req.text,
        &who,
        OffsetDateTime::now_utc(),
    )
    .await?;
    tracing::info!(hearing = %id, line = %line.id, by = %who.user, "transcript line corrected");
    let _ = s.push.send(crate::fleet_actor::Push::Transcript(Box::new(
        serde_json::to_value(&line).unwrap_or_default(),
    )));
    Ok(Json(line))
}

/// Who signs (sign-in off only; with sign-in it is the signed-in user).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    #[serde(default)]
    pub by: Option<String>,
}

/// Signs the transcript off: who, when and the SHA-256 of its final lines; later
/// corrections are refused. 409 when already signed or when no line is final.
#[utoipa::path(post, path = "/api/v1/hearings/{id}/transcript/sign-off", params(("id" = String, Path)),
    request_body = SignRequest,
    responses((status = 200, description = "The sign-off", body = SignOff),
        (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
pub async fn sign_off(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    who: Option<Extension<Principal>>,
    body: Bytes,
) -> Result<Json<SignOff>, ApiError> {
    let req: SignRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SignRequest::default()
    } else {
        parse(&body)?
    };
    if s.enforcer.hearing(&id).await.is_none()
        && db::lines(&s.store, &id).await.map_err(internal)?.is_empty()
    {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no hearing {id}")));
    }
    let who = editor(who, req.by, peer);
    let so = db::sign_off(&s.store, &id, &who, OffsetDateTime::now_utc()).await?;
    tracing::info!(hearing = %id, by = %so.by, lines = so.lines, sha256 = %so.sha256, "transcript signed off");
    Ok(Json(so))
}

/// Every correction of a hearing's transcript, oldest first (who, when, before and after).
#[utoipa::path(get, path = "/api/v1/hearings/{id}/transcript/corrections", params(("id" = String, Path)),
    responses((status = 200, description = "Corrections", body = [Correction])))]
pub async fn list_corrections(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Correction>>, ApiError> {
    Ok(Json(
        db::corrections(&s.store, &id).await.map_err(internal)?,
    ))
}

/// Search parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SearchParams {
    /// Text to find (a substring, Chinese or English; Latin letters ignore case).
    pub q: String,
    pub court: Option<String>,
    pub room: Option<String>,
    /// Hearings on or after this local date (`YYYY-MM-DD`).
    pub from: Option<String>,
    /// Hearings on or before this local date (`YYYY-MM-DD`).
    pub to: Option<String>,
    /// Most lines returned (default 100, at most 1000).
    pub limit: Option<i64>,
}

fn local_date(s: &str, field: &str) -> Result<time::Date, ApiError> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{field} {s:?}: expected YYYY-MM-DD"),
        )
    })
}

/// Lines of every transcript whose text contains `q`: hearing, case, court, room, seat,
/// time on the hearing's timeline and a snippet; newest hearings first.
#[utoipa::path(get, path = "/api/v1/transcripts/search", params(SearchParams),
    responses((status = 200, description = "Lines found", body = [db::Hit]), (status = 400, body = ApiErrorBody)))]
pub async fn search(
    State(s): State<AppState>,
    Query(p): Query<SearchParams>,
) -> Result<Json<Vec<db::Hit>>, ApiError> {
    let text = p.q.trim();
    if text.is_empty() || text.chars().count() > 200 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "q: 1-200 characters to look for".into(),
        ));
    }
    let off = s.utc_offset;
    let day = |d: time::Date| d.midnight().assume_offset(off);
    let q = SearchQuery {
        text: text.to_owned(),
        court: p.court.filter(|c| !c.is_empty()),
        room: p.room.filter(|r| !r.is_empty()),
        from: p
            .from
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(|d| local_date(d, "from").map(day))
            .transpose()?,
        to: p
            .to
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(|d| local_date(d, "to").map(|d| day(d) + time::Duration::days(1)))
            .transpose()?,
        limit: p.limit.unwrap_or(100).clamp(1, 1000),
    };
    Ok(Json(db::search(&s.store, &q).await.map_err(internal)?))
}

/// The SSE payload of a transcript line as it arrives from a device.
pub fn live_line(device: &str, event: &gavel_protocol::Event) -> Option<serde_json::Value> {
    let gavel_protocol::EventBody::Transcript {
        hearing_id,
        seat,
        source,
        line,
        offset_ns,
        duration_ns,
        text,
        ..
    } = &event.body
    else {
        return None;
    };
    Some(serde_json::json!({
        "id": event.id,
        "hearing_id": hearing_id,
        "device": device,
        "seat": seat,
        "source": source,
        "line": line,
        "offset_ns": offset_ns,
        "duration_ns": duration_ns,
        "machine_text": text,
        "final": event.phase == gavel_protocol::Phase::End,
        "audio_url": export::audio_url(hearing_id, source, *offset_ns, offset_ns + duration_ns),
    }))
}
