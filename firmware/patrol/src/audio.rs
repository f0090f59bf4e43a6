//! Audio analyzers of one multi-channel source (one seat microphone per channel): dead
//! microphone, noise interference, clipping, and whole-room silence during a hearing.

use std::collections::VecDeque;

use gavel_profile::PatrolThresholds;
use gavel_protocol::FindingKind;
use time::OffsetDateTime;

use crate::Change;
use crate::debounce::{Debounce, Edge};

/// Length of the short frames whose levels give the noise floor, seconds.
const SHORT_FRAME_S: f64 = 0.02;
/// The noise floor is this percentile of the short-frame levels.
const FLOOR_PERCENTILE: f64 = 0.10;
/// Window of the noise floor and of the clipping share, seconds.
const WINDOW_S: f64 = 3.0;
/// Level of digital silence, dBFS (log of zero).
pub const FLOOR_DBFS: f64 = -120.0;

/// Interleaved PCM samples of every channel of a source, -1.0..1.0.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioBlock {
    /// Samples per second per channel.
    pub rate: u32,
    pub channels: usize,
    /// `frames * channels` samples, interleaved.
    pub samples: Vec<f32>,
}

impl AudioBlock {
    /// Frames (samples per channel) in the block.
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.rate.max(1))
    }
}

/// Which audio analyzers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSet {
    pub dead_mic: bool,
    pub noise: bool,
    pub clipping: bool,
    pub silence: bool,
}

impl AudioSet {
    pub const ALL: AudioSet = AudioSet {
        dead_mic: true,
        noise: true,
        clipping: true,
        silence: true,
    };

    pub fn from_names(names: &[String]) -> Self {
        let has = |n: &str| names.iter().any(|a| a == n);
        Self {
            dead_mic: has("dead_mic"),
            noise: has("noise"),
            clipping: has("clipping"),
            silence: has("silence"),
        }
    }
}

/// dBFS of a mean square.
pub fn dbfs(mean_square: f64) -> f64 {
    if mean_square <= 1e-12 {
        FLOOR_DBFS
    } else {
        (10.0 * mean_square.log10()).max(FLOOR_DBFS)
    }
}

/// Measurements of one channel in one block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelLevels {
    /// Level of the whole block, dBFS.
    pub rms_dbfs: f64,
    /// Share of samples at full scale.
    pub clipped: f64,
}

#[derive(Debug)]
struct Channel {
    seat: String,
    /// Short-frame levels of the last [`WINDOW_S`].
    short: VecDeque<f64>,
    /// (samples, clipped samples) per block of the last [`WINDOW_S`].
    clips: VecDeque<(usize, usize)>,
    dead: Debounce,
    noise: Debounce,
    clipping: Debounce,
}

/// The analyzers of one audio source.
#[derive(Debug)]
pub struct AudioAnalyzer {
    t: PatrolThresholds,
    set: AudioSet,
    channels: Vec<Channel>,
    silence: Debounce,
    /// Loudest block level of the last block, dBFS (for disturbance).
    loudest: f64,
}

impl AudioAnalyzer {
    /// `seats[i]` names channel `i`.
    pub fn new(t: &PatrolThresholds, set: AudioSet, seats: Vec<String>) -> Self {
        let channels = seats
            .into_iter()
            .map(|seat| Channel {
                seat,
                short: VecDeque::new(),
                clips: VecDeque::new(),
                dead: Debounce::new(t.dead_mic_onset_s, t.clear_s),
                noise: Debounce::new(t.onset_s, t.clear_s),
                clipping: Debounce::new(t.onset_s, t.clear_s),
            })
            .collect();
        Self {
            t: t.clone(),
            set,
            channels,
            silence: Debounce::new(t.silence_onset_s, t.clear_s),
            loudest: FLOOR_DBFS,
        }
    }

    /// Level of the loudest channel in the last block, dBFS.
    pub fn loudest_dbfs(&self) -> f64 {
        self.loudest
    }

    /// Measures one block per channel.
    pub fn levels(block: &AudioBlock, channel: usize) -> (ChannelLevels, Vec<f64>) {
        let ch = block.channels.max(1);
        let frames = block.frames();
        let short_len = ((f64::from(block.rate) * SHORT_FRAME_S) as usize).max(1);
        let mut short = Vec::with_capacity(frames / short_len + 1);
        let (mut total, mut clipped) = (0f64, 0usize);
        let (mut acc, mut n) = (0f64, 0usize);
        for i in 0..frames {
            let s = f64::from(block.samples[i * ch + channel]);
            total += s * s;
            if s.abs() >= 0.999 {
                clipped += 1;
            }
            acc += s * s;
            n += 1;
            if n == short_len {
                short.push(dbfs(acc / n as f64));
                acc = 0.0;
                n = 0;
            }
        }
        let levels = ChannelLevels {
            rms_dbfs: dbfs(total / frames.max(1) as f64),
            clipped: clipped as f64 / frames.max(1) as f64,
        };
        (levels, short)
    }

    /// Analyses a block that ended at `now`; `in_session` says whether a hearing is being
    /// held (silence is a finding only then).
    pub fn block(
        &mut self,
        now: OffsetDateTime,
        block: &AudioBlock,
        in_session: bool,
    ) -> Vec<Change> {
        let t = &self.t;
        let mut out = Vec::new();
        let seconds = block.seconds().max(1e-3);
        let keep_short = (WINDOW_S / SHORT_FRAME_S) as usize;
        let keep_blocks = (WINDOW_S / seconds).ceil().max(1.0) as usize;
        let mut rms = Vec::with_capacity(self.channels.len());
        for (i, c) in self.channels.iter_mut().enumerate() {
            if i >= block.channels {
                rms.push(FLOOR_DBFS);
                continue;
            }
            let (levels, short) = Self::levels(block, i);
            rms.push(levels.rms_dbfs);
            c.short.extend(short);
            while c.short.len() > keep_short {
                c.short.pop_front();
            }
            c.clips.push_back((
                block.frames(),
                (levels.clipped * block.frames() as f64) as usize,
            ));
            while c.clips.len() > keep_blocks {
                c.clips.pop_front();
            }
        }
        self.loudest = rms.iter().copied().fold(FLOOR_DBFS, f64::max);
        for (i, c) in self.channels.iter_mut().enumerate() {
            // The room talks when a seat other than this one is above the talk level.
            let others = rms
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, l)| *l)
                .fold(FLOOR_DBFS, f64::max);
            if self.set.dead_mic && others > t.room_talk_dbfs {
                // Design: only while the room talks can a silent seat be told from a quiet
                // one; in pauses the condition is neither confirmed nor cleared.
                let dead = rms[i] < t.dead_mic_dbfs;
                push(
                    &mut out,
                    FindingKind::DeadMicrophone,
                    &c.seat,
                    c.dead.update(now, dead),
                    || {
                        format!(
                            "{:.0} dBFS while the room talks at {:.0} dBFS (limit {:.0})",
                            rms[i], others, t.dead_mic_dbfs
                        )
                    },
                );
            }
            if self.set.noise {
                let floor = percentile(&c.short, FLOOR_PERCENTILE);
                let noisy = c.short.len() * 2 >= keep_short && floor > t.noise_floor_dbfs;
                push(
                    &mut out,
                    FindingKind::NoiseInterference,
                    &c.seat,
                    c.noise.update(now, noisy),
                    || {
                        format!(
                            "noise floor {floor:.0} dBFS (limit {:.0})",
                            t.noise_floor_dbfs
                        )
                    },
                );
            }
            if self.set.clipping {
                let (n, k) = c.clips.iter().fold((0, 0), |(n, k), (a, b)| (n + a, k + b));
                let share = k as f64 / n.max(1) as f64;
                push(
                    &mut out,
                    FindingKind::Clipping,
                    &c.seat,
                    c.clipping.update(now, share >= t.clip_share_min),
                    || {
                        format!(
                            "{:.2}% of samples at full scale (limit {:.2}%)",
                            share * 100.0,
                            t.clip_share_min * 100.0
                        )
                    },
                );
            }
        }
        if self.set.silence {
            let silent = in_session && self.loudest < t.silence_dbfs;
            let loudest = self.loudest;
            let edge = self.silence.update(now, silent);
            push(&mut out, FindingKind::RoomSilent, "", edge, || {
                format!(
                    "every seat below {:.0} dBFS (loudest {loudest:.0}) during the hearing",
                    t.silence_dbfs
                )
            });
        }
        out
    }
}

fn push(
    out: &mut Vec<Change>,
    kind: FindingKind,
    seat: &str,
    edge: Option<Edge>,
    detail: impl FnOnce() -> String,
) {
    if let Some(edge) = edge {
        out.push(Change {
            kind,
            seat: (!seat.is_empty()).then(|| seat.to_owned()),
            edge,
            detail: match edge {
                Edge::Started { .. } => detail(),
                Edge::Ended { .. } => "cleared".into(),
            },
        });
    }
}

fn percentile(values: &VecDeque<f64>, p: f64) -> f64 {
    if values.is_empty() {
        return FLOOR_DBFS;
    }
    let mut v: Vec<f64> = values.iter().copied().collect();
    let k = ((v.len() - 1) as f64 * p).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f64::total_cmp);
    *x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scale_square_wave_is_zero_dbfs_and_clipped() {
        let block = AudioBlock {
            rate: 8000,
            channels: 1,
            samples: (0..800)
                .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
                .collect(),
        };
        let (l, short) = AudioAnalyzer::levels(&block, 0);
        assert!(l.rms_dbfs.abs() < 1e-6);
        assert_eq!(l.clipped, 1.0);
        assert_eq!(short.len(), 5);
    }

    #[test]
    fn digital_silence_is_the_floor() {
        assert_eq!(dbfs(0.0), FLOOR_DBFS);
        assert!((dbfs(0.01) + 20.0).abs() < 1e-9);
    }
}
