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
//!
//! The same counter reading that ends an operation stamps its samples when the recorder runs
//! on the system clock: the collector converts it to wall time against a (counter, wall
//! clock) pair it reads for every batch (see [`StampConverter`]), so the guard reads no
//! wall clock at all. Other samples, and every sample on another clock (a test's manual
//! one), are stamped with the clock's coarse reading as they are pushed.

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
    /// For [`RawKind::OperationExtra`], the attached metric's name (boxed: the pointer
    /// keeps every sample at 56 bytes, where the name inline took 72; only extras pay the
    /// allocation).
    pub extra: Option<Box<MetricName>>,
    /// How to interpret it.
    pub kind: RawKind,
    /// The value.
    pub value: f64,
    /// When it was recorded.
    pub at: Stamp,
}

/// When a sample was recorded: wall-clock milliseconds, or the raw time-stamp counter
/// reading that ended a profiled operation (which [`StampConverter`] turns into wall
/// milliseconds). Eight bytes: the lowest bit tells which.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64);

impl Stamp {
    /// Wall-clock milliseconds since the Unix epoch (within ±2^62).
    pub const fn wall(ms: TimestampMs) -> Stamp {
        Stamp((ms as u64) << 1)
    }
    /// A raw reading of the recorder's counter (its top bit is dropped: 73 years of a 4 GHz
    /// counter).
    pub const fn counter(raw: u64) -> Stamp {
        Stamp((raw << 1) | 1)
    }
    /// The wall-clock milliseconds, when it is a wall stamp.
    pub const fn wall_ms(self) -> Option<TimestampMs> {
        if self.0 & 1 == 0 {
            Some((self.0 as i64) >> 1)
        } else {
            None
        }
    }
    /// The counter reading (without its top bit), when it is a counter stamp.
    pub const fn counter_raw(self) -> Option<u64> {
        if self.0 & 1 == 1 {
            Some(self.0 >> 1)
        } else {
            None
        }
    }
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.wall_ms(), self.counter_raw()) {
            (Some(ms), _) => write!(f, "Stamp::wall({ms})"),
            (_, raw) => write!(f, "Stamp::counter({})", raw.unwrap_or(0)),
        }
    }
}

/// Turns [`Stamp`]s into wall-clock milliseconds. A counter stamp is converted against a
/// (counter, system wall clock) pair read at the first counter stamp after each
/// [`StampConverter::reanchor`] (the collector re-anchors for every batch, so a sample is
/// converted within milliseconds of its recording): the result is the system's wall time
/// when the counter was read, within a millisecond plus the counter's calibration error
/// (under 0.1 %) of the sample's age. The wall clock's own steps (NTP) between recording
/// and conversion move it as they would have moved a wall reading.
#[derive(Debug, Default)]
pub struct StampConverter {
    /// Made at the first counter stamp (quanta's calibration is once per process).
    timer: Option<quanta::Clock>,
    /// The counter reading (top bit dropped, as in a stamp) and the wall time, in ns since
    /// the Unix epoch, read together.
    anchor: Option<(u64, i64)>,
}

impl StampConverter {
    /// Reads a new (counter, wall clock) pair at the next counter stamp.
    pub fn reanchor(&mut self) {
        self.anchor = None;
    }

    /// The stamp in wall-clock milliseconds since the Unix epoch.
    pub fn wall_ms(&mut self, stamp: Stamp) -> TimestampMs {
        let Some(raw) = stamp.counter_raw() else {
            return stamp.wall_ms().unwrap_or(0);
        };
        let timer = self.timer.get_or_insert_with(quanta::Clock::new);
        let (at, wall_ns) = *self.anchor.get_or_insert_with(|| {
            let at = timer.raw() & (u64::MAX >> 1);
            let wall_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            (at, wall_ns)
        });
        let ns = if raw <= at {
            wall_ns - timer.delta_as_nanos(raw, at) as i64
        } else {
            wall_ns + timer.delta_as_nanos(at, raw) as i64
        };
        ns.div_euclid(1_000_000)
    }
}

// Every sample is a slot of the channel: keep it small (fewer cache lines per push).
const _: () = assert!(std::mem::size_of::<RawSample>() <= 56);

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
    /// Whether a guard's samples are stamped with its end's counter reading (on the system
    /// clock) rather than a wall-clock reading.
    counter_stamps: bool,
}

/// Creates a recorder and the receiving end its samples go to.
pub fn channel(
    capacity: usize,
    clock: SharedClock,
    stats: Arc<RecorderStats>,
) -> (Recorder, Receiver<RawSample>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let counter_stamps = clock.is_system_time();
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
            counter_stamps,
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
        self.push_operation(operation.into(), seconds, extras, None);
    }

    /// Pushes an operation's extras and duration, stamped with `counter` when given.
    fn push_operation(
        &self,
        op: MetricName,
        seconds: f64,
        extras: impl IntoIterator<Item = (MetricName, f64)>,
        counter: Option<u64>,
    ) {
        for (metric, value) in extras {
            self.push_at(
                op.clone(),
                Some(Box::new(metric)),
                RawKind::OperationExtra,
                value,
                counter,
            );
        }
        self.push_at(op, None, RawKind::OperationDuration, seconds, counter);
    }

    /// Samples waiting to be drained.
    pub fn backlog(&self) -> usize {
        self.tx.len()
    }

    #[inline]
    fn push(
        &self,
        metric: MetricName,
        extra: Option<Box<MetricName>>,
        kind: RawKind,
        value: f64,
    ) -> bool {
        self.push_at(metric, extra, kind, value, None)
    }

    /// Pushes a sample stamped with the `counter` reading, or without one with the clock's
    /// coarse reading (taken only when the sample is accepted).
    #[inline]
    fn push_at(
        &self,
        metric: MetricName,
        extra: Option<Box<MetricName>>,
        kind: RawKind,
        value: f64,
        counter: Option<u64>,
    ) -> bool {
        // Three atomic loads, no read-modify-write: the list channel's length.
        if self.tx.len() < self.capacity {
            let sample = RawSample {
                source: self.source,
                metric,
                extra,
                kind,
                value,
                at: match counter {
                    Some(raw) => Stamp::counter(raw),
                    None => Stamp::wall(self.clock.now_ms_coarse()),
                },
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
        let rec = self.recorder;
        let end = rec.timer.raw();
        let seconds = rec.timer.delta_as_nanos(self.start, end) as f64 * 1e-9;
        if let Some(op) = self.operation.take() {
            let stamp = rec.counter_stamps.then_some(end);
            rec.push_operation(op, seconds, self.extras.drain(..), stamp);
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
        assert_eq!(first.at.wall_ms(), Some(5));
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

    /// On the system clock a guard's samples carry the counter reading that ended it;
    /// converted after 30 ms in the channel, the stamp is the wall time between the readings
    /// taken around the guard's end, a millisecond allowed each way (whole milliseconds).
    /// Other samples carry the clock's coarse reading.
    #[test]
    fn guard_stamps_convert_to_the_wall_time_of_its_end() {
        let stats = Arc::new(RecorderStats::default());
        use crate::types::{Clock, SystemClock};
        let clock = SystemClock;
        let (rec, rx) = channel(16, Arc::new(clock), stats);
        let mut converter = StampConverter::default();
        for pause_ms in [0u64, 5, 40] {
            let mut guard = rec.profile("op");
            guard.add_metric("items", 1.0);
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            let lo = clock.now_ms();
            drop(guard);
            let hi = clock.now_ms();
            std::thread::sleep(std::time::Duration::from_millis(30));
            converter.reanchor();
            for _ in 0..2 {
                let s = rx.try_recv().unwrap();
                assert!(s.at.counter_raw().is_some(), "{:?}", s.at);
                let ts = converter.wall_ms(s.at);
                assert!(lo - 1 <= ts && ts <= hi + 1, "{ts} not in {lo}..={hi}");
            }
        }
        let lo = crate::types::coarse_now_ms();
        assert!(rec.record("x", 1.0));
        let at = rx.try_recv().unwrap().at;
        let ts = at.wall_ms().unwrap();
        assert!(lo <= ts && ts <= clock.now_ms(), "{ts} from {lo}");
        assert_eq!(converter.wall_ms(at), ts);
    }

    /// On another clock (a test's manual one) the guard's samples carry that clock's time.
    #[test]
    fn guard_stamps_with_a_manual_clock() {
        let stats = Arc::new(RecorderStats::default());
        let (rec, rx) = channel(16, Arc::new(ManualClock::new(42_000)), stats);
        drop(rec.profile("op"));
        let at = rx.try_recv().unwrap().at;
        assert_eq!(at.wall_ms(), Some(42_000));
        assert_eq!(StampConverter::default().wall_ms(at), 42_000);
        assert_eq!(Stamp::wall(-5).wall_ms(), Some(-5));
        assert_eq!(Stamp::counter(7).counter_raw(), Some(7));
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
