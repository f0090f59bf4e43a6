//! Provisioning and device identity end to end (issue 9): a technician makes a one-time
//! token with `gavelctl provision`; the device enrolls with `gavel-agent enroll` (its key
//! made on the device), comes online over mutual TLS through the controller's gate with the
//! court, room and profile it was given; the token cannot be used twice; `gavelctl devices
//! revoke` drops the device at once and it cannot come back.

use std::process::Command;
use std::time::{Duration, Instant};

use gavel_hil::{Broker, Controller, Proc, bin, free_port, profiles_dir};
use serde_json::Value;

/// `gavel-agent --config CONFIG enroll --controller URL` with the token in the environment.
fn enroll(config: &std::path::Path, controller: &str, token: &str) -> std::process::Output {
    Command::new(bin("gavel-agent"))
        .arg("--config")
        .arg(config)
        .args(["enroll", "--controller", controller])
        .env("GAVEL_ENROLL_TOKEN", token)
        .output()
        .expect("gavel-agent enroll runs")
}

async fn device(c: &Controller, id: &str) -> Option<Value> {
    c.get(&format!("/api/v1/devices/{id}")).await.ok().flatten()
}

async fn wait_for(c: &Controller, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(d) = device(c, id).await
            && cond(&d)
        {
            return d;
        }
        assert!(Instant::now() < deadline, "{id}: {what} within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_provisioned_enrolls_over_mutual_tls_and_is_dropped_when_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = format!("127.0.0.1:{}", free_port());
    let controller = Controller::start_with_env(
        dir.path(),
        &Broker::Embedded,
        None,
        &[("GAVEL_MQTT_TLS_LISTEN", gate.as_str())],
    )
    .expect("controller");
    assert!(controller.mqtt_tls.is_some(), "the gate is on");

    // The technician: one token, bound to the device id and where it goes.
    let (ok, out, err) = controller.gavelctl(&[
        "--json",
        "provision",
        "hz-101-terminal",
        "--court",
        "hz-intermediate",
        "--room",
        "room-101",
        "--profile",
        "courtroom-terminal",
        "--tag",
        "pilot",
    ]);
    assert!(ok, "gavelctl provision: {err}");
    let token: Value = serde_json::from_str(&out).expect("json");
    let token = token["token"].as_str().expect("token").to_owned();

    // The device: a configuration with nothing about its identity yet.
    let config = dir.path().join("agent.toml");
    let data = dir.path().join("device-data");
    std::fs::write(
        &config,
        format!(
            "# written by the image\nprofiles_dir = {:?}\ndata_dir = {:?}\nsimulate_hardware = true\n",
            profiles_dir().display().to_string(),
            data.display().to_string()
        ),
    )
    .expect("config");
    let enroll = |token: &str| enroll(&config, &controller.url, token);
    let first = enroll(&token);
    assert!(
        first.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(said.contains("enrolled as hz-101-terminal"), "{said}");
    let written = std::fs::read_to_string(&config).expect("config");
    assert!(
        written.starts_with("# written by the image"),
        "the rest of the file is kept:\n{written}"
    );
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(data.join("identity/device.key"))
        .expect("the key stays on the device")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o077, 0, "device.key is private");

    // The token is one-time.
    let again = enroll(&token);
    assert!(!again.status.success(), "a used token is refused");
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("already used"), "{why}");

    // The agent runs from the written configuration alone, over TLS.
    let mut cmd = Command::new(bin("gavel-agent"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--keepalive")
        .arg("2")
        .env("GAVEL_LOG", "info");
    let _agent = Proc::spawn("gavel-agent", cmd, dir.path().join("agent.log")).expect("agent");
    let d = wait_for(&controller, "hz-101-terminal", "online", |d| {
        d["online"] == true
    })
    .await;
    assert_eq!(d["court"], "hz-intermediate");
    assert_eq!(d["room"], "room-101");
    assert_eq!(d["profile"], "courtroom-terminal");
    assert!(
        d["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "pilot")),
        "{d}"
    );

    // Revocation drops it and keeps it out.
    let (ok, out, err) = controller.gavelctl(&["devices", "revoke", "hz-101-terminal"]);
    assert!(ok, "revoke: {err}");
    assert!(out.contains("1 certificate(s) revoked"), "{out}");
    wait_for(
        &controller,
        "hz-101-terminal",
        "offline after revocation",
        |d| d["online"] == false,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = device(&controller, "hz-101-terminal").await.expect("known");
    assert_eq!(d["online"], false, "a revoked device stays out: {d}");
}

/// The technician's one run: `gavelctl provision ... --wait --test-recording` makes the
/// token, waits while the device enrolls and comes online, runs the self-test (broker over
/// TLS, clock, the camera, the seat microphones, disk) and records a test in the room; it
/// ends with the segments the device delivered. Its output is the guide in
/// docs/provisioning.md (printed here with --nocapture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_brings_a_courtroom_terminal_from_nothing_to_recording_in_one_cli_run() {
    use gavel_hil::media::{CameraSim, SimSpec};
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let clips = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips");
    let cam = CameraSim::start(dir.path(), "cam", SimSpec::camera_1080p(), &clips).expect("camera");
    let mics =
        CameraSim::start(dir.path(), "mics", SimSpec::microphones(4), &clips).expect("microphones");
    let gate = format!("127.0.0.1:{}", free_port());
    let controller = Controller::start_with_env(
        dir.path(),
        &Broker::Embedded,
        None,
        &[("GAVEL_MQTT_TLS_LISTEN", gate.as_str())],
    )
    .expect("controller");

    // The image's configuration: where the profiles are, and the room's streams.
    let config = dir.path().join("agent.toml");
    let data = dir.path().join("device-data");
    std::fs::write(
        &config,
        format!(
            "profiles_dir = {:?}\ndata_dir = {:?}\nsimulate_hardware = true\n\n\
             [media.cam-overview]\nkind = \"rtsp\"\nurl = \"{}\"\n\n\
             [media.mics]\nkind = \"rtsp\"\nurl = \"{}\"\naudio = true\n",
            profiles_dir().display().to_string(),
            data.display().to_string(),
            cam.url,
            mics.url,
        ),
    )
    .expect("config");

    // The technician's one run; its screen is read line by line.
    let mut technician = Command::new(bin("gavelctl"))
        .arg("--controller")
        .arg(&controller.url)
        .args([
            "provision",
            "hz-102-terminal",
            "--court",
            "hz-intermediate",
            "--room",
            "room-102",
            "--profile",
            "courtroom-terminal",
            "--wait",
            "90",
            "--test-recording",
            "12",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gavelctl runs");
    let stdout = technician.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut screen = Vec::new();
    let token = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("gavelctl prints the token");
        screen.push(line.clone());
        if let Some(t) = line.trim().strip_prefix("gvl-") {
            break format!("gvl-{t}");
        }
    };

    // The device: enroll with the token from the technician's screen, then start.
    let enrolled = enroll(&config, &controller.url, &token);
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let mut cmd = Command::new(bin("gavel-agent"));
    cmd.arg("--config").arg(&config).env("GAVEL_LOG", "info");
    let _agent = Proc::spawn("gavel-agent", cmd, dir.path().join("agent.log")).expect("agent");

    let status = loop {
        if let Some(status) = technician.try_wait().expect("wait") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = reader.join();
    screen.extend(rx.try_iter());
    let mut err = String::new();
    if let Some(mut e) = technician.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let screen = screen.join("\n");
    println!("--- technician's screen ---\n{screen}\n---");
    assert!(
        status.success(),
        "gavelctl provision failed: {err}\n{screen}"
    );
    for needle in [
        "enrollment token for hz-102-terminal",
        "self-test PASSED",
        "connected over mutual TLS as hz-102-terminal",
        "camera:cam-overview",
        "microphone:mics",
        "segment(s) delivered",
    ] {
        assert!(screen.contains(needle), "{needle:?} missing from\n{screen}");
    }
}

/// Production with an external broker: `gavel-controller pki mosquitto` writes the broker's
/// configuration; Mosquitto runs it; the controller connects to it over mutual TLS with its
/// own certificate; a device enrolls (told the broker's address) and comes online through
/// Mosquitto with its certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_and_an_enrolled_device_meet_on_mosquitto_with_the_generated_configuration()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("controller-data");
    let bundle = dir.path().join("mosquitto");
    let port = free_port();
    let made = Command::new(bin("gavel-controller"))
        .arg("--data-dir")
        .arg(&data)
        .args(["pki", "mosquitto", "--out"])
        .arg(&bundle)
        .args(["--port", &port.to_string(), "--name", "localhost"])
        .output()
        .expect("gavel-controller pki mosquitto");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let said = String::from_utf8_lossy(&made.stdout);
    assert!(said.contains("mosquitto -c"), "{said}");
    // As root Mosquitto drops to its own user; the test's files stay root's.
    let conf = bundle.join("mosquitto.conf");
    let text = std::fs::read_to_string(&conf).expect("conf");
    std::fs::write(&conf, format!("user root\npersistence false\n{text}")).expect("conf");
    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(&conf);
    let _mosquitto =
        Proc::spawn("mosquitto", cmd, dir.path().join("mosquitto.log")).expect("mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let device_broker = format!("localhost:{port}");
    let controller = Controller::start_with_env(
        dir.path(),
        &Broker::External {
            host: "localhost".into(),
            port,
        },
        None,
        &[
            ("GAVEL_MQTT_TLS_DIR", bundle.to_str().expect("path")),
            ("GAVEL_DEVICE_BROKER", device_broker.as_str()),
        ],
    )
    .expect("controller connects to mosquitto over TLS");
    let (ok, out, err) = controller.gavelctl(&[
        "--json",
        "provision",
        "nb-3-camera",
        "--court",
        "nb-intermediate",
        "--room",
        "room-3",
        "--profile",
        "ip-camera",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let config = dir.path().join("camera.toml");
    std::fs::write(
        &config,
        format!(
            "profiles_dir = {:?}\ndata_dir = {:?}\nsimulate_hardware = true\n",
            profiles_dir().display().to_string(),
            dir.path().join("camera-data").display().to_string()
        ),
    )
    .expect("config");
    let enrolled = enroll(
        &config,
        &controller.url,
        v["token"].as_str().expect("token"),
    );
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let said = String::from_utf8_lossy(&enrolled.stdout);
    assert!(
        said.contains(&format!("broker: localhost:{port}")),
        "{said}"
    );
    let mut cmd = Command::new(bin("gavel-agent"));
    cmd.arg("--config").arg(&config).env("GAVEL_LOG", "info");
    let _agent = Proc::spawn("gavel-agent", cmd, dir.path().join("agent.log")).expect("agent");
    let d = wait_for(
        &controller,
        "nb-3-camera",
        "online through mosquitto",
        |d| d["online"] == true,
    )
    .await;
    assert_eq!(d["room"], "room-3");
}

/// Rotation before expiry: with 30-second certificates, the device asks for a new one over
/// its authenticated link after two thirds of the life, installs it (new key made on the
/// device), reconnects with it, and is still online after its first certificate expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_renews_its_certificate_before_it_expires_and_stays_online() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = format!("127.0.0.1:{}", free_port());
    let controller = Controller::start_with_env(
        dir.path(),
        &Broker::Embedded,
        None,
        &[
            ("GAVEL_MQTT_TLS_LISTEN", gate.as_str()),
            ("GAVEL_DEVICE_CERT_VALIDITY_S", "30"),
        ],
    )
    .expect("controller");
    let (ok, out, err) = controller.gavelctl(&[
        "--json",
        "provision",
        "hz-5-audio",
        "--court",
        "hz-intermediate",
        "--room",
        "room-5",
        "--profile",
        "audio-host",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let config = dir.path().join("agent.toml");
    let data = dir.path().join("device-data");
    std::fs::write(
        &config,
        format!(
            "profiles_dir = {:?}\ndata_dir = {:?}\nsimulate_hardware = true\n",
            profiles_dir().display().to_string(),
            data.display().to_string()
        ),
    )
    .expect("config");
    let enrolled = enroll(
        &config,
        &controller.url,
        v["token"].as_str().expect("token"),
    );
    assert!(enrolled.status.success());
    let enrolled_at = Instant::now();
    let first = std::fs::read_to_string(data.join("identity/device.pem")).expect("cert");
    let mut cmd = Command::new(bin("gavel-agent"));
    cmd.arg("--config").arg(&config).env("GAVEL_LOG", "info");
    let agent = Proc::spawn("gavel-agent", cmd, dir.path().join("agent.log")).expect("agent");
    wait_for(&controller, "hz-5-audio", "online", |d| d["online"] == true).await;

    // Renewed: a second certificate issued, installed on the device.
    let deadline = Instant::now() + Duration::from_secs(40);
    let certs = loop {
        let certs = controller
            .get("/api/v1/devices/hz-5-audio/certificates")
            .await
            .expect("certificates")
            .expect("json");
        let installed = std::fs::read_to_string(data.join("identity/device.pem"))
            .map(|c| c != first)
            .unwrap_or(false);
        if certs.as_array().map_or(0, Vec::len) >= 2 && installed {
            break certs;
        }
        assert!(
            Instant::now() < deadline,
            "no renewal installed within 40 s: {certs}\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let renewed_after = enrolled_at.elapsed();
    println!(
        "renewed {:.1} s after enrollment: {certs}",
        renewed_after.as_secs_f64()
    );
    assert!(
        renewed_after >= Duration::from_secs(15),
        "renewal is for the last third of the life, not right away ({renewed_after:?})"
    );
    assert!(
        agent.log_text().contains("renewed certificate installed"),
        "{}",
        agent.log_text()
    );
    // Past the first certificate's expiry the device is still (again) online.
    let first_expiry = enrolled_at + Duration::from_secs(32);
    if let Some(wait) = first_expiry.checked_duration_since(Instant::now()) {
        tokio::time::sleep(wait).await;
    }
    wait_for(
        &controller,
        "hz-5-audio",
        "online with the renewed certificate",
        |d| d["online"] == true,
    )
    .await;
}
