//! The supervision tree: child specs, the restart policy, and the watcher registry.
//!
//! # The tree
//!
//! ```text
//! Supervisor (root)
//! ├── StorageWriter      permanent  own thread, fed by a crossbeam channel
//! ├── AlertDispatcher    permanent
//! ├── Analyzer           permanent
//! ├── Collector          permanent  (+ the recorder intake thread)
//! └── Watcher(daemon) ×N transient  one per announced daemon, keyed by daemon id
//! ```
//!
//! # Failure
//!
//! actix restarts a supervised actor only when it *stops*; a panic unwinding out of a
//! handler would end the actor's task silently. So every handler runs its logic through
//! [`crate::panic_guard::guard`]: a caught panic (or an unrecoverable error) is a failure.
//! The failing actor asks its [`ChildHandle`] for a decision, reports [`ActorFailed`] to the
//! supervisor and stops; `actix::Supervisor` restarts it *with the same mailbox*, so
//! everything queued behind the failing message is still delivered. Only the message being
//! handled is lost, and it is counted in the child's `lost_messages`. The restarted actor is
//! rebuilt from its immutable spec, then waits out its backoff before serving again.
//!
//! # Restart policy
//!
//! Erlang's vocabulary: *permanent* children are always restarted, *transient* ones only
//! after a failure (a watcher whose daemon exited is retired, not restarted), *temporary*
//! ones never. A child may fail at most `max_restarts` times within `period`; the delay
//! before each restart grows exponentially from `backoff_initial` by `backoff_factor`, with
//! ± `jitter` and capped at `backoff_max`, and starts again from the beginning once the child
//! has run `stable_after` without failing. Past the budget perfvisor does not let the child
//! die silently: the system reports itself `degraded`, raises a critical internal alert, and
//! keeps restarting the child at the capped delay so that the process lives on.
//!
//! # Watchers
//!
//! Which watchers should exist is a pure function of the known daemons:
//! [`diff_watchers`] returns what to add, change and remove, and the supervisor applies it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::alerts::{
    ActionLimits, AlertDispatcher, ControlSlot, DaemonControl, DispatcherConfig, Sink, SinkConfig,
    SinkSettings, ThresholdRule,
};
use crate::analyzer::Analyzer;
use crate::collector::{intake, Collector};
use crate::messages::*;
use crate::panic_guard::guard;
use crate::recorder::{self, Recorder};
use crate::storage::{StorageConfig, StorageError, StorageFailure, StorageHandle, StorageStats};
use crate::telemetry::*;
use crate::types::*;
use crate::watcher::Watcher;

// ---- restart policy (pure) ---------------------------------------------------------------

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartKind {
    /// Always restarted.
    Permanent,
    /// Restarted after a failure, not after a normal stop.
    Transient,
    /// Never restarted.
    Temporary,
}

/// How a child is restarted. Defaults: see each `DEFAULT_*` constant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// Permanent, transient or temporary.
    pub kind: RestartKind,
    /// Failures allowed within `period` before the system is degraded.
    pub max_restarts: u32,
    /// The window over which failures are counted.
    pub period: Duration,
    /// Delay before the first restart.
    pub backoff_initial: Duration,
    /// Growth of the delay per consecutive failure.
    pub backoff_factor: f64,
    /// The largest delay.
    pub backoff_max: Duration,
    /// Relative jitter applied to each delay, 0 to 1 (0.2 = ±20 %).
    pub jitter: f64,
    /// Running this long without failing resets the backoff.
    pub stable_after: Duration,
}

/// Default `max_restarts`: 5 failures...
pub const DEFAULT_MAX_RESTARTS: u32 = 5;
/// ...within 60 s.
pub const DEFAULT_RESTART_PERIOD: Duration = Duration::from_secs(60);
/// Default first restart delay: 1 ms, so a one-off panic costs almost nothing.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(1);
/// Default backoff growth factor.
pub const DEFAULT_BACKOFF_FACTOR: f64 = 4.0;
/// Default backoff cap.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Default jitter (±20 %).
pub const DEFAULT_JITTER: f64 = 0.2;
/// Default stable period that resets the backoff.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(30);
/// The storage alert raised for dropped samples resolves after this long without drops.
const STORAGE_ALERT_QUIET_MS: i64 = 30_000;

impl RestartPolicy {
    /// The default policy with the given kind.
    pub fn new(kind: RestartKind) -> Self {
        RestartPolicy {
            kind,
            max_restarts: DEFAULT_MAX_RESTARTS,
            period: DEFAULT_RESTART_PERIOD,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_factor: DEFAULT_BACKOFF_FACTOR,
            backoff_max: DEFAULT_BACKOFF_MAX,
            jitter: DEFAULT_JITTER,
            stable_after: DEFAULT_STABLE_AFTER,
        }
    }
}

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RestartDecision {
    /// Restart after `delay`.
    Restart {
        /// Wait this long before serving again.
        delay: Duration,
        /// True when this failure exceeded the restart budget (system degraded).
        budget_exceeded: bool,
    },
    /// Do not restart (temporary child).
    Stop,
}

/// Counts failures of one child against its policy. Pure: takes `now` and a random number.
#[derive(Clone, Debug)]
pub struct RestartTracker {
    policy: RestartPolicy,
    recent: VecDeque<TimestampMs>,
    consecutive: u32,
    last_failure_ms: Option<TimestampMs>,
}

impl RestartTracker {
    /// A tracker with no failure yet.
    pub fn new(policy: RestartPolicy) -> Self {
        RestartTracker {
            policy,
            recent: VecDeque::new(),
            consecutive: 0,
            last_failure_ms: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Records a failure at `now_ms`; `random` in [0, 1) drives the jitter.
    pub fn on_failure(&mut self, now_ms: TimestampMs, random: f64) -> RestartDecision {
        if self.policy.kind == RestartKind::Temporary {
            return RestartDecision::Stop;
        }
        let stable_ms = self.policy.stable_after.as_millis() as i64;
        if let Some(last) = self.last_failure_ms {
            if now_ms - last >= stable_ms {
                self.consecutive = 0;
            }
        }
        self.last_failure_ms = Some(now_ms);
        self.consecutive = self.consecutive.saturating_add(1);

        let period_ms = self.policy.period.as_millis() as i64;
        while self
            .recent
            .front()
            .is_some_and(|&t| now_ms - t >= period_ms)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now_ms);
        let budget_exceeded = self.recent.len() as u64 > u64::from(self.policy.max_restarts);

        let delay = if budget_exceeded {
            self.policy.backoff_max
        } else {
            self.backoff(self.consecutive, random)
        };
        RestartDecision::Restart {
            delay,
            budget_exceeded,
        }
    }

    /// The delay before restart number `attempt` (1-based), jittered and capped.
    pub fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let p = &self.policy;
        crate::backoff::Backoff {
            initial: p.backoff_initial,
            factor: p.backoff_factor,
            max: p.backoff_max,
            jitter: p.jitter,
        }
        .delay(attempt, random)
    }

    /// Failures within the current period.
    pub fn recent_failures(&self) -> usize {
        self.recent.len()
    }
}

// ---- watcher diff (pure) -----------------------------------------------------------------

/// What to change in the set of watchers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatcherDiff {
    /// Daemons that need a watcher.
    pub to_add: Vec<DaemonSpec>,
    /// Daemons whose watcher must be replaced (new pid, new labels).
    pub to_change: Vec<DaemonSpec>,
    /// Daemons whose watcher must be retired.
    pub to_remove: Vec<DaemonId>,
}

impl WatcherDiff {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.to_add.is_empty() && self.to_change.is_empty() && self.to_remove.is_empty()
    }
}

/// Compares the daemons that should be watched with the watchers that run.
pub fn diff_watchers(
    desired: &BTreeMap<DaemonId, DaemonSpec>,
    running: &BTreeMap<DaemonId, DaemonSpec>,
) -> WatcherDiff {
    let mut diff = WatcherDiff::default();
    for (id, spec) in desired {
        match running.get(id) {
            None => diff.to_add.push(spec.clone()),
            Some(old) if old != spec => diff.to_change.push(spec.clone()),
            Some(_) => {}
        }
    }
    diff.to_remove = running
        .keys()
        .filter(|id| !desired.contains_key(*id))
        .cloned()
        .collect();
    diff
}

// ---- child handles -----------------------------------------------------------------------

/// What a child shares with the supervisor: its identity, counters and restart tracker.
#[derive(Debug)]
pub struct ChildHandle {
    /// Name in the tree (`collector`, `watcher:ID`).
    pub name: String,
    /// Kind of actor.
    pub kind: ActorKind,
    /// Counters shown in `status()`.
    pub stats: Arc<ActorStats>,
    tracker: Mutex<RestartTracker>,
    clock: SharedClock,
    supervisor: Mutex<Option<Recipient<ActorFailed>>>,
}

impl ChildHandle {
    /// A handle for a new child.
    pub fn new(
        name: impl Into<String>,
        kind: ActorKind,
        policy: RestartPolicy,
        clock: SharedClock,
    ) -> Arc<Self> {
        Arc::new(ChildHandle {
            name: name.into(),
            kind,
            stats: Arc::new(ActorStats::default()),
            tracker: Mutex::new(RestartTracker::new(policy)),
            clock,
            supervisor: Mutex::new(None),
        })
    }

    /// Tells the handle where to report failures.
    pub fn report_to(&self, supervisor: Recipient<ActorFailed>) {
        if let Ok(mut s) = self.supervisor.lock() {
            *s = Some(supervisor);
        }
    }

    /// Records a failure that lost `lost` messages, reports it, and decides the restart.
    pub fn fail(&self, reason: &str, lost: u64) -> RestartDecision {
        self.stats.failed(reason, lost);
        let now = self.clock.now_ms();
        let decision = match self.tracker.lock() {
            Ok(mut t) => t.on_failure(now, fastrand::f64()),
            // A poisoned tracker means a panic while holding it, which cannot happen in
            // on_failure; restart at the cap rather than lose the child.
            Err(_) => RestartDecision::Restart {
                delay: DEFAULT_BACKOFF_MAX,
                budget_exceeded: true,
            },
        };
        let budget_exceeded = matches!(
            decision,
            RestartDecision::Restart {
                budget_exceeded: true,
                ..
            }
        );
        if matches!(decision, RestartDecision::Restart { .. }) {
            self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        }
        tracing::error!(actor = %self.name, reason, lost, budget_exceeded, "Actor failed; restarting.");
        if let Ok(s) = self.supervisor.lock() {
            if let Some(s) = s.as_ref() {
                let _ = s.try_send(ActorFailed {
                    kind: self.kind,
                    name: self.name.clone(),
                    reason: reason.to_string(),
                    budget_exceeded,
                });
            }
        }
        decision
    }
}

/// The restart bookkeeping every supervised actor embeds: its handle and the delay to wait
/// out when it starts again.
#[derive(Debug)]
pub struct Restartable {
    /// The child's handle.
    pub child: Arc<ChildHandle>,
    pending_delay: Option<Duration>,
}

impl Restartable {
    /// Wraps a handle.
    pub fn new(child: Arc<ChildHandle>) -> Self {
        Restartable {
            child,
            pending_delay: None,
        }
    }

    /// Handles a failure inside a handler: records it and stops the actor, so that
    /// `actix::Supervisor` restarts it with its mailbox intact.
    pub fn fail<A>(&mut self, ctx: &mut Context<A>, reason: &str)
    where
        A: Actor<Context = Context<A>>,
    {
        if let RestartDecision::Restart { delay, .. } = self.child.fail(reason, 1) {
            self.pending_delay = Some(delay);
        }
        ctx.stop();
    }

    /// Call from `started()`: waits out the backoff (the mailbox is held meanwhile).
    pub fn on_started<A>(&mut self, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>>,
    {
        if let Some(delay) = self.pending_delay.take() {
            if !delay.is_zero() {
                ctx.wait(actix::fut::wrap_future(tokio::time::sleep(delay)));
            }
        }
    }
}

// ---- the supervisor actor ----------------------------------------------------------------

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
    /// The recorder intake thread (for flushes).
    pub intake: Arc<intake::IntakeHandle>,
    /// The daemon control restart actions use (replaceable while running).
    pub control: ControlSlot,
}

struct WatcherEntry {
    spec: DaemonSpec,
    addr: Addr<Watcher>,
    child: Arc<ChildHandle>,
    probes: Arc<AtomicU64>,
    /// What the watcher shows: figure sources and top children.
    view: crate::watcher::view::SharedView,
}

/// The root actor. See the module documentation.
pub struct Supervisor {
    config: EngineConfig,
    restart: Restartable,
    started_at_ms: TimestampMs,
    engine: Arc<EngineStats>,
    recorder_stats: Arc<RecorderStats>,
    recorder: Recorder,
    storage: StorageHandle,
    storage_stats: Arc<StorageStats>,
    storage_child: Arc<ChildHandle>,
    collector: Addr<Collector>,
    collector_child: Arc<ChildHandle>,
    analyzer: Addr<Analyzer>,
    analyzer_child: Arc<ChildHandle>,
    dispatcher: Addr<AlertDispatcher>,
    dispatcher_child: Arc<ChildHandle>,
    intake: Arc<intake::IntakeHandle>,
    desired: BTreeMap<DaemonId, DaemonSpec>,
    watchers: HashMap<DaemonId, WatcherEntry>,
    shutting_down: bool,
    /// Since when storage writes fail or drop samples, while the internal alert about it
    /// is firing.
    storage_alert_since: Option<TimestampMs>,
    /// Whether the storage candidate was sent once since start: a firing alert restored
    /// from the database is resolved by the first check that finds storage fine.
    storage_alert_synced: bool,
    /// Storage drops already seen, and when samples were last seen dropped.
    storage_dropped_seen: u64,
    storage_dropped_at: Option<TimestampMs>,
    /// Daemons the host is restarting on purpose, until when.
    planned_restarts: HashMap<DaemonId, TimestampMs>,
    /// The alert sinks (the dispatcher delivers to them; status reads them).
    sinks: Vec<Arc<Sink>>,
}

/// Starts the whole tree inside the current actix `System`. Must be called from within it.
pub fn start_engine(config: EngineConfig) -> Result<EngineParts, EngineError> {
    validate(&config)?;
    let clock = config.clock.clone();
    let engine = Arc::new(EngineStats::default());

    let supervisor_child = ChildHandle::new(
        "supervisor",
        ActorKind::Supervisor,
        config.singleton_policy.clone(),
        clock.clone(),
    );
    let storage_child = ChildHandle::new(
        "storage_writer",
        ActorKind::StorageWriter,
        config.singleton_policy.clone(),
        clock.clone(),
    );
    let dispatcher_child = ChildHandle::new(
        "alert_dispatcher",
        ActorKind::AlertDispatcher,
        config.singleton_policy.clone(),
        clock.clone(),
    );
    let analyzer_child = ChildHandle::new(
        "analyzer",
        ActorKind::Analyzer,
        config.singleton_policy.clone(),
        clock.clone(),
    );
    let collector_child = ChildHandle::new(
        "collector",
        ActorKind::Collector,
        config.singleton_policy.clone(),
        clock.clone(),
    );

    // Storage first: an unusable database is a start-up error, reported synchronously.
    let storage_stats = Arc::new(StorageStats::default());
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
        let (child, d, dchild, clock, window, every, judge, store) = (
            analyzer_child.clone(),
            dispatcher.clone(),
            dispatcher_child.stats.clone(),
            clock.clone(),
            config.analysis_window,
            config.judge_interval,
            config.judge.clone(),
            storage.clone(),
        );
        actix::Supervisor::start(move |_| {
            Analyzer::new(child, d, dchild, clock, window, every, judge.clone())
                .with_storage(store.clone())
        })
    };
    let recorder_stats = Arc::new(RecorderStats::default());
    let (recorder, receiver) = recorder::channel(
        config.recorder_capacity,
        clock.clone(),
        recorder_stats.clone(),
    );
    let collector = {
        let (child, storage, a, achild, clock, interval, engine, rx, rstats) = (
            collector_child.clone(),
            storage.clone(),
            analyzer.clone(),
            analyzer_child.stats.clone(),
            clock.clone(),
            config.host_interval,
            engine.clone(),
            receiver.clone(),
            recorder_stats.clone(),
        );
        let histogram_interval = config.histogram_interval;
        actix::Supervisor::start(move |_| {
            Collector::new(
                child,
                storage,
                a,
                achild,
                clock,
                interval,
                engine,
                rx,
                rstats,
                histogram_interval,
            )
        })
    };
    let intake = Arc::new(intake::spawn(
        receiver,
        collector.clone(),
        collector_child.stats.clone(),
        recorder_stats.clone(),
    ));

    let parts_storage = storage.clone();
    let parts_recorder = recorder.clone();
    let (parts_collector, parts_intake) = (collector.clone(), intake.clone());
    let (analyzer2, dispatcher2) = (analyzer.clone(), dispatcher.clone());
    let supervisor = actix::Supervisor::start(move |ctx: &mut Context<Supervisor>| {
        let me = ctx.address().recipient::<ActorFailed>();
        for child in [
            &supervisor_child,
            &storage_child,
            &dispatcher_child,
            &analyzer_child,
            &collector_child,
        ] {
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
            storage_alert_since: None,
            storage_alert_synced: false,
            storage_dropped_seen: 0,
            storage_dropped_at: None,
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

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.restart.on_started(ctx);
        // A degraded alert restored from the database belongs to an earlier run: only a
        // restart of perfvisor clears the degraded state, and this is one.
        if !self.engine.degraded.load(Ordering::Relaxed) {
            let now = self.now();
            let mut alert = self.degraded_candidate(now, String::new(), 0.0);
            alert.state = AlertState::Resolved;
            alert.message = "perfvisor was restarted; no actor is over its restart budget".into();
            self.dispatcher_child.stats.enqueued();
            self.dispatcher.do_send(RaiseAlert { alert });
        }
        ctx.run_interval(self.config.host_interval, |act, ctx| {
            if act.shutting_down {
                return;
            }
            if let Err(reason) = guard(|| act.watch_self()) {
                act.restart.fail(ctx, &reason);
            }
        });
    }
}

impl actix::Supervised for Supervisor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The supervisor's state *is* the tree (child addresses, the watcher registry);
        // nothing in it is per-message, so a restart keeps it as it is.
        tracing::warn!("Supervisor restarting.");
    }
}

impl Supervisor {
    fn now(&self) -> TimestampMs {
        self.config.clock.now_ms()
    }

    /// Records perfvisor's own metrics and raises (or resolves) the internal alert about
    /// failing storage writes.
    fn watch_self(&mut self) {
        let now = self.now();
        let storage =
            crate::selfmon::storage_status(&self.storage_stats, self.storage.backlog() as u64);
        let restarts = self.status().total_restarts();
        let mut batch = crate::selfmon::self_metrics(
            now,
            &storage,
            &self.storage_stats,
            &self.recorder_stats,
            restarts,
        );
        if let Some((open, limit)) = crate::selfmon::own_descriptors() {
            batch
                .samples
                .extend(crate::selfmon::descriptor_samples(now, open, limit));
        }
        self.collector_child.stats.enqueued();
        self.collector.do_send(SamplesCollected { batch });
        // Trouble is a write failure, or samples dropped because the queue or the buffer was
        // full (a disk slower than the ingest). The alert resolves after a quiet period, so
        // intermittent drops do not make it flap.
        let newly_dropped = storage
            .dropped_samples
            .saturating_sub(self.storage_dropped_seen);
        self.storage_dropped_seen = storage.dropped_samples;
        let trouble = storage.write_blocked.clone().or_else(|| {
            (newly_dropped > 0).then(|| {
                format!(
                    "{newly_dropped} samples dropped since the last check: the write queue is \
                     full, the disk is slower than the samples arrive"
                )
            })
        });
        if newly_dropped > 0 {
            self.storage_dropped_at = Some(now);
        }
        let quiet = self
            .storage_dropped_at
            .is_none_or(|at| now.saturating_sub(at) >= STORAGE_ALERT_QUIET_MS);
        let alert = match (&trouble, self.storage_alert_since) {
            (Some(reason), None) => {
                self.storage_alert_since = Some(now);
                Some(crate::selfmon::storage_alert(
                    now,
                    now,
                    Some(reason),
                    &storage,
                ))
            }
            (None, Some(since)) if quiet => {
                self.storage_alert_since = None;
                Some(crate::selfmon::storage_alert(now, since, None, &storage))
            }
            (None, None) if !self.storage_alert_synced => {
                Some(crate::selfmon::storage_alert(now, now, None, &storage))
            }
            _ => None,
        };
        self.storage_alert_synced = true;
        if let Some(mut alert) = alert {
            // A candidate for the `perfvisor_storage_failing` rule, not an alert by itself.
            alert.rule = crate::alerts::STORAGE_FAILING_SIGNAL.into();
            self.dispatcher_child.stats.enqueued();
            self.dispatcher.do_send(RaiseAlert { alert });
        }
    }

    /// True while the host restarts or redeploys `daemon` on purpose.
    fn planned(&self, daemon: &DaemonId) -> bool {
        self.planned_restarts
            .get(daemon)
            .is_some_and(|&until| self.now() < until)
    }

    /// Stores a lifecycle event and tells the analyzer and the alert dispatcher. A stop, and
    /// an exit or restart within a planned restart, is marked intended: the analyzer starts
    /// the new process's trends afresh but counts it against nothing, and no rule sees a
    /// crash in it.
    fn record_event(&self, daemon: &DaemonId, pid: u32, kind: LifecycleKind, detail: String) {
        let intended = match kind {
            LifecycleKind::Stopped => true,
            LifecycleKind::Restarted | LifecycleKind::Exited => self.planned(daemon),
            LifecycleKind::Started | LifecycleKind::Exec => false,
        };
        let event = LifecycleEvent {
            daemon: daemon.clone(),
            pid,
            ts_ms: self.now(),
            kind,
            detail: match (intended, kind) {
                (false, _) => detail,
                (true, LifecycleKind::Stopped) => format!("{INTENDED_PREFIX}{detail}"),
                (true, _) => format!("{INTENDED_PREFIX}planned restart; {detail}"),
            },
            intended,
        };
        self.analyzer_child.stats.enqueued();
        self.analyzer.do_send(DaemonLifecycle {
            event: event.clone(),
        });
        self.dispatcher_child.stats.enqueued();
        self.dispatcher.do_send(DaemonLifecycle {
            event: event.clone(),
        });
        self.storage.record_event(event);
    }

    fn running_specs(&self) -> BTreeMap<DaemonId, DaemonSpec> {
        self.watchers
            .iter()
            .map(|(id, w)| (id.clone(), w.spec.clone()))
            .collect()
    }

    fn apply_diff(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let diff = diff_watchers(&self.desired, &self.running_specs());
        for id in diff
            .to_remove
            .iter()
            .chain(diff.to_change.iter().map(|s| &s.id))
        {
            if let Some(entry) = self.watchers.remove(id) {
                // Dropping the only address after Retire lets the watcher stop for good.
                entry.addr.do_send(Retire);
                tracing::debug!(daemon = %id, pid = entry.spec.pid, "Watcher retiring.");
            }
        }
        for spec in diff.to_add.into_iter().chain(diff.to_change) {
            self.spawn_watcher(ctx, spec);
        }
    }

    fn spawn_watcher(&mut self, ctx: &mut Context<Self>, spec: DaemonSpec) {
        let child = ChildHandle::new(
            format!("watcher:{}", spec.id),
            ActorKind::Watcher,
            self.config.watcher_policy.clone(),
            self.config.clock.clone(),
        );
        child.report_to(ctx.address().recipient());
        let probes = Arc::new(AtomicU64::new(0));
        // A watcher restarted by actix keeps the view (the spec's, not the actor's).
        let view = crate::watcher::view::SharedView::default();
        let v = view.clone();
        let (s, c, cs, sup, clock, interval, p, engine) = (
            spec.clone(),
            child.clone(),
            self.collector_child.stats.clone(),
            ctx.address(),
            self.config.clock.clone(),
            self.config.probe_interval,
            probes.clone(),
            self.engine.clone(),
        );
        let collector = self.collector.clone();
        let addr = actix::Supervisor::start(move |_| {
            Watcher::new(
                s,
                c,
                collector,
                cs,
                sup,
                clock,
                interval,
                p,
                engine,
                v.clone(),
            )
        });
        tracing::debug!(daemon = %spec.id, pid = spec.pid, "Watcher spawned.");
        self.watchers.insert(
            spec.id.clone(),
            WatcherEntry {
                spec,
                addr,
                child,
                probes,
                view,
            },
        );
    }

    fn status(&self) -> Status {
        let degraded = self.engine.degraded.load(Ordering::Relaxed);
        let mut actors = vec![self
            .restart
            .child
            .stats
            .snapshot(self.restart.child.name.clone(), ActorKind::Supervisor)];
        for child in [
            &self.storage_child,
            &self.dispatcher_child,
            &self.analyzer_child,
            &self.collector_child,
        ] {
            let mut s = child.stats.snapshot(child.name.clone(), child.kind);
            if child.kind == ActorKind::StorageWriter {
                s.backlog = self.storage.backlog() as u64;
            }
            actors.push(s);
        }
        let mut watchers: Vec<WatcherStatus> = self
            .watchers
            .values()
            .map(|w| WatcherStatus {
                daemon: w.spec.id.clone(),
                pid: w.spec.pid,
                restarts: w.child.stats.restarts.load(Ordering::Relaxed),
                probes: w.probes.load(Ordering::Relaxed),
                sources: w.view.lock().ok().and_then(|v| v.sources.clone()),
            })
            .collect();
        watchers.sort_by(|a, b| a.daemon.cmp(&b.daemon));
        let st = &self.storage_stats;
        // perfvisor's own firing alerts (storage failing, degraded) say why it is degraded.
        let mut health_reasons = self
            .engine
            .own_alerts
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        if degraded && health_reasons.is_empty() {
            health_reasons.push(
                "an actor failed more often than its restart budget allows (see actors)".into(),
            );
        }
        Status {
            health: if degraded || !health_reasons.is_empty() {
                Health::Degraded
            } else {
                Health::Healthy
            },
            health_reasons,
            started_at_ms: self.started_at_ms,
            actors,
            watchers,
            recorder: RecorderStatus {
                accepted: self.recorder_stats.drained.load(Ordering::Relaxed)
                    + self.recorder.backlog() as u64,
                dropped: self.recorder_stats.dropped.load(Ordering::Relaxed),
                backlog: self.recorder.backlog() as u64,
            },
            storage: crate::selfmon::storage_status(st, self.storage.backlog() as u64),
            samples_collected: self.engine.samples_collected.load(Ordering::Relaxed),
            alerts_sent: self.engine.alerts_sent.load(Ordering::Relaxed),
            alert_delivery_failures: self.engine.alert_delivery_failures.load(Ordering::Relaxed),
            alert_sinks: self.sinks.iter().map(|s| s.status()).collect(),
            remote_write: Vec::new(),
        }
    }

    fn on_actor_failed(&mut self, msg: ActorFailed) {
        if !msg.budget_exceeded {
            return;
        }
        let first = !self.engine.degraded.swap(true, Ordering::Relaxed);
        tracing::error!(actor = %msg.name, reason = %msg.reason, "Restart budget exceeded; perfvisor is degraded.");
        let now = self.now();
        let message = format!(
                "perfvisor's {} actor failed more than {} times within {:?} (latest: {}); perfvisor is degraded{}",
                msg.name,
                self.config.singleton_policy.max_restarts,
                self.config.singleton_policy.period,
                msg.reason,
                if first { "" } else { " (again)" }
            );
        let value = self.restart_count_of(&msg.name) as f64;
        let alert = self.degraded_candidate(now, message, value);
        self.dispatcher_child.stats.enqueued();
        self.dispatcher.do_send(RaiseAlert { alert });
    }

    /// The candidate for the `perfvisor_degraded` rule. One series for the whole of
    /// perfvisor (the failing actor is named in the message), so a restart can resolve it
    /// without knowing which actor it was.
    fn degraded_candidate(&self, now: TimestampMs, message: String, value: f64) -> Alert {
        Alert {
            rule: crate::alerts::DEGRADED_SIGNAL.into(),
            series: SeriesKey::new(
                Source::Perfvisor,
                crate::metric_names::PERFVISOR_ACTOR_RESTARTS,
                Labels::empty(),
            ),
            daemon: None,
            project: None,
            severity: Severity::Critical,
            state: AlertState::Firing,
            value,
            threshold: f64::from(self.config.singleton_policy.max_restarts),
            since_ms: now,
            at_ms: now,
            message,
            recommendations: vec![
                "Read perfvisor's log for the failing actor's panic messages and report them as a bug.".into(),
                "Restart perfvisor to clear the degraded state once the cause is fixed.".into(),
            ],
            auto_actionable: false,
        }
    }

    fn restart_count_of(&self, name: &str) -> u64 {
        let singles = [
            &self.restart.child,
            &self.storage_child,
            &self.dispatcher_child,
            &self.analyzer_child,
            &self.collector_child,
        ];
        singles
            .iter()
            .map(|c| (c.name.as_str(), &c.stats))
            .chain(
                self.watchers
                    .values()
                    .map(|w| (w.child.name.as_str(), &w.child.stats)),
            )
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.restarts.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

/// Runs a supervisor handler body under the panic guard.
macro_rules! guarded {
    ($self:ident, $ctx:ident, $default:expr, $body:expr) => {{
        match guard(|| $body) {
            Ok(v) => v,
            Err(reason) => {
                $self.restart.fail($ctx, &reason);
                $default
            }
        }
    }};
}

impl Handler<DaemonStarted> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: DaemonStarted, ctx: &mut Self::Context) {
        guarded!(self, ctx, (), {
            let spec = msg.spec;
            let previous = self.desired.insert(spec.id.clone(), spec.clone());
            let kind = match &previous {
                Some(old) if old.pid != spec.pid => LifecycleKind::Restarted,
                _ => LifecycleKind::Started,
            };
            if previous.as_ref() != Some(&spec) {
                let new_process = previous.as_ref().is_none_or(|old| old.pid != spec.pid);
                let detail = previous
                    .map(|old| format!("previous pid {}", old.pid))
                    .unwrap_or_default();
                self.record_event(&spec.id, spec.pid, kind, detail);
                if new_process {
                    // The planned restart is done once its new process runs: a crash of
                    // that process is a crash.
                    self.planned_restarts.remove(&spec.id);
                }
            }
            self.collector.do_send(RegisterDaemon { spec });
            self.apply_diff(ctx);
        })
    }
}

impl Handler<DaemonRestarting> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: DaemonRestarting, ctx: &mut Self::Context) {
        guarded!(self, ctx, (), {
            let now = self.now();
            let until = now.saturating_add(msg.expected.as_millis() as i64);
            self.planned_restarts.retain(|_, &mut t| t > now);
            self.planned_restarts.insert(msg.id, until);
        })
    }
}

impl Handler<DaemonStopped> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: DaemonStopped, ctx: &mut Self::Context) {
        guarded!(self, ctx, (), {
            if let Some(spec) = self.desired.remove(&msg.id) {
                self.record_event(
                    &msg.id,
                    spec.pid,
                    LifecycleKind::Stopped,
                    "stopped by the host".into(),
                );
            }
            self.apply_diff(ctx);
        })
    }
}

impl Handler<WatcherRetired> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: WatcherRetired, ctx: &mut Self::Context) {
        guarded!(self, ctx, (), {
            // Only if the host has not announced a new pid for this id in the meantime.
            if self.desired.get(&msg.id).is_some_and(|s| s.pid == msg.pid) {
                self.desired.remove(&msg.id);
                self.record_event(&msg.id, msg.pid, LifecycleKind::Exited, msg.reason);
            }
            self.apply_diff(ctx);
        })
    }
}

impl Handler<DaemonExeced> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: DaemonExeced, ctx: &mut Self::Context) {
        guarded!(self, ctx, (), {
            // Only for the process the host announced: an exec is no death.
            if self.desired.get(&msg.id).is_some_and(|s| s.pid == msg.pid) {
                let from = msg.from.map_or_else(
                    || "an unknown program".to_string(),
                    |p| p.display().to_string(),
                );
                self.record_event(
                    &msg.id,
                    msg.pid,
                    LifecycleKind::Exec,
                    format!("exec: {from} → {}", msg.to.display()),
                );
            }
        })
    }
}

impl Handler<GetTopChildren> for Supervisor {
    type Result = MessageResult<GetTopChildren>;
    fn handle(&mut self, msg: GetTopChildren, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.watchers
                .get(&msg.daemon)
                .and_then(|w| w.view.lock().ok().and_then(|v| v.children.clone())),
        )
    }
}

impl Handler<ActorFailed> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: ActorFailed, ctx: &mut Self::Context) {
        guarded!(self, ctx, (), self.on_actor_failed(msg))
    }
}

impl Handler<GetStatus> for Supervisor {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, ctx: &mut Self::Context) -> Self::Result {
        // Status must answer even if building it panicked once: fall back to a minimal one.
        let status = match guard(|| self.status()) {
            Ok(s) => s,
            Err(reason) => {
                self.restart.fail(ctx, &reason);
                Status {
                    health: Health::Degraded,
                    health_reasons: vec![format!("building the status failed: {reason}")],
                    started_at_ms: self.started_at_ms,
                    actors: Vec::new(),
                    watchers: Vec::new(),
                    recorder: RecorderStatus {
                        accepted: 0,
                        dropped: 0,
                        backlog: 0,
                    },
                    storage: StorageStatus::default(),
                    samples_collected: 0,
                    alerts_sent: 0,
                    alert_delivery_failures: 0,
                    alert_sinks: Vec::new(),
                    remote_write: Vec::new(),
                }
            }
        };
        MessageResult(status)
    }
}

impl Handler<ReplaceAlerting> for Supervisor {
    type Result = ResponseFuture<Result<crate::alerts::AlertingChange, String>>;
    fn handle(&mut self, msg: ReplaceAlerting, _ctx: &mut Self::Context) -> Self::Result {
        // Every new sink starts before any old one is let go: a refused sink refuses the
        // whole reload and the running sinks stay as they are.
        let sinks = match msg.sinks {
            None => None,
            Some(configs) => {
                let mut sinks = Vec::with_capacity(configs.len());
                for (name, config) in configs {
                    match Sink::spawn_each(name.clone(), config, SinkSettings::default()) {
                        Ok(started) => sinks.extend(started.into_iter().map(Arc::new)),
                        Err(e) => return Box::pin(async move { Err(format!("sink {name}: {e}")) }),
                    }
                }
                self.sinks = sinks.clone();
                Some(sinks)
            }
        };
        self.dispatcher_child.stats.enqueued();
        let answer = self.dispatcher.send(ReplaceRules {
            rules: msg.rules,
            sinks,
            silences: msg.silences,
        });
        Box::pin(async move {
            answer
                .await
                .map_err(|e| format!("the alert dispatcher did not answer: {e}"))
        })
    }
}

impl Handler<InjectPanic> for Supervisor {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, ctx: &mut Self::Context) {
        guarded!(self, ctx, (), panic!("injected panic in supervisor"))
    }
}

impl Handler<InjectPanicInto> for Supervisor {
    type Result = bool;
    fn handle(&mut self, msg: InjectPanicInto, ctx: &mut Self::Context) -> bool {
        match msg.target {
            PanicTarget::Kind(ActorKind::Supervisor) => {
                ctx.address().do_send(InjectPanic);
                true
            }
            PanicTarget::Kind(ActorKind::Collector) => {
                self.collector.do_send(InjectPanic);
                true
            }
            PanicTarget::Kind(ActorKind::Analyzer) => {
                self.analyzer.do_send(InjectPanic);
                true
            }
            PanicTarget::Kind(ActorKind::AlertDispatcher) => {
                self.dispatcher.do_send(InjectPanic);
                true
            }
            PanicTarget::Kind(ActorKind::StorageWriter) => {
                self.storage.inject_panic();
                true
            }
            PanicTarget::Kind(ActorKind::Watcher) => match self.watchers.values().next() {
                Some(w) => {
                    w.addr.do_send(InjectPanic);
                    true
                }
                None => false,
            },
            PanicTarget::Watcher(id) => match self.watchers.get(&id) {
                Some(w) => {
                    w.addr.do_send(InjectPanic);
                    true
                }
                None => false,
            },
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        self.desired.clear();
        let watchers: Vec<Addr<Watcher>> = self.watchers.drain().map(|(_, w)| w.addr).collect();
        let collector = self.collector.clone();
        let analyzer = self.analyzer.clone();
        let dispatcher = self.dispatcher.clone();
        let storage = self.storage.clone();
        let intake = self.intake.clone();
        Box::pin(
            async move {
                // 1. Watchers: a last probe each, forwarded to the collector before they stop.
                for w in watchers {
                    let _ = w.send(Retire).await;
                }
                // 2. The recorder intake hands over what it holds; the collector drains the rest.
                let _ = tokio::task::spawn_blocking(move || intake.stop_and_join()).await;
                let _ = collector.send(DrainRecorder).await;
                // 3. Analyzer, then dispatcher, have handled everything sent before.
                let _ = analyzer.send(Flush).await;
                let _ = dispatcher.send(Flush).await;
                // 4. Storage: drain, commit, close.
                let result =
                    tokio::task::spawn_blocking(move || storage.shutdown(Duration::from_secs(60)))
                        .await;
                match result {
                    Ok(Ok(())) => tracing::info!("Storage flushed and closed."),
                    Ok(Err(e)) => tracing::error!(error = %e, "Storage did not close cleanly."),
                    Err(e) => tracing::error!(error = %e, "Storage shutdown task failed."),
                }
            }
            .into_actor(self),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            kind: RestartKind::Permanent,
            max_restarts: 3,
            period: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_factor: 2.0,
            backoff_max: Duration::from_secs(1),
            jitter: 0.0,
            stable_after: Duration::from_secs(30),
        }
    }

    fn delay(d: RestartDecision) -> (Duration, bool) {
        match d {
            RestartDecision::Restart {
                delay,
                budget_exceeded,
            } => (delay, budget_exceeded),
            RestartDecision::Stop => panic!("expected a restart"),
        }
    }

    /// Backoff doubles per consecutive failure, on a manual clock, and is capped.
    #[test]
    fn backoff_grows_exponentially_and_caps() {
        let mut t = RestartTracker::new(RestartPolicy {
            max_restarts: 100,
            ..policy()
        });
        let got: Vec<u128> = (0..6)
            .map(|i| delay(t.on_failure(i * 1000, 0.5)).0.as_millis())
            .collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
    }

    /// Jitter stays within ±jitter of the nominal delay and never exceeds the cap.
    #[test]
    fn jitter_is_bounded() {
        let t = RestartTracker::new(RestartPolicy {
            jitter: 0.2,
            ..policy()
        });
        assert_eq!(t.backoff(1, 0.0).as_millis(), 80);
        assert_eq!(t.backoff(1, 1.0).as_millis(), 120);
        assert_eq!(t.backoff(10, 1.0), Duration::from_secs(1));
    }

    /// The budget counts failures within the period only: the 4th failure within 10 s
    /// exceeds 3 restarts, while failures spread over more than 10 s never do.
    #[test]
    fn restart_window_is_exact() {
        let mut t = RestartTracker::new(policy());
        for now in [0, 1000, 2000] {
            assert!(!delay(t.on_failure(now, 0.5)).1);
        }
        let (d, exceeded) = delay(t.on_failure(3000, 0.5));
        assert!(exceeded);
        assert_eq!(
            d,
            Duration::from_secs(1),
            "past the budget, restart at the cap"
        );

        let mut t = RestartTracker::new(policy());
        for i in 0..10 {
            // 5 000 ms apart: at most two failures are ever inside the 10 s window.
            assert!(!delay(t.on_failure(i * 5000, 0.5)).1, "failure {i}");
        }
        assert_eq!(t.recent_failures(), 2);
    }

    /// A stable period resets the backoff to its initial delay.
    #[test]
    fn stable_period_resets_backoff() {
        let mut t = RestartTracker::new(RestartPolicy {
            max_restarts: 100,
            ..policy()
        });
        delay(t.on_failure(0, 0.5));
        assert_eq!(delay(t.on_failure(100, 0.5)).0.as_millis(), 200);
        assert_eq!(delay(t.on_failure(30_100, 0.5)).0.as_millis(), 100);
    }

    /// Temporary children are never restarted.
    #[test]
    fn temporary_children_stop() {
        let mut t = RestartTracker::new(RestartPolicy::new(RestartKind::Temporary));
        assert_eq!(t.on_failure(0, 0.5), RestartDecision::Stop);
    }

    /// The watcher diff adds new daemons, replaces changed ones and removes the gone.
    #[test]
    fn watcher_diff() {
        let spec = |id: &str, pid| DaemonSpec::new(id, pid);
        let desired: BTreeMap<_, _> = [spec("a", 1), spec("b", 22), spec("c", 3)]
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let running: BTreeMap<_, _> = [spec("b", 2), spec("c", 3), spec("d", 4)]
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let d = diff_watchers(&desired, &running);
        assert_eq!(d.to_add, vec![spec("a", 1)]);
        assert_eq!(d.to_change, vec![spec("b", 22)]);
        assert_eq!(d.to_remove, vec![DaemonId::new("d")]);
        assert!(diff_watchers(&desired, &desired).is_empty());
    }
}
