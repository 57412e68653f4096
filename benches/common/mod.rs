//! What the harnesses (`overhead`, `alert_quality`) share: the processes they start
//! ([`Proc`]: killed by pid when dropped, and with the harness through `PR_SET_PDEATHSIG`),
//! HTTP on 127.0.0.1 through `ureq`, a free port, the wall clock, and a least-squares
//! slope. Included by each harness with `#[path] mod common;`, so not every harness uses
//! every item.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest HTTP body read (a process-exporter scrape at N = 1,000 is a few MiB).
const MAX_BODY: u64 = 256 << 20;

/// A process the harness started. Dropping it kills it by pid (and its process group when
/// started with [`Proc::spawn_group`]) and reaps it.
pub struct Proc {
    /// The child itself.
    pub child: Child,
    what: String,
    group: bool,
}

impl Proc {
    /// Starts `cmd`; it dies with the harness (`PR_SET_PDEATHSIG`, which fires when the
    /// forking *thread* exits: start processes from the main thread).
    pub fn spawn(cmd: &mut Command, what: &str) -> Result<Proc, String> {
        Self::start(cmd, what, false)
    }

    /// As [`Proc::spawn`], in a process group of its own that is killed with it (what a
    /// shell script started goes too).
    pub fn spawn_group(cmd: &mut Command, what: &str) -> Result<Proc, String> {
        cmd.process_group(0);
        Self::start(cmd, what, true)
    }

    fn start(cmd: &mut Command, what: &str, group: bool) -> Result<Proc, String> {
        // SAFETY: runs in the forked child before exec; prctl is async-signal-safe and
        // touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Proc {
            child,
            what: what.to_string(),
            group,
        })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Not yet reaped (so the pid is still ours to signal).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` while the process is unreaped.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.running() {
            // SAFETY: plain syscall on a pid we have not reaped yet, so it is still ours.
            unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        }
    }

    /// Waits up to `grace` for the process to exit on its own.
    pub fn wait_exit(&mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        }
    }

    /// Sends `sig`, waits up to `grace`, then SIGKILLs.
    pub fn stop(&mut self, sig: libc::c_int, grace: Duration) -> Option<ExitStatus> {
        self.signal(sig);
        let status = self.wait_exit(grace);
        if status.is_none() {
            eprintln!(
                "  {} ({}) ignored signal {sig}; killed",
                self.what,
                self.pid()
            );
            self.kill();
        }
        status
    }

    /// SIGKILLs the group (when it has one) and the process, and reaps it.
    pub fn kill(&mut self) {
        if self.running() {
            let pid = self.pid() as libc::pid_t;
            // The group first, while the leader is unreaped so that the group id cannot
            // have been reused.
            if self.group {
                // SAFETY: plain syscall on our own, unreaped child's group.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            self.signal(libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port on 127.0.0.1 free a moment ago.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Least-squares slope of `(x, y)` points; `None` for fewer than two points or a single x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// An HTTP client for 127.0.0.1 that answers every status (no proxy, no status as error).
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// The status and body of an answer.
fn answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), String> {
    let mut response = result.map_err(|e| e.to_string())?;
    let code = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((code, body))
}

/// `GET http://127.0.0.1:{port}{path}`: the status and body.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    answer(
        agent(timeout)
            .get(format!("http://127.0.0.1:{port}{path}"))
            .call(),
    )
}

/// `POST` of a JSON `body` with a bearer `token` to `http://127.0.0.1:{port}{path}`.
pub fn http_post(
    port: u16,
    path: &str,
    token: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    answer(
        agent(timeout)
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body),
    )
}

/// A harness's command line, read flag by flag: `--key value` and `--key=value` alike.
pub struct Flags<'a> {
    rest: std::slice::Iter<'a, String>,
    /// The value given with `=` to the flag just read.
    inline: Option<String>,
}

impl<'a> Flags<'a> {
    /// Reads `args` (without the program name).
    pub fn new(args: &'a [String]) -> Self {
        Flags {
            rest: args.iter(),
            inline: None,
        }
    }

    /// The next flag (or stray argument), without its `=value`.
    pub fn next_key(&mut self) -> Option<String> {
        let arg = self.rest.next()?;
        match arg.split_once('=') {
            Some((key, value)) if key.starts_with("--") => {
                self.inline = Some(value.to_string());
                Some(key.to_string())
            }
            _ => {
                self.inline = None;
                Some(arg.clone())
            }
        }
    }

    /// The value of the flag `key` just read: after its `=`, else the next argument.
    pub fn value(&mut self, key: &str) -> Result<String, String> {
        self.inline
            .take()
            .or_else(|| self.rest.next().cloned())
            .ok_or_else(|| format!("{key} needs a value"))
    }
}
