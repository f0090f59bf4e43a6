//! The post-boot health gate: after booting an unconfirmed slot, commit only when the
//! agent is healthy (broker connected, every required capability running) before a
//! deadline; otherwise roll back and say why. Sans-I/O: the caller passes the time.

use std::time::Duration;

/// One look at the agent's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSample {
    /// The MQTT session is up.
    pub broker_connected: bool,
    /// Each required capability and whether it runs.
    pub capabilities: Vec<(String, bool)>,
}

impl HealthSample {
    fn problem(&self) -> Option<String> {
        if !self.broker_connected {
            return Some("broker not connected".into());
        }
        let down: Vec<&str> = self
            .capabilities
            .iter()
            .filter(|(_, running)| !running)
            .map(|(n, _)| n.as_str())
            .collect();
        (!down.is_empty()).then(|| format!("capabilities not running: {}", down.join(", ")))
    }
}

/// What to do with the booted, unconfirmed slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not healthy yet; ask again.
    Wait,
    /// Healthy: mark the slot good.
    Commit,
    /// Deadline passed: mark the slot bad and reboot into the other.
    Rollback {
        /// Why, for the report.
        reason: String,
    },
}

/// The gate for one boot.
#[derive(Debug, Clone)]
pub struct HealthGate {
    deadline: Duration,
    last_problem: Option<String>,
}

impl HealthGate {
    /// A gate that must see health by `deadline` (time since boot).
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            last_problem: None,
        }
    }

    /// Feeds a sample taken at `now` (time since boot).
    pub fn on_sample(&mut self, now: Duration, sample: &HealthSample) -> Verdict {
        match sample.problem() {
            None if now <= self.deadline => Verdict::Commit,
            None => self.on_tick(now),
            Some(p) => {
                self.last_problem = Some(p);
                self.on_tick(now)
            }
        }
    }

    /// Checks the deadline at `now`.
    pub fn on_tick(&mut self, now: Duration) -> Verdict {
        if now <= self.deadline {
            return Verdict::Wait;
        }
        let why = self
            .last_problem
            .clone()
            .unwrap_or_else(|| "no health report".into());
        Verdict::Rollback {
            reason: format!(
                "not healthy within {} s of boot: {why}",
                self.deadline.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(broker: bool, caps: &[(&str, bool)]) -> HealthSample {
        HealthSample {
            broker_connected: broker,
            capabilities: caps.iter().map(|(n, r)| (n.to_string(), *r)).collect(),
        }
    }

    #[test]
    fn healthy_agent_within_the_deadline_is_committed() {
        let mut g = HealthGate::new(Duration::from_secs(120));
        assert_eq!(
            g.on_sample(Duration::from_secs(5), &s(false, &[])),
            Verdict::Wait
        );
        assert_eq!(
            g.on_sample(Duration::from_secs(30), &s(true, &[("health", true)])),
            Verdict::Commit
        );
    }

    #[test]
    fn unhealthy_agent_is_rolled_back_at_the_deadline_with_the_reason() {
        let mut g = HealthGate::new(Duration::from_secs(120));
        let bad = s(true, &[("health", true), ("record", false)]);
        assert_eq!(g.on_sample(Duration::from_secs(60), &bad), Verdict::Wait);
        assert_eq!(g.on_tick(Duration::from_secs(119)), Verdict::Wait);
        match g.on_tick(Duration::from_secs(121)) {
            Verdict::Rollback { reason } => assert!(reason.contains("record"), "{reason}"),
            v => panic!("{v:?}"),
        }
        let mut silent = HealthGate::new(Duration::from_secs(10));
        assert!(matches!(
            silent.on_tick(Duration::from_secs(11)),
            Verdict::Rollback { reason } if reason.contains("no health report")
        ));
    }
}
