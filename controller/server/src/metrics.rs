//! Prometheus metrics served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    pub command: String,
    pub outcome: String,
}

/// All controller metrics.
pub struct Metrics {
    registry: Registry,
    /// Messages accepted from devices, by channel.
    pub accepted: Family<ChannelLabel, Counter>,
    /// Messages refused, by reason.
    pub rejected: Family<KindLabel, Counter>,
    /// Known devices.
    pub devices: Gauge,
    /// Online devices.
    pub online: Gauge,
    /// Commands sent through the API, by command and outcome.
    pub commands: Family<CommandLabel, Counter>,
    /// Failed writes to the database (retried).
    pub store_errors: Counter,
    /// 1 while the controller's own MQTT client is connected.
    pub broker_connected: Gauge,
    /// Open dashboard streams.
    pub stream_clients: Gauge,
    /// Device events applied (stored) exactly once.
    pub events_applied: Counter,
    /// Copies of already applied events, dropped.
    pub events_duplicate: Counter,
    /// Replay requests sent for gaps.
    pub replay_requests: Counter,
    /// Events skipped after replays failed to fill a gap.
    pub events_lost: Counter,
    /// Alarms raised since start.
    pub alarms_raised: Counter,
    /// Alarms open now.
    pub alarms_open: Gauge,
    /// 1 while this instance is the scheduler (runs enforcement and campaigns).
    pub scheduler: Gauge,
    /// Segment bytes received by archive uploads (each byte counted once as it is
    /// written to the upload's partial file).
    pub archive_received_bytes: Counter,
    /// Segments archived (hash verified on arrival).
    pub archive_segments: Counter,
    /// Uploads refused because the bytes did not hash to the segment's SHA-256.
    pub archive_hash_mismatches: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gavel");
        let m = Self {
            accepted: Family::default(),
            rejected: Family::default(),
            devices: Gauge::default(),
            online: Gauge::default(),
            commands: Family::default(),
            store_errors: Counter::default(),
            broker_connected: Gauge::default(),
            stream_clients: Gauge::default(),
            events_applied: Counter::default(),
            events_duplicate: Counter::default(),
            replay_requests: Counter::default(),
            events_lost: Counter::default(),
            alarms_raised: Counter::default(),
            alarms_open: Gauge::default(),
            scheduler: Gauge::default(),
            archive_received_bytes: Counter::default(),
            archive_segments: Counter::default(),
            archive_hash_mismatches: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ingest_accepted",
            "Device messages accepted, by channel",
            m.accepted.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Device messages refused, by reason",
            m.rejected.clone(),
        );
        registry.register("fleet_devices", "Known devices", m.devices.clone());
        registry.register("fleet_online", "Online devices", m.online.clone());
        registry.register(
            "commands",
            "Commands sent, by command and outcome",
            m.commands.clone(),
        );
        registry.register(
            "store_errors",
            "Failed database writes (retried)",
            m.store_errors.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while the controller is connected to the broker",
            m.broker_connected.clone(),
        );
        registry.register(
            "stream_clients",
            "Open dashboard event streams",
            m.stream_clients.clone(),
        );
        registry.register(
            "events_applied",
            "Device events applied exactly once",
            m.events_applied.clone(),
        );
        registry.register(
            "events_duplicate",
            "Duplicate device events dropped",
            m.events_duplicate.clone(),
        );
        registry.register(
            "events_replay_requests",
            "Replay requests sent to devices for gaps",
            m.replay_requests.clone(),
        );
        registry.register(
            "events_lost",
            "Events skipped after replays failed",
            m.events_lost.clone(),
        );
        registry.register("alarms_raised", "Alarms raised", m.alarms_raised.clone());
        registry.register("alarms_open", "Alarms open now", m.alarms_open.clone());
        registry.register(
            "scheduler",
            "1 while this instance is the elected scheduler",
            m.scheduler.clone(),
        );
        registry.register(
            "archive_received_bytes",
            "Segment bytes received by archive uploads",
            m.archive_received_bytes.clone(),
        );
        registry.register(
            "archive_segments",
            "Segments archived with their hash verified",
            m.archive_segments.clone(),
        );
        registry.register(
            "archive_hash_mismatches",
            "Archive uploads refused for a hash mismatch",
            m.archive_hash_mismatches.clone(),
        );
        Self { registry, ..m }
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }

    pub fn reject(&self, kind: &str) {
        self.rejected
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn accept(&self, channel: &str) {
        self.accepted
            .get_or_create(&ChannelLabel {
                channel: channel.into(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
