//! The immutable description of one managed daemon, and the public status, event and error
//! types the manager speaks. A daemon's supervisor rebuilds every process from its spec, so a
//! changed spec is a new value, never an edit in place.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Default first restart delay ([`ManagedSpec::backoff_initial`]).
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Default cap on the restart delay ([`ManagedSpec::backoff_max`]).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Default growth factor of the restart delay ([`ManagedSpec::backoff_factor`]).
pub const DEFAULT_BACKOFF_FACTOR: f64 = 2.0;
/// Default relative jitter of the restart delay ([`ManagedSpec::jitter`]).
pub const DEFAULT_JITTER: f64 = 0.2;
/// Default uptime after which the failure counters reset ([`ManagedSpec::stable_after`]).
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(60);
/// Default start-up grace period ([`ManagedSpec::startup_grace`]).
pub const DEFAULT_STARTUP_GRACE: Duration = Duration::from_secs(5);
/// Default number of consecutive fast failures before giving up ([`ManagedSpec::max_fast_failures`]).
pub const DEFAULT_MAX_FAST_FAILURES: u32 = 5;
/// Default time between the stop signal and SIGKILL ([`ManagedSpec::stop_timeout`]).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default size at which a log file is rotated ([`LogSpec::max_size`]): 10 MiB.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default number of rotated log files kept ([`LogSpec::keep`]).
pub const DEFAULT_LOG_KEEP: u32 = 5;

/// When a daemon that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// Restart after every exit, clean or not.
    Always,
    /// Restart only after a non-zero exit code or a death by signal.
    OnFailure,
    /// Never restart; the daemon stays `Exited`.
    Never,
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// `GET` of a plain `http://host:port/path` URL; a 2xx or 3xx status passes.
    Http {
        /// The URL to fetch (only `http://` is supported).
        url: String,
    },
    /// A TCP connection to `host:port`; an accepted connection passes.
    Tcp {
        /// The address to connect to, as `host:port`.
        address: String,
    },
    /// A program run without a shell; exit code 0 passes, and it is killed at the timeout.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

/// One readiness or liveness check of a daemon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckSpec {
    /// What to probe.
    pub kind: CheckKind,
    /// Time between two probes; the first probe runs as soon as the process has started.
    pub interval: Duration,
    /// Longest a probe may take before it counts as failed.
    pub timeout: Duration,
    /// Consecutive failures that count: a liveness check then restarts the daemon, a
    /// readiness check marks it not ready again.
    pub failures: u32,
    /// `true`: the check gates readiness (and dependents); `false`: a liveness check.
    pub readiness: bool,
}

/// Where a daemon's stdout and stderr go and how they are rotated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSpec {
    /// Directory of `<name>.out.log` and `<name>.err.log`; created when missing.
    pub dir: PathBuf,
    /// Size in bytes at which a file is rotated (default [`DEFAULT_LOG_MAX_SIZE`]).
    pub max_size: u64,
    /// Number of rotated files (`.1`, `.2`, …) kept (default [`DEFAULT_LOG_KEEP`]).
    pub keep: u32,
}

/// Everything the manager needs to run, restart, check and stop one daemon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManagedSpec {
    /// Unique name, used in events, log file names and `depends_on`.
    pub name: String,
    /// Program and arguments, executed directly (no shell).
    pub command: Vec<String>,
    /// Variables added to (or overriding) perfvisor's own environment.
    pub env: BTreeMap<String, String>,
    /// Working directory; perfvisor's own when `None`.
    pub cwd: Option<PathBuf>,
    /// User to run as (looked up by name); needs perfvisor to run as root.
    pub user: Option<String>,
    /// When an exited daemon is started again.
    pub restart: RestartMode,
    /// First restart delay (default [`DEFAULT_BACKOFF_INITIAL`]).
    pub backoff_initial: Duration,
    /// Cap on the restart delay (default [`DEFAULT_BACKOFF_MAX`]).
    pub backoff_max: Duration,
    /// Growth of the delay per consecutive failure, at least 1 (default [`DEFAULT_BACKOFF_FACTOR`]).
    pub backoff_factor: f64,
    /// Relative jitter in `[0, 1]` applied as `delay × (1 ± jitter)` (default [`DEFAULT_JITTER`]).
    pub jitter: f64,
    /// Uptime after which the failure counters reset (default [`DEFAULT_STABLE_AFTER`]).
    pub stable_after: Duration,
    /// An exit within this uptime is a fast failure; liveness failures in it do not count
    /// (default [`DEFAULT_STARTUP_GRACE`]).
    pub startup_grace: Duration,
    /// Consecutive fast failures after which the daemon is fatal; 0 never gives up
    /// (default [`DEFAULT_MAX_FAST_FAILURES`]).
    pub max_fast_failures: u32,
    /// When fatal, try once again every this long; `None` stays fatal.
    pub slow_retry: Option<Duration>,
    /// Signal sent to the process group to stop it (default `SIGTERM`).
    pub stop_signal: i32,
    /// Time between the stop signal and SIGKILL (default [`DEFAULT_STOP_TIMEOUT`]).
    pub stop_timeout: Duration,
    /// Readiness and liveness checks.
    pub checks: Vec<CheckSpec>,
    /// Daemons that must be running (and ready) before this one starts.
    pub depends_on: Vec<String>,
    /// Log files of stdout and stderr.
    pub logs: LogSpec,
}

impl ManagedSpec {
    /// A spec with every field at its documented default, logging under `log_dir`.
    pub fn new(name: impl Into<String>, command: Vec<String>, log_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            command,
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            restart: RestartMode::OnFailure,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            backoff_factor: DEFAULT_BACKOFF_FACTOR,
            jitter: DEFAULT_JITTER,
            stable_after: DEFAULT_STABLE_AFTER,
            startup_grace: DEFAULT_STARTUP_GRACE,
            max_fast_failures: DEFAULT_MAX_FAST_FAILURES,
            slow_retry: None,
            stop_signal: libc::SIGTERM,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            checks: Vec::new(),
            depends_on: Vec::new(),
            logs: LogSpec {
                dir: log_dir.into(),
                max_size: DEFAULT_LOG_MAX_SIZE,
                keep: DEFAULT_LOG_KEEP,
            },
        }
    }

    /// Whether any check gates readiness.
    pub fn has_readiness(&self) -> bool {
        self.checks.iter().any(|c| c.readiness)
    }
}

/// Where a daemon is in its life cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum DaemonState {
    /// Waiting for the daemons it depends on.
    Waiting {
        /// The dependencies not yet running (and ready).
        on: Vec<String>,
    },
    /// Process spawned; within its start-up grace period.
    Starting,
    /// Process running past its start-up grace period.
    Running,
    /// Exited; restarts at `until`.
    Backoff {
        /// When the restart is due.
        until: SystemTime,
    },
    /// Stop signal sent; waiting for the process group to die.
    Stopping,
    /// Stopped on request; no process.
    Stopped,
    /// Exited and not restarted by the policy.
    Exited {
        /// Exit code, when it exited normally.
        code: Option<i32>,
        /// Signal number, when a signal killed it.
        signal: Option<i32>,
    },
    /// Gave up after repeated fast failures.
    Fatal {
        /// Why the manager gave up.
        reason: String,
        /// When the slow retry is due, if one is configured.
        retry_at: Option<SystemTime>,
    },
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// How long it had run.
    pub uptime: Duration,
    /// When the exit was observed.
    pub at: SystemTime,
}

/// How a process ended, in words: `exit code 1`, `killed by signal 9 (SIGKILL)`.
pub fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => match signal_name(s) {
            Some(name) => format!("killed by signal {s} ({name})"),
            None => format!("killed by signal {s}"),
        },
        (None, None) => "ended without an exit status".into(),
    }
}

/// The name of a common signal number (`SIGKILL` for 9).
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    const KNOWN: [(i32, &str); 14] = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
    ];
    KNOWN
        .iter()
        .find(|(n, _)| *n == signal)
        .map(|(_, name)| *name)
}

/// A snapshot of one managed daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonStatus {
    /// The daemon's name.
    pub name: String,
    /// Its life-cycle state.
    pub state: DaemonState,
    /// Pid (and process-group id) of the running process.
    pub pid: Option<u32>,
    /// When the current (or last) process was started.
    pub started_at: Option<SystemTime>,
    /// Restarts since the daemon was added (automatic, slow retries and manual).
    pub restarts: u32,
    /// How the last process ended.
    pub last_exit: Option<ExitInfo>,
    /// Whether every readiness check passes (`true` without readiness checks once running).
    pub ready: bool,
    /// Why the last attempt to start a process failed: the spawn itself, or (a persistent
    /// manager) recording it in the state file, which a start never goes without. `None`
    /// once a process runs.
    pub last_error: Option<String>,
}

/// What the manager tells its owner; the binary turns these into metrics, alerts and logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ManagerEvent {
    /// A process was spawned.
    Started {
        /// Daemon name.
        name: String,
        /// Pid, also the process-group id.
        pid: u32,
    },
    /// A process a previous run of a persistent manager started, still running, was taken
    /// over instead of starting a second copy ([`Manager::with_state_dir`](super::Manager::with_state_dir)).
    Adopted {
        /// Daemon name.
        name: String,
        /// Pid, also the process-group id.
        pid: u32,
    },
    /// A start failed: the spawn (missing program, bad working directory, …), or, for a
    /// persistent manager, recording it in the state file (a full disk, EMFILE, …), without
    /// which nothing is started; counts as a fast failure.
    SpawnFailed {
        /// Daemon name.
        name: String,
        /// What failed, with the operating system's error (also the status's `last_error`).
        error: String,
    },
    /// A process ended.
    Exited {
        /// Daemon name.
        name: String,
        /// Pid of the process that ended.
        pid: u32,
        /// Exit code, when it exited normally.
        code: Option<i32>,
        /// Signal number, when a signal killed it.
        signal: Option<i32>,
        /// How long it had run.
        uptime: Duration,
    },
    /// A restart is scheduled.
    Restarting {
        /// Daemon name.
        name: String,
        /// Delay before the restart.
        delay: Duration,
        /// Consecutive failure count this delay was computed from (1 for the first).
        attempt: u32,
    },
    /// The manager gave up restarting.
    Fatal {
        /// Daemon name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A health check ran.
    CheckResult {
        /// Daemon name.
        name: String,
        /// Index of the check in [`ManagedSpec::checks`].
        check: usize,
        /// Whether it passed.
        ok: bool,
        /// How long the probe took.
        latency: Duration,
        /// Why it failed.
        error: Option<String>,
    },
    /// Every readiness check passes (or the daemon has none and is running).
    Ready {
        /// Daemon name.
        name: String,
    },
    /// The daemon was stopped on request.
    Stopped {
        /// Daemon name.
        name: String,
    },
    /// A running process is about to be stopped on purpose (a stop, restart, reload or
    /// removal asked through the CLI, the API, a config reload or an alert action). Sent
    /// before the stop signal, so whoever watches the process can tell the exit that follows
    /// from a crash.
    Stopping {
        /// Daemon name.
        name: String,
        /// Pid of the process being stopped.
        pid: u32,
        /// Why.
        intent: StopIntent,
        /// How long until a replacement should be running (restart and reload; zero for a
        /// stop): the stop timeout, the start-up grace and a margin.
        expected: Duration,
    },
}

/// Why a managed process is stopped on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopIntent {
    /// `perfvisor stop` (or the API): it stays stopped.
    Stop,
    /// `perfvisor restart`, the API or an alert action: a new process follows.
    Restart,
    /// A config reload changed its settings: a new process follows.
    Reload,
    /// A config reload removed it: it stays stopped.
    Remove,
}

impl StopIntent {
    /// In words, for logs and lifecycle history.
    pub fn as_str(self) -> &'static str {
        match self {
            StopIntent::Stop => "stopped by the operator",
            StopIntent::Restart => "restarted by the operator",
            StopIntent::Reload => "restarted by a config reload",
            StopIntent::Remove => "removed by a config reload",
        }
    }

    /// True when a new process follows.
    pub fn restarts(self) -> bool {
        matches!(self, StopIntent::Restart | StopIntent::Reload)
    }
}

impl ManagerEvent {
    /// The daemon the event is about.
    pub fn name(&self) -> &str {
        match self {
            Self::Started { name, .. }
            | Self::Adopted { name, .. }
            | Self::SpawnFailed { name, .. }
            | Self::Exited { name, .. }
            | Self::Restarting { name, .. }
            | Self::Fatal { name, .. }
            | Self::CheckResult { name, .. }
            | Self::Ready { name }
            | Self::Stopped { name }
            | Self::Stopping { name, .. } => name,
        }
    }
}

/// What a reload did, by daemon name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManagerDiff {
    /// Newly declared daemons, started.
    pub added: Vec<String>,
    /// Daemons no longer declared, stopped and forgotten.
    pub removed: Vec<String>,
    /// Daemons whose spec changed, restarted with the new spec.
    pub changed: Vec<String>,
    /// Daemons left alone.
    pub unchanged: Vec<String>,
}

/// Why the manager refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// One or more specs are invalid; every problem is listed.
    #[error("invalid daemon specs: {}", problems.join("; "))]
    Invalid {
        /// One sentence per problem, naming the daemon and the bad value.
        problems: Vec<String>,
    },
    /// A daemon depends on a name that is not declared.
    #[error(
        "daemon {name:?} depends on {missing:?}, which is not declared; declared daemons: {known}"
    )]
    UnknownDependency {
        /// The dependent daemon.
        name: String,
        /// The undeclared dependency.
        missing: String,
        /// The declared names, comma-separated.
        known: String,
    },
    /// The dependencies form a cycle.
    #[error("dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The daemons on the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// The named daemon is not managed.
    #[error("no managed daemon is named {name:?}; managed daemons: {known}")]
    UnknownDaemon {
        /// The name asked for.
        name: String,
        /// The managed names, comma-separated.
        known: String,
    },
    /// `start_all` was given a name that is already managed (use `update` to change it).
    #[error("daemon {name:?} is already managed; use update to change its spec")]
    AlreadyManaged {
        /// The name.
        name: String,
    },
    /// The daemon's supervisor did not answer in time.
    #[error("daemon {name:?} did not finish {action} within {timeout:?}")]
    Timeout {
        /// The daemon.
        name: String,
        /// What was asked (`"stop"`, …).
        action: &'static str,
        /// How long the manager waited.
        timeout: Duration,
    },
    /// The manager has been shut down.
    #[error("the daemon manager has been shut down")]
    ShutDown,
}
