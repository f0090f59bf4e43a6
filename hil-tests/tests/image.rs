//! The device image, booted: `images/build.sh` builds the A/B disk image (Debian packages,
//! the agent built in this workspace, RAUC with its GRUB backend) and two update bundles
//! from the same recipe in this run (cached by content: unchanged inputs reuse them); the
//! disk boots in qemu (OVMF + GRUB, KVM when `/dev/kvm` is usable, software emulation
//! otherwise) with its config partition provisioned for a real controller on the host,
//! which the guest reaches as 10.0.2.2 through qemu's user network.
//!
//! The default suite runs the short version (boot, first-boot provisioning, birth, slot A
//! confirmed); the full one is `#[ignore]`d and run by `cargo xtask image --test` and
//! `cargo xtask soak` (minutes of software emulation per boot on 2 shared cores).
//!
//! What the full one shows: the agent's birth reaches the controller (boot time printed); a good
//! bundle published in the controller's repository is downloaded, `rauc install`ed into
//! slot B, the device reboots into B (the console shows `rauc.slot=B`), the health gate
//! commits and the birth reports the new version; a deliberately broken bundle (its agent
//! is pointed at a broker port nothing listens on, so it never becomes healthy) goes into
//! slot A, the device boots it, the health gate rolls it back (`rauc status mark-bad` +
//! `mark-active`), the device reboots into B and reports `rolled_back` with the reason and
//! the good version again.
//!
//! The serial console goes to `<cache>/test-boot/console.log` and
//! `<cache>/test-update/console.log` (`GAVEL_IMAGE_CACHE`,
//! default `/var/cache/gavel/image`). Skips with the reason without root, qemu, OVMF or
//! the image tools (`cargo xtask setup --image` installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_hil::device_mqtt::DeviceMqtt;
use gavel_hil::{Broker, Controller, bin, unique};
use gavel_protocol::{Channel, Command as DeviceCommand, CommandBody, PROTOCOL_VERSION};
use sha2_free::sha256_hex;
use time::OffsetDateTime;

/// SHA-256 through `sha256sum` (no hashing crate in this test crate's dependencies).
mod sha2_free {
    use std::path::Path;
    use std::process::Command;

    pub fn sha256_hex(path: &Path) -> String {
        let out = Command::new("sha256sum")
            .arg(path)
            .output()
            .expect("sha256sum runs");
        String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The profile the test image runs: its capabilities run with simulated hardware.
const PROFILE: &str = "ip-camera";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cache() -> PathBuf {
    std::env::var_os("GAVEL_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/gavel/image"))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why this machine cannot build and boot the image, if it cannot.
fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (debootstrap, chroot)".into());
    }
    for t in [
        "qemu-system-x86_64",
        "debootstrap",
        "mksquashfs",
        "sgdisk",
        "mkfs.vfat",
        "mcopy",
        "grub-mkstandalone",
        "rauc",
        "openssl",
        "partx",
    ] {
        if !have(t) {
            return Some(format!("needs `{t}` (cargo xtask setup --image)"));
        }
    }
    for f in [OVMF_CODE, OVMF_VARS] {
        if !Path::new(f).exists() {
            return Some(format!("needs {f} (apt-get install ovmf)"));
        }
    }
    None
}

/// Whether qemu can use KVM here (the device node opens read-write).
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Runs `images/build.sh` with `args`; returns the path it prints last.
fn build(args: &[&str]) -> PathBuf {
    let started = Instant::now();
    let out = Command::new(repo().join("images/build.sh"))
        .arg("--agent")
        .arg(bin("gavel-agent"))
        .args(["--profile", PROFILE, "--out"])
        .arg(cache().join("test-out"))
        .args(args)
        .env("GAVEL_IMAGE_CACHE", cache())
        .stderr(Stdio::inherit())
        .output()
        .expect("images/build.sh runs");
    assert!(
        out.status.success(),
        "images/build.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    println!("built {path} in {:.1} s", started.elapsed().as_secs_f64());
    PathBuf::from(path)
}

/// The serial console, as text so far.
fn console(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The slots the kernel was started from, in boot order (`rauc.slot=X` on each kernel
/// command line the console printed).
fn booted_slots(console_text: &str) -> Vec<String> {
    console_text
        .lines()
        .filter(|l| l.contains("Command line:"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("rauc.slot="))
                .map(str::to_owned)
        })
        .collect()
}

/// The device's power: qemu runs with `-no-reboot`, so a reboot of the guest ends the
/// process, and a supervisor thread starts it again on the same disk and firmware
/// variables (a power cycle). Design: warm resets of OVMF under software emulation were
/// seen to hang here after the guest's `systemctl reboot` (no firmware output for 15
/// min); a cold start each time is what real hardware sees after a reset anyway.
struct Qemu {
    console: PathBuf,
    /// Whether it runs under KVM (else software emulation).
    kvm: bool,
    child: Arc<Mutex<Option<Child>>>,
    stop: Arc<AtomicBool>,
    starts: Arc<AtomicU32>,
    supervisor: Option<std::thread::JoinHandle<()>>,
}

impl Qemu {
    /// Boots `disk` under KVM when `/dev/kvm` opens and a guest really runs there (the
    /// firmware reaches its boot manager within 30 s; nested set-ups can open the device
    /// and still fail every guest), else under software emulation (TCG).
    fn boot(dir: &Path, disk: &Path) -> Self {
        let vars = dir.join("OVMF_VARS.fd");
        let console = dir.join("console.log");
        if kvm_usable() {
            std::fs::copy(OVMF_VARS, &vars).expect("OVMF vars");
            let mut probe = spawn_qemu(disk, &vars, &console, true);
            let until = Instant::now() + Duration::from_secs(30);
            let mut ok = false;
            while Instant::now() < until && !ok {
                ok = self::console(&console).contains("BdsDxe");
                std::thread::sleep(Duration::from_millis(200));
            }
            if ok {
                return Self::supervise(disk, &vars, &console, true, probe);
            }
            eprintln!("KVM opens but runs no guest here: falling back to software emulation");
            let _ = probe.kill();
            let _ = probe.wait();
            let _ = std::fs::remove_file(&console);
        }
        std::fs::copy(OVMF_VARS, &vars).expect("OVMF vars");
        let first = spawn_qemu(disk, &vars, &console, false);
        Self::supervise(disk, &vars, &console, false, first)
    }

    fn supervise(disk: &Path, vars: &Path, console: &Path, kvm: bool, first: Child) -> Self {
        let child = Arc::new(Mutex::new(Some(first)));
        let stop = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicU32::new(1));
        let supervisor = {
            let (child, stop, starts) = (child.clone(), stop.clone(), starts.clone());
            let (disk, vars, console) = (disk.to_owned(), vars.to_owned(), console.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    let mut guard = child.lock().expect("lock");
                    let exited = guard
                        .as_mut()
                        .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                    if exited && !stop.load(Ordering::SeqCst) {
                        *guard = Some(spawn_qemu(&disk, &vars, &console, kvm));
                        starts.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        Self {
            console: console.to_owned(),
            kvm,
            child,
            stop,
            starts,
            supervisor: Some(supervisor),
        }
    }

    fn console(&self) -> String {
        console(&self.console)
    }

    /// How many times the machine was started (1 + reboots).
    fn starts(&self) -> u32 {
        self.starts.load(Ordering::SeqCst)
    }
}

fn spawn_qemu(disk: &Path, vars: &Path, console: &Path, kvm: bool) -> Child {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "q35", "-m", "1536", "-smp", "2", "-no-reboot"])
        .args(if kvm {
            ["-accel", "kvm", "-cpu", "host"]
        } else {
            ["-accel", "tcg", "-cpu", "max"]
        })
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-drive")
        .arg(format!("if=virtio,format=raw,file={}", disk.display()))
        .args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .arg("-chardev")
        .arg(format!("file,id=s0,append=on,path={}", console.display()))
        .args(["-serial", "chardev:s0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().expect("qemu starts")
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.supervisor.take() {
            let _ = s.join();
        }
        if let Some(mut c) = self.child.lock().expect("lock").take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let text = self.console();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!(
                "----- last console lines ({}) -----",
                self.console.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn install_command(version: &str, url: String, bundle: &Path) -> Vec<u8> {
    let size = std::fs::metadata(bundle).expect("bundle").len();
    gavel_protocol::encode(&DeviceCommand {
        v: PROTOCOL_VERSION,
        ts: OffsetDateTime::now_utc(),
        id: unique("cmd"),
        expires: None,
        body: CommandBody::OtaInstall {
            campaign: Some("image".into()),
            version: version.into(),
            url,
            size,
            sha256: sha256_hex(bundle),
            max_bits_per_s: None,
            force: false,
        },
    })
}

/// Publishes `bundle` in the controller's repository; returns the URL the guest fetches.
fn publish(controller: &Controller, bundle: &Path) -> String {
    let (ok, out, err) = controller.gavelctl(&[
        "--json",
        "ota",
        "publish",
        bundle.to_str().expect("utf-8 path"),
    ]);
    assert!(ok, "gavelctl ota publish: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["format"], "raucb", "{v}");
    let name = v["name"].as_str().expect("name");
    // The guest reaches the host's loopback as 10.0.2.2 (qemu user networking).
    let base = controller.url.replace("127.0.0.1", "10.0.2.2");
    format!("{base}/api/v1/ota/bundles/{name}")
}

fn bump(version: &str, minor: u64) -> String {
    let parts: Vec<u64> = version
        .split('.')
        .map(|p| p.parse().expect("numeric version"))
        .collect();
    format!("{}.{}.0", parts[0], parts[1] + minor)
}

/// A factory disk from the recipe, booted in qemu against a controller on the host, its
/// agent born.
struct Booted {
    controller: Controller,
    dev: DeviceMqtt,
    qemu: Qemu,
    accel: &'static str,
}

/// Builds the factory disk (cached by content), provisions a copy for a fresh controller
/// through its config partition, boots it and waits for the agent's birth.
async fn boot_factory(run: &str) -> Booted {
    let factory = env!("CARGO_PKG_VERSION");
    let started = Instant::now();
    let disk = build(&["--disk", "--version", factory]);
    let disk_size = std::fs::metadata(&disk).expect("disk").len();
    let allocated = Command::new("du")
        .args(["-B1", "--"])
        .arg(&disk)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_owned()
        })
        .unwrap_or_default();
    let rootfs = disk.with_extension("rootfs.squashfs");
    println!(
        "disk built in {:.1} s: {disk_size} bytes ({allocated} allocated), rootfs {} bytes",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&rootfs).map(|m| m.len()).unwrap_or(0),
    );

    let dir = cache().join(run);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let controller = Controller::start(&dir, &Broker::Embedded, None).expect("controller");
    let id = unique("image");

    // A copy of the factory disk, provisioned for this controller through its config
    // partition, as a technician would before the first boot.
    let work_disk = dir.join("disk.img");
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(&disk)
        .arg(&work_disk)
        .status()
        .expect("cp");
    assert!(st.success());
    let settings = dir.join("gavel.toml");
    std::fs::write(
        &settings,
        format!(
            "device_id = \"{id}\"\nprofile = \"{PROFILE}\"\nsimulate_hardware = true\n\
             keepalive_s = 5\nhealth_interval_s = 2\n\n[broker]\nhost = \"10.0.2.2\"\nport = {}\n\n\
             [placement]\ncourt = \"image-court\"\nroom = \"room-1\"\n\n[ota]\nhealth_deadline_s = 90\n",
            controller.mqtt.1,
        ),
    )
    .expect("settings");
    let st = Command::new(repo().join("images/provision.sh"))
        .arg(&work_disk)
        .arg(&settings)
        .status()
        .expect("provision.sh");
    assert!(st.success(), "images/provision.sh failed");

    let dev = DeviceMqtt::listen(&controller.mqtt, &id).await;
    let boot_started = Instant::now();
    let qemu = Qemu::boot(&dir, &work_disk);
    let accel = if qemu.kvm {
        "KVM"
    } else {
        "software emulation (TCG)"
    };
    println!("booting {} with {accel}", work_disk.display());

    // First boot: the agent provisions itself from the config partition and is born.
    dev.wait_for(
        "the birth of the booted image",
        Duration::from_secs(900),
        |h| !h.births.is_empty(),
    )
    .await;
    let to_birth = boot_started.elapsed().as_secs_f64();
    assert_eq!(dev.heard.lock().expect("lock").births[0], factory);
    assert_eq!(booted_slots(&qemu.console()), ["A"]);
    let d = controller.device(&id).await.expect("registered");
    assert_eq!(d["profile"], PROFILE, "{d}");
    assert_eq!(d["court"], "image-court", "{d}");
    println!("boot to first birth: {to_birth:.1} s with {accel} (slot A, version {factory})");
    Booted {
        controller,
        dev,
        qemu,
        accel,
    }
}

/// The default suite's version: the recipe's disk boots unattended, provisions itself,
/// its agent is born at the controller, and confirms the slot it booted (so a plain reboot
/// keeps it).
#[tokio::test(flavor = "multi_thread")]
async fn image_built_by_the_recipe_boots_provisions_itself_and_its_agent_is_born() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let b = boot_factory("test-boot").await;
    let until = Instant::now() + Duration::from_secs(300);
    while !b.qemu.console().contains("confirmed the booted slot") {
        assert!(
            Instant::now() < until,
            "the agent did not confirm slot A (rauc mark-good)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let console = b.qemu.console();
    assert!(
        console.contains("provisioned from /run/gavel-config/gavel.toml"),
        "first-boot provisioning"
    );
    println!(
        "image booted with {}: provisioned, born, slot A confirmed",
        b.accel
    );
}

/// The full run (`cargo xtask image --test`, and `cargo xtask soak`): the factory disk
/// plus a good and a deliberately broken bundle from the recipe; update into slot B,
/// commit; broken update into slot A, rolled back to B.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "minutes under software emulation: cargo xtask image --test or cargo xtask soak"]
async fn image_updates_into_the_other_slot_commits_and_rolls_back_a_broken_update() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let factory = env!("CARGO_PKG_VERSION");
    let good = bump(factory, 1);
    let broken = bump(factory, 2);
    // Both bundles from the recipe, in this run.
    let good_bundle = build(&["--bundle", "--version", &good]);
    let broken_bundle = build(&["--bundle", "--version", &broken, "--variant", "unhealthy"]);
    println!(
        "bundles built in {:.1} s: {} bytes each",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&good_bundle).expect("bundle").len()
    );
    let Booted {
        controller,
        dev,
        qemu,
        accel,
    } = boot_factory("test-update").await;
    let slow = 4;

    // A good update: downloaded from the controller, written to slot B by RAUC, rebooted
    // into, committed by the health gate.
    let url = publish(&controller, &good_bundle);
    let update_started = Instant::now();
    dev.publish(
        Channel::Cmd,
        false,
        install_command(&good, url, &good_bundle),
    )
    .await;
    dev.wait_for(
        "the commit of the good update",
        Duration::from_secs(300 * slow),
        |h| h.ota.iter().any(|(s, _)| s == "committed"),
    )
    .await;
    dev.wait_for(
        "a birth with the new version",
        Duration::from_secs(30 * slow),
        |h| h.births.contains(&good),
    )
    .await;
    println!(
        "update {factory} -> {good}: installed, rebooted, committed in {:.1} s",
        update_started.elapsed().as_secs_f64()
    );
    assert_eq!(booted_slots(&qemu.console()), ["A", "B"]);
    assert!(qemu.starts() >= 2, "the machine rebooted for the update");
    {
        let h = dev.heard.lock().expect("lock");
        let stages = h.stages();
        for s in ["downloading", "installing", "rebooting", "committed"] {
            assert!(stages.iter().any(|x| x == s), "no {s}: {:?}", h.ota);
        }
        assert!(
            !stages.iter().any(|s| s == "rolled_back" || s == "rejected"),
            "{:?}",
            h.ota
        );
    }

    // A broken update: its agent never becomes healthy, so the gate rolls it back and
    // the device boots the good slot again.
    let url = publish(&controller, &broken_bundle);
    let rollback_started = Instant::now();
    dev.publish(
        Channel::Cmd,
        false,
        install_command(&broken, url, &broken_bundle),
    )
    .await;
    dev.wait_for(
        "the rollback of the broken update",
        Duration::from_secs(400 * slow),
        |h| h.ota.iter().any(|(s, _)| s == "rolled_back"),
    )
    .await;
    println!(
        "broken update {broken}: installed, booted, rolled back in {:.1} s",
        rollback_started.elapsed().as_secs_f64()
    );
    assert!(
        dev.heard_ota("rolled_back", "not healthy within"),
        "{:?}",
        dev.heard.lock().expect("lock").ota
    );
    dev.wait_for(
        "a birth with the good version after the rollback",
        Duration::from_secs(60 * slow),
        |h| h.births.last().is_some_and(|v| *v == good) && h.births.len() >= 3,
    )
    .await;
    assert_eq!(booted_slots(&qemu.console()), ["A", "B", "A", "B"]);
    let h = dev.heard.lock().expect("lock");
    assert!(
        !h.births.contains(&broken),
        "the broken version never reported healthy: {:?}",
        h.births
    );
    println!("ota events: {:?}", h.ota);
    println!("machine started {} times", qemu.starts());
    println!("births: {:?}", h.births);
    println!(
        "whole run (build + boots) {:.1} s with {accel}",
        started.elapsed().as_secs_f64()
    );
    drop(qemu);
}
