//! Recorder cost per stream: `gavel-recorder` against `gst-launch-1.0 rtspsrc ! rtph264depay
//! ! h264parse ! queue ! splitmuxsink` (MPEG-TS) in the same run, for 1, 4 and 8 streams at
//! 1080p and 2160p. Each stream is one RTSP connection to a simulated camera serving a
//! pre-encoded clip (25 fps, 4 Mbit/s at 1080p, 14 Mbit/s at 2160p).
//!
//! `cargo build --workspace --bins && cargo bench --profile dev -p gavel-hil --bench recording`
//! (dev profile: the binaries it drives are the dev builds; the media work is in the
//! system GStreamer libraries either way);
//! `GAVEL_BENCH_SECONDS` (default 20) sets the measured time per run,
//! `GAVEL_BENCH_RUNS` (default 3) how many runs of each program per row (medians shown;
//! the two programs alternate which goes first),
//! `GAVEL_BENCH_STREAMS` (default `1,4,8`) the stream counts,
//! `GAVEL_BENCH_RESOLUTION` (`1080p` or `2160p`) runs one resolution only,
//! `GAVEL_BENCH_RECORDER` the recorder binary to measure (default: the dev build next to
//! the bench; `cargo xtask bench` measures the release build).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gavel_hil::media::{CameraSim, SimSpec, ffprobe};
use gavel_hil::usage::{ProcUsage, median, proc_usage};
use gavel_hil::{Proc, bin};

/// Lowest frame rate over the streams written under `dir` (files `prefix<i>...ts`).
fn min_fps(files_by_stream: &[Vec<PathBuf>]) -> f64 {
    files_by_stream
        .iter()
        .map(|files| {
            let (mut packets, mut seconds) = (0u64, 0.0);
            for f in files {
                let out = Command::new("ffprobe")
                    .args(["-v", "error", "-count_packets", "-select_streams", "v:0"])
                    .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
                    .arg(f)
                    .output()
                    .expect("ffprobe");
                // MPEG-TS lists the stream under its program too: take the first line.
                packets += String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .find_map(|l| l.trim().trim_end_matches(',').parse::<u64>().ok())
                    .unwrap_or(0);
                seconds += ffprobe(f).map(|p| p.duration_s).unwrap_or(0.0);
            }
            if seconds > 0.0 {
                packets as f64 / seconds
            } else {
                0.0
            }
        })
        .fold(f64::INFINITY, f64::min)
}

fn ts_files(dir: &Path, filter: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "ts")
                        && p.file_name().is_some_and(|n| filter(&n.to_string_lossy()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// One measured run of one program.
struct Run {
    /// CPU over the measured time, % of one core: user and system.
    user_pct: f64,
    sys_pct: f64,
    rss_mib: f64,
    fps: f64,
}

impl Run {
    fn cpu_pct(&self) -> f64 {
        self.user_pct + self.sys_pct
    }
}

/// CPU (user, system, % of one core) over `seconds` after a 3 s warm-up, and peak RSS.
fn measure(proc: &mut Proc, seconds: u64) -> (f64, f64, f64) {
    std::thread::sleep(Duration::from_secs(3));
    let u0 = proc_usage(proc.pid()).unwrap_or_default();
    std::thread::sleep(Duration::from_secs(seconds));
    let u1: ProcUsage = proc_usage(proc.pid()).unwrap_or_default();
    let pct = |a: f64, b: f64| (b - a) / seconds as f64 * 100.0;
    (
        pct(u0.user_s, u1.user_s),
        pct(u0.sys_s, u1.sys_s),
        u1.peak_rss_kib as f64 / 1024.0,
    )
}

fn ours(dir: &Path, url: &str, n: usize, seconds: u64) -> Run {
    let data = dir.join(format!("ours-{}-{n}", fastrand::u32(..)));
    // `GAVEL_BENCH_RECORDER`: another build of the recorder (`cargo xtask bench` passes
    // the release build, as devices run).
    let recorder = std::env::var_os("GAVEL_BENCH_RECORDER")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("gavel-recorder"));
    let mut cmd = Command::new(recorder);
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["--hearing", "bench", "--segment-s", "10"])
        .env("GAVEL_LOG", "warn");
    for i in 0..n {
        cmd.arg("--source").arg(format!("s{i}={url}"));
    }
    let mut p =
        Proc::spawn("gavel-recorder", cmd, dir.join(format!("ours-{n}.log"))).expect("spawn");
    let (user_pct, sys_pct, rss_mib) = measure(&mut p, seconds);
    p.terminate(Duration::from_secs(20));
    let files: Vec<Vec<PathBuf>> = (0..n)
        .map(|i| {
            ts_files(&data.join("recordings/bench").join(format!("s{i}")), |_| {
                true
            })
        })
        .collect();
    Run {
        user_pct,
        sys_pct,
        rss_mib,
        fps: min_fps(&files),
    }
}

fn baseline(dir: &Path, url: &str, n: usize, seconds: u64) -> Run {
    let out = dir.join(format!("base-{}-{n}", fastrand::u32(..)));
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-e");
    for i in 0..n {
        cmd.args([
            "rtspsrc",
            &format!("location={url}"),
            "protocols=tcp",
            "latency=200",
            "!",
        ])
        .args([
            "rtph264depay",
            "!",
            "h264parse",
            "!",
            "queue",
            "!",
            "splitmuxsink",
        ])
        .args(["muxer-factory=mpegtsmux", "async-finalize=true"])
        .arg("max-size-time=10000000000")
        .arg(format!("location={}/b{i}-%05d.ts", out.display()));
    }
    let mut p = Proc::spawn("gst-launch", cmd, dir.join(format!("base-{n}.log"))).expect("spawn");
    let (user_pct, sys_pct, rss_mib) = measure(&mut p, seconds);
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(p.pid(), libc::SIGINT);
    }
    p.terminate(Duration::from_secs(10));
    let files: Vec<Vec<PathBuf>> = (0..n)
        .map(|i| ts_files(&out, |name| name.starts_with(&format!("b{i}-"))))
        .collect();
    Run {
        user_pct,
        sys_pct,
        rss_mib,
        fps: min_fps(&files),
    }
}

/// Medians over the runs of one program: CPU (total, user, system), peak RSS, lowest fps.
struct Summary {
    cpu: f64,
    user: f64,
    sys: f64,
    rss: f64,
    fps: f64,
}

fn summarize(runs: &[Run]) -> Summary {
    let m = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    Summary {
        cpu: m(Run::cpu_pct),
        user: m(|r| r.user_pct),
        sys: m(|r| r.sys_pct),
        rss: m(|r| r.rss_mib),
        // No dropped frame in any run: the worst run counts.
        fps: runs.iter().map(|r| r.fps).fold(f64::INFINITY, f64::min),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::var("GAVEL_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let repeats: usize = std::env::var("GAVEL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let counts: Vec<usize> = std::env::var("GAVEL_BENCH_STREAMS")
        .unwrap_or_else(|_| "1,4,8".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let clips = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips");
    println!(
        "{repeats} runs per row, {seconds} s measured each; medians. CPU is % of one core, user + system."
    );
    println!(
        "| resolution | streams | recorder CPU % (user + sys) | gst-launch CPU % (user + sys) | ratio (runs' range) | recorder RSS MiB | gst-launch RSS MiB | min fps recorder / gst-launch |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let only = std::env::var("GAVEL_BENCH_RESOLUTION").ok();
    for (label, spec) in [
        ("1080p", SimSpec::camera_1080p()),
        ("2160p", SimSpec::camera_2160p()),
    ] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        let cam = CameraSim::start(dir.path(), label, spec, &clips).expect("camera");
        for &n in &counts {
            let (mut o, mut b) = (Vec::new(), Vec::new());
            // Alternate which goes first, so a drift in the machine's load is shared.
            for run in 0..repeats {
                if run % 2 == 0 {
                    o.push(ours(dir.path(), &cam.url, n, seconds));
                    b.push(baseline(dir.path(), &cam.url, n, seconds));
                } else {
                    b.push(baseline(dir.path(), &cam.url, n, seconds));
                    o.push(ours(dir.path(), &cam.url, n, seconds));
                }
            }
            let ratios: Vec<f64> = o
                .iter()
                .zip(&b)
                .map(|(o, b)| o.cpu_pct() / b.cpu_pct())
                .collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            let (o, b) = (summarize(&o), summarize(&b));
            println!(
                "| {label} | {n} | {:.1} ({:.1} + {:.1}) | {:.1} ({:.1} + {:.1}) | {:.2} ({lo:.2}-{hi:.2}) | {:.0} | {:.0} | {:.1} / {:.1} |",
                o.cpu,
                o.user,
                o.sys,
                b.cpu,
                b.user,
                b.sys,
                o.cpu / b.cpu,
                o.rss,
                b.rss,
                o.fps,
                b.fps
            );
        }
    }
}
