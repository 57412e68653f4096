//! The storage alarm's hysteresis: when perfvisor's own `perfvisor_storage_failing` candidate
//! is raised and resolved. Pure (takes `now` and the storage status), so its timing is
//! tested without actors or sleeps.
//!
//! Trouble is a write failure, or samples dropped because the queue or the buffer was full
//! (a disk slower than the ingest). The candidate resolves only after a quiet period
//! without drops, so intermittent drops do not make it flap.

use crate::telemetry::StorageStatus;
use crate::types::{Alert, TimestampMs};

/// The storage candidate resolves after this long without drops.
pub(super) const STORAGE_ALERT_QUIET_MS: i64 = 30_000;

/// What the alarm remembers between two checks.
#[derive(Debug, Default)]
pub(super) struct StorageAlarm {
    /// Since when storage writes fail or drop samples, while the candidate is firing.
    since: Option<TimestampMs>,
    /// Whether the candidate was sent once since start: a firing alert restored from the
    /// database is resolved by the first check that finds storage fine.
    synced: bool,
    /// Storage drops already seen.
    dropped_seen: u64,
    /// When samples were last seen dropped.
    dropped_at: Option<TimestampMs>,
}

impl StorageAlarm {
    /// Checks the storage status at `now`: the candidate to send (firing or resolved), if
    /// the alarm changed (or was never sent).
    pub(super) fn check(&mut self, now: TimestampMs, storage: &StorageStatus) -> Option<Alert> {
        let newly_dropped = storage.dropped_samples.saturating_sub(self.dropped_seen);
        self.dropped_seen = storage.dropped_samples;
        let trouble = storage.write_blocked.clone().or_else(|| {
            (newly_dropped > 0).then(|| {
                format!(
                    "{newly_dropped} samples dropped since the last check: the write queue is \
                     full, the disk is slower than the samples arrive"
                )
            })
        });
        if newly_dropped > 0 {
            self.dropped_at = Some(now);
        }
        let quiet = self
            .dropped_at
            .is_none_or(|at| now.saturating_sub(at) >= STORAGE_ALERT_QUIET_MS);
        let alert = match (&trouble, self.since) {
            (Some(reason), None) => {
                self.since = Some(now);
                Some(crate::selfmon::storage_alert(
                    now,
                    now,
                    Some(reason),
                    storage,
                ))
            }
            (None, Some(since)) if quiet => {
                self.since = None;
                Some(crate::selfmon::storage_alert(now, since, None, storage))
            }
            (None, None) if !self.synced => {
                Some(crate::selfmon::storage_alert(now, now, None, storage))
            }
            _ => None,
        };
        self.synced = true;
        alert.map(|mut alert| {
            // A candidate for the `perfvisor_storage_failing` rule, not an alert by itself.
            alert.rule = crate::alerts::STORAGE_FAILING_SIGNAL.into();
            alert
        })
    }
}
