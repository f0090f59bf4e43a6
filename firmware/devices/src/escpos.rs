//! ESC/POS receipt printers: the kiosk's queue tickets.
//!
//! [`Receipt`] writes ESC/POS bytes (initialise, alignment, emphasis, character size,
//! feed, cut) and is pure, so tickets are tested as byte strings. [`QueueTicket`] is the
//! kiosk's ticket layout. [`Printer`] sends receipts over a [`SerialLink`] after asking
//! the printer's real-time status (`DLE EOT`), whose one-byte answers [`StatusParser`]
//! picks out of whatever else is on the line.
//!
//! Text is sent as UTF-8: set the printer's code page to UTF-8. Printers that only take
//! GB18030 need an encoder here (not done yet).

use std::time::Duration;

use time::OffsetDateTime;

use crate::serial::{Deframer, Garbage, PortSettings, SerialError, SerialLink};

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const DLE: u8 = 0x10;
const EOT: u8 = 0x04;
const LF: u8 = 0x0A;

/// Horizontal alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left = 0,
    Center = 1,
    Right = 2,
}

/// A receipt being written, as ESC/POS bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    bytes: Vec<u8>,
}

impl Default for Receipt {
    fn default() -> Self {
        Self::new()
    }
}

impl Receipt {
    /// A receipt that starts by resetting the printer (`ESC @`), which also ends any
    /// half-received command left by line noise.
    pub fn new() -> Self {
        Self {
            bytes: vec![ESC, b'@'],
        }
    }

    /// `ESC a n`.
    pub fn align(mut self, align: Align) -> Self {
        self.bytes.extend([ESC, b'a', align as u8]);
        self
    }

    /// `ESC E n`: emphasised (bold) on or off.
    pub fn bold(mut self, on: bool) -> Self {
        self.bytes.extend([ESC, b'E', u8::from(on)]);
        self
    }

    /// `GS ! n`: character width and height multipliers, each 1-8.
    pub fn size(mut self, width: u8, height: u8) -> Self {
        let w = width.clamp(1, 8) - 1;
        let h = height.clamp(1, 8) - 1;
        self.bytes.extend([GS, b'!', (w << 4) | h]);
        self
    }

    /// Text followed by a line feed. Control characters are replaced by spaces so text
    /// (a party's name, a case title) can never inject printer commands.
    pub fn line(mut self, text: &str) -> Self {
        for c in text.chars() {
            let c = if c.is_control() { ' ' } else { c };
            let mut buf = [0u8; 4];
            self.bytes.extend(c.encode_utf8(&mut buf).as_bytes());
        }
        self.bytes.push(LF);
        self
    }

    /// `ESC d n`: feed `lines` lines.
    pub fn feed(mut self, lines: u8) -> Self {
        self.bytes.extend([ESC, b'd', lines]);
        self
    }

    /// `GS V 66 n`: feed to the cutter and cut, leaving a hinge (partial cut).
    pub fn cut(mut self) -> Self {
        self.bytes.extend([GS, b'V', 66, 3]);
        self
    }

    /// The bytes to send.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// A service-hall queue ticket (排队叫号).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueTicket {
    /// Court name printed at the top.
    pub court: String,
    /// Ticket number, e.g. `A023`.
    pub number: String,
    /// Service the ticket is for, e.g. `filing`.
    pub service: String,
    /// People ahead in the queue.
    pub waiting: u32,
    /// When the ticket was taken.
    pub issued: OffsetDateTime,
}

impl QueueTicket {
    /// The ticket as a receipt: court, big number, service, queue length, time, cut.
    pub fn receipt(&self) -> Receipt {
        let issued = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            self.issued.year(),
            u8::from(self.issued.month()),
            self.issued.day(),
            self.issued.hour(),
            self.issued.minute()
        );
        Receipt::new()
            .align(Align::Center)
            .line(&self.court)
            .feed(1)
            .bold(true)
            .size(3, 3)
            .line(&self.number)
            .size(1, 1)
            .bold(false)
            .feed(1)
            .line(&format!("Service: {}", self.service))
            .line(&format!("Waiting ahead: {}", self.waiting))
            .line(&issued)
            .feed(3)
            .cut()
    }
}

/// Real-time status the printer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrinterStatus {
    /// The printer is online (`DLE EOT 1`, bit 3 clear).
    pub online: bool,
    /// Paper is present (`DLE EOT 4`, bits 5-6 clear).
    pub paper: bool,
    /// Paper is running low (`DLE EOT 4`, bits 2-3).
    pub paper_low: bool,
}

/// Picks `DLE EOT` status bytes (fixed bits `0xx1xx10`) out of the input.
#[derive(Debug, Default)]
pub struct StatusParser {
    /// Bytes skipped since the last status byte.
    skipped: usize,
}

/// Whether `b` has the fixed bits of a real-time status byte.
pub fn is_status_byte(b: u8) -> bool {
    b & 0x93 == 0x12
}

impl Deframer for StatusParser {
    type Frame = u8;

    fn push(&mut self, b: u8) -> Option<Result<u8, Garbage>> {
        if is_status_byte(b) {
            let skipped = std::mem::take(&mut self.skipped);
            if skipped > 0 {
                // Design: a status-shaped byte right after garbage cannot be told from
                // garbage, so it is dropped with it; a caller clears input before asking,
                // so a real answer does not follow garbage.
                let skipped = skipped + 1;
                return Some(Err(Garbage {
                    skipped,
                    reason: format!(
                        "{skipped} bytes that are not ESC/POS status bytes (fixed bits 0xx1xx10)"
                    ),
                }));
            }
            return Some(Ok(b));
        }
        self.skipped += 1;
        None
    }

    fn reset(&mut self) {
        self.skipped = 0;
    }

    fn take_garbage(&mut self) -> Option<Garbage> {
        let skipped = std::mem::take(&mut self.skipped);
        (skipped > 0).then(|| Garbage {
            skipped,
            reason: format!(
                "{skipped} bytes that are not ESC/POS status bytes (fixed bits 0xx1xx10)"
            ),
        })
    }
}

/// Why printing failed.
#[derive(Debug, thiserror::Error)]
pub enum PrinterError {
    #[error(transparent)]
    Serial(#[from] SerialError),
    #[error("printer {0}: out of paper")]
    PaperOut(String),
    #[error("printer {0}: offline (cover open or error)")]
    Offline(String),
}

/// An ESC/POS printer on a serial port.
pub struct Printer {
    link: SerialLink<StatusParser>,
    /// How long to wait for each status byte.
    pub timeout: Duration,
}

impl Printer {
    /// A printer on the port in `settings`; opened on first use.
    pub fn new(settings: PortSettings) -> Self {
        Self {
            link: SerialLink::new(settings, StatusParser::default()),
            timeout: Duration::from_secs(1),
        }
    }

    /// The serial link (for statistics and input draining).
    pub fn link(&mut self) -> &mut SerialLink<StatusParser> {
        &mut self.link
    }

    fn ask(&mut self, n: u8) -> Result<u8, PrinterError> {
        self.link.clear_input()?;
        self.link.send(&[DLE, EOT, n])?;
        Ok(self.link.recv(self.timeout)?)
    }

    /// Asks the printer's status (`DLE EOT 1` and `DLE EOT 4`).
    pub fn status(&mut self) -> Result<PrinterStatus, PrinterError> {
        let printer = self.ask(1)?;
        let paper = self.ask(4)?;
        Ok(PrinterStatus {
            online: printer & 0x08 == 0,
            paper: paper & 0x60 == 0,
            paper_low: paper & 0x0C != 0,
        })
    }

    /// Prints `receipt` after checking the printer is online and has paper.
    pub fn print(&mut self, receipt: Receipt) -> Result<(), PrinterError> {
        let status = self.status()?;
        let name = self.link.path().display().to_string();
        if !status.online {
            return Err(PrinterError::Offline(name));
        }
        if !status.paper {
            return Err(PrinterError::PaperOut(name));
        }
        if status.paper_low {
            tracing::warn!(printer = %name, "printer paper running low");
        }
        self.link.send(&receipt.into_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_starts_with_initialise_and_ends_with_a_cut() {
        let bytes = Receipt::new().line("hi").cut().into_bytes();
        assert_eq!(bytes, [ESC, b'@', b'h', b'i', LF, GS, b'V', 66, 3]);
    }

    #[test]
    fn size_packs_width_and_height_multipliers_into_one_byte() {
        let bytes = Receipt::new().size(2, 3).into_bytes();
        assert_eq!(&bytes[2..], [GS, b'!', 0x12]);
        let clamped = Receipt::new().size(0, 99).into_bytes();
        assert_eq!(&clamped[2..], [GS, b'!', 0x07]);
    }

    #[test]
    fn control_characters_in_ticket_text_cannot_inject_printer_commands() {
        let bytes = Receipt::new().line("A\u{1b}@\u{1d}V\nB").into_bytes();
        assert_eq!(&bytes[2..], b"A @ V B\n");
    }

    #[test]
    fn a_queue_ticket_shows_the_number_big_and_centred() {
        let t = QueueTicket {
            court: "西湖区人民法院".into(),
            number: "A023".into(),
            service: "filing".into(),
            waiting: 4,
            issued: time::macros::datetime!(2026-11-27 09:05 UTC),
        };
        let bytes = t.receipt().into_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("西湖区人民法院"), "{text}");
        assert!(text.contains("Waiting ahead: 4"), "{text}");
        assert!(text.contains("2026-11-27 09:05"), "{text}");
        let big = [GS, b'!', 0x22, b'A', b'0', b'2', b'3'];
        assert!(
            bytes.windows(big.len()).any(|w| w == big),
            "number printed 3x"
        );
        assert_eq!(&bytes[2..5], [ESC, b'a', 1], "centred");
    }

    #[test]
    fn status_bytes_are_picked_out_of_garbage() {
        let mut p = StatusParser::default();
        let out: Vec<_> = [0xFF, 0x00, 0x12, 0x16]
            .into_iter()
            .filter_map(|b| p.push(b))
            .collect();
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], Err(g) if g.skipped == 3 && g.reason.contains("status")));
        assert_eq!(out[1], Ok(0x16));
    }
}
