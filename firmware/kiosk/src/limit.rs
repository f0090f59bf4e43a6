//! Rate limits for the kiosk's endpoints: a token bucket per client and one overall
//! (sans-I/O: the caller passes the monotonic time).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// One bucket's rule: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub per_minute: u32,
    pub burst: u32,
}

/// Limits of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub per_client: Rule,
    pub overall: Rule,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This client asked too often.
    Client,
    /// Every client together asked too often.
    Overall,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny {
        scope: Scope,
        /// Seconds until a request would be allowed (at least 1).
        retry_after_s: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

impl Bucket {
    fn full(rule: Rule, now: Duration) -> Self {
        Self {
            tokens: f64::from(rule.burst),
            at: now,
        }
    }

    fn refill(&mut self, rule: Rule, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        let rate = f64::from(rule.per_minute) / 60.0;
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(rule.burst));
        self.at = now;
    }

    fn wait_s(&self, rule: Rule) -> u32 {
        let rate = f64::from(rule.per_minute) / 60.0;
        if rate <= 0.0 {
            return u32::MAX;
        }
        let s = ((1.0 - self.tokens) / rate).ceil();
        if s.is_finite() && s >= 1.0 {
            s.min(f64::from(u32::MAX)) as u32
        } else {
            1
        }
    }
}

/// Most clients remembered; beyond it, clients with full buckets are forgotten.
const MAX_CLIENTS: usize = 4096;

/// A per-client and overall token-bucket limiter.
#[derive(Debug)]
pub struct RateLimiter<K> {
    limits: Limits,
    clients: HashMap<K, Bucket>,
    overall: Option<Bucket>,
    /// Requests refused so far.
    pub refused: u64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            clients: HashMap::new(),
            overall: None,
            refused: 0,
        }
    }

    /// Whether `client` may make a request at `now` (spends a token of each bucket when
    /// allowed; a refused request spends nothing).
    pub fn check(&mut self, now: Duration, client: &K) -> Verdict {
        let l = self.limits;
        if self.clients.len() >= MAX_CLIENTS {
            self.clients.retain(|_, b| {
                let mut b = *b;
                b.refill(l.per_client, now);
                b.tokens < f64::from(l.per_client.burst)
            });
        }
        let mut mine = self
            .clients
            .get(client)
            .copied()
            .unwrap_or_else(|| Bucket::full(l.per_client, now));
        let mut all = self.overall.unwrap_or_else(|| Bucket::full(l.overall, now));
        mine.refill(l.per_client, now);
        all.refill(l.overall, now);
        let verdict = if mine.tokens < 1.0 {
            Verdict::Deny {
                scope: Scope::Client,
                retry_after_s: mine.wait_s(l.per_client),
            }
        } else if all.tokens < 1.0 {
            Verdict::Deny {
                scope: Scope::Overall,
                retry_after_s: all.wait_s(l.overall),
            }
        } else {
            mine.tokens -= 1.0;
            all.tokens -= 1.0;
            Verdict::Allow
        };
        if verdict != Verdict::Allow {
            self.refused += 1;
        }
        self.clients.insert(client.clone(), mine);
        self.overall = Some(all);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        per_client: Rule {
            per_minute: 6,
            burst: 3,
        },
        overall: Rule {
            per_minute: 60,
            burst: 5,
        },
    };

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_client_gets_its_burst_then_is_told_when_to_come_back() {
        let mut l = RateLimiter::new(LIMITS);
        for _ in 0..3 {
            assert_eq!(l.check(s(0), &"a"), Verdict::Allow);
        }
        assert_eq!(
            l.check(s(0), &"a"),
            Verdict::Deny {
                scope: Scope::Client,
                retry_after_s: 10
            }
        );
        // 6 a minute: one more after 10 s.
        assert_eq!(l.check(s(10), &"a"), Verdict::Allow);
        assert_eq!(l.refused, 1);
    }

    #[test]
    fn all_clients_together_are_held_to_the_overall_limit() {
        let mut l = RateLimiter::new(LIMITS);
        for c in ["a", "a", "b", "b", "c"] {
            assert_eq!(l.check(s(0), &c), Verdict::Allow);
        }
        assert!(matches!(
            l.check(s(0), &"d"),
            Verdict::Deny {
                scope: Scope::Overall,
                ..
            }
        ));
        // A refused request spent nothing: d is served as soon as the overall bucket refills.
        assert_eq!(l.check(s(1), &"d"), Verdict::Allow);
    }
}
