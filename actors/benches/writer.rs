//! The storage writer's CPU at 1,000-daemon scale (`cargo bench -p perfvisor-actors --bench
//! writer`): 1,000 daemons × 18 series = 18,000 series at one sample a second of simulated
//! time go through the real writer thread onto a real SQLite file, one commit per simulated
//! second (as the 1 s flush makes them), and the writer thread's own CPU time
//! (`/proc/self/task/<tid>/stat`, user + system) is printed per simulated minute. It prints
//! figures; nothing is asserted (timings are not tests).
//!
//! Two phases, each measured on its own:
//! - *ingest*: `PERFVISOR_BENCH_WRITER_MINUTES` (default 5) simulated minutes, starting
//!   at an hour's start: accepting, committing the head log and whatever folding the
//!   writer does meanwhile (its clock is a manual one moved a second per simulated second).
//! - *compaction*: the clock moves past the hour and its grace, and a forced compaction
//!   turns everything into chunks and rollups; its CPU is divided by the same minutes.
//!
//! It also prints what each phase had written to disk (`/proc/self/io` `write_bytes`).
//!
//! Knobs: `PERFVISOR_BENCH_WRITER_MINUTES`, `PERFVISOR_BENCH_WRITER_DAEMONS` (default 1000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use perfvisor_actors::storage::{StorageConfig, StorageHandle, StorageReader, StorageStats};
use perfvisor_actors::types::{
    DaemonId, Labels, ManualClock, MetricBatch, MetricKind, Sample, SeriesKey, Source,
};

/// 2026-01-01T00:00:00Z, an hour's start.
const T0: i64 = 1_767_225_600_000;
/// Series per daemon: what a watcher records every second.
const METRICS: usize = 18;
const WAIT: Duration = Duration::from_secs(600);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes this process has had written to storage so far (`write_bytes` of
/// `/proc/self/io`: what reached the block layer, WAL and checkpoints included).
fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

/// User + system CPU seconds of the thread named `name` in this process.
fn thread_cpu(name: &str) -> Option<f64> {
    let tick = 100.0; // USER_HZ on Linux
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        // The kernel keeps the first 15 bytes of a thread's name.
        if comm.trim_end() != &name[..name.len().min(15)] {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        return Some((utime + stime) / tick);
    }
    None
}

fn main() {
    let minutes = env_usize("PERFVISOR_BENCH_WRITER_MINUTES", 5);
    let daemons = env_usize("PERFVISOR_BENCH_WRITER_DAEMONS", 1000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("writer.db");
    let clock = Arc::new(ManualClock::new(T0));
    let stats = Arc::new(StorageStats::default());
    let config = StorageConfig::new(&path)
        .queue_capacity(daemons * 4)
        .clock(clock.clone());
    let handle = StorageHandle::spawn(config, Arc::clone(&stats), Arc::new(|_| Duration::ZERO))
        .expect("storage writer starts");

    let keys: Vec<Vec<SeriesKey>> = (0..daemons)
        .map(|d| {
            let source = Source::Daemon(DaemonId::new(format!("daemon-{d:04}")));
            (0..METRICS)
                .map(|m| {
                    SeriesKey::new(
                        source.clone(),
                        format!("process.bench.metric_{m:02}"),
                        Labels::empty(),
                    )
                })
                .collect()
        })
        .collect();
    let series = daemons * METRICS;
    println!(
        "writer bench: {daemons} daemons × {METRICS} = {series} series, 1 sample/s, \
         {minutes} simulated minutes, one commit per simulated second"
    );

    // The writer names its thread as it starts: a flush makes sure it has.
    handle.flush(WAIT).expect("flush");
    let cpu0 = thread_cpu("perfvisor-storage").unwrap_or(f64::NAN);
    let written0 = written_bytes().unwrap_or(0);
    let wall = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    for second in 0..(minutes * 60) as i64 {
        let now = T0 + second * 1000;
        clock.set_ms(now + 1000);
        for (d, keys) in keys.iter().enumerate() {
            let ts = now + (d as i64 * 997) % 1000;
            let samples = keys
                .iter()
                .enumerate()
                .map(|(m, key)| Sample {
                    series: key.clone(),
                    kind: if m % 3 == 0 {
                        MetricKind::Counter
                    } else {
                        MetricKind::Gauge
                    },
                    ts_ms: ts,
                    value: if m % 3 == 0 {
                        (second * 7 + m as i64) as f64
                    } else {
                        (rng.u32(0..4096) as f64) * 4096.0
                    },
                })
                .collect();
            assert!(
                handle.store_blocking(Arc::new(MetricBatch { samples }), WAIT),
                "the writer's queue stayed full"
            );
        }
        handle.flush(WAIT).expect("flush");
    }
    let ingest_cpu = thread_cpu("perfvisor-storage").unwrap_or(f64::NAN) - cpu0;
    let written1 = written_bytes().unwrap_or(0);
    let ingest_wall = wall.elapsed().as_secs_f64();

    clock.set_ms(T0 + 3_600_000 + 180_000);
    let cpu1 = thread_cpu("perfvisor-storage").unwrap_or(f64::NAN);
    let wall = Instant::now();
    handle.compact_now(WAIT).expect("compaction");
    let compact_cpu = thread_cpu("perfvisor-storage").unwrap_or(f64::NAN) - cpu1;
    let compact_wall = wall.elapsed().as_secs_f64();
    let written2 = written_bytes().unwrap_or(0);

    let summary = StorageReader::open(&path)
        .and_then(|r| r.summary())
        .expect("summary");
    handle.shutdown(WAIT).expect("shutdown");
    let per_min = |cpu: f64| cpu / minutes as f64;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "ingest:     {:.3} writer CPU s per simulated minute ({:.2} s CPU, {:.1} s wall, {} commits)",
        per_min(ingest_cpu),
        ingest_cpu,
        ingest_wall,
        load(&stats.commits)
    );
    println!(
        "compaction: {:.3} writer CPU s per simulated minute ({:.2} s CPU, {:.1} s wall)",
        per_min(compact_cpu),
        compact_cpu,
        compact_wall
    );
    println!(
        "total:      {:.3} writer CPU s per simulated minute = {:.2} % of a core at 1 s",
        per_min(ingest_cpu + compact_cpu),
        per_min(ingest_cpu + compact_cpu) / 60.0 * 100.0
    );
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "written to disk (/proc/self/io write_bytes): ingest {:.1} MB ({:.3} MB per simulated minute), compaction {:.1} MB",
        mb(written1.saturating_sub(written0)),
        mb(written1.saturating_sub(written0)) / minutes as f64,
        mb(written2.saturating_sub(written1))
    );
    println!(
        "file: {} chunks, {} head rows, {} samples stored",
        summary.chunks,
        summary.head_rows,
        load(&stats.stored_samples)
    );
}
