//! The analyzer actor: thin handlers over [`AnalyzerState`], a judgement tick, and the
//! alert candidates it hands to the dispatcher.
//!
//! Every `judge_interval` the analyzer judges the host and every daemon. A bottleneck that
//! appears raises a firing alert `bottleneck.<kind>` for its daemon (critical from severity
//! 0.8, else warning) carrying the summary, the top recommendations and whether perfvisor
//! could act itself; one that disappears resolves it. Alert-worthy anomalies (level shifts,
//! extreme spikes) raise `anomaly.<metric>` warnings, resolved after five minutes without
//! another one on that series. Threshold rules still go to the dispatcher per batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::judge::{Bottleneck, BottleneckKind, Judgement};
use super::state::{alert_worthy, AnalyzerState, DaemonReport, HostReport};
use crate::alerts::AlertDispatcher;
use crate::messages::*;
use crate::metric_names as names;
use crate::panic_guard::guard;
use crate::supervisor::{ChildHandle, Restartable};
use crate::telemetry::ActorStats;
use crate::types::{
    Alert, AlertState, DaemonId, Labels, SeriesKey, Severity, SharedClock, Source, TimestampMs,
};

/// Series without a sample for this long are forgotten (bounded memory under churn).
const EXPIRE_AFTER_MS: i64 = 60 * 60_000;

/// How long an anomaly alert stays firing without another anomaly on its series.
const ANOMALY_QUIET_MS: i64 = 5 * 60_000;

/// Keeps per-series state, answers reports, judges daemons, raises alert candidates.
pub struct Analyzer {
    restart: Restartable,
    dispatcher: Addr<AlertDispatcher>,
    dispatcher_stats: Arc<ActorStats>,
    clock: SharedClock,
    window: usize,
    judge_interval: Duration,
    state: AnalyzerState,
    /// Firing bottleneck alerts, by daemon and kind.
    bottlenecks: BTreeMap<(DaemonId, BottleneckKind), Alert>,
    /// Firing anomaly alerts, by series, with the time of the latest anomaly.
    anomalies: HashMap<SeriesKey, (TimestampMs, Alert)>,
}

impl Analyzer {
    /// An analyzer with windows of `window` samples per series, judging every
    /// `judge_interval`.
    pub fn new(
        child: Arc<ChildHandle>,
        dispatcher: Addr<AlertDispatcher>,
        dispatcher_stats: Arc<ActorStats>,
        clock: SharedClock,
        window: usize,
        judge_interval: Duration,
    ) -> Self {
        Analyzer {
            restart: Restartable::new(child),
            dispatcher,
            dispatcher_stats,
            clock,
            window,
            judge_interval,
            state: AnalyzerState::new(window),
            bottlenecks: BTreeMap::new(),
            anomalies: HashMap::new(),
        }
    }

    fn send(&self, alert: Alert) {
        self.dispatcher_stats.enqueued();
        self.dispatcher.do_send(RaiseAlert { alert });
    }

    /// Judges everything and raises or resolves bottleneck and anomaly alerts.
    fn tick(&mut self) {
        let now = self.clock.now_ms();
        self.state.expire(now - EXPIRE_AFTER_MS);
        let (_, judgements) = self.state.judge_all(now);
        let mut current: BTreeMap<(DaemonId, BottleneckKind), (Bottleneck, &Judgement)> =
            BTreeMap::new();
        for (daemon, judgement) in &judgements {
            for b in &judgement.bottlenecks {
                current
                    .entry((daemon.clone(), b.kind))
                    .or_insert_with(|| (b.clone(), judgement));
            }
        }
        let gone: Vec<(DaemonId, BottleneckKind)> = self
            .bottlenecks
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(mut alert) = self.bottlenecks.remove(&key) {
                alert.state = AlertState::Resolved;
                alert.at_ms = now;
                alert.message = format!("resolved: {}", alert.message);
                self.send(alert);
            }
        }
        for (key, (b, judgement)) in current {
            if self.bottlenecks.contains_key(&key) {
                continue;
            }
            let alert = bottleneck_alert(&key.0, &b, judgement, now);
            self.bottlenecks.insert(key, alert.clone());
            self.send(alert);
        }
        let quiet: Vec<SeriesKey> = self
            .anomalies
            .iter()
            .filter(|(_, (last, _))| now - *last >= ANOMALY_QUIET_MS)
            .map(|(k, _)| k.clone())
            .collect();
        for key in quiet {
            if let Some((_, mut alert)) = self.anomalies.remove(&key) {
                alert.state = AlertState::Resolved;
                alert.at_ms = now;
                self.send(alert);
            }
        }
    }

    fn on_batch(&mut self, msg: AnalyzeBatch) {
        let anomalies = self.state.add(&msg.batch);
        for (series, event) in anomalies {
            if !alert_worthy(&event) {
                continue;
            }
            match self.anomalies.get_mut(&series) {
                Some((last, _)) => *last = event.at_ms,
                None => {
                    let alert = Alert {
                        rule: format!("anomaly.{}", series.metric.as_str()),
                        daemon: match &series.source {
                            Source::Daemon(d) => Some(d.clone()),
                            _ => None,
                        },
                        project: series.labels.get("project").map(str::to_string),
                        severity: Severity::Warning,
                        state: AlertState::Firing,
                        value: event.value,
                        threshold: event.baseline,
                        since_ms: event.at_ms,
                        at_ms: event.at_ms,
                        message: format!(
                            "{} of {}: {:?} to {:.4} from a baseline of {:.4} (robust score {:.1})",
                            series.metric.as_str(),
                            series.source.as_text(),
                            event.kind,
                            event.value,
                            event.baseline,
                            event.score
                        ),
                        recommendations: Vec::new(),
                        auto_actionable: false,
                        series: series.clone(),
                    };
                    self.anomalies.insert(series, (event.at_ms, alert.clone()));
                    self.send(alert);
                }
            }
        }
        self.dispatcher_stats.enqueued();
        self.dispatcher.do_send(EvaluateRules {
            now_ms: self.clock.now_ms(),
            batch: msg.batch,
        });
    }
}

/// The series an alert about a bottleneck points at.
fn bottleneck_metric(kind: BottleneckKind) -> &'static str {
    match kind {
        BottleneckKind::CpuBound | BottleneckKind::HostContention => names::PROCESS_CPU_UTILIZATION,
        BottleneckKind::MemoryPressure | BottleneckKind::MemoryLeak => names::PROCESS_MEMORY_RSS,
        BottleneckKind::IoBound => names::PROCESS_DISK_WRITE,
        BottleneckKind::DescriptorExhaustion => names::PROCESS_OPEN_FDS,
        BottleneckKind::RestartInstability => "lifecycle.restarts",
        BottleneckKind::LatencyRegression => "app.latency",
    }
}

fn bottleneck_alert(daemon: &DaemonId, b: &Bottleneck, j: &Judgement, now: TimestampMs) -> Alert {
    let recs: Vec<_> = j
        .recommendations
        .iter()
        .filter(|r| r.cause == b.kind)
        .collect();
    let metric = b
        .evidence
        .first()
        .map(|e| e.metric.clone())
        .unwrap_or_else(|| bottleneck_metric(b.kind).to_string());
    Alert {
        rule: format!("bottleneck.{}", b.kind.as_str()),
        series: SeriesKey::new(Source::Daemon(daemon.clone()), metric, Labels::empty()),
        daemon: Some(daemon.clone()),
        project: None,
        severity: if b.severity >= 0.8 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        state: AlertState::Firing,
        value: b.evidence.first().map_or(b.severity, |e| e.observed),
        threshold: b.evidence.first().map_or(0.0, |e| e.reference),
        since_ms: now,
        at_ms: now,
        message: format!(
            "{} (score {:.0}, {:?})",
            b.summary, j.score.value, j.score.level
        ),
        recommendations: recs.iter().take(3).map(|r| r.action.clone()).collect(),
        auto_actionable: recs.iter().any(|r| r.auto_action.is_some()),
    }
}

impl Actor for Analyzer {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.restart.on_started(ctx);
        ctx.run_interval(self.judge_interval, |act, ctx| {
            if let Err(reason) = guard(|| act.tick()) {
                act.restart.fail(ctx, &reason);
            }
        });
    }
}

impl actix::Supervised for Analyzer {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // State may be half-updated after a panic: start afresh. Firing alerts are kept so
        // they resolve when their cause is gone.
        self.state = AnalyzerState::new(self.window);
    }
}

impl Handler<AnalyzeBatch> for Analyzer {
    type Result = ();
    fn handle(&mut self, msg: AnalyzeBatch, ctx: &mut Self::Context) {
        self.restart.child.stats.dequeued();
        if let Err(reason) = guard(|| self.on_batch(msg)) {
            self.restart.fail(ctx, &reason);
        }
    }
}

impl Handler<DaemonLifecycle> for Analyzer {
    type Result = ();
    fn handle(&mut self, msg: DaemonLifecycle, ctx: &mut Self::Context) {
        self.restart.child.stats.dequeued();
        if let Err(reason) = guard(|| self.state.lifecycle(&msg.event)) {
            self.restart.fail(ctx, &reason);
        }
    }
}

impl Handler<GetReport> for Analyzer {
    type Result = MessageResult<GetReport>;
    fn handle(&mut self, msg: GetReport, ctx: &mut Self::Context) -> Self::Result {
        let now = self.clock.now_ms();
        match guard(|| self.state.report(&msg.daemon, now)) {
            Ok(r) => MessageResult(r),
            Err(reason) => {
                self.restart.fail(ctx, &reason);
                MessageResult(None::<DaemonReport>)
            }
        }
    }
}

impl Handler<GetHostReport> for Analyzer {
    type Result = MessageResult<GetHostReport>;
    fn handle(&mut self, _: GetHostReport, ctx: &mut Self::Context) -> Self::Result {
        let now = self.clock.now_ms();
        match guard(|| self.state.host_report(now)) {
            Ok(r) => MessageResult(Some(r)),
            Err(reason) => {
                self.restart.fail(ctx, &reason);
                MessageResult(None::<HostReport>)
            }
        }
    }
}

impl Handler<GetLatest> for Analyzer {
    type Result = MessageResult<GetLatest>;
    fn handle(&mut self, _: GetLatest, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.state.latest())
    }
}

impl Handler<Flush> for Analyzer {
    type Result = ();
    fn handle(&mut self, _: Flush, _ctx: &mut Self::Context) {}
}

impl Handler<InjectPanic> for Analyzer {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, ctx: &mut Self::Context) {
        if let Err(reason) = guard(|| panic!("injected panic in analyzer")) {
            self.restart.fail(ctx, &reason);
        }
    }
}
