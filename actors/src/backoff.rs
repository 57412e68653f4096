//! Exponential backoff with jitter, the one formula behind actor restarts, managed-daemon
//! restarts and sink retries.

use std::time::Duration;

/// `initial × factor^(attempt − 1)`, capped at `max`, then scaled by `1 ± jitter` (a uniform
/// draw in `[0, 1)` picks where), and never above `max`: delays at the cap keep their spread
/// downwards, so things that failed together do not retry together.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// Growth per attempt (below 1 counts as 1).
    pub factor: f64,
    /// The largest delay.
    pub max: Duration,
    /// Relative spread, 0 to 1 (0.2 = ±20 %).
    pub jitter: f64,
}

impl Backoff {
    /// The delay before attempt `attempt` (1-based; 0 counts as 1), for a jitter `draw` in
    /// `[0, 1)`.
    pub fn delay(&self, attempt: u32, draw: f64) -> Duration {
        let max = self.max.as_secs_f64();
        let exponent = attempt.saturating_sub(1).min(1024) as i32;
        let base = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        // NaN (never from a real draw or a validated setting) counts as no jitter.
        let unit = |v: f64, nan: f64| if v.is_nan() { nan } else { v.clamp(0.0, 1.0) };
        let (jitter, draw) = (unit(self.jitter, 0.0), unit(draw, 0.5));
        let scaled = base.min(max) * (1.0 + jitter * (2.0 * draw - 1.0));
        Duration::from_secs_f64(if scaled.is_nan() {
            max
        } else {
            scaled.clamp(0.0, max)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(100),
        factor: 2.0,
        max: Duration::from_secs(1),
        jitter: 0.2,
    };

    /// Ensures growth, the cap, the jitter's bounds (also at the cap) and odd inputs.
    #[test]
    fn grows_caps_and_jitters_within_bounds() {
        let exact = Backoff { jitter: 0.0, ..B };
        let ms = |d: Duration| d.as_millis();
        assert_eq!(
            (1..=6).map(|a| ms(exact.delay(a, 0.5))).collect::<Vec<_>>(),
            [100, 200, 400, 800, 1000, 1000]
        );
        assert_eq!(ms(exact.delay(0, 0.5)), 100);
        assert_eq!(ms(exact.delay(u32::MAX, 0.5)), 1000);
        assert_eq!((ms(B.delay(1, 0.0)), ms(B.delay(1, 1.0))), (80, 120));
        assert_eq!((ms(B.delay(10, 0.0)), ms(B.delay(10, 1.0))), (800, 1000));
        assert_eq!(ms(B.delay(1, f64::NAN)), 100);
        let shrinking = Backoff {
            factor: 0.5,
            ..exact
        };
        assert_eq!(ms(shrinking.delay(5, 0.5)), 100);
    }
}
