//! The HTTP API on 127.0.0.1: tokens on every mutating call, 400s (never 500s) for bad
//! input, registering an external daemon and pushing metrics, `/metrics` accepted by
//! `promtool check metrics` and scraped by a real Prometheus.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perfvisor::http::{serve, ApiConfig};

use crate::support::{self, http_get, ChildGuard};

const TOKEN: &str = "s3cret-token";

/// A raw HTTP/1.1 request to the API; returns (status, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    support::http_request(addr.port(), method, path, token, body).expect("request")
}

fn start() -> (support::TestPv, perfvisor::http::ApiServer) {
    let t = support::start(|b| b.judge_interval(Duration::from_millis(300)));
    let server = support::api(&t.pv, TOKEN);
    (t, server)
}

/// Acceptance 5: every mutating endpoint refuses a call without (or with a wrong) token;
/// malformed JSON and wrong types get a 400 with a message, never a 500.
#[tokio::test]
async fn mutating_calls_need_the_token_and_bad_input_is_a_400() {
    let (t, server) = start();
    let addr = server.addr();
    let mutating = [
        ("POST", "/api/v1/daemons", r#"{"id": "x", "pid": 1}"#),
        ("DELETE", "/api/v1/daemons/x", ""),
        (
            "POST",
            "/api/v1/silences",
            r#"{"id":"s","matchers":[{"name":"daemon","value":"x"}],"starts_ms":0,"ends_ms":1,"created_by":"t","comment":""}"#,
        ),
        ("DELETE", "/api/v1/silences/s", ""),
        (
            "POST",
            "/api/v1/metrics",
            r#"[{"metric": "m", "value": 1}]"#,
        ),
    ];
    for (method, path, body) in mutating {
        for token in [None, Some("wrong")] {
            let (status, text) = request(addr, method, path, token, Some(body));
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
            assert!(text.contains("token"), "{text}");
        }
    }
    let bad = [
        ("POST", "/api/v1/daemons", "{not json"),
        ("POST", "/api/v1/daemons", r#"{"id": "x", "pid": "seven"}"#),
        (
            "POST",
            "/api/v1/daemons",
            r#"{"id": "x", "pid": 1, "extra": true}"#,
        ),
        ("POST", "/api/v1/daemons", r#"{"id": "", "pid": 1}"#),
        ("POST", "/api/v1/daemons", r#"{"id": "x", "pid": 0}"#),
        ("POST", "/api/v1/metrics", r#"{"metric": "m"}"#),
        ("POST", "/api/v1/metrics", r#"[{"metric": "", "value": 1}]"#),
        (
            "POST",
            "/api/v1/metrics",
            r#"[{"metric": "m", "value": 1, "kind": "histogram"}]"#,
        ),
        (
            "POST",
            "/api/v1/silences",
            r#"{"id":"s","matchers":[],"starts_ms":0,"ends_ms":1,"created_by":"t","comment":""}"#,
        ),
        ("GET", "/api/v1/query?from=x&to=2", ""),
        ("GET", "/api/v1/query?from=10&to=2", ""),
        ("GET", "/api/v1/query?from=0&to=2&agg=p200", ""),
    ];
    for (method, path, body) in bad {
        let (status, text) = request(addr, method, path, Some(TOKEN), Some(body));
        assert_eq!(status, 400, "{method} {path} {body}: {text}");
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{text}"
        );
        assert!(json["accepted"].as_str().is_some(), "{text}");
    }
    let (status, _) = request(addr, "GET", "/api/v1/nothing", None, None);
    assert_eq!(status, 404);
    server.stop();
    t.pv.shutdown().await.unwrap();
}

/// A daemon manager in another language registers its daemon and pushes its metrics over
/// HTTP; status, daemons, reports and alerts read back.
#[tokio::test]
async fn external_daemon_registers_and_pushes_metrics() {
    let (t, server) = start();
    let addr = server.addr();
    let child = support::loadgen(&["--cpu", "0"]);
    let body = format!(
        r#"{{"id": "ext", "pid": {}, "project": "p1"}}"#,
        child.pid()
    );
    let (status, text) = request(addr, "POST", "/api/v1/daemons", Some(TOKEN), Some(&body));
    assert_eq!(status, 201, "{text}");
    let push = r#"[{"metric": "search.latency_seconds", "value": 0.012, "daemon": "ext", "kind": "observation"}]"#;
    let (status, text) = request(addr, "POST", "/api/v1/metrics", Some(TOKEN), Some(push));
    assert_eq!(status, 202, "{text}");
    let started = Instant::now();
    loop {
        let (status, text) = request(addr, "GET", "/api/v1/daemons/ext/report", Some(TOKEN), None);
        if status == 200 && text.contains("search.latency_seconds") && text.contains("process.cpu")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{status} {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, text) = request(addr, "GET", "/api/v1/daemons", Some(TOKEN), None);
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list[0]["daemon"], "ext", "{text}");
    for path in [
        "/api/v1/status",
        "/api/v1/host",
        "/api/v1/alerts",
        "/api/v1/silences",
    ] {
        let (status, text) = request(addr, "GET", path, Some(TOKEN), None);
        assert_eq!(status, 200, "{path}: {text}");
    }
    let (status, _) = request(addr, "DELETE", "/api/v1/daemons/ext", Some(TOKEN), None);
    assert_eq!(status, 200);
    let (status, _) = request(addr, "DELETE", "/api/v1/daemons/ext", Some(TOKEN), None);
    assert_eq!(status, 404);
    server.stop();
    t.pv.shutdown().await.unwrap();
    drop(child);
}

/// Off loopback the API refuses to start without a token.
#[test]
fn non_loopback_needs_a_token() {
    let t = support::start(|b| b);
    let err = serve(
        t.pv.clone(),
        ApiConfig::new("0.0.0.0:0".parse().unwrap(), None),
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs a token"), "{err}");
}

/// Acceptance 3: `promtool check metrics` accepts the exposition, and a real Prometheus
/// scrapes it; a perfvisor series is read back through Prometheus's query API.
#[tokio::test]
async fn prometheus_scrapes_metrics() {
    let prometheus = std::path::Path::new("/usr/bin/prometheus");
    let promtool = std::path::Path::new("/usr/bin/promtool");
    if !prometheus.exists() || !promtool.exists() {
        return support::skip("the Debian package prometheus is missing");
    }
    let (t, server) = start();
    let addr = server.addr();
    let _child = support::watched_idle_daemon(&t.pv, "scraped").await;
    let (status, text) = request(addr, "GET", "/metrics", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert!(text.contains("perfvisor_up 1"), "{text}");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: perfvisor\n    authorization:\n      credentials: '{TOKEN}'\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let port = support::free_port();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _prom = ChildGuard(child);
    let started = Instant::now();
    loop {
        if let Ok((200, body)) = http_get(
            port,
            "/api/v1/query?query=process_memory_usage_bytes%7Bdaemon%3D%22scraped%22%7D",
        ) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                let value = v["data"]["result"][0]["value"][1].as_str().unwrap_or("0");
                assert!(value.parse::<f64>().unwrap_or(0.0) > 0.0, "{body}");
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus never had the series"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    server.stop();
    t.pv.shutdown().await.unwrap();
}

/// Hostile input: an oversized body, deeply nested JSON, invalid UTF-8, out-of-range numbers
/// and a flood of invented series names all get a 4xx with a message, and the server keeps
/// answering meanwhile.
#[tokio::test]
async fn hostile_input_gets_4xx_and_the_server_keeps_serving() {
    let (t, server) = start();
    let addr = server.addr();
    let huge = format!(
        r#"[{{"metric": "m", "value": 1, "daemon": "{}"}}]"#,
        "x".repeat(2 << 20)
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, String)> = vec![
        ("oversized", huge),
        ("deep", deep),
        (
            "out of range",
            r#"[{"metric": "m", "value": 1e999}]"#.into(),
        ),
        ("NaN", r#"[{"metric": "m", "value": NaN}]"#.into()),
    ];
    for (what, body) in &cases {
        let (status, text) = request(addr, "POST", "/api/v1/metrics", Some(TOKEN), Some(body));
        assert!(
            (400..500).contains(&status),
            "{what}: {status} {}",
            &text[..text.len().min(200)]
        );
    }
    // Invalid UTF-8 in the body.
    {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let body: &[u8] = b"[{\"metric\": \"\xff\xfe\", \"value\": 1}]";
        write!(
            stream,
            "POST /api/v1/metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    }
    // Cardinality: invented names are refused past the limit, existing ones still accepted.
    let batch = |from: usize, n: usize| {
        let items: Vec<String> = (from..from + n)
            .map(|i| format!(r#"{{"metric": "invented.{i}", "value": 1}}"#))
            .collect();
        format!("[{}]", items.join(","))
    };
    let limit = perfvisor::http::MAX_PUSHED_SERIES;
    let (status, text) = request(
        addr,
        "POST",
        "/api/v1/metrics",
        Some(TOKEN),
        Some(&batch(0, limit)),
    );
    assert_eq!(status, 202, "{}", &text[..text.len().min(200)]);
    let (status, text) = request(
        addr,
        "POST",
        "/api/v1/metrics",
        Some(TOKEN),
        Some(&batch(limit, 1)),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("at most"), "{text}");
    let (status, _) = request(
        addr,
        "POST",
        "/api/v1/metrics",
        Some(TOKEN),
        Some(&batch(0, 1)),
    );
    assert_eq!(status, 202, "existing series are still accepted");
    let (status, _) = request(addr, "GET", "/api/v1/status", Some(TOKEN), None);
    assert_eq!(status, 200, "still serving");
    server.stop();
    t.pv.shutdown().await.unwrap();
}
