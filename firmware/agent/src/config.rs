//! Agent configuration: defaults, then a TOML file, then `GAVEL_*` environment variables,
//! then command-line flags, then [`AgentConfig::validate`].

use std::path::{Path, PathBuf};

use gavel_protocol::{DeviceId, Placement};
use serde::{Deserialize, Serialize};

/// Broker address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    /// Mutual TLS files, written by `gavel-agent enroll`. Absent: plain MQTT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
}

/// Where the device's TLS identity lives (PEM files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The device CA certificate.
    pub ca: PathBuf,
    /// The device certificate.
    pub cert: PathBuf,
    /// The device key (0600).
    pub key: PathBuf,
}

/// The agent's configuration, written at provisioning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Device id (topic level and broker user name).
    pub device_id: String,
    /// Profile name, a file `<profiles_dir>/<profile>.toml`.
    pub profile: String,
    /// Where device profiles are installed.
    pub profiles_dir: PathBuf,
    /// Where the device is installed.
    pub placement: Option<Placement>,
    /// Free tags set at provisioning (`pilot`, `building-a`), reported in the birth; OTA
    /// campaigns can target them.
    pub tags: Vec<String>,
    pub broker: BrokerAddr,
    /// Overrides the profile's health interval (seconds).
    pub health_interval_s: Option<u32>,
    /// Overrides the profile's MQTT keepalive (seconds).
    pub keepalive_s: Option<u16>,
    /// Folder for the device's durable state.
    pub data_dir: PathBuf,
    /// Replace peripherals (lamp, I2C sensors) with simulations: for demos and test rigs
    /// without the hardware. Never on a real device. Recorded sources without a `media`
    /// entry then record a test pattern.
    pub simulate_hardware: bool,
    /// Where each media source of the profile is read from, by source id, e.g.
    /// `[media.cam-judge] kind = "rtsp"`, `url = "rtsp://user:pass@10.0.0.5/main"`.
    pub media: std::collections::BTreeMap<String, gavel_record::SourceInput>,
    /// Over-the-air updates (`[ota]`); absent: the agent refuses `ota_install`.
    pub ota: Option<OtaConfig>,
    /// How long past its scheduled end a hearing that was never closed keeps recording
    /// before the schedule's safety stop (seconds).
    pub schedule_overrun_s: u32,
    /// The service-hall kiosk's page and tickets (`[kiosk]`; used by profiles with the
    /// `kiosk` capability).
    pub kiosk: KioskConfig,
    /// Write spoken announcements as WAV files into this folder instead of playing them
    /// (test rigs, demos, machines without speakers).
    pub announce_dir: Option<PathBuf>,
    /// Video wall output (`[wall]`, for the `command-wall` profile).
    pub wall: WallOutput,
    /// Live re-serve (`[live]`, for profiles with the `stream` capability).
    pub live: LiveConfig,
    /// Archive uploads and the storage policy of the recordings volume (`[archive]`).
    pub archive: ArchiveConfig,
    /// Live transcription for profiles with the `transcribe` capability (default on).
    /// Off reports the capability `disabled`: the controller then does not expect a
    /// transcript of this room's hearings (a court without the licence, a test rig).
    pub transcribe: bool,
}

/// The `[live]` section: where the live RTSP and HLS servers listen, and who may watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// RTSP server address (`rtsp://HOST:PORT/<source>/main|sub`).
    pub rtsp: std::net::SocketAddr,
    /// HLS over HTTP (`http://HOST:PORT/live/<source>/index.m3u8`); absent: no HLS.
    pub http: Option<std::net::SocketAddr>,
    /// Host name or address put in the advertised URLs (default: the listen address, or
    /// the host name when listening on every interface).
    pub host: Option<String>,
    /// Viewer accounts, `user:password` (RTSP and HLS). Empty: anyone on the network may
    /// watch (labs only; the agent warns).
    pub viewers: Vec<String>,
    /// A camera's own sub-stream, by source id (otherwise the main stream is transcoded).
    pub sub: std::collections::BTreeMap<String, String>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            rtsp: std::net::SocketAddr::from(([0, 0, 0, 0], 8554)),
            http: Some(std::net::SocketAddr::from(([0, 0, 0, 0], 8555))),
            host: None,
            viewers: Vec::new(),
            sub: std::collections::BTreeMap::new(),
        }
    }
}

impl LiveConfig {
    /// The viewer accounts, naming the one that is not `user:password`.
    pub fn accounts(&self) -> Result<Vec<gavel_stream::Viewer>, ConfigError> {
        self.viewers
            .iter()
            .map(|v| match v.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    Ok(gavel_stream::Viewer {
                        user: user.into(),
                        password: password.into(),
                    })
                }
                _ => Err(invalid("live.viewers", v, "expected USER:PASSWORD")),
            })
            .collect()
    }
}

/// The `[archive]` section: where closed segments are uploaded, under what cap, and the
/// storage policy's watermarks (`docs/archive.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// The controller's API, e.g. `http://controller.court:8700`. Absent: nothing is
    /// uploaded, so nothing is ever evicted (the storage alarms still work).
    pub url: Option<String>,
    /// Upload cap in kbit/s for this device (tribunal links); 0: uncapped.
    pub max_kbit_s: u64,
    /// Evict archived segments when free space on the recordings volume falls below this
    /// (MiB).
    pub low_free_mib: u64,
    /// ... until it is back above this (MiB).
    pub high_free_mib: u64,
    /// Raise `disk_full_forecast` when the volume would fill within this many seconds at
    /// the current write rate.
    pub forecast_horizon_s: u64,
    /// The write rate is measured over this many seconds.
    pub rate_window_s: u64,
    /// How often the volume is sampled (seconds).
    pub check_interval_s: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_kbit_s: 0,
            low_free_mib: 20 * 1024,
            high_free_mib: 40 * 1024,
            forecast_horizon_s: 6 * 3600,
            rate_window_s: 300,
            check_interval_s: 5,
        }
    }
}

/// The `[wall]` section: where a video wall shows its composed picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WallOutput {
    /// `display` (the device's screen), `frames` (the latest frame as a PPM file, for tests
    /// and demos) or `none`. Default: `display`, or `frames` with `simulate_hardware`.
    pub sink: Option<String>,
    /// Output size `WxH`. Default: the profile's `capabilities.wall.output`, or 640x360
    /// with `simulate_hardware`.
    pub size: Option<String>,
    /// Output frames per second.
    pub fps: u32,
    /// Frame file for `sink = "frames"` (default `<data_dir>/wall-frame.ppm`).
    pub frames_path: Option<PathBuf>,
    /// How often the frame file is rewritten, per second.
    pub frames_fps: u32,
}

impl Default for WallOutput {
    fn default() -> Self {
        Self {
            sink: None,
            size: None,
            fps: 25,
            frames_path: None,
            frames_fps: 2,
        }
    }
}

/// Parses `WxH` (both even, 32-7680).
pub fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    let (w, h): (u32, u32) = (w.parse().ok()?, h.parse().ok()?);
    let ok = |v: u32| (32..=7680).contains(&v) && v.is_multiple_of(2);
    (ok(w) && ok(h)).then_some((w, h))
}

/// The `[kiosk]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KioskConfig {
    /// Where the touchscreen page is served (the kiosk-mode browser opens it).
    pub listen: std::net::SocketAddr,
    /// The controller's API, e.g. `http://controller.court:8700` (case look-ups and queue
    /// lengths; tickets are issued without it).
    pub controller: Option<String>,
    /// This kiosk's digit in ticket numbers (1-9), unique among the kiosks of a court.
    pub number: u8,
    /// Court name printed on tickets (default: the placement's court).
    pub court_name: Option<String>,
    /// Printer port, overriding the profile's `capabilities.printer.port`.
    pub printer_port: Option<String>,
    /// The court's offset from UTC in minutes (when the numbering day starts).
    pub utc_offset_minutes: i32,
    /// Tickets per minute one screen may take, and in a burst.
    pub tickets_per_minute: u32,
    pub tickets_burst: u32,
    /// Look-ups per minute one client may make, and in a burst.
    pub lookups_per_minute: u32,
    pub lookups_burst: u32,
    /// Look-ups per minute for the whole kiosk.
    pub lookups_overall_per_minute: u32,
}

impl Default for KioskConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            controller: None,
            number: 1,
            court_name: None,
            printer_port: None,
            utc_offset_minutes: 8 * 60,
            tickets_per_minute: 30,
            tickets_burst: 10,
            lookups_per_minute: 6,
            lookups_burst: 3,
            lookups_overall_per_minute: 30,
        }
    }
}

/// Which installer carries out updates (`[ota] backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtaBackend {
    /// `gavel-ota`'s own installer: ed25519-signed `.gota` bundles, file-backed (or
    /// block-device) slots and the file-backed bootloader stub (simulated fleet, tests).
    #[default]
    Slots,
    /// RAUC on image-based devices: CMS-signed `.raucb` bundles, RAUC's slots, keyring and
    /// bootloader backend (`system.conf`); `rauc service` must run.
    Rauc,
}

/// The `[ota]` section: which installer, where its state is and whom to trust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtaConfig {
    /// Which installer: `slots` (default) or `rauc`.
    pub backend: OtaBackend,
    /// Folder of the A/B slots, their records, the boot state and the install journal
    /// (default `<data_dir>/ota`). With RAUC: the journal and the downloaded bundle only.
    pub slots_dir: Option<PathBuf>,
    /// Public key files (`gavelctl ota keygen`) whose signatures the device accepts
    /// (`slots` only; RAUC trusts the keyring its `system.conf` names).
    pub trusted_keys: Vec<PathBuf>,
    /// RAUC's `system.conf` (default: RAUC's own, `/etc/rauc/system.conf`).
    pub rauc_conf: Option<PathBuf>,
    /// The RAUC slot class whose A/B pair is updated (default `rootfs`).
    pub rauc_class: String,
    /// What reboots the device after an install or rollback (the agent exits first).
    /// Empty: nothing (a boot supervisor such as `gavel-simdevice` reboots on exit);
    /// with `backend = "rauc"` empty means `["systemctl", "reboot"]`.
    pub reboot_command: Vec<String>,
    /// Download cap in bits per second when the command names none (0: uncapped).
    pub max_bits_per_s: u64,
    /// After booting a new slot, commit only if healthy within this many seconds.
    pub health_deadline_s: u64,
    /// No install or reboot while a hearing is due within this many seconds.
    pub guard_s: u64,
    /// Boot attempts a new slot gets before the bootloader falls back.
    pub boot_attempts: u32,
}

impl Default for OtaConfig {
    fn default() -> Self {
        Self {
            backend: OtaBackend::Slots,
            slots_dir: None,
            trusted_keys: Vec::new(),
            rauc_conf: None,
            rauc_class: "rootfs".into(),
            reboot_command: Vec::new(),
            max_bits_per_s: 0,
            health_deadline_s: 120,
            guard_s: 1800,
            boot_attempts: gavel_ota::bootchooser::DEFAULT_ATTEMPTS,
        }
    }
}

impl OtaConfig {
    /// The slots folder, defaulting under the data folder.
    pub fn slots_dir(&self, data_dir: &Path) -> PathBuf {
        self.slots_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("ota"))
    }

    /// The command that reboots the device, if any (see [`OtaConfig::reboot_command`]).
    pub fn reboot(&self) -> Option<Vec<String>> {
        match (self.backend, self.reboot_command.is_empty()) {
            (_, false) => Some(self.reboot_command.clone()),
            (OtaBackend::Rauc, true) => Some(vec!["systemctl".into(), "reboot".into()]),
            (OtaBackend::Slots, true) => None,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            device_id: String::new(),
            profile: String::new(),
            profiles_dir: PathBuf::from("/usr/share/gavel/device-profiles"),
            placement: None,
            tags: Vec::new(),
            broker: BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: None,
            },
            health_interval_s: None,
            keepalive_s: None,
            data_dir: PathBuf::from("/var/lib/gavel-agent"),
            simulate_hardware: false,
            media: std::collections::BTreeMap::new(),
            ota: None,
            schedule_overrun_s: 3600,
            kiosk: KioskConfig::default(),
            announce_dir: None,
            wall: WallOutput::default(),
            live: LiveConfig::default(),
            archive: ArchiveConfig::default(),
            transcribe: true,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    File { file: PathBuf, message: String },
    #[error("setting `{key}` = {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

fn invalid(key: &str, value: impl ToString, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Reads the TLS identity files, naming the one that cannot be read.
pub fn read_tls(files: &TlsFiles) -> anyhow::Result<gavel_link::TlsIdentity> {
    use anyhow::Context;
    let read = |what: &str, path: &Path| {
        std::fs::read(path).with_context(|| {
            format!(
                "reading the {what} {} (run `gavel-agent enroll` to make it)",
                path.display()
            )
        })
    };
    Ok(gavel_link::TlsIdentity {
        ca: read("CA certificate", &files.ca)?,
        cert: read("device certificate", &files.cert)?,
        key: read("device key", &files.key)?,
    })
}

/// Parses `HOST:PORT`.
pub fn parse_host_port(s: &str) -> Option<BrokerAddr> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| BrokerAddr {
        host: host.to_owned(),
        port,
        tls: None,
    })
}

impl AgentConfig {
    /// Reads `file` over the defaults.
    pub fn from_file(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::File {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            file: file.to_owned(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })
    }

    /// Applies `GAVEL_*` variables.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (key, value) in vars {
            match key.as_str() {
                "GAVEL_DEVICE_ID" => self.device_id = value,
                "GAVEL_PROFILE" => self.profile = value,
                "GAVEL_PROFILES_DIR" => self.profiles_dir = value.into(),
                "GAVEL_DATA_DIR" => self.data_dir = value.into(),
                "GAVEL_SIMULATE_HARDWARE" => {
                    self.simulate_hardware = match value.as_str() {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" | "" => false,
                        _ => return Err(invalid(&key, &value, "expected 1/true or 0/false")),
                    }
                }
                "GAVEL_OTA_DIR" => {
                    self.ota.get_or_insert_with(OtaConfig::default).slots_dir = Some(value.into())
                }
                "GAVEL_OTA_BACKEND" => {
                    self.ota.get_or_insert_with(OtaConfig::default).backend = match value.as_str() {
                        "slots" => OtaBackend::Slots,
                        "rauc" => OtaBackend::Rauc,
                        _ => return Err(invalid(&key, &value, "expected slots or rauc")),
                    }
                }
                "GAVEL_OTA_KEYS" => {
                    self.ota.get_or_insert_with(OtaConfig::default).trusted_keys = value
                        .split(',')
                        .filter(|k| !k.trim().is_empty())
                        .map(|k| PathBuf::from(k.trim()))
                        .collect()
                }
                "GAVEL_BROKER" => {
                    let tls = self.broker.tls.take();
                    self.broker = parse_host_port(&value)
                        .ok_or_else(|| invalid(&key, &value, "expected HOST:PORT"))?;
                    self.broker.tls = tls;
                }
                "GAVEL_HEALTH_INTERVAL_S" => {
                    self.health_interval_s = Some(
                        value
                            .parse()
                            .map_err(|_| invalid(&key, &value, "expected seconds"))?,
                    )
                }
                "GAVEL_WALL_SINK" => self.wall.sink = Some(value),
                "GAVEL_WALL_SIZE" => self.wall.size = Some(value),
                "GAVEL_WALL_FRAMES" => {
                    self.wall.sink = Some("frames".into());
                    self.wall.frames_path = Some(value.into());
                }
                "GAVEL_WALL_FPS" => {
                    self.wall.fps = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected frames per second"))?
                }
                "GAVEL_WALL_FRAMES_FPS" => {
                    self.wall.frames_fps = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected frames per second"))?
                }
                "GAVEL_SCHEDULE_OVERRUN_S" => {
                    self.schedule_overrun_s = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected seconds"))?
                }
                "GAVEL_KIOSK_LISTEN" => {
                    self.kiosk.listen = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected HOST:PORT"))?
                }
                "GAVEL_CONTROLLER_URL" => self.kiosk.controller = Some(value),
                "GAVEL_KIOSK_NUMBER" => {
                    self.kiosk.number = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected a digit 1-9"))?
                }
                "GAVEL_PRINTER_PORT" => self.kiosk.printer_port = Some(value),
                "GAVEL_KIOSK_TICKETS_PER_MINUTE" => {
                    self.kiosk.tickets_per_minute = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected a number"))?;
                    self.kiosk.tickets_burst = (self.kiosk.tickets_per_minute / 6).max(1);
                }
                "GAVEL_ANNOUNCE_DIR" => self.announce_dir = Some(value.into()),
                "GAVEL_TRANSCRIBE" => {
                    self.transcribe = match value.as_str() {
                        "on" | "1" | "true" | "yes" => true,
                        "off" | "0" | "false" | "no" => false,
                        _ => return Err(invalid(&key, &value, "expected on or off")),
                    }
                }
                "GAVEL_LIVE_RTSP" => {
                    self.live.rtsp = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected ADDRESS:PORT"))?;
                }
                "GAVEL_LIVE_HTTP" => {
                    self.live.http = match value.as_str() {
                        "off" => None,
                        v => Some(v.parse().map_err(|_| {
                            invalid(&key, &value, "expected ADDRESS:PORT or `off`")
                        })?),
                    };
                }
                "GAVEL_LIVE_HOST" => self.live.host = Some(value),
                "GAVEL_LIVE_VIEWERS" => {
                    self.live.viewers = value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(String::from)
                        .collect();
                    self.live.accounts()?;
                }
                "GAVEL_ARCHIVE_URL" => self.archive.url = Some(value),
                "GAVEL_ARCHIVE_MAX_KBIT_S"
                | "GAVEL_RETENTION_LOW_MIB"
                | "GAVEL_RETENTION_HIGH_MIB"
                | "GAVEL_RETENTION_HORIZON_S"
                | "GAVEL_RETENTION_WINDOW_S"
                | "GAVEL_RETENTION_INTERVAL_S" => {
                    let n: u64 = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected a whole number"))?;
                    let a = &mut self.archive;
                    match key.as_str() {
                        "GAVEL_ARCHIVE_MAX_KBIT_S" => a.max_kbit_s = n,
                        "GAVEL_RETENTION_LOW_MIB" => a.low_free_mib = n,
                        "GAVEL_RETENTION_HIGH_MIB" => a.high_free_mib = n,
                        "GAVEL_RETENTION_HORIZON_S" => a.forecast_horizon_s = n,
                        "GAVEL_RETENTION_WINDOW_S" => a.rate_window_s = n,
                        _ => a.check_interval_s = n,
                    }
                }
                "GAVEL_KEEPALIVE_S" => {
                    self.keepalive_s = Some(
                        value
                            .parse()
                            .map_err(|_| invalid(&key, &value, "expected seconds"))?,
                    )
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks the values and returns the validated device id.
    pub fn validate(&self) -> Result<DeviceId, ConfigError> {
        let id = DeviceId::new(self.device_id.clone())
            .map_err(|e| invalid("device_id", &self.device_id, &e.to_string()))?;
        if self.profile.is_empty() {
            return Err(invalid(
                "profile",
                &self.profile,
                "name a device profile, e.g. courtroom-terminal",
            ));
        }
        if self.broker.host.is_empty() || self.broker.port == 0 {
            return Err(invalid(
                "broker",
                format!("{}:{}", self.broker.host, self.broker.port),
                "needs a host and a non-zero port",
            ));
        }
        if let Some(s) = self.health_interval_s
            && !(1..=3600).contains(&s)
        {
            return Err(invalid("health_interval_s", s, "must be 1-3600"));
        }
        if let Some(k) = self.keepalive_s
            && !(2..=600).contains(&k)
        {
            return Err(invalid("keepalive_s", k, "must be 2-600"));
        }
        if self.tags.len() > gavel_protocol::MAX_TAGS {
            return Err(invalid("tags", self.tags.len(), "at most 16 tags"));
        }
        for t in &self.tags {
            gavel_protocol::check_tag("tags", t)
                .map_err(|_| invalid("tags", t, "1-32 of a-z 0-9 - _ ."))?;
        }
        let a = &self.archive;
        if let Some(url) = &a.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "archive.url",
                url,
                "expected an http:// or https:// URL",
            ));
        }
        if a.high_free_mib < a.low_free_mib {
            return Err(invalid(
                "archive.high_free_mib",
                a.high_free_mib,
                "must be at least archive.low_free_mib",
            ));
        }
        if !(1..=3600).contains(&a.check_interval_s) {
            return Err(invalid(
                "archive.check_interval_s",
                a.check_interval_s,
                "must be 1-3600",
            ));
        }
        if a.rate_window_s < a.check_interval_s {
            return Err(invalid(
                "archive.rate_window_s",
                a.rate_window_s,
                "must be at least archive.check_interval_s",
            ));
        }
        if !(60..=86_400).contains(&self.schedule_overrun_s) {
            return Err(invalid(
                "schedule_overrun_s",
                self.schedule_overrun_s,
                "must be 60-86400",
            ));
        }
        if let Some(p) = &self.placement
            && (p.court.is_empty() || p.room.is_empty())
        {
            return Err(invalid(
                "placement",
                format!("{}/{}", p.court, p.room),
                "court and room must both be set",
            ));
        }
        if !(1..=9).contains(&self.kiosk.number) {
            return Err(invalid("kiosk.number", self.kiosk.number, "must be 1-9"));
        }
        if !(-14 * 60..=14 * 60).contains(&self.kiosk.utc_offset_minutes) {
            return Err(invalid(
                "kiosk.utc_offset_minutes",
                self.kiosk.utc_offset_minutes,
                "must be within ±840",
            ));
        }
        if let Some(c) = &self.kiosk.controller
            && url::Url::parse(c).is_err()
        {
            return Err(invalid("kiosk.controller", c, "not a URL"));
        }
        for (key, v) in [
            ("kiosk.tickets_per_minute", self.kiosk.tickets_per_minute),
            ("kiosk.tickets_burst", self.kiosk.tickets_burst),
            ("kiosk.lookups_per_minute", self.kiosk.lookups_per_minute),
            ("kiosk.lookups_burst", self.kiosk.lookups_burst),
            (
                "kiosk.lookups_overall_per_minute",
                self.kiosk.lookups_overall_per_minute,
            ),
        ] {
            if !(1..=10_000).contains(&v) {
                return Err(invalid(key, v, "must be 1-10000"));
            }
        }
        if let Some(sink) = &self.wall.sink
            && !matches!(sink.as_str(), "display" | "frames" | "none")
        {
            return Err(invalid(
                "wall.sink",
                sink,
                "must be display, frames or none",
            ));
        }
        if let Some(size) = &self.wall.size
            && parse_size(size).is_none()
        {
            return Err(invalid(
                "wall.size",
                size,
                "expected WxH, even, 32-7680 each",
            ));
        }
        if !(1..=60).contains(&self.wall.fps) {
            return Err(invalid("wall.fps", self.wall.fps, "must be 1-60"));
        }
        if !(1..=30).contains(&self.wall.frames_fps) {
            return Err(invalid(
                "wall.frames_fps",
                self.wall.frames_fps,
                "must be 1-30",
            ));
        }
        if let Some(ota) = &self.ota {
            if ota.backend == OtaBackend::Rauc {
                if let Some(c) = &ota.rauc_conf
                    && !c.is_file()
                {
                    return Err(invalid(
                        "ota.rauc_conf",
                        c.display(),
                        "no such file (RAUC's system.conf)",
                    ));
                }
                if ota.rauc_class.trim().is_empty() {
                    return Err(invalid("ota.rauc_class", "\"\"", "name a slot class"));
                }
            } else if ota.trusted_keys.is_empty() {
                return Err(invalid(
                    "ota.trusted_keys",
                    "[]",
                    "name at least one public key file (gavelctl ota keygen writes one)",
                ));
            }
            for k in &ota.trusted_keys {
                if let Err(e) = gavel_ota::signature::load_verifying_key(k) {
                    return Err(invalid("ota.trusted_keys", k.display(), &e.to_string()));
                }
            }
            if !(5..=3600).contains(&ota.health_deadline_s) {
                return Err(invalid(
                    "ota.health_deadline_s",
                    ota.health_deadline_s,
                    "must be 5-3600",
                ));
            }
            if !(1..=10).contains(&ota.boot_attempts) {
                return Err(invalid(
                    "ota.boot_attempts",
                    ota.boot_attempts,
                    "must be 1-10",
                ));
            }
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
        let c = AgentConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        c.validate().expect("valid");
    }

    #[test]
    fn the_archive_section_comes_from_env_and_bad_watermarks_are_named() {
        let mut c = AgentConfig {
            device_id: "room-101-terminal".into(),
            profile: "courtroom-terminal".into(),
            ..AgentConfig::default()
        };
        c.apply_env([
            ("GAVEL_ARCHIVE_URL".into(), "http://127.0.0.1:8700".into()),
            ("GAVEL_ARCHIVE_MAX_KBIT_S".into(), "400".into()),
            ("GAVEL_RETENTION_LOW_MIB".into(), "16".into()),
            ("GAVEL_RETENTION_HIGH_MIB".into(), "24".into()),
        ])
        .expect("env");
        c.validate().expect("valid");
        assert_eq!(c.archive.max_kbit_s, 400);
        assert_eq!(c.archive.low_free_mib, 16);
        c.archive.high_free_mib = 8;
        let err = c.validate().expect_err("high below low").to_string();
        assert!(err.contains("archive.high_free_mib"), "{err}");
        let err = c
            .apply_env([("GAVEL_ARCHIVE_MAX_KBIT_S".into(), "fast".into())])
            .expect_err("not a number")
            .to_string();
        assert!(err.contains("GAVEL_ARCHIVE_MAX_KBIT_S"), "{err}");
    }

    #[test]
    fn the_kiosk_section_comes_from_env_and_a_bad_digit_is_named() {
        let mut c = AgentConfig {
            device_id: "hall-kiosk-1".into(),
            profile: "service-kiosk".into(),
            ..AgentConfig::default()
        };
        c.apply_env([
            ("GAVEL_KIOSK_LISTEN".into(), "127.0.0.1:9000".into()),
            (
                "GAVEL_CONTROLLER_URL".into(),
                "http://127.0.0.1:8700".into(),
            ),
            ("GAVEL_PRINTER_PORT".into(), "/tmp/printer".into()),
            ("GAVEL_KIOSK_NUMBER".into(), "3".into()),
        ])
        .expect("env");
        c.validate().expect("valid");
        assert_eq!(c.kiosk.listen.port(), 9000);
        assert_eq!(c.kiosk.number, 3);
        c.kiosk.number = 0;
        let err = c.validate().expect_err("digit").to_string();
        assert!(err.contains("kiosk.number"), "{err}");
    }

    #[test]
    fn a_device_id_with_a_slash_is_refused_by_key() {
        let c = AgentConfig {
            device_id: "room/1".into(),
            profile: "ip-camera".into(),
            ..AgentConfig::default()
        };
        let err = c.validate().expect_err("bad id").to_string();
        assert!(err.contains("device_id") && err.contains("room/1"), "{err}");
    }

    #[test]
    fn env_sets_the_broker_and_names_bad_values() {
        let mut c = AgentConfig::default();
        c.apply_env([("GAVEL_BROKER".into(), "10.0.0.1:1883".into())])
            .expect("ok");
        assert_eq!(c.broker.port, 1883);
        let err = c
            .apply_env([("GAVEL_KEEPALIVE_S".into(), "soon".into())])
            .expect_err("bad")
            .to_string();
        assert!(err.contains("GAVEL_KEEPALIVE_S"), "{err}");
    }

    #[test]
    fn wall_output_comes_from_env_and_bad_values_are_named() {
        let mut c = AgentConfig {
            device_id: "wall-1".into(),
            profile: "command-wall".into(),
            ..AgentConfig::default()
        };
        c.apply_env([
            ("GAVEL_WALL_FRAMES".into(), "/tmp/f.ppm".into()),
            ("GAVEL_WALL_SIZE".into(), "960x540".into()),
            ("GAVEL_WALL_FPS".into(), "10".into()),
        ])
        .expect("env");
        c.validate().expect("valid");
        assert_eq!(c.wall.sink.as_deref(), Some("frames"));
        assert_eq!(parse_size("960x540"), Some((960, 540)));
        c.wall.size = Some("961x540".into());
        let err = c.validate().expect_err("odd").to_string();
        assert!(
            err.contains("wall.size") && err.contains("961x540"),
            "{err}"
        );
        c.wall.size = None;
        c.wall.sink = Some("hdmi".into());
        let err = c.validate().expect_err("sink").to_string();
        assert!(err.contains("wall.sink"), "{err}");
    }

    #[test]
    fn ota_needs_a_trusted_key_that_loads_and_names_the_bad_one() {
        let mut c = AgentConfig {
            device_id: "cam-1".into(),
            profile: "ip-camera".into(),
            ota: Some(OtaConfig::default()),
            ..AgentConfig::default()
        };
        let err = c.validate().expect_err("no key").to_string();
        assert!(err.contains("ota.trusted_keys"), "{err}");
        c.apply_env([("GAVEL_OTA_KEYS".into(), "/nonexistent/k.pub".into())])
            .expect("env");
        let err = c.validate().expect_err("missing key").to_string();
        assert!(err.contains("/nonexistent/k.pub"), "{err}");
        let good =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ota/test-keys/TEST-ONLY-release.pub");
        c.apply_env([
            ("GAVEL_OTA_KEYS".into(), good.display().to_string()),
            ("GAVEL_OTA_DIR".into(), "/tmp/slots".into()),
        ])
        .expect("env");
        c.validate().expect("valid");
        let ota = c.ota.as_ref().expect("ota");
        assert_eq!(ota.slots_dir(Path::new("/d")), PathBuf::from("/tmp/slots"));
        assert_eq!(ota.health_deadline_s, 120);
    }

    #[test]
    fn ota_backend_rauc_is_chosen_in_the_config_needs_no_ed25519_key_and_reboots_the_system() {
        let dir = tempfile::tempdir().expect("tmp");
        let conf = dir.path().join("system.conf");
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            format!(
                "device_id = \"term-1\"\nprofile = \"courtroom-terminal\"\n\n[ota]\nbackend = \"rauc\"\nrauc_conf = \"{}\"\n",
                conf.display()
            ),
        )
        .expect("write");
        let c = AgentConfig::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
        let ota = c.ota.as_ref().expect("ota");
        assert_eq!(ota.backend, OtaBackend::Rauc);
        let err = c.validate().expect_err("no system.conf").to_string();
        assert!(err.contains("ota.rauc_conf"), "{err}");
        std::fs::write(&conf, "[system]\n").expect("conf");
        c.validate().expect("valid without trusted_keys");
        assert_eq!(
            ota.reboot(),
            Some(vec!["systemctl".to_string(), "reboot".to_string()])
        );
        let slots = OtaConfig::default();
        assert_eq!(slots.backend, OtaBackend::Slots);
        assert_eq!(slots.reboot(), None, "the boot supervisor reboots");
        let mut env = AgentConfig::default();
        let err = env
            .apply_env([("GAVEL_OTA_BACKEND".into(), "swupdate".into())])
            .expect_err("unknown backend")
            .to_string();
        assert!(
            err.contains("GAVEL_OTA_BACKEND") && err.contains("swupdate"),
            "{err}"
        );
    }
}
