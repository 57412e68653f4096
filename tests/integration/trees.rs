//! Whole daemons: a daemon that works in several processes is measured over its whole tree.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use perfvisor::metric_names as m;
use perfvisor::{DaemonId, DaemonSpec, SeriesKey, Source};

use crate::support::{self, wait_for};

/// A shell in its own process group; the whole group is killed through the group id (the
/// shell's pid) and the shell reaped, however the test ends.
struct Group(Child);

impl Group {
    fn sh(script: &str) -> Self {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        Group(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: plain syscall; the shell is not reaped yet, so its pid still names the group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

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
