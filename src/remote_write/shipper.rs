//! One remote's shipper: a thread that walks the stored history forward from the remote's
//! cursor and sends it, so the queue is the database itself.
//!
//! The cursor is a position `(ts_ms, series_id)` in the order (timestamp, series id): every
//! stored sample before it has been shipped or given up on. It is saved in the database
//! after every request the remote answered, so a restart (or a crash) resends at most the
//! one request in flight, and an outage of hours costs nothing but disk: the shipper keeps
//! retrying the same request with backoff and, once the remote is back, reads on from the
//! cursor at `max_samples_per_second`. Only samples older than `SETTLE` are read, and, when
//! the storage writer runs in the same process, only those older than `SETTLE` before the
//! moment up to which it has committed everything sent to it, so that what the writer
//! commits late (it flushes at least every second, later while the disk or the host is
//! slow) is not skipped.
//! A sample that falls behind raw retention before it is shipped is counted as dropped
//! (and expired) rather than sent: retention may delete it at any moment.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use perfvisor_actors::metric_names as names;
use perfvisor_actors::storage::{RemoteCursors, StorageReader, StorageStats};
use perfvisor_actors::telemetry::RemoteWriteStatus;
use perfvisor_actors::types::{
    Labels, MetricKind, Sample as PvSample, SeriesKey, Source, TimestampMs,
};

use super::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use super::send::{Backoff, Client, Failure};
use crate::config::{relabel_keeps, RemoteWriteConfig};

/// How far behind now the shipper reads: samples younger than this may still be on their
/// way to the database.
pub const SETTLE: Duration = Duration::from_secs(5);
/// How often the self-metrics are published and the backlog estimated.
const PUBLISH_EVERY: Duration = Duration::from_secs(5);
/// The pause when there is nothing to ship.
const IDLE: Duration = Duration::from_millis(500);
/// Bounds of the time window read at once; it adapts to how dense the history is.
const MIN_WINDOW_MS: i64 = 1_000;
const MAX_WINDOW_MS: i64 = 3_600_000;

/// What the shipper hands its self-metrics to (the engine's collector, in the binary).
pub type Publisher = Arc<dyn Fn(Vec<PvSample>) + Send + Sync>;

/// A stop flag that wakes sleepers.
#[derive(Default)]
pub struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Asks the shipper to stop; wakes it if it sleeps.
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    /// True once stopped.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps up to `d`; true when stopped meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, d, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// One remote's counters, shared with `status()`.
#[derive(Default)]
pub struct Stats {
    name: String,
    url: String,
    cursor_ms: AtomicI64,
    lag_ms: AtomicI64,
    pending: AtomicU64,
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    expired: AtomicU64,
    last_error: Mutex<Option<(String, TimestampMs)>>,
}

impl Stats {
    /// Counters for remote `name` at `url`.
    pub fn new(name: &str, url: &str) -> Self {
        Stats {
            name: name.to_owned(),
            url: url.to_owned(),
            ..Stats::default()
        }
    }

    /// The `status()` entry.
    pub fn status(&self) -> RemoteWriteStatus {
        let error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        RemoteWriteStatus {
            name: self.name.clone(),
            url: self.url.clone(),
            cursor_ms: self.cursor_ms.load(Ordering::Relaxed),
            lag_seconds: self.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            pending_samples: self.pending.load(Ordering::Relaxed),
            sent_samples: self.sent.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dropped_samples: self.dropped.load(Ordering::Relaxed),
            expired_samples: self.expired.load(Ordering::Relaxed),
            last_error_ms: error.as_ref().map(|e| e.1),
            last_error: error.map(|e| e.0),
        }
    }

    fn error(&self, message: String, now: TimestampMs) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((message, now));
    }
}

/// Everything a shipper runs from.
pub struct Shipper {
    /// The remote.
    pub remote: RemoteWriteConfig,
    /// The database.
    pub database: PathBuf,
    /// Raw retention: older unshipped samples are dropped, not sent.
    pub raw_retention: Duration,
    /// Its counters.
    pub stats: Arc<Stats>,
    /// Its stop flag.
    pub stop: Arc<Stop>,
    /// Where its self-metrics go, if anywhere.
    pub publish: Option<Publisher>,
    /// The counters of the storage writer filling `database`, when it runs in this
    /// process: the shipper then reads no further than the writer's `settled_ms` (less
    /// `SETTLE`), so a sample the writer commits late is still ahead of the cursor.
    pub writer: Option<Arc<StorageStats>>,
}

/// How one request ended.
enum Shipped {
    /// Accepted, or refused for good (its samples counted as dropped).
    Done,
    /// The shipper was stopped while waiting.
    Stopped,
    /// Still failing when its newest sample passed raw retention.
    Expired,
}

/// How a series is shipped: its labels, or `None` when relabelling leaves it out.
type Mapped = Option<Arc<Vec<Label>>>;

fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The remote-write labels of a series, named as `/metrics` names them (`__name__` from
/// [`crate::http::prometheus_name`], `daemon` or `source`, then the series' labels through
/// the same label sanitiser), plus the remote's own `labels`; sorted by name.
pub fn series_labels(
    key: &SeriesKey,
    kind: MetricKind,
    extra: &std::collections::BTreeMap<String, String>,
) -> Vec<Label> {
    let mut labels: Vec<(String, String)> = vec![(
        "__name__".into(),
        crate::http::prometheus_name(key.metric.as_str(), kind),
    )];
    match &key.source {
        Source::Daemon(d) => labels.push(("daemon".into(), d.as_str().to_owned())),
        other => labels.push(("source".into(), other.as_text().into_owned())),
    }
    for (k, v) in key.labels.iter() {
        let k = crate::http::label_name(k);
        if k != "daemon" && k != "source" && !labels.iter().any(|(n, _)| *n == k) {
            labels.push((k, v.to_owned()));
        }
    }
    for (k, v) in extra {
        if !labels.iter().any(|(n, _)| n == k) {
            labels.push((k.clone(), v.clone()));
        }
    }
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort();
    labels
        .into_iter()
        .map(|(name, value)| Label { name, value })
        .collect()
}

/// Groups samples (in cursor order) into one request: a series per id, its samples in time
/// order. Samples of series left out, and infinite values (Prometheus' text format cannot
/// carry them either, so `/metrics` leaves them out too), are skipped.
pub fn build_request(
    samples: &[(TimestampMs, i64, f64)],
    series: &HashMap<i64, Mapped>,
) -> (WriteRequest, usize) {
    let mut index: HashMap<i64, usize> = HashMap::new();
    let mut out: Vec<TimeSeries> = Vec::new();
    let mut n = 0;
    for &(ts, id, value) in samples {
        let Some(Some(labels)) = series.get(&id) else {
            continue;
        };
        if value.is_infinite() {
            continue;
        }
        let i = *index.entry(id).or_insert_with(|| {
            out.push(TimeSeries {
                labels: labels.as_ref().clone(),
                samples: Vec::new(),
            });
            out.len() - 1
        });
        out[i].samples.push(Sample {
            value,
            timestamp: ts,
        });
        n += 1;
    }
    (WriteRequest { timeseries: out }, n)
}

/// The position right after sample `(ts, id)` in cursor order.
fn after(ts: TimestampMs, id: i64) -> (TimestampMs, i64) {
    (ts, id.saturating_add(1))
}

impl Shipper {
    /// Runs until stopped. Opening the database is retried (it may not exist yet).
    pub fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let (reader, cursors) = loop {
            match StorageReader::open(&self.database)
                .and_then(|r| RemoteCursors::open(&self.database).map(|c| (r, c)))
            {
                Ok(pair) => break pair,
                Err(e) => {
                    self.stats
                        .error(format!("cannot open the database: {e}"), now_ms());
                    if self.stop.sleep(backoff.next(None)) {
                        return;
                    }
                }
            }
        };
        let client = match Client::new(&self.remote) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(remote = %self.remote.name, error = %e, "Remote write not started.");
                self.stats.error(e, now_ms());
                return;
            }
        };
        let mut run = Run {
            shipper: &self,
            reader,
            cursors,
            client,
            series: HashMap::new(),
            cursor: (0, 0),
            window_ms: 10_000,
            next_send: Instant::now(),
            expired_recent: VecDeque::new(),
            last_publish: None,
        };
        run.main();
    }
}

struct Run<'a> {
    shipper: &'a Shipper,
    reader: StorageReader,
    cursors: RemoteCursors,
    client: Client,
    series: HashMap<i64, Mapped>,
    cursor: (TimestampMs, i64),
    window_ms: i64,
    next_send: Instant,
    expired_recent: VecDeque<(TimestampMs, u64)>,
    last_publish: Option<Instant>,
}

impl Run<'_> {
    fn name(&self) -> &str {
        &self.shipper.remote.name
    }

    fn main(&mut self) {
        let stop = Arc::clone(&self.shipper.stop);
        let now = now_ms();
        self.cursor = match self.cursors.load(self.name()) {
            Ok(Some(c)) => c,
            Ok(None) => {
                let start = (now - ms(self.shipper.remote.backfill), 0);
                self.save(start);
                start
            }
            Err(e) => {
                tracing::error!(remote = %self.name(), error = %e, "Remote-write cursor unreadable; not shipping.");
                self.shipper
                    .stats
                    .error(format!("cursor unreadable: {e}"), now);
                return;
            }
        };
        self.shipper
            .stats
            .cursor_ms
            .store(self.cursor.0, Ordering::Relaxed);
        tracing::info!(remote = %self.name(), cursor_ms = self.cursor.0, "Remote write started.");
        while !stop.is_stopped() {
            self.publish_if_due();
            match self.step() {
                Ok(true) => {}
                Ok(false) => {
                    if stop.sleep(IDLE) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(remote = %self.name(), error = %e, "Remote write: reading history failed.");
                    self.shipper.stats.error(e, now_ms());
                    if stop.sleep(Duration::from_secs(1)) {
                        break;
                    }
                }
            }
        }
        self.publish();
    }

    /// Ships one window; false when it reached the horizon (nothing more to ship yet).
    fn step(&mut self) -> Result<bool, String> {
        let now = now_ms();
        let horizon = self.horizon(now);
        if self.cursor.0 >= horizon {
            return Ok(false);
        }
        let end = self.cursor.0.saturating_add(self.window_ms).min(horizon);
        let samples = self
            .reader
            .samples_forward(self.cursor, end)
            .map_err(|e| e.to_string())?;
        let per_send = self.shipper.remote.max_samples_per_send;
        if samples.len() > 8 * per_send {
            self.window_ms = (self.window_ms / 2).max(MIN_WINDOW_MS);
        } else if samples.len() < per_send {
            self.window_ms = (self.window_ms * 2).min(MAX_WINDOW_MS);
        }
        // Behind raw retention: retention may delete these at any moment; give them up.
        let cutoff = now - ms(self.shipper.raw_retention);
        let expired = samples.partition_point(|s| s.0 < cutoff);
        if expired > 0 {
            self.expire(expired as u64, now);
            let last = samples[expired - 1];
            self.save(after(last.0, last.1));
        }
        self.map_series(&samples[expired..])?;
        for chunk in samples[expired..].chunks(per_send) {
            let Some(&(last_ts, last_id, _)) = chunk.last() else {
                continue;
            };
            match self.ship(chunk) {
                Shipped::Done => self.save(after(last_ts, last_id)),
                // Stopped while retrying: the cursor stays before `chunk`.
                Shipped::Stopped => return Ok(true),
                // The remote stayed away until the whole request passed raw retention: the
                // next step reads on from here and gives up what else is too old at once.
                Shipped::Expired => {
                    self.expire(chunk.len() as u64, now_ms());
                    self.save(after(last_ts, last_id));
                    return Ok(true);
                }
            }
            self.publish_if_due();
        }
        if (end, 0) > self.cursor {
            self.save((end, 0));
        }
        // Caught up with the horizon: pause instead of reading a few milliseconds at a time.
        Ok(end < horizon)
    }

    /// Counts `n` samples given up because they passed raw retention unshipped.
    fn expire(&mut self, n: u64, now: TimestampMs) {
        self.shipper.stats.dropped.fetch_add(n, Ordering::Relaxed);
        self.shipper.stats.expired.fetch_add(n, Ordering::Relaxed);
        self.expired_recent.push_back((now, n));
        tracing::warn!(remote = %self.name(), samples = n, "Remote write: samples expired unshipped.");
        self.shipper.stats.error(
            format!("{n} samples passed raw retention before they could be shipped"),
            now,
        );
    }

    /// Sends one request, retrying until the remote takes or refuses it, or until all of
    /// it has passed raw retention.
    fn ship(&mut self, chunk: &[(TimestampMs, i64, f64)]) -> Shipped {
        let (request, n) = build_request(chunk, &self.series);
        if n == 0 {
            return Shipped::Done;
        }
        let newest = chunk.last().map_or(i64::MAX, |s| s.0);
        let body = match proto::encode(&request) {
            Ok(b) => b,
            Err(e) => {
                self.shipper
                    .stats
                    .dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.shipper
                    .stats
                    .error(format!("cannot compress a request: {e}"), now_ms());
                return Shipped::Done;
            }
        };
        // Catch-up pace: n samples take n / rate seconds of the budget.
        let rate = self.shipper.remote.max_samples_per_second.max(1) as f64;
        let now = Instant::now();
        if self.next_send > now && self.shipper.stop.sleep(self.next_send - now) {
            return Shipped::Stopped;
        }
        self.next_send =
            self.next_send.max(Instant::now()) + Duration::from_secs_f64(n as f64 / rate);
        let r = &self.shipper.remote;
        let mut backoff = Backoff::new(r.min_backoff, r.max_backoff);
        loop {
            match self.client.send(&body) {
                Ok(()) => {
                    self.shipper
                        .stats
                        .sent
                        .fetch_add(n as u64, Ordering::Relaxed);
                    self.shipper
                        .stats
                        .sent_bytes
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    return Shipped::Done;
                }
                Err(Failure::Refused(message)) => {
                    tracing::warn!(remote = %self.name(), samples = n, error = %message, "Remote write refused a request; its samples are dropped.");
                    self.shipper
                        .stats
                        .dropped
                        .fetch_add(n as u64, Ordering::Relaxed);
                    self.shipper.stats.error(message, now_ms());
                    return Shipped::Done;
                }
                Err(Failure::Retry { after, message }) => {
                    self.shipper.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(remote = %self.name(), error = %message, "Remote write will retry.");
                    self.shipper.stats.error(message, now_ms());
                    self.update_lag(now_ms());
                    self.publish_if_due();
                    if self.shipper.stop.sleep(backoff.next(after)) {
                        return Shipped::Stopped;
                    }
                    if newest < now_ms() - ms(self.shipper.raw_retention) {
                        return Shipped::Expired;
                    }
                }
            }
        }
    }

    /// Learns the labels of series ids not seen yet.
    fn map_series(&mut self, samples: &[(TimestampMs, i64, f64)]) -> Result<(), String> {
        if samples.iter().all(|s| self.series.contains_key(&s.1)) {
            return Ok(());
        }
        let all = self.reader.series_by_id().map_err(|e| e.to_string())?;
        let remote = &self.shipper.remote;
        for (id, key, kind) in all {
            self.series.entry(id).or_insert_with(|| {
                let labels = series_labels(&key, kind, &remote.labels);
                let name = labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .map_or("", |l| l.value.as_str());
                let pairs: Vec<(String, String)> = labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                relabel_keeps(&remote.relabel, name, &pairs).then(|| Arc::new(labels))
            });
        }
        Ok(())
    }

    fn save(&mut self, cursor: (TimestampMs, i64)) {
        self.cursor = cursor;
        let now = now_ms();
        self.shipper
            .stats
            .cursor_ms
            .store(cursor.0, Ordering::Relaxed);
        self.update_lag(now);
        if let Err(e) = self.cursors.save(&self.shipper.remote.name, cursor, now) {
            // Not fatal: a restart resends from the last saved cursor.
            tracing::warn!(remote = %self.name(), error = %e, "Remote-write cursor not saved.");
            self.shipper
                .stats
                .error(format!("cursor not saved: {e}"), now);
        }
    }

    /// How far the history may be read at `now`: `SETTLE` before now, and before the
    /// moment up to which the writer has committed everything sent to it.
    fn horizon(&self, now: TimestampMs) -> TimestampMs {
        let settled = self
            .shipper
            .writer
            .as_ref()
            .map_or(now, |w| w.settled_ms.load(Ordering::Relaxed));
        now.min(settled) - ms(SETTLE)
    }

    fn update_lag(&self, now: TimestampMs) {
        let horizon = now - ms(SETTLE);
        self.shipper
            .stats
            .lag_ms
            .store((horizon - self.cursor.0).max(0), Ordering::Relaxed);
    }

    fn publish_if_due(&mut self) {
        if self
            .last_publish
            .is_none_or(|t| t.elapsed() >= PUBLISH_EVERY)
        {
            self.publish();
        }
    }

    /// Estimates the backlog and hands the self-metrics to the publisher.
    fn publish(&mut self) {
        self.last_publish = Some(Instant::now());
        let now = now_ms();
        self.update_lag(now);
        if let Ok(n) = self.reader.samples_after_estimate(self.cursor.0) {
            self.shipper.stats.pending.store(n, Ordering::Relaxed);
        }
        while self
            .expired_recent
            .front()
            .is_some_and(|&(t, _)| t < now - 3_600_000)
        {
            self.expired_recent.pop_front();
        }
        let Some(publish) = &self.shipper.publish else {
            return;
        };
        let expired_hour: u64 = self.expired_recent.iter().map(|e| e.1).sum();
        let status = self.shipper.stats.status();
        let labels = Labels::from_pairs([("remote", self.name())]);
        let sample = |metric: &'static str, kind: MetricKind, value: f64| PvSample {
            series: SeriesKey::new(Source::Perfvisor, metric, labels.clone()),
            kind,
            ts_ms: now,
            value,
        };
        publish(vec![
            sample(
                names::PERFVISOR_REMOTE_WRITE_LAG,
                MetricKind::Gauge,
                status.lag_seconds,
            ),
            sample(
                names::PERFVISOR_REMOTE_WRITE_PENDING,
                MetricKind::Gauge,
                status.pending_samples as f64,
            ),
            sample(
                names::PERFVISOR_REMOTE_WRITE_SENT,
                MetricKind::Counter,
                status.sent_samples as f64,
            ),
            sample(
                names::PERFVISOR_REMOTE_WRITE_BYTES,
                MetricKind::Counter,
                status.sent_bytes as f64,
            ),
            sample(
                names::PERFVISOR_REMOTE_WRITE_RETRIES,
                MetricKind::Counter,
                status.retries as f64,
            ),
            sample(
                names::PERFVISOR_REMOTE_WRITE_DROPPED,
                MetricKind::Counter,
                status.dropped_samples as f64,
            ),
            sample(
                names::PERFVISOR_REMOTE_WRITE_EXPIRED,
                MetricKind::Gauge,
                expired_hour as f64,
            ),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfvisor_actors::types::DaemonId;

    fn key(source: Source, metric: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::new(
            source,
            metric.to_string(),
            Labels::from_pairs(labels.iter().copied()),
        )
    }

    fn pairs(labels: &[Label]) -> Vec<(&str, &str)> {
        labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    /// Series are named as `/metrics` names them, labels sorted, the remote's own labels
    /// added without overriding the series' labels.
    #[test]
    fn labels_follow_the_metrics_endpoint() {
        let extra = [
            ("host".to_string(), "web-1".to_string()),
            ("project".to_string(), "x".to_string()),
        ]
        .into_iter()
        .collect();
        let daemon = key(
            Source::Daemon(DaemonId::new("api")),
            "process.thread.count",
            &[("project", "shop"), ("2xx", "a")],
        );
        assert_eq!(
            pairs(&series_labels(&daemon, MetricKind::Gauge, &extra)),
            vec![
                ("__name__", "process_thread"),
                ("daemon", "api"),
                ("host", "web-1"),
                ("l2xx", "a"),
                ("project", "shop"),
            ]
        );
        let host = key(Source::Host, "system.cpu.time_seconds", &[]);
        assert_eq!(
            pairs(&series_labels(
                &host,
                MetricKind::Counter,
                &Default::default()
            )),
            vec![
                ("__name__", "system_cpu_time_seconds_total"),
                ("source", "host")
            ]
        );
    }

    /// A request groups samples by series in time order and leaves out relabel-dropped
    /// series and infinite values.
    #[test]
    fn requests_group_by_series_and_skip_what_is_left_out() {
        let labels = |n: &str| {
            Some(Arc::new(vec![Label {
                name: "__name__".into(),
                value: n.into(),
            }]))
        };
        let series: HashMap<i64, Mapped> = [(1, labels("a")), (2, labels("b")), (3, None)]
            .into_iter()
            .collect();
        let samples = [
            (10, 1, 1.0),
            (10, 2, 2.0),
            (10, 3, 3.0),
            (20, 1, f64::INFINITY),
            (20, 2, 4.0),
            (30, 1, 5.0),
        ];
        let (request, n) = build_request(&samples, &series);
        assert_eq!(n, 4);
        let got: Vec<(String, Vec<(i64, f64)>)> = request
            .timeseries
            .iter()
            .map(|t| {
                (
                    t.labels[0].value.clone(),
                    t.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), vec![(10, 1.0), (30, 5.0)]),
                ("b".to_string(), vec![(10, 2.0), (20, 4.0)]),
            ]
        );
    }
}
