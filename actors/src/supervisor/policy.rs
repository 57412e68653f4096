//! The restart policy: Erlang's permanent / transient / temporary, a restart budget within
//! a period, and the backoff before each restart (from [`crate::backoff`]). Pure: it takes
//! `now` and a random number, and is unit-tested without actors.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::TimestampMs;

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartKind {
    /// Always restarted.
    Permanent,
    /// Restarted after a failure, not after a normal stop.
    Transient,
    /// Never restarted.
    Temporary,
}

/// How a child is restarted. Defaults: see each `DEFAULT_*` constant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// Permanent, transient or temporary.
    pub kind: RestartKind,
    /// Failures allowed within `period` before the system is degraded.
    pub max_restarts: u32,
    /// The window over which failures are counted.
    pub period: Duration,
    /// Delay before the first restart.
    pub backoff_initial: Duration,
    /// Growth of the delay per consecutive failure.
    pub backoff_factor: f64,
    /// The largest delay.
    pub backoff_max: Duration,
    /// Relative jitter applied to each delay, 0 to 1 (0.2 = ±20 %).
    pub jitter: f64,
    /// Running this long without failing resets the backoff.
    pub stable_after: Duration,
}

/// Default `max_restarts`: 5 failures...
pub const DEFAULT_MAX_RESTARTS: u32 = 5;
/// ...within 60 s.
pub const DEFAULT_RESTART_PERIOD: Duration = Duration::from_secs(60);
/// Default first restart delay: 1 ms, so a one-off panic costs almost nothing.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(1);
/// Default backoff growth factor.
pub const DEFAULT_BACKOFF_FACTOR: f64 = 4.0;
/// Default backoff cap.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Default jitter (±20 %).
pub const DEFAULT_JITTER: f64 = 0.2;
/// Default stable period that resets the backoff.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(30);

impl RestartPolicy {
    /// The default policy with the given kind.
    pub fn new(kind: RestartKind) -> Self {
        RestartPolicy {
            kind,
            max_restarts: DEFAULT_MAX_RESTARTS,
            period: DEFAULT_RESTART_PERIOD,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_factor: DEFAULT_BACKOFF_FACTOR,
            backoff_max: DEFAULT_BACKOFF_MAX,
            jitter: DEFAULT_JITTER,
            stable_after: DEFAULT_STABLE_AFTER,
        }
    }
}

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RestartDecision {
    /// Restart after `delay`.
    Restart {
        /// Wait this long before serving again.
        delay: Duration,
        /// True when this failure exceeded the restart budget (system degraded).
        budget_exceeded: bool,
    },
    /// Do not restart (temporary child).
    Stop,
}

/// Counts failures of one child against its policy. Pure: takes `now` and a random number.
#[derive(Clone, Debug)]
pub struct RestartTracker {
    policy: RestartPolicy,
    recent: VecDeque<TimestampMs>,
    consecutive: u32,
    last_failure_ms: Option<TimestampMs>,
}

impl RestartTracker {
    /// A tracker with no failure yet.
    pub fn new(policy: RestartPolicy) -> Self {
        RestartTracker {
            policy,
            recent: VecDeque::new(),
            consecutive: 0,
            last_failure_ms: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Records a failure at `now_ms`; `random` in [0, 1) drives the jitter.
    pub fn on_failure(&mut self, now_ms: TimestampMs, random: f64) -> RestartDecision {
        if self.policy.kind == RestartKind::Temporary {
            return RestartDecision::Stop;
        }
        let stable_ms = self.policy.stable_after.as_millis() as i64;
        if let Some(last) = self.last_failure_ms {
            if now_ms - last >= stable_ms {
                self.consecutive = 0;
            }
        }
        self.last_failure_ms = Some(now_ms);
        self.consecutive = self.consecutive.saturating_add(1);

        let period_ms = self.policy.period.as_millis() as i64;
        while self
            .recent
            .front()
            .is_some_and(|&t| now_ms - t >= period_ms)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now_ms);
        let budget_exceeded = self.recent.len() as u64 > u64::from(self.policy.max_restarts);

        let delay = if budget_exceeded {
            self.policy.backoff_max
        } else {
            self.backoff(self.consecutive, random)
        };
        RestartDecision::Restart {
            delay,
            budget_exceeded,
        }
    }

    /// The delay before restart number `attempt` (1-based), jittered and capped.
    pub fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let p = &self.policy;
        crate::backoff::Backoff {
            initial: p.backoff_initial,
            factor: p.backoff_factor,
            max: p.backoff_max,
            jitter: p.jitter,
        }
        .delay(attempt, random)
    }

    /// Failures within the current period.
    pub fn recent_failures(&self) -> usize {
        self.recent.len()
    }
}
