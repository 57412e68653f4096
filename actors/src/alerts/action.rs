//! Actions taken because of alerts: restarting a daemon through whoever manages it (the
//! host's [`DaemonControl`] when embedded), or running a command. Rate-limited per daemon so
//! that an action can never loop (restart, same alert, restart…), run on a thread of their
//! own so a slow control never holds back alert delivery, and recorded in history.
//!
//! Limits (per daemon, [`ActionLimits`]): at most `max_per_window` restarts within `window`
//! (default 3 per hour, the same budget as a restart policy) and at least `min_interval`
//! between two (default 10 minutes: time for the analyzer to see the fresh process and
//! confirm or clear the problem). A refused action is recorded as `refused` with the reason.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::rules::RuleAction;
use crate::storage::StorageHandle;
use crate::types::{ActionRecord, Alert, DaemonId, TimestampMs};

/// Restarts daemons on perfvisor's behalf. The host implements it (in the standalone binary,
/// its own daemon manager does). Called on a perfvisor thread; may block.
pub trait DaemonControl: Send + Sync + 'static {
    /// Restarts the daemon; `Err` says why it could not.
    fn restart(&self, daemon: &DaemonId) -> Result<(), String>;
}

impl std::fmt::Debug for dyn DaemonControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaemonControl")
    }
}

/// A boxed future that can be sent between threads.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Restarts daemons on perfvisor's behalf, for async hosts: the restart is a future run on
/// the host's tokio runtime (the one current when the control was set), so it may await the
/// host's own channels, locks and child processes. Any `Fn(DaemonId) -> impl Future` closure
/// is one:
///
/// ```
/// # use perfvisor_actors::alerts::AsyncDaemonControl;
/// # use perfvisor_actors::types::DaemonId;
/// fn control() -> impl AsyncDaemonControl {
///     |daemon: DaemonId| async move {
///         // e.g. send a restart request to the host's manager task and await its answer
///         Ok::<(), String>(())
///     }
/// }
/// ```
pub trait AsyncDaemonControl: Send + Sync + 'static {
    /// Restarts the daemon; `Err` says why it could not.
    fn restart(&self, daemon: DaemonId) -> BoxFuture<Result<(), String>>;
}

impl<F, Fut> AsyncDaemonControl for F
where
    F: Fn(DaemonId) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn restart(&self, daemon: DaemonId) -> BoxFuture<Result<(), String>> {
        Box::pin(self(daemon))
    }
}

/// Where an async control's futures run.
enum Runtime {
    /// The host's runtime, current when the control was set.
    Host(tokio::runtime::Handle),
    /// A runtime of perfvisor's own, when none was current.
    Own(tokio::runtime::Runtime),
}

/// The control in force.
#[derive(Clone)]
enum Control {
    Blocking(Arc<dyn DaemonControl>),
    Async(Arc<dyn AsyncDaemonControl>, Arc<Runtime>),
}

impl Control {
    fn restart(&self, daemon: &DaemonId) -> Result<(), String> {
        match self {
            Control::Blocking(c) => c.restart(daemon),
            Control::Async(c, runtime) => {
                let future = c.restart(daemon.clone());
                match runtime.as_ref() {
                    Runtime::Host(handle) => handle.block_on(future),
                    Runtime::Own(rt) => rt.block_on(future),
                }
            }
        }
    }
}

/// The daemon control restart actions use, replaceable while perfvisor runs (the host's
/// restart logic often exists only after the engine started). Cheap to clone; every clone
/// is the same slot.
#[derive(Clone, Default)]
pub struct ControlSlot(Arc<RwLock<Option<Control>>>);

impl std::fmt::Debug for ControlSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ControlSlot").field(&self.is_set()).finish()
    }
}

impl ControlSlot {
    /// A slot holding `control`, if any.
    pub fn new(control: Option<Arc<dyn DaemonControl>>) -> Self {
        ControlSlot(Arc::new(RwLock::new(control.map(Control::Blocking))))
    }

    /// Uses a blocking control from now on (called on perfvisor's action thread).
    pub fn set(&self, control: Arc<dyn DaemonControl>) {
        self.put(Some(Control::Blocking(control)));
    }

    /// Uses an async control from now on. Its futures run on the tokio runtime current
    /// here; without one, on a single-threaded runtime of perfvisor's own.
    pub fn set_async(&self, control: Arc<dyn AsyncDaemonControl>) -> std::io::Result<()> {
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(handle) => Runtime::Host(handle),
            Err(_) => Runtime::Own(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
            ),
        };
        self.put(Some(Control::Async(control, Arc::new(runtime))));
        Ok(())
    }

    /// Removes the control: restart actions are refused (and recorded so) until one is set.
    pub fn clear(&self) {
        self.put(None);
    }

    /// Whether a control is set.
    pub fn is_set(&self) -> bool {
        self.0.read().map(|c| c.is_some()).unwrap_or(false)
    }

    fn put(&self, control: Option<Control>) {
        match self.0.write() {
            Ok(mut slot) => *slot = control,
            Err(poisoned) => *poisoned.into_inner() = control,
        }
    }

    fn get(&self) -> Option<Control> {
        match self.0.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// How often actions may run per daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionLimits {
    /// Most actions per daemon within `window`.
    pub max_per_window: u32,
    /// The window.
    pub window: Duration,
    /// Least time between two actions on one daemon.
    pub min_interval: Duration,
    /// How long a command may run before it is killed.
    pub exec_timeout: Duration,
}

impl Default for ActionLimits {
    fn default() -> Self {
        ActionLimits {
            max_per_window: 3,
            window: Duration::from_secs(3600),
            min_interval: Duration::from_secs(600),
            exec_timeout: Duration::from_secs(30),
        }
    }
}

/// One action to carry out.
struct Job {
    action: RuleAction,
    alert: Alert,
    at_ms: TimestampMs,
}

/// Decides, rate-limits, carries out and records actions.
pub struct ActionRunner {
    limits: ActionLimits,
    recent: HashMap<Option<DaemonId>, VecDeque<TimestampMs>>,
    jobs: crossbeam_channel::Sender<Job>,
}

impl std::fmt::Debug for ActionRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionRunner")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn describe(action: &RuleAction) -> String {
    match action {
        RuleAction::RestartDaemon => "restart".into(),
        RuleAction::Exec { program, .. } => format!("exec {program}"),
    }
}

impl ActionRunner {
    /// A runner whose worker thread carries out actions with `control` (restarts are refused
    /// without one) and records them in `storage`.
    pub fn spawn(
        control: ControlSlot,
        limits: ActionLimits,
        storage: StorageHandle,
    ) -> std::io::Result<ActionRunner> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(64);
        std::thread::Builder::new()
            .name("perfvisor-actions".into())
            .spawn(move || {
                for job in rx {
                    let current = control.get();
                    let record = carry_out(&job, current.as_ref(), limits.exec_timeout);
                    log(&record);
                    storage.record_action(record);
                }
            })?;
        Ok(ActionRunner {
            limits,
            recent: HashMap::new(),
            jobs: tx,
        })
    }

    /// Asks for the action of a firing alert. Returns the record when it is refused at
    /// once (rate limit, queue full); otherwise it runs on the worker, which records it.
    pub fn request(
        &mut self,
        action: &RuleAction,
        alert: &Alert,
        now: TimestampMs,
        storage: &StorageHandle,
    ) -> Option<ActionRecord> {
        let key = alert.daemon.clone();
        let window_ms = self.limits.window.as_millis() as i64;
        let min_ms = self.limits.min_interval.as_millis() as i64;
        let times = self.recent.entry(key).or_default();
        while times.front().is_some_and(|&t| t <= now - window_ms) {
            times.pop_front();
        }
        let refused = |detail: String| ActionRecord {
            ts_ms: now,
            daemon: alert.daemon.clone(),
            rule: alert.rule.clone(),
            action: describe(action),
            outcome: "refused".into(),
            detail,
        };
        let reason = if times.len() as u32 >= self.limits.max_per_window {
            Some(format!(
                "{} actions within {:?} already (limit {}); not again until the oldest leaves the window",
                times.len(),
                self.limits.window,
                self.limits.max_per_window
            ))
        } else if let Some(&last) = times.back().filter(|&&t| now - t < min_ms) {
            Some(format!(
                "the last action was {} ms ago; at least {:?} must pass between two",
                now - last,
                self.limits.min_interval
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            let record = refused(reason);
            log(&record);
            storage.record_action(record.clone());
            return Some(record);
        }
        let job = Job {
            action: action.clone(),
            alert: alert.clone(),
            at_ms: now,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {
                times.push_back(now);
                None
            }
            Err(_) => {
                let record = refused("the action queue is full".into());
                log(&record);
                storage.record_action(record.clone());
                Some(record)
            }
        }
    }
}

fn log(record: &ActionRecord) {
    tracing::warn!(
        daemon = record.daemon.as_ref().map(|d| d.as_str()).unwrap_or("-"),
        rule = %record.rule,
        action = %record.action,
        outcome = %record.outcome,
        detail = %record.detail,
        "Alert action."
    );
}

/// Runs one job and says how it went.
fn carry_out(job: &Job, control: Option<&Control>, timeout: Duration) -> ActionRecord {
    let mut record = ActionRecord {
        ts_ms: job.at_ms,
        daemon: job.alert.daemon.clone(),
        rule: job.alert.rule.clone(),
        action: describe(&job.action),
        outcome: "done".into(),
        detail: String::new(),
    };
    let result =
        match (&job.action, &job.alert.daemon, control) {
            (RuleAction::RestartDaemon, Some(daemon), Some(control)) => control.restart(daemon),
            (RuleAction::RestartDaemon, None, _) => {
                record.outcome = "refused".into();
                Err("the alert names no daemon to restart".into())
            }
            (RuleAction::RestartDaemon, Some(_), None) => {
                record.outcome = "refused".into();
                Err("no daemon control is registered (embedding: PerfvisorBuilder::daemon_control, \
                 Perfvisor::set_daemon_control or Perfvisor::set_async_daemon_control)"
                .into())
            }
            (RuleAction::Exec { program, args }, _, _) => run(program, args, &job.alert, timeout),
        };
    match result {
        Ok(()) => record.detail = format!("because {}", job.alert.message),
        Err(why) => {
            if record.outcome == "done" {
                record.outcome = "failed".into();
            }
            record.detail = why;
        }
    }
    record
}

/// Runs a program (no shell) with the alert as JSON on stdin; kills it and its process group
/// after `timeout`.
fn run(program: &str, args: &[String], alert: &Alert, timeout: Duration) -> Result<(), String> {
    let json = serde_json::to_vec(alert).map_err(|e| format!("alert not encodable: {e}"))?;
    crate::exec::run(std::path::Path::new(program), args, Some(json), timeout)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::storage::tests::temp_db;
    use crate::storage::StorageReader;
    use crate::types::{AlertState, Labels, SeriesKey, Severity, Source};
    use std::time::Instant;

    struct Counting(AtomicU32);
    impl DaemonControl for Counting {
        fn restart(&self, _: &DaemonId) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn leak_alert() -> Alert {
        Alert {
            rule: "restart_on_leak".into(),
            series: SeriesKey::new(
                Source::Daemon(DaemonId::new("d")),
                "process.memory.usage_bytes",
                Labels::empty(),
            ),
            daemon: Some(DaemonId::new("d")),
            project: None,
            severity: Severity::Critical,
            state: AlertState::Firing,
            value: 1.0,
            threshold: 0.0,
            since_ms: 0,
            at_ms: 0,
            message: "leak".into(),
            recommendations: Vec::new(),
            auto_actionable: true,
        }
    }

    /// Restarts run through the control, at most `max_per_window` per window and never
    /// closer than `min_interval`; refusals and runs are recorded.
    #[test]
    fn restarts_are_rate_limited_and_recorded() {
        let (_dir, path) = temp_db();
        let storage = crate::storage::tests::spawn_test(&path);
        let control = Arc::new(Counting(AtomicU32::new(0)));
        let limits = ActionLimits {
            max_per_window: 2,
            window: Duration::from_secs(3600),
            min_interval: Duration::from_secs(60),
            exec_timeout: Duration::from_secs(5),
        };
        let mut runner = ActionRunner::spawn(
            ControlSlot::new(Some(control.clone())),
            limits,
            storage.clone(),
        )
        .unwrap();
        let a = leak_alert();
        assert!(runner
            .request(&RuleAction::RestartDaemon, &a, 0, &storage)
            .is_none());
        let too_soon = runner.request(&RuleAction::RestartDaemon, &a, 30_000, &storage);
        assert!(too_soon.unwrap().detail.contains("at least"));
        assert!(runner
            .request(&RuleAction::RestartDaemon, &a, 90_000, &storage)
            .is_none());
        let over = runner.request(&RuleAction::RestartDaemon, &a, 200_000, &storage);
        assert!(over.unwrap().detail.contains("limit 2"));
        // The oldest left the window.
        assert!(runner
            .request(&RuleAction::RestartDaemon, &a, 3_600_001, &storage)
            .is_none());
        let started = Instant::now();
        while control.0.load(Ordering::SeqCst) < 3 {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        storage.shutdown(Duration::from_secs(30)).unwrap();
        let actions = StorageReader::open(&path)
            .unwrap()
            .actions(None, i64::MIN, i64::MAX)
            .unwrap();
        let outcomes: Vec<&str> = actions.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(
            outcomes.iter().filter(|o| **o == "done").count(),
            3,
            "{actions:?}"
        );
        assert_eq!(
            outcomes.iter().filter(|o| **o == "refused").count(),
            2,
            "{actions:?}"
        );
    }

    /// A command gets the alert on stdin; one that overruns is killed; a missing one fails.
    #[test]
    fn commands_run_without_a_shell_and_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("alert.json");
        let script = dir.path().join("save.sh");
        std::fs::write(&script, format!("#!/bin/sh\ncat > {}\n", out.display())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let a = leak_alert();
        run(script.to_str().unwrap(), &[], &a, Duration::from_secs(10)).unwrap();
        let saved: Alert = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(saved, a);
        let started = Instant::now();
        let err = run("/bin/sleep", &["5".into()], &a, Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let err = run("/nonexistent/tool", &[], &a, Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("/nonexistent/tool"), "{err}");
    }
}
