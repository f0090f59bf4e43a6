//! The bootchooser: which slot the bootloader starts, how many tries an unconfirmed slot
//! gets, and which slots are good. Backends (GRUB environment, U-Boot environment, EFI,
//! or the file-backed stub used by tests and the simulated fleet) implement
//! [`Bootloader`]'s `load` and `store`; the decisions live in [`BootState`] and are shared.
//!
//! Rules (as barebox's bootchooser and RAUC's `mark-good`/`mark-bad`):
//! - At boot, try the primary slot, then the other. A slot is chosen if it is bootable and
//!   either good (committed) or has attempts left; choosing an unconfirmed slot spends one
//!   attempt, persisted before it starts.
//! - Installing marks the target unbootable before writing it, and activates it (primary,
//!   unconfirmed, N attempts) only after its image is written, synced and verified.
//! - Commit marks the booted slot good; rollback marks it bad and makes the other primary.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::slot::SlotName;

/// Boot attempts an unconfirmed slot gets before the bootloader falls back.
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// The bootloader's view of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotBoot {
    /// May be started at all.
    pub bootable: bool,
    /// Committed: known to run healthy.
    pub good: bool,
    /// Tries left while not good.
    pub attempts_left: u32,
}

/// Everything the bootloader keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    /// The slot tried first.
    pub primary: SlotName,
    /// Slot A.
    pub a: SlotBoot,
    /// Slot B.
    pub b: SlotBoot,
    /// The slot chosen at the last boot.
    pub booted: Option<SlotName>,
    /// Boots counted by the chooser.
    pub boots: u64,
}

impl BootState {
    /// Factory state: `good` is committed and primary; the other slot is empty.
    pub fn factory(good: SlotName) -> Self {
        let ok = SlotBoot {
            bootable: true,
            good: true,
            attempts_left: DEFAULT_ATTEMPTS,
        };
        let empty = SlotBoot {
            bootable: false,
            good: false,
            attempts_left: 0,
        };
        let (a, b) = match good {
            SlotName::A => (ok, empty),
            SlotName::B => (empty, ok),
        };
        Self {
            primary: good,
            a,
            b,
            booted: None,
            boots: 0,
        }
    }

    /// One slot's state.
    pub fn slot(&self, s: SlotName) -> &SlotBoot {
        match s {
            SlotName::A => &self.a,
            SlotName::B => &self.b,
        }
    }

    fn slot_mut(&mut self, s: SlotName) -> &mut SlotBoot {
        match s {
            SlotName::A => &mut self.a,
            SlotName::B => &mut self.b,
        }
    }

    /// Chooses the slot to start, spending an attempt on an unconfirmed one.
    pub fn choose(&mut self) -> Option<SlotName> {
        for s in [self.primary, self.primary.other()] {
            let sb = self.slot_mut(s);
            if !sb.bootable {
                continue;
            }
            if sb.good {
                self.booted = Some(s);
                self.boots += 1;
                return Some(s);
            }
            if sb.attempts_left > 0 {
                sb.attempts_left -= 1;
                self.booted = Some(s);
                self.boots += 1;
                return Some(s);
            }
            // Out of attempts: never try it again until reinstalled.
            sb.bootable = false;
        }
        None
    }

    /// Makes `s` unbootable (before writing it, or on rollback); the other slot becomes
    /// primary.
    pub fn mark_bad(&mut self, s: SlotName) {
        *self.slot_mut(s) = SlotBoot {
            bootable: false,
            good: false,
            attempts_left: 0,
        };
        if self.primary == s {
            self.primary = s.other();
        }
    }

    /// Makes a freshly written slot primary and unconfirmed with `attempts` tries.
    pub fn activate(&mut self, s: SlotName, attempts: u32) {
        *self.slot_mut(s) = SlotBoot {
            bootable: true,
            good: false,
            attempts_left: attempts,
        };
        self.primary = s;
    }

    /// Commits `s`.
    pub fn mark_good(&mut self, s: SlotName) {
        let sb = self.slot_mut(s);
        sb.bootable = true;
        sb.good = true;
        sb.attempts_left = DEFAULT_ATTEMPTS;
    }
}

/// A bootloader operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The state could not be read or written.
    #[error("boot state {path}: {source}")]
    Io {
        /// The state file or tool.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The state exists but cannot be understood.
    #[error("boot state {path} is corrupt: {reason}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Neither slot can be started.
    #[error("no bootable slot")]
    NoBootableSlot,
}

/// A bootloader backend: where the [`BootState`] lives. The decisions are shared.
pub trait Bootloader {
    /// Reads the state.
    fn load(&self) -> Result<BootState, BootError>;
    /// Writes the state; must be atomic (all or nothing across a power cut).
    fn store(&mut self, state: &BootState) -> Result<(), BootError>;

    /// What the bootloader does at power-on: choose a slot and persist the spent attempt.
    fn boot(&mut self) -> Result<SlotName, BootError> {
        let mut s = self.load()?;
        let chosen = s.choose();
        self.store(&s)?;
        chosen.ok_or(BootError::NoBootableSlot)
    }

    /// Applies `f` to the state and stores it.
    fn update(&mut self, f: &mut dyn FnMut(&mut BootState)) -> Result<BootState, BootError> {
        let mut s = self.load()?;
        f(&mut s);
        self.store(&s)?;
        Ok(s)
    }
}

/// The file-backed stub bootloader: the state is one JSON file written with
/// write-temp + fsync + rename, as a bootloader environment with redundant copies would.
#[derive(Debug, Clone)]
pub struct FileBootloader {
    path: PathBuf,
}

impl FileBootloader {
    /// A stub keeping its state at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    /// Creates the factory state if no state exists yet.
    pub fn init(path: &Path, good: SlotName) -> Result<Self, BootError> {
        let mut b = Self::new(path);
        if !path.exists() {
            b.store(&BootState::factory(good))?;
        }
        Ok(b)
    }
}

impl Bootloader for FileBootloader {
    fn load(&self) -> Result<BootState, BootError> {
        let bytes = std::fs::read(&self.path).map_err(|source| BootError::Io {
            path: self.path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| BootError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    fn store(&mut self, state: &BootState) -> Result<(), BootError> {
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        fsutil::write_atomic(&self.path, &bytes).map_err(|source| BootError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfirmed_slot_gets_its_attempts_then_the_chooser_falls_back() {
        let mut s = BootState::factory(SlotName::A);
        s.mark_bad(SlotName::B);
        s.activate(SlotName::B, 2);
        assert_eq!(s.choose(), Some(SlotName::B));
        assert_eq!(s.choose(), Some(SlotName::B));
        assert_eq!(s.choose(), Some(SlotName::A));
        assert!(!s.b.bootable);
        assert_eq!(s.choose(), Some(SlotName::A));
    }

    #[test]
    fn committed_slot_boots_forever_and_rollback_returns_to_the_other() {
        let mut s = BootState::factory(SlotName::A);
        s.activate(SlotName::B, 1);
        assert_eq!(s.choose(), Some(SlotName::B));
        s.mark_good(SlotName::B);
        for _ in 0..5 {
            assert_eq!(s.choose(), Some(SlotName::B));
        }
        s.mark_bad(SlotName::B);
        assert_eq!(s.primary, SlotName::A);
        assert_eq!(s.choose(), Some(SlotName::A));
    }

    #[test]
    fn file_bootloader_persists_spent_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("boot.json");
        let mut b = FileBootloader::init(&p, SlotName::A).unwrap();
        b.update(&mut |s| s.activate(SlotName::B, 1)).unwrap();
        assert_eq!(b.boot().unwrap(), SlotName::B);
        let mut again = FileBootloader::new(&p);
        assert_eq!(again.boot().unwrap(), SlotName::A);
    }
}
