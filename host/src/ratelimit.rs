//! Upstream budgets: the per-connector bound on calls to the backend, so
//! one connector cannot burn the account's Secrets Manager quota.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::clock::{Clock, SystemClock};

/// The message of a fetch or list refused by a [`FetchBudget`].
pub const RATE_LIMITED: &str = "this connector's upstream fetch rate limit is exhausted";

/// Permission to go upstream for one call.
pub trait FetchBudget: Send + Sync {
    /// Whether one more upstream call may start now.
    fn try_acquire(&self) -> bool;
}

/// `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    clock: Arc<dyn Clock>,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket on the real clock.
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        Self::with_clock(rate_per_second, burst, Arc::new(SystemClock))
    }

    /// A full bucket refilled by `clock`.
    pub fn with_clock(rate_per_second: f64, burst: u32, clock: Arc<dyn Clock>) -> Self {
        let burst = f64::from(burst.max(1));
        let now = clock.now();
        Self {
            rate: rate_per_second.max(0.0),
            burst,
            clock,
            state: Mutex::new((burst, now)),
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate)
            .min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

impl FetchBudget for TokenBucket {
    fn try_acquire(&self) -> bool {
        self.try_take()
    }
}

/// No limit (operators' own reads).
#[derive(Debug, Default)]
pub struct Unlimited;

impl FetchBudget for Unlimited {
    fn try_acquire(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let clock = Arc::new(ManualClock::new());
        let bucket = TokenBucket::with_clock(1000.0, 3, clock.clone());
        assert!((0..3).all(|_| bucket.try_take()));
        assert!(!bucket.try_take(), "the burst is spent");
        clock.advance(Duration::from_micros(999));
        assert!(!bucket.try_take(), "not a whole token yet");
        clock.advance(Duration::from_micros(1));
        assert!(bucket.try_take(), "one token per millisecond");
        assert!(!bucket.try_take());
        clock.advance(Duration::from_secs(60));
        assert!((0..3).all(|_| bucket.try_take()), "refills up to the burst");
        assert!(!bucket.try_take(), "and no further");
    }

    #[test]
    fn a_zero_rate_allows_only_the_burst() {
        let clock = Arc::new(ManualClock::new());
        let none = TokenBucket::with_clock(0.0, 1, clock.clone());
        assert!(none.try_take());
        clock.advance(Duration::from_secs(3600));
        assert!(!none.try_take());
    }
}
