//! # gavel-health
//!
//! Samples the device's health for the `health` channel: CPU, memory, load, free space
//! per configured volume, temperatures where sensors exist, uptimes and the kernel's
//! clock-discipline state. Sampling reads `/proc`, `/sys` and two syscalls; it is cheap
//! but blocking, so async callers run it on `spawn_blocking`.

use std::ffi::CString;
use std::path::Path;
use std::time::Instant;

use gavel_protocol::{Clock, Health, Memory, PROTOCOL_VERSION, Temperature, Volume};
use sysinfo::{Components, System};
use time::OffsetDateTime;

/// Keeps the state that successive samples need (CPU counters, sensor list).
pub struct Sampler {
    system: System,
    components: Components,
    started: Instant,
    volumes: Vec<String>,
}

impl Sampler {
    /// A sampler reporting free space for each path in `volumes`.
    pub fn new(volumes: Vec<String>) -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        Self {
            system,
            components: Components::new_with_refreshed_list(),
            started: Instant::now(),
            volumes,
        }
    }

    /// Takes one sample. CPU use is measured since the previous sample.
    pub fn sample(&mut self, now: OffsetDateTime) -> Health {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.components.refresh(false);
        let cpu = f64::from(self.system.global_cpu_usage());
        Health {
            v: PROTOCOL_VERSION,
            ts: now,
            uptime_s: System::uptime(),
            agent_uptime_s: self.started.elapsed().as_secs(),
            cpu_percent: if cpu.is_finite() {
                cpu.clamp(0.0, 100.0)
            } else {
                0.0
            },
            load1: System::load_average().one,
            memory: Memory {
                total_bytes: self.system.total_memory(),
                used_bytes: self.system.used_memory(),
            },
            volumes: self
                .volumes
                .iter()
                .filter_map(|m| volume(Path::new(m)))
                .collect(),
            temperatures: self
                .components
                .iter()
                .filter_map(|c| {
                    let t = f64::from(c.temperature()?);
                    t.is_finite().then(|| Temperature {
                        sensor: c.label().chars().take(64).collect(),
                        celsius: t,
                    })
                })
                .take(gavel_protocol::MAX_ITEMS)
                .collect(),
            humidity: Vec::new(),
            clock: clock(),
            outbox: None,
        }
    }
}

/// Free and total space of the file system holding `path`; `None` when it does not exist.
pub fn volume(path: &Path) -> Option<Volume> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly sized out-parameter
    // that statvfs fully initialises when it returns 0.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    let frsize = st.f_frsize as u64;
    let total = (st.f_blocks as u64).saturating_mul(frsize);
    let free = (st.f_bavail as u64).saturating_mul(frsize).min(total);
    Some(Volume {
        mount: path.display().to_string(),
        total_bytes: total,
        free_bytes: free,
    })
}

/// The kernel's NTP state: whether the clock is disciplined, its offset and error bound.
pub fn clock() -> Clock {
    // SAFETY: `tx` is zero-initialised with `modes = 0`, which makes ntp_adjtime a pure
    // read of the kernel state into `tx`.
    let (state, tx) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        let state = libc::ntp_adjtime(&mut tx);
        (state, tx)
    };
    let synced = state != libc::TIME_ERROR && state >= 0 && tx.status & libc::STA_UNSYNC == 0;
    let per_ms = if tx.status & libc::STA_NANO != 0 {
        1e6
    } else {
        1e3
    };
    Clock {
        synced,
        offset_ms: synced.then_some(tx.offset as f64 / per_ms),
        // maxerror is always in microseconds.
        max_error_ms: (state >= 0).then_some(tx.maxerror as f64 / 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_passes_protocol_validation() {
        let mut s = Sampler::new(vec!["/".into(), "/no/such/volume".into()]);
        let h = s.sample(OffsetDateTime::now_utc());
        assert_eq!(h.volumes.len(), 1, "missing volume is skipped");
        assert!(h.volumes[0].total_bytes > 0);
        assert!(h.memory.total_bytes >= h.memory.used_bytes);
        let bytes = gavel_protocol::encode(&h);
        let back: Health = gavel_protocol::decode(&bytes).expect("valid health");
        assert_eq!(back.volumes, h.volumes);
    }

    #[test]
    fn root_volume_reports_free_space_below_total() {
        let v = volume(Path::new("/")).expect("root exists");
        assert!(v.free_bytes <= v.total_bytes);
    }
}
