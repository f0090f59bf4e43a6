//! # gavel-ota
//!
//! Over-the-air updates for Gavel devices, modelled on RAUC's concepts, one module each:
//!
//! | module | RAUC concept | what it owns |
//! |---|---|---|
//! | [`manifest`] | manifest | version, compatible profiles, minimum version, sizes, SHA-256, delta base |
//! | [`signature`] | signature | ed25519 keys and detached signatures over the manifest bytes |
//! | [`bundle`] | bundle | the container: header, manifest, signature, payload; verification |
//! | [`delta`] | adaptive/delta update | block-hash delta against a known base, zstd-compressed |
//! | [`slot`] | slot | A/B slot names and file-backed slot storage |
//! | [`bootchooser`] | bootchooser | the [`bootchooser::Bootloader`] interface and a file-backed stub |
//! | [`install`] | installer | verify everything, then write the inactive slot, switch, commit or roll back |
//! | [`after_boot`] | — | what the install journal means after a boot, for every backend (sans-I/O) |
//! | [`health`] | mark-good / mark-bad | the post-boot health gate with a deadline (sans-I/O) |
//! | [`backend`] | — | [`backend::UpdateBackend`]: one interface over the file-slot installer and RAUC |
//! | [`rauc`] | — | a thin `rauc` driver and [`rauc::RaucInstaller`], the backend for image-based devices |
//! | `download` | — | resumable (HTTP Range), rate-capped bundle download (feature `download`) |
//! | [`throttle`] | — | token bucket for the per-device bandwidth cap (sans-I/O) |
//! | [`updater`] | — | the device update flow around hearings (sans-I/O) |
//! | [`window`] | — | hearing awareness: room busy intervals and the guard window |
//!
//! Design: nothing is written to any slot until the bundle's signature, manifest,
//! compatibility, version and payload (including a dry run of a delta) have been checked.

pub mod after_boot;
pub mod backend;
pub mod bootchooser;
pub mod bundle;
pub mod delta;
#[cfg(feature = "download")]
pub mod download;
pub mod health;
pub mod install;
pub mod manifest;
pub mod rauc;
#[cfg(feature = "test-rig")]
pub mod rauc_rig;
pub mod signature;
pub mod slot;
pub mod throttle;
pub mod updater;
pub mod window;

mod fsutil;

pub use backend::{Running, UpdateBackend};
pub use bundle::{Bundle, BundleError};
pub use install::{InstallError, Installer};
pub use manifest::{Manifest, Version};
