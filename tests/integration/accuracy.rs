//! CPU and memory of a real process, reported within the promised tolerance.

use std::time::Duration;

use perfvisor::metric_names as m;
use perfvisor::DaemonSpec;

use crate::support::{self, wait_for};

/// A child burning about half a core and holding 100 MiB is reported within ±15
/// percentage points of CPU and ±5 % of resident memory, against /proc read by the test.
#[tokio::test]
async fn cpu_and_memory_are_accurate() {
    let _cores = support::cpu_heavy().await;
    let t = support::start(|b| b.probe_interval(Duration::from_millis(200)));
    let child = support::loadgen(&["--cpu", "0.5", "--hold-mib", "100"]);
    let pid = child.pid();
    // Let the child allocate and touch its memory before the truth is read.
    wait_for(Duration::from_secs(10), "child resident", || async {
        support::rss_of(pid) > 100 * 1024 * 1024
    })
    .await;
    t.pv.daemon_started(DaemonSpec::new("burner", pid))
        .await
        .unwrap();

    let cpu0 = support::cpu_seconds_of(pid);
    let wall0 = std::time::Instant::now();
    wait_for(Duration::from_secs(10), "ten CPU readings", || async {
        t.pv.report("burner")
            .await
            .unwrap()
            .and_then(|r| r.metric(m::PROCESS_CPU_UTILIZATION).map(|s| s.count >= 10))
            .unwrap_or(false)
    })
    .await;
    let truth_cpu = (support::cpu_seconds_of(pid) - cpu0) / wall0.elapsed().as_secs_f64();
    let truth_rss = support::rss_of(pid) as f64;

    let report = t.pv.report("burner").await.unwrap().unwrap();
    let cpu = report.metric(m::PROCESS_CPU_UTILIZATION).unwrap();
    let rss = report.metric(m::PROCESS_MEMORY_RSS).unwrap();
    assert!(
        (cpu.mean - 0.5).abs() <= 0.15,
        "CPU mean {:.3} of a core, target 0.5 ± 0.15 (truth from /proc {truth_cpu:.3})",
        cpu.mean
    );
    assert!(
        (cpu.mean - truth_cpu).abs() <= 0.15,
        "CPU mean {:.3} vs /proc {truth_cpu:.3}",
        cpu.mean
    );
    assert!(
        (rss.last - truth_rss).abs() / truth_rss <= 0.05,
        "RSS {} vs /proc {truth_rss}",
        rss.last
    );
    assert!(
        rss.last >= 100.0 * 1024.0 * 1024.0 * 0.95,
        "RSS {} below 100 MiB",
        rss.last
    );
    t.pv.shutdown().await.unwrap();
    drop(child);
}
