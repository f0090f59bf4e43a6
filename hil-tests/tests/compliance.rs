//! Compliance proof through the whole system: a courtroom terminal records a hearing, the
//! clerk closes it, the device seals it, and the controller's compliance record says what
//! was recorded, per source, with the hash chain recomputed and the seal verified. A camera
//! unplugged mid-hearing raises a source-lost alarm within 5 s and the record names the gap.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gavel_hil::media::{CameraSim, SimSpec};
use gavel_hil::{AgentSpec, Broker, Controller, start_agent_with, unique};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn clips() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips")
}

async fn post(c: &Controller, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", c.url))
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = r.status();
    let text = r.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Imports one hearing of `room` from `start` to `end` (seconds from now).
fn import(c: &Controller, dir: &Path, case: &str, room: &str, start: i64, end: i64) -> String {
    let now = OffsetDateTime::now_utc();
    let t = |s: i64| {
        (now + time::Duration::seconds(s))
            .format(&Rfc3339)
            .expect("ts")
    };
    let csv = dir.join(format!("{case}.csv"));
    std::fs::write(
        &csv,
        format!(
            "case_number,court,room,start,end,judge,parties\n{case},test-court,{room},{},{},王法官,plaintiff:张三\n",
            t(start),
            t(end)
        ),
    )
    .expect("csv");
    let (ok, out, err) = c.gavelctl(&["hearings", "import", &csv.to_string_lossy()]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 1 hearings"), "{out}");
    c.hearing_id(case)
}

async fn wait_compliance(c: &Controller, id: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let record = c
            .get(&format!("/api/v1/hearings/{id}/compliance"))
            .await
            .expect("compliance")
            .expect("a record");
        let verdict = record["verdict"].as_str().unwrap_or("");
        if verdict != "open" && verdict != "pending" {
            return record;
        }
        assert!(
            start.elapsed() < timeout,
            "hearing {id} not assessed within {timeout:?}: {record:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_alarm(c: &Controller, kind: &str, timeout: Duration) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let list = c
            .get("/api/v1/alarms")
            .await
            .expect("alarms")
            .unwrap_or_default();
        if let Some(a) = list
            .as_array()
            .and_then(|l| l.iter().find(|a| a["kind"] == kind))
        {
            return (a.clone(), start.elapsed());
        }
        assert!(
            start.elapsed() < timeout,
            "no {kind} alarm within {timeout:?}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_hearing_is_proven_complete_per_source_and_counted_in_the_daily_report() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let mut spec = AgentSpec::new(&unique("term"), "courtroom-terminal");
    spec.room = unique("room");
    let _agent = start_agent_with(dir.path(), &spec, &controller.mqtt, &[]).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    // Scheduled 4 s from now; the clerk starts recording at once (pre-roll).
    let id = import(&controller, dir.path(), "(2026)proof-1", &spec.room, 4, 16);
    let cmd = format!("/api/v1/devices/{}/commands", spec.id);
    let ack = post(
        &controller,
        &cmd,
        json!({"type": "start_recording", "hearing_id": id, "by": "clerk-wang", "reason": "pre-roll"}),
    )
    .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    tokio::time::sleep(Duration::from_secs(17)).await;
    // The clerk closes the hearing; the room's schedule says so and the device stops and
    // seals the recording by itself.
    let (ok, _, err) = controller.gavelctl(&["hearings", "close", &id, "--by", "clerk-wang"]);
    assert!(ok, "{err}");

    let c = wait_compliance(&controller, &id, Duration::from_secs(30)).await;
    assert_eq!(c["verdict"], "complete", "{c:#}");
    assert_eq!(c["exceptions"], json!([]), "{c:#}");
    let sources = c["sources"].as_array().expect("sources");
    let names: Vec<&str> = sources
        .iter()
        .filter_map(|s| s["source"].as_str())
        .collect();
    assert_eq!(names, ["cam-judge", "cam-overview"], "{c:#}");
    for s in sources {
        assert!(s["coverage"].as_f64().expect("coverage") > 0.99, "{s:#}");
        assert_eq!(s["gaps"], json!([]));
        assert!(s["segments"].as_u64().expect("segments") >= 2, "{s:#}");
    }
    let device = &c["devices"][0];
    assert_eq!(device["device"], spec.id.as_str());
    assert_eq!(device["chain"]["state"], "verified", "{device:#}");
    assert_eq!(device["seal"]["state"], "verified", "{device:#}");
    assert_eq!(c["transcript_present"], false);

    // The daily report counts it, as JSON, CSV and HTML.
    let report = controller
        .get("/api/v1/reports/compliance?court=test-court")
        .await
        .expect("report")
        .expect("json");
    assert_eq!(report["complete"], 1, "{report:#}");
    assert_eq!(report["share_fully_recorded"], 1.0);
    let client = reqwest::Client::new();
    let csv = client
        .get(format!(
            "{}/api/v1/reports/compliance?court=test-court&format=csv",
            controller.url
        ))
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    let line = csv
        .lines()
        .find(|l| l.contains(&id))
        .expect("hearing in the CSV");
    let fields: Vec<&str> = line.split(',').collect();
    assert_eq!(fields[8], "complete", "{csv}");
    let coverage: f64 = fields[9].parse().expect("coverage percent");
    assert!(coverage >= 99.0, "{csv}");
    let html = client
        .get(format!(
            "{}/api/v1/reports/compliance?court=test-court&format=html",
            controller.url
        ))
        .send()
        .await
        .expect("html")
        .text()
        .await
        .expect("text");
    assert!(
        html.contains("<b>100.0 %</b>") && html.contains("(2026)proof-1"),
        "{html}"
    );
    let bad = client
        .get(format!(
            "{}/api/v1/reports/compliance?court=test-court&date=27-11-2026",
            controller.url
        ))
        .send()
        .await
        .expect("bad date");
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("text").contains("YYYY-MM-DD"));

    // The technician's CLI writes the same CSV to a file, and names a refused request.
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("report.csv");
    let file_arg = file.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = controller.gavelctl(&[
        "hearings",
        "report",
        "--court",
        "test-court",
        "--format",
        "csv",
        "--output",
        file_arg,
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("report written to"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&file).expect("report file"), csv);
    let (ok, _, stderr) = controller.gavelctl(&[
        "hearings",
        "report",
        "--court",
        "test-court",
        "--date",
        "27-11-2026",
        "--format",
        "csv",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("400") && stderr.contains("YYYY-MM-DD"),
        "{stderr}"
    );

    // The timeline shows the recorded span of the hearing.
    let tl = controller
        .get("/api/v1/timeline")
        .await
        .expect("timeline")
        .expect("json");
    let room = tl["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["room"] == spec.room.as_str())
        .expect("room on the timeline");
    assert_eq!(room["hearings"][0]["verdict"], "complete");
    assert!(
        !room["hearings"][0]["recorded"]
            .as_array()
            .expect("spans")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unplugged_camera_raises_source_lost_within_5_s_and_compliance_names_the_gap() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let mut cam =
        CameraSim::start(dir.path(), "cam", SimSpec::camera_1080p(), &clips()).expect("camera");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[media.cam-overview]\nkind = \"rtsp\"\nurl = \"{}\"\n",
            cam.url
        ),
    )
    .expect("config");
    let mut spec = AgentSpec::new(&unique("term"), "courtroom-terminal");
    spec.room = unique("room");
    let _agent = start_agent_with(
        dir.path(),
        &spec,
        &controller.mqtt,
        &["--config", &config.to_string_lossy()],
    )
    .expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    let id = import(&controller, dir.path(), "(2026)unplug-1", &spec.room, 3, 25);
    let cmd = format!("/api/v1/devices/{}/commands", spec.id);
    let ack = post(
        &controller,
        &cmd,
        json!({"type": "start_recording", "hearing_id": id, "by": "clerk"}),
    )
    .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    tokio::time::sleep(Duration::from_secs(8)).await;

    cam.unplug();
    let (alarm, after) = wait_alarm(&controller, "source_lost", Duration::from_secs(15)).await;
    assert!(
        after <= Duration::from_secs(5),
        "source-lost alarm {after:?} after the unplug: {alarm:#}"
    );
    assert!(
        alarm["message"]
            .as_str()
            .unwrap_or("")
            .contains("cam-overview"),
        "{alarm:#}"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    cam.replug().expect("replug");
    tokio::time::sleep(Duration::from_secs(12)).await;

    let (ok, _, err) = controller.gavelctl(&["hearings", "close", &id, "--by", "clerk"]);
    assert!(ok, "{err}");

    let c = wait_compliance(&controller, &id, Duration::from_secs(30)).await;
    assert_eq!(c["verdict"], "incomplete", "{c:#}");
    let overview = c["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["source"] == "cam-overview")
        .expect("cam-overview")
        .clone();
    let gaps = overview["gaps"].as_array().expect("gaps");
    assert_eq!(gaps.len(), 1, "{overview:#}");
    assert!(
        gaps[0]["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("source lost"),
        "{overview:#}"
    );
    let seconds = gaps[0]["seconds"].as_f64().expect("seconds");
    assert!(
        (4.0..=20.0).contains(&seconds),
        "gap of {seconds} s for a ~6 s unplug"
    );
    assert!(
        c["exceptions"]
            .as_array()
            .expect("exceptions")
            .iter()
            .any(|e| e
                .as_str()
                .is_some_and(|e| e.contains("cam-overview") && e.contains("source lost"))),
        "{c:#}"
    );
    // The other camera kept recording throughout.
    let judge = c["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["source"] == "cam-judge")
        .expect("cam-judge");
    assert_eq!(judge["gaps"], json!([]), "{judge:#}");
    assert_eq!(c["devices"][0]["seal"]["state"], "verified", "{c:#}");
}
