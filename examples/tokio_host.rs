//! A tokio daemon manager embedding perfvisor without any actix code: it instruments itself
//! only through the `metrics` macros and `#[tracing::instrument]`, receives alerts from
//! `pv.alerts()`, and restarts a leaking child through an async daemon control.
//!
//! ```text
//! cargo run --example tokio_host
//! ```
//!
//! It starts a child that leaks 20 MiB/s (this binary re-run as `--child leak`), waits for
//! perfvisor's leak alert and the restart it asks for, replaces the child with one that
//! does not leak, waits for the alert to resolve, and prints the host's own report: its
//! request counter, and the histograms of its request latency and of its traced operation
//! (count, mean, p50/p90/p99 over the analysis window) with their `route` label. Exits non-zero if any step does not happen within a minute.

use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{counter, histogram};
use perfvisor::{
    AlertState, DaemonId, DaemonSpec, JudgeConfig, Perfvisor, RuleAction, ThresholdRule,
};
use tracing_subscriber::layer::SubscriberExt;

/// The whole run's limit.
const LIMIT: Duration = Duration::from_secs(60);
/// The analysis window, minutes: reports cover the last this many minutes.
const WINDOW_MIN: u64 = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(args.get(2).map(String::as_str) == Some("leak"));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio_host: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { tokio::time::timeout(LIMIT, host()).await }) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("tokio_host: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("tokio_host: not done within {LIMIT:?}");
            ExitCode::FAILURE
        }
    }
}

/// A child process: leaks 20 MiB a second, or idles; ends with its parent's stdin.
fn child(leak: bool) {
    let mut held: Vec<Vec<u8>> = Vec::new();
    let stdin = std::thread::spawn(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
    });
    while !stdin.is_finished() {
        if leak {
            held.push(vec![1u8; 2 << 20]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts this binary as a child; it ends when the returned handle is killed or dropped.
fn spawn_child(leak: bool) -> std::io::Result<Child> {
    let me = std::env::current_exe()?;
    Command::new(me)
        .args(["--child", if leak { "leak" } else { "idle" }])
        .stdin(Stdio::piped())
        .spawn()
}

/// One request the host serves, traced: a span per call with its route and result size.
#[tracing::instrument(skip_all, fields(route = "/search", results))]
async fn serve(i: u64) {
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(2 + i % 3)).await;
    tracing::Span::current().record("results", i % 10);
    counter!("requests_total", "route" => "/search").increment(1);
    histogram!("request_latency_seconds", "route" => "/search")
        .record(started.elapsed().as_secs_f64());
}

async fn host() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let pv = Perfvisor::builder()
        .database(dir.path().join("history.db"))
        .probe_interval(Duration::from_millis(100))
        .judge_interval(Duration::from_millis(300))
        .analysis_window(100)
        .judge_config(JudgeConfig {
            min_trend_span_ms: 3_000,
            startup_grace_ms: 1_000,
            ..JudgeConfig::default()
        })
        .analysis_span(Duration::from_secs(WINDOW_MIN * 60))
        // A short histogram interval, so that this short run stores several.
        .histogram_interval(Duration::from_secs(1))
        .rule(
            ThresholdRule::signal("restart_leaks", "bottleneck.memory_leak")
                .action(RuleAction::RestartDaemon),
        )
        .start()
        .map_err(|e| e.to_string())?;

    // The host's own instrumentation goes to perfvisor: metrics macros and tracing spans.
    metrics::set_global_recorder(pv.metrics_recorder())
        .map_err(|e| format!("metrics recorder: {e}"))?;
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(pv.tracing_layer()),
    )
    .map_err(|e| format!("tracing subscriber: {e}"))?;

    // The child perfvisor watches, and the async control that restarts it.
    let current = Arc::new(Mutex::new(spawn_child(true).map_err(|e| e.to_string())?));
    let first = current.lock().map_err(|e| e.to_string())?.id();
    pv.daemon_started(DaemonSpec::new("worker", first))
        .await
        .map_err(|e| e.to_string())?;
    let (restarted_tx, mut restarted) = tokio::sync::mpsc::unbounded_channel::<u32>();
    {
        let (pv, current) = (pv.clone(), current.clone());
        pv.clone()
            .set_async_daemon_control(move |daemon: DaemonId| {
                let (pv, current, tx) = (pv.clone(), current.clone(), restarted_tx.clone());
                async move {
                    // A planned restart: perfvisor counts it as intent, not a crash.
                    pv.daemon_restarting(daemon.clone(), Duration::from_secs(5))
                        .await
                        .map_err(|e| e.to_string())?;
                    let pid = {
                        let mut child = current.lock().map_err(|e| e.to_string())?;
                        let _ = child.kill();
                        let _ = child.wait();
                        *child = spawn_child(false).map_err(|e| e.to_string())?;
                        child.id()
                    };
                    pv.daemon_started(DaemonSpec::new(daemon, pid))
                        .await
                        .map_err(|e| e.to_string())?;
                    tx.send(pid).map_err(|e| e.to_string())
                }
            })
            .map_err(|e| e.to_string())?;
    }

    // The host's work, while perfvisor watches.
    let worker = tokio::spawn(async {
        for i in 0.. {
            serve(i).await;
        }
    });

    let mut alerts = pv.alerts().await.map_err(|e| e.to_string())?;
    let mut fired = false;
    let mut new_pid = None;
    while let Some(alert) = alerts.recv().await {
        if alert.rule != "restart_leaks" {
            continue;
        }
        println!("alert: {:?} {}", alert.state, alert.message);
        match alert.state {
            AlertState::Firing => {
                fired = true;
                new_pid = restarted.recv().await;
                println!("restarted worker through the async control: new pid {new_pid:?}");
            }
            AlertState::Resolved if fired => break,
            _ => {}
        }
    }
    worker.abort();
    if !fired || new_pid.is_none() {
        return Err("the leak alert and restart never came".into());
    }

    pv.flush().await.map_err(|e| e.to_string())?;
    let report = pv
        .host_report()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no host report")?;
    let own: Vec<_> = report
        .series
        .iter()
        .filter(|s| s.metric.as_str().starts_with("requests"))
        .collect();
    println!("the host's own series in its report:");
    for s in &own {
        println!(
            "  {}{{{}}}: {} samples, mean {:.4}",
            s.metric.as_str(),
            s.labels.to_text(),
            s.stats.count,
            s.stats.mean,
        );
    }
    // Latencies and spans are histograms: per window, count, sum, mean and quantiles from
    // merged DDSketches (each quantile within the relative accuracy printed).
    println!("the host's own histograms over the last {WINDOW_MIN} minutes:");
    for h in &report.histograms {
        println!(
            "  {}{{{}}}: {} observations, mean {:.4} s, p50 {:.4} s, p90 {:.4} s, p99 {:.4} s \
             (±{:.1} %)",
            h.metric.as_str(),
            h.labels.to_text(),
            h.count,
            h.mean,
            h.p50,
            h.p90,
            h.p99,
            h.relative_accuracy * 100.0
        );
    }
    let counted = own
        .iter()
        .any(|s| s.metric.as_str() == "requests_total" && s.labels.get("route") == Some("/search"));
    let histogram = |name: &str| {
        report.histograms.iter().any(|h| {
            h.metric.as_str() == name && h.labels.get("route") == Some("/search") && h.count > 0
        })
    };
    if !counted || !histogram("request_latency_seconds") {
        return Err("the request metrics are missing or lack their route label".into());
    }
    if !histogram("app.operation.serve.duration_seconds") {
        return Err("the traced operation is missing or lacks its route label".into());
    }
    pv.shutdown().await.map_err(|e| e.to_string())?;
    if let Ok(mut child) = current.lock() {
        let _ = child.kill();
        let _ = child.wait();
    }
    println!("done");
    Ok(())
}
