//! What the storage writer is told when it is spawned: the file, its queue, how long each
//! tier of history is kept, how much may be buffered in memory when the disk refuses writes,
//! and the clock that says how old data is.
//!
//! The config is the writer's immutable spec: a restart rebuilds every piece of writer
//! state from it and from nothing else.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::StorageError;
use crate::types::{Clock, SystemClock};

/// Default capacity of the writer's queue, in commands (a command is usually one batch).
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Default number of commands the writer takes from its queue before it looks at its
/// buffers again.
pub const DEFAULT_MAX_BATCH_COMMANDS: usize = 512;

/// Default most samples held in memory while the disk refuses writes (about 40 MB).
pub const DEFAULT_MAX_BUFFERED_SAMPLES: usize = 1_000_000;

/// One hour in milliseconds: the span of a chunk window and of an hourly rollup bucket.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in milliseconds: the span of a daily rollup bucket.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// How long each kind of history is kept. Data older than `now − retention` is deleted in
/// bounded steps. The defaults are the seed system's: raw 7 days → hourly 30 days → daily
/// 365 days; events and alerts a year.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples (head rows and compressed chunks). At least one hour.
    pub raw: Duration,
    /// Hourly rollups. At least as long as `raw`.
    pub hourly: Duration,
    /// Daily rollups. At least as long as `hourly`.
    pub daily: Duration,
    /// Daemon lifecycle events. At least one hour.
    pub events: Duration,
    /// Alert history and the actions taken. At least one hour.
    pub alerts: Duration,
}

impl Retention {
    /// Every tier, events and alerts kept for `period` (e.g. a century, to keep everything
    /// in a benchmark or an archive).
    pub fn all(period: Duration) -> Self {
        Retention {
            raw: period,
            hourly: period,
            daily: period,
            events: period,
            alerts: period,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            raw: Duration::from_secs(7 * DAY),
            hourly: Duration::from_secs(30 * DAY),
            daily: Duration::from_secs(365 * DAY),
            events: Duration::from_secs(365 * DAY),
            alerts: Duration::from_secs(365 * DAY),
        }
    }
}

impl Retention {
    /// Checks the lower bounds and the raw ≤ hourly ≤ daily order.
    fn validate(&self) -> Result<(), StorageError> {
        let hour = Duration::from_millis(HOUR_MS as u64);
        for (setting, value) in [
            ("retention.raw", self.raw),
            ("retention.events", self.events),
            ("retention.alerts", self.alerts),
        ] {
            if value < hour {
                return Err(StorageError::InvalidDuration {
                    setting,
                    value,
                    accepted: "at least 1h",
                });
            }
        }
        if self.hourly < self.raw {
            return Err(StorageError::InvalidDuration {
                setting: "retention.hourly",
                value: self.hourly,
                accepted: "at least as long as retention.raw",
            });
        }
        if self.daily < self.hourly {
            return Err(StorageError::InvalidDuration {
                setting: "retention.daily",
                value: self.daily,
                accepted: "at least as long as retention.hourly",
            });
        }
        Ok(())
    }

    /// Milliseconds of a retention period, saturated to `i64::MAX`.
    pub(super) fn ms(period: Duration) -> i64 {
        i64::try_from(period.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Settings of the storage writer.
#[derive(Clone)]
pub struct StorageConfig {
    /// The SQLite file. Created (mode 0600 on Unix) when missing.
    pub path: PathBuf,
    /// How many commands may wait for the writer before `store()` starts dropping.
    /// Default [`DEFAULT_QUEUE_CAPACITY`]; must be at least 1.
    pub queue_capacity: usize,
    /// How many commands the writer takes in one go before flushing or maintaining.
    /// Default [`DEFAULT_MAX_BATCH_COMMANDS`]; must be at least 1.
    pub max_batch_commands: usize,
    /// Most samples held in memory while writes fail (disk full, read-only file); beyond
    /// it new samples are dropped and counted. Default [`DEFAULT_MAX_BUFFERED_SAMPLES`];
    /// must be at least 1.
    pub max_buffered_samples: usize,
    /// Longest time an accepted sample stays in memory before it is committed (the most a
    /// crash can lose). Default 1 s; between 10 ms and 60 s.
    pub flush_interval: Duration,
    /// How long after an hour ends its window is compacted; samples arriving later still
    /// count (they are compacted separately and merged into the rollups). Default 2 min.
    pub compaction_grace: Duration,
    /// The time one maintenance step (compaction, rollups, retention) takes before the
    /// writer goes back to ingesting. With a backlog a step may take as long as ingestion
    /// took since the previous one, up to ten times this, so compaction keeps pace.
    /// Default 20 ms; between 1 ms and 1 s.
    pub maintenance_budget: Duration,
    /// How long each tier is kept.
    pub retention: Retention,
    /// Optional cap on the database's used size in bytes; above it the oldest raw chunks,
    /// then the oldest rollups, are deleted. At least 1 MiB.
    pub max_bytes: Option<u64>,
    /// Where "now" comes from for retention and compaction.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("path", &self.path)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_batch_commands", &self.max_batch_commands)
            .field("max_buffered_samples", &self.max_buffered_samples)
            .field("flush_interval", &self.flush_interval)
            .field("compaction_grace", &self.compaction_grace)
            .field("maintenance_budget", &self.maintenance_budget)
            .field("retention", &self.retention)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl StorageConfig {
    /// A config for the file at `path` with every default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StorageConfig {
            path: path.into(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch_commands: DEFAULT_MAX_BATCH_COMMANDS,
            max_buffered_samples: DEFAULT_MAX_BUFFERED_SAMPLES,
            flush_interval: Duration::from_secs(1),
            compaction_grace: Duration::from_secs(120),
            maintenance_budget: Duration::from_millis(20),
            retention: Retention::default(),
            max_bytes: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Sets the queue capacity in commands (default [`DEFAULT_QUEUE_CAPACITY`]).
    pub fn queue_capacity(mut self, commands: usize) -> Self {
        self.queue_capacity = commands;
        self
    }

    /// Sets the most commands taken in one go (default [`DEFAULT_MAX_BATCH_COMMANDS`]).
    pub fn max_batch_commands(mut self, commands: usize) -> Self {
        self.max_batch_commands = commands;
        self
    }

    /// Sets the in-memory bound used while writes fail.
    pub fn max_buffered_samples(mut self, samples: usize) -> Self {
        self.max_buffered_samples = samples;
        self
    }

    /// Sets the longest time a sample waits in memory before it is committed.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Sets how long after an hour ends its window is compacted.
    pub fn compaction_grace(mut self, grace: Duration) -> Self {
        self.compaction_grace = grace;
        self
    }

    /// Sets the time budget of one maintenance step.
    pub fn maintenance_budget(mut self, budget: Duration) -> Self {
        self.maintenance_budget = budget;
        self
    }

    /// Sets the retention of every tier.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Sets (or clears) the cap on the database's used size.
    pub fn max_bytes(mut self, bytes: Option<u64>) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets the clock (a manual clock in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks every setting that has a bound; the error names the setting, the value and
    /// what would be accepted.
    pub(super) fn validate(&self) -> Result<(), StorageError> {
        for (setting, value) in [
            ("queue_capacity", self.queue_capacity),
            ("max_batch_commands", self.max_batch_commands),
            ("max_buffered_samples", self.max_buffered_samples),
        ] {
            if value == 0 {
                return Err(StorageError::InvalidConfig { setting, value });
            }
        }
        let ranges = [
            (
                "flush_interval",
                self.flush_interval,
                Duration::from_millis(10),
                Duration::from_secs(60),
                "between 10ms and 60s",
            ),
            (
                "maintenance_budget",
                self.maintenance_budget,
                Duration::from_millis(1),
                Duration::from_secs(1),
                "between 1ms and 1s",
            ),
            (
                "compaction_grace",
                self.compaction_grace,
                Duration::ZERO,
                Duration::from_secs(86_400),
                "at most 24h",
            ),
        ];
        for (setting, value, min, max, accepted) in ranges {
            if value < min || value > max {
                return Err(StorageError::InvalidDuration {
                    setting,
                    value,
                    accepted,
                });
            }
        }
        if let Some(bytes) = self.max_bytes {
            if bytes < 1 << 20 {
                return Err(StorageError::InvalidSize {
                    setting: "max_bytes",
                    value: bytes,
                    accepted: "at least 1 MiB (1048576)",
                });
            }
        }
        self.retention.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are the documented constants, and the setters override them.
    #[test]
    fn defaults_and_setters() {
        let c = StorageConfig::new("/tmp/x.db");
        assert_eq!(c.queue_capacity, DEFAULT_QUEUE_CAPACITY);
        assert_eq!(c.max_batch_commands, DEFAULT_MAX_BATCH_COMMANDS);
        assert_eq!(c.retention.raw, Duration::from_secs(7 * 86_400));
        assert_eq!(c.retention.hourly, Duration::from_secs(30 * 86_400));
        assert_eq!(c.retention.daily, Duration::from_secs(365 * 86_400));
        assert!(c.validate().is_ok());
        let c = c.queue_capacity(7).max_batch_commands(3);
        assert_eq!((c.queue_capacity, c.max_batch_commands), (7, 3));
        assert!(c.validate().is_ok());
    }

    /// A zero capacity or batch size is refused with a message naming the setting.
    #[test]
    fn zero_settings_are_refused() {
        let err = StorageConfig::new("x.db")
            .queue_capacity(0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("queue_capacity = 0"), "{err}");
        let err = StorageConfig::new("x.db")
            .max_batch_commands(0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("max_batch_commands = 0"), "{err}");
    }

    /// Out-of-range durations, sizes and a tier kept shorter than the finer one are refused,
    /// naming the setting and what is accepted.
    #[test]
    fn bad_durations_and_sizes_are_refused() {
        let err = StorageConfig::new("x.db")
            .flush_interval(Duration::from_secs(120))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("flush_interval") && err.contains("between 10ms and 60s"),
            "{err}"
        );
        let err = StorageConfig::new("x.db")
            .max_bytes(Some(10))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_bytes = 10") && err.contains("1 MiB"),
            "{err}"
        );
        let retention = Retention {
            hourly: Duration::from_secs(3600),
            ..Retention::default()
        };
        let err = StorageConfig::new("x.db")
            .retention(retention)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("retention.hourly") && err.contains("retention.raw"),
            "{err}"
        );
    }
}
