//! The analyzer actor: thin handlers over [`AnalyzerState`], a judgement tick, and the
//! alert candidates it hands to the dispatcher.
//!
//! Every `judge_interval` the analyzer judges the host and every daemon; the candidates
//! (bottlenecks appearing and disappearing, alert-worthy anomalies and their resolution)
//! come from [`Signals`], plain logic shared with `perfvisor replay`. Threshold rules still
//! go to the dispatcher per batch.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::config::JudgeConfig;
use super::judgement_metrics::JudgementMetrics;
use super::signals::{AlertPolicy, Signals, EXPIRE_AFTER_MS};
use super::state::AnalyzerState;
use crate::alerts::AlertDispatcher;
use crate::messages::*;
use crate::supervisor::{supervised_handlers, tick, ChildHandle, Restartable};
use crate::telemetry::ActorStats;
use crate::types::{Alert, SharedClock};

/// What an analyzer is built from: where candidates go, how long its windows are, how
/// often and by which thresholds it judges. The supervisor builds it once; a restart keeps
/// it and rebuilds the state from it.
#[derive(Clone)]
pub struct AnalyzerSetup {
    /// The alert dispatcher (candidates and rule evaluation).
    pub dispatcher: Addr<AlertDispatcher>,
    /// The dispatcher's counters (each message sent is counted into its mailbox).
    pub dispatcher_stats: Arc<ActorStats>,
    /// Source of time.
    pub clock: SharedClock,
    /// Most samples per series in a window (which covers `judge.window_ms`).
    pub window: usize,
    /// How often every daemon is judged.
    pub judge_interval: Duration,
    /// The judgement's thresholds.
    pub judge: JudgeConfig,
    /// Where every judgement's `perfvisor.judgement.*` samples are stored, if anywhere.
    pub storage: Option<crate::storage::StorageHandle>,
}

/// Keeps per-series state, answers reports, judges daemons, raises alert candidates.
pub struct Analyzer {
    restart: Restartable,
    setup: AnalyzerSetup,
    state: AnalyzerState,
    /// Firing candidates, kept across restarts so they resolve when their cause is gone.
    signals: Signals,
    /// The judgement as samples.
    judgement_metrics: JudgementMetrics,
}

impl Analyzer {
    /// An analyzer built from `setup`.
    pub fn new(child: Arc<ChildHandle>, setup: AnalyzerSetup) -> Self {
        Analyzer {
            restart: Restartable::new(child),
            state: AnalyzerState::with_config(setup.window, setup.judge.clone()),
            setup,
            signals: Signals::new(AlertPolicy::default()),
            judgement_metrics: JudgementMetrics::default(),
        }
    }

    fn send(&self, alert: Alert) {
        self.setup.dispatcher_stats.enqueued();
        self.setup.dispatcher.do_send(RaiseAlert { alert });
    }

    /// Judges everything and raises or resolves bottleneck and anomaly alerts.
    fn tick(&mut self) {
        let now = self.setup.clock.now_ms();
        self.state.expire(now - EXPIRE_AFTER_MS);
        let (host_view, views, host, judgements) = self.state.judge_all_with_views(now);
        let batch = self
            .judgement_metrics
            .judged(now, &host_view, &views, &host, &judgements);
        if let Some(storage) = &self.setup.storage {
            storage.store(batch);
        }
        for alert in self.signals.judged(&judgements, now) {
            self.send(alert);
        }
        for alert in self.signals.judged_host(&host, now) {
            self.send(alert);
        }
    }

    fn on_batch(&mut self, msg: AnalyzeBatch) {
        self.signals.observe(&msg.batch);
        let anomalies = self.state.add(&msg.batch);
        let now = self.setup.clock.now_ms();
        self.judgement_metrics
            .anomalies(anomalies.iter().map(|(k, e)| (k, e)), now);
        for alert in self.signals.anomalies(anomalies, &self.state) {
            self.send(alert);
        }
        self.setup.dispatcher_stats.enqueued();
        self.setup.dispatcher.do_send(EvaluateRules {
            now_ms: self.setup.clock.now_ms(),
            batch: msg.batch,
        });
    }
}

impl Actor for Analyzer {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.restart.on_started(ctx);
        ctx.run_interval(self.setup.judge_interval, |act, ctx| {
            tick(act, ctx, |act, _| act.tick())
        });
    }
}

impl actix::Supervised for Analyzer {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // State may be half-updated after a panic: start afresh. Firing alerts are kept so
        // they resolve when their cause is gone.
        self.state = AnalyzerState::with_config(self.setup.window, self.setup.judge.clone());
    }
}

supervised_handlers! {
    Analyzer.restart;

    AnalyzeBatch[counted](act, msg, _ctx) {
        act.on_batch(msg)
    }

    AnalyzeHistograms[counted](act, msg, _ctx) {
        act.state.add_histograms(&msg.intervals)
    }

    DaemonLifecycle[counted](act, msg, _ctx) {
        act.judgement_metrics.lifecycle(&msg.event);
        act.state.lifecycle(&msg.event)
    }

    GetReport(act, msg, _ctx) -> reply {
        let now = act.setup.clock.now_ms();
        act.state.report(&msg.daemon, now)
    }

    GetHostReport(act, _msg, _ctx) -> reply {
        let now = act.setup.clock.now_ms();
        Some(act.state.host_report(now))
    }

    GetLatest(act, _msg, _ctx) -> reply {
        let mut latest = act.state.latest();
        latest.extend_from_slice(act.judgement_metrics.latest());
        latest
    }

    /// Everything sent before it has been handled.
    Flush(_act, _msg, _ctx) {}

    InjectPanic(_act, _msg, _ctx) {
        panic!("injected panic in analyzer")
    }
}
