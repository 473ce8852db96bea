//! Delays between retries: supervisor restarts, bridge publishes and reconnects.

use std::time::Duration;

/// The delay before retry number `n` (1-based) of a run of failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Retry at once.
    None,
    /// Always the same delay.
    Fixed(Duration),
    /// `initial`, doubling with each retry, at most `max`.
    Exponential {
        /// The first delay.
        initial: Duration,
        /// The largest delay.
        max: Duration,
    },
}

impl Backoff {
    /// The delay before retry `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        match *self {
            Backoff::None => Duration::ZERO,
            Backoff::Fixed(d) => d,
            Backoff::Exponential { initial, max } => {
                let factor = 2u32.saturating_pow(n.saturating_sub(1));
                initial.saturating_mul(factor).min(max)
            }
        }
    }

    /// [`delay`](Self::delay) with "equal jitter": a random point in its upper half, so that
    /// many clients failing together do not retry in lockstep.
    pub fn jittered(&self, n: u32) -> Duration {
        let delay = self.delay(n);
        let half = delay / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_up_to_the_cap() {
        let b = Backoff::Exponential {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let delays: Vec<u128> = (1..=5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(b.delay(200), Duration::from_millis(500), "no overflow");
        assert_eq!(
            Backoff::Fixed(Duration::from_secs(1)).delay(9),
            Duration::from_secs(1)
        );
        assert_eq!(Backoff::None.delay(1), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let b = Backoff::Fixed(Duration::from_millis(100));
        for _ in 0..1000 {
            let d = b.jittered(1);
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
        assert_eq!(Backoff::None.jittered(3), Duration::ZERO);
    }
}
