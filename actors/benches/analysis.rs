//! Analysis cost: one sample into the analyzer (window, per-minute mean, anomaly detector),
//! and one judgement tick (statistics, trend fit and classification of every series, then
//! bottlenecks, score and recommendations of every daemon), per series; and the memory held
//! per series, printed before the measurements.
//!
//! Also the alert rule engine's dispatch cost: one sample evaluated against 20 rules with
//! 1,000 series tracked, and one sample that produces a notification (fire or resolve).
//!
//! `cargo bench -p perfvisor-actors --bench analysis`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use perfvisor_actors::analyzer::AnalyzerState;
use perfvisor_actors::metric_names as names;
use perfvisor_actors::types::{
    DaemonId, Labels, MetricBatch, MetricKind, Sample, SeriesKey, Source,
};

const T0: i64 = 1_767_225_600_000;
const DAEMONS: usize = 10;

/// The watcher's series of a daemon, plus one app latency.
fn series(d: usize) -> Vec<(SeriesKey, MetricKind)> {
    let source = Source::Daemon(DaemonId::new(format!("daemon-{d}")));
    let metrics = [
        (names::PROCESS_CPU_TIME, MetricKind::Counter),
        (names::PROCESS_CPU_UTILIZATION, MetricKind::Gauge),
        (names::PROCESS_MEMORY_RSS, MetricKind::Gauge),
        (names::PROCESS_MEMORY_VIRTUAL, MetricKind::Gauge),
        (names::PROCESS_DISK_READ, MetricKind::Counter),
        (names::PROCESS_DISK_WRITE, MetricKind::Counter),
        (names::PROCESS_DISK_READ_RATE, MetricKind::Gauge),
        (names::PROCESS_DISK_WRITE_RATE, MetricKind::Gauge),
        (names::PROCESS_THREADS, MetricKind::Gauge),
        (names::PROCESS_OPEN_FDS, MetricKind::Gauge),
        (names::PROCESS_FD_LIMIT, MetricKind::Gauge),
        (names::PROCESS_UPTIME, MetricKind::Gauge),
        ("search.latency_seconds", MetricKind::Gauge),
    ];
    metrics
        .iter()
        .map(|(m, k)| (SeriesKey::new(source.clone(), *m, Labels::empty()), *k))
        .collect()
}

fn value(rng: &mut fastrand::Rng, i: i64, j: usize) -> f64 {
    match j {
        0 | 4 | 5 => i as f64 * 10.0 + rng.f64(),
        2 => 5e7 + i as f64 * 1000.0 + rng.f64() * 4096.0,
        _ => 1.0 + rng.f64(),
    }
}

/// A state with `DAEMONS` daemons whose windows are full (`seconds` of 1 Hz samples).
fn filled(seconds: i64) -> (AnalyzerState, Vec<Vec<(SeriesKey, MetricKind)>>) {
    let mut state = AnalyzerState::new(600);
    let all: Vec<_> = (0..DAEMONS).map(series).collect();
    let mut rng = fastrand::Rng::with_seed(1);
    for i in 0..seconds {
        let mut samples = Vec::new();
        for keys in &all {
            for (j, (key, kind)) in keys.iter().enumerate() {
                samples.push(Sample {
                    series: key.clone(),
                    kind: *kind,
                    ts_ms: T0 + i * 1000,
                    value: value(&mut rng, i, j),
                });
            }
        }
        state.add(&MetricBatch { samples });
    }
    (state, all)
}

fn analysis(c: &mut Criterion) {
    let seconds = 2 * 3600;
    let (mut state, all) = filled(seconds);
    let n = state.len();
    println!(
        "memory: {} series hold {} bytes: {} bytes per series (600-sample window, 6 h of \
         per-minute means, anomaly detector)",
        n,
        state.memory_bytes(),
        state.memory_bytes() / n
    );
    let mut g = c.benchmark_group("analyzer");
    let (key, kind) = all[0][1].clone();
    let mut ts = T0 + seconds * 1000;
    let mut rng = fastrand::Rng::with_seed(2);
    g.bench_function("add one sample", |b| {
        b.iter(|| {
            ts += 1000;
            let batch = MetricBatch {
                samples: vec![Sample {
                    series: key.clone(),
                    kind,
                    ts_ms: ts,
                    value: 1.0 + rng.f64(),
                }],
            };
            black_box(state.add(black_box(&batch)));
        })
    });
    let now = ts;
    g.sample_size(20);
    g.bench_function(
        format!(
            "judgement tick, {DAEMONS} daemons × {} series",
            all[0].len()
        ),
        |b| b.iter(|| black_box(state.judge_all(black_box(now)))),
    );
    g.finish();
}

fn dispatch(c: &mut Criterion) {
    use perfvisor_actors::alerts::{RuleEngine, ThresholdRule};
    let rules: Vec<ThresholdRule> = (0..20)
        .map(|i| ThresholdRule::above(format!("rule{i}"), "app.latency_seconds", 0.5 + i as f64))
        .collect();
    let mut engine = RuleEngine::new(rules);
    let keys: Vec<SeriesKey> = (0..1000)
        .map(|i| {
            SeriesKey::new(
                Source::Daemon(DaemonId::new(format!("d{i}"))),
                "app.latency_seconds",
                Labels::empty(),
            )
        })
        .collect();
    let batch = |key: &SeriesKey, ts: i64, value: f64| MetricBatch {
        samples: vec![Sample {
            series: key.clone(),
            kind: MetricKind::Gauge,
            ts_ms: ts,
            value,
        }],
    };
    for (i, k) in keys.iter().enumerate() {
        engine.evaluate(&batch(k, T0 + i as i64, 0.1), T0 + i as i64);
    }
    let mut ts = T0 + 10_000;
    let mut g = c.benchmark_group("alerts");
    g.bench_function(
        "evaluate one sample, 20 rules, 1000 series, no change",
        |b| {
            b.iter(|| {
                ts += 1;
                black_box(engine.evaluate(black_box(&batch(&keys[7], ts, 0.2)), ts))
            })
        },
    );
    let mut high = false;
    g.bench_function(
        "evaluate one sample that fires or resolves one alert",
        |b| {
            b.iter(|| {
                ts += 1;
                high = !high;
                let out = engine.evaluate(&batch(&keys[9], ts, if high { 0.9 } else { 0.1 }), ts);
                black_box(out)
            })
        },
    );
    g.finish();
}

criterion_group!(benches, analysis, dispatch);
criterion_main!(benches);
