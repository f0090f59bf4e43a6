//! The agent restarts between an install and its reboot (the new slot written and made
//! the boot target, the reboot not done): SIGKILL of the agent, file-slot backend.
//!
//! The agent runs by itself (no boot supervisor), so killing it is an agent restart, not
//! a reboot. It talks to a private Mosquitto where nobody sends receipts: its reboot then
//! waits the full 5 s for the outbox to drain, a deterministic window to kill it in after
//! the journal says `activated`. The controller only serves the bundle over HTTP; the
//! test sends `ota_install` and the room's schedule itself and reads the device's `ota`
//! events from the broker.
//!
//! After the restart the agent must find the switch pending: while a hearing is due
//! within the guard window it reports `deferred` and keeps everything as it is (no
//! rollback, nothing rewritten); once the room is free it reboots; the bootloader then
//! starts the new slot and the health gate commits it.

use std::path::Path;
use std::time::{Duration, Instant};

use gavel_hil::device_mqtt::DeviceMqtt;
use gavel_hil::{
    AgentSpec, Broker, Controller, Mosquitto, Proc, bin, device_slots, ota_test_key,
    start_agent_with, start_device, unique,
};
use gavel_protocol::{
    Channel, Command, CommandBody, PROTOCOL_VERSION, Schedule, ScheduledHearing, ScheduledStatus,
};
use serde_json::Value;
use time::OffsetDateTime;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_default()).unwrap_or(Value::Null)
}

fn schedule(spec: &AgentSpec, version: u64, hearing_in: Option<time::Duration>) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let hearings = hearing_in
        .map(|d| ScheduledHearing {
            id: unique("h"),
            case_number: "(2026)ota-restart-1".into(),
            start: now + d,
            end: now + d + time::Duration::hours(1),
            pre_roll_s: 60,
            status: ScheduledStatus::Scheduled,
        })
        .into_iter()
        .collect();
    gavel_protocol::encode(&Schedule {
        v: PROTOCOL_VERSION,
        ts: now,
        court: spec.court.clone(),
        room: spec.room.clone(),
        version,
        hearings,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_between_install_and_reboot_finishes_the_switch_when_the_room_allows() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let broker = Mosquitto::private().expect("mosquitto");
    let mqtt = (broker.host.clone(), broker.port);
    let mut spec = AgentSpec::new(&unique("ota-restart"), "ip-camera");
    spec.room = unique("room");
    let slots = device_slots(dir.path(), &spec.id);
    let key = ota_test_key("TEST-ONLY-release.pub");
    let agent_args = ["--ota-key", s(&key), "--ota-dir", s(&slots)];
    let dev = DeviceMqtt::listen(&mqtt, &spec.id).await;

    // Build, sign and publish 2.0.0: a slot image that starts the built agent.
    let image = dir.path().join("image-2.0.0");
    std::fs::write(
        &image,
        format!(
            "#!/bin/sh\n# gavel test image 2.0.0\nexec {} \"$@\"\n",
            bin("gavel-agent").display()
        ),
    )
    .expect("image");
    let bundle = dir.path().join("gavel-2.0.0.gota");
    let (ok, out, err) = controller.gavelctl(&[
        "ota",
        "build",
        "--image",
        s(&image),
        "--version",
        "2.0.0",
        "--compatible",
        "ip-camera",
        "-o",
        s(&bundle),
        "--key",
        s(&ota_test_key("TEST-ONLY-release.key")),
    ]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = controller.gavelctl(&["--json", "ota", "publish", s(&bundle)]);
    assert!(ok, "{err}");
    let published: Value = serde_json::from_str(&out).expect("json");
    let name = published["name"].as_str().expect("name").to_owned();
    let bytes = std::fs::read(&bundle).expect("bundle");
    let sha = std::process::Command::new("sha256sum")
        .arg(&bundle)
        .output()
        .expect("sha256sum");
    let sha = String::from_utf8_lossy(&sha.stdout)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_owned();

    // Agent on slot A (provisioned from the built agent on its first start).
    let mut agent: Proc = start_agent_with(dir.path(), &spec, &mqtt, &agent_args).expect("agent");
    dev.wait_for("the birth", Duration::from_secs(30), |h| {
        !h.births.is_empty()
    })
    .await;
    let install = Command {
        v: PROTOCOL_VERSION,
        ts: OffsetDateTime::now_utc(),
        id: unique("cmd"),
        expires: None,
        body: CommandBody::OtaInstall {
            campaign: Some("restart".into()),
            version: "2.0.0".into(),
            url: format!("{}/api/v1/ota/bundles/{name}", controller.url),
            size: bytes.len() as u64,
            sha256: sha,
            max_bits_per_s: None,
            force: false,
        },
    };
    dev.publish(Channel::Cmd, false, gavel_protocol::encode(&install))
        .await;

    // The journal says `activated` (slot B written, verified, primary): kill the agent
    // while it waits to reboot.
    let journal = slots.join("install.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_json(&journal)["stage"] != "activated" {
        assert!(
            Instant::now() < deadline,
            "no install: {}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        agent.alive(),
        "the agent must still be up (waiting to reboot)"
    );
    agent.kill9();
    let boot_after_install = read_json(&slots.join("boot.json"));
    assert_eq!(boot_after_install["booted"], "a", "{boot_after_install}");
    assert_eq!(boot_after_install["primary"], "b", "{boot_after_install}");
    assert_eq!(
        boot_after_install["b"]["bootable"], true,
        "{boot_after_install}"
    );
    assert_eq!(
        boot_after_install["b"]["good"], false,
        "{boot_after_install}"
    );
    let slot_b = std::fs::read(slots.join("slot-b.img")).expect("slot b");
    assert_eq!(slot_b, std::fs::read(&image).expect("image"));

    // A hearing is now due within the guard window (30 min): after the restart the
    // agent finds the pending switch and waits, changing nothing.
    dev.publish(
        Channel::Schedule,
        true,
        schedule(&spec, 1, Some(time::Duration::minutes(10))),
    )
    .await;
    let mut agent = start_agent_with(dir.path(), &spec, &mqtt, &agent_args).expect("agent again");
    dev.wait_for("a deferred reboot", Duration::from_secs(30), |h| {
        h.ota
            .iter()
            .any(|(s, d)| s == "deferred" && d.contains("reboot waits"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        agent.alive(),
        "no reboot while the hearing is near: {}",
        agent.log_text()
    );
    assert_eq!(
        read_json(&slots.join("boot.json")),
        boot_after_install,
        "boot state untouched"
    );
    assert_eq!(read_json(&journal)["stage"], "activated");
    assert_eq!(
        std::fs::read(slots.join("slot-b.img")).expect("slot b"),
        slot_b
    );
    {
        let h = dev.heard.lock().expect("lock");
        assert!(
            !h.stages()
                .iter()
                .any(|s| s == "rolled_back" || s == "interrupted" || s == "rejected"),
            "a pending reboot is not a failure: {:?}",
            h.ota
        );
    }

    // The hearing is cancelled: the agent reboots into the new slot by itself.
    dev.publish(Channel::Schedule, true, schedule(&spec, 2, None))
        .await;
    dev.wait_for("the resumed reboot", Duration::from_secs(30), |h| {
        h.ota
            .iter()
            .any(|(s, d)| s == "rebooting" && d.contains("before the agent restarted"))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.alive() {
        assert!(
            Instant::now() < deadline,
            "the agent did not exit to reboot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        read_json(&slots.join("boot.json")),
        boot_after_install,
        "nothing changed before the bootloader runs"
    );

    // Power on through the bootloader: slot B on trial, healthy, committed, 2.0.0 reported.
    let device = start_device(dir.path(), &spec, &mqtt, &[]).expect("device");
    dev.wait_for("the commit", Duration::from_secs(60), |h| {
        h.ota.iter().any(|(s, _)| s == "committed")
    })
    .await;
    dev.wait_for("a 2.0.0 birth", Duration::from_secs(10), |h| {
        h.births.iter().any(|v| v == "2.0.0")
    })
    .await;
    let boot = read_json(&slots.join("boot.json"));
    assert_eq!(boot["booted"], "b", "{boot}");
    assert_eq!(boot["b"]["good"], true, "{boot}");
    assert!(
        device.log_text().contains("booting slot B (version 2.0.0)"),
        "{}",
        device.log_text()
    );
    let h = dev.heard.lock().expect("lock");
    let order = h.stages();
    println!("ota events: {:?}", h.ota);
    let pos = |stage: &str| {
        order
            .iter()
            .position(|s| s == stage)
            .unwrap_or_else(|| panic!("{stage} missing: {order:?}"))
    };
    assert!(
        pos("installing") < pos("deferred") && pos("deferred") < pos("committed"),
        "{order:?}"
    );
    assert_eq!(
        order.iter().filter(|s| *s == "installing").count(),
        1,
        "installed once: {order:?}"
    );
    assert!(
        !order
            .iter()
            .any(|s| s == "rolled_back" || s == "interrupted"),
        "{order:?}"
    );
}
