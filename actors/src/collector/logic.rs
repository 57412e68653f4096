//! Turning raw recorder samples into series samples: source, labels, counter totals and
//! profile-operation names; observations (and operation durations) are resolved to their
//! histogram's series, which `histogram` turns into samples per interval. Plain logic, no
//! actix.

use crate::types::FastMap;
use std::collections::HashMap;

use crate::metric_names as m;
use crate::recorder::{RawKind, RawSample, SourceCache, StampConverter};
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
    /// Turns samples' stamps into wall-clock milliseconds.
    stamps: StampConverter,
}

impl AppSampleResolver {
    /// Remembers a daemon's labels for its app samples.
    pub fn register(&mut self, spec: &DaemonSpec) {
        self.labels.insert(spec.id.clone(), spec.series_labels());
    }

    /// Starts a batch: counter stamps in it are converted against a fresh reading of the
    /// counter and the wall clock.
    pub fn begin_batch(&mut self) {
        self.stamps.reanchor();
    }

    /// Resolves one raw sample; `None` for a non-finite value, which is never stored.
    pub fn resolve(&mut self, raw: RawSample) -> Option<Resolved> {
        if !raw.value.is_finite() {
            return None;
        }
        let ts_ms = self.stamps.wall_ms(raw.at);
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
                    ts_ms,
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
                    ts_ms,
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
                    .as_deref()
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
            ts_ms,
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
            at: crate::recorder::Stamp::wall(10),
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

    /// A recorder's daemon and labels reach the series through its source index: the
    /// daemon's labels beside the recorder's (which win on a clash), for each of several
    /// recorders made from one another; a guard's counter stamp becomes the wall time.
    #[test]
    fn recorder_sources_resolve_to_their_series() {
        use crate::recorder::channel;
        use crate::telemetry::RecorderStats;
        use crate::types::{Clock, SystemClock};
        use std::sync::Arc;

        let stats = Arc::new(RecorderStats::default());
        let (base, rx) = channel(64, Arc::new(SystemClock), stats);
        let mut r = AppSampleResolver::default();
        r.register(&DaemonSpec::new("logic-src-d", 1).project("ws"));
        let d = base.for_daemon("logic-src-d");
        let routed = d.with_labels(Labels::from_pairs([("route", "/a"), ("project", "mine")]));
        let host_routed = base.with_labels(Labels::from_pairs([("route", "/b")]));
        let back = routed.for_daemon("logic-src-other");
        assert!(base.record("m", 1.0));
        assert!(d.record("m", 2.0));
        assert!(routed.record("m", 3.0));
        assert!(host_routed.record("m", 4.0));
        assert!(back.record("m", 5.0));
        let lo = SystemClock.now_ms();
        drop(routed.profile("op"));
        let hi = SystemClock.now_ms();
        r.begin_batch();
        let mut got = Vec::new();
        while let Ok(s) = rx.try_recv() {
            got.push(r.resolve(s).unwrap());
        }
        let sample = |i: usize| got[i].clone().sample().unwrap().series;
        assert_eq!(sample(0).source, Source::Host);
        assert!(sample(0).labels.is_empty());
        let s = sample(1);
        assert_eq!(s.source, Source::Daemon(DaemonId::new("logic-src-d")));
        assert_eq!(s.labels.get("project"), Some("ws"));
        let s = sample(2);
        assert_eq!(s.source, Source::Daemon(DaemonId::new("logic-src-d")));
        assert_eq!(
            (s.labels.get("project"), s.labels.get("route")),
            (Some("mine"), Some("/a"))
        );
        let s = sample(3);
        assert_eq!(
            (s.source, s.labels.get("route")),
            (Source::Host, Some("/b"))
        );
        let s = sample(4);
        assert_eq!(s.source, Source::Daemon(DaemonId::new("logic-src-other")));
        assert_eq!(
            (s.labels.get("project"), s.labels.get("route")),
            (Some("mine"), Some("/a"))
        );
        let Resolved::Observation { series, ts_ms, .. } = got[5].clone() else {
            panic!("an observation");
        };
        assert_eq!(series.labels.get("route"), Some("/a"));
        assert!(
            lo - 1 <= ts_ms && ts_ms <= hi + 1,
            "{ts_ms} not in {lo}..={hi}"
        );
    }
}
