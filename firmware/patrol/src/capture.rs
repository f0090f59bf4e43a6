//! Decode branches for patrol: one GStreamer pipeline per source, separate from the
//! recorder's, that delivers low-resolution grey frames (about 1-2 per second) and 0.5 s
//! blocks of 8 kHz seat audio.
//!
//! Design: the branch never touches the recording. It is its own pipeline on its own
//! connection (a camera serves several; the recorder's remux pipeline stays as it is),
//! it decodes only key frames of camera video (a 1 s GOP gives 1 frame per second at a
//! fraction of the cost of decoding every frame), and its sink drops rather than waits:
//! a slow analyzer loses frames, never stalls a camera. See
//! `docs/adr/0012-patrol-decode-branch.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gavel_record::{SourceConfig, SourceInput, VideoCodec};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::{debug, warn};

use crate::audio::AudioBlock;
use crate::frame::Frame;

/// Analysis picture size.
pub const WIDTH: usize = 320;
pub const HEIGHT: usize = 180;
/// Analysis audio rate.
pub const AUDIO_RATE: u32 = 8000;
/// Audio block length, seconds.
pub const BLOCK_S: f64 = 0.5;

/// Colour picture size for presence (faces need more pixels than the analyzers).
pub const COLOUR_WIDTH: usize = 640;
pub const COLOUR_HEIGHT: usize = 360;

/// A colour picture (RGB, row by row) of a source watched for presence.
#[derive(Debug, Clone)]
pub struct ColourFrame {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// What a capture delivers.
#[derive(Debug, Clone)]
pub enum Captured {
    /// A grey analysis frame, with the colour picture when the source is captured in colour.
    Frame {
        source: String,
        frame: Frame,
        colour: Option<ColourFrame>,
    },
    Audio {
        source: String,
        block: AudioBlock,
    },
}

/// What the source carries, for the patrol to know its video and audio sources.
pub fn media_of(source: &SourceConfig) -> (bool, Option<u16>) {
    match &source.input {
        SourceInput::Rtsp { video, audio, .. } => (*video != VideoCodec::None, audio.then_some(0)),
        SourceInput::V4l2 { .. } | SourceInput::Test { .. } => (true, None),
        SourceInput::Alsa { channels, .. } => (false, Some(*channels)),
    }
}

/// The `gst-launch` description of a source's patrol branch: the video part ends in an
/// appsink named `vsink` (grey, or RGB at the colour size when `colour`), the audio part in
/// one named `asink`.
pub fn description(source: &SourceConfig, fps: u32, colour: bool) -> String {
    let video_tail = if colour {
        format!(
            "videoconvert ! videoscale ! video/x-raw,format=RGB,width={COLOUR_WIDTH},height={COLOUR_HEIGHT},pixel-aspect-ratio=1/1 ! appsink name=vsink max-buffers=1 drop=true sync=false"
        )
    } else {
        format!(
            "videoconvert ! videoscale ! video/x-raw,format=GRAY8,width={WIDTH},height={HEIGHT},pixel-aspect-ratio=1/1 ! appsink name=vsink max-buffers=1 drop=true sync=false"
        )
    };
    let audio_tail = format!(
        "audioconvert ! audioresample ! audio/x-raw,format=F32LE,layout=interleaved,rate={AUDIO_RATE} ! appsink name=asink max-buffers=50 drop=true sync=false"
    );
    match &source.input {
        SourceInput::Rtsp { url, video, audio } => {
            let mut d = gavel_record::rtsp_client(url);
            let decode = match video {
                VideoCodec::H264 => Some("rtph264depay ! h264parse name=parse ! avdec_h264"),
                VideoCodec::H265 => Some("rtph265depay ! h265parse name=parse ! avdec_h265"),
                VideoCodec::None => None,
            };
            if let Some(decode) = decode {
                d.push_str(&format!("src. ! {decode} ! {video_tail} "));
            }
            if *audio {
                d.push_str(&format!(
                    "src. ! rtpmp4gdepay ! aacparse ! avdec_aac ! {audio_tail} "
                ));
            }
            d
        }
        SourceInput::V4l2 { device } => format!(
            "v4l2src device=\"{device}\" ! video/x-h264 ! h264parse name=parse ! avdec_h264 ! {video_tail}"
        ),
        SourceInput::Alsa { device, channels } => {
            format!("alsasrc device=\"{device}\" ! audio/x-raw,channels={channels} ! {audio_tail}")
        }
        // Design: a simulated source shows SMPTE bars (texture, contrast and a moving noise
        // field) rather than the recorder's ball on black, which is a "no signal" picture.
        SourceInput::Test { .. } => format!(
            "videotestsrc is-live=true pattern=smpte ! video/x-raw,width={WIDTH},height={HEIGHT},framerate={fps}/1 ! {video_tail}"
        ),
    }
}

/// A running capture of one source (restarted with backoff when it fails).
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing `source` at up to `fps` frames per second (in colour too when
    /// `colour`); `deliver` is called on the capture thread and must not block.
    pub fn spawn(
        source: SourceConfig,
        fps: u32,
        colour: bool,
        deliver: impl Fn(Captured) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("patrol-{}", source.id))
                .spawn(move || supervise(source, fps.max(1), colour, stop, deliver))?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn supervise(
    source: SourceConfig,
    fps: u32,
    colour: bool,
    stop: Arc<AtomicBool>,
    deliver: impl Fn(Captured) + Send + 'static,
) {
    let mut backoff = Duration::from_millis(500);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match run_once(&source, fps, colour, &stop, &deliver) {
            Ok(()) => debug!(source = %source.id, "patrol capture ended"),
            Err(e) => debug!(source = %source.id, error = %e, "patrol capture failed; retrying"),
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(500);
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn run_once(
    source: &SourceConfig,
    fps: u32,
    colour: bool,
    stop: &AtomicBool,
    deliver: &impl Fn(Captured),
) -> Result<(), String> {
    let pipeline = gst::parse::launch(&description(source, fps, colour))
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())?;
    // Key frames only: a delta frame never reaches the decoder.
    if let Some(pad) = pipeline.by_name("parse").and_then(|p| p.static_pad("src")) {
        pad.add_probe(gst::PadProbeType::BUFFER, |_, info| match info.buffer() {
            Some(b) if b.flags().contains(gst::BufferFlags::DELTA_UNIT) => {
                gst::PadProbeReturn::Drop
            }
            _ => gst::PadProbeReturn::Ok,
        });
    }
    let sink = |name: &str| {
        pipeline
            .by_name(name)
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
    };
    let (vsink, asink) = (sink("vsink"), sink("asink"));
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let bus = pipeline.bus();
    let period = Duration::from_secs_f64(1.0 / f64::from(fps));
    let mut last_frame: Option<Instant> = None;
    let mut pending: Vec<f32> = Vec::new();
    let mut channels = 0usize;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if let Some(bus) = &bus
            && let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos])
        {
            break match msg.view() {
                gst::MessageView::Error(e) => Err(e.error().to_string()),
                _ => Ok(()),
            };
        }
        let mut got = false;
        if let Some(v) = &vsink
            && let Some(sample) = v.try_pull_sample(gst::ClockTime::from_mseconds(50))
        {
            got = true;
            // Design: at most `fps` frames; a camera with a shorter GOP costs no more.
            if last_frame.is_none_or(|t| t.elapsed() + Duration::from_millis(50) >= period) {
                let got = if colour {
                    colour_frame(&sample).map(|c| (grey_of(&c), Some(c)))
                } else {
                    grey_frame(&sample).map(|f| (f, None))
                };
                if let Some((frame, colour)) = got {
                    last_frame = Some(Instant::now());
                    deliver(Captured::Frame {
                        source: source.id.clone(),
                        frame,
                        colour,
                    });
                }
            }
        }
        if let Some(a) = &asink {
            while let Some(sample) =
                a.try_pull_sample(gst::ClockTime::from_mseconds(if vsink.is_some() {
                    0
                } else {
                    50
                }))
            {
                got = true;
                let Some((ch, samples)) = pcm(&sample) else {
                    continue;
                };
                if ch != channels {
                    pending.clear();
                    channels = ch;
                }
                pending.extend_from_slice(&samples);
                let per = (BLOCK_S * f64::from(AUDIO_RATE)) as usize * channels;
                while per > 0 && pending.len() >= per {
                    let rest = pending.split_off(per);
                    deliver(Captured::Audio {
                        source: source.id.clone(),
                        block: AudioBlock {
                            rate: AUDIO_RATE,
                            channels,
                            samples: std::mem::replace(&mut pending, rest),
                        },
                    });
                }
            }
        }
        if !got && vsink.is_none() && asink.is_none() {
            break Err("no sink in the pipeline".into());
        }
    };
    if pipeline.set_state(gst::State::Null).is_err() {
        warn!(source = %source.id, "patrol pipeline did not stop cleanly");
    }
    result
}

fn grey_frame(sample: &gst::Sample) -> Option<Frame> {
    let buffer = sample.buffer()?;
    let map = buffer.map_readable().ok()?;
    let caps = sample.caps()?;
    let s = caps.structure(0)?;
    let w = usize::try_from(s.get::<i32>("width").ok()?).ok()?;
    let h = usize::try_from(s.get::<i32>("height").ok()?).ok()?;
    let data = map.as_slice();
    // GRAY8 rows are padded to 4 bytes.
    let stride = w.div_ceil(4) * 4;
    if data.len() < stride * h {
        return None;
    }
    let mut luma = Vec::with_capacity(w * h);
    for y in 0..h {
        luma.extend_from_slice(&data[y * stride..y * stride + w]);
    }
    Some(Frame::grey(w, h, luma))
}

fn colour_frame(sample: &gst::Sample) -> Option<ColourFrame> {
    let buffer = sample.buffer()?;
    let map = buffer.map_readable().ok()?;
    let s = sample.caps()?.structure(0)?;
    let w = usize::try_from(s.get::<i32>("width").ok()?).ok()?;
    let h = usize::try_from(s.get::<i32>("height").ok()?).ok()?;
    let data = map.as_slice();
    // RGB rows are padded to 4 bytes.
    let stride = (w * 3).div_ceil(4) * 4;
    if data.len() < stride * h {
        return None;
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        rgb.extend_from_slice(&data[y * stride..y * stride + w * 3]);
    }
    Some(ColourFrame {
        width: w,
        height: h,
        rgb,
    })
}

/// The analysis frame of a colour picture: BT.601 luma, averaged 2x2 (640x360 to 320x180).
pub fn grey_of(c: &ColourFrame) -> Frame {
    let (w, h) = (c.width / 2, c.height / 2);
    let luma_at = |x: usize, y: usize| {
        let p = &c.rgb[(y * c.width + x) * 3..(y * c.width + x) * 3 + 3];
        77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])
    };
    let mut luma = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let sum = luma_at(2 * x, 2 * y)
                + luma_at(2 * x + 1, 2 * y)
                + luma_at(2 * x, 2 * y + 1)
                + luma_at(2 * x + 1, 2 * y + 1);
            luma.push((sum >> 10) as u8);
        }
    }
    Frame::grey(w, h, luma)
}

fn pcm(sample: &gst::Sample) -> Option<(usize, Vec<f32>)> {
    let buffer = sample.buffer()?;
    let map = buffer.map_readable().ok()?;
    let caps = sample.caps()?;
    let ch = usize::try_from(caps.structure(0)?.get::<i32>("channels").ok()?).ok()?;
    let samples = map
        .as_slice()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some((ch.max(1), samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_branch_decodes_key_frames_to_small_grey_frames_and_never_encodes() {
        let s = SourceConfig {
            id: "cam".into(),
            input: SourceInput::Rtsp {
                url: "rtsp://10.0.0.5/main".into(),
                video: VideoCodec::H264,
                audio: false,
            },
        };
        let d = description(&s, 1, false);
        assert!(d.contains("h264parse name=parse ! avdec_h264"), "{d}");
        assert!(d.contains("GRAY8,width=320,height=180"), "{d}");
        assert!(d.contains("drop=true"), "{d}");
        assert!(!d.contains("enc "), "{d}");
        assert_eq!(media_of(&s), (true, None));
    }

    #[test]
    fn a_test_source_is_captured_for_real_in_grey() {
        init_or_skip();
        let s = SourceConfig {
            id: "sim".into(),
            input: SourceInput::Test {
                width: 320,
                height: 240,
                fps: 25,
            },
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let capture = Capture::spawn(s, 2, false, move |c| {
            let _ = tx.send(c);
        })
        .expect("spawn");
        let first = rx.recv_timeout(Duration::from_secs(20)).expect("a frame");
        drop(capture);
        let Captured::Frame { frame, .. } = first else {
            panic!("not a frame");
        };
        assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT));
        let stats = crate::frame::measure(&frame);
        assert!(stats.trimmed_std > 10.0, "bars are textured: {stats:?}");
    }

    fn init_or_skip() {
        gst::init().expect("GStreamer");
    }
}
