//! One GStreamer pipeline per recorded source: read, depayload, parse and remux (never
//! re-encode camera video) into MPEG-TS segments with `splitmuxsink`.
//!
//! Design: each source has its own pipeline so that a lost camera can be torn down and
//! restarted without touching the others. Every pipeline runs on the monotonic system
//! clock; the shell maps running times to wall-clock time to put all sources of a hearing
//! on one timeline. Segment files are written unbuffered, so a SIGKILL loses only what
//! `splitmuxsink` still holds (at most one GOP) — see `docs/adr/0005-recording-container.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, warn};

use crate::{RecordError, mono};

/// Video codec of a camera stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoCodec {
    #[default]
    H264,
    H265,
    /// The stream has no video (an audio capture host).
    None,
}

/// The RTSP client element (named `src`) every pipeline that reads a camera or audio host
/// starts with: over TCP, 200 ms jitter buffer.
///
/// Design: a camera that stops sending is noticed within 3 s (`tcp-timeout`) and a
/// teardown to a dead camera gives up after 0.1 s, so the supervisor can record the gap
/// and retry; the recorder and the patrol analysers share these numbers.
pub fn rtsp_client(url: &str) -> String {
    format!(
        "rtspsrc name=src location=\"{}\" protocols=tcp latency=200 tcp-timeout=3000000 teardown-timeout=100000000 ",
        url.replace('"', "")
    )
}

/// Where a source's media comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceInput {
    /// An RTSP camera or audio host: remuxed, never re-encoded.
    Rtsp {
        url: String,
        #[serde(default)]
        video: VideoCodec,
        /// The stream carries AAC audio to record (a multi-channel audio host: one
        /// channel per seat).
        #[serde(default)]
        audio: bool,
    },
    /// A local V4L2 camera that delivers H.264 itself (UVC 1.5): remuxed.
    V4l2 { device: String },
    /// A local multi-channel ALSA interface: raw PCM, so it is encoded (AAC).
    Alsa { device: String, channels: u16 },
    /// A generated test pattern, encoded with x264 (simulation only).
    Test { width: u32, height: u32, fps: u32 },
}

/// A source to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// Source id from the profile.
    pub id: String,
    #[serde(flatten)]
    pub input: SourceInput,
}

impl SourceConfig {
    /// The kind name for manifests.
    pub fn kind(&self) -> &'static str {
        match self.input {
            SourceInput::Rtsp { .. } => "rtsp",
            SourceInput::V4l2 { .. } => "v4l2",
            SourceInput::Alsa { .. } => "alsa",
            SourceInput::Test { .. } => "test",
        }
    }

    /// Where the media comes from, without credentials.
    pub fn public_uri(&self) -> Option<String> {
        match &self.input {
            SourceInput::Rtsp { url, .. } => Some(strip_credentials(url)),
            SourceInput::V4l2 { device } | SourceInput::Alsa { device, .. } => Some(device.clone()),
            SourceInput::Test { .. } => None,
        }
    }

    /// The `gst-launch` description of the source's pipeline up to the muxer: the video
    /// branch ends in a queue named `qv`, the audio branch in one named `qa`.
    pub fn description(&self) -> String {
        self.description_with(None, false)
    }

    /// [`SourceConfig::description`], with an audio meter when `meter` gives its interval:
    /// the audio is split by a tee before the muxer and one branch, behind a leaky queue
    /// named `qm`, is decoded and measured by a `level` element named `meter` that posts
    /// per-channel levels on the bus. Sources without audio get no meter.
    ///
    /// Design: the meter can never slow or block the recording. Its queue drops the
    /// oldest buffers when the decoder falls behind (`leaky=downstream`), its sink neither
    /// syncs nor prerolls, and the recorded branch is byte for byte what it was without
    /// the meter (the tee copies references, not data).
    ///
    /// With `tap`, a second branch after the same tee, behind its own leaky queue named
    /// `qt`, decodes the audio to 16 kHz interleaved S16 PCM (every channel: one per seat)
    /// into an appsink named `tap` for transcription ([`PcmTap`]), with the same
    /// guarantees: it never holds up the recorded branch.
    pub fn description_with(&self, meter: Option<Duration>, tap: bool) -> String {
        const TAIL: &str =
            "queue name=qv max-size-time=3000000000 max-size-buffers=0 max-size-bytes=0";
        match &self.input {
            SourceInput::Rtsp { url, video, audio } => {
                let mut d = rtsp_client(url);
                let depay = match video {
                    VideoCodec::H264 => Some("rtph264depay ! h264parse config-interval=-1"),
                    VideoCodec::H265 => Some("rtph265depay ! h265parse config-interval=-1"),
                    VideoCodec::None => None,
                };
                if let Some(depay) = depay {
                    d.push_str(&format!(
                        "src. ! {depay} ! queue name=qv max-size-time=3000000000 max-size-buffers=0 max-size-bytes=0 "
                    ));
                }
                if *audio {
                    let branches = side_branches("avdec_aac ! audioconvert", meter, tap);
                    if branches.is_empty() {
                        d.push_str(
                            "src. ! rtpmp4gdepay ! aacparse ! queue name=qa max-size-time=3000000000 max-size-buffers=0 max-size-bytes=0 ",
                        );
                    } else {
                        d.push_str(&format!(
                            "src. ! rtpmp4gdepay ! aacparse ! tee name=ta ! queue name=qa max-size-time=3000000000 max-size-buffers=0 max-size-bytes=0 {branches}"
                        ));
                    }
                }
                d
            }
            SourceInput::V4l2 { device } => format!(
                "v4l2src device=\"{device}\" ! video/x-h264 ! h264parse config-interval=-1 ! {TAIL}"
            ),
            SourceInput::Alsa { device, channels } => {
                // Raw PCM: measured and tapped before it is encoded, no decoder needed.
                let branches = side_branches("audioconvert", meter, tap);
                if branches.is_empty() {
                    format!(
                        "alsasrc device=\"{device}\" ! audio/x-raw,channels={channels} ! audioconvert ! avenc_aac ! aacparse ! queue name=qa"
                    )
                } else {
                    format!(
                        "alsasrc device=\"{device}\" ! audio/x-raw,channels={channels} ! audioconvert ! tee name=ta \
                         ! queue ! avenc_aac ! aacparse ! queue name=qa {branches}"
                    )
                }
            }
            SourceInput::Test { width, height, fps } => format!(
                "videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} ! h264parse config-interval=-1 ! {TAIL}"
            ),
        }
    }
}

/// The branches after the audio tee `ta`: the meter and the transcription tap.
fn side_branches(decode: &str, meter: Option<Duration>, tap: bool) -> String {
    let mut d = String::new();
    if let Some(interval) = meter {
        d.push_str(&format!("ta. ! {} ", meter_branch(decode, interval)));
    }
    if tap {
        d.push_str(&format!("ta. ! {} ", tap_branch(decode)));
    }
    d
}

/// The transcription branch after a tee: a leaky queue (`qt`, its overruns counted),
/// `decode` to raw audio, 16 kHz interleaved S16 (all channels), and an appsink (`tap`)
/// whose callback copies each buffer into the transcriber's bounded buffer and returns.
fn tap_branch(decode: &str) -> String {
    format!(
        "queue name=qt leaky=downstream max-size-time=2000000000 max-size-buffers=0 max-size-bytes=0 \
         ! {decode} ! audioresample ! audio/x-raw,format=S16LE,layout=interleaved,rate=16000 \
         ! appsink name=tap sync=false async=false max-buffers=0 drop=false emit-signals=false"
    )
}

/// The meter branch after a tee: a leaky queue (`qm`), `decode` to raw audio, `level`
/// (`meter`) every `interval`, and a sink that never waits.
fn meter_branch(decode: &str, interval: Duration) -> String {
    format!(
        "queue name=qm leaky=downstream max-size-time=1000000000 max-size-buffers=0 max-size-bytes=0 \
         ! {decode} ! level name=meter interval={} post-messages=true \
         ! fakesink sync=false async=false",
        interval.as_nanos().max(10_000_000)
    )
}

/// Short-term audio levels of one source's channels, from its recording pipeline's meter.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioLevels {
    /// Source id.
    pub source: String,
    /// When the levels were read, on the recorder's monotonic time base ([`crate::mono`]).
    pub at: Duration,
    /// RMS level of each channel over the last interval, dBFS, in the source's channel
    /// order (channel `n` is the seat with `channel = n`); silence is `-inf` or very low.
    pub rms_dbfs: Vec<f64>,
}

/// Which sources are metered and where their levels go.
#[derive(Debug, Clone)]
pub struct Meter {
    /// Source ids to meter (sources without audio are skipped).
    pub sources: Vec<String>,
    /// How often each metered source reports (100 ms is plenty for speaker-follow).
    pub interval: Duration,
    /// Receiver of the levels. Sent with `try_send`: when the receiver lags, levels are
    /// dropped (and counted), never waited for.
    pub levels: tokio::sync::mpsc::Sender<AudioLevels>,
}

/// What the transcription tap hands over, from the pipeline's streaming thread.
#[derive(Debug)]
pub enum TapData<'a> {
    /// 16 kHz interleaved S16 PCM of every channel of the source.
    Pcm {
        hearing_id: &'a str,
        source: &'a str,
        channels: usize,
        samples: &'a [i16],
    },
    /// The source's audio ended (the recording was drained).
    End {
        hearing_id: &'a str,
        source: &'a str,
    },
}

/// Which sources feed transcription, and where their PCM goes.
#[derive(Clone)]
pub struct PcmTap {
    /// Source ids to tap (sources without audio are skipped).
    pub sources: Vec<String>,
    /// Receives the PCM. Called on the pipeline's streaming thread: it must copy and
    /// return at once (the transcriber's `Tap::push` does), never wait.
    pub sink: Arc<dyn Fn(TapData<'_>) + Send + Sync>,
    /// Buffers the tap's leaky queue dropped because its decoder was starved of CPU; the
    /// recorded branch is never affected.
    pub dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for PcmTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmTap")
            .field("sources", &self.sources)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

/// `url` without its `user:password@` part.
fn strip_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// What a pipeline reports to the recorder.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineEvent {
    /// A segment file was opened.
    Opened {
        source: String,
        generation: u64,
        location: PathBuf,
        running_ns: u64,
        wall: OffsetDateTime,
    },
    /// A segment file was closed (complete).
    Closed {
        source: String,
        generation: u64,
        location: PathBuf,
        running_ns: u64,
    },
    /// The pipeline failed.
    Error {
        source: String,
        generation: u64,
        message: String,
    },
    /// End of stream reached the muxer (after a drain, or the camera ended the stream).
    Eos { source: String, generation: u64 },
}

/// Times of the first and latest buffer, monotonic nanoseconds (0 = none yet).
#[derive(Debug, Default)]
pub struct Flow {
    first: AtomicU64,
    last: AtomicU64,
}

impl Flow {
    /// First and latest buffer times, when data has flowed.
    pub fn times(&self) -> Option<(Duration, Duration)> {
        let first = self.first.load(Ordering::Relaxed);
        let last = self.last.load(Ordering::Relaxed);
        (first != 0).then(|| (Duration::from_nanos(first), Duration::from_nanos(last)))
    }

    fn mark(&self) {
        let now = (mono().as_nanos() as u64).max(1);
        let _ = self
            .first
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
    }
}

/// A running source pipeline.
pub struct SourcePipeline {
    pipeline: gst::Pipeline,
    /// Data flow of the pipeline.
    pub flow: Arc<Flow>,
    /// Instance number: events of an earlier instance are ignored.
    pub generation: u64,
    stop: Arc<AtomicBool>,
    bus_thread: Option<JoinHandle<()>>,
    /// Names of the queues feeding the muxer.
    branches: Vec<&'static str>,
    /// Whether the pipeline has an audio meter (its queue `qm` also gets the drain's EOS).
    metered: bool,
    /// Whether the pipeline has a transcription tap (its queue `qt` gets the EOS too).
    tapped: bool,
}

/// Initialises GStreamer once.
pub fn init() -> Result<(), RecordError> {
    gst::init().map_err(|e| RecordError::Pipeline(format!("GStreamer init: {e}")))
}

impl SourcePipeline {
    /// Builds and starts the pipeline of `source`, writing segments `dir/NNNNN.ts` from
    /// number `start_index`, each about `segment` long. With a `meter` naming this
    /// source, its audio channels' levels are sent there as well; with a `tap` naming it,
    /// its PCM goes to transcription, labelled with `hearing_id`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        source: &SourceConfig,
        dir: &Path,
        start_index: u32,
        segment: Duration,
        generation: u64,
        events: UnboundedSender<PipelineEvent>,
        meter: Option<&Meter>,
        tap: Option<(&PcmTap, &str)>,
    ) -> Result<Self, RecordError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            RecordError::Pipeline(format!("{}: {what}: {e}", source.id))
        };
        std::fs::create_dir_all(dir).map_err(|e| err("creating the segment folder", &e))?;
        let meter = meter.filter(|m| m.sources.contains(&source.id));
        let tap = tap.filter(|(t, _)| t.sources.contains(&source.id));
        let description = source.description_with(meter.map(|m| m.interval), tap.is_some());
        debug!(source = %source.id, %description, "building pipeline");
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| err("building the pipeline", &e))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| err("building the pipeline", &"not a pipeline"))?;
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let sink = gst::ElementFactory::make("filesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .map_err(|e| err("creating the file sink", &e))?;
        // Design: unbuffered, so every muxed packet reaches the kernel at once: a killed
        // recorder loses only what splitmuxsink itself still holds.
        sink.set_property_from_str("buffer-mode", "unbuffered");
        let muxer = gst::ElementFactory::make("mpegtsmux")
            .build()
            .map_err(|e| err("creating the MPEG-TS muxer", &e))?;
        // Design: muxer and sink are set before any pad is requested: splitmuxsink creates
        // its muxer with the first pad (and `muxer-factory` applies only with
        // async-finalize), so anything later silently leaves the default mp4mux, which
        // is not crash-safe.
        let mux = gst::ElementFactory::make("splitmuxsink")
            .name("mux")
            .property("muxer", &muxer)
            .property("sink", &sink)
            .property("max-size-time", segment.as_nanos() as u64)
            .property("max-size-bytes", 0u64)
            .property("send-keyframe-requests", true)
            .property("start-index", start_index as i32)
            .property(
                "location",
                dir.join("%05d.ts").to_string_lossy().to_string(),
            )
            .build()
            .map_err(|e| err("creating the segment muxer", &e))?;
        pipeline
            .add(&mux)
            .map_err(|e| err("building the pipeline", &e))?;

        let flow = Arc::new(Flow::default());
        let mut branches = Vec::new();
        for (queue, pad) in [("qv", "video"), ("qa", "audio_%u")] {
            let Some(q) = pipeline.by_name(queue) else {
                continue;
            };
            q.link_pads(Some("src"), &mux, Some(pad))
                .map_err(|e| err("linking the muxer", &e))?;
            if let Some(src) = q.static_pad("src") {
                let flow = flow.clone();
                src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    flow.mark();
                    gst::PadProbeReturn::Ok
                });
            }
            branches.push(queue);
        }
        if branches.is_empty() {
            return Err(err("building the pipeline", &"no video or audio branch"));
        }
        let metered = pipeline.by_name("meter").is_some();
        let tapped = match (tap, pipeline.by_name("tap")) {
            (Some((tap, hearing_id)), Some(sink)) => {
                connect_tap(&pipeline, sink, tap, hearing_id, &source.id)
                    .map_err(|e| err("connecting the transcription tap", &e))?;
                true
            }
            _ => false,
        };
        let levels = meter.filter(|_| metered).map(|m| m.levels.clone());

        let stop = Arc::new(AtomicBool::new(false));
        let bus = pipeline
            .bus()
            .ok_or_else(|| err("building the pipeline", &"no bus"))?;
        let bus_thread = {
            let stop = stop.clone();
            let id = source.id.clone();
            let weak = pipeline.downgrade();
            std::thread::Builder::new()
                .name(format!("bus-{}", source.id))
                .spawn(move || watch_bus(bus, weak, id, generation, stop, events, levels))
                .map_err(|e| err("starting the bus watcher", &e))?
        };
        let this = Self {
            pipeline,
            flow,
            generation,
            stop,
            bus_thread: Some(bus_thread),
            branches,
            metered,
            tapped,
        };
        this.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| err("starting", &e))?;
        Ok(this)
    }

    /// Ends the stream so the muxer closes its open segment; [`PipelineEvent::Eos`]
    /// follows.
    pub fn drain(&self) {
        // Design: the meter's sink must see EOS too, or the pipeline never posts it.
        let meter = self.metered.then_some("qm");
        let tap = self.tapped.then_some("qt");
        for name in self.branches.iter().copied().chain(meter).chain(tap) {
            if let Some(pad) = self
                .pipeline
                .by_name(name)
                .and_then(|q| q.static_pad("sink"))
            {
                pad.send_event(gst::event::Eos::new());
            }
        }
    }

    /// Stops the pipeline without closing its open segment (crash recovery chains it),
    /// on a helper thread so a hung camera connection cannot block the caller.
    pub fn teardown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let pipeline = self.pipeline.clone();
        let bus_thread = self.bus_thread.take();
        let spawned = std::thread::Builder::new()
            .name("teardown".into())
            .spawn(move || {
                let _ = pipeline.set_state(gst::State::Null);
                if let Some(t) = bus_thread {
                    let _ = t.join();
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "teardown thread failed; stopping inline");
            let _ = self.pipeline.set_state(gst::State::Null);
        }
    }
}

impl SourcePipeline {
    /// Stops the pipeline and waits until it has stopped writing (blocking).
    pub fn stop_blocking(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(t) = self.bus_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SourcePipeline {
    fn drop(&mut self) {
        if self.bus_thread.is_some() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.pipeline.set_state(gst::State::Null);
        }
    }
}

fn watch_bus(
    bus: gst::Bus,
    pipeline: gst::glib::WeakRef<gst::Pipeline>,
    source: String,
    generation: u64,
    stop: Arc<AtomicBool>,
    events: UnboundedSender<PipelineEvent>,
    levels: Option<tokio::sync::mpsc::Sender<AudioLevels>>,
) {
    use gst::MessageView;
    let mut dropped: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        let event = match msg.view() {
            MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                if s.name() == "level" {
                    if let Some(tx) = &levels
                        && let Some(rms_dbfs) = rms_of(s)
                    {
                        let sent = tx.try_send(AudioLevels {
                            source: source.clone(),
                            at: mono(),
                            rms_dbfs,
                        });
                        if sent.is_err() {
                            dropped += 1;
                            if dropped.is_power_of_two() {
                                debug!(%source, dropped, "audio levels dropped: the receiver lags");
                            }
                        }
                    }
                    continue;
                }
                let opened = s.name() == "splitmuxsink-fragment-opened";
                if !opened && s.name() != "splitmuxsink-fragment-closed" {
                    continue;
                }
                let Ok(location) = s.get::<String>("location") else {
                    continue;
                };
                let running_ns = s
                    .get::<gst::ClockTime>("running-time")
                    .map(|t| t.nseconds())
                    .or_else(|_| s.get::<u64>("running-time"))
                    .unwrap_or(0);
                if opened {
                    let wall = pipeline
                        .upgrade()
                        .and_then(|p| wall_of_running(&p, running_ns))
                        .unwrap_or_else(OffsetDateTime::now_utc);
                    PipelineEvent::Opened {
                        source: source.clone(),
                        generation,
                        location: location.into(),
                        running_ns,
                        wall,
                    }
                } else {
                    PipelineEvent::Closed {
                        source: source.clone(),
                        generation,
                        location: location.into(),
                        running_ns,
                    }
                }
            }
            MessageView::Error(e) => PipelineEvent::Error {
                source: source.clone(),
                generation,
                message: format!(
                    "{}{}",
                    e.error(),
                    e.src()
                        .map(|s| format!(" (from {})", s.path_string()))
                        .unwrap_or_default()
                ),
            },
            MessageView::Eos(_) => PipelineEvent::Eos {
                source: source.clone(),
                generation,
            },
            _ => continue,
        };
        if events.send(event).is_err() {
            break;
        }
    }
}

/// Hands the tap's PCM to `tap.sink` and counts its queue's overruns.
fn connect_tap(
    pipeline: &gst::Pipeline,
    sink: gst::Element,
    tap: &PcmTap,
    hearing_id: &str,
    source: &str,
) -> Result<(), String> {
    use gstreamer_app::AppSink;
    if let Some(queue) = pipeline.by_name("qt") {
        let dropped = tap.dropped.clone();
        queue.connect("overrun", false, move |_| {
            dropped.fetch_add(1, Ordering::Relaxed);
            None
        });
    }
    let appsink = sink
        .downcast::<AppSink>()
        .map_err(|_| "the tap is not an appsink".to_owned())?;
    let (on_pcm, on_eos) = (tap.sink.clone(), tap.sink.clone());
    let (h1, s1) = (hearing_id.to_owned(), source.to_owned());
    let (h2, s2) = (h1.clone(), s1.clone());
    appsink.set_callbacks(
        gstreamer_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let channels = sample
                    .caps()
                    .and_then(|c| c.structure(0))
                    .and_then(|s| s.get::<i32>("channels").ok())
                    .unwrap_or(1)
                    .max(1) as usize;
                if let Some(buffer) = sample.buffer()
                    && let Ok(map) = buffer.map_readable()
                {
                    let samples: Vec<i16> = map
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    on_pcm(TapData::Pcm {
                        hearing_id: &h1,
                        source: &s1,
                        channels,
                        samples: &samples,
                    });
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .eos(move |_| {
                on_eos(TapData::End {
                    hearing_id: &h2,
                    source: &s2,
                })
            })
            .build(),
    );
    Ok(())
}

/// The per-channel RMS levels (dBFS) of a `level` message.
fn rms_of(s: &gst::StructureRef) -> Option<Vec<f64>> {
    // GStreamer 1.22 posts a GValueArray; later versions may post a GstValueArray.
    if let Ok(rms) = s.get::<gst::glib::ValueArray>("rms") {
        return Some(rms.iter().filter_map(|v| v.get::<f64>().ok()).collect());
    }
    let rms = s.get::<gst::Array>("rms").ok()?;
    Some(rms.iter().filter_map(|v| v.get::<f64>().ok()).collect())
}

/// Wall-clock time of a running time of `pipeline`.
fn wall_of_running(pipeline: &gst::Pipeline, running_ns: u64) -> Option<OffsetDateTime> {
    let clock = pipeline.clock()?;
    let base = pipeline.base_time()?.nseconds();
    let now_clock = clock.time().nseconds();
    let wall_now = OffsetDateTime::now_utc();
    let at = base + running_ns;
    Some(if at <= now_clock {
        wall_now - Duration::from_nanos(now_clock - at)
    } else {
        wall_now + Duration::from_nanos(at - now_clock)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rtsp_camera_is_remuxed_without_an_encoder_and_credentials_stay_out_of_the_manifest() {
        let s = SourceConfig {
            id: "cam".into(),
            input: SourceInput::Rtsp {
                url: "rtsp://user:secret@10.0.0.5:554/main".into(),
                video: VideoCodec::H264,
                audio: false,
            },
        };
        let d = s.description();
        assert!(d.contains("rtph264depay ! h264parse"), "{d}");
        let encoders = d
            .split('!')
            .filter_map(|e| {
                e.split_whitespace()
                    .find(|w| !w.contains('=') && !w.ends_with('.'))
            })
            .filter(|name| name.ends_with("enc"))
            .count();
        assert_eq!(encoders, 0, "camera video is never re-encoded: {d}");
        assert_eq!(s.public_uri().as_deref(), Some("rtsp://10.0.0.5:554/main"));
    }

    #[test]
    fn an_audio_host_records_its_aac_channels_only() {
        let s = SourceConfig {
            id: "mics".into(),
            input: SourceInput::Rtsp {
                url: "rtsp://10.0.0.9/seats".into(),
                video: VideoCodec::None,
                audio: true,
            },
        };
        let d = s.description();
        assert!(d.contains("rtpmp4gdepay ! aacparse"), "{d}");
        assert!(!d.contains("depay ! h26"), "{d}");
    }

    #[test]
    fn a_metered_audio_host_taps_its_audio_behind_a_leaky_queue_and_records_the_same_stream() {
        let s = SourceConfig {
            id: "mics".into(),
            input: SourceInput::Rtsp {
                url: "rtsp://10.0.0.9/seats".into(),
                video: VideoCodec::None,
                audio: true,
            },
        };
        let d = s.description_with(Some(Duration::from_millis(100)), false);
        assert!(d.contains("aacparse ! tee name=ta ! queue name=qa"), "{d}");
        assert!(
            d.contains("queue name=qm leaky=downstream"),
            "the meter never holds up the recording: {d}"
        );
        assert!(d.contains("level name=meter interval=100000000"), "{d}");
        assert!(d.contains("fakesink sync=false async=false"), "{d}");
        let alsa = SourceConfig {
            id: "mics".into(),
            input: SourceInput::Alsa {
                device: "hw:1".into(),
                channels: 5,
            },
        };
        let d = alsa.description_with(Some(Duration::from_millis(100)), false);
        assert!(d.contains("tee name=ta"), "{d}");
        assert!(
            !d.contains("avdec_aac"),
            "raw PCM is measured undecoded: {d}"
        );
    }

    #[test]
    fn a_camera_without_audio_gets_no_meter() {
        let s = SourceConfig {
            id: "cam".into(),
            input: SourceInput::Rtsp {
                url: "rtsp://10.0.0.5/main".into(),
                video: VideoCodec::H264,
                audio: false,
            },
        };
        assert_eq!(
            s.description_with(Some(Duration::from_millis(100)), false),
            s.description()
        );
    }
}
