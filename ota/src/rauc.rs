//! A thin driver for RAUC on image-based devices: RAUC verifies (CMS), writes slots and
//! talks to the real bootloader; this module only runs `rauc` and reads its JSON.
//!
//! It offers the same operations as [`crate::install::Installer`] (install, commit,
//! roll back, read what runs), so the agent's update logic does not care which is used.
//! RAUC bundles (`.raucb`, CMS-signed) are built with `rauc bundle`, not by
//! [`crate::bundle`].

use std::path::{Path, PathBuf};
use std::process::Command;

/// A `rauc` invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    /// `rauc` could not be started (not installed?).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `rauc` ran and failed.
    #[error("`rauc {args}` failed ({status}): {stderr}")]
    Failed {
        /// Arguments.
        args: String,
        /// Exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Its output was not the JSON expected.
    #[error("`rauc {args}` printed unexpected output: {reason}")]
    Output {
        /// Arguments.
        args: String,
        /// Why.
        reason: String,
    },
}

/// What `rauc info` says about a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaucBundleInfo {
    /// The bundle's `compatible` string.
    pub compatible: String,
    /// The bundle's version.
    pub version: String,
}

/// The driver.
#[derive(Debug, Clone)]
pub struct Rauc {
    program: PathBuf,
    keyring: Option<PathBuf>,
    conf: Option<PathBuf>,
}

impl Rauc {
    /// Runs `rauc` from `PATH` with its system configuration.
    pub fn system() -> Self {
        Self {
            program: PathBuf::from("rauc"),
            keyring: None,
            conf: None,
        }
    }

    /// Uses this keyring (PEM certificates) instead of the system configuration's.
    pub fn with_keyring(mut self, keyring: &Path) -> Self {
        self.keyring = Some(keyring.to_owned());
        self
    }

    /// Uses this `system.conf`.
    pub fn with_conf(mut self, conf: &Path) -> Self {
        self.conf = Some(conf.to_owned());
        self
    }

    fn run(&self, args: &[&str]) -> Result<String, RaucError> {
        let mut cmd = Command::new(&self.program);
        if let Some(c) = &self.conf {
            cmd.arg(format!("--conf={}", c.display()));
        }
        if let Some(k) = &self.keyring {
            cmd.arg(format!("--keyring={}", k.display()));
        }
        let out = cmd.args(args).output().map_err(|source| RaucError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(RaucError::Failed {
                args: args.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Verifies a bundle's signature against the keyring and reads its manifest
    /// (`rauc info`): nothing is written.
    pub fn info(&self, bundle: &Path) -> Result<RaucBundleInfo, RaucError> {
        let b = bundle.display().to_string();
        let args = ["info", "--output-format=json", b.as_str()];
        let out = self.run(&args)?;
        let bad = |reason: String| RaucError::Output {
            args: args.join(" "),
            reason,
        };
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| bad(e.to_string()))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("no `{k}`")))
        };
        Ok(RaucBundleInfo {
            compatible: field("compatible")?,
            version: field("version")?,
        })
    }

    /// Installs a bundle into the inactive slot group (`rauc install`).
    pub fn install(&self, bundle: &Path) -> Result<(), RaucError> {
        self.run(&["install", &bundle.display().to_string()])
            .map(|_| ())
    }

    /// Commits the booted slot (`rauc status mark-good`).
    pub fn mark_good(&self) -> Result<(), RaucError> {
        self.run(&["status", "mark-good"]).map(|_| ())
    }

    /// Gives up the booted slot (`rauc status mark-bad`); the next boot falls back.
    pub fn mark_bad(&self) -> Result<(), RaucError> {
        self.run(&["status", "mark-bad"]).map(|_| ())
    }

    /// The raw `rauc status` JSON (booted slot, slot states).
    pub fn status(&self) -> Result<serde_json::Value, RaucError> {
        let args = ["status", "--output-format=json"];
        let out = self.run(&args)?;
        serde_json::from_str(&out).map_err(|e| RaucError::Output {
            args: args.join(" "),
            reason: e.to_string(),
        })
    }
}
