//! [`Patrol`]: the room's analyzers behind one sans-I/O state machine. The shell feeds it
//! frames, audio blocks, faces, the hearing context and ticks, with the time; it answers
//! with findings started and ended, each with an id, its source and seat, its severity,
//! its recording link and the picture of its source at the time.

use std::collections::BTreeMap;
use std::sync::Arc;

use gavel_profile::{PatrolSettings, PatrolThresholds, SeatZone};
use gavel_protocol::{FindingKind, RecordingLink, Severity};
use time::{Duration, OffsetDateTime};

use crate::Change;
use crate::audio::{AudioAnalyzer, AudioBlock, AudioSet};
use crate::debounce::Edge;
use crate::frame::Frame;
use crate::presence::{Face, HearingContext, PresenceAnalyzer};
use crate::video::{VideoAnalyzer, VideoSet};

/// Loud audio and large motion this close together are one disturbance.
const DISTURBANCE_WINDOW: Duration = Duration::seconds(2);
/// After a disturbance, another is reported no sooner than this.
const DISTURBANCE_REFRACTORY: Duration = Duration::seconds(30);

/// What runs, with which thresholds.
#[derive(Debug, Clone)]
pub struct Settings {
    pub thresholds: PatrolThresholds,
    pub video: VideoSet,
    pub audio: AudioSet,
    pub disturbance: bool,
    pub presence: bool,
    pub zones: Vec<SeatZone>,
}

impl Settings {
    /// Every analyzer with default thresholds.
    pub fn all() -> Self {
        Self {
            thresholds: PatrolThresholds::default(),
            video: VideoSet::ALL,
            audio: AudioSet::ALL,
            disturbance: true,
            presence: true,
            zones: Vec::new(),
        }
    }

    /// What a profile's `[capabilities.patrol]` section asks for.
    pub fn from_profile(p: &PatrolSettings) -> Self {
        Self {
            thresholds: p.thresholds.clone(),
            video: VideoSet::from_names(&p.analyzers),
            audio: AudioSet::from_names(&p.analyzers),
            disturbance: p.analyzers.iter().any(|a| a == "disturbance"),
            presence: p.analyzers.iter().any(|a| a == "presence"),
            zones: p.zones.clone(),
        }
    }
}

/// The hearing the room is holding, as the recorder and schedule say.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The hearing being recorded (or due).
    pub hearing_id: String,
    /// Scheduled start, when known.
    pub scheduled_start: Option<OffsetDateTime>,
    /// When its recording started (the origin of its timeline); absent: not opened yet.
    pub recording_since: Option<OffsetDateTime>,
}

/// A finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Shared by the finding's start and end.
    pub id: String,
    pub kind: FindingKind,
    pub source: String,
    pub seat: Option<String>,
    pub severity: Severity,
    pub started_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    pub detail: String,
    /// The hearing recorded at the time and the offset on its timeline.
    pub recording: Option<RecordingLink>,
    /// The source's latest frame when the finding started (video and presence).
    pub snapshot: Option<Arc<Frame>>,
}

/// What the shell feeds the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// A decoded frame of a video source.
    Frame { source: String, frame: Frame },
    /// A block of an audio source.
    Audio { source: String, block: AudioBlock },
    /// Faces found in the latest frame of a source (presence).
    Faces { source: String, faces: Vec<Face> },
    /// The room's reference snapshot of a source.
    Reference { source: String, frame: Frame },
    /// The hearing context changed (None: no hearing now or soon).
    Session(Option<Session>),
    /// Time passes (missing frames, the schedule).
    Tick,
}

/// What the core reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A condition held for its onset time.
    Started(Finding),
    /// A started finding cleared (same id).
    Ended(Finding),
    /// A finding with no duration (a disturbance): started and ended at once.
    Instant(Finding),
}

/// The room's patrol.
#[derive(Debug)]
pub struct Patrol {
    settings: Settings,
    video: BTreeMap<String, VideoAnalyzer>,
    audio: BTreeMap<String, AudioAnalyzer>,
    presence: PresenceAnalyzer,
    session: Option<Session>,
    /// Latest frame per source.
    frames: BTreeMap<String, Arc<Frame>>,
    open: BTreeMap<(String, Option<String>, FindingKind), Finding>,
    loud: Option<(OffsetDateTime, String, f64)>,
    motion: Option<(OffsetDateTime, String, f64)>,
    last_disturbance: Option<OffsetDateTime>,
}

impl Patrol {
    /// A patrol over `video` sources and `audio` sources (each with its seat per channel).
    pub fn new(settings: Settings, video: &[String], audio: &[(String, Vec<String>)]) -> Self {
        let t = &settings.thresholds;
        Self {
            video: video
                .iter()
                .map(|s| (s.clone(), VideoAnalyzer::new(t, settings.video)))
                .collect(),
            audio: audio
                .iter()
                .map(|(s, seats)| {
                    (
                        s.clone(),
                        AudioAnalyzer::new(t, settings.audio, seats.clone()),
                    )
                })
                .collect(),
            presence: PresenceAnalyzer::new(
                t,
                if settings.presence {
                    &settings.zones
                } else {
                    &[]
                },
            ),
            settings,
            session: None,
            frames: BTreeMap::new(),
            open: BTreeMap::new(),
            loud: None,
            motion: None,
            last_disturbance: None,
        }
    }

    /// Starts watching at `now`: a video source that never sends a frame is lost.
    pub fn start(&mut self, now: OffsetDateTime) {
        for v in self.video.values_mut() {
            v.start(now);
        }
    }

    /// Findings open now.
    pub fn open(&self) -> impl Iterator<Item = &Finding> {
        self.open.values()
    }

    /// The reference grid of a source (set or learnt), for the shell to keep.
    pub fn has_reference(&self, source: &str) -> bool {
        self.video
            .get(source)
            .is_some_and(|v| v.reference().is_some())
    }

    /// Applies one input at `now`.
    pub fn handle(&mut self, now: OffsetDateTime, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Frame { source, frame } => {
                let Some(v) = self.video.get_mut(&source) else {
                    return out;
                };
                let frame = Arc::new(frame);
                self.frames.insert(source.clone(), frame.clone());
                let changes = v.frame(now, (*frame).clone());
                let motion = v.motion();
                if motion >= self.settings.thresholds.disturbance_motion_min {
                    self.motion = Some((now, source.clone(), motion));
                }
                for c in changes {
                    self.change(now, &source, c, &mut out);
                }
                self.disturbance(now, &mut out);
            }
            Input::Audio { source, block } => {
                let in_session = self
                    .session
                    .as_ref()
                    .is_some_and(|s| s.recording_since.is_some());
                let Some(a) = self.audio.get_mut(&source) else {
                    return out;
                };
                let changes = a.block(now, &block, in_session);
                let loudest = a.loudest_dbfs();
                if loudest > self.settings.thresholds.disturbance_dbfs {
                    self.loud = Some((now, source.clone(), loudest));
                }
                for c in changes {
                    self.change(now, &source, c, &mut out);
                }
                self.disturbance(now, &mut out);
            }
            Input::Faces { source, faces } => {
                for (s, c) in self.presence.faces(now, &source, &faces) {
                    self.change(now, &s, c, &mut out);
                }
            }
            Input::Reference { source, frame } => {
                if let Some(v) = self.video.get_mut(&source) {
                    v.set_reference(&frame);
                }
            }
            Input::Session(session) => {
                self.presence
                    .context(session.as_ref().map(|s| HearingContext {
                        scheduled_start: s.scheduled_start,
                        opened: s.recording_since.is_some(),
                    }));
                self.session = session;
            }
            Input::Tick => {
                let sources: Vec<String> = self.video.keys().cloned().collect();
                for source in sources {
                    let changes = self
                        .video
                        .get_mut(&source)
                        .map(|v| v.tick(now))
                        .unwrap_or_default();
                    for c in changes {
                        self.change(now, &source, c, &mut out);
                    }
                }
                if self.settings.presence {
                    for (s, c) in self.presence.tick(now) {
                        self.change(now, &s, c, &mut out);
                    }
                }
            }
        }
        out
    }

    fn link(&self, at: OffsetDateTime) -> Option<RecordingLink> {
        let s = self.session.as_ref()?;
        let since = s.recording_since?;
        Some(RecordingLink {
            hearing_id: s.hearing_id.clone(),
            offset_ms: u64::try_from((at - since).whole_milliseconds()).unwrap_or(0),
        })
    }

    fn change(&mut self, now: OffsetDateTime, source: &str, c: Change, out: &mut Vec<Output>) {
        let key = (source.to_owned(), c.seat.clone(), c.kind);
        match c.edge {
            Edge::Started { since } => {
                let finding = Finding {
                    id: finding_id(source, c.seat.as_deref(), c.kind, since),
                    kind: c.kind,
                    source: source.to_owned(),
                    seat: c.seat,
                    severity: c.kind.default_severity(),
                    started_at: since,
                    ended_at: None,
                    detail: c.detail,
                    recording: self.link(since).or_else(|| self.link(now)),
                    snapshot: self.frames.get(source).cloned(),
                };
                self.open.insert(key, finding.clone());
                out.push(Output::Started(finding));
            }
            Edge::Ended { since } => {
                if let Some(mut f) = self.open.remove(&key) {
                    f.ended_at = Some(since.max(f.started_at));
                    f.snapshot = None;
                    out.push(Output::Ended(f));
                }
            }
        }
    }

    /// Loud audio and large motion within [`DISTURBANCE_WINDOW`] of each other.
    fn disturbance(&mut self, now: OffsetDateTime, out: &mut Vec<Output>) {
        if !self.settings.disturbance {
            return;
        }
        let (Some((ta, audio, db)), Some((tv, video, share))) = (&self.loud, &self.motion) else {
            return;
        };
        if (*ta - *tv).abs() > DISTURBANCE_WINDOW {
            return;
        }
        if self
            .last_disturbance
            .is_some_and(|t| now - t < DISTURBANCE_REFRACTORY)
        {
            return;
        }
        let started = (*ta).min(*tv);
        let finding = Finding {
            id: finding_id(video, None, FindingKind::Disturbance, started),
            kind: FindingKind::Disturbance,
            source: video.clone(),
            seat: None,
            severity: Severity::Urgent,
            started_at: started,
            ended_at: Some((*ta).max(*tv)),
            detail: format!(
                "{db:.0} dBFS on {audio} with {:.0}% of the picture moving",
                share * 100.0
            ),
            recording: self.link(started),
            snapshot: self.frames.get(video).cloned(),
        };
        self.last_disturbance = Some(now);
        self.loud = None;
        self.motion = None;
        out.push(Output::Instant(finding));
    }
}

/// `source[-seat]-kind-unixms`: unique per device (a condition starts at most once per
/// millisecond) and readable.
fn finding_id(source: &str, seat: Option<&str>, kind: FindingKind, at: OffsetDateTime) -> String {
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    match seat {
        Some(s) => format!("{source}-{s}-{kind}-{ms}"),
        None => format!("{source}-{kind}-{ms}"),
    }
}
