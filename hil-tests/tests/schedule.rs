//! Hearing schedules on the device: a hearing imported through the controller is recorded
//! by the room's recording device by itself, through a broker outage in its middle third,
//! with continuous coverage at the controller; and a device records a cached schedule
//! with the controller and broker down (after an agent restart), resumes it after a power
//! cut, a clerk stops it at the terminal, the audit trail reaches the controller when it
//! is back, and a clerk starts and stops through `gavelctl recording`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gavel_hil::{AgentSpec, Controller, Mosquitto, bin, start_agent, unique};
use serde_json::Value;
use time::OffsetDateTime;

const RFC3339: &time::format_description::well_known::Rfc3339 =
    &time::format_description::well_known::Rfc3339;

fn agent_dir(dir: &Path, spec: &AgentSpec) -> PathBuf {
    dir.join(format!("agent-{}", spec.id))
}

/// `gavel-agent clerk ARGS --json` against the agent with data folder `data`.
fn clerk(data: &Path, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(bin("gavel-agent"))
        .arg("--data-dir")
        .arg(data)
        .arg("clerk")
        .args(args)
        .arg("--json")
        .output()
        .expect("gavel-agent clerk runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls the agent's local status until `check` holds.
async fn wait_status(
    data: &Path,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (_, v, _) = clerk(data, &["status"]);
        if check(&v["status"]) {
            return v["status"].clone();
        }
        assert!(
            start.elapsed() < timeout,
            "{what} not within {timeout:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The controller's events for `device`, oldest first.
async fn events(c: &Controller, device: &str) -> Vec<Value> {
    let mut list = c
        .get(&format!("/api/v1/devices/{device}/events?limit=100000"))
        .await
        .expect("events")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    list.reverse();
    list.into_iter().map(|e| e["event"].clone()).collect()
}

async fn wait_event(
    c: &Controller,
    device: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        if let Some(e) = events(c, device).await.into_iter().find(|e| check(e)) {
            return e;
        }
        assert!(
            start.elapsed() < timeout,
            "no {what} event within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn import(
    c: &Controller,
    dir: &Path,
    court: &str,
    room: &str,
    case: &str,
    start: OffsetDateTime,
    end: OffsetDateTime,
) -> String {
    let csv = dir.join(format!("{case}.csv"));
    std::fs::write(
        &csv,
        format!(
            "case_number,court,room,start,end,judge,parties\n{case},{court},{room},{},{},王法官,plaintiff:张三\n",
            start.format(RFC3339).expect("ts"),
            end.format(RFC3339).expect("ts")
        ),
    )
    .expect("csv");
    let (ok, out, err) = c.gavelctl(&["hearings", "import", &csv.to_string_lossy()]);
    assert!(ok, "{out}{err}");
    c.hearing_id(case)
}

/// Publishes one QoS 1 message to the broker and waits for its acknowledgement.
async fn publish(broker: &Mosquitto, topic: &str, payload: Vec<u8>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let opts = MqttOptions::new(unique("test-pub"), broker.host.clone(), broker.port);
    let (client, mut eventloop) = AsyncClient::new(opts, 8);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .expect("queued");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("publishing to {topic}: {other:?}"),
        }
        assert!(Instant::now() < deadline, "no puback for {topic}");
    }
    let _ = client.disconnect().await;
}

async fn sleep_until(t: OffsetDateTime) {
    let left = t - OffsetDateTime::now_utc();
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_hearing_is_recorded_by_itself_through_a_broker_outage_with_continuous_coverage()
 {
    let dir = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::private().expect("mosquitto");
    let controller = Controller::start_with_env(
        dir.path(),
        &broker.broker(),
        None,
        &[
            ("GAVEL_SCHEDULE_PRE_ROLL_S", "5"),
            ("GAVEL_ALARM_GRACE_S", "10"),
        ],
    )
    .expect("controller");
    let mut spec = AgentSpec::new(&unique("term"), "courtroom-terminal");
    spec.room = unique("room");
    let _agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    let data = agent_dir(dir.path(), &spec);

    // A 36 s hearing, 25 s ahead (pre-roll 5 s), imported through the controller.
    let start = OffsetDateTime::now_utc() + time::Duration::seconds(25);
    let end = start + time::Duration::seconds(36);
    let hearing = import(
        &controller,
        dir.path(),
        &spec.court,
        &spec.room,
        "(2026)auto-1",
        start,
        end,
    );
    let status = wait_status(
        &data,
        "schedule on the device",
        Duration::from_secs(15),
        |s| s["scheduled_hearings"] == 1,
    )
    .await;
    assert!(status["schedule_version"].as_u64().is_some(), "{status}");
    assert_eq!(
        status["lamp"], false,
        "lamp off before the hearing: {status}"
    );

    // Nobody starts it: the device does, at start minus the 5 s pre-roll.
    let recording = wait_status(&data, "automatic start", Duration::from_secs(45), |s| {
        s["hearing"] == hearing.as_str() && s["state"] == "recording"
    })
    .await;
    assert_eq!(
        recording["lamp"], true,
        "lamp follows the recording: {recording}"
    );
    let request = wait_event(
        &controller,
        &spec.id,
        "scheduled start",
        Duration::from_secs(15),
        |e| e["type"] == "recording_request" && e["hearing_id"] == hearing.as_str(),
    )
    .await;
    assert_eq!(request["by"], "schedule");
    assert_eq!(request["via"], "schedule");
    assert_eq!(request["action"], "start");
    assert!(request.get("error").is_none(), "{request}");

    // The broker goes away for the middle third of the hearing.
    let outage_from = start + time::Duration::seconds(12);
    let outage_to = start + time::Duration::seconds(24);
    sleep_until(outage_from).await;
    broker.stop();
    let lost_at = OffsetDateTime::now_utc();
    // The device keeps recording, as its terminal shows.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = wait_status(
        &data,
        "recording during the outage",
        Duration::from_secs(5),
        |s| s["state"] == "recording",
    )
    .await;
    assert_eq!(during["lamp"], true);
    sleep_until(outage_to).await;
    broker.start().expect("broker back");
    let back_at = OffsetDateTime::now_utc();
    controller
        .wait_online(&spec.id, true, Duration::from_secs(30))
        .await
        .expect("online again");

    // The hearing closes at its end; the schedule says so and the device stops.
    sleep_until(end).await;
    let (ok, _, err) =
        controller.gavelctl(&["hearings", "close", "--by", "clerk.wang", "--", &hearing]);
    assert!(ok, "{err}");
    wait_status(&data, "stop on close", Duration::from_secs(20), |s| {
        s["state"] == "idle" && s["lamp"] == false
    })
    .await;
    let stop = wait_event(
        &controller,
        &spec.id,
        "stop on close",
        Duration::from_secs(20),
        |e| e["type"] == "recording_request" && e["action"] == "stop",
    )
    .await;
    assert_eq!(stop["reason"], "hearing closed");
    wait_event(
        &controller,
        &spec.id,
        "recording end",
        Duration::from_secs(20),
        |e| e["type"] == "recording" && e["phase"] == "end" && e["hearing_id"] == hearing.as_str(),
    )
    .await;

    // The controller's segment data: every source covered without a gap, the outage
    // visible only as late delivery.
    let all = events(&controller, &spec.id).await;
    let segments: Vec<&Value> = all
        .iter()
        .filter(|e| e["type"] == "segment" && e["hearing_id"] == hearing.as_str())
        .collect();
    assert!(
        !all.iter()
            .any(|e| e["type"] == "source_lost" && e["hearing_id"] == hearing.as_str()),
        "no source was lost"
    );
    assert!(
        segments.iter().any(|e| e["historical"] == true),
        "segments closed during the outage arrive flagged historical"
    );
    let mut sources: Vec<&str> = segments
        .iter()
        .filter_map(|e| e["source"].as_str())
        .collect();
    sources.sort_unstable();
    sources.dedup();
    assert_eq!(
        sources,
        ["cam-judge", "cam-overview"],
        "simulated terminal records both cameras"
    );
    for source in sources.clone() {
        let mut list: Vec<&&Value> = segments.iter().filter(|e| e["source"] == source).collect();
        list.sort_by_key(|e| e["index"].as_u64());
        let ns = |e: &Value, k: &str| e[k].as_u64().unwrap_or_default();
        for pair in list.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let a_end = ns(a, "offset_ns") + ns(a, "duration_ns");
            let step = ns(b, "offset_ns").abs_diff(a_end);
            assert!(
                step < 500_000_000,
                "{source}: segment {} ends at {a_end} ns, segment {} starts at {} ns",
                a["index"],
                b["index"],
                ns(b, "offset_ns")
            );
        }
        assert!(
            list.len() >= 3,
            "{source}: {} segments for a 36 s hearing",
            list.len()
        );
        eprintln!(
            "{source}: {} segments, {} delivered late (historical)",
            list.len(),
            list.iter().filter(|e| e["historical"] == true).count()
        );
        // Coverage spans the outage and the hearing's scheduled time up to its close.
        let first = list.first().expect("segments");
        let last = list.last().expect("segments");
        let wall = |e: &Value| {
            OffsetDateTime::parse(e["wall_start"].as_str().unwrap_or(""), RFC3339)
                .expect("wall_start")
        };
        let covered_to = wall(last) + time::Duration::nanoseconds(ns(last, "duration_ns") as i64);
        assert!(
            wall(first) <= start,
            "{source}: recording began {} after the start",
            wall(first) - start
        );
        assert!(
            wall(first) <= lost_at && covered_to >= back_at,
            "{source}: the outage is covered"
        );
        assert!(
            covered_to >= end - time::Duration::seconds(1),
            "{source}: covered to {covered_to}, hearing ended {end}"
        );
    }

    // The compliance record: complete for every source, no gap, hash chain and seal
    // verified; the outage visible only as delayed delivery.
    let path = format!("/api/v1/hearings/{hearing}/compliance");
    let waited = std::time::Instant::now();
    let record = loop {
        let c = controller
            .get(&path)
            .await
            .expect("compliance")
            .expect("a record");
        if c["verdict"] != "open" && c["verdict"] != "pending" {
            break c;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "not assessed within 60 s: {c:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(record["verdict"], "complete", "{record:#}");
    assert_eq!(record["exceptions"], serde_json::json!([]), "{record:#}");
    let covered: Vec<&Value> = record["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .collect();
    assert_eq!(covered.len(), sources.len(), "{record:#}");
    for s in &covered {
        assert_eq!(s["gaps"], serde_json::json!([]), "{s:#}");
    }
    assert!(
        covered
            .iter()
            .any(|s| s["max_delivery_delay_s"].as_f64().unwrap_or(0.0) >= 5.0),
        "the outage shows as delayed delivery: {record:#}"
    );
    assert_eq!(
        record["devices"][0]["chain"]["state"], "verified",
        "{record:#}"
    );
    assert_eq!(
        record["devices"][0]["seal"]["state"], "verified",
        "{record:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_records_its_cached_schedule_with_the_controller_and_broker_down() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::private().expect("mosquitto");
    let env = [("GAVEL_SCHEDULE_PRE_ROLL_S", "1")];
    let mut controller =
        Controller::start_with_env(dir.path(), &broker.broker(), None, &env).expect("controller");
    let mut spec = AgentSpec::new(&unique("term"), "courtroom-terminal");
    spec.room = unique("room");
    let mut agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    let data = agent_dir(dir.path(), &spec);
    let start = OffsetDateTime::now_utc() + time::Duration::seconds(15);
    let hearing = import(
        &controller,
        dir.path(),
        &spec.court,
        &spec.room,
        "(2026)offline-1",
        start,
        start + time::Duration::minutes(30),
    );
    let held = wait_status(
        &data,
        "schedule on the device",
        Duration::from_secs(15),
        |s| s["scheduled_hearings"] == 1,
    )
    .await;

    // A malformed schedule and one for another room change nothing.
    let topic = format!("gavel/v1/dev/{}/schedule", spec.id);
    let foreign = serde_json::json!({
        "v": 1, "ts": "2026-11-27T08:00:00Z", "court": spec.court, "room": "someone-elses-room",
        "version": u64::MAX, "hearings": []
    });
    publish(&broker, &topic, b"{\"v\": 1, \"hearings\": 7}".to_vec()).await;
    publish(&broker, &topic, serde_json::to_vec(&foreign).expect("json")).await;
    let start_wait = Instant::now();
    while !(agent.log_text().contains("malformed schedule refused")
        && agent.log_text().contains("someone-elses-room"))
    {
        assert!(
            start_wait.elapsed() < Duration::from_secs(10),
            "refusals not logged:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, v, _) = clerk(&data, &["status"]);
    assert_eq!(
        v["status"]["schedule_version"], held["schedule_version"],
        "{v}"
    );
    assert_eq!(v["status"]["scheduled_hearings"], 1, "{v}");

    // Controller and broker go away; the agent restarts (the schedule must come from its
    // store, nothing is retained anywhere it could reach).
    controller.proc.terminate(Duration::from_secs(10));
    broker.stop();
    agent.terminate(Duration::from_secs(15));
    let mut agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent again");
    let loaded = wait_status(&data, "agent back", Duration::from_secs(15), |s| {
        s["scheduled_hearings"] == 1
    })
    .await;
    assert_eq!(loaded["lamp"], false, "{loaded}");
    let recording = wait_status(&data, "automatic start", Duration::from_secs(40), |s| {
        s["hearing"] == hearing.as_str() && s["state"] == "recording"
    })
    .await;
    assert_eq!(
        recording["lamp"], true,
        "lamp on while recording: {recording}"
    );

    // Power cut mid-hearing: the agent comes back recording the same hearing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.kill9();
    let mut agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent after the cut");
    let resumed = wait_status(
        &data,
        "resumed after a power cut",
        Duration::from_secs(30),
        |s| s["hearing"] == hearing.as_str() && s["state"] == "recording",
    )
    .await;
    assert_eq!(resumed["lamp"], true, "{resumed}");
    assert!(
        agent
            .log_text()
            .contains("resuming a hearing interrupted by a restart"),
        "the recorder resumed the hearing (not a fresh start)"
    );

    // The clerk stops it at the terminal, with who and why.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, answer, err) = clerk(
        &data,
        &[
            "stop",
            &format!("--hearing={hearing}"),
            "--by",
            "clerk.li",
            "--why",
            "adjourned",
        ],
    );
    assert!(ok, "{answer} {err}");
    let idle = wait_status(&data, "stopped", Duration::from_secs(15), |s| {
        s["state"] == "idle"
    })
    .await;
    assert_eq!(idle["lamp"], false, "lamp off when recording stops: {idle}");
    // A stopped hearing is not started again by the schedule.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, v, _) = clerk(&data, &["status"]);
    assert_eq!(v["status"]["state"], "idle", "{v}");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(data.join("recordings").join(&hearing).join("manifest.json"))
            .expect("manifest"),
    )
    .expect("json");
    assert!(manifest["ended"].is_string(), "{manifest}");

    // Broker and controller back: the audit trail arrives through the outbox.
    broker.start().expect("broker back");
    let controller = Controller::start_with_env(dir.path(), &broker.broker(), None, &env)
        .expect("controller back");
    let started = wait_event(
        &controller,
        &spec.id,
        "scheduled start",
        Duration::from_secs(40),
        |e| e["type"] == "recording_request" && e["action"] == "start",
    )
    .await;
    assert_eq!(started["by"], "schedule");
    assert_eq!(started["historical"], true, "{started}");
    let stopped = wait_event(
        &controller,
        &spec.id,
        "clerk stop",
        Duration::from_secs(20),
        |e| e["type"] == "recording_request" && e["action"] == "stop",
    )
    .await;
    assert_eq!(stopped["by"], "clerk.li");
    assert_eq!(stopped["reason"], "adjourned");
    assert_eq!(stopped["via"], "terminal");

    // A clerk's start and stop through the controller, for an unscheduled hearing.
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    let adhoc = unique("adhoc");
    let room_args = [
        "--court",
        spec.court.as_str(),
        "--room",
        spec.room.as_str(),
        "--hearing",
        adhoc.as_str(),
    ];
    let (ok, out, err) = controller.gavelctl(
        &[
            &["recording", "start"],
            &room_args[..],
            &["--by", "clerk.zhao", "--why", "urgent ruling"],
        ]
        .concat(),
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains(&spec.id) && out.contains("starting"), "{out}");
    wait_status(&data, "ad hoc recording", Duration::from_secs(15), |s| {
        s["hearing"] == adhoc.as_str() && s["lamp"] == true
    })
    .await;
    let (ok, out, err) = controller.gavelctl(
        &[
            &["recording", "stop"],
            &room_args[..],
            &["--by", "clerk.zhao", "--why", "done"],
        ]
        .concat(),
    );
    assert!(ok, "{out}{err}");
    let via = wait_event(
        &controller,
        &spec.id,
        "controller stop",
        Duration::from_secs(20),
        |e| e["type"] == "recording_request" && e["via"] == "controller" && e["action"] == "stop",
    )
    .await;
    assert_eq!(via["by"], "clerk.zhao");
    assert_eq!(via["hearing_id"], adhoc.as_str());
    agent.terminate(Duration::from_secs(15));
}
