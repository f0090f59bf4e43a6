//! A token bucket for the per-device bandwidth cap. Sans-I/O: the caller passes the time
//! and sleeps for the returned duration.

use std::time::Duration;

/// Bytes per second with a burst allowance.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A bucket refilling at `bytes_per_s`, holding at most `burst` bytes, starting full at
    /// `now`.
    pub fn new(bytes_per_s: u64, burst: u64, now: Duration) -> Self {
        let burst = burst.max(1) as f64;
        Self {
            rate: bytes_per_s.max(1) as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// A bucket for a cap in bits per second (links are sold in Mbit/s), with a quarter
    /// second of burst.
    pub fn from_bits_per_s(bits_per_s: u64, now: Duration) -> Self {
        let bytes = (bits_per_s / 8).max(1);
        Self::new(bytes, (bytes / 4).max(16 * 1024), now)
    }

    /// Spends `n` bytes at `now`; returns how long to wait before sending them.
    pub fn take(&mut self, now: Duration, n: u64) -> Duration {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sustained_rate_matches_the_cap() {
        // 8 Mbit/s = 1 MB/s; send 10 MB in 64 KiB chunks with simulated time.
        let mut b = TokenBucket::from_bits_per_s(8_000_000, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut sent = 0u64;
        while sent < 10_000_000 {
            now += b.take(now, 65_536);
            sent += 65_536;
        }
        let secs = now.as_secs_f64();
        assert!((9.5..10.5).contains(&secs), "took {secs} simulated s");
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let mut b = TokenBucket::new(1000, 500, Duration::ZERO);
        assert_eq!(b.take(Duration::from_secs(100), 500), Duration::ZERO);
        assert_eq!(
            b.take(Duration::from_secs(100), 1000),
            Duration::from_secs(1)
        );
    }
}
