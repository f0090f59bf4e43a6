//! Project tasks. `cargo xtask demo` and `cargo xtask test` are the README's two commands.
//!
//! Both first install what is missing (Debian packages, services the tests talk to), so
//! they work on a fresh Debian machine as root. Builds go to a target folder outside the
//! clone (`/var/cache/gavel/target` when writable) so repeated runs and CI reuse them.

mod demo;
mod demo_hall;
mod demo_transcript;
mod demo_wall;
mod image;
mod models;
mod setup;
mod tiers;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

const USAGE: &str = "\
cargo xtask <task>

Tasks:
  demo [--duration SECS] [--http ADDR]
                 install what is missing, build, start the controller and a simulated
                 court (3 courtrooms with their devices, a kiosk, a video wall) and show
                 what happens; Ctrl-C stops everything. --duration stops after SECS and
                 fails unless every device came online (used by the test suite).
  test           install what is missing, then: rustfmt check, clippy -D warnings, every
                 test (unit, protocol fixtures, whole-system against the embedded broker,
                 Mosquitto, SQLite, PostgreSQL, headless Chromium), and a demo smoke run.
  setup          only install what is missing and start the services tests need
                 (fetches the models too).
  image [--out DIR] [--profile NAME] [--version X.Y.Z] [--bundle] [--pki DIR] [--release]
                 build the bootable A/B device image (Debian packages, the agent, RAUC,
                 GRUB) and with --bundle its RAUC update bundle; cached by content under
                 /var/cache/gavel/image (images/README.md).
  image --test   the full image test in qemu: boot, birth, update into slot B and
                 commit, a broken update rolled back (the default suite boots only).
  models         fetch the models of models/manifest-*.json into models/cache/.
  soak           full-length fault runs: 500 SIGKILLs of the store (redb and sled) and of
                 a producing agent, a 10-minute broker outage, a kiosk 5 minutes offline,
                 a 2-minute 3-camera + 4-microphone hearing with 50 recorder SIGKILLs,
                 a camera unplugged 20 s, and the full device image test (image --test).
                 Figures: docs/benchmarks.md.
  bench          benchmarks, each with its baseline in the same run: durable appends
                 (redb vs sled), end-to-end events/s (vs mosquitto_pub/sub ceiling),
                 alarm latency with 50,000 simulated rooms (vs 1,000 rooms), patrol
                 analyzers' CPU per room (vs decoding alone), the release recorder's CPU
                 and memory per stream (vs gst-launch splitmuxsink).
  fuzz [--seconds N]
                 every protocol decoder under cargo-fuzz, N seconds each (default 600).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(&args[1..]),
        Some("test") => test(),
        Some("setup") => setup::ensure(setup::Need::Test).map(|_| ()),
        Some("models") => models::fetch(),
        Some("image") => image::run_image(&args[1..]),
        Some("soak") => tiers::soak(),
        Some("bench") => tiers::bench(),
        Some("fuzz") => tiers::fuzz(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo builds: `CARGO_TARGET_DIR` if set, else `/var/cache/gavel/target` when it can
/// be created, else `target/` in the clone.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let cache = PathBuf::from("/var/cache/gavel/target");
    if std::fs::create_dir_all(&cache).is_ok() {
        cache
    } else {
        root().join("target")
    }
}

/// A `cargo` command in the repository root using [`target_dir`].
pub fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args)
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target_dir());
    cmd
}

/// Runs `cmd`, failing with `what` when it does not succeed.
pub fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    println!("\n==> {what}");
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed ({status})"))
    }
}

fn test() -> Result<(), String> {
    let env = setup::ensure(setup::Need::Test)?;
    run(cargo(&["fmt", "--all", "--check"]), "rustfmt check")?;
    run(
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
        "clippy -D warnings",
    )?;
    run(
        cargo(&["build", "--workspace", "--bins", "--locked"]),
        "build binaries",
    )?;
    let mut tests = cargo(&["test", "--workspace", "--locked"]);
    for (k, v) in &env {
        tests.env(k, v);
    }
    run(tests, "all tests")?;
    demo::smoke()?;
    println!("\nxtask test: everything passed");
    Ok(())
}
