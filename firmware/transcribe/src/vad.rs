//! Voice activity detection across a source's seat channels: energy against a tracked
//! noise floor, dominance over the other seats, onset and hangover.
//!
//! Design: a seat microphone hears every voice in the room (crosstalk) and the room's
//! background noise. A frame counts as speech on a channel only when it is (1) louder than
//! that channel's own noise floor by `threshold_db` (the floor is the minimum frame level
//! over the last few seconds, so steady noise — fans, hum, air conditioning — raises it),
//! (2) louder than `min_dbfs`, and (3) within `dominance_db` of the loudest channel in the
//! same frame (a voice leaking into another seat's microphone is far weaker there than in
//! its own). Speech must last `onset_ms` to open an utterance and ends after `hangover_ms`
//! of non-speech, so word gaps do not split lines. Whisper is never given audio that did
//! not pass this gate: fed silence or noise, it invents text. ADR 0014 gives the evidence.

use serde::{Deserialize, Serialize};

/// Voice activity settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadSettings {
    /// Analysis frame, milliseconds.
    pub frame_ms: u32,
    /// A speech frame is at least this much louder than the channel's noise floor, dB.
    pub threshold_db: f32,
    /// ...and louder than this absolute level, dBFS.
    pub min_dbfs: f32,
    /// ...and within this of the loudest seat in the same frame, dB (crosstalk rejection).
    pub dominance_db: f32,
    /// Speech must last this long to open an utterance, milliseconds.
    pub onset_ms: u32,
    /// An utterance ends after this much non-speech, milliseconds.
    pub hangover_ms: u32,
    /// The noise floor is the lowest frame level over this window, seconds.
    pub floor_window_s: u32,
}

impl Default for VadSettings {
    fn default() -> Self {
        Self {
            frame_ms: 20,
            threshold_db: 12.0,
            min_dbfs: -48.0,
            dominance_db: 10.0,
            onset_ms: 100,
            hangover_ms: 700,
            floor_window_s: 5,
        }
    }
}

/// A change of a channel's voice activity, at a frame index (frames from the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began at frame `at` (the first speech frame of the onset run).
    Start { at: u64 },
    /// Speech ended: `at` is the frame after the last speech frame.
    End { at: u64 },
}

/// Voice activity of one channel.
#[derive(Debug, Clone, Default)]
struct Channel {
    /// Lowest level in each completed block of one second, newest last (dBFS).
    block_minima: std::collections::VecDeque<f32>,
    /// Lowest level in the block being filled.
    block_min: f32,
    /// Frames in the block being filled.
    block_frames: u32,
    /// Consecutive speech frames (while not speaking) and where the run began.
    run: u32,
    run_start: u64,
    /// Whether an utterance is open.
    speaking: bool,
    /// Frames since the last speech frame, while speaking.
    quiet: u32,
}

impl Channel {
    fn floor(&self) -> Option<f32> {
        let current = (self.block_frames > 0).then_some(self.block_min);
        self.block_minima
            .iter()
            .copied()
            .chain(current)
            .reduce(f32::min)
    }

    fn track_floor(&mut self, db: f32, frames_per_block: u32, window: usize) {
        if self.block_frames == 0 || db < self.block_min {
            self.block_min = db;
        }
        self.block_frames += 1;
        if self.block_frames >= frames_per_block {
            self.block_minima.push_back(self.block_min);
            while self.block_minima.len() > window {
                self.block_minima.pop_front();
            }
            self.block_frames = 0;
        }
    }
}

/// Voice activity detection over the channels of one source.
#[derive(Debug, Clone)]
pub struct Vad {
    settings: VadSettings,
    channels: Vec<Channel>,
    /// Frames analysed so far.
    frame: u64,
}

/// The RMS level of `pcm`, dBFS (full scale = 1.0); silence is -120.
pub fn dbfs(pcm: &[f32]) -> f32 {
    if pcm.is_empty() {
        return -120.0;
    }
    let mean = pcm.iter().map(|s| s * s).sum::<f32>() / pcm.len() as f32;
    (10.0 * mean.max(1e-12).log10()).max(-120.0)
}

impl Vad {
    /// Voice activity for `channels` channels.
    pub fn new(settings: VadSettings, channels: usize) -> Self {
        Self {
            settings,
            channels: vec![Channel::default(); channels],
            frame: 0,
        }
    }

    /// Samples per frame at `rate` Hz.
    pub fn frame_len(&self, rate: u32) -> usize {
        (rate as usize * self.settings.frame_ms as usize / 1000).max(1)
    }

    /// Analyses one frame given each channel's level (dBFS); returns each channel's event.
    pub fn frame(&mut self, levels: &[f32]) -> Vec<Option<VadEvent>> {
        let s = &self.settings;
        let frame_ms = s.frame_ms.max(1);
        let per_block = (1000 / frame_ms).max(1);
        let onset = s.onset_ms.div_ceil(frame_ms).max(1);
        let hangover = s.hangover_ms.div_ceil(frame_ms).max(1);
        let loudest = levels.iter().copied().fold(f32::MIN, f32::max);
        let at = self.frame;
        self.frame += 1;
        let mut out = Vec::with_capacity(self.channels.len());
        for (ch, &db) in self.channels.iter_mut().zip(levels) {
            let floor = ch.floor().unwrap_or(db);
            let speech =
                db >= floor + s.threshold_db && db >= s.min_dbfs && db >= loudest - s.dominance_db;
            ch.track_floor(db, per_block, s.floor_window_s.max(1) as usize);
            let event = if ch.speaking {
                if speech {
                    ch.quiet = 0;
                    None
                } else {
                    ch.quiet += 1;
                    (ch.quiet >= hangover).then(|| {
                        ch.speaking = false;
                        ch.run = 0;
                        VadEvent::End {
                            at: at + 1 - u64::from(ch.quiet),
                        }
                    })
                }
            } else if speech {
                if ch.run == 0 {
                    ch.run_start = at;
                }
                ch.run += 1;
                (ch.run >= onset).then(|| {
                    ch.speaking = true;
                    ch.quiet = 0;
                    VadEvent::Start { at: ch.run_start }
                })
            } else {
                ch.run = 0;
                None
            };
            out.push(event);
        }
        out
    }

    /// Whether channel `ch` has an utterance open.
    pub fn speaking(&self, ch: usize) -> bool {
        self.channels.get(ch).is_some_and(|c| c.speaking)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vad: &mut Vad, frames: &[[f32; 2]]) -> Vec<(usize, VadEvent)> {
        let mut events = Vec::new();
        for f in frames {
            for (ch, e) in vad.frame(f).into_iter().enumerate() {
                if let Some(e) = e {
                    events.push((ch, e));
                }
            }
        }
        events
    }

    #[test]
    fn steady_background_noise_never_opens_an_utterance() {
        let mut vad = Vad::new(VadSettings::default(), 2);
        // 30 s of noise at -35 dBFS with +-3 dB flutter on both channels.
        let frames: Vec<[f32; 2]> = (0..1500)
            .map(|i| {
                let j = ((i * 7919) % 13) as f32 / 13.0 * 6.0 - 3.0;
                [-35.0 + j, -40.0 - j]
            })
            .collect();
        assert!(run(&mut vad, &frames).is_empty());
    }

    #[test]
    fn speech_opens_after_onset_and_closes_after_hangover_at_the_last_speech_frame() {
        let mut vad = Vad::new(VadSettings::default(), 2);
        let mut frames = vec![[-60.0, -60.0]; 100];
        frames.extend(vec![[-20.0, -60.0]; 50]); // frames 100..150 speech on channel 0
        frames.extend(vec![[-60.0, -60.0]; 100]);
        let events = run(&mut vad, &frames);
        assert_eq!(
            events,
            vec![
                (0, VadEvent::Start { at: 100 }),
                (0, VadEvent::End { at: 150 })
            ]
        );
    }

    #[test]
    fn a_short_word_gap_does_not_split_the_utterance() {
        let mut vad = Vad::new(VadSettings::default(), 2);
        let mut frames = vec![[-60.0, -60.0]; 100];
        frames.extend(vec![[-20.0, -60.0]; 30]);
        frames.extend(vec![[-60.0, -60.0]; 15]); // 300 ms pause
        frames.extend(vec![[-20.0, -60.0]; 30]);
        frames.extend(vec![[-60.0, -60.0]; 100]);
        let events = run(&mut vad, &frames);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[1], (0, VadEvent::End { at: 175 }));
    }

    #[test]
    fn crosstalk_into_another_seat_is_not_speech_there() {
        let mut vad = Vad::new(VadSettings::default(), 2);
        let mut frames = vec![[-60.0, -60.0]; 100];
        // Speaker on channel 0; channel 1's microphone hears the voice 18 dB down.
        frames.extend(vec![[-20.0, -38.0]; 100]);
        frames.extend(vec![[-60.0, -60.0]; 100]);
        let events = run(&mut vad, &frames);
        assert!(events.iter().all(|(ch, _)| *ch == 0), "{events:?}");
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn a_click_shorter_than_the_onset_is_ignored() {
        let mut vad = Vad::new(VadSettings::default(), 2);
        let mut frames = vec![[-60.0, -60.0]; 100];
        frames.extend(vec![[-10.0, -60.0]; 3]);
        frames.extend(vec![[-60.0, -60.0]; 100]);
        assert!(run(&mut vad, &frames).is_empty());
    }

    #[test]
    fn levels_are_measured_in_dbfs() {
        assert!((dbfs(&[0.5; 100]) - (-6.02)).abs() < 0.01);
        assert_eq!(dbfs(&[0.0; 10]), -120.0);
    }
}
