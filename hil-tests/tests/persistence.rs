//! Controller state survives a restart: the same test on SQLite and on PostgreSQL.

use std::time::Duration;

use gavel_hil::{AgentSpec, Broker, Controller, PgDatabase, start_agent, unique};

async fn registry_survives_a_controller_restart(database_url: Option<String>) {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, database_url.as_deref())
        .expect("controller");
    let mut spec = AgentSpec::new(&unique("persist"), "courtroom-terminal");
    spec.court = "persist-court".into();
    spec.room = "room-9".into();
    let mut agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    // Wait for health and the start event to be stored.
    for _ in 0..100 {
        let d = controller.device(&spec.id).await.expect("device");
        let events = controller
            .get(&format!("/api/v1/devices/{}/events", spec.id))
            .await
            .expect("events")
            .expect("list");
        if !d["health"].is_null() && !events.as_array().is_none_or(Vec::is_empty) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = controller.device(&spec.id).await.expect("device");
    assert!(!before["health"].is_null());

    // Stop the agent cleanly, then the controller.
    assert!(agent.terminate(Duration::from_secs(10)));
    controller
        .wait_online(&spec.id, false, Duration::from_secs(5))
        .await
        .expect("offline");
    let mut controller = controller;
    assert!(
        controller.proc.terminate(Duration::from_secs(15)),
        "controller exits on SIGTERM"
    );

    // A new controller on the same database knows the device before it reconnects.
    let controller = Controller::start(dir.path(), &Broker::Embedded, database_url.as_deref())
        .expect("controller again");
    let after = controller.device(&spec.id).await.expect("device restored");
    assert_eq!(after["court"], "persist-court");
    assert_eq!(after["room"], "room-9");
    assert_eq!(after["profile"], "courtroom-terminal");
    assert_eq!(after["boot_id"], before["boot_id"]);
    assert_eq!(after["online"], false);
    assert_eq!(after["offline_cause"], "shutdown");
    assert!(!after["health"].is_null());
    let events = controller
        .get(&format!("/api/v1/devices/{}/events", spec.id))
        .await
        .expect("events")
        .expect("list");
    assert!(
        events
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["phase"] == "start")),
        "{events}"
    );

    // And the device comes back online through the new controller.
    let _agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent again");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online again");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_survives_a_controller_restart_on_sqlite() {
    registry_survives_a_controller_restart(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_survives_a_controller_restart_on_postgres() {
    let db = PgDatabase::create().expect("PostgreSQL database (is PostgreSQL running?)");
    registry_survives_a_controller_restart(Some(db.url())).await;
}
