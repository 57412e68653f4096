//! What the storage writer is asked to do ([`StorageCommand`], one declaration that also
//! lists the commands by name), what it reports when it fails ([`StorageFailure`] to the
//! [`FailureHook`]), and its counters ([`StorageStats`]).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::types::{ActionRecord, Alert, LifecycleEvent, MetricBatch, TimestampMs};

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
    /// A moment (the writer's clock, ms since the epoch) before which every sample offered
    /// to the writer is committed or given up; 0 until the first such moment. Readers that
    /// follow the history forward (remote write) read no further, so a sample committed
    /// late, while the disk or the host was slow, is not passed over.
    pub settled_ms: AtomicI64,
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
    /// Head rows of closed hours waiting for compaction at the last step (gauge).
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

    pub(super) fn set_blocked(&self, reason: Option<String>) {
        self.write_blocked
            .store(reason.is_some(), Ordering::Relaxed);
        *self
            .blocked_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason;
    }
}

/// Adds to a counter. Counters are independent statistics, so relaxed ordering suffices.
pub(in crate::storage) fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
