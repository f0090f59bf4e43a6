//! OTA through the whole system: the controller, `gavelctl ota build/sign/verify/publish`
//! and a campaign, and simulated devices that really boot A/B slots (`gavel-simdevice`:
//! the file-backed bootchooser picks a slot and runs its image; the image is a small
//! wrapper script that starts the built agent). Bundles are signed with the TEST-ONLY key.
//!
//! - a good bundle is downloaded, installed, rebooted into and committed; the device's
//!   birth then reports the new version;
//! - a bundle whose agent fails its health check is rolled back automatically, with the
//!   reason, and the campaign's canary wave halts at the threshold;
//! - a device whose room records a hearing defers, and installs after the recording stops.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gavel_hil::{
    AgentSpec, Broker, Controller, bin, device_slots, ota_test_key, start_agent, start_device,
    unique,
};
use serde_json::Value;

/// The version the built agent reports (the workspace's).
const FACTORY: &str = env!("CARGO_PKG_VERSION");

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A slot image: a shell script that starts the built agent, with `body` before it.
fn wrapper_image(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "#!/bin/sh\n# gavel test image {name}\n{body}\nexec {} \"$@\"\n",
        bin("gavel-agent").display()
    );
    std::fs::write(&path, text).expect("image");
    path
}

/// Builds and signs a bundle with `gavelctl ota build --key`, publishes it, returns its
/// published name.
fn publish(
    controller: &Controller,
    dir: &Path,
    image: &Path,
    version: &str,
    profile: &str,
) -> String {
    let bundle = dir.join(format!("gavel-{version}.gota"));
    let (ok, out, err) = controller.gavelctl(&[
        "ota",
        "build",
        "--image",
        s(image),
        "--version",
        version,
        "--compatible",
        profile,
        "-o",
        s(&bundle),
        "--key",
        s(&ota_test_key("TEST-ONLY-release.key")),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("version {version} for [{profile}]")),
        "{out}"
    );
    let (ok, out, err) = controller.gavelctl(&["--json", "ota", "publish", s(&bundle)]);
    assert!(ok, "{err}");
    let published: Value = serde_json::from_str(&out).expect("json");
    published["name"].as_str().expect("name").to_owned()
}

fn create_campaign(controller: &Controller, id: &str, bundle: &str) -> Value {
    let (ok, out, err) = controller.gavelctl(&[
        "--json", "ota", "campaign", "create", "--bundle", bundle, "--id", id,
    ]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).expect("json")
}

async fn wait_campaign(controller: &Controller, id: &str, state: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (ok, out, err) = controller.gavelctl(&["--json", "ota", "campaign", "status", id]);
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).expect("json");
        if v["state"]["state"] == state {
            return v;
        }
        assert!(Instant::now() < deadline, "campaign {id} not {state}: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The device's `ota` events in arrival order: (stage, detail).
async fn ota_events(controller: &Controller, id: &str) -> Vec<(String, String)> {
    let events = controller
        .get(&format!("/api/v1/devices/{id}/events?limit=500"))
        .await
        .expect("events")
        .unwrap_or(Value::Null);
    let mut out: Vec<(String, String)> = events
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["type"] == "ota")
        .map(|e| {
            (
                e["event"]["stage"].as_str().unwrap_or("").to_owned(),
                e["event"]["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.reverse();
    out
}

async fn wait_stage(
    controller: &Controller,
    id: &str,
    stage: &str,
    timeout: Duration,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let events = ota_events(controller, id).await;
        if events.iter().any(|(s, _)| s == stage) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no `{stage}` event from {id} within {timeout:?}: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_version(controller: &Controller, id: &str, version: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let d = controller.device(id).await.unwrap_or(Value::Null);
        if d["firmware_version"] == version && d["online"] == true {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} does not report version {version}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stages(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(s, _)| s.as_str()).collect()
}

fn boot_state(dir: &Path, id: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(device_slots(dir, id).join("boot.json")).expect("boot.json"),
    )
    .expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn good_bundle_is_downloaded_installed_rebooted_into_and_committed() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("ota-good"), "ip-camera");
    let device = start_device(dir.path(), &spec, &controller.mqtt, &[]).expect("device");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(30))
        .await
        .expect("online");
    wait_version(&controller, &spec.id, FACTORY, Duration::from_secs(5)).await;
    let boot = boot_state(dir.path(), &spec.id);
    assert_eq!(boot["booted"], "a", "{boot}");

    // A foreign key is refused by `verify`; the release key verifies.
    let image = wrapper_image(dir.path(), "image-2.0.0", "");
    let name = publish(&controller, dir.path(), &image, "2.0.0", "ip-camera");
    let bundle = dir.path().join("gavel-2.0.0.gota");
    let (ok, out, err) = controller.gavelctl(&[
        "ota",
        "verify",
        s(&bundle),
        "--pub",
        s(&ota_test_key("TEST-ONLY-release.pub")),
    ]);
    assert!(ok && out.contains("signature and payload OK"), "{out}{err}");
    let (ok, _, err) = controller.gavelctl(&[
        "ota",
        "verify",
        s(&bundle),
        "--pub",
        s(&ota_test_key("TEST-ONLY-rogue.pub")),
    ]);
    assert!(!ok && err.contains("signature"), "{err}");

    let created = create_campaign(&controller, "good", &name);
    assert_eq!(created["progress"]["total"], 1);
    let done = wait_campaign(&controller, "good", "completed", Duration::from_secs(60)).await;
    assert_eq!(done["progress"]["succeeded"], 1, "{done}");
    assert_eq!(done["progress"]["failed"], 0, "{done}");

    // The dashboard shows the campaign's progress (headless Chromium).
    let driver = gavel_hil::ChromeDriver::start().expect("chromedriver");
    let browser = driver.session().await.expect("session");
    browser.goto(&controller.url).await.expect("dashboard");
    let mut shown = String::new();
    for _ in 0..100 {
        if let Ok(e) = browser
            .find(fantoccini::Locator::Css("#campaign-good"))
            .await
        {
            shown = e.text().await.unwrap_or_default();
            if shown.contains("completed") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        shown.contains("2.0.0")
            && shown.contains("completed")
            && shown.contains("1 updated, 0 failed"),
        "dashboard campaign box: {shown:?}"
    );
    browser.close().await.expect("close");

    // The birth after the reboot reports the version of the slot that runs.
    wait_version(&controller, &spec.id, "2.0.0", Duration::from_secs(20)).await;
    let events = wait_stage(&controller, &spec.id, "committed", Duration::from_secs(10)).await;
    let order = stages(&events);
    let pos = |stage: &str| {
        order
            .iter()
            .position(|s| *s == stage)
            .unwrap_or_else(|| panic!("{stage} missing: {order:?}"))
    };
    assert!(pos("downloading") < pos("installing"), "{order:?}");
    assert!(pos("installing") < pos("rebooting"), "{order:?}");
    assert!(pos("rebooting") < pos("committed"), "{order:?}");
    assert!(
        !order.contains(&"rolled_back") && !order.contains(&"rejected"),
        "{order:?}"
    );

    // Slot B holds the bundle's image, is committed and primary; the supervisor booted it.
    let boot = boot_state(dir.path(), &spec.id);
    assert_eq!(boot["primary"], "b", "{boot}");
    assert_eq!(boot["booted"], "b", "{boot}");
    assert_eq!(boot["b"]["good"], true, "{boot}");
    let slot_b =
        std::fs::read(device_slots(dir.path(), &spec.id).join("slot-b.img")).expect("slot b");
    assert_eq!(slot_b, std::fs::read(&image).expect("image"));
    assert!(
        device.log_text().contains("booting slot B (version 2.0.0)"),
        "{}",
        device.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bundle_whose_agent_fails_its_health_check_is_rolled_back_and_the_wave_halts() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    // Two courtroom terminals in two rooms: the canary wave is one room.
    let mut specs = Vec::new();
    let mut devices = Vec::new();
    for room in ["room-1", "room-2"] {
        let mut spec = AgentSpec::new(&unique("ota-bad"), "courtroom-terminal");
        spec.room = room.into();
        devices.push(
            start_device(
                dir.path(),
                &spec,
                &controller.mqtt,
                &["--ota-health-deadline", "8"],
            )
            .expect("device"),
        );
        specs.push(spec);
    }
    for spec in &specs {
        controller
            .wait_online(&spec.id, true, Duration::from_secs(30))
            .await
            .expect("online");
    }

    // The new "build" lost simulated-hardware support: on this rig its recorder has no
    // cameras, so `record` cannot run and the health gate must refuse the slot.
    let image = wrapper_image(
        dir.path(),
        "image-3.0.0",
        "for a; do shift; [ \"$a\" = --simulate-hardware ] || set -- \"$@\" \"$a\"; done",
    );
    let name = publish(
        &controller,
        dir.path(),
        &image,
        "3.0.0",
        "courtroom-terminal",
    );
    create_campaign(&controller, "bad", &name);
    let halted = wait_campaign(&controller, "bad", "halted", Duration::from_secs(80)).await;
    assert_eq!(halted["progress"]["failed"], 1, "{halted}");
    assert_eq!(halted["progress"]["succeeded"], 0, "{halted}");
    let reason = halted["state"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("wave 0 failed on 1 of 1"), "{halted}");

    // The canary rolled back by itself, said why, and runs the factory slot again.
    let mut canary = None;
    for spec in &specs {
        if !ota_events(&controller, &spec.id).await.is_empty() {
            canary = Some(spec.id.clone());
        }
    }
    let canary = canary.expect("one device got the install");
    let other = specs
        .iter()
        .find(|s| s.id != canary)
        .expect("other")
        .id
        .clone();
    let events = wait_stage(&controller, &canary, "rolled_back", Duration::from_secs(5)).await;
    let (_, detail) = events
        .iter()
        .find(|(s, _)| s == "rolled_back")
        .expect("rolled_back");
    assert!(
        detail.contains("not healthy within 8 s") && detail.contains("record"),
        "{detail}"
    );
    assert!(
        stages(&events).contains(&"rebooting"),
        "it did boot the new slot: {events:?}"
    );
    assert!(!stages(&events).contains(&"committed"), "{events:?}");
    wait_version(&controller, &canary, FACTORY, Duration::from_secs(30)).await;
    let boot = boot_state(dir.path(), &canary);
    assert_eq!(boot["booted"], "a", "{boot}");
    assert_eq!(boot["primary"], "a", "{boot}");
    assert_eq!(boot["b"]["bootable"], false, "{boot}");
    let canary_proc = devices
        .iter()
        .zip(&specs)
        .find(|(_, s)| s.id == canary)
        .map(|(d, _)| d)
        .expect("canary process");
    let log = canary_proc.log_text();
    assert!(
        log.contains("booting slot B (version 3.0.0)") && log.contains("booting slot A (version"),
        "{log}"
    );

    // The halted wave never reached the other room.
    assert!(ota_events(&controller, &other).await.is_empty());
    assert!(
        !device_slots(dir.path(), &other)
            .join("slot-b.json")
            .exists()
    );
    wait_version(&controller, &other, FACTORY, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn device_recording_a_hearing_defers_and_installs_after_the_recording_stops() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("ota-rec"), "courtroom-terminal");
    let _device = start_device(dir.path(), &spec, &controller.mqtt, &[]).expect("device");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(30))
        .await
        .expect("online");
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/devices/{}/commands", controller.url, spec.id);
    let command = |body: Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("post")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let ack =
        command(serde_json::json!({"type": "start_recording", "hearing_id": "H-ota-1"})).await;
    assert_eq!(ack["status"], "ok", "{ack}");
    // The recorder feeds the room schedule once a second.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let image = wrapper_image(dir.path(), "image-2.1.0", "");
    let name = publish(
        &controller,
        dir.path(),
        &image,
        "2.1.0",
        "courtroom-terminal",
    );
    create_campaign(&controller, "rec", &name);
    let events = wait_stage(&controller, &spec.id, "deferred", Duration::from_secs(20)).await;
    let (_, detail) = events
        .iter()
        .find(|(s, _)| s == "deferred")
        .expect("deferred");
    assert!(detail.contains("a hearing is in progress"), "{detail}");

    // While the hearing is recorded nothing is downloaded, written or rebooted.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before_stop = ota_events(&controller, &spec.id).await;
    assert_eq!(stages(&before_stop), vec!["deferred"], "{before_stop:?}");
    assert!(
        !device_slots(dir.path(), &spec.id)
            .join("slot-b.json")
            .exists()
    );
    let boot = boot_state(dir.path(), &spec.id);
    assert_eq!(boot["booted"], "a", "{boot}");

    let ack = command(serde_json::json!({"type": "stop_recording", "hearing_id": "H-ota-1"})).await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let done = wait_campaign(&controller, "rec", "completed", Duration::from_secs(60)).await;
    assert_eq!(done["progress"]["succeeded"], 1, "{done}");
    wait_version(&controller, &spec.id, "2.1.0", Duration::from_secs(20)).await;
    let events = ota_events(&controller, &spec.id).await;
    let order = stages(&events);
    assert_eq!(order.first(), Some(&"deferred"), "{order:?}");
    assert!(
        order.contains(&"downloading") && order.contains(&"committed"),
        "{order:?}"
    );
}

/// An agent without `[ota]` still refuses, and the campaign counts it as failed.
#[tokio::test(flavor = "multi_thread")]
async fn agent_without_ota_refuses_the_install_and_the_campaign_halts() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("ota-off"), "ip-camera");
    let _agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    let image = dir.path().join("rootfs.img");
    std::fs::write(&image, vec![7u8; 50_000]).expect("image");
    let name = publish(&controller, dir.path(), &image, "2.0.0", "ip-camera");
    let (ok, out, err) = controller.gavelctl(&["ota", "ls"]);
    assert!(
        ok && out.contains(&name) && out.contains("2.0.0"),
        "{out}{err}"
    );
    create_campaign(&controller, "c1", &name);
    let halted = wait_campaign(&controller, "c1", "halted", Duration::from_secs(30)).await;
    assert_eq!(halted["progress"]["failed"], 1);
    assert!(
        halted["state"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("wave 0 failed on 1 of 1"),
        "{halted}"
    );
    let (ok, out, _) = controller.gavelctl(&["ota", "campaign", "ls"]);
    assert!(ok && out.contains("c1") && out.contains("halted"), "{out}");
    let (ok, out, err) = controller.gavelctl(&["ota", "campaign", "abort", "c1"]);
    assert!(ok && out.contains("aborted"), "{out}{err}");
    let (ok, out, _) = controller.gavelctl(&["ota", "campaign", "resume", "c1"]);
    assert!(ok && out.contains("aborted"), "{out}");
}

/// A new image that never comes up (it crashes at every boot) is abandoned by the
/// bootloader after its boot attempts; the old slot's agent reports it rolled back.
#[tokio::test(flavor = "multi_thread")]
async fn bundle_whose_agent_crashes_at_boot_is_abandoned_by_the_bootloader_and_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("ota-crash"), "ip-camera");
    let device = start_device(dir.path(), &spec, &controller.mqtt, &[]).expect("device");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(30))
        .await
        .expect("online");
    let image = wrapper_image(
        dir.path(),
        "image-4.0.0",
        "echo 'panic at boot' >&2; exit 101",
    );
    let name = publish(&controller, dir.path(), &image, "4.0.0", "ip-camera");
    create_campaign(&controller, "crash", &name);
    let halted = wait_campaign(&controller, "crash", "halted", Duration::from_secs(60)).await;
    assert_eq!(halted["progress"]["failed"], 1, "{halted}");
    let events = wait_stage(&controller, &spec.id, "rolled_back", Duration::from_secs(5)).await;
    let (_, detail) = events
        .iter()
        .find(|(s, _)| s == "rolled_back")
        .expect("rolled_back");
    assert!(
        detail.contains("did not come up within its boot attempts"),
        "{detail}"
    );
    wait_version(&controller, &spec.id, FACTORY, Duration::from_secs(20)).await;
    let log = device.log_text();
    assert_eq!(
        log.matches("booting slot B (version 4.0.0)").count(),
        3,
        "three boot attempts: {log}"
    );
    let boot = boot_state(dir.path(), &spec.id);
    assert_eq!(boot["booted"], "a", "{boot}");
    assert_eq!(boot["b"]["bootable"], false, "{boot}");
}

/// A capped download in progress stops when a hearing starts recording, and resumes with
/// an HTTP Range request from where it stopped once the recording ends.
#[tokio::test(flavor = "multi_thread")]
async fn download_pauses_when_a_hearing_starts_and_resumes_by_range_after_it_ends() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("ota-pause"), "courtroom-terminal");
    let _device = start_device(dir.path(), &spec, &controller.mqtt, &[]).expect("device");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(30))
        .await
        .expect("online");
    // About 240 KB: at 200 kbit/s the download takes about 10 s.
    let mut rng = fastrand::Rng::with_seed(7);
    let padding: String = (0..4000)
        .map(|_| {
            format!(
                "# {:016x}{:016x}{:016x}\n",
                rng.u64(..),
                rng.u64(..),
                rng.u64(..)
            )
        })
        .collect();
    let image = wrapper_image(dir.path(), "image-2.2.0", "");
    let mut text = std::fs::read_to_string(&image).expect("image");
    text.push_str(&padding);
    std::fs::write(&image, text).expect("image");
    let name = publish(
        &controller,
        dir.path(),
        &image,
        "2.2.0",
        "courtroom-terminal",
    );
    let created: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/ota/campaigns", controller.url))
        .json(&serde_json::json!({"id": "slow", "bundle": name, "max_bits_per_s": 200_000}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(created["progress"]["total"], 1, "{created}");
    let events = wait_stage(
        &controller,
        &spec.id,
        "downloading",
        Duration::from_secs(20),
    )
    .await;
    assert!(events[0].1.contains("at most 200000 bit/s"), "{events:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/devices/{}/commands", controller.url, spec.id);
    let ack = controller
        .command(
            &spec.id,
            serde_json::json!({"type": "start_recording", "hearing_id": "H-ota-2"}),
        )
        .await
        .expect("start_recording");
    assert_eq!(ack["status"], "ok", "{ack}");
    let events = wait_stage(&controller, &spec.id, "deferred", Duration::from_secs(10)).await;
    assert!(
        events
            .iter()
            .any(|(s, d)| s == "deferred" && d.contains("a hearing is in progress")),
        "{events:?}"
    );
    // Paused: the partial file stops growing and nothing is installed.
    let partial = device_slots(dir.path(), &spec.id).join("download.gota");
    let size = || std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    // Running, it grows by a 16 KiB piece at least every 0.7 s; wait until it holds still.
    let deadline = Instant::now() + Duration::from_secs(15);
    let held = loop {
        let before = size();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if size() == before {
            break before;
        }
        assert!(Instant::now() < deadline, "the download did not pause");
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        std::fs::metadata(&partial).expect("partial").len(),
        held,
        "download paused"
    );
    let bundle_size = std::fs::metadata(dir.path().join("gavel-2.2.0.gota"))
        .expect("bundle")
        .len();
    assert!(held > 0 && held < bundle_size, "{held} of {bundle_size}");
    assert!(!stages(&ota_events(&controller, &spec.id).await).contains(&"installing"));

    let ack: Value = client
        .post(&url)
        .json(&serde_json::json!({"type": "stop_recording", "hearing_id": "H-ota-2"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(ack["status"], "ok", "{ack}");
    let done = wait_campaign(&controller, "slow", "completed", Duration::from_secs(60)).await;
    assert_eq!(done["progress"]["succeeded"], 1, "{done}");
    wait_version(&controller, &spec.id, "2.2.0", Duration::from_secs(20)).await;
    let events = ota_events(&controller, &spec.id).await;
    let resumed = events
        .iter()
        .filter(|(s, _)| s == "downloading")
        .nth(1)
        .map(|(_, d)| d.clone())
        .unwrap_or_else(|| panic!("a second download step: {events:?}"));
    let from: u64 = resumed
        .split("resuming at byte ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("resumed by Range: {resumed}"));
    assert!(from >= held, "resumed at {from}, had {held}");
}

/// The controller side of hearing awareness, and targeting by tag: a campaign over the
/// devices tagged `pilot` updates the free room and holds the room in session until its
/// hearing is closed; an untagged device is not touched; a bad maintenance window is
/// refused with a clear error.
#[tokio::test(flavor = "multi_thread")]
async fn campaign_by_tag_holds_a_room_in_session_until_its_hearing_closes() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let mut free = AgentSpec::new(&unique("ota-free"), "ip-camera");
    free.room = "room-a-free".into();
    let mut busy = AgentSpec::new(&unique("ota-busy"), "ip-camera");
    busy.room = "room-b-busy".into();
    let mut untagged = AgentSpec::new(&unique("ota-untagged"), "ip-camera");
    untagged.room = "room-a-free".into();
    let tag = ["--tag", "pilot"];
    let _d1 = start_device(dir.path(), &free, &controller.mqtt, &tag).expect("free");
    let _d2 = start_device(dir.path(), &busy, &controller.mqtt, &tag).expect("busy");
    let _d3 = start_device(dir.path(), &untagged, &controller.mqtt, &[]).expect("untagged");
    for d in [&free, &busy, &untagged] {
        controller
            .wait_online(&d.id, true, Duration::from_secs(30))
            .await
            .expect("online");
    }
    assert_eq!(
        controller.device(&free.id).await.expect("device")["tags"],
        serde_json::json!(["pilot"])
    );

    // A hearing in progress in room-b-busy.
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let csv = dir.path().join("hearings.csv");
    std::fs::write(
        &csv,
        format!(
            "case_number,court,room,start,end,judge,parties\nota-busy-1,test-court,room-b-busy,{},{},J,plaintiff:A\n",
            (now - time::Duration::seconds(10)).format(fmt).expect("ts"),
            (now + time::Duration::minutes(30)).format(fmt).expect("ts"),
        ),
    )
    .expect("csv");
    let (ok, _, err) = controller.gavelctl(&["hearings", "import", s(&csv)]);
    assert!(ok, "{err}");
    let (ok, out, err) = controller.gavelctl(&["--json", "hearings", "ls"]);
    assert!(ok, "{err}");
    let hearing = serde_json::from_str::<Value>(&out).expect("json")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // The campaign task learns the rooms' schedules every 2 s.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let image = wrapper_image(dir.path(), "image-3.0.0", "");
    let name = publish(&controller, dir.path(), &image, "3.0.0", "ip-camera");
    let (ok, _, err) = controller.gavelctl(&[
        "ota",
        "campaign",
        "create",
        "--bundle",
        &name,
        "--id",
        "bad-window",
        "--tag",
        "pilot",
        "--window",
        "25-3",
    ]);
    assert!(!ok, "a window of hour 25 is refused");
    assert!(err.contains("expected START-END"), "{err}");
    let (ok, out, err) = controller.gavelctl(&[
        "--json", "ota", "campaign", "create", "--bundle", &name, "--id", "pilot", "--tag", "pilot",
    ]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        created["progress"]["total"], 2,
        "only the tagged devices: {created}"
    );

    // The free room's camera is updated; the busy room's waits for its hearing.
    wait_version(&controller, &free.id, "3.0.0", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        ota_events(&controller, &busy.id).await.is_empty(),
        "nothing sent to a room in session"
    );
    let (ok, out, _) = controller.gavelctl(&["--json", "ota", "campaign", "status", "pilot"]);
    assert!(ok);
    let status: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status["progress"]["succeeded"], 1, "{status}");
    assert_ne!(status["state"]["state"], "completed", "{status}");

    let (ok, _, err) = controller.gavelctl(&["hearings", "close", &hearing, "--by", "clerk"]);
    assert!(ok, "{err}");
    let done = wait_campaign(&controller, "pilot", "completed", Duration::from_secs(90)).await;
    assert_eq!(done["progress"]["succeeded"], 2, "{done}");
    wait_version(&controller, &busy.id, "3.0.0", Duration::from_secs(20)).await;
    let untouched = controller.device(&untagged.id).await.expect("device");
    assert_ne!(untouched["firmware_version"], "3.0.0", "{untouched}");
    assert!(ota_events(&controller, &untagged.id).await.is_empty());
}
