//! A tokio host embedding perfvisor, end to end: it launches two real daemons (one burns
//! CPU, one grows its memory), tells perfvisor about them, subscribes an actix actor and a
//! closure to alerts, records and profiles operations of its own, prints the alerts and the
//! reports it gets, stops the daemons and shuts perfvisor down. Runs in about 12 seconds.
//!
//! ```sh
//! cargo run --release --example embed [-- --db PATH]
//! ```
//!
//! The two daemons are this same executable started with `child-burn` / `child-grow`, so the
//! example needs nothing else on the machine.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use perfvisor::{metric_names as m, Alert, DaemonSpec, Perfvisor, Severity, ThresholdRule};

/// The host's own actor that receives alerts (a daemon manager would restart, page...).
struct OnCall;

impl Actor for OnCall {
    type Context = Context<Self>;
}

impl Handler<Alert> for OnCall {
    type Result = ();
    fn handle(&mut self, a: Alert, _: &mut Context<Self>) {
        println!(
            "[on-call actor] {:?} {} {}: {}",
            a.state, a.severity, a.rule, a.message
        );
        for r in &a.recommendations {
            println!("[on-call actor]   -> {r}");
        }
    }
}

fn child_main(mode: &str) {
    let start = Instant::now();
    let mut grown: Vec<Vec<u8>> = Vec::new();
    while start.elapsed() < Duration::from_secs(120) {
        match mode {
            "child-burn" => {
                let t = Instant::now();
                let mut x = 0u64;
                while t.elapsed() < Duration::from_millis(9) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => {
                grown.push(vec![7u8; 1024 * 1024]); // 1 MiB every 100 ms, touched
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    std::hint::black_box(&grown);
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn launch(mode: &str) -> std::io::Result<Daemon> {
    let exe = std::env::current_exe()?;
    Command::new(exe)
        .arg(mode)
        .stdin(Stdio::null())
        .spawn()
        .map(Daemon)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(mode) = args.get(1).filter(|a| a.starts_with("child-")) {
        child_main(mode);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let db = match args.iter().position(|a| a == "--db") {
        Some(i) => args.get(i + 1).cloned().ok_or("--db needs a path")?.into(),
        None => std::env::temp_dir().join(format!("perfvisor-embed-{}.db", std::process::id())),
    };

    let pv = Perfvisor::builder()
        .database(&db)
        .probe_interval(Duration::from_millis(500))
        .rule(
            ThresholdRule::above("high_cpu", m::PROCESS_CPU_UTILIZATION, 0.5)
                .for_duration(Duration::from_secs(2))
                .severity(Severity::Warning)
                .recommend("Profile the hot path; if the work is legitimate, give the daemon more workers or cores."),
        )
        .rule(
            ThresholdRule::above("memory_high", m::PROCESS_MEMORY_RSS, 64.0 * 1024.0 * 1024.0)
                .severity(Severity::Critical)
                .recommend("Look for unbounded caches or buffers; restart the daemon if it keeps growing."),
        )
        .rule(
            ThresholdRule::above("slow_search", "search.latency_seconds", 0.25)
                .cooldown(Duration::from_secs(60))
                .recommend("Cache frequent query results."),
        )
        .start()?;
    println!("perfvisor started; history in {}", db.display());

    // The host's actor lives in the host's own actix system (here, a thread of its own).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sys = actix::System::new();
        sys.block_on(async move {
            let _ = tx.send(OnCall.start().recipient());
        });
        let _ = sys.run();
    });
    pv.subscribe_alerts(rx.recv()?).await?;
    pv.on_alert(|a| println!("[closure] {:?} {}", a.state, a.rule))
        .await?;

    let burner = launch("child-burn")?;
    let grower = launch("child-grow")?;
    pv.daemon_started(DaemonSpec::new("burner", burner.0.id()).project("demo"))
        .await?;
    pv.daemon_started(DaemonSpec::new("grower", grower.0.id()).project("demo"))
        .await?;
    println!(
        "watching burner (pid {}) and grower (pid {})",
        burner.0.id(),
        grower.0.id()
    );

    // The host's own work, recorded and profiled.
    let rec = pv.recorder().for_daemon("burner");
    for i in 0..40u32 {
        {
            let mut trace = rec.profile("document_ingestion");
            tokio::time::sleep(Duration::from_millis(20)).await;
            trace.add_metric("files_processed", f64::from(5 + i % 3));
        }
        // A search latency that regresses halfway through.
        let latency = if i < 20 { 0.05 } else { 0.4 };
        rec.observe("search.latency_seconds", latency);
        rec.increment("search.requests", 1.0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    for id in ["burner", "grower"] {
        if let Some(r) = pv.report(id).await? {
            println!("\nreport for {id}:");
            for s in &r.series {
                println!(
                    "  {:<45} n={:<4} mean={:<14.4} p95={:<14.4} max={:.4}",
                    s.metric.as_str(),
                    s.stats.count,
                    s.stats.mean,
                    s.stats.p95,
                    s.stats.max
                );
            }
        }
    }
    println!("\nfiring now: {}", pv.firing_alerts().await?.len());

    pv.daemon_stopped("burner").await?;
    pv.daemon_stopped("grower").await?;
    drop((burner, grower));
    let status = pv.status().await?;
    println!(
        "status: {:?}, {} samples collected, {} alerts sent, {} dropped by the recorder",
        status.health, status.samples_collected, status.alerts_sent, status.recorder.dropped
    );
    pv.shutdown().await?;
    let stored = pv_count(&db)?;
    println!(
        "shut down cleanly; {stored} samples stored in {}",
        db.display()
    );
    Ok(())
}

fn pv_count(db: &std::path::Path) -> Result<u64, perfvisor::Error> {
    Ok(perfvisor::StorageReader::open(db)?.sample_count()?)
}
