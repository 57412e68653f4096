//! Starting the engine: [`EngineConfig`] (everything it needs), [`start_engine`] (builds the
//! tree in order: storage, sinks, dispatcher, analyzer, recorder and collector, then the
//! supervisor) and the [`EngineParts`] it hands to the embedding layer.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::actor::Supervisor;
use super::alarm::StorageAlarm;
use super::{ChildHandle, RestartDecision, RestartPolicy, Restartable, DEFAULT_BACKOFF_MAX};
use crate::alerts::{
    ActionLimits, AlertDispatcher, ControlSlot, DaemonControl, DispatcherConfig, Sink, SinkConfig,
    SinkSettings, ThresholdRule,
};
use crate::analyzer::{Analyzer, AnalyzerSetup};
use crate::collector::{intake, Collector, CollectorSetup};
use crate::messages::ActorFailed;
use crate::recorder::{self, Recorder};
use crate::storage::{StorageConfig, StorageError, StorageFailure, StorageHandle, StorageStats};
use crate::telemetry::*;
use crate::types::SharedClock;

/// Everything the engine needs to start. Built by the root crate's builder.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The SQLite file.
    pub database: PathBuf,
    /// How often each watcher probes its daemon.
    pub probe_interval: Duration,
    /// How often the collector samples host metrics.
    pub host_interval: Duration,
    /// Capacity of the recorder channel, in samples.
    pub recorder_capacity: usize,
    /// Capacity of the storage writer's queue, in batches.
    pub storage_queue: usize,
    /// Samples the storage writer buffers in memory while the disk refuses writes.
    pub max_buffered_samples: usize,
    /// Most samples kept per series in the analyzer's window (which covers
    /// `judge.window_ms`).
    pub analysis_window: usize,
    /// How long each interval of a histogram (observations, operation durations) lasts
    /// before it is stored as quantiles, count and sum.
    pub histogram_interval: Duration,
    /// How often the analyzer judges every daemon and raises or resolves alert candidates.
    pub judge_interval: Duration,
    /// The judgement's thresholds (evidence spans, floors, urgency horizons).
    pub judge: crate::analyzer::JudgeConfig,
    /// Policy of the singleton actors (permanent).
    pub singleton_policy: RestartPolicy,
    /// Policy of the watchers (transient).
    pub watcher_policy: RestartPolicy,
    /// Alert rules to start with (the host's).
    pub rules: Vec<ThresholdRule>,
    /// Alert rules from a config file: listed as such, replaced whole by a reload.
    pub config_rules: Vec<ThresholdRule>,
    /// Source of time.
    pub clock: SharedClock,
    /// Ship the default alert rules (high CPU, memory growth, descriptors near the limit,
    /// crash loop, daemon down) and a signal rule per bottleneck kind.
    pub default_rules: bool,
    /// Alert sinks, by name.
    pub sinks: Vec<(String, SinkConfig)>,
    /// Who restarts daemons for restart actions (the host, when embedded).
    pub daemon_control: Option<Arc<dyn DaemonControl>>,
    /// Rate limits of alert actions.
    pub action_limits: ActionLimits,
    /// How long each tier of history is kept.
    pub retention: crate::storage::Retention,
    /// Optional cap on the database's used size, in bytes.
    pub max_database_bytes: Option<u64>,
    /// Faults armed on purpose (test builds only): see [`super::FaultPlan`].
    #[cfg(test)]
    pub faults: super::FaultPlan,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database could not be opened.
    #[error("cannot open the history database: {0}")]
    Storage(#[from] StorageError),
    /// A setting is out of range.
    #[error("invalid setting {name} = {value}: {expected}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
}

/// What `start_engine` hands back to the embedding layer.
#[derive(Clone, Debug)]
pub struct EngineParts {
    /// The root of the tree; every request goes through it or the addresses below.
    pub supervisor: Addr<Supervisor>,
    /// The analyzer (for reports).
    pub analyzer: Addr<Analyzer>,
    /// The alert dispatcher (for rules and subscriptions).
    pub dispatcher: Addr<AlertDispatcher>,
    /// The hot-path recorder.
    pub recorder: Recorder,
    /// The storage writer.
    pub storage: StorageHandle,
    /// The collector (for flushes).
    pub collector: Addr<Collector>,
    /// The collector's counters. Whoever sends it [`crate::messages::SamplesCollected`]
    /// counts the message in first ([`crate::counters::ActorStats::enqueued`]), as watchers do, so
    /// that the collector sends a burst of batches on as one.
    pub collector_stats: Arc<crate::counters::ActorStats>,
    /// The recorder intake thread (for flushes).
    pub intake: Arc<intake::IntakeHandle>,
    /// The daemon control restart actions use (replaceable while running).
    pub control: ControlSlot,
}

/// Starts the whole tree inside the current actix `System`. Must be called from within it.
pub fn start_engine(config: EngineConfig) -> Result<EngineParts, EngineError> {
    validate(&config)?;
    let clock = config.clock.clone();
    let engine = Arc::new(EngineStats::default());

    let singleton = |name: &str, kind| {
        ChildHandle::new(name, kind, config.singleton_policy.clone(), clock.clone())
    };
    let supervisor_child = singleton("supervisor", ActorKind::Supervisor);
    let storage_child = singleton("storage_writer", ActorKind::StorageWriter);
    let dispatcher_child = singleton("alert_dispatcher", ActorKind::AlertDispatcher);
    let analyzer_child = singleton("analyzer", ActorKind::Analyzer);
    let collector_child = singleton("collector", ActorKind::Collector);
    let collector_stats = collector_child.stats.clone();

    // Every singleton reports its failures to the supervisor once it runs.
    let singletons = [
        supervisor_child.clone(),
        storage_child.clone(),
        dispatcher_child.clone(),
        analyzer_child.clone(),
        collector_child.clone(),
    ];
    #[cfg(test)]
    for child in &singletons {
        child.arm_from(&config.faults);
    }

    // Storage first: an unusable database is a start-up error, reported synchronously.
    let storage_stats = Arc::new(StorageStats {
        #[cfg(test)]
        faults: config.faults.clone(),
        ..StorageStats::default()
    });
    let hook_child = storage_child.clone();
    let mut storage_config = StorageConfig::new(config.database.clone());
    storage_config.queue_capacity = config.storage_queue;
    storage_config.max_buffered_samples = config.max_buffered_samples;
    storage_config.clock = config.clock.clone();
    storage_config.retention = config.retention;
    storage_config.max_bytes = config.max_database_bytes;
    let storage = StorageHandle::spawn(
        storage_config,
        storage_stats.clone(),
        Arc::new(move |failure: StorageFailure| {
            match hook_child.fail(&failure.reason, failure.lost_commands) {
                RestartDecision::Restart { delay, .. } => delay,
                RestartDecision::Stop => DEFAULT_BACKOFF_MAX,
            }
        }),
    )?;

    let mut sinks = Vec::with_capacity(config.sinks.len());
    for (name, sink) in &config.sinks {
        let started = Sink::spawn_each(name.clone(), sink.clone(), SinkSettings::default())
            .map_err(|e| EngineError::InvalidSetting {
                name: "sinks",
                value: format!("{name}: {e}"),
                expected: "a sink whose settings pass validation (see the message)",
            })?;
        sinks.extend(started.into_iter().map(Arc::new));
    }
    let status_sinks = sinks.clone();
    let control = ControlSlot::new(config.daemon_control.clone());
    let dispatcher_config = DispatcherConfig {
        rules: config.rules.clone(),
        config_rules: config.config_rules.clone(),
        default_rules: config.default_rules,
        sinks,
        control: control.clone(),
        action_limits: config.action_limits,
        clock: clock.clone(),
    };
    let dispatcher = {
        let (child, storage, dconfig, engine) = (
            dispatcher_child.clone(),
            storage.clone(),
            dispatcher_config,
            engine.clone(),
        );
        actix::Supervisor::start(move |_| AlertDispatcher::new(child, storage, dconfig, engine))
    };
    let analyzer = {
        let setup = AnalyzerSetup {
            dispatcher: dispatcher.clone(),
            dispatcher_stats: dispatcher_child.stats.clone(),
            clock: clock.clone(),
            window: config.analysis_window,
            judge_interval: config.judge_interval,
            judge: config.judge.clone(),
            storage: Some(storage.clone()),
        };
        let child = analyzer_child.clone();
        actix::Supervisor::start(move |_| Analyzer::new(child, setup))
    };
    let recorder_stats = Arc::new(RecorderStats::default());
    let (recorder, receiver) = recorder::channel(
        config.recorder_capacity,
        clock.clone(),
        recorder_stats.clone(),
    );
    let collector = {
        let setup = CollectorSetup {
            storage: storage.clone(),
            analyzer: analyzer.clone(),
            analyzer_stats: analyzer_child.stats.clone(),
            clock: clock.clone(),
            host_interval: config.host_interval,
            histogram_interval: config.histogram_interval,
            engine: engine.clone(),
            recorder_rx: receiver.clone(),
            recorder_stats: recorder_stats.clone(),
        };
        let child = collector_child.clone();
        actix::Supervisor::start(move |_| Collector::new(child, setup))
    };
    let intake = Arc::new(intake::spawn(
        receiver,
        collector.clone().recipient(),
        collector_child.stats.clone(),
        recorder_stats.clone(),
    ));

    let parts_storage = storage.clone();
    let parts_recorder = recorder.clone();
    let (parts_collector, parts_intake) = (collector.clone(), intake.clone());
    let (analyzer2, dispatcher2) = (analyzer.clone(), dispatcher.clone());
    let supervisor = actix::Supervisor::start(move |ctx: &mut Context<Supervisor>| {
        let me = ctx.address().recipient::<ActorFailed>();
        for child in &singletons {
            child.report_to(me.clone());
        }
        Supervisor {
            started_at_ms: config.clock.now_ms(),
            config,
            restart: Restartable::new(supervisor_child),
            engine,
            recorder_stats,
            recorder,
            storage,
            storage_stats,
            storage_child,
            collector,
            collector_child,
            analyzer: analyzer2,
            analyzer_child,
            dispatcher: dispatcher2,
            dispatcher_child,
            intake,
            desired: BTreeMap::new(),
            watchers: HashMap::new(),
            shutting_down: false,
            storage_alarm: StorageAlarm::default(),
            planned_restarts: HashMap::new(),
            sinks: status_sinks,
        }
    });
    Ok(EngineParts {
        supervisor,
        analyzer,
        dispatcher,
        recorder: parts_recorder,
        storage: parts_storage,
        collector: parts_collector,
        collector_stats,
        intake: parts_intake,
        control,
    })
}

fn validate(config: &EngineConfig) -> Result<(), EngineError> {
    let checks: [(&'static str, Duration, &'static str); 3] = [
        (
            "probe_interval",
            config.probe_interval,
            "a duration of at least 10ms",
        ),
        (
            "host_interval",
            config.host_interval,
            "a duration of at least 10ms",
        ),
        (
            "histogram_interval",
            config.histogram_interval,
            "a duration of at least 10ms",
        ),
    ];
    for (name, value, expected) in checks {
        if value < Duration::from_millis(10) {
            return Err(EngineError::InvalidSetting {
                name,
                value: format!("{value:?}"),
                expected,
            });
        }
    }
    if config.recorder_capacity == 0 {
        return Err(EngineError::InvalidSetting {
            name: "recorder_capacity",
            value: "0".into(),
            expected: "at least 1 sample",
        });
    }
    if config.judge_interval < Duration::from_millis(100) {
        return Err(EngineError::InvalidSetting {
            name: "judge_interval",
            value: format!("{:?}", config.judge_interval),
            expected: "a duration of at least 100ms",
        });
    }
    if config.analysis_window < 2 {
        return Err(EngineError::InvalidSetting {
            name: "analysis_window",
            value: config.analysis_window.to_string(),
            expected: "at least 2 samples",
        });
    }
    Ok(())
}
