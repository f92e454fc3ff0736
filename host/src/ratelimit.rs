//! A token bucket: the per-connector bound on upstream fetches, so one
//! connector cannot burn the account's Secrets Manager quota.

use std::sync::Mutex;
use std::time::Instant;

use crate::cache::FetchBudget;

/// `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate_per_second.max(0.0),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
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
    use super::*;

    #[test]
    fn burst_then_refill() {
        let bucket = TokenBucket::new(1000.0, 3);
        assert!((0..3).all(|_| bucket.try_take()));
        assert!(!bucket.try_take());
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(bucket.try_take());
        let none = TokenBucket::new(0.0, 1);
        assert!(none.try_take());
        assert!(!none.try_take());
    }
}
