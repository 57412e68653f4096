//! perfvisor's own health as `status()` shows it: actors, watchers, recorder, storage,
//! sinks and remote-write endpoints.
//!
//! The live counters the actors update are in [`crate::counters`] (which knows nothing of
//! alerting, so a watcher can count without importing it); this module turns them into
//! the serializable status.

use serde::{Deserialize, Serialize};

pub use crate::counters::{ActorKind, ActorStats, ActorStatus, EngineStats, RecorderStats};
use crate::types::{DaemonId, TimestampMs};

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
    /// Head rows of closed hours waiting for compaction (a series has one per half-minute
    /// fold of its hour, 120 for an hour sampled throughout).
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
