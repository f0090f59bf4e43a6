//! # gavel-devices
//!
//! Courtroom hardware, one module a device family:
//!
//! - [`onvif`]: IP cameras: WS-Discovery, profiles and stream URIs into the device
//!   configuration, clock check, PTZ presets (over the `oxvif` client).
//! - [`serial`]: the framed serial link every RS-232 driver runs on: timeouts, garbage
//!   skipping and resynchronisation, reopening a port that disappears.
//! - [`visca`]: VISCA PTZ heads; [`escpos`]: receipt printers (kiosk queue tickets);
//!   [`lamp`]: the "recording in progress" lamp on GPIO or a serial sign controller.
//! - [`sensor`]: machine-room temperature and humidity (SHT3x on I2C).
//! - [`follow`]: speaker-follow, a sans-I/O core that turns per-seat voice activity into
//!   camera preset moves.
//!
//! Codecs and cores are pure and tested alone; the shells (serial ports, HTTP, I2C,
//! GPIO) are thin. Serial, I2C and GPIO calls block: run them on a dedicated thread or
//! `spawn_blocking`.

pub mod escpos;
pub mod follow;
pub mod lamp;
pub mod onvif;
pub mod sensor;
pub mod serial;
pub mod visca;
