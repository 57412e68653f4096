//! `Rollup`: the summary of one series over one bucket of time (an hourly or daily rollup row),
//! computed from raw samples and merged exactly across late samples and neighbouring buckets.
//!
//! # Definitions
//!
//! - **Counted values.** Only finite values enter the statistics. NaN and ±inf samples are
//!   counted in `nan_count` and otherwise ignored (also by `first`/`last` and `increase`).
//! - **Exact fields.** `count`, `min`, `max`, `first`/`last` merge exactly; `sum` and `m2` merge
//!   exactly up to floating-point rounding (a few ulps per merge).
//! - **Why `m2`.** The spread is kept as `m2 = Σ(x − mean)²`, the sum of squared deviations
//!   (corrected two-pass over the samples; merged with Chan et al.'s parallel formula), not as
//!   the raw `Σx²`. For values like an RSS of 1e9 bytes ± 1e3, `Σx²` is about 1e18 per sample
//!   while the squared deviations are about 1e6: `Σx² − (Σx)²/n` cancels 12 of the 16
//!   significant digits before the rounding of every addition and merge is counted, so the
//!   spread comes out with a few digits at best. `m2` keeps only the small part, to full
//!   precision. The raw moment is derivable when needed: `Σx² = m2 + sum² / count`. When all
//!   values are equal (`min == max`), `m2` is exactly 0, not a rounding residue.
//! - **Spread.** [`Rollup::variance`] and [`Rollup::stddev`] are the *sample* variance and
//!   standard deviation (divisor `n − 1`; 0 for one value; `None` for none), the analyzer's
//!   definition.
//! - **Quantiles.** [`Rollup::quantile`] asks the [`DdSketch`]: the order statistic of rank
//!   `⌊q · (n − 1)⌋` within relative error α (0.5 % by default); see `sketch.rs`.
//! - **Counter increase.** `increase` is the reset-aware increase of a counter: the sum over
//!   consecutive counted samples of `v − prev` when `v ≥ prev`, and of `v` when `v < prev` (a
//!   drop is a reset to 0, as in Prometheus, without its extrapolation to the bucket edges).
//!   It is meaningful only for counters. [`Rollup::merge`] keeps it exact for rollups that are
//!   adjacent in time (one ends no later than the other starts): it also adds the increase
//!   across the boundary. Merging neighbours in any order or tree shape is therefore exact.
//!   Rollups that overlap in time (late samples of the same bucket, or a rollup merged into a
//!   gap of another) only add their increases: the steps between interleaved samples are
//!   unknown, so this is an approximation.
//! - **Timestamps** are in whatever unit the samples use (perfvisor uses ms).

use super::sketch::{DdSketch, SketchError};

/// Summary of the samples of one series in one time bucket.
///
/// When `count` is 0 (no finite sample, only `nan_count`), `sum` and `m2` are 0, `min`, `max`,
/// `first` and `last` are NaN, `first_ts` and `last_ts` are 0 and meaningless, and the
/// sketch is empty.
#[derive(Clone, Debug)]
pub(crate) struct Rollup {
    /// Finite values summarised.
    pub count: u64,
    /// NaN and ±inf samples seen; they are in none of the other fields.
    pub nan_count: u64,
    /// Sum of the values.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sum of squared deviations from the mean, `Σ(x − mean)²` (not `Σx²`, which is
    /// `m2 + sum² / count`).
    pub m2: f64,
    /// Timestamp of the earliest value.
    pub first_ts: i64,
    /// The earliest value.
    pub first: f64,
    /// Timestamp of the latest value.
    pub last_ts: i64,
    /// The latest value.
    pub last: f64,
    /// Reset-aware counter increase (see the module documentation).
    pub increase: f64,
    /// Quantile sketch of the values.
    pub sketch: DdSketch,
}

/// Increase of a counter from `prev` to `next`: a drop means a reset to 0, so the counter
/// rose by `next`.
fn counter_step(prev: f64, next: f64) -> f64 {
    if next >= prev {
        next - prev
    } else {
        next
    }
}

/// Compensated (Neumaier) sum, so that one rollup's sum is the correctly rounded total.
#[derive(Default)]
struct CompensatedSum {
    /// Running sum.
    sum: f64,
    /// Accumulated rounding error.
    compensation: f64,
}

impl CompensatedSum {
    /// Adds `x`.
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// The total.
    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

impl Rollup {
    /// A rollup of nothing, with a default sketch.
    fn empty() -> Self {
        Rollup {
            count: 0,
            nan_count: 0,
            sum: 0.0,
            min: f64::NAN,
            max: f64::NAN,
            m2: 0.0,
            first_ts: 0,
            first: f64::NAN,
            last_ts: 0,
            last: f64::NAN,
            increase: 0.0,
            sketch: DdSketch::default(),
        }
    }

    /// Summarises `samples` (`(ts, value)` sorted by ts, as the compactor reads them).
    ///
    /// `None` only for an empty slice. A slice of only NaN/±inf gives a rollup with
    /// `count == 0` that records `nan_count`. `first`/`last` are chosen by timestamp even if
    /// the slice is not sorted (on equal timestamps the earlier/later in the slice), but
    /// `increase` follows slice order, so it needs sorted samples.
    pub(crate) fn from_samples(samples: &[(i64, f64)]) -> Option<Rollup> {
        if samples.is_empty() {
            return None;
        }
        let mut r = Rollup::empty();
        let mut sum = CompensatedSum::default();
        let mut prev: Option<f64> = None;
        for &(ts, v) in samples {
            if !v.is_finite() {
                r.nan_count += 1;
                continue;
            }
            r.sketch.insert(v);
            sum.add(v);
            if r.count == 0 {
                (r.min, r.max) = (v, v);
                (r.first_ts, r.first, r.last_ts, r.last) = (ts, v, ts, v);
            } else {
                r.min = r.min.min(v);
                r.max = r.max.max(v);
                if ts < r.first_ts {
                    (r.first_ts, r.first) = (ts, v);
                }
                if ts >= r.last_ts {
                    (r.last_ts, r.last) = (ts, v);
                }
            }
            if let Some(prev) = prev {
                r.increase += counter_step(prev, v);
            }
            prev = Some(v);
            r.count += 1;
        }
        if r.count == 0 {
            return Some(r);
        }
        r.sum = sum.value();
        r.m2 = if r.min == r.max {
            0.0
        } else {
            // Two passes around the computed mean; the correction term removes the effect of
            // the mean's own rounding (Chan, Golub, LeVeque's corrected two-pass algorithm).
            let n = r.count as f64;
            let mean = r.sum / n;
            let (mut deviations, mut squares) = (0.0, 0.0);
            for &(_, v) in samples.iter().filter(|s| s.1.is_finite()) {
                let d = v - mean;
                deviations += d;
                squares += d * d;
            }
            (squares - deviations * deviations / n).max(0.0)
        };
        Some(r)
    }

    /// Adds `other` (the same series; a neighbouring bucket, or late samples of the same
    /// bucket) to this rollup. Either order of arguments gives the same figures (`increase`
    /// up to the last bit of rounding).
    ///
    /// `first`/`last` go by timestamp; when all four first/last timestamps are equal the order
    /// is open and the receiver's are kept.
    ///
    /// Refuses, changing nothing, when the sketches have different α.
    pub(crate) fn merge(&mut self, other: &Rollup) -> Result<(), SketchError> {
        self.sketch.merge(&other.sketch)?;
        self.nan_count = self.nan_count.saturating_add(other.nan_count);
        if other.count == 0 {
            return Ok(());
        }
        if self.count == 0 {
            let (sketch, nan_count) = (std::mem::take(&mut self.sketch), self.nan_count);
            *self = Rollup {
                sketch,
                nan_count,
                ..other.clone_stats()
            };
            return Ok(());
        }

        // Which comes first in time: adjacency decides the increase across the boundary and
        // breaks ties between equal first/last timestamps. All four timestamps equal (both
        // single instants, the same one) counts as an overlap, to stay symmetric.
        let self_before = self.last_ts <= other.first_ts;
        let other_before = other.last_ts <= self.first_ts;
        let (boundary, take_first, take_last) = match (self_before, other_before) {
            (true, false) => (counter_step(self.last, other.first), false, true),
            (false, true) => (counter_step(other.last, self.first), true, false),
            _ => (
                0.0,
                other.first_ts < self.first_ts,
                other.last_ts > self.last_ts,
            ),
        };
        self.increase += other.increase + boundary;
        if take_first {
            (self.first_ts, self.first) = (other.first_ts, other.first);
        }
        if take_last {
            (self.last_ts, self.last) = (other.last_ts, other.last);
        }

        // Chan et al.: m2 = m2_a + m2_b + δ² · n_a · n_b / n, δ = mean_b − mean_a.
        let (n_a, n_b) = (self.count as f64, other.count as f64);
        let n = n_a + n_b;
        let delta = other.sum / n_b - self.sum / n_a;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.m2 = if self.min == self.max {
            0.0
        } else {
            self.m2 + other.m2 + delta * delta * (n_a * n_b / n)
        };
        self.sum += other.sum;
        self.count = self.count.saturating_add(other.count);
        Ok(())
    }

    /// A copy of `self` without the sketch (an empty default one in its place).
    fn clone_stats(&self) -> Rollup {
        Rollup {
            count: self.count,
            nan_count: self.nan_count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            m2: self.m2,
            first_ts: self.first_ts,
            first: self.first,
            last_ts: self.last_ts,
            last: self.last,
            increase: self.increase,
            sketch: DdSketch::default(),
        }
    }

    /// Mean of the values; `None` when there are none.
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Sample variance `m2 / (n − 1)`; 0 for one value, `None` for none.
    pub(crate) fn variance(&self) -> Option<f64> {
        match self.count {
            0 => None,
            1 => Some(0.0),
            n => Some(self.m2 / (n - 1) as f64),
        }
    }

    /// Sample standard deviation (divisor `n − 1`); 0 for one value, `None` for none.
    pub(crate) fn stddev(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }

    /// Estimated order statistic of rank `⌊q · (n − 1)⌋` from the sketch (within its relative
    /// accuracy α), clamped into the rollup's exact `[min, max]` (the sketch's encoding does
    /// not carry them); `None` when empty or `q` is not in `[0, 1]`.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        self.sketch.quantile_within(q, self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    //! Exactness against the raw data (generated and NAB), merges of hourly and uneven splits
    //! in every order, counter increase with resets, and NaN handling.

    use super::super::sketch::tests::{assert_quantiles_accurate, generated_series, QUANTILES};
    use super::*;
    use crate::testdata::nab_series;

    /// Relative tolerance for sums, means and spreads (summation order differs).
    const REL: f64 = 1e-9;

    /// A double-double accumulator: about 106 bits, enough for exact reference moments.
    #[derive(Clone, Copy, Default)]
    struct Dd {
        /// Leading part.
        hi: f64,
        /// Trailing part.
        lo: f64,
    }

    impl Dd {
        /// Knuth's two-sum: `a + b = s + e` exactly.
        fn two_sum(a: f64, b: f64) -> (f64, f64) {
            let s = a + b;
            let bb = s - a;
            (s, (a - (s - bb)) + (b - bb))
        }

        /// `self + x` where `x` is itself a double-double `(hi, lo)`.
        fn add(self, hi: f64, lo: f64) -> Dd {
            let (s, e) = Self::two_sum(self.hi, hi);
            let e = e + self.lo + lo;
            let (hi, lo) = Self::two_sum(s, e);
            Dd { hi, lo }
        }

        /// `self + x²`, the square formed exactly with an FMA.
        fn add_square(self, x: f64) -> Dd {
            let p = x * x;
            self.add(p, x.mul_add(x, -p))
        }

        /// `self · self / n`, to double-double precision (the `lo²` term is negligible).
        fn square_over(self, n: f64) -> Dd {
            let p = self.hi * self.hi;
            let e = self.hi.mul_add(self.hi, -p) + 2.0 * self.hi * self.lo;
            let (hi, lo) = Self::two_sum(p, e);
            let q1 = hi / n;
            // Remainder of the division, exactly: (hi + lo) − q1·n.
            let r = Dd { hi, lo }.add(-q1 * n, -q1.mul_add(n, -(q1 * n)));
            let q2 = (r.hi + r.lo) / n;
            let (hi, lo) = Self::two_sum(q1, q2);
            Dd { hi, lo }
        }
    }

    /// Reference figures of finite values, computed independently of the code under test
    /// (raw moments in double-double arithmetic).
    struct Reference {
        /// Finite values.
        count: u64,
        /// Non-finite samples.
        nan_count: u64,
        /// Exact sum, rounded once.
        sum: f64,
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
        /// Sample standard deviation (0 for n = 1).
        stddev: f64,
        /// First finite sample.
        first: (i64, f64),
        /// Last finite sample.
        last: (i64, f64),
        /// Reset-aware increase, in double-double.
        increase: f64,
    }

    /// Reference figures of sorted `samples`.
    fn reference(samples: &[(i64, f64)]) -> Reference {
        let finite: Vec<(i64, f64)> = samples
            .iter()
            .copied()
            .filter(|s| s.1.is_finite())
            .collect();
        let n = finite.len() as f64;
        let (mut s1, mut s2, mut inc) = (Dd::default(), Dd::default(), Dd::default());
        for (i, &(_, v)) in finite.iter().enumerate() {
            s1 = s1.add(v, 0.0);
            s2 = s2.add_square(v);
            if i > 0 {
                let prev = finite[i - 1].1;
                // The step formed exactly: v − prev as a double-double.
                inc = if v >= prev {
                    inc.add(v, 0.0).add(-prev, 0.0)
                } else {
                    inc.add(v, 0.0)
                };
            }
        }
        let correction = s1.square_over(n);
        let m2 = s2.add(-correction.hi, -correction.lo);
        let m2 = (m2.hi + m2.lo).max(0.0);
        Reference {
            count: finite.len() as u64,
            nan_count: (samples.len() - finite.len()) as u64,
            sum: s1.hi + s1.lo,
            min: finite.iter().map(|s| s.1).fold(f64::INFINITY, f64::min),
            max: finite.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max),
            stddev: if finite.len() > 1 {
                (m2 / (n - 1.0)).sqrt()
            } else {
                0.0
            },
            first: finite[0],
            last: finite[finite.len() - 1],
            increase: inc.hi + inc.lo,
        }
    }

    /// Whether `actual` is within relative `REL` of `expected` (exactly equal when that is 0).
    fn close(actual: f64, expected: f64) -> bool {
        actual == expected || (actual - expected).abs() <= REL * expected.abs()
    }

    /// Asserts `r` summarises `samples` exactly (tolerance `REL` for sums and spreads).
    fn assert_matches(what: &str, r: &Rollup, samples: &[(i64, f64)]) {
        let e = reference(samples);
        assert_eq!(r.count, e.count, "{what}: count");
        assert_eq!(r.nan_count, e.nan_count, "{what}: nan_count");
        assert_eq!(r.sketch.count(), e.count, "{what}: sketch count");
        assert_eq!((r.min, r.max), (e.min, e.max), "{what}: min/max");
        assert_eq!((r.first_ts, r.first), e.first, "{what}: first");
        assert_eq!((r.last_ts, r.last), e.last, "{what}: last");
        assert!(close(r.sum, e.sum), "{what}: sum {} vs {}", r.sum, e.sum);
        let mean = r.mean().expect("non-empty");
        let e_mean = e.sum / e.count as f64;
        assert!(close(mean, e_mean), "{what}: mean {mean} vs {e_mean}");
        let stddev = r.stddev().expect("non-empty");
        assert!(
            close(stddev, e.stddev),
            "{what}: stddev {stddev} vs {}",
            e.stddev
        );
        assert!(
            close(r.increase, e.increase),
            "{what}: increase {} vs {}",
            r.increase,
            e.increase
        );
    }

    /// Every series: generated (a day at 1 Hz) and NAB (days to weeks at 5 min).
    fn all_series() -> Vec<(String, Vec<(i64, f64)>)> {
        let mut all: Vec<_> = generated_series()
            .into_iter()
            .map(|(name, s)| (name.to_string(), s))
            .collect();
        // The CPU-like day again with every 97th sample NaN and every 1009th +inf.
        let mut gappy = all
            .iter()
            .find(|(name, _)| name == "cpu")
            .map(|(_, s)| s.clone())
            .expect("cpu series");
        for (i, sample) in gappy.iter_mut().enumerate() {
            if i % 97 == 5 {
                sample.1 = f64::NAN;
            } else if i % 1009 == 7 {
                sample.1 = f64::INFINITY;
            }
        }
        all.push(("cpu_with_nan_and_inf".to_string(), gappy));
        let nab = nab_series();
        assert!(!nab.is_empty());
        all.extend(nab);
        all
    }

    /// The finite values of `samples`, the ones a rollup counts.
    fn finite_values(samples: &[(i64, f64)]) -> Vec<f64> {
        samples
            .iter()
            .map(|s| s.1)
            .filter(|v| v.is_finite())
            .collect()
    }

    /// Splits sorted `samples` into runs of equal `ts.div_euclid(width)`.
    fn buckets(samples: &[(i64, f64)], width: i64) -> Vec<&[(i64, f64)]> {
        samples
            .chunk_by(|a, b| a.0.div_euclid(width) == b.0.div_euclid(width))
            .collect()
    }

    /// Merges `parts` left to right (earlier.merge(later)).
    fn fold_forward(parts: &[Rollup]) -> Rollup {
        let mut acc = parts[0].clone();
        for p in &parts[1..] {
            acc.merge(p).expect("same alpha");
        }
        acc
    }

    /// Merges `parts` right to left (later.merge(earlier)).
    fn fold_backward(parts: &[Rollup]) -> Rollup {
        let mut acc = parts[parts.len() - 1].clone();
        for p in parts[..parts.len() - 1].iter().rev() {
            acc.merge(p).expect("same alpha");
        }
        acc
    }

    /// Merges neighbours pairwise, level by level, alternating argument order.
    fn fold_tree(parts: &[Rollup]) -> Rollup {
        let mut level = parts.to_vec();
        let mut flip = false;
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] if flip => {
                        let mut b = b.clone();
                        b.merge(a).expect("same alpha");
                        b
                    }
                    [a, b] => {
                        let mut a = a.clone();
                        a.merge(b).expect("same alpha");
                        a
                    }
                    [a] => a.clone(),
                    _ => unreachable!("chunks(2)"),
                })
                .collect();
            flip = !flip;
        }
        level.swap_remove(0)
    }

    /// Asserts every merge order of `parts` (adjacent, in time order) matches `samples`.
    fn assert_merges_match(what: &str, parts: &[Rollup], samples: &[(i64, f64)]) {
        let whole = Rollup::from_samples(samples).expect("non-empty");
        for (order, merged) in [
            ("forward", fold_forward(parts)),
            ("backward", fold_backward(parts)),
            ("tree", fold_tree(parts)),
        ] {
            assert_matches(&format!("{what} {order}"), &merged, samples);
            assert_eq!(merged.sketch, whole.sketch, "{what} {order}: sketch");
        }
    }

    #[test]
    fn rollups_are_exact_against_raw_data() {
        for (name, samples) in all_series() {
            let r = Rollup::from_samples(&samples).expect("non-empty");
            assert_matches(&name, &r, &samples);
            assert_quantiles_accurate(&name, &r.sketch, &finite_values(&samples));
            for hour in buckets(&samples, 3_600_000) {
                let r = Rollup::from_samples(hour).expect("non-empty");
                assert_matches(&format!("{name} hour {}", hour[0].0), &r, hour);
            }
        }
    }

    #[test]
    fn hourly_rollups_merge_into_daily_and_whole_exactly() {
        for (name, samples) in all_series() {
            // Hourly rollups merged into each day, and every day's rollup into the whole.
            let mut days = Vec::new();
            for day in buckets(&samples, 86_400_000) {
                let hours: Vec<Rollup> = buckets(day, 3_600_000)
                    .into_iter()
                    .filter_map(Rollup::from_samples)
                    .collect();
                assert_merges_match(&format!("{name} day {}", day[0].0), &hours, day);
                days.push(fold_forward(&hours));
            }
            assert_merges_match(&format!("{name} days"), &days, &samples);
            let merged = fold_tree(&days);
            let values = finite_values(&samples);
            assert_quantiles_accurate(&format!("{name} merged days"), &merged.sketch, &values);
        }
    }

    #[test]
    fn uneven_splits_merge_exactly() {
        let mut rng = fastrand::Rng::with_seed(0x0dd5);
        for (name, samples) in all_series() {
            for _ in 0..3 {
                let mut cuts: Vec<usize> = (0..rng.usize(1..12))
                    .map(|_| rng.usize(1..samples.len()))
                    .collect();
                cuts.extend([0, samples.len()]);
                // A one-sample part too.
                let single = rng.usize(1..samples.len() - 1);
                cuts.extend([single, single + 1]);
                cuts.sort_unstable();
                cuts.dedup();
                let parts: Vec<Rollup> = cuts
                    .windows(2)
                    .filter_map(|w| Rollup::from_samples(&samples[w[0]..w[1]]))
                    .collect();
                assert_merges_match(&format!("{name} cuts {cuts:?}"), &parts, &samples);
            }
        }
    }

    #[test]
    fn counter_increase_counts_resets_and_boundaries() {
        let samples: Vec<(i64, f64)> = [10.0, 15.0, 15.0, 3.0, 8.0, 1.0, 20.0, 25.0]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 1000, *v))
            .collect();
        // 5 + 0 + 3 (reset) + 5 + 1 (reset) + 19 + 5 = 38.
        let whole = Rollup::from_samples(&samples).expect("non-empty");
        assert_eq!(whole.increase, 38.0);
        // Every split point, including a reset exactly at the boundary, both argument orders.
        for cut in 1..samples.len() {
            let a = Rollup::from_samples(&samples[..cut]).expect("non-empty");
            let b = Rollup::from_samples(&samples[cut..]).expect("non-empty");
            let mut ab = a.clone();
            ab.merge(&b).expect("same alpha");
            let mut ba = b.clone();
            ba.merge(&a).expect("same alpha");
            for merged in [ab, ba] {
                assert_eq!(merged.increase, 38.0, "cut {cut}");
                assert_eq!((merged.first_ts, merged.first), (0, 10.0));
                assert_eq!((merged.last_ts, merged.last), (7000, 25.0));
            }
        }
        // Overlapping rollups (late samples): increases just add up.
        let even: Vec<_> = samples.iter().copied().step_by(2).collect();
        let odd: Vec<_> = samples.iter().copied().skip(1).step_by(2).collect();
        let mut r = Rollup::from_samples(&even).expect("non-empty");
        let late = Rollup::from_samples(&odd).expect("non-empty");
        let expected = r.increase + late.increase;
        r.merge(&late).expect("same alpha");
        assert_eq!(r.increase, expected);
        assert_eq!(r.count, 8);
        assert_eq!((r.first, r.last), (10.0, 25.0));
    }

    #[test]
    fn large_offset_keeps_its_spread() {
        // 1e9 ± 1e3: raw Σx² would lose ~12 digits; m2 keeps the spread exact through merges.
        let series = generated_series();
        let (_, samples) = series
            .iter()
            .find(|(name, _)| *name == "rss_offset")
            .expect("rss_offset series");
        let parts: Vec<Rollup> = samples
            .chunks(997)
            .filter_map(Rollup::from_samples)
            .collect();
        let merged = fold_tree(&parts);
        let stddev = merged.stddev().expect("non-empty");
        assert!((stddev - 1000.0).abs() < 10.0, "{stddev}");
        let raw_sum_squares = merged.m2 + merged.sum * merged.sum / merged.count as f64;
        let naive: f64 = samples.iter().map(|s| s.1 * s.1).sum();
        assert!(close(raw_sum_squares, naive));
        assert_matches("rss_offset tree", &merged, samples);
    }

    #[test]
    fn nan_and_infinities_are_skipped_and_counted() {
        let samples = [
            (0, f64::NAN),
            (1, 4.0),
            (2, f64::INFINITY),
            (3, 6.0),
            (4, f64::NAN),
            (5, f64::NEG_INFINITY),
            (6, 2.0),
            (7, f64::NAN),
        ];
        let r = Rollup::from_samples(&samples).expect("non-empty");
        assert_eq!((r.count, r.nan_count), (3, 5));
        assert_eq!((r.sum, r.min, r.max), (12.0, 2.0, 6.0));
        assert_eq!((r.first_ts, r.first, r.last_ts, r.last), (1, 4.0, 6, 2.0));
        assert_eq!(r.increase, 2.0 + 2.0);
        assert_eq!(r.stddev(), Some(2.0));
        assert_eq!(r.sketch.count(), 3);
        assert_matches("nan mix", &r, &samples);

        // Only NaN: a rollup that records them, with no statistics.
        let none = Rollup::from_samples(&[(0, f64::NAN), (1, f64::NAN)]).expect("non-empty");
        assert_eq!((none.count, none.nan_count), (0, 2));
        assert_eq!(
            (none.mean(), none.stddev(), none.variance()),
            (None, None, None)
        );
        assert_eq!(none.quantile(0.5), None);
        assert!(Rollup::from_samples(&[]).is_none());

        // Merging with a NaN-only rollup, both ways, keeps the stats and adds the NaN count.
        for (mut a, b) in [(r.clone(), none.clone()), (none.clone(), r.clone())] {
            a.merge(&b).expect("same alpha");
            assert_eq!((a.count, a.nan_count, a.sum), (3, 7, 12.0));
            assert_eq!((a.first_ts, a.last_ts, a.increase), (1, 6, 4.0));
            assert_eq!(a.stddev(), Some(2.0));
        }

        // One value: stddev 0.
        let one = Rollup::from_samples(&[(5, 3.5)]).expect("non-empty");
        assert_eq!(
            (one.variance(), one.stddev(), one.mean()),
            (Some(0.0), Some(0.0), Some(3.5))
        );
        for q in QUANTILES {
            assert_eq!(one.quantile(q), Some(3.5));
        }
    }

    #[test]
    fn merging_different_alpha_is_refused_and_changes_nothing() {
        let mut a = Rollup::from_samples(&[(0, 1.0), (1, 2.0)]).expect("non-empty");
        let mut b = Rollup::from_samples(&[(2, 3.0)]).expect("non-empty");
        b.sketch = DdSketch::new(0.02).expect("valid");
        b.sketch.insert(3.0);
        let err = a.merge(&b).expect_err("refused").to_string();
        assert!(err.contains("α = 0.02"), "{err}");
        assert_eq!((a.count, a.sum, a.last_ts), (2, 3.0, 1));
    }

    #[test]
    #[ignore = "figures; run with --release -- --ignored --nocapture"]
    fn measure_rollup_figures() {
        let series = generated_series();
        let (_, cpu) = series
            .iter()
            .find(|(n, _)| *n == "cpu")
            .expect("cpu series");
        let hour = &cpu[..3600];
        let rounds: u32 = 200;
        let start = std::time::Instant::now();
        let mut hours = Vec::new();
        for _ in 0..rounds {
            hours = cpu.chunks(3600).filter_map(Rollup::from_samples).collect();
            std::hint::black_box(&hours);
        }
        let per_hour = start.elapsed().as_secs_f64() * 1e6 / (rounds as usize * hours.len()) as f64;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(fold_forward(std::hint::black_box(&hours)));
        }
        let per_day = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        println!(
            "rollup from an hour of 1 Hz cpu-like samples: {per_hour:.1} µs; \
             24 hourly → daily merge: {per_day:.1} µs; hourly sketch {} B",
            Rollup::from_samples(hour)
                .expect("non-empty")
                .sketch
                .encode()
                .len()
        );
    }
}
