//! A RAUC test rig, as RAUC's own tests build one (feature `test-rig`; tests only, it
//! panics when the set-up fails): a throw-away PKI made with `openssl` in a temp dir (a
//! `release` and a `rogue` certificate); a `system.conf` with two file-backed raw slots
//! (`rootfs.0`/`A`, `rootfs.1`/`B`) and the `custom` bootloader backend, a small shell
//! stub keeping the boot order, each slot's state (good, on trial with tries left, bad)
//! and the booted slot in a file; `rauc service` on a private D-Bus bus (a `dbus-daemon`
//! started here with its own config allowing `de.pengutronix.rauc`), reached through
//! `DBUS_SYSTEM_BUS_ADDRESS`, so the host's system bus is never touched. A "reboot"
//! ([`Rig::reboot`]) stops the service, lets the stub's rules choose a slot (spending a
//! try on an unconfirmed one) and starts the service again with `--override-boot-slot`.
//!
//! Bundles are `format=plain`: `verity` needs device-mapper (`/dev/mapper/control`),
//! which the build machines lack. Needs root, `rauc`, `openssl`, `mksquashfs` and
//! `dbus-daemon`: [`missing`] says what is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::rauc::{Rauc, RaucInstaller};

/// The rig's `compatible`.
pub const COMPATIBLE: &str = "gavel-test-terminal";
const SLOT_SIZE: usize = 512 * 1024;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why this machine cannot run RAUC for real, if it cannot.
pub fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (loop devices, squashfs mounts)".into());
    }
    for t in ["rauc", "openssl", "mksquashfs", "dbus-daemon"] {
        if !have(t) {
            return Some(format!(
                "needs `{t}` (apt-get install rauc squashfs-tools openssl dbus)"
            ));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("needs loop devices (/dev/loop-control)".into());
    }
    None
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn cert(dir: &Path, name: &str) {
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key.pem")))
        .arg("-out")
        .arg(dir.join(format!("{name}.cert.pem")))
        .args(["-subj", &format!("/O=Gavel test/CN=gavel-test-{name}")]));
}

/// The custom bootloader backend: RAUC calls it with get-primary, set-primary, get-state,
/// set-state (and get-current). Rules as barebox's bootchooser and `FileBootloader`:
/// set-primary makes a slot that is not good "try" with 3 tries; set-state bad makes it
/// unbootable and, if it was primary, makes the other one primary.
const STUB: &str = r#"#!/bin/sh
set -e
S="__STATE__"
echo "$*" >> "$S.log"
. "$S"
case "$2" in A|B|"") ;; *) echo "unknown slot $2" >&2; exit 1 ;; esac
other() { if [ "$1" = A ]; then echo B; else echo A; fi; }
save() {
  printf 'primary=%s\nA_state=%s\nA_tries=%s\nB_state=%s\nB_tries=%s\nbooted=%s\n' \
    "$primary" "$A_state" "$A_tries" "$B_state" "$B_tries" "$booted" > "$S.tmp"
  mv "$S.tmp" "$S"
}
case "$1" in
  get-primary) echo "$primary" ;;
  get-current) echo "$booted" ;;
  get-state) eval st=\$${2}_state; if [ "$st" = bad ]; then echo bad; else echo good; fi ;;
  set-primary)
    primary=$2
    eval st=\$${2}_state
    if [ "$st" != good ]; then eval ${2}_state=try; eval ${2}_tries=3; fi
    save ;;
  set-state)
    if [ "$3" = good ]; then eval ${2}_state=good
    else
      eval ${2}_state=bad; eval ${2}_tries=0
      if [ "$primary" = "$2" ]; then primary=$(other "$2"); fi
    fi
    save ;;
  *) echo "unknown command $1" >&2; exit 1 ;;
esac
"#;

/// A device with RAUC: PKI, slots, stub bootloader, private bus, `rauc service` (booted
/// from slot A). Dropping it stops the service and the bus and unmounts what is left.
pub struct Rig {
    dir: tempfile::TempDir,
    dbus: Child,
    service: Option<Child>,
    bus: String,
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    /// Sets the device up in a temp dir and starts `rauc service` on slot A.
    pub fn new() -> Self {
        Self::with_compatible(COMPATIBLE)
    }

    /// As [`Rig::new`], for a system whose `compatible` is `compatible` (e.g.
    /// `gavel-ip-camera`, the form the controller maps to a device profile).
    pub fn with_compatible(compatible: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        cert(d, "release");
        cert(d, "rogue");
        // Slot A holds the factory image, slot B is empty.
        std::fs::write(d.join("slot-a.img"), pattern(SLOT_SIZE, 1)).unwrap();
        std::fs::write(d.join("slot-b.img"), vec![0u8; SLOT_SIZE]).unwrap();
        std::fs::write(
            d.join("boot.state"),
            "primary=A\nA_state=good\nA_tries=0\nB_state=bad\nB_tries=0\nbooted=A\n",
        )
        .unwrap();
        let stub = d.join("bootloader-stub.sh");
        std::fs::write(
            &stub,
            STUB.replace("__STATE__", &d.join("boot.state").display().to_string()),
        )
        .unwrap();
        run(Command::new("chmod").arg("755").arg(&stub));
        // RAUC's pre-install handler: sleeps while `slow-install` names seconds, so a test
        // can catch the service in the middle of an install.
        let pre = d.join("pre-install.sh");
        std::fs::write(
            &pre,
            format!(
                "#!/bin/sh\nf=\"{}\"\nif [ -f \"$f\" ]; then sleep \"$(cat \"$f\")\"; fi\n",
                d.join("slow-install").display()
            ),
        )
        .unwrap();
        run(Command::new("chmod").arg("755").arg(&pre));
        std::fs::create_dir_all(d.join("mnt")).unwrap();
        std::fs::write(
            d.join("system.conf"),
            format!(
                "[system]\ncompatible={compatible}\nbootloader=custom\nmountprefix={mnt}\n\
                 statusfile={d}/status.raucs\nbundle-formats=plain verity\n\n\
                 [keyring]\npath={d}/release.cert.pem\n\n\
                 [handlers]\nbootloader-custom-backend={stub}\npre-install={pre}\n\n\
                 [slot.rootfs.0]\ndevice={d}/slot-a.img\ntype=raw\nbootname=A\n\n\
                 [slot.rootfs.1]\ndevice={d}/slot-b.img\ntype=raw\nbootname=B\n",
                mnt = d.join("mnt").display(),
                d = d.display(),
                stub = stub.display(),
                pre = pre.display(),
            ),
        )
        .unwrap();
        // A private bus of type "system" that lets anyone own and call anything.
        let socket = d.join("bus");
        std::fs::write(
            d.join("bus.conf"),
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="de.pengutronix.rauc"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let dbus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", d.join("bus.conf").display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < until, "dbus-daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut rig = Rig {
            bus: format!("unix:path={}", socket.display()),
            dir,
            dbus,
            service: None,
        };
        rig.start_service("A");
        rig
    }

    /// A file of the rig (`system.conf`, `slot-a.img`, `boot.state`, `release.cert.pem`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The private bus's address (`DBUS_SYSTEM_BUS_ADDRESS` for anything running `rauc`).
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// A `rauc` driver for this rig (its `system.conf`, its bus).
    pub fn rauc(&self) -> Rauc {
        Rauc::system()
            .with_conf(&self.path("system.conf"))
            .with_env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
    }

    /// The backend as the agent builds it (journal in `agent-ota/`); call again for each
    /// "agent start".
    pub fn backend(&self) -> RaucInstaller {
        let state = self.path("agent-ota");
        std::fs::create_dir_all(&state).unwrap();
        RaucInstaller::new(self.rauc(), &state).with_factory_version("1.0.0".parse().unwrap())
    }

    /// Starts `rauc service` as booted from `booted` (`A`/`B`) and waits until it answers.
    pub fn start_service(&mut self, booted: &str) {
        let log = std::fs::File::create(self.path(&format!("service-{booted}.log"))).unwrap();
        let child = Command::new("rauc")
            .arg(format!("--conf={}", self.path("system.conf").display()))
            .arg("service")
            .arg(format!("--override-boot-slot={booted}"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.service = Some(child);
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(st) = self.rauc().status_detailed() {
                assert_eq!(st.booted, booted);
                return;
            }
            assert!(Instant::now() < until, "rauc service did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops `rauc service` (SIGTERM, then SIGKILL).
    pub fn stop_service(&mut self) {
        if let Some(mut c) = self.service.take() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The stub bootloader's state (`primary`, `A_state`, `A_tries`, ..., `booted`).
    pub fn state(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.path("boot.state"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Power cycle: the stub's rules choose a slot (spending a try on an unconfirmed
    /// one), then the system comes up on it (`rauc service --override-boot-slot`).
    pub fn reboot(&mut self) -> String {
        self.stop_service();
        let mut s = self.state();
        let primary = s["primary"].clone();
        let other = if primary == "A" { "B" } else { "A" }.to_owned();
        let mut chosen = None;
        for slot in [primary, other] {
            let st = s[&format!("{slot}_state")].clone();
            let tries: u32 = s[&format!("{slot}_tries")].parse().unwrap();
            if st == "good" {
                chosen = Some(slot);
                break;
            }
            if st == "try" && tries > 0 {
                s.insert(format!("{slot}_tries"), (tries - 1).to_string());
                chosen = Some(slot);
                break;
            }
            if st == "try" {
                s.insert(format!("{slot}_state"), "bad".into());
            }
        }
        let chosen = chosen.expect("no bootable slot");
        s.insert("booted".into(), chosen.clone());
        let text: String = [
            "primary", "A_state", "A_tries", "B_state", "B_tries", "booted",
        ]
        .iter()
        .map(|k| format!("{k}={}\n", s[*k]))
        .collect();
        std::fs::write(self.path("boot.state"), text).unwrap();
        self.start_service(&chosen);
        chosen
    }

    /// Both slots, the boot state and RAUC's status file, hashed.
    pub fn device(&self) -> BTreeMap<&'static str, String> {
        ["slot-a.img", "slot-b.img", "boot.state", "status.raucs"]
            .into_iter()
            .map(|f| {
                let bytes = std::fs::read(self.path(f)).unwrap_or_default();
                (f, crate::bundle::sha256(&bytes))
            })
            .collect()
    }

    /// What RAUC asked of the bootloader stub so far.
    pub fn boot_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("boot.state.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Builds a bundle with `rauc bundle`, signed by `signer`.
    pub fn bundle(
        &self,
        name: &str,
        compatible: &str,
        version: &str,
        image: &[u8],
        signer: &str,
    ) -> PathBuf {
        let content = self.path(&format!("content-{name}"));
        std::fs::create_dir_all(&content).unwrap();
        std::fs::write(content.join("rootfs.img"), image).unwrap();
        std::fs::write(
            content.join("manifest.raucm"),
            format!(
                "[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=plain\n\n\
                 [image.rootfs]\nfilename=rootfs.img\n"
            ),
        )
        .unwrap();
        let out = self.path(&format!("{name}.raucb"));
        run(Command::new("rauc")
            .arg("bundle")
            .arg(format!(
                "--cert={}",
                self.path(&format!("{signer}.cert.pem")).display()
            ))
            .arg(format!(
                "--key={}",
                self.path(&format!("{signer}.key.pem")).display()
            ))
            .arg(&content)
            .arg(&out));
        out
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop_service();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
        // A bundle RAUC left mounted (a failed run) must not outlive the test.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let prefix = self.dir.path().display().to_string();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if m.starts_with(&prefix) {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
        }
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}
