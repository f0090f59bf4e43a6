//! Patrol CPU per room: four 1080p H.264 cameras and a five-seat microphone host, at the
//! analysis rate of one frame per second per camera.
//!
//! Baseline, in the same run: decoding alone (the patrol decode branch: key frames of a
//! 1 s GOP through `avdec_h264`, scaled to 320x180 grey). Then the analyzers (the
//! `gavel-patrol` core with every video, audio and disturbance analyzer) over the same
//! decoded frames plus the room's audio. Both are measured as process CPU time
//! (`getrusage`), so GStreamer's threads count too. Prints CPU per room as a share of one
//! core at 1 fps, and the ratio analyzers / decoding.
//!
//! `cargo bench --profile dev -p gavel-hil --bench patrol` (gavel-patrol is optimised in
//! dev builds, see the root `Cargo.toml`); `GAVEL_BENCH_SECONDS` sets the clip length
//! (default 30 s).

use std::path::Path;
use std::time::Duration;

use gavel_patrol::synth::{self, AudioFault};
use gavel_patrol::{Frame, Input, Patrol, Session, Settings};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

const SOURCES: usize = 4;
const SEATS: usize = 5;

fn cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Encodes the camera clip once: 1080p25 SMPTE bars with a clock, 1 s GOP, MPEG-TS.
fn clip(path: &Path, seconds: u32) {
    if path.exists() {
        return;
    }
    let desc = format!(
        "videotestsrc num-buffers={n} pattern=smpte ! video/x-raw,width=1920,height=1080,framerate=25/1 \
         ! timeoverlay font-desc=\"Sans 48\" ! x264enc speed-preset=ultrafast key-int-max=25 bitrate=4000 \
         ! h264parse ! mpegtsmux ! filesink location={}",
        path.display(),
        n = seconds * 25
    );
    run(&desc, |_| {});
}

fn run(desc: &str, mut each: impl FnMut(Frame)) {
    let pipeline = gst::parse::launch(desc)
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    if let Some(pad) = pipeline.by_name("parse").and_then(|p| p.static_pad("src")) {
        pad.add_probe(gst::PadProbeType::BUFFER, |_, info| match info.buffer() {
            Some(b) if b.flags().contains(gst::BufferFlags::DELTA_UNIT) => {
                gst::PadProbeReturn::Drop
            }
            _ => gst::PadProbeReturn::Ok,
        });
    }
    let sink = pipeline
        .by_name("vsink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok());
    pipeline.set_state(gst::State::Playing).expect("play");
    if let Some(sink) = sink {
        while let Ok(sample) = sink.pull_sample() {
            let buffer = sample.buffer().expect("buffer");
            let map = buffer.map_readable().expect("map");
            let stride = 320;
            let luma: Vec<u8> = (0..180)
                .flat_map(|y| map.as_slice()[y * stride..y * stride + 320].to_vec())
                .collect();
            each(Frame::grey(320, 180, luma));
        }
    } else {
        let bus = pipeline.bus().expect("bus");
        bus.timed_pop_filtered(
            gst::ClockTime::NONE,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
    }
    let _ = pipeline.set_state(gst::State::Null);
}

fn main() {
    gst::init().expect("GStreamer");
    let seconds: u32 = std::env::var("GAVEL_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("patrol-bench");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join(format!("smpte-1080p-{seconds}s.ts"));
    clip(&file, seconds);

    // Baseline: decoding alone, four cameras.
    let decode = format!(
        "filesrc location={} ! tsdemux ! h264parse name=parse ! avdec_h264 ! videoconvert ! videoscale \
         ! video/x-raw,format=GRAY8,width=320,height=180,pixel-aspect-ratio=1/1 ! appsink name=vsink sync=false",
        file.display()
    );
    let mut frames: Vec<Vec<Frame>> = Vec::new();
    let before = cpu();
    for _ in 0..SOURCES {
        let mut got = Vec::new();
        run(&decode, |f| got.push(f));
        frames.push(got);
    }
    let decode_cpu = cpu() - before;
    let decoded: usize = frames.iter().map(Vec::len).sum();
    assert!(
        decoded >= SOURCES * (seconds as usize - 1),
        "{decoded} key frames decoded"
    );

    // Analyzers over the same frames, with the room's audio, at one frame per second.
    let audio = synth::room_audio(7, f64::from(seconds), SEATS, AudioFault::None);
    let blocks = synth::blocks(&audio, SEATS, 0.5);
    let cams: Vec<String> = (0..SOURCES).map(|i| format!("cam-{i}")).collect();
    let seats = (0..SEATS).map(|i| format!("seat-{i}")).collect();
    let t0 = time::OffsetDateTime::now_utc();
    let mut core = Patrol::new(Settings::all(), &cams, &[("mics".into(), seats)]);
    core.start(t0);
    core.handle(
        t0,
        Input::Session(Some(Session {
            hearing_id: "bench".into(),
            scheduled_start: Some(t0),
            recording_since: Some(t0),
        })),
    );
    let before = cpu();
    let mut findings = 0;
    for (i, block) in blocks.into_iter().enumerate() {
        let now = t0 + time::Duration::milliseconds(500 * (i as i64 + 1));
        findings += core
            .handle(
                now,
                Input::Audio {
                    source: "mics".into(),
                    block,
                },
            )
            .len();
        if i % 2 == 1 {
            let second = i / 2;
            for (cam, list) in cams.iter().zip(&frames) {
                if let Some(f) = list.get(second) {
                    findings += core
                        .handle(
                            now,
                            Input::Frame {
                                source: cam.clone(),
                                frame: f.clone(),
                            },
                        )
                        .len();
                }
            }
            findings += core.handle(now, Input::Tick).len();
        }
    }
    let analyze_cpu = cpu() - before;

    let per_second = |cpu: Duration| cpu.as_secs_f64() / f64::from(seconds) * 100.0;
    let decode_pct = per_second(decode_cpu);
    let analyze_pct = per_second(analyze_cpu);
    println!(
        "patrol, one room: {SOURCES} cameras 1080p25 (1 s GOP) + {SEATS} seat channels, {seconds} s of media, {decoded} key frames"
    );
    println!(
        "  decoding alone (baseline): {:.3} s CPU = {decode_pct:.2}% of one core per room",
        decode_cpu.as_secs_f64()
    );
    println!(
        "  analyzers:                 {:.3} s CPU = {analyze_pct:.2}% of one core per room ({findings} findings)",
        analyze_cpu.as_secs_f64()
    );
    println!(
        "  decoding + analyzers:      {:.2}% of one core per room (goal < 15%)",
        decode_pct + analyze_pct
    );
    println!(
        "  ratio analyzers / decoding: {:.3}",
        analyze_cpu.as_secs_f64() / decode_cpu.as_secs_f64().max(1e-9)
    );
}
