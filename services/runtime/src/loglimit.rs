//! Log lines at a bounded rate: hostile input (bad samples, bad KV values, floods) is
//! counted in `/metrics` one by one but must not flood the log.

use std::time::Duration;

use tokio::time::Instant;

/// The first line at once, then at most one per `every`, each saying how many were held
/// back since the last one.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed)` when a line may be logged now (and how many were not before it);
    /// `None` when this one is held back (and counted).
    pub fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(at) if now.duration_since(at) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_period_with_the_count_held_back() {
        let mut log = LogLimiter::new(Duration::from_secs(1));
        assert_eq!(log.due(), Some(0));
        for _ in 0..5 {
            assert_eq!(log.due(), None);
        }
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(log.due(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(log.due(), Some(6), "the count goes out with the next line");
        assert_eq!(log.due(), None);
    }
}
