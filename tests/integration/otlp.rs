//! `POST /v1/metrics` (OTLP/HTTP): protobuf and JSON exports built here land under the
//! sending daemon (by `process.pid`, else `service.name`) with their attributes as labels;
//! bad bodies get a 400 naming what was wrong; and a Python program using the official
//! OpenTelemetry SDK and OTLP/HTTP exporter, managed by a real `perfvisor run`, sends a
//! gauge, a counter and a histogram that `perfvisor report` then shows.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use perfvisor::http::otlp::proto;
use prost::Message as _;

use crate::support;

const TOKEN: &str = "otlp-token";

/// One HTTP/1.1 POST of raw bytes; returns (status, content type, body).
fn post(
    port: u16,
    path: &str,
    token: Option<&str>,
    ctype: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    post_encoded(port, path, token, ctype, None, body)
}

/// [`post`] with a `Content-Encoding`.
fn post_encoded(
    port: u16,
    path: &str,
    token: Option<&str>,
    ctype: &str,
    encoding: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    if let Some(e) = encoding {
        auth.push_str(&format!("Content-Encoding: {e}\r\n"));
    }
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("write head");
    stream.write_all(body).expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, response[split + 4..].to_vec())
}

fn kv(key: &str, value: proto::Any) -> proto::KeyValue {
    proto::KeyValue {
        key: key.into(),
        value: Some(proto::AnyValue { value: Some(value) }),
    }
}

fn export(resource: Vec<proto::KeyValue>, metrics: Vec<proto::Metric>) -> Vec<u8> {
    proto::ExportMetricsServiceRequest {
        resource_metrics: vec![proto::ResourceMetrics {
            resource: Some(proto::Resource {
                attributes: resource,
            }),
            scope_metrics: vec![proto::ScopeMetrics { metrics }],
        }],
    }
    .encode_to_vec()
}

fn number(v: f64, attributes: Vec<proto::KeyValue>) -> proto::NumberDataPoint {
    proto::NumberDataPoint {
        attributes,
        value: Some(proto::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn metric(name: &str, data: proto::Data) -> proto::Metric {
    proto::Metric {
        name: name.into(),
        unit: String::new(),
        data: Some(data),
    }
}

/// The latest sample of `metric` for `daemon` with label `route`, if any.
async fn latest(
    pv: &perfvisor::Perfvisor,
    daemon: &str,
    metric: &str,
) -> Option<perfvisor::Sample> {
    pv.latest().await.ok()?.into_iter().find(|s| {
        s.series.metric.as_str() == metric
            && matches!(&s.series.source, perfvisor::Source::Daemon(d) if d.as_str() == daemon)
    })
}

/// A protobuf export from a watched daemon's pid (with a misleading service name) lands
/// under that daemon; a JSON export by service name under the named daemon; attributes
/// are labels; a monotonic cumulative sum is a counter that follows the exporter's total;
/// a histogram gives count, sum and interpolated percentiles; both answer 200 with an
/// empty ExportMetricsServiceResponse in their own encoding.
#[tokio::test]
async fn protobuf_and_json_exports_land_under_their_daemon() {
    let t = support::start(|b| b);
    let server = support::api(&t.pv, TOKEN);
    let port = server.addr().port();
    let child = support::watched_idle_daemon(&t.pv, "indexer").await;
    let route = || vec![kv("route", proto::Any::String("/search".into()))];
    let sum = |total: f64| {
        metric(
            "app.requests",
            proto::Data::Sum(proto::Sum {
                data_points: vec![number(total, route())],
                aggregation_temporality: proto::TEMPORALITY_CUMULATIVE,
                is_monotonic: true,
            }),
        )
    };
    let body = export(
        vec![
            kv("service.name", proto::Any::String("misleading".into())),
            kv("process.pid", proto::Any::Int(i64::from(child.pid()))),
        ],
        vec![
            metric(
                "app.queue_length",
                proto::Data::Gauge(proto::Gauge {
                    data_points: vec![number(7.0, vec![])],
                }),
            ),
            sum(8.0),
            metric(
                "app.latency_seconds",
                proto::Data::Histogram(proto::Histogram {
                    aggregation_temporality: proto::TEMPORALITY_DELTA,
                    data_points: vec![proto::HistogramDataPoint {
                        attributes: route(),
                        count: 4,
                        sum: Some(0.1),
                        bucket_counts: vec![0, 4, 0],
                        explicit_bounds: vec![0.01, 0.05],
                        ..Default::default()
                    }],
                }),
            ),
        ],
    );
    let (status, ctype, answer) = post(
        port,
        "/v1/metrics",
        Some(TOKEN),
        "application/x-protobuf",
        &body,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(ctype, "application/x-protobuf");
    let decoded = proto::ExportMetricsServiceResponse::decode(&answer[..]).expect("a response");
    assert_eq!(decoded.partial_success, None);
    // The exporter's total goes from 8 to 10: perfvisor's counter follows, not 18.
    let body = export(
        vec![kv("process.pid", proto::Any::Int(i64::from(child.pid())))],
        vec![sum(10.0)],
    );
    let (status, _, _) = post(
        port,
        "/v1/metrics",
        Some(TOKEN),
        "application/x-protobuf",
        &body,
    );
    assert_eq!(status, 200);

    let json = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"jsvc"}}]},
        "scopeMetrics":[{"metrics":[{"name":"app.sessions","sum":{"aggregationTemporality":1,"isMonotonic":true,
        "dataPoints":[{"asInt":"4","timeUnixNano":"1700000000000000000","attributes":[{"key":"tier","value":{"intValue":"2"}}]}]}}]}]}]}"#;
    let (status, ctype, answer) = post(
        port,
        "/v1/metrics",
        Some(TOKEN),
        "application/json",
        json.as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert!(ctype.starts_with("application/json"), "{ctype}");
    assert_eq!(String::from_utf8_lossy(&answer), "{}");

    // A gzip body, as the OpenTelemetry Collector's exporter sends by default.
    let gauge = export(
        vec![kv("service.name", proto::Any::String("zipped".into()))],
        vec![metric(
            "app.zipped",
            proto::Data::Gauge(proto::Gauge {
                data_points: vec![number(3.0, vec![])],
            }),
        )],
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&gauge).unwrap();
    let zipped = gz.finish().unwrap();
    let pb = "application/x-protobuf";
    let (status, _, answer) =
        post_encoded(port, "/v1/metrics", Some(TOKEN), pb, Some("gzip"), &zipped);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let (status, _, answer) =
        post_encoded(port, "/v1/metrics", Some(TOKEN), pb, Some("br"), &gauge);
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&answer));

    let pv = &t.pv;
    support::wait_for(Duration::from_secs(10), "the OTLP samples", || async {
        let counter = latest(pv, "indexer", "app.requests").await;
        counter.is_some_and(|s| s.value == 10.0)
            && latest(pv, "indexer", "app.latency_seconds.p50")
                .await
                .is_some()
            && latest(pv, "jsvc", "app.sessions").await.is_some()
            && latest(pv, "zipped", "app.zipped").await.is_some()
    })
    .await;
    let gauge = latest(pv, "indexer", "app.queue_length")
        .await
        .expect("gauge");
    assert_eq!(gauge.value, 7.0);
    assert_eq!(gauge.kind, perfvisor::MetricKind::Gauge);
    let counter = latest(pv, "indexer", "app.requests")
        .await
        .expect("counter");
    assert_eq!(counter.kind, perfvisor::MetricKind::Counter);
    assert_eq!(counter.series.labels.get("route"), Some("/search"));
    // Four observations in (0.01, 0.05]: the median halfway, p90 at 90 % of the bucket.
    let p50 = latest(pv, "indexer", "app.latency_seconds.p50")
        .await
        .expect("p50");
    assert!((p50.value - 0.03).abs() < 1e-9, "{p50:?}");
    let p90 = latest(pv, "indexer", "app.latency_seconds.p90")
        .await
        .expect("p90");
    assert!((p90.value - 0.046).abs() < 1e-9, "{p90:?}");
    let count = latest(pv, "indexer", "app.latency_seconds.count")
        .await
        .expect("count");
    assert_eq!(count.value, 4.0);
    let sessions = latest(pv, "jsvc", "app.sessions").await.expect("json");
    assert_eq!(
        (sessions.value, sessions.series.labels.get("tier")),
        (4.0, Some("2"))
    );
    // Stored, not only in memory.
    t.pv.flush().await.expect("flush");
    assert!(support::stored_count(&t.db(), "app.latency_seconds.p50") >= 1);
    server.stop();
}

/// Bodies that are not an export, impossible points and names in perfvisor's namespaces get
/// a 400 saying what was wrong (a google.rpc.Status for protobuf, the API's JSON error for
/// JSON); a mix of good and bad points is a 200 with partial_success counting the bad; a
/// gzip body inflating past 1 MiB gets 413; other content types get 415; no token, 401.
#[tokio::test]
async fn bad_otlp_bodies_get_a_400_with_a_message() {
    let t = support::start(|b| b);
    let server = support::api(&t.pv, TOKEN);
    let port = server.addr().port();
    let pb = "application/x-protobuf";
    let status_message = |answer: &[u8]| {
        proto::Status::decode(answer)
            .map(|s| s.message)
            .unwrap_or_else(|e| format!("not a Status: {e}"))
    };

    let (status, _, answer) = post(
        port,
        "/v1/metrics",
        Some(TOKEN),
        pb,
        b"\x0a\xff\xff\xff\x0f garbage",
    );
    assert_eq!(status, 400);
    let message = status_message(&answer);
    assert!(message.contains("protobuf"), "{message}");

    for (body, expected) in [
        ("{not json", "JSON"),
        (r#"{"resourceMetrics": 3}"#, "JSON"),
        (
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"app.x","gauge":{"dataPoints":[{"asInt":"seven"}]}}]}]}]}"#,
            "is not a 64-bit integer",
        ),
    ] {
        let (status, _, answer) = post(
            port,
            "/v1/metrics",
            Some(TOKEN),
            "application/json",
            body.as_bytes(),
        );
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(expected), "{body}: {text}");
    }

    let gauge = |name: &str| {
        metric(
            name,
            proto::Data::Gauge(proto::Gauge {
                data_points: vec![number(1.0, vec![])],
            }),
        )
    };
    let bad_histogram = metric(
        "app.h",
        proto::Data::Histogram(proto::Histogram {
            aggregation_temporality: proto::TEMPORALITY_DELTA,
            data_points: vec![proto::HistogramDataPoint {
                count: 3,
                bucket_counts: vec![1, 2],
                explicit_bounds: vec![1.0, 2.0],
                ..Default::default()
            }],
        }),
    );
    for (metrics, expected) in [
        (
            vec![gauge("process.memory.usage_bytes")],
            "reserved namespace",
        ),
        (
            vec![bad_histogram.clone()],
            "2 bucket counts for 2 explicit bounds",
        ),
        (vec![gauge("app bad name")], "holds ' '"),
    ] {
        let (status, _, answer) = post(
            port,
            "/v1/metrics",
            Some(TOKEN),
            pb,
            &export(vec![], metrics),
        );
        assert_eq!(status, 400);
        let message = status_message(&answer);
        assert!(message.contains(expected), "{message}");
    }

    let (status, _, answer) = post(
        port,
        "/v1/metrics",
        Some(TOKEN),
        pb,
        &export(
            vec![],
            vec![gauge("app.fine"), bad_histogram, gauge("perfvisor.up")],
        ),
    );
    assert_eq!(status, 200);
    let partial = proto::ExportMetricsServiceResponse::decode(&answer[..])
        .expect("response")
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_data_points, 2);
    assert!(
        partial.error_message.contains("bucket counts"),
        "{}",
        partial.error_message
    );

    // A small gzip body that inflates past the 1 MiB limit is refused, not inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 4 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 10_000);
    let (status, _, _) = post_encoded(port, "/v1/metrics", Some(TOKEN), pb, Some("gzip"), &bomb);
    assert_eq!(status, 413);

    let (status, _, answer) = post(port, "/v1/metrics", Some(TOKEN), "text/plain", b"x");
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("application/x-protobuf"));
    let (status, _, _) = post(
        port,
        "/v1/metrics",
        None,
        pb,
        &export(vec![], vec![gauge("app.a")]),
    );
    assert_eq!(status, 401);
    server.stop();
}

/// The interpreter of a virtualenv with `opentelemetry-sdk` and
/// `opentelemetry-exporter-otlp-proto-http` (`.ci/run` makes one and sets
/// `PERFVISOR_OTEL_PYTHON`).
fn otel_python() -> Option<String> {
    let python = std::env::var("PERFVISOR_OTEL_PYTHON")
        .ok()
        .filter(|p| Path::new(p).exists());
    if python.is_none() {
        support::skip(
            "PERFVISOR_OTEL_PYTHON names no Python with opentelemetry-sdk and \
             opentelemetry-exporter-otlp-proto-http",
        );
    }
    python
}

/// A Python daemon managed by `perfvisor run` exports through the official OpenTelemetry
/// SDK and OTLP/HTTP exporter; perfvisor finds the daemon by its pid (its service.name is
/// another), stores the gauge, the counter (10, the exporter's total over two exports)
/// and the histogram's count and percentiles, and `perfvisor report` shows them.
#[test]
fn the_opentelemetry_python_sdk_reaches_the_daemons_report() {
    let Some(python) = otel_python() else {
        return;
    };
    let mut pv = support::Instance::new().found_by_config();
    let (port, token) = (pv.port, pv.token.clone());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/send_metrics.py");
    pv.write_config(
        "probe_interval = \"200ms\"",
        &format!(
            r#"[api]
anonymous_loopback_reads = true

[[daemon]]
name = "pyapp"
command = [{python:?}, {script:?}, "--api", "http://127.0.0.1:{port}", "--token", "{token}"]
startup_grace = "1s"
stop_timeout = "2s"
"#,
            script = script.display().to_string(),
        ),
    );
    pv.start();
    let report = || pv.cli(&["report", "pyapp", "--json"]);
    let started = Instant::now();
    let mut last = String::new();
    let series = loop {
        let out = report();
        if out.status.success() {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let series: Vec<serde_json::Value> =
                json["series"].as_array().cloned().unwrap_or_default();
            let has = |m: &str| series.iter().any(|s| s["metric"] == m);
            // The counter's total (a report shows counters as rates).
            let exposed = support::http_get(port, "/metrics")
                .map(|(_, b)| b)
                .unwrap_or_default();
            let total =
                exposed.contains("app_requests_total{daemon=\"pyapp\",route=\"/search\"} 10\n");
            if has("app.queue_length")
                && has("app.latency_seconds.p50")
                && has("app.requests")
                && total
            {
                break series;
            }
            last = format!(
                "queue_length {}, latency p50 {}, requests {}, total 10 on /metrics {total}: {}",
                has("app.queue_length"),
                has("app.latency_seconds.p50"),
                has("app.requests"),
                exposed
                    .lines()
                    .filter(|l| l.starts_with("app_"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the SDK's metrics never reached pyapp's report ({last}): {}\n{}\nperfvisor log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pv.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let last = |m: &str| {
        series
            .iter()
            .find(|s| s["metric"] == m)
            .and_then(|s| s["stats"]["last"].as_f64())
    };
    assert_eq!(last("app.queue_length"), Some(7.0));
    // Counters (count, requests) are rates in a report: their totals from /metrics.
    let exposed = support::http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert!(
        exposed.contains("app_latency_seconds_count_total{daemon=\"pyapp\",route=\"/search\"} 5\n"),
        "{exposed}"
    );
    // 0.003, 0.012, 0.012, 0.2, 0.8 in the buckets ≤0.005, (0.01, 0.025], (0.1, 0.25],
    // (0.5, 1]: rank 2.5 is 3/4 into (0.01, 0.025].
    let p50 = last("app.latency_seconds.p50").unwrap_or(f64::NAN);
    assert!((p50 - 0.02125).abs() < 1e-9, "{p50}");
    let requests = series
        .iter()
        .find(|s| s["metric"] == "app.requests")
        .unwrap();
    assert_eq!(requests["labels"]["route"], "/search", "{requests}");
    // The human report names them too.
    let human = pv.cli(&["report", "pyapp"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("app.latency_seconds.p99"), "{text}");
}
