//! The recording state machine, sans I/O.
//!
//! One [`Core`] per device: it owns the state of the hearing being recorded and of each
//! of its sources, and decides when pipelines start, stop and restart. It never reads the
//! clock or touches GStreamer: the shell passes the time ([`Now`]) with every [`Input`] and
//! carries out the returned [`Output`]s.
//!
//! ```text
//!            Start                 every source has data
//!   Idle ───────────▶ Starting ─────────────────────────▶ Recording
//!    ▲                   │  a source failed / stalled        │  ▲
//!    │                   ▼                                   ▼  │ lost source back
//!    │               Degraded ◀──────────────────────────────┘  │
//!    │                   └──────────────────────────────────────┘
//!    │   all pipelines closed            Stop (from any state)
//!    └──────────────────────── Stopping ◀──────────────
//! ```
//!
//! Design: the hearing's state is derived from its sources' states after every input, so
//! it cannot disagree with them; every change of the derived state is one `Recording`
//! event, and every loss and recovery of a source is a `SourceLost` start/end pair and a
//! [`Gap`] with its span on the hearing's timeline.

use std::collections::BTreeMap;
use std::time::Duration;

use gavel_evidence::Gap;
use gavel_protocol::{EventBody, Phase, RecordingState};
use time::OffsetDateTime;

/// The time of an input: a monotonic reading and the wall clock at that reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time since an arbitrary epoch fixed for the process.
    pub mono: Duration,
    /// Wall-clock time at `mono`.
    pub wall: OffsetDateTime,
}

impl Now {
    /// The wall-clock time of an earlier (or later) monotonic reading.
    pub fn wall_of(&self, mono: Duration) -> OffsetDateTime {
        if mono <= self.mono {
            self.wall - (self.mono - mono)
        } else {
            self.wall + (mono - self.mono)
        }
    }
}

/// Timing settings of the core (defaults suit real cameras).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreSettings {
    /// A running source without data for this long is lost.
    pub stall_timeout: Duration,
    /// A source that has produced no data this long after its pipeline started is lost.
    pub connect_timeout: Duration,
    /// First restart delay after a loss; doubles per failed attempt.
    pub backoff_min: Duration,
    /// Longest restart delay. Short by design: every second a returned camera waits for
    /// the next try is a second of the hearing not recorded, and a failed RTSP connect
    /// costs next to nothing.
    pub backoff_max: Duration,
    /// How long a stop waits for pipelines to close their segments before tearing down.
    pub drain_timeout: Duration,
}

impl Default for CoreSettings {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// What happens to the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Start recording `hearing_id` from `sources`.
    Start {
        hearing_id: String,
        sources: Vec<String>,
        /// Resuming a hearing after a recorder crash: its wall-clock start and, per source,
        /// where its recorded media ends on the timeline (a gap opens from there).
        resume: Option<Resume>,
    },
    /// Stop the recording.
    Stop,
    /// Data flows in a source's pipeline: first and latest buffer times (monotonic) of the
    /// current pipeline.
    Data {
        source: String,
        first: Duration,
        last: Duration,
    },
    /// A source's pipeline failed (error, unexpected end of stream).
    Failed { source: String, error: String },
    /// A pipeline asked to drain has closed its last segment and stopped.
    Drained { source: String },
    /// Periodic tick (the shell sends one at least every 250 ms).
    Tick,
}

/// A hearing being resumed after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Wall-clock start of the hearing.
    pub started: OffsetDateTime,
    /// Per source, end of its recorded media on the timeline, nanoseconds.
    pub ends_ns: BTreeMap<String, u64>,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Start (or restart) the source's pipeline.
    StartPipeline { source: String },
    /// Stop the source's pipeline: `drain` closes its open segment cleanly and reports
    /// [`Input::Drained`]; otherwise tear it down at once (nothing is reported).
    StopPipeline { source: String, drain: bool },
    /// Send this event on the durable link.
    Event {
        id: String,
        phase: Phase,
        body: EventBody,
    },
    /// A gap opened or closed: record it (same `source` and `from_ns` identify it).
    Gap(Gap),
    /// Recording has stopped: write the final manifest.
    Finished {
        hearing_id: String,
        ended: OffsetDateTime,
    },
}

/// State of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase2 {
    /// Pipeline started, no data yet.
    Connecting { since: Duration },
    /// Data flows.
    Running { last: Duration },
    /// No pipeline; the next start is due at `retry_at`.
    Waiting { retry_at: Duration },
    /// Draining on stop.
    Draining,
    /// Closed.
    Stopped,
}

/// A source of the hearing.
#[derive(Debug, Clone)]
struct Slot {
    phase: Phase2,
    /// Failed starts since the source last had data.
    attempts: u32,
    /// The open gap, while the source is lost.
    gap: Option<Gap>,
    /// Losses so far (for event ids).
    losses: u32,
}

/// The hearing being recorded.
#[derive(Debug, Clone)]
struct Hearing {
    id: String,
    /// Monotonic time of the timeline's zero.
    t0: Duration,
    /// Wall-clock start.
    started: OffsetDateTime,
    sources: BTreeMap<String, Slot>,
    /// Set when stopping, with the time the stop began.
    stopping: Option<Duration>,
    /// Last reported state.
    state: RecordingState,
}

/// The recording state machine.
#[derive(Debug, Clone, Default)]
pub struct Core {
    settings: CoreSettings,
    hearing: Option<Hearing>,
}

/// Why the core refused an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// Another hearing is being recorded.
    #[error("hearing {0} is being recorded")]
    HearingInProgress(String),
    /// Nothing is being recorded.
    #[error("no hearing is being recorded")]
    NotRecording,
    /// A hearing needs at least one source.
    #[error("no source to record")]
    NoSources,
}

impl Core {
    /// A core with `settings`.
    pub fn new(settings: CoreSettings) -> Self {
        Self {
            settings,
            hearing: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> RecordingState {
        self.hearing
            .as_ref()
            .map_or(RecordingState::Idle, |h| h.state)
    }

    /// The hearing being recorded.
    pub fn hearing_id(&self) -> Option<&str> {
        self.hearing.as_ref().map(|h| h.id.as_str())
    }

    /// The timeline position of a monotonic time in the current hearing, nanoseconds.
    pub fn offset_ns(&self, mono: Duration) -> Option<u64> {
        self.hearing
            .as_ref()
            .map(|h| mono.saturating_sub(h.t0).as_nanos() as u64)
    }

    /// Applies `input` at `now`.
    pub fn handle(&mut self, now: Now, input: Input) -> Result<Vec<Output>, CoreError> {
        let mut out = Vec::new();
        match input {
            Input::Start {
                hearing_id,
                sources,
                resume,
            } => {
                if let Some(h) = &self.hearing {
                    if h.id == hearing_id && h.stopping.is_none() {
                        return Ok(out);
                    }
                    return Err(CoreError::HearingInProgress(h.id.clone()));
                }
                if sources.is_empty() {
                    return Err(CoreError::NoSources);
                }
                let (t0, started) = match &resume {
                    Some(r) => {
                        let behind = (now.wall - r.started).unsigned_abs();
                        (now.mono.saturating_sub(behind), r.started)
                    }
                    None => (now.mono, now.wall),
                };
                let mut slots = BTreeMap::new();
                for s in &sources {
                    let gap = resume.as_ref().map(|r| {
                        let from_ns = r.ends_ns.get(s).copied().unwrap_or(0);
                        Gap {
                            source: s.clone(),
                            from_ns,
                            to_ns: None,
                            wall_from: started + Duration::from_nanos(from_ns),
                            wall_to: None,
                            reason: "recorder restarted".into(),
                        }
                    });
                    if let Some(g) = &gap {
                        out.push(Output::Gap(g.clone()));
                    }
                    slots.insert(
                        s.clone(),
                        Slot {
                            phase: Phase2::Connecting { since: now.mono },
                            attempts: 0,
                            gap,
                            losses: 0,
                        },
                    );
                    out.push(Output::StartPipeline { source: s.clone() });
                }
                self.hearing = Some(Hearing {
                    id: hearing_id.clone(),
                    t0,
                    started,
                    sources: slots,
                    stopping: None,
                    state: RecordingState::Starting,
                });
                out.push(Output::Event {
                    id: event_id(&hearing_id),
                    phase: Phase::Start,
                    body: EventBody::Recording {
                        hearing_id,
                        state: RecordingState::Starting,
                        sources,
                        lost: vec![],
                        detail: resume.map(|_| "resumed after a recorder restart".into()),
                    },
                });
            }
            Input::Stop => {
                let h = self.hearing.as_mut().ok_or(CoreError::NotRecording)?;
                if h.stopping.is_some() {
                    return Ok(out);
                }
                h.stopping = Some(now.mono);
                for (id, slot) in h.sources.iter_mut() {
                    match slot.phase {
                        Phase2::Connecting { .. } | Phase2::Running { .. } => {
                            slot.phase = Phase2::Draining;
                            out.push(Output::StopPipeline {
                                source: id.clone(),
                                drain: true,
                            });
                        }
                        Phase2::Waiting { .. } => slot.phase = Phase2::Stopped,
                        Phase2::Draining | Phase2::Stopped => {}
                    }
                }
            }
            Input::Data {
                source,
                first,
                last,
            } => {
                let Some(h) = self.hearing.as_mut() else {
                    return Ok(out);
                };
                let (hid, t0) = (h.id.clone(), h.t0);
                let Some(slot) = h.sources.get_mut(&source) else {
                    return Ok(out);
                };
                match slot.phase {
                    Phase2::Connecting { .. } => {
                        slot.phase = Phase2::Running { last };
                        slot.attempts = 0;
                        if let Some(mut gap) = slot.gap.take() {
                            gap.to_ns = Some(first.saturating_sub(t0).as_nanos() as u64);
                            gap.wall_to = Some(now.wall_of(first));
                            out.push(Output::Event {
                                id: lost_id(&hid, &source, slot.losses),
                                phase: Phase::End,
                                body: EventBody::SourceLost {
                                    hearing_id: hid.clone(),
                                    source: source.clone(),
                                    lost_at: gap.wall_from,
                                    recovered_at: gap.wall_to,
                                    detail: None,
                                },
                            });
                            out.push(Output::Gap(gap));
                        }
                    }
                    Phase2::Running { last: prev } => {
                        slot.phase = Phase2::Running {
                            last: last.max(prev),
                        }
                    }
                    _ => {}
                }
            }
            Input::Failed { source, error } => {
                self.lose(now, &source, &error, None, &mut out);
            }
            Input::Drained { source } => {
                if let Some(slot) = self
                    .hearing
                    .as_mut()
                    .and_then(|h| h.sources.get_mut(&source))
                    && slot.phase == Phase2::Draining
                {
                    slot.phase = Phase2::Stopped;
                }
            }
            Input::Tick => {
                let Some(h) = self.hearing.as_mut() else {
                    return Ok(out);
                };
                if let Some(since) = h.stopping {
                    if now.mono.saturating_sub(since) >= self.settings.drain_timeout {
                        for (id, slot) in h.sources.iter_mut() {
                            if slot.phase == Phase2::Draining {
                                slot.phase = Phase2::Stopped;
                                out.push(Output::StopPipeline {
                                    source: id.clone(),
                                    drain: false,
                                });
                            }
                        }
                    }
                } else {
                    let mut lost = Vec::new();
                    for (id, slot) in h.sources.iter_mut() {
                        match slot.phase {
                            Phase2::Running { last }
                                if now.mono.saturating_sub(last) >= self.settings.stall_timeout =>
                            {
                                lost.push((id.clone(), "no data (stalled)", Some(last)));
                            }
                            Phase2::Connecting { since }
                                if now.mono.saturating_sub(since)
                                    >= self.settings.connect_timeout =>
                            {
                                lost.push((id.clone(), "no data after connecting", None));
                            }
                            Phase2::Waiting { retry_at } if now.mono >= retry_at => {
                                slot.phase = Phase2::Connecting { since: now.mono };
                                out.push(Output::StartPipeline { source: id.clone() });
                            }
                            _ => {}
                        }
                    }
                    for (id, why, last) in lost {
                        self.lose(now, &id, why, last, &mut out);
                    }
                }
            }
        }
        self.settle(now, &mut out);
        Ok(out)
    }

    /// Marks `source` lost: tears its pipeline down, opens a gap and schedules a restart.
    fn lose(
        &mut self,
        now: Now,
        source: &str,
        why: &str,
        last_data: Option<Duration>,
        out: &mut Vec<Output>,
    ) {
        let settings = self.settings.clone();
        let Some(h) = self.hearing.as_mut() else {
            return;
        };
        let (hid, t0) = (h.id.clone(), h.t0);
        let stopping = h.stopping.is_some();
        let Some(slot) = h.sources.get_mut(source) else {
            return;
        };
        let last = match slot.phase {
            Phase2::Running { last } => last_data.unwrap_or(last),
            Phase2::Connecting { .. } => now.mono,
            Phase2::Draining => {
                // A pipeline failing while it drains has closed what it could.
                slot.phase = Phase2::Stopped;
                out.push(Output::StopPipeline {
                    source: source.to_owned(),
                    drain: false,
                });
                return;
            }
            Phase2::Waiting { .. } | Phase2::Stopped => return,
        };
        out.push(Output::StopPipeline {
            source: source.to_owned(),
            drain: false,
        });
        if stopping {
            slot.phase = Phase2::Stopped;
            return;
        }
        let delay = settings
            .backoff_min
            .saturating_mul(1u32 << slot.attempts.min(16))
            .min(settings.backoff_max);
        slot.attempts = slot.attempts.saturating_add(1);
        slot.phase = Phase2::Waiting {
            retry_at: now.mono + delay,
        };
        if slot.gap.is_none() {
            slot.losses += 1;
            let gap = Gap {
                source: source.to_owned(),
                from_ns: last.saturating_sub(t0).as_nanos() as u64,
                to_ns: None,
                wall_from: now.wall_of(last),
                wall_to: None,
                reason: why.to_owned(),
            };
            out.push(Output::Event {
                id: lost_id(&hid, source, slot.losses),
                phase: Phase::Start,
                body: EventBody::SourceLost {
                    hearing_id: hid.clone(),
                    source: source.to_owned(),
                    lost_at: gap.wall_from,
                    recovered_at: None,
                    detail: Some(why.to_owned()),
                },
            });
            out.push(Output::Gap(gap.clone()));
            slot.gap = Some(gap);
        }
    }

    /// Recomputes the hearing's state from its sources and reports a change.
    fn settle(&mut self, now: Now, out: &mut Vec<Output>) {
        let Some(h) = self.hearing.as_mut() else {
            return;
        };
        let all_stopped = h.sources.values().all(|s| s.phase == Phase2::Stopped);
        if h.stopping.is_some() && all_stopped {
            // Close the gaps of sources that never came back: they end with the hearing.
            let end_ns = now.mono.saturating_sub(h.t0).as_nanos() as u64;
            for slot in h.sources.values_mut() {
                if let Some(mut gap) = slot.gap.take() {
                    gap.to_ns = Some(end_ns);
                    gap.wall_to = Some(now.wall);
                    out.push(Output::Gap(gap));
                }
            }
            let id = h.id.clone();
            let sources = h.sources.keys().cloned().collect();
            self.hearing = None;
            out.push(Output::Event {
                id: event_id(&id),
                phase: Phase::End,
                body: EventBody::Recording {
                    hearing_id: id.clone(),
                    state: RecordingState::Idle,
                    sources,
                    lost: vec![],
                    detail: None,
                },
            });
            out.push(Output::Finished {
                hearing_id: id,
                ended: now.wall,
            });
            return;
        }
        let lost: Vec<String> = h
            .sources
            .iter()
            .filter(|(_, s)| s.gap.is_some() && s.phase != Phase2::Stopped)
            .map(|(id, _)| id.clone())
            .collect();
        let state = if h.stopping.is_some() {
            RecordingState::Stopping
        } else if h
            .sources
            .values()
            .all(|s| matches!(s.phase, Phase2::Running { .. }))
        {
            RecordingState::Recording
        } else if h
            .sources
            .values()
            .any(|s| matches!(s.phase, Phase2::Waiting { .. }))
            || (h.state != RecordingState::Starting && !lost.is_empty())
        {
            RecordingState::Degraded
        } else {
            h.state
        };
        if state != h.state {
            h.state = state;
            out.push(Output::Event {
                id: event_id(&h.id),
                phase: Phase::Update,
                body: EventBody::Recording {
                    hearing_id: h.id.clone(),
                    state,
                    sources: h.sources.keys().cloned().collect(),
                    detail: (!lost.is_empty()).then(|| format!("lost: {}", lost.join(", "))),
                    lost,
                },
            });
        }
    }

    /// Wall-clock start of the current hearing.
    pub fn started(&self) -> Option<OffsetDateTime> {
        self.hearing.as_ref().map(|h| h.started)
    }
}

fn event_id(hearing: &str) -> String {
    format!("rec-{hearing}")
}

fn lost_id(hearing: &str, source: &str, n: u32) -> String {
    format!("lost-{hearing}-{source}-{n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const S: Duration = Duration::from_secs(1);

    fn at(secs: f64) -> Now {
        let d = Duration::from_secs_f64(secs);
        Now {
            mono: Duration::from_secs(1000) + d,
            wall: datetime!(2026-11-27 09:30 UTC) + d,
        }
    }

    fn mono(secs: f64) -> Duration {
        at(secs).mono
    }

    fn start(core: &mut Core, sources: &[&str]) -> Vec<Output> {
        core.handle(
            at(0.0),
            Input::Start {
                hearing_id: "h1".into(),
                sources: sources.iter().map(|s| s.to_string()).collect(),
                resume: None,
            },
        )
        .expect("start")
    }

    fn data(core: &mut Core, t: f64, source: &str, first: f64) -> Vec<Output> {
        core.handle(
            at(t),
            Input::Data {
                source: source.into(),
                first: mono(first),
                last: mono(t),
            },
        )
        .expect("data")
    }

    fn states(out: &[Output]) -> Vec<RecordingState> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event {
                    body: EventBody::Recording { state, .. },
                    ..
                } => Some(*state),
                _ => None,
            })
            .collect()
    }

    fn gaps(out: &[Output]) -> Vec<Gap> {
        out.iter()
            .filter_map(|o| match o {
                Output::Gap(g) => Some(g.clone()),
                _ => None,
            })
            .collect()
    }

    fn recording(core: &mut Core) {
        start(core, &["a", "b"]);
        data(core, 0.5, "a", 0.4);
        data(core, 0.5, "b", 0.4);
        assert_eq!(core.state(), RecordingState::Recording);
    }

    #[test]
    fn start_launches_every_pipeline_and_reports_starting() {
        let mut core = Core::default();
        let out = start(&mut core, &["a", "b"]);
        assert!(out.contains(&Output::StartPipeline { source: "a".into() }));
        assert!(out.contains(&Output::StartPipeline { source: "b".into() }));
        assert_eq!(states(&out), [RecordingState::Starting]);
        assert_eq!(core.state(), RecordingState::Starting);
    }

    #[test]
    fn recording_is_reported_once_every_source_has_data() {
        let mut core = Core::default();
        start(&mut core, &["a", "b"]);
        assert!(states(&data(&mut core, 0.5, "a", 0.4)).is_empty());
        assert_eq!(
            states(&data(&mut core, 0.6, "b", 0.5)),
            [RecordingState::Recording]
        );
        assert!(states(&data(&mut core, 0.7, "b", 0.5)).is_empty());
    }

    #[test]
    fn a_second_hearing_is_refused_while_one_is_recorded_and_a_repeat_start_is_harmless() {
        let mut core = Core::default();
        recording(&mut core);
        let again = core.handle(
            at(1.0),
            Input::Start {
                hearing_id: "h1".into(),
                sources: vec!["a".into()],
                resume: None,
            },
        );
        assert_eq!(again, Ok(vec![]));
        let other = core.handle(
            at(1.0),
            Input::Start {
                hearing_id: "h2".into(),
                sources: vec!["a".into()],
                resume: None,
            },
        );
        assert_eq!(other, Err(CoreError::HearingInProgress("h1".into())));
    }

    #[test]
    fn a_failed_source_degrades_the_hearing_opens_a_gap_and_restarts_with_backoff() {
        let mut core = Core::default();
        recording(&mut core);
        data(&mut core, 10.0, "a", 0.4);
        data(&mut core, 10.0, "b", 0.4);
        let out = core
            .handle(
                at(10.2),
                Input::Failed {
                    source: "a".into(),
                    error: "connection closed".into(),
                },
            )
            .expect("failed");
        assert!(out.contains(&Output::StopPipeline {
            source: "a".into(),
            drain: false
        }));
        assert_eq!(states(&out), [RecordingState::Degraded]);
        let g = gaps(&out);
        assert_eq!(g.len(), 1);
        assert_eq!(
            g[0].from_ns,
            10 * S.as_nanos() as u64,
            "gap starts at the last data"
        );
        assert_eq!(g[0].to_ns, None);

        // 0.5 s backoff: nothing before, a restart after.
        assert!(core.handle(at(10.6), Input::Tick).expect("tick").is_empty());
        let out = core.handle(at(10.75), Input::Tick).expect("tick");
        assert_eq!(out, [Output::StartPipeline { source: "a".into() }]);

        // It fails again: the next delay is 1 s.
        core.handle(
            at(10.8),
            Input::Failed {
                source: "a".into(),
                error: "refused".into(),
            },
        )
        .expect("failed");
        assert!(core.handle(at(11.7), Input::Tick).expect("tick").is_empty());
        assert_eq!(
            core.handle(at(11.85), Input::Tick).expect("tick"),
            [Output::StartPipeline { source: "a".into() }]
        );

        // Back: the gap closes at the first new buffer, the hearing records again.
        let out = data(&mut core, 12.5, "a", 12.25);
        assert_eq!(states(&out), [RecordingState::Recording]);
        let g = gaps(&out);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].from_ns, 10_000_000_000);
        assert_eq!(g[0].to_ns, Some(12_250_000_000));
        assert_eq!(g[0].wall_to, Some(datetime!(2026-11-27 09:30:12.25 UTC)));
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Event {
                phase: Phase::End,
                body: EventBody::SourceLost {
                    recovered_at: Some(_),
                    ..
                },
                ..
            }
        )));
    }

    #[test]
    fn a_source_without_data_for_the_stall_timeout_is_lost_at_its_last_buffer() {
        let mut core = Core::default();
        recording(&mut core);
        data(&mut core, 5.0, "a", 0.4);
        data(&mut core, 7.9, "b", 0.4);
        assert!(core.handle(at(7.9), Input::Tick).expect("tick").is_empty());
        let out = core.handle(at(8.0), Input::Tick).expect("tick");
        assert_eq!(states(&out), [RecordingState::Degraded]);
        let g = gaps(&out);
        assert_eq!((g[0].source.as_str(), g[0].from_ns), ("a", 5_000_000_000));
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Event {
                phase: Phase::Start,
                body: EventBody::SourceLost { .. },
                ..
            }
        )));
    }

    #[test]
    fn a_source_that_never_connects_is_lost_after_the_connect_timeout() {
        let mut core = Core::default();
        start(&mut core, &["a", "b"]);
        data(&mut core, 1.0, "a", 0.5);
        data(&mut core, 9.9, "a", 0.5);
        assert!(core.handle(at(9.9), Input::Tick).expect("tick").is_empty());
        let out = core.handle(at(10.0), Input::Tick).expect("tick");
        assert_eq!(states(&out), [RecordingState::Degraded]);
        assert_eq!(gaps(&out)[0].source, "b");
    }

    #[test]
    fn stop_drains_running_pipelines_and_finishes_when_all_have_closed() {
        let mut core = Core::default();
        recording(&mut core);
        let out = core.handle(at(20.0), Input::Stop).expect("stop");
        assert_eq!(states(&out), [RecordingState::Stopping]);
        assert!(out.contains(&Output::StopPipeline {
            source: "a".into(),
            drain: true
        }));
        let out = core
            .handle(at(20.1), Input::Drained { source: "a".into() })
            .expect("drained");
        assert!(out.is_empty());
        let out = core
            .handle(at(20.2), Input::Drained { source: "b".into() })
            .expect("drained");
        assert_eq!(states(&out), [RecordingState::Idle]);
        assert!(out.iter().any(|o| matches!(o, Output::Finished { .. })));
        assert_eq!(core.state(), RecordingState::Idle);
        assert_eq!(
            core.handle(at(21.0), Input::Stop),
            Err(CoreError::NotRecording)
        );
    }

    #[test]
    fn a_pipeline_that_does_not_drain_in_time_is_torn_down() {
        let mut core = Core::default();
        recording(&mut core);
        core.handle(at(20.0), Input::Stop).expect("stop");
        core.handle(at(20.1), Input::Drained { source: "a".into() })
            .expect("drained");
        assert!(core.handle(at(24.9), Input::Tick).expect("tick").is_empty());
        let out = core.handle(at(25.0), Input::Tick).expect("tick");
        assert!(out.contains(&Output::StopPipeline {
            source: "b".into(),
            drain: false
        }));
        assert!(out.iter().any(|o| matches!(o, Output::Finished { .. })));
    }

    #[test]
    fn stopping_while_a_source_is_lost_closes_its_gap_at_the_end() {
        let mut core = Core::default();
        recording(&mut core);
        core.handle(
            at(3.0),
            Input::Failed {
                source: "a".into(),
                error: "gone".into(),
            },
        )
        .expect("failed");
        let out = core.handle(at(4.0), Input::Stop).expect("stop");
        assert_eq!(
            out.iter()
                .filter(|o| matches!(o, Output::StopPipeline { .. }))
                .count(),
            1,
            "only the running source drains"
        );
        let out = core
            .handle(at(4.5), Input::Drained { source: "b".into() })
            .expect("drained");
        let g = gaps(&out);
        assert_eq!(g[0].source, "a");
        assert_eq!(g[0].to_ns, Some(4_500_000_000));
    }

    #[test]
    fn a_resumed_hearing_keeps_its_timeline_and_records_the_crash_gap() {
        let mut core = Core::default();
        let out = core
            .handle(
                at(30.0),
                Input::Start {
                    hearing_id: "h1".into(),
                    sources: vec!["a".into()],
                    resume: Some(Resume {
                        started: at(0.0).wall,
                        ends_ns: [("a".to_string(), 27_000_000_000)].into(),
                    }),
                },
            )
            .expect("start");
        assert_eq!(gaps(&out)[0].from_ns, 27_000_000_000);
        assert_eq!(core.offset_ns(mono(30.0)), Some(30_000_000_000));
        let out = data(&mut core, 31.0, "a", 30.8);
        assert_eq!(gaps(&out)[0].to_ns, Some(30_800_000_000));
        assert_eq!(core.started(), Some(at(0.0).wall));
    }
}
