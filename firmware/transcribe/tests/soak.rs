//! A 30-minute hearing through the real pipeline (`cargo xtask soak`; ignored in the
//! default suite, whose short version is `catchup.rs`): four seats of espeak-ng court
//! sentences with noise and crosstalk, fed at `GAVEL_SOAK_SPEED` times real time (default
//! 4) to whisper tiny.en on 2 threads. Memory (RSS) is sampled every 10 s of audio: after a
//! 3-minute warm-up it must not grow by more than 40 MB; the tap must lose nothing while
//! transcription lags, and every line must be final by the end.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_transcribe::corpus::{self, ENGLISH, Mix};
use gavel_transcribe::{
    Event, RATE, Stage, Tap, Transcriber, WhisperEngine, WhisperOptions, WorkerSettings,
};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "30 minutes of audio: run by `cargo xtask soak`"]
fn a_thirty_minute_hearing_is_transcribed_without_growing_memory_or_losing_audio() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join("models/cache/whisper/ggml-tiny.en.bin");
    assert!(
        model.is_file(),
        "{} missing: run `cargo xtask models`",
        model.display()
    );
    let minutes: u64 = std::env::var("GAVEL_SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let speed: f64 = std::env::var("GAVEL_SOAK_SPEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4.0);
    let mix = Mix::default();
    // One pass of the corpus (about 90 s), mixed again with another seed until 30 minutes.
    let mut channels: Vec<Vec<f32>> = vec![Vec::new(); mix.channels];
    let mut sentences = 0;
    let mut seed = 1;
    while (channels[0].len() as u64) < u64::from(RATE) * 60 * minutes {
        let c = corpus::generate(
            ENGLISH,
            &Mix {
                seed,
                ..mix.clone()
            },
            &root.join("models/cache/corpus"),
        )
        .expect("corpus");
        for (all, part) in channels.iter_mut().zip(c.channels) {
            all.extend(part);
        }
        sentences += c.script.len();
        seed += 1;
    }
    let audio = corpus::interleave(&channels);
    drop(channels);
    let engine = WhisperEngine::load(
        &model,
        "tiny.en",
        WhisperOptions {
            threads: 2,
            language: "en".into(),
            prompt: None,
        },
    )
    .expect("model");
    let tap = Tap::new(mix.channels, RATE as usize * 60 * 10);
    let finals = Arc::new(Mutex::new(0usize));
    let gaps = Arc::new(Mutex::new(0usize));
    let sink = {
        let (finals, gaps) = (finals.clone(), gaps.clone());
        move |e: Event| match e {
            Event::Line { line, .. } if line.stage == Stage::Final => {
                *finals.lock().expect("finals") += 1
            }
            Event::Gap { .. } => *gaps.lock().expect("gaps") += 1,
            Event::Line { .. } => {}
        }
    };
    let seats = (0..mix.channels).map(|c| (c, format!("seat{c}"))).collect();
    let t = Transcriber::spawn(
        WorkerSettings::default(),
        gavel_transcribe::shared(engine),
        tap.clone(),
        "mics".into(),
        seats,
        sink,
    )
    .expect("transcriber");
    let stats = t.stats.clone();
    let started = Instant::now();
    let block = 320 * mix.channels;
    let mut samples = Vec::new();
    let warm_up = u64::from(RATE) * 180;
    for (i, b) in audio.chunks(block).enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 * 0.02 / speed);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tap.push(b);
        let at = (i as u64 + 1) * 320;
        if at.is_multiple_of(u64::from(RATE) * 10) {
            samples.push((
                at / u64::from(RATE),
                rss_kib(),
                tap.backlog() / u64::from(RATE),
            ));
        }
    }
    tap.close();
    while !t.finished() {
        std::thread::sleep(Duration::from_secs(1));
        samples.push((u64::MAX, rss_kib(), tap.backlog() / u64::from(RATE)));
    }
    t.join();
    let wall = started.elapsed().as_secs_f64();
    let after: Vec<u64> = samples
        .iter()
        .filter(|(s, _, _)| *s >= warm_up / u64::from(RATE))
        .map(|(_, r, _)| *r)
        .collect();
    let (first, peak) = (
        after.first().copied().unwrap_or(0),
        after.iter().copied().max().unwrap_or(0),
    );
    let max_lag = samples.iter().map(|(_, _, l)| *l).max().unwrap_or(0);
    for (s, r, l) in samples.iter().step_by(18) {
        eprintln!(
            "  audio {s:>5} s  RSS {:>6.1} MB  tap backlog {l:>4} s",
            *r as f64 / 1024.0
        );
    }
    eprintln!(
        "soak: {minutes} min of 4-seat audio ({sentences} sentences) at {speed}x in {wall:.0} s; RSS after warm-up {:.1} MB, peak {:.1} MB (growth {:.1} MB); finals {}; partials {} run, {} skipped; peak tap backlog {max_lag} s; discarded {}; decode RTF {:.3}",
        first as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak.saturating_sub(first)) as f64 / 1024.0,
        finals.lock().expect("finals"),
        stats.partials.load(Ordering::Relaxed),
        stats.partials_skipped.load(Ordering::Relaxed),
        tap.stats().discarded.load(Ordering::Relaxed),
        stats.decode_ns.load(Ordering::Relaxed) as f64
            / stats.decoded_audio_ns.load(Ordering::Relaxed).max(1) as f64,
    );
    assert_eq!(
        tap.stats().discarded.load(Ordering::Relaxed),
        0,
        "the tap lost audio"
    );
    assert_eq!(*gaps.lock().expect("gaps"), 0);
    assert_eq!(
        tap.stats().written.load(Ordering::Relaxed),
        audio.len() as u64 / mix.channels as u64
    );
    assert!(
        peak.saturating_sub(first) < 40 * 1024,
        "RSS grew from {first} KiB to {peak} KiB"
    );
    assert!(
        *finals.lock().expect("finals") >= sentences * 9 / 10,
        "most sentences got a final line"
    );
}
