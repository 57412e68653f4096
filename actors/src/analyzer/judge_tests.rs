//! Tests of `judge.rs`: the unit tests of its private items, kept apart so the module reads
//! as its logic.

use super::*;
use crate::analyzer::stats::WindowStats;
use crate::analyzer::trend::TimeToThreshold;

fn stats(mean: f64, p95: f64, last: f64) -> WindowStats {
    WindowStats {
        count: 60,
        min: 0.0,
        max: p95,
        mean,
        median: mean,
        stddev: 0.01,
        p50: mean,
        p90: p95,
        p95,
        p99: p95,
        last,
    }
}

/// 90 s of samples at 1 Hz with this median.
fn recent(median: f64) -> RecentStats {
    RecentStats {
        period_ms: 90_000,
        span_ms: 89_000,
        count: 90,
        median,
        mean: median,
    }
}

fn view() -> DaemonView {
    DaemonView::new(DaemonId::new("d"), 1_000_000)
}

/// A healthy daemon scores 100 with an empty breakdown.
#[test]
fn healthy_daemon_is_excellent() {
    let mut v = view();
    v.cpu.stats = Some(stats(0.1, 0.2, 0.1));
    let j = judge(&v, &HostView::default(), None, &JudgeConfig::default());
    assert_eq!(j.score.value, 100.0);
    assert_eq!(j.score.level, Level::Excellent);
    assert!(j.score.breakdown.is_empty() && j.bottlenecks.is_empty());
}

/// Acceptance 4: breakdowns add up to the score, even when categories overflow their
/// caps.
#[test]
fn breakdown_adds_up_to_the_score() {
    let mut v = view();
    v.cpu.stats = Some(stats(0.99, 1.0, 1.0));
    v.cpu.recent = Some(recent(0.99));
    v.restarts_recent = 9;
    v.fds.stats = Some(stats(1000.0, 1000.0, 1000.0));
    v.fd_limit = Some(1024.0);
    v.disk_write.stats = Some(stats(200.0 * MIB, 300.0 * MIB, 200.0 * MIB));
    let host = HostView::default();
    let contention = Bottleneck {
        kind: BottleneckKind::HostContention,
        severity: 1.0,
        summary: "x".into(),
        evidence: vec![],
    };
    let j = judge(&v, &host, Some(&contention), &JudgeConfig::default());
    let lost: f64 = j.score.breakdown.iter().map(|d| d.points).sum();
    assert!((100.0 - lost - j.score.value).abs() < 1e-9, "{j:?}");
    for c in [
        Category::Cpu,
        Category::Stability,
        Category::Descriptors,
        Category::Io,
    ] {
        let in_c: f64 = j
            .score
            .breakdown
            .iter()
            .filter(|d| d.category == c)
            .map(|d| d.points)
            .sum();
        assert!(in_c <= c.cap() + 1e-9, "{c:?} {in_c}");
    }
    assert!(j.score.value < 60.0);
    assert!(j
        .score
        .breakdown
        .iter()
        .all(|d| !d.evidence.is_empty() || d.reason == "x"));
    let kinds: Vec<BottleneckKind> = j.bottlenecks.iter().map(|b| b.kind).collect();
    for k in [
        BottleneckKind::CpuBound,
        BottleneckKind::RestartInstability,
        BottleneckKind::DescriptorExhaustion,
        BottleneckKind::IoBound,
    ] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }
    assert_eq!(j.recommendations[0].cause, j.bottlenecks[0].kind);
}

/// Levels follow the documented boundaries.
#[test]
fn levels() {
    assert_eq!(Level::of(90.0), Level::Excellent);
    assert_eq!(Level::of(89.9), Level::Good);
    assert_eq!(Level::of(75.0), Level::Good);
    assert_eq!(Level::of(60.0), Level::Average);
    assert_eq!(Level::of(40.0), Level::Poor);
    assert_eq!(Level::of(39.9), Level::Critical);
}

/// Host contention needs a saturated host and two degraded daemons.
#[test]
fn host_contention_needs_saturation_and_two_daemons() {
    let cpu_bound = |d: &str| {
        (
            DaemonId::new(d),
            vec![Bottleneck {
                kind: BottleneckKind::CpuBound,
                severity: 1.0,
                summary: String::new(),
                evidence: vec![],
            }],
            None,
        )
    };
    let mut host = HostView::default();
    host.cpu.stats = Some(stats(0.97, 1.0, 1.0));
    let j = judge_host(
        &host,
        &[cpu_bound("a"), cpu_bound("b")],
        &JudgeConfig::default(),
    );
    assert!(j.contention.is_some());
    assert_eq!(j.contended_daemons.len(), 2);
    let lost: f64 = j.score.breakdown.iter().map(|d| d.points).sum();
    assert!((100.0 - lost - j.score.value).abs() < 1e-9);
    assert!(
        judge_host(&host, &[cpu_bound("a")], &JudgeConfig::default())
            .contention
            .is_none()
    );
    host.cpu.stats = Some(stats(0.5, 0.6, 0.5));
    assert!(judge_host(
        &host,
        &[cpu_bound("a"), cpu_bound("b")],
        &JudgeConfig::default()
    )
    .contention
    .is_none());
}

/// A file system that fills within a day, or is 90 % full, costs the host points with
/// the prediction as evidence.
#[test]
fn filling_disk_costs_the_host() {
    let now = 1_000_000;
    let mut host = HostView {
        now_ms: now,
        ..HostView::default()
    };
    host.filesystems.push(FilesystemView {
        mountpoint: "/var".into(),
        used: 50.0,
        total: 100.0,
        time_to_full: Some(TimeToThreshold {
            threshold: 100.0,
            eta_ms: now + 2 * 3_600_000,
            earliest_ms: now + 3_600_000,
            latest_ms: Some(now + 4 * 3_600_000),
            confidence: 0.95,
        }),
    });
    let j = judge_host(&host, &[], &JudgeConfig::default());
    assert_eq!(j.score.value, 95.0, "{j:?}");
    assert!(
        j.score.breakdown[0].evidence[1].detail.contains("2.0 h"),
        "{j:?}"
    );
    host.filesystems[0].time_to_full = None;
    assert_eq!(
        judge_host(&host, &[], &JudgeConfig::default()).score.value,
        100.0
    );
    host.filesystems[0].used = 98.0;
    assert_eq!(
        judge_host(&host, &[], &JudgeConfig::default()).score.value,
        90.0
    );
}

/// A file system predicted full within 10 minutes makes the host Critical, within the
/// hour Poor; the urgency deduction holds the prediction and the breakdown adds up.
#[test]
fn filling_disk_is_urgent() {
    let now = 1_000_000;
    let cfg = JudgeConfig::default();
    for (minutes, score) in [(5, 39.9), (30, 59.9), (90, 95.0)] {
        let mut host = HostView {
            now_ms: now,
            ..HostView::default()
        };
        let eta_ms = now + minutes * 60_000;
        host.filesystems.push(FilesystemView {
            mountpoint: "/var".into(),
            used: 95.0,
            total: 100.0,
            time_to_full: Some(TimeToThreshold {
                threshold: 100.0,
                eta_ms,
                earliest_ms: eta_ms - 60_000,
                latest_ms: Some(eta_ms + 60_000),
                confidence: 0.95,
            }),
        });
        let j = judge_host(&host, &[], &cfg);
        assert_eq!(j.score.value, score, "{minutes} min: {:?}", j.score);
        let lost: f64 = j.score.breakdown.iter().map(|d| d.points).sum();
        assert!((100.0 - lost - j.score.value).abs() < 1e-9);
        let urgency = j
            .score
            .breakdown
            .iter()
            .find(|d| d.category == Category::Urgency);
        assert_eq!(urgency.is_some(), minutes <= 60, "{:?}", j.score);
        if let Some(u) = urgency {
            assert_eq!(u.evidence[0].observed, minutes as f64);
        }
    }
}

/// The leak recommendation is auto-actionable (restart), the others are not.
#[test]
fn only_the_leak_restart_is_auto_actionable() {
    for kind in [
        BottleneckKind::CpuBound,
        BottleneckKind::MemoryLeak,
        BottleneckKind::IoBound,
        BottleneckKind::LatencyRegression,
        BottleneckKind::HostContention,
        BottleneckKind::MemoryPressure,
        BottleneckKind::DescriptorExhaustion,
        BottleneckKind::RestartInstability,
    ] {
        let b = Bottleneck {
            kind,
            severity: 1.0,
            summary: "s".into(),
            evidence: vec![],
        };
        let recs = recommend(&b, &view());
        assert!(recs.len() >= 2, "{kind:?}");
        assert!(recs
            .iter()
            .all(|r| r.cause == kind && !r.expected_effect.is_empty()));
        let auto = recs.iter().filter(|r| r.auto_action.is_some()).count();
        assert_eq!(
            auto,
            usize::from(kind == BottleneckKind::MemoryLeak),
            "{kind:?}"
        );
    }
}
