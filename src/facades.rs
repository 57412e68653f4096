//! What Rust hosts already emit, taken as perfvisor app metrics: a `metrics::Recorder`
//! (feature `metrics`) and a `tracing_subscriber::Layer` (feature `tracing`), both writing
//! through the never-blocking [`Recorder`].
//!
//! Routing, for both: a `daemon` label (metrics) or field (tracing) puts the samples under
//! that daemon; without one they belong to the host application itself. Other labels become
//! the series' labels.

#[cfg(feature = "metrics")]
pub use self::metrics_facade::MetricsRecorder;
#[cfg(feature = "tracing")]
pub use self::tracing_facade::SpanLayer;

#[cfg(any(feature = "metrics", feature = "tracing"))]
use perfvisor_actors::recorder::Recorder;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use perfvisor_actors::types::Labels;

/// The recorder for samples of `daemon` (or the host) with `labels`.
#[cfg(any(feature = "metrics", feature = "tracing"))]
fn routed(base: &Recorder, daemon: Option<&str>, labels: Vec<(String, String)>) -> Recorder {
    let rec = match daemon {
        Some(d) => base.for_daemon(d),
        None => base.clone(),
    };
    if labels.is_empty() {
        rec
    } else {
        rec.with_labels(Labels::from_pairs(labels))
    }
}

#[cfg(feature = "metrics")]
mod metrics_facade {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, RwLock};

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        SharedString, Unit,
    };
    use perfvisor_actors::recorder::Recorder;
    use perfvisor_actors::types::MetricName;

    use super::routed;

    /// A `metrics::Recorder` that records into perfvisor: `counter!` increments a counter
    /// series, `gauge!` records a level, `histogram!` records observations into the series'
    /// histogram (stored per interval as p50/p90/p99, count and sum; reports give the
    /// window's count, sum, mean and quantiles). A unit given by `describe_*!` is kept as the
    /// name's suffix (`_seconds`, `_bytes`, …) when the name lacks it. Install it with
    /// `metrics::set_global_recorder`, or beside another recorder with a fanout (e.g.
    /// `metrics_util::layers::FanoutBuilder`). Every call is the recorder's hot path: it
    /// never blocks, and drops (and counts) a sample when perfvisor's channel is full.
    #[derive(Debug)]
    pub struct MetricsRecorder {
        recorder: Recorder,
        units: Mutex<HashMap<String, Unit>>,
        /// Handles by key: the macros register on every call, so a key is resolved (its
        /// daemon, labels and name) once and then found by its precomputed hash.
        handles: RwLock<HashMap<Key, Arc<Handle>>>,
    }

    impl std::fmt::Debug for Handle {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.metric.as_str())
        }
    }

    impl MetricsRecorder {
        /// Records through `recorder`.
        pub fn new(recorder: Recorder) -> Self {
            MetricsRecorder {
                recorder,
                units: Mutex::new(HashMap::new()),
                handles: RwLock::new(HashMap::new()),
            }
        }

        /// The handle of `key`, made on first use. A gauge's level starts at 0.
        fn handle(&self, key: &Key) -> Arc<Handle> {
            if let Some(h) = self.handles.read().ok().and_then(|m| m.get(key).cloned()) {
                return h;
            }
            let (recorder, metric) = self.target(key);
            let made = Arc::new(Handle {
                recorder,
                metric,
                last: AtomicU64::new(0),
            });
            match self.handles.write() {
                Ok(mut m) => m.entry(key.clone()).or_insert(made).clone(),
                Err(_) => made,
            }
        }

        fn describe(&self, key: KeyName, unit: Option<Unit>) {
            if let Some(unit) = unit {
                let mut units = match self.units.lock() {
                    Ok(u) => u,
                    Err(poisoned) => poisoned.into_inner(),
                };
                units.insert(key.as_str().to_string(), unit);
            }
        }

        /// The recorder and the metric name for a key.
        fn target(&self, key: &Key) -> (Recorder, MetricName) {
            let mut daemon = None;
            let mut labels = Vec::new();
            for label in key.labels() {
                if label.key() == "daemon" {
                    daemon = Some(label.value().to_string());
                } else {
                    labels.push((label.key().to_string(), label.value().to_string()));
                }
            }
            let name = key.name();
            let unit = match self.units.lock() {
                Ok(u) => u.get(name).copied(),
                Err(poisoned) => poisoned.into_inner().get(name).copied(),
            };
            let suffix = unit.and_then(suffix_of).filter(|s| !name.ends_with(s));
            let metric: MetricName = match suffix {
                Some(s) => format!("{name}{s}").into(),
                None => name.to_string().into(),
            };
            (routed(&self.recorder, daemon.as_deref(), labels), metric)
        }
    }

    /// The conventional name suffix of a unit.
    fn suffix_of(unit: Unit) -> Option<&'static str> {
        Some(match unit {
            Unit::Seconds => "_seconds",
            Unit::Milliseconds => "_milliseconds",
            Unit::Microseconds => "_microseconds",
            Unit::Nanoseconds => "_nanoseconds",
            Unit::Bytes => "_bytes",
            Unit::Percent => "_percent",
            _ => return None,
        })
    }

    impl metrics::Recorder for MetricsRecorder {
        fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
            self.describe(key, unit);
        }

        fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
            self.describe(key, unit);
        }

        fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
            self.describe(key, unit);
        }

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.handle(key))
        }

        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.handle(key))
        }

        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.handle(key))
        }
    }

    /// One registered metric. `last` is the latest absolute counter value, or the gauge's
    /// level (as f64 bits; 0 is 0.0), so relative updates become levels. A key registered as
    /// one kind is used as that kind (the metrics macros name a key's kind by the macro).
    struct Handle {
        recorder: Recorder,
        metric: MetricName,
        last: AtomicU64,
    }

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            self.recorder.increment(self.metric.clone(), value as f64);
        }

        fn absolute(&self, value: u64) {
            let before = self.last.swap(value, Ordering::Relaxed);
            if value >= before {
                self.recorder
                    .increment(self.metric.clone(), (value - before) as f64);
            }
        }
    }

    impl GaugeFn for Handle {
        fn increment(&self, value: f64) {
            self.add(value);
        }

        fn decrement(&self, value: f64) {
            self.add(-value);
        }

        fn set(&self, value: f64) {
            self.last.store(value.to_bits(), Ordering::Relaxed);
            self.recorder.record(self.metric.clone(), value);
        }
    }

    impl Handle {
        fn add(&self, delta: f64) {
            let mut current = self.last.load(Ordering::Relaxed);
            loop {
                let next = (f64::from_bits(current) + delta).to_bits();
                match self.last.compare_exchange_weak(
                    current,
                    next,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.recorder
                            .record(self.metric.clone(), f64::from_bits(next));
                        return;
                    }
                    Err(actual) => current = actual,
                }
            }
        }
    }

    impl HistogramFn for Handle {
        fn record(&self, value: f64) {
            self.recorder.observe(self.metric.clone(), value);
        }
    }
}

#[cfg(feature = "tracing")]
mod tracing_facade {
    use std::time::Instant;

    use perfvisor_actors::recorder::Recorder;
    use perfvisor_actors::types::MetricName;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::Subscriber;
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    use super::routed;

    /// A `tracing_subscriber::Layer` that records every closed span as an operation: its
    /// duration (creation to close, so time spent awaiting inside counts, as a user would
    /// measure it) as an observation of the histogram
    /// `app.operation.<span name>.duration_seconds`, and its numeric fields as
    /// `app.operation.<span name>.<field>`. A `daemon` field routes the span to that
    /// daemon; string fields become labels. Choose which spans with the usual filters, e.g.
    /// `pv.tracing_layer().with_filter(Targets::new().with_target("my_app", Level::INFO))`.
    /// Recording never blocks.
    #[derive(Debug)]
    pub struct SpanLayer {
        recorder: Recorder,
    }

    impl SpanLayer {
        /// Records through `recorder`.
        pub fn new(recorder: Recorder) -> Self {
            SpanLayer { recorder }
        }
    }

    /// What a span carries until it closes.
    struct Timing {
        started: Instant,
        fields: Fields,
    }

    #[derive(Default)]
    struct Fields {
        daemon: Option<String>,
        labels: Vec<(String, String)>,
        numbers: Vec<(MetricName, f64)>,
    }

    impl Visit for Fields {
        fn record_f64(&mut self, field: &Field, value: f64) {
            self.numbers.push((field.name().to_string().into(), value));
        }

        fn record_i64(&mut self, field: &Field, value: i64) {
            self.record_f64(field, value as f64);
        }

        fn record_u64(&mut self, field: &Field, value: u64) {
            self.record_f64(field, value as f64);
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "daemon" {
                self.daemon = Some(value.to_string());
            } else {
                self.labels
                    .push((field.name().to_string(), value.to_string()));
            }
        }

        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }

    impl<S> Layer<S> for SpanLayer
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(id) else {
                return;
            };
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            span.extensions_mut().insert(Timing {
                started: Instant::now(),
                fields,
            });
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id) {
                if let Some(timing) = span.extensions_mut().get_mut::<Timing>() {
                    values.record(&mut timing.fields);
                }
            }
        }

        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(&id) else {
                return;
            };
            let Some(timing) = span.extensions_mut().remove::<Timing>() else {
                return;
            };
            let seconds = timing.started.elapsed().as_secs_f64();
            let Fields {
                daemon,
                labels,
                numbers,
            } = timing.fields;
            routed(&self.recorder, daemon.as_deref(), labels).record_operation(
                span.name(),
                seconds,
                numbers,
            );
        }
    }
}
