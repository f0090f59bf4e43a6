//! The task that owns the enforcement engine: feeds it hearings, device presence and
//! health and a 1 s tick; persists hearings and alarms; pushes alarm changes to dashboards.
//!
//! Design: every change of a hearing's schedule (import, create, move, cancel) arrives as
//! one request, [`EnforcerHandle::upsert`], is checked by the pure
//! [`gavel_fleet::hearings::book`] rules against the hearings this task owns, and then goes
//! through [`commit`]: stored, remembered, handed to the engine. Opening and closing go
//! through `commit` too. Whatever else must follow a schedule change (the push of a room's
//! schedule to its devices) belongs in `commit`.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use gavel_fleet::enforcement::{Alarm, Engine, Input, Output};
use gavel_fleet::hearings::book::{self, Change, ChangeError};
use gavel_fleet::hearings::{Hearing, HearingStatus};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::fleet_actor::Push;
use crate::metrics::Metrics;
use crate::schedules::SchedulePublisher;
use crate::store::Store;

enum Request {
    Input(Input),
    /// A schedule change; answered with the changed hearings after they are stored.
    Upsert(Change, oneshot::Sender<Result<Vec<Hearing>, UpsertError>>),
    Hearings(oneshot::Sender<Vec<Hearing>>),
    Alarms(oneshot::Sender<Vec<Alarm>>),
}

/// Why a schedule change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpsertError {
    #[error(transparent)]
    Refused(#[from] ChangeError),
    /// Checked and valid, but the database refused it; nothing changed.
    #[error("storing hearings failed: {0}")]
    Store(String),
    #[error("the enforcement task has stopped")]
    Stopped,
}

/// Cloneable handle to the enforcement task.
#[derive(Clone)]
pub struct EnforcerHandle {
    tx: mpsc::Sender<Request>,
}

impl EnforcerHandle {
    /// Hands an input to the engine (presence, health, open/close, ack/resolve).
    pub async fn input(&self, input: Input) {
        let _ = self.tx.send(Request::Input(input)).await;
    }

    /// Like [`EnforcerHandle::input`] but never waits (for the fleet task's hot path).
    pub fn try_input(&self, input: Input) {
        if self.tx.try_send(Request::Input(input)).is_err() {
            warn!("enforcement queue full; an input was dropped");
        }
    }

    /// Checks a schedule change against the known hearings, stores the changed hearings
    /// and enforces them from now on. Returns them (an import leaves out unchanged ones).
    pub async fn upsert(&self, change: Change) -> Result<Vec<Hearing>, UpsertError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Upsert(change, tx)).await.is_err() {
            return Err(UpsertError::Stopped);
        }
        rx.await.unwrap_or(Err(UpsertError::Stopped))
    }

    /// One hearing.
    pub async fn hearing(&self, id: &str) -> Option<Hearing> {
        self.hearings().await.into_iter().find(|h| h.id == id)
    }

    pub async fn hearings(&self) -> Vec<Hearing> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Hearings(tx)).await;
        rx.await.unwrap_or_default()
    }

    /// Open alarms.
    pub async fn alarms(&self) -> Vec<Alarm> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Alarms(tx)).await;
        rx.await.unwrap_or_default()
    }
}

/// Starts the enforcement task with the stored hearings. Every change of a room's
/// hearings is announced to `schedules` (the devices' schedules follow).
pub fn spawn(
    engine: Engine,
    hearings: Vec<Hearing>,
    store: Store,
    push: broadcast::Sender<Push>,
    metrics: Arc<Metrics>,
    schedules: SchedulePublisher,
    shutdown: CancellationToken,
) -> (EnforcerHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(8192);
    let task = tokio::spawn(run(
        engine, hearings, store, push, metrics, schedules, rx, shutdown,
    ));
    (EnforcerHandle { tx }, task)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut engine: Engine,
    hearings: Vec<Hearing>,
    store: Store,
    push: broadcast::Sender<Push>,
    metrics: Arc<Metrics>,
    schedules: SchedulePublisher,
    mut rx: mpsc::Receiver<Request>,
    shutdown: CancellationToken,
) {
    let mut known: BTreeMap<String, Hearing> = Default::default();
    for h in hearings {
        engine.handle(OffsetDateTime::now_utc(), Input::Hearing(h.clone()));
        known.insert(h.id.clone(), h);
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let out = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => engine.handle(OffsetDateTime::now_utc(), Input::Tick),
            request = rx.recv() => match request {
                None => break,
                Some(Request::Input(input)) => {
                    let mut out = Vec::new();
                    if let Input::Opened { hearing, .. } | Input::Closed { hearing } = &input
                        && let Some(h) = known.get(hearing)
                    {
                        let mut h = h.clone();
                        let now = OffsetDateTime::now_utc();
                        if matches!(input, Input::Opened { .. }) {
                            h.status = HearingStatus::InProgress;
                            h.opened_at.get_or_insert(now);
                        } else {
                            h.status = HearingStatus::Closed;
                            h.closed_at.get_or_insert(now);
                        }
                        if let Err(e) = commit(vec![h], &store, &mut known, &mut engine, &schedules, &mut out).await {
                            warn!(error = %e, "saving a hearing failed");
                        }
                    }
                    out.extend(engine.handle(OffsetDateTime::now_utc(), input));
                    out
                }
                Some(Request::Upsert(change, reply)) => {
                    let mut out = Vec::new();
                    let result = match book::apply(&known, change, OffsetDateTime::now_utc()) {
                        Ok(changed) => commit(changed.clone(), &store, &mut known, &mut engine, &schedules, &mut out)
                            .await
                            .map(|()| changed)
                            .map_err(|e| UpsertError::Store(e.to_string())),
                        Err(e) => Err(e.into()),
                    };
                    let _ = reply.send(result);
                    out
                }
                Some(Request::Hearings(reply)) => {
                    let _ = reply.send(known.values().cloned().collect());
                    continue;
                }
                Some(Request::Alarms(reply)) => {
                    let _ = reply.send(engine.open().cloned().collect());
                    continue;
                }
            },
        };
        if out.is_empty() {
            continue;
        }
        let mut changed = Vec::new();
        for o in out {
            let (what, alarm) = match o {
                Output::Raised(a) => {
                    metrics.alarms_raised.inc();
                    warn!(alarm = %a.id, kind = ?a.kind, level = a.level, message = %a.message, "alarm raised");
                    ("raised", a)
                }
                Output::Updated(a) => ("updated", a),
                Output::Cleared(a) => {
                    info!(alarm = %a.id, by = ?a.resolved.as_ref().map(|r| &r.by), "alarm closed");
                    ("cleared", a)
                }
            };
            let _ = push.send(Push::Alarm {
                change: what,
                alarm: Box::new(alarm.clone()),
            });
            changed.push(alarm);
        }
        metrics.alarms_open.set(engine.open().count() as i64);
        if let Err(e) = store.save_alarms(&changed).await {
            metrics.store_errors.inc();
            warn!(error = %e, "saving alarms failed");
        }
    }
}

/// The one place a changed hearing goes: stored (all in one transaction), remembered and
/// handed to the engine, whose outputs are added to `out`. Nothing is remembered or
/// enforced when storing fails.
async fn commit(
    changed: Vec<Hearing>,
    store: &Store,
    known: &mut BTreeMap<String, Hearing>,
    engine: &mut Engine,
    schedules: &SchedulePublisher,
    out: &mut Vec<Output>,
) -> Result<(), crate::store::StoreError> {
    if changed.is_empty() {
        return Ok(());
    }
    store.save_hearings(&changed).await?;
    // Rooms whose schedule changed: the new room of each hearing and, for a move, the old.
    let mut rooms = std::collections::BTreeSet::new();
    for h in changed {
        info!(hearing = %h.id, status = ?h.status, start = %gavel_protocol::rfc3339(h.scheduled_start), room = %h.room, "hearing stored");
        if let Some(old) = known.get(&h.id) {
            rooms.insert((old.court.clone(), old.room.clone()));
        }
        rooms.insert((h.court.clone(), h.room.clone()));
        known.insert(h.id.clone(), h.clone());
        out.extend(engine.handle(OffsetDateTime::now_utc(), Input::Hearing(h)));
    }
    // The devices of each room get its new schedule.
    for (court, room) in &rooms {
        schedules.hearings_changed(court, room);
    }
    Ok(())
}
