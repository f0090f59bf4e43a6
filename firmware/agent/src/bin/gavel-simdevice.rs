//! `gavel-simdevice`: a simulated device's bootloader and power supply, for the simulated
//! fleet, the demo and the whole-system OTA tests.
//!
//! Each "boot": the file-backed bootchooser (`gavel-ota`'s `FileBootloader`, state in
//! `<slots>/boot.json`) chooses a slot and spends an attempt on an unconfirmed one, then
//! the slot's image (an executable: the agent binary, or a wrapper script around it) runs
//! with the given agent arguments and `GAVEL_OTA_DIR=<slots>`. When it exits, whatever the
//! reason (a reboot for an update, a crash), the device "reboots": the loop chooses again.
//! On SIGTERM/SIGINT it stops the running image (SIGTERM) and exits; SIGKILL of this
//! process is a power cut: the running image is killed with it (`PR_SET_PDEATHSIG`).
//!
//! A first boot with empty slots provisions slot A from the factory image (default: the
//! `gavel-agent` next to this binary) with this build's version.
//!
//! ```sh
//! gavel-simdevice --slots /var/lib/dev1/ota -- --device-id dev1 --profile ip-camera \
//!     --ota-key ota/test-keys/TEST-ONLY-release.pub --simulate-hardware
//! ```

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use gavel_agent::ota::{BOOT_STATE, provision_if_empty};
use gavel_ota::bootchooser::{Bootloader, FileBootloader};
use gavel_ota::slot::FileSlots;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// Simulated device: boots A/B slot images through the file-backed bootchooser.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Folder of the slots and the boot state (passed to the agent as GAVEL_OTA_DIR).
    #[arg(long)]
    slots: PathBuf,
    /// Image for slot A on a first boot (default: the gavel-agent next to this binary).
    #[arg(long)]
    factory_image: Option<PathBuf>,
    /// Pause between a slot's exit and the next boot, in milliseconds.
    #[arg(long, default_value_t = 300)]
    reboot_delay_ms: u64,
    /// Arguments for the slot's image (the agent's command line).
    #[arg(last = true)]
    agent_args: Vec<String>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GAVEL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let factory = match &args.factory_image {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("finding this executable")?
            .with_file_name("gavel-agent"),
    };
    let version: gavel_ota::Version = env!("CARGO_PKG_VERSION")
        .parse()
        .context("this build's version")?;
    provision_if_empty(&args.slots, &factory, version)?;
    let slots = FileSlots::in_dir(&args.slots)
        .with_context(|| format!("opening the slots in {}", args.slots.display()))?;
    let mut boot = FileBootloader::new(&args.slots.join(BOOT_STATE));
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Ok(());
        }
        let slot = match boot.boot() {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "the bootloader found nothing to start");
                return Err(e).context("booting");
            }
        };
        let state = boot.load()?;
        let version = slots
            .info(slot)?
            .version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into());
        let image = slots.image_path(slot).to_owned();
        info!(
            %slot,
            %version,
            boot = state.boots,
            attempts_left = state.slot(slot).attempts_left,
            good = state.slot(slot).good,
            "booting slot {slot} (version {version})"
        );
        // The image is what runs: make it executable like a loader mapping it would.
        std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", image.display()))?;
        let mut cmd = Command::new(&image);
        cmd.args(&args.agent_args)
            .env("GAVEL_OTA_DIR", &args.slots)
            .env("GAVEL_SIMDEVICE_SLOT", slot.to_string());
        // SAFETY: prctl is async-signal-safe; the closure touches nothing else.
        unsafe {
            cmd.pre_exec(|| {
                // The image dies with its "power supply" (this process): SIGKILL of the
                // supervisor is a power cut of the whole device.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                // An image that cannot even start is a failed boot: the attempt is spent.
                warn!(%slot, error = %e, "slot image did not start");
                std::thread::sleep(Duration::from_millis(args.reboot_delay_ms));
                continue;
            }
        };
        let status = loop {
            if STOP.load(Ordering::SeqCst) {
                // SAFETY: signalling our own child.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
                let until = Instant::now() + Duration::from_secs(15);
                while Instant::now() < until {
                    if let Ok(Some(_)) = child.try_wait() {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
                return Ok(());
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(e).context("waiting for the slot image"),
            }
        };
        info!(%slot, %status, ran_s = started.elapsed().as_secs(), "slot {slot} stopped; rebooting");
        std::thread::sleep(Duration::from_millis(args.reboot_delay_ms));
    }
}
