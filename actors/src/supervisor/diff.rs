//! Which watchers to add, change and remove: a pure function of the daemons that should be
//! watched and the watchers that run, applied by the supervisor actor.

use std::collections::BTreeMap;

use crate::types::{DaemonId, DaemonSpec};

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
