//! The transcriber shell: one thread per recorded seat source that drains the tap, runs
//! the streaming core and the engine, and hands lines to a sink.
//!
//! Design: the thread alternates between draining the tap (only while the core holds
//! less than `max_backlog_s` of undecoded speech) and running one decode, finals first.
//! When the engine is slower than speech, audio waits in the tap, not in the core, so
//! memory stays bounded by the tap's capacity; partial decodes are skipped while the tap
//! holds more than `skip_partials_after_ms` (nobody needs a partial of a line spoken a
//! minute ago), and the transcriber catches up at the next pause. The recorder never
//! waits: see [`crate::tap`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::core::{Core, CoreSettings, Decoded, Input, Job, Line, Output, RATE, Stage};
use crate::engine::Engine;
use crate::tap::{Read, Tap};

/// Shell settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Streaming core settings.
    pub core: CoreSettings,
    /// Largest block read from the tap at once, milliseconds.
    pub read_block_ms: u32,
    /// The tap is not drained while the core holds this much undecoded audio, seconds.
    pub max_backlog_s: u32,
    /// Partial decodes are skipped while the tap holds more than this, milliseconds.
    pub skip_partials_after_ms: u32,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            core: CoreSettings::default(),
            read_block_ms: 200,
            max_backlog_s: 60,
            skip_partials_after_ms: 2000,
        }
    }
}

/// What the transcriber reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A partial or final line of a seat.
    Line {
        /// Seat id from the profile's seat map.
        seat: String,
        /// `source:channel`.
        source: String,
        line: Line,
    },
    /// Audio the tap discarded (the transcriber was too far behind): not transcribed.
    Gap { offset_ns: u64, duration_ns: u64 },
}

/// Counters of a running transcriber.
#[derive(Debug, Default)]
pub struct Stats {
    /// Time spent decoding, nanoseconds.
    pub decode_ns: AtomicU64,
    /// Audio decoded (partials and finals), nanoseconds.
    pub decoded_audio_ns: AtomicU64,
    /// Final decodes run.
    pub finals: AtomicU64,
    /// Partial decodes run, and skipped because the transcriber was behind.
    pub partials: AtomicU64,
    pub partials_skipped: AtomicU64,
    /// Most undecoded audio the core held, samples.
    pub peak_core_backlog: AtomicU64,
    /// Decodes that failed.
    pub failures: AtomicU64,
}

/// An engine shared by the transcribers of successive hearings (the model is loaded once;
/// a new hearing's transcriber may start while the last one finishes its final lines).
pub type SharedEngine = Arc<Mutex<Box<dyn Engine>>>;

/// Shares `engine`.
pub fn shared(engine: impl Engine + 'static) -> SharedEngine {
    Arc::new(Mutex::new(Box::new(engine)))
}

/// A running transcriber thread.
pub struct Transcriber {
    handle: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<Stats>,
}

impl Transcriber {
    /// Starts transcribing `tap` (whose channels are the source's) for `seats`: pairs of
    /// (channel of the source, seat id). Lines go to `sink`, from the transcriber's
    /// thread. The thread ends when the tap is closed and every line is final.
    pub fn spawn(
        settings: WorkerSettings,
        engine: SharedEngine,
        tap: Tap,
        source: String,
        seats: Vec<(usize, String)>,
        mut sink: impl FnMut(Event) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stats = Arc::new(Stats::default());
        let handle = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name(format!("transcribe-{source}"))
                .spawn(move || run(&settings, &engine, &tap, &source, &seats, &mut sink, &stats))?
        };
        Ok(Self {
            handle: Some(handle),
            stats,
        })
    }

    /// Waits until the thread has ended (after the tap was closed).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            warn!("the transcriber thread panicked");
        }
    }

    /// Whether the thread has ended.
    pub fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

fn run(
    settings: &WorkerSettings,
    engine: &SharedEngine,
    tap: &Tap,
    source: &str,
    seats: &[(usize, String)],
    sink: &mut dyn FnMut(Event),
    stats: &Stats,
) {
    let mut core = Core::new(settings.core.clone(), seats.len());
    let mut jobs: VecDeque<Job> = VecDeque::new();
    let block = RATE as usize * settings.read_block_ms.max(10) as usize / 1000;
    let max_backlog = RATE as usize * settings.max_backlog_s.max(1) as usize;
    let skip_after = u64::from(RATE) * u64::from(settings.skip_partials_after_ms) / 1000;
    let mut closed = false;
    let emit = |outputs: Vec<Output>, jobs: &mut VecDeque<Job>, sink: &mut dyn FnMut(Event)| {
        for o in outputs {
            match o {
                Output::Decode(job) => jobs.push_back(job),
                Output::Line(line) => {
                    let (channel, seat) = &seats[line.channel];
                    sink(Event::Line {
                        seat: seat.clone(),
                        source: format!("{source}:{channel}"),
                        line,
                    });
                }
            }
        }
    };
    loop {
        if !closed && core.backlog() < max_backlog {
            let wait = if jobs.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            match tap.read(block, wait) {
                Read::Audio(mut channels) => {
                    let picked = seats
                        .iter()
                        .map(|(ch, _)| {
                            channels
                                .get_mut(*ch)
                                .map(std::mem::take)
                                .unwrap_or_default()
                        })
                        .collect();
                    let out = core.handle(Input::Audio(picked));
                    emit(out, &mut jobs, sink);
                }
                Read::Gap(n) => {
                    let at = core.position();
                    warn!(%source, seconds = n / u64::from(RATE), "transcription fell too far behind: audio skipped");
                    sink(Event::Gap {
                        offset_ns: at * 1_000_000_000 / u64::from(RATE),
                        duration_ns: n * 1_000_000_000 / u64::from(RATE),
                    });
                    let out = core.handle(Input::Gap(n));
                    emit(out, &mut jobs, sink);
                }
                Read::Empty => {}
                Read::Closed => {
                    closed = true;
                    let out = core.handle(Input::Flush);
                    emit(out, &mut jobs, sink);
                }
            }
            stats
                .peak_core_backlog
                .fetch_max(core.backlog() as u64, Ordering::Relaxed);
        }
        // Finals first: they are the transcript; partials only show progress.
        let next = match jobs.iter().position(|j| j.stage == Stage::Final) {
            Some(i) => jobs.remove(i),
            None => jobs.pop_front(),
        };
        if let Some(job) = next {
            let result = if job.stage == Stage::Partial && tap.backlog() > skip_after {
                stats.partials_skipped.fetch_add(1, Ordering::Relaxed);
                Decoded::Skipped
            } else {
                let started = Instant::now();
                let r = engine
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .decode(&job.pcm, job.stage);
                stats
                    .decode_ns
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                stats.decoded_audio_ns.fetch_add(
                    job.pcm.len() as u64 * 1_000_000_000 / u64::from(RATE),
                    Ordering::Relaxed,
                );
                match job.stage {
                    Stage::Final => stats.finals.fetch_add(1, Ordering::Relaxed),
                    Stage::Partial => stats.partials.fetch_add(1, Ordering::Relaxed),
                };
                match r {
                    Ok(h) => Decoded::Done(h),
                    Err(e) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        warn!(%source, error = %e, "decode failed");
                        Decoded::Failed(e.to_string())
                    }
                }
            };
            let out = core.handle(Input::Decoded {
                job: job.id,
                result,
            });
            emit(out, &mut jobs, sink);
            continue;
        }
        if closed && core.idle() {
            debug!(%source, "transcriber done");
            return;
        }
    }
}
