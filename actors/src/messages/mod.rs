//! Every message that crosses actors, in one place: this file, and `tree.rs` for the
//! supervision tree's own messages (failures, watchers' reports, `Retire`, `InjectPanic`),
//! which import nothing of alerting, analysis or storage. Both are re-exported here.
//!
//! Commands are verb phrases (`StoreBatch`, `Retire`), events past tense (`DaemonStarted`,
//! `ActorFailed`). The reply type sits beside each message in its `rtype`.

pub mod tree;

pub use tree::*;

use std::sync::Arc;

use actix::prelude::*;

use crate::alerts::{AlertCallback, ThresholdRule};
use crate::analyzer::{DaemonReport, HostReport};
use crate::recorder::RawSample;
use crate::telemetry::{ActorKind, Status};
use crate::types::{Alert, DaemonId, DaemonSpec, LifecycleEvent, MetricBatch, TimestampMs};

// ---- to the supervisor -------------------------------------------------------------------

/// Asks for the top children of a daemon's process tree at its watcher's last probe; `None`
/// when it is not watched or has no descendant.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<crate::watcher::tree::TopChildren>")]
pub struct GetTopChildren {
    /// Which daemon.
    pub daemon: DaemonId,
}

/// The host started a daemon (or it came back under a new pid): watch it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DaemonStarted {
    /// Who and which pid.
    pub spec: DaemonSpec,
}

/// The host stopped a daemon on purpose: retire its watcher and record the stop.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DaemonStopped {
    /// Which daemon.
    pub id: DaemonId,
}

/// Asks for perfvisor's own status.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Status")]
pub struct GetStatus;

/// Stops everything in order (watchers, collector drain, analyzer, dispatcher, storage
/// flush) and replies when every accepted sample is on disk.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Where to inject a panic (fault injection for tests and chaos runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PanicTarget {
    /// A singleton actor of this kind (`Watcher` means any one watcher).
    Kind(ActorKind),
    /// The watcher of this daemon.
    Watcher(DaemonId),
}

/// Routes a panic injection through the supervisor to its target. Replies false when the
/// target does not exist.
#[derive(Debug, Clone, Message)]
#[rtype(result = "bool")]
pub struct InjectPanicInto {
    /// The target.
    pub target: PanicTarget,
}

// ---- to any actor ------------------------------------------------------------------------

/// Replies once every message sent to the actor before it has been handled.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Flush;

// ---- to the collector --------------------------------------------------------------------

/// Raw application samples taken from the recorder channel by the intake thread.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AppSamplesReceived {
    /// The samples, in recording order.
    pub samples: Vec<RawSample>,
}

/// Tells the collector a daemon's labels, so app samples recorded for it carry them.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RegisterDaemon {
    /// The daemon.
    pub spec: DaemonSpec,
}

/// Drains the recorder channel completely and forwards everything; replies when done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct DrainRecorder;

// ---- to the analyzer ---------------------------------------------------------------------

/// A batch to fold into the analyzer's windows (shared with storage, never copied).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AnalyzeBatch {
    /// The batch.
    pub batch: Arc<MetricBatch>,
}

/// Closed histogram intervals, whose sketches the analyzer merges into the window
/// statistics of its reports (their samples travel in an [`AnalyzeBatch`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AnalyzeHistograms {
    /// The intervals, in the order they closed.
    pub intervals: Vec<crate::collector::ClosedInterval>,
}

/// Asks for one daemon's report.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<DaemonReport>")]
pub struct GetReport {
    /// Which daemon.
    pub daemon: DaemonId,
}

/// The host restarts or redeploys a daemon on purpose: until its new process runs (at most
/// `expected`), its exit and restart are intended lifecycle events, which count against
/// nothing; its alerts are not silenced, so a resolution still reaches subscribers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DaemonRestarting {
    /// The daemon.
    pub id: DaemonId,
    /// How long the restart may take.
    pub expected: std::time::Duration,
}

/// Asks for the latest sample of every series the analyzer holds.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<crate::types::Sample>")]
pub struct GetLatest;

/// Asks for the host's report.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<HostReport>")]
pub struct GetHostReport;

/// A daemon lifecycle event (restarts and exits count against its stability).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DaemonLifecycle {
    /// The event, as stored.
    pub event: LifecycleEvent,
}

// ---- to the alert dispatcher -------------------------------------------------------------

/// Observations to match against the alert rules.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct EvaluateRules {
    /// When the analyzer handed them over.
    pub now_ms: TimestampMs,
    /// The samples.
    pub batch: Arc<MetricBatch>,
}

/// A candidate for the rule engine: the analyzer's (`bottleneck.<kind>`,
/// `anomaly.<metric>`) or perfvisor's own (`perfvisor.storage_failing`,
/// `perfvisor.degraded`). Firing raises, resolved clears, for every signal rule that follows
/// its name; a candidate no enabled rule follows makes no notification.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RaiseAlert {
    /// The candidate.
    pub alert: Alert,
}

/// Replaces the rules, sinks and silences that came from the config file (a reload). Rules
/// the host added and silences made through the API are kept.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<crate::alerts::AlertingChange, String>")]
pub struct ReplaceAlerting {
    /// The config's rules, whole.
    pub rules: Vec<ThresholdRule>,
    /// The config's sinks, when they changed (rebuilt, the old ones drain and stop).
    pub sinks: Option<Vec<(String, crate::alerts::SinkConfig)>>,
    /// The config's silences, when they changed.
    pub silences: Option<Vec<crate::alerts::Silence>>,
}

/// [`ReplaceAlerting`] as the supervisor hands it to the dispatcher, sinks already started.
#[derive(Debug, Clone, Message)]
#[rtype(result = "crate::alerts::AlertingChange")]
pub struct ReplaceRules {
    /// The config's rules, whole.
    pub rules: Vec<ThresholdRule>,
    /// The new sinks, if they changed.
    pub sinks: Option<Vec<Arc<crate::alerts::Sink>>>,
    /// The config's silences, if they changed.
    pub silences: Option<Vec<crate::alerts::Silence>>,
}

/// Asks for every rule (enabled or not) with its origin and settings in words.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<crate::alerts::RuleInfo>")]
pub struct GetRules;

/// Asks for the anomaly candidates seen per source over the last hour.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<(crate::types::Source, u64)>")]
pub struct GetAnomalyRates;

/// Adds a threshold rule.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AddRule {
    /// The rule.
    pub rule: ThresholdRule,
}

/// Subscribes an actor to every alert notification.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SubscribeAlerts {
    /// The host's actor.
    pub recipient: Recipient<Alert>,
}

/// Subscribes a tokio-friendly stream to every alert notification (see
/// [`crate::alerts::AlertStream`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SubscribeStream {
    /// The dispatcher's end of the stream.
    pub sender: crate::alerts::StreamSender,
}

/// Subscribes a closure to every alert notification. It runs on a thread of its own, so a
/// slow closure never holds back the dispatcher or other subscribers.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct SubscribeCallback {
    /// The closure.
    pub callback: AlertCallback,
}

impl std::fmt::Debug for SubscribeCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubscribeCallback")
    }
}

/// Adds (or replaces, by id) a silence.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), crate::alerts::SilenceError>")]
pub struct AddSilence {
    /// The silence.
    pub silence: crate::alerts::Silence,
}

/// Removes a silence; answers whether it existed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "bool")]
pub struct RemoveSilence {
    /// Its id.
    pub id: String,
}

/// Asks for the silences.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<crate::alerts::Silence>")]
pub struct GetSilences;

/// Asks for the alerts firing now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<Alert>")]
pub struct GetFiring;

// ---- to a watcher ------------------------------------------------------------------------
