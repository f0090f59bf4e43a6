//! The browser-playable sub-stream: HLS (MPEG-TS segments of `target_duration_s`, a
//! sliding playlist), one folder per source, written by `hlssink2`, served over HTTP with
//! the same viewer accounts as the RTSP server.
//!
//! Design: each HLS writer is one more viewer of the RTSP server's own shared `/<id>/sub`
//! mount (with an internal account), not a second connection to the camera: the camera
//! still serves one connection per stream, and a transcoded sub-stream is encoded once
//! for RTSP viewers and HLS alike. A writer whose pipeline fails (the camera is gone, the
//! server restarts the mount) is restarted with backoff.
//!
//! Writers run on demand: a source's writer starts when its playlist is asked for and
//! stops after [`IDLE`] without requests, so a transcoded sub-stream costs CPU only while
//! someone watches (the first request waits until five segments are listed, about 11 s).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use gstreamer as gst;
use gstreamer::prelude::*;
use tracing::{info, warn};

use gavel_protocol::LiveEndpoints;

use crate::{StreamError, Viewer};

/// HLS output settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsSettings {
    /// Folder for the playlists and segments (`<dir>/<source>/index.m3u8`).
    pub dir: PathBuf,
    /// Segment length in seconds (cut on the next keyframe after it).
    pub target_duration_s: u32,
    /// Segments listed in the playlist.
    pub playlist_length: u32,
}

impl HlsSettings {
    /// Two-second segments, six in the playlist (about 6-8 s behind live).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            target_duration_s: 2,
            playlist_length: 6,
        }
    }
}

/// The `gst-launch` description of one source's HLS writer, reading `sub_url` (the RTSP
/// server's own sub-stream mount). Every segment starts with SPS/PPS
/// (`config-interval=-1`): a player joining a live playlist, or moving to the next
/// segment, cannot parse H.264 without them. RTP carries no decoding times, so a stream
/// with B-frames gets them back from `h264timestamper` (Chromium refuses MPEG-TS whose
/// DTS do not increase: "Parsed buffers not in DTS sequence").
pub fn hls_launch(sub_url: &str, account: Option<&Viewer>, out: &Path, s: &HlsSettings) -> String {
    let credentials = account
        .map(|a| {
            format!(
                " user-id=\"{}\" user-pw=\"{}\"",
                a.user.replace('"', ""),
                a.password.replace('"', "")
            )
        })
        .unwrap_or_default();
    let out = out.display().to_string().replace('"', "");
    format!(
        "rtspsrc location=\"{}\"{credentials} protocols=tcp latency=200 ! rtph264depay ! h264parse ! h264timestamper \
         ! h264parse config-interval=-1 ! hlssink2 name=hls location=\"{out}/seg%05d.ts\" playlist-location=\"{out}/index.m3u8\" \
         target-duration={} playlist-length={} max-files={} send-keyframe-requests=true",
        sub_url.replace('"', ""),
        s.target_duration_s.max(1),
        s.playlist_length.max(3),
        s.playlist_length.max(3) * 2,
    )
}

/// A writer nobody asked for in this long is stopped.
pub const IDLE: Duration = Duration::from_secs(30);

/// When each source's HLS was last asked for.
#[derive(Debug)]
pub struct Demand {
    base: std::time::Instant,
    /// Milliseconds after `base` of the last request, plus one (0: never).
    last: std::collections::HashMap<String, std::sync::atomic::AtomicU64>,
}

impl Demand {
    fn new(sources: impl IntoIterator<Item = String>) -> Self {
        Self {
            base: std::time::Instant::now(),
            last: sources
                .into_iter()
                .map(|s| (s, std::sync::atomic::AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Notes a request for `source`'s stream; false for a source not served.
    pub fn touch(&self, source: &str) -> bool {
        match self.last.get(source) {
            Some(at) => {
                let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
                at.store(ms.saturating_add(1), Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Whether `source` was asked for within `IDLE`.
    pub fn wanted(&self, source: &str) -> bool {
        let Some(at) = self.last.get(source).map(|a| a.load(Ordering::SeqCst)) else {
            return false;
        };
        if at == 0 {
            return false;
        }
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(at - 1) < u64::try_from(IDLE.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Backoff before restarting a failed writer: 1, 2, 4, then 8 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(3))
}

/// A supervised, on-demand HLS writer per source; dropping it stops them.
pub struct HlsWriters {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    demand: Arc<Demand>,
}

impl HlsWriters {
    /// The demand the HTTP side reports requests to.
    pub fn demand(&self) -> Arc<Demand> {
        self.demand.clone()
    }
}

impl Drop for HlsWriters {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Starts one supervised writer per `(source, sub-stream URL)`.
pub fn start_writers(
    sources: &[(String, String)],
    account: Option<Viewer>,
    settings: &HlsSettings,
) -> Result<HlsWriters, StreamError> {
    gst::init().map_err(|e| StreamError::Gst(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let demand = Arc::new(Demand::new(sources.iter().map(|(id, _)| id.clone())));
    let mut threads = Vec::new();
    for (id, url) in sources {
        let out = settings.dir.join(id);
        std::fs::create_dir_all(&out)
            .map_err(|e| StreamError::Server(format!("creating {}: {e}", out.display())))?;
        let launch = hls_launch(url, account.as_ref(), &out, settings);
        let stop = stop.clone();
        let demand = demand.clone();
        let id = id.clone();
        let thread = std::thread::Builder::new()
            .name(format!("hls-{id}"))
            .spawn(move || supervise(&id, &launch, &out, &stop, &demand))
            .map_err(|e| StreamError::Server(e.to_string()))?;
        threads.push(thread);
    }
    Ok(HlsWriters {
        stop,
        threads,
        demand,
    })
}

/// Removes a stopped writer's playlist and segments, so nobody is served a stale stream.
fn clear(out: &Path) {
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn supervise(id: &str, launch: &str, out: &Path, stop: &AtomicBool, demand: &Demand) {
    let mut failures = 0u32;
    clear(out);
    while !stop.load(Ordering::SeqCst) {
        if !demand.wanted(id) {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let started = std::time::Instant::now();
        let result = run_once(launch, &|| {
            stop.load(Ordering::SeqCst) || !demand.wanted(id)
        });
        clear(out);
        match result {
            Ok(()) => {
                info!(source = id, "HLS writer stopped: nobody watches");
                failures = 0;
            }
            Err(e) => {
                if started.elapsed() > Duration::from_secs(30) {
                    failures = 0;
                }
                let wait = backoff(failures);
                failures = failures.saturating_add(1);
                warn!(source = id, error = %e, retry_in_s = wait.as_secs(), "HLS writer stopped");
                let until = std::time::Instant::now() + wait;
                while std::time::Instant::now() < until {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// Runs the pipeline until `done()` (Ok) or an error or end of stream (Err).
fn run_once(launch: &str, done: &dyn Fn() -> bool) -> Result<(), String> {
    let pipeline = gst::parse::launch(launch).map_err(|e| e.to_string())?;
    let bus = pipeline.bus().ok_or("pipeline without a bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start: {e}"))?;
    info!("HLS writer started");
    let result = loop {
        if done() {
            break Ok(());
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(e) => break Err(e.error().to_string()),
            gst::MessageView::Eos(_) => break Err("end of stream".into()),
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Serves [`routes`] on `listener` until `shutdown` resolves.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    dir: PathBuf,
    viewers: Vec<Viewer>,
    demand: Arc<Demand>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, routes(dir, viewers, demand))
        .with_graceful_shutdown(shutdown)
        .await
}

/// What the HTTP side serves: the HLS folder, to these accounts (none: anyone).
#[derive(Clone)]
struct Served {
    dir: Arc<PathBuf>,
    viewers: Arc<Vec<Viewer>>,
    demand: Arc<Demand>,
}

/// Routes `GET /live/{source}/{file}` (playlists and segments).
pub fn routes(dir: PathBuf, viewers: Vec<Viewer>, demand: Arc<Demand>) -> Router {
    Router::new()
        .route("/live/{source}/{file}", get(serve))
        .with_state(Served {
            dir: Arc::new(dir),
            viewers: Arc::new(viewers),
            demand,
        })
}

/// How long a first request waits for its writer's playlist to fill.
const FIRST_PLAYLIST_WAIT: Duration = Duration::from_secs(20);

/// Segments a playlist lists before players are given it. Design: players start three
/// target durations from the end; Chromium's player, started on the first segments of a
/// writer that has just started (one or three listed), failed ("could not parse") and
/// gave up, while the same files played once five were listed (it then starts at the
/// third). So the first request waits for five, about 11 s after the writer starts.
const JOIN_SEGMENTS: usize = 5;

/// Segments a playlist lists.
pub fn segments_listed(playlist: &str) -> usize {
    playlist
        .lines()
        .filter(|l| l.starts_with("#EXTINF:"))
        .count()
}

/// Whether a request's `Authorization: Basic` header names one of `viewers`.
pub fn authorized(headers: &HeaderMap, viewers: &[Viewer]) -> bool {
    if viewers.is_empty() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return false;
    };
    let Some((user, password)) = given.split_once(':') else {
        return false;
    };
    viewers
        .iter()
        .any(|v| v.user == user && v.password == password)
}

async fn serve(
    State(served): State<Served>,
    UrlPath((source, file)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers, &served.viewers) {
        let mut r = (StatusCode::UNAUTHORIZED, "credentials needed").into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gavel live\""),
        );
        return r;
    }
    let (Some(kind), Some(_)) = (
        LiveEndpoints::hls_content_type(&file),
        LiveEndpoints::hls_content_type(&format!("{source}.ts")),
    ) else {
        return (StatusCode::NOT_FOUND, "no such stream file").into_response();
    };
    if !served.demand.touch(&source) {
        return (StatusCode::NOT_FOUND, "no such stream").into_response();
    }
    let path = served.dir.join(&source).join(&file);
    if file.ends_with(".m3u8") {
        // A writer just started on demand: wait until its playlist is long enough to join.
        let deadline = tokio::time::Instant::now() + FIRST_PLAYLIST_WAIT;
        while tokio::time::Instant::now() < deadline {
            let listed = tokio::fs::read_to_string(&path)
                .await
                .map(|t| segments_listed(&t))
                .unwrap_or(0);
            if listed >= JOIN_SEGMENTS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let cache = if file.ends_with(".m3u8") {
                "no-cache"
            } else {
                "max-age=60"
            };
            (
                [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, cache)],
                bytes,
            )
                .into_response()
        }
        Err(_) => (StatusCode::NOT_FOUND, "no such stream file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer() -> Viewer {
        Viewer {
            user: "inspector".into(),
            password: "s3cret".into(),
        }
    }

    #[test]
    fn the_writer_reads_the_servers_own_sub_mount_with_its_account_and_cuts_short_segments() {
        let l = hls_launch(
            "rtsp://127.0.0.1:8554/cam/sub",
            Some(&viewer()),
            Path::new("/var/lib/gavel/live/cam"),
            &HlsSettings::in_dir("/var/lib/gavel/live"),
        );
        assert!(
            l.contains("location=\"rtsp://127.0.0.1:8554/cam/sub\""),
            "{l}"
        );
        assert!(
            l.contains("user-id=\"inspector\" user-pw=\"s3cret\""),
            "{l}"
        );
        assert!(
            l.contains("target-duration=2 playlist-length=6 max-files=12"),
            "{l}"
        );
        assert!(
            !l.contains("x264enc"),
            "HLS remuxes the sub-stream, never encodes: {l}"
        );
        assert!(
            l.contains("h264parse config-interval=-1"),
            "SPS/PPS in every segment: {l}"
        );
        assert!(
            l.contains("h264timestamper"),
            "decoding times restored: {l}"
        );
    }

    #[test]
    fn basic_credentials_must_name_a_viewer() {
        let viewers = [viewer()];
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, &viewers), "no header");
        let good = base64::engine::general_purpose::STANDARD.encode("inspector:s3cret");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {good}")).expect("header"),
        );
        assert!(authorized(&h, &viewers));
        let bad = base64::engine::general_purpose::STANDARD.encode("inspector:guess");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {bad}")).expect("header"),
        );
        assert!(!authorized(&h, &viewers));
        assert!(
            authorized(&HeaderMap::new(), &[]),
            "no accounts: open (labs)"
        );
    }

    #[test]
    fn a_writer_is_wanted_once_asked_for_and_only_for_sources_served() {
        let d = Demand::new(["cam".to_owned()]);
        assert!(!d.wanted("cam"), "nobody asked yet");
        assert!(d.touch("cam"));
        assert!(d.wanted("cam"));
        assert!(!d.touch("other"), "not a served source");
        assert!(!d.wanted("other"));
    }

    #[test]
    fn a_playlist_counts_its_segments() {
        let p = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg00000.ts\n#EXTINF:1.9,\nseg00001.ts\n";
        assert_eq!(segments_listed(p), 2);
        assert_eq!(segments_listed(""), 0);
    }

    #[test]
    fn backoff_grows_to_eight_seconds() {
        let waits: Vec<u64> = (0..6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
    }
}
