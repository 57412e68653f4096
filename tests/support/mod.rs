//! Helpers shared by the integration tests: a perfvisor on a temp database, a `perfvisor run`
//! of the binary (`binary.rs`), real child processes killed by pid when dropped, polling with
//! a timeout, and an alert-recording actor.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use perfvisor::{Alert, Perfvisor, PerfvisorBuilder};

mod binary;
pub use binary::{bin, Instance, TOKEN};

/// A perfvisor with a database in its own temp dir (kept alive with it).
pub struct TestPv {
    pub pv: Perfvisor,
    pub dir: tempfile::TempDir,
}

impl TestPv {
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("perfvisor.db")
    }
}

/// Installs, once, a panic hook that prints the message and place without a backtrace.
/// The default hook with RUST_BACKTRACE=1 spends 100+ ms resolving symbols in a debug build
/// for every injected panic; that is the host's choice of hook, not perfvisor's restart cost.
pub fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            eprintln!("thread '{}' panicked: {info}", thread.name().unwrap_or("?"));
        }));
    });
}

/// The evidence spans scaled to 100 ms probes (the defaults are for 1 s probes: 90 s of
/// saturation, 2 min of trend, 30 s of start-up grace).
pub fn fast_judgement() -> perfvisor::JudgeConfig {
    perfvisor::JudgeConfig {
        cpu_sustain_ms: 3_000,
        min_trend_span_ms: 3_000,
        startup_grace_ms: 1_000,
        ..Default::default()
    }
}

/// Starts perfvisor with fast intervals (and evidence spans to match) on a fresh database;
/// `tune` adjusts the builder.
pub fn start(tune: impl FnOnce(PerfvisorBuilder) -> PerfvisorBuilder) -> TestPv {
    quiet_panics();
    let dir = tempfile::tempdir().expect("temp dir");
    let builder = Perfvisor::builder()
        .database(dir.path().join("perfvisor.db"))
        .probe_interval(Duration::from_millis(100))
        .host_interval(Duration::from_millis(500))
        .judge_config(fast_judgement());
    let pv = tune(builder).start().expect("perfvisor starts");
    TestPv { pv, dir }
}

/// A child process that is SIGKILLed and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    /// Kills by pid now and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `perfvisor run` that is asked to stop (SIGTERM, which stops its managed
/// daemons) when dropped, and SIGKILLed only if it has not exited within 15 s, so a failing
/// test leaves none of its managed daemons behind.
pub struct RunGuard(pub ChildGuard);

impl RunGuard {
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        // SAFETY: kill with a valid signal number on our own child's pid.
        unsafe { libc::kill(self.0.pid() as i32, libc::SIGTERM) };
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if self.0 .0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `perfvisor run --config CONFIG` (RUST_LOG=info) with its log appended to `log`.
pub fn start_run_logged(config: &Path, log: &Path) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("perfvisor starts");
    ChildGuard(child)
}

/// Starts the shipped load generator with these arguments.
pub fn loadgen(args: &[&str]) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_perfvisor-loadgen"))
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("start perfvisor-loadgen");
    ChildGuard(child)
}

/// Starts an idle load generator, announces it as daemon `id`, and waits for its first probe.
pub async fn watched_idle_daemon(pv: &Perfvisor, id: &str) -> ChildGuard {
    let child = loadgen(&["--cpu", "0"]);
    pv.daemon_started(perfvisor::DaemonSpec::new(id, child.pid()))
        .await
        .expect("daemon announced");
    wait_for(Duration::from_secs(5), "first probe", || async {
        let status = pv.status().await.expect("status");
        status
            .watchers
            .iter()
            .any(|w| w.daemon.as_str() == id && w.probes > 0)
    })
    .await;
    child
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes; returns the time it took.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Resident memory of a pid from /proc, in bytes (the ground truth for accuracy tests).
pub fn rss_of(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * page_size()
}

/// CPU seconds (user + system) of a pid from /proc.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// Counts the stored samples of one metric, over all its series, through the public reader.
pub fn stored_count(db: &std::path::Path, metric: &str) -> u64 {
    let reader = perfvisor::StorageReader::open(db).expect("open db");
    reader
        .series()
        .expect("series")
        .into_iter()
        .filter(|(k, _)| k.metric.as_str() == metric)
        .map(|(k, _)| {
            reader
                .query_range(&k, i64::MIN, i64::MAX)
                .expect("query")
                .len() as u64
        })
        .sum()
}

/// Alerts received, with the instant each arrived.
pub type AlertLog = Arc<Mutex<Vec<(Instant, Alert)>>>;

/// A host actor that records every alert it receives, with the instant it arrived.
pub struct RecordingAlertSink {
    pub log: AlertLog,
}

impl Actor for RecordingAlertSink {
    type Context = Context<Self>;
}

impl Handler<Alert> for RecordingAlertSink {
    type Result = ();
    fn handle(&mut self, msg: Alert, _: &mut Context<Self>) {
        self.log.lock().unwrap().push((Instant::now(), msg));
    }
}

/// Starts a `RecordingAlertSink` in an actix system of its own (as a host would have),
/// returning its recipient and log. The system thread ends with the test process.
pub fn recording_sink() -> (Recipient<Alert>, AlertLog) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sys = actix::System::new();
        sys.block_on(async move {
            let addr = RecordingAlertSink { log: l }.start();
            tx.send(addr.recipient()).unwrap();
        });
        let _ = sys.run();
    });
    (rx.recv().unwrap(), log)
}

/// A recipient whose actor and system have already stopped: every delivery to it fails.
pub fn dead_recipient() -> Recipient<Alert> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sys = actix::System::new();
        sys.block_on(async move {
            let addr = RecordingAlertSink {
                log: Arc::new(Mutex::new(Vec::new())),
            }
            .start();
            tx.send(addr.recipient()).unwrap();
            actix::System::current().stop();
        });
        let _ = sys.run();
    })
    .join()
    .unwrap();
    rx.recv().unwrap()
}

/// Whether tests that need Debian packages must fail instead of skipping when those are
/// missing (CI sets `PERFVISOR_REQUIRE_EXTERNAL=1`).
pub fn external_required() -> bool {
    std::env::var("PERFVISOR_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
}

/// Skips a test that cannot run here because `reason` (a missing package, no root): says
/// so on standard error, or fails when CI requires every test to run
/// ([`external_required`]).
pub fn skip(reason: impl std::fmt::Display) {
    assert!(!external_required(), "cannot run: {reason}");
    eprintln!("SKIPPED: {reason}");
}

/// The value, or `None` after [`skip`] with `what` and the error.
pub fn or_skip<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> Option<T> {
    result.map_err(|e| skip(format!("{what}: {e}"))).ok()
}

/// Panics with `msg` and the last 40 lines of the log at `log` (a `perfvisor run`'s
/// standard error).
pub fn fail_with_log(log: &Path, msg: String) -> ! {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(40)..];
    panic!("{msg}\n--- end of perfvisor's log ---\n{}", tail.join("\n"));
}

/// Polls `f` every 20 ms until it returns `Ok`; fails (with the end of `log`) after
/// `timeout` with `what` and the last thing `f` said, or at once when `run` exits.
pub fn poll_while_running<T>(
    run: &mut Child,
    log: &Path,
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if let Ok(Some(status)) = run.try_wait() {
            fail_with_log(
                log,
                format!("perfvisor exited ({status}) while waiting for {what}"),
            );
        }
        if started.elapsed() > timeout {
            fail_with_log(
                log,
                format!("timed out after {timeout:?} waiting for {what}: {last}"),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The HTTP API of `pv` on an ephemeral port of 127.0.0.1 with the admin `token`.
pub fn api(pv: &Perfvisor, token: &str) -> perfvisor::http::ApiServer {
    perfvisor::http::serve(
        pv.clone(),
        perfvisor::http::ApiConfig::new(
            "127.0.0.1:0".parse().expect("address"),
            Some(token.into()),
        ),
    )
    .expect("the API starts")
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A port on 127.0.0.1 that refuses connections for the whole test: port 1, below the
/// ephemeral range, so no other test's server can be handed it (a bound-and-released port
/// can be, and then a "refused" endpoint starts answering).
pub fn refused_port() -> u16 {
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 1)).is_err(),
        "something listens on 127.0.0.1:1"
    );
    1
}

/// A plain HTTP/1.1 GET to 127.0.0.1; returns (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "GET", path, None, None)
}

/// A plain HTTP/1.1 POST of a JSON body to 127.0.0.1 with a bearer token.
pub fn http_post(port: u16, path: &str, token: &str, body: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "POST", path, Some(token), Some(body))
}

/// One HTTP/1.1 request to 127.0.0.1 (`Connection: close`), with an optional bearer token
/// and JSON body; returns (status, body), a chunked body decoded.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content = body
        .map(|b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
        })
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}{content}Connection: close\r\n\r\n{}",
        body.unwrap_or("")
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(head, body)| {
            if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                dechunk(body)
            } else {
                body.to_string()
            }
        })
        .unwrap_or_default();
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on 127.0.0.1, killed by
/// pid when dropped.
pub struct Alertmanager {
    pub port: u16,
    child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one and waits until it is ready. `None` (with a notice) when the package is
    /// missing, unless [`external_required`], which makes that a failure.
    pub fn start() -> Option<Alertmanager> {
        let binary = Self::binary()?;
        let route = "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: blackhole\n";
        Some(Self::spawn(
            binary,
            route,
            &["--cluster.listen-address=".to_owned()],
            free_port(),
        ))
    }

    /// `n` Alertmanagers gossiping as one cluster on 127.0.0.1, each notifying the webhook at
    /// `receiver` (resolutions included), started together and ready once each sees all `n`
    /// members. `None` as for [`Alertmanager::start`].
    pub fn cluster(n: usize, receiver: &str) -> Option<Vec<Alertmanager>> {
        let binary = Self::binary()?;
        let route = format!(
            "route:\n  receiver: hook\n  group_by: [alertname, daemon]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    \
             webhook_configs:\n      - url: \"{receiver}\"\n        send_resolved: true\n"
        );
        let gossip: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let members: Vec<Alertmanager> = gossip
            .iter()
            .map(|&own| {
                let mut args = vec![
                    format!("--cluster.listen-address=127.0.0.1:{own}"),
                    format!("--cluster.advertise-address=127.0.0.1:{own}"),
                    "--cluster.peer-timeout=1s".to_owned(),
                    "--cluster.gossip-interval=100ms".to_owned(),
                    "--cluster.pushpull-interval=1s".to_owned(),
                    "--cluster.settle-timeout=1s".to_owned(),
                ];
                args.extend(
                    gossip
                        .iter()
                        .filter(|&&p| p != own)
                        .map(|p| format!("--cluster.peer=127.0.0.1:{p}")),
                );
                Self::spawn(binary, &route, &args, free_port())
            })
            .collect();
        let started = Instant::now();
        for am in &members {
            loop {
                let peers = http_get(am.port, "/api/v2/status")
                    .ok()
                    .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                    .and_then(|v| v["cluster"]["peers"].as_array().map(Vec::len))
                    .unwrap_or(0);
                if peers == n {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "alertmanager on 127.0.0.1:{} sees {peers} of {n} cluster members",
                    am.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(members)
    }

    fn binary() -> Option<&'static std::path::Path> {
        let binary = std::path::Path::new("/usr/bin/prometheus-alertmanager");
        if !binary.exists() {
            assert!(
                !external_required(),
                "{} is missing; install the Debian package prometheus-alertmanager",
                binary.display()
            );
            eprintln!(
                "SKIPPED: {} is missing (apt-get install prometheus-alertmanager)",
                binary.display()
            );
            return None;
        }
        Some(binary)
    }

    /// Starts one with `config` and extra arguments, and waits until it is ready.
    fn spawn(binary: &std::path::Path, config: &str, args: &[String], port: u16) -> Alertmanager {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_file = dir.path().join("alertmanager.yml");
        std::fs::write(&config_file, config).expect("config");
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager {
            port,
            child: ChildGuard(child),
            _dir: dir,
        };
        let started = Instant::now();
        while !matches!(http_get(port, "/-/ready"), Ok((200, _))) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "alertmanager not ready on 127.0.0.1:{port}: {}",
                am.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        am
    }

    /// What it wrote to its standard error.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// Kills it by pid now.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// The alerts it holds (`GET /api/v2/alerts`), as JSON.
    pub fn alerts(&self, active_only: bool) -> serde_json::Value {
        let path = if active_only {
            "/api/v2/alerts?active=true&silenced=false&inhibited=false"
        } else {
            "/api/v2/alerts"
        };
        let (status, body) = http_get(self.port, path).expect("alertmanager answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("json")
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// Serialises the tests that need whole cores (CPU accuracy, CPU-bound, contention): run
/// side by side on a 2-core machine they would starve each other and measure the contention
/// they cause instead of what they test.
pub async fn cpu_heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// One process as /proc shows it.
pub struct Proc {
    pub pid: u32,
    pub pgid: u32,
    pub state: char,
    pub cmdline: Vec<String>,
}

/// The process `pid` from /proc, if it exists.
pub fn proc_of(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let _ppid = f.next()?;
    let pgid = f.next()?.parse().ok()?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(Proc {
        pid,
        pgid,
        state,
        cmdline,
    })
}

/// Every live (not zombie) process with an argument `<prefix><name>` (a test's marker, such
/// as `crash-test-<nonce>-<daemon>`), by name.
pub fn marked(prefix: &str) -> BTreeMap<String, Vec<Proc>> {
    let mut out: BTreeMap<String, Vec<Proc>> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Some(p) = proc_of(pid) else { continue };
        if matches!(p.state, 'Z' | 'X') {
            continue;
        }
        let name = p
            .cmdline
            .iter()
            .find_map(|a| a.strip_prefix(prefix).map(str::to_string));
        if let Some(name) = name {
            out.entry(name).or_default().push(p);
        }
    }
    out
}

/// The marked process-group leaders by name: one process per running daemon. (A shell
/// forking `sleep` briefly has a copy of its command line in a child of the same group.)
pub fn leaders(prefix: &str) -> BTreeMap<String, Vec<u32>> {
    marked(prefix)
        .into_iter()
        .map(|(name, procs)| {
            let pids = procs
                .into_iter()
                .filter(|p| p.pgid == p.pid)
                .map(|p| p.pid)
                .collect();
            (name, pids)
        })
        .collect()
}

/// Ends, by pid and process group, every process carrying the marker `prefix` when dropped:
/// on success nothing is left, on failure (or a perfvisor that left orphans) this cleans up.
pub struct Sweeper {
    pub prefix: String,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        // SAFETY: getpgrp has no preconditions.
        let own_group = unsafe { libc::getpgrp() } as u32;
        for procs in marked(&self.prefix).values() {
            for p in procs {
                // SAFETY: kill with a valid signal on pids and groups read from /proc.
                unsafe {
                    if p.pgid == p.pid && p.pgid > 1 && p.pgid != own_group {
                        libc::kill(-(p.pgid as i32), libc::SIGKILL);
                    }
                    libc::kill(p.pid as i32, libc::SIGKILL);
                }
            }
        }
    }
}

/// A tmpfs of a given size (root only), unmounted (lazily) when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
    _parent: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// Mounts one of `size` (`"1m"`) on a new temp dir, or says why not.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("small-disk");
        let mut t = Tmpfs::mount_at(&dir, size)?;
        t._parent = Some(parent);
        Ok(t)
    }

    /// Mounts one of `size` on `dir` (created if missing), or says why not.
    pub fn mount_at(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
            _parent: None,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
