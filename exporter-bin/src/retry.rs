//! When a failed delivery is tried again.
//!
//! Invariants:
//! - The wait grows exponentially from `initial` (30 s by default) and is capped at `max`
//!   (15 min by default); it never drops below one second, so a failing target is never hit in a
//!   tight loop.
//! - Jitter picks the wait uniformly between half and all of the computed delay, so deliveries
//!   that failed together do not come back together.
//! - A target's `Retry-After` is honoured: the next attempt waits exactly that long, capped at
//!   [`MAX_RETRY_AFTER`] so a bogus header cannot park a delivery for a year.
//! - With `max_attempts`, the delivery is parked as failed after that many attempts; without it,
//!   it is retried until the target accepts it.

use std::time::Duration;

/// The longest wait a target's `Retry-After` can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

const MIN_WAIT: Duration = Duration::from_secs(1);

/// Backoff and attempt limit of one profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(15 * 60),
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// True when a delivery that has now been attempted `attempts` times must be parked.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max)
    }

    /// The wait before the next attempt, after `attempts` failed ones (1 after the first).
    pub fn next_wait(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.clamp(MIN_WAIT.min(self.initial), MAX_RETRY_AFTER);
        }
        let doublings = attempts.saturating_sub(1).min(32);
        let delay = self
            .initial
            .saturating_mul(1 << doublings.min(31))
            .min(self.max);
        let jittered = delay.mul_f64(rand::random_range(0.5..=1.0));
        jittered.max(MIN_WAIT.min(self.initial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_and_caps() {
        let policy = RetryPolicy::default();
        for _ in 0..50 {
            let first = policy.next_wait(1, None);
            assert!(first >= Duration::from_secs(15) && first <= Duration::from_secs(30));
            let third = policy.next_wait(3, None);
            assert!(third >= Duration::from_secs(60) && third <= Duration::from_secs(120));
            let late = policy.next_wait(40, None);
            assert!(late >= Duration::from_secs(450) && late <= Duration::from_secs(900));
        }
    }

    #[test]
    fn honours_retry_after_within_bounds() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.next_wait(1, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            policy.next_wait(1, Some(Duration::ZERO)),
            Duration::from_secs(1)
        );
        assert_eq!(
            policy.next_wait(1, Some(Duration::from_secs(1 << 30))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn parks_after_max_attempts_only_when_set() {
        let forever = RetryPolicy::default();
        assert!(!forever.exhausted(1_000_000));
        let limited = RetryPolicy {
            max_attempts: Some(3),
            ..RetryPolicy::default()
        };
        assert!(!limited.exhausted(2));
        assert!(limited.exhausted(3));
    }
}
