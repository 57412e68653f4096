//! What the harness reads and runs beside the monitors: short commands with a timeout,
//! polling, PATH lookup, the descriptor limit, and /proc (process stat and status, host CPU,
//! a monitor's whole process tree).

use super::*;

/// Runs a short command with its output in `out` (a file: no pipe to fill up); kills it
/// after `timeout`.
pub(crate) fn run_capture(
    cmd: &mut Command,
    out: &Path,
    timeout: Duration,
) -> Result<String, String> {
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
pub(crate) fn wait_until(
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

pub(crate) fn sleep_until(deadline: Instant) {
    if let Some(d) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

pub(crate) fn raise_nofile() {
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

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------

pub(crate) fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

pub(crate) struct PStat {
    pub(crate) ppid: u32,
    /// utime + stime, clock ticks.
    pub(crate) ticks: u64,
    /// cutime + cstime: reaped children, clock ticks.
    pub(crate) child_ticks: u64,
}

/// Parses /proc/PID/stat; fields are counted after the `)` closing the command name (which
/// may itself hold spaces and parentheses): field k (1-based, man proc) is `rest[k - 3]`.
pub(crate) fn read_pstat(pid: u32) -> Option<PStat> {
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
pub(crate) fn status_kib(pid: u32, key: &str) -> Option<u64> {
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
pub(crate) fn host_cpu() -> Option<(u64, u64)> {
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
pub(crate) struct Tree {
    pub(crate) root: u32,
    pub(crate) pids: Vec<u32>,
    pub(crate) peak_kib: u64,
}

impl Tree {
    pub(crate) fn new(root: u32) -> Tree {
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
    pub(crate) fn rescan(&mut self) {
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
    pub(crate) fn sample(&mut self) -> (u64, u64) {
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
