//! perfvisor's judgement as series: a real `perfvisor run` with a managed daemon shows
//! `perfvisor_judgement_*` for it on `/metrics` (score, level, one bottleneck series per
//! kind with its severity, restarts, up, anomalies, managed state) and for the host, with
//! labels from fixed sets only, and keeps the score's history in its database (what
//! remote-write ships).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support;

const KINDS: [&str; 8] = [
    "cpu_bound",
    "memory_pressure",
    "memory_leak",
    "io_bound",
    "descriptor_exhaustion",
    "restart_instability",
    "latency_regression",
    "host_contention",
];

/// The `/metrics` lines of `family` (name followed by `{` or a space).
fn lines<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// The label names and values of one exposition line.
fn labels(line: &str) -> Vec<(String, String)> {
    let Some(inner) = line.split_once('{').and_then(|(_, r)| r.split_once('}')) else {
        return Vec::new();
    };
    inner
        .0
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Acceptance (issue 18, judgement as metrics): the running binary's `/metrics` has, for a
/// managed daemon, its score (0–100) and level (0–4), a bottleneck series for each of the
/// eight kinds with severity none/warning/critical, restarts, up = 1, its anomaly count and
/// managed state `running` = 1; the host has a score; every judgement label is from its
/// fixed set; and the score is stored at every judgement (several points in history).
#[test]
fn judgement_metrics_on_metrics_and_in_history() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = dir.path().join("perfvisor.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[supervisor]
database = "{db}"
probe_interval = "200ms"
judge_interval = "300ms"
listen = "127.0.0.1:{port}"
token = "s3cret"

[api]
anonymous_loopback_reads = true

[[daemon]]
name = "worker"
command = ["/bin/sh", "-c", "exec sleep 600"]
startup_grace = "1s"
stop_timeout = "2s"
"#,
            db = dir.path().join("pv.db").display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("perfvisor.log");
    let _run = support::RunGuard(support::start_run_logged(&config, &log));

    let started = Instant::now();
    let text = loop {
        let text = support::http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let ready = lines(&text, "perfvisor_judgement_score")
            .iter()
            .any(|l| l.contains("daemon=\"worker\""))
            && lines(&text, "perfvisor_judgement_managed_state")
                .iter()
                .any(|l| l.contains("daemon=\"worker\",state=\"running\"} 1"));
        if ready {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no judgement metrics for worker on /metrics:\n{text}\nlog:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let of_worker = |family: &str| -> Vec<&str> {
        lines(&text, family)
            .into_iter()
            .filter(|l| l.contains("daemon=\"worker\""))
            .collect()
    };
    let value = |line: &str| -> f64 {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let score = of_worker("perfvisor_judgement_score");
    assert_eq!(score.len(), 1, "{score:?}");
    assert!((0.0..=100.0).contains(&value(score[0])), "{score:?}");
    let level = of_worker("perfvisor_judgement_level");
    assert!(
        [0.0, 1.0, 2.0, 3.0, 4.0].contains(&value(level[0])),
        "{level:?}"
    );
    let bottlenecks = of_worker("perfvisor_judgement_bottleneck");
    let kinds: BTreeSet<String> = bottlenecks
        .iter()
        .flat_map(|l| labels(l))
        .filter(|(k, _)| k == "kind")
        .map(|(_, v)| v)
        .collect();
    // One series per kind, host contention included (the daemon's part in it).
    assert_eq!(kinds.len(), KINDS.len(), "{bottlenecks:?}");
    assert_eq!(bottlenecks.len(), KINDS.len(), "{bottlenecks:?}");
    assert!(
        kinds.iter().all(|k| KINDS.contains(&k.as_str())),
        "{kinds:?}"
    );
    for line in &bottlenecks {
        let l = labels(line);
        let severity = l
            .iter()
            .find(|(k, _)| k == "severity")
            .map(|(_, v)| v.as_str());
        assert!(
            matches!(severity, Some("none" | "warning" | "critical")),
            "{line}"
        );
        let names: BTreeSet<&str> = l.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            BTreeSet::from(["daemon", "kind", "severity"]),
            "{line}"
        );
    }
    assert_eq!(value(of_worker("perfvisor_judgement_up")[0]), 1.0);
    assert_eq!(
        value(of_worker("perfvisor_judgement_restarts_recent")[0]),
        0.0
    );
    assert_eq!(
        of_worker("perfvisor_judgement_anomalies_last_hour").len(),
        1
    );
    let running = of_worker("perfvisor_judgement_managed_state")
        .into_iter()
        .filter(|l| value(l) == 1.0)
        .collect::<Vec<_>>();
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(running[0].contains("state=\"running\""), "{running:?}");
    for family in [
        "perfvisor_judgement_trend_slope_per_second",
        "perfvisor_judgement_time_to_limit_seconds",
    ] {
        for line in lines(&text, family) {
            let resource = labels(line)
                .into_iter()
                .find(|(k, _)| k == "resource")
                .map(|(_, v)| v);
            assert!(
                matches!(
                    resource.as_deref(),
                    Some(
                        "cpu"
                            | "memory"
                            | "descriptors"
                            | "disk_read"
                            | "disk_write"
                            | "filesystem"
                    )
                ),
                "{line}"
            );
        }
    }
    let host = lines(&text, "perfvisor_judgement_score")
        .into_iter()
        .filter(|l| l.contains("source=\"host\""))
        .count();
    assert_eq!(host, 1, "{text}");
    assert!(text.contains("# TYPE perfvisor_judgement_score gauge"));

    // History: the score of several judgements is in the database, through the query API.
    let started = Instant::now();
    loop {
        let (_, body) = support::http_get(
            port,
            "/api/v1/query?daemon=worker&metric=perfvisor.judgement.score&from=0&to=9999999999999",
        )
        .unwrap_or_default();
        let stored: usize = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .map(|s| s["samples"].as_array().map_or(0, Vec::len))
                        .sum()
                })
            })
            .unwrap_or(0);
        if stored >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the judgement's score is not in history: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
