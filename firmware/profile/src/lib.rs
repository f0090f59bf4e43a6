//! # gavel-profile
//!
//! Device profiles (`device-profiles/*.toml`): what each device kind has and runs. A
//! profile names the device's capabilities and their settings, its seats (one microphone
//! channel each) and its media sources. [`load`] parses and validates one file and names
//! the file, key and bad value of every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod patrol;
pub use patrol::{ANALYZERS, PatrolSettings, PatrolThresholds, SeatZone};

/// A device profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name; must equal the file stem.
    pub name: String,
    /// What the device is, for people.
    pub description: String,
    /// Health telemetry and liveness.
    #[serde(default)]
    pub health: HealthSettings,
    /// Seats with a microphone channel each (judge, clerk, plaintiff...).
    #[serde(default)]
    pub seats: Vec<Seat>,
    /// Media sources (cameras, capture devices, audio interfaces).
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Capabilities the device runs, each with its settings.
    #[serde(default)]
    pub capabilities: Capabilities,
}

/// Health telemetry settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Seconds between health messages.
    pub interval_s: u32,
    /// MQTT keepalive in seconds; the device counts as dead after 1.5x this.
    pub keepalive_s: u16,
    /// Mount points whose free space is reported (missing ones are skipped).
    pub volumes: Vec<String>,
    /// Environment sensors (machine-room temperature and humidity) read with each
    /// health sample.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensors: Vec<SensorSettings>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            interval_s: 10,
            keepalive_s: 10,
            volumes: vec!["/".into()],
            sensors: Vec::new(),
        }
    }
}

/// An I2C temperature and humidity sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSettings {
    /// Name reported in health telemetry (`machine-room`).
    pub name: String,
    /// Sensor model; `sht3x` (SHT30/31/35).
    pub kind: String,
    /// I2C bus device, e.g. `/dev/i2c-1`.
    pub bus: String,
    /// 7-bit I2C address (SHT3x: 0x44 or 0x45).
    #[serde(default = "default_sht3x_address")]
    pub address: u8,
}

fn default_sht3x_address() -> u8 {
    0x44
}

fn default_baud() -> u32 {
    9600
}

fn default_address() -> u8 {
    1
}

/// A seat in the courtroom with its microphone channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seat {
    /// Seat id (`judge`, `clerk`, `plaintiff`, `defendant`, `witness`...).
    pub id: String,
    /// Label shown on transcripts, e.g. "审判长 Presiding judge".
    pub label: String,
    /// Audio channel of the seat's microphone on the capture interface (0-based).
    pub channel: u16,
}

/// Kind of media source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// An IP camera reached over RTSP (ONVIF discovery fills in the URL).
    Rtsp,
    /// A local video capture device.
    V4l2,
    /// A local multi-channel audio interface.
    Alsa,
    /// A generated test pattern or tone (simulation).
    Test,
}

/// A media source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Source id, unique within the profile.
    pub id: String,
    pub kind: SourceKind,
    /// What the source shows or hears (`overview`, `judge`, `bench`, `seats`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Highest resolution, e.g. `3840x2160`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_resolution: Option<String>,
}

/// Capability settings; a capability absent from the file is not run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcribe: Option<TranscribeSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patrol: Option<PatrolSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<CameraSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lamp: Option<LampSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiosk: Option<KioskSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<WallSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptz: Option<PtzSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer: Option<PrinterSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<AnnounceSettings>,
}

/// Recording (remux to crash-safe segments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSettings {
    /// Segment length in seconds.
    pub segment_s: u32,
    /// Source ids to record; each must be a source of the profile.
    pub sources: Vec<String>,
}

/// Live streaming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Bit rate of the low-resolution sub-stream sent over the tribunal link, kbit/s.
    pub sub_stream_kbps: u32,
    /// Source ids to stream.
    pub sources: Vec<String>,
}

/// On-device transcription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscribeSettings {
    /// Whisper model name from `models/manifest-whisper.json` (`tiny.en`, `base`, `small`,
    /// `medium`, `large-v3-turbo`; a `whisper-` prefix is allowed).
    pub model: String,
    /// Inference threads.
    pub threads: u16,
    /// `en`, `zh`, or `auto` (detected per line).
    pub language: String,
    /// The court's legal vocabulary: a file name in `device-profiles/vocabulary/` without
    /// `.toml` (versioned configuration: see `docs/transcription.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary: Option<String>,
    /// Seconds of seat audio the tap holds for a transcriber that has fallen behind;
    /// beyond it the oldest is skipped with a reported gap (30-3600).
    #[serde(default = "default_backlog_s")]
    pub backlog_s: u32,
}

fn default_backlog_s() -> u32 {
    600
}

/// Whisper models a profile may name.
pub const WHISPER_MODELS: &[&str] = &["tiny.en", "base", "small", "medium", "large-v3-turbo"];

impl TranscribeSettings {
    /// The model name without a `whisper-` prefix (`base`).
    pub fn model_name(&self) -> &str {
        self.model.strip_prefix("whisper-").unwrap_or(&self.model)
    }
}

/// The device is itself a camera serving RTSP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSettings {
    /// Main stream resolution.
    pub resolution: String,
    /// Codec of the main stream (`h264`, `h265`).
    pub codec: String,
    /// Whether the camera has PTZ with presets.
    #[serde(default)]
    pub ptz: bool,
}

/// "Recording in progress" lamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LampSettings {
    /// `gpio` or `serial`.
    pub driver: String,
    /// gpio: GPIO character device.
    #[serde(default = "default_gpio_chip")]
    pub gpio_chip: String,
    /// gpio: line offset on the chip (required for `gpio`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// gpio: the relay closes when the line is low.
    #[serde(default)]
    pub active_low: bool,
    /// serial: the sign controller's port (required for `serial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// serial: baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
}

fn default_gpio_chip() -> String {
    "/dev/gpiochip0".into()
}

/// How a PTZ camera is driven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PtzSettings {
    /// `visca` (an RS-232 PTZ head) or `onvif` (an IP camera's PTZ service).
    pub control: String,
    /// visca: serial port (required for `visca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// visca: baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// visca: camera address on the daisy chain, 1-7.
    #[serde(default = "default_address")]
    pub address: u8,
    /// onvif: id of the camera's `rtsp` source (required for `onvif`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Speaker-follow: the PTZ camera frames the seat whose microphone is speaking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowSettings {
    /// Preset showing the whole room, 0-127.
    pub overview_preset: u8,
    /// Preset per seat id (seats without one are never framed), 0-127.
    pub presets: BTreeMap<String, u8>,
    /// Voice must last this long before the camera considers moving (50-10000).
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u32,
    /// A speaker counts as stopped after this much silence (100-30000).
    #[serde(default = "default_release_ms")]
    pub release_ms: u32,
    /// Shortest time a shot is held (0-60000).
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u32,
    /// Silence this long returns the camera to the overview (1000-600000).
    #[serde(default = "default_overview_after_ms")]
    pub overview_after_ms: u32,
    /// Microphone level counting as voice, dBFS (-120 to 0).
    #[serde(default = "default_threshold_dbfs")]
    pub threshold_dbfs: f64,
}

fn default_debounce_ms() -> u32 {
    500
}
fn default_release_ms() -> u32 {
    1200
}
fn default_hold_ms() -> u32 {
    3000
}
fn default_overview_after_ms() -> u32 {
    8000
}
fn default_threshold_dbfs() -> f64 {
    -40.0
}

/// ESC/POS receipt printer (kiosk queue tickets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterSettings {
    /// Serial port.
    pub port: String,
    /// Baud rate.
    #[serde(default = "default_printer_baud")]
    pub baud: u32,
    /// Characters per line at normal size (58 mm paper: 32, 80 mm: 42-48).
    #[serde(default = "default_columns")]
    pub columns: u16,
    /// Text encoding the printer takes: `gb18030` (Chinese receipt printers, in their
    /// Chinese character mode) or `utf-8`.
    #[serde(default = "default_printer_encoding")]
    pub encoding: String,
}

fn default_printer_baud() -> u32 {
    19200
}
fn default_printer_encoding() -> String {
    "gb18030".into()
}
fn default_columns() -> u16 {
    42
}

/// Baud rates accepted for serial devices.
pub const BAUD_RATES: [u32; 7] = [2400, 4800, 9600, 19200, 38400, 57600, 115200];

/// Service-hall kiosk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskSettings {
    /// Services a ticket can be taken for.
    pub services: Vec<String>,
    /// Languages of the touchscreen UI.
    pub languages: Vec<String>,
}

/// Spoken announcements of called queue numbers (service hall).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceSettings {
    /// Languages spoken, in order (`zh`, `en`).
    pub languages: Vec<String>,
}

/// Command-centre video wall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WallSettings {
    /// Layouts the wall can show (`1`, `2x2`, `3x3`, `1+5`).
    pub layouts: Vec<String>,
    /// Output resolution.
    pub output: String,
}

/// The seat microphones: the recorded source with role `seats` and the seat map.
#[derive(Debug, Clone, PartialEq)]
pub struct SeatMicrophones {
    /// The source id.
    pub source: String,
    /// (channel, seat id) of every seat.
    pub seats: Vec<(usize, String)>,
}

impl Profile {
    /// The seat microphones, when a recorded source with role `seats` carries them
    /// (speaker-follow and transcription listen to them through the recorder).
    pub fn seat_microphones(&self) -> Option<SeatMicrophones> {
        let recorded = self.capabilities.record.as_ref()?;
        let source = self
            .sources
            .iter()
            .find(|s| s.role.as_deref() == Some("seats") && recorded.sources.contains(&s.id))?;
        Some(SeatMicrophones {
            source: source.id.clone(),
            seats: self
                .seats
                .iter()
                .map(|s| (usize::from(s.channel), s.id.clone()))
                .collect(),
        })
    }
}

impl Capabilities {
    /// Names of the capabilities the profile turns on, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = vec!["health"];
        let named = [
            ("record", self.record.is_some()),
            ("stream", self.stream.is_some()),
            ("transcribe", self.transcribe.is_some()),
            ("patrol", self.patrol.is_some()),
            ("camera", self.camera.is_some()),
            ("lamp", self.lamp.is_some()),
            ("kiosk", self.kiosk.is_some()),
            ("wall", self.wall.is_some()),
            ("ptz", self.ptz.is_some()),
            ("follow", self.follow.is_some()),
            ("printer", self.printer.is_some()),
            ("announce", self.announce.is_some()),
        ];
        names.extend(named.iter().filter(|(_, on)| *on).map(|(n, _)| *n));
        names
    }
}

/// Why a profile could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: key `{key}` = {value:?}: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        value: String,
        reason: String,
    },
    #[error("profile {name:?} not found in {dir}")]
    NotFound { name: String, dir: PathBuf },
}

/// Loads and validates the profile file at `path`.
pub fn load(path: &Path) -> Result<Profile, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        file: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Loads profile `name` from directory `dir` (`dir/name.toml`).
pub fn load_named(dir: &Path, name: &str) -> Result<Profile, ProfileError> {
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let path = dir.join(format!("{name}.toml"));
    if !valid_name || !path.is_file() {
        return Err(ProfileError::NotFound {
            name: name.to_owned(),
            dir: dir.to_owned(),
        });
    }
    load(&path)
}

/// Loads every `*.toml` profile in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<Profile>, ProfileError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ProfileError::Read {
        file: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

/// Parses and validates profile text; `file` is used in errors and for the name check.
pub fn parse(file: &Path, text: &str) -> Result<Profile, ProfileError> {
    let profile: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse {
        file: file.to_owned(),
        message: e.to_string().trim_end().replace('\n', " | "),
    })?;
    validate(file, &profile)?;
    Ok(profile)
}

fn validate(file: &Path, p: &Profile) -> Result<(), ProfileError> {
    let bad = |key: &str, value: &dyn std::fmt::Display, reason: &str| ProfileError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    };
    if let Some(stem) = file.file_stem().and_then(|s| s.to_str())
        && stem != p.name
    {
        return Err(bad(
            "name",
            &p.name,
            &format!("must equal the file name `{stem}`"),
        ));
    }
    if p.health.interval_s == 0 || p.health.interval_s > 3600 {
        return Err(bad(
            "health.interval_s",
            &p.health.interval_s,
            "must be 1-3600",
        ));
    }
    if p.health.keepalive_s < 2 || p.health.keepalive_s > 600 {
        return Err(bad(
            "health.keepalive_s",
            &p.health.keepalive_s,
            "must be 2-600",
        ));
    }
    let mut seat_ids = BTreeSet::new();
    let mut channels = BTreeSet::new();
    for (i, s) in p.seats.iter().enumerate() {
        if !seat_ids.insert(&s.id) {
            return Err(bad(&format!("seats[{i}].id"), &s.id, "seat id used twice"));
        }
        if !channels.insert(s.channel) {
            return Err(bad(
                &format!("seats[{i}].channel"),
                &s.channel,
                "channel already used by another seat",
            ));
        }
    }
    let mut source_ids = BTreeSet::new();
    for (i, s) in p.sources.iter().enumerate() {
        if !source_ids.insert(s.id.as_str()) {
            return Err(bad(
                &format!("sources[{i}].id"),
                &s.id,
                "source id used twice",
            ));
        }
        if let Some(r) = &s.max_resolution
            && parse_resolution(r).is_none()
        {
            return Err(bad(
                &format!("sources[{i}].max_resolution"),
                r,
                "expected WIDTHxHEIGHT, e.g. 3840x2160",
            ));
        }
    }
    let check_sources = |key: &str, list: &[String]| -> Result<(), ProfileError> {
        for (i, id) in list.iter().enumerate() {
            if !source_ids.contains(id.as_str()) {
                return Err(bad(&format!("{key}[{i}]"), id, "no source with this id"));
            }
        }
        Ok(())
    };
    let c = &p.capabilities;
    if let Some(r) = &c.record {
        if !(2..=3600).contains(&r.segment_s) {
            return Err(bad(
                "capabilities.record.segment_s",
                &r.segment_s,
                "must be 2-3600",
            ));
        }
        if r.sources.is_empty() {
            return Err(bad(
                "capabilities.record.sources",
                &"[]",
                "record at least one source",
            ));
        }
        check_sources("capabilities.record.sources", &r.sources)?;
    }
    if let Some(s) = &c.stream {
        if !(64..=50_000).contains(&s.sub_stream_kbps) {
            return Err(bad(
                "capabilities.stream.sub_stream_kbps",
                &s.sub_stream_kbps,
                "must be 64-50000",
            ));
        }
        check_sources("capabilities.stream.sources", &s.sources)?;
    }
    if let Some(t) = &c.transcribe {
        if t.threads == 0 || t.threads > 64 {
            return Err(bad(
                "capabilities.transcribe.threads",
                &t.threads,
                "must be 1-64",
            ));
        }
        if p.seats.is_empty() {
            return Err(bad(
                "capabilities.transcribe",
                &"(on)",
                "transcription needs seats to label speakers",
            ));
        }
        if !WHISPER_MODELS.contains(&t.model_name()) {
            return Err(bad(
                "capabilities.transcribe.model",
                &t.model,
                "must be tiny.en, base, small, medium or large-v3-turbo",
            ));
        }
        if !matches!(t.language.as_str(), "en" | "zh" | "auto") {
            return Err(bad(
                "capabilities.transcribe.language",
                &t.language,
                "must be en, zh or auto",
            ));
        }
        if t.model_name().ends_with(".en") && t.language != "en" {
            return Err(bad(
                "capabilities.transcribe.language",
                &t.language,
                "an English-only model transcribes `en` only",
            ));
        }
        if let Some(v) = &t.vocabulary
            && (v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || v.starts_with('.'))
        {
            return Err(bad(
                "capabilities.transcribe.vocabulary",
                v,
                "a file name in device-profiles/vocabulary/ without .toml",
            ));
        }
        if !(30..=3600).contains(&t.backlog_s) {
            return Err(bad(
                "capabilities.transcribe.backlog_s",
                &t.backlog_s,
                "must be 30-3600",
            ));
        }
    }
    if let Some(pa) = &c.patrol {
        let seat_ids: BTreeSet<&str> = p.seats.iter().map(|s| s.id.as_str()).collect();
        let sources: BTreeSet<&str> = p.sources.iter().map(|s| s.id.as_str()).collect();
        if let Err((key, value, reason)) = patrol::validate(pa, &sources, &seat_ids) {
            return Err(bad(&format!("capabilities.patrol.{key}"), &value, reason));
        }
    }
    if let Some(cam) = &c.camera {
        if parse_resolution(&cam.resolution).is_none() {
            return Err(bad(
                "capabilities.camera.resolution",
                &cam.resolution,
                "expected WIDTHxHEIGHT",
            ));
        }
        if !matches!(cam.codec.as_str(), "h264" | "h265") {
            return Err(bad(
                "capabilities.camera.codec",
                &cam.codec,
                "must be h264 or h265",
            ));
        }
    }
    validate_hardware(file, p, &source_ids)?;
    if let Some(w) = &c.wall {
        for (i, l) in w.layouts.iter().enumerate() {
            if !matches!(l.as_str(), "1" | "2x2" | "3x3" | "1+5") {
                return Err(bad(
                    &format!("capabilities.wall.layouts[{i}]"),
                    l,
                    "must be one of 1, 2x2, 3x3, 1+5",
                ));
            }
        }
    }
    if let Some(a) = &c.announce {
        if a.languages.is_empty() {
            return Err(bad(
                "capabilities.announce.languages",
                &"[]",
                "name zh, en or both",
            ));
        }
        for (i, l) in a.languages.iter().enumerate() {
            if !matches!(l.as_str(), "zh" | "en") {
                return Err(bad(
                    &format!("capabilities.announce.languages[{i}]"),
                    l,
                    "must be zh or en",
                ));
            }
        }
    }
    if let Some(k) = &c.kiosk {
        if k.services.is_empty() || k.services.len() > 26 {
            return Err(bad(
                "capabilities.kiosk.services",
                &k.services.len(),
                "name 1-26 services (each gets a letter)",
            ));
        }
        for (i, s) in k.services.iter().enumerate() {
            let ok = (1..=32).contains(&s.len())
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !ok {
                return Err(bad(
                    &format!("capabilities.kiosk.services[{i}]"),
                    s,
                    "1-32 of a-z 0-9 - _",
                ));
            }
        }
    }
    Ok(())
}

fn validate_hardware(
    file: &Path,
    p: &Profile,
    source_ids: &BTreeSet<&str>,
) -> Result<(), ProfileError> {
    let bad = |key: &str, value: &dyn std::fmt::Display, reason: &str| ProfileError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    };
    let baud = |key: &str, b: u32| {
        if BAUD_RATES.contains(&b) {
            Ok(())
        } else {
            Err(bad(
                key,
                &b,
                "must be one of 2400, 4800, 9600, 19200, 38400, 57600, 115200",
            ))
        }
    };
    let port = |key: &str, port: &Option<String>, needed_by: &str| match port.as_deref() {
        Some(path) if path.starts_with('/') => Ok(()),
        Some(path) => Err(bad(key, &path, "must be an absolute device path")),
        None => Err(bad(key, &"(missing)", needed_by)),
    };
    let range = |key: &str, v: u32, lo: u32, hi: u32| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(bad(key, &v, &format!("must be {lo}-{hi}")))
        }
    };
    let mut names = BTreeSet::new();
    for (i, s) in p.health.sensors.iter().enumerate() {
        let key = |k: &str| format!("health.sensors[{i}].{k}");
        if s.name.is_empty() || !names.insert(s.name.as_str()) {
            return Err(bad(&key("name"), &s.name, "must be non-empty and unique"));
        }
        if s.kind != "sht3x" {
            return Err(bad(&key("kind"), &s.kind, "must be sht3x"));
        }
        if !s.bus.starts_with("/dev/") {
            return Err(bad(
                &key("bus"),
                &s.bus,
                "must be an I2C device such as /dev/i2c-1",
            ));
        }
        if !matches!(s.address, 0x44 | 0x45) {
            return Err(bad(
                &key("address"),
                &format!("0x{:02x}", s.address),
                "an SHT3x answers at 0x44 or 0x45",
            ));
        }
    }
    let c = &p.capabilities;
    if let Some(l) = &c.lamp {
        match l.driver.as_str() {
            "gpio" => {
                if l.line.is_none() {
                    return Err(bad(
                        "capabilities.lamp.line",
                        &"(missing)",
                        "the gpio driver needs the line offset",
                    ));
                }
                if !l.gpio_chip.starts_with("/dev/") {
                    return Err(bad(
                        "capabilities.lamp.gpio_chip",
                        &l.gpio_chip,
                        "must be a GPIO character device such as /dev/gpiochip0",
                    ));
                }
            }
            "serial" => {
                port(
                    "capabilities.lamp.port",
                    &l.port,
                    "the serial driver needs a port",
                )?;
                baud("capabilities.lamp.baud", l.baud)?;
            }
            other => {
                return Err(bad(
                    "capabilities.lamp.driver",
                    &other,
                    "must be gpio or serial",
                ));
            }
        }
    }
    if let Some(z) = &c.ptz {
        match z.control.as_str() {
            "visca" => {
                port(
                    "capabilities.ptz.port",
                    &z.port,
                    "VISCA control needs a serial port",
                )?;
                baud("capabilities.ptz.baud", z.baud)?;
                if !(1..=7).contains(&z.address) {
                    return Err(bad("capabilities.ptz.address", &z.address, "must be 1-7"));
                }
            }
            "onvif" => match z.source.as_deref() {
                Some(id) => {
                    let rtsp = p
                        .sources
                        .iter()
                        .any(|s| s.id == id && s.kind == SourceKind::Rtsp);
                    if !source_ids.contains(id) || !rtsp {
                        return Err(bad(
                            "capabilities.ptz.source",
                            &id,
                            "no rtsp source with this id",
                        ));
                    }
                }
                None => {
                    return Err(bad(
                        "capabilities.ptz.source",
                        &"(missing)",
                        "ONVIF control needs the camera's source id",
                    ));
                }
            },
            other => {
                return Err(bad(
                    "capabilities.ptz.control",
                    &other,
                    "must be visca or onvif",
                ));
            }
        }
    }
    if let Some(f) = &c.follow {
        if c.ptz.is_none() {
            return Err(bad(
                "capabilities.follow",
                &"(on)",
                "speaker-follow needs [capabilities.ptz]",
            ));
        }
        if f.presets.is_empty() {
            return Err(bad(
                "capabilities.follow.presets",
                &"{}",
                "give at least one seat a preset",
            ));
        }
        range(
            "capabilities.follow.overview_preset",
            f.overview_preset.into(),
            0,
            127,
        )?;
        for (seat, preset) in &f.presets {
            let key = format!("capabilities.follow.presets.{seat}");
            if !p.seats.iter().any(|s| &s.id == seat) {
                return Err(bad(&key, seat, "no seat with this id"));
            }
            range(&key, (*preset).into(), 0, 127)?;
        }
        range("capabilities.follow.debounce_ms", f.debounce_ms, 50, 10_000)?;
        range("capabilities.follow.release_ms", f.release_ms, 100, 30_000)?;
        range("capabilities.follow.hold_ms", f.hold_ms, 0, 60_000)?;
        range(
            "capabilities.follow.overview_after_ms",
            f.overview_after_ms,
            1000,
            600_000,
        )?;
        if !(-120.0..=0.0).contains(&f.threshold_dbfs) {
            return Err(bad(
                "capabilities.follow.threshold_dbfs",
                &f.threshold_dbfs,
                "must be -120 to 0",
            ));
        }
    }
    if let Some(pr) = &c.printer {
        port("capabilities.printer.port", &Some(pr.port.clone()), "")?;
        baud("capabilities.printer.baud", pr.baud)?;
        range("capabilities.printer.columns", pr.columns.into(), 24, 80)?;
        if !matches!(
            pr.encoding.to_ascii_lowercase().as_str(),
            "gb18030" | "utf-8" | "utf8"
        ) {
            return Err(bad(
                "capabilities.printer.encoding",
                &pr.encoding,
                "must be gb18030 or utf-8",
            ));
        }
    }
    Ok(())
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_resolution(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.parse().ok()?);
    (w > 0 && h > 0 && w <= 7680 && h <= 4320).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
description = "test"
"#;

    fn parse_t(text: &str) -> Result<Profile, ProfileError> {
        parse(Path::new("device-profiles/t.toml"), text)
    }

    #[test]
    fn a_minimal_profile_runs_health_only() {
        let p = parse_t(MINIMAL).expect("valid");
        assert_eq!(p.capabilities.names(), ["health"]);
        assert_eq!(p.health.interval_s, 10);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_file() {
        let err = parse_t(&format!("{MINIMAL}\ncolour = \"red\"\n"))
            .expect_err("unknown key")
            .to_string();
        assert!(err.starts_with("device-profiles/t.toml:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn a_recorded_source_that_does_not_exist_names_key_and_value() {
        let text =
            format!("{MINIMAL}\n[capabilities.record]\nsegment_s = 10\nsources = [\"cam-9\"]\n");
        let err = parse_t(&text).expect_err("missing source").to_string();
        assert!(err.contains("capabilities.record.sources[0]"), "{err}");
        assert!(err.contains("cam-9"), "{err}");
    }

    #[test]
    fn a_patrol_threshold_out_of_range_is_named_with_its_value() {
        let text = format!(
            "{MINIMAL}\n[capabilities.patrol]\nanalysis_fps = 1\nanalyzers = [\"blur\"]\n[capabilities.patrol.thresholds]\ndark_mean_max = 300.0\n"
        );
        let err = parse_t(&text).expect_err("out of range").to_string();
        assert!(
            err.contains("capabilities.patrol.thresholds.dark_mean_max"),
            "{err}"
        );
        assert!(err.contains("300"), "{err}");
    }

    #[test]
    fn an_unknown_patrol_analyzer_and_a_zone_outside_the_picture_are_refused() {
        let unknown = format!(
            "{MINIMAL}\n[capabilities.patrol]\nanalysis_fps = 1\nanalyzers = [\"blur\", \"smell\"]\n"
        );
        let err = parse_t(&unknown).expect_err("unknown").to_string();
        assert!(err.contains("capabilities.patrol.analyzers[1]"), "{err}");
        let zone = format!(
            "{MINIMAL}\n[[seats]]\nid=\"judge\"\nlabel=\"J\"\nchannel=0\n[[sources]]\nid=\"cam\"\nkind=\"test\"\n[capabilities.patrol]\nanalysis_fps = 1\nanalyzers = [\"presence\"]\n[[capabilities.patrol.zones]]\nseat = \"judge\"\nsource = \"cam\"\nrect = [0.5, 0.5, 0.6, 0.2]\n"
        );
        let err = parse_t(&zone).expect_err("outside").to_string();
        assert!(err.contains("capabilities.patrol.zones[0].rect"), "{err}");
        let fine = zone.replace("0.6, 0.2", "0.4, 0.2");
        let p = parse_t(&fine).expect("inside");
        let patrol = p.capabilities.patrol.expect("patrol");
        assert_eq!(patrol.zones[0].seat, "judge");
        assert_eq!(patrol.thresholds, PatrolThresholds::default());
    }

    #[test]
    fn two_seats_on_one_channel_are_refused() {
        let text = format!(
            "{MINIMAL}\n[[seats]]\nid=\"judge\"\nlabel=\"J\"\nchannel=0\n[[seats]]\nid=\"clerk\"\nlabel=\"C\"\nchannel=0\n"
        );
        let err = parse_t(&text).expect_err("dup channel").to_string();
        assert!(err.contains("seats[1].channel"), "{err}");
    }

    #[test]
    fn the_name_must_match_the_file() {
        let err = parse(Path::new("x/other.toml"), MINIMAL)
            .expect_err("name")
            .to_string();
        assert!(err.contains("`other`"), "{err}");
    }

    const SEATS: &str = r#"
[[seats]]
id = "judge"
label = "J"
channel = 0
"#;

    #[test]
    fn follow_names_a_seat_preset_that_has_no_seat() {
        let text = format!(
            "{MINIMAL}{SEATS}\n[capabilities.ptz]\ncontrol = \"visca\"\nport = \"/dev/ttyUSB0\"\n[capabilities.follow]\noverview_preset = 0\n[capabilities.follow.presets]\njudge = 1\nbailiff = 2\n"
        );
        let err = parse_t(&text).expect_err("no bailiff seat").to_string();
        assert!(err.contains("capabilities.follow.presets.bailiff"), "{err}");
        assert!(err.contains("no seat"), "{err}");
    }

    #[test]
    fn follow_without_ptz_is_refused() {
        let text = format!(
            "{MINIMAL}{SEATS}\n[capabilities.follow]\noverview_preset = 0\npresets = {{ judge = 1 }}\n"
        );
        let err = parse_t(&text).expect_err("no ptz").to_string();
        assert!(err.contains("needs [capabilities.ptz]"), "{err}");
    }

    #[test]
    fn follow_defaults_fill_in_timings_and_a_preset_above_127_is_refused() {
        let ptz = "\n[capabilities.ptz]\ncontrol = \"visca\"\nport = \"/dev/ttyUSB0\"\n";
        let ok = format!(
            "{MINIMAL}{SEATS}{ptz}[capabilities.follow]\noverview_preset = 0\npresets = {{ judge = 1 }}\n"
        );
        let p = parse_t(&ok).expect("valid");
        let f = p.capabilities.follow.expect("follow");
        assert_eq!((f.debounce_ms, f.hold_ms), (500, 3000));
        assert_eq!(p.capabilities.ptz.expect("ptz").address, 1);
        let bad = ok.replace("judge = 1", "judge = 200");
        let err = parse_t(&bad).expect_err("preset 200").to_string();
        assert!(
            err.contains("presets.judge") && err.contains("200"),
            "{err}"
        );
    }

    #[test]
    fn transcription_settings_name_a_known_model_a_language_it_speaks_and_a_vocabulary_file() {
        let ok = format!(
            "{MINIMAL}{SEATS}\n[capabilities.transcribe]\nmodel = \"whisper-base\"\nthreads = 2\nlanguage = \"zh\"\nvocabulary = \"court-legal\"\n"
        );
        let t = parse_t(&ok)
            .expect("valid")
            .capabilities
            .transcribe
            .expect("transcribe");
        assert_eq!((t.model_name(), t.backlog_s), ("base", 600));
        for (from, to, key) in [
            ("whisper-base", "whisper-huge", "transcribe.model"),
            ("\"zh\"", "\"fr\"", "transcribe.language"),
            ("whisper-base", "tiny.en", "transcribe.language"),
            ("court-legal", "../etc/passwd", "transcribe.vocabulary"),
        ] {
            let err = parse_t(&ok.replace(from, to)).expect_err(to).to_string();
            assert!(err.contains(key), "{to}: {err}");
        }
    }

    #[test]
    fn a_visca_camera_needs_a_port_and_a_sane_baud_rate() {
        let err = parse_t(&format!(
            "{MINIMAL}\n[capabilities.ptz]\ncontrol = \"visca\"\n"
        ))
        .expect_err("no port")
        .to_string();
        assert!(err.contains("capabilities.ptz.port"), "{err}");
        let err = parse_t(&format!(
            "{MINIMAL}\n[capabilities.ptz]\ncontrol = \"visca\"\nport = \"/dev/ttyS0\"\nbaud = 1234\n"
        ))
        .expect_err("baud")
        .to_string();
        assert!(
            err.contains("capabilities.ptz.baud") && err.contains("1234"),
            "{err}"
        );
    }

    #[test]
    fn onvif_ptz_must_name_an_rtsp_source() {
        let err = parse_t(&format!(
            "{MINIMAL}\n[capabilities.ptz]\ncontrol = \"onvif\"\nsource = \"cam-9\"\n"
        ))
        .expect_err("no source")
        .to_string();
        assert!(
            err.contains("capabilities.ptz.source") && err.contains("cam-9"),
            "{err}"
        );
    }

    #[test]
    fn a_gpio_lamp_needs_a_line_and_a_serial_lamp_a_port() {
        let err = parse_t(&format!(
            "{MINIMAL}\n[capabilities.lamp]\ndriver = \"gpio\"\n"
        ))
        .expect_err("no line")
        .to_string();
        assert!(err.contains("capabilities.lamp.line"), "{err}");
        let err = parse_t(&format!(
            "{MINIMAL}\n[capabilities.lamp]\ndriver = \"serial\"\n"
        ))
        .expect_err("no port")
        .to_string();
        assert!(err.contains("capabilities.lamp.port"), "{err}");
        let err = parse_t(&format!(
            "{MINIMAL}\n[capabilities.lamp]\ndriver = \"neon\"\n"
        ))
        .expect_err("driver")
        .to_string();
        assert!(
            err.contains("capabilities.lamp.driver") && err.contains("neon"),
            "{err}"
        );
    }

    #[test]
    fn a_sensor_at_a_foreign_address_is_named_in_hex() {
        let text = format!(
            "{MINIMAL}\n[[health.sensors]]\nname = \"machine-room\"\nkind = \"sht3x\"\nbus = \"/dev/i2c-1\"\naddress = 0x76\n"
        );
        let err = parse_t(&text).expect_err("address").to_string();
        assert!(
            err.contains("health.sensors[0].address") && err.contains("0x76"),
            "{err}"
        );
    }

    #[test]
    fn a_printer_encoding_defaults_to_gb18030_and_an_unknown_one_is_refused() {
        let text = format!("{MINIMAL}\n[capabilities.printer]\nport = \"/dev/ttyUSB0\"\n");
        let p = parse_t(&text).expect("printer");
        assert_eq!(
            p.capabilities.printer.map(|pr| pr.encoding).as_deref(),
            Some("gb18030")
        );
        let text = format!(
            "{MINIMAL}\n[capabilities.printer]\nport = \"/dev/ttyUSB0\"\nencoding = \"latin1\"\n"
        );
        let err = parse_t(&text).expect_err("latin1").to_string();
        assert!(err.contains("capabilities.printer.encoding"), "{err}");
    }

    #[test]
    fn a_printer_with_too_few_columns_is_refused() {
        let text =
            format!("{MINIMAL}\n[capabilities.printer]\nport = \"/dev/ttyUSB0\"\ncolumns = 10\n");
        let err = parse_t(&text).expect_err("columns").to_string();
        assert!(err.contains("capabilities.printer.columns"), "{err}");
    }

    #[test]
    fn resolutions_parse_within_8k() {
        assert_eq!(parse_resolution("3840x2160"), Some((3840, 2160)));
        assert_eq!(parse_resolution("4k"), None);
        assert_eq!(parse_resolution("99999x1"), None);
    }
}
