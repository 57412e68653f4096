//! The storage writer thread: its commands, its counters, its loop, and how it survives a
//! panic.
//!
//! The loop blocks on the channel, then takes whatever else is already queued (up to
//! `max_batch_commands` commands in all) and writes the group in one transaction with cached
//! statements. A lone command is therefore committed at once, and a burst is committed in
//! few transactions. Flushes in a group are acknowledged after its commit; as groups are
//! committed in channel order, an acknowledged flush means everything queued before it is on
//! disk.
//!
//! Each command runs inside `catch_unwind` and inside a savepoint. A command that panics is
//! rolled back to its savepoint and lost (counted), the rest of its group is still committed,
//! and the writer then restarts: it reports the failure to the supervisor's [`FailureHook`],
//! waits the backoff it returns, and reopens the connection, rebuilding every piece of state
//! from the config. The channel is not part of that state, so nothing queued is lost.
//!
//! A SQLite error (disk full, read-only file) is not a crash: the group is rolled back,
//! logged and counted, and the writer carries on with the next group.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::schema;
use super::StorageError;
use crate::types::{Alert, AlertState, LifecycleEvent, MetricBatch, MetricKind, SeriesKey};

/// A request to the storage writer. Embedders use [`super::StorageHandle`], which sends these.
#[derive(Debug)]
pub enum StorageCommand {
    /// Store every sample of the batch.
    Store(Arc<MetricBatch>),
    /// Record a daemon lifecycle event.
    Event(LifecycleEvent),
    /// Record an alert notification.
    Alert(Alert),
    /// Acknowledge on this sender once everything queued before this command is committed.
    /// The sender is dropped without a message when that could not be committed.
    Flush(Sender<()>),
    /// Panic inside the writer's handler (fault injection for tests and chaos mode).
    InjectPanic,
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
    /// Samples in those commands.
    pub lost_samples: u64,
}

/// Counters of the storage writer, shared with whoever reports perfvisor's own health.
///
/// Every sample offered to [`super::StorageHandle::store`] ends up in exactly one of
/// `stored_samples` and `dropped_samples` (once the writer has handled it).
#[derive(Debug, Default)]
pub struct StorageStats {
    /// Samples committed to the database.
    pub stored_samples: AtomicU64,
    /// Lifecycle events committed.
    pub stored_events: AtomicU64,
    /// Alerts committed.
    pub stored_alerts: AtomicU64,
    /// Samples not stored: the queue was full or shut down, the write failed, or the command
    /// carrying them panicked.
    pub dropped_samples: AtomicU64,
    /// Failed writes: rolled-back groups, unencodable alerts, failed reopens.
    pub write_errors: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Writer restarts after a panic.
    pub restarts: AtomicU64,
    /// Commands lost because handling them panicked.
    pub lost_on_panic: AtomicU64,
}

/// Adds to a counter. Counters are independent statistics, so relaxed ordering suffices.
pub(super) fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// How many samples a command carries.
fn samples_in(command: &StorageCommand) -> u64 {
    match command {
        StorageCommand::Store(batch) => batch.samples.len() as u64,
        _ => 0,
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// The stored text of an alert state (the same words as its serde form).
fn alert_state_text(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

/// Least time between two attempts to reopen the database, whatever the hook answers, so a
/// missing disk cannot turn the writer into a busy loop.
const MIN_REOPEN_RETRY: Duration = Duration::from_millis(50);

const INSERT_SAMPLE: &str = "INSERT INTO samples (series_id, ts_ms, value) VALUES (?1, ?2, ?3)";
const SELECT_SERIES: &str =
    "SELECT id FROM series WHERE source = ?1 AND metric = ?2 AND labels = ?3";
const INSERT_SERIES: &str =
    "INSERT INTO series (source, metric, labels, kind) VALUES (?1, ?2, ?3, ?4)";
const INSERT_EVENT: &str =
    "INSERT INTO events (daemon, pid, ts_ms, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_ALERT: &str = "INSERT INTO alerts (ts_ms, rule, state, severity, daemon, json) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// What one command added to the database.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Written {
    samples: u64,
    events: u64,
    alerts: u64,
}

impl std::ops::AddAssign for Written {
    fn add_assign(&mut self, o: Written) {
        self.samples += o.samples;
        self.events += o.events;
        self.alerts += o.alerts;
    }
}

/// Why one command could not be written.
#[derive(Debug)]
enum CommandError {
    /// The database failed; the whole group is rolled back.
    Sqlite(rusqlite::Error),
    /// The alert could not be encoded; only this command is skipped.
    Encode(serde_json::Error),
}

impl From<rusqlite::Error> for CommandError {
    fn from(e: rusqlite::Error) -> Self {
        CommandError::Sqlite(e)
    }
}

/// The state a writer builds from its config: the connection and the series-id cache.
/// Thrown away and rebuilt on restart.
pub(super) struct WriterState {
    path: PathBuf,
    conn: Connection,
    /// Series ids already in the database, so the hot path does not SELECT. Only holds ids
    /// of committed (or about to be committed) rows: it is cleared whenever work is rolled
    /// back, since a rolled-back insert may have put an id here that no longer exists.
    series_ids: HashMap<SeriesKey, i64>,
}

impl WriterState {
    /// Opens (creating or migrating) the database at `path`.
    pub(super) fn open(path: &Path) -> Result<Self, StorageError> {
        Ok(WriterState {
            path: path.to_path_buf(),
            conn: schema::open_writer(path)?,
            series_ids: HashMap::new(),
        })
    }

    /// Closes the connection, logging (not failing) if SQLite refuses.
    pub(super) fn close(self) {
        if let Err((_conn, e)) = self.conn.close() {
            tracing::warn!(path = %self.path.display(), error = %e, "Closing the storage database failed.");
        }
    }

    /// Writes a group of commands in one transaction and acknowledges its flushes.
    /// Returns the failure to restart for when a command panicked.
    pub(super) fn write_group(
        &mut self,
        group: Vec<StorageCommand>,
        stats: &StorageStats,
    ) -> Option<StorageFailure> {
        let mut acks = Vec::new();
        let mut writes = Vec::with_capacity(group.len());
        for command in group {
            match command {
                StorageCommand::Flush(ack) => acks.push(ack),
                other => writes.push(other),
            }
        }
        if writes.is_empty() {
            ack_all(acks);
            return None;
        }
        let offered: u64 = writes.iter().map(samples_in).sum();
        let mut panics = Panics::default();
        match self.write_in_transaction(writes, stats, &mut panics) {
            Ok(written) => {
                count(&stats.commits, 1);
                count(&stats.stored_samples, written.samples);
                count(&stats.stored_events, written.events);
                count(&stats.stored_alerts, written.alerts);
                count(
                    &stats.dropped_samples,
                    offered.saturating_sub(written.samples),
                );
                ack_all(acks);
            }
            Err(e) => {
                tracing::warn!(
                    path = %self.path.display(),
                    error = %e,
                    dropped_samples = offered,
                    "Write failed."
                );
                self.series_ids.clear();
                count(&stats.write_errors, 1);
                count(&stats.dropped_samples, offered);
                // Dropping the acks without a message tells each flush that it failed.
                drop(acks);
            }
        }
        panics.into_failure(stats)
    }

    /// Writes `writes` in one transaction; on error everything is rolled back.
    fn write_in_transaction(
        &mut self,
        writes: Vec<StorageCommand>,
        stats: &StorageStats,
        panics: &mut Panics,
    ) -> Result<Written, rusqlite::Error> {
        let WriterState {
            path,
            conn,
            series_ids,
        } = self;
        // IMMEDIATE takes the write lock up front, so the commit cannot fail on lock upgrade.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut written = Written::default();
        for command in writes {
            let samples = samples_in(&command);
            tx.prepare_cached("SAVEPOINT command")?.execute([])?;
            let outcome = catch_unwind(AssertUnwindSafe(|| apply(&tx, series_ids, command)));
            let keep = match outcome {
                Ok(Ok(w)) => {
                    written += w;
                    true
                }
                Ok(Err(CommandError::Sqlite(e))) => return Err(e),
                Ok(Err(CommandError::Encode(e))) => {
                    tracing::warn!(path = %path.display(), error = %e, "Alert not encodable; not stored.");
                    count(&stats.write_errors, 1);
                    false
                }
                Err(payload) => {
                    panics.record(panic_message(&*payload), samples);
                    // The panicking command may have cached ids of rows now rolled back.
                    series_ids.clear();
                    false
                }
            };
            if !keep {
                tx.prepare_cached("ROLLBACK TO command")?.execute([])?;
            }
            tx.prepare_cached("RELEASE command")?.execute([])?;
        }
        tx.commit()?;
        Ok(written)
    }
}

/// Panics met while writing one group.
#[derive(Debug, Default)]
struct Panics {
    reasons: Vec<String>,
    lost_samples: u64,
}

impl Panics {
    fn record(&mut self, reason: String, samples: u64) {
        self.reasons.push(reason);
        self.lost_samples += samples;
    }

    /// Counts the lost commands and turns them into one failure, if there were any.
    /// Their samples are already counted as dropped by the caller.
    fn into_failure(self, stats: &StorageStats) -> Option<StorageFailure> {
        let first = self.reasons.first()?.clone();
        let lost = self.reasons.len() as u64;
        count(&stats.lost_on_panic, lost);
        let reason = if lost > 1 {
            format!("{first} (and {} more panics)", lost - 1)
        } else {
            first
        };
        Some(StorageFailure {
            reason,
            lost_commands: lost,
            lost_samples: self.lost_samples,
        })
    }
}

/// Acknowledges flushes. A flush whose caller gave up waiting has no receiver any more,
/// which is fine.
fn ack_all(acks: Vec<Sender<()>>) {
    for ack in acks {
        let _ = ack.try_send(());
    }
}

/// Writes one command inside the open transaction.
fn apply(
    conn: &Connection,
    series_ids: &mut HashMap<SeriesKey, i64>,
    command: StorageCommand,
) -> Result<Written, CommandError> {
    match command {
        StorageCommand::Store(batch) => {
            let mut insert = conn.prepare_cached(INSERT_SAMPLE)?;
            for sample in &batch.samples {
                let id = series_id(conn, series_ids, &sample.series, sample.kind)?;
                insert.execute(params![id, sample.ts_ms, sample.value])?;
            }
            Ok(Written {
                samples: batch.samples.len() as u64,
                ..Written::default()
            })
        }
        StorageCommand::Event(event) => {
            conn.prepare_cached(INSERT_EVENT)?.execute(params![
                event.daemon.as_str(),
                event.pid,
                event.ts_ms,
                event.kind.as_str(),
                event.detail,
            ])?;
            Ok(Written {
                events: 1,
                ..Written::default()
            })
        }
        StorageCommand::Alert(alert) => {
            let json = serde_json::to_string(&alert).map_err(CommandError::Encode)?;
            conn.prepare_cached(INSERT_ALERT)?.execute(params![
                alert.at_ms,
                alert.rule,
                alert_state_text(alert.state),
                alert.severity.to_string(),
                alert.daemon.as_ref().map(|d| d.as_str()),
                json,
            ])?;
            Ok(Written {
                alerts: 1,
                ..Written::default()
            })
        }
        StorageCommand::InjectPanic => panic!("injected panic in storage writer"),
        // Flushes are taken out of the group before it is written.
        StorageCommand::Flush(_) => Ok(Written::default()),
    }
}

/// The id of a series, from the cache or else from the database (inserting it if new).
fn series_id(
    conn: &Connection,
    series_ids: &mut HashMap<SeriesKey, i64>,
    key: &SeriesKey,
    kind: MetricKind,
) -> Result<i64, rusqlite::Error> {
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

/// Everything the writer thread owns besides its [`WriterState`].
pub(super) struct WriterThread {
    pub(super) path: PathBuf,
    pub(super) commands: Receiver<StorageCommand>,
    /// Never carries a message; disconnects when the handle shuts down, which cuts a restart
    /// backoff short.
    pub(super) stop: Receiver<()>,
    pub(super) stats: Arc<StorageStats>,
    pub(super) on_failure: FailureHook,
    pub(super) max_batch_commands: usize,
}

impl WriterThread {
    /// Serves until every sender of the channel is gone and the queue is drained, then
    /// closes the connection.
    pub(super) fn run(self, mut state: WriterState) {
        tracing::debug!(path = %self.path.display(), "Storage writer started.");
        while let Ok(first) = self.commands.recv() {
            let group = self.gather(first);
            let writes = group
                .iter()
                .filter(|c| !matches!(c, StorageCommand::Flush(_)))
                .count() as u64;
            let samples: u64 = group.iter().map(samples_in).sum();
            let failure =
                match catch_unwind(AssertUnwindSafe(|| state.write_group(group, &self.stats))) {
                    Ok(failure) => failure,
                    Err(payload) => {
                        // A bug outside the per-command guard: the whole group is lost.
                        count(&self.stats.lost_on_panic, writes);
                        count(&self.stats.dropped_samples, samples);
                        Some(StorageFailure {
                            reason: panic_message(&*payload),
                            lost_commands: writes,
                            lost_samples: samples,
                        })
                    }
                };
            if let Some(failure) = failure {
                state.close();
                match self.restart(failure) {
                    Some(fresh) => state = fresh,
                    None => {
                        self.discard_queued();
                        return;
                    }
                }
            }
        }
        state.close();
        tracing::debug!(path = %self.path.display(), "Storage writer stopped.");
    }

    /// The first command plus whatever is already queued, up to the batch limit.
    fn gather(&self, first: StorageCommand) -> Vec<StorageCommand> {
        let mut group = Vec::with_capacity(self.max_batch_commands.min(64));
        group.push(first);
        while group.len() < self.max_batch_commands {
            match self.commands.try_recv() {
                Ok(command) => group.push(command),
                Err(_) => break,
            }
        }
        group
    }

    /// Reports the failure, waits the backoff, reopens. `None` when shutdown was requested
    /// and the database cannot be reopened.
    fn restart(&self, failure: StorageFailure) -> Option<WriterState> {
        tracing::warn!(
            path = %self.path.display(),
            reason = %failure.reason,
            lost_commands = failure.lost_commands,
            lost_samples = failure.lost_samples,
            "Storage writer failed; restarting."
        );
        let mut backoff = self.report(failure);
        loop {
            let stopping = self.wait(backoff);
            match WriterState::open(&self.path) {
                Ok(state) => {
                    count(&self.stats.restarts, 1);
                    tracing::info!(path = %self.path.display(), "Storage writer restarted.");
                    return Some(state);
                }
                Err(e) => {
                    count(&self.stats.write_errors, 1);
                    tracing::warn!(path = %self.path.display(), error = %e, "Reopening the storage database failed.");
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
        match catch_unwind(AssertUnwindSafe(|| (self.on_failure)(failure))) {
            Ok(backoff) => backoff,
            Err(payload) => {
                tracing::warn!(
                    reason = %panic_message(&*payload),
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

    /// Shutting down without a database: count what is still queued as dropped. Flushes
    /// are dropped unacknowledged, so they report failure.
    fn discard_queued(&self) {
        for command in self.commands.iter() {
            count(&self.stats.dropped_samples, samples_in(&command));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::{batch, temp_db};
    use crate::storage::StorageReader;

    fn flush_pair() -> (Sender<()>, Receiver<()>) {
        crossbeam_channel::bounded(1)
    }

    /// A panic in the middle of a group loses only that command: the commands before and
    /// after it are committed, the flush is acknowledged, and the failure is reported.
    #[test]
    fn panic_in_group_loses_only_that_command() {
        let (_dir, path) = temp_db();
        let stats = StorageStats::default();
        let mut state = WriterState::open(&path).unwrap();
        let (ack, acked) = flush_pair();
        let failure = state.write_group(
            vec![
                StorageCommand::Store(batch("a", 0, 5)),
                StorageCommand::InjectPanic,
                StorageCommand::Store(batch("b", 0, 7)),
                StorageCommand::Flush(ack),
            ],
            &stats,
        );
        let failure = failure.expect("a panic is reported");
        assert_eq!(failure.reason, "injected panic in storage writer");
        assert_eq!((failure.lost_commands, failure.lost_samples), (1, 0));
        assert!(acked.try_recv().is_ok());
        assert_eq!(stats.stored_samples.load(Ordering::Relaxed), 12);
        assert_eq!(stats.lost_on_panic.load(Ordering::Relaxed), 1);
        assert_eq!(stats.commits.load(Ordering::Relaxed), 1);
        let reader = StorageReader::open(&path).unwrap();
        assert_eq!(reader.sample_count().unwrap(), 12);
        assert_eq!(reader.series().unwrap().len(), 2);
    }

    /// A SQLite error rolls the group back, counts it, fails the flush, and the writer keeps
    /// working afterwards (the series cache does not point at rolled-back rows).
    #[test]
    fn write_error_rolls_back_and_writer_recovers() {
        let (_dir, path) = temp_db();
        let stats = StorageStats::default();
        let mut state = WriterState::open(&path).unwrap();
        // query_only makes every write fail with SQLITE_READONLY, as a read-only file would.
        state.conn.pragma_update(None, "query_only", true).unwrap();
        let (ack, acked) = flush_pair();
        let failure = state.write_group(
            vec![
                StorageCommand::Store(batch("a", 0, 4)),
                StorageCommand::Flush(ack),
            ],
            &stats,
        );
        assert!(failure.is_none(), "a write error is not a crash");
        assert_eq!(
            acked.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected),
            "the flush is told that it failed"
        );
        assert_eq!(stats.write_errors.load(Ordering::Relaxed), 1);
        assert_eq!(stats.dropped_samples.load(Ordering::Relaxed), 4);
        assert!(state.series_ids.is_empty());

        state.conn.pragma_update(None, "query_only", false).unwrap();
        let (ack, acked) = flush_pair();
        state.write_group(
            vec![
                StorageCommand::Store(batch("a", 10, 3)),
                StorageCommand::Flush(ack),
            ],
            &stats,
        );
        assert!(acked.try_recv().is_ok());
        assert_eq!(stats.stored_samples.load(Ordering::Relaxed), 3);
        let reader = StorageReader::open(&path).unwrap();
        let (key, _) = reader.series().unwrap().remove(0);
        assert_eq!(reader.query_range(&key, 0, 100).unwrap().len(), 3);
    }

    /// The series cache spares the SELECT: a second batch of a known series inserts no
    /// series row and reuses the id.
    #[test]
    fn series_ids_are_cached() {
        let (_dir, path) = temp_db();
        let stats = StorageStats::default();
        let mut state = WriterState::open(&path).unwrap();
        state.write_group(vec![StorageCommand::Store(batch("a", 0, 2))], &stats);
        assert_eq!(state.series_ids.len(), 1);
        state.write_group(vec![StorageCommand::Store(batch("a", 2, 2))], &stats);
        assert_eq!(state.series_ids.len(), 1);
        let n: i64 = state
            .conn
            .query_row("SELECT count(*) FROM series", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    /// A panic payload's text is recovered whether it is a `&str` or a `String`.
    #[test]
    fn panic_messages_are_recovered() {
        let p = catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&*p), "plain");
        let p = catch_unwind(|| panic!("formatted {}", 42)).unwrap_err();
        assert_eq!(panic_message(&*p), "formatted 42");
    }
}
