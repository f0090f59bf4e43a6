//! A test corpus of known court sentences, spoken by espeak-ng (English; Mandarin through
//! its `cmn-latn-pinyin` voice, with the reference in Simplified characters), resampled
//! by sox, and mixed onto seat channels with silence between lines, steady background
//! noise on every channel, and crosstalk (each voice leaks into the other seats'
//! microphones 20 dB down). One seat never speaks. Also: word and character error rates.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TranscribeError;
use crate::core::RATE;

/// A sentence to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sentence {
    /// `en` or `zh`.
    pub language: &'static str,
    /// What espeak-ng reads (English text, or tone-numbered pinyin).
    pub speak: &'static str,
    /// The reference transcript (Mandarin in Simplified characters).
    pub reference: &'static str,
}

const fn en(text: &'static str) -> Sentence {
    Sentence {
        language: "en",
        speak: text,
        reference: text,
    }
}

const fn zh(pinyin: &'static str, hanzi: &'static str) -> Sentence {
    Sentence {
        language: "zh",
        speak: pinyin,
        reference: hanzi,
    }
}

/// English court sentences.
pub const ENGLISH: &[Sentence] = &[
    en("The court is now in session."),
    en("Please state your full name for the record."),
    en("The plaintiff may call the first witness."),
    en("Objection, your honour, the question is leading."),
    en("The objection is sustained."),
    en("Do you swear to tell the truth?"),
    en("The defendant pleads not guilty."),
    en("Please describe what happened on the night of the accident."),
    en("I signed the contract in March."),
    en("The witness may step down."),
    en("We will take a short recess."),
    en("Counsel, please approach the bench."),
    en("The evidence was submitted yesterday."),
    en("The court will disregard that statement."),
    en("Does the defence have any further questions?"),
    en("The hearing is adjourned until tomorrow morning."),
];

/// Mandarin court sentences (pinyin for the voice, characters for the reference).
pub const MANDARIN: &[Sentence] = &[
    zh("xian4 zai4 kai1 ting2", "现在开庭"),
    zh(
        "qing3 yuan2 gao4 chen2 shu4 su4 song4 qing3 qiu2",
        "请原告陈述诉讼请求",
    ),
    zh(
        "bei4 gao4 shi4 fou3 tong2 yi4 tiao2 jie3",
        "被告是否同意调解",
    ),
    zh("qing3 chu1 shi4 xiang1 guan1 zheng4 ju4", "请出示相关证据"),
    zh("ben3 ting2 xuan1 bu4 xiu1 ting2", "本庭宣布休庭"),
    zh("zheng4 ren2 qing3 ru2 shi2 zuo4 zheng4", "证人请如实作证"),
    zh("bei4 gao4 dui4 ci3 you3 wu2 yi4 yi4", "被告对此有无异议"),
    zh(
        "yuan2 gao4 qing3 qiu2 bei4 gao4 zhi1 fu4 huo4 kuan3",
        "原告请求被告支付货款",
    ),
    zh(
        "xia4 mian4 jin4 xing2 fa3 ting2 bian4 lun4",
        "下面进行法庭辩论",
    ),
    zh(
        "qing3 shuang1 fang1 dang1 shi4 ren2 he2 dui4 bi3 lu4",
        "请双方当事人核对笔录",
    ),
];

/// One spoken line of the corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Spoken {
    /// Seat channel it was spoken on.
    pub channel: usize,
    /// Start and end on the timeline, samples.
    pub start: u64,
    pub end: u64,
    pub sentence: Sentence,
}

/// A mixed multi-channel corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// 16 kHz PCM, one vector per channel, equally long.
    pub channels: Vec<Vec<f32>>,
    /// What was said where, in order.
    pub script: Vec<Spoken>,
}

/// How to mix.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Channels (seats).
    pub channels: usize,
    /// The channel that never speaks (noise and crosstalk only).
    pub silent: usize,
    /// Silence between lines, seconds (min, max).
    pub gap_s: (f32, f32),
    /// Peak level of speech on its own channel, dBFS.
    pub speech_peak_dbfs: f32,
    /// Crosstalk into the other channels, dB below the speaker's channel.
    pub crosstalk_db: f32,
    /// Background noise RMS, dBFS, on every channel.
    pub noise_dbfs: f32,
    /// Seed of the noise and the gaps.
    pub seed: u64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            channels: 4,
            silent: 3,
            gap_s: (1.5, 3.0),
            speech_peak_dbfs: -6.0,
            crosstalk_db: 20.0,
            noise_dbfs: -50.0,
            seed: 6,
        }
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Speaks `sentence` with espeak-ng and resamples it to 16 kHz mono with sox, caching the
/// result in `cache`; returns the samples.
pub fn speak(sentence: &Sentence, cache: &Path) -> Result<Vec<f32>, TranscribeError> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        TranscribeError::Corpus(format!("{what} {:?}: {e}", sentence.speak))
    };
    std::fs::create_dir_all(cache).map_err(|e| err("creating the cache for", &e))?;
    let name: String = sentence
        .speak
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect();
    let out: PathBuf = cache.join(format!("{}-{name}.wav", sentence.language));
    if !out.is_file() {
        let raw = cache.join(format!("{}-{name}.raw.wav", sentence.language));
        let voice = if sentence.language == "zh" {
            "cmn-latn-pinyin"
        } else {
            "en-us"
        };
        let status = Command::new("espeak-ng")
            .args(["-v", voice, "-s", "150", "-w"])
            .arg(&raw)
            .arg(sentence.speak)
            .status()
            .map_err(|e| err("running espeak-ng (install it: cargo xtask setup) for", &e))?;
        if !status.success() {
            return Err(err("espeak-ng failed on", &status));
        }
        let status = Command::new("sox")
            .arg(&raw)
            .args(["-r", "16000", "-c", "1", "-b", "16"])
            .arg(&out)
            .status()
            .map_err(|e| err("running sox (install it: cargo xtask setup) for", &e))?;
        let _ = std::fs::remove_file(&raw);
        if !status.success() {
            return Err(err("sox failed on", &status));
        }
    }
    read_wav(&out)
}

/// Reads a 16 kHz mono 16-bit WAV file.
pub fn read_wav(path: &Path) -> Result<Vec<f32>, TranscribeError> {
    let err =
        |e: &dyn std::fmt::Display| TranscribeError::Corpus(format!("{}: {e}", path.display()));
    let mut reader = hound::WavReader::open(path).map_err(|e| err(&e))?;
    let spec = reader.spec();
    if spec.sample_rate != RATE || spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(err(&format!(
            "{} Hz, {} channels, {} bits: 16000 Hz mono 16-bit expected",
            spec.sample_rate, spec.channels, spec.bits_per_sample
        )));
    }
    reader
        .samples::<i16>()
        .map(|s| s.map(|v| f32::from(v) / 32768.0).map_err(|e| err(&e)))
        .collect()
}

/// Writes 16 kHz mono 16-bit WAV.
pub fn write_wav(path: &Path, pcm: &[f32]) -> Result<(), TranscribeError> {
    let err =
        |e: &dyn std::fmt::Display| TranscribeError::Corpus(format!("{}: {e}", path.display()));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| err(&e))?;
    for s in pcm {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .map_err(|e| err(&e))?;
    }
    w.finalize().map_err(|e| err(&e))
}

fn gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Mixes `sentences` onto the seats (every channel but `mix.silent`, in turn).
pub fn generate(
    sentences: &[Sentence],
    mix: &Mix,
    cache: &Path,
) -> Result<Corpus, TranscribeError> {
    let mut rng = Rng(mix.seed.max(1));
    let speakers: Vec<usize> = (0..mix.channels).filter(|c| *c != mix.silent).collect();
    if speakers.is_empty() {
        return Err(TranscribeError::Corpus("no speaking seat".into()));
    }
    let mut script = Vec::new();
    let mut clips = Vec::new();
    let mut at = (RATE as f32 * 1.0) as u64;
    for (i, s) in sentences.iter().enumerate() {
        let mut pcm = speak(s, cache)?;
        let peak = pcm.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let g = gain(mix.speech_peak_dbfs) / peak;
        pcm.iter_mut().for_each(|v| *v *= g);
        let channel = speakers[i % speakers.len()];
        let end = at + pcm.len() as u64;
        script.push(Spoken {
            channel,
            start: at,
            end,
            sentence: *s,
        });
        clips.push((at as usize, channel, pcm));
        let gap = mix.gap_s.0 + (mix.gap_s.1 - mix.gap_s.0) * rng.next();
        at = end + (gap * RATE as f32) as u64;
    }
    let total = at as usize + RATE as usize;
    let noise = gain(mix.noise_dbfs) * 3f32.sqrt(); // uniform in [-a, a] has RMS a/sqrt(3)
    let mut channels: Vec<Vec<f32>> = (0..mix.channels)
        .map(|_| {
            (0..total)
                .map(|_| (rng.next() * 2.0 - 1.0) * noise)
                .collect()
        })
        .collect();
    let leak = gain(-mix.crosstalk_db);
    for (start, channel, pcm) in &clips {
        for (c, out) in channels.iter_mut().enumerate() {
            let g = if c == *channel { 1.0 } else { leak };
            for (o, v) in out[*start..*start + pcm.len()].iter_mut().zip(pcm) {
                *o += v * g;
            }
        }
    }
    Ok(Corpus { channels, script })
}

/// Normalised units for scoring: lower-case words without punctuation (English), or
/// characters without punctuation and spaces (Chinese).
pub fn score_units(text: &str, language: &str) -> Vec<String> {
    if language == "zh" {
        text.chars()
            .filter(|c| c.is_alphanumeric())
            .map(|c| c.to_lowercase().to_string())
            .collect()
    } else {
        text.split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric() || *c == '\'')
                    .collect::<String>()
                    .to_lowercase()
                    .replace("honor", "honour")
                    .replace("defense", "defence")
            })
            .filter(|w| !w.is_empty())
            .collect()
    }
}

/// Edit distance (substitutions, insertions, deletions) between two unit sequences.
pub fn edit_distance(a: &[String], b: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// How a transcript of a corpus scores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    /// Edit distance and reference length, English words.
    pub en_errors: usize,
    pub en_words: usize,
    /// Edit distance and reference length, Mandarin characters.
    pub zh_errors: usize,
    pub zh_chars: usize,
    /// Final lines, and those on a seat that was speaking at the time.
    pub lines: usize,
    pub seat_correct: usize,
    /// Final lines with text on the seat that never spoke.
    pub silent_lines: usize,
}

impl Score {
    /// Word error rate (English), 0-1+.
    pub fn wer(&self) -> f64 {
        self.en_errors as f64 / self.en_words.max(1) as f64
    }
    /// Character error rate (Mandarin).
    pub fn cer(&self) -> f64 {
        self.zh_errors as f64 / self.zh_chars.max(1) as f64
    }
    /// Share of lines labelled with the seat that spoke them.
    pub fn seat_accuracy(&self) -> f64 {
        if self.lines == 0 {
            return 0.0;
        }
        self.seat_correct as f64 / self.lines as f64
    }
}

/// Scores final `lines` (with text) against the corpus's script; `silent` is the seat
/// that never spoke.
pub fn evaluate(corpus: &Corpus, lines: &[crate::core::Line], silent: usize) -> Score {
    let to_samples = |ns: u64| ns * u64::from(RATE) / 1_000_000_000;
    let mut score = Score::default();
    let mut heard: Vec<Vec<String>> = vec![Vec::new(); corpus.script.len()];
    for l in lines.iter().filter(|l| !l.text.trim().is_empty()) {
        score.lines += 1;
        if l.channel == silent {
            score.silent_lines += 1;
        }
        let (from, to) = (
            to_samples(l.offset_ns),
            to_samples(l.offset_ns + l.duration_ns),
        );
        // The spoken line this one overlaps most on the same seat.
        let best = corpus
            .script
            .iter()
            .enumerate()
            .filter(|(_, s)| s.channel == l.channel)
            .map(|(i, s)| (i, to.min(s.end).saturating_sub(from.max(s.start))))
            .filter(|(_, overlap)| *overlap > 0)
            .max_by_key(|(_, overlap)| *overlap);
        if let Some((i, _)) = best {
            score.seat_correct += 1;
            heard[i].push(l.text.clone());
        }
    }
    for (s, h) in corpus.script.iter().zip(heard) {
        let language = s.sentence.language;
        let reference = score_units(s.sentence.reference, language);
        let hypothesis = score_units(&h.join(" "), language);
        let errors = edit_distance(&reference, &hypothesis);
        if language == "zh" {
            score.zh_errors += errors;
            score.zh_chars += reference.len();
        } else {
            score.en_errors += errors;
            score.en_words += reference.len();
        }
    }
    score
}

/// Interleaves the corpus's channels as the recorder's tap receives them (16-bit).
pub fn interleave(channels: &[Vec<f32>]) -> Vec<i16> {
    let n = channels.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(n * channels.len());
    for i in 0..n {
        for c in channels {
            out.push((c[i].clamp(-1.0, 1.0) * 32767.0) as i16);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str, l: &str) -> Vec<String> {
        score_units(s, l)
    }

    #[test]
    fn word_error_counts_substitutions_insertions_and_deletions() {
        let r = u("The court is now in session.", "en");
        assert_eq!(
            edit_distance(&r, &u("the court is now in session", "en")),
            0
        );
        assert_eq!(edit_distance(&r, &u("the cart is in session", "en")), 2);
        assert_eq!(
            edit_distance(&r, &u("the court is now in a session", "en")),
            1
        );
    }

    #[test]
    fn character_error_ignores_punctuation() {
        let r = u("现在开庭", "zh");
        assert_eq!(edit_distance(&r, &u("现在，开庭。", "zh")), 0);
        assert_eq!(edit_distance(&r, &u("现在开", "zh")), 1);
    }
}
