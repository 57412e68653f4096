//! The daemon manager: launches the daemons perfvisor manages, keeps them alive by policy,
//! checks their health, and stops them with their whole process tree.
//!
//! # Shape
//! One [`Manager`] handle holds a table of daemons; each daemon has one supervisor thread
//! (`daemon.rs`) that is the only writer of its status. Its process runs in its own process
//! group, a reaper thread waits for it, two log threads copy stdout and stderr into rotated
//! files (`logs.rs`), and one timer thread per health check probes it (`checks.rs`). All of
//! them report to the supervisor by message, so a single loop decides every transition.
//! Pure logic sits apart and is tested without processes: the restart policy (`policy.rs`)
//! and validation, start order and reload diff (`plan.rs`).
//!
//! # Restart policy
//! When a process ends, the mode decides whether it is restarted at all: `Always` restarts
//! every exit, `OnFailure` only a non-zero code or a death by signal, `Never` none. A restart
//! waits `backoff_initial × backoff_factor^(n−1)`, scaled by `1 ± jitter` and capped at
//! `backoff_max`, where `n` counts exits since the last stable run: a run of `stable_after`
//! or more resets it. An exit within `startup_grace` is a *fast* failure; after
//! `max_fast_failures` of them in a row the daemon is `Fatal` and is not restarted, except
//! once every `slow_retry` if that is set (a fast failure then is fatal again at once, so
//! the restart budget is never exceeded). A liveness check failing `failures` times in a row
//! (after the grace period) stops the daemon and counts as a failed exit.
//!
//! # Stopping
//! The stop signal goes to the whole process group; after `stop_timeout` the group gets
//! SIGKILL. Whenever a daemon's leader ends — stopped, crashed or exited — what is left of
//! its group is SIGKILLed, so grandchildren never outlive it. A daemon that puts children
//! into a session or group of its own (`setsid`) escapes this, as under any group-based
//! supervisor.
//!
//! # Surviving a crash of perfvisor
//! A manager made with [`Manager::with_state_dir`] records every process it starts (pid and
//! start time) in a state file and gives each daemon FIFOs instead of pipes for its output
//! (`state.rs`), so a perfvisor killed without stopping its daemons (SIGKILL, OOM killer, a
//! panic that aborts) leaves them running, with nothing that would make them fail, and the
//! next one re-adopts them: it watches each one's exit through a pidfd (or `/proc`), applies
//! checks and restart policy, and never starts a second copy. Nothing is forked before its
//! start is on disk, and a process whose pid cannot be recorded is killed, so a full disk or
//! EMFILE fails the start visibly instead of leaving a process nobody will find (`daemon.rs`,
//! `spawn_process`). [`Manager::new`] keeps nothing
//! on disk: its daemons are orphaned if its process dies without shutting it down.
//!
//! # Start order
//! `depends_on` orders start-up: a daemon waits until each dependency has a process and, if
//! that dependency has readiness checks, is ready or past its `startup_grace`. Shutdown goes
//! in reverse: dependents first.

mod checks;
mod daemon;
mod logs;
mod plan;
mod policy;
mod process;
mod runtime;
mod spec;
mod state;
#[cfg(test)]
mod tests;

// The config's machine checks look users up the way a spawn does.
pub use logs::{log_path, rotated_path};
#[cfg(feature = "config")]
pub(crate) use process::lookup_user;
pub use process::set_cgroup_parent;
pub use runtime::{Manager, DROP_SHUTDOWN_TIMEOUT};
pub use spec::{
    describe_exit, CheckKind, CheckSpec, DaemonState, DaemonStatus, ExitInfo, LogSpec, ManagedSpec,
    ManagerDiff, ManagerError, ManagerEvent, RestartMode, StopIntent, DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_JITTER, DEFAULT_LOG_KEEP,
    DEFAULT_LOG_MAX_SIZE, DEFAULT_MAX_FAST_FAILURES, DEFAULT_STABLE_AFTER, DEFAULT_STARTUP_GRACE,
    DEFAULT_STOP_TIMEOUT,
};
