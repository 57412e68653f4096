//! `perfvisor replay` through the real binary: a CSV with a known level shift gives the
//! expected alert at the expected simulated time (text and `--json`); bad CSV input exits 2
//! naming file:line; a range of a real perfvisor database written by the storage writer
//! replays with the stored labels.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use perfvisor_actors::storage::{StorageConfig, StorageHandle, StorageStats};
use perfvisor_actors::types::{Labels, MetricBatch, MetricKind, Sample, SeriesKey, Source};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_perfvisor"))
}

/// Deterministic noise in [-0.5, 0.5).
fn noise(i: i64) -> f64 {
    ((i * 7919) % 101) as f64 / 101.0 - 0.5
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("replay --json prints JSON")
}

/// The anomaly alerts of a replay's JSON: (state, at_ms).
fn anomaly_alerts(v: &Value, rule: &str) -> Vec<(String, i64)> {
    v["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["rule"] == rule)
        .map(|a| {
            (
                a["state"].as_str().unwrap_or("?").to_string(),
                a["at_ms"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// A CSV (NAB's timestamp format, with a header) stepping from 10 to 20 at minute 500 gives
/// one anomaly alert within 12 samples of the step, then its resolution; the text output
/// shows it at the local time and no epoch number.
#[test]
fn csv_level_shift_alert_at_expected_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue_depth.csv");
    let t0 = 1_767_225_600_i64; // 2026-01-01 00:00:00 UTC
    let mut csv = String::from("timestamp,value\n");
    for i in 0..800 {
        let t = t0 + i * 60;
        let level = if i < 500 { 10.0 } else { 20.0 };
        csv.push_str(&format!("{t},{}\n", level + noise(i)));
    }
    std::fs::write(&path, csv).unwrap();
    let out = bin()
        .args(["replay", "--json", "--daemon", "q"])
        .arg(&path)
        .output()
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["samples"], 800);
    let alerts = anomaly_alerts(&v, "anomaly.app.queue_depth");
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0].0, "firing");
    let step_ms = (t0 + 500 * 60) * 1000;
    assert!(
        alerts[0].1 >= step_ms && alerts[0].1 < step_ms + 12 * 60_000,
        "fired {} ms after the step",
        alerts[0].1 - step_ms
    );
    assert_eq!(alerts[1].0, "resolved");

    let text = bin()
        .args(["replay", "--daemon", "q"])
        .arg(&path)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    let minute = (alerts[0].1 / 1000 - t0) / 60;
    let expected = format!(
        "2026-01-01 {:02}:{:02}:00  FIRING",
        minute / 60,
        minute % 60
    );
    assert!(text.contains(&expected), "{expected:?} not in\n{text}");
    assert!(text.contains("Alerts: 1 fired, 1 resolved."), "{text}");
    assert!(
        !text.contains(&t0.to_string()[..6]),
        "an epoch number in\n{text}"
    );
}

/// Bad input exits 2 with the file, the line and what is accepted.
#[test]
fn bad_csv_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, expected) in [
        (
            "ts.csv",
            "timestamp,value\n1767225600,1\nnoon,2\n",
            "ts.csv:3: bad timestamp \"noon\"; accepted: epoch seconds or milliseconds",
        ),
        (
            "value.csv",
            "1767225600,1\n1767225660,lots\n",
            "value.csv:2: bad value \"lots\"; accepted: a number",
        ),
        ("empty.csv", "", "empty.csv: no samples"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = bin().arg("replay").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
}

/// Two hours of a daemon's metric (one sample every 10 s, a step at 500) written by the real
/// storage writer replay from the database: every sample of the range, the anomaly alert
/// at the step, with the stored project label.
#[test]
fn replays_a_range_of_a_real_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let handle = StorageHandle::spawn(
        StorageConfig::new(&db),
        Arc::new(StorageStats::default()),
        Arc::new(|_| Duration::ZERO),
    )
    .expect("writer starts");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = now - 2 * 3_600_000;
    let key = SeriesKey::new(
        Source::Daemon("d".into()),
        "app.queue_depth".to_string(),
        Labels::from_pairs([("project", "ws1")]),
    );
    let samples: Vec<Sample> = (0..700)
        .map(|i| Sample {
            series: key.clone(),
            kind: MetricKind::Gauge,
            ts_ms: start + i * 10_000,
            value: if i < 500 { 10.0 } else { 20.0 } + noise(i),
        })
        .collect();
    assert!(handle.store_blocking(Arc::new(MetricBatch { samples }), Duration::from_secs(10)));
    handle.flush(Duration::from_secs(10)).expect("flush");
    handle.shutdown(Duration::from_secs(10)).expect("shutdown");

    let out = bin()
        .args([
            "replay",
            "--json",
            "--daemon",
            "d",
            "--since",
            "3h",
            "--from-db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["samples"], 700);
    assert_eq!(
        v["series"][0]["key"]["labels"]["project"], "ws1",
        "{}",
        v["series"]
    );
    let alerts = anomaly_alerts(&v, "anomaly.app.queue_depth");
    assert_eq!(
        alerts.first().map(|a| a.0.as_str()),
        Some("firing"),
        "{alerts:?}"
    );
    let step = start + 500 * 10_000;
    assert!(alerts[0].1 >= step && alerts[0].1 < step + 12 * 10_000);
    let fired = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "anomaly.app.queue_depth")
        .unwrap();
    assert_eq!(fired["project"], "ws1");

    // A range with nothing in it is an error naming the file.
    let out = bin()
        .args(["replay", "--daemon", "nobody", "--from-db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no samples of daemon \"nobody\""));
}

/// With `--config`, the config's rules run: a project-scoped rule following the series'
/// anomalies fires for `--project ws1` (and replay adds no second rule for them); with
/// another project it does not match, and replay's own `anomaly.<metric>` rule does.
#[test]
fn config_rules_with_project_scope() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("depth.csv");
    let t0 = 1_767_225_600_i64;
    let mut text = String::new();
    for i in 0..700 {
        let level = if i < 500 { 10.0 } else { 20.0 };
        text.push_str(&format!("{},{}\n", t0 + i * 60, level + noise(i)));
    }
    std::fs::write(&csv, text).unwrap();
    let config = dir.path().join("perfvisor.toml");
    std::fs::write(
        &config,
        "[[rule]]\nname = \"ws1_depth\"\nkind = \"signal\"\nsignal = \"anomaly.app.depth\"\n\
         project = \"ws1\"\nseverity = \"critical\"\n",
    )
    .unwrap();
    let run = |project: &str| {
        let out = bin()
            .args(["replay", "--json", "--project", project, "--config"])
            .arg(&config)
            .arg(&csv)
            .output()
            .unwrap();
        json_of(&out)
    };
    let v = run("ws1");
    let rules: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(rules.contains(&"ws1_depth"), "{rules:?}");
    assert!(!rules.contains(&"anomaly.app.depth"), "{rules:?}");
    let fired = anomaly_alerts(&v, "ws1_depth");
    assert_eq!(
        fired.first().map(|a| a.0.as_str()),
        Some("firing"),
        "{}",
        v["alerts"]
    );

    let v = run("ws2");
    assert!(anomaly_alerts(&v, "ws1_depth").is_empty());
    assert!(!anomaly_alerts(&v, "anomaly.app.depth").is_empty());
}

/// The human output of a replay (a level shift CSV, in UTC) matches
/// `tests/golden/replay.txt`, the run time masked (rewrite it with UPDATE_GOLDEN=1).
#[test]
fn human_output_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("queue_depth.csv");
    let t0 = 1_767_225_600_i64;
    let mut text = String::from("timestamp,value\n");
    for i in 0..700 {
        let level = if i < 500 { 10.0 } else { 20.0 };
        text.push_str(&format!("{},{}\n", t0 + i * 60, level + noise(i)));
    }
    std::fs::write(&csv, text).unwrap();
    let out = bin()
        .args(["replay", "--daemon", "queue"])
        .arg(&csv)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    // The run time varies: "in 0.01 s (70000 samples/s)." becomes "in <time>.".
    if let (Some(a), Some(b)) = (text.find(", in "), text.find(" samples/s).")) {
        text.replace_range(a + 5..b + " samples/s)".len(), "<time>");
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/replay.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        text, expected,
        "rerun with UPDATE_GOLDEN=1 if the change is intended"
    );
}
