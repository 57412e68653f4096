//! The judgement as series (`perfvisor.judgement.*`, names in `metric_names`): at every
//! judgement the analyzer turns each daemon's and the host's score, level, bottlenecks,
//! trend slopes, predicted time to a limit, anomaly count, restarts and up/down into
//! samples. They go to storage like any sample, so they have history, `/metrics` shows the
//! latest, and remote-write ships them from history with nothing of its own. They do not
//! enter the analyzer's own series: a judgement is never judged again (no anomaly of a
//! score, no trend of a level).
//!
//! Labels come from fixed sets only (bottleneck kinds, three severities, six resources, and
//! the host's mount points, which its own `system.filesystem.*` series already carry).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::judge::{
    BottleneckKind, DaemonView, HostJudgement, HostView, Judgement, Level, MetricView,
};
use super::AnomalyEvent;
use crate::metric_names as names;
use crate::types::{
    DaemonId, Labels, LifecycleEvent, LifecycleKind, MetricBatch, MetricKind, Sample, SeriesKey,
    Source, TimestampMs,
};

/// The window of [`names::JUDGEMENT_ANOMALIES`].
pub const ANOMALY_WINDOW_MS: i64 = 3_600_000;

/// Most anomaly times kept per source: a source past it counts as this many.
pub const MAX_ANOMALIES_KEPT: usize = 10_000;

/// Bottleneck severity from which its alert (and its `severity` label) is critical.
pub const CRITICAL_FROM: f64 = 0.8;

/// The level as a number, 0 (critical) to 4 (excellent).
pub fn level_number(level: Level) -> f64 {
    match level {
        Level::Critical => 0.0,
        Level::Poor => 1.0,
        Level::Average => 2.0,
        Level::Good => 3.0,
        Level::Excellent => 4.0,
    }
}

/// The resources whose trend slopes are judgement series, in [`ViewSummary::slopes`]'s
/// order.
const SLOPE_RESOURCES: [&str; 5] = ["cpu", "memory", "descriptors", "disk_read", "disk_write"];

/// What the judgement series read of a daemon's view, kept once the view is dropped (a
/// view is 3 KB; this is about 130 bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct ViewSummary {
    /// The daemon.
    pub daemon: DaemonId,
    /// Trend slopes per second of CPU, memory, descriptors, disk reads and disk writes
    /// (finite ones only).
    pub slopes: [Option<f64>; 5],
    /// When memory reaches the host's memory, if its trend says so.
    pub rss_eta_ms: Option<TimestampMs>,
    /// When descriptors reach their limit, if their trend says so.
    pub fds_eta_ms: Option<TimestampMs>,
    /// Restarts and unexpected exits in the last 10 minutes.
    pub restarts_recent: u32,
}

impl ViewSummary {
    /// The summary of `view`.
    pub fn of(view: &DaemonView) -> Self {
        ViewSummary {
            daemon: view.daemon.clone(),
            slopes: [
                &view.cpu,
                &view.rss,
                &view.fds,
                &view.disk_read,
                &view.disk_write,
            ]
            .map(slope),
            rss_eta_ms: view.rss_time_to_limit.as_ref().map(|t| t.eta_ms),
            fds_eta_ms: view.fds_time_to_limit.as_ref().map(|t| t.eta_ms),
            restarts_recent: view.restarts_recent,
        }
    }
}

/// What the judgement series need beyond one judgement: whether each daemon runs, when
/// anomalies were seen, and the latest samples made.
#[derive(Debug, Default)]
pub struct JudgementMetrics {
    up: HashMap<DaemonId, bool>,
    anomalies: HashMap<Source, VecDeque<TimestampMs>>,
    /// The last judgement's samples, shared with the storage batch they went out in.
    latest: Arc<MetricBatch>,
    /// Label sets made once and shared: a sample takes an `Arc` clone instead of a map of
    /// new strings (at 1,000 daemons about 20,000 label maps every judgement otherwise).
    labels: HashMap<Vec<(&'static str, &'static str)>, Labels>,
}

/// The shared label set of `pairs`, made on first use.
fn shared(
    cache: &mut HashMap<Vec<(&'static str, &'static str)>, Labels>,
    pairs: &[(&'static str, &'static str)],
) -> Labels {
    if let Some(labels) = cache.get(pairs) {
        return labels.clone();
    }
    let labels = Labels::from_pairs(pairs.iter().copied());
    cache.insert(pairs.to_vec(), labels.clone());
    labels
}

impl JudgementMetrics {
    /// Notes a life-cycle event: started, restarted and exec'd daemons are up; stopped and
    /// exited ones down.
    pub fn lifecycle(&mut self, event: &LifecycleEvent) {
        let up = !matches!(event.kind, LifecycleKind::Stopped | LifecycleKind::Exited);
        self.up.insert(event.daemon.clone(), up);
    }

    /// Notes the anomalies found in a batch at `now`.
    pub fn anomalies<'a>(
        &mut self,
        found: impl IntoIterator<Item = (&'a SeriesKey, &'a AnomalyEvent)>,
        now: TimestampMs,
    ) {
        for (series, _) in found {
            let times = self.anomalies.entry(series.source.clone()).or_default();
            times.push_back(now);
            if times.len() > MAX_ANOMALIES_KEPT {
                times.pop_front();
            }
        }
    }

    /// The latest judgement samples (for `/metrics`).
    pub fn latest(&self) -> &[Sample] {
        &self.latest.samples
    }

    /// The samples of one judgement at `now`, from the summaries of the views it was made
    /// from (as [`crate::analyzer::AnalyzerState::judge_all_with_views`] returns them); they
    /// also become [`JudgementMetrics::latest`].
    pub fn judged(
        &mut self,
        now: TimestampMs,
        host_view: &HostView,
        views: &[ViewSummary],
        host: &HostJudgement,
        daemons: &BTreeMap<DaemonId, Judgement>,
    ) -> Arc<MetricBatch> {
        // The last judgement's samples go before this one's are made: storage took its
        // share of them seconds ago, so at 1,000 daemons the two batches (2.9 MB each) are
        // not both held at the judgement's peak. Nothing reads `latest` in between: this
        // actor answers one message at a time.
        self.latest = Arc::default();
        for times in self.anomalies.values_mut() {
            while times.front().is_some_and(|&t| t <= now - ANOMALY_WINDOW_MS) {
                times.pop_front();
            }
        }
        self.anomalies.retain(|_, t| !t.is_empty());
        self.up.retain(|d, _| daemons.contains_key(d));

        // About 20 series a daemon (score, level, 8 bottlenecks, 5 slopes, 2 times to a
        // limit, restarts, up, anomalies) and as many for the host: sized once, since at
        // 1,000 daemons doubling from empty copied 2 MB and held both copies at its peak.
        let mut out = Vec::with_capacity((views.len() + 1) * 20);
        for view in views {
            let daemon = &view.daemon;
            let Some(judgement) = daemons.get(daemon) else {
                continue;
            };
            let source = Source::Daemon(daemon.clone());
            let mut put = |metric: &'static str, labels: Labels, value: f64| {
                out.push(Sample {
                    series: SeriesKey::new(source.clone(), metric, labels),
                    kind: MetricKind::Gauge,
                    ts_ms: now,
                    value,
                });
            };
            put(
                names::JUDGEMENT_SCORE,
                Labels::empty(),
                judgement.score.value,
            );
            put(
                names::JUDGEMENT_LEVEL,
                Labels::empty(),
                level_number(judgement.score.level),
            );
            for kind in BottleneckKind::ALL {
                let found = judgement.bottlenecks.iter().find(|b| b.kind == kind);
                let (severity, value) = match found {
                    Some(b) if b.severity >= CRITICAL_FROM => ("critical", b.severity),
                    Some(b) => ("warning", b.severity),
                    None => ("none", 0.0),
                };
                put(
                    names::JUDGEMENT_BOTTLENECK,
                    shared(
                        &mut self.labels,
                        &[("kind", kind.as_str()), ("severity", severity)],
                    ),
                    value,
                );
            }
            for (resource, slope) in SLOPE_RESOURCES.into_iter().zip(view.slopes) {
                if let Some(slope) = slope {
                    put(
                        names::JUDGEMENT_TREND_SLOPE,
                        shared(&mut self.labels, &[("resource", resource)]),
                        slope,
                    );
                }
            }
            for (resource, eta_ms) in [
                ("memory", view.rss_eta_ms),
                ("descriptors", view.fds_eta_ms),
            ] {
                if let Some(eta_ms) = eta_ms {
                    let seconds = (eta_ms - now).max(0) as f64 / 1000.0;
                    put(
                        names::JUDGEMENT_TIME_TO_LIMIT,
                        shared(&mut self.labels, &[("resource", resource)]),
                        seconds,
                    );
                }
            }
            put(
                names::JUDGEMENT_RESTARTS,
                Labels::empty(),
                f64::from(view.restarts_recent),
            );
            let up = self.up.get(daemon).copied().unwrap_or(true);
            put(
                names::JUDGEMENT_UP,
                Labels::empty(),
                f64::from(u8::from(up)),
            );
            let anomalies = self.anomalies.get(&source).map_or(0, VecDeque::len);
            put(
                names::JUDGEMENT_ANOMALIES,
                Labels::empty(),
                anomalies as f64,
            );
        }

        let mut put = |metric: &'static str, labels: Labels, value: f64| {
            out.push(Sample {
                series: SeriesKey::new(Source::Host, metric, labels),
                kind: MetricKind::Gauge,
                ts_ms: now,
                value,
            });
        };
        put(names::JUDGEMENT_SCORE, Labels::empty(), host.score.value);
        put(
            names::JUDGEMENT_LEVEL,
            Labels::empty(),
            level_number(host.score.level),
        );
        let (severity, value) = match &host.contention {
            Some(b) if b.severity >= CRITICAL_FROM => ("critical", b.severity),
            Some(b) => ("warning", b.severity),
            None => ("none", 0.0),
        };
        put(
            names::JUDGEMENT_BOTTLENECK,
            shared(
                &mut self.labels,
                &[
                    ("kind", BottleneckKind::HostContention.as_str()),
                    ("severity", severity),
                ],
            ),
            value,
        );
        if let Some(s) = slope(&host_view.cpu) {
            put(
                names::JUDGEMENT_TREND_SLOPE,
                shared(&mut self.labels, &[("resource", "cpu")]),
                s,
            );
        }
        for fs in &host_view.filesystems {
            if let Some(t) = &fs.time_to_full {
                put(
                    names::JUDGEMENT_TIME_TO_LIMIT,
                    Labels::from_pairs([
                        ("resource", "filesystem"),
                        ("mountpoint", fs.mountpoint.as_str()),
                    ]),
                    (t.eta_ms - now).max(0) as f64 / 1000.0,
                );
            }
        }
        let anomalies = self.anomalies.get(&Source::Host).map_or(0, VecDeque::len);
        put(
            names::JUDGEMENT_ANOMALIES,
            Labels::empty(),
            anomalies as f64,
        );

        out.retain(|s| s.value.is_finite());
        self.latest = Arc::new(MetricBatch { samples: out });
        Arc::clone(&self.latest)
    }
}

/// The fitted slope per second of a metric's trend, when it has one.
fn slope(m: &MetricView) -> Option<f64> {
    m.trend
        .as_ref()
        .map(|t| t.fit.slope_per_s)
        .filter(|s| s.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::AnalyzerState;

    fn batch(
        daemon: &str,
        metric: &str,
        points: impl IntoIterator<Item = (i64, f64)>,
    ) -> MetricBatch {
        MetricBatch {
            samples: points
                .into_iter()
                .map(|(ts, v)| Sample {
                    series: SeriesKey::new(
                        Source::Daemon(DaemonId::new(daemon)),
                        metric.to_string(),
                        Labels::empty(),
                    ),
                    kind: MetricKind::Gauge,
                    ts_ms: ts,
                    value: v,
                })
                .collect(),
        }
    }

    fn find<'a>(
        samples: &'a [Sample],
        source: &Source,
        metric: &str,
        label: Option<(&str, &str)>,
    ) -> Vec<&'a Sample> {
        samples
            .iter()
            .filter(|s| {
                &s.series.source == source
                    && s.series.metric.as_str() == metric
                    && label.is_none_or(|(k, v)| s.series.labels.get(k) == Some(v))
            })
            .collect()
    }

    /// Every daemon judged gets its score, level, one bottleneck series per kind, restarts,
    /// up and anomalies; a leaking daemon its memory slope and time to the host's memory;
    /// the host its own score; a stop turns `up` to 0.
    #[test]
    fn judgement_samples_cover_every_daemon_and_the_host() {
        let mut state = AnalyzerState::new(600);
        let t0 = 1_700_000_000_000;
        // Host memory known, a daemon whose memory climbs steadily for an hour.
        let host = MetricBatch {
            samples: (0..360)
                .map(|i| Sample {
                    series: SeriesKey::new(
                        Source::Host,
                        names::SYSTEM_MEMORY_TOTAL,
                        Labels::empty(),
                    ),
                    kind: MetricKind::Gauge,
                    ts_ms: t0 + i * 10_000,
                    value: 8e9,
                })
                .collect(),
        };
        state.add(&host);
        state.add(&batch(
            "leaky",
            names::PROCESS_MEMORY_RSS,
            (0..360).map(|i| (t0 + i * 10_000, 1e8 + i as f64 * 1e6)),
        ));
        state.add(&batch(
            "calm",
            names::PROCESS_CPU_UTILIZATION,
            (0..360).map(|i| (t0 + i * 10_000, 0.1)),
        ));
        let now = t0 + 3_600_000;
        let (host_view, views, host_j, daemons) = state.judge_all_with_views(now);
        let mut jm = JudgementMetrics::default();
        let key = SeriesKey::new(Source::Daemon(DaemonId::new("calm")), "x", Labels::empty());
        let event = AnomalyEvent {
            at_ms: now,
            kind: super::super::anomaly::AnomalyKind::Spike,
            value: 1.0,
            baseline: 0.0,
            score: 9.0,
        };
        jm.anomalies([(&key, &event)], now - 2 * ANOMALY_WINDOW_MS);
        jm.anomalies([(&key, &event), (&key, &event)], now - 60_000);
        let out = jm
            .judged(now, &host_view, &views, &host_j, &daemons)
            .samples
            .clone();
        for d in ["leaky", "calm"] {
            let src = Source::Daemon(DaemonId::new(d));
            let score = find(&out, &src, names::JUDGEMENT_SCORE, None);
            assert_eq!(score.len(), 1, "{d}");
            assert!((0.0..=100.0).contains(&score[0].value));
            assert_eq!(find(&out, &src, names::JUDGEMENT_LEVEL, None).len(), 1);
            assert_eq!(
                find(&out, &src, names::JUDGEMENT_BOTTLENECK, None).len(),
                BottleneckKind::ALL.len()
            );
            assert_eq!(find(&out, &src, names::JUDGEMENT_UP, None)[0].value, 1.0);
            assert_eq!(find(&out, &src, names::JUDGEMENT_RESTARTS, None).len(), 1);
        }
        let calm = Source::Daemon(DaemonId::new("calm"));
        assert_eq!(
            find(&out, &calm, names::JUDGEMENT_ANOMALIES, None)[0].value,
            2.0
        );
        let leaky = Source::Daemon(DaemonId::new("leaky"));
        let slope = find(
            &out,
            &leaky,
            names::JUDGEMENT_TREND_SLOPE,
            Some(("resource", "memory")),
        );
        assert!((slope[0].value - 1e5).abs() < 1e3, "{slope:?}");
        let ttl = find(
            &out,
            &leaky,
            names::JUDGEMENT_TIME_TO_LIMIT,
            Some(("resource", "memory")),
        );
        // (8e9 − 4.6e8) / 1e5 per second ≈ 75,400 s.
        assert!((ttl[0].value - 75_400.0).abs() < 2_000.0, "{ttl:?}");
        let leak = find(
            &out,
            &leaky,
            names::JUDGEMENT_BOTTLENECK,
            Some(("kind", "memory_leak")),
        );
        assert_eq!(leak.len(), 1);
        assert_eq!(
            find(&out, &Source::Host, names::JUDGEMENT_SCORE, None).len(),
            1
        );
        assert_eq!(jm.latest().len(), out.len());

        jm.lifecycle(&LifecycleEvent {
            daemon: DaemonId::new("calm"),
            pid: 1,
            ts_ms: now,
            kind: LifecycleKind::Stopped,
            detail: String::new(),
            intended: true,
        });
        let out = jm
            .judged(now + 5_000, &host_view, &views, &host_j, &daemons)
            .samples
            .clone();
        assert_eq!(find(&out, &calm, names::JUDGEMENT_UP, None)[0].value, 0.0);
    }
}
