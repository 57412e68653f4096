//! The embedding builder: every setting with its documented default, ending in `start()`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use perfvisor_actors::alerts::{ActionLimits, DaemonControl, SinkConfig, ThresholdRule};
use perfvisor_actors::analyzer::JudgeConfig;
use perfvisor_actors::storage::Retention;
use perfvisor_actors::supervisor::{EngineConfig, RestartKind, RestartPolicy};
use perfvisor_actors::types::{Clock, SystemClock};

use crate::{DatabaseLock, Error, Perfvisor};

/// Default database file, relative to the working directory.
pub const DEFAULT_DATABASE: &str = "perfvisor.db";
/// Default probe interval of each watcher.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Default host-metric interval.
pub const DEFAULT_HOST_INTERVAL: Duration = Duration::from_secs(1);
/// Default recorder channel capacity, in samples. The channel is allocated up front (about
/// 90 bytes a slot, so 1.5 MB here); the intake drains it every millisecond, so this holds
/// a burst of 16 k samples between drains, and an HTTP push of the largest accepted size
/// (10 k samples). Hosts with larger bursts raise it with `recorder_capacity`.
pub const DEFAULT_RECORDER_CAPACITY: usize = 16_384;
/// Default storage queue capacity, in batches.
pub const DEFAULT_STORAGE_QUEUE: usize = 4096;
/// Default cap of the analyzer's window per series, in samples: the window covers the last
/// [`DEFAULT_ANALYSIS_SPAN`], at most this many samples (10 minutes at 10 a second, 48 KB
/// per series when full). A report says when a series' window was capped.
pub const DEFAULT_ANALYSIS_WINDOW: usize = 6_000;
/// Default time the analyzer's windows (and reports) cover: 10 minutes.
pub const DEFAULT_ANALYSIS_SPAN: Duration = Duration::from_secs(600);
/// Default interval of the histograms of observations and operation durations: each
/// interval is stored as p50, p90, p99, count and sum.
pub const DEFAULT_HISTOGRAM_INTERVAL: Duration = Duration::from_secs(10);

/// Default interval between two judgements of every daemon (score, bottlenecks, alerts).
pub const DEFAULT_JUDGE_INTERVAL: Duration = Duration::from_secs(5);

/// Configures and starts perfvisor. Create it with [`Perfvisor::builder`].
#[derive(Debug, Clone)]
pub struct PerfvisorBuilder {
    config: EngineConfig,
    /// A lock on the database taken by the caller; `start` takes one when this is `None`.
    lock: Option<Arc<DatabaseLock>>,
}

impl Default for PerfvisorBuilder {
    fn default() -> Self {
        PerfvisorBuilder {
            config: EngineConfig {
                database: PathBuf::from(DEFAULT_DATABASE),
                probe_interval: DEFAULT_PROBE_INTERVAL,
                host_interval: DEFAULT_HOST_INTERVAL,
                recorder_capacity: DEFAULT_RECORDER_CAPACITY,
                storage_queue: DEFAULT_STORAGE_QUEUE,
                max_buffered_samples: perfvisor_actors::storage::DEFAULT_MAX_BUFFERED_SAMPLES,
                analysis_window: DEFAULT_ANALYSIS_WINDOW,
                histogram_interval: DEFAULT_HISTOGRAM_INTERVAL,
                judge_interval: DEFAULT_JUDGE_INTERVAL,
                judge: JudgeConfig::default(),
                singleton_policy: RestartPolicy::new(RestartKind::Permanent),
                watcher_policy: RestartPolicy::new(RestartKind::Transient),
                rules: Vec::new(),
                config_rules: Vec::new(),
                clock: Arc::new(SystemClock),
                retention: Retention::default(),
                max_database_bytes: None,
                default_rules: true,
                sinks: Vec::new(),
                daemon_control: None,
                action_limits: ActionLimits::default(),
            },
            lock: None,
        }
    }
}

impl PerfvisorBuilder {
    /// The SQLite file for history. Default [`DEFAULT_DATABASE`]. Created if missing.
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.database = path.into();
        self
    }
    /// How often each watcher probes its daemon. Default [`DEFAULT_PROBE_INTERVAL`];
    /// at least 10 ms.
    pub fn probe_interval(mut self, d: Duration) -> Self {
        self.config.probe_interval = d;
        self
    }
    /// How often host metrics are sampled. Default [`DEFAULT_HOST_INTERVAL`]; at least 10 ms.
    pub fn host_interval(mut self, d: Duration) -> Self {
        self.config.host_interval = d;
        self
    }
    /// Capacity of the recorder channel; when full, samples are dropped and counted.
    /// Default [`DEFAULT_RECORDER_CAPACITY`].
    pub fn recorder_capacity(mut self, n: usize) -> Self {
        self.config.recorder_capacity = n;
        self
    }
    /// Capacity of the storage writer's queue, in batches. Default [`DEFAULT_STORAGE_QUEUE`].
    pub fn storage_queue(mut self, n: usize) -> Self {
        self.config.storage_queue = n;
        self
    }
    /// Samples buffered in memory while the disk refuses writes (full, read-only); beyond
    /// it new samples are dropped and counted. Default 1,000,000 (about 16 MB at most).
    pub fn max_buffered_samples(mut self, n: usize) -> Self {
        self.config.max_buffered_samples = n;
        self
    }
    /// Most samples kept per series for statistics, trends and judgement; the window
    /// covers [`PerfvisorBuilder::analysis_span`] unless a series fills this first (its
    /// report then says `window_capped`). Default [`DEFAULT_ANALYSIS_WINDOW`].
    pub fn analysis_window(mut self, n: usize) -> Self {
        self.config.analysis_window = n;
        self
    }
    /// How far back the analyzer's windows reach: reports and judgement cover the last
    /// `span` of every series (and of every histogram). Default [`DEFAULT_ANALYSIS_SPAN`]
    /// (`JudgeConfig::default().window_ms`);
    /// at least 1 s. The same setting as `JudgeConfig::window_ms` (the later call wins).
    pub fn analysis_span(mut self, span: Duration) -> Self {
        self.config.judge.window_ms = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        self
    }
    /// How long each interval of a histogram lasts: the observations of
    /// [`Recorder::observe`](crate::Recorder::observe), `metrics::histogram!`, profiled
    /// operations and closed spans are stored per interval as p50, p90, p99 (DDSketch,
    /// within 0.5 %), count and sum. Default [`DEFAULT_HISTOGRAM_INTERVAL`]; at least 10 ms.
    pub fn histogram_interval(mut self, d: Duration) -> Self {
        self.config.histogram_interval = d;
        self
    }
    /// The judgement's thresholds: how much evidence each finding needs (spans, start-up
    /// grace, floors) and how near an exhaustion sets the level. Default
    /// [`JudgeConfig::default`]; `start()` refuses values [`JudgeConfig::problems`] names.
    pub fn judge_config(mut self, judge: JudgeConfig) -> Self {
        self.config.judge = judge;
        self
    }
    /// How often every daemon is judged (score, bottlenecks, recommendations) and
    /// bottleneck alerts raised or resolved. Default [`DEFAULT_JUDGE_INTERVAL`]; at least
    /// 100 ms.
    pub fn judge_interval(mut self, d: Duration) -> Self {
        self.config.judge_interval = d;
        self
    }
    /// Restart policy of the singleton actors. Default: permanent, with the
    /// `perfvisor_actors::supervisor::DEFAULT_*` budget and backoff.
    pub fn actor_restart_policy(mut self, p: RestartPolicy) -> Self {
        self.config.singleton_policy = p;
        self
    }
    /// Restart policy of the watchers. Default: transient, same budget and backoff.
    pub fn watcher_restart_policy(mut self, p: RestartPolicy) -> Self {
        self.config.watcher_policy = p;
        self
    }
    /// Adds an alert rule. Default: none.
    pub fn rule(mut self, rule: ThresholdRule) -> Self {
        self.config.rules.push(rule);
        self
    }
    /// The alert rules of a config file: listed with origin `config` by `rules()`, and
    /// replaced whole by [`Perfvisor::replace_config_alerting`] (a reload). A rule named like
    /// a built-in replaces it. Default: none.
    pub fn config_rules(mut self, rules: Vec<ThresholdRule>) -> Self {
        self.config.config_rules = rules;
        self
    }
    /// How long each tier of history is kept. Default: raw samples 7 days, hourly rollups
    /// 30 days, daily rollups 365 days, events and alerts 365 days.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.config.retention = retention;
        self
    }
    /// Caps the database's used size; above it the oldest raw history goes first, then the
    /// oldest rollups. Default: no cap. At least 1 MiB.
    pub fn max_database_bytes(mut self, bytes: Option<u64>) -> Self {
        self.config.max_database_bytes = bytes;
        self
    }
    /// Whether the default alert rules ship (high CPU, memory growth, descriptors near the
    /// limit, crash loop, daemon down, and one rule per bottleneck kind). Default: on.
    pub fn default_rules(mut self, on: bool) -> Self {
        self.config.default_rules = on;
        self
    }
    /// Adds an alert sink (webhook, Alertmanager, exec, log) under a name. Each sink has its
    /// own queue, retries and timeout; its settings are checked at `start()`.
    pub fn sink(mut self, name: impl Into<String>, sink: SinkConfig) -> Self {
        self.config.sinks.push((name.into(), sink));
        self
    }
    /// Who restarts daemons when an alert's action asks for it (without one, restart
    /// actions are refused and recorded as such).
    pub fn daemon_control(mut self, control: impl DaemonControl) -> Self {
        self.config.daemon_control = Some(Arc::new(control));
        self
    }
    /// Rate limits of alert actions. Default: 3 per daemon per hour, 10 minutes apart.
    pub fn action_limits(mut self, limits: ActionLimits) -> Self {
        self.config.action_limits = limits;
        self
    }
    /// The clock timestamps come from. Default: the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }
    /// The database's single-instance lock, when the caller took it before writing anything
    /// next to the database (as the `perfvisor` binary does). Without it, `start` takes the
    /// lock itself. A lock on another database is refused by `start`.
    pub fn database_lock(mut self, lock: DatabaseLock) -> Self {
        self.lock = Some(Arc::new(lock));
        self
    }
    /// Starts perfvisor on threads of its own and returns its handle. Takes the database's
    /// lock first ([`DatabaseLock`]): a second perfvisor on a database in use is refused with
    /// [`Error::DatabaseInUse`], before anything is written.
    ///
    /// Blocks the calling thread until the engine runs: opening (and, for an older file,
    /// migrating) the database takes milliseconds on a new file and up to seconds on a large
    /// one. Call it before the async runtime starts or inside `spawn_blocking`. Every method
    /// of the returned handle is async and blocks no executor thread, except
    /// [`Perfvisor::reader`] (a SQLite connection) and the hot-path recorder (which never
    /// waits).
    pub fn start(self) -> Result<Perfvisor, Error> {
        let problems = self.config.judge.problems();
        if !problems.is_empty() {
            return Err(Error::InvalidSetting(format!(
                "judge_config: {}",
                problems.join("; ")
            )));
        }
        let lock = match self.lock {
            Some(lock) if lock.database() == self.config.database => lock,
            Some(lock) => {
                return Err(Error::InvalidSetting(format!(
                    "the database lock given is for {}, not for the database {}",
                    lock.database().display(),
                    self.config.database.display()
                )))
            }
            None => Arc::new(DatabaseLock::acquire(
                &self.config.database,
                &crate::lock::default_holder(),
            )?),
        };
        Perfvisor::start(self.config, lock)
    }
}
