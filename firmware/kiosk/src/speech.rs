//! Spoken announcements of called numbers: espeak-ng through GStreamer (`espeak` element
//! from gstreamer1.0-espeak).
//!
//! [`announcement`] composes the words (pure); [`speak`] renders them to the sound card
//! or, with an output folder, to one WAV file per language (tests, demos, rigs without
//! speakers). espeak-ng reads Chinese characters poorly, so the Chinese sentence is spoken
//! from its pinyin with the `cmn-latn-pinyin` voice and shown in characters.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

/// One sentence in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    /// `zh` or `en`.
    pub lang: &'static str,
    /// The sentence as shown.
    pub text: String,
    /// What the voice reads.
    pub spoken: String,
    /// espeak-ng voice.
    pub voice: &'static str,
}

fn pinyin_digit(d: char) -> Option<&'static str> {
    Some(match d {
        '0' => "ling2",
        // Design: in numbers read aloud one is "yao1", which is not mistaken for seven.
        '1' => "yao1",
        '2' => "er4",
        '3' => "san1",
        '4' => "si4",
        '5' => "wu3",
        '6' => "liu4",
        '7' => "qi1",
        '8' => "ba1",
        '9' => "jiu3",
        _ => return None,
    })
}

/// Reads a number or window name character by character, in pinyin.
fn pinyin(s: &str) -> String {
    s.chars()
        .map(|c| {
            pinyin_digit(c)
                .map(str::to_owned)
                .unwrap_or_else(|| c.to_string())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads a number character by character, in English.
fn spelled(s: &str) -> String {
    s.chars()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The announcement of `number` called to `window`, in each of `languages` (`zh`, `en`;
/// others are skipped).
pub fn announcement(number: &str, window: &str, languages: &[String]) -> Vec<Utterance> {
    languages
        .iter()
        .filter_map(|lang| match lang.as_str() {
            "zh" => Some(Utterance {
                lang: "zh",
                text: format!("请 {number} 号到 {window} 号窗口"),
                spoken: format!(
                    "qing3 {} hao4, dao4 {} hao4 chuang1 kou3",
                    pinyin(number),
                    pinyin(window)
                ),
                voice: "cmn-latn-pinyin",
            }),
            "en" => Some(Utterance {
                lang: "en",
                text: format!("Number {number}, please go to window {window}"),
                spoken: format!("Number {}, please go to window {}", spelled(number), window),
                voice: "en",
            }),
            _ => None,
        })
        .collect()
}

/// Why an announcement could not be spoken.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("GStreamer: {0} (is gstreamer1.0-espeak installed?)")]
    Pipeline(String),
    #[error("speech did not finish within {0:?}")]
    Timeout(Duration),
}

fn pipe_err(e: impl std::fmt::Display) -> SpeechError {
    SpeechError::Pipeline(e.to_string())
}

/// Speaks `u`: to the default audio output, or into `out_dir/<stem>-<lang>.wav` when an
/// output folder is given. Blocking (run it on a blocking thread); returns the WAV file.
pub fn speak(
    u: &Utterance,
    out_dir: Option<&Path>,
    stem: &str,
) -> Result<Option<PathBuf>, SpeechError> {
    gst::init().map_err(pipe_err)?;
    let file = out_dir.map(|d| d.join(format!("{stem}-{}.wav", u.lang)));
    let sink = match &file {
        Some(f) => format!(
            "wavenc ! filesink location=\"{}\"",
            f.display().to_string().replace('"', "")
        ),
        None => "autoaudiosink".to_owned(),
    };
    let pipeline = gst::parse::launch(&format!(
        "espeak name=tts ! audioconvert ! audioresample ! audio/x-raw,rate=22050,channels=1 ! {sink}"
    ))
    .map_err(pipe_err)?;
    let pipeline = pipeline
        .downcast::<gst::Pipeline>()
        .map_err(|_| pipe_err("not a pipeline"))?;
    let tts = pipeline
        .by_name("tts")
        .ok_or_else(|| pipe_err("no espeak element"))?;
    tts.set_property("voice", u.voice);
    tts.set_property("text", u.spoken.as_str());
    let bus = pipeline.bus().ok_or_else(|| pipe_err("no bus"))?;
    pipeline.set_state(gst::State::Playing).map_err(pipe_err)?;
    let limit = Duration::from_secs(30);
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(limit.as_secs())) else {
            break Err(SpeechError::Timeout(limit));
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(file),
            gst::MessageView::Error(e) => break Err(pipe_err(e.error())),
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Root-mean-square level of a 16-bit PCM WAV file relative to full scale (0.0-1.0), and
/// its duration in seconds: a test's proof that something audible was rendered.
pub fn wav_level(path: &Path) -> std::io::Result<(f64, f64)> {
    let bytes = std::fs::read(path)?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    if bytes.len() < 44 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a WAV file"));
    }
    // Walk the chunks for `fmt ` and `data`.
    let (mut pos, mut rate, mut channels, mut data) = (12usize, 0u32, 0u16, None);
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 16 <= bytes.len() {
            channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]);
            rate = u32::from_le_bytes([
                bytes[body + 4],
                bytes[body + 5],
                bytes[body + 6],
                bytes[body + 7],
            ]);
        }
        if id == b"data" {
            data = Some(&bytes[body..(body + len).min(bytes.len())]);
        }
        pos = body + len + (len & 1);
    }
    let data = data.ok_or_else(|| bad("no data chunk"))?;
    let samples: Vec<i16> = data
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    if samples.is_empty() || rate == 0 || channels == 0 {
        return Ok((0.0, 0.0));
    }
    let sum: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    let rms = (sum / samples.len() as f64).sqrt() / 32768.0;
    let secs = samples.len() as f64 / f64::from(channels) / f64::from(rate);
    Ok((rms, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_announced_in_chinese_and_english() {
        let u = announcement("A012", "3", &["zh".into(), "en".into(), "fr".into()]);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].text, "请 A012 号到 3 号窗口");
        assert_eq!(
            u[0].spoken,
            "qing3 A ling2 yao1 er4 hao4, dao4 san1 hao4 chuang1 kou3"
        );
        assert_eq!(u[0].voice, "cmn-latn-pinyin");
        assert_eq!(u[1].text, "Number A012, please go to window 3");
        assert!(u[1].spoken.contains("A 0 1 2"));
    }

    /// Needs gstreamer1.0-espeak (installed by `cargo xtask setup`).
    #[test]
    fn an_announcement_renders_to_an_audible_wav_in_each_language() {
        let dir = tempfile::tempdir().expect("tmp");
        for u in announcement("A1007", "3", &["zh".into(), "en".into()]) {
            let file = speak(&u, Some(dir.path()), "call")
                .expect("spoken")
                .expect("a file");
            let (rms, secs) = wav_level(&file).expect("wav");
            println!("{}: {:.2} s, RMS {:.4} of full scale", u.lang, secs, rms);
            assert!(secs > 1.0, "{} too short: {secs} s", u.lang);
            assert!(rms > 0.01, "{} silent: RMS {rms}", u.lang);
        }
    }

    #[test]
    fn silence_is_measured_as_silence() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("quiet.wav");
        let mut wav = Vec::new();
        let n: u32 = 22050;
        wav.extend(b"RIFF");
        wav.extend((36 + n * 2).to_le_bytes());
        wav.extend(b"WAVEfmt ");
        wav.extend(16u32.to_le_bytes());
        wav.extend(1u16.to_le_bytes());
        wav.extend(1u16.to_le_bytes());
        wav.extend(22050u32.to_le_bytes());
        wav.extend((22050u32 * 2).to_le_bytes());
        wav.extend(2u16.to_le_bytes());
        wav.extend(16u16.to_le_bytes());
        wav.extend(b"data");
        wav.extend((n * 2).to_le_bytes());
        wav.extend(std::iter::repeat_n(0u8, (n * 2) as usize));
        std::fs::write(&path, wav).expect("write");
        let (rms, secs) = wav_level(&path).expect("wav");
        assert_eq!(rms, 0.0);
        assert!((secs - 1.0).abs() < 1e-9);
    }
}
