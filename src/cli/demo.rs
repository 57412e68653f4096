//! `perfvisor demo`: a supervisor from a temporary config that launches two small demo
//! daemons (`perfvisor-loadgen`, shipped with perfvisor): `leaky-cache` leaks memory, and
//! `slow-search` reports its request latency, which steps up after 35 s. The demo prints the
//! dashboard address, then the leak and the regression as perfvisor detects them, the alerts
//! it fires and its recommendations.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::Client;
use super::CliError;

/// How often the demo asks the supervisor what it found.
const POLL: Duration = Duration::from_secs(2);

/// The supervisor child: a thread waits for it and reports its exit on `exited`.
struct Supervisor {
    pid: u32,
    exited: crossbeam_channel::Receiver<std::process::ExitStatus>,
}

impl Supervisor {
    fn watch(mut child: Child) -> Supervisor {
        let pid = child.id();
        let (tx, exited) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(status);
            }
        });
        Supervisor { pid, exited }
    }
}

/// Ends the supervisor child (SIGTERM, then SIGKILL after 30 s) and removes the demo's files.
struct Cleanup {
    child: Option<Supervisor>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            // SAFETY: kill with valid signals on our own child's pid, which the waiter thread
            // has not reaped yet unless `exited` holds its status.
            if child.exited.try_recv().is_err() {
                unsafe { libc::kill(child.pid as i32, libc::SIGTERM) };
                if child.exited.recv_timeout(Duration::from_secs(30)).is_err() {
                    unsafe { libc::kill(child.pid as i32, libc::SIGKILL) };
                    let _ = child.exited.recv_timeout(Duration::from_secs(5));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn first<'a>(report: &'a Value, kind: &str) -> Option<&'a Value> {
    report["bottlenecks"]
        .as_array()?
        .iter()
        .find(|b| b["kind"] == kind)
}

/// Runs the demo; with `until_detected` it stops once both problems are detected (exit 0) or
/// after `timeout` (exit 1).
pub fn demo(listen: &str, until_detected: bool, timeout: Duration) -> Result<(), CliError> {
    let me =
        std::env::current_exe().map_err(|e| CliError::usage(format!("cannot find myself: {e}")))?;
    // The demo daemons are this very binary in its hidden `loadgen` mode.
    let dir = std::env::temp_dir().join(format!("perfvisor-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", dir.display())))?;
    let mut cleanup = Cleanup {
        child: None,
        dir: dir.clone(),
    };
    let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    // TOML strings: the path is written with Debug quoting, which escapes like TOML does.
    let lg = format!("{:?}, \"loadgen\"", me.display().to_string());
    let config = format!(
        r#"# perfvisor demo: two small daemons with a problem each.
[supervisor]
database = "{db}"
probe_interval = "500ms"
judge_interval = "2s"
listen = "{listen}"
token = "{token}"

# The demo is short: evidence spans shortened from the defaults (2 min of trend, 30 s of
# start-up grace) so the leak is judged within about a minute and a half.
[judgement]
min_trend_span = "60s"
startup_grace = "10s"

[[daemon]]
name = "leaky-cache"
command = [{lg}, "--hold-mib", "20", "--leak-mib-per-sec", "3"]
stop_timeout = "2s"

[[daemon]]
name = "slow-search"
command = [{lg}, "--cpu", "0.05", "--report-latency", "{listen}", "--as", "slow-search", "--token", "{token}", "--latency-ms", "12", "--regress-after", "35", "--regress-latency-ms", "45"]
stop_timeout = "2s"
"#,
        db = dir.join("demo.db").display(),
    );
    let config_path = dir.join("perfvisor.toml");
    std::fs::write(&config_path, config)
        .map_err(|e| CliError::usage(format!("cannot write the demo config: {e}")))?;
    let child = Command::new(&me)
        .args(["run", "--config"])
        .arg(&config_path)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| CliError::usage(format!("cannot start the supervisor: {e}")))?;
    cleanup.child = Some(Supervisor::watch(child));
    println!("perfvisor demo — dashboard and API at http://{listen}/");
    println!(
        "  leaky-cache leaks 3 MiB/s; slow-search's latency steps from 12 ms to 45 ms after 35 s."
    );
    println!(
        "  Watching (config in {}, Ctrl-C to stop)…",
        config_path.display()
    );
    let _ = std::io::stdout().flush();
    let client = Client::new(listen, super::client::Origin::Flag, Some(token));
    let started = Instant::now();
    let mut leak = false;
    let mut regression = false;
    let mut alerts_seen: Vec<String> = Vec::new();
    loop {
        // Wait one poll interval for the supervisor to exit (reported at once), then look.
        if let Some(child) = cleanup.child.as_ref() {
            match child.exited.recv_timeout(POLL) {
                Ok(status) => {
                    return Err(CliError::usage(format!(
                        "the supervisor stopped ({status})"
                    )))
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(CliError::usage("lost track of the supervisor process"))
                }
            }
        }
        let t = started.elapsed().as_secs();
        if !leak {
            if let Ok(r) = client.get("/api/v1/daemons/leaky-cache/report") {
                if let Some(b) = first(&r, "memory_leak") {
                    leak = true;
                    println!(
                        "[{t:>3} s] LEAK detected: {}",
                        b["summary"].as_str().unwrap_or("")
                    );
                    print_recommendations(&r, "memory_leak");
                }
            }
        }
        if !regression {
            if let Ok(r) = client.get("/api/v1/daemons/slow-search/report") {
                if let Some(b) = first(&r, "latency_regression") {
                    regression = true;
                    println!(
                        "[{t:>3} s] REGRESSION detected: {}",
                        b["summary"].as_str().unwrap_or("")
                    );
                    for e in b["evidence"].as_array().into_iter().flatten() {
                        println!("          {}", e["detail"].as_str().unwrap_or(""));
                    }
                    print_recommendations(&r, "latency_regression");
                }
            }
        }
        if let Ok(alerts) = client.get("/api/v1/alerts") {
            for a in alerts.as_array().into_iter().flatten() {
                let key = format!("{}/{}", a["rule"], a["daemon"]);
                if !alerts_seen.contains(&key) {
                    println!(
                        "[{t:>3} s] ALERT {} {} on {}: {}",
                        a["severity"].as_str().unwrap_or("?"),
                        a["rule"].as_str().unwrap_or("?"),
                        a["daemon"].as_str().unwrap_or("-"),
                        a["message"].as_str().unwrap_or("")
                    );
                    alerts_seen.push(key);
                }
            }
        }
        let _ = std::io::stdout().flush();
        if leak && regression && until_detected {
            println!("Both detected in {t} s.");
            return Ok(());
        }
        if until_detected && started.elapsed() >= timeout {
            return Err(CliError {
                message: format!(
                    "not detected within {timeout:?}: leak {leak}, regression {regression}"
                ),
                code: 1,
            });
        }
    }
}

fn print_recommendations(report: &Value, kind: &str) {
    for r in report["recommendations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["cause"] == kind)
        .take(3)
    {
        println!(
            "          → {} (expected: {}){}",
            r["action"].as_str().unwrap_or(""),
            r["expected_effect"].as_str().unwrap_or(""),
            if r["auto_action"].is_null() {
                ""
            } else {
                " [perfvisor can do this]"
            }
        );
    }
}
