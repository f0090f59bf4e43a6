//! Scale-out (issue 5, ADR 0007): two controller instances against one PostgreSQL and one
//! Mosquitto split the device traffic with shared subscriptions and elect one scheduler.
//! One instance is killed (SIGKILL) mid-run, the scheduler in one test and the follower in
//! the other; every expected alarm is stored exactly once, none is missed, and device
//! traffic keeps flowing through the survivor.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gavel_hil::{AgentSpec, Controller, Mosquitto, PgDatabase, Proc, start_agent, unique};
use serde_json::Value;
use time::OffsetDateTime;

const GRACE_S: i64 = 2;

fn start_instance(dir: &std::path::Path, broker: &Mosquitto, db: &PgDatabase) -> Controller {
    Controller::start_with_env(
        dir,
        &broker.broker(),
        Some(&db.url()),
        &[("GAVEL_CLUSTER", "true"), ("GAVEL_ALARM_GRACE_S", "2")],
    )
    .expect("controller instance")
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every stored alarm (open and closed), from the shared history.
async fn history(c: &Controller) -> Vec<Value> {
    c.get("/api/v1/alarms/history?limit=10000")
        .await
        .ok()
        .flatten()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Kinds this scenario can cause. Device health alarms (disk, temperature, clock) depend
/// on the machine the agents run on and are left out.
const SCENARIO_KINDS: [&str; 6] = [
    "not_recording",
    "stopped_early",
    "recording_stalled",
    "source_lost",
    "device_offline",
    "opened_late",
];

/// Stored alarms of the scenario's kinds per (kind, room or device).
fn counts(alarms: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for a in alarms {
        let kind = a["kind"].as_str().unwrap_or_default().to_owned();
        if !SCENARIO_KINDS.contains(&kind.as_str()) {
            continue;
        }
        let what = if kind == "device_offline" {
            a["subject"]["device"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        } else {
            a["room"].as_str().unwrap_or_default().to_owned()
        };
        *out.entry((kind, what)).or_default() += 1;
    }
    out
}

/// Reads the SSE stream at `url` until a `not_recording` alarm event for `room` arrives.
async fn sse_alarm_for(url: String, room: String) -> Value {
    let mut resp = reqwest::get(format!("{url}/api/v1/stream"))
        .await
        .expect("stream");
    let mut buf = String::new();
    loop {
        let chunk = resp.chunk().await.expect("chunk").expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if !block.contains("event: alarm") {
                continue;
            }
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data)
                && v["alarm"]["room"] == room.as_str()
                && v["alarm"]["kind"] == "not_recording"
            {
                return v;
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Victim {
    Scheduler,
    Follower,
}

async fn kill_one_instance_mid_run(victim: Victim) {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::private().expect("mosquitto");
    let db = PgDatabase::create().expect("postgres");
    // The first instance wins the election before the second starts.
    let first = start_instance(&dir.path().join("a").tap_mkdir(), &broker, &db);
    wait_until(
        "first instance elected",
        Duration::from_secs(20),
        || async { first.metric("gavel_scheduler").await == 1 },
    )
    .await;
    let second = start_instance(&dir.path().join("b").tap_mkdir(), &broker, &db);
    assert_eq!(second.metric("gavel_scheduler").await, 0, "two schedulers");

    // Agents in six rooms; none ever records (cameras: the room's recorder is missing, so a
    // courtroom terminal's schedule-driven start cannot hide the condition).
    let court = "test-court";
    let rooms: Vec<String> = (0..6).map(|i| unique(&format!("room{i}"))).collect();
    let mut agents: Vec<(AgentSpec, Proc)> = Vec::new();
    for room in &rooms {
        let mut spec = AgentSpec::new(&unique("cam"), "ip-camera");
        spec.court = court.into();
        spec.room = room.clone();
        let proc =
            start_agent(dir.path(), &spec, &(broker.host.clone(), broker.port)).expect("agent");
        agents.push((spec, proc));
    }
    for (spec, _) in &agents {
        // The shared registry: either instance answers for every device.
        second
            .wait_online(&spec.id, true, Duration::from_secs(30))
            .await
            .expect("online via the second instance");
        first
            .wait_online(&spec.id, true, Duration::from_secs(30))
            .await
            .expect("online via the first instance");
    }

    // Three waves of hearings, two rooms each: alarm conditions before the kill, around it
    // (while the scheduler may be gone), and after it.
    let kill_at = OffsetDateTime::now_utc() + time::Duration::seconds(12);
    let waves = [
        kill_at - time::Duration::seconds(8),
        kill_at + time::Duration::milliseconds(500),
        kill_at + time::Duration::seconds(8),
    ];
    let fmt = &time::format_description::well_known::Rfc3339;
    let mut csv = String::from("case_number,court,room,start,end,judge,parties\n");
    for (i, room) in rooms.iter().enumerate() {
        let condition = waves[i / 2];
        let start = condition - time::Duration::seconds(GRACE_S);
        let end = start + time::Duration::minutes(30);
        csv.push_str(&format!(
            "(2026)scale-{i},{court},{room},{},{},王法官,plaintiff:张三\n",
            start.format(fmt).expect("ts"),
            end.format(fmt).expect("ts")
        ));
    }
    let file = dir.path().join("hearings.csv");
    std::fs::write(&file, csv).expect("csv");
    // Imported through the follower: it stores them and forwards them to the scheduler.
    let (ok, out, err) = second.gavelctl(&["hearings", "import", &file.to_string_lossy()]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 6 hearings"), "{out}");

    // The dashboard stream of the follower shows alarms the scheduler raised.
    let sse = tokio::spawn(sse_alarm_for(second.url.clone(), rooms[0].clone()));

    // Wave 1 is raised and stored before the kill.
    wait_until("wave 1 alarms stored", Duration::from_secs(30), || async {
        let c = counts(&history(&second).await);
        rooms[..2]
            .iter()
            .all(|r| c.contains_key(&("not_recording".into(), r.clone())))
    })
    .await;
    let seen = tokio::time::timeout(Duration::from_secs(10), sse)
        .await
        .expect("an alarm on the follower's stream")
        .expect("sse task");
    assert_eq!(seen["change"], "raised");
    assert_eq!(seen["alarm"]["kind"], "not_recording");

    let wait = kill_at - OffsetDateTime::now_utc();
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    let (mut dead, survivor) = match victim {
        Victim::Scheduler => (first, second),
        Victim::Follower => (second, first),
    };
    dead.proc.kill9();
    wait_until(
        "the survivor is the scheduler",
        Duration::from_secs(20),
        || async { survivor.metric("gavel_scheduler").await == 1 },
    )
    .await;

    // Device traffic flows through the survivor alone: a device that dies now is reported
    // (its last will reaches only the survivor) and raises one alarm.
    let alive = agents[0].0.id.clone();
    let seen_before = survivor.device(&alive).await.expect("device")["last_seen"].clone();
    let (gone, mut gone_proc) = agents.remove(5);
    gone_proc.kill9();
    survivor
        .wait_online(&gone.id, false, Duration::from_secs(30))
        .await
        .expect("offline seen through the survivor");

    // Every expected alarm, each exactly once.
    let mut expected: Vec<(String, String)> = rooms
        .iter()
        .map(|r| ("not_recording".to_owned(), r.clone()))
        .collect();
    expected.push(("device_offline".into(), gone.id.clone()));
    wait_until(
        "every expected alarm stored",
        Duration::from_secs(40),
        || async {
            let c = counts(&history(&survivor).await);
            expected.iter().all(|k| c.contains_key(k))
        },
    )
    .await;
    // A few more evaluation rounds: nothing is raised a second time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = history(&survivor).await;
    let c = counts(&all);
    for key in &expected {
        assert_eq!(c.get(key), Some(&1), "{key:?} stored once: {c:?}\n{all:#?}");
    }
    assert_eq!(
        c.values().sum::<usize>(),
        expected.len(),
        "only the expected alarms: {c:?}"
    );
    let open: Vec<Value> = survivor
        .get("/api/v1/alarms")
        .await
        .expect("alarms")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    assert_eq!(counts(&open), c, "all still open");
    let seen_after = survivor.device(&alive).await.expect("device")["last_seen"].clone();
    assert_ne!(
        seen_after, seen_before,
        "device messages keep arriving (through the survivor)"
    );
    // Every instance gets every device's whole event stream: nothing lost, no replays.
    assert!(survivor.metric("gavel_events_applied_total").await > 0);
    assert_eq!(
        survivor.metric("gavel_events_replay_requests_total").await,
        0,
        "a split event stream would show as gaps"
    );
    assert_eq!(survivor.metric("gavel_events_lost_total").await, 0);
    drop(dead);
    drop(agents);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).expect("mkdir");
        self
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_scheduler_mid_run_raises_every_alarm_exactly_once() {
    kill_one_instance_mid_run(Victim::Scheduler).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_follower_mid_run_raises_every_alarm_exactly_once() {
    kill_one_instance_mid_run(Victim::Follower).await;
}
