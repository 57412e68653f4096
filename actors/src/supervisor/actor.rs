//! The root actor: it hears which daemons run (and stop, restart, exec), keeps one watcher
//! per daemon (applying [`super::diff_watchers`]), records lifecycle events, answers
//! `status()`, watches perfvisor's own health, and stops the tree in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::alarm::StorageAlarm;
use super::{diff_watchers, supervised_handlers, tick, ChildHandle, EngineConfig, Restartable};
use crate::alerts::{AlertDispatcher, Sink, SinkSettings};
use crate::analyzer::Analyzer;
use crate::collector::{intake, Collector};
use crate::messages::*;
use crate::recorder::Recorder;
use crate::storage::{StorageHandle, StorageStats};
use crate::telemetry::*;
use crate::types::*;
use crate::watcher::{Watcher, WatcherLinks};

pub(super) struct WatcherEntry {
    spec: DaemonSpec,
    addr: Addr<Watcher>,
    child: Arc<ChildHandle>,
    probes: Arc<AtomicU64>,
    /// What the watcher shows: figure sources and top children.
    view: crate::watcher::view::SharedView,
}

/// The root actor. See the module documentation.
pub struct Supervisor {
    pub(super) config: EngineConfig,
    pub(super) restart: Restartable,
    pub(super) started_at_ms: TimestampMs,
    pub(super) engine: Arc<EngineStats>,
    pub(super) recorder_stats: Arc<RecorderStats>,
    pub(super) recorder: Recorder,
    pub(super) storage: StorageHandle,
    pub(super) storage_stats: Arc<StorageStats>,
    pub(super) storage_child: Arc<ChildHandle>,
    pub(super) collector: Addr<Collector>,
    pub(super) collector_child: Arc<ChildHandle>,
    pub(super) analyzer: Addr<Analyzer>,
    pub(super) analyzer_child: Arc<ChildHandle>,
    pub(super) dispatcher: Addr<AlertDispatcher>,
    pub(super) dispatcher_child: Arc<ChildHandle>,
    pub(super) intake: Arc<intake::IntakeHandle>,
    pub(super) desired: BTreeMap<DaemonId, DaemonSpec>,
    pub(super) watchers: HashMap<DaemonId, WatcherEntry>,
    pub(super) shutting_down: bool,
    /// When the storage candidate is raised and resolved.
    pub(super) storage_alarm: StorageAlarm,
    /// Daemons the host is restarting on purpose, until when.
    pub(super) planned_restarts: HashMap<DaemonId, TimestampMs>,
    /// The alert sinks (the dispatcher delivers to them; status reads them).
    pub(super) sinks: Vec<Arc<Sink>>,
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.restart.on_started(ctx);
        // A degraded alert restored from the database belongs to an earlier run: only a
        // restart of perfvisor clears the degraded state, and this is one.
        if !self.engine.degraded.load(Ordering::Relaxed) {
            let now = self.now();
            let mut alert = self.degraded_candidate(now, String::new(), 0.0);
            alert.state = AlertState::Resolved;
            alert.message = "perfvisor was restarted; no actor is over its restart budget".into();
            self.dispatcher_child.stats.enqueued();
            self.dispatcher.do_send(RaiseAlert { alert });
        }
        ctx.run_interval(self.config.host_interval, |act, ctx| {
            if !act.shutting_down {
                tick(act, ctx, |act, _| act.watch_self());
            }
        });
    }
}

impl actix::Supervised for Supervisor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The supervisor's state *is* the tree (child addresses, the watcher registry);
        // nothing in it is per-message, so a restart keeps it as it is.
        tracing::warn!("Supervisor restarting.");
    }
}

impl Supervisor {
    fn now(&self) -> TimestampMs {
        self.config.clock.now_ms()
    }

    /// Records perfvisor's own metrics and raises (or resolves) the internal alert about
    /// failing storage writes.
    fn watch_self(&mut self) {
        let now = self.now();
        let storage =
            crate::selfmon::storage_status(&self.storage_stats, self.storage.backlog() as u64);
        let restarts = self.total_restarts();
        let mut batch = crate::selfmon::self_metrics(
            now,
            &storage,
            &self.storage_stats,
            &self.recorder_stats,
            restarts,
        );
        if let Some((open, limit)) = crate::selfmon::own_descriptors() {
            batch
                .samples
                .extend(crate::selfmon::descriptor_samples(now, open, limit));
        }
        self.collector_child.stats.enqueued();
        self.collector.do_send(SamplesCollected { batch });
        if let Some(alert) = self.storage_alarm.check(now, &storage) {
            self.dispatcher_child.stats.enqueued();
            self.dispatcher.do_send(RaiseAlert { alert });
        }
    }

    /// True while the host restarts or redeploys `daemon` on purpose.
    fn planned(&self, daemon: &DaemonId) -> bool {
        self.planned_restarts
            .get(daemon)
            .is_some_and(|&until| self.now() < until)
    }

    /// Stores a lifecycle event and tells the analyzer and the alert dispatcher. A stop, and
    /// an exit or restart within a planned restart, is marked intended: the analyzer starts
    /// the new process's trends afresh but counts it against nothing, and no rule sees a
    /// crash in it.
    fn record_event(&self, daemon: &DaemonId, pid: u32, kind: LifecycleKind, detail: String) {
        let intended = match kind {
            LifecycleKind::Stopped => true,
            LifecycleKind::Restarted | LifecycleKind::Exited => self.planned(daemon),
            LifecycleKind::Started | LifecycleKind::Exec => false,
        };
        let event = LifecycleEvent {
            daemon: daemon.clone(),
            pid,
            ts_ms: self.now(),
            kind,
            detail: match (intended, kind) {
                (false, _) => detail,
                (true, LifecycleKind::Stopped) => format!("{INTENDED_PREFIX}{detail}"),
                (true, _) => format!("{INTENDED_PREFIX}planned restart; {detail}"),
            },
            intended,
        };
        self.analyzer_child.stats.enqueued();
        self.analyzer.do_send(DaemonLifecycle {
            event: event.clone(),
        });
        self.dispatcher_child.stats.enqueued();
        self.dispatcher.do_send(DaemonLifecycle {
            event: event.clone(),
        });
        self.storage.record_event(event);
    }

    fn running_specs(&self) -> BTreeMap<DaemonId, DaemonSpec> {
        self.watchers
            .iter()
            .map(|(id, w)| (id.clone(), w.spec.clone()))
            .collect()
    }

    fn apply_diff(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let diff = diff_watchers(&self.desired, &self.running_specs());
        for id in diff
            .to_remove
            .iter()
            .chain(diff.to_change.iter().map(|s| &s.id))
        {
            if let Some(entry) = self.watchers.remove(id) {
                // Dropping the only address after Retire lets the watcher stop for good.
                entry.addr.do_send(Retire);
                tracing::debug!(daemon = %id, pid = entry.spec.pid, "Watcher retiring.");
            }
        }
        for spec in diff.to_add.into_iter().chain(diff.to_change) {
            self.spawn_watcher(ctx, spec);
        }
    }

    fn spawn_watcher(&mut self, ctx: &mut Context<Self>, spec: DaemonSpec) {
        let child = ChildHandle::new(
            format!("watcher:{}", spec.id),
            ActorKind::Watcher,
            self.config.watcher_policy.clone(),
            self.config.clock.clone(),
        );
        child.report_to(ctx.address().recipient());
        #[cfg(test)]
        child.arm_from(&self.config.faults);
        let probes = Arc::new(AtomicU64::new(0));
        // A watcher restarted by actix keeps the view (the spec's, not the actor's).
        let view = crate::watcher::view::SharedView::default();
        let links = WatcherLinks {
            samples: self.collector.clone().recipient(),
            samples_stats: self.collector_child.stats.clone(),
            retired: ctx.address().recipient(),
            execed: ctx.address().recipient(),
            clock: self.config.clock.clone(),
            interval: self.config.probe_interval,
            probes: probes.clone(),
            engine: self.engine.clone(),
            view: view.clone(),
        };
        let (s, c) = (spec.clone(), child.clone());
        let addr = actix::Supervisor::start(move |_| Watcher::new(s, c, links));
        tracing::debug!(daemon = %spec.id, pid = spec.pid, "Watcher spawned.");
        self.watchers.insert(
            spec.id.clone(),
            WatcherEntry {
                spec,
                addr,
                child,
                probes,
                view,
            },
        );
    }

    /// Restarts over all actors and watchers: what `status().total_restarts()` gives, without
    /// building (and sorting) a status entry per watcher every interval (at 1,000 daemons that
    /// was 2.5 % of perfvisor's CPU).
    fn total_restarts(&self) -> u64 {
        let actors = [
            &self.restart.child,
            &self.storage_child,
            &self.dispatcher_child,
            &self.analyzer_child,
            &self.collector_child,
        ];
        actors
            .iter()
            .map(|c| c.stats.restarts.load(Ordering::Relaxed))
            .chain(
                self.watchers
                    .values()
                    .map(|w| w.child.stats.restarts.load(Ordering::Relaxed)),
            )
            .sum()
    }

    fn status(&self) -> Status {
        let degraded = self.engine.degraded.load(Ordering::Relaxed);
        let mut actors = vec![self
            .restart
            .child
            .stats
            .snapshot(self.restart.child.name.clone(), ActorKind::Supervisor)];
        for child in [
            &self.storage_child,
            &self.dispatcher_child,
            &self.analyzer_child,
            &self.collector_child,
        ] {
            let mut s = child.stats.snapshot(child.name.clone(), child.kind);
            if child.kind == ActorKind::StorageWriter {
                s.backlog = self.storage.backlog() as u64;
            }
            actors.push(s);
        }
        let mut watchers: Vec<WatcherStatus> = self
            .watchers
            .values()
            .map(|w| WatcherStatus {
                daemon: w.spec.id.clone(),
                pid: w.spec.pid,
                restarts: w.child.stats.restarts.load(Ordering::Relaxed),
                probes: w.probes.load(Ordering::Relaxed),
                sources: w.view.lock().ok().and_then(|v| v.sources.clone()),
            })
            .collect();
        watchers.sort_by(|a, b| a.daemon.cmp(&b.daemon));
        let st = &self.storage_stats;
        // perfvisor's own firing alerts (storage failing, degraded) say why it is degraded.
        let mut health_reasons = self
            .engine
            .own_alerts
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        if degraded && health_reasons.is_empty() {
            health_reasons.push(
                "an actor failed more often than its restart budget allows (see actors)".into(),
            );
        }
        Status {
            health: if degraded || !health_reasons.is_empty() {
                Health::Degraded
            } else {
                Health::Healthy
            },
            health_reasons,
            started_at_ms: self.started_at_ms,
            actors,
            watchers,
            recorder: RecorderStatus {
                accepted: self.recorder_stats.drained.load(Ordering::Relaxed)
                    + self.recorder.backlog() as u64,
                dropped: self.recorder_stats.dropped.load(Ordering::Relaxed),
                backlog: self.recorder.backlog() as u64,
            },
            storage: crate::selfmon::storage_status(st, self.storage.backlog() as u64),
            samples_collected: self.engine.samples_collected.load(Ordering::Relaxed),
            alerts_sent: self.engine.alerts_sent.load(Ordering::Relaxed),
            alert_delivery_failures: self.engine.alert_delivery_failures.load(Ordering::Relaxed),
            alert_sinks: self.sinks.iter().map(|s| s.status()).collect(),
            remote_write: Vec::new(),
        }
    }

    fn on_actor_failed(&mut self, msg: ActorFailed) {
        if !msg.budget_exceeded {
            return;
        }
        let first = !self.engine.degraded.swap(true, Ordering::Relaxed);
        tracing::error!(actor = %msg.name, reason = %msg.reason, "Restart budget exceeded; perfvisor is degraded.");
        let now = self.now();
        let message = format!(
                "perfvisor's {} actor failed more than {} times within {:?} (latest: {}); perfvisor is degraded{}",
                msg.name,
                self.config.singleton_policy.max_restarts,
                self.config.singleton_policy.period,
                msg.reason,
                if first { "" } else { " (again)" }
            );
        let value = self.restart_count_of(&msg.name) as f64;
        let alert = self.degraded_candidate(now, message, value);
        self.dispatcher_child.stats.enqueued();
        self.dispatcher.do_send(RaiseAlert { alert });
    }

    /// The candidate for the `perfvisor_degraded` rule. One series for the whole of
    /// perfvisor (the failing actor is named in the message), so a restart can resolve it
    /// without knowing which actor it was.
    fn degraded_candidate(&self, now: TimestampMs, message: String, value: f64) -> Alert {
        Alert {
            rule: crate::alerts::DEGRADED_SIGNAL.into(),
            series: SeriesKey::new(
                Source::Perfvisor,
                crate::metric_names::PERFVISOR_ACTOR_RESTARTS,
                Labels::empty(),
            ),
            daemon: None,
            project: None,
            severity: Severity::Critical,
            state: AlertState::Firing,
            value,
            threshold: f64::from(self.config.singleton_policy.max_restarts),
            since_ms: now,
            at_ms: now,
            message,
            recommendations: vec![
                "Read perfvisor's log for the failing actor's panic messages and report them as a bug.".into(),
                "Restart perfvisor to clear the degraded state once the cause is fixed.".into(),
            ],
            auto_actionable: false,
        }
    }

    fn restart_count_of(&self, name: &str) -> u64 {
        let singles = [
            &self.restart.child,
            &self.storage_child,
            &self.dispatcher_child,
            &self.analyzer_child,
            &self.collector_child,
        ];
        singles
            .iter()
            .map(|c| (c.name.as_str(), &c.stats))
            .chain(
                self.watchers
                    .values()
                    .map(|w| (w.child.name.as_str(), &w.child.stats)),
            )
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.restarts.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

supervised_handlers! {
    Supervisor.restart;

    DaemonStarted(act, msg, ctx) {
        let spec = msg.spec;
        let previous = act.desired.insert(spec.id.clone(), spec.clone());
        let kind = match &previous {
            Some(old) if old.pid != spec.pid => LifecycleKind::Restarted,
            _ => LifecycleKind::Started,
        };
        if previous.as_ref() != Some(&spec) {
            let new_process = previous.as_ref().is_none_or(|old| old.pid != spec.pid);
            let detail = previous
                .map(|old| format!("previous pid {}", old.pid))
                .unwrap_or_default();
            act.record_event(&spec.id, spec.pid, kind, detail);
            if new_process {
                // The planned restart is done once its new process runs: a crash of
                // that process is a crash.
                act.planned_restarts.remove(&spec.id);
            }
        }
        act.collector.do_send(RegisterDaemon { spec });
        act.apply_diff(ctx);
    }

    DaemonRestarting(act, msg, _ctx) {
        let now = act.now();
        let until = now.saturating_add(msg.expected.as_millis() as i64);
        act.planned_restarts.retain(|_, &mut t| t > now);
        act.planned_restarts.insert(msg.id, until);
    }

    DaemonStopped(act, msg, ctx) {
        if let Some(spec) = act.desired.remove(&msg.id) {
            act.record_event(
                &msg.id,
                spec.pid,
                LifecycleKind::Stopped,
                "stopped by the host".into(),
            );
        }
        act.apply_diff(ctx);
    }

    WatcherRetired(act, msg, ctx) {
        // Only if the host has not announced a new pid for this id in the meantime.
        if act.desired.get(&msg.id).is_some_and(|s| s.pid == msg.pid) {
            act.desired.remove(&msg.id);
            act.record_event(&msg.id, msg.pid, LifecycleKind::Exited, msg.reason);
        }
        act.apply_diff(ctx);
    }

    DaemonExeced(act, msg, _ctx) {
        // Only for the process the host announced: an exec is no death.
        if act.desired.get(&msg.id).is_some_and(|s| s.pid == msg.pid) {
            let from = msg.from.map_or_else(
                || "an unknown program".to_string(),
                |p| p.display().to_string(),
            );
            act.record_event(
                &msg.id,
                msg.pid,
                LifecycleKind::Exec,
                format!("exec: {from} → {}", msg.to.display()),
            );
        }
    }

    GetTopChildren(act, msg, _ctx) -> reply {
        act.watchers
            .get(&msg.daemon)
            .and_then(|w| w.view.lock().ok().and_then(|v| v.children.clone()))
    }

    ActorFailed(act, msg, _ctx) {
        act.on_actor_failed(msg)
    }

    /// Status must answer even if building it panicked once: a minimal one says why.
    GetStatus(act, _msg, _ctx) -> reply
        else |act, reason| { act.minimal_status(&reason) }
    {
        act.status()
    }

    /// Every new sink starts before any old one is let go: a refused sink refuses the whole
    /// reload and the running sinks stay as they are.
    ReplaceAlerting(act, msg, _ctx)
        -> response(ResponseFuture<Result<crate::alerts::AlertingChange, String>>)
        else |_act, reason| { Box::pin(async move { Err(format!("the reload failed: {reason}")) }) }
    {
        act.replace_alerting(msg)
    }

    InjectPanic(_act, _msg, _ctx) {
        panic!("injected panic in supervisor")
    }

    InjectPanicInto(act, msg, ctx) -> reply {
        act.inject_panic_into(msg.target, ctx)
    }

    Shutdown(act, _msg, _ctx) -> response(ResponseActFuture<Supervisor, ()>)
        else |_act, _reason| { Box::pin(actix::fut::ready(())) }
    {
        act.shutdown()
    }
}

impl Supervisor {
    /// The status to answer when building the real one panicked.
    fn minimal_status(&self, reason: &str) -> Status {
        Status {
            health: Health::Degraded,
            health_reasons: vec![format!("building the status failed: {reason}")],
            started_at_ms: self.started_at_ms,
            actors: Vec::new(),
            watchers: Vec::new(),
            recorder: RecorderStatus {
                accepted: 0,
                dropped: 0,
                backlog: 0,
            },
            storage: StorageStatus::default(),
            samples_collected: 0,
            alerts_sent: 0,
            alert_delivery_failures: 0,
            alert_sinks: Vec::new(),
            remote_write: Vec::new(),
        }
    }

    /// Starts the new sinks of a reload, then hands rules, sinks and silences to the
    /// dispatcher.
    fn replace_alerting(
        &mut self,
        msg: ReplaceAlerting,
    ) -> ResponseFuture<Result<crate::alerts::AlertingChange, String>> {
        let sinks = match msg.sinks {
            None => None,
            Some(configs) => {
                let mut sinks = Vec::with_capacity(configs.len());
                for (name, config) in configs {
                    match Sink::spawn_each(name.clone(), config, SinkSettings::default()) {
                        Ok(started) => sinks.extend(started.into_iter().map(Arc::new)),
                        Err(e) => return Box::pin(async move { Err(format!("sink {name}: {e}")) }),
                    }
                }
                self.sinks = sinks.clone();
                Some(sinks)
            }
        };
        self.dispatcher_child.stats.enqueued();
        let answer = self.dispatcher.send(ReplaceRules {
            rules: msg.rules,
            sinks,
            silences: msg.silences,
        });
        Box::pin(async move {
            answer
                .await
                .map_err(|e| format!("the alert dispatcher did not answer: {e}"))
        })
    }

    /// Chaos mode: makes the target panic in its next handler. False when there is no
    /// such watcher.
    fn inject_panic_into(&mut self, target: PanicTarget, ctx: &mut Context<Self>) -> bool {
        match target {
            PanicTarget::Kind(ActorKind::Supervisor) => {
                ctx.address().do_send(InjectPanic);
                true
            }
            PanicTarget::Kind(ActorKind::Collector) => {
                self.collector.do_send(InjectPanic);
                true
            }
            PanicTarget::Kind(ActorKind::Analyzer) => {
                self.analyzer.do_send(InjectPanic);
                true
            }
            PanicTarget::Kind(ActorKind::AlertDispatcher) => {
                self.dispatcher.do_send(InjectPanic);
                true
            }
            PanicTarget::Kind(ActorKind::StorageWriter) => {
                self.storage.inject_panic();
                true
            }
            PanicTarget::Kind(ActorKind::Watcher) => match self.watchers.values().next() {
                Some(w) => {
                    w.addr.do_send(InjectPanic);
                    true
                }
                None => false,
            },
            PanicTarget::Watcher(id) => match self.watchers.get(&id) {
                Some(w) => {
                    w.addr.do_send(InjectPanic);
                    true
                }
                None => false,
            },
        }
    }

    /// Stops the tree in order: watchers, intake and collector, analyzer, dispatcher,
    /// storage (drained, committed, closed).
    fn shutdown(&mut self) -> ResponseActFuture<Self, ()> {
        self.shutting_down = true;
        self.desired.clear();
        let watchers: Vec<Addr<Watcher>> = self.watchers.drain().map(|(_, w)| w.addr).collect();
        let collector = self.collector.clone();
        let analyzer = self.analyzer.clone();
        let dispatcher = self.dispatcher.clone();
        let storage = self.storage.clone();
        let intake = self.intake.clone();
        Box::pin(
            async move {
                // 1. Watchers: a last probe each, forwarded to the collector before they stop.
                for w in watchers {
                    let _ = w.send(Retire).await;
                }
                // 2. The recorder intake hands over what it holds; the collector drains the rest.
                let _ = tokio::task::spawn_blocking(move || intake.stop_and_join()).await;
                let _ = collector.send(DrainRecorder).await;
                // 3. Analyzer, then dispatcher, have handled everything sent before.
                let _ = analyzer.send(Flush).await;
                let _ = dispatcher.send(Flush).await;
                // 4. Storage: drain, commit, close.
                let result =
                    tokio::task::spawn_blocking(move || storage.shutdown(Duration::from_secs(60)))
                        .await;
                match result {
                    Ok(Ok(())) => tracing::info!("Storage flushed and closed."),
                    Ok(Err(e)) => tracing::error!(error = %e, "Storage did not close cleanly."),
                    Err(e) => tracing::error!(error = %e, "Storage shutdown task failed."),
                }
            }
            .into_actor(self),
        )
    }
}
