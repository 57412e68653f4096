//! The hot path: recording application metrics from any thread without ever blocking.
//!
//! [`Recorder::record`] and the [`ProfileGuard`] push a small [`RawSample`] into a crossbeam
//! channel and return. The channel is bounded by a check of its length rather than by a
//! preallocated array: an array of 16 k slots is 1.5 MiB resident from the start, while
//! the list channel holds memory only for the samples actually waiting (blocks of 31). The
//! bound can be overshot by at most one sample per thread recording at the same instant.
//! When the channel is full the sample is dropped and the drop counted in perfvisor's own
//! metrics: the caller's latency matters more than one sample. The collector's intake
//! thread drains the channel.
//!
//! The profile guard times with the CPU's time-stamp counter (through `quanta`) where it is
//! invariant and the kernel would read the same counter anyway: two reads and one
//! multiply-shift cost a few nanoseconds, against some twenty each for `Instant::now`'s
//! `clock_gettime`. Where the counter is not invariant `quanta` falls back to the OS's
//! monotonic clock. Its calibration against that clock runs once per process, when the
//! first recorder is made (under a millisecond, 200 ms at the very most).

use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub mod sources;
pub use sources::{SourceCache, SourceId, MAX_SOURCES};

use crate::telemetry::RecorderStats;
use crate::types::{DaemonId, Labels, MetricName, SharedClock, TimestampMs};

/// How a raw sample is to be interpreted by the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawKind {
    /// A gauge value (a level: queue length, cache size).
    Gauge,
    /// One observation of a distribution (a latency, a size): it goes into the series'
    /// histogram, stored per interval as quantiles, count and sum.
    Observation,
    /// An increment of a counter; the collector keeps the running total.
    Increment,
    /// The duration in seconds of a profiled operation named by the metric (an observation
    /// of the operation's duration histogram).
    OperationDuration,
    /// An extra metric attached to a profiled operation: `metric` is the operation, `extra`
    /// the attached metric's name.
    OperationExtra,
}

/// One sample as recorded, before the collector resolves its series.
#[derive(Clone, Debug)]
pub struct RawSample {
    /// The daemon it belongs to (`None` for the host application itself) and the labels of
    /// its series beside the daemon's own (these win on a clash), registered once per
    /// recorder (see [`sources`]).
    pub source: SourceId,
    /// The metric (or the operation, for profile samples).
    pub metric: MetricName,
    /// For [`RawKind::OperationExtra`], the attached metric's name.
    pub extra: Option<MetricName>,
    /// How to interpret it.
    pub kind: RawKind,
    /// The value.
    pub value: f64,
    /// When it was recorded.
    pub ts_ms: TimestampMs,
}

/// Records application metrics. Cheap to clone; `Send + Sync`; never blocks.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: Sender<RawSample>,
    /// Samples the channel may hold before new ones are dropped (0 when the source list
    /// was full: every sample is dropped).
    capacity: usize,
    /// The channel's bound, whatever this recorder's source.
    bound: usize,
    clock: SharedClock,
    stats: Arc<RecorderStats>,
    daemon: Option<DaemonId>,
    labels: Labels,
    /// The (daemon, labels) pair's index, which each sample carries.
    source: SourceId,
    /// Times profiled operations (see the module documentation).
    timer: quanta::Clock,
}

/// Creates a recorder and the receiving end its samples go to.
pub fn channel(
    capacity: usize,
    clock: SharedClock,
    stats: Arc<RecorderStats>,
) -> (Recorder, Receiver<RawSample>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (
        Recorder {
            tx,
            capacity: capacity.max(1),
            bound: capacity.max(1),
            clock,
            stats,
            daemon: None,
            labels: Labels::empty(),
            source: SourceId::HOST,
            timer: quanta::Clock::new(),
        },
        rx,
    )
}

impl Recorder {
    /// A recorder whose samples belong to daemon `id` (its series carry the daemon's
    /// source and labels). Without it, samples belong to the `host` source.
    pub fn for_daemon(&self, id: impl Into<DaemonId>) -> Recorder {
        self.for_source(Some(id.into()), self.labels.clone())
    }

    /// A recorder whose samples' series also carry `labels` (an endpoint, a queue, a
    /// tenant), beside the daemon's labels. Each label set is a series of its own: keep the
    /// values few (an HTTP route, not a user id). Each distinct (daemon, labels) pair a
    /// recorder is made for stays registered for the life of the process; past
    /// [`MAX_SOURCES`] pairs, a recorder for a new one records nothing (its calls return
    /// false and count as dropped).
    pub fn with_labels(&self, labels: Labels) -> Recorder {
        self.for_source(self.daemon.clone(), labels)
    }

    /// This recorder for another (daemon, labels) pair, registered once here.
    fn for_source(&self, daemon: Option<DaemonId>, labels: Labels) -> Recorder {
        let (source, capacity) = match sources::register(daemon.clone(), labels.clone()) {
            Some(source) => (source, self.bound),
            // The source list is full: a capacity of 0 drops (and counts) every sample.
            None => (SourceId::HOST, 0),
        };
        Recorder {
            daemon,
            labels,
            source,
            capacity,
            ..self.clone()
        }
    }

    /// Records a gauge value (a level: queue length, cache size, result relevance).
    /// Returns false when the sample was dropped because the channel was full.
    #[inline]
    pub fn record(&self, metric: impl Into<MetricName>, value: f64) -> bool {
        self.push(metric.into(), None, RawKind::Gauge, value)
    }

    /// Adds `by` to a counter (requests served, files processed, errors).
    #[inline]
    pub fn increment(&self, metric: impl Into<MetricName>, by: f64) -> bool {
        self.push(metric.into(), None, RawKind::Increment, by)
    }

    /// Records one observation of a distribution (a search latency in seconds, a response
    /// size). Observations go into the series' histogram: each histogram interval (default
    /// 10 s) is stored as its p50, p90 and p99 (series `metric{quantile="0.5"}` …) and the
    /// running `metric.count` and `metric.sum`, whatever the number of observations, and
    /// reports give the window's count, sum, mean and quantiles. Use
    /// [`Recorder::record`] for a value that must be kept as it is.
    #[inline]
    pub fn observe(&self, metric: impl Into<MetricName>, value: f64) -> bool {
        self.push(metric.into(), None, RawKind::Observation, value)
    }

    /// Starts timing an operation; the returned guard records its duration in seconds as
    /// an observation of the histogram `app.operation.<name>.duration_seconds` when dropped.
    #[inline]
    pub fn profile(&self, operation: impl Into<MetricName>) -> ProfileGuard<'_> {
        ProfileGuard {
            recorder: self,
            operation: Some(operation.into()),
            start: self.timer.raw(),
            extras: Vec::new(),
        }
    }

    /// Records one finished operation measured elsewhere (a closed `tracing` span, a
    /// timer of the host's): its duration in seconds as
    /// `app.operation.<operation>.duration_seconds` and each extra as
    /// `app.operation.<operation>.<metric>`, as a [`ProfileGuard`] does. Never blocks.
    pub fn record_operation(
        &self,
        operation: impl Into<MetricName>,
        seconds: f64,
        extras: impl IntoIterator<Item = (MetricName, f64)>,
    ) {
        let op = operation.into();
        for (metric, value) in extras {
            self.push(op.clone(), Some(metric), RawKind::OperationExtra, value);
        }
        self.push(op, None, RawKind::OperationDuration, seconds);
    }

    /// Samples waiting to be drained.
    pub fn backlog(&self) -> usize {
        self.tx.len()
    }

    fn push(
        &self,
        metric: MetricName,
        extra: Option<MetricName>,
        kind: RawKind,
        value: f64,
    ) -> bool {
        // Three atomic loads, no read-modify-write: the list channel's length.
        if self.tx.len() < self.capacity {
            let sample = RawSample {
                source: self.source,
                metric,
                extra,
                kind,
                value,
                ts_ms: self.clock.now_ms_coarse(),
            };
            // Accepted samples are not counted here (one contended atomic less on the hot
            // path): accepted = drained by the intake + still in the channel.
            if self.tx.send(sample).is_ok() {
                return true;
            }
        }
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Times one operation; records on drop. Created by [`Recorder::profile`].
#[must_use = "the operation is timed until the guard is dropped"]
#[derive(Debug)]
pub struct ProfileGuard<'a> {
    recorder: &'a Recorder,
    operation: Option<MetricName>,
    /// The timer's raw reading at the start.
    start: u64,
    extras: Vec<(MetricName, f64)>,
}

impl ProfileGuard<'_> {
    /// Attaches a metric to this operation's trace (files processed, results returned).
    /// It is recorded as `app.operation.<name>.<metric>` when the guard drops.
    pub fn add_metric(&mut self, metric: impl Into<MetricName>, value: f64) {
        self.extras.push((metric.into(), value));
    }

    /// Ends the operation now and returns its duration in seconds.
    pub fn finish(mut self) -> f64 {
        self.record()
    }

    fn record(&mut self) -> f64 {
        let timer = &self.recorder.timer;
        let seconds = timer.delta_as_nanos(self.start, timer.raw()) as f64 * 1e-9;
        if let Some(op) = self.operation.take() {
            self.recorder
                .record_operation(op, seconds, self.extras.drain(..));
        }
        seconds
    }
}

impl Drop for ProfileGuard<'_> {
    fn drop(&mut self) {
        self.record();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ManualClock;

    /// A full channel drops the sample at once, counts the drop, and never blocks.
    #[test]
    fn full_channel_drops_and_counts() {
        let stats = Arc::new(RecorderStats::default());
        let (rec, rx) = channel(2, Arc::new(ManualClock::new(5)), stats.clone());
        assert!(rec.record("a", 1.0));
        assert!(rec.increment("b", 1.0));
        assert!(!rec.observe("c", 1.0));
        assert_eq!(rec.backlog(), 2);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        let first = rx.recv().unwrap();
        assert_eq!(first.ts_ms, 5);
        assert_eq!(first.kind, RawKind::Gauge);
        drop(rx.recv().unwrap());
        assert!(rec.observe("c", 1.0));
        assert_eq!(rx.recv().unwrap().kind, RawKind::Observation);
    }

    /// The guard's duration, read from the time-stamp counter, agrees with the OS monotonic
    /// clock: at least the sleep inside it, at most the time measured around it (0.1 % and
    /// a microsecond allowed for the counter's calibration).
    #[test]
    fn profile_duration_matches_the_monotonic_clock() {
        let stats = Arc::new(RecorderStats::default());
        let (rec, rx) = channel(16, Arc::new(ManualClock::new(0)), stats);
        for pause_ms in [0u64, 2, 20] {
            let around = std::time::Instant::now();
            let guard = rec.profile("op");
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            let seconds = guard.finish();
            let outer = around.elapsed().as_secs_f64();
            let floor = pause_ms as f64 / 1e3;
            assert!(
                seconds >= floor * 0.999,
                "{seconds} s for a {pause_ms} ms sleep"
            );
            assert!(
                seconds <= outer * 1.001 + 1e-6,
                "{seconds} s within {outer} s"
            );
            let recorded = rx.try_recv().unwrap();
            assert_eq!(recorded.kind, RawKind::OperationDuration);
            assert_eq!(recorded.value, seconds);
        }
    }

    /// The profile guard records its extras and then its duration, once.
    #[test]
    fn profile_guard_records_on_drop() {
        let stats = Arc::new(RecorderStats::default());
        let (rec, rx) = channel(16, Arc::new(ManualClock::new(0)), stats);
        let rec = rec.for_daemon("d1");
        {
            let mut trace = rec.profile("ingest");
            trace.add_metric("files_processed", 12.0);
        }
        let extra = rx.try_recv().unwrap();
        assert_eq!(extra.kind, RawKind::OperationExtra);
        assert_eq!(
            extra.extra.as_ref().map(|m| m.as_str()),
            Some("files_processed")
        );
        assert_eq!(extra.value, 12.0);
        let dur = rx.try_recv().unwrap();
        assert_eq!(dur.kind, RawKind::OperationDuration);
        assert_eq!(
            dur.source.resolve(),
            (Some(DaemonId::new("d1")), Labels::empty())
        );
        assert!(dur.value >= 0.0);
        assert!(rx.try_recv().is_err());
    }
}
