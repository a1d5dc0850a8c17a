//! Spaces out new calls so the provider's calls-per-second limit is never exceeded
//! (Vonage: 3/s per account; above it, 429s).

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    interval: Option<Duration>,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `None`: no limit.
    pub fn new(per_second: Option<f64>) -> RateLimiter {
        RateLimiter {
            interval: per_second.map(|n| Duration::from_secs_f64(1.0 / n)),
            next_free: Mutex::new(None),
        }
    }

    /// Reserves the next slot at or after `now` and returns it: slots are `1/rate` apart.
    pub fn reserve(&self, now: Instant) -> Instant {
        let Some(interval) = self.interval else {
            return now;
        };
        let mut next = self.next_free.lock().expect("limiter lock");
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + interval);
        slot
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let slot = self.reserve(Instant::now());
        tokio::time::sleep_until(slot.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_the_rate() {
        let limiter = RateLimiter::new(Some(4.0));
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..5).map(|_| limiter.reserve(t0) - t0).collect();
        assert_eq!(
            slots,
            [0, 250, 500, 750, 1000].map(Duration::from_millis).to_vec()
        );
        // After a quiet period the next caller goes at once.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limiter.reserve(later), later);
    }

    #[test]
    fn unlimited_never_waits() {
        let limiter = RateLimiter::new(None);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(limiter.reserve(t0), t0);
        }
    }
}
