//! Installs what is missing on a Debian machine and starts the services the tests use.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What the caller is about to do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Demo,
    Test,
    /// Building the device image (`cargo xtask image`); the test suite boots it too.
    Image,
}

/// Debian packages: (package, why).
const DEMO_PACKAGES: &[(&str, &str)] = &[
    ("build-essential", "C compiler for native crates"),
    ("pkg-config", "finding native libraries"),
    (
        "cmake",
        "transcription: whisper.cpp (whisper-rs-sys), the whisper-cli baseline",
    ),
    ("clang", "transcription: whisper-rs-sys bindings"),
    (
        "libclang-dev",
        "transcription: whisper-rs-sys bindings (bindgen)",
    ),
    ("ca-certificates", "TLS roots"),
    ("libgstreamer1.0-dev", "GStreamer (recording, streaming)"),
    (
        "libgstreamer-plugins-base1.0-dev",
        "GStreamer base libraries",
    ),
    ("libgstreamer-plugins-bad1.0-dev", "GStreamer bad libraries"),
    (
        "libgstrtspserver-1.0-dev",
        "RTSP server (live re-serve, simulated cameras)",
    ),
    ("gstreamer1.0-plugins-base", "GStreamer elements"),
    (
        "gstreamer1.0-plugins-good",
        "rtspsrc, depayloaders, splitmuxsink",
    ),
    ("gstreamer1.0-plugins-bad", "h264parse, mpegtsmux"),
    ("gstreamer1.0-plugins-ugly", "x264enc for test clips"),
    ("gstreamer1.0-libav", "decoders for sub-stream transcodes"),
    ("gstreamer1.0-tools", "gst-launch-1.0 (benchmark baseline)"),
    (
        "gstreamer1.0-x",
        "timeoverlay (pango) on simulated cameras' test patterns",
    ),
    (
        "espeak-ng",
        "hall announcements; the transcription test corpus",
    ),
    ("sox", "transcription: resampling the espeak-ng test corpus"),
    (
        "gstreamer1.0-espeak",
        "hall announcements: the espeak GStreamer element",
    ),
    (
        "fonts-wqy-microhei",
        "Chinese glyphs in the video wall's tile labels (case numbers)",
    ),
];

const TEST_PACKAGES: &[(&str, &str)] = &[
    ("mosquitto", "external-broker tests"),
    ("mosquitto-clients", "broker diagnostics"),
    ("postgresql", "PostgreSQL store tests"),
    ("postgresql-client", "creating test databases"),
    ("chromium", "dashboard browser tests"),
    ("chromium-driver", "WebDriver for Chromium"),
    ("socat", "serial device emulators over pty pairs"),
    ("ffmpeg", "ffprobe judges recordings independently"),
    (
        "python3-pip",
        "the model fetch step downloads models and ONNX Runtime from PyPI",
    ),
    (
        "python3-venv",
        "the hearing archive's S3 test runs moto (PyPI) from a virtual environment",
    ),
    ("rauc", "OTA: the RAUC backend, installed for real in tests"),
    ("squashfs-tools", "OTA: RAUC bundles"),
    ("xdelta3", "OTA: delta benchmark baseline"),
    ("openssl", "OTA: throw-away RAUC test certificates"),
    ("dbus-daemon", "OTA: private D-Bus bus for rauc service"),
    ("dbus-bin", "OTA: dbus-send asks rauc what it does"),
];

/// Building and booting the device image (`images/build.sh`, `hil-tests/tests/image.rs`).
const IMAGE_PACKAGES: &[(&str, &str)] = &[
    (
        "debootstrap",
        "image: the Debian base of the root filesystem",
    ),
    (
        "squashfs-tools",
        "image: read-only root slots and RAUC bundles",
    ),
    (
        "grub-efi-amd64-bin",
        "image: the standalone GRUB EFI binary",
    ),
    (
        "grub-common",
        "image: grub-editenv for the A/B boot environment",
    ),
    (
        "mtools",
        "image: filling FAT partitions without mounting them",
    ),
    ("dosfstools", "image: ESP and config partitions"),
    ("gdisk", "image: sgdisk lays out the GPT"),
    ("fdisk", "image: sfdisk finds the config partition"),
    ("e2fsprogs", "image: the data partition (mkfs.ext4 -d)"),
    ("rauc", "image: RAUC update bundles"),
    ("openssl", "image: the test-only signing PKI"),
    ("qemu-system-x86", "image test: boots the image"),
    ("ovmf", "image test: UEFI firmware for qemu"),
];

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_install(packages: &[&str]) -> Result<(), String> {
    if packages.is_empty() {
        return Ok(());
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        return Err(format!(
            "missing packages {packages:?} and no apt-get to install them"
        ));
    }
    println!("==> installing {}", packages.join(" "));
    let quiet = |mut c: Command| c.env("DEBIAN_FRONTEND", "noninteractive").status();
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    quiet(update).map_err(|e| format!("apt-get update: {e}"))?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages);
    let status = quiet(install).map_err(|e| format!("apt-get install: {e}"))?;
    if !status.success() {
        return Err(format!(
            "apt-get install {} failed (are you root?)",
            packages.join(" ")
        ));
    }
    Ok(())
}

fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .ok()
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > timeout {
            return Err(format!("{what} did not come up within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Installs packages and starts services; returns environment variables for the tests.
pub fn ensure(need: Need) -> Result<Vec<(String, String)>, String> {
    let mut wanted: Vec<&str> = DEMO_PACKAGES.iter().map(|(p, _)| *p).collect();
    if need == Need::Test {
        wanted.extend(TEST_PACKAGES.iter().map(|(p, _)| *p));
    }
    if matches!(need, Need::Test | Need::Image) {
        wanted.extend(IMAGE_PACKAGES.iter().map(|(p, _)| *p));
    }
    wanted.sort_unstable();
    wanted.dedup();
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !installed(p)).collect();
    apt_install(&missing)?;
    // Models and the ONNX Runtime library for patrol presence, whisper models for
    // transcription (models/manifest-*.json); the image ships the profile's whisper model.
    if let Err(e) = crate::models::fetch() {
        println!(
            "    models not fetched ({e}); presence detection and transcription will report themselves failed"
        );
    }
    let mut env = Vec::new();
    if need == Need::Test {
        if !reachable("127.0.0.1:1883") {
            println!("==> starting Mosquitto on 127.0.0.1:1883");
            let _ = Command::new("mosquitto")
                .args(["-d", "-c", "/etc/mosquitto/mosquitto.conf"])
                .status();
            if wait_until("Mosquitto", Duration::from_secs(5), || {
                reachable("127.0.0.1:1883")
            })
            .is_err()
            {
                println!("    (the tests will start a private Mosquitto on a free port instead)");
            }
        }
        env.push(("GAVEL_TEST_POSTGRES".to_string(), postgres()?));
        match moto_server() {
            Ok(path) => env.push(("GAVEL_MOTO_SERVER".to_string(), path)),
            Err(e) => println!("    moto not installed ({e}); the S3 archive test will skip"),
        }
    }
    Ok(env)
}

/// An S3-compatible server for the archive's S3 test: `moto_server` from PyPI
/// (`moto[server]`, Apache-2.0), on the PATH or installed into `target/tools/moto`.
fn moto_server() -> Result<String, String> {
    let works = |bin: &str| {
        Command::new(bin)
            .arg("--help")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("moto_server") {
        return Ok("moto_server".into());
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/moto");
    let bin = venv.join("bin/moto_server");
    let bin_s = bin.display().to_string();
    if works(&bin_s) {
        return Ok(bin_s);
    }
    println!(
        "==> installing moto[server] from PyPI into {}",
        venv.display()
    );
    let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
    if !ok(Command::new("python3").arg("-m").arg("venv").arg(&venv)) {
        return Err("python3 -m venv failed (is python3-venv installed?)".into());
    }
    if !ok(Command::new(venv.join("bin/pip")).args(["install", "-q", "moto[server]==5.2.1"])) {
        return Err("pip install moto[server] failed".into());
    }
    if works(&bin_s) {
        Ok(bin_s)
    } else {
        Err(format!("{bin_s} does not run"))
    }
}

fn psql_ok(url: &str) -> bool {
    Command::new("psql")
        .arg(format!("{url}/postgres"))
        .args(["-q", "-c", "SELECT 1"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A PostgreSQL server the tests can reach as `postgres` without a password: the
/// machine's on 127.0.0.1:5432 when it allows that, else a private cluster.
fn postgres() -> Result<String, String> {
    if let Ok(url) = std::env::var("GAVEL_TEST_POSTGRES") {
        return Ok(url);
    }
    let system = "postgres://postgres@127.0.0.1:5432".to_string();
    if psql_ok(&system) {
        return Ok(system);
    }
    // Start the packaged cluster if it exists but is down.
    if let Ok(versions) = std::fs::read_dir("/etc/postgresql") {
        for v in versions.flatten() {
            let v = v.file_name().to_string_lossy().into_owned();
            let _ = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &v, "main", "start"])
                .status();
        }
        if wait_until("PostgreSQL", Duration::from_secs(10), || psql_ok(&system)).is_ok() {
            return Ok(system);
        }
    }
    private_postgres()
}

fn private_postgres() -> Result<String, String> {
    let port = 54329;
    let url = format!("postgres://postgres@127.0.0.1:{port}");
    if psql_ok(&url) {
        return Ok(url);
    }
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("PostgreSQL is not installed: {e}"))?
        .flatten()
        .map(|e| e.path().join("bin"))
        .max()
        .ok_or("no PostgreSQL version under /usr/lib/postgresql")?;
    let dir = Path::new("/var/cache/gavel/postgres");
    println!(
        "==> starting a private PostgreSQL on 127.0.0.1:{port} (trust auth, data in {})",
        dir.display()
    );
    let as_postgres = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(args)
            .status()
            .map_err(|e| format!("runuser: {e}"))
    };
    if !dir.join("PG_VERSION").exists() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status();
        let initdb = bin.join("initdb");
        as_postgres(&[
            &initdb.to_string_lossy(),
            "-D",
            &dir.to_string_lossy(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ])?;
    }
    let pg_ctl = bin.join("pg_ctl");
    let opts = format!("-p {port} -k /tmp -c listen_addresses=127.0.0.1");
    as_postgres(&[
        &pg_ctl.to_string_lossy(),
        "-D",
        &dir.to_string_lossy(),
        "-o",
        &opts,
        "-l",
        "/var/cache/gavel/postgres.log",
        "start",
    ])?;
    wait_until("private PostgreSQL", Duration::from_secs(20), || {
        psql_ok(&url)
    })?;
    Ok(url)
}
