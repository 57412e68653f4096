//! The storage writer thread: its commands, its counters, its in-memory buffers, its loop,
//! and how it survives a panic or a disk that refuses writes.
//!
//! Accepted samples, events and alerts go into memory first. The buffers are committed in
//! one transaction ("a flush") — all samples as one head log row (`headlog`), folded into
//! per-series head rows every half minute — when the queue has been quiet for half the
//! `flush_interval`, every `flush_interval` (1 s) at the latest, when they hold
//! [`FLUSH_SAMPLES`] samples, or when a flush is asked for. So a crash loses at most one
//! flush interval, and many watchers probing at their own moments make a couple of commits a
//! second, each one row. Between flushes the writer runs bounded maintenance steps (folding
//! the log, compaction, rollups, retention: `maintenance`).
//!
//! **Write failures** (disk full, read-only file) are not crashes: the transaction is rolled
//! back, the buffers are kept, the writer marks itself *blocked* (with the reason, visible in
//! status), and retries with a backoff (1 s doubling to 10 s). While blocked it keeps
//! accepting into memory up to `max_buffered_samples`; beyond that new samples are dropped
//! and counted. When a retry succeeds everything buffered is committed and the block clears.
//!
//! **Panics** in a command's handling lose that command (counted). A panic while flushing
//! (a bug) loses the buffers (counted). Either way the writer then restarts: it reports the
//! failure to the supervisor's [`FailureHook`], waits the backoff it returns, and reopens the
//! connection. The channel is not writer state, so nothing queued is lost.

use crate::types::FastMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::config::HOUR_MS;
use super::maintenance::{self, MaintenanceSettings};
use super::{codec, headlog, schema};
use super::{StorageConfig, StorageError};
use crate::panic_guard::guard;
use crate::types::{
    ActionRecord, Alert, AlertState, Clock, LifecycleEvent, MetricBatch, MetricKind, SeriesKey,
    TimestampMs,
};

/// Declares [`StorageCommand`] with its `name()` and `HANDLED` list, from one variant list.
macro_rules! storage_commands {
    ($($(#[$doc:meta])* $variant:ident $(($payload:ty))?,)*) => {
        /// A request to the storage writer. Embedders use [`super::StorageHandle`], which
        /// sends these.
        #[derive(Debug)]
        pub enum StorageCommand {
            $($(#[$doc])* $variant $(($payload))?,)*
        }

        impl StorageCommand {
            /// Every command the writer handles, by name (the panic test sends a panicking
            /// one of each).
            pub const HANDLED: &'static [&'static str] = &[$(stringify!($variant)),*];

            /// The command's name (its variant).
            pub fn name(&self) -> &'static str {
                match self {
                    $(storage_commands!(@pattern $variant $(($payload))?) => stringify!($variant),)*
                }
            }
        }
    };
    (@pattern $variant:ident ($payload:ty)) => { StorageCommand::$variant(_) };
    (@pattern $variant:ident) => { StorageCommand::$variant };
}

storage_commands! {
    /// Store every sample of the batch.
    Store(Arc<MetricBatch>),
    /// Record a daemon lifecycle event. The rare, large commands are boxed: the bounded
    /// queue holds a slot of the largest variant for each of its 4 096 places.
    Event(Box<LifecycleEvent>),
    /// Record an alert notification.
    Alert(Box<Alert>),
    /// Set (or, with `json: None`, delete) one persisted alert-engine state.
    AlertState(Box<AlertStateChange>),
    /// Record an action taken because of an alert.
    Action(Box<ActionRecord>),
    /// Acknowledge on this sender once everything accepted before this command is committed.
    /// The sender is dropped without a message when that could not be committed.
    Flush(Sender<()>),
    /// Flush, then compact every head row now, closed window or not, build the rollups they
    /// complete and apply retention; acknowledge when done (dropped unacknowledged on error).
    Compact(Sender<()>),
    /// Make the database refuse writes, or stop doing so (fault injection for tests).
    Fault(StorageFault),
    /// Panic inside the writer's handler (fault injection for tests and chaos mode).
    InjectPanic,
}

/// One persisted alert-engine state change, as queued for the writer.
#[derive(Debug)]
pub struct AlertStateChange {
    /// The state's key (rule and series, or a silence id).
    pub key: String,
    /// The engine's JSON for it; `None` deletes it.
    pub json: Option<String>,
    /// When it changed.
    pub ts_ms: TimestampMs,
}

/// Write failures the writer can be made to meet on purpose, to test how it copes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageFault {
    /// The disk is full: `PRAGMA max_page_count` is set to the file's current page count,
    /// so writes fail with `SQLITE_FULL` once the free pages are used up.
    DiskFull,
    /// The file is read-only: `PRAGMA query_only` makes every write fail with
    /// `SQLITE_READONLY`.
    ReadOnly,
    /// A slow disk: every commit takes this much longer (the writer sleeps before it), as
    /// when `fsync` waits on a saturated or failing device.
    Slow(Duration),
    /// Space, write access and speed are back.
    Clear,
}

/// Called by the writer thread after a command panicked (or reopening the database failed);
/// returns how long to wait before serving again (restart backoff decided by the supervisor).
pub type FailureHook = Arc<dyn Fn(StorageFailure) -> Duration + Send + Sync>;

/// What the writer tells its [`FailureHook`] when it is about to restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageFailure {
    /// The panic message (or why reopening failed).
    pub reason: String,
    /// Commands lost: the ones that panicked.
    pub lost_commands: u64,
    /// Samples lost with them.
    pub lost_samples: u64,
}

/// Counters and gauges of the storage writer, shared with whoever reports perfvisor's own
/// health.
///
/// Every sample offered to [`super::StorageHandle::store`] ends up in exactly one of
/// `stored_samples` and `dropped_samples`, once the writer has committed or given it up;
/// until then it is in the queue or counted by `buffered_samples`.
#[derive(Debug, Default)]
pub struct StorageStats {
    /// Faults armed on purpose (test builds only): a command whose name is armed for
    /// `storage_writer` panics once.
    #[cfg(test)]
    pub faults: crate::supervisor::FaultPlan,
    /// Samples committed to the database.
    pub stored_samples: AtomicU64,
    /// Lifecycle events committed.
    pub stored_events: AtomicU64,
    /// Alerts committed.
    pub stored_alerts: AtomicU64,
    /// Samples not stored: the queue or the memory buffer was full, the writer was shut
    /// down, or a panic lost them.
    pub dropped_samples: AtomicU64,
    /// Lifecycle events not stored (queue or buffer full, shut down, unwritable at exit).
    pub dropped_events: AtomicU64,
    /// Alerts not stored (queue or buffer full, unencodable, shut down).
    pub dropped_alerts: AtomicU64,
    /// Failed writes: rolled-back flushes and maintenance steps, failed reopens.
    pub write_errors: AtomicU64,
    /// Flush transactions committed.
    pub commits: AtomicU64,
    /// Writer restarts after a panic.
    pub restarts: AtomicU64,
    /// Commands lost because handling them panicked.
    pub lost_on_panic: AtomicU64,
    /// Samples accepted and held in memory, not yet committed (gauge).
    pub buffered_samples: AtomicU64,
    /// True while writes fail and the writer is buffering (gauge).
    pub write_blocked: AtomicBool,
    /// Why writes fail, while they do.
    pub blocked_reason: Mutex<Option<String>>,
    /// Samples moved from head rows into compressed chunks.
    pub compacted_samples: AtomicU64,
    /// Chunks written.
    pub chunks_written: AtomicU64,
    /// Rollup rows written or updated (hourly and daily).
    pub rollups_written: AtomicU64,
    /// Closed (series, hour) windows waiting for compaction at the last step (gauge).
    pub compaction_backlog: AtomicU64,
    /// Rows deleted by retention or by the size cap (chunks, rollups, events, alerts).
    pub retention_deleted: AtomicU64,
    /// Maintenance steps run.
    pub maintenance_steps: AtomicU64,
    /// Total time spent in maintenance steps, in microseconds.
    pub maintenance_micros: AtomicU64,
}

impl StorageStats {
    /// Why writes currently fail, or `None` when they succeed.
    pub fn blocked_reason(&self) -> Option<String> {
        self.blocked_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_blocked(&self, reason: Option<String>) {
        self.write_blocked
            .store(reason.is_some(), Ordering::Relaxed);
        *self
            .blocked_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason;
    }
}

/// Adds to a counter. Counters are independent statistics, so relaxed ordering suffices.
pub(super) fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Samples in the buffers that trigger a flush without waiting for the interval: large
/// rows, bounded memory and transactions of a few milliseconds.
pub const FLUSH_SAMPLES: usize = 200_000;

/// Most events or alerts held in memory while writes fail.
const MAX_BUFFERED_RECORDS: usize = 10_000;
/// How long the writer waits after emptying its queue before it listens again.
const WRITER_PAUSE: Duration = Duration::from_millis(5);
/// How often a maintenance step counts the compaction backlog while it is behind.
const BACKLOG_PUBLISH_EVERY: Duration = Duration::from_secs(5);
/// Flush intervals between maintenance steps when the last one left no backlog.
const IDLE_MAINTENANCE_EVERY: u32 = 5;

/// First and longest wait between two flush attempts while writes fail.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Least time between two attempts to reopen the database, whatever the hook answers, so a
/// missing disk cannot turn the writer into a busy loop.
const MIN_REOPEN_RETRY: Duration = Duration::from_millis(50);

/// Insert of one head row; shared with the schema migration.
pub(super) const INSERT_HEAD: &str =
    "INSERT INTO head (series_id, window_ms, min_ts, max_ts, count, data) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const INSERT_LOG: &str =
    "INSERT INTO head_log (min_ts, max_ts, count, data) VALUES (?1, ?2, ?3, ?4)";
const SELECT_SERIES: &str =
    "SELECT id FROM series WHERE source = ?1 AND metric = ?2 AND labels = ?3";
const INSERT_SERIES: &str =
    "INSERT INTO series (source, metric, labels, kind) VALUES (?1, ?2, ?3, ?4)";
const INSERT_EVENT: &str =
    "INSERT INTO events (daemon, pid, ts_ms, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_ALERT: &str = "INSERT INTO alerts (ts_ms, rule, state, severity, daemon, json) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The start of the hour window `ts_ms` falls in.
pub(super) fn window_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(HOUR_MS).saturating_mul(HOUR_MS)
}

/// Writes the samples (all in `window_ms`) as one head row.
pub(super) fn insert_head(
    insert: &mut rusqlite::Statement<'_>,
    series_id: i64,
    window_ms: i64,
    samples: &[(i64, f64)],
) -> rusqlite::Result<()> {
    let (min_ts, max_ts) = samples
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &(ts, _)| {
            (lo.min(ts), hi.max(ts))
        });
    insert.execute(params![
        series_id,
        window_ms,
        min_ts,
        max_ts,
        samples.len() as i64,
        codec::encode_raw(samples),
    ])?;
    Ok(())
}

/// The stored text of an alert state (the same words as its serde form).
fn alert_state_text(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

/// One series' samples waiting for the next flush.
#[derive(Debug)]
struct SeriesBuffer {
    kind: MetricKind,
    samples: Vec<(i64, f64)>,
    /// Flushes this entry has sat through empty; idle entries are forgotten.
    idle_flushes: u8,
}

/// Everything accepted and not yet committed. Survives writer restarts (it is not rebuilt
/// from the config), so a panic elsewhere does not lose it.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    series: FastMap<SeriesKey, SeriesBuffer>,
    events: Vec<LifecycleEvent>,
    /// Alerts with their JSON, encoded when accepted so an unencodable one is refused early.
    alerts: Vec<(Alert, String)>,
    /// Alert-engine states to set or delete, latest per key wins.
    alert_states: Vec<(String, Option<String>, TimestampMs)>,
    /// Actions to record.
    actions: Vec<ActionRecord>,
    samples: usize,
    /// When the oldest uncommitted item was accepted.
    oldest: Option<Instant>,
    /// Flushes to acknowledge after the next successful commit.
    acks: Vec<Sender<()>>,
}

impl Buffers {
    fn is_empty(&self) -> bool {
        self.samples == 0
            && self.events.is_empty()
            && self.alerts.is_empty()
            && self.alert_states.is_empty()
            && self.actions.is_empty()
    }

    fn touch(&mut self) {
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
    }

    /// Takes the batch's samples, up to `limit` buffered samples in all; returns how many
    /// were taken.
    fn add_samples(&mut self, batch: &MetricBatch, limit: usize) -> usize {
        let room = limit.saturating_sub(self.samples);
        let take = batch.samples.len().min(room);
        for sample in &batch.samples[..take] {
            match self.series.get_mut(&sample.series) {
                Some(buffer) => buffer.samples.push((sample.ts_ms, sample.value)),
                None => {
                    self.series.insert(
                        sample.series.clone(),
                        SeriesBuffer {
                            kind: sample.kind,
                            samples: vec![(sample.ts_ms, sample.value)],
                            idle_flushes: 0,
                        },
                    );
                }
            }
        }
        if take > 0 {
            self.samples += take;
            self.touch();
        }
        take
    }

    /// Forgets what was just committed and series idle for a while.
    fn committed(&mut self) {
        self.series.retain(|_, buffer| {
            if buffer.samples.is_empty() {
                buffer.idle_flushes = buffer.idle_flushes.saturating_add(1);
            } else {
                buffer.idle_flushes = 0;
                buffer.samples.clear();
            }
            buffer.idle_flushes < 8
        });
        self.events.clear();
        self.alerts.clear();
        self.alert_states.clear();
        self.actions.clear();
        self.samples = 0;
        self.oldest = None;
    }

    /// Drops everything (after a panic while flushing); returns the samples, events and
    /// alerts lost.
    fn discard(&mut self) -> (u64, u64, u64) {
        let lost = (
            self.samples as u64,
            self.events.len() as u64,
            self.alerts.len() as u64,
        );
        self.series.clear();
        self.events.clear();
        self.alerts.clear();
        self.alert_states.clear();
        self.actions.clear();
        self.samples = 0;
        self.oldest = None;
        lost
    }
}

/// What one flush committed.
#[derive(Debug, Default, Clone, Copy)]
struct Flushed {
    samples: u64,
    events: u64,
    alerts: u64,
}

/// The state a writer builds from its config: the connection and the series-id cache.
/// Thrown away and rebuilt on restart.
pub(super) struct WriterState {
    path: PathBuf,
    pub(super) conn: Connection,
    /// Series ids already in the database, so flushes do not SELECT. Cleared whenever a
    /// transaction is rolled back, since a rolled-back insert may have put an id here that no
    /// longer exists.
    series_ids: FastMap<SeriesKey, i64>,
}

impl WriterState {
    /// Opens (creating or migrating) the database at `path`.
    pub(super) fn open(path: &Path) -> Result<Self, StorageError> {
        Ok(WriterState {
            path: path.to_path_buf(),
            conn: schema::open_writer(path)?,
            series_ids: FastMap::default(),
        })
    }

    /// Closes the connection, logging (not failing) if SQLite refuses.
    pub(super) fn close(self) {
        if let Err((_conn, e)) = self.conn.close() {
            tracing::warn!(path = %self.path.display(), error = %e, "Closing the storage database failed.");
        }
    }

    /// Commits the buffers in one transaction. On error nothing is committed, the buffers
    /// are untouched and the series cache is cleared.
    fn flush(&mut self, buffers: &mut Buffers) -> rusqlite::Result<Flushed> {
        match self.write_buffers(buffers) {
            Ok(flushed) => Ok(flushed),
            Err(e) => {
                self.series_ids.clear();
                Err(e)
            }
        }
    }

    fn write_buffers(&mut self, buffers: &mut Buffers) -> rusqlite::Result<Flushed> {
        let WriterState {
            conn, series_ids, ..
        } = self;
        // IMMEDIATE takes the write lock up front, so the commit cannot fail on lock upgrade.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut flushed = Flushed::default();
        {
            // Every series' new samples go into one head log row (`headlog`), folded into
            // per-series head rows later: one insert per flush however many series there are.
            let mut groups: Vec<(i64, &[(i64, f64)])> = Vec::with_capacity(buffers.series.len());
            let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
            for (key, buffer) in buffers.series.iter_mut() {
                if buffer.samples.is_empty() {
                    continue;
                }
                let id = series_id(&tx, series_ids, key, buffer.kind)?;
                for &(ts, _) in &buffer.samples {
                    min_ts = min_ts.min(ts);
                    max_ts = max_ts.max(ts);
                }
                flushed.samples += buffer.samples.len() as u64;
                groups.push((id, &buffer.samples));
            }
            if flushed.samples > 0 {
                tx.prepare_cached(INSERT_LOG)?.execute(params![
                    min_ts,
                    max_ts,
                    flushed.samples as i64,
                    headlog::encode(groups.into_iter()),
                ])?;
            }
            let mut insert = tx.prepare_cached(INSERT_EVENT)?;
            for event in &buffers.events {
                insert.execute(params![
                    event.daemon.as_str(),
                    event.pid,
                    event.ts_ms,
                    event.kind.as_str(),
                    event.detail,
                ])?;
            }
            flushed.events = buffers.events.len() as u64;
            let mut insert = tx.prepare_cached(INSERT_ALERT)?;
            for (alert, json) in &buffers.alerts {
                insert.execute(params![
                    alert.at_ms,
                    alert.rule,
                    alert_state_text(alert.state),
                    alert.severity.to_string(),
                    alert.daemon.as_ref().map(|d| d.as_str()),
                    json,
                ])?;
            }
            flushed.alerts = buffers.alerts.len() as u64;
            let mut upsert = tx.prepare_cached(
                "INSERT OR REPLACE INTO alert_state (key, json, updated_ms) VALUES (?1, ?2, ?3)",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM alert_state WHERE key = ?1")?;
            for (key, json, ts) in &buffers.alert_states {
                match json {
                    Some(json) => upsert.execute(params![key, json, ts])?,
                    None => delete.execute([key])?,
                };
            }
            let mut insert = tx.prepare_cached(
                "INSERT INTO actions (ts_ms, daemon, rule, action, outcome, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for a in &buffers.actions {
                insert.execute(params![
                    a.ts_ms,
                    a.daemon.as_ref().map(|d| d.as_str()),
                    a.rule,
                    a.action,
                    a.outcome,
                    a.detail
                ])?;
            }
        }
        tx.commit()?;
        Ok(flushed)
    }
}

/// The id of a series, from the cache or else from the database (inserting it if new).
fn series_id(
    conn: &Connection,
    series_ids: &mut FastMap<SeriesKey, i64>,
    key: &SeriesKey,
    kind: MetricKind,
) -> rusqlite::Result<i64> {
    if let Some(&id) = series_ids.get(key) {
        return Ok(id);
    }
    let source = key.source.as_text();
    let labels = key.labels.to_text();
    let metric = key.metric.as_str();
    let found: Option<i64> = conn
        .prepare_cached(SELECT_SERIES)?
        .query_row(params![source, metric, labels], |row| row.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => conn.prepare_cached(INSERT_SERIES)?.insert(params![
            source,
            metric,
            labels,
            kind.code()
        ])?,
    };
    series_ids.insert(key.clone(), id);
    Ok(id)
}

/// Applies a write fault to the writer's connection.
fn apply_fault(conn: &Connection, fault: StorageFault) -> rusqlite::Result<()> {
    match fault {
        StorageFault::DiskFull => {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        }
        StorageFault::ReadOnly => conn.pragma_update(None, "query_only", true)?,
        StorageFault::Slow(_) => {}
        StorageFault::Clear => {
            conn.pragma_update(None, "query_only", false)?;
            // SQLite's default maximum (4294967294 pages).
            conn.query_row("PRAGMA max_page_count = 4294967294", [], |_| Ok(()))?;
        }
    }
    Ok(())
}

/// Whether the writer is committing normally or waiting for the disk to accept writes.
#[derive(Debug)]
enum Health {
    Writing,
    Blocked { retry_at: Instant, delay: Duration },
}

/// Everything the writer thread owns besides its [`WriterState`].
pub(super) struct WriterThread {
    pub(super) config: StorageConfig,
    pub(super) commands: Receiver<StorageCommand>,
    /// Never carries a message; disconnects when the handle shuts down, which cuts a restart
    /// backoff short.
    pub(super) stop: Receiver<()>,
    pub(super) stats: Arc<StorageStats>,
    pub(super) on_failure: FailureHook,
    pub(super) buffers: Buffers,
    health: Health,
    /// When the next maintenance step is due.
    next_maintenance: Instant,
    /// Compaction requests waiting for the next maintenance pass.
    compact_acks: Vec<Sender<()>>,
    /// Fault in force, re-applied after a restart reopens the connection.
    fault: Option<StorageFault>,
    /// True when the last maintenance step ran out of budget with work left.
    maintenance_behind: bool,
    /// When the last maintenance step ended.
    last_maintenance_end: Instant,
    /// When the compaction backlog was last counted (`maintenance::step`).
    backlog_published: Option<Instant>,
    /// Samples in the head log on disk; `None` until counted after (re)opening the file.
    log_samples: Option<u64>,
    /// When the log was last folded; `None` after (re)opening, so a log left by a crash is
    /// folded at the first maintenance step.
    last_fold: Option<Instant>,
}

/// Why the loop must restart the writer state.
struct Restart(StorageFailure);

impl WriterThread {
    /// A writer thread's state before it runs.
    pub(super) fn new(
        config: StorageConfig,
        commands: Receiver<StorageCommand>,
        stop: Receiver<()>,
        stats: Arc<StorageStats>,
        on_failure: FailureHook,
    ) -> Self {
        WriterThread {
            config,
            commands,
            stop,
            stats,
            on_failure,
            buffers: Buffers::default(),
            health: Health::Writing,
            next_maintenance: Instant::now(),
            compact_acks: Vec::new(),
            fault: None,
            maintenance_behind: false,
            last_maintenance_end: Instant::now(),
            log_samples: None,
            last_fold: None,
            backlog_published: None,
        }
    }

    fn clock(&self) -> &dyn Clock {
        &*self.config.clock
    }

    /// Serves until every sender of the channel is gone and the queue is drained, then
    /// commits what is buffered and closes the connection.
    pub(super) fn run(mut self, mut state: WriterState) {
        tracing::debug!(path = %self.config.path.display(), "Storage writer started.");
        loop {
            let outcome = self.serve_once(&mut state);
            match outcome {
                Ok(true) => continue,
                Ok(false) => break,
                Err(Restart(failure)) => {
                    state.close();
                    match self.restart(failure) {
                        Some(fresh) => {
                            state = fresh;
                            self.log_samples = None;
                            self.last_fold = None;
                        }
                        None => {
                            self.discard_queued();
                            return;
                        }
                    }
                }
            }
        }
        self.final_flush(&mut state);
        state.close();
        tracing::debug!(path = %self.config.path.display(), "Storage writer stopped.");
    }

    /// One turn of the loop: wait for work (or a deadline), take what is queued, flush and
    /// maintain when due. `Ok(false)` when the channel is closed and drained.
    fn serve_once(&mut self, state: &mut WriterState) -> Result<bool, Restart> {
        let first = match self.commands.recv_timeout(self.idle_wait()) {
            Ok(command) => Some(command),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Ok(false),
        };
        let mut drained = false;
        if let Some(first) = first {
            self.accept(state, first)?;
            drained = true;
            for _ in 1..self.config.max_batch_commands {
                match self.commands.try_recv() {
                    Ok(command) => self.accept(state, command)?,
                    Err(_) => break,
                }
            }
            drained &= self.commands.is_empty();
        }
        if self.flush_due() {
            self.try_flush(state)?;
        }
        if self.maintenance_due() {
            self.maintain(state)?;
        }
        // Having emptied the queue, wait a moment before listening again: the rest of a
        // burst (every watcher probes on the same tick) lands in the queue meanwhile and is
        // taken in one go, instead of each batch waking the thread on its own.
        if drained && self.buffers.acks.is_empty() {
            std::thread::sleep(WRITER_PAUSE);
        }
        Ok(true)
    }

    /// How long the loop may sleep waiting for a command.
    fn idle_wait(&self) -> Duration {
        let now = Instant::now();
        let deadline = match self.health {
            Health::Blocked { retry_at, .. } => retry_at,
            Health::Writing => match self.buffers.oldest {
                Some(oldest) => self.next_maintenance.min(oldest + self.linger()),
                None => self.next_maintenance,
            },
        };
        deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    /// Takes one command into the buffers (or acts on it).
    fn accept(&mut self, state: &mut WriterState, command: StorageCommand) -> Result<(), Restart> {
        let samples = match &command {
            StorageCommand::Store(batch) => batch.samples.len() as u64,
            _ => 0,
        };
        #[cfg(test)]
        let injected = self.stats.faults.take("storage_writer", command.name());
        let outcome = guard(|| {
            #[cfg(test)]
            if injected {
                panic!("injected panic in the handling of {}", command.name());
            }
            self.apply(state, command)
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(reason) => {
                count(&self.stats.lost_on_panic, 1);
                count(&self.stats.dropped_samples, samples);
                self.publish_buffered();
                Err(Restart(StorageFailure {
                    reason,
                    lost_commands: 1,
                    lost_samples: samples,
                }))
            }
        }
    }

    fn apply(&mut self, state: &mut WriterState, command: StorageCommand) {
        match command {
            StorageCommand::Store(batch) => {
                let limit = match self.health {
                    // Flushes keep a healthy buffer far below the bound; the bound is for
                    // when they fail.
                    Health::Writing => usize::MAX,
                    Health::Blocked { .. } => self.config.max_buffered_samples,
                };
                let taken = self.buffers.add_samples(&batch, limit);
                let refused = batch.samples.len() - taken;
                if refused > 0 {
                    count(&self.stats.dropped_samples, refused as u64);
                }
                self.publish_buffered();
            }
            StorageCommand::Event(event) => {
                if self.buffers.events.len() >= MAX_BUFFERED_RECORDS {
                    count(&self.stats.dropped_events, 1);
                } else {
                    self.buffers.events.push(*event);
                    self.buffers.touch();
                }
            }
            StorageCommand::AlertState(change) => {
                let AlertStateChange { key, json, ts_ms } = *change;
                if self.buffers.alert_states.len() >= MAX_BUFFERED_RECORDS {
                    count(&self.stats.write_errors, 1);
                    tracing::warn!(key, "Alert state not buffered: the buffer is full.");
                } else {
                    self.buffers.alert_states.push((key, json, ts_ms));
                    self.buffers.touch();
                }
            }
            StorageCommand::Action(action) => {
                if self.buffers.actions.len() >= MAX_BUFFERED_RECORDS {
                    count(&self.stats.write_errors, 1);
                } else {
                    self.buffers.actions.push(*action);
                    self.buffers.touch();
                }
            }
            StorageCommand::Alert(alert) => match serde_json::to_string(&alert) {
                Ok(_) if self.buffers.alerts.len() >= MAX_BUFFERED_RECORDS => {
                    count(&self.stats.dropped_alerts, 1);
                }
                Ok(json) => {
                    self.buffers.alerts.push((*alert, json));
                    self.buffers.touch();
                }
                Err(e) => {
                    tracing::warn!(rule = %alert.rule, error = %e, "Alert not encodable; not stored.");
                    count(&self.stats.dropped_alerts, 1);
                    count(&self.stats.write_errors, 1);
                }
            },
            StorageCommand::Flush(ack) => match self.health {
                Health::Writing => self.buffers.acks.push(ack),
                // Dropping the ack tells the caller the flush failed: the disk refuses.
                Health::Blocked { .. } => drop(ack),
            },
            StorageCommand::Compact(ack) => {
                self.compact_acks.push(ack);
                self.next_maintenance = Instant::now();
            }
            StorageCommand::Fault(fault) => {
                self.fault = match fault {
                    StorageFault::Clear => None,
                    other => Some(other),
                };
                if let Err(e) = apply_fault(&state.conn, fault) {
                    tracing::warn!(?fault, error = %e, "Applying a storage fault failed.");
                }
                if fault == StorageFault::Clear {
                    if let Health::Blocked { .. } = self.health {
                        self.health = Health::Blocked {
                            retry_at: Instant::now(),
                            delay: RETRY_FIRST,
                        };
                    }
                }
            }
            StorageCommand::InjectPanic => panic!("injected panic in storage writer"),
        }
    }

    fn publish_buffered(&self) {
        self.stats
            .buffered_samples
            .store(self.buffers.samples as u64, Ordering::Relaxed);
    }

    fn flush_due(&self) -> bool {
        let has_work = !self.buffers.is_empty() || !self.buffers.acks.is_empty();
        if !has_work {
            return false;
        }
        match self.health {
            Health::Blocked { retry_at, .. } => Instant::now() >= retry_at,
            Health::Writing => {
                let age = self.buffers.oldest.map(|t| t.elapsed());
                !self.buffers.acks.is_empty()
                    || self.buffers.samples >= FLUSH_SAMPLES
                    || age.is_some_and(|age| age >= self.config.flush_interval)
                    || (self.commands.is_empty() && age.is_some_and(|age| age >= self.linger()))
            }
        }
    }

    /// How long accepted data waits for more before a quiet queue commits it: half the
    /// flush interval, so a hundred watchers probing at their own moments make two commits
    /// a second instead of a hundred, and a crash still loses at most one flush interval.
    fn linger(&self) -> Duration {
        self.config.flush_interval / 2
    }

    /// Whether the head log should be folded into head rows now.
    fn fold_due(&mut self, state: &WriterState, force: bool) -> bool {
        if self.log_samples.is_none() {
            match headlog::sample_count(&state.conn) {
                Ok(n) => self.log_samples = Some(n),
                Err(e) => {
                    tracing::warn!(error = %e, "Counting the head log failed.");
                    return false;
                }
            }
        }
        self.log_samples.is_some_and(|n| n > 0)
            && (force
                || self
                    .last_fold
                    .is_none_or(|t| t.elapsed() >= headlog::FOLD_INTERVAL)
                || self.log_samples.is_some_and(|n| n >= headlog::FOLD_SAMPLES))
    }

    /// Folds the head log into head rows in one transaction. `Ok(false)` when the disk
    /// refused (the writer is then blocked; the log is intact and folded later).
    fn fold_log(&mut self, state: &mut WriterState) -> Result<bool, Restart> {
        let outcome = guard(|| -> rusqlite::Result<u64> {
            let tx = state
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let moved = headlog::fold(&tx)?;
            tx.commit()?;
            Ok(moved)
        });
        match outcome {
            Ok(Ok(_)) => {
                self.log_samples = Some(0);
                self.last_fold = Some(Instant::now());
                Ok(true)
            }
            Ok(Err(e)) => {
                tracing::warn!(path = %self.config.path.display(), error = %e, "Folding the head log failed.");
                self.block(&e);
                Ok(false)
            }
            // The log is on disk and untouched (rolled back): nothing is lost.
            Err(reason) => Err(Restart(StorageFailure {
                reason,
                lost_commands: 0,
                lost_samples: 0,
            })),
        }
    }

    /// Commits the buffers; on a write error keeps them and blocks; on a panic loses them
    /// and asks for a restart.
    fn try_flush(&mut self, state: &mut WriterState) -> Result<bool, Restart> {
        if self.buffers.is_empty() {
            ack_all(std::mem::take(&mut self.buffers.acks));
            return Ok(true);
        }
        if let Some(StorageFault::Slow(delay)) = self.fault {
            std::thread::sleep(delay);
        }
        let outcome = guard(|| state.flush(&mut self.buffers));
        match outcome {
            Ok(Ok(flushed)) => {
                if let Some(n) = &mut self.log_samples {
                    *n += flushed.samples;
                }
                count(&self.stats.commits, 1);
                count(&self.stats.stored_samples, flushed.samples);
                count(&self.stats.stored_events, flushed.events);
                count(&self.stats.stored_alerts, flushed.alerts);
                self.buffers.committed();
                self.publish_buffered();
                ack_all(std::mem::take(&mut self.buffers.acks));
                self.unblock();
                Ok(true)
            }
            Ok(Err(e)) => {
                self.block(&e);
                // Dropping the acks without a message tells each flush that it failed.
                self.buffers.acks.clear();
                Ok(false)
            }
            Err(reason) => {
                let (samples, events, alerts) = self.buffers.discard();
                self.buffers.acks.clear();
                count(&self.stats.dropped_samples, samples);
                count(&self.stats.dropped_events, events);
                count(&self.stats.dropped_alerts, alerts);
                count(&self.stats.lost_on_panic, 1);
                self.publish_buffered();
                Err(Restart(StorageFailure {
                    reason,
                    lost_commands: 1,
                    lost_samples: samples,
                }))
            }
        }
    }

    /// Notes a failed write: counts it, keeps the reason for status, schedules a retry.
    fn block(&mut self, e: &rusqlite::Error) {
        count(&self.stats.write_errors, 1);
        let delay = match self.health {
            Health::Writing => {
                tracing::error!(
                    path = %self.config.path.display(),
                    error = %e,
                    buffered_samples = self.buffers.samples,
                    limit = self.config.max_buffered_samples,
                    "Storage writes fail; buffering in memory and retrying."
                );
                RETRY_FIRST
            }
            Health::Blocked { delay, .. } => (delay * 2).min(RETRY_MAX),
        };
        self.stats.set_blocked(Some(format!(
            "writing {} failed: {e}",
            self.config.path.display()
        )));
        self.health = Health::Blocked {
            retry_at: Instant::now() + delay,
            delay,
        };
    }

    fn unblock(&mut self) {
        if let Health::Blocked { .. } = self.health {
            tracing::info!(path = %self.config.path.display(), "Storage writes succeed again.");
            self.stats.set_blocked(None);
            self.health = Health::Writing;
            self.next_maintenance = Instant::now();
        }
    }

    fn maintenance_due(&self) -> bool {
        matches!(self.health, Health::Writing) && Instant::now() >= self.next_maintenance
    }

    /// Runs one bounded maintenance step (after committing the buffers, so compaction sees
    /// them), or a complete pass when compaction was asked for.
    fn maintain(&mut self, state: &mut WriterState) -> Result<(), Restart> {
        if !self.try_flush(state)? {
            return Ok(());
        }
        let force = !self.compact_acks.is_empty();
        if self.fold_due(state, force) && !self.fold_log(state)? {
            self.compact_acks.clear();
            return Ok(());
        }
        let settings = MaintenanceSettings::from_config(&self.config);
        let now_ms = self.clock().now_ms();
        let started = Instant::now();
        // With a backlog, maintenance gets as much time as ingestion had since the last
        // step (up to ten budgets), so compaction keeps pace with any ingest rate instead of
        // falling behind; ingestion still never waits more than one such step.
        let base = self.config.maintenance_budget;
        let budget = if self.maintenance_behind {
            started
                .saturating_duration_since(self.last_maintenance_end)
                .clamp(base, base * 10)
        } else {
            base
        };
        let stats = Arc::clone(&self.stats);
        let publish = self
            .backlog_published
            .is_none_or(|t| t.elapsed() >= BACKLOG_PUBLISH_EVERY);
        if publish {
            self.backlog_published = Some(Instant::now());
        }
        let outcome = guard(|| {
            if force {
                maintenance::run_to_completion(&state.conn, &settings, now_ms, &stats)
            } else {
                maintenance::step(&state.conn, &settings, now_ms, &stats, budget, publish)
            }
        });
        self.last_maintenance_end = Instant::now();
        count(&self.stats.maintenance_steps, 1);
        count(
            &self.stats.maintenance_micros,
            started.elapsed().as_micros() as u64,
        );
        match outcome {
            Ok(Ok(more)) => {
                self.maintenance_behind = more;
                ack_all(std::mem::take(&mut self.compact_acks));
                // Without a backlog there is little to do: closed hours, days and retention
                // change slowly, so an idle writer looks every few flush intervals.
                self.next_maintenance = if more {
                    Instant::now()
                } else {
                    Instant::now() + self.config.flush_interval * IDLE_MAINTENANCE_EVERY
                };
                Ok(())
            }
            Ok(Err(e)) => {
                // The failed unit was rolled back; what it would have done is still to do.
                tracing::warn!(path = %self.config.path.display(), error = %e, "Storage maintenance failed.");
                self.compact_acks.clear();
                self.block(&e);
                Ok(())
            }
            Err(reason) => {
                self.compact_acks.clear();
                count(&self.stats.lost_on_panic, 1);
                Err(Restart(StorageFailure {
                    reason,
                    lost_commands: 1,
                    lost_samples: 0,
                }))
            }
        }
    }

    /// At shutdown: commits what is buffered, trying a few times if the disk refuses, then
    /// counts what could not be written as dropped.
    fn final_flush(&mut self, state: &mut WriterState) {
        for attempt in 0..3 {
            if self.buffers.is_empty() {
                break;
            }
            match self.try_flush(state) {
                Ok(true) => break,
                Ok(false) if attempt < 2 => std::thread::sleep(Duration::from_millis(100)),
                _ => {}
            }
        }
        ack_all(std::mem::take(&mut self.buffers.acks));
        let (samples, events, alerts) = self.buffers.discard();
        if samples + events + alerts > 0 {
            tracing::error!(
                path = %self.config.path.display(),
                samples, events, alerts,
                "Shutting down with writes still failing; buffered data is lost."
            );
        }
        count(&self.stats.dropped_samples, samples);
        count(&self.stats.dropped_events, events);
        count(&self.stats.dropped_alerts, alerts);
        self.publish_buffered();
    }

    /// Reports the failure, waits the backoff, reopens. `None` when shutdown was requested
    /// and the database cannot be reopened.
    fn restart(&self, failure: StorageFailure) -> Option<WriterState> {
        tracing::warn!(
            path = %self.config.path.display(),
            reason = %failure.reason,
            lost_commands = failure.lost_commands,
            lost_samples = failure.lost_samples,
            "Storage writer failed; restarting."
        );
        let mut backoff = self.report(failure);
        loop {
            let stopping = self.wait(backoff);
            match WriterState::open(&self.config.path) {
                Ok(state) => {
                    if let Some(fault) = self.fault {
                        if let Err(e) = apply_fault(&state.conn, fault) {
                            tracing::warn!(?fault, error = %e, "Re-applying a storage fault failed.");
                        }
                    }
                    count(&self.stats.restarts, 1);
                    tracing::info!(path = %self.config.path.display(), "Storage writer restarted.");
                    return Some(state);
                }
                Err(e) => {
                    count(&self.stats.write_errors, 1);
                    tracing::warn!(path = %self.config.path.display(), error = %e, "Reopening the storage database failed.");
                    if stopping {
                        return None;
                    }
                    backoff = self
                        .report(StorageFailure {
                            reason: format!("reopening the storage database failed: {e}"),
                            lost_commands: 0,
                            lost_samples: 0,
                        })
                        .max(MIN_REOPEN_RETRY);
                }
            }
        }
    }

    /// Calls the failure hook; a panicking hook means no backoff.
    fn report(&self, failure: StorageFailure) -> Duration {
        match guard(|| (self.on_failure)(failure)) {
            Ok(backoff) => backoff,
            Err(reason) => {
                tracing::warn!(
                    reason = %reason,
                    "Storage failure hook panicked; restarting without backoff."
                );
                Duration::ZERO
            }
        }
    }

    /// Sleeps for `backoff` unless shutdown is requested; true when it is.
    fn wait(&self, backoff: Duration) -> bool {
        !matches!(
            self.stop.recv_timeout(backoff),
            Err(RecvTimeoutError::Timeout)
        )
    }

    /// Shutting down without a database: count what is still queued or buffered as
    /// dropped. Flushes are dropped unacknowledged, so they report failure.
    fn discard_queued(&mut self) {
        for command in self.commands.iter() {
            match command {
                StorageCommand::Store(batch) => {
                    count(&self.stats.dropped_samples, batch.samples.len() as u64)
                }
                StorageCommand::Event(_) => count(&self.stats.dropped_events, 1),
                StorageCommand::Alert(_) => count(&self.stats.dropped_alerts, 1),
                _ => {}
            }
        }
        let (samples, events, alerts) = self.buffers.discard();
        count(&self.stats.dropped_samples, samples);
        count(&self.stats.dropped_events, events);
        count(&self.stats.dropped_alerts, alerts);
        self.publish_buffered();
    }
}

/// Acknowledges flushes. A flush whose caller gave up waiting has no receiver any more,
/// which is fine.
fn ack_all(acks: Vec<Sender<()>>) {
    for ack in acks {
        let _ = ack.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue preallocates a slot of the largest command for each of its places (4 096
    /// by default): keep the rare, large commands boxed so a slot stays a few words.
    #[test]
    fn a_queued_command_is_a_few_words() {
        let size = std::mem::size_of::<StorageCommand>();
        assert!(
            size <= 24,
            "StorageCommand is {size} bytes; box the large variant"
        );
    }
}
