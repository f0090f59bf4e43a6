//! The "recording in progress" lamp (庭审录像中): a GPIO line driving a relay, or an
//! RS-232 sign controller.
//!
//! Both implement [`Lamp`]. [`GpioLamp`] works on any embedded-hal 1.0 `OutputPin`
//! (`linux_embedded_hal::CdevPin` on devices, a mock in tests). [`SerialSign`] speaks
//! the sign controller's line protocol:
//!
//! ```text
//! request  ">" COMMAND "*" HH "\r"     COMMAND = ON | OFF | STATUS
//! reply    "<" ANSWER  "*" HH "\r"     ANSWER  = ON | OFF | ERR <reason>
//! ```
//!
//! `HH` is the XOR of the bytes between the start character and `*`, as two upper-case
//! hex digits (the NMEA-style checksum common on RS-232 sign and relay controllers).
//! [`SignParser`] resynchronises on `<` and `\r` and refuses bad checksums.

use std::time::Duration;

use embedded_hal::digital::OutputPin;

use crate::serial::{Deframer, Garbage, PortSettings, SerialError, SerialLink};

/// Longest sign reply accepted, start to `\r`.
pub const MAX_SIGN_REPLY: usize = 64;

/// Why the lamp could not be switched.
#[derive(Debug, thiserror::Error)]
pub enum LampError {
    #[error("lamp GPIO: {0}")]
    Gpio(String),
    #[error(transparent)]
    Serial(#[from] SerialError),
    #[error("sign controller {port} refused {command}: {reason}")]
    Refused {
        port: String,
        command: &'static str,
        reason: String,
    },
    #[error("sign controller {port} answered {answer:?} to {command}")]
    Unexpected {
        port: String,
        command: &'static str,
        answer: String,
    },
}

/// A lamp that can be switched on and off.
pub trait Lamp {
    /// Switches the lamp; returns once the hardware confirms (where it can).
    fn set(&mut self, on: bool) -> Result<(), LampError>;
    /// What drives the lamp, for logs and capability details.
    fn describe(&self) -> String;
}

/// A lamp on a GPIO line (through a relay or transistor).
pub struct GpioLamp<P> {
    pin: P,
    /// The line is active low (the relay closes when the line is low).
    active_low: bool,
    name: String,
}

impl<P: OutputPin> GpioLamp<P> {
    /// A lamp on `pin`; `name` describes the line (e.g. `gpiochip0 line 17`).
    pub fn new(pin: P, active_low: bool, name: impl Into<String>) -> Self {
        Self {
            pin,
            active_low,
            name: name.into(),
        }
    }

    /// Gives the pin back.
    pub fn into_pin(self) -> P {
        self.pin
    }
}

impl<P: OutputPin> Lamp for GpioLamp<P> {
    fn set(&mut self, on: bool) -> Result<(), LampError> {
        let high = on != self.active_low;
        let result = if high {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
        result.map_err(|e| LampError::Gpio(format!("{}: {e:?}", self.name)))
    }

    fn describe(&self) -> String {
        format!("gpio {}", self.name)
    }
}

/// Opens GPIO `line` of the character device `chip` (e.g. `/dev/gpiochip0`) as an
/// output, initially off.
pub fn open_gpio(
    chip: &str,
    line: u32,
    active_low: bool,
) -> Result<GpioLamp<linux_embedded_hal::CdevPin>, LampError> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let fail = |e: &dyn std::fmt::Display| LampError::Gpio(format!("{chip} line {line}: {e}"));
    let mut c = Chip::new(chip).map_err(|e| fail(&e))?;
    let off = u8::from(active_low);
    let handle = c
        .get_line(line)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, off, "gavel-lamp"))
        .map_err(|e| fail(&e))?;
    let pin = linux_embedded_hal::CdevPin::new(handle).map_err(|e| fail(&e))?;
    Ok(GpioLamp::new(
        pin,
        active_low,
        format!("{chip} line {line}"),
    ))
}

/// XOR checksum of a sign frame body.
pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0, |a, b| a ^ b)
}

/// The request frame for `command` (`ON`, `OFF`, `STATUS`).
pub fn encode_request(command: &str) -> Vec<u8> {
    format!(">{command}*{:02X}\r", checksum(command.as_bytes())).into_bytes()
}

/// Pure parser of sign replies (`<ANSWER*HH\r`).
#[derive(Debug, Default)]
pub struct SignParser {
    /// Reply body so far (after `<`); `None` between frames.
    buf: Option<Vec<u8>>,
    /// Bytes skipped while looking for `<`.
    skipped: usize,
}

impl SignParser {
    fn finish(body: &[u8]) -> Result<String, String> {
        let Some(star) = body.iter().rposition(|&b| b == b'*') else {
            return Err("sign reply without `*` checksum".into());
        };
        let (answer, hex) = (&body[..star], &body[star + 1..]);
        let want = std::str::from_utf8(hex)
            .ok()
            .filter(|h| h.len() == 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                format!(
                    "sign reply checksum {:?} is not two hex digits",
                    String::from_utf8_lossy(hex)
                )
            })?;
        let got = checksum(answer);
        if got != want {
            return Err(format!(
                "sign reply checksum {want:02X} does not match its body ({got:02X})"
            ));
        }
        String::from_utf8(answer.to_vec()).map_err(|_| "sign reply is not text".into())
    }
}

impl Deframer for SignParser {
    type Frame = String;

    fn push(&mut self, b: u8) -> Option<Result<String, Garbage>> {
        let Some(buf) = self.buf.as_mut() else {
            if b == b'<' {
                self.buf = Some(Vec::new());
                let skipped = std::mem::take(&mut self.skipped);
                return (skipped > 0).then(|| {
                    Err(Garbage {
                        skipped,
                        reason: format!("{skipped} bytes outside any sign reply (no `<`)"),
                    })
                });
            }
            self.skipped += 1;
            return None;
        };
        match b {
            b'\r' => {
                let body = std::mem::take(buf);
                self.buf = None;
                Some(Self::finish(&body).map_err(|reason| Garbage {
                    skipped: body.len() + 2,
                    reason,
                }))
            }
            b'<' => {
                let skipped = buf.len() + 1;
                buf.clear();
                Some(Err(Garbage {
                    skipped,
                    reason: "sign reply cut off by a new `<`".into(),
                }))
            }
            b if !(0x20..0x7F).contains(&b) => {
                let skipped = buf.len() + 2;
                self.buf = None;
                Some(Err(Garbage {
                    skipped,
                    reason: format!("byte 0x{b:02x} inside a sign reply"),
                }))
            }
            b => {
                buf.push(b);
                if buf.len() >= MAX_SIGN_REPLY {
                    let skipped = buf.len() + 1;
                    self.buf = None;
                    return Some(Err(Garbage {
                        skipped,
                        reason: format!("sign reply longer than {MAX_SIGN_REPLY} bytes"),
                    }));
                }
                None
            }
        }
    }

    fn reset(&mut self) {
        self.buf = None;
        self.skipped = 0;
    }

    fn take_garbage(&mut self) -> Option<Garbage> {
        let held = self.buf.as_ref().map_or(0, |b| b.len() + 1);
        let skipped = std::mem::take(&mut self.skipped) + held;
        self.buf = None;
        (skipped > 0).then(|| Garbage {
            skipped,
            reason: format!("{skipped} bytes that are no complete sign reply (`<...*HH\\r`)"),
        })
    }
}

/// A "recording in progress" sign on a serial port.
pub struct SerialSign {
    link: SerialLink<SignParser>,
    /// How long to wait for each reply.
    pub timeout: Duration,
}

impl SerialSign {
    /// A sign on the port in `settings`; opened on first use.
    pub fn new(settings: PortSettings) -> Self {
        Self {
            link: SerialLink::new(settings, SignParser::default()),
            timeout: Duration::from_secs(1),
        }
    }

    /// The serial link (for statistics and input draining).
    pub fn link(&mut self) -> &mut SerialLink<SignParser> {
        &mut self.link
    }

    fn exchange(&mut self, command: &'static str) -> Result<String, LampError> {
        self.link.clear_input()?;
        self.link.send(&encode_request(command))?;
        let answer = self.link.recv(self.timeout)?;
        if let Some(reason) = answer.strip_prefix("ERR") {
            return Err(LampError::Refused {
                port: self.link.path().display().to_string(),
                command,
                reason: reason.trim().to_owned(),
            });
        }
        Ok(answer)
    }

    /// Asks whether the sign is lit.
    pub fn lit(&mut self) -> Result<bool, LampError> {
        match self.exchange("STATUS")?.as_str() {
            "ON" => Ok(true),
            "OFF" => Ok(false),
            other => Err(LampError::Unexpected {
                port: self.link.path().display().to_string(),
                command: "STATUS",
                answer: other.to_owned(),
            }),
        }
    }
}

impl Lamp for SerialSign {
    fn set(&mut self, on: bool) -> Result<(), LampError> {
        let command = if on { "ON" } else { "OFF" };
        let answer = self.exchange(command)?;
        if answer != command {
            return Err(LampError::Unexpected {
                port: self.link.path().display().to_string(),
                command,
                answer,
            });
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("serial sign {}", self.link.path().display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    fn feed(p: &mut SignParser, bytes: &[u8]) -> (Vec<String>, Vec<Garbage>) {
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
    fn a_gpio_lamp_drives_the_line_high_for_on_and_low_for_off() {
        let pin = Mock::new(&[Transaction::set(State::High), Transaction::set(State::Low)]);
        let mut lamp = GpioLamp::new(pin, false, "test line");
        lamp.set(true).expect("on");
        lamp.set(false).expect("off");
        lamp.into_pin().done();
    }

    #[test]
    fn an_active_low_gpio_lamp_inverts_the_line() {
        let pin = Mock::new(&[Transaction::set(State::Low), Transaction::set(State::High)]);
        let mut lamp = GpioLamp::new(pin, true, "test line");
        lamp.set(true).expect("on");
        lamp.set(false).expect("off");
        lamp.into_pin().done();
    }

    #[test]
    fn a_missing_gpio_chip_names_chip_and_line() {
        let err = open_gpio("/dev/gavel-no-such-gpiochip", 17, false)
            .err()
            .expect("no chip")
            .to_string();
        assert!(err.contains("/dev/gavel-no-such-gpiochip line 17"), "{err}");
    }

    #[test]
    fn requests_carry_an_xor_checksum() {
        // 'O' ^ 'N' = 0x4F ^ 0x4E = 0x01
        assert_eq!(encode_request("ON"), b">ON*01\r");
    }

    #[test]
    fn a_reply_with_a_good_checksum_parses_after_garbage() {
        let mut p = SignParser::default();
        let (ok, bad) = feed(&mut p, b"xx\x00<ON*01\r");
        assert_eq!(ok, ["ON"]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].skipped, 3);
    }

    #[test]
    fn a_reply_with_a_bad_checksum_is_garbage_naming_both_checksums() {
        let mut p = SignParser::default();
        let (ok, bad) = feed(&mut p, b"<ON*7F\r");
        assert!(ok.is_empty());
        assert!(
            bad[0].reason.contains("7F") && bad[0].reason.contains("01"),
            "{:?}",
            bad[0]
        );
    }

    #[test]
    fn binary_bytes_inside_a_reply_drop_it_and_the_next_reply_parses() {
        let mut p = SignParser::default();
        let (ok, bad) = feed(&mut p, b"<O\xffN*01\r<OFF*4F\r");
        // 'O'^'F'^'F' = 0x4F
        assert_eq!(ok, ["OFF"]);
        assert!(bad.iter().any(|g| g.reason.contains("0xff")), "{bad:?}");
    }
}
