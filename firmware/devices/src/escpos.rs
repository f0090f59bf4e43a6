//! ESC/POS receipt printers: the kiosk's queue tickets.
//!
//! [`Receipt`] writes ESC/POS bytes (initialise, alignment, emphasis, character size,
//! feed, cut) and is pure, so tickets are tested as byte strings. [`QueueTicket`] is the
//! kiosk's ticket layout. [`Printer`] sends receipts over a [`SerialLink`] after asking
//! the printer's real-time status (`DLE EOT`), whose one-byte answers [`StatusParser`]
//! picks out of whatever else is on the line.
//!
//! Text is encoded as the printer expects ([`Encoding`]): GB18030 in the printer's Chinese
//! character mode (`FS &` at the start of the receipt, `FS .` at its end), which is what
//! Chinese receipt printers take, or UTF-8 for printers set to a UTF-8 code page. Either
//! way control characters in text are replaced before encoding, and no byte of an encoded
//! GB18030 character is below 0x30, so text can never turn into a printer command.

use std::time::Duration;

use time::OffsetDateTime;

use crate::serial::{Deframer, Garbage, PortSettings, SerialError, SerialLink};

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const DLE: u8 = 0x10;
const EOT: u8 = 0x04;
const LF: u8 = 0x0A;
const FS: u8 = 0x1C;

/// How a receipt's text is encoded for the printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8, for printers set to a UTF-8 code page.
    #[default]
    Utf8,
    /// GB18030 in the printer's Chinese character mode (`FS &` ... `FS .`): Chinese
    /// receipt printers.
    Gb18030,
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Self::Utf8),
            "gb18030" => Ok(Self::Gb18030),
            other => Err(format!(
                "unknown printer encoding {other:?} (utf-8 or gb18030)"
            )),
        }
    }
}

impl From<&gavel_profile::PrinterSettings> for Encoding {
    /// The profile's `capabilities.printer.encoding` (validated when the profile loads;
    /// anything else counts as GB18030, the Chinese printers' default).
    fn from(settings: &gavel_profile::PrinterSettings) -> Self {
        settings.encoding.parse().unwrap_or(Self::Gb18030)
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Utf8 => "utf-8",
            Self::Gb18030 => "gb18030",
        })
    }
}

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
    encoding: Encoding,
}

impl Default for Receipt {
    fn default() -> Self {
        Self::new()
    }
}

impl Receipt {
    /// A receipt that starts by resetting the printer (`ESC @`), which also ends any
    /// half-received command left by line noise; text in UTF-8.
    pub fn new() -> Self {
        Self::with_encoding(Encoding::Utf8)
    }

    /// A receipt whose text is in `encoding`. GB18030 receipts switch the printer to its
    /// Chinese character mode after the reset (`FS &`) and back at the end (`FS .`).
    pub fn with_encoding(encoding: Encoding) -> Self {
        let mut bytes = vec![ESC, b'@'];
        if encoding == Encoding::Gb18030 {
            bytes.extend([FS, b'&']);
        }
        Self { bytes, encoding }
    }

    /// The encoding of the receipt's text.
    pub fn encoding(&self) -> Encoding {
        self.encoding
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
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        match self.encoding {
            Encoding::Utf8 => self.bytes.extend(clean.as_bytes()),
            Encoding::Gb18030 => {
                // GB18030 maps every Unicode scalar value, so nothing is lost.
                let (encoded, _, _) = encoding_rs::GB18030.encode(&clean);
                self.bytes.extend(encoded.iter());
            }
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
    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.encoding == Encoding::Gb18030 {
            // Leave the printer in single-byte mode for whatever prints next.
            self.bytes.extend([FS, b'.']);
        }
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
    /// The ticket as a receipt in UTF-8: court, big number, service, queue length, time,
    /// cut.
    pub fn receipt(&self) -> Receipt {
        self.receipt_in(Encoding::Utf8)
    }

    /// The ticket as a receipt with its text in `encoding` (GB18030 for Chinese receipt
    /// printers); same layout as [`QueueTicket::receipt`].
    pub fn receipt_in(&self, encoding: Encoding) -> Receipt {
        let issued = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            self.issued.year(),
            u8::from(self.issued.month()),
            self.issued.day(),
            self.issued.hour(),
            self.issued.minute()
        );
        Receipt::with_encoding(encoding)
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

/// A technician's test page: who printed it and when, the port and encoding, a Chinese
/// and a Latin sample line, a ruler as wide as `columns`, then a cut.
pub fn test_receipt(
    device: &str,
    port: &str,
    encoding: Encoding,
    columns: u16,
    now: OffsetDateTime,
) -> Receipt {
    let ruler: String = (1..=columns.max(1))
        .map(|i| char::from(b'0' + (i % 10) as u8))
        .collect();
    Receipt::with_encoding(encoding)
        .align(Align::Center)
        .bold(true)
        .line("打印测试 PRINTER TEST")
        .bold(false)
        .align(Align::Left)
        .line(&format!("device {device}"))
        .line(&format!("port {port}, {encoding}"))
        .line(&format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        ))
        .line("中文：诉讼服务中心 排队叫号")
        .line("Latin: ABC xyz 0123456789")
        .line(&ruler)
        .feed(3)
        .cut()
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
    fn chinese_text_is_sent_as_gb18030_inside_the_printers_chinese_mode() {
        let bytes = Receipt::with_encoding(Encoding::Gb18030)
            .line("法院 A1")
            .cut()
            .into_bytes();
        // 法 = B7 A8, 院 = D4 BA in GB2312/GBK/GB18030.
        assert_eq!(
            bytes,
            [
                ESC, b'@', FS, b'&', 0xB7, 0xA8, 0xD4, 0xBA, b' ', b'A', b'1', LF, GS, b'V', 66, 3,
                FS, b'.'
            ]
        );
    }

    #[test]
    fn characters_outside_gbk_use_gb18030_four_byte_sequences() {
        // € is 0x80 in GBK but A2 E3 in GB18030; 😀 (U+1F600) takes four bytes, 94 39 FC 36.
        let bytes = Receipt::with_encoding(Encoding::Gb18030)
            .line("€😀")
            .into_bytes();
        assert_eq!(
            &bytes[4..bytes.len() - 2],
            [0xA2, 0xE3, 0x94, 0x39, 0xFC, 0x36, LF]
        );
    }

    #[test]
    fn control_characters_in_chinese_text_cannot_inject_printer_commands() {
        let text = "西湖\u{1b}@\u{1d}V\u{10}\u{4}\u{1c}.\u{85}区\n";
        let bytes = Receipt::with_encoding(Encoding::Gb18030)
            .line(text)
            .into_bytes();
        let body = &bytes[4..bytes.len() - 3];
        assert_eq!(
            body,
            [
                0xCE, 0xF7, 0xBA, 0xFE, b' ', b'@', b' ', b'V', b' ', b' ', b' ', b'.', b' ', 0xC7,
                0xF8, b' '
            ]
        );
        // No encoded character yields a command byte, whatever the text.
        let all: String = ('\u{80}'..='\u{FFFF}')
            .chain('\u{10000}'..='\u{10FFF}')
            .filter(|c| !c.is_control())
            .collect();
        let bytes = Receipt::with_encoding(Encoding::Gb18030)
            .line(&all)
            .into_bytes();
        let body = &bytes[4..bytes.len() - 3];
        assert!(
            body.iter().all(|&b| b >= 0x20),
            "a control byte in encoded text"
        );
    }

    #[test]
    fn a_chinese_queue_ticket_decodes_back_to_its_text() {
        let t = QueueTicket {
            court: "西湖区人民法院".into(),
            number: "A023".into(),
            service: "立案 filing".into(),
            waiting: 4,
            issued: time::macros::datetime!(2026-11-27 09:05 UTC),
        };
        let bytes = t.receipt_in(Encoding::Gb18030).into_bytes();
        let (text, _, bad) = encoding_rs::GB18030.decode(&bytes);
        assert!(!bad);
        assert!(text.contains("西湖区人民法院\n"), "{text}");
        assert!(text.contains("Service: 立案 filing"), "{text}");
        let court_gb = [0xCE, 0xF7, 0xBA, 0xFE, 0xC7, 0xF8];
        assert!(bytes.windows(6).any(|w| w == court_gb), "西湖区 in GB18030");
        assert!(
            !bytes.windows(3).any(|w| w == "西".as_bytes()),
            "no UTF-8 left"
        );
    }

    #[test]
    fn encodings_parse_from_their_profile_names() {
        assert_eq!("GB18030".parse::<Encoding>(), Ok(Encoding::Gb18030));
        assert_eq!("utf-8".parse::<Encoding>(), Ok(Encoding::Utf8));
        assert!("latin1".parse::<Encoding>().is_err());
    }

    #[test]
    fn the_test_page_has_a_ruler_as_wide_as_the_paper() {
        let bytes = test_receipt(
            "kiosk-1",
            "/dev/ttyUSB0",
            Encoding::Gb18030,
            42,
            time::macros::datetime!(2026-11-27 09:05 UTC),
        )
        .into_bytes();
        let (text, _, _) = encoding_rs::GB18030.decode(&bytes);
        assert!(text.contains("打印测试"), "{text}");
        assert!(
            text.contains("123456789012345678901234567890123456789012\n"),
            "{text}"
        );
        assert!(
            !text.contains("1234567890123456789012345678901234567890123"),
            "{text}"
        );
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
