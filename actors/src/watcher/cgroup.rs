//! The daemon's own cgroup: finding it, reading its accounting, and — for daemons perfvisor
//! starts — creating it and killing everything in it.
//!
//! A cgroup sees what a process tree cannot: a child that called `setsid` and was re-parented
//! to init is out of the tree but still in the cgroup, and the kernel's CPU and memory
//! accounting of a cgroup is exact where the tree's is a sum of samples. Only a cgroup the
//! daemon has to itself is read: one that is not the root, not perfvisor's own, and named
//! like a systemd service (`*.service`) or like one perfvisor created (`perfvisor-*`). Anything
//! else (a login session's scope, a container holding many programs) would charge the daemon
//! with other processes' work.
//!
//! Both layouts are handled: the unified (v2) hierarchy, and hybrid hosts where the v2
//! hierarchy (often at `/sys/fs/cgroup/unified`) has no memory or pids controller and those
//! live in v1 hierarchies (`memory.usage_in_bytes`, `pids.current`). CPU time and pressure
//! (PSI) come from the v2 hierarchy, where every cgroup has them.
//!
//! When the cgroup has its CPU and memory files ([`CgroupProbe::reads_totals`]), the
//! daemon's `process.*` totals are read from here instead of from its process tree (see
//! `logic::CgroupTracker`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Name prefix of the cgroups perfvisor creates for the daemons it starts.
pub const PREFIX: &str = "perfvisor-";

/// Where the cgroup hierarchies are mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// The unified (v2) hierarchy, if mounted.
    pub v2: Option<PathBuf>,
    /// v1 hierarchies: their controllers and mount point.
    pub v1: Vec<(Vec<String>, PathBuf)>,
}

impl Mounts {
    /// The hierarchies of this host, read once from `/proc/self/mountinfo`.
    pub fn host() -> &'static Mounts {
        static MOUNTS: OnceLock<Mounts> = OnceLock::new();
        MOUNTS.get_or_init(|| {
            std::fs::read_to_string("/proc/self/mountinfo")
                .map(|t| Mounts::parse(&t))
                .unwrap_or_default()
        })
    }

    /// Parses `/proc/PID/mountinfo`: the first cgroup2 mount, and every v1 one.
    pub fn parse(text: &str) -> Mounts {
        let mut mounts = Mounts::default();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or("");
            let options = right.nth(1).unwrap_or("");
            match fstype {
                "cgroup2" if mounts.v2.is_none() => mounts.v2 = Some(PathBuf::from(point)),
                "cgroup" => {
                    let controllers = options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                        .map(str::to_owned)
                        .collect();
                    mounts.v1.push((controllers, PathBuf::from(point)));
                }
                _ => {}
            }
        }
        mounts
    }

    fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(c, _)| c.iter().any(|c| c == controller))
            .map(|(_, p)| p.as_path())
    }
}

/// The cgroups a process is in, from `/proc/PID/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Path in the unified hierarchy (the `0::` line).
    pub v2: Option<String>,
    /// Paths in v1 hierarchies, with their controllers.
    pub v1: Vec<(Vec<String>, String)>,
}

impl Membership {
    /// Reads the membership of `pid`.
    pub fn of(pid: u32) -> io::Result<Membership> {
        Ok(Self::parse(&std::fs::read_to_string(format!(
            "/proc/{pid}/cgroup"
        ))?))
    }

    /// Parses `/proc/PID/cgroup` (`ID:CONTROLLERS:PATH` lines).
    pub fn parse(text: &str) -> Membership {
        let mut m = Membership::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                m.v2 = Some(path.to_owned());
            } else {
                let controllers = controllers.split(',').map(str::to_owned).collect();
                m.v1.push((controllers, path.to_owned()));
            }
        }
        m
    }

    fn v1_path(&self, controller: &str) -> Option<&str> {
        self.v1
            .iter()
            .find(|(c, _)| c.iter().any(|c| c == controller))
            .map(|(_, p)| p.as_str())
    }
}

/// Whether a cgroup path names a cgroup one daemon has to itself (see the module
/// documentation): not the root, last component `*.service` or `perfvisor-*`.
pub fn is_dedicated(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    path != "/" && (last.ends_with(".service") || last.starts_with(PREFIX))
}

/// The cgroup directories of one daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonCgroup {
    /// Its directory in the unified hierarchy.
    pub v2: Option<PathBuf>,
    /// Its directory in a v1 memory hierarchy (hybrid hosts).
    pub memory_v1: Option<PathBuf>,
    /// Its directory in a v1 pids hierarchy (hybrid hosts).
    pub pids_v1: Option<PathBuf>,
}

impl DaemonCgroup {
    /// The dedicated cgroup `pid` is in, if any: `None` when it shares its cgroup (root, a
    /// session, perfvisor's own) or cgroups are not mounted.
    pub fn of_pid(pid: u32) -> Option<DaemonCgroup> {
        let theirs = Membership::of(pid).ok()?;
        let ours = Membership::of(std::process::id()).unwrap_or_default();
        let mounts = Mounts::host();
        let pick = |path: Option<&str>, own: Option<&str>, mount: Option<&Path>| {
            let path = path?;
            (is_dedicated(path) && Some(path) != own)
                .then(|| mount.map(|m| m.join(path.trim_start_matches('/'))))
                .flatten()
        };
        let cg = DaemonCgroup {
            v2: pick(
                theirs.v2.as_deref(),
                ours.v2.as_deref(),
                mounts.v2.as_deref(),
            ),
            memory_v1: pick(
                theirs.v1_path("memory"),
                ours.v1_path("memory"),
                mounts.v1_mount("memory"),
            ),
            pids_v1: pick(
                theirs.v1_path("pids"),
                ours.v1_path("pids"),
                mounts.v1_mount("pids"),
            ),
        };
        (cg != DaemonCgroup::default()).then_some(cg)
    }

    /// Creates (or reuses) the cgroup for a daemon perfvisor starts: `perfvisor-<name>` under
    /// `parent` in the unified hierarchy (see [`resolve_parent`]), and on hybrid hosts also
    /// under perfvisor's own cgroup in the v1 memory and pids hierarchies, so limits that hold
    /// perfvisor hold its daemons too. Fails when the directory cannot be made.
    pub fn create(name: &str, parent: &Path) -> io::Result<DaemonCgroup> {
        let leaf = format!(
            "{PREFIX}{}",
            name.replace(
                |c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "_"
            )
        );
        let mut cg = Self::made_by_us(&leaf)?;
        let v2 = parent.join(&leaf);
        make_dir(&v2)?;
        cg.v2 = Some(v2);
        cg.memory_v1 = cg.memory_v1.filter(|d| make_dir(d).is_ok());
        cg.pids_v1 = cg.pids_v1.filter(|d| make_dir(d).is_ok());
        Ok(cg)
    }

    /// The v1 directories [`DaemonCgroup::create`] makes (or made) for the cgroup named `leaf`
    /// on hybrid hosts, whether or not they exist; `v2` is left `None`. A zombie's
    /// `/proc/PID/cgroup` shows the root for every v1 hierarchy, so this, not the daemon's
    /// membership, finds the v1 directories to remove.
    pub fn made_by_us(leaf: &str) -> io::Result<DaemonCgroup> {
        let mounts = Mounts::host();
        let ours = Membership::of(std::process::id())?;
        let v2_mount = mounts
            .v2
            .as_deref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 mount"))?;
        let v1 = |controller: &str| {
            // Only where the v2 hierarchy lacks the controller.
            let v2_has = std::fs::read_to_string(v2_mount.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == controller));
            if v2_has {
                return None;
            }
            let mount = mounts.v1_mount(controller)?;
            let own = ours.v1_path(controller).unwrap_or("/");
            Some(mount.join(own.trim_start_matches('/')).join(leaf))
        };
        Ok(DaemonCgroup {
            memory_v1: v1("memory"),
            pids_v1: v1("pids"),
            v2: None,
        })
    }

    /// The `cgroup.procs` files a process must be written into to join every directory.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().map(|d| d.join("cgroup.procs")).collect()
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.v2, &self.memory_v1, &self.pids_v1]
            .into_iter()
            .flatten()
    }

    /// The pids in the cgroup (the v2 directory's, else the first v1 one's).
    pub fn pids(&self) -> Vec<u32> {
        self.dirs()
            .next()
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process in the cgroup — through `cgroup.kill` where the kernel has it
    /// (5.14+), else SIGKILL to each pid of `cgroup.procs` until none is left — and waits up
    /// to `timeout` for the cgroup to be empty. Refuses to touch perfvisor's own cgroup.
    pub fn kill(&self, timeout: Duration) -> io::Result<()> {
        if self.pids().contains(&std::process::id()) {
            return Err(io::Error::other("refusing to kill perfvisor's own cgroup"));
        }
        let deadline = Instant::now() + timeout;
        let killed_at_once = match self.v2.as_ref().map(|d| d.join("cgroup.kill")) {
            Some(f) if f.exists() => std::fs::write(f, b"1").is_ok(),
            _ => false,
        };
        loop {
            let left = self.pids();
            if left.is_empty() {
                return Ok(());
            }
            if !killed_at_once {
                for pid in left {
                    if let Ok(pid) = i32::try_from(pid) {
                        if pid > 1 {
                            // SAFETY: kill has no memory effects; the pid was just listed in
                            // the daemon's cgroup (a pid reused since would be in another).
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "processes still in the cgroup after SIGKILL",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Removes the directories that can be removed now; true once none is left. A directory
    /// is busy while a process of it is still there, a zombie not yet reaped included (v1).
    pub fn remove(&self) -> bool {
        self.dirs()
            .filter(|d| match std::fs::remove_dir(d) {
                Ok(()) => false,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            })
            .count()
            == 0
    }
}

/// Name of the leaf perfvisor moves itself into when it puts its daemons under its own
/// (delegated) cgroup: in cgroup v2 a cgroup whose children get controllers (memory, pids)
/// may hold no process itself.
pub const SELF_LEAF: &str = "supervisor";

/// Where the cgroups of the daemons perfvisor starts go: a directory of the unified (v2)
/// hierarchy, or why there is none (the reason `status` shows).
///
/// `configured` is `[supervisor] cgroup_parent`: an absolute path under the cgroup2 mount, or
/// a path relative to it; it is created if missing (its own parent must exist). Without it:
/// perfvisor's own cgroup when it was delegated to perfvisor (systemd `Delegate=yes`: the
/// directory is writable by a non-root perfvisor, or carries systemd's `trusted.delegate`
/// mark), with perfvisor moving itself into a [`SELF_LEAF`] child and enabling the
/// controllers it may for its daemons; else, as root, the root of the hierarchy; else none.
pub fn resolve_parent(configured: Option<&Path>) -> Result<PathBuf, String> {
    let mount = Mounts::host()
        .v2
        .as_deref()
        .ok_or_else(|| "no cgroup2 hierarchy is mounted".to_string())?;
    match configured {
        Some(p) => configured_parent(mount, p, true),
        None => {
            static AUTO: OnceLock<Result<PathBuf, String>> = OnceLock::new();
            AUTO.get_or_init(|| auto_parent(mount)).clone()
        }
    }
}

/// Checks a configured parent, creating it when missing if `create` (else a missing one is
/// fine when its own parent is a cgroup perfvisor may write); the error names the value and
/// what would be accepted.
pub fn configured_parent(mount: &Path, p: &Path, create: bool) -> Result<PathBuf, String> {
    let dir = if p.is_absolute() {
        p.to_path_buf()
    } else {
        mount.join(p)
    };
    let expected = format!(
        "expected a cgroup directory under the cgroup2 mount {} (an absolute path under it, \
         or a path relative to it such as \"perfvisor.slice\")",
        mount.display()
    );
    if dir
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
        || !dir.starts_with(mount)
    {
        return Err(format!(
            "cgroup_parent {:?} is not under the cgroup2 mount; {expected}",
            p.display().to_string()
        ));
    }
    if !dir.exists() && !create {
        // Made at the first start; its parent must allow that.
        let up = dir.parent().unwrap_or(mount);
        if !up.join("cgroup.procs").exists() || !writable(up) {
            return Err(format!(
                "cgroup_parent {:?}: {} does not exist and {} is not a cgroup perfvisor may \
                 write to create it in; {expected}",
                p.display().to_string(),
                dir.display(),
                up.display()
            ));
        }
        return Ok(dir);
    }
    if !dir.exists() {
        make_dir(&dir).map_err(|e| {
            format!(
                "cgroup_parent {:?}: cannot create {}: {e}; {expected} that perfvisor may write",
                p.display().to_string(),
                dir.display()
            )
        })?;
    }
    if !dir.join("cgroup.procs").exists() {
        return Err(format!(
            "cgroup_parent {:?}: {} is not a cgroup (no cgroup.procs); {expected}",
            p.display().to_string(),
            dir.display()
        ));
    }
    if !writable(&dir) {
        return Err(format!(
            "cgroup_parent {:?}: {} is not writable by perfvisor (uid {}); {expected} that \
             perfvisor may write (root, or delegated to its user)",
            p.display().to_string(),
            dir.display(),
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() }
        ));
    }
    Ok(dir)
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Whether systemd marked the cgroup as delegated (`Delegate=yes`, systemd 251 and later).
fn delegation_mark(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    [c"trusted.delegate", c"user.delegate"].iter().any(|name| {
        // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks for the size.
        unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
    })
}

fn auto_parent(mount: &Path) -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let own = Membership::of(std::process::id())
        .ok()
        .and_then(|m| m.v2)
        .unwrap_or_else(|| "/".into());
    let own_dir = mount.join(own.trim_start_matches('/'));
    if own != "/" && writable(&own_dir) && (!root || delegation_mark(&own_dir)) {
        // Delegated: perfvisor leaves its own cgroup for a leaf so that the controllers can
        // be handed down to its daemons' cgroups (best effort: without them, CPU time,
        // pressure and cgroup.kill still work).
        let leaf = own_dir.join(SELF_LEAF);
        if make_dir(&leaf).is_ok() && std::fs::write(leaf.join("cgroup.procs"), b"0").is_ok() {
            let available =
                std::fs::read_to_string(own_dir.join("cgroup.controllers")).unwrap_or_default();
            for c in available.split_whitespace() {
                if matches!(c, "cpu" | "memory" | "pids" | "io") {
                    let _ = std::fs::write(own_dir.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
        }
        return Ok(own_dir);
    }
    if root {
        return Ok(mount.to_path_buf());
    }
    Err(format!(
        "not root, and perfvisor's own cgroup {own} is not delegated to it (run it under \
         systemd with Delegate=yes, or set [supervisor] cgroup_parent to a cgroup it may write)"
    ))
}

fn make_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Stall totals of one pressure file (`some` and `full` lines), in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// Time some task was stalled on the resource (cumulative µs).
    pub some_us: Option<u64>,
    /// Time all non-idle tasks were stalled at once (cumulative µs).
    pub full_us: Option<u64>,
}

/// One reading of a daemon's cgroup. `None` where the file is missing (no such controller
/// on this host, or an older kernel).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupSnapshot {
    /// CPU time of every process that ever ran in the cgroup (`cpu.stat` `usage_usec`), in
    /// seconds (cumulative).
    pub cpu_seconds: Option<f64>,
    /// Memory charged to the cgroup (`memory.current`, or v1 `memory.usage_in_bytes`): resident
    /// memory and page cache and kernel memory, so more than the tree's RSS.
    pub memory_bytes: Option<u64>,
    /// Tasks (threads) in the cgroup (`pids.current`).
    pub tasks: Option<u64>,
    /// Processes in the cgroup (lines of `cgroup.procs`).
    pub processes: Option<u64>,
    /// OOM kills inside the cgroup (`memory.events` `oom_kill`, or v1 `memory.oom_control`).
    pub oom_kills: Option<u64>,
    /// Bytes read from and written to block devices by the cgroup (`io.stat` `rbytes` and
    /// `wbytes` summed over devices, cumulative); `None` without the io controller.
    pub io: Option<(u64, u64)>,
    /// CPU, memory and I/O pressure (`cpu.pressure`, `memory.pressure`, `io.pressure`).
    pub pressure: [Pressure; 3],
}

/// Why perfvisor could not give the daemons it started a cgroup of their own, by pid: the
/// manager records it at spawn and the watcher says it in `status`. Bounded: the oldest
/// entries go first.
static UNPLACED: std::sync::Mutex<Vec<(u32, String)>> = std::sync::Mutex::new(Vec::new());
const UNPLACED_KEPT: usize = 256;

/// Records that the process `pid` perfvisor just started has no cgroup of its own, and why.
pub fn record_unplaced(pid: u32, reason: String) {
    if let Ok(mut list) = UNPLACED.lock() {
        list.retain(|(p, _)| *p != pid);
        if list.len() >= UNPLACED_KEPT {
            list.remove(0);
        }
        list.push((pid, reason));
    }
}

/// Why the process `pid` has no cgroup of its own, if perfvisor started it and tried.
pub fn unplaced_reason(pid: u32) -> Option<String> {
    let list = UNPLACED.lock().ok()?;
    list.iter().find(|(p, _)| *p == pid).map(|(_, r)| r.clone())
}

/// The files of one daemon's cgroup, kept open and re-read at each probe.
#[derive(Debug)]
pub struct CgroupProbe {
    cgroup: DaemonCgroup,
    sources: super::view::FigureSources,
    cpu_stat: Option<File>,
    memory: Option<File>,
    oom: Option<File>,
    pids: Option<File>,
    procs: Option<File>,
    io: Option<File>,
    pressure: [Option<File>; 3],
}

impl CgroupProbe {
    /// Opens the files of `cgroup` that exist.
    pub fn open(cgroup: DaemonCgroup) -> CgroupProbe {
        let open =
            |dir: Option<&PathBuf>, name: &str| dir.and_then(|d| File::open(d.join(name)).ok());
        use super::view::{
            SOURCE_CGROUP_V1_MEMORY, SOURCE_CGROUP_V1_PIDS, SOURCE_CGROUP_V2, SOURCE_TREE,
        };
        let v2 = cgroup.v2.as_ref();
        let mem1 = cgroup.memory_v1.as_ref();
        let cpu_stat = open(v2, "cpu.stat");
        let memory_v2 = open(v2, "memory.current");
        let pids_v2 = open(v2, "pids.current");
        let procs = open(v2, "cgroup.procs");
        let memory_v1 = memory_v2
            .is_none()
            .then(|| open(mem1, "memory.usage_in_bytes"))
            .flatten();
        let pids_v1 = pids_v2
            .is_none()
            .then(|| open(cgroup.pids_v1.as_ref(), "pids.current"))
            .flatten();
        let pick = |options: &[(bool, &str)]| {
            options
                .iter()
                .find(|(has, _)| *has)
                .map_or(SOURCE_TREE, |(_, name)| name)
                .to_string()
        };
        // The cgroup gives the totals only with both its CPU and memory files (see
        // `reads_totals`); else every total comes from the tree walk.
        let totals = cpu_stat.is_some() && (memory_v2.is_some() || memory_v1.is_some());
        let sources = super::view::FigureSources {
            cpu: pick(&[(totals && cpu_stat.is_some(), SOURCE_CGROUP_V2)]),
            memory: pick(&[
                (totals && memory_v2.is_some(), SOURCE_CGROUP_V2),
                (totals && memory_v1.is_some(), SOURCE_CGROUP_V1_MEMORY),
            ]),
            pids: pick(&[
                (
                    totals && (pids_v2.is_some() || procs.is_some()),
                    SOURCE_CGROUP_V2,
                ),
                (totals && pids_v1.is_some(), SOURCE_CGROUP_V1_PIDS),
            ]),
            cgroup: cgroup.dirs().next().map(|d| d.display().to_string()),
            no_cgroup: None,
        };
        CgroupProbe {
            sources,
            cpu_stat,
            memory: memory_v2.or(memory_v1),
            oom: open(v2, "memory.events").or_else(|| open(mem1, "memory.oom_control")),
            pids: pids_v2.or(pids_v1),
            procs,
            io: open(v2, "io.stat"),
            pressure: [
                open(v2, "cpu.pressure"),
                open(v2, "memory.pressure"),
                open(v2, "io.pressure"),
            ],
            cgroup,
        }
    }

    /// The cgroup of `pid` if it has one to itself, opened.
    pub fn of_pid(pid: u32) -> Option<CgroupProbe> {
        DaemonCgroup::of_pid(pid).map(CgroupProbe::open)
    }

    /// The directories read.
    pub fn cgroup(&self) -> &DaemonCgroup {
        &self.cgroup
    }

    /// Where each figure comes from: the cgroup where its file could be opened, else the
    /// process tree.
    pub fn sources(&self) -> &super::view::FigureSources {
        &self.sources
    }

    /// Whether the cgroup gives the daemon's totals: its CPU (`cpu.stat`) and memory files
    /// could be opened. Then the watcher reads the totals from here instead of walking the
    /// process tree at every probe.
    pub fn reads_totals(&self) -> bool {
        self.cpu_stat.is_some() && self.memory.is_some()
    }

    /// Reads every open file; a file that fails to read gives `None` for its figure.
    pub fn probe(&self) -> CgroupSnapshot {
        self.probe_figures(true)
    }

    /// Reads the CPU and memory files, and with `slow` also the task count (`pids.current`),
    /// `io.stat`, the pressure files, the OOM kill count and `cgroup.procs` (left `None`
    /// otherwise): the watcher reads those every [`super::logic::CGROUP_SLOW_EVERY`]th probe.
    /// A file that fails to read gives `None` for its figure. No allocation: each file is read
    /// into one stack buffer and parsed in place.
    pub fn probe_figures(&self, slow: bool) -> CgroupSnapshot {
        let mut buf = [0u8; 1024];
        let mut read = |file: &Option<File>, f: &mut dyn FnMut(&str)| {
            if let Some(n) = file
                .as_ref()
                .and_then(|file| file.read_at(&mut buf, 0).ok())
            {
                if let Ok(text) = std::str::from_utf8(&buf[..n]) {
                    f(text);
                }
            }
        };
        let mut snap = CgroupSnapshot::default();
        read(&self.cpu_stat, &mut |t| {
            snap.cpu_seconds = keyed(t, "usage_usec").map(|us| us as f64 / 1e6)
        });
        read(&self.memory, &mut |t| {
            snap.memory_bytes = t.trim().parse().ok()
        });
        if !slow {
            return snap;
        }
        read(&self.pids, &mut |t| snap.tasks = t.trim().parse().ok());
        read(&self.io, &mut |t| snap.io = Some(parse_io_stat(t)));
        read(&self.oom, &mut |t| snap.oom_kills = keyed(t, "oom_kill"));
        for (slot, file) in snap.pressure.iter_mut().zip(&self.pressure) {
            read(file, &mut |t| *slot = parse_pressure(t));
        }
        // cgroup.procs can outgrow the buffer: count its lines chunk by chunk.
        snap.processes = self.procs.as_ref().and_then(|f| {
            let (mut offset, mut lines) = (0u64, 0u64);
            loop {
                let n = f.read_at(&mut buf, offset).ok()?;
                if n == 0 {
                    return Some(lines);
                }
                lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
                offset += n as u64;
            }
        });
        snap
    }
}

/// Sums the `rbytes=` and `wbytes=` of every device line of `io.stat`.
pub fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for field in text.split_ascii_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            read = read.saturating_add(v.parse().unwrap_or(0));
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            write = write.saturating_add(v.parse().unwrap_or(0));
        }
    }
    (read, write)
}

/// The value of a `key value` line.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Parses a PSI file: `some avg10=… total=N` and `full … total=N`.
pub fn parse_pressure(text: &str) -> Pressure {
    let total = |line: &str| {
        line.split(' ')
            .find_map(|f| f.strip_prefix("total="))
            .and_then(|v| v.trim().parse().ok())
    };
    let mut p = Pressure::default();
    for line in text.lines() {
        if line.starts_with("some ") {
            p.some_us = total(line);
        } else if line.starts_with("full ") {
            p.full_us = total(line);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hybrid and unified mount tables parse.
    #[test]
    fn parses_mountinfo() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
            35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
            40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let m = Mounts::parse(text);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.v1_mount("memory"),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(m.v1_mount("pids"), Some(Path::new("/sys/fs/cgroup/pids")));
        assert_eq!(m.v1_mount("cpu"), None);
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Mounts::parse(unified),
            Mounts {
                v2: Some(PathBuf::from("/sys/fs/cgroup")),
                v1: vec![]
            }
        );
    }

    /// `/proc/PID/cgroup` lines parse; only service-like and perfvisor cgroups are dedicated.
    #[test]
    fn parses_membership_and_knows_dedicated_cgroups() {
        let m = Membership::parse(
            "4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/system.slice/nginx.service\n",
        );
        assert_eq!(m.v2.as_deref(), Some("/system.slice/nginx.service"));
        assert_eq!(m.v1_path("memory"), Some("/process_api/abc"));
        assert_eq!(m.v1_path("cpuacct"), Some("/"));
        assert!(is_dedicated("/system.slice/nginx.service"));
        assert!(is_dedicated("/perfvisor-web"));
        assert!(!is_dedicated("/"));
        assert!(!is_dedicated("/user.slice/user-1000.slice/session-2.scope"));
        assert!(!is_dedicated("/process_api/abc"));
    }

    /// PSI files and keyed files parse.
    #[test]
    fn parses_pressure_and_keyed_files() {
        let p = parse_pressure(
            "some avg10=6.88 avg60=30.09 avg300=25.96 total=3728973693\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=12\n",
        );
        assert_eq!(
            p,
            Pressure {
                some_us: Some(3728973693),
                full_us: Some(12)
            }
        );
        assert_eq!(
            keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            Some(1500)
        );
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
        assert_eq!(keyed("low 0\n", "oom_kill"), None);
    }
}
