//! # gavel-stream
//!
//! Live streaming: an RTSP server (gstreamer-rtsp-server) re-serves every source at
//! `/<source>/main` and `/<source>/sub`. Each mount is a *shared* media: however many
//! viewers watch, the device holds one connection to the camera per mount. Viewers
//! authenticate with per-user credentials (HTTP Basic over RTSP).
//!
//! The sub-stream is the camera's own when it has one (remuxed, free); otherwise it is a
//! transcode of the main stream (decode, scale to 640x360, x264 `ultrafast` at the
//! configured bit rate): on these 2 cores that costs a software H.264 decode of the main
//! stream plus a small encode, so it is meant for a few sources, not all of them.
//!
//! The sub-stream is also written as HLS ([`hls`]: two-second MPEG-TS segments, a sliding
//! playlist), which browsers play (the patrol console, through the controller) and which
//! is served over HTTP with the same accounts.

pub mod hls;

use gstreamer as gst;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("RTSP server: {0}")]
    Server(String),
}

/// A source to re-serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSource {
    /// Source id (mount `/<id>/main`, `/<id>/sub`).
    pub id: String,
    /// The camera's main stream (H.264).
    pub main_url: String,
    /// The camera's own sub-stream, if it has one.
    pub sub_url: Option<String>,
}

/// A viewer account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub user: String,
    pub password: String,
}

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSettings {
    pub address: String,
    pub port: u16,
    /// Accounts allowed to watch; empty means no authentication (tests and labs only).
    pub viewers: Vec<Viewer>,
    /// Bit rate of a transcoded sub-stream, kbit/s.
    pub sub_kbps: u32,
    /// Write each source's sub-stream as HLS too.
    pub hls: Option<hls::HlsSettings>,
}

/// The launch description of a re-served stream: remux only.
pub fn relay_launch(url: &str) -> String {
    format!(
        "( rtspsrc location=\"{}\" protocols=tcp latency=200 ! rtph264depay ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=1 )",
        url.replace('"', "")
    )
}

/// The launch description of a transcoded low-bit-rate sub-stream: 640x360 at 15 fps,
/// 8-bit 4:2:0 H.264.
///
/// Design: after the decoder, frames are dropped to 15 fps first (`videorate drop-only`),
/// then scaled, then converted, so the full-size picture is touched as little as
/// possible: measured on a 2160p camera (`hil-tests/benches/live.rs`, `docs/live.md`), the
/// order convert-scale-rate cost 113 % of a core and this one 96 %, decoding alone 47 %.
pub fn transcode_launch(url: &str, kbps: u32) -> String {
    format!(
        "( rtspsrc location=\"{}\" protocols=tcp latency=200 ! rtph264depay ! h264parse ! avdec_h264 ! videorate drop-only=true max-rate=15 ! videoscale ! video/x-raw,width=640,height=360 ! videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max=30 ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )",
        url.replace('"', "")
    )
}

/// The running server; dropping it stops it.
pub struct LiveServer {
    main_loop: gst::glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The HLS writers (stopped before the server).
    hls: Option<hls::HlsWriters>,
    port: u16,
}

impl LiveServer {
    /// The port the RTSP server listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the HTTP side reports HLS requests (writers run on demand), when HLS is on.
    pub fn hls_demand(&self) -> Option<std::sync::Arc<hls::Demand>> {
        self.hls.as_ref().map(hls::HlsWriters::demand)
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        self.hls.take();
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the server on its own thread and main context.
pub fn start(settings: &LiveSettings, sources: &[LiveSource]) -> Result<LiveServer, StreamError> {
    gst::init().map_err(|e| StreamError::Gst(e.to_string()))?;
    let context = gst::glib::MainContext::new();
    let main_loop = gst::glib::MainLoop::new(Some(&context), false);
    let server = rtsp::RTSPServer::new();
    server.set_address(&settings.address);
    server.set_service(&settings.port.to_string());
    let mounts = server
        .mount_points()
        .ok_or_else(|| StreamError::Server("no mount points".into()))?;
    // The HLS writers watch the sub-streams as one more viewer, with an account of their
    // own that exists only in this process.
    let internal = (!settings.viewers.is_empty() && settings.hls.is_some()).then(|| Viewer {
        user: "gavel-hls".into(),
        password: uuid_like(),
    });
    if !settings.viewers.is_empty() {
        let auth = rtsp::RTSPAuth::new();
        let token = rtsp::RTSPToken::builder()
            .field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
            .build();
        for v in settings.viewers.iter().chain(internal.as_ref()) {
            let basic = rtsp::RTSPAuth::make_basic(&v.user, &v.password);
            auth.add_basic(basic.as_str(), &token);
        }
        server.set_auth(Some(&auth));
    }
    for s in sources {
        let sub = match &s.sub_url {
            Some(url) => relay_launch(url),
            None => transcode_launch(&s.main_url, settings.sub_kbps),
        };
        for (path, launch) in [
            (format!("/{}/main", s.id), relay_launch(&s.main_url)),
            (format!("/{}/sub", s.id), sub),
        ] {
            let factory = rtsp::RTSPMediaFactory::new();
            factory.set_launch(&launch);
            factory.set_shared(true);
            if !settings.viewers.is_empty() {
                factory.add_role_from_structure(
                    &gst::Structure::builder("viewer")
                        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                        .build(),
                );
            }
            mounts.add_factory(&path, factory);
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = {
        let main_loop = main_loop.clone();
        std::thread::Builder::new()
            .name("rtsp-server".into())
            .spawn(move || {
                let attached = context.with_thread_default(|| server.attach(Some(&context)));
                match attached {
                    Ok(Ok(id)) => {
                        let port = u16::try_from(server.bound_port()).unwrap_or(0);
                        let _ = tx.send(Ok(port));
                        main_loop.run();
                        id.remove();
                    }
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            })
            .map_err(|e| StreamError::Server(e.to_string()))?
    };
    let port = rx
        .recv()
        .map_err(|e| StreamError::Server(e.to_string()))?
        .map_err(StreamError::Server)?;
    let mut server = LiveServer {
        main_loop,
        thread: Some(thread),
        hls: None,
        port,
    };
    if let Some(h) = &settings.hls {
        let host = match settings.address.as_str() {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" => "[::1]",
            a => a,
        };
        let subs: Vec<(String, String)> = sources
            .iter()
            .map(|s| (s.id.clone(), format!("rtsp://{host}:{port}/{}/sub", s.id)))
            .collect();
        server.hls = Some(hls::start_writers(&subs, internal, h)?);
    }
    Ok(server)
}

/// 128 random bits as hex (the HLS writers' internal password).
fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Start-up only: without randomness the account still differs per process.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (t ^ u128::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_with_its_own_sub_stream_is_relayed_and_one_without_is_transcoded() {
        assert!(
            !relay_launch("rtsp://c/main").contains("x264enc"),
            "relayed, not re-encoded"
        );
        let t = transcode_launch("rtsp://c/main", 800);
        assert!(t.contains("x264enc") && t.contains("bitrate=800"), "{t}");
        // 8-bit 4:2:0 whatever the camera sends: browsers decode nothing else.
        assert!(t.contains("format=I420"), "{t}");
        // Frames are dropped before the full-size picture is scaled or converted.
        let at = |e: &str| t.find(e).unwrap_or(usize::MAX);
        assert!(
            at("videorate") < at("videoscale") && at("videoscale") < at("videoconvert"),
            "{t}"
        );
    }
}
