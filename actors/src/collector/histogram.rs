//! Histograms of app metrics: the observations of one series within one interval go into a
//! DDSketch (the storage's, `storage::DdSketch`), and when the interval closes they become a
//! fixed handful of samples, whatever the number of observations.
//!
//! # What is stored per interval
//! For a histogram `m` with labels `L` (from [`Recorder::observe`], the `metrics` facade's
//! `histogram!`, a profiled operation or a closed `tracing` span), every closed interval
//! (default [`DEFAULT_HISTOGRAM_INTERVAL_MS`], 10 s) adds five samples, stamped at the end of
//! the interval:
//! - `m{L, quantile="0.5"}`, `m{L, quantile="0.9"}`, `m{L, quantile="0.99"}`: gauges, the
//!   interval's quantiles from the sketch (the rank `⌊q·(n−1)⌋`, within 0.5 % relative error
//!   of the exact order statistic, see the sketch's documentation), the Prometheus summary
//!   convention;
//! - `m.count{L}` and `m.sum{L}`: counters, running totals of the observations and their
//!   values (as Prometheus' `_count` and `_sum`), so any span's count, sum and mean are exact
//!   differences.
//!
//! So a histogram costs 5 points per interval in the history (0.5 points a second at the
//! default), not one point per observation, and 5 windows of the analyzer. The closed
//! interval's sketch also goes to the analyzer, which merges them into the report's window
//! statistics (count, sum, mean, min, max, p50/p90/p99 over the last N minutes).
//!
//! An interval is closed when an observation of a later interval arrives, when the collector
//! sees that the clock has passed its end by a grace ([`CLOSE_GRACE_MS`], or half the
//! interval when shorter: observations stamped just before the end may still be in the
//! recorder's channel), checked at every drain and host-sampling tick, and on a drain for a
//! flush or shutdown, which closes every open interval early, stamped with the clock: what was
//! recorded before `flush()` is then on disk. Late observations of an interval already closed
//! open it again; its next samples are stamped just after the previous ones, so a series'
//! timestamps never repeat.
//!
//! Memory is bounded: at most [`MAX_HISTOGRAMS`] series, each one open sketch (a few hundred
//! bytes for latencies spanning a factor of 10; at most 2 × 4096 buckets); past the cap new
//! series' observations are dropped, counted and logged (a warning per host-sampling tick
//! that saw drops); series idle for an hour are forgotten.
//!
//! [`Recorder::observe`]: crate::recorder::Recorder::observe

use crate::storage::DdSketch;
use crate::types::{FastMap, Labels, MetricKind, Sample, SeriesKey, TimestampMs};

/// Default length of a histogram interval, ms.
pub const DEFAULT_HISTOGRAM_INTERVAL_MS: i64 = 10_000;
/// How long after its end an interval waits for observations still on their way before
/// the clock closes it, ms (half the interval when that is shorter).
pub const CLOSE_GRACE_MS: i64 = 1_000;
/// Most histogram series kept open at once.
pub const MAX_HISTOGRAMS: usize = 10_000;
/// The quantiles stored per interval, with their `quantile` label values.
pub const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")];
/// The label that names a quantile series.
pub const QUANTILE_LABEL: &str = "quantile";
/// Suffix of the running count of a histogram's observations.
pub const COUNT_SUFFIX: &str = ".count";
/// Suffix of the running sum of a histogram's observations.
pub const SUM_SUFFIX: &str = ".sum";

/// One closed interval of a histogram, for the analyzer's window.
#[derive(Clone, Debug)]
pub struct ClosedInterval {
    /// The histogram's series (its base metric and labels, without `quantile`).
    pub series: SeriesKey,
    /// When the interval began.
    pub start_ms: TimestampMs,
    /// When the samples of the interval were stamped (its end, or earlier on a flush).
    pub at_ms: TimestampMs,
    /// The sum of the interval's observations.
    pub sum: f64,
    /// The interval's observations.
    pub(crate) sketch: DdSketch,
}

impl ClosedInterval {
    /// The observations in the interval.
    pub fn count(&self) -> u64 {
        self.sketch.count()
    }
}

/// One histogram series: its open interval and running totals.
#[derive(Debug)]
struct Histogram {
    /// The open interval's number (`ts / interval`), its sketch and sum.
    open: Option<(i64, DdSketch, f64)>,
    count_total: f64,
    sum_total: f64,
    /// The stamp of the samples last emitted.
    last_at: Option<TimestampMs>,
}

/// The open histograms of every series (see the module documentation).
#[derive(Debug)]
pub struct Histograms {
    interval_ms: i64,
    series: FastMap<SeriesKey, Histogram>,
    /// Observations refused because [`MAX_HISTOGRAMS`] series were open.
    refused: u64,
}

/// What closing intervals produced: the samples to store and analyse, and the sketches for
/// the analyzer's window.
#[derive(Debug, Default)]
pub struct Closed {
    /// The samples (five per interval).
    pub samples: Vec<Sample>,
    /// The intervals.
    pub intervals: Vec<ClosedInterval>,
}

impl Histograms {
    /// Histograms closing every `interval_ms` (at least 1 ms).
    pub fn new(interval_ms: i64) -> Self {
        Histograms {
            interval_ms: interval_ms.max(1),
            series: FastMap::default(),
            refused: 0,
        }
    }

    /// The interval length, ms.
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// Observations refused because too many series were open.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Adds one observation of `series` at `ts`; a finite value only. Closes the series'
    /// open interval first when `ts` belongs to a later one.
    pub fn observe(&mut self, series: SeriesKey, ts: TimestampMs, value: f64, out: &mut Closed) {
        if !value.is_finite() {
            return;
        }
        let (index, interval_ms) = (ts.div_euclid(self.interval_ms), self.interval_ms);
        // One hash on the usual path: the series is open already.
        if let Some(h) = self.series.get_mut(&series) {
            add(&series, h, index, interval_ms, value, out);
            return;
        }
        if self.series.len() >= MAX_HISTOGRAMS {
            self.refused += 1;
            return;
        }
        let mut h = Histogram {
            open: None,
            count_total: 0.0,
            sum_total: 0.0,
            last_at: None,
        };
        add(&series, &mut h, index, interval_ms, value, out);
        self.series.insert(series, h);
    }

    /// Closes the intervals that ended at least the grace before `now`.
    pub fn close_due(&mut self, now: TimestampMs, out: &mut Closed) {
        let interval_ms = self.interval_ms;
        let grace = CLOSE_GRACE_MS.min(interval_ms / 2);
        for (key, h) in self.series.iter_mut() {
            if h.open
                .as_ref()
                .is_some_and(|(index, _, _)| (index + 1) * interval_ms + grace <= now)
            {
                close(key, h, interval_ms, None, out);
            }
        }
    }

    /// Closes every open interval now (a flush or shutdown), stamping early ones with `now`.
    pub fn close_all(&mut self, now: TimestampMs, out: &mut Closed) {
        let interval_ms = self.interval_ms;
        for (key, h) in self.series.iter_mut() {
            if h.open.is_some() {
                close(key, h, interval_ms, Some(now), out);
            }
        }
    }

    /// Forgets series without an open interval whose last samples are older than `before`,
    /// so that the map does not grow under churn. Their running totals restart from 0,
    /// which readers take as a counter reset.
    pub fn expire(&mut self, before: TimestampMs) {
        self.series
            .retain(|_, h| h.open.is_some() || h.last_at.is_some_and(|t| t >= before));
    }

    /// Open histogram series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no histogram series is open.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Adds an observation to interval `index` of `h`, closing its open interval first when
/// `index` is later.
fn add(
    key: &SeriesKey,
    h: &mut Histogram,
    index: i64,
    interval_ms: i64,
    value: f64,
    out: &mut Closed,
) {
    if h.open.as_ref().is_some_and(|(open, _, _)| index > *open) {
        close(key, h, interval_ms, None, out);
    }
    let (_, sketch, sum) = h
        .open
        .get_or_insert_with(|| (index, DdSketch::default(), 0.0));
    sketch.insert(value);
    *sum += value;
}

/// Closes `h`'s open interval: its samples are stamped at the interval's end or `at` when
/// earlier, and always after the previous ones.
fn close(
    key: &SeriesKey,
    h: &mut Histogram,
    interval_ms: i64,
    at: Option<TimestampMs>,
    out: &mut Closed,
) {
    let Some((index, sketch, sum)) = h.open.take() else {
        return;
    };
    if sketch.is_empty() {
        return;
    }
    let end = (index + 1) * interval_ms;
    let mut stamp = at.map_or(end, |at| at.min(end));
    if let Some(last) = h.last_at {
        stamp = stamp.max(last + 1);
    }
    h.last_at = Some(stamp);
    h.count_total += sketch.count() as f64;
    h.sum_total += sum;
    let metric = key.metric.as_str();
    for (q, label) in QUANTILES {
        if let Some(v) = sketch.quantile(q) {
            let labels = Labels::from_pairs(
                key.labels
                    .iter()
                    .filter(|(k, _)| *k != QUANTILE_LABEL)
                    .chain([(QUANTILE_LABEL, label)]),
            );
            out.samples.push(Sample {
                series: SeriesKey::new(key.source.clone(), key.metric.clone(), labels),
                kind: MetricKind::Gauge,
                ts_ms: stamp,
                value: v,
            });
        }
    }
    for (suffix, total) in [(COUNT_SUFFIX, h.count_total), (SUM_SUFFIX, h.sum_total)] {
        out.samples.push(Sample {
            series: SeriesKey::new(
                key.source.clone(),
                format!("{metric}{suffix}"),
                key.labels.clone(),
            ),
            kind: MetricKind::Counter,
            ts_ms: stamp,
            value: total,
        });
    }
    out.intervals.push(ClosedInterval {
        series: key.clone(),
        start_ms: index * interval_ms,
        at_ms: stamp,
        sum,
        sketch,
    });
}

/// Whether `metric` with `labels` is one of the series a histogram is stored as, and which:
/// a quantile (`Some(q)`), or its running count or sum (`None` inside). `None` for other
/// series.
pub fn histogram_part<'a>(metric: &str, labels: &'a Labels) -> Option<Option<&'a str>> {
    if let Some(q) = labels.get(QUANTILE_LABEL) {
        return Some(Some(q));
    }
    (metric.ends_with(COUNT_SUFFIX) || metric.ends_with(SUM_SUFFIX)).then_some(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Source;

    fn key(labels: Labels) -> SeriesKey {
        SeriesKey::new(Source::Host, "search.latency_seconds", labels)
    }

    fn value_of(out: &Closed, metric: &str, quantile: Option<&str>) -> Vec<(TimestampMs, f64)> {
        out.samples
            .iter()
            .filter(|s| {
                s.series.metric.as_str() == metric
                    && s.series.labels.get(QUANTILE_LABEL) == quantile
            })
            .map(|s| (s.ts_ms, s.value))
            .collect()
    }

    /// 1000 observations in one interval become five samples at the interval's end: exact
    /// count and sum, quantiles within the sketch's 0.5 %, labels kept beside `quantile`.
    #[test]
    fn an_interval_becomes_five_samples() {
        let mut h = Histograms::new(10_000);
        let mut out = Closed::default();
        let labels = Labels::from_pairs([("route", "/search")]);
        for i in 1..=1000 {
            h.observe(key(labels.clone()), 20_000 + i, i as f64 / 1000.0, &mut out);
        }
        assert!(out.samples.is_empty(), "the interval is still open");
        h.close_due(30_999, &mut out);
        assert!(out.samples.is_empty(), "not yet a grace past its end");
        h.close_due(31_000, &mut out);
        assert_eq!(out.samples.len(), 5, "{:?}", out.samples);
        assert!(out.samples.iter().all(|s| s.ts_ms == 30_000));
        assert!(out
            .samples
            .iter()
            .all(|s| s.series.labels.get("route") == Some("/search")));
        // Ranks ⌊q·999⌋ of 0.001 … 1.000: 0.500, 0.900, 0.990.
        for (q, exact) in [("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99)] {
            let got = value_of(&out, "search.latency_seconds", Some(q))[0].1;
            assert!((got - exact).abs() <= 0.005 * exact, "{q}: {got}");
        }
        let count = value_of(&out, "search.latency_seconds.count", None);
        let sum = value_of(&out, "search.latency_seconds.sum", None);
        assert_eq!(count, vec![(30_000, 1000.0)]);
        assert!((sum[0].1 - 500.5).abs() < 1e-9, "{sum:?}");
        assert_eq!(out.intervals.len(), 1);
        assert_eq!(out.intervals[0].count(), 1000);
    }

    /// A later observation closes the open interval; totals run on; a flush closes early and
    /// a late observation after it is stamped after the flush's samples.
    #[test]
    fn later_observations_flush_and_late_ones() {
        let mut h = Histograms::new(1_000);
        let mut out = Closed::default();
        h.observe(key(Labels::empty()), 100, 0.005, &mut out);
        h.observe(key(Labels::empty()), 1_500, 0.050, &mut out);
        let count = value_of(&out, "search.latency_seconds.count", None);
        assert_eq!(count, vec![(1_000, 1.0)]);
        h.close_all(1_600, &mut out);
        h.observe(key(Labels::empty()), 1_550, 0.050, &mut out);
        h.close_due(2_500, &mut out);
        let count = value_of(&out, "search.latency_seconds.count", None);
        assert_eq!(count, vec![(1_000, 1.0), (1_600, 2.0), (2_000, 3.0)]);
        let p50 = value_of(&out, "search.latency_seconds", Some("0.5"));
        assert_eq!(p50.len(), 3);
        assert!((p50[0].1 - 0.005).abs() < 1e-12, "min and max are exact");
        // NaN is refused; expiry forgets idle series only.
        h.observe(key(Labels::empty()), 2_100, f64::NAN, &mut out);
        assert_eq!(h.len(), 1);
        h.expire(10_000);
        assert!(h.is_empty());
    }

    /// Past the cap, new series are refused and counted; open ones keep working.
    #[test]
    fn series_are_capped() {
        let mut h = Histograms::new(1_000);
        let mut out = Closed::default();
        for i in 0..MAX_HISTOGRAMS {
            let labels = Labels::from_pairs([("i", i.to_string())]);
            h.observe(key(labels), 0, 1.0, &mut out);
        }
        h.observe(key(Labels::from_pairs([("i", "new")])), 0, 1.0, &mut out);
        assert_eq!(h.refused(), 1);
        h.observe(key(Labels::from_pairs([("i", "0")])), 0, 1.0, &mut out);
        assert_eq!(h.refused(), 1);
    }

    /// Quantile, count and sum series are recognised as parts of a histogram.
    #[test]
    fn parts_are_recognised() {
        let q = Labels::from_pairs([(QUANTILE_LABEL, "0.9")]);
        assert_eq!(histogram_part("m", &q), Some(Some("0.9")));
        assert_eq!(histogram_part("m.count", &Labels::empty()), Some(None));
        assert_eq!(histogram_part("m.sum", &Labels::empty()), Some(None));
        assert_eq!(histogram_part("m", &Labels::empty()), None);
    }
}
