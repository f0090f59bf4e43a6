//! Serial devices over `socat` pty pairs: 1 MiB of random bytes in each direction of
//! each link (VISCA camera, ESC/POS printer, sign controller), then the next valid
//! command works; a device answering garbage gives an error naming it; a port that
//! disappears and returns is reopened.

use std::time::{Duration, Instant};

use gavel_devices::escpos::{Encoding, Printer, PrinterError, QueueTicket};
use gavel_devices::lamp::{Lamp, LampError, SerialSign};
use gavel_devices::serial::{Deframer, PortSettings, SerialError, SerialLink};
use gavel_devices::visca::{ViscaCamera, ViscaError};
use gavel_hil::serial_peers::{
    Device, Emulator, EscPosPrinter, PtyPair, SignController, ViscaHead, noise, real_port,
};

const MIB: usize = 1 << 20;
/// Failure guard only: how long a 1 MiB transfer may take.
const GUARD: Duration = Duration::from_secs(15);

fn settings(pair: &PtyPair) -> PortSettings {
    let mut s = PortSettings::new(&pair.host, 9600);
    s.backoff_min = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(200);
    s
}

/// The emulator sends 1 MiB of noise at the driver while the driver's link reads and
/// skips it; returns once all of it has been written and the line is quiet again.
fn noise_from_device<D: Device, F: Deframer>(emu: &Emulator<D>, link: &mut SerialLink<F>) {
    let before = link.stats().bytes_in;
    emu.spew(noise(1, MIB));
    let start = Instant::now();
    while emu.spewed() < MIB as u64 || link.stats().bytes_in - before < MIB as u64 {
        assert!(
            start.elapsed() < GUARD,
            "noise not delivered: {:?}",
            link.stats()
        );
        link.discard_input(Duration::from_millis(100), Duration::from_millis(500))
            .expect("reading noise");
    }
    link.discard_input(Duration::from_millis(200), GUARD)
        .expect("drain");
}

/// The driver sends 1 MiB of noise at the device, then drains whatever the device said
/// about it.
fn noise_to_device<F: Deframer>(link: &mut SerialLink<F>) {
    link.send(&noise(2, MIB)).expect("writing noise");
    link.discard_input(Duration::from_millis(300), GUARD)
        .expect("drain");
}

#[test]
fn visca_link_survives_a_megabyte_of_noise_each_way_and_the_next_preset_recall_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = PtyPair::start(dir.path(), "visca").expect("socat");
    let head = Emulator::start(&pair.device, ViscaHead::new(1));
    let mut cam = ViscaCamera::new(settings(&pair), 1).expect("camera");

    cam.recall_preset(1).expect("before noise");
    noise_from_device(&head, cam.link());
    let stats = cam.link().stats().clone();
    assert!(stats.garbage_bytes > 0 && stats.bad_frames > 0, "{stats:?}");
    assert!(
        stats
            .last_garbage
            .as_deref()
            .is_some_and(|r| r.contains("VISCA")),
        "{stats:?}"
    );

    noise_to_device(cam.link());
    assert!(head.with(|h| h.syntax_errors) > 0, "the head saw the noise");

    cam.recall_preset(7)
        .expect("next valid command after noise");
    cam.set_preset(8).expect("and the one after");
    assert!(cam.powered().expect("inquiry"));
    assert_eq!(head.with(|h| h.recalls.clone()), [1, 7]);
    assert_eq!(head.with(|h| h.saved.clone()), [8]);
}

#[test]
fn printer_link_survives_a_megabyte_of_noise_each_way_and_the_next_ticket_prints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = PtyPair::start(dir.path(), "printer").expect("socat");
    let printer = Emulator::start(&pair.device, EscPosPrinter::default());
    let mut p = Printer::new(settings(&pair));
    let ticket = |n: &str| QueueTicket {
        court: "Xihu District People's Court".into(),
        number: n.into(),
        service: "filing".into(),
        waiting: 3,
        issued: time::macros::datetime!(2026-11-27 09:05 UTC),
    };

    p.print(ticket("A023").receipt()).expect("before noise");
    noise_from_device(&printer, p.link());
    assert!(p.link().stats().garbage_bytes > 0, "{:?}", p.link().stats());

    noise_to_device(p.link());
    p.print(ticket("A024").receipt())
        .expect("next ticket after noise");
    let deadline = Instant::now() + GUARD;
    while printer.with(|e| e.receipts.len()) < 2
        || !printer.with(|e| e.receipts.last().is_some_and(|r| r.contains("A024")))
    {
        assert!(
            Instant::now() < deadline,
            "ticket A024 not printed: {:?}",
            printer.with(|e| e.receipts.clone())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let receipts = printer.with(|e| e.receipts.clone());
    assert!(receipts[0].contains("A023") && receipts[0].contains("Waiting ahead: 3"));
    let last = receipts.last().expect("receipt");
    assert!(
        last.contains("Service: filing") && last.contains("2026-11-27 09:05"),
        "{last}"
    );

    // Out of paper is a clear error, not a silent loss of the ticket.
    printer.with(|e| e.has_paper = false);
    let err = p.print(ticket("A025").receipt()).expect_err("no paper");
    assert!(matches!(err, PrinterError::PaperOut(_)), "{err}");
}

#[test]
fn a_chinese_queue_ticket_prints_in_gb18030_and_still_does_after_a_megabyte_of_noise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = PtyPair::start(dir.path(), "printer-zh").expect("socat");
    let printer = Emulator::start(&pair.device, EscPosPrinter::default());
    let mut p = Printer::new(settings(&pair));
    let ticket = |n: &str| QueueTicket {
        court: "杭州市西湖区人民法院".into(),
        number: n.into(),
        service: "立案 filing".into(),
        waiting: 2,
        issued: time::macros::datetime!(2026-11-27 09:05 UTC),
    };
    p.print(ticket("B001").receipt_in(Encoding::Gb18030))
        .expect("Chinese ticket");
    noise_from_device(&printer, p.link());
    noise_to_device(p.link());
    p.print(ticket("B002").receipt_in(Encoding::Gb18030))
        .expect("Chinese ticket after noise");
    // A UTF-8 receipt after the Chinese ones: the printer left Chinese mode.
    p.print(
        QueueTicket {
            court: "Xihu".into(),
            ..ticket("B003")
        }
        .receipt(),
    )
    .expect("UTF-8 ticket");
    let deadline = Instant::now() + GUARD;
    while !printer.with(|e| e.receipts.last().is_some_and(|r| r.contains("B003"))) {
        assert!(
            Instant::now() < deadline,
            "tickets not printed: {:?}",
            printer.with(|e| e.receipts.clone())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let receipts = printer.with(|e| e.receipts.clone());
    let chinese: Vec<&String> = receipts
        .iter()
        .filter(|r| r.contains("杭州市西湖区人民法院\n"))
        .collect();
    assert_eq!(chinese.len(), 2, "{receipts:?}");
    assert!(
        chinese[1].contains("B002") && chinese[1].contains("Service: 立案 filing"),
        "{receipts:?}"
    );
    assert!(!printer.with(|e| e.chinese), "left in Chinese mode");
    let last = receipts.last().expect("receipt");
    assert!(last.starts_with("Xihu\n"), "{last:?}");
}

#[test]
fn sign_link_survives_a_megabyte_of_noise_each_way_and_the_next_switch_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = PtyPair::start(dir.path(), "sign").expect("socat");
    let sign = Emulator::start(&pair.device, SignController::default());
    let mut lamp = SerialSign::new(settings(&pair));

    lamp.set(true).expect("before noise");
    noise_from_device(&sign, lamp.link());
    assert!(
        lamp.link().stats().bad_frames > 0,
        "{:?}",
        lamp.link().stats()
    );

    noise_to_device(lamp.link());
    lamp.set(false).expect("next valid command after noise");
    assert!(!sign.with(|s| s.lit));
    lamp.set(true).expect("on again");
    assert!(lamp.lit().expect("status"));
    assert!(sign.with(|s| s.lit));
}

#[test]
fn devices_answering_garbage_give_errors_that_name_the_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vp, pp, sp) = (
        PtyPair::start(dir.path(), "visca").expect("socat"),
        PtyPair::start(dir.path(), "printer").expect("socat"),
        PtyPair::start(dir.path(), "sign").expect("socat"),
    );
    let head = Emulator::start(&vp.device, ViscaHead::new(1));
    let printer = Emulator::start(&pp.device, EscPosPrinter::default());
    let sign = Emulator::start(&sp.device, SignController::default());
    head.with(|h| h.answer_noise = true);
    printer.with(|p| p.answer_noise = true);
    sign.with(|s| s.answer_noise = true);

    let mut cam = ViscaCamera::new(settings(&vp), 1).expect("camera");
    cam.timeout = Duration::from_millis(500);
    let err = cam.recall_preset(3).expect_err("garbage answer");
    let text = err.to_string();
    assert!(
        matches!(err, ViscaError::Serial(SerialError::Timeout { .. })),
        "{text}"
    );
    assert!(
        text.contains("visca-host") && text.contains("garbage skipped") && text.contains("VISCA"),
        "{text}"
    );

    let mut p = Printer::new(settings(&pp));
    p.timeout = Duration::from_millis(500);
    let text = p.status().expect_err("garbage answer").to_string();
    assert!(
        text.contains("printer-host") && text.contains("not ESC/POS status bytes"),
        "{text}"
    );

    let mut lamp = SerialSign::new(settings(&sp));
    lamp.timeout = Duration::from_millis(500);
    let err = lamp.set(true).expect_err("garbage answer");
    assert!(
        matches!(err, LampError::Serial(SerialError::Timeout { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("garbage skipped"), "{err}");

    // Once the devices speak properly again, the same drivers work.
    head.with(|h| h.answer_noise = false);
    sign.with(|s| s.answer_noise = false);
    cam.recall_preset(3).expect("recovered");
    lamp.set(true).expect("recovered");
}

#[test]
fn a_port_that_disappears_and_returns_is_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pair = PtyPair::start(dir.path(), "sign").expect("socat");
    let sign = Emulator::start(&pair.device, SignController::default());
    let mut lamp = SerialSign::new(settings(&pair));
    lamp.set(true).expect("first");

    pair.stop();
    let err = lamp.set(false).expect_err("port gone");
    assert!(
        matches!(err, LampError::Serial(ref e) if e.port_unavailable()),
        "{err}"
    );
    assert!(err.to_string().contains("sign-host"), "{err}");

    pair.restart().expect("socat again");
    let deadline = Instant::now() + GUARD;
    loop {
        match lamp.set(false) {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "not reopened: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!sign.with(|s| s.lit));
    assert_eq!(lamp.link().stats().opens, 2);
}

/// Against a real VISCA camera: `GAVEL_TEST_VISCA_PORT=/dev/ttyUSB0` (address 1; it
/// moves the camera to preset 1). Skips when unset.
#[test]
fn a_real_visca_camera_recalls_a_preset_when_one_is_configured() {
    let Some(port) = real_port("GAVEL_TEST_VISCA_PORT") else {
        eprintln!("GAVEL_TEST_VISCA_PORT unset: skipped");
        return;
    };
    let mut cam = ViscaCamera::new(PortSettings::new(port, 9600), 1).expect("camera");
    cam.link().send(&noise(3, 4096)).expect("noise");
    cam.link()
        .discard_input(Duration::from_millis(500), GUARD)
        .expect("drain");
    cam.recall_preset(1).expect("preset 1 after noise");
}

/// Against a real ESC/POS printer: `GAVEL_TEST_PRINTER_PORT=/dev/ttyUSB1` (prints one
/// test ticket at 19200 baud). Skips when unset.
#[test]
fn a_real_printer_prints_a_queue_ticket_when_one_is_configured() {
    let Some(port) = real_port("GAVEL_TEST_PRINTER_PORT") else {
        eprintln!("GAVEL_TEST_PRINTER_PORT unset: skipped");
        return;
    };
    let mut p = Printer::new(PortSettings::new(port, 19200));
    let ticket = QueueTicket {
        court: "Gavel test".into(),
        number: "T001".into(),
        service: "test".into(),
        waiting: 0,
        issued: time::OffsetDateTime::now_utc(),
    };
    p.print(ticket.receipt()).expect("printed");
}

/// Against a real sign controller: `GAVEL_TEST_SIGN_PORT=/dev/ttyUSB2` (switches it on,
/// then off). Skips when unset.
#[test]
fn a_real_sign_switches_on_and_off_when_one_is_configured() {
    let Some(port) = real_port("GAVEL_TEST_SIGN_PORT") else {
        eprintln!("GAVEL_TEST_SIGN_PORT unset: skipped");
        return;
    };
    let mut sign = SerialSign::new(PortSettings::new(port, 9600));
    sign.set(true).expect("on");
    assert!(sign.lit().expect("status"));
    sign.set(false).expect("off");
}
