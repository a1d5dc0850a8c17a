//! The engine's clock. In production it is the system clock; a test builds one it can move
//! forward, so that a step's wait, a retry or a due page comes at once instead of after the
//! time passes for real.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// How far ahead of the system clock this one is, in milliseconds; `None` for the system
    /// clock itself, which nothing moves.
    ahead: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that runs with the system clock and that `advance` moves forward (tests).
    pub fn movable() -> Clock {
        Clock {
            ahead: Some(Arc::default()),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        match &self.ahead {
            Some(ahead) => now + chrono::Duration::milliseconds(ahead.load(Ordering::SeqCst)),
            None => now,
        }
    }

    /// Moves a movable clock forward by `by`. The system clock does not move: false.
    pub fn advance(&self, by: std::time::Duration) -> bool {
        let Some(ahead) = &self.ahead else {
            return false;
        };
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        ahead.fetch_add(ms, Ordering::SeqCst);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_movable_clock_jumps_ahead_and_the_system_clock_does_not() {
        let clock = Clock::movable();
        let before = Utc::now();
        assert!(clock.advance(Duration::from_secs(600)));
        assert!(clock.now() - before >= chrono::Duration::seconds(600));
        // Copies share the movement: the engine and the test hold the same clock.
        assert!(clock.clone().now() - before >= chrono::Duration::seconds(600));

        let system = Clock::system();
        assert!(!system.advance(Duration::from_secs(600)));
        assert!(system.now() - Utc::now() < chrono::Duration::seconds(60));
    }
}
