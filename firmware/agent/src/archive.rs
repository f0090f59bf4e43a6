//! The archive task: uploads closed segments to the controller's archive and applies the
//! storage policy to the recordings volume (`docs/archive.md`).
//!
//! One task owns the upload scheduler (`gavel_record::upload::Uploader`), the storage
//! policy (`gavel_record::retention::Retention`) and every read-modify-write of the
//! hearings' archive state in the store (acknowledgements, evictions, legal holds), so
//! they never race. Others reach it through an [`ArchiveHandle`]. Store reads and file
//! deletions run on blocking threads; one upload at a time runs on its own task and
//! reports back over a channel.
//!
//! Upload protocol (tus-like, one segment per URL
//! `<url>/api/v1/archive/uploads/<device>/<hearing>/<source>/<NNNNN>.ts`): `HEAD` answers
//! `Upload-Offset` (bytes the archive already holds of it; with `Archive-Sha256` when it
//! is archived already); `PUT` with `Upload-Offset` and `Upload-Length` sends the rest,
//! paced by the device's token bucket; the archive answers the SHA-256 it computed over
//! the whole file, and the segment counts as archived only if that equals the device's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gavel_link::Outbox;
use gavel_ota::throttle::TokenBucket;
use gavel_protocol::{EventBody, Phase, StorageAlarm};
use gavel_record::index::{Index, SegmentState};
use gavel_record::retention::{self, Retention, StoredSegment};
use gavel_record::upload::{Failure, Input, Output, PendingSegment, Uploader};
use gavel_store::Store;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::ArchiveConfig;

/// Pieces the upload body is cut into (each waits for the token bucket).
const PIECE: usize = 16 * 1024;

/// Talks to the archive task.
#[derive(Clone)]
pub struct ArchiveHandle {
    tx: mpsc::Sender<Request>,
}

enum Request {
    Hold {
        hearing: String,
        hold: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

impl ArchiveHandle {
    /// Sets or lifts hearing `hearing`'s legal hold (stored before the answer).
    pub async fn set_hold(&self, hearing: &str, hold: bool) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Hold {
                hearing: hearing.to_owned(),
                hold,
                reply,
            })
            .await
            .map_err(|_| "the archive task has stopped".to_string())?;
        rx.await
            .map_err(|_| "the archive task has stopped".to_string())?
    }
}

/// What an upload attempt ended with.
struct Attempt {
    key: (String, u64),
    result: Result<String, Failure>,
}

/// Starts the archive task over the recorder's segment index.
pub fn spawn(
    settings: &ArchiveConfig,
    device_id: &str,
    data_dir: &std::path::Path,
    store: Arc<Store>,
    outbox: Arc<Outbox>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(ArchiveHandle, tokio::task::JoinHandle<()>)> {
    let key = gavel_evidence::DeviceKey::load_or_create(&data_dir.join("device.key"))
        .context("loading the device key")?;
    let root = data_dir.join("recordings");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let index = Arc::new(Index::new(store, root.clone(), key));
    let policy = retention::Policy {
        low_free_bytes: settings.low_free_mib << 20,
        high_free_bytes: settings.high_free_mib << 20,
        forecast_horizon: Duration::from_secs(settings.forecast_horizon_s),
        rate_window: Duration::from_secs(settings.rate_window_s),
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building the archive's HTTP client")?;
    let bucket = (settings.max_kbit_s > 0).then(|| {
        Arc::new(Mutex::new(TokenBucket::from_bits_per_s(
            settings.max_kbit_s * 1000,
            gavel_record::mono(),
        )))
    });
    let (tx, rx) = mpsc::channel(16);
    let task = Task {
        index,
        root,
        url: settings
            .url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        device: device_id.to_owned(),
        client,
        bucket,
        uploader: Uploader::default(),
        retention: Retention::new(policy),
        check_every: Duration::from_secs(settings.check_interval_s.max(1)),
        outbox,
        alarm_seq: 0,
    };
    let handle = tokio::spawn(task.run(rx, shutdown));
    Ok((ArchiveHandle { tx }, handle))
}

struct Task {
    index: Arc<Index>,
    root: PathBuf,
    url: Option<String>,
    device: String,
    client: reqwest::Client,
    bucket: Option<Arc<Mutex<TokenBucket>>>,
    uploader: Uploader,
    retention: Retention,
    check_every: Duration,
    outbox: Arc<Outbox>,
    /// Numbers the storage alarms' event ids within this boot.
    alarm_seq: u64,
}

impl Task {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        tokio::pin!(shutdown);
        let (done_tx, mut done_rx) = mpsc::channel::<Attempt>(4);
        let mut scan = tokio::time::interval(Duration::from_secs(1));
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(self.check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open_alarms: Vec<(StorageAlarm, String)> = Vec::new();
        info!(
            archive = self.url.as_deref().unwrap_or("none"),
            capped = self.bucket.is_some(),
            "archive task started"
        );
        loop {
            let outputs = tokio::select! {
                () = &mut shutdown => break,
                Some(req) = requests.recv() => {
                    match req {
                        Request::Hold { hearing, hold, reply } => {
                            let index = self.index.clone();
                            let h = hearing.clone();
                            let r = tokio::task::spawn_blocking(move || index.set_hold(&h, hold))
                                .await
                                .map_err(|e| e.to_string())
                                .and_then(|r| r.map_err(|e| e.to_string()));
                            info!(%hearing, hold, ok = r.is_ok(), "legal hold");
                            let _ = reply.send(r);
                        }
                    }
                    Vec::new()
                }
                Some(done) = done_rx.recv() => {
                    let input = match done.result {
                        Ok(sha256) => Input::Acked { key: done.key, sha256 },
                        Err(failure) => {
                            debug!(hearing = %done.key.0, index = done.key.1, ?failure, "upload failed");
                            Input::Failed { key: done.key, failure }
                        }
                    };
                    self.uploader.handle(gavel_record::mono(), input)
                }
                _ = scan.tick() => {
                    if self.url.is_none() {
                        continue;
                    }
                    match self.states().await {
                        Ok(states) => {
                            let pending = states
                                .into_iter()
                                .filter(|s| !s.archived && !s.evicted)
                                .map(|s| PendingSegment {
                                    hearing_id: s.hearing_id,
                                    index: s.entry.index,
                                    file: s.entry.file,
                                    sha256: s.entry.sha256,
                                    bytes: s.entry.bytes,
                                    wall_start: s.entry.wall_start,
                                })
                                .collect();
                            self.uploader.handle(gavel_record::mono(), Input::Pending(pending))
                        }
                        Err(e) => {
                            warn!(error = %e, "reading the segment index");
                            Vec::new()
                        }
                    }
                }
                _ = check.tick() => {
                    self.check_volume(&mut open_alarms).await;
                    Vec::new()
                }
            };
            for output in outputs {
                self.output(output, &done_tx).await;
            }
        }
        info!("archive task stopped");
    }

    async fn states(&self) -> Result<Vec<SegmentState>, String> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.segment_states())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    async fn output(&mut self, output: Output, done: &mpsc::Sender<Attempt>) {
        match output {
            Output::Upload { segment, restart } => {
                let Some(url) = self.url.clone() else { return };
                let path = self.root.join(&segment.hearing_id).join(&segment.file);
                let client = self.client.clone();
                let bucket = self.bucket.clone();
                let device = self.device.clone();
                let done = done.clone();
                debug!(hearing = %segment.hearing_id, file = %segment.file, restart, "uploading");
                tokio::spawn(async move {
                    let key = (segment.hearing_id.clone(), segment.index);
                    let result = upload(&client, &url, &device, &segment, &path, bucket).await;
                    let _ = done.send(Attempt { key, result }).await;
                });
            }
            Output::Archived { key, sha256 } => {
                let index = self.index.clone();
                let (hearing, n) = key.clone();
                let stored =
                    tokio::task::spawn_blocking(move || index.mark_archived(&hearing, n, &sha256))
                        .await;
                match stored {
                    Ok(Ok(())) => info!(hearing = %key.0, index = key.1, "segment archived"),
                    Ok(Err(e)) => warn!(error = %e, "recording the archive's acknowledgement"),
                    Err(e) => warn!(error = %e, "recording the archive's acknowledgement"),
                }
            }
            Output::AckMismatch { key, expected, got } => {
                warn!(hearing = %key.0, index = key.1, %expected, %got, "the archive acknowledged another hash; not archived")
            }
        }
    }

    /// Samples the recordings volume and applies the storage policy.
    async fn check_volume(&mut self, open_alarms: &mut Vec<(StorageAlarm, String)>) {
        let root = self.root.clone();
        let Ok(Some(volume)) =
            tokio::task::spawn_blocking(move || gavel_health::volume(&root)).await
        else {
            warn!(path = %self.root.display(), "cannot read the recordings volume's free space");
            return;
        };
        let states = match self.states().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "reading the segment index");
                return;
            }
        };
        let stored: Vec<StoredSegment> = states
            .iter()
            .filter(|s| !s.evicted)
            .map(|s| StoredSegment {
                hearing_id: s.hearing_id.clone(),
                index: s.entry.index,
                file: s.entry.file.clone(),
                bytes: s.entry.bytes,
                wall_start: s.entry.wall_start,
                archived: s.archived,
                legal_hold: s.hold,
            })
            .collect();
        let unarchived = stored.iter().filter(|s| !s.archived).count();
        let held = stored.iter().filter(|s| s.legal_hold).count();
        let actions = self
            .retention
            .handle(gavel_record::mono(), volume.free_bytes, &stored);
        for action in actions {
            match action {
                retention::Action::Evict(s) => {
                    let index = self.index.clone();
                    let (hearing, n) = (s.hearing_id.clone(), s.index);
                    match tokio::task::spawn_blocking(move || index.evict(&hearing, n)).await {
                        Ok(Ok(bytes)) => {
                            info!(hearing = %s.hearing_id, file = %s.file, bytes, "evicted an archived segment")
                        }
                        Ok(Err(e)) => warn!(error = %e, "eviction refused"),
                        Err(e) => warn!(error = %e, "eviction failed"),
                    }
                }
                retention::Action::Raise {
                    alarm,
                    free_bytes,
                    seconds_left,
                } => {
                    let alarm = match alarm {
                        retention::Alarm::DiskFullForecast => StorageAlarm::DiskFullForecast,
                        retention::Alarm::RecordingAtRisk => StorageAlarm::RecordingAtRisk,
                    };
                    let detail = match alarm {
                        StorageAlarm::RecordingAtRisk => format!(
                            "{free_bytes} bytes free, below the low watermark, and nothing can be evicted: {unarchived} segments not archived, {held} under legal hold; recording goes on"
                        ),
                        StorageAlarm::DiskFullForecast => format!(
                            "{free_bytes} bytes free; full in about {} s at the current write rate",
                            seconds_left.unwrap_or(0)
                        ),
                    };
                    warn!(
                        alarm = alarm.as_str(),
                        free_bytes,
                        ?seconds_left,
                        "{detail}"
                    );
                    self.alarm_seq += 1;
                    let id = format!("storage-{}-{}", alarm.as_str(), self.alarm_seq);
                    open_alarms.retain(|(a, _)| *a != alarm);
                    open_alarms.push((alarm, id.clone()));
                    self.emit(
                        id,
                        Phase::Start,
                        EventBody::Storage {
                            alarm,
                            free_bytes,
                            seconds_left,
                            detail: Some(detail),
                        },
                    )
                    .await;
                }
                retention::Action::Clear(alarm) => {
                    let alarm = match alarm {
                        retention::Alarm::DiskFullForecast => StorageAlarm::DiskFullForecast,
                        retention::Alarm::RecordingAtRisk => StorageAlarm::RecordingAtRisk,
                    };
                    info!(alarm = alarm.as_str(), "storage condition cleared");
                    let id = open_alarms
                        .iter()
                        .find(|(a, _)| *a == alarm)
                        .map(|(_, id)| id.clone())
                        .unwrap_or_else(|| format!("storage-{}", alarm.as_str()));
                    open_alarms.retain(|(a, _)| *a != alarm);
                    self.emit(
                        id,
                        Phase::End,
                        EventBody::Storage {
                            alarm,
                            free_bytes: volume.free_bytes,
                            seconds_left: None,
                            detail: None,
                        },
                    )
                    .await;
                }
            }
        }
    }

    async fn emit(&self, id: String, phase: Phase, body: EventBody) {
        if let Err(e) = self.outbox.emit(id, phase, body).await {
            warn!(error = %e, "storing a storage event");
        }
    }
}

/// Uploads one segment, resuming from what the archive holds; answers the SHA-256 the
/// archive computed, or why not.
async fn upload(
    client: &reqwest::Client,
    base: &str,
    device: &str,
    segment: &PendingSegment,
    path: &std::path::Path,
    bucket: Option<Arc<Mutex<TokenBucket>>>,
) -> Result<String, Failure> {
    let url = format!(
        "{base}/api/v1/archive/uploads/{device}/{}/{}",
        segment.hearing_id, segment.file
    );
    let unreachable = |e: reqwest::Error| Failure::Unreachable(format!("{url}: {e}"));
    let head = client
        .head(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(unreachable)?;
    if let Some(sha) = header(&head, "archive-sha256") {
        return Ok(sha);
    }
    let offset = match head.status().as_u16() {
        200 | 204 => header(&head, "upload-offset")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0),
        404 | 409 => {
            return Err(Failure::NotYet(format!(
                "{url}: the archive does not know the segment yet ({})",
                head.status()
            )));
        }
        s => return Err(Failure::Refused(format!("{url}: HEAD answered {s}"))),
    };
    let offset = offset.min(segment.bytes);
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Failure::Refused(format!("{}: {e}", path.display())))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| Failure::Refused(format!("{}: {e}", path.display())))?;
    let remaining = segment.bytes - offset;
    let body = futures::stream::unfold(
        (file, remaining, bucket),
        |(mut file, left, bucket)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0u8; PIECE.min(left as usize)];
            let n = match file.read(&mut buf).await {
                Ok(0) => {
                    return Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "segment file shorter than its index entry",
                        )),
                        (file, 0, bucket),
                    ));
                }
                Ok(n) => n,
                Err(e) => return Some((Err(e), (file, 0, bucket))),
            };
            buf.truncate(n);
            if let Some(b) = &bucket {
                let wait = b.lock().await.take(gavel_record::mono(), n as u64);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            Some((Ok(bytes::Bytes::from(buf)), (file, left - n as u64, bucket)))
        },
    );
    let response = client
        .put(&url)
        .header("upload-offset", offset.to_string())
        .header("upload-length", segment.bytes.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    match status {
        200 | 201 => {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Failure::Refused(format!("{url}: answer is not JSON: {e}")))?;
            v["sha256"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Failure::Refused(format!("{url}: answer has no sha256: {text}")))
        }
        422 => Err(Failure::HashMismatch(format!("{url}: {text}"))),
        404 | 409 => Err(Failure::NotYet(format!("{url}: {status} {text}"))),
        _ => Err(Failure::Refused(format!("{url}: {status} {text}"))),
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
