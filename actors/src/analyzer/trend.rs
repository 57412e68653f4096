//! Trends: least-squares slope, its significance and effect size, classification and
//! time-to-threshold prediction. Plain logic, no actix.
//!
//! # Fit
//!
//! [`fit`] is ordinary least squares of value on time (seconds since the earliest sample),
//! computed in centred form for accuracy. NaN and ±∞ values are dropped; fewer than three
//! finite points, or all of them at one instant, give `None`. Unordered input is sorted by
//! time (the autocorrelation and the step search need time order). The plain OLS figures
//! (`stderr_ols`, `t_stat_ols`, `p_value_ols`) are what `scipy.stats.linregress` reports;
//! the test `fit_matches_scipy_reference` holds them, and the adjusted figures below, to
//! 1e-9 relative error against `fixtures/trend_reference.json` (made by
//! `fixtures/make_reference.py`).
//!
//! # Significance, corrected for autocorrelation
//!
//! Monitoring series are autocorrelated: a value is close to the one a second before, so
//! 600 samples carry far less than 600 samples' worth of evidence, and the plain OLS test
//! calls slow wander a trend (25 % of flat windows at lag-1 correlation 0.5, 63 % at 0.9;
//! table below). [`fit`] therefore also runs the test with an *effective sample size*
//! (Santer et al. 2000, "Statistical significance of trends and trend differences in
//! layer-average atmospheric temperature time series", JGR 105(D6)). With `ρ̂` the lag-1
//! autocorrelation of the residuals, corrected to first order for its small-sample bias
//! (Marriott & Pope 1954, Biometrika 41):
//!
//! ```text
//! ρ      = ρ̂ + (1 + 3ρ̂)/n                clamped to [0, 0.99]
//! n_eff  = n·(1 − ρ)/(1 + ρ)             clamped to [3, n]
//! stderr = stderr_ols·√((n − 2)/(n_eff − 2))
//! p      = 2·P(T > |slope/stderr|),      T ~ Student's t with n_eff − 2 degrees of freedom
//! ```
//!
//! `LinearFit::{stderr, t_stat, p_value}` are these adjusted figures, the ones
//! classification and [`time_to_threshold`] use; `lag1_autocorr` is the raw `ρ̂`.
//! Alternating noise (negative `ρ`) is not credited with more than `n` samples. The
//! correction assumes roughly even sampling.
//!
//! # The trend rule
//!
//! Even adjusted, significance is not enough: the lag-1 model under-corrects strongly
//! autocorrelated and long-memory noise, and with many points a negligible slope is
//! significant. [`classify`] calls a trend only when all of these hold
//! ([`TrendRule::default`]):
//!
//! 1. **significant**: the adjusted `p_value < alpha` (0.05);
//! 2. **large against the noise**: `effect_sd = |slope × window| / residual_stddev ≥ 1`:
//!    over the window the line moves by at least one standard deviation of the scatter
//!    around it. The residual deviation is used, not the series' own, which contains the
//!    trend and caps the ratio at √12 ≈ 3.46 for a clean ramp;
//! 3. **large against the level**: `|slope × window| / |mean| ≥ 1 %`: a sub-percent drift
//!    of a level is not worth a report (slow approaches to a limit are what
//!    [`time_to_threshold`] is for);
//! 4. **not a step** (below).
//!
//! How often this rule calls a trend on flat and ramping AR(1) noise, and how the 1 SD floor
//! was chosen, is measured in `docs/TRENDS.md`.
//!
//! # Steps
//!
//! A level shift inside the window (a restart, a cache warming, a config change) fits a
//! line well enough to look like a long trend: a jump `d` halfway fits a line that moves
//! `1.5·d` over the window. [`fit`] also fits the best single step (two means, split at the
//! index that maximises the between-segment sum of squares, each side at least 5 % of the
//! points and at least 3) and [`classify`] prefers it when its evidence over the line is
//! strong:
//!
//! ```text
//! evidence = (SSE_line − SSE_step) / σ²_step · n_eff_step / n  ≥  min_step_evidence (10)
//! ```
//!
//! where `σ²_step = SSE_step/(n − 2)` and `n_eff_step` is the effective sample size of the
//! step model's residuals. The `n_eff_step / n` factor matters: a step fitted to a ramp
//! leaves a saw-tooth, strongly autocorrelated residual, so a ramp is not taken for a step,
//! while a real step leaves only the noise. When the step wins, the trend is `Stable`,
//! `direction` is `Flat`, `step` describes it and `reason` names it. The threshold 10 is
//! about the 99th percentile of the evidence on flat noise; `docs/TRENDS.md` has how often
//! ramps are taken for steps and steps recognised.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::metric_names as names;
use crate::types::TimestampMs;

/// Whether higher values are better for a metric (throughput), worse (latency, memory,
/// CPU), or neither. See [`polarity_of`] for the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Polarity {
    /// More is better: throughput, available memory.
    HigherIsBetter,
    /// Less is better: resource use, latency, errors.
    LowerIsBetter,
    /// Neither: states, limits, sizes that follow the workload by design.
    Neutral,
}

/// The polarity of a metric, from its name (perfvisor's names are in
/// [`crate::metric_names`]). A name is read as words split at `.` and `_`; the first
/// matching rule wins:
///
/// | rule | polarity | examples |
/// |---|---|---|
/// | a word `limit`, `capacity`, `state` or `uptime`; the core count | `Neutral` | `process.open_file_descriptor.limit`, `system.memory.limit_bytes`, `process.state`, `process.uptime_seconds`, `system.cpu.logical.count` |
/// | open file descriptors (a leak exhausts the limit) | `LowerIsBetter` | `process.open_file_descriptor.count` |
/// | other names ending in `.count`, outside `perfvisor.*` (pools grow and shrink with load) | `Neutral` | `process.thread.count` |
/// | a word `available`, `free` or `idle` | `HigherIsBetter` | `system.memory.available_bytes` |
/// | the host's metrics (`app.*` and any name outside `process.`, `system.`, `perfvisor.`) with a word `duration`, `latency`, `seconds`, `error(s)`, `failure(s)`, `failed`, `timeout(s)` | `LowerIsBetter` | `app.operation.parse.duration_seconds`, `search.latency_seconds` |
/// | the host's metrics with a word `throughput`, `rate`, `requests`, `ops`, `operations`, or `per_second` | `HigherIsBetter` | `app.http.requests_per_second` |
/// | other host metrics | `Neutral` | `app.cache.entries` |
/// | `process.*`, `system.*` (resource use) | `LowerIsBetter` | `process.memory.usage_bytes`, `system.cpu.utilization_ratio`, `process.disk.write_bytes_per_second` |
/// | `perfvisor.*` with a word `dropped`, `errors`, `queue`, `backlog`, `blocked`, `buffered`, `restarts`, `maintenance` | `LowerIsBetter` | `perfvisor.storage.dropped_samples` |
/// | anything else | `Neutral` | `perfvisor.storage.stored_samples` |
pub fn polarity_of(metric: &str) -> Polarity {
    let words: Vec<&str> = metric.split(['.', '_']).collect();
    let has = |set: &[&str]| words.iter().any(|w| set.contains(w));
    if has(&["limit", "capacity", "state", "uptime"]) || metric == names::SYSTEM_CPU_COUNT {
        return Polarity::Neutral;
    }
    if metric == names::PROCESS_OPEN_FDS {
        return Polarity::LowerIsBetter;
    }
    if metric.ends_with(".count") && !metric.starts_with("perfvisor.") {
        return Polarity::Neutral;
    }
    if has(&["available", "free", "idle"]) {
        return Polarity::HigherIsBetter;
    }
    // The host's own metrics: `app.*` from profile guards, and any name the host records.
    let host_metric = !metric.starts_with("process.")
        && !metric.starts_with("system.")
        && !metric.starts_with("perfvisor.");
    if host_metric {
        if has(&[
            "duration", "latency", "seconds", "error", "errors", "failure", "failures", "failed",
            "timeout", "timeouts",
        ]) {
            return Polarity::LowerIsBetter;
        }
        if has(&["throughput", "rate", "requests", "ops", "operations"])
            || metric.contains("per_second")
        {
            return Polarity::HigherIsBetter;
        }
        return Polarity::Neutral;
    }
    if metric.starts_with("process.") || metric.starts_with("system.") {
        return Polarity::LowerIsBetter;
    }
    if metric.starts_with("perfvisor.")
        && has(&[
            "dropped",
            "errors",
            "queue",
            "backlog",
            "blocked",
            "buffered",
            "restarts",
            "maintenance",
        ])
    {
        return Polarity::LowerIsBetter;
    }
    Polarity::Neutral
}

/// The best single level shift in a window: two means, split at one sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Timestamp of the first sample after the shift.
    pub at_ms: TimestampMs,
    /// Mean of the samples before `at_ms`.
    pub before_mean: f64,
    /// Mean of the samples from `at_ms` on.
    pub after_mean: f64,
    /// Residual sum of squares of the two-means model.
    pub sse: f64,
    /// Lag-1 autocorrelation of the two-means model's residuals.
    pub lag1_autocorr: f64,
    /// How much better than the line the step explains the window:
    /// `(SSE_line − sse)/σ²_step × n_eff_step/n` (see the module doc); negative when the
    /// line is better, `f64::MAX` for a noise-free step.
    pub evidence: f64,
}

/// A least-squares line through a window of samples, with both the plain OLS test and the
/// autocorrelation-adjusted one (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearFit {
    /// Finite points used.
    pub n: usize,
    /// Time origin: the earliest sample's timestamp.
    pub t0_ms: TimestampMs,
    /// Time from the earliest to the latest sample.
    pub span_ms: i64,
    /// Slope, in value units per second.
    pub slope_per_s: f64,
    /// The line's value at `t0_ms`.
    pub intercept: f64,
    /// Standard error of the slope, adjusted for autocorrelation.
    pub stderr: f64,
    /// `slope_per_s / stderr`: 0 when both are 0, `±f64::MAX` for a noise-free slope (a
    /// finite stand-in for ±∞, so the JSON form stays a number).
    pub t_stat: f64,
    /// Two-sided p-value of the adjusted test: Student's t with `n_eff − 2` degrees of
    /// freedom. What classification uses.
    pub p_value: f64,
    /// Standard error of the slope, plain OLS (as `scipy.stats.linregress`).
    pub stderr_ols: f64,
    /// `slope_per_s / stderr_ols` (same conventions as `t_stat`).
    pub t_stat_ols: f64,
    /// Two-sided p-value of the plain OLS test, Student's t with `n − 2` degrees of
    /// freedom (as `scipy.stats.linregress`); too small for autocorrelated series.
    pub p_value_ols: f64,
    /// Lag-1 autocorrelation of the residuals, as measured (`ρ̂` in the module doc).
    pub lag1_autocorr: f64,
    /// Effective sample size `n·(1 − ρ)/(1 + ρ)` from the bias-corrected `ρ`, clamped to
    /// `[3, n]` (module doc).
    pub n_eff: f64,
    /// Standard deviation of the residuals, `√(SSE/(n − 2))`.
    pub residual_stddev: f64,
    /// Residual sum of squares of the line.
    pub sse: f64,
    /// Share of the variance the line explains.
    pub r_squared: f64,
    /// Mean of the values.
    pub mean: f64,
    /// Sample standard deviation of the values (`n − 1`).
    pub stddev: f64,
    /// Mean sample time, in seconds after `t0_ms` (for confidence bands).
    pub time_mean_s: f64,
    /// Sum of squared deviations of the sample times from their mean, in s².
    pub time_sxx: f64,
    /// The best single step, when the window is long enough to split (see the module doc);
    /// whether it beats the line is for [`classify`] to judge.
    pub best_step: Option<Step>,
}

/// Fits a line to `(timestamp ms, value)` samples. `None` for fewer than 3 finite points
/// or when all finite points share one timestamp; NaN and ±∞ values are ignored.
pub fn fit(samples: &[(TimestampMs, f64)]) -> Option<LinearFit> {
    // The common case (finite, time-ordered) borrows; anything else gets a cleaned copy.
    let clean =
        samples.iter().all(|p| p.1.is_finite()) && samples.windows(2).all(|w| w[0].0 <= w[1].0);
    let owned: Vec<(TimestampMs, f64)>;
    let pts: &[(TimestampMs, f64)] = if clean {
        samples
    } else {
        let mut v: Vec<_> = samples
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        v.sort_by_key(|p| p.0);
        owned = v;
        &owned
    };
    let (&(t0, _), &(t_last, _)) = (pts.first()?, pts.last()?);
    let n = pts.len();
    if n < 3 || t_last <= t0 {
        return None;
    }
    let nf = n as f64;
    let y0 = pts[0].1;
    if pts.iter().all(|p| p.1.to_bits() == y0.to_bits()) {
        return flat_fit(pts, y0);
    }
    // Seconds since t0; `abs_diff` cannot overflow, even across the whole i64 range.
    let xs: Vec<f64> = pts
        .iter()
        .map(|p| p.0.abs_diff(t0) as f64 / 1000.0)
        .collect();
    let (mut x_sum, mut y_sum) = (0.0, 0.0);
    for (x, p) in xs.iter().zip(pts) {
        x_sum += x;
        y_sum += p.1;
    }
    let (x_mean, y_mean) = (x_sum / nf, y_sum / nf);
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, p) in xs.iter().zip(pts) {
        let (dx, dy) = (x - x_mean, p.1 - y_mean);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx <= 0.0 || !sxx.is_finite() {
        return None;
    }
    let slope = sxy / sxx;
    let (sse, lag1) = residual_stats(
        xs.iter()
            .zip(pts)
            .map(|(x, p)| (p.1 - y_mean) - slope * (x - x_mean)),
    );
    let dof = nf - 2.0;
    let stderr_ols = (sse / dof / sxx).sqrt();
    let t_stat_ols = ratio_t(slope, stderr_ols);
    let p_value_ols = two_sided_p(t_stat_ols, dof);
    let n_eff = effective_n(nf, lag1);
    let stderr = stderr_ols * (dof / (n_eff - 2.0)).sqrt();
    let t_stat = ratio_t(slope, stderr);
    let p_value = two_sided_p(t_stat, n_eff - 2.0);
    let r_squared = if syy > 0.0 {
        (sxy * sxy / (sxx * syy)).min(1.0)
    } else {
        0.0
    };
    Some(LinearFit {
        n,
        t0_ms: t0,
        span_ms: i64::try_from(t_last.abs_diff(t0)).unwrap_or(i64::MAX),
        slope_per_s: slope,
        intercept: y_mean - slope * x_mean,
        stderr,
        t_stat,
        p_value,
        stderr_ols,
        t_stat_ols,
        p_value_ols,
        lag1_autocorr: lag1,
        n_eff,
        residual_stddev: (sse / dof).sqrt(),
        sse,
        r_squared,
        mean: y_mean,
        stddev: (syy / (nf - 1.0)).sqrt(),
        time_mean_s: x_mean,
        time_sxx: sxx,
        best_step: best_step(pts, y_mean, sse),
    })
}

/// [`fit`] of time-ordered finite `pts` (at least 3, spanning some time) that all hold the
/// value `y`: what the general fit gives in exact arithmetic (slope, residuals and spread 0,
/// p-values 1, no step), from two passes over the times and no allocation. An idle series
/// holds one value for its whole window, and the judgement fits every series every tick.
fn flat_fit(pts: &[(TimestampMs, f64)], y: f64) -> Option<LinearFit> {
    let (t0, t_last) = (pts[0].0, pts[pts.len() - 1].0);
    let n = pts.len();
    let nf = n as f64;
    let x = |p: &(TimestampMs, f64)| p.0.abs_diff(t0) as f64 / 1000.0;
    let x_mean = pts.iter().map(x).sum::<f64>() / nf;
    let sxx: f64 = pts.iter().map(|p| (x(p) - x_mean) * (x(p) - x_mean)).sum();
    if sxx <= 0.0 || !sxx.is_finite() {
        return None;
    }
    let dof = nf - 2.0;
    let n_eff = effective_n(nf, 0.0);
    Some(LinearFit {
        n,
        t0_ms: t0,
        span_ms: i64::try_from(t_last.abs_diff(t0)).unwrap_or(i64::MAX),
        slope_per_s: 0.0,
        intercept: y,
        stderr: 0.0,
        t_stat: 0.0,
        p_value: two_sided_p(0.0, n_eff - 2.0),
        stderr_ols: 0.0,
        t_stat_ols: 0.0,
        p_value_ols: two_sided_p(0.0, dof),
        lag1_autocorr: 0.0,
        n_eff,
        residual_stddev: 0.0,
        sse: 0.0,
        r_squared: 0.0,
        mean: y,
        stddev: 0.0,
        time_mean_s: x_mean,
        time_sxx: sxx,
        best_step: None,
    })
}

/// `num / den` as a t statistic: 0 for 0/0, `±f64::MAX` for a noise-free non-zero slope.
fn ratio_t(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else if num == 0.0 {
        0.0
    } else {
        num.signum() * f64::MAX
    }
}

/// Two-sided tail probability of Student's t with `dof` degrees of freedom; 1 when it
/// cannot be computed (never calls a trend on a degenerate input).
fn two_sided_p(t: f64, dof: f64) -> f64 {
    if t.is_nan() {
        return 1.0;
    }
    if t.is_infinite() || t.abs() == f64::MAX {
        return 0.0;
    }
    if t == 0.0 {
        // Every |T| is at least 0: exact, and a flat series' fit skips the distribution.
        return 1.0;
    }
    match StudentsT::new(0.0, 1.0, dof) {
        Ok(dist) => (2.0 * dist.sf(t.abs())).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

/// Sum of squares and lag-1 autocorrelation of time-ordered residuals, in one pass
/// (autocorrelation 0 when the sum of squares is 0).
fn residual_stats(residuals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut ss, mut cross, mut prev) = (0.0, 0.0, 0.0);
    for e in residuals {
        ss += e * e;
        cross += prev * e;
        prev = e;
    }
    (ss, if ss > 0.0 { cross / ss } else { 0.0 })
}

/// The effective sample size of `n` residuals whose lag-1 autocorrelation is `rho_hat`:
/// `n·(1 − ρ)/(1 + ρ)` with `ρ = ρ̂ + (1 + 3ρ̂)/n` (first-order bias correction), clamped to
/// `[0, 0.99]`, and the result clamped to `[3, n]`.
fn effective_n(n: f64, rho_hat: f64) -> f64 {
    let rho = rho_hat + (1.0 + 3.0 * rho_hat) / n;
    let rho = if rho.is_finite() {
        rho.clamp(0.0, 0.99)
    } else {
        0.0
    };
    (n * (1.0 - rho) / (1.0 + rho)).clamp(3.0, n.max(3.0))
}

/// The best single split of time-ordered `pts` (values' mean `y_mean`) into two means, and
/// its evidence against the line whose residual sum of squares is `line_sse`.
fn best_step(pts: &[(TimestampMs, f64)], y_mean: f64, line_sse: f64) -> Option<Step> {
    let n = pts.len();
    let min_seg = ((n as f64 * 0.05).ceil() as usize).max(3);
    if n < 2 * min_seg {
        return None;
    }
    // The between-segment sum of squares of a split before index k, on centred values
    // (whose total is ~0), is S_k²·n / (k·(n − k)); compared without dividing.
    let (mut best_k, mut best_num, mut best_den) = (0usize, 0.0f64, 1.0f64);
    let mut prefix = 0.0;
    let mut best_prefix = 0.0;
    let mut total = 0.0;
    for (i, p) in pts.iter().enumerate() {
        let d = p.1 - y_mean;
        total += d;
        let k = i + 1;
        if k > n - min_seg {
            continue;
        }
        prefix += d;
        if k < min_seg {
            continue;
        }
        let num = prefix * prefix;
        let den = (k * (n - k)) as f64;
        if num * best_den > best_num * den {
            (best_k, best_num, best_den, best_prefix) = (k, num, den, prefix);
        }
    }
    if best_k == 0 || best_num <= 0.0 {
        return None;
    }
    let k = best_k;
    let before_mean = y_mean + best_prefix / k as f64;
    let after_mean = y_mean + (total - best_prefix) / (n - k) as f64;
    let (sse, lag1_autocorr) = residual_stats(
        pts.iter()
            .enumerate()
            .map(|(i, p)| p.1 - if i < k { before_mean } else { after_mean }),
    );
    let nf = n as f64;
    let gain = line_sse - sse;
    let evidence = if sse > 0.0 {
        gain / (sse / (nf - 2.0)) * effective_n(nf, lag1_autocorr) / nf
    } else if gain > 0.0 {
        f64::MAX
    } else {
        0.0
    };
    Some(Step {
        at_ms: pts[k].0,
        before_mean,
        after_mean,
        sse,
        lag1_autocorr,
        evidence,
    })
}

/// Which way a series moves, whatever its polarity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// A trend upwards that passed the rule.
    Rising,
    /// A trend downwards that passed the rule.
    Falling,
    /// No trend (or a step, not a trend).
    Flat,
}

/// What a trend means for the metric: a direction judged by its [`Polarity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrendClass {
    /// Moving the good way.
    Improving,
    /// Moving the bad way.
    Degrading,
    /// No trend, a step, or a trend of a neutral metric (see `direction`).
    Stable,
}

/// The thresholds a slope must pass to be called a trend (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendRule {
    /// Significance level for the autocorrelation-adjusted p-value. Default 0.05.
    pub alpha: f64,
    /// Minimum `|slope × window| / residual_stddev`. Default 1.0.
    pub min_effect_sd: f64,
    /// Minimum `|slope × window| / |mean|`. Default 0.01 (1 % of the level).
    pub min_relative_change: f64,
    /// Minimum autocorrelation-weighted evidence for the step model over the line before
    /// the window is read as a step instead of a trend. Default 10.
    pub min_step_evidence: f64,
}

/// Default [`TrendRule::alpha`].
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Default [`TrendRule::min_effect_sd`].
pub const DEFAULT_MIN_EFFECT_SD: f64 = 1.0;
/// Default [`TrendRule::min_relative_change`].
pub const DEFAULT_MIN_RELATIVE_CHANGE: f64 = 0.01;
/// Default [`TrendRule::min_step_evidence`].
pub const DEFAULT_MIN_STEP_EVIDENCE: f64 = 10.0;

impl Default for TrendRule {
    fn default() -> Self {
        TrendRule {
            alpha: DEFAULT_ALPHA,
            min_effect_sd: DEFAULT_MIN_EFFECT_SD,
            min_relative_change: DEFAULT_MIN_RELATIVE_CHANGE,
            min_step_evidence: DEFAULT_MIN_STEP_EVIDENCE,
        }
    }
}

/// A classified trend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// The line it is based on.
    pub fit: LinearFit,
    /// `slope × window`: how far the line moves over the window, in value units.
    pub change_over_window: f64,
    /// `|change_over_window| / residual_stddev` (`f64::MAX` for a noise-free change).
    pub effect_sd: f64,
    /// `|change_over_window| / |mean|` (`f64::MAX` for a change around a zero mean).
    pub relative_change: f64,
    /// Adjusted `p_value < alpha`.
    pub significant: bool,
    /// Which way it moves; `Flat` unless the rule passed.
    pub direction: Direction,
    /// What that means for the metric.
    pub class: TrendClass,
    /// One sentence: why, with the numbers.
    pub reason: String,
    /// The level shift that explains the window better than a line, if one does.
    pub step: Option<Step>,
}

/// Classifies `fit` over a window of `window_ms` (the fit's own span when `window_ms ≤ 0`)
/// for a metric of `polarity`, by `rule` (see the module doc).
pub fn classify(fit: &LinearFit, window_ms: i64, polarity: Polarity, rule: &TrendRule) -> Trend {
    classify_with(fit, window_ms, polarity, rule, true)
}

/// [`classify`], with [`Trend::reason`] left empty unless `with_reason`: the judgement
/// classifies every series' trend every few seconds and reads none of the sentences, whose
/// number formatting was a tenth of its cost.
pub(crate) fn classify_with(
    fit: &LinearFit,
    window_ms: i64,
    polarity: Polarity,
    rule: &TrendRule,
    with_reason: bool,
) -> Trend {
    let window_s = if window_ms > 0 {
        window_ms
    } else {
        fit.span_ms
    } as f64
        / 1000.0;
    let change = fit.slope_per_s * window_s;
    let effect_sd = ratio_or_max(change.abs(), fit.residual_stddev);
    let relative_change = ratio_or_max(change.abs(), fit.mean.abs());
    let significant = fit.p_value < rule.alpha;
    let step = fit
        .best_step
        .as_ref()
        .filter(|s| s.evidence >= rule.min_step_evidence)
        .cloned();
    let passes = significant
        && effect_sd >= rule.min_effect_sd
        && relative_change >= rule.min_relative_change
        && step.is_none()
        && change != 0.0;
    let direction = match (passes, change > 0.0) {
        (false, _) => Direction::Flat,
        (true, true) => Direction::Rising,
        (true, false) => Direction::Falling,
    };
    let class = match (direction, polarity) {
        (Direction::Flat, _) | (_, Polarity::Neutral) => TrendClass::Stable,
        (Direction::Rising, Polarity::LowerIsBetter)
        | (Direction::Falling, Polarity::HigherIsBetter) => TrendClass::Degrading,
        _ => TrendClass::Improving,
    };
    let mut trend = Trend {
        fit: fit.clone(),
        change_over_window: change,
        effect_sd,
        relative_change,
        significant,
        direction,
        class,
        reason: String::new(),
        step,
    };
    if with_reason {
        trend.reason = reason(&trend, rule);
    }
    trend
}

/// The sentence of [`Trend::reason`].
fn reason(t: &Trend, rule: &TrendRule) -> String {
    let (fit, change, effect_sd, relative_change) =
        (&t.fit, t.change_over_window, t.effect_sd, t.relative_change);
    let change_text = format!("the change of {} over the window", num(change));
    let p_text = format!("p = {}, n_eff = {}", num(fit.p_value), num(fit.n_eff));
    if let Some(s) = &t.step {
        format!(
            "Stable: a step from {} to {} at {} ms explains the window better than a trend \
             (evidence {} ≥ {}).",
            num(s.before_mean),
            num(s.after_mean),
            s.at_ms,
            num(s.evidence),
            num(rule.min_step_evidence),
        )
    } else if t.direction != Direction::Flat {
        let verdict = match t.class {
            TrendClass::Degrading => "degrading",
            TrendClass::Improving => "improving",
            TrendClass::Stable => "a neutral metric",
        };
        let way = if change > 0.0 { "Rising" } else { "Falling" };
        format!(
            "{way} by {} over the window ({} residual SD, {} % of the mean; {p_text}): \
             {verdict}.",
            num(change.abs()),
            num(effect_sd),
            num(100.0 * relative_change),
        )
    } else if !t.significant {
        format!(
            "Stable: {change_text} is not significant ({p_text}, alpha {}).",
            num(rule.alpha)
        )
    } else if effect_sd < rule.min_effect_sd {
        format!(
            "Stable: {change_text} is significant ({p_text}) but only {} residual SD \
             (floor {}).",
            num(effect_sd),
            num(rule.min_effect_sd)
        )
    } else {
        format!(
            "Stable: {change_text} is significant ({p_text}) but only {} % of the mean \
             (floor {} %).",
            num(100.0 * relative_change),
            num(100.0 * rule.min_relative_change)
        )
    }
}

/// `num / den`; `f64::MAX` (∞ that survives JSON) when `den` is 0 and `num` is not, 0
/// for 0/0.
fn ratio_or_max(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else if num == 0.0 {
        0.0
    } else {
        f64::MAX
    }
}

/// Four significant digits without trailing zeros, in scientific notation when very
/// small or large.
fn num(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() {
        format!("{x}")
    } else if !(1e-3..1e6).contains(&a) {
        format!("{x:.3e}")
    } else {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        let text = format!("{x:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }
}

/// When a trend is predicted to cross a threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeToThreshold {
    /// The level asked about.
    pub threshold: f64,
    /// When the fitted line crosses it (point estimate); at or after `now_ms`.
    pub eta_ms: TimestampMs,
    /// The earliest crossing the confidence band allows; never before `now_ms`.
    pub earliest_ms: TimestampMs,
    /// The latest crossing the confidence band allows; `None` when, at this confidence, the
    /// slope may be zero and the line may never get there.
    pub latest_ms: Option<TimestampMs>,
    /// Confidence of the `[earliest_ms, latest_ms]` interval.
    pub confidence: f64,
}

/// Significance the slope needs before [`time_to_threshold`] predicts anything.
pub const TIME_TO_THRESHOLD_ALPHA: f64 = DEFAULT_ALPHA;

/// When the trend in `fit` reaches `threshold` (memory reaching a limit, descriptors
/// reaching the ulimit, a disk filling), seen from `now_ms`.
///
/// `None` when the line moves away from the threshold (including when the fitted level at
/// `now_ms` is already past it), the slope is not significant
/// (adjusted `p_value ≥` [`TIME_TO_THRESHOLD_ALPHA`]), or `threshold`/`confidence` are not
/// usable (`confidence` must be in (0, 1)). The interval is Fieller's: the times at which
/// the two-sided `confidence` band of the fitted line (Student's t with `n_eff − 2`
/// degrees of freedom, autocorrelation-adjusted residual deviation) contains the threshold,
/// so both the slope's and the level's uncertainty count. It bounds the crossing of the
/// *trend*; single noisy samples cross earlier.
pub fn time_to_threshold(
    fit: &LinearFit,
    now_ms: TimestampMs,
    threshold: f64,
    confidence: f64,
) -> Option<TimeToThreshold> {
    if !(threshold.is_finite() && confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let b = fit.slope_per_s;
    // A NaN p-value fails the test too.
    let significant = fit.p_value < TIME_TO_THRESHOLD_ALPHA;
    if b == 0.0 || !b.is_finite() || !significant {
        return None;
    }
    let to_s = |t: TimestampMs| (i128::from(t) - i128::from(fit.t0_ms)) as f64 / 1000.0;
    let to_ms = |x: f64| {
        let ms = (fit.t0_ms as f64 + x * 1000.0).round();
        // `as` saturates at the i64 range: "never" in practice.
        ms as i64
    };
    let x_now = to_s(now_ms);
    let gap = threshold - (fit.intercept + b * x_now);
    if gap * b < 0.0 {
        return None;
    }
    let eta_ms = to_ms((threshold - fit.intercept) / b);

    // Band half-width at u = x − x̄: q·√(1/n + u²/Sxx), with q = t·s (adjusted s).
    let dof = fit.n_eff - 2.0;
    let tq = StudentsT::new(0.0, 1.0, dof)
        .ok()?
        .inverse_cdf(0.5 + confidence / 2.0);
    let s = fit.stderr * fit.time_sxx.sqrt();
    let q = tq * s;
    let n = fit.n as f64;
    let c = fit.intercept + b * fit.time_mean_s - threshold;
    // threshold inside the band ⇔ f(u) = A·u² + 2B·u + C ≤ 0.
    let a2 = b * b - q * q / fit.time_sxx;
    let b2 = b * c;
    let c2 = c * c - q * q / n;
    let f = |u: f64| a2 * u * u + 2.0 * b2 * u + c2;
    let disc = b2 * b2 - a2 * c2;
    let roots = if disc >= 0.0 && a2 != 0.0 {
        let r = disc.sqrt();
        let (r1, r2) = ((-b2 - r) / a2, (-b2 + r) / a2);
        Some((r1.min(r2), r1.max(r2)))
    } else {
        None
    };
    let u_now = x_now - fit.time_mean_s;
    let earliest_u = if f(u_now) <= 0.0 {
        u_now
    } else {
        match roots {
            Some((lo, _)) if lo > u_now => lo,
            Some((_, hi)) if hi > u_now => hi,
            _ => u_now,
        }
    };
    let latest_ms = match roots {
        Some((_, hi)) if a2 > 0.0 => Some(to_ms(hi.max(u_now) + fit.time_mean_s)),
        _ => None,
    };
    Some(TimeToThreshold {
        threshold,
        eta_ms,
        earliest_ms: to_ms(earliest_u + fit.time_mean_s),
        latest_ms,
        confidence,
    })
}

#[cfg(test)]
#[path = "trend_tests.rs"]
mod tests;
