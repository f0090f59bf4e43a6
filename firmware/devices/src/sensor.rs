//! Machine-room temperature and humidity from a Sensirion SHT3x (SHT30/31/35) on I2C.
//!
//! Uses the `sht31` driver crate (embedded-hal 1.0) in single-shot mode. On devices the
//! bus is `linux_embedded_hal::I2cdev`; tests use embedded-hal-mock.
//!
//! Design: `sht31` 0.3.3 converts the raw temperature word as a signed `i16`, so raw
//! values of 0x8000 and above (real temperatures above 42.5 °C: exactly the overheating
//! a machine-room sensor exists to report) come out 175 °C too low, below the sensor's
//! -45 °C floor. [`Sht3x::read`] undoes that wrap, which is unambiguous because the
//! sensor cannot report below -45 °C.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use gavel_protocol::Temperature;
use sht31::prelude::*;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Degrees Celsius.
    pub celsius: f64,
    /// Relative humidity, 0-100 %.
    pub humidity_percent: f64,
}

impl Reading {
    /// The temperature as health telemetry, labelled `name`.
    pub fn temperature(&self, name: &str) -> Temperature {
        Temperature {
            sensor: name.chars().take(64).collect(),
            celsius: self.celsius,
        }
    }
}

/// Why the sensor could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("I2C bus {bus}: cannot open: {reason}")]
    Open { bus: String, reason: String },
    #[error("SHT3x at {bus} 0x{address:02x}: {source}")]
    Read {
        bus: String,
        address: u8,
        source: sht31::SHTError,
    },
    #[error("SHT3x address 0x{0:02x} is not 0x44 or 0x45")]
    BadAddress(u8),
}

/// Span of the SHT3x temperature conversion, °C per full scale.
const SPAN_C: f64 = 175.0;
/// Lowest temperature the sensor reports.
const FLOOR_C: f64 = -45.0;

/// An SHT3x sensor on an I2C bus.
pub struct Sht3x<I2C, D: DelayNs> {
    inner: SHT31<SimpleSingleShot<D>, I2C>,
    bus: String,
    address: u8,
}

impl<I2C: I2c, D: DelayNs> Sht3x<I2C, D> {
    /// A sensor at `address` (0x44 or 0x45) on `i2c`; `bus` names the bus in errors.
    pub fn new(
        i2c: I2C,
        delay: D,
        address: u8,
        bus: impl Into<String>,
    ) -> Result<Self, SensorError> {
        let addr = match address {
            0x44 => DeviceAddr::AD0,
            0x45 => DeviceAddr::AD1,
            other => return Err(SensorError::BadAddress(other)),
        };
        // The SHT3x needs ~15 ms for a high-repeatability measurement; poll every 20 ms.
        let mode = SimpleSingleShot::new(delay)
            .with_delay(20)
            .with_max_retries(5);
        let inner = SHT31::simple_single_shot(i2c, mode)
            .with_address(addr)
            .with_unit(TemperatureUnit::Celsius)
            .with_accuracy(Accuracy::High);
        Ok(Self {
            inner,
            bus: bus.into(),
            address,
        })
    }

    /// Measures once.
    pub fn read(&mut self) -> Result<Reading, SensorError> {
        let r = self.inner.read().map_err(|source| SensorError::Read {
            bus: self.bus.clone(),
            address: self.address,
            source,
        })?;
        let mut celsius = f64::from(r.temperature);
        if celsius < FLOOR_C - 0.5 {
            celsius += SPAN_C * 65536.0 / 65535.0;
        }
        Ok(Reading {
            celsius: (celsius * 100.0).round() / 100.0,
            humidity_percent: (f64::from(r.humidity).clamp(0.0, 100.0) * 100.0).round() / 100.0,
        })
    }

    /// Gives the bus back.
    pub fn into_inner(self) -> I2C {
        self.inner.destroy()
    }
}

/// Opens an SHT3x on a Linux I2C bus (`/dev/i2c-1`).
pub fn open_linux(
    bus: &str,
    address: u8,
) -> Result<Sht3x<linux_embedded_hal::I2cdev, linux_embedded_hal::Delay>, SensorError> {
    let i2c = linux_embedded_hal::I2cdev::new(bus).map_err(|e| SensorError::Open {
        bus: bus.to_owned(),
        reason: e.to_string(),
    })?;
    Sht3x::new(i2c, linux_embedded_hal::Delay, address, bus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    /// Sensirion CRC-8 (poly 0x31, init 0xFF).
    fn crc(data: [u8; 2]) -> u8 {
        let mut c: u8 = 0xFF;
        for b in data {
            c ^= b;
            for _ in 0..8 {
                c = if c & 0x80 != 0 {
                    (c << 1) ^ 0x31
                } else {
                    c << 1
                };
            }
        }
        c
    }

    /// The six bytes an SHT3x answers for raw words `t` and `h`.
    fn answer(t: u16, h: u16) -> Vec<u8> {
        let (t, h) = (t.to_be_bytes(), h.to_be_bytes());
        vec![t[0], t[1], crc(t), h[0], h[1], crc(h)]
    }

    fn raw_for(celsius: f64) -> u16 {
        ((celsius + 45.0) / 175.0 * 65535.0).round() as u16
    }

    fn sensor_answering(bytes: Vec<u8>) -> Sht3x<Mock, NoopDelay> {
        let i2c = Mock::new(&[
            Transaction::write(0x44, vec![0x2C, 0x06]),
            Transaction::read(0x44, bytes),
        ]);
        Sht3x::new(i2c, NoopDelay::new(), 0x44, "/dev/i2c-test").expect("address")
    }

    #[test]
    fn a_reading_converts_raw_words_to_celsius_and_percent() {
        let mut s = sensor_answering(answer(raw_for(24.5), 0x8000));
        let r = s.read().expect("reading");
        assert!((r.celsius - 24.5).abs() < 0.01, "{r:?}");
        assert!((r.humidity_percent - 50.0).abs() < 0.01, "{r:?}");
        assert_eq!(r.temperature("machine-room").sensor, "machine-room");
        s.into_inner().done();
    }

    #[test]
    fn an_overheated_room_above_42_5_degrees_reads_correctly() {
        let mut s = sensor_answering(answer(raw_for(55.0), 0x4000));
        let r = s.read().expect("reading");
        assert!((r.celsius - 55.0).abs() < 0.01, "{r:?}");
        s.into_inner().done();
    }

    #[test]
    fn a_corrupted_answer_fails_its_checksum_and_names_the_bus() {
        let mut bytes = answer(raw_for(20.0), 0x8000);
        bytes[2] ^= 0xFF;
        // The driver retries the read; every retry sees the same corruption.
        let mut tx = vec![Transaction::write(0x44, vec![0x2C, 0x06])];
        tx.extend((0..5).map(|_| Transaction::read(0x44, bytes.clone())));
        let i2c = Mock::new(&tx);
        let mut s = Sht3x::new(i2c, NoopDelay::new(), 0x44, "/dev/i2c-test").expect("address");
        let err = s.read().expect_err("bad crc").to_string();
        assert!(
            err.contains("/dev/i2c-test") && err.contains("0x44"),
            "{err}"
        );
        assert!(err.contains("checksum"), "{err}");
        s.into_inner().done();
    }

    #[test]
    fn only_the_two_sht3x_addresses_are_accepted() {
        let i2c = Mock::new(&[]);
        assert!(matches!(
            Sht3x::new(i2c.clone(), NoopDelay::new(), 0x40, "bus"),
            Err(SensorError::BadAddress(0x40))
        ));
        let mut i2c = i2c;
        i2c.done();
    }

    #[test]
    fn a_missing_bus_names_the_device_path() {
        let err = open_linux("/dev/gavel-no-such-i2c", 0x44)
            .err()
            .expect("no bus")
            .to_string();
        assert!(err.contains("/dev/gavel-no-such-i2c"), "{err}");
    }
}
