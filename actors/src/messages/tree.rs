//! The messages of the supervision tree itself: a child's failure, what a watcher reports
//! (its samples, its daemon gone or exec'd), and the commands every actor understands.
//! Nothing here knows of alerting, analysis or storage, so a watcher can use them alone.

use actix::prelude::*;

use crate::counters::ActorKind;
use crate::types::{DaemonId, MetricBatch};

/// A watcher's probe found its daemon gone (exited, or its pid reused by another process).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct WatcherRetired {
    /// Which daemon.
    pub id: DaemonId,
    /// The pid the watcher was watching.
    pub pid: u32,
    /// What the probe saw.
    pub reason: String,
}

/// A watcher's probe saw its daemon's process `exec` another program; the watcher carries on.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DaemonExeced {
    /// Which daemon.
    pub id: DaemonId,
    /// Its pid (unchanged by the exec).
    pub pid: u32,
    /// The program before, when known, and now.
    pub from: Option<std::path::PathBuf>,
    /// The program now.
    pub to: std::path::PathBuf,
}

/// A child failed (a caught panic or an unrecoverable error) and is restarting.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ActorFailed {
    /// Which kind of actor.
    pub kind: ActorKind,
    /// Its name in the tree (`collector`, `watcher:ID`).
    pub name: String,
    /// The panic message or error.
    pub reason: String,
    /// True when the failure exceeded the child's restart budget.
    pub budget_exceeded: bool,
}

/// Makes the receiving actor panic inside its handler, as a bug would.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Samples a watcher collected from its daemon.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SamplesCollected {
    /// The samples.
    pub batch: MetricBatch,
}

/// Takes a last probe, forwards it, and stops the watcher for good.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Retire;
