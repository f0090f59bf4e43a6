//! The room shell: carries out what the schedule core decides, applies every start and
//! stop request (schedule, clerk at the terminal, controller command) to the recorder with
//! an audit event, keeps the newest schedule in the device store, and switches the
//! recording lamp to follow the recorder.
//!
//! Design: every start and stop goes through [`Room::request`], so the audit trail
//! (`recording_request` events in the outbox) is complete whoever asked, and the schedule
//! core hears of every stop.

use std::sync::Arc;

use gavel_devices::lamp::Lamp;
use gavel_link::Outbox;
use gavel_protocol::{
    EventBody, Phase, Placement, RecordingAction, RecordingState, RequestOrigin, Schedule,
};
use gavel_record::{RecordError, RecorderHandle};
use gavel_store::Store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{debug, error, info, warn};

use crate::schedule::{self, Core, Input, Output, Refused};

/// Key of the schedule in the device store.
pub const SCHEDULE_KEY: &str = "schedule";

/// A start or stop request, whoever asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: RecordingAction,
    /// The hearing; absent: the schedule's hearing due now (start) or the one recording (stop).
    pub hearing: Option<String>,
    /// Who asks (user name, or `schedule`).
    pub by: String,
    pub reason: Option<String>,
    pub via: RequestOrigin,
}

/// What the room is doing, for the clerk's terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomStatus {
    /// The hearing being recorded.
    pub hearing: Option<String>,
    pub state: RecordingState,
    /// The lamp as last switched (absent: no lamp, or never switched).
    pub lamp: Option<bool>,
    /// Version of the schedule held.
    pub schedule_version: Option<u64>,
    /// Hearings in the schedule held.
    pub scheduled_hearings: usize,
    /// The schedule's hearing due now.
    pub due: Option<String>,
}

/// Whether the lamp is on in this recorder state.
pub fn lamp_on(hearing: Option<&str>, state: RecordingState) -> bool {
    hearing.is_some()
        && matches!(
            state,
            RecordingState::Starting | RecordingState::Recording | RecordingState::Degraded
        )
}

/// The room shell.
pub struct Room {
    core: Core,
    recorder: Option<RecorderHandle>,
    lamp: Option<Box<dyn Lamp + Send>>,
    /// The lamp's state as last switched successfully.
    lamp_state: Option<bool>,
    store: Arc<Store>,
    outbox: Arc<Outbox>,
    /// The recorder as last polled.
    hearing: Option<String>,
    state: RecordingState,
    requests: u64,
}

impl Room {
    /// A room shell over the schedule kept in `store` (if any).
    pub async fn open(
        settings: schedule::Settings,
        placement: Option<Placement>,
        store: Arc<Store>,
        outbox: Arc<Outbox>,
        recorder: Option<RecorderHandle>,
        lamp: Option<Box<dyn Lamp + Send>>,
    ) -> Self {
        let s = store.clone();
        let stored = tokio::task::spawn_blocking(move || s.get_meta(SCHEDULE_KEY)).await;
        let stored = match stored {
            Ok(Ok(Some(bytes))) => match gavel_protocol::decode::<Schedule>(&bytes) {
                Ok(s) => {
                    info!(
                        version = s.version,
                        hearings = s.hearings.len(),
                        "schedule loaded from the device store"
                    );
                    Some(s)
                }
                Err(e) => {
                    error!(error = %e, "the stored schedule is unreadable; waiting for the controller's");
                    None
                }
            },
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                error!(error = %e, "reading the stored schedule failed");
                None
            }
            Err(e) => {
                error!(error = %e, "schedule load task failed");
                None
            }
        };
        Self {
            core: Core::new(settings, placement, stored),
            recorder,
            lamp,
            lamp_state: None,
            store,
            outbox,
            hearing: None,
            state: RecordingState::Idle,
            requests: 0,
        }
    }

    /// What the room is doing.
    pub fn status(&self) -> RoomStatus {
        let now = OffsetDateTime::now_utc();
        RoomStatus {
            hearing: self.hearing.clone(),
            state: self.state,
            lamp: self.lamp_state,
            schedule_version: self.core.schedule().map(|s| s.version),
            scheduled_hearings: self.core.schedule().map_or(0, |s| s.hearings.len()),
            due: self.core.due(now).map(|h| h.id.clone()),
        }
    }

    /// The room's hearings that are still to come or running, `[start − pre-roll, end)` in
    /// Unix seconds: what the OTA flow keeps clear of.
    pub fn busy(&self) -> Vec<(i64, i64)> {
        use gavel_protocol::ScheduledStatus as S;
        self.core
            .schedule()
            .map(|s| {
                s.hearings
                    .iter()
                    .filter(|h| matches!(h.status, S::Scheduled | S::InProgress))
                    .map(|h| {
                        (
                            h.start.unix_timestamp() - i64::from(h.pre_roll_s),
                            h.end.unix_timestamp(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A schedule arrived from the controller.
    pub async fn schedule(&mut self, s: Schedule) {
        let version = s.version;
        match self
            .core
            .handle(OffsetDateTime::now_utc(), Input::Schedule(s))
        {
            Ok(out) => {
                info!(version, "schedule received");
                self.carry_out(out).await;
            }
            Err(Refused::Same { .. }) => debug!(version, "schedule already held"),
            Err(e) => warn!(error = %e, "schedule refused; keeping the one held"),
        }
        self.poll().await;
    }

    /// Once a second: follow the recorder, let the schedule decide, switch the lamp.
    pub async fn tick(&mut self) {
        self.poll().await;
        if self.recorder.is_some() {
            let out = self
                .core
                .handle(OffsetDateTime::now_utc(), Input::Tick)
                .unwrap_or_default();
            self.carry_out(out).await;
        }
        self.follow_lamp().await;
    }

    /// Reads the recorder's state and tells the core.
    async fn poll(&mut self) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        match recorder.state().await {
            Ok((hearing, state)) => {
                let hearing = hearing.filter(|_| state != RecordingState::Idle);
                self.hearing = hearing.clone();
                self.state = state;
                let out = self
                    .core
                    .handle(OffsetDateTime::now_utc(), Input::Recorder { hearing })
                    .unwrap_or_default();
                Box::pin(self.carry_out(out)).await;
            }
            Err(e) => debug!(error = %e, "recorder state unavailable"),
        }
    }

    async fn carry_out(&mut self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Store(s) => {
                    let store = self.store.clone();
                    let bytes = gavel_protocol::encode(&s);
                    let saved =
                        tokio::task::spawn_blocking(move || store.put_meta(SCHEDULE_KEY, &bytes))
                            .await;
                    match saved {
                        Ok(Ok(())) => debug!(version = s.version, "schedule stored"),
                        Ok(Err(e)) => error!(error = %e, "storing the schedule failed"),
                        Err(e) => error!(error = %e, "schedule store task failed"),
                    }
                }
                Output::Start { hearing, reason } => {
                    let request = Request {
                        action: RecordingAction::Start,
                        hearing: Some(hearing.clone()),
                        by: schedule::BY_SCHEDULE.into(),
                        reason: Some(reason),
                        via: RequestOrigin::Schedule,
                    };
                    if let Err(RecordError::HearingEnded(_)) = self.apply(request).await {
                        let out = self
                            .core
                            .handle(OffsetDateTime::now_utc(), Input::Ended { hearing })
                            .unwrap_or_default();
                        Box::pin(self.carry_out(out)).await;
                    }
                }
                Output::Stop { hearing, reason } => {
                    let request = Request {
                        action: RecordingAction::Stop,
                        hearing: Some(hearing),
                        by: schedule::BY_SCHEDULE.into(),
                        reason: Some(reason),
                        via: RequestOrigin::Schedule,
                    };
                    let _ = self.apply(request).await;
                }
            }
        }
    }

    /// Applies a start or stop request from anyone; answers with the recorder's state.
    pub async fn request(&mut self, request: Request) -> Result<RecordingState, String> {
        let result = self.apply(request).await.map_err(|e| e.to_string());
        self.poll().await;
        self.follow_lamp().await;
        result
    }

    async fn apply(&mut self, request: Request) -> Result<RecordingState, RecordError> {
        let now = OffsetDateTime::now_utc();
        let hearing = match (&request.hearing, request.action) {
            (Some(h), _) => h.clone(),
            (None, RecordingAction::Start) => match self.core.due(now) {
                Some(h) => h.id.clone(),
                None => {
                    return Err(RecordError::BadHearingId(
                        "none given, and no scheduled hearing is due now".into(),
                    ));
                }
            },
            (None, RecordingAction::Stop) => match &self.hearing {
                Some(h) => h.clone(),
                None => {
                    return Err(RecordError::BadHearingId(
                        "none given, and nothing is being recorded".into(),
                    ));
                }
            },
        };
        gavel_protocol::check_hearing_id(&hearing)
            .map_err(|e| RecordError::BadHearingId(format!("{hearing:?}: {}", e.reason)))?;
        let result = match &self.recorder {
            None => Err(RecordError::Pipeline("this device does not record".into())),
            Some(r) => match request.action {
                RecordingAction::Start => {
                    r.start(&hearing, request.reason.clone(), Some(request.by.clone()))
                        .await
                }
                RecordingAction::Stop => r.stop(&hearing).await,
            },
        };
        // Design: a scheduled start the recorder refuses as already stopped is no request
        // anyone made (it happens once per boot for such a hearing): not audited.
        let refused_as_ended = matches!(result, Err(RecordError::HearingEnded(_)))
            && request.via == RequestOrigin::Schedule;
        if !refused_as_ended {
            self.audit(&hearing, &request, result.as_ref().err()).await;
        }
        match &result {
            Ok(state) => {
                info!(%hearing, action = ?request.action, by = %request.by, via = ?request.via, reason = ?request.reason, ?state, "recording request carried out")
            }
            Err(RecordError::HearingEnded(_)) if request.via == RequestOrigin::Schedule => {
                info!(%hearing, "scheduled hearing already recorded and stopped on this device; not started again")
            }
            Err(e) => {
                warn!(%hearing, action = ?request.action, by = %request.by, via = ?request.via, error = %e, "recording request failed")
            }
        }
        result
    }

    /// The audit record of a request: who, why, through what, and what came of it.
    async fn audit(&mut self, hearing: &str, request: &Request, error: Option<&RecordError>) {
        self.requests += 1;
        let id = format!(
            "req-{hearing}-{}-{}",
            OffsetDateTime::now_utc().unix_timestamp(),
            self.requests
        );
        let body = EventBody::RecordingRequest {
            hearing_id: hearing.to_owned(),
            action: request.action,
            by: request.by.chars().take(gavel_protocol::MAX_TEXT).collect(),
            reason: request
                .reason
                .as_ref()
                .map(|r| r.chars().take(gavel_protocol::MAX_TEXT).collect()),
            via: request.via,
            error: error.map(|e| {
                e.to_string()
                    .chars()
                    .take(gavel_protocol::MAX_TEXT)
                    .collect()
            }),
        };
        if let Err(e) = self.outbox.emit(id, Phase::End, body).await {
            error!(error = %e, "storing the audit record of a recording request failed");
        }
    }

    /// Switches the lamp when the recorder's state calls for it.
    async fn follow_lamp(&mut self) {
        let want = lamp_on(self.hearing.as_deref(), self.state);
        if self.lamp_state == Some(want) {
            return;
        }
        let Some(mut lamp) = self.lamp.take() else {
            return;
        };
        let switched = tokio::task::spawn_blocking(move || {
            let r = lamp.set(want);
            (lamp, r)
        })
        .await;
        match switched {
            Ok((lamp, result)) => {
                self.lamp = Some(lamp);
                match result {
                    Ok(()) => {
                        info!(on = want, "recording lamp follows the recorder");
                        self.lamp_state = Some(want);
                    }
                    Err(e) => {
                        warn!(error = %e, on = want, "switching the recording lamp failed; trying again")
                    }
                }
            }
            Err(e) => error!(error = %e, "lamp task failed; the lamp is given up"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lamp_is_on_exactly_while_a_hearing_records() {
        use RecordingState::*;
        assert!(lamp_on(Some("h"), Starting));
        assert!(lamp_on(Some("h"), Recording));
        assert!(lamp_on(Some("h"), Degraded));
        assert!(!lamp_on(Some("h"), Stopping));
        assert!(!lamp_on(Some("h"), Idle));
        assert!(!lamp_on(None, Recording));
    }
}
