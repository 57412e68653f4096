//! The whole daemon: its main process and every descendant, probed together so a daemon that
//! works in several processes (gunicorn, php-fpm, postgres, a shell wrapper) is judged on all
//! of them. Plain synchronous code, like the single-process probe it is built from.
//!
//! Descendants are found from the main process down through `/proc/PID/task/TID/children`
//! at every probe (a new child is counted at the first probe after its fork), and each one
//! keeps its own [`ProcessProbe`] open across probes. Where the kernel lacks that file the
//! whole of `/proc` is scanned by parent pid instead, only every [`SCAN_EVERY`]th probe;
//! known descendants are still read at every probe.
//!
//! What the totals count, and what they do not:
//! - CPU time: the user + system time of every live process of the tree, plus the time of
//!   the children each of them has waited for (`cutime` + `cstime`). A child that exits and
//!   is reaped by a parent in the tree moves from the first part to the second, so the total
//!   keeps it. A child that leaves the tree otherwise — reaped automatically because its
//!   parent ignores `SIGCHLD`, or re-parented to init after its parent died — is credited with
//!   the time it had at its last probe; the time it burned after that probe is lost. A child
//!   born and reaped between two probes is counted through its parent's `cutime`, unless the
//!   parent ignores `SIGCHLD`. The total never goes back.
//! - Storage I/O: `/proc/PID/io` already includes reaped children, so the same rule applies.
//!   A descendant's I/O and descriptors are re-read every [`DETAIL_EVERY`]th probe only (its
//!   CPU, memory, threads and state at every probe, from the one `stat` read), so their
//!   totals lag a descendant's own changes by up to that many probes.
//! - Memory: the sum of resident set sizes. Pages shared between processes (the program,
//!   libraries, copy-on-write memory after a fork) are counted once per process, so the sum
//!   overstates what the daemon costs the host; proportional set size (PSS, in
//!   `/proc/PID/smaps_rollup`) would not, but reading it walks every mapping under the
//!   process's memory lock at each probe, far more than the rest of the probe.
//! - Threads, descriptors: sums over the live processes. The descriptor limit, state and
//!   uptime are the main process's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::probe::{scan_parents, Exec, ProbeError, ProcSnapshot, ProcState, ProcessProbe};

/// Most descendants followed per daemon. Each keeps about seven descriptors open in
/// perfvisor, so an unbounded tree (a daemon forking without limit, or `pid = 1`, whose tree
/// is the whole host) would run perfvisor out of descriptors. Past it, processes not yet
/// followed are left out of the figures and [`TreeTotals::capped`] says so.
pub const MAX_DESCENDANTS: usize = 256;

/// How often (in probes) a descendant's storage I/O and open descriptors are re-read; its
/// CPU, memory, threads and state (one read of `/proc/PID/stat`) and its children are read at
/// every probe. The main process reads everything at every probe.
pub const DETAIL_EVERY: u64 = 5;

/// How often (in probes) [`TreeProbe::probe_main`] re-reads the main process's memory,
/// storage I/O and descriptors: as often as the watcher walks a cgroup-read daemon's tree
/// (which reads them anyway), so between walks only `stat` is read.
pub const MAIN_DETAIL_EVERY: u64 = 10;

/// How often (in probes) the whole of `/proc` is scanned for descendants when the kernel has
/// no `children` files.
pub const SCAN_EVERY: u64 = 5;

/// One reading of a daemon's process tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeSnapshot {
    /// The main process alone (the watched pid).
    pub main: ProcSnapshot,
    /// Totals over the tree (see the module documentation for what they count).
    pub total: TreeTotals,
}

/// Totals over a daemon's process tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeTotals {
    /// CPU time of the tree including reaped descendants, in seconds (cumulative, never
    /// decreasing).
    pub cpu_seconds: f64,
    /// Sum of resident set sizes, in bytes.
    pub rss_bytes: u64,
    /// Sum of virtual memory sizes, in bytes.
    pub virtual_bytes: u64,
    /// Bytes fetched from storage (cumulative); `None` when the main process's is unreadable.
    pub read_bytes: Option<u64>,
    /// Bytes sent to storage (cumulative); `None` when the main process's is unreadable.
    pub write_bytes: Option<u64>,
    /// Sum of thread counts.
    pub threads: u64,
    /// Sum of open descriptors; `None` when the main process's are unreadable.
    pub open_fds: Option<u64>,
    /// Open descriptors and soft limit of the process nearest its limit (the highest
    /// descriptors / limit ratio among those with a known limit; without any, the one with
    /// the most descriptors and no limit). The limit is per process: this is what can run out.
    pub nearest_fd_limit: (Option<u64>, Option<u64>),
    /// Processes in the tree, the main one and zombies included.
    pub processes: u64,
    /// Processes of the tree that exited and wait to be reaped.
    pub zombies: u64,
    /// Whether descendants were left out at this probe because the most allowed
    /// ([`MAX_DESCENDANTS`] by default) are followed already.
    pub capped: bool,
}

/// One descendant in a daemon's top-children breakdown.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChildUsage {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid (the main process, or another descendant).
    pub ppid: u32,
    /// Its command name (`/proc/PID/stat` field 2, at most 15 bytes).
    pub command: String,
    /// CPU it used between the last two probes, as a fraction of one core; `None` at its
    /// first probe (not a rate yet).
    pub cpu_ratio: Option<f64>,
    /// Its resident set size, in bytes.
    pub rss_bytes: u64,
}

/// The descendants of a daemon using the most CPU and the most memory at the last probe,
/// taken from the readings the tree probe makes anyway. Not stored as series: one series per
/// child pid would be unbounded.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopChildren {
    /// Descendants followed at the last probe (the main process not counted).
    pub descendants: u64,
    /// At most [`TOP_CHILDREN`] descendants, highest CPU first (those without a rate yet
    /// last).
    pub by_cpu: Vec<ChildUsage>,
    /// At most [`TOP_CHILDREN`] descendants, largest resident set first.
    pub by_memory: Vec<ChildUsage>,
}

/// How many children each list of [`TopChildren`] holds.
pub const TOP_CHILDREN: usize = 5;

/// A descendant being followed.
struct Member {
    probe: ProcessProbe,
    /// The reading of the last probe, credited when the process leaves the tree.
    last: ProcSnapshot,
    /// When `last` was read.
    at: Instant,
    /// Its own CPU use between its last two readings (fraction of a core).
    cpu_ratio: Option<f64>,
    /// The parent's `children_cpu_seconds` as read before `last` was (at the probe before),
    /// to tell later whether the parent's reap took this process's time in.
    baseline: f64,
    /// Whether it was found in the tree at this probe.
    seen: bool,
}

/// Cumulative figures of a process, its reaped children included.
fn cumulative(s: &ProcSnapshot) -> (f64, u64, u64) {
    (
        s.cpu_seconds() + s.children_cpu_seconds,
        s.read_bytes.unwrap_or(0),
        s.write_bytes.unwrap_or(0),
    )
}

/// Probe of a daemon's whole process tree, opened on its main pid.
pub struct TreeProbe {
    main: ProcessProbe,
    members: HashMap<u32, Member>,
    /// Whether the kernel lists children; learnt at the first probe.
    children_files: bool,
    probes: u64,
    /// Cumulative figures of processes that left the tree without a parent in it taking them.
    departed: (f64, u64, u64),
    /// Leavers counted provisionally at the last probe.
    pending: Vec<Leaver>,
    /// The CPU total of the last probe.
    last_cpu: Option<f64>,
    /// Whether a descendant was left out at this probe (see [`MAX_DESCENDANTS`]).
    capped: bool,
    max_descendants: usize,
    /// Scratch lists reused across probes.
    frontier: Vec<u32>,
    found: Vec<u32>,
    parents: Vec<(u32, u32)>,
    /// Each process's reaped-children time before this probe, by pid.
    before: HashMap<u32, f64>,
}

impl std::fmt::Debug for TreeProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeProbe")
            .field("main", &self.main)
            .field("descendants", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl TreeProbe {
    /// Opens the main process; descendants are found at each probe.
    pub fn open(pid: u32) -> Result<Self, ProbeError> {
        Ok(Self {
            main: ProcessProbe::open(pid)?,
            members: HashMap::new(),
            children_files: true,
            probes: 0,
            departed: (0.0, 0, 0),
            pending: Vec::new(),
            last_cpu: None,
            capped: false,
            max_descendants: MAX_DESCENDANTS,
            frontier: Vec::new(),
            found: Vec::new(),
            parents: Vec::new(),
            before: HashMap::new(),
        })
    }

    /// Forces the `/proc` scan even where `children` files exist (for tests and benches).
    pub fn without_children_files(mut self) -> Self {
        self.children_files = false;
        self
    }

    /// Follows at most `n` descendants instead of [`MAX_DESCENDANTS`].
    pub fn with_max_descendants(mut self, n: usize) -> Self {
        self.max_descendants = n;
        self
    }

    /// The main process's probe.
    pub fn main(&self) -> &ProcessProbe {
        &self.main
    }

    /// The `exec` of the main process the last probes saw, if any (taken once).
    pub fn take_exec(&mut self) -> Option<Exec> {
        self.main.take_exec()
    }

    /// The pids of the descendants followed since the last probe.
    pub fn descendants(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.members.keys().copied().collect();
        pids.sort_unstable();
        pids
    }

    /// The descendants using the most CPU and memory at the last probe, at most `n` in each
    /// list; `None` when the last probe found no descendant. Computed from the last readings:
    /// no file is read.
    pub fn top_children(&self, n: usize) -> Option<TopChildren> {
        if self.members.is_empty() {
            return None;
        }
        let mut order: Vec<(&u32, &Member)> = self.members.iter().collect();
        let usage = |(pid, m): &(&u32, &Member)| ChildUsage {
            pid: **pid,
            ppid: m.last.ppid,
            command: m.probe.comm().to_owned(),
            cpu_ratio: m.cpu_ratio,
            rss_bytes: m.last.rss_bytes,
        };
        // Highest first; ties by pid so the lists are stable between probes.
        order.sort_unstable_by(|a, b| {
            let cpu = |m: &Member| m.cpu_ratio.unwrap_or(-1.0);
            cpu(b.1).total_cmp(&cpu(a.1)).then(a.0.cmp(b.0))
        });
        let by_cpu = order.iter().take(n).map(usage).collect();
        order.sort_unstable_by(|a, b| {
            b.1.last
                .rss_bytes
                .cmp(&a.1.last.rss_bytes)
                .then(a.0.cmp(b.0))
        });
        let by_memory = order.iter().take(n).map(usage).collect();
        Some(TopChildren {
            descendants: self.members.len() as u64,
            by_cpu,
            by_memory,
        })
    }

    /// Probes the main process alone, neither finding nor reading descendants: for daemons
    /// whose totals come from their cgroup, between two walks of the tree. Its `stat` (CPU,
    /// threads, state, identity) is read at every call, its memory, storage I/O and
    /// descriptors every [`MAIN_DETAIL_EVERY`]th probe (the last figures between): a
    /// cgroup-read daemon's totals come from the cgroup, and only its `process.main.*`
    /// series use these. Its errors are the daemon's, as in [`TreeProbe::probe`].
    pub fn probe_main(&mut self) -> Result<ProcSnapshot, ProbeError> {
        self.main.probe_sparse(MAIN_DETAIL_EVERY)
    }

    /// Probes the main process (its errors are the daemon's: gone, identity changed), then
    /// finds and reads the descendants. A descendant that cannot be read is left out of this
    /// probe, never an error.
    pub fn probe(&mut self) -> Result<TreeSnapshot, ProbeError> {
        let main = self.main.probe()?;
        let main_pid = self.main.identity().pid;
        for m in self.members.values_mut() {
            m.seen = false;
        }
        self.capped = false;
        if self.children_files {
            self.walk_children(main_pid, main.threads)?;
        } else if self.probes.is_multiple_of(SCAN_EVERY) {
            self.scan(main_pid);
        } else {
            for m in self.members.values_mut() {
                m.seen = true;
            }
        }
        self.probes += 1;

        // Read the descendants found (after the main process: see `settle_leavers`); the
        // ones not found, or gone, leave. Each one read records its parent's children time
        // as known before this read.
        let mut leaving: Vec<Leaver> = Vec::new();
        // Nothing to collect for a daemon of one process; a map kept across probes, so no
        // allocation once it has grown to the tree's size.
        let mut before = std::mem::take(&mut self.before);
        before.clear();
        if !self.members.is_empty() {
            before.extend(
                std::iter::once((main_pid, main.children_cpu_seconds)).chain(
                    self.members
                        .iter()
                        .map(|(pid, m)| (*pid, m.last.children_cpu_seconds)),
                ),
            );
        }
        self.members.retain(|&pid, m| {
            if m.seen {
                if let Ok(snap) = m.probe.probe() {
                    m.baseline = before.get(&snap.ppid).copied().unwrap_or(f64::INFINITY);
                    let now = Instant::now();
                    let dt = now.duration_since(m.at).as_secs_f64();
                    if dt > 0.0 {
                        m.cpu_ratio =
                            Some(((snap.cpu_seconds() - m.last.cpu_seconds()) / dt).max(0.0));
                        m.at = now;
                    }
                    m.last = snap;
                    return true;
                }
            }
            leaving.push(Leaver {
                pid,
                last: m.last.clone(),
                baseline: m.baseline,
                left: Instant::now(),
            });
            false
        });
        self.before = before;
        // A child can drop out of its parent's `children` list for a moment as it exits and
        // come back as a zombie: one found again is a member, not a leaver.
        let members = &self.members;
        self.pending.retain(|l| !members.contains_key(&l.pid));
        let provisional = self.settle_leavers(&main, leaving);

        let mut total = TreeTotals {
            cpu_seconds: 0.0,
            rss_bytes: 0,
            virtual_bytes: 0,
            read_bytes: main.read_bytes,
            write_bytes: main.write_bytes,
            threads: 0,
            open_fds: main.open_fds,
            processes: 0,
            zombies: 0,
            capped: self.capped,
            nearest_fd_limit: (main.open_fds, main.fd_limit),
        };
        let ratio = |fds: Option<u64>, limit: Option<u64>| match (fds, limit) {
            (Some(f), Some(l)) if l > 0 => (1, f as f64 / l as f64),
            (Some(f), _) => (0, f as f64),
            (None, _) => (0, -1.0),
        };
        let (mut cpu, mut read, mut write) = self.departed;
        cpu += provisional;
        for s in std::iter::once(&main).chain(self.members.values().map(|m| &m.last)) {
            let (c, r, w) = cumulative(s);
            cpu += c;
            read += r;
            write += w;
            total.rss_bytes += s.rss_bytes;
            total.virtual_bytes += s.virtual_bytes;
            total.threads += s.threads;
            total.processes += 1;
            if s.state == ProcState::Zombie {
                total.zombies += 1;
            }
            if let (Some(t), Some(n)) = (total.open_fds.as_mut(), s.open_fds) {
                *t += n;
            }
            let (fds, limit) = total.nearest_fd_limit;
            if ratio(s.open_fds, s.fd_limit) > ratio(fds, limit) {
                total.nearest_fd_limit = (s.open_fds, s.fd_limit);
            }
        }
        total.read_bytes = total.read_bytes.map(|_| read);
        total.write_bytes = total.write_bytes.map(|_| write);
        // The total is a counter: it never goes back. A dip (a child's time between its
        // exit and its parent's reap, not yet in either) holds the previous value until the
        // sum catches up; it is not carried forward, or the reap would count the child twice.
        total.cpu_seconds = self.last_cpu.map_or(cpu, |previous| cpu.max(previous));
        self.last_cpu = Some(total.cpu_seconds);
        Ok(TreeSnapshot { main, total })
    }

    /// Walks down from the main process through the `children` files, opening a probe for
    /// each new descendant and marking the known ones seen.
    fn walk_children(&mut self, main_pid: u32, main_threads: u64) -> Result<(), ProbeError> {
        self.frontier.clear();
        self.found.clear();
        if !self.main.children(main_threads, &mut self.found)? {
            // No children files on this kernel: scan now and from now on.
            self.children_files = false;
            self.scan(main_pid);
            return Ok(());
        }
        let mut found = std::mem::take(&mut self.found);
        loop {
            for pid in found.drain(..) {
                if pid != main_pid && self.follow(pid) {
                    self.frontier.push(pid);
                }
            }
            let Some(parent) = self.frontier.pop() else {
                self.found = found;
                return Ok(());
            };
            if let Some(m) = self.members.get_mut(&parent) {
                // A child that exited since it was found lists nothing: not an error.
                let _ = m.probe.children(m.last.threads, &mut found);
            }
        }
    }

    /// Marks `pid` seen, opening a probe if it is new. False if it cannot be followed (it
    /// exited already) or was already seen at this probe (guards against loops).
    fn follow(&mut self, pid: u32) -> bool {
        if let Some(m) = self.members.get_mut(&pid) {
            if m.seen {
                return false;
            }
            m.seen = true;
            return true;
        }
        if self.members.len() >= self.max_descendants {
            self.capped = true;
            return false;
        }
        let Ok(mut probe) = ProcessProbe::open(pid).map(|p| p.with_detail_every(DETAIL_EVERY))
        else {
            return false;
        };
        let Ok(last) = probe.probe() else {
            return false;
        };
        self.members.insert(
            pid,
            Member {
                probe,
                baseline: f64::INFINITY,
                last,
                at: Instant::now(),
                cpu_ratio: None,
                seen: true,
            },
        );
        true
    }

    /// Finds the descendants by scanning every process's parent.
    fn scan(&mut self, main_pid: u32) {
        self.parents.clear();
        scan_parents(&mut self.parents);
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for &(pid, ppid) in &self.parents {
            children.entry(ppid).or_default().push(pid);
        }
        self.frontier.clear();
        self.frontier.push(main_pid);
        while let Some(parent) = self.frontier.pop() {
            for &pid in children.get(&parent).map_or(&[][..], Vec::as_slice) {
                if pid != main_pid && self.follow(pid) {
                    self.frontier.push(pid);
                }
            }
        }
    }

    /// Settles the processes that left the tree: a parent in the tree that reaped one took
    /// its time into its own children time, so nothing is credited; otherwise (no parent in
    /// the tree, or one that reaped nothing because it ignores `SIGCHLD`) its time at its last
    /// probe goes to the departed total. A child that exited is gone from the tree before
    /// its parent reaps it (a zombie, or a reap landing between the read of the main process
    /// and the one that finds the child gone): a leaver whose parent shows no reap yet is
    /// counted provisionally (the returned CPU seconds) until the reap shows, or for at most
    /// [`SETTLE_WINDOW`], after which its time is credited for good. Only a parent that
    /// reaps later than that counts the child twice.
    fn settle_leavers(&mut self, main: &ProcSnapshot, leaving: Vec<Leaver>) -> f64 {
        let main_pid = self.main.identity().pid;
        let mut provisional = 0.0;
        let mut pending = Vec::new();
        for leaver in std::mem::take(&mut self.pending).into_iter().chain(leaving) {
            let (cpu, read, write) = cumulative(&leaver.last);
            let parent_now = if leaver.last.ppid == main_pid {
                Some(main.children_cpu_seconds)
            } else {
                self.members
                    .get(&leaver.last.ppid)
                    .map(|m| m.last.children_cpu_seconds)
            };
            let Some(parent_now) = parent_now else {
                // Out of the tree (re-parented, or its parent left too): keep what it had.
                self.departed.0 += cpu;
                self.departed.1 += read;
                self.departed.2 += write;
                continue;
            };
            // It had exited when last read (a zombie, or `X` while its parent reaped it):
            // it left because that parent reaped it, so its time is in the parent's
            // children time already. The growth since the baseline cannot tell here: the
            // parent's reap adds the time before the child's files go away, so the child
            // can be read once more after a parent read that already holds it, and that
            // baseline would then credit the child a second time.
            if matches!(leaver.last.state, ProcState::Zombie | ProcState::Other('X')) {
                continue;
            }
            // Its I/O is in the parent's /proc/PID/io once reaped: nothing to credit.
            let grew = (parent_now - leaver.baseline).max(0.0);
            let missing = cpu - grew;
            // One clock tick of rounding.
            if missing <= 0.011 {
                continue;
            }
            if leaver.left.elapsed() >= SETTLE_WINDOW {
                self.departed.0 += missing;
            } else {
                provisional += missing;
                pending.push(leaver);
            }
        }
        self.pending = pending;
        provisional
    }
}

/// How long a leaver whose parent has not reaped it yet is counted provisionally before
/// its time is credited for good (a parent that ignores `SIGCHLD` never shows the reap).
const SETTLE_WINDOW: Duration = Duration::from_secs(5);

/// A descendant gone from the tree, not yet settled.
struct Leaver {
    pid: u32,
    last: ProcSnapshot,
    baseline: f64,
    /// When it was found gone.
    left: Instant,
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::*;
    use crate::watcher::testkit::{poll_until, Group};

    /// The children of `pid` read straight from the kernel, for comparison.
    fn kernel_children(pid: u32) -> Vec<u32> {
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Children and grandchildren are found and summed; the main process's own figures stay
    /// apart.
    #[test]
    fn finds_children_and_grandchildren() {
        let group = Group::sh("sleep 300 & sh -c 'sleep 300 & sleep 300 & wait' & wait");
        let mut tree = TreeProbe::open(group.pid()).expect("open");
        let snap = poll_until(Duration::from_secs(10), || {
            let snap = tree.probe().expect("probe");
            (snap.total.processes == 5).then_some(snap)
        })
        .expect("sh, sleep, sh and two sleeps within 10 s");
        assert_eq!(tree.descendants().len(), 4);
        assert_eq!(snap.total.zombies, 0);
        assert!(snap.total.rss_bytes > snap.main.rss_bytes, "{snap:?}");
        assert!(snap.total.threads >= 5, "{snap:?}");
        assert!(
            snap.total.open_fds.expect("fds") > snap.main.open_fds.expect("main fds"),
            "{snap:?}"
        );
    }

    /// A child forked by another thread than the main one (here: the test's own thread, in
    /// the multi-threaded test process) is found through that thread's `children` file.
    #[test]
    fn children_of_other_threads_are_found() {
        let group = Group::sh("read never");
        let me = std::process::id();
        assert_ne!(
            me as libc::pid_t,
            // SAFETY: gettid has no preconditions.
            unsafe { libc::gettid() },
            "tests run on threads other than the main one"
        );
        let mut tree = TreeProbe::open(me).expect("open self");
        let snap = tree.probe().expect("probe");
        assert!(snap.main.threads > 1, "{snap:?}");
        assert!(
            tree.descendants().contains(&group.pid()),
            "{} not in {:?}",
            group.pid(),
            tree.descendants()
        );
    }

    /// No more than the cap of descendants are followed, and the totals say when some were left out.
    #[test]
    fn descendants_are_capped() {
        let group = Group::sh("sleep 300 & sleep 300 & sleep 300 & wait");
        poll_until(Duration::from_secs(10), || {
            (kernel_children(group.pid()).len() == 3).then_some(())
        })
        .expect("three children within 10 s");
        let mut tree = TreeProbe::open(group.pid()).expect("open");
        let snap = tree.probe().expect("probe");
        assert!(!snap.total.capped);
        assert_eq!(snap.total.processes, 4);
        let mut tree = TreeProbe::open(group.pid())
            .expect("open")
            .with_max_descendants(2);
        let snap = tree.probe().expect("probe");
        assert!(snap.total.capped, "{snap:?}");
        assert_eq!(snap.total.processes, 3);
        assert_eq!(tree.descendants().len(), 2);
    }

    /// A child forked after a probe is in the very next probe.
    #[test]
    fn new_child_within_one_probe() {
        let mut group = Group::sh("read go; sleep 300 & read never");
        let mut tree = TreeProbe::open(group.pid()).expect("open");
        assert_eq!(tree.probe().expect("probe").total.processes, 1);
        group.say("go");
        poll_until(Duration::from_secs(10), || {
            (!kernel_children(group.pid()).is_empty()).then_some(())
        })
        .expect("sh forks within 10 s");
        let snap = tree.probe().expect("probe");
        assert_eq!(snap.total.processes, 2, "{:?}", tree.descendants());
    }

    /// A child that exits and is reaped leaves its CPU time in the total, through the
    /// parent's `cutime`; the total never goes back.
    #[test]
    fn exited_child_keeps_its_cpu_time() {
        // The busy child burns CPU until told to stop through a file.
        let dir = tempfile::tempdir().expect("temp dir");
        let stop = dir.path().join("stop");
        let script = format!(
            "sh -c 'while [ ! -e {stop} ]; do :; done'; read never",
            stop = stop.display()
        );
        let group = Group::sh(&script);
        let mut tree = TreeProbe::open(group.pid()).expect("open");
        let during = poll_until(Duration::from_secs(20), || {
            let snap = tree.probe().expect("probe");
            (snap.total.processes == 2 && snap.total.cpu_seconds >= 0.3).then_some(snap)
        })
        .expect("child burns 0.3 s of CPU within 20 s");
        std::fs::write(&stop, b"").expect("stop the child");
        let after = poll_until(Duration::from_secs(10), || {
            let snap = tree.probe().expect("probe");
            (snap.total.processes == 1).then_some(snap)
        })
        .expect("child exits within 10 s");
        assert!(
            after.total.cpu_seconds >= during.total.cpu_seconds,
            "{during:?} then {after:?}"
        );
        // The child may still be a zombie (not counted as a process) until its parent
        // reaps it; from the reap on, the parent's cutime holds its time, not a credit.
        let settled = poll_until(Duration::from_secs(10), || {
            let snap = tree.probe().expect("probe");
            assert!(
                snap.total.cpu_seconds >= after.total.cpu_seconds,
                "went back: {snap:?}"
            );
            (snap.main.children_cpu_seconds >= during.total.cpu_seconds - 0.02).then_some(snap)
        })
        .unwrap_or_else(|| panic!("the parent never reaped the child: {during:?} then {after:?}"));
        assert!(
            settled.total.cpu_seconds
                <= settled.main.cpu_seconds() + settled.main.children_cpu_seconds + 0.02,
            "counted twice: {settled:?} departed {:?} pending {}",
            tree.departed,
            tree.pending.len()
        );
        assert!(tree.pending.is_empty());
        assert!(tree.departed.0 < 0.02, "{:?}", tree.departed);
    }

    /// A parent that ignores SIGCHLD never reaps (the kernel does, and adds nothing to the
    /// parent's `cutime`): its exited child's time is credited instead of lost.
    #[test]
    fn auto_reaped_child_is_credited() {
        if !std::path::Path::new("/usr/bin/perl").exists() {
            eprintln!("SKIPPED: no /usr/bin/perl to ignore SIGCHLD with");
            return;
        }
        let child = Command::new("/usr/bin/perl")
            .args([
                "-e",
                "$SIG{CHLD} = 'IGNORE'; <STDIN>; \
                 if (fork() == 0) { 1 while ((times)[0] < 0.3); exit 0 } <STDIN>;",
            ])
            .stdin(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn perl");
        let pid = child.id();
        let mut group = Group(child);
        let mut tree = TreeProbe::open(pid).expect("open");
        tree.probe().expect("probe");
        group.say("fork");
        let during = poll_until(Duration::from_secs(20), || {
            let snap = tree.probe().expect("probe");
            (snap.total.processes == 2 && snap.total.cpu_seconds >= 0.2).then_some(snap)
        })
        .expect("child burns 0.2 s within 20 s");
        let after = poll_until(Duration::from_secs(20), || {
            let snap = tree.probe().expect("probe");
            (snap.total.processes == 1 && tree.pending.is_empty()).then_some(snap)
        })
        .expect("child exits within 20 s");
        assert_eq!(
            after.main.children_cpu_seconds, 0.0,
            "nothing reaped into cutime"
        );
        assert!(
            after.total.cpu_seconds >= during.total.cpu_seconds,
            "{during:?} then {after:?}"
        );
        assert!(tree.departed.0 >= 0.2, "{:?}", tree.departed);
    }

    /// A child whose parent exits is re-parented out of the tree; the time it burned while in
    /// the tree stays in the total.
    #[test]
    fn orphan_leaving_the_tree_is_credited() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stop = dir.path().join("stop");
        // An intermediate shell starts a busy grandchild and exits at once.
        let script = format!(
            "read go; sh -c \"sh -c 'while [ ! -e {stop} ]; do :; done' & read wait\"; read never",
            stop = stop.display()
        );
        let mut group = Group::sh(&script);
        let mut tree = TreeProbe::open(group.pid()).expect("open");
        group.say("go");
        let during = poll_until(Duration::from_secs(20), || {
            let snap = tree.probe().expect("probe");
            (snap.total.processes == 3 && snap.total.cpu_seconds >= 0.2).then_some(snap)
        })
        .expect("grandchild burns 0.2 s within 20 s");
        // The middle shell reads the next line and exits; the busy one is orphaned.
        group.say("");
        let after = poll_until(Duration::from_secs(10), || {
            let snap = tree.probe().expect("probe");
            (snap.total.processes == 1).then_some(snap)
        })
        .expect("middle shell exits within 10 s");
        std::fs::write(&stop, b"").expect("stop the orphan");
        assert!(
            after.total.cpu_seconds >= during.total.cpu_seconds,
            "{during:?} then {after:?}"
        );
        assert!(tree.departed.0 >= 0.15, "{:?}", tree.departed);
    }

    /// The top children come from the readings the probe made: the busy child first by
    /// CPU, with its command name and a rate from its second reading on; nothing for a
    /// daemon without children.
    #[test]
    fn top_children_rank_by_cpu_and_memory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stop = dir.path().join("stop");
        let script = format!(
            "sleep 300 & sh -c 'while [ ! -e {stop} ]; do :; done' & wait",
            stop = stop.display()
        );
        let group = Group::sh(&script);
        let mut tree = TreeProbe::open(group.pid()).expect("open");
        let top = poll_until(Duration::from_secs(20), || {
            tree.probe().expect("probe");
            let top = tree.top_children(5)?;
            (top.descendants == 2 && top.by_cpu[0].cpu_ratio? > 0.2).then_some(top)
        });
        std::fs::write(&stop, b"").expect("stop the busy child");
        let top = top.expect("a busy child within 20 s");
        assert_eq!(top.by_cpu.len(), 2);
        assert_eq!(top.by_cpu[0].command, "sh", "{top:?}");
        assert_eq!(top.by_cpu[1].command, "sleep", "{top:?}");
        assert!(top.by_cpu[1].cpu_ratio.unwrap_or(0.0) < 0.05, "{top:?}");
        assert!(top.by_cpu.iter().all(|c| c.ppid == group.pid()), "{top:?}");
        assert!(
            top.by_memory[0].rss_bytes >= top.by_memory[1].rss_bytes
                && top.by_memory[1].rss_bytes > 0,
            "{top:?}"
        );
        let lone = Group::sh("read never");
        let mut alone = TreeProbe::open(lone.pid()).expect("open");
        alone.probe().expect("probe");
        assert_eq!(alone.top_children(5), None);
    }

    /// Without `children` files the tree is found by scanning `/proc`, every fifth probe.
    #[test]
    fn scan_fallback_finds_the_tree() {
        let group = Group::sh("sleep 300 & sh -c 'sleep 300 & wait' & wait");
        poll_until(Duration::from_secs(10), || {
            (kernel_children(group.pid()).len() == 2).then_some(())
        })
        .expect("two children within 10 s");
        let mut tree = TreeProbe::open(group.pid())
            .expect("open")
            .without_children_files();
        let snap = poll_until(Duration::from_secs(10), || {
            // Probe 0 of every SCAN_EVERY scans.
            let snap = tree.probe().expect("probe");
            for _ in 1..SCAN_EVERY {
                tree.probe().expect("probe");
            }
            (snap.total.processes == 4).then_some(snap)
        })
        .expect("sh, sleep, sh, sleep within 10 s");
        assert_eq!(snap.total.zombies, 0);
    }
}
