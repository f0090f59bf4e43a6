//! An ONVIF camera stub: HTTP SOAP answers from the recorded responses in
//! `hil-tests/fixtures/onvif/`, a WS-UsernameToken (PasswordDigest) check, and a
//! WS-Discovery responder on a UDP port of its own.
//!
//! Each stub binds 127.0.0.1 on free ports. WS-Discovery is answered by unicast only:
//! multicast does not reach a sandbox's loopback reliably, so tests probe the stub's
//! address directly (`gavel_devices::onvif::discover(&[stub.discovery], false, ..)`).
//!
//! Fixtures are answer templates; `{{name}}` placeholders are filled per camera and per
//! request (clock fields, service URLs, profile and preset tokens).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use sha1::Digest as _;
use time::OffsetDateTime;

/// What one stub camera is.
#[derive(Debug, Clone)]
pub struct StubCamera {
    /// Name advertised in the discovery scopes.
    pub name: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub user: String,
    pub password: String,
    /// Seconds the camera's clock is ahead of ours.
    pub clock_skew_s: i64,
}

impl StubCamera {
    /// A camera named `name` with user `admin` and password `password`.
    pub fn new(name: &str, serial: &str) -> Self {
        Self {
            name: name.to_owned(),
            manufacturer: "HIKVISION".into(),
            model: "DS-2DE4A425IWG-E".into(),
            serial: serial.to_owned(),
            user: "admin".into(),
            password: "Court#2026".into(),
            clock_skew_s: 0,
        }
    }
}

/// A SOAP request the stub answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Operation (`GetProfiles`, `GotoPreset`...).
    pub operation: String,
    /// Whether the request passed the credentials check (or needed none).
    pub authorized: bool,
    /// `ProfileToken` of the request, if any.
    pub profile: Option<String>,
    /// `PresetToken` of the request, if any.
    pub preset: Option<String>,
}

struct Shared {
    camera: StubCamera,
    base: String,
    endpoint: String,
    calls: Mutex<Vec<Call>>,
}

/// A running stub camera; stops on drop.
pub struct OnvifStub {
    /// Device service URL (`http://127.0.0.1:PORT/onvif/device_service`).
    pub device_url: String,
    /// Where it answers WS-Discovery probes.
    pub discovery: SocketAddr,
    /// WS-Discovery endpoint id (`urn:uuid:...`).
    pub endpoint: String,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The recorded-response folder.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/onvif")
}

impl OnvifStub {
    /// Starts a stub for `camera`; must run inside a Tokio runtime.
    pub async fn start(camera: StubCamera) -> anyhow::Result<Self> {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", http.local_addr()?);
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let discovery = udp.local_addr()?;
        let uuid = uuid::Uuid::new_v4();
        let shared = Arc::new(Shared {
            camera,
            endpoint: format!("urn:uuid:{uuid}"),
            base: base.clone(),
            calls: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/onvif/{service}", axum::routing::post(soap))
            .with_state(shared.clone());
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        let udp_task = tokio::spawn(wsd(udp, shared.clone(), uuid.to_string()));
        Ok(Self {
            device_url: format!("{base}/onvif/device_service"),
            discovery,
            endpoint: shared.endpoint.clone(),
            shared,
            tasks: vec![http_task, udp_task],
        })
    }

    /// Requests answered so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Preset tokens the camera was sent to, in order.
    pub fn gotos(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == "GotoPreset" && c.authorized)
            .filter_map(|c| c.preset)
            .collect()
    }
}

impl Drop for OnvifStub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Text of the first element whose local name is `local`.
fn tag<'a>(xml: &'a str, local: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = xml[from..].find(local) {
        let at = from + i;
        from = at + local.len();
        let before = xml[..at].chars().last();
        let after = xml[from..].chars().next();
        if !matches!(before, Some('<' | ':')) || !matches!(after, Some('>' | ' ')) {
            continue;
        }
        // Must be an opening tag: find its `<` and make sure it is not `</`.
        let open = xml[..at].rfind('<')?;
        if xml[open..].starts_with("</") {
            continue;
        }
        let start = at + xml[at..].find('>')? + 1;
        let end = start + xml[start..].find("</")?;
        return Some(xml[start..end].trim());
    }
    None
}

/// Local name of the first element inside `Body`.
fn operation(xml: &str) -> Option<String> {
    let body = xml.find("Body>")?;
    let rest = &xml[body + 5..];
    let open = rest.find('<')?;
    let name: String = rest[open + 1..]
        .chars()
        .take_while(|c| !matches!(c, '>' | ' ' | '/'))
        .collect();
    Some(name.rsplit(':').next().unwrap_or(&name).to_owned())
}

/// Checks a WS-Security UsernameToken with PasswordDigest.
fn authorized(xml: &str, cam: &StubCamera) -> bool {
    let (Some(user), Some(digest), Some(nonce), Some(created)) = (
        tag(xml, "Username"),
        tag(xml, "Password"),
        tag(xml, "Nonce"),
        tag(xml, "Created"),
    ) else {
        return false;
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let Ok(nonce) = engine.decode(nonce) else {
        return false;
    };
    let mut h = sha1::Sha1::new();
    h.update(&nonce);
    h.update(created.as_bytes());
    h.update(cam.password.as_bytes());
    user == cam.user && engine.encode(h.finalize()) == digest
}

fn fill(template: &str, pairs: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in pairs {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

fn fixture(name: &str) -> Option<String> {
    std::fs::read_to_string(fixtures_dir().join(format!("{name}.xml"))).ok()
}

async fn soap(State(s): State<Arc<Shared>>, body: String) -> axum::response::Response {
    let xml = |status: StatusCode, text: String| {
        (
            status,
            [("content-type", "application/soap+xml; charset=utf-8")],
            text,
        )
            .into_response()
    };
    let op = operation(&body).unwrap_or_default();
    // ONVIF lets anyone read the clock, so clients can correct their timestamps.
    let ok = op == "GetSystemDateAndTime" || authorized(&body, &s.camera);
    let profile = tag(&body, "ProfileToken").map(str::to_owned);
    let preset = tag(&body, "PresetToken").map(str::to_owned);
    if let Ok(mut calls) = s.calls.lock() {
        calls.push(Call {
            operation: op.clone(),
            authorized: ok,
            profile: profile.clone(),
            preset: preset.clone(),
        });
    }
    if !ok {
        let fault = fixture("Fault-NotAuthorized").unwrap_or_default();
        return xml(StatusCode::BAD_REQUEST, fault);
    }
    let Some(template) = fixture(&op) else {
        let fault = fixture("Fault-ActionNotSupported").unwrap_or_default();
        return xml(StatusCode::INTERNAL_SERVER_ERROR, fault);
    };
    let cam = &s.camera;
    let t = OffsetDateTime::now_utc() + time::Duration::seconds(cam.clock_skew_s);
    let host = s.base.trim_start_matches("http://").to_owned();
    let host = host.split(':').next().unwrap_or("127.0.0.1").to_owned();
    let channel = match profile.as_deref() {
        Some("Profile_2") => "102",
        _ => "101",
    };
    let pairs = [
        ("year", t.year().to_string()),
        ("month", u8::from(t.month()).to_string()),
        ("day", t.day().to_string()),
        ("hour", t.hour().to_string()),
        ("local_hour", ((t.hour() + 8) % 24).to_string()),
        ("minute", t.minute().to_string()),
        ("second", t.second().to_string()),
        ("manufacturer", cam.manufacturer.clone()),
        ("model", cam.model.clone()),
        ("serial", cam.serial.clone()),
        ("base", s.base.clone()),
        ("host", host),
        ("channel", channel.to_owned()),
        ("profile", profile.unwrap_or_default()),
        ("token", preset.unwrap_or_else(|| "10".into())),
    ];
    xml(StatusCode::OK, fill(&template, &pairs))
}

async fn wsd(udp: tokio::net::UdpSocket, s: Arc<Shared>, uuid: String) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, from)) = udp.recv_from(&mut buf).await else {
            return;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        if operation(&text).as_deref() != Some("Probe") {
            continue;
        }
        let Some(template) = fixture("ProbeMatches") else {
            return;
        };
        let pairs = [
            ("reply_id", uuid::Uuid::new_v4().to_string()),
            (
                "relates_to",
                tag(&text, "MessageID").unwrap_or_default().to_owned(),
            ),
            ("endpoint", uuid.clone()),
            ("name", s.camera.name.replace(' ', "%20")),
            ("model", s.camera.model.clone()),
            ("xaddr", format!("{}/onvif/device_service", s.base)),
        ];
        let _ = udp.send_to(fill(&template, &pairs).as_bytes(), from).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_finds_the_operation_and_tokens_of_a_request() {
        let req = r#"<s:Envelope><s:Header><wsse:Security><wsse:UsernameToken><wsse:Username>admin</wsse:Username></wsse:UsernameToken></wsse:Security></s:Header><s:Body><trt:GetStreamUri><trt:ProfileToken>Profile_2</trt:ProfileToken></trt:GetStreamUri></s:Body></s:Envelope>"#;
        assert_eq!(operation(req).as_deref(), Some("GetStreamUri"));
        assert_eq!(tag(req, "ProfileToken"), Some("Profile_2"));
        assert_eq!(tag(req, "Username"), Some("admin"));
        assert!(!authorized(req, &StubCamera::new("a", "1")), "no digest");
    }
}
