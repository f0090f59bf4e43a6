//! `gavelctl` against a running controller: human tables and `--json`.

use std::process::Command;
use std::time::Duration;

use gavel_hil::{AgentSpec, Broker, Controller, bin, start_agent, unique};

#[tokio::test(flavor = "multi_thread")]
async fn gavelctl_lists_shows_and_pings_devices() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("ctl"), "ip-camera");
    let _agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");

    let (ok, out, err) = controller.gavelctl(&["devices", "ls"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&spec.id) && out.contains("ip-camera") && out.contains("online"),
        "{out}"
    );
    assert!(out.contains("1 devices, 1 online, 0 offline"), "{out}");

    let (ok, out, err) = controller.gavelctl(&["--json", "devices", "ls", "--online"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list[0]["id"], spec.id.as_str());

    let (ok, out, _) = controller.gavelctl(&["devices", "ls", "--offline"]);
    assert!(ok);
    assert!(out.contains("0 devices"), "{out}");

    let (ok, out, err) = controller.gavelctl(&["devices", "show", &spec.id]);
    assert!(ok, "{err}");
    assert!(
        out.contains("test-court / room-1") && out.contains("camera (unavailable)"),
        "{out}"
    );

    let (ok, out, err) = controller.gavelctl(&["devices", "ping", &spec.id]);
    assert!(ok, "{err}");
    assert!(out.contains("pong"), "{out}");

    let (ok, _, err) = controller.gavelctl(&["devices", "show", "no-such-device"]);
    assert!(!ok);
    assert!(
        err.contains("404") && err.contains("no device no-such-device"),
        "{err}"
    );

    let out = Command::new(bin("gavelctl"))
        .args(["--controller", "http://127.0.0.1:9", "devices", "ls"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the controller"));
}
