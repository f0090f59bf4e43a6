//! Wiring of speaker-follow: the recorder's per-seat audio levels feed the follow core
//! (`gavel_devices::follow`), whose moves go to the room's PTZ camera.
//!
//! The seat microphones are the channels of the recorded source whose profile role is
//! `seats` (channel `n` is the seat with `channel = n`). The recorder meters that source
//! while it records (a `level` tap behind a leaky queue, see `gavel_record::pipeline`),
//! so the camera follows speakers during hearings and rests on the overview otherwise.
//!
//! Design: the follow task never waits on the camera. Moves go to a camera thread over a
//! channel; when the camera is slower than the conversation, only the latest move is
//! made. Levels arrive on a bounded channel the recorder never blocks on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use gavel_devices::follow::{Follow, FollowSettings, Input, Output, Shot};
use gavel_devices::onvif;
use gavel_devices::serial::PortSettings;
use gavel_devices::visca::ViscaCamera;
use gavel_profile::{Profile, PtzSettings};
use gavel_protocol::{Capability, CapabilityState};
use gavel_record::{AudioLevels, Meter, SourceInput};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::AgentConfig;

/// How often the recorder reports the seat levels.
pub const METER_INTERVAL: Duration = Duration::from_millis(100);

/// Longest the camera check at start may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Levels older than this mean the seat source stopped (the hearing ended): every seat
/// then counts as silent.
const STALE_AFTER: Duration = Duration::from_secs(1);

/// What speaker-follow needs, resolved from the profile and the agent config.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The recorded source carrying the seat microphones.
    pub source: String,
    /// Seat id by channel of that source.
    pub seats: BTreeMap<usize, String>,
    /// Core settings (presets, timings, threshold).
    pub settings: FollowSettings,
    /// How the camera is driven.
    pub ptz: PtzSettings,
}

/// Resolves speaker-follow for `profile`; `None` when the profile has no
/// `[capabilities.follow]`, an error (the reason it cannot run) when it is incomplete.
pub fn plan(profile: &Profile) -> Option<anyhow::Result<Plan>> {
    let follow = profile.capabilities.follow.as_ref()?;
    Some((|| {
        let ptz = profile
            .capabilities
            .ptz
            .clone()
            .context("speaker-follow needs [capabilities.ptz]")?;
        let gavel_profile::SeatMicrophones { source, seats } = profile
            .seat_microphones()
            .context("no recorded source with role \"seats\" carries the seat microphones")?;
        Ok(Plan {
            source,
            seats: seats.into_iter().collect(),
            settings: FollowSettings::from(follow),
            ptz,
        })
    })())
}

/// The recorder meter for `plan`, and the receiving end of its levels.
pub fn meter(plan: &Plan) -> (Meter, mpsc::Receiver<AudioLevels>) {
    let (tx, rx) = mpsc::channel(64);
    (
        Meter {
            sources: vec![plan.source.clone()],
            interval: METER_INTERVAL,
            levels: tx,
        },
        rx,
    )
}

/// A PTZ camera the follow task can move.
enum Ptz {
    Visca(ViscaCamera),
    Onvif {
        camera: onvif::Camera,
        runtime: tokio::runtime::Handle,
    },
    /// Simulated hardware: moves are logged only.
    Simulated,
}

impl Ptz {
    /// Opens the camera the profile names and checks that it answers (blocking).
    fn open(
        settings: &PtzSettings,
        config: &AgentConfig,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<(Self, String)> {
        if config.simulate_hardware {
            return Ok((
                Self::Simulated,
                format!("simulated {} PTZ (no hardware)", settings.control),
            ));
        }
        match settings.control.as_str() {
            "visca" => {
                let port = settings
                    .port
                    .clone()
                    .context("capabilities.ptz.port is not set")?;
                let mut cam =
                    ViscaCamera::new(PortSettings::new(&port, settings.baud), settings.address)?;
                cam.timeout = Duration::from_secs(1);
                let powered = cam
                    .powered()
                    .with_context(|| format!("VISCA camera on {port} does not answer"))?;
                if !powered {
                    bail!("VISCA camera on {port} reports power off");
                }
                let detail = format!(
                    "VISCA camera {} on {port} at {} baud",
                    settings.address, settings.baud
                );
                Ok((Self::Visca(cam), detail))
            }
            "onvif" => {
                let source = settings
                    .source
                    .clone()
                    .context("capabilities.ptz.source is not set")?;
                let camera_config = crate::cameras::load(&config.data_dir, &source)?;
                let creds = credentials_of(config, &source)?;
                let profile = camera_config
                    .profiles
                    .iter()
                    .find(|p| p.ptz)
                    .or(camera_config.profiles.first())
                    .with_context(|| {
                        format!("camera {} has no media profile", camera_config.device_url)
                    })?;
                let camera = onvif::Camera::new(&camera_config, &creds, &profile.token)?;
                runtime
                    .block_on(camera.presets())
                    .with_context(|| format!("ONVIF camera of {source} does not answer"))?;
                let detail = format!("ONVIF camera of {source} ({})", camera_config.device_url);
                Ok((Self::Onvif { camera, runtime }, detail))
            }
            other => bail!("capabilities.ptz.control {other:?} is not visca or onvif"),
        }
    }

    /// Moves to `preset` (blocking).
    fn goto(&mut self, preset: u8) -> anyhow::Result<()> {
        match self {
            Self::Visca(cam) => Ok(cam.recall_preset(preset)?),
            // Design: ONVIF preset tokens are strings; speaker-follow's preset numbers are
            // used as the tokens (set them with `gavel-agent cameras preset set NAME
            // --token N`).
            Self::Onvif { camera, runtime } => {
                Ok(runtime.block_on(camera.goto_preset(&preset.to_string()))?)
            }
            Self::Simulated => Ok(()),
        }
    }
}

/// The ONVIF credentials of `source`: those in its recorded RTSP URL (written by
/// `gavel-agent cameras configure`).
fn credentials_of(config: &AgentConfig, source: &str) -> anyhow::Result<onvif::Credentials> {
    let Some(SourceInput::Rtsp { url, .. }) = config.media.get(source) else {
        bail!("media.{source} is not an RTSP camera: run `gavel-agent cameras configure`");
    };
    let url = url::Url::parse(url).with_context(|| format!("media.{source}.url"))?;
    if url.username().is_empty() {
        bail!("media.{source}.url has no credentials for the camera's PTZ service");
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Ok(onvif::Credentials {
        user: decode(url.username()),
        password: decode(url.password().unwrap_or_default()),
    })
}

fn capability(state: CapabilityState, detail: String) -> Capability {
    Capability {
        name: "follow".into(),
        state,
        detail: Some(detail.chars().take(200).collect()),
    }
}

/// Starts speaker-follow for `plan`: opens and checks the camera, then spawns the
/// follow task. Returns the capability to report (`running` with what it drives, or
/// `failed` with why) and the task, if it runs.
pub async fn start(
    plan: anyhow::Result<Plan>,
    levels: Option<mpsc::Receiver<AudioLevels>>,
    config: &AgentConfig,
) -> (Capability, Option<tokio::task::JoinHandle<()>>) {
    let failed = |e: anyhow::Error| {
        let why = format!("{e:#}");
        warn!(error = %why, "speaker-follow is not available");
        (capability(CapabilityState::Failed, why), None)
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let Some(levels) = levels else {
        return failed(anyhow::anyhow!(
            "the recorder is not running, so there are no seat levels"
        ));
    };
    let runtime = tokio::runtime::Handle::current();
    let ptz_settings = plan.ptz.clone();
    let cfg = config.clone();
    // Design: the check is bounded, so an unreachable camera delays the agent's start by
    // at most this long (the check itself goes on in the background and is dropped).
    let opened = tokio::time::timeout(
        CHECK_TIMEOUT,
        tokio::task::spawn_blocking(move || Ptz::open(&ptz_settings, &cfg, runtime)),
    )
    .await;
    let (ptz, detail) = match opened {
        Ok(Ok(Ok(p))) => p,
        Ok(Ok(Err(e))) => return failed(e),
        Ok(Err(e)) => return failed(anyhow::anyhow!("camera check task: {e}")),
        Err(_) => {
            return failed(anyhow::anyhow!(
                "the PTZ camera did not answer within {CHECK_TIMEOUT:?}"
            ));
        }
    };
    let detail = format!(
        "{detail}; seats of {} ({} with presets)",
        plan.source,
        plan.settings.presets.len()
    );
    info!(camera = %detail, "speaker-follow ready");
    let moves = camera_thread(ptz);
    let task = tokio::spawn(follow_task(plan, levels, moves));
    (capability(CapabilityState::Running, detail), Some(task))
}

/// A requested move.
#[derive(Debug, Clone)]
struct Move {
    shot: Shot,
    preset: u8,
}

/// Runs the camera on its own thread; returns where to send moves. The thread ends when
/// the sender is dropped.
fn camera_thread(mut ptz: Ptz) -> std::sync::mpsc::Sender<Move> {
    let (tx, rx) = std::sync::mpsc::channel::<Move>();
    let spawned = std::thread::Builder::new()
        .name("ptz".into())
        .spawn(move || {
            let mut failing = false;
            while let Ok(mut next) = rx.recv() {
                // Only the latest move matters when the camera fell behind.
                while let Ok(later) = rx.try_recv() {
                    next = later;
                }
                match ptz.goto(next.preset) {
                    Ok(()) => {
                        failing = false;
                        // The demo narrates from this line.
                        info!(shot = %shot_name(&next.shot), preset = next.preset, "speaker-follow: camera moved");
                    }
                    Err(e) => {
                        if !failing {
                            warn!(error = %format!("{e:#}"), preset = next.preset, "speaker-follow: camera did not move");
                        }
                        failing = true;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "speaker-follow: could not start the camera thread");
    }
    tx
}

fn shot_name(shot: &Shot) -> String {
    match shot {
        Shot::Overview => "overview".into(),
        Shot::Seat(s) => s.clone(),
    }
}

/// The follow shell: feeds levels and ticks into the core, sends its moves to the camera.
async fn follow_task(
    plan: Plan,
    mut levels: mpsc::Receiver<AudioLevels>,
    moves: std::sync::mpsc::Sender<Move>,
) {
    let mut core = Follow::new(plan.settings.clone());
    let seats: Arc<Vec<String>> = Arc::new(plan.seats.values().cloned().collect());
    let mut last_now = gavel_record::mono();
    let mut last_level: Option<Duration> = None;
    let send = |outputs: Vec<Output>| {
        for Output::GotoPreset { shot, preset } in outputs {
            info!(shot = %shot_name(&shot), preset, "speaker-follow: moving the camera");
            if moves.send(Move { shot, preset }).is_err() {
                return false;
            }
        }
        true
    };
    if !send(core.handle(last_now, Input::Tick)) {
        return;
    }
    loop {
        let wait = core
            .next_deadline(last_now)
            .map_or(Duration::from_millis(250), |d| d.saturating_sub(last_now))
            .min(Duration::from_millis(250));
        let mut outputs = Vec::new();
        match tokio::time::timeout(wait, levels.recv()).await {
            Ok(Some(l)) => {
                let now = l.at.max(last_now);
                last_now = now;
                last_level = Some(now);
                for (channel, dbfs) in l.rms_dbfs.iter().enumerate() {
                    if let Some(seat) = plan.seats.get(&channel) {
                        outputs.extend(core.handle(
                            now,
                            Input::Level {
                                seat: seat.clone(),
                                dbfs: *dbfs,
                            },
                        ));
                    }
                }
            }
            // The recorder is gone (shutdown).
            Ok(None) => return,
            Err(_) => {
                let now = gavel_record::mono().max(last_now);
                last_now = now;
                // The seat source stopped (the hearing ended): nobody is speaking.
                if last_level.is_some_and(|t| now.saturating_sub(t) > STALE_AFTER) {
                    last_level = None;
                    for seat in seats.iter() {
                        outputs.extend(core.handle(
                            now,
                            Input::Voice {
                                seat: seat.clone(),
                                active: false,
                            },
                        ));
                    }
                }
                outputs.extend(core.handle(now, Input::Tick));
            }
        }
        if !send(outputs) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(extra: &str) -> Profile {
        let text = format!(
            r#"
name = "t"
description = "t"
[health]
interval_s = 5
keepalive_s = 10
volumes = ["/"]
[[seats]]
id = "judge"
label = "J"
channel = 0
[[seats]]
id = "clerk"
label = "C"
channel = 1
[[sources]]
id = "mics"
kind = "alsa"
role = "seats"
[[sources]]
id = "cam"
kind = "rtsp"
[capabilities.ptz]
control = "visca"
port = "/dev/gavel-no-such-tty"
[capabilities.follow]
overview_preset = 0
presets = {{ judge = 1 }}
{extra}
"#
        );
        gavel_profile::parse(std::path::Path::new("t.toml"), &text).expect("profile")
    }

    #[test]
    fn the_seats_source_and_its_channels_are_found_in_the_profile() {
        let p = profile("[capabilities.record]\nsegment_s = 10\nsources = [\"cam\", \"mics\"]\n");
        let plan = plan(&p).expect("follow").expect("plan");
        assert_eq!(plan.source, "mics");
        assert_eq!(plan.seats.get(&1).map(String::as_str), Some("clerk"));
        assert_eq!(plan.settings.presets.get("judge"), Some(&1));
    }

    #[test]
    fn follow_without_recorded_seat_microphones_cannot_run_and_says_why() {
        let p = profile("[capabilities.record]\nsegment_s = 10\nsources = [\"cam\"]\n");
        let err = plan(&p).expect("follow").expect_err("no seats recorded");
        assert!(err.to_string().contains("role \"seats\""), "{err}");
    }

    #[tokio::test]
    async fn a_missing_visca_port_reports_follow_failed_with_the_port_named() {
        let p = profile("[capabilities.record]\nsegment_s = 10\nsources = [\"mics\"]\n");
        let plan = plan(&p).expect("follow");
        let (_tx, rx) = mpsc::channel(1);
        let (cap, task) = start(plan, Some(rx), &AgentConfig::default()).await;
        assert!(task.is_none());
        assert_eq!(cap.state, CapabilityState::Failed);
        let detail = cap.detail.unwrap_or_default();
        assert!(detail.contains("/dev/gavel-no-such-tty"), "{detail}");
    }

    #[test]
    fn onvif_credentials_come_from_the_cameras_recorded_url() {
        let mut c = AgentConfig::default();
        c.media.insert(
            "cam".into(),
            SourceInput::Rtsp {
                url: "rtsp://gavel:p%40ss@10.0.0.5/main".into(),
                video: gavel_record::VideoCodec::H264,
                audio: false,
            },
        );
        let creds = credentials_of(&c, "cam").expect("creds");
        assert_eq!(creds.user, "gavel");
        assert_eq!(creds.password, "p@ss");
        assert!(credentials_of(&c, "other").is_err());
    }
}
