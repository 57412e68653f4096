//! Analysis cost: one sample into the analyzer (window, per-minute mean, anomaly detector),
//! and one judgement tick (statistics, trend fit and classification of every series, then
//! bottlenecks, score and recommendations of every daemon; of busy and of idle daemons),
//! per series; and the memory held per series, printed before the measurements.
//!
//! Also the alert rule engine's dispatch cost: one sample evaluated against 20 rules with
//! 1,000 series tracked, and one sample that produces a notification (fire or resolve).
//!
//! The memory figure is counted by a global allocator that tracks live bytes, around a
//! state filled for 6 h 10 min (long windows full; dense, idle, sparse and all-full cases),
//! and split by part with `AnalyzerState::memory_parts`. Alone: `cargo bench -p perfvisor-actors --bench analysis
//! -- memory` (the filter matches no measurement, so only the figures print).
//!
//! `cargo bench -p perfvisor-actors --bench analysis`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use perfvisor_actors::analyzer::AnalyzerState;
use perfvisor_actors::metric_names as names;
use perfvisor_actors::types::{
    DaemonId, Labels, MetricBatch, MetricKind, Sample, SeriesKey, Source,
};

/// Counts the bytes live on the heap, so the state's real footprint can be read.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged; the counter is only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

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
        // Uptime grows: a value that went down would be a restart, and restarts start
        // the process series afresh.
        11 => 100.0 + i as f64,
        2 => 5e7 + i as f64 * 1000.0 + rng.f64() * 4096.0,
        _ => 1.0 + rng.f64(),
    }
}

/// An idle daemon's value of series `j` at second `i`: what a process waiting on a socket
/// reports (no CPU or disk, one thread, a few descriptors, its memory changing every ten
/// minutes), its uptime growing, and a latency that holds for a minute at a time.
fn idle_value(_: &mut fastrand::Rng, i: i64, j: usize) -> f64 {
    match j {
        2 => 4_194_304.0 + (i / 600 % 3) as f64 * 4096.0,
        3 => 1.2e7,
        8 => 1.0,
        9 => 3.0,
        10 => 1024.0,
        11 => 100.0 + i as f64,
        12 => 0.010 + (i / 60 % 5) as f64 * 0.001,
        _ => 0.0,
    }
}

/// A state with `DAEMONS` daemons whose windows are full (`seconds` of 1 Hz samples).
fn filled(seconds: i64) -> (AnalyzerState, Vec<Vec<(SeriesKey, MetricKind)>>) {
    filled_with(seconds, value)
}

/// As [`filled`], with series values from `value_of`.
fn filled_with(
    seconds: i64,
    value_of: fn(&mut fastrand::Rng, i64, usize) -> f64,
) -> (AnalyzerState, Vec<Vec<(SeriesKey, MetricKind)>>) {
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
                    value: value_of(&mut rng, i, j),
                });
            }
        }
        state.add(&MetricBatch { samples });
    }
    (state, all)
}

/// The bytes a state of `DAEMONS` daemons holds after 6 h 10 min of 1 Hz samples, counted
/// by the allocator, and where they go.
fn memory() {
    let before = LIVE.load(Ordering::Relaxed);
    let (state, all) = filled(6 * 3600 + 600);
    // The keys' shared strings stay counted: the state holds them too.
    drop(all);
    let live = (LIVE.load(Ordering::Relaxed) - before).max(0) as usize;
    let n = state.len();
    let p = state.memory_parts();
    println!(
        "memory: {n} series ({} with a baseline) hold {live} bytes (allocator count), \
         {} per series",
        p.full_series,
        live / n
    );
    let light = n - p.full_series;
    println!(
        "memory parts, bytes per series with a baseline: short window {}, long window {}, \
         detector {}; struct {} per series; maps, keys and the rest {} per series \
         ({light} light series)",
        p.windows / p.full_series.max(1),
        p.long / p.full_series.max(1),
        p.detectors / p.full_series.max(1),
        p.structs / n,
        live.saturating_sub(p.windows + p.long + p.detectors + p.structs + p.histograms) / n,
    );
    drop(state);
    // The same series of idle daemons: most hold one value for minutes.
    let before = LIVE.load(Ordering::Relaxed);
    let (state, all) = filled_with(6 * 3600 + 600, idle_value);
    drop(all);
    let live = (LIVE.load(Ordering::Relaxed) - before).max(0) as usize;
    let p = state.memory_parts();
    println!(
        "memory, idle: {} series of idle daemons hold {live} bytes, {} per series (short \
         windows {} per series)",
        state.len(),
        live / state.len(),
        p.windows / state.len(),
    );
    drop(state);
    // Sparse series: 100 app gauges sampled once a minute (pushed metrics), 6 h 10 min.
    let before = LIVE.load(Ordering::Relaxed);
    let mut state = AnalyzerState::new(600);
    let source = Source::Daemon(DaemonId::new("sparse"));
    let keys: Vec<SeriesKey> = (0..100)
        .map(|i| SeriesKey::new(source.clone(), format!("app.queue_{i}"), Labels::empty()))
        .collect();
    let mut rng = fastrand::Rng::with_seed(3);
    for minute in 0..370 {
        let samples = keys
            .iter()
            .map(|key| Sample {
                series: key.clone(),
                kind: MetricKind::Gauge,
                ts_ms: T0 + minute * 60_000,
                value: 10.0 + rng.f64(),
            })
            .collect();
        state.add(&MetricBatch { samples });
    }
    drop(keys);
    let live = (LIVE.load(Ordering::Relaxed) - before).max(0) as usize;
    let p = state.memory_parts();
    println!(
        "memory, sparse: {} series sampled once a minute hold {live} bytes, {} per series \
         (short window {}, long window {}, detector {})",
        state.len(),
        live / state.len(),
        p.windows / state.len(),
        p.long / state.len(),
        p.detectors / state.len(),
    );
    drop(state);
    full();
}

/// Fully analysed series once every window is full: 20 app gauges of one daemon sampled
/// every second for 6 h 10 min (10 min of samples, 6 h of minute means, a full detector),
/// counted by the allocator, keys and maps included.
fn full() {
    const SERIES: usize = 20;
    let before = LIVE.load(Ordering::Relaxed);
    let mut state = AnalyzerState::new(600);
    let source = Source::Daemon(DaemonId::new("full"));
    let keys: Vec<SeriesKey> = (0..SERIES)
        .map(|i| SeriesKey::new(source.clone(), format!("app.load_{i}"), Labels::empty()))
        .collect();
    let mut rng = fastrand::Rng::with_seed(5);
    for i in 0..(6 * 3600 + 600) {
        let samples = keys
            .iter()
            .map(|key| Sample {
                series: key.clone(),
                kind: MetricKind::Gauge,
                ts_ms: T0 + i * 1000 + rng.i64(0..20),
                value: 100.0 + 10.0 * rng.f64(),
            })
            .collect();
        state.add(&MetricBatch { samples });
    }
    drop(keys);
    let live = (LIVE.load(Ordering::Relaxed) - before).max(0) as usize;
    let p = state.memory_parts();
    println!(
        "memory, full: {} series at 1 s for 6 h 10 min hold {live} bytes, {} per series \
         (short window {}, long window {}, detector {}, struct {})",
        state.len(),
        live / state.len(),
        p.windows / state.len(),
        p.long / state.len(),
        p.detectors / state.len(),
        p.structs / state.len(),
    );
}

fn analysis(c: &mut Criterion) {
    memory();
    let seconds = 2 * 3600;
    let (mut state, all) = filled(seconds);
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
    // A daemon's 13 series in one batch, as the watcher sends them: divide by 13 for the
    // cost per sample.
    let keys = all[1].clone();
    g.bench_function("add one daemon's batch of 13 samples", |b| {
        b.iter(|| {
            ts += 1000;
            let samples = keys
                .iter()
                .enumerate()
                .map(|(j, (key, kind))| Sample {
                    series: key.clone(),
                    kind: *kind,
                    ts_ms: ts,
                    value: value(&mut rng, ts / 1000 - T0 / 1000, j),
                })
                .collect();
            black_box(state.add(black_box(&MetricBatch { samples })));
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
    // The same tick over idle daemons (`idle_value`): most series hold one value, as a
    // fleet of daemons waiting on their sockets does.
    let (idle, _) = filled_with(seconds, idle_value);
    g.bench_function(
        format!(
            "judgement tick, {DAEMONS} idle daemons × {} series",
            all[0].len()
        ),
        |b| b.iter(|| black_box(idle.judge_all(black_box(now)))),
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
