//! Clerk start/stop through the controller: `POST /api/v1/rooms/{court}/{room}/recording/
//! start|stop` and `POST /api/v1/hearings/{id}/recording/start|stop`. The controller sends
//! `start_recording`/`stop_recording` with who and why to every recording device of the
//! room and answers with each device's ack. The devices record the request in their
//! outbox (`recording_request` events), which is the audit trail.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gavel_fleet::hearings::{Hearing, HearingStatus};
use gavel_protocol::{Ack, CommandBody, Outcome};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::api::{ApiError, AppState, command_device};

/// Who starts or stops recording, and why.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RecordingRequest {
    /// The hearing; for a room, absent means the room's hearing due now.
    #[serde(default)]
    pub hearing_id: Option<String>,
    /// User name recorded with the request (audit trail).
    pub by: String,
    /// Why (recorded with the request).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One device's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceAnswer {
    pub device: String,
    /// The device's ack, when it answered.
    #[schema(value_type = Option<Object>)]
    pub ack: Option<Ack>,
    /// Why there is no ack.
    pub error: Option<String>,
}

/// What the room's recording devices answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordingResult {
    /// Every device acknowledged with `ok`.
    pub ok: bool,
    pub hearing_id: String,
    pub court: String,
    pub room: String,
    pub devices: Vec<DeviceAnswer>,
}

/// The hearing of a room that is due at `now` (pre-roll included) and not closed or
/// cancelled; an in-progress hearing stays due after its scheduled end.
pub fn due_hearing<'a>(
    hearings: &'a [Hearing],
    court: &str,
    room: &str,
    now: OffsetDateTime,
    pre_roll: time::Duration,
) -> Option<&'a Hearing> {
    hearings
        .iter()
        .filter(|h| h.court == court && h.room == room)
        .filter(|h| {
            matches!(
                h.status,
                HearingStatus::Scheduled | HearingStatus::InProgress
            )
        })
        .filter(|h| h.scheduled_start - pre_roll <= now)
        .filter(|h| now < h.scheduled_end || h.status == HearingStatus::InProgress)
        .max_by_key(|h| h.scheduled_start)
}

fn action(name: &str, hearing_id: String, req: &RecordingRequest) -> Result<CommandBody, ApiError> {
    let reason = req.reason.clone();
    let by = Some(req.by.clone());
    match name {
        "start" => Ok(CommandBody::StartRecording {
            hearing_id,
            reason,
            by,
        }),
        "stop" => Ok(CommandBody::StopRecording {
            hearing_id,
            reason,
            by,
        }),
        other => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no recording action {other:?}: expected start or stop"),
        )),
    }
}

async fn send(
    s: &AppState,
    court: String,
    room: String,
    hearing_id: String,
    name: &str,
    req: &RecordingRequest,
) -> Result<Response, ApiError> {
    if req.by.trim().is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`by` is empty: name who starts or stops the recording".into(),
        ));
    }
    let body = action(name, hearing_id.clone(), req)?;
    let devices: Vec<_> = s
        .fleet
        .list()
        .await
        .into_iter()
        .filter(|d| d.court.as_deref() == Some(&court) && d.room.as_deref() == Some(&room))
        .filter(|d| d.capabilities.iter().any(|c| c.name == "record"))
        .collect();
    if devices.is_empty() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("room {court}/{room} has no recording device"),
        ));
    }
    let mut answers = Vec::new();
    for d in devices {
        let answer = match command_device(s, d.id.clone(), body.clone(), s.command_timeout).await {
            Ok(ack) => DeviceAnswer {
                device: d.id.to_string(),
                ack: Some(ack),
                error: None,
            },
            Err(ApiError(_, e)) => DeviceAnswer {
                device: d.id.to_string(),
                ack: None,
                error: Some(e),
            },
        };
        answers.push(answer);
    }
    let ok = answers.iter().all(|a| {
        a.ack
            .as_ref()
            .is_some_and(|a| matches!(a.outcome, Outcome::Ok { .. }))
    });
    let result = RecordingResult {
        ok,
        hearing_id,
        court,
        room,
        devices: answers,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    Ok((status, Json(result)).into_response())
}

/// Start or stop recording in a room (the room's hearing due now unless `hearing_id` is
/// given), on every recording device of the room.
#[utoipa::path(post, path = "/api/v1/rooms/{court}/{room}/recording/{action}",
    params(("court" = String, Path, description = "Court id"), ("room" = String, Path, description = "Room id"),
        ("action" = String, Path, description = "start or stop")),
    request_body = RecordingRequest,
    responses((status = 200, description = "Every device acknowledged", body = RecordingResult),
        (status = 502, description = "Some device refused, failed or did not answer", body = RecordingResult),
        (status = 404, body = crate::api::ApiErrorBody),
        (status = 409, description = "No recording device, or no hearing due now", body = crate::api::ApiErrorBody)))]
pub async fn room_recording(
    State(s): State<AppState>,
    Path((court, room, name)): Path<(String, String, String)>,
    Json(req): Json<RecordingRequest>,
) -> Result<Response, ApiError> {
    let hearing_id = match &req.hearing_id {
        Some(id) => id.clone(),
        None => {
            let hearings = s.enforcer.hearings().await;
            due_hearing(
                &hearings,
                &court,
                &room,
                OffsetDateTime::now_utc(),
                s.pre_roll,
            )
            .map(|h| h.id.clone())
            .ok_or_else(|| {
                ApiError(
                    StatusCode::CONFLICT,
                    format!("no hearing of {court}/{room} is due now: give hearing_id"),
                )
            })?
        }
    };
    send(&s, court, room, hearing_id, &name, &req).await
}

/// Start or stop recording a hearing on every recording device of its room.
#[utoipa::path(post, path = "/api/v1/hearings/{id}/recording/{action}",
    params(("id" = String, Path, description = "Hearing id"), ("action" = String, Path, description = "start or stop")),
    request_body = RecordingRequest,
    responses((status = 200, description = "Every device acknowledged", body = RecordingResult),
        (status = 502, description = "Some device refused, failed or did not answer", body = RecordingResult),
        (status = 404, body = crate::api::ApiErrorBody)))]
pub async fn hearing_recording(
    State(s): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Json(req): Json<RecordingRequest>,
) -> Result<Response, ApiError> {
    let hearing = s
        .enforcer
        .hearings()
        .await
        .into_iter()
        .find(|h| h.id == id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no hearing {id}")))?;
    send(&s, hearing.court, hearing.room, hearing.id, &name, &req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn hearing(id: &str, start: OffsetDateTime, status: HearingStatus) -> Hearing {
        Hearing {
            id: id.into(),
            case_number: id.into(),
            court: "hz".into(),
            room: "r1".into(),
            scheduled_start: start,
            scheduled_end: start + time::Duration::hours(1),
            judge: "J".into(),
            parties: vec![],
            status,
            opened_at: None,
            closed_at: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn the_due_hearing_is_the_open_one_whose_window_holds_now() {
        let t = datetime!(2026-11-27 09:00 UTC);
        let hs = [
            hearing(
                "earlier",
                t - time::Duration::hours(2),
                HearingStatus::Closed,
            ),
            hearing(
                "now",
                t + time::Duration::seconds(30),
                HearingStatus::Scheduled,
            ),
            hearing(
                "later",
                t + time::Duration::hours(2),
                HearingStatus::Scheduled,
            ),
        ];
        let pre = time::Duration::seconds(60);
        assert_eq!(
            due_hearing(&hs, "hz", "r1", t, pre).map(|h| h.id.as_str()),
            Some("now")
        );
        assert!(due_hearing(&hs, "hz", "r2", t, pre).is_none());
        let overrun = t + time::Duration::minutes(90);
        assert!(due_hearing(&hs, "hz", "r1", overrun, pre).is_none());
        let mut running = hs.clone();
        running[1].status = HearingStatus::InProgress;
        assert_eq!(
            due_hearing(&running, "hz", "r1", overrun, pre).map(|h| h.id.as_str()),
            Some("now")
        );
    }
}
