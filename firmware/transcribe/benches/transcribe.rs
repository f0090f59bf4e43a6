//! Transcription benchmark (`cargo xtask bench`): accuracy on the full espeak-ng corpus
//! per model, real-time factor against whisper.cpp's own `whisper-cli` built from the
//! source whisper-rs vendors (same model, same WAV, same threads, same run), and live
//! latency from the end of an utterance to its final line with the streaming pipeline
//! fed in real time. Figures go into docs/transcription.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_transcribe::corpus::{self, ENGLISH, MANDARIN, Mix, Sentence};
use gavel_transcribe::{
    Engine, Event, Line, RATE, Stage, Tap, Transcriber, WhisperEngine, WhisperOptions,
    WorkerSettings,
};

const THREADS: u16 = 2;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model(name: &str) -> PathBuf {
    root().join(format!("models/cache/whisper/ggml-{name}.bin"))
}

fn engine(name: &str, language: &str) -> WhisperEngine {
    let prompt = (language == "zh").then(|| "以下是普通话的庭审记录。".to_owned());
    WhisperEngine::load(
        &model(name),
        name,
        WhisperOptions {
            threads: THREADS,
            language: language.into(),
            prompt,
        },
    )
    .unwrap_or_else(|e| panic!("{e}: run `cargo xtask models`"))
}

/// Runs the streaming pipeline over `corpus`; `pace` feeds it in real time. Returns the
/// lines with the time each arrived, and when the feed started.
fn stream(
    engine: WhisperEngine,
    corpus: &corpus::Corpus,
    channels: usize,
    pace: bool,
) -> (Vec<(Instant, Line)>, Instant) {
    let tap = Tap::new(channels, RATE as usize * 1200);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let lines = lines.clone();
        move |e: Event| {
            if let Event::Line { line, .. } = e {
                lines.lock().expect("lines").push((Instant::now(), line));
            }
        }
    };
    let seats = (0..channels).map(|c| (c, format!("seat{c}"))).collect();
    let t = Transcriber::spawn(
        WorkerSettings::default(),
        gavel_transcribe::shared(engine),
        tap.clone(),
        "mics".into(),
        seats,
        sink,
    )
    .expect("transcriber");
    let started = Instant::now();
    let audio = corpus::interleave(&corpus.channels);
    for (i, block) in audio.chunks(320 * channels).enumerate() {
        if pace {
            let due = started + Duration::from_millis(20 * i as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        tap.push(block);
    }
    tap.close();
    t.join();
    let lines = lines.lock().expect("lines").clone();
    (lines, started)
}

fn accuracy(name: &str, language: &str, sentences: &[Sentence], cache: &Path) {
    let mix = Mix::default();
    let corpus = corpus::generate(sentences, &mix, cache).expect("corpus");
    let seconds = corpus.channels[0].len() as f64 / f64::from(RATE);
    let (lines, _) = stream(engine(name, language), &corpus, mix.channels, false);
    let finals: Vec<Line> = lines
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| l.stage == Stage::Final)
        .collect();
    let score = corpus::evaluate(&corpus, &finals, mix.silent);
    let rate = if language == "zh" {
        format!(
            "CER {:.1}% ({} of {} characters)",
            score.cer() * 100.0,
            score.zh_errors,
            score.zh_chars
        )
    } else {
        format!(
            "WER {:.1}% ({} of {} words)",
            score.wer() * 100.0,
            score.en_errors,
            score.en_words
        )
    };
    let simplified = finals
        .iter()
        .all(|l| l.language != "zh" || l.text == gavel_transcribe::core::simplify(&l.text, "zh"));
    println!(
        "accuracy {name:<8} {language}: {} sentences, {seconds:.0} s on 4 seats: {rate}; seat labels {}/{} ({:.1}%); lines on the silent seat: {}{}",
        sentences.len(),
        score.seat_correct,
        score.lines,
        score.seat_accuracy() * 100.0,
        score.silent_lines,
        if language == "zh" {
            format!("; all Simplified: {simplified}")
        } else {
            String::new()
        }
    );
    for l in finals.iter().take(if language == "zh" { 10 } else { 4 }) {
        println!(
            "    seat{} {:>6.2}s {}",
            l.channel,
            l.offset_ns as f64 / 1e9,
            l.text
        );
    }
}

/// whisper.cpp's `whisper-cli`: `WHISPER_CLI`, or built from the source whisper-rs-sys
/// vendors, portably (that tree may lack `examples/`: then there is none).
fn whisper_cli() -> Option<PathBuf> {
    if let Some(cli) = std::env::var_os("WHISPER_CLI").map(PathBuf::from) {
        return cli.is_file().then_some(cli);
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let registry = home.join("registry/src");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&registry)
        .ok()?
        .filter_map(Result::ok)
        .flat_map(|d| {
            std::fs::read_dir(d.path())
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
        })
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("whisper-rs-sys-"))
        })
        .map(|p| p.join("whisper.cpp"))
        .filter(|p| p.join("CMakeLists.txt").is_file())
        .collect();
    sources.sort();
    let vendored = sources.pop()?;
    let version = vendored
        .parent()?
        .file_name()?
        .to_string_lossy()
        .to_string();
    let build = root()
        .join("models/cache")
        .join(format!("whisper-cli-{version}"));
    let cli = build.join("bin/whisper-cli");
    if !cli.is_file() {
        let source = with_cli_front_end(&vendored, &build)?;
        println!(
            "building whisper-cli from {} (GGML_NATIVE=OFF)...",
            source.display()
        );
        let ok = Command::new("cmake")
            .arg("-S")
            .arg(&source)
            .arg("-B")
            .arg(&build)
            .args([
                "-DCMAKE_BUILD_TYPE=Release",
                "-DGGML_NATIVE=OFF",
                "-DBUILD_SHARED_LIBS=OFF",
                "-DWHISPER_BUILD_TESTS=OFF",
                "-DWHISPER_BUILD_EXAMPLES=ON",
                // As whisper-rs-sys builds it (no `openmp` feature): ggml's own threads.
                "-DGGML_OPENMP=OFF",
                "-DWHISPER_SDL2=OFF",
                "-DWHISPER_CURL=OFF",
            ])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("cmake")
                .arg("--build")
                .arg(&build)
                .args(["--config", "Release", "-j", "2", "--target", "whisper-cli"])
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
    }
    cli.is_file().then_some(cli)
}

/// The PyPI source distribution that carries whisper.cpp's `examples/` (the CLI front
/// end): pywhispercpp 1.5.1 vendors whisper.cpp 1.8.5 (MIT), pinned by SHA-256.
const CLI_FRONT_END: (&str, &str) = (
    "https://files.pythonhosted.org/packages/9f/35/610787a277e177e6b7983277a35a2969c0876b46c0d889bc6a0c4b4ac4a7/pywhispercpp-1.5.1.tar.gz",
    "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5",
);

/// The whisper.cpp tree to build `whisper-cli` from: the one whisper-rs-sys vendors, whose
/// library (`src/`, `ggml/`, `include/`) our engine links. That crate leaves out
/// `examples/`, so the command-line front end (`examples/cli/cli.cpp` and its helpers,
/// whisper.cpp 1.8.5's, which builds against the 1.8.3 API: 1.8.5 only adds two VAD
/// functions; the examples' model quantizer, which needs newer ggml types, is left out)
/// is taken from [`CLI_FRONT_END`]: everything that transcribes is the same source as
/// ours.
fn with_cli_front_end(vendored: &Path, build: &Path) -> Option<PathBuf> {
    if vendored.join("examples/cli/cli.cpp").is_file() {
        return Some(vendored.to_owned());
    }
    let tree = build.with_file_name(format!("{}-src", build.file_name()?.to_string_lossy()));
    if tree.join("examples/cli/cli.cpp").is_file() {
        return Some(tree);
    }
    println!(
        "assembling {}: whisper.cpp from {} + examples/ from {}",
        tree.display(),
        vendored.display(),
        CLI_FRONT_END.0
    );
    let _ = std::fs::remove_dir_all(&tree);
    let copied = Command::new("cp")
        .arg("-R")
        .arg(vendored)
        .arg(&tree)
        .status()
        .is_ok_and(|s| s.success());
    let script = r#"
import hashlib, io, os, sys, tarfile, urllib.request
url, want, tree = sys.argv[1:4]
data = urllib.request.urlopen(url, timeout=120).read()
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"{url}: SHA-256 {got}, pinned {want}")
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    for m in t.getmembers():
        parts = m.name.split("/", 2)
        if len(parts) == 3 and parts[1] == "whisper.cpp" and parts[2].startswith("examples/") and m.isfile():
            out = os.path.join(tree, parts[2])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(t.extractfile(m).read())
# The examples' `common` library also carries the model quantizer (common-ggml.cpp), which
# needs ggml types newer than 1.8.3's; whisper-cli does not use it.
cm = os.path.join(tree, "examples", "CMakeLists.txt")
text = open(cm).read()
for f in ("common-ggml.h", "common-ggml.cpp"):
    text = text.replace("    " + f + "\n", "")
open(cm, "w").write(text)
"#;
    let fetched = copied
        && Command::new("python3")
            .arg("-c")
            .arg(script)
            .args([CLI_FRONT_END.0, CLI_FRONT_END.1])
            .arg(&tree)
            .status()
            .is_ok_and(|s| s.success());
    (fetched && tree.join("examples/cli/cli.cpp").is_file()).then_some(tree)
}

/// The median of `runs` timings.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// whisper-cli's own processing time (total minus load), seconds.
fn cli_seconds(cli: &Path, model: &Path, wav: &Path, language: &str) -> Option<(f64, String)> {
    let out = Command::new(cli)
        .arg("-m")
        .arg(model)
        .arg("-f")
        .arg(wav)
        .args([
            "-t",
            &THREADS.to_string(),
            "-l",
            language,
            "-bs",
            "1",
            "-bo",
            "1",
            // No temperature fallback and no timestamps, as our engine decodes; not `-np`,
            // which would hide the timings read below.
            "-nf",
            "-nt",
        ])
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let ms = |what: &str| {
        err.lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split('=').nth(1))
            .and_then(|v| v.trim().trim_end_matches("ms").trim().parse::<f64>().ok())
    };
    let total = ms("total time")?;
    let load = ms("load time").unwrap_or(0.0);
    Some((
        (total - load) / 1000.0,
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

fn rtf(name: &str, cli: Option<&Path>, cache: &Path) {
    // One WAV of English court sentences, under whisper's 30 s window.
    let mut pcm = Vec::new();
    for s in ENGLISH.iter().take(6) {
        pcm.extend(corpus::speak(s, cache).expect("speech"));
        pcm.extend(std::iter::repeat_n(0.0, RATE as usize / 2));
    }
    let seconds = pcm.len() as f64 / f64::from(RATE);
    let wav = cache.join("rtf.wav");
    corpus::write_wav(&wav, &pcm).expect("wav");
    let mut e = engine(name, "en");
    let _ = e.decode(&pcm, Stage::Final); // warm-up
    let ours = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let _ = e.decode(&pcm, Stage::Final).expect("decode");
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let text = e
        .decode(&pcm, Stage::Final)
        .map(|h| h.text)
        .unwrap_or_default();
    let Some(cli) = cli else {
        println!(
            "rtf {name:<8}: gavel {:.3} ({ours:.2} s for {seconds:.1} s); whisper-cli unavailable: it could not be built (see above; or set WHISPER_CLI to a whisper-cli built from whisper.cpp 1.8.3 with GGML_NATIVE=OFF)",
            ours / seconds
        );
        return;
    };
    let runs: Vec<(f64, String)> = (0..3)
        .filter_map(|_| cli_seconds(cli, &model(name), &wav, "en"))
        .collect();
    if runs.is_empty() {
        println!(
            "rtf {name:<8}: ours {:.3}; whisper-cli gave no timings",
            ours / seconds
        );
        return;
    }
    let theirs = median(runs.iter().map(|r| r.0).collect());
    println!(
        "rtf {name:<8} ({THREADS} threads, {seconds:.1} s WAV): gavel {:.3} ({ours:.2} s), whisper-cli {:.3} ({theirs:.2} s), ratio {:.2}x (goal <= 1.10x)",
        ours / seconds,
        theirs / seconds,
        ours / theirs
    );
    println!("    gavel:       {text}");
    println!("    whisper-cli: {}", runs[0].1.replace('\n', " "));
}

fn latency(name: &str, cache: &Path) {
    let mix = Mix::default();
    let corpus = corpus::generate(ENGLISH, &mix, cache).expect("corpus");
    let (lines, started) = stream(engine(name, "en"), &corpus, mix.channels, true);
    let mut lat: Vec<f64> = lines
        .iter()
        .filter(|(_, l)| l.stage == Stage::Final)
        .map(|(at, l)| {
            let end = started + Duration::from_nanos(l.offset_ns + l.duration_ns);
            at.saturating_duration_since(end).as_secs_f64()
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    let partial_first: Vec<f64> = {
        let mut firsts = std::collections::BTreeMap::new();
        for (at, l) in &lines {
            firsts
                .entry((l.channel, l.line))
                .or_insert((*at, l.offset_ns));
        }
        firsts
            .values()
            .map(|(at, off)| {
                at.saturating_duration_since(started + Duration::from_nanos(*off))
                    .as_secs_f64()
            })
            .collect()
    };
    println!(
        "latency {name:<8} ({THREADS} threads, fed in real time, {} final lines): end of utterance to final line p50 {:.2} s, p95 {:.2} s, max {:.2} s (goal p50 < 3 s); start of speech to first text median {:.2} s",
        lat.len(),
        pct(0.5),
        pct(0.95),
        lat[lat.len() - 1],
        median(partial_first)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else names what to run.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |what: &str| args.is_empty() || args.iter().any(|a| a == what);
    let cache = root().join("models/cache/corpus");
    if want("accuracy") {
        accuracy("tiny.en", "en", ENGLISH, &cache);
        accuracy("base", "en", ENGLISH, &cache);
        accuracy("base", "zh", MANDARIN, &cache);
    }
    if want("rtf") {
        let cli = whisper_cli();
        rtf("tiny.en", cli.as_deref(), &cache);
        rtf("base", cli.as_deref(), &cache);
    }
    if want("latency") {
        latency("base", &cache);
    }
}
