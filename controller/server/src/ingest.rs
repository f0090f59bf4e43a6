//! MQTT ingest: the controller's own client subscribes to every device topic, decodes
//! each message and hands it to the fleet task. Malformed or hostile payloads are counted,
//! logged (rate-limited) and kept in a short list for the API; they never stop ingest.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_protocol::{IngestError, decode_device_message};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde::Serialize;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::fleet_actor::FleetHandle;
use crate::metrics::Metrics;

/// A refused message, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reject {
    pub received: String,
    /// The topic, clipped to 120 characters.
    pub topic: String,
    pub payload_bytes: usize,
    pub kind: String,
    pub error: String,
}

/// Counts and recent examples of refused messages.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_by_kind: BTreeMap<String, u64>,
    /// The latest refused messages, newest first (at most 50).
    pub recent: Vec<Reject>,
}

const RECENT: usize = 50;
/// At most this many refused messages are logged one by one per minute.
const LOG_PER_MINUTE: u32 = 20;

#[derive(Default)]
struct RejectLogInner {
    accepted: u64,
    rejected: u64,
    by_kind: BTreeMap<String, u64>,
    recent: VecDeque<Reject>,
    window: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// Shared record of what ingest accepted and refused.
#[derive(Clone, Default)]
pub struct RejectLog {
    inner: Arc<Mutex<RejectLogInner>>,
}

impl RejectLog {
    fn accepted(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.accepted += 1;
        }
    }

    fn rejected(&self, topic: &str, payload_bytes: usize, error: &IngestError) {
        let Ok(mut i) = self.inner.lock() else {
            return;
        };
        i.rejected += 1;
        *i.by_kind.entry(error.kind().to_owned()).or_default() += 1;
        let topic: String = topic.chars().take(120).collect();
        if i.recent.len() == RECENT {
            i.recent.pop_back();
        }
        i.recent.push_front(Reject {
            received: gavel_protocol::rfc3339(OffsetDateTime::now_utc()),
            topic: topic.clone(),
            payload_bytes,
            kind: error.kind().to_owned(),
            error: error.to_string(),
        });
        let now = Instant::now();
        let new_window = i
            .window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(60));
        if new_window {
            if i.suppressed > 0 {
                warn!(
                    suppressed = i.suppressed,
                    "more malformed device messages were refused in the last minute"
                );
            }
            i.window = Some(now);
            i.logged = 0;
            i.suppressed = 0;
        }
        if i.logged < LOG_PER_MINUTE {
            i.logged += 1;
            warn!(%topic, payload_bytes, kind = error.kind(), error = %error, "device message refused");
        } else {
            i.suppressed += 1;
        }
    }

    /// Current counts and recent examples.
    pub fn report(&self) -> IngestReport {
        let Ok(i) = self.inner.lock() else {
            return IngestReport::default();
        };
        IngestReport {
            accepted: i.accepted,
            rejected: i.rejected,
            rejected_by_kind: i.by_kind.clone(),
            recent: i.recent.iter().cloned().collect(),
        }
    }
}

/// What ingest subscribes to: every device topic, or in a cluster the shared subscriptions
/// of `group` (see [`gavel_protocol::filter::cluster_ingest`]).
pub fn subscriptions(cluster_group: Option<&str>) -> Vec<String> {
    match cluster_group {
        Some(group) => gavel_protocol::filter::cluster_ingest(group),
        None => vec![gavel_protocol::filter::all_devices()],
    }
}

/// The controller's own TLS identity for an external broker (PEM bytes).
#[derive(Clone)]
pub struct ClientTls {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads `ca.pem`, `controller.pem` and `controller.key` from `dir`.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let read = |name: &str| {
            std::fs::read(dir.join(name)).with_context(|| {
                format!(
                    "reading {} (made by `gavel-controller pki mosquitto --out {}`)",
                    dir.join(name).display(),
                    dir.display()
                )
            })
        };
        Ok(Self {
            ca: read("ca.pem")?,
            cert: read("controller.pem")?,
            key: read("controller.key")?,
        })
    }

    /// The rumqttc transport.
    pub fn transport(&self) -> rumqttc::Transport {
        // rumqttc uses the process-wide rustls provider, and two are linked (aws-lc-rs,
        // ring through object_store): name ours (an error means one is set already).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        rumqttc::Transport::tls(
            self.ca.clone(),
            Some((self.cert.clone(), self.key.clone())),
            None,
        )
    }
}

/// Connects the controller's MQTT client; returns the client (for commands) and the
/// event loop that [`run`] drives.
pub fn client(host: &str, port: u16, tls: Option<&ClientTls>) -> (AsyncClient, EventLoop) {
    let id = format!("gavel-controller-{}", uuid::Uuid::new_v4().simple());
    let mut options = MqttOptions::new(id, host, port);
    if let Some(tls) = tls {
        options.set_transport(tls.transport());
    }
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_clean_session(true)
        // Design: larger than any broker limit we configure, so a hostile payload is
        // refused by our decoder (counted) instead of breaking the connection.
        .set_max_packet_size(16 * 1024 * 1024, 1024 * 1024);
    AsyncClient::new(options, 1024)
}

/// The pause between broker reconnection attempts: 200 ms more for each failure in a row,
/// at most 5 s (rumqttc reconnects on the next poll).
#[derive(Debug, Default)]
pub(crate) struct Reconnect {
    failures: u32,
}

impl Reconnect {
    /// The connection is up: the next loss starts from the shortest pause.
    pub(crate) fn connected(&mut self) {
        self.failures = 0;
    }

    /// The pause before the next attempt after one more failure.
    fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(200 * u64::from(self.failures.min(25)))
    }

    /// Logs the lost connection (`what`) and waits before the next attempt; `false` when
    /// `shutdown` came first.
    pub(crate) async fn wait(
        &mut self,
        error: &rumqttc::ConnectionError,
        what: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        let wait = self.next_wait();
        warn!(error = %error, retry_in_ms = wait.as_millis() as u64, "{what}");
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

/// Drives the controller's MQTT client until `shutdown`.
pub async fn run(
    client: AsyncClient,
    mut eventloop: EventLoop,
    subscriptions: Vec<String>,
    fleet: FleetHandle,
    rejects: RejectLog,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut reconnect = Reconnect::default();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                reconnect.connected();
                metrics.broker_connected.set(1);
                info!(filters = ?subscriptions, "controller connected to broker; subscribing to device topics");
                for f in &subscriptions {
                    if let Err(e) = client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                        warn!(error = %e, filter = %f, "could not subscribe to device topics");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                match decode_device_message(&p.topic, &p.payload) {
                    Ok((topic, message)) => {
                        rejects.accepted();
                        metrics.accept(topic.channel.as_str());
                        fleet.message(topic.device, message).await;
                    }
                    Err(e) => {
                        metrics.reject(e.kind());
                        rejects.rejected(&p.topic, p.payload.len(), &e);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.broker_connected.set(0);
                if !reconnect
                    .wait(&e, "broker connection lost", &shutdown)
                    .await
                {
                    break;
                }
            }
        }
    }
    let _ = client.try_disconnect();
    metrics.broker_connected.set(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_pauses_grow_by_200_ms_to_5_s_and_reset_on_connection() {
        let mut r = Reconnect::default();
        let waits: Vec<u64> = (0..30).map(|_| r.next_wait().as_millis() as u64).collect();
        assert_eq!(&waits[..3], &[200, 400, 600]);
        assert_eq!(waits[24], 5000);
        assert_eq!(waits[29], 5000, "capped");
        r.connected();
        assert_eq!(r.next_wait(), Duration::from_millis(200));
    }
}
