//! Talking to one device over the broker directly, without a controller: send it commands
//! and schedules, and hear its `ota` events and births. For tests where nobody may
//! acknowledge the device's events (its outbox then never drains) or where the controller
//! only serves bundles.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_protocol::{Birth, Channel, DeviceId, DeviceTopic, Event, EventBody};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};

use crate::unique;

/// What a device said: `ota` events (stage, detail), deduplicated by (boot, seq) since
/// unacknowledged events are resent; and the firmware versions of its births.
#[derive(Debug, Default)]
pub struct Heard {
    seen: BTreeSet<(String, u64)>,
    /// `ota` events in arrival order: (stage, detail).
    pub ota: Vec<(String, String)>,
    /// `firmware_version` of each birth.
    pub births: Vec<String>,
}

impl Heard {
    /// The stages of the `ota` events in order.
    pub fn stages(&self) -> Vec<String> {
        self.ota.iter().map(|(s, _)| s.clone()).collect()
    }
}

/// A connection to the broker listening to one device.
pub struct DeviceMqtt {
    client: AsyncClient,
    device: DeviceId,
    /// What was heard so far.
    pub heard: Arc<Mutex<Heard>>,
}

impl DeviceMqtt {
    /// Connects to `broker` and subscribes to `device`'s events and births.
    pub async fn listen(broker: &(String, u16), device: &str) -> Self {
        let opts = MqttOptions::new(unique("test-listen"), broker.0.clone(), broker.1);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let id = DeviceId::new(device).expect("device id");
        for ch in [Channel::Event, Channel::Birth] {
            client
                .subscribe(
                    DeviceTopic::new(id.clone(), ch).to_string(),
                    QoS::AtLeastOnce,
                )
                .await
                .expect("subscribe");
        }
        let heard = Arc::new(Mutex::new(Heard::default()));
        let h = heard.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let mut h = h.lock().expect("lock");
                        if let Ok(e) = gavel_protocol::decode::<Event>(&p.payload) {
                            if !h.seen.insert((e.boot_id.clone(), e.seq)) {
                                continue;
                            }
                            if let EventBody::Ota { stage, detail, .. } = e.body {
                                let stage = serde_json::to_value(stage)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_owned))
                                    .unwrap_or_default();
                                h.ota.push((stage, detail.unwrap_or_default()));
                            }
                        } else if let Ok(b) = gavel_protocol::decode::<Birth>(&p.payload) {
                            h.births.push(b.firmware_version);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Self {
            client,
            device: id,
            heard,
        }
    }

    /// Publishes `payload` on the device's `channel` (QoS 1).
    pub async fn publish(&self, channel: Channel, retain: bool, payload: Vec<u8>) {
        let topic = DeviceTopic::new(self.device.clone(), channel).to_string();
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("publish");
    }

    /// Waits until `ok` holds for what was heard; panics with all of it after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&Heard) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let h = self.heard.lock().expect("lock");
                if ok(&h) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what} not heard within {timeout:?}: ota {:?}, births {:?}",
                    h.ota,
                    h.births
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether an `ota` event with `stage` whose detail contains `text` was heard.
    pub fn heard_ota(&self, stage: &str, text: &str) -> bool {
        self.heard
            .lock()
            .expect("lock")
            .ota
            .iter()
            .any(|(s, d)| s == stage && d.contains(text))
    }
}
