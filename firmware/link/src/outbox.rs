//! Store-and-forward for events. Every event is written durably to the device store
//! before it is published; it leaves the store only when the controller's receipt says
//! the controller has stored it. After a reconnect, everything unconfirmed is sent again,
//! in order, flagged `historical`; the controller drops duplicates by (boot id, seq).
//!
//! Design: producers (recorder, analyzers, the agent) only append to the store and poke
//! the sender; they never wait for the network. The sender task alone talks to the broker,
//! so a slow or absent broker cannot block them. Memory stays bounded: the sender reads
//! the store in batches of [`BATCH`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gavel_protocol::{
    Channel, DeviceId, DeviceTopic, Event, EventBody, OutboxHealth, PROTOCOL_VERSION, Phase,
    Receipt,
};
use gavel_store::{OutboxEntry, Store, StoreError};
use rumqttc::{AsyncClient, QoS};
use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify, watch};
use tracing::{debug, error, info, warn};

/// Entries read from the store per batch.
pub const BATCH: usize = 64;

/// Why an event could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store task failed: {0}")]
    Task(String),
    /// The event breaks the protocol (a field too long, an id out of form): refused
    /// before it takes a sequence number, so it can never stall the stream behind it.
    #[error("event {id:?} refused: {reason}")]
    Invalid { id: String, reason: String },
}

/// The device's event outbox.
pub struct Outbox {
    store: Arc<Store>,
    boot_id: String,
    /// Next sequence number of this boot; the mutex also orders appends.
    next_seq: Mutex<u64>,
    /// Mirror of `next_seq` readable without locking (births read it).
    next_seq_hint: AtomicU64,
    wake: Notify,
    resend: AtomicBool,
    dropped_telemetry: AtomicU64,
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, OutboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OutboxError::Task(e.to_string()))?
        .map_err(OutboxError::from)
}

impl Outbox {
    /// An outbox for this boot over `store`.
    pub fn new(store: Arc<Store>, boot_id: &str) -> Arc<Self> {
        Arc::new(Self {
            store,
            boot_id: boot_id.to_owned(),
            next_seq: Mutex::new(0),
            next_seq_hint: AtomicU64::new(0),
            wake: Notify::new(),
            resend: AtomicBool::new(false),
            dropped_telemetry: AtomicU64::new(0),
        })
    }

    /// The sequence number the next event of this boot gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq_hint.load(Ordering::Relaxed)
    }

    /// Stores an event durably and queues it for sending; returns its sequence number.
    /// When this returns `Ok`, the event will reach the controller.
    pub async fn emit(
        &self,
        id: String,
        phase: Phase,
        body: EventBody,
    ) -> Result<u64, OutboxError> {
        let mut next = self.next_seq.lock().await;
        let seq = *next;
        let event = Event {
            v: PROTOCOL_VERSION,
            ts: OffsetDateTime::now_utc(),
            boot_id: self.boot_id.clone(),
            seq,
            id,
            phase,
            historical: false,
            body,
        };
        let payload = gavel_protocol::encode(&event);
        // Design: exactly the check the controller makes; an event it would refuse is
        // refused here, before it takes a sequence number (a gap would hold back every
        // later event of this boot at the controller).
        if let Err(e) = gavel_protocol::decode::<Event>(&payload) {
            return Err(OutboxError::Invalid {
                id: event.id,
                reason: e.to_string(),
            });
        }
        let entry = OutboxEntry {
            boot_id: self.boot_id.clone(),
            seq,
            appended_ms: now_ms(),
            payload,
        };
        let store = self.store.clone();
        blocking(move || store.append(&entry)).await?;
        // Design: the sequence advances only after a durable append, so a failed append
        // leaves no gap for the controller to wait on.
        *next = seq + 1;
        self.next_seq_hint.store(seq + 1, Ordering::Relaxed);
        self.wake.notify_one();
        Ok(seq)
    }

    /// Applies a receipt: deletes the confirmed events.
    pub async fn confirm(&self, receipt: &Receipt) -> Result<usize, OutboxError> {
        let store = self.store.clone();
        let (boot, through) = (receipt.boot_id.clone(), receipt.through_seq);
        let removed = blocking(move || store.confirm(&boot, through)).await?;
        debug!(boot = %receipt.boot_id, through, removed, "receipt applied");
        Ok(removed)
    }

    /// Sends everything unconfirmed again (the controller asked for a replay).
    pub fn resend_all(&self) {
        self.resend.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Counts a health message that was dropped because the link was down.
    pub fn telemetry_dropped(&self) {
        self.dropped_telemetry.fetch_add(1, Ordering::Relaxed);
    }

    /// Outbox state for health telemetry.
    pub async fn health(&self) -> Result<OutboxHealth, OutboxError> {
        let store = self.store.clone();
        let stats = blocking(move || store.stats()).await?;
        Ok(OutboxHealth {
            depth: stats.depth,
            oldest_age_s: stats
                .oldest_ms
                .map(|t| u64::try_from((now_ms() - t).max(0) / 1000).unwrap_or(0)),
            dropped_telemetry: self.dropped_telemetry.load(Ordering::Relaxed),
        })
    }
}

/// Sends the outbox while connected. `connected` holds the connection time (Unix ms)
/// while the link is up, `None` while it is down.
pub(crate) async fn send_loop(
    outbox: Arc<Outbox>,
    client: AsyncClient,
    device: DeviceId,
    mut connected: watch::Receiver<Option<i64>>,
    resend_after: Duration,
) {
    let topic = DeviceTopic::new(device, Channel::Event).to_string();
    loop {
        // Wait for a connection.
        let connected_at = loop {
            if let Some(t) = *connected.borrow_and_update() {
                break t;
            }
            if connected.changed().await.is_err() {
                return;
            }
        };
        // Everything before `resend_below` has been handed to the broker before.
        let mut cursor = 0u64;
        let mut resend_below = 0u64;
        let mut sent = 0u64;
        'connection: loop {
            if outbox.resend.swap(false, Ordering::SeqCst) {
                resend_below = resend_below.max(cursor);
                cursor = 0;
            }
            let store = outbox.store.clone();
            let from = cursor;
            let batch = match blocking(move || store.entries_from(from, BATCH)).await {
                Ok(b) => b,
                Err(e) => {
                    error!(error = %e, "reading the outbox failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = outbox.wake.notified() => {}
                    changed = connected.changed() => {
                        if changed.is_err() || connected.borrow().is_none() {
                            break 'connection;
                        }
                    }
                    _ = tokio::time::sleep(resend_after) => {
                        // Sent but never confirmed: the controller may have missed them
                        // (it was down, or the broker dropped them). Send them again.
                        let store = outbox.store.clone();
                        if blocking(move || store.stats()).await.is_ok_and(|s| s.depth > 0) {
                            info!(sent, "no receipt for sent events; sending them again");
                            resend_below = resend_below.max(cursor);
                            cursor = 0;
                        }
                    }
                }
                continue;
            }
            for (key, entry) in batch {
                if connected.borrow().is_none() {
                    break 'connection;
                }
                let mut event: Event = match gavel_protocol::decode(&entry.payload) {
                    Ok(e) => e,
                    Err(e) => {
                        // Cannot happen for entries we wrote; never silently: log loudly.
                        error!(key, error = %e, "outbox entry does not decode; skipping it");
                        cursor = key + 1;
                        continue;
                    }
                };
                event.historical = entry.appended_ms < connected_at || key < resend_below;
                if let Err(e) = client
                    .publish(
                        topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        gavel_protocol::encode(&event),
                    )
                    .await
                {
                    warn!(error = %e, "event publish refused; waiting for the link");
                    break 'connection;
                }
                cursor = key + 1;
                sent += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(text: String) -> EventBody {
        EventBody::Transcript {
            hearing_id: "H-1".into(),
            seat: "judge".into(),
            source: "mics:0".into(),
            line: 0,
            offset_ns: 0,
            duration_ns: 1_000_000_000,
            text,
            language: "en".into(),
            model: "tiny.en".into(),
            vocabulary: None,
            confidence: None,
        }
    }

    #[tokio::test]
    async fn an_event_the_controller_would_refuse_is_refused_before_it_takes_a_sequence_number() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(&dir.path().join("store.redb")).expect("store"));
        let outbox = Outbox::new(store, "boot-1");
        let long = "the court is at, ".repeat(200);
        let err = outbox
            .emit("tr-H-1-judge-0".into(), Phase::Update, transcript(long))
            .await
            .expect_err("an over-long line is refused");
        assert!(
            matches!(err, OutboxError::Invalid { ref id, ref reason } if id == "tr-H-1-judge-0" && reason.contains("text")),
            "{err}"
        );
        // No gap: the next event takes the number the refused one did not.
        let seq = outbox
            .emit(
                "tr-H-1-judge-0".into(),
                Phase::End,
                transcript("The court is now in session.".into()),
            )
            .await
            .expect("a valid line is stored");
        assert_eq!(seq, 0);
    }
}
