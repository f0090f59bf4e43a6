//! Recorder cost per stream: `gavel-recorder` against `gst-launch-1.0 rtspsrc ! rtph264depay
//! ! h264parse ! queue ! splitmuxsink` (MPEG-TS) in the same run, for 1, 4 and 8 streams at
//! 1080p and 2160p. Each stream is one RTSP connection to a simulated camera serving a
//! pre-encoded clip (25 fps, 4 Mbit/s at 1080p, 14 Mbit/s at 2160p).
//!
//! `cargo build --workspace --bins && cargo bench --profile dev -p gavel-hil --bench recording`
//! (dev profile: the binaries it drives are the dev builds; the media work is in the
//! system GStreamer libraries either way);
//! `GAVEL_BENCH_SECONDS` (default 15) sets the measured time per run,
//! `GAVEL_BENCH_STREAMS` (default `1,4,8`) the stream counts,
//! `GAVEL_BENCH_RESOLUTION` (`1080p` or `2160p`) runs one resolution only,
//! `GAVEL_BENCH_RECORDER` the recorder binary to measure (default: the dev build next to
//! the bench; `cargo xtask bench` measures the release build).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gavel_hil::media::{CameraSim, SimSpec, ffprobe};
use gavel_hil::{Proc, bin};

/// CPU seconds (user + system) of a process so far.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Peak resident memory of a process, MiB.
fn peak_rss_mib(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

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

struct Run {
    cpu_pct: f64,
    rss_mib: f64,
    fps: f64,
}

fn measure(proc: &mut Proc, seconds: u64) -> (f64, f64) {
    std::thread::sleep(Duration::from_secs(3));
    let c0 = cpu_seconds(proc.pid());
    std::thread::sleep(Duration::from_secs(seconds));
    let c1 = cpu_seconds(proc.pid());
    ((c1 - c0) / seconds as f64 * 100.0, peak_rss_mib(proc.pid()))
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
    let (cpu_pct, rss_mib) = measure(&mut p, seconds);
    p.terminate(Duration::from_secs(20));
    let files: Vec<Vec<PathBuf>> = (0..n)
        .map(|i| {
            ts_files(&data.join("recordings/bench").join(format!("s{i}")), |_| {
                true
            })
        })
        .collect();
    Run {
        cpu_pct,
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
    let (cpu_pct, rss_mib) = measure(&mut p, seconds);
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(p.pid(), libc::SIGINT);
    }
    p.terminate(Duration::from_secs(10));
    let files: Vec<Vec<PathBuf>> = (0..n)
        .map(|i| ts_files(&out, |name| name.starts_with(&format!("b{i}-"))))
        .collect();
    Run {
        cpu_pct,
        rss_mib,
        fps: min_fps(&files),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::var("GAVEL_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let counts: Vec<usize> = std::env::var("GAVEL_BENCH_STREAMS")
        .unwrap_or_else(|_| "1,4,8".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let clips = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips");
    println!(
        "| resolution | streams | recorder CPU % (per stream) | gst-launch CPU % (per stream) | ratio | recorder RSS MiB (per stream) | gst-launch RSS MiB (per stream) | min fps recorder / gst-launch |"
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
            let o = ours(dir.path(), &cam.url, n, seconds);
            let b = baseline(dir.path(), &cam.url, n, seconds);
            let nf = n as f64;
            println!(
                "| {label} | {n} | {:.1} ({:.2}) | {:.1} ({:.2}) | {:.2} | {:.0} ({:.1}) | {:.0} ({:.1}) | {:.1} / {:.1} |",
                o.cpu_pct,
                o.cpu_pct / nf,
                b.cpu_pct,
                b.cpu_pct / nf,
                if b.cpu_pct > 0.0 {
                    o.cpu_pct / b.cpu_pct
                } else {
                    0.0
                },
                o.rss_mib,
                o.rss_mib / nf,
                b.rss_mib,
                b.rss_mib / nf,
                o.fps,
                b.fps
            );
        }
    }
}
