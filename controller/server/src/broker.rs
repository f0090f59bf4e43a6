//! The embedded MQTT broker (rumqttd), run on its own threads inside the controller.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tracing::info;

/// Starts the broker on `listen` and returns the address it listens on once it accepts
/// connections. Port 0 picks a free port.
pub fn start(listen: SocketAddr, max_payload_bytes: usize) -> anyhow::Result<SocketAddr> {
    let listen = if listen.port() == 0 {
        // rumqttd cannot report the port it bound; find a free one first.
        let probe = TcpListener::bind(listen).context("finding a free port for the broker")?;
        probe.local_addr()?
    } else {
        listen
    };
    let server = ServerSettings {
        name: "gavel-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: max_payload_bytes,
            max_inflight_count: 200,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100_000,
            max_outgoing_packet_count: 1000,
            max_segment_size: 8 * 1024 * 1024,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .context("starting the broker thread")?;
    let reach = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&reach, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("embedded broker did not start listening on {listen} within 10 s (port in use?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    info!(%listen, "embedded MQTT broker listening");
    Ok(reach)
}
