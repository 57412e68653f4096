//! Tests of the OTLP intake: mapping resources to daemons, points to samples, totals to
//! deltas, the JSON encoding, and what is refused.

use super::*;

fn kv(key: &str, value: proto::Any) -> proto::KeyValue {
    proto::KeyValue {
        key: key.into(),
        value: Some(proto::AnyValue { value: Some(value) }),
    }
}

fn request(
    resource: Vec<proto::KeyValue>,
    metrics: Vec<proto::Metric>,
) -> proto::ExportMetricsServiceRequest {
    proto::ExportMetricsServiceRequest {
        resource_metrics: vec![proto::ResourceMetrics {
            resource: Some(proto::Resource {
                attributes: resource,
            }),
            scope_metrics: vec![proto::ScopeMetrics { metrics }],
        }],
    }
}

fn gauge(name: &str, v: f64, attributes: Vec<proto::KeyValue>) -> proto::Metric {
    proto::Metric {
        name: name.into(),
        unit: String::new(),
        data: Some(proto::Data::Gauge(proto::Gauge {
            data_points: vec![proto::NumberDataPoint {
                attributes,
                value: Some(proto::Value::AsDouble(v)),
                ..Default::default()
            }],
        })),
    }
}

/// Interpolation within the bucket that holds the rank; the first bucket starts at 0,
/// the unbounded one answers the highest bound.
#[test]
fn bucket_quantiles_interpolate() {
    // Buckets (≤1], (1,2], (2,4], (4,∞): 10 observations in (1,2], none elsewhere.
    let bounds = [1.0, 2.0, 4.0];
    assert_eq!(bucket_quantile(&bounds, &[0, 10, 0, 0], 0.5), Some(1.5));
    assert_eq!(bucket_quantile(&bounds, &[0, 10, 0, 0], 0.9), Some(1.9));
    assert_eq!(bucket_quantile(&bounds, &[10, 0, 0, 0], 0.5), Some(0.5));
    assert_eq!(bucket_quantile(&bounds, &[0, 0, 0, 5], 0.99), Some(4.0));
    // 50 in (≤1], 50 in (2,4]: the median is the top of the first bucket.
    assert_eq!(bucket_quantile(&bounds, &[50, 0, 50, 0], 0.5), Some(1.0));
    assert_eq!(bucket_quantile(&bounds, &[50, 0, 50, 0], 0.75), Some(3.0));
    assert_eq!(bucket_quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
    assert_eq!(bucket_quantile(&[], &[3], 0.5), None);
}

/// The pid of a watched daemon wins over the service name; the service name names the
/// daemon otherwise; without either the points are the host's. The attribute names
/// are the mapping's.
#[test]
fn resources_map_onto_daemons() {
    let mapping = OtlpMapping::default();
    let pids = HashMap::from([(42u32, "indexer".to_string())]);
    let m = || vec![gauge("app.queue", 1.0, vec![])];
    let by_pid = request(
        vec![
            kv("service.name", proto::Any::String("svc".into())),
            kv("process.pid", proto::Any::Int(42)),
        ],
        m(),
    );
    assert_eq!(
        map_request(&by_pid, &mapping, &pids).points[0]
            .daemon
            .as_deref(),
        Some("indexer")
    );
    let by_name = request(
        vec![
            kv("service.name", proto::Any::String("svc".into())),
            kv("process.pid", proto::Any::Int(7)),
        ],
        m(),
    );
    assert_eq!(
        map_request(&by_name, &mapping, &pids).points[0]
            .daemon
            .as_deref(),
        Some("svc")
    );
    assert_eq!(
        map_request(&request(vec![], m()), &mapping, &pids).points[0].daemon,
        None
    );
    let custom = OtlpMapping {
        service_attribute: "app.id".into(),
        pid_attribute: "pid".into(),
    };
    let req = request(
        vec![
            kv("app.id", proto::Any::String("x".into())),
            kv("pid", proto::Any::String("42".into())),
        ],
        m(),
    );
    assert_eq!(
        map_request(&req, &custom, &pids).points[0]
            .daemon
            .as_deref(),
        Some("indexer")
    );
}

/// Reserved names, too many or odd attributes, and missing values are refused per data
/// point with a reason; the rest pass.
#[test]
fn bad_points_are_counted_with_a_reason() {
    let pids = HashMap::new();
    let too_many: Vec<_> = (0..9)
        .map(|i| kv(&format!("k{i}"), proto::Any::Int(i)))
        .collect();
    let req = request(
        vec![],
        vec![
            gauge("process.memory.usage_bytes", 1.0, vec![]),
            gauge(
                "app.ok",
                1.0,
                vec![kv("route", proto::Any::String("/a".into()))],
            ),
            gauge("app.many", 1.0, too_many),
            gauge(
                "app.daemon",
                1.0,
                vec![kv("daemon", proto::Any::String("x".into()))],
            ),
            gauge("app.nan", f64::NAN, vec![]),
        ],
    );
    let mapped = map_request(&req, &OtlpMapping::default(), &pids);
    assert_eq!(mapped.points.len(), 1, "{mapped:?}");
    assert_eq!(
        mapped.points[0].labels,
        Labels::from_pairs([("route", "/a")])
    );
    assert_eq!(mapped.rejected, 4);
    let first = mapped.first_error.unwrap_or_default();
    assert!(first.contains("reserved namespace"), "{first}");
}

/// Running totals become increments; a reset counts whole; histograms yield count,
/// sum and percentiles of the observations since the previous export.
#[test]
fn cumulative_series_become_increments() {
    let mut intake = Intake::default();
    let counter = |v: f64, start: u64| Point {
        daemon: Some("d".into()),
        metric: "app.requests".into(),
        labels: Labels::empty(),
        value: PointValue::Counter {
            value: v,
            cumulative: true,
            start_ns: start,
        },
    };
    let values = |w: Vec<Write>| w.iter().map(|w| w.value).collect::<Vec<_>>();
    assert_eq!(values(intake.writes(vec![counter(5.0, 1)])), [5.0]);
    assert_eq!(values(intake.writes(vec![counter(8.0, 1)])), [3.0]);
    assert_eq!(values(intake.writes(vec![counter(2.0, 1)])), [2.0]);
    assert_eq!(values(intake.writes(vec![counter(4.0, 9)])), [4.0]);
    let hist = |counts: Vec<u64>, sum: f64| Point {
        daemon: None,
        metric: "app.latency".into(),
        labels: Labels::empty(),
        value: PointValue::Histogram {
            count: counts.iter().sum(),
            sum: Some(sum),
            bounds: vec![1.0, 2.0],
            counts,
            cumulative: true,
            start_ns: 1,
        },
    };
    let w = intake.writes(vec![hist(vec![10, 0, 0], 5.0)]);
    assert_eq!(
        w.iter().map(|w| w.metric.as_str()).collect::<Vec<_>>(),
        [
            "app.latency.count",
            "app.latency.sum",
            "app.latency.p50",
            "app.latency.p90",
            "app.latency.p99"
        ]
    );
    assert_eq!(w[2].value, 0.5);
    // The second export adds 10 observations in (1, 2]: the percentiles are theirs.
    let w = intake.writes(vec![hist(vec![10, 10, 0], 20.0)]);
    assert_eq!(values(w), [10.0, 15.0, 1.5, 1.9, 1.99]);
}

/// A metric may hold only so many attribute sets; the refusal names it.
#[test]
fn attribute_sets_are_bounded_per_metric() {
    let mut intake = Intake::default();
    let p = |i: usize| Point {
        daemon: None,
        metric: "app.x".into(),
        labels: Labels::from_pairs([("k", i.to_string())]),
        value: PointValue::Gauge(1.0),
    };
    let first: Vec<Point> = (0..MAX_LABEL_SETS_PER_METRIC).map(p).collect();
    intake.admit_labels(&first).unwrap();
    intake.admit_labels(&first).unwrap();
    let err = intake
        .admit_labels(&[p(MAX_LABEL_SETS_PER_METRIC)])
        .unwrap_err();
    assert!(err.contains("\"app.x\""), "{err}");
}

/// Both encodings decode to the same request; a bad body's error says which encoding
/// and what was wrong.
#[test]
fn both_encodings_decode_alike() {
    let req = request(
        vec![kv("service.name", proto::Any::String("svc".into()))],
        vec![gauge(
            "app.g",
            2.5,
            vec![kv("route", proto::Any::String("/a".into()))],
        )],
    );
    let from_proto = decode(Encoding::Protobuf, &req.encode_to_vec()).unwrap();
    let json = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
        "scopeMetrics":[{"scope":{"name":"s"},"metrics":[{"name":"app.g","gauge":{"dataPoints":[
        {"attributes":[{"key":"route","value":{"stringValue":"/a"}}],"timeUnixNano":"1700000000000000000","asDouble":2.5}]}}]}]}]}"#;
    let from_json = decode(Encoding::Json, json).unwrap();
    let pids = HashMap::new();
    let a = map_request(&from_proto, &OtlpMapping::default(), &pids);
    let b = map_request(&from_json, &OtlpMapping::default(), &pids);
    assert_eq!(a.points, b.points);
    assert_eq!(a.points.len(), 1);
    let err = decode(Encoding::Protobuf, b"\xff\xff\xff").unwrap_err();
    assert!(err.contains("protobuf"), "{err}");
    let err = decode(Encoding::Json, br#"{"resourceMetrics": 3}"#).unwrap_err();
    assert!(err.contains("JSON"), "{err}");
}
