//! Operator intent through the real binary: stops, starts, restarts and reloads done through
//! perfvisor page nobody (no crash loop, no daemon down) and cost no stability, while a real
//! crash of the same daemon still counts.

use std::path::Path;
use std::time::{Duration, Instant};

use perfvisor::StorageReader;

use crate::support::Instance;

/// The config after `[supervisor]`: one managed worker, a `daemon_down` tightened to 2 s so
/// that a stop that still looked like a death would page within the test, and an exec sink
/// that appends every notification it is handed to `delivered` (what a person would
/// receive).
fn config(delivered: &Path, marker: &str) -> String {
    format!(
        r#"
[[daemon]]
name = "worker"
command = ["{loadgen}", "--cpu", "0"]
env = {{ MARKER = "{marker}" }}
stop_timeout = "2s"
startup_grace = "1s"

[[rule]]
name = "daemon_down"
kind = "absent"
metric = "process.uptime_seconds"
after = "2s"
severity = "critical"

[[sink]]
name = "pager"
kind = "exec"
command = ["/bin/sh", "-c", "cat >> '{delivered}'; echo >> '{delivered}'"]
"#,
        loadgen = env!("CARGO_BIN_EXE_perfvisor-loadgen"),
        delivered = delivered.display(),
    )
}

const SUPERVISOR: &str = "probe_interval = \"200ms\"\njudge_interval = \"1s\"";

/// Stop, start, three restarts and a reload that restarts the worker, then a final stop held
/// past `daemon_down`'s 2 s: nothing is delivered, no alert fires, the report counts no
/// restart, and every exit in the lifecycle history is marked intended. Then a SIGKILL from
/// outside is a crash: an unintended exit, counted.
#[test]
fn operator_actions_page_nothing() {
    let mut pv = Instance::new();
    let delivered = pv.dir.path().join("delivered.jsonl");
    pv.write_config(SUPERVISOR, &config(&delivered, "one"));
    pv.start();
    let cli = |args: &[&str]| pv.cli(args);
    let ok = |args: &[&str]| {
        let out = cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The worker's pid once it is watched (its report exists) and differs from `not`.
    let watched_pid = |not: u32| -> u32 {
        let started = Instant::now();
        loop {
            let out = cli(&["status", "--json"]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let pid = v["managed"][0]["pid"].as_u64().unwrap_or(0) as u32;
                if pid != 0 && pid != not && cli(&["report", "worker"]).status.success() {
                    return pid;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "worker not watched with a new pid: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut pid = watched_pid(0);
    ok(&["stop", "worker"]);
    ok(&["start", "worker"]);
    pid = watched_pid(pid);
    for _ in 0..3 {
        ok(&["restart", "worker"]);
        pid = watched_pid(pid);
    }
    pv.write_config(SUPERVISOR, &config(&delivered, "two"));
    ok(&["reload"]);
    pid = watched_pid(pid);
    let db = pv.db.clone();
    // The supervisor hands each lifecycle event to the analyzer, the rules and the history
    // together: once the history has one intended exit or restart for each of the three
    // restarts and the reload, the report has seen them.
    let intended_exits = || {
        StorageReader::open(&db)
            .and_then(|r| r.events(None, 0, i64::MAX))
            .map_or(0, |events| {
                events
                    .iter()
                    .filter(|e| e.intended && e.kind.as_str() != "stopped")
                    .count()
            })
    };
    let started = Instant::now();
    while intended_exits() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "intended restarts not stored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&cli(&["report", "worker", "--json"]).stdout).unwrap();
    assert_eq!(report["restarts_recent"], 0, "{report}");
    ok(&["stop", "worker"]);
    // That nothing fires can only be watched for: past daemon_down's 2 s plus a few probes
    // and judgements, checked all along.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        let alerts = cli(&["alerts", "--json"]);
        let firing: serde_json::Value = serde_json::from_slice(&alerts.stdout).unwrap();
        assert_eq!(firing.as_array().map(Vec::len), Some(0), "{firing}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent = std::fs::read_to_string(&delivered).unwrap_or_default();
    assert!(sent.trim().is_empty(), "delivered: {sent}");

    let events = StorageReader::open(&db)
        .unwrap()
        .events(None, 0, i64::MAX)
        .unwrap();
    // Two stops, three restarts and the reload: each an exit, a restart or a stop.
    let exits: Vec<_> = events
        .iter()
        .filter(|e| e.kind.as_str() != "started")
        .collect();
    assert!(exits.len() >= 6, "{events:#?}");
    assert!(exits.iter().all(|e| e.intended), "{events:#?}");

    // A crash is still a crash: kill the restarted worker from outside.
    ok(&["start", "worker"]);
    pid = watched_pid(pid);
    // SAFETY: kill with a valid signal number on a pid this test's perfvisor started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let started = Instant::now();
    loop {
        let events = StorageReader::open(&db)
            .unwrap()
            .events(None, 0, i64::MAX)
            .unwrap();
        if events
            .iter()
            .any(|e| e.kind.as_str() == "exited" && !e.intended && e.pid == pid)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the crash is not recorded as an unintended exit: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pv.terminate();
}
