//! Synthetic courtroom footage for tests and benchmarks: textured scenes with people who
//! move and breathe, sensor noise, and the faults the analyzers look for; speech-like
//! multi-channel seat audio with turn-taking, room bleed and microphone self-noise.
//!
//! Everything is generated from a seed, so a fixture set is the same on every run.

use std::f64::consts::PI;

use crate::audio::AudioBlock;
use crate::frame::Frame;

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Roughly normal (sum of uniforms), mean 0, deviation 1.
    pub fn gauss(&mut self) -> f64 {
        (0..4).map(|_| self.f64()).sum::<f64>() * 3f64.sqrt() - 2.0 * 3f64.sqrt()
    }
}

/// Analysis resolution used by the fixtures (the agent decodes to the same).
pub const WIDTH: usize = 320;
pub const HEIGHT: usize = 180;

#[derive(Debug, Clone)]
struct Person {
    x: f64,
    y: f64,
    rx: f64,
    ry: f64,
    level: f64,
    /// How far the person shifts in their seat over a minute (pixels / 40).
    vx: f64,
}

/// A courtroom seen by one camera.
#[derive(Debug, Clone)]
pub struct Scene {
    pub width: usize,
    pub height: usize,
    background: Vec<f32>,
    people: Vec<Person>,
    rng: Rng,
}

impl Scene {
    /// A room: a papered wall, the bench and desks in wood, a few people.
    pub fn room(seed: u64, width: usize, height: usize) -> Self {
        let mut rng = Rng::new(seed);
        let mut bg = vec![0f32; width * height];
        let wall = rng.range(110.0, 190.0);
        let paper_amp = rng.range(10.0, 22.0);
        let paper_period = rng.range(3.0, 7.0);
        let diagonal = rng.f64() < 0.5;
        let horizon = (height as f64 * rng.range(0.35, 0.5)) as usize;
        let floor = rng.range(50.0, 110.0);
        for y in 0..height {
            for x in 0..width {
                let v = if y < horizon {
                    let p = if diagonal { x + y } else { x } as f64;
                    wall + paper_amp * (2.0 * PI * p / paper_period).sin()
                        - (y as f64 / horizon as f64) * 15.0
                } else {
                    floor + 8.0 * ((x as f64 * 0.7 + y as f64 * 1.3).sin())
                };
                bg[y * width + x] = v as f32;
            }
        }
        // Bench, desks, a clock, a window: wood-grained rectangles.
        for _ in 0..rng.range(4.0, 7.0) as usize {
            let w = rng.range(0.12, 0.4) * width as f64;
            let h = rng.range(0.08, 0.25) * height as f64;
            let x0 = rng.range(0.0, width as f64 - w);
            let y0 = rng.range(0.2 * height as f64, height as f64 - h);
            let level = rng.range(30.0, 225.0);
            let grain = rng.range(8.0, 20.0);
            let period = rng.range(2.5, 6.0);
            let phase = rng.range(0.0, 6.0);
            for y in y0 as usize..(y0 + h) as usize {
                for x in x0 as usize..(x0 + w) as usize {
                    let g =
                        grain * ((y as f64 + 0.15 * x as f64) * 2.0 * PI / period + phase).sin();
                    bg[y * width + x] = (level + g) as f32;
                }
            }
        }
        let people = (0..rng.range(2.0, 6.0) as usize)
            .map(|_| Person {
                x: rng.range(0.1, 0.9) * width as f64,
                y: rng.range(0.45, 0.8) * height as f64,
                rx: rng.range(0.03, 0.06) * width as f64,
                ry: rng.range(0.08, 0.16) * height as f64,
                level: rng.range(20.0, 235.0),
                vx: rng.range(-0.3, 0.3),
            })
            .collect();
        Self {
            width,
            height,
            background: bg,
            people,
            rng,
        }
    }

    /// The same room with the camera turned: the picture shifted by `share` of its width.
    pub fn panned(&self, share: f64) -> Self {
        let mut s = self.clone();
        let dx = (share * self.width as f64) as usize;
        for y in 0..self.height {
            for x in 0..self.width {
                let sx = (x + dx) % self.width;
                let sy = (y + self.height / 3) % self.height;
                s.background[y * self.width + x] = self.background[sy * self.width + sx];
            }
        }
        s
    }

    /// The picture at `t` seconds: people sway and drift, lighting breathes a little,
    /// sensor noise on every pixel.
    pub fn render(&mut self, t: f64) -> Frame {
        self.render_with(t, 1.0, 0.0)
    }

    /// The picture at `t` with people moved by up to `agitation` of the width (a fight,
    /// an intrusion) and brightness scaled by `gain`.
    pub fn render_with(&mut self, t: f64, gain: f64, agitation: f64) -> Frame {
        let (w, h) = (self.width, self.height);
        let light = 1.0 + 0.02 * (t * 0.05).sin();
        let mut px: Vec<f64> = self.background.iter().map(|&v| f64::from(v)).collect();
        let people = self.people.clone();
        for p in &people {
            let jx = agitation * w as f64 * self.rng.range(-1.0, 1.0);
            let jy = agitation * h as f64 * self.rng.range(-0.5, 0.5);
            let cx = p.x + 40.0 * p.vx * (t / 60.0).sin() + 1.5 * (t * 0.7 + p.level).sin() + jx;
            let cy = p.y + 0.8 * (t * 1.1 + p.rx).sin() + jy;
            let (rx, ry) = (p.rx * (1.0 + agitation), p.ry);
            let y0 = (cy - ry).max(0.0) as usize;
            let y1 = ((cy + ry) as usize).min(h);
            let x0 = (cx - rx).max(0.0) as usize;
            let x1 = ((cx + rx) as usize).min(w);
            for y in y0..y1 {
                for x in x0..x1 {
                    let dx = (x as f64 - cx) / rx;
                    let dy = (y as f64 - cy) / ry;
                    if dx * dx + dy * dy <= 1.0 {
                        // Clothing folds keep people textured.
                        px[y * w + x] = p.level + 10.0 * ((x + 2 * y) as f64 * 0.9).sin();
                    }
                }
            }
        }
        if agitation > 0.0 {
            // Intruders and swinging arms: bodies where there were none a second ago.
            for _ in 0..4 {
                let cx = self.rng.range(0.1, 0.9) * w as f64;
                let cy = self.rng.range(0.3, 0.8) * h as f64;
                let (rx, ry) = (0.05 * w as f64, 0.14 * h as f64);
                let level = self.rng.range(20.0, 235.0);
                for y in (cy - ry).max(0.0) as usize..((cy + ry) as usize).min(h) {
                    for x in (cx - rx).max(0.0) as usize..((cx + rx) as usize).min(w) {
                        let dx = (x as f64 - cx) / rx;
                        let dy = (y as f64 - cy) / ry;
                        if dx * dx + dy * dy <= 1.0 {
                            px[y * w + x] = level;
                        }
                    }
                }
            }
        }
        let luma = px
            .iter()
            .map(|v| (v * light * gain + 2.0 * self.rng.gauss()).clamp(0.0, 255.0) as u8)
            .collect();
        Frame::grey(w, h, luma)
    }
}

/// Box blur of radius `r` (a camera out of focus).
pub fn blur(f: &Frame, r: usize) -> Frame {
    let (w, h) = (f.width, f.height);
    let src: Vec<f32> = f.luma.iter().map(|&v| f32::from(v)).collect();
    let mut tmp = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (a, b) = (x.saturating_sub(r), (x + r).min(w - 1));
            let s: f32 = src[y * w + a..=y * w + b].iter().sum();
            tmp[y * w + x] = s / (b - a + 1) as f32;
        }
    }
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        let (a, b) = (y.saturating_sub(r), (y + r).min(h - 1));
        for x in 0..w {
            let s: f32 = (a..=b).map(|yy| tmp[yy * w + x]).sum();
            out[y * w + x] = (s / (b - a + 1) as f32).round() as u8;
        }
    }
    Frame::grey(w, h, out)
}

/// A black picture (lens cap, camera off): near zero with sensor noise.
pub fn black(rng: &mut Rng, w: usize, h: usize) -> Frame {
    let luma = (0..w * h)
        .map(|_| (8.0 + 1.0 * rng.gauss()).clamp(0.0, 255.0) as u8)
        .collect();
    Frame::grey(w, h, luma)
}

/// A "no signal" screen: one colour with a small logo, as encoders show without input.
pub fn no_signal(rng: &mut Rng, w: usize, h: usize) -> Frame {
    let level = rng.range(20.0, 120.0) as u8;
    let mut luma = vec![level; w * h];
    for y in h / 2 - 4..h / 2 + 4 {
        for x in w / 2 - 30..w / 2 + 30 {
            if (x / 3 + y / 2) % 2 == 0 {
                luma[y * w + x] = 235;
            }
        }
    }
    Frame::grey(w, h, luma)
}

/// Something in front of the lens (a hand, a cloth): a soft, nearly uniform patch over
/// `share` of the picture.
pub fn occlude(f: &Frame, rng: &mut Rng, share: f64) -> Frame {
    let (w, h) = (f.width, f.height);
    let level = if rng.f64() < 0.5 {
        rng.range(140.0, 190.0)
    } else {
        rng.range(15.0, 60.0)
    };
    let from_left = rng.f64() < 0.5;
    let edge = share * w as f64;
    let mut out = f.clone();
    for y in 0..h {
        for x in 0..w {
            let pos = if from_left {
                x as f64
            } else {
                (w - 1 - x) as f64
            };
            // A wavy edge, softened over a few pixels.
            let e = edge + 8.0 * (y as f64 * 0.08).sin();
            if pos < e {
                let v = level + 10.0 * (y as f64 / h as f64) + 1.0 * rng.gauss();
                out.luma[y * w + x] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Sample rate of the synthetic audio.
pub const RATE: u32 = 8000;

/// Speech-like sound: voiced syllables of a few harmonics with a pitch contour and an
/// envelope, in phrases separated by pauses. Amplitude ~1 while voiced.
pub fn speech(rng: &mut Rng, samples: usize, rate: u32) -> Vec<f32> {
    let mut out = vec![0f32; samples];
    let f0 = rng.range(95.0, 230.0);
    let mut i = 0usize;
    let sr = f64::from(rate);
    while i < samples {
        // A phrase of syllables.
        let syllables = rng.range(3.0, 10.0) as usize;
        for _ in 0..syllables {
            let len = (rng.range(0.12, 0.3) * sr) as usize;
            let pitch = f0 * rng.range(0.85, 1.2);
            let mut phase = 0.0f64;
            for k in 0..len {
                if i + k >= samples {
                    break;
                }
                let env = (PI * k as f64 / len as f64).sin();
                phase += 2.0 * PI * pitch / sr;
                let mut v = 0.0;
                for (n, a) in [(1.0, 1.0), (2.0, 0.6), (3.0, 0.4), (4.0, 0.25), (5.0, 0.15)] {
                    v += a * (phase * n).sin();
                }
                out[i + k] = (0.6 * env * v) as f32;
            }
            i += len + (rng.range(0.04, 0.15) * sr) as usize;
        }
        i += (rng.range(0.3, 1.0) * sr) as usize;
    }
    out
}

fn db(level: f64) -> f64 {
    10f64.powf(level / 20.0)
}

/// A fault on the room's seat microphones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AudioFault {
    None,
    /// The channel delivers nothing.
    Dead(usize),
    /// Mains hum and hiss on the channel.
    Noisy(usize),
    /// The channel's gain is far too high: speech clips.
    Clipped(usize),
    /// Nobody speaks (microphones on).
    Silent,
    /// Shouting on every channel.
    Shouting,
}

/// `seconds` of room audio on `channels` seat microphones: seats take turns speaking,
/// every microphone hears its own seat loud and the others through the room.
pub fn room_audio(seed: u64, seconds: f64, channels: usize, fault: AudioFault) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let frames = (seconds * f64::from(RATE)) as usize;
    let mut out = vec![0f32; frames * channels];
    // Turns of 3-10 s, in rounds where every seat speaks once, in a random order.
    let mut turns = Vec::new();
    let mut t = 0usize;
    'rounds: loop {
        let mut order: Vec<usize> = (0..channels).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() as usize) % (i + 1));
        }
        for seat in order {
            if t >= frames {
                break 'rounds;
            }
            let len = (rng.range(3.0, 10.0) * f64::from(RATE)) as usize;
            turns.push((t, (t + len).min(frames), seat));
            t += len;
        }
    }
    let talk_level = db(rng.range(-24.0, -18.0));
    let self_noise = db(rng.range(-62.0, -56.0));
    for (start, end, seat) in turns {
        if fault == AudioFault::Silent {
            break;
        }
        let voice = speech(&mut rng, end - start, RATE);
        let level = if fault == AudioFault::Shouting {
            // Peaks just under full scale: loud, not clipped.
            0.98 / 1.44
        } else {
            talk_level
        };
        for (k, v) in voice.iter().enumerate() {
            for c in 0..channels {
                let gain = match fault {
                    // A talker far too loud for the channel's gain: their speech clips.
                    AudioFault::Clipped(d) if d == c && c == seat => db(26.0),
                    _ if c == seat => 1.0,
                    _ => db(-24.0),
                };
                out[(start + k) * channels + c] += (f64::from(*v) * level * gain) as f32;
            }
        }
    }
    let mut hum_phase = 0.0f64;
    for i in 0..frames {
        hum_phase += 2.0 * PI * 50.0 / f64::from(RATE);
        for c in 0..channels {
            let s = &mut out[i * channels + c];
            *s += (self_noise * rng.gauss()) as f32;
            match fault {
                AudioFault::Dead(d) if d == c => *s = 0.0,
                AudioFault::Noisy(d) if d == c => {
                    let hum = hum_phase.sin() + 0.5 * (3.0 * hum_phase).sin();
                    *s += (db(-30.0) * hum + db(-38.0) * rng.gauss()) as f32;
                }
                _ => {}
            }
            *s = s.clamp(-1.0, 1.0);
        }
    }
    out
}

/// Cuts interleaved audio into blocks of `block_s` seconds.
pub fn blocks(samples: &[f32], channels: usize, block_s: f64) -> Vec<AudioBlock> {
    let per = (block_s * f64::from(RATE)) as usize * channels;
    samples
        .chunks(per)
        .map(|c| AudioBlock {
            rate: RATE,
            channels,
            samples: c.to_vec(),
        })
        .collect()
}
