//! The supervisor thread of one managed daemon: the only writer of that daemon's status.
//!
//! It owns the spec, the restart counters and the running process. Everything reaches it as a
//! message: commands from the [`Manager`](super::Manager), the exit status from the waiter
//! thread that reaps the process, and probe results from the check threads. Timers (backoff,
//! slow retry, end of the start-up grace, dependency polling) are the timeout of the same
//! `select!`, so one loop decides every transition and nothing races.
//!
//! With a state directory (a persistent manager), every process is recorded there when it
//! starts and forgotten when it ends, its output goes through the daemon's FIFOs, and a
//! supervisor that inherits a record from a previous run re-adopts the process it names
//! (see `state.rs`) instead of starting a second copy.

use std::collections::BTreeMap;
use std::fs::File;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{after, never, select, Receiver, Sender};
use tracing::{debug, error, info, warn};

use super::checks::spawn_check_thread;
use super::logs::{pump, RotatingLog};
use super::policy::{Decision, ExitCounters};
use super::process::{
    decode, open_fifo, pidfd_open, proc_stat, process_age, signal_group, spawn,
    wait_exit_then_kill_group, wait_pidfd, Output,
};
use super::spec::{DaemonState, DaemonStatus, ExitInfo, ManagedSpec, ManagerEvent, StopIntent};
use super::state::{
    fingerprint, invocation_id, locate, pid_reused, still_runs, Record, StateStore, WriteError,
};

/// How often a daemon waiting for its dependencies looks at them again.
const DEPENDENCY_POLL: Duration = Duration::from_millis(20);
/// How long to wait for the kernel to report a SIGKILLed leader's exit before giving up on it.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Added to the stop timeout and start-up grace of an intended restart: how long its exit
/// and the new process's start count as intended rather than as failures.
const INTENDED_RESTART_MARGIN: Duration = Duration::from_secs(10);
/// How often an adopted process is looked at when the kernel has no pidfds.
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// How a process's end is reported to its supervisor.
#[derive(Debug)]
pub(crate) enum ExitReport {
    /// Our child, reaped: its status.
    Status(ExitStatus),
    /// An adopted process (not our child): it ended, with a status nobody can know.
    Unknown,
    /// The status could not be had.
    Lost(String),
}

/// Messages to a daemon's supervisor thread.
#[derive(Debug)]
pub(crate) enum Control {
    /// Start if idle, exited or fatal (clears the failure counters); wait for dependencies.
    Start,
    /// Stop the process (signal, then SIGKILL), then acknowledge.
    Stop {
        timeout: Option<Duration>,
        ack: Sender<()>,
    },
    /// Stop if running and start again at once, clearing the failure counters.
    Restart,
    /// Stop, take the new spec, and start again once dependencies allow.
    Replace { spec: Box<ManagedSpec> },
    /// Stop, acknowledge, and end the thread.
    Remove {
        timeout: Option<Duration>,
        ack: Sender<()>,
    },
    /// A probe result from check `index` of process `generation`.
    Check {
        generation: u64,
        index: usize,
        ok: bool,
        latency: Duration,
        error: Option<String>,
    },
}

/// The manager's table entry for one daemon.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) spec: ManagedSpec,
    pub(crate) status: DaemonStatus,
    /// When the current process started (`None` without a process); dependents look at it.
    pub(crate) up_since: Option<Instant>,
    pub(crate) control: Sender<Control>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

/// State shared by the manager handle and every supervisor thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) events: Sender<ManagerEvent>,
    pub(crate) table: Mutex<BTreeMap<String, Slot>>,
    /// The state directory of a persistent manager.
    pub(crate) state: Option<Mutex<StateStore>>,
}

impl Shared {
    /// The table, even if a panicking thread poisoned it (entries stay consistent per field).
    pub(crate) fn table(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self) -> Option<MutexGuard<'_, StateStore>> {
        self.state
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Removes `name`'s FIFOs, if persistent (the daemon is no longer managed).
    pub(crate) fn forget_fifos(&self, name: &str) {
        if let Some(store) = self.store() {
            store.remove_fifos(name);
        }
    }

    /// Records `name`'s process in the state file (`None`: it has none), if persistent; a
    /// failure is logged. For what the file already covers: a removal, or a process it names.
    pub(crate) fn record(&self, name: &str, record: Option<Record>) {
        if let Err(e) = self.record_durably(name, record) {
            warn!(daemon = %name, error = %e, "Cannot write the managed daemons' state file; it keeps its previous record of this daemon.");
        }
    }

    /// Records `name`'s process in the state file, if persistent, and says whether the
    /// record is on disk (fsynced). Without a state directory there is nothing to write.
    pub(crate) fn record_durably(
        &self,
        name: &str,
        record: Option<Record>,
    ) -> Result<(), WriteError> {
        match self.store() {
            Some(mut store) => store.set(name, record),
            None => Ok(()),
        }
    }

    fn emit(&self, event: ManagerEvent) {
        // The owner may have stopped listening; the manager carries on regardless.
        let _ = self.events.send(event);
    }

    /// Dependencies of `deps` that are not yet up and (if they have readiness checks) ready
    /// or past their start-up grace.
    fn pending(&self, deps: &[String]) -> Vec<String> {
        let table = self.table();
        deps.iter()
            .filter(|d| {
                let Some(slot) = table.get(d.as_str()) else {
                    return true;
                };
                let Some(since) = slot.up_since else {
                    return true;
                };
                let ok = !slot.spec.has_readiness()
                    || slot.status.ready
                    || since.elapsed() >= slot.spec.startup_grace;
                !ok
            })
            .cloned()
            .collect()
    }
}

/// The process of the current generation.
struct Running {
    pid: u32,
    generation: u64,
    started: Instant,
    exit: Receiver<ExitReport>,
    /// Dropping it disconnects the check threads' cancel channel, ending them.
    _cancel_checks: Sender<()>,
    check_failures: Vec<u32>,
    check_passing: Vec<bool>,
    in_grace: bool,
}

enum Phase {
    Idle,
    Waiting,
    Running(Running),
    Backoff(Instant),
    Fatal(Option<Instant>),
}

/// Whether the supervisor loop goes on.
#[derive(PartialEq)]
enum Flow {
    Continue,
    Exit,
}

pub(crate) struct Supervisor {
    name: String,
    spec: ManagedSpec,
    shared: Arc<Shared>,
    control: Receiver<Control>,
    report: Sender<Control>,
    tracker: ExitCounters,
    generation: u64,
    out: Arc<Mutex<RotatingLog>>,
    err: Arc<Mutex<RotatingLog>>,
    /// Read-write ends of the daemon's stdout and stderr FIFOs (persistent managers), held
    /// for the supervisor's life and duplicated into each process.
    fifos: Option<(File, File)>,
    /// The record a previous run left for this daemon: its process is re-adopted.
    inherited: Option<Record>,
    phase: Phase,
}

fn log_files(spec: &ManagedSpec) -> (RotatingLog, RotatingLog) {
    let log = |stream: &str| {
        RotatingLog::new(
            super::logs::log_path(&spec.logs.dir, &spec.name, stream),
            spec.logs.max_size,
            spec.logs.keep,
        )
    };
    (log("out"), log("err"))
}

fn logs_for(spec: &ManagedSpec) -> (Arc<Mutex<RotatingLog>>, Arc<Mutex<RotatingLog>>) {
    let (out, err) = log_files(spec);
    (Arc::new(Mutex::new(out)), Arc::new(Mutex::new(err)))
}

/// A fresh table entry in state `Waiting`, and its control channel's receiver.
pub(crate) fn new_slot(spec: ManagedSpec) -> (Slot, Receiver<Control>, Sender<Control>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let status = DaemonStatus {
        name: spec.name.clone(),
        state: DaemonState::Waiting {
            on: spec.depends_on.clone(),
        },
        pid: None,
        started_at: None,
        restarts: 0,
        last_exit: None,
        ready: false,
        last_error: None,
    };
    let slot = Slot {
        spec,
        status,
        up_since: None,
        control: tx.clone(),
        thread: None,
    };
    (slot, rx, tx)
}

/// Opens the daemon's FIFOs and starts the threads that copy them into its logs for as long
/// as the supervisor holds the returned ends.
fn fifos_for(
    shared: &Shared,
    name: &str,
    out: &Arc<Mutex<RotatingLog>>,
    err: &Arc<Mutex<RotatingLog>>,
) -> Option<(File, File)> {
    let paths = {
        let store = shared.store()?;
        (store.fifo(name, "stdout"), store.fifo(name, "stderr"))
    };
    let opened = open_fifo(&paths.0).and_then(|o| Ok((o, open_fifo(&paths.1)?)));
    match opened {
        Ok(((out_reader, out_keep), (err_reader, err_keep))) => {
            pump(name, "stdout", out_reader, Arc::clone(out));
            pump(name, "stderr", err_reader, Arc::clone(err));
            Some((out_keep, err_keep))
        }
        Err(e) => {
            warn!(daemon = %name, error = %e, "Cannot open the daemon's FIFOs; its output goes through pipes and it will not survive a crash of perfvisor.");
            None
        }
    }
}

/// Start the supervisor thread of `spec`, which begins by re-adopting the process of
/// `inherited` if it still runs, else by waiting for its dependencies.
pub(crate) fn spawn_supervisor(
    spec: ManagedSpec,
    shared: Arc<Shared>,
    control: Receiver<Control>,
    report: Sender<Control>,
    inherited: Option<Record>,
) -> std::io::Result<JoinHandle<()>> {
    let (out, err) = logs_for(&spec);
    let fifos = fifos_for(&shared, &spec.name, &out, &err);
    let sup = Supervisor {
        name: spec.name.clone(),
        spec,
        shared,
        control,
        report,
        tracker: ExitCounters::default(),
        generation: 0,
        out,
        err,
        fifos,
        inherited,
        phase: Phase::Waiting,
    };
    thread::Builder::new()
        .name(format!("daemon-{}", sup.name))
        .spawn(move || sup.run())
}

impl Supervisor {
    fn run(mut self) {
        if let Some(record) = self.inherited.take() {
            self.resume(record);
        }
        loop {
            let now = Instant::now();
            let (exit, deadline) = match &self.phase {
                Phase::Running(r) => (
                    r.exit.clone(),
                    r.in_grace.then(|| r.started + self.spec.startup_grace),
                ),
                Phase::Waiting => (never(), Some(now + DEPENDENCY_POLL)),
                Phase::Backoff(at) => (never(), Some(*at)),
                Phase::Fatal(at) => (never(), *at),
                Phase::Idle => (never(), None),
            };
            let tick = match deadline {
                Some(d) => after(d.saturating_duration_since(now)),
                None => never(),
            };
            select! {
                recv(self.control) -> msg => {
                    // Unreachable while we hold `report`, but a closed channel means: wind down.
                    let Ok(msg) = msg else {
                        self.stop_process(None);
                        return;
                    };
                    if self.handle(msg) == Flow::Exit {
                        return;
                    }
                }
                recv(exit) -> status => {
                    let status = status.unwrap_or_else(|_| ExitReport::Lost("waiter thread vanished".to_string()));
                    self.on_exit(status);
                }
                recv(tick) -> _ => self.on_tick(),
            }
        }
    }

    fn set_status(&self, f: impl FnOnce(&mut Slot)) {
        if let Some(slot) = self.shared.table().get_mut(&self.name) {
            f(slot);
        }
    }

    fn set_state(&self, state: DaemonState) {
        self.set_status(|s| s.status.state = state);
    }

    fn on_tick(&mut self) {
        match &mut self.phase {
            Phase::Waiting => {
                let pending = self.shared.pending(&self.spec.depends_on);
                if pending.is_empty() {
                    self.spawn_process();
                } else {
                    self.set_status(|s| {
                        if s.status.state
                            != (DaemonState::Waiting {
                                on: pending.clone(),
                            })
                        {
                            s.status.state = DaemonState::Waiting { on: pending };
                        }
                    });
                }
            }
            Phase::Backoff(at) | Phase::Fatal(Some(at)) if Instant::now() >= *at => {
                self.set_status(|s| s.status.restarts = s.status.restarts.saturating_add(1));
                self.spawn_process();
            }
            Phase::Running(r) if r.in_grace && r.started.elapsed() >= self.spec.startup_grace => {
                r.in_grace = false;
                self.set_state(DaemonState::Running);
            }
            _ => {}
        }
    }

    fn handle(&mut self, msg: Control) -> Flow {
        match msg {
            Control::Start => match self.phase {
                Phase::Idle | Phase::Fatal(_) | Phase::Backoff(_) => {
                    self.tracker.reset();
                    self.phase = Phase::Waiting;
                    self.set_state(DaemonState::Waiting {
                        on: self.spec.depends_on.clone(),
                    });
                }
                Phase::Waiting | Phase::Running(_) => {}
            },
            Control::Stop { timeout, ack } => {
                self.announce_stop(StopIntent::Stop);
                self.stop_process(timeout);
                self.phase = Phase::Idle;
                self.set_state(DaemonState::Stopped);
                self.shared.emit(ManagerEvent::Stopped {
                    name: self.name.clone(),
                });
                info!(daemon = %self.name, "Daemon stopped.");
                let _ = ack.send(());
            }
            Control::Restart => {
                self.announce_stop(StopIntent::Restart);
                self.stop_process(None);
                self.tracker.reset();
                self.set_status(|s| s.status.restarts = s.status.restarts.saturating_add(1));
                self.spawn_process();
            }
            Control::Replace { spec } => {
                self.announce_stop(StopIntent::Reload);
                self.stop_process(None);
                if spec.logs != self.spec.logs || spec.name != self.spec.name {
                    // In place: the FIFOs' log threads hold these very logs.
                    let (out, err) = log_files(&spec);
                    *self.out.lock().unwrap_or_else(|p| p.into_inner()) = out;
                    *self.err.lock().unwrap_or_else(|p| p.into_inner()) = err;
                }
                self.spec = *spec;
                self.tracker.reset();
                self.set_status(|s| s.status.restarts = s.status.restarts.saturating_add(1));
                self.phase = Phase::Waiting;
                self.set_state(DaemonState::Waiting {
                    on: self.spec.depends_on.clone(),
                });
                info!(daemon = %self.name, "Daemon spec changed; restarting.");
            }
            Control::Remove { timeout, ack } => {
                self.announce_stop(StopIntent::Remove);
                self.stop_process(timeout);
                if self.fifos.is_some() {
                    self.shared.forget_fifos(&self.name);
                }
                self.phase = Phase::Idle;
                self.set_state(DaemonState::Stopped);
                self.shared.emit(ManagerEvent::Stopped {
                    name: self.name.clone(),
                });
                let _ = ack.send(());
                return Flow::Exit;
            }
            Control::Check {
                generation,
                index,
                ok,
                latency,
                error,
            } => {
                self.on_check(generation, index, ok, latency, error);
            }
        }
        Flow::Continue
    }

    /// Starts a process. A persistent manager forks only once the intent to start (the
    /// invocation id the process will carry in its environment, and the spec's fingerprint)
    /// is on disk, and keeps the process only once its pid and start time are: a perfvisor
    /// killed at any moment then finds every process it started, and never starts a second
    /// copy beside one it lost track of.
    ///
    /// If the intent cannot be written (a full disk, EMFILE, …) nothing is forked. If the
    /// pid cannot be written after the fork, the new process is SIGKILLed with its group at
    /// once rather than kept on the intent alone: the intent would still find it through its
    /// environment after a crash, but a daemon may rewrite its environment block
    /// (setproctitle), and a process only just started loses nothing. Either way the start
    /// counts as a fast failure, the reason goes into the status (`last_error`), a
    /// [`ManagerEvent::SpawnFailed`] and the log, and the restart policy retries it.
    fn spawn_process(&mut self) {
        self.generation += 1;
        let persistent = self.shared.state.is_some();
        let fingerprint = fingerprint(&self.spec);
        let invocation = persistent.then(invocation_id);
        if let Some(id) = &invocation {
            let intent = Record {
                pid: None,
                start_ticks: None,
                invocation: id.clone(),
                fingerprint: fingerprint.clone(),
            };
            if let Err(e) = self.shared.record_durably(&self.name, Some(intent)) {
                self.start_failed(format!(
                    "cannot record the start of {} in {}: {}; not starting it, so a restart of perfvisor cannot lose track of it",
                    self.name,
                    e.file.display(),
                    e.source
                ));
                return;
            }
        }
        let output = match &self.fifos {
            Some((out, err)) => Output::Fifos { out, err },
            None => Output::Pipes {
                out: &self.out,
                err: &self.err,
            },
        };
        let mut child = match spawn(&self.spec, output, invocation.as_deref()) {
            Ok(child) => child,
            Err(e) => {
                self.shared.record(&self.name, None);
                self.start_failed(format!("cannot spawn {}: {e}", self.name));
                return;
            }
        };
        let pid = child.id();
        if let Some(id) = invocation {
            // Our unreaped child: its stat is there even if it has already exited.
            let record = Record {
                pid: Some(pid),
                start_ticks: proc_stat(pid).map(|s| s.start_ticks),
                invocation: id,
                fingerprint,
            };
            if let Err(e) = self.shared.record_durably(&self.name, Some(record)) {
                if signal_group(pid, libc::SIGKILL).is_err() {
                    let _ = child.kill();
                }
                if let Err(e) = child.wait() {
                    warn!(daemon = %self.name, pid, error = %e, "Cannot reap the process that could not be recorded.");
                }
                self.shared.record(&self.name, None);
                self.start_failed(format!(
                    "cannot record the pid {pid} of {} in {}: {}; stopped it, so a restart of perfvisor cannot lose track of it",
                    self.name,
                    e.file.display(),
                    e.source
                ));
                return;
            }
        }
        let (exit_tx, exit_rx) = crossbeam_channel::bounded(1);
        let waiter = thread::Builder::new()
            .name(format!("reap-{}", self.name))
            .spawn(move || {
                let mut child = child;
                // The group dies with its leader: leftovers would pile up over restarts.
                if let Err(e) = wait_exit_then_kill_group(pid) {
                    warn!(pid, error = %e, "Cannot kill what is left of the process group.");
                }
                let _ = exit_tx.send(match child.wait() {
                    Ok(status) => ExitReport::Status(status),
                    Err(e) => ExitReport::Lost(e.to_string()),
                });
            });
        if let Err(e) = waiter {
            // Without a reaper we could never see the exit: kill the group and count a failure.
            error!(daemon = %self.name, pid, error = %e, "Cannot start reaper thread; killing daemon.");
            let _ = signal_group(pid, libc::SIGKILL);
            self.shared.record(&self.name, None);
            let decision = self
                .tracker
                .on_exit(&self.spec, true, Duration::ZERO, fastrand::f64());
            self.apply(decision, None, Some(libc::SIGKILL));
            return;
        }
        info!(daemon = %self.name, pid, "Daemon started.");
        self.begin(pid, exit_rx, Instant::now(), SystemTime::now(), false);
    }

    /// A start that did not happen, for `reason`: logged, reported, shown in the status, and
    /// counted as a fast failure by the restart policy (backoff, or fatal past the budget).
    fn start_failed(&mut self, reason: String) {
        error!(daemon = %self.name, reason = %reason, "Daemon not started.");
        self.shared.emit(ManagerEvent::SpawnFailed {
            name: self.name.clone(),
            error: reason.clone(),
        });
        self.set_status(|s| {
            s.status.pid = None;
            s.status.last_error = Some(reason.clone());
            s.up_since = None;
        });
        let decision = match self
            .tracker
            .on_exit(&self.spec, true, Duration::ZERO, fastrand::f64())
        {
            // The policy counts exits; this one never ran, and the fatal reason is what
            // `perfvisor status` shows.
            Decision::Fatal {
                reason: why,
                retry_after,
            } => Decision::Fatal {
                reason: format!("{why}; the last start failed: {reason}"),
                retry_after,
            },
            other => other,
        };
        self.apply(decision, None, None);
    }

    /// Takes over the process a previous run recorded, if it still runs: watches it for its
    /// exit (a pidfd, or /proc when the kernel has none: it is not our child, so it cannot
    /// be waited for), applies checks and the restart policy to it as to a process of ours.
    /// A process started from another command, environment, directory or user than the
    /// spec now says is stopped, and the daemon starts afresh; one that is gone is
    /// forgotten, and the daemon starts as usual.
    fn resume(&mut self, record: Record) {
        let Some((pid, start)) = locate(&record) else {
            info!(daemon = %self.name, "The process a previous run recorded is gone; starting the daemon.");
            self.shared.record(&self.name, None);
            return;
        };
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                debug!(daemon = %self.name, pid, error = %e, "No pidfd; the process may just have ended.");
                None
            }
        };
        // Checked after the pidfd is open: the pidfd then names this very process.
        if !still_runs(pid, start) {
            self.shared.record(&self.name, None);
            return;
        }
        let name = self.name.clone();
        let (exit_tx, exit_rx) = crossbeam_channel::bounded(1);
        let watcher = thread::Builder::new()
            .name(format!("watch-{}", self.name))
            .spawn(move || {
                let waited = pidfd.as_ref().map(wait_pidfd);
                if !matches!(waited, Some(Ok(()))) {
                    while still_runs(pid, start) {
                        thread::sleep(ADOPTED_POLL);
                    }
                }
                // What is left of its group goes with it. While the group has members its id
                // cannot become another process's pid; a pid already reused means the group
                // is empty.
                if !pid_reused(pid, start) {
                    if let Err(e) = signal_group(pid, libc::SIGKILL) {
                        warn!(daemon = %name, pid, error = %e, "Cannot kill what is left of the process group.");
                    }
                }
                let _ = exit_tx.send(ExitReport::Unknown);
            });
        if let Err(e) = watcher {
            error!(daemon = %self.name, pid, error = %e, "Cannot watch the re-adopted process; stopping it.");
            let _ = signal_group(pid, libc::SIGKILL);
            self.shared.record(&self.name, None);
            return;
        }
        let age = process_age(start).unwrap_or_default();
        let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let started_at = SystemTime::now()
            .checked_sub(age)
            .unwrap_or_else(SystemTime::now);
        self.generation += 1;
        let current = fingerprint(&self.spec);
        self.shared.record(
            &self.name,
            Some(Record {
                pid: Some(pid),
                start_ticks: Some(start),
                invocation: record.invocation,
                fingerprint: record.fingerprint.clone(),
            }),
        );
        info!(daemon = %self.name, pid, ?age, "Daemon re-adopted after a restart of perfvisor.");
        super::process::explain_adopted(pid);
        self.begin(pid, exit_rx, started, started_at, true);
        if record.fingerprint != current {
            info!(daemon = %self.name, pid, "The daemon's command, environment, directory or user changed while perfvisor was down; restarting it.");
            self.stop_process(None);
            self.phase = Phase::Waiting;
            self.set_state(DaemonState::Waiting {
                on: self.spec.depends_on.clone(),
            });
        }
    }

    /// The process `pid` (spawned, or adopted) is the current generation from now on.
    fn begin(
        &mut self,
        pid: u32,
        exit: Receiver<ExitReport>,
        started: Instant,
        started_at: SystemTime,
        adopted: bool,
    ) {
        let (cancel_tx, cancel_rx) = crossbeam_channel::bounded::<()>(0);
        for (index, check) in self.spec.checks.iter().enumerate() {
            spawn_check_thread(
                &self.name,
                self.generation,
                index,
                check.clone(),
                cancel_rx.clone(),
                self.report.clone(),
            );
        }
        let ready = !self.spec.has_readiness();
        let in_grace = started.elapsed() < self.spec.startup_grace;
        self.phase = Phase::Running(Running {
            pid,
            generation: self.generation,
            started,
            exit,
            _cancel_checks: cancel_tx,
            check_failures: vec![0; self.spec.checks.len()],
            check_passing: vec![false; self.spec.checks.len()],
            in_grace,
        });
        let state = if in_grace {
            DaemonState::Starting
        } else {
            DaemonState::Running
        };
        self.set_status(|s| {
            s.status.state = state;
            s.status.last_error = None;
            s.status.pid = Some(pid);
            s.status.started_at = Some(started_at);
            s.status.ready = ready;
            s.up_since = Some(started);
        });
        let name = self.name.clone();
        self.shared.emit(if adopted {
            ManagerEvent::Adopted { name, pid }
        } else {
            ManagerEvent::Started { name, pid }
        });
        if ready {
            self.shared.emit(ManagerEvent::Ready {
                name: self.name.clone(),
            });
        }
    }

    /// Record the end of the current process (whatever ended it) and clear its traces.
    fn finish(
        &mut self,
        running: Running,
        status: ExitReport,
    ) -> (Option<i32>, Option<i32>, Duration) {
        let uptime = running.started.elapsed();
        self.shared.record(&self.name, None);
        let (code, signal) = match status {
            ExitReport::Status(s) => decode(s),
            ExitReport::Unknown => (None, None),
            ExitReport::Lost(e) => {
                warn!(daemon = %self.name, pid = running.pid, error = %e, "Lost the daemon's exit status.");
                (None, None)
            }
        };
        let info = ExitInfo {
            code,
            signal,
            uptime,
            at: SystemTime::now(),
        };
        self.set_status(|s| {
            s.status.pid = None;
            s.status.ready = false;
            s.status.last_exit = Some(info);
            s.up_since = None;
        });
        self.shared.emit(ManagerEvent::Exited {
            name: self.name.clone(),
            pid: running.pid,
            code,
            signal,
            uptime,
        });
        (code, signal, uptime)
    }

    fn on_exit(&mut self, status: ExitReport) {
        let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let (code, signal, uptime) = self.finish(running, status);
        let failed = code != Some(0);
        info!(
            daemon = %self.name,
            exit = %super::spec::describe_exit(code, signal),
            uptime = %crate::units::format_duration(uptime),
            "Daemon exited."
        );
        let decision = self
            .tracker
            .on_exit(&self.spec, failed, uptime, fastrand::f64());
        self.apply(decision, code, signal);
    }

    fn apply(&mut self, decision: Decision, code: Option<i32>, signal: Option<i32>) {
        match decision {
            Decision::Restart { delay, attempt } => {
                debug!(daemon = %self.name, ?delay, attempt, "Daemon restart scheduled.");
                self.phase = Phase::Backoff(Instant::now() + delay);
                self.set_state(DaemonState::Backoff {
                    until: SystemTime::now() + delay,
                });
                self.shared.emit(ManagerEvent::Restarting {
                    name: self.name.clone(),
                    delay,
                    attempt,
                });
            }
            Decision::Stay => {
                self.phase = Phase::Idle;
                self.set_state(DaemonState::Exited { code, signal });
            }
            Decision::Fatal {
                reason,
                retry_after,
            } => {
                error!(daemon = %self.name, reason = %reason, ?retry_after, "Daemon is fatal; no more restarts.");
                self.phase = Phase::Fatal(retry_after.map(|d| Instant::now() + d));
                let retry_at = retry_after.map(|d| SystemTime::now() + d);
                self.set_state(DaemonState::Fatal {
                    reason: reason.clone(),
                    retry_at,
                });
                self.shared.emit(ManagerEvent::Fatal {
                    name: self.name.clone(),
                    reason,
                });
            }
        }
    }

    /// Says that the running process, if any, is about to be stopped on purpose.
    fn announce_stop(&self, intent: StopIntent) {
        let Phase::Running(running) = &self.phase else {
            return;
        };
        let expected = if intent.restarts() {
            self.spec.stop_timeout + self.spec.startup_grace + INTENDED_RESTART_MARGIN
        } else {
            Duration::ZERO
        };
        self.shared.emit(ManagerEvent::Stopping {
            name: self.name.clone(),
            pid: running.pid,
            intent,
            expected,
        });
    }

    /// Stop the running process, if any: stop signal to the group, SIGKILL after the timeout.
    fn stop_process(&mut self, timeout: Option<Duration>) {
        let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let timeout = timeout.map_or(self.spec.stop_timeout, |t| t.min(self.spec.stop_timeout));
        self.set_state(DaemonState::Stopping);
        let pid = running.pid;
        if let Err(e) = signal_group(pid, self.spec.stop_signal) {
            warn!(daemon = %self.name, pid, error = %e, "Cannot send the stop signal.");
        }
        let status = match running.exit.recv_timeout(timeout) {
            Ok(status) => status,
            Err(_) => {
                warn!(daemon = %self.name, pid, ?timeout, "Daemon ignored the stop signal; sending SIGKILL.");
                if let Err(e) = signal_group(pid, libc::SIGKILL) {
                    warn!(daemon = %self.name, pid, error = %e, "Cannot send SIGKILL.");
                }
                running
                    .exit
                    .recv_timeout(KILL_WAIT)
                    .unwrap_or_else(|_| ExitReport::Lost("no exit after SIGKILL".to_string()))
            }
        };
        self.finish(running, status);
    }

    fn on_check(
        &mut self,
        generation: u64,
        index: usize,
        ok: bool,
        latency: Duration,
        error: Option<String>,
    ) {
        let Phase::Running(r) = &mut self.phase else {
            return;
        };
        let Some(check) = self.spec.checks.get(index) else {
            return;
        };
        if r.generation != generation {
            return;
        }
        self.shared.emit(ManagerEvent::CheckResult {
            name: self.name.clone(),
            check: index,
            ok,
            latency,
            error: error.clone(),
        });
        let was_ready = r
            .check_passing
            .iter()
            .zip(&self.spec.checks)
            .all(|(p, c)| *p || !c.readiness);
        if ok {
            r.check_failures[index] = 0;
            r.check_passing[index] = true;
        } else if check.readiness || !r.in_grace {
            r.check_failures[index] = r.check_failures[index].saturating_add(1);
            if r.check_failures[index] >= check.failures {
                r.check_passing[index] = false;
            }
        }
        let ready = r
            .check_passing
            .iter()
            .zip(&self.spec.checks)
            .all(|(p, c)| *p || !c.readiness);
        let liveness_failed = !check.readiness && r.check_failures[index] >= check.failures;
        let uptime = r.started.elapsed();
        if ready != was_ready {
            self.set_status(|s| s.status.ready = ready);
            if ready {
                info!(daemon = %self.name, "Daemon ready.");
                self.shared.emit(ManagerEvent::Ready {
                    name: self.name.clone(),
                });
            } else {
                warn!(daemon = %self.name, check = index, error = ?error, "Daemon no longer ready.");
            }
        }
        if liveness_failed {
            warn!(daemon = %self.name, check = index, error = ?error, "Liveness check failed; restarting daemon.");
            self.stop_process(None);
            let decision = self
                .tracker
                .on_exit(&self.spec, true, uptime, fastrand::f64());
            let (code, signal) = self
                .shared
                .table()
                .get(&self.name)
                .and_then(|s| s.status.last_exit.as_ref().map(|e| (e.code, e.signal)))
                .unwrap_or((None, None));
            self.apply(decision, code, signal);
        }
    }
}
