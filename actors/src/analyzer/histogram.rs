//! The analyzer's histogram windows: per histogram series, the DDSketches of its closed
//! intervals (from the collector) merged into a few time slots, so that a report gives the
//! count, sum, mean, exact min and max, and p50/p90/p99 of the last `window_ms`, with the
//! sketch's relative accuracy (0.5 %: each quantile is within 0.5 % of the exact order
//! statistic of rank `⌊q·(n−1)⌋`, merged or not).
//!
//! The window is split into [`SLOTS`] slots (a minute each for the default 10 minutes); an
//! interval joins the slot its start falls in, and a report merges the slots that overlap
//! the window. So the window's start is exact to one slot, and memory is at most
//! `SLOTS + 1` sketches per series, whatever the rate of observations (a few KB for
//! latencies spanning a factor of 10).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::collector::ClosedInterval;
use crate::storage::DdSketch;
use crate::types::{Labels, MetricName, TimestampMs};

/// Slots a window is split into.
pub const SLOTS: i64 = 10;

/// The statistics of a histogram over the analysis window, from merged DDSketches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramReport {
    /// The histogram's metric (its quantile series carry `quantile` labels, its totals
    /// `.count` and `.sum` suffixes).
    pub metric: MetricName,
    /// Its labels.
    pub labels: Labels,
    /// The start of the oldest slot merged (the window's start, to one slot).
    pub from_ms: TimestampMs,
    /// The stamp of the latest interval merged.
    pub to_ms: TimestampMs,
    /// Observations (exact).
    pub count: u64,
    /// Their sum (exact up to floating-point rounding).
    pub sum: f64,
    /// `sum / count`.
    pub mean: f64,
    /// Smallest observation (exact).
    pub min: f64,
    /// Largest observation (exact).
    pub max: f64,
    /// 0.5 quantile (rank `⌊0.5·(n−1)⌋`, within `relative_accuracy`).
    pub p50: f64,
    /// 0.9 quantile.
    pub p90: f64,
    /// 0.99 quantile.
    pub p99: f64,
    /// The quantiles' relative accuracy (0.005: within 0.5 % of the exact value).
    pub relative_accuracy: f64,
}

#[derive(Debug)]
struct Slot {
    start_ms: TimestampMs,
    last_ms: TimestampMs,
    sketch: DdSketch,
    sum: f64,
}

/// One histogram's window (see the module documentation).
#[derive(Debug)]
pub(crate) struct HistogramWindow {
    slot_ms: i64,
    window_ms: i64,
    slots: VecDeque<Slot>,
}

impl HistogramWindow {
    /// A window covering `window_ms`.
    pub(crate) fn new(window_ms: i64) -> Self {
        let window_ms = window_ms.max(1);
        HistogramWindow {
            slot_ms: (window_ms / SLOTS).max(1),
            window_ms,
            slots: VecDeque::new(),
        }
    }

    /// Merges a closed interval into its slot and drops slots that left the window.
    pub(crate) fn add(&mut self, interval: &ClosedInterval) {
        let at = interval.at_ms;
        let start = interval.start_ms.div_euclid(self.slot_ms) * self.slot_ms;
        let slot = match self.slots.iter().position(|s| s.start_ms >= start) {
            Some(i) if self.slots[i].start_ms == start => &mut self.slots[i],
            Some(i) => {
                self.slots.insert(i, empty(start));
                &mut self.slots[i]
            }
            None => {
                self.slots.push_back(empty(start));
                let last = self.slots.len() - 1;
                &mut self.slots[last]
            }
        };
        // Both come from `DdSketch::default()`: same α, so the merge cannot be refused.
        if slot.sketch.merge(&interval.sketch).is_ok() {
            slot.sum += interval.sum;
            slot.last_ms = slot.last_ms.max(at);
        }
        let newest = self.slots.back().map_or(at, |s| s.start_ms);
        while self
            .slots
            .front()
            .is_some_and(|s| s.start_ms + self.slot_ms <= newest - self.window_ms)
        {
            self.slots.pop_front();
        }
    }

    /// The stamp of the latest interval merged.
    pub(crate) fn last_ms(&self) -> Option<TimestampMs> {
        self.slots.iter().map(|s| s.last_ms).max()
    }

    /// The statistics of the slots overlapping the window before `now`; `None` when none
    /// does.
    pub(crate) fn report(
        &self,
        metric: &MetricName,
        labels: &Labels,
        now: TimestampMs,
    ) -> Option<HistogramReport> {
        let from = now - self.window_ms;
        let mut merged = DdSketch::default();
        let mut sum = 0.0;
        let (mut first, mut last) = (None, None);
        for s in self
            .slots
            .iter()
            .filter(|s| s.start_ms + self.slot_ms > from)
        {
            merged.merge(&s.sketch).ok()?;
            sum += s.sum;
            first.get_or_insert(s.start_ms);
            last = Some(last.map_or(s.last_ms, |l: TimestampMs| l.max(s.last_ms)));
        }
        let count = merged.count();
        if count == 0 {
            return None;
        }
        Some(HistogramReport {
            metric: metric.clone(),
            labels: labels.clone(),
            from_ms: first?,
            to_ms: last?,
            count,
            sum,
            mean: sum / count as f64,
            min: merged.min()?,
            max: merged.max()?,
            p50: merged.quantile(0.5)?,
            p90: merged.quantile(0.9)?,
            p99: merged.quantile(0.99)?,
            relative_accuracy: merged.alpha(),
        })
    }

    /// Bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .slots
                .iter()
                .map(|s| s.sketch.memory_bytes() + 2 * std::mem::size_of::<i64>() + 8)
                .sum::<usize>()
    }
}

fn empty(start_ms: TimestampMs) -> Slot {
    Slot {
        start_ms,
        last_ms: start_ms,
        sketch: DdSketch::default(),
        sum: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::histogram::{Closed, Histograms};
    use crate::types::{SeriesKey, Source};

    /// Intervals of 10 s over 30 minutes: the report covers the last 10 minutes only, with
    /// the exact count, sum and extremes and quantiles within 0.5 % of the exact ones;
    /// memory stays bounded.
    #[test]
    fn window_merges_the_last_minutes() {
        let key = SeriesKey::new(Source::Host, "search.latency_seconds", Labels::empty());
        let mut h = Histograms::new(10_000);
        let mut w = HistogramWindow::new(600_000);
        let mut in_window = Vec::new();
        let mut bytes_at_10_min = 0;
        // 50 a second for 30 minutes: 5 ms for 20 minutes, then 50 ms.
        for i in 0..(30 * 60 * 50) {
            let ts = i * 20;
            let v = if ts < 20 * 60_000 { 0.005 } else { 0.050 } * (1.0 + (i % 10) as f64 / 100.0);
            let mut out = Closed::default();
            h.observe(key.clone(), ts, v, &mut out);
            for c in &out.intervals {
                w.add(c);
            }
            if ts >= 20 * 60_000 {
                in_window.push(v);
            }
            if ts == 600_000 {
                bytes_at_10_min = w.memory_bytes();
            }
        }
        let mut out = Closed::default();
        h.close_all(30 * 60_000, &mut out);
        for c in &out.intervals {
            w.add(c);
        }
        let r = w
            .report(&key.metric, &key.labels, 30 * 60_000)
            .expect("a report");
        assert_eq!(r.count, in_window.len() as u64);
        assert_eq!(r.from_ms, 20 * 60_000);
        let exact_sum: f64 = in_window.iter().sum();
        assert!((r.sum - exact_sum).abs() < 1e-9 * exact_sum, "{}", r.sum);
        assert!((r.mean - exact_sum / in_window.len() as f64).abs() < 1e-12);
        in_window.sort_by(f64::total_cmp);
        assert_eq!(
            (r.min, r.max),
            (in_window[0], in_window[in_window.len() - 1])
        );
        for (q, got) in [(0.5, r.p50), (0.9, r.p90), (0.99, r.p99)] {
            let exact = in_window[(q * (in_window.len() - 1) as f64).floor() as usize];
            assert!(
                (got - exact).abs() <= 0.005 * exact * 1.000_001,
                "{q}: {got} vs {exact}"
            );
        }
        assert_eq!(r.relative_accuracy, 0.005);
        assert!(
            w.memory_bytes() <= bytes_at_10_min * 2,
            "{} then {}",
            bytes_at_10_min,
            w.memory_bytes()
        );
        assert!(w.slots.len() <= SLOTS as usize + 1, "{}", w.slots.len());
        assert!(w.report(&key.metric, &key.labels, 60 * 60_000).is_none());
    }
}
