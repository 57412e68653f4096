//! OTLP's JSON encoding of an `ExportMetricsServiceRequest` (lowerCamelCase field names,
//! 64-bit integers as decimal strings or numbers, enums as integers, unknown fields
//! ignored as the OTLP specification asks), read with serde and turned into the protobuf
//! messages of `proto` so both encodings go through one mapping.

use serde::{Deserialize, Deserializer};

use super::proto;

/// A 64-bit integer written as a JSON string (the OTLP mapping) or as a number.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(i64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a 64-bit integer"))),
    }
}

fn uint64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = int64(d)?;
    u64::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is negative")))
}

fn uint64s<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    struct U(#[serde(deserialize_with = "uint64")] u64);
    Ok(Vec::<U>::deserialize(d)?.into_iter().map(|u| u.0).collect())
}

/// A double as a JSON number, or one of the strings `NaN`, `Infinity`, `-Infinity` (the
/// protobuf JSON mapping of non-finite doubles).
fn double<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(f64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(t) => match t.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a number"))),
        },
    }
}

fn some_double<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    double(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Request {
    #[serde(default)]
    resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceMetrics {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    scope_metrics: Vec<ScopeMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeMetrics {
    #[serde(default)]
    metrics: Vec<Metric>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metric {
    #[serde(default)]
    name: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    gauge: Option<Gauge>,
    #[serde(default)]
    sum: Option<Sum>,
    #[serde(default)]
    histogram: Option<Histogram>,
    #[serde(default)]
    exponential_histogram: Option<Points>,
    #[serde(default)]
    summary: Option<Points>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Gauge {
    #[serde(default)]
    data_points: Vec<NumberDataPoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sum {
    #[serde(default)]
    data_points: Vec<NumberDataPoint>,
    #[serde(default)]
    aggregation_temporality: i32,
    #[serde(default)]
    is_monotonic: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Histogram {
    #[serde(default)]
    data_points: Vec<HistogramDataPoint>,
    #[serde(default)]
    aggregation_temporality: i32,
}

/// The points of a kind perfvisor does not take, only counted.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Points {
    #[serde(default)]
    data_points: Vec<serde::de::IgnoredAny>,
}

/// What every data point starts with: its attributes and times.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PointHead {
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default, deserialize_with = "uint64")]
    start_time_unix_nano: u64,
    #[serde(default, deserialize_with = "uint64")]
    time_unix_nano: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NumberDataPoint {
    #[serde(flatten)]
    head: PointHead,
    #[serde(default, deserialize_with = "some_double")]
    as_double: Option<f64>,
    #[serde(default, deserialize_with = "some_int64")]
    as_int: Option<i64>,
    #[serde(default)]
    flags: u32,
}

fn some_int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    int64(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistogramDataPoint {
    #[serde(flatten)]
    head: PointHead,
    #[serde(default, deserialize_with = "uint64")]
    count: u64,
    #[serde(default, deserialize_with = "some_double")]
    sum: Option<f64>,
    #[serde(default, deserialize_with = "uint64s")]
    bucket_counts: Vec<u64>,
    #[serde(default)]
    explicit_bounds: Vec<f64>,
    #[serde(default)]
    flags: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: Option<AnyValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValue {
    #[serde(default)]
    string_value: Option<String>,
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default, deserialize_with = "some_int64")]
    int_value: Option<i64>,
    #[serde(default, deserialize_with = "some_double")]
    double_value: Option<f64>,
    #[serde(default)]
    array_value: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    kvlist_value: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    bytes_value: Option<serde::de::IgnoredAny>,
}

impl From<Request> for proto::ExportMetricsServiceRequest {
    fn from(r: Request) -> Self {
        proto::ExportMetricsServiceRequest {
            resource_metrics: r.resource_metrics.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<ResourceMetrics> for proto::ResourceMetrics {
    fn from(r: ResourceMetrics) -> Self {
        proto::ResourceMetrics {
            resource: r.resource.map(|res| proto::Resource {
                attributes: attributes(res.attributes),
            }),
            scope_metrics: r
                .scope_metrics
                .into_iter()
                .map(|s| proto::ScopeMetrics {
                    metrics: s.metrics.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }
    }
}

fn attributes(kvs: Vec<KeyValue>) -> Vec<proto::KeyValue> {
    kvs.into_iter()
        .map(|kv| proto::KeyValue {
            key: kv.key,
            value: kv.value.map(|v| proto::AnyValue {
                value: if let Some(s) = v.string_value {
                    Some(proto::Any::String(s))
                } else if let Some(b) = v.bool_value {
                    Some(proto::Any::Bool(b))
                } else if let Some(i) = v.int_value {
                    Some(proto::Any::Int(i))
                } else if let Some(d) = v.double_value {
                    Some(proto::Any::Double(d))
                } else if v.array_value.is_some() {
                    Some(proto::Any::Array(Vec::new()))
                } else if v.kvlist_value.is_some() {
                    Some(proto::Any::KvList(Vec::new()))
                } else if v.bytes_value.is_some() {
                    Some(proto::Any::Bytes(Vec::new()))
                } else {
                    None
                },
            }),
        })
        .collect()
}

fn number_points(points: Vec<NumberDataPoint>) -> Vec<proto::NumberDataPoint> {
    points
        .into_iter()
        .map(|p| proto::NumberDataPoint {
            attributes: attributes(p.head.attributes),
            start_time_unix_nano: p.head.start_time_unix_nano,
            time_unix_nano: p.head.time_unix_nano,
            value: match (p.as_double, p.as_int) {
                (Some(d), _) => Some(proto::Value::AsDouble(d)),
                (None, Some(i)) => Some(proto::Value::AsInt(i)),
                (None, None) => None,
            },
            flags: p.flags,
        })
        .collect()
}

impl From<Metric> for proto::Metric {
    fn from(m: Metric) -> Self {
        let unsupported = |p: Points| proto::Unsupported {
            data_points: vec![Vec::new(); p.data_points.len()],
        };
        let data = if let Some(g) = m.gauge {
            Some(proto::Data::Gauge(proto::Gauge {
                data_points: number_points(g.data_points),
            }))
        } else if let Some(s) = m.sum {
            Some(proto::Data::Sum(proto::Sum {
                data_points: number_points(s.data_points),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            }))
        } else if let Some(h) = m.histogram {
            Some(proto::Data::Histogram(proto::Histogram {
                aggregation_temporality: h.aggregation_temporality,
                data_points: h
                    .data_points
                    .into_iter()
                    .map(|p| proto::HistogramDataPoint {
                        attributes: attributes(p.head.attributes),
                        start_time_unix_nano: p.head.start_time_unix_nano,
                        time_unix_nano: p.head.time_unix_nano,
                        count: p.count,
                        sum: p.sum,
                        bucket_counts: p.bucket_counts,
                        explicit_bounds: p.explicit_bounds,
                        flags: p.flags,
                    })
                    .collect(),
            }))
        } else if let Some(e) = m.exponential_histogram {
            Some(proto::Data::ExponentialHistogram(unsupported(e)))
        } else {
            m.summary.map(|s| proto::Data::Summary(unsupported(s)))
        };
        proto::Metric {
            name: m.name,
            unit: m.unit,
            data,
        }
    }
}
