//! `POST /v1/metrics`: OTLP/HTTP metrics intake, so daemons written in other languages
//! send what their OpenTelemetry SDK already speaks. Both encodings (protobuf, and OTLP's
//! JSON mapping), plain or gzip (actix-web inflates it, counting the limit decoded), decode into the messages of [`proto`], and one mapping turns those into
//! application samples of the sending daemon:
//!
//! - the daemon is the watched daemon whose pid is the resource's `process.pid`, else the
//!   resource's `service.name` (both attribute names configurable, [`super::OtlpMapping`]),
//!   else the host;
//! - gauges and non-monotonic sums are gauges; monotonic sums are counters (cumulative ones
//!   turned into increments against the previous export, so perfvisor's running total
//!   follows the exporter's); histograms become `<name>.count` and `<name>.sum` counters and
//!   `<name>.p50`, `.p90`, `.p99` gauges interpolated within the explicit buckets of the
//!   observations since the previous export;
//! - data point attributes become labels, at most [`MAX_LABELS`] per point and
//!   [`MAX_LABEL_SETS_PER_METRIC`] label sets per metric.
//!
//! Names, daemon ids, values and the series cap go through the JSON push API's own checks
//! (`push::check_pushed`, `PushedSeries::admit`): the same reserved namespaces and limits.

pub mod proto;

mod json;

use std::collections::{HashMap, HashSet};

use actix_web::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use prost::Message as _;

use super::guard::{authorize, Scope};
use super::push::{check_pushed, Pushed, MAX_PUSHED_SERIES};
use super::{OtlpMapping, Problem, State};
use crate::Labels;

/// Most attributes a data point may carry (each becomes a label).
pub const MAX_LABELS: usize = 8;

/// Longest attribute key and value, in bytes.
pub const MAX_LABEL_BYTES: usize = 200;

/// Most distinct label sets one (daemon, metric) may have: attributes are for a route or a
/// status class, not a user id.
pub const MAX_LABEL_SETS_PER_METRIC: usize = 64;

/// The percentiles a histogram point yields, as (suffix, quantile).
pub const HISTOGRAM_PERCENTILES: [(&str, f64); 3] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)];

/// The two encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

/// Decodes a request body of `encoding`; the error names what was wrong.
pub fn decode(
    encoding: Encoding,
    body: &[u8],
) -> Result<proto::ExportMetricsServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => proto::ExportMetricsServiceRequest::decode(body).map_err(|e| {
            format!("the body is not an OTLP ExportMetricsServiceRequest in protobuf: {e}")
        }),
        Encoding::Json => serde_json::from_slice::<json::Request>(body)
            .map(Into::into)
            .map_err(|e| {
                format!("the body is not an OTLP ExportMetricsServiceRequest in JSON: {e}")
            }),
    }
}

/// What one data point asks to record, once its daemon, name and labels are checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The daemon, or `None` for the host.
    pub daemon: Option<String>,
    /// The metric name as sent.
    pub metric: String,
    /// Its attributes as labels.
    pub labels: Labels,
    /// The value.
    pub value: PointValue,
}

/// The value of a [`Point`].
#[derive(Clone, Debug, PartialEq)]
pub enum PointValue {
    /// A level.
    Gauge(f64),
    /// A monotonic sum: an increment (`cumulative` false) or the total since `start_ns`.
    Counter {
        /// The value.
        value: f64,
        /// Whether `value` is a running total.
        cumulative: bool,
        /// When the total started (the exporter's start), nanoseconds.
        start_ns: u64,
    },
    /// A histogram with explicit buckets.
    Histogram {
        /// Observations.
        count: u64,
        /// Their sum, when sent.
        sum: Option<f64>,
        /// Upper bounds of the buckets but the last.
        bounds: Vec<f64>,
        /// Observations per bucket (`bounds.len() + 1` of them, or none).
        counts: Vec<u64>,
        /// Whether the counts are running totals.
        cumulative: bool,
        /// When the totals started, nanoseconds.
        start_ns: u64,
    },
}

impl Point {
    /// The metric names this point writes (what the push API's checks see).
    fn names(&self) -> Vec<String> {
        match self.value {
            PointValue::Histogram { .. } => {
                let mut out = vec![
                    format!("{}.count", self.metric),
                    format!("{}.sum", self.metric),
                ];
                out.extend(
                    HISTOGRAM_PERCENTILES
                        .iter()
                        .map(|(p, _)| format!("{}.{p}", self.metric)),
                );
                out
            }
            _ => vec![self.metric.clone()],
        }
    }

    /// The push API's view of this point: one pushed sample per name it writes.
    fn pushed(&self) -> Vec<Pushed> {
        self.names()
            .into_iter()
            .map(|metric| Pushed {
                metric,
                value: match &self.value {
                    PointValue::Gauge(v) | PointValue::Counter { value: v, .. } => *v,
                    PointValue::Histogram { sum, .. } => sum.unwrap_or(0.0),
                },
                daemon: self.daemon.clone(),
                kind: None,
            })
            .collect()
    }
}

/// The points of a request, and the data points refused with the first reason.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Points to record.
    pub points: Vec<Point>,
    /// Data points refused.
    pub rejected: usize,
    /// Why the first was refused.
    pub first_error: Option<String>,
}

impl Mapped {
    fn reject(&mut self, n: usize, why: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        self.rejected += n;
        if self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }
}

fn any_text(v: &proto::Any) -> Option<String> {
    Some(match v {
        proto::Any::String(s) => s.clone(),
        proto::Any::Bool(b) => b.to_string(),
        proto::Any::Int(i) => i.to_string(),
        proto::Any::Double(d) => d.to_string(),
        proto::Any::Array(_) | proto::Any::KvList(_) | proto::Any::Bytes(_) => return None,
    })
}

/// The daemon a resource's attributes name: the watched daemon with its pid, else its
/// service name, else none (the host).
fn daemon_of(
    attributes: &[proto::KeyValue],
    mapping: &OtlpMapping,
    pids: &HashMap<u32, String>,
) -> Option<String> {
    let attr = |name: &str| {
        attributes
            .iter()
            .find(|kv| kv.key == name)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    };
    let pid = attr(&mapping.pid_attribute).and_then(|v| match v {
        proto::Any::Int(i) => u32::try_from(*i).ok(),
        proto::Any::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    if let Some(d) = pid.and_then(|p| pids.get(&p)) {
        return Some(d.clone());
    }
    match attr(&mapping.service_attribute)? {
        proto::Any::String(s) => Some(s.clone()),
        other => any_text(other),
    }
}

/// A data point's attributes as labels, or why they cannot be.
fn labels_of(attributes: &[proto::KeyValue]) -> Result<Labels, String> {
    if attributes.len() > MAX_LABELS {
        return Err(format!(
            "{} attributes; at most {MAX_LABELS} are accepted (each is a label)",
            attributes.len()
        ));
    }
    let mut pairs = Vec::with_capacity(attributes.len());
    for kv in attributes {
        let key = &kv.key;
        if key.is_empty()
            || key.len() > MAX_LABEL_BYTES
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        {
            return Err(format!(
                "attribute key {key:?}; accepted: 1 to {MAX_LABEL_BYTES} letters, digits, '_' and '.'"
            ));
        }
        if matches!(key.as_str(), "daemon" | "source") {
            return Err(format!(
                "attribute key {key:?} is perfvisor's own label; use another name"
            ));
        }
        let value = kv
            .value
            .as_ref()
            .and_then(|v| v.value.as_ref())
            .and_then(any_text)
            .ok_or_else(|| format!("attribute {key:?} is not a string, bool, int or double"))?;
        if value.len() > MAX_LABEL_BYTES || value.chars().any(char::is_control) {
            return Err(format!(
                "attribute {key:?} has a value of {} bytes or with control characters; accepted: up to {MAX_LABEL_BYTES} bytes of text",
                value.len()
            ));
        }
        pairs.push((key.clone(), value));
    }
    Ok(Labels::from_pairs(pairs))
}

/// Why a histogram point's buckets cannot be read, if they cannot.
fn check_buckets(p: &proto::HistogramDataPoint) -> Result<(), String> {
    if p.bucket_counts.is_empty() {
        return Ok(());
    }
    if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
        return Err(format!(
            "{} bucket counts for {} explicit bounds; expected one more count than bounds",
            p.bucket_counts.len(),
            p.explicit_bounds.len()
        ));
    }
    if p.explicit_bounds.iter().any(|b| !b.is_finite())
        || p.explicit_bounds.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(format!(
            "explicit bounds {:?} are not finite and strictly increasing",
            p.explicit_bounds
        ));
    }
    let total: u64 = p
        .bucket_counts
        .iter()
        .fold(0u64, |a, c| a.saturating_add(*c));
    if total != p.count {
        return Err(format!(
            "the bucket counts add up to {total}, the count is {}",
            p.count
        ));
    }
    Ok(())
}

/// Maps a decoded request onto points, checking every name, daemon id, value and label
/// set as the push API does; what fails is counted, never recorded.
pub fn map_request(
    request: &proto::ExportMetricsServiceRequest,
    mapping: &OtlpMapping,
    pids: &HashMap<u32, String>,
) -> Mapped {
    let mut out = Mapped::default();
    for rm in &request.resource_metrics {
        let attributes = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let daemon = daemon_of(attributes, mapping, pids);
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                map_metric(m, &daemon, &mut out);
            }
        }
    }
    out
}

fn map_metric(m: &proto::Metric, daemon: &Option<String>, out: &mut Mapped) {
    let name = &m.name;
    // The names a metric writes and its daemon are the same for all its points: the push
    // API's checks run once per metric, the value's once per point.
    let names_checked: std::cell::OnceCell<Result<(), String>> = std::cell::OnceCell::new();
    let push = |out: &mut Mapped, attributes: &[proto::KeyValue], value: PointValue| {
        let labels = match labels_of(attributes) {
            Ok(l) => l,
            Err(e) => return out.reject(1, || format!("metric {name:?}: {e}")),
        };
        let point = Point {
            daemon: daemon.clone(),
            metric: name.clone(),
            labels,
            value,
        };
        let names = names_checked.get_or_init(|| {
            let mut probe = point.pushed();
            for p in &mut probe {
                p.value = 0.0;
            }
            check_pushed(&probe).map_err(|p| {
                format!(
                    "metric {name:?}: {} (accepted: {})",
                    p.error.trim_start_matches("sample 0: "),
                    p.accepted
                )
            })
        });
        if let Err(e) = names {
            return out.reject(1, || e.clone());
        }
        let v = match &point.value {
            PointValue::Gauge(v) | PointValue::Counter { value: v, .. } => *v,
            PointValue::Histogram { sum, .. } => sum.unwrap_or(0.0),
        };
        if !v.is_finite() {
            return out.reject(1, || {
                format!("metric {name:?}: value {v} is not finite (accepted: a finite number)")
            });
        }
        out.points.push(point);
    };
    let number = |p: &proto::NumberDataPoint| -> Result<Option<f64>, String> {
        if p.flags & proto::FLAG_NO_RECORDED_VALUE != 0 {
            return Ok(None);
        }
        match p.value {
            Some(proto::Value::AsDouble(d)) => Ok(Some(d)),
            Some(proto::Value::AsInt(i)) => Ok(Some(i as f64)),
            None => Err(format!("metric {name:?}: a data point without a value")),
        }
    };
    match &m.data {
        None => out.reject(1, || {
            format!("metric {name:?} has no data; expected a gauge, a sum or a histogram")
        }),
        Some(proto::Data::Gauge(g)) => {
            for p in &g.data_points {
                match number(p) {
                    Ok(Some(v)) => push(out, &p.attributes, PointValue::Gauge(v)),
                    Ok(None) => {}
                    Err(e) => out.reject(1, || e),
                }
            }
        }
        Some(proto::Data::Sum(s)) => {
            for p in &s.data_points {
                let v = match number(p) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(e) => {
                        out.reject(1, || e);
                        continue;
                    }
                };
                let value = if !s.is_monotonic {
                    PointValue::Gauge(v)
                } else if s.aggregation_temporality == proto::TEMPORALITY_DELTA
                    || s.aggregation_temporality == proto::TEMPORALITY_CUMULATIVE
                {
                    if v < 0.0 {
                        out.reject(1, || {
                            format!("metric {name:?}: a monotonic sum of {v}; expected 0 or more")
                        });
                        continue;
                    }
                    PointValue::Counter {
                        value: v,
                        cumulative: s.aggregation_temporality == proto::TEMPORALITY_CUMULATIVE,
                        start_ns: p.start_time_unix_nano,
                    }
                } else {
                    out.reject(1, || {
                        format!(
                            "metric {name:?}: aggregation temporality {}; expected 1 (delta) or 2 (cumulative)",
                            s.aggregation_temporality
                        )
                    });
                    continue;
                };
                push(out, &p.attributes, value);
            }
        }
        Some(proto::Data::Histogram(h)) => {
            let cumulative = match h.aggregation_temporality {
                proto::TEMPORALITY_DELTA => false,
                proto::TEMPORALITY_CUMULATIVE => true,
                other => {
                    return out.reject(h.data_points.len().max(1), || {
                        format!(
                            "histogram {name:?}: aggregation temporality {other}; expected 1 (delta) or 2 (cumulative)"
                        )
                    })
                }
            };
            for p in &h.data_points {
                if p.flags & proto::FLAG_NO_RECORDED_VALUE != 0 {
                    continue;
                }
                if let Err(e) = check_buckets(p) {
                    out.reject(1, || format!("histogram {name:?}: {e}"));
                    continue;
                }
                push(
                    out,
                    &p.attributes,
                    PointValue::Histogram {
                        count: p.count,
                        sum: p.sum,
                        bounds: p.explicit_bounds.clone(),
                        counts: p.bucket_counts.clone(),
                        cumulative,
                        start_ns: p.start_time_unix_nano,
                    },
                );
            }
        }
        Some(proto::Data::ExponentialHistogram(u)) => out.reject(u.data_points.len().max(1), || {
            format!("metric {name:?} is an exponential histogram; accepted: gauges, sums and explicit-bucket histograms")
        }),
        Some(proto::Data::Summary(u)) => out.reject(u.data_points.len().max(1), || {
            format!("metric {name:?} is a summary; accepted: gauges, sums and explicit-bucket histograms")
        }),
    }
}

/// The `q` quantile of the observations in explicit buckets, interpolated linearly within
/// the bucket that holds it (as Prometheus' `histogram_quantile` does): the first bucket
/// starts at 0 when its upper bound is positive, and a quantile in the last (unbounded)
/// bucket is the highest bound. `None` without observations or without bounds.
pub fn bucket_quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || bounds.is_empty() || counts.len() != bounds.len() + 1 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().copied();
            };
            let lower = match i {
                0 if upper > 0.0 => 0.0,
                0 => return Some(upper),
                _ => bounds[i - 1],
            };
            let within = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        below += c;
    }
    bounds.last().copied()
}

/// What the previous export of a cumulative series said.
#[derive(Debug, Clone)]
enum Previous {
    Counter {
        start_ns: u64,
        value: f64,
    },
    Histogram {
        start_ns: u64,
        count: u64,
        sum: f64,
        counts: Vec<u64>,
    },
}

/// The series key of a point inside the intake.
type SeriesId = (Option<String>, String, Labels);

/// The intake's memory: label sets per metric (bounded), and the previous value of each
/// cumulative series, to record increments. In memory: a restart starts afresh (the first
/// export after it counts whole, as a new exporter's would).
#[derive(Debug, Default)]
pub struct Intake {
    label_sets: HashMap<(Option<String>, String), HashSet<Labels>>,
    labelled: usize,
    previous: HashMap<SeriesId, Previous>,
}

/// One recorder call the intake asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// The daemon, or `None` for the host.
    pub daemon: Option<String>,
    /// The metric name.
    pub metric: String,
    /// Labels.
    pub labels: Labels,
    /// The value: a level, or an increment.
    pub value: f64,
    /// Whether `value` is an increment of a counter.
    pub increment: bool,
}

impl Intake {
    /// Admits the label sets of `points`, or refuses the whole export when a metric would
    /// pass [`MAX_LABEL_SETS_PER_METRIC`] label sets or all labelled series together
    /// [`MAX_PUSHED_SERIES`].
    pub fn admit_labels(&mut self, points: &[Point]) -> Result<(), String> {
        let mut new: HashMap<(Option<String>, String), HashSet<&Labels>> = HashMap::new();
        for p in points.iter().filter(|p| !p.labels.is_empty()) {
            let key = (p.daemon.clone(), p.metric.clone());
            if self
                .label_sets
                .get(&key)
                .is_some_and(|s| s.contains(&p.labels))
            {
                continue;
            }
            new.entry(key).or_default().insert(&p.labels);
        }
        let mut added = 0;
        for (key, sets) in &new {
            let known = self.label_sets.get(key).map_or(0, HashSet::len);
            if known + sets.len() > MAX_LABEL_SETS_PER_METRIC {
                return Err(format!(
                    "metric {:?} would have {} attribute sets; at most {MAX_LABEL_SETS_PER_METRIC} are accepted (attributes are for a few values such as a route, not for ids)",
                    key.1,
                    known + sets.len()
                ));
            }
            added += sets.len();
        }
        if self.labelled + added > MAX_PUSHED_SERIES {
            return Err(format!(
                "this export would create {added} new attribute sets; {} of at most {MAX_PUSHED_SERIES} exist",
                self.labelled
            ));
        }
        for (key, sets) in new {
            self.label_sets
                .entry(key)
                .or_default()
                .extend(sets.into_iter().cloned());
        }
        self.labelled += added;
        Ok(())
    }

    /// The recorder calls for `points`, turning running totals into increments against the
    /// previous export of the same series (a total that went down, or a new start time, is
    /// a reset: it counts whole).
    pub fn writes(&mut self, points: Vec<Point>) -> Vec<Write> {
        let mut out = Vec::with_capacity(points.len());
        for p in points {
            let write = |metric: String, value: f64, increment: bool| Write {
                daemon: p.daemon.clone(),
                metric,
                labels: p.labels.clone(),
                value,
                increment,
            };
            match &p.value {
                PointValue::Gauge(v) => out.push(write(p.metric.clone(), *v, false)),
                PointValue::Counter {
                    value,
                    cumulative,
                    start_ns,
                } => {
                    let by = if *cumulative {
                        let id = (p.daemon.clone(), p.metric.clone(), p.labels.clone());
                        let before = self.previous.insert(
                            id,
                            Previous::Counter {
                                start_ns: *start_ns,
                                value: *value,
                            },
                        );
                        match before {
                            Some(Previous::Counter {
                                start_ns: s,
                                value: v,
                            }) if s == *start_ns && v <= *value => value - v,
                            _ => *value,
                        }
                    } else {
                        *value
                    };
                    out.push(write(p.metric.clone(), by, true));
                }
                PointValue::Histogram {
                    count,
                    sum,
                    bounds,
                    counts,
                    cumulative,
                    start_ns,
                } => {
                    let sum_now = sum.unwrap_or(0.0);
                    let (d_count, d_sum, d_counts) = if *cumulative {
                        let id = (p.daemon.clone(), p.metric.clone(), p.labels.clone());
                        let before = self.previous.insert(
                            id,
                            Previous::Histogram {
                                start_ns: *start_ns,
                                count: *count,
                                sum: sum_now,
                                counts: counts.clone(),
                            },
                        );
                        match before {
                            Some(Previous::Histogram {
                                start_ns: s,
                                count: c,
                                sum: su,
                                counts: cs,
                            }) if s == *start_ns
                                && c <= *count
                                && cs.len() == counts.len()
                                && cs.iter().zip(counts).all(|(a, b)| a <= b) =>
                            {
                                (
                                    count - c,
                                    sum_now - su,
                                    counts.iter().zip(&cs).map(|(b, a)| b - a).collect(),
                                )
                            }
                            _ => (*count, sum_now, counts.clone()),
                        }
                    } else {
                        (*count, sum_now, counts.clone())
                    };
                    out.push(write(format!("{}.count", p.metric), d_count as f64, true));
                    if sum.is_some() {
                        out.push(write(format!("{}.sum", p.metric), d_sum, true));
                    }
                    for (suffix, q) in HISTOGRAM_PERCENTILES {
                        if let Some(v) = bucket_quantile(bounds, &d_counts, q) {
                            out.push(write(format!("{}.{suffix}", p.metric), v, false));
                        }
                    }
                }
            }
        }
        out
    }
}

/// The encoding a `Content-Type` names, or the 415 answer.
fn encoding_of(req: &HttpRequest) -> Result<Encoding, Problem> {
    let raw = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {raw:?}"),
            "application/x-protobuf or application/json (OTLP/HTTP)",
        )),
    }
}

/// A 400 in the request's encoding: a `google.rpc.Status` for protobuf, the API's JSON
/// error otherwise.
fn bad(encoding: Encoding, message: String, accepted: &str) -> HttpResponse {
    match encoding {
        Encoding::Protobuf => HttpResponse::BadRequest()
            .content_type("application/x-protobuf")
            .body(
                proto::Status {
                    code: 3,
                    message: format!("{message} (accepted: {accepted})"),
                }
                .encode_to_vec(),
            ),
        Encoding::Json => {
            actix_web::ResponseError::error_response(&Problem::bad(message, accepted))
        }
    }
}

/// `POST /v1/metrics`.
pub(super) async fn export(
    req: HttpRequest,
    s: web::Data<State>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    authorize(&req, &s, Scope::Push)?;
    let encoding = encoding_of(&req)?;
    // actix-web has already decoded a gzip body (within the same size limit, counted
    // decoded); any other encoding is refused before it is read.
    if let Some(enc) = req.headers().get(CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("?").trim();
        if !(enc.eq_ignore_ascii_case("identity") || enc.eq_ignore_ascii_case("gzip")) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content encoding {enc:?}"),
                "gzip or none (identity)",
            ));
        }
    }
    let request = match decode(encoding, &body) {
        Ok(r) => r,
        Err(e) => {
            return Ok(bad(
                encoding,
                e,
                "an ExportMetricsServiceRequest as opentelemetry-proto defines it",
            ))
        }
    };
    let pids: HashMap<u32, String> = if request.resource_metrics.is_empty() {
        HashMap::new()
    } else {
        s.pv.status()
            .await?
            .watchers
            .into_iter()
            .map(|w| (w.pid, w.daemon.as_str().to_string()))
            .collect()
    };
    let mapped = map_request(&request, &s.otlp_mapping, &pids);
    if mapped.points.is_empty() && mapped.rejected > 0 {
        let first = mapped.first_error.unwrap_or_default();
        return Ok(bad(
            encoding,
            format!(
                "all {} data points refused; the first: {first}",
                mapped.rejected
            ),
            "gauges, sums and explicit-bucket histograms with names outside perfvisor's namespaces",
        ));
    }
    let pushed: Vec<Pushed> = mapped.points.iter().flat_map(Point::pushed).collect();
    let admitted = s
        .pushed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .admit(&pushed);
    if let Err(p) = admitted {
        return Ok(bad(encoding, p.error, &p.accepted));
    }
    let writes = {
        let mut intake = s
            .otlp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = intake.admit_labels(&mapped.points) {
            return Ok(bad(encoding, e, "fewer distinct attribute values"));
        }
        intake.writes(mapped.points)
    };
    let base = s.pv.recorder();
    for w in writes {
        let mut rec = match &w.daemon {
            Some(d) => base.for_daemon(d.as_str()),
            None => base.clone(),
        };
        if !w.labels.is_empty() {
            rec = rec.with_labels(w.labels);
        }
        if w.increment {
            rec.increment(w.metric, w.value);
        } else {
            rec.record(w.metric, w.value);
        }
    }
    let partial = (mapped.rejected > 0).then(|| proto::ExportMetricsPartialSuccess {
        rejected_data_points: mapped.rejected as i64,
        error_message: mapped.first_error.unwrap_or_default(),
    });
    Ok(match encoding {
        Encoding::Protobuf => HttpResponse::Ok()
            .content_type("application/x-protobuf")
            .body(
                proto::ExportMetricsServiceResponse {
                    partial_success: partial,
                }
                .encode_to_vec(),
            ),
        Encoding::Json => HttpResponse::Ok().json(match partial {
            Some(p) => serde_json::json!({"partialSuccess": {
                "rejectedDataPoints": p.rejected_data_points.to_string(),
                "errorMessage": p.error_message,
            }}),
            None => serde_json::json!({}),
        }),
    })
}

#[cfg(test)]
mod tests;
