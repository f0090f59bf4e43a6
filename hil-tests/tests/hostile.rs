//! 10,000 malformed or hostile payloads on device topics: the controller counts and logs
//! them and keeps serving.

use std::time::Duration;

use gavel_hil::{AgentSpec, Broker, Controller, start_agent, unique};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

const TOTAL: usize = 10_000;

/// The i-th hostile message: (topic, payload). Every one must be refused.
fn hostile(i: usize, dev: &str) -> (String, Vec<u8>) {
    let t = |ch: &str| format!("gavel/v1/dev/{dev}/{ch}");
    match i % 16 {
        0 => (t("health"), b"{not json".to_vec()),
        1 => (t("birth"), b"[1,2,3]".to_vec()),
        2 => (t("health"), br#"{"v":1,"ts":"2026-11-27T09:00:00Z","uptime_s":"soon"}"#.to_vec()),
        3 => (t("status"), br#"{"v":2,"state":"online","boot_id":"b","bd_seq":0}"#.to_vec()),
        4 => (t("status"), br#"{"state":"online","boot_id":"b","bd_seq":0}"#.to_vec()),
        5 => {
            // Huge strings inside the 64 KiB limit: refused by field.
            let host = "h".repeat(if i % 160 == 5 { 60_000 } else { 2_000 });
            (t("birth"), format!(r#"{{"v":1,"ts":"2026-11-27T09:00:00Z","boot_id":"b","bd_seq":0,"seq_base":0,"profile":"p","firmware_version":"1","hostname":"{host}","capabilities":[],"keepalive_s":10,"health_interval_s":5}}"#).into_bytes())
        }
        6 if i % 1000 == 6 => (t("event"), vec![b'x'; 900_000]), // over the protocol limit
        6 => (t("event"), vec![0xff, 0x00, 0xfe, 0x80]),
        7 => (t("event"), br#"{"v":1,"ts":"2026-11-27T09:00:00Z","seq":1,"id":"x","phase":"end","type":"teleport"}"#.to_vec()),
        8 => (t("cmd"), br#"{"v":1,"ts":"2026-11-27T09:00:00Z","id":"c","type":"ping"}"#.to_vec()),
        9 => (format!("gavel/v1/dev/{}/health", "UPPER"), b"{}".to_vec()),
        10 => (format!("gavel/v1/dev/{dev}/teleport"), b"{}".to_vec()),
        11 => (t("health"), br#"{"v":99,"ts":"2026-11-27T09:00:00Z"}"#.to_vec()),
        12 => (t("ack"), br#"{"v":1,"ts":"yesterday","id":"c","status":"ok","reply":{"type":"pong","boot_id":"b","agent_uptime_s":1}}"#.to_vec()),
        13 => (t("health"), format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes()),
        14 => (t("health"), br#"{"v":1,"ts":"2026-11-27T09:00:00Z","uptime_s":1,"agent_uptime_s":1,"cpu_percent":1e308,"load1":0,"memory":{"total_bytes":1,"used_bytes":1},"volumes":[],"clock":{"synced":false}}"#.to_vec()),
        _ => (t("status"), b"null".to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_hostile_payloads_are_counted_and_the_controller_keeps_serving() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let dev = unique("victim");

    let mut opts = MqttOptions::new(
        unique("attacker"),
        controller.mqtt.0.clone(),
        controller.mqtt.1,
    );
    opts.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024)
        .set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let publisher = tokio::spawn(async move {
        for i in 0..TOTAL {
            let (topic, payload) = hostile(i, &dev);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("queue");
        }
        client
    });
    // Drive the connection until every QoS 1 publish is acknowledged by the broker.
    let mut acked = 0;
    while acked < TOTAL {
        match tokio::time::timeout(Duration::from_secs(30), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("attacker connection failed after {acked} acks: {e}"),
            Err(_) => panic!("broker stopped acknowledging after {acked}"),
        }
    }
    let _client = publisher.await.expect("publisher");

    // Every payload is counted as refused, by reason.
    let mut report = serde_json::Value::Null;
    for _ in 0..300 {
        report = controller
            .get("/api/v1/ingest")
            .await
            .expect("ingest")
            .expect("report");
        if report["rejected"].as_u64() == Some(TOTAL as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(report["rejected"].as_u64(), Some(TOTAL as u64), "{report}");
    assert_eq!(report["accepted"].as_u64(), Some(0), "{report}");
    let kinds = report["rejected_by_kind"].as_object().expect("kinds");
    for kind in [
        "not_json",
        "not_object",
        "schema",
        "unsupported_version",
        "missing_version",
        "invalid_field",
        "too_large",
        "wrong_direction",
        "bad_topic",
    ] {
        assert!(
            kinds.get(kind).and_then(|v| v.as_u64()).unwrap_or(0) > 0,
            "no {kind} in {report}"
        );
    }
    assert!(report["recent"].as_array().is_some_and(|r| r.len() == 50));

    // The metrics agree, the log names refusals but is rate-limited.
    let metrics = reqwest::get(format!("{}/metrics", controller.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("gavel_ingest_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, TOTAL as u64);
    let log = controller.proc.log_text();
    let logged = log.matches("device message refused").count();
    assert!(
        logged > 0 && logged <= 20,
        "{logged} refusals logged one by one"
    );

    // Nothing was registered from garbage, and a real device is still served.
    let devices = controller
        .get("/api/v1/devices")
        .await
        .expect("devices")
        .expect("list");
    assert_eq!(devices.as_array().map(Vec::len), Some(0), "{devices}");
    let spec = AgentSpec::new(&unique("after"), "ip-camera");
    let _agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("real device registered after the storm");
}
