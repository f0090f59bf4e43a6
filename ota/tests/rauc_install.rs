//! The RAUC backend (`gavel_ota::rauc::RaucInstaller`, the one the agent uses with
//! `[ota] backend = "rauc"`) against the real RAUC (Debian package `rauc`), as RAUC's own
//! tests do it:
//!
//! - a throw-away PKI made with `openssl` in a temp dir (a release and a rogue certificate);
//! - a `system.conf` with two file-backed raw slots (`rootfs.0`/`A`, `rootfs.1`/`B`) and
//!   the `custom` bootloader backend: a small shell stub keeping the boot order, each slot's
//!   state (good, on trial with tries left, bad) and the booted slot in a file;
//! - `rauc service` on a private D-Bus bus (a `dbus-daemon` started here, its own config
//!   allowing `de.pengutronix.rauc`), reached through `DBUS_SYSTEM_BUS_ADDRESS`, so the
//!   host's system bus is never touched;
//! - a "reboot" is: stop the service, let the stub's rules choose a slot (spending a try
//!   on an unconfirmed one), start the service again with `--override-boot-slot`.
//!
//! Bundles are `format=plain`: `verity` needs device-mapper (`/dev/mapper/control`), which
//! these machines lack. Needs root (loop devices and squashfs mounts), `rauc`, `openssl`,
//! `mksquashfs` and `dbus-daemon`; skips with the reason when one is missing.

use std::path::Path;
use std::time::{Duration, Instant};

use gavel_ota::backend::UpdateBackend;
use gavel_ota::health::{HealthGate, HealthSample, Verdict};
use gavel_ota::install::{BootOutcome, InstallError, InstallOptions, Stage};
use gavel_ota::rauc::RaucInstaller;
use gavel_ota::rauc_rig::{COMPATIBLE, Rig, missing};
use gavel_ota::slot::SlotName;

macro_rules! require_rauc {
    () => {
        if let Some(why) = missing() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Tries `install`, expects a refusal naming `what`, and checks nothing on the device
/// (slots, boot state, RAUC's status) changed and the bootloader was not asked to change.
fn refused(rig: &Rig, backend: &mut RaucInstaller, bundle: &Path, what: &str) -> InstallError {
    let before = rig.device();
    let calls = rig.boot_calls().len();
    let journal = backend.journal().unwrap();
    let err = backend
        .install(bundle, &InstallOptions::default())
        .expect_err("install should be refused");
    let text = err.to_string();
    assert!(text.contains(what), "refusal should name {what:?}: {text}");
    assert_eq!(rig.device(), before, "device changed after: {text}");
    let changes: Vec<String> = rig.boot_calls()[calls..]
        .iter()
        .filter(|c| c.starts_with("set-"))
        .cloned()
        .collect();
    assert!(changes.is_empty(), "bootloader changed: {changes:?}");
    assert_eq!(backend.journal().unwrap(), journal, "journal changed");
    println!("refused ({what}): {text}");
    err
}

#[test]
fn rauc_installs_a_good_bundle_into_the_inactive_slot_and_refuses_bad_ones_untouched() {
    require_rauc!();
    let mut rig = Rig::new();
    let mut backend = rig.backend();
    let running = backend.running().unwrap();
    assert_eq!(running.slot, SlotName::A);
    assert_eq!(
        running.version.map(|v| v.to_string()).as_deref(),
        Some("1.0.0")
    );
    let factory = std::fs::read(rig.path("slot-a.img")).unwrap();
    let v2 = pattern(300 * 1024, 2);

    // Refused, nothing written anywhere.
    let rogue = rig.bundle("rogue", COMPATIBLE, "2.0.0", &v2, "rogue");
    refused(&rig, &mut backend, &rogue, "signature");
    let good = rig.bundle("good", COMPATIBLE, "2.0.0", &v2, "release");
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[4096] ^= 0x55; // inside the squashfs image the signature covers
    let tampered = rig.path("tampered.raucb");
    std::fs::write(&tampered, &bytes).unwrap();
    refused(&rig, &mut backend, &tampered, "signature");
    let other = rig.bundle("other", "gavel-other-device", "2.0.0", &v2, "release");
    let err = refused(&rig, &mut backend, &other, "gavel-other-device");
    assert!(
        matches!(err, InstallError::IncompatibleProfile { .. }),
        "{err}"
    );
    // RAUC itself refuses it too, should anything skip our check.
    let before = rig.device();
    let err = rig.rauc().install(&other).expect_err("rauc refuses");
    assert!(err.to_string().contains("ompatible"), "{err}");
    assert_eq!(rig.device(), before);
    println!("rauc install itself: {err}");
    let old = rig.bundle("old", COMPATIBLE, "0.9.0", &v2, "release");
    let err = refused(&rig, &mut backend, &old, "not newer");
    assert!(matches!(err, InstallError::Downgrade { .. }), "{err}");
    let bad_version = rig.bundle("free-text", COMPATIBLE, "2024.11-rc1", &v2, "release");
    refused(&rig, &mut backend, &bad_version, "MAJOR.MINOR.PATCH");

    // The good bundle: checked, written into the inactive slot B, B is the boot target.
    assert_eq!(
        backend
            .check(&good, &InstallOptions::default())
            .unwrap()
            .to_string(),
        "2.0.0"
    );
    let calls = rig.boot_calls().len();
    let started = Instant::now();
    let report = backend.install(&good, &InstallOptions::default()).unwrap();
    println!(
        "rauc install of {} bytes took {} ms",
        report.written,
        started.elapsed().as_millis()
    );
    assert_eq!(report.slot, SlotName::B);
    assert_eq!(report.written, v2.len() as u64);
    let b = std::fs::read(rig.path("slot-b.img")).unwrap();
    assert_eq!(&b[..v2.len()], &v2[..], "slot B holds the image");
    assert_eq!(
        std::fs::read(rig.path("slot-a.img")).unwrap(),
        factory,
        "slot A untouched"
    );
    let s = rig.state();
    assert_eq!((s["primary"].as_str(), s["B_state"].as_str()), ("B", "try"));
    let changes: Vec<String> = rig.boot_calls()[calls..]
        .iter()
        .filter(|c| c.starts_with("set-"))
        .cloned()
        .collect();
    assert_eq!(
        changes,
        ["set-state B bad", "set-primary B"],
        "unbootable while written, then switched"
    );
    assert_eq!(backend.journal().unwrap().unwrap().stage, Stage::Activated);

    // The agent restarts before the reboot: the switch is found pending, nothing changes.
    let before = rig.device();
    let mut backend = rig.backend();
    assert_eq!(
        backend.after_boot().unwrap(),
        BootOutcome::PendingReboot {
            version: "2.0.0".parse().unwrap(),
            slot: SlotName::B
        }
    );
    assert_eq!(rig.device(), before);

    // Reboot: B on trial; healthy, so committed with `rauc status mark-good`.
    assert_eq!(rig.reboot(), "B");
    let mut backend = rig.backend();
    assert!(matches!(
        backend.after_boot().unwrap(),
        BootOutcome::PendingCommit { .. }
    ));
    let j = backend.commit().unwrap();
    assert_eq!(j.stage, Stage::Committed);
    assert_eq!(rig.state()["B_state"], "good");
    assert_eq!(rig.reboot(), "B", "a committed slot keeps booting");
    let mut backend = rig.backend();
    assert!(matches!(
        backend.after_boot().unwrap(),
        BootOutcome::Settled(_)
    ));
    let running = backend.running().unwrap();
    assert_eq!(running.slot, SlotName::B);
    assert_eq!(
        running.version.map(|v| v.to_string()).as_deref(),
        Some("2.0.0")
    );
}

#[test]
fn rauc_slot_that_fails_its_health_check_is_marked_bad_and_the_old_slot_boots_again() {
    require_rauc!();
    let mut rig = Rig::new();
    let mut backend = rig.backend();
    let v2 = pattern(200 * 1024, 3);
    let good = rig.bundle("v2", COMPATIBLE, "2.0.0", &v2, "release");
    backend.install(&good, &InstallOptions::default()).unwrap();
    assert_eq!(rig.reboot(), "B");

    // The new agent never gets healthy: the gate's deadline passes, RAUC marks it bad.
    let mut backend = rig.backend();
    assert!(matches!(
        backend.after_boot().unwrap(),
        BootOutcome::PendingCommit { .. }
    ));
    let mut gate = HealthGate::new(Duration::from_secs(10));
    let sick = HealthSample {
        broker_connected: true,
        capabilities: vec![("record".into(), false)],
    };
    assert_eq!(gate.on_sample(Duration::from_secs(2), &sick), Verdict::Wait);
    let Verdict::Rollback { reason } = gate.on_sample(Duration::from_secs(11), &sick) else {
        panic!("the gate should give up");
    };
    let j = backend.rollback(&reason).unwrap();
    assert!(
        matches!(&j.stage, Stage::RolledBack { reason } if reason.contains("record")),
        "{j:?}"
    );
    let s = rig.state();
    assert_eq!((s["primary"].as_str(), s["B_state"].as_str()), ("A", "bad"));
    assert_eq!(rig.reboot(), "A", "back on the old slot");
    let mut backend = rig.backend();
    match backend.after_boot().unwrap() {
        BootOutcome::Settled(j) => {
            assert!(matches!(&j.stage, Stage::RolledBack { reason } if reason.contains("record")))
        }
        other => panic!("expected the settled rollback, got {other:?}"),
    }
    assert_eq!(backend.running().unwrap().slot, SlotName::A);

    // A new slot that never comes up (no agent ever commits it): the stub bootloader
    // gives up after its tries and the agent on the old slot reports it.
    let v3 = pattern(200 * 1024, 4);
    let b3 = rig.bundle("v3", COMPATIBLE, "3.0.0", &v3, "release");
    let mut backend = rig.backend();
    backend.install(&b3, &InstallOptions::default()).unwrap();
    for _ in 0..3 {
        assert_eq!(rig.reboot(), "B", "tries left");
    }
    assert_eq!(rig.reboot(), "A", "out of tries");
    let mut backend = rig.backend();
    match backend.after_boot().unwrap() {
        BootOutcome::RolledBack(j) => {
            assert!(
                matches!(&j.stage, Stage::RolledBack { reason } if reason.contains("boot attempts")),
                "{j:?}"
            );
            println!("reported: {:?}", j.stage);
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(rig.state()["B_state"], "bad");
}

/// `rauc service` goes on installing when its client dies: an agent restarted in the
/// middle of `rauc install` (journal `Writing`) waits until RAUC is idle, then finds the
/// install finished (a pending reboot), instead of calling it interrupted.
#[test]
fn agent_restarted_while_rauc_still_installs_waits_and_finds_the_install_finished() {
    require_rauc!();
    let rig = Rig::new();
    let v2 = pattern(200 * 1024, 5);
    let b = rig.bundle("v2", COMPATIBLE, "2.0.0", &v2, "release");
    std::fs::write(rig.path("slow-install"), "3").unwrap();
    // What the agent had written before it died: the journal, then `rauc install`.
    let state = rig.path("agent-ota");
    std::fs::create_dir_all(&state).unwrap();
    let writing = gavel_ota::install::Journal {
        stage: Stage::Writing,
        version: "2.0.0".parse().unwrap(),
        from: Some("1.0.0".parse().unwrap()),
        slot: SlotName::B,
    };
    std::fs::write(
        state.join("install.json"),
        serde_json::to_vec(&writing).unwrap(),
    )
    .unwrap();
    let mut client = std::process::Command::new("rauc")
        .arg("install")
        .arg(&b)
        .env("DBUS_SYSTEM_BUS_ADDRESS", rig.bus())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.rauc().operation().unwrap() != "installing" {
        assert!(Instant::now() < deadline, "rauc never started installing");
        std::thread::sleep(Duration::from_millis(20));
    }
    client.kill().unwrap(); // the agent dies; the service goes on
    let _ = client.wait();

    let started = Instant::now();
    let outcome = rig.backend().after_boot().unwrap();
    println!(
        "after_boot waited {} ms for rauc to finish",
        started.elapsed().as_millis()
    );
    assert_eq!(
        outcome,
        BootOutcome::PendingReboot {
            version: "2.0.0".parse().unwrap(),
            slot: SlotName::B
        }
    );
    assert_eq!(rig.rauc().operation().unwrap(), "idle");
    assert_eq!(
        rig.backend().journal().unwrap().unwrap().stage,
        Stage::Activated
    );
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    assert_eq!(&slot_b[..v2.len()], &v2[..]);
}

/// Boot-counting bootloaders (the image's GRUB script sets `X_TRY=1` at every boot) need
/// the running system to confirm the slot it booted: the backend does it after a start
/// with nothing on trial, and only then, so a slot on trial is left to the health gate.
#[test]
fn a_start_with_nothing_on_trial_confirms_the_booted_slot_and_a_trial_is_left_to_the_gate() {
    require_rauc!();
    let mut rig = Rig::new();
    // The bootloader no longer calls the booted slot good (as GRUB after X_TRY=1).
    rig.rauc().mark("mark-bad", "booted").unwrap();
    assert_eq!(rig.state()["A_state"], "bad");
    let mut backend = rig.backend();
    assert!(matches!(backend.after_boot().unwrap(), BootOutcome::Idle));
    assert_eq!(rig.state()["A_state"], "good", "{:?}", rig.boot_calls());
    assert!(
        rig.boot_calls().iter().any(|c| c == "set-state A good"),
        "{:?}",
        rig.boot_calls()
    );
    // Already good: nothing is written at the next start.
    let calls = rig.boot_calls().len();
    assert!(matches!(
        rig.backend().after_boot().unwrap(),
        BootOutcome::Idle
    ));
    assert_eq!(
        rig.boot_calls()
            .iter()
            .skip(calls)
            .filter(|c| c.starts_with("set-"))
            .count(),
        0,
        "{:?}",
        rig.boot_calls()
    );

    // A new slot on trial is not confirmed at its start: only the gate commits it.
    let v2 = pattern(200 * 1024, 7);
    let b2 = rig.bundle("v2", COMPATIBLE, "2.0.0", &v2, "release");
    backend.install(&b2, &InstallOptions::default()).unwrap();
    assert_eq!(rig.reboot(), "B");
    let calls = rig.boot_calls().len();
    let mut backend = rig.backend();
    assert!(matches!(
        backend.after_boot().unwrap(),
        BootOutcome::PendingCommit { .. }
    ));
    assert!(
        !rig.boot_calls()
            .iter()
            .skip(calls)
            .any(|c| c.starts_with("set-state B")),
        "{:?}",
        rig.boot_calls()
    );
    assert_eq!(rig.state()["B_state"], "try");
}
