//! The hot path: `Recorder::record` and the `profile` guard, in ns per call.
//!
//! Two settings side by side: a recorder whose channel is drained by a bare thread (the cost
//! the caller pays when the sample is accepted), and the recorder of a running perfvisor
//! (intake, collector, analyzer and storage all live; at this rate some samples are dropped
//! and counted, which is the other path the caller may take). The drained figures mix both
//! paths when the drain thread falls behind (the share accepted is printed after each);
//! `record_accepted` and `profile_guard_accepted` time the accepted path alone.
//!
//! `cargo bench --bench hot_path`

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use perfvisor::{Perfvisor, SystemClock};
use perfvisor_actors::telemetry::RecorderStats;

#[path = "common/drained.rs"]
mod drained;
use drained::Drained;

/// Samples drained (accepted and taken) and dropped so far.
fn counts(stats: &RecorderStats) -> (u64, u64) {
    (
        stats.drained.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed),
    )
}

/// Times `call` alone on its accepted path: in batches the channel always has room for,
/// waiting (untimed) before each batch until the drain thread has emptied the channel. The
/// drain thread keeps taking samples on the other core during a batch, as a host's intake
/// does. Prints the share accepted (every call, unless something else fills the channel).
fn accepted_only(
    g: &mut BenchmarkGroup<'_, WallTime>,
    drained: &Drained,
    name: &str,
    call: impl Fn(&perfvisor_actors::recorder::Recorder),
) {
    const BATCH: u64 = 4_096;
    let before = counts(&drained.stats);
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                while drained.rec.backlog() > 0 {
                    std::thread::sleep(Duration::from_micros(50));
                }
                let start = Instant::now();
                for _ in 0..n {
                    call(&drained.rec);
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    let (taken, lost) = counts(&drained.stats);
    eprintln!(
        "{name}: {} calls dropped (the rest accepted: {})",
        lost - before.1,
        taken - before.0
    );
}

fn bare(c: &mut Criterion) {
    let drained = Drained::new();
    let rec = &drained.rec;
    let mut g = c.benchmark_group("recorder_drained_by_thread");
    // Each figure mixes the accepted path and, when the drain thread falls behind (a busy
    // host), the dropped one: the share is printed after each.
    let share = |name: &str, before: (u64, u64)| {
        let (taken, lost) = counts(&drained.stats);
        let (accepted, dropped) = (taken - before.0, lost - before.1);
        eprintln!(
            "{name}: {:.0} % of the calls accepted ({accepted} accepted, {dropped} dropped)",
            100.0 * accepted as f64 / (accepted + dropped).max(1) as f64
        );
    };
    let before = counts(&drained.stats);
    g.bench_function("record", |b| b.iter(|| rec.record("bench.value", 1.0)));
    share("record", before);
    let before = counts(&drained.stats);
    g.bench_function("profile_guard", |b| {
        b.iter(|| {
            let _t = rec.profile("bench_op");
        })
    });
    share("profile_guard", before);
    accepted_only(&mut g, &drained, "record_accepted", |rec| {
        std::hint::black_box(rec.record("bench.value", 1.0));
    });
    accepted_only(&mut g, &drained, "profile_guard_accepted", |rec| {
        drop(rec.profile("bench_op"));
    });
    g.bench_function("profile_guard_with_extra", |b| {
        b.iter(|| {
            let mut t = rec.profile("bench_op");
            t.add_metric("items", 3.0);
        })
    });
    g.bench_function("instant_now", |b| b.iter(Instant::now));
    let clock: Arc<dyn perfvisor::Clock> = Arc::new(SystemClock);
    g.bench_function("system_clock_now_ms", |b| b.iter(|| clock.now_ms()));
    g.bench_function("coarse_clock_now_ms", |b| {
        b.iter(perfvisor_actors::types::coarse_now_ms)
    });
    let (tx, rx2) = crossbeam_channel::bounded::<u64>(1 << 16);
    g.bench_function("crossbeam_try_send", |b| {
        b.iter(|| {
            let _ = tx.try_send(1);
            if tx.len() > 60_000 {
                while rx2.try_recv().is_ok() {}
            }
        })
    });
    // The recorder's channel: a list channel bounded by a length check (memory only for
    // what waits) instead of a preallocated array; side by side with the array above.
    let (ltx, lrx) = crossbeam_channel::unbounded::<u64>();
    g.bench_function("crossbeam_list_len_check_send", |b| {
        b.iter(|| {
            if ltx.len() < 60_000 {
                let _ = ltx.send(1);
            } else {
                while lrx.try_recv().is_ok() {}
            }
        })
    });
    g.finish();
    let stats = drained.stats.clone();
    drop(drained);
    eprintln!(
        "bare: drained {} dropped {}",
        stats.drained.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed)
    );
}

fn live(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pv = Perfvisor::builder()
        .database(dir.path().join("bench.db"))
        .start()
        .expect("perfvisor starts");
    let rec = pv.recorder();
    let mut g = c.benchmark_group("recorder_of_running_perfvisor");
    g.bench_function("record", |b| b.iter(|| rec.record("bench.value", 1.0)));
    g.bench_function("profile_guard", |b| {
        b.iter(|| {
            let _t = rec.profile("bench_op");
        })
    });
    g.finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = pv.status().await.expect("status");
        eprintln!(
            "live: accepted {} dropped {}",
            s.recorder.accepted, s.recorder.dropped
        );
        pv.shutdown().await.expect("shutdown");
    });
}

criterion_group!(benches, bare, live);
criterion_main!(benches);
