//! A device that dies shows offline in the controller within 1.5x its keepalive and comes
//! back when restarted — against the embedded broker and against Mosquitto.

use std::time::Duration;

use gavel_hil::{AgentSpec, Broker, Controller, Mosquitto, start_agent, unique};

/// A frozen device (socket open, silent) is only noticed by the broker's keepalive check.
/// Mosquitto 2.0 compares whole seconds (`now - last_packet > 1.5 * keepalive`) in a loop
/// that wakes about once a second, so it is up to ~2.2 s late (measured: 4.2-5.2 s for a
/// 2 s keepalive). A killed device is noticed at once: the kernel closes its socket.
const KEEPALIVE_CHECK_GRANULARITY: Duration = Duration::from_millis(2500);

async fn killed_and_frozen_agents_go_offline_within_one_and_a_half_keepalives(broker: Broker) {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &broker, None).expect("controller");
    let spec = AgentSpec::new(&unique("live"), "courtroom-terminal");
    let deadline = Duration::from_secs(u64::from(spec.keepalive_s)).mul_f32(1.5);

    // SIGKILL: the kernel closes the socket; the broker publishes the will.
    let mut agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    agent.kill9();
    let took = controller
        .wait_online(&spec.id, false, deadline)
        .await
        .expect("offline after SIGKILL");
    let d = controller.device(&spec.id).await.expect("device");
    assert_eq!(d["offline_cause"], "connection_lost", "{d}");
    eprintln!("offline {took:?} after SIGKILL (deadline {deadline:?})");

    // Restarted: online again with a new boot.
    let old_boot = d["boot_id"].clone();
    let agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent again");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("back online");
    let d = controller.device(&spec.id).await.expect("device");
    assert_ne!(d["boot_id"], old_boot);

    // SIGSTOP: the socket stays open but silent; only the keepalive can tell.
    agent.freeze();
    let frozen_deadline = deadline + KEEPALIVE_CHECK_GRANULARITY;
    let took = controller
        .wait_online(&spec.id, false, frozen_deadline)
        .await
        .expect("offline after SIGSTOP");
    eprintln!("offline {took:?} after SIGSTOP (deadline {frozen_deadline:?})");
    agent.thaw();
    controller
        .wait_online(&spec.id, true, Duration::from_secs(40))
        .await
        .expect("back online after SIGCONT");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_broker_detects_dead_agents_within_one_and_a_half_keepalives() {
    killed_and_frozen_agents_go_offline_within_one_and_a_half_keepalives(Broker::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mosquitto_detects_dead_agents_within_one_and_a_half_keepalives() {
    let mosquitto = Mosquitto::shared_or_private().expect("mosquitto");
    killed_and_frozen_agents_go_offline_within_one_and_a_half_keepalives(mosquitto.broker()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cleanly_stopped_agent_says_why_and_commands_reach_a_running_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("cmd"), "audio-host");
    let mut agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");

    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/devices/{}/commands", controller.url, spec.id);
    let ack = controller
        .command(&spec.id, serde_json::json!({"type": "ping"}))
        .await
        .expect("ping");
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(ack["reply"]["type"], "pong");
    let boot = controller.device(&spec.id).await.expect("device")["boot_id"].clone();
    assert_eq!(ack["reply"]["boot_id"], boot);

    let cfg: serde_json::Value = client
        .post(&url)
        .json(&serde_json::json!({"type": "get_config"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(
        cfg["reply"]["config"]["device_id"],
        spec.id.as_str(),
        "{cfg}"
    );

    // Restart: the agent acknowledges, re-executes itself and comes back with a new boot id.
    let resp = client
        .post(&url)
        .json(&serde_json::json!({"type": "restart", "reason": "test"}))
        .send()
        .await
        .expect("post");
    assert!(resp.status().is_success());
    let mut rebooted = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(d) = controller.device(&spec.id).await
            && d["online"] == true
            && d["boot_id"] != boot
        {
            rebooted = true;
            break;
        }
    }
    assert!(rebooted, "agent did not come back with a new boot id");

    // Events: start of the first boot, its end (restarting), start of the second. The
    // second boot's start event follows its birth by a moment.
    let mut phases: Vec<String> = Vec::new();
    for _ in 0..100 {
        let events = controller
            .get(&format!("/api/v1/devices/{}/events", spec.id))
            .await
            .expect("events")
            .expect("some");
        phases = events
            .as_array()
            .expect("list")
            .iter()
            .rev()
            .map(|e| e["phase"].as_str().unwrap_or("").to_owned())
            .collect();
        if phases.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        phases.starts_with(&["start".to_string(), "end".into(), "start".into()]),
        "{phases:?}"
    );

    // A clean stop publishes offline with reason shutdown (not a will).
    assert!(
        agent.terminate(Duration::from_secs(10)),
        "agent exits on SIGTERM"
    );
    controller
        .wait_online(&spec.id, false, Duration::from_secs(5))
        .await
        .expect("offline");
    assert_eq!(
        controller.device(&spec.id).await.expect("device")["offline_cause"],
        "shutdown"
    );

    // Commands to an offline device are refused at once.
    let resp = client
        .post(&url)
        .json(&serde_json::json!({"type": "ping"}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), reqwest::StatusCode::CONFLICT);
}
