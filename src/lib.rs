#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod builder;
#[cfg(feature = "config")]
pub mod config;
mod facades;
mod handle;
#[cfg(feature = "http")]
pub mod http;
pub mod loadgen;
mod lock;
pub mod manager;
#[cfg(feature = "remote-write")]
pub mod remote_write;
pub mod units;

pub use builder::{
    PerfvisorBuilder, DEFAULT_ANALYSIS_SPAN, DEFAULT_ANALYSIS_WINDOW, DEFAULT_DATABASE,
    DEFAULT_HISTOGRAM_INTERVAL, DEFAULT_HOST_INTERVAL, DEFAULT_JUDGE_INTERVAL,
    DEFAULT_PROBE_INTERVAL, DEFAULT_RECORDER_CAPACITY, DEFAULT_STORAGE_QUEUE,
};
#[cfg(feature = "metrics")]
pub use facades::MetricsRecorder;
#[cfg(feature = "tracing")]
pub use facades::SpanLayer;
pub use handle::Perfvisor;
pub use lock::{lock_path, DatabaseLock};

pub use perfvisor_actors::alerts::{
    builtin_rules, default_rules, ActionLimits, AlertStream, AlertingChange, AsyncDaemonControl,
    BoxFuture, Comparison, Condition, DaemonControl, FlapDamping, Matcher, RuleAction, RuleError,
    RuleInfo, RuleOrigin, RulesChange, Selector, Silence, SilenceError, SinkConfig, SinkSettings,
    SinkStatus, SourceKind, ThresholdRule, APP_ANOMALY_ENABLED,
};
pub use perfvisor_actors::analyzer::anomaly::AnomalyKind;
pub use perfvisor_actors::analyzer::trend::{Direction, TimeToThreshold};
pub use perfvisor_actors::analyzer::{
    AnomalyEvent, AutoAction, Bottleneck, BottleneckKind, Category, DaemonReport, Deduction,
    Evidence, HistogramReport, HostJudgement, HostReport, JudgeConfig, Level, Prediction,
    RecentStats, Recommendation, Score, SeriesReport, Trend, TrendClass, WindowStats,
};
pub use perfvisor_actors::messages::PanicTarget;
pub use perfvisor_actors::metric_names;
pub use perfvisor_actors::recorder::{ProfileGuard, Recorder};
pub use perfvisor_actors::selfmon::STORAGE_FAILING_RULE;
pub use perfvisor_actors::storage::{
    Aggregation, Bucket, Query, Retention, SeriesResult, SeriesSelector, StorageError,
    StorageFault, StorageReader, StorageSummary, Tier,
};
pub use perfvisor_actors::supervisor::{EngineError, RestartKind, RestartPolicy};
pub use perfvisor_actors::telemetry::{
    ActorKind, ActorStatus, Health, RecorderStatus, RemoteWriteStatus, Status, StorageStatus,
    WatcherStatus,
};
pub use perfvisor_actors::types::{
    ActionRecord, Alert, AlertState, Clock, DaemonId, DaemonSpec, Labels, LifecycleEvent,
    LifecycleKind, ManualClock, MetricKind, MetricName, Sample, SeriesKey, Severity, Source,
    SystemClock, TimestampMs,
};

/// Everything that can go wrong through the embedding API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine could not start (bad setting, unusable database).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Reading history failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// perfvisor has been shut down (or its system thread died); nothing more is accepted.
    #[error("perfvisor is not running (it was shut down)")]
    NotRunning,
    /// A silence was refused.
    #[error(transparent)]
    Silence(SilenceError),
    /// An alert rule was refused; the error lists every problem with the field, the value
    /// and what would be accepted.
    #[error(transparent)]
    InvalidRule(RuleError),
    /// A daemon spec was refused.
    #[error("invalid daemon {id:?}: {problem}")]
    InvalidDaemon {
        /// The id given.
        id: String,
        /// What is wrong and what would be accepted.
        problem: String,
    },
    /// A builder setting contradicts another (the words say which).
    #[error("{0}")]
    InvalidSetting(String),
    /// The system thread could not be started.
    #[error("cannot start perfvisor's system thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Another perfvisor holds the database ([`DatabaseLock`]).
    #[error(
        "the history database {} is in use by another perfvisor ({holder}); stop that one, \
         or give this one another database",
        database.display()
    )]
    DatabaseInUse {
        /// The database.
        database: std::path::PathBuf,
        /// What the holder recorded of itself (its pid, and the binary's listen address).
        holder: String,
    },
    /// The database's lock file could not be created or locked.
    #[error(
        "cannot take the lock {} of the history database: {source} (the database's \
         directory must exist and be writable)",
        path.display()
    )]
    DatabaseLock {
        /// The lock file.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// New alerting settings were refused (a sink that does not start); the running ones
    /// are kept.
    #[error("alerting settings refused: {0}")]
    Alerting(String),
}
