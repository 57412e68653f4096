//! Operating-system edge of the manager: user lookup, spawning a daemon in its own process
//! group with its output piped to the log threads, and signalling the whole group. Every
//! `unsafe` block of the manager lives here, each a single libc call.

use std::ffi::CString;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use super::logs::{pump, RotatingLog};
use super::spec::ManagedSpec;

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

/// Spawn `spec.command` in a new process group (pgid = pid), stdin from /dev/null, stdout and
/// stderr pumped into the given logs. Environment: perfvisor's own plus `spec.env`.
pub(crate) fn spawn(
    spec: &ManagedSpec,
    out: &Arc<Mutex<RotatingLog>>,
    err: &Arc<Mutex<RotatingLog>>,
) -> io::Result<Child> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&spec.env)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    if let Some(user) = &spec.user {
        let ids = lookup_user(user).map_err(|e| io::Error::new(io::ErrorKind::NotFound, e))?;
        // std does setgroups([]) (when root), setgid, then setuid in the child before exec.
        cmd.uid(ids.uid).gid(ids.gid);
    }
    let mut child = cmd.spawn()?;
    if let Some(stdout) = child.stdout.take() {
        pump(&spec.name, "stdout", stdout, Arc::clone(out));
    }
    if let Some(stderr) = child.stderr.take() {
        pump(&spec.name, "stderr", stderr, Arc::clone(err));
    }
    Ok(child)
}

/// Send `signal` to every process of group `pgid`; `Ok(false)` when the group is gone.
pub(crate) fn signal_group(pgid: u32, signal: i32) -> io::Result<bool> {
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
