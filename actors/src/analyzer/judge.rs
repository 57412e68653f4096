//! The judgement of one daemon (and of the host): bottlenecks with their evidence, the
//! 0–100 score with a breakdown of every lost point, and concrete recommendations. Plain
//! functions over a [`DaemonView`] (what the analyzer knows about a daemon right now).
//!
//! # Evidence before judgement
//! Every threshold below is a field of [`JudgeConfig`] (defaults in brackets). A rule speaks
//! only on the evidence it needs, so bursts, warm-ups, sawtooths and start-ups are not
//! paged as bottlenecks:
//! - trend-based findings (memory leak, descriptor trend, latency trend and step) and every
//!   predicted exhaustion rest on a trend spanning at least `min_trend_span_ms` [2 min];
//! - a daemon's process series (`process.*`) belong to one process: a start or restart
//!   under a new pid (a lifecycle event, intended or not, or a
//!   `process.uptime_seconds` that went down) starts them afresh, and their trends leave out the first
//!   `startup_grace_ms` [30 s] of the process (start-up allocation is not a leak). App
//!   metrics keep their history across restarts.
//!
//! # Bottleneck rules
//! Each rule reads the analyzer's short window (statistics), the trend, and anomaly
//! events; every finding carries the numbers it rests on. Severity is in `(0, 1]` and
//! scales the points lost.
//! - **CPU-bound**: the median CPU over the last `cpu_sustain_ms` [90 s] is at least
//!   `cpu_bound_floor` [70 % of one core], with samples covering `cpu_sustain_coverage`
//!   [80 %] of that span. Not the p95 (a bursty worker has a full-core p95 without being
//!   saturated), nor the window mean (ten minutes at 1 Hz: a saturated daemon would be
//!   found five minutes late). Severity grows from 0.5 at the floor to 1 at a full core.
//! - **Memory leak**: RSS rising as a trend (significant and past the effect-size floor,
//!   see `trend`) by at least `leak_floor_bytes_per_min` [0.9 MiB/min], over the minimum
//!   span, *and* its lower envelope rising: the fitted window is split into
//!   `leak_segments` [4] equal spans of time and each one's minimum must exceed the
//!   previous one's by `leak_envelope_share` [0.25] of the line's rise per segment. A
//!   warm-up followed by a flat level, a GC sawtooth, or a sawtooth whose peaks grow while
//!   its floor stays fails it; a leak raises the floor. When the whole window fails, its
//!   recent half, then quarter, is tried (a leak that began after a flat stretch), if it
//!   spans the minimum and rises by `leak_breakout` [2] times the range the memory kept
//!   before it. The time until RSS reaches the host's memory (with its confidence bound)
//!   is part of the evidence.
//! - **Memory pressure**: the host has under 10 % of its memory available and the daemon
//!   holds at least 10 % of it, or the daemon holds over 50 % of it.
//! - **I/O-bound**: disk reads + writes average at least `io_bound_bytes_per_s`
//!   [32 MiB/s] over the window.
//! - **Descriptor exhaustion**: open descriptors ≥ `descriptor_share` [80 %] of the soft
//!   limit (immediately), or a rising trend over the minimum span predicted to reach the
//!   limit within `descriptor_horizon_ms` [1 h].
//! - **Restart instability**: 3 or more unintended restarts or unexpected exits in the
//!   last 10 minutes (severity 0.9 at 3, 1 from 4: a crash loop comes first).
//! - **Latency regression**: a latency-like metric (lower is better: `*duration*`,
//!   `*latency*`, `*_seconds`, `*time*` of the host's app metrics) that is degrading as a
//!   trend by at least 20 % of its level (`latency_min_ratio` [1.2]), stepped up by ×1.2,
//!   shifted up by ×1.2 (anomaly), or whose recent p95 is `latency_p95_ratio` [1.5]× the
//!   p95 before it. Every route also needs an absolute increase of
//!   `latency_min_increase_s` [20 ms] (1 → 8 ms is not a regression); the trend and step
//!   routes need the minimum span.
//! - **Host contention**: the host's CPU is ≥ 90 % busy while two or more daemons are
//!   CPU-bound, regressing, or each holding a third of a core or more (on a saturated host
//!   nobody gets all it wants, so "CPU-bound" alone under-reports) at the same time (judged
//!   once for the host, reported on every daemon involved).
//!
//! # Score
//! 100 points in categories, each with a cap: CPU 20, memory 25, I/O 10, descriptors 10,
//! stability 20, latency 15. A bottleneck costs `cap × severity` in its category (the
//! category's cap at most); smaller warnings (e.g. CPU above 50 %) cost less. A predicted
//! exhaustion is urgent whatever the rest looks like: memory reaching the host's memory
//! (only while the leak rule holds), descriptors reaching their limit, or (for the host) a
//! file system filling, within `urgency_poor_ms` [1 h] caps the score at 59.9 (Poor),
//! within `urgency_critical_ms` [10 min] at 39.9 (Critical), by one [`Category::Urgency`]
//! deduction (cap 100) holding the prediction. Every lost point is a [`Deduction`] with the
//! evidence; `score = 100 − Σ points` exactly (points are rounded to tenths first).
//! Levels: Excellent ≥ 90, Good ≥ 75, Average ≥ 60, Poor ≥ 40, else Critical.

use std::collections::BTreeMap;

use super::anomaly::AnomalyKind;
use super::config::JudgeConfig;
pub use super::recommend::recommend;
use super::trend::{Direction, Trend, TrendClass};
pub use super::verdict::*;
use super::verdict::{AVERAGE_FLOOR, POOR_FLOOR};
use crate::types::{DaemonId, TimestampMs};

const MIB: f64 = 1024.0 * 1024.0;

fn ev(metric: &str, observed: f64, reference: f64, detail: String) -> Evidence {
    Evidence {
        metric: metric.to_string(),
        observed,
        reference,
        detail,
    }
}

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

/// Finds the daemon's own bottlenecks (host contention is added by [`judge_host`]).
pub fn bottlenecks(view: &DaemonView, host: &HostView, cfg: &JudgeConfig) -> Vec<Bottleneck> {
    let mut out = Vec::new();
    if let Some(b) = cpu_bound(view, cfg) {
        out.push(b);
    }
    if let Some(b) = memory_leak(view, cfg) {
        out.push(b);
    }
    if let Some(b) = memory_pressure(view, host) {
        out.push(b);
    }
    if let Some(b) = io_bound(view, cfg) {
        out.push(b);
    }
    if let Some(b) = descriptors(view, cfg) {
        out.push(b);
    }
    if view.restarts_recent >= 3 {
        out.push(Bottleneck {
            kind: BottleneckKind::RestartInstability,
            // A crash loop is the first thing to fix: whatever else looks wrong happens
            // between crashes.
            severity: (0.6 + 0.1 * f64::from(view.restarts_recent)).min(1.0),
            summary: format!(
                "{} restarted or exited {} times in the last 10 minutes",
                view.daemon, view.restarts_recent
            ),
            evidence: vec![ev(
                "lifecycle.restarts",
                f64::from(view.restarts_recent),
                3.0,
                format!(
                    "{} restarts/exits in 10 min (3 or more is unstable)",
                    view.restarts_recent
                ),
            )],
        });
    }
    out.extend(latency_regressions(view, cfg));
    out.sort_by(|a, b| b.severity.total_cmp(&a.severity));
    out
}

/// The recent CPU level when it is sustained: enough of the last `cpu_sustain_ms` covered by
/// samples, and their median at the floor. The median, not the p95 or the window mean: a
/// bursty worker has a high p95 without being saturated, and a ten-minute mean notices a
/// saturated daemon five minutes late.
fn sustained_cpu<'a>(view: &'a DaemonView, cfg: &JudgeConfig) -> Option<&'a RecentStats> {
    let r = view.cpu.recent.as_ref()?;
    let needed = cfg.cpu_sustain_ms as f64 * cfg.cpu_sustain_coverage;
    (r.count >= 3 && r.span_ms as f64 >= needed && r.median >= cfg.cpu_bound_floor).then_some(r)
}

fn cpu_bound(view: &DaemonView, cfg: &JudgeConfig) -> Option<Bottleneck> {
    let r = sustained_cpu(view, cfg)?;
    let floor = cfg.cpu_bound_floor;
    let severity = (0.5 + (r.median - floor) / (1.0_f64 - floor).max(0.05) * 0.5).clamp(0.5, 1.0);
    let secs = r.span_ms as f64 / 1000.0;
    let mut evidence = vec![ev(
        "process.cpu.utilization_ratio",
        r.median,
        floor,
        format!(
            "median {} of one core over the last {secs:.0} s ({} samples, mean {}; CPU-bound \
             from {} sustained for {:.0} s)",
            pct(r.median),
            r.count,
            pct(r.mean),
            pct(floor),
            cfg.cpu_sustain_ms as f64 / 1000.0
        ),
    )];
    if let Some(s) = &view.cpu.stats {
        evidence.push(ev(
            "process.cpu.utilization_ratio",
            s.p95,
            floor,
            format!(
                "window: mean {}, p95 {} over {} samples",
                pct(s.mean),
                pct(s.p95),
                s.count
            ),
        ));
    }
    Some(Bottleneck {
        kind: BottleneckKind::CpuBound,
        severity,
        summary: format!(
            "{} is CPU-bound: it has used {} of a core (median) for the last {secs:.0} s",
            view.daemon,
            pct(r.median)
        ),
        evidence,
    })
}

/// The least rise between consecutive minima of the envelope, and the rise the line
/// predicts per segment; `None` when the envelope has fewer than two segments.
fn envelope_rise(trend: &Trend, envelope: &[f64]) -> Option<(f64, f64)> {
    if envelope.len() < 2 {
        return None;
    }
    let per_segment =
        trend.fit.slope_per_s * trend.fit.span_ms as f64 / 1000.0 / envelope.len() as f64;
    let least = envelope
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min);
    Some((least, per_segment))
}

/// Whether resident memory `m` has the shape of a leak: a rising trend of at least the leak
/// floor over at least the minimum span, whose lower envelope rises segment after segment.
/// Returns the least rise of the envelope and the line's rise per segment.
pub(crate) fn leak_shape(m: &MetricView, cfg: &JudgeConfig) -> Option<(f64, f64)> {
    let trend = m.trend.as_ref()?;
    let per_min = trend.fit.slope_per_s * 60.0;
    if trend.direction != Direction::Rising
        || per_min < cfg.leak_floor_bytes_per_min
        || trend.fit.span_ms < cfg.min_trend_span_ms
    {
        return None;
    }
    // A significant line is not enough: a warm-up then a flat level, or a sawtooth whose
    // peaks grow, fits one too. A leak raises the floor the memory returns to.
    let (least, per_segment) = envelope_rise(trend, &m.envelope)?;
    (least >= cfg.leak_envelope_share * per_segment).then_some((least, per_segment))
}

fn memory_leak(view: &DaemonView, cfg: &JudgeConfig) -> Option<Bottleneck> {
    let (least, per_segment) = leak_shape(&view.rss, cfg)?;
    let trend = view.rss.trend.as_ref()?;
    let per_min = trend.fit.slope_per_s * 60.0;
    let floor_mib = cfg.leak_floor_bytes_per_min / MIB;
    let mut evidence = vec![
        ev(
            "process.memory.usage_bytes",
            per_min / MIB,
            floor_mib,
            format!(
                "RSS grows {:.1} MiB/min over {:.1} min (p = {:.2e}, {:.1} σ over the window, \
                 R² {:.2}); a leak from {floor_mib} MiB/min",
                per_min / MIB,
                trend.fit.span_ms as f64 / 60_000.0,
                trend.fit.p_value,
                trend.effect_sd,
                trend.fit.r_squared
            ),
        ),
        ev(
            "process.memory.usage_bytes",
            least / MIB,
            cfg.leak_envelope_share * per_segment / MIB,
            format!(
                "the lowest RSS of each of {} segments rises every time, by {:.1} MiB at \
                 least ({:.1} MiB needed)",
                view.rss.envelope.len(),
                least / MIB,
                cfg.leak_envelope_share * per_segment / MIB
            ),
        ),
    ];
    let mut severity = (0.5 + (per_min / MIB).log10().max(0.0) * 0.25).min(1.0);
    if let Some(t) = &view.rss_time_to_limit {
        let hours = (t.eta_ms - view.now_ms) as f64 / 3.6e6;
        evidence.push(ev(
            "process.memory.usage_bytes",
            hours,
            24.0,
            format!(
                "reaches the host's memory ({:.0} MiB) in about {:.1} h (95 % bound: from {:.1} h)",
                t.threshold / MIB,
                hours,
                (t.earliest_ms - view.now_ms) as f64 / 3.6e6
            ),
        ));
        if hours < 24.0 {
            severity = severity.max(0.8);
        }
    }
    Some(Bottleneck {
        kind: BottleneckKind::MemoryLeak,
        severity,
        summary: format!(
            "{}'s memory grows steadily by {:.1} MiB/min: a likely leak",
            view.daemon,
            per_min / MIB
        ),
        evidence,
    })
}

fn memory_pressure(view: &DaemonView, host: &HostView) -> Option<Bottleneck> {
    let rss = view.rss.stats.as_ref()?.last;
    let total = host.memory_total.filter(|t| *t > 0.0)?;
    let share = rss / total;
    let available = host.memory_available.map(|a| a / total);
    let pressured = available.is_some_and(|a| a < 0.10) && share >= 0.10;
    if !(pressured || share > 0.5) {
        return None;
    }
    let mut evidence = vec![ev(
        "process.memory.usage_bytes",
        share,
        0.5,
        format!(
            "holds {:.0} MiB, {} of the host's memory",
            rss / MIB,
            pct(share)
        ),
    )];
    if let Some(a) = available {
        evidence.push(ev(
            "system.memory.available_bytes",
            a,
            0.10,
            format!(
                "{} of the host's memory is available (pressure under 10 %)",
                pct(a)
            ),
        ));
    }
    Some(Bottleneck {
        kind: BottleneckKind::MemoryPressure,
        severity: if pressured { 0.9 } else { 0.6 },
        summary: format!(
            "{} holds {} of the host's memory{}",
            view.daemon,
            pct(share),
            if pressured {
                " while the host runs short"
            } else {
                ""
            }
        ),
        evidence,
    })
}

fn io_bound(view: &DaemonView, cfg: &JudgeConfig) -> Option<Bottleneck> {
    let read = view.disk_read.stats.as_ref().map_or(0.0, |s| s.mean);
    let write = view.disk_write.stats.as_ref().map_or(0.0, |s| s.mean);
    let total = read + write;
    let floor = cfg.io_bound_bytes_per_s;
    if total < floor {
        return None;
    }
    Some(Bottleneck {
        kind: BottleneckKind::IoBound,
        severity: (0.5 + (total / floor).log2() * 0.25).min(1.0),
        summary: format!(
            "{} moves {:.0} MiB/s to and from storage (reads {:.0}, writes {:.0})",
            view.daemon,
            total / MIB,
            read / MIB,
            write / MIB
        ),
        evidence: vec![
            ev(
                "process.disk.write_bytes",
                write / MIB,
                floor / MIB,
                format!("writes {:.1} MiB/s on average", write / MIB),
            ),
            ev(
                "process.disk.read_bytes",
                read / MIB,
                floor / MIB,
                format!(
                    "reads {:.1} MiB/s on average (I/O-bound from {:.0} MiB/s together)",
                    read / MIB,
                    floor / MIB
                ),
            ),
        ],
    })
}

fn descriptors(view: &DaemonView, cfg: &JudgeConfig) -> Option<Bottleneck> {
    let open = view.fds.stats.as_ref()?.last;
    let limit = view.fd_limit.filter(|l| *l > 0.0)?;
    let share = open / limit;
    let horizon_min = cfg.descriptor_horizon_ms as f64 / 60_000.0;
    // `fds_time_to_limit` is only predicted from a trend spanning `min_trend_span_ms`.
    let soon = view
        .fds_time_to_limit
        .as_ref()
        .map(|t| (t.eta_ms - view.now_ms) as f64 / 60_000.0)
        .filter(|m| *m < horizon_min);
    if share < cfg.descriptor_share && soon.is_none() {
        return None;
    }
    let mut evidence = vec![ev(
        "process.open_file_descriptor.count",
        open,
        limit,
        format!(
            "{open:.0} of {limit:.0} descriptors open ({}; exhaustion from {})",
            pct(share),
            pct(cfg.descriptor_share)
        ),
    )];
    if let Some(minutes) = soon {
        evidence.push(ev(
            "process.open_file_descriptor.count",
            minutes,
            horizon_min,
            format!("the trend reaches the limit in about {minutes:.1} min"),
        ));
    }
    let mut severity = ((share - 0.6) / 0.4).clamp(0.5, 1.0);
    if soon.is_some_and(|m| m * 60_000.0 < cfg.urgency_critical_ms as f64) {
        severity = 1.0;
    }
    Some(Bottleneck {
        kind: BottleneckKind::DescriptorExhaustion,
        severity,
        summary: format!(
            "{} has {open:.0} of its {limit:.0} file descriptors open",
            view.daemon
        ),
        evidence,
    })
}

fn latency_regressions(view: &DaemonView, cfg: &JudgeConfig) -> Vec<Bottleneck> {
    let mut out = Vec::new();
    for (name, m) in &view.latency {
        // Every route needs an absolute increase as well as a relative one: a fast
        // operation that gets a few times slower is still fast.
        let unit = JudgeConfig::latency_unit_s(name);
        let min_increase = cfg.latency_min_increase_s / unit;
        let ms = |x: f64| x * unit * 1000.0;
        let mut evidence = Vec::new();
        let mut severity: f64 = 0.0;
        if let Some(t) = m
            .trend
            .as_ref()
            .filter(|t| t.fit.span_ms >= cfg.min_trend_span_ms)
        {
            // A latency that drifts by a few percent is noise or load, not a regression.
            if t.class == TrendClass::Degrading
                && t.relative_change >= cfg.latency_min_ratio - 1.0
                && t.change_over_window >= min_increase
            {
                evidence.push(ev(
                    name,
                    t.relative_change,
                    cfg.latency_min_ratio - 1.0,
                    format!(
                        "trend: {:+.1} % ({:+.1} ms) over the window (p = {:.2e})",
                        t.relative_change * 100.0 * t.fit.slope_per_s.signum(),
                        ms(t.change_over_window),
                        t.fit.p_value
                    ),
                ));
                severity = severity.max(0.6);
            }
            if let Some(step) = &t.step {
                let ratio = step.after_mean / step.before_mean;
                if step.before_mean > 0.0
                    && ratio >= cfg.latency_min_ratio
                    && step.after_mean - step.before_mean >= min_increase
                {
                    evidence.push(ev(
                        name,
                        ratio,
                        cfg.latency_min_ratio,
                        format!(
                            "stepped up from {:.1} to {:.1} ms (×{ratio:.2})",
                            ms(step.before_mean),
                            ms(step.after_mean)
                        ),
                    ));
                    severity = severity.max((0.4 + (ratio - 1.0) * 0.3).min(1.0));
                }
            }
        }
        if let Some((before, after)) = m.p95_before_after {
            if before > 0.0
                && after / before >= cfg.latency_p95_ratio
                && after - before >= min_increase
            {
                evidence.push(ev(
                    name,
                    after / before,
                    cfg.latency_p95_ratio,
                    format!(
                        "p95 {:.1} ms now against {:.1} ms before (×{:.2})",
                        ms(after),
                        ms(before),
                        after / before
                    ),
                ));
                severity = severity.max((0.4 + (after / before - 1.0) * 0.3).min(1.0));
            }
        }
        if let Some(a) = &m.anomaly {
            if a.kind == AnomalyKind::LevelShiftUp
                && a.baseline > 0.0
                && a.value / a.baseline >= cfg.latency_min_ratio
                && a.value - a.baseline >= min_increase
            {
                evidence.push(ev(
                    name,
                    a.value / a.baseline,
                    cfg.latency_min_ratio,
                    format!(
                        "level shift up to {:.1} ms from a baseline of {:.1} ms",
                        ms(a.value),
                        ms(a.baseline)
                    ),
                ));
                severity = severity.max(0.5);
            }
        }
        if !evidence.is_empty() {
            out.push(Bottleneck {
                kind: BottleneckKind::LatencyRegression,
                severity,
                summary: format!("{name} of {} got slower", view.daemon),
                evidence,
            });
        }
    }
    out
}

/// Smaller warnings that cost points without being bottlenecks.
fn warnings(view: &DaemonView, cfg: &JudgeConfig) -> Vec<Deduction> {
    let mut out = Vec::new();
    if let Some(s) = &view.cpu.stats {
        let floor = cfg.cpu_bound_floor;
        // Five-sevenths of the floor (50 % for the default 70 %) is where headroom starts
        // to shrink.
        let warn = floor * 5.0 / 7.0;
        if s.count >= 3 && s.mean >= warn && sustained_cpu(view, cfg).is_none() {
            out.push(Deduction {
                category: Category::Cpu,
                points: ((s.mean - warn) / (floor - warn) * 6.0).min(6.0),
                reason: format!(
                    "CPU at {} of a core on average: headroom is shrinking",
                    pct(s.mean)
                ),
                evidence: vec![ev(
                    "process.cpu.utilization_ratio",
                    s.mean,
                    warn,
                    format!("mean {} (warning from {})", pct(s.mean), pct(warn)),
                )],
            });
        }
    }
    if let (Some(s), Some(limit)) = (&view.fds.stats, view.fd_limit.filter(|l| *l > 0.0)) {
        let share = s.last / limit;
        let top = cfg.descriptor_share;
        let warn = top * 5.0 / 8.0;
        if share >= warn && share < top {
            out.push(Deduction {
                category: Category::Descriptors,
                points: (share - warn) / (top - warn) * 4.0,
                reason: format!("{} of the descriptor limit in use", pct(share)),
                evidence: vec![ev(
                    "process.open_file_descriptor.count",
                    s.last,
                    limit,
                    format!("{:.0} of {limit:.0}", s.last),
                )],
            });
        }
    }
    if (1..3).contains(&view.restarts_recent) {
        out.push(Deduction {
            category: Category::Stability,
            points: 4.0 * f64::from(view.restarts_recent),
            reason: format!(
                "{} restart(s) or exit(s) in the last 10 minutes",
                view.restarts_recent
            ),
            evidence: vec![ev(
                "lifecycle.restarts",
                f64::from(view.restarts_recent),
                3.0,
                "restarts in 10 min".into(),
            )],
        });
    }
    out
}

/// The most urgent predicted exhaustion: the score it caps the level at, and the evidence.
struct Urgency {
    cap: f64,
    reason: String,
    evidence: Evidence,
}

/// The urgency of a predicted exhaustion `eta_ms` at `now`, of `metric` reaching `what`.
fn urgency_of(
    metric: &str,
    what: &str,
    eta_ms: TimestampMs,
    now: TimestampMs,
    cfg: &JudgeConfig,
) -> Option<Urgency> {
    let left = eta_ms - now;
    let (cap, level, horizon) = if left <= cfg.urgency_critical_ms {
        (POOR_FLOOR - 0.1, "Critical", cfg.urgency_critical_ms)
    } else if left <= cfg.urgency_poor_ms {
        (AVERAGE_FLOOR - 0.1, "Poor", cfg.urgency_poor_ms)
    } else {
        return None;
    };
    let minutes = left.max(0) as f64 / 60_000.0;
    let horizon_min = horizon as f64 / 60_000.0;
    Some(Urgency {
        cap,
        reason: format!(
            "{what} in about {minutes:.1} min: {level} until somebody acts (within {horizon_min:.0} min)"
        ),
        evidence: ev(
            metric,
            minutes,
            horizon_min,
            format!("{what} predicted in {minutes:.1} min ({level} within {horizon_min:.0} min)"),
        ),
    })
}

/// Adds the urgency deduction that takes the score down to the most urgent cap, if the
/// score is above it; the breakdown still adds up exactly.
fn apply_urgency(mut deductions: Vec<Deduction>, urgent: Vec<Urgency>) -> Score {
    let score = Score::from_deductions(deductions.clone());
    let Some(worst) = urgent.into_iter().min_by(|a, b| a.cap.total_cmp(&b.cap)) else {
        return score;
    };
    if score.value <= worst.cap {
        return score;
    }
    deductions.push(Deduction {
        category: Category::Urgency,
        points: score.value - worst.cap,
        reason: worst.reason,
        evidence: vec![worst.evidence],
    });
    Score::from_deductions(deductions)
}

/// Judges a daemon: its bottlenecks (plus host contention when it is involved), score and
/// recommendations.
pub fn judge(
    view: &DaemonView,
    host: &HostView,
    contention: Option<&Bottleneck>,
    cfg: &JudgeConfig,
) -> Judgement {
    let mut found = bottlenecks(view, host, cfg);
    if let Some(c) = contention {
        found.push(c.clone());
        found.sort_by(|a, b| b.severity.total_cmp(&a.severity));
    }
    let mut deductions: Vec<Deduction> = found
        .iter()
        .map(|b| Deduction {
            category: b.kind.category(),
            points: b.kind.category().cap() * b.severity,
            reason: b.summary.clone(),
            evidence: b.evidence.clone(),
        })
        .collect();
    deductions.extend(warnings(view, cfg));
    let mut urgent = Vec::new();
    // Memory only when the leak rule holds: a rising line through a sawtooth's upswing
    // predicts an exhaustion that will not come.
    let leaking = found.iter().any(|b| b.kind == BottleneckKind::MemoryLeak);
    if let Some(t) = view.rss_time_to_limit.as_ref().filter(|_| leaking) {
        urgent.extend(urgency_of(
            "process.memory.usage_bytes",
            "memory reaches the host's memory",
            t.eta_ms,
            view.now_ms,
            cfg,
        ));
    }
    if let Some(t) = &view.fds_time_to_limit {
        urgent.extend(urgency_of(
            "process.open_file_descriptor.count",
            "open descriptors reach their limit",
            t.eta_ms,
            view.now_ms,
            cfg,
        ));
    }
    let recommendations = found.iter().flat_map(|b| recommend(b, view)).collect();
    Judgement {
        score: apply_urgency(deductions, urgent),
        bottlenecks: found,
        recommendations,
    }
}
/// Judges the host: CPU saturation, memory, swap, and contention between daemons.
pub fn judge_host(
    host: &HostView,
    daemons: &[(DaemonId, Vec<Bottleneck>, Option<f64>)],
    cfg: &JudgeConfig,
) -> HostJudgement {
    let mut deductions = Vec::new();
    let mut urgent = Vec::new();
    let cpu = host.cpu.stats.as_ref().map(|s| s.mean);
    if let Some(c) = cpu.filter(|c| *c >= 0.7) {
        deductions.push(Deduction {
            category: Category::Cpu,
            points: ((c - 0.7) / 0.3 * 20.0).min(20.0),
            reason: format!("the host's CPU is {} busy on average", pct(c)),
            evidence: vec![ev(
                "system.cpu.utilization_ratio",
                c,
                0.7,
                format!("mean {} of all cores (from 70 %)", pct(c)),
            )],
        });
    }
    if let (Some(total), Some(available)) = (host.memory_total, host.memory_available) {
        let a = available / total;
        if a < 0.2 {
            deductions.push(Deduction {
                category: Category::Memory,
                points: ((0.2 - a) / 0.2 * 25.0).min(25.0),
                reason: format!("only {} of the host's memory is available", pct(a)),
                evidence: vec![ev(
                    "system.memory.available_bytes",
                    a,
                    0.2,
                    format!("{} available (from 20 %)", pct(a)),
                )],
            });
        }
    }
    if let (Some(swap), Some(total)) = (host.swap_used, host.memory_total) {
        if swap / total > 0.05 {
            deductions.push(Deduction {
                category: Category::Memory,
                points: 5.0,
                reason: format!("{:.0} MiB of swap in use", swap / MIB),
                evidence: vec![ev(
                    "system.paging.usage_bytes",
                    swap / MIB,
                    total * 0.05 / MIB,
                    "swap above 5 % of memory".into(),
                )],
            });
        }
    }
    for fs in &host.filesystems {
        let share = fs.used / fs.total;
        let hours = fs
            .time_to_full
            .as_ref()
            .map(|t| (t.eta_ms - host.now_ms) as f64 / 3.6e6);
        let filling = hours.filter(|h| *h < 24.0);
        if let Some(t) = &fs.time_to_full {
            urgent.extend(urgency_of(
                "system.filesystem.usage_bytes",
                &format!("{} fills up", fs.mountpoint),
                t.eta_ms,
                host.now_ms,
                cfg,
            ));
        }
        if share >= 0.9 || filling.is_some() {
            let mut evidence = vec![ev(
                "system.filesystem.usage_bytes",
                share,
                0.9,
                format!(
                    "{} is {} full ({:.1} of {:.1} GiB)",
                    fs.mountpoint,
                    pct(share),
                    fs.used / (1024.0 * MIB),
                    fs.total / (1024.0 * MIB)
                ),
            )];
            if let Some(h) = filling {
                evidence.push(ev(
                    "system.filesystem.usage_bytes",
                    h,
                    24.0,
                    format!(
                        "{} fills up in about {h:.1} h at its current trend",
                        fs.mountpoint
                    ),
                ));
            }
            deductions.push(Deduction {
                category: Category::Io,
                points: if filling.is_some_and(|h| h < 1.0) || share >= 0.97 {
                    10.0
                } else {
                    5.0
                },
                reason: format!("file system {} is filling up", fs.mountpoint),
                evidence,
            });
        }
    }
    // Degraded together: CPU-bound or slower, or, on a saturated host where nobody gets
    // all the CPU it wants, holding a third of a core or more and competing for the cores.
    let involved: Vec<DaemonId> = daemons
        .iter()
        .filter(|(_, bs, cpu)| {
            cpu.is_some_and(|c| c >= CONTENDING_CPU)
                || bs.iter().any(|b| {
                    matches!(
                        b.kind,
                        BottleneckKind::CpuBound | BottleneckKind::LatencyRegression
                    )
                })
        })
        .map(|(d, _, _)| d.clone())
        .collect();
    let contention = match cpu {
        Some(c) if c >= 0.9 && involved.len() >= 2 => {
            let names: Vec<&str> = involved.iter().map(|d| d.as_str()).collect();
            let b = Bottleneck {
                kind: BottleneckKind::HostContention,
                severity: (0.6 + (involved.len() as f64 - 2.0) * 0.1).min(1.0),
                summary: format!(
                    "{} daemons ({}) degrade together while the host's CPU is {} busy",
                    involved.len(),
                    names.join(", "),
                    pct(c)
                ),
                evidence: vec![
                    ev(
                        "system.cpu.utilization_ratio",
                        c,
                        0.9,
                        format!("host CPU {} of all cores (contention from 90 %)", pct(c)),
                    ),
                    ev(
                        "daemons.degraded",
                        involved.len() as f64,
                        2.0,
                        format!("{} daemons CPU-bound or slower at once", involved.len()),
                    ),
                ],
            };
            deductions.push(Deduction {
                category: Category::Stability,
                points: 20.0 * b.severity,
                reason: b.summary.clone(),
                evidence: b.evidence.clone(),
            });
            Some(b)
        }
        _ => None,
    };
    HostJudgement {
        score: apply_urgency(deductions, urgent),
        contended_daemons: if contention.is_some() {
            involved
        } else {
            Vec::new()
        },
        contention,
        app_bottlenecks: Vec::new(),
    }
}

/// The bottlenecks of the host's own app metrics: latency regressions of its latency
/// series (by name), found by the same tests as a daemon's.
pub fn app_bottlenecks(
    latency: BTreeMap<String, MetricView>,
    cfg: &JudgeConfig,
) -> Vec<Bottleneck> {
    if latency.is_empty() {
        return Vec::new();
    }
    let mut view = DaemonView::new(DaemonId::new("host"), 0);
    view.latency = latency;
    latency_regressions(&view, cfg)
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
