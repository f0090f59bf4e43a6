//! Wiring of the `wall` capability: the profile's output size, the agent config's
//! `[wall]` output, and the wall task (`gavel-wall`) fed by the controller's retained
//! `wall` configuration.

use anyhow::Context;
use gavel_profile::{Profile, WallSettings as ProfileWall};
use gavel_wall::{Sink, WallHandle, WallSettings};

use crate::AgentConfig;
use crate::config::parse_size;

/// The wall's settings from the profile and the agent config.
pub fn settings(config: &AgentConfig, profile: &ProfileWall) -> anyhow::Result<WallSettings> {
    let simulated = config.simulate_hardware;
    let size = match &config.wall.size {
        Some(s) => s.clone(),
        None if simulated => "640x360".into(),
        None => profile.output.clone(),
    };
    let (width, height) = parse_size(&size)
        .with_context(|| format!("wall output size {size:?}: expected WxH, even"))?;
    let frames_path = config
        .wall
        .frames_path
        .clone()
        .unwrap_or_else(|| config.data_dir.join("wall-frame.ppm"));
    let sink = match config.wall.sink.as_deref() {
        Some("display") => Sink::Display,
        Some("none") => Sink::None,
        Some("frames") => Sink::Frames {
            path: frames_path,
            fps: config.wall.frames_fps,
        },
        None if simulated => Sink::Frames {
            path: frames_path,
            fps: config.wall.frames_fps,
        },
        None => Sink::Display,
        Some(other) => anyhow::bail!("wall.sink {other:?}: must be display, frames or none"),
    };
    Ok(WallSettings {
        core: gavel_wall::core::Settings {
            width,
            height,
            ..Default::default()
        },
        fps: config.wall.fps,
        sink,
        state_file: Some(config.data_dir.join("wall.json")),
    })
}

/// Starts the wall; it runs until `shutdown` resolves.
pub fn start(
    config: &AgentConfig,
    profile: &Profile,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Option<(WallHandle, tokio::task::JoinHandle<()>)>> {
    let Some(p) = &profile.capabilities.wall else {
        return Ok(None);
    };
    let settings = settings(config, p)?;
    let started = gavel_wall::spawn(settings, shutdown).context("starting the wall")?;
    Ok(Some(started))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> ProfileWall {
        ProfileWall {
            layouts: vec!["1".into(), "2x2".into()],
            output: "3840x2160".into(),
        }
    }

    #[test]
    fn a_real_wall_shows_the_profiles_size_on_its_display() {
        let c = AgentConfig::default();
        let s = settings(&c, &profile()).expect("settings");
        assert_eq!((s.core.width, s.core.height), (3840, 2160));
        assert_eq!(s.sink, Sink::Display);
    }

    #[test]
    fn a_simulated_wall_writes_small_frames_into_its_data_folder() {
        let c = AgentConfig {
            simulate_hardware: true,
            data_dir: "/d".into(),
            ..AgentConfig::default()
        };
        let s = settings(&c, &profile()).expect("settings");
        assert_eq!((s.core.width, s.core.height), (640, 360));
        assert_eq!(
            s.sink,
            Sink::Frames {
                path: "/d/wall-frame.ppm".into(),
                fps: 2
            }
        );
        assert_eq!(
            s.state_file.as_deref(),
            Some(std::path::Path::new("/d/wall.json"))
        );
    }
}
