//! The device's bundle downloader: HTTP Range resume and a per-device bandwidth cap.
//!
//! A partial download is a file of the bytes received so far; after a restart (or power
//! cut, or network drop) the download continues from its length with
//! `Range: bytes=N-`. A server that ignores the range (200 instead of 206) restarts it
//! from zero. The cap is a [`TokenBucket`] paced with `tokio::time::sleep`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::throttle::TokenBucket;

/// Why a download stopped.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The request failed (network down, server gone).
    #[error("download of {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The server answered with an unexpected status.
    #[error("download of {url}: server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// Writing the partial file failed.
    #[error("download file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// More bytes than expected arrived.
    #[error("download of {url}: more than the expected {expected} bytes")]
    TooLong {
        /// The URL.
        url: String,
        /// Expected size.
        expected: u64,
    },
    /// The caller stopped it (a hearing started, shutdown).
    #[error("download stopped after {0} bytes")]
    Stopped(u64),
}

/// What a finished download did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes present before this call (0 for a fresh start).
    pub resumed_from: u64,
    /// Bytes received by this call.
    pub received: u64,
    /// File size at the end.
    pub size: u64,
}

/// Keep going, or stop now (checked after every chunk).
pub trait Control {
    /// Called with the bytes present so far; `false` stops the download.
    fn proceed(&mut self, done: u64) -> bool;
}

impl<F: FnMut(u64) -> bool> Control for F {
    fn proceed(&mut self, done: u64) -> bool {
        self(done)
    }
}

/// Bytes paced and written between two checks of the caller's [`Control`].
const PIECE: usize = 16 * 1024;

/// Downloads `url` into `dest` until it holds `size` bytes, resuming what is there,
/// at most `cap_bits_per_s` (0: uncapped).
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    size: u64,
    cap_bits_per_s: u64,
    control: &mut (dyn Control + Send),
) -> Result<Downloaded, DownloadError> {
    let io = |source| DownloadError::Io {
        path: dest.to_owned(),
        source,
    };
    let mut have = match tokio::fs::metadata(dest).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(e)),
    };
    if have > size {
        // Not ours or a different bundle under the same name: start over.
        tokio::fs::remove_file(dest).await.map_err(io)?;
        have = 0;
    }
    let resumed_from = have;
    if have == size {
        return Ok(Downloaded {
            resumed_from,
            received: 0,
            size,
        });
    }
    let http = |source| DownloadError::Http {
        url: url.to_owned(),
        source,
    };
    let mut req = client.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().await.map_err(http)?;
    let status = resp.status().as_u16();
    let append = match status {
        206 => true,
        200 => {
            have = 0;
            false
        }
        _ => {
            return Err(DownloadError::Status {
                url: url.to_owned(),
                status,
            });
        }
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(dest)
        .await
        .map_err(io)?;
    let start = tokio::time::Instant::now();
    let mut bucket =
        (cap_bits_per_s > 0).then(|| TokenBucket::from_bits_per_s(cap_bits_per_s, Duration::ZERO));
    let mut received = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        if have + chunk.len() as u64 > size {
            return Err(DownloadError::TooLong {
                url: url.to_owned(),
                expected: size,
            });
        }
        // Design: paced and checked in small pieces, so a stop (a hearing started) takes
        // effect within one piece even when the transport hands over large chunks.
        for piece in chunk.chunks(PIECE) {
            if let Some(b) = bucket.as_mut() {
                let wait = b.take(start.elapsed(), piece.len() as u64);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            file.write_all(piece).await.map_err(io)?;
            have += piece.len() as u64;
            received += piece.len() as u64;
            if !control.proceed(have) {
                file.flush().await.map_err(io)?;
                file.sync_all().await.map_err(io)?;
                return Err(DownloadError::Stopped(have));
            }
        }
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    if have != size {
        // The connection ended early: the caller retries and resumes.
        return Err(DownloadError::Stopped(have));
    }
    Ok(Downloaded {
        resumed_from,
        received,
        size,
    })
}
