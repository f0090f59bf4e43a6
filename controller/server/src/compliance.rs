//! The compliance task: assesses a hearing when it closes and whenever a device seals it,
//! stores the record, and pushes it to dashboards. The decisions are
//! `gavel_fleet::compliance`; this gathers the evidence from the database and the fleet.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gavel_fleet::DeviceRecord;
use gavel_fleet::compliance::{
    self, Compliance, Evidence, LostRec, SealRec, SegmentRec, Settings, Verdict,
};
use gavel_fleet::hearings::{Hearing, HearingStatus};
use gavel_protocol::{CapabilityState, EventBody};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::enforcer::EnforcerHandle;
use crate::fleet_actor::{FleetHandle, Push};
use crate::store::{Store, StoreError};

/// How often closed hearings still pending are looked at again.
const SWEEP: Duration = Duration::from_secs(15);
/// Closed hearings are swept this long after they close.
const SWEEP_FOR: time::Duration = time::Duration::days(2);

/// Asks for hearings to be assessed again. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct ComplianceTrigger {
    tx: mpsc::Sender<String>,
}

impl ComplianceTrigger {
    /// The hearing's evidence changed (closed, sealed).
    pub fn changed(&self, hearing_id: &str) {
        if self.tx.try_send(hearing_id.to_owned()).is_err() {
            warn!(
                hearing = hearing_id,
                "compliance queue full; the sweep will catch up"
            );
        }
    }
}

/// The trigger and its receiving end (the task is spawned later, when the fleet exists).
pub fn channel() -> (ComplianceTrigger, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel(4096);
    (ComplianceTrigger { tx }, rx)
}

/// What the task reads.
#[derive(Clone)]
pub struct Sources {
    pub store: Store,
    pub fleet: FleetHandle,
    pub enforcer: EnforcerHandle,
}

impl Sources {
    /// Gathers the evidence of `hearing` and assesses it now.
    pub async fn assess(&self, hearing: &Hearing) -> Result<Compliance, StoreError> {
        let devices = self.fleet.list().await;
        self.assess_with(hearing, &devices).await
    }

    /// Like [`Sources::assess`], with the registry already read (one read per pass).
    pub async fn assess_with(
        &self,
        hearing: &Hearing,
        devices: &[DeviceRecord],
    ) -> Result<Compliance, StoreError> {
        let mut evidence = evidence(hearing, devices);
        for (device, received, event) in self.store.hearing_events(&hearing.id).await? {
            add_event(&mut evidence, &device, received, event.body);
        }
        // Present once a device has sent a final line for the hearing.
        evidence.transcript_present =
            crate::transcripts::db::has_final_lines(&self.store, &hearing.id).await?;
        for seal in &evidence.seals {
            let pinned = self
                .store
                .pin_evidence_key(&seal.device, &seal.public_key)
                .await?;
            evidence.pinned_keys.insert(seal.device.clone(), pinned);
        }
        Ok(compliance::assess(
            hearing,
            &evidence,
            Settings::default(),
            OffsetDateTime::now_utc(),
        ))
    }
}

/// The room's recording devices and whether the room transcribes.
fn evidence(hearing: &Hearing, devices: &[DeviceRecord]) -> Evidence {
    let mut e = Evidence::default();
    for d in devices.iter().filter(|d| {
        d.court.as_deref() == Some(hearing.court.as_str())
            && d.room.as_deref() == Some(hearing.room.as_str())
    }) {
        let has = |name: &str| {
            d.capabilities
                .iter()
                .any(|c| c.name == name && c.state != CapabilityState::Unavailable)
        };
        if has("record") {
            e.recording_devices.insert(d.id.to_string());
        }
        // Design: a transcriber that failed still owes the transcript (its absence is the
        // exception to report); one turned off or not provided does not.
        if d.capabilities.iter().any(|c| {
            c.name == "transcribe"
                && matches!(c.state, CapabilityState::Running | CapabilityState::Failed)
        }) {
            e.transcript_required = true;
        }
    }
    e
}

fn add_event(e: &mut Evidence, device: &str, received: OffsetDateTime, body: EventBody) {
    match body {
        EventBody::Recording { sources, .. } => {
            e.sources
                .entry(device.to_owned())
                .or_default()
                .extend(sources);
        }
        EventBody::Segment {
            source,
            index,
            file,
            sha256,
            bytes,
            offset_ns,
            duration_ns,
            wall_start,
            chain,
            stream_start_ns,
            recovered,
            ..
        } => e.segments.push(SegmentRec {
            device: device.to_owned(),
            source,
            index,
            file,
            sha256,
            bytes,
            offset_ns,
            duration_ns,
            wall_start,
            chain,
            stream_start_ns,
            recovered,
            received,
        }),
        EventBody::SourceLost {
            source,
            lost_at,
            recovered_at,
            detail,
            ..
        } => {
            // `start` then `end` of one loss: keep the latest word per (source, lost_at).
            e.lost
                .retain(|l| !(l.device == device && l.source == source && l.lost_at == lost_at));
            e.lost.push(LostRec {
                device: device.to_owned(),
                source,
                lost_at,
                recovered_at,
                detail,
            });
        }
        EventBody::Sealed {
            segments,
            chain_head,
            manifest_sha256,
            public_key,
            signature,
            ..
        } => {
            e.seals.retain(|s| s.device != device);
            e.seals.push(SealRec {
                device: device.to_owned(),
                segments,
                chain_head,
                manifest_sha256,
                public_key,
                signature,
            });
        }
        EventBody::Agent { .. }
        | EventBody::Capability { .. }
        | EventBody::Probe { .. }
        | EventBody::CertRenewal { .. }
        | EventBody::Ota { .. }
        | EventBody::RecordingRequest { .. }
        | EventBody::Ticket { .. }
        | EventBody::Transcript { .. }
        | EventBody::Storage { .. }
        | EventBody::Finding { .. } => {}
    }
}

/// Runs the task until shutdown.
pub fn spawn(
    sources: Sources,
    mut rx: mpsc::Receiver<String>,
    push: broadcast::Sender<Push>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: BTreeMap<String, Verdict> = BTreeMap::new();
        loop {
            let ids: Vec<String> = tokio::select! {
                _ = shutdown.cancelled() => break,
                id = rx.recv() => match id {
                    None => break,
                    Some(id) => {
                        // Let a burst (close + seals of several devices) settle into one pass.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let mut ids = vec![id];
                        while let Ok(more) = rx.try_recv() {
                            ids.push(more);
                        }
                        ids
                    }
                },
                _ = sweep.tick() => due(&sources, &last).await,
            };
            let ids: BTreeSet<String> = ids.into_iter().collect();
            if ids.is_empty() {
                continue;
            }
            // One read of the hearings and the registry per pass; events are stored in
            // batches every 500 ms, so flush first to have what arrived.
            let mut hearings: BTreeMap<String, Hearing> = sources
                .enforcer
                .hearings()
                .await
                .into_iter()
                .filter(|h| {
                    ids.contains(&h.id)
                        && matches!(h.status, HearingStatus::Closed | HearingStatus::Cancelled)
                })
                .map(|h| (h.id.clone(), h))
                .collect();
            // Transcript lines of hearings still running ask too: nothing to assess yet.
            if hearings.is_empty() {
                continue;
            }
            sources.fleet.flush().await;
            let devices = sources.fleet.list().await;
            for id in ids {
                let Some(h) = hearings.remove(&id) else {
                    continue;
                };
                match sources.assess_with(&h, &devices).await {
                    Ok(c) => {
                        if let Err(e) = sources.store.save_compliance(&c).await {
                            warn!(hearing = %id, error = %e, "storing the compliance record failed");
                            continue;
                        }
                        if last.get(&id) != Some(&c.verdict) {
                            info!(hearing = %id, verdict = ?c.verdict, exceptions = c.exceptions.len(), "hearing compliance assessed");
                        }
                        last.insert(id.clone(), c.verdict);
                        let _ = push.send(Push::Compliance(Box::new(c)));
                    }
                    Err(e) => warn!(hearing = %id, error = %e, "assessing a hearing failed"),
                }
            }
        }
    })
}

/// Closed hearings of the last days whose record is missing or still pending.
async fn due(sources: &Sources, last: &BTreeMap<String, Verdict>) -> Vec<String> {
    let now = OffsetDateTime::now_utc();
    sources
        .enforcer
        .hearings()
        .await
        .into_iter()
        .filter(|h| {
            h.status == HearingStatus::Closed
                && h.closed_at.is_none_or(|c| now - c < SWEEP_FOR)
                && matches!(last.get(&h.id), None | Some(Verdict::Pending))
        })
        .map(|h| h.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_fleet::{Fleet, Input};
    use gavel_protocol::{DeviceId, DeviceMessage};

    fn device(transcribe: &str) -> DeviceRecord {
        let birth = serde_json::json!({
            "v": 1, "ts": "2026-11-27T09:00:00Z", "boot_id": "b1", "bd_seq": 0, "seq_base": 0,
            "profile": "courtroom-terminal", "firmware_version": "0.1.0", "hostname": "t",
            "placement": {"court": "hz", "room": "room-101"},
            "capabilities": [{"name": "record", "state": "running"},
                             {"name": "transcribe", "state": transcribe}],
            "keepalive_s": 10, "health_interval_s": 5
        });
        let birth = gavel_protocol::decode(&serde_json::to_vec(&birth).expect("json"))
            .expect("a valid birth");
        let id = DeviceId::new("hz-101-terminal").expect("id");
        let mut fleet = Fleet::new();
        fleet.handle(
            OffsetDateTime::now_utc(),
            Input::Message {
                device: id.clone(),
                message: DeviceMessage::Birth(birth),
            },
        );
        fleet.get(&id).expect("registered").clone()
    }

    fn hearing() -> Hearing {
        let t = time::macros::datetime!(2026-11-27 01:00 UTC);
        Hearing {
            id: "h1".into(),
            case_number: "(2026)1".into(),
            court: "hz".into(),
            room: "room-101".into(),
            scheduled_start: t,
            scheduled_end: t + time::Duration::hours(1),
            judge: "j".into(),
            parties: Vec::new(),
            status: HearingStatus::Closed,
            opened_at: None,
            closed_at: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn a_room_whose_transcriber_runs_or_failed_owes_a_transcript() {
        for (state, required) in [
            ("running", true),
            ("failed", true),
            ("unavailable", false),
            ("disabled", false),
        ] {
            let e = evidence(&hearing(), &[device(state)]);
            assert_eq!(e.transcript_required, required, "transcribe {state}");
            assert!(e.recording_devices.contains("hz-101-terminal"));
        }
        let mut elsewhere = device("running");
        elsewhere.room = Some("room-102".into());
        assert!(!evidence(&hearing(), &[elsewhere]).transcript_required);
    }
}
