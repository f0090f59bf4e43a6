//! The agent's `record` capability end to end: commands through the controller, segments on
//! the device, recording events back at the controller.

use std::time::Duration;

use gavel_hil::{AgentSpec, Broker, Controller, start_agent, unique};

#[tokio::test(flavor = "multi_thread")]
async fn start_and_stop_recording_commands_record_a_hearing_and_report_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    // Simulated hardware: the courtroom terminal's cameras record a test pattern.
    let spec = AgentSpec::new(&unique("rec"), "courtroom-terminal");
    let _agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    let device = controller.device(&spec.id).await.expect("device");
    let record = device["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .find(|c| c["name"] == "record")
        .cloned()
        .expect("record capability");
    assert_eq!(record["state"], "running", "{record}");

    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/devices/{}/commands", controller.url, spec.id);
    let command = |body: serde_json::Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("post")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    let ack = command(serde_json::json!({
        "type": "start_recording", "hearing_id": "H-agent-1", "reason": "test", "by": "clerk"
    }))
    .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(ack["reply"]["state"], "starting", "{ack}");

    let other =
        command(serde_json::json!({"type": "start_recording", "hearing_id": "H-other"})).await;
    assert_eq!(other["status"], "failed", "one hearing at a time: {other}");

    tokio::time::sleep(Duration::from_secs(12)).await;
    let ack =
        command(serde_json::json!({"type": "stop_recording", "hearing_id": "H-agent-1"})).await;
    assert_eq!(ack["status"], "ok", "{ack}");

    // Segments on the device, a signed manifest that verifies.
    let hearing_dir = dir
        .path()
        .join(format!("agent-{}", spec.id))
        .join("recordings/H-agent-1");
    let mut report = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(r) = gavel_evidence::verify::verify(&hearing_dir, None)
            && r.segments >= 2
        {
            let manifest: serde_json::Value = serde_json::from_slice(
                &std::fs::read(hearing_dir.join("manifest.json")).expect("manifest"),
            )
            .expect("json");
            if manifest["ended"].is_string() {
                report = Some(r);
                break;
            }
        }
    }
    let report = report.expect("a finished, signed recording");
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.sources, 2, "both cameras of the profile");

    // The controller received the recording's transitions and segments.
    let mut types: Vec<String> = Vec::new();
    for _ in 0..100 {
        let events = controller
            .get(&format!("/api/v1/devices/{}/events", spec.id))
            .await
            .expect("events")
            .expect("some");
        types = events
            .as_array()
            .expect("list")
            .iter()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["type"].as_str().unwrap_or(""),
                    e["phase"].as_str().unwrap_or("")
                )
            })
            .collect();
        if types.contains(&"recording/end".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for expected in [
        "recording/start",
        "recording/update",
        "segment/end",
        "recording/end",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} missing from {types:?}"
        );
    }
}
