//! The `[capabilities.patrol]` section: which hearing-patrol analyzers run, their
//! thresholds and hold times, and the seat zones the presence analyzer watches.

use serde::{Deserialize, Serialize};

/// Names of the analyzers a profile may list.
pub const ANALYZERS: &[&str] = &[
    "blur",
    "dark",
    "signal",
    "frozen",
    "occlusion",
    "scene",
    "dead_mic",
    "noise",
    "clipping",
    "silence",
    "disturbance",
    "presence",
];

/// Hearing patrol analyzers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatrolSettings {
    /// Frames per second analysed per video source.
    pub analysis_fps: u32,
    /// Analyzer names to run (`blur`, `dark`, `signal`, `frozen`, `occlusion`, ...).
    pub analyzers: Vec<String>,
    /// Thresholds and hold times (`[capabilities.patrol.thresholds]`); defaults when absent.
    #[serde(default)]
    pub thresholds: PatrolThresholds,
    /// Seat zones watched for presence (`[[capabilities.patrol.zones]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<SeatZone>,
}

/// A seat's zone in a camera picture: who should be seen where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatZone {
    /// Seat id (`judge`, `plaintiff`, ...).
    pub seat: String,
    /// Video source id that sees the seat.
    pub source: String,
    /// Zone as fractions of the picture: x, y, width, height (0-1).
    pub rect: [f64; 4],
    /// The seat must be occupied while the hearing runs (judge) rather than only at its
    /// start (parties).
    #[serde(default)]
    pub required_throughout: bool,
}

/// Thresholds of the analyzers and their hold times. Every level is in the analyzer's
/// own unit (grey levels 0-255, dBFS, shares 0-1); every hold time is in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatrolThresholds {
    /// Sharpness (Laplacian variance over picture variance) below this is blurred.
    pub blur_sharpness_min: f64,
    /// Mean grey level below this is too dark.
    pub dark_mean_max: f64,
    /// A picture whose grey levels vary less than this (standard deviation) is a flat
    /// "no signal" or black picture.
    pub flat_stddev_max: f64,
    /// No frame for this long is a lost signal.
    pub no_frames_s: f64,
    /// Mean absolute difference between frames below this is a frozen picture.
    pub frozen_diff_max: f64,
    /// Share of the picture covered by one uniform patch at or above this is an occluded
    /// lens.
    pub occluded_share_min: f64,
    /// Correlation with the room's reference snapshot below this is a changed scene.
    pub scene_correlation_min: f64,
    /// A seat microphone quieter than this (dBFS) while the room talks is dead.
    pub dead_mic_dbfs: f64,
    /// The room talks when its loudest seat is above this (dBFS).
    pub room_talk_dbfs: f64,
    /// A noise floor (quiet moments of a channel) above this (dBFS) is interference.
    pub noise_floor_dbfs: f64,
    /// Share of clipped samples in a block at or above this is clipping.
    pub clip_share_min: f64,
    /// Every seat below this (dBFS) is a silent room.
    pub silence_dbfs: f64,
    /// A short-term level above this (dBFS) together with motion is a disturbance.
    pub disturbance_dbfs: f64,
    /// Share of the picture that moved, at or above this, is large motion.
    pub disturbance_motion_min: f64,
    /// Default onset hold: a condition must hold this long before it is a finding.
    pub onset_s: f64,
    /// A finding ends after its condition has been gone this long.
    pub clear_s: f64,
    /// Onset hold of a frozen picture.
    pub frozen_onset_s: f64,
    /// Onset hold of a changed scene.
    pub scene_onset_s: f64,
    /// Onset hold of a dead microphone.
    pub dead_mic_onset_s: f64,
    /// Onset hold of a silent room.
    pub silence_onset_s: f64,
    /// Onset hold of an empty seat (presence).
    pub absent_onset_s: f64,
    /// Face detection confidence at or above this counts as a person.
    pub face_score_min: f64,
}

impl Default for PatrolThresholds {
    fn default() -> Self {
        Self {
            blur_sharpness_min: 0.12,
            dark_mean_max: 45.0,
            flat_stddev_max: 3.0,
            no_frames_s: 4.0,
            frozen_diff_max: 0.25,
            occluded_share_min: 0.5,
            scene_correlation_min: 0.8,
            dead_mic_dbfs: -70.0,
            room_talk_dbfs: -35.0,
            noise_floor_dbfs: -42.0,
            clip_share_min: 0.002,
            silence_dbfs: -50.0,
            disturbance_dbfs: -18.0,
            disturbance_motion_min: 0.12,
            onset_s: 5.0,
            clear_s: 5.0,
            frozen_onset_s: 10.0,
            scene_onset_s: 10.0,
            dead_mic_onset_s: 15.0,
            silence_onset_s: 60.0,
            absent_onset_s: 30.0,
            face_score_min: 0.7,
        }
    }
}

impl PatrolThresholds {
    /// Every threshold with its key and allowed range.
    fn ranges(&self) -> [(&'static str, f64, f64, f64); 22] {
        [
            ("blur_sharpness_min", self.blur_sharpness_min, 0.0, 10.0),
            ("dark_mean_max", self.dark_mean_max, 0.0, 255.0),
            ("flat_stddev_max", self.flat_stddev_max, 0.0, 64.0),
            ("no_frames_s", self.no_frames_s, 0.5, 600.0),
            ("frozen_diff_max", self.frozen_diff_max, 0.0, 32.0),
            ("occluded_share_min", self.occluded_share_min, 0.1, 1.0),
            (
                "scene_correlation_min",
                self.scene_correlation_min,
                -1.0,
                1.0,
            ),
            ("dead_mic_dbfs", self.dead_mic_dbfs, -150.0, 0.0),
            ("room_talk_dbfs", self.room_talk_dbfs, -150.0, 0.0),
            ("noise_floor_dbfs", self.noise_floor_dbfs, -150.0, 0.0),
            ("clip_share_min", self.clip_share_min, 0.0, 1.0),
            ("silence_dbfs", self.silence_dbfs, -150.0, 0.0),
            ("disturbance_dbfs", self.disturbance_dbfs, -150.0, 0.0),
            (
                "disturbance_motion_min",
                self.disturbance_motion_min,
                0.0,
                1.0,
            ),
            ("onset_s", self.onset_s, 0.0, 3600.0),
            ("clear_s", self.clear_s, 0.0, 3600.0),
            ("frozen_onset_s", self.frozen_onset_s, 0.0, 3600.0),
            ("scene_onset_s", self.scene_onset_s, 0.0, 3600.0),
            ("dead_mic_onset_s", self.dead_mic_onset_s, 0.0, 3600.0),
            ("silence_onset_s", self.silence_onset_s, 0.0, 3600.0),
            ("absent_onset_s", self.absent_onset_s, 0.0, 3600.0),
            ("face_score_min", self.face_score_min, 0.0, 1.0),
        ]
    }
}

/// A problem with the patrol section: the key under `capabilities.patrol`, the value and
/// why.
pub(crate) type Problem = (String, String, &'static str);

/// Checks the patrol section against the profile's sources and seats.
pub(crate) fn validate(
    pa: &PatrolSettings,
    source_ids: &std::collections::BTreeSet<&str>,
    seat_ids: &std::collections::BTreeSet<&str>,
) -> Result<(), Problem> {
    if !(1..=10).contains(&pa.analysis_fps) {
        return Err((
            "analysis_fps".into(),
            pa.analysis_fps.to_string(),
            "must be 1-10",
        ));
    }
    for (i, a) in pa.analyzers.iter().enumerate() {
        if !ANALYZERS.contains(&a.as_str()) {
            return Err((
                format!("analyzers[{i}]"),
                a.clone(),
                "not an analyzer (blur, dark, signal, frozen, occlusion, scene, dead_mic, noise, clipping, silence, disturbance, presence)",
            ));
        }
    }
    for (key, value, lo, hi) in pa.thresholds.ranges() {
        if !value.is_finite() || value < lo || value > hi {
            return Err((
                format!("thresholds.{key}"),
                value.to_string(),
                "outside its range (see docs/patrol.md)",
            ));
        }
    }
    if pa.thresholds.dead_mic_dbfs >= pa.thresholds.room_talk_dbfs {
        return Err((
            "thresholds.dead_mic_dbfs".into(),
            pa.thresholds.dead_mic_dbfs.to_string(),
            "must be below thresholds.room_talk_dbfs",
        ));
    }
    for (i, z) in pa.zones.iter().enumerate() {
        if !seat_ids.contains(z.seat.as_str()) {
            return Err((
                format!("zones[{i}].seat"),
                z.seat.clone(),
                "not a seat of the profile",
            ));
        }
        if !source_ids.contains(z.source.as_str()) {
            return Err((
                format!("zones[{i}].source"),
                z.source.clone(),
                "not a source of the profile",
            ));
        }
        let [x, y, w, h] = z.rect;
        let ok = [x, y, w, h]
            .iter()
            .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
            && w > 0.0
            && h > 0.0
            && x + w <= 1.0 + 1e-9
            && y + h <= 1.0 + 1e-9;
        if !ok {
            return Err((
                format!("zones[{i}].rect"),
                format!("{:?}", z.rect),
                "x, y, width, height as fractions 0-1 inside the picture",
            ));
        }
    }
    Ok(())
}
