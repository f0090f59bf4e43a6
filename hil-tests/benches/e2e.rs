//! End-to-end events per second, device to controller, against the broker's own loopback
//! ceiling measured with `mosquitto_pub`/`mosquitto_sub` in the same run on the same
//! private Mosquitto.
//!
//! Gavel's path: the agent stores each probe event durably (one fsync), publishes it with
//! QoS 1, the controller decodes, sequences and stores it (batched commits) and sends
//! receipts. The ceiling: QoS 1 messages of the same size through the same broker,
//! counted at the subscriber. Needs release binaries (`cargo xtask bench` builds them).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gavel_hil::{AgentSpec, Controller, Mosquitto, start_agent_with, unique};

const PAYLOAD: usize = 200;

fn ceiling(m: &Mosquitto, n: usize) -> f64 {
    let port = m.port.to_string();
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "bench/ceiling",
            "-q",
            "1",
            "-C",
            &n.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let mut publisher = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "bench/ceiling",
            "-q",
            "1",
            "-l",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    {
        let mut stdin = publisher.stdin.take().expect("stdin");
        let line = format!("{}\n", "x".repeat(PAYLOAD));
        for _ in 0..n {
            stdin.write_all(line.as_bytes()).expect("write");
        }
    }
    // Counted at the subscriber: mosquitto_pub -l does not wait for its acks.
    let _ = sub.wait();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = publisher.wait();
    rate
}

#[tokio::main]
async fn main() {
    let m = Mosquitto::private().expect("mosquitto");
    let n = 20_000;
    let ceiling = ceiling(&m, n);

    let dir = tempfile::tempdir_in("/var/tmp").expect("tmp");
    let controller = Controller::start(dir.path(), &m.broker(), None).expect("controller");
    let spec = AgentSpec::new(&unique("bench"), "ip-camera");
    let _agent = start_agent_with(
        dir.path(),
        &spec,
        &controller.mqtt,
        &["--probe-rate", "100000"],
    )
    .expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(30))
        .await
        .expect("online");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = Duration::from_secs(10);
    let before = controller.metric("gavel_events_applied_total").await;
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let after = controller.metric("gavel_events_applied_total").await;
    let gavel = (after - before) as f64 / start.elapsed().as_secs_f64();

    println!("end-to-end events per second through one private Mosquitto:");
    println!(
        "  broker ceiling (mosquitto_pub -> mosquitto_sub, QoS 1, {PAYLOAD} B, {n} msgs): {ceiling:>9.0} msg/s"
    );
    println!(
        "  gavel (agent outbox, fsync per event -> controller, stored exactly once):  {gavel:>9.0} events/s"
    );
    println!("  ratio gavel / ceiling: {:.3}", gavel / ceiling);
}
