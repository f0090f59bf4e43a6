//! The real pipeline (tap, voice activity, streaming core, whisper.cpp with a converted
//! model) on a short espeak-ng corpus: four seats with background noise and crosstalk,
//! one seat silent. The full corpus, both models and Mandarin run in `cargo xtask bench`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gavel_transcribe::corpus::{self, ENGLISH, Mix};
use gavel_transcribe::{
    Event, Line, Stage, Tap, Transcriber, WhisperEngine, WhisperOptions, WorkerSettings,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The converted model, or `None` (with why) when `cargo xtask models` has not run.
fn model(name: &str) -> Option<PathBuf> {
    let path = root().join(format!("models/cache/whisper/ggml-{name}.bin"));
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIP: {} is missing: run `cargo xtask models` (cargo xtask test does)",
            path.display()
        );
        None
    }
}

#[test]
fn tiny_en_transcribes_four_seats_with_correct_labels_and_nothing_on_the_silent_seat() {
    let Some(path) = model("tiny.en") else { return };
    let cache = root().join("models/cache/corpus");
    let mix = Mix::default();
    let sentences: Vec<_> = ENGLISH.iter().copied().take(4).collect();
    let corpus = corpus::generate(&sentences, &mix, &cache).expect("corpus");

    let engine = WhisperEngine::load(
        &path,
        "tiny.en",
        WhisperOptions {
            threads: 2,
            language: "en".into(),
            prompt: None,
        },
    )
    .expect("model loads");
    let tap = Tap::new(mix.channels, 16_000 * 600);
    let lines = Arc::new(Mutex::new(Vec::<(String, Line)>::new()));
    let sink = {
        let lines = lines.clone();
        move |e: Event| {
            if let Event::Line { seat, line, .. } = e {
                lines.lock().expect("lines").push((seat, line));
            }
        }
    };
    let seats = ["judge", "clerk", "plaintiff", "witness"]
        .iter()
        .enumerate()
        .map(|(c, s)| (c, (*s).to_owned()))
        .collect();
    let t = Transcriber::spawn(
        WorkerSettings::default(),
        gavel_transcribe::shared(engine),
        tap.clone(),
        "mics".into(),
        seats,
        sink,
    )
    .expect("transcriber starts");
    // The recorder delivers 20 ms blocks, here far faster than real time.
    for block in corpus::interleave(&corpus.channels).chunks(320 * mix.channels) {
        tap.push(block);
    }
    tap.close();
    t.join();

    let lines = lines.lock().expect("lines").clone();
    let finals: Vec<Line> = lines
        .iter()
        .filter(|(_, l)| l.stage == Stage::Final)
        .map(|(_, l)| l.clone())
        .collect();
    for (seat, l) in &lines {
        eprintln!(
            "{seat:>9} {:?} #{} {:>6.2}s {}",
            l.stage,
            l.line,
            l.offset_ns as f64 / 1e9,
            l.text
        );
    }
    // Every seat label is the id of its channel.
    for (seat, l) in &lines {
        assert_eq!(seat, ["judge", "clerk", "plaintiff", "witness"][l.channel]);
    }
    let score = corpus::evaluate(&corpus, &finals, mix.silent);
    eprintln!(
        "tiny.en: WER {:.3}, seats {}/{}, silent-seat lines {}",
        score.wer(),
        score.seat_correct,
        score.lines,
        score.silent_lines
    );
    assert_eq!(score.silent_lines, 0, "text on the silent seat");
    assert!(
        score.lines >= sentences.len(),
        "every sentence gives a line: {score:?}"
    );
    assert!(score.seat_accuracy() >= 0.98, "{score:?}");
    // espeak-ng's voice is robotic and tiny.en the smallest model: this bounds gross
    // failures (a broken conversion gives nonsense, near 100%); docs/transcription.md has
    // the measured figures per model.
    assert!(score.wer() < 0.5, "tiny.en WER {:.3}", score.wer());
}
