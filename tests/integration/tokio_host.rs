//! Embedding from a tokio host without actix: alerts as a stream, an async daemon control
//! set on the running handle, and calls that are refused with the reason.

use std::time::Duration;

use perfvisor::{AlertState, DaemonId, DaemonSpec, Error, RuleAction, ThresholdRule};

use crate::support::{self, wait_for};

/// `alerts()` delivers the firing and the resolution of a rule to a plain tokio task, and a
/// restart action reaches an async control set after the engine started; the action is
/// recorded as done.
#[tokio::test]
async fn alerts_stream_and_async_control() {
    let rule = ThresholdRule::above("slow_search", "search.latency_seconds", 0.5)
        .action(RuleAction::RestartDaemon);
    let t = support::start(|b| b.rule(rule));
    let mut alerts = t.pv.alerts().await.expect("subscribed");
    let (restarts_tx, mut restarts) = tokio::sync::mpsc::unbounded_channel::<DaemonId>();
    t.pv.set_async_daemon_control(move |daemon: DaemonId| {
        let tx = restarts_tx.clone();
        async move {
            // An await on the host's runtime: the control runs there.
            tokio::task::yield_now().await;
            tx.send(daemon).map_err(|e| e.to_string())
        }
    })
    .expect("control set");

    let rec = t.pv.recorder().for_daemon("searcher");
    rec.record("search.latency_seconds", 0.9);
    let fired = tokio::time::timeout(Duration::from_secs(5), alerts.recv())
        .await
        .expect("an alert within 5 s")
        .expect("the stream is open");
    assert_eq!(fired.rule, "slow_search");
    assert_eq!(fired.state, AlertState::Firing);
    let restarted = tokio::time::timeout(Duration::from_secs(5), restarts.recv())
        .await
        .expect("a restart within 5 s");
    assert_eq!(restarted.as_ref().map(DaemonId::as_str), Some("searcher"));

    rec.record("search.latency_seconds", 0.1);
    let resolved = tokio::time::timeout(Duration::from_secs(5), alerts.recv())
        .await
        .expect("the resolution within 5 s")
        .expect("the stream is open");
    assert_eq!(resolved.state, AlertState::Resolved);
    assert_eq!(alerts.lagged(), 0);

    t.pv.shutdown().await.expect("shutdown");
    let reader = perfvisor::StorageReader::open(t.db()).expect("reader");
    let actions = reader.actions(None, i64::MIN, i64::MAX).expect("actions");
    assert!(
        actions
            .iter()
            .any(|a| a.rule == "slow_search" && a.outcome == "done"),
        "{actions:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), alerts.recv())
            .await
            .expect("the stream ends at shutdown")
            .is_none(),
        "no alert after shutdown"
    );
}

/// A rule on a signal perfvisor never raises, a non-finite threshold, and a pid that runs no
/// process are refused with what is wrong; nothing of them is kept.
#[tokio::test]
async fn invalid_calls_are_refused() {
    let t = support::start(|b| b);
    let typo = ThresholdRule::signal("leaks", "bottleneck.memory_leek");
    match t.pv.add_rule(typo).await {
        Err(Error::InvalidRule(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("bottleneck.memory_leek")
                    && text.contains("did you mean bottleneck.memory_leak"),
                "{text}"
            );
        }
        other => panic!("expected InvalidRule, got {other:?}"),
    }
    match t
        .pv
        .add_rule(ThresholdRule::above(
            "nan",
            "search.latency_seconds",
            f64::NAN,
        ))
        .await
    {
        Err(Error::InvalidRule(e)) => assert!(e.to_string().contains("NaN"), "{e}"),
        other => panic!("expected InvalidRule, got {other:?}"),
    }
    let rules = t.pv.rules().await.expect("rules");
    assert!(!rules.iter().any(|r| r.name == "leaks" || r.name == "nan"));

    let mut child = support::loadgen(&["--cpu", "0"]);
    let gone = child.pid();
    child.kill();
    match t.pv.daemon_started(DaemonSpec::new("ghost", gone)).await {
        Err(Error::InvalidDaemon { id, problem }) => {
            assert_eq!(id, "ghost");
            assert!(
                problem.contains(&format!("no process with pid {gone}")),
                "{problem}"
            );
        }
        other => panic!("expected InvalidDaemon, got {other:?}"),
    }
    wait_for(Duration::from_secs(2), "status answers", || async {
        t.pv.status().await.is_ok()
    })
    .await;
    let status = t.pv.status().await.expect("status");
    assert!(!status.watchers.iter().any(|w| w.daemon.as_str() == "ghost"));
    t.pv.shutdown().await.expect("shutdown");
}

/// A signal rule scoped to a project fires on a real leak of a daemon of that project and
/// acts through the async control; after the host's planned restart (`daemon_restarting`,
/// then the new pid) the alert's resolution reaches the stream.
#[tokio::test]
async fn project_scoped_leak_rule_acts_and_resolves_after_a_planned_restart() {
    let rule = ThresholdRule::signal("shop_leaks", "bottleneck.memory_leak")
        .for_project("shop")
        .action(RuleAction::RestartDaemon);
    let t = support::start(|b| {
        b.judge_interval(Duration::from_millis(300))
            .judge_config(support::fast_judgement())
            .analysis_window(100)
            .rule(rule)
    });
    let mut alerts = t.pv.alerts().await.expect("subscribed");
    let (restarts_tx, mut restarts) = tokio::sync::mpsc::unbounded_channel::<DaemonId>();
    t.pv.set_async_daemon_control(move |daemon: DaemonId| {
        let tx = restarts_tx.clone();
        async move { tx.send(daemon).map_err(|e| e.to_string()) }
    })
    .expect("control set");
    let mut leaky = support::loadgen(&["--leak-mib-per-sec", "20"]);
    t.pv.daemon_started(DaemonSpec::new("cart", leaky.pid()).project("shop"))
        .await
        .expect("announced");

    let wait = Duration::from_secs(30);
    let fired = next_of(&mut alerts, "shop_leaks", wait).await;
    assert_eq!(fired.state, AlertState::Firing);
    assert_eq!(fired.project.as_deref(), Some("shop"));
    let asked = tokio::time::timeout(wait, restarts.recv())
        .await
        .expect("a restart in time");
    assert_eq!(asked.as_ref().map(DaemonId::as_str), Some("cart"));

    // The host restarts it on purpose, into a build that does not leak.
    t.pv.daemon_restarting("cart", Duration::from_secs(5))
        .await
        .expect("announced");
    leaky.kill();
    let fresh = support::loadgen(&["--cpu", "0"]);
    t.pv.daemon_started(DaemonSpec::new("cart", fresh.pid()).project("shop"))
        .await
        .expect("announced");
    let resolved = next_of(&mut alerts, "shop_leaks", wait).await;
    assert_eq!(resolved.state, AlertState::Resolved);
    t.pv.shutdown().await.expect("shutdown");
    drop(fresh);
}

/// The next alert of `rule` on the stream, within `wait`.
async fn next_of(
    alerts: &mut perfvisor::AlertStream,
    rule: &str,
    wait: Duration,
) -> perfvisor::Alert {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let alert = tokio::time::timeout_at(deadline, alerts.recv())
            .await
            .unwrap_or_else(|_| panic!("no {rule} alert within {wait:?}"))
            .expect("the stream is open");
        if alert.rule == rule {
            return alert;
        }
    }
}

/// `examples/tokio_host.rs` (no actix import) runs to the end: its leak alert came from the
/// stream, the async control restarted the child, and its report shows its own metrics and
/// spans with their labels. `cargo test` builds examples; a run of this test alone needs
/// `cargo build --example tokio_host` first.
#[test]
fn tokio_host_example_runs() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_perfvisor"))
        .parent()
        .expect("the binaries' directory")
        .join("examples/tokio_host");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --example tokio_host` (cargo test builds it)",
        bin.display()
    );
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tokio_host.rs"),
    )
    .expect("the example's source");
    assert!(
        !source.contains("actix::") && !source.contains("use actix"),
        "the example must not use actix"
    );
    let out = std::process::Command::new(&bin)
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "alert: Firing restart_leaks",
        "restarted worker through the async control",
        "alert: Resolved restart_leaks",
        "requests_total{route=/search}",
        "the host's own histograms over the last 10 minutes",
        "request_latency_seconds{route=/search}: ",
        "app.operation.serve.duration_seconds{route=/search}: ",
        " observations, mean ",
        "done",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
