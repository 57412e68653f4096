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
    let change_text = format!("the change of {} over the window", num(change));
    let p_text = format!("p = {}, n_eff = {}", num(fit.p_value), num(fit.n_eff));
    let reason = if let Some(s) = &step {
        format!(
            "Stable: a step from {} to {} at {} ms explains the window better than a trend \
             (evidence {} ≥ {}).",
            num(s.before_mean),
            num(s.after_mean),
            s.at_ms,
            num(s.evidence),
            num(rule.min_step_evidence),
        )
    } else if passes {
        let verdict = match class {
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
    } else if !significant {
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
    };
    Trend {
        fit: fit.clone(),
        change_over_window: change,
        effect_sd,
        relative_change,
        significant,
        direction,
        class,
        reason,
        step,
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
mod tests {
    use super::*;

    /// One standard normal deviate (Box–Muller).
    fn normal(rng: &mut fastrand::Rng) -> f64 {
        let u1 = 1.0 - rng.f64();
        let u2 = rng.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` samples at 1 Hz from t = 0: `signal(i)` plus AR(1) noise with lag-1 correlation
    /// `rho` and marginal standard deviation `sd`.
    fn series(
        rng: &mut fastrand::Rng,
        n: usize,
        rho: f64,
        sd: f64,
        signal: impl Fn(usize) -> f64,
    ) -> Vec<(TimestampMs, f64)> {
        let innov = sd * (1.0 - rho * rho).sqrt();
        let mut e = sd * normal(rng);
        (0..n)
            .map(|i| {
                if i > 0 {
                    e = rho * e + innov * normal(rng);
                }
                (i as TimestampMs * 1000, signal(i) + e)
            })
            .collect()
    }

    /// Share of `seeds` flat series of `n` points that are not classified `Stable`.
    fn false_trend_rate(seeds: u64, n: usize, rho: f64, rule: &TrendRule) -> f64 {
        let mut trends = 0;
        for seed in 0..seeds {
            let mut rng = fastrand::Rng::with_seed(seed);
            let s = series(&mut rng, n, rho, 1.0, |_| 100.0);
            if let Some(f) = fit(&s) {
                let t = classify(&f, 0, Polarity::LowerIsBetter, rule);
                if t.class != TrendClass::Stable || t.direction != Direction::Flat {
                    trends += 1;
                }
            }
        }
        trends as f64 / seeds as f64
    }

    /// Relative error at most 1e-9 (absolute 1e-12 near zero).
    fn assert_close(got: f64, expected: f64, what: &str) {
        let tol = 1e-9 * expected.abs().max(1e-3);
        assert!(
            (got - expected).abs() <= tol,
            "{what}: got {got:e}, reference says {expected:e}"
        );
    }

    /// Slope, intercept, stderr, t and p-value match scipy.stats.linregress (plain OLS) and
    /// the adjusted test matches an independent numpy/scipy implementation, within 1e-9.
    #[test]
    fn fit_matches_scipy_reference() {
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("fixtures/trend_reference.json")).unwrap();
        let mut fitted = 0;
        for s in reference["series"].as_array().unwrap() {
            let name = s["name"].as_str().unwrap();
            let ts: Vec<i64> = serde_json::from_value(s["ts_ms"].clone()).unwrap();
            let values: Vec<f64> = serde_json::from_value(s["values"].clone()).unwrap();
            let samples: Vec<(i64, f64)> = ts.into_iter().zip(values).collect();
            let got = fit(&samples);
            if s["fit"].is_null() {
                assert!(got.is_none(), "{name}: expected no fit");
                continue;
            }
            let got = got.unwrap();
            let e = &s["fit"];
            let f = |k: &str| e[k].as_f64().unwrap();
            assert_eq!(got.n as u64, e["n"].as_u64().unwrap(), "{name}");
            assert_eq!(got.t0_ms, e["t0_ms"].as_i64().unwrap(), "{name}");
            let pairs = [
                ("slope_per_s", got.slope_per_s),
                ("intercept", got.intercept),
                ("stderr_ols", got.stderr_ols),
                ("t_stat_ols", got.t_stat_ols),
                ("p_value_ols", got.p_value_ols),
                ("r_squared", got.r_squared),
                ("residual_stddev", got.residual_stddev),
                ("mean", got.mean),
                ("stddev", got.stddev),
                ("lag1_autocorr", got.lag1_autocorr),
                ("n_eff", got.n_eff),
                ("stderr", got.stderr),
                ("t_stat", got.t_stat),
                ("p_value", got.p_value),
            ];
            for (k, g) in pairs {
                assert_close(g, f(k), &format!("{name}.{k}"));
            }
            fitted += 1;
        }
        assert!(fitted >= 5, "only {fitted} fits compared");
    }

    /// NaN and ±∞ are ignored, fewer than 3 finite points or a single instant give `None`,
    /// and degenerate inputs do not panic anywhere.
    #[test]
    fn bad_input() {
        assert!(fit(&[]).is_none());
        assert!(fit(&[(0, 1.0), (1000, 2.0)]).is_none());
        assert!(fit(&[
            (0, 1.0),
            (1000, f64::NAN),
            (2000, f64::INFINITY),
            (3000, 2.0)
        ])
        .is_none());
        assert!(fit(&[(5, 1.0), (5, 2.0), (5, 3.0), (5, 4.0)]).is_none());
        let with_junk = [
            (0, 1.0),
            (1000, f64::NAN),
            (2000, 3.0),
            (3000, f64::NEG_INFINITY),
            (4000, 5.0),
            (5000, 7.0),
        ];
        let clean = [(0, 1.0), (2000, 3.0), (4000, 5.0), (5000, 7.0)];
        assert_eq!(fit(&with_junk), fit(&clean));
        // Out of order input is sorted first.
        let shuffled = [(4000, 5.0), (0, 1.0), (5000, 7.0), (2000, 3.0)];
        assert_eq!(fit(&shuffled), fit(&clean));
        // Extreme timestamps do not overflow.
        let f = fit(&[(i64::MIN, 0.0), (0, 1.0), (i64::MAX, 2.0)]).unwrap();
        assert!(f.slope_per_s.is_finite());
        // A noise-free line: infinite t, p = 0; a constant: t = 0, p = 1.
        let line = fit(&[(0, 1.0), (1000, 2.0), (2000, 3.0), (3000, 4.0)]).unwrap();
        assert_eq!((line.p_value, line.p_value_ols), (0.0, 0.0));
        let flat = fit(&[(0, 2.0), (1000, 2.0), (2000, 2.0), (3000, 2.0)]).unwrap();
        assert_eq!((flat.t_stat, flat.p_value), (0.0, 1.0));
        let rule = TrendRule::default();
        for f in [&line, &flat, &f] {
            for p in [
                Polarity::LowerIsBetter,
                Polarity::HigherIsBetter,
                Polarity::Neutral,
            ] {
                let t = classify(f, 0, p, &rule);
                assert!(!t.reason.is_empty());
                let _ = classify(f, -5, p, &rule);
            }
            for c in [0.0, 1.0, f64::NAN, 0.95] {
                for thr in [f64::NAN, 10.0, -10.0, 1e300] {
                    let _ = time_to_threshold(f, 0, thr, c);
                }
            }
        }
        assert_eq!(
            classify(&flat, 0, Polarity::LowerIsBetter, &rule).class,
            TrendClass::Stable
        );
        assert_eq!(
            classify(&line, 0, Polarity::LowerIsBetter, &rule).class,
            TrendClass::Degrading
        );
        assert!(time_to_threshold(&line, 3000, 10.0, 1.0).is_none());
        assert!(
            time_to_threshold(&line, 3000, 0.0, 0.95).is_none(),
            "moving away"
        );
        let ttt = time_to_threshold(&line, 3000, 10.0, 0.95).unwrap();
        assert_eq!(
            (ttt.eta_ms, ttt.earliest_ms, ttt.latest_ms),
            (9000, 9000, Some(9000))
        );
    }

    /// A trend survives a JSON round trip, including the noise-free case whose ratios are
    /// "infinite" (`f64::MAX`, since JSON has no ∞).
    #[test]
    fn trend_round_trips_through_json() {
        let uptime: Vec<(i64, f64)> = (0..600).map(|i| (i * 1000, 5.0 + i as f64)).collect();
        let mut rng = fastrand::Rng::with_seed(9);
        let step = series(&mut rng, 600, 0.0, 1.0, |i| if i < 200 { 1.0 } else { 9.0 });
        for samples in [uptime, step] {
            let f = fit(&samples).unwrap();
            let t = classify(&f, 0, Polarity::Neutral, &TrendRule::default());
            let json = serde_json::to_string(&t).unwrap();
            let back: Trend = serde_json::from_str(&json).unwrap();
            // serde_json's default float parser may be off by one ulp (the workspace does not
            // enable `float_roundtrip`), so numbers are compared to 1e-15.
            assert_json_close(
                &serde_json::to_value(&back).unwrap(),
                &serde_json::to_value(&t).unwrap(),
            );
            assert_eq!(
                (back.class, back.direction, back.reason),
                (t.class, t.direction, t.reason)
            );
        }
        let f = fit(&[(0, 0.0), (1000, 1.0), (2000, 2.0)]).unwrap();
        assert_eq!((f.t_stat, f.p_value), (f64::MAX, 0.0));
    }

    /// Equal JSON values, numbers within 1e-15 relative.
    fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value) {
        use serde_json::Value;
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() <= 1e-15 * x.abs().max(y.abs()), "{x} vs {y}");
            }
            (Value::Object(x), Value::Object(y)) => {
                assert_eq!(x.len(), y.len());
                for (k, v) in x {
                    assert_json_close(v, &y[k]);
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len());
                x.iter().zip(y).for_each(|(v, w)| assert_json_close(v, w));
            }
            _ => assert_eq!(a, b),
        }
    }

    /// Flat noise, white and AR(1) with ρ = 0.5, is `Stable` in at least 99 % of 1,000
    /// seeds of 600 points.
    #[test]
    fn flat_noise_is_stable() {
        let rule = TrendRule::default();
        for rho in [0.0, 0.5] {
            let rate = false_trend_rate(1000, 600, rho, &rule);
            assert!(rate <= 0.01, "rho {rho}: false-trend rate {rate}");
        }
    }

    /// A leak of 1 MiB/min over an hour at 1 Hz with noise is found as `Degrading` with the
    /// slope within 5 % of the truth, and the time it reaches a limit is bracketed.
    #[test]
    fn slow_leak_is_degrading_and_time_to_limit_is_bracketed() {
        const MIB: f64 = 1024.0 * 1024.0;
        let truth = MIB / 60.0;
        let base = 200.0 * MIB;
        let limit = 300.0 * MIB; // reached 100 min after the start, 40 min after "now"
        let truth_crossing_ms = ((limit - base) / truth * 1000.0).round() as i64;
        let mut covered = 0;
        let seeds = 200;
        for seed in 0..seeds {
            let mut rng = fastrand::Rng::with_seed(seed);
            let s = series(&mut rng, 3600, 0.5, 4.0 * MIB, |i| base + truth * i as f64);
            let f = fit(&s).unwrap();
            let t = classify(
                &f,
                3_600_000,
                polarity_of(names::PROCESS_MEMORY_RSS),
                &TrendRule::default(),
            );
            assert_eq!(t.class, TrendClass::Degrading, "seed {seed}: {}", t.reason);
            assert_eq!(t.direction, Direction::Rising);
            assert!(t.step.is_none());
            let err = (f.slope_per_s - truth).abs() / truth;
            assert!(err < 0.05, "seed {seed}: slope error {err}");
            let now = s[s.len() - 1].0;
            let ttt = time_to_threshold(&f, now, limit, 0.95).unwrap();
            let latest = ttt.latest_ms.unwrap();
            assert!(ttt.earliest_ms <= ttt.eta_ms && ttt.eta_ms <= latest);
            if (ttt.earliest_ms..=latest).contains(&truth_crossing_ms) {
                covered += 1;
            }
        }
        // Nominal 95 %; the lag-1 correction is slightly optimistic.
        assert!(covered >= seeds * 90 / 100, "coverage {covered}/{seeds}");
    }

    /// A level jump halfway is reported as a step (Stable, Flat), not as a trend, even though
    /// the line through it is highly significant.
    #[test]
    fn step_is_not_a_trend() {
        let rule = TrendRule::default();
        for seed in 0..100 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let s = series(
                &mut rng,
                600,
                0.5,
                1.0,
                |i| if i < 300 { 100.0 } else { 104.0 },
            );
            let f = fit(&s).unwrap();
            assert!(f.p_value < 1e-6);
            let t = classify(&f, 0, Polarity::LowerIsBetter, &rule);
            let step = t
                .step
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: {}", t.reason));
            assert_eq!(
                (t.class, t.direction),
                (TrendClass::Stable, Direction::Flat)
            );
            assert!((step.at_ms - 300_000).abs() <= 10_000, "{}", step.at_ms);
            assert!((step.after_mean - step.before_mean - 4.0).abs() < 0.5);
            assert!(t.reason.contains("step"), "{}", t.reason);
        }
    }

    /// Numbers in reasons are short: four significant digits, no trailing zeros.
    #[test]
    fn reason_numbers_are_short() {
        let cases = [
            (0.05, "0.05"),
            (12.0, "12"),
            (-0.35634, "-0.3563"),
            (1234.56, "1235"),
            (2.5e-7, "2.500e-7"),
            (0.0, "0"),
        ];
        for (x, want) in cases {
            assert_eq!(num(x), want);
        }
    }

    /// Polarity follows the documented table for perfvisor's own names.
    #[test]
    fn polarity_of_perfvisor_names() {
        use Polarity::*;
        let cases = [
            (names::PROCESS_MEMORY_RSS, LowerIsBetter),
            (names::PROCESS_CPU_UTILIZATION, LowerIsBetter),
            (names::PROCESS_DISK_WRITE_RATE, LowerIsBetter),
            (names::PROCESS_OPEN_FDS, LowerIsBetter),
            (names::PROCESS_FD_LIMIT, Neutral),
            (names::PROCESS_THREADS, Neutral),
            (names::PROCESS_STATE, Neutral),
            (names::PROCESS_UPTIME, Neutral),
            (names::SYSTEM_CPU_COUNT, Neutral),
            (names::SYSTEM_MEMORY_TOTAL, Neutral),
            (names::SYSTEM_MEMORY_AVAILABLE, HigherIsBetter),
            (names::SYSTEM_LOAD_1M, LowerIsBetter),
            (names::SYSTEM_SWAP_USED, LowerIsBetter),
            (names::PERFVISOR_STORAGE_DROPPED, LowerIsBetter),
            (names::PERFVISOR_STORAGE_QUEUE, LowerIsBetter),
            (names::PERFVISOR_STORAGE_STORED, Neutral),
            ("app.operation.parse.duration_seconds", LowerIsBetter),
            ("app.http.requests_per_second", HigherIsBetter),
            ("app.ingest.throughput", HigherIsBetter),
            ("app.cache.entries", Neutral),
            ("app.queue.drops", Neutral),
            ("app.http.errors_total", LowerIsBetter),
            ("app.http.requests_total", HigherIsBetter),
            ("system.disk.free_bytes", HigherIsBetter),
            (names::PERFVISOR_STORAGE_WRITE_ERRORS, LowerIsBetter),
            (names::PERFVISOR_STORAGE_COMPACTION_BACKLOG, LowerIsBetter),
            (names::PERFVISOR_ACTOR_RESTARTS, LowerIsBetter),
            ("some.other.metric", Neutral),
        ];
        for (name, want) in cases {
            assert_eq!(polarity_of(name), want, "{name}");
        }
        assert_eq!(polarity_of(&names::operation_duration("x")), LowerIsBetter);
    }

    /// A falling throughput is degrading; a rising one improving; a neutral metric keeps its
    /// direction but stays `Stable`.
    #[test]
    fn polarity_decides_the_class() {
        let rule = TrendRule::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let falling = series(&mut rng, 600, 0.0, 1.0, |i| 500.0 - 0.05 * i as f64);
        let f = fit(&falling).unwrap();
        let t = classify(&f, 0, Polarity::HigherIsBetter, &rule);
        assert_eq!(
            (t.direction, t.class),
            (Direction::Falling, TrendClass::Degrading)
        );
        let t = classify(&f, 0, Polarity::LowerIsBetter, &rule);
        assert_eq!(t.class, TrendClass::Improving);
        let t = classify(&f, 0, Polarity::Neutral, &rule);
        assert_eq!(
            (t.direction, t.class),
            (Direction::Falling, TrendClass::Stable)
        );
        assert!(t.reason.starts_with("Falling"), "{}", t.reason);
    }

    /// Prints the false-trend and detection rates the module doc quotes.
    #[test]
    #[ignore = "measurement; run with --release --ignored --nocapture"]
    fn trend_rule_measurements() {
        let rule = TrendRule::default();
        // Columns: plain OLS p < 0.05; adjusted p < 0.05; the full rule with effect floors
        // of 0.5, 1 (the default) and 2 residual SD.
        let floors = [0.5, 1.0, 2.0];
        let verdicts = |f: &LinearFit| {
            let mut v = vec![f.p_value_ols < 0.05, f.p_value < 0.05];
            for floor in floors {
                let r = TrendRule {
                    min_effect_sd: floor,
                    ..TrendRule::default()
                };
                v.push(classify(f, 0, Polarity::LowerIsBetter, &r).direction != Direction::Flat);
            }
            v
        };
        let rates = |n: usize, rho: f64, change: f64| {
            let mut counts = [0usize; 5];
            for seed in 0..1000 {
                let mut rng = fastrand::Rng::with_seed(seed);
                let slope = change / n as f64;
                let s = series(&mut rng, n, rho, 1.0, |i| 100.0 + slope * i as f64);
                for (c, v) in counts.iter_mut().zip(verdicts(&fit(&s).unwrap())) {
                    *c += usize::from(v);
                }
            }
            counts.map(|c| c as f64 / 10.0)
        };
        println!("trend called %: change/SD, n, rho | OLS | adjusted | floor 0.5 | 1 | 2");
        for change in [0.0, 1.0, 2.0] {
            for n in [60, 120, 600] {
                for rho in [0.0, 0.5, 0.8, 0.9] {
                    let r = rates(n, rho, change);
                    println!(
                        "{change:3.1} {n:4} {rho:.1} | {:5.1} | {:5.1} | {:5.1} | {:5.1} | {:5.1}",
                        r[0], r[1], r[2], r[3], r[4]
                    );
                }
            }
        }

        // Ramps of a given total change (in noise SDs) over 600 points: detected as a
        // trend, mistaken for a step, and slope error.
        println!("ramp: change/SD, rho | trend % | step % | max slope error %");
        for rho in [0.0, 0.5] {
            for change in [0.5, 1.0, 2.0, 5.0, 15.0] {
                let (mut found, mut steps, mut worst) = (0, 0, 0.0f64);
                for seed in 0..1000 {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    let slope = change / 600.0;
                    let s = series(&mut rng, 600, rho, 1.0, |i| 100.0 + slope * i as f64);
                    let f = fit(&s).unwrap();
                    let t = classify(&f, 600_000, Polarity::LowerIsBetter, &rule);
                    found += usize::from(t.direction == Direction::Rising);
                    steps += usize::from(t.step.is_some());
                    worst = worst.max((f.slope_per_s / slope - 1.0).abs());
                }
                println!(
                    "{change:4.1} {rho:.1} | {:5.1} | {:5.1} | {:5.1}",
                    found as f64 / 10.0,
                    steps as f64 / 10.0,
                    100.0 * worst
                );
            }
        }

        // The leak of `slow_leak_is_degrading_and_time_to_limit_is_bracketed`, 1,000 seeds.
        const MIB: f64 = 1024.0 * 1024.0;
        let truth = MIB / 60.0;
        let (base, limit) = (200.0 * MIB, 300.0 * MIB);
        let crossing = ((limit - base) / truth * 1000.0).round() as i64;
        for rho in [0.0, 0.5, 0.9] {
            let (mut found, mut worst, mut covered, mut width) = (0, 0.0f64, 0, 0i64);
            for seed in 0..1000 {
                let mut rng = fastrand::Rng::with_seed(seed);
                let s = series(&mut rng, 3600, rho, 4.0 * MIB, |i| base + truth * i as f64);
                let f = fit(&s).unwrap();
                let t = classify(&f, 3_600_000, Polarity::LowerIsBetter, &rule);
                found += usize::from(t.class == TrendClass::Degrading);
                worst = worst.max((f.slope_per_s / truth - 1.0).abs());
                if let Some(ttt) = time_to_threshold(&f, 3_599_000, limit, 0.95) {
                    let latest = ttt.latest_ms.unwrap_or(i64::MAX);
                    covered += usize::from((ttt.earliest_ms..=latest).contains(&crossing));
                    width += (latest - ttt.earliest_ms) / 1000;
                }
            }
            println!(
                "leak 1 MiB/min, noise 4 MiB, rho {rho}: degrading {:.1} %, max slope error \
                 {:.2} %, 95 % interval covers the crossing {:.1} %, mean width {} s",
                found as f64 / 10.0,
                100.0 * worst,
                covered as f64 / 10.0,
                width / 1000
            );
        }

        // Steps halfway of a given height (in noise SDs): reported as a step, as a trend.
        println!("step: height/SD, rho | step % | trend %");
        for rho in [0.0, 0.5] {
            for height in [0.0, 0.25, 0.5, 1.0, 2.0, 4.0] {
                let (mut steps, mut trends) = (0, 0);
                for seed in 0..1000 {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    let s = series(&mut rng, 600, rho, 1.0, |i| {
                        100.0 + if i < 300 { 0.0 } else { height }
                    });
                    let f = fit(&s).unwrap();
                    let t = classify(&f, 600_000, Polarity::LowerIsBetter, &rule);
                    steps += usize::from(t.step.is_some());
                    trends += usize::from(t.direction != Direction::Flat);
                }
                println!(
                    "{height:4.2} {rho:.1} | {:5.1} | {:5.1}",
                    steps as f64 / 10.0,
                    trends as f64 / 10.0
                );
            }
        }
    }

    /// Cost of `fit` + `classify` on a 600-point window.
    #[test]
    #[ignore = "measurement; run with --release --ignored --nocapture"]
    fn trend_cost() {
        let mut rng = fastrand::Rng::with_seed(3);
        let s = series(&mut rng, 600, 0.5, 1.0, |i| 100.0 + 0.001 * i as f64);
        let rule = TrendRule::default();
        let iters = 20_000;
        let start = std::time::Instant::now();
        let mut keep = 0.0;
        for _ in 0..iters {
            let f = fit(std::hint::black_box(&s)).unwrap();
            let t = classify(&f, 600_000, Polarity::LowerIsBetter, &rule);
            keep += t.effect_sd;
        }
        let ns = start.elapsed().as_nanos() as f64 / iters as f64;
        println!("fit+classify, 600 points: {ns:.0} ns/window ({keep:.1})");
    }
}
