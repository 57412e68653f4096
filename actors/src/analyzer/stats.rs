//! Windowed statistics over each series, and the per-daemon report. Plain logic, no actix.
//!
//! # Percentile definition
//!
//! Percentiles are numpy's default (`numpy.percentile(..., method="linear")`), which is
//! R's type 7 estimator (Hyndman & Fan 1996) and what most dashboards show: with `n` values
//! sorted ascending as `x[0] ≤ … ≤ x[n−1]` and `h = (n − 1)·q`,
//!
//! ```text
//! quantile(q) = x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋ + 1] − x[⌊h⌋])
//! ```
//!
//! so `q = 0` is the minimum, `q = 1` the maximum, and the median is the 0.5 quantile (the
//! mean of the two middle values for even `n`). The interpolation is written the way numpy
//! writes it (from the nearer neighbour) so results agree to the last bit or two; the test
//! `stats_match_numpy_reference` checks every figure against numpy on fixed inputs
//! (`fixtures/trend_reference.json`, made by `fixtures/make_reference.py`).
//!
//! `mean` is the arithmetic mean and `stddev` the sample standard deviation (divisor
//! `n − 1`, numpy's `std(ddof=1)`), both computed in two passes for accuracy. Values are
//! taken as given: a NaN makes the mean and deviation NaN and sorts above `+∞`, so it
//! becomes the maximum and the upper percentiles it falls between; nothing panics.

use serde::{Deserialize, Serialize};

use super::times::Times;
use super::values::Values;
use crate::types::{MetricKind, TimestampMs};

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
        Self::compute_iter(values.iter().copied())
    }

    /// [`WindowStats::compute`] of values read by an iterator: a window's values are read
    /// where they are kept, without a copy as `f64`s.
    pub(crate) fn compute_iter(
        values: impl ExactSizeIterator<Item = f64> + Clone,
    ) -> Option<WindowStats> {
        let n = values.len();
        let mut last = None;
        let mut scratch: Vec<u64> = values
            .clone()
            .map(|v| {
                last = Some(v);
                order_key(v)
            })
            .collect();
        let last = last?;
        let mut ranks = Ranks::new(&mut scratch);
        let mean = values.clone().sum::<f64>() / n as f64;
        let stddev = if n > 1 {
            let ss: f64 = values.map(|v| (v - mean) * (v - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Self::of_ranks(n, mean, stddev, last, |k| ranks.get(k)))
    }

    /// The statistics of `n` values with the given mean, deviation and latest value, whose
    /// order statistics `rank(k)` (0-based) gives; ranks are asked in ascending order.
    fn of_ranks(
        n: usize,
        mean: f64,
        stddev: f64,
        last: f64,
        mut rank: impl FnMut(usize) -> f64,
    ) -> WindowStats {
        let min = rank(0);
        let median = quantile_linear_by(n, 0.5, &mut rank);
        let p90 = quantile_linear_by(n, 0.9, &mut rank);
        let p95 = quantile_linear_by(n, 0.95, &mut rank);
        let p99 = quantile_linear_by(n, 0.99, &mut rank);
        let max = rank(n - 1);
        WindowStats {
            count: n,
            min,
            max,
            mean,
            median,
            stddev,
            p50: median,
            p90,
            p95,
            p99,
            last,
        }
    }

    /// Statistics of values given as runs `(value, count)` in time order: the figures of
    /// [`WindowStats::compute`] over the values written out, from one step a run. An idle
    /// series' window is one run (600 values at 1 s), and the judgement reads every window
    /// every tick. The mean and deviation sum a run as `count × value`, one rounding where
    /// the values written out take `count`; `None` when empty.
    pub fn of_runs(runs: impl Iterator<Item = (f64, usize)>) -> Option<WindowStats> {
        let mut runs: Vec<(u64, f64, usize)> = runs
            .filter(|r| r.1 > 0)
            .map(|(v, c)| (order_key(v), v, c))
            .collect();
        let last = runs.last()?.1;
        let n: usize = runs.iter().map(|r| r.2).sum();
        let mean = runs.iter().map(|r| r.1 * r.2 as f64).sum::<f64>() / n as f64;
        let stddev = if n > 1 {
            let ss: f64 = runs
                .iter()
                .map(|r| (r.1 - mean) * (r.1 - mean) * r.2 as f64)
                .sum();
            (ss / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        runs.sort_unstable_by_key(|r| r.0);
        // Rank `k` (0-based) of the sorted values: ranks come ascending but for a rank
        // again or the one just below the last (two quantiles between the same
        // neighbours), so one cursor walks the sorted runs once and starts over for a
        // lower rank.
        let (mut at, mut below) = (0, 0);
        Some(Self::of_ranks(n, mean, stddev, last, |k| {
            if k < below {
                (at, below) = (0, 0);
            }
            while below + runs[at].2 <= k {
                below += runs[at].2;
                at += 1;
            }
            runs[at].1
        }))
    }
}

/// NaNs (of either sign) last, the rest by `total_cmp`.
#[cfg(test)]
fn nan_last(a: &f64, b: &f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => a.total_cmp(b),
        (a_nan, b_nan) => a_nan.cmp(&b_nan),
    }
}

/// A value's key in `u64` order: `total_cmp`'s order, with NaNs of either sign last (all as
/// `u64::MAX`, read back as NaN); integer compares select several times faster than a
/// comparator with NaN checks.
fn order_key(v: f64) -> u64 {
    if v.is_nan() {
        return u64::MAX;
    }
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The inverse of [`order_key`] (a NaN for `u64::MAX`).
fn from_order_key(k: u64) -> f64 {
    if k == u64::MAX {
        return f64::NAN;
    }
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Order statistics of a slice of [`order_key`]s without sorting it: each rank asked for is
/// put in place by a selection (`select_nth_unstable`, O(n)) over the part not yet
/// partitioned, so the few ranks the statistics read cost a few passes, not a sort. The
/// values are the sorted slice's exactly. Ranks must be asked in ascending order (a rank
/// asked again, or the one just below the last, is answered from what is known).
struct Ranks<'a> {
    v: &'a mut [u64],
    /// Everything before `lo` is at most everything from `lo` on, and `v[lo − 1]` is in its
    /// sorted place.
    lo: usize,
    /// The last two ranks answered.
    known: [(usize, f64); 2],
}

impl<'a> Ranks<'a> {
    fn new(v: &'a mut [u64]) -> Self {
        Ranks {
            v,
            lo: 0,
            known: [(usize::MAX, 0.0); 2],
        }
    }

    /// The `k`-th smallest value (0-based), for `k` at least the one asked before.
    fn get(&mut self, k: usize) -> f64 {
        if let Some(&(_, v)) = self.known.iter().find(|(r, _)| *r == k) {
            return v;
        }
        let value = if k < self.lo {
            // Only `lo − 1` is in place below `lo`; ranks come in ascending order.
            from_order_key(self.v[k])
        } else {
            let (_, &mut nth, _) = self.v[self.lo..].select_nth_unstable(k - self.lo);
            self.lo = k + 1;
            from_order_key(nth)
        };
        self.known = [self.known[1], (k, value)];
        value
    }
}

/// The `q` quantile of ascending `sorted` values by linear interpolation between closest
/// ranks: numpy's default `percentile` method, R type 7 (see the module doc). `q` is
/// clamped to `[0, 1]`; NaN when `sorted` is empty or `q` is NaN. The one quantile of the
/// crate: the analyzer's windows, the anomaly detector's `f32` ring and the storage's raw
/// queries all take theirs here.
pub fn quantile_linear<T: Copy + Into<f64>>(sorted: &[T], q: f64) -> f64 {
    quantile_linear_by(sorted.len(), q, |i| sorted[i].into())
}

/// [`quantile_linear`] of `n` ascending values read by `at(i)` (0 ≤ i < n): for windows kept
/// in another form than a slice of numbers (the anomaly detector's packed keys).
pub fn quantile_linear_by(n: usize, q: f64, mut at: impl FnMut(usize) -> f64) -> f64 {
    if n == 0 || q.is_nan() {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor();
    // `lo` is in 0..=n−1 because q is clamped, so the cast cannot truncate.
    let i = lo as usize;
    if i + 1 >= n {
        return at(n - 1);
    }
    let (a, b) = (at(i), at(i + 1));
    let t = h - lo;
    if t == 0.0 {
        return a;
    }
    // numpy's `_lerp`: interpolate from the nearer neighbour, which keeps the result
    // monotone in `t` and exact at both ends.
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
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

/// The recent samples of one series: those of the last `span_ms` before the latest one
/// (when a span is set), at most `capacity` of them. When the cap is what evicts, the
/// window covers less than the span and [`SeriesWindow::capped`] says so.
///
/// Timestamps are kept as steps from the previous sample: as their difference from the
/// series' nominal step in an `i8` of milliseconds while within ±127 ms (a steady series),
/// else in a `u16` of milliseconds while they fit, else as `u32` offsets from a base (49
/// days of range; see `times`). Values are `f32`s: for gauges the value (7 significant
/// digits, far finer than anything judged from a window), for counters the increase since
/// the previous reading, so a rate keeps 7 digits however large the counter has grown;
/// they are held as runs of equal values while the series holds steady (see `values`).
/// The latest reading is also kept exactly, for exposition and for the next increase. 601
/// samples at 1 s take 3 KB instead of the 9.6 KB of `(i64, f64)` pairs, and about 0.6 KB
/// while the value holds.
///
/// Samples are kept in arrival order. One that lies more than 49 days from the others
/// cannot share their base: the window then starts again from it. A gauge value beyond
/// `f32`'s range (±3.4 · 10³⁸) is kept as ±∞.
#[derive(Clone, Debug)]
pub struct SeriesWindow {
    kind: MetricKind,
    times: Times,
    values: Values,
    last: Option<(TimestampMs, f64)>,
    capacity: usize,
    /// Samples older than this before the latest one are evicted; `None`: by count only.
    span_ms: Option<i64>,
}

impl SeriesWindow {
    /// An empty window of at most `capacity` samples, evicted by count only.
    pub fn new(kind: MetricKind, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SeriesWindow {
            kind,
            // Grown as samples come (see `push`): a series sampled every minute holds ten.
            times: Times::default(),
            values: Values::default(),
            last: None,
            capacity,
            span_ms: None,
        }
    }

    /// The same window, also evicting samples older than `span_ms` before the latest one.
    pub fn with_span(mut self, span_ms: i64) -> Self {
        self.span_ms = Some(span_ms.max(1));
        self
    }

    /// The time the window is to cover, when it is time-based.
    pub fn span_ms(&self) -> Option<i64> {
        self.span_ms
    }

    /// Whether the cap on samples, not the span, decides what the window holds: it is full
    /// and its samples cover less than the span.
    pub fn capped(&self) -> bool {
        let (Some(span), Some(first), Some((last, _))) = (self.span_ms, self.first_ts(), self.last)
        else {
            return false;
        };
        self.len() == self.capacity && last - first < span
    }

    /// Adds a sample, evicting the oldest when full and those older than the span.
    pub fn push(&mut self, ts: TimestampMs, value: f64) {
        if self.times.len() == self.capacity {
            self.times.pop_front();
            self.values.pop_front();
        }
        if let Some(span) = self.span_ms {
            let oldest = ts.saturating_sub(span);
            while self.first_ts().is_some_and(|t| t < oldest) {
                self.times.pop_front();
                self.values.pop_front();
            }
        }
        let stored = match self.kind {
            MetricKind::Gauge => value as f32,
            // NaN for the first reading (no increase known); negative after a reset.
            MetricKind::Counter => self
                .last
                .map_or(f32::NAN, |(_, prev)| (value - prev) as f32),
        };
        if self.times.len() == self.times.capacity() {
            // By a 32nd, to at most the cap: doubling would leave a 1 s series's 601
            // samples (10 minutes, both ends included) in room for 1,024 or more.
            let len = self.times.len();
            let more = (len / 32)
                .max(16)
                .min(self.capacity.saturating_sub(len).max(1));
            self.times.reserve_exact(more);
            self.values.reserve_exact(more);
        }
        if self.times.push(ts) {
            // Too far from the samples held to share their base: the window starts again.
            self.values.clear();
        }
        self.values.push_back(stored, self.times.capacity());
        self.last = Some((ts, value));
    }

    /// Statistics of the window: of the values for gauges, of the per-second rates for
    /// counters.
    pub fn stats(&self) -> Option<WindowStats> {
        match self.kind {
            MetricKind::Gauge => match self.values.runs() {
                Some(runs) => WindowStats::of_runs(runs.map(|(v, c)| (f64::from(v), c as usize))),
                None => WindowStats::compute_iter(self.values.iter().map(f64::from)),
            },
            MetricKind::Counter => {
                let rates: Vec<f64> = self.rates().into_iter().map(|(_, r)| r).collect();
                WindowStats::compute(&rates)
            }
        }
    }

    /// The samples held as `(time, value)`, oldest first; for counters the values are the
    /// increases since the previous reading (NaN when unknown, negative at a reset).
    pub fn points(&self) -> impl ExactSizeIterator<Item = (TimestampMs, f64)> + '_ {
        self.times
            .iter()
            .zip(self.values.iter())
            .map(|(t, v)| (t, f64::from(v)))
    }

    /// The values held, oldest first (gauges: the values; counters: the increases).
    pub fn gauge_values(&self) -> Vec<f64> {
        self.values.iter().map(f64::from).collect()
    }

    /// Per-second rates between consecutive readings held, stamped with the later reading;
    /// a reset yields no rate for its step (as [`counter_rates`]). Empty for gauges.
    pub fn rates(&self) -> Vec<(TimestampMs, f64)> {
        if self.kind != MetricKind::Counter {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.len().saturating_sub(1));
        let mut prev: Option<TimestampMs> = None;
        for (t, increase) in self.points() {
            if let Some(pt) = prev {
                let dt = (t - pt) as f64 / 1000.0;
                if dt > 0.0 && increase >= 0.0 {
                    out.push((t, increase / dt));
                }
            }
            prev = Some(t);
        }
        out
    }

    /// The time of the oldest sample held.
    pub fn first_ts(&self) -> Option<TimestampMs> {
        self.times.front()
    }

    /// The latest sample pushed, exactly as given.
    pub fn last(&self) -> Option<(TimestampMs, f64)> {
        self.last
    }

    /// Gauge or counter.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }
    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.times.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.times.len() == 0
    }
    /// Bytes held by the window's buffers.
    pub fn memory_bytes(&self) -> usize {
        self.times.memory_bytes() + self.values.memory_bytes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A window with a span keeps the last span of samples, however many; the cap still
    /// bounds it, and then the window says it was capped.
    #[test]
    fn window_by_time_with_a_cap() {
        let mut w = SeriesWindow::new(MetricKind::Gauge, 1_000).with_span(10_000);
        for i in 0..100 {
            w.push(i * 1_000, i as f64);
        }
        assert_eq!(w.len(), 11, "samples from 89 s to 99 s");
        assert_eq!(w.first_ts(), Some(89_000));
        assert!(!w.capped());
        let mut fast = SeriesWindow::new(MetricKind::Gauge, 100).with_span(10_000);
        for i in 0..1_000 {
            fast.push(i * 20, 1.0);
        }
        assert_eq!(fast.len(), 100);
        assert!(fast.capped(), "100 samples at 50/s cover 2 s of the 10");
        assert!(!SeriesWindow::new(MetricKind::Gauge, 1).capped());
    }

    /// Statistics match hand-computed values; percentiles follow numpy's default (type 7).
    #[test]
    fn stats_of_known_values() {
        let s = WindowStats::compute(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!(
            (s.count, s.min, s.max, s.mean, s.last),
            (10, 1.0, 10.0, 5.5, 10.0)
        );
        assert!((s.stddev - 3.0276503540974917).abs() < 1e-12);
        assert_eq!(s.median, 5.5);
        // Type 7: h = (10 − 1)·0.9 = 8.1 → x[8] + 0.1·(x[9] − x[8]) = 9 + 0.1.
        assert!((s.p90 - 9.1).abs() < 1e-12, "{}", s.p90);
        // h = 9·0.95 = 8.55 → 9.55; h = 9·0.99 = 8.91 → 9.91.
        assert!((s.p95 - 9.55).abs() < 1e-12, "{}", s.p95);
        assert!((s.p99 - 9.91).abs() < 1e-12, "{}", s.p99);
        assert!(WindowStats::compute(&[]).is_none());
        assert_eq!(WindowStats::compute(&[4.0]).unwrap().stddev, 0.0);
        assert_eq!(WindowStats::compute(&[4.0]).unwrap().p99, 4.0);
    }

    /// The quantile edges: q = 0 and 1 are min and max, out-of-range q is clamped, empty
    /// input and NaN q give NaN, and the input order does not matter.
    #[test]
    fn quantile_edges() {
        let sorted = [1.0, 3.0, 7.0];
        assert_eq!(quantile_linear(&sorted, 0.0), 1.0);
        assert_eq!(quantile_linear(&sorted, 1.0), 7.0);
        assert_eq!(quantile_linear(&sorted, 0.75), 5.0);
        assert_eq!(quantile_linear(&sorted, 2.0), 7.0);
        assert_eq!(quantile_linear(&sorted, -1.0), 1.0);
        assert!(quantile_linear::<f64>(&[], 0.5).is_nan());
        assert!(quantile_linear(&sorted, f64::NAN).is_nan());
        // NaN of either sign sorts last.
        let s = WindowStats::compute(&[-f64::NAN, 2.0, f64::NAN, 1.0, 3.0]).unwrap();
        assert_eq!((s.min, s.median), (1.0, 3.0));
        assert!(s.max.is_nan() && s.mean.is_nan());
    }

    /// Every statistic matches numpy (percentile default method, std ddof=1, mean,
    /// median) within 1e-9 relative error on the fixture series.
    #[test]
    fn stats_match_numpy_reference() {
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("fixtures/trend_reference.json")).unwrap();
        let quantiles: Vec<f64> = serde_json::from_value(reference["quantiles"].clone()).unwrap();
        let series = reference["series"].as_array().unwrap();
        assert!(series.len() >= 5);
        for s in series {
            let name = s["name"].as_str().unwrap();
            let values: Vec<f64> = serde_json::from_value(s["values"].clone()).unwrap();
            let expected: WindowStats = serde_json::from_value(s["stats"].clone()).unwrap();
            let got = WindowStats::compute(&values).unwrap();
            assert_eq!(got.count, expected.count, "{name}");
            let pairs = [
                ("min", got.min, expected.min),
                ("max", got.max, expected.max),
                ("mean", got.mean, expected.mean),
                ("median", got.median, expected.median),
                ("stddev", got.stddev, expected.stddev),
                ("p50", got.p50, expected.p50),
                ("p90", got.p90, expected.p90),
                ("p95", got.p95, expected.p95),
                ("p99", got.p99, expected.p99),
                ("last", got.last, expected.last),
            ];
            for (what, g, e) in pairs {
                assert_close(g, e, &format!("{name}.{what}"));
            }
            let mut sorted = values.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let expected_q: Vec<f64> =
                serde_json::from_value(s["quantile_values"].clone()).unwrap();
            for (q, e) in quantiles.iter().zip(&expected_q) {
                assert_close(quantile_linear(&sorted, *q), *e, &format!("{name} q={q}"));
            }
        }
    }

    /// Relative error at most 1e-9 (absolute 1e-12 near zero) against a numpy/scipy
    /// reference figure (also used by `trend`'s tests).
    pub(crate) fn assert_close(got: f64, expected: f64, what: &str) {
        let tol = 1e-9 * expected.abs().max(1e-3);
        assert!(
            (got - expected).abs() <= tol,
            "{what}: got {got:e}, reference says {expected:e}"
        );
    }

    /// The statistics read by selection are bit for bit those of a full sort, with ties,
    /// NaNs of either sign, infinities and every length from 1 to 700.
    #[test]
    fn selection_matches_a_sort() {
        let mut rng = fastrand::Rng::with_seed(12);
        for n in 1..700 {
            let values: Vec<f64> = (0..n)
                .map(|_| match rng.u8(0..40) {
                    0 => f64::NAN,
                    1 => -f64::NAN,
                    2 => f64::INFINITY,
                    3 => f64::NEG_INFINITY,
                    4..=15 => f64::from(rng.u8(0..4)),
                    _ => rng.f64() * 100.0 - 50.0,
                })
                .collect();
            let got = WindowStats::compute(&values).unwrap();
            let mut sorted = values.clone();
            sorted.sort_unstable_by(nan_last);
            let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            let want = [
                (got.min, sorted[0]),
                (got.max, sorted[n - 1]),
                (got.median, quantile_linear(&sorted, 0.5)),
                (got.p90, quantile_linear(&sorted, 0.9)),
                (got.p95, quantile_linear(&sorted, 0.95)),
                (got.p99, quantile_linear(&sorted, 0.99)),
            ];
            for (i, (g, w)) in want.into_iter().enumerate() {
                assert!(same(g, w), "n {n}, figure {i}: {g} against {w}");
            }
        }
    }

    /// Statistics from runs are those of the values written out: the order statistics bit
    /// for bit (ties, NaNs of either sign, infinities, zeros of both signs), the mean and
    /// deviation within rounding; one run is exact (mean the value, deviation 0).
    #[test]
    fn runs_match_the_values_written_out() {
        let mut rng = fastrand::Rng::with_seed(13);
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for case in 0..2_000 {
            let runs: Vec<(f64, usize)> = (0..rng.usize(1..12))
                .map(|_| {
                    let v = match rng.u8(0..40) {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        2 => f64::NEG_INFINITY,
                        3 => -0.0,
                        4..=15 => f64::from(rng.u8(0..4)),
                        _ => f64::from((rng.f64() * 100.0 - 50.0) as f32),
                    };
                    (v, rng.usize(0..200))
                })
                .collect();
            let values: Vec<f64> = runs
                .iter()
                .flat_map(|&(v, c)| std::iter::repeat_n(v, c))
                .collect();
            let got = WindowStats::of_runs(runs.iter().copied());
            let Some(want) = WindowStats::compute(&values) else {
                assert!(got.is_none(), "case {case}: {runs:?}");
                continue;
            };
            let got = got.unwrap();
            assert_eq!(got.count, want.count, "case {case}");
            for (g, w) in [
                (got.min, want.min),
                (got.max, want.max),
                (got.median, want.median),
                (got.p90, want.p90),
                (got.p95, want.p95),
                (got.p99, want.p99),
                (got.last, want.last),
            ] {
                assert!(same(g, w), "case {case}: {g} against {w}, {runs:?}");
            }
            for (g, w) in [(got.mean, want.mean), (got.stddev, want.stddev)] {
                if w.is_finite() {
                    let tol = 1e-12 * w.abs().max(1.0) * values.len() as f64;
                    assert!((g - w).abs() <= tol, "case {case}: {g} against {w}");
                } else {
                    assert!(same(g, w) || (g.is_nan() && w.is_nan()), "case {case}");
                }
            }
        }
        // Two quantiles between the same neighbours ask a rank below the last one asked:
        // the 0.95 quantile of 1, 1, 1, 2 is 1.85, not 2.
        let small = WindowStats::of_runs([(1.0, 3), (2.0, 1)].into_iter()).unwrap();
        let want = WindowStats::compute(&[1.0, 1.0, 1.0, 2.0]).unwrap();
        assert_eq!((small.p90, small.p95), (want.p90, want.p95));
        assert!((small.p95 - 1.85).abs() < 1e-12, "{}", small.p95);
        let one = WindowStats::of_runs([(0.1, 601)].into_iter()).unwrap();
        assert_eq!(
            (one.mean, one.stddev, one.p95, one.count),
            (0.1, 0.0, 0.1, 601)
        );
        assert!(WindowStats::of_runs(std::iter::empty()).is_none());
    }

    /// A gauge window's statistics are those of its values, read where they are kept:
    /// from its one run while it holds one value, from its plain values once it varies.
    #[test]
    fn window_statistics_are_those_of_its_values() {
        let mut w = SeriesWindow::new(MetricKind::Gauge, 601);
        for i in 0..601 {
            w.push(i * 1000, 0.1);
        }
        let s = w.stats().unwrap();
        let v = f64::from(0.1f32);
        assert_eq!(
            (s.count, s.mean, s.stddev, s.min, s.max),
            (601, v, 0.0, v, v)
        );
        assert_eq!(Some(s), WindowStats::compute(&w.gauge_values()));
        let mut rng = fastrand::Rng::with_seed(14);
        for i in 601..1_500 {
            w.push(i * 1000, rng.f64() * 10.0);
            if i % 97 == 0 {
                // Runs sum `count × value` (see `of_runs`): the mean and deviation may
                // differ from the written-out sums in their last bits until the window
                // turns plain; every other figure is the same.
                let got = w.stats().unwrap();
                let want = WindowStats::compute(&w.gauge_values()).unwrap();
                assert_close(got.mean, want.mean, "mean");
                assert_close(got.stddev, want.stddev, "stddev");
                let exact = |s: &WindowStats| (s.count, s.min, s.max, s.median, s.p95, s.last);
                assert_eq!(exact(&got), exact(&want), "at {i}");
            }
        }
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

    /// A counter window gives the same rates as the readings themselves, however large
    /// the counter (increases are kept, not the readings), and skips resets.
    #[test]
    fn counter_window_rates_match_the_readings() {
        let base = 4.0e15; // beyond f32's exact integers by far
        let readings = [
            (1_000, base),
            (2_000, base + 5.0),
            (4_000, base + 9.0),
            (5_000, 1.0),
            (6_000, 3.5),
        ];
        let mut w = SeriesWindow::new(MetricKind::Counter, 10);
        for (t, v) in readings {
            w.push(t, v);
        }
        let rates: Vec<f64> = w.rates().into_iter().map(|(_, r)| r).collect();
        assert_eq!(rates, counter_rates(readings));
        assert_eq!(rates, vec![5.0, 2.0, 2.5]);
        assert_eq!(w.last(), Some((6_000, 3.5)));
        // Full: the oldest reading's increase has no predecessor held, so no rate.
        let mut w = SeriesWindow::new(MetricKind::Counter, 3);
        for (t, v) in readings {
            w.push(t, v);
        }
        assert_eq!(w.rates(), vec![(6_000, 2.5)]);
    }

    /// Timestamps before the base, or 49 days away, keep their exact times; a sample
    /// further from the others than a `u32` of milliseconds starts the window again.
    #[test]
    fn window_times_survive_rebasing() {
        let mut w = SeriesWindow::new(MetricKind::Gauge, 10);
        w.push(10_000, 1.0);
        w.push(5_000, 2.0); // before the base: rebased
        assert_eq!(
            w.points().collect::<Vec<_>>(),
            vec![(10_000, 1.0), (5_000, 2.0)]
        );
        w.push(10_000 + i64::from(u32::MAX), 3.0); // 49.7 days after both: starts again
        let times: Vec<i64> = w.points().map(|p| p.0).collect();
        assert_eq!(times, vec![10_000 + i64::from(u32::MAX)]);
        w.push(-3_000, 4.0); // far before everything kept: starts again
        assert_eq!(w.points().collect::<Vec<_>>(), vec![(-3_000, 4.0)]);
        w.push(-2_000, 5.0);
        w.push(7_000, 6.0);
        assert_eq!(w.first_ts(), Some(-3_000));
        let times: Vec<i64> = w.points().map(|p| p.0).collect();
        assert_eq!(times, vec![-3_000, -2_000, 7_000]);
        assert_eq!(w.last(), Some((7_000, 6.0)));
    }
}
