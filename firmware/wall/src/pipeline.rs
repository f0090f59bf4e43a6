//! The GStreamer shell around [`crate::core::WallCore`].
//!
//! ```text
//!  per source (own pipeline, restarted alone):
//!    rtspsrc (tcp) ! decodebin ! videorate ! videoconvert ! videoscale ! I420 WxH ! appsink
//!                                                                               │ frames, counted
//!  compositor pipeline (never restarted):                                      ▼
//!    appsrc (live) ! textoverlay (court · room · case) ! queue ─┐   slate frames when lost
//!    appsrc ...                                                 ├─ compositor ! output sink
//!    videotestsrc (black, paces the output) ────────────────────┘
//! ```
//!
//! Design: each source runs in its own pipeline, so an error, an end of stream or a stall of
//! one camera tears down and restarts only that camera; the compositor pipeline only ever
//! sees `appsrc`s, which never fail. A lost source's `appsrc` is fed a prepared slate
//! frame ("SIGNAL LOST", with the tile's label drawn by the same `textoverlay`), so the tile
//! never freezes on the last picture. Tiles are moved by setting the compositor pads'
//! geometry, so a focus switch costs one output frame.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gavel_protocol::Wall;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::WallError;
use crate::core::{Input, Output, RoomKey, Settings, Slate, WallCore};
use crate::layout::Rect;

/// Where the composed picture goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// The device's screen (`autovideosink`: KMS, Wayland or X, whichever is there).
    Display,
    /// The latest frame as a binary PPM file (written whole, then renamed), at most `fps`
    /// times a second: for tests, demos and remote checks.
    Frames { path: PathBuf, fps: u32 },
    /// Nowhere (composition only).
    None,
}

/// The wall's settings.
#[derive(Debug, Clone)]
pub struct WallSettings {
    /// Output size and supervision.
    pub core: Settings,
    /// Output frame rate.
    pub fps: u32,
    pub sink: Sink,
    /// Where the wall's state (tiles, their sources and health) is written as JSON after
    /// every change.
    pub state_file: Option<PathBuf>,
}

/// Slate backgrounds: dark grey while connecting, dark red when lost.
const CONNECTING_COLOR: u32 = 0xff30_3030;
const LOST_COLOR: u32 = 0xff80_0000;

const MODE_SLATE_CONNECTING: u8 = 0;
const MODE_SLATE_LOST: u8 = 1;
const MODE_LIVE: u8 = 2;

/// One source's input into the compositor.
struct Branch {
    bin: gst::Bin,
    pad: gst::Pad,
    appsrc: gst_app::AppSrc,
    /// The tile's label (drawn into its frames by the source pipeline).
    label: String,
    /// Connecting and lost slates, with the label.
    slates: [gst::Buffer; 2],
    /// `MODE_*`: whether the source's frames or a slate go to the tile.
    mode: Arc<AtomicU8>,
    /// Whether the tile is on the wall (hidden sources are not fed).
    visible: Arc<AtomicBool>,
}

/// One source's own pipeline.
struct SourcePipe {
    pipeline: gst::Pipeline,
    frames: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    generation: u64,
}

impl SourcePipe {
    /// Stops the pipeline off the caller's thread (an RTSP teardown can take a while).
    fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        let pipeline = self.pipeline;
        std::thread::spawn(move || {
            let _ = pipeline.set_state(gst::State::Null);
        });
    }
}

/// Cloneable handle to the wall task.
#[derive(Clone)]
pub struct WallHandle {
    tx: mpsc::Sender<Wall>,
}

impl WallHandle {
    /// Hands a configuration from the controller to the wall.
    pub async fn apply(&self, wall: Wall) -> Result<(), WallError> {
        self.tx.send(wall).await.map_err(|_| WallError::Stopped)
    }
}

/// Input frame size: half the output (enough for the focus tile of `1+5`, scaled up for
/// `1`), even-sized for I420.
fn input_size(s: &Settings) -> (u32, u32) {
    ((s.width / 2).max(16) & !1, (s.height / 2).max(16) & !1)
}

fn caps_text(w: u32, h: u32, fps: u32) -> String {
    format!(
        "video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1,interlace-mode=progressive"
    )
}

/// The tile label as every source pipeline and slate draws it (bottom left, shaded).
const LABEL: &str = "textoverlay name=label valignment=bottom halignment=left shaded-background=true font-desc=\"Sans 14\"";

/// Renders one slate frame: a dark background with `text` in the middle and the tile's
/// `label` where live frames have it.
fn slate(w: u32, h: u32, color: u32, text: &str, label: &str) -> Result<gst::Buffer, WallError> {
    let desc = format!(
        "videotestsrc num-buffers=1 pattern=solid-color foreground-color={color} \
         ! video/x-raw,format=I420,width={w},height={h} \
         ! textoverlay name=t valignment=center halignment=center font-desc=\"Sans Bold 28\" \
         ! {LABEL} ! appsink name=out sync=false"
    );
    let pipeline = launch(&desc)?;
    if let Some(t) = pipeline.by_name("t") {
        t.set_property("text", text);
    }
    if let Some(t) = pipeline.by_name("label") {
        t.set_property("text", label);
    }
    let sink = appsink(&pipeline, "out")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| WallError::Pipeline(format!("slate: {e}")))?;
    let sample = sink
        .pull_sample()
        .map_err(|_| WallError::Pipeline("slate: no frame".into()));
    let _ = pipeline.set_state(gst::State::Null);
    let buffer = sample?
        .buffer_owned()
        .ok_or_else(|| WallError::Pipeline("slate: empty sample".into()))?;
    Ok(buffer)
}

fn launch(desc: &str) -> Result<gst::Pipeline, WallError> {
    gst::parse::launch(desc)
        .map_err(|e| WallError::Pipeline(format!("{e}: {desc}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| WallError::Pipeline("not a pipeline".into()))
}

fn appsink(pipeline: &gst::Pipeline, name: &str) -> Result<gst_app::AppSink, WallError> {
    pipeline
        .by_name(name)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| WallError::Pipeline(format!("no appsink {name}")))
}

/// A buffer without timestamps (the `appsrc` stamps it with the compositor's clock).
fn unstamped(buffer: &gst::Buffer) -> gst::Buffer {
    let mut b = buffer.copy();
    {
        let b = b.make_mut();
        b.set_pts(gst::ClockTime::NONE);
        b.set_dts(gst::ClockTime::NONE);
        b.set_duration(gst::ClockTime::NONE);
    }
    b
}

/// Starts the wall: the compositor pipeline and the task that owns the core. The task ends
/// when `shutdown` resolves.
pub fn spawn(
    settings: WallSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(WallHandle, tokio::task::JoinHandle<()>), WallError> {
    gst::init().map_err(|e| WallError::Pipeline(format!("GStreamer init: {e}")))?;
    let (iw, ih) = input_size(&settings.core);
    // Fails early (missing plugins) rather than at the first source.
    slate(iw, ih, LOST_COLOR, "SIGNAL LOST", "")?;
    let (w, h, fps) = (
        settings.core.width,
        settings.core.height,
        settings.fps.max(1),
    );
    let sink = match &settings.sink {
        Sink::Display => "queue leaky=downstream max-size-buffers=2 ! videoconvert ! autovideosink sync=false".to_owned(),
        Sink::Frames { .. } => "queue leaky=downstream max-size-buffers=2 ! videoconvert ! video/x-raw,format=RGB ! appsink name=frames sync=false max-buffers=1 drop=true".to_owned(),
        Sink::None => "fakesink sync=false".to_owned(),
    };
    // Design: a tiny black live source paces the output at `fps` whatever the cameras do;
    // pads of sources that have not delivered yet are not waited for.
    let desc = format!(
        "compositor name=mix background=black latency=100000000 \
           ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 ! {sink} \
         videotestsrc is-live=true pattern=black ! video/x-raw,width=16,height=16,framerate={fps}/1 ! queue ! mix."
    );
    let pipeline = launch(&desc)?;
    let mix = pipeline
        .by_name("mix")
        .ok_or_else(|| WallError::Pipeline("no compositor".into()))?;
    for pad in mix.sink_pads() {
        pad.set_property("alpha", 0.0f64);
    }
    if let Sink::Frames { path, fps } = &settings.sink {
        let sink = appsink(&pipeline, "frames")?;
        let path = path.clone();
        let period = Duration::from_secs(1) / (*fps).max(1);
        let mut last: Option<Instant> = None;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if last.is_some_and(|l| l.elapsed() < period) {
                        return Ok(gst::FlowSuccess::Ok);
                    }
                    last = Some(Instant::now());
                    if let Err(e) = write_ppm(&path, &sample) {
                        debug!(error = %e, "writing the wall frame failed");
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| WallError::Pipeline(format!("starting the compositor: {e}")))?;
    // Inputs are added to a pipeline that is PLAYING, never to one changing state.
    let (done, _, _) = pipeline.state(gst::ClockTime::from_seconds(5));
    done.map_err(|e| WallError::Pipeline(format!("the compositor did not start: {e}")))?;
    let (tx, rx) = mpsc::channel(8);
    let shell = Shell {
        core: WallCore::new(settings.core),
        settings,
        pipeline,
        mix,
        input: (iw, ih),
        branches: BTreeMap::new(),
        sources: BTreeMap::new(),
        generation: 0,
        failures: mpsc::unbounded_channel(),
    };
    let task = tokio::spawn(shell.run(rx, shutdown));
    Ok((WallHandle { tx }, task))
}

/// Writes the frame as a binary PPM with the time it was composed in a comment.
fn write_ppm(path: &Path, sample: &gst::Sample) -> std::io::Result<()> {
    let other = |m: &str| std::io::Error::other(m.to_owned());
    let caps = sample.caps().ok_or_else(|| other("no caps"))?;
    let s = caps.structure(0).ok_or_else(|| other("no structure"))?;
    let w = s.get::<i32>("width").map_err(|_| other("no width"))? as usize;
    let h = s.get::<i32>("height").map_err(|_| other("no height"))? as usize;
    let buffer = sample.buffer().ok_or_else(|| other("no buffer"))?;
    let map = buffer.map_readable().map_err(|_| other("unmappable"))?;
    let data = map.as_slice();
    let stride = (w * 3 + 3) & !3;
    if data.len() < stride * h {
        return Err(other("short frame"));
    }
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut out = Vec::with_capacity(w * h * 3 + 64);
    out.extend_from_slice(
        format!("P6\n# gavel-wall composed_unix_ms={ms}\n{w} {h}\n255\n").as_bytes(),
    );
    for row in 0..h {
        out.extend_from_slice(&data[row * stride..row * stride + w * 3]);
    }
    let tmp = path.with_extension("ppm.tmp");
    std::fs::write(&tmp, &out)?;
    std::fs::rename(&tmp, path)
}

/// A source pipeline's failure: (source, pipeline generation, reason).
type Failure = (RoomKey, u64, String);

struct Shell {
    core: WallCore,
    settings: WallSettings,
    pipeline: gst::Pipeline,
    mix: gst::Element,
    input: (u32, u32),
    branches: BTreeMap<RoomKey, Branch>,
    sources: BTreeMap<RoomKey, SourcePipe>,
    generation: u64,
    failures: (
        mpsc::UnboundedSender<Failure>,
        mpsc::UnboundedReceiver<Failure>,
    ),
}

impl Shell {
    async fn run(
        mut self,
        mut configs: mpsc::Receiver<Wall>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let bus = self.pipeline.bus();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(wall) = configs.recv() => {
                    info!(version = wall.version, layout = %wall.layout, sources = wall.sources.len(),
                          focus = ?wall.focus.as_ref().map(|f| &f.room), "wall configuration");
                    self.feed(Input::Config(Box::new(wall)));
                }
                Some((source, generation, reason)) = self.failures.1.recv() => {
                    if self.sources.get(&source).is_some_and(|p| p.generation == generation) {
                        self.feed(Input::Failed { source, reason });
                    }
                }
                _ = tick.tick() => {
                    let progress: Vec<(RoomKey, u64)> = self
                        .sources
                        .iter()
                        .map(|(k, p)| (k.clone(), p.frames.load(Ordering::Relaxed)))
                        .collect();
                    for (source, frames) in progress {
                        self.feed(Input::Progress { source, frames });
                    }
                    self.feed(Input::Tick);
                    self.push_slates();
                    if let Some(bus) = &bus {
                        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                            if let gst::MessageView::Error(e) = msg.view() {
                                warn!(error = %e.error(), debug = ?e.debug(), "wall compositor error");
                            }
                        }
                    }
                }
            }
        }
        for (_, p) in std::mem::take(&mut self.sources) {
            p.shutdown();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        info!("wall stopped");
    }

    fn feed(&mut self, input: Input) {
        let outputs = self.core.handle(Instant::now(), input);
        if outputs.is_empty() {
            return;
        }
        let added = outputs.iter().any(|o| matches!(o, Output::Add { .. }));
        for o in outputs {
            self.apply(o);
        }
        if added {
            // Design: inputs added while playing take part in the live latency only once
            // the pipeline recomputes it; without this the compositor can stall waiting.
            if let Err(e) = self.pipeline.recalculate_latency() {
                debug!(error = %e, "recomputing the wall latency failed");
            }
        }
        self.write_state();
    }

    fn write_state(&self) {
        let Some(path) = &self.settings.state_file else {
            return;
        };
        let view = self.core.view();
        let Ok(text) = serde_json::to_vec_pretty(&view) else {
            return;
        };
        let tmp = path.with_extension("json.tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            debug!(error = %e, "writing the wall state failed");
        }
    }

    fn push_slates(&self) {
        for b in self.branches.values() {
            let mode = b.mode.load(Ordering::Relaxed);
            if mode != MODE_LIVE && b.visible.load(Ordering::Relaxed) {
                let slate = &b.slates[usize::from(mode == MODE_SLATE_LOST)];
                let _ = b.appsrc.push_buffer(unstamped(slate));
            }
        }
    }

    fn apply(&mut self, output: Output) {
        match output {
            Output::Add { source, label } => match self.add_branch(&label) {
                Ok(b) => {
                    self.branches.insert(source, b);
                }
                Err(e) => warn!(%source, error = %e, "adding a wall input failed"),
            },
            Output::Remove { source } => {
                if let Some(b) = self.branches.remove(&source) {
                    self.remove_branch(b);
                }
            }
            Output::Relabel { source, label } => {
                let (w, h) = self.input;
                let slates = slate(w, h, CONNECTING_COLOR, "CONNECTING…", &label)
                    .and_then(|c| Ok([c, slate(w, h, LOST_COLOR, "SIGNAL LOST", &label)?]));
                if let Some(b) = self.branches.get_mut(&source) {
                    match slates {
                        Ok(s) => b.slates = s,
                        Err(e) => warn!(%source, error = %e, "new slates failed; keeping the old"),
                    }
                    b.label = label.clone();
                }
                if let Some(t) = self
                    .sources
                    .get(&source)
                    .and_then(|p| p.pipeline.by_name("label"))
                {
                    t.set_property("text", label.as_str());
                }
                info!(%source, %label, "tile relabelled");
            }
            Output::Connect { source, url } => {
                if let Some(old) = self.sources.remove(&source) {
                    old.shutdown();
                }
                match self.connect(&source, &url) {
                    Ok(p) => {
                        info!(%source, url = %redact(&url), "wall source connecting");
                        self.sources.insert(source, p);
                    }
                    Err(e) => {
                        warn!(%source, error = %e, "starting a wall source failed");
                        let _ = self
                            .failures
                            .0
                            .send((source, self.generation, e.to_string()));
                    }
                }
            }
            Output::Disconnect { source } => {
                if let Some(p) = self.sources.remove(&source) {
                    p.shutdown();
                }
            }
            Output::ShowLive { source } => {
                info!(%source, "wall source live");
                if let Some(b) = self.branches.get(&source) {
                    b.mode.store(MODE_LIVE, Ordering::Relaxed);
                }
            }
            Output::ShowSlate { source, slate } => {
                if slate == Slate::Lost {
                    let why = self
                        .core
                        .view()
                        .tiles
                        .into_iter()
                        .find(|t| t.source == source)
                        .and_then(|t| t.last_error);
                    warn!(%source, reason = ?why, "wall source lost; its tile shows the slate");
                }
                if let Some(b) = self.branches.get(&source) {
                    let mode = match slate {
                        Slate::Connecting => MODE_SLATE_CONNECTING,
                        Slate::Lost => MODE_SLATE_LOST,
                    };
                    b.mode.store(mode, Ordering::Relaxed);
                    if b.visible.load(Ordering::Relaxed) {
                        let _ = b
                            .appsrc
                            .push_buffer(unstamped(&b.slates[usize::from(mode)]));
                    }
                }
            }
            Output::Place { source, rect } => {
                if let Some(b) = self.branches.get(&source) {
                    place(&b.pad, rect);
                    b.visible.store(rect.is_some(), Ordering::Relaxed);
                    debug!(%source, ?rect, "tile placed");
                }
            }
        }
    }

    fn add_branch(&self, label: &str) -> Result<Branch, WallError> {
        let (w, h) = self.input;
        let desc = "appsrc name=src is-live=true do-timestamp=true format=time leaky-type=downstream max-buffers=2 min-latency=0 max-latency=1000000000";
        let slates = [
            slate(w, h, CONNECTING_COLOR, "CONNECTING…", label)?,
            slate(w, h, LOST_COLOR, "SIGNAL LOST", label)?,
        ];
        // Design: only an appsrc feeds each compositor pad, and it reports a bounded
        // maximum latency: with appsrc's default (0, below the compositor's 100 ms) the
        // aggregator's latency is invalid and it stalls as soon as an input stops
        // delivering (a hidden tile). The label is drawn in the source pipeline and into
        // the slates, so the compositor thread does no text rendering.
        let bin = gst::parse::bin_from_description(desc, true)
            .map_err(|e| WallError::Pipeline(format!("{e}: {desc}")))?;
        let appsrc = bin
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| WallError::Pipeline("no appsrc".into()))?;
        let caps: gst::Caps = caps_text(w, h, self.settings.fps.max(1))
            .parse()
            .map_err(|e| WallError::Pipeline(format!("input caps: {e}")))?;
        appsrc.set_caps(Some(&caps));
        self.pipeline
            .add(&bin)
            .map_err(|e| WallError::Pipeline(e.to_string()))?;
        let pad = self
            .mix
            .request_pad_simple("sink_%u")
            .ok_or_else(|| WallError::Pipeline("no compositor pad".into()))?;
        place(&pad, None);
        bin.static_pad("src")
            .ok_or_else(|| WallError::Pipeline("no ghost pad".into()))?
            .link(&pad)
            .map_err(|e| WallError::Pipeline(format!("linking a wall input: {e}")))?;
        // Design: set to PLAYING outright (not synced with the parent): a live appsrc left
        // in PAUSED by a racing state change never produces.
        bin.set_state(gst::State::Playing)
            .map_err(|e| WallError::Pipeline(format!("starting a wall input: {e}")))?;
        Ok(Branch {
            bin: bin.upcast_ref::<gst::Bin>().clone(),
            pad,
            appsrc,
            label: label.to_owned(),
            slates,
            mode: Arc::new(AtomicU8::new(MODE_SLATE_CONNECTING)),
            visible: Arc::new(AtomicBool::new(false)),
        })
    }

    fn remove_branch(&self, b: Branch) {
        let _ = b.bin.set_state(gst::State::Null);
        if let Some(src) = b.bin.static_pad("src") {
            let _ = src.unlink(&b.pad);
        }
        self.mix.release_request_pad(&b.pad);
        let _ = self.pipeline.remove(&b.bin);
    }

    fn connect(&mut self, source: &str, url: &str) -> Result<SourcePipe, WallError> {
        let (w, h) = self.input;
        let fps = self.settings.fps.max(1);
        let head = match url.strip_prefix("test:") {
            Some(pattern) => format!(
                "videotestsrc is-live=true pattern={pattern} ! video/x-raw,width={w},height={h},framerate={fps}/1"
            ),
            None => "rtspsrc name=cam protocols=tcp latency=100 ! decodebin".to_owned(),
        };
        let desc = format!(
            "{head} ! videorate drop-only=true max-rate={fps} ! videoconvert ! videoscale \
             ! video/x-raw,format=I420,width={w},height={h},pixel-aspect-ratio=1/1 \
             ! {LABEL} ! appsink name=out sync=false max-buffers=1 drop=true",
        );
        let pipeline = launch(&desc)?;
        if let Some(cam) = pipeline.by_name("cam") {
            cam.set_property("location", url);
        }
        if let (Some(t), Some(b)) = (pipeline.by_name("label"), self.branches.get(source)) {
            t.set_property("text", b.label.as_str());
        }
        let sink = appsink(&pipeline, "out")?;
        let frames = Arc::new(AtomicU64::new(0));
        let branch = self
            .branches
            .get(source)
            .map(|b| (b.appsrc.clone(), b.mode.clone(), b.visible.clone()))
            .ok_or_else(|| WallError::Pipeline(format!("no compositor input for {source}")))?;
        {
            let frames = frames.clone();
            let (appsrc, mode, visible) = branch;
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |s| {
                        let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        frames.fetch_add(1, Ordering::Relaxed);
                        if mode.load(Ordering::Relaxed) == MODE_LIVE
                            && visible.load(Ordering::Relaxed)
                            && let Some(b) = sample.buffer()
                        {
                            let _ = appsrc.push_buffer(unstamped(&b.to_owned()));
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        self.generation += 1;
        let generation = self.generation;
        let stop = Arc::new(AtomicBool::new(false));
        let bus = pipeline
            .bus()
            .ok_or_else(|| WallError::Pipeline("no bus".into()))?;
        {
            let stop = stop.clone();
            let failures = self.failures.0.clone();
            let source = source.to_owned();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Some(msg) = bus.timed_pop_filtered(
                        gst::ClockTime::from_mseconds(100),
                        &[gst::MessageType::Error, gst::MessageType::Eos],
                    ) else {
                        continue;
                    };
                    let reason = match msg.view() {
                        gst::MessageView::Error(e) => e.error().to_string(),
                        _ => "end of stream".to_owned(),
                    };
                    let _ = failures.send((source, generation, reason));
                    return;
                }
            });
        }
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            stop.store(true, Ordering::SeqCst);
            let _ = pipeline.set_state(gst::State::Null);
            return Err(WallError::Pipeline(format!("starting {source}: {e}")));
        }
        Ok(SourcePipe {
            pipeline,
            frames,
            stop,
            generation,
        })
    }
}

/// Puts a compositor pad at `rect`, or hides it (transparent, off the canvas).
fn place(pad: &gst::Pad, rect: Option<Rect>) {
    match rect {
        Some(r) => {
            pad.set_property("xpos", r.x as i32);
            pad.set_property("ypos", r.y as i32);
            pad.set_property("width", r.w as i32);
            pad.set_property("height", r.h as i32);
            pad.set_property("zorder", 1u32);
            pad.set_property("alpha", 1.0f64);
        }
        None => {
            pad.set_property("alpha", 0.0f64);
            pad.set_property("xpos", -100_000i32);
            pad.set_property("ypos", -100_000i32);
            pad.set_property("width", 16i32);
            pad.set_property("height", 16i32);
        }
    }
}

/// Hides credentials in an RTSP address for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_are_hidden_in_logged_addresses() {
        assert_eq!(
            super::redact("rtsp://u:p@10.0.0.5/main"),
            "rtsp://***@10.0.0.5/main"
        );
        assert_eq!(
            super::redact("rtsp://10.0.0.5/main"),
            "rtsp://10.0.0.5/main"
        );
    }

    #[test]
    fn inputs_are_half_the_output_and_even() {
        let s = crate::core::Settings {
            width: 1001,
            height: 541,
            ..Default::default()
        };
        assert_eq!(super::input_size(&s), (500, 270));
    }
}
