//! The facades' hot path, in ns per call: a `metrics` counter increment and histogram
//! record through perfvisor's `MetricsRecorder` beside the same calls into
//! metrics-exporter-prometheus's recorder, and one closed `tracing` span through
//! perfvisor's `SpanLayer` beside the same span with no layer (tracing's own cost).
//!
//! The macros look the key up on every call, as a host's code usually does; perfvisor's
//! recorder channel is drained by a bare thread, so the figures are what the caller pays.
//!
//! `cargo bench --bench facades`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use metrics::{counter, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use perfvisor::{MetricsRecorder, SpanLayer, SystemClock};
use perfvisor_actors::recorder;
use perfvisor_actors::telemetry::RecorderStats;
use tracing_subscriber::layer::SubscriberExt;

/// A recorder whose channel a bare thread drains; the guard stops the thread.
struct Drained {
    rec: recorder::Recorder,
    stop: Arc<AtomicBool>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Drained {
    fn new() -> Self {
        let stats = Arc::new(RecorderStats::default());
        let (rec, rx) = recorder::channel(1 << 16, Arc::new(SystemClock), stats);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let drain = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                while rx.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        Drained {
            rec,
            stop,
            drain: Some(drain),
        }
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
    }
}

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

criterion_group!(benches, metrics_calls, spans);
criterion_main!(benches);
