//! Media fixtures: simulated RTSP cameras and audio hosts (`gavel-camera-sim`), the
//! recorder as a process (`gavel-recorder`), and `ffprobe` as the independent judge of
//! what was written.
//!
//! Environment: `GAVEL_TEST_CAMERA_URLS=url1,url2,...` points the recording tests at real
//! cameras instead of simulators (tests that unplug cameras skip then).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{Proc, bin, free_port};

/// What a simulated source serves.
#[derive(Debug, Clone)]
pub struct SimSpec {
    /// Video size; `None` for an audio-only host.
    pub video: Option<(u32, u32)>,
    pub fps: u32,
    /// AAC channels (one per seat); 0 for none.
    pub audio_channels: u32,
    /// Scripted speech on the channels (`gavel-camera-sim --seat-script`): a file of
    /// `CHANNEL START_MS END_MS` lines, timed from the first viewer.
    pub seat_script: Option<PathBuf>,
    /// A solid colour `0xRRGGBB` instead of the moving test pattern (video walls check
    /// which camera shows where by its colour).
    pub color: Option<u32>,
    /// `videotestsrc` pattern of the picture (`ball` unless set).
    pub pattern: &'static str,
}

impl SimSpec {
    /// A 1080p25 H.264 camera.
    pub fn camera_1080p() -> Self {
        Self {
            video: Some((1920, 1080)),
            fps: 25,
            audio_channels: 0,
            pattern: "ball",
            seat_script: None,
            color: None,
        }
    }

    /// A small camera showing one solid colour `0xRRGGBB`.
    pub fn solid(width: u32, height: u32, fps: u32, color: u32) -> Self {
        Self {
            video: Some((width, height)),
            fps,
            audio_channels: 0,
            color: Some(color),
            seat_script: None,
            pattern: "ball",
        }
    }

    /// The same source with a textured picture (SMPTE bars): a normal scene to the patrol
    /// analyzers, where the ball on black is a lost signal.
    pub fn textured(mut self) -> Self {
        self.pattern = "smpte";
        self
    }

    /// A 2160p25 H.264 camera (pre-encoded clip: encoding it the first time takes a while).
    pub fn camera_2160p() -> Self {
        Self {
            video: Some((3840, 2160)),
            ..Self::camera_1080p()
        }
    }

    /// An audio host with one AAC channel per seat.
    pub fn microphones(seats: u32) -> Self {
        Self {
            video: None,
            fps: 25,
            audio_channels: seats,
            pattern: "ball",
            color: None,
            seat_script: None,
        }
    }

    /// An audio host with one AAC channel per seat carrying the conversation `script`
    /// (`CHANNEL START_MS END_MS` per line).
    pub fn scripted_microphones(seats: u32, script: &Path) -> Self {
        Self {
            seat_script: Some(script.to_owned()),
            ..Self::microphones(seats)
        }
    }
}

/// A simulated camera process on a fixed port, so it can be unplugged and plugged back.
pub struct CameraSim {
    name: String,
    dir: PathBuf,
    spec: SimSpec,
    clips: PathBuf,
    port: u16,
    proc: Option<Proc>,
    /// `rtsp://127.0.0.1:PORT/main`.
    pub url: String,
}

impl CameraSim {
    /// Starts a simulator named `name` (logs in `dir`), with pre-encoded clips cached in
    /// `clips`, and waits until it serves.
    pub fn start(dir: &Path, name: &str, spec: SimSpec, clips: &Path) -> anyhow::Result<Self> {
        let port = free_port();
        let mut sim = Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            spec,
            clips: clips.to_owned(),
            port,
            proc: None,
            url: format!("rtsp://127.0.0.1:{port}/main"),
        };
        sim.replug()?;
        Ok(sim)
    }

    /// Plugs the camera (back) in: starts the process and waits until it serves.
    pub fn replug(&mut self) -> anyhow::Result<()> {
        if self.proc.is_some() {
            return Ok(());
        }
        let mut cmd = Command::new(bin("gavel-camera-sim"));
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--clip-cache")
            .arg(&self.clips)
            .arg("--fps")
            .arg(self.spec.fps.to_string())
            .arg("--pattern")
            .arg(self.spec.pattern);
        match self.spec.video {
            Some((w, h)) => {
                cmd.arg("--resolution").arg(format!("{w}x{h}"));
            }
            None => {
                cmd.arg("--no-video");
            }
        }
        if let Some(c) = self.spec.color {
            cmd.arg("--color").arg(format!("0x{c:06x}"));
        }
        if self.spec.audio_channels > 0 {
            cmd.arg("--audio-channels")
                .arg(self.spec.audio_channels.to_string());
        }
        if let Some(script) = &self.spec.seat_script {
            cmd.arg("--seat-script").arg(script);
        }
        let log = self.dir.join(format!("{}.log", self.name));
        let proc = Proc::spawn(&self.name, cmd, log)?;
        // Encoding a 2160p clip the first time takes up to a minute on 2 cores.
        wait_for(&proc, "READY", Duration::from_secs(120))?;
        self.proc = Some(proc);
        Ok(())
    }

    /// Unplugs the camera: the process dies and its connections drop.
    pub fn unplug(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Freezes the camera: connections stay open, no data flows.
    pub fn freeze(&self) {
        if let Some(p) = &self.proc {
            p.freeze();
        }
    }

    /// Undoes [`CameraSim::freeze`].
    pub fn thaw(&self) {
        if let Some(p) = &self.proc {
            p.thaw();
        }
    }
}

/// Waits until `proc`'s log contains `needle`.
pub fn wait_for(proc: &Proc, needle: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if proc.log_text().contains(needle) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{needle:?} did not appear within {timeout:?}; log:\n{}",
        proc.log_text()
    )
}

/// A source for the recorder: `(id, url, kind)`.
#[derive(Debug, Clone)]
pub struct RecSource {
    pub id: String,
    pub url: String,
    /// `--source` (video), `--audio-source` or `--av-source`.
    pub flag: &'static str,
}

impl RecSource {
    /// A video camera.
    pub fn video(id: &str, url: &str) -> Self {
        Self {
            id: id.into(),
            url: url.into(),
            flag: "--source",
        }
    }

    /// An audio host.
    pub fn audio(id: &str, url: &str) -> Self {
        Self {
            id: id.into(),
            url: url.into(),
            flag: "--audio-source",
        }
    }
}

/// `gavel-recorder` as a process recording one hearing.
pub struct RecorderProc {
    pub proc: Proc,
    pub data_dir: PathBuf,
    pub hearing: String,
}

impl RecorderProc {
    /// Starts recording `hearing` into `data_dir` (resuming it if it was interrupted) and
    /// waits until the recorder has started it. `log` names the log file in `data_dir`.
    pub fn start(
        data_dir: &Path,
        hearing: &str,
        sources: &[RecSource],
        segment_s: f64,
        log: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let mut cmd = Command::new(bin("gavel-recorder"));
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--hearing")
            .arg(hearing)
            .arg("--segment-s")
            .arg(segment_s.to_string())
            .env("GAVEL_LOG", "info")
            .env("NO_COLOR", "1");
        for s in sources {
            cmd.arg(s.flag).arg(format!("{}={}", s.id, s.url));
        }
        let proc = Proc::spawn("gavel-recorder", cmd, data_dir.join(log))?;
        wait_for(&proc, "recording started", Duration::from_secs(20))?;
        Ok(Self {
            proc,
            data_dir: data_dir.to_owned(),
            hearing: hearing.to_owned(),
        })
    }

    /// Folder of the hearing's recording.
    pub fn hearing_dir(&self) -> PathBuf {
        self.data_dir.join("recordings").join(&self.hearing)
    }

    /// Stops the hearing cleanly (SIGTERM) and waits for the process to end.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if !self.proc.terminate(Duration::from_secs(20)) {
            bail!(
                "the recorder did not stop on SIGTERM:\n{}",
                self.proc.log_text()
            );
        }
        Ok(())
    }
}

/// What `ffprobe` says about a media file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub format: String,
    pub duration_s: f64,
    /// `(codec, channels)` per stream.
    pub streams: Vec<(String, u32)>,
}

/// Runs `ffprobe` on `path`; `Err` when it cannot read the file.
pub fn ffprobe(path: &Path) -> anyhow::Result<Probe> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=format_name,duration:stream=codec_name,channels",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .context("running ffprobe (apt install ffmpeg)")?;
    if !out.status.success() {
        bail!(
            "ffprobe cannot read {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let format = v["format"]["format_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let duration_s = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .with_context(|| format!("{}: no duration", path.display()))?;
    let streams = v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["codec_name"].as_str().unwrap_or_default().to_owned(),
                        s["channels"].as_u64().unwrap_or(0) as u32,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Probe {
        format,
        duration_s,
        streams,
    })
}

/// The first video stream of a media file or an `rtsp://` URL (read over TCP), as
/// ffprobe reports it: `(codec, width, height)`.
pub fn ffprobe_video(input: &str) -> anyhow::Result<(String, u32, u32)> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"]);
    if input.starts_with("rtsp://") {
        cmd.args(["-rtsp_transport", "tcp"]);
    }
    let out = cmd
        .args([
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "json", input])
        .output()
        .context("running ffprobe (apt install ffmpeg)")?;
    if !out.status.success() {
        bail!(
            "ffprobe cannot read {input}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let s = &v["streams"][0];
    let dim = |k: &str| s[k].as_u64().map(|d| d as u32);
    match (s["codec_name"].as_str(), dim("width"), dim("height")) {
        (Some(codec), Some(w), Some(h)) => Ok((codec.to_owned(), w, h)),
        _ => bail!("{input}: no video stream"),
    }
}

/// A simulated audio host with 5 seat microphones on which seats 0, 2 and 4 speak in turn
/// (0.5-3 s, 3.5-7 s, 7.5-11 s after the first viewer), and the recorder source (`mics`)
/// that records it: the rig of the tests of what hangs off the recorder's audio.
pub fn seat_microphones(dir: &Path) -> anyhow::Result<(CameraSim, gavel_record::SourceConfig)> {
    let script = dir.join("conversation.txt");
    std::fs::write(&script, "0 500 3000\n2 3500 7000\n4 7500 11000\n")?;
    let mics = CameraSim::start(
        dir,
        "audio-host",
        SimSpec::scripted_microphones(5, &script),
        &dir.join("clips"),
    )?;
    let source = gavel_record::SourceConfig {
        id: "mics".into(),
        input: gavel_record::SourceInput::Rtsp {
            url: mics.url.clone(),
            video: gavel_record::VideoCodec::None,
            audio: true,
        },
    };
    Ok((mics, source))
}

/// Records `hearing` for `seconds` with an in-process recorder (store, device key and
/// recordings under `dir`), stops it, waits until the hearing has finished (every segment
/// closed, which fails if a pipeline does not drain in 20 s) and ends the recorder.
/// Returns the wall-clock seconds from start to stop.
pub async fn record_in_process(
    dir: &Path,
    settings: gavel_record::RecorderSettings,
    hearing: &str,
    seconds: u64,
) -> anyhow::Result<f64> {
    let store = Arc::new(gavel_store::Store::open(&dir.join("store.redb"))?);
    let key = gavel_evidence::DeviceKey::load_or_create(&dir.join("device.key"))?;
    let index = gavel_record::index::Index::new(store.clone(), dir.join("recordings"), key);
    let outbox = gavel_link::Outbox::new(store, &format!("boot-{hearing}"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (recorder, task) = gavel_record::spawn(settings, index, outbox, async move {
        let _ = stop_rx.await;
    })?;
    recorder.start(hearing, Some("test".into()), None).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    recorder.stop(hearing).await?;
    let wall = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorder.state().await?.0.is_some() {
        if Instant::now() > deadline {
            bail!("{hearing}: the pipelines did not drain within 20 s of the stop");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .context("the recorder did not end within 15 s")??;
    Ok(wall)
}

/// What ffprobe reads in each `.ts` segment of `folder`, in file-name order.
pub fn probe_segments(folder: &Path) -> anyhow::Result<Vec<(PathBuf, Probe)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ts"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| ffprobe(&f).map(|p| (f, p)))
        .collect()
}

/// Seconds from an environment variable, or `default`.
pub fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
