//! The per-process probe of one watched daemon: reads CPU time, memory, threads, state,
//! storage I/O, open descriptors and uptime of a single pid, and proves on every read that the
//! pid still names the process it was opened on. It is plain synchronous code with no actor
//! types, so the watcher actor stays thin and `benches/probe.rs` can measure it directly.
//!
//! On Linux [`ProcessProbe`] keeps `/proc/PID` and the files under it open and re-reads them
//! with `pread` at offset 0: a few microseconds per probe, no allocation, and the open
//! descriptors are pinned to the process they were opened on — once it exits (or its pid is
//! reused) every read through them fails, which is how [`ProbeError::Gone`] is detected.
//! Elsewhere [`ProcessProbe`] delegates to [`SysinfoProbe`], which is also built on Linux so
//! the benchmark can compare the two.

use std::path::{Path, PathBuf};

use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

/// How often the soft open-files limit is re-read: it rarely changes (only through
/// `prlimit`/`setrlimit`), and parsing `/proc/PID/limits` is the largest read of a probe.
const FD_LIMIT_EVERY: u64 = 30;

/// What pins a pid to one particular process: a reused pid gets a different start time, an
/// `exec` a different executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// Start time as the OS counts it: on Linux clock ticks since boot (`/proc/PID/stat`
    /// field 22); under [`SysinfoProbe`] seconds since the Unix epoch, the finest sysinfo gives.
    pub start_time_ticks: u64,
    /// The executable (`/proc/PID/exe`), without the ` (deleted)` suffix the kernel adds after
    /// the file was replaced on disk; `None` when it cannot be read (permission denied, kernel
    /// thread, zombie).
    pub exe: Option<PathBuf>,
}

/// An `exec` seen by a probe: the same process (pid and start time) now runs another program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// The executable before, when it was known.
    pub from: Option<PathBuf>,
    /// The executable now.
    pub to: PathBuf,
}

impl ProcessIdentity {
    /// One line for [`ProbeError::IdentityChanged`].
    fn describe(start_time_ticks: u64, exe: Option<&Path>) -> String {
        match exe {
            Some(exe) => format!("start time {start_time_ticks}, exe {}", exe.display()),
            None => format!("start time {start_time_ticks}, exe unknown"),
        }
    }
}

/// Scheduling state of a process, as the one-letter code of `/proc/PID/stat` field 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// `R`: running or runnable.
    Running,
    /// `S`: interruptible sleep (waiting for an event).
    Sleeping,
    /// `D`: uninterruptible sleep, usually waiting on storage.
    DiskSleep,
    /// `Z`: exited but not yet reaped by its parent.
    Zombie,
    /// `T` (stopped by a signal) or `t` (stopped by a tracer).
    Stopped,
    /// `I`: idle kernel thread.
    Idle,
    /// Any other letter (`X` dead, `P` parked, `W` waking...), kept as read.
    Other(char),
}

impl ProcState {
    /// Numeric code for storing the state as a metric sample: Running = 1, Sleeping = 2,
    /// DiskSleep = 3, Stopped = 4, Zombie = 5, Idle = 6, Other = 0.
    pub fn code(&self) -> f64 {
        match self {
            ProcState::Running => 1.0,
            ProcState::Sleeping => 2.0,
            ProcState::DiskSleep => 3.0,
            ProcState::Stopped => 4.0,
            ProcState::Zombie => 5.0,
            ProcState::Idle => 6.0,
            ProcState::Other(_) => 0.0,
        }
    }

    /// The state letter as `ps` shows it (`T` for both kinds of stop).
    pub fn letter(&self) -> char {
        match self {
            ProcState::Running => 'R',
            ProcState::Sleeping => 'S',
            ProcState::DiskSleep => 'D',
            ProcState::Zombie => 'Z',
            ProcState::Stopped => 'T',
            ProcState::Idle => 'I',
            ProcState::Other(c) => *c,
        }
    }

    /// Maps sysinfo's portable status.
    fn from_sysinfo(status: ProcessStatus) -> Self {
        match status {
            ProcessStatus::Run => ProcState::Running,
            ProcessStatus::Sleep => ProcState::Sleeping,
            ProcessStatus::UninterruptibleDiskSleep => ProcState::DiskSleep,
            ProcessStatus::Zombie => ProcState::Zombie,
            ProcessStatus::Stop | ProcessStatus::Tracing => ProcState::Stopped,
            ProcessStatus::Idle => ProcState::Idle,
            ProcessStatus::Dead => ProcState::Other('X'),
            ProcessStatus::Wakekill => ProcState::Other('K'),
            ProcessStatus::Waking => ProcState::Other('W'),
            ProcessStatus::Parked => ProcState::Other('P'),
            ProcessStatus::LockBlocked => ProcState::Other('L'),
            _ => ProcState::Other('?'),
        }
    }
}

/// One reading of a process. Counters are cumulative since the process started; the watcher
/// turns them into rates.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcSnapshot {
    /// CPU time spent in user mode, in seconds (cumulative).
    pub cpu_user_seconds: f64,
    /// CPU time spent in the kernel on the process's behalf, in seconds (cumulative). Always 0
    /// under [`SysinfoProbe`], which only reports the total (counted as user time).
    pub cpu_system_seconds: f64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Number of threads (at least 1 for a live process).
    pub threads: u64,
    /// Scheduling state.
    pub state: ProcState,
    /// Bytes the process caused to be fetched from storage (cumulative, `/proc/PID/io`
    /// `read_bytes`); `None` when unreadable, e.g. permission denied.
    pub read_bytes: Option<u64>,
    /// Bytes the process caused to be sent to storage (cumulative, `/proc/PID/io`
    /// `write_bytes`); `None` when unreadable, e.g. permission denied.
    pub write_bytes: Option<u64>,
    /// Number of open file descriptors; `None` when `/proc/PID/fd` is unreadable.
    pub open_fds: Option<u64>,
    /// Soft `RLIMIT_NOFILE` (`Max open files` in `/proc/PID/limits`); `None` when unlimited or
    /// unreadable. Re-read only every 30th probe.
    pub fd_limit: Option<u64>,
    /// Seconds since the process started (never negative).
    pub uptime_seconds: f64,
    /// The parent's pid (`/proc/PID/stat` field 4); 0 when unknown.
    pub ppid: u32,
    /// CPU time (user + system, seconds, cumulative) of the children this process has
    /// waited for, and of their waited-for descendants (`cutime` + `cstime`, fields 16 and 17
    /// of `/proc/PID/stat`). Children still running, and children reaped automatically because
    /// `SIGCHLD` is ignored, are not in it. Always 0 under [`SysinfoProbe`].
    pub children_cpu_seconds: f64,
}

impl ProcSnapshot {
    /// The process's own CPU time, user + system, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_user_seconds + self.cpu_system_seconds
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The process no longer exists: it exited and was reaped, so its `/proc` entries are gone.
    #[error("process {pid} no longer exists (its /proc/{pid} entries are gone)")]
    Gone {
        /// The pid that was probed.
        pid: u32,
    },
    /// The pid now names another process (reused) or the process exec'd another program.
    #[error(
        "pid {pid} no longer names the watched process (per /proc/{pid}/stat and /proc/{pid}/exe): \
         expected {expected}, found {found}"
    )]
    IdentityChanged {
        /// The pid that was probed.
        pid: u32,
        /// Identity recorded when the probe was opened.
        expected: String,
        /// Identity found now.
        found: String,
    },
    /// Any other failure to read a file of the process.
    #[error("cannot read {what} of process {pid}")]
    Io {
        /// The pid that was probed.
        pid: u32,
        /// The file or source that failed, e.g. `/proc/[pid]/stat`.
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
}

#[cfg(target_os = "linux")]
type Backend = procfs::ProcfsProbe;
#[cfg(not(target_os = "linux"))]
type Backend = SysinfoProbe;

/// Probe of one process, opened once and read at every tick of its watcher.
///
/// On Linux it keeps `/proc/PID/{stat,schedstat,io,limits,fd}` open and re-reads them in
/// place (memory comes from `stat`; `io` and `fd` are skipped while a one-thread process has
/// not run since they were read, which `schedstat` tells); elsewhere it delegates to
/// [`SysinfoProbe`].
pub struct ProcessProbe {
    inner: Backend,
}

impl std::fmt::Debug for ProcessProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessProbe")
            .field("identity", self.identity())
            .finish_non_exhaustive()
    }
}

impl ProcessProbe {
    /// Opens the process and records its identity (start time, executable).
    pub fn open(pid: u32) -> Result<Self, ProbeError> {
        Ok(Self {
            inner: Backend::open(pid)?,
        })
    }

    /// The identity recorded by [`ProcessProbe::open`].
    pub fn identity(&self) -> &ProcessIdentity {
        self.inner.identity()
    }

    /// Checks that the pid still names the same process, then reads a snapshot.
    pub fn probe(&mut self) -> Result<ProcSnapshot, ProbeError> {
        self.inner.probe()
    }

    /// Like [`ProcessProbe::probe`], but storage I/O and the descriptor count are re-read
    /// only every `every`th probe (counted over all probes; at least 1), the last figures
    /// given between: CPU, memory, threads, state and the identity check (`/proc/PID/stat`)
    /// at every call. Linux only; elsewhere every probe reads everything.
    pub fn probe_sparse(&mut self, every: u64) -> Result<ProcSnapshot, ProbeError> {
        #[cfg(target_os = "linux")]
        {
            self.inner.probe_sparse(every)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = every;
            self.inner.probe()
        }
    }

    /// Re-reads storage I/O and the descriptor count only every `n`th probe (at least 1),
    /// giving the last figures between: for the descendants of a tree, whose I/O and
    /// descriptors change the totals less than they cost to read. Linux only; elsewhere
    /// every probe reads everything.
    pub fn with_detail_every(mut self, n: u64) -> Self {
        #[cfg(target_os = "linux")]
        {
            self.inner.detail_every = n.max(1);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = n;
        self
    }

    /// The `exec` the last probes saw, if any (taken once): the identity already follows it.
    pub fn take_exec(&mut self) -> Option<Exec> {
        self.inner.exec.take()
    }

    /// The command name as of the last probe (`/proc/PID/stat` field 2, at most 15 bytes on
    /// Linux; sysinfo's process name elsewhere). Read from the file the probe reads anyway.
    pub fn comm(&self) -> &str {
        self.inner.comm()
    }

    /// Appends the pids of the process's children to `out`, read from
    /// `/proc/PID/task/TID/children` of each of its threads (a child belongs to the thread that
    /// forked it). `threads` is the thread count of the last snapshot: with one thread the
    /// kept-open file of the main thread is re-read, else the task directory is listed.
    ///
    /// `Ok(false)` when the kernel has no such file (built without `CONFIG_PROC_CHILDREN`,
    /// or not Linux): the caller must find children another way.
    pub fn children(&mut self, threads: u64, out: &mut Vec<u32>) -> Result<bool, ProbeError> {
        self.inner.children(threads, out)
    }
}

/// Every process of the host as (pid, parent pid), read from `/proc/*/stat`: the slow way to
/// find a daemon's children, for kernels without `/proc/PID/task/TID/children`. Processes
/// that exit during the scan are skipped; empty where there is no `/proc`.
pub fn scan_parents(out: &mut Vec<(u32, u32)>) {
    #[cfg(target_os = "linux")]
    procfs::scan_parents(out);
    #[cfg(not(target_os = "linux"))]
    let _ = out;
}

/// Reads the `exe` link of the process whose `/proc/PID` directory `dir` is, into `buf`
/// (grown when the link does not fit), without the ` (deleted)` suffix: what the probe's
/// exec check costs, public for `benches/probe.rs`.
#[cfg(target_os = "linux")]
pub fn read_exe_link<'b>(dir: &std::fs::File, buf: &'b mut Vec<u8>) -> std::io::Result<&'b [u8]> {
    procfs::read_exe(dir, buf)
}

/// Open-read-close variant used only to compare costs in the benchmark (same output, reopens
/// files each call).
pub fn probe_once(pid: u32) -> Result<ProcSnapshot, ProbeError> {
    Backend::open(pid)?.probe()
}

/// Probe of one process through `sysinfo`, refreshing only that pid. The portable backend of
/// [`ProcessProbe`]; built everywhere so the benchmark can compare it with the `/proc` one.
///
/// Weaker than the Linux backend: CPU time is only available as a total (reported as user
/// time), the start time has one-second resolution, storage bytes read as 0 rather than
/// `None` when unreadable, an `exec` is seen only where sysinfo refreshes the executable, and
/// the thread count is 1 where sysinfo does not list threads (everywhere but Linux).
pub struct SysinfoProbe {
    system: System,
    pid: Pid,
    identity: ProcessIdentity,
    probes: u64,
    fd_limit: Option<u64>,
    /// An exec seen and not yet taken.
    exec: Option<Exec>,
    comm: String,
}

impl std::fmt::Debug for SysinfoProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysinfoProbe")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl SysinfoProbe {
    /// Refreshes the process table for the pid and records its identity.
    pub fn open(pid: u32) -> Result<Self, ProbeError> {
        let mut system = System::new().map_err(|e| ProbeError::Io {
            pid,
            what: "the sysinfo process table",
            source: match e {
                sysinfo::Error::Io(io) => io,
                other => std::io::Error::other(other),
            },
        })?;
        let spid = Pid::from_u32(pid);
        Self::refresh(&mut system, spid);
        let process = system.process(spid).ok_or(ProbeError::Gone { pid })?;
        let identity = ProcessIdentity {
            pid,
            start_time_ticks: process.start_time(),
            exe: process.exe().map(Path::to_path_buf),
        };
        let comm = process.name().to_string_lossy().into_owned();
        Ok(Self {
            system,
            pid: spid,
            identity,
            probes: 0,
            fd_limit: None,
            exec: None,
            comm,
        })
    }

    /// The identity recorded by [`SysinfoProbe::open`].
    pub fn identity(&self) -> &ProcessIdentity {
        &self.identity
    }

    /// The process name sysinfo gave when the probe was opened.
    pub fn comm(&self) -> &str {
        &self.comm
    }

    /// Refreshes the pid, checks its start time (and executable where known), then reads a
    /// snapshot.
    pub fn probe(&mut self) -> Result<ProcSnapshot, ProbeError> {
        let pid = self.identity.pid;
        Self::refresh(&mut self.system, self.pid);
        let process = self
            .system
            .process(self.pid)
            .ok_or(ProbeError::Gone { pid })?;
        // sysinfo replaces its entry (exe included) when the start time changes, so a reused
        // pid shows here; an exec keeps the entry and its cached exe, so it does not.
        if let (Some(expected), Some(found)) = (&self.identity.exe, process.exe()) {
            if expected != found && process.start_time() == self.identity.start_time_ticks {
                // Same process, another program: an exec, which the watcher follows.
                let from = self.identity.exe.replace(found.to_path_buf());
                self.exec = Some(Exec {
                    from,
                    to: found.to_path_buf(),
                });
            }
        }
        if process.start_time() != self.identity.start_time_ticks {
            return Err(ProbeError::IdentityChanged {
                pid,
                expected: ProcessIdentity::describe(
                    self.identity.start_time_ticks,
                    self.identity.exe.as_deref(),
                ),
                found: ProcessIdentity::describe(process.start_time(), process.exe()),
            });
        }
        if self.probes.is_multiple_of(FD_LIMIT_EVERY) {
            self.fd_limit = process.open_files_limit().map(|n| n as u64);
        }
        self.probes += 1;
        let disk = process.disk_usage();
        Ok(ProcSnapshot {
            cpu_user_seconds: process.accumulated_cpu_time() as f64 / 1000.0,
            cpu_system_seconds: 0.0,
            rss_bytes: process.memory(),
            virtual_bytes: process.virtual_memory(),
            // sysinfo lists the other threads, not the main one.
            threads: process.tasks().map_or(1, |tasks| tasks.len() as u64 + 1),
            state: ProcState::from_sysinfo(process.status()),
            read_bytes: Some(disk.total_read_bytes),
            write_bytes: Some(disk.total_written_bytes),
            open_fds: process.open_files().map(|n| n as u64),
            fd_limit: self.fd_limit,
            uptime_seconds: process.run_time() as f64,
            ppid: process.parent().map_or(0, |p| p.as_u32()),
            children_cpu_seconds: 0.0,
        })
    }

    /// Children are not listed through sysinfo: always `Ok(false)`.
    pub fn children(&mut self, _threads: u64, _out: &mut Vec<u32>) -> Result<bool, ProbeError> {
        Ok(false)
    }

    fn refresh(system: &mut System, pid: Pid) {
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_disk_usage()
                .with_exe(UpdateKind::OnlyIfNotSet),
        );
    }
}

#[cfg(target_os = "linux")]
mod procfs;

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::watcher::testkit::{poll_until, say};

    /// A child that is killed and reaped however the test ends.
    struct Reaped(Child);

    impl Reaped {
        fn spawn(program: &str, args: &[&str]) -> Self {
            let child = Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn child");
            Reaped(child)
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }

        fn kill(&mut self) {
            self.0.kill().expect("kill child");
            self.0.wait().expect("reap child");
        }
    }

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Probes until the child sleeps: `spawn` returns right after `exec`, while the program
    /// is still loading and its figures still move.
    fn settled(probe: &mut ProcessProbe) -> ProcSnapshot {
        poll_until(Duration::from_secs(10), || {
            let snap = probe.probe().expect("probe while settling");
            (snap.state == ProcState::Sleeping).then_some(snap)
        })
        .expect("child settles into sleep within 10 s")
    }

    /// Sends `line` to the child's `read`, then probes until the probe reports the exec
    /// that follows it.
    #[cfg(target_os = "linux")]
    fn release_until_exec(child: &mut Reaped, line: &str, probe: &mut ProcessProbe) -> Exec {
        say(&mut child.0, line);
        poll_until(Duration::from_secs(10), || {
            probe.probe().expect("an exec is no error");
            probe.take_exec()
        })
        .expect("exec seen within 10 s")
    }

    fn cpu(s: &ProcSnapshot) -> f64 {
        s.cpu_user_seconds + s.cpu_system_seconds
    }

    /// The stat parser counts fields from the last `)`, so a comm with spaces and `)` parses.
    #[cfg(target_os = "linux")]
    #[test]
    fn parses_stat_whose_comm_has_spaces_and_parens() {
        // Field n (from 4 on) holds n * 10, so each parsed value names its field.
        let rest: Vec<String> = (4..=52).map(|n| (n * 10).to_string()).collect();
        let line = format!("4242 (my ) (odd) proc) R {}\n", rest.join(" "));
        let fields = procfs::parse_stat(line.as_bytes()).expect("parses");
        assert_eq!(
            fields,
            procfs::StatFields {
                state: ProcState::Running,
                ppid: 40,
                utime: 140,
                stime: 150,
                cutime: 160,
                cstime: 170,
                threads: 200,
                start_time: 220,
                vsize: 230,
                rss_pages: 240,
                code_range: (260, 270),
            }
        );
        assert_eq!(procfs::parse_stat(b"12 (truncated) S 1 2"), None);
        assert_eq!(procfs::parse_stat(b"12 no parens at all"), None);
        // The command name keeps its own spaces and parentheses.
        assert_eq!(procfs::comm_of(b"7 (a b) c)) S 1"), b"a b) c)");
        assert_eq!(procfs::comm_of(b"7 no parens"), b"");
    }

    /// schedstat, io and limits parse, including an unlimited open-files limit; a
    /// schedstat of zeros (no scheduler statistics) gives no run time.
    #[cfg(target_os = "linux")]
    #[test]
    fn parses_schedstat_io_and_limits() {
        assert_eq!(
            procfs::parse_schedstat(b"1203400 5600 12\n"),
            Some(1_203_400)
        );
        assert_eq!(procfs::parse_schedstat(b"0 0 0\n"), None);
        assert_eq!(procfs::parse_schedstat(b"x 1 2\n"), None);
        let io = b"rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 7\n";
        assert_eq!(procfs::parse_io(io), Some((4096, 8192)));
        assert_eq!(procfs::parse_io(b"rchar: 1\n"), None);
        let limits =
            b"Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             62811                62811                processes \n\
            Max open files            1024                 524288               files     \n";
        assert_eq!(procfs::parse_fd_limit(limits), Ok(Some(1024)));
        let unlimited =
            b"Max open files            unlimited            unlimited            files     \n";
        assert_eq!(procfs::parse_fd_limit(unlimited), Ok(None));
        assert_eq!(procfs::parse_fd_limit(b"Max processes 5 5\n"), Err(()));
        assert_eq!(procfs::parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(procfs::parse_u64(b"18446744073709551616"), None);
        assert_eq!(procfs::parse_u64(b"-1"), None);
    }

    /// Probing the test process itself gives plausible values and its own pid.
    #[test]
    fn probes_current_process() {
        let pid = std::process::id();
        let mut probe = ProcessProbe::open(pid).expect("open self");
        assert_eq!(probe.identity().pid, pid);
        assert!(probe.identity().exe.is_some());
        let snap = probe.probe().expect("probe self");
        assert!(snap.threads >= 1, "{snap:?}");
        assert!(snap.rss_bytes > 0, "{snap:?}");
        assert!(snap.virtual_bytes >= snap.rss_bytes, "{snap:?}");
        assert!(snap.open_fds.is_some_and(|n| n > 0), "{snap:?}");
        assert!(snap.fd_limit.is_none_or(|n| n > 0), "{snap:?}");
        assert!(snap.uptime_seconds >= 0.0, "{snap:?}");
        assert!(snap.uptime_seconds < 3600.0, "{snap:?}");
        assert!(snap.read_bytes.is_some(), "{snap:?}");
    }

    /// With `with_detail_every(n)` or `probe_sparse(n)`, descriptors (and storage I/O) are
    /// re-read at every nth probe only, the last figures given between; CPU and memory at
    /// every probe.
    #[cfg(target_os = "linux")]
    #[test]
    fn detail_figures_are_read_every_nth_probe() {
        for sparse_memory in [false, true] {
            let mut child = Reaped::spawn(
                "sh",
                &["-c", "read a; exec 3</dev/null 4</dev/null; read b"],
            );
            let mut probe = ProcessProbe::open(child.pid()).expect("open child");
            if !sparse_memory {
                probe = probe.with_detail_every(3);
            }
            let mut sparse = || {
                if sparse_memory {
                    probe.probe_sparse(3).expect("probe")
                } else {
                    probe.probe().expect("probe")
                }
            };
            let first = sparse();
            let fds = first.open_fds.expect("fds");
            say(&mut child.0, "go");
            let mut plain = ProcessProbe::open(child.pid()).expect("open child");
            poll_until(Duration::from_secs(10), || {
                (plain.probe().expect("probe").open_fds == Some(fds + 2)).then_some(())
            })
            .expect("the child opens two descriptors within 10 s");
            // Probes 2 and 3 give the first figure; the 4th re-reads.
            for _ in 0..2 {
                let between = sparse();
                assert_eq!(between.open_fds, Some(fds), "sparse: {sparse_memory}");
                assert!(between.rss_bytes > 0, "{between:?}");
            }
            assert_eq!(sparse().open_fds, Some(fds + 2), "sparse: {sparse_memory}");
        }
    }

    /// A sleeping process of one thread that has not run since its `stat` and descriptors
    /// were read has them given again without reading (at most `IDLE_SKIPS_MAX` times in a
    /// row); one that ran in between, though asleep at both probes, has them read: the
    /// descriptors it opened are counted at the very next probe.
    #[cfg(target_os = "linux")]
    #[test]
    fn idle_process_skips_detail_reads_until_it_runs() {
        let mut child = Reaped::spawn("sh", &["-c", "read a; exec 3</dev/null; read b"]);
        let mut probe = ProcessProbe::open(child.pid()).expect("open child");
        // Wait for the shell to block in `read` (it ran to get there).
        poll_until(Duration::from_secs(10), || {
            let s = probe.probe().expect("probe");
            (s.state == ProcState::Sleeping && probe.inner.idle_skips() > 0).then_some(())
        })
        .expect("a sleeping shell's detail reads are skipped within 10 s");
        let fds = probe.probe().expect("probe").open_fds.expect("fds");
        let mut most = 0;
        for _ in 0..(2 * procfs::IDLE_SKIPS_MAX + 2) {
            probe.probe().expect("probe");
            most = most.max(probe.inner.idle_skips());
        }
        assert_eq!(most, procfs::IDLE_SKIPS_MAX, "skips are bounded");
        say(&mut child.0, "go");
        let mut plain = ProcessProbe::open(child.pid()).expect("open child");
        poll_until(Duration::from_secs(10), || {
            let s = plain.probe().expect("probe");
            (s.open_fds == Some(fds + 1) && s.state == ProcState::Sleeping).then_some(())
        })
        .expect("the child opens a descriptor and blocks again within 10 s");
        let after = probe.probe().expect("probe");
        assert_eq!(after.open_fds, Some(fds + 1), "{after:?}");
        assert_eq!(probe.inner.idle_skips(), 0);
    }

    /// A real child is probed while alive and reported `Gone` once killed and reaped.
    #[test]
    fn killed_child_is_gone() {
        let mut child = Reaped::spawn("sleep", &["30"]);
        let mut probe = ProcessProbe::open(child.pid()).expect("open child");
        let snap = probe.probe().expect("probe live child");
        assert!(snap.threads >= 1);
        assert!(
            probe
                .identity()
                .exe
                .as_ref()
                .is_some_and(|exe| exe.ends_with("sleep")),
            "{:?}",
            probe.identity()
        );
        child.kill();
        let err = probe.probe().expect_err("child was reaped");
        assert!(
            matches!(err, ProbeError::Gone { pid } if pid == child.pid()),
            "{err:?}"
        );
        assert!(err.to_string().contains(&child.pid().to_string()), "{err}");
        // A fresh open fails the same way.
        assert!(matches!(
            ProcessProbe::open(child.pid()),
            Err(ProbeError::Gone { .. })
        ));
    }

    /// A pid that cannot exist is `Gone` at open.
    #[test]
    fn missing_pid_is_gone() {
        let err = ProcessProbe::open(u32::MAX).expect_err("no such pid");
        assert!(matches!(err, ProbeError::Gone { pid: u32::MAX }), "{err:?}");
    }

    /// CPU seconds of a busy child rise by about the wall time it burned (loose bound).
    #[test]
    fn cpu_seconds_follow_a_busy_child() {
        let child = Reaped::spawn("sh", &["-c", "while :; do :; done"]);
        let mut probe = ProcessProbe::open(child.pid()).expect("open child");
        let before = probe.probe().expect("probe");
        let started = Instant::now();
        let burned = poll_until(Duration::from_secs(10), || {
            let now = probe.probe().expect("probe");
            let burned = cpu(&now) - cpu(&before);
            (burned >= 0.3).then_some(burned)
        })
        .expect("busy child burns 300 ms of CPU within 10 s");
        let wall = started.elapsed().as_secs_f64();
        // One thread cannot burn more CPU than wall time (plus a tick or two of rounding);
        // a wrong tick rate would break this by orders of magnitude.
        assert!(burned <= wall + 0.05, "burned {burned} s in {wall} s");
        assert!(burned < 1.0, "burned {burned} s, expected about 0.3 s");
    }

    /// The kept-open probe and the open-read-close one report the same values.
    #[test]
    fn probe_once_agrees_with_kept_open_probe() {
        let child = Reaped::spawn("sleep", &["30"]);
        let mut probe = ProcessProbe::open(child.pid()).expect("open child");
        settled(&mut probe);
        let kept = probe.probe().expect("kept-open probe");
        let once = probe_once(child.pid()).expect("open-read-close probe");
        assert!(
            (kept.uptime_seconds - once.uptime_seconds).abs() < 1.0,
            "{kept:?} vs {once:?}"
        );
        let without_uptime = |s: &ProcSnapshot| ProcSnapshot {
            uptime_seconds: 0.0,
            ..s.clone()
        };
        assert_eq!(without_uptime(&kept), without_uptime(&once));
        assert_eq!(kept.state, ProcState::Sleeping);
        assert!(kept.fd_limit.is_some());
    }

    /// An exec under the same pid (same start time) is the same process running another
    /// program: probing carries on, the identity follows the new executable, and the exec is
    /// reported once.
    #[cfg(target_os = "linux")]
    #[test]
    fn exec_is_followed_and_reported() {
        let mut child = Reaped::spawn("sh", &["-c", "read line; exec sleep 30"]);
        let mut probe = ProcessProbe::open(child.pid()).expect("open child");
        probe.probe().expect("probe before exec");
        assert_eq!(probe.take_exec(), None);
        let exec = release_until_exec(&mut child, "go", &mut probe);
        assert!(exec.to.ends_with("sleep"), "{exec:?}");
        assert!(
            exec.from.as_ref().is_some_and(|f| !f.ends_with("sleep")),
            "{exec:?}"
        );
        assert!(probe
            .identity()
            .exe
            .as_ref()
            .is_some_and(|e| e.ends_with("sleep")));
        probe.probe().expect("still the same process");
        assert_eq!(probe.take_exec(), None, "reported once");
    }

    /// An exec of the same binary (same exe, new text mapping) is still the same daemon.
    #[cfg(target_os = "linux")]
    #[test]
    fn exec_of_the_same_binary_is_accepted() {
        let script = "read line; exec sleep 30";
        let mut child = Reaped::spawn("sh", &["-c", &format!("read line; exec sh -c '{script}'")]);
        let pid = child.pid();
        let mut probe = ProcessProbe::open(pid).expect("open child");
        let code_range = || {
            let text = std::fs::read(format!("/proc/{pid}/stat")).expect("stat");
            procfs::parse_stat(&text).expect("parses").code_range
        };
        let before = code_range();
        say(&mut child.0, "once");
        poll_until(Duration::from_secs(10), || {
            (code_range() != before).then_some(())
        })
        .expect("child re-execs sh within 10 s");
        // Probed until the new sh waits on its `read`: no identity error on the way.
        settled(&mut probe);
        assert_eq!(
            probe.take_exec(),
            None,
            "the same binary is no exec to report"
        );
        // The second exec, into another binary, is seen.
        let exec = release_until_exec(&mut child, "twice", &mut probe);
        assert!(exec.to.ends_with("sleep"), "{exec:?}");
    }

    /// Counting through `stat` of the fd directory, through `getdents64` and through
    /// `read_dir` agree.
    #[cfg(target_os = "linux")]
    #[test]
    fn fd_counts_agree() {
        let child = Reaped::spawn("sleep", &["30"]);
        settled(&mut ProcessProbe::open(child.pid()).expect("open child"));
        let fd_dir = std::fs::File::open(format!("/proc/{}/fd", child.pid())).expect("fd dir");
        let mut buf = vec![0; 4096];
        let by_stat = procfs::count_fds(&fd_dir, &mut buf).expect("count");
        let by_getdents = procfs::count_dir_entries(&fd_dir, &mut buf).expect("getdents");
        let again = procfs::count_dir_entries(&fd_dir, &mut buf).expect("rewound");
        let by_read_dir = std::fs::read_dir(format!("/proc/{}/fd", child.pid()))
            .expect("read_dir")
            .count() as u64;
        assert!(by_read_dir >= 3, "stdin, stdout, stderr at least");
        assert_eq!(
            (by_stat, by_getdents, again),
            (by_read_dir, by_read_dir, by_read_dir)
        );
        // A tiny buffer forces several getdents64 calls.
        let mut small = vec![0; 64];
        assert_eq!(
            procfs::count_dir_entries(&fd_dir, &mut small).expect("small"),
            by_read_dir
        );
    }

    /// The sysinfo backend reads the same child and also sees it go.
    #[test]
    fn sysinfo_probe_reads_and_loses_a_child() {
        let mut child = Reaped::spawn("sleep", &["30"]);
        settled(&mut ProcessProbe::open(child.pid()).expect("open child"));
        let mut probe = SysinfoProbe::open(child.pid()).expect("open child");
        assert_eq!(probe.identity().pid, child.pid());
        let snap = probe.probe().expect("probe");
        assert!(snap.threads >= 1, "{snap:?}");
        assert!(snap.rss_bytes > 0, "{snap:?}");
        assert!(snap.open_fds.is_some_and(|n| n >= 3), "{snap:?}");
        assert_eq!(snap.state, ProcState::Sleeping);
        child.kill();
        assert!(matches!(probe.probe(), Err(ProbeError::Gone { .. })));
    }

    /// State codes and letters are the documented ones.
    #[test]
    fn state_codes_and_letters() {
        let all = [
            (ProcState::Running, 1.0, 'R'),
            (ProcState::Sleeping, 2.0, 'S'),
            (ProcState::DiskSleep, 3.0, 'D'),
            (ProcState::Stopped, 4.0, 'T'),
            (ProcState::Zombie, 5.0, 'Z'),
            (ProcState::Idle, 6.0, 'I'),
            (ProcState::Other('X'), 0.0, 'X'),
        ];
        for (state, code, letter) in all {
            assert_eq!((state.code(), state.letter()), (code, letter), "{state:?}");
            #[cfg(target_os = "linux")]
            assert_eq!(procfs::state_from_letter(letter), state);
        }
        #[cfg(target_os = "linux")]
        assert_eq!(procfs::state_from_letter('t'), ProcState::Stopped);
    }
}
