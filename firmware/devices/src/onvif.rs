//! ONVIF IP cameras: discovery, configuration, clock check and PTZ presets.
//!
//! Wraps the `oxvif` client (see `docs/adr/0004-onvif-client.md` for why oxvif and not
//! the `onvif` crate). [`discover`] finds cameras by WS-Discovery: a multicast probe on
//! the LAN and/or unicast probes to given addresses. [`configure`] reads a camera's
//! identity, media profiles and stream URIs and checks its clock, producing a
//! [`CameraConfig`] to store in the device configuration. [`Camera`] moves to and saves
//! PTZ presets.
//!
//! Design: unicast probes are sent by this module rather than through
//! `oxvif::discovery::probe_unicast`, which always targets port 3702; tests run the
//! WS-Discovery stub on a free port, and some sites put cameras behind port maps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use oxvif::soap::{SoapError, XmlNode};
use oxvif::transport::TransportError;
use oxvif::{OnvifClient, OnvifError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

/// User name and password for a camera.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// Why a camera operation failed. Each variant names the camera's device URL.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// Nothing answers at the address (connection refused, timeout, DNS).
    #[error("camera {url}: unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The camera refused the user name or password.
    #[error("camera {url}: credentials refused for user {user:?} ({detail})")]
    Unauthorized {
        url: String,
        user: String,
        detail: String,
    },
    /// The camera does not offer a service this needs.
    #[error("camera {url}: no {service} service")]
    MissingService { url: String, service: &'static str },
    /// Anything else the camera or the exchange got wrong.
    #[error("camera {url}: {operation}: {source}")]
    Protocol {
        url: String,
        operation: &'static str,
        source: Box<OnvifError>,
    },
    /// The discovery socket failed.
    #[error("WS-Discovery: {0}")]
    Discovery(#[source] std::io::Error),
}

fn classify(url: &str, user: &str, operation: &'static str, e: OnvifError) -> CameraError {
    match &e {
        OnvifError::Transport(TransportError::Http(re))
            if re.is_connect() || re.is_timeout() || re.is_request() =>
        {
            CameraError::Unreachable {
                url: url.to_owned(),
                reason: error_chain(re),
            }
        }
        OnvifError::Transport(TransportError::HttpStatus { status: 401, body }) => {
            CameraError::Unauthorized {
                url: url.to_owned(),
                user: user.to_owned(),
                detail: format!("HTTP 401 {}", body.chars().take(80).collect::<String>()),
            }
        }
        OnvifError::Soap(SoapError::Fault {
            code,
            reason,
            subcode,
            ..
        }) if subcode
            .as_deref()
            .is_some_and(|s| s.ends_with("NotAuthorized"))
            || reason.to_ascii_lowercase().contains("not authorized") =>
        {
            CameraError::Unauthorized {
                url: url.to_owned(),
                user: user.to_owned(),
                detail: format!(
                    "SOAP fault {code} {}: {reason}",
                    subcode.as_deref().unwrap_or("")
                ),
            }
        }
        _ => CameraError::Protocol {
            url: url.to_owned(),
            operation,
            source: Box::new(e),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

/// A camera that answered a WS-Discovery probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// Stable endpoint id (`urn:uuid:...`).
    pub endpoint: String,
    /// Device service URLs.
    pub xaddrs: Vec<String>,
    /// ONVIF scopes (`onvif://www.onvif.org/name/...`).
    pub scopes: Vec<String>,
}

impl Discovered {
    /// The `name` scope, if the camera advertises one.
    pub fn name(&self) -> Option<String> {
        self.scopes
            .iter()
            .find_map(|s| s.strip_prefix("onvif://www.onvif.org/name/"))
            .map(|n| n.replace("%20", " "))
    }
}

/// The WS-Discovery `Probe` for network video transmitters.
pub fn probe_message(message_id: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope""#,
            r#" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing""#,
            r#" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery""#,
            r#" xmlns:dn="http://www.onvif.org/ver10/network/wsdl">"#,
            r#"<s:Header>"#,
            r#"<a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>"#,
            r#"<a:MessageID>urn:uuid:{}</a:MessageID>"#,
            r#"<a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>"#,
            r#"<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>"#,
            r#"</s:Header>"#,
            r#"<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"#,
            r#"</s:Envelope>"#
        ),
        message_id
    )
}

/// Parses a `ProbeMatches` datagram; malformed ones yield nothing.
pub fn parse_probe_matches(datagram: &[u8]) -> Vec<Discovered> {
    let Ok(text) = std::str::from_utf8(datagram) else {
        return Vec::new();
    };
    let Ok(root) = XmlNode::parse(text) else {
        return Vec::new();
    };
    let body = root.child("Body").unwrap_or(&root);
    let Some(matches) = body.child("ProbeMatches") else {
        return Vec::new();
    };
    let words = |n: Option<&XmlNode>| -> Vec<String> {
        n.map(|n| n.text().split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    matches
        .children_named("ProbeMatch")
        .filter_map(|m| {
            let endpoint = m
                .path(&["EndpointReference", "Address"])?
                .text()
                .trim()
                .to_owned();
            let xaddrs = words(m.child("XAddrs"));
            (!endpoint.is_empty() && !xaddrs.is_empty()).then(|| Discovered {
                endpoint,
                xaddrs,
                scopes: words(m.child("Scopes")),
            })
        })
        .collect()
}

/// Sends a WS-Discovery probe to each of `targets` (unicast, any port) and, when
/// `multicast` is set, to the ONVIF multicast group on every interface; collects the
/// answers for `wait`. Cameras are listed once each, by endpoint, sorted.
pub async fn discover(
    targets: &[SocketAddr],
    multicast: bool,
    wait: Duration,
) -> Result<Vec<Discovered>, CameraError> {
    let mut found: Vec<Discovered> = Vec::new();
    let multicast_task =
        multicast.then(|| tokio::spawn(async move { oxvif::discovery::probe(wait).await }));
    if !targets.is_empty() {
        let sock = UdpSocket::bind("0.0.0.0:0")
            .await
            .map_err(CameraError::Discovery)?;
        let message_id = format!("gavel-{:016x}", probe_id());
        let probe = probe_message(&message_id);
        for t in targets {
            if let Err(e) = sock.send_to(probe.as_bytes(), t).await {
                warn!(target = %t, error = %e, "WS-Discovery probe not sent");
            }
        }
        let mut buf = vec![0u8; 65_535];
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(r) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            match r {
                Ok((n, from)) => {
                    let matches = parse_probe_matches(&buf[..n]);
                    debug!(%from, matches = matches.len(), "WS-Discovery answer");
                    found.extend(matches);
                }
                Err(e) => debug!(error = %e, "WS-Discovery receive error"),
            }
        }
    }
    if let Some(task) = multicast_task
        && let Ok(devices) = task.await
    {
        found.extend(devices.into_iter().map(|d| Discovered {
            endpoint: d.endpoint,
            xaddrs: d.xaddrs,
            scopes: d.scopes,
        }));
    }
    found.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
    found.dedup_by(|a, b| a.endpoint == b.endpoint);
    Ok(found)
}

fn probe_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// One media profile of a camera with its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamProfile {
    /// Profile token (pass to PTZ calls).
    pub token: String,
    /// Profile name (`mainStream`, `subStream`...).
    pub name: String,
    /// RTSP URI of the profile's stream.
    pub uri: String,
    /// Whether the profile has a PTZ configuration.
    pub ptz: bool,
}

/// The camera's clock compared with ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockCheck {
    /// The camera's UTC clock when asked, if it reported one.
    #[serde(with = "time::serde::rfc3339::option")]
    pub camera_utc: Option<OffsetDateTime>,
    /// Camera minus local clock, in seconds (0 when the camera reports no time).
    pub offset_s: i64,
    /// Whether the offset is within the tolerance: recordings from this camera carry
    /// timestamps a court can rely on.
    pub in_tolerance: bool,
}

/// What the device configuration stores about a camera.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraConfig {
    /// Device service URL.
    pub device_url: String,
    pub manufacturer: String,
    pub model: String,
    pub firmware: String,
    pub serial: String,
    /// Media profiles with stream URIs, in the camera's order (main stream first).
    pub profiles: Vec<StreamProfile>,
    /// PTZ service URL, when the camera has one.
    pub ptz_url: Option<String>,
    pub clock: ClockCheck,
}

fn client(url: &str, creds: Option<&Credentials>, offset_s: i64) -> OnvifClient {
    let c = OnvifClient::new(url);
    match creds {
        Some(c2) => c
            .with_credentials(c2.user.clone(), c2.password.clone())
            .with_utc_offset(offset_s),
        None => c,
    }
}

/// Reads a camera's identity, profiles and stream URIs and checks its clock against
/// `now` (our UTC clock) with `tolerance`.
///
/// The clock is read first and without credentials (ONVIF allows it), so the WS-Security
/// timestamps of later calls can be corrected for a camera whose clock is off.
pub async fn configure(
    device_url: &str,
    creds: &Credentials,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<CameraConfig, CameraError> {
    let user = creds.user.as_str();
    let err = |op| move |e| classify(device_url, user, op, e);
    let dt = client(device_url, None, 0)
        .get_system_date_and_time()
        .await
        .map_err(err("GetSystemDateAndTime"))?;
    let camera_utc = dt
        .utc_unix
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
    let offset_s = camera_utc.map_or(0, |c| (c - now).whole_seconds());
    let in_tolerance = camera_utc.is_some() && offset_s.unsigned_abs() <= tolerance.as_secs();
    if !in_tolerance {
        warn!(camera = device_url, offset_s, "camera clock is off");
    }
    let c = client(device_url, Some(creds), offset_s);
    let info = c
        .get_device_info()
        .await
        .map_err(err("GetDeviceInformation"))?;
    let caps = c.get_capabilities().await.map_err(err("GetCapabilities"))?;
    let media = caps.media.url.clone().ok_or(CameraError::MissingService {
        url: device_url.to_owned(),
        service: "media",
    })?;
    let mut profiles = Vec::new();
    for p in c.get_profiles(&media).await.map_err(err("GetProfiles"))? {
        let uri = c
            .get_stream_uri(&media, &p.token)
            .await
            .map_err(err("GetStreamUri"))?;
        profiles.push(StreamProfile {
            ptz: p.ptz_config_token.is_some(),
            token: p.token,
            name: p.name,
            uri: uri.uri,
        });
    }
    info!(camera = device_url, model = %info.model, profiles = profiles.len(), offset_s, "camera configured");
    Ok(CameraConfig {
        device_url: device_url.to_owned(),
        manufacturer: info.manufacturer,
        model: info.model,
        firmware: info.firmware_version,
        serial: info.serial_number,
        profiles,
        ptz_url: caps.ptz.url,
        clock: ClockCheck {
            camera_utc,
            offset_s,
            in_tolerance,
        },
    })
}

/// PTZ control of a configured camera through one media profile.
#[derive(Clone)]
pub struct Camera {
    client: Arc<OnvifClient>,
    url: String,
    user: String,
    ptz_url: String,
    profile: String,
}

impl Camera {
    /// PTZ through `profile_token` of the camera in `config`.
    pub fn new(
        config: &CameraConfig,
        creds: &Credentials,
        profile_token: &str,
    ) -> Result<Self, CameraError> {
        let ptz_url = config.ptz_url.clone().ok_or(CameraError::MissingService {
            url: config.device_url.clone(),
            service: "PTZ",
        })?;
        Ok(Self {
            client: Arc::new(client(
                &config.device_url,
                Some(creds),
                config.clock.offset_s,
            )),
            url: config.device_url.clone(),
            user: creds.user.clone(),
            ptz_url,
            profile: profile_token.to_owned(),
        })
    }

    /// Moves to preset `token`.
    pub async fn goto_preset(&self, token: &str) -> Result<(), CameraError> {
        self.client
            .ptz_goto_preset(&self.ptz_url, &self.profile, token)
            .await
            .map_err(|e| classify(&self.url, &self.user, "GotoPreset", e))
    }

    /// Saves the current position as preset `name` (overwriting `token` when given);
    /// returns the preset's token.
    pub async fn set_preset(&self, name: &str, token: Option<&str>) -> Result<String, CameraError> {
        self.client
            .ptz_set_preset(&self.ptz_url, &self.profile, Some(name), token)
            .await
            .map_err(|e| classify(&self.url, &self.user, "SetPreset", e))
    }

    /// The camera's presets as `(token, name)`.
    pub async fn presets(&self) -> Result<Vec<(String, String)>, CameraError> {
        let list = self
            .client
            .ptz_get_presets(&self.ptz_url, &self.profile)
            .await
            .map_err(|e| classify(&self.url, &self.user, "GetPresets", e))?;
        Ok(list.into_iter().map(|p| (p.token, p.name)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATCHES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
  xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
  xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery">
 <SOAP-ENV:Header><wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action></SOAP-ENV:Header>
 <SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch>
  <wsa:EndpointReference><wsa:Address>urn:uuid:cam-a</wsa:Address></wsa:EndpointReference>
  <d:Types>dn:NetworkVideoTransmitter</d:Types>
  <d:Scopes>onvif://www.onvif.org/name/Bench%20Cam onvif://www.onvif.org/type/ptz</d:Scopes>
  <d:XAddrs>http://127.0.0.1:8080/onvif/device_service</d:XAddrs>
  <d:MetadataVersion>1</d:MetadataVersion>
 </d:ProbeMatch></d:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;

    #[test]
    fn a_probe_match_yields_endpoint_address_and_name() {
        let found = parse_probe_matches(MATCHES.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].endpoint, "urn:uuid:cam-a");
        assert_eq!(
            found[0].xaddrs,
            ["http://127.0.0.1:8080/onvif/device_service"]
        );
        assert_eq!(found[0].name().as_deref(), Some("Bench Cam"));
    }

    #[test]
    fn malformed_discovery_datagrams_yield_nothing() {
        assert!(parse_probe_matches(b"\xff\xfe garbage").is_empty());
        assert!(parse_probe_matches(b"<a><b></a>").is_empty());
        assert!(parse_probe_matches(b"<Envelope><Body/></Envelope>").is_empty());
    }

    #[test]
    fn the_probe_asks_for_network_video_transmitters() {
        let p = probe_message("x");
        assert!(p.contains("dn:NetworkVideoTransmitter"));
        assert!(p.contains("urn:uuid:x"));
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            user: "admin".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn a_camera_on_a_closed_port_is_reported_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let url = format!("http://127.0.0.1:{port}/onvif/device_service");
        let creds = Credentials {
            user: "admin".into(),
            password: "x".into(),
        };
        let err = configure(
            &url,
            &creds,
            OffsetDateTime::now_utc(),
            Duration::from_secs(5),
        )
        .await
        .expect_err("closed port");
        assert!(matches!(err, CameraError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains(&url), "{err}");
    }
}
