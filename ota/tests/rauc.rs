//! The RAUC driver against the real `rauc` tool (Debian package `rauc`): a bundle built
//! with `rauc bundle` and a throw-away test certificate verifies; the same bundle is
//! refused against another certificate. Skips (with a message) when `rauc`, `openssl` or
//! `mksquashfs` is missing. Installing, committing and rolling back through RAUC with
//! file-backed slots and a stub bootloader: `rauc_install.rs`.

use std::path::Path;
use std::process::Command;

use gavel_ota::rauc::{Rauc, RaucError};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn cert(dir: &Path, name: &str) {
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key.pem")))
        .arg("-out")
        .arg(dir.join(format!("{name}.cert.pem")))
        .args(["-subj", &format!("/CN=gavel-test-{name}")])
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl req failed");
}

#[test]
fn rauc_info_verifies_a_cms_signed_bundle_and_refuses_a_foreign_one() {
    if !(have("rauc") && have("openssl") && have("mksquashfs")) {
        eprintln!(
            "skipped: needs rauc, openssl and squashfs-tools (apt-get install rauc squashfs-tools)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    cert(d, "release");
    cert(d, "other");
    let content = d.join("content");
    std::fs::create_dir_all(&content).unwrap();
    // Incompressible, so the squashfs is larger than RAUC's 4 KiB minimum.
    let mut rng = fastrand::Rng::with_seed(3);
    let image: Vec<u8> = (0..64 * 1024).map(|_| rng.u8(..)).collect();
    std::fs::write(content.join("rootfs.img"), image).unwrap();
    std::fs::write(
        content.join("manifest.raucm"),
        "[update]\ncompatible=gavel-courtroom-terminal\nversion=2.0.0\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\n",
    )
    .unwrap();
    let bundle = d.join("update.raucb");
    let out = Command::new("rauc")
        .arg("bundle")
        .arg(format!("--cert={}", d.join("release.cert.pem").display()))
        .arg(format!("--key={}", d.join("release.key.pem").display()))
        .arg(&content)
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let info = Rauc::system()
        .with_keyring(&d.join("release.cert.pem"))
        .info(&bundle)
        .unwrap();
    assert_eq!(info.compatible, "gavel-courtroom-terminal");
    assert_eq!(info.version, "2.0.0");

    let err = Rauc::system()
        .with_keyring(&d.join("other.cert.pem"))
        .info(&bundle)
        .unwrap_err();
    assert!(matches!(err, RaucError::Failed { .. }), "{err}");
}
