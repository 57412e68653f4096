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

/// A start script that `exec`s the real program (`sh -c '…; exec perfvisor-loadgen …'`) is
/// one daemon: the watcher follows the exec instead of retiring, the exec is an event in
/// the lifecycle history, and nothing records an exit or fires `daemon_down`.
#[tokio::test]
async fn exec_in_a_start_script_keeps_its_watcher() {
    let t = support::start(|b| b.probe_interval(Duration::from_millis(100)));
    let script = format!(
        "sleep 0.5; exec {} --cpu 0",
        env!("CARGO_BIN_EXE_perfvisor-loadgen")
    );
    let child = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let child = support::ChildGuard(child);
    let pid = child.pid();
    t.pv.daemon_started(DaemonSpec::new("scripted", pid))
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "the exec recorded", || async {
        t.pv.flush().await.unwrap();
        t.pv.reader()
            .unwrap()
            .events(None, 0, i64::MAX)
            .unwrap()
            .iter()
            .any(|e| e.kind == LifecycleKind::Exec && e.pid == pid)
    })
    .await;
    // Probes go on after the exec, for the same pid.
    let before = t.pv.status().await.unwrap();
    let probes = |s: &perfvisor::Status| {
        s.watchers
            .iter()
            .find(|w| w.daemon.as_str() == "scripted" && w.pid == pid)
            .map_or(0, |w| w.probes)
    };
    let seen = probes(&before);
    assert!(seen > 0, "{:?}", before.watchers);
    wait_for(Duration::from_secs(5), "probing after the exec", || async {
        probes(&t.pv.status().await.unwrap()) > seen + 3
    })
    .await;
    let events = t.pv.reader().unwrap().events(None, 0, i64::MAX).unwrap();
    assert!(
        !events.iter().any(|e| e.kind == LifecycleKind::Exited),
        "{events:#?}"
    );
    let exec = events
        .iter()
        .find(|e| e.kind == LifecycleKind::Exec)
        .expect("exec event");
    assert!(exec.detail.contains("perfvisor-loadgen"), "{}", exec.detail);
    assert!(t.pv.firing_alerts().await.unwrap().is_empty());
}
