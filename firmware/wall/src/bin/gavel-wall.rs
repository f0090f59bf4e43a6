//! `gavel-wall`: runs the video wall from a configuration file, without the agent or the
//! controller (bench checks and trying layouts on a device).
//!
//! `gavel-wall --config wall.json [--config next.json ...] [--every 5] [--size 1920x1080]
//! [--fps 25] [--frames out.ppm | --display] [--state state.json]`; each configuration is
//! a `Wall` message as JSON, applied in turn every `--every` seconds.

use std::path::PathBuf;

use anyhow::{Context, bail};
use gavel_wall::{Sink, WallSettings, core::Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GAVEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut configs = Vec::new();
    let mut every = 5u64;
    let mut core = Settings::default();
    let mut fps = 25;
    let mut sink = Sink::None;
    let mut state = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => configs.push(PathBuf::from(value()?)),
            "--every" => every = value()?.parse().context("--every")?,
            "--size" => {
                let v = value()?;
                let (w, h) = v.split_once('x').context("--size WxH")?;
                core.width = w.parse().context("--size width")?;
                core.height = h.parse().context("--size height")?;
            }
            "--fps" => fps = value()?.parse().context("--fps")?,
            "--frames" => {
                sink = Sink::Frames {
                    path: value()?.into(),
                    fps: 5,
                }
            }
            "--display" => sink = Sink::Display,
            "--state" => state = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}"),
        }
    }
    if configs.is_empty() {
        bail!("--config FILE is required");
    }
    let mut walls = Vec::new();
    for file in &configs {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let wall: gavel_protocol::Wall =
            gavel_protocol::decode(&bytes).with_context(|| format!("{}", file.display()))?;
        walls.push(wall);
    }
    let (handle, task) = gavel_wall::spawn(
        WallSettings {
            core,
            fps,
            sink,
            state_file: state,
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )?;
    for (i, wall) in walls.into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(every)).await;
        }
        handle.apply(wall).await?;
    }
    task.await.context("wall task")?;
    Ok(())
}
