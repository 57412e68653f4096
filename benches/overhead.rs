//! Overhead harness: owns the side-by-side measurement of what watching N daemons at a 1 s
//! interval costs with perfvisor and with its peers (pidstat, prometheus-process-exporter,
//! monit) and with a hand-written /proc reader (the floor), all on the same target
//! processes in one run, and how close each one's readings are to the truth.
//!
//! ```text
//! cargo bench --bench overhead -- [--n 10,100,1000] [--seconds 60] [--warmup 10]
//!                                 [--monitors perfvisor,pidstat,process-exporter,monit,floor]
//! ```
//!
//! For each N: N `perfvisor-loadgen` targets (N−2 idle, one burning 30 % of a core, one
//! holding 128 MiB), then each monitor in turn: started on exactly those pids, warmed up,
//! measured over a fixed window, asked what it saw, stopped. Figures:
//! - CPU: utime+stime of the monitor's whole process tree, plus cutime+cstime (children that
//!   exited and were reaped inside the tree), over the window's wall time, in % of one core.
//! - Memory: the peak of the tree's summed VmRSS sampled every second (warm-up included),
//!   and VmHWM of the monitor's main process.
//! - Truth: the harness reads the two special targets' /proc over the same window.
//!
//! Only the monitors' own work is counted. The harness's sampling and its calls to the
//! monitors' interfaces are not, with one deliberate exception: process-exporter collects
//! when scraped, so the harness scrapes it every second (as Prometheus would) and the
//! scrape's cost lands in the exporter. perfvisor's API and `monit status` are asked only
//! after the window closes.
//!
//! Every process the harness starts is a `Proc`, killed by pid (SIGKILL, then reaped) when
//! dropped, panics included; they also get `PR_SET_PDEATHSIG` = SIGKILL, so they die with
//! the harness even when it is killed outright. PDEATHSIG fires when the *thread* that
//! forked exits, so every process is started from the main thread.
//!
//! A monitor whose binary is missing is reported as "not installed", unless
//! `PERFVISOR_REQUIRE_EXTERNAL=1`, which makes that an error.
//!
//! Hidden mode: `--floor-child CPU_PID,MEM_PID PID,PID,...` is the floor monitor itself
//! (the bench binary re-executed), see [`floor_child`].

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PERFVISOR: &str = env!("CARGO_BIN_EXE_perfvisor");
const LOADGEN: &str = env!("CARGO_BIN_EXE_perfvisor-loadgen");

/// The probe interval asked of every monitor, and the harness's sampling cadence.
const TICK: Duration = Duration::from_secs(1);
/// Index of the target burning `BURN` of a core.
const CPU_TARGET: usize = 0;
/// Index of the target holding `HOLD_MIB`.
const MEM_TARGET: usize = 1;
const BURN: f64 = 0.3;
const HOLD_MIB: u64 = 128;
const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Perfvisor,
    /// Another perfvisor binary (`PERFVISOR_BASELINE_BIN`), e.g. a build of an earlier
    /// commit, measured side by side with this one in the same run.
    PerfvisorBaseline,
    Pidstat,
    ProcessExporter,
    Monit,
    Floor,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Perfvisor,
        Kind::Pidstat,
        Kind::ProcessExporter,
        Kind::Monit,
        Kind::Floor,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Perfvisor => "perfvisor",
            Kind::PerfvisorBaseline => "perfvisor-baseline",
            Kind::Pidstat => "pidstat",
            Kind::ProcessExporter => "process-exporter",
            Kind::Monit => "monit",
            Kind::Floor => "floor",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s).or(match s {
            "perfvisor-baseline" => Some(Kind::PerfvisorBaseline),
            "prometheus-process-exporter" | "exporter" => Some(Kind::ProcessExporter),
            _ => None,
        })
    }
}

struct Opts {
    /// `--soak MINUTES`: instead of the comparison, perfvisor alone for this long.
    soak_minutes: Option<u64>,
    /// `--push-series K`: in a soak, K synthetic series pushed over HTTP every second.
    push_series: usize,
    sizes: Vec<usize>,
    seconds: u64,
    warmup: u64,
    monitors: Vec<Kind>,
    /// `--shapes`: the shapes of the targets, one set of N targets per entry, in order.
    shapes: Vec<Shape>,
    require_external: bool,
}

/// What one watched daemon is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// One `perfvisor-loadgen` process (the default).
    Single,
    /// A process tree of five: `sh` with the loadgen, a `sleep` and a second `sh` as
    /// children, and a `sleep` under that `sh` (parent, children, a grandchild).
    Tree,
    /// One loadgen in a cgroup of its own (`perfvisor-*`, made by the harness, which
    /// needs root), so perfvisor reads the cgroup's files besides the process.
    Cgroup,
    /// The tree of [`Shape::Tree`] in a cgroup of its own.
    CgroupTree,
}

impl Shape {
    const ALL: [Shape; 4] = [Shape::Single, Shape::Tree, Shape::Cgroup, Shape::CgroupTree];

    fn name(self) -> &'static str {
        match self {
            Shape::Single => "single",
            Shape::Tree => "tree",
            Shape::Cgroup => "cgroup",
            Shape::CgroupTree => "cgroup-tree",
        }
    }

    fn in_cgroup(self) -> bool {
        matches!(self, Shape::Cgroup | Shape::CgroupTree)
    }

    fn is_tree(self) -> bool {
        matches!(self, Shape::Tree | Shape::CgroupTree)
    }
}

const USAGE: &str = "cargo bench --bench overhead -- [--n 10,100,1000] [--seconds 60] \
                     [--warmup 10] [--monitors perfvisor,pidstat,process-exporter,monit,floor]\n\
                     [--shapes single,tree,cgroup,cgroup-tree] (targets: one process, a tree \
                     of five, or either in a cgroup of its own, which needs root)\n\
                     (--monitors perfvisor,perfvisor-baseline with PERFVISOR_BASELINE_BIN=PATH \
                     compares two builds)\n\
                     cargo bench --bench overhead -- --soak MINUTES --n 1000 [--push-series 7000]";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        soak_minutes: None,
        push_series: 0,
        sizes: vec![100],
        seconds: 60,
        warmup: 10,
        monitors: Kind::ALL.to_vec(),
        shapes: vec![Shape::Single],
        require_external: std::env::var("PERFVISOR_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // `--key value` and `--key=value` alike.
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
            "--n" => {
                opts.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().ok().filter(|n| *n >= 2))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("--n: expected a comma-separated list of whole numbers ≥ 2")?;
            }
            "--seconds" => {
                opts.seconds = value()?
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s >= 2)
                    .ok_or("--seconds: expected a whole number ≥ 2")?;
            }
            "--warmup" => {
                opts.warmup = value()?
                    .parse()
                    .map_err(|_| "--warmup: expected a whole number of seconds")?;
            }
            "--monitors" => {
                opts.monitors = value()?
                    .split(',')
                    .map(|s| {
                        Kind::parse(s.trim()).ok_or_else(|| {
                            format!(
                                "--monitors: unknown monitor {s:?}; known: {}",
                                Kind::ALL.map(Kind::name).join(", ")
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "--shapes" => {
                opts.shapes = value()?
                    .split(',')
                    .map(|s| {
                        Shape::ALL
                            .into_iter()
                            .find(|k| k.name() == s.trim())
                            .ok_or_else(|| {
                                format!(
                                    "--shapes: unknown shape {s:?}; known: {}",
                                    Shape::ALL.map(Shape::name).join(", ")
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "--soak" => {
                opts.soak_minutes = Some(
                    value()?
                        .parse::<u64>()
                        .ok()
                        .filter(|m| *m >= 1)
                        .ok_or("--soak: expected a whole number of minutes ≥ 1")?,
                );
            }
            "--push-series" => {
                opts.push_series = value()?
                    .parse::<usize>()
                    .map_err(|_| "--push-series: expected a whole number of series")?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--floor-child") {
        floor_child(&args[i + 1..]);
        return;
    }
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("overhead: {e}");
            }
            eprintln!("usage: {USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    // 1000 targets and monitors that keep a few descriptors per target open.
    raise_nofile();
    if let Some(minutes) = opts.soak_minutes {
        match soak(minutes, &opts) {
            Ok(()) => return,
            Err(e) => {
                println!("soak failed: {e}");
                std::process::exit(1);
            }
        }
    }
    print_header(&opts);
    for &n in &opts.sizes {
        match run_size(n, &opts) {
            Ok(table) => println!("{table}"),
            Err(e) => {
                println!("\n### N = {n}: failed: {e}\n");
                if opts.require_external {
                    std::process::exit(1);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// A process the harness started. Dropping it kills it by pid and reaps it.
struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn spawn(cmd: &mut Command, what: &str) -> Result<Proc, String> {
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

    fn signal(&mut self, sig: libc::c_int) {
        if self.running() {
            // SAFETY: plain syscall on a pid we have not reaped yet, so it is still ours.
            unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        }
    }

    /// Waits up to `grace` for the process to exit on its own.
    fn wait_exit(&mut self, grace: Duration) -> Option<ExitStatus> {
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
    fn stop(&mut self, sig: libc::c_int, grace: Duration) -> Option<ExitStatus> {
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

    fn kill(&mut self) {
        if self.running() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a short command with its output in `out` (a file: no pipe to fill up); kills it
/// after `timeout`.
fn run_capture(cmd: &mut Command, out: &Path, timeout: Duration) -> Result<String, String> {
    let file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(file).stderr(err);
    let what = format!("{:?}", cmd.get_program());
    let mut p = Proc::spawn(cmd, &what)?;
    let status = p
        .wait_exit(timeout)
        .ok_or_else(|| format!("{what} did not finish within {timeout:?}"))?;
    let text = fs::read_to_string(out).unwrap_or_default();
    if status.success() {
        Ok(text)
    } else {
        Err(format!("{what} failed ({status}): {}", text.trim()))
    }
}

/// Polls `check` every `every` until it answers true, fails, or `timeout` passes.
fn wait_until(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(every);
    }
}

fn sleep_until(deadline: Instant) {
    if let Some(d) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the calls read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

struct PStat {
    ppid: u32,
    /// utime + stime, clock ticks.
    ticks: u64,
    /// cutime + cstime: reaped children, clock ticks.
    child_ticks: u64,
}

/// Parses /proc/PID/stat; fields are counted after the `)` closing the command name (which
/// may itself hold spaces and parentheses): field k (1-based, man proc) is `rest[k - 3]`.
fn read_pstat(pid: u32) -> Option<PStat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    let field = |k: usize| rest.get(k - 3)?.parse::<u64>().ok();
    Some(PStat {
        ppid: field(4)? as u32,
        ticks: field(14)? + field(15)?,
        child_ticks: field(16)? + field(17)?,
    })
}

/// A `kB` line of /proc/PID/status (`VmRSS:`, `VmHWM:`), in KiB.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Busy and total jiffies of all cores, from the `cpu` line of /proc/stat (idle and iowait
/// are not busy).
fn host_cpu() -> Option<(u64, u64)> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = s
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// A monitor's process tree: its main pid and every descendant.
struct Tree {
    root: u32,
    pids: Vec<u32>,
    peak_kib: u64,
}

impl Tree {
    fn new(root: u32) -> Tree {
        let mut t = Tree {
            root,
            pids: vec![root],
            peak_kib: 0,
        };
        t.rescan();
        t
    }

    /// Finds the descendants by scanning every /proc/PID/stat for its parent (this kernel
    /// has no /proc/PID/task/TID/children). Done at the window's edges and every few
    /// seconds, not at every sample: none of the monitors forks in steady state.
    fn rescan(&mut self) {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        if let Ok(dir) = fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some(st) = read_pstat(pid) {
                    children.entry(st.ppid).or_default().push(pid);
                }
            }
        }
        let mut pids = vec![self.root];
        let mut i = 0;
        while i < pids.len() {
            if let Some(c) = children.get(&pids[i]) {
                pids.extend(c);
            }
            i += 1;
        }
        self.pids = pids;
    }

    /// CPU ticks of the tree (live processes' own and reaped children's) and its summed
    /// VmRSS in KiB; updates the peak.
    fn sample(&mut self) -> (u64, u64) {
        let (mut ticks, mut kib) = (0, 0);
        for &pid in &self.pids {
            if let Some(st) = read_pstat(pid) {
                ticks += st.ticks + st.child_ticks;
            }
            kib += status_kib(pid, "VmRSS:").unwrap_or(0);
        }
        self.peak_kib = self.peak_kib.max(kib);
        (ticks, kib)
    }
}

// ---------------------------------------------------------------------------------------
// HTTP (127.0.0.1 only)
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------

/// The watched processes. Dropping kills them all first (a tree's whole process group),
/// then reaps them all, then removes the cgroups the harness made.
struct Targets {
    procs: Vec<Proc>,
    pids: Vec<u32>,
    cgroups: Vec<perfvisor_actors::watcher::cgroup::DaemonCgroup>,
    tree: bool,
}

impl Targets {
    /// Each loadgen gets `--as TAG-tI`: an argument loadgen accepts and only uses with
    /// `--report-latency` (so behaviour is unchanged), which lets process-exporter select
    /// exactly this run's targets by command line even when other loadgens are running.
    fn start(n: usize, tag: &str, shape: Shape) -> Result<Targets, String> {
        let mut t = Targets {
            procs: Vec::with_capacity(n),
            pids: Vec::with_capacity(n),
            cgroups: Vec::new(),
            tree: shape.is_tree(),
        };
        let parent = if shape.in_cgroup() {
            Some(
                perfvisor_actors::watcher::cgroup::resolve_parent(None)
                    .map_err(|e| format!("shape {}: no cgroup: {e}", shape.name()))?,
            )
        } else {
            None
        };
        for i in 0..n {
            let load: Vec<String> = match i {
                CPU_TARGET => vec!["--cpu".into(), BURN.to_string()],
                MEM_TARGET => vec!["--hold-mib".into(), HOLD_MIB.to_string()],
                _ => vec!["--cpu".into(), "0".into()],
            };
            // A cgroup target joins its cgroup before it runs (the shell writes its own pid
            // into each `cgroup.procs`, then starts the target): memory is charged to the
            // cgroup a page was first touched in and does not move with the process, so one
            // moved in after allocating would show little in its cgroup's memory figures.
            let join = match &parent {
                Some(parent) => {
                    let cg = perfvisor_actors::watcher::cgroup::DaemonCgroup::create(
                        &format!("bench-{tag}-t{i}"),
                        parent,
                    )
                    .map_err(|e| format!("cannot make a cgroup for target t{i}: {e}"))?;
                    let join: String = cg
                        .procs_files()
                        .iter()
                        .map(|f| format!("echo $$ > '{}'; ", f.display()))
                        .collect();
                    t.cgroups.push(cg);
                    join
                }
                None => String::new(),
            };
            let mut cmd = if shape.is_tree() {
                // sh ─┬─ loadgen, sleep
                //     └─ sh ── sleep            (five processes, one a grandchild)
                let mut c = Command::new("/bin/sh");
                c.arg("-c")
                    .arg(format!(
                        "{join}{LOADGEN} {} --as {tag}-t{i} & sleep 100000 & \
                         sh -c 'sleep 100000; :' & wait",
                        load.join(" ")
                    ))
                    .process_group(0);
                c
            } else if !join.is_empty() {
                // The shell execs the target: still one process.
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(format!(
                    "{join}exec {LOADGEN} {} --as {tag}-t{i}",
                    load.join(" ")
                ));
                c
            } else {
                let mut c = Command::new(LOADGEN);
                c.args(&load).args(["--as", &format!("{tag}-t{i}")]);
                c
            };
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let p = Proc::spawn(&mut cmd, &format!("target t{i}"))?;
            t.pids.push(p.pid());
            t.procs.push(p);
        }
        if shape.is_tree() {
            let pids = t.pids.clone();
            wait_until(
                Duration::from_secs(60),
                Duration::from_millis(200),
                "every tree target to have its five processes",
                || Ok(pids.iter().all(|p| Tree::new(*p).pids.len() == 5)),
            )?;
        }
        let mem = t.pids[MEM_TARGET];
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            "the 128 MiB target to touch its memory",
            || Ok(Tree::new(mem).sample().1 >= HOLD_MIB * 1024),
        )?;
        Ok(t)
    }

    fn all_alive(&mut self) -> bool {
        self.procs.iter_mut().all(Proc::running)
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if self.tree && p.running() {
                // SAFETY: plain syscall; the tree's sh leads its own group and is not reaped
                // yet, so the group id is still its.
                unsafe { libc::kill(-(p.pid() as libc::pid_t), libc::SIGKILL) };
            }
            p.signal(libc::SIGKILL);
        }
        for p in &mut self.procs {
            let _ = p.child.wait();
        }
        for cg in &self.cgroups {
            let _ = cg.kill(Duration::from_secs(2));
            let deadline = Instant::now() + Duration::from_secs(5);
            while !cg.remove() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Monitors
// ---------------------------------------------------------------------------------------

/// What one run of a monitor shares with the monitor.
struct Ctx<'a> {
    n: usize,
    pids: &'a [u32],
    cpu_pid: u32,
    mem_pid: u32,
    tag: &'a str,
    dir: PathBuf,
}

/// The measurement window, in both clocks.
struct Window {
    wall0_ms: i64,
    wall1_ms: i64,
}

/// A monitor's readings of the two special targets over (or at the end of) the window.
#[derive(Default)]
struct Reading {
    cpu_pct: Option<f64>,
    rss_mib: Option<f64>,
}

trait Monitor {
    /// Starts the monitor on the targets and waits until it watches all of them.
    fn start(&mut self, ctx: &Ctx) -> Result<(), String>;
    /// The running monitor's main process.
    fn proc(&mut self) -> &mut Proc;
    /// Called every second, after the harness has sampled.
    fn tick(&mut self, _ctx: &Ctx, _in_window: bool) {}
    fn window_start(&mut self, _ctx: &Ctx) {}
    fn window_end(&mut self, _ctx: &Ctx) {}
    /// Its readings of the two special targets; called after the window closed.
    fn report(&mut self, ctx: &Ctx, w: &Window) -> Result<Reading, String>;
    fn stop(&mut self) {
        self.proc().stop(libc::SIGTERM, Duration::from_secs(10));
    }
    /// Where its output goes, for diagnostics.
    fn log(&self) -> PathBuf;
    /// What the reader of the table must know about it.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

fn not_started() -> ! {
    panic!("monitor used before start")
}

// --- perfvisor -------------------------------------------------------------------------

struct PerfvisorMon {
    /// The binary to run.
    bin: String,
    /// Names its database and config in the shared directory.
    tag: &'static str,
    proc: Option<Proc>,
    port: u16,
    log: PathBuf,
    /// API token (the soak pushes samples, which needs one).
    token: Option<String>,
}

impl PerfvisorMon {
    /// Raw samples of one daemon's metric in `[from, to)`: `(unix ms, value)`.
    fn samples(
        &self,
        daemon: &str,
        metric: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, f64)>, String> {
        let path = format!("/api/v1/query?metric={metric}&daemon={daemon}&from={from}&to={to}");
        let (code, body) = http_get(self.port, &path, Duration::from_secs(10))?;
        if code != 200 {
            return Err(format!("GET {path}: {code} {body}"));
        }
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let samples = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|s| s["samples"].as_array())
            .ok_or_else(|| format!("GET {path}: no series in {body}"))?;
        Ok(samples
            .iter()
            .filter_map(|s| Some((s[0].as_i64()?, s[1].as_f64()?)))
            .collect())
    }
}

impl Monitor for PerfvisorMon {
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let addr = format!("127.0.0.1:{}", self.port);
        let mut config = format!(
            "[supervisor]\ndatabase = \"{}\"\nprobe_interval = \"1s\"\nlisten = \"{addr}\"\n",
            ctx.dir.join(format!("{}.db", self.tag)).display()
        );
        if let Some(token) = &self.token {
            config.push_str(&format!("token = \"{token}\"\n"));
        }
        for (i, pid) in ctx.pids.iter().enumerate() {
            config.push_str(&format!("\n[[attach]]\nname = \"d{i}\"\npid = {pid}\n"));
        }
        let file = ctx.dir.join(format!("{}.toml", self.tag));
        fs::write(&file, config).map_err(|e| e.to_string())?;
        let log = File::create(&self.log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["run", "--config"])
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let proc = self.proc.insert(Proc::spawn(&mut cmd, "perfvisor")?);
        // Ready when /api/v1/status lists one watcher per target pid, each having probed.
        let want: HashSet<u32> = ctx.pids.iter().copied().collect();
        let port = self.port;
        wait_until(
            Duration::from_secs(30) + Duration::from_millis(50) * ctx.n as u32,
            Duration::from_millis(250),
            "perfvisor to list every target in /api/v1/status",
            || {
                if !proc.running() {
                    return Err("perfvisor exited".into());
                }
                let Ok((200, body)) = http_get(port, "/api/v1/status", Duration::from_secs(5))
                else {
                    return Ok(false);
                };
                let v: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| e.to_string())?;
                let ready = v["watchers"].as_array().map_or(0, |ws| {
                    ws.iter()
                        .filter(|w| {
                            w["probes"].as_u64().unwrap_or(0) >= 1
                                && w["pid"]
                                    .as_u64()
                                    .is_some_and(|p| want.contains(&(p as u32)))
                        })
                        .count()
                });
                Ok(ready == ctx.n)
            },
        )
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    /// From the stored history (`/api/v1/query`, raw samples over the window): the CPU
    /// counter's increase over its time span, and the mean of the RSS samples.
    fn report(&mut self, _ctx: &Ctx, w: &Window) -> Result<Reading, String> {
        let cpu_daemon = format!("d{CPU_TARGET}");
        let mem_daemon = format!("d{MEM_TARGET}");
        // Samples reach the database at the next flush (1 s by default): wait for the
        // window's last ones.
        let mut cpu = Vec::new();
        wait_until(
            Duration::from_secs(15),
            Duration::from_millis(250),
            "perfvisor to commit the window's samples",
            || {
                cpu = self.samples(
                    &cpu_daemon,
                    "process.cpu.time_seconds",
                    w.wall0_ms,
                    w.wall1_ms,
                )?;
                Ok(cpu.last().is_some_and(|(t, _)| *t >= w.wall1_ms - 2_000))
            },
        )?;
        let mem = self.samples(
            &mem_daemon,
            "process.memory.usage_bytes",
            w.wall0_ms,
            w.wall1_ms,
        )?;
        let cpu_pct = match (cpu.first(), cpu.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                Some((b.1 - a.1) / ((b.0 - a.0) as f64 / 1e3) * 100.0)
            }
            _ => None,
        };
        let rss_mib = (!mem.is_empty())
            .then(|| mem.iter().map(|s| s.1).sum::<f64>() / mem.len() as f64 / MIB);
        Ok(Reading { cpu_pct, rss_mib })
    }

    fn log(&self) -> PathBuf {
        self.log.clone()
    }

    fn notes(&self) -> Vec<String> {
        vec![
            "perfvisor: `perfvisor run` with defaults (storage, analysis, alerting on), one \
              `[[attach]]` per target; readings are its stored history over the window \
              (/api/v1/query, raw samples: CPU counter increase, mean RSS)."
                .into(),
        ]
    }
}

// --- pidstat ---------------------------------------------------------------------------

struct PidstatMon {
    bin: PathBuf,
    proc: Option<Proc>,
    out: PathBuf,
    /// Byte offsets of the output at the window's start and end.
    from: u64,
    to: u64,
}

impl Monitor for PidstatMon {
    /// `pidstat -h -d -r -u -p PIDS 1`: `-h` puts one line per pid per report (all three
    /// activity groups side by side), which only changes the layout. `LC_ALL=C` keeps the
    /// time a single token and the decimal point a point.
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let pids = ctx
            .pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let out = File::create(&self.out).map_err(|e| e.to_string())?;
        let err = File::create(self.log()).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-h", "-d", "-r", "-u", "-p", &pids, "1"])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let proc = self.proc.insert(Proc::spawn(&mut cmd, "pidstat")?);
        let path = self.out.clone();
        let cpu = ctx.cpu_pid.to_string();
        wait_until(
            Duration::from_secs(15),
            Duration::from_millis(200),
            "pidstat's first report",
            || {
                if !proc.running() {
                    return Err("pidstat exited".into());
                }
                let text = fs::read_to_string(&path).unwrap_or_default();
                Ok(text
                    .lines()
                    .any(|l| l.split_whitespace().nth(2) == Some(cpu.as_str())))
            },
        )
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    fn window_start(&mut self, _ctx: &Ctx) {
        self.from = fs::metadata(&self.out).map_or(0, |m| m.len());
    }

    fn window_end(&mut self, _ctx: &Ctx) {
        self.to = fs::metadata(&self.out).map_or(0, |m| m.len());
    }

    /// pidstat flushes once per report, so the rows written between the window's two
    /// offsets are the window's reports (give or take a report split at an edge). The
    /// means of `%CPU` and `RSS` over those rows are its readings.
    fn report(&mut self, ctx: &Ctx, _w: &Window) -> Result<Reading, String> {
        let bytes = fs::read(&self.out).map_err(|e| e.to_string())?;
        let to = (self.to as usize).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes);
        let header = text
            .lines()
            .find(|l| l.starts_with('#'))
            .ok_or("no header in pidstat's output")?;
        let cols: Vec<&str> = header.trim_start_matches('#').split_whitespace().collect();
        let col = |name: &str| cols.iter().position(|c| *c == name);
        let (pid_c, cpu_c, rss_c) = (
            col("PID").ok_or("no PID column")?,
            col("%CPU").ok_or("no %CPU column")?,
            col("RSS").ok_or("no RSS column")?,
        );
        let mut from = (self.from as usize).min(to);
        // A line cut at the window's first edge is left out.
        if from > 0 && bytes[from - 1] != b'\n' {
            from += bytes[from..to]
                .iter()
                .position(|c| *c == b'\n')
                .map_or(to - from, |i| i + 1);
        }
        let window = String::from_utf8_lossy(&bytes[from..to]);
        let (mut cpu, mut rss) = (Vec::new(), Vec::new());
        for l in window.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != cols.len() {
                continue;
            }
            let pid = f[pid_c].parse::<u32>().ok();
            if pid == Some(ctx.cpu_pid) {
                cpu.extend(f[cpu_c].parse::<f64>().ok());
            }
            if pid == Some(ctx.mem_pid) {
                rss.extend(f[rss_c].parse::<f64>().ok().map(|kb| kb / 1024.0));
            }
        }
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        Ok(Reading {
            cpu_pct: mean(&cpu),
            rss_mib: mean(&rss),
        })
    }

    fn log(&self) -> PathBuf {
        self.out.with_file_name("pidstat.err")
    }

    fn notes(&self) -> Vec<String> {
        vec![
            "pidstat: `pidstat -h -d -r -u -p PIDS 1` (sysstat), output to a file; readings \
              are the means of its per-second %CPU and RSS rows inside the window."
                .into(),
        ]
    }
}

// --- process-exporter ------------------------------------------------------------------

/// One scrape's figures for the two special targets.
struct Scrape {
    at: Instant,
    cpu_seconds: Option<f64>,
    resident: Option<f64>,
}

struct ExporterMon {
    bin: PathBuf,
    proc: Option<Proc>,
    port: u16,
    log: PathBuf,
    scrapes: Vec<Scrape>,
    failures: usize,
}

/// The exporter's binary, from the Debian package's file list, else from PATH.
fn find_exporter() -> Option<PathBuf> {
    let listed = Command::new("dpkg")
        .args(["-L", "prometheus-process-exporter"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed
        .lines()
        .map(PathBuf::from)
        .find(|p| {
            p.parent().is_some_and(|d| d.ends_with("bin"))
                && fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .or_else(|| which("prometheus-process-exporter"))
        .or_else(|| which("process-exporter"))
}

impl ExporterMon {
    fn scrape(&mut self, ctx: &Ctx) -> Result<(Scrape, usize), String> {
        let (code, body) = http_get(self.port, "/metrics", Duration::from_secs(10))?;
        if code != 200 {
            return Err(format!("GET /metrics: {code}"));
        }
        let at = Instant::now();
        let cpu_group = format!("groupname=\"{}\"", ctx.cpu_pid);
        let mem_group = format!("groupname=\"{}\"", ctx.mem_pid);
        let mut s = Scrape {
            at,
            cpu_seconds: None,
            resident: None,
        };
        let mut groups = 0;
        for line in body.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value = value.parse::<f64>().ok();
            if series.starts_with("namedprocess_namegroup_num_procs{") {
                groups += 1;
            } else if series.starts_with("namedprocess_namegroup_cpu_seconds_total{")
                && series.contains(&cpu_group)
            {
                // One line per mode (user, system).
                s.cpu_seconds = Some(s.cpu_seconds.unwrap_or(0.0) + value.unwrap_or(0.0));
            } else if series.starts_with("namedprocess_namegroup_memory_bytes{")
                && series.contains(&mem_group)
                && series.contains("memtype=\"resident\"")
            {
                s.resident = value;
            }
        }
        Ok((s, groups))
    }
}

impl Monitor for ExporterMon {
    /// Config: one group per pid (`name: "{{.PID}}"`), selecting this run's targets by
    /// executable and by the `--as TAG-tI` argument. Everything else is the exporter's
    /// defaults (smaps gathered, per-thread metrics on, children tracked).
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let config = ctx.dir.join("process-exporter.yaml");
        fs::write(
            &config,
            format!(
                "process_names:\n  - name: \"{{{{.PID}}}}\"\n    exe:\n    - {LOADGEN}\n    \
                 cmdline:\n    - '--as {}-t[0-9]+$'\n",
                ctx.tag
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = File::create(&self.log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-config.path")
            .arg(&config)
            .arg("-web.listen-address")
            .arg(format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        self.proc = Some(Proc::spawn(&mut cmd, "process-exporter")?);
        let n = ctx.n;
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(250),
            "process-exporter to list one group per target",
            || {
                if !self.proc().running() {
                    return Err("process-exporter exited".into());
                }
                Ok(
                    matches!(self.scrape(ctx), Ok((s, groups)) if groups == n && s.cpu_seconds.is_some()),
                )
            },
        )
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    /// Scrapes every second, warm-up included, as a Prometheus server would; only the
    /// window's scrapes are kept.
    fn tick(&mut self, ctx: &Ctx, in_window: bool) {
        match self.scrape(ctx) {
            Ok((s, _)) if in_window => self.scrapes.push(s),
            Ok(_) => {}
            Err(e) => {
                self.failures += 1;
                eprintln!("  process-exporter scrape failed: {e}");
            }
        }
    }

    /// CPU: the rate of `namedprocess_namegroup_cpu_seconds_total` (user + system) from the
    /// window's first scrape to its last; RSS: the mean of `memory_bytes{resident}`.
    fn report(&mut self, _ctx: &Ctx, _w: &Window) -> Result<Reading, String> {
        let cpu: Vec<(Instant, f64)> = self
            .scrapes
            .iter()
            .filter_map(|s| Some((s.at, s.cpu_seconds?)))
            .collect();
        let cpu_pct = match (cpu.first(), cpu.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                Some((b.1 - a.1) / (b.0 - a.0).as_secs_f64() * 100.0)
            }
            _ => None,
        };
        let rss: Vec<f64> = self.scrapes.iter().filter_map(|s| s.resident).collect();
        let rss_mib = (!rss.is_empty()).then(|| rss.iter().sum::<f64>() / rss.len() as f64 / MIB);
        Ok(Reading { cpu_pct, rss_mib })
    }

    fn log(&self) -> PathBuf {
        self.log.clone()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![
            "process-exporter: Debian's prometheus-process-exporter, one group \
                              per target pid; its cost includes the harness's scrape of \
                              /metrics every second (it collects when scraped), and it walks \
                              all of /proc on each scrape whatever it is told to watch."
                .to_string(),
        ];
        if self.failures > 0 {
            notes.push(format!(
                "process-exporter: {} scrapes failed",
                self.failures
            ));
        }
        notes
    }
}

// --- monit -----------------------------------------------------------------------------

struct MonitMon {
    bin: PathBuf,
    proc: Option<Proc>,
    rc: PathBuf,
    log: PathBuf,
}

impl MonitMon {
    fn cli(&self, args: &[&str], dir: &Path) -> Result<String, String> {
        run_capture(
            Command::new(&self.bin).arg("-c").arg(&self.rc).args(args),
            &dir.join("monit-cli.out"),
            Duration::from_secs(20),
        )
    }

    /// The value of one `  key   value` line of `monit status NAME`.
    fn status_line(text: &str, key: &str) -> Option<String> {
        text.lines().find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix(key)?;
            rest.starts_with("  ").then(|| rest.trim().to_string())
        })
    }
}

/// Monit's size strings ("130.2 MB"): powers of 1024 whatever the unit's spelling.
fn monit_mib(text: &str) -> Option<f64> {
    let inner = text.split_once('[')?.1.split_once(']')?.0;
    let (num, unit) = inner.trim().split_once(' ')?;
    let num: f64 = num.parse().ok()?;
    let scale = match unit {
        "B" => 1.0 / MIB,
        "kB" | "KB" => 1.0 / 1024.0,
        "MB" => 1.0,
        "GB" => 1024.0,
        _ => return None,
    };
    Some(num * scale)
}

impl Monitor for MonitMon {
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let d = ctx.dir.display();
        let mut rc = format!(
            "set daemon 1\n\
             set logfile {d}/monit.log\n\
             set pidfile {d}/monit.pid\n\
             set idfile {d}/monit.id\n\
             set statefile {d}/monit.state\n\
             set httpd unixsocket {d}/monit.sock\n    allow localhost\n"
        );
        for (i, pid) in ctx.pids.iter().enumerate() {
            let pidfile = ctx.dir.join(format!("t{i}.pid"));
            fs::write(&pidfile, format!("{pid}\n")).map_err(|e| e.to_string())?;
            rc.push_str(&format!(
                "check process t{i} with pidfile {}\n    if cpu > 95% then alert\n    \
                 if totalmem > 1 GB then alert\n",
                pidfile.display()
            ));
        }
        fs::write(&self.rc, rc).map_err(|e| e.to_string())?;
        // monit refuses a control file readable by others.
        fs::set_permissions(&self.rc, fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        let log = File::create(&self.log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-I")
            .arg("-c")
            .arg(&self.rc)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        self.proc = Some(Proc::spawn(&mut cmd, "monit")?);
        // Ready when `monit summary` shows every target as an OK process, and a CPU
        // figure (which needs two cycles) is in for the burning one.
        let n = ctx.n;
        let cpu_name = format!("t{CPU_TARGET}");
        wait_until(
            Duration::from_secs(30) + Duration::from_millis(20) * n as u32,
            Duration::from_millis(500),
            "monit to check every target",
            || {
                if !self.proc().running() {
                    return Err("monit exited".into());
                }
                let Ok(summary) = self.cli(&["-B", "summary"], &ctx.dir) else {
                    return Ok(false);
                };
                let ok = summary
                    .lines()
                    .filter(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.len() == 3 && f[1] == "OK" && f[2] == "Process"
                    })
                    .count();
                if ok < n {
                    return Ok(false);
                }
                let status = self
                    .cli(&["status", &cpu_name], &ctx.dir)
                    .unwrap_or_default();
                Ok(Self::status_line(&status, "cpu").is_some_and(|c| {
                    c.trim_end_matches('%')
                        .parse::<f64>()
                        .is_ok_and(|v| v > 0.0)
                }))
            },
        )
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    /// `monit status tI` right after the window: its last cycle's figures (monit keeps no
    /// history). Its `cpu` line is the process's own CPU over the last cycle in % of one
    /// core (checked against the truth: 30 % reads ≈ 30 on a 2-core host); `memory` is its
    /// RSS in powers of 1024.
    fn report(&mut self, ctx: &Ctx, _w: &Window) -> Result<Reading, String> {
        let cpu = self.cli(&["status", &format!("t{CPU_TARGET}")], &ctx.dir)?;
        let mem = self.cli(&["status", &format!("t{MEM_TARGET}")], &ctx.dir)?;
        Ok(Reading {
            cpu_pct: Self::status_line(&cpu, "cpu")
                .and_then(|c| c.trim_end_matches('%').parse::<f64>().ok()),
            rss_mib: Self::status_line(&mem, "memory").and_then(|m| monit_mib(&m)),
        })
    }

    fn log(&self) -> PathBuf {
        self.log.clone()
    }

    fn notes(&self) -> Vec<String> {
        vec![
            "monit: `monit -I` with `set daemon 1` (a 1 s cycle is the shortest it has: \
              the interval is whole seconds), one `check process` by pidfile per target with \
              a cpu and a totalmem test; each cycle it also reads the whole process table (to \
              build the tree behind `totalmem`/`children`) and checks the host itself. \
              Its CPU figure needs two cycles. Readings are `monit status` after the window: \
              the last cycle's values (monit keeps no history)."
                .into(),
        ]
    }
}

// --- floor -----------------------------------------------------------------------------

struct FloorMon {
    proc: Option<Proc>,
    stdin: Option<ChildStdin>,
    out: PathBuf,
    log: PathBuf,
}

impl Monitor for FloorMon {
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let pids = ctx
            .pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(exe);
        cmd.arg("--floor-child")
            .arg(format!("{},{}", ctx.cpu_pid, ctx.mem_pid))
            .arg(pids)
            .stdin(Stdio::piped())
            .stdout(File::create(&self.out).map_err(|e| e.to_string())?)
            .stderr(File::create(&self.log).map_err(|e| e.to_string())?);
        let mut proc = Proc::spawn(&mut cmd, "floor")?;
        self.stdin = proc.child.stdin.take();
        self.proc = Some(proc);
        Ok(())
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    fn window_start(&mut self, _ctx: &Ctx) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(b"mark\n").and_then(|_| stdin.flush());
        }
    }

    /// Closes its stdin: it prints its readings (CPU since the mark, last RSS) and exits.
    fn report(&mut self, ctx: &Ctx, _w: &Window) -> Result<Reading, String> {
        drop(self.stdin.take());
        self.proc()
            .wait_exit(Duration::from_secs(10))
            .ok_or("the floor did not exit on stdin EOF")?;
        let text = fs::read_to_string(&self.out).map_err(|e| e.to_string())?;
        let mut r = Reading::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["cpu", pid, ticks, secs] if pid.parse() == Ok(ctx.cpu_pid) => {
                    let (t, s) = (ticks.parse::<f64>(), secs.parse::<f64>());
                    if let (Ok(t), Ok(s)) = (t, s) {
                        r.cpu_pct = (s > 0.0).then(|| t / clk_tck() / s * 100.0);
                    }
                }
                ["rss", pid, kib] if pid.parse() == Ok(ctx.mem_pid) => {
                    r.rss_mib = kib.parse::<f64>().ok().map(|k| k / 1024.0);
                }
                _ => {}
            }
        }
        Ok(r)
    }

    fn stop(&mut self) {
        drop(self.stdin.take());
        self.proc().stop(libc::SIGTERM, Duration::from_secs(5));
    }

    fn log(&self) -> PathBuf {
        self.log.clone()
    }

    fn notes(&self) -> Vec<String> {
        vec![
            "floor: this bench re-executed as a minimal reader: per pid, /proc/PID/stat, \
              statm and io opened once and re-read with pread into one buffer every second; \
              CPU reading since the window's start, RSS the last value."
                .into(),
        ]
    }
}

/// The floor monitor: every second, for each pid, re-reads /proc/PID/stat, statm and io
/// (opened once, read with `pread` at offset 0, which regenerates them, into one reused
/// buffer) and keeps utime, stime, rss, read_bytes and write_bytes. Prints nothing until
/// stdin closes; a `mark` line on stdin notes the baseline for the CPU reading. On EOF it
/// prints `cpu PID TICKS SECONDS` (CPU ticks of the first special pid between the mark's
/// sample and the last one, and the seconds between them) and `rss PID KIB` (the second
/// special pid's last RSS).
fn floor_child(args: &[String]) {
    struct Watched {
        pid: u32,
        stat: Option<File>,
        statm: Option<File>,
        io: Option<File>,
        ticks: u64,
        rss_pages: u64,
        read_bytes: u64,
        write_bytes: u64,
    }
    fn num(b: &[u8]) -> u64 {
        b.iter()
            .take_while(|c| c.is_ascii_digit())
            .fold(0, |n, c| n * 10 + u64::from(c - b'0'))
    }
    fn read<'b>(f: &Option<File>, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let n = f.as_ref()?.read_at(buf, 0).ok()?;
        (n > 0).then(|| &buf[..n])
    }
    fn sample(w: &mut Watched, buf: &mut [u8]) {
        if let Some(b) = read(&w.stat, buf) {
            // Fields after the last ')': state is field 3, utime 14, stime 15.
            if let Some(close) = b.iter().rposition(|c| *c == b')') {
                let mut f = b[close + 1..]
                    .split(|c| *c == b' ')
                    .filter(|s| !s.is_empty());
                let utime = f.nth(11).map(num);
                let stime = f.next().map(num);
                if let (Some(u), Some(s)) = (utime, stime) {
                    w.ticks = u + s;
                }
            }
        }
        if let Some(b) = read(&w.statm, buf) {
            if let Some(rss) = b.split(|c| *c == b' ').nth(1) {
                w.rss_pages = num(rss);
            }
        }
        if let Some(b) = read(&w.io, buf) {
            for line in b.split(|c| *c == b'\n') {
                if let Some(v) = line.strip_prefix(b"read_bytes: ") {
                    w.read_bytes = num(v);
                } else if let Some(v) = line.strip_prefix(b"write_bytes: ") {
                    w.write_bytes = num(v);
                }
            }
        }
    }

    let list = |s: Option<&String>| -> Vec<u32> {
        s.map(|s| s.split(',').filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    };
    let special = list(args.first());
    let (cpu_pid, mem_pid) = (special.first().copied(), special.get(1).copied());
    let open = |pid: u32, what: &str| File::open(format!("/proc/{pid}/{what}")).ok();
    let mut watched: Vec<Watched> = list(args.get(1))
        .into_iter()
        .map(|pid| Watched {
            pid,
            stat: open(pid, "stat"),
            statm: open(pid, "statm"),
            io: open(pid, "io"),
            ticks: 0,
            rss_pages: 0,
            read_bytes: 0,
            write_bytes: 0,
        })
        .collect();
    // SAFETY: sysconf has no preconditions.
    let page_kib = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(1) as u64 / 1024;
    let cpu_i = watched.iter().position(|w| Some(w.pid) == cpu_pid);
    let mem_i = watched.iter().position(|w| Some(w.pid) == mem_pid);

    enum Msg {
        Mark,
        Eof,
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == "mark" => {
                    let _ = tx.send(Msg::Mark);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(Msg::Eof);
    });

    let mut buf = vec![0u8; 4096];
    let mut next = Instant::now();
    let mut last_at: Instant;
    let mut mark: Option<(u64, Instant)> = None;
    'run: loop {
        for w in &mut watched {
            sample(w, &mut buf);
        }
        last_at = Instant::now();
        next += TICK;
        loop {
            match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Msg::Mark) => {
                    mark = cpu_i.map(|i| (watched[i].ticks, last_at));
                }
                Ok(Msg::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => break 'run,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
    }
    std::hint::black_box(
        watched
            .iter()
            .map(|w| w.read_bytes + w.write_bytes)
            .sum::<u64>(),
    );
    if let (Some(i), Some((ticks0, at0))) = (cpu_i, mark) {
        println!(
            "cpu {} {} {:.3}",
            watched[i].pid,
            watched[i].ticks - ticks0,
            last_at.duration_since(at0).as_secs_f64()
        );
    }
    if let Some(i) = mem_i {
        println!("rss {} {}", watched[i].pid, watched[i].rss_pages * page_kib);
    }
}

// ---------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------

struct Measured {
    /// Fraction of one core.
    cpu: f64,
    peak_mib: f64,
    hwm_mib: Option<f64>,
    truth_cpu_pct: f64,
    truth_rss_mib: f64,
    /// Share of all the host's cores busy during the window (everything, not just the
    /// monitor): how contended the measurement was.
    host_busy_pct: Option<f64>,
    reading: Result<Reading, String>,
    notes: Vec<String>,
}

enum Outcome {
    NotInstalled(String),
    Failed(String),
    Done(Measured),
}

fn make_monitor(kind: Kind, dir: &Path) -> Result<Box<dyn Monitor>, String> {
    let log = dir.join(format!("{}.log", kind.name()));
    Ok(match kind {
        Kind::Perfvisor => Box::new(PerfvisorMon {
            bin: PERFVISOR.to_string(),
            tag: "perfvisor",
            proc: None,
            port: free_port()?,
            log,
            token: None,
        }),
        Kind::PerfvisorBaseline => Box::new(PerfvisorMon {
            bin: std::env::var("PERFVISOR_BASELINE_BIN")
                .map_err(|_| "PERFVISOR_BASELINE_BIN (the baseline perfvisor binary)")?,
            tag: "perfvisor-baseline",
            proc: None,
            port: free_port()?,
            log,
            token: None,
        }),
        Kind::Pidstat => Box::new(PidstatMon {
            bin: which("pidstat").ok_or("pidstat (sysstat)")?,
            proc: None,
            out: dir.join("pidstat.out"),
            from: 0,
            to: 0,
        }),
        Kind::ProcessExporter => Box::new(ExporterMon {
            bin: find_exporter().ok_or("prometheus-process-exporter")?,
            proc: None,
            port: free_port()?,
            log,
            scrapes: Vec::new(),
            failures: 0,
        }),
        Kind::Monit => Box::new(MonitMon {
            bin: which("monit").ok_or("monit")?,
            proc: None,
            rc: dir.join("monitrc"),
            log,
        }),
        Kind::Floor => Box::new(FloorMon {
            proc: None,
            stdin: None,
            out: dir.join("floor.out"),
            log,
        }),
    })
}

fn run_monitor(kind: Kind, ctx: &Ctx, opts: &Opts) -> Outcome {
    let mut mon = match make_monitor(kind, &ctx.dir) {
        Ok(m) => m,
        Err(missing) => return Outcome::NotInstalled(missing),
    };
    let failed = |mon: &mut Box<dyn Monitor>, what: String| {
        let log = tail(&mon.log(), 5);
        Outcome::Failed(if log.is_empty() {
            what
        } else {
            format!("{what}; log: {}", log.replace('\n', " | "))
        })
    };
    let started = Instant::now();
    if let Err(e) = mon.start(ctx) {
        return failed(&mut mon, e);
    }
    eprintln!(
        "  {}: watching {} targets after {:.1} s; warm-up {} s, window {} s",
        kind.name(),
        ctx.n,
        started.elapsed().as_secs_f64(),
        opts.warmup,
        opts.seconds
    );
    let mut tree = Tree::new(mon.proc().pid());
    let mut next = Instant::now();
    for _ in 0..opts.warmup {
        next += TICK;
        sleep_until(next);
        if !mon.proc().running() {
            return failed(&mut mon, "exited during warm-up".into());
        }
        tree.sample();
        mon.tick(ctx, false);
    }

    // Truth over the target's whole process tree (one process for the single shape).
    let mut cpu_truth = Tree::new(ctx.cpu_pid);
    let mut mem_truth = Tree::new(ctx.mem_pid);
    let mut truth_ticks = |_pid: u32| cpu_truth.sample().0;
    tree.rescan();
    let (cpu0, _) = tree.sample();
    let t0 = Instant::now();
    let wall0_ms = unix_ms();
    let target0 = truth_ticks(ctx.cpu_pid);
    let host0 = host_cpu();
    mon.window_start(ctx);
    let (mut cpu1, mut t1, mut target1) = (cpu0, t0, target0);
    let mut rss_truth = Vec::new();
    for i in 1..=opts.seconds {
        next += TICK;
        sleep_until(next);
        if i % 5 == 0 || i == opts.seconds {
            tree.rescan();
        }
        if !mon.proc().running() {
            return failed(&mut mon, "exited during the window".into());
        }
        (cpu1, _) = tree.sample();
        t1 = Instant::now();
        target1 = truth_ticks(ctx.cpu_pid);
        rss_truth.push(mem_truth.sample().1 as f64 / 1024.0);
        if i < opts.seconds {
            mon.tick(ctx, true);
        }
    }
    let wall1_ms = unix_ms();
    let host_busy_pct = match (host0, host_cpu()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some((b1 - b0) as f64 / (t1 - t0) as f64 * 100.0)
        }
        _ => None,
    };
    mon.window_end(ctx);
    let secs = t1.duration_since(t0).as_secs_f64();
    let hwm_mib = status_kib(tree.root, "VmHWM:").map(|k| k as f64 / 1024.0);
    let reading = mon.report(ctx, &Window { wall0_ms, wall1_ms });
    mon.stop();
    Outcome::Done(Measured {
        cpu: (cpu1 - cpu0) as f64 / clk_tck() / secs,
        peak_mib: tree.peak_kib as f64 / 1024.0,
        hwm_mib,
        truth_cpu_pct: (target1 - target0) as f64 / clk_tck() / secs * 100.0,
        truth_rss_mib: rss_truth.iter().sum::<f64>() / rss_truth.len().max(1) as f64,
        host_busy_pct,
        reading,
        notes: mon.notes(),
    })
}

fn run_size(n: usize, opts: &Opts) -> Result<String, String> {
    let tag = format!("pvh{}n{n}", std::process::id());
    let dir = tempfile::Builder::new()
        .prefix("pv-overhead-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (round, &shape) in opts.shapes.iter().enumerate() {
        eprintln!("N = {n}: starting {n} targets, shape {}", shape.name());
        let mut targets = Targets::start(n, &format!("{tag}r{round}"), shape)?;
        for &kind in &opts.monitors {
            if !targets.all_alive() {
                return Err("a target exited".into());
            }
            let mdir = dir.path().join(format!("{}-{round}", kind.name()));
            fs::create_dir_all(&mdir).map_err(|e| e.to_string())?;
            let ctx = Ctx {
                n,
                pids: &targets.pids,
                cpu_pid: targets.pids[CPU_TARGET],
                mem_pid: targets.pids[MEM_TARGET],
                tag: &tag,
                dir: mdir,
            };
            eprintln!("N = {n}: {}", kind.name());
            let outcome = run_monitor(kind, &ctx, opts);
            match &outcome {
                Outcome::NotInstalled(what) => {
                    if opts.require_external {
                        return Err(format!(
                            "{} not installed ({what}) and PERFVISOR_REQUIRE_EXTERNAL=1",
                            kind.name()
                        ));
                    }
                }
                Outcome::Failed(e) => {
                    eprintln!("  {} failed: {e}", kind.name());
                    notes.push(format!("{}: FAILED: {e}", kind.name()));
                }
                Outcome::Done(m) => {
                    if let Err(e) = &m.reading {
                        notes.push(format!("{}: no readings: {e}", kind.name()));
                    }
                    notes.extend(m.notes.iter().cloned());
                }
            }
            let label = if opts.shapes.len() > 1 || shape != Shape::Single {
                format!("{} ({})", kind.name(), shape.name())
            } else {
                kind.name().to_string()
            };
            rows.push((label, outcome));
        }
        drop(targets);
    }
    if opts.require_external && rows.iter().any(|(_, o)| matches!(o, Outcome::Failed(_))) {
        return Err(format!("a monitor failed: {}", notes.join("; ")));
    }
    Ok(render(n, opts, &rows, &notes))
}

fn render(n: usize, opts: &Opts, rows: &[(String, Outcome)], notes: &[String]) -> String {
    let mut s = format!(
        "\n### N = {n} watched daemons, {} s window after {} s warm-up, 1 s interval\n\n\
         | monitor | CPU % of one core | µs CPU per s per watched daemon | peak RSS MiB (tree sampled / VmHWM) \
         | 30 %-target CPU %: reported / truth | 128 MiB-target RSS MiB: reported / truth \
         | host busy % (all cores) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        opts.seconds, opts.warmup
    );
    let opt = |v: Option<f64>, prec: usize| v.map_or("–".to_string(), |v| format!("{v:.prec$}"));
    for (name, outcome) in rows {
        match outcome {
            Outcome::NotInstalled(_) => {
                s.push_str(&format!("| {name} | not installed | | | | | |\n"))
            }
            Outcome::Failed(_) => {
                s.push_str(&format!("| {name} | failed (see below) | | | | | |\n"))
            }
            Outcome::Done(m) => {
                let (rc, rr) = match &m.reading {
                    Ok(r) => (r.cpu_pct, r.rss_mib),
                    Err(_) => (None, None),
                };
                s.push_str(&format!(
                    "| {name} | {:.3} | {:.1} | {:.1} / {} | {} / {:.1} | {} / {:.1} | {} |\n",
                    m.cpu * 100.0,
                    m.cpu * 1e6 / n as f64,
                    m.peak_mib,
                    opt(m.hwm_mib, 1),
                    opt(rc, 1),
                    m.truth_cpu_pct,
                    opt(rr, 1),
                    m.truth_rss_mib,
                    opt(m.host_busy_pct, 0)
                ));
            }
        }
    }
    if !notes.is_empty() {
        s.push('\n');
        for note in notes {
            s.push_str(&format!("- {note}\n"));
        }
    }
    s
}

fn print_header(opts: &Opts) {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default().trim().to_string();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_total = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|r| r.trim().to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version = |bin: &Path, arg: &str| -> String {
        Command::new(bin)
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .ok()
            .map(|o| {
                let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
                t.push_str(&String::from_utf8_lossy(&o.stderr));
                t.lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|| "?".into())
    };
    let git = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("## perfvisor overhead harness\n");
    println!(
        "- host: {} (kernel {}), {cpu_model} × {cores} cores, {mem_total} RAM, load average at start {}",
        read("/proc/sys/kernel/hostname"),
        read("/proc/sys/kernel/osrelease"),
        read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "- perfvisor: {} ({git}), release build",
        version(Path::new(PERFVISOR), "--version")
    );
    for (name, bin, arg) in [
        ("pidstat", which("pidstat"), "-V"),
        ("process-exporter", find_exporter(), "--version"),
        ("monit", which("monit"), "-V"),
    ] {
        match bin {
            Some(b) => println!("- {name}: {} ({})", version(&b, arg), b.display()),
            None => println!("- {name}: not installed"),
        }
    }
    println!(
        "- run: N = {}; monitors {}; warm-up {} s, window {} s, interval 1 s",
        opts.sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        opts.monitors
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        opts.warmup,
        opts.seconds
    );
    println!(
        "- targets: N−2 idle `perfvisor-loadgen --cpu 0`, t{CPU_TARGET} `--cpu {BURN}`, \
         t{MEM_TARGET} `--hold-mib {HOLD_MIB}`; the same targets for every monitor, monitors \
         one after another"
    );
    println!(
        "- CPU resolution: one clock tick (1/{} s) per window, i.e. {:.3} % of one core over {} s",
        clk_tck(),
        100.0 / clk_tck() / opts.seconds as f64,
        opts.seconds
    );
    println!(
        "- CPU: utime+stime (+cutime+cstime) of the monitor's process tree over the window's \
         wall time; the harness's own sampling is not counted. Truth: the harness's reading \
         of the targets' /proc over the same window (CPU) or its mean VmRSS (memory)."
    );
}

// ---------------------------------------------------------------------------------------
// Soak
// ---------------------------------------------------------------------------------------

/// A plain HTTP/1.0 POST of a JSON body with a bearer token.
fn http_post(
    port: u16,
    path: &str,
    token: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// Least-squares slope of `(x, y)` points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

/// perfvisor alone, for `minutes`, watching N targets plus `push_series` synthetic series
/// pushed every second: every 30 s its RSS, queues and counters; at the end the RSS slope
/// (whole run and second half) and the sample accounting (collected = stored + counted
/// drops, the stored count read back from the file).
fn soak(minutes: u64, opts: &Opts) -> Result<(), String> {
    let n = *opts.sizes.first().unwrap_or(&1000);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tag = format!("pvsoak{}", std::process::id());
    let mut targets = Targets::start(n, &tag, Shape::Single)?;
    let token = format!("soak-{}", std::process::id());
    let mut mon = PerfvisorMon {
        bin: PERFVISOR.to_string(),
        tag: "perfvisor",
        proc: None,
        port: free_port()?,
        log: dir.path().join("perfvisor.log"),
        token: Some(token.clone()),
    };
    let ctx = Ctx {
        n,
        pids: &targets.pids,
        cpu_pid: targets.pids[CPU_TARGET],
        mem_pid: targets.pids[MEM_TARGET],
        tag: &tag,
        dir: dir.path().to_path_buf(),
    };
    mon.start(&ctx)?;
    let port = mon.port;
    let pid = mon.proc().pid();
    let status = || -> Result<serde_json::Value, String> {
        let (code, body) = http_get(port, "/api/v1/status", Duration::from_secs(10))?;
        if code != 200 {
            return Err(format!("status {code}"));
        }
        serde_json::from_str(&body).map_err(|e| e.to_string())
    };
    println!(
        "soak: {n} watched processes + {} pushed series for {minutes} min, 1 s interval; \
         perfvisor pid {pid}",
        opts.push_series
    );
    // Synthetic series: K metrics of the host application, one sample each per second.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pusher = {
        let (stop, pushed, token, k) = (
            stop.clone(),
            pushed.clone(),
            token.clone(),
            opts.push_series,
        );
        std::thread::spawn(move || {
            let mut next = Instant::now();
            let mut tick = 0u64;
            while k > 0 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for chunk in (0..k).collect::<Vec<_>>().chunks(5000) {
                    let body: Vec<String> = chunk
                        .iter()
                        .map(|i| {
                            format!(
                                r#"{{"metric":"soak.synthetic.s{i}","value":{}}}"#,
                                (tick + *i as u64) % 97
                            )
                        })
                        .collect();
                    if let Ok((202, answer)) = http_post(
                        port,
                        "/api/v1/metrics",
                        &token,
                        &format!("[{}]", body.join(",")),
                        Duration::from_secs(10),
                    ) {
                        let v: serde_json::Value =
                            serde_json::from_str(&answer).unwrap_or_default();
                        pushed.fetch_add(
                            v["accepted"].as_u64().unwrap_or(0),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                }
                tick += 1;
                next += TICK;
                sleep_until(next);
            }
        })
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let mut rss = Vec::new();
    let mut cpu0 = read_pstat(pid).map_or(0, |p| p.ticks);
    let mut t0 = Instant::now();
    println!(
        "| min | RSS MiB | CPU % (last 30 s) | storage queue | buffered | collected | stored | \
         dropped | pushed | compaction backlog (series windows) | compacted |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    while Instant::now() < end {
        sleep_until((Instant::now() + Duration::from_secs(30)).min(end));
        if !mon.proc().running() {
            return Err("perfvisor exited during the soak".into());
        }
        let kib = status_kib(pid, "VmRSS:").unwrap_or(0);
        let ticks = read_pstat(pid).map_or(0, |p| p.ticks);
        let cpu = (ticks - cpu0) as f64 / clk_tck() / t0.elapsed().as_secs_f64() * 100.0;
        (cpu0, t0) = (ticks, Instant::now());
        let at = started.elapsed().as_secs_f64() / 60.0;
        rss.push((at, kib as f64 / 1024.0));
        let v = status()?;
        println!(
            "| {at:.1} | {:.1} | {cpu:.2} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kib as f64 / 1024.0,
            v["storage"]["backlog"],
            v["storage"]["buffered_samples"],
            v["samples_collected"],
            v["storage"]["stored_samples"],
            v["storage"]["dropped_samples"],
            pushed.load(std::sync::atomic::Ordering::Relaxed),
            v["storage"]["compaction_backlog"],
            v["storage"]["compacted_samples"],
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = pusher.join();
    // Stop the sources: the targets go (their watchers retire), then only host and self
    // metrics remain (a few dozen a second).
    drop(std::mem::take(&mut targets.procs));
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(250),
        "the watchers to retire",
        || {
            Ok(status()?["watchers"]
                .as_array()
                .is_some_and(|w| w.is_empty()))
        },
    )?;
    let last = status()?;
    let at_status = Instant::now();
    let collected = last["samples_collected"].as_u64().unwrap_or(0);
    let dropped = last["storage"]["dropped_samples"].as_u64().unwrap_or(0);
    mon.proc().stop(libc::SIGTERM, Duration::from_secs(60));
    let tail_secs = at_status.elapsed().as_secs_f64();
    let db = dir.path().join("perfvisor.db");
    let stored = perfvisor::StorageReader::open(&db)
        .and_then(|r| r.sample_count())
        .map_err(|e| e.to_string())?;
    let half: Vec<(f64, f64)> = rss
        .iter()
        .copied()
        .filter(|p| p.0 >= minutes as f64 / 2.0)
        .collect();
    println!();
    println!(
        "RSS slope: whole run {:.3} MiB/min, second half {:.3} MiB/min (first {:.1} MiB, last {:.1} MiB)",
        slope(&rss),
        slope(&half),
        rss.first().map_or(0.0, |p| p.1),
        rss.last().map_or(0.0, |p| p.1)
    );
    println!(
        "accounting: collected {collected} when the sources stopped, counted drops {dropped}, \
         stored in the file {stored} (the file may hold up to {tail_secs:.1} s more of host and \
         self metrics collected after that status); collected − dropped − stored = {}",
        collected as i64 - dropped as i64 - stored as i64
    );
    Ok(())
}
