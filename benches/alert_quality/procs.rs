//! The harness's processes beyond [`Proc`]: stragglers killed by pid, /proc readings, and
//! where the binaries are.

use super::*;

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// Kills, by pid, what this run's managed daemons left behind (perfvisor leaves them running
/// on purpose when it is killed): the processes whose command line names `marker` (this run's
/// directory) and that are one of ours, the load generator or one of our start scripts
/// under a shell, so that a `tail -f` of a log in that directory is left alone.
pub(crate) fn kill_stragglers(marker: &str, loadgen: &Path) -> usize {
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

pub(crate) fn fd_count(pid: u32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

pub(crate) fn rss_bytes(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

pub(crate) fn binary(var: &str, built: &str, build_hint: &str) -> Result<PathBuf, String> {
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
