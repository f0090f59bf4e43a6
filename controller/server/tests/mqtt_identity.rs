//! Device identity on the MQTT link (issue 9), against the embedded broker behind the
//! controller's TLS gate and against a Mosquitto started with the configuration the
//! controller generates: device A cannot publish as device B nor read B's commands; a
//! certificate from another CA cannot connect; a revoked certificate cannot connect (and,
//! at the gate, its live connection is closed at once).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gavel_controller::pki::Pki;
use gavel_controller::{BrokerSettings, Settings};
use gavel_identity::ca::{DeviceCa, Revoked, device_csr};
use gavel_protocol::DeviceId;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS, Transport,
};
use time::OffsetDateTime;

/// A key and certificate for one client.
#[derive(Clone)]
struct Identity {
    cert: String,
    key: String,
    serial: String,
}

fn device_identity(ca: &DeviceCa, id: &str) -> Identity {
    let device = DeviceId::new(id).expect("id");
    let (csr, key) = device_csr(&device).expect("csr");
    let issued = ca
        .issue_device(
            &csr,
            &device,
            OffsetDateTime::now_utc(),
            time::Duration::days(1),
        )
        .expect("issue");
    Identity {
        cert: issued.cert_pem,
        key,
        serial: issued.serial,
    }
}

struct Target {
    host: String,
    port: u16,
    ca_pem: String,
}

fn tls_client(target: &Target, client_id: &str, who: &Identity) -> (AsyncClient, EventLoop) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut options = MqttOptions::new(client_id, target.host.clone(), target.port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_transport(Transport::tls(
        target.ca_pem.clone().into_bytes(),
        Some((who.cert.clone().into_bytes(), who.key.clone().into_bytes())),
        None,
    ));
    AsyncClient::new(options, 64)
}

/// Polls until the broker accepts the connection, or returns why it did not.
async fn connect(ev: &mut EventLoop) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                return if ack.code == rumqttc::ConnectReturnCode::Success {
                    Ok(())
                } else {
                    Err(format!("refused: {:?}", ack.code))
                };
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(describe(&e)),
            Err(_) => return Err("no answer".into()),
        }
    }
    Err("no CONNACK".into())
}

fn describe(e: &ConnectionError) -> String {
    format!("{e}")
}

/// Drives an event loop in the background, forwarding incoming publishes (topic, payload).
fn pump(
    mut ev: EventLoop,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    tokio::task::JoinHandle<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).into_owned(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return describe(&e),
            }
        }
    });
    (rx, task)
}

async fn expect_message(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    topic: &str,
    payload: &str,
) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            let hit = m.0 == topic && m.1 == payload;
            seen.push(m);
            if hit {
                // Anything else in flight arrives within a short settle time.
                tokio::time::sleep(Duration::from_millis(500)).await;
                while let Ok(m) = rx.try_recv() {
                    seen.push(m);
                }
                return seen;
            }
        }
    }
    panic!("{topic} {payload:?} never arrived; saw {seen:?}");
}

/// The scenario both brokers must pass. `observer` sees all device topics and may publish
/// commands (the controller's role).
async fn isolation(target: &Target, ca: &DeviceCa, observer: (AsyncClient, EventLoop)) {
    let (a, b) = (device_identity(ca, "cam-a"), device_identity(ca, "cam-b"));
    let (obs, obs_ev) = observer;
    let (mut obs_rx, _obs_task) = pump(obs_ev);
    obs.subscribe("gavel/v1/dev/+/+", QoS::AtLeastOnce)
        .await
        .expect("observer subscribes");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A publishes as B: never delivered. B's own marker shows delivery works.
    let (a_client, mut a_ev) = tls_client(target, "cam-a", &a);
    connect(&mut a_ev)
        .await
        .expect("A connects with its certificate");
    let (_a_rx, _a_task) = pump(a_ev);
    let (b_client, mut b_ev) = tls_client(target, "cam-b", &b);
    connect(&mut b_ev)
        .await
        .expect("B connects with its certificate");
    let (mut b_rx, _b_task) = pump(b_ev);
    a_client
        .publish(
            "gavel/v1/dev/cam-b/event",
            QoS::AtLeastOnce,
            false,
            "forged by A",
        )
        .await
        .expect("queued");
    tokio::time::sleep(Duration::from_millis(300)).await;
    b_client
        .publish(
            "gavel/v1/dev/cam-b/event",
            QoS::AtLeastOnce,
            false,
            "from B",
        )
        .await
        .expect("queued");
    let seen = expect_message(&mut obs_rx, "gavel/v1/dev/cam-b/event", "from B").await;
    assert!(
        !seen.iter().any(|(_, p)| p == "forged by A"),
        "A's forged message reached the controller: {seen:?}"
    );

    // A subscribes to B's commands (on a fresh connection: the gate closes a violator).
    let (a2, mut a2_ev) = tls_client(target, "cam-a", &a);
    connect(&mut a2_ev).await.expect("A reconnects");
    let (mut a2_rx, _a2_task) = pump(a2_ev);
    a2.subscribe("gavel/v1/dev/cam-b/cmd", QoS::AtLeastOnce)
        .await
        .expect("queued");
    b_client
        .subscribe("gavel/v1/dev/cam-b/cmd", QoS::AtLeastOnce)
        .await
        .expect("queued");
    tokio::time::sleep(Duration::from_millis(500)).await;
    obs.publish(
        "gavel/v1/dev/cam-b/cmd",
        QoS::AtLeastOnce,
        false,
        "command for B",
    )
    .await
    .expect("queued");
    expect_message(&mut b_rx, "gavel/v1/dev/cam-b/cmd", "command for B").await;
    let leaked: Vec<_> = std::iter::from_fn(|| a2_rx.try_recv().ok()).collect();
    assert!(leaked.is_empty(), "A read B's commands: {leaked:?}");

    // A certificate from another CA cannot connect.
    let rogue_ca = DeviceCa::generate("rogue", OffsetDateTime::now_utc()).expect("rogue CA");
    let rogue = device_identity(&rogue_ca, "cam-a");
    let (_r, mut r_ev) = tls_client(target, "cam-a", &rogue);
    let err = connect(&mut r_ev)
        .await
        .expect_err("a certificate of another CA is refused");
    println!("unknown certificate refused: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_behind_the_gate_confines_each_device_to_its_own_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings {
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        broker: BrokerSettings::Embedded {
            listen: "127.0.0.1:0".parse().expect("addr"),
            max_payload_bytes: 1024 * 1024,
        },
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    settings.mqtt_tls.listen = Some("127.0.0.1:0".parse().expect("addr"));
    let running = gavel_controller::start(settings)
        .await
        .expect("controller starts");
    let gate = running.mqtt_tls.expect("gate on");
    let pki = Pki::open(&running.pki_dir).expect("pki");
    let target = Target {
        host: "localhost".into(),
        port: gate.port(),
        ca_pem: pki.ca().cert_pem().to_string(),
    };
    // The observer is a second controller-side client on the loopback broker.
    let mut options = MqttOptions::new("observer", running.mqtt.0.clone(), running.mqtt.1);
    options.set_keep_alive(Duration::from_secs(5));
    let observer = AsyncClient::new(options, 64);
    isolation(&target, pki.ca(), observer).await;

    // Revocation closes a live connection at once and refuses the next one.
    let c = device_identity(pki.ca(), "cam-c");
    let (_c, mut c_ev) = tls_client(&target, "cam-c", &c);
    connect(&mut c_ev).await.expect("C connects");
    let (_c_rx, c_task) = pump(c_ev);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoked_at = Instant::now();
    running.revocations.revoke([c.serial.clone()]);
    let why = tokio::time::timeout(Duration::from_secs(5), c_task)
        .await
        .expect("the revoked device's connection is closed within 5 s")
        .expect("task");
    println!(
        "revoked connection closed after {:?}: {why}",
        revoked_at.elapsed()
    );
    let (_c2, mut c2_ev) = tls_client(&target, "cam-c", &c);
    connect(&mut c2_ev)
        .await
        .expect_err("a revoked certificate cannot connect");

    // A device cannot take another's client id with its own certificate.
    let a = device_identity(pki.ca(), "cam-a");
    let (_x, mut x_ev) = tls_client(&target, "cam-b", &a);
    connect(&mut x_ev)
        .await
        .expect_err("client id must be the certificate's device id");
    running.stop().await;
}

struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mosquitto(conf: &Path, port: u16) -> Mosquitto {
    let log = std::fs::File::create(conf.with_file_name("mosquitto.log")).expect("log");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mosquitto runs (apt-get install mosquitto)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen: {}",
            std::fs::read_to_string(conf.with_file_name("mosquitto.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Mosquitto(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_with_the_generated_configuration_confines_each_device_to_its_own_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::open(&dir.path().join("pki")).expect("pki");
    let port = free_port();
    let out = dir.path().join("mosquitto");
    let names = vec!["localhost".to_string()];
    let conf = pki
        .write_mosquitto(&out, port, &names, &[], 1)
        .expect("configuration");
    // As root, Mosquitto drops to its own user; the test's files stay root's.
    let text = std::fs::read_to_string(&conf).expect("read");
    std::fs::write(&conf, format!("user root\npersistence false\n{text}")).expect("write");
    let mut mosquitto = start_mosquitto(&conf, port);
    let target = Target {
        host: "localhost".into(),
        port,
        ca_pem: pki.ca().cert_pem().to_string(),
    };
    let controller = Identity {
        cert: std::fs::read_to_string(out.join("controller.pem")).expect("controller cert"),
        key: std::fs::read_to_string(out.join("controller.key")).expect("controller key"),
        serial: String::new(),
    };
    let observer = tls_client(&target, "gavel-controller-test", &controller);
    isolation(&target, pki.ca(), observer).await;

    // Revocation: a new CRL and SIGHUP; the revoked device can no longer connect.
    let c = device_identity(pki.ca(), "cam-c");
    let (_c, mut c_ev) = tls_client(&target, "cam-c", &c);
    connect(&mut c_ev)
        .await
        .expect("C connects before revocation");
    pki.write_crl(
        &out,
        &[Revoked {
            serial: c.serial.clone(),
            at: OffsetDateTime::now_utc(),
        }],
        2,
    )
    .expect("crl");
    // Mosquitto reads the CRL when its listener starts: restart it on the new CRL.
    drop(mosquitto);
    mosquitto = start_mosquitto(&conf, port);
    let (_c2, mut c2_ev) = tls_client(&target, "cam-c", &c);
    let err = connect(&mut c2_ev)
        .await
        .expect_err("a revoked certificate cannot connect");
    println!("revoked certificate refused by mosquitto: {err}");
    drop(mosquitto);
}
