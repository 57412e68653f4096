//! `StorageHandle`: the cloneable front of the storage writer thread.
//!
//! It hides the command channel: producers call typed methods that never block (a full
//! queue drops and counts), `flush` and `shutdown` block with a timeout. Shutdown drops the
//! handle's only command sender, so the writer sees the channel disconnect only after it has
//! drained everything accepted before; the handle then waits for the thread to close the
//! database and joins it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError,
};

use super::writer::{count, AlertStateChange, WriterState, WriterThread};
use super::{FailureHook, StorageCommand, StorageConfig, StorageError, StorageFault, StorageStats};
use crate::types::{ActionRecord, Alert, LifecycleEvent, MetricBatch, TimestampMs};

/// A handle to the storage writer thread. Cheap to clone; every clone talks to the same
/// writer. When the last clone is dropped without [`StorageHandle::shutdown`], the writer
/// still drains its queue and closes the database, but nobody waits for it.
#[derive(Clone, Debug)]
pub struct StorageHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// The only long-lived sender of the channel; `None` once shut down.
    commands: RwLock<Option<Sender<StorageCommand>>>,
    /// Dropped at shutdown to cut a restart backoff short; never sent on.
    stop: Mutex<Option<Sender<()>>>,
    /// Disconnects when the writer thread has closed the database and is about to end.
    exited: Receiver<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<StorageStats>,
}

impl StorageHandle {
    /// Opens the database (creating or migrating it) and starts the writer thread
    /// "perfvisor-storage". Problems with the file are returned here, before any thread runs.
    pub fn spawn(
        config: StorageConfig,
        stats: Arc<StorageStats>,
        on_failure: FailureHook,
    ) -> Result<StorageHandle, StorageError> {
        config.validate()?;
        let state = WriterState::open(&config.path)?;
        let (commands_tx, commands_rx) = bounded(config.queue_capacity);
        let (stop_tx, stop_rx) = bounded(0);
        let (exited_tx, exited_rx) = bounded::<()>(0);
        let path = config.path.clone();
        let writer =
            WriterThread::new(config, commands_rx, stop_rx, Arc::clone(&stats), on_failure);
        let thread = std::thread::Builder::new()
            .name("perfvisor-storage".to_string())
            .spawn(move || {
                // Dropped last, after `run` has closed the database, or while unwinding.
                let _exited = exited_tx;
                writer.run(state);
            })
            .map_err(StorageError::Spawn)?;
        Ok(StorageHandle {
            shared: Arc::new(Shared {
                path,
                commands: RwLock::new(Some(commands_tx)),
                stop: Mutex::new(Some(stop_tx)),
                exited: exited_rx,
                thread: Mutex::new(Some(thread)),
                stats,
            }),
        })
    }

    /// The writer's counters and gauges, shared: they outlive the writer.
    pub fn stats(&self) -> Arc<StorageStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Queues a batch for storage without blocking. When the queue is full or the writer is
    /// shut down, the batch's samples are counted in `dropped_samples` and `false` returned.
    pub fn store(&self, batch: Arc<MetricBatch>) -> bool {
        let samples = batch.samples.len() as u64;
        let accepted = self.try_send(StorageCommand::Store(batch));
        if !accepted {
            count(&self.shared.stats.dropped_samples, samples);
        }
        accepted
    }

    /// Queues a batch, waiting up to `timeout` for room in the queue: backpressure instead
    /// of dropping, for importers and benchmarks. On timeout or after shutdown the batch's
    /// samples are counted in `dropped_samples` and `false` returned.
    pub fn store_blocking(&self, batch: Arc<MetricBatch>, timeout: Duration) -> bool {
        let samples = batch.samples.len() as u64;
        let accepted = match self.sender() {
            Some(sender) => sender
                .send_timeout(StorageCommand::Store(batch), timeout)
                .is_ok(),
            None => false,
        };
        if !accepted {
            count(&self.shared.stats.dropped_samples, samples);
        }
        accepted
    }

    /// Queues a lifecycle event without blocking; `false` (and counted in `dropped_events`)
    /// when the queue is full or closed.
    pub fn record_event(&self, event: LifecycleEvent) -> bool {
        let accepted = self.try_send(StorageCommand::Event(Box::new(event)));
        if !accepted {
            count(&self.shared.stats.dropped_events, 1);
        }
        accepted
    }

    /// Queues an alert without blocking; `false` (and counted in `dropped_alerts`) when the
    /// queue is full or closed.
    pub fn record_alert(&self, alert: Alert) -> bool {
        let accepted = self.try_send(StorageCommand::Alert(Box::new(alert)));
        if !accepted {
            count(&self.shared.stats.dropped_alerts, 1);
        }
        accepted
    }

    /// Sets (`Some`) or deletes (`None`) a persisted alert-engine state, without blocking;
    /// `false` when the queue is full or closed.
    pub fn save_alert_state(&self, key: String, json: Option<String>, ts_ms: TimestampMs) -> bool {
        self.try_send(StorageCommand::AlertState(Box::new(AlertStateChange {
            key,
            json,
            ts_ms,
        })))
    }

    /// Records an action taken because of an alert, without blocking; `false` when the
    /// queue is full or closed.
    pub fn record_action(&self, action: ActionRecord) -> bool {
        self.try_send(StorageCommand::Action(Box::new(action)))
    }

    /// Makes the database refuse writes (or stop refusing): fault injection to exercise the
    /// writer's buffering. Does nothing when the queue is full or closed.
    pub fn inject_fault(&self, fault: StorageFault) {
        if !self.try_send(StorageCommand::Fault(fault)) {
            tracing::debug!(path = %self.shared.path.display(), "Fault injection not queued.");
        }
    }

    /// Blocks until everything queued before this call is committed and every head row is
    /// compacted (closed window or not), the rollups that completes are built and retention
    /// is applied; or until `timeout` passes. The "compact now" maintenance entry point.
    pub fn compact_now(&self, timeout: Duration) -> Result<(), StorageError> {
        self.request(
            StorageCommand::Compact,
            "accept the compaction",
            "compact",
            timeout,
        )
    }

    /// Makes the writer panic while handling a command (fault injection). Does nothing when
    /// the queue is full or closed.
    pub fn inject_panic(&self) {
        if !self.try_send(StorageCommand::InjectPanic) {
            tracing::debug!(path = %self.shared.path.display(), "Panic injection not queued.");
        }
    }

    /// Blocks until everything queued before this call is committed, or `timeout` passes.
    ///
    /// Fails with [`StorageError::FlushFailed`] when some of it could not be written, with
    /// [`StorageError::Closed`] after shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<(), StorageError> {
        self.request(StorageCommand::Flush, "accept the flush", "commit", timeout)
    }

    /// Sends a command carrying an acknowledgement and waits for it.
    fn request(
        &self,
        make: fn(crossbeam_channel::Sender<()>) -> StorageCommand,
        accept: &'static str,
        operation: &'static str,
        timeout: Duration,
    ) -> Result<(), StorageError> {
        let started = Instant::now();
        let sender = self.sender().ok_or(StorageError::Closed)?;
        let (ack_tx, ack_rx) = bounded(1);
        match sender.send_timeout(make(ack_tx), timeout) {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => {
                return Err(StorageError::Timeout {
                    operation: accept,
                    waited: timeout,
                })
            }
            Err(SendTimeoutError::Disconnected(_)) => return Err(StorageError::Closed),
        }
        // Our clone must not keep the channel open for a concurrent shutdown.
        drop(sender);
        match ack_rx.recv_timeout(timeout.saturating_sub(started.elapsed())) {
            Ok(()) => Ok(()),
            Err(RecvTimeoutError::Timeout) => Err(StorageError::Timeout {
                operation,
                waited: timeout,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(StorageError::FlushFailed),
        }
    }

    /// Commands queued and not yet taken by the writer (0 after shutdown).
    pub fn backlog(&self) -> usize {
        self.shared
            .commands
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, Sender::len)
    }

    /// Stops accepting commands, lets the writer write everything already queued, commit
    /// and close the database, and joins its thread. Idempotent; after a timeout it can be
    /// called again to keep waiting.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), StorageError> {
        drop(
            self.shared
                .commands
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        drop(
            self.shared
                .stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        match self.shared.exited.recv_timeout(timeout) {
            Err(RecvTimeoutError::Timeout) => {
                return Err(StorageError::Timeout {
                    operation: "shut down",
                    waited: timeout,
                })
            }
            // Nothing is ever sent, so this is the disconnect of an exiting writer.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
        }
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match thread.map(JoinHandle::join) {
            Some(Err(_)) => Err(StorageError::WriterPanicked),
            Some(Ok(())) | None => Ok(()),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// A clone of the command sender, unless shut down.
    fn sender(&self) -> Option<Sender<StorageCommand>> {
        self.shared
            .commands
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Queues any command without blocking (the panic test sends each kind).
    #[cfg(test)]
    pub(crate) fn send_command(&self, command: StorageCommand) -> bool {
        self.try_send(command)
    }

    /// Queues a command without blocking.
    fn try_send(&self, command: StorageCommand) -> bool {
        // No lock poisoning is possible (nothing panics while holding it), but recovering
        // costs nothing.
        let guard = self
            .shared
            .commands
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(sender) => match sender.try_send(command) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::storage::tests::{
        batch, gated_hook, recording_hook, sample_alert, temp_db, test_config, zero_hook,
    };
    use crate::storage::StorageReader;
    use crate::types::{DaemonId, LifecycleKind, Source};

    const WAIT: Duration = Duration::from_secs(30);

    fn spawn(path: &Path) -> (StorageHandle, Arc<StorageStats>) {
        let stats = Arc::new(StorageStats::default());
        let handle =
            StorageHandle::spawn(test_config(path), Arc::clone(&stats), zero_hook()).unwrap();
        (handle, stats)
    }

    fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The handle can be shared across threads and cloned.
    #[test]
    fn handle_is_clone_send_sync() {
        fn assert_traits<T: Clone + Send + Sync + 'static>() {}
        assert_traits::<StorageHandle>();
    }

    /// N samples stored then shut down are all readable, and a range query returns them in
    /// time order with an inclusive start and exclusive end.
    #[test]
    fn stored_samples_survive_shutdown_in_order() {
        let (_dir, path) = temp_db();
        let (handle, stats) = spawn(&path);
        // Batches arrive newest first, so order must come from the query.
        for start in (0..20).rev() {
            assert!(handle.store(batch("cpu", start * 50, 50)));
        }
        handle.shutdown(WAIT).unwrap();
        assert_eq!(load(&stats.stored_samples), 1000);
        assert_eq!(load(&stats.dropped_samples), 0);

        let reader = StorageReader::open(&path).unwrap();
        assert_eq!(reader.sample_count().unwrap(), 1000);
        let series = reader.series().unwrap();
        assert_eq!(series.len(), 1);
        let (key, kind) = &series[0];
        assert_eq!(key.source, Source::Host);
        assert_eq!(*kind, crate::types::MetricKind::Gauge);
        let all = reader.query_range(key, 0, 1000).unwrap();
        assert_eq!(all.len(), 1000);
        for (i, (ts, value)) in all.iter().enumerate() {
            assert_eq!((*ts, *value), (i as i64, i as f64));
        }
        let window = reader.query_range(key, 100, 200).unwrap();
        assert_eq!(window.first().map(|s| s.0), Some(100));
        assert_eq!(window.last().map(|s| s.0), Some(199));
    }

    /// An injected panic between two stores loses only the panic command; the writer restarts
    /// once and reports the panic message to the failure hook.
    #[test]
    fn injected_panic_loses_only_itself() {
        let (_dir, path) = temp_db();
        let stats = Arc::new(StorageStats::default());
        let (hook, failures) = recording_hook();
        let handle = StorageHandle::spawn(test_config(&path), Arc::clone(&stats), hook).unwrap();
        assert!(handle.store(batch("a", 0, 10)));
        handle.inject_panic();
        assert!(handle.store(batch("a", 10, 10)));
        handle.flush(WAIT).unwrap();
        handle.shutdown(WAIT).unwrap();

        assert_eq!(load(&stats.restarts), 1);
        assert_eq!(load(&stats.lost_on_panic), 1);
        assert_eq!(load(&stats.stored_samples), 20);
        assert_eq!(load(&stats.dropped_samples), 0);
        let failures = failures.lock().unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].reason, "injected panic in storage writer");
        assert_eq!(
            (failures[0].lost_commands, failures[0].lost_samples),
            (1, 0)
        );
        assert_eq!(
            StorageReader::open(&path).unwrap().sample_count().unwrap(),
            20
        );
    }

    /// Work queued while the writer waits out its restart backoff is written after it.
    #[test]
    fn queue_survives_restart() {
        let (_dir, path) = temp_db();
        let stats = Arc::new(StorageStats::default());
        let (hook, entered, gate) = gated_hook();
        let handle = StorageHandle::spawn(test_config(&path), Arc::clone(&stats), hook).unwrap();
        handle.inject_panic();
        entered.recv_timeout(WAIT).unwrap();
        for i in 0..10 {
            assert!(handle.store(batch("a", i * 3, 3)));
        }
        assert_eq!(handle.backlog(), 10);
        drop(gate);
        handle.flush(WAIT).unwrap();
        assert_eq!(load(&stats.restarts), 1);
        assert_eq!(load(&stats.stored_samples), 30);
        handle.shutdown(WAIT).unwrap();
    }

    /// On a full queue, store() returns false at once and counts the batch's samples as
    /// dropped; what was accepted is still written.
    #[test]
    fn full_queue_drops_without_blocking() {
        let (_dir, path) = temp_db();
        let stats = Arc::new(StorageStats::default());
        // The writer sits in the failure hook until the gate is dropped, so the queue
        // (capacity 1) fills after one command.
        let (hook, entered, gate) = gated_hook();
        let handle = StorageHandle::spawn(
            test_config(&path).queue_capacity(1),
            Arc::clone(&stats),
            hook,
        )
        .unwrap();
        handle.inject_panic();
        entered.recv_timeout(WAIT).unwrap();

        assert!(handle.store(batch("a", 0, 5)));
        let started = Instant::now();
        assert!(!handle.store(batch("a", 5, 7)));
        assert!(!handle.record_event(event("d", 1, LifecycleKind::Started)));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "store() blocked"
        );
        assert_eq!(load(&stats.dropped_samples), 7);
        assert_eq!(handle.backlog(), 1);

        drop(gate);
        handle.flush(WAIT).unwrap();
        handle.shutdown(WAIT).unwrap();
        assert_eq!(load(&stats.stored_samples), 5);
        assert_eq!(
            StorageReader::open(&path).unwrap().sample_count().unwrap(),
            5
        );
    }

    /// Shutdown is idempotent; afterwards stores are refused and counted, and flush says Closed.
    #[test]
    fn shutdown_is_idempotent_and_final() {
        let (_dir, path) = temp_db();
        let (handle, stats) = spawn(&path);
        let other = handle.clone();
        assert!(handle.store(batch("a", 0, 3)));
        handle.shutdown(WAIT).unwrap();
        other.shutdown(WAIT).unwrap();
        assert!(!other.store(batch("a", 3, 4)));
        assert!(!other.record_alert(sample_alert(1)));
        assert_eq!(load(&stats.dropped_samples), 4);
        assert!(matches!(other.flush(WAIT), Err(StorageError::Closed)));
        assert_eq!(other.backlog(), 0);
        assert_eq!(other.path(), path.as_path());
        assert_eq!(
            StorageReader::open(&path).unwrap().sample_count().unwrap(),
            3
        );
    }

    /// Events and alerts round-trip: events filtered by daemon and time, alerts equal to
    /// what was recorded (same JSON).
    #[test]
    fn events_and_alerts_round_trip() {
        let (_dir, path) = temp_db();
        let (handle, stats) = spawn(&path);
        let events = [
            event("d1", 100, LifecycleKind::Started),
            event("d2", 150, LifecycleKind::Started),
            event("d1", 200, LifecycleKind::Exited),
            event("d1", 300, LifecycleKind::Restarted),
        ];
        for e in &events {
            assert!(handle.record_event(e.clone()));
        }
        let alerts = [sample_alert(1000), sample_alert(2000)];
        for a in &alerts {
            assert!(handle.record_alert(a.clone()));
        }
        handle.shutdown(WAIT).unwrap();
        assert_eq!(load(&stats.stored_events), 4);
        assert_eq!(load(&stats.stored_alerts), 2);

        let reader = StorageReader::open(&path).unwrap();
        assert_eq!(reader.events(None, 0, 1000).unwrap(), events.to_vec());
        let d1 = DaemonId::new("d1");
        assert_eq!(
            reader.events(Some(&d1), 100, 300).unwrap(),
            vec![events[0].clone(), events[2].clone()]
        );
        let read = reader.alerts(0, 10_000).unwrap();
        assert_eq!(read, alerts.to_vec());
        assert_eq!(
            serde_json::to_string(&read[1]).unwrap(),
            serde_json::to_string(&alerts[1]).unwrap()
        );
        assert_eq!(reader.alerts(1000, 2000).unwrap(), vec![alerts[0].clone()]);
    }

    /// A file of random bytes is refused as not perfvisor's and left byte-identical, with no
    /// WAL or shared-memory file created beside it.
    #[test]
    fn random_bytes_file_is_refused_untouched() {
        let (dir, path) = temp_db();
        for len in [5usize, 4096, 65_536] {
            let mut bytes = Vec::with_capacity(len);
            let mut x: u32 = 0x9e37_79b9 ^ len as u32;
            for _ in 0..len {
                // xorshift: deterministic noise that is certainly not a SQLite header.
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                bytes.push(x as u8);
            }
            std::fs::write(&path, &bytes).unwrap();
            let err = StorageHandle::spawn(
                test_config(&path),
                Arc::new(StorageStats::default()),
                zero_hook(),
            )
            .unwrap_err();
            assert!(matches!(err, StorageError::NotPerfvisor { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()));
            let err = StorageReader::open(&path).unwrap_err();
            assert!(matches!(err, StorageError::NotPerfvisor { .. }), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "len {len}");
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names.len(), 1, "{names:?}");
        }
    }

    /// A database from a newer perfvisor (higher user_version) is refused with both versions
    /// named, by writer and reader alike, and is not modified.
    #[test]
    fn newer_schema_is_refused() {
        let (_dir, path) = temp_db();
        let (handle, _) = spawn(&path);
        handle.shutdown(WAIT).unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = StorageHandle::spawn(
            test_config(&path),
            Arc::new(StorageStats::default()),
            zero_hook(),
        )
        .unwrap_err();
        match &err {
            StorageError::TooNew {
                found, supported, ..
            } => assert_eq!(
                (*found, *supported),
                (99, crate::storage::schema::SCHEMA_VERSION)
            ),
            other => panic!("expected TooNew, got {other}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("99")
                && message.contains(&format!("up to {}", crate::storage::schema::SCHEMA_VERSION)),
            "{message}"
        );
        assert!(matches!(
            StorageReader::open(&path),
            Err(StorageError::TooNew { found: 99, .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    /// Reads proceed while the writer commits (WAL): a reader holding an open read
    /// transaction neither blocks the writer's commits nor sees them until it ends.
    #[test]
    fn reading_while_writing() {
        let (_dir, path) = temp_db();
        let (handle, stats) = spawn(&path);
        assert!(handle.store(batch("a", 0, 100)));
        handle.flush(WAIT).unwrap();

        let reader = StorageReader::open(&path).unwrap();
        let snapshot = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        snapshot.execute_batch("BEGIN").unwrap();
        let count_in_snapshot = || -> i64 {
            snapshot
                .query_row("SELECT (SELECT coalesce(sum(count), 0) FROM head) + (SELECT coalesce(sum(count), 0) FROM head_log)", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count_in_snapshot(), 100);

        for round in 1..=20 {
            assert!(handle.store(batch("a", round * 100, 100)));
            // Would time out (or fail with SQLITE_BUSY) if the open read blocked the commit.
            handle.flush(WAIT).unwrap();
            assert_eq!(reader.sample_count().unwrap(), (round as u64 + 1) * 100);
            assert_eq!(count_in_snapshot(), 100);
        }
        snapshot.execute_batch("COMMIT").unwrap();
        assert_eq!(count_in_snapshot(), 2100);
        assert_eq!(load(&stats.write_errors), 0);
        handle.shutdown(WAIT).unwrap();
    }

    /// Reopening an existing database appends to it and reuses its series rows.
    #[test]
    fn reopen_appends() {
        let (_dir, path) = temp_db();
        for round in 0..3 {
            let (handle, _) = spawn(&path);
            assert!(handle.store(batch("a", round * 10, 10)));
            handle.shutdown(WAIT).unwrap();
        }
        let reader = StorageReader::open(&path).unwrap();
        assert_eq!(reader.sample_count().unwrap(), 30);
        assert_eq!(reader.series().unwrap().len(), 1);
    }

    /// A zero queue capacity is refused before anything is created.
    #[test]
    fn invalid_config_is_refused() {
        let (_dir, path) = temp_db();
        let err = StorageHandle::spawn(
            test_config(&path).queue_capacity(0),
            Arc::new(StorageStats::default()),
            zero_hook(),
        )
        .unwrap_err();
        assert!(matches!(err, StorageError::InvalidConfig { .. }), "{err}");
        assert!(!path.exists());
    }

    fn event(daemon: &str, ts_ms: i64, kind: LifecycleKind) -> LifecycleEvent {
        LifecycleEvent {
            daemon: DaemonId::new(daemon),
            pid: 4242,
            ts_ms,
            kind,
            detail: format!("{} at {ts_ms}", kind.as_str()),
            intended: false,
        }
    }
}
