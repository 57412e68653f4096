//! The live counters of perfvisor's own health, shared by `Arc` between the actors that
//! update them and the supervisor that reports them in `status()`.
//!
//! Every failure that is logged is also counted here, so that `status()` and the Prometheus
//! endpoint show what the logs say. Nothing here knows of alerting: watchers and the
//! recorder count without depending on the alert pipeline.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The kinds of actor in the supervision tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// The root: owns the tree and the watcher registry.
    Supervisor,
    /// Host metrics, app-metric intake, fan-out.
    Collector,
    /// One per daemon.
    Watcher,
    /// Statistics and reports.
    Analyzer,
    /// The SQLite writer thread.
    StorageWriter,
    /// Rule evaluation and delivery.
    AlertDispatcher,
}

impl ActorKind {
    /// All kinds, in start order.
    pub const ALL: [ActorKind; 6] = [
        ActorKind::Supervisor,
        ActorKind::StorageWriter,
        ActorKind::AlertDispatcher,
        ActorKind::Analyzer,
        ActorKind::Collector,
        ActorKind::Watcher,
    ];

    /// A short lowercase name (`storage_writer`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Supervisor => "supervisor",
            ActorKind::Collector => "collector",
            ActorKind::Watcher => "watcher",
            ActorKind::Analyzer => "analyzer",
            ActorKind::StorageWriter => "storage_writer",
            ActorKind::AlertDispatcher => "alert_dispatcher",
        }
    }
}

impl std::fmt::Display for ActorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of one actor (or one watcher).
#[derive(Debug, Default)]
pub struct ActorStats {
    /// Times the actor was restarted after a failure.
    pub restarts: AtomicU64,
    /// Failures (caught panics, unrecoverable errors).
    pub failures: AtomicU64,
    /// Messages lost to failures: only the message being handled when the actor failed.
    pub lost_messages: AtomicU64,
    /// Messages sent to the actor and not handled yet (its mailbox backlog).
    pub queued: AtomicI64,
    /// Messages handled.
    pub handled: AtomicU64,
    /// The reason of the latest failure.
    pub last_failure: Mutex<Option<String>>,
}

impl ActorStats {
    /// Call before sending the actor a message that its handler will count with [`Self::dequeued`].
    pub fn enqueued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }
    /// Call at the top of a handler of a message counted by [`Self::enqueued`].
    pub fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
    /// Records a failure and its reason.
    pub fn failed(&self, reason: &str, lost: u64) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.lost_messages.fetch_add(lost, Ordering::Relaxed);
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(reason.to_string());
        }
    }
    /// A serializable snapshot.
    pub fn snapshot(&self, name: String, kind: ActorKind) -> ActorStatus {
        ActorStatus {
            name,
            kind,
            restarts: self.restarts.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            lost_messages: self.lost_messages.load(Ordering::Relaxed),
            backlog: self.queued.load(Ordering::Relaxed).max(0) as u64,
            handled: self.handled.load(Ordering::Relaxed),
            last_failure: self.last_failure.lock().ok().and_then(|l| l.clone()),
        }
    }
}

/// Counters of the hot-path recorder.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Samples dropped because the channel was full (the caller was not blocked).
    pub dropped: AtomicU64,
    /// Samples taken out of the channel (by the intake thread or a drain). Accepted samples
    /// are `drained` plus the channel's backlog.
    pub drained: AtomicU64,
}

/// Engine-wide counters that belong to no single actor.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// True once a child exceeded its restart budget; cleared only by a restart of perfvisor.
    pub degraded: AtomicBool,
    /// Samples the collector fanned out to analyzer and storage.
    pub samples_collected: AtomicU64,
    /// Alert notifications produced (firing and resolved).
    pub alerts_sent: AtomicU64,
    /// Deliveries to subscribers that failed (dead recipient, full closure queue).
    pub alert_delivery_failures: AtomicU64,
    /// Probe errors other than "daemon gone".
    pub probe_errors: AtomicU64,
    /// Messages of perfvisor's own alerts firing now (written by the alert dispatcher);
    /// perfvisor is degraded while there is one.
    pub own_alerts: std::sync::Mutex<Vec<String>>,
}

/// One actor in `status()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorStatus {
    /// Its name (`collector`, or `watcher:ID`).
    pub name: String,
    /// Its kind.
    pub kind: ActorKind,
    /// Restarts after failures.
    pub restarts: u64,
    /// Failures seen.
    pub failures: u64,
    /// Messages lost to failures.
    pub lost_messages: u64,
    /// Messages waiting in its mailbox.
    pub backlog: u64,
    /// Messages handled.
    pub handled: u64,
    /// The latest failure's reason.
    pub last_failure: Option<String>,
}
