//! Wiring of the `record` capability: the profile's recorded sources, where the agent
//! config says to read them, and the recorder over the device store and outbox.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use gavel_link::Outbox;
use gavel_profile::{Profile, RecordSettings, SourceKind};
use gavel_record::core::CoreSettings;
use gavel_record::index::Index;
use gavel_record::{RecorderHandle, RecorderSettings, SourceConfig, SourceInput};
use gavel_store::Store;

use crate::AgentConfig;

/// The sources the profile records, resolved through the config's `media` table.
pub fn sources(
    config: &AgentConfig,
    profile: &Profile,
    settings: &RecordSettings,
) -> anyhow::Result<Vec<SourceConfig>> {
    let mut out = Vec::new();
    for id in &settings.sources {
        let kind = profile
            .sources
            .iter()
            .find(|s| &s.id == id)
            .map(|s| s.kind)
            .with_context(|| format!("recorded source {id} is not in the profile"))?;
        let input = match (config.media.get(id), kind) {
            (Some(input), _) => input.clone(),
            (None, SourceKind::Test) => SourceInput::Test {
                width: 320,
                height: 240,
                fps: 25,
            },
            (None, _) if config.simulate_hardware => match kind {
                SourceKind::Alsa => continue,
                _ => SourceInput::Test {
                    width: 320,
                    height: 240,
                    fps: 25,
                },
            },
            (None, SourceKind::Alsa) => SourceInput::Alsa {
                device: "default".into(),
                channels: profile.seats.len().max(1) as u16,
            },
            (None, SourceKind::V4l2) => SourceInput::V4l2 {
                device: "/dev/video0".into(),
            },
            (None, SourceKind::Rtsp) => {
                bail!("no address for source {id}: set media.{id}.url in the agent config")
            }
        };
        out.push(SourceConfig {
            id: id.clone(),
            input,
        });
    }
    if out.is_empty() {
        bail!("no source to record");
    }
    Ok(out)
}

/// Starts the recorder (resuming an interrupted hearing); `meter` names the sources whose
/// audio levels it reports (speaker-follow), `tap` those whose PCM goes to transcription.
#[allow(clippy::too_many_arguments)]
pub fn start(
    config: &AgentConfig,
    profile: &Profile,
    settings: &RecordSettings,
    store: Arc<Store>,
    outbox: Arc<Outbox>,
    meter: Option<gavel_record::Meter>,
    tap: Option<gavel_record::PcmTap>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(RecorderHandle, tokio::task::JoinHandle<()>)> {
    let sources = sources(config, profile, settings)?;
    let key = gavel_evidence::DeviceKey::load_or_create(&config.data_dir.join("device.key"))
        .context("loading the device key")?;
    let index = Index::new(store, config.data_dir.join("recordings"), key);
    let settings = RecorderSettings {
        device_id: Some(config.device_id.clone()),
        segment: Duration::from_secs(u64::from(settings.segment_s.max(1))),
        sources,
        core: CoreSettings::default(),
        meter,
        tap,
    };
    Ok(gavel_record::spawn(settings, index, outbox, shutdown)?)
}

/// Keeps the room schedule's `in_session` equal to "the recorder is recording a hearing"
/// (checked every second, so a hearing resumed after a restart counts too).
pub async fn feed_schedule(recorder: RecorderHandle, feed: crate::session::ScheduleFeed) {
    use gavel_protocol::RecordingState;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match recorder.state().await {
            Ok((hearing, state)) => {
                feed.set_in_session(hearing.is_some() && state != RecordingState::Idle)
            }
            // The recorder stopped (shutdown): nothing more to feed.
            Err(_) => return,
        }
    }
}
