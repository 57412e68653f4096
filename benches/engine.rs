//! Engine latencies: panic-to-serving-again restart latency, and end-to-end
//! sample-to-subscriber alert latency once the rule's `for` has elapsed.
//!
//! `cargo bench --bench engine`
//!
//! Run with `RUST_BACKTRACE=0` (or unset): the default panic hook with backtraces on spends
//! milliseconds resolving symbols for every injected panic, which is the host's choice of
//! hook and is not part of perfvisor's restart.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion};
use perfvisor::{
    ActorKind, Alert, AlertState, PanicTarget, Perfvisor, RestartKind, RestartPolicy, ThresholdRule,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn policy(initial: Duration) -> RestartPolicy {
    RestartPolicy {
        max_restarts: u32::MAX,
        backoff_initial: initial,
        // Every benchmark iteration is a first failure: no growth between iterations.
        stable_after: Duration::ZERO,
        ..RestartPolicy::new(RestartKind::Permanent)
    }
}

fn restart(c: &mut Criterion) {
    std::panic::set_hook(Box::new(|_| {}));
    let rt = runtime();
    let mut g = c.benchmark_group("restart");
    for (name, initial) in [
        ("panic_to_serving_no_backoff", Duration::ZERO),
        (
            "panic_to_serving_default_first_backoff_1ms",
            Duration::from_millis(1),
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let pv = Perfvisor::builder()
            .database(dir.path().join("bench.db"))
            .actor_restart_policy(policy(initial))
            .start()
            .expect("start");
        if initial.is_zero() {
            g.bench_function("report_round_trip_baseline", |b| {
                b.iter(|| rt.block_on(pv.report("x")).expect("report"))
            });
        }
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    rt.block_on(async {
                        pv.inject_panic(PanicTarget::Kind(ActorKind::Analyzer))
                            .await
                            .expect("inject");
                        pv.report("x").await.expect("report");
                    });
                    total += t0.elapsed();
                }
                total
            })
        });
        rt.block_on(pv.shutdown()).expect("shutdown");
    }
    g.finish();
    let _ = std::panic::take_hook();
}

struct Timestamps(mpsc::Sender<(Instant, AlertState)>);
impl Actor for Timestamps {
    type Context = Context<Self>;
}
impl Handler<Alert> for Timestamps {
    type Result = ();
    fn handle(&mut self, a: Alert, _: &mut Context<Self>) {
        let _ = self.0.send((Instant::now(), a.state));
    }
}

fn alert_latency(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let pv = Perfvisor::builder()
        .database(dir.path().join("bench.db"))
        .rule(ThresholdRule::above(
            "bench_slow",
            "bench.latency_seconds",
            0.5,
        ))
        .start()
        .expect("start");
    let (tx, rx) = mpsc::channel();
    let (rtx, rrx) = mpsc::channel();
    std::thread::spawn(move || {
        let sys = actix::System::new();
        sys.block_on(async move {
            let _ = rtx.send(Timestamps(tx).start().recipient());
        });
        let _ = sys.run();
    });
    rt.block_on(pv.subscribe_alerts(rrx.recv().expect("recipient")))
        .expect("subscribe");
    let rec = pv.recorder();
    let mut all = Vec::new();
    let mut g = c.benchmark_group("alert");
    g.bench_function("sample_to_host_actor", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                rec.observe("bench.latency_seconds", 1.0);
                let (at, state) = rx.recv().expect("firing");
                assert_eq!(state, AlertState::Firing);
                let d = at - t0;
                all.push(d);
                total += d;
                rec.observe("bench.latency_seconds", 0.0);
                let (_, state) = rx.recv().expect("resolved");
                assert_eq!(state, AlertState::Resolved);
            }
            total
        })
    });
    g.finish();
    all.sort();
    let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "sample_to_host_actor over {} alerts: p50 {:?} p99 {:?} max {:?}",
        all.len(),
        q(0.5),
        q(0.99),
        all[all.len() - 1]
    );
    rt.block_on(pv.shutdown()).expect("shutdown");
}

criterion_group!(benches, restart, alert_latency);
criterion_main!(benches);
