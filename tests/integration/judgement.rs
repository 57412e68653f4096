//! Judgement from real scenarios: a child that burns CPU, leaks memory, writes hard, opens
//! descriptors up to near its limit, or crash-loops, and a host latency metric that
//! regresses; each is found as its bottleneck kind, the top recommendation answers it, the
//! score's breakdown adds up, and a bottleneck alert reaches subscribers.

use std::time::Duration;

use perfvisor::{BottleneckKind, DaemonReport, DaemonSpec, Perfvisor, Severity};

use crate::support::{self, loadgen, wait_for, ChildGuard};

const WAIT: Duration = Duration::from_secs(30);

fn fast(b: perfvisor::PerfvisorBuilder) -> perfvisor::PerfvisorBuilder {
    b.probe_interval(Duration::from_millis(100))
        .judge_interval(Duration::from_millis(300))
        .analysis_window(100)
        .judge_config(support::fast_judgement())
}

/// Waits until the daemon's report shows `kind`, then checks the report is coherent.
async fn expect_bottleneck(pv: &Perfvisor, id: &str, kind: BottleneckKind) -> DaemonReport {
    let started = std::time::Instant::now();
    let report = loop {
        let report = pv.report(id).await.expect("report");
        if let Some(r) = report.filter(|r| r.bottlenecks.iter().any(|b| b.kind == kind)) {
            break r;
        }
        assert!(
            started.elapsed() < WAIT,
            "{id}: no {kind:?} within {WAIT:?}; last report: {:#?}",
            pv.report(id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lost: f64 = report.score.breakdown.iter().map(|d| d.points).sum();
    assert!(
        (100.0 - lost - report.score.value).abs() < 1e-9,
        "breakdown adds up: {:?}",
        report.score
    );
    let b = report
        .bottlenecks
        .iter()
        .find(|b| b.kind == kind)
        .expect("found above");
    assert!(!b.evidence.is_empty(), "{b:?}");
    let json = serde_json::to_string(&report).expect("serializes");
    assert!(json.contains(kind.as_str()), "{json}");
    report
}

fn top_cause(report: &DaemonReport) -> BottleneckKind {
    report.recommendations[0].cause
}

async fn watch(pv: &Perfvisor, id: &str, child: &ChildGuard) {
    pv.daemon_started(DaemonSpec::new(id, child.pid()))
        .await
        .expect("daemon announced");
}

/// A child burning 95 % of a core is CPU-bound, and the first recommendation is about CPU.
#[tokio::test]
async fn cpu_burner_is_cpu_bound() {
    let _cores = support::cpu_heavy().await;
    let t = support::start(fast);
    let child = loadgen(&["--cpu", "0.95"]);
    watch(&t.pv, "burner", &child).await;
    let report = expect_bottleneck(&t.pv, "burner", BottleneckKind::CpuBound).await;
    assert_eq!(top_cause(&report), BottleneckKind::CpuBound, "{report:#?}");
    assert!(report.score.value < 100.0);
    t.pv.shutdown().await.unwrap();
}

/// A child leaking 20 MiB/s is a memory leak; the first recommendation is the restart
/// perfvisor could do itself, and a bottleneck alert reaches subscribers.
#[tokio::test]
async fn leaking_child_is_a_memory_leak() {
    let t = support::start(fast);
    let (tx, rx) = std::sync::mpsc::channel();
    t.pv.on_alert(move |a| {
        if a.rule == "memory_growth" {
            let _ = tx.send(a.clone());
        }
    })
    .await
    .unwrap();
    let child = loadgen(&["--leak-mib-per-sec", "20"]);
    watch(&t.pv, "leaker", &child).await;
    let report = expect_bottleneck(&t.pv, "leaker", BottleneckKind::MemoryLeak).await;
    assert_eq!(
        top_cause(&report),
        BottleneckKind::MemoryLeak,
        "{report:#?}"
    );
    assert!(report.recommendations[0].auto_action.is_some());
    let alert = rx.recv_timeout(WAIT).expect("leak alert");
    assert!(
        alert.auto_actionable && !alert.recommendations.is_empty(),
        "{alert:?}"
    );
    assert_eq!(alert.daemon.as_ref().map(|d| d.as_str()), Some("leaker"));
    assert!(matches!(
        alert.severity,
        Severity::Warning | Severity::Critical
    ));
    let rss = report
        .series
        .iter()
        .find(|s| s.metric.as_str() == perfvisor::metric_names::PROCESS_MEMORY_RSS)
        .expect("rss");
    let slope = rss.trend.as_ref().expect("trend").fit.slope_per_s;
    let truth = 20.0 * 1024.0 * 1024.0;
    assert!(
        (slope - truth).abs() / truth < 0.25,
        "slope {slope} vs {truth}"
    );
    t.pv.shutdown().await.unwrap();
}

/// A child writing 64 MiB/s is I/O-bound.
#[tokio::test]
async fn hard_writer_is_io_bound() {
    let t = support::start(fast);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir on disk");
    let child = loadgen(&[
        "--write-mib-per-sec",
        "64",
        "--write-dir",
        dir.path().to_str().expect("utf-8 path"),
    ]);
    watch(&t.pv, "writer", &child).await;
    let report = expect_bottleneck(&t.pv, "writer", BottleneckKind::IoBound).await;
    assert_eq!(top_cause(&report), BottleneckKind::IoBound, "{report:#?}");
    t.pv.shutdown().await.unwrap();
}

/// A child holding 230 of its 256 descriptors is near exhaustion.
#[tokio::test]
async fn descriptor_hog_is_near_exhaustion() {
    let t = support::start(fast);
    let child = loadgen(&["--fd-limit", "256", "--open-fds", "230"]);
    watch(&t.pv, "hog", &child).await;
    let report = expect_bottleneck(&t.pv, "hog", BottleneckKind::DescriptorExhaustion).await;
    assert_eq!(
        top_cause(&report),
        BottleneckKind::DescriptorExhaustion,
        "{report:#?}"
    );
    t.pv.shutdown().await.unwrap();
}

/// A daemon that dies and is restarted under a new pid again and again is unstable.
#[tokio::test]
async fn crash_loop_is_restart_instability() {
    let t = support::start(fast);
    for _ in 0..4 {
        let child = loadgen(&["--exit-after", "0.2"]);
        watch(&t.pv, "flaky", &child).await;
        let mut child = child;
        let _ = child.0.wait();
    }
    let report = expect_bottleneck(&t.pv, "flaky", BottleneckKind::RestartInstability).await;
    assert_eq!(
        top_cause(&report),
        BottleneckKind::RestartInstability,
        "{report:#?}"
    );
    assert!(report.restarts_recent >= 3);
    t.pv.shutdown().await.unwrap();
}

/// A latency the host records that steps from 10 ms to 40 ms is a latency regression, and
/// the level shift raises an anomaly alert.
#[tokio::test]
async fn latency_step_is_a_regression() {
    // Anomalies of app metrics page only where a rule asks (app_anomaly ships off).
    let t = support::start(|b| {
        fast(b).rule(perfvisor::ThresholdRule::signal(
            "anomaly.search.latency_seconds",
            "anomaly.search.latency_seconds",
        ))
    });
    let (tx, rx) = std::sync::mpsc::channel();
    t.pv.on_alert(move |a| {
        if a.rule == "anomaly.search.latency_seconds" {
            let _ = tx.send(a.clone());
        }
    })
    .await
    .unwrap();
    let child = support::watched_idle_daemon(&t.pv, "search").await;
    let rec = t.pv.recorder().for_daemon("search");
    let mut rng = fastrand::Rng::with_seed(3);
    // 45 ms apart: the last 100 samples (the window) span 4.5 s, past the minimum span (3 s).
    for i in 0..220 {
        let base = if i < 150 { 0.010 } else { 0.040 };
        rec.record("search.latency_seconds", base * (0.9 + 0.2 * rng.f64()));
        tokio::time::sleep(Duration::from_millis(45)).await;
    }
    let report = expect_bottleneck(&t.pv, "search", BottleneckKind::LatencyRegression).await;
    assert_eq!(
        top_cause(&report),
        BottleneckKind::LatencyRegression,
        "{report:#?}"
    );
    assert!(report.recommendations[0]
        .action
        .to_lowercase()
        .contains("cach"));
    let anomaly = rx.recv_timeout(WAIT).expect("anomaly alert");
    assert_eq!(anomaly.daemon.as_ref().map(|d| d.as_str()), Some("search"));
    assert!(anomaly.value > anomaly.threshold, "{anomaly:?}");
    drop(child);
    t.pv.shutdown().await.unwrap();
}

/// An idle daemon has no bottleneck and scores Excellent.
#[tokio::test]
async fn idle_daemon_is_excellent() {
    let t = support::start(fast);
    let _child = support::watched_idle_daemon(&t.pv, "idle").await;
    wait_for(WAIT, "a few probes", || async {
        t.pv.report("idle").await.unwrap().is_some_and(|r| {
            r.metric(perfvisor::metric_names::PROCESS_CPU_UTILIZATION)
                .is_some_and(|s| s.count >= 10)
        })
    })
    .await;
    let report = t.pv.report("idle").await.unwrap().expect("report");
    assert!(report.bottlenecks.is_empty(), "{report:#?}");
    assert_eq!(report.score.level, perfvisor::Level::Excellent);
    let host = t.pv.host_report().await.unwrap().expect("host report");
    assert!(host
        .daemon_scores
        .contains_key(&perfvisor::DaemonId::new("idle")));
    t.pv.shutdown().await.unwrap();
}

/// Two children each burning a full core on a machine whose cores they fill: both are
/// CPU-bound while the host saturates, which the host's judgement calls contention and
/// reports on both daemons.
#[tokio::test]
async fn two_burners_on_a_full_host_are_host_contention() {
    let _cores = support::cpu_heavy().await;
    let t = support::start(|b| fast(b).host_interval(Duration::from_millis(100)));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let children: Vec<ChildGuard> = (0..cores.max(2))
        .map(|_| loadgen(&["--cpu", "1.0"]))
        .collect();
    for (i, child) in children.iter().enumerate() {
        watch(&t.pv, &format!("burner-{i}"), child).await;
    }
    let report = expect_bottleneck(&t.pv, "burner-0", BottleneckKind::HostContention).await;
    let contention = report
        .bottlenecks
        .iter()
        .find(|b| b.kind == BottleneckKind::HostContention)
        .expect("found above");
    assert!(contention.summary.contains("burner-1"), "{contention:?}");
    let host = t.pv.host_report().await.unwrap().expect("host report");
    assert!(host.judgement.score.value < 100.0, "{host:?}");
    drop(children);
    t.pv.shutdown().await.unwrap();
}
