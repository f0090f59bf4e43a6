//! `gavel-recorder`: the recording engine as a process of its own, for rigs, fault
//! injection (SIGKILL) and benchmarks. The agent embeds the same engine.
//!
//! It records one hearing into `DATA_DIR/recordings/HEARING/` with its own device store
//! and key in `DATA_DIR`; events wait in that store's outbox. Run again with the same
//! data folder after a crash and it resumes the interrupted hearing. SIGTERM or SIGINT stop
//! the hearing cleanly (closing its segments and signing the final manifest).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use gavel_record::core::CoreSettings;
use gavel_record::index::Index;
use gavel_record::{RecorderSettings, SourceConfig, SourceInput, VideoCodec};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Records one hearing from RTSP sources into signed, hash-chained MPEG-TS segments.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Data folder: device store, device key, recordings.
    #[arg(long)]
    data_dir: PathBuf,
    /// Hearing to record (resumed if it was interrupted).
    #[arg(long)]
    hearing: String,
    /// Video source `ID=rtsp://...` (H.264, remuxed). Repeatable.
    #[arg(long = "source", value_name = "ID=URL")]
    sources: Vec<String>,
    /// Video+audio source `ID=rtsp://...` (H.264 and AAC). Repeatable.
    #[arg(long = "av-source", value_name = "ID=URL")]
    av_sources: Vec<String>,
    /// Audio-only source `ID=rtsp://...` (AAC, e.g. one channel per seat). Repeatable.
    #[arg(long = "audio-source", value_name = "ID=URL")]
    audio_sources: Vec<String>,
    /// Target segment length in seconds.
    #[arg(long, default_value_t = 10.0)]
    segment_s: f64,
    /// Stop the hearing after this many seconds.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Device id for the manifest.
    #[arg(long)]
    device_id: Option<String>,
    /// A running source without data this long is lost (seconds).
    #[arg(long, default_value_t = 3.0)]
    stall_s: f64,
}

fn parse(spec: &str, video: VideoCodec, audio: bool) -> anyhow::Result<SourceConfig> {
    let Some((id, url)) = spec.split_once('=') else {
        bail!("source {spec:?}: expected ID=URL");
    };
    Ok(SourceConfig {
        id: id.to_owned(),
        input: SourceInput::Rtsp {
            url: url.to_owned(),
            video,
            audio,
        },
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GAVEL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut sources = Vec::new();
    for s in &args.sources {
        sources.push(parse(s, VideoCodec::H264, false)?);
    }
    for s in &args.av_sources {
        sources.push(parse(s, VideoCodec::H264, true)?);
    }
    for s in &args.audio_sources {
        sources.push(parse(s, VideoCodec::None, true)?);
    }
    if sources.is_empty() {
        bail!("name at least one source");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = Arc::new(
        gavel_store::Store::open(&args.data_dir.join("store.redb"))
            .context("opening the device store")?,
    );
    let key = gavel_evidence::DeviceKey::load_or_create(&args.data_dir.join("device.key"))
        .context("loading the device key")?;
    let boot_id = uuid::Uuid::new_v4().to_string();
    let outbox = gavel_link::Outbox::new(store.clone(), &boot_id);
    let index = Index::new(store, args.data_dir.join("recordings"), key);
    let settings = RecorderSettings {
        device_id: args.device_id.clone(),
        segment: Duration::from_secs_f64(args.segment_s.max(0.5)),
        sources,
        core: CoreSettings {
            stall_timeout: Duration::from_secs_f64(args.stall_s.max(0.5)),
            ..CoreSettings::default()
        },
        meter: None,
        tap: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (handle, task) = gavel_record::spawn(settings, index, outbox, async move {
        let _ = stop_rx.await;
    })?;
    let state = handle
        .start(&args.hearing, Some("gavel-recorder".into()), None)
        .await
        .context("starting the hearing")?;
    // Tests wait for this line.
    info!(hearing = %args.hearing, ?state, "recording started");

    let stop_after = async {
        match args.duration_s {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop_after => {},
        _ = shutdown_signal() => {},
    }
    handle
        .stop(&args.hearing)
        .await
        .context("stopping the hearing")?;
    // Wait until the segments are closed and the final manifest signed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        match handle.state().await {
            Ok((_, gavel_protocol::RecordingState::Idle)) | Err(_) => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    drop(handle);
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    info!(hearing = %args.hearing, "recording stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
