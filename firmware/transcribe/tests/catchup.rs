//! Falling behind and catching up: minutes of seat audio arrive far faster than a
//! deliberately slow engine decodes. The recorder side never waits and loses nothing
//! while the tap has room; the transcriber skips partials while behind and still gives
//! every utterance its final line. When the tap would overflow, the oldest audio is
//! skipped with a reported gap and transcription goes on.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gavel_transcribe::{
    Engine, Event, Hypothesis, RATE, Stage, Tap, TranscribeError, Transcriber, WorkerSettings,
};

/// An engine that takes `per_call` for every decode and names the audio's length.
struct Slow {
    per_call: Duration,
}

impl Engine for Slow {
    fn decode(&mut self, pcm: &[f32], _: Stage) -> Result<Hypothesis, TranscribeError> {
        std::thread::sleep(self.per_call);
        Ok(Hypothesis {
            text: format!("utterance of {} ms", pcm.len() / 16),
            language: "en".into(),
            confidence: 0.9,
            no_speech: 0.0,
        })
    }
    fn model(&self) -> &str {
        "slow"
    }
}

/// `minutes` of 4-channel audio: a 2 s tone burst every 5 s, rotating over seats 0-2,
/// low noise everywhere. Returns the interleaved samples and the number of bursts.
fn hearing(minutes: u32) -> (Vec<i16>, usize) {
    let n = (RATE * 60 * minutes) as usize;
    let mut out = vec![0i16; n * 4];
    let mut bursts = 0;
    let mut rng = 7u32;
    for i in 0..n {
        let t = i as f32 / RATE as f32;
        let slot = (t / 5.0) as usize;
        let in_burst = t % 5.0 >= 1.0 && t % 5.0 < 3.0 && t + 5.0 < n as f32 / RATE as f32;
        for c in 0..4 {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let mut v = ((rng >> 16) as f32 / 32768.0 - 1.0) * 0.002;
            if in_burst && c == slot % 3 {
                v += 0.3 * (t * 300.0 * std::f32::consts::TAU).sin();
            }
            out[i * 4 + c] = (v * 32767.0) as i16;
        }
    }
    for s in 0..(n / RATE as usize / 5) {
        if (s * 5 + 8) as f32 <= n as f32 / RATE as f32 {
            bursts += 1;
        }
    }
    (out, bursts)
}

fn seats() -> Vec<(usize, String)> {
    (0..4).map(|c| (c, format!("seat{c}"))).collect()
}

fn run(tap: &Tap, audio: &[i16], per_call: Duration) -> (Vec<Event>, Arc<gavel_transcribe::Stats>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let events = events.clone();
        move |e: Event| events.lock().expect("events").push(e)
    };
    let t = Transcriber::spawn(
        WorkerSettings::default(),
        gavel_transcribe::shared(Slow { per_call }),
        tap.clone(),
        "mics".into(),
        seats(),
        sink,
    )
    .expect("transcriber starts");
    let stats = t.stats.clone();
    // The recorder writes 20 ms blocks as fast as it can: far faster than real time.
    for block in audio.chunks(320 * 4) {
        tap.push(block);
    }
    tap.close();
    t.join();
    let events = events.lock().expect("events").clone();
    (events, stats)
}

fn finals(events: &[Event]) -> Vec<(String, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Line { seat, line, .. } if line.stage == Stage::Final => {
                Some((seat.clone(), line.offset_ns))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn three_minutes_behind_a_slow_engine_lose_nothing_and_every_utterance_gets_its_final() {
    let (audio, bursts) = hearing(3);
    let tap = Tap::new(4, (RATE * 60 * 4) as usize);
    let (events, stats) = run(&tap, &audio, Duration::from_millis(20));
    let written = tap.stats().written.load(Ordering::Relaxed);
    assert_eq!(
        written,
        audio.len() as u64 / 4,
        "the recorder wrote everything"
    );
    assert_eq!(
        tap.stats().discarded.load(Ordering::Relaxed),
        0,
        "nothing dropped"
    );
    // The transcriber was behind: most of the hearing waited in the tap...
    assert!(tap.stats().peak_backlog.load(Ordering::Relaxed) > u64::from(RATE) * 60);
    // ...so partials were skipped, and the core never held more than its bound.
    assert!(stats.partials_skipped.load(Ordering::Relaxed) > 0);
    assert!(stats.peak_core_backlog.load(Ordering::Relaxed) <= u64::from(RATE) * 61);
    // It caught up: one final per burst, on the right seat, in time order per seat.
    let f = finals(&events);
    assert_eq!(f.len(), bursts, "{f:?}");
    for (seat, offset) in &f {
        let slot = (*offset / 5_000_000_000) as usize;
        assert_eq!(seat, &format!("seat{}", slot % 3), "line at {offset} ns");
    }
    assert!(!events.iter().any(|e| matches!(e, Event::Gap { .. })));
}

#[test]
fn an_overflowing_tap_skips_the_oldest_audio_with_a_reported_gap_and_goes_on() {
    let (audio, _) = hearing(2);
    // Room for 20 s only, and an engine that cannot keep up while the writer runs.
    let tap = Tap::new(4, (RATE * 20) as usize);
    let (events, _) = run(&tap, &audio, Duration::from_millis(50));
    let discarded = tap.stats().discarded.load(Ordering::Relaxed);
    assert!(discarded > 0);
    let gaps: u64 = events
        .iter()
        .map(|e| match e {
            Event::Gap { duration_ns, .. } => *duration_ns,
            _ => 0,
        })
        .sum();
    assert_eq!(
        gaps,
        discarded * 1_000_000_000 / u64::from(RATE),
        "every lost sample is reported"
    );
    // Lines still come after the gap, at their true place on the timeline.
    let f = finals(&events);
    assert!(!f.is_empty());
    let last = f.iter().map(|(_, o)| *o).max().unwrap_or(0);
    assert!(last > 90_000_000_000, "lines after the gap: {f:?}");
}
