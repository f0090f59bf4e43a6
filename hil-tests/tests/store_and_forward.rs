//! Events are never lost: SIGKILLs at random points while events are produced, and a
//! broker outage while a device keeps producing. The short versions run in the default
//! suite; `cargo xtask soak` runs the full ones (500 kills, a 10-minute outage) through
//! `GAVEL_SOAK_KILLS` and `GAVEL_SOAK_OUTAGE_S`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gavel_hil::{AgentSpec, Broker, Controller, Mosquitto, Proc, start_agent_with, unique};
use serde_json::Value;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (boot, seq) of every probe event the agent reported durable in its log.
fn stored_probes(agent: &Proc) -> Vec<(String, u64)> {
    agent
        .log_text()
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("probe stored ")? + "probe stored ".len()..];
            let (boot, seq) = rest.trim().split_once('/')?;
            let seq: u64 = seq
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()?;
            Some((boot.to_owned(), seq))
        })
        .collect()
}

/// The controller's events for `device`, oldest first (storage order).
async fn controller_events(c: &Controller, device: &str) -> Vec<Value> {
    let mut list = c
        .get(&format!("/api/v1/devices/{device}/events?limit=100000"))
        .await
        .expect("events")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    list.reverse();
    list
}

fn key(e: &Value) -> (String, u64) {
    (
        e["boot_id"].as_str().unwrap_or("").to_owned(),
        e["seq"].as_u64().unwrap_or(u64::MAX),
    )
}

/// Waits until the controller has every event in `want`.
async fn wait_for_all(
    c: &Controller,
    device: &str,
    want: &BTreeSet<(String, u64)>,
    timeout: Duration,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let events = controller_events(c, device).await;
        let have: BTreeSet<(String, u64)> = events.iter().map(key).collect();
        if want.is_subset(&have) || start.elapsed() > timeout {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkills_while_producing_lose_no_acknowledged_event_and_apply_none_twice() {
    let kills = env_or("GAVEL_SOAK_KILLS", 15);
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("torture"), "ip-camera");
    let extra = ["--probe-rate", "200", "--resend-after", "2"];

    let mut acknowledged: Vec<(String, u64)> = Vec::new();
    for _ in 0..kills {
        let mut agent =
            start_agent_with(dir.path(), &spec, &controller.mqtt, &extra).expect("agent");
        tokio::time::sleep(Duration::from_millis(30 + fastrand::u64(0..250))).await;
        agent.kill9();
        acknowledged.extend(stored_probes(&agent));
    }
    // A last boot that lives long enough to drain its outbox.
    let mut agent = start_agent_with(dir.path(), &spec, &controller.mqtt, &extra).expect("agent");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let want: BTreeSet<(String, u64)> = acknowledged.iter().cloned().collect();
    assert!(
        want.len() as u64 > kills,
        "too few events produced: {}",
        want.len()
    );
    wait_for_all(&controller, &spec.id, &want, Duration::from_secs(60)).await;
    // A clean stop drains the last boot's outbox (its end event included).
    assert!(agent.terminate(Duration::from_secs(10)));
    acknowledged.extend(stored_probes(&agent));
    let want: BTreeSet<(String, u64)> = acknowledged.iter().cloned().collect();
    let events = wait_for_all(&controller, &spec.id, &want, Duration::from_secs(30)).await;

    let have: Vec<(String, u64)> = events.iter().map(key).collect();
    let distinct: BTreeSet<(String, u64)> = have.iter().cloned().collect();
    let missing: Vec<_> = want.difference(&distinct).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(have.len(), distinct.len(), "an event was applied twice");
    // Within each boot, stored order is sequence order without gaps.
    let mut by_boot: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (b, s) in &have {
        by_boot.entry(b.clone()).or_default().push(*s);
    }
    for (boot, seqs) in &by_boot {
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(seqs, &expected, "boot {boot} out of order or with gaps");
    }
    let duplicates = controller.metric("gavel_events_duplicate_total").await;
    let lost = controller.metric("gavel_events_lost_total").await;
    assert_eq!(lost, 0);
    // The sequencer applied each stored event once (this also checks the metric is live).
    let applied = controller.metric("gavel_events_applied_total").await;
    assert_eq!(
        applied,
        have.len() as u64,
        "applied counter vs stored events"
    );
    eprintln!(
        "{kills} kills: {} acknowledged probes, {} events stored in {} boots, {duplicates} duplicates dropped",
        want.len(),
        have.len(),
        by_boot.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_delays_events_but_every_one_arrives_in_order_flagged_historical() {
    let outage = Duration::from_secs(env_or("GAVEL_SOAK_OUTAGE_S", 8));
    let dir = tempfile::tempdir().expect("tmp");
    let mut mosquitto = Mosquitto::private().expect("mosquitto");
    let controller = Controller::start(dir.path(), &mosquitto.broker(), None).expect("controller");
    let spec = AgentSpec::new(&unique("outage"), "courtroom-terminal");
    let mut agent = start_agent_with(dir.path(), &spec, &controller.mqtt, &["--probe-rate", "20"])
        .expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let down_at = time::OffsetDateTime::now_utc();
    mosquitto.stop();
    tokio::time::sleep(outage).await;
    let up_at = time::OffsetDateTime::now_utc();
    mosquitto.start().expect("mosquitto again");
    // The device reconnects with backoff (up to 30 s after a long outage).
    controller
        .wait_online(&spec.id, false, Duration::from_secs(30))
        .await
        .ok();
    controller
        .wait_online(&spec.id, true, Duration::from_secs(60))
        .await
        .expect("device reconnects");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Stop producing, then compare the device's record with the controller's.
    assert!(agent.terminate(Duration::from_secs(15)));
    let produced: Vec<(String, u64)> = stored_probes(&agent);
    let want: BTreeSet<(String, u64)> = produced.iter().cloned().collect();
    let during = (outage.as_secs_f64() * 20.0 * 0.8) as usize;
    assert!(want.len() > during, "device produced {} events", want.len());
    let events = wait_for_all(&controller, &spec.id, &want, Duration::from_secs(120)).await;
    let probes: Vec<&Value> = events.iter().filter(|e| e["type"] == "probe").collect();
    let have: Vec<(String, u64)> = probes.iter().map(|e| key(e)).collect();
    assert_eq!(
        have, produced,
        "the controller's view differs from the device's"
    );

    // Stored in order, and everything produced while the broker was down is historical.
    let mut historical_during = 0;
    for e in &probes {
        let ts = time::OffsetDateTime::parse(
            e["event"]["ts"].as_str().unwrap_or(""),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("ts");
        if ts > down_at + time::Duration::milliseconds(500) && ts < up_at {
            assert_eq!(e["event"]["historical"], true, "{e}");
            historical_during += 1;
        }
    }
    assert!(
        historical_during >= during,
        "{historical_during} historical events"
    );
    eprintln!(
        "outage {outage:?}: {} events, {historical_during} produced during the outage, all delivered in order",
        have.len()
    );
}
