//! The restart policy as a pure state machine: given how a process ended and how long it
//! ran, decide whether to restart, after what delay, or to give up. No clock and no
//! randomness of its own (the caller passes uptime and a jitter draw), so it is tested
//! exhaustively without processes or sleeps.

use std::time::Duration;

use super::spec::{ManagedSpec, RestartMode};

/// What the supervisor does after an exit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Start again after `delay`; `attempt` is the consecutive-failure count.
    Restart { delay: Duration, attempt: u32 },
    /// The mode says not to restart this exit.
    Stay,
    /// Too many fast failures: stop restarting, except a slow retry after `retry_after`.
    Fatal {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// Consecutive-failure counters of one daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExitCounters {
    /// Consecutive exits since the last stable run; drives the backoff exponent.
    failures: u32,
    /// Consecutive exits within the start-up grace; drives giving up.
    fast_failures: u32,
}

impl ExitCounters {
    /// Forget all failures (manual start or restart).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Decide what follows an exit after `uptime`; `failed` is a non-zero code, a signal,
    /// a spawn error or a liveness verdict. `jitter_draw` is uniform in `[0, 1)`.
    pub(crate) fn on_exit(
        &mut self,
        spec: &ManagedSpec,
        failed: bool,
        uptime: Duration,
        jitter_draw: f64,
    ) -> Decision {
        if uptime >= spec.stable_after {
            self.reset();
        }
        let wanted = match spec.restart {
            RestartMode::Always => true,
            RestartMode::OnFailure => failed,
            RestartMode::Never => false,
        };
        if !wanted {
            return Decision::Stay;
        }
        self.failures = self.failures.saturating_add(1);
        if uptime < spec.startup_grace {
            self.fast_failures = self.fast_failures.saturating_add(1);
        } else {
            self.fast_failures = 0;
        }
        if spec.max_fast_failures > 0 && self.fast_failures >= spec.max_fast_failures {
            return Decision::Fatal {
                reason: format!(
                    "{} consecutive exits within the {:?} start-up grace period (limit {})",
                    self.fast_failures, spec.startup_grace, spec.max_fast_failures
                ),
                retry_after: spec.slow_retry,
            };
        }
        Decision::Restart {
            delay: backoff_delay(spec, self.failures, jitter_draw),
            attempt: self.failures,
        }
    }
}

/// `initial × factor^(attempt−1)`, scaled by `1 ± jitter`, capped at `backoff_max`.
pub(crate) fn backoff_delay(spec: &ManagedSpec, attempt: u32, jitter_draw: f64) -> Duration {
    perfvisor_actors::backoff::Backoff {
        initial: spec.backoff_initial,
        factor: spec.backoff_factor,
        max: spec.backoff_max,
        jitter: spec.jitter,
    }
    .delay(attempt, jitter_draw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ManagedSpec {
        let mut s = ManagedSpec::new("t", vec!["true".into()], "/nonexistent");
        s.restart = RestartMode::OnFailure;
        s.backoff_initial = Duration::from_millis(50);
        s.backoff_max = Duration::from_millis(200);
        s.backoff_factor = 2.0;
        s.jitter = 0.0;
        s.startup_grace = Duration::from_secs(1);
        s.stable_after = Duration::from_secs(10);
        s.max_fast_failures = 5;
        s
    }

    fn delay(d: &Decision) -> Option<u128> {
        match d {
            Decision::Restart { delay, .. } => Some(delay.as_millis()),
            _ => None,
        }
    }

    /// Delays grow by the factor up to the cap, and the fifth fast failure is fatal.
    #[test]
    fn backoff_grows_to_cap_then_fatal() {
        let s = spec();
        let mut t = ExitCounters::default();
        let got: Vec<_> = (0..4)
            .map(|_| delay(&t.on_exit(&s, true, Duration::from_millis(5), 0.5)))
            .collect();
        assert_eq!(got, vec![Some(50), Some(100), Some(200), Some(200)]);
        let last = t.on_exit(&s, true, Duration::from_millis(5), 0.5);
        assert!(
            matches!(
                last,
                Decision::Fatal {
                    retry_after: None,
                    ..
                }
            ),
            "{last:?}"
        );
    }

    /// After going fatal with a slow retry, each further fast failure is fatal again at once.
    #[test]
    fn slow_retry_is_one_attempt_per_interval() {
        let mut s = spec();
        s.slow_retry = Some(Duration::from_secs(30));
        let mut t = ExitCounters::default();
        for _ in 0..4 {
            t.on_exit(&s, true, Duration::ZERO, 0.5);
        }
        for _ in 0..3 {
            let d = t.on_exit(&s, true, Duration::ZERO, 0.5);
            assert!(
                matches!(d, Decision::Fatal { retry_after: Some(r), .. } if r == Duration::from_secs(30)),
                "{d:?}"
            );
        }
        // A run past the grace period (but not stable) leaves fatal and backs off normally.
        assert!(delay(&t.on_exit(&s, true, Duration::from_secs(2), 0.5)).is_some());
    }

    /// A run of stable_after or longer resets the backoff to its initial delay.
    #[test]
    fn stable_uptime_resets_backoff() {
        let s = spec();
        let mut t = ExitCounters::default();
        for _ in 0..3 {
            t.on_exit(&s, true, Duration::from_secs(2), 0.5);
        }
        assert_eq!(
            delay(&t.on_exit(&s, true, Duration::from_secs(2), 0.5)),
            Some(200)
        );
        assert_eq!(
            delay(&t.on_exit(&s, true, Duration::from_secs(10), 0.5)),
            Some(50)
        );
        assert_eq!(
            delay(&t.on_exit(&s, true, Duration::from_secs(2), 0.5)),
            Some(100)
        );
    }

    /// Slow exits never count toward giving up.
    #[test]
    fn slow_failures_never_fatal() {
        let s = spec();
        let mut t = ExitCounters::default();
        for _ in 0..50 {
            assert!(delay(&t.on_exit(&s, true, Duration::from_secs(3), 0.5)).is_some());
        }
    }

    /// The mode decides which exits restart at all.
    #[test]
    fn mode_selects_exits() {
        let mut s = spec();
        let mut t = ExitCounters::default();
        assert_eq!(t.on_exit(&s, false, Duration::ZERO, 0.5), Decision::Stay);
        assert!(delay(&t.on_exit(&s, true, Duration::ZERO, 0.5)).is_some());
        s.restart = RestartMode::Always;
        assert!(delay(&t.on_exit(&s, false, Duration::ZERO, 0.5)).is_some());
        s.restart = RestartMode::Never;
        assert_eq!(t.on_exit(&s, true, Duration::ZERO, 0.5), Decision::Stay);
    }

    /// Jitter stays within ±jitter of the delay and never passes the cap.
    #[test]
    fn jitter_bounds() {
        let mut s = spec();
        s.jitter = 0.5;
        assert_eq!(backoff_delay(&s, 1, 0.0).as_millis(), 25);
        assert_eq!(backoff_delay(&s, 1, 1.0).as_millis(), 75);
        assert_eq!(backoff_delay(&s, 9, 1.0).as_millis(), 200);
        assert_eq!(backoff_delay(&s, u32::MAX, 0.0).as_millis(), 100);
    }
}
