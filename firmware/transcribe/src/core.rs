//! The streaming core: sans-I/O, clocked by the audio itself (sample counts on the
//! hearing's recording timeline), never reading the clock, never calling whisper.
//!
//! It takes blocks of 16 kHz PCM for every seat channel of a source, finds utterances
//! with the voice activity detector, asks for decodes ([`Output::Decode`]) and turns the
//! answers ([`Input::Decoded`]) into partial and final lines ([`Output::Line`]).
//!
//! Design: at most one decode per channel is outstanding. While an utterance grows, a
//! partial decode is asked for every `partial_every_ms` of new audio, only when the
//! channel has none outstanding: a slow engine gets fewer partials, never a queue of
//! them. A finished utterance waits (in order) for its final decode. Partials are
//! stabilised by local agreement ([`crate::stabilise`]), so the words of a line only grow;
//! the final keeps every committed word. Lines are numbered per channel from 0 when they
//! first show text; an utterance that yields no text never takes a number.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::stabilise::{Agreement, join, units};
use crate::vad::{Vad, VadEvent, VadSettings, dbfs};

/// Sample rate of everything the core handles, Hz.
pub const RATE: u32 = 16_000;

/// Streaming settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreSettings {
    /// Voice activity detection.
    pub vad: VadSettings,
    /// Audio kept before the detected start of speech, milliseconds.
    pub pre_roll_ms: u32,
    /// A partial decode is asked for after this much new audio, milliseconds; 0: none.
    pub partial_every_ms: u32,
    /// Longer utterances are cut into lines of at most this length, milliseconds.
    pub max_utterance_ms: u32,
    /// Utterances with less speech than this are dropped (clicks, coughs), milliseconds.
    pub min_speech_ms: u32,
    /// A decode whose no-speech probability is above this yields no text.
    pub max_no_speech: f32,
}

impl Default for CoreSettings {
    fn default() -> Self {
        Self {
            vad: VadSettings::default(),
            pre_roll_ms: 200,
            partial_every_ms: 1000,
            max_utterance_ms: 20_000,
            min_speech_ms: 300,
            max_no_speech: 0.8,
        }
    }
}

/// What whisper made of some audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Text (for Chinese, the core converts it to Simplified characters).
    pub text: String,
    /// Language of the text (`en`, `zh`).
    pub language: String,
    /// Mean token probability, 0-1.
    pub confidence: f32,
    /// Probability that the audio held no speech, 0-1.
    pub no_speech: f32,
}

/// The answer to a decode.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Done(Hypothesis),
    /// The shell skipped the (partial) decode, being behind.
    Skipped,
    Failed(String),
}

/// What the core is given.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The next block of audio, one equally long vector per channel.
    Audio(Vec<Vec<f32>>),
    /// This many samples were lost (the tap overflowed): open utterances end here and the
    /// timeline moves on.
    Gap(u64),
    /// The answer to decode `job`.
    Decoded { job: u64, result: Decoded },
    /// End of the audio: every open utterance is finished.
    Flush,
}

/// Partial (the line is still being spoken) or final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Partial,
    Final,
}

/// A decode the shell must run.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Identifies the answer.
    pub id: u64,
    /// Seat channel.
    pub channel: usize,
    /// Partial (may be skipped) or final (must be run).
    pub stage: Stage,
    /// 16 kHz mono PCM of the utterance so far.
    pub pcm: Vec<f32>,
    /// End of the audio on the timeline (samples), for latency accounting.
    pub end_sample: u64,
}

/// A transcript line (partial or final).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Seat channel.
    pub channel: usize,
    /// Line number within the channel, from 0.
    pub line: u64,
    pub stage: Stage,
    /// Start of speech on the timeline, nanoseconds.
    pub offset_ns: u64,
    /// Length of the speech, nanoseconds (for partials: so far).
    pub duration_ns: u64,
    pub text: String,
    pub language: String,
    /// Mean token probability of the decode it came from.
    pub confidence: f32,
}

/// What the core asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Decode(Job),
    Line(Line),
}

/// An utterance being spoken or waiting for its final decode.
#[derive(Debug, Clone)]
struct Utterance {
    /// Line number, once it has shown text.
    line: Option<u64>,
    /// Timeline sample of `pcm[0]`.
    start: u64,
    /// Timeline sample where speech began.
    speech_start: u64,
    /// Timeline sample where speech ended (finished utterances).
    speech_end: u64,
    pcm: Vec<f32>,
    /// `pcm.len()` at the last partial request.
    partial_len: usize,
    agreement: Agreement,
    /// Text of the last partial line sent.
    shown: String,
}

/// State of one seat channel.
#[derive(Debug, Clone, Default)]
struct Channel {
    /// Audio before the current utterance (pre-roll), bounded.
    history: VecDeque<f32>,
    /// The utterance being spoken.
    open: Option<Utterance>,
    /// Finished utterances waiting for a final decode, oldest first.
    finished: VecDeque<Utterance>,
    /// The outstanding decode: job id, stage.
    busy: Option<(u64, Stage)>,
    next_line: u64,
}

/// The streaming core of one source.
#[derive(Debug, Clone)]
pub struct Core {
    settings: CoreSettings,
    vad: Vad,
    channels: Vec<Channel>,
    /// Samples of each channel not yet analysed (less than a frame).
    pending: Vec<Vec<f32>>,
    /// Timeline position of the next sample to analyse.
    position: u64,
    /// Timeline position of the detector's frame 0 (it restarts after a gap).
    vad_origin: u64,
    next_job: u64,
}

fn ns(samples: u64) -> u64 {
    samples * 1_000_000_000 / u64::from(RATE)
}

fn ms_samples(ms: u32) -> usize {
    (RATE as usize / 1000) * ms as usize
}

/// Strips whisper's non-speech annotations (`[BLANK_AUDIO]`, `(music)`, `*cough*`) and
/// surrounding space.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut star = false;
    for c in text.chars() {
        match c {
            '[' | '(' | '（' | '【' => depth += 1,
            ']' | ')' | '）' | '】' => depth = depth.saturating_sub(1),
            '*' => star = !star,
            _ if depth == 0 && !star => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs of one phrase repeated this many times or more are a decoding loop, not speech
/// (a single word or character: [`LOOP_REPEATS_ONE`], people do say "no, no, no, no").
const LOOP_REPEATS: usize = 4;
const LOOP_REPEATS_ONE: usize = 7;
/// Longest phrase (words, or characters for Chinese) looked for in a loop.
const LOOP_PHRASE: usize = 12;

/// Collapses whisper's decoding loops ("the court is at, the court is at, ..." on a short
/// or unclear stretch of audio) to one occurrence of the phrase: a run of
/// [`LOOP_REPEATS`] or more back-to-back copies of a phrase of up to [`LOOP_PHRASE`]
/// words (characters for Chinese and other text without spaces).
pub fn collapse_loops(text: &str, language: &str) -> String {
    let by_char = language.starts_with("zh") || !text.contains(char::is_whitespace);
    let units: Vec<String> = if by_char {
        text.chars().map(String::from).collect()
    } else {
        text.split_whitespace().map(String::from).collect()
    };
    let mut out: Vec<&str> = Vec::with_capacity(units.len());
    let mut i = 0;
    'scan: while i < units.len() {
        for n in 1..=LOOP_PHRASE.min((units.len() - i) / LOOP_REPEATS) {
            let needed = if n == 1 {
                LOOP_REPEATS_ONE
            } else {
                LOOP_REPEATS
            };
            let phrase = &units[i..i + n];
            let mut copies = 1;
            while i + (copies + 1) * n <= units.len()
                && units[i + copies * n..i + (copies + 1) * n] == *phrase
            {
                copies += 1;
            }
            if copies >= needed {
                out.extend(phrase.iter().map(String::as_str));
                i += copies * n;
                continue 'scan;
            }
        }
        out.push(&units[i]);
        i += 1;
    }
    out.join(if by_char { "" } else { " " })
}

impl Core {
    /// A core for `channels` seat channels.
    pub fn new(settings: CoreSettings, channels: usize) -> Self {
        Self {
            vad: Vad::new(settings.vad.clone(), channels),
            settings,
            channels: vec![Channel::default(); channels],
            pending: vec![Vec::new(); channels],
            position: 0,
            vad_origin: 0,
            next_job: 0,
        }
    }

    /// Timeline position (samples) of the next sample the core expects.
    pub fn position(&self) -> u64 {
        self.position + self.pending.first().map_or(0, |p| p.len() as u64)
    }

    /// Audio held for decoding (open and finished utterances), samples: the shell stops
    /// draining its tap while this is high, so memory stays bounded.
    pub fn backlog(&self) -> usize {
        self.channels
            .iter()
            .map(|c| {
                c.open.as_ref().map_or(0, |u| u.pcm.len())
                    + c.finished.iter().map(|u| u.pcm.len()).sum::<usize>()
            })
            .sum()
    }

    /// Whether every utterance has had its final decode.
    pub fn idle(&self) -> bool {
        self.channels
            .iter()
            .all(|c| c.open.is_none() && c.finished.is_empty() && c.busy.is_none())
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Audio(blocks) => self.audio(blocks),
            Input::Gap(samples) => {
                let at = self.position();
                for ch in 0..self.channels.len() {
                    self.finish(ch, at);
                    self.channels[ch].history.clear();
                    self.pending[ch].clear();
                }
                self.vad = Vad::new(self.settings.vad.clone(), self.channels.len());
                self.position = at + samples;
                self.vad_origin = self.position;
            }
            Input::Decoded { job, result } => self.decoded(job, result, &mut out),
            Input::Flush => {
                let at = self.position();
                for ch in 0..self.channels.len() {
                    self.finish(ch, at);
                }
            }
        }
        for ch in 0..self.channels.len() {
            self.dispatch(ch, &mut out);
        }
        out
    }

    fn audio(&mut self, blocks: Vec<Vec<f32>>) {
        let frame = self.vad.frame_len(RATE);
        for (p, b) in self.pending.iter_mut().zip(blocks) {
            p.extend_from_slice(&b);
        }
        let available = self.pending.iter().map(Vec::len).min().unwrap_or(0);
        let frames = available / frame;
        let keep =
            ms_samples(self.settings.pre_roll_ms) + ms_samples(self.settings.vad.onset_ms) + frame;
        let max = ms_samples(self.settings.max_utterance_ms).max(frame);
        for f in 0..frames {
            let range = f * frame..(f + 1) * frame;
            let levels: Vec<f32> = self
                .pending
                .iter()
                .map(|p| dbfs(&p[range.clone()]))
                .collect();
            let events = self.vad.frame(&levels);
            let frame_start = self.position;
            self.position += frame as u64;
            for (ch, event) in events.into_iter().enumerate() {
                let samples = &self.pending[ch][range.clone()];
                let c = &mut self.channels[ch];
                match &mut c.open {
                    Some(u) => u.pcm.extend_from_slice(samples),
                    None => {
                        c.history.extend(samples.iter().copied());
                        while c.history.len() > keep {
                            c.history.pop_front();
                        }
                    }
                }
                match event {
                    Some(VadEvent::Start { at }) => {
                        let speech_start = self.vad_origin + at * frame as u64;
                        let start = self.position - c.history.len() as u64;
                        let pre = ms_samples(self.settings.pre_roll_ms) as u64;
                        let skip = speech_start.saturating_sub(pre).saturating_sub(start);
                        let pcm: Vec<f32> = c.history.drain(..).skip(skip as usize).collect();
                        c.open = Some(Utterance {
                            line: None,
                            start: start + skip,
                            speech_start,
                            speech_end: 0,
                            pcm,
                            partial_len: 0,
                            agreement: Agreement::default(),
                            shown: String::new(),
                        });
                    }
                    Some(VadEvent::End { at }) => {
                        self.finish(ch, self.vad_origin + at * frame as u64)
                    }
                    None => {
                        let too_long = self.channels[ch]
                            .open
                            .as_ref()
                            .is_some_and(|u| u.pcm.len() >= max);
                        if too_long {
                            // Cut: this line ends here, the next starts at once.
                            let at = frame_start + frame as u64;
                            self.finish(ch, at);
                            self.channels[ch].open = Some(Utterance {
                                line: None,
                                start: at,
                                speech_start: at,
                                speech_end: 0,
                                pcm: Vec::new(),
                                partial_len: 0,
                                agreement: Agreement::default(),
                                shown: String::new(),
                            });
                        }
                    }
                }
            }
        }
        for p in &mut self.pending {
            p.drain(..frames * frame);
        }
    }

    /// Ends channel `ch`'s open utterance with speech ending at sample `at`; too little
    /// speech is dropped, the rest waits for its final decode.
    fn finish(&mut self, ch: usize, at: u64) {
        let min = ms_samples(self.settings.min_speech_ms) as u64;
        let c = &mut self.channels[ch];
        if let Some(mut u) = c.open.take() {
            u.speech_end = at.max(u.speech_start);
            if u.speech_end - u.speech_start >= min || u.line.is_some() {
                c.finished.push_back(u);
            }
        }
    }

    fn dispatch(&mut self, ch: usize, out: &mut Vec<Output>) {
        let every = ms_samples(self.settings.partial_every_ms);
        let c = &mut self.channels[ch];
        if c.busy.is_some() {
            return;
        }
        let id = self.next_job;
        let job = if let Some(u) = c.finished.front() {
            Job {
                id,
                channel: ch,
                stage: Stage::Final,
                pcm: u.pcm.clone(),
                end_sample: u.start + u.pcm.len() as u64,
            }
        } else if let Some(u) = c
            .open
            .as_mut()
            .filter(|u| every > 0 && u.pcm.len() >= u.partial_len + every)
        {
            u.partial_len = u.pcm.len();
            Job {
                id,
                channel: ch,
                stage: Stage::Partial,
                pcm: u.pcm.clone(),
                end_sample: u.start + u.pcm.len() as u64,
            }
        } else {
            return;
        };
        self.next_job += 1;
        c.busy = Some((id, job.stage));
        out.push(Output::Decode(job));
    }

    fn decoded(&mut self, job: u64, result: Decoded, out: &mut Vec<Output>) {
        let max_no_speech = self.settings.max_no_speech;
        let Some(ch) = self
            .channels
            .iter()
            .position(|c| c.busy.is_some_and(|(id, _)| id == job))
        else {
            return;
        };
        let c = &mut self.channels[ch];
        let Some((_, stage)) = c.busy.take() else {
            return;
        };
        let hypothesis = match result {
            Decoded::Done(h) => Some(h),
            Decoded::Skipped | Decoded::Failed(_) => None,
        };
        let hypothesis = hypothesis.map(|mut h| {
            h.text = if h.no_speech > max_no_speech {
                String::new()
            } else {
                simplify(&collapse_loops(&clean(&h.text), &h.language), &h.language)
            };
            h
        });
        match stage {
            Stage::Partial => {
                // The partial belongs to the open utterance, or to one that has finished
                // meanwhile (then it still feeds the agreement).
                let Some(h) = hypothesis else { return };
                let u = match c.open.as_mut() {
                    Some(u) if c.finished.is_empty() => u,
                    _ => match c.finished.back_mut() {
                        Some(u) => u,
                        None => return,
                    },
                };
                let (committed, tail) = u.agreement.update(units(&h.text, &h.language));
                let mut shown = committed.to_vec();
                shown.extend(tail);
                let text = join(&shown, &h.language);
                if text.is_empty() || text == u.shown {
                    return;
                }
                u.shown = text.clone();
                let line = *u.line.get_or_insert_with(|| {
                    c.next_line += 1;
                    c.next_line - 1
                });
                let end = u.start + u.pcm.len() as u64;
                out.push(Output::Line(Line {
                    channel: ch,
                    line,
                    stage: Stage::Partial,
                    offset_ns: ns(u.speech_start),
                    duration_ns: ns(end.saturating_sub(u.speech_start)),
                    text,
                    language: h.language,
                    confidence: h.confidence,
                }));
            }
            Stage::Final => {
                let Some(u) = c.finished.pop_front() else {
                    return;
                };
                let (text, language, confidence) = match hypothesis {
                    Some(h) => {
                        let words = u.agreement.finish(&units(&h.text, &h.language));
                        (join(&words, &h.language), h.language, h.confidence)
                    }
                    None => (String::new(), String::new(), 0.0),
                };
                // No text and nothing shown: the utterance never becomes a line.
                if text.is_empty() && u.line.is_none() {
                    return;
                }
                let line = u.line.unwrap_or_else(|| {
                    c.next_line += 1;
                    c.next_line - 1
                });
                out.push(Output::Line(Line {
                    channel: ch,
                    line,
                    stage: Stage::Final,
                    offset_ns: ns(u.speech_start),
                    duration_ns: ns(u.speech_end - u.speech_start),
                    text,
                    language: if language.is_empty() {
                        "und".into()
                    } else {
                        language
                    },
                    confidence,
                }));
            }
        }
    }
}

/// `text` in Simplified characters when it is Chinese.
pub fn simplify(text: &str, language: &str) -> String {
    if language == "zh" {
        zhconv::zhconv(text, zhconv::Variant::ZhHans)
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two channels: `speech` (ranges in ms) of a 440 Hz tone at -12 dBFS on channel 0,
    /// low noise on both.
    fn audio(total_ms: u32, speech: &[(u32, u32)]) -> Vec<Vec<f32>> {
        let n = ms_samples(total_ms);
        let mut rng = 12345u32;
        let mut noise = || {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((rng >> 16) as f32 / 32768.0 - 1.0) * 0.001
        };
        let mut a: Vec<f32> = (0..n).map(|_| noise()).collect();
        let b: Vec<f32> = (0..n).map(|_| noise()).collect();
        for &(from, to) in speech {
            for (i, s) in a
                .iter_mut()
                .enumerate()
                .take(ms_samples(to))
                .skip(ms_samples(from))
            {
                *s += 0.35 * (i as f32 * 440.0 * std::f32::consts::TAU / RATE as f32).sin();
            }
        }
        vec![a, b]
    }

    fn hyp(text: &str) -> Decoded {
        Decoded::Done(Hypothesis {
            text: text.into(),
            language: "en".into(),
            confidence: 0.9,
            no_speech: 0.01,
        })
    }

    /// Feeds `blocks` in 100 ms pieces; answers every decode with `answer(job)`.
    fn run(
        core: &mut Core,
        blocks: Vec<Vec<f32>>,
        mut answer: impl FnMut(&Job) -> Decoded,
    ) -> (Vec<Job>, Vec<Line>) {
        let step = ms_samples(100);
        let n = blocks[0].len();
        let (mut jobs, mut lines) = (Vec::new(), Vec::new());
        let mut queue: Vec<Output> = Vec::new();
        let mut at = 0;
        loop {
            if at < n {
                let end = (at + step).min(n);
                queue.extend(core.handle(Input::Audio(
                    blocks.iter().map(|b| b[at..end].to_vec()).collect(),
                )));
                at = end;
            } else if queue.is_empty() {
                queue.extend(core.handle(Input::Flush));
                if queue.is_empty() {
                    break;
                }
            }
            while let Some(o) = queue.pop() {
                match o {
                    Output::Decode(job) => {
                        let result = answer(&job);
                        queue.extend(core.handle(Input::Decoded {
                            job: job.id,
                            result,
                        }));
                        jobs.push(job);
                    }
                    Output::Line(l) => lines.push(l),
                }
            }
        }
        (jobs, lines)
    }

    #[test]
    fn silence_and_noise_never_reach_the_engine() {
        let mut core = Core::new(CoreSettings::default(), 2);
        let (jobs, lines) = run(&mut core, audio(20_000, &[]), |_| hyp("hallucinated"));
        assert!(jobs.is_empty());
        assert!(lines.is_empty());
        assert!(core.idle());
    }

    #[test]
    fn an_utterance_yields_growing_partials_then_one_final_on_the_timeline() {
        let mut core = Core::new(CoreSettings::default(), 2);
        let words = ["the", "court", "is", "now", "in", "session"];
        let (jobs, lines) = run(&mut core, audio(8000, &[(2000, 5000)]), |job| {
            let secs = job.pcm.len() / RATE as usize;
            hyp(&words[..(secs * 2).min(words.len())].join(" "))
        });
        assert!(jobs.iter().all(|j| j.channel == 0));
        let finals: Vec<_> = lines.iter().filter(|l| l.stage == Stage::Final).collect();
        assert_eq!(finals.len(), 1, "{lines:?}");
        let f = finals[0];
        assert_eq!(f.line, 0);
        assert_eq!(f.text, "the court is now in session");
        // Speech began at 2.0 s and lasted 3 s (to the frame).
        assert!(
            (f.offset_ns as i64 - 2_000_000_000).abs() <= 20_000_000,
            "{f:?}"
        );
        assert!(
            (f.duration_ns as i64 - 3_000_000_000).abs() <= 40_000_000,
            "{f:?}"
        );
        let partials: Vec<_> = lines.iter().filter(|l| l.stage == Stage::Partial).collect();
        assert!(!partials.is_empty());
        assert!(partials.iter().all(|p| p.line == 0));
        for pair in partials.windows(2) {
            assert!(
                pair[1].text.starts_with(&pair[0].text) || pair[0].text.len() > pair[1].text.len()
            );
        }
    }

    #[test]
    fn committed_words_survive_a_final_decode_that_disagrees() {
        let mut core = Core::new(CoreSettings::default(), 2);
        let (_, lines) = run(&mut core, audio(8000, &[(1000, 5000)]), |job| {
            match job.stage {
                Stage::Partial => hyp("please rise for the"),
                Stage::Final => hyp("Police rise for the judge."),
            }
        });
        let f = lines
            .iter()
            .find(|l| l.stage == Stage::Final)
            .expect("final");
        assert_eq!(f.text, "please rise for the judge.");
    }

    #[test]
    fn lines_are_numbered_per_channel_in_order_and_empty_decodes_take_no_number() {
        let mut core = Core::new(CoreSettings::default(), 2);
        let mut n = 0;
        let (_, lines) = run(
            &mut core,
            audio(12_000, &[(1000, 2500), (4000, 5500), (8000, 9500)]),
            |job| {
                if job.stage == Stage::Partial {
                    return Decoded::Skipped;
                }
                n += 1;
                hyp(if n == 2 { "[BLANK_AUDIO]" } else { "objection" })
            },
        );
        let finals: Vec<_> = lines
            .iter()
            .map(|l| (l.line, l.offset_ns / 1_000_000_000))
            .collect();
        assert_eq!(finals, vec![(0, 1), (1, 8)]);
    }

    #[test]
    fn long_speech_is_cut_into_lines_of_bounded_length() {
        let settings = CoreSettings {
            max_utterance_ms: 5000,
            ..CoreSettings::default()
        };
        let mut core = Core::new(settings, 2);
        // Syllables: 250 ms of voice, 100 ms pauses (a steady tone would become the floor).
        let syllables: Vec<(u32, u32)> = (0..41).map(|k| (500 + 350 * k, 750 + 350 * k)).collect();
        let (jobs, lines) = run(&mut core, audio(16_000, &syllables), |_| hyp("words"));
        assert!(
            jobs.iter()
                .all(|j| j.pcm.len() <= ms_samples(5000) + ms_samples(400))
        );
        let finals = lines.iter().filter(|l| l.stage == Stage::Final).count();
        assert!(finals >= 3, "{lines:?}");
    }

    #[test]
    fn a_gap_ends_the_open_utterance_and_moves_the_timeline_on() {
        let mut core = Core::new(CoreSettings::default(), 2);
        let mut out = core.handle(Input::Audio(audio(3000, &[(1000, 3000)])));
        out.extend(core.handle(Input::Gap(u64::from(RATE) * 10)));
        assert_eq!(core.position(), u64::from(RATE) * 13);
        let jobs: Vec<_> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Decode(j) => Some(j),
                Output::Line(_) => None,
            })
            .collect();
        // A partial was outstanding: the final follows its answer.
        assert_eq!(jobs.len(), 1);
        let out = core.handle(Input::Decoded {
            job: jobs[0].id,
            result: Decoded::Skipped,
        });
        assert!(matches!(
            &out[..],
            [Output::Decode(Job {
                stage: Stage::Final,
                ..
            })]
        ));
    }

    #[test]
    fn traditional_chinese_output_is_converted_to_simplified() {
        assert_eq!(
            simplify("現在開庭，請原告陳述訴訟請求。", "zh"),
            "现在开庭，请原告陈述诉讼请求。"
        );
        assert_eq!(simplify("Objection.", "en"), "Objection.");
    }

    #[test]
    fn decoding_loops_collapse_to_one_phrase_and_speech_is_left_alone() {
        let looped = "the court is at, ".repeat(43);
        assert_eq!(collapse_loops(looped.trim(), "en"), "the court is at,");
        assert_eq!(collapse_loops(&"yes ".repeat(9), "en"), "yes");
        assert_eq!(collapse_loops("原告原告原告原告原告请求", "zh"), "原告请求");
        // Real speech repeats less: kept as said.
        for said in [
            "Please state your full name for the record.",
            "No, no, no, that is not what happened.",
            "现在开庭，请原告陈述诉讼请求。",
            "谢谢谢谢",
            "Objection. No no no no no no. Sustained.",
        ] {
            let language = if said.is_ascii() { "en" } else { "zh" };
            assert_eq!(collapse_loops(said, language), said);
        }
    }

    #[test]
    fn whisper_annotations_are_not_text() {
        assert_eq!(clean(" [BLANK_AUDIO] "), "");
        assert_eq!(
            clean("(upbeat music) Please be seated. *cough*"),
            "Please be seated."
        );
    }
}
