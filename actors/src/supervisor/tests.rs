//! Unit tests of the supervisor: the restart policy and the watcher diff (pure), and the
//! panic test over every message type every supervised actor handles.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::types::{DaemonId, DaemonSpec};

fn policy() -> RestartPolicy {
    RestartPolicy {
        kind: RestartKind::Permanent,
        max_restarts: 3,
        period: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(100),
        backoff_factor: 2.0,
        backoff_max: Duration::from_secs(1),
        jitter: 0.0,
        stable_after: Duration::from_secs(30),
    }
}

fn delay(d: RestartDecision) -> (Duration, bool) {
    match d {
        RestartDecision::Restart {
            delay,
            budget_exceeded,
        } => (delay, budget_exceeded),
        RestartDecision::Stop => panic!("expected a restart"),
    }
}

/// Backoff doubles per consecutive failure, on a manual clock, and is capped.
#[test]
fn backoff_grows_exponentially_and_caps() {
    let mut t = RestartTracker::new(RestartPolicy {
        max_restarts: 100,
        ..policy()
    });
    let got: Vec<u128> = (0..6)
        .map(|i| delay(t.on_failure(i * 1000, 0.5)).0.as_millis())
        .collect();
    assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
}

/// Jitter stays within ±jitter of the nominal delay and never exceeds the cap.
#[test]
fn jitter_is_bounded() {
    let t = RestartTracker::new(RestartPolicy {
        jitter: 0.2,
        ..policy()
    });
    assert_eq!(t.backoff(1, 0.0).as_millis(), 80);
    assert_eq!(t.backoff(1, 1.0).as_millis(), 120);
    assert_eq!(t.backoff(10, 1.0), Duration::from_secs(1));
}

/// The budget counts failures within the period only: the 4th failure within 10 s
/// exceeds 3 restarts, while failures spread over more than 10 s never do.
#[test]
fn restart_window_is_exact() {
    let mut t = RestartTracker::new(policy());
    for now in [0, 1000, 2000] {
        assert!(!delay(t.on_failure(now, 0.5)).1);
    }
    let (d, exceeded) = delay(t.on_failure(3000, 0.5));
    assert!(exceeded);
    assert_eq!(
        d,
        Duration::from_secs(1),
        "past the budget, restart at the cap"
    );

    let mut t = RestartTracker::new(policy());
    for i in 0..10 {
        // 5 000 ms apart: at most two failures are ever inside the 10 s window.
        assert!(!delay(t.on_failure(i * 5000, 0.5)).1, "failure {i}");
    }
    assert_eq!(t.recent_failures(), 2);
}

/// A stable period resets the backoff to its initial delay.
#[test]
fn stable_period_resets_backoff() {
    let mut t = RestartTracker::new(RestartPolicy {
        max_restarts: 100,
        ..policy()
    });
    delay(t.on_failure(0, 0.5));
    assert_eq!(delay(t.on_failure(100, 0.5)).0.as_millis(), 200);
    assert_eq!(delay(t.on_failure(30_100, 0.5)).0.as_millis(), 100);
}

/// Temporary children are never restarted.
#[test]
fn temporary_children_stop() {
    let mut t = RestartTracker::new(RestartPolicy::new(RestartKind::Temporary));
    assert_eq!(t.on_failure(0, 0.5), RestartDecision::Stop);
}

/// The watcher diff adds new daemons, replaces changed ones and removes the gone.
#[test]
fn watcher_diff() {
    let spec = |id: &str, pid| DaemonSpec::new(id, pid);
    let desired: BTreeMap<_, _> = [spec("a", 1), spec("b", 22), spec("c", 3)]
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let running: BTreeMap<_, _> = [spec("b", 2), spec("c", 3), spec("d", 4)]
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let d = diff_watchers(&desired, &running);
    assert_eq!(d.to_add, vec![spec("a", 1)]);
    assert_eq!(d.to_change, vec![spec("b", 22)]);
    assert_eq!(d.to_remove, vec![DaemonId::new("d")]);
    assert!(diff_watchers(&desired, &desired).is_empty());
}
