//! The installer: verify everything, then write the inactive slot, switch the boot slot,
//! and after the reboot commit or roll back.
//!
//! ```text
//!  check (no writes) ─► Writing ─► Activated ──reboot──► pending ──healthy──► Committed
//!        │ refused         │ power cut   │ power cut          │ deadline / boot fails
//!        ▼                 ▼             ▼                    ▼
//!   error, nothing    Interrupted    boots the new,      RolledBack{reason}
//!   written           (old slot)     verified slot
//! ```
//!
//! Design: the journal (`install.json`) and the boot state are each written atomically;
//! the target slot is unbootable from before its first byte is written until its image
//! has been synced and read back with the right hash. Every power cut therefore leaves a
//! bootable, intact slot, and the journal tells what happened.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::after_boot::{self, BootFacts, Step};
use crate::bootchooser::{BootError, Bootloader, DEFAULT_ATTEMPTS};
use crate::bundle::{self, Bundle, BundleError};
use crate::delta::{self, DeltaError};
use crate::fsutil;
use crate::manifest::{Encoding, Manifest, Version};
use crate::signature::Keyring;
use crate::slot::{FileSlots, SlotError, SlotInfo, SlotName};

/// Why an install was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The bundle failed a container, signature, manifest or payload check.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The bundle is not built for this device's profile.
    #[error("bundle is for profiles [{}], this device is `{device}`", compatible.join(", "))]
    IncompatibleProfile {
        /// This device's profile.
        device: String,
        /// The bundle's compatible list.
        compatible: Vec<String>,
    },
    /// The bundle is not newer than what runs, and the install was not forced.
    #[error(
        "bundle version {offered} is not newer than the installed {installed}; downgrades need --force"
    )]
    Downgrade {
        /// Running version.
        installed: Version,
        /// Bundle version.
        offered: Version,
    },
    /// The device runs a version older than the bundle's minimum.
    #[error("bundle needs at least version {min} installed, the device runs {installed}")]
    BelowMinimum {
        /// Running version.
        installed: Version,
        /// The manifest's minimum.
        min: Version,
    },
    /// A delta bundle whose base is not the active slot's image.
    #[error("delta applies to base {expected}, the active slot holds {actual}")]
    DeltaBase {
        /// The manifest's base hash.
        expected: String,
        /// The active slot's hash.
        actual: String,
    },
    /// A delta that does not produce the manifest's image.
    #[error("corrupt delta: {0}")]
    CorruptDelta(String),
    /// The image read back from the slot does not match the manifest.
    #[error("slot {slot} holds sha256 {actual} after writing, expected {expected}")]
    ImageHash {
        /// The target slot.
        slot: SlotName,
        /// From the manifest.
        expected: String,
        /// Read back.
        actual: String,
    },
    /// Slot storage failed.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The bootloader failed.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The journal could not be written.
    #[error("install journal {path}: {source}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// There is no install waiting for commit.
    #[error("nothing to commit: {0}")]
    NothingPending(String),
    /// RAUC refused or failed (its own words are in the error).
    #[error(transparent)]
    Rauc(#[from] crate::rauc::RaucError),
    /// The bundle's version is not `MAJOR.MINOR.PATCH` (RAUC manifests are free text).
    #[error("bundle version `{0}` is not MAJOR.MINOR.PATCH")]
    BadVersion(String),
}

/// Options of one install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Allow a version that is not newer than the running one.
    pub force: bool,
    /// Boot attempts the new slot gets before the bootloader falls back.
    pub attempts: u32,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            force: false,
            attempts: DEFAULT_ATTEMPTS,
        }
    }
}

/// Where an install stands, persisted in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// The target slot is being written.
    Writing,
    /// Written, verified and primary; waiting for the reboot and health gate.
    Activated,
    /// The new slot booted and was healthy.
    Committed,
    /// The new slot was given up.
    RolledBack {
        /// Why.
        reason: String,
    },
    /// Power was lost (or the installer killed) before the slot was activated.
    Interrupted,
}

/// The install journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The stage reached.
    #[serde(flatten)]
    pub stage: Stage,
    /// Version being installed.
    pub version: Version,
    /// Version that ran before.
    pub from: Option<Version>,
    /// The slot being written.
    pub slot: SlotName,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The slot written and activated.
    pub slot: SlotName,
    /// The version installed.
    pub version: Version,
    /// The version that ran before.
    pub from: Option<Version>,
    /// Image bytes written.
    pub written: u64,
}

/// What the installer found after a boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// No install in flight.
    Idle,
    /// Booted the new slot; run the health gate, then commit or roll back.
    PendingCommit {
        /// The version on trial.
        version: Version,
    },
    /// The new slot is written and is the boot target, but the device has not rebooted
    /// into it yet (the agent restarted in between): reboot when the room allows.
    PendingReboot {
        /// The version waiting.
        version: Version,
        /// The slot it was written to.
        slot: SlotName,
    },
    /// An install was cut off before activation; the old slot still runs.
    Interrupted(Journal),
    /// The bootloader fell back: the new slot did not come up within its attempts.
    RolledBack(Journal),
    /// Nothing new since the last report (the journal's final stage).
    Settled(Journal),
}

/// The installer for file-backed (or block-device) slots and any bootloader backend.
pub struct Installer<B: Bootloader> {
    /// The slots.
    pub slots: FileSlots,
    /// The bootloader backend.
    pub boot: B,
    keyring: Keyring,
    profile: String,
    journal_path: PathBuf,
}

fn sha_writer() -> HashSink {
    HashSink(Sha256::new(), 0)
}

struct HashSink(Sha256, u64);

impl Write for HashSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        self.1 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Calls `progress` with the bytes written so far.
struct Progress<'a, W: Write> {
    inner: W,
    done: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<W: Write> Write for Progress<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.done += n as u64;
        (self.progress)(self.done);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<B: Bootloader> Installer<B> {
    /// An installer for a device of `profile` trusting `keyring`, keeping its journal in
    /// `state_dir`.
    pub fn new(
        slots: FileSlots,
        boot: B,
        keyring: Keyring,
        profile: &str,
        state_dir: &Path,
    ) -> Self {
        Self {
            slots,
            boot,
            keyring,
            profile: profile.to_owned(),
            journal_path: state_dir.join("install.json"),
        }
    }

    /// The slot running now (the last one booted, else the primary).
    pub fn active_slot(&self) -> Result<SlotName, InstallError> {
        let s = self.boot.load()?;
        Ok(s.booted.unwrap_or(s.primary))
    }

    /// The version running now.
    pub fn installed_version(&self) -> Result<Option<Version>, InstallError> {
        Ok(self.slots.info(self.active_slot()?)?.version)
    }

    /// The journal, if any install was ever started.
    pub fn journal(&self) -> Result<Option<Journal>, InstallError> {
        read_journal(&self.journal_path)
    }

    fn set_journal(&self, j: &Journal) -> Result<(), InstallError> {
        write_journal(&self.journal_path, j)
    }

    /// Every check an install makes, without writing anything anywhere.
    pub fn check(
        &self,
        bundle_path: &Path,
        opts: &InstallOptions,
    ) -> Result<Manifest, InstallError> {
        let b = Bundle::open(bundle_path)?;
        let m = b.authenticate(&self.keyring)?;
        if !m.compatible.iter().any(|p| p == &self.profile) {
            return Err(InstallError::IncompatibleProfile {
                device: self.profile.clone(),
                compatible: m.compatible.clone(),
            });
        }
        let active = self.active_slot()?;
        let info = self.slots.info(active)?;
        if let Some(installed) = info.version {
            if m.version <= installed && !opts.force {
                return Err(InstallError::Downgrade {
                    installed,
                    offered: m.version,
                });
            }
            if let Some(min) = m.min_version
                && installed < min
            {
                return Err(InstallError::BelowMinimum { installed, min });
            }
        }
        b.check_payload(&m)?;
        if m.payload.encoding == Encoding::Delta {
            let (base, _) = self.delta_base(&m, active, &info)?;
            let mut sink = sha_writer();
            delta::apply(&base, &mut b.payload_reader()?, &mut sink)
                .map_err(|e| InstallError::CorruptDelta(e.to_string()))?;
            let actual = hex::encode(sink.0.finalize());
            if actual != m.image.sha256 || sink.1 != m.image.size {
                return Err(InstallError::CorruptDelta(format!(
                    "produces {} bytes with sha256 {actual}; the manifest says {} bytes, {}",
                    sink.1, m.image.size, m.image.sha256
                )));
            }
        }
        Ok(m)
    }

    fn delta_base(
        &self,
        m: &Manifest,
        active: SlotName,
        info: &SlotInfo,
    ) -> Result<(Vec<u8>, String), InstallError> {
        let want = m
            .delta_base
            .as_ref()
            .map(|d| d.sha256.clone())
            .unwrap_or_default();
        let recorded = info.sha256.clone().unwrap_or_default();
        if recorded != want {
            return Err(InstallError::DeltaBase {
                expected: want,
                actual: recorded,
            });
        }
        let base = self.slots.read_image(active, info.size)?;
        let actual = bundle::sha256(&base);
        if actual != want {
            return Err(InstallError::DeltaBase {
                expected: want,
                actual,
            });
        }
        Ok((base, actual))
    }

    /// Installs a bundle into the inactive slot and makes it primary (unconfirmed). The
    /// caller reboots when the room allows it. `progress` gets image bytes written.
    pub fn install(
        &mut self,
        bundle_path: &Path,
        opts: &InstallOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<InstallReport, InstallError> {
        let m = self.check(bundle_path, opts)?;
        let b = Bundle::open(bundle_path)?;
        let active = self.active_slot()?;
        let target = active.other();
        let from = self.slots.info(active)?.version;
        tracing::info!(version = %m.version, slot = %target, "installing");

        // Design: unbootable first, then journal, so a `Writing` journal with a bootable
        // target can only mean the target was activated.
        self.boot.update(&mut |s| s.mark_bad(target))?;
        self.set_journal(&Journal {
            stage: Stage::Writing,
            version: m.version,
            from,
            slot: target,
        })?;
        self.slots.set_info(target, &SlotInfo::default())?;

        let w = self.slots.writer(target)?;
        let mut pw = Progress {
            inner: w,
            done: 0,
            progress,
        };
        let slot_err = |source: io::Error| SlotError {
            slot: target,
            path: self.slots.image_path(target).to_owned(),
            source,
        };
        match m.payload.encoding {
            Encoding::Full => {
                io::copy(&mut b.payload_reader()?, &mut pw).map_err(slot_err)?;
            }
            Encoding::Delta => {
                let info = self.slots.info(active)?;
                let (base, _) = self.delta_base(&m, active, &info)?;
                delta::apply(&base, &mut b.payload_reader()?, &mut pw).map_err(|e| match e {
                    DeltaError::Io(io) => InstallError::Slot(slot_err(io)),
                    other => InstallError::CorruptDelta(other.to_string()),
                })?;
            }
        }
        let (_, written) = pw.inner.finish().map_err(slot_err)?;
        let actual = self.slots.hash_image(target, m.image.size)?;
        if actual != m.image.sha256 {
            return Err(InstallError::ImageHash {
                slot: target,
                expected: m.image.sha256.clone(),
                actual,
            });
        }
        self.slots.set_info(
            target,
            &SlotInfo {
                version: Some(m.version),
                sha256: Some(actual),
                size: m.image.size,
            },
        )?;
        self.boot
            .update(&mut |s| s.activate(target, opts.attempts.max(1)))?;
        self.set_journal(&Journal {
            stage: Stage::Activated,
            version: m.version,
            from,
            slot: target,
        })?;
        tracing::info!(version = %m.version, slot = %target, "installed; reboot to try it");
        Ok(InstallReport {
            slot: target,
            version: m.version,
            from,
            written,
        })
    }

    /// Called once after every boot (after the bootloader chose a slot): reads the
    /// journal and the boot state and says what happened. Turns a cut-off install into
    /// `Interrupted` and a bootloader fallback into `RolledBack` in the journal.
    pub fn after_boot(&mut self) -> Result<BootOutcome, InstallError> {
        let Some(j) = self.journal()? else {
            return Ok(BootOutcome::Idle);
        };
        let state = self.boot.load()?;
        let target = state.slot(j.slot);
        let facts = BootFacts {
            booted: state.booted.unwrap_or(state.primary),
            // The slot is bootable only once fully written and verified.
            written: target.bootable,
            next: state.primary == j.slot && target.bootable,
            good: Some(target.good),
        };
        let judgement = after_boot::judge(j, facts);
        for step in judgement.steps {
            match step {
                Step::Journal(j) => self.set_journal(&j)?,
                Step::MarkBad(slot) => {
                    self.boot.update(&mut |s| s.mark_bad(slot))?;
                }
            }
        }
        Ok(judgement.outcome)
    }

    /// Marks the booted slot good (the health gate passed).
    pub fn commit(&mut self) -> Result<Journal, InstallError> {
        let j = self
            .journal()?
            .filter(|j| j.stage == Stage::Activated)
            .ok_or_else(|| InstallError::NothingPending("no activated install".into()))?;
        let booted = self.active_slot()?;
        if booted != j.slot {
            return Err(InstallError::NothingPending(format!(
                "running slot {booted}, the install went to {}",
                j.slot
            )));
        }
        self.boot.update(&mut |s| s.mark_good(booted))?;
        let j = Journal {
            stage: Stage::Committed,
            ..j
        };
        self.set_journal(&j)?;
        tracing::info!(version = %j.version, slot = %booted, "committed");
        Ok(j)
    }

    /// Gives up the booted, unconfirmed slot: marks it bad so the next boot starts the
    /// other one. The caller reboots.
    pub fn rollback(&mut self, reason: &str) -> Result<Journal, InstallError> {
        let j = self
            .journal()?
            .filter(|j| j.stage == Stage::Activated)
            .ok_or_else(|| InstallError::NothingPending("no activated install".into()))?;
        self.boot.update(&mut |s| s.mark_bad(j.slot))?;
        let j = Journal {
            stage: Stage::RolledBack {
                reason: reason.to_owned(),
            },
            ..j
        };
        self.set_journal(&j)?;
        tracing::warn!(version = %j.version, reason, "rolled back");
        Ok(j)
    }
}

/// Reads an install journal; `None` when there is none (or it cannot be understood).
pub(crate) fn read_journal(path: &Path) -> Result<Option<Journal>, InstallError> {
    match fs::read(path) {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InstallError::Journal {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replaces an install journal atomically.
pub(crate) fn write_journal(path: &Path, j: &Journal) -> Result<(), InstallError> {
    let bytes = serde_json::to_vec_pretty(j).unwrap_or_default();
    fsutil::write_atomic(path, &bytes).map_err(|source| InstallError::Journal {
        path: path.to_owned(),
        source,
    })
}

/// Reads a whole file, for callers that hold small images in memory.
pub fn read_all(path: &Path) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    fs::File::open(path)?.read_to_end(&mut v)?;
    Ok(v)
}
