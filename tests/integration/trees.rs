//! Whole daemons: a daemon that works in several processes is measured over its whole tree.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use perfvisor::metric_names as m;
use perfvisor::{BottleneckKind, DaemonId, DaemonSpec, Labels, SeriesKey, Source, StorageReader};

use crate::support::{self, wait_for, ChildGuard, RunGuard};

#[path = "../../actors/src/watcher/testkit.rs"]
mod testkit;
use testkit::Group;

/// Fields 4 (ppid), 14-17 (utime, stime, cutime, cstime) of `/proc/PID/stat`, read here
/// independently of the probe.
fn stat_of(pid: u32) -> Option<(u32, [f64; 4])> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((
        f.get(1)?.parse().ok()?,
        [
            ticks(11)? / hz,
            ticks(12)? / hz,
            ticks(13)? / hz,
            ticks(14)? / hz,
        ],
    ))
}

/// The tree under `root`, found by scanning every process's parent (not the way the probe
/// finds it).
fn tree_of(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat_of(pid)?.0)))
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// CPU seconds of the tree by /proc: every process's own time plus the root's reaped
/// children (the children here reap nothing).
fn tree_cpu(root: u32) -> f64 {
    tree_of(root)
        .iter()
        .filter_map(|pid| stat_of(*pid))
        .map(|(_, [u, s, cu, cs])| u + s + cu + cs)
        .sum()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A parent with three workers each burning 0.3 of a core and holding 50 MiB is reported as
/// the tree: CPU within ±0.05 core and RSS within 2 % of the sums read from /proc; a worker
/// that exits leaves its CPU time in the total (the counter never goes back).
#[tokio::test]
async fn multi_process_daemon_is_measured_whole() {
    let _cores = support::cpu_heavy().await;
    let lg = env!("CARGO_BIN_EXE_perfvisor-loadgen");
    let worker = format!("{lg} --cpu 0.3 --hold-mib 50");
    let group = Group::sh(&format!("{worker} & {worker} & {worker} & wait"));
    let root = group.pid();
    wait_for(
        Duration::from_secs(20),
        "three workers resident",
        || async {
            let tree = tree_of(root);
            tree.len() == 4
                && tree[1..]
                    .iter()
                    .all(|pid| support::rss_of(*pid) > 50 * 1024 * 1024)
        },
    )
    .await;

    let t = support::start(|b| b.probe_interval(Duration::from_millis(200)));
    let spec = DaemonSpec::new("workers", root);
    let labels = spec.series_labels();
    t.pv.daemon_started(spec).await.unwrap();
    let key = |metric: &'static str| {
        SeriesKey::new(
            Source::Daemon(DaemonId::new("workers")),
            metric,
            labels.clone(),
        )
    };

    // Truth over a window of about 4 s, against the CPU counter over the same window.
    wait_for(Duration::from_secs(10), "first readings", || async {
        t.pv.report("workers")
            .await
            .unwrap()
            .and_then(|r| r.metric(m::PROCESS_CPU_UTILIZATION).map(|s| s.count >= 2))
            .unwrap_or(false)
    })
    .await;
    let (t0, c0, w0) = (now_ms(), tree_cpu(root), Instant::now());
    wait_for(Duration::from_secs(20), "4 s of readings", || async {
        w0.elapsed() >= Duration::from_secs(4)
    })
    .await;
    let (t1, c1, w1) = (now_ms(), tree_cpu(root), w0.elapsed().as_secs_f64());
    let truth_cpu = (c1 - c0) / w1;
    let truth_rss: u64 = tree_of(root).iter().map(|p| support::rss_of(*p)).sum();
    t.pv.flush().await.unwrap();
    let reader = t.pv.reader().unwrap();
    let cpu = reader
        .query_range(&key(m::PROCESS_CPU_TIME), t0, t1 + 1)
        .unwrap();
    assert!(cpu.len() >= 10, "{cpu:?}");
    let ((ta, va), (tb, vb)) = (cpu[0], cpu[cpu.len() - 1]);
    let reported_cpu = (vb - va) / ((tb - ta) as f64 / 1000.0);
    println!("tree CPU: reported {reported_cpu:.3} core, /proc {truth_cpu:.3} core");
    assert!(
        (reported_cpu - truth_cpu).abs() <= 0.05,
        "reported {reported_cpu:.3} core vs /proc {truth_cpu:.3}"
    );
    assert!(
        truth_cpu > 0.5,
        "three workers at 0.3 burn more than half a core ({truth_cpu:.3})"
    );
    let report = t.pv.report("workers").await.unwrap().unwrap();
    let rss = report.metric(m::PROCESS_MEMORY_RSS).unwrap().last;
    println!("tree RSS: reported {rss}, /proc {truth_rss}");
    assert!(
        (rss - truth_rss as f64).abs() / truth_rss as f64 <= 0.02,
        "reported RSS {rss} vs /proc {truth_rss}"
    );
    assert!(rss > 150.0 * 1024.0 * 1024.0, "{rss}");
    assert_eq!(
        report.metric(m::PROCESS_TREE_COUNT).map(|s| s.last),
        Some(4.0)
    );
    let main_rss = report.metric(m::PROCESS_MAIN_MEMORY_RSS).unwrap().last;
    assert!(main_rss < 20.0 * 1024.0 * 1024.0, "sh alone: {main_rss}");

    // One worker exits; sh's `wait` reaps it into its cutime.
    let victim = tree_of(root)[1];
    let before_kill = now_ms();
    // SAFETY: plain syscall; the victim is a child of our shell, not reaped until it dies.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    wait_for(Duration::from_secs(10), "three processes left", || async {
        t.pv.report("workers")
            .await
            .unwrap()
            .and_then(|r| r.metric(m::PROCESS_TREE_COUNT).map(|s| s.last == 3.0))
            .unwrap_or(false)
    })
    .await;
    let truth_after = tree_cpu(root);
    wait_for(Duration::from_secs(5), "a probe after the reap", || async {
        now_ms() > before_kill + 1000
    })
    .await;
    t.pv.flush().await.unwrap();
    let cpu = reader
        .query_range(&key(m::PROCESS_CPU_TIME), t0, now_ms() + 1)
        .unwrap();
    assert!(
        cpu.windows(2).all(|w| w[1].1 >= w[0].1),
        "the CPU counter went back: {cpu:?}"
    );
    let last = cpu[cpu.len() - 1].1;
    assert!(
        last >= truth_after - 0.05,
        "counter {last:.2} s lost the exited worker's time (/proc {truth_after:.2} s)"
    );
    t.pv.shutdown().await.unwrap();
    drop(group);
}

/// A shell wrapper whose only child burns 95 % of a core is judged CPU-bound: the judgement
/// reads the tree, not the idle wrapper.
#[tokio::test]
async fn wrapper_with_busy_child_is_cpu_bound() {
    let _cores = support::cpu_heavy().await;
    let t = support::start(|b| {
        b.probe_interval(Duration::from_millis(100))
            .judge_interval(Duration::from_millis(300))
            .analysis_window(100)
            .judge_config(support::fast_judgement())
    });
    let lg = env!("CARGO_BIN_EXE_perfvisor-loadgen");
    let group = Group::sh(&format!("{lg} --cpu 0.95 & wait"));
    t.pv.daemon_started(DaemonSpec::new("wrapper", group.pid()))
        .await
        .unwrap();
    let started = Instant::now();
    let report = loop {
        let report = t.pv.report("wrapper").await.unwrap();
        if let Some(r) = report.filter(|r| {
            r.bottlenecks
                .iter()
                .any(|b| b.kind == BottleneckKind::CpuBound)
        }) {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no CPU-bound verdict within 30 s: {:#?}",
            t.pv.report("wrapper").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let main = report.metric(m::PROCESS_MAIN_CPU_UTILIZATION).unwrap();
    assert!(main.mean < 0.05, "the wrapper itself idles: {main:?}");
    t.pv.shutdown().await.unwrap();
    drop(group);
}

/// The v2 cgroup directory of `pid`, from `/proc/PID/cgroup` and the cgroup2 mount.
fn v2_cgroup_dir(pid: u32) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts
        .lines()
        .find(|l| l.contains(" - cgroup2 "))?
        .split(' ')
        .nth(4)?;
    Some(std::path::Path::new(mount).join(path.trim_start_matches('/')))
}

/// Whether this machine can run the cgroup test: root and a cgroup2 mount.
fn cgroups_usable() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: perfvisor cannot create cgroups".into());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !mounts.contains(" - cgroup2 ") {
        return Err("no cgroup2 hierarchy mounted".into());
    }
    Ok(())
}

/// Whether a test (or part of one) named `what` that needs `ready` runs: when it cannot, the
/// reason is printed and it is skipped, unless PERFVISOR_REQUIRE_EXTERNAL=1 requires it.
fn may_run(ready: Result<(), String>, what: &str) -> bool {
    match ready {
        Ok(()) => true,
        Err(reason) => {
            assert!(!support::external_required(), "{what} cannot run: {reason}");
            eprintln!("{what} SKIPPED: {reason}");
            false
        }
    }
}

/// The unprivileged user the tests run perfvisor as.
const NOBODY: u32 = 65534;

/// A temporary directory owned by [`NOBODY`], for a perfvisor run as that user.
fn nobodys_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    dir
}

/// Kills by pid every process left in a cgroup when the test ends, however it ends (the
/// setsid'ed child is in no process group the other guards reach).
struct CgroupGuard(Option<std::path::PathBuf>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        let Some(dir) = &self.0 else { return };
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: plain syscall on a pid listed in the test daemon's cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A managed daemon gets its own cgroup and its `process.*` totals are read from it: CPU
/// matches both the cgroup's `cpu.stat` and the sum over its processes from /proc (±0.05
/// core), memory the cgroup's file (5 %) and the RSS summed from /proc (15 %), the process
/// count its `cgroup.procs`, with no `cgroup.*` twin of these series; and `stop` kills every process of
/// the cgroup, a child that called setsid (out of the daemon's process group) included, and
/// removes the cgroup. Needs root and cgroup v2 (skipped otherwise, unless
/// PERFVISOR_REQUIRE_EXTERNAL=1).
#[tokio::test]
async fn managed_daemon_cgroup_matches_the_tree_and_stop_empties_it() {
    if !may_run(cgroups_usable(), "the cgroup test") {
        return;
    }
    let _cores = support::cpu_heavy().await;
    let lg = env!("CARGO_BIN_EXE_perfvisor-loadgen");
    let mut run = support::Instance::new();
    run.write_config(
        "probe_interval = \"200ms\"",
        &format!(
            r#"
[[daemon]]
name = "cg"
command = ["/bin/sh", "-c", "{lg} --cpu 0.3 --hold-mib 50 & {lg} --cpu 0.3 --hold-mib 50 & setsid sleep 1000 & wait"]
stop_timeout = "2s"
"#
        ),
    );
    run.start();
    let db = run.db.clone();
    let cli = |args: &[&str]| run.cli(args);
    let started = Instant::now();
    let pid = loop {
        let out = cli(&["status", "--json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let pid = v["managed"][0]["pid"].as_u64().unwrap_or(0) as u32;
            if pid != 0 && tree_of(pid).len() == 4 {
                break pid;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "daemon not up: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let cgroup = v2_cgroup_dir(pid).expect("the daemon's cgroup");
    let _cleanup = CgroupGuard(Some(cgroup.clone()));
    let name = cgroup.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("perfvisor-cg."), "{}", cgroup.display());
    let in_cgroup = || -> Vec<u32> {
        std::fs::read_to_string(cgroup.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let members = in_cgroup();
    assert_eq!(members.len(), 4, "sh, two workers, sleep: {members:?}");
    let sleeper = *tree_of(pid)
        .iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .expect("the sleep");
    // SAFETY: plain syscalls reading ids of a live process.
    let (sid, pgid) = unsafe { (libc::getsid(sleeper as i32), libc::getpgid(pid as i32)) };
    assert_eq!(
        sid, sleeper as i32,
        "setsid made the sleep a session leader"
    );
    assert_ne!(sid, pgid, "the sleep left the daemon's process group");

    // The daemon's process.* totals come from its cgroup: they match the cgroup's files and
    // the sums over its processes read from /proc here, over the same seconds.
    let key = |metric: &'static str| {
        SeriesKey::new(
            Source::Daemon(DaemonId::new("cg")),
            metric,
            Labels::default(),
        )
    };
    let samples = |metric: &'static str| {
        StorageReader::open(&db)
            .and_then(|r| r.query_range(&key(metric), 0, i64::MAX))
            .unwrap_or_default()
    };
    let files = perfvisor_actors::watcher::cgroup::DaemonCgroup::of_pid(pid)
        .expect("the test sees the daemon's cgroup");
    let read_number = |dir: &Option<std::path::PathBuf>, name: &str, key: Option<&str>| {
        let text = std::fs::read_to_string(dir.as_ref()?.join(name)).ok()?;
        match key {
            None => text.trim().parse::<f64>().ok(),
            Some(k) => text.lines().find_map(|l| {
                let (name, v) = l.split_once(' ')?;
                (name == k).then(|| v.trim().parse::<f64>().ok()).flatten()
            }),
        }
    };
    let cg_cpu = || read_number(&files.v2, "cpu.stat", Some("usage_usec")).map(|us| us / 1e6);
    // Wait for the first stored CPU samples, then read both truths at two moments.
    let started = Instant::now();
    while samples(m::PROCESS_CPU_TIME).len() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no CPU samples stored"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let truth = || (now_ms(), tree_cpu(pid), cg_cpu().expect("cpu.stat"));
    let (t1, proc1, cg1) = truth();
    // The measurement window: a CPU rate of real processes needs real time to pass (6 s of
    // 0.6 core is 3.6 s of CPU, far above the ±0.05 core tolerance's resolution).
    std::thread::sleep(Duration::from_secs(6));
    let (t2, proc2, cg2) = truth();
    // Stored samples are flushed in batches: wait until one after t2 is stored.
    let started = Instant::now();
    let stored = loop {
        let s = samples(m::PROCESS_CPU_TIME);
        if s.last().is_some_and(|(t, _)| *t >= t2) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no CPU sample after {t2} stored"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let nearest = |t: i64| {
        *stored
            .iter()
            .min_by_key(|(u, _)| (u - t).abs())
            .expect("samples")
    };
    let ((sa, va), (sb, vb)) = (nearest(t1), nearest(t2));
    let stored_rate = (vb - va) / ((sb - sa) as f64 / 1000.0);
    let secs = (t2 - t1) as f64 / 1000.0;
    let (proc_rate, cg_rate) = ((proc2 - proc1) / secs, (cg2 - cg1) / secs);
    println!(
        "CPU over {secs:.1} s: process.cpu {stored_rate:.3} core, cgroup file {cg_rate:.3}, \
         /proc sum {proc_rate:.3}"
    );
    assert!(
        (stored_rate - cg_rate).abs() <= 0.05,
        "process.cpu {stored_rate:.3} vs cpu.stat {cg_rate:.3}"
    );
    assert!(
        (stored_rate - proc_rate).abs() <= 0.05,
        "process.cpu {stored_rate:.3} vs /proc {proc_rate:.3}"
    );
    assert!(stored_rate > 0.4, "two workers at 0.3: {stored_rate:.3}");
    // The counter is the cgroup's usage itself: it differs from the file read at t2 by what
    // the daemon burned between that read and the probe's (at most about 0.6 core).
    let apart = (sb - t2).abs() as f64 / 1000.0;
    assert!(
        (vb - cg2).abs() <= 0.7 * apart + 0.02,
        "stored {vb} at {sb} vs cpu.stat {cg2} at {t2}"
    );
    // Memory: the charged memory (memory.current, or v1 memory.usage_in_bytes), close to
    // the RSS summed over /proc (two 50 MiB workers dominate).
    let rss_truth: f64 = tree_of(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/statm")).ok())
        .filter_map(|t| t.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum::<f64>()
        * 4096.0;
    let charged = read_number(&files.v2, "memory.current", None)
        .or_else(|| read_number(&files.memory_v1, "memory.usage_in_bytes", None))
        .expect("a memory file");
    let memory = samples(m::PROCESS_MEMORY_RSS)
        .last()
        .map(|(_, v)| *v)
        .unwrap();
    println!("memory: process.memory {memory}, cgroup file {charged}, /proc RSS {rss_truth}");
    assert!(
        (memory - charged).abs() / charged <= 0.05,
        "process.memory {memory} vs cgroup {charged}"
    );
    assert!(
        (memory - rss_truth).abs() / rss_truth <= 0.15,
        "process.memory {memory} vs /proc RSS {rss_truth}"
    );
    // Processes: cgroup.procs, the setsid'ed sleep included; one series, no cgroup.* twin.
    let procs = samples(m::PROCESS_TREE_COUNT).last().map(|(_, v)| *v);
    assert_eq!(procs, Some(4.0));
    assert!(samples(m::CGROUP_CPU_TIME).is_empty());
    assert!(samples(m::CGROUP_MEMORY).is_empty());
    assert!(samples(m::CGROUP_PROCESSES).is_empty());

    // Stop: every process of the cgroup is gone, the setsid'ed sleep too, and so is the cgroup.
    let out = cli(&["stop", "cg"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    while members
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        || cgroup.exists()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "left after stop: {:?}, cgroup exists: {}",
            members
                .iter()
                .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
                .collect::<Vec<_>>(),
            cgroup.exists()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its v1 directories (hybrid hosts) go too, once the leader is reaped.
    let started = Instant::now();
    while !leftover_dirs(run.pid(), &name).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "cgroup directories left: {:?}",
            leftover_dirs(run.pid(), &name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The v1 directories named `name` under the memory and pids cgroups of process `pv`, where
/// perfvisor makes them on hybrid hosts, that still exist.
fn leftover_dirs(pv: u32, name: &str) -> Vec<std::path::PathBuf> {
    use perfvisor_actors::watcher::cgroup::{Membership, Mounts};
    let ours = Membership::of(pv).unwrap_or_default();
    let mounts = Mounts::host();
    ours.v1
        .iter()
        .filter(|(c, _)| c.iter().any(|c| c == "memory" || c == "pids"))
        .filter_map(|(c, path)| {
            let mount = mounts.v1.iter().find(|(mc, _)| mc == c)?.1.clone();
            Some(mount.join(path.trim_start_matches('/')).join(name))
        })
        .filter(|d| d.exists())
        .collect()
}

/// Attaching refuses a stale pidfile (its pid now names a process started after the file was
/// written) unless the declared program matches it, and a pidfile whose process is not the
/// declared program; it refuses an ambiguous match (two separate processes), naming what it
/// found; a match that is one process and its own matching child is no ambiguity;
/// `pick = "oldest"` takes the first started.
#[test]
fn attach_refuses_stale_pidfiles_and_ambiguous_matches() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let address = format!("127.0.0.1:{port}");
    let marker = format!("{}", 7_000_000 + std::process::id());
    let sleeper = |arg: &str| {
        ChildGuard(
            Command::new("sleep")
                .arg(arg)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    // The pidfile names a live process, but was written a minute before it started.
    let reused = sleeper("1000");
    let pidfile = dir.path().join("old.pid");
    std::fs::write(&pidfile, reused.pid().to_string()).unwrap();
    let a_minute_ago = SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&pidfile)
        .unwrap()
        .set_modified(a_minute_ago)
        .unwrap();
    let first = sleeper(&format!("{marker}1"));
    let second = sleeper(&format!("{marker}1"));
    // One shell and its own child both match: one daemon.
    let nested = Group::sh(&format!("sh -c 'sleep {marker}2; :'; :"));
    wait_for_blocking(Duration::from_secs(10), "the nested sleep", || {
        tree_of(nested.pid()).len() == 3
    });
    let db = dir.path().join("pv.db");
    let config = format!(
        r#"{head}
[[attach]]
name = "stale"
pidfile = "{pidfile}"

[[attach]]
name = "vouched"
pidfile = "{pidfile}"
match_cmdline = "^sleep 1000$"

[[attach]]
name = "mismatch"
pidfile = "{pidfile}"
match_exe = "^nginx$"

[[attach]]
name = "twins"
match_cmdline = "^sleep {marker}1$"

[[attach]]
name = "elder"
match_cmdline = "^sleep {marker}1$"
pick = "oldest"

[[attach]]
name = "nested"
match_cmdline = "sleep {marker}2"
"#,
        head = supervisor_table(&db, &address, ""),
        pidfile = pidfile.display(),
    );
    let path = dir.path().join("perfvisor.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
        .args(["run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _run = RunGuard(ChildGuard(child));
    let attached = || -> Vec<(String, u64)> {
        let out = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
            .args([
                "status",
                "--json",
                "--address",
                &address,
                "--token",
                "t0ken",
            ])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["daemons"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|d| Some((d["daemon"].as_str()?.to_owned(), d["pid"].as_u64()?)))
            .collect()
    };
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for_blocking(
        Duration::from_secs(30),
        "elder and nested attached, refusals logged",
        || {
            let a = attached();
            a.iter().any(|(n, _)| n == "elder")
                && a.iter().any(|(n, _)| n == "nested")
                && logged().contains("twins")
                && logged().contains("stale")
        },
    );
    let a = attached();
    assert!(
        a.iter()
            .all(|(n, _)| n != "stale" && n != "twins" && n != "mismatch"),
        "refused entries attached: {a:?}"
    );
    assert!(
        a.contains(&("elder".to_owned(), u64::from(first.pid()))),
        "{a:?}"
    );
    assert!(
        a.contains(&("nested".to_owned(), u64::from(nested.pid()))),
        "{a:?}"
    );
    assert!(
        a.contains(&("vouched".to_owned(), u64::from(reused.pid()))),
        "{a:?}"
    );
    let text = logged();
    let mismatch = text
        .lines()
        .find(|l| l.contains("daemon=mismatch"))
        .unwrap_or_default();
    assert!(
        mismatch.contains("\"sleep\"") && mismatch.contains("does not match match_exe"),
        "{text}"
    );
    let stale = text
        .lines()
        .find(|l| l.contains("daemon=stale"))
        .unwrap_or_default();
    assert!(
        stale.contains(&reused.pid().to_string())
            && stale.contains("after the file was last written"),
        "{text}"
    );
    let twins = text
        .lines()
        .find(|l| l.contains("separate processes"))
        .unwrap_or_default();
    assert!(
        twins.contains(&format!("pid {}", first.pid()))
            && twins.contains(&format!("pid {}", second.pid()))
            && twins.contains("pick = \"oldest\""),
        "{text}"
    );
    assert_eq!(
        text.matches("separate processes").count(),
        1,
        "said once: {text}"
    );
}

/// The `[supervisor]` table of a test's `perfvisor run`: database `db`, 200 ms probes,
/// listening on `address` with the token `t0ken`, then the lines of `extra`.
fn supervisor_table(db: &std::path::Path, address: &str, extra: &str) -> String {
    format!(
        "\n[supervisor]\ndatabase = \"{}\"\nprobe_interval = \"200ms\"\nlisten = \"{address}\"\n\
         token = \"t0ken\"\n{extra}\n",
        db.display()
    )
}

/// A `[[daemon]]` table: `name`, a shell waiting on a `sleep 1000` child, stopped within 1 s.
fn sleeping_daemon(name: &str) -> String {
    format!(
        "[[daemon]]\nname = \"{name}\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 1000 & wait\"]\n\
         stop_timeout = \"1s\"\n"
    )
}

/// The pid of daemon `name` in a `status --json` answer.
fn pid_in_status(status: &serde_json::Value, name: &str) -> Option<u64> {
    status["daemons"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["daemon"] == name)
        .and_then(|d| d["pid"].as_u64())
}

/// Polls `cond` every 20 ms until it holds, panicking after `timeout`.
fn wait_for_blocking(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `perfvisor run` on `config` (written to `dir`), as `uid` when given, its stderr to
/// `dir/stderr.log`.
fn run_binary(dir: &std::path::Path, config: &str, uid: Option<u32>) -> RunGuard {
    run_binary_in(dir, config, uid, None)
}

/// [`run_binary`], the process first moving itself (as root) into the v2 cgroup `cgroup`
/// when given, then dropping to `uid`: how systemd starts a `Delegate=yes` service.
fn run_binary_in(
    dir: &std::path::Path,
    config: &str,
    uid: Option<u32>,
    cgroup: Option<&std::path::Path>,
) -> RunGuard {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let path = dir.join("perfvisor.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perfvisor"));
    cmd.args(["run", "--config"])
        .arg(&path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    match (cgroup, uid) {
        (Some(cgroup), uid) => {
            let procs = std::fs::OpenOptions::new()
                .write(true)
                .open(cgroup.join("cgroup.procs"))
                .unwrap();
            let uid = uid.unwrap_or(0);
            // SAFETY: runs in the child between fork and exec and makes only async-signal-safe
            // syscalls (write, setgroups, setgid, setuid) on values made before the fork;
            // `procs` stays open in the parent until `spawn` returns.
            unsafe {
                let fd = procs.as_raw_fd();
                cmd.pre_exec(move || {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                        || libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(uid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            return RunGuard(ChildGuard(cmd.spawn().unwrap()));
        }
        (None, Some(uid)) => {
            cmd.uid(uid).gid(uid);
        }
        (None, None) => {}
    }
    RunGuard(ChildGuard(cmd.spawn().unwrap()))
}

/// The JSON of `perfvisor ARGS --json` against `address`, `None` while it fails.
fn cli_json(address: &str, args: &[&str]) -> Option<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
        .args(args)
        .args(["--json", "--address", address, "--token", "t0ken"])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// The human text of `perfvisor ARGS` against `address`.
fn cli_text(address: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
        .args(args)
        .args(["--address", address, "--token", "t0ken"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Removes a cgroup directory made for a test, its children first, once they are empty.
struct RemoveCgroup(std::path::PathBuf);

impl Drop for RemoveCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.0.exists() && Instant::now() < deadline {
            for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
                if entry.path().is_dir() {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
            let _ = std::fs::remove_dir(&self.0);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A managed parent with three children (one busy, one holding 80 MiB, one asleep): the
/// report, through the API and `perfvisor report`, lists the children by CPU and by memory
/// with their pids, command names, CPU and RSS close to /proc's; `status` says where the
/// figures come from. As root on a host with cgroup v2, the daemon's cgroup goes under the
/// configured `cgroup_parent` and `status` names the cgroup as the source (CPU from v2,
/// memory from v2 or, on hybrid hosts, v1); otherwise the process tree.
#[tokio::test]
async fn top_children_in_report_and_sources_in_status() {
    let _cores = support::cpu_heavy().await;
    let cgroups = cgroups_usable();
    may_run(cgroups.clone(), "the cgroup part");
    let dir = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", support::free_port());
    let lg = env!("CARGO_BIN_EXE_perfvisor-loadgen");
    let slice = format!("perfvisor-test-{}.slice", std::process::id());
    let mount = perfvisor_actors::watcher::cgroup::Mounts::host().v2.clone();
    let _slice_cleanup = match (&cgroups, &mount) {
        (Ok(()), Some(m)) => Some(RemoveCgroup(m.join(&slice))),
        _ => None,
    };
    let config = format!(
        r#"{head}
[api]
anonymous_loopback_reads = true

[[daemon]]
name = "family"
command = ["/bin/sh", "-c", "{lg} --cpu 0.4 --hold-mib 8 & {lg} --cpu 0.02 --hold-mib 80 & sleep 1000 & wait"]
stop_timeout = "2s"
"#,
        head = supervisor_table(
            &dir.path().join("pv.db"),
            &address,
            &if cgroups.is_ok() {
                format!("cgroup_parent = \"{slice}\"")
            } else {
                String::new()
            },
        ),
    );
    let _run = run_binary(dir.path(), &config, None);
    let report = {
        let started = Instant::now();
        loop {
            let r = cli_json(&address, &["report", "family"]);
            let ready = r.as_ref().is_some_and(|r| {
                // Steady state: the 80 MiB worker burns CPU while it touches its memory.
                r["children"]["descendants"] == 3
                    && r["children"]["by_cpu"][0]["cpu_ratio"].as_f64() > Some(0.1)
                    && r["children"]["by_cpu"][0]["pid"] != r["children"]["by_memory"][0]["pid"]
                    && r["children"]["by_memory"][0]["rss_bytes"].as_u64() > Some(80 * 1024 * 1024)
            });
            if ready {
                break r.unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no children in the report within 60 s: {r:#?}\n{}",
                std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let children = &report["children"];
    println!("children: {children:#}");
    let busy = &children["by_cpu"][0];
    let big = &children["by_memory"][0];
    let pid_of = |c: &serde_json::Value| c["pid"].as_u64().unwrap() as u32;
    assert_ne!(pid_of(busy), pid_of(big), "{children:#}");
    for c in [busy, big] {
        assert_eq!(c["command"], "perfvisor-loadg", "comm is 15 bytes: {c}");
        let truth = support::rss_of(pid_of(c)) as f64;
        let rss = c["rss_bytes"].as_f64().unwrap();
        assert!(
            (rss - truth).abs() / truth <= 0.05,
            "rss {rss} vs /proc {truth}"
        );
    }
    let busy_cpu = busy["cpu_ratio"].as_f64().unwrap();
    assert!(busy_cpu < 0.8, "one worker at 0.4: {busy_cpu}");
    let lists = |key: &str| -> Vec<String> {
        children[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["command"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(lists("by_cpu").len(), 3);
    assert!(lists("by_memory").contains(&"sleep".to_owned()));
    // The same through the HTTP API, and in `perfvisor report`'s words.
    let api: serde_json::Value = reqwest_like_get(&address, "/api/v1/daemons/family/report");
    assert_eq!(api["children"]["descendants"], 3, "{api:#}");
    let text = cli_text(&address, &["report", "family"]);
    assert!(
        text.contains("Top children by CPU (3 of 3 descendants):")
            && text.contains("Top children by memory")
            && text.contains(&pid_of(busy).to_string())
            && text.contains("perfvisor-loadg"),
        "{text}"
    );

    dashboard_lists_children(&address, pid_of(busy));

    // Where the figures come from.
    let status = cli_json(&address, &["status"]).unwrap();
    let sources = &status["status"]["watchers"][0]["sources"];
    let text = cli_text(&address, &["status"]);
    println!("{text}");
    assert!(text.contains("FIGURES FROM"), "{text}");
    match (&cgroups, &mount) {
        (Ok(()), Some(mount)) => {
            assert_eq!(sources["cpu"], "cgroup v2", "{sources}");
            assert!(
                sources["memory"] == "cgroup v2" || sources["memory"] == "cgroup v1 memory",
                "{sources}"
            );
            let cgroup = sources["cgroup"].as_str().unwrap_or_default();
            assert!(
                cgroup.starts_with(
                    &mount
                        .join(&slice)
                        .join("perfvisor-family.")
                        .display()
                        .to_string()
                ),
                "the daemon's cgroup under cgroup_parent: {sources}"
            );
            assert!(text.contains("cgroup v2"), "{text}");
        }
        _ => assert!(
            sources["cpu"]
                .as_str()
                .unwrap_or("")
                .starts_with("process tree"),
            "{sources}"
        ),
    }
    let out = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
        .args(["stop", "family", "--address", &address, "--token", "t0ken"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The dashboard's daemon view of `family`, rendered by headless Chromium, shows the top
/// children tables with the busy child's pid. Skipped without Chromium (unless
/// PERFVISOR_REQUIRE_EXTERNAL=1).
fn dashboard_lists_children(address: &str, busy: u32) {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        assert!(
            !support::external_required(),
            "/usr/bin/chromium is missing"
        );
        eprintln!("dashboard part SKIPPED: no /usr/bin/chromium");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dom.html");
    let child = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=8000",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("http://{address}/#daemon=family&range=1h"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let started = Instant::now();
    while guard.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "chromium still running after 90 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dom = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        dom.contains("data-list=\"by_cpu\"")
            && dom.contains("data-list=\"by_memory\"")
            && dom.contains(&format!("data-pid=\"{busy}\""))
            && dom.contains("perfvisor-loadg"),
        "no children tables in the dashboard:\n{}",
        dom.get(dom.len().saturating_sub(4000)..).unwrap_or(&dom)
    );
}

/// `GET path` on 127.0.0.1 with the test token, as JSON (a plain HTTP/1.0 request).
fn reqwest_like_get(address: &str, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t0ken\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let (head, body) = body.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body).unwrap()
}

/// A perfvisor that may not create cgroups (run as an unprivileged user) says in `status`
/// that its managed daemon is measured as a process tree and why it has no cgroup; an
/// attached daemon is a process tree with no reason. After perfvisor is killed and started
/// again, it re-adopts the same process and still says why. Needs root to run perfvisor as
/// `nobody` (skipped otherwise, unless PERFVISOR_REQUIRE_EXTERNAL=1).
#[test]
fn status_says_why_a_managed_daemon_has_no_cgroup() {
    // SAFETY: geteuid has no preconditions.
    let root = (unsafe { libc::geteuid() } == 0)
        .then_some(())
        .ok_or_else(|| "not root: cannot run perfvisor as an unprivileged user".to_string());
    if !may_run(root, "the test") {
        return;
    }
    let dir = nobodys_dir();
    let outsider = Group::sh("sleep 1000");
    let address = format!("127.0.0.1:{}", support::free_port());
    let config = format!(
        "{}{}\n[[attach]]\nname = \"outsider\"\npid = {}\n",
        supervisor_table(&dir.path().join("pv.db"), &address, ""),
        sleeping_daemon("plain"),
        outsider.pid(),
    );
    let mut run = run_binary(dir.path(), &config, Some(NOBODY));
    let plain_pid = says_why_plain_has_no_cgroup(dir.path(), &address);
    // Killed outright, perfvisor leaves its daemon running; the next run re-adopts it.
    // SAFETY: kill with a valid signal on our own child's pid (not reaped yet).
    unsafe { libc::kill(run.pid() as i32, libc::SIGKILL) };
    run.0 .0.wait().unwrap();
    let _again = run_binary(dir.path(), &config, Some(NOBODY));
    assert_eq!(
        says_why_plain_has_no_cgroup(dir.path(), &address),
        plain_pid,
        "the same process re-adopted"
    );
}

/// Waits until `status` on `address` shows the sources of both daemons of
/// [`status_says_why_a_managed_daemon_has_no_cgroup`], checks them and the human text, and
/// returns the pid of `plain`.
fn says_why_plain_has_no_cgroup(dir: &std::path::Path, address: &str) -> u64 {
    let started = Instant::now();
    let (watchers, pid) = loop {
        let status = cli_json(address, &["status"]).unwrap_or_default();
        let w = status["status"]["watchers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let pid = pid_in_status(&status, "plain");
        if let (2, true, Some(pid)) = (w.len(), w.iter().all(|w| w["sources"].is_object()), pid) {
            break (w, pid);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no sources within 30 s: {w:?}\n{}",
            std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let of = |name: &str| {
        watchers
            .iter()
            .find(|w| w["daemon"] == name)
            .map(|w| w["sources"].clone())
            .unwrap()
    };
    let plain = of("plain");
    let reason = plain["no_cgroup"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("not root"), "{plain}");
    assert_eq!(
        plain["cpu"].as_str(),
        Some(format!("process tree (no cgroup: {reason})").as_str())
    );
    let outsider_sources = of("outsider");
    assert_eq!(
        outsider_sources["cpu"], "process tree",
        "{outsider_sources}"
    );
    assert!(outsider_sources["no_cgroup"].is_null());
    let text = cli_text(address, &["status"]);
    assert!(
        text.contains("process tree (no cgroup)")
            && text.contains(&format!("plain: no cgroup of its own: {reason}")),
        "{text}"
    );
    pid
}

/// The systemd `Delegate=yes` path: a non-root perfvisor started inside a cgroup delegated
/// to its user (the directory and its `cgroup.procs`, `cgroup.threads` and
/// `cgroup.subtree_control` owned by that user, as systemd leaves them) puts its managed
/// daemon in a cgroup of its own inside that subtree, moving itself into a `supervisor` leaf,
/// and `status` names that cgroup with no reason for lacking one. Needs root to make the
/// subtree and a cgroup2 mount (skipped otherwise, unless PERFVISOR_REQUIRE_EXTERNAL=1).
#[test]
fn delegated_subtree_gets_the_managed_daemon_its_own_cgroup() {
    if !may_run(cgroups_usable(), "the delegation test") {
        return;
    }
    let mount = perfvisor_actors::watcher::cgroup::Mounts::host()
        .v2
        .clone()
        .unwrap();
    let delegated = mount.join(format!("perfvisor-test-delegated-{}", std::process::id()));
    std::fs::create_dir(&delegated).unwrap();
    // Dropped last: removes what perfvisor left in the subtree once it is empty.
    let _remove = RemoveCgroup(delegated.clone());
    for entry in [
        "",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
    ] {
        let path = delegated.join(entry);
        if entry.is_empty() || path.exists() {
            std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    let dir = nobodys_dir();
    let address = format!("127.0.0.1:{}", support::free_port());
    let config =
        supervisor_table(&dir.path().join("pv.db"), &address, "") + &sleeping_daemon("inside");
    // Dropped after the run (stopped with SIGTERM first): kills whatever is left in the leaf.
    let _leftovers = CgroupGuard(Some(delegated.join("supervisor")));
    let run = run_binary_in(dir.path(), &config, Some(NOBODY), Some(&delegated));
    let started = Instant::now();
    let (sources, pid) = loop {
        let status = cli_json(&address, &["status"]).unwrap_or_default();
        let sources = status["status"]["watchers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["daemon"] == "inside")
            .map(|w| w["sources"].clone())
            .filter(serde_json::Value::is_object);
        let pid = pid_in_status(&status, "inside");
        if let (Some(sources), Some(pid)) = (sources, pid) {
            break (sources, pid as u32);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no sources within 30 s:\n{}",
            std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let own = v2_cgroup_dir(pid).unwrap();
    assert_eq!(own.parent(), Some(delegated.as_path()), "{own:?}");
    let leaf = own.file_name().unwrap().to_string_lossy().into_owned();
    assert!(leaf.starts_with("perfvisor-inside."), "{leaf}");
    assert_eq!(
        sources["cgroup"].as_str(),
        Some(own.display().to_string().as_str()),
        "{sources}"
    );
    assert!(sources["no_cgroup"].is_null(), "{sources}");
    // CPU time comes from the cgroup's cpu.stat wherever the cgroup also has a memory file
    // (pure v2 with the memory controller delegated); on a hybrid host the memory controller
    // is v1, where an unprivileged perfvisor may not make a cgroup, so the tree is read.
    let has_memory = own.join("memory.current").exists();
    assert_eq!(
        sources["cpu"].as_str(),
        Some(if has_memory {
            "cgroup v2"
        } else {
            "process tree"
        }),
        "{sources}"
    );
    // perfvisor left its delegated cgroup for a leaf, so the daemons' cgroups may get
    // controllers (cgroup v2 allows them only below cgroups that hold no process).
    assert_eq!(
        v2_cgroup_dir(run.pid()),
        Some(delegated.join("supervisor")),
        "perfvisor's own cgroup"
    );
    let text = cli_text(&address, &["status"]);
    assert!(!text.contains("no cgroup"), "{text}");
    // Stopping perfvisor stops the daemon and removes its cgroup.
    drop(run);
    wait_for_blocking(
        Duration::from_secs(15),
        "the daemon's cgroup removed",
        || !own.exists(),
    );
}

/// `check-config` refuses a `cgroup_parent` outside the cgroup2 mount or escaping it with
/// `..`, naming the value and what would be accepted.
#[test]
fn check_config_refuses_bad_cgroup_parents() {
    if perfvisor_actors::watcher::cgroup::Mounts::host()
        .v2
        .is_none()
    {
        eprintln!("SKIPPED: no cgroup2 hierarchy mounted");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (value, says) in [
        ("/tmp/not-a-cgroup", "is not under the cgroup2 mount"),
        ("../../etc", "is not under the cgroup2 mount"),
    ] {
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!(
                "[supervisor]\ndatabase = \"{}\"\ncgroup_parent = \"{value}\"\n",
                dir.path().join("pv.db").display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{value} accepted: {err}");
        assert!(
            err.contains(value)
                && err.contains(says)
                && err.contains("expected a cgroup directory"),
            "{value}: {err}"
        );
        assert!(err.contains("cgroup_parent"), "{err}");
    }
}
