//! A sink's thread: takes notifications from its queue, delivers them through its
//! deliverer with retries and jittered exponential backoff, and counts what happened.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::types::Alert;

use super::*;

/// Why an attempt failed, and whether trying again may help.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) retryable: bool,
    /// The server's `Retry-After`, if it gave one.
    pub(super) retry_after: Option<Duration>,
}

impl Failure {
    pub(super) fn transient(message: String) -> Self {
        Failure {
            message,
            retryable: true,
            retry_after: None,
        }
    }
    pub(super) fn permanent(message: String) -> Self {
        Failure {
            message,
            retryable: false,
            retry_after: None,
        }
    }
}

/// One way of delivering a notification; called on the sink's thread only.
pub(super) trait Deliver: Send {
    /// The configured bound of one attempt.
    fn timeout(&self) -> Duration;
    /// One attempt, bounded by `timeout`.
    fn deliver(&mut self, alerts: &[Alert], timeout: Duration) -> Result<(), Failure>;
}

/// The sink's thread: takes notifications one by one and retries each.
pub(super) struct Worker {
    pub(super) name: String,
    pub(super) deliverer: Box<dyn Deliver>,
    pub(super) settings: SinkSettings,
    pub(super) stats: Arc<SinkStats>,
    pub(super) queue: Receiver<Arc<[Alert]>>,
    pub(super) stop: Receiver<()>,
    pub(super) control: Arc<Control>,
}

impl Worker {
    pub(super) fn run(mut self) {
        loop {
            crossbeam_channel::select! {
                recv(self.queue) -> next => match next {
                    Ok(alerts) => self.handle(&alerts),
                    Err(_) => break,
                },
                recv(self.stop) -> _ => break,
            }
        }
        // Stopping: drain what is queued (each attempt bounded by the deadline), then count
        // what is left in one go.
        let mut abandoned = 0u64;
        while let Ok(alerts) = self.queue.try_recv() {
            if self.attempt_timeout().is_some() {
                self.handle(&alerts);
            } else {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                abandoned += 1;
            }
        }
        if abandoned > 0 {
            tracing::warn!(sink = %self.name, dropped = abandoned,
                "Sink stopped with notifications undelivered at its deadline.");
        } else {
            tracing::debug!(sink = %self.name, "Sink stopped.");
        }
    }

    fn handle(&mut self, alerts: &[Alert]) {
        self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        let backoff = crate::backoff::Backoff {
            initial: self.settings.backoff_initial,
            factor: 2.0,
            max: self.settings.backoff_max,
            jitter: RETRY_JITTER,
        };
        for attempt in 1..=self.settings.max_attempts {
            let Some(timeout) = self.attempt_timeout() else {
                self.give_up("shutdown deadline passed", attempt - 1);
                return;
            };
            if attempt > 1 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            match self.deliverer.deliver(alerts, timeout) {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(failure) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    self.stats.record_error(&failure.message);
                    if !failure.retryable {
                        tracing::warn!(sink = %self.name, attempt, error = %failure.message,
                            "Alert delivery failed permanently.");
                        self.give_up(&failure.message, attempt);
                        return;
                    }
                    if attempt == self.settings.max_attempts {
                        self.give_up(&failure.message, attempt);
                        return;
                    }
                    let pause = failure
                        .retry_after
                        .unwrap_or_else(|| backoff.delay(attempt, fastrand::f64()))
                        .min(self.settings.backoff_max);
                    let retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
                    tracing::info!(sink = %self.name, attempt, error = %failure.message,
                        retry_in_ms, "Alert delivery failed; will retry.");
                    if !self.pause(pause) {
                        self.give_up("shutdown deadline passed during backoff", attempt);
                        return;
                    }
                }
            }
        }
    }

    fn give_up(&self, reason: &str, attempts: u32) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(sink = %self.name, attempts, error = %reason, "Alert notification dropped.");
    }

    /// The bound of the next attempt: the sink's timeout, cut by the shutdown deadline. None
    /// once the deadline has passed.
    fn attempt_timeout(&self) -> Option<Duration> {
        let timeout = self.deliverer.timeout();
        match self.control.deadline() {
            None => Some(timeout),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| timeout.min(left))
            }
        }
    }

    /// Waits before a retry; false when the sink is stopping and the retry would come after
    /// the drain deadline.
    fn pause(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        match self.stop.recv_timeout(pause) {
            Err(RecvTimeoutError::Timeout) => true,
            // Stopping: the only message is the disconnection.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => match self.control.deadline() {
                Some(deadline) if until <= deadline => {
                    thread::sleep(until.saturating_duration_since(Instant::now()));
                    true
                }
                _ => false,
            },
        }
    }
}

/// The retries' relative spread (±50 %), so that sinks that failed together do not retry
/// together.
const RETRY_JITTER: f64 = 0.5;
