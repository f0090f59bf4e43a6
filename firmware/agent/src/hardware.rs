//! Courtroom hardware the agent wires up itself: machine-room sensors read into health
//! telemetry, and the "recording in progress" lamp claimed at start and reported as a
//! capability. Drivers live in `gavel-devices`; this module only connects them.
//!
//! Everything here blocks (I2C, GPIO, serial): callers run it on `spawn_blocking`.

use std::time::Duration;

use gavel_devices::lamp::{self, Lamp, SerialSign};
use gavel_devices::sensor::{self, Sht3x};
use gavel_devices::serial::PortSettings;
use gavel_profile::{LampSettings, SensorSettings};
use gavel_protocol::{Capability, CapabilityState, Health, Humidity};
use tracing::{info, warn};

type LinuxSht3x = Sht3x<linux_embedded_hal::I2cdev, linux_embedded_hal::Delay>;

/// One configured sensor, opened on first use and reopened after a failure.
struct Slot {
    settings: SensorSettings,
    sensor: Option<LinuxSht3x>,
    /// The last attempt failed (so the next failure is not logged again).
    failing: bool,
}

/// The profile's environment sensors.
pub struct Environment {
    slots: Vec<Slot>,
}

impl Environment {
    /// Sensors from the profile's `[[health.sensors]]`.
    pub fn new(settings: &[SensorSettings]) -> Self {
        Self {
            slots: settings
                .iter()
                .map(|s| Slot {
                    settings: s.clone(),
                    sensor: None,
                    failing: false,
                })
                .collect(),
        }
    }

    /// Whether any sensor is configured.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Reads every sensor and adds its readings to `health`. A sensor that fails is
    /// left out of this sample (warned once until it works again) and reopened next time.
    pub fn read_into(&mut self, health: &mut Health) {
        for slot in &mut self.slots {
            let s = &slot.settings;
            let result = match slot.sensor.as_mut() {
                Some(dev) => dev.read(),
                None => sensor::open_linux(&s.bus, s.address).and_then(|mut dev| {
                    let r = dev.read();
                    slot.sensor = Some(dev);
                    r
                }),
            };
            match result {
                Ok(r) => {
                    if slot.failing {
                        info!(sensor = %s.name, "sensor readable again");
                    }
                    slot.failing = false;
                    health.temperatures.push(r.temperature(&s.name));
                    health.humidity.push(Humidity {
                        sensor: s.name.clone(),
                        percent: r.humidity_percent,
                    });
                }
                Err(e) => {
                    if !slot.failing {
                        warn!(sensor = %s.name, error = %e, "sensor not readable");
                    }
                    slot.failing = true;
                    slot.sensor = None;
                }
            }
        }
        health.temperatures.truncate(gavel_protocol::MAX_ITEMS);
        health.humidity.truncate(gavel_protocol::MAX_ITEMS);
    }
}

/// Opens the lamp the profile names and switches it off. Returns the lamp (keep it:
/// it holds the GPIO line) and the capability to report.
pub fn open_lamp(settings: &LampSettings) -> (Option<Box<dyn Lamp + Send>>, Capability) {
    let opened: Result<Box<dyn Lamp + Send>, lamp::LampError> = match settings.driver.as_str() {
        "gpio" => lamp::open_gpio(
            &settings.gpio_chip,
            settings.line.unwrap_or_default(),
            settings.active_low,
        )
        .map(|l| Box::new(l) as Box<dyn Lamp + Send>),
        _ => {
            let port = settings.port.clone().unwrap_or_default();
            let mut sign = SerialSign::new(PortSettings::new(port, settings.baud));
            sign.timeout = Duration::from_millis(500);
            Ok(Box::new(sign))
        }
    };
    let checked = opened.and_then(|mut l| l.set(false).map(|()| l));
    match checked {
        Ok(l) => {
            let detail = l.describe();
            info!(lamp = %detail, "recording lamp ready");
            (
                Some(l),
                Capability {
                    name: "lamp".into(),
                    state: CapabilityState::Running,
                    detail: Some(detail),
                },
            )
        }
        Err(e) => {
            warn!(error = %e, "recording lamp unavailable");
            (
                None,
                Capability {
                    name: "lamp".into(),
                    state: CapabilityState::Failed,
                    detail: Some(e.to_string().chars().take(200).collect()),
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_gpio_chip_reports_the_lamp_failed_with_the_reason() {
        let settings = LampSettings {
            driver: "gpio".into(),
            gpio_chip: "/dev/gavel-no-such-gpiochip".into(),
            line: Some(17),
            active_low: false,
            port: None,
            baud: 9600,
        };
        let (lamp, cap) = open_lamp(&settings);
        assert!(lamp.is_none());
        assert_eq!(cap.state, CapabilityState::Failed);
        let detail = cap.detail.unwrap_or_default();
        assert!(
            detail.contains("/dev/gavel-no-such-gpiochip line 17"),
            "{detail}"
        );
    }

    #[test]
    fn an_unreadable_sensor_is_left_out_of_the_sample() {
        let mut env = Environment::new(&[SensorSettings {
            name: "machine-room".into(),
            kind: "sht3x".into(),
            bus: "/dev/gavel-no-such-i2c".into(),
            address: 0x44,
        }]);
        let mut h =
            gavel_health::Sampler::new(vec!["/".into()]).sample(time::OffsetDateTime::now_utc());
        let before = h.temperatures.len();
        env.read_into(&mut h);
        assert_eq!(h.temperatures.len(), before);
        assert!(h.humidity.is_empty());
    }
}
