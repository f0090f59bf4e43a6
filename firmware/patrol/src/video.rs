//! Video analyzers of one source: signal lost, occluded lens, changed scene, too dark,
//! blurred, frozen. Each is a rule over the frame's [`Stats`], debounced on its own.
//!
//! Design: the rules are checked in a fixed precedence and a frame counts for one
//! condition only: a black frame is a lost signal (not also dark, blurred and frozen); a
//! covered lens is occluded (not also a changed scene). Without the precedence one fault
//! would raise four findings and bury the one that names it.

use gavel_profile::PatrolThresholds;
use gavel_protocol::FindingKind;
use time::OffsetDateTime;

use crate::Change;
use crate::debounce::{Debounce, Edge};
use crate::frame::{Frame, Grid, Stats, mean_abs_diff, measure};

/// Correlation with the reference above which a uniform patch is part of the room (a
/// plain wall) rather than something in front of the lens.
const OCCLUSION_MAX_CORRELATION: f64 = 0.9;
/// Grey levels a block mean must move to count as motion.
const MOTION_LEVELS: f32 = 12.0;

/// Which video analyzers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSet {
    pub blur: bool,
    pub dark: bool,
    pub signal: bool,
    pub frozen: bool,
    pub occlusion: bool,
    pub scene: bool,
}

impl VideoSet {
    /// Every analyzer on.
    pub const ALL: VideoSet = VideoSet {
        blur: true,
        dark: true,
        signal: true,
        frozen: true,
        occlusion: true,
        scene: true,
    };

    /// The analyzers named in a profile's list.
    pub fn from_names(names: &[String]) -> Self {
        let has = |n: &str| names.iter().any(|a| a == n);
        Self {
            blur: has("blur"),
            dark: has("dark"),
            signal: has("signal"),
            frozen: has("frozen"),
            occlusion: has("occlusion"),
            scene: has("scene"),
        }
    }
}

/// The verdict on one frame: the one condition it shows, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict {
    Normal,
    SignalLost,
    Occluded,
    SceneChanged,
    TooDark,
    Blurred,
    Frozen,
}

/// The analyzers of one video source.
#[derive(Debug)]
pub struct VideoAnalyzer {
    t: PatrolThresholds,
    set: VideoSet,
    /// The room's reference snapshot (block grid), learnt from the first textured frame
    /// when not given.
    reference: Option<Grid>,
    previous: Option<(Frame, Grid)>,
    last_frame_at: Option<OffsetDateTime>,
    started_at: Option<OffsetDateTime>,
    /// Share of the picture that moved between the last two frames.
    motion: f64,
    signal: Debounce,
    occluded: Debounce,
    scene: Debounce,
    dark: Debounce,
    blurred: Debounce,
    frozen: Debounce,
    /// Figures of the last frame, for the finding's detail.
    last: Option<(Stats, f64, f64)>,
}

impl VideoAnalyzer {
    pub fn new(t: &PatrolThresholds, set: VideoSet) -> Self {
        Self {
            t: t.clone(),
            set,
            reference: None,
            previous: None,
            last_frame_at: None,
            started_at: None,
            motion: 0.0,
            // Design: no frames at all is measured by `no_frames_s` itself; a flat picture
            // needs half the usual onset (a camera that shows black is as lost as one that
            // sends nothing).
            signal: Debounce::new(t.onset_s / 2.0, t.clear_s),
            occluded: Debounce::new(t.onset_s, t.clear_s),
            scene: Debounce::new(t.scene_onset_s, t.clear_s),
            dark: Debounce::new(t.onset_s, t.clear_s),
            blurred: Debounce::new(t.onset_s, t.clear_s),
            frozen: Debounce::new(t.frozen_onset_s, t.clear_s),
            last: None,
        }
    }

    /// Sets the room's reference snapshot.
    pub fn set_reference(&mut self, frame: &Frame) {
        self.reference = Some(measure(frame).grid);
    }

    /// The reference in use, if any.
    pub fn reference(&self) -> Option<&Grid> {
        self.reference.as_ref()
    }

    /// Share of the picture that moved between the last two frames (0-1).
    pub fn motion(&self) -> f64 {
        self.motion
    }

    /// Classifies a frame (no debouncing): what this frame alone shows.
    pub fn classify(&self, stats: &Stats, diff: f64, correlation: f64) -> FrameVerdict {
        let t = &self.t;
        if self.set.signal && stats.trimmed_std < t.flat_stddev_max {
            return FrameVerdict::SignalLost;
        }
        if stats.trimmed_std < t.flat_stddev_max {
            return FrameVerdict::Normal;
        }
        let changed = correlation < t.scene_correlation_min;
        if self.set.occlusion
            && stats.patch_share >= t.occluded_share_min
            && correlation < OCCLUSION_MAX_CORRELATION
        {
            return FrameVerdict::Occluded;
        }
        if self.set.scene && changed {
            return FrameVerdict::SceneChanged;
        }
        if self.set.dark && stats.mean < t.dark_mean_max {
            return FrameVerdict::TooDark;
        }
        if self.set.blur && stats.sharpness < t.blur_sharpness_min {
            return FrameVerdict::Blurred;
        }
        if self.set.frozen && diff < t.frozen_diff_max {
            return FrameVerdict::Frozen;
        }
        FrameVerdict::Normal
    }

    /// Analyses a frame taken at `now`.
    pub fn frame(&mut self, now: OffsetDateTime, frame: Frame) -> Vec<Change> {
        self.started_at.get_or_insert(now);
        self.last_frame_at = Some(now);
        let stats = measure(&frame);
        if self.reference.is_none() && stats.trimmed_std >= self.t.flat_stddev_max * 2.0 {
            self.reference = Some(stats.grid.clone());
        }
        let (diff, motion) = match &self.previous {
            Some((p, g)) => (
                mean_abs_diff(p, &frame),
                stats.grid.moved_share(g, MOTION_LEVELS),
            ),
            None => (f64::INFINITY, 0.0),
        };
        self.motion = motion;
        let correlation = self
            .reference
            .as_ref()
            .map_or(1.0, |r| stats.grid.correlation(r));
        let verdict = self.classify(&stats, diff, correlation);
        self.previous = Some((frame, stats.grid.clone()));
        self.last = Some((stats, diff, correlation));
        self.apply(now, verdict)
    }

    /// Checks for missing frames at `now` (call periodically).
    pub fn tick(&mut self, now: OffsetDateTime) -> Vec<Change> {
        if !self.set.signal {
            return Vec::new();
        }
        let since = self.last_frame_at.or(self.started_at);
        let Some(since) = since else {
            // Nothing ever arrived and nobody started us: the shell calls `start`.
            return Vec::new();
        };
        let stale = (now - since).as_seconds_f64() >= self.t.no_frames_s;
        if !stale {
            return Vec::new();
        }
        // No frames: the lost signal holds; every picture condition ends.
        let mut out = Vec::new();
        if let Some(edge) = self.signal.update(now, true) {
            out.push(Change {
                kind: FindingKind::SignalLost,
                seat: None,
                edge,
                detail: format!(
                    "no frame for {:.0} s (limit {:.0} s)",
                    (now - since).as_seconds_f64(),
                    self.t.no_frames_s
                ),
            });
        }
        out.extend(self.end_picture_conditions(now));
        out
    }

    /// Marks the source as watched from `now` (a source that never sends a frame is lost).
    pub fn start(&mut self, now: OffsetDateTime) {
        self.started_at.get_or_insert(now);
    }

    fn end_picture_conditions(&mut self, now: OffsetDateTime) -> Vec<Change> {
        let mut out = Vec::new();
        for (kind, d) in [
            (FindingKind::Occluded, &mut self.occluded),
            (FindingKind::SceneChanged, &mut self.scene),
            (FindingKind::TooDark, &mut self.dark),
            (FindingKind::Blurred, &mut self.blurred),
            (FindingKind::Frozen, &mut self.frozen),
        ] {
            if let Some(edge) = d.reset(now) {
                out.push(Change {
                    kind,
                    seat: None,
                    edge,
                    detail: "the signal was lost".into(),
                });
            }
        }
        out
    }

    fn apply(&mut self, now: OffsetDateTime, verdict: FrameVerdict) -> Vec<Change> {
        let mut out = Vec::new();
        let detail = self.detail(verdict);
        let conditions = [
            (
                FindingKind::SignalLost,
                FrameVerdict::SignalLost,
                &mut self.signal,
            ),
            (
                FindingKind::Occluded,
                FrameVerdict::Occluded,
                &mut self.occluded,
            ),
            (
                FindingKind::SceneChanged,
                FrameVerdict::SceneChanged,
                &mut self.scene,
            ),
            (FindingKind::TooDark, FrameVerdict::TooDark, &mut self.dark),
            (
                FindingKind::Blurred,
                FrameVerdict::Blurred,
                &mut self.blurred,
            ),
            (FindingKind::Frozen, FrameVerdict::Frozen, &mut self.frozen),
        ];
        for (kind, v, d) in conditions {
            if let Some(edge) = d.update(now, verdict == v) {
                out.push(Change {
                    kind,
                    seat: None,
                    edge,
                    detail: match edge {
                        Edge::Started { .. } => detail.clone(),
                        Edge::Ended { .. } => "cleared".into(),
                    },
                });
            }
        }
        out
    }

    fn detail(&self, verdict: FrameVerdict) -> String {
        let Some((s, diff, corr)) = &self.last else {
            return String::new();
        };
        let t = &self.t;
        match verdict {
            FrameVerdict::SignalLost => format!(
                "flat picture: grey levels vary by {:.1} (limit {:.1}), mean {:.0}",
                s.trimmed_std, t.flat_stddev_max, s.mean
            ),
            FrameVerdict::Occluded => format!(
                "one uniform patch covers {:.0}% of the picture (limit {:.0}%)",
                s.patch_share * 100.0,
                t.occluded_share_min * 100.0
            ),
            FrameVerdict::SceneChanged => format!(
                "correlation with the reference snapshot {corr:.2} (limit {:.2})",
                t.scene_correlation_min
            ),
            FrameVerdict::TooDark => format!(
                "mean grey level {:.0} (limit {:.0})",
                s.mean, t.dark_mean_max
            ),
            FrameVerdict::Blurred => format!(
                "sharpness {:.3} (limit {:.3})",
                s.sharpness, t.blur_sharpness_min
            ),
            FrameVerdict::Frozen => format!(
                "frames differ by {diff:.2} grey levels (limit {:.2})",
                t.frozen_diff_max
            ),
            FrameVerdict::Normal => String::new(),
        }
    }
}
