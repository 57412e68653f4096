//! The alert dispatcher actor: runs the rule engine on samples, lifecycle events and the
//! analyzer's candidates; applies silences; delivers notifications to host actors, closures
//! and sinks; carries out actions; and keeps the engine's state in the database so a restart
//! neither forgets a firing alert nor re-sends it.
//!
//! Delivery never waits: actors get a non-blocking `try_send`, closures run on threads of
//! their own behind bounded queues, and each sink has its own thread, queue, retries and
//! timeout (`sinks`). Notifications produced by one evaluation are grouped by rule for the
//! sinks (one payload per group); actors and closures get each alert at once.
//!
//! Every alert goes through the one rule engine. Candidates from the analyzer
//! (`bottleneck.<kind>`, `anomaly.<metric>`) and from the supervisor
//! (`perfvisor.storage_failing`, `perfvisor.degraded`) feed its signal rules, so they get
//! `for`, cooldown, repeat, flap damping, silences and persistence like any rule, are in the
//! firing set (`GET /api/v1/alerts`, the minute re-send to Alertmanager), and a candidate no
//! enabled rule follows is not delivered at all. By default no rule follows anomalies (the
//! built-in `app_anomaly` ships disabled): they inform reports and the per-source anomaly
//! rate, they do not page.
//!
//! A reload replaces the config's rules, sinks and silences ([`ReplaceRules`]): states of
//! unchanged rules are kept, a removed or changed rule's firing alert is resolved.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::dev::SendError;
use actix::prelude::*;
use crossbeam_channel::{Sender, TrySendError};

use super::action::{ActionLimits, ActionRunner};
use super::rate::AnomalyRates;
use super::rules::{
    effective_rules, group, listed_rules, perfvisor_rules, GroupBy, Notification, PersistedState,
    RuleEngine, RulesChange, ThresholdRule,
};
use super::silence::{Silence, Silences};
use super::sinks::Sink;
use crate::messages::*;
use crate::panic_guard::guard;
use crate::storage::{StorageHandle, StorageReader};
use crate::supervisor::{supervised_handlers, tick, ChildHandle, Restartable};
use crate::telemetry::EngineStats;
use crate::types::{Alert, AlertState, SharedClock, TimestampMs};

/// A closure subscribed to alerts.
pub type AlertCallback = Arc<dyn Fn(&Alert) + Send + Sync>;

/// Notifications queued per closure subscriber before further ones are dropped (counted).
pub const CALLBACK_QUEUE: usize = 1024;

/// How often timers (absence, `clear_for`, repeats, flap windows, silences) are checked.
pub const TICK: Duration = Duration::from_millis(500);

/// How often the engine's state is written back even without notifications.
const PERSIST_EVERY_MS: i64 = 5_000;

/// How often firing alerts are re-sent to Alertmanager sinks.
const ALERTMANAGER_RESEND_MS: i64 = 60_000;

/// A state that notified within this long is kept (so a restart keeps its cooldown).
const COOLDOWN_MEMORY_MS: i64 = 24 * 3_600_000;

/// `created_by` of silences that come from the config file (replaced on reload).
pub const CONFIG_SILENCE: &str = "config";

/// Key prefixes in the `alert_state` table.
const STATE_PREFIX: &str = "rule:";
const SILENCE_PREFIX: &str = "silence:";

/// What the dispatcher is built from (its spec: a restart rebuilds everything else).
#[derive(Clone)]
pub struct DispatcherConfig {
    /// Rules given by the host.
    pub rules: Vec<ThresholdRule>,
    /// Rules from the config file (replaced whole by a reload).
    pub config_rules: Vec<ThresholdRule>,
    /// Ship the default rules (and a signal rule per bottleneck kind).
    pub default_rules: bool,
    /// Sinks, by name.
    pub sinks: Vec<Arc<Sink>>,
    /// Who restarts daemons for restart actions.
    pub control: super::action::ControlSlot,
    /// Rate limits of actions.
    pub action_limits: ActionLimits,
    /// Source of time.
    pub clock: SharedClock,
}

impl std::fmt::Debug for DispatcherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherConfig")
            .field("rules", &self.rules.len())
            .field("config_rules", &self.config_rules.len())
            .field("default_rules", &self.default_rules)
            .field("sinks", &self.sinks.len())
            .field("control", &self.control.is_set())
            .field("action_limits", &self.action_limits)
            .finish()
    }
}

/// Evaluates rules and delivers alerts.
pub struct AlertDispatcher {
    restart: Restartable,
    storage: StorageHandle,
    config: DispatcherConfig,
    engine_stats: Arc<EngineStats>,
    rules: RuleEngine,
    silences: Silences,
    actions: Option<ActionRunner>,
    recipients: Vec<Recipient<Alert>>,
    callbacks: Vec<Sender<Alert>>,
    /// Tokio-friendly alert streams.
    streams: Vec<super::StreamSender>,
    /// What was last written to `alert_state`, by key, to write only changes.
    persisted: HashMap<String, String>,
    last_persist_ms: TimestampMs,
    last_resend_ms: TimestampMs,
    restored: bool,
    /// Recent anomaly candidates per source (the anomaly rate in `/metrics`).
    anomalies: AnomalyRates,
}

/// What a [`ReplaceRules`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertingChange {
    /// Rules added, removed and changed (built-ins a config rule replaces or switches off
    /// count as changed).
    pub rules: RulesChange,
    /// The sinks now, by name, when they were rebuilt.
    pub sinks: Option<Vec<String>>,
    /// The config's silences now, by id, when they were replaced.
    pub silences: Option<Vec<String>>,
}

impl AlertingChange {
    /// The change in words: `rules: removed api_cpu; changed disk_low`, `sinks rebuilt:
    /// hook`, `silences replaced: maint`; empty when nothing changed.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let r = &self.rules;
        let mut rules = Vec::new();
        for (word, names) in [
            ("added", &r.added),
            ("removed", &r.removed),
            ("changed", &r.changed),
        ] {
            if !names.is_empty() {
                rules.push(format!("{word} {}", names.join(", ")));
            }
        }
        if !rules.is_empty() {
            parts.push(format!("rules: {}", rules.join("; ")));
        }
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        if let Some(s) = &self.sinks {
            parts.push(format!("sinks rebuilt: {}", list(s)));
        }
        if let Some(s) = &self.silences {
            parts.push(format!("config silences replaced: {}", list(s)));
        }
        parts.join("; ")
    }
}

impl AlertDispatcher {
    /// A dispatcher with this config, writing to `storage`.
    pub fn new(
        child: Arc<ChildHandle>,
        storage: StorageHandle,
        config: DispatcherConfig,
        engine_stats: Arc<EngineStats>,
    ) -> Self {
        let mut d = AlertDispatcher {
            restart: Restartable::new(child),
            storage,
            rules: RuleEngine::new(Vec::new()),
            config,
            engine_stats,
            silences: Silences::default(),
            actions: None,
            recipients: Vec::new(),
            callbacks: Vec::new(),
            streams: Vec::new(),
            persisted: HashMap::new(),
            last_persist_ms: 0,
            last_resend_ms: 0,
            restored: false,
            anomalies: AnomalyRates::default(),
        };
        d.rebuild();
        d
    }

    /// Rebuilds every piece of state from the spec and the database.
    fn rebuild(&mut self) {
        self.rules = RuleEngine::new(self.effective());
        self.silences = Silences::default();
        self.persisted.clear();
        self.restored = false;
        if self.actions.is_none() {
            match ActionRunner::spawn(
                self.config.control.clone(),
                self.config.action_limits,
                self.storage.clone(),
            ) {
                Ok(runner) => self.actions = Some(runner),
                Err(e) => {
                    tracing::error!(error = %e, "Cannot start the action thread; actions are refused.")
                }
            }
        }
    }

    fn now(&self) -> TimestampMs {
        self.config.clock.now_ms()
    }

    /// The rule set from the spec: host rules, then config rules, over the built-ins.
    fn effective(&self) -> Vec<ThresholdRule> {
        let user: Vec<ThresholdRule> = self
            .config
            .rules
            .iter()
            .chain(&self.config.config_rules)
            .cloned()
            .collect();
        effective_rules(&user, self.config.default_rules)
    }

    /// Tells `status()` which of perfvisor's own rules fire (perfvisor is degraded while one
    /// does). A user's rule on a perfvisor series is the user's business, not health.
    fn publish_own(&self) {
        let names: Vec<String> = perfvisor_rules().into_iter().map(|r| r.name).collect();
        let own: Vec<String> = self
            .rules
            .firing()
            .into_iter()
            .filter(|a| names.contains(&a.rule))
            .map(|a| a.message)
            .collect();
        if let Ok(mut slot) = self.engine_stats.own_alerts.lock() {
            if *slot != own {
                *slot = own;
            }
        }
    }

    /// Counts an anomaly candidate for the per-source rate.
    fn count_anomaly(&mut self, alert: &Alert, now: TimestampMs) {
        if alert.rule.starts_with("anomaly.") && alert.state == AlertState::Firing {
            self.anomalies.record(&alert.series.source, now);
        }
    }

    /// Swaps the config's rules (and sinks, silences); see [`ReplaceRules`].
    fn replace(&mut self, msg: ReplaceRules) -> AlertingChange {
        self.restore();
        let now = self.now();
        self.config.config_rules = msg.rules;
        let (out, rules) = self.rules.replace(self.effective(), now);
        let mut change = AlertingChange {
            rules,
            ..AlertingChange::default()
        };
        if let Some(sinks) = msg.sinks {
            change.sinks = Some(sinks.iter().map(|s| s.name().to_string()).collect());
            self.config.sinks = sinks;
        }
        if let Some(silences) = msg.silences {
            let old: Vec<String> = self
                .silences
                .all()
                .iter()
                .filter(|s| s.created_by == CONFIG_SILENCE)
                .map(|s| s.id.clone())
                .collect();
            for id in old {
                self.silences.remove(&id);
            }
            let mut ids = Vec::new();
            for silence in silences {
                let id = silence.id.clone();
                match self.silences.add(silence) {
                    Ok(()) => ids.push(id),
                    Err(e) => tracing::warn!(silence = %id, error = %e, "Config silence refused."),
                }
            }
            change.silences = Some(ids);
        }
        // The resolutions go out after the swap, to the new sinks.
        self.handle_notifications(out);
        self.persist(now);
        self.publish_own();
        change
    }

    /// Loads the engine states and silences the database holds (once per start).
    fn restore(&mut self) {
        if self.restored {
            return;
        }
        self.restored = true;
        let states = match StorageReader::open(self.storage.path()).and_then(|r| r.alert_states()) {
            Ok(states) => states,
            Err(e) => {
                tracing::warn!(error = %e, "Alert state not restored; alerts start afresh.");
                return;
            }
        };
        let now = self.now();
        let mut engine_states = Vec::new();
        for (key, json) in states {
            if key.starts_with(STATE_PREFIX) {
                match serde_json::from_str::<PersistedState>(&json) {
                    Ok(state) => engine_states.push(state),
                    Err(e) => tracing::warn!(key, error = %e, "Unreadable alert state skipped."),
                }
            } else if key.starts_with(SILENCE_PREFIX) {
                match serde_json::from_str::<Silence>(&json) {
                    Ok(silence) if silence.ends_ms > now => {
                        if let Err(e) = self.silences.add(silence) {
                            tracing::warn!(key, error = %e, "Stored silence refused.");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(key, error = %e, "Unreadable silence skipped."),
                }
            }
            self.persisted.insert(key, json);
        }
        // A firing alert whose rule was removed or switched off while perfvisor was down is
        // resolved now, as a reload would have done; the engine drops its state.
        let orphans: Vec<Notification> = engine_states
            .iter()
            .filter(|p| p.announced)
            .filter_map(|p| {
                let why = match self.rules.rules().iter().find(|r| r.name == p.rule) {
                    None => "the rule was removed",
                    Some(r) if !r.enabled => "the rule was switched off",
                    Some(_) => return None,
                };
                let mut alert = p.last_alert.clone()?;
                if alert.state != AlertState::Firing {
                    return None;
                }
                alert.state = AlertState::Resolved;
                alert.at_ms = now;
                alert.message = format!("{} resolved: {why}", alert.rule);
                Some(Notification {
                    alert,
                    repeat: false,
                    flapping: false,
                    action: None,
                })
            })
            .collect();
        let n = engine_states.len();
        self.rules.restore(engine_states, now);
        self.handle_notifications(orphans);
        self.publish_own();
        if n > 0 {
            tracing::info!(
                states = n,
                firing = self.rules.firing().len(),
                "Alert state restored."
            );
        }
    }

    /// Writes the engine states worth keeping (announced, flapping, or within a cooldown or
    /// restart window) and the silences, when they changed in more than their latest value
    /// since the last write; deletes the ones that are gone.
    fn persist(&mut self, now: TimestampMs) {
        // key → (fingerprint, full JSON)
        let mut current: BTreeMap<String, (String, String)> = BTreeMap::new();
        for state in self.rules.snapshot() {
            let worth = state.announced
                || state.flapping
                || !state.restarts.is_empty()
                || state
                    .last_notified
                    .is_some_and(|t| now - t < COOLDOWN_MEMORY_MS);
            if !worth {
                continue;
            }
            let key = format!(
                "{STATE_PREFIX}{}|{}|{}|{}",
                state.rule,
                state.series.source.as_text(),
                state.series.metric.as_str(),
                state.series.labels.to_text()
            );
            let (Ok(json), Ok(mut value)) =
                (serde_json::to_string(&state), serde_json::to_value(&state))
            else {
                tracing::warn!(rule = %state.rule, "Alert state not encodable; not kept.");
                continue;
            };
            if let Some(fields) = value.as_object_mut() {
                for volatile in ["value", "level", "last_seen"] {
                    fields.remove(volatile);
                }
            }
            current.insert(key, (value.to_string(), json));
        }
        for silence in self.silences.all() {
            if let Ok(json) = serde_json::to_string(silence) {
                current.insert(
                    format!("{SILENCE_PREFIX}{}", silence.id),
                    (json.clone(), json),
                );
            }
        }
        let gone: Vec<String> = self
            .persisted
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.persisted.remove(&key);
            self.storage.save_alert_state(key, None, now);
        }
        for (key, (fingerprint, json)) in current {
            if self.persisted.get(&key) != Some(&fingerprint) {
                self.storage.save_alert_state(key.clone(), Some(json), now);
                self.persisted.insert(key, fingerprint);
            }
        }
        self.last_persist_ms = now;
    }

    /// Delivers what the engine produced, persists the change, runs actions.
    fn handle_notifications(&mut self, notifications: Vec<Notification>) {
        if notifications.is_empty() {
            return;
        }
        let now = self.now();
        let mut deliverable = Vec::with_capacity(notifications.len());
        for n in notifications {
            if let Some(id) = self.silences.silenced_by(&n.alert, now) {
                let mut alert = n.alert.clone();
                alert.message = format!("[silenced by {id}] {}", alert.message);
                self.storage.record_alert(alert);
                continue;
            }
            if n.alert.state == AlertState::Firing && !n.repeat {
                if let (Some(action), Some(runner)) = (&n.action, self.actions.as_mut()) {
                    runner.request(action, &n.alert, now, &self.storage);
                }
            }
            deliverable.push(n);
        }
        for n in &deliverable {
            self.deliver_now(&n.alert);
        }
        if !self.config.sinks.is_empty() {
            for batch in group(deliverable, GroupBy::Rule) {
                let alerts: Arc<[Alert]> = batch.into_iter().map(|n| n.alert).collect();
                for sink in &self.config.sinks {
                    if !sink.send(Arc::clone(&alerts)) {
                        self.engine_stats
                            .alert_delivery_failures
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.persist(now);
        self.publish_own();
    }

    /// Hands one alert to actors and closures, and to history.
    fn deliver_now(&mut self, alert: &Alert) {
        self.engine_stats
            .alerts_sent
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(rule = %alert.rule, series = %alert.series, state = ?alert.state, severity = %alert.severity, "{}", alert.message);
        let failures = &self.engine_stats.alert_delivery_failures;
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
        self.streams.retain(|s| match s.offer(alert) {
            super::Offer::Sent => true,
            super::Offer::Lagged => {
                failures.fetch_add(1, Ordering::Relaxed);
                true
            }
            super::Offer::Closed => false,
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
        self.storage.record_alert(alert.clone());
    }

    /// Alertmanager resolves an alert by itself when it is not re-sent within its
    /// `resolve_timeout` (5 minutes by default); like Prometheus, re-send what fires.
    fn resend_firing_to_alertmanager(&self) {
        let firing: Arc<[Alert]> = self.rules.firing().into();
        if firing.is_empty() {
            return;
        }
        for sink in &self.config.sinks {
            if sink.status().kind == "alertmanager" {
                sink.send(Arc::clone(&firing));
            }
        }
    }

    /// Candidates (the analyzer's and perfvisor's own): all through the signal rules.
    fn raise(&mut self, candidate: Alert) {
        self.restore();
        let now = self.now();
        self.count_anomaly(&candidate, now);
        let out = self.rules.signal(&candidate, now);
        self.handle_notifications(out);
    }

    fn tick(&mut self) {
        self.restore();
        let now = self.now();
        if now - self.last_resend_ms >= ALERTMANAGER_RESEND_MS {
            self.last_resend_ms = now;
            self.resend_firing_to_alertmanager();
        }
        let expired = self.silences.expire(now);
        let out = self.rules.tick(now);
        if !out.is_empty() {
            self.handle_notifications(out);
        } else if !expired.is_empty() || now - self.last_persist_ms >= PERSIST_EVERY_MS {
            self.persist(now);
        }
    }
}

impl Actor for AlertDispatcher {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.restart.on_started(ctx);
        ctx.run_interval(TICK, |act, ctx| tick(act, ctx, |act, _| act.tick()));
    }
}

impl actix::Supervised for AlertDispatcher {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Rules, silences and states come back from the spec and the database; subscribers
        // (part of the dispatcher's registry, like a supervisor's children) are kept.
        self.rebuild();
    }
}

supervised_handlers! {
    AlertDispatcher.restart;

    EvaluateRules[counted](act, msg, _ctx) {
        act.restore();
        let out = act.rules.evaluate(&msg.batch, msg.now_ms);
        act.handle_notifications(out);
    }

    RaiseAlert[counted](act, msg, _ctx) {
        act.raise(msg.alert)
    }

    DaemonLifecycle[counted](act, msg, _ctx) {
        act.restore();
        let now = act.now();
        let out = act.rules.lifecycle(&msg.event, now);
        act.handle_notifications(out);
    }

    AddRule(act, msg, _ctx) {
        act.config.rules.retain(|r| r.name != msg.rule.name);
        act.config.rules.push(msg.rule.clone());
        act.rules.add(msg.rule);
    }

    ReplaceRules[counted](act, msg, _ctx) -> reply {
        act.replace(msg)
    }

    GetRules(act, _msg, _ctx) -> reply {
        listed_rules(
            &act.config.rules,
            &act.config.config_rules,
            act.config.default_rules,
        )
    }

    GetAnomalyRates(act, _msg, _ctx) -> reply {
        let now = act.now();
        act.anomalies.counts(now)
    }

    AddSilence(act, msg, _ctx) -> reply
        let id = msg.silence.id.clone();
        else |_act, _reason| { Err(super::silence::SilenceError::Unavailable { id }) }
    {
        act.restore();
        act.silences.add(msg.silence)?;
        let now = act.now();
        act.persist(now);
        Ok(())
    }

    RemoveSilence(act, msg, _ctx) -> reply {
        act.restore();
        let removed = act.silences.remove(&msg.id);
        let now = act.now();
        act.persist(now);
        removed
    }

    GetSilences(act, _msg, _ctx) -> reply {
        act.restore();
        act.silences.all().to_vec()
    }

    SubscribeAlerts(act, msg, _ctx) {
        act.recipients.push(msg.recipient)
    }

    SubscribeStream(act, msg, _ctx) {
        act.streams.push(msg.sender)
    }

    SubscribeCallback(act, msg, _ctx) {
        act.subscribe_callback(msg.callback)
    }

    GetFiring(act, _msg, _ctx) -> reply {
        act.restore();
        let mut v: Vec<Alert> = act.rules.firing();
        v.sort_by(|a, b| a.since_ms.cmp(&b.since_ms).then(a.rule.cmp(&b.rule)));
        v
    }

    Flush(act, _msg, _ctx) {
        let now = act.now();
        act.persist(now);
    }

    InjectPanic(_act, _msg, _ctx) {
        panic!("injected panic in alert dispatcher")
    }
}

impl AlertDispatcher {
    /// Gives a closure subscriber a thread of its own behind a bounded queue; a panicking
    /// callback stays subscribed.
    fn subscribe_callback(&mut self, callback: super::AlertCallback) {
        let (tx, rx) = crossbeam_channel::bounded::<Alert>(CALLBACK_QUEUE);
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
                self.engine_stats
                    .alert_delivery_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "Cannot start a thread for an alert callback; it is not subscribed.");
            }
        }
    }
}
