//! # gavel-wall
//!
//! The command-centre video wall (`command-wall` profile): composes live camera
//! sub-streams into one output with GStreamer's `compositor`, in the layouts `1`, `2x2`,
//! `3x3` and `1+5`, with a label per tile (court, room, case). The controller pushes the
//! configuration (layout, sources, focus room) retained on the wall's `wall` topic.
//!
//! - [`layout`]: pure geometry, layout -> rectangles.
//! - [`core`]: the sans-I/O decision core: which source in which tile, and per-source
//!   supervision (live, connecting, lost with backoff).
//! - [`pipeline`]: the GStreamer shell: one pipeline per source, one compositor pipeline,
//!   a display, frame-file or no output.

pub mod core;
pub mod layout;
pub mod pipeline;

pub use pipeline::{Sink, WallHandle, WallSettings, spawn};

/// Why the wall cannot run.
#[derive(Debug, thiserror::Error)]
pub enum WallError {
    #[error("wall pipeline: {0}")]
    Pipeline(String),
    #[error("the wall task has stopped")]
    Stopped,
}
