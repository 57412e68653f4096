//! Windowed statistics over each series, and the per-daemon report. Plain logic, no actix.
//!
//! # Percentile definition
//!
//! Percentiles use statrs' `OrderStatistics::quantile`, which is R's type 8 estimator
//! ("median-unbiased", Hyndman & Fan 1996): with `n` sorted values and
//! `h = (n + 1/3)·p + 1/3`, the estimate interpolates linearly between the `⌊h⌋`-th and
//! `⌊h⌋+1`-th smallest values, clamped to the minimum and maximum. The median is the
//! 0.5 quantile. `stddev` is the sample standard deviation (divisor `n − 1`).

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use statrs::statistics::{Data, Distribution, Max, Min, OrderStatistics};

use crate::types::{
    DaemonId, Labels, MetricBatch, MetricKind, MetricName, SeriesKey, Source, TimestampMs,
};

/// Statistics of one window of values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Number of values.
    pub count: usize,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// 0.5 quantile.
    pub median: f64,
    /// Sample standard deviation (n − 1); 0 for one value.
    pub stddev: f64,
    /// 0.50 quantile.
    pub p50: f64,
    /// 0.90 quantile.
    pub p90: f64,
    /// 0.95 quantile.
    pub p95: f64,
    /// 0.99 quantile.
    pub p99: f64,
    /// The latest value.
    pub last: f64,
}

impl WindowStats {
    /// Statistics of `values` (in time order), or `None` when empty.
    pub fn compute(values: &[f64]) -> Option<WindowStats> {
        let last = *values.last()?;
        let mut data = Data::new(values.to_vec());
        let stddev = if values.len() > 1 {
            data.std_dev().unwrap_or(0.0)
        } else {
            0.0
        };
        Some(WindowStats {
            count: values.len(),
            min: data.min(),
            max: data.max(),
            mean: data.mean().unwrap_or(f64::NAN),
            median: data.quantile(0.5),
            stddev,
            p50: data.quantile(0.5),
            p90: data.quantile(0.9),
            p95: data.quantile(0.95),
            p99: data.quantile(0.99),
            last,
        })
    }
}

/// Per-second rates between consecutive counter readings; a decrease is a counter reset
/// and yields no rate for that step.
pub fn counter_rates(points: impl IntoIterator<Item = (TimestampMs, f64)>) -> Vec<f64> {
    let mut out = Vec::new();
    let mut prev: Option<(TimestampMs, f64)> = None;
    for (t, v) in points {
        if let Some((pt, pv)) = prev {
            let dt = (t - pt) as f64 / 1000.0;
            if dt > 0.0 && v >= pv {
                out.push((v - pv) / dt);
            }
        }
        prev = Some((t, v));
    }
    out
}

/// The recent samples of one series, at most `capacity` of them.
#[derive(Clone, Debug)]
pub struct SeriesWindow {
    kind: MetricKind,
    points: VecDeque<(TimestampMs, f64)>,
    capacity: usize,
}

impl SeriesWindow {
    /// An empty window.
    pub fn new(kind: MetricKind, capacity: usize) -> Self {
        SeriesWindow {
            kind,
            points: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
        }
    }
    /// Adds a sample, evicting the oldest when full.
    pub fn push(&mut self, ts: TimestampMs, value: f64) {
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back((ts, value));
    }
    /// Statistics of the window: of the values for gauges, of the per-second rates for
    /// counters.
    pub fn stats(&self) -> Option<WindowStats> {
        match self.kind {
            MetricKind::Gauge => {
                let values: Vec<f64> = self.points.iter().map(|p| p.1).collect();
                WindowStats::compute(&values)
            }
            MetricKind::Counter => {
                WindowStats::compute(&counter_rates(self.points.iter().copied()))
            }
        }
    }
    /// Gauge or counter.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }
    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.points.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// One series in a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesReport {
    /// The metric.
    pub metric: MetricName,
    /// Its labels.
    pub labels: Labels,
    /// Gauge or counter; for counters the statistics are of per-second rates.
    pub kind: MetricKind,
    /// Statistics over the analyzer's window.
    pub stats: WindowStats,
}

/// What `report(daemon)` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonReport {
    /// The daemon.
    pub daemon: DaemonId,
    /// When the report was made.
    pub generated_at_ms: TimestampMs,
    /// One entry per series of the daemon, sorted by metric name.
    pub series: Vec<SeriesReport>,
}

impl DaemonReport {
    /// The statistics of one metric (the first series with that name).
    pub fn metric(&self, name: &str) -> Option<&WindowStats> {
        self.series
            .iter()
            .find(|s| s.metric.as_str() == name)
            .map(|s| &s.stats)
    }
}

/// All series windows, indexed by daemon for reports.
#[derive(Debug)]
pub struct Windows {
    capacity: usize,
    series: HashMap<SeriesKey, SeriesWindow>,
}

impl Windows {
    /// Windows of `capacity` samples each.
    pub fn new(capacity: usize) -> Self {
        Windows {
            capacity,
            series: HashMap::new(),
        }
    }
    /// Folds a batch in.
    pub fn add(&mut self, batch: &MetricBatch) {
        for s in &batch.samples {
            match self.series.get_mut(&s.series) {
                Some(w) => w.push(s.ts_ms, s.value),
                None => {
                    let mut w = SeriesWindow::new(s.kind, self.capacity);
                    w.push(s.ts_ms, s.value);
                    self.series.insert(s.series.clone(), w);
                }
            }
        }
    }
    /// The report of one daemon, or `None` when nothing was seen of it.
    pub fn report(&self, daemon: &DaemonId, now: TimestampMs) -> Option<DaemonReport> {
        let source = Source::Daemon(daemon.clone());
        let mut series: Vec<SeriesReport> = self
            .series
            .iter()
            .filter(|(k, _)| k.source == source)
            .filter_map(|(k, w)| {
                w.stats().map(|stats| SeriesReport {
                    metric: k.metric.clone(),
                    labels: k.labels.clone(),
                    kind: w.kind(),
                    stats,
                })
            })
            .collect();
        if series.is_empty() {
            return None;
        }
        series.sort_by(|a, b| a.metric.cmp(&b.metric).then(a.labels.cmp(&b.labels)));
        Some(DaemonReport {
            daemon: daemon.clone(),
            generated_at_ms: now,
            series,
        })
    }
    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }
    /// True when no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statistics match hand-computed values; percentiles follow R type 8.
    #[test]
    fn stats_of_known_values() {
        let s = WindowStats::compute(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!(
            (s.count, s.min, s.max, s.mean, s.last),
            (10, 1.0, 10.0, 5.5, 10.0)
        );
        assert!((s.stddev - 3.0276503540974917).abs() < 1e-12);
        assert_eq!(s.median, 5.5);
        // Type 8: h = (10 + 1/3)·0.9 + 1/3 = 9.6333 → 9 + 0.6333·(10 − 9).
        assert!((s.p90 - 9.633333333333333).abs() < 1e-9, "{}", s.p90);
        assert!(WindowStats::compute(&[]).is_none());
        assert_eq!(WindowStats::compute(&[4.0]).unwrap().stddev, 0.0);
    }

    /// Counter rates are per second and skip resets.
    #[test]
    fn counter_rates_skip_resets() {
        let r = counter_rates([(0, 0.0), (1000, 5.0), (3000, 9.0), (4000, 1.0), (5000, 3.0)]);
        assert_eq!(r, vec![5.0, 2.0, 2.0]);
    }

    /// Windows evict the oldest sample once full.
    #[test]
    fn window_evicts() {
        let mut w = SeriesWindow::new(MetricKind::Gauge, 3);
        for i in 0..5 {
            w.push(i, i as f64);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.stats().unwrap().min, 2.0);
    }
}
