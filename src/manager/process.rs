//! Operating-system edge of the manager: user lookup, spawning a daemon in its own process
//! group with its output piped (or sent through its FIFO) to the log threads, signalling the
//! whole group, and what `/proc` and pidfds tell about a process that is not our child.
//! Where perfvisor may create cgroups (root, or a delegated subtree), each daemon also gets
//! its own cgroup at spawn, and a SIGKILL to its group also kills everything in that cgroup,
//! so a child that called `setsid` (a new group) does not outlive a stop.
//! Every `unsafe` block of the manager lives here, each a single libc call.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perfvisor_actors::watcher::cgroup::{record_unplaced, resolve_parent, DaemonCgroup, PREFIX};

use super::logs::{pump, RotatingLog};
use super::spec::ManagedSpec;
use super::state::INVOCATION_ENV;

/// Capacity asked for each daemon FIFO: output a daemon can write while perfvisor is down
/// before its writes block (the kernel caps it at `/proc/sys/fs/pipe-max-size`, 1 MiB by
/// default).
const FIFO_CAPACITY: i32 = 1 << 20;

/// Numeric ids of a user account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserIds {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Look `name` up in the user database (thread-safe `getpwnam_r`).
pub(crate) fn lookup_user(name: &str) -> Result<UserIds, String> {
    let cname =
        CString::new(name).map_err(|_| format!("user name {name:?} contains a NUL byte"))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: `passwd` is a plain C struct of integers and pointers; all-zero is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, `buf.len()` is the buffer's true length,
        // and the strings `pwd` points into live in `buf`, which we do not read afterwards.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            let len = buf.len() * 2;
            buf.resize(len, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "cannot look up user {name:?}: {}",
                io::Error::from_raw_os_error(rc)
            ));
        }
        if result.is_null() {
            return Err(format!(
                "user {name:?} does not exist on this host; name an account from the user database"
            ));
        }
        return Ok(UserIds {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
}

/// Where a spawned daemon's stdout and stderr go.
pub(crate) enum Output<'a> {
    /// A new pipe per stream, pumped into these logs by threads that end with the process.
    Pipes {
        out: &'a Arc<Mutex<RotatingLog>>,
        err: &'a Arc<Mutex<RotatingLog>>,
    },
    /// The daemon's FIFOs (their read-write ends, duplicated), pumped by long-lived threads.
    Fifos { out: &'a File, err: &'a File },
}

/// Spawn `spec.command` in a new process group (pgid = pid), stdin from /dev/null, stdout and
/// stderr to `output`. Environment: perfvisor's own plus `spec.env`, plus the invocation id
/// when one is given.
pub(crate) fn spawn(
    spec: &ManagedSpec,
    output: Output<'_>,
    invocation: Option<&str>,
) -> io::Result<Child> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&spec.env)
        .process_group(0)
        .stdin(Stdio::null());
    match output {
        Output::Pipes { .. } => cmd.stdout(Stdio::piped()).stderr(Stdio::piped()),
        Output::Fifos { out, err } => cmd
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(err.try_clone()?)),
    };
    if let Some(id) = invocation {
        cmd.env(INVOCATION_ENV, id);
    }
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    if let Some(user) = &spec.user {
        let ids = lookup_user(user).map_err(|e| io::Error::new(io::ErrorKind::NotFound, e))?;
        // std does setgroups([]) (when root), setgid, then setuid in the child before exec.
        cmd.uid(ids.uid).gid(ids.gid);
    }
    let placement = cgroup_for(&spec.name).map_err(|reason| {
        tracing::debug!(daemon = %spec.name, reason, "No cgroup of its own for the daemon.");
        reason
    });
    if let Ok((_, procs)) = &placement {
        let fds: Vec<i32> = procs.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: the closure runs in the child between fork and exec and only calls write(2),
        // which is async-signal-safe, on descriptors opened before the fork (still open in the
        // child: CLOEXEC closes them only at exec). Writing "0" moves the writer itself.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &fds {
                    libc::write(*fd, b"0".as_ptr().cast(), 1);
                }
                Ok(())
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            if let Ok((cgroup, _)) = &placement {
                // Nothing ran in it (a failed exec exits before `spawn` returns).
                cgroup.remove();
            }
            return Err(e);
        }
    };
    let placement = match placement {
        Ok(placed) => Some(placed),
        Err(reason) => {
            // The watcher says it in `status`.
            record_unplaced(child.id(), reason);
            None
        }
    };
    if let Some((cgroup, procs)) = placement {
        // A daemon with `user` switched credentials before the closure ran and may not have
        // been allowed to move itself: move it from here (a child it forked in between stays
        // behind, a window of microseconds).
        let pid = child.id().to_string();
        for mut file in procs {
            let _ = io::Write::write_all(&mut file, pid.as_bytes());
        }
        tracing::debug!(daemon = %spec.name, pid = child.id(), cgroup = ?cgroup.v2, "Daemon placed in its own cgroup.");
    }
    if let Output::Pipes { out, err } = output {
        if let Some(stdout) = child.stdout.take() {
            pump(&spec.name, "stdout", stdout, Arc::clone(out));
        }
        if let Some(stderr) = child.stderr.take() {
            pump(&spec.name, "stderr", stderr, Arc::clone(err));
        }
    }
    Ok(child)
}

/// Opens the FIFO at `path` (made first, mode 0600, if missing or not a FIFO of ours) for
/// perfvisor: a blocking read end for its log thread, and a read-write end that perfvisor
/// holds and duplicates as each child's stdout or stderr. Holding a read end, a child never
/// gets SIGPIPE when perfvisor dies: its output waits in the FIFO (up to its capacity, then
/// its writes block) until the next perfvisor opens it again. The log thread sees end of
/// file once perfvisor drops its read-write end and no process holds the FIFO any more.
pub(crate) fn open_fifo(path: &Path) -> io::Result<(File, File)> {
    match fs::symlink_metadata(path) {
        // SAFETY: geteuid has no preconditions.
        Ok(m) if m.file_type().is_fifo() && m.uid() == unsafe { libc::geteuid() } => {}
        Ok(_) => {
            fs::remove_file(path)?;
            make_fifo(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => make_fifo(path)?,
        Err(e) => return Err(e),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    // Non-blocking so that opening does not wait for a writer; blocking again below.
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    let keep = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let fd = reader.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL only read and set its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Best effort: more room for output written while perfvisor is down.
    // SAFETY: fcntl on a descriptor we own; F_SETPIPE_SZ takes an int.
    let _ = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, FIFO_CAPACITY) };
    Ok((reader, keep))
}

fn make_fifo(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// State letter (`R`, `S`, `Z`, …).
    pub(crate) state: char,
    /// Process group.
    pub(crate) pgid: u32,
    /// Start time in clock ticks after boot: with the pid, an identity no other process has.
    pub(crate) start_ticks: u64,
}

impl ProcStat {
    /// Exited, not yet reaped (or being reaped).
    pub(crate) fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 3 (state), 5 (pgrp) and 22 (starttime) of proc(5), counted from 3 here.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// How long ago a process that started `start_ticks` after boot started.
pub(crate) fn process_age(start_ticks: u64) -> Option<Duration> {
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let age = uptime - start_ticks as f64 / hz as f64;
    Some(Duration::from_secs_f64(age.max(0.0)))
}

/// A pidfd of `pid` (Linux 5.3 and later): it becomes readable when the process exits, even
/// though the process is not our child. `Ok(None)` when the kernel has no `pidfd_open`.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<Option<OwnedFd>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor (close-on-exec).
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) => Ok(None),
            _ => Err(e),
        };
    }
    let fd = i32::try_from(rc).map_err(|_| io::Error::other("descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Blocks until the process of `pidfd` has exited.
pub(crate) fn wait_pidfd(pidfd: &OwnedFd) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `p` is one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut p, 1, -1) };
        if rc > 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if rc < 0 && e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `[supervisor] cgroup_parent` of the running binary (`None`: the default placement of
/// [`resolve_parent`](perfvisor_actors::watcher::cgroup::resolve_parent)).
static CGROUP_PARENT: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

/// Sets where the cgroups of the daemons started from now on go: a directory of the cgroup2
/// hierarchy (absolute, or relative to its mount), or `None` for the default (perfvisor's
/// own cgroup when delegated to it, else the hierarchy's root when root). One setting per
/// process, like the manager.
pub fn set_cgroup_parent(parent: Option<std::path::PathBuf>) {
    if let Ok(mut p) = CGROUP_PARENT.lock() {
        *p = parent;
    }
}

/// Records why the process `pid` of a daemon that a previous run of perfvisor started, and
/// this one re-adopted, has no cgroup of its own, so `status` says it as it did before the
/// restart: re-derived, since the previous run's reason died with it. Nothing when it has
/// one.
pub(crate) fn explain_adopted(pid: u32) {
    if DaemonCgroup::of_pid(pid).is_some() {
        return;
    }
    let configured = CGROUP_PARENT.lock().ok().and_then(|p| p.clone());
    let reason = match resolve_parent(configured.as_deref()) {
        Err(reason) => reason,
        Ok(parent) if !may_write(&parent) => refused_under(&parent),
        Ok(parent) => format!(
            "started by an earlier run of perfvisor that gave it none; it gets one under {} at \
             its next start",
            parent.display()
        ),
    };
    record_unplaced(pid, reason);
}

/// Whether this process may create entries in `dir`.
fn may_write(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}

/// Why a cgroup cannot be created under `parent` when the kernel refuses it.
fn refused_under(parent: &Path) -> String {
    format!(
        "cannot create a cgroup under {}: permission denied (not root, and not delegated)",
        parent.display()
    )
}

/// A fresh cgroup for one start of daemon `name` (`perfvisor-<name>.<perfvisor pid>.<n>`, so
/// two perfvisors or two starts never share one), with its `cgroup.procs` files open for
/// writing; why not when cgroups cannot be created here (not root, no delegation, no cgroup2).
fn cgroup_for(name: &str) -> Result<(DaemonCgroup, Vec<File>), String> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let configured = CGROUP_PARENT.lock().ok().and_then(|p| p.clone());
    let parent = resolve_parent(configured.as_deref())?;
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cgroup = DaemonCgroup::create(&format!("{name}.{}.{seq}", std::process::id()), &parent)
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => refused_under(&parent),
            _ => format!("cannot create a cgroup under {}: {e}", parent.display()),
        })?;
    let procs = cgroup
        .procs_files()
        .iter()
        .filter_map(|f| OpenOptions::new().write(true).open(f).ok())
        .collect();
    Ok((cgroup, procs))
}

/// Kills everything in the cgroup perfvisor made for the daemon led by `pid` (found from
/// `/proc/PID/cgroup`, which a zombie leader still has), and removes the cgroup. Nothing when
/// the daemon is in no cgroup of perfvisor's making.
fn kill_cgroup_of(pid: u32) {
    let Some(found) = DaemonCgroup::of_pid(pid) else {
        return;
    };
    let Some(leaf) = found
        .v2
        .as_ref()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.starts_with(PREFIX))
    else {
        return;
    };
    // The v1 directories are where perfvisor makes them: a zombie leader shows none.
    let cgroup = DaemonCgroup {
        v2: found.v2,
        ..DaemonCgroup::made_by_us(&leaf).unwrap_or_default()
    };
    if let Err(e) = cgroup.kill(Duration::from_secs(2)) {
        tracing::warn!(pid, cgroup = ?cgroup.v2, error = %e, "Could not empty the daemon's cgroup.");
        return;
    }
    if cgroup.remove() {
        return;
    }
    // Busy until the leader, a zombie now, is reaped by whoever called us: retry for a while
    // from a thread of its own rather than make the caller wait.
    let retry = std::thread::Builder::new()
        .name("cgroup-rmdir".into())
        .spawn(move || {
            for _ in 0..200 {
                std::thread::sleep(Duration::from_millis(25));
                if cgroup.remove() {
                    return;
                }
            }
            tracing::warn!(cgroup = ?cgroup.v2, "The daemon's cgroup is still busy after 5 s; left in place.");
        });
    if let Err(e) = retry {
        tracing::warn!(error = %e, "Could not start the thread that removes the daemon's cgroup.");
    }
}

/// Send `signal` to every process of group `pgid`; `Ok(false)` when the group is gone. A
/// SIGKILL also kills every process of the daemon's own cgroup, if perfvisor made one.
pub(crate) fn signal_group(pgid: u32, signal: i32) -> io::Result<bool> {
    let sent = signal_pgid(pgid, signal);
    if signal == libc::SIGKILL && pgid > 1 {
        kill_cgroup_of(pgid);
    }
    sent
}

fn signal_pgid(pgid: u32, signal: i32) -> io::Result<bool> {
    let pgid = i32::try_from(pgid).map_err(|_| io::Error::other("pgid out of range"))?;
    if pgid <= 1 {
        // kill(0 or -1) would hit perfvisor's own group or every process: never.
        return Err(io::Error::other("refusing to signal process group 0 or 1"));
    }
    // SAFETY: kill has no memory effects; a negative pid addresses exactly that process group.
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Block until process `pid` (a child of ours, leader of its own group) has exited, without
/// reaping it, then SIGKILL what is left of its group. While the leader is an unreaped zombie
/// its pid cannot be reused, so the group signal cannot reach an unrelated process.
pub(crate) fn wait_exit_then_kill_group(pid: u32) -> io::Result<bool> {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: `siginfo_t` is plain data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; WNOWAIT leaves the child to be reaped
        // by `Child::wait`, so std's bookkeeping stays right.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    signal_group(pid, libc::SIGKILL)
}

/// Exit code and signal of an exit status.
pub(crate) fn decode(status: ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}
