//! The dashboard at `/`, loaded in a real headless Chromium (Debian package `chromium`):
//! the daemon list shows a watched daemon with its pid and CPU, and charts are drawn from
//! `/api/v1/query` (CPU and a host application metric). A screenshot is saved to
//! `dashboard-screenshot.png` in the target directory for CI to keep as an artifact.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perfvisor::http::{serve, ApiConfig};

use crate::support::{self, ChildGuard};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Chromium is killed by pid if a run takes longer than this.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
const DAEMON: &str = "web";
const APP_METRIC: &str = "search.latency_seconds";

/// Runs headless Chromium on `url` with `extra` flags in a fresh profile; returns what it
/// wrote on stdout. Panics (after killing it by pid) if it outlives [`CHROMIUM_TIMEOUT`] or
/// fails.
fn chromium(url: &str, extra: &[String]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let profile = dir.path().join("profile");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let child = Command::new(CHROMIUM)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--virtual-time-budget=8000")
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        // Files, not pipes: Chromium's helper processes inherit them and may outlive it.
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start chromium");
    let mut guard = ChildGuard(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            guard.kill();
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!(
                "chromium (pid {}) still running after {CHROMIUM_TIMEOUT:?}; killed. stderr:\n{}",
                guard.pid(),
                tail(&err, 3000)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium exited with {status}; stderr:\n{}",
        tail(&err, 3000)
    );
    out
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The text of the cell `data-col="col"` in `row` (the page puts no markup in these cells).
fn cell<'a>(row: &'a str, col: &str) -> Option<&'a str> {
    let marker = format!("data-col=\"{col}\"");
    let at = row.find(&marker)?;
    let rest = &row[at..];
    let rest = &rest[rest.find('>')? + 1..];
    Some(rest[..rest.find('<')?].trim())
}

/// Every element with class `chart`: (data-metric, data-points).
fn charts(dom: &str) -> Vec<(String, u64)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let marker = format!(" {name}=\"");
        let at = tag.find(&marker)? + marker.len();
        Some(tag[at..at + tag[at..].find('"')?].to_string())
    };
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let Some(end) = rest.find('>') else { break };
        let tag = &rest[..end];
        let is_chart =
            attr(tag, "class").is_some_and(|c| c.split_whitespace().any(|c| c == "chart"));
        if is_chart {
            let metric = attr(tag, "data-metric").unwrap_or_default();
            let points = attr(tag, "data-points")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            out.push((metric, points));
        }
    }
    out
}

/// Acceptance: the dashboard, loaded in headless Chromium, shows the daemon list with live
/// values and charts with points; a screenshot is kept as a CI artifact.
#[tokio::test]
async fn dashboard_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            !support::external_required(),
            "{CHROMIUM} is missing; install the Debian package chromium"
        );
        eprintln!("SKIPPED: {CHROMIUM} is missing (apt-get install chromium)");
        return;
    }
    let started = Instant::now();
    let t = support::start(|b| b.judge_interval(Duration::from_millis(300)));
    let child = support::loadgen(&["--cpu", "0.3"]);
    let pid = child.pid();
    t.pv.daemon_started(perfvisor::DaemonSpec::new(DAEMON, pid))
        .await
        .expect("daemon announced");
    let server = serve(
        t.pv.clone(),
        ApiConfig::new("127.0.0.1:0".parse().unwrap(), None),
    )
    .expect("api starts");
    let url = format!("http://{}/", server.addr());

    // ~3 s of probes, with the host application observing its search latency meanwhile.
    let recorder = t.pv.recorder().for_daemon(DAEMON);
    let mut i = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        recorder.observe(APP_METRIC, 0.010 + f64::from(i % 7) * 0.002);
        i += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let dom = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || chromium(&url, &["--dump-dom".to_string()]))
            .await
            .expect("chromium run")
    };
    let shown = tail(&dom, 6000);
    let row_at = dom
        .find(&format!("<tr data-daemon=\"{DAEMON}\""))
        .unwrap_or_else(|| panic!("no row for {DAEMON} in #daemons:\n{shown}"));
    assert!(
        dom[..row_at].contains("id=\"daemons\""),
        "the row is not in table#daemons:\n{shown}"
    );
    let row = &dom[row_at..row_at + dom[row_at..].find("</tr>").expect("row end")];
    assert_eq!(cell(row, "pid"), Some(pid.to_string().as_str()), "{row}");
    let cpu = cell(row, "cpu").unwrap_or_default();
    assert!(
        cpu.strip_suffix('%')
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| (0.0..=200.0).contains(&v)),
        "CPU cell {cpu:?} in {row}"
    );
    let mem = cell(row, "memory").unwrap_or_default();
    assert!(mem.ends_with("MiB"), "memory cell {mem:?} in {row}");
    let score = cell(row, "score").unwrap_or_default();
    assert!(
        score.parse::<f64>().is_ok(),
        "score cell {score:?} in {row}"
    );
    assert!(
        row.contains("class=\"level level-"),
        "no level badge in {row}"
    );
    for id in [
        "alerts",
        "recommendations",
        "bottlenecks",
        "restarts",
        "score",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no #{id}:\n{shown}");
    }

    let found = charts(&dom);
    let points = |metric: &str| {
        found
            .iter()
            .find(|(m, _)| m == metric)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no chart for {metric}: {found:?}"))
    };
    assert!(found.iter().any(|(_, p)| *p >= 2), "{found:?}");
    assert!(points("process.cpu.utilization_ratio") >= 2, "{found:?}");
    assert!(points("process.memory.usage_bytes") >= 2, "{found:?}");
    assert!(points(APP_METRIC) >= 2, "{found:?}");
    eprintln!(
        "dashboard DOM checked after {:?}: {found:?}",
        started.elapsed()
    );

    // The screenshot CI keeps.
    // Into the target directory in use (CI builds a clone with its target directory set).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let shot = target.join("dashboard-screenshot.png");
    std::fs::create_dir_all(shot.parent().unwrap()).expect("target dir");
    let _ = std::fs::remove_file(&shot);
    {
        let shot = shot.clone();
        tokio::task::spawn_blocking(move || {
            chromium(
                &url,
                &[
                    format!("--screenshot={}", shot.display()),
                    "--window-size=1280,900".to_string(),
                ],
            )
        })
        .await
        .expect("chromium run");
    }
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
    assert!(png.len() > 10_000, "screenshot of {} bytes only", png.len());
    eprintln!(
        "screenshot saved to {} ({} bytes) after {:?}",
        shot.display(),
        png.len(),
        started.elapsed()
    );

    server.stop();
    t.pv.shutdown().await.expect("shutdown");
    drop(child);
}
