//! What a watcher shows outside its actor: where its daemon's figures come from and the top
//! children of its process tree. The watcher writes it after its probes; the supervisor reads
//! it for `status` and for reports, without a message round trip to the watcher.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::tree::TopChildren;

/// Where the figures come from: a process tree read through `/proc`.
pub const SOURCE_TREE: &str = "process tree";
/// Where the figures come from: the daemon's own cgroup in the unified (v2) hierarchy.
pub const SOURCE_CGROUP_V2: &str = "cgroup v2";
/// Where the figures come from: the daemon's own cgroup in the v1 memory hierarchy (hybrid
/// hosts, whose v2 hierarchy has no memory controller).
pub const SOURCE_CGROUP_V1_MEMORY: &str = "cgroup v1 memory";
/// Where the figures come from: the daemon's own cgroup in the v1 pids hierarchy.
pub const SOURCE_CGROUP_V1_PIDS: &str = "cgroup v1 pids";

/// Where a daemon's CPU, memory and process-count figures come from: for each, the most
/// exact source perfvisor reads for that daemon, and the one its `process.*` totals come
/// from: a daemon whose cgroup has its CPU and memory files is read through the cgroup (see
/// `logic::CgroupTracker::samples`), any other through its process tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FigureSources {
    /// CPU time: `cgroup v2` (`cpu.stat`) or `process tree`.
    pub cpu: String,
    /// Memory: `cgroup v2` (`memory.current`), `cgroup v1 memory` or `process tree`.
    pub memory: String,
    /// Process and task counts: `cgroup v2`, `cgroup v1 pids` or `process tree`.
    pub pids: String,
    /// The daemon's cgroup directory (v2, else the first v1 one) when it has one of its own.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Why a daemon perfvisor started has no cgroup of its own (not root, no delegated
    /// subtree, ...), when it tried and could not.
    #[serde(default)]
    pub no_cgroup: Option<String>,
}

impl FigureSources {
    /// Every figure from the process tree; `no_cgroup` says why when perfvisor tried to give
    /// the daemon a cgroup and could not.
    pub fn tree(no_cgroup: Option<String>) -> Self {
        let tree = match &no_cgroup {
            Some(reason) => format!("{SOURCE_TREE} (no cgroup: {reason})"),
            None => SOURCE_TREE.to_string(),
        };
        FigureSources {
            cpu: tree.clone(),
            memory: tree.clone(),
            pids: tree,
            cgroup: None,
            no_cgroup,
        }
    }

    /// One line: `cgroup v2` when every figure has the same source, else
    /// `cpu: cgroup v2, memory: cgroup v1 memory, pids: cgroup v2`.
    pub fn summary(&self) -> String {
        if self.cpu == self.memory && self.memory == self.pids {
            self.cpu.clone()
        } else {
            format!(
                "cpu: {}, memory: {}, pids: {}",
                self.cpu, self.memory, self.pids
            )
        }
    }
}

/// What one watcher shows; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatcherView {
    /// Where the figures come from; `None` until the first probe opened the daemon.
    pub sources: Option<FigureSources>,
    /// The top children at the last probe; `None` while the daemon has no descendant.
    pub children: Option<TopChildren>,
}

/// A [`WatcherView`] shared between a watcher and the supervisor.
pub type SharedView = Arc<Mutex<WatcherView>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary is one word when all figures agree, one per figure otherwise; the reason a
    /// daemon has no cgroup is in every figure.
    #[test]
    fn summaries() {
        let t = FigureSources::tree(Some("not root".into()));
        assert_eq!(t.summary(), "process tree (no cgroup: not root)");
        let mixed = FigureSources {
            cpu: SOURCE_CGROUP_V2.into(),
            memory: SOURCE_CGROUP_V1_MEMORY.into(),
            pids: SOURCE_CGROUP_V2.into(),
            cgroup: None,
            no_cgroup: None,
        };
        assert_eq!(
            mixed.summary(),
            "cpu: cgroup v2, memory: cgroup v1 memory, pids: cgroup v2"
        );
        assert_eq!(FigureSources::tree(None).summary(), "process tree");
    }
}
