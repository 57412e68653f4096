//! What a supervised child shares with the supervisor: its [`ChildHandle`] (name, counters,
//! restart tracker, where to report failures) and the [`Restartable`] bookkeeping every
//! supervised actor embeds (fail and stop, then wait out the backoff when started again).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use super::policy::{RestartDecision, RestartPolicy, RestartTracker, DEFAULT_BACKOFF_MAX};
use crate::counters::{ActorKind, ActorStats};
use crate::messages::tree::ActorFailed;
use crate::types::SharedClock;

/// What a child shares with the supervisor: its identity, counters and restart tracker.
#[derive(Debug)]
pub struct ChildHandle {
    /// Name in the tree (`collector`, `watcher:ID`).
    pub name: String,
    /// Kind of actor.
    pub kind: ActorKind,
    /// Counters shown in `status()`.
    pub stats: Arc<ActorStats>,
    tracker: Mutex<RestartTracker>,
    clock: SharedClock,
    supervisor: Mutex<Option<Recipient<ActorFailed>>>,
    /// Faults armed for this child's handlers (test builds only).
    #[cfg(test)]
    faults: Mutex<Option<FaultPlan>>,
}

impl ChildHandle {
    /// A handle for a new child.
    pub fn new(
        name: impl Into<String>,
        kind: ActorKind,
        policy: RestartPolicy,
        clock: SharedClock,
    ) -> Arc<Self> {
        Arc::new(ChildHandle {
            name: name.into(),
            kind,
            stats: Arc::new(ActorStats::default()),
            tracker: Mutex::new(RestartTracker::new(policy)),
            clock,
            supervisor: Mutex::new(None),
            #[cfg(test)]
            faults: Mutex::new(None),
        })
    }

    /// Tells the handle where to report failures.
    pub fn report_to(&self, supervisor: Recipient<ActorFailed>) {
        if let Ok(mut s) = self.supervisor.lock() {
            *s = Some(supervisor);
        }
    }

    /// Makes this child's handlers consult `plan` (test builds only).
    #[cfg(test)]
    pub(crate) fn arm_from(&self, plan: &FaultPlan) {
        if let Ok(mut slot) = self.faults.lock() {
            *slot = Some(plan.clone());
        }
    }

    /// True (once) when a fault is armed for this child's handler of `message`.
    #[cfg(test)]
    pub(crate) fn take_fault(&self, message: &str) -> bool {
        let Some(plan) = self.faults.lock().ok().and_then(|p| p.clone()) else {
            return false;
        };
        plan.take(&self.name, message)
    }

    /// Records a failure that lost `lost` messages, reports it, and decides the restart.
    pub fn fail(&self, reason: &str, lost: u64) -> RestartDecision {
        self.stats.failed(reason, lost);
        let now = self.clock.now_ms();
        let decision = match self.tracker.lock() {
            Ok(mut t) => t.on_failure(now, fastrand::f64()),
            // A poisoned tracker means a panic while holding it, which cannot happen in
            // on_failure; restart at the cap rather than lose the child.
            Err(_) => RestartDecision::Restart {
                delay: DEFAULT_BACKOFF_MAX,
                budget_exceeded: true,
            },
        };
        let budget_exceeded = matches!(
            decision,
            RestartDecision::Restart {
                budget_exceeded: true,
                ..
            }
        );
        if matches!(decision, RestartDecision::Restart { .. }) {
            self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        }
        tracing::error!(actor = %self.name, reason, lost, budget_exceeded, "Actor failed; restarting.");
        if let Ok(s) = self.supervisor.lock() {
            if let Some(s) = s.as_ref() {
                let _ = s.try_send(ActorFailed {
                    kind: self.kind,
                    name: self.name.clone(),
                    reason: reason.to_string(),
                    budget_exceeded,
                });
            }
        }
        decision
    }
}

/// The restart bookkeeping every supervised actor embeds: its handle and the delay to wait
/// out when it starts again.
#[derive(Debug)]
pub struct Restartable {
    /// The child's handle.
    pub child: Arc<ChildHandle>,
    pending_delay: Option<Duration>,
}

impl Restartable {
    /// Wraps a handle.
    pub fn new(child: Arc<ChildHandle>) -> Self {
        Restartable {
            child,
            pending_delay: None,
        }
    }

    /// Handles a failure inside a handler: records it and stops the actor, so that
    /// `actix::Supervisor` restarts it with its mailbox intact.
    pub fn fail<A>(&mut self, ctx: &mut Context<A>, reason: &str)
    where
        A: Actor<Context = Context<A>>,
    {
        if let RestartDecision::Restart { delay, .. } = self.child.fail(reason, 1) {
            self.pending_delay = Some(delay);
        }
        ctx.stop();
    }

    /// Call from `started()`: waits out the backoff (the mailbox is held meanwhile).
    pub fn on_started<A>(&mut self, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>>,
    {
        if let Some(delay) = self.pending_delay.take() {
            if !delay.is_zero() {
                ctx.wait(actix::fut::wrap_future(tokio::time::sleep(delay)));
            }
        }
    }
}

/// Faults armed on purpose in tests: `(child name, message type)` pairs, each making the
/// child's next handler of that message panic once. Shared by every child of one engine.
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub struct FaultPlan(Arc<Mutex<Vec<(String, String)>>>);

#[cfg(test)]
impl FaultPlan {
    /// Arms one fault.
    pub fn arm(&self, child: &str, message: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push((child.to_string(), message.to_string()));
        }
    }

    /// Disarms and reports the fault for `(child, message)`, if armed.
    pub(crate) fn take(&self, child: &str, message: &str) -> bool {
        let Ok(mut v) = self.0.lock() else {
            return false;
        };
        match v.iter().position(|(c, m)| c == child && m == message) {
            Some(i) => {
                v.remove(i);
                true
            }
            None => false,
        }
    }
}
