//! `cargo xtask demo`: a simulated court on this machine.
//!
//! Starts the controller (embedded broker, SQLite) and one agent process per device: three
//! courtrooms (terminal, audio host, two cameras each), a service-hall kiosk and a
//! command-centre video wall. It imports today's hearings: the courtroom terminals record
//! them by their schedules (room-101's at once, room-102's when it starts half a minute
//! later), and the narration shows what each terminal tells its clerk; room-101's seat
//! microphones play a spoken conversation, its camera follows the speakers (`follow`
//! submodule) and its terminal transcribes each seat (`demo_transcript`). Then it plays a
//! short scenario and narrates it: a short tribunal hearing is closed by its clerk and its
//! compliance record printed; the tribunal's cameras are updated over the air (a bundle of
//! the agent image signed with the TEST-ONLY key, published, a campaign that holds the
//! room until its hearing is closed; each camera downloads, installs into its inactive
//! slot, reboots and commits), an audio host loses power and comes back, a technician
//! pings a terminal and restarts an audio host. In the service hall, litigants take
//! tickets at the kiosk's page and windows call them; the kiosk speaks each call.
//!
//! The cameras are simulated devices that really boot A/B slots (`gavel-simdevice`, the
//! agent's file-slot OTA backend); the slot images are small wrapper scripts that start the
//! built agent. Image-based devices run the same update flow through RAUC
//! (`[ota] backend = "rauc"`, docs/ota.md).

mod follow;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{cargo, root, run as run_step, setup, target_dir};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub(crate) const COURT: &str = "hz-intermediate";

/// (device id, profile, room)
fn devices() -> Vec<(String, &'static str, &'static str)> {
    let mut d = Vec::new();
    for room in ["room-101", "room-102", "tribunal-xixi"] {
        d.push((format!("{room}-terminal"), "courtroom-terminal", room));
        d.push((format!("{room}-audio"), "audio-host", room));
        d.push((format!("{room}-cam-1"), "ip-camera", room));
        d.push((format!("{room}-cam-2"), "ip-camera", room));
    }
    d.push(("hall-kiosk-1".into(), "service-kiosk", "service-hall"));
    d.push(("wall-1".into(), "command-wall", "command-centre"));
    d
}

struct Options {
    duration: Option<Duration>,
    http: String,
    mqtt: String,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        duration: None,
        http: "127.0.0.1:8700".into(),
        mqtt: "0.0.0.0:1884".into(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--duration" => {
                let s = it.next().ok_or("--duration needs seconds")?;
                o.duration =
                    Some(Duration::from_secs(s.parse().map_err(|_| {
                        format!("--duration {s:?}: expected seconds")
                    })?));
            }
            "--http" => o.http = it.next().ok_or("--http needs HOST:PORT")?.clone(),
            other => return Err(format!("demo: unknown option {other:?}")),
        }
    }
    if o.http.ends_with(":0") {
        o.mqtt = "127.0.0.1:0".into();
    }
    Ok(o)
}

fn port_free(addr: &str) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

pub(crate) struct Child2 {
    name: String,
    child: Child,
}

impl Child2 {
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        Ok(Self {
            name: name.into(),
            child,
        })
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// SIGTERM and wait; returns whether it exited by itself within `timeout`.
    fn stop(&mut self, timeout: Duration) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return true;
        }
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < timeout {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Child2 {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Court {
    bin: PathBuf,
    dir: PathBuf,
    url: String,
    mqtt: String,
    controller: Child2,
    agents: Vec<(String, &'static str, &'static str, Child2)>,
    /// Speaker-follow in one room: its simulated seat microphones and the narration.
    follow: Option<follow::Follow>,
    /// Where the kiosk serves its page.
    kiosk: String,
    /// The demo administrator's session (gavelctl sends it as GAVEL_TOKEN).
    token: Option<String>,
}

/// The demo's first administrator (made at the controller's first start).
const ADMIN: (&str, &str) = ("admin", "gavel-demo-admin");

/// The profile whose devices the demo updates over the air.
const OTA_PROFILE: &str = "ip-camera";

fn test_key(name: &str) -> PathBuf {
    root().join("ota/test-keys").join(name)
}

impl Court {
    /// A slot image: a wrapper script that starts the built agent.
    fn image(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.dir.join("images");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(name);
        if path.exists() {
            return Ok(path);
        }
        let text = format!(
            "#!/bin/sh\n# gavel demo image {name}\nexec {} \"$@\"\n",
            self.bin.join("gavel-agent").display()
        );
        // Written whole, then renamed: a device provisioning from it never sees it half
        // written.
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    fn start_agent(&self, id: &str, profile: &str, room: &str) -> Result<Child2, String> {
        let ota = profile == OTA_PROFILE;
        let mut cmd = if ota {
            // A simulated device with A/B slots: the boot supervisor starts the slot image.
            let mut c = Command::new(self.bin.join("gavel-simdevice"));
            c.arg("--slots")
                .arg(self.dir.join("agents").join(id).join("ota"))
                .arg("--factory-image")
                .arg(self.image("factory")?)
                .arg("--");
            c
        } else {
            Command::new(self.bin.join("gavel-agent"))
        };
        if ota {
            cmd.arg("--ota-key").arg(test_key("TEST-ONLY-release.pub"));
        }
        // Room-101's terminal transcribes its seat microphones for real (English with
        // tiny.en, from the demo's copy of the profiles); the others do not.
        let transcribing = id == crate::demo_transcript::TERMINAL
            && crate::demo_transcript::models_dir().is_some();
        let profiles = if transcribing {
            crate::demo_transcript::profiles(&self.dir)?
        } else {
            root().join("device-profiles")
        };
        cmd.args([
            "--device-id",
            id,
            "--profile",
            profile,
            "--court",
            COURT,
            "--room",
            room,
        ])
        .arg("--profiles-dir")
        .arg(&profiles)
        .args([
            "--broker",
            &self.mqtt,
            "--health-interval",
            "2",
            "--keepalive",
            "5",
        ])
        // Simulated devices: lamp, sensors and cameras are simulations, not hardware.
        .arg("--simulate-hardware")
        // The wall composes at 10 frames a second (its frame file: 2 a second).
        .env("GAVEL_WALL_FPS", "10")
        // Closed segments are archived at the controller (docs/archive.md).
        .env("GAVEL_ARCHIVE_URL", &self.url)
        // Speech recognition runs on room-101's terminal only (the other rooms'
        // microphones carry test tones, and whisper in every room would take the demo
        // machine's cores).
        .env("GAVEL_TRANSCRIBE", if transcribing { "on" } else { "off" })
        .env("GAVEL_DATA_DIR", self.dir.join("agents").join(id));
        if let Some(models) = crate::demo_transcript::models_dir().filter(|_| transcribing) {
            cmd.env("GAVEL_MODELS_DIR", models);
        }
        // A device's own agent config, where the demo wrote one (room-101's terminal:
        // where its seat microphones are).
        let config = self.dir.join("config").join(format!("{id}.toml"));
        if config.exists() {
            cmd.arg("--config").arg(config);
        }
        if profile == "service-kiosk" {
            cmd.env("GAVEL_KIOSK_LISTEN", &self.kiosk)
                .env("GAVEL_CONTROLLER_URL", &self.url)
                .env(
                    "GAVEL_ANNOUNCE_DIR",
                    crate::demo_hall::announce_dir(&self.dir),
                );
        }
        Child2::spawn(id, cmd, &self.dir.join("logs").join(format!("{id}.log")))
    }

    fn gavelctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(self.bin.join("gavelctl"));
        cmd.args(["--controller", &self.url])
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.join("home"));
        if let Some(t) = &self.token {
            cmd.env("GAVEL_TOKEN", t);
        }
        let out = cmd.output().map_err(|e| format!("gavelctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.gavelctl(&all)?).map_err(|e| e.to_string())
    }

    fn online(&self, id: &str) -> Option<(bool, String)> {
        let d = self.json(&["devices", "show", id]).ok()?;
        Some((
            d["online"].as_bool()?,
            d["boot_id"].as_str().unwrap_or("").to_owned(),
        ))
    }

    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut ok: impl FnMut() -> bool,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        while !ok() {
            if STOP.load(Ordering::SeqCst) {
                return Err("stopped".into());
            }
            if start.elapsed() > timeout {
                return Err(format!("{what}: not within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(start.elapsed())
    }

    /// What a room's courtroom terminal shows its clerk (`gavel-agent clerk status`).
    fn room_status(&self, room: &str) -> Value {
        let out = Command::new(self.bin.join("gavel-agent"))
            .arg("--data-dir")
            .arg(self.dir.join("agents").join(format!("{room}-terminal")))
            .args(["clerk", "status", "--json"])
            .output();
        out.ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .map(|v| v["status"].clone())
            .unwrap_or(Value::Null)
    }

    fn agent_index(&self, id: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.0 == id)
    }
}

pub(crate) fn say(t0: Instant, msg: &str) {
    println!("[demo {:>5.1}s] {msg}", t0.elapsed().as_secs_f64());
}

/// Runs the demo.
pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    setup::ensure(setup::Need::Demo)?;
    run_step(
        // Design: the same feature set as `cargo xtask test` builds, so no second copy of
        // the dependencies is compiled.
        cargo(&["build", "--locked", "--workspace", "--bins"]),
        "build controller, agent and gavelctl",
    )?;
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let bin = target_dir().join("debug");
    let dir = root().join(".gavel").join("demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;

    let http = if port_free(&opts.http) {
        opts.http.clone()
    } else {
        "127.0.0.1:0".into()
    };
    let mqtt = if port_free(&opts.mqtt) {
        opts.mqtt.clone()
    } else {
        "127.0.0.1:0".into()
    };
    let ready = dir.join("controller.ready");
    let mut cmd = Command::new(bin.join("gavel-controller"));
    // Short grace so the demo shows record-every-hearing alarms within a minute; a short
    // pre-roll so room-102's hearing visibly starts by itself during the run.
    cmd.env("GAVEL_ALARM_GRACE_S", "20");
    cmd.env("GAVEL_SCHEDULE_PRE_ROLL_S", "10");
    // Sign-in on (the default), with a first administrator; devices enrolled during the
    // demo connect over mutual TLS through the controller's gate.
    cmd.env("GAVEL_BOOTSTRAP_ADMIN", format!("{}:{}", ADMIN.0, ADMIN.1));
    cmd.env("GAVEL_MQTT_TLS_LISTEN", "127.0.0.1:0");
    cmd.args(["--http", &http, "--mqtt-listen", &mqtt])
        .arg("--data-dir")
        .arg(dir.join("controller"))
        .arg("--ready-file")
        .arg(&ready);
    let controller = Child2::spawn(
        "gavel-controller",
        cmd,
        &dir.join("logs").join("controller.log"),
    )?;
    let t0 = Instant::now();
    let line = loop {
        if let Ok(s) = std::fs::read_to_string(&ready)
            && s.ends_with('\n')
        {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) || STOP.load(Ordering::SeqCst) {
            return Err(format!(
                "controller did not start; see {}",
                dir.join("logs/controller.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|p| p.strip_prefix(k))
            .map(str::to_owned)
    };
    let url = format!("http://{}", field("http=").ok_or("ready file lacks http=")?);
    let mqtt = field("mqtt=").ok_or("ready file lacks mqtt=")?;
    let mut court = Court {
        bin,
        dir: dir.clone(),
        url,
        mqtt,
        controller,
        agents: Vec::new(),
        follow: None,
        kiosk: crate::demo_hall::kiosk_listen(),
        token: None,
    };
    let session = Command::new(court.bin.join("gavelctl"))
        .args([
            "--controller",
            &court.url,
            "--json",
            "login",
            "--user",
            ADMIN.0,
        ])
        .env("XDG_CONFIG_HOME", court.dir.join("home"))
        .env("GAVEL_PASSWORD", ADMIN.1)
        .output()
        .map_err(|e| e.to_string())
        .and_then(|o| {
            if o.status.success() {
                serde_json::from_slice::<Value>(&o.stdout).map_err(|e| e.to_string())
            } else {
                Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
            }
        });
    let session = match session {
        Ok(v) => v,
        Err(e) => {
            let e = format!("signing in as the demo administrator: {e}");
            return finish(court, Instant::now(), Err(e));
        }
    };
    court.token = session["token"].as_str().map(str::to_owned);

    println!();
    println!(
        "  Gavel demo: a simulated court ({COURT}) with 3 courtrooms, a service hall and a command centre"
    );
    println!(
        "  Dashboard:  {}/   (sign in as {} / {})",
        court.url, ADMIN.0, ADMIN.1
    );
    println!("  Patrol:     {}/patrol (inspectors' console)", court.url);
    println!(
        "  Devices:    MQTT {}   logs in {}",
        court.mqtt,
        dir.join("logs").display()
    );
    println!(
        "  Try:        {}/gavelctl --controller {} devices ls",
        court.bin.display(),
        court.url
    );
    println!(
        "  API:        {}/api/v1/openapi.json   metrics: {}/metrics",
        court.url, court.url
    );
    println!(
        "  Hall:       kiosk page http://{}/   hall display {}/hall/{COURT}",
        court.kiosk, court.url
    );
    println!("  Stop:       Ctrl-C");
    println!();

    match follow::setup(&court.dir, &court.bin) {
        Ok(f) => court.follow = Some(f),
        Err(e) => say(t0, &format!("speaker-follow is not shown: {e}")),
    }
    for (id, profile, room) in devices() {
        let child = court.start_agent(&id, profile, room)?;
        court.agents.push((id, profile, room, child));
    }
    let total = court.agents.len();
    let took = court.wait("all devices online", Duration::from_secs(60), || {
        court
            .json(&["fleet"])
            .ok()
            .and_then(|s| s["online"].as_u64())
            == Some(total as u64)
    });
    match took {
        Ok(t) => say(
            t0,
            &format!("{total} devices online in {:.1} s", t.as_secs_f64()),
        ),
        Err(e) => return finish(court, t0, Err(e)),
    }
    if let Ok(table) = court.gavelctl(&["devices", "ls"]) {
        println!("{table}");
    }
    match import_hearings(&court) {
        Ok(table) => {
            say(
                t0,
                "clerk: imported today's hearings (gavelctl hearings import)",
            );
            println!("{table}");
        }
        Err(e) => say(t0, &format!("importing hearings failed: {e}")),
    }
    if let Err(e) = provision(&mut court, t0) {
        say(t0, &format!("provisioning a device failed: {e}"));
        if opts.duration.is_some() {
            return finish(court, t0, Err(e));
        }
    }
    let campaign = match start_update(&court, t0) {
        Ok(id) => Some(id),
        Err(e) => {
            say(t0, &format!("starting the camera update failed: {e}"));
            if opts.duration.is_some() {
                return finish(court, t0, Err(e));
            }
            None
        }
    };
    let mut wall = match crate::demo_wall::start(&court.bin, &dir, |a| court.gavelctl(a), t0) {
        Ok(w) => Some(w),
        Err(e) => {
            say(t0, &format!("setting up the video wall failed: {e}"));
            if opts.duration.is_some() {
                return finish(court, t0, Err(e));
            }
            None
        }
    };
    let result = scenario(
        &mut court,
        t0,
        opts.duration,
        campaign.as_deref(),
        &mut wall,
    );
    finish(court, t0, result)
}

/// A technician brings a new camera (room-104) up: a one-time token, `gavel-agent enroll`
/// (key made on the device, certificate from the controller's CA), the agent over mutual
/// TLS through the gate, the self-test; then an inspector's forbidden action is refused and
/// audited.
fn provision(court: &mut Court, t0: Instant) -> Result<(), String> {
    let id = "room-104-camera";
    let token = court.json(&[
        "provision",
        id,
        "--court",
        COURT,
        "--room",
        "room-104",
        "--profile",
        "ip-camera",
    ])?;
    let token = token["token"].as_str().ok_or("no token")?.to_owned();
    say(
        t0,
        &format!("technician: gavelctl provision {id} -> one-time enrollment token"),
    );
    let config = court.dir.join("config").join(format!("{id}.toml"));
    std::fs::create_dir_all(court.dir.join("config")).map_err(|e| e.to_string())?;
    std::fs::write(
        &config,
        format!(
            "profiles_dir = {:?}\ndata_dir = {:?}\nsimulate_hardware = true\nkeepalive_s = 5\n",
            root().join("device-profiles").display().to_string(),
            court.dir.join("agents").join(id).display().to_string()
        ),
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new(court.bin.join("gavel-agent"))
        .arg("--config")
        .arg(&config)
        .args(["enroll", "--controller", &court.url])
        .env("GAVEL_ENROLL_TOKEN", &token)
        .output()
        .map_err(|e| format!("gavel-agent enroll: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let said = String::from_utf8_lossy(&out.stdout);
    say(
        t0,
        &format!(
            "device: gavel-agent enroll -> {}",
            said.lines().next().unwrap_or("enrolled")
        ),
    );
    let mut cmd = Command::new(court.bin.join("gavel-agent"));
    cmd.arg("--config")
        .arg(&config)
        .env("GAVEL_LOG", "info")
        .env("GAVEL_TRANSCRIBE", "off");
    let child = Child2::spawn(id, cmd, &court.dir.join("logs").join(format!("{id}.log")))?;
    court
        .agents
        .push((id.to_owned(), "ip-camera", "room-104", child));
    court.wait(&format!("{id} online"), Duration::from_secs(20), || {
        court.online(id).is_some_and(|(on, _)| on)
    })?;
    let test = court.json(&["selftest", id])?;
    let checks = test["reply"]["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let summary: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    say(
        t0,
        &format!(
            "technician: {id} online over mutual TLS; gavelctl selftest -> {}",
            summary.join(", ")
        ),
    );
    // An inspector may look, not change: the refusal is in the audit log.
    let inspector = ("inspector.li", "inspector-demo-pw");
    let _ = Command::new(court.bin.join("gavelctl"))
        .args([
            "--controller",
            &court.url,
            "users",
            "add",
            inspector.0,
            "--role",
            "inspector",
        ])
        .env("GAVEL_TOKEN", court.token.clone().unwrap_or_default())
        .env("GAVEL_NEW_PASSWORD", inspector.1)
        .output();
    let home = court.dir.join("inspector-home");
    let login = Command::new(court.bin.join("gavelctl"))
        .args(["--controller", &court.url, "login", "--user", inspector.0])
        .env("XDG_CONFIG_HOME", &home)
        .env("GAVEL_PASSWORD", inspector.1)
        .output()
        .map_err(|e| e.to_string())?;
    if login.status.success() {
        let refused = Command::new(court.bin.join("gavelctl"))
            .args(["--controller", &court.url, "devices", "restart", id])
            .env("XDG_CONFIG_HOME", &home)
            .env_remove("GAVEL_TOKEN")
            .output()
            .map_err(|e| e.to_string())?;
        let why = String::from_utf8_lossy(&refused.stderr);
        say(
            t0,
            &format!(
                "inspector.li: gavelctl devices restart {id} -> {} (audited: gavelctl audit --denied)",
                why.lines()
                    .find(|l| l.contains("refused"))
                    .map(str::trim)
                    .unwrap_or("refused")
            ),
        );
    }
    Ok(())
}

/// The next minor version after this build's.
fn next_version() -> String {
    let v: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    format!(
        "{}.{}.0",
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0) + 1
    )
}

/// Builds and signs a bundle of the agent image (TEST-ONLY key), publishes it and starts
/// a campaign over the cameras; returns the campaign id.
fn start_update(court: &Court, t0: Instant) -> Result<String, String> {
    let version = next_version();
    let image = court.image(&format!("agent-{version}"))?;
    let bundle = court.dir.join(format!("gavel-{version}.gota"));
    let (image_s, bundle_s) = (image.display().to_string(), bundle.display().to_string());
    let key = test_key("TEST-ONLY-release.key").display().to_string();
    court.gavelctl(&[
        "ota",
        "build",
        "--image",
        &image_s,
        "--version",
        &version,
        "--compatible",
        OTA_PROFILE,
        "-o",
        &bundle_s,
        "--key",
        &key,
    ])?;
    say(
        t0,
        &format!("release: gavelctl ota build + sign -> gavel-{version}.gota (TEST-ONLY key)"),
    );
    let published = court.json(&["ota", "publish", &bundle_s])?;
    let name = published["name"]
        .as_str()
        .ok_or("publish: no name")?
        .to_owned();
    say(t0, &format!("release: gavelctl ota publish -> {name}"));
    match publish_rauc_bundle(court, &version) {
        Ok(line) => say(t0, &line),
        Err(e) => say(t0, &format!("release: RAUC bundle step skipped: {e}")),
    }
    let id = "demo-cameras";
    let created = court.json(&[
        "ota",
        "campaign",
        "create",
        "--bundle",
        &name,
        "--id",
        id,
        "--profile",
        OTA_PROFILE,
        "--room",
        OTA_ROOM,
    ])?;
    say(
        t0,
        &format!(
            "release: campaign {id} started: the {} cameras of {OTA_ROOM}; the room is in session, so nothing is sent until its hearing is closed (rooms in session are never updated)",
            created["progress"]["total"]
        ),
    );
    Ok(id.to_owned())
}

/// Builds a small RAUC bundle for image-based courtroom terminals (`rauc bundle`, a
/// throw-away certificate) and publishes it: the controller reads its manifest and maps
/// `compatible=gavel-courtroom-terminal` to the profile. Not rolled out here (the
/// simulated devices use the file-slot backend).
fn publish_rauc_bundle(court: &Court, version: &str) -> Result<String, String> {
    let dir = court.dir.join("rauc-bundle");
    let content = dir.join("content");
    std::fs::create_dir_all(&content).map_err(|e| e.to_string())?;
    let ok = |what: &str, c: &mut Command| match c.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{what}: {e} (apt-get install rauc openssl)")),
    };
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    ok(
        "openssl",
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-subj", "/CN=gavel-demo-rauc"]),
    )?;
    std::fs::write(content.join("rootfs.img"), vec![0x5au8; 64 * 1024])
        .map_err(|e| e.to_string())?;
    std::fs::write(
        content.join("manifest.raucm"),
        format!(
            "[update]\ncompatible=gavel-courtroom-terminal\nversion={version}\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let bundle = dir.join(format!("gavel-courtroom-terminal-{version}.raucb"));
    let _ = std::fs::remove_file(&bundle);
    ok(
        "rauc bundle",
        Command::new("rauc")
            .arg("bundle")
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()))
            .arg(&content)
            .arg(&bundle),
    )?;
    let p = court.json(&["ota", "publish", &bundle.display().to_string()])?;
    Ok(format!(
        "release: a RAUC bundle for image-based devices: gavelctl ota publish {} -> {} (compatible {} = profile {}; the device's RAUC verifies its signature)",
        bundle.file_name().unwrap_or_default().to_string_lossy(),
        p["name"].as_str().unwrap_or("?"),
        p["rauc_compatible"].as_str().unwrap_or("?"),
        p["manifest"]["compatible"][0].as_str().unwrap_or("?"),
    ))
}

/// The room whose cameras the demo updates: its short hearing closes during the demo.
const OTA_ROOM: &str = "tribunal-xixi";

/// Narrates the campaign's progress when it changes; returns (state, failed).
fn narrate_campaign(
    court: &Court,
    t0: Instant,
    id: &str,
    last: &mut String,
) -> Option<(String, u64)> {
    let v = court.json(&["ota", "campaign", "status", id]).ok()?;
    let p = &v["progress"];
    let state = v["state"]["state"].as_str().unwrap_or("?").to_owned();
    let line = format!(
        "OTA {id}: {state}, wave {}/{}: {} committed, {} installing, {} failed, {} pending",
        (p["wave"].as_u64().unwrap_or(0) + 1).min(p["waves"].as_u64().unwrap_or(0)),
        p["waves"],
        p["succeeded"],
        p["installing"],
        p["failed"],
        p["pending"]
    );
    if *last != line {
        say(t0, &line);
        if state == "completed" {
            let cams: Vec<String> = court
                .agents
                .iter()
                .filter(|a| a.1 == OTA_PROFILE)
                .filter_map(|a| {
                    let d = court.json(&["devices", "show", &a.0]).ok()?;
                    Some(format!("{} {}", a.0, d["firmware_version"].as_str()?))
                })
                .collect();
            say(
                t0,
                &format!(
                    "cameras now run: {} (file-slot backend here; image-based devices install the same way through RAUC)",
                    cams.join(", ")
                ),
            );
        }
        if let Some(reason) = v["state"]["reason"].as_str() {
            say(t0, &format!("OTA {id} halted: {reason}"));
        }
        *last = line;
    }
    Some((state, p["failed"].as_u64().unwrap_or(0)))
}

/// Today's hearings: one under way in room-101, one starting in half a minute in room-102
/// (its terminal starts recording by itself at start minus the 10 s pre-roll), one this
/// afternoon at the tribunal.
fn import_hearings(court: &Court) -> Result<String, String> {
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let at = |s: i64| {
        (now + time::Duration::seconds(s))
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(fmt).ok())
            .unwrap_or_default()
    };
    let csv = format!(
        "case_number,court,room,start,end,judge,parties\n\
         (2026)浙0106民初1234号,{COURT},room-101,{},{},王法官,plaintiff:张三; defendant:李四\n\
         (2026)浙0106刑初88号,{COURT},room-102,{},{},李法官,prosecutor:赵检察官; defendant:孙某\n\
         {SHORT_CASE},{COURT},tribunal-xixi,{},{},陈法官,applicant:钱某\n\
         (2026)浙0106民初1301号,{COURT},tribunal-xixi,{},{},陈法官,plaintiff:周某; defendant:吴某\n",
        at(-60),
        at(90 * 60),
        at(30),
        at(60 * 60),
        at(5),
        at(22),
        at(240 * 60),
        at(300 * 60),
    );
    let file = court.dir.join("hearings.csv");
    std::fs::write(&file, csv).map_err(|e| e.to_string())?;
    court.gavelctl(&["hearings", "import", &file.to_string_lossy()])?;
    court.gavelctl(&["hearings", "ls"])
}

/// A short tribunal hearing the clerk closes during the demo, to show its compliance
/// record (coverage per source, hash chain, seal).
const SHORT_CASE: &str = "(2026)浙0106民特7号";

/// Closes the short hearing once it is over, then narrates its compliance record when the
/// terminal has sealed the recording. Returns the verdict once known.
fn short_hearing(
    court: &Court,
    t0: Instant,
    id: &mut Option<String>,
    closed: &mut bool,
    verdict: &mut Option<String>,
) {
    if id.is_none() {
        *id = court.json(&["hearings", "ls"]).ok().and_then(|l| {
            l.as_array()?
                .iter()
                .find(|h| h["case_number"] == SHORT_CASE)
                .and_then(|h| h["id"].as_str().map(str::to_owned))
        });
    }
    let Some(hid) = id.as_deref() else { return };
    if !*closed {
        match court.gavelctl(&["hearings", "close", hid, "--by", "clerk.chen"]) {
            Ok(_) => {
                say(
                    t0,
                    &format!(
                        "clerk: hearing {SHORT_CASE} closed at tribunal-xixi (gavelctl hearings close)"
                    ),
                );
                *closed = true;
            }
            Err(e) => say(t0, &format!("closing {hid} failed: {e}")),
        }
        return;
    }
    if verdict.is_some() {
        return;
    }
    let Ok(c) = court.json(&["hearings", "compliance", hid]) else {
        return;
    };
    let v = c["verdict"].as_str().unwrap_or("?").to_owned();
    if v == "open" || v == "pending" {
        return;
    }
    let sources: Vec<String> = c["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} {:.0}%",
                s["source"].as_str().unwrap_or("?"),
                s["coverage"].as_f64().unwrap_or(0.0) * 100.0
            )
        })
        .collect();
    let d = &c["devices"][0];
    say(
        t0,
        &format!(
            "compliance {SHORT_CASE}: {v}; {}; hash chain {}, seal {}; {} exception(s) (gavelctl hearings compliance {hid}; daily report: /api/v1/reports/compliance?court={COURT}&format=html)",
            sources.join(", "),
            d["chain"]["state"].as_str().unwrap_or("?"),
            d["seal"]["state"].as_str().unwrap_or("?"),
            c["exceptions"].as_array().map_or(0, Vec::len)
        ),
    );
    *verdict = Some(v);
}

/// Narrates, once, what the archive holds of the closed short hearing and where it plays.
fn short_archive(court: &Court, t0: Instant, id: Option<&str>, told: &mut bool) {
    let Some(hid) = id else { return };
    if *told {
        return;
    }
    let Ok(a) = court.json(&["hearings", "archive", hid]) else {
        return;
    };
    let sources: Vec<String> = a["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| format!("{} {}", s["source"].as_str().unwrap_or("?"), s["segments"]))
        .collect();
    say(
        t0,
        &format!(
            "archive {SHORT_CASE}: {} segments ({} bytes) uploaded and verified by SHA-256 on arrival ({}); each may now be evicted from the terminal; playback: {}{} (gavelctl hearings archive {hid})",
            a["segments"],
            a["bytes"],
            sources.join(", "),
            court.url,
            a["playback"].as_str().unwrap_or("")
        ),
    );
    *told = true;
}

fn scenario(
    court: &mut Court,
    t0: Instant,
    duration: Option<Duration>,
    campaign: Option<&str>,
    wall: &mut Option<crate::demo_wall::WallWatch>,
) -> Result<(), String> {
    let mut campaign_line = String::new();
    let mut campaign_failed = 0;
    let mut campaign_state = String::new();
    let end = duration.map(|d| Instant::now() + d);
    let mut next_step = Instant::now() + Duration::from_secs(5);
    let mut step = 0u32;
    let mut cut = false;
    let mut last_summary = Instant::now();
    let mut seen_alarms: std::collections::BTreeSet<String> = Default::default();
    let mut rooms: std::collections::BTreeMap<&str, String> = Default::default();
    let mut last_alarm_poll = Instant::now();
    let started = Instant::now();
    let (mut short_id, mut short_closed, mut short_verdict) = (None, false, None);
    let mut short_archived = false;
    let mut hall = crate::demo_hall::HallDemo::new(
        &court.kiosk,
        COURT,
        crate::demo_hall::announce_dir(&court.dir),
    );
    let mut patrol = 0u8;
    let mut transcript = crate::demo_transcript::Scene::new();
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Ok(());
        }
        if end.is_some_and(|e| Instant::now() >= e) {
            if cut {
                power_back(court, t0, CUT)?;
            }
            if campaign_failed > 0 {
                return Err(format!("{campaign_failed} camera updates failed"));
            }
            // The tribunal's cameras are updated once its hearing is closed.
            if campaign.is_some() {
                let _ = court.wait("the camera update", Duration::from_secs(30), || {
                    std::thread::sleep(Duration::from_millis(500));
                    if let Some(id) = campaign
                        && let Some((state, _)) =
                            narrate_campaign(court, t0, id, &mut campaign_line)
                    {
                        campaign_state = state;
                    }
                    campaign_state == "completed"
                });
                if campaign_state != "completed" {
                    return Err(format!(
                        "the camera update is {campaign_state}, not completed"
                    ));
                }
            }
            // Smoke check: the two hearings due by now recorded by their rooms' terminals
            // without anyone starting them, and every device online at the end (a camera
            // may be rebooting into its new slot right now: give it a moment).
            for room in ["room-101", "room-102"] {
                let status = court.room_status(room);
                if status["state"] != "recording" || status["lamp"] != true {
                    return Err(format!("{room} is not recording its hearing: {status}"));
                }
            }
            // ... and the short tribunal hearing, closed, proven complete.
            if short_closed {
                let _ = court.wait(
                    "the short hearing's compliance record",
                    Duration::from_secs(20),
                    || {
                        std::thread::sleep(Duration::from_millis(500));
                        short_hearing(
                            court,
                            t0,
                            &mut short_id,
                            &mut short_closed,
                            &mut short_verdict,
                        );
                        short_verdict.is_some()
                    },
                );
            }
            if hall.tickets == 0 || hall.calls == 0 {
                return Err(format!(
                    "the service hall: {} tickets taken, {} numbers called",
                    hall.tickets, hall.calls
                ));
            }
            if let Some(w) = wall.as_ref() {
                crate::demo_wall::check(w)?;
            }
            transcript.check()?;
            if short_verdict.as_deref() != Some("complete") {
                return Err(format!(
                    "{SHORT_CASE}: compliance {:?} (closed: {short_closed})",
                    short_verdict
                ));
            }
            let total = court.agents.len() as u64;
            let online = court.wait("all devices online", Duration::from_secs(20), || {
                court
                    .json(&["fleet"])
                    .ok()
                    .and_then(|s| s["online"].as_u64())
                    == Some(total)
            });
            return match online {
                Ok(_) => {
                    say(
                        t0,
                        &format!(
                            "check passed: all {total} devices online; room-101 and room-102 record their hearings; {SHORT_CASE} proven complete; {} hall tickets taken, {} called",
                            hall.tickets, hall.calls
                        ),
                    );
                    Ok(())
                }
                Err(e) => Err(format!("{e}: {:?}", court.json(&["fleet"]).ok())),
            };
        }
        let poll_alarms = last_alarm_poll.elapsed() >= Duration::from_secs(1);
        if poll_alarms {
            last_alarm_poll = Instant::now();
        }
        if poll_alarms
            && let Some(id) = campaign
            && let Some((state, failed)) = narrate_campaign(court, t0, id, &mut campaign_line)
        {
            campaign_failed = failed;
            campaign_state = state;
        }
        if let Some(list) = poll_alarms
            .then(|| court.json(&["alarms", "ls"]).ok())
            .flatten()
        {
            for a in list.as_array().into_iter().flatten() {
                let id = a["id"].as_str().unwrap_or_default().to_owned();
                if seen_alarms.insert(id) {
                    say(
                        t0,
                        &format!(
                            "ALARM L{} {}: {}",
                            a["level"],
                            a["kind"].as_str().unwrap_or("?"),
                            a["message"].as_str().unwrap_or("?")
                        ),
                    );
                }
            }
        }
        if poll_alarms && let Some(f) = court.follow.as_mut() {
            f.narrate(t0);
        }
        if poll_alarms {
            // What each courtroom terminal shows its clerk (gavel-agent clerk status).
            for room in ["room-101", "room-102", "tribunal-xixi"] {
                let st = court.room_status(room);
                let now = format!(
                    "{} {}",
                    st["state"].as_str().unwrap_or("?"),
                    st["hearing"].as_str().unwrap_or("-")
                );
                if rooms.get(room) != Some(&now) {
                    if st["state"] == "recording" || st["state"] == "starting" {
                        say(
                            t0,
                            &format!(
                                "{room}: the terminal records hearing {} by its schedule, nobody pressed a button; recording lamp {}",
                                st["hearing"].as_str().unwrap_or("?"),
                                if st["lamp"] == true { "on" } else { "off" }
                            ),
                        );
                    } else if st["schedule_version"].is_u64() && rooms.contains_key(room) {
                        say(t0, &format!("{room}: {now}"));
                    }
                    rooms.insert(room, now);
                }
            }
        }
        if poll_alarms && let Some(w) = wall.as_mut() {
            crate::demo_wall::narrate(w, &court.dir, |a| court.json(a), t0);
        }
        if poll_alarms {
            patrol_step(court, t0, started.elapsed(), &mut patrol);
            transcript.tick(
                t0,
                started.elapsed(),
                &court.url,
                || {
                    court.room_status("room-101")["hearing"]
                        .as_str()
                        .map(str::to_owned)
                },
                |a| court.json(a),
                |a| court.gavelctl(a),
            );
        }
        if poll_alarms && started.elapsed() >= Duration::from_secs(20) {
            short_hearing(
                court,
                t0,
                &mut short_id,
                &mut short_closed,
                &mut short_verdict,
            );
            if short_verdict.is_some() {
                short_archive(court, t0, short_id.as_deref(), &mut short_archived);
            }
        }
        if let Some(r) = hall.tick(|a| court.gavelctl(a)) {
            match r {
                Ok(line) => say(t0, &line),
                Err(e) => say(t0, &format!("hall step failed: {e}")),
            }
        }
        if last_summary.elapsed() >= Duration::from_secs(10) {
            last_summary = Instant::now();
            if let Ok(s) = court.json(&["fleet"]) {
                say(
                    t0,
                    &format!(
                        "fleet: {} devices, {} online, {} offline",
                        s["devices"], s["online"], s["offline"]
                    ),
                );
            }
        }
        if Instant::now() >= next_step {
            next_step = Instant::now() + Duration::from_secs(6);
            let outcome = match step % 4 {
                0 => power_cut(court, t0, CUT).map(|()| cut = true),
                1 => power_back(court, t0, CUT).map(|()| cut = false),
                2 => court
                    .gavelctl(&["devices", "ping", "room-101-terminal"])
                    .map(|out| {
                        say(
                            t0,
                            &format!(
                                "technician: gavelctl devices ping room-101-terminal -> {}",
                                out.trim()
                            ),
                        );
                    }),
                _ => remote_restart(court, t0, "tribunal-xixi-audio"),
            };
            if let Err(e) = outcome {
                say(t0, &format!("scenario step failed: {e}"));
                if duration.is_some() {
                    return Err(e);
                }
            }
            step += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Hearing patrol: 8 s in, someone covers room-101's overview camera (the simulated
/// source shows a hand over the lens); the terminal's patrol reports an occluded lens
/// and the alarm feed and inspectors' console show it; 35 s in, the hand goes away.
fn patrol_step(court: &Court, t0: Instant, elapsed: Duration, stage: &mut u8) {
    let fault = court
        .dir
        .join("agents")
        .join("room-101-terminal")
        .join("simulate")
        .join("cam-overview.fault");
    if *stage == 0 && elapsed >= Duration::from_secs(8) {
        *stage = 1;
        let written = fault
            .parent()
            .map(std::fs::create_dir_all)
            .and_then(Result::ok)
            .and_then(|()| std::fs::write(&fault, "covered").ok());
        if written.is_some() {
            say(
                t0,
                &format!(
                    "patrol: someone covers room-101's overview camera; the terminal's analyzers will report it (inspectors' console: {}/patrol)",
                    court.url
                ),
            );
        }
    } else if *stage == 1 && elapsed >= Duration::from_secs(35) {
        *stage = 2;
        let _ = std::fs::remove_file(&fault);
        say(
            t0,
            "patrol: the hand is gone from room-101's overview camera",
        );
    }
}

/// The device whose power the scenario cuts (not a camera, so the update runs clean).
const CUT: &str = "room-102-audio";

fn power_cut(court: &mut Court, t0: Instant, id: &str) -> Result<(), String> {
    let i = court.agent_index(id).ok_or("unknown device")?;
    say(t0, &format!("power cut: {id} killed with SIGKILL"));
    court.agents[i].3.signal(libc::SIGKILL);
    let took = court.wait("offline", Duration::from_secs(10), || {
        court.online(id).is_some_and(|(o, _)| !o)
    })?;
    say(
        t0,
        &format!(
            "controller marked {id} offline (last will) after {:.2} s",
            took.as_secs_f64()
        ),
    );
    Ok(())
}

fn power_back(court: &mut Court, t0: Instant, id: &str) -> Result<(), String> {
    let i = court.agent_index(id).ok_or("unknown device")?;
    let (_, profile, room, _) = &court.agents[i];
    let child = court.start_agent(id, profile, room)?;
    court.agents[i].3 = child;
    say(t0, &format!("power restored: {id} boots"));
    let took = court.wait("online", Duration::from_secs(20), || {
        court.online(id).is_some_and(|(o, _)| o)
    })?;
    say(
        t0,
        &format!(
            "{id} back online after {:.2} s (new birth)",
            took.as_secs_f64()
        ),
    );
    Ok(())
}

fn remote_restart(court: &mut Court, t0: Instant, id: &str) -> Result<(), String> {
    let before = court.online(id).map(|(_, b)| b).unwrap_or_default();
    court.gavelctl(&["devices", "restart", id, "--reason", "demo"])?;
    say(
        t0,
        &format!("technician: gavelctl devices restart {id} -> acknowledged"),
    );
    let took = court.wait("restarted", Duration::from_secs(20), || {
        court.online(id).is_some_and(|(o, b)| o && b != before)
    })?;
    say(
        t0,
        &format!(
            "{id} restarted and back online with a new boot id after {:.2} s",
            took.as_secs_f64()
        ),
    );
    Ok(())
}

fn finish(mut court: Court, t0: Instant, result: Result<(), String>) -> Result<(), String> {
    say(t0, "stopping: agents first, then the controller");
    let mut unclean = Vec::new();
    for (id, _, _, child) in court.agents.iter_mut() {
        child.signal(libc::SIGTERM);
        let _ = id;
    }
    for (id, _, _, child) in court.agents.iter_mut() {
        if !child.stop(Duration::from_secs(10)) {
            unclean.push(id.clone());
        }
    }
    if !court.controller.stop(Duration::from_secs(15)) {
        unclean.push(court.controller.name.clone());
    }
    if unclean.is_empty() {
        say(t0, "everything stopped cleanly");
    } else {
        say(t0, &format!("had to kill: {}", unclean.join(", ")));
    }
    result
}

/// The demo as the test suite runs it: 40 s on free ports, failing unless it all works.
pub fn smoke() -> Result<(), String> {
    println!("\n==> demo smoke run (40 s)");
    run(&[
        "--duration".into(),
        "40".into(),
        "--http".into(),
        "127.0.0.1:0".into(),
    ])
}
