//! What live re-serving costs on the device: `gavel-live` relaying one camera's main stream
//! (remux only) and serving its transcoded sub-stream (no camera sub-stream: decode, drop
//! to 15 fps, scale to 640x360, x264 ultrafast at the courtroom terminal profile's
//! 1500 kbit/s) to one viewer, against `gst-launch-1.0` running the same chain into a
//! `fakesink` in the same run; and, for reference, `gst-launch-1.0` only decoding (what
//! the decode alone costs) and with the textbook order (convert, scale, then rate). One
//! simulated camera per resolution (pre-encoded 25 fps H.264 clip, 1080p 4 Mbit/s, 2160p
//! 14 Mbit/s); the viewer is `ffmpeg -c copy` (its CPU not counted).
//!
//! `cargo build --workspace --bins && cargo bench --profile dev -p gavel-hil --bench live`;
//! `GAVEL_BENCH_SECONDS` (default 20) sets the measured time per run, `GAVEL_BENCH_RUNS`
//! (default 3) the runs per row (medians shown), `GAVEL_BENCH_LIVE` the `gavel-live` binary
//! (default: the dev build next to the bench; `cargo xtask bench` measures the release
//! build). The media work is in the system GStreamer libraries either way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gavel_hil::media::{CameraSim, SimSpec, wait_for};
use gavel_hil::usage::{median, proc_usage};
use gavel_hil::{Proc, bin, free_port};

/// The courtroom terminal profile's `capabilities.stream.sub_stream_kbps`.
const SUB_KBPS: u32 = 1500;

/// CPU of `proc` over `seconds` after `warmup`, % of one core (user + system).
fn cpu_pct(proc: &Proc, warmup: Duration, seconds: u64) -> f64 {
    std::thread::sleep(warmup);
    let a = proc_usage(proc.pid()).map(|u| u.cpu_s()).unwrap_or(0.0);
    std::thread::sleep(Duration::from_secs(seconds));
    let b = proc_usage(proc.pid()).map(|u| u.cpu_s()).unwrap_or(0.0);
    (b - a) / seconds as f64 * 100.0
}

/// A viewer that watches `url` until dropped.
fn viewer(dir: &Path, url: &str) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-nostdin",
        "-v",
        "error",
        "-rtsp_transport",
        "tcp",
        "-i",
        url,
    ])
    .args(["-c", "copy", "-f", "null", "-"])
    .stdout(Stdio::null());
    Proc::spawn(
        "viewer",
        cmd,
        dir.join(format!("viewer-{}.log", fastrand::u32(..))),
    )
    .expect("ffmpeg runs")
}

/// `gavel-live` serving `camera`: its CPU with nobody watching, with one viewer of the
/// main stream, and with one viewer of the sub-stream.
fn ours(dir: &Path, camera: &str, seconds: u64) -> (f64, f64, f64) {
    let live_bin = std::env::var_os("GAVEL_BENCH_LIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("gavel-live"));
    let port = free_port();
    let mut cmd = Command::new(live_bin);
    cmd.args([
        "--port",
        &port.to_string(),
        "--sub-kbps",
        &SUB_KBPS.to_string(),
    ])
    .args(["--viewer", "bench:bench", "--source"])
    .arg(format!("cam={camera}"));
    let mut live = Proc::spawn("gavel-live", cmd, dir.join(format!("live-{port}.log")))
        .expect("gavel-live runs");
    wait_for(&live, "READY", Duration::from_secs(10)).expect("gavel-live serves");
    let idle = cpu_pct(&live, Duration::from_secs(1), seconds.min(5));
    let url = |stream: &str| format!("rtsp://bench:bench@127.0.0.1:{port}/cam/{stream}");
    // One viewer on `stream`: the server's CPU after `warm_up`, over `seconds`.
    let watched = |stream: &str, warm_up: u64| {
        let mut watching = viewer(dir, &url(stream));
        let pct = cpu_pct(&live, Duration::from_secs(warm_up), seconds);
        assert!(
            watching.alive(),
            "the {stream}-stream viewer stopped: {}",
            watching.log_text()
        );
        pct
    };
    let main = watched("main", 3);
    // The shared media stop after their last viewer; give it a moment.
    std::thread::sleep(Duration::from_secs(2));
    let sub = watched("sub", 5);
    live.terminate(Duration::from_secs(10));
    (idle, main, sub)
}

/// What the `gst-launch-1.0` baseline does after decoding.
#[derive(Clone, Copy)]
enum Chain {
    /// Nothing: what decoding alone costs.
    DecodeOnly,
    /// The sub-stream's own chain: drop to 15 fps, scale, convert, encode.
    Ours,
    /// The textbook order: convert, scale, then change the rate, then encode.
    ConvertScaleRate,
}

/// `gst-launch-1.0` reading `camera`, decoding it and running `chain` into a fakesink.
fn baseline(dir: &Path, camera: &str, seconds: u64, chain: Chain) -> f64 {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args(["-q", "rtspsrc", &format!("location={camera}")])
        .args([
            "protocols=tcp",
            "latency=200",
            "!",
            "rtph264depay",
            "!",
            "h264parse",
        ])
        .args(["!", "avdec_h264"]);
    match chain {
        Chain::DecodeOnly => {}
        Chain::Ours => {
            cmd.args(["!", "videorate", "drop-only=true", "max-rate=15"])
                .args(["!", "videoscale", "!", "video/x-raw,width=640,height=360"])
                .args(["!", "videoconvert", "!", "video/x-raw,format=I420"]);
        }
        Chain::ConvertScaleRate => {
            cmd.args([
                "!",
                "videoconvert",
                "!",
                "videoscale",
                "!",
                "videorate",
                "!",
            ])
            .arg("video/x-raw,format=I420,width=640,height=360,framerate=15/1");
        }
    }
    if !matches!(chain, Chain::DecodeOnly) {
        cmd.args(["!", "x264enc", "tune=zerolatency", "speed-preset=ultrafast"])
            .arg(format!("bitrate={SUB_KBPS}"))
            .arg("key-int-max=30");
    }
    cmd.args(["!", "fakesink", "sync=false"]);
    let mut p = Proc::spawn(
        "gst-launch",
        cmd,
        dir.join(format!("base-{}.log", fastrand::u32(..))),
    )
    .expect("gst-launch runs");
    let pct = cpu_pct(&p, Duration::from_secs(5), seconds);
    assert!(p.alive(), "gst-launch stopped: {}", p.log_text());
    p.terminate(Duration::from_secs(10));
    pct
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = gavel_hil::media::env_secs("GAVEL_BENCH_SECONDS", 20);
    let repeats = (gavel_hil::media::env_secs("GAVEL_BENCH_RUNS", 3) as usize).max(1);
    let dir = tempfile::tempdir().expect("tmp");
    let clips = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips");
    println!(
        "{repeats} runs per row, {seconds} s measured each; medians. CPU is % of one core, user + system."
    );
    println!(
        "| camera | gavel-live idle | main stream relayed (remux) | sub-stream transcoded | gst-launch same transcode | ratio | gst-launch decoding alone | gst-launch convert-scale-rate order |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, spec) in [
        ("1080p", SimSpec::camera_1080p()),
        ("2160p", SimSpec::camera_2160p()),
    ] {
        let cam = CameraSim::start(dir.path(), label, spec, &clips).expect("camera");
        let (mut idle, mut main, mut sub, mut base, mut decode, mut naive) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for run in 0..repeats {
            let mut ours_run = || {
                let (i, m, s) = ours(dir.path(), &cam.url, seconds);
                idle.push(i);
                main.push(m);
                sub.push(s);
            };
            // Alternate which goes first, so a drift in the machine's load is shared.
            if run % 2 == 0 {
                ours_run();
                base.push(baseline(dir.path(), &cam.url, seconds, Chain::Ours));
            } else {
                base.push(baseline(dir.path(), &cam.url, seconds, Chain::Ours));
                ours_run();
            }
            decode.push(baseline(dir.path(), &cam.url, seconds, Chain::DecodeOnly));
            naive.push(baseline(
                dir.path(),
                &cam.url,
                seconds,
                Chain::ConvertScaleRate,
            ));
        }
        let (s, b) = (median(&sub), median(&base));
        println!(
            "| {label} | {:.1} | {:.1} | {s:.1} | {b:.1} | {:.2} | {:.1} | {:.1} |",
            median(&idle),
            median(&main),
            s / b,
            median(&decode),
            median(&naive)
        );
    }
}
