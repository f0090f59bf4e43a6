//! # gavel-patrol
//!
//! Hearing patrol on the device (庭审智能巡查): sans-I/O analyzers that read decoded
//! low-resolution frames (1-2 per second) and per-channel audio blocks and report
//! findings, each debounced with onset and clear hold times from the profile's
//! `[capabilities.patrol]` section.
//!
//! - [`frame`]: frames and the measurements the video analyzers share.
//! - [`video`]: blurred, too dark, signal lost, frozen, occluded, scene changed.
//! - [`audio`]: dead microphone, noise interference, clipping, silent room.
//! - [`presence`]: who sits in each seat's zone (faces from a detector), conduct findings.
//! - [`debounce`]: onset and clear hold times.
//! - `detect` (feature `faces`): MTCNN face detection through ONNX Runtime for presence.
//! - [`core`]: [`Patrol`], the one state machine the agent drives:
//!   `handle(now, input) -> Vec<Output>`; disturbance (loud audio with large motion).
//! - [`snapshot`]: JPEG snapshots of frames (findings, console tiles).
//! - `capture` (feature `capture`): GStreamer decode branches that feed the core.
//! - [`synth`]: synthetic courtroom scenes and speech-like audio for tests and benches.

pub mod audio;
#[cfg(feature = "capture")]
pub mod capture;
pub mod core;
pub mod debounce;
#[cfg(feature = "faces")]
pub mod detect;
pub mod frame;
pub mod presence;
pub mod snapshot;
pub mod synth;
pub mod video;

pub use audio::{AudioBlock, AudioSet};
pub use core::{Finding, Input, Output, Patrol, Session, Settings};
pub use debounce::Edge;
pub use frame::Frame;
pub use video::VideoSet;

use gavel_protocol::FindingKind;

/// An edge of one analyzer's condition, before the core names it a finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: FindingKind,
    /// The seat concerned (audio channel, presence zone).
    pub seat: Option<String>,
    pub edge: Edge,
    /// Measured figures, for people.
    pub detail: String,
}
