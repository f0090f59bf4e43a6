//! The short version of the 50,000-room alarm benchmark (`cargo xtask bench`): 500
//! simulated rooms over a few MQTT connections through Mosquitto, 250 hearings, half of
//! them never recorded and half losing a source. Every expected alarm is stored, once.
//! No timing assertion: the figures come from the benchmark.

use std::time::Duration;

use gavel_hil::fleet_sim::{Scenario, run};
use gavel_hil::{Controller, Mosquitto, PgDatabase};

#[tokio::test(flavor = "multi_thread")]
async fn every_alarm_of_500_simulated_rooms_arrives_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::private().expect("mosquitto");
    let db = PgDatabase::create().expect("postgres");
    let controller = Controller::start_with_env(
        dir.path(),
        &broker.broker(),
        Some(&db.url()),
        &[("GAVEL_ALARM_GRACE_S", "2")],
    )
    .expect("controller");
    let scenario = Scenario {
        rooms: 500,
        hearings: 250,
        connections: 4,
        grace_s: 2,
        lead: Duration::from_secs(5),
        window: Duration::from_secs(10),
        health_every: Duration::from_secs(10),
    };
    let out = run(&controller, &scenario).await.expect("scenario");
    assert_eq!(out.expected, 250);
    assert!(out.missing.is_empty(), "missing alarms: {:?}", out.missing);
    assert_eq!(out.raised, out.expected);
    assert_eq!(out.duplicates, 0, "a condition was raised twice");
    assert_eq!(out.latency_ms.get("not_recording").map(Vec::len), Some(125));
    assert_eq!(out.latency_ms.get("source_lost").map(Vec::len), Some(125));
    assert!(out.other.is_empty(), "unexpected alarms: {:?}", out.other);
}
