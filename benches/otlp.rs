//! OTLP intake cost per data point (BENCHMARKS.md, "OTLP intake"). One export of 1,000 data
//! points (100 metrics of 10 attribute sets: 40 gauges, 40 cumulative monotonic sums and 20
//! histograms of 10 buckets) from one daemon:
//!
//! - `decode+map/{protobuf,json}`: decoding the body, mapping resources onto the daemon,
//!   the push API's name checks, attribute labels, and turning totals into increments;
//! - `http/protobuf`: the whole `POST /v1/metrics` of a running perfvisor on 127.0.0.1 (the
//!   token check, the series cap, the recorder), one connection per export.
//!
//! Divide the time per export by 1,000 for the cost per data point.
//!
//! `cargo bench --bench otlp`

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use perfvisor::http::otlp::{self, proto, Encoding, Intake};
use perfvisor::http::{serve, ApiConfig, OtlpMapping};
use prost::Message as _;

const METRICS: usize = 100;
const SETS: usize = 10;

fn kv(key: &str, value: proto::Any) -> proto::KeyValue {
    proto::KeyValue {
        key: key.into(),
        value: Some(proto::AnyValue { value: Some(value) }),
    }
}

/// The export; `round` scales the sums' totals and the histograms' counts.
fn export(round: u64) -> proto::ExportMetricsServiceRequest {
    let mut metrics = Vec::with_capacity(METRICS);
    for m in 0..METRICS {
        let attrs = |s: usize| {
            vec![
                kv("route", proto::Any::String(format!("/api/{s}"))),
                kv("status", proto::Any::Int(200)),
            ]
        };
        let number = |s: usize, v: f64| proto::NumberDataPoint {
            attributes: attrs(s),
            start_time_unix_nano: 1,
            time_unix_nano: 1_700_000_000_000_000_000,
            value: Some(proto::Value::AsDouble(v)),
            flags: 0,
        };
        let data = match m % 5 {
            0 | 1 => proto::Data::Gauge(proto::Gauge {
                data_points: (0..SETS).map(|s| number(s, s as f64)).collect(),
            }),
            2 | 3 => proto::Data::Sum(proto::Sum {
                data_points: (0..SETS)
                    .map(|s| number(s, (round * 10 + s as u64) as f64))
                    .collect(),
                aggregation_temporality: proto::TEMPORALITY_CUMULATIVE,
                is_monotonic: true,
            }),
            _ => proto::Data::Histogram(proto::Histogram {
                aggregation_temporality: proto::TEMPORALITY_CUMULATIVE,
                data_points: (0..SETS)
                    .map(|s| {
                        let counts: Vec<u64> = (0..10).map(|b| round * (b + 1)).collect();
                        proto::HistogramDataPoint {
                            attributes: attrs(s),
                            start_time_unix_nano: 1,
                            time_unix_nano: 1_700_000_000_000_000_000,
                            count: counts.iter().sum(),
                            sum: Some(round as f64 * 3.5),
                            bucket_counts: counts,
                            explicit_bounds: (1..10).map(|b| b as f64 * 0.01).collect(),
                            flags: 0,
                        }
                    })
                    .collect(),
            }),
        };
        metrics.push(proto::Metric {
            name: format!("app.bench.metric_{m}"),
            unit: String::new(),
            data: Some(data),
        });
    }
    proto::ExportMetricsServiceRequest {
        resource_metrics: vec![proto::ResourceMetrics {
            resource: Some(proto::Resource {
                attributes: vec![kv("service.name", proto::Any::String("bench".into()))],
            }),
            scope_metrics: vec![proto::ScopeMetrics { metrics }],
        }],
    }
}

/// The same export in OTLP's JSON encoding.
fn json(request: &proto::ExportMetricsServiceRequest) -> String {
    use serde_json::{json, Value};
    let attrs = |kvs: &[proto::KeyValue]| -> Value {
        kvs.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(proto::Any::String(s)) => json!({"stringValue": s}),
                    Some(proto::Any::Int(i)) => json!({"intValue": i.to_string()}),
                    _ => json!({}),
                };
                json!({"key": kv.key, "value": v})
            })
            .collect()
    };
    let number = |p: &proto::NumberDataPoint| {
        let v = match p.value {
            Some(proto::Value::AsDouble(d)) => d,
            _ => 0.0,
        };
        json!({"attributes": attrs(&p.attributes), "startTimeUnixNano": p.start_time_unix_nano.to_string(),
               "timeUnixNano": p.time_unix_nano.to_string(), "asDouble": v})
    };
    let rm = &request.resource_metrics[0];
    let metrics: Vec<Value> = rm.scope_metrics[0]
        .metrics
        .iter()
        .map(|m| match &m.data {
            Some(proto::Data::Gauge(g)) => json!({"name": m.name, "gauge": {"dataPoints":
                g.data_points.iter().map(number).collect::<Vec<_>>()}}),
            Some(proto::Data::Sum(s)) => json!({"name": m.name, "sum": {"aggregationTemporality": 2,
                "isMonotonic": true, "dataPoints": s.data_points.iter().map(number).collect::<Vec<_>>()}}),
            Some(proto::Data::Histogram(h)) => json!({"name": m.name, "histogram": {"aggregationTemporality": 2,
                "dataPoints": h.data_points.iter().map(|p| json!({
                    "attributes": attrs(&p.attributes), "startTimeUnixNano": "1", "timeUnixNano": p.time_unix_nano.to_string(),
                    "count": p.count.to_string(), "sum": p.sum,
                    "bucketCounts": p.bucket_counts.iter().map(u64::to_string).collect::<Vec<_>>(),
                    "explicitBounds": p.explicit_bounds})).collect::<Vec<_>>()}}),
            _ => json!({}),
        })
        .collect();
    json!({"resourceMetrics": [{"resource": {"attributes": attrs(&rm.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default())},
        "scopeMetrics": [{"metrics": metrics}]}]})
    .to_string()
}

fn decode_and_map(c: &mut Criterion) {
    let mut group = c.benchmark_group("otlp");
    group.throughput(Throughput::Elements((METRICS * SETS) as u64));
    let mapping = OtlpMapping::default();
    let pids = HashMap::new();
    let bodies = [
        ("protobuf", Encoding::Protobuf, export(1).encode_to_vec()),
        ("json", Encoding::Json, json(&export(1)).into_bytes()),
    ];
    for (name, encoding, body) in &bodies {
        eprintln!("{name}: {} bytes per export of 1,000 points", body.len());
        let mut intake = Intake::default();
        group.bench_function(format!("decode+map/{name}"), |b| {
            b.iter(|| {
                let request = otlp::decode(*encoding, body).expect("decodes");
                let mapped = otlp::map_request(&request, &mapping, &pids);
                assert_eq!(mapped.rejected, 0);
                intake.admit_labels(&mapped.points).expect("admitted");
                intake.writes(mapped.points)
            })
        });
    }
    group.finish();
}

fn post(port: u16, body: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST /v1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bench\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("write");
    s.write_all(body).expect("body");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn http(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pv = perfvisor::Perfvisor::builder()
        .database(dir.path().join("bench.db"))
        .recorder_capacity(1 << 20)
        .start()
        .expect("perfvisor");
    let server = serve(
        pv.clone(),
        ApiConfig::new("127.0.0.1:0".parse().expect("addr"), Some("bench".into())),
    )
    .expect("api");
    let port = server.addr().port();
    let mut group = c.benchmark_group("otlp");
    group.throughput(Throughput::Elements((METRICS * SETS) as u64));
    group.measurement_time(Duration::from_secs(10));
    // The same export again and again: the totals repeat, so the sums and histograms are
    // increments of 0, the same work as any other.
    let body = export(1).encode_to_vec();
    group.bench_function("http/protobuf", |b| {
        b.iter(|| assert_eq!(post(port, &body), 200))
    });
    group.finish();
    server.stop();
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        let _ = rt.block_on(pv.shutdown());
    }
}

criterion_group!(benches, decode_and_map, http);
criterion_main!(benches);
