//! VISCA: Sony's RS-232 protocol for PTZ camera heads, spoken by most courtroom PTZ
//! cameras' serial ports.
//!
//! A packet is a header byte (`0x80 | address` from the controller, `0x80 | (address +
//! 8) << 4` i.e. `0x90`-`0xF0` from a camera), payload bytes below `0x80`, and the
//! terminator `0xFF`. Commands are answered by an ACK (`y0 4z FF`) then a completion
//! (`y0 5z FF`), or by an error (`y0 6z ee FF`); inquiries by `y0 50 data.. FF`.
//!
//! [`ReplyParser`] is the pure codec: it resynchronises on any header byte and on the
//! terminator, so garbage on the line costs at most the reply it overlaps.
//! [`ViscaCamera`] drives a camera over a [`SerialLink`].

use std::time::{Duration, Instant};

use crate::serial::{Deframer, Garbage, PortSettings, SerialError, SerialLink};

/// Packet terminator.
pub const TERMINATOR: u8 = 0xFF;
/// Longest VISCA packet, header and terminator included.
pub const MAX_PACKET: usize = 16;
/// Highest preset number accepted (keeps the preset byte a payload byte).
pub const MAX_PRESET: u8 = 127;

/// A command to a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `CAM_Memory Recall`: move to a stored preset.
    RecallPreset(u8),
    /// `CAM_Memory Set`: store the current position as a preset.
    SetPreset(u8),
    /// `Pan-tiltDrive Home`.
    Home,
    /// `CAM_PowerInq`: is the camera powered on?
    PowerInquiry,
}

impl Command {
    /// The packet for the camera at `address` (1-7).
    pub fn encode(self, address: u8) -> Result<Vec<u8>, ViscaError> {
        if !(1..=7).contains(&address) {
            return Err(ViscaError::BadAddress(address));
        }
        let h = 0x80 | address;
        let preset = |p: u8| {
            if p > MAX_PRESET {
                Err(ViscaError::PresetOutOfRange(p))
            } else {
                Ok(p)
            }
        };
        Ok(match self {
            Self::RecallPreset(p) => vec![h, 0x01, 0x04, 0x3F, 0x02, preset(p)?, TERMINATOR],
            Self::SetPreset(p) => vec![h, 0x01, 0x04, 0x3F, 0x01, preset(p)?, TERMINATOR],
            Self::Home => vec![h, 0x01, 0x06, 0x04, TERMINATOR],
            Self::PowerInquiry => vec![h, 0x09, 0x04, 0x00, TERMINATOR],
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::RecallPreset(_) => "preset recall",
            Self::SetPreset(_) => "preset set",
            Self::Home => "home",
            Self::PowerInquiry => "power inquiry",
        }
    }

    fn is_inquiry(self) -> bool {
        matches!(self, Self::PowerInquiry)
    }
}

/// A reply from a camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Command accepted into socket `socket`.
    Ack { from: u8, socket: u8 },
    /// Command in socket `socket` done.
    Completion { from: u8, socket: u8 },
    /// Answer to an inquiry.
    Inquiry { from: u8, data: Vec<u8> },
    /// Command refused with `code`.
    Error { from: u8, socket: u8, code: u8 },
}

impl Reply {
    /// Address (1-7) of the camera that sent the reply.
    pub fn from(&self) -> u8 {
        match *self {
            Self::Ack { from, .. }
            | Self::Completion { from, .. }
            | Self::Inquiry { from, .. }
            | Self::Error { from, .. } => from,
        }
    }
}

/// What a VISCA error code means.
pub fn error_reason(code: u8) -> &'static str {
    match code {
        0x01 => "message length error",
        0x02 => "syntax error",
        0x03 => "command buffer full",
        0x04 => "command cancelled",
        0x05 => "no socket",
        0x41 => "command not executable",
        _ => "unknown error",
    }
}

fn is_reply_header(b: u8) -> bool {
    (0x90..=0xF0).contains(&b) && b & 0x0F == 0
}

/// Pure VISCA reply parser with resynchronisation.
#[derive(Debug, Default)]
pub struct ReplyParser {
    /// The packet so far, header first; empty between packets.
    buf: Vec<u8>,
    /// Bytes skipped while looking for a header.
    skipped: usize,
}

impl ReplyParser {
    fn parse(packet: &[u8]) -> Result<Reply, String> {
        let from = (packet[0] >> 4) - 8;
        let Some(&kind) = packet.get(1) else {
            return Err("VISCA reply with no message byte".into());
        };
        let socket = kind & 0x0F;
        match (kind & 0xF0, packet.len()) {
            (0x40, 2) => Ok(Reply::Ack { from, socket }),
            (0x50, 2) => Ok(Reply::Completion { from, socket }),
            (0x50, _) if socket == 0 => Ok(Reply::Inquiry {
                from,
                data: packet[2..].to_vec(),
            }),
            (0x60, 3) => Ok(Reply::Error {
                from,
                socket,
                code: packet[2],
            }),
            _ => Err(format!(
                "VISCA reply type 0x{kind:02x} with {} bytes is not ACK, completion, inquiry or error",
                packet.len() + 1
            )),
        }
    }

    fn skipped_report(&mut self) -> Option<Garbage> {
        let skipped = std::mem::take(&mut self.skipped);
        (skipped > 0).then(|| Garbage {
            skipped,
            reason: format!("{skipped} bytes outside any VISCA packet (no 0x90-0xF0 header)"),
        })
    }
}

impl Deframer for ReplyParser {
    type Frame = Reply;

    fn push(&mut self, b: u8) -> Option<Result<Reply, Garbage>> {
        if self.buf.is_empty() {
            if is_reply_header(b) {
                self.buf.push(b);
                return self.skipped_report().map(Err);
            }
            self.skipped += 1;
            return None;
        }
        if b == TERMINATOR {
            let packet = std::mem::take(&mut self.buf);
            return Some(Self::parse(&packet).map_err(|reason| Garbage {
                skipped: packet.len() + 1,
                reason,
            }));
        }
        if b >= 0x80 {
            // A header (or other high byte) inside a packet: the packet so far was cut off.
            let cut = std::mem::take(&mut self.buf);
            let mut skipped = cut.len() + self.skipped;
            self.skipped = 0;
            if is_reply_header(b) {
                self.buf.push(b);
            } else {
                skipped += 1;
            }
            return Some(Err(Garbage {
                skipped,
                reason: format!("VISCA packet cut off by byte 0x{b:02x} before its terminator"),
            }));
        }
        self.buf.push(b);
        if self.buf.len() >= MAX_PACKET {
            let skipped = std::mem::take(&mut self.buf).len();
            return Some(Err(Garbage {
                skipped,
                reason: format!("VISCA packet longer than {MAX_PACKET} bytes"),
            }));
        }
        None
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.skipped = 0;
    }

    fn take_garbage(&mut self) -> Option<Garbage> {
        let held = std::mem::take(&mut self.buf).len();
        let skipped = std::mem::take(&mut self.skipped) + held;
        (skipped > 0).then(|| Garbage {
            skipped,
            reason: format!(
                "{skipped} bytes that are no complete VISCA reply (header 0x90-0xF0 ... 0xFF)"
            ),
        })
    }
}

/// Why a VISCA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ViscaError {
    #[error(transparent)]
    Serial(#[from] SerialError),
    #[error("VISCA camera {address}: {command} refused: {reason} (error 0x{code:02x})")]
    Refused {
        address: u8,
        command: &'static str,
        code: u8,
        reason: &'static str,
    },
    #[error("VISCA camera {address}: {command}: unexpected reply {reply:?}")]
    Unexpected {
        address: u8,
        command: &'static str,
        reply: Reply,
    },
    #[error("VISCA preset {0} is out of range 0-{MAX_PRESET}")]
    PresetOutOfRange(u8),
    #[error("VISCA address {0} is out of range 1-7")]
    BadAddress(u8),
}

/// A VISCA camera on a serial port.
pub struct ViscaCamera {
    link: SerialLink<ReplyParser>,
    address: u8,
    /// How long to wait for the ACK, and again for the completion.
    pub timeout: Duration,
}

impl ViscaCamera {
    /// A camera at `address` (1-7) on the port in `settings`; opened on first use.
    pub fn new(settings: PortSettings, address: u8) -> Result<Self, ViscaError> {
        if !(1..=7).contains(&address) {
            return Err(ViscaError::BadAddress(address));
        }
        Ok(Self {
            link: SerialLink::new(settings, ReplyParser::default()),
            address,
            timeout: Duration::from_secs(2),
        })
    }

    /// The serial link (for statistics and input draining).
    pub fn link(&mut self) -> &mut SerialLink<ReplyParser> {
        &mut self.link
    }

    /// Moves to `preset`; returns when the camera reports completion.
    pub fn recall_preset(&mut self, preset: u8) -> Result<(), ViscaError> {
        self.execute(Command::RecallPreset(preset)).map(drop)
    }

    /// Stores the current position as `preset`.
    pub fn set_preset(&mut self, preset: u8) -> Result<(), ViscaError> {
        self.execute(Command::SetPreset(preset)).map(drop)
    }

    /// Moves to the home position.
    pub fn home(&mut self) -> Result<(), ViscaError> {
        self.execute(Command::Home).map(drop)
    }

    /// Whether the camera reports power on.
    pub fn powered(&mut self) -> Result<bool, ViscaError> {
        let data = self.execute(Command::PowerInquiry)?;
        Ok(data.first() == Some(&0x02))
    }

    /// Sends `command` and waits for its answer; returns inquiry data (empty for
    /// commands). Replies from other addresses are skipped.
    pub fn execute(&mut self, command: Command) -> Result<Vec<u8>, ViscaError> {
        let packet = command.encode(self.address)?;
        // Design: stale replies of an earlier timed-out command must not answer this one.
        self.link.clear_input()?;
        self.link.send(&packet)?;
        let mut acked = command.is_inquiry();
        let mut deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self.link.recv(left)?;
            if reply.from() != self.address {
                continue;
            }
            match reply {
                Reply::Ack { .. } if !acked => {
                    acked = true;
                    deadline = Instant::now() + self.timeout;
                }
                Reply::Completion { .. } if acked && !command.is_inquiry() => {
                    return Ok(Vec::new());
                }
                Reply::Inquiry { data, .. } if command.is_inquiry() => return Ok(data),
                Reply::Error { code, .. } => {
                    return Err(ViscaError::Refused {
                        address: self.address,
                        command: command.name(),
                        code,
                        reason: error_reason(code),
                    });
                }
                reply => {
                    return Err(ViscaError::Unexpected {
                        address: self.address,
                        command: command.name(),
                        reply,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut ReplyParser, bytes: &[u8]) -> (Vec<Reply>, Vec<Garbage>) {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for &b in bytes {
            match p.push(b) {
                Some(Ok(r)) => ok.push(r),
                Some(Err(g)) => bad.push(g),
                None => {}
            }
        }
        (ok, bad)
    }

    #[test]
    fn preset_recall_encodes_as_the_sony_memory_recall_packet() {
        assert_eq!(
            Command::RecallPreset(5).encode(1).expect("valid"),
            [0x81, 0x01, 0x04, 0x3F, 0x02, 0x05, 0xFF]
        );
        assert_eq!(
            Command::SetPreset(127).encode(7).expect("valid"),
            [0x87, 0x01, 0x04, 0x3F, 0x01, 0x7F, 0xFF]
        );
    }

    #[test]
    fn presets_above_127_and_addresses_outside_1_to_7_are_refused() {
        assert!(matches!(
            Command::RecallPreset(128).encode(1),
            Err(ViscaError::PresetOutOfRange(128))
        ));
        assert!(matches!(
            Command::Home.encode(0),
            Err(ViscaError::BadAddress(0))
        ));
        assert!(matches!(
            Command::Home.encode(8),
            Err(ViscaError::BadAddress(8))
        ));
    }

    #[test]
    fn ack_completion_error_and_inquiry_replies_parse() {
        let mut p = ReplyParser::default();
        let (ok, bad) = feed(
            &mut p,
            &[
                0x90, 0x41, 0xFF, 0x90, 0x51, 0xFF, 0xA0, 0x60, 0x41, 0xFF, 0x90, 0x50, 0x02, 0xFF,
            ],
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            ok,
            [
                Reply::Ack { from: 1, socket: 1 },
                Reply::Completion { from: 1, socket: 1 },
                Reply::Error {
                    from: 2,
                    socket: 0,
                    code: 0x41
                },
                Reply::Inquiry {
                    from: 1,
                    data: vec![0x02]
                },
            ]
        );
    }

    #[test]
    fn garbage_before_a_reply_is_reported_and_the_reply_still_parses() {
        let mut p = ReplyParser::default();
        let (ok, bad) = feed(&mut p, &[0x12, 0x34, 0x00, 0x90, 0x41, 0xFF]);
        assert_eq!(ok, [Reply::Ack { from: 1, socket: 1 }]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].skipped, 3);
        assert!(
            bad[0].reason.contains("no 0x90-0xF0 header"),
            "{:?}",
            bad[0]
        );
    }

    #[test]
    fn a_reply_cut_off_by_a_new_header_is_dropped_and_the_new_one_parses() {
        let mut p = ReplyParser::default();
        let (ok, bad) = feed(&mut p, &[0x90, 0x41, 0x90, 0x51, 0xFF]);
        assert_eq!(ok, [Reply::Completion { from: 1, socket: 1 }]);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].reason.contains("cut off"), "{:?}", bad[0]);
    }

    #[test]
    fn an_overlong_packet_is_garbage_and_parsing_resumes_after_it() {
        let mut p = ReplyParser::default();
        let mut bytes = vec![0x90];
        bytes.extend([0x01; 20]);
        bytes.extend([0xFF, 0x90, 0x41, 0xFF]);
        let (ok, bad) = feed(&mut p, &bytes);
        assert_eq!(ok, [Reply::Ack { from: 1, socket: 1 }]);
        assert!(
            bad.iter().any(|g| g.reason.contains("longer than 16")),
            "{bad:?}"
        );
    }

    #[test]
    fn a_megabyte_of_random_bytes_never_panics_and_the_next_reply_parses() {
        let mut p = ReplyParser::default();
        let mut x: u32 = 0x1234_5678;
        let mut bytes: Vec<u8> = (0..1 << 20)
            .map(|_| {
                // xorshift32: deterministic noise without a dependency.
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        bytes.extend([0xFF, 0x90, 0x51, 0xFF]);
        let (ok, bad) = feed(&mut p, &bytes);
        assert!(!bad.is_empty());
        assert_eq!(ok.last(), Some(&Reply::Completion { from: 1, socket: 1 }));
    }

    #[test]
    fn error_codes_have_names() {
        assert_eq!(error_reason(0x41), "command not executable");
        assert_eq!(error_reason(0x03), "command buffer full");
        assert_eq!(error_reason(0x77), "unknown error");
    }
}
