//! # gavel-kiosk
//!
//! The service-hall kiosk (诉讼服务大厅): a touchscreen page served by the agent on a
//! local address, in Chinese and English, to take a queue ticket (printed on the ESC/POS
//! printer) and to look up a case by its number and check code; and the spoken
//! announcement of called numbers (`speech`).
//!
//! - [`tickets`]: the sans-I/O ticket book (numbers issued with or without the
//!   controller, never repeated).
//! - [`limit`]: the sans-I/O per-client and overall rate limiter.
//! - [`server`]: the thin async shell: HTTP routes, store, printer, outbox, controller.
//! - [`speech`]: espeak-ng through GStreamer.
//!
//! Privacy: the kiosk keeps nothing about a look-up. Case numbers and check codes are
//! passed to the controller and the answer to the screen; neither is stored or logged,
//! only counted ([`server::Stats`]).

pub mod limit;
pub mod server;
pub mod speech;
pub mod tickets;

pub use server::{KioskParts, KioskSettings, PrinterPort, Stats, serve};
