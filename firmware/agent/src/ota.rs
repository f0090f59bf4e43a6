//! Over-the-air updates in the agent: a thin async shell around `gavel-ota`'s sans-I/O
//! cores. [`Updater`] says when to download, install and reboot given the room's
//! schedule; [`Installer`] checks, writes the inactive slot, activates it and, after the
//! reboot, commits or rolls back; [`HealthGate`] decides which.
//!
//! ```text
//!  ota_install ─► ota_accepted ─► deferred? ─► downloading ─► installing ─► rebooting
//!                                   (hearing)    (Range resume,   (check, write,
//!                                                 capped)          activate)
//!  reboot ─► boot supervisor picks the new slot ─► health gate ─► committed
//!                                                      └─ deadline ─► rolled_back ─► reboot (old slot)
//! ```
//!
//! One task owns the cores ([`spawn`]); the command loop talks to it through
//! [`OtaHandle`]. Every step is reported as an `ota` event through the durable outbox.
//!
//! The installer is one interface with two backends ([`UpdateBackend`], chosen by
//! `[ota] backend`): `slots`, `gavel-ota`'s own installer over file-backed slots and the
//! file bootloader stub (simulated fleet, tests, demo), and `rauc`, which drives RAUC on
//! image-based devices. The flow, the journal stages and the reports are the same.
//!
//! Files in the slots folder (besides the slots, `boot.json` and `install.json` that
//! `gavel-ota` keeps): `request.json`, the accepted command while its update runs (so a
//! restart resumes it); `download.gota` (`download.raucb` with RAUC), the partial or
//! complete bundle; `reported.json`, the last journal state reported (so each outcome is
//! reported once).
//!
//! A restart of the agent between the install and the reboot (the new slot written and
//! made the boot target, the reboot not done) is found at the next start
//! ([`BootOutcome::PendingReboot`]): the update resumes at its reboot step, which waits
//! for the room like any reboot; nothing is rewritten or rolled back.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gavel_link::{Link, Outbox};
use gavel_ota::backend::UpdateBackend;
use gavel_ota::bootchooser::{Bootloader, FileBootloader};
use gavel_ota::health::{HealthGate, HealthSample, Verdict};
use gavel_ota::install::{BootOutcome, InstallOptions, Journal, Stage};
use gavel_ota::rauc::{Rauc, RaucInstaller};
use gavel_ota::signature::Keyring;
use gavel_ota::slot::{FileSlots, SlotInfo, SlotName};
use gavel_ota::updater::{Action, Input, Step, Updater};
use gavel_ota::{Installer, Version};
use gavel_protocol::{EventBody, OtaStage, Phase};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::config::OtaBackend;
use crate::session::RoomSchedule;

pub use gavel_ota::backend::Running;

/// The boot state file (the file-backed bootloader) in the slots folder.
pub const BOOT_STATE: &str = "boot.json";
const REQUEST: &str = "request.json";
const REPORTED: &str = "reported.json";

/// Settings of the OTA task (from the `[ota]` config section).
#[derive(Debug, Clone)]
pub struct OtaSettings {
    /// Which installer carries out updates.
    pub backend: OtaBackend,
    /// Slots, boot state, journal (with RAUC: journal and download only).
    pub dir: PathBuf,
    /// Trusted public key files (`slots`).
    pub keys: Vec<PathBuf>,
    /// RAUC's `system.conf` (`rauc`; `None`: RAUC's default).
    pub rauc_conf: Option<PathBuf>,
    /// RAUC slot class updated (`rauc`).
    pub rauc_class: String,
    /// This build's version: slot A's on a first start (`slots`), the booted slot's when
    /// RAUC never installed it (`rauc`).
    pub version: Version,
    /// This device's profile (bundles name the profiles they fit).
    pub profile: String,
    /// Download cap when the command names none (0: uncapped).
    pub default_cap: u64,
    /// Health deadline after booting a new slot.
    pub health_deadline: Duration,
    /// No install or reboot this close (seconds) before a hearing.
    pub guard_s: i64,
    /// Boot attempts for a new slot.
    pub attempts: u32,
}

/// Factory provisioning: when the slots folder has no boot state yet, writes `image` into
/// slot A with `version`, and a boot state with A good and primary. Returns whether it did.
/// Design: the boot state is written last; its presence means "provisioned".
pub fn provision_if_empty(dir: &Path, image: &Path, version: Version) -> anyhow::Result<bool> {
    let state = dir.join(BOOT_STATE);
    if state.exists() {
        return Ok(false);
    }
    let slots = FileSlots::in_dir(dir)
        .with_context(|| format!("creating the slots folder {}", dir.display()))?;
    let mut w = slots.writer(SlotName::A)?;
    let mut src = std::fs::File::open(image)
        .with_context(|| format!("opening the factory image {}", image.display()))?;
    io::copy(&mut src, &mut w)
        .with_context(|| format!("copying {} into slot A", image.display()))?;
    let (sha256, size) = w.finish().context("syncing slot A")?;
    if size == 0 {
        anyhow::bail!(
            "factory image {} is empty; slot A is left unprovisioned",
            image.display()
        );
    }
    slots.set_info(
        SlotName::A,
        &SlotInfo {
            version: Some(version),
            sha256: Some(sha256),
            size,
        },
    )?;
    FileBootloader::init(&state, SlotName::A)?;
    info!(dir = %dir.display(), %version, "provisioned slot A from {}", image.display());
    Ok(true)
}

/// Opens the installer at agent start and says what runs: with `slots`, see
/// [`open_slots`]; with RAUC, asks `rauc status` (the service must be up).
pub fn open(s: &OtaSettings, factory_image: &Path) -> anyhow::Result<Running> {
    match s.backend {
        OtaBackend::Slots => open_slots(&s.dir, factory_image, s.version),
        OtaBackend::Rauc => {
            std::fs::create_dir_all(&s.dir)
                .with_context(|| format!("creating the OTA folder {}", s.dir.display()))?;
            Ok(backend(s)?
                .running()
                .context("asking RAUC which slot runs (is `rauc service` up?)")?)
        }
    }
}

/// Opens the slots at agent start: provisions slot A from `factory_image` if the folder
/// is empty, and when no boot supervisor chose a slot (the agent runs by itself), boots
/// once so the state names the running slot. Returns the running slot and version.
pub fn open_slots(dir: &Path, factory_image: &Path, version: Version) -> anyhow::Result<Running> {
    provision_if_empty(dir, factory_image, version)?;
    let mut boot = FileBootloader::new(&dir.join(BOOT_STATE));
    let mut state = boot.load()?;
    if state.booted.is_none() {
        boot.boot()?;
        state = boot.load()?;
    }
    let slot = state.booted.unwrap_or(state.primary);
    let slots = FileSlots::in_dir(dir)?;
    Ok(Running {
        slot,
        version: slots.info(slot)?.version,
    })
}

/// An accepted `ota_install`, kept in `request.json` while its update runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRequest {
    /// Campaign id, echoed in every event.
    pub campaign: Option<String>,
    /// Bundle version.
    pub version: String,
    /// Bundle URL (Range requests).
    pub url: String,
    /// Bundle size in bytes.
    pub size: u64,
    /// SHA-256 of the bundle file.
    pub sha256: String,
    /// Download cap from the command (0 or absent: the configured one).
    pub max_bits_per_s: Option<u64>,
    /// Allow a version that is not newer.
    pub force: bool,
}

/// The stage and detail to report for a journal's final state; `None` while not final.
pub fn journal_report(j: &Journal) -> Option<(OtaStage, String)> {
    match &j.stage {
        Stage::Committed => Some((
            OtaStage::Committed,
            format!(
                "version {} runs from slot {} and is committed",
                j.version, j.slot
            ),
        )),
        Stage::RolledBack { reason } => Some((
            OtaStage::RolledBack,
            format!(
                "version {} in slot {} rolled back: {reason}; running {} again",
                j.version,
                j.slot,
                j.from
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "the old slot".into())
            ),
        )),
        Stage::Interrupted => Some((
            OtaStage::Interrupted,
            format!(
                "writing version {} into slot {} was cut off (power or restart); the old slot runs",
                j.version, j.slot
            ),
        )),
        Stage::Writing | Stage::Activated => None,
    }
}

enum Request {
    Install {
        req: InstallRequest,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Handle to the OTA task.
#[derive(Clone)]
pub struct OtaHandle {
    tx: mpsc::Sender<Request>,
}

impl OtaHandle {
    /// Accepts an install (the update then runs when the room allows), or says why not.
    pub async fn install(&self, req: InstallRequest) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Install { req, reply })
            .await
            .map_err(|_| "the OTA task has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the OTA task has stopped".to_owned())?
    }
}

/// What the OTA task works with.
pub struct OtaParts {
    /// Settings.
    pub settings: OtaSettings,
    /// Durable event queue.
    pub outbox: Arc<Outbox>,
    /// The MQTT link (the health gate asks whether it is connected).
    pub link: Link,
    /// Capabilities the health gate requires, and whether each runs.
    pub capabilities: Vec<(String, bool)>,
    /// The room's schedule (see [`crate::schedule`]).
    pub schedule: watch::Receiver<RoomSchedule>,
    /// Asks the agent to reboot (it exits; the boot supervisor starts the chosen slot).
    pub reboot: mpsc::Sender<String>,
    /// When this boot started (the health deadline counts from here).
    pub booted_at: Instant,
}

/// Starts the OTA task: runs the post-boot check (health gate, commit or roll back) and
/// resumes an accepted update, then serves [`OtaHandle`].
pub fn spawn(parts: OtaParts) -> (OtaHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(Task::new(parts).run(rx));
    (OtaHandle { tx }, task)
}

struct Settling {
    since: Instant,
    connected_ticks: u32,
}

enum StepDone {
    Ok(Step),
    Failed(Step, String),
}

struct Task {
    p: OtaParts,
    updater: Updater,
    current: Option<InstallRequest>,
    gate: Option<(HealthGate, Version)>,
    /// Set when the update resumed at its reboot after a restart (the slot written).
    resumed_reboot: Option<SlotName>,
    /// Waiting for the room's schedule before a resumed reboot.
    settling: Option<Settling>,
    stop_download: Arc<AtomicBool>,
    steps_tx: mpsc::Sender<StepDone>,
    steps_rx: mpsc::Receiver<StepDone>,
    client: reqwest::Client,
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The installer the settings name, behind the one interface the task drives.
pub fn backend(s: &OtaSettings) -> anyhow::Result<Box<dyn UpdateBackend>> {
    Ok(match s.backend {
        OtaBackend::Slots => {
            let slots = FileSlots::in_dir(&s.dir)?;
            let keyring = Keyring::load(&s.keys).context("loading the trusted OTA keys")?;
            Box::new(Installer::new(
                slots,
                FileBootloader::new(&s.dir.join(BOOT_STATE)),
                keyring,
                &s.profile,
                &s.dir,
            ))
        }
        OtaBackend::Rauc => {
            let mut rauc = Rauc::system();
            if let Some(c) = &s.rauc_conf {
                rauc = rauc.with_conf(c);
            }
            Box::new(
                RaucInstaller::new(rauc, &s.dir)
                    .with_class(&s.rauc_class)
                    .with_factory_version(s.version),
            )
        }
    })
}

/// The downloaded bundle's file name for a backend (RAUC wants `.raucb`).
fn download_name(b: OtaBackend) -> &'static str {
    match b {
        OtaBackend::Slots => "download.gota",
        OtaBackend::Rauc => "download.raucb",
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("OTA worker thread")?
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap_or_default())?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn short(s: &str) -> String {
    s.chars().take(500).collect()
}

impl Task {
    fn new(p: OtaParts) -> Self {
        let (steps_tx, steps_rx) = mpsc::channel(8);
        Self {
            updater: Updater::new(p.settings.guard_s),
            p,
            current: None,
            gate: None,
            resumed_reboot: None,
            settling: None,
            stop_download: Arc::new(AtomicBool::new(false)),
            steps_tx,
            steps_rx,
            client: reqwest::Client::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.p.settings.dir.join(name)
    }

    async fn emit(&self, version: &str, stage: OtaStage, detail: Option<String>) {
        let campaign = self
            .current
            .as_ref()
            .filter(|r| r.version == version)
            .and_then(|r| r.campaign.clone());
        let phase = match stage {
            OtaStage::Committed
            | OtaStage::RolledBack
            | OtaStage::Rejected
            | OtaStage::Interrupted => Phase::End,
            _ => Phase::Update,
        };
        info!(%version, ?stage, detail = detail.as_deref().unwrap_or(""), "ota");
        let body = EventBody::Ota {
            campaign,
            version: version.to_owned(),
            stage,
            detail: detail.map(|d| short(&d)),
        };
        if let Err(e) = self
            .p
            .outbox
            .emit(format!("ota-{version}"), phase, body)
            .await
        {
            warn!(error = %e, "could not store an ota event");
        }
    }

    /// Reports the journal's final state once, and ends the request it belongs to.
    async fn report_journal(&mut self) {
        let s = self.p.settings.clone();
        let journal = match blocking(move || Ok(backend(&s)?.journal()?)).await {
            Ok(j) => j,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "reading the install journal failed");
                return;
            }
        };
        let Some(j) = journal else { return };
        let Some((stage, detail)) = journal_report(&j) else {
            return;
        };
        let reported: Option<Journal> = read_json(&self.path(REPORTED));
        if reported.as_ref() != Some(&j) {
            self.emit(&j.version.to_string(), stage, Some(detail)).await;
            if let Err(e) = write_json(&self.path(REPORTED), &j) {
                warn!(error = %e, "could not record the reported install outcome");
            }
        }
        if self
            .current
            .as_ref()
            .is_some_and(|r| r.version == j.version.to_string())
        {
            self.finish_request();
        }
    }

    fn finish_request(&mut self) {
        self.current = None;
        let _ = std::fs::remove_file(self.path(REQUEST));
        let _ = std::fs::remove_file(self.path(download_name(self.p.settings.backend)));
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        self.current = read_json(&self.path(REQUEST));
        let s = self.p.settings.clone();
        let mut pending_reboot = None;
        match blocking(move || Ok(backend(&s)?.after_boot()?)).await {
            Ok(BootOutcome::PendingCommit { version }) => {
                info!(%version, deadline_s = self.p.settings.health_deadline.as_secs(), "booted a new slot; running the health gate");
                self.gate = Some((HealthGate::new(self.p.settings.health_deadline), version));
            }
            Ok(BootOutcome::PendingReboot { version, slot }) => {
                pending_reboot = Some((version, slot));
            }
            Ok(_) => self.report_journal().await,
            Err(e) => warn!(error = %format!("{e:#}"), "checking the install after boot failed"),
        }
        let now = unix_now();
        let schedule = self.p.schedule.borrow_and_update().clone();
        self.updater.handle(now, Input::Schedule(schedule));
        if let Some((version, slot)) = pending_reboot {
            self.resume_reboot(version, slot);
        } else if let Some(req) = self.current.clone()
            && self.gate.is_none()
        {
            info!(version = %req.version, "resuming the accepted update");
            let actions = self.updater.handle(now, Input::Start);
            self.act(actions).await;
        }
        let mut feed_open = true;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(Request::Install { req, reply }) => {
                        let answer = self.accept(req).await;
                        let _ = reply.send(answer);
                    }
                    None => break,
                },
                changed = self.p.schedule.changed(), if feed_open => {
                    if changed.is_err() {
                        // The feed is gone (shutdown): keep the last schedule.
                        feed_open = false;
                        continue;
                    }
                    let s = self.p.schedule.borrow_and_update().clone();
                    let actions = self.updater.handle(unix_now(), Input::Schedule(s));
                    self.act(actions).await;
                }
                Some(done) = self.steps_rx.recv() => {
                    let input = match done {
                        StepDone::Ok(step) => Input::Done(step),
                        StepDone::Failed(step, why) => Input::Failed(step, why),
                    };
                    let actions = self.updater.handle(unix_now(), input);
                    self.act(actions).await;
                }
                _ = tick.tick() => {
                    self.check_gate().await;
                    self.settle_then_reboot().await;
                    if self.current.is_some() {
                        let actions = self.updater.handle(unix_now(), Input::Tick);
                        self.act(actions).await;
                    }
                }
            }
        }
    }

    /// The agent restarted after an install and before its reboot: the new slot is
    /// written and is the boot target. Design: nothing is redone or undone; the update
    /// resumes at its reboot step, which waits for the room like any reboot.
    fn resume_reboot(&mut self, version: Version, slot: SlotName) {
        info!(%version, %slot, "an update was installed before this restart; its reboot is still to come");
        let v = version.to_string();
        if self.current.as_ref().is_none_or(|r| r.version != v) {
            // The request file is gone (or names another version): the journal, which
            // says what is on the slots, wins.
            self.current = Some(InstallRequest {
                campaign: None,
                version: v.clone(),
                url: String::new(),
                size: 0,
                sha256: String::new(),
                max_bits_per_s: None,
                force: false,
            });
        }
        self.resumed_reboot = Some(slot);
        self.settling = Some(Settling {
            since: Instant::now(),
            connected_ticks: 0,
        });
    }

    /// Design: a reboot resumed after a start is decided only once the room's schedule is
    /// current: the link has been up for two ticks (the retained schedule arrives right
    /// after subscribing), or 15 s passed without a broker (then the stored schedule
    /// rules, as for every decision offline).
    async fn settle_then_reboot(&mut self) {
        let Some(st) = self.settling.as_mut() else {
            return;
        };
        st.connected_ticks = if self.p.link.is_connected() {
            st.connected_ticks + 1
        } else {
            0
        };
        if st.connected_ticks < 2 && st.since.elapsed() < Duration::from_secs(15) {
            return;
        }
        self.settling = None;
        let actions = self.updater.handle(unix_now(), Input::Installed);
        self.act(actions).await;
    }

    async fn accept(&mut self, req: InstallRequest) -> Result<(), String> {
        if let Some((_, v)) = &self.gate {
            return Err(format!(
                "version {v} was just installed and waits for its health check"
            ));
        }
        if let Some(cur) = &self.current {
            if cur.version == req.version {
                return Ok(());
            }
            return Err(format!("an update to {} is in progress", cur.version));
        }
        write_json(&self.path(REQUEST), &req).map_err(|e| {
            format!(
                "cannot store the request in {}: {e}",
                self.p.settings.dir.display()
            )
        })?;
        let _ = std::fs::remove_file(self.path(download_name(self.p.settings.backend)));
        self.current = Some(req);
        let actions = self.updater.handle(unix_now(), Input::Start);
        self.act(actions).await;
        Ok(())
    }

    async fn act(&mut self, actions: Vec<Action>) {
        for a in actions {
            let Some(req) = self.current.clone() else {
                return;
            };
            match a {
                Action::Deferred(step, why) => {
                    let what = match step {
                        Step::Download => "download",
                        Step::Install => "install",
                        Step::Reboot => "reboot",
                    };
                    self.emit(
                        &req.version,
                        OtaStage::Deferred,
                        Some(format!("{what} waits: {why}")),
                    )
                    .await;
                }
                Action::PauseDownload => {
                    self.stop_download.store(true, Ordering::Relaxed);
                }
                Action::Failed(_, why) => {
                    self.emit(&req.version, OtaStage::Rejected, Some(why)).await;
                    self.finish_request();
                }
                Action::Begin(Step::Download) => self.begin_download(&req).await,
                Action::Begin(Step::Install) => self.begin_install(&req).await,
                Action::Begin(Step::Reboot) => {
                    let detail = match self.resumed_reboot.take() {
                        Some(slot) => format!(
                            "rebooting into version {} (written to slot {slot} before the agent restarted)",
                            req.version
                        ),
                        None => format!("rebooting into version {}", req.version),
                    };
                    self.emit(&req.version, OtaStage::Rebooting, Some(detail))
                        .await;
                    self.reboot(format!("update to {}", req.version)).await;
                }
            }
        }
    }

    async fn begin_download(&mut self, req: &InstallRequest) {
        let cap = req
            .max_bits_per_s
            .filter(|c| *c > 0)
            .unwrap_or(self.p.settings.default_cap);
        let dest = self.path(download_name(self.p.settings.backend));
        let have = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        let cap_text = if cap > 0 {
            format!("at most {cap} bit/s")
        } else {
            "uncapped".into()
        };
        let detail = if have > 0 {
            format!(
                "{} bytes from {}, resuming at byte {have}, {cap_text}",
                req.size, req.url
            )
        } else {
            format!("{} bytes from {}, {cap_text}", req.size, req.url)
        };
        self.emit(&req.version, OtaStage::Downloading, Some(detail))
            .await;
        let stop = Arc::new(AtomicBool::new(false));
        self.stop_download = stop.clone();
        let client = self.client.clone();
        let tx = self.steps_tx.clone();
        let req = req.clone();
        tokio::spawn(async move {
            if let Some(done) = download(&client, &req, &dest, cap, &stop).await {
                let _ = tx.send(done).await;
            }
        });
    }

    async fn begin_install(&mut self, req: &InstallRequest) {
        self.emit(
            &req.version,
            OtaStage::Installing,
            Some("checking the bundle, then writing the inactive slot".into()),
        )
        .await;
        let s = self.p.settings.clone();
        let bundle = self.path(download_name(self.p.settings.backend));
        let opts = InstallOptions {
            force: req.force,
            attempts: s.attempts,
        };
        let version = req.version.clone();
        let tx = self.steps_tx.clone();
        tokio::spawn(async move {
            let result = blocking(move || {
                let mut inst = backend(&s)?;
                let offered = inst.check(&bundle, &opts)?;
                if offered.to_string() != version {
                    anyhow::bail!(
                        "the bundle holds version {offered}, the command announced {version}"
                    );
                }
                Ok(inst.install(&bundle, &opts)?)
            })
            .await;
            let done = match result {
                Ok(r) => {
                    info!(version = %r.version, slot = %r.slot, written = r.written, "slot written and activated");
                    StepDone::Ok(Step::Install)
                }
                Err(e) => StepDone::Failed(Step::Install, format!("{e:#}")),
            };
            let _ = tx.send(done).await;
        });
    }

    /// Lets the outbox drain (bounded), then asks the agent to reboot.
    async fn reboot(&self, why: String) {
        let until = Instant::now() + Duration::from_secs(5);
        while self.p.link.is_connected() && Instant::now() < until {
            if self.p.outbox.health().await.map(|o| o.depth).unwrap_or(0) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.p.reboot.send(why).await;
    }

    async fn check_gate(&mut self) {
        let Some((gate, version)) = self.gate.as_mut() else {
            return;
        };
        let version = *version;
        let sample = HealthSample {
            broker_connected: self.p.link.is_connected(),
            capabilities: self.p.capabilities.clone(),
        };
        match gate.on_sample(self.p.booted_at.elapsed(), &sample) {
            Verdict::Wait => {}
            Verdict::Commit => {
                self.gate = None;
                let s = self.p.settings.clone();
                match blocking(move || Ok(backend(&s)?.commit()?)).await {
                    Ok(_) => self.report_journal().await,
                    Err(e) => warn!(error = %format!("{e:#}"), %version, "commit failed"),
                }
            }
            Verdict::Rollback { reason } => {
                self.gate = None;
                let s = self.p.settings.clone();
                let why = reason.clone();
                match blocking(move || Ok(backend(&s)?.rollback(&why)?)).await {
                    Ok(_) => {
                        self.report_journal().await;
                        self.reboot(format!("rolling back {version}: {reason}"))
                            .await;
                    }
                    Err(e) => warn!(error = %format!("{e:#}"), %version, "rollback failed"),
                }
            }
        }
    }
}

/// Downloads the bundle (resuming), retrying network errors; `None` when stopped on
/// request (the updater paused it).
async fn download(
    client: &reqwest::Client,
    req: &InstallRequest,
    dest: &Path,
    cap: u64,
    stop: &AtomicBool,
) -> Option<StepDone> {
    use gavel_ota::download::DownloadError;
    let mut failures = 0u32;
    loop {
        let mut control = |_: u64| !stop.load(Ordering::Relaxed);
        match gavel_ota::download::download(client, &req.url, dest, req.size, cap, &mut control)
            .await
        {
            Ok(d) => {
                info!(
                    resumed_from = d.resumed_from,
                    received = d.received,
                    "bundle downloaded"
                );
                let path = dest.to_owned();
                let hashed = blocking(move || {
                    let mut f = std::fs::File::open(&path)?;
                    Ok(gavel_ota::bundle::sha256_reader(&mut f)?)
                })
                .await;
                return Some(match hashed {
                    Ok((sha, _)) if sha == req.sha256 => StepDone::Ok(Step::Download),
                    Ok((sha, _)) => {
                        let _ = std::fs::remove_file(dest);
                        StepDone::Failed(
                            Step::Download,
                            format!(
                                "downloaded bundle has sha256 {sha}, the controller announced {}",
                                req.sha256
                            ),
                        )
                    }
                    Err(e) => StepDone::Failed(Step::Download, format!("{e:#}")),
                });
            }
            Err(DownloadError::Stopped(_)) if stop.load(Ordering::Relaxed) => return None,
            Err(e @ (DownloadError::Stopped(_) | DownloadError::Http { .. })) => {
                failures += 1;
                if failures > 8 {
                    return Some(StepDone::Failed(Step::Download, e.to_string()));
                }
                let wait = Duration::from_millis(500 * u64::from(failures.min(6)));
                warn!(error = %e, retry_in = ?wait, "download interrupted; resuming");
                tokio::time::sleep(wait).await;
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
            }
            Err(e) => {
                if matches!(e, DownloadError::TooLong { .. }) {
                    let _ = std::fs::remove_file(dest);
                }
                return Some(StepDone::Failed(Step::Download, e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_slots_are_provisioned_once_from_the_factory_image() {
        let dir = tempfile::tempdir().expect("tmp");
        let image = dir.path().join("agent");
        std::fs::write(&image, b"#!/bin/sh\necho v1\n").expect("image");
        let slots = dir.path().join("ota");
        let v1: Version = "1.0.0".parse().expect("version");
        let running = open_slots(&slots, &image, v1).expect("open");
        assert_eq!(
            running,
            Running {
                slot: SlotName::A,
                version: Some(v1)
            }
        );
        assert_eq!(
            std::fs::read(slots.join("slot-a.img")).expect("slot a"),
            b"#!/bin/sh\necho v1\n"
        );
        // A second start keeps what is there, whatever the factory image says now.
        std::fs::write(&image, b"other").expect("image");
        let v2: Version = "2.0.0".parse().expect("version");
        assert!(!provision_if_empty(&slots, &image, v2).expect("again"));
        assert_eq!(
            open_slots(&slots, &image, v2).expect("open").version,
            Some(v1)
        );
    }

    #[test]
    fn an_empty_factory_image_is_refused_and_nothing_is_provisioned() {
        let dir = tempfile::tempdir().expect("tmp");
        let image = dir.path().join("agent");
        std::fs::write(&image, b"").expect("image");
        let slots = dir.path().join("ota");
        let v1: Version = "1.0.0".parse().expect("version");
        let err = provision_if_empty(&slots, &image, v1).expect_err("empty");
        assert!(format!("{err:#}").contains("is empty"), "{err:#}");
        assert!(
            !slots.join(BOOT_STATE).exists(),
            "no boot state: not provisioned"
        );
        std::fs::write(&image, b"#!/bin/sh\n").expect("image");
        assert!(provision_if_empty(&slots, &image, v1).expect("now"));
    }

    #[test]
    fn each_final_journal_stage_is_reported_with_its_reason() {
        let j = |stage| Journal {
            stage,
            version: "2.0.0".parse().expect("v"),
            from: Some("1.0.0".parse().expect("v")),
            slot: SlotName::B,
        };
        let (stage, detail) = journal_report(&j(Stage::RolledBack {
            reason: "not healthy within 8 s of boot: capabilities not running: record".into(),
        }))
        .expect("final");
        assert_eq!(stage, OtaStage::RolledBack);
        assert!(
            detail.contains("record") && detail.contains("1.0.0"),
            "{detail}"
        );
        assert_eq!(
            journal_report(&j(Stage::Committed)).map(|r| r.0),
            Some(OtaStage::Committed)
        );
        assert_eq!(
            journal_report(&j(Stage::Interrupted)).map(|r| r.0),
            Some(OtaStage::Interrupted)
        );
        assert_eq!(journal_report(&j(Stage::Activated)), None);
        assert_eq!(journal_report(&j(Stage::Writing)), None);
    }
}
