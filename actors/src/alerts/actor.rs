//! The alert dispatcher actor: evaluates rules on incoming samples and delivers
//! notifications. A slow or dead subscriber never holds back the dispatcher or the others:
//! actors get a non-blocking `do_send`, closures run on threads of their own behind bounded
//! queues.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use crossbeam_channel::{Sender, TrySendError};

use super::rules::{RuleEngine, ThresholdRule};
use crate::messages::*;
use crate::panic_guard::guard;
use crate::storage::StorageHandle;
use crate::supervisor::{ChildHandle, Restartable};
use crate::telemetry::EngineStats;
use crate::types::{Alert, AlertState, SeriesKey};

/// A closure subscribed to alerts.
pub type AlertCallback = Arc<dyn Fn(&Alert) + Send + Sync>;

/// Notifications queued per closure subscriber before further ones are dropped (counted).
pub const CALLBACK_QUEUE: usize = 1024;

/// Evaluates rules and delivers alerts.
pub struct AlertDispatcher {
    restart: Restartable,
    storage: StorageHandle,
    initial_rules: Vec<ThresholdRule>,
    engine: Arc<EngineStats>,
    rules: RuleEngine,
    recipients: Vec<Recipient<Alert>>,
    callbacks: Vec<Sender<Alert>>,
    firing: HashMap<(String, SeriesKey), Alert>,
}

impl AlertDispatcher {
    /// A dispatcher with these rules.
    pub fn new(
        child: Arc<ChildHandle>,
        storage: StorageHandle,
        rules: Vec<ThresholdRule>,
        engine: Arc<EngineStats>,
    ) -> Self {
        AlertDispatcher {
            restart: Restartable::new(child),
            storage,
            rules: RuleEngine::new(rules.clone()),
            initial_rules: rules,
            engine,
            recipients: Vec::new(),
            callbacks: Vec::new(),
            firing: HashMap::new(),
        }
    }

    fn deliver(&mut self, alert: Alert) {
        let key = (alert.rule.clone(), alert.series.clone());
        match alert.state {
            AlertState::Firing => {
                // Already announced (rule states are rebuilt after a restart): not again.
                if self.firing.contains_key(&key) {
                    return;
                }
                self.firing.insert(key, alert.clone());
            }
            AlertState::Resolved => {
                self.firing.remove(&key);
            }
        }
        self.engine.alerts_sent.fetch_add(1, Ordering::Relaxed);
        tracing::info!(rule = %alert.rule, series = %alert.series, state = ?alert.state, severity = %alert.severity, "{}", alert.message);
        let failures = &self.engine.alert_delivery_failures;
        self.recipients.retain(|r| match r.try_send(alert.clone()) {
            Ok(()) => true,
            Err(SendError::Full(_)) => {
                failures.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(SendError::Closed(_)) => {
                failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("Alert subscriber is gone; unsubscribing it.");
                false
            }
        });
        self.callbacks
            .retain(|tx| match tx.try_send(alert.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    false
                }
            });
        self.storage.record_alert(alert);
    }
}

use actix::dev::SendError;

impl Actor for AlertDispatcher {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.restart.on_started(ctx);
    }
}

impl actix::Supervised for AlertDispatcher {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Rule states may be half-updated: rebuild them from the rules. Subscribers are
        // kept (they are the spec's outside connections, not per-message state), and so is
        // the list of firing alerts so nothing is announced twice.
        let rules = self.rules.rules().to_vec();
        self.rules = RuleEngine::new(if rules.is_empty() {
            self.initial_rules.clone()
        } else {
            rules
        });
    }
}

impl Handler<EvaluateRules> for AlertDispatcher {
    type Result = ();
    fn handle(&mut self, msg: EvaluateRules, ctx: &mut Self::Context) {
        self.restart.child.stats.dequeued();
        let result = guard(|| {
            for alert in self.rules.evaluate(&msg.batch) {
                self.deliver(alert);
            }
        });
        if let Err(reason) = result {
            self.restart.fail(ctx, &reason);
        }
    }
}

impl Handler<RaiseAlert> for AlertDispatcher {
    type Result = ();
    fn handle(&mut self, msg: RaiseAlert, ctx: &mut Self::Context) {
        self.restart.child.stats.dequeued();
        if let Err(reason) = guard(|| self.deliver(msg.alert)) {
            self.restart.fail(ctx, &reason);
        }
    }
}

impl Handler<AddRule> for AlertDispatcher {
    type Result = ();
    fn handle(&mut self, msg: AddRule, _ctx: &mut Self::Context) {
        self.rules.add(msg.rule);
    }
}

impl Handler<SubscribeAlerts> for AlertDispatcher {
    type Result = ();
    fn handle(&mut self, msg: SubscribeAlerts, _ctx: &mut Self::Context) {
        self.recipients.push(msg.recipient);
    }
}

impl Handler<SubscribeCallback> for AlertDispatcher {
    type Result = ();
    fn handle(&mut self, msg: SubscribeCallback, _ctx: &mut Self::Context) {
        let (tx, rx) = crossbeam_channel::bounded::<Alert>(CALLBACK_QUEUE);
        let callback = msg.callback;
        let spawned = std::thread::Builder::new()
            .name("perfvisor-alert-callback".into())
            .spawn(move || {
                for alert in rx {
                    if let Err(reason) = guard(|| callback(&alert)) {
                        tracing::error!(reason, "Alert callback panicked; it stays subscribed.");
                    }
                }
            });
        match spawned {
            Ok(_) => self.callbacks.push(tx),
            Err(e) => {
                self.engine
                    .alert_delivery_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "Cannot start a thread for an alert callback; it is not subscribed.");
            }
        }
    }
}

impl Handler<GetFiring> for AlertDispatcher {
    type Result = MessageResult<GetFiring>;
    fn handle(&mut self, _: GetFiring, _ctx: &mut Self::Context) -> Self::Result {
        let mut v: Vec<Alert> = self.firing.values().cloned().collect();
        v.sort_by(|a, b| a.since_ms.cmp(&b.since_ms).then(a.rule.cmp(&b.rule)));
        MessageResult(v)
    }
}

impl Handler<Flush> for AlertDispatcher {
    type Result = ();
    fn handle(&mut self, _: Flush, _ctx: &mut Self::Context) {}
}

impl Handler<InjectPanic> for AlertDispatcher {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, ctx: &mut Self::Context) {
        if let Err(reason) = guard(|| panic!("injected panic in alert dispatcher")) {
            self.restart.fail(ctx, &reason);
        }
    }
}
