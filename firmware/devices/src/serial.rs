//! A framed serial link: the shell every RS-232 device driver here runs on.
//!
//! [`SerialLink`] owns one port and one [`Deframer`] (the device's pure reply parser).
//! It opens the port lazily, reads with a timeout, feeds bytes to the deframer, counts
//! and skips garbage, and reopens a port that disappears (a USB adapter pulled and
//! plugged back, a `socat` pty pair restarted) with exponential backoff, so a caller
//! only ever sees a clear error for the one operation that failed.
//!
//! Blocking by design: drivers run on a dedicated thread or `spawn_blocking`.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serialport::SerialPort;
use tracing::{debug, info, warn};

/// Bytes a deframer threw away and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage {
    /// How many bytes were skipped.
    pub skipped: usize,
    /// What was wrong with them, for people (e.g. "VISCA frame longer than 16 bytes").
    pub reason: String,
}

/// A device's pure reply parser: bytes in, frames or garbage out, one byte at a time so
/// that it can resynchronise at any byte.
pub trait Deframer {
    /// A valid reply.
    type Frame;
    /// Takes the next byte; returns a frame when this byte completes one, or a
    /// [`Garbage`] report when it proves the bytes held so far are not one.
    fn push(&mut self, byte: u8) -> Option<Result<Self::Frame, Garbage>>;
    /// Forgets any partial frame (after a reopen or before a new exchange).
    fn reset(&mut self);
    /// Reports bytes skipped but not yet reported (called when a wait times out, so
    /// the error can say what arrived instead of a reply).
    fn take_garbage(&mut self) -> Option<Garbage> {
        None
    }
}

/// Where and how to open a port.
#[derive(Debug, Clone, PartialEq)]
pub struct PortSettings {
    /// Device path (`/dev/ttyUSB0`, or a `socat` pty link in tests).
    pub path: PathBuf,
    /// Baud rate (ignored by ptys).
    pub baud: u32,
    /// First reopen delay after the port fails; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reopen delay.
    pub backoff_max: Duration,
}

impl PortSettings {
    /// Settings for `path` at `baud` with default backoff (100 ms to 5 s).
    pub fn new(path: impl Into<PathBuf>, baud: u32) -> Self {
        Self {
            path: path.into(),
            baud,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Counters a driver can report in health or logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes read from the port.
    pub bytes_in: u64,
    /// Bytes written to the port.
    pub bytes_out: u64,
    /// Bytes skipped as garbage.
    pub garbage_bytes: u64,
    /// Garbage reports from the deframer.
    pub bad_frames: u64,
    /// Valid frames received.
    pub frames: u64,
    /// Times the port was (re)opened.
    pub opens: u64,
    /// Reason of the last garbage report.
    pub last_garbage: Option<String>,
}

/// Why a serial operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The port could not be opened (missing device, permissions, busy).
    #[error("{path}: cannot open serial port: {source}; next try in {retry_in:?}")]
    Open {
        path: PathBuf,
        source: serialport::Error,
        retry_in: Duration,
    },
    /// The port failed after a recent failure and the backoff has not run out.
    #[error("{path}: serial port unavailable after an error; next try in {retry_in:?}")]
    Backoff { path: PathBuf, retry_in: Duration },
    /// The port went away while in use (hang-up, unplugged adapter).
    #[error("{path}: serial port lost: {source}; reopening in {retry_in:?}")]
    Lost {
        path: PathBuf,
        source: std::io::Error,
        retry_in: Duration,
    },
    /// No valid frame arrived in time.
    #[error("{path}: no valid reply within {waited:?}{}", garbage_note(*.garbage_bytes, .last_garbage.as_deref()))]
    Timeout {
        path: PathBuf,
        waited: Duration,
        /// Garbage bytes skipped while waiting.
        garbage_bytes: u64,
        /// Why the last garbage was refused.
        last_garbage: Option<String>,
    },
}

fn garbage_note(bytes: u64, last: Option<&str>) -> String {
    match (bytes, last) {
        (0, _) => String::new(),
        (n, Some(why)) => format!(" ({n} bytes of garbage skipped; last: {why})"),
        (n, None) => format!(" ({n} bytes of garbage skipped)"),
    }
}

impl SerialError {
    /// Whether the error means the port itself is unusable right now (as opposed to the
    /// device not answering).
    pub fn port_unavailable(&self) -> bool {
        !matches!(self, Self::Timeout { .. })
    }
}

/// One serial port with a deframer, reopened on failure.
pub struct SerialLink<D: Deframer> {
    settings: PortSettings,
    deframer: D,
    port: Option<Box<dyn SerialPort>>,
    /// Frames parsed but not yet taken by [`SerialLink::recv`].
    pending: VecDeque<D::Frame>,
    /// When the next open may be tried, after a failure.
    retry_at: Option<Instant>,
    /// Current reopen delay.
    backoff: Duration,
    stats: LinkStats,
    /// Garbage reports since the last valid frame (for log rate limiting).
    garbage_run: u64,
}

/// Longest single read wait; bounds how late a deadline is noticed.
const POLL: Duration = Duration::from_millis(50);

impl<D: Deframer> SerialLink<D> {
    /// A link for `settings`; the port is opened on first use.
    pub fn new(settings: PortSettings, deframer: D) -> Self {
        let backoff = settings.backoff_min;
        Self {
            settings,
            deframer,
            port: None,
            pending: VecDeque::new(),
            retry_at: None,
            backoff,
            stats: LinkStats::default(),
            garbage_run: 0,
        }
    }

    /// The port path.
    pub fn path(&self) -> &Path {
        &self.settings.path
    }

    /// Counters since the link was created.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Whether the port is open now.
    pub fn is_open(&self) -> bool {
        self.port.is_some()
    }

    fn ensure_open(&mut self) -> Result<&mut Box<dyn SerialPort>, SerialError> {
        if self.port.is_none() {
            if let Some(at) = self.retry_at {
                let now = Instant::now();
                if now < at {
                    return Err(SerialError::Backoff {
                        path: self.settings.path.clone(),
                        retry_in: at - now,
                    });
                }
            }
            match serialport::new(self.settings.path.to_string_lossy(), self.settings.baud)
                .timeout(POLL)
                .open()
            {
                Ok(port) => {
                    self.stats.opens += 1;
                    if self.stats.opens > 1 {
                        info!(path = %self.settings.path.display(), "serial port reopened");
                    }
                    self.retry_at = None;
                    self.backoff = self.settings.backoff_min;
                    self.deframer.reset();
                    self.pending.clear();
                    self.port = Some(port);
                }
                Err(source) => {
                    let retry_in = self.fail();
                    return Err(SerialError::Open {
                        path: self.settings.path.clone(),
                        source,
                        retry_in,
                    });
                }
            }
        }
        self.port.as_mut().ok_or_else(|| SerialError::Backoff {
            path: self.settings.path.clone(),
            retry_in: Duration::ZERO,
        })
    }

    /// Drops the port and schedules the next open; returns the delay.
    fn fail(&mut self) -> Duration {
        self.port = None;
        let delay = self.backoff;
        self.retry_at = Some(Instant::now() + delay);
        self.backoff = (self.backoff * 2).min(self.settings.backoff_max);
        delay
    }

    fn lost(&mut self, source: std::io::Error) -> SerialError {
        let retry_in = self.fail();
        warn!(path = %self.settings.path.display(), error = %source, ?retry_in, "serial port lost");
        SerialError::Lost {
            path: self.settings.path.clone(),
            source,
            retry_in,
        }
    }

    /// Writes `bytes` completely.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SerialError> {
        let port = self.ensure_open()?;
        let result = port.write_all(bytes).and_then(|()| port.flush());
        match result {
            Ok(()) => {
                self.stats.bytes_out += bytes.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Reads one chunk (waiting at most `wait`) and feeds it to the deframer. Returns
    /// the number of bytes read; 0 on a quiet line.
    fn read_chunk(&mut self, wait: Duration) -> Result<usize, SerialError> {
        let port = self.ensure_open()?;
        if let Err(e) = port.set_timeout(wait.clamp(Duration::from_millis(1), POLL)) {
            return Err(self.lost(std::io::Error::other(e)));
        }
        let mut buf = [0u8; 4096];
        let n = match port.read(&mut buf) {
            Ok(0) => {
                return Err(self.lost(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "end of file on serial port",
                )));
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => 0,
            Err(e) if e.kind() == ErrorKind::Interrupted => 0,
            Err(e) => return Err(self.lost(e)),
        };
        self.stats.bytes_in += n as u64;
        for &byte in &buf[..n] {
            match self.deframer.push(byte) {
                None => {}
                Some(Ok(frame)) => {
                    self.stats.frames += 1;
                    if self.garbage_run > 0 {
                        debug!(path = %self.settings.path.display(), bad_frames = self.garbage_run, "serial link resynchronised");
                    }
                    self.garbage_run = 0;
                    self.pending.push_back(frame);
                }
                Some(Err(g)) => self.note_garbage(g),
            }
        }
        Ok(n)
    }

    fn note_garbage(&mut self, g: Garbage) {
        self.stats.garbage_bytes += g.skipped as u64;
        self.stats.bad_frames += 1;
        if self.garbage_run == 0 {
            warn!(path = %self.settings.path.display(), reason = %g.reason, "garbage on serial link; resynchronising");
        }
        self.garbage_run += 1;
        self.stats.last_garbage = Some(g.reason);
    }

    /// Waits up to `timeout` for the next valid frame, skipping garbage.
    pub fn recv(&mut self, timeout: Duration) -> Result<D::Frame, SerialError> {
        let start = Instant::now();
        let garbage_before = self.stats.garbage_bytes;
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(frame);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                if let Some(g) = self.deframer.take_garbage() {
                    self.note_garbage(g);
                }
                let garbage_bytes = self.stats.garbage_bytes - garbage_before;
                return Err(SerialError::Timeout {
                    path: self.settings.path.clone(),
                    waited,
                    garbage_bytes,
                    last_garbage: (garbage_bytes > 0)
                        .then(|| self.stats.last_garbage.clone())
                        .flatten(),
                });
            }
            self.read_chunk(timeout - waited)?;
        }
    }

    /// Throws away input already received (in the OS buffer and parsed but not taken)
    /// and any partial frame: call before a request so stale replies cannot answer it.
    pub fn clear_input(&mut self) -> Result<(), SerialError> {
        let port = self.ensure_open()?;
        if let Err(e) = port.clear(serialport::ClearBuffer::Input) {
            return Err(self.lost(std::io::Error::other(e)));
        }
        self.pending.clear();
        self.deframer.reset();
        Ok(())
    }

    /// Reads and throws away input until the line has been quiet for `quiet` (or `max`
    /// has passed), then forgets any partial frame: the start of a clean exchange.
    /// Returns the number of bytes discarded.
    pub fn discard_input(&mut self, quiet: Duration, max: Duration) -> Result<u64, SerialError> {
        let start = Instant::now();
        let before = self.stats.bytes_in;
        let mut last_byte = Instant::now();
        while start.elapsed() < max {
            let n = self.read_chunk(quiet.min(POLL))?;
            if n > 0 {
                last_byte = Instant::now();
            } else if last_byte.elapsed() >= quiet {
                break;
            }
        }
        if let Some(g) = self.deframer.take_garbage() {
            self.note_garbage(g);
        }
        self.pending.clear();
        self.deframer.reset();
        Ok(self.stats.bytes_in - before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lines(Vec<u8>);
    impl Deframer for Lines {
        type Frame = String;
        fn push(&mut self, byte: u8) -> Option<Result<String, Garbage>> {
            if byte == b'\n' {
                return Some(Ok(
                    String::from_utf8_lossy(&std::mem::take(&mut self.0)).into()
                ));
            }
            self.0.push(byte);
            None
        }
        fn reset(&mut self) {
            self.0.clear();
        }
    }

    #[test]
    fn a_missing_port_gives_an_open_error_naming_the_path_then_backs_off() {
        let mut settings = PortSettings::new("/dev/gavel-no-such-port", 9600);
        settings.backoff_min = Duration::from_secs(60);
        let mut link = SerialLink::new(settings, Lines(Vec::new()));
        let err = link.send(b"x").expect_err("no port");
        assert!(matches!(err, SerialError::Open { .. }), "{err}");
        assert!(err.to_string().contains("/dev/gavel-no-such-port"), "{err}");
        let again = link.send(b"x").expect_err("still no port");
        assert!(matches!(again, SerialError::Backoff { .. }), "{again}");
        assert!(again.port_unavailable());
    }

    #[test]
    fn a_timeout_message_names_the_garbage_skipped() {
        let err = SerialError::Timeout {
            path: "/dev/ttyUSB0".into(),
            waited: Duration::from_millis(500),
            garbage_bytes: 12,
            last_garbage: Some("bad header 0x3a".into()),
        };
        let text = err.to_string();
        assert!(text.contains("12 bytes of garbage"), "{text}");
        assert!(text.contains("bad header 0x3a"), "{text}");
        assert!(!err.port_unavailable());
    }
}
