//! # gavel-transcribe
//!
//! Live courtroom transcription on the device (issue 6): the recorder's seat microphones
//! arrive through a bounded [`tap`]; a sans-I/O streaming [`core`] finds each seat's
//! utterances with voice activity detection ([`vad`]), asks for partial and final decodes,
//! and stabilises partial lines by local agreement ([`stabilise`]); a shell thread
//! ([`worker`]) runs whisper.cpp ([`engine`]) and hands seat-labelled lines, timed on the
//! hearing's recording timeline, to the agent, which publishes them through the durable
//! outbox. [`corpus`] speaks known court sentences with espeak-ng for the accuracy tests
//! and benchmarks. See `docs/transcription.md`.

pub mod core;
pub mod corpus;
pub mod engine;
pub mod stabilise;
pub mod tap;
pub mod vad;
pub mod vocabulary;
pub mod worker;

pub use crate::core::{
    Core, CoreSettings, Decoded, Hypothesis, Input, Job, Line, Output, RATE, Stage,
};
pub use engine::{Engine, WhisperEngine, WhisperOptions};
pub use tap::{Read, Tap, TapStats};
pub use vad::VadSettings;
pub use vocabulary::Vocabulary;
pub use worker::{Event, SharedEngine, Stats, Transcriber, WorkerSettings, shared};

/// What went wrong in transcription.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// The model file is missing, unreadable or unsuitable.
    #[error("model: {0}")]
    Model(String),
    /// Decoding failed.
    #[error("whisper: {0}")]
    Engine(String),
    /// The court's vocabulary file is missing or wrong.
    #[error("vocabulary: {0}")]
    Vocabulary(String),
    /// The test corpus could not be made.
    #[error("corpus: {0}")]
    Corpus(String),
}
