//! What the analyzer keeps and how it turns it into judgements: per series a short raw
//! window, a long window of per-minute means and an anomaly detector; per daemon its recent
//! restarts; and the reports and alert candidates built from them. Plain logic, no actix.
//!
//! # Memory per series
//! - short window: `window` raw samples (default 600) × 8 bytes = 4.8 KB (see
//!   [`SeriesWindow`]: `u32` time offsets, `f32` values or counter increases);
//! - long window: up to [`LONG_POINTS`] per-minute means (6 h) × 8 bytes = 2.9 KB (an `i32`
//!   minute number and an `f32` mean), grown as it fills, to exactly that;
//! - anomaly detector: its bounded ring (see `anomaly::AnomalyDetector::memory_bytes`),
//!   built only once the series varies (`anomaly::LazyDetector`): a flat series holds a
//!   value and a count;
//! - bookkeeping (key, last anomaly, minute accumulator): a few hundred bytes.
//!
//! [`AnalyzerState::memory_bytes`] adds these up for the live series.

use crate::types::FastMap;
use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::anomaly::{AnomalyConfig, LazyDetector};
use super::judge::{
    self, AnomalyEvent, Bottleneck, DaemonView, FilesystemView, HostJudgement, HostView, Judgement,
    MetricView, Recommendation, Score,
};
use super::stats::{SeriesWindow, WindowStats};
use super::trend::{self, Polarity, TimeToThreshold, Trend, TrendRule};
use crate::metric_names as names;
use crate::types::{
    DaemonId, Labels, LifecycleEvent, LifecycleKind, MetricBatch, MetricKind, MetricName,
    SeriesKey, Source, TimestampMs,
};

/// Per-minute means kept per series: 6 hours.
pub const LONG_POINTS: usize = 360;
/// The long window is used for trends once it spans this long (30 minutes); before that the
/// short window is.
pub const LONG_TREND_MIN_SPAN_MS: i64 = 30 * 60_000;
/// Restarts are counted over this period.
pub const RESTART_PERIOD_MS: i64 = 10 * 60_000;

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
    /// Per series, sorted by metric and labels.
    pub series: Vec<SeriesReport>,
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
}

/// Accumulates one minute of values into a mean.
#[derive(Clone, Debug, Default)]
struct Minute {
    start_ms: TimestampMs,
    sum: f64,
    count: u32,
}

/// Everything kept per series.
#[derive(Debug)]
struct SeriesState {
    window: SeriesWindow,
    /// Per-minute means: the minute's number since the epoch and the mean.
    long: VecDeque<(i32, f32)>,
    minute: Minute,
    /// The previous counter value, to feed rates to the detector and the long window.
    previous: Option<(TimestampMs, f64)>,
    /// `None` for light series ([`is_light`]): they keep their last samples only. Lazy: a
    /// series that has only ever had one value holds no detector window.
    detector: Option<LazyDetector>,
    last_anomaly: Option<AnomalyEvent>,
}

/// Series the analyzer keeps only the last samples of, without a baseline or a long window:
/// the process counters whose rates the watcher already sends as gauges (analysing both
/// would double the memory and raise every anomaly twice), values that are constant or
/// ramps by nature (uptime, state, descriptor limit), and the two the judgement does not
/// read (virtual size, threads; stored and queryable like every series). Of the 13 series
/// of a watched daemon, 5 keep full windows: CPU, resident memory, read and write rates,
/// descriptors.
pub(crate) fn is_light(metric: &str) -> bool {
    matches!(
        metric,
        names::PROCESS_CPU_TIME
            | names::PROCESS_DISK_READ
            | names::PROCESS_DISK_WRITE
            | names::PROCESS_UPTIME
            | names::PROCESS_STATE
            | names::PROCESS_FD_LIMIT
            | names::PROCESS_MEMORY_VIRTUAL
            | names::PROCESS_THREADS
    )
}

/// Samples a light series keeps (two, so a counter still shows its latest rate).
const LIGHT_CAPACITY: usize = 2;

impl SeriesState {
    fn new(kind: MetricKind, capacity: usize, metric: &str) -> Self {
        let light = is_light(metric);
        SeriesState {
            window: SeriesWindow::new(kind, if light { LIGHT_CAPACITY } else { capacity }),
            long: VecDeque::new(),
            minute: Minute::default(),
            previous: None,
            detector: (!light).then(|| LazyDetector::new(AnomalyConfig::default())),
            last_anomaly: None,
        }
    }

    /// Adds a sample; returns an anomaly event when the detector confirms a level shift or
    /// flags a spike.
    fn push(&mut self, ts: TimestampMs, value: f64) -> Option<AnomalyEvent> {
        self.window.push(ts, value);
        self.detector.as_ref()?;
        // Counters are judged by their rate.
        let observed = match self.window.kind() {
            MetricKind::Gauge => Some(value),
            MetricKind::Counter => {
                let rate = self.previous.and_then(|(pt, pv)| {
                    let dt = (ts - pt) as f64 / 1000.0;
                    (dt > 0.0 && value >= pv).then(|| (value - pv) / dt)
                });
                self.previous = Some((ts, value));
                rate
            }
        };
        let observed = observed.filter(|v| v.is_finite())?;
        let minute_start = ts.div_euclid(60_000) * 60_000;
        if self.minute.count > 0 && minute_start != self.minute.start_ms {
            let mean = self.minute.sum / f64::from(self.minute.count);
            if self.long.len() == LONG_POINTS {
                self.long.pop_front();
            } else if self.long.len() == self.long.capacity() {
                // Grow to exactly LONG_POINTS, not to the next power of two (512).
                let grown = (self.long.capacity() * 2).clamp(16, LONG_POINTS);
                self.long.reserve_exact(grown - self.long.len());
            }
            // Minutes since the epoch fit an i32 for ±4 000 years; others are not kept.
            if let Ok(minute) = i32::try_from(self.minute.start_ms.div_euclid(60_000)) {
                self.long.push_back((minute, mean as f32));
            }
            self.minute = Minute::default();
        }
        if self.minute.count == 0 {
            self.minute.start_ms = minute_start;
        }
        self.minute.sum += observed;
        self.minute.count += 1;
        let verdict = self.detector.as_mut()?.update(ts, observed)?;
        let kind = verdict.kind.filter(|_| verdict.anomalous)?;
        let event = AnomalyEvent {
            at_ms: ts,
            kind,
            value: observed,
            baseline: verdict.baseline,
            score: verdict.score,
        };
        self.last_anomaly = Some(event.clone());
        Some(event)
    }

    /// The values the trend is fitted to: gauge samples or counter rates, from the long
    /// window once it spans 30 minutes.
    fn trend_points(&self) -> Vec<(TimestampMs, f64)> {
        if let (Some(first), Some(last)) = (self.long.front(), self.long.back()) {
            if (i64::from(last.0) - i64::from(first.0)) * 60_000 >= LONG_TREND_MIN_SPAN_MS {
                // Each mean stands at the middle of its minute.
                return self
                    .long
                    .iter()
                    .map(|&(minute, mean)| (i64::from(minute) * 60_000 + 30_000, f64::from(mean)))
                    .collect();
            }
        }
        match self.window.kind() {
            MetricKind::Gauge => self.window.points().collect(),
            MetricKind::Counter => self.window.rates(),
        }
    }

    fn view(&self, key: &SeriesKey, rule: &TrendRule) -> MetricView {
        let stats = self.window.stats();
        let points = self.trend_points();
        let trend = trend::fit(&points)
            .map(|fit| trend::classify(&fit, 0, trend::polarity_of(key.metric.as_str()), rule));
        let window_start = self.window.first_ts().unwrap_or(i64::MIN);
        let p95_before_after = {
            let values: Vec<f64> = match self.window.kind() {
                MetricKind::Gauge => self.window.gauge_values(),
                MetricKind::Counter => points.iter().map(|p| p.1).collect(),
            };
            let half = values.len() / 2;
            if half >= 10 {
                let p95 = |v: &[f64]| WindowStats::compute(v).map(|s| s.p95);
                p95(&values[..half]).zip(p95(&values[half..]))
            } else {
                None
            }
        };
        MetricView {
            stats,
            trend,
            anomaly: self
                .last_anomaly
                .clone()
                .filter(|a| a.at_ms >= window_start),
            p95_before_after,
        }
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.window.memory_bytes()
            + self.long.capacity() * std::mem::size_of::<(i32, f32)>()
            + self.detector.as_ref().map_or(0, LazyDetector::memory_bytes)
    }
}

/// Whether an app metric is latency-like (lower is better, a duration).
fn is_latency(metric: &str) -> bool {
    !metric.starts_with("process.")
        && !metric.starts_with("system.")
        && !metric.starts_with("perfvisor.")
        && trend::polarity_of(metric) == Polarity::LowerIsBetter
        && (metric.contains("duration")
            || metric.contains("latency")
            || metric.ends_with("_seconds")
            || metric.contains("time"))
}

/// The analyzer's state: every series, every daemon's restarts.
#[derive(Debug)]
pub struct AnalyzerState {
    capacity: usize,
    rule: TrendRule,
    series: FastMap<SeriesKey, SeriesState>,
    /// The keys of `series` by source, so a daemon's view reads its own dozen series
    /// instead of scanning every series of every daemon.
    by_source: FastMap<Source, Vec<SeriesKey>>,
    restarts: HashMap<DaemonId, VecDeque<TimestampMs>>,
}

impl AnalyzerState {
    /// State with short windows of `capacity` samples per series.
    pub fn new(capacity: usize) -> Self {
        AnalyzerState {
            capacity,
            rule: TrendRule::default(),
            series: FastMap::default(),
            by_source: FastMap::default(),
            restarts: HashMap::new(),
        }
    }

    /// Rebuilds `by_source` after series were dropped.
    fn reindex(&mut self) {
        self.by_source.clear();
        for k in self.series.keys() {
            self.by_source
                .entry(k.source.clone())
                .or_default()
                .push(k.clone());
        }
    }

    /// The series of one source.
    fn of_source<'a>(
        &'a self,
        source: &Source,
    ) -> impl Iterator<Item = (&'a SeriesKey, &'a SeriesState)> + 'a {
        self.by_source
            .get(source)
            .into_iter()
            .flatten()
            .filter_map(|k| self.series.get_key_value(k))
    }

    /// Takes a batch; returns the anomalies it contained.
    pub fn add(&mut self, batch: &MetricBatch) -> Vec<(SeriesKey, AnomalyEvent)> {
        let mut anomalies = Vec::new();
        for s in &batch.samples {
            let state = match self.series.get_mut(&s.series) {
                Some(state) => state,
                None => {
                    self.by_source
                        .entry(s.series.source.clone())
                        .or_default()
                        .push(s.series.clone());
                    self.series.entry(s.series.clone()).or_insert_with(|| {
                        SeriesState::new(s.kind, self.capacity, s.series.metric.as_str())
                    })
                }
            };
            if let Some(event) = state.push(s.ts_ms, s.value) {
                anomalies.push((s.series.clone(), event));
            }
        }
        anomalies
    }

    /// Notes a lifecycle event (restarts and unexpected exits count against stability,
    /// intended ones do not; a stop forgets nothing, so a report after the stop still
    /// explains it).
    pub fn lifecycle(&mut self, event: &LifecycleEvent) {
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
        self.series.retain(|k, _| k.source != source);
        self.by_source.remove(&source);
        self.restarts.remove(daemon);
    }

    /// Forgets series whose latest sample is older than `before` (daemons long gone, mounts
    /// unmounted, operations no longer recorded), and restarts older than the restart period,
    /// so memory stays bounded under churn. Returns how many series were dropped.
    pub fn expire(&mut self, before: TimestampMs) -> usize {
        let n = self.series.len();
        self.series
            .retain(|_, s| s.window.last().is_some_and(|p| p.0 >= before));
        self.restarts
            .retain(|_, times| times.back().is_some_and(|&t| t >= before));
        let dropped = n - self.series.len();
        if dropped > 0 {
            self.reindex();
        }
        dropped
    }

    /// The daemons with series.
    pub fn daemons(&self) -> Vec<DaemonId> {
        let mut out: Vec<DaemonId> = self
            .series
            .keys()
            .filter_map(|k| match &k.source {
                Source::Daemon(d) => Some(d.clone()),
                _ => None,
            })
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

    fn metric_view(&self, source: &Source, metric: &str) -> MetricView {
        self.find(source, metric)
            .map(|(k, s)| s.view(k, &self.rule))
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
        for (k, s) in &self.series {
            if k.source != host || k.metric.as_str() != names::SYSTEM_FILESYSTEM_USED {
                continue;
            }
            let Some(mount) = k.labels.get("mountpoint") else {
                continue;
            };
            let total = self
                .series
                .iter()
                .find(|(t, _)| {
                    t.source == host
                        && t.metric.as_str() == names::SYSTEM_FILESYSTEM_TOTAL
                        && t.labels.get("mountpoint") == Some(mount)
                })
                .and_then(|(_, t)| t.window.last().map(|p| p.1));
            let (Some(total), Some(used)) = (total, s.window.last().map(|p| p.1)) else {
                continue;
            };
            let view = s.view(k, &self.rule);
            let time_to_full = view
                .trend
                .filter(|t| t.direction == trend::Direction::Rising)
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
            cpu: self.metric_view(&host, names::SYSTEM_CPU_UTILIZATION),
            memory_total: self.last(&host, names::SYSTEM_MEMORY_TOTAL),
            memory_available: self.last(&host, names::SYSTEM_MEMORY_AVAILABLE),
            swap_used: self.last(&host, names::SYSTEM_SWAP_USED),
            cores: self.last(&host, names::SYSTEM_CPU_COUNT),
            filesystems,
        }
    }

    /// What the judgement of a daemon reads.
    pub fn daemon_view(&self, daemon: &DaemonId, host: &HostView, now: TimestampMs) -> DaemonView {
        let source = Source::Daemon(daemon.clone());
        let mv = |metric: &str| self.metric_view(&source, metric);
        let mut view = DaemonView::new(daemon.clone(), now);
        view.cpu = mv(names::PROCESS_CPU_UTILIZATION);
        view.rss = mv(names::PROCESS_MEMORY_RSS);
        // The watcher's rate gauges (the counters themselves are light series).
        view.disk_read = mv(names::PROCESS_DISK_READ_RATE);
        view.disk_write = mv(names::PROCESS_DISK_WRITE_RATE);
        view.fds = mv(names::PROCESS_OPEN_FDS);
        view.fd_limit = self.last(&source, names::PROCESS_FD_LIMIT);
        view.restarts_recent = self.restarts.get(daemon).map_or(0, |t| {
            t.iter().filter(|&&ts| ts > now - RESTART_PERIOD_MS).count() as u32
        });
        for (k, s) in self.of_source(&source) {
            if is_latency(k.metric.as_str()) {
                view.latency
                    .insert(k.metric.as_str().to_string(), s.view(k, &self.rule));
            }
        }
        let rising = |m: &MetricView| {
            m.trend
                .as_ref()
                .filter(|t| t.direction == trend::Direction::Rising)
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

    /// Judges the host and every daemon.
    pub fn judge_all(&self, now: TimestampMs) -> (HostJudgement, BTreeMap<DaemonId, Judgement>) {
        let host = self.host_view(now);
        let views: Vec<DaemonView> = self
            .daemons()
            .iter()
            .map(|d| self.daemon_view(d, &host, now))
            .collect();
        let own: Vec<(DaemonId, Vec<Bottleneck>, Option<f64>)> = views
            .iter()
            .map(|v| {
                (
                    v.daemon.clone(),
                    judge::bottlenecks(v, &host),
                    v.cpu.stats.as_ref().map(|s| s.mean),
                )
            })
            .collect();
        let host_judgement = judge::judge_host(&host, &own);
        let judgements = views
            .iter()
            .map(|v| {
                let involved = host_judgement.contended_daemons.contains(&v.daemon);
                let contention = host_judgement.contention.as_ref().filter(|_| involved);
                (v.daemon.clone(), judge::judge(v, &host, contention))
            })
            .collect();
        (host_judgement, judgements)
    }

    fn series_reports(&self, source: &Source) -> Vec<SeriesReport> {
        let mut out: Vec<SeriesReport> = self
            .of_source(source)
            .filter_map(|(k, s)| {
                let view = s.view(k, &self.rule);
                Some(SeriesReport {
                    metric: k.metric.clone(),
                    labels: k.labels.clone(),
                    kind: s.window.kind(),
                    stats: view.stats?,
                    trend: view.trend,
                    last_anomaly: view.anomaly,
                })
            })
            .collect();
        out.sort_by(|a, b| a.metric.cmp(&b.metric).then(a.labels.cmp(&b.labels)));
        out
    }

    /// The full report of a daemon, or `None` when nothing is known about it.
    pub fn report(&self, daemon: &DaemonId, now: TimestampMs) -> Option<DaemonReport> {
        let source = Source::Daemon(daemon.clone());
        let series = self.series_reports(&source);
        if series.is_empty() && !self.restarts.contains_key(daemon) {
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
            series,
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
            series: self.series_reports(&Source::Host),
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
        self.series.values().map(SeriesState::memory_bytes).sum()
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
mod tests {
    use super::*;
    use crate::analyzer::judge::BottleneckKind;
    use crate::types::Sample;

    const T0: TimestampMs = 1_767_225_600_000;

    fn sample(source: Source, metric: &str, labels: Labels, ts: TimestampMs, value: f64) -> Sample {
        Sample {
            series: SeriesKey::new(source, metric.to_string(), labels),
            kind: MetricKind::Gauge,
            ts_ms: ts,
            value,
        }
    }

    fn daemon(d: &str) -> Source {
        Source::Daemon(DaemonId::new(d))
    }

    /// Memory per series stops growing once the windows are full, whatever the run length.
    #[test]
    fn memory_is_bounded() {
        let mut state = AnalyzerState::new(600);
        let feed = |state: &mut AnalyzerState, from: i64, n: i64| {
            for i in from..from + n {
                let batch = MetricBatch {
                    samples: vec![sample(
                        daemon("d"),
                        names::PROCESS_CPU_UTILIZATION,
                        Labels::empty(),
                        T0 + i * 1000,
                        0.1,
                    )],
                };
                state.add(&batch);
            }
        };
        feed(&mut state, 0, 30_000);
        let after_8h = state.memory_bytes();
        feed(&mut state, 30_000, 100_000);
        assert_eq!(state.memory_bytes(), after_8h);
        assert!(after_8h < 40_000, "{after_8h} bytes for one series");
    }

    /// A leaking daemon is reported as such, with the time until it reaches the host's
    /// memory; a level shift is an alert-worthy anomaly; restarts count within 10 minutes;
    /// stale series expire.
    #[test]
    fn leak_shift_restarts_and_expiry() {
        let mut state = AnalyzerState::new(600);
        let mut shift = None;
        for i in 0..600i64 {
            let ts = T0 + i * 1000;
            let latency = if i < 400 { 0.01 } else { 0.05 } + (i % 7) as f64 * 1e-4;
            let batch = MetricBatch {
                samples: vec![
                    sample(
                        daemon("d"),
                        names::PROCESS_MEMORY_RSS,
                        Labels::empty(),
                        ts,
                        1e8 + i as f64 * 2e5 + (i % 5) as f64 * 4096.0,
                    ),
                    sample(
                        Source::Host,
                        names::SYSTEM_MEMORY_TOTAL,
                        Labels::empty(),
                        ts,
                        8e9,
                    ),
                    sample(
                        daemon("d"),
                        "search.latency_seconds",
                        Labels::empty(),
                        ts,
                        latency,
                    ),
                ],
            };
            for (key, event) in state.add(&batch) {
                if key.metric.as_str() == "search.latency_seconds"
                    && event.kind == AnomalyKind::LevelShiftUp
                {
                    assert!(alert_worthy(&event));
                    shift.get_or_insert(event);
                }
            }
        }
        let shift = shift.expect("the latency level shift is found");
        assert!(
            shift.at_ms >= T0 + 400_000 && shift.at_ms < T0 + 420_000,
            "{shift:?}"
        );
        let now = T0 + 600_000;
        let report = state.report(&DaemonId::new("d"), now).expect("report");
        let kinds: Vec<_> = report.bottlenecks.iter().map(|b| b.kind).collect();
        assert!(kinds.contains(&BottleneckKind::MemoryLeak), "{kinds:?}");
        assert!(
            kinds.contains(&BottleneckKind::LatencyRegression),
            "{kinds:?}"
        );
        let prediction = &report.predictions[0];
        // 200 kB/s from 1.2e8 to 8e9 bytes: about 39 400 s.
        let eta_s = (prediction.when.eta_ms - now) as f64 / 1000.0;
        assert!((eta_s - 39_400.0).abs() < 1000.0, "{eta_s}");

        for k in 0..3 {
            state.lifecycle(&LifecycleEvent {
                daemon: DaemonId::new("d"),
                pid: 10 + k,
                ts_ms: now - 60_000,
                kind: LifecycleKind::Restarted,
                detail: String::new(),
                intended: false,
            });
        }
        let report = state.report(&DaemonId::new("d"), now).expect("report");
        assert_eq!(report.restarts_recent, 3);
        assert!(report
            .bottlenecks
            .iter()
            .any(|b| b.kind == BottleneckKind::RestartInstability));
        let later = now + RESTART_PERIOD_MS;
        assert_eq!(
            state
                .report(&DaemonId::new("d"), later)
                .unwrap()
                .restarts_recent,
            0
        );
        assert_eq!(state.expire(now + 1), state.len() + 3);
        assert!(state.is_empty());
        assert!(state.report(&DaemonId::new("d"), later).is_none());
    }

    /// A file system filling at a steady rate is predicted in the host report.
    #[test]
    fn filling_file_system_is_predicted() {
        let mut state = AnalyzerState::new(600);
        let mount = || Labels::from_pairs([("mountpoint", "/data")]);
        for i in 0..300i64 {
            let ts = T0 + i * 1000;
            state.add(&MetricBatch {
                samples: vec![
                    sample(
                        Source::Host,
                        names::SYSTEM_FILESYSTEM_USED,
                        mount(),
                        ts,
                        5e9 + i as f64 * 1e6,
                    ),
                    sample(
                        Source::Host,
                        names::SYSTEM_FILESYSTEM_TOTAL,
                        mount(),
                        ts,
                        1e10,
                    ),
                ],
            });
        }
        let report = state.host_report(T0 + 300_000);
        let p = report.predictions.first().expect("a prediction");
        assert!(p.limit.contains("/data"), "{p:?}");
        // (1e10 − 5.3e9) / 1e6 per s ≈ 4700 s.
        let eta_s = (p.when.eta_ms - (T0 + 300_000)) as f64 / 1000.0;
        assert!((eta_s - 4700.0).abs() < 100.0, "{eta_s}");
        assert!(report.judgement.score.value < 100.0);
    }
}
