//! Users, sessions, access control and the audit log of the HTTP API (issue 9).
//!
//! Every request goes through [`require`]: it classifies the route ([`classify`], pure),
//! authenticates the caller (a bearer token, or the dashboard's session cookie), resolves
//! the court a hearing or room belongs to, asks [`gavel_identity::access::authorize`], and
//! writes the audit log: every refusal (unauthenticated or forbidden) and every
//! state-changing request with its outcome. Passwords are Argon2id; logins are rate-limited
//! per user name and per client address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gavel_identity::access::{Action, LoginLimiter, Principal, Role, authorize};
use gavel_identity::enroll::token_hash;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::api::ApiError;
use crate::enforcer::EnforcerHandle;
use crate::store::{AuditEntry, Store, UserRow};

/// Name of the dashboard's session cookie.
pub const COOKIE: &str = "gavel_session";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::hours(12);
/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

/// What the middleware and the auth routes share.
#[derive(Clone)]
pub struct AuthState {
    pub store: Store,
    pub enforcer: EnforcerHandle,
    pub limiter: Arc<Mutex<Limiters>>,
    /// False only on a loopback listener with `GAVEL_AUTH=off` (development rigs).
    pub enabled: bool,
}

/// Failed logins, by user name (5 in 5 min lock the name) and by client address (20 in
/// 5 min lock the address).
#[derive(Debug)]
pub struct Limiters {
    pub user: LoginLimiter,
    pub address: LoginLimiter,
}

impl Default for Limiters {
    fn default() -> Self {
        Self {
            user: LoginLimiter::default(),
            address: LoginLimiter::new(20, Duration::minutes(5), Duration::minutes(5)),
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Anyone (login, device enrollment with its token, the CA certificate, bundles for
    /// devices, the dashboard page itself, health and metrics).
    Public,
    /// A signed-in user allowed this action.
    Act(Action),
    /// A hearing action: the court is the hearing's.
    Hearing { id: String, record: bool },
    /// A new hearing: the court is in the JSON body.
    NewHearing,
    /// Correcting or signing off a hearing's transcript: the court is the hearing's.
    Proofread { id: String },
}

/// Maps a request to what it needs (pure).
pub fn classify(method: &Method, path: &str) -> Need {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let read = method == Method::GET || method == Method::HEAD;
    match parts.as_slice() {
        [""] | ["", ""] => Need::Public,
        ["", "metrics"] => Need::Public,
        ["", "api", "v1", "health" | "login" | "enroll"] => Need::Public,
        ["", "api", "v1", "openapi.json"] => Need::Public,
        ["", "api", "v1", "pki", "ca.pem"] => Need::Public,
        // Devices fetch signed bundles without a user; the signature is what protects them.
        ["", "api", "v1", "ota", "bundles", _] if read => Need::Public,
        // Devices upload segments without a user; the archive keeps only bytes that hash
        // to the segment event the device sent over its authenticated MQTT session, under
        // that device's id (docs/archive.md).
        ["", "api", "v1", "archive", "uploads", _, _, _, _] if read || method == Method::PUT => {
            Need::Public
        }
        // The service hall: the display page and queue are public (numbers and windows
        // only); a kiosk's case look-up is protected by the case's check code and rate
        // limits, and answers public fields only.
        ["", "hall", _] if read => Need::Public,
        ["", "api", "v1", "hall", "lookup"] => Need::Public,
        ["", "api", "v1", "hall", "check-code"] => Need::Act(Action::Hall { court: None }),
        ["", "api", "v1", "hall", court] if read && *court != "check-code" => Need::Public,
        [
            "",
            "api",
            "v1",
            "hall",
            court,
            "windows",
            _,
            "call" | "recall",
        ] => Need::Act(Action::Hall {
            court: Some((*court).to_string()),
        }),
        ["", "api", "v1", "logout" | "me"] => Need::Act(Action::Read),
        ["", "api", "v1", "users", ..] => Need::Act(Action::ManageUsers),
        ["", "api", "v1", "audit", ..] => Need::Act(Action::ReadAudit),
        ["", "api", "v1", "kiosk", ..] => Need::Act(Action::Kiosk),
        _ if read => Need::Act(Action::Read),
        ["", "api", "v1", "devices", _, "enrollment" | "revoke"] => Need::Act(Action::Provision),
        ["", "api", "v1", "devices", _, "commands"] => Need::Act(Action::DeviceCommand),
        ["", "api", "v1", "ota", ..] => Need::Act(Action::Ota),
        ["", "api", "v1", "alarms", _, "ack" | "resolve" | "notes"] => Need::Act(Action::AckAlarm),
        ["", "api", "v1", "hearings"] => Need::NewHearing,
        ["", "api", "v1", "hearings", "import"] => Need::Act(Action::ImportHearings),
        ["", "api", "v1", "hearings", id, "transcript", ..] => Need::Proofread {
            id: (*id).to_string(),
        },
        ["", "api", "v1", "hearings", id, "recording", _] => Need::Hearing {
            id: (*id).to_string(),
            record: true,
        },
        ["", "api", "v1", "hearings", id, ..] => Need::Hearing {
            id: (*id).to_string(),
            record: false,
        },
        ["", "api", "v1", "rooms", court, _, "recording", _] => Need::Act(Action::Record {
            court: Some((*court).to_string()),
        }),
        // Anything else that changes state: administrators only.
        _ => Need::Act(Action::ManageUsers),
    }
}

fn principal(u: &UserRow) -> Option<Principal> {
    Some(Principal {
        user: u.name.clone(),
        role: Role::parse(&u.role)?,
        court: u.court.clone(),
    })
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(String::from)
        })
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

async fn audit(
    store: &Store,
    who: Option<&Principal>,
    source: Option<SocketAddr>,
    action: String,
    target: String,
    outcome: &str,
    detail: Option<String>,
) {
    let entry = AuditEntry {
        at_ms: now_ms(),
        actor: who.map_or_else(|| "(anonymous)".into(), |p| p.user.clone()),
        role: who.map(|p| p.role.to_string()),
        source: source.map(|s| s.ip().to_string()),
        action,
        target,
        outcome: outcome.into(),
        detail,
    };
    if let Err(e) = store.audit(&entry).await {
        tracing::error!(error = %e, ?entry, "audit log write failed");
    }
}

/// The access middleware.
pub async fn require(
    State(s): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !s.enabled {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let need = classify(&method, &path);
    if need == Need::Public {
        return next.run(req).await;
    }
    let what = format!("{method} {path}");
    let user = match bearer(req.headers()) {
        Some(token) => s
            .store
            .session_user(&token_hash(&token), OffsetDateTime::now_utc())
            .await
            .ok()
            .flatten()
            .as_ref()
            .and_then(principal),
        None => None,
    };
    let Some(who) = user else {
        if method == Method::GET && !path.starts_with("/api/") {
            // A page (the patrol console): sign in on the dashboard first.
            return axum::response::Redirect::to("/").into_response();
        }
        audit(
            &s.store,
            None,
            Some(peer),
            what,
            path.clone(),
            "denied",
            Some("not signed in".into()),
        )
        .await;
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "sign in first: `gavelctl login` (or POST /api/v1/login)".into(),
        )
        .into_response();
    };
    let (action, req) = match need {
        Need::Public => return next.run(req).await,
        Need::Act(a) => (a, req),
        Need::Hearing { id, record } => {
            let court = s.enforcer.hearing(&id).await.map(|h| h.court);
            let a = if record {
                Action::Record { court }
            } else {
                Action::Schedule { court }
            };
            (a, req)
        }
        Need::Proofread { id } => {
            let court = s.enforcer.hearing(&id).await.map(|h| h.court);
            (Action::Proofread { court }, req)
        }
        Need::NewHearing => {
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, 4 * 1024 * 1024).await {
                Ok(b) => b,
                Err(e) => {
                    return ApiError(StatusCode::BAD_REQUEST, format!("request body: {e}"))
                        .into_response();
                }
            };
            let court = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("court").and_then(|c| c.as_str()).map(String::from));
            (
                Action::Schedule { court },
                Request::from_parts(parts, Body::from(bytes)),
            )
        }
    };
    let changes = !(method == Method::GET || method == Method::HEAD);
    if let Err(denied) = authorize(&who, &action) {
        audit(
            &s.store,
            Some(&who),
            Some(peer),
            format!("{what} ({})", action.name()),
            path,
            "denied",
            Some(denied.to_string()),
        )
        .await;
        return ApiError(StatusCode::FORBIDDEN, format!("refused: {denied}")).into_response();
    }
    // Handlers that record who acted (transcript corrections) read the principal here.
    let mut req = req;
    req.extensions_mut().insert(who.clone());
    let response = next.run(req).await;
    if changes {
        let status = response.status();
        audit(
            &s.store,
            Some(&who),
            Some(peer),
            format!("{what} ({})", action.name()),
            path,
            if status.is_success() { "ok" } else { "failed" },
            Some(status.to_string()),
        )
        .await;
    }
    response
}

/// Hashes a password (Argon2id, random salt) as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

pub fn routes(state: AuthState) -> Router {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}/disable", post(disable_user))
        .route("/api/v1/audit", get(audit_log))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub user: String,
    pub role: String,
    pub court: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

async fn login(
    State(s): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> Response {
    let now = OffsetDateTime::now_utc();
    let ip = peer.ip().to_string();
    let locked = {
        let l = s.limiter.lock().unwrap_or_else(|p| p.into_inner());
        l.user
            .locked(now, &req.user)
            .or_else(|| l.address.locked(now, &ip))
    };
    let refused = |detail: &'static str| {
        audit(
            &s.store,
            None,
            Some(peer),
            "POST /api/v1/login".into(),
            req.user.clone(),
            "denied",
            Some(detail.into()),
        )
    };
    if let Some(until) = locked {
        refused("too many failed logins").await;
        let wait = (until - now).whole_seconds().max(1);
        return ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins: try again in {wait} s"),
        )
        .into_response();
    }
    let user = s.store.user(&req.user).await.ok().flatten();
    let password = req.password.clone();
    // Verify even for unknown users, so timing does not reveal which names exist.
    let phc = user
        .as_ref()
        .filter(|u| !u.disabled)
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_string());
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false);
    let who = user
        .as_ref()
        .filter(|u| ok && !u.disabled)
        .and_then(principal);
    let Some(who) = who else {
        {
            let mut l = s.limiter.lock().unwrap_or_else(|p| p.into_inner());
            l.user.failed(now, &req.user);
            l.address.failed(now, &ip);
        }
        refused("wrong user name or password").await;
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password".into(),
        )
        .into_response();
    };
    {
        let mut l = s.limiter.lock().unwrap_or_else(|p| p.into_inner());
        l.user.succeeded(&req.user);
    }
    let token = match gavel_identity::enroll::new_token() {
        Ok(t) => t.replacen("gvl-", "gvs-", 1),
        Err(e) => {
            return ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    let expires_at = now + SESSION_TTL;
    if let Err(e) = s
        .store
        .add_session(&token_hash(&token), &who.user, expires_at)
        .await
    {
        return ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    audit(
        &s.store,
        Some(&who),
        Some(peer),
        "POST /api/v1/login".into(),
        who.user.clone(),
        "ok",
        None,
    )
    .await;
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.whole_seconds()
    );
    (
        [(header::SET_COOKIE, cookie)],
        Json(LoginResponse {
            token,
            user: who.user,
            role: who.role.to_string(),
            court: who.court,
            expires_at,
        }),
    )
        .into_response()
}

/// A valid Argon2id hash of a random password, verified against when the user is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Lj8o6Xp0Y8dNIw4bfaW1nqkBNB2jvDW2ASvxlNSnwqg";

async fn logout(State(s): State<AuthState>, headers: HeaderMap) -> Response {
    if let Some(token) = bearer(&headers) {
        let _ = s.store.end_session(&token_hash(&token)).await;
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

async fn me(State(s): State<AuthState>, headers: HeaderMap) -> Result<Json<Principal>, ApiError> {
    if !s.enabled {
        return Ok(Json(Principal {
            user: "(sign-in off)".into(),
            role: Role::Administrator,
            court: None,
        }));
    }
    let token =
        bearer(&headers).ok_or(ApiError(StatusCode::UNAUTHORIZED, "not signed in".into()))?;
    let user = s
        .store
        .session_user(&token_hash(&token), OffsetDateTime::now_utc())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .and_then(|u| principal(&u))
        .ok_or(ApiError(StatusCode::UNAUTHORIZED, "not signed in".into()))?;
    Ok(Json(user))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub role: String,
    pub court: Option<String>,
    pub disabled: bool,
}

async fn list_users(State(s): State<AuthState>) -> Result<Json<Vec<UserView>>, ApiError> {
    let users = s
        .store
        .users()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(
        users
            .into_iter()
            .map(|u| UserView {
                name: u.name,
                role: u.role,
                court: u.court,
                disabled: u.disabled,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub court: Option<String>,
    pub password: String,
}

/// Checks a new user; the error names the field.
pub fn validate_user(u: &NewUser) -> Result<Role, String> {
    if u.name.is_empty()
        || u.name.len() > 64
        || !u
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "name {:?}: 1-64 characters of a-z, 0-9, '.', '_', '-'",
            u.name
        ));
    }
    let role = Role::parse(&u.role).ok_or_else(|| {
        format!(
            "role {:?}: expected one of {}",
            u.role,
            Role::ALL.map(Role::as_str).join(", ")
        )
    })?;
    if matches!(role, Role::Clerk | Role::Judge) && u.court.as_deref().is_none_or(str::is_empty) {
        return Err(format!("court: a {role} needs the court they work for"));
    }
    if u.password.chars().count() < MIN_PASSWORD {
        return Err(format!("password: at least {MIN_PASSWORD} characters"));
    }
    Ok(role)
}

/// Adds a user (used by the API and the start-up bootstrap).
pub async fn create_user(store: &Store, u: NewUser) -> Result<UserView, ApiError> {
    let role = validate_user(&u).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    if store
        .user(&u.name)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .is_some()
    {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("user {} exists", u.name),
        ));
    }
    let password = u.password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let row = UserRow {
        name: u.name.clone(),
        role: role.to_string(),
        court: u.court.clone(),
        password_hash: hash,
        disabled: false,
    };
    store
        .add_user(&row)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(UserView {
        name: row.name,
        role: row.role,
        court: row.court,
        disabled: false,
    })
}

async fn add_user(
    State(s): State<AuthState>,
    Json(u): Json<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    Ok((StatusCode::CREATED, Json(create_user(&s.store, u).await?)))
}

async fn disable_user(
    State(s): State<AuthState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match s.store.disable_user(&name).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError(StatusCode::NOT_FOUND, format!("no user {name}"))),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub limit: Option<i64>,
    /// `ok`, `failed` or `denied`.
    #[serde(default)]
    pub outcome: Option<String>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
}

async fn audit_log(
    State(s): State<AuthState>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let rows = s
        .store
        .audit_log(
            q.limit.unwrap_or(500).clamp(1, 100_000),
            q.outcome.as_deref(),
        )
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if q.format.as_deref() == Some("csv") {
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in &rows {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
                .map(gavel_protocol::rfc3339)
                .unwrap_or_default();
            w.write_record([
                at.as_str(),
                &r.actor,
                r.role.as_deref().unwrap_or(""),
                r.source.as_deref().unwrap_or(""),
                &r.action,
                &r.target,
                &r.outcome,
                r.detail.as_deref().unwrap_or(""),
            ])
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        }
        let body = w
            .into_inner()
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let mut out = b"at,actor,role,source,action,target,outcome,detail\n".to_vec();
        out.extend(body);
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    Ok(Json(rows).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_the_actions_the_roles_table_names() {
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(classify(&post, "/api/v1/login"), Need::Public);
        assert_eq!(classify(&post, "/api/v1/enroll"), Need::Public);
        assert_eq!(classify(&get, "/"), Need::Public);
        assert_eq!(classify(&get, "/api/v1/ota/bundles/x.gota"), Need::Public);
        assert_eq!(
            classify(&Method::PUT, "/api/v1/archive/uploads/d1/H1/cam/00001.ts"),
            Need::Public
        );
        assert_eq!(
            classify(&get, "/api/v1/archive/hearings/H1"),
            Need::Act(Action::Read)
        );
        assert_eq!(
            classify(
                &Method::DELETE,
                "/api/v1/archive/uploads/d1/H1/cam/00001.ts"
            ),
            Need::Act(Action::ManageUsers)
        );
        assert_eq!(classify(&get, "/api/v1/devices"), Need::Act(Action::Read));
        assert_eq!(
            classify(&post, "/api/v1/ota/campaigns"),
            Need::Act(Action::Ota)
        );
        assert_eq!(
            classify(&post, "/api/v1/ota/bundles"),
            Need::Act(Action::Ota)
        );
        assert_eq!(classify(&post, "/api/v1/hearings"), Need::NewHearing);
        assert_eq!(
            classify(&Method::PATCH, "/api/v1/hearings/h1"),
            Need::Hearing {
                id: "h1".into(),
                record: false
            }
        );
        assert_eq!(
            classify(&post, "/api/v1/hearings/h1/recording/start"),
            Need::Hearing {
                id: "h1".into(),
                record: true
            }
        );
        assert_eq!(
            classify(&post, "/api/v1/rooms/hz/room-101/recording/stop"),
            Need::Act(Action::Record {
                court: Some("hz".into())
            })
        );
        assert_eq!(
            classify(&post, "/api/v1/devices/d1/revoke"),
            Need::Act(Action::Provision)
        );
        assert_eq!(
            classify(&get, "/api/v1/users"),
            Need::Act(Action::ManageUsers)
        );
        assert_eq!(
            classify(&get, "/api/v1/audit"),
            Need::Act(Action::ReadAudit)
        );
        assert_eq!(classify(&get, "/hall/hz"), Need::Public);
        assert_eq!(
            classify(&post, "/api/v1/alarms/a1/notes"),
            Need::Act(Action::AckAlarm)
        );
        assert_eq!(classify(&get, "/patrol"), Need::Act(Action::Read));
        assert_eq!(classify(&get, "/api/v1/hall/hz"), Need::Public);
        assert_eq!(classify(&post, "/api/v1/hall/lookup"), Need::Public);
        assert_eq!(
            classify(&get, "/api/v1/hall/check-code"),
            Need::Act(Action::Hall { court: None })
        );
        assert_eq!(
            classify(&post, "/api/v1/hall/hz/windows/3/call"),
            Need::Act(Action::Hall {
                court: Some("hz".into())
            })
        );
        assert_eq!(
            classify(
                &Method::PUT,
                "/api/v1/hearings/h1/transcript/lines/tr-h1-judge-0"
            ),
            Need::Proofread { id: "h1".into() }
        );
        assert_eq!(
            classify(&post, "/api/v1/hearings/h1/transcript/sign-off"),
            Need::Proofread { id: "h1".into() }
        );
        assert_eq!(
            classify(&get, "/api/v1/hearings/h1/transcript"),
            Need::Act(Action::Read)
        );
        assert_eq!(
            classify(&get, "/hearings/h1/transcript"),
            Need::Act(Action::Read)
        );
        assert_eq!(
            classify(&get, "/api/v1/transcripts/search"),
            Need::Act(Action::Read)
        );
        assert_eq!(
            classify(&post, "/api/v1/something-new"),
            Need::Act(Action::ManageUsers),
            "unknown state changes are for administrators only"
        );
    }

    #[test]
    fn a_new_user_is_checked_field_by_field() {
        let u = |name: &str, role: &str, court: Option<&str>, pw: &str| NewUser {
            name: name.into(),
            role: role.into(),
            court: court.map(String::from),
            password: pw.into(),
        };
        assert!(validate_user(&u("chen", "clerk", Some("hz"), "long enough pw")).is_ok());
        assert!(
            validate_user(&u("chen", "clerk", None, "long enough pw"))
                .expect_err("court")
                .starts_with("court")
        );
        assert!(
            validate_user(&u("chen", "bailiff", None, "long enough pw"))
                .expect_err("role")
                .starts_with("role")
        );
        assert!(
            validate_user(&u("wang", "judge", None, "long enough pw"))
                .expect_err("court")
                .starts_with("court")
        );
        assert!(
            validate_user(&u("chen", "inspector", None, "short"))
                .expect_err("pw")
                .starts_with("password")
        );
        assert!(
            validate_user(&u("a b", "inspector", None, "long enough pw"))
                .expect_err("name")
                .starts_with("name")
        );
    }

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("anything", DUMMY_HASH));
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("header"));
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "x=1; gavel_session=def; y=2".parse().expect("header"),
        );
        assert_eq!(bearer(&h).as_deref(), Some("def"));
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
