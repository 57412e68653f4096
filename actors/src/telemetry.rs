//! perfvisor's own health: per-actor counters shared between the actors and `status()`.
//!
//! Every failure that is logged is also counted here, so that `status()` (and later the
//! Prometheus endpoint) shows what the logs say.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::types::{DaemonId, TimestampMs};

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

/// Overall health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Every actor within its restart budget.
    Healthy,
    /// A child exceeded `max_restarts` within `period`, or one of perfvisor's own alerts
    /// fires (storage failing...); `Status::health_reasons` says which.
    Degraded,
}

/// One watcher in `status()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherStatus {
    /// The daemon it watches.
    pub daemon: DaemonId,
    /// The pid it watches.
    pub pid: u32,
    /// Restarts of this watcher.
    pub restarts: u64,
    /// Probes done.
    pub probes: u64,
    /// Where the daemon's CPU, memory and process-count figures come from; `None` before the
    /// watcher's first probe.
    #[serde(default)]
    pub sources: Option<crate::watcher::view::FigureSources>,
}

/// The recorder's counters in `status()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecorderStatus {
    /// Accepted samples.
    pub accepted: u64,
    /// Dropped samples (channel full).
    pub dropped: u64,
    /// Samples waiting in the channel.
    pub backlog: u64,
}

/// The storage writer's counters in `status()`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStatus {
    /// Commands waiting for the writer thread.
    pub backlog: u64,
    /// Samples committed.
    pub stored_samples: u64,
    /// Samples dropped (queue full or write failed).
    pub dropped_samples: u64,
    /// Failed writes.
    pub write_errors: u64,
    /// Lifecycle events dropped (queue or buffer full).
    pub dropped_events: u64,
    /// Alerts dropped (queue or buffer full, unencodable).
    pub dropped_alerts: u64,
    /// Samples accepted and held in memory, not yet committed.
    pub buffered_samples: u64,
    /// Why writes fail, while they do (the writer is buffering and retrying).
    pub write_blocked: Option<String>,
    /// Closed (series, hour) windows waiting for compaction.
    pub compaction_backlog: u64,
    /// Samples compacted into chunks since start.
    pub compacted_samples: u64,
    /// Rows deleted by retention or the size cap since start.
    pub retention_deleted: u64,
}

/// What `status()` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Healthy or degraded.
    pub health: Health,
    /// Why it is degraded (one line per cause); empty when healthy.
    #[serde(default)]
    pub health_reasons: Vec<String>,
    /// When perfvisor started.
    pub started_at_ms: TimestampMs,
    /// The singleton actors, in start order.
    pub actors: Vec<ActorStatus>,
    /// One entry per live watcher.
    pub watchers: Vec<WatcherStatus>,
    /// The hot-path recorder.
    pub recorder: RecorderStatus,
    /// The SQLite writer.
    pub storage: StorageStatus,
    /// Samples fanned out by the collector.
    pub samples_collected: u64,
    /// Alert notifications sent.
    pub alerts_sent: u64,
    /// Failed deliveries to subscribers.
    pub alert_delivery_failures: u64,
    /// Each alert sink: deliveries, failures, retries, drops, queue, last error.
    pub alert_sinks: Vec<crate::alerts::SinkStatus>,
    /// Each `[[remote_write]]` endpoint: cursor, lag, backlog, sent, retries, drops. Filled
    /// by the embedding handle (the shippers live outside the actor tree).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<RemoteWriteStatus>,
}

/// One remote-write endpoint in `status()`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteWriteStatus {
    /// Its `name`.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Timestamp of the next sample to ship (everything before it has been shipped or
    /// given up on).
    pub cursor_ms: TimestampMs,
    /// Seconds between now and the cursor, 0 when caught up.
    pub lag_seconds: f64,
    /// Samples stored after the cursor, about (counted by stored row).
    pub pending_samples: u64,
    /// Samples the remote accepted.
    pub sent_samples: u64,
    /// Bytes sent (compressed bodies).
    pub sent_bytes: u64,
    /// Requests sent again (5xx, 429, connection failures).
    pub retries: u64,
    /// Samples given up on: refused (4xx) or past raw retention before they were shipped.
    pub dropped_samples: u64,
    /// Of those, the ones past raw retention.
    pub expired_samples: u64,
    /// The last error, if any, and when.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_ms: Option<TimestampMs>,
}

impl Status {
    /// The status of one actor by name.
    pub fn actor(&self, name: &str) -> Option<&ActorStatus> {
        self.actors.iter().find(|a| a.name == name)
    }
    /// Total restarts over all actors and watchers.
    pub fn total_restarts(&self) -> u64 {
        self.actors.iter().map(|a| a.restarts).sum::<u64>()
            + self.watchers.iter().map(|w| w.restarts).sum::<u64>()
    }
}
