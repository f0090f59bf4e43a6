//! The hearing archive (`docs/archive.md`): devices upload closed segments here, with
//! resume, and the controller keeps each one only after its SHA-256 matches the `segment`
//! event the device sent over its authenticated MQTT session; archived hearings are
//! served for playback (MP4 per source with range requests, HLS VOD playlists) and as
//! audio clips of a time span.
//!
//! Objects go to an `object_store`: the local filesystem by default
//! (`GAVEL_ARCHIVE_DIR`, default `<data_dir>/archive`), or S3-compatible storage
//! (`GAVEL_ARCHIVE_S3_URL` and friends, see [`ArchiveSettings`]). The key of a segment is
//! `<device_id>/<hearing_id>/<file>`, `<file>` being the event's `<source>/NNNNN.ts`.
//!
//! Upload protocol, one URL per segment
//! (`/api/v1/archive/uploads/{device}/{hearing}/{source}/{NNNNN.ts}`):
//! - `HEAD`: `Upload-Offset` = bytes held of a partial upload (0: none); an archived
//!   segment also answers `Archive-Sha256`. 404 while the controller has no `segment`
//!   event for it (the event may still be in the device's outbox).
//! - `PUT` with `Upload-Offset` (must equal what is held, else 409 with the right one) and
//!   `Upload-Length` (must equal the event's `bytes`): the body is appended as it arrives,
//!   so a connection cut mid-file keeps every byte that reached the controller. Short of
//!   the length: 204 with the new offset. At the length: the whole file is hashed; a
//!   mismatch drops the partial upload and answers 422; a match stores the object, records
//!   it (table `archive_segments`) and answers 201 `{sha256, bytes}`: the acknowledgement
//!   after which the device may evict the segment.
//!
//! Design: uploads carry no user session (devices have none); what they may write is
//! bounded by the controller's own record: the device id in the path must have sent a
//! `segment` event for that hearing and file, and only bytes hashing to that event's
//! SHA-256 are ever kept. Partial files live in a local staging folder, never in the
//! archive.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use gavel_protocol::EventBody;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::store::{ArchivedSegment, Store};

/// Where the archive keeps its objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSettings {
    /// Local folder of the archive (`GAVEL_ARCHIVE_DIR`); empty: `<data_dir>/archive`.
    pub dir: Option<PathBuf>,
    /// S3-compatible endpoint, e.g. `http://minio.court:9000` (`GAVEL_ARCHIVE_S3_URL`).
    /// Set: the archive is in that bucket instead of the local folder.
    pub s3_url: Option<String>,
    /// Bucket (`GAVEL_ARCHIVE_S3_BUCKET`).
    pub s3_bucket: Option<String>,
    /// Region (`GAVEL_ARCHIVE_S3_REGION`, default `us-east-1`).
    pub s3_region: Option<String>,
    /// Credentials (`GAVEL_ARCHIVE_S3_ACCESS_KEY_ID`, `GAVEL_ARCHIVE_S3_SECRET_ACCESS_KEY`).
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
}

impl ArchiveSettings {
    /// Applies one `GAVEL_ARCHIVE_*` variable; false when the key is not one of them.
    pub fn apply_env(&mut self, key: &str, value: &str) -> bool {
        let v = Some(value.to_owned());
        match key {
            "GAVEL_ARCHIVE_DIR" => self.dir = Some(value.into()),
            "GAVEL_ARCHIVE_S3_URL" => self.s3_url = v,
            "GAVEL_ARCHIVE_S3_BUCKET" => self.s3_bucket = v,
            "GAVEL_ARCHIVE_S3_REGION" => self.s3_region = v,
            "GAVEL_ARCHIVE_S3_ACCESS_KEY_ID" => self.s3_access_key_id = v,
            "GAVEL_ARCHIVE_S3_SECRET_ACCESS_KEY" => self.s3_secret_access_key = v,
            _ => return false,
        }
        true
    }

    /// Checks the S3 settings name a bucket and an http(s) endpoint.
    pub fn validate(&self) -> Result<(), (String, String, String)> {
        if let Some(url) = &self.s3_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "archive.s3_url".into(),
                    url.clone(),
                    "expected an http:// or https:// URL".into(),
                ));
            }
            if self.s3_bucket.as_deref().unwrap_or("").is_empty() {
                return Err((
                    "archive.s3_bucket".into(),
                    String::new(),
                    "an S3 archive needs a bucket (GAVEL_ARCHIVE_S3_BUCKET)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The archive: its object store, the staging folder for partial uploads and the
/// playback cache.
#[derive(Clone)]
pub struct Archive {
    objects: Arc<dyn ObjectStore>,
    /// `file:///...` or `s3://bucket`, for logs and the API.
    pub location: String,
    staging: PathBuf,
    cache: PathBuf,
    /// Uploads in progress (one writer per segment).
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Why the archive could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive folder {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("archive object store: {0}")]
    Store(#[from] object_store::Error),
}

impl Archive {
    /// Opens the archive configured by `settings`, with staging and cache under
    /// `data_dir`.
    pub fn open(settings: &ArchiveSettings, data_dir: &FsPath) -> Result<Self, ArchiveError> {
        let mkdir = |p: &FsPath| {
            std::fs::create_dir_all(p).map_err(|e| ArchiveError::Io {
                path: p.display().to_string(),
                source: e,
            })
        };
        let staging = data_dir.join("archive-staging");
        let cache = data_dir.join("archive-cache");
        mkdir(&staging)?;
        mkdir(&cache)?;
        let (objects, location): (Arc<dyn ObjectStore>, String) = match &settings.s3_url {
            Some(url) => {
                let bucket = settings.s3_bucket.clone().unwrap_or_default();
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(url)
                    .with_bucket_name(&bucket)
                    .with_region(settings.s3_region.as_deref().unwrap_or("us-east-1"))
                    .with_allow_http(url.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
                if let Some(k) = &settings.s3_access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &settings.s3_secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                (Arc::new(b.build()?), format!("s3://{bucket} at {url}"))
            }
            None => {
                let dir = settings
                    .dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("archive"));
                mkdir(&dir)?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)?;
                (Arc::new(local), format!("file://{}", dir.display()))
            }
        };
        Ok(Self {
            objects,
            location,
            staging,
            cache,
            busy: Arc::default(),
        })
    }

    fn key(device: &str, hearing: &str, file: &str) -> ObjectPath {
        ObjectPath::from(format!("{device}/{hearing}/{file}"))
    }

    fn staging_file(&self, device: &str, hearing: &str, file: &str) -> PathBuf {
        self.staging
            .join(device)
            .join(hearing)
            .join(file.replace('/', "__"))
    }
}

/// State of the archive routes.
#[derive(Clone)]
pub struct ArchiveState {
    pub archive: Archive,
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

/// The archive's routes.
pub fn routes(state: ArchiveState) -> Router {
    Router::new()
        .route(
            "/api/v1/archive/uploads/{device}/{hearing}/{source}/{file}",
            get(upload_status).put(upload),
        )
        .route("/api/v1/archive/hearings/{hearing}", get(hearing_index))
        .route("/api/v1/archive/hearings/{hearing}/audio", get(audio_clip))
        .route(
            "/api/v1/archive/hearings/{hearing}/{source}/index.m3u8",
            get(playlist),
        )
        .route(
            "/api/v1/archive/hearings/{hearing}/{source}/video.mp4",
            get(source_mp4),
        )
        .route(
            "/api/v1/archive/files/{device}/{hearing}/{source}/{file}",
            get(serve_segment),
        )
        .route("/hearings/{hearing}/playback", get(playback_page))
        .with_state(state)
}

fn err(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Checks the parts of an archive path: a device id, a hearing id, a source and a
/// segment file name `NNNNN.ts`.
fn check_path(device: &str, hearing: &str, source: &str, file: &str) -> Result<(), String> {
    gavel_protocol::DeviceId::new(device).map_err(|e| format!("device id: {e}"))?;
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_uppercase()
                    || b.is_ascii_digit()
                    || b"-_.".contains(&b)
            })
            && s != "."
            && s != ".."
    };
    if !id_ok(hearing) {
        return Err(format!("hearing id {hearing:?}"));
    }
    if !id_ok(source) {
        return Err(format!("source {source:?}"));
    }
    let number_ok = file
        .strip_suffix(".ts")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !number_ok {
        return Err(format!("segment file {file:?}: expected NNNNN.ts"));
    }
    Ok(())
}

/// The `segment` event `device` sent for `file` of `hearing`.
async fn segment_event(
    store: &Store,
    device: &str,
    hearing: &str,
    file: &str,
) -> Result<Option<ArchivedSegment>, Response> {
    let events = store
        .hearing_events(hearing)
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(events.into_iter().find_map(|(d, _, e)| match e.body {
        EventBody::Segment {
            source,
            index,
            file: f,
            sha256,
            bytes,
            offset_ns,
            duration_ns,
            ..
        } if d == device && f == file => Some(ArchivedSegment {
            device_id: d,
            hearing_id: hearing.to_owned(),
            file: f,
            source,
            index,
            sha256,
            bytes,
            offset_ns,
            duration_ns,
            stored_ms: 0,
        }),
        _ => None,
    }))
}

fn offset_header(n: u64) -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::HeaderName::from_static("upload-offset"),
            HeaderValue::from(n),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// `HEAD|GET /api/v1/archive/uploads/...`: how much of the segment the archive holds.
#[utoipa::path(get, path = "/api/v1/archive/uploads/{device}/{hearing}/{source}/{file}",
    params(("device" = String, Path), ("hearing" = String, Path), ("source" = String, Path),
        ("file" = String, Path, description = "NNNNN.ts")),
    responses((status = 200, description = "Upload-Offset: bytes held; Archive-Sha256 when archived"),
        (status = 404, description = "no segment event for this file yet")))]
pub async fn upload_status(
    State(s): State<ArchiveState>,
    Path((device, hearing, source, file)): Path<(String, String, String, String)>,
) -> Response {
    if let Err(why) = check_path(&device, &hearing, &source, &file) {
        return err(StatusCode::BAD_REQUEST, why);
    }
    let file = format!("{source}/{file}");
    match s.store.archived_segment(&device, &hearing, &file).await {
        Ok(Some(a)) => {
            let mut r = (StatusCode::OK, offset_header(a.bytes)).into_response();
            if let Ok(v) = HeaderValue::from_str(&a.sha256) {
                r.headers_mut().insert("archive-sha256", v);
            }
            return r;
        }
        Ok(None) => {}
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    match segment_event(&s.store, &device, &hearing, &file).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return err(
                StatusCode::NOT_FOUND,
                format!("no segment event of {device} for {hearing}/{file} yet"),
            );
        }
        Err(r) => return r,
    }
    let held = tokio::fs::metadata(s.archive.staging_file(&device, &hearing, &file))
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    (StatusCode::OK, offset_header(held)).into_response()
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Releases the upload slot of a segment when dropped.
struct Busy(Arc<Mutex<HashSet<String>>>, String);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(&self.1);
        }
    }
}

/// `PUT /api/v1/archive/uploads/...`: appends the body at `Upload-Offset`; at the end,
/// verifies the hash and archives the segment.
#[utoipa::path(put, path = "/api/v1/archive/uploads/{device}/{hearing}/{source}/{file}",
    params(("device" = String, Path), ("hearing" = String, Path), ("source" = String, Path),
        ("file" = String, Path, description = "NNNNN.ts"),
        ("Upload-Offset" = u64, Header), ("Upload-Length" = u64, Header)),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 201, description = "archived: {sha256, bytes}"),
        (status = 200, description = "archived before"),
        (status = 204, description = "partial: Upload-Offset"),
        (status = 409, description = "wrong offset or another upload runs"),
        (status = 422, description = "the bytes do not hash to the segment event's SHA-256")))]
pub async fn upload(
    State(s): State<ArchiveState>,
    Path((device, hearing, source, name)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    if let Err(why) = check_path(&device, &hearing, &source, &name) {
        return err(StatusCode::BAD_REQUEST, why);
    }
    let file = format!("{source}/{name}");
    let headers = request.headers().clone();
    let (Some(offset), Some(length)) = (
        header_u64(&headers, "upload-offset"),
        header_u64(&headers, "upload-length"),
    ) else {
        return err(
            StatusCode::BAD_REQUEST,
            "Upload-Offset and Upload-Length headers are required",
        );
    };
    // Already archived: acknowledge again (the device may have missed the answer).
    match s.store.archived_segment(&device, &hearing, &file).await {
        Ok(Some(a)) => {
            return (
                StatusCode::OK,
                Json(serde_json::json!({"sha256": a.sha256, "bytes": a.bytes, "already": true})),
            )
                .into_response();
        }
        Ok(None) => {}
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    let expected = match segment_event(&s.store, &device, &hearing, &file).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return err(
                StatusCode::NOT_FOUND,
                format!("no segment event of {device} for {hearing}/{file} yet"),
            );
        }
        Err(r) => return r,
    };
    if length != expected.bytes {
        return err(
            StatusCode::BAD_REQUEST,
            format!(
                "Upload-Length {length} is not the segment's {} bytes",
                expected.bytes
            ),
        );
    }
    let slot = format!("{device}/{hearing}/{file}");
    {
        let Ok(mut busy) = s.archive.busy.lock() else {
            return err(StatusCode::INTERNAL_SERVER_ERROR, "upload table poisoned");
        };
        if !busy.insert(slot.clone()) {
            return err(StatusCode::CONFLICT, "this segment is being uploaded");
        }
    }
    let _busy = Busy(s.archive.busy.clone(), slot);
    let path = s.archive.staging_file(&device, &hearing, &file);
    if let Some(dir) = path.parent()
        && let Err(e) = tokio::fs::create_dir_all(dir).await
    {
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", dir.display()),
        );
    }
    let held = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if offset != held {
        let mut r = err(
            StatusCode::CONFLICT,
            format!("Upload-Offset {offset}, but the archive holds {held} bytes"),
        );
        r.headers_mut().extend(offset_header(held));
        return r;
    }
    let mut out = match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", path.display()),
            );
        }
    };
    let mut size = held;
    let mut stream = request.into_body().into_data_stream();
    let mut cut = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                if size + bytes.len() as u64 > length {
                    cut = Some(format!("more than the {length} bytes announced"));
                    break;
                }
                if let Err(e) = out.write_all(&bytes).await {
                    cut = Some(format!("writing {}: {e}", path.display()));
                    break;
                }
                size += bytes.len() as u64;
                s.metrics.archive_received_bytes.inc_by(bytes.len() as u64);
            }
            Err(e) => {
                cut = Some(format!("the upload was cut: {e}"));
                break;
            }
        }
    }
    // Every byte that arrived stays for the resume.
    let _ = out.flush().await;
    let _ = out.sync_data().await;
    drop(out);
    if let Some(why) = cut {
        info!(%device, %hearing, %file, held = size, "{why}");
        let mut r = err(StatusCode::BAD_REQUEST, why);
        r.headers_mut().extend(offset_header(size));
        return r;
    }
    if size < length {
        return (StatusCode::NO_CONTENT, offset_header(size)).into_response();
    }
    // Complete: verify before anything is kept.
    let hash_path = path.clone();
    let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<(String, Vec<u8>)> {
        let data = std::fs::read(&hash_path)?;
        Ok((hex::encode(Sha256::digest(&data)), data))
    })
    .await;
    let (sha256, data) = match hashed {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", path.display()),
            );
        }
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if sha256 != expected.sha256 {
        let _ = tokio::fs::remove_file(&path).await;
        s.metrics.archive_hash_mismatches.inc();
        warn!(%device, %hearing, %file, expected = %expected.sha256, got = %sha256, "upload refused: hash mismatch");
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the {length} bytes received hash to {sha256}, the segment event says {}; upload it again",
                expected.sha256
            ),
        );
    }
    let key = Archive::key(&device, &hearing, &file);
    if let Err(e) = s.archive.objects.put(&key, data.into()).await {
        warn!(%key, error = %e, "storing an archived segment");
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storing in {}: {e}", s.archive.location),
        );
    }
    let record = ArchivedSegment {
        stored_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
        ..expected
    };
    if let Err(e) = s.store.save_archived(&record).await {
        return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let _ = tokio::fs::remove_file(&path).await;
    s.metrics.archive_segments.inc();
    info!(%device, %hearing, %file, bytes = record.bytes, "segment archived, hash verified");
    (
        StatusCode::CREATED,
        Json(serde_json::json!({"sha256": record.sha256, "bytes": record.bytes})),
    )
        .into_response()
}

/// One source of an archived hearing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ArchivedSource {
    pub device_id: String,
    pub source: String,
    pub segments: usize,
    pub bytes: u64,
    /// Start of the source's first segment on the hearing's timeline, ms.
    pub start_ms: u64,
    /// End of its last segment on the hearing's timeline, ms.
    pub end_ms: u64,
    /// MP4 of the source (range requests).
    pub video: String,
    /// HLS VOD playlist.
    pub playlist: String,
}

/// An archived hearing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ArchivedHearing {
    pub hearing_id: String,
    pub location: String,
    pub segments: usize,
    pub bytes: u64,
    /// End of the latest segment on the hearing's timeline, ms.
    pub duration_ms: u64,
    pub sources: Vec<ArchivedSource>,
    pub playback: String,
    pub files: Vec<ArchivedSegment>,
}

/// Per (device, source), its segments in timeline order.
fn by_source(segments: &[ArchivedSegment]) -> BTreeMap<(String, String), Vec<&ArchivedSegment>> {
    let mut m: BTreeMap<(String, String), Vec<&ArchivedSegment>> = BTreeMap::new();
    for s in segments {
        m.entry((s.device_id.clone(), s.source.clone()))
            .or_default()
            .push(s);
    }
    for v in m.values_mut() {
        v.sort_by_key(|s| (s.offset_ns, s.index));
    }
    m
}

async fn archived_or_404(
    s: &ArchiveState,
    hearing: &str,
) -> Result<Vec<ArchivedSegment>, Response> {
    let segments = s
        .store
        .archived_segments(hearing)
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if segments.is_empty() {
        return Err(err(
            StatusCode::NOT_FOUND,
            format!("nothing of hearing {hearing} is archived"),
        ));
    }
    Ok(segments)
}

/// `GET /api/v1/archive/hearings/{hearing}`: what the archive holds of a hearing.
#[utoipa::path(get, path = "/api/v1/archive/hearings/{hearing}", params(("hearing" = String, Path)),
    responses((status = 200, body = ArchivedHearing), (status = 404)))]
pub async fn hearing_index(State(s): State<ArchiveState>, Path(hearing): Path<String>) -> Response {
    let segments = match archived_or_404(&s, &hearing).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sources = by_source(&segments)
        .into_iter()
        .map(|((device, source), segs)| ArchivedSource {
            video: format!("/api/v1/archive/hearings/{hearing}/{source}/video.mp4"),
            playlist: format!("/api/v1/archive/hearings/{hearing}/{source}/index.m3u8"),
            segments: segs.len(),
            bytes: segs.iter().map(|s| s.bytes).sum(),
            start_ms: segs.first().map(|s| s.offset_ns / 1_000_000).unwrap_or(0),
            end_ms: segs
                .iter()
                .map(|s| (s.offset_ns + s.duration_ns) / 1_000_000)
                .max()
                .unwrap_or(0),
            device_id: device,
            source,
        })
        .collect();
    Json(ArchivedHearing {
        hearing_id: hearing.clone(),
        location: s.archive.location.clone(),
        segments: segments.len(),
        bytes: segments.iter().map(|s| s.bytes).sum(),
        duration_ms: segments
            .iter()
            .map(|s| (s.offset_ns + s.duration_ns) / 1_000_000)
            .max()
            .unwrap_or(0),
        sources,
        playback: format!("/hearings/{hearing}/playback"),
        files: segments,
    })
    .into_response()
}

/// The segments of `source` (the first device recording a source of that name).
fn source_segments<'a>(
    segments: &'a [ArchivedSegment],
    source: &str,
) -> Option<Vec<&'a ArchivedSegment>> {
    by_source(segments)
        .into_iter()
        .find(|((_, s), _)| s == source)
        .map(|(_, v)| v)
}

/// `GET .../{source}/index.m3u8`: an HLS VOD playlist of the source's segments.
#[utoipa::path(get, path = "/api/v1/archive/hearings/{hearing}/{source}/index.m3u8",
    params(("hearing" = String, Path), ("source" = String, Path)),
    responses((status = 200, content_type = "application/vnd.apple.mpegurl"), (status = 404)))]
pub async fn playlist(
    State(s): State<ArchiveState>,
    Path((hearing, source)): Path<(String, String)>,
) -> Response {
    let segments = match archived_or_404(&s, &hearing).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(segs) = source_segments(&segments, &source) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("no archived source {source}"),
        );
    };
    (
        [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")],
        hls_playlist(&segs),
    )
        .into_response()
}

/// An HLS VOD playlist; a discontinuity marks every gap of more than 0.5 s between
/// segments.
pub fn hls_playlist(segs: &[&ArchivedSegment]) -> String {
    let target = segs
        .iter()
        .map(|s| s.duration_ns.div_ceil(1_000_000_000))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n"
    );
    let mut end = None;
    for s in segs {
        if end.is_some_and(|e: u64| s.offset_ns > e + 500_000_000) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        end = Some(s.offset_ns + s.duration_ns);
        out.push_str(&format!(
            "#EXTINF:{:.3},\n/api/v1/archive/files/{}/{}/{}\n",
            s.duration_ns as f64 / 1e9,
            s.device_id,
            s.hearing_id,
            s.file
        ));
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// A parsed `Range: bytes=...` (one range).
fn parse_range(headers: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return Some(Err(()));
    }
    let (a, b) = spec.split_once('-')?;
    let r = match (a.trim(), b.trim()) {
        ("", n) => n
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (size.saturating_sub(n), size - 1)),
        (a, "") => a
            .parse::<u64>()
            .ok()
            .filter(|a| *a < size)
            .map(|a| (a, size - 1)),
        (a, b) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b && a < size => Some((a, b.min(size - 1))),
            _ => None,
        },
    };
    Some(r.ok_or(()))
}

/// `GET /api/v1/archive/files/{device}/{hearing}/{source}/{file}`: an archived segment,
/// with range requests.
#[utoipa::path(get, path = "/api/v1/archive/files/{device}/{hearing}/{source}/{file}",
    params(("device" = String, Path), ("hearing" = String, Path), ("source" = String, Path),
        ("file" = String, Path)),
    responses((status = 200, content_type = "video/mp2t"), (status = 206), (status = 404), (status = 416)))]
pub async fn serve_segment(
    State(s): State<ArchiveState>,
    Path((device, hearing, source, name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(why) = check_path(&device, &hearing, &source, &name) {
        return err(StatusCode::BAD_REQUEST, why);
    }
    let key = Archive::key(&device, &hearing, &format!("{source}/{name}"));
    let meta = match s.archive.objects.head(&key).await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => {
            return err(StatusCode::NOT_FOUND, format!("{key} is not archived"));
        }
        Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let size = meta.size;
    let (status, start, end) = match parse_range(&headers, size) {
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(())) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response();
        }
    };
    let opts = object_store::GetOptions {
        range: (size > 0).then_some(object_store::GetRange::Bounded(start..end + 1)),
        ..Default::default()
    };
    let got = match s.archive.objects.get_opts(&key, opts).await {
        Ok(g) => g,
        Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let body = Body::from_stream(got.into_stream());
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(if size == 0 { 0 } else { end - start + 1 }),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

/// Copies the segments into a folder and writes an ffmpeg concat list of them.
async fn fetch_segments(
    archive: &Archive,
    segs: &[&ArchivedSegment],
    dir: &FsPath,
) -> Result<PathBuf, String> {
    let mut list = String::new();
    for (i, seg) in segs.iter().enumerate() {
        let key = Archive::key(&seg.device_id, &seg.hearing_id, &seg.file);
        let data = archive
            .objects
            .get(&key)
            .await
            .map_err(|e| format!("{key}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        let path = dir.join(format!("{i:05}.ts"));
        tokio::fs::write(&path, &data)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        list.push_str(&format!("file '{}'\n", path.display()));
    }
    let list_path = dir.join("list.txt");
    tokio::fs::write(&list_path, list)
        .await
        .map_err(|e| format!("{}: {e}", list_path.display()))?;
    Ok(list_path)
}

/// Joins `segs` (copied into `work`) with ffmpeg's concat demuxer and writes `out` with
/// the output options `args` (stream selection, cuts, codecs).
async fn concat_segments(
    archive: &Archive,
    segs: &[&ArchivedSegment],
    work: &FsPath,
    args: &[String],
    out: &FsPath,
) -> Result<(), String> {
    let list = fetch_segments(archive, segs, work).await?;
    let result = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "concat", "-safe", "0", "-i"])
        .arg(&list)
        .args(args)
        .arg(out)
        .output()
        .await
        .map_err(|e| format!("running ffmpeg: {e}"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&result.stderr).trim().to_owned())
    }
}

/// `GET .../{source}/video.mp4`: the source remuxed (not re-encoded) into one MP4 with
/// its index first, built once per set of archived segments and served with ranges.
#[utoipa::path(get, path = "/api/v1/archive/hearings/{hearing}/{source}/video.mp4",
    params(("hearing" = String, Path), ("source" = String, Path)),
    responses((status = 200, content_type = "video/mp4"), (status = 206), (status = 404)))]
pub async fn source_mp4(
    State(s): State<ArchiveState>,
    Path((hearing, source)): Path<(String, String)>,
    request: Request,
) -> Response {
    let segments = match archived_or_404(&s, &hearing).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(segs) = source_segments(&segments, &source) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("no archived source {source}"),
        );
    };
    if check_path(&segs[0].device_id, &hearing, &source, "0.ts").is_err() {
        return err(StatusCode::BAD_REQUEST, "bad hearing or source");
    }
    // The cache file names the set of segments it was built from.
    let mut h = Sha256::new();
    for seg in &segs {
        h.update(seg.sha256.as_bytes());
    }
    let tag = &hex::encode(h.finalize())[..16];
    let dir = s.archive.cache.join(&hearing);
    let mp4 = dir.join(format!("{source}-{tag}.mp4"));
    if !mp4.exists() {
        let work = dir.join(format!("{source}-{tag}.work"));
        let _ = tokio::fs::remove_dir_all(&work).await;
        if let Err(e) = tokio::fs::create_dir_all(&work).await {
            return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        let built = async {
            let tmp = work.join("out.mp4");
            let args = ["-c", "copy", "-movflags", "+faststart"].map(String::from);
            concat_segments(&s.archive, &segs, &work, &args, &tmp).await?;
            tokio::fs::rename(&tmp, &mp4)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        if let Err(e) = built {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("remuxing {source}: {e}"),
            );
        }
    }
    match tower::ServiceExt::oneshot(tower_http::services::ServeFile::new(&mp4), request).await {
        Ok(r) => r.into_response(),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The span of an audio clip.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AudioSpan {
    /// The source whose audio is cut.
    pub source: String,
    /// Start on the hearing's timeline, ms.
    pub from_ms: u64,
    /// End on the hearing's timeline, ms.
    pub to_ms: u64,
}

/// Longest audio clip served, ms.
pub const MAX_CLIP_MS: u64 = 10 * 60 * 1000;

/// `GET /api/v1/archive/hearings/{hearing}/audio?source=&from_ms=&to_ms=`: a WAV clip
/// (16 kHz mono) of a span of the hearing's timeline, for the transcript proofreading
/// page.
#[utoipa::path(get, path = "/api/v1/archive/hearings/{hearing}/audio",
    params(("hearing" = String, Path), AudioSpan),
    responses((status = 200, content_type = "audio/wav"), (status = 400), (status = 404),
        (status = 422, description = "the source has no audio")))]
pub async fn audio_clip(
    State(s): State<ArchiveState>,
    Path(hearing): Path<String>,
    Query(span): Query<AudioSpan>,
) -> Response {
    if span.to_ms <= span.from_ms || span.to_ms - span.from_ms > MAX_CLIP_MS {
        return err(
            StatusCode::BAD_REQUEST,
            format!(
                "from_ms {} to to_ms {}: the span must be positive and at most {MAX_CLIP_MS} ms",
                span.from_ms, span.to_ms
            ),
        );
    }
    let segments = match archived_or_404(&s, &hearing).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(segs) = source_segments(&segments, &span.source) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("no archived source {}", span.source),
        );
    };
    let (from_ns, to_ns) = (span.from_ms * 1_000_000, span.to_ms * 1_000_000);
    let covering: Vec<&ArchivedSegment> = segs
        .into_iter()
        .filter(|s| s.offset_ns < to_ns && s.offset_ns + s.duration_ns > from_ns)
        .collect();
    let Some(first) = covering.first() else {
        return err(
            StatusCode::NOT_FOUND,
            format!(
                "nothing of {} is archived between {} and {} ms",
                span.source, span.from_ms, span.to_ms
            ),
        );
    };
    let start_s = from_ns.saturating_sub(first.offset_ns) as f64 / 1e9;
    let length_s = (to_ns - from_ns) as f64 / 1e9;
    let work = s
        .archive
        .cache
        .join(format!("clip-{}", uuid::Uuid::new_v4()));
    if let Err(e) = tokio::fs::create_dir_all(&work).await {
        return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let result = async {
        let wav = work.join("clip.wav");
        let args = [
            "-ss".into(),
            format!("{start_s:.3}"),
            "-t".into(),
            format!("{length_s:.3}"),
        ]
        .into_iter()
        .chain(["-vn", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le"].map(String::from))
        .collect::<Vec<_>>();
        concat_segments(&s.archive, &covering, &work, &args, &wav)
            .await
            .map_err(|e| {
                if e.contains("does not contain any stream") || e.contains("matches no streams") {
                    format!("source {} has no audio", span.source)
                } else {
                    e
                }
            })?;
        tokio::fs::read(&wav).await.map_err(|e| e.to_string())
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    match result {
        Ok(data) => (
            [
                (header::CONTENT_TYPE, "audio/wav"),
                (header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            data,
        )
            .into_response(),
        Err(e) if e.contains("has no audio") => err(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `GET /hearings/{hearing}/playback`: every source side by side on one clock.
async fn playback_page(Path(hearing): Path<String>) -> Response {
    if check_path("x", &hearing, "x", "0.ts").is_err() {
        return err(StatusCode::BAD_REQUEST, format!("hearing id {hearing:?}"));
    }
    Html(include_str!("../assets/playback.html").replace("{{HEARING}}", &hearing)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(i: u64, offset_s: u64) -> ArchivedSegment {
        ArchivedSegment {
            device_id: "d1".into(),
            hearing_id: "h1".into(),
            file: format!("cam/{i:05}.ts"),
            source: "cam".into(),
            index: i,
            sha256: "0".repeat(64),
            bytes: 10,
            offset_ns: offset_s * 1_000_000_000,
            duration_ns: 2_000_000_000,
            stored_ms: 0,
        }
    }

    #[test]
    fn a_playlist_lists_every_segment_and_marks_gaps() {
        let segs = [seg(0, 0), seg(1, 2), seg(2, 10)];
        let refs: Vec<&ArchivedSegment> = segs.iter().collect();
        let text = hls_playlist(&refs);
        assert!(text.starts_with("#EXTM3U\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        assert_eq!(text.matches("#EXTINF:2.000,").count(), 3, "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 1, "{text}");
        assert!(
            text.contains("/api/v1/archive/files/d1/h1/cam/00002.ts"),
            "{text}"
        );
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    }

    #[test]
    fn ranges_are_parsed_and_bad_ones_refused() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::RANGE, HeaderValue::from_str(v).expect("value"));
            m
        };
        assert_eq!(parse_range(&HeaderMap::new(), 100), None);
        assert_eq!(parse_range(&h("bytes=0-9"), 100), Some(Ok((0, 9))));
        assert_eq!(parse_range(&h("bytes=90-"), 100), Some(Ok((90, 99))));
        assert_eq!(parse_range(&h("bytes=-10"), 100), Some(Ok((90, 99))));
        assert_eq!(parse_range(&h("bytes=50-500"), 100), Some(Ok((50, 99))));
        assert_eq!(parse_range(&h("bytes=100-"), 100), Some(Err(())));
        assert_eq!(parse_range(&h("bytes=0-1,5-6"), 100), Some(Err(())));
    }

    #[test]
    fn archive_paths_refuse_traversal_and_odd_names() {
        assert!(check_path("dev-1", "H-1", "cam-judge", "00001.ts").is_ok());
        assert!(check_path("dev-1", "..", "cam", "00001.ts").is_err());
        assert!(check_path("dev-1", "H-1", "cam", "../x.ts").is_err());
        assert!(check_path("dev-1", "H-1", "cam", "00001.mp4").is_err());
        assert!(check_path("Dev 1", "H-1", "cam", "00001.ts").is_err());
    }

    #[test]
    fn s3_settings_need_a_bucket_and_an_http_endpoint() {
        let mut a = ArchiveSettings::default();
        assert!(a.apply_env("GAVEL_ARCHIVE_S3_URL", "http://127.0.0.1:9000"));
        let e = a.validate().expect_err("no bucket");
        assert_eq!(e.0, "archive.s3_bucket");
        a.apply_env("GAVEL_ARCHIVE_S3_BUCKET", "gavel");
        assert!(a.validate().is_ok());
        a.apply_env("GAVEL_ARCHIVE_S3_URL", "minio:9000");
        assert_eq!(a.validate().expect_err("scheme").0, "archive.s3_url");
        assert!(!a.apply_env("GAVEL_OTHER", "x"));
    }
}
