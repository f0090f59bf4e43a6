//! OTA through the whole system with `gavelctl`: build and sign a bundle with the
//! TEST-ONLY key, verify it (and see a foreign key refused), publish it, start a
//! campaign. The agent in this build has no installer wired, so it refuses `ota_install`;
//! the campaign must count that as a failure and halt its canary wave, then obey resume
//! and abort.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gavel_hil::{AgentSpec, Broker, Controller, start_agent, unique};
use serde_json::Value;

fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ota/test-keys")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread")]
async fn campaign_halts_its_canary_wave_when_the_device_refuses_the_install() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("ota"), "ip-camera");
    let _agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");

    // Build, sign, verify.
    let image = dir.path().join("rootfs.img");
    let mut rng = fastrand::Rng::with_seed(9);
    std::fs::write(
        &image,
        (0..200_000).map(|_| rng.u8(..)).collect::<Vec<u8>>(),
    )
    .unwrap();
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
        s(&key("TEST-ONLY-release.key")),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("version 2.0.0 for [ip-camera]"), "{out}");
    let (ok, out, err) = controller.gavelctl(&[
        "ota",
        "verify",
        s(&bundle),
        "--pub",
        s(&key("TEST-ONLY-release.pub")),
    ]);
    assert!(ok && out.contains("signature and payload OK"), "{out}{err}");
    let (ok, _, err) = controller.gavelctl(&[
        "ota",
        "verify",
        s(&bundle),
        "--pub",
        s(&key("TEST-ONLY-rogue.pub")),
    ]);
    assert!(!ok && err.contains("signature"), "{err}");

    // Publish and list.
    let (ok, out, err) = controller.gavelctl(&["--json", "ota", "publish", s(&bundle)]);
    assert!(ok, "{err}");
    let published: Value = serde_json::from_str(&out).expect("json");
    let name = published["name"].as_str().expect("name").to_owned();
    let (ok, out, err) = controller.gavelctl(&["ota", "ls"]);
    assert!(
        ok && out.contains(&name) && out.contains("2.0.0"),
        "{out}{err}"
    );

    // Campaign: the only device refuses, so the canary wave fails 1 of 1 and halts.
    let (ok, out, err) = controller.gavelctl(&[
        "--json", "ota", "campaign", "create", "--bundle", &name, "--id", "c1",
    ]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(created["progress"]["total"], 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let halted = loop {
        let (ok, out, err) = controller.gavelctl(&["--json", "ota", "campaign", "status", "c1"]);
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).expect("json");
        if v["state"]["state"] == "halted" {
            break v;
        }
        assert!(Instant::now() < deadline, "campaign did not halt: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
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

    // Abort ends it for good; resume no longer applies.
    let (ok, out, err) = controller.gavelctl(&["ota", "campaign", "abort", "c1"]);
    assert!(ok && out.contains("aborted"), "{out}{err}");
    let (ok, out, _) = controller.gavelctl(&["ota", "campaign", "resume", "c1"]);
    assert!(ok && out.contains("aborted"), "{out}");
}
