//! The service hall in the controller: one `gavel_fleet::hall::Hall` per court, owned by
//! one task; tickets arrive from the fleet task (after their events are stored), calls from
//! the API; each call is announced by speech on the court's devices with the `announce`
//! capability and shown on the hall display page (`/hall/{court}`).
//!
//! Also the kiosks' case look-up: a check code is the HMAC-SHA256 of the case number under
//! the hall secret, six digits; the answer holds only public fields
//! (`gavel_fleet::hall::public_case`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gavel_fleet::hall::{Call, Hall, HallSettings, HallView, Input, Output, PublicCase, Ticket};
use gavel_protocol::{
    CapabilityState, Channel, Command, CommandBody, DeviceId, DeviceTopic, Event, EventBody,
    PROTOCOL_VERSION,
};
use hmac::{Hmac, Mac};
use rumqttc::{AsyncClient, QoS};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::ApiErrorBody;
use crate::enforcer::EnforcerHandle;
use crate::fleet_actor::FleetHandle;
use crate::store::Store;

const DISPLAY: &str = include_str!("../assets/hall.html");

enum Request {
    Ticket {
        device: String,
        court: String,
        event: Box<Event>,
    },
    View {
        court: String,
        reply: oneshot::Sender<HallView>,
    },
    Act {
        court: String,
        input: Input,
        reply: oneshot::Sender<Vec<Output>>,
    },
}

/// Cloneable handle to the hall task.
#[derive(Clone)]
pub struct HallHandle {
    tx: mpsc::Sender<Request>,
}

/// The receiving end, handed to [`spawn`] once the fleet task runs.
pub struct Inbox(mpsc::Receiver<Request>);

/// A handle and its inbox (the task starts with [`spawn`]).
pub fn channel() -> (HallHandle, Inbox) {
    let (tx, rx) = mpsc::channel(4096);
    (HallHandle { tx }, Inbox(rx))
}

impl HallHandle {
    /// A stored `ticket` event of `device`, installed in `court`. Never waits; a ticket
    /// dropped on a full queue is taken again from the stored events at the next start.
    pub fn ticket(&self, device: &DeviceId, court: &str, event: &Event) {
        let request = Request::Ticket {
            device: device.to_string(),
            court: court.to_owned(),
            event: Box::new(event.clone()),
        };
        if self.tx.try_send(request).is_err() {
            warn!(%device, "hall queue full; the ticket is reloaded from the events at the next start");
        }
    }

    async fn view(&self, court: &str) -> Option<HallView> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::View {
                court: court.to_owned(),
                reply,
            })
            .await
            .ok()?;
        rx.await.ok()
    }

    async fn act(&self, court: &str, input: Input) -> Option<Vec<Output>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Act {
                court: court.to_owned(),
                input,
                reply,
            })
            .await
            .ok()?;
        rx.await.ok()
    }
}

/// What the hall task needs.
pub struct HallParts {
    pub settings: crate::config::HallSettings,
    pub offset: time::UtcOffset,
    pub store: Store,
    pub fleet: FleetHandle,
    pub mqtt: AsyncClient,
}

struct Actor {
    parts: HallParts,
    halls: BTreeMap<String, Hall>,
    /// Tickets to store (kept and retried when the database fails).
    unsaved: Vec<(String, Ticket)>,
}

fn core_settings(parts: &HallParts) -> HallSettings {
    HallSettings {
        offset: parts.offset,
        default_service_s: parts.settings.default_service_s,
        ..HallSettings::default()
    }
}

/// Starts the hall task: today's tickets from the store, then every `ticket` event of the
/// last day again (each already held is a duplicate), then requests.
pub fn spawn(
    parts: HallParts,
    inbox: Inbox,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut actor = Actor {
            parts,
            halls: BTreeMap::new(),
            unsaved: Vec::new(),
        };
        actor.restore().await;
        actor.run(inbox.0, shutdown).await;
    })
}

fn ticket_input(device: &str, event: &Event) -> Option<Input> {
    match &event.body {
        EventBody::Ticket {
            number,
            service,
            day,
            issued,
        } => Some(Input::Issued {
            kiosk: device.to_owned(),
            number: number.clone(),
            service: service.clone(),
            day: day.clone(),
            issued: *issued,
        }),
        _ => None,
    }
}

impl Actor {
    async fn restore(&mut self) {
        let now = OffsetDateTime::now_utc();
        let yesterday = (now.to_offset(self.parts.offset) - time::Duration::days(1)).date();
        let from = format!(
            "{:04}-{:02}-{:02}",
            yesterday.year(),
            u8::from(yesterday.month()),
            yesterday.day()
        );
        let stored = match self.parts.store.load_hall_tickets(&from).await {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "loading hall tickets failed; starting from the events");
                Vec::new()
            }
        };
        let mut by_court: BTreeMap<String, Vec<Ticket>> = BTreeMap::new();
        for (court, t) in stored {
            by_court.entry(court).or_default().push(t);
        }
        let settings = core_settings(&self.parts);
        for (court, tickets) in by_court {
            self.halls
                .insert(court, Hall::restore(settings.clone(), tickets, now));
        }
        // Design: a ticket event is stored (and receipted) before the hall sees it; one
        // lost between the two (a crash, a full queue) comes back from here.
        let since = (now - time::Duration::hours(26)).unix_timestamp() * 1000;
        let events = self
            .parts
            .store
            .ticket_events_since(since)
            .await
            .unwrap_or_default();
        let mut courts: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut replayed = 0;
        for (device, json) in events {
            let Ok(event) = serde_json::from_value::<Event>(json) else {
                continue;
            };
            if !courts.contains_key(&device) {
                let court = match DeviceId::new(device.clone()) {
                    Ok(id) => self.parts.fleet.get(id).await.and_then(|r| r.court),
                    Err(_) => None,
                };
                courts.insert(device.clone(), court);
            }
            let Some(Some(court)) = courts.get(&device).cloned() else {
                continue;
            };
            if let Some(input) = ticket_input(&device, &event) {
                let out = self.hall(&court).handle(now, input);
                replayed += out.iter().filter(|o| matches!(o, Output::Save(_))).count();
                self.carry_out(&court, out);
            }
        }
        self.save().await;
        let held: usize = self.halls.values().map(|h| h.tickets().count()).sum();
        info!(
            tickets = held,
            from_events = replayed,
            "hall queue restored"
        );
    }

    fn hall(&mut self, court: &str) -> &mut Hall {
        let settings = core_settings(&self.parts);
        self.halls
            .entry(court.to_owned())
            .or_insert_with(|| Hall::new(settings))
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.save().await,
                request = rx.recv() => {
                    let Some(request) = request else { break };
                    let now = OffsetDateTime::now_utc();
                    match request {
                        Request::Ticket { device, court, event } => {
                            if let Some(input) = ticket_input(&device, &event) {
                                let out = self.hall(&court).handle(now, input);
                                self.carry_out(&court, out);
                            }
                        }
                        Request::View { court, reply } => {
                            let services = self.parts.settings.services.clone();
                            let _ = reply.send(self.hall(&court).view(now, &services));
                        }
                        Request::Act { court, input, reply } => {
                            let out = self.hall(&court).handle(now, input);
                            self.carry_out(&court, out.clone());
                            // Design: the call is stored before the API answers.
                            self.save().await;
                            let _ = reply.send(out);
                        }
                    }
                }
            }
        }
        self.save().await;
    }

    fn carry_out(&mut self, court: &str, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Save(t) => self.unsaved.push((court.to_owned(), t)),
                Output::Called(call) => self.announce(court, &call),
                Output::Duplicate { .. } => {}
                Output::Conflict {
                    number,
                    kiosk,
                    held_by,
                } => {
                    warn!(%court, %number, %kiosk, %held_by, "two kiosks issued the same ticket number: give each kiosk of a court its own [kiosk] number")
                }
                Output::Expired { number, day } => {
                    info!(%court, %number, %day, "ticket of another day not queued")
                }
                Output::Nothing { .. } => {}
            }
        }
    }

    async fn save(&mut self) {
        if self.unsaved.is_empty() {
            return;
        }
        match self.parts.store.save_hall_tickets(&self.unsaved).await {
            Ok(()) => self.unsaved.clear(),
            Err(e) => {
                warn!(error = %e, tickets = self.unsaved.len(), "saving hall tickets failed; will retry")
            }
        }
    }

    /// Sends `announce` to every online device of the court that can speak.
    fn announce(&self, court: &str, call: &Call) {
        info!(%court, number = %call.number, window = %call.window, recall = call.recall, "number called");
        let fleet = self.parts.fleet.clone();
        let mqtt = self.parts.mqtt.clone();
        let (court, call) = (court.to_owned(), call.clone());
        tokio::spawn(async move {
            let now = OffsetDateTime::now_utc();
            for d in fleet.list().await {
                let speaks = d
                    .capabilities
                    .iter()
                    .any(|c| c.name == "announce" && c.state == CapabilityState::Running);
                if !(d.online && speaks && d.court.as_deref() == Some(court.as_str())) {
                    continue;
                }
                let command = Command {
                    v: PROTOCOL_VERSION,
                    ts: now,
                    id: uuid::Uuid::new_v4().to_string(),
                    expires: Some(now + time::Duration::seconds(30)),
                    body: CommandBody::Announce {
                        number: call.number.clone(),
                        window: call.window.clone(),
                    },
                };
                let topic = DeviceTopic::new(d.id.clone(), Channel::Cmd).to_string();
                if let Err(e) = mqtt
                    .publish(
                        topic,
                        QoS::AtLeastOnce,
                        false,
                        gavel_protocol::encode(&command),
                    )
                    .await
                {
                    warn!(device = %d.id, error = %e, "could not send an announcement");
                }
            }
        });
    }
}

/// What the hall routes reach.
#[derive(Clone)]
pub struct HallState {
    pub hall: HallHandle,
    pub enforcer: EnforcerHandle,
    pub secret: Vec<u8>,
    pub offset: time::UtcOffset,
    /// Failed look-ups in the current minute (all kiosks together).
    pub failures: std::sync::Arc<std::sync::Mutex<FailureWindow>>,
}

/// Failed look-ups counted per minute: past [`MAX_FAILED_LOOKUPS`] every look-up is
/// refused until the minute is over, so a six-digit code cannot be guessed by trying
/// (kiosks limit each screen; this limits every kiosk and API client together).
#[derive(Debug)]
pub struct FailureWindow {
    started: std::time::Instant,
    failures: u32,
}

impl Default for FailureWindow {
    fn default() -> Self {
        Self {
            started: std::time::Instant::now(),
            failures: 0,
        }
    }
}

/// Failed look-ups allowed per minute, over all clients.
pub const MAX_FAILED_LOOKUPS: u32 = 120;

impl FailureWindow {
    fn roll(&mut self) {
        if self.started.elapsed() >= Duration::from_secs(60) {
            *self = Self::default();
        }
    }
}

/// The hall's routes.
pub fn routes(state: HallState) -> Router {
    Router::new()
        .route("/hall/{court}", get(display))
        .route("/api/v1/hall/lookup", post(lookup))
        .route("/api/v1/hall/check-code", get(check_code))
        .route("/api/v1/hall/{court}", get(view))
        .route(
            "/api/v1/hall/{court}/windows/{window}/call",
            post(call_next),
        )
        .route("/api/v1/hall/{court}/windows/{window}/recall", post(recall))
        .with_state(state)
}

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ApiErrorBody { error: msg.into() })).into_response()
}

fn check_court(court: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&court.len())
        && court
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("court: 1-64 of A-Z a-z 0-9 - _ .".into())
    }
}

/// The hall display page of a court (called numbers, large).
pub async fn display(Path(court): Path<String>) -> Response {
    if let Err(m) = check_court(&court) {
        return err(StatusCode::BAD_REQUEST, m);
    }
    ([(header::CACHE_CONTROL, "no-store")], Html(DISPLAY)).into_response()
}

/// The queue of a court's hall: services with waiting counts and estimates, windows,
/// latest calls.
#[utoipa::path(get, path = "/api/v1/hall/{court}", params(("court" = String, Path)),
    responses((status = 200, body = HallView)))]
pub async fn view(State(s): State<HallState>, Path(court): Path<String>) -> Response {
    if let Err(m) = check_court(&court) {
        return err(StatusCode::BAD_REQUEST, m);
    }
    match s.hall.view(&court).await {
        Some(v) => Json(v).into_response(),
        None => err(StatusCode::SERVICE_UNAVAILABLE, "hall task stopped"),
    }
}

/// Which services a window calls (empty or absent: any).
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CallRequest {
    #[serde(default)]
    pub services: Vec<String>,
}

/// The answer to a call: the number called, or why none.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallResult {
    pub called: Option<Call>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn call_result(out: Vec<Output>) -> Response {
    let called = out.iter().find_map(|o| match o {
        Output::Called(c) => Some(c.clone()),
        _ => None,
    });
    let reason = out.iter().find_map(|o| match o {
        Output::Nothing { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    let code = if called.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    (code, Json(CallResult { called, reason })).into_response()
}

fn window_ok(court: &str, window: &str) -> Result<(), String> {
    check_court(court)?;
    gavel_protocol::check_window(window).map_err(|e| format!("{}: {}", e.field, e.reason))
}

/// A window calls the next waiting number (of the named services); it is announced on
/// the court's speaking devices and shown on the display. 409 when nobody waits.
#[utoipa::path(post, path = "/api/v1/hall/{court}/windows/{window}/call",
    params(("court" = String, Path), ("window" = String, Path)), request_body = CallRequest,
    responses((status = 200, body = CallResult), (status = 409, body = CallResult)))]
pub async fn call_next(
    State(s): State<HallState>,
    Path((court, window)): Path<(String, String)>,
    body: Option<Json<CallRequest>>,
) -> Response {
    if let Err(m) = window_ok(&court, &window) {
        return err(StatusCode::BAD_REQUEST, m);
    }
    let services = body.map(|Json(b)| b.services).unwrap_or_default();
    for sv in &services {
        if let Err(e) = gavel_protocol::check_service(sv) {
            return err(
                StatusCode::BAD_REQUEST,
                format!("{}: {}", e.field, e.reason),
            );
        }
    }
    match s
        .hall
        .act(&court, Input::CallNext { window, services })
        .await
    {
        Some(out) => call_result(out),
        None => err(StatusCode::SERVICE_UNAVAILABLE, "hall task stopped"),
    }
}

/// A window calls its current number again. 409 when it has called nobody.
#[utoipa::path(post, path = "/api/v1/hall/{court}/windows/{window}/recall",
    params(("court" = String, Path), ("window" = String, Path)),
    responses((status = 200, body = CallResult), (status = 409, body = CallResult)))]
pub async fn recall(
    State(s): State<HallState>,
    Path((court, window)): Path<(String, String)>,
) -> Response {
    if let Err(m) = window_ok(&court, &window) {
        return err(StatusCode::BAD_REQUEST, m);
    }
    match s.hall.act(&court, Input::Recall { window }).await {
        Some(out) => call_result(out),
        None => err(StatusCode::SERVICE_UNAVAILABLE, "hall task stopped"),
    }
}

/// Normalises a case number as typed at a kiosk (surrounding spaces, full-width
/// parentheses).
fn normalise(case: &str) -> String {
    case.trim().replace('（', "(").replace('）', ")")
}

/// The six-digit check code of a case number under `secret`.
pub fn code_for(secret: &[u8], case_number: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(normalise(case_number).as_bytes());
    let d = mac.finalize().into_bytes();
    let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 1_000_000;
    format!("{n:06}")
}

fn same(a: &str, b: &str) -> bool {
    // Design: compared in constant time, so timing does not reveal a code digit by digit.
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A kiosk's look-up.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct LookupRequest {
    pub case_number: String,
    pub check_code: String,
}

/// A case's public state (status, next hearing's date, time and room) when the check
/// code matches; 404 alike for an unknown case and a wrong code.
#[utoipa::path(post, path = "/api/v1/hall/lookup", request_body = LookupRequest,
    responses((status = 200, body = PublicCase), (status = 404, body = ApiErrorBody),
        (status = 429, body = ApiErrorBody)))]
pub async fn lookup(State(s): State<HallState>, Json(req): Json<LookupRequest>) -> Response {
    let blocked = match s.failures.lock() {
        Ok(mut w) => {
            w.roll();
            w.failures >= MAX_FAILED_LOOKUPS
        }
        Err(_) => false,
    };
    if blocked {
        return err(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed look-ups; try again within a minute",
        );
    }
    let case = normalise(&req.case_number);
    let expected = code_for(&s.secret, &case);
    if !same(&expected, req.check_code.trim()) {
        if let Ok(mut w) = s.failures.lock() {
            w.failures += 1;
        }
        return err(
            StatusCode::NOT_FOUND,
            "no case with this number and check code",
        );
    }
    let hearings = s.enforcer.hearings().await;
    match gavel_fleet::hall::public_case(&hearings, &case, OffsetDateTime::now_utc(), s.offset) {
        Some(c) => Json(c).into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            "no case with this number and check code",
        ),
    }
}

/// `?case=...`.
#[derive(Debug, Deserialize)]
pub struct CaseQuery {
    pub case: String,
}

/// A case's check code, for staff to print on the litigant's notice.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckCode {
    pub case_number: String,
    pub check_code: String,
}

/// The check code of a case number (staff: printed on notices).
#[utoipa::path(get, path = "/api/v1/hall/check-code", params(("case" = String, Query)),
    responses((status = 200, body = CheckCode)))]
pub async fn check_code(State(s): State<HallState>, Query(q): Query<CaseQuery>) -> Response {
    let case = normalise(&q.case);
    if case.is_empty() || case.chars().count() > 64 {
        return err(StatusCode::BAD_REQUEST, "case: 1-64 characters");
    }
    Json(CheckCode {
        check_code: code_for(&s.secret, &case),
        case_number: case,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_code_is_six_digits_fixed_by_the_secret_and_the_case() {
        let a = code_for(b"secret", "(2026)浙0106民初1234号");
        assert_eq!(a.len(), 6);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(a, code_for(b"secret", " （2026）浙0106民初1234号 "));
        assert_ne!(a, code_for(b"other", "(2026)浙0106民初1234号"));
        assert_ne!(a, code_for(b"secret", "(2026)浙0106民初1235号"));
    }

    #[test]
    fn codes_are_compared_whole() {
        assert!(same("123456", "123456"));
        assert!(!same("123456", "123457"));
        assert!(!same("123456", "12345"));
    }
}
