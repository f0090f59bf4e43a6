//! The `stream` capability: the live RTSP re-serve (`gavel-stream`) of the profile's
//! stream sources, each source's sub-stream also as HLS over HTTP, and the endpoints the
//! birth announces so the controller (patrol console) and video walls find them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use gavel_profile::StreamSettings;
use gavel_protocol::{Capability, CapabilityState, LiveEndpoints};
use gavel_record::SourceInput;
use gavel_stream::{LiveServer, LiveSettings, LiveSource, hls::HlsSettings};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::AgentConfig;

/// What the capability runs; dropping it stops the servers.
pub struct Live {
    pub endpoints: LiveEndpoints,
    _server: LiveServer,
    http: Option<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
}

impl Live {
    /// Stops the HTTP side and the RTSP server.
    pub async fn stop(mut self) {
        if let Some((task, stop)) = self.http.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

/// Which stream sources can be re-served: RTSP inputs only (a V4L2 or ALSA device is
/// recorded locally, not relayed), with the camera's own sub-stream when configured.
pub fn plan(
    settings: &StreamSettings,
    media: &BTreeMap<String, SourceInput>,
    subs: &BTreeMap<String, String>,
) -> (Vec<LiveSource>, Vec<String>) {
    let mut live = Vec::new();
    let mut skipped = Vec::new();
    for id in &settings.sources {
        match media.get(id) {
            Some(SourceInput::Rtsp { url, video, .. })
                if *video != gavel_record::pipeline::VideoCodec::None =>
            {
                live.push(LiveSource {
                    id: id.clone(),
                    main_url: url.clone(),
                    sub_url: subs.get(id).cloned(),
                });
            }
            Some(other) => skipped.push(format!("{id} ({})", kind(other))),
            None => skipped.push(format!("{id} (no [media.{id}])")),
        }
    }
    (live, skipped)
}

fn kind(input: &SourceInput) -> &'static str {
    match input {
        SourceInput::Rtsp { .. } => "rtsp without video",
        SourceInput::V4l2 { .. } => "v4l2",
        SourceInput::Alsa { .. } => "alsa",
        SourceInput::Test { .. } => "test pattern",
    }
}

/// The host put in advertised URLs.
fn advertised_host(config: &AgentConfig, addr: SocketAddr, hostname: &str) -> String {
    if let Some(h) = &config.live.host {
        return h.clone();
    }
    if addr.ip().is_unspecified() {
        hostname.to_owned()
    } else {
        addr.ip().to_string()
    }
}

/// Starts the servers for the profile's stream sources; the capability says how it went.
pub async fn start(
    config: &AgentConfig,
    settings: &StreamSettings,
    hostname: &str,
) -> (Option<Live>, Capability) {
    let failed = |why: String| Capability {
        name: "stream".into(),
        state: CapabilityState::Failed,
        detail: Some(why.chars().take(200).collect()),
    };
    let viewers = match config.live.accounts() {
        Ok(v) => v,
        Err(e) => return (None, failed(e.to_string())),
    };
    if viewers.is_empty() {
        warn!("live streams are open to anyone on the network: set [live] viewers");
    }
    let (sources, skipped) = plan(settings, &config.media, &config.live.sub);
    if sources.is_empty() {
        let why = if skipped.is_empty() {
            "no stream sources in the profile".to_owned()
        } else {
            format!("no RTSP source to re-serve: {}", skipped.join(", "))
        };
        return (
            None,
            Capability {
                name: "stream".into(),
                state: CapabilityState::Unavailable,
                detail: Some(why),
            },
        );
    }
    let hls_dir = config.data_dir.join("live");
    let live_settings = LiveSettings {
        address: config.live.rtsp.ip().to_string(),
        port: config.live.rtsp.port(),
        viewers: viewers.clone(),
        sub_kbps: settings.sub_stream_kbps,
        hls: config.live.http.map(|_| HlsSettings::in_dir(&hls_dir)),
    };
    let started = {
        let sources = sources.clone();
        tokio::task::spawn_blocking(move || gavel_stream::start(&live_settings, &sources)).await
    };
    let server = match started {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return (None, failed(format!("RTSP server: {e}"))),
        Err(e) => return (None, failed(format!("RTSP server task: {e}"))),
    };
    let rtsp_addr = SocketAddr::new(config.live.rtsp.ip(), server.port());
    let mut endpoints = LiveEndpoints {
        rtsp: format!(
            "rtsp://{}:{}",
            advertised_host(config, rtsp_addr, hostname),
            rtsp_addr.port()
        ),
        hls: None,
        sources: sources.iter().map(|s| s.id.clone()).collect(),
    };
    let mut http = None;
    if let (Some(addr), Some(demand)) = (config.live.http, server.hls_demand()) {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                endpoints.hls = Some(format!(
                    "http://{}:{}/live",
                    advertised_host(config, bound, hostname),
                    bound.port()
                ));
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    let shutdown = async move {
                        let _ = stopped.await;
                    };
                    if let Err(e) =
                        gavel_stream::hls::serve_http(listener, hls_dir, viewers, demand, shutdown)
                            .await
                    {
                        warn!(error = %e, "the HLS server stopped");
                    }
                });
                http = Some((task, stop));
            }
            Err(e) => return (None, failed(format!("HLS server on {addr}: {e}"))),
        }
    }
    info!(rtsp = %endpoints.rtsp, hls = ?endpoints.hls, sources = ?endpoints.sources, "streaming live");
    let detail = (!skipped.is_empty()).then(|| format!("not streamed: {}", skipped.join(", ")));
    (
        Some(Live {
            endpoints,
            _server: server,
            http,
        }),
        Capability {
            name: "stream".into(),
            state: CapabilityState::Running,
            detail,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rtsp_video_sources_are_re_served_and_the_others_are_named() {
        let settings = StreamSettings {
            sub_stream_kbps: 800,
            sources: vec![
                "cam-a".into(),
                "cam-b".into(),
                "mics".into(),
                "cam-c".into(),
            ],
        };
        let mut media = BTreeMap::new();
        media.insert(
            "cam-a".into(),
            SourceInput::Rtsp {
                url: "rtsp://a/main".into(),
                video: Default::default(),
                audio: false,
            },
        );
        media.insert(
            "cam-b".into(),
            SourceInput::V4l2 {
                device: "/dev/video0".into(),
            },
        );
        media.insert(
            "mics".into(),
            SourceInput::Rtsp {
                url: "rtsp://m/".into(),
                video: gavel_record::pipeline::VideoCodec::None,
                audio: true,
            },
        );
        let subs = BTreeMap::from([("cam-a".to_owned(), "rtsp://a/sub".to_owned())]);
        let (live, skipped) = plan(&settings, &media, &subs);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].sub_url.as_deref(), Some("rtsp://a/sub"));
        assert_eq!(
            skipped,
            [
                "cam-b (v4l2)",
                "mics (rtsp without video)",
                "cam-c (no [media.cam-c])"
            ]
        );
    }
}
