//! Installer must-shows: every bad bundle is refused with a clear error and nothing is
//! written anywhere on the device; good bundles install, switch, commit; an unhealthy
//! new slot is rolled back automatically with the reason.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use gavel_ota::InstallError;
use gavel_ota::bootchooser::Bootloader;
use gavel_ota::bundle::{self, BundleError};
use gavel_ota::health::{HealthGate, HealthSample, Verdict};
use gavel_ota::install::{BootOutcome, InstallOptions, Stage};
use gavel_ota::signature::SignatureError;
use gavel_ota::slot::SlotName;

const LEN: usize = 256 * 1024;

struct Case {
    _tmp: tempfile::TempDir,
    dev: std::path::PathBuf,
    bundles: std::path::PathBuf,
    v1: Vec<u8>,
    v2: Vec<u8>,
}

fn case() -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("dev");
    let bundles = tmp.path().join("bundles");
    fs::create_dir_all(&dev).unwrap();
    fs::create_dir_all(&bundles).unwrap();
    let v1 = image(LEN, 0);
    let v2 = image(LEN, 7);
    device(&dev, &v1, "1.0.0");
    Case {
        _tmp: tmp,
        dev,
        bundles,
        v1,
        v2,
    }
}

/// Runs the install, expects a refusal, and checks no file of the device changed.
fn refused(c: &Case, bundle: &std::path::Path, force: bool) -> InstallError {
    let before = snapshot(&c.dev);
    let mut inst = reopen(&c.dev);
    let opts = InstallOptions {
        force,
        ..Default::default()
    };
    let err = inst
        .install(bundle, &opts, &mut |_| panic!("wrote to a slot"))
        .expect_err("install should be refused");
    assert_eq!(
        snapshot(&c.dev),
        before,
        "device changed after refusal: {err}"
    );
    err
}

#[test]
fn bundle_signed_by_an_untrusted_key_is_refused_and_nothing_is_written() {
    let c = case();
    let b = bundle(
        &c.bundles,
        "rogue",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        None,
        "rogue",
    );
    let e = refused(&c, &b, false);
    assert!(matches!(
        e,
        InstallError::Bundle(BundleError::Signature(SignatureError::Invalid { .. }))
    ));
    assert!(e.to_string().contains("signature"), "{e}");
}

#[test]
fn unsigned_bundle_is_refused_and_nothing_is_written() {
    let c = case();
    let img = c.bundles.join("v2.img");
    fs::write(&img, &c.v2).unwrap();
    let out = c.bundles.join("unsigned.gota");
    let spec = bundle::BuildSpec {
        version: "2.0.0".parse().unwrap(),
        compatible: vec![PROFILE.into()],
        min_version: None,
        image: img,
        base: None,
        description: None,
    };
    bundle::build(&out, &spec, &mut |_| {}).unwrap();
    let e = refused(&c, &out, false);
    assert!(
        matches!(e, InstallError::Bundle(BundleError::Unsigned)),
        "{e}"
    );
}

#[test]
fn truncated_bundle_is_refused_and_nothing_is_written() {
    let c = case();
    let b = bundle(
        &c.bundles,
        "v2",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        None,
        "release",
    );
    let full = fs::read(&b).unwrap();
    for cut in [full.len() - 1, full.len() / 2, 100, 10] {
        let t = c.bundles.join(format!("cut{cut}.gota"));
        fs::write(&t, &full[..cut]).unwrap();
        let e = refused(&c, &t, false);
        assert!(
            matches!(e, InstallError::Bundle(BundleError::Truncated { .. })),
            "cut at {cut}: {e}"
        );
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}

#[test]
fn bundle_for_another_profile_is_refused_and_nothing_is_written() {
    let c = case();
    let b = bundle(
        &c.bundles,
        "cam",
        "2.0.0",
        &c.v2,
        &["ip-camera"],
        None,
        "release",
    );
    let e = refused(&c, &b, false);
    assert!(matches!(e, InstallError::IncompatibleProfile { .. }));
    assert!(e.to_string().contains("ip-camera") && e.to_string().contains(PROFILE));
}

#[test]
fn older_or_same_version_is_refused_unless_forced() {
    let c = case();
    for v in ["0.9.0", "1.0.0"] {
        let b = bundle(&c.bundles, v, v, &c.v2, &[PROFILE], None, "release");
        let e = refused(&c, &b, false);
        assert!(matches!(e, InstallError::Downgrade { .. }), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
    }
    let b = c.bundles.join("0.9.0.gota");
    let mut inst = reopen(&c.dev);
    let opts = InstallOptions {
        force: true,
        ..Default::default()
    };
    let r = inst.install(&b, &opts, &mut |_| {}).unwrap();
    assert_eq!(r.version.to_string(), "0.9.0");
}

#[test]
fn tampered_manifest_is_refused_and_nothing_is_written() {
    let c = case();
    let b = bundle(
        &c.bundles,
        "v2",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        None,
        "release",
    );
    let mut bytes = fs::read(&b).unwrap();
    // Change the version inside the signed manifest without re-signing.
    let at = bytes
        .windows(7)
        .position(|w| w == b"\"2.0.0\"")
        .expect("version in manifest");
    bytes[at + 1] = b'9';
    let t = c.bundles.join("tampered.gota");
    fs::write(&t, &bytes).unwrap();
    let e = refused(&c, &t, false);
    assert!(
        matches!(e, InstallError::Bundle(BundleError::Signature(_))),
        "{e}"
    );
}

#[test]
fn tampered_payload_is_refused_and_nothing_is_written() {
    let c = case();
    let b = bundle(
        &c.bundles,
        "v2",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        None,
        "release",
    );
    let mut bytes = fs::read(&b).unwrap();
    let n = bytes.len();
    bytes[n - 1000] ^= 0x01;
    let t = c.bundles.join("tampered-payload.gota");
    fs::write(&t, &bytes).unwrap();
    let e = refused(&c, &t, false);
    assert!(
        matches!(e, InstallError::Bundle(BundleError::PayloadHash { .. })),
        "{e}"
    );
}

#[test]
fn corrupt_delta_is_refused_and_nothing_is_written() {
    let c = case();
    // 1. Bytes flipped in transit: caught by the signed payload hash.
    let d = bundle(
        &c.bundles,
        "d",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        Some((&c.v1, "1.0.0")),
        "release",
    );
    let mut bytes = fs::read(&d).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    let t = c.bundles.join("delta-flipped.gota");
    fs::write(&t, &bytes).unwrap();
    assert!(matches!(
        refused(&c, &t, false),
        InstallError::Bundle(BundleError::PayloadHash { .. })
    ));
    // 2. A delta against another base than the device runs.
    let other = image(LEN, 99);
    let wrong = bundle(
        &c.bundles,
        "wb",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        Some((&other, "1.0.0")),
        "release",
    );
    let e = refused(&c, &wrong, false);
    assert!(matches!(e, InstallError::DeltaBase { .. }), "{e}");
    // 3. A correctly signed delta that does not produce the manifest's image (a broken
    //    build): caught by the dry run before anything is written.
    let (good_delta, _) = gavel_ota::delta::encode(&c.v1, &image(LEN, 8), 64).unwrap();
    let good = gavel_ota::Bundle::open(&d).unwrap();
    let m = gavel_ota::Manifest::from_json(&good.manifest_bytes).unwrap();
    let mut m2 = m.clone();
    m2.payload.size = good_delta.len() as u64;
    m2.payload.sha256 = bundle::sha256(&good_delta);
    let out = c.bundles.join("delta-wrong-image.gota");
    bundle::write(
        &out,
        &m2,
        &bundle::UNSIGNED,
        &mut &good_delta[..],
        &mut |_| {},
    )
    .unwrap();
    let k = gavel_ota::signature::load_signing_key(&key_path("release.key")).unwrap();
    bundle::sign_in_place(&out, &k).unwrap();
    let e = refused(&c, &out, false);
    assert!(matches!(e, InstallError::CorruptDelta(_)), "{e}");
}

#[test]
fn good_full_bundle_installs_switches_and_commits_when_healthy() {
    let c = case();
    let b = bundle(
        &c.bundles,
        "v2",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        None,
        "release",
    );
    let mut inst = reopen(&c.dev);
    let r = inst
        .install(&b, &InstallOptions::default(), &mut |_| {})
        .unwrap();
    assert_eq!(r.slot, SlotName::B);
    assert_eq!(inst.boot.boot().unwrap(), SlotName::B);
    assert!(matches!(
        inst.after_boot().unwrap(),
        BootOutcome::PendingCommit { .. }
    ));
    let mut gate = HealthGate::new(Duration::from_secs(120));
    let healthy = HealthSample {
        broker_connected: true,
        capabilities: vec![("health".into(), true)],
    };
    assert_eq!(
        gate.on_sample(Duration::from_secs(20), &healthy),
        Verdict::Commit
    );
    inst.commit().unwrap();
    assert_eq!(inst.boot.boot().unwrap(), SlotName::B);
    assert_eq!(fs::read(inst.slots.image_path(SlotName::B)).unwrap(), c.v2);
    assert_eq!(
        inst.installed_version().unwrap().unwrap().to_string(),
        "2.0.0"
    );
}

#[test]
fn delta_bundle_installs_the_exact_image_and_is_smaller() {
    let c = case();
    let d = bundle(
        &c.bundles,
        "d",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        Some((&c.v1, "1.0.0")),
        "release",
    );
    assert!(fs::metadata(&d).unwrap().len() < (LEN / 10) as u64);
    let mut inst = reopen(&c.dev);
    inst.install(&d, &InstallOptions::default(), &mut |_| {})
        .unwrap();
    assert_eq!(fs::read(inst.slots.image_path(SlotName::B)).unwrap(), c.v2);
}

#[test]
fn new_slot_that_fails_its_health_check_is_rolled_back_with_the_reason() {
    let c = case();
    let b = bundle(
        &c.bundles,
        "v2",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        None,
        "release",
    );
    let mut inst = reopen(&c.dev);
    inst.install(&b, &InstallOptions::default(), &mut |_| {})
        .unwrap();
    assert_eq!(inst.boot.boot().unwrap(), SlotName::B);
    assert!(matches!(
        inst.after_boot().unwrap(),
        BootOutcome::PendingCommit { .. }
    ));
    let mut gate = HealthGate::new(Duration::from_secs(120));
    let sick = HealthSample {
        broker_connected: true,
        capabilities: vec![("health".into(), true), ("record".into(), false)],
    };
    let mut t = 0;
    let reason = loop {
        t += 10;
        match gate.on_sample(Duration::from_secs(t), &sick) {
            Verdict::Wait => continue,
            Verdict::Rollback { reason } => break reason,
            Verdict::Commit => panic!("committed a sick slot"),
        }
    };
    let j = inst.rollback(&reason).unwrap();
    assert!(matches!(&j.stage, Stage::RolledBack { reason } if reason.contains("record")));
    assert_eq!(
        inst.boot.boot().unwrap(),
        SlotName::A,
        "reboot goes back to A"
    );
    assert_eq!(
        inst.installed_version().unwrap().unwrap().to_string(),
        "1.0.0"
    );
}

#[test]
fn new_slot_that_never_comes_up_is_abandoned_by_the_bootloader_and_reported() {
    let c = case();
    let b = bundle(
        &c.bundles,
        "v2",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        None,
        "release",
    );
    let mut inst = reopen(&c.dev);
    let opts = InstallOptions {
        attempts: 2,
        ..Default::default()
    };
    inst.install(&b, &opts, &mut |_| {}).unwrap();
    // Two boots of B that crash before the agent runs, then the chooser falls back.
    assert_eq!(inst.boot.boot().unwrap(), SlotName::B);
    assert_eq!(inst.boot.boot().unwrap(), SlotName::B);
    assert_eq!(inst.boot.boot().unwrap(), SlotName::A);
    match inst.after_boot().unwrap() {
        BootOutcome::RolledBack(j) => {
            assert!(
                matches!(j.stage, Stage::RolledBack { ref reason } if reason.contains("boot attempts"))
            )
        }
        o => panic!("{o:?}"),
    }
}

/// The agent (not the device) restarts after the install and before the reboot: the next
/// start finds the switch pending, touches nothing, and the reboot then tries the new slot.
#[test]
fn restart_between_install_and_reboot_finds_the_pending_reboot_and_keeps_the_state() {
    let c = case();
    let b = bundle(
        &c.bundles,
        "v2",
        "2.0.0",
        &c.v2,
        &[PROFILE],
        None,
        "release",
    );
    let mut inst = reopen(&c.dev);
    assert_eq!(
        inst.boot.boot().unwrap(),
        SlotName::A,
        "running the old slot"
    );
    inst.install(&b, &InstallOptions::default(), &mut |_| {})
        .unwrap();
    let before = snapshot(&c.dev);

    // Restart of the agent: no bootloader pass in between.
    let mut inst = reopen(&c.dev);
    assert_eq!(
        inst.after_boot().unwrap(),
        BootOutcome::PendingReboot {
            version: "2.0.0".parse().unwrap(),
            slot: SlotName::B
        }
    );
    assert_eq!(inst.after_boot().unwrap(), inst.after_boot().unwrap());
    assert_eq!(
        snapshot(&c.dev),
        before,
        "finding a pending reboot changes nothing"
    );
    assert_eq!(inst.journal().unwrap().unwrap().stage, Stage::Activated);

    // The reboot, when the room allows it, starts the new slot on trial.
    assert_eq!(inst.boot.boot().unwrap(), SlotName::B);
    assert!(matches!(
        inst.after_boot().unwrap(),
        BootOutcome::PendingCommit { .. }
    ));
    inst.commit().unwrap();
    assert_eq!(
        inst.installed_version().unwrap().unwrap().to_string(),
        "2.0.0"
    );
}
