//! Tests of the manager with real child processes: crash loops, process trees, stop
//! escalation, logs, health checks, dependencies and reload. Every wait polls with a bound;
//! every process started is killed by its process group when the `Manager` drops.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;

use super::*;

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "perfvisor-manager-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// File names in the directory, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Events as they arrive, with their arrival time and whether a `wait` returned them.
struct Events {
    rx: Receiver<ManagerEvent>,
    seen: Vec<(Instant, ManagerEvent)>,
    taken: Vec<bool>,
}

impl Events {
    fn new() -> (Manager, Self) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            Manager::new(tx),
            Self {
                rx,
                seen: Vec::new(),
                taken: Vec::new(),
            },
        )
    }

    /// The earliest event matching `pred` not returned before, waiting at most `timeout`.
    fn wait(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&ManagerEvent) -> bool,
    ) -> Option<(Instant, ManagerEvent)> {
        if let Some(i) = (0..self.seen.len()).find(|&i| !self.taken[i] && pred(&self.seen[i].1)) {
            self.taken[i] = true;
            return Some(self.seen[i].clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.rx.recv_timeout(left).ok()?;
            let hit = pred(&ev);
            self.seen.push((Instant::now(), ev));
            self.taken.push(hit);
            if hit {
                return self.seen.last().cloned();
            }
        }
    }

    /// Treat every event seen so far as returned: later waits look only at new ones.
    fn take_all(&mut self) {
        self.taken.iter_mut().for_each(|t| *t = true);
    }

    fn must(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&ManagerEvent) -> bool,
    ) -> (Instant, ManagerEvent) {
        match self.wait(timeout, pred) {
            Some(e) => e,
            None => panic!(
                "no {what} within {timeout:?}; saw {:#?}",
                self.seen.iter().map(|e| &e.1).collect::<Vec<_>>()
            ),
        }
    }

    fn count(&self, pred: impl Fn(&ManagerEvent) -> bool) -> usize {
        self.seen.iter().filter(|(_, e)| pred(e)).count()
    }
}

fn started(name: &str) -> impl Fn(&ManagerEvent) -> bool + '_ {
    move |e| matches!(e, ManagerEvent::Started { name: n, .. } if n == name)
}

fn pid_of(e: &ManagerEvent) -> u32 {
    match e {
        ManagerEvent::Started { pid, .. } => *pid,
        other => panic!("not a start: {other:?}"),
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn spec(name: &str, command: Vec<String>, dir: &TempDir) -> ManagedSpec {
    let mut s = ManagedSpec::new(name, command, dir.path());
    s.backoff_initial = Duration::from_millis(50);
    s.backoff_max = Duration::from_millis(200);
    s.jitter = 0.0;
    s.startup_grace = Duration::from_millis(200);
    s.stop_timeout = Duration::from_secs(2);
    s
}

fn status(m: &Manager, name: &str) -> DaemonStatus {
    m.status().into_iter().find(|s| s.name == name).unwrap()
}

/// `(state, pgid)` of a live process, from /proc; `None` when gone or a zombie.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let pgid = f.nth(1)?.parse().ok()?;
    (state != 'Z' && state != 'X').then_some((state, pgid))
}

/// Live members of process group `pgid`, except `pgid` itself.
fn group_members(pgid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != pgid && proc_stat(p).is_some_and(|(_, g)| g == pgid))
        .collect()
}

fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}

const T: Duration = Duration::from_secs(5);

/// A crash loop backs off 50, 100, 200, 200 ms, goes fatal on the fifth fast failure without
/// exceeding the restart budget, and the slow retry makes exactly one attempt per interval.
#[test]
fn crash_loop_backs_off_then_goes_fatal_then_retries_slowly() {
    let dir = TempDir::new("crash");
    let (m, mut ev) = Events::new();
    let mut s = spec("crash", sh("exit 1"), &dir);
    s.backoff_factor = 2.0;
    s.startup_grace = Duration::from_secs(1);
    s.max_fast_failures = 5;
    s.slow_retry = Some(Duration::from_millis(400));
    let t0 = Instant::now();
    m.start_all(vec![s]).unwrap();
    let (fatal_at, _) = ev.must(T, "Fatal", |e| matches!(e, ManagerEvent::Fatal { .. }));
    // The backoffs really elapsed: 50 + 100 + 200 + 200 ms at least, not much more.
    let total = fatal_at.duration_since(t0);
    assert!(
        total >= Duration::from_millis(550) && total < Duration::from_millis(1500),
        "{total:?}"
    );
    let delays: Vec<u128> = ev
        .seen
        .iter()
        .filter_map(|(_, e)| match e {
            ManagerEvent::Restarting { delay, .. } => Some(delay.as_millis()),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![50, 100, 200, 200]);
    assert_eq!(
        ev.count(started("crash")),
        5,
        "restarts stayed within the budget"
    );
    // Observed gap between an exit and the next start matches the announced delay (arrival
    // times at this thread, so a loaded machine blurs them by a few milliseconds).
    let exits: Vec<Instant> = ev
        .seen
        .iter()
        .filter(|(_, e)| matches!(e, ManagerEvent::Exited { .. }))
        .map(|(t, _)| *t)
        .collect();
    let starts: Vec<Instant> = ev
        .seen
        .iter()
        .filter(|(_, e)| started("crash")(e))
        .map(|(t, _)| *t)
        .collect();
    for (i, want) in delays.iter().enumerate() {
        let gap = starts[i + 1].duration_since(exits[i]).as_millis();
        assert!(
            gap + 25 >= *want && gap <= want + 250,
            "gap {i}: {gap} ms, want {want} ms"
        );
    }
    assert!(matches!(
        status(&m, "crash").state,
        DaemonState::Fatal {
            retry_at: Some(_),
            ..
        }
    ));
    // Slow retry: one start about 400 ms later, then fatal again at once (no Restarting).
    ev.take_all();
    let (retry_at, _) = ev.must(T, "slow retry", started("crash"));
    let waited = retry_at.duration_since(fatal_at).as_millis();
    assert!(
        (370..1000).contains(&waited),
        "slow retry after {waited} ms"
    );
    ev.must(T, "second Fatal", |e| {
        matches!(e, ManagerEvent::Fatal { .. })
    });
    assert_eq!(
        ev.count(|e| matches!(e, ManagerEvent::Restarting { .. })),
        4
    );
    assert_eq!(status(&m, "crash").restarts, 5);
    m.shutdown(T);
}

/// Stopping a daemon kills its grandchildren too (checked in /proc), and so does the
/// daemon's own exit: nothing of its process group survives its leader.
#[test]
fn process_tree_dies_with_the_daemon() {
    let dir = TempDir::new("tree");
    let (m, mut ev) = Events::new();
    let mut crash = spec("orphaner", sh("sleep 300 & sleep 0.3; exit 3"), &dir);
    crash.restart = RestartMode::Never;
    m.start_all(vec![spec("tree", sh("sleep 300 & sleep 300"), &dir), crash])
        .unwrap();
    let (_, e) = ev.must(T, "tree start", started("tree"));
    let pid = pid_of(&e);
    assert!(
        poll(T, || !group_members(pid).is_empty()),
        "grandchild never appeared"
    );
    let grandchildren = group_members(pid);
    m.stop("tree").unwrap();
    assert!(poll(T, || proc_stat(pid).is_none()
        && grandchildren.iter().all(|g| proc_stat(*g).is_none())));
    assert_eq!(status(&m, "tree").state, DaemonState::Stopped);

    let orphaner = pid_of(&ev.must(T, "orphaner start", started("orphaner")).1);
    assert!(poll(T, || !group_members(orphaner).is_empty()));
    let left = group_members(orphaner);
    ev.must(
        T,
        "orphaner exit",
        |e| matches!(e, ManagerEvent::Exited { name, code: Some(3), .. } if name == "orphaner"),
    );
    assert!(
        poll(T, || left.iter().all(|g| proc_stat(*g).is_none())),
        "grandchild outlived its daemon"
    );
    // The Exited event goes out before the restart policy's decision sets the state.
    let exited = DaemonState::Exited {
        code: Some(3),
        signal: None,
    };
    assert!(
        poll(T, || status(&m, "orphaner").state == exited),
        "state {:?}",
        status(&m, "orphaner").state
    );
}

/// A daemon ignoring the stop signal gets SIGKILL after stop_timeout.
#[test]
fn stop_escalates_to_sigkill() {
    let dir = TempDir::new("term");
    let (m, mut ev) = Events::new();
    let mut s = spec("stubborn", sh("trap '' TERM; sleep 300"), &dir);
    s.stop_timeout = Duration::from_millis(300);
    m.start_all(vec![s]).unwrap();
    let pid = pid_of(&ev.must(T, "start", started("stubborn")).1);
    // The sleep exists only once the trap is set, so TERM cannot race it.
    assert!(poll(T, || !group_members(pid).is_empty()));
    let t0 = Instant::now();
    m.stop("stubborn").unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    ev.must(T, "SIGKILL exit", |e| {
        matches!(
            e,
            ManagerEvent::Exited {
                signal: Some(libc::SIGKILL),
                ..
            }
        )
    });
    ev.must(T, "Stopped", |e| matches!(e, ManagerEvent::Stopped { .. }));
}

/// stdout and stderr land in their files, rotated at max_size keeping `keep` old files.
#[test]
fn logs_are_written_and_rotated() {
    let dir = TempDir::new("logs");
    let (m, mut ev) = Events::new();
    let script = "i=0; while [ $i -lt 300 ]; do echo \"out line $i ..........\"; i=$((i+1)); done; echo boom >&2";
    let mut s = spec("chatty", sh(script), &dir);
    s.restart = RestartMode::Never;
    s.logs.max_size = 2000;
    s.logs.keep = 2;
    m.start_all(vec![s]).unwrap();
    ev.must(T, "exit", |e| matches!(e, ManagerEvent::Exited { .. }));
    let out = dir.path().join("chatty.out.log");
    let err = dir.path().join("chatty.err.log");
    assert!(poll(T, || fs::read_to_string(&out)
        .is_ok_and(|t| t.contains("out line 299 "))));
    assert!(poll(T, || fs::read_to_string(&err).is_ok_and(|t| t == "boom\n")));
    assert_eq!(
        dir.names(),
        vec![
            "chatty.err.log",
            "chatty.out.log",
            "chatty.out.log.1",
            "chatty.out.log.2"
        ]
    );
    for n in ["chatty.out.log", "chatty.out.log.1", "chatty.out.log.2"] {
        assert!(
            fs::metadata(dir.path().join(n)).unwrap().len() <= 2000,
            "{n}"
        );
    }
}

/// The command is executed directly: shell syntax in its arguments reaches the program as
/// plain text, and nothing it would have done in a shell happens.
#[test]
fn commands_run_without_a_shell() {
    let dir = TempDir::new("noshell");
    let marker = dir.path().join("pwned");
    let (m, mut ev) = Events::new();
    let hostile = format!("$HOME; touch {} `id` $(id) | cat && true", marker.display());
    let mut s = spec("literal", vec!["/bin/echo".into(), hostile.clone()], &dir);
    s.restart = RestartMode::Never;
    m.start_all(vec![s]).unwrap();
    ev.must(T, "exit", |e| matches!(e, ManagerEvent::Exited { .. }));
    let out = dir.path().join("literal.out.log");
    assert!(
        poll(T, || fs::read_to_string(&out)
            .is_ok_and(|t| t == format!("{hostile}\n"))),
        "echo printed {:?}",
        fs::read_to_string(&out)
    );
    assert!(!marker.exists(), "a shell ran the argument");
}

/// A liveness check failing `failures` times restarts the daemon; an HTTP check's result and
/// latency are reported.
#[test]
fn liveness_failure_restarts() {
    let dir = TempDir::new("live");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    let (m, mut ev) = Events::new();
    let mut s = spec("sick", vec!["sleep".into(), "300".into()], &dir);
    s.restart = RestartMode::Always;
    s.startup_grace = Duration::ZERO;
    let check = |kind| CheckSpec {
        kind,
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(1),
        failures: 2,
        readiness: false,
    };
    s.checks = vec![
        check(CheckKind::Http {
            url: format!("http://{addr}/health"),
        }),
        check(CheckKind::Command {
            argv: vec!["false".into()],
        }),
    ];
    m.start_all(vec![s]).unwrap();
    let first = pid_of(&ev.must(T, "start", started("sick")).1);
    ev.must(T, "http ok", |e| {
        matches!(
            e,
            ManagerEvent::CheckResult {
                check: 0,
                ok: true,
                ..
            }
        )
    });
    ev.must(T, "TERM exit", |e| {
        matches!(
            e,
            ManagerEvent::Exited {
                signal: Some(libc::SIGTERM),
                ..
            }
        )
    });
    assert_eq!(
        ev.count(|e| matches!(
            e,
            ManagerEvent::CheckResult {
                check: 1,
                ok: false,
                ..
            }
        )),
        2
    );
    ev.must(T, "restart", |e| {
        matches!(e, ManagerEvent::Restarting { attempt: 1, .. })
    });
    let second = pid_of(&ev.must(T, "second start", started("sick")).1);
    assert_ne!(first, second);
}

/// A dependent waits for its dependency's readiness check, then starts.
#[test]
fn readiness_gates_dependent() {
    let dir = TempDir::new("ready");
    let flag = dir.path().join("ready-flag");
    let (m, mut ev) = Events::new();
    let mut db = spec("db", vec!["sleep".into(), "300".into()], &dir);
    db.startup_grace = Duration::from_secs(30);
    db.checks = vec![CheckSpec {
        kind: CheckKind::Command {
            argv: vec!["test".into(), "-e".into(), flag.display().to_string()],
        },
        interval: Duration::from_millis(30),
        timeout: Duration::from_secs(1),
        failures: 1,
        readiness: true,
    }];
    let mut app = spec("app", vec!["sleep".into(), "300".into()], &dir);
    app.depends_on = vec!["db".into()];
    m.start_all(vec![app, db]).unwrap();
    ev.must(T, "db start", started("db"));
    ev.must(T, "failing readiness", |e| {
        matches!(e, ManagerEvent::CheckResult { ok: false, .. })
    });
    assert!(
        ev.wait(Duration::from_millis(200), started("app"))
            .is_none(),
        "app started before db was ready"
    );
    assert_eq!(
        status(&m, "app").state,
        DaemonState::Waiting {
            on: vec!["db".into()]
        }
    );
    assert!(!status(&m, "db").ready);
    fs::write(&flag, b"").unwrap();
    ev.must(
        T,
        "db ready",
        |e| matches!(e, ManagerEvent::Ready { name } if name == "db"),
    );
    ev.must(T, "app start", started("app"));
    assert!(status(&m, "db").ready);
}

/// Start order follows depends_on, shutdown goes in reverse, and a cycle is refused by name.
#[test]
fn dependencies_order_start_and_shutdown() {
    let dir = TempDir::new("deps");
    let (m, mut ev) = Events::new();
    let mut specs = Vec::new();
    for (name, dep) in [("c", Some("b")), ("b", Some("a")), ("a", None)] {
        let mut s = spec(name, vec!["sleep".into(), "300".into()], &dir);
        s.depends_on = dep.into_iter().map(String::from).collect();
        specs.push(s);
    }
    m.start_all(specs).unwrap();
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(
            ev.must(T, "start", |e| matches!(e, ManagerEvent::Started { .. }))
                .1
                .name()
                .to_string(),
        );
    }
    assert_eq!(order, vec!["a", "b", "c"]);
    m.shutdown(T);
    let stopped: Vec<String> = ev
        .rx
        .try_iter()
        .filter(|e| matches!(e, ManagerEvent::Stopped { .. }))
        .map(|e| e.name().to_string())
        .collect();
    assert_eq!(stopped, vec!["c", "b", "a"]);
    assert!(m.status().is_empty());
    assert!(matches!(m.start("a"), Err(ManagerError::ShutDown)));

    let (m2, _ev2) = Events::new();
    let mut x = spec("x", vec!["true".into()], &dir);
    x.depends_on = vec!["y".into()];
    let mut y = spec("y", vec!["true".into()], &dir);
    y.depends_on = vec!["x".into()];
    let err = m2.start_all(vec![x, y]).unwrap_err();
    assert_eq!(err.to_string(), "dependency cycle: x -> y -> x");
    assert!(m2.status().is_empty(), "nothing starts from a refused set");
}

/// A reload restarts only the changed daemon, starts the added one and stops the removed one.
#[test]
fn update_touches_only_what_changed() {
    let dir = TempDir::new("update");
    let (m, mut ev) = Events::new();
    let sleeper = |n: &str| spec(n, vec!["sleep".into(), "300".into()], &dir);
    m.start_all(vec![sleeper("a"), sleeper("b")]).unwrap();
    let a = pid_of(&ev.must(T, "a", started("a")).1);
    let b = pid_of(&ev.must(T, "b", started("b")).1);
    let mut b2 = sleeper("b");
    b2.env = BTreeMap::from([("MODE".to_string(), "new".to_string())]);
    let d = m
        .update(vec![sleeper("a"), b2.clone(), sleeper("c")])
        .unwrap();
    assert_eq!(
        (d.added, d.changed, d.unchanged),
        (
            vec!["c".to_string()],
            vec!["b".to_string()],
            vec!["a".to_string()]
        )
    );
    ev.must(T, "c", started("c"));
    let b_new = pid_of(&ev.must(T, "b again", started("b")).1);
    assert_ne!(b, b_new);
    assert_eq!(status(&m, "a").pid, Some(a));
    assert_eq!(
        ev.count(|e| matches!(e, ManagerEvent::Exited { name, .. } if name == "a")),
        0
    );
    // The kernel fills /proc/<pid>/environ a moment after exec; poll rather than race it.
    let environ = || fs::read_to_string(format!("/proc/{b_new}/environ")).unwrap_or_default();
    assert!(poll(T, || environ().split('\0').any(|kv| kv == "MODE=new")));

    let d = m.update(vec![sleeper("a"), b2]).unwrap();
    assert_eq!(d.removed, vec!["c"]);
    assert_eq!(
        m.status()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(status(&m, "a").pid, Some(a));
}

/// A run longer than stable_after resets the backoff: every restart waits the initial delay.
#[test]
fn stable_run_resets_backoff() {
    let dir = TempDir::new("stable");
    let (m, mut ev) = Events::new();
    let mut s = spec("steady", sh("sleep 0.25; exit 1"), &dir);
    s.stable_after = Duration::from_millis(200);
    s.startup_grace = Duration::from_millis(100);
    m.start_all(vec![s]).unwrap();
    for _ in 0..3 {
        let (_, e) = ev.must(T, "restart", |e| {
            matches!(e, ManagerEvent::Restarting { .. })
        });
        assert!(
            matches!(e, ManagerEvent::Restarting { attempt: 1, delay, .. } if delay == Duration::from_millis(50)),
            "{e:?}"
        );
    }
}

/// Running as another user drops to that user's ids; an unknown user is refused up front.
#[test]
fn runs_as_user() {
    let dir = TempDir::new("user");
    let (m, mut ev) = Events::new();
    let mut ghost = spec("ghost", vec!["true".into()], &dir);
    ghost.user = Some("no-such-user-perfvisor".into());
    let err = m.start_all(vec![ghost]).unwrap_err().to_string();
    assert!(
        err.contains("\"no-such-user-perfvisor\" does not exist"),
        "{err}"
    );
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let Ok(nobody) = process::lookup_user("nobody") else {
        return;
    };
    if !root {
        return;
    }
    let mut s = spec("dropped", sh("id -u; id -g"), &dir);
    s.restart = RestartMode::Never;
    s.user = Some("nobody".into());
    m.start_all(vec![s]).unwrap();
    ev.must(T, "exit", |e| {
        matches!(e, ManagerEvent::Exited { code: Some(0), .. })
    });
    let out = dir.path().join("dropped.out.log");
    let want = format!("{}\n{}\n", nobody.uid, nobody.gid);
    assert!(poll(T, || fs::read_to_string(&out).is_ok_and(|t| t == want)));
}

/// The handle can be shared between threads.
#[test]
fn manager_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Manager>();
}

/// A program that cannot be spawned counts as a fast failure and ends fatal.
#[test]
fn spawn_failure_goes_fatal() {
    let dir = TempDir::new("nospawn");
    let (m, mut ev) = Events::new();
    let mut s = spec("missing", vec!["/nonexistent/perfvisor-prog".into()], &dir);
    s.max_fast_failures = 2;
    m.start_all(vec![s]).unwrap();
    ev.must(T, "Fatal", |e| matches!(e, ManagerEvent::Fatal { .. }));
    assert_eq!(
        ev.count(|e| matches!(e, ManagerEvent::SpawnFailed { .. })),
        2
    );
    assert!(matches!(
        status(&m, "missing").state,
        DaemonState::Fatal { retry_at: None, .. }
    ));
    // A manual start clears the counters and tries again.
    m.start("missing").unwrap();
    ev.must(T, "Fatal again", |e| {
        matches!(e, ManagerEvent::Fatal { .. })
    });
    assert_eq!(
        ev.count(|e| matches!(e, ManagerEvent::SpawnFailed { .. })),
        4
    );
}

/// A persistent manager takes over what a previous run left in its state directory: a
/// recorded process that still runs is adopted (same pid, its FIFO output keeps reaching
/// the log, its exit is seen and restarts it by policy); one recorded only by invocation id
/// (killed between fork and record) is found by its environment; one started from another
/// command is restarted; one that is gone is started afresh; one whose daemon is no longer
/// declared is stopped. Nothing is started twice.
#[test]
fn adopts_what_a_previous_run_left() {
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};

    use super::process::{open_fifo, proc_stat as stat, process_age};
    use super::state::{fingerprint, Record, StateStore, INVOCATION_ENV};

    let dir = TempDir::new("adopt");
    let state = dir.path().join("pv.db.managed");
    let specs: Vec<ManagedSpec> = [
        ("keep", "while :; do echo tick; sleep 0.05; done"),
        ("early", "sleep 30"),
        ("changed", "sleep 30"),
        ("gone", "sleep 30"),
    ]
    .iter()
    .map(|(n, script)| spec(n, sh(script), &dir))
    .collect();
    let leftover = spec("leftover", sh("sleep 31"), &dir);

    // The previous run: processes as a persistent manager starts them, then it dies.
    let mut children: BTreeMap<&str, Child> = BTreeMap::new();
    {
        let (mut store, _) = StateStore::open(&state).unwrap();
        for s in specs.iter().chain([&leftover]) {
            let id = format!("inv-{}", s.name);
            let mut cmd = Command::new(&s.command[0]);
            cmd.args(&s.command[1..])
                .process_group(0)
                .env(INVOCATION_ENV, &id)
                .stdin(Stdio::null())
                .stderr(Stdio::null());
            let fifo =
                (s.name == "keep").then(|| open_fifo(&store.fifo("keep", "stdout")).unwrap());
            match &fifo {
                Some((_, rw)) => cmd.stdout(Stdio::from(rw.try_clone().unwrap())),
                None => cmd.stdout(Stdio::null()),
            };
            let child = cmd.spawn().unwrap();
            let pid = child.id();
            let mut print = fingerprint(s);
            if s.name == "changed" {
                print = "0000000000000000".into();
            }
            let early = s.name == "early";
            store
                .set(
                    &s.name,
                    Some(Record {
                        pid: (!early).then_some(pid),
                        start_ticks: (!early).then(|| stat(pid).unwrap().start_ticks),
                        invocation: id,
                        fingerprint: print,
                    }),
                )
                .unwrap();
            children.insert(s.name.as_str(), child);
        }
        let gone = children.get_mut("gone").unwrap();
        gone.kill().unwrap();
        gone.wait().unwrap();
    }
    let old: BTreeMap<&str, u32> = children.iter().map(|(n, c)| (*n, c.id())).collect();
    // An adopted daemon's start time comes from its start in clock ticks (10 ms here), so it
    // can read up to a tick or two late. Adopt only once every daemon still running is far
    // older than that, or a start time taken at adoption could not be told from its own.
    assert!(
        poll(T, || old.values().all(|&pid| stat(pid).is_none_or(|s| {
            process_age(s.start_ticks).is_some_and(|age| age >= Duration::from_millis(200))
        }))),
        "the old daemons never grew 200 ms old"
    );

    let (tx, rx) = crossbeam_channel::unbounded();
    let m = Manager::with_state_dir(tx, &state).unwrap();
    let mut ev = Events {
        rx,
        seen: Vec::new(),
        taken: Vec::new(),
    };
    let t0 = SystemTime::now();
    m.start_all(specs.clone()).unwrap();
    // The undeclared daemon was stopped before start_all returned.
    let left = children.get_mut("leftover").unwrap();
    assert!(
        poll(T, || left.try_wait().unwrap().is_some()),
        "leftover still runs"
    );
    let adopted = |name: &'static str| move |e: &ManagerEvent| matches!(e, ManagerEvent::Adopted { name: n, .. } if n == name);
    for name in ["keep", "early"] {
        let (_, e) = ev.must(T, name, adopted(name));
        assert_eq!(
            e,
            ManagerEvent::Adopted {
                name: name.into(),
                pid: old[name]
            }
        );
        let st = status(&m, name);
        assert_eq!(st.pid, Some(old[name]));
        assert!(
            st.started_at.unwrap() + Duration::from_millis(100) <= t0,
            "adopted with its own start time, not the adoption's"
        );
    }
    // Another command: adopted, stopped, started anew.
    ev.must(T, "changed adopted", adopted("changed"));
    ev.must(
        T,
        "changed exit",
        |e| matches!(e, ManagerEvent::Exited { name, .. } if name == "changed"),
    );
    let changed = pid_of(&ev.must(T, "changed start", started("changed")).1);
    assert_ne!(changed, old["changed"]);
    assert!(children
        .get_mut("changed")
        .unwrap()
        .try_wait()
        .unwrap()
        .is_some());
    let gone = pid_of(&ev.must(T, "gone start", started("gone")).1);
    assert_ne!(gone, old["gone"]);
    assert_eq!(ev.count(started("keep")) + ev.count(started("early")), 0);

    // The adopted daemon's output, written before and after the takeover, reaches its log.
    let log = dir.path().join("keep.out.log");
    let ticks = || fs::read_to_string(&log).unwrap_or_default().lines().count();
    assert!(poll(T, || ticks() > 5), "no output from the adopted daemon");
    let n = ticks();
    assert!(poll(T, || ticks() > n + 3), "output stopped");

    // Its exit (not our child: no status) is seen, counts as a failure, restarts it.
    let keep = children.get_mut("keep").unwrap();
    keep.kill().unwrap();
    keep.wait().unwrap();
    ev.must(T, "keep exit", |e| {
        matches!(e, ManagerEvent::Exited { name, code: None, signal: None, .. } if name == "keep")
    });
    let again = pid_of(&ev.must(T, "keep restart", started("keep")).1);
    assert_ne!(again, old["keep"]);
    assert!(
        poll(T, || ticks() > n + 10),
        "the restarted daemon's output"
    );

    // The state file names the current processes only.
    let text = fs::read_to_string(state.join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let recorded: BTreeMap<String, u64> = v["daemons"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, r)| (k.clone(), r["pid"].as_u64().unwrap()))
        .collect();
    let expected: BTreeMap<String, u64> = ["keep", "early", "changed", "gone"]
        .iter()
        .map(|n| (n.to_string(), u64::from(status(&m, n).pid.unwrap())))
        .collect();
    assert_eq!(recorded, expected);

    m.shutdown(T);
    let early = children.get_mut("early").unwrap();
    assert!(
        poll(T, || early.try_wait().unwrap().is_some()),
        "adopted daemon outlived shutdown"
    );
    let text = fs::read_to_string(state.join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["daemons"], serde_json::json!({}), "{text}");
    for c in children.values_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Live processes whose command line carries `marker`.
fn marked(marker: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            proc_stat(p).is_some()
                && fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == marker.as_bytes()))
        })
        .collect()
}

/// A persistent manager whose state file cannot be written forks nothing: the start fails
/// with the file and the OS error in the status and the event, goes through backoff to fatal
/// like any failed start, and starts once the file can be written again.
#[test]
fn no_fork_without_a_recorded_intent() {
    let dir = TempDir::new("intent-unwritable");
    let state = dir.path().join("pv.db.managed");
    let (tx, rx) = crossbeam_channel::unbounded();
    let m = Manager::with_state_dir(tx, &state).unwrap();
    let mut ev = Events {
        rx,
        seen: Vec::new(),
        taken: Vec::new(),
    };
    // A real OS error at the write: the temporary file's name is taken by a directory.
    let blocker = state.join(".state.json.tmp");
    fs::create_dir_all(blocker.join("x")).unwrap();
    let marker = format!("pv-intent-{}", std::process::id());
    let mut s = spec(
        "w",
        vec!["sh".into(), "-c".into(), "sleep 30".into(), marker.clone()],
        &dir,
    );
    s.max_fast_failures = 3;
    m.start_all(vec![s]).unwrap();
    ev.must(T, "Fatal", |e| matches!(e, ManagerEvent::Fatal { .. }));
    let want = format!(
        "cannot record the start of w in {}: Is a directory (os error 21); not starting it, so a restart of perfvisor cannot lose track of it",
        state.join("state.json").display()
    );
    assert_eq!(
        ev.count(|e| matches!(e, ManagerEvent::SpawnFailed { error, .. } if *error == want)),
        3
    );
    assert_eq!(ev.count(started("w")), 0);
    assert!(marked(&marker).is_empty());
    let st = status(&m, "w");
    let DaemonState::Fatal { reason, .. } = &st.state else {
        panic!("{st:?}")
    };
    assert!(
        reason.ends_with(&format!("; the last start failed: {want}")),
        "{reason}"
    );
    assert_eq!(st.last_error.as_deref(), Some(want.as_str()));
    assert_eq!(st.pid, None);

    fs::remove_dir_all(&blocker).unwrap();
    m.start("w").unwrap();
    let pid = pid_of(&ev.must(T, "start", started("w")).1);
    assert_eq!(status(&m, "w").last_error, None);
    let text = fs::read_to_string(state.join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["daemons"]["w"]["pid"], u64::from(pid), "{text}");
    assert_eq!(marked(&marker), vec![pid]);
}

/// A process whose pid cannot be recorded after the fork is killed with its group at once
/// (not kept on the intent alone), the reason names the pid and the file, and the start
/// counts as a failure; the intent left on disk names no live process.
#[test]
fn a_start_whose_pid_cannot_be_recorded_is_killed() {
    let dir = TempDir::new("pid-unwritable");
    let state = dir.path().join("pv.db.managed");
    let (tx, rx) = crossbeam_channel::unbounded();
    let m = Manager::with_state_dir(tx, &state).unwrap();
    let mut ev = Events {
        rx,
        seen: Vec::new(),
        taken: Vec::new(),
    };
    let marker = format!("pv-pid-unwritable-{}", std::process::id());
    // The leader and a child in its group both carry the marker.
    let script = "sh -c 'sleep 30; :' \"$0\" & wait";
    let mut s = spec(
        "w",
        vec!["sh".into(), "-c".into(), script.into(), marker.clone()],
        &dir,
    );
    s.max_fast_failures = 1;
    // The intent is written; the pid after the fork is not.
    m.fail_state_writes_after(Some(1));
    m.start_all(vec![s]).unwrap();
    let (_, e) = ev.must(T, "SpawnFailed", |e| {
        matches!(e, ManagerEvent::SpawnFailed { .. })
    });
    let ManagerEvent::SpawnFailed { error, .. } = e else {
        unreachable!()
    };
    let file = state.join("state.json");
    assert!(
        error.starts_with("cannot record the pid ")
            && error.contains(&format!(
                " of w in {}: Input/output error (os error 5); stopped it",
                file.display()
            )),
        "{error}"
    );
    ev.must(T, "Fatal", |e| matches!(e, ManagerEvent::Fatal { .. }));
    assert_eq!(ev.count(started("w")), 0);
    assert!(
        poll(T, || marked(&marker).is_empty()),
        "{:?}",
        marked(&marker)
    );
    assert_eq!(status(&m, "w").last_error, Some(error));
    // On disk: the intent only, which names no live process.
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["daemons"]["w"]["pid"], serde_json::Value::Null);
    let record: super::state::Record = serde_json::from_value(v["daemons"]["w"].clone()).unwrap();
    assert_eq!(super::state::locate(&record), None);

    m.fail_state_writes_after(None);
    m.start("w").unwrap();
    let pid = pid_of(&ev.must(T, "start", started("w")).1);
    assert!(poll(T, || marked(&marker).contains(&pid)));
}
