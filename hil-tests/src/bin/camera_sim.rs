//! `gavel-camera-sim`: a simulated RTSP camera or multi-channel audio host.
//!
//! Video is a pre-encoded H.264 clip (`videotestsrc` through x264, encoded once into the
//! clip cache and looped), so even 2160p costs no encoding at run time; audio is
//! `audiotestsrc` with one channel per seat, encoded to AAC live (cheap). All viewers share
//! one media (like a camera's single encoder). Unplug, replug and freeze are process-level
//! (kill, start again on the same port, SIGSTOP): see `gavel_hil::media::CameraSim`.
//!
//! With `--seat-script FILE` the audio is scripted speech instead: each line of FILE is
//! `CHANNEL START_MS END_MS [WAV]` (`#` starts a comment), and channel CHANNEL carries a
//! tone at speaking level (-13.5 dBFS RMS) in that span, or the recorded speech of WAV
//! (16 kHz mono 16-bit, e.g. espeak-ng's) from START_MS for as long as it lasts within the
//! span, and a quiet noise floor (about -60 dBFS) otherwise, timed from the moment the
//! first viewer connects (`--seat-script-loop` repeats the script). A seat-microphone
//! conversation for speaker-follow and transcription tests.
//!
//! Prints `READY rtsp://127.0.0.1:PORT/MOUNT` on stdout once it accepts connections.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

struct Args {
    port: u16,
    mount: String,
    width: u32,
    height: u32,
    fps: u32,
    video: bool,
    audio_channels: u32,
    clip_seconds: u32,
    clip_cache: PathBuf,
    bitrate_kbps: u32,
    seat_script: Option<PathBuf>,
    seat_script_loop: bool,
    /// A solid colour `0xRRGGBB` instead of the moving ball and clock.
    color: Option<u32>,
    /// `videotestsrc` pattern of the clip (`ball`, or `smpte` for a textured picture the
    /// patrol analyzers accept as a normal scene).
    pattern: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        port: 8554,
        mount: "/main".into(),
        width: 1920,
        height: 1080,
        fps: 25,
        video: true,
        audio_channels: 0,
        clip_seconds: 2,
        clip_cache: std::env::temp_dir().join("gavel-clips"),
        bitrate_kbps: 0,
        seat_script: None,
        seat_script_loop: false,
        color: None,
        pattern: "ball".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => a.port = value()?.parse()?,
            "--mount" => a.mount = value()?,
            "--resolution" => {
                let v = value()?;
                let (w, h) = v.split_once('x').context("--resolution WxH")?;
                a.width = w.parse()?;
                a.height = h.parse()?;
            }
            "--fps" => a.fps = value()?.parse()?,
            "--no-video" => a.video = false,
            "--audio-channels" => a.audio_channels = value()?.parse()?,
            "--clip-seconds" => a.clip_seconds = value()?.parse()?,
            "--clip-cache" => a.clip_cache = value()?.into(),
            "--bitrate-kbps" => a.bitrate_kbps = value()?.parse()?,
            "--seat-script" => a.seat_script = Some(value()?.into()),
            "--seat-script-loop" => a.seat_script_loop = true,
            "--color" => {
                let v = value()?;
                let hex = v.trim_start_matches("0x");
                a.color = Some(u32::from_str_radix(hex, 16).context("--color 0xRRGGBB")?);
            }
            "--pattern" => {
                a.pattern = value()?;
                if !a
                    .pattern
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit())
                {
                    bail!("--pattern: a videotestsrc pattern name");
                }
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if !a.video && a.audio_channels == 0 {
        bail!("nothing to serve: give video or --audio-channels");
    }
    if a.seat_script.is_some() && a.audio_channels == 0 {
        bail!("--seat-script needs --audio-channels");
    }
    Ok(a)
}

/// One encoded access unit of the clip.
struct Frame {
    key: bool,
    data: Vec<u8>,
}

/// Loads the clip for these settings from the cache, encoding it first if needed.
fn clip(a: &Args) -> anyhow::Result<Vec<Frame>> {
    let bitrate = if a.bitrate_kbps > 0 {
        a.bitrate_kbps
    } else {
        // About what cameras send: 4 Mbit/s at 1080p, 14 Mbit/s at 2160p.
        ((a.width * a.height) as u64 * 4000 / (1920 * 1080)).clamp(200, 14_000) as u32
    };
    let look = match a.color {
        Some(c) => format!("-{c:06x}"),
        None => String::new(),
    };
    let mut name = format!(
        "{}x{}-{}fps-{}s-{}k{look}.clip",
        a.width, a.height, a.fps, a.clip_seconds, bitrate
    );
    if a.pattern != "ball" {
        name = format!("{}-{name}", a.pattern);
    }
    let path = a.clip_cache.join(name);
    if let Ok(frames) = read_clip(&path) {
        return Ok(frames);
    }
    std::fs::create_dir_all(&a.clip_cache)?;
    let frames = encode_clip(a, bitrate)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for fr in &frames {
            f.write_all(&[u8::from(fr.key)])?;
            f.write_all(&(fr.data.len() as u32).to_le_bytes())?;
            f.write_all(&fr.data)?;
        }
        f.flush()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(frames)
}

fn read_clip(path: &Path) -> anyhow::Result<Vec<Frame>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let key = bytes[at] == 1;
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into()?) as usize;
        at += 5;
        let data = bytes.get(at..at + len).context("truncated clip")?.to_vec();
        at += len;
        frames.push(Frame { key, data });
    }
    if frames.is_empty() || !frames[0].key {
        bail!("bad clip");
    }
    Ok(frames)
}

fn encode_clip(a: &Args, bitrate: u32) -> anyhow::Result<Vec<Frame>> {
    let look = match a.color {
        Some(c) => format!("pattern=solid-color foreground-color=0xff{c:06x}"),
        None => format!("pattern={}", a.pattern),
    };
    let clock = if a.color.is_some() {
        ""
    } else {
        "! timeoverlay font-desc=\"Sans 48\" "
    };
    let desc = format!(
        "videotestsrc num-buffers={n} {look} ! video/x-raw,width={w},height={h},framerate={fps}/1 \
         {clock}! x264enc speed-preset=ultrafast tune=zerolatency key-int-max={fps} bitrate={bitrate} \
         ! h264parse ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=false",
        n = a.fps * a.clip_seconds,
        w = a.width,
        h = a.height,
        fps = a.fps
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("out")
        .context("appsink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow::anyhow!("not an appsink"))?;
    pipeline.set_state(gst::State::Playing)?;
    let mut frames = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let map = buffer.map_readable()?;
        frames.push(Frame {
            key: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: map.as_slice().to_vec(),
        });
    }
    pipeline.set_state(gst::State::Null)?;
    if frames.is_empty() {
        bail!("encoding the clip produced nothing");
    }
    Ok(frames)
}

fn channel_mask(channels: u32) -> String {
    match channels {
        1 => String::new(),
        2 => ",channel-mask=(bitmask)0x3".into(),
        3 => ",channel-mask=(bitmask)0x7".into(),
        4 => ",channel-mask=(bitmask)0x107".into(),
        5 => ",channel-mask=(bitmask)0x37".into(),
        _ => ",channel-mask=(bitmask)0x3f".into(),
    }
}

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    gst::init()?;
    let frames: Arc<Vec<gst::Buffer>> = Arc::new(if a.video {
        clip(&a)?
            .into_iter()
            .map(|f| {
                let mut b = gst::Buffer::from_mut_slice(f.data);
                if !f.key
                    && let Some(b) = b.get_mut()
                {
                    b.set_flags(gst::BufferFlags::DELTA_UNIT);
                }
                b
            })
            .collect()
    } else {
        Vec::new()
    });

    let mut launch = String::from("( ");
    let mut pay = 0;
    if a.video {
        launch.push_str(&format!(
            "appsrc name=vsrc is-live=true format=time do-timestamp=true \
             caps=video/x-h264,stream-format=byte-stream,alignment=au,width={},height={},framerate={}/1 \
             ! h264parse ! rtph264pay name=pay{pay} pt=96 config-interval=1 ",
            a.width, a.height, a.fps
        ));
        pay += 1;
    }
    let script = match &a.seat_script {
        Some(path) => Some(Arc::new(read_script(path, a.audio_channels)?)),
        None => None,
    };
    if a.audio_channels > 0 && script.is_some() {
        launch.push_str(&format!(
            "appsrc name=asrc is-live=true format=time do-timestamp=true \
             caps=audio/x-raw,format=S16LE,layout=interleaved,rate={RATE},channels={}{} \
             ! audioconvert ! avenc_aac ! aacparse ! rtpmp4gpay name=pay{pay} pt=97 ",
            a.audio_channels,
            channel_mask(a.audio_channels)
        ));
    } else if a.audio_channels > 0 {
        launch.push_str(&format!(
            "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 \
             ! audio/x-raw,rate=48000,channels={}{} ! audioconvert ! avenc_aac ! aacparse \
             ! rtpmp4gpay name=pay{pay} pt=97 ",
            a.audio_channels,
            channel_mask(a.audio_channels)
        ));
    }
    launch.push(')');

    let server = rtsp::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&a.port.to_string());
    let mounts = server.mount_points().context("mount points")?;
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(&launch);
    factory.set_shared(true);
    let fps = a.fps;
    let (channels, looped) = (a.audio_channels, a.seat_script_loop);
    factory.connect_media_configure(move |_, media| {
        let appsrc = |name: &str| {
            media
                .element()
                .downcast_ref::<gst::Bin>()
                .and_then(|b| b.by_name_recurse_up(name))
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        };
        if let (Some(src), Some(script)) = (appsrc("asrc"), script.clone()) {
            std::thread::spawn(move || speak(src, script, channels, looped));
        }
        let Some(src) = appsrc("vsrc") else {
            return;
        };
        let frames = frames.clone();
        std::thread::spawn(move || feed(src, frames, fps));
    });
    mounts.add_factory(&a.mount, factory);
    // Tests count connections: a re-serving device must hold one per camera.
    server.connect_client_connected(|_, _| println!("client connected"));
    let main_loop = gst::glib::MainLoop::new(None, false);
    let _id = server.attach(None).context("binding the RTSP port")?;
    println!("READY rtsp://127.0.0.1:{}{}", a.port, a.mount);
    std::io::stdout().flush()?;
    main_loop.run();
    Ok(())
}

/// Sample rate of scripted audio.
const RATE: u32 = 48_000;

/// One span of speech: channel, start and end in milliseconds, and what is said (48 kHz
/// samples) when it is a recording rather than a tone.
#[derive(Clone)]
struct Span {
    channel: u32,
    from_ms: u64,
    to_ms: u64,
    speech: Option<Arc<Vec<f32>>>,
}

/// A 16 kHz WAV file at the simulator's 48 kHz (linear interpolation).
fn speech_at_48k(path: &Path) -> anyhow::Result<Vec<f32>> {
    let pcm = gavel_transcribe::corpus::read_wav(path)?;
    let ratio = (RATE / gavel_transcribe::RATE) as usize;
    let mut out = Vec::with_capacity(pcm.len() * ratio);
    for (i, &a) in pcm.iter().enumerate() {
        let b = pcm.get(i + 1).copied().unwrap_or(a);
        for k in 0..ratio {
            out.push(a + (b - a) * k as f32 / ratio as f32);
        }
    }
    Ok(out)
}

fn read_script(path: &Path, channels: u32) -> anyhow::Result<Vec<Span>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut spans = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (c, from, to, wav) = match f[..] {
            [c, from, to] => (c, from, to, None),
            [c, from, to, wav] => (c, from, to, Some(wav)),
            _ => bail!(
                "{}:{}: expected CHANNEL START_MS END_MS [WAV]",
                path.display(),
                n + 1
            ),
        };
        let speech = match wav {
            Some(w) => Some(Arc::new(
                speech_at_48k(Path::new(w))
                    .with_context(|| format!("{}:{}: {w}", path.display(), n + 1))?,
            )),
            None => None,
        };
        let span = Span {
            channel: c.parse()?,
            from_ms: from.parse()?,
            to_ms: to.parse()?,
            speech,
        };
        if span.channel >= channels || span.from_ms >= span.to_ms {
            bail!("{}:{}: bad span {line:?}", path.display(), n + 1);
        }
        spans.push(span);
    }
    Ok(spans)
}

/// Pushes scripted speech (20 ms buffers, in real time) until the media goes away.
fn speak(src: gst_app::AppSrc, script: Arc<Vec<Span>>, channels: u32, looped: bool) {
    const CHUNK_MS: u64 = 20;
    let period_ms = script.iter().map(|s| s.to_ms).max().unwrap_or(0) + 2_000;
    let frames = (RATE as u64 * CHUNK_MS / 1000) as usize;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let start = Instant::now();
    let mut n: u64 = 0;
    loop {
        let mut t_ms = n * CHUNK_MS;
        if looped {
            t_ms %= period_ms;
        }
        let mut data = Vec::with_capacity(frames * channels as usize * 2);
        for i in 0..frames {
            let t = (n as f64 * frames as f64 + i as f64) / RATE as f64;
            // This sample's place in the script, in samples.
            let at = t_ms * u64::from(RATE) / 1000 + i as u64;
            for c in 0..channels {
                let speaking = script
                    .iter()
                    .find(|s| s.channel == c && (s.from_ms..s.to_ms).contains(&t_ms));
                // A recording: its sample here, none once it has ended (room noise).
                let said = speaking.and_then(|s| s.speech.as_ref()).map(|speech| {
                    let from = speaking.map_or(0, |s| s.from_ms * u64::from(RATE) / 1000);
                    at.checked_sub(from)
                        .and_then(|k| speech.get(k as usize).copied())
                });
                let v = if let Some(Some(v)) = said {
                    f64::from(v)
                } else if speaking.is_some() && said.is_none() {
                    // A tone per seat, 0.3 full scale: -13.5 dBFS RMS.
                    0.3 * (2.0 * std::f64::consts::PI * (300.0 + 70.0 * c as f64) * t).sin()
                } else {
                    // Room noise around -60 dBFS.
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    ((rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.003
                };
                data.extend_from_slice(&((v * i16::MAX as f64) as i16).to_le_bytes());
            }
        }
        if src.push_buffer(gst::Buffer::from_mut_slice(data)).is_err() {
            return;
        }
        n += 1;
        let due = start + Duration::from_millis(n * CHUNK_MS);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// Pushes the clip's frames in a loop at the frame rate until the media goes away.
fn feed(src: gst_app::AppSrc, frames: Arc<Vec<gst::Buffer>>, fps: u32) {
    if frames.is_empty() {
        return;
    }
    let period = Duration::from_secs(1) / fps.max(1);
    let start = Instant::now();
    let mut n: u64 = 0;
    loop {
        let buffer = frames[(n % frames.len() as u64) as usize].clone();
        if src.push_buffer(buffer).is_err() {
            return;
        }
        n += 1;
        let due = start + period * n as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}
