//! Device identity over HTTP: enrollment tokens, enrollment (CSR in, certificate out),
//! revocation, and the CA certificate.
//!
//! - `POST /api/v1/devices/{id}/enrollment` makes a one-time token for a device (shown once).
//! - `POST /api/v1/enroll` takes the token and a CSR made on the device; answers with the
//!   device certificate (common name = the token's device id), the CA certificate, where
//!   the TLS broker is, and the device's assignment (court, room, profile, tags).
//! - `POST /api/v1/devices/{id}/revoke` revokes every certificate of the device: the gate
//!   closes its connections at once and refuses new ones; the CRL for external brokers is
//!   rewritten (`<data_dir>/pki/crl.pem`).
//! - `GET /api/v1/pki/ca.pem` is the CA certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gavel_identity::ca::Revoked;
use gavel_identity::enroll::{Assignment, new_token, token_hash};
use gavel_protocol::DeviceId;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::api::ApiError;
use crate::gate::Revocations;
use crate::pki::Pki;
use crate::store::Store;

/// Longest an enrollment token may live.
pub const MAX_TOKEN_TTL_S: u32 = 7 * 24 * 3600;

/// What the identity routes need.
#[derive(Clone)]
pub struct IdentityState {
    pub store: Store,
    pub pki: Arc<Pki>,
    pub revocations: Revocations,
    /// Where devices reach the TLS gate, when it is on.
    pub mqtt_tls: Option<SocketAddr>,
    /// The TLS broker devices are told about when it is not the gate (HOST, PORT).
    pub device_broker: Option<(String, u16)>,
    /// How long device certificates live.
    pub device_cert_validity: Duration,
}

pub fn routes(state: IdentityState) -> Router {
    Router::new()
        .route("/api/v1/devices/{id}/enrollment", post(create_token))
        .route("/api/v1/enroll", post(enroll))
        .route("/api/v1/devices/{id}/revoke", post(revoke))
        .route("/api/v1/pki/ca.pem", get(ca_pem))
        .route("/api/v1/devices/{id}/certificates", get(certificates))
        .with_state(state)
}

/// A token request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(flatten)]
    pub assignment: Assignment,
    /// How long the token is valid, seconds (default one hour).
    #[serde(default)]
    pub ttl_s: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    pub device_id: String,
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn device(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("device id: {e}")))
}

async fn create_token(
    State(s): State<IdentityState>,
    Path(id): Path<String>,
    body: Option<Json<TokenRequest>>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    let id = device(&id)?;
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let ttl = req.ttl_s.unwrap_or(3600);
    if ttl == 0 || ttl > MAX_TOKEN_TTL_S {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("ttl_s: {ttl} is outside 1..={MAX_TOKEN_TTL_S} seconds"),
        ));
    }
    let token = new_token().map_err(internal)?;
    let now = OffsetDateTime::now_utc();
    let expires_at = now + Duration::seconds(i64::from(ttl));
    let assignment = serde_json::to_string(&req.assignment).map_err(internal)?;
    s.store
        .create_enrollment(
            &token_hash(&token),
            id.as_str(),
            &assignment,
            now,
            expires_at,
        )
        .await
        .map_err(internal)?;
    tracing::info!(device = %id, %expires_at, "enrollment token made");
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            device_id: id.to_string(),
            token,
            expires_at,
        }),
    ))
}

/// What a device sends to enroll.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    /// PEM certificate signing request, made on the device.
    pub csr: String,
}

/// What an enrolled device gets.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub device_id: String,
    /// The device certificate (PEM).
    pub certificate: String,
    /// The CA certificate (PEM): what the device trusts.
    pub ca: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The TLS broker's port: the controller's gate, or the configured device broker.
    pub mqtt_tls_port: Option<u16>,
    /// The TLS broker's host when it is not the controller's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_tls_host: Option<String>,
    pub assignment: Assignment,
}

async fn enroll(
    State(s): State<IdentityState>,
    Json(req): Json<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let (device_id, assignment) = s
        .store
        .redeem_enrollment(&token_hash(&req.token), now)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "enrollment token is unknown, already used or expired: make a new one with `gavelctl provision`".into(),
            )
        })?;
    let id = device(&device_id)?;
    let assignment: Assignment = serde_json::from_str(&assignment).map_err(internal)?;
    let issued = s
        .pki
        .ca()
        .issue_device(&req.csr, &id, now, s.device_cert_validity)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("csr: {e}")))?;
    s.store
        .record_cert(&issued.serial, id.as_str(), now, issued.not_after)
        .await
        .map_err(internal)?;
    tracing::info!(device = %id, serial = %issued.serial, not_after = %issued.not_after, "device enrolled");
    Ok(Json(EnrollResponse {
        device_id: id.to_string(),
        certificate: issued.cert_pem,
        ca: s.pki.ca().cert_pem().to_string(),
        not_after: issued.not_after,
        mqtt_tls_port: s
            .device_broker
            .as_ref()
            .map(|(_, p)| *p)
            .or(s.mqtt_tls.map(|a| a.port())),
        mqtt_tls_host: s.device_broker.as_ref().map(|(h, _)| h.clone()),
        assignment,
    }))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RevokeResponse {
    pub device_id: String,
    /// Serial numbers revoked now.
    pub revoked: Vec<String>,
}

async fn revoke(
    State(s): State<IdentityState>,
    Path(id): Path<String>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let id = device(&id)?;
    let now = OffsetDateTime::now_utc();
    let serials = s
        .store
        .revoke_device(id.as_str(), now)
        .await
        .map_err(internal)?;
    s.revocations.revoke(serials.iter().cloned());
    write_crl(&s).await.map_err(internal)?;
    tracing::warn!(device = %id, certificates = serials.len(), "device revoked");
    Ok(Json(RevokeResponse {
        device_id: id.to_string(),
        revoked: serials,
    }))
}

/// One issued certificate.
#[derive(Debug, Serialize, Deserialize)]
pub struct CertView {
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

async fn certificates(
    State(s): State<IdentityState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<CertView>>, ApiError> {
    let id = device(&id)?;
    let rows = s.store.device_certs(id.as_str()).await.map_err(internal)?;
    Ok(Json(
        rows.into_iter()
            .map(|(serial, issued, not_after, revoked)| CertView {
                serial,
                issued_at: from_ms(issued),
                not_after: from_ms(not_after),
                revoked_at: revoked.map(from_ms),
            })
            .collect(),
    ))
}

/// Answers devices' certificate renewal requests (stored `cert_renewal` events): a device
/// with a live certificate (the request came over its own authenticated topic) gets a new
/// certificate for the key in its request, sent as an `install_certificate` command.
pub fn spawn_renewals(
    s: IdentityState,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(DeviceId, String)>,
    mqtt: rumqttc::AsyncClient,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (device, csr) = tokio::select! {
                () = shutdown.cancelled() => return,
                next = rx.recv() => match next {
                    Some(x) => x,
                    None => return,
                },
            };
            if let Err(e) = renew(&s, &mqtt, &device, &csr).await {
                tracing::warn!(%device, error = %format!("{e:#}"), "certificate renewal refused");
            }
        }
    })
}

async fn renew(
    s: &IdentityState,
    mqtt: &rumqttc::AsyncClient,
    device: &DeviceId,
    csr: &str,
) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    if s.store.live_certs(device.as_str(), now).await? == 0 {
        anyhow::bail!(
            "{device} has no live certificate (revoked, expired or never enrolled): enroll it again"
        );
    }
    let issued = s
        .pki
        .ca()
        .issue_device(csr, device, now, s.device_cert_validity)?;
    s.store
        .record_cert(&issued.serial, device.as_str(), now, issued.not_after)
        .await?;
    let command = gavel_protocol::Command {
        v: gavel_protocol::PROTOCOL_VERSION,
        ts: now,
        id: format!("renew-{}", issued.serial),
        expires: Some(now + Duration::hours(1)),
        body: gavel_protocol::CommandBody::InstallCertificate {
            certificate: issued.cert_pem,
        },
    };
    let topic = gavel_protocol::DeviceTopic::new(device.clone(), gavel_protocol::Channel::Cmd);
    mqtt.publish(
        topic.to_string(),
        rumqttc::QoS::AtLeastOnce,
        false,
        gavel_protocol::encode(&command),
    )
    .await?;
    tracing::info!(%device, serial = %issued.serial, not_after = %issued.not_after, "certificate renewed");
    Ok(())
}

/// Every revoked certificate, for a CRL.
pub async fn revoked(store: &Store) -> Result<Vec<Revoked>, crate::store::StoreError> {
    Ok(store
        .revoked_certs()
        .await?
        .into_iter()
        .map(|(serial, ms)| Revoked {
            serial,
            at: from_ms(ms),
        })
        .collect())
}

/// Rewrites `<pki>/crl.pem` from the store (for external brokers).
pub async fn write_crl(s: &IdentityState) -> anyhow::Result<()> {
    let list = revoked(&s.store).await?;
    let number = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(1);
    s.pki.write_crl(s.pki.dir(), &list, number)
}

async fn ca_pem(State(s): State<IdentityState>) -> Response {
    (
        [("content-type", "application/x-pem-file")],
        s.pki.ca().cert_pem().to_string(),
    )
        .into_response()
}
