//! The supervision tree: child specs, the restart policy, the watcher registry, and the one
//! handler shape every supervised actor uses.
//!
//! # Where everything is
//!
//! | file          | what it owns                                                        |
//! |---------------|---------------------------------------------------------------------|
//! | `handlers.rs` | [`supervised_handlers!`] and [`run`]: every handler of every supervised actor goes through them (mailbox accounting, panic guard, failure report) |
//! | `child.rs`    | [`ChildHandle`] (a child's name, counters, restart tracker, where it reports) and [`Restartable`] (fail and stop; wait out the backoff on restart) |
//! | `policy.rs`   | [`RestartPolicy`] and [`RestartTracker`]: permanent / transient / temporary, the budget, the backoff (pure) |
//! | `diff.rs`     | [`diff_watchers`]: which watchers to add, change and remove (pure)   |
//! | `engine.rs`   | [`EngineConfig`] and [`start_engine`]: builds the tree and wires the actors together |
//! | `actor.rs`    | the [`Supervisor`] actor: lifecycle events, the watcher registry, `status()`, shutdown order |
//! | `alarm.rs`    | the storage alarm's hysteresis (raise on trouble, resolve after a quiet period) |
//! | `tests.rs`    | unit tests, including the panic test over every handled message type |
//!
//! The storage writer is no actix actor (it is a thread fed by a crossbeam channel); it
//! guards each command with the same [`crate::panic_guard::guard`] and reports through its
//! [`ChildHandle`] (the failure hook `start_engine` gives it).
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
//! handler would end the actor's task silently. So every handler is declared through
//! [`supervised_handlers!`] and runs its logic through [`run`]: a caught panic is a
//! failure. The failing actor asks its [`ChildHandle`] for a decision, reports
//! [`ActorFailed`](crate::messages::ActorFailed) to the supervisor and stops;
//! `actix::Supervisor` restarts it *with the same mailbox*, so everything queued behind the
//! failing message is still delivered. Only the message being handled is lost, and it is
//! counted in the child's `lost_messages`. The restarted actor is rebuilt from its
//! immutable spec, then waits out its backoff before serving again.
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

mod actor;
mod alarm;
mod child;
mod diff;
mod engine;
mod handlers;
mod policy;
#[cfg(test)]
mod tests;

pub use actor::Supervisor;
#[cfg(test)]
pub use child::FaultPlan;
pub use child::{ChildHandle, Restartable};
pub use diff::{diff_watchers, WatcherDiff};
pub use engine::{start_engine, EngineConfig, EngineError, EngineParts};
pub(crate) use handlers::supervised_handlers;
pub use handlers::{run, tick, Supervisable};
pub use policy::{
    RestartDecision, RestartKind, RestartPolicy, RestartTracker, DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_JITTER, DEFAULT_MAX_RESTARTS,
    DEFAULT_RESTART_PERIOD, DEFAULT_STABLE_AFTER,
};
