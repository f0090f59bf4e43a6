//! Record-every-hearing enforcement through the running controller: a hearing whose room
//! never records raises an alarm after the grace period, an offline device during the
//! hearing raises another, and people acknowledge and resolve them.

use std::time::Duration;

use gavel_hil::{AgentSpec, Broker, Controller, start_agent, unique};
use serde_json::Value;

async fn alarms(c: &Controller) -> Vec<Value> {
    c.get("/api/v1/alarms")
        .await
        .expect("alarms")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

async fn wait_alarm(c: &Controller, kind: &str, timeout: Duration) -> Value {
    let start = std::time::Instant::now();
    loop {
        if let Some(a) = alarms(c).await.into_iter().find(|a| a["kind"] == kind) {
            return a;
        }
        assert!(
            start.elapsed() < timeout,
            "no {kind} alarm within {timeout:?}: {:?}",
            alarms(c).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hearing_that_is_not_recorded_raises_alarms_people_acknowledge_and_resolve() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start_with_env(
        dir.path(),
        &Broker::Embedded,
        None,
        &[
            ("GAVEL_ALARM_GRACE_S", "2"),
            ("GAVEL_ALARM_ESCALATE_S", "4"),
        ],
    )
    .expect("controller");
    let room = unique("room");
    let mut spec = AgentSpec::new(&unique("cam"), "ip-camera");
    spec.court = "test-court".into();
    spec.room = room.clone();
    let mut camera = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");

    // A hearing in that room that started a moment ago.
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let start = (now - time::Duration::seconds(1)).format(fmt).expect("ts");
    let end = (now + time::Duration::minutes(30)).format(fmt).expect("ts");
    let csv = dir.path().join("hearings.csv");
    std::fs::write(
        &csv,
        format!("case_number,court,room,start,end,judge,parties\n(2026)test-1,test-court,{room},{start},{end},王法官,plaintiff:张三\n"),
    )
    .expect("csv");
    let (ok, out, err) = controller.gavelctl(&["hearings", "import", &csv.to_string_lossy()]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 1 hearings"), "{out}");

    // Nothing records in the room: alarm within the 2 s grace + 5 s of the start.
    let alarm = wait_alarm(&controller, "not_recording", Duration::from_secs(15)).await;
    assert_eq!(alarm["room"], room.as_str());
    assert_eq!(alarm["level"], 2);
    let raised = time::OffsetDateTime::parse(alarm["raised_at"].as_str().expect("raised_at"), fmt)
        .expect("raised_at");
    let hearing_start = now - time::Duration::seconds(1);
    assert!(
        raised - hearing_start <= time::Duration::seconds(2 + 5),
        "not_recording raised {} after the start",
        raised - hearing_start
    );
    // Unacknowledged, it escalates (every 4 s here) to level 3, and stays one alarm.
    let waited = std::time::Instant::now();
    loop {
        let list = alarms(&controller).await;
        let same: Vec<&Value> = list
            .iter()
            .filter(|a| a["kind"] == "not_recording")
            .collect();
        assert_eq!(same.len(), 1, "one alarm per condition: {list:?}");
        assert_eq!(same[0]["id"], alarm["id"]);
        if same[0]["level"] == 3 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "not escalated: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The camera dies during the hearing: a device-offline alarm.
    camera.kill9();
    let offline = wait_alarm(&controller, "device_offline", Duration::from_secs(15)).await;
    assert_eq!(offline["subject"]["device"], spec.id.as_str());

    // People act on them; the history keeps who did what.
    let id = alarm["id"].as_str().expect("id");
    let (ok, _, err) = controller.gavelctl(&["alarms", "ack", id, "--by", "inspector-li"]);
    assert!(ok, "{err}");
    let acked = alarms(&controller)
        .await
        .into_iter()
        .find(|a| a["id"] == id)
        .expect("still open");
    assert_eq!(acked["acknowledged"]["by"], "inspector-li");
    let (ok, _, err) = controller.gavelctl(&["alarms", "resolve", id, "--by", "tech-wang"]);
    assert!(ok, "{err}");
    assert!(
        alarms(&controller).await.iter().all(|a| a["id"] != id),
        "resolved alarm still open"
    );
    let history = controller
        .get("/api/v1/alarms/history")
        .await
        .expect("history")
        .expect("list");
    let closed = history
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .expect("in history");
    assert_eq!(closed["resolved"]["by"], "tech-wang");
    // Not raised again while the same condition persists (no storm).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        alarms(&controller)
            .await
            .iter()
            .filter(|a| a["kind"] == "not_recording")
            .count(),
        0
    );

    // Camera back: its offline alarm clears by itself.
    let _camera = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent again");
    let start = std::time::Instant::now();
    while alarms(&controller)
        .await
        .iter()
        .any(|a| a["kind"] == "device_offline")
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "offline alarm did not clear"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A bad CSV imports nothing and names the row and field.
    std::fs::write(
        &csv,
        "case_number,court,room,start,end,judge\nX,test-court,Bad Room,soon,later,\n",
    )
    .expect("csv");
    let (ok, _, err) = controller.gavelctl(&["hearings", "import", &csv.to_string_lossy()]);
    assert!(!ok);
    assert!(
        err.contains("line 2, field `room`") && err.contains("nothing imported"),
        "{err}"
    );
    let hearings = controller
        .get("/api/v1/hearings")
        .await
        .expect("hearings")
        .expect("list");
    assert_eq!(hearings.as_array().map(Vec::len), Some(1));
}
