//! # gavel-hil
//!
//! Process fixtures for whole-system tests: the real `gavel-controller` and `gavel-agent`
//! binaries, a Mosquitto broker, a PostgreSQL database, ChromeDriver. Each fixture spawns,
//! waits until ready, and kills on drop; a failing test prints the tail of each process's
//! log. Tests bind free ports and use temporary folders only.
//!
//! Environment:
//! - `GAVEL_TEST_MQTT=HOST:PORT`: external broker to test against (default: the machine's
//!   Mosquitto on 127.0.0.1:1883 when it answers, else a private `mosquitto` on a free port).
//! - `GAVEL_TEST_POSTGRES=postgres://USER@HOST:PORT`: PostgreSQL server (default
//!   `postgres://postgres@127.0.0.1:5432`).
//! - `GAVEL_TEST_VISCA_PORT`, `GAVEL_TEST_PRINTER_PORT`, `GAVEL_TEST_SIGN_PORT`: real
//!   serial devices for the hardware tests that support them (see [`serial_peers`]).
//!
//! Courtroom hardware: [`serial_peers`] (socat pty pairs and VISCA, ESC/POS and sign
//! emulators) and [`onvif_stub`] (an ONVIF camera answering recorded SOAP responses).
//! Recording: [`media`] (simulated RTSP cameras and audio hosts, the recorder process,
//! `ffprobe`).

pub mod device_mqtt;
pub mod fleet_sim;
pub mod media;
pub mod onvif_stub;
pub mod serial_peers;
pub mod transcriber_sim;
pub mod usage;

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Path of a workspace binary built next to this test executable.
pub fn bin(name: &str) -> PathBuf {
    // `GAVEL_TEST_BIN_DIR` points elsewhere (e.g. release binaries for a dev-built bench).
    if let Ok(dir) = std::env::var("GAVEL_TEST_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; run `cargo build --workspace --bins` first (`cargo xtask test` does)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (released before returning; racy but fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A unique id for this test run, usable in device ids.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn reachable(addr: &str) -> bool {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// A child process that is killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd`, sending its output to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> anyhow::Result<Self> {
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child's pid has no memory-safety concerns.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes with its sockets open (a hung device).
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Proc::freeze`].
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit; returns whether it exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.thaw();
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!(
                "----- last lines of {} ({}) -----",
                self.name,
                self.log.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Which broker a controller uses.
#[derive(Debug, Clone)]
pub enum Broker {
    Embedded,
    External { host: String, port: u16 },
}

/// The controller as a process.
pub struct Controller {
    pub proc: Proc,
    /// Base URL of the API, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Where devices reach the broker.
    pub mqtt: (String, u16),
    /// Where devices reach the TLS gate (`GAVEL_MQTT_TLS_LISTEN`), when on.
    pub mqtt_tls: Option<(String, u16)>,
}

impl Controller {
    /// Starts `gavel-controller` with its data in `dir` and waits until it is ready.
    pub fn start(dir: &Path, broker: &Broker, database_url: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with_env(dir, broker, database_url, &[])
    }

    /// Like [`Controller::start`], with extra environment (e.g. `GAVEL_ALARM_GRACE_S`).
    pub fn start_with_env(
        dir: &Path,
        broker: &Broker,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let ready = dir.join("controller.ready");
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(bin("gavel-controller"));
        cmd.arg("--http")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.join("controller-data"))
            .arg("--ready-file")
            .arg(&ready)
            .env("GAVEL_LOG", "info,rumqttd=off,tower_http=warn")
            // Feature tests run without sign-in (loopback only); tests/access.rs turns it on.
            .env("GAVEL_AUTH", "off")
            .envs(env.iter().copied());
        match broker {
            Broker::Embedded => {
                cmd.arg("--mqtt-listen").arg("127.0.0.1:0");
            }
            Broker::External { host, port } => {
                cmd.arg("--mqtt-external").arg(format!("{host}:{port}"));
            }
        }
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let mut proc = Proc::spawn(
            "gavel-controller",
            cmd,
            dir.join(format!("controller-{n}.log")),
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && text.ends_with('\n')
            {
                break text;
            }
            if !proc.alive() {
                bail!("controller exited during start:\n{}", proc.log_text());
            }
            if Instant::now() > deadline {
                bail!("controller not ready within 30 s:\n{}", proc.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut http = None;
        let mut mqtt = None;
        let mut mqtt_tls = None;
        for part in line.split_whitespace() {
            if let Some(v) = part.strip_prefix("mqtt_tls=") {
                let (h, p) = v.rsplit_once(':').context("mqtt_tls=HOST:PORT")?;
                mqtt_tls = Some((h.to_owned(), p.parse()?));
            }
            if let Some(v) = part.strip_prefix("http=") {
                http = Some(format!("http://{v}"));
            }
            if let Some(v) = part.strip_prefix("mqtt=") {
                let (h, p) = v.rsplit_once(':').context("mqtt=HOST:PORT")?;
                mqtt = Some((h.to_owned(), p.parse()?));
            }
        }
        Ok(Self {
            proc,
            url: http.context("ready file names http=")?,
            mqtt: mqtt.context("ready file names mqtt=")?,
            mqtt_tls,
        })
    }

    /// `GET path` as JSON; `None` on 404.
    pub async fn get(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let resp = reqwest::get(format!("{}{path}", self.url)).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(Some(serde_json::from_str(&body)?))
    }

    /// Sends a command (`{"type": ...}`) to `device` through the controller's REST API and
    /// returns the device's acknowledgement as JSON.
    pub async fn command(&self, device: &str, body: Value) -> anyhow::Result<Value> {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/devices/{device}/commands", self.url))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        serde_json::from_str(&text)
            .with_context(|| format!("command to {device}: {status}: not JSON: {text}"))
    }

    /// The capability `name` that `device` reported in its birth (`null` if none).
    pub async fn capability(&self, device: &str, name: &str) -> Value {
        self.device(device)
            .await
            .and_then(|d| {
                d["capabilities"]
                    .as_array()?
                    .iter()
                    .find(|c| c["name"] == name)
                    .cloned()
            })
            .unwrap_or_default()
    }

    /// The value of a Prometheus counter or gauge without labels (0 when absent).
    pub async fn metric(&self, name: &str) -> u64 {
        let Ok(resp) = reqwest::get(format!("{}/metrics", self.url)).await else {
            return 0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .find(|l| !l.starts_with('#') && l.split(' ').next() == Some(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Runs `gavelctl` against this controller: (success, stdout, stderr).
    pub fn gavelctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(bin("gavelctl"))
            .arg("--controller")
            .arg(&self.url)
            .args(args)
            .output()
            .expect("gavelctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The id the controller gave the hearing of case `case` (panics when there is none).
    pub fn hearing_id(&self, case: &str) -> String {
        let (ok, out, err) = self.gavelctl(&["--json", "hearings", "ls"]);
        assert!(ok, "{err}");
        let list: Value = serde_json::from_str(&out).expect("hearing list is JSON");
        list.as_array()
            .expect("a list")
            .iter()
            .find(|h| h["case_number"] == case)
            .and_then(|h| h["id"].as_str())
            .unwrap_or_else(|| panic!("no hearing of case {case}: {list}"))
            .to_owned()
    }

    /// The device record, if known.
    pub async fn device(&self, id: &str) -> Option<Value> {
        self.get(&format!("/api/v1/devices/{id}"))
            .await
            .ok()
            .flatten()
    }

    /// Polls until the device's `online` flag equals `online`; returns how long it took.
    pub async fn wait_online(
        &self,
        id: &str,
        online: bool,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            if let Some(d) = self.device(id).await
                && d["online"].as_bool() == Some(online)
            {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!(
                    "device {id} not online={online} within {timeout:?}: {:?}",
                    self.device(id).await
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Settings for a simulated device.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub id: String,
    pub profile: String,
    pub court: String,
    pub room: String,
    pub keepalive_s: u16,
    pub health_interval_s: u32,
}

impl AgentSpec {
    pub fn new(id: &str, profile: &str) -> Self {
        Self {
            id: id.to_owned(),
            profile: profile.to_owned(),
            court: "test-court".into(),
            room: "room-1".into(),
            keepalive_s: 2,
            health_interval_s: 1,
        }
    }
}

/// The repository's `device-profiles/` folder.
pub fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../device-profiles")
}

/// Starts `gavel-agent` for `spec` against `broker`.
pub fn start_agent(dir: &Path, spec: &AgentSpec, broker: &(String, u16)) -> anyhow::Result<Proc> {
    start_agent_with(dir, spec, broker, &[])
}

/// Starts `gavel-agent` with extra arguments (e.g. `--probe-rate`).
pub fn start_agent_with(
    dir: &Path,
    spec: &AgentSpec,
    broker: &(String, u16),
    extra: &[&str],
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin("gavel-agent"));
    cmd.args(extra)
        .args(agent_args(spec, broker))
        .env("GAVEL_DATA_DIR", dir.join(format!("agent-{}", spec.id)))
        .env("GAVEL_LOG", "info")
        // Agents side by side: live servers on ports the system picks.
        .env("GAVEL_LIVE_RTSP", "127.0.0.1:0")
        .env("GAVEL_LIVE_HTTP", "127.0.0.1:0")
        // Whisper on every simulated courtroom would starve 2 cores; the tests of
        // transcription turn it on (`GAVEL_TRANSCRIBE=on` and `GAVEL_MODELS_DIR`).
        .env("GAVEL_TRANSCRIBE", "off");
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    Proc::spawn(
        &format!("gavel-agent {}", spec.id),
        cmd,
        dir.join(format!("agent-{}-{n}.log", spec.id)),
    )
}

/// Starts `gavel-agent` for `spec` on real (or emulated) peripherals: without
/// `--simulate-hardware`, so the profile's ports and devices are opened for real, with
/// profiles from `profiles` (a test's own copies pointing at its emulators).
pub fn start_agent_on_hardware(
    dir: &Path,
    spec: &AgentSpec,
    broker: &(String, u16),
    profiles: &Path,
    extra: &[&str],
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin("gavel-agent"));
    let repo_profiles = profiles_dir().display().to_string();
    let args: Vec<String> = agent_args(spec, broker)
        .into_iter()
        .filter(|a| a != "--simulate-hardware")
        .map(|a| {
            if a == repo_profiles {
                profiles.display().to_string()
            } else {
                a
            }
        })
        .collect();
    cmd.args(extra)
        .args(args)
        .env("GAVEL_DATA_DIR", dir.join(format!("agent-{}", spec.id)))
        .env("GAVEL_LOG", "info")
        // Agents side by side: live servers on ports the system picks.
        .env("GAVEL_LIVE_RTSP", "127.0.0.1:0")
        .env("GAVEL_LIVE_HTTP", "127.0.0.1:0")
        // Whisper on every simulated courtroom would starve 2 cores; the tests of
        // transcription turn it on (`GAVEL_TRANSCRIBE=on` and `GAVEL_MODELS_DIR`).
        .env("GAVEL_TRANSCRIBE", "off");
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    Proc::spawn(
        &format!("gavel-agent {}", spec.id),
        cmd,
        dir.join(format!("agent-{}-{n}.log", spec.id)),
    )
}

/// Starts `gavel-agent` on simulated hardware with profiles from `profiles` (a test's own
/// copies, e.g. with shorter segments), extra arguments and environment.
pub fn start_agent_profiles(
    dir: &Path,
    spec: &AgentSpec,
    broker: &(String, u16),
    profiles: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Proc> {
    let repo_profiles = profiles_dir().display().to_string();
    let args: Vec<String> = agent_args(spec, broker)
        .into_iter()
        .map(|a| {
            if a == repo_profiles {
                profiles.display().to_string()
            } else {
                a
            }
        })
        .collect();
    let mut cmd = Command::new(bin("gavel-agent"));
    cmd.args(extra)
        .args(args)
        .env("GAVEL_DATA_DIR", dir.join(format!("agent-{}", spec.id)))
        .env("GAVEL_LOG", "info")
        .env("GAVEL_LIVE_RTSP", "127.0.0.1:0")
        .env("GAVEL_LIVE_HTTP", "127.0.0.1:0")
        .env("GAVEL_TRANSCRIBE", "off")
        .envs(env.iter().copied());
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    Proc::spawn(
        &format!("gavel-agent {}", spec.id),
        cmd,
        dir.join(format!("agent-{}-{n}.log", spec.id)),
    )
}

/// A copy of the repository's device profiles in `dir` with every recording profile's
/// segments `segment_s` long (tests that need several segments quickly).
pub fn profiles_with_segments(dir: &Path, segment_s: u32) -> anyhow::Result<PathBuf> {
    let out = dir.join("profiles");
    std::fs::create_dir_all(&out)?;
    for entry in std::fs::read_dir(profiles_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)?;
            let text: String = text
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("segment_s") {
                        format!("segment_s = {segment_s}")
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(out.join(path.file_name().context("file name")?), text)?;
        }
    }
    Ok(out)
}

/// Starts `gavel-agent` with extra arguments and environment (e.g. `GAVEL_KIOSK_LISTEN`).
pub fn start_agent_env(
    dir: &Path,
    spec: &AgentSpec,
    broker: &(String, u16),
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin("gavel-agent"));
    cmd.args(extra)
        .args(agent_args(spec, broker))
        .env("GAVEL_DATA_DIR", dir.join(format!("agent-{}", spec.id)))
        .env("GAVEL_LOG", "info")
        // Agents side by side: live servers on ports the system picks.
        .env("GAVEL_LIVE_RTSP", "127.0.0.1:0")
        .env("GAVEL_LIVE_HTTP", "127.0.0.1:0")
        // Whisper on every simulated courtroom would starve 2 cores; the tests of
        // transcription turn it on (`GAVEL_TRANSCRIBE=on` and `GAVEL_MODELS_DIR`).
        .env("GAVEL_TRANSCRIBE", "off")
        .envs(env.iter().copied());
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    Proc::spawn(
        &format!("gavel-agent {}", spec.id),
        cmd,
        dir.join(format!("agent-{}-{n}.log", spec.id)),
    )
}

/// The agent command line for `spec`.
fn agent_args(spec: &AgentSpec, broker: &(String, u16)) -> Vec<String> {
    [
        "--device-id",
        &spec.id,
        "--profile",
        &spec.profile,
        "--profiles-dir",
        &profiles_dir().display().to_string(),
        "--broker",
        &format!("{}:{}", broker.0, broker.1),
        "--court",
        &spec.court,
        "--room",
        &spec.room,
        "--keepalive",
        &spec.keepalive_s.to_string(),
        "--health-interval",
        &spec.health_interval_s.to_string(),
        "--simulate-hardware",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The TEST-ONLY OTA keys (`ota/test-keys/`), e.g. `TEST-ONLY-release.pub`.
pub fn ota_test_key(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ota/test-keys")
        .join(name)
}

/// Starts a simulated device that really boots A/B slots: `gavel-simdevice` (bootloader
/// stub and power) with its slots in `<dir>/slots-<id>` (slot A provisioned from the built
/// `gavel-agent` on first boot), running the agent for `spec` with OTA enabled, trusting
/// the TEST-ONLY release key, plus `extra` agent arguments. The agent's data folder is
/// `<dir>/agent-<id>` as with [`start_agent`]. Killing the returned process cuts the
/// device's power (the running slot image is killed with it, `PR_SET_PDEATHSIG`).
pub fn start_device(
    dir: &Path,
    spec: &AgentSpec,
    broker: &(String, u16),
    extra: &[&str],
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin("gavel-simdevice"));
    cmd.arg("--slots")
        .arg(device_slots(dir, &spec.id))
        .arg("--")
        .args(agent_args(spec, broker))
        .arg("--ota-key")
        .arg(ota_test_key("TEST-ONLY-release.pub"))
        .args(extra)
        .env("GAVEL_DATA_DIR", dir.join(format!("agent-{}", spec.id)))
        .env("GAVEL_LOG", "info")
        // Agents side by side: live servers on ports the system picks.
        .env("GAVEL_LIVE_RTSP", "127.0.0.1:0")
        .env("GAVEL_LIVE_HTTP", "127.0.0.1:0")
        // Whisper on every simulated courtroom would starve 2 cores; the tests of
        // transcription turn it on (`GAVEL_TRANSCRIBE=on` and `GAVEL_MODELS_DIR`).
        .env("GAVEL_TRANSCRIBE", "off");
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    Proc::spawn(
        &format!("gavel-simdevice {}", spec.id),
        cmd,
        dir.join(format!("device-{}-{n}.log", spec.id)),
    )
}

/// The slots folder of a device started with [`start_device`].
pub fn device_slots(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("slots-{id}"))
}

/// An MQTT broker for tests: the machine's Mosquitto, or a private one.
pub struct Mosquitto {
    pub host: String,
    pub port: u16,
    own: Option<Proc>,
    dir: Option<tempfile::TempDir>,
}

impl Mosquitto {
    /// `GAVEL_TEST_MQTT`, else 127.0.0.1:1883 if it answers, else a private `mosquitto`.
    pub fn shared_or_private() -> anyhow::Result<Self> {
        if let Ok(addr) = std::env::var("GAVEL_TEST_MQTT") {
            let (h, p) = addr.rsplit_once(':').context("GAVEL_TEST_MQTT=HOST:PORT")?;
            return Ok(Self {
                host: h.into(),
                port: p.parse()?,
                own: None,
                dir: None,
            });
        }
        if reachable("127.0.0.1:1883") {
            return Ok(Self {
                host: "127.0.0.1".into(),
                port: 1883,
                own: None,
                dir: None,
            });
        }
        Self::private()
    }

    /// A private `mosquitto` on a free port, which the test may stop and start again.
    pub fn private() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"
            ),
        )?;
        let mut m = Self {
            host: "127.0.0.1".into(),
            port,
            own: None,
            dir: Some(dir),
        };
        m.start()?;
        Ok(m)
    }

    /// Starts the private broker (after [`Mosquitto::stop`]).
    pub fn start(&mut self) -> anyhow::Result<()> {
        let dir = self
            .dir
            .as_ref()
            .context("only a private mosquitto can be started")?
            .path()
            .to_owned();
        let mut cmd = Command::new("mosquitto");
        cmd.arg("-c").arg(dir.join("mosquitto.conf"));
        let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        let proc = Proc::spawn("mosquitto", cmd, dir.join(format!("mosquitto-{n}.log")))
            .context("starting mosquitto (apt-get install mosquitto)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reachable(&format!("127.0.0.1:{}", self.port)) {
            if Instant::now() > deadline {
                bail!(
                    "mosquitto did not listen on {}: {}",
                    self.port,
                    proc.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.own = Some(proc);
        Ok(())
    }

    /// Stops the private broker (SIGKILL: an outage, not a maintenance stop).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.own.take() {
            p.kill9();
        }
    }

    pub fn broker(&self) -> Broker {
        Broker::External {
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// A fresh PostgreSQL database, dropped at the end.
pub struct PgDatabase {
    server: String,
    name: String,
}

impl PgDatabase {
    pub fn create() -> anyhow::Result<Self> {
        let server = std::env::var("GAVEL_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = unique("gavel_test").replace('-', "_");
        psql(&server, &format!("CREATE DATABASE {name}"))?;
        Ok(Self { server, name })
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(server: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("running psql (apt-get install postgresql-client)")?;
    if !out.status.success() {
        bail!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// ChromeDriver on a free port, driving headless Chromium.
pub struct ChromeDriver {
    pub url: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl ChromeDriver {
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"));
        let proc = Proc::spawn("chromedriver", cmd, dir.path().join("chromedriver.log"))
            .context("starting chromedriver (apt-get install chromium-driver)")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !reachable(&format!("127.0.0.1:{port}")) {
            if Instant::now() > deadline {
                bail!("chromedriver did not listen: {}", proc.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            _proc: proc,
            _dir: dir,
        })
    }

    /// A WebDriver session with headless Chromium.
    pub async fn session(&self) -> anyhow::Result<fantoccini::Client> {
        let profile = tempfile::tempdir()?.keep();
        let caps: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
                    format!("--user-data-dir={}", profile.display())
                ]
            }
        }))?;
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .context("starting a Chromium session")?;
        Ok(client)
    }
}
