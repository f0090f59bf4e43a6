//! # gavel-record
//!
//! The recording engine. Every source of a hearing is read by its own GStreamer pipeline
//! and remuxed (never re-encoded) into crash-safe MPEG-TS segments; every closed segment
//! is hashed into the hearing's chain in the device store; the hearing's manifest is
//! signed with the device key after every segment; a sans-I/O [`core::Core`] decides when
//! pipelines start, stop and restart; every transition and gap is an event on the durable
//! outbox.
//!
//! - [`core`]: the recording state machine (no I/O, injected time).
//! - [`pipeline`]: one GStreamer pipeline per source.
//! - [`index`]: segment index, hash chain, crash recovery, manifests.
//! - [`recorder`]: the actor that wires them together, and its handle.
//! - [`retention`]: storage policy (watermarks, eviction of archived segments, disk-full
//!   forecast), sans I/O; driven by the agent's archive task.
//! - [`upload`]: the archive upload scheduler (next segment, retries, back-off, verified
//!   acknowledgements), sans I/O; driven by the agent's archive task.
//! - [`ts`]: timestamps of a (truncated) MPEG-TS file.

pub mod core;
pub mod index;
pub mod pipeline;
pub mod recorder;
pub mod retention;
pub mod ts;
pub mod upload;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use pipeline::{
    AudioLevels, Meter, PcmTap, SourceConfig, SourceInput, TapData, VideoCodec, rtsp_client,
};
pub use recorder::{RecorderHandle, RecorderSettings, spawn};

/// Why a recording operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Another hearing is being recorded.
    #[error("hearing {0} is being recorded")]
    HearingInProgress(String),
    /// The hearing is not the one being recorded.
    #[error("hearing {0} is not being recorded")]
    NotRecording(String),
    /// The hearing was recorded and stopped; a stopped hearing is never appended to.
    #[error("hearing {0} was already recorded and stopped")]
    HearingEnded(String),
    #[error("bad hearing id {0}")]
    BadHearingId(String),
    #[error("pipeline: {0}")]
    Pipeline(String),
    #[error("segment index: {0}")]
    Index(String),
    #[error(transparent)]
    Store(#[from] gavel_store::StoreError),
    #[error(transparent)]
    Evidence(#[from] gavel_evidence::EvidenceError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The recorder task has ended.
    #[error("the recorder has stopped")]
    Closed,
}

/// Monotonic time: the recorder's time base.
///
/// Design: counted from 2^32 s (136 years) at the first call, so a hearing resumed after a
/// restart can place its start, hours or days before this process began, on the same
/// scale without going below zero.
pub fn mono() -> Duration {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    Duration::from_secs(1 << 32) + EPOCH.get_or_init(Instant::now).elapsed()
}
