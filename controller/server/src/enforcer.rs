//! The task that owns the enforcement engine: feeds it hearings, device presence and
//! health and a 1 s tick; persists hearings and alarms; pushes alarm changes to dashboards.

use std::sync::Arc;
use std::time::Duration;

use gavel_fleet::enforcement::{Alarm, Engine, Input, Output};
use gavel_fleet::hearings::Hearing;
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
    /// Hearings to import; answered after they are stored.
    Import(Vec<Hearing>, oneshot::Sender<Result<usize, String>>),
    Hearings(oneshot::Sender<Vec<Hearing>>),
    Alarms(oneshot::Sender<Vec<Alarm>>),
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

    /// Stores hearings and starts enforcing them.
    pub async fn import(&self, hearings: Vec<Hearing>) -> Result<usize, String> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Import(hearings, tx)).await;
        rx.await
            .unwrap_or_else(|_| Err("enforcement task stopped".into()))
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
    let mut known: std::collections::BTreeMap<String, Hearing> = Default::default();
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
                    if let Input::Opened { hearing, .. } | Input::Closed { hearing } = &input
                        && let Some(h) = known.get_mut(hearing)
                    {
                        h.status = if matches!(input, Input::Opened { .. }) {
                            gavel_fleet::hearings::HearingStatus::InProgress
                        } else {
                            gavel_fleet::hearings::HearingStatus::Closed
                        };
                        if let Err(e) = store.save_hearings(std::slice::from_ref(h)).await {
                            warn!(error = %e, "saving a hearing failed");
                        }
                        schedules.hearings_changed(&h.court, &h.room);
                    }
                    engine.handle(OffsetDateTime::now_utc(), input)
                }
                Some(Request::Import(list, reply)) => {
                    let result = store.save_hearings(&list).await.map(|()| list.len()).map_err(|e| e.to_string());
                    let mut out = Vec::new();
                    if result.is_ok() {
                        info!(hearings = list.len(), "hearings imported");
                        let rooms: std::collections::BTreeSet<(String, String)> =
                            list.iter().map(|h| (h.court.clone(), h.room.clone())).collect();
                        for h in list {
                            known.insert(h.id.clone(), h.clone());
                            out.extend(engine.handle(OffsetDateTime::now_utc(), Input::Hearing(h)));
                        }
                        // The devices of each room get its new schedule.
                        for (court, room) in &rooms {
                            schedules.hearings_changed(court, room);
                        }
                    }
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
