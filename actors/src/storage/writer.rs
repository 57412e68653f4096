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
//!
//! This file is the thread's loop (`WriterThread`: accept, flush, maintain, block and
//! retry, restart). Beside it: `writer/commands.rs` (the commands, the failure report and
//! the counters), `writer/buffers.rs` (what is held between commits) and
//! `writer/state.rs` (the connection, the SQL, one flush as one transaction).

mod buffers;
mod commands;
mod state;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::TransactionBehavior;

use super::maintenance::{self, MaintenanceSettings};
use super::{headlog, StorageConfig};
use crate::panic_guard::guard;
use crate::types::{Clock, TimestampMs};
use buffers::Buffers;
pub(super) use commands::count;
pub use commands::{
    AlertStateChange, FailureHook, StorageCommand, StorageFailure, StorageFault, StorageStats,
};
use state::apply_fault;
pub(super) use state::{window_of, WriterState};

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
    /// What the head log on disk holds; `None` until read after (re)opening the file.
    log: Option<headlog::Extent>,
    /// When the log was last folded; `None` after (re)opening, so a log left by a crash is
    /// folded at the first maintenance step.
    last_fold: Option<Instant>,
    /// The last moment (clock ms) the queue was seen empty: every command sent before it
    /// has been taken into the buffers. Published as `settled_ms` once they are committed.
    queue_empty_at: Option<TimestampMs>,
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
            log: None,
            last_fold: None,
            backlog_published: None,
            queue_empty_at: None,
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
                            self.log = None;
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
        // The moment is read before the queue is looked at: whatever was sent before it is
        // in the buffers once the queue is seen empty.
        let now = self.clock().now_ms_coarse();
        if self.commands.is_empty() {
            self.queue_empty_at = Some(now);
        }
        if self.flush_due() {
            self.try_flush(state)?;
        }
        if self.maintenance_due() {
            self.maintain(state)?;
        }
        self.publish_settled();
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

    /// Publishes `settled_ms` when nothing taken from the queue is left uncommitted.
    fn publish_settled(&self) {
        if let Some(at) = self.queue_empty_at.filter(|_| self.buffers.is_empty()) {
            self.stats.settled_ms.fetch_max(at, Ordering::Relaxed);
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

    /// Whether the head log should be folded into head rows now: when compaction is
    /// forced, when its samples span [`headlog::FOLD_SPAN_MS`] of sample time, when it holds
    /// [`headlog::FOLD_SAMPLES`], or when the last fold is [`headlog::FOLD_MAX_AGE`] ago (a log
    /// left by a crash included).
    fn fold_due(&mut self, state: &mut WriterState, force: bool) -> bool {
        if self.log.is_none() {
            match headlog::extent(&state.conn) {
                Ok(extent) => {
                    if extent.samples == 0 && state.pending.is_none() {
                        // Nothing to read back: the next fold can start from memory.
                        state.pending = Some(headlog::Pending::default());
                    }
                    self.log = Some(extent);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Reading the head log's extent failed.");
                    return false;
                }
            }
        }
        let Some(log) = self.log else {
            return false;
        };
        log.samples > 0
            && (force
                || self
                    .last_fold
                    .is_none_or(|t| t.elapsed() >= headlog::FOLD_MAX_AGE)
                || log.max_ts.saturating_sub(log.min_ts) >= headlog::FOLD_SPAN_MS
                || log.samples >= headlog::FOLD_SAMPLES)
    }

    /// Folds the head log into head rows in one transaction. `Ok(false)` when the disk
    /// refused (the writer is then blocked; the log is intact and folded later).
    fn fold_log(&mut self, state: &mut WriterState) -> Result<bool, Restart> {
        let outcome = guard(|| -> rusqlite::Result<u64> {
            let tx = state
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let from_memory = match &mut state.pending {
                Some(pending) => headlog::fold_pending(&tx, pending)?,
                None => None,
            };
            let moved = match from_memory {
                Some(moved) => moved,
                None => headlog::fold(&tx)?,
            };
            tx.commit()?;
            Ok(moved)
        });
        match outcome {
            Ok(Ok(_)) => {
                // The log is empty now: from here on this connection sees every row written
                // to it, and the next fold needs no reading back. What the fold drained is
                // kept, allocations and all: the next 30 s of samples fill the same buffers
                // instead of growing new ones from empty (34,000 series at 1,000 daemons).
                if state.pending.as_ref().is_none_or(|p| p.samples() != 0) {
                    state.pending = Some(headlog::Pending::default());
                }
                self.log = Some(headlog::Extent::default());
                self.last_fold = Some(Instant::now());
                Ok(true)
            }
            Ok(Err(e)) => {
                state.pending = None;
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
            self.publish_settled();
            ack_all(std::mem::take(&mut self.buffers.acks));
            return Ok(true);
        }
        if let Some(StorageFault::Slow(delay)) = self.fault {
            std::thread::sleep(delay);
        }
        let outcome = guard(|| state.flush(&mut self.buffers));
        match outcome {
            Ok(Ok(flushed)) => {
                if let Some(log) = &mut self.log {
                    log.add(flushed.samples, flushed.min_ts, flushed.max_ts);
                }
                count(&self.stats.commits, 1);
                count(&self.stats.stored_samples, flushed.samples);
                count(&self.stats.stored_events, flushed.events);
                count(&self.stats.stored_alerts, flushed.alerts);
                self.buffers.committed();
                self.publish_buffered();
                // Before the acks: whoever waited for the flush sees the moment moved.
                self.publish_settled();
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
                maintenance::step(
                    &maintenance::UNITS,
                    &state.conn,
                    &settings,
                    now_ms,
                    &stats,
                    budget,
                    publish,
                )
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
