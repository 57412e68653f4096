//! The [`Manager`] handle: validates and orders specs, keeps the table of daemons, and turns
//! each request into a message to the daemon's supervisor thread.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tracing::warn;

use super::daemon::{new_slot, spawn_supervisor, Control, Shared};
use super::plan::{diff, start_order, validate};
use super::spec::{DaemonStatus, ManagedSpec, ManagerDiff, ManagerError, ManagerEvent};

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
}

impl Manager {
    /// A manager with no daemons, reporting to `events`.
    pub fn new(events: Sender<ManagerEvent>) -> Self {
        Self {
            shared: Arc::new(Shared {
                events,
                table: Default::default(),
            }),
            shut_down: AtomicBool::new(false),
        }
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

    fn add(&self, table: &mut BTreeMap<String, super::daemon::Slot>, spec: ManagedSpec) {
        let name = spec.name.clone();
        let (mut slot, rx, tx) = new_slot(spec.clone());
        match spawn_supervisor(spec, Arc::clone(&self.shared), rx, tx) {
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
