//! A simulated transcribing device: a courtroom device that reports the `transcribe`
//! capability running and publishes `transcript` events (partial lines as `update`,
//! final ones as `end`, one id per line) over the broker, exactly as an agent's outbox
//! does (QoS 1, one boot, `seq` from 0 without gaps). For controller tests that need
//! transcript lines without a speech model.

use std::time::Duration;

use anyhow::Context;
use gavel_protocol::{Birth, Channel, DeviceId, DeviceTopic, Event, Status};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, QoS};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// One line to publish.
#[derive(Debug, Clone)]
pub struct SimLine<'a> {
    pub hearing: String,
    pub seat: &'a str,
    pub line: u64,
    /// Start on the hearing's recording timeline, ms.
    pub offset_ms: u64,
    pub duration_ms: u64,
    pub text: &'a str,
    /// `end` (final) or `update` (partial).
    pub is_final: bool,
}

/// The simulated device's MQTT session.
pub struct TranscriberSim {
    client: AsyncClient,
    device: DeviceId,
    boot: String,
    seq: u64,
    task: tokio::task::JoinHandle<()>,
}

fn now() -> String {
    gavel_protocol::rfc3339(OffsetDateTime::now_utc())
}

impl TranscriberSim {
    /// Connects as device `id` placed in `court`/`room`, publishes its birth (with
    /// `transcribe` running) and `online` status.
    pub async fn connect(
        broker: &(String, u16),
        id: &str,
        court: &str,
        room: &str,
    ) -> anyhow::Result<Self> {
        let device = DeviceId::new(id).context("device id")?;
        let mut opts = MqttOptions::new(id, broker.0.clone(), broker.1);
        opts.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(_)) | Ok(MqttEvent::Outgoing(_)) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        let boot = uuid::Uuid::new_v4().to_string();
        let birth = json!({
            "v": 1, "ts": now(), "boot_id": boot, "bd_seq": 0, "seq_base": 0,
            "profile": "courtroom-terminal", "firmware_version": "0.1.0-sim", "hostname": id,
            "placement": { "court": court, "room": room },
            "capabilities": [
                { "name": "health", "state": "running" },
                { "name": "transcribe", "state": "running", "detail": "simulated: lines come from the test" }
            ],
            "keepalive_s": 10, "health_interval_s": 5
        });
        let status =
            json!({ "v": 1, "state": "online", "boot_id": boot, "bd_seq": 0, "ts": now() });
        let sim = Self {
            client,
            device,
            boot,
            seq: 0,
            task,
        };
        sim.publish::<Birth>(Channel::Birth, true, &birth).await?;
        sim.publish::<Status>(Channel::Status, true, &status)
            .await?;
        Ok(sim)
    }

    /// Checks `payload` is a valid `M` (so a test never sends what an agent could not),
    /// then publishes it with QoS 1.
    async fn publish<M: gavel_protocol::Message>(
        &self,
        channel: Channel,
        retain: bool,
        payload: &Value,
    ) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(payload)?;
        gavel_protocol::decode::<M>(&bytes)
            .map_err(|e| anyhow::anyhow!("the simulator built an invalid message: {e}"))?;
        let topic = DeviceTopic::new(self.device.clone(), channel).to_string();
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, bytes)
            .await
            .context("publishing")?;
        Ok(())
    }

    /// Publishes one version (partial or final) of a transcript line.
    pub async fn line(&mut self, l: &SimLine<'_>) -> anyhow::Result<()> {
        let e = json!({
            "v": 1, "ts": now(), "boot_id": self.boot, "seq": self.seq,
            "id": format!("tr-{}-{}-{}", l.hearing, l.seat, l.line),
            "phase": if l.is_final { "end" } else { "update" }, "historical": false,
            "type": "transcript", "hearing_id": l.hearing, "seat": l.seat,
            "source": "mics:0", "line": l.line,
            "offset_ns": l.offset_ms * 1_000_000, "duration_ns": l.duration_ms * 1_000_000,
            "text": l.text, "language": "zh", "model": "simulated", "confidence": 0.9
        });
        self.publish::<Event>(Channel::Event, false, &e).await?;
        self.seq += 1;
        Ok(())
    }
}

impl Drop for TranscriberSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}
