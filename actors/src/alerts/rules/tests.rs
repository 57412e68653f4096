//! Rule engine tests: every condition, timer, cooldown, flap damping and persisted state on a
//! manual clock.

use super::*;
use crate::metric_names as names;
use crate::types::{
    Alert, AlertState, DaemonId, Labels, LifecycleEvent, LifecycleKind, MetricBatch, MetricKind,
    Sample, SeriesKey, Severity, Source,
};
use std::time::Duration;

const M: &str = "process.cpu.utilization_ratio";
const MIN: i64 = 60_000;

fn key(daemon: &str, metric: &str) -> SeriesKey {
    SeriesKey::new(
        Source::Daemon(daemon.into()),
        metric.to_string(),
        Labels::empty(),
    )
}

fn cpu() -> SeriesKey {
    key("d1", M)
}

fn batch(series: &SeriesKey, points: &[(i64, f64)]) -> MetricBatch {
    MetricBatch {
        samples: points
            .iter()
            .map(|&(t, v)| Sample {
                series: series.clone(),
                kind: MetricKind::Gauge,
                ts_ms: t,
                value: v,
            })
            .collect(),
    }
}

/// One sample of `series` at `t`, evaluated with now = `t`.
fn at(e: &mut RuleEngine, series: &SeriesKey, t: i64, v: f64) -> Vec<Notification> {
    e.evaluate(&batch(series, &[(t, v)]), t)
}

fn states(ns: &[Notification]) -> Vec<AlertState> {
    ns.iter().map(|n| n.alert.state).collect()
}

fn event(daemon: &str, t: i64, kind: LifecycleKind) -> LifecycleEvent {
    LifecycleEvent {
        daemon: daemon.into(),
        pid: 42,
        ts_ms: t,
        kind,
        detail: String::new(),
        intended: false,
    }
}

fn candidate(rule: &str, daemon: &str, state: AlertState, t: i64) -> Alert {
    Alert {
        rule: rule.into(),
        series: key(daemon, names::PROCESS_MEMORY_RSS),
        daemon: Some(daemon.into()),
        project: Some("ws1".into()),
        severity: Severity::Warning,
        state,
        value: 5e8,
        threshold: 1e9,
        since_ms: t,
        at_ms: t,
        message: "memory grows 2 MiB/min".into(),
        recommendations: vec!["From the analyzer.".into()],
        auto_actionable: false,
    }
}

/// Acceptance 1a: a value oscillating around the raise level with a lower clear level
/// fires once, and resolves once when it really drops.
#[test]
fn hysteresis_oscillation_fires_once_resolves_once() {
    let mut e = RuleEngine::new(vec![ThresholdRule::above("cpu", M, 0.9).clear_at(0.8)]);
    let mut all = Vec::new();
    for i in 0..600 {
        let v = if i % 2 == 0 { 0.91 } else { 0.89 };
        all.extend(at(&mut e, &cpu(), i * 1000, v));
        all.extend(e.tick(i * 1000 + 500));
    }
    assert_eq!(states(&all), vec![AlertState::Firing]);
    assert_eq!(all[0].alert.since_ms, 0);
    let done = at(&mut e, &cpu(), 600_000, 0.5);
    assert_eq!(states(&done), vec![AlertState::Resolved]);
    assert_eq!(done[0].alert.since_ms, 0);
    assert!(e.tick(700_000).is_empty());
}

/// Acceptance 1b: without hysteresis the same input flaps; flap damping (4 changes in
/// 10 min) detects it, holds it firing marked flapping, and resolves once when stable.
#[test]
fn flap_damping_holds_and_resolves_once() {
    let plain = ThresholdRule::above("cpu", M, 0.9);
    let mut e = RuleEngine::new(vec![plain.clone()]);
    let mut n = 0;
    for i in 0..600 {
        n += at(
            &mut e,
            &cpu(),
            i * 1000,
            if i % 2 == 0 { 0.91 } else { 0.89 },
        )
        .len();
    }
    assert_eq!(n, 600, "without damping every sample is a notification");

    let mut e = RuleEngine::new(vec![plain.flap_damping(4, Duration::from_secs(600))]);
    let mut all = Vec::new();
    for i in 0..600 {
        all.extend(at(
            &mut e,
            &cpu(),
            i * 1000,
            if i % 2 == 0 { 0.91 } else { 0.89 },
        ));
        all.extend(e.tick(i * 1000 + 500));
    }
    // fire, resolve, fire, resolve, then the fifth change starts flapping.
    use AlertState::{Firing as F, Resolved as R};
    assert_eq!(states(&all), vec![F, R, F, R, F]);
    assert!(all[..4].iter().all(|n| !n.flapping));
    assert!(all[4].flapping && !all[4].repeat);
    assert!(e.is_flapping("cpu", &cpu()));
    assert_eq!(e.firing().len(), 1, "held firing");
    assert!(at(&mut e, &cpu(), 600_000, 0.5).is_empty());
    // Last change: the resolution at 599 s; stable for 10 min at 1199 s.
    assert!(e.tick(1_198_999).is_empty());
    assert_eq!(e.firing().len(), 1);
    let done = e.tick(1_199_000);
    assert_eq!(states(&done), vec![R]);
    assert!(done[0].flapping);
    assert_eq!(done[0].alert.since_ms, 4_000);
    assert!(e.firing().is_empty());
    assert!(e.tick(2_000_000).is_empty());
}

/// Flapping that starts on a resolution sends a repeat of the firing marked flapping,
/// and a series still breached when the window expires stays firing, unmarked.
#[test]
fn flapping_started_by_resolution_and_ending_while_breached() {
    let rule = ThresholdRule::above("cpu", M, 0.9).flap_damping(3, Duration::from_secs(60));
    let mut e = RuleEngine::new(vec![rule]);
    let mut all = Vec::new();
    for (i, v) in [0.95, 0.5, 0.95, 0.5].into_iter().enumerate() {
        all.extend(at(&mut e, &cpu(), i as i64 * 1000, v));
    }
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].alert.state, AlertState::Firing);
    assert!(all[3].repeat && all[3].flapping);
    assert!(at(&mut e, &cpu(), 4_000, 0.95).is_empty());
    assert!(e.tick(63_999).is_empty());
    assert!(
        e.tick(64_000).is_empty(),
        "still breached: stays firing quietly"
    );
    assert!(!e.is_flapping("cpu", &cpu()));
    assert_eq!(e.firing().len(), 1);
    assert_eq!(
        states(&at(&mut e, &cpu(), 65_000, 0.5)),
        vec![AlertState::Resolved]
    );
}

/// Acceptance 2a: repeats come exactly at fired + k·interval, one per due boundary, with
/// the original since; none after resolution.
#[test]
fn repeat_interval_is_exact() {
    let rule = ThresholdRule::above("cpu", M, 0.9).repeat_every(Duration::from_secs(60));
    let mut e = RuleEngine::new(vec![rule]);
    let t = 1_000;
    assert_eq!(
        states(&at(&mut e, &cpu(), t, 0.95)),
        vec![AlertState::Firing]
    );
    assert!(e.tick(t + MIN - 1).is_empty());
    let r = e.tick(t + MIN);
    assert_eq!(r.len(), 1);
    assert!(r[0].repeat && r[0].alert.state == AlertState::Firing);
    assert_eq!((r[0].alert.since_ms, r[0].alert.at_ms), (t, t + MIN));
    assert!(e.tick(t + MIN + 500).is_empty());
    assert!(e.tick(t + 2 * MIN - 1).is_empty());
    assert_eq!(e.tick(t + 2 * MIN).len(), 1);
    // A late tick sends one repeat, and the schedule stays on the boundaries.
    assert_eq!(e.tick(t + 5 * MIN + 30_000).len(), 1);
    assert!(e.tick(t + 6 * MIN - 1).is_empty());
    assert_eq!(e.tick(t + 6 * MIN).len(), 1);
    assert!(at(&mut e, &cpu(), t + 6 * MIN + 1, 0.95).is_empty());
    assert_eq!(
        states(&at(&mut e, &cpu(), t + 6 * MIN + 2, 0.1)),
        vec![AlertState::Resolved]
    );
    assert!(e.tick(t + 7 * MIN).is_empty());
}

/// Acceptance 2b: a re-fire within cooldown is tracked but neither it nor its
/// resolution is sent; the first re-fire at or after cooldown is.
#[test]
fn cooldown_is_exact() {
    let rule = ThresholdRule::above("cpu", M, 0.9).cooldown(Duration::from_secs(600));
    let mut e = RuleEngine::new(vec![rule]);
    assert_eq!(
        states(&at(&mut e, &cpu(), 0, 1.0)),
        vec![AlertState::Firing]
    );
    assert_eq!(
        states(&at(&mut e, &cpu(), 1_000, 0.0)),
        vec![AlertState::Resolved]
    );
    assert!(at(&mut e, &cpu(), 2_000, 1.0).is_empty());
    assert_eq!(
        e.state("cpu", &cpu()),
        RuleState::Firing {
            since: 2_000,
            notified: false,
            clearing_since: None
        }
    );
    assert_eq!(e.firing().len(), 1, "held back but tracked");
    assert!(e.tick(3_000).is_empty());
    assert!(
        at(&mut e, &cpu(), 4_000, 0.0).is_empty(),
        "its resolution is not sent"
    );
    assert!(at(&mut e, &cpu(), 599_999, 1.0).is_empty());
    assert!(at(&mut e, &cpu(), 599_999 + 1, 0.0).is_empty());
    let sent = at(&mut e, &cpu(), 600_001, 1.0);
    assert_eq!(states(&sent), vec![AlertState::Firing]);
    assert_eq!(sent[0].alert.since_ms, 600_001);
}

/// Acceptance 3a: `for` and `clear_for` are exact to the millisecond, through samples
/// and ticks; an interruption restarts each timer.
#[test]
fn for_and_clear_for_are_exact() {
    let rule = ThresholdRule::above("cpu", M, 0.9)
        .clear_at(0.8)
        .for_duration(Duration::from_millis(5_000))
        .clear_for(Duration::from_millis(3_000));
    let mut e = RuleEngine::new(vec![rule]);
    assert!(at(&mut e, &cpu(), 1_000, 0.95).is_empty());
    assert!(e.tick(5_999).is_empty());
    assert_eq!(e.state("cpu", &cpu()), RuleState::Pending { since: 1_000 });
    // A dip into the hysteresis band while pending restarts `for`.
    assert!(at(&mut e, &cpu(), 3_000, 0.85).is_empty());
    assert!(at(&mut e, &cpu(), 4_000, 0.95).is_empty());
    assert!(e.tick(8_999).is_empty());
    let f = e.tick(9_000);
    assert_eq!(states(&f), vec![AlertState::Firing]);
    assert_eq!((f[0].alert.since_ms, f[0].alert.at_ms), (4_000, 9_000));
    // Clear holds from 10 s; a band value at 11 s restarts the clear timer.
    assert!(at(&mut e, &cpu(), 10_000, 0.5).is_empty());
    assert!(at(&mut e, &cpu(), 11_000, 0.85).is_empty());
    assert!(at(&mut e, &cpu(), 12_000, 0.5).is_empty());
    assert!(e.tick(14_999).is_empty());
    let r = e.tick(15_000);
    assert_eq!(states(&r), vec![AlertState::Resolved]);
    assert_eq!((r[0].alert.since_ms, r[0].alert.at_ms), (4_000, 15_000));
    // The same through samples only: fires on the sample at since + for exactly.
    let mut e = RuleEngine::new(vec![
        ThresholdRule::above("cpu", M, 0.9).for_duration(Duration::from_millis(10_000))
    ]);
    assert!(at(&mut e, &cpu(), 0, 1.0).is_empty());
    assert!(at(&mut e, &cpu(), 9_999, 1.0).is_empty());
    assert_eq!(
        states(&at(&mut e, &cpu(), 10_000, 1.0)),
        vec![AlertState::Firing]
    );
}

/// Acceptance 3b: absence fires exactly `after` past the last sample (via tick) and
/// resolves on the next sample; a stopped daemon is forgotten, resolving its alert.
#[test]
fn absence_fires_after_silence_and_resolves_on_sample() {
    let up = key("d1", names::PROCESS_UPTIME);
    let mut e = RuleEngine::new(vec![daemon_down_rule()]);
    assert!(at(&mut e, &up, 1_000, 10.0).is_empty());
    assert!(e.tick(30_999).is_empty());
    let f = e.tick(31_000);
    assert_eq!(states(&f), vec![AlertState::Firing]);
    assert_eq!(f[0].alert.since_ms, 31_000);
    assert_eq!(f[0].alert.value, 30.0);
    assert_eq!(f[0].alert.threshold, 30.0);
    assert!(f[0]
        .alert
        .message
        .contains("no sample of process.uptime_seconds"));
    assert!(e.tick(40_000).is_empty());
    // NaN is not a sample.
    assert!(at(&mut e, &up, 41_000, f64::NAN).is_empty());
    let r = at(&mut e, &up, 50_000, 11.0);
    assert_eq!(states(&r), vec![AlertState::Resolved]);
    assert_eq!(r[0].alert.value, 49.0, "the gap that ended");
    // Down again, then stopped by the host: resolved and forgotten.
    assert_eq!(e.tick(80_000).len(), 1);
    let s = e.lifecycle(&event("d1", 81_000, LifecycleKind::Stopped), 81_000);
    assert_eq!(states(&s), vec![AlertState::Resolved]);
    assert!(s[0].alert.message.contains("stopped by the host"));
    assert!(e.tick(1_000_000).is_empty());
    assert!(e.snapshot().is_empty());
}

/// Intended stops and restarts are context: a stop's in-flight samples (taken before the
/// stop) and its watcher's last probe (taken after) start no `daemon_down` timer until the
/// daemon is started again, an intended restart forgets the absence timer and
/// counts for no crash loop, and the new process's first sample starts a fresh timer.
#[test]
fn intended_stops_and_restarts_page_nothing() {
    let up = key("d1", names::PROCESS_UPTIME);
    let mut e = RuleEngine::new(vec![daemon_down_rule(), crash_loop_rule()]);
    let intended = |t, kind| LifecycleEvent {
        intended: true,
        ..event("d1", t, kind)
    };
    assert!(at(&mut e, &up, 1_000, 1.0).is_empty());
    assert!(e
        .lifecycle(&intended(2_000, LifecycleKind::Stopped), 2_000)
        .is_empty());
    // A sample the watcher took before the stop arrives after it, and the retiring
    // watcher's last probe is stamped after the stop.
    assert!(at(&mut e, &up, 1_900, 1.9).is_empty());
    assert!(at(&mut e, &up, 2_050, 2.05).is_empty());
    assert!(e.tick(100_000).is_empty(), "no daemon_down after a stop");
    // Started again, then restarted on purpose five times: no crash loop, no down.
    assert!(e
        .lifecycle(&event("d1", 199_000, LifecycleKind::Started), 199_000)
        .is_empty());
    assert!(at(&mut e, &up, 200_000, 0.1).is_empty());
    for k in 0..5 {
        let t = 201_000 + k * 40_000;
        for kind in [LifecycleKind::Exited, LifecycleKind::Restarted] {
            assert!(e.lifecycle(&intended(t, kind), t).is_empty());
        }
        // The new process's first sample comes 35 s later (a slow start).
        assert!(e.tick(t + 34_000).is_empty());
        assert!(at(&mut e, &up, t + 35_000, 0.1).is_empty());
    }
    assert!(e.tick(400_000).is_empty());
    // The restarted process then vanishes: that is an outage.
    let f = e.tick(500_000);
    assert_eq!(states(&f), vec![AlertState::Firing]);
    assert_eq!(f[0].alert.rule, "daemon_down");
    // Stopped, then started by the host: the new process's silence pages.
    let mut e = RuleEngine::new(vec![daemon_down_rule()]);
    assert!(e
        .lifecycle(&intended(1_000, LifecycleKind::Stopped), 1_000)
        .is_empty());
    assert!(e
        .lifecycle(&event("d1", 5_000, LifecycleKind::Started), 5_000)
        .is_empty());
    assert!(at(&mut e, &up, 6_000, 0.1).is_empty());
    assert_eq!(states(&e.tick(40_000)), vec![AlertState::Firing]);
    // And unintended exits still make a crash loop.
    let mut e = RuleEngine::new(vec![crash_loop_rule()]);
    let mut last = Vec::new();
    for t in [1_000, 2_000, 3_000] {
        last = e.lifecycle(&event("d1", t, LifecycleKind::Exited), t);
    }
    assert_eq!(states(&last), vec![AlertState::Firing]);
}

/// Acceptance 3c: restart rate fires on the n-th restart within the window (inclusive),
/// not for the same count spread wider; it resolves when one leaves the window.
#[test]
fn restart_rate_fires_on_nth_within_window() {
    let mut e = RuleEngine::new(vec![crash_loop_rule()]);
    let ev = |e: &mut RuleEngine, t, k| e.lifecycle(&event("d1", t, k), t);
    assert!(ev(&mut e, 0, LifecycleKind::Exited).is_empty());
    assert!(ev(&mut e, 5 * MIN, LifecycleKind::Started).is_empty());
    assert!(ev(&mut e, 6 * MIN, LifecycleKind::Restarted).is_empty());
    let f = ev(&mut e, 10 * MIN, LifecycleKind::Restarted);
    assert_eq!(states(&f), vec![AlertState::Firing]);
    let a = &f[0].alert;
    assert_eq!(a.series, key("d1", RESTARTS_METRIC));
    assert_eq!((a.value, a.threshold, a.since_ms), (3.0, 3.0, 10 * MIN));
    assert_eq!(a.severity, Severity::Critical);
    assert!(
        e.tick(10 * MIN).is_empty(),
        "the event at 0 is still inside at 10 min"
    );
    let r = e.tick(10 * MIN + 1);
    assert_eq!(states(&r), vec![AlertState::Resolved]);
    // Spread over more than the window: never fires; other daemons are separate.
    let mut e = RuleEngine::new(vec![crash_loop_rule()]);
    for (d, t) in [
        ("a", 0),
        ("b", 1),
        ("a", 6 * MIN),
        ("a", 12 * MIN),
        ("b", 2),
    ] {
        assert!(ev_d(&mut e, d, t).is_empty());
    }
    fn ev_d(e: &mut RuleEngine, d: &str, t: i64) -> Vec<Notification> {
        e.lifecycle(&event(d, t, LifecycleKind::Exited), t)
    }
}

/// Acceptance 3d: a signal rule follows the analyzer's candidates with its own `for`,
/// severity and recommendations; other candidates and other daemons are ignored.
#[test]
fn signal_rules_follow_candidates() {
    let rule = memory_growth_rule()
        .for_duration(Duration::from_secs(60))
        .for_daemon("d1");
    let mut e = RuleEngine::new(vec![rule]);
    let c = candidate("bottleneck.memory_leak", "d1", AlertState::Firing, 0);
    assert!(e.signal(&c, 0).is_empty());
    assert!(e
        .signal(
            &candidate("bottleneck.cpu_bound", "d1", AlertState::Firing, 0),
            0
        )
        .is_empty());
    assert!(e
        .signal(
            &candidate("bottleneck.memory_leak", "d2", AlertState::Firing, 0),
            0
        )
        .is_empty());
    assert!(e.tick(59_999).is_empty());
    let f = e.tick(60_000);
    assert_eq!(states(&f), vec![AlertState::Firing]);
    let a = &f[0].alert;
    assert_eq!(a.rule, "memory_growth");
    assert_eq!(a.since_ms, 0);
    assert_eq!(a.project.as_deref(), Some("ws1"));
    assert_eq!((a.value, a.threshold), (5e8, 1e9));
    assert!(a.message.contains("memory grows 2 MiB/min"));
    assert_eq!(
        a.recommendations.len(),
        2,
        "the rule's, then the analyzer's"
    );
    assert_eq!(a.recommendations[1], "From the analyzer.");
    assert_eq!(e.firing().len(), 1);
    let r = e.signal(
        &candidate("bottleneck.memory_leak", "d1", AlertState::Resolved, 90_000),
        90_000,
    );
    assert_eq!(states(&r), vec![AlertState::Resolved]);
    assert!(e.firing().is_empty());
}

/// Acceptance 3e: selectors by project, labels, daemon and host source.
#[test]
fn selectors_by_project_labels_daemon_and_host() {
    let with = |d: &str, pairs: &[(&str, &str)]| {
        SeriesKey::new(
            Source::Daemon(d.into()),
            M,
            Labels::from_pairs(pairs.iter().copied()),
        )
    };
    let mut e = RuleEngine::new(vec![
        ThresholdRule::above("proj", M, 0.9).for_project("ws1"),
        ThresholdRule::above("lab", M, 0.9)
            .with_label("tier", "db")
            .with_label("zone", "a"),
        ThresholdRule::above("one", M, 0.9).for_daemon("d2"),
        ThresholdRule::above("host", M, 0.9).on_host(),
        ThresholdRule::above("other_metric", "x", 0.9),
    ]);
    let fired = |e: &mut RuleEngine, s: &SeriesKey, t| {
        let mut v: Vec<String> = at(e, s, t, 1.0).into_iter().map(|n| n.alert.rule).collect();
        v.sort();
        v
    };
    assert_eq!(
        fired(&mut e, &with("d1", &[("project", "ws1")]), 0),
        vec!["proj"]
    );
    assert!(fired(&mut e, &with("d1", &[("project", "ws2")]), 0).is_empty());
    assert!(fired(&mut e, &with("d1", &[("tier", "db")]), 0).is_empty());
    assert_eq!(
        fired(&mut e, &with("d1", &[("tier", "db"), ("zone", "a")]), 0),
        vec!["lab"]
    );
    assert_eq!(fired(&mut e, &with("d2", &[]), 0), vec!["one"]);
    let host = SeriesKey::new(Source::Host, M, Labels::empty());
    assert_eq!(fired(&mut e, &host, 0), vec!["host"]);
    let own = SeriesKey::new(Source::Perfvisor, M, Labels::empty());
    assert!(fired(&mut e, &own, 0).is_empty());
    let n = at(&mut e, &with("d3", &[("project", "ws1")]), 0, 1.0);
    assert_eq!(n[0].alert.project.as_deref(), Some("ws1"));
    assert_eq!(n[0].alert.daemon.as_ref().map(DaemonId::as_str), Some("d3"));
}

/// Acceptance 4: snapshot → restore keeps a firing alert firing with its since, sends
/// nothing on restore nor for a still-breached value, and resolves normally later.
#[test]
fn snapshot_restore_keeps_firing_without_resending() {
    let rules = || {
        vec![
            ThresholdRule::above("cpu", M, 0.9).for_duration(Duration::from_secs(5)),
            daemon_down_rule(),
            ThresholdRule::above("gone", M, 0.5),
        ]
    };
    let mut e = RuleEngine::new(rules());
    assert_eq!(at(&mut e, &cpu(), 1_000, 0.95)[0].alert.rule, "gone");
    assert_eq!(at(&mut e, &cpu(), 6_000, 0.95)[0].alert.rule, "cpu");
    assert!(at(&mut e, &key("d1", names::PROCESS_UPTIME), 6_000, 5.0).is_empty());
    let saved = e.snapshot();
    let json = serde_json::to_string(&saved).unwrap();
    let back: Vec<PersistedState> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, saved);

    // A new engine without the `gone` rule, restored 60 s later.
    let mut e = RuleEngine::new(rules().into_iter().take(2).collect());
    e.restore(back, 66_000);
    let firing = e.firing();
    assert_eq!(firing.len(), 1, "the `gone` rule's state is dropped");
    assert_eq!(
        (firing[0].rule.as_str(), firing[0].since_ms),
        ("cpu", 1_000)
    );
    assert!(
        e.tick(66_000).is_empty(),
        "absence restarts its timer at restore"
    );
    assert!(at(&mut e, &cpu(), 67_000, 0.97).is_empty());
    assert!(e.tick(68_000).is_empty());
    let r = at(&mut e, &cpu(), 69_000, 0.3);
    assert_eq!(states(&r), vec![AlertState::Resolved]);
    assert_eq!(r[0].alert.since_ms, 1_000);
    let down = e.tick(96_000);
    assert_eq!(
        states(&down),
        vec![AlertState::Firing],
        "absence works after restore"
    );
}

/// Notifications fill every alert field and carry the rule's action on firings only.
#[test]
fn notification_fields_and_action() {
    let rule = ThresholdRule::below("low", "app.free_ratio", 0.1)
        .clear_at(0.2)
        .severity(Severity::Critical)
        .recommend("Free some.")
        .action(RuleAction::RestartDaemon);
    let mut e = RuleEngine::new(vec![rule]);
    let s = SeriesKey::new(
        Source::Daemon("d9".into()),
        "app.free_ratio",
        Labels::from_pairs([("project", "p")]),
    );
    let f = e.evaluate(&batch(&s, &[(100, 0.05)]), 150);
    let n = &f[0];
    assert_eq!((n.repeat, n.flapping), (false, false));
    assert_eq!(n.action, Some(RuleAction::RestartDaemon));
    let a = &n.alert;
    assert_eq!(a.rule, "low");
    assert_eq!(a.series, s);
    assert_eq!(a.daemon, Some("d9".into()));
    assert_eq!(a.project.as_deref(), Some("p"));
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(
        (a.value, a.threshold, a.since_ms, a.at_ms),
        (0.05, 0.1, 100, 150)
    );
    assert_eq!(
        a.message,
        "low: app.free_ratio of daemon d9 is 0.05 (below threshold 0.1; clears at or above 0.2)"
    );
    assert_eq!(a.recommendations, vec!["Free some.".to_string()]);
    assert!(a.auto_actionable);
    assert!(at(&mut e, &s, 200, 0.15).is_empty(), "in the band");
    let r = at(&mut e, &s, 300, 0.25);
    assert_eq!(r[0].action, None);
    assert!(r[0].alert.message.contains("back to 0.25 (clear level 0.2"));
}

/// Rate-of-change rules measure the series' own change per second over a full window.
#[test]
fn rate_of_change_fires_and_clears() {
    let rule = ThresholdRule::rate_above("grow", "m", 10.0, Duration::from_secs(10));
    let mut e = RuleEngine::new(vec![rule]);
    let s = key("d1", "m");
    let mut all = Vec::new();
    for i in 0..=10 {
        all.extend(at(&mut e, &s, i * 1000, 0.0));
    }
    // +100 per second from 11 s: over [1 s, 11 s] the rate is exactly 10 (not above).
    all.extend(at(&mut e, &s, 11_000, 100.0));
    assert!(all.is_empty());
    let f = at(&mut e, &s, 12_000, 200.0);
    assert_eq!(states(&f), vec![AlertState::Firing]);
    assert_eq!(f[0].alert.value, 20.0);
    assert!(f[0].alert.message.contains("changes by 20/s over 10 s"));
    let mut r = Vec::new();
    for i in 13..=30 {
        r.extend(at(&mut e, &s, i * 1000, 200.0));
    }
    assert_eq!(states(&r), vec![AlertState::Resolved]);
    // Counter reset: the window restarts instead of reading a huge negative rate.
    let rule = ThresholdRule::rate_below("drop", "c", -1.0, Duration::from_secs(2));
    let mut e = RuleEngine::new(vec![rule]);
    let c = key("d1", "c");
    let counter = |t, v| MetricBatch {
        samples: vec![Sample {
            series: c.clone(),
            kind: MetricKind::Counter,
            ts_ms: t,
            value: v,
        }],
    };
    assert!(e.evaluate(&counter(0, 100.0), 0).is_empty());
    assert!(e.evaluate(&counter(2_000, 0.0), 2_000).is_empty());
    assert!(e.evaluate(&counter(4_000, 2.0), 4_000).is_empty());
}

/// NaN never fires or clears; old samples (out of order) are ignored.
#[test]
fn nan_and_out_of_order_samples_are_ignored() {
    let mut e = RuleEngine::new(vec![ThresholdRule::above("cpu", M, 0.9)]);
    assert!(at(&mut e, &cpu(), 0, f64::NAN).is_empty());
    assert!(at(&mut e, &cpu(), 0, f64::INFINITY).is_empty());
    assert_eq!(at(&mut e, &cpu(), 1_000, 1.0).len(), 1);
    assert!(at(&mut e, &cpu(), 2_000, f64::NAN).is_empty());
    assert!(e.evaluate(&batch(&cpu(), &[(500, 0.1)]), 3_000).is_empty());
    assert_eq!(e.firing().len(), 1);
    // Future timestamps are capped at now.
    let r = e.evaluate(&batch(&cpu(), &[(99_000, 0.1)]), 3_000);
    assert_eq!(r[0].alert.at_ms, 3_000);
}

/// `validate` names the field, the value and what is accepted, for every problem.
#[test]
fn validation_reports_every_problem() {
    let err = ThresholdRule::above("cpu", M, 0.9)
        .clear_at(0.95)
        .flap_damping(0, Duration::ZERO)
        .repeat_every(Duration::ZERO)
        .validate()
        .unwrap_err();
    let fields: Vec<_> = err.problems.iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        vec!["clear", "flap.max_flips", "flap.window", "repeat_interval"]
    );
    let text = err.to_string();
    assert!(
        text.contains(
            "clear = 0.95 is not accepted; expected a level at or below the raise level 0.9"
        ),
        "{text}"
    );
    assert!(ThresholdRule::below("x", M, 0.1)
        .clear_at(0.05)
        .validate()
        .is_err());
    assert!(ThresholdRule::below("x", M, 0.1)
        .clear_at(0.2)
        .validate()
        .is_ok());
    let bad = [
        ThresholdRule::rate_above("r", M, 1.0, Duration::ZERO),
        ThresholdRule::absent("a", M, Duration::ZERO),
        ThresholdRule::restart_rate("c", 0, Duration::from_secs(1)),
        ThresholdRule::restart_rate("c", 1, Duration::from_secs(1)).for_project("p"),
        ThresholdRule::signal("s", " "),
        ThresholdRule::above("n", M, f64::NAN),
        ThresholdRule::above("", M, 1.0),
        ThresholdRule::above("h", M, 1.0).on_host().for_daemon("d"),
        ThresholdRule::new(
            "t",
            Condition::Absence {
                after: Duration::from_secs(1),
            },
        ),
        ThresholdRule::above("e", M, 1.0).action(RuleAction::Exec {
            program: String::new(),
            args: vec![],
        }),
    ];
    for r in &bad {
        assert!(r.validate().is_err(), "{r:?}");
    }
    let dup = validate_rules(&[
        ThresholdRule::above("a", M, 1.0),
        ThresholdRule::above("a", M, 2.0),
    ]);
    assert_eq!(
        dup.unwrap_err().problems[0].expected,
        "a name no other rule has"
    );
    // Invalid rules in an engine never panic.
    let mut e = RuleEngine::new(bad.to_vec());
    for t in 0..5 {
        e.evaluate(&batch(&cpu(), &[(t, 1.0)]), t);
        e.lifecycle(&event("d1", t, LifecycleKind::Exited), t);
        e.signal(&candidate(" ", "d1", AlertState::Firing, t), t);
        e.tick(t);
    }
}

/// The shipped rules are valid and uniquely named, each with a recommendation.
#[test]
fn default_rules_are_valid() {
    let rules = default_rules();
    assert_eq!(validate_rules(&rules), Ok(()));
    assert_eq!(rules.len(), 6);
    assert!(rules.iter().all(|r| !r.recommendations.is_empty()));
    assert_eq!(validate_rules(&builtin_rules()), Ok(()));
    // high_cpu: 5 minutes at 0.95 fire, hovering at 0.85 does not resolve.
    let mut e = RuleEngine::new(rules);
    assert!(at(&mut e, &cpu(), 0, 0.95).is_empty());
    assert_eq!(at(&mut e, &cpu(), 5 * MIN, 0.95).len(), 1);
    assert!(at(&mut e, &cpu(), 6 * MIN, 0.85).is_empty());
    assert_eq!(at(&mut e, &cpu(), 7 * MIN, 0.8).len(), 1);
}

/// `group` splits one evaluation's notifications by rule or by daemon, in order.
#[test]
fn grouping_by_rule_and_daemon() {
    let mut e = RuleEngine::new(vec![
        ThresholdRule::above("a", M, 0.5),
        ThresholdRule::above("b", M, 0.5),
    ]);
    let mut samples = batch(&key("d1", M), &[(0, 1.0)]).samples;
    samples.extend(batch(&key("d2", M), &[(0, 1.0)]).samples);
    samples.extend(
        batch(
            &SeriesKey::new(Source::Host, M, Labels::empty()),
            &[(0, 1.0)],
        )
        .samples,
    );
    let ns = e.evaluate(&MetricBatch { samples }, 0);
    assert_eq!(ns.len(), 6);
    let by_rule = group(ns.clone(), GroupBy::Rule);
    assert_eq!(by_rule.len(), 2);
    assert!(by_rule[0].iter().all(|n| n.alert.rule == "a") && by_rule[0].len() == 3);
    let by_daemon = group(ns, GroupBy::Daemon);
    let sizes: Vec<_> = by_daemon.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 2, 2]);
    assert_eq!(by_daemon[2][0].alert.daemon, None);
    assert!(group(Vec::new(), GroupBy::Rule).is_empty());
}

/// `add` replaces a rule of the same name (dropping its states) and indexes new ones.
#[test]
fn add_replaces_by_name() {
    let mut e = RuleEngine::new(vec![ThresholdRule::above("cpu", M, 0.9)]);
    assert_eq!(at(&mut e, &cpu(), 0, 0.95).len(), 1);
    e.add(ThresholdRule::above("cpu", M, 0.99));
    assert_eq!(e.rules().len(), 1);
    assert_eq!(e.state("cpu", &cpu()), RuleState::Inactive);
    assert!(at(&mut e, &cpu(), 1_000, 0.95).is_empty());
    e.add(ThresholdRule::above("mem", "mem", 1.0));
    assert_eq!(e.rules().len(), 2);
    assert_eq!(at(&mut e, &key("d1", "mem"), 2_000, 2.0).len(), 1);
}

/// Acceptance 5: cost per `evaluate` sample with 20 rules × 1,000 series, for
/// quiet series (nothing breaches) and noisy ones (uniform 0..1: constant firing,
/// resolving and flapping).
#[test]
#[ignore]
fn rules_cost() {
    let mut rules = Vec::new();
    for i in 0..12 {
        rules.push(
            ThresholdRule::above(format!("t{i}"), M, 0.5 + i as f64 * 0.04)
                .clear_at(0.4)
                .for_duration(Duration::from_secs(5))
                .flap_damping(4, Duration::from_secs(600))
                .repeat_every(Duration::from_secs(60)),
        );
    }
    for i in 0..4 {
        rules.push(ThresholdRule::rate_above(
            format!("r{i}"),
            M,
            0.01 * (i + 1) as f64,
            Duration::from_secs(10),
        ));
    }
    for i in 0..4 {
        rules.push(ThresholdRule::absent(
            format!("a{i}"),
            M,
            Duration::from_secs(30 + i),
        ));
    }
    assert_eq!(rules.len(), 20);
    let series: Vec<SeriesKey> = (0..1000)
        .map(|i| {
            SeriesKey::new(
                Source::Daemon(format!("d{i}").into()),
                M,
                Labels::from_pairs([("project", format!("p{}", i % 10))]),
            )
        })
        .collect();
    for (label, lo, span) in [("quiet", 0.1, 0.0), ("noisy", 0.0, 1.0)] {
        let mut e = RuleEngine::new(rules.clone());
        let rounds = 200;
        let mut rng = fastrand::Rng::with_seed(7);
        let batches: Vec<MetricBatch> = (0..rounds)
            .map(|r| MetricBatch {
                samples: series
                    .iter()
                    .map(|s| Sample {
                        series: s.clone(),
                        kind: MetricKind::Gauge,
                        ts_ms: r as i64 * 1000,
                        value: lo + span * rng.f64(),
                    })
                    .collect(),
            })
            .collect();
        let (mut notes, mut eval_ns, mut tick_ns) = (0, 0u128, 0u128);
        for (r, b) in batches.iter().enumerate() {
            let now = r as i64 * 1000;
            let t0 = std::time::Instant::now();
            notes += e.evaluate(b, now).len();
            eval_ns += t0.elapsed().as_nanos();
            let t1 = std::time::Instant::now();
            notes += e.tick(now + 500).len();
            tick_ns += t1.elapsed().as_nanos();
        }
        let samples = (rounds * series.len()) as u128;
        println!(
            "rules_cost {label}: 20 rules x 1000 series, {samples} samples: {} ns per \
             evaluate sample ({} ns per sample x rule); tick {} us; {notes} notifications",
            eval_ns / samples,
            eval_ns / samples / 20,
            tick_ns / rounds as u128 / 1000,
        );
    }
}

fn anomaly(source: Source, metric: &str, state: AlertState, t: i64) -> Alert {
    let series = SeriesKey::new(
        source,
        metric.to_string(),
        Labels::from_pairs([("project", "ws1")]),
    );
    Alert {
        rule: format!("anomaly.{metric}"),
        daemon: series.source.daemon().cloned(),
        project: Some("ws1".into()),
        series,
        severity: Severity::Warning,
        state,
        value: 0.95,
        threshold: 0.92,
        since_ms: t,
        at_ms: t,
        message: format!("{metric}: LevelShiftUp to 0.95 from a baseline of 0.92"),
        recommendations: Vec::new(),
        auto_actionable: false,
    }
}

fn own(signal: &str, state: AlertState, t: i64) -> Alert {
    Alert {
        rule: signal.into(),
        series: SeriesKey::new(
            Source::Perfvisor,
            names::PERFVISOR_STORAGE_BLOCKED,
            Labels::empty(),
        ),
        daemon: None,
        project: None,
        severity: Severity::Critical,
        state,
        value: 42.0,
        threshold: 0.0,
        since_ms: t,
        at_ms: t,
        message: "perfvisor cannot write its history (disk full)".into(),
        recommendations: Vec::new(),
        auto_actionable: false,
    }
}

/// A signal ending in `.*` follows every candidate with that prefix, and only those;
/// a `*` anywhere else is refused by validation.
#[test]
fn prefix_signals_follow_every_candidate_with_the_prefix() {
    assert!(follows("anomaly.*", "anomaly.app.latency_seconds"));
    assert!(follows("anomaly.*", "anomaly.system.cpu.load_average.15m"));
    assert!(!follows("anomaly.*", "anomalyx"));
    assert!(!follows("anomaly.*", "bottleneck.cpu_bound"));
    assert!(follows("bottleneck.cpu_bound", "bottleneck.cpu_bound"));
    assert!(!follows("bottleneck.cpu", "bottleneck.cpu_bound"));
    assert!(ThresholdRule::signal("a", "anomaly.*").validate().is_ok());
    for bad in ["*", "anomaly*", "anomaly.*.x", ".*"] {
        assert!(
            ThresholdRule::signal("a", bad).validate().is_err(),
            "{bad} accepted"
        );
    }
    // Selectors apply to the candidate's series: metric, daemon, project labels.
    let mut e = RuleEngine::new(vec![ThresholdRule::signal("lat", "anomaly.*")
        .metric("app.latency_seconds")
        .for_project("ws1")]);
    let d = || Source::Daemon("d1".into());
    assert!(e
        .signal(&anomaly(d(), "app.queue", AlertState::Firing, 0), 0)
        .is_empty());
    let f = e.signal(
        &anomaly(d(), "app.latency_seconds", AlertState::Firing, 0),
        0,
    );
    assert_eq!(states(&f), vec![AlertState::Firing]);
    assert_eq!(f[0].alert.rule, "lat");
}

/// The issue's noise: with the default rules, an anomaly on a host series, a perfvisor
/// series or a process series raises nothing (app_anomaly ships disabled, and would not
/// take those series anyway).
#[test]
fn host_and_process_anomalies_raise_nothing_with_defaults() {
    let mut e = RuleEngine::new(effective_rules(&[], true));
    for (source, metric) in [
        (Source::Host, "system.cpu.load_average.15m"),
        (
            Source::Perfvisor,
            "perfvisor.storage.maintenance.time_seconds",
        ),
        (Source::Daemon("d1".into()), "process.cpu.utilization_ratio"),
        (Source::Daemon("d1".into()), "app.latency_seconds"),
    ] {
        assert!(e
            .signal(&anomaly(source.clone(), metric, AlertState::Firing, 0), 0)
            .is_empty());
    }
    assert!(e.firing().is_empty());
    // Switched on, app_anomaly takes a daemon's app metric and nothing else.
    let mut e = RuleEngine::new(effective_rules(&[app_anomaly_rule().enabled(true)], true));
    let d = || Source::Daemon("d1".into());
    assert!(e
        .signal(
            &anomaly(d(), "process.cpu.utilization_ratio", AlertState::Firing, 0),
            0
        )
        .is_empty());
    assert!(e
        .signal(
            &anomaly(
                Source::Host,
                "system.cpu.load_average.15m",
                AlertState::Firing,
                0
            ),
            0
        )
        .is_empty());
    let f = e.signal(
        &anomaly(d(), "app.latency_seconds", AlertState::Firing, 0),
        0,
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].alert.rule, "app_anomaly");
}

/// A user rule following `anomaly.*` on the host fires for a host anomaly, is in the
/// firing set, and resolves when the candidate does.
#[test]
fn user_host_anomaly_rule_fires_and_resolves() {
    let rule = ThresholdRule::signal("host_anomaly", "anomaly.*").on_host();
    let mut e = RuleEngine::new(effective_rules(&[rule], true));
    let m = "system.cpu.load_average.15m";
    let f = e.signal(&anomaly(Source::Host, m, AlertState::Firing, 1000), 1000);
    assert_eq!(states(&f), vec![AlertState::Firing]);
    assert_eq!(f[0].alert.rule, "host_anomaly");
    assert!(f[0].alert.message.contains("LevelShiftUp"));
    assert_eq!(e.firing().len(), 1);
    let r = e.signal(&anomaly(Source::Host, m, AlertState::Resolved, 9000), 9000);
    assert_eq!(states(&r), vec![AlertState::Resolved]);
    assert!(e.firing().is_empty());
}

/// perfvisor's storage candidate goes through its built-in rule even without the
/// default rules: in `firing()` while it fires, resolved when storage recovers.
#[test]
fn storage_failing_signal_is_in_the_firing_set_and_resolves() {
    let mut e = RuleEngine::new(effective_rules(&[], false));
    let f = e.signal(&own(STORAGE_FAILING_SIGNAL, AlertState::Firing, 0), 0);
    assert_eq!(states(&f), vec![AlertState::Firing]);
    let firing = e.firing();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].rule, "perfvisor_storage_failing");
    assert_eq!(firing[0].severity, Severity::Critical);
    assert!(firing[0].message.contains("disk full"));
    let r = e.signal(
        &own(STORAGE_FAILING_SIGNAL, AlertState::Resolved, 5000),
        5000,
    );
    assert_eq!(states(&r), vec![AlertState::Resolved]);
    assert!(e.firing().is_empty());
    // The degraded candidate likewise.
    let f = e.signal(&own(DEGRADED_SIGNAL, AlertState::Firing, 6000), 6000);
    assert_eq!(f[0].alert.rule, "perfvisor_degraded");
}

/// Replacing the rule set: a removed rule's firing alert resolves with a message saying
/// so and its state is gone; an unchanged rule keeps its state (no new notification);
/// a changed rule starts afresh.
#[test]
fn replacing_rules_drops_removed_and_keeps_unchanged() {
    let api = ThresholdRule::above("api_cpu", M, 0.5);
    let keep = ThresholdRule::above("keep", M, 0.5);
    let disk = ThresholdRule::above("disk_low", M, 0.5);
    let mut e = RuleEngine::new(vec![api.clone(), keep.clone(), disk.clone()]);
    assert_eq!(at(&mut e, &cpu(), 0, 0.9).len(), 3);
    let (out, change) = e.replace(
        vec![keep.clone(), disk.clone().severity(Severity::Critical)],
        1000,
    );
    assert_eq!(change.removed, vec!["api_cpu".to_string()]);
    assert_eq!(change.changed, vec!["disk_low".to_string()]);
    assert!(change.added.is_empty());
    assert_eq!(out.len(), 2);
    let removed = out.iter().find(|n| n.alert.rule == "api_cpu").unwrap();
    assert_eq!(removed.alert.state, AlertState::Resolved);
    assert!(removed.alert.message.contains("rule was removed"));
    assert_eq!(e.state("api_cpu", &cpu()), RuleState::Inactive);
    assert!(matches!(e.state("keep", &cpu()), RuleState::Firing { .. }));
    let firing: Vec<String> = e.firing().into_iter().map(|a| a.rule).collect();
    assert_eq!(firing, vec!["keep".to_string()]);
    // The removed rule no longer fires; the kept one stays quiet (already announced);
    // the changed one fires afresh.
    let next = at(&mut e, &cpu(), 2000, 0.9);
    let rules: Vec<&str> = next.iter().map(|n| n.alert.rule.as_str()).collect();
    assert_eq!(rules, vec!["disk_low"]);
    // Replacing with the same set changes nothing.
    let same = e.rules().to_vec();
    let (out, change) = e.replace(same, 3000);
    assert!(out.is_empty() && change.is_empty());
}

/// `enabled = false` on a built-in (a user rule of the same name) takes it out of the
/// evaluation but keeps it listed; its bottleneck signal gets no stand-in rule.
#[test]
fn disabled_builtin_is_listed_but_never_evaluated() {
    let off = high_cpu_rule().enabled(false);
    let leak_off = memory_growth_rule().enabled(false);
    let rules = effective_rules(&[off, leak_off], true);
    assert!(rules.iter().any(|r| r.name == "high_cpu" && !r.enabled));
    assert!(!rules.iter().any(|r| r.name == "bottleneck.memory_leak"));
    let mut e = RuleEngine::new(rules);
    assert!(at(&mut e, &cpu(), 0, 0.95).is_empty());
    assert!(at(&mut e, &cpu(), 10 * MIN, 0.95).is_empty());
    assert!(e
        .signal(
            &candidate("bottleneck.memory_leak", "d1", AlertState::Firing, 0),
            0
        )
        .is_empty());
    let listed = listed_rules(&[], &[high_cpu_rule().enabled(false)], true);
    let cpu_info = listed.iter().find(|r| r.name == "high_cpu").unwrap();
    assert_eq!(
        (cpu_info.origin, cpu_info.enabled),
        (RuleOrigin::Config, false)
    );
    assert_eq!(cpu_info.timing, "for 5 min, cooldown 15 min");
    let app = listed.iter().find(|r| r.name == "app_anomaly").unwrap();
    assert_eq!(
        (app.origin, app.enabled),
        (RuleOrigin::BuiltIn, APP_ANOMALY_ENABLED)
    );
    assert!(listed
        .iter()
        .any(|r| r.name == "perfvisor_storage_failing" && r.origin == RuleOrigin::BuiltIn));
}

/// `perfvisor_descriptors_high` fires once perfvisor's own descriptors stay above 80 %
/// of its limit for 30 s (from `selfmon::descriptor_samples`), and clears below 70 %.
#[test]
fn descriptors_high_fires_on_perfvisor_descriptor_use() {
    let mut e = RuleEngine::new(vec![descriptors_high_rule()]);
    let mut all = Vec::new();
    for i in 0..40 {
        let b = MetricBatch {
            samples: crate::selfmon::descriptor_samples(i * 1000, 900, 1024),
        };
        all.extend(e.evaluate(&b, i * 1000));
        all.extend(e.tick(i * 1000 + 500));
    }
    assert_eq!(states(&all), vec![AlertState::Firing]);
    assert_eq!(all[0].alert.rule, "perfvisor_descriptors_high");
    assert!(all[0].alert.at_ms >= 30_000);
    let b = MetricBatch {
        samples: crate::selfmon::descriptor_samples(50_000, 600, 1024),
    };
    assert_eq!(states(&e.evaluate(&b, 50_000)), vec![AlertState::Resolved]);
}
