//! No fork without a durable record, through the real binary (issue 16): when `perfvisor run`
//! cannot write its managed daemons' state file — the state directory's disk is full (a small
//! tmpfs mounted on `<database>.managed` and filled up; needs root), or perfvisor is out of
//! file descriptors (its RLIMIT_NOFILE lowered from outside with `prlimit(2)`) — the daemon is
//! not started, the reason names the file and the OS error, and after a SIGKILL of perfvisor
//! and a restart exactly one copy of the daemon runs. Copies are counted by a marker in their
//! command line, so a process perfvisor lost track of would be counted too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{self, leaders, RunGuard, Sweeper, Tmpfs};

/// Longest wait for anything that polls.
const WAIT: Duration = Duration::from_secs(30);

/// One test's files, port and marker, and perfvisor's log for failure messages.
struct World {
    _dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
    log: PathBuf,
    port: u16,
    /// `durable-test-<nonce>-`: the worker carries `<marker>worker` in its command line.
    marker: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let marker = format!("durable-test-{:08x}-", fastrand::u32(..));
        let world = World {
            config: dir.path().join("perfvisor.toml"),
            db: dir.path().join("pv.db"),
            log: dir.path().join("perfvisor.stderr"),
            port: support::free_port(),
            marker,
            _dir: dir,
        };
        std::fs::write(
            &world.config,
            format!(
                r#"
[supervisor]
database = "{db}"
probe_interval = "200ms"
listen = "127.0.0.1:{port}"
token = "t0ken"

[api]
# This test reads without the token.
anonymous_loopback_reads = true

[[daemon]]
name = "worker"
command = ["{loadgen}", "--cpu", "0", "--as", "{marker}worker"]
stop_timeout = "2s"
startup_grace = "1s"
backoff_initial = "200ms"
backoff_max = "1s"
"#,
                db = world.db.display(),
                port = world.port,
                loadgen = env!("CARGO_BIN_EXE_perfvisor-loadgen"),
                marker = world.marker,
            ),
        )
        .expect("config");
        world
    }

    /// The directory of the state file: `<database>.managed`.
    fn state_dir(&self) -> PathBuf {
        let mut name = self.db.as_os_str().to_os_string();
        name.push(".managed");
        PathBuf::from(name)
    }

    /// Starts `perfvisor run`, its log appended to [`World::log`].
    fn start(&self) -> RunGuard {
        RunGuard(support::start_run_logged(&self.config, &self.log))
    }

    /// Panics with `msg` and the end of perfvisor's log.
    fn fail(&self, msg: String) -> ! {
        support::fail_with_log(&self.log, msg)
    }

    /// Polls `f` until it returns `Ok`, failing after [`WAIT`] with `what` and the last thing
    /// `f` said; perfvisor exiting meanwhile fails at once.
    fn poll<T>(&self, run: &mut RunGuard, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
        support::poll_while_running(&mut run.0 .0, &self.log, WAIT, what, f)
    }

    /// The worker as `GET /api/v1/managed` shows it.
    fn worker(&self) -> Result<serde_json::Value, String> {
        let (status, body) = support::http_get(self.port, "/api/v1/managed")
            .map_err(|e| format!("no answer from /api/v1/managed: {e}"))?;
        if status != 200 {
            return Err(format!("{status}: {body}"));
        }
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        v.as_array()
            .into_iter()
            .flatten()
            .find(|d| d["name"] == "worker")
            .cloned()
            .ok_or_else(|| format!("no worker in {v}"))
    }

    /// The pids of the worker's copies (process-group leaders carrying its marker).
    fn copies(&self) -> Vec<u32> {
        leaders(&self.marker).remove("worker").unwrap_or_default()
    }

    /// Waits until perfvisor reports the worker running and checks that it is the one copy.
    fn exactly_one_copy(&self, run: &mut RunGuard) -> u32 {
        let pid = self.poll(run, "the worker's pid", || {
            let w = self.worker()?;
            w["pid"]
                .as_u64()
                .map(|p| p as u32)
                .ok_or_else(|| format!("worker: {w}"))
        });
        let copies = self.copies();
        if copies != [pid] {
            self.fail(format!(
                "perfvisor reports the worker as {pid}; processes carrying its marker: {copies:?}"
            ));
        }
        pid
    }
}

/// Fills the file system of `dir` up to ENOSPC with `dir/fill`.
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("fill")).expect("fill file");
    let block = vec![0xa5u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    // Whatever a smaller write can still take.
    while let Ok(n) = f.write(&block[..512]) {
        if n == 0 {
            break;
        }
    }
    let _ = f.sync_all();
}

/// The state directory's disk full when the worker is to start: it is not started and
/// `GET /api/v1/managed` says why, naming state.json and ENOSPC; no copy runs. After a
/// SIGKILL of perfvisor, space freed and a restart, exactly one copy runs.
#[test]
fn full_disk_at_spawn_starts_nothing_and_a_restart_starts_one() {
    let world = World::new();
    let Some(disk) = support::or_skip(
        Tmpfs::mount_at(&world.state_dir(), "256k"),
        "cannot mount a small tmpfs (needs root)",
    ) else {
        return;
    };
    fill(&disk.dir);
    // Dropped after every perfvisor: whatever carries the marker then is ended by pid.
    let _sweeper = Sweeper {
        prefix: world.marker.clone(),
    };

    let mut run = world.start();
    let state_file = world.state_dir().join("state.json");
    let want = format!(
        "cannot record the start of worker in {}: No space left on device (os error 28); not starting it, so a restart of perfvisor cannot lose track of it",
        state_file.display()
    );
    let worker = world.poll(&mut run, "the reason in /api/v1/managed", || {
        let w = world.worker()?;
        (w["last_error"] == want.as_str())
            .then_some(w.clone())
            .ok_or_else(|| format!("worker: {w}"))
    });
    assert_eq!(worker["pid"], serde_json::Value::Null, "{worker}");
    assert!(
        ["backoff", "fatal"].contains(&worker["state"]["state"].as_str().unwrap_or("")),
        "{worker}"
    );
    // A later attempt fails the same way (the backoff retries it); still no copy anywhere.
    world.poll(&mut run, "a second failed attempt", || {
        let w = world.worker()?;
        (w["restarts"].as_u64() >= Some(1) && w["last_error"] == want.as_str())
            .then_some(())
            .ok_or_else(|| format!("worker: {w}"))
    });
    assert_eq!(world.copies(), Vec::<u32>::new());
    let log = std::fs::read_to_string(&world.log).unwrap_or_default();
    assert!(log.contains(&want), "the reason is not in the log");

    run.0.kill();
    assert_eq!(world.copies(), Vec::<u32>::new());
    std::fs::remove_file(disk.dir.join("fill")).expect("free the space");

    let mut run = world.start();
    world.exactly_one_copy(&mut run);
    let w = world.worker().expect("worker");
    assert_eq!(w["last_error"], serde_json::Value::Null, "{w}");
    drop(run);
    assert_eq!(
        world.copies(),
        Vec::<u32>::new(),
        "the worker outlived a SIGTERMed perfvisor"
    );
}

/// A perfvisor out of file descriptors when the worker is to restart (its soft
/// RLIMIT_NOFILE lowered to 3 while it runs): the start is refused with EMFILE and the
/// state file named in the log, no copy runs; after a SIGKILL and a restart exactly one does.
#[test]
fn emfile_at_spawn_starts_nothing_and_a_restart_starts_one() {
    let world = World::new();
    let _sweeper = Sweeper {
        prefix: world.marker.clone(),
    };
    let mut run = world.start();
    let first = world.exactly_one_copy(&mut run);

    // The soft limit only; fds already open stay open, every new one fails with EMFILE.
    let limit = libc::rlimit {
        rlim_cur: 3,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit on our own child's pid with valid, initialised structs.
    let rc = unsafe {
        libc::prlimit(
            run.pid() as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let limit = libc::rlimit {
        rlim_max: old.rlim_max,
        ..limit
    };
    // SAFETY: as above.
    let rc = unsafe {
        libc::prlimit(
            run.pid() as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());

    // The worker dies; perfvisor's restart of it cannot be recorded.
    // SAFETY: kill with a valid signal on the pid perfvisor reported and we counted.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    let want = format!(
        "cannot record the start of worker in {}: Too many open files (os error 24); not starting it",
        world.state_dir().join("state.json").display()
    );
    world.poll(&mut run, "the refused start in the log", || {
        let log = std::fs::read_to_string(&world.log).unwrap_or_default();
        log.contains(&want)
            .then_some(())
            .ok_or_else(|| "not logged yet".to_string())
    });
    assert_eq!(world.copies(), Vec::<u32>::new());

    run.0.kill();
    assert_eq!(world.copies(), Vec::<u32>::new());
    let mut run = world.start();
    let second = world.exactly_one_copy(&mut run);
    assert_ne!(second, first);
    drop(run);
    assert_eq!(
        world.copies(),
        Vec::<u32>::new(),
        "the worker outlived a SIGTERMed perfvisor"
    );
}
