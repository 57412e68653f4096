//! Running a program for a bounded time: no shell, in a process group of its own, its input
//! written and the start of its standard error kept on helper threads (so a program that
//! reads nothing or writes much cannot hold the caller), and its whole group killed at the
//! deadline. Used by exec sinks, exec rule actions and command health checks.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How many bytes of a failed program's standard error are kept.
pub const EXCERPT_BYTES: usize = 512;
/// How long a failed program's standard error may stay open (held by a descendant) before
/// the excerpt is taken as it is.
const EXCERPT_WAIT: Duration = Duration::from_secs(1);

/// Why a run did not succeed.
#[derive(Debug)]
pub enum ExecError {
    /// The program could not be started (missing, not executable, no resources).
    Start {
        /// The program.
        program: String,
        /// What the system said.
        source: io::Error,
    },
    /// Waiting for it, or starting a helper thread, failed; it was killed with its group.
    Wait {
        /// The program.
        program: String,
        /// What the system said.
        source: io::Error,
    },
    /// It ran past its timeout and was killed with its group.
    TimedOut {
        /// The program.
        program: String,
        /// Its pid.
        pid: u32,
        /// The timeout.
        after: Duration,
    },
    /// It exited unsuccessfully.
    Failed {
        /// The program.
        program: String,
        /// How it ended.
        status: ExitStatus,
        /// The start of its standard error, trimmed.
        stderr: String,
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Start { program, source } => write!(f, "cannot start {program}: {source}"),
            ExecError::Wait { program, source } => {
                write!(f, "cannot wait for {program}: {source}; killed it")
            }
            ExecError::TimedOut {
                program,
                pid,
                after,
            } => write!(
                f,
                "{program} (pid {pid}) timed out after {after:?}; killed it and its process group"
            ),
            ExecError::Failed {
                program,
                status,
                stderr,
            } if stderr.is_empty() => write!(f, "{program} {status}"),
            ExecError::Failed {
                program,
                status,
                stderr,
            } => write!(f, "{program} {status}: {stderr}"),
        }
    }
}

impl std::error::Error for ExecError {}

/// Runs `program` with `args` (no shell), `input` on its standard input (or none), its
/// standard output discarded, for at most `timeout`.
pub fn run(
    program: &Path,
    args: &[String],
    input: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(), ExecError> {
    let name = program.display().to_string();
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own group, so that a timeout kills what it started too.
        .process_group(0)
        .spawn()
        .map_err(|source| ExecError::Start {
            program: name.clone(),
            source,
        })?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let writer = thread::Builder::new()
        .name("exec-stdin".into())
        .spawn(move || {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                // A program that exits without reading gives EPIPE; its exit status says
                // whether it failed.
                let _ = stdin.write_all(&input);
            }
        });
    // The excerpt grows as stderr is read; the channel closes at its end of file.
    let excerpt = Arc::new(Mutex::new(Vec::new()));
    let (eof_tx, eof_rx) = crossbeam_channel::bounded::<()>(0);
    let stderr = child.stderr.take();
    let kept = Arc::clone(&excerpt);
    let reader = thread::Builder::new()
        .name("exec-stderr".into())
        .spawn(move || {
            let _eof = eof_tx;
            let Some(mut stderr) = stderr else {
                return;
            };
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
                        let room = EXCERPT_BYTES.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        });
    if let Err(source) = writer.and(reader) {
        kill(&mut child, pid);
        return Err(ExecError::Wait {
            program: name,
            source,
        });
    }
    let deadline = started + timeout;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                let now = Instant::now();
                if now >= deadline {
                    kill(&mut child, pid);
                    return Err(ExecError::TimedOut {
                        program: name,
                        pid,
                        after: timeout,
                    });
                }
                thread::sleep(nap.min(deadline - now));
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            Err(source) => {
                kill(&mut child, pid);
                return Err(ExecError::Wait {
                    program: name,
                    source,
                });
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    // Its stderr ends at once unless a descendant still holds it: wait for that end a
    // little (a loaded machine may not have run the reader yet), then take what was read.
    let _ = eof_rx.recv_timeout(EXCERPT_WAIT);
    let excerpt = excerpt.lock().unwrap_or_else(PoisonError::into_inner);
    Err(ExecError::Failed {
        program: name,
        status,
        stderr: String::from_utf8_lossy(&excerpt).trim().to_owned(),
    })
}

/// Kills the process group led by `pid` (not reaped yet, so neither the pid nor the group id
/// can have been reused), then the child itself, and reaps it.
fn kill(child: &mut Child, pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 1 {
            // SAFETY: kill has no memory effects; the group is the child's own (spawned with
            // process_group(0)) and its leader is not reaped yet.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["-c".into(), script.into()]
    }

    /// Ensures input reaches the program, failures carry the stderr excerpt, a missing
    /// program is a start error, and a timeout kills the program and what it started.
    #[test]
    fn runs_feeds_reports_and_kills_the_group() {
        let sh_path = Path::new("/bin/sh");
        let long = Duration::from_secs(10);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let script = format!("cat > '{}'", out.display());
        run(sh_path, &sh(&script), Some(b"hello".to_vec()), long).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"hello");

        let err = run(sh_path, &sh("echo broken >&2; exit 3"), None, long).unwrap_err();
        assert!(matches!(err, ExecError::Failed { .. }), "{err:?}");
        assert_eq!(err.to_string(), "/bin/sh exit status: 3: broken");

        let err = run(Path::new("/nonexistent/prog"), &[], None, long).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot start /nonexistent/prog: "),
            "{err}"
        );

        // A child in the background that would outlive its parent: the group kill takes it.
        let pidfile = dir.path().join("bg");
        let script = format!("sleep 30 & echo $! > '{}'; wait", pidfile.display());
        let started = Instant::now();
        let err = run(sh_path, &sh(&script), None, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let bg: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..100).any(|_| {
            // SAFETY: signal 0 only checks whether the pid exists.
            let alive = unsafe { libc::kill(bg, 0) } == 0
                && !std::fs::read_to_string(format!("/proc/{bg}/stat"))
                    .is_ok_and(|s| s.contains(") Z"));
            if alive {
                thread::sleep(Duration::from_millis(20));
            }
            !alive
        });
        assert!(gone, "the background sleep {bg} outlived the timeout");
    }
}
