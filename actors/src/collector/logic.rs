//! Turning raw recorder samples into series samples: source, labels, counter totals and
//! profile-operation names; observations (and operation durations) are resolved to their
//! histogram's series, which `histogram` turns into samples per interval. Plain logic, no
//! actix.

use crate::types::FastMap;
use std::collections::HashMap;

use crate::metric_names as m;
use crate::recorder::{RawKind, RawSample, SourceCache};
use crate::types::{
    DaemonId, DaemonSpec, Labels, MetricKind, MetricName, Sample, SeriesKey, Source, TimestampMs,
};

/// Most distinct app series the resolver keeps counter totals and names for; past it new
/// series are still recorded but counters restart from their increment.
pub const MAX_APP_SERIES: usize = 100_000;

/// A raw sample resolved to its series.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    /// A sample to store and analyse as it is.
    Sample(Sample),
    /// An observation for the histogram of `series`.
    Observation {
        /// The histogram's series.
        series: SeriesKey,
        /// When it was recorded.
        ts_ms: TimestampMs,
        /// The value.
        value: f64,
    },
}

impl Resolved {
    /// The sample, when it is one (tests).
    pub fn sample(self) -> Option<Sample> {
        match self {
            Resolved::Sample(s) => Some(s),
            Resolved::Observation { .. } => None,
        }
    }
}

/// Resolves raw samples into series samples.
#[derive(Debug, Default)]
pub struct AppSampleResolver {
    labels: HashMap<DaemonId, Labels>,
    totals: FastMap<SeriesKey, f64>,
    /// The recorders' (daemon, labels) pairs, by the index samples carry.
    sources: SourceCache,
}

impl AppSampleResolver {
    /// Remembers a daemon's labels for its app samples.
    pub fn register(&mut self, spec: &DaemonSpec) {
        self.labels.insert(spec.id.clone(), spec.series_labels());
    }

    /// Resolves one raw sample; `None` for a non-finite value, which is never stored.
    pub fn resolve(&mut self, raw: RawSample) -> Option<Resolved> {
        if !raw.value.is_finite() {
            return None;
        }
        let (daemon, own) = self.sources.get(raw.source);
        let (source, mut labels) = match daemon {
            Some(id) => {
                let labels = self.labels.get(id).cloned().unwrap_or_default();
                (Source::Daemon(id.clone()), labels)
            }
            None => (Source::Host, Labels::empty()),
        };
        if !own.is_empty() {
            labels = if labels.is_empty() {
                own.clone()
            } else {
                Labels::from_pairs(labels.iter().chain(own.iter()))
            };
        }
        let (metric, kind): (MetricName, MetricKind) = match raw.kind {
            RawKind::Observation => {
                return Some(Resolved::Observation {
                    series: SeriesKey {
                        source,
                        metric: raw.metric,
                        labels,
                    },
                    ts_ms: raw.ts_ms,
                    value: raw.value,
                })
            }
            RawKind::OperationDuration => {
                return Some(Resolved::Observation {
                    series: SeriesKey {
                        source,
                        metric: m::operation_duration(raw.metric.as_str()).into(),
                        labels,
                    },
                    ts_ms: raw.ts_ms,
                    value: raw.value,
                })
            }
            RawKind::Gauge | RawKind::Increment => (
                raw.metric,
                if raw.kind == RawKind::Increment {
                    MetricKind::Counter
                } else {
                    MetricKind::Gauge
                },
            ),
            RawKind::OperationExtra => {
                let extra = raw
                    .extra
                    .as_ref()
                    .map(MetricName::as_str)
                    .unwrap_or("value");
                (
                    format!("{}{}.{}", m::APP_OPERATION_PREFIX, raw.metric, extra).into(),
                    MetricKind::Gauge,
                )
            }
        };
        let series = SeriesKey {
            source,
            metric,
            labels,
        };
        let value = if kind == MetricKind::Counter {
            match self.totals.get_mut(&series) {
                Some(total) => {
                    *total += raw.value;
                    *total
                }
                None => {
                    if self.totals.len() < MAX_APP_SERIES {
                        self.totals.insert(series.clone(), raw.value);
                    }
                    raw.value
                }
            }
        } else {
            raw.value
        };
        Some(Resolved::Sample(Sample {
            series,
            kind,
            ts_ms: raw.ts_ms,
            value,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(daemon: Option<&str>, metric: &'static str, kind: RawKind, value: f64) -> RawSample {
        RawSample {
            source: crate::recorder::sources::register(daemon.map(DaemonId::new), Labels::empty())
                .unwrap(),
            metric: metric.into(),
            extra: None,
            kind,
            value,
            ts_ms: 10,
        }
    }

    /// Increments become a running counter per series; daemon samples carry its labels.
    #[test]
    fn counters_accumulate_and_labels_apply() {
        let mut r = AppSampleResolver::default();
        r.register(&DaemonSpec::new("d", 1).project("ws"));
        let a = r
            .resolve(raw(Some("d"), "files_total", RawKind::Increment, 2.0))
            .and_then(Resolved::sample)
            .unwrap();
        let b = r
            .resolve(raw(Some("d"), "files_total", RawKind::Increment, 3.0))
            .and_then(Resolved::sample)
            .unwrap();
        assert_eq!((a.value, b.value), (2.0, 5.0));
        assert_eq!(b.kind, MetricKind::Counter);
        assert_eq!(b.series.labels.get("project"), Some("ws"));
        let h = r
            .resolve(raw(None, "files_total", RawKind::Increment, 1.0))
            .and_then(Resolved::sample)
            .unwrap();
        assert_eq!((h.value, h.series.source), (1.0, Source::Host));
    }

    /// Operation durations are observations of their full name's histogram, as
    /// observations are; NaN is refused.
    #[test]
    fn operations_and_nan() {
        let mut r = AppSampleResolver::default();
        let Some(Resolved::Observation { series, value, .. }) =
            r.resolve(raw(None, "search", RawKind::OperationDuration, 0.2))
        else {
            panic!("an observation");
        };
        assert_eq!(
            series.metric.as_str(),
            "app.operation.search.duration_seconds"
        );
        assert_eq!((value, series.source), (0.2, Source::Host));
        assert!(matches!(
            r.resolve(raw(Some("d"), "x", RawKind::Observation, 1.0)),
            Some(Resolved::Observation { .. })
        ));
        assert!(r
            .resolve(raw(None, "x", RawKind::Gauge, f64::NAN))
            .is_none());
    }
}
