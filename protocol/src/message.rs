//! Messages on the wire: JSON objects that all carry `"v": 1`.
//!
//! Design: fields may be added within a version (decoders ignore unknown fields); a
//! removed or retyped field is a new version. Enumerations are internally tagged
//! (`"type"`, `"status"`) so a reader can tell variants apart without context.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::topic::Channel;

/// The message version this build writes and reads.
pub const PROTOCOL_VERSION: u32 = 1;

/// A message type bound to the channel it travels on.
pub trait Message: Serialize + serde::de::DeserializeOwned {
    /// The channel (last topic level) of this message type.
    const CHANNEL: Channel;

    /// Checks limits serde cannot express (lengths, ranges, finite numbers).
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// A field that passed type checks but holds an unacceptable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted path of the field, e.g. `volumes[2].mount`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Invalid {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Longest free-text field accepted (names, hostnames, details).
pub const MAX_TEXT: usize = 256;
/// Longest list accepted (volumes, capabilities, sensors).
pub const MAX_ITEMS: usize = 64;

/// Longest transcript line accepted (UTF-8 bytes): whisper decodes at most 30 s of speech
/// per line, about 300 Chinese characters or 100 English words at the fastest speakers;
/// the rest is headroom. Longer text is a recogniser fault, cut by the device.
pub const MAX_LINE_TEXT: usize = 2048;

/// Longest PEM text (a CSR or certificate) accepted.
pub const MAX_PEM: usize = 8 * 1024;

fn pem(field: &str, value: &str, label: &str) -> Result<(), Invalid> {
    if value.len() > MAX_PEM {
        return Err(Invalid::new(
            field,
            format!("{} bytes long; at most {MAX_PEM}", value.len()),
        ));
    }
    if !value
        .trim_start()
        .starts_with(&format!("-----BEGIN {label}-----"))
    {
        return Err(Invalid::new(field, format!("not a PEM {label}")));
    }
    Ok(())
}

fn text(field: &str, value: &str) -> Result<(), Invalid> {
    if value.len() > MAX_TEXT {
        return Err(Invalid::new(
            field,
            format!("{} bytes long; at most {MAX_TEXT}", value.len()),
        ));
    }
    Ok(())
}

/// A URL of one of `schemes`, without spaces, at most `MAX_TEXT` bytes.
fn check_url_scheme(field: &str, value: &str, schemes: &[&str]) -> Result<(), Invalid> {
    text(field, value)?;
    let scheme_ok = value
        .split_once("://")
        .is_some_and(|(scheme, rest)| schemes.contains(&scheme) && !rest.is_empty());
    if !scheme_ok || value.contains(char::is_whitespace) {
        return Err(Invalid::new(
            field,
            format!("{value:?} is not a {} URL", schemes.join("/")),
        ));
    }
    Ok(())
}

fn items<T>(field: &str, list: &[T]) -> Result<(), Invalid> {
    if list.len() > MAX_ITEMS {
        return Err(Invalid::new(
            field,
            format!("{} items; at most {MAX_ITEMS}", list.len()),
        ));
    }
    Ok(())
}

fn hex64(field: &str, value: &str) -> Result<(), Invalid> {
    if value.len() != 64
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Invalid::new(field, "not a lowercase hex SHA-256"));
    }
    Ok(())
}

fn hex_n(field: &str, value: &str, len: usize, what: &str) -> Result<(), Invalid> {
    if value.len() != len
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Invalid::new(field, what));
    }
    Ok(())
}

fn finite(field: &str, value: f64) -> Result<(), Invalid> {
    if !value.is_finite() {
        return Err(Invalid::new(field, "not a finite number"));
    }
    Ok(())
}

/// A hearing id names a folder on the device: 1-64 of `A-Z a-z 0-9 - _ .`, not starting
/// with a dot.
pub fn check_hearing_id(value: &str) -> Result<(), Invalid> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(Invalid::new(
            "hearing_id",
            "1-64 of A-Z a-z 0-9 - _ . (not starting with a dot)",
        ));
    }
    Ok(())
}

/// Checks a queue ticket number: an upper-case letter then 1-6 digits (`A1007`).
pub fn check_ticket_number(value: &str) -> Result<(), Invalid> {
    let mut b = value.bytes();
    let ok = b.next().is_some_and(|c| c.is_ascii_uppercase())
        && (2..=7).contains(&value.len())
        && b.all(|c| c.is_ascii_digit());
    if !ok {
        return Err(Invalid::new(
            "number",
            format!("{value:?} is not an upper-case letter and 1-6 digits"),
        ));
    }
    Ok(())
}

/// Checks a service-hall service name: 1-32 of `a-z 0-9 - _`.
pub fn check_service(value: &str) -> Result<(), Invalid> {
    let ok = (1..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
    if !ok {
        return Err(Invalid::new("service", "1-32 of a-z 0-9 - _"));
    }
    Ok(())
}

/// Checks a service-hall window name: 1-16 of `A-Z a-z 0-9 -`.
pub fn check_window(value: &str) -> Result<(), Invalid> {
    let ok = (1..=16).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(Invalid::new("window", "1-16 of A-Z a-z 0-9 -"));
    }
    Ok(())
}

/// Checks a calendar day written `YYYY-MM-DD`.
pub fn check_day(field: &str, value: &str) -> Result<(), Invalid> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value, &format)
        .map(|_| ())
        .map_err(|_| Invalid::new(field, format!("{value:?} is not a day YYYY-MM-DD")))
}

/// Where a device is installed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Court (or tribunal) id, e.g. `hz-intermediate`.
    pub court: String,
    /// Room id within the court, e.g. `room-101`.
    pub room: String,
}

/// State of one capability of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapabilityState {
    /// Configured and running.
    Running,
    /// Configured but turned off in the profile or config.
    Disabled,
    /// Named by the profile but not provided by this firmware or hardware.
    Unavailable,
    /// Configured, tried, and failed; the supervisor may retry.
    Failed,
}

/// One capability as the device reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    /// Capability name from the profile (`record`, `stream`, `transcribe`, `health`...).
    pub name: String,
    /// Its state.
    pub state: CapabilityState,
    /// Why it is in that state, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// First message of every MQTT session: who the device is and what it runs.
/// Retained, so a controller that starts later still learns every device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Birth {
    pub v: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Random id of this boot of the agent process.
    pub boot_id: String,
    /// Birth/death sequence: counts MQTT sessions within a boot. The last will carries the
    /// same number, so a stale will cannot mark a newer session offline.
    pub bd_seq: u64,
    /// First event sequence number of this session.
    pub seq_base: u64,
    /// Device profile name (`courtroom-terminal`, `ip-camera`...).
    pub profile: String,
    /// Firmware (agent) version.
    pub firmware_version: String,
    /// Host name of the device.
    pub hostname: String,
    /// Where the device is installed, when provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Capabilities named by the profile with their state.
    pub capabilities: Vec<Capability>,
    /// MQTT keepalive in seconds: the broker declares the device dead after 1.5x this.
    pub keepalive_s: u16,
    /// Interval between health messages in seconds.
    pub health_interval_s: u32,
    /// Free tags set when the device was provisioned (`pilot`, `building-a`): OTA
    /// campaigns can target them. Added within v1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Where the device re-serves its sources live, when it streams. Added within v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveEndpoints>,
}

/// A streaming device's live endpoints: every source at `<rtsp>/<source>/main` and
/// `<rtsp>/<source>/sub` (RTSP, per-user credentials), and its sub-stream as HLS at
/// `<hls>/<source>/index.m3u8` (HTTP Basic, the same accounts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEndpoints {
    /// Base URL of the RTSP server (`rtsp://10.1.2.3:8554`).
    pub rtsp: String,
    /// Base URL of the HLS server (`http://10.1.2.3:8555/live`), if it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls: Option<String>,
    /// The sources served.
    pub sources: Vec<String>,
}

impl LiveEndpoints {
    /// The content type of a file the HLS endpoint serves (`index.m3u8`, `*.ts`), or
    /// `None` for any other name, which also refuses names that could leave the source's
    /// folder: the device's HLS server and the controller's relay both serve only these.
    pub fn hls_content_type(file: &str) -> Option<&'static str> {
        let plain = !file.is_empty()
            && !file.starts_with('.')
            && file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        match plain {
            true if file.ends_with(".m3u8") => Some("application/vnd.apple.mpegurl"),
            true if file.ends_with(".ts") => Some("video/mp2t"),
            _ => None,
        }
    }
}

/// Most tags a device carries.
pub const MAX_TAGS: usize = 16;

/// Checks a device tag: 1-32 of `a-z 0-9 - _ .`.
pub fn check_tag(field: &str, tag: &str) -> Result<(), Invalid> {
    let ok = !tag.is_empty()
        && tag.len() <= 32
        && tag.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(field, "1-32 of a-z 0-9 - _ ."))
    }
}

impl Message for Birth {
    const CHANNEL: Channel = Channel::Birth;
    fn validate(&self) -> Result<(), Invalid> {
        text("boot_id", &self.boot_id)?;
        text("profile", &self.profile)?;
        text("firmware_version", &self.firmware_version)?;
        text("hostname", &self.hostname)?;
        if let Some(p) = &self.placement {
            text("placement.court", &p.court)?;
            text("placement.room", &p.room)?;
        }
        items("capabilities", &self.capabilities)?;
        for (i, c) in self.capabilities.iter().enumerate() {
            text(&format!("capabilities[{i}].name"), &c.name)?;
            if let Some(d) = &c.detail {
                text(&format!("capabilities[{i}].detail"), d)?;
            }
        }
        if self.keepalive_s == 0 {
            return Err(Invalid::new("keepalive_s", "must be at least 1"));
        }
        if self.health_interval_s == 0 {
            return Err(Invalid::new("health_interval_s", "must be at least 1"));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(Invalid::new("tags", "more than 16"));
        }
        for (i, t) in self.tags.iter().enumerate() {
            check_tag(&format!("tags[{i}]"), t)?;
        }
        if let Some(live) = &self.live {
            check_url_scheme("live.rtsp", &live.rtsp, &["rtsp", "rtsps"])?;
            if let Some(hls) = &live.hls {
                check_url_scheme("live.hls", hls, &["http", "https"])?;
            }
            items("live.sources", &live.sources)?;
            for (i, source) in live.sources.iter().enumerate() {
                text(&format!("live.sources[{i}]"), source)?;
                if source.is_empty() || source.contains('/') {
                    return Err(Invalid::new(
                        format!("live.sources[{i}]"),
                        "empty or contains '/'",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether the device is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Offline,
}

/// Why a device went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineReason {
    /// The broker lost the connection and published the last will.
    ConnectionLost,
    /// The agent stopped cleanly.
    Shutdown,
    /// The agent is restarting on command.
    Restart,
}

/// Retained availability. `online` after each birth; `offline` from the last will (the
/// death message) or from a clean shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub v: u32,
    pub state: Presence,
    pub boot_id: String,
    pub bd_seq: u64,
    /// Why the device is offline; absent when online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<OfflineReason>,
    /// When the device wrote the message; absent in the last will, whose payload is fixed
    /// at connect time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<OffsetDateTime>,
}

impl Status {
    /// The retained `online` status published right after a birth.
    pub fn online(boot_id: &str, bd_seq: u64, ts: OffsetDateTime) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            state: Presence::Online,
            boot_id: boot_id.to_owned(),
            bd_seq,
            reason: None,
            ts: Some(ts),
        }
    }

    /// The death message registered as MQTT last will at connect time.
    pub fn death(boot_id: &str, bd_seq: u64) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            state: Presence::Offline,
            boot_id: boot_id.to_owned(),
            bd_seq,
            reason: Some(OfflineReason::ConnectionLost),
            ts: None,
        }
    }

    /// The offline status an agent publishes itself before it disconnects.
    pub fn going_offline(
        boot_id: &str,
        bd_seq: u64,
        reason: OfflineReason,
        ts: OffsetDateTime,
    ) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            state: Presence::Offline,
            boot_id: boot_id.to_owned(),
            bd_seq,
            reason: Some(reason),
            ts: Some(ts),
        }
    }
}

impl Message for Status {
    const CHANNEL: Channel = Channel::Status;
    fn validate(&self) -> Result<(), Invalid> {
        text("boot_id", &self.boot_id)?;
        if self.state == Presence::Online && self.reason.is_some() {
            return Err(Invalid::new("reason", "set on an online status"));
        }
        Ok(())
    }
}

/// Memory use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub total_bytes: u64,
    pub used_bytes: u64,
}

/// A mounted volume and its free space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub mount: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// A temperature reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    pub sensor: String,
    pub celsius: f64,
}

/// A relative-humidity reading (machine-room sensors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Humidity {
    pub sensor: String,
    /// Relative humidity, 0-100 %.
    pub percent: f64,
}

/// The device's view of its clock discipline (kernel NTP state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clock {
    /// The kernel reports the clock as synchronised (an NTP daemon disciplines it).
    pub synced: bool,
    /// Estimated offset from the reference in milliseconds, when synchronised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<f64>,
    /// Kernel's maximum error estimate in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_ms: Option<f64>,
}

/// Periodic health telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub v: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Host uptime in seconds.
    pub uptime_s: u64,
    /// Agent process uptime in seconds.
    pub agent_uptime_s: u64,
    /// Whole-host CPU use over the last interval, 0-100.
    pub cpu_percent: f64,
    /// One-minute load average.
    pub load1: f64,
    pub memory: Memory,
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub temperatures: Vec<Temperature>,
    /// Humidity sensors (added within v1: absent when the device has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub humidity: Vec<Humidity>,
    pub clock: Clock,
    /// The event outbox, on devices that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxHealth>,
}

/// Store-and-forward state of the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxHealth {
    /// Events stored and not yet confirmed by the controller.
    pub depth: u64,
    /// Age of the oldest of them, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_s: Option<u64>,
    /// Health messages dropped because the link was down (telemetry is never queued).
    pub dropped_telemetry: u64,
}

/// The controller's confirmation that it has stored every event of a boot up to
/// `through_seq`: the device may delete them. Retained on the device's `receipt` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub v: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    pub boot_id: String,
    pub through_seq: u64,
}

impl Message for Receipt {
    const CHANNEL: Channel = Channel::Receipt;
    fn validate(&self) -> Result<(), Invalid> {
        text("boot_id", &self.boot_id)
    }
}

impl Message for Health {
    const CHANNEL: Channel = Channel::Health;
    fn validate(&self) -> Result<(), Invalid> {
        finite("cpu_percent", self.cpu_percent)?;
        if !(0.0..=100.0).contains(&self.cpu_percent) {
            return Err(Invalid::new("cpu_percent", "outside 0-100"));
        }
        finite("load1", self.load1)?;
        items("volumes", &self.volumes)?;
        for (i, v) in self.volumes.iter().enumerate() {
            text(&format!("volumes[{i}].mount"), &v.mount)?;
            if v.free_bytes > v.total_bytes {
                return Err(Invalid::new(
                    format!("volumes[{i}].free_bytes"),
                    "larger than total_bytes",
                ));
            }
        }
        items("temperatures", &self.temperatures)?;
        for (i, t) in self.temperatures.iter().enumerate() {
            text(&format!("temperatures[{i}].sensor"), &t.sensor)?;
            finite(&format!("temperatures[{i}].celsius"), t.celsius)?;
        }
        items("humidity", &self.humidity)?;
        for (i, h) in self.humidity.iter().enumerate() {
            text(&format!("humidity[{i}].sensor"), &h.sensor)?;
            finite(&format!("humidity[{i}].percent"), h.percent)?;
            if !(0.0..=100.0).contains(&h.percent) {
                return Err(Invalid::new(
                    format!("humidity[{i}].percent"),
                    "outside 0-100",
                ));
            }
        }
        if let Some(o) = self.clock.offset_ms {
            finite("clock.offset_ms", o)?;
        }
        if let Some(e) = self.clock.max_error_ms {
            finite("clock.max_error_ms", e)?;
        }
        Ok(())
    }
}

/// Phase of an event that spans time (like a recording): it starts, may update, and ends.
/// Instant events are sent as `end` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Start,
    Update,
    End,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// The agent process started (`start`) or is stopping (`end`).
    Agent {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A capability changed state.
    Capability {
        capability: String,
        state: CapabilityState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A synthetic event from the link self-test and soak runs (`gavel-agent --probe-rate`).
    Probe {
        /// Counter within the boot.
        n: u64,
    },
    /// An over-the-air update step (added within v1).
    Ota {
        /// Campaign id, when the update belongs to one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        campaign: Option<String>,
        /// Bundle version.
        version: String,
        /// The step reached.
        stage: OtaStage,
        /// Why (errors, rollback reasons, deferral reasons), for people.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A hearing's recording changed state: `start` when it starts, `update` on every
    /// transition (degraded, recovered), `end` when it has stopped. Added within v1.
    Recording {
        hearing_id: String,
        state: RecordingState,
        /// Sources being recorded.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<String>,
        /// Sources currently lost (recording continues with the others).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lost: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A recording segment was closed, hashed and chained (sent as `end`). Added within v1.
    Segment {
        hearing_id: String,
        source: String,
        /// Position in the hearing's hash chain, from 0.
        index: u64,
        /// File name relative to the hearing folder.
        file: String,
        /// SHA-256 of the file, lowercase hex.
        sha256: String,
        bytes: u64,
        /// Start on the hearing's timeline (nanoseconds after the hearing started).
        offset_ns: u64,
        duration_ns: u64,
        /// Wall-clock start of the segment.
        #[serde(with = "time::serde::rfc3339")]
        wall_start: OffsetDateTime,
        /// Chain link after this segment, lowercase hex.
        chain: String,
        /// Start in the recording pipeline's stream time (ns). With `recovered`, the last
        /// field of the chained entry: the controller recomputes the chain from segment
        /// events. Absent from agents before it was added (their chain is not checked).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_start_ns: Option<u64>,
        /// Closed by crash recovery rather than by the recorder.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recovered: bool,
    },
    /// A hearing's recording is finished and its manifest signed (sent as `end`, after the
    /// last segment). The device's signature over the chain head and the manifest's
    /// SHA-256, in the `gavel-seal/1` text form (`gavel-evidence::Seal`). Added within v1.
    Sealed {
        hearing_id: String,
        /// Segments in the hearing's chain.
        segments: u64,
        /// The chain's last link, lowercase hex.
        chain_head: String,
        /// SHA-256 of the signed `manifest.json`, lowercase hex.
        manifest_sha256: String,
        /// The device's evidence key (ed25519 public key), lowercase hex.
        public_key: String,
        /// ed25519 signature of the seal text, lowercase hex.
        signature: String,
    },
    /// Someone (a clerk, the controller, the device's schedule) asked to start or stop
    /// recording a hearing: the audit trail of who, why and through what (sent as `end`,
    /// with the outcome). Added within v1.
    RecordingRequest {
        hearing_id: String,
        action: RecordingAction,
        /// Who asked: a user name, or `schedule` for the device's own schedule.
        by: String,
        /// Why, as given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Through what the request arrived.
        via: RequestOrigin,
        /// Why the request failed; absent when it was carried out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The device asks for a new certificate before its own expires: a signing request for
    /// a key it just made (sent as `end`). The controller answers with an
    /// `install_certificate` command. Added within v1.
    CertRenewal {
        /// PEM certificate signing request.
        csr: String,
        /// When the current certificate expires.
        #[serde(with = "time::serde::rfc3339")]
        current_not_after: OffsetDateTime,
    },
    /// A source of a recording was lost (`start`) or came back (`end`, with the gap's span).
    /// Added within v1.
    SourceLost {
        hearing_id: String,
        source: String,
        /// When the source's last data arrived.
        #[serde(with = "time::serde::rfc3339")]
        lost_at: OffsetDateTime,
        /// When recording of the source resumed; absent while lost.
        #[serde(
            default,
            with = "time::serde::rfc3339::option",
            skip_serializing_if = "Option::is_none"
        )]
        recovered_at: Option<OffsetDateTime>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A service-hall kiosk issued (and printed) a queue ticket (sent as `end`; the event
    /// id is `ticket-<day>-<number>`, so a ticket sent again is recognised). Issued the
    /// same way whether or not the controller is reachable. Added within v1.
    Ticket {
        /// Ticket number, unique per court and day: service letter, kiosk digit, sequence
        /// (`A1007`).
        number: String,
        /// Service the ticket is for (`filing`, `consultation`, `payment`, `mediation`).
        service: String,
        /// The court's local day the number belongs to, `YYYY-MM-DD`.
        day: String,
        /// When the kiosk issued it.
        #[serde(with = "time::serde::rfc3339")]
        issued: OffsetDateTime,
    },
    /// A hearing patrol finding (庭审智能巡查): `start` when an analyzer's condition has
    /// held for its onset time (with a snapshot), `end` when it has cleared (with
    /// `ended_at`); an instant finding (a disturbance) is sent as `end` only. The event id
    /// is shared by both. Added within v1.
    Finding {
        /// What was found.
        finding: crate::finding::FindingKind,
        /// The video or audio source it was found on.
        source: String,
        /// The seat concerned (microphone channel, presence zone), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seat: Option<String>,
        severity: crate::finding::Severity,
        /// When the condition began.
        #[serde(with = "time::serde::rfc3339")]
        started_at: OffsetDateTime,
        /// When it cleared; absent while it holds.
        #[serde(
            default,
            with = "time::serde::rfc3339::option",
            skip_serializing_if = "Option::is_none"
        )]
        ended_at: Option<OffsetDateTime>,
        /// The picture when it was found (video and presence findings).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<crate::finding::Snapshot>,
        /// The hearing being recorded and the offset on its timeline, when one was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recording: Option<crate::finding::RecordingLink>,
        /// Measured figures, for people (`sharpness 0.03 < 0.12`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The recordings volume's storage condition (the storage policy, `gavel-record::
    /// retention`): `start` when raised, `end` when cleared. `disk_full_forecast`: at the
    /// current write rate the volume fills within the policy's horizon;
    /// `recording_at_risk`: free space is below the low watermark and nothing can be
    /// evicted (every segment left is un-archived or under legal hold), recording goes on.
    /// Added within v1.
    Storage {
        alarm: StorageAlarm,
        /// Free bytes on the recordings volume (after the evictions decided with it).
        free_bytes: u64,
        /// Forecast seconds until the volume is full, when it is shrinking.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds_left: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// One line of a hearing's live transcript (庭审转写), heard on one seat's microphone:
    /// `update` while the line is partial (its text may still change), `end` once final.
    /// The partial and final versions of a line share the event id
    /// (`tr-<hearing>-<seat>-<line>`), so the final one replaces the partials. Added
    /// within v1.
    Transcript {
        hearing_id: String,
        /// The speaker's seat from the device profile's seat map (`judge`, `clerk`,
        /// `plaintiff`, `defendant`, `witness`).
        seat: String,
        /// The audio source (and channel) the line was heard on, as the recorder names it.
        source: String,
        /// Line number within the hearing and seat, from 0.
        line: u64,
        /// Start on the hearing's recording timeline (nanoseconds after it started).
        offset_ns: u64,
        duration_ns: u64,
        /// The recognised text (Mandarin in Simplified characters).
        text: String,
        /// Language of the text (`en`, `zh`).
        language: String,
        /// The model that produced it (`base`, `tiny.en`).
        model: String,
        /// Version of the court's legal vocabulary in effect, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vocabulary: Option<String>,
        /// Mean token probability, 0 to 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confidence: Option<f32>,
    },
}

impl EventBody {
    /// The hearing an event belongs to (recording, segment, seal, source lost).
    pub fn hearing_id(&self) -> Option<&str> {
        match self {
            EventBody::Recording { hearing_id, .. }
            | EventBody::Segment { hearing_id, .. }
            | EventBody::Sealed { hearing_id, .. }
            | EventBody::RecordingRequest { hearing_id, .. }
            | EventBody::SourceLost { hearing_id, .. }
            | EventBody::Transcript { hearing_id, .. } => Some(hearing_id),
            EventBody::Finding { recording, .. } => {
                recording.as_ref().map(|r| r.hearing_id.as_str())
            }
            EventBody::Agent { .. }
            | EventBody::Capability { .. }
            | EventBody::Probe { .. }
            | EventBody::CertRenewal { .. }
            | EventBody::Ota { .. }
            | EventBody::Storage { .. }
            | EventBody::Ticket { .. } => None,
        }
    }
}

/// A storage condition of the recordings volume (see [`EventBody::Storage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageAlarm {
    DiskFullForecast,
    RecordingAtRisk,
}

impl StorageAlarm {
    /// The wire name (`disk_full_forecast`, `recording_at_risk`).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageAlarm::DiskFullForecast => "disk_full_forecast",
            StorageAlarm::RecordingAtRisk => "recording_at_risk",
        }
    }
}

/// Start or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingAction {
    Start,
    Stop,
}

/// Where a recording request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOrigin {
    /// The device's own schedule (start at start minus pre-roll, close, safety stop).
    Schedule,
    /// A person at the courtroom terminal (`gavel-agent clerk`), without the controller.
    Terminal,
    /// A command from the controller (API, `gavelctl`).
    Controller,
}

/// Steps of an over-the-air update as the device reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtaStage {
    /// Waiting: a hearing is in progress or due within the guard window.
    Deferred,
    /// Downloading the bundle (resumable).
    Downloading,
    /// Refused before writing anything (signature, compatibility, version, corrupt).
    Rejected,
    /// Writing the inactive slot.
    Installing,
    /// Written and activated; rebooting into it.
    Rebooting,
    /// The new slot was healthy and is committed.
    Committed,
    /// The new slot was given up; the old one runs.
    RolledBack,
    /// Power was lost during the install; the old slot runs.
    Interrupted,
}
/// State of a hearing's recording on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// Not recording.
    Idle,
    /// Pipelines are being started; no segment written yet.
    Starting,
    /// Every source is recording.
    Recording,
    /// Some sources are lost; the others keep recording.
    Degraded,
    /// Stopping: closing the open segments and writing the manifest.
    Stopping,
}

/// A typed event with a per-boot sequence number. `(boot_id, seq)` identifies it: the
/// controller applies each at most once, in `seq` order per boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Boot of the agent that produced the event (may be an earlier boot than the
    /// current session's when the outbox replays after a power cut).
    pub boot_id: String,
    /// Sequence number within the boot, from 0 without gaps.
    pub seq: u64,
    /// Id shared by the start, updates and end of one event.
    pub id: String,
    pub phase: Phase,
    /// Sent again after a reconnect rather than live.
    #[serde(default)]
    pub historical: bool,
    #[serde(flatten)]
    pub body: EventBody,
}

impl Message for Event {
    const CHANNEL: Channel = Channel::Event;
    fn validate(&self) -> Result<(), Invalid> {
        text("id", &self.id)?;
        text("boot_id", &self.boot_id)?;
        if self.boot_id.is_empty() {
            return Err(Invalid::new("boot_id", "empty"));
        }
        match &self.body {
            EventBody::Agent { detail } => {
                if let Some(d) = detail {
                    text("detail", d)?;
                }
            }
            EventBody::Capability {
                capability, detail, ..
            } => {
                text("capability", capability)?;
                if let Some(d) = detail {
                    text("detail", d)?;
                }
            }
            EventBody::Probe { .. } => {}
            EventBody::Ota {
                campaign,
                version,
                detail,
                ..
            } => {
                text("version", version)?;
                if let Some(c) = campaign {
                    text("campaign", c)?;
                }
                if let Some(d) = detail {
                    text("detail", d)?;
                }
            }
            EventBody::Recording {
                hearing_id,
                sources,
                lost,
                detail,
                ..
            } => {
                check_hearing_id(hearing_id)?;
                items("sources", sources)?;
                items("lost", lost)?;
                for (i, s) in sources.iter().enumerate() {
                    text(&format!("sources[{i}]"), s)?;
                }
                for (i, s) in lost.iter().enumerate() {
                    text(&format!("lost[{i}]"), s)?;
                }
                if let Some(d) = detail {
                    text("detail", d)?;
                }
            }
            EventBody::Segment {
                hearing_id,
                source,
                file,
                sha256,
                chain,
                ..
            } => {
                check_hearing_id(hearing_id)?;
                text("source", source)?;
                text("file", file)?;
                hex64("sha256", sha256)?;
                hex64("chain", chain)?;
            }
            EventBody::Sealed {
                hearing_id,
                chain_head,
                manifest_sha256,
                public_key,
                signature,
                ..
            } => {
                check_hearing_id(hearing_id)?;
                hex64("chain_head", chain_head)?;
                hex64("manifest_sha256", manifest_sha256)?;
                hex_n(
                    "public_key",
                    public_key,
                    64,
                    "not a lowercase hex ed25519 public key",
                )?;
                hex_n(
                    "signature",
                    signature,
                    128,
                    "not a lowercase hex ed25519 signature",
                )?;
            }
            EventBody::RecordingRequest {
                hearing_id,
                by,
                reason,
                error,
                ..
            } => {
                check_hearing_id(hearing_id)?;
                text("by", by)?;
                if let Some(r) = reason {
                    text("reason", r)?;
                }
                if let Some(e) = error {
                    text("error", e)?;
                }
            }
            EventBody::CertRenewal { csr, .. } => pem("csr", csr, "CERTIFICATE REQUEST")?,
            EventBody::SourceLost {
                hearing_id,
                source,
                lost_at,
                recovered_at,
                detail,
            } => {
                check_hearing_id(hearing_id)?;
                text("source", source)?;
                if let Some(d) = detail {
                    text("detail", d)?;
                }
                if recovered_at.is_some_and(|r| r < *lost_at) {
                    return Err(Invalid::new("recovered_at", "before lost_at"));
                }
            }
            EventBody::Storage { detail, .. } => {
                if let Some(d) = detail {
                    text("detail", d)?;
                }
            }
            EventBody::Ticket {
                number,
                service,
                day,
                ..
            } => {
                check_ticket_number(number)?;
                check_service(service)?;
                check_day("day", day)?;
            }
            EventBody::Finding {
                source,
                seat,
                started_at,
                ended_at,
                snapshot,
                recording,
                detail,
                ..
            } => {
                text("source", source)?;
                if source.is_empty() {
                    return Err(Invalid::new("source", "empty"));
                }
                if let Some(s) = seat {
                    text("seat", s)?;
                }
                if let Some(d) = detail {
                    text("detail", d)?;
                }
                if ended_at.is_some_and(|e| e < *started_at) {
                    return Err(Invalid::new("ended_at", "before started_at"));
                }
                if self.phase == Phase::End && ended_at.is_none() {
                    return Err(Invalid::new("ended_at", "missing on an end event"));
                }
                if let Some(s) = snapshot {
                    crate::finding::check_snapshot(s)?;
                }
                if let Some(r) = recording {
                    check_hearing_id(&r.hearing_id)
                        .map_err(|e| Invalid::new("recording.hearing_id", e.reason))?;
                }
            }
            EventBody::Transcript {
                hearing_id,
                seat,
                source,
                text: line_text,
                language,
                model,
                vocabulary,
                confidence,
                ..
            } => {
                check_hearing_id(hearing_id)?;
                for (field, value) in [
                    ("seat", seat),
                    ("source", source),
                    ("language", language),
                    ("model", model),
                ] {
                    text(field, value)?;
                    if value.is_empty() {
                        return Err(Invalid::new(field, "empty"));
                    }
                }
                if line_text.len() > MAX_LINE_TEXT {
                    return Err(Invalid::new(
                        "text",
                        format!("{} bytes long; at most {MAX_LINE_TEXT}", line_text.len()),
                    ));
                }
                if let Some(v) = vocabulary {
                    text("vocabulary", v)?;
                }
                if let Some(c) = confidence
                    && !(0.0..=1.0).contains(c)
                {
                    return Err(Invalid::new(
                        "confidence",
                        format!("{c} is not within 0..1"),
                    ));
                }
                if self.phase == Phase::Start {
                    return Err(Invalid::new(
                        "phase",
                        "a transcript line is `update` (partial) or `end` (final)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What the controller asks a device to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandBody {
    /// Answer with a pong: proves the command path end to end.
    Ping,
    /// Answer with the agent's effective configuration.
    GetConfig,
    /// Restart the agent process.
    Restart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Send every event still in the outbox again (the controller saw a gap).
    Replay {
        /// The boot whose events are missing.
        boot_id: String,
        /// First missing sequence number.
        from_seq: u64,
    },
    /// Publish the birth and online status again.
    Rebirth,
    /// Download and install an OTA bundle when the room allows (added within v1).
    OtaInstall {
        /// Campaign id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        campaign: Option<String>,
        /// Bundle version.
        version: String,
        /// Where to download the bundle (HTTP, Range requests supported).
        url: String,
        /// Bundle file size in bytes.
        size: u64,
        /// SHA-256 of the bundle file (the signature inside is what the device trusts).
        sha256: String,
        /// Download cap in bits per second (0 or absent: the device's configured cap).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_bits_per_s: Option<u64>,
        /// Allow a version that is not newer than the running one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// Start recording a hearing (added within v1). Starting the hearing already being
    /// recorded is acknowledged without effect.
    StartRecording {
        hearing_id: String,
        /// Why (manual start, schedule...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Who asked (user or component), for the audit trail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Stop recording a hearing (added within v1).
    StopRecording {
        hearing_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Announce a called queue number by speech on a service-hall device ("请 A1007 号到
    /// 3 号窗口"); the device composes the words in its languages (added within v1).
    Announce {
        /// Ticket number called.
        number: String,
        /// Window the holder is called to.
        window: String,
    },
    /// Check the device: broker link, clock, each camera, each microphone, disk (added
    /// within v1). The command's `ts` is the controller's clock.
    SelfTest,
    /// The renewed certificate for the key of the device's last `cert_renewal` (added
    /// within v1). The device installs it and reconnects with it.
    InstallCertificate {
        /// PEM certificate.
        certificate: String,
    },
    /// Answer with a small JPEG of a source's latest patrol frame (the inspectors'
    /// console tiles; added within v1). Without a source: the device's first video source.
    Snapshot {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// Put a hearing's recording under legal hold (`hold: true`) or lift the hold: a held
    /// hearing's segments are never evicted from the device, archived or not (added within
    /// v1). Acked with [`Reply::LegalHold`].
    LegalHold {
        hearing_id: String,
        hold: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
}

impl CommandBody {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Ping => "ping",
            CommandBody::GetConfig => "get_config",
            CommandBody::Restart { .. } => "restart",
            CommandBody::Replay { .. } => "replay",
            CommandBody::Rebirth => "rebirth",
            CommandBody::OtaInstall { .. } => "ota_install",
            CommandBody::StartRecording { .. } => "start_recording",
            CommandBody::StopRecording { .. } => "stop_recording",
            CommandBody::Announce { .. } => "announce",
            CommandBody::SelfTest => "self_test",
            CommandBody::InstallCertificate { .. } => "install_certificate",
            CommandBody::Snapshot { .. } => "snapshot",
            CommandBody::LegalHold { .. } => "legal_hold",
        }
    }
}

/// A command with a correlation id; the device answers with an [`Ack`] of the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub v: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Correlation id.
    pub id: String,
    /// A device does not act on a command received after this instant.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    #[serde(flatten)]
    pub body: CommandBody,
}

impl Message for Command {
    const CHANNEL: Channel = Channel::Cmd;
    fn validate(&self) -> Result<(), Invalid> {
        text("id", &self.id)?;
        if self.id.is_empty() {
            return Err(Invalid::new("id", "empty"));
        }
        match &self.body {
            CommandBody::Restart { reason: Some(r) } => text("reason", r)?,
            CommandBody::InstallCertificate { certificate } => {
                pem("certificate", certificate, "CERTIFICATE")?
            }
            CommandBody::Replay { boot_id, .. } => text("boot_id", boot_id)?,
            CommandBody::OtaInstall {
                campaign,
                version,
                url,
                sha256,
                ..
            } => {
                text("version", version)?;
                if url.len() > 2048 {
                    return Err(Invalid::new("url", "longer than 2048 bytes"));
                }
                if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Invalid::new("sha256", "not 64 hex digits"));
                }
                if let Some(c) = campaign {
                    text("campaign", c)?;
                }
            }
            CommandBody::StartRecording {
                hearing_id,
                reason,
                by,
            }
            | CommandBody::StopRecording {
                hearing_id,
                reason,
                by,
            } => {
                check_hearing_id(hearing_id)?;
                if let Some(r) = reason {
                    text("reason", r)?;
                }
                if let Some(b) = by {
                    text("by", b)?;
                }
            }
            CommandBody::Announce { number, window } => {
                check_ticket_number(number)?;
                check_window(window)?;
            }
            CommandBody::Snapshot { source: Some(s) } => text("source", s)?,
            CommandBody::LegalHold { hearing_id, by, .. } => {
                check_hearing_id(hearing_id)?;
                if let Some(b) = by {
                    text("by", b)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Pong {
        boot_id: String,
        agent_uptime_s: u64,
    },
    Config {
        config: serde_json::Value,
    },
    Restarting {
        after_ms: u64,
    },
    /// Replay started: this many events are queued to be sent again.
    Replaying {
        events: u64,
    },
    /// Birth published again.
    Reborn {
        bd_seq: u64,
    },
    /// An OTA install was accepted; progress follows as `ota` events (added within v1).
    OtaAccepted {
        version: String,
    },
    /// A recording command was applied: the hearing's recording is now in this state.
    Recording {
        hearing_id: String,
        state: RecordingState,
    },
    /// An announcement was queued for speech (added within v1).
    Announcing {
        number: String,
    },
    /// The self-test's checks, in order (added within v1).
    SelfTest {
        checks: Vec<SelfCheck>,
    },
    /// A renewed certificate was installed; the device reconnects with it (added within v1).
    CertificateInstalled {
        serial: String,
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// A hearing's legal hold is now as asked (added within v1).
    LegalHold {
        hearing_id: String,
        hold: bool,
    },
    /// The latest patrol frame of a source (added within v1).
    Snapshot {
        source: String,
        /// When the frame was decoded.
        #[serde(with = "time::serde::rfc3339")]
        taken_at: OffsetDateTime,
        snapshot: crate::finding::Snapshot,
    },
}

/// How one self-test check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    /// Works, with something to look at.
    Warn,
    Fail,
    /// Not applicable here (e.g. a simulated source).
    Skip,
}

/// One self-test check: `broker`, `clock`, `camera:<source>`, `microphone:<source>`, `disk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    pub name: String,
    pub status: CheckStatus,
    /// What was measured or what is wrong, for people.
    pub detail: String,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Done; the reply says what came of it.
    Ok { reply: Reply },
    /// Not attempted (expired, not allowed now).
    Rejected { reason: String },
    /// Attempted and failed.
    Failed { error: String },
}

/// Acknowledgement of a command, with the command's correlation id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub v: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Correlation id of the command.
    pub id: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Message for Ack {
    const CHANNEL: Channel = Channel::Ack;
    fn validate(&self) -> Result<(), Invalid> {
        text("id", &self.id)?;
        match &self.outcome {
            Outcome::Rejected { reason } => text("reason", reason),
            Outcome::Failed { error } => text("error", error),
            Outcome::Ok {
                reply: Reply::SelfTest { checks },
            } => {
                if checks.len() > 64 {
                    return Err(Invalid::new("checks", "more than 64"));
                }
                checks.iter().try_for_each(|c| {
                    text("checks.name", &c.name)?;
                    text("checks.detail", &c.detail)
                })
            }
            Outcome::Ok {
                reply: Reply::Snapshot {
                    source, snapshot, ..
                },
            } => {
                text("reply.source", source)?;
                crate::finding::check_snapshot(snapshot)
            }
            Outcome::Ok { .. } => Ok(()),
        }
    }
}

/// Most hearings one schedule message carries (a room's recent past and coming days).
pub const MAX_SCHEDULE: usize = 200;
/// Longest pre-roll accepted, in seconds.
pub const MAX_PRE_ROLL_S: u32 = 3600;

/// Where a hearing of a schedule stands, as the controller knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduledStatus {
    Scheduled,
    /// Opened by the clerk.
    InProgress,
    /// Closed: recording stops (or never starts).
    Closed,
    /// Cancelled: never recorded.
    Cancelled,
}

/// One hearing of a room's schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledHearing {
    /// Hearing id (names the recording folder on the device).
    pub id: String,
    pub case_number: String,
    /// Scheduled start.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// Scheduled end.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Recording starts this many seconds before `start`.
    pub pre_roll_s: u32,
    pub status: ScheduledStatus,
}

/// A room's hearing schedule, published retained to each recording device of the room on
/// its `schedule` topic. Devices keep the newest `version` they have seen (in their store)
/// and ignore older ones; they record by it with the controller unreachable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub v: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Court the schedule is for (the device checks it is its own).
    pub court: String,
    /// Room the schedule is for.
    pub room: String,
    /// Grows with every change of the room's schedule.
    pub version: u64,
    /// The room's hearings, by start.
    pub hearings: Vec<ScheduledHearing>,
}

impl Message for Schedule {
    const CHANNEL: Channel = Channel::Schedule;
    fn validate(&self) -> Result<(), Invalid> {
        text("court", &self.court)?;
        text("room", &self.room)?;
        if self.hearings.len() > MAX_SCHEDULE {
            return Err(Invalid::new(
                "hearings",
                format!("{} hearings; at most {MAX_SCHEDULE}", self.hearings.len()),
            ));
        }
        for (i, h) in self.hearings.iter().enumerate() {
            check_hearing_id(&h.id)
                .map_err(|e| Invalid::new(format!("hearings[{i}].id"), e.reason))?;
            text(&format!("hearings[{i}].case_number"), &h.case_number)?;
            if h.end <= h.start {
                return Err(Invalid::new(
                    format!("hearings[{i}].end"),
                    "not after start",
                ));
            }
            if h.pre_roll_s > MAX_PRE_ROLL_S {
                return Err(Invalid::new(
                    format!("hearings[{i}].pre_roll_s"),
                    format!("{} s; at most {MAX_PRE_ROLL_S}", h.pre_roll_s),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_playlists_and_segments_inside_the_folder_are_served_as_hls() {
        let t = LiveEndpoints::hls_content_type;
        assert_eq!(t("index.m3u8"), Some("application/vnd.apple.mpegurl"));
        assert_eq!(t("seg00012.ts"), Some("video/mp2t"));
        for bad in [
            "../index.m3u8",
            "..",
            ".hidden.ts",
            "a/b.ts",
            "x.txt",
            "x.html",
            "",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
