//! `cargo xtask image`: builds the device image (images/README.md) in one command:
//! installs the image tools, builds the agent, then runs `images/build.sh`, whose stages
//! are cached by content under `/var/cache/gavel/image`.

use std::path::PathBuf;
use std::process::Command;

use crate::{cargo, root, run, setup, target_dir};

const HELP: &str = "\
cargo xtask image [--out DIR] [--profile NAME] [--version X.Y.Z] [--bundle] [--pki DIR] [--release]
cargo xtask image --test

Builds the bootable A/B disk image gavel-<profile>-<version>.img (and with --bundle the
RAUC update bundle of the same root filesystem) into DIR (default
/var/cache/gavel/image/out). --profile: a device-profiles/ name (default courtroom-terminal).
--pki: a folder with ca.cert.pem, release.cert.pem, release.key.pem (default: a TEST-ONLY
PKI made in DIR/pki). --release builds the agent in release mode (default: debug).

--test runs the full qemu test instead (hil-tests/tests/image.rs, both tests): the image
and two bundles built by the recipe, boot, birth, update into slot B and commit, a broken
update rolled back.
";

/// The full image test: both tests of `hil-tests/tests/image.rs`, one after the other.
pub fn full_test() -> Result<(), String> {
    let env = setup::ensure(setup::Need::Test)?;
    run(
        cargo(&[
            "build",
            "--locked",
            "-p",
            "gavel-agent",
            "-p",
            "gavel-controller",
            "-p",
            "gavelctl",
            "--bins",
        ]),
        "build the agent, the controller and gavelctl",
    )?;
    let mut test = cargo(&[
        "test",
        "--locked",
        "-p",
        "gavel-hil",
        "--test",
        "image",
        "--",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in &env {
        test.env(k, v);
    }
    run(
        test,
        "device image in qemu: boot, birth, update into slot B, rollback of a broken update",
    )
}

pub fn run_image(args: &[String]) -> Result<(), String> {
    let mut pass: Vec<String> = Vec::new();
    let mut release = false;
    let mut disk = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" | "--profile" | "--version" | "--pki" => {
                let v = it
                    .next()
                    .ok_or_else(|| format!("{a} needs a value\n\n{HELP}"))?;
                pass.push(a.clone());
                pass.push(v.clone());
            }
            "--bundle" => pass.push(a.clone()),
            "--bundle-only" => {
                disk = false;
                pass.push("--bundle".into());
            }
            "--release" => release = true,
            "--test" => return full_test(),
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n\n{HELP}")),
        }
    }
    if disk {
        pass.push("--disk".into());
    }
    setup::ensure(setup::Need::Image)?;
    let mut build = cargo(&[
        "build",
        "--locked",
        "-p",
        "gavel-agent",
        "--bin",
        "gavel-agent",
    ]);
    if release {
        build.arg("--release");
    }
    run(build, "build the agent")?;
    let agent: PathBuf = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("gavel-agent");
    let mut cmd = Command::new(root().join("images/build.sh"));
    cmd.arg("--agent").arg(&agent).args(&pass);
    run(cmd, "build the device image (images/build.sh)")
}
