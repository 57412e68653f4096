//! What the analyzer keeps per series: a short raw window, a long window of per-minute
//! means and an anomaly detector, and the view of a series a judgement reads. Plain logic,
//! no actix; `state` holds one [`SeriesState`] per series.
//!
//! # Memory per series
//! Every buffer grows with what the series has sent, so a young or sparse series (an app
//! metric pushed once a minute) holds what it has, not what a 1 s series would.
//! - short window: the raw samples of the last `JudgeConfig::window_ms` (10 minutes; 601
//!   samples at 1 s, both ends included), at most `capacity` of them (the engine's
//!   `analysis_window`), 5 bytes each at a steady pace (see [`SeriesWindow`]: a time step's
//!   jitter in an `i8`, an `f32` value or counter increase), grown by a 32nd; a report says when the cap, not the
//!   time, decided;
//! - histogram window (histograms only): the merged DDSketches of about ten slots of the
//!   window (`histogram::HistogramWindow`);
//! - long window: up to [`LONG_POINTS`] per-minute means (6 h), 4 bytes each (an `f32`
//!   mean; the minutes as runs of consecutive ones, see [`MinuteMeans`]), grown to exactly
//!   that;
//! - anomaly detector: its window, 4 bytes a value (see
//!   `anomaly::AnomalyDetector::memory_bytes`), built only once the series varies
//!   (`anomaly::LazyDetector`): a flat series holds a value and a count; the config is one
//!   for all series;
//! - bookkeeping: the pace and the short window's struct inline (168 bytes), and for a
//!   fully analysed series a boxed part with the last anomaly, the minute accumulator and
//!   the long window's and detector's structs (about 200 bytes); the key once, in the
//!   analyzer's `SeriesTable`.
//!
//! `AnalyzerState::memory_bytes` adds these up for the live series.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use super::anomaly::{AnomalyConfig, LazyDetector};
use super::config::JudgeConfig;
use super::judge::{AnomalyEvent, MetricView, RecentStats};
use super::stats::{SeriesWindow, WindowStats};
use super::trend::{self, Polarity, Trend, TrendRule};
use crate::metric_names as names;
use crate::types::{MetricKind, SeriesKey, TimestampMs};

/// Per-minute means kept per series: 6 hours.
pub const LONG_POINTS: usize = 360;
/// The long window is used for trends once it spans this long (30 minutes); before that the
/// short window is.
pub const LONG_TREND_MIN_SPAN_MS: i64 = 30 * 60_000;
/// Where the analyzer's bytes go, part by part: sizes and capacities of what it holds (the
/// maps' own tables and the series keys are not counted; the `analysis` bench sets these
/// beside a counting allocator's total).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryParts {
    /// Series held.
    pub series: usize,
    /// Of those, series with a baseline (not light: see the module doc).
    pub full_series: usize,
    /// The per-series structs without their parts below.
    pub structs: usize,
    /// The short windows' buffers.
    pub windows: usize,
    /// The long windows of per-minute means.
    pub long: usize,
    /// The anomaly detectors, inline and their windows.
    pub detectors: usize,
    /// The histogram windows (histograms only).
    pub histograms: usize,
}

/// Per-minute means, oldest first, at most [`LONG_POINTS`]: the means as `f32` and their
/// minutes as runs of consecutive minutes (a `u16` offset from a base minute, 45 days of
/// range, and a length), so a steadily sampled series pays 4 bytes a point and a few bytes a
/// gap, instead of a minute number per point. A minute that cannot share the base with the
/// kept ones (45 days apart) starts the window again.
#[derive(Debug, Default)]
pub(super) struct MinuteMeans {
    /// Minutes since the epoch of offset 0.
    base: i64,
    /// (offset of the run's first minute, minutes in the run), oldest first.
    runs: VecDeque<(u16, u16)>,
    means: VecDeque<f32>,
}

impl MinuteMeans {
    /// Adds the mean of `minute` (minutes since the epoch), evicting the oldest when full.
    fn push(&mut self, minute: i64, mean: f32) {
        if self.means.len() == LONG_POINTS {
            self.means.pop_front();
            match self.runs.front_mut() {
                Some((start, n)) if *n > 1 => {
                    *start += 1;
                    *n -= 1;
                }
                _ => {
                    self.runs.pop_front();
                }
            }
        } else if self.means.len() == self.means.capacity() {
            // Grow to exactly LONG_POINTS, not to the next power of two (512).
            let more = self.means.len().max(16).min(LONG_POINTS - self.means.len());
            self.means.reserve_exact(more);
        }
        if self.means.is_empty() {
            self.base = minute;
            self.runs.clear();
        }
        let offset = match u16::try_from(minute - self.base) {
            Ok(offset) => offset,
            Err(_) => self.rebase(minute),
        };
        match self.runs.back_mut() {
            Some((start, n))
                if *n < u16::MAX && u32::from(*start) + u32::from(*n) == u32::from(offset) =>
            {
                *n += 1;
            }
            _ => self.runs.push_back((offset, 1)),
        }
        self.means.push_back(mean);
    }

    /// Moves the base to the earliest of the kept minutes and `minute` and returns the
    /// offset of `minute`; when they span more than a `u16`, starts again from `minute`.
    fn rebase(&mut self, minute: i64) -> u16 {
        let base = self.base;
        let (lo, hi) = self
            .runs
            .iter()
            .fold((minute, minute), |(lo, hi), &(s, n)| {
                let first = base + i64::from(s);
                (lo.min(first), hi.max(first + i64::from(n) - 1))
            });
        if hi - lo > i64::from(u16::MAX) {
            self.runs.clear();
            self.means.clear();
            self.base = minute;
            return 0;
        }
        for (s, _) in &mut self.runs {
            // In range: every kept minute lies within [lo, lo + u16::MAX].
            *s = u16::try_from(base + i64::from(*s) - lo).unwrap_or(u16::MAX);
        }
        self.base = lo;
        u16::try_from(minute - lo).unwrap_or(u16::MAX)
    }

    /// The points as (minute since the epoch, mean), oldest first.
    fn iter(&self) -> impl Iterator<Item = (i64, f32)> + '_ {
        let base = self.base;
        self.runs
            .iter()
            .flat_map(move |&(s, n)| (0..i64::from(n)).map(move |k| base + i64::from(s) + k))
            .zip(self.means.iter().copied())
    }

    /// The oldest point's minute.
    fn first(&self) -> Option<i64> {
        self.runs.front().map(|&(s, _)| self.base + i64::from(s))
    }

    /// The latest point's minute.
    fn last(&self) -> Option<i64> {
        self.runs
            .back()
            .map(|&(s, n)| self.base + i64::from(s) + i64::from(n) - 1)
    }

    /// Bytes held by the buffers.
    fn memory_bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<(u16, u16)>()
            + self.means.capacity() * std::mem::size_of::<f32>()
    }
}

/// The detectors' config, one for all series.
fn default_detector_config() -> Arc<AnomalyConfig> {
    static CONFIG: OnceLock<Arc<AnomalyConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(AnomalyConfig::default()))
        .clone()
}

/// Accumulates one minute of values into a mean.
#[derive(Clone, Debug, Default)]
pub(super) struct Minute {
    pub(super) start_ms: TimestampMs,
    pub(super) sum: f64,
    pub(super) count: u32,
}

/// Everything kept per series.
#[derive(Debug)]
pub(super) struct SeriesState {
    pub(super) window: SeriesWindow,
    /// The series' pace: the interval between its samples, smoothed over about 16 of them
    /// (so a gap or a burst moves it little); the anomaly alert policy scales with it.
    pub(super) interval_ms: Option<f64>,
    /// The long window and the detector; `None` for light series ([`is_light`]), which
    /// keep their last samples only. Boxed, so a light series (8 of a watched daemon's 16)
    /// costs 168 bytes inline instead of 360.
    pub(super) full: Option<Box<FullState>>,
}

/// What a fully analysed series keeps beside its short window.
#[derive(Debug)]
pub(super) struct FullState {
    /// Per-minute means: the minute's number since the epoch and the mean.
    pub(super) long: MinuteMeans,
    pub(super) minute: Minute,
    /// The previous counter value, to feed rates to the detector and the long window.
    pub(super) previous: Option<(TimestampMs, f64)>,
    /// Lazy: a series that has only ever had one value holds no detector window.
    pub(super) detector: LazyDetector,
    pub(super) last_anomaly: Option<AnomalyEvent>,
}

/// A daemon's process-level series (`process.*`): those of one process instance, started
/// afresh when the process is replaced.
pub(super) fn is_process_metric(metric: &str) -> bool {
    metric.starts_with("process.")
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
    pub(super) fn new(kind: MetricKind, capacity: usize, span_ms: i64, metric: &str) -> Self {
        let light = is_light(metric);
        let window = if light {
            SeriesWindow::new(kind, LIGHT_CAPACITY)
        } else {
            SeriesWindow::new(kind, capacity).with_span(span_ms)
        };
        SeriesState {
            window,
            interval_ms: None,
            full: (!light).then(|| {
                Box::new(FullState {
                    long: MinuteMeans::default(),
                    minute: Minute::default(),
                    previous: None,
                    detector: LazyDetector::shared(default_detector_config()),
                    last_anomaly: None,
                })
            }),
        }
    }

    /// Adds a sample; returns an anomaly event when the detector confirms a level shift or
    /// flags a spike.
    pub(super) fn push(&mut self, ts: TimestampMs, value: f64) -> Option<AnomalyEvent> {
        if let Some((last, _)) = self.window.last() {
            let dt = (ts - last) as f64;
            if dt > 0.0 {
                self.interval_ms = Some(self.interval_ms.map_or(dt, |i| i + (dt - i) / 16.0));
            }
        }
        self.window.push(ts, value);
        let full = self.full.as_deref_mut()?;
        // Counters are judged by their rate.
        let observed = match self.window.kind() {
            MetricKind::Gauge => Some(value),
            MetricKind::Counter => {
                let rate = full.previous.and_then(|(pt, pv)| {
                    let dt = (ts - pt) as f64 / 1000.0;
                    (dt > 0.0 && value >= pv).then(|| (value - pv) / dt)
                });
                full.previous = Some((ts, value));
                rate
            }
        };
        let observed = observed.filter(|v| v.is_finite())?;
        let minute_start = ts.div_euclid(60_000) * 60_000;
        if full.minute.count > 0 && minute_start != full.minute.start_ms {
            let mean = full.minute.sum / f64::from(full.minute.count);
            full.long
                .push(full.minute.start_ms.div_euclid(60_000), mean as f32);
            full.minute = Minute::default();
        }
        if full.minute.count == 0 {
            full.minute.start_ms = minute_start;
        }
        full.minute.sum += observed;
        full.minute.count += 1;
        let verdict = full.detector.update(ts, observed)?;
        let kind = verdict.kind.filter(|_| verdict.anomalous)?;
        let event = AnomalyEvent {
            at_ms: ts,
            kind,
            value: observed,
            baseline: verdict.baseline,
            score: verdict.score,
        };
        full.last_anomaly = Some(event.clone());
        Some(event)
    }

    /// The values the trend is fitted to: gauge samples or counter rates, from the long
    /// window once it spans 30 minutes.
    pub(super) fn trend_points(&self) -> Vec<(TimestampMs, f64)> {
        let long = self.full.as_deref().map(|f| &f.long);
        if let Some((long, first, last)) = long.and_then(|l| Some((l, l.first()?, l.last()?))) {
            if (last - first) * 60_000 >= LONG_TREND_MIN_SPAN_MS {
                // Each mean stands at the middle of its minute.
                return long
                    .iter()
                    .map(|(minute, mean)| (minute * 60_000 + 30_000, f64::from(mean)))
                    .collect();
            }
        }
        match self.window.kind() {
            MetricKind::Gauge => self.window.points().collect(),
            MetricKind::Counter => self.window.rates(),
        }
    }

    /// The points trends are fitted to, from `trend_from` on.
    pub(super) fn trend_points_from(
        &self,
        trend_from: Option<TimestampMs>,
    ) -> Vec<(TimestampMs, f64)> {
        let mut points = self.trend_points();
        if let Some(cut) = trend_from {
            points.retain(|p| p.0 >= cut);
        }
        points
    }

    /// The trend of `points` and, when `with_envelope`, its lower envelope.
    pub(super) fn trend_of(
        key: &SeriesKey,
        points: &[(TimestampMs, f64)],
        ctx: &ViewContext<'_>,
        with_envelope: bool,
    ) -> (Option<Trend>, Vec<f64>) {
        let trend = trend::fit(points).map(|fit| {
            let polarity = trend::polarity_of(key.metric.as_str());
            trend::classify_with(&fit, 0, polarity, ctx.rule, ctx.reasons)
        });
        let envelope = if with_envelope && trend.is_some() {
            lower_envelope(points, ctx.cfg.leak_segments.max(2))
        } else {
            Vec::new()
        };
        (trend, envelope)
    }

    /// The view of this series. What only one reader uses is computed for its series only
    /// (see [`Wants`]): the judgement runs over every series every few seconds.
    pub(super) fn view(&self, key: &SeriesKey, ctx: &ViewContext<'_>) -> MetricView {
        let wants = Wants::of(key.metric.as_str());
        let stats = self.window.stats();
        let points = self.trend_points_from(ctx.trend_from);
        let (trend, envelope) = Self::trend_of(key, &points, ctx, wants.envelope);
        let recent = if wants.recent {
            self.recent(ctx.now, ctx.cfg.cpu_sustain_ms)
        } else {
            None
        };
        let window_start = self.window.first_ts().unwrap_or(i64::MIN);
        let p95_before_after = if wants.halves {
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
        } else {
            None
        };
        MetricView {
            stats,
            trend,
            anomaly: self
                .full
                .as_ref()
                .and_then(|f| f.last_anomaly.clone())
                .filter(|a| a.at_ms >= window_start),
            p95_before_after,
            recent,
            envelope,
        }
    }

    /// Statistics of the samples (counter rates) within `period_ms` before `now`.
    pub(super) fn recent(&self, now: TimestampMs, period_ms: i64) -> Option<RecentStats> {
        let from = now.saturating_sub(period_ms);
        let points: Vec<(TimestampMs, f64)> = match self.window.kind() {
            MetricKind::Gauge => self.window.points().filter(|p| p.0 > from).collect(),
            MetricKind::Counter => self
                .window
                .rates()
                .into_iter()
                .filter(|p| p.0 > from)
                .collect(),
        };
        let (first, last) = (points.first()?.0, points.last()?.0);
        let values: Vec<f64> = points.iter().map(|p| p.1).collect();
        let s = WindowStats::compute(&values)?;
        Some(RecentStats {
            period_ms,
            span_ms: last - first,
            count: s.count,
            median: s.median,
            mean: s.mean,
        })
    }

    pub(super) fn memory_bytes(&self) -> usize {
        let mut parts = MemoryParts::default();
        self.add_parts(&mut parts);
        parts.structs + parts.windows + parts.long + parts.detectors
    }

    /// Adds this series' bytes to `parts`, part by part.
    pub(super) fn add_parts(&self, parts: &mut MemoryParts) {
        parts.series += 1;
        parts.structs += std::mem::size_of::<Self>();
        parts.windows += self.window.memory_bytes();
        if let Some(full) = &self.full {
            parts.full_series += 1;
            parts.structs += std::mem::size_of::<FullState>() - std::mem::size_of::<LazyDetector>();
            parts.long += full.long.memory_bytes();
            parts.detectors += full.detector.memory_bytes();
        }
    }
}

/// The parts of a [`MetricView`] that only some series' readers use.
#[derive(Clone, Copy, Debug)]
struct Wants {
    /// The recent-window statistics: the CPU-bound test reads the daemon's CPU only.
    recent: bool,
    /// The lower envelope: the leak test reads resident memory only.
    envelope: bool,
    /// The p95 of each half of the window: the latency-regression test reads app latencies.
    halves: bool,
}

impl Wants {
    fn of(metric: &str) -> Wants {
        Wants {
            recent: metric == names::PROCESS_CPU_UTILIZATION,
            envelope: metric == names::PROCESS_MEMORY_RSS,
            halves: is_latency(metric),
        }
    }
}

/// Whether an app metric is latency-like (lower is better, a duration).
pub(super) fn is_latency(metric: &str) -> bool {
    !metric.starts_with("process.")
        && !metric.starts_with("system.")
        && !metric.starts_with("perfvisor.")
        && trend::polarity_of(metric) == Polarity::LowerIsBetter
        && (metric.contains("duration")
            || metric.contains("latency")
            || metric.ends_with("_seconds")
            || metric.contains("time"))
}

/// What a series' view is computed with.
pub(super) struct ViewContext<'a> {
    pub(super) rule: &'a TrendRule,
    pub(super) cfg: &'a JudgeConfig,
    pub(super) now: TimestampMs,
    /// Trend points before this are left out (another process, or the start-up grace).
    pub(super) trend_from: Option<TimestampMs>,
    /// Whether trends carry their sentence ([`Trend::reason`]): views shown to a reader
    /// do, the ones the judgement builds for itself (and drops) do not.
    pub(super) reasons: bool,
}

/// The minimum of each of `segments` equal spans of time over time-ordered `points`, oldest
/// first; empty when a span holds no finite point (the envelope would have a hole).
pub(super) fn lower_envelope(points: &[(TimestampMs, f64)], segments: usize) -> Vec<f64> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let span = (last.0 - first.0) as f64;
    if span <= 0.0 || segments == 0 {
        return Vec::new();
    }
    let mut minima = vec![f64::INFINITY; segments];
    for &(t, v) in points {
        if !v.is_finite() {
            continue;
        }
        // The last point belongs to the last segment.
        let i = (((t - first.0) as f64 / span * segments as f64) as usize).min(segments - 1);
        minima[i] = minima[i].min(v);
    }
    if minima.iter().any(|m| m.is_infinite()) {
        return Vec::new();
    }
    minima
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The long window keeps the last `LONG_POINTS` means in 4 bytes each, reads back the
    /// minutes it was given across a rebase (a minute before the base), and starts again
    /// after a gap wider than its 45 days of range.
    #[test]
    fn minute_means_keep_their_minutes() {
        let t0 = 29_000_000; // minutes since the epoch, in 2025
        let mut long = MinuteMeans::default();
        for i in 0..1_000 {
            long.push(t0 + i, i as f32);
        }
        assert_eq!(long.iter().count(), LONG_POINTS);
        assert_eq!(long.first(), Some(t0 + 1_000 - LONG_POINTS as i64));
        assert_eq!(long.last(), Some(t0 + 999));
        assert!(
            long.memory_bytes() <= LONG_POINTS * 4 + 32,
            "{}",
            long.memory_bytes()
        );
        // Earlier than every kept minute: the base moves down, the others keep their minutes.
        long.push(t0 - 5, -1.0);
        let points: Vec<(i64, f32)> = long.iter().collect();
        assert_eq!(points.last(), Some(&(t0 - 5, -1.0)));
        assert_eq!(points[0], (t0 + 1_001 - LONG_POINTS as i64, 641.0));
        assert!(points[..LONG_POINTS - 1]
            .windows(2)
            .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1.0));
        // Gaps start new runs and read back.
        let mut gappy = MinuteMeans::default();
        let minutes: Vec<i64> = (0..500).filter(|m| m % 7 != 3).map(|m| t0 + m).collect();
        for &m in &minutes {
            gappy.push(m, m as f32);
        }
        let kept = &minutes[minutes.len() - LONG_POINTS..];
        let got: Vec<i64> = gappy.iter().map(|p| p.0).collect();
        assert_eq!(got, kept);
        assert_eq!(
            (gappy.first(), gappy.last()),
            (Some(kept[0]), Some(t0 + 499))
        );
        // 50 days later: nothing kept can share a base with it.
        long.push(t0 + 50 * 1_440, 7.0);
        assert_eq!(
            long.iter().collect::<Vec<_>>(),
            vec![(t0 + 50 * 1_440, 7.0)]
        );
    }
}
