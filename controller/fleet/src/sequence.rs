//! Sans-I/O event sequencer: applies each device event exactly once, in `seq` order per
//! (device, boot), whatever order and however often the network delivers it.
//!
//! - `seq == next`: delivered, and any held successors after it.
//! - `seq < next` or already held: a duplicate; dropped, and a receipt is due again so the
//!   device can delete it.
//! - `seq > next`: a gap; the event is held (up to `max_held` per stream) and the device is
//!   asked to replay from `next`, again every `replay_every`. After `give_up_after` asks the
//!   gap is declared lost, reported, and the held events are delivered.
//!
//! Every boot's sequence starts at 0 (the agent numbers from 0 and keeps events in its
//! outbox until a receipt), so a stream the sequencer has never seen starts at 0 too.

use std::collections::BTreeMap;

use gavel_protocol::{DeviceId, Event};
use time::{Duration, OffsetDateTime};

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqOutput {
    /// Apply this event (store it); outputs come in `seq` order per stream.
    Deliver { device: DeviceId, event: Box<Event> },
    /// A copy of an event already applied; dropped.
    Duplicate {
        device: DeviceId,
        boot_id: String,
        seq: u64,
    },
    /// Ask the device to send its outbox again from `from_seq` of `boot_id`.
    AskReplay {
        device: DeviceId,
        boot_id: String,
        from_seq: u64,
    },
    /// Events `from_seq..=to_seq` never came despite replays; they are skipped.
    Lost {
        device: DeviceId,
        boot_id: String,
        from_seq: u64,
        to_seq: u64,
    },
}

/// A stream's position, for persistence and receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub device: DeviceId,
    pub boot_id: String,
    /// Next expected sequence number; everything below it has been applied.
    pub next: u64,
}

#[derive(Debug, Default)]
struct Stream {
    next: u64,
    held: BTreeMap<u64, Event>,
    last_ask: Option<OffsetDateTime>,
    asks: u32,
    /// `next` changed since the shell last persisted it.
    dirty: bool,
    /// The device should get a receipt (progress, or a duplicate showed it still holds
    /// events we have).
    receipt_due: bool,
}

/// Tuning.
#[derive(Debug, Clone, Copy)]
pub struct SequencerSettings {
    /// Most events held per stream while waiting for a gap to fill.
    pub max_held: usize,
    /// Interval between replay requests for one gap.
    pub replay_every: Duration,
    /// Replay requests before a gap is declared lost.
    pub give_up_after: u32,
}

impl Default for SequencerSettings {
    fn default() -> Self {
        Self {
            max_held: 4096,
            replay_every: Duration::seconds(5),
            give_up_after: 12,
        }
    }
}

/// The sequencer.
#[derive(Debug, Default)]
pub struct Sequencer {
    settings: SequencerSettings,
    streams: BTreeMap<(DeviceId, String), Stream>,
}

impl Sequencer {
    /// A sequencer resuming from persisted cursors.
    pub fn new(settings: SequencerSettings, cursors: impl IntoIterator<Item = Cursor>) -> Self {
        let streams = cursors
            .into_iter()
            .map(|c| {
                (
                    (c.device, c.boot_id),
                    Stream {
                        next: c.next,
                        ..Stream::default()
                    },
                )
            })
            .collect();
        Self { settings, streams }
    }

    /// Next expected sequence number of a stream (0 for an unknown one).
    pub fn next(&self, device: &DeviceId, boot_id: &str) -> u64 {
        self.streams
            .get(&(device.clone(), boot_id.to_owned()))
            .map_or(0, |s| s.next)
    }

    /// Takes one event received at `now`.
    pub fn observe(
        &mut self,
        now: OffsetDateTime,
        device: DeviceId,
        event: Event,
    ) -> Vec<SeqOutput> {
        let mut out = Vec::new();
        let key = (device.clone(), event.boot_id.clone());
        let stream = self.streams.entry(key).or_default();
        let seq = event.seq;
        if seq < stream.next || stream.held.contains_key(&seq) {
            stream.receipt_due = true;
            out.push(SeqOutput::Duplicate {
                device,
                boot_id: event.boot_id,
                seq,
            });
            return out;
        }
        if seq == stream.next {
            out.push(SeqOutput::Deliver {
                device: device.clone(),
                event: Box::new(event),
            });
            stream.next += 1;
            release(stream, &device, &mut out);
            return out;
        }
        // A gap: hold the event and ask for what is missing.
        if stream.held.len() < self.settings.max_held {
            stream.held.insert(seq, event.clone());
        }
        if stream.last_ask.is_none() {
            stream.last_ask = Some(now);
            stream.asks = 1;
            out.push(SeqOutput::AskReplay {
                device,
                boot_id: event.boot_id,
                from_seq: stream.next,
            });
        }
        out
    }

    /// Re-asks for replays of open gaps and gives up on hopeless ones.
    pub fn tick(&mut self, now: OffsetDateTime) -> Vec<SeqOutput> {
        let mut out = Vec::new();
        for ((device, boot_id), stream) in &mut self.streams {
            let Some(last) = stream.last_ask else {
                continue;
            };
            if now - last < self.settings.replay_every {
                continue;
            }
            if stream.asks >= self.settings.give_up_after {
                let Some(&first_held) = stream.held.keys().next() else {
                    stream.last_ask = None;
                    continue;
                };
                out.push(SeqOutput::Lost {
                    device: device.clone(),
                    boot_id: boot_id.clone(),
                    from_seq: stream.next,
                    to_seq: first_held - 1,
                });
                stream.next = first_held;
                release(stream, device, &mut out);
            } else {
                stream.last_ask = Some(now);
                stream.asks += 1;
                out.push(SeqOutput::AskReplay {
                    device: device.clone(),
                    boot_id: boot_id.clone(),
                    from_seq: stream.next,
                });
            }
        }
        out
    }

    /// Streams whose position changed since the last call (to persist).
    pub fn take_dirty(&mut self) -> Vec<Cursor> {
        let mut out = Vec::new();
        for ((device, boot_id), s) in &mut self.streams {
            if std::mem::take(&mut s.dirty) {
                out.push(Cursor {
                    device: device.clone(),
                    boot_id: boot_id.clone(),
                    next: s.next,
                });
            }
        }
        out
    }

    /// Streams that should get a receipt now (call after their events are stored).
    pub fn take_receipts(&mut self) -> Vec<Cursor> {
        let mut out = Vec::new();
        for ((device, boot_id), s) in &mut self.streams {
            if std::mem::take(&mut s.receipt_due) && s.next > 0 {
                out.push(Cursor {
                    device: device.clone(),
                    boot_id: boot_id.clone(),
                    next: s.next,
                });
            }
        }
        out
    }
}

fn release(stream: &mut Stream, device: &DeviceId, out: &mut Vec<SeqOutput>) {
    while let Some(event) = stream.held.remove(&stream.next) {
        out.push(SeqOutput::Deliver {
            device: device.clone(),
            event: Box::new(event),
        });
        stream.next += 1;
    }
    // Drop held copies that fell below `next` (cannot happen, but keeps the map tidy).
    let next = stream.next;
    stream.held.retain(|s, _| *s >= next);
    if stream.held.is_empty() {
        stream.last_ask = None;
        stream.asks = 0;
    }
    stream.dirty = true;
    stream.receipt_due = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_protocol::{EventBody, PROTOCOL_VERSION, Phase};
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-27 09:00 UTC);

    fn dev() -> DeviceId {
        DeviceId::new("cam-1").expect("id")
    }

    fn ev(boot: &str, seq: u64) -> Event {
        Event {
            v: PROTOCOL_VERSION,
            ts: T0,
            boot_id: boot.into(),
            seq,
            id: format!("probe-{seq}"),
            phase: Phase::End,
            historical: false,
            body: EventBody::Probe { n: seq },
        }
    }

    fn delivered(out: &[SeqOutput]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                SeqOutput::Deliver { event, .. } => Some(event.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn in_order_events_are_delivered_at_once() {
        let mut s = Sequencer::default();
        for seq in 0..3 {
            assert_eq!(delivered(&s.observe(T0, dev(), ev("b", seq))), [seq]);
        }
        assert_eq!(s.next(&dev(), "b"), 3);
        assert_eq!(
            s.take_receipts(),
            [Cursor {
                device: dev(),
                boot_id: "b".into(),
                next: 3
            }]
        );
        assert!(
            s.take_receipts().is_empty(),
            "receipt is not repeated without cause"
        );
    }

    #[test]
    fn a_duplicate_is_dropped_and_triggers_a_new_receipt() {
        let mut s = Sequencer::default();
        s.observe(T0, dev(), ev("b", 0));
        s.take_receipts();
        let out = s.observe(T0, dev(), ev("b", 0));
        assert!(matches!(
            out.as_slice(),
            [SeqOutput::Duplicate { seq: 0, .. }]
        ));
        assert_eq!(s.take_receipts().len(), 1);
    }

    #[test]
    fn a_gap_holds_later_events_asks_for_a_replay_and_releases_them_in_order() {
        let mut s = Sequencer::default();
        s.observe(T0, dev(), ev("b", 0));
        let out = s.observe(T0, dev(), ev("b", 3));
        assert_eq!(
            out,
            [SeqOutput::AskReplay {
                device: dev(),
                boot_id: "b".into(),
                from_seq: 1
            }]
        );
        assert!(delivered(&s.observe(T0, dev(), ev("b", 2))).is_empty());
        assert_eq!(delivered(&s.observe(T0, dev(), ev("b", 1))), [1, 2, 3]);
        assert!(s.tick(T0 + Duration::minutes(5)).is_empty(), "gap closed");
    }

    #[test]
    fn an_unfilled_gap_is_asked_again_then_declared_lost() {
        let settings = SequencerSettings {
            max_held: 10,
            replay_every: Duration::seconds(5),
            give_up_after: 2,
        };
        let mut s = Sequencer::new(settings, []);
        s.observe(T0, dev(), ev("b", 2));
        assert!(s.tick(T0 + Duration::seconds(4)).is_empty());
        let again = s.tick(T0 + Duration::seconds(5));
        assert!(matches!(
            again.as_slice(),
            [SeqOutput::AskReplay { from_seq: 0, .. }]
        ));
        let out = s.tick(T0 + Duration::seconds(10));
        assert_eq!(
            out[0],
            SeqOutput::Lost {
                device: dev(),
                boot_id: "b".into(),
                from_seq: 0,
                to_seq: 1
            }
        );
        assert_eq!(delivered(&out), [2]);
    }

    #[test]
    fn boots_are_independent_streams_and_cursors_resume() {
        let mut s = Sequencer::default();
        s.observe(T0, dev(), ev("old", 0));
        s.observe(T0, dev(), ev("new", 0));
        s.observe(T0, dev(), ev("old", 1));
        let mut dirty = s.take_dirty();
        dirty.sort_by(|a, b| a.boot_id.cmp(&b.boot_id));
        assert_eq!(dirty.iter().map(|c| c.next).collect::<Vec<_>>(), [1, 2]);
        let mut resumed = Sequencer::new(SequencerSettings::default(), dirty);
        assert!(matches!(
            resumed.observe(T0, dev(), ev("old", 1)).as_slice(),
            [SeqOutput::Duplicate { .. }]
        ));
        assert_eq!(delivered(&resumed.observe(T0, dev(), ev("old", 2))), [2]);
    }

    proptest! {
        /// However the network reorders and duplicates a stream, every event is delivered
        /// exactly once and in order.
        #[test]
        fn any_delivery_order_with_duplicates_applies_each_event_once_in_order(
            order in Just((0u64..40).collect::<Vec<_>>()).prop_shuffle(),
            dups in proptest::collection::vec(0u64..40, 0..40),
        ) {
            let mut s = Sequencer::default();
            let mut applied = Vec::new();
            for seq in order.iter().chain(dups.iter()) {
                applied.extend(delivered(&s.observe(T0, dev(), ev("b", *seq))));
            }
            prop_assert_eq!(applied, (0u64..40).collect::<Vec<_>>());
        }
    }
}
