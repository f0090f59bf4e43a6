//! Power cut during an install: a child process (this test binary re-executed) runs the
//! installer, or the whole simulated device (install, reboot, health gate, commit), and
//! the parent kills it with SIGKILL at random points. The parent then powers the device
//! on (the stub bootchooser picks a slot) and checks that the slot it boots is intact and
//! that the installer reports what happened.
//!
//! 20 kills per mode by default; `GAVEL_OTA_KILLS=500` for a longer run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gavel_ota::bootchooser::Bootloader;
use gavel_ota::install::{BootOutcome, InstallOptions, Stage};

const LEN: usize = 2 * 1024 * 1024;

/// What the child does until it is killed or finishes. It prints `mark` at every step
/// boundary (and every 256 KiB written) so the parent can aim its kills at every stage.
fn child(mode: &str, dev: &Path, bundle: &Path) {
    let mark = || println!("mark");
    let mut inst = reopen(dev);
    if mode == "device" {
        inst.boot.boot().unwrap();
        inst.after_boot().unwrap();
    }
    println!("ready");
    let mut next = 0u64;
    let mut pace = |done: u64| {
        if done >= next {
            next += 256 * 1024;
            mark();
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    inst.install(bundle, &InstallOptions::default(), &mut pace)
        .unwrap();
    mark();
    if mode == "device" {
        inst.boot.boot().unwrap();
        mark();
        if let BootOutcome::PendingCommit { .. } = inst.after_boot().unwrap() {
            mark();
            inst.commit().unwrap();
        }
    }
    mark();
}

#[test]
fn power_cut_child() {
    let Ok(spec) = std::env::var("GAVEL_OTA_CHILD") else {
        return;
    };
    let mut it = spec.splitn(3, '|');
    let (mode, dev, bundle) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    child(mode, Path::new(dev), Path::new(bundle));
}

fn spawn(mode: &str, dev: &Path, bundle: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "power_cut_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "GAVEL_OTA_CHILD",
            format!("{mode}|{}|{}", dev.display(), bundle.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for the child's `ready` line; returns the reader for the rest.
fn wait_ready(c: &mut std::process::Child) -> BufReader<std::process::ChildStdout> {
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "child exited before ready"
        );
        if line.trim().ends_with("ready") {
            return r;
        }
    }
}

/// Reads `n` marks (or fewer if the child ends first); returns how many were read.
fn read_marks(r: &mut BufReader<std::process::ChildStdout>, n: usize) -> usize {
    let mut line = String::new();
    let mut seen = 0;
    while seen < n {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.trim().ends_with("mark") {
            seen += 1;
        }
    }
    seen
}

fn run(mode: &str) {
    let kills: usize = std::env::var("GAVEL_OTA_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let v1 = image(LEN, 0);
    let v2 = image(LEN, 5);
    let bdir = tmp.path().join("bundles");
    std::fs::create_dir_all(&bdir).unwrap();
    let b = bundle(&bdir, "v2", "2.0.0", &v2, &[PROFILE], None, "release");
    let (h1, h2) = (
        gavel_ota::bundle::sha256(&v1),
        gavel_ota::bundle::sha256(&v2),
    );

    // One run to completion sets the range the kills are drawn from.
    let dev0 = tmp.path().join("dev0");
    std::fs::create_dir_all(&dev0).unwrap();
    device(&dev0, &v1, "1.0.0");
    let mut c = spawn(mode, &dev0, &b);
    let mut r = wait_ready(&mut c);
    let t0 = Instant::now();
    let marks = read_marks(&mut r, usize::MAX);
    assert!(c.wait().unwrap().success());
    let full = t0.elapsed().as_micros() as u64 + 1;
    // Kill points: after a random mark, plus a random delay up to one step's length.
    let step = full / marks as u64 + 1;

    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for i in 0..kills {
        let dev = tmp.path().join(format!("dev{}", i + 1));
        std::fs::create_dir_all(&dev).unwrap();
        device(&dev, &v1, "1.0.0");
        let mut c = spawn(mode, &dev, &b);
        let mut r = wait_ready(&mut c);
        read_marks(&mut r, rng.usize(0..marks));
        std::thread::sleep(Duration::from_micros(rng.u64(0..step)));
        unsafe {
            libc::kill(c.id() as i32, libc::SIGKILL);
        }
        let _ = c.wait();

        // Power on.
        let mut inst = reopen(&dev);
        let booted = inst.boot.boot().expect("a bootable slot");
        let info = inst.slots.info(booted).unwrap();
        let on_disk = inst.slots.hash_image(booted, info.size).unwrap();
        assert_eq!(
            Some(&on_disk),
            info.sha256.as_ref(),
            "kill {i}: booted slot {booted} is not intact"
        );
        assert!(
            on_disk == h1 || on_disk == h2,
            "kill {i}: booted slot holds an unknown image"
        );
        let state = inst.boot.load().unwrap();
        assert!(state.slot(booted).bootable);
        let outcome = inst.after_boot().unwrap();
        let label = match &outcome {
            BootOutcome::Idle => "idle (killed before the install began)".to_string(),
            BootOutcome::Interrupted(j) => {
                assert_eq!(on_disk, h1, "interrupted install must boot the old image");
                format!(
                    "interrupted while writing slot {} with {}, booted the old slot",
                    j.slot, j.version
                )
            }
            BootOutcome::PendingCommit { .. } => {
                assert_eq!(on_disk, h2);
                inst.commit().unwrap();
                "booted new slot, pending commit -> committed".into()
            }
            BootOutcome::Settled(j) => {
                assert!(
                    matches!(j.stage, Stage::Committed | Stage::Interrupted),
                    "{j:?}"
                );
                format!("settled: {:?}", j.stage)
            }
            BootOutcome::RolledBack(j) => panic!("unexpected rollback {j:?}"),
            BootOutcome::PendingReboot { version, slot } => {
                panic!("kill {i}: after a boot, {version} in slot {slot} still waits for a reboot")
            }
        };
        *outcomes.entry(label).or_default() += 1;
    }
    println!(
        "{mode}: {kills} kills over a {} ms run with {marks} marks:",
        full / 1000
    );
    for (k, n) in outcomes {
        println!("  {n:3}  {k}");
    }
}

#[test]
fn sigkill_of_the_installer_at_random_points_always_leaves_a_good_slot() {
    if std::env::var("GAVEL_OTA_CHILD").is_ok() {
        return;
    }
    run("installer");
}

#[test]
fn sigkill_of_the_simulated_device_at_random_points_always_boots_a_good_slot() {
    if std::env::var("GAVEL_OTA_CHILD").is_ok() {
        return;
    }
    run("device");
}
