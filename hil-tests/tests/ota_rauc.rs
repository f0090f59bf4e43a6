//! The agent with `[ota] backend = "rauc"` against the real RAUC: the rig from
//! `gavel_ota::rauc_rig` (throw-away PKI, two file-backed slots, the `custom` bootloader
//! backend as a shell stub, `rauc service` on a private D-Bus bus). The agent is sent
//! `ota_install` over a private Mosquitto and downloads the `.raucb` from a small HTTP
//! server; RAUC checks and writes the slot; the agent's `reboot_command` is `true`, so the
//! test plays the reboot (`Rig::reboot`: the stub chooses, the service comes up on B);
//! the agent started again runs the health gate and commits with `rauc status mark-good`.
//!
//! The second test runs the whole system: the controller publishes a `.raucb` built on the
//! rig (`gavelctl ota publish`, refusing a truncated one with the reason), a campaign
//! sends `ota_install` to the agent on the rig, and the agent installs, reboots into B and
//! commits; the campaign completes.
//!
//! Skips with the reason without root, `rauc`, `openssl`, `mksquashfs` or `dbus-daemon`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gavel_hil::device_mqtt::DeviceMqtt;
use gavel_hil::{AgentSpec, Broker, Controller, Mosquitto, Proc, bin, profiles_dir, unique};
use gavel_ota::rauc_rig::{COMPATIBLE, Rig, missing};
use gavel_protocol::{Channel, Command as DeviceCommand, CommandBody, PROTOCOL_VERSION};
use serde_json::Value;
use time::OffsetDateTime;

fn start_agent(
    dir: &Path,
    spec: &AgentSpec,
    mqtt: &(String, u16),
    config: &Path,
    rig: &Rig,
) -> Proc {
    let mut cmd = Command::new(bin("gavel-agent"));
    cmd.arg("--config")
        .arg(config)
        .args(["--device-id", &spec.id, "--profile", &spec.profile])
        .arg("--profiles-dir")
        .arg(profiles_dir())
        .args(["--broker", &format!("{}:{}", mqtt.0, mqtt.1)])
        .args(["--court", &spec.court, "--room", &spec.room])
        .args([
            "--keepalive",
            "2",
            "--health-interval",
            "1",
            "--simulate-hardware",
        ])
        .env("GAVEL_DATA_DIR", dir.join("agent-data"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", rig.bus())
        .env("GAVEL_LOG", "info");
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    Proc::spawn(
        "gavel-agent (rauc)",
        cmd,
        dir.join(format!("agent-{n}.log")),
    )
    .expect("agent")
}

/// Serves `files` (name, bytes) over HTTP on a free port; returns the base URL.
async fn serve(files: Vec<(String, Vec<u8>)>) -> String {
    let mut app = axum::Router::new();
    for (name, bytes) in files {
        app = app.route(
            &format!("/{name}"),
            axum::routing::get(move || async move { bytes }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn install_command(version: &str, url: String, bytes: &[u8]) -> Vec<u8> {
    let sha = {
        let tmp = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(tmp.path(), bytes).expect("write");
        let out = Command::new("sha256sum")
            .arg(tmp.path())
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_owned()
    };
    gavel_protocol::encode(&DeviceCommand {
        v: PROTOCOL_VERSION,
        ts: OffsetDateTime::now_utc(),
        id: unique("cmd"),
        expires: None,
        body: CommandBody::OtaInstall {
            campaign: Some("rauc".into()),
            version: version.into(),
            url,
            size: bytes.len() as u64,
            sha256: sha,
            max_bits_per_s: None,
            force: false,
        },
    })
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_with_the_rauc_backend_refuses_a_foreign_bundle_then_installs_reboots_and_commits() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut rig = Rig::new();
    let broker = Mosquitto::private().expect("mosquitto");
    let mqtt = (broker.host.clone(), broker.port);
    let spec = AgentSpec::new(&unique("ota-rauc"), "ip-camera");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[ota]\nbackend = \"rauc\"\nrauc_conf = \"{}\"\nslots_dir = \"{}\"\nreboot_command = [\"true\"]\nhealth_deadline_s = 30\n",
            rig.path("system.conf").display(),
            dir.path().join("ota-state").display()
        ),
    )
    .expect("config");
    let image = pattern(256 * 1024, 9);
    let good = rig.bundle("good", COMPATIBLE, "2.0.0", &image, "release");
    let rogue = rig.bundle("rogue", COMPATIBLE, "2.0.0", &image, "rogue");
    let good_bytes = std::fs::read(&good).expect("good");
    let rogue_bytes = std::fs::read(&rogue).expect("rogue");
    let base = serve(vec![
        ("good.raucb".into(), good_bytes.clone()),
        ("rogue.raucb".into(), rogue_bytes.clone()),
    ])
    .await;
    let dev = DeviceMqtt::listen(&mqtt, &spec.id).await;

    // On slot A, which RAUC never installed: the birth reports the build's version.
    let mut agent = start_agent(dir.path(), &spec, &mqtt, &config, &rig);
    dev.wait_for("the birth", Duration::from_secs(30), |h| {
        !h.births.is_empty()
    })
    .await;
    assert_eq!(
        dev.heard.lock().expect("lock").births[0],
        env!("CARGO_PKG_VERSION")
    );

    // A bundle signed by a foreign key: RAUC refuses it, the agent reports why, nothing
    // on the device changes.
    let before = rig.device();
    dev.publish(
        Channel::Cmd,
        false,
        install_command("2.0.0", format!("{base}/rogue.raucb"), &rogue_bytes),
    )
    .await;
    dev.wait_for("the refusal", Duration::from_secs(60), |h| {
        h.ota.iter().any(|(s, _)| s == "rejected")
    })
    .await;
    assert!(
        dev.heard_ota("rejected", "signature"),
        "{:?}",
        dev.heard.lock().expect("lock").ota
    );
    assert_eq!(rig.device(), before, "nothing written for a refused bundle");

    // The good bundle: downloaded, `rauc install`ed into slot B, then the agent "reboots".
    dev.publish(
        Channel::Cmd,
        false,
        install_command("2.0.0", format!("{base}/good.raucb"), &good_bytes),
    )
    .await;
    dev.wait_for("the reboot", Duration::from_secs(60), |h| {
        h.ota.iter().any(|(s, _)| s == "rebooting")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.alive() {
        assert!(
            Instant::now() < deadline,
            "the agent did not exit to reboot: {}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        agent.log_text().contains("rebooting the device"),
        "{}",
        agent.log_text()
    );
    let slot_b = std::fs::read(rig.path("slot-b.img")).expect("slot b");
    assert_eq!(&slot_b[..image.len()], &image[..], "RAUC wrote slot B");
    let s = rig.state();
    assert_eq!((s["primary"].as_str(), s["B_state"].as_str()), ("B", "try"));

    // Reboot into B; the agent's health gate passes and it commits through RAUC.
    assert_eq!(rig.reboot(), "B");
    let _agent = start_agent(dir.path(), &spec, &mqtt, &config, &rig);
    dev.wait_for("the commit", Duration::from_secs(60), |h| {
        h.ota.iter().any(|(s, _)| s == "committed")
    })
    .await;
    dev.wait_for("a 2.0.0 birth", Duration::from_secs(10), |h| {
        h.births.iter().any(|v| v == "2.0.0")
    })
    .await;
    assert_eq!(
        rig.state()["B_state"],
        "good",
        "rauc status mark-good reached the bootloader"
    );
    assert!(
        rig.boot_calls().iter().any(|c| c == "set-state B good"),
        "{:?}",
        rig.boot_calls()
    );
    let h = dev.heard.lock().expect("lock");
    println!("ota events: {:?}", h.ota);
    assert!(
        !h.stages()
            .iter()
            .any(|s| s == "rolled_back" || s == "interrupted"),
        "{:?}",
        h.ota
    );
}

fn write_config(dir: &Path, rig: &Rig) -> std::path::PathBuf {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[ota]\nbackend = \"rauc\"\nrauc_conf = \"{}\"\nslots_dir = \"{}\"\nreboot_command = [\"true\"]\nhealth_deadline_s = 30\n",
            rig.path("system.conf").display(),
            dir.join("ota-state").display()
        ),
    )
    .expect("config");
    config
}

fn gavelctl_json(controller: &Controller, args: &[&str]) -> Value {
    let (ok, out, err) = controller.gavelctl(args);
    assert!(ok, "gavelctl {args:?}: {err}");
    serde_json::from_str(&out).expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn campaign_over_a_published_rauc_bundle_installs_reboots_commits_and_completes() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tmp");
    // The device's RAUC system is `gavel-ip-camera`: the controller maps it to the
    // `ip-camera` profile the agent registers with.
    let mut rig = Rig::with_compatible("gavel-ip-camera");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("ota-rauc-campaign"), "ip-camera");
    let config = write_config(dir.path(), &rig);
    let mut agent = start_agent(dir.path(), &spec, &controller.mqtt, &config, &rig);
    controller
        .wait_online(&spec.id, true, Duration::from_secs(30))
        .await
        .expect("online");

    // A truncated `.raucb` is refused at publish, with RAUC's reason; nothing is listed.
    let image = pattern(256 * 1024, 21);
    let bundle = rig.bundle("v2", "gavel-ip-camera", "2.0.0", &image, "release");
    let bytes = std::fs::read(&bundle).expect("bundle");
    let cut = dir.path().join("cut.raucb");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("cut");
    let (ok, _, err) = controller.gavelctl(&["ota", "publish", cut.to_str().expect("utf-8")]);
    assert!(!ok && err.contains("RAUC bundle"), "{err}");
    println!(
        "truncated .raucb refused: {}",
        err.lines().next().unwrap_or_default()
    );
    assert_eq!(
        gavelctl_json(&controller, &["--json", "ota", "ls"]),
        Value::Array(vec![])
    );

    // The good one: published with its version, profile, size and SHA-256.
    let published = gavelctl_json(
        &controller,
        &["--json", "ota", "publish", bundle.to_str().expect("utf-8")],
    );
    let name = published["name"].as_str().expect("name").to_owned();
    assert!(
        name.starts_with("2.0.0-") && name.ends_with(".raucb"),
        "{published}"
    );
    assert_eq!(published["format"], "raucb", "{published}");
    assert_eq!(published["rauc_compatible"], "gavel-ip-camera");
    assert_eq!(published["manifest"]["compatible"][0], "ip-camera");
    assert_eq!(published["size"], bytes.len() as u64);
    let (ok, out, err) = controller.gavelctl(&["ota", "ls"]);
    assert!(
        ok && out.contains(&name) && out.contains("rauc"),
        "{out}{err}"
    );

    // The campaign reaches the device, which downloads from the controller and installs
    // with RAUC; then it "reboots" (the agent exits, `reboot_command` is `true`).
    let created = gavelctl_json(
        &controller,
        &[
            "--json", "ota", "campaign", "create", "--bundle", &name, "--id", "rauc-1",
        ],
    );
    assert_eq!(created["progress"]["total"], 1, "{created}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.alive() {
        assert!(
            Instant::now() < deadline,
            "the agent did not install and exit to reboot: {}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        agent.log_text().contains("rebooting the device"),
        "{}",
        agent.log_text()
    );
    let slot_b = std::fs::read(rig.path("slot-b.img")).expect("slot b");
    assert_eq!(&slot_b[..image.len()], &image[..], "RAUC wrote slot B");

    // Reboot into B; the agent's health gate passes, it commits, the campaign completes.
    assert_eq!(rig.reboot(), "B");
    let _agent = start_agent(dir.path(), &spec, &controller.mqtt, &config, &rig);
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let v = gavelctl_json(
            &controller,
            &["--json", "ota", "campaign", "status", "rauc-1"],
        );
        if v["state"]["state"] == "completed" {
            break v;
        }
        assert!(Instant::now() < deadline, "campaign not completed: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(done["progress"]["succeeded"], 1, "{done}");
    assert_eq!(done["progress"]["failed"], 0, "{done}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = controller.device(&spec.id).await.unwrap_or(Value::Null);
        if d["firmware_version"] == "2.0.0" && d["online"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "no 2.0.0 birth: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rig.state()["B_state"], "good", "committed through RAUC");
    println!(
        "campaign over a .raucb: published, installed, rebooted into B, committed, completed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
