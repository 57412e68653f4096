//! What the analyzer keeps and how it turns it into judgements: per series a short raw
//! window, a long window of per-minute means and an anomaly detector; per daemon its recent
//! restarts; and the reports and alert candidates built from them. Plain logic, no actix.
//!
//! # One process at a time
//! A daemon's process series (`process.*`) describe one process: when a start or restart
//! under a pid the state did not know arrives (intended or not), or `process.uptime_seconds`
//! goes down to a start later than the known one, those series start afresh
//! (window, per-minute means, anomaly baseline), and late samples from before the new
//! process are dropped. Otherwise the memory of the old and the new process joins into one
//! line whose slope belongs to neither. App metrics keep their history. Trends of process
//! series also leave out the start-up grace ([`JudgeConfig::startup_grace_ms`]).
//!
//! What is kept per series and what it costs is `series`'s (see its documentation).

use crate::series_table::SeriesTable;
use crate::types::FastMap;
use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::config::JudgeConfig;
use super::histogram::{HistogramReport, HistogramWindow};
use super::judge::{
    self, AnomalyEvent, Bottleneck, DaemonView, FilesystemView, HostJudgement, HostView, Judgement,
    MetricView, Recommendation, Score,
};
use super::judgement_metrics::ViewSummary;
use super::series::{is_latency, is_process_metric, MemoryParts, SeriesState, ViewContext};
use super::stats::WindowStats;
use super::trend::{self, TimeToThreshold, Trend, TrendRule};
use crate::collector::histogram::{histogram_part, ClosedInterval};
use crate::metric_names as names;
use crate::types::{
    DaemonId, Labels, LifecycleEvent, LifecycleKind, MetricBatch, MetricKind, MetricName,
    SeriesKey, Source, TimestampMs,
};

/// Restarts are counted over this period.
pub const RESTART_PERIOD_MS: i64 = 10 * 60_000;
/// Two process start times closer than this are one process: uptime is read in whole
/// seconds, and a lifecycle event is stamped when the probe noticed, a moment after the
/// start.
const SAME_START_MS: i64 = 5_000;

/// A series' report: statistics, trend and recent anomalies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesReport {
    /// Metric name.
    pub metric: MetricName,
    /// Labels.
    pub labels: Labels,
    /// Gauge or counter (counters are reported as per-second rates).
    pub kind: MetricKind,
    /// Statistics of the short window.
    pub stats: WindowStats,
    /// The trend (long window once it spans 30 minutes, else the short one).
    pub trend: Option<Trend>,
    /// The latest anomaly within the short window.
    pub last_anomaly: Option<AnomalyEvent>,
    /// What the window covers, from its oldest to its latest sample, ms. It reaches back
    /// `JudgeConfig::window_ms` (10 minutes) unless the series is young or capped.
    #[serde(default)]
    pub window_span_ms: i64,
    /// True when the cap on samples per series (`analysis_window`), not the time, decided
    /// what the window holds: the statistics then cover only `window_span_ms`.
    #[serde(default)]
    pub window_capped: bool,
}

/// When a metric is predicted to reach a limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The metric.
    pub metric: String,
    /// The limit, in words (e.g. "the host's memory").
    pub limit: String,
    /// When, with the confidence bound.
    pub when: TimeToThreshold,
}

/// Everything perfvisor can say about one daemon: statistics, trends, anomalies, score,
/// bottlenecks, recommendations and predictions. Serializes to JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonReport {
    /// The daemon.
    pub daemon: DaemonId,
    /// When the report was made.
    pub generated_at_ms: TimestampMs,
    /// 0–100 with its breakdown.
    pub score: Score,
    /// Bottlenecks, worst first.
    pub bottlenecks: Vec<Bottleneck>,
    /// Recommendations, most important first.
    pub recommendations: Vec<Recommendation>,
    /// Limits the daemon is heading for.
    pub predictions: Vec<Prediction>,
    /// Restarts and unexpected exits in the last 10 minutes.
    pub restarts_recent: u32,
    /// Since when the process series (`process.*`) are those of the current process: the
    /// start (or restart) the analyzer last saw, from a lifecycle event or from
    /// `process.uptime_seconds`. Earlier samples belong to another process and are not
    /// part of its trends; app metrics keep their history. `None` when no start was seen.
    #[serde(default)]
    pub instance_since_ms: Option<TimestampMs>,
    /// Where the trends of the process series begin: the instance's start plus the
    /// start-up grace (or `instance_since_ms`, if later). Each trend's own `fit` says what
    /// span of data it rests on.
    #[serde(default)]
    pub trend_from_ms: Option<TimestampMs>,
    /// Per series, sorted by metric and labels.
    pub series: Vec<SeriesReport>,
    /// The descendants using the most CPU and memory at the last probe (filled by the
    /// handle from the daemon's watcher); `None` when it has none or is not watched.
    #[serde(default)]
    pub children: Option<crate::watcher::tree::TopChildren>,
    /// The daemon's histograms (observations, operation durations) over the analysis
    /// window, sorted by metric and labels.
    #[serde(default)]
    pub histograms: Vec<HistogramReport>,
}

impl DaemonReport {
    /// The statistics of the first series with this metric name.
    pub fn metric(&self, name: &str) -> Option<&WindowStats> {
        self.series
            .iter()
            .find(|s| s.metric.as_str() == name)
            .map(|s| &s.stats)
    }
}

/// The host's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// When the report was made.
    pub generated_at_ms: TimestampMs,
    /// The host's judgement (score, contention).
    pub judgement: HostJudgement,
    /// Scores of every daemon, by id.
    pub daemon_scores: BTreeMap<DaemonId, f64>,
    /// File systems predicted to fill up.
    pub predictions: Vec<Prediction>,
    /// The host's series.
    pub series: Vec<SeriesReport>,
    /// The host's histograms (the host application's observations and operation
    /// durations) over the analysis window, sorted by metric and labels.
    #[serde(default)]
    pub histograms: Vec<HistogramReport>,
}

/// The process instance the analyzer knows for a daemon.
#[derive(Clone, Debug)]
struct Instance {
    /// Its pid, when a lifecycle event named it.
    pid: Option<u32>,
    /// When its process series were started afresh.
    since_ms: TimestampMs,
    /// When the process started: from `process.uptime_seconds` when known, else when the
    /// lifecycle event was stamped.
    started_ms: TimestampMs,
    /// The latest uptime read, seconds.
    last_uptime_s: Option<f64>,
}

/// The name a latency series is judged under, when it is judged: a latency-like metric
/// recorded as a gauge, or the p90 series of a latency histogram (its p50 and p99 would
/// repeat the same finding; its `.count` and `.sum` are not latencies).
fn judged_latency(key: &SeriesKey) -> Option<&str> {
    let metric = key.metric.as_str();
    if !is_latency(metric) {
        return None;
    }
    match histogram_part(metric, &key.labels) {
        None | Some(Some("0.9")) => Some(metric),
        Some(_) => None,
    }
}

/// The analyzer's state: every series, every daemon's restarts.
#[derive(Debug)]
pub struct AnalyzerState {
    capacity: usize,
    rule: TrendRule,
    cfg: JudgeConfig,
    /// The current process of each daemon, once a start was seen.
    instances: HashMap<DaemonId, Instance>,
    /// Grouped by source: a daemon's view reads its own dozen series, and a watcher's batch
    /// finds its series side by side.
    series: SeriesTable<SeriesState>,
    restarts: HashMap<DaemonId, VecDeque<TimestampMs>>,
    /// Histogram windows, by the histogram's series (without `quantile`).
    histograms: FastMap<SeriesKey, HistogramWindow>,
}

impl AnalyzerState {
    /// State with short windows of `capacity` samples per series, judged with the default
    /// [`JudgeConfig`].
    pub fn new(capacity: usize) -> Self {
        Self::with_config(capacity, JudgeConfig::default())
    }

    /// State with short windows of `capacity` samples per series, judged by `cfg`.
    pub fn with_config(capacity: usize, cfg: JudgeConfig) -> Self {
        AnalyzerState {
            capacity,
            rule: TrendRule::default(),
            cfg,
            instances: HashMap::new(),
            series: SeriesTable::new(),
            restarts: HashMap::new(),
            histograms: FastMap::default(),
        }
    }

    /// Merges closed histogram intervals into their windows.
    pub fn add_histograms(&mut self, intervals: &[ClosedInterval]) {
        let window_ms = self.cfg.window_ms;
        for i in intervals {
            match self.histograms.get_mut(&i.series) {
                Some(w) => w.add(i),
                None => {
                    let mut w = HistogramWindow::new(window_ms);
                    w.add(i);
                    self.histograms.insert(i.series.clone(), w);
                }
            }
        }
    }

    /// The histograms of `source` over the window before `now`, sorted.
    fn histogram_reports(&self, source: &Source, now: TimestampMs) -> Vec<HistogramReport> {
        let mut out: Vec<HistogramReport> = self
            .histograms
            .iter()
            .filter(|(k, _)| &k.source == source)
            .filter_map(|(k, w)| w.report(&k.metric, &k.labels, now))
            .collect();
        out.sort_by(|a, b| a.metric.cmp(&b.metric).then(a.labels.cmp(&b.labels)));
        out
    }

    /// The series of one source.
    fn of_source<'a>(
        &'a self,
        source: &Source,
    ) -> impl Iterator<Item = (&'a SeriesKey, &'a SeriesState)> + 'a {
        self.series.of_source(source)
    }

    /// The judgement's thresholds.
    pub fn config(&self) -> &JudgeConfig {
        &self.cfg
    }

    /// Replaces the judgement's thresholds; what is kept is unchanged.
    pub fn set_config(&mut self, cfg: JudgeConfig) {
        self.cfg = cfg;
    }

    /// Takes a batch; returns the anomalies it contained.
    pub fn add(&mut self, batch: &MetricBatch) -> Vec<(SeriesKey, AnomalyEvent)> {
        // Uptime first: a new process seen in this batch resets the process series before
        // the batch's other samples of the new process land in them.
        for s in &batch.samples {
            if let Source::Daemon(d) = &s.series.source {
                if s.series.metric.as_str() == names::PROCESS_UPTIME && s.value.is_finite() {
                    self.observe_uptime(d, s.ts_ms, s.value);
                }
            }
        }
        let mut anomalies = Vec::new();
        // Batches come grouped by daemon: look up each daemon's instance once per run.
        let mut instance: Option<(&Source, Option<TimestampMs>)> = None;
        for s in &batch.samples {
            if let Source::Daemon(d) = &s.series.source {
                let since = match instance {
                    Some((source, since)) if source == &s.series.source => since,
                    _ => {
                        let since = self.instances.get(d).map(|i| i.since_ms);
                        instance = Some((&s.series.source, since));
                        since
                    }
                };
                // A late sample of the previous process must not join the new one's series.
                let before_instance = since.is_some_and(|since| s.ts_ms < since);
                if before_instance && is_process_metric(s.series.metric.as_str()) {
                    continue;
                }
            }
            let (capacity, span) = (self.capacity, self.cfg.window_ms);
            let state = self.series.get_or_insert_with(&s.series, || {
                SeriesState::new(s.kind, capacity, span, s.series.metric.as_str())
            });
            if let Some(event) = state.push(s.ts_ms, s.value) {
                anomalies.push((s.series.clone(), event));
            }
        }
        anomalies
    }

    /// The smoothed interval between the samples of `series`, when it has had two.
    pub fn interval_ms(&self, series: &SeriesKey) -> Option<f64> {
        self.series.get(series).and_then(|s| s.interval_ms)
    }

    /// Notes a process start read from `process.uptime_seconds`: an uptime that went down
    /// to a start later than the known one is a new process (its series start afresh); an
    /// earlier start refines when the known process started (a lifecycle event is stamped
    /// when it was noticed). Only a decrease counts, so a source whose uptime is stuck
    /// (its start drifting later with every sample) does not reset the series each time.
    fn observe_uptime(&mut self, daemon: &DaemonId, ts: TimestampMs, uptime_s: f64) {
        let uptime_s = uptime_s.max(0.0);
        let started = ts - (uptime_s * 1000.0) as i64;
        match self.instances.get_mut(daemon) {
            None => {
                self.instances.insert(
                    daemon.clone(),
                    Instance {
                        pid: None,
                        since_ms: started,
                        started_ms: started,
                        last_uptime_s: Some(uptime_s),
                    },
                );
            }
            // Samples from before the instance are the previous process's.
            Some(i) if ts < i.since_ms => {}
            Some(i)
                if started > i.started_ms + SAME_START_MS
                    && i.last_uptime_s.is_some_and(|last| uptime_s < last) =>
            {
                self.new_instance(daemon, None, started);
                if let Some(i) = self.instances.get_mut(daemon) {
                    i.last_uptime_s = Some(uptime_s);
                }
            }
            Some(i) => {
                i.started_ms = i.started_ms.min(started);
                i.last_uptime_s = Some(uptime_s);
            }
        }
    }

    /// Starts a daemon's process series afresh for a new process seen at `since`: the
    /// trend, long window and anomaly baseline of one process say nothing about the next.
    fn new_instance(&mut self, daemon: &DaemonId, pid: Option<u32>, since: TimestampMs) {
        self.instances.insert(
            daemon.clone(),
            Instance {
                pid,
                since_ms: since,
                started_ms: since,
                last_uptime_s: None,
            },
        );
        let source = Source::Daemon(daemon.clone());
        let (capacity, span) = (self.capacity, self.cfg.window_ms);
        for (k, s) in self.series.of_source_mut(&source) {
            if is_process_metric(k.metric.as_str()) {
                *s = SeriesState::new(s.window.kind(), capacity, span, k.metric.as_str());
            }
        }
    }

    /// Notes a lifecycle event (restarts and unexpected exits count against stability,
    /// intended ones do not; a stop forgets nothing, so a report after the stop still
    /// explains it). A start or restart of a process the analyzer did not know, intended or
    /// not, starts the daemon's process series afresh.
    pub fn lifecycle(&mut self, event: &LifecycleEvent) {
        if matches!(
            event.kind,
            LifecycleKind::Started | LifecycleKind::Restarted
        ) {
            match self.instances.get_mut(&event.daemon) {
                Some(i) if i.pid == Some(event.pid) => {}
                // Uptime already showed this process: it started around the event or later,
                // or the host announces (`Started`) a process perfvisor was already reading;
                // a process that is really new shows in its uptime and is caught there.
                Some(i)
                    if i.pid.is_none()
                        && (event.kind == LifecycleKind::Started
                            || i.started_ms + SAME_START_MS >= event.ts_ms) =>
                {
                    i.pid = Some(event.pid);
                }
                _ => self.new_instance(&event.daemon, Some(event.pid), event.ts_ms),
            }
        }
        if event.kind == LifecycleKind::Exec {
            // Another program in the same process: its memory and CPU are not the trend of
            // the program before.
            self.new_instance(&event.daemon, Some(event.pid), event.ts_ms);
        }
        if !event.intended && matches!(event.kind, LifecycleKind::Restarted | LifecycleKind::Exited)
        {
            let times = self.restarts.entry(event.daemon.clone()).or_default();
            times.push_back(event.ts_ms);
            while times.len() > 64 {
                times.pop_front();
            }
        }
    }

    /// Forgets a daemon's series (the watcher is retired and nobody asked to keep them).
    pub fn forget(&mut self, daemon: &DaemonId) {
        let source = Source::Daemon(daemon.clone());
        self.series.remove_source(&source);
        self.histograms.retain(|k, _| k.source != source);
        self.restarts.remove(daemon);
        self.instances.remove(daemon);
    }

    /// Forgets series whose latest sample is older than `before` (daemons long gone, mounts
    /// unmounted, operations no longer recorded), and restarts older than the restart period,
    /// so memory stays bounded under churn. Returns how many series were dropped.
    pub fn expire(&mut self, before: TimestampMs) -> usize {
        let n = self.series.len();
        self.series
            .retain(|_, s| s.window.last().is_some_and(|p| p.0 >= before));
        self.histograms
            .retain(|_, w| w.last_ms().is_some_and(|t| t >= before));
        self.restarts
            .retain(|_, times| times.back().is_some_and(|&t| t >= before));
        let series = &self.series;
        self.instances
            .retain(|d, _| series.has_source(&Source::Daemon(d.clone())));
        n - self.series.len()
    }

    /// The daemons with series.
    pub fn daemons(&self) -> Vec<DaemonId> {
        let mut out: Vec<DaemonId> = self
            .series
            .sources()
            .filter_map(|s| s.daemon().cloned())
            .collect();
        out.extend(self.restarts.keys().cloned());
        out.sort();
        out.dedup();
        out
    }

    fn find(&self, source: &Source, metric: &str) -> Option<(&SeriesKey, &SeriesState)> {
        self.of_source(source)
            .find(|(k, _)| k.metric.as_str() == metric)
    }

    /// Where the trends of `key` begin: for a daemon's process series, after the start-up
    /// grace of its current process.
    fn trend_from(&self, key: &SeriesKey) -> Option<TimestampMs> {
        let Source::Daemon(d) = &key.source else {
            return None;
        };
        if !is_process_metric(key.metric.as_str()) {
            return None;
        }
        self.instance_trend_from(d)
    }

    fn instance_trend_from(&self, daemon: &DaemonId) -> Option<TimestampMs> {
        let i = self.instances.get(daemon)?;
        Some(
            i.since_ms
                .max(i.started_ms.saturating_add(self.cfg.startup_grace_ms)),
        )
    }

    /// The view of one series; its trend has its sentence when `reasons` (see
    /// `ViewContext::reasons`).
    fn series_view(
        &self,
        key: &SeriesKey,
        s: &SeriesState,
        now: TimestampMs,
        reasons: bool,
    ) -> MetricView {
        let ctx = ViewContext {
            rule: &self.rule,
            cfg: &self.cfg,
            now,
            trend_from: self.trend_from(key),
            reasons,
        };
        s.view(key, &ctx)
    }

    /// When the whole window of resident memory does not look like a leak, tries its most
    /// recent half and quarter (each spanning at least `min_trend_span_ms`) and keeps the
    /// longest that does and whose rise is at least `leak_breakout` times the range the
    /// memory kept before it: a leak that began after a long flat stretch (a hinge) fits
    /// neither a line nor a step over the whole window, and would otherwise wait until it
    /// fills most of the window (7 minutes and more).
    fn recent_leak(&self, source: &Source, rss: &mut MetricView, now: TimestampMs, reasons: bool) {
        if judge::leak_shape(rss, &self.cfg).is_some() {
            return;
        }
        let Some((key, s)) = self.find(source, names::PROCESS_MEMORY_RSS) else {
            return;
        };
        let ctx = ViewContext {
            rule: &self.rule,
            cfg: &self.cfg,
            now,
            trend_from: self.trend_from(key),
            reasons,
        };
        let points = s.trend_points_from(ctx.trend_from);
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            return;
        };
        // Memory that kept one value (an idle daemon's, most of the time) has no part that
        // rises: a line through equal values has a slope of 0 up to rounding, far under any
        // leak floor (which is positive). Its two fits are skipped.
        if points.iter().all(|p| p.1 == first.1) {
            return;
        }
        let span = last.0 - first.0;
        for part in [2, 4] {
            let from = last.0 - span / part;
            if span / part < self.cfg.min_trend_span_ms {
                return;
            }
            let recent: Vec<(TimestampMs, f64)> =
                points.iter().copied().filter(|p| p.0 >= from).collect();
            // Wander in a flat series also makes short rising stretches; a leak that began
            // recently breaks out of the range the memory kept before it.
            let (lo, hi) = points
                .iter()
                .filter(|p| p.0 < from)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p.1), hi.max(p.1))
                });
            let (trend, envelope) = SeriesState::trend_of(key, &recent, &ctx, true);
            let rise = trend
                .as_ref()
                .map_or(0.0, |t| t.fit.slope_per_s * t.fit.span_ms as f64 / 1000.0);
            if !(hi >= lo && rise >= self.cfg.leak_breakout * (hi - lo)) {
                continue;
            }
            let candidate = MetricView {
                trend,
                envelope,
                ..MetricView::default()
            };
            if judge::leak_shape(&candidate, &self.cfg).is_some() {
                rss.trend = candidate.trend;
                rss.envelope = candidate.envelope;
                return;
            }
        }
    }

    fn metric_view(
        &self,
        source: &Source,
        metric: &str,
        now: TimestampMs,
        reasons: bool,
    ) -> MetricView {
        self.find(source, metric)
            .map(|(k, s)| self.series_view(k, s, now, reasons))
            .unwrap_or_default()
    }

    fn last(&self, source: &Source, metric: &str) -> Option<f64> {
        self.find(source, metric)
            .and_then(|(_, s)| s.window.last().map(|p| p.1))
    }

    /// What the judgement of the host reads.
    pub fn host_view(&self, now: TimestampMs) -> HostView {
        let host = Source::Host;
        let mut filesystems = Vec::new();
        for (k, s) in self.of_source(&host) {
            if k.metric.as_str() != names::SYSTEM_FILESYSTEM_USED {
                continue;
            }
            let Some(mount) = k.labels.get("mountpoint") else {
                continue;
            };
            let total = self
                .of_source(&host)
                .find(|(t, _)| {
                    t.metric.as_str() == names::SYSTEM_FILESYSTEM_TOTAL
                        && t.labels.get("mountpoint") == Some(mount)
                })
                .and_then(|(_, t)| t.window.last().map(|p| p.1));
            let (Some(total), Some(used)) = (total, s.window.last().map(|p| p.1)) else {
                continue;
            };
            let view = self.series_view(k, s, now, true);
            let time_to_full = view
                .trend
                .filter(|t| {
                    t.direction == trend::Direction::Rising
                        && t.fit.span_ms >= self.cfg.min_trend_span_ms
                })
                .and_then(|t| trend::time_to_threshold(&t.fit, now, total, 0.95));
            filesystems.push(FilesystemView {
                mountpoint: mount.to_string(),
                used,
                total,
                time_to_full,
            });
        }
        filesystems.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
        HostView {
            now_ms: now,
            cpu: self.metric_view(&host, names::SYSTEM_CPU_UTILIZATION, now, true),
            memory_total: self.last(&host, names::SYSTEM_MEMORY_TOTAL),
            memory_available: self.last(&host, names::SYSTEM_MEMORY_AVAILABLE),
            swap_used: self.last(&host, names::SYSTEM_SWAP_USED),
            cores: self.last(&host, names::SYSTEM_CPU_COUNT),
            filesystems,
        }
    }

    /// What the judgement of a daemon reads.
    pub fn daemon_view(&self, daemon: &DaemonId, host: &HostView, now: TimestampMs) -> DaemonView {
        self.daemon_view_with(daemon, host, now, true)
    }

    /// [`AnalyzerState::daemon_view`]; its trends have their sentences when `reasons`.
    fn daemon_view_with(
        &self,
        daemon: &DaemonId,
        host: &HostView,
        now: TimestampMs,
        reasons: bool,
    ) -> DaemonView {
        let source = Source::Daemon(daemon.clone());
        let mv = |metric: &str| self.metric_view(&source, metric, now, reasons);
        let mut view = DaemonView::new(daemon.clone(), now);
        view.cpu = mv(names::PROCESS_CPU_UTILIZATION);
        view.rss = mv(names::PROCESS_MEMORY_RSS);
        self.recent_leak(&source, &mut view.rss, now, reasons);
        // The watcher's rate gauges (the counters themselves are light series).
        view.disk_read = mv(names::PROCESS_DISK_READ_RATE);
        view.disk_write = mv(names::PROCESS_DISK_WRITE_RATE);
        view.fds = mv(names::PROCESS_OPEN_FDS);
        view.fd_limit = self.last(&source, names::PROCESS_FD_LIMIT);
        view.restarts_recent = self.restarts.get(daemon).map_or(0, |t| {
            t.iter().filter(|&&ts| ts > now - RESTART_PERIOD_MS).count() as u32
        });
        view.latency = self.latency_views(&source, now, reasons);
        // A prediction rests on the same minimum span as the trend rules: a line through
        // seconds of data extrapolates one burst.
        let rising = |m: &MetricView| {
            m.trend
                .as_ref()
                .filter(|t| {
                    t.direction == trend::Direction::Rising
                        && t.fit.span_ms >= self.cfg.min_trend_span_ms
                })
                .map(|t| t.fit.clone())
        };
        if let (Some(fit), Some(total)) = (rising(&view.rss), host.memory_total) {
            view.rss_time_to_limit = trend::time_to_threshold(&fit, now, total, 0.95);
        }
        if let (Some(fit), Some(limit)) = (rising(&view.fds), view.fd_limit) {
            view.fds_time_to_limit = trend::time_to_threshold(&fit, now, limit, 0.95);
        }
        view
    }

    /// The latency series of `source` the judgement reads, by name (see
    /// [`judged_latency`]).
    fn latency_views(
        &self,
        source: &Source,
        now: TimestampMs,
        reasons: bool,
    ) -> BTreeMap<String, MetricView> {
        let mut out = BTreeMap::new();
        for (k, s) in self.of_source(source) {
            if let Some(name) = judged_latency(k) {
                out.insert(name.to_string(), self.series_view(k, s, now, reasons));
            }
        }
        out
    }

    /// Judges the host and every daemon. The host's judgement includes its own app
    /// metrics (the embedding application's latencies), judged as a daemon's are.
    pub fn judge_all(&self, now: TimestampMs) -> (HostJudgement, BTreeMap<DaemonId, Judgement>) {
        let (_, _, host, daemons) = self.judge_all_with_views(now);
        (host, daemons)
    }

    /// [`AnalyzerState::judge_all`] with the host's view and what the judgement series read
    /// of each daemon's view ([`ViewSummary`]), for what reads both without building the
    /// views twice.
    ///
    /// Daemons are viewed one at a time and each view is dropped once judged: at 1,000
    /// daemons the views held together were 3 MB at the analyzer's peak. A host contention,
    /// known only once every daemon is judged, changes the judgement of the daemons it
    /// involves: those (a handful, the ones using the contended CPU) are viewed again.
    pub fn judge_all_with_views(
        &self,
        now: TimestampMs,
    ) -> (
        HostView,
        Vec<ViewSummary>,
        HostJudgement,
        BTreeMap<DaemonId, Judgement>,
    ) {
        let host = self.host_view(now);
        let daemons = self.daemons();
        let mut summaries = Vec::with_capacity(daemons.len());
        let mut own: Vec<(DaemonId, Vec<Bottleneck>, Option<f64>)> =
            Vec::with_capacity(daemons.len());
        let mut judgements = BTreeMap::new();
        // The views are judged and dropped here: their trends need no sentences.
        for d in &daemons {
            let v = self.daemon_view_with(d, &host, now, false);
            own.push((
                d.clone(),
                judge::bottlenecks(&v, &host, &self.cfg),
                v.cpu.stats.as_ref().map(|s| s.mean),
            ));
            judgements.insert(d.clone(), judge::judge(&v, &host, None, &self.cfg));
            summaries.push(ViewSummary::of(&v));
        }
        let mut host_judgement = judge::judge_host(&host, &own, &self.cfg);
        host_judgement.app_bottlenecks =
            judge::app_bottlenecks(self.latency_views(&Source::Host, now, true), &self.cfg);
        if let Some(contention) = &host_judgement.contention {
            for d in &host_judgement.contended_daemons {
                if let Some(j) = judgements.get_mut(d) {
                    let v = self.daemon_view_with(d, &host, now, false);
                    *j = judge::judge(&v, &host, Some(contention), &self.cfg);
                }
            }
        }
        (host, summaries, host_judgement, judgements)
    }

    fn series_reports(&self, source: &Source, now: TimestampMs) -> Vec<SeriesReport> {
        let mut out: Vec<SeriesReport> = self
            .of_source(source)
            .filter_map(|(k, s)| {
                let view = self.series_view(k, s, now, true);
                Some(SeriesReport {
                    metric: k.metric.clone(),
                    labels: k.labels.clone(),
                    kind: s.window.kind(),
                    stats: view.stats?,
                    trend: view.trend,
                    last_anomaly: view.anomaly,
                    window_span_ms: s
                        .window
                        .first_ts()
                        .zip(s.window.last())
                        .map_or(0, |(first, (last, _))| last - first),
                    window_capped: s.window.capped(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.metric.cmp(&b.metric).then(a.labels.cmp(&b.labels)));
        out
    }

    /// The full report of a daemon, or `None` when nothing is known about it.
    pub fn report(&self, daemon: &DaemonId, now: TimestampMs) -> Option<DaemonReport> {
        let source = Source::Daemon(daemon.clone());
        let series = self.series_reports(&source, now);
        let histograms = self.histogram_reports(&source, now);
        if series.is_empty() && histograms.is_empty() && !self.restarts.contains_key(daemon) {
            return None;
        }
        let (_, judgements) = self.judge_all(now);
        let judgement = judgements.get(daemon)?.clone();
        let view = self.daemon_view(daemon, &self.host_view(now), now);
        let mut predictions = Vec::new();
        if let Some(t) = view.rss_time_to_limit.clone() {
            predictions.push(Prediction {
                metric: names::PROCESS_MEMORY_RSS.into(),
                limit: "the host's memory".into(),
                when: t,
            });
        }
        if let Some(t) = view.fds_time_to_limit.clone() {
            predictions.push(Prediction {
                metric: names::PROCESS_OPEN_FDS.into(),
                limit: "the descriptor limit".into(),
                when: t,
            });
        }
        Some(DaemonReport {
            daemon: daemon.clone(),
            generated_at_ms: now,
            score: judgement.score,
            bottlenecks: judgement.bottlenecks,
            recommendations: judgement.recommendations,
            predictions,
            restarts_recent: view.restarts_recent,
            instance_since_ms: self.instances.get(daemon).map(|i| i.since_ms),
            trend_from_ms: self.instance_trend_from(daemon),
            series,
            children: None,
            histograms,
        })
    }

    /// The host's report.
    pub fn host_report(&self, now: TimestampMs) -> HostReport {
        let (judgement, daemons) = self.judge_all(now);
        let predictions = self
            .host_view(now)
            .filesystems
            .into_iter()
            .filter_map(|fs| {
                Some(Prediction {
                    metric: format!(
                        "{} {{mountpoint={}}}",
                        names::SYSTEM_FILESYSTEM_USED,
                        fs.mountpoint
                    ),
                    limit: format!("the size of {}", fs.mountpoint),
                    when: fs.time_to_full?,
                })
            })
            .collect();
        HostReport {
            generated_at_ms: now,
            judgement,
            predictions,
            daemon_scores: daemons
                .into_iter()
                .map(|(d, j)| (d, j.score.value))
                .collect(),
            series: self.series_reports(&Source::Host, now),
            histograms: self.histogram_reports(&Source::Host, now),
        }
    }

    /// The latest sample of every series, sorted by series (for exposition).
    pub fn latest(&self) -> Vec<crate::types::Sample> {
        let mut out: Vec<crate::types::Sample> = self
            .series
            .iter()
            .filter_map(|(k, s)| {
                s.window.last().map(|(ts_ms, value)| crate::types::Sample {
                    series: k.clone(),
                    kind: s.window.kind(),
                    ts_ms,
                    value,
                })
            })
            .collect();
        out.sort_by(|a, b| a.series.cmp(&b.series));
        out
    }

    /// Bytes held for all series (see the module documentation).
    pub fn memory_bytes(&self) -> usize {
        self.series
            .values()
            .map(SeriesState::memory_bytes)
            .sum::<usize>()
            + self
                .histograms
                .values()
                .map(HistogramWindow::memory_bytes)
                .sum::<usize>()
    }

    /// Bytes held, part by part (see [`MemoryParts`]).
    pub fn memory_parts(&self) -> MemoryParts {
        let mut parts = MemoryParts::default();
        for s in self.series.values() {
            s.add_parts(&mut parts);
        }
        parts.histograms = self
            .histograms
            .values()
            .map(HistogramWindow::memory_bytes)
            .sum();
        parts
    }

    /// Series tracked.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series is tracked.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

// Moved to `signals`, where the candidates are made; kept in scope for the tests below.
#[cfg(test)]
use super::{anomaly::AnomalyKind, signals::alert_worthy};

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
