//! The [`Manager`] handle: validates and orders specs, keeps the table of daemons, and turns
//! each request into a message to the daemon's supervisor thread.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tracing::warn;

use super::daemon::{new_slot, spawn_supervisor, Control, Shared};
use super::plan::{diff, start_order, validate};
use super::spec::{DaemonStatus, ManagedSpec, ManagerDiff, ManagerError, ManagerEvent};
use super::state::{stop_leftover, Record, StateStore};

/// Slack on top of a daemon's stop timeout for SIGKILL and reaping.
const STOP_SLACK: Duration = Duration::from_secs(6);
/// Stop timeout used when a `Manager` is dropped without [`Manager::shutdown`].
pub const DROP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Launches and supervises managed daemons; one supervisor thread per daemon.
///
/// Dropping it shuts every daemon down (within [`DROP_SHUTDOWN_TIMEOUT`]).
#[derive(Debug)]
pub struct Manager {
    shared: Arc<Shared>,
    shut_down: AtomicBool,
    /// Records a previous run left in the state directory and no daemon has claimed yet.
    inherited: Mutex<Option<BTreeMap<String, Record>>>,
}

impl Manager {
    /// A manager with no daemons, reporting to `events`. Its daemons' output goes through
    /// pipes and nothing is kept on disk: if the process holding it dies without shutting
    /// it down, its daemons are orphaned (use [`Manager::with_state_dir`] to avoid that).
    pub fn new(events: Sender<ManagerEvent>) -> Self {
        Self {
            shared: Arc::new(Shared {
                events,
                table: Default::default(),
                state: None,
            }),
            shut_down: AtomicBool::new(false),
            inherited: Mutex::new(None),
        }
    }

    /// A manager that survives its own crash: it records each process it starts in
    /// `dir/state.json` and sends the daemons' output through FIFOs in `dir` (created mode
    /// 0700 if missing), so the processes outlive a perfvisor killed without shutting down.
    /// The first [`Manager::start_all`] afterwards re-adopts each declared daemon whose
    /// recorded process still runs (same pid and start time; [`ManagerEvent::Adopted`])
    /// instead of starting a second copy, restarts one whose command, environment, working
    /// directory or user changed meanwhile, and stops the recorded processes of daemons it
    /// does not declare. An adopted process's exit status cannot be known (it is not our
    /// child): its exit counts as a failure for the restart policy.
    ///
    /// Nothing is started unless its start is on disk first: when the state file cannot be
    /// written (a full disk, EMFILE, …) the start fails with the file and the OS error in
    /// [`DaemonStatus::last_error`] and a [`ManagerEvent::SpawnFailed`], and the restart
    /// policy retries it; a process whose pid cannot be recorded after the fork is killed.
    pub fn with_state_dir(
        events: Sender<ManagerEvent>,
        dir: impl AsRef<Path>,
    ) -> std::io::Result<Self> {
        let (store, previous) = StateStore::open(dir.as_ref())?;
        Ok(Self {
            shared: Arc::new(Shared {
                events,
                table: Default::default(),
                state: Some(Mutex::new(store)),
            }),
            shut_down: AtomicBool::new(false),
            inherited: Mutex::new(Some(previous)),
        })
    }

    fn live(&self) -> Result<(), ManagerError> {
        if self.shut_down.load(Ordering::SeqCst) {
            Err(ManagerError::ShutDown)
        } else {
            Ok(())
        }
    }

    /// Add and start `specs`. Each daemon starts once its dependencies are running and, if they
    /// have readiness checks, ready (or past their start-up grace). Invalid specs, unknown
    /// dependencies, cycles and names already managed are refused before anything starts.
    pub fn start_all(&self, specs: Vec<ManagedSpec>) -> Result<(), ManagerError> {
        self.live()?;
        validate_fields(&specs)?;
        self.stop_leftovers(&specs);
        let mut table = self.shared.table();
        if let Some(s) = specs.iter().find(|s| table.contains_key(&s.name)) {
            return Err(ManagerError::AlreadyManaged {
                name: s.name.clone(),
            });
        }
        let mut all: Vec<ManagedSpec> = table.values().map(|s| s.spec.clone()).collect();
        all.extend(specs.iter().cloned());
        let order = start_order(&all)?;
        let mut by_name: BTreeMap<String, ManagedSpec> =
            specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        for name in order {
            if let Some(spec) = by_name.remove(&name) {
                self.add(&mut table, spec);
            }
        }
        Ok(())
    }

    /// Once, before the first daemons start: the processes a previous run recorded for
    /// daemons `specs` does not declare are stopped (they would otherwise be orphans).
    fn stop_leftovers(&self, specs: &[ManagedSpec]) {
        let leftovers: Vec<(String, Record)> = {
            let mut inherited = self.inherited.lock().unwrap_or_else(|p| p.into_inner());
            let Some(map) = inherited.as_mut() else {
                return;
            };
            let gone: Vec<String> = map
                .keys()
                .filter(|n| !specs.iter().any(|s| &s.name == *n))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|n| map.remove_entry(&n))
                .collect()
        };
        for (name, record) in leftovers {
            stop_leftover(&name, &record);
            self.shared.record(&name, None);
            self.shared.forget_fifos(&name);
        }
    }

    fn add(&self, table: &mut BTreeMap<String, super::daemon::Slot>, spec: ManagedSpec) {
        let name = spec.name.clone();
        let inherited = self
            .inherited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|m| m.remove(&name));
        let (mut slot, rx, tx) = new_slot(spec.clone());
        match spawn_supervisor(spec, Arc::clone(&self.shared), rx, tx, inherited) {
            Ok(handle) => slot.thread = Some(handle),
            Err(e) => {
                warn!(daemon = %name, error = %e, "Cannot start the supervisor thread; daemon stays down.")
            }
        }
        table.insert(name, slot);
    }

    fn send(&self, name: &str, msg: Control) -> Result<Duration, ManagerError> {
        self.live()?;
        let table = self.shared.table();
        let slot = table.get(name).ok_or_else(|| ManagerError::UnknownDaemon {
            name: name.to_string(),
            known: table.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        slot.control.send(msg).map_err(|_| ManagerError::ShutDown)?;
        Ok(slot.spec.stop_timeout)
    }

    /// Start a stopped, exited or fatal daemon (clearing its failure counters).
    pub fn start(&self, name: &str) -> Result<(), ManagerError> {
        self.send(name, Control::Start).map(drop)
    }

    /// Stop a daemon: its stop signal to the process group, SIGKILL after its stop timeout.
    /// Returns once the process group is gone; it stays stopped until `start` or `restart`.
    pub fn stop(&self, name: &str) -> Result<(), ManagerError> {
        let (ack, done) = crossbeam_channel::bounded(1);
        let timeout = self.send(name, Control::Stop { timeout: None, ack })? + STOP_SLACK;
        done.recv_timeout(timeout)
            .map_err(|_| ManagerError::Timeout {
                name: name.to_string(),
                action: "stop",
                timeout,
            })
    }

    /// Stop (if running) and start again at once, clearing the failure counters.
    pub fn restart(&self, name: &str) -> Result<(), ManagerError> {
        self.send(name, Control::Restart).map(drop)
    }

    /// Test hook: let `n` more state-file writes succeed, then fail every further one with
    /// EIO (`None`: writes are real again).
    #[cfg(test)]
    pub(crate) fn fail_state_writes_after(&self, n: Option<u32>) {
        if let Some(state) = &self.shared.state {
            state.lock().unwrap_or_else(|p| p.into_inner()).writes_left = n;
        }
    }

    /// A snapshot of every managed daemon, by name.
    pub fn status(&self) -> Vec<DaemonStatus> {
        self.shared
            .table()
            .values()
            .map(|s| s.status.clone())
            .collect()
    }

    /// Reload: make the managed set equal `specs`. Removed daemons are stopped (dependents
    /// first), changed ones restarted with their new spec, added ones started; unchanged ones
    /// are not touched. An invalid set is refused whole, changing nothing.
    pub fn update(&self, specs: Vec<ManagedSpec>) -> Result<ManagerDiff, ManagerError> {
        self.live()?;
        let order = validate(&specs)?;
        self.stop_leftovers(&specs);
        let old: BTreeMap<String, ManagedSpec> = self
            .shared
            .table()
            .iter()
            .map(|(k, s)| (k.clone(), s.spec.clone()))
            .collect();
        let d = diff(&old, &specs);
        let old_specs: Vec<ManagedSpec> = old.values().cloned().collect();
        let old_order = start_order(&old_specs).unwrap_or_else(|_| old.keys().cloned().collect());
        for name in old_order.iter().rev().filter(|n| d.removed.contains(n)) {
            self.remove(name, None);
        }
        let mut by_name: BTreeMap<String, ManagedSpec> =
            specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        let mut table = self.shared.table();
        for name in order {
            let Some(spec) = by_name.remove(&name) else {
                continue;
            };
            if d.changed.contains(&name) {
                if let Some(slot) = table.get_mut(&name) {
                    slot.spec = spec.clone();
                    let _ = slot.control.send(Control::Replace {
                        spec: Box::new(spec),
                    });
                }
            } else if d.added.contains(&name) {
                self.add(&mut table, spec);
            }
        }
        Ok(d)
    }

    /// Stop `name` (its stop timeout cut to what is left before `deadline`), end its
    /// supervisor and forget it.
    fn remove(&self, name: &str, deadline: Option<Instant>) {
        let (ack, done) = crossbeam_channel::bounded(1);
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (sent, stop_timeout) = match self.shared.table().get(name) {
            Some(slot) => (
                slot.control
                    .send(Control::Remove {
                        timeout: remaining,
                        ack,
                    })
                    .is_ok(),
                remaining.map_or(slot.spec.stop_timeout, |r| r.min(slot.spec.stop_timeout)),
            ),
            None => return,
        };
        let acked = sent && done.recv_timeout(stop_timeout + STOP_SLACK).is_ok();
        if !acked {
            warn!(daemon = %name, "Daemon did not stop in time; forgetting it anyway.");
        }
        let slot = self.shared.table().remove(name);
        if let Some(handle) = slot.and_then(|s| s.thread) {
            // A supervisor that never answered may be stuck: leave it rather than hang here.
            if acked || handle.is_finished() {
                let _ = handle.join();
            }
        }
    }

    /// Stop every daemon, dependents before their dependencies, giving all of them together
    /// at most `timeout` before SIGKILL; afterwards every request fails with `ShutDown`.
    pub fn shutdown(&self, timeout: Duration) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let specs: Vec<ManagedSpec> = self
            .shared
            .table()
            .values()
            .map(|s| s.spec.clone())
            .collect();
        let order =
            start_order(&specs).unwrap_or_else(|_| specs.iter().map(|s| s.name.clone()).collect());
        let deadline = Instant::now() + timeout;
        for name in order.iter().rev() {
            self.remove(name, Some(deadline));
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.shutdown(DROP_SHUTDOWN_TIMEOUT);
    }
}

fn validate_fields(specs: &[ManagedSpec]) -> Result<(), ManagerError> {
    // Field problems and duplicates first; dependencies are checked against the whole table.
    match validate(specs) {
        Err(e @ ManagerError::Invalid { .. }) => Err(e),
        _ => Ok(()),
    }
}
