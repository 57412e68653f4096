//! perfvisor watching itself: its own metrics (source `perfvisor`) and the internal alert
//! raised while storage writes fail. Pure functions; the supervisor calls them on a timer.

use std::sync::atomic::Ordering;

use crate::metric_names as names;
use crate::storage::StorageStats;
use crate::telemetry::{RecorderStats, StorageStatus};
use crate::types::{
    Alert, AlertState, Labels, MetricBatch, MetricKind, Sample, SeriesKey, Severity, Source,
    TimestampMs,
};

/// Rule name of the internal alert raised while storage writes fail.
pub const STORAGE_FAILING_RULE: &str = "perfvisor_storage_failing";

/// The storage part of `status()`, from the writer's counters and its queue length.
pub fn storage_status(stats: &StorageStats, queue_backlog: u64) -> StorageStatus {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    StorageStatus {
        backlog: queue_backlog,
        stored_samples: load(&stats.stored_samples),
        dropped_samples: load(&stats.dropped_samples),
        write_errors: load(&stats.write_errors),
        dropped_events: load(&stats.dropped_events),
        dropped_alerts: load(&stats.dropped_alerts),
        buffered_samples: load(&stats.buffered_samples),
        write_blocked: stats.blocked_reason(),
        compaction_backlog: load(&stats.compaction_backlog),
        compacted_samples: load(&stats.compacted_samples),
        retention_deleted: load(&stats.retention_deleted),
    }
}

/// perfvisor's descriptors: open ones, the soft limit, and their ratio (what the
/// `perfvisor_descriptors_high` rule follows). `None` where /proc or getrlimit cannot tell.
pub fn own_descriptors() -> Option<(u64, u64)> {
    let open = open_descriptors()?;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur == 0 {
        return None;
    }
    Some((open, lim.rlim_cur))
}

/// How many descriptors this process has open. Linux 6.2 and later give the count as the
/// size of `/proc/self/fd`: one `stat`, where listing the directory cost 1.7 ms a call with
/// 3,000 descriptors open (100 watched process trees) and was a fifth of perfvisor's CPU.
/// Older kernels give 0 there; the listing (less its own descriptor) is the fallback.
fn open_descriptors() -> Option<u64> {
    match std::fs::metadata("/proc/self/fd").map(|m| m.len()) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            let listed = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
            Some(listed.saturating_sub(1))
        }
    }
}

/// The descriptor samples at `now` from ([`own_descriptors`]) `(open, limit)`.
pub fn descriptor_samples(now: TimestampMs, open: u64, limit: u64) -> Vec<Sample> {
    let sample = |metric: &'static str, value: f64| Sample {
        series: SeriesKey::new(Source::Perfvisor, metric, Labels::empty()),
        kind: MetricKind::Gauge,
        ts_ms: now,
        value,
    };
    vec![
        sample(names::PERFVISOR_OPEN_FDS, open as f64),
        sample(names::PERFVISOR_MAX_FDS, limit as f64),
        sample(names::PERFVISOR_FD_USAGE, open as f64 / limit.max(1) as f64),
    ]
}

/// perfvisor's own metrics at `now`: storage progress and backlog, recorder drops, actor
/// restarts. Its descriptors are added by the caller ([`descriptor_samples`]).
pub fn self_metrics(
    now: TimestampMs,
    storage: &StorageStatus,
    stats: &StorageStats,
    recorder: &RecorderStats,
    restarts: u64,
) -> MetricBatch {
    let sample = |metric: &'static str, kind: MetricKind, value: f64| Sample {
        series: SeriesKey::new(Source::Perfvisor, metric, Labels::empty()),
        kind,
        ts_ms: now,
        value,
    };
    let maintenance_seconds = stats.maintenance_micros.load(Ordering::Relaxed) as f64 / 1e6;
    MetricBatch {
        samples: vec![
            sample(
                names::PERFVISOR_STORAGE_QUEUE,
                MetricKind::Gauge,
                storage.backlog as f64,
            ),
            sample(
                names::PERFVISOR_STORAGE_BUFFERED,
                MetricKind::Gauge,
                storage.buffered_samples as f64,
            ),
            sample(
                names::PERFVISOR_STORAGE_STORED,
                MetricKind::Counter,
                storage.stored_samples as f64,
            ),
            sample(
                names::PERFVISOR_STORAGE_DROPPED,
                MetricKind::Counter,
                storage.dropped_samples as f64,
            ),
            sample(
                names::PERFVISOR_STORAGE_WRITE_ERRORS,
                MetricKind::Counter,
                storage.write_errors as f64,
            ),
            sample(
                names::PERFVISOR_STORAGE_COMPACTION_BACKLOG,
                MetricKind::Gauge,
                storage.compaction_backlog as f64,
            ),
            sample(
                names::PERFVISOR_STORAGE_COMPACTED,
                MetricKind::Counter,
                storage.compacted_samples as f64,
            ),
            sample(
                names::PERFVISOR_STORAGE_RETENTION_DELETED,
                MetricKind::Counter,
                storage.retention_deleted as f64,
            ),
            sample(
                names::PERFVISOR_STORAGE_MAINTENANCE_TIME,
                MetricKind::Counter,
                maintenance_seconds,
            ),
            sample(
                names::PERFVISOR_STORAGE_BLOCKED,
                MetricKind::Gauge,
                f64::from(u8::from(storage.write_blocked.is_some())),
            ),
            sample(
                names::PERFVISOR_RECORDER_DROPPED,
                MetricKind::Counter,
                recorder.dropped.load(Ordering::Relaxed) as f64,
            ),
            sample(
                names::PERFVISOR_ACTOR_RESTARTS,
                MetricKind::Counter,
                restarts as f64,
            ),
        ],
    }
}

/// The internal alert about failing storage writes: firing with the reason, or resolved.
pub fn storage_alert(
    now: TimestampMs,
    since: TimestampMs,
    reason: Option<&str>,
    storage: &StorageStatus,
) -> Alert {
    let firing = reason.is_some();
    Alert {
        rule: STORAGE_FAILING_RULE.into(),
        series: SeriesKey::new(
            Source::Perfvisor,
            names::PERFVISOR_STORAGE_BLOCKED,
            Labels::empty(),
        ),
        daemon: None,
        project: None,
        severity: Severity::Critical,
        state: if firing {
            AlertState::Firing
        } else {
            AlertState::Resolved
        },
        value: storage.buffered_samples as f64,
        threshold: 0.0,
        since_ms: since,
        at_ms: now,
        message: match reason {
            Some(reason) => format!(
                "perfvisor cannot write its history as fast as it arrives ({reason}); {} \
                 samples are buffered in memory, {} dropped so far",
                storage.buffered_samples, storage.dropped_samples
            ),
            None => "perfvisor writes its history again; the buffered samples are stored".into(),
        },
        recommendations: if firing {
            vec![
                "Free disk space on the database's file system, or make the file writable again; perfvisor retries by itself.".into(),
                "Lower retention or set a size cap (max_bytes) so history fits the disk.".into(),
            ]
        } else {
            Vec::new()
        },
        auto_actionable: false,
    }
}

#[cfg(test)]
mod tests {

    /// The stat-based count equals the listing (less the listing's own descriptor) and
    /// follows descriptors opened.
    #[test]
    fn open_descriptors_match_the_listing() {
        let listed = || std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1;
        // Other test threads open and close files: compare at a quiet moment.
        assert!((0..100).any(|_| super::open_descriptors() == Some(listed())));
        let before = super::open_descriptors().unwrap();
        let files: Vec<std::fs::File> = (0..20)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let with = super::open_descriptors().unwrap();
        drop(files);
        // Slack for files other test threads close meanwhile.
        assert!(with >= before + 15, "{before} then {with}");
    }
    use super::*;

    /// The status copies the counters and the reason, and the alert follows the reason.
    #[test]
    fn status_and_alert_follow_the_block() {
        let stats = StorageStats::default();
        stats.buffered_samples.store(42, Ordering::Relaxed);
        stats.dropped_samples.store(3, Ordering::Relaxed);
        *stats.blocked_reason.lock().unwrap() = Some("disk full".into());
        let status = storage_status(&stats, 7);
        assert_eq!(status.backlog, 7);
        assert_eq!(status.buffered_samples, 42);
        assert_eq!(status.write_blocked.as_deref(), Some("disk full"));
        let alert = storage_alert(10, 5, status.write_blocked.as_deref(), &status);
        assert_eq!(alert.state, AlertState::Firing);
        assert!(alert.message.contains("disk full") && alert.message.contains("42"));
        let resolved = storage_alert(20, 5, None, &status);
        assert_eq!(resolved.state, AlertState::Resolved);
        let batch = self_metrics(10, &status, &stats, &RecorderStats::default(), 0);
        let blocked = batch
            .samples
            .iter()
            .find(|s| s.series.metric.as_str() == names::PERFVISOR_STORAGE_BLOCKED)
            .unwrap();
        assert_eq!(blocked.value, 1.0);
    }
}
