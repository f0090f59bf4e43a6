//! `gavel-agent printer status|test`: a technician checks the kiosk's receipt printer from
//! the device's console. The printer is an ESC/POS emulator on a `socat` pty pair; the
//! kiosk profile's settings (baud rate, columns, GB18030) apply, the port is given.

use std::process::Command;
use std::time::{Duration, Instant};

use gavel_hil::bin;
use gavel_hil::serial_peers::{Emulator, EscPosPrinter, PtyPair};

/// Runs `gavel-agent printer ARGS...` for the service kiosk; (success, stdout, stderr).
fn printer(port: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("gavel-agent"))
        .args(["--device-id", "hall-kiosk-1", "--profile", "service-kiosk"])
        .arg("--profiles-dir")
        .arg(gavel_hil::profiles_dir())
        .args(["printer", "--port", port])
        .args(args)
        .env("GAVEL_LOG", "warn")
        .output()
        .expect("gavel-agent runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_technician_checks_the_printer_and_prints_a_chinese_test_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = PtyPair::start(dir.path(), "printer").expect("socat");
    let emu = Emulator::start(&pair.device, EscPosPrinter::default());
    let port = pair.host.display().to_string();

    let (ok, out, err) = printer(&port, &["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("online, paper ok"), "{out}");
    assert!(
        out.contains("19200 baud") && out.contains("gb18030"),
        "{out}"
    );

    let (ok, out, err) = printer(&port, &["test"]);
    assert!(ok, "{err}");
    assert!(out.contains("printed a test page"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while emu.with(|e| e.receipts.is_empty()) {
        assert!(Instant::now() < deadline, "no test page printed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let page = emu.with(|e| e.receipts[0].clone());
    assert!(page.contains("打印测试 PRINTER TEST"), "{page}");
    assert!(page.contains("device hall-kiosk-1"), "{page}");
    assert!(page.contains("中文：诉讼服务中心 排队叫号"), "{page}");
    // The kiosk profile's 42 columns.
    assert!(
        page.contains("123456789012345678901234567890123456789012\n"),
        "{page}"
    );

    // Out of paper, offline: the technician is told which, and nothing prints.
    emu.with(|e| e.has_paper = false);
    let (ok, _, err) = printer(&port, &["test"]);
    assert!(!ok);
    assert!(err.contains("out of paper"), "{err}");
    emu.with(|e| {
        e.has_paper = true;
        e.offline = true;
    });
    let (ok, _, err) = printer(&port, &["status"]);
    assert!(!ok);
    assert!(err.contains("is offline") && err.contains("cover"), "{err}");
    assert_eq!(emu.with(|e| e.receipts.len()), 1, "nothing more printed");
}

#[test]
fn a_missing_or_silent_printer_port_is_named_with_what_to_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("ttyUSB9").display().to_string();
    let (ok, _, err) = printer(&missing, &["status"]);
    assert!(!ok);
    assert!(
        err.contains("does not exist") && err.contains("plugged in"),
        "{err}"
    );

    // A port with nothing on the other end: no answer.
    let pair = PtyPair::start(dir.path(), "silent").expect("socat");
    let (ok, _, err) = printer(&pair.host.display().to_string(), &["status"]);
    assert!(!ok);
    assert!(err.contains("does not answer"), "{err}");
}
