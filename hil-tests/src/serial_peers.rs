//! Serial devices for tests: a `socat` pty pair and device emulators on its far end.
//!
//! [`PtyPair`] runs `socat -d -d pty,raw,echo=0,link=HOST pty,raw,echo=0,link=DEVICE`
//! in a temporary folder: the driver under test opens `host`, an [`Emulator`] opens
//! `device`. Stopping and restarting the pair makes the port disappear and return, as
//! a USB adapter does when pulled and plugged back.
//!
//! Emulators are threads (stopped on drop) that reopen their end when it goes away.
//! They parse commands with their own code, independent of `gavel-devices`, so a codec
//! bug cannot hide behind itself. [`Emulator::spew`] writes noise at the driver.
//!
//! Real hardware: `GAVEL_TEST_VISCA_PORT`, `GAVEL_TEST_PRINTER_PORT` and
//! `GAVEL_TEST_SIGN_PORT` name real ports for the tests that support them
//! ([`real_port`]); those tests skip when the variables are unset.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::Proc;

/// The real port named by environment variable `var`, if set.
pub fn real_port(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).map(PathBuf::from)
}

/// `n` pseudo-random bytes from `seed` (reproducible noise).
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

/// A `socat` pty pair; stopped on drop.
pub struct PtyPair {
    /// The end the driver under test opens.
    pub host: PathBuf,
    /// The end the emulator opens.
    pub device: PathBuf,
    dir: PathBuf,
    name: String,
    proc: Option<Proc>,
    starts: u32,
}

impl PtyPair {
    /// Starts a pair with links `dir/NAME-host` and `dir/NAME-device`.
    pub fn start(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let mut pair = Self {
            host: dir.join(format!("{name}-host")),
            device: dir.join(format!("{name}-device")),
            dir: dir.to_owned(),
            name: name.to_owned(),
            proc: None,
            starts: 0,
        };
        pair.spawn()?;
        Ok(pair)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.host);
        let _ = std::fs::remove_file(&self.device);
        let mut cmd = Command::new("socat");
        cmd.arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", self.host.display()))
            .arg(format!("pty,raw,echo=0,link={}", self.device.display()));
        self.starts += 1;
        let log = self
            .dir
            .join(format!("socat-{}-{}.log", self.name, self.starts));
        let mut proc = Proc::spawn(&format!("socat {}", self.name), cmd, log)
            .context("starting socat (apt-get install socat)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(self.host.exists() && self.device.exists()) {
            if !proc.alive() || Instant::now() > deadline {
                bail!("socat made no pty pair: {}", proc.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.proc = Some(proc);
        Ok(())
    }

    /// Stops `socat`: both ports disappear.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(3));
        }
        let _ = std::fs::remove_file(&self.host);
        let _ = std::fs::remove_file(&self.device);
    }

    /// Starts `socat` again after [`PtyPair::stop`]: the ports return (as new ptys
    /// behind the same links).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A device's behaviour: bytes in, reply bytes out.
pub trait Device: Send + 'static {
    /// Takes bytes from the driver; returns bytes to send back.
    fn input(&mut self, bytes: &[u8]) -> Vec<u8>;
}

/// An emulated device on the `device` end of a pty pair; stopped on drop.
pub struct Emulator<D: Device> {
    state: Arc<Mutex<D>>,
    stop: Arc<AtomicBool>,
    spew_tx: mpsc::Sender<Vec<u8>>,
    spewed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<D: Device> Emulator<D> {
    /// Runs `device` on the serial port at `path` (reopened whenever it goes away).
    pub fn start(path: &Path, device: D) -> Self {
        let state = Arc::new(Mutex::new(device));
        let stop = Arc::new(AtomicBool::new(false));
        let spewed = Arc::new(AtomicU64::new(0));
        let (spew_tx, spew_rx) = mpsc::channel::<Vec<u8>>();
        let thread = {
            let (state, stop, spewed, path) =
                (state.clone(), stop.clone(), spewed.clone(), path.to_owned());
            std::thread::spawn(move || run(&path, &state, &stop, &spewed, &spew_rx))
        };
        Self {
            state,
            stop,
            spew_tx,
            spewed,
            thread: Some(thread),
        }
    }

    /// Runs `f` on the device state.
    pub fn with<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Sends `bytes` to the driver from a writer of its own (returns at once).
    pub fn spew(&self, bytes: Vec<u8>) {
        let _ = self.spew_tx.send(bytes);
    }

    /// Bytes of spew fully written so far.
    pub fn spewed(&self) -> u64 {
        self.spewed.load(Ordering::SeqCst)
    }
}

impl<D: Device> Drop for Emulator<D> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_patiently(port: &mut dyn Write, bytes: &[u8], stop: &AtomicBool) -> bool {
    let mut sent = 0;
    while sent < bytes.len() && !stop.load(Ordering::SeqCst) {
        let end = (sent + 4096).min(bytes.len());
        match port.write(&bytes[sent..end]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return false,
        }
    }
    sent == bytes.len()
}

fn run<D: Device>(
    path: &Path,
    state: &Mutex<D>,
    stop: &Arc<AtomicBool>,
    spewed: &Arc<AtomicU64>,
    spew_rx: &mpsc::Receiver<Vec<u8>>,
) {
    let mut port: Option<Box<dyn serialport::SerialPort>> = None;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Some(p) = port.as_mut() else {
            match serialport::new(path.to_string_lossy(), 9600)
                .timeout(Duration::from_millis(20))
                .open()
            {
                Ok(p) => port = Some(p),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            continue;
        };
        if let Ok(bytes) = spew_rx.try_recv()
            && let Ok(mut writer) = p.try_clone()
        {
            let (stop, spewed) = (stop.clone(), spewed.clone());
            std::thread::spawn(move || {
                if write_patiently(&mut writer, &bytes, &stop) {
                    spewed.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                }
            });
        }
        match p.read(&mut buf) {
            Ok(0) => port = None,
            Ok(n) => {
                let reply = match state.lock() {
                    Ok(mut d) => d.input(&buf[..n]),
                    Err(_) => return,
                };
                if !reply.is_empty() && !write_patiently(p, &reply, stop) {
                    port = None;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => {
                port = None;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A VISCA PTZ head at one address.
#[derive(Debug, Default)]
pub struct ViscaHead {
    /// Camera address (1-7).
    pub address: u8,
    /// Presets recalled, in order.
    pub recalls: Vec<u8>,
    /// When each recall of `recalls` arrived.
    pub recall_times: Vec<Instant>,
    /// Presets stored, in order.
    pub saved: Vec<u8>,
    /// Packets refused with a syntax error.
    pub syntax_errors: u64,
    /// Answer every command with noise instead of a reply.
    pub answer_noise: bool,
    buf: Vec<u8>,
    seed: u64,
}

impl ViscaHead {
    /// A head at `address`.
    pub fn new(address: u8) -> Self {
        Self {
            address,
            ..Self::default()
        }
    }

    fn packet(&mut self, p: &[u8]) -> Vec<u8> {
        let to = p[0] & 0x0F;
        if to != self.address && to != 8 {
            return Vec::new();
        }
        if self.answer_noise {
            self.seed += 1;
            return noise(self.seed, 64);
        }
        let me = 0x80 | ((self.address + 8) << 4);
        let done = vec![me, 0x41, 0xFF, me, 0x51, 0xFF];
        match &p[1..] {
            [0x01, 0x04, 0x3F, 0x02, n] => {
                self.recalls.push(*n);
                self.recall_times.push(Instant::now());
                done
            }
            [0x01, 0x04, 0x3F, 0x01, n] => {
                self.saved.push(*n);
                done
            }
            [0x01, 0x06, 0x04] => done,
            [0x09, 0x04, 0x00] => vec![me, 0x50, 0x02, 0xFF],
            [0x01, 0x00, 0x01] if to == 8 => Vec::new(),
            _ => {
                self.syntax_errors += 1;
                vec![me, 0x60, 0x02, 0xFF]
            }
        }
    }
}

impl Device for ViscaHead {
    fn input(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.buf.is_empty() {
                if (0x81..=0x88).contains(&b) {
                    self.buf.push(b);
                }
                continue;
            }
            if b == 0xFF {
                let p = std::mem::take(&mut self.buf);
                if p.len() >= 2 {
                    out.extend(self.packet(&p));
                }
            } else if b & 0x80 != 0 {
                self.buf.clear();
                if (0x81..=0x88).contains(&b) {
                    self.buf.push(b);
                }
            } else if self.buf.len() >= 15 {
                self.buf.clear();
            } else {
                self.buf.push(b);
            }
        }
        out
    }
}

/// What an ESC/POS command still needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum EscPos {
    #[default]
    Text,
    Esc,
    Gs,
    GsV,
    Fs,
    /// Skip `n` argument bytes, then do `then`.
    Args(u8, After),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    Feed,
    Cut,
}

/// An ESC/POS receipt printer that keeps what it prints.
#[derive(Debug)]
pub struct EscPosPrinter {
    /// Receipts cut so far, as text.
    pub receipts: Vec<String>,
    /// Every byte received, commands included (up to 1 MiB, then the oldest are dropped).
    pub raw: Vec<u8>,
    /// Printed since the last cut.
    pub paper: Vec<u8>,
    /// Paper present.
    pub has_paper: bool,
    /// `ESC @` resets seen.
    pub resets: u64,
    /// Answer status requests with noise.
    pub answer_noise: bool,
    /// Report itself offline (cover open) to `DLE EOT 1`.
    pub offline: bool,
    /// In Chinese character mode (`FS &` until `FS .` or `ESC @`): text is GB18030.
    pub chinese: bool,
    /// Chinese mode was on while the receipt being printed was written.
    chinese_receipt: bool,
    state: EscPos,
    /// Last two raw bytes, for real-time `DLE EOT n`.
    last: [u8; 2],
    seed: u64,
}

impl Default for EscPosPrinter {
    fn default() -> Self {
        Self {
            receipts: Vec::new(),
            raw: Vec::new(),
            paper: Vec::new(),
            has_paper: true,
            resets: 0,
            answer_noise: false,
            offline: false,
            chinese: false,
            chinese_receipt: false,
            state: EscPos::Text,
            last: [0; 2],
            seed: 0,
        }
    }
}

impl EscPosPrinter {
    fn cut(&mut self) {
        let paper = std::mem::take(&mut self.paper);
        // A receipt written in Chinese mode is GB18030 (decoded by encoding_rs, not by
        // the driver's code); otherwise UTF-8.
        let text = if std::mem::replace(&mut self.chinese_receipt, self.chinese) {
            encoding_rs::GB18030.decode(&paper).0.into_owned()
        } else {
            String::from_utf8_lossy(&paper).into_owned()
        };
        self.receipts.push(text);
    }
}

impl Device for EscPosPrinter {
    fn input(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.raw.extend_from_slice(bytes);
        if self.raw.len() > 1 << 20 {
            let cut = self.raw.len() - (1 << 20);
            self.raw.drain(..cut);
        }
        for &b in bytes {
            // Real-time commands act wherever they appear in the stream.
            if self.last == [0x10, 0x04] && (1..=4).contains(&b) {
                if self.answer_noise {
                    self.seed += 1;
                    out.extend(noise(self.seed, 8).iter().map(|x| x | 0x80));
                } else {
                    out.push(match b {
                        4 if !self.has_paper => 0x72,
                        1 if self.offline => 0x1E,
                        _ => 0x12 | if b == 1 { 0x04 } else { 0 },
                    });
                }
            }
            self.last = [self.last[1], b];
            self.state = match (self.state, b) {
                (EscPos::Text, 0x1B) => EscPos::Esc,
                (EscPos::Text, 0x1D) => EscPos::Gs,
                (EscPos::Text, 0x10) => EscPos::Args(2, After::Nothing),
                (EscPos::Text, 0x1C) => EscPos::Fs,
                (EscPos::Text, b) => {
                    if b == b'\n' || b >= 0x20 {
                        self.paper.push(b);
                    }
                    EscPos::Text
                }
                (EscPos::Esc, b'@') => {
                    self.resets += 1;
                    self.chinese = false;
                    if self.paper.is_empty() {
                        self.chinese_receipt = false;
                    }
                    EscPos::Text
                }
                (EscPos::Fs, b'&') => {
                    self.chinese = true;
                    self.chinese_receipt = true;
                    EscPos::Text
                }
                (EscPos::Fs, b'.') => {
                    self.chinese = false;
                    EscPos::Text
                }
                (EscPos::Fs, _) => EscPos::Text,
                (EscPos::Esc, b'd') => EscPos::Args(1, After::Feed),
                (EscPos::Esc, b'a' | b'E' | b'!' | b'-' | b't' | b'M') => {
                    EscPos::Args(1, After::Nothing)
                }
                (EscPos::Esc, _) => EscPos::Text,
                (EscPos::Gs, b'!') => EscPos::Args(1, After::Nothing),
                (EscPos::Gs, b'V') => EscPos::GsV,
                (EscPos::Gs, _) => EscPos::Text,
                (EscPos::GsV, 0 | 1 | 48 | 49) => {
                    self.cut();
                    EscPos::Text
                }
                (EscPos::GsV, 65 | 66) => EscPos::Args(1, After::Cut),
                (EscPos::GsV, _) => EscPos::Text,
                (EscPos::Args(n, then), arg) if n <= 1 => {
                    match then {
                        After::Nothing => {}
                        After::Feed => self.paper.extend(std::iter::repeat_n(b'\n', arg.into())),
                        After::Cut => self.cut(),
                    }
                    EscPos::Text
                }
                (EscPos::Args(n, then), _) => EscPos::Args(n - 1, then),
            };
        }
        out
    }
}

/// A "recording in progress" sign controller (`>CMD*HH\r` protocol).
#[derive(Debug, Default)]
pub struct SignController {
    /// The sign is lit.
    pub lit: bool,
    /// Valid ON/OFF commands executed.
    pub switches: u64,
    /// Frames refused (bad checksum, unknown command).
    pub refused: u64,
    /// Answer with noise instead of replies.
    pub answer_noise: bool,
    buf: Option<Vec<u8>>,
    seed: u64,
}

fn sign_reply(body: &str) -> Vec<u8> {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("<{body}*{sum:02X}\r").into_bytes()
}

impl SignController {
    fn frame(&mut self, f: &[u8]) -> Vec<u8> {
        if self.answer_noise {
            self.seed += 1;
            return noise(self.seed, 32)
                .into_iter()
                .filter(|b| *b != b'<')
                .collect();
        }
        let text = String::from_utf8_lossy(f);
        let Some((cmd, sum)) = text.rsplit_once('*') else {
            self.refused += 1;
            return sign_reply("ERR format");
        };
        let want = cmd.bytes().fold(0u8, |a, b| a ^ b);
        if u8::from_str_radix(sum, 16).ok() != Some(want) {
            self.refused += 1;
            return sign_reply("ERR checksum");
        }
        match cmd {
            "ON" | "OFF" => {
                self.lit = cmd == "ON";
                self.switches += 1;
                sign_reply(cmd)
            }
            "STATUS" => sign_reply(if self.lit { "ON" } else { "OFF" }),
            _ => {
                self.refused += 1;
                sign_reply("ERR unknown command")
            }
        }
    }
}

impl Device for SignController {
    fn input(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in bytes {
            match (&mut self.buf, b) {
                (_, b'>') => self.buf = Some(Vec::new()),
                (Some(_), b'\r') => {
                    if let Some(f) = self.buf.take() {
                        out.extend(self.frame(&f));
                    }
                }
                (Some(buf), b) if buf.len() < 64 => buf.push(b),
                (Some(_), _) => self.buf = None,
                (None, _) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printer_emulator_keeps_text_between_cuts_and_answers_status() {
        let mut p = EscPosPrinter::default();
        let out = p.input(b"\x1b@\x1ba\x01A023\n\x1dV\x42\x03\x10\x04\x04");
        assert_eq!(p.receipts, ["A023\n"]);
        assert_eq!(out, [0x12]);
    }

    #[test]
    fn the_sign_emulator_checks_checksums() {
        let mut s = SignController::default();
        assert_eq!(s.input(b">ON*01\r"), b"<ON*01\r");
        assert!(s.lit);
        assert!(s.input(b">OFF*00\r").starts_with(b"<ERR checksum"));
        assert!(s.lit);
    }

    #[test]
    fn the_visca_emulator_records_recalls() {
        let mut h = ViscaHead::new(1);
        let out = h.input(&[0x81, 0x01, 0x04, 0x3F, 0x02, 0x03, 0xFF]);
        assert_eq!(out, [0x90, 0x41, 0xFF, 0x90, 0x51, 0xFF]);
        assert_eq!(h.recalls, [3]);
    }
}
