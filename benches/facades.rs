//! The facades' hot path, in ns per call: a `metrics` counter increment and histogram
//! record through perfvisor's `MetricsRecorder` beside the same calls into
//! metrics-exporter-prometheus's recorder, and one closed `tracing` span through
//! perfvisor's `SpanLayer` beside the same span with no layer (tracing's own cost).
//!
//! The macros look the key up on every call, as a host's code usually does; perfvisor's
//! recorder channel is drained by a bare thread, so the figures are what the caller pays.
//!
//! The `histogram` group sets `Recorder::observe` beside `Recorder::record` (what the
//! caller pays: the same push), and what the collector pays per sample: resolving a gauge
//! sample (which then costs a stored point and an analyzer update each) against resolving
//! an observation and inserting it into its interval's DDSketch (interval closes amortised:
//! one every 500 observations, as at 50/s with 10 s intervals).
//!
//! `cargo bench --bench facades`

use criterion::{criterion_group, criterion_main, Criterion};
use metrics::{counter, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use perfvisor::{MetricsRecorder, SpanLayer};
use tracing_subscriber::layer::SubscriberExt;

#[path = "common/drained.rs"]
mod drained;
use drained::Drained;

fn metrics_calls(c: &mut Criterion) {
    let drained = Drained::new();
    let perfvisor = MetricsRecorder::new(drained.rec.clone());
    let prometheus = PrometheusBuilder::new().build_recorder();
    let mut g = c.benchmark_group("metrics_facade");
    g.bench_function("counter/perfvisor", |b| {
        metrics::with_local_recorder(&perfvisor, || {
            b.iter(|| counter!("requests_total", "route" => "/search").increment(1))
        })
    });
    g.bench_function("counter/prometheus", |b| {
        metrics::with_local_recorder(&prometheus, || {
            b.iter(|| counter!("requests_total", "route" => "/search").increment(1))
        })
    });
    g.bench_function("histogram/perfvisor", |b| {
        metrics::with_local_recorder(&perfvisor, || {
            b.iter(|| histogram!("request_latency_seconds", "route" => "/search").record(0.004))
        })
    });
    g.bench_function("histogram/prometheus", |b| {
        metrics::with_local_recorder(&prometheus, || {
            b.iter(|| histogram!("request_latency_seconds", "route" => "/search").record(0.004))
        })
    });
    g.finish();
}

fn spans(c: &mut Criterion) {
    let drained = Drained::new();
    let mut g = c.benchmark_group("tracing_span");
    let with_layer = tracing_subscriber::registry().with(SpanLayer::new(drained.rec.clone()));
    tracing::subscriber::with_default(with_layer, || {
        g.bench_function("closed_span/perfvisor_layer", |b| {
            b.iter(|| {
                let _span = tracing::info_span!("serve", route = "/search", items = 3).entered();
            })
        });
    });
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        g.bench_function("closed_span/registry_only", |b| {
            b.iter(|| {
                let _span = tracing::info_span!("serve", route = "/search", items = 3).entered();
            })
        });
    });
    g.finish();
}

fn histograms(c: &mut Criterion) {
    use perfvisor_actors::collector::histogram::{Closed, Histograms};
    use perfvisor_actors::collector::{AppSampleResolver, Resolved};
    use perfvisor_actors::recorder::{RawKind, RawSample, Stamp};
    use perfvisor_actors::types::{Labels, MetricName};

    let drained = Drained::new();
    let rec = drained
        .rec
        .with_labels(Labels::from_pairs([("route", "/search")]));
    let mut g = c.benchmark_group("histogram");
    g.bench_function("caller/record", |b| {
        b.iter(|| rec.record("request_latency_seconds", 0.004))
    });
    g.bench_function("caller/observe", |b| {
        b.iter(|| rec.observe("request_latency_seconds", 0.004))
    });
    let metric = MetricName::from("request_latency_seconds");
    let source = perfvisor_actors::recorder::sources::register(
        None,
        Labels::from_pairs([("route", "/search")]),
    )
    .expect("a source");
    let raw = |kind: RawKind, i: i64| RawSample {
        source,
        metric: metric.clone(),
        extra: None,
        kind,
        value: 0.004 + (i % 97) as f64 * 1e-5,
        at: Stamp::wall(i * 20),
    };
    let mut resolver = AppSampleResolver::default();
    let mut i = 0i64;
    g.bench_function("collector/resolve_gauge", |b| {
        b.iter(|| {
            i += 1;
            resolver.resolve(raw(RawKind::Gauge, i))
        })
    });
    let mut histograms = Histograms::new(10_000);
    let mut closed = Closed::default();
    g.bench_function("collector/resolve_and_sketch", |b| {
        b.iter(|| {
            i += 1;
            if let Some(Resolved::Observation {
                series,
                ts_ms,
                value,
            }) = resolver.resolve(raw(RawKind::Observation, i))
            {
                histograms.observe(series, ts_ms, value, &mut closed);
            }
            if closed.samples.len() > 1_000 {
                closed = Closed::default();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, metrics_calls, spans, histograms);
criterion_main!(benches);
