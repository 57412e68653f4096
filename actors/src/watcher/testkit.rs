//! Test helpers for real process trees, shared by the watcher's unit tests and the
//! integration tests of whole daemons (`tests/integration/trees.rs` includes this file with
//! `#[path]`): a shell in its own process group that is killed with its whole group however
//! the test ends, and polling with a timeout instead of sleeping.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A shell started in its own process group; the whole group (its children included) is
/// killed by the group id — the shell's pid — and the shell reaped, however the test ends.
pub struct Group(pub Child);

impl Group {
    /// `sh -c script` with its standard input piped (see [`Group::say`]).
    pub fn sh(script: &str) -> Self {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        Group(child)
    }

    /// The shell's pid, which is also the group id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends one line to the shell's `read`.
    pub fn say(&mut self, line: &str) {
        say(&mut self.0, line);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: plain syscall; the group id is the shell's pid, which we still own
        // (not reaped yet), so it cannot name another group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Writes `line` and a newline to the piped standard input of `child`.
pub fn say(child: &mut Child, line: &str) {
    let stdin = child.stdin.as_mut().expect("piped stdin");
    stdin.write_all(line.as_bytes()).expect("write");
    stdin.write_all(b"\n").expect("write");
    stdin.flush().expect("flush");
}

/// Calls `f` every 10 ms until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
