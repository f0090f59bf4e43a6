//! Wiring of the `patrol` capability: a decode branch per source of the profile (separate
//! from the recorder's pipelines), the [`gavel_patrol::Patrol`] core on its own task, the
//! room's hearing context from the recorder and the schedule, and the findings onto the
//! durable outbox with a JPEG snapshot and the recording link.
//!
//! Design: capture threads hand frames to the task through a bounded channel with
//! `try_send`: when the analyzers fall behind, frames are dropped at the channel, and
//! neither the cameras nor the recorder ever wait for patrol.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use gavel_link::Outbox;
use gavel_patrol::capture::{Capture, Captured, ColourFrame, media_of};
use gavel_patrol::detect::{FaceDetector, Rgb};
use gavel_patrol::{Frame, Input, Output, Patrol, Session, Settings};
use gavel_profile::{PatrolSettings, Profile, RecordSettings};
use gavel_protocol::{CapabilityState, EventBody, Phase, RecordingState};
use gavel_record::RecorderHandle;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::AgentConfig;
use crate::session::RoomSchedule;

/// The latest frame of each video source, for snapshots.
type Latest = Arc<Mutex<BTreeMap<String, (OffsetDateTime, Arc<Frame>)>>>;

/// A handle on the running patrol: snapshots for the console.
#[derive(Clone)]
pub struct PatrolHandle {
    latest: Latest,
    video: Vec<String>,
}

impl PatrolHandle {
    /// A JPEG of `source`'s latest frame (the first video source when none is named).
    pub fn snapshot(
        &self,
        source: Option<&str>,
    ) -> Result<(String, OffsetDateTime, gavel_protocol::Snapshot), String> {
        let source = match source {
            Some(s) => s.to_owned(),
            None => self
                .video
                .first()
                .cloned()
                .ok_or_else(|| "this device has no video source".to_owned())?,
        };
        let (at, frame) = self
            .latest
            .lock()
            .map_err(|_| "patrol state poisoned".to_owned())?
            .get(&source)
            .cloned()
            .ok_or_else(|| format!("no frame from {source} yet"))?;
        let snapshot = gavel_patrol::snapshot::inline(&frame).map_err(|e| e.to_string())?;
        Ok((source, at, snapshot))
    }
}

/// Where a simulated source reads the fault to show (`covered` or `unplugged`): the demo
/// and rigs without cameras write it; absent or anything else, the picture is normal.
pub fn simulated_fault_path(data_dir: &std::path::Path, source: &str) -> std::path::PathBuf {
    data_dir.join("simulate").join(format!("{source}.fault"))
}

/// Applies a simulated source's fault to what it captured (`None`: nothing arrives).
fn simulate(fault: Option<&std::path::Path>, c: Captured) -> Option<Captured> {
    let Some(path) = fault else {
        return Some(c);
    };
    let Captured::Frame {
        source,
        frame,
        colour,
    } = c
    else {
        return Some(c);
    };
    match std::fs::read_to_string(path).ok().as_deref().map(str::trim) {
        Some("unplugged") => None,
        Some("covered") => {
            let mut rng = gavel_patrol::synth::Rng::new(7);
            Some(Captured::Frame {
                source,
                frame: gavel_patrol::synth::occlude(&frame, &mut rng, 0.85),
                colour: None,
            })
        }
        _ => Some(Captured::Frame {
            source,
            frame,
            colour,
        }),
    }
}

/// What the patrol task needs.
pub struct PatrolParts {
    pub outbox: Arc<Outbox>,
    pub recorder: Option<RecorderHandle>,
    pub schedule: watch::Receiver<RoomSchedule>,
}

/// Starts patrol over every source of the profile: capture threads and the core's task.
pub fn start(
    config: &AgentConfig,
    profile: &Profile,
    settings: &PatrolSettings,
    parts: PatrolParts,
) -> anyhow::Result<(PatrolHandle, tokio::task::JoinHandle<()>)> {
    let all = RecordSettings {
        segment_s: 10,
        sources: profile.sources.iter().map(|s| s.id.clone()).collect(),
    };
    let sources =
        crate::record::sources(config, profile, &all).context("resolving the sources to patrol")?;
    let mut seats: Vec<(u16, String)> = profile
        .seats
        .iter()
        .map(|s| (s.channel, s.id.clone()))
        .collect();
    seats.sort();
    let seat_names = |channels: usize| -> Vec<String> {
        (0..channels)
            .map(|c| {
                seats
                    .iter()
                    .find(|(ch, _)| usize::from(*ch) == c)
                    .map(|(_, id)| id.clone())
                    .unwrap_or_else(|| format!("ch{c}"))
            })
            .collect()
    };
    let mut video = Vec::new();
    let mut audio = Vec::new();
    for s in &sources {
        let (v, a) = media_of(s);
        if v {
            video.push(s.id.clone());
        }
        if let Some(channels) = a {
            let n = if channels == 0 {
                profile.seats.len().max(1)
            } else {
                usize::from(channels)
            };
            audio.push((s.id.clone(), seat_names(n)));
        }
    }
    if video.is_empty() && audio.is_empty() {
        anyhow::bail!("no source to patrol");
    }
    let core = Patrol::new(Settings::from_profile(settings), &video, &audio);
    let presence =
        if settings.analyzers.iter().any(|a| a == "presence") && !settings.zones.is_empty() {
            Some(match load_detector() {
                Ok(d) => Ok(Presence {
                    detector: d,
                    zones: settings.zones.clone(),
                    last: BTreeMap::new(),
                }),
                Err(why) => {
                    warn!(%why, "presence detection is not available; the other analyzers run");
                    Err(why)
                }
            })
        } else {
            None
        };
    let colour_sources: Vec<String> = match &presence {
        Some(Ok(p)) => p.zones.iter().map(|z| z.source.clone()).collect(),
        _ => Vec::new(),
    };
    let (tx, rx) = mpsc::channel::<Captured>(16);
    let mut captures = Vec::new();
    for s in sources {
        let tx = tx.clone();
        let fault = (config.simulate_hardware
            && matches!(s.input, gavel_record::SourceInput::Test { .. }))
        .then(|| simulated_fault_path(&config.data_dir, &s.id));
        let colour = colour_sources.contains(&s.id);
        let capture = Capture::spawn(s, settings.analysis_fps, colour, move |c| {
            let Some(c) = simulate(fault.as_deref(), c) else {
                return;
            };
            // Design: never wait for the analyzers (see the module doc).
            let _ = tx.try_send(c);
        })
        .context("starting a patrol capture thread")?;
        captures.push(capture);
    }
    drop(tx);
    let latest: Latest = Arc::default();
    let handle = PatrolHandle {
        latest: latest.clone(),
        video: video.clone(),
    };
    info!(video = ?video, audio = ?audio.iter().map(|(s, _)| s).collect::<Vec<_>>(), "patrol started");
    let task = tokio::spawn(run(core, rx, parts, latest, captures, presence));
    Ok((handle, task))
}

/// Where the face models and ONNX Runtime are: `GAVEL_MODELS_DIR` (default
/// `/usr/share/gavel/models`, laid out as `models/cache/` after `cargo xtask models`) and
/// `ORT_DYLIB_PATH` (default `<models>/onnxruntime/libonnxruntime.so.1.32.0`).
fn load_detector() -> Result<FaceDetector, String> {
    let models = std::env::var_os("GAVEL_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/share/gavel/models".into());
    let runtime = std::env::var_os("ORT_DYLIB_PATH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| models.join("onnxruntime/libonnxruntime.so.1.32.0"));
    if !runtime.exists() {
        return Err(format!(
            "no ONNX Runtime at {} (run `cargo xtask models`, set GAVEL_MODELS_DIR or ORT_DYLIB_PATH)",
            runtime.display()
        ));
    }
    FaceDetector::load(&runtime, &models.join("mtcnn")).map_err(|e| e.to_string())
}

/// Presence detection state: the detector, the zones, when each source was last looked at.
struct Presence {
    detector: FaceDetector,
    zones: Vec<gavel_profile::SeatZone>,
    last: BTreeMap<String, std::time::Instant>,
}

/// Seconds between face detections of one source.
const DETECT_EVERY: Duration = Duration::from_secs(2);

/// Runs face detection on `colour` for every zone of `source`, off the async threads.
async fn detect(
    mut presence: Presence,
    source: String,
    colour: ColourFrame,
) -> Option<(Presence, Option<Input>)> {
    let result = tokio::task::spawn_blocking(move || {
        let image = Rgb {
            width: colour.width,
            height: colour.height,
            data: &colour.rgb,
        };
        let mut faces = Vec::new();
        let zones: Vec<[f64; 4]> = presence
            .zones
            .iter()
            .filter(|z| z.source == source)
            .map(|z| z.rect)
            .collect();
        for rect in zones {
            match presence.detector.faces_in(&image, rect) {
                Ok(found) => faces.extend(found),
                Err(e) => {
                    warn!(error = %e, %source, "face detection failed");
                    return (presence, None);
                }
            }
        }
        (presence, Some(Input::Faces { source, faces }))
    })
    .await;
    match result {
        Ok(r) => Some(r),
        Err(e) => {
            // The detector went with the task: presence stops, the rest runs on.
            warn!(error = %e, "face detection task failed; presence stopped");
            None
        }
    }
}

async fn run(
    mut core: Patrol,
    mut rx: mpsc::Receiver<Captured>,
    parts: PatrolParts,
    latest: Latest,
    captures: Vec<Capture>,
    presence: Option<Result<Presence, String>>,
) {
    core.start(OffsetDateTime::now_utc());
    let mut presence = match presence {
        Some(Ok(p)) => Some(p),
        Some(Err(why)) => {
            let body = EventBody::Capability {
                capability: "presence".into(),
                state: CapabilityState::Failed,
                detail: Some(why.chars().take(200).collect()),
            };
            if let Err(e) = parts
                .outbox
                .emit("capability-presence".into(), Phase::End, body)
                .await
            {
                warn!(error = %e, "storing the presence capability event failed");
            }
            None
        }
        None => None,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hearing: Option<(String, OffsetDateTime)> = None;
    let mut session: Option<Session> = None;
    loop {
        let now = OffsetDateTime::now_utc();
        let input = tokio::select! {
            c = rx.recv() => match c {
                Some(Captured::Frame { source, frame, colour }) => {
                    if let Ok(mut l) = latest.lock() {
                        l.insert(source.clone(), (now, Arc::new(frame.clone())));
                    }
                    if let (Some(colour), Some(p)) = (colour, presence.as_ref())
                        && p.last.get(&source).is_none_or(|t| t.elapsed() >= DETECT_EVERY)
                        && let Some(mut p) = presence.take()
                    {
                        p.last.insert(source.clone(), std::time::Instant::now());
                        let done = detect(p, source.clone(), colour).await;
                        let faces = done.and_then(|(p, faces)| {
                            presence = Some(p);
                            faces
                        });
                        if let Some(input) = faces {
                            for o in core.handle(now, input) {
                                emit(&parts.outbox, o).await;
                            }
                        }
                    }
                    Input::Frame { source, frame }
                }
                Some(Captured::Audio { source, block }) => Input::Audio { source, block },
                None => break,
            },
            _ = tick.tick() => {
                let next = context(&parts, &mut hearing, now).await;
                if next != session {
                    session = next.clone();
                    for o in core.handle(now, Input::Session(next)) {
                        emit(&parts.outbox, o).await;
                    }
                }
                Input::Tick
            }
        };
        // Design: analysis is a few milliseconds per frame; the core runs inline.
        for o in core.handle(now, input) {
            emit(&parts.outbox, o).await;
        }
    }
    drop(captures);
}

/// The room's hearing context now: the recorder's hearing (and when this process first
/// saw it recorded) and the schedule's current span.
async fn context(
    parts: &PatrolParts,
    hearing: &mut Option<(String, OffsetDateTime)>,
    now: OffsetDateTime,
) -> Option<Session> {
    let recorded = match &parts.recorder {
        Some(r) => match r.state().await {
            Ok((Some(h), state)) if state != RecordingState::Idle => Some(h),
            _ => None,
        },
        None => None,
    };
    match (&recorded, hearing.as_ref()) {
        (Some(h), Some((known, _))) if h == known => {}
        (Some(h), _) => *hearing = Some((h.clone(), now)),
        (None, _) => *hearing = None,
    }
    let unix = now.unix_timestamp();
    let scheduled_start = parts
        .schedule
        .borrow()
        .busy
        .iter()
        .find(|(s, e)| *s <= unix && unix < *e)
        .and_then(|(s, _)| OffsetDateTime::from_unix_timestamp(*s).ok());
    match (hearing.as_ref(), scheduled_start) {
        (Some((id, since)), start) => Some(Session {
            hearing_id: id.clone(),
            scheduled_start: start,
            recording_since: Some(*since),
        }),
        (None, Some(start)) => Some(Session {
            hearing_id: String::new(),
            scheduled_start: Some(start),
            recording_since: None,
        }),
        (None, None) => None,
    }
}

/// Stores a finding's start or end on the outbox.
async fn emit(outbox: &Outbox, output: Output) {
    let (phase, f) = match output {
        Output::Started(f) => (Phase::Start, f),
        Output::Ended(f) => (Phase::End, f),
        Output::Instant(f) => (Phase::End, f),
    };
    let snapshot = match f.snapshot.as_deref() {
        Some(frame)
            if phase == Phase::Start
                || f.ended_at == Some(f.started_at)
                || f.kind == gavel_protocol::FindingKind::Disturbance =>
        {
            match gavel_patrol::snapshot::inline(frame) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(error = %e, "finding snapshot not encoded");
                    None
                }
            }
        }
        _ => None,
    };
    info!(finding = %f.kind, source = %f.source, seat = ?f.seat, ?phase, detail = %f.detail, "patrol finding");
    let body = EventBody::Finding {
        finding: f.kind,
        source: f.source,
        seat: f.seat,
        severity: f.severity,
        started_at: f.started_at,
        ended_at: f.ended_at,
        snapshot,
        recording: f.recording,
        detail: (!f.detail.is_empty()).then(|| f.detail.chars().take(200).collect()),
    };
    if let Err(e) = outbox.emit(format!("finding-{}", f.id), phase, body).await {
        warn!(error = %e, "storing a patrol finding failed");
    } else {
        debug!("finding stored");
    }
}
