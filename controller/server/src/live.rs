//! Live video for browsers: the controller relays a device's HLS sub-stream
//! (`GET /api/v1/devices/{id}/live/{source}/{file}`), so inspectors watch with their own
//! controller account (the page's origin, no device credentials in the browser) and the
//! link to the court carries each segment once however many inspectors watch: segments
//! are kept in a small cache, playlists for one second.
//!
//! The controller signs in to devices with one viewer account of theirs,
//! `GAVEL_LIVE_USER` / `GAVEL_LIVE_PASSWORD` (the devices' `[live] viewers` list it).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gavel_protocol::DeviceId;
use tokio::sync::Mutex;

use crate::api::{ApiError, AppState};

/// Segments kept (about 2 s each): enough for every viewer of a few dozen streams.
const SEGMENTS_KEPT: usize = 256;
/// How long a fetched playlist is reused.
const PLAYLIST_FRESH: Duration = Duration::from_secs(1);

/// The relay: an HTTP client, the account, and the cache.
#[derive(Clone)]
pub struct LiveProxy {
    client: reqwest::Client,
    account: Option<(String, String)>,
    cache: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Instant, bytes::Bytes)>,
    order: VecDeque<String>,
    /// Fetches from devices (the counter the tests read through `/metrics`-like logs).
    fetches: u64,
}

impl Cache {
    fn get(&self, key: &str, max_age: Option<Duration>, now: Instant) -> Option<bytes::Bytes> {
        let (at, body) = self.entries.get(key)?;
        match max_age {
            Some(age) if now.duration_since(*at) > age => None,
            _ => Some(body.clone()),
        }
    }

    fn put(&mut self, key: String, body: bytes::Bytes, now: Instant) {
        if self.entries.insert(key.clone(), (now, body)).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > SEGMENTS_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

impl LiveProxy {
    /// The relay with the account from `GAVEL_LIVE_USER` / `GAVEL_LIVE_PASSWORD`.
    pub fn from_env() -> Self {
        let account = match (
            std::env::var("GAVEL_LIVE_USER"),
            std::env::var("GAVEL_LIVE_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) if !u.is_empty() => Some((u, p)),
            _ => None,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            client,
            account,
            cache: Arc::new(Mutex::new(Cache::default())),
        }
    }

    /// Fetches from devices so far.
    pub async fn fetches(&self) -> u64 {
        self.cache.lock().await.fetches
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/devices/{id}/live/{source}/{file}", get(relay))
}

fn not_found(what: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, what.into())
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/live/{source}/{file}",
    params(("id" = String, Path), ("source" = String, Path), ("file" = String, Path, description = "index.m3u8 or a segment")),
    responses((status = 200, content_type = "application/vnd.apple.mpegurl"), (status = 404), (status = 502)))]
pub async fn relay(
    State(s): State<AppState>,
    Path((id, source, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let device = DeviceId::new(&id)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("device id: {e}")))?;
    let kind = gavel_protocol::LiveEndpoints::hls_content_type(&file)
        .ok_or_else(|| not_found(format!("{file:?} is not a stream file")))?;
    let record = s
        .fleet
        .get(device)
        .await
        .ok_or_else(|| not_found(format!("no device {id}")))?;
    let live = record
        .live
        .ok_or_else(|| not_found(format!("{id} does not stream live")))?;
    if !live.sources.contains(&source) {
        return Err(not_found(format!(
            "{id} does not stream {source:?} (it streams {})",
            live.sources.join(", ")
        )));
    }
    let base = live
        .hls
        .ok_or_else(|| not_found(format!("{id} serves no HLS")))?;
    let url = format!("{}/{source}/{file}", base.trim_end_matches('/'));
    let playlist = file.ends_with(".m3u8");
    let max_age = playlist.then_some(PLAYLIST_FRESH);
    let proxy = &s.live;
    // Design: the lock is held across the fetch, so concurrent viewers asking for the same
    // new segment wait for one fetch instead of each fetching it over the court's link.
    let mut cache = proxy.cache.lock().await;
    let body = match cache.get(&url, max_age, Instant::now()) {
        Some(b) => b,
        None => {
            let mut request = proxy.client.get(&url);
            if let Some((user, password)) = &proxy.account {
                request = request.basic_auth(user, Some(password));
            }
            cache.fetches += 1;
            let response = request
                .send()
                .await
                .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("{id}: {e}")))?;
            if !response.status().is_success() {
                return Err(ApiError(
                    StatusCode::BAD_GATEWAY,
                    format!("{id} answered {} for {source}/{file}", response.status()),
                ));
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("{id}: {e}")))?;
            cache.put(url, body.clone(), Instant::now());
            body
        }
    };
    drop(cache);
    let cache_control = if playlist { "no-cache" } else { "max-age=60" };
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, cache_control),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_stay_cached_and_playlists_go_stale_after_a_second() {
        let mut c = Cache::default();
        let t0 = Instant::now();
        c.put("seg".into(), bytes::Bytes::from_static(b"ts"), t0);
        c.put("list".into(), bytes::Bytes::from_static(b"m3u8"), t0);
        let later = t0 + Duration::from_secs(5);
        assert!(c.get("seg", None, later).is_some());
        assert!(c.get("list", Some(PLAYLIST_FRESH), later).is_none());
        assert!(
            c.get(
                "list",
                Some(PLAYLIST_FRESH),
                t0 + Duration::from_millis(500)
            )
            .is_some()
        );
    }

    #[test]
    fn the_cache_keeps_the_newest_segments() {
        let mut c = Cache::default();
        let t0 = Instant::now();
        for i in 0..(SEGMENTS_KEPT + 10) {
            c.put(format!("s{i}"), bytes::Bytes::new(), t0);
        }
        assert_eq!(c.entries.len(), SEGMENTS_KEPT);
        assert!(c.get("s0", None, t0).is_none());
        assert!(
            c.get(&format!("s{}", SEGMENTS_KEPT + 9), None, t0)
                .is_some()
        );
    }
}
