//! # gavel-link
//!
//! The device's MQTT link to the controller. On every connection it registers a last will
//! (the death message, retained `offline` status), publishes its birth and a retained
//! `online` status, and subscribes to its command topic. It reconnects with exponential
//! backoff and jitter, and closes cleanly with an `offline` status naming the reason.
//!
//! Design: one task owns the rumqttc event loop; the rest of the agent holds a cloneable
//! [`Link`] to publish, and receives [`LinkEvent`]s (connection changes, commands) on a
//! channel.

pub mod outbox;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gavel_protocol::{
    Birth, Channel, Command, DecodeError, DeviceId, DeviceTopic, Message, OfflineReason, Receipt,
    Schedule, Status, Wall,
};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use outbox::{Outbox, OutboxError};

/// How to reach the broker.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub device: DeviceId,
    pub host: String,
    pub port: u16,
    /// MQTT keepalive; the broker publishes the will after 1.5x this without traffic.
    pub keepalive: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Send unconfirmed events again when no receipt came for this long.
    pub resend_after: Duration,
    /// Mutual TLS (the controller's gate or a Mosquitto with the generated configuration).
    pub tls: Option<TlsIdentity>,
}

/// What the device presents and trusts over TLS (PEM bytes).
#[derive(Clone)]
pub struct TlsIdentity {
    /// The device CA certificate: the broker's certificate must chain to it.
    pub ca: Vec<u8>,
    /// The device's certificate (its common name is the device id).
    pub cert: Vec<u8>,
    /// The device's private key, made on the device.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

/// What the link tells the agent.
#[derive(Debug)]
pub enum LinkEvent {
    /// Connected; birth and online status are on their way.
    Connected { bd_seq: u64 },
    /// The connection dropped or could not be made; a retry follows after `retry_in`.
    Disconnected { error: String, retry_in: Duration },
    /// A command arrived for this device.
    Command(Command),
    /// A payload arrived on the command topic that is not a valid command.
    BadCommand(DecodeError),
    /// The room's schedule arrived (retained: again after every connect).
    Schedule(Schedule),
    /// A payload arrived on the schedule topic that is not a valid schedule.
    BadSchedule(DecodeError),
    /// The video wall's configuration arrived (retained: again after every connect).
    Wall(Box<Wall>),
    /// A payload arrived on the wall topic that is not a valid wall configuration.
    BadWall(DecodeError),
}

/// Why a publish was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("not connected to the broker")]
    NotConnected,
    #[error("the link's request queue is full")]
    QueueFull,
    #[error("the link is closed")]
    Closed,
}

/// Cloneable handle to publish on the device's own topics.
#[derive(Clone)]
pub struct Link {
    client: AsyncClient,
    device: DeviceId,
    boot_id: Arc<str>,
    connected: Arc<AtomicBool>,
    bd_seq: Arc<AtomicU64>,
    rebirth: mpsc::Sender<()>,
}

impl Link {
    /// Starts the link task. `birth` builds the birth message for a given `bd_seq`. With
    /// an `outbox`, a sender task publishes its events and receipts confirm them.
    pub fn spawn(
        settings: LinkSettings,
        boot_id: &str,
        birth: impl Fn(u64) -> Birth + Send + 'static,
        outbox: Option<Arc<Outbox>>,
    ) -> (Link, mpsc::Receiver<LinkEvent>, JoinHandle<()>) {
        let client_id = settings.device.to_string();
        let mut options = MqttOptions::new(client_id, settings.host.clone(), settings.port);
        options
            .set_keep_alive(settings.keepalive)
            .set_clean_session(true)
            .set_max_packet_size(
                gavel_protocol::MAX_PAYLOAD + 1024,
                gavel_protocol::MAX_PAYLOAD + 1024,
            )
            .set_last_will(will(&settings.device, boot_id, 0));
        if let Some(tls) = &settings.tls {
            // rumqttc builds its rustls config with the process-wide provider. The
            // workspace links two (aws-lc-rs, and ring through object_store's reqwest), so
            // rustls cannot pick one itself: name ours (an error means one is set already).
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            options.set_transport(rumqttc::Transport::tls(
                tls.ca.clone(),
                Some((tls.cert.clone(), tls.key.clone())),
                None,
            ));
        }
        let (client, eventloop) = AsyncClient::new(options, 64);
        let (rebirth_tx, rebirth_rx) = mpsc::channel(4);
        let link = Link {
            client,
            device: settings.device.clone(),
            boot_id: boot_id.into(),
            connected: Arc::new(AtomicBool::new(false)),
            bd_seq: Arc::new(AtomicU64::new(0)),
            rebirth: rebirth_tx,
        };
        let (tx, rx) = mpsc::channel(64);
        let (up_tx, up_rx) = watch::channel(None);
        if let Some(outbox) = &outbox {
            tokio::spawn(outbox::send_loop(
                outbox.clone(),
                link.client.clone(),
                settings.device.clone(),
                up_rx,
                settings.resend_after,
            ));
        }
        let task = tokio::spawn(run(
            link.clone(),
            eventloop,
            settings,
            Box::new(birth),
            Channels {
                events: tx,
                up: up_tx,
                rebirth: rebirth_rx,
                outbox,
            },
        ));
        (link, rx, task)
    }

    /// Publishes the birth and online status again; returns the session's bd_seq.
    pub async fn rebirth(&self) -> u64 {
        let _ = self.rebirth.send(()).await;
        self.bd_seq.load(Ordering::Relaxed)
    }

    /// Whether the broker connection is up now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The current session's birth/death sequence.
    pub fn bd_seq(&self) -> u64 {
        self.bd_seq.load(Ordering::Relaxed)
    }

    /// The device this link speaks for.
    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// Publishes `message` on its channel with the channel's QoS and retain flag.
    pub fn publish<M: Message>(&self, message: &M) -> Result<(), LinkError> {
        if !self.is_connected() {
            return Err(LinkError::NotConnected);
        }
        self.publish_raw(M::CHANNEL, gavel_protocol::encode(message))
    }

    fn publish_raw(&self, channel: Channel, payload: Vec<u8>) -> Result<(), LinkError> {
        let topic = DeviceTopic::new(self.device.clone(), channel).to_string();
        self.client
            .try_publish(topic, qos(channel.qos()), channel.retained(), payload)
            .map_err(|e| match e {
                rumqttc::ClientError::TryRequest(_) => LinkError::QueueFull,
                rumqttc::ClientError::Request(_) => LinkError::Closed,
            })
    }

    /// Publishes a retained `offline` status with `reason` and disconnects cleanly, so the
    /// broker discards the will. The link task ends after the disconnect is sent.
    pub async fn close(&self, reason: OfflineReason) {
        if self.is_connected() {
            let bd_seq = self.bd_seq.load(Ordering::Relaxed);
            let status =
                Status::going_offline(&self.boot_id, bd_seq, reason, OffsetDateTime::now_utc());
            if let Err(e) = self.publish_raw(Channel::Status, gavel_protocol::encode(&status)) {
                warn!(error = %e, "could not publish offline status before closing");
            }
        }
        if let Err(e) = self.client.disconnect().await {
            debug!(error = %e, "disconnect after close");
        }
    }
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn will(device: &DeviceId, boot_id: &str, bd_seq: u64) -> LastWill {
    let topic = DeviceTopic::new(device.clone(), Channel::Status).to_string();
    let payload = gavel_protocol::encode(&Status::death(boot_id, bd_seq));
    LastWill::new(topic, payload, QoS::AtLeastOnce, true)
}

/// Exponential backoff with full jitter between `min` and the current ceiling.
fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let ceiling = min
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(max);
    let span = ceiling.saturating_sub(min).as_millis() as u64;
    min + Duration::from_millis(fastrand::u64(0..=span))
}

struct Channels {
    events: mpsc::Sender<LinkEvent>,
    up: watch::Sender<Option<i64>>,
    rebirth: mpsc::Receiver<()>,
    outbox: Option<Arc<Outbox>>,
}

fn announce(link: &Link, birth: &(dyn Fn(u64) -> Birth + Send)) {
    let bd_seq = link.bd_seq.load(Ordering::Relaxed);
    let online = Status::online(&link.boot_id, bd_seq, OffsetDateTime::now_utc());
    let queued = link
        .publish_raw(Channel::Birth, gavel_protocol::encode(&birth(bd_seq)))
        .and_then(|_| link.publish_raw(Channel::Status, gavel_protocol::encode(&online)));
    if let Err(e) = queued {
        warn!(error = %e, "could not queue birth");
    }
}

async fn run(
    link: Link,
    mut eventloop: EventLoop,
    settings: LinkSettings,
    birth: Box<dyn Fn(u64) -> Birth + Send>,
    mut ch: Channels,
) {
    let [cmd_topic, receipt_topic, schedule_topic] =
        gavel_protocol::filter::device_inbox(&settings.device);
    // Design: every device subscribes to its wall topic; only a wall is ever sent one (the
    // others ignore it), and the subscription costs nothing.
    let wall_topic = gavel_protocol::filter::wall_config(&settings.device);
    let mut failures: u32 = 0;
    loop {
        let polled = tokio::select! {
            p = eventloop.poll() => p,
            Some(()) = ch.rebirth.recv() => {
                if link.is_connected() {
                    announce(&link, birth.as_ref());
                }
                continue;
            }
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                failures = 0;
                let bd_seq = link.bd_seq.load(Ordering::Relaxed);
                info!(device = %settings.device, bd_seq, code = ?ack.code, "connected to broker");
                link.connected.store(true, Ordering::Relaxed);
                announce(&link, birth.as_ref());
                for topic in [&cmd_topic, &receipt_topic, &schedule_topic, &wall_topic] {
                    if let Err(e) = link.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                        warn!(error = %e, %topic, "could not queue subscription");
                    }
                }
                let _ = ch.up.send(Some(
                    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
                ));
                let _ = ch.events.send(LinkEvent::Connected { bd_seq }).await;
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                let event = match gavel_protocol::decode::<Command>(&p.payload) {
                    Ok(cmd) => LinkEvent::Command(cmd),
                    Err(e) => LinkEvent::BadCommand(e),
                };
                let _ = ch.events.send(event).await;
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == schedule_topic => {
                let event = match gavel_protocol::decode::<Schedule>(&p.payload) {
                    Ok(schedule) => LinkEvent::Schedule(schedule),
                    Err(e) => LinkEvent::BadSchedule(e),
                };
                let _ = ch.events.send(event).await;
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == wall_topic => {
                let event = match gavel_protocol::decode::<Wall>(&p.payload) {
                    Ok(wall) => LinkEvent::Wall(Box::new(wall)),
                    Err(e) => LinkEvent::BadWall(e),
                };
                let _ = ch.events.send(event).await;
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == receipt_topic => {
                match gavel_protocol::decode::<Receipt>(&p.payload) {
                    Ok(receipt) => {
                        if let Some(outbox) = ch.outbox.clone() {
                            tokio::spawn(async move {
                                if let Err(e) = outbox.confirm(&receipt).await {
                                    warn!(error = %e, "applying a receipt failed; the events will be sent again");
                                }
                            });
                        }
                    }
                    Err(e) => warn!(error = %e, "malformed receipt refused"),
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                link.connected.store(false, Ordering::Relaxed);
                let _ = ch.up.send(None);
                // Let the disconnect packet flush, then stop.
                let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                break;
            }
            Ok(_) => {}
            Err(e) => {
                link.connected.store(false, Ordering::Relaxed);
                let _ = ch.up.send(None);
                // Design: the outbox resends unconfirmed events itself after reconnecting;
                // rumqttc's own replay of in-flight packets would only add duplicates.
                eventloop.pending.clear();
                let retry_in = backoff(failures, settings.backoff_min, settings.backoff_max);
                failures = failures.saturating_add(1);
                // Design: every new connection attempt gets a new bd_seq and a matching will,
                // so the controller can tell a stale will from the current session's.
                let bd_seq = link.bd_seq.fetch_add(1, Ordering::Relaxed) + 1;
                eventloop
                    .mqtt_options
                    .set_last_will(will(&settings.device, &link.boot_id, bd_seq));
                warn!(device = %settings.device, error = %e, retry_in_ms = retry_in.as_millis() as u64, "broker connection lost");
                if ch
                    .events
                    .send(LinkEvent::Disconnected {
                        error: e.to_string(),
                        retry_in,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(retry_in).await;
            }
        }
    }
    debug!(device = %settings.device, "link task ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_ceiling_and_never_below_the_floor() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..40 {
            let d = backoff(attempt, min, max);
            assert!(d >= min && d <= max, "{attempt}: {d:?}");
        }
        let ceiling0 = (0..200).map(|_| backoff(0, min, max)).max().expect("some");
        assert!(ceiling0 <= min * 2);
    }

    #[test]
    fn the_will_is_a_retained_offline_status_with_the_sessions_bd_seq() {
        let dev = DeviceId::new("cam-1").expect("id");
        let w = will(&dev, "boot", 7);
        assert_eq!(w.topic, "gavel/v1/dev/cam-1/status");
        assert!(w.retain);
        let s: Status = gavel_protocol::decode(&w.message).expect("status");
        assert_eq!(s, Status::death("boot", 7));
    }
}
