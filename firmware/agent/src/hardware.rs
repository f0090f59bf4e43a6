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
    /// Simulated readings instead of I2C (demo and test rigs without the hardware).
    simulated: bool,
    samples: u64,
}

impl Environment {
    /// Sensors from the profile's `[[health.sensors]]`; `simulated` replaces the I2C
    /// devices with plausible machine-room readings.
    pub fn new(settings: &[SensorSettings], simulated: bool) -> Self {
        Self {
            simulated,
            samples: 0,
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
        if self.simulated {
            self.samples += 1;
            // A slow drift around 22.5 °C and 45 % RH, different per sensor.
            let phase = self.samples as f64 / 30.0;
            for (i, slot) in self.slots.iter().enumerate() {
                let t = 22.5 + 1.5 * (phase + i as f64).sin();
                health.temperatures.push(gavel_protocol::Temperature {
                    sensor: slot.settings.name.clone(),
                    celsius: (t * 10.0).round() / 10.0,
                });
                health.humidity.push(Humidity {
                    sensor: slot.settings.name.clone(),
                    percent: ((45.0 + 4.0 * (phase / 2.0 + i as f64).cos()) * 10.0).round() / 10.0,
                });
            }
            return;
        }
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

/// A lamp that only logs, for simulated devices.
struct SimulatedLamp {
    driver: String,
}

impl Lamp for SimulatedLamp {
    fn set(&mut self, on: bool) -> Result<(), lamp::LampError> {
        info!(on, "simulated recording lamp switched");
        Ok(())
    }

    fn describe(&self) -> String {
        format!("simulated {} lamp (no hardware)", self.driver)
    }
}

/// Opens the lamp the profile names and switches it off. Returns the lamp (keep it:
/// it holds the GPIO line) and the capability to report. `simulated` uses a lamp that
/// only logs.
pub fn open_lamp(
    settings: &LampSettings,
    simulated: bool,
) -> (Option<Box<dyn Lamp + Send>>, Capability) {
    let opened: Result<Box<dyn Lamp + Send>, lamp::LampError> = match settings.driver.as_str() {
        _ if simulated => Ok(Box::new(SimulatedLamp {
            driver: settings.driver.clone(),
        })),
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
        let (lamp, cap) = open_lamp(&settings, false);
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
        let mut env = Environment::new(
            &[SensorSettings {
                name: "machine-room".into(),
                kind: "sht3x".into(),
                bus: "/dev/gavel-no-such-i2c".into(),
                address: 0x44,
            }],
            false,
        );
        let mut h =
            gavel_health::Sampler::new(vec!["/".into()]).sample(time::OffsetDateTime::now_utc());
        let before = h.temperatures.len();
        env.read_into(&mut h);
        assert_eq!(h.temperatures.len(), before);
        assert!(h.humidity.is_empty());
    }

    #[test]
    fn simulated_hardware_reports_a_running_lamp_and_plausible_readings() {
        let settings = LampSettings {
            driver: "gpio".into(),
            gpio_chip: "/dev/gavel-no-such-gpiochip".into(),
            line: Some(17),
            active_low: false,
            port: None,
            baud: 9600,
        };
        let (lamp, cap) = open_lamp(&settings, true);
        assert!(lamp.is_some());
        assert_eq!(cap.state, CapabilityState::Running);
        assert!(cap.detail.unwrap_or_default().contains("simulated"));
        let mut env = Environment::new(
            &[SensorSettings {
                name: "machine-room".into(),
                kind: "sht3x".into(),
                bus: "/dev/gavel-no-such-i2c".into(),
                address: 0x44,
            }],
            true,
        );
        let mut h =
            gavel_health::Sampler::new(vec!["/".into()]).sample(time::OffsetDateTime::now_utc());
        env.read_into(&mut h);
        let t = h.temperatures.last().map(|t| t.celsius).unwrap_or_default();
        assert!((20.0..25.0).contains(&t), "{t}");
        assert_eq!(h.humidity.len(), 1);
    }
}
