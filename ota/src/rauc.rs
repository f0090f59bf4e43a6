//! RAUC on image-based devices: RAUC verifies (CMS), writes slots and talks to the real
//! bootloader; this module only runs `rauc` and reads its JSON.
//!
//! [`Rauc`] is the thin CLI driver (`info`, `install`, `status`, `mark-good|bad|active`).
//! [`RaucInstaller`] maps it onto [`crate::backend::UpdateBackend`], the interface the
//! agent drives, with the same journal and stages as [`crate::install::Installer`]:
//!
//! | step | RAUC |
//! |---|---|
//! | check | `rauc info` (signature against the system keyring), then the bundle's `compatible` against the system's and its version against the booted slot's |
//! | install | journal `Writing`, `rauc install` (RAUC marks the target bad, writes it, makes it primary), journal `Activated` |
//! | running | `rauc status`: `booted` (bootname `A`/`B`), the slot's `bundle.version` |
//! | commit | `rauc status mark-good booted` |
//! | rollback | `rauc status mark-bad <new slot>`, then `mark-active <old slot>` |
//! | after a start | journal + `boot_primary` + `boot_status` say pending commit, pending reboot, or fell back |
//!
//! RAUC bundles (`.raucb`, CMS-signed) are built with `rauc bundle`, not by
//! [`crate::bundle`]. `rauc install` and `rauc status` talk to `rauc service` over the
//! D-Bus system bus (`DBUS_SYSTEM_BUS_ADDRESS` picks another bus, as the tests do).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::after_boot::{self, BootFacts, Step};
use crate::backend::{Running, UpdateBackend};
use crate::install::{
    self, BootOutcome, InstallError, InstallOptions, InstallReport, Journal, Stage,
};
use crate::manifest::Version;
use crate::slot::SlotName;

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

/// How a RAUC `compatible` names a Gavel device profile: `gavel-<profile>`, one per
/// profile (`compatible=gavel-courtroom-terminal` in the image's `system.conf`).
pub const COMPATIBLE_PREFIX: &str = "gavel-";

/// The device profile a RAUC `compatible` is for (`gavel-courtroom-terminal` is
/// `courtroom-terminal`); the reason when it names none.
pub fn profile_for_compatible(compatible: &str) -> Result<&str, String> {
    let profile = compatible.strip_prefix(COMPATIBLE_PREFIX).ok_or_else(|| {
        format!(
            "compatible {compatible:?} names no Gavel device profile \
             (expected {COMPATIBLE_PREFIX}<profile>, e.g. {COMPATIBLE_PREFIX}courtroom-terminal)"
        )
    })?;
    let ok = !profile.is_empty()
        && profile.len() <= 64
        && profile
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(format!(
            "compatible {compatible:?}: {profile:?} is not a profile name \
             (lower-case letters, digits, `-` and `_`)"
        ));
    }
    Ok(profile)
}

/// One slot in `rauc status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaucSlot {
    /// Slot name (`rootfs.0`).
    pub name: String,
    /// Slot class (`rootfs`).
    pub class: String,
    /// Bootloader name of the slot (`A`), for bootable slots.
    pub bootname: Option<String>,
    /// `booted`, `active` or `inactive`.
    pub state: String,
    /// What the bootloader says: `good` or `bad`.
    pub boot_status: Option<String>,
    /// Version of the bundle last installed into it (from RAUC's slot status).
    pub version: Option<String>,
    /// Image bytes written at the last install.
    pub size: Option<u64>,
}

/// What `rauc status --detailed` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaucStatus {
    /// The system's `compatible` (system.conf).
    pub compatible: String,
    /// Bootname of the booted slot.
    pub booted: String,
    /// Name of the slot the bootloader starts next (`rootfs.1`).
    pub boot_primary: Option<String>,
    /// Every slot.
    pub slots: Vec<RaucSlot>,
}

impl RaucStatus {
    /// Parses `rauc status --detailed --output-format=json`.
    pub fn parse(json: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let text =
            |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let mut slots = Vec::new();
        for entry in v
            .get("slots")
            .and_then(|s| s.as_array())
            .ok_or("no `slots`")?
        {
            let obj = entry.as_object().ok_or("a slot entry is not an object")?;
            for (name, slot) in obj {
                let status = slot.get("slot_status");
                slots.push(RaucSlot {
                    name: name.clone(),
                    class: text(slot, "class").unwrap_or_default(),
                    bootname: text(slot, "bootname"),
                    state: text(slot, "state").unwrap_or_default(),
                    boot_status: text(slot, "boot_status"),
                    version: status
                        .and_then(|s| s.get("bundle"))
                        .and_then(|b| text(b, "version")),
                    size: status
                        .and_then(|s| s.get("checksum"))
                        .and_then(|c| c.get("size"))
                        .and_then(|x| x.as_u64()),
                });
            }
        }
        Ok(Self {
            compatible: text(&v, "compatible").ok_or("no `compatible`")?,
            booted: text(&v, "booted").ok_or("no `booted` slot")?,
            boot_primary: text(&v, "boot_primary"),
            slots,
        })
    }

    /// The slot of `class` with bootname `bootname` (case-insensitive).
    pub fn slot(&self, class: &str, bootname: &str) -> Option<&RaucSlot> {
        self.slots.iter().find(|s| {
            s.class == class
                && s.bootname
                    .as_deref()
                    .is_some_and(|b| b.eq_ignore_ascii_case(bootname))
        })
    }
}

/// The driver.
#[derive(Debug, Clone)]
pub struct Rauc {
    program: PathBuf,
    keyring: Option<PathBuf>,
    conf: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Rauc {
    /// Runs this `rauc` program (default `rauc` from `PATH`).
    pub fn with_program(mut self, program: &Path) -> Self {
        self.program = program.to_owned();
        self
    }

    /// Runs `rauc` from `PATH` with its system configuration.
    pub fn system() -> Self {
        Self {
            program: PathBuf::from("rauc"),
            keyring: None,
            conf: None,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every `rauc` run (e.g. `DBUS_SYSTEM_BUS_ADDRESS`
    /// to reach a service on another bus).
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The `system.conf` in use, if one was named.
    pub fn conf(&self) -> Option<&Path> {
        self.conf.as_deref()
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
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
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
                stderr: failure_text(&out.stderr, &out.stdout),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Verifies a bundle's signature against the keyring and reads its manifest
    /// (`rauc info`): nothing is written.
    pub fn info(&self, bundle: &Path) -> Result<RaucBundleInfo, RaucError> {
        let b = bundle.display().to_string();
        self.info_with(&["info", "--output-format=json", b.as_str()])
    }

    /// Reads a bundle's manifest without checking its signature (`rauc info
    /// --no-verify`): for the controller's bundle repository, which may hold no keyring;
    /// the device's RAUC verifies the signature before installing. A bundle whose
    /// container or manifest is broken still fails, with RAUC's reason.
    pub fn info_unverified(&self, bundle: &Path) -> Result<RaucBundleInfo, RaucError> {
        let b = bundle.display().to_string();
        self.info_with(&["info", "--no-verify", "--output-format=json", b.as_str()])
    }

    fn info_with(&self, args: &[&str]) -> Result<RaucBundleInfo, RaucError> {
        let out = self.run(args)?;
        let bad = |reason: String| RaucError::Output {
            args: args.join(" "),
            reason,
        };
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| bad(e.to_string()))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("the bundle's manifest has no `{k}`")))
        };
        Ok(RaucBundleInfo {
            compatible: field("compatible")?,
            version: field("version")?,
        })
    }

    /// Installs a bundle into the inactive slot group (`rauc install`, through the
    /// service); the path is made absolute, as the service resolves it on its own.
    pub fn install(&self, bundle: &Path) -> Result<(), RaucError> {
        let abs = std::path::absolute(bundle).unwrap_or_else(|_| bundle.to_owned());
        self.run(&["install", &abs.display().to_string()])
            .map(|_| ())
    }

    /// `rauc status mark-good|mark-bad|mark-active <slot>` (`booted`, `other` or a name).
    pub fn mark(&self, how: &str, slot: &str) -> Result<(), RaucError> {
        self.run(&["status", how, slot]).map(|_| ())
    }

    /// What the service is doing (`idle`, `installing`): its D-Bus property
    /// `de.pengutronix.rauc.Installer.Operation`, read with `dbus-send` on the system bus.
    pub fn operation(&self) -> Result<String, RaucError> {
        let args = [
            "--system",
            "--print-reply",
            "--dest=de.pengutronix.rauc",
            "/",
            "org.freedesktop.DBus.Properties.Get",
            "string:de.pengutronix.rauc.Installer",
            "string:Operation",
        ];
        let program = PathBuf::from("dbus-send");
        let out = Command::new(&program)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .output()
            .map_err(|source| RaucError::Spawn { program, source })?;
        let what = || format!("(dbus-send) {}", args.join(" "));
        if !out.status.success() {
            return Err(RaucError::Failed {
                args: what(),
                status: out.status.to_string(),
                stderr: failure_text(&out.stderr, &out.stdout),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.split('"')
            .nth(1)
            .map(str::to_owned)
            .ok_or_else(|| RaucError::Output {
                args: what(),
                reason: format!("no quoted string in {:?}", text.trim()),
            })
    }

    /// `rauc status --detailed`, parsed.
    pub fn status_detailed(&self) -> Result<RaucStatus, RaucError> {
        let args = ["status", "--detailed", "--output-format=json"];
        let out = self.run(&args)?;
        RaucStatus::parse(&out).map_err(|reason| RaucError::Output {
            args: args.join(" "),
            reason,
        })
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

/// What a failed `rauc` said: stderr without its informational `rauc-Message:` lines, or
/// the end of stdout (`rauc install` prints `LastError: ...` there).
fn failure_text(stderr: &[u8], stdout: &[u8]) -> String {
    let keep = |b: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(b)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("rauc-Message:"))
            .filter(|l| !l.ends_with('%') && !l.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_owned)
            .collect()
    };
    let mut lines = keep(stderr);
    lines.extend(keep(stdout));
    let tail: Vec<String> = lines.iter().rev().take(4).rev().cloned().collect();
    if tail.is_empty() {
        String::from_utf8_lossy(stderr).trim().to_owned()
    } else {
        tail.join("; ")
    }
}

/// The update backend for image-based devices: RAUC does the verifying and writing;
/// this keeps the journal and maps RAUC's status onto the shared stages. The slot group
/// of `class` (default `rootfs`) must have bootnames `A` and `B`.
#[derive(Debug, Clone)]
pub struct RaucInstaller {
    rauc: Rauc,
    class: String,
    journal_path: PathBuf,
    factory_version: Option<Version>,
    install_wait: std::time::Duration,
}

fn bootname_slot(bootname: &str) -> Result<SlotName, InstallError> {
    match bootname {
        "A" | "a" => Ok(SlotName::A),
        "B" | "b" => Ok(SlotName::B),
        other => Err(InstallError::Rauc(RaucError::Output {
            args: "status".into(),
            reason: format!(
                "booted slot has bootname `{other}`; the agent needs the bootnames A and B"
            ),
        })),
    }
}

fn parse_version(v: &str) -> Result<Version, InstallError> {
    v.parse()
        .map_err(|_| InstallError::BadVersion(v.to_owned()))
}

impl RaucInstaller {
    /// Drives `rauc`, keeping the journal in `state_dir`.
    pub fn new(rauc: Rauc, state_dir: &Path) -> Self {
        Self {
            rauc,
            class: "rootfs".into(),
            journal_path: state_dir.join("install.json"),
            factory_version: None,
            install_wait: std::time::Duration::from_secs(600),
        }
    }

    /// The version of a booted slot that RAUC never installed (the factory image): the
    /// agent passes its own build's version.
    pub fn with_factory_version(mut self, v: Version) -> Self {
        self.factory_version = Some(v);
        self
    }

    /// The slot class whose A/B pair is updated (default `rootfs`).
    pub fn with_class(mut self, class: &str) -> Self {
        self.class = class.to_owned();
        self
    }

    fn status(&self) -> Result<RaucStatus, InstallError> {
        Ok(self.rauc.status_detailed()?)
    }

    fn slot<'a>(&self, st: &'a RaucStatus, s: SlotName) -> Result<&'a RaucSlot, InstallError> {
        st.slot(&self.class, &s.to_string()).ok_or_else(|| {
            InstallError::Rauc(RaucError::Output {
                args: "status".into(),
                reason: format!("no `{}` slot with bootname {s}", self.class),
            })
        })
    }

    fn set_journal(&self, j: &Journal) -> Result<(), InstallError> {
        install::write_journal(&self.journal_path, j)
    }

    /// Design: `rauc service` goes on installing when its client (the agent) dies, so a
    /// `Writing` journal at start may mean "still being written". Wait (bounded) until
    /// the service is idle before judging; if its state cannot be read, judge now.
    fn wait_while_installing(&self) {
        let until = std::time::Instant::now() + self.install_wait;
        loop {
            match self.rauc.operation() {
                Ok(op) if op == "idle" => return,
                Ok(op) => {
                    if std::time::Instant::now() >= until {
                        tracing::warn!(operation = %op, "rauc is still busy; judging the install now");
                        return;
                    }
                    tracing::info!(operation = %op, "rauc is still installing; waiting before judging the install");
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read what rauc is doing; judging the install now");
                    return;
                }
            }
        }
    }

    /// Design: boot-counting bootloaders (RAUC's GRUB script sets `X_TRY=1` at every start
    /// of a slot) expect the running system to confirm the slot it booted, or the next boot
    /// takes it for failed and falls back. The agent confirms (`mark-good booted`) after
    /// every start except on a slot on trial (`PendingCommit`), which only the health gate
    /// commits; and only when the bootloader does not already call the slot good, so a
    /// confirmed slot is not rewritten at every start. A failure is logged: the slot runs,
    /// and the next boot may fall back to the other, good slot.
    fn confirm_booted(&self) {
        let st = match self.status() {
            Ok(st) => st,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the booted slot's state to confirm it");
                return;
            }
        };
        let Some(slot) = bootname_slot(&st.booted)
            .ok()
            .and_then(|s| self.slot(&st, s).ok())
        else {
            return;
        };
        if slot.boot_status.as_deref() == Some("good") {
            return;
        }
        match self.rauc.mark("mark-good", "booted") {
            Ok(()) => {
                tracing::info!(slot = %st.booted, "confirmed the booted slot (rauc mark-good)")
            }
            Err(e) => {
                tracing::warn!(error = %e, slot = %st.booted, "could not confirm the booted slot")
            }
        }
    }

    fn judge_boot(&mut self) -> Result<BootOutcome, InstallError> {
        let Some(j) = self.journal()? else {
            return Ok(BootOutcome::Idle);
        };
        if !matches!(j.stage, Stage::Writing | Stage::Activated) {
            return Ok(BootOutcome::Settled(j));
        }
        if j.stage == Stage::Writing {
            self.wait_while_installing();
        }
        let st = self.status()?;
        let booted = bootname_slot(&st.booted)?;
        let target = self.slot(&st, j.slot)?;
        let target_is_next = st.boot_primary.as_deref() == Some(target.name.as_str())
            && target.boot_status.as_deref() == Some("good");
        let facts = BootFacts {
            booted,
            // RAUC makes the target primary only after writing it.
            written: target_is_next
                && target.version.as_deref() == Some(j.version.to_string().as_str()),
            next: target_is_next,
            // RAUC marks a slot good when it writes it: a trial boot looks confirmed.
            good: None,
        };
        let name = target.name.clone();
        let judgement = after_boot::judge(j, facts);
        for step in judgement.steps {
            match step {
                Step::Journal(j) => self.set_journal(&j)?,
                Step::MarkBad(_) => {
                    if let Err(e) = self.rauc.mark("mark-bad", &name) {
                        tracing::warn!(error = %e, slot = %name, "could not mark the abandoned slot bad");
                    }
                }
            }
        }
        Ok(judgement.outcome)
    }

    fn running_in(&self, st: &RaucStatus) -> Result<Running, InstallError> {
        let slot = bootname_slot(&st.booted)?;
        let version = match self.slot(st, slot)?.version.as_deref() {
            Some(v) => v.parse().ok(),
            None => self.factory_version,
        };
        Ok(Running { slot, version })
    }
}

impl UpdateBackend for RaucInstaller {
    fn name(&self) -> &'static str {
        "rauc"
    }

    fn bundle_file_name(&self) -> &'static str {
        "download.raucb"
    }

    fn running(&self) -> Result<Running, InstallError> {
        self.running_in(&self.status()?)
    }

    fn check(&self, bundle: &Path, opts: &InstallOptions) -> Result<Version, InstallError> {
        // Signature and manifest first (RAUC checks the CMS signature against the
        // system's keyring before it reads the manifest).
        let info = self.rauc.info(bundle)?;
        let st = self.status()?;
        if info.compatible != st.compatible {
            return Err(InstallError::IncompatibleProfile {
                device: st.compatible,
                compatible: vec![info.compatible],
            });
        }
        let offered = parse_version(&info.version)?;
        if let Some(installed) = self.running_in(&st)?.version
            && offered <= installed
            && !opts.force
        {
            return Err(InstallError::Downgrade { installed, offered });
        }
        Ok(offered)
    }

    fn install(
        &mut self,
        bundle: &Path,
        opts: &InstallOptions,
    ) -> Result<InstallReport, InstallError> {
        let version = self.check(bundle, opts)?;
        let st = self.status()?;
        let run = self.running_in(&st)?;
        let target = run.slot.other();
        let target_name = self.slot(&st, target)?.name.clone();
        let previous = self.journal()?;
        tracing::info!(%version, slot = %target, "installing with rauc");
        self.set_journal(&Journal {
            stage: Stage::Writing,
            version,
            from: run.version,
            slot: target,
        })?;
        if let Err(e) = self.rauc.install(bundle) {
            // RAUC verifies before it writes and marks the target bad before writing it,
            // so a refused or failed install left the booted slot the boot target: the
            // journal goes back to what it said before.
            match &previous {
                Some(j) => self.set_journal(j)?,
                None => {
                    let _ = std::fs::remove_file(&self.journal_path);
                }
            }
            return Err(e.into());
        }
        let st = self.status()?;
        if st.boot_primary.as_deref() != Some(target_name.as_str()) {
            return Err(InstallError::Rauc(RaucError::Output {
                args: "install".into(),
                reason: format!(
                    "rauc installed, but the boot target is {:?}, not {target_name}",
                    st.boot_primary
                ),
            }));
        }
        let written = self.slot(&st, target)?.size.unwrap_or(0);
        self.set_journal(&Journal {
            stage: Stage::Activated,
            version,
            from: run.version,
            slot: target,
        })?;
        tracing::info!(%version, slot = %target, "rauc installed; reboot to try it");
        Ok(InstallReport {
            slot: target,
            version,
            from: run.version,
            written,
        })
    }

    fn after_boot(&mut self) -> Result<BootOutcome, InstallError> {
        let outcome = self.judge_boot()?;
        if !matches!(outcome, BootOutcome::PendingCommit { .. }) {
            self.confirm_booted();
        }
        Ok(outcome)
    }

    fn commit(&mut self) -> Result<Journal, InstallError> {
        let j = self
            .journal()?
            .filter(|j| j.stage == Stage::Activated)
            .ok_or_else(|| InstallError::NothingPending("no activated install".into()))?;
        let booted = bootname_slot(&self.status()?.booted)?;
        if booted != j.slot {
            return Err(InstallError::NothingPending(format!(
                "running slot {booted}, the install went to {}",
                j.slot
            )));
        }
        self.rauc.mark("mark-good", "booted")?;
        let j = Journal {
            stage: Stage::Committed,
            ..j
        };
        self.set_journal(&j)?;
        tracing::info!(version = %j.version, slot = %booted, "committed (rauc mark-good)");
        Ok(j)
    }

    fn rollback(&mut self, reason: &str) -> Result<Journal, InstallError> {
        let j = self
            .journal()?
            .filter(|j| j.stage == Stage::Activated)
            .ok_or_else(|| InstallError::NothingPending("no activated install".into()))?;
        let st = self.status()?;
        let bad = self.slot(&st, j.slot)?.name.clone();
        let good = self.slot(&st, j.slot.other())?.name.clone();
        self.rauc.mark("mark-bad", &bad)?;
        self.rauc.mark("mark-active", &good)?;
        let j = Journal {
            stage: Stage::RolledBack {
                reason: reason.to_owned(),
            },
            ..j
        };
        self.set_journal(&j)?;
        tracing::warn!(version = %j.version, reason, "rolled back (rauc mark-bad)");
        Ok(j)
    }

    fn journal(&self) -> Result<Option<Journal>, InstallError> {
        install::read_journal(&self.journal_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rauc_status_json_is_read_with_bootnames_versions_and_boot_state() {
        let json = r#"{"compatible":"gavel-test","variant":"","booted":"B","boot_primary":"rootfs.0","slots":[{"rootfs.1":{"class":"rootfs","device":"/x/b.img","type":"raw","bootname":"B","state":"booted","parent":null,"mountpoint":null,"boot_status":"bad","slot_status":{"bundle":{"compatible":"gavel-test","version":"2.0.0"},"checksum":{"sha256":"c7","size":200000},"status":"ok"}}},{"rootfs.0":{"class":"rootfs","device":"/x/a.img","type":"raw","bootname":"A","state":"inactive","parent":null,"mountpoint":null,"boot_status":"good","slot_status":{"bundle":{"compatible":null}}}}]}"#;
        let st = RaucStatus::parse(json).unwrap();
        assert_eq!(st.compatible, "gavel-test");
        assert_eq!(st.booted, "B");
        assert_eq!(st.boot_primary.as_deref(), Some("rootfs.0"));
        let b = st.slot("rootfs", "b").unwrap();
        assert_eq!(b.name, "rootfs.1");
        assert_eq!(b.version.as_deref(), Some("2.0.0"));
        assert_eq!(b.size, Some(200_000));
        assert_eq!(b.boot_status.as_deref(), Some("bad"));
        let a = st.slot("rootfs", "A").unwrap();
        assert_eq!(a.version, None);
        assert!(st.slot("appfs", "A").is_none());
    }

    #[test]
    fn rauc_compatible_names_the_device_profile_after_the_gavel_prefix() {
        assert_eq!(
            profile_for_compatible("gavel-courtroom-terminal"),
            Ok("courtroom-terminal")
        );
        assert_eq!(profile_for_compatible("gavel-ip-camera"), Ok("ip-camera"));
        let e = profile_for_compatible("acme-board").unwrap_err();
        assert!(e.contains("names no Gavel device profile"), "{e}");
        for bad in ["gavel-", "gavel-Courtroom", "gavel-a b", "gavel-x/y"] {
            let e = profile_for_compatible(bad).unwrap_err();
            assert!(e.contains("is not a profile name"), "{bad}: {e}");
        }
    }

    #[test]
    fn rauc_failure_keeps_its_reason_and_drops_progress_and_chatter() {
        let t = failure_text(
            b"rauc-Message: 09:39:36.330: Reading bundle\nsignature verification failed: Verify error: self-signed certificate\n",
            b"",
        );
        assert_eq!(
            t,
            "signature verification failed: Verify error: self-signed certificate"
        );
        let t = failure_text(
            b"",
            b"installing\n  0% Installing\n100% Installing failed.\nLastError: Compatible mismatch\nInstalling `/x.raucb` failed\n",
        );
        assert_eq!(
            t,
            "installing; LastError: Compatible mismatch; Installing `/x.raucb` failed"
        );
    }

    #[test]
    fn bootnames_other_than_a_and_b_are_refused_with_the_name() {
        assert_eq!(bootname_slot("A").unwrap(), SlotName::A);
        assert_eq!(bootname_slot("b").unwrap(), SlotName::B);
        let e = bootname_slot("system0").unwrap_err().to_string();
        assert!(e.contains("system0"), "{e}");
    }
}
