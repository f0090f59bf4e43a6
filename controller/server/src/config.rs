//! Controller settings: defaults, then a TOML file, then `GAVEL_*` environment variables,
//! then command-line flags, then [`Settings::validate`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where devices connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum BrokerSettings {
    /// Run an MQTT broker inside the controller (rumqttd) listening on `listen`.
    Embedded {
        /// Default `0.0.0.0:1884`, beside a system Mosquitto on 1883. Port 0 picks a free port.
        listen: SocketAddr,
        /// Largest MQTT payload the broker accepts, in bytes.
        #[serde(default = "default_max_payload")]
        max_payload_bytes: usize,
    },
    /// Use an external broker (Mosquitto, EMQX).
    External { host: String, port: u16 },
}

fn default_max_payload() -> usize {
    1024 * 1024
}

/// Controller settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// HTTP API, metrics and dashboard. Port 0 picks a free port.
    pub http_listen: SocketAddr,
    /// MQTT broker.
    pub broker: BrokerSettings,
    /// Database URL: `sqlite://PATH` or `postgres://...`. Empty: SQLite in `data_dir`.
    pub database_url: String,
    /// Folder for the embedded database and other state.
    pub data_dir: PathBuf,
    /// How long an API command waits for the device's ack, in milliseconds.
    pub command_timeout_ms: u64,
    /// Base URL devices download OTA bundles from (`http://controller.court:8700`).
    /// Empty: `http://` plus the HTTP listen address.
    pub ota_base_url: String,
    /// Record-every-hearing enforcement.
    pub enforcement: EnforcementSettings,
    /// The schedules pushed to recording devices.
    pub schedule: ScheduleSettings,
    /// Several instances against one PostgreSQL and one external broker.
    pub cluster: ClusterSettings,
    /// The service hall: queue and case look-up from kiosks.
    pub hall: HallSettings,
    /// Devices connect over mutual TLS through the controller's gate (embedded broker).
    pub mqtt_tls: MqttTlsSettings,
    /// Users, roles and the audit log of the API.
    pub auth: AuthSettings,
    /// The hearing archive: local folder or S3-compatible bucket (`docs/archive.md`).
    pub archive: crate::archive::ArchiveSettings,
    /// The controller's own MQTT connections use mutual TLS with the files in this folder
    /// (`ca.pem`, `controller.pem`, `controller.key`, as written by
    /// `gavel-controller pki mosquitto`). For an external broker with the generated
    /// configuration. Env: GAVEL_MQTT_TLS_DIR.
    pub mqtt_client_tls_dir: Option<PathBuf>,
    /// `HOST:PORT` of the TLS broker devices are told at enrollment when it is not the
    /// controller's gate (a Mosquitto with the generated configuration). Env:
    /// GAVEL_DEVICE_BROKER.
    pub device_broker: Option<String>,
    /// How long device certificates live, in seconds (default 90 days); devices renew when
    /// two thirds have passed. Env: GAVEL_DEVICE_CERT_VALIDITY_S.
    pub device_cert_validity_s: u32,
}

/// The service hall (`[hall]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HallSettings {
    /// Secret the case check codes are derived from (HMAC-SHA256 of the case number).
    /// Empty: a random one per start (codes then change on every restart; set it in
    /// production, e.g. through `GAVEL_HALL_SECRET`).
    pub lookup_secret: String,
    /// Services shown on the hall display even when nobody waits for them.
    pub services: Vec<String>,
    /// Service time assumed before any was measured, in seconds.
    pub default_service_s: u32,
}

impl Default for HallSettings {
    fn default() -> Self {
        Self {
            lookup_secret: String::new(),
            services: ["filing", "consultation", "payment", "mediation"]
                .map(str::to_owned)
                .to_vec(),
            default_service_s: 300,
        }
    }
}

/// API access control (issue 9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Require signed-in users. May be off only when the API listens on loopback
    /// (development rigs and feature tests).
    pub enabled: bool,
    /// `NAME:PASSWORD` of an administrator made at start when no user exists yet
    /// (`GAVEL_BOOTSTRAP_ADMIN`; prefer the environment to the file).
    pub bootstrap_admin: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bootstrap_admin: None,
        }
    }
}

/// The MQTT TLS gate in front of the embedded broker (issue 9): device certificates from the
/// controller's CA, the per-device ACL. When on, the embedded broker itself listens on
/// loopback only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttTlsSettings {
    /// Where devices connect over TLS (`0.0.0.0:8883`). None: no gate.
    pub listen: Option<SocketAddr>,
    /// DNS names and IP addresses in the gate's server certificate.
    pub names: Vec<String>,
}

impl Default for MqttTlsSettings {
    fn default() -> Self {
        Self {
            listen: None,
            names: vec!["localhost".into(), "127.0.0.1".into()],
        }
    }
}

/// What recording devices are told about their room's hearings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Devices start recording this many seconds before a hearing's scheduled start.
    pub pre_roll_s: u32,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self { pre_roll_s: 60 }
    }
}

impl ScheduleSettings {
    /// The schedule core's settings.
    pub fn fleet(&self) -> gavel_fleet::schedule::Settings {
        gavel_fleet::schedule::Settings {
            pre_roll: time::Duration::seconds(i64::from(self.pre_roll_s)),
            ..gavel_fleet::schedule::Settings::default()
        }
    }
}

/// Scale-out: instances share the device traffic and elect one scheduler (see ADR 0007).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Run as one instance of several. Needs PostgreSQL and an external broker.
    pub enabled: bool,
    /// Shared-subscription group the instances split device traffic in.
    pub group: String,
    /// PostgreSQL advisory lock key that elects the scheduler.
    pub lock_key: i64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            group: "gavel-controllers".into(),
            lock_key: 0x6761_7665_6c00,
        }
    }
}

/// Alarm thresholds (see `gavel_fleet::enforcement::Settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnforcementSettings {
    /// Seconds after a hearing's start before "not recording" is an alarm.
    pub grace_s: u32,
    /// Seconds without a closed segment before recording counts as stalled.
    pub stall_after_s: u32,
    /// Minutes after the start before an unopened hearing is late.
    pub late_after_min: u32,
    /// Seconds between escalation steps of an unacknowledged alarm.
    pub escalate_after_s: u32,
    /// Courts' UTC offset in hours, for hearing times given without one (China: 8).
    pub utc_offset_h: i8,
}

impl Default for EnforcementSettings {
    fn default() -> Self {
        Self {
            grace_s: 60,
            stall_after_s: 45,
            late_after_min: 10,
            escalate_after_s: 300,
            utc_offset_h: 8,
        }
    }
}

impl EnforcementSettings {
    /// The engine's settings.
    pub fn engine(&self) -> gavel_fleet::enforcement::Settings {
        gavel_fleet::enforcement::Settings {
            grace: time::Duration::seconds(i64::from(self.grace_s)),
            stall_after: time::Duration::seconds(i64::from(self.stall_after_s)),
            late_after: time::Duration::minutes(i64::from(self.late_after_min)),
            escalate_after: time::Duration::seconds(i64::from(self.escalate_after_s.max(1))),
            ..gavel_fleet::enforcement::Settings::default()
        }
    }

    /// The courts' UTC offset.
    pub fn offset(&self) -> time::UtcOffset {
        time::UtcOffset::from_hms(self.utc_offset_h, 0, 0).unwrap_or(time::UtcOffset::UTC)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            broker: BrokerSettings::Embedded {
                listen: SocketAddr::from(([0, 0, 0, 0], 1884)),
                max_payload_bytes: default_max_payload(),
            },
            database_url: String::new(),
            data_dir: PathBuf::from("/var/lib/gavel"),
            command_timeout_ms: 5000,
            ota_base_url: String::new(),
            enforcement: EnforcementSettings::default(),
            schedule: ScheduleSettings::default(),
            cluster: ClusterSettings::default(),
            hall: HallSettings::default(),
            mqtt_tls: MqttTlsSettings::default(),
            auth: AuthSettings::default(),
            archive: crate::archive::ArchiveSettings::default(),
            mqtt_client_tls_dir: None,
            device_broker: None,
            device_cert_validity_s: 90 * 24 * 3600,
        }
    }
}

/// A setting with an unacceptable value.
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

impl Settings {
    /// Reads `file` over the defaults.
    pub fn from_file(file: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::File {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            file: file.to_owned(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })
    }

    /// Applies `GAVEL_*` variables from `vars` (pass `std::env::vars()`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (key, value) in vars {
            match key.as_str() {
                "GAVEL_HTTP_LISTEN" => {
                    self.http_listen = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected HOST:PORT"))?
                }
                "GAVEL_DATABASE_URL" => self.database_url = value,
                "GAVEL_ALARM_GRACE_S" => {
                    self.enforcement.grace_s = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected seconds"))?
                }
                "GAVEL_ALARM_ESCALATE_S" => {
                    self.enforcement.escalate_after_s = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected seconds"))?
                }
                "GAVEL_SCHEDULE_PRE_ROLL_S" => {
                    self.schedule.pre_roll_s = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected seconds"))?
                }
                "GAVEL_DATA_DIR" => self.data_dir = value.into(),
                k if k.starts_with("GAVEL_ARCHIVE_") => {
                    self.archive.apply_env(k, &value);
                }
                "GAVEL_HALL_SECRET" => self.hall.lookup_secret = value,
                "GAVEL_CLUSTER" => {
                    self.cluster.enabled = match value.as_str() {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" | "" => false,
                        _ => return Err(invalid(&key, &value, "expected true or false")),
                    }
                }
                "GAVEL_CLUSTER_GROUP" => self.cluster.group = value,
                "GAVEL_OTA_BASE_URL" => self.ota_base_url = value,
                "GAVEL_MQTT_LISTEN" => {
                    let listen = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected HOST:PORT"))?;
                    self.broker = BrokerSettings::Embedded {
                        listen,
                        max_payload_bytes: default_max_payload(),
                    };
                }
                "GAVEL_AUTH" => {
                    self.auth.enabled = match value.as_str() {
                        "on" | "true" | "1" => true,
                        "off" | "false" | "0" => false,
                        _ => return Err(invalid(&key, &value, "expected on or off")),
                    }
                }
                "GAVEL_BOOTSTRAP_ADMIN" => self.auth.bootstrap_admin = Some(value),
                "GAVEL_MQTT_TLS_DIR" => self.mqtt_client_tls_dir = Some(value.into()),
                "GAVEL_DEVICE_CERT_VALIDITY_S" => {
                    self.device_cert_validity_s = value
                        .parse()
                        .ok()
                        .filter(|s| *s >= 10)
                        .ok_or_else(|| invalid(&key, &value, "expected seconds, at least 10"))?
                }
                "GAVEL_DEVICE_BROKER" => {
                    if value
                        .rsplit_once(':')
                        .and_then(|(_, p)| p.parse::<u16>().ok())
                        .is_none()
                    {
                        return Err(invalid(&key, &value, "expected HOST:PORT"));
                    }
                    self.device_broker = Some(value)
                }
                "GAVEL_MQTT_TLS_LISTEN" => {
                    let listen = value
                        .parse()
                        .map_err(|_| invalid(&key, &value, "expected HOST:PORT"))?;
                    self.mqtt_tls.listen = Some(listen);
                }
                "GAVEL_MQTT_EXTERNAL" => {
                    let (host, port) = value
                        .rsplit_once(':')
                        .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
                        .ok_or_else(|| invalid(&key, &value, "expected HOST:PORT"))?;
                    self.broker = BrokerSettings::External { host, port };
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The database URL to use: the configured one, or SQLite in `data_dir`.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("gavel.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.archive
            .validate()
            .map_err(|(key, value, reason)| invalid(&key, value, &reason))?;
        let url = &self.ota_base_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "ota_base_url",
                &self.ota_base_url,
                "expected an http:// or https:// URL",
            ));
        }
        let url = self.effective_database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                &self.database_url,
                "expected sqlite://PATH or postgres://USER@HOST/DB",
            ));
        }
        if let (Some(listen), BrokerSettings::External { .. }) =
            (self.mqtt_tls.listen, &self.broker)
        {
            return Err(invalid(
                "mqtt_tls.listen",
                listen,
                "the TLS gate fronts the embedded broker; for Mosquitto use `gavel-controller pki mosquitto`",
            ));
        }
        if !self.auth.enabled && !self.http_listen.ip().is_loopback() {
            return Err(invalid(
                "auth.enabled",
                "false",
                "the API may run without sign-in only on a loopback address; set http_listen to 127.0.0.1:PORT or turn auth on",
            ));
        }
        if let Some(b) = &self.auth.bootstrap_admin
            && !b.contains(':')
        {
            return Err(invalid(
                "auth.bootstrap_admin",
                "(hidden)",
                "expected NAME:PASSWORD",
            ));
        }
        if self.mqtt_tls.listen.is_some() && self.mqtt_tls.names.is_empty() {
            return Err(invalid(
                "mqtt_tls.names",
                "[]",
                "the gate certificate needs at least one DNS name or IP address",
            ));
        }
        if !(-12..=14).contains(&self.enforcement.utc_offset_h) {
            return Err(invalid(
                "enforcement.utc_offset_h",
                self.enforcement.utc_offset_h,
                "must be -12..14",
            ));
        }
        if self.schedule.pre_roll_s > gavel_protocol::MAX_PRE_ROLL_S {
            return Err(invalid(
                "schedule.pre_roll_s",
                self.schedule.pre_roll_s,
                "must be 0-3600",
            ));
        }
        if self.command_timeout_ms == 0 || self.command_timeout_ms > 600_000 {
            return Err(invalid(
                "command_timeout_ms",
                self.command_timeout_ms,
                "must be 1-600000",
            ));
        }
        if self.cluster.enabled {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(
                    "database_url",
                    &self.database_url,
                    "cluster.enabled needs a shared PostgreSQL database (postgres://...)",
                ));
            }
            if matches!(self.broker, BrokerSettings::Embedded { .. }) {
                return Err(invalid(
                    "broker",
                    "embedded",
                    "cluster.enabled needs an external broker that every instance shares",
                ));
            }
            let group = &self.cluster.group;
            if group.is_empty() || group.contains(['/', '+', '#']) {
                return Err(invalid(
                    "cluster.group",
                    group,
                    "must be non-empty without '/', '+' or '#'",
                ));
            }
        }
        match &self.broker {
            BrokerSettings::Embedded {
                max_payload_bytes, ..
            } if *max_payload_bytes < gavel_protocol::MAX_PAYLOAD => {
                return Err(invalid(
                    "broker.max_payload_bytes",
                    max_payload_bytes,
                    "must be at least 65536 (the protocol's largest message)",
                ));
            }
            BrokerSettings::External { host, port } if host.is_empty() || *port == 0 => {
                return Err(invalid(
                    "broker",
                    format!("{host}:{port}"),
                    "external broker needs host and port",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_parses_and_validates() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("controller.example.toml");
        let s = Settings::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        s.validate().expect("valid");
    }

    #[test]
    fn env_overrides_name_the_bad_variable() {
        let mut s = Settings::default();
        let err = s
            .apply_env([("GAVEL_HTTP_LISTEN".to_string(), "nope".to_string())])
            .expect_err("bad")
            .to_string();
        assert!(
            err.contains("GAVEL_HTTP_LISTEN") && err.contains("nope"),
            "{err}"
        );
        s.apply_env([(
            "GAVEL_MQTT_EXTERNAL".to_string(),
            "127.0.0.1:1883".to_string(),
        )])
        .expect("ok");
        assert_eq!(
            s.broker,
            BrokerSettings::External {
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
    }

    #[test]
    fn a_cluster_needs_postgres_and_an_external_broker() {
        let mut s = Settings::default();
        s.apply_env([("GAVEL_CLUSTER".to_string(), "true".to_string())])
            .expect("ok");
        let err = s.validate().expect_err("sqlite").to_string();
        assert!(err.contains("PostgreSQL"), "{err}");
        s.database_url = "postgres://u@h/db".into();
        let err = s.validate().expect_err("embedded").to_string();
        assert!(err.contains("external broker"), "{err}");
        s.broker = BrokerSettings::External {
            host: "127.0.0.1".into(),
            port: 1883,
        };
        s.validate().expect("valid cluster");
    }

    #[test]
    fn an_unknown_database_scheme_is_refused() {
        let s = Settings {
            database_url: "mysql://x".into(),
            ..Settings::default()
        };
        assert!(
            s.validate()
                .expect_err("bad")
                .to_string()
                .contains("database_url")
        );
    }

    #[test]
    fn an_unknown_key_in_the_file_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "htp_listen = \"x\"\n").expect("write");
        let err = Settings::from_file(&f).expect_err("unknown").to_string();
        assert!(err.contains("htp_listen"), "{err}");
    }
}
