//! Hearing routes under `/api/v1/hearings`: list, import (CSV or iCalendar), and the API for
//! case management systems (create, get, move, cancel), plus the clerk's open and close.
//!
//! Every schedule change goes to the enforcement task as one
//! [`crate::enforcer::EnforcerHandle::upsert`]. Status codes: 400 for bad values (each
//! named by field), 404 for an unknown hearing, 409 when the change contradicts the
//! hearing's state or another hearing, 422 for an import with bad rows (each named by
//! line and field; nothing imported).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gavel_fleet::hearings::book::{Change, ChangeError};
use gavel_fleet::hearings::{self, Hearing, HearingStatus, Party, RowError, ics};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::api::{Actor, ApiError, ApiErrorBody, AppState};
use crate::enforcer::UpsertError;

/// The hearing routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/hearings", get(list_hearings).post(create_hearing))
        .route("/api/v1/hearings/import", post(import_hearings))
        .route(
            "/api/v1/hearings/{id}",
            get(get_hearing).patch(move_hearing),
        )
        .route("/api/v1/hearings/{id}/cancel", post(cancel_hearing))
        .route("/api/v1/hearings/{id}/open", post(open_hearing))
        .route("/api/v1/hearings/{id}/close", post(close_hearing))
}

/// Error body with every bad field: `{"error": "...", "errors": [{line, field, message}]}`
/// (`line` is 0 for API requests, the file's line for imports).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct FieldErrors {
    pub error: String,
    pub errors: Vec<RowError>,
}

fn field_errors(status: StatusCode, error: String, errors: Vec<RowError>) -> Response {
    (status, Json(FieldErrors { error, errors })).into_response()
}

fn refused(e: UpsertError) -> Response {
    match e {
        UpsertError::Refused(ChangeError::Invalid(errors)) => field_errors(
            StatusCode::BAD_REQUEST,
            ChangeError::Invalid(errors.clone()).to_string(),
            errors,
        ),
        UpsertError::Refused(e @ ChangeError::NotFound(_)) => {
            ApiError(StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        UpsertError::Refused(e @ ChangeError::Conflict(_)) => {
            ApiError(StatusCode::CONFLICT, e.to_string()).into_response()
        }
        e @ UpsertError::Store(_) => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
        e @ (UpsertError::Stopped | UpsertError::NotScheduler) => {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    }
}

/// Parses a JSON body, naming the field that is wrong.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, FieldErrors> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string();
        let error = if field == "." {
            format!("request body: {message}")
        } else {
            format!("field `{field}`: {message}")
        };
        FieldErrors {
            error,
            errors: vec![RowError::new(0, &field, message)],
        }
    })
}

fn bad_request(e: FieldErrors) -> Response {
    (StatusCode::BAD_REQUEST, Json(e)).into_response()
}

/// Hearings known to the controller, by start time.
#[utoipa::path(get, path = "/api/v1/hearings", responses((status = 200, body = [Hearing])))]
pub async fn list_hearings(State(s): State<AppState>) -> Json<Vec<Hearing>> {
    let mut list = s.enforcer.hearings().await;
    list.sort_by_key(|h| h.scheduled_start);
    Json(list)
}

/// One hearing, with who moved or cancelled it and why.
#[utoipa::path(get, path = "/api/v1/hearings/{id}", params(("id" = String, Path, description = "Hearing id")),
    responses((status = 200, body = Hearing), (status = 404, body = ApiErrorBody)))]
pub async fn get_hearing(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Hearing>, ApiError> {
    s.enforcer
        .hearing(&id)
        .await
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no hearing {id}")))
}

/// Which parser an import body needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Ics,
}

/// By content type (`text/csv`, `text/calendar`), else by sniffing (`BEGIN:VCALENDAR`).
fn import_format(headers: &HeaderMap, text: &str) -> Result<Format, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_lowercase()
        })
        .unwrap_or_default();
    match ct.as_str() {
        "text/csv" => Ok(Format::Csv),
        "text/calendar" => Ok(Format::Ics),
        "" | "text/plain" | "application/octet-stream" => Ok(if ics::looks_like_ics(text) {
            Format::Ics
        } else {
            Format::Csv
        }),
        other => Err(format!(
            "content type {other} is not an import format: send text/csv or text/calendar"
        )),
    }
}

/// Import hearings from CSV (`text/csv`, columns `case_number,court,room,start,end,judge,parties`)
/// or iCalendar (`text/calendar`, one VEVENT per hearing); other or no content type: by
/// content. All or nothing, checked against stored hearings too; every bad row or event is
/// named by line and field. Hearings with a known id are replaced (moves are audited as
/// `import`); unchanged ones are left alone.
#[utoipa::path(post, path = "/api/v1/hearings/import",
    request_body(content = String, description = "CSV or iCalendar text", content_type = "text/csv"),
    responses((status = 200, description = "Imported: {\"imported\": N, \"unchanged\": M}", body = Object),
        (status = 415, description = "Neither CSV nor iCalendar", body = ApiErrorBody),
        (status = 422, description = "Nothing imported", body = FieldErrors)))]
pub async fn import_hearings(
    State(s): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the file is not UTF-8 text".into(),
        )
        .into_response();
    };
    let format = match import_format(&headers, text) {
        Ok(f) => f,
        Err(e) => return ApiError(StatusCode::UNSUPPORTED_MEDIA_TYPE, e).into_response(),
    };
    let parsed = match format {
        Format::Csv => hearings::parse_csv(text, s.utc_offset),
        Format::Ics => ics::parse_ics(text, s.utc_offset),
    };
    let unprocessable = |errors: Vec<RowError>| {
        field_errors(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{} problem(s); nothing imported", errors.len()),
            errors,
        )
    };
    let list = match parsed {
        Ok(list) => list,
        Err(errors) => return unprocessable(errors),
    };
    let total = list.len();
    let change = Change::Import {
        hearings: list,
        start_field: match format {
            Format::Csv => "start",
            Format::Ics => "DTSTART",
        },
    };
    match s.enforcer.upsert(change).await {
        Ok(changed) => Json(serde_json::json!({
            "imported": changed.len(),
            "unchanged": total - changed.len(),
            "format": match format { Format::Csv => "csv", Format::Ics => "ics" },
        }))
        .into_response(),
        Err(UpsertError::Refused(ChangeError::Invalid(errors))) => unprocessable(errors),
        Err(e) => refused(e),
    }
}

/// A hearing from a case management system. Times are RFC 3339, or `YYYY-MM-DD HH:MM` in
/// the courts' configured offset. Without an id one is made from the case number and start.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHearing {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub case_number: String,
    #[serde(default)]
    pub court: String,
    #[serde(default)]
    pub room: String,
    #[serde(default)]
    pub scheduled_start: String,
    #[serde(default)]
    pub scheduled_end: String,
    #[serde(default)]
    pub judge: String,
    #[serde(default)]
    pub parties: Vec<Party>,
}

fn time_field(
    field: &str,
    value: &str,
    s: &AppState,
    errors: &mut Vec<RowError>,
) -> Option<OffsetDateTime> {
    let t = hearings::parse_time(value, s.utc_offset);
    if t.is_none() {
        errors.push(RowError::new(
            0,
            field,
            if value.trim().is_empty() {
                "missing".to_owned()
            } else {
                format!("{value:?} is not RFC 3339 or YYYY-MM-DD HH:MM")
            },
        ));
    }
    t
}

/// Schedule one hearing.
#[utoipa::path(post, path = "/api/v1/hearings", request_body = NewHearing,
    responses((status = 201, body = Hearing), (status = 400, body = FieldErrors),
        (status = 409, description = "The id exists or the room is taken", body = ApiErrorBody)))]
pub async fn create_hearing(State(s): State<AppState>, bytes: Bytes) -> Response {
    let new: NewHearing = match body(&bytes) {
        Ok(n) => n,
        Err(e) => return bad_request(e),
    };
    let mut errors = Vec::new();
    let start = time_field("scheduled_start", &new.scheduled_start, &s, &mut errors);
    let end = time_field("scheduled_end", &new.scheduled_end, &s, &mut errors);
    let (Some(start), Some(end)) = (start, end) else {
        // Report the other fields' problems too.
        let probe = Hearing {
            id: new.id.clone().unwrap_or_else(|| "x".into()),
            case_number: new.case_number,
            court: new.court,
            room: new.room,
            scheduled_start: OffsetDateTime::UNIX_EPOCH,
            scheduled_end: OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1),
            judge: new.judge,
            parties: new.parties,
            status: HearingStatus::Scheduled,
            history: Vec::new(),
            opened_at: None,
            closed_at: None,
        };
        errors.extend(hearings::book::problems(&probe));
        errors.sort_by(|a, b| a.field.cmp(&b.field));
        return field_errors(
            StatusCode::BAD_REQUEST,
            ChangeError::Invalid(errors.clone()).to_string(),
            errors,
        );
    };
    let id = match new.id {
        Some(id) if !id.is_empty() => id,
        _ => hearings::generated_id(&new.case_number, start),
    };
    let hearing = Hearing {
        id,
        case_number: new.case_number.trim().to_owned(),
        court: new.court,
        room: new.room,
        scheduled_start: start,
        scheduled_end: end,
        judge: new.judge.trim().to_owned(),
        parties: new.parties,
        status: HearingStatus::Scheduled,
        history: Vec::new(),
        opened_at: None,
        closed_at: None,
    };
    match s.enforcer.upsert(Change::Create(hearing)).await {
        Ok(mut changed) if !changed.is_empty() => {
            (StatusCode::CREATED, Json(changed.remove(0))).into_response()
        }
        Ok(_) => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, "nothing stored".into()).into_response()
        }
        Err(e) => refused(e),
    }
}

/// New times and/or room. A new `scheduled_start` alone keeps the duration. Refused once
/// the hearing is closed or cancelled, for the start of a hearing in progress, and when the
/// room is taken then.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveHearing {
    pub scheduled_start: Option<String>,
    pub scheduled_end: Option<String>,
    pub room: Option<String>,
    /// Who moves it (kept in the hearing's history).
    #[serde(default)]
    pub by: String,
    /// Why (kept in the hearing's history).
    #[serde(default)]
    pub why: String,
}

/// Move a hearing.
#[utoipa::path(patch, path = "/api/v1/hearings/{id}", params(("id" = String, Path, description = "Hearing id")),
    request_body = MoveHearing,
    responses((status = 200, body = Hearing), (status = 400, body = FieldErrors),
        (status = 404, body = ApiErrorBody),
        (status = 409, description = "Closed, cancelled, in progress (start) or the room is taken", body = ApiErrorBody)))]
pub async fn move_hearing(
    State(s): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let m: MoveHearing = match body(&bytes) {
        Ok(m) => m,
        Err(e) => return bad_request(e),
    };
    let mut errors = Vec::new();
    let start = m
        .scheduled_start
        .as_deref()
        .and_then(|v| time_field("scheduled_start", v, &s, &mut errors));
    let end = m
        .scheduled_end
        .as_deref()
        .and_then(|v| time_field("scheduled_end", v, &s, &mut errors));
    if !errors.is_empty() {
        return field_errors(
            StatusCode::BAD_REQUEST,
            ChangeError::Invalid(errors.clone()).to_string(),
            errors,
        );
    }
    let change = Change::Move {
        id,
        start,
        end,
        room: m.room,
        by: m.by,
        why: m.why,
    };
    match s.enforcer.upsert(change).await {
        Ok(mut changed) if !changed.is_empty() => Json(changed.remove(0)).into_response(),
        Ok(_) => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, "nothing stored".into()).into_response()
        }
        Err(e) => refused(e),
    }
}

/// Who cancels a hearing and why (both required, kept in its history).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelHearing {
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub why: String,
}

/// Cancel a scheduled hearing; refused when it is in progress (close it) or already over.
#[utoipa::path(post, path = "/api/v1/hearings/{id}/cancel", params(("id" = String, Path, description = "Hearing id")),
    request_body = CancelHearing,
    responses((status = 200, body = Hearing), (status = 400, body = FieldErrors),
        (status = 404, body = ApiErrorBody),
        (status = 409, description = "In progress, closed or already cancelled", body = ApiErrorBody)))]
pub async fn cancel_hearing(
    State(s): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let c: CancelHearing = match body(&bytes) {
        Ok(c) => c,
        Err(e) => return bad_request(e),
    };
    let change = Change::Cancel {
        id,
        by: c.by,
        why: c.why,
    };
    match s.enforcer.upsert(change).await {
        Ok(mut changed) if !changed.is_empty() => Json(changed.remove(0)).into_response(),
        Ok(_) => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, "nothing stored".into()).into_response()
        }
        Err(e) => refused(e),
    }
}

async fn hearing_exists(s: &AppState, id: &str) -> Result<(), ApiError> {
    match s.enforcer.hearing(id).await {
        Some(_) => Ok(()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no hearing {id}"))),
    }
}

/// The clerk opens the hearing (not a cancelled or closed one).
#[utoipa::path(post, path = "/api/v1/hearings/{id}/open", params(("id" = String, Path, description = "Hearing id")), request_body = Actor,
    responses((status = 204), (status = 404, body = ApiErrorBody),
        (status = 409, description = "Cancelled or closed", body = ApiErrorBody)))]
pub async fn open_hearing(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(a): Json<Actor>,
) -> Result<StatusCode, ApiError> {
    let h = s
        .enforcer
        .hearing(&id)
        .await
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no hearing {id}")))?;
    if matches!(h.status, HearingStatus::Cancelled | HearingStatus::Closed) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "hearing {id} is {}; it cannot be opened",
                if h.status == HearingStatus::Closed {
                    "closed"
                } else {
                    "cancelled"
                }
            ),
        ));
    }
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
pub async fn close_hearing(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(_a): Json<Actor>,
) -> Result<StatusCode, ApiError> {
    hearing_exists(&s, &id).await?;
    s.enforcer
        .input(gavel_fleet::enforcement::Input::Closed {
            hearing: id.clone(),
        })
        .await;
    s.compliance_trigger.changed(&id);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = ct.parse() {
            h.insert(header::CONTENT_TYPE, v);
        }
        h
    }

    #[test]
    fn the_import_format_follows_the_content_type_then_the_content() {
        let ics = "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n";
        let csv = "case_number,court\n";
        assert_eq!(
            import_format(&headers("text/calendar; charset=utf-8"), csv),
            Ok(Format::Ics)
        );
        assert_eq!(import_format(&headers("text/csv"), ics), Ok(Format::Csv));
        assert_eq!(import_format(&HeaderMap::new(), ics), Ok(Format::Ics));
        assert_eq!(
            import_format(&headers("application/octet-stream"), csv),
            Ok(Format::Csv)
        );
        let err = import_format(&headers("application/json"), csv).expect_err("json");
        assert!(err.contains("text/csv or text/calendar"), "{err}");
    }
}
