//! One interface over the two ways a device installs an update, so the agent's update
//! flow (verify, write the inactive slot, switch, reboot, health gate, commit or roll back)
//! does not care which one runs:
//!
//! | backend | used on | verifies | writes slots, switches boot |
//! |---|---|---|---|
//! | [`crate::install::Installer`] (`slots`) | simulated fleet, tests, devices whose slots are plain files | `gavel-ota` bundles, ed25519 | itself, through a [`crate::bootchooser::Bootloader`] |
//! | [`crate::rauc::RaucInstaller`] (`rauc`) | image-based devices (issue 12) | RAUC (`.raucb`, CMS/X.509) | RAUC and its bootloader backend |
//!
//! Both keep the same journal (`install.json`, [`Journal`]) with the same stages, so the
//! same outcomes are reported the same way:
//!
//! ```text
//!  check (writes nothing) ─► Writing ─► Activated ─┬─ reboot ─► PendingCommit ─► Committed
//!                                                  │                      └─────► RolledBack{reason}
//!                                                  └─ restart, no reboot ─► PendingReboot
//! ```
//!
//! Design: every method is blocking (it may run `rauc` or fsync); callers run it on a
//! blocking thread.

use std::path::Path;

use crate::bootchooser::Bootloader;
use crate::install::{
    BootOutcome, InstallError, InstallOptions, InstallReport, Installer, Journal,
};
use crate::manifest::Version;
use crate::slot::SlotName;

/// The slot running now and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The slot the bootloader started.
    pub slot: SlotName,
    /// Its version, when the slot records one (a factory-installed slot may not).
    pub version: Option<Version>,
}

/// The update operations the agent drives, whichever installer carries them out.
pub trait UpdateBackend: Send {
    /// The backend's name in logs and reports (`slots`, `rauc`).
    fn name(&self) -> &'static str;

    /// The file name the downloaded bundle is kept under (its extension matters to RAUC).
    fn bundle_file_name(&self) -> &'static str;

    /// The slot running now and its version.
    fn running(&self) -> Result<Running, InstallError>;

    /// Every check an install makes (signature, compatibility, version), writing nothing.
    /// Returns the bundle's version.
    fn check(&self, bundle: &Path, opts: &InstallOptions) -> Result<Version, InstallError>;

    /// Checks, then writes the inactive slot and makes it the boot target (unconfirmed).
    /// The caller reboots when the room allows it.
    fn install(
        &mut self,
        bundle: &Path,
        opts: &InstallOptions,
    ) -> Result<InstallReport, InstallError>;

    /// Called once after every start of the agent: reconciles the journal with the boot
    /// state and says what happened (pending commit, pending reboot, rolled back, ...).
    fn after_boot(&mut self) -> Result<BootOutcome, InstallError>;

    /// Marks the booted, new slot good (the health gate passed).
    fn commit(&mut self) -> Result<Journal, InstallError>;

    /// Gives up the booted, new slot; the next boot starts the other one.
    fn rollback(&mut self, reason: &str) -> Result<Journal, InstallError>;

    /// The journal, if an install was ever started.
    fn journal(&self) -> Result<Option<Journal>, InstallError>;
}

impl<B: Bootloader + Send> UpdateBackend for Installer<B> {
    fn name(&self) -> &'static str {
        "slots"
    }

    fn bundle_file_name(&self) -> &'static str {
        "download.gota"
    }

    fn running(&self) -> Result<Running, InstallError> {
        let slot = self.active_slot()?;
        Ok(Running {
            slot,
            version: self.slots.info(slot)?.version,
        })
    }

    fn check(&self, bundle: &Path, opts: &InstallOptions) -> Result<Version, InstallError> {
        Installer::check(self, bundle, opts).map(|m| m.version)
    }

    fn install(
        &mut self,
        bundle: &Path,
        opts: &InstallOptions,
    ) -> Result<InstallReport, InstallError> {
        Installer::install(self, bundle, opts, &mut |_| {})
    }

    fn after_boot(&mut self) -> Result<BootOutcome, InstallError> {
        Installer::after_boot(self)
    }

    fn commit(&mut self) -> Result<Journal, InstallError> {
        Installer::commit(self)
    }

    fn rollback(&mut self, reason: &str) -> Result<Journal, InstallError> {
        Installer::rollback(self, reason)
    }

    fn journal(&self) -> Result<Option<Journal>, InstallError> {
        Installer::journal(self)
    }
}
