//! Anomalies: a robust learned baseline per series and an anomaly score per sample, telling
//! isolated spikes from sustained level shifts. Plain logic, no actix; one
//! [`AnomalyDetector`] per daemon and metric.
//!
//! # Method
//!
//! **Baseline.** A detector keeps the last [`AnomalyConfig::window`] finite values sorted
//! (to read order statistics in O(1)), each packed with its arrival tag (to know which one
//! to evict) in one `u32`, the value rounded to `23 − log₂ window` bits of mantissa (13 at
//! the default window: 6 · 10⁻⁵ relative, far below the 1 % scale floor). The *level* is the window's median. [`Baseline::spread`] reports `1.4826 · MAD`
//! (median absolute deviation, computed exactly in O(log n)), which is σ for Gaussian noise.
//!
//! **Score.** A value `x` is judged against the window *before* it joins it:
//! `score = |x − level| / scale`, a robust z-score in units of σ for Gaussian noise, capped at
//! [`SCORE_CAP`]. The scale is measured on the side of the level that `x` falls on:
//!
//! ```text
//! scale_above = max((q(p) − level) / Φ⁻¹(p), floor)      p = tail_quantile (0.99)
//! scale_below = max((level − q(1 − p)) / Φ⁻¹(p), floor)
//! floor       = max(relative_spread_floor · |level|, absolute_spread_floor, 1e-12)
//! ```
//!
//! For Gaussian noise both sides equal σ, like the MAD. Real metrics are rarely symmetric:
//! CPU and disk series burst upwards from a floor. A heavy side gets a wide scale, so an
//! ordinary burst is not an anomaly, while a side with a hard edge keeps a narrow one, so
//! falling through a floor that held for days is. In NAB's
//! `cpu_utilization_asg_misconfiguration` a drop to 14 % under a floor of 29 % scores 4.7
//! this way and 1.5 on a symmetric MAD scale. On the eight NAB series a quartile (MAD-like)
//! scale raises some 1700 false alarms, these tail scales 13, and 3 with the tail memory
//! below. The floor stops a near-constant series from dividing by zero.
//!
//! **Tail memory.** Bursts are rarer than the window is long: after a quiet spell the 1 %
//! quantile forgets them and the next ordinary burst would alarm. Each side's scale therefore
//! decays no faster than halving every [`AnomalyConfig::tail_memory`] samples (a peak hold,
//! two numbers per series); while the window is still filling, the half-life is shortened in
//! proportion, so a burst during warm-up is not remembered for long.
//!
//! **Why robust.** The median and the 1 % quantiles move by at most one rank per sample: a
//! spike does not drag the baseline (a mean and a standard deviation would be pulled by the
//! very values they must judge), and outliers only widen the scale once they make up more
//! than 1 % of the window, that is once they are part of the series' normal behaviour.
//!
//! **Spike vs level shift.** After [`AnomalyConfig::warmup`] samples, a sample with
//! `score ≥ threshold` is anomalous and reported as [`AnomalyKind::Spike`], provisionally:
//! the first samples of a step are spikes until the step is confirmed. Separately, each
//! sample sets a bit when it lies at least [`AnomalyConfig::shift_threshold`] scales above
//! or below the level; when `shift_count` of the last `shift_window` samples lie on the same
//! side, the step is confirmed and reported once as [`AnomalyKind::LevelShiftUp`] or
//! [`AnomalyKind::LevelShiftDown`]. Those bits are judged against the level and scales
//! frozen when the run of flagged samples began, because a step fills 1 % of the window,
//! and so moves the tail quantiles, about as fast as it can be confirmed. Once confirmed,
//! the baseline is re-learned at once: every value in the window except the ones that
//! confirmed the step moves by the step (their median minus the old level). That keeps the
//! learned scales, so the detector stays armed instead of starting a new warm-up, and the
//! following samples at the new level are normal. A spike that returns within the shift
//! window stays a spike and is learned like any value. A slow trend is followed by the
//! median with a lag of about `window / 2` samples and raises no alarm while
//! `lag × slope` stays small against the scale; a steep ramp shows as a series of level
//! shifts. Trends themselves are [`super::trend`]'s business.
//!
//! **Time.** Verdicts depend on the order of the samples only, never on their timestamps:
//! gaps and repeated or backwards timestamps (NAB's data has all three) change nothing but
//! [`AnomalyCounters::out_of_order`]. The window is a number of samples, not a duration.
//! Non-finite values are ignored (score 0, not anomalous) and counted.
//!
//! **Cost.** Memory per series grows with the window to at most
//! `size_of::<AnomalyDetector>() + 4 · window` bytes ([`AnomalyDetector::memory_bytes`]):
//! each value and its tag share a `u32` (`Packed`); there is no second copy in arrival
//! order. An update is a binary search, a scan of the tags for the oldest, one `memmove`
//! and three quantile reads (the ignored test `anomaly_cost` measures it); a confirmed level
//! shift adds one O(window · log window) re-sort.
//!
//! The defaults were chosen on eight labelled NAB series, a small set: `docs/ANOMALIES.md`
//! gives the per-file results, the command that reproduces them and what is likely to
//! generalise.
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use std::sync::Arc;

use super::stats::{quantile_linear, quantile_linear_by};

/// Consistency constant: `1.4826 · MAD` estimates σ for Gaussian data.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Upper bound of [`Verdict::score`], so that a score is always finite.
pub const SCORE_CAP: f64 = 1e9;

/// Smallest scale ever used, whatever the configured floors, so a score never divides by 0.
const MIN_SCALE: f64 = 1e-12;

/// Longest shift window: the recent samples' sides are kept as the bits of a `u64`.
pub const MAX_SHIFT_WINDOW: usize = 64;

/// Default [`AnomalyConfig::window`]: 1024 samples (3.5 days at one sample per 5 minutes,
/// 17 minutes at one per second).
pub const DEFAULT_WINDOW: usize = 1024;
/// The largest window: values in it are told apart by an arrival tag of at most 16 bits.
pub const MAX_WINDOW: usize = 1 << 16;
/// Default [`AnomalyConfig::warmup`]: 64 samples before any verdict can be anomalous.
pub const DEFAULT_WARMUP: usize = 64;
/// Default [`AnomalyConfig::threshold`]: a score of 3.5 (3.5 σ for Gaussian noise, one sample
/// in 2 100 by chance). Which anomalies alert is decided after the detector, by the
/// analyzer's `signals::AlertPolicy` from the series' pace, so the detector reports what is
/// unusual and the policy keeps false alerts per day bounded.
pub const DEFAULT_THRESHOLD: f64 = 3.5;
/// Default [`AnomalyConfig::tail_quantile`]: the 0.99 and 0.01 quantiles give the scales.
pub const DEFAULT_TAIL_QUANTILE: f64 = 0.99;
/// Default [`AnomalyConfig::tail_memory`]: a side's scale halves at most every 4096 samples
/// (four windows).
pub const DEFAULT_TAIL_MEMORY: usize = 4096;
/// Default [`AnomalyConfig::relative_spread_floor`]: 1 % of the level.
pub const DEFAULT_RELATIVE_SPREAD_FLOOR: f64 = 0.01;
/// Default [`AnomalyConfig::absolute_spread_floor`]: 0 (the unit is the series' own).
pub const DEFAULT_ABSOLUTE_SPREAD_FLOOR: f64 = 0.0;
/// Default [`AnomalyConfig::shift_window`]: the last 12 samples.
pub const DEFAULT_SHIFT_WINDOW: usize = 12;
/// Default [`AnomalyConfig::shift_count`]: 9 of the last [`DEFAULT_SHIFT_WINDOW`].
pub const DEFAULT_SHIFT_COUNT: usize = 9;
/// Default [`AnomalyConfig::shift_threshold`]: a score of 3 on the same side.
pub const DEFAULT_SHIFT_THRESHOLD: f64 = 3.0;

/// Tuning of an [`AnomalyDetector`]. [`AnomalyDetector::new`] clamps out-of-range fields;
/// [`AnomalyConfig::validate`] reports them instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Recent samples the baseline is learned from (default [`DEFAULT_WINDOW`], at least 8).
    /// Memory grows by 4 bytes per sample of window.
    pub window: usize,
    /// Samples to see before any verdict can be anomalous (default [`DEFAULT_WARMUP`],
    /// 2 to `window`).
    pub warmup: usize,
    /// Score from which a sample is anomalous (default [`DEFAULT_THRESHOLD`], > 0).
    pub threshold: f64,
    /// Quantile `p` in (0.5, 1) whose distance from the level, over `Φ⁻¹(p)`, is the scale
    /// of the upper side (`1 − p` for the lower side) (default [`DEFAULT_TAIL_QUANTILE`]).
    pub tail_quantile: f64,
    /// Half-life in samples of the peak hold on each side's scale; 0 disables it (default
    /// [`DEFAULT_TAIL_MEMORY`]).
    pub tail_memory: usize,
    /// Scale floor as a fraction of `|level|` (default [`DEFAULT_RELATIVE_SPREAD_FLOOR`],
    /// ≥ 0), so that a near-constant series does not alarm on a rounding difference.
    pub relative_spread_floor: f64,
    /// Scale floor in the series' own unit (default [`DEFAULT_ABSOLUTE_SPREAD_FLOOR`],
    /// ≥ 0); worth setting when the resolution of a metric is known (1 for counts).
    pub absolute_spread_floor: f64,
    /// Recent samples a level shift is judged over (default [`DEFAULT_SHIFT_WINDOW`],
    /// 1 to [`MAX_SHIFT_WINDOW`]).
    pub shift_window: usize,
    /// How many of the last `shift_window` samples must reach `shift_threshold` on the same
    /// side to confirm a level shift (default [`DEFAULT_SHIFT_COUNT`], 1 to `shift_window`).
    pub shift_count: usize,
    /// Score from which a sample counts towards a level shift (default
    /// [`DEFAULT_SHIFT_THRESHOLD`], > 0); lower than `threshold`, since persistence is
    /// evidence too.
    pub shift_threshold: f64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            warmup: DEFAULT_WARMUP,
            threshold: DEFAULT_THRESHOLD,
            tail_quantile: DEFAULT_TAIL_QUANTILE,
            tail_memory: DEFAULT_TAIL_MEMORY,
            relative_spread_floor: DEFAULT_RELATIVE_SPREAD_FLOOR,
            absolute_spread_floor: DEFAULT_ABSOLUTE_SPREAD_FLOOR,
            shift_window: DEFAULT_SHIFT_WINDOW,
            shift_count: DEFAULT_SHIFT_COUNT,
            shift_threshold: DEFAULT_SHIFT_THRESHOLD,
        }
    }
}

/// Every problem found in an [`AnomalyConfig`], each naming the field, the bad value and
/// what would be accepted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid anomaly config: {}", .problems.join("; "))]
pub struct AnomalyConfigError {
    /// One sentence per problem.
    pub problems: Vec<String>,
}

fn is_positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

fn is_non_negative(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

fn is_tail_quantile(p: f64) -> bool {
    p > 0.5 && p < 1.0
}

impl AnomalyConfig {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), AnomalyConfigError> {
        let mut problems = Vec::new();
        if self.window < 8 || self.window > MAX_WINDOW {
            problems.push(format!(
                "window = {} (expected 8 to {MAX_WINDOW})",
                self.window
            ));
        }
        if self.warmup < 2 || self.warmup > self.window.max(8) {
            problems.push(format!(
                "warmup = {} (expected 2 to window = {})",
                self.warmup, self.window
            ));
        }
        if !is_positive(self.threshold) {
            problems.push(format!("threshold = {} (expected > 0)", self.threshold));
        }
        if !is_tail_quantile(self.tail_quantile) {
            problems.push(format!(
                "tail_quantile = {} (expected between 0.5 and 1, both excluded)",
                self.tail_quantile
            ));
        }
        if !is_non_negative(self.relative_spread_floor) {
            problems.push(format!(
                "relative_spread_floor = {} (expected ≥ 0)",
                self.relative_spread_floor
            ));
        }
        if !is_non_negative(self.absolute_spread_floor) {
            problems.push(format!(
                "absolute_spread_floor = {} (expected ≥ 0)",
                self.absolute_spread_floor
            ));
        }
        if self.shift_window == 0 || self.shift_window > MAX_SHIFT_WINDOW {
            problems.push(format!(
                "shift_window = {} (expected 1 to {MAX_SHIFT_WINDOW})",
                self.shift_window
            ));
        }
        if self.shift_count == 0 || self.shift_count > self.shift_window {
            problems.push(format!(
                "shift_count = {} (expected 1 to shift_window = {})",
                self.shift_count, self.shift_window
            ));
        }
        if !is_positive(self.shift_threshold) {
            problems.push(format!(
                "shift_threshold = {} (expected > 0)",
                self.shift_threshold
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AnomalyConfigError { problems })
        }
    }

    /// The config with every field forced into its accepted range: counts clamped, invalid
    /// numbers replaced by their default.
    fn clamped(&self) -> Self {
        let d = Self::default();
        let or_default =
            |v: f64, ok: fn(f64) -> bool, default: f64| if ok(v) { v } else { default };
        let window = self.window.clamp(8, MAX_WINDOW);
        let shift_window = self.shift_window.clamp(1, MAX_SHIFT_WINDOW);
        Self {
            window,
            warmup: self.warmup.clamp(2, window),
            threshold: or_default(self.threshold, is_positive, d.threshold),
            tail_quantile: or_default(self.tail_quantile, is_tail_quantile, d.tail_quantile),
            tail_memory: self.tail_memory,
            relative_spread_floor: or_default(
                self.relative_spread_floor,
                is_non_negative,
                d.relative_spread_floor,
            ),
            absolute_spread_floor: or_default(
                self.absolute_spread_floor,
                is_non_negative,
                d.absolute_spread_floor,
            ),
            shift_window,
            shift_count: self.shift_count.clamp(1, shift_window),
            shift_threshold: or_default(self.shift_threshold, is_positive, d.shift_threshold),
        }
    }
}

/// What kind of anomaly a sample is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// An excursion not (yet) sustained: reported for each anomalous sample until the series
    /// returns to its baseline or the excursion is confirmed as a level shift.
    Spike,
    /// A sustained step upwards, reported once; the baseline has moved to the new level.
    LevelShiftUp,
    /// A sustained step downwards, reported once; the baseline has moved to the new level.
    LevelShiftDown,
}

/// The judgement of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `|x − level| / scale` against the baseline before this sample: a robust z-score, in
    /// units of σ for Gaussian noise; ≥ 0, at most [`SCORE_CAP`]; 0 for an ignored
    /// (non-finite) value and for the first sample.
    pub score: f64,
    /// Whether the sample is anomalous: `score ≥ threshold` after warm-up, or the sample
    /// that confirmed a level shift.
    pub anomalous: bool,
    /// The kind of anomaly, `None` when not anomalous.
    pub kind: Option<AnomalyKind>,
    /// The level the sample was compared with: the sample itself for the first one, 0 for
    /// an ignored value before any finite sample.
    pub baseline: f64,
    /// The scale used on the sample's side of the level (the smaller side's for an ignored
    /// value; 0 before a second finite sample).
    pub spread: f64,
}

/// The learned baseline of a series.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Median of the window.
    pub level: f64,
    /// `1.4826 · MAD` of the window (σ for Gaussian noise), unfloored.
    pub spread: f64,
    /// The scale a value above the level is judged with (tail quantile, hold and floors).
    pub spread_above: f64,
    /// The scale a value below the level is judged with.
    pub spread_below: f64,
    /// Finite samples seen since the detector was created.
    pub samples: u64,
    /// Samples currently in the window.
    pub window_len: usize,
}

/// Counters of a detector, for perfvisor's own metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyCounters {
    /// Finite samples judged.
    pub samples: u64,
    /// Non-finite values ignored.
    pub invalid: u64,
    /// Finite samples whose timestamp was not after the previous sample's (still judged).
    pub out_of_order: u64,
    /// Anomalous samples (spikes and confirmed shifts).
    pub anomalous: u64,
    /// Level shifts confirmed.
    pub level_shifts: u64,
}

/// Level and per-side scales at one moment.
#[derive(Clone, Copy, Debug)]
struct Scales {
    level: f64,
    above: f64,
    below: f64,
}

/// The anomaly detector of one series. Its memory is fixed when it is created.
#[derive(Clone, Debug)]
pub struct AnomalyDetector {
    /// Shared by every detector of the analyzer (a per-series copy would be 80 bytes each).
    config: Arc<AnomalyConfig>,
    /// `Φ⁻¹(tail_quantile)`.
    tail_z: f64,
    /// Per-sample decay of the held scales once the window is full.
    full_decay: f64,
    /// The window, ascending: one `u32` per value (see [`Packed`]), its value in the high
    /// bits and its arrival tag in the low ones. The window is most of what perfvisor keeps
    /// per watched series.
    window: Packed,
    /// Values pushed since creation.
    pushed: u64,
    /// Peak-held scales (0 until the warm-up ends).
    held_above: f64,
    held_below: f64,
    /// Bit i set: the sample i steps back reached `shift_threshold` above the level.
    above_bits: u64,
    /// Same, below the level.
    below_bits: u64,
    /// The scales when the current run of samples beyond `shift_threshold` began.
    excursion: Option<Scales>,
    last_ts: Option<i64>,
    counters: AnomalyCounters,
}

impl AnomalyDetector {
    /// A detector with `config`, out-of-range fields clamped into range.
    pub fn new(config: AnomalyConfig) -> Self {
        Self::shared(Arc::new(config))
    }

    /// A detector with a shared `config`, out-of-range fields clamped into range (then the
    /// detector holds its own clamped copy).
    pub fn shared(config: Arc<AnomalyConfig>) -> Self {
        let clamped = config.clamped();
        let config = if clamped == *config {
            config
        } else {
            Arc::new(clamped)
        };
        let tail_z = Normal::standard().inverse_cdf(config.tail_quantile);
        Self {
            tail_z,
            full_decay: half_life_decay(config.tail_memory as f64),
            window: Packed::for_window(config.window),
            pushed: 0,
            held_above: 0.0,
            held_below: 0.0,
            above_bits: 0,
            below_bits: 0,
            excursion: None,
            last_ts: None,
            counters: AnomalyCounters::default(),
            config,
        }
    }

    /// The config in use (after clamping).
    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    /// Counters since creation.
    pub fn counters(&self) -> AnomalyCounters {
        self.counters
    }

    /// Bytes this detector occupies, heap included: at most
    /// `size_of::<AnomalyDetector>() + 4 · window`, reached once the window is full (it
    /// grows by doubling up to exactly the window).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.window.keys.capacity() * std::mem::size_of::<u32>()
    }

    /// The current baseline, `None` before the first finite sample.
    pub fn baseline(&self) -> Option<Baseline> {
        let s = self.scales()?;
        let w = &self.window;
        let n = w.len();
        let level = s.level;
        let at = |i: usize| w.value(i);
        let mad = if n % 2 == 1 {
            kth_abs_deviation(n, at, level, n / 2)
        } else {
            0.5 * (kth_abs_deviation(n, at, level, n / 2 - 1)
                + kth_abs_deviation(n, at, level, n / 2))
        };
        Some(Baseline {
            level,
            spread: MAD_TO_SIGMA * mad,
            spread_above: s.above,
            spread_below: s.below,
            samples: self.counters.samples,
            window_len: n,
        })
    }

    /// Judges one sample against the baseline learned so far, then learns from it.
    /// Non-finite values are ignored and counted; this never panics.
    pub fn update(&mut self, ts_ms: i64, value: f64) -> Verdict {
        if !value.is_finite() {
            self.counters.invalid += 1;
            let (baseline, spread) = self
                .scales()
                .map_or((0.0, 0.0), |s| (s.level, s.above.min(s.below)));
            return Verdict {
                score: 0.0,
                anomalous: false,
                kind: None,
                baseline,
                spread,
            };
        }
        if self.last_ts.is_some_and(|last| ts_ms <= last) {
            self.counters.out_of_order += 1;
        }
        self.last_ts = Some(ts_ms);
        self.counters.samples += 1;

        let armed = self.window.len() >= self.config.warmup;
        let raw = self.window_scales();
        if let (true, Some(raw)) = (armed, raw) {
            self.hold(raw);
        }
        let Some(s) = raw.map(|raw| self.judging_scales(raw)) else {
            self.push(value, None);
            return Verdict {
                score: 0.0,
                anomalous: false,
                kind: None,
                baseline: value,
                spread: 0.0,
            };
        };
        let deviation = value - s.level;
        let scale = if deviation >= 0.0 { s.above } else { s.below };
        let score = (deviation.abs() / scale).min(SCORE_CAP);
        let score = if score.is_nan() { SCORE_CAP } else { score };
        let mut verdict = Verdict {
            score,
            anomalous: false,
            kind: None,
            baseline: s.level,
            spread: scale,
        };
        self.push(value, raw);
        if !armed {
            return verdict;
        }

        // A step contaminates the tail quantiles within 1 % of the window, about as fast as
        // it can be confirmed; so the run is judged against the scales frozen when it began.
        let reference = *self.excursion.get_or_insert(s);
        let off = value - reference.level;
        let off_scale = if off >= 0.0 {
            reference.above
        } else {
            reference.below
        };
        let beyond = off.abs() / off_scale >= self.config.shift_threshold;
        let mask = low_bits(self.config.shift_window);
        self.above_bits = ((self.above_bits << 1) | u64::from(beyond && off > 0.0)) & mask;
        self.below_bits = ((self.below_bits << 1) | u64::from(beyond && off < 0.0)) & mask;
        let need = self.config.shift_count as u32;
        let shift = if self.above_bits.count_ones() >= need {
            Some((AnomalyKind::LevelShiftUp, self.above_bits))
        } else if self.below_bits.count_ones() >= need {
            Some((AnomalyKind::LevelShiftDown, self.below_bits))
        } else {
            None
        };
        if self.above_bits | self.below_bits == 0 {
            self.excursion = None;
        }
        if let Some((kind, bits)) = shift {
            self.relearn(bits, reference.level);
            self.above_bits = 0;
            self.below_bits = 0;
            self.excursion = None;
            self.counters.level_shifts += 1;
            verdict.anomalous = true;
            verdict.kind = Some(kind);
        } else if score >= self.config.threshold {
            verdict.anomalous = true;
            verdict.kind = Some(AnomalyKind::Spike);
        }
        if verdict.anomalous {
            self.counters.anomalous += 1;
        }
        verdict
    }

    /// Level and per-side scales: the window's tail quantiles, the held peaks and the floors.
    fn scales(&self) -> Option<Scales> {
        self.window_scales().map(|raw| self.judging_scales(raw))
    }

    /// Level and per-side tail scales of the window alone.
    fn window_scales(&self) -> Option<Scales> {
        let w = &self.window;
        if w.len() == 0 {
            return None;
        }
        let level = w.quantile(0.5);
        let p = self.config.tail_quantile;
        Some(Scales {
            level,
            above: (w.quantile(p) - level) / self.tail_z,
            below: (level - w.quantile(1.0 - p)) / self.tail_z,
        })
    }

    /// The window's scales raised to the held peaks and the floors.
    fn judging_scales(&self, raw: Scales) -> Scales {
        let floor = (self.config.relative_spread_floor * raw.level.abs())
            .max(self.config.absolute_spread_floor)
            .max(MIN_SCALE);
        Scales {
            level: raw.level,
            above: raw.above.max(self.held_above).max(floor),
            below: raw.below.max(self.held_below).max(floor),
        }
    }

    /// Decays the held scales by one sample and raises them to the window's current ones.
    /// While the window fills, the half-life is `tail_memory · fill`, so a scale learned
    /// from few samples is not held for long.
    fn hold(&mut self, raw: Scales) {
        let len = self.window.len();
        let decay = if len >= self.config.window {
            self.full_decay
        } else {
            let fill = len as f64 / self.config.window as f64;
            half_life_decay(self.config.tail_memory as f64 * fill)
        };
        self.held_above = raw.above.max(self.held_above * decay);
        self.held_below = raw.below.max(self.held_below * decay);
    }

    /// Adds a finite value, evicting the oldest when the window is full. The window is
    /// updated with one `memmove`, of the entries between the evicted and the new position.
    /// `raw`: the window's scales before the value, when known (they decide whether the
    /// window is re-encoded around its level first).
    fn push(&mut self, value: f64, raw: Option<Scales>) {
        let w = &mut self.window;
        // Arrival numbers modulo the tag range: the truncation is the point.
        let tag = (self.pushed as u32) & w.mask;
        if w.len() == 0 {
            w.center = value;
        } else if let Some(raw) = raw {
            // Around the current level once it has moved from the center by more than an
            // eighth of the width between the window's tails (a fraction of the scales), so
            // the values near the level, which decide the scores, keep about 17 bits.
            // Decided by the window alone, so a lazy detector's replay ends in the same
            // state as the eager detector.
            let width = (raw.above + raw.below) * self.tail_z;
            if (raw.level - w.center).abs() > width / 8.0 {
                w.recenter(raw.level);
            }
        }
        self.pushed += 1;
        let key = w.key_of(value) | tag;
        let keys = &mut w.keys;
        let at = keys.partition_point(|&k| k < key);
        if keys.len() < self.config.window {
            if keys.len() == keys.capacity() {
                // Doubling, to exactly the window: a young or sparse series holds little.
                let more = keys.len().max(16).min(self.config.window - keys.len());
                keys.reserve_exact(more);
            }
            keys.insert(at, key);
            return;
        }
        let oldest = tag.wrapping_sub(self.config.window as u32) & w.mask;
        let Some(gone) = find_tag(keys, w.mask, oldest) else {
            return;
        };
        if at > gone {
            keys.copy_within(gone + 1..at, gone);
            keys[at - 1] = key;
        } else {
            keys.copy_within(at..gone, at + 1);
            keys[at] = key;
        }
    }

    /// Re-learns the baseline at a confirmed new level: the samples flagged in `bits` stay as
    /// they are, every other value in the window moves by (their median − `old_level`).
    fn relearn(&mut self, bits: u64, old_level: f64) {
        let mut kept = [0u32; MAX_SHIFT_WINDOW];
        let mut values = [0.0f64; MAX_SHIFT_WINDOW];
        let mut n = 0;
        let w = &mut self.window;
        let mask = w.mask;
        for back in 0..self.config.shift_window.min(w.len()) {
            if bits & (1 << back) != 0 {
                // The sample `back` steps before the newest (0 = newest).
                let tag = ((self.pushed - 1 - back as u64) as u32) & mask;
                if let Some(i) = find_tag(&w.keys, mask, tag) {
                    kept[n] = tag;
                    values[n] = w.value(i);
                    n += 1;
                }
            }
        }
        if n == 0 {
            return;
        }
        let (kept, values) = (&kept[..n], &mut values[..n]);
        values.sort_unstable_by(f64::total_cmp);
        let delta = quantile_linear(values, 0.5) - old_level;
        let moved: Vec<(f64, u32)> = (0..w.len())
            .map(|i| {
                let tag = w.keys[i] & mask;
                let v = w.value(i);
                (if kept.contains(&tag) { v } else { v + delta }, tag)
            })
            .collect();
        // Around the new level.
        let center = old_level + delta;
        if center.is_finite() {
            w.center = center;
        }
        for (i, (v, tag)) in moved.into_iter().enumerate() {
            // Clamped (see `Packed::key_of`) so that a translation near the range cannot
            // make infinities.
            let key = w.key_of(v);
            w.keys[i] = key | tag;
        }
        w.keys.sort_unstable();
    }
}

/// An [`AnomalyDetector`] that holds no window while its series has only ever had one value.
///
/// Many series are flat for long stretches: the disk rates and descriptor count of an idle
/// daemon, a limit, a queue that stays empty. A detector's window is `4 · window` bytes (4 KB
/// by default) whatever the values, and a flat series can never be anomalous (every
/// deviation is 0). So a flat series keeps its value and a count; the first different value
/// builds the detector and replays the flat run into it first. A detector fed the same
/// value over and over reaches a fixed point once its window is full of it (its held scales
/// are 0 and stay 0), so at most [`LazyDetector::replay_limit`] samples are replayed; the
/// test `lazy_detector_matches_the_eager_one` checks that the verdicts are the eager
/// detector's, sample for sample. Counters ([`AnomalyDetector::counters`]) are not kept
/// while flat.
#[derive(Clone, Debug)]
pub struct LazyDetector {
    config: Arc<AnomalyConfig>,
    state: LazyState,
}

#[derive(Clone, Debug)]
enum LazyState {
    /// No finite sample yet.
    Empty,
    /// `count` samples, all exactly `value`; the latest at `last_ts`.
    Flat {
        value: f64,
        count: u64,
        last_ts: i64,
    },
    /// The series has varied: a full detector.
    Active(Box<AnomalyDetector>),
}

impl LazyDetector {
    /// A detector with `config` (clamped as by [`AnomalyDetector::new`]).
    pub fn new(config: AnomalyConfig) -> Self {
        Self::shared(Arc::new(config))
    }

    /// A lazy detector with a shared `config` (clamped as by [`AnomalyDetector::shared`]).
    pub fn shared(config: Arc<AnomalyConfig>) -> Self {
        let clamped = config.clamped();
        Self {
            config: if clamped == *config {
                config
            } else {
                Arc::new(clamped)
            },
            state: LazyState::Empty,
        }
    }

    /// Flat samples replayed at most when the series first varies: enough to fill the
    /// window twice over past the warm-up, after which more of the same changes nothing.
    pub fn replay_limit(&self) -> u64 {
        (2 * self.config.window + self.config.warmup) as u64
    }

    /// Judges one sample. `None` while the series is flat (never anomalous); otherwise the
    /// verdict the eager detector would give.
    pub fn update(&mut self, ts_ms: i64, value: f64) -> Option<Verdict> {
        let limit = self.replay_limit();
        match &mut self.state {
            LazyState::Active(d) => Some(d.update(ts_ms, value)),
            // Ignored by the detector too (not anomalous, no state change).
            _ if !value.is_finite() => None,
            LazyState::Empty => {
                self.state = LazyState::Flat {
                    value,
                    count: 1,
                    last_ts: ts_ms,
                };
                None
            }
            LazyState::Flat {
                value: flat,
                count,
                last_ts,
            } if *flat == value => {
                *count += 1;
                *last_ts = ts_ms;
                None
            }
            LazyState::Flat {
                value: flat,
                count,
                last_ts,
            } => {
                let mut detector = AnomalyDetector::shared(self.config.clone());
                for _ in 0..(*count).min(limit) {
                    detector.update(*last_ts, *flat);
                }
                let verdict = detector.update(ts_ms, value);
                self.state = LazyState::Active(Box::new(detector));
                Some(verdict)
            }
        }
    }

    /// True once the series has varied and the full detector is built.
    pub fn is_active(&self) -> bool {
        matches!(self.state, LazyState::Active(_))
    }

    /// Bytes held: the struct, plus the full detector once built.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + match &self.state {
                LazyState::Active(d) => d.memory_bytes(),
                _ => 0,
            }
    }
}

/// A detector's window: its values ascending, each in one `u32` key that also carries the
/// value's arrival tag, 4 bytes a value instead of the 6 of an `f32` and a `u16` tag.
///
/// A key is the value's `f32` bits mapped so that unsigned order is numeric order (sign bit
/// flipped for positives, all bits for negatives), rounded to a multiple of `mask + 1`; the
/// low bits (`mask`) hold the arrival number modulo `mask + 1`, the smallest power of two
/// at least the window, so the tags in a window are distinct. The oldest value is found by
/// its tag: no second copy in arrival order is kept. A value keeps `23 − log₂ window`
/// bits of mantissa: 13 at the default window of 1,024 (a relative error of at most
/// 6 · 10⁻⁵, against a scale floor of 1 % of the level), 7 at the largest (65,536).
#[derive(Clone, Debug)]
struct Packed {
    keys: Vec<u32>,
    /// The tag bits.
    mask: u32,
    /// What the keys encode is the value minus this, so the rounding is relative to the
    /// distance from the level, not to the value: values near the level, where scores are
    /// decided, read back almost exactly.
    center: f64,
}

impl Packed {
    /// An empty window for `window` values (clamped to 8 to [`MAX_WINDOW`] by the config).
    fn for_window(window: usize) -> Self {
        let window = window.clamp(2, MAX_WINDOW) as u32;
        let bits = (window - 1).ilog2() + 1;
        Packed {
            keys: Vec::new(),
            mask: (1u32 << bits) - 1,
            center: 0.0,
        }
    }

    /// Re-encodes the values around `center`, in O(n): the encoding is monotone, so they
    /// stay in order (equal values may end up out of tag order, which nothing relies on).
    fn recenter(&mut self, center: f64) {
        if !center.is_finite() {
            return;
        }
        let values: Vec<f64> = (0..self.keys.len()).map(|i| self.value(i)).collect();
        self.center = center;
        for (i, value) in values.into_iter().enumerate() {
            let key = self.key_of(value);
            self.keys[i] = key | (self.keys[i] & self.mask);
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key of a finite `value`, tag bits 0: its distance from the center, clamped into
    /// `f32`'s finite range, its magnitude rounded to the nearest multiple of `mask + 1`
    /// units in the last place (so small integers stay exact), in numeric order.
    fn key_of(&self, value: f64) -> u32 {
        let d = (value - self.center).clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32;
        let bits = d.to_bits();
        let top = f32::MAX.to_bits() & !self.mask;
        let magnitude = ((bits & 0x7FFF_FFFF) + (self.mask >> 1) + 1) & !self.mask;
        let rounded = f32::from_bits((bits & 0x8000_0000) | magnitude.min(top));
        ordered(rounded) & !self.mask
    }

    /// The `i`-th smallest value.
    fn value(&self, i: usize) -> f64 {
        let bits = unordered(self.keys[i] & !self.mask).to_bits() & !self.mask;
        self.center + f64::from(f32::from_bits(bits))
    }

    /// The `q` quantile of the values (as [`quantile_linear`]).
    fn quantile(&self, q: f64) -> f64 {
        quantile_linear_by(self.keys.len(), q, |i| self.value(i))
    }
}

/// `f32` bits whose unsigned order is the numeric order (for non-NaN values).
fn ordered(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The inverse of [`ordered`].
fn unordered(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7FFF_FFFF
    } else {
        !k
    })
}

/// The position of the key tagged `tag` (under `mask`) in `keys`. Scanned 32 at a time
/// with a comparison that does not stop early, which the compiler turns into vector
/// compares; a plain `position` compares one tag at a time and made an update three times
/// slower.
fn find_tag(keys: &[u32], mask: u32, tag: u32) -> Option<usize> {
    let mut chunks = keys.chunks_exact(32);
    let mut start = 0;
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |hit, &k| hit | (k & mask == tag)) {
            return chunk
                .iter()
                .position(|&k| k & mask == tag)
                .map(|i| start + i);
        }
        start += 32;
    }
    let rest = chunks.remainder();
    rest.iter()
        .position(|&k| k & mask == tag)
        .map(|i| start + i)
}

/// Per-sample factor that halves a value every `half_life` samples (0 for no memory).
fn half_life_decay(half_life: f64) -> f64 {
    if half_life >= 1.0 {
        0.5f64.powf(1.0 / half_life)
    } else {
        0.0
    }
}

/// A mask of the `n` lowest bits.
fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The k-th smallest (0-based) of `|v − m|` over `n` ascending values (`at(i)` the i-th),
/// in O(log n): the deviations form two ascending runs (below `m`, read backwards, and from
/// `m` up), and the k-th smallest of two sorted runs is found by binary search on how many
/// come from the first.
fn kth_abs_deviation(n: usize, at: impl Fn(usize) -> f64, m: f64, k: usize) -> f64 {
    // The first index whose value is not below `m`.
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if at(mid) < m {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let split = lo;
    let (na, nb) = (split, n - split);
    let a = |i: usize| m - at(na - 1 - i);
    let b = |j: usize| at(split + j) - m;
    let need = (k + 1).min(na + nb);
    let (mut lo, mut hi) = (need.saturating_sub(nb), need.min(na));
    while lo < hi {
        let i = (lo + hi) / 2;
        let j = need - i;
        if j > 0 && i < na && b(j - 1) > a(i) {
            lo = i + 1;
        } else {
            hi = i;
        }
    }
    let (i, j) = (lo, need - lo);
    let from_a = if i > 0 { a(i - 1) } else { 0.0 };
    let from_b = if j > 0 { b(j - 1) } else { 0.0 };
    from_a.max(from_b)
}

#[cfg(test)]
#[path = "anomaly_tests.rs"]
mod tests;
