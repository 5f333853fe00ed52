//! The circuit breaker of a streaming target: a target that keeps failing is probed, not
//! flooded.
//!
//! After [`THRESHOLD`] failed attempts in a row the breaker opens: the profile's worker claims
//! nothing until the profile's backoff has passed, then sends one delivery as a probe. A probe
//! that is delivered closes the breaker and work resumes at full speed; one that fails opens it
//! again for a longer wait (the profile's backoff, doubling up to its cap). Deliveries wait in
//! the store meanwhile; nothing is failed or lost because the breaker is open.

use std::time::{Duration, Instant};

use crate::retry::RetryPolicy;

/// Failed attempts in a row that open the breaker.
pub const THRESHOLD: u32 = 5;

/// What the worker may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Claim as usual.
    Normal,
    /// Claim one delivery, as a probe.
    Probe,
    /// Claim nothing for this long.
    Wait(Duration),
}

/// One profile's breaker.
#[derive(Debug)]
pub struct Breaker {
    policy: RetryPolicy,
    failures: u32,
    /// How many times in a row it opened; the wait grows with it.
    openings: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(policy: RetryPolicy) -> Self {
        Breaker {
            policy,
            failures: 0,
            openings: 0,
            open_until: None,
        }
    }

    /// What the worker may claim at `now`.
    pub fn permit(&self, now: Instant) -> Permit {
        match self.open_until {
            None => Permit::Normal,
            Some(until) if now < until => Permit::Wait(until - now),
            Some(_) => Permit::Probe,
        }
    }

    /// Notes a batch's outcomes. Returns `Some(wait)` when the breaker has just opened.
    pub fn record(&mut self, delivered: u32, failed: u32, now: Instant) -> Option<Duration> {
        if delivered > 0 {
            *self = Breaker::new(self.policy);
            return None;
        }
        if failed == 0 {
            return None;
        }
        self.failures += failed;
        if self.open_until.is_none() && self.failures < THRESHOLD {
            return None;
        }
        self.openings += 1;
        let wait = self.policy.next_wait(self.openings, None);
        self.open_until = Some(now + wait);
        Some(wait)
    }

    /// True while the breaker holds the profile's deliveries.
    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(40),
            max_attempts: None,
        }
    }

    #[test]
    fn opens_after_failures_in_a_row_then_probes() {
        let start = Instant::now();
        let mut breaker = Breaker::new(policy());
        assert_eq!(breaker.record(0, 4, start), None);
        assert_eq!(breaker.permit(start), Permit::Normal);
        let wait = breaker
            .record(0, 1, start)
            .expect("opens at the fifth failure");
        assert!(matches!(breaker.permit(start), Permit::Wait(w) if w == wait));
        assert_eq!(breaker.permit(start + wait), Permit::Probe);
    }

    #[test]
    fn a_failed_probe_waits_longer_and_a_good_one_closes() {
        let start = Instant::now();
        let mut breaker = Breaker::new(policy());
        breaker.record(0, 5, start);
        let second = breaker.record(0, 1, start).unwrap();
        assert!(
            second >= Duration::from_secs(10),
            "the second wait doubles: {second:?}"
        );
        breaker.record(1, 0, start);
        assert_eq!(breaker.permit(start), Permit::Normal);
        assert!(!breaker.is_open());
    }

    #[test]
    fn a_success_resets_the_count() {
        let start = Instant::now();
        let mut breaker = Breaker::new(policy());
        breaker.record(0, 4, start);
        breaker.record(1, 3, start);
        assert_eq!(breaker.record(0, 4, start), None);
    }
}
