//! Watchers follow real processes.

use std::time::Duration;

use perfvisor::{DaemonSpec, LifecycleKind};

use crate::support::{self, wait_for};

/// Three real children announced: a watcher each with samples flowing; one SIGKILLed
/// without telling perfvisor: its watcher retires within one interval (plus scheduling
/// slack) and an exit event is stored; a new pid for the same id gets a fresh watcher.
#[tokio::test]
async fn watchers_follow_processes() {
    let interval = Duration::from_millis(100);
    let t = support::start(|b| b.probe_interval(interval));
    let mut children: Vec<_> = (0..3)
        .map(|_| support::loadgen(&["--cpu", "0.05"]))
        .collect();
    for (i, c) in children.iter().enumerate() {
        t.pv.daemon_started(DaemonSpec::new(format!("d{i}"), c.pid()).project("p"))
            .await
            .unwrap();
    }
    wait_for(Duration::from_secs(5), "three watchers probing", || async {
        let s = t.pv.status().await.unwrap();
        s.watchers.len() == 3 && s.watchers.iter().all(|w| w.probes >= 2)
    })
    .await;
    let report = t.pv.report("d0").await.unwrap().expect("report for d0");
    assert!(report
        .metric(perfvisor::metric_names::PROCESS_MEMORY_RSS)
        .is_some());

    let killed_pid = children[1].pid();
    children[1].kill();
    let took = wait_for(Duration::from_secs(5), "watcher of d1 retired", || async {
        let s = t.pv.status().await.unwrap();
        s.watchers.len() == 2 && s.watchers.iter().all(|w| w.daemon.as_str() != "d1")
    })
    .await;
    assert!(
        took <= interval + Duration::from_millis(250),
        "retired after {took:?}, interval {interval:?}"
    );

    let replacement = support::loadgen(&["--cpu", "0"]);
    t.pv.daemon_started(DaemonSpec::new("d1", replacement.pid()))
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(5),
        "fresh watcher for the new pid",
        || async {
            let s = t.pv.status().await.unwrap();
            s.watchers
                .iter()
                .any(|w| w.daemon.as_str() == "d1" && w.pid == replacement.pid() && w.probes > 0)
        },
    )
    .await;

    t.pv.daemon_stopped("d2").await.unwrap();
    t.pv.shutdown().await.unwrap();

    let reader = perfvisor::StorageReader::open(t.db()).unwrap();
    let d1 = perfvisor::DaemonId::new("d1");
    let events = reader.events(Some(&d1), i64::MIN, i64::MAX).unwrap();
    let kinds: Vec<(LifecycleKind, u32)> = events.iter().map(|e| (e.kind, e.pid)).collect();
    assert_eq!(
        kinds,
        vec![
            (LifecycleKind::Started, killed_pid),
            (LifecycleKind::Exited, killed_pid),
            (LifecycleKind::Started, replacement.pid()),
        ],
        "{events:?}"
    );
    let d2 = reader
        .events(Some(&perfvisor::DaemonId::new("d2")), i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(d2.last().map(|e| e.kind), Some(LifecycleKind::Stopped));
    drop(children);
}

/// A daemon killed but not yet reaped by its parent (a zombie) counts as exited: its
/// watcher retires and the exit is stored.
#[tokio::test]
async fn zombie_counts_as_exited() {
    let t = support::start(|b| b);
    let mut child = support::watched_idle_daemon(&t.pv, "z").await;
    let pid = child.pid();
    // SAFETY: plain kill(2) on our own child's pid; it stays a zombie until waited for.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_for(
        Duration::from_secs(5),
        "zombie's watcher retired",
        || async { t.pv.status().await.unwrap().watchers.is_empty() },
    )
    .await;
    child.kill(); // reaps it
    t.pv.shutdown().await.unwrap();
    let reader = perfvisor::StorageReader::open(t.db()).unwrap();
    let events = reader
        .events(Some(&perfvisor::DaemonId::new("z")), i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(events.last().map(|e| e.kind), Some(LifecycleKind::Exited));
}
