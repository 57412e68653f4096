//! Alert-quality harness: owns the end-to-end measurement of what a person receives from
//! the real `perfvisor` binary watching real processes: how many alerts a quiet machine
//! produces (false alarms) and whether, how fast and how accurately real faults are alerted.
//!
//! ```text
//! cargo build --release --bin perfvisor --bin perfvisor-loadgen
//! cargo bench --bench alert_quality -- [--minutes 30] [--set quiet|fault|both]
//! ```
//!
//! Two `perfvisor run` instances (one per set, run at the same time, each with its own
//! database, port and webhook receiver) watch, at a 1 s probe interval with the default
//! rules:
//! - **quiet**: an idle process; a bursty worker (a full core 6 s in every 30 s, 20 % mean);
//!   a cache warming up (256 MiB over 2 min, then flat); a GC sawtooth (0 → 128 MiB every
//!   60 s); an HTTP server with an HTTP health check (managed); a start script that `exec`s
//!   the real program (managed); operator actions through the CLI (`stop`, `start`,
//!   `restart`, a config edit + `reload`); and host activity (a `gcc` compile loop, then a
//!   `tar czf` of /usr/share/doc).
//! - **fault**: leaks of 30 and 1 MiB/min; a descriptor leak towards a limit of 1024 that it
//!   would reach about 25 min after it starts; a crash loop (managed, `restart = "always"`,
//!   exits with status 1 every 3 s); a full core for 5 min; an app latency stepping 12 → 36 ms.
//!
//! The schedule scales with `--minutes` (each event at a fixed fraction of the run) but the
//! rates are real, so a short run cannot see the slow faults: they are reported as "not
//! reached in run", not as failures. Every alert is counted as received by the webhook sink,
//! timestamped on receipt. The table goes to stdout, the same figures as JSON to
//! `target/alert-quality.json`, and each run's configs and perfvisor logs stay in
//! `target/alert-quality-run/` for a post-mortem.
//!
//! It builds nothing: it runs `$PERFVISOR_BIN` (default: the `perfvisor` binary cargo built
//! for this bench, i.e. `target/release/perfvisor`) and `$PERFVISOR_LOADGEN_BIN` (default:
//! `target/release/perfvisor-loadgen`).
//!
//! Every process it starts is a `Proc`: in a process group of its own, with
//! `PR_SET_PDEATHSIG` = SIGKILL (so it dies with the harness even when the harness is killed
//! outright; PDEATHSIG fires when the forking *thread* exits, so everything is started from
//! the main thread), and killed by pid (its group, then itself) and reaped when dropped.
//! perfvisor instances are first asked to stop with SIGTERM, which stops their managed
//! daemons; as perfvisor deliberately leaves its daemons running when it is killed, any
//! process whose command line still names this run's directory is then killed by pid.
//! Ctrl-C and SIGTERM end the run early and still clean up and print what was measured.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MIB: f64 = 1024.0 * 1024.0;
/// The API token of both instances (mutating CLI calls and pushed metrics need one).
const TOKEN: &str = "alert-quality";
/// The descriptor leak's soft limit, and its rate: it reaches the limit ~25 min after it
/// starts, so "alerted at least 10 min before the limit" is measurable in a 30 min run.
const FD_LIMIT: f64 = 1024.0;
const FD_RATE: f64 = 1000.0 / (25.0 * 60.0);
/// The full-core fault's length.
const CPU_FAULT_SECS: f64 = 300.0;
const LATENCY_MS: f64 = 12.0;
const LATENCY_STEP: f64 = 3.0;

/// Set by SIGINT/SIGTERM: the main loop ends the run early (and still cleans up).
static STOP: AtomicBool = AtomicBool::new(false);
/// Numbers the CLI calls' output files.
static CLI_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

struct Opts {
    minutes: f64,
    quiet: bool,
    fault: bool,
}

const USAGE: &str = "cargo bench --bench alert_quality -- [--minutes 30] [--set quiet|fault|both]";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        minutes: 30.0,
        quiet: true,
        fault: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{key} needs a value"))
        };
        match key {
            // cargo passes `--bench` to every bench binary.
            "--bench" => {}
            "--minutes" => {
                let v = value()?;
                opts.minutes = v
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m >= 0.5)
                    .ok_or_else(|| format!("--minutes {v}: expected minutes ≥ 0.5"))?;
            }
            "--set" => {
                let v = value()?;
                (opts.quiet, opts.fault) = match v.as_str() {
                    "quiet" => (true, false),
                    "fault" => (false, true),
                    "both" => (true, true),
                    _ => return Err(format!("--set {v}: expected quiet, fault or both")),
                };
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// A process the harness started: its own process group, killed with it when dropped.
struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn spawn(cmd: &mut Command, what: &str) -> Result<Proc, String> {
        cmd.process_group(0);
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
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Not yet reaped (so the pid is still ours to signal).
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig`, waits up to `grace` for the exit, then kills the group.
    fn stop(&mut self, sig: libc::c_int, grace: Duration) {
        if self.running() {
            // SAFETY: plain syscall on a pid we have not reaped yet, so it is still ours.
            unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        }
        let deadline = Instant::now() + grace;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.running() {
            eprintln!(
                "  {} ({}) ignored signal {sig}; killed",
                self.what,
                self.pid()
            );
        }
        self.kill();
    }

    fn kill(&mut self) {
        let pid = self.pid() as libc::pid_t;
        // The group first (what a shell loop started), while the leader is unreaped so that
        // the group id cannot have been reused.
        if self.running() {
            // SAFETY: plain syscalls on our own, unreaped child and its group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills, by pid, what this run's managed daemons left behind (perfvisor leaves them running
/// on purpose when it is killed): the processes whose command line names `marker` (this run's
/// directory) and that are one of ours, the load generator or one of our start scripts
/// under a shell, so that a `tail -f` of a log in that directory is left alone.
fn kill_stragglers(marker: &str, loadgen: &Path) -> usize {
    let me = std::process::id();
    let loadgen = loadgen.display().to_string();
    let mut killed = 0;
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let ours = argv.first().is_some_and(|a| *a == loadgen)
            || argv
                .get(1)
                .is_some_and(|a| a.starts_with(marker) && a.ends_with(".sh"));
        if ours && argv.iter().any(|a| a.contains(marker)) {
            // SAFETY: plain syscall; the pid was just read and names this run's directory.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            killed += 1;
        }
    }
    killed
}

fn fd_count(pid: u32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

fn rss_bytes(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A plain HTTP/1.0 GET: the server closes the connection after the body, no chunking.
fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("no end of headers in the answer")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status code in the answer")?;
    Ok((code, body.to_string()))
}

/// A TOML basic string (JSON's escapes are valid TOML).
fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn binary(var: &str, built: &str, build_hint: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(built));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with `{build_hint}` or point ${var} at one",
            path.display()
        ))
    }
}

// ---------------------------------------------------------------------------------------
// The webhook receiver
// ---------------------------------------------------------------------------------------

/// One alert notification as the webhook received it.
#[derive(Clone, Debug, serde::Serialize)]
struct Received {
    /// Seconds from the start of the run to receipt.
    at_s: f64,
    rule: String,
    state: String,
    severity: String,
    daemon: Option<String>,
    value: f64,
    message: String,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// Listens on 127.0.0.1 (port 0) and records every alert POSTed to it; answers 200.
fn start_receiver(t0: Instant) -> Result<(u16, Inbox), String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("webhook receiver: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("webhook receiver: {e}"))?
        .port();
    let inbox: Inbox = Arc::default();
    let shared = inbox.clone();
    std::thread::Builder::new()
        .name("webhook".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let inbox = shared.clone();
                // A thread per connection: the sink keeps connections alive between posts.
                let _ = std::thread::Builder::new()
                    .name("webhook-conn".into())
                    .spawn(move || serve_webhook(stream, t0, &inbox));
            }
        })
        .map_err(|e| format!("webhook receiver thread: {e}"))?;
    Ok((port, inbox))
}

/// Serves one keep-alive connection: `Content-Length` bodies, each a webhook document.
fn serve_webhook(stream: TcpStream, t0: Instant, inbox: &Inbox) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if let Some((k, v)) = trimmed.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length.min(16 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let at_s = t0.elapsed().as_secs_f64();
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body) else {
            eprintln!("  webhook: a body that is not JSON ({} bytes)", body.len());
            continue;
        };
        let alerts = doc["alerts"].as_array().cloned().unwrap_or_default();
        let mut inbox = inbox.lock().unwrap_or_else(|p| p.into_inner());
        for a in alerts {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            inbox.push(Received {
                at_s,
                rule: text("rule"),
                state: text("state"),
                severity: text("severity"),
                daemon: a["daemon"].as_str().map(str::to_string),
                value: a["value"].as_f64().unwrap_or(f64::NAN),
                message: text("message"),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sets
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Set {
    Quiet,
    Fault,
}

impl Set {
    fn name(self) -> &'static str {
        match self {
            Set::Quiet => "quiet",
            Set::Fault => "fault",
        }
    }
}

/// A fault of the fault set: which daemon, when it starts, and what the acceptance asks.
#[derive(Clone, Debug)]
struct Fault {
    name: &'static str,
    daemon: &'static str,
    start_s: f64,
    /// Alerted within this many seconds of the start (for descriptors: see `fd`).
    within_s: f64,
    /// The leak's true rate, MiB/min.
    leak_mib_per_min: Option<f64>,
    /// The descriptor leak: the process's descriptors when it started leaking.
    fd_base: Option<f64>,
    pid: Option<u32>,
    /// The latest memory slope perfvisor reported, MiB/min, and the harness's own.
    reported_mib_per_min: Option<f64>,
    rss_samples: Vec<(f64, f64)>,
}

impl Fault {
    fn new(name: &'static str, daemon: &'static str, start_s: f64, within_s: f64) -> Fault {
        Fault {
            name,
            daemon,
            start_s,
            within_s,
            leak_mib_per_min: None,
            fd_base: None,
            pid: None,
            reported_mib_per_min: None,
            rss_samples: Vec::new(),
        }
    }

    /// When the descriptor leak would reach its limit.
    fn fd_limit_at_s(&self) -> Option<f64> {
        self.fd_base
            .map(|base| self.start_s + (FD_LIMIT - base) / FD_RATE)
    }

    /// The last moment an alert still passes.
    fn deadline_s(&self) -> f64 {
        match self.name {
            "descriptors" => self.fd_limit_at_s().unwrap_or(self.start_s + 25.0 * 60.0) - 600.0,
            _ => self.start_s + self.within_s,
        }
    }
}

/// What happens at a moment of the run.
enum Action {
    /// A perfvisor CLI command against the set's instance.
    Cli(Set, Vec<String>),
    /// Append a managed daemon to the set's config, then `perfvisor reload`.
    EditAndReload(Set),
    /// Start the compile loop / the archive (host activity).
    StartHostActivity(&'static str),
    StopHostActivity(&'static str),
}

struct Instance {
    set: Set,
    port: u16,
    dir: PathBuf,
    config: PathBuf,
    inbox: Inbox,
    /// Attached targets: started before perfvisor (their pids go into the config).
    targets: Vec<Proc>,
    perfvisor: Option<Proc>,
    faults: Vec<Fault>,
    exited: Option<String>,
}

struct Env {
    perfvisor: PathBuf,
    loadgen: PathBuf,
    run_dir: PathBuf,
    t0: Instant,
    t0_unix: u64,
    run_s: f64,
}

impl Env {
    fn loadgen_cmd(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.loadgen);
        // `--write-dir` only matters with `--write-mib-per-sec`; here it puts this run's
        // directory in every command line, which is how stragglers are found.
        cmd.args(args)
            .arg("--write-dir")
            .arg(&self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn loadgen_argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.loadgen.display().to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        v.push("--write-dir".into());
        v.push(self.run_dir.display().to_string());
        v
    }

    fn at(&self, fraction: f64) -> f64 {
        self.run_s * fraction
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn write_script(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn managed(name: &str, argv: &[String], restart: &str, extra: &str) -> String {
    let argv: Vec<String> = argv.iter().map(|a| q(a)).collect();
    format!(
        "\n[[daemon]]\nname = {}\ncommand = [{}]\nrestart = {}\n{extra}",
        q(name),
        argv.join(", "),
        q(restart)
    )
}

fn attached(name: &str, pid: u32) -> String {
    format!("\n[[attach]]\nname = {}\npid = {pid}\n", q(name))
}

/// Starts the set's targets, writes its config, checks it, and starts perfvisor.
fn start_instance(
    env: &Env,
    set: Set,
    actions: &mut Vec<(f64, Action)>,
) -> Result<Instance, String> {
    let dir = env.run_dir.join(set.name());
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = free_port()?;
    let (hook_port, inbox) = start_receiver(env.t0)?;
    let mut config = format!(
        "[supervisor]\ndatabase = {}\nprobe_interval = \"1s\"\nhost_interval = \"1s\"\n\
         listen = \"127.0.0.1:{port}\"\ntoken = {}\ndefault_rules = true\n\n\
         [[sink]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/alerts\"\n",
        q(&dir.join("perfvisor.db").display().to_string()),
        q(TOKEN)
    );
    let mut targets = Vec::new();
    let mut faults = Vec::new();
    let mut target = |name: &str, args: Vec<String>, config: &mut String| -> Result<u32, String> {
        let p = Proc::spawn(&mut env.loadgen_cmd(&args), name)?;
        let pid = p.pid();
        config.push_str(&attached(name, pid));
        targets.push(p);
        Ok(pid)
    };
    match set {
        Set::Quiet => {
            target("idle", vec![], &mut config)?;
            target(
                "bursty",
                strs(&["--burst-cpu-secs", "6", "--burst-every", "30"]),
                &mut config,
            )?;
            target(
                "warmup",
                strs(&["--warmup-mib", "256", "--warmup-secs", "120"]),
                &mut config,
            )?;
            target(
                "sawtooth",
                strs(&["--sawtooth-mib", "128", "--sawtooth-period", "60"]),
                &mut config,
            )?;
            let web_port = free_port()?;
            config.push_str(&managed(
                "web",
                &env.loadgen_argv(&["--http", &format!("127.0.0.1:{web_port}")]),
                "on-failure",
                &format!(
                    "[[daemon.check]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{web_port}/health\"\n\
                     interval = \"5s\"\ntimeout = \"2s\"\n"
                ),
            ));
            // It spends a second preparing before the `exec`, as real ones do (environment
            // files, directories, waiting for a lock): long enough for perfvisor to probe the
            // shell first, so the exec's change of executable is always exercised, not by race.
            let script = dir.join("start-scripted.sh");
            write_script(
                &script,
                &format!(
                    "#!/bin/sh\n# A start script: prepares, then hands its pid to the program.\n\
                     cd {}\nmkdir -p state\nsleep 1\nexec {} --cpu 0.02 --hold-mib 16 --write-dir {}\n",
                    shell_quote(&dir.display().to_string()),
                    shell_quote(&env.loadgen.display().to_string()),
                    shell_quote(&env.run_dir.display().to_string()),
                ),
            )?;
            config.push_str(&managed(
                "scripted",
                &[script.display().to_string()],
                "on-failure",
                "",
            ));
            let cli = |args: &[&str]| Action::Cli(Set::Quiet, strs(args));
            actions.push((env.at(0.25), cli(&["stop", "web"])));
            actions.push((env.at(0.30), cli(&["start", "web"])));
            actions.push((env.at(0.45), cli(&["restart", "scripted"])));
            actions.push((env.at(0.60), Action::EditAndReload(Set::Quiet)));
            actions.push((env.at(0.40), Action::StartHostActivity("compile")));
            actions.push((env.at(0.55), Action::StopHostActivity("compile")));
            actions.push((env.at(0.70), Action::StartHostActivity("archive")));
        }
        Set::Fault => {
            let leak_at = env.at(1.0 / 15.0);
            for (name, rate, within) in [("leak30", 30.0, 180.0), ("leak1", 1.0, 1200.0)] {
                let pid = target(
                    name,
                    strs(&[
                        "--leak-mib-per-min",
                        &rate.to_string(),
                        "--start-after",
                        &format!("{leak_at:.1}"),
                    ]),
                    &mut config,
                )?;
                let mut f = Fault::new(
                    if rate > 2.0 {
                        "leak 30 MiB/min"
                    } else {
                        "leak 1 MiB/min"
                    },
                    name,
                    leak_at,
                    within,
                );
                f.leak_mib_per_min = Some(rate);
                f.pid = Some(pid);
                faults.push(f);
            }
            let pid = target(
                "fdleak",
                strs(&[
                    "--fd-limit",
                    &FD_LIMIT.to_string(),
                    "--fd-leak-per-sec",
                    &format!("{FD_RATE:.6}"),
                    "--start-after",
                    &format!("{leak_at:.1}"),
                ]),
                &mut config,
            )?;
            let mut f = Fault::new("descriptors", "fdleak", leak_at, f64::NAN);
            f.pid = Some(pid);
            faults.push(f);
            let cpu_at = env.at(0.33);
            let pid = target(
                "spinner",
                strs(&[
                    "--cpu",
                    "1",
                    "--start-after",
                    &format!("{cpu_at:.1}"),
                    "--stop-after",
                    &CPU_FAULT_SECS.to_string(),
                ]),
                &mut config,
            )?;
            let mut f = Fault::new("full core 5 min", "spinner", cpu_at, 120.0);
            f.pid = Some(pid);
            faults.push(f);
            let latency_at = env.at(0.45);
            let pid = target(
                "api",
                strs(&[
                    "--report-latency",
                    &format!("127.0.0.1:{port}"),
                    "--as",
                    "api",
                    "--token",
                    TOKEN,
                    "--latency-ms",
                    &LATENCY_MS.to_string(),
                    "--regress-after",
                    &format!("{latency_at:.1}"),
                    "--regress-latency-ms",
                    &(LATENCY_MS * LATENCY_STEP).to_string(),
                ]),
                &mut config,
            )?;
            let mut f = Fault::new("latency ×3", "api", latency_at, 120.0);
            f.pid = Some(pid);
            faults.push(f);
            // The crash loop: runs normally until its start, then exits with status 1 after
            // 3 s at every start; perfvisor restarts it (`always`).
            let crash_at = env.at(0.2);
            let script = dir.join("start-crashy.sh");
            let lg = shell_quote(&env.loadgen.display().to_string());
            let wd = shell_quote(&env.run_dir.display().to_string());
            write_script(
                &script,
                &format!(
                    "#!/bin/sh\nleft=$(( {} - $(date +%s) ))\n\
                     if [ \"$left\" -gt 0 ]; then exec {lg} --exit-after \"$left\" --exit-code 1 --write-dir {wd}; fi\n\
                     exec {lg} --exit-after 3 --exit-code 1 --write-dir {wd}\n",
                    env.t0_unix + crash_at.round() as u64
                ),
            )?;
            config.push_str(&managed(
                "crashy",
                &[script.display().to_string()],
                "always",
                "",
            ));
            faults.push(Fault::new("crash loop", "crashy", crash_at, 60.0));
        }
    }
    let config_path = dir.join("perfvisor.toml");
    fs::write(&config_path, &config).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let check = Command::new(&env.perfvisor)
        .arg("check-config")
        .arg(&config_path)
        .output()
        .map_err(|e| format!("perfvisor check-config: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "{} does not pass check-config:\n{}{}",
            config_path.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    let log = fs::File::create(dir.join("perfvisor.log"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = Command::new(&env.perfvisor);
    cmd.arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let perfvisor = Proc::spawn(&mut cmd, &format!("perfvisor ({})", set.name()))?;
    let instance = Instance {
        set,
        port,
        dir,
        config: config_path,
        inbox,
        targets,
        perfvisor: Some(perfvisor),
        faults,
        exited: None,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/api/v1/status", Duration::from_secs(2)).map(|r| r.0) != Ok(200) {
        if Instant::now() > deadline {
            return Err(format!(
                "perfvisor ({}) did not answer on 127.0.0.1:{port} within 60 s; see {}",
                set.name(),
                instance.dir.join("perfvisor.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(instance)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs a perfvisor CLI command against an instance; returns its status and output.
fn run_cli(env: &Env, instance: &Instance, args: &[String]) -> String {
    let out = instance.dir.join(format!(
        "cli-{}.out",
        CLI_CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    let Ok(file) = fs::File::create(&out) else {
        return format!("cannot create {}", out.display());
    };
    let Ok(err) = file.try_clone() else {
        return "cannot duplicate a descriptor".into();
    };
    let mut cmd = Command::new(&env.perfvisor);
    cmd.arg("--address")
        .arg(format!("127.0.0.1:{}", instance.port))
        .arg("--token")
        .arg(TOKEN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err);
    let status = match Proc::spawn(&mut cmd, "perfvisor CLI") {
        Ok(mut p) => {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match p.child.try_wait() {
                    Ok(Some(s)) => break s.to_string(),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => break "timed out after 60 s".into(),
                }
            }
        }
        Err(e) => e,
    };
    let text = fs::read_to_string(&out).unwrap_or_default();
    format!("{status}: {}", text.trim().replace('\n', " | "))
}

/// Host activity: a compile loop or an archive of /usr/share/doc, in the run directory.
fn host_activity(env: &Env, what: &str) -> Result<Proc, String> {
    let dir = env.run_dir.join("host");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = match what {
        "compile" => {
            // Enough generated code to keep gcc busy for a few seconds per pass.
            let mut c = String::new();
            for i in 0..400 {
                c.push_str(&format!(
                    "double f{i}(double x) {{ double s = 0; for (int k = 0; k < 100; k++) \
                     s += x * k / ({i} + k + 1.0); return s; }}\n"
                ));
            }
            let src = dir.join("big.c");
            fs::write(&src, c).map_err(|e| format!("{}: {e}", src.display()))?;
            format!(
                "while :; do gcc -O2 -c {} -o {}; done",
                shell_quote(&src.display().to_string()),
                shell_quote(&dir.join("big.o").display().to_string())
            )
        }
        _ => format!(
            "tar czf {} /usr/share/doc 2>/dev/null; rm -f {}",
            shell_quote(&dir.join("doc.tgz").display().to_string()),
            shell_quote(&dir.join("doc.tgz").display().to_string())
        ),
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proc::spawn(&mut cmd, what)
}

/// Reads perfvisor's memory slope for a leaking daemon (MiB/min) from its report.
fn reported_slope(port: u16, daemon: &str) -> Option<f64> {
    let (code, body) = http_get(
        port,
        &format!("/api/v1/daemons/{daemon}/report"),
        Duration::from_secs(5),
    )
    .ok()?;
    if code != 200 {
        return None;
    }
    let report: serde_json::Value = serde_json::from_str(&body).ok()?;
    let series = report["series"].as_array()?;
    let memory = series
        .iter()
        .find(|s| s["metric"] == "process.memory.usage_bytes")?;
    memory["trend"]["fit"]["slope_per_s"]
        .as_f64()
        .map(|b| b * 60.0 / MIB)
}

/// Least-squares slope of (seconds, bytes) samples, in MiB/min.
fn slope_mib_per_min(samples: &[(f64, f64)]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 - my)).sum();
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 60.0 / MIB)
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("alert_quality: {e}");
            }
            eprintln!("usage: {USAGE}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alert_quality: {e}");
            ExitCode::FAILURE
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn run(opts: &Opts) -> Result<(), String> {
    let build = "cargo build --release --bin perfvisor --bin perfvisor-loadgen";
    let perfvisor = binary("PERFVISOR_BIN", env!("CARGO_BIN_EXE_perfvisor"), build)?;
    let loadgen = binary(
        "PERFVISOR_LOADGEN_BIN",
        env!("CARGO_BIN_EXE_perfvisor-loadgen"),
        build,
    )?;
    let run_dir = target_dir().join("alert-quality-run");
    if run_dir.exists() {
        fs::remove_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    }
    fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let run_dir = run_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let env = Env {
        perfvisor,
        loadgen,
        run_dir,
        t0: Instant::now(),
        t0_unix: unix_secs(),
        run_s: opts.minutes * 60.0,
    };
    println!(
        "alert quality: {} min, set {}; perfvisor {}; working files in {}",
        opts.minutes,
        match (opts.quiet, opts.fault) {
            (true, true) => "both",
            (true, false) => "quiet",
            _ => "fault",
        },
        env.perfvisor.display(),
        env.run_dir.display()
    );
    let marker = env.run_dir.display().to_string();
    let mut instances = Vec::new();
    let mut actions: Vec<(f64, Action)> = Vec::new();
    let result = (|| {
        for (on, set) in [(opts.quiet, Set::Quiet), (opts.fault, Set::Fault)] {
            if on {
                instances.push(start_instance(&env, set, &mut actions)?);
            }
        }
        drive(&env, &mut instances, actions)
    })();
    let mut log = match result {
        Ok(log) => log,
        Err(e) => {
            shut_down(&mut instances, &marker, &env.loadgen);
            return Err(e);
        }
    };
    let ended_s = env.t0.elapsed().as_secs_f64();
    log.extend(shut_down(&mut instances, &marker, &env.loadgen));
    report(&env, &instances, &log, ended_s)
}

/// Stops every instance (SIGTERM: it stops its daemons), the targets, and any straggler.
fn shut_down(instances: &mut [Instance], marker: &str, loadgen: &Path) -> Vec<String> {
    let mut log = Vec::new();
    for i in instances.iter_mut() {
        if let Some(mut p) = i.perfvisor.take() {
            p.stop(libc::SIGTERM, Duration::from_secs(30));
        }
        i.targets.clear();
    }
    let killed = kill_stragglers(marker, loadgen);
    if killed > 0 {
        log.push(format!("killed {killed} leftover process(es) of this run"));
    }
    log
}

/// Runs the schedule until the end (or Ctrl-C); returns the log of operator actions.
fn drive(
    env: &Env,
    instances: &mut [Instance],
    mut actions: Vec<(f64, Action)>,
) -> Result<Vec<String>, String> {
    actions.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut actions = std::collections::VecDeque::from(actions);
    let mut log = Vec::new();
    let mut host: BTreeMap<&'static str, Proc> = BTreeMap::new();
    let mut next_poll = 0.0;
    let mut next_progress = 60.0;
    let has_quiet = instances.iter().any(|i| i.set == Set::Quiet);
    loop {
        let now = env.t0.elapsed().as_secs_f64();
        if now >= env.run_s {
            break;
        }
        if STOP.load(Ordering::SeqCst) {
            log.push(format!("interrupted at {now:.0} s"));
            println!("interrupted: cleaning up and reporting what was measured");
            break;
        }
        while actions.front().is_some_and(|a| a.0 <= now) {
            let Some((at, action)) = actions.pop_front() else {
                break;
            };
            let line = match action {
                Action::Cli(set, args) => match instances.iter().find(|i| i.set == set) {
                    Some(i) => format!(
                        "{} perfvisor {}: {}",
                        set.name(),
                        args.join(" "),
                        run_cli(env, i, &args)
                    ),
                    None => continue,
                },
                Action::EditAndReload(set) => match instances.iter().find(|i| i.set == set) {
                    Some(i) => {
                        let added = managed(
                            "added",
                            &env.loadgen_argv(&["--hold-mib", "8"]),
                            "on-failure",
                            "",
                        );
                        let edit = fs::OpenOptions::new()
                            .append(true)
                            .open(&i.config)
                            .and_then(|mut f| f.write_all(added.as_bytes()));
                        match edit {
                            Ok(()) => format!(
                                "{} config edit (+ daemon \"added\") and perfvisor reload: {}",
                                set.name(),
                                run_cli(env, i, &strs(&["reload"]))
                            ),
                            Err(e) => format!("config edit failed: {e}"),
                        }
                    }
                    None => continue,
                },
                Action::StartHostActivity(what) if has_quiet => match host_activity(env, what) {
                    Ok(p) => {
                        host.insert(what, p);
                        format!("host activity {what} started")
                    }
                    Err(e) => format!("host activity {what} not started: {e}"),
                },
                Action::StopHostActivity(what) => match host.remove(what) {
                    Some(mut p) => {
                        p.kill();
                        format!("host activity {what} stopped")
                    }
                    None => continue,
                },
                Action::StartHostActivity(_) => continue,
            };
            println!("  [{}] {line}", clock(at));
            log.push(format!("[{}] {line}", clock(at)));
        }
        for i in instances.iter_mut() {
            if i.exited.is_none() {
                if let Some(p) = i.perfvisor.as_mut() {
                    if let Ok(Some(status)) = p.child.try_wait() {
                        let line = format!(
                            "perfvisor ({}) exited at {} with {status}; see {}",
                            i.set.name(),
                            clock(now),
                            i.dir.join("perfvisor.log").display()
                        );
                        println!("  {line}");
                        log.push(line.clone());
                        i.exited = Some(line);
                    }
                }
            }
            for f in i.faults.iter_mut() {
                if now >= f.start_s {
                    if let Some(pid) = f.pid {
                        if f.name == "descriptors" && f.fd_base.is_none() {
                            f.fd_base = fd_count(pid).map(|n| n as f64);
                        }
                    }
                }
            }
        }
        if now >= next_poll {
            next_poll = now + 10.0;
            for i in instances.iter_mut() {
                let port = i.port;
                for f in i.faults.iter_mut().filter(|f| f.leak_mib_per_min.is_some()) {
                    if now >= f.start_s {
                        if let Some(rss) = f.pid.and_then(rss_bytes) {
                            f.rss_samples.push((now, rss));
                        }
                        if let Some(slope) = reported_slope(port, f.daemon) {
                            f.reported_mib_per_min = Some(slope);
                        }
                    }
                }
            }
        }
        if now >= next_progress {
            next_progress += 60.0;
            let counts: Vec<String> = instances
                .iter()
                .map(|i| {
                    let n = i
                        .inbox
                        .lock()
                        .map(|v| v.iter().filter(|a| a.state == "firing").count())
                        .unwrap_or(0);
                    format!("{}: {n} firing", i.set.name())
                })
                .collect();
            println!("  [{}] {}", clock(now), counts.join(", "));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for (what, mut p) in host {
        p.kill();
        log.push(format!("host activity {what} stopped at the end"));
    }
    Ok(log)
}

fn clock(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

#[derive(serde::Serialize)]
struct FaultResult {
    fault: String,
    daemon: String,
    start_s: f64,
    alerted: bool,
    rule: Option<String>,
    message: Option<String>,
    seconds_to_alert: Option<f64>,
    acceptance: String,
    /// "PASS", "FAIL" or "not reached in run".
    verdict: String,
    true_leak_mib_per_min: Option<f64>,
    reported_leak_mib_per_min: Option<f64>,
    harness_measured_leak_mib_per_min: Option<f64>,
    leak_rate_error_pct: Option<f64>,
    leak_rate_verdict: Option<String>,
    minutes_before_fd_limit: Option<f64>,
    alerts_before_start: usize,
}

fn report(env: &Env, instances: &[Instance], log: &[String], ended_s: f64) -> Result<(), String> {
    let hours = ended_s / 3600.0;
    let mut json = serde_json::Map::new();
    json.insert("minutes".into(), (ended_s / 60.0).into());
    json.insert("actions".into(), serde_json::json!(log));
    println!();
    println!("== alert quality: {:.1} min run ==", ended_s / 60.0);
    for i in instances {
        let inbox = i.inbox.lock().map(|v| v.clone()).unwrap_or_default();
        let firing: Vec<&Received> = inbox.iter().filter(|a| a.state == "firing").collect();
        let resolved = inbox.len() - firing.len();
        if let Some(exited) = &i.exited {
            println!();
            println!(
                "WARNING: {exited}; the {} set's figures stop there",
                i.set.name()
            );
        }
        match i.set {
            Set::Quiet => {
                let per_hour = firing.len() as f64 / hours;
                println!();
                println!(
                    "quiet set: {} alerts received ({} firing, {resolved} resolved)",
                    inbox.len(),
                    firing.len()
                );
                println!(
                    "  {:>6}  {:<40} {:<10} {:<9} message",
                    "at", "rule", "daemon", "severity"
                );
                for a in &firing {
                    println!(
                        "  {:>6}  {:<40} {:<10} {:<9} {}",
                        clock(a.at_s),
                        a.rule,
                        a.daemon.as_deref().unwrap_or("-"),
                        a.severity,
                        a.message
                    );
                }
                let verdict = if per_hour <= 1.0 { "PASS" } else { "FAIL" };
                println!(
                    "  alerts per hour: {per_hour:.1} (acceptance ≤ 1, goal 0): {verdict}{}",
                    if firing.is_empty() { " (goal met)" } else { "" }
                );
                json.insert(
                    "quiet".into(),
                    serde_json::json!({
                        "alerts": firing,
                        "resolved": resolved,
                        "alerts_per_hour": per_hour,
                        "verdict": verdict,
                        "perfvisor_exited": i.exited,
                    }),
                );
            }
            Set::Fault => {
                let mut results = Vec::new();
                for f in &i.faults {
                    results.push(judge(f, &firing, ended_s));
                }
                let known: Vec<&str> = i.faults.iter().map(|f| f.daemon).collect();
                let others: Vec<&&Received> = firing
                    .iter()
                    .filter(|a| !a.daemon.as_deref().is_some_and(|d| known.contains(&d)))
                    .collect();
                println!();
                println!(
                    "fault set: {} alerts received ({} firing, {resolved} resolved)",
                    inbox.len(),
                    firing.len()
                );
                println!(
                    "  {:<16} {:>6} {:<8} {:<38} {:>8}  {:<22} verdict",
                    "fault", "start", "alerted", "first rule", "after s", "acceptance"
                );
                for r in &results {
                    println!(
                        "  {:<16} {:>6} {:<8} {:<38} {:>8}  {:<22} {}",
                        r.fault,
                        clock(r.start_s),
                        if r.alerted { "yes" } else { "no" },
                        r.rule.as_deref().unwrap_or("-"),
                        r.seconds_to_alert
                            .map(|s| format!("{s:.0}"))
                            .unwrap_or_else(|| "-".into()),
                        r.acceptance,
                        r.verdict
                    );
                }
                for r in &results {
                    if let Some(truth) = r.true_leak_mib_per_min {
                        println!(
                            "  {}: rate reported {} MiB/min vs truth {truth} (harness /proc: {}): {}",
                            r.fault,
                            r.reported_leak_mib_per_min
                                .map(|v| format!("{v:.2}"))
                                .unwrap_or_else(|| "none".into()),
                            r.harness_measured_leak_mib_per_min
                                .map(|v| format!("{v:.2}"))
                                .unwrap_or_else(|| "-".into()),
                            match (r.leak_rate_error_pct, &r.leak_rate_verdict) {
                                (Some(e), Some(v)) => format!("{e:+.0} % ({v}, acceptance ±10 %)"),
                                _ => "no rate reported: FAIL".into(),
                            }
                        );
                    }
                    if let Some(m) = r.minutes_before_fd_limit {
                        println!(
                            "  descriptors: alerted {m:.1} min before the limit (acceptance ≥ 10)"
                        );
                    }
                    if r.alerts_before_start > 0 {
                        println!(
                            "  {}: {} alert(s) on its daemon before the fault started",
                            r.fault, r.alerts_before_start
                        );
                    }
                    if let Some(m) = &r.message {
                        println!("  {} first alert: {m}", r.fault);
                    }
                }
                let count = |v: &str| results.iter().filter(|r| r.verdict == v).count();
                let rates = results
                    .iter()
                    .filter(|r| r.true_leak_mib_per_min.is_some())
                    .filter(|r| r.leak_rate_verdict.as_deref() != Some("PASS"))
                    .count();
                println!(
                    "  faults: {} PASS, {} FAIL, {} not reached in run; leak rates off by more \
                     than 10 % (or not reported): {rates}",
                    count("PASS"),
                    count("FAIL"),
                    count("not reached in run")
                );
                if !others.is_empty() {
                    println!("  alerts on no fault daemon (host, perfvisor itself):");
                    for a in &others {
                        println!(
                            "    {:>6}  {:<40} {:<10} {}",
                            clock(a.at_s),
                            a.rule,
                            a.daemon.as_deref().unwrap_or("-"),
                            a.message
                        );
                    }
                }
                json.insert(
                    "fault".into(),
                    serde_json::json!({
                        "faults": results,
                        "other_alerts": others,
                        "all_alerts": firing,
                        "perfvisor_exited": i.exited,
                    }),
                );
            }
        }
    }
    if !log.is_empty() {
        println!();
        println!("operator actions and events:");
        for l in log {
            println!("  {l}");
        }
    }
    let out = target_dir().join("alert-quality.json");
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(json))
        .map_err(|e| format!("cannot encode the results: {e}"))?;
    fs::write(&out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    println!();
    println!(
        "JSON: {}; configs and logs: {}",
        out.display(),
        env.run_dir.display()
    );
    Ok(())
}

fn judge(f: &Fault, firing: &[&Received], ended_s: f64) -> FaultResult {
    let on_daemon: Vec<&&Received> = firing
        .iter()
        .filter(|a| a.daemon.as_deref() == Some(f.daemon))
        .collect();
    // A small grace: the start is the harness's schedule, and the process's own clock may
    // run a few hundred milliseconds ahead.
    let first = on_daemon.iter().find(|a| a.at_s >= f.start_s - 1.0);
    let before = on_daemon
        .iter()
        .filter(|a| a.at_s < f.start_s - 1.0)
        .count();
    let deadline = f.deadline_s();
    let verdict = match first {
        Some(a) if a.at_s <= deadline => "PASS",
        Some(_) => "FAIL",
        None if ended_s < deadline => "not reached in run",
        None => "FAIL",
    };
    let acceptance = match f.name {
        "descriptors" => "≥ 10 min before limit".to_string(),
        _ if f.within_s >= 120.0 => format!("within {:.0} min", f.within_s / 60.0),
        _ => format!("within {:.0} s", f.within_s),
    };
    let (error, rate_verdict) = match (f.leak_mib_per_min, f.reported_mib_per_min) {
        (Some(truth), Some(got)) => {
            let e = (got - truth) / truth * 100.0;
            (
                Some(e),
                Some(if e.abs() <= 10.0 { "PASS" } else { "FAIL" }.to_string()),
            )
        }
        _ => (None, None),
    };
    FaultResult {
        fault: f.name.to_string(),
        daemon: f.daemon.to_string(),
        start_s: f.start_s,
        alerted: first.is_some(),
        rule: first.map(|a| a.rule.clone()),
        message: first.map(|a| a.message.clone()),
        seconds_to_alert: first.map(|a| a.at_s - f.start_s),
        acceptance,
        verdict: verdict.to_string(),
        true_leak_mib_per_min: f.leak_mib_per_min,
        reported_leak_mib_per_min: f.reported_mib_per_min,
        harness_measured_leak_mib_per_min: slope_mib_per_min(&f.rss_samples),
        leak_rate_error_pct: error,
        leak_rate_verdict: rate_verdict,
        minutes_before_fd_limit: match (f.fd_limit_at_s(), first) {
            (Some(limit), Some(a)) if f.name == "descriptors" => Some((limit - a.at_s) / 60.0),
            _ => None,
        },
        alerts_before_start: before,
    }
}
