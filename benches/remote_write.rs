//! Remote-write catch-up harness (not criterion: one run is minutes of data, not a loop).
//!
//! Writes `PV_RW_SECONDS` (default 3600) of history for `PV_RW_DAEMONS` (default 100)
//! daemons with `PV_RW_METRICS` (default 20) gauge series each, one sample per series per
//! second, ending 10 minutes ago, into a fresh database through the storage writer, and
//! compacts it into chunks, as an hour-long outage leaves it. Then points a shipper with no
//! cursor (backfill 2 h, `max_samples_per_second` unbounded) at a fresh remote and times
//! the catch-up until its cursor passes the last sample.
//!
//! The remote is `PV_RW_URL` (a real engine, e.g. VictoriaMetrics'
//! `http://127.0.0.1:8428/api/v1/write`) or, without it, a receiver in this process that
//! reads each body and answers 204 (perfvisor's own ceiling). CPU is the shipper thread's
//! alone (`/proc/self/task/<tid>/stat` utime + stime); bytes are the compressed request
//! bodies. `PV_RW_PER_SEND` sets `max_samples_per_send` (default 2000). Run:
//! `cargo bench --bench remote_write` (figures in BENCHMARKS.md).

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perfvisor::config::RemoteWriteConfig;
use perfvisor::remote_write::RemoteWriters;
use perfvisor_actors::storage::{StorageConfig, StorageHandle, StorageReader, StorageStats};
use perfvisor_actors::types::{
    DaemonId, Labels, MetricBatch, MetricKind, Sample, SeriesKey, Source,
};

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A remote-write receiver that reads every body and answers 204; returns its port.
fn null_receiver(bodies: Arc<AtomicU64>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let bodies = Arc::clone(&bodies);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end().to_ascii_lowercase();
                        if line.is_empty() {
                            break;
                        }
                        if let Some(v) = line.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    bodies.fetch_add(1, Ordering::Relaxed);
                    let reply = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
                    if reader.get_mut().write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// CPU seconds (user + system) of this process's thread named `name`.
fn thread_cpu(name: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = after.split_whitespace().collect();
        let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let s: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        return (u + s) / tick;
    }
    0.0
}

fn main() {
    let daemons = env("PV_RW_DAEMONS", 100);
    let seconds = env("PV_RW_SECONDS", 3600);
    let metrics = env("PV_RW_METRICS", 20);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("perfvisor.db");
    let end_ms = now_ms() - 600_000;
    let start_ms = end_ms - seconds * 1000;

    let started = Instant::now();
    let handle = StorageHandle::spawn(
        StorageConfig::new(&db),
        Arc::new(StorageStats::default()),
        Arc::new(|_| Duration::ZERO),
    )
    .expect("storage");
    let keys: Vec<SeriesKey> = (0..daemons)
        .flat_map(|d| {
            (0..metrics).map(move |m| {
                SeriesKey::new(
                    Source::Daemon(DaemonId::new(format!("daemon-{d:03}"))),
                    format!("app.bench.metric_{m:02}_bytes"),
                    Labels::from_pairs([("project", "bench")]),
                )
            })
        })
        .collect();
    for s in 0..seconds {
        let ts = start_ms + s * 1000;
        let samples = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Sample {
                series: k.clone(),
                kind: MetricKind::Gauge,
                ts_ms: ts,
                // A slowly varying level, as memory or queue lengths are.
                value: (1_000_000 + i as i64 * 1000 + (s % 60) * 7) as f64,
            })
            .collect();
        assert!(handle.store_blocking(Arc::new(MetricBatch { samples }), Duration::from_secs(60)));
    }
    handle
        .compact_now(Duration::from_secs(3600))
        .expect("compaction");
    handle.shutdown(Duration::from_secs(600)).expect("shutdown");
    let total = StorageReader::open(&db)
        .expect("reader")
        .sample_count()
        .expect("count");
    let file_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "history: {daemons} daemons x {metrics} series x {seconds} s = {total} samples, \
         written and compacted in {:.1} s, file {:.1} MiB",
        started.elapsed().as_secs_f64(),
        file_bytes as f64 / 1048576.0
    );

    let bodies = Arc::new(AtomicU64::new(0));
    let url = std::env::var("PV_RW_URL").unwrap_or_else(|_| {
        format!(
            "http://127.0.0.1:{}/api/v1/write",
            null_receiver(Arc::clone(&bodies))
        )
    });
    let mut remote = RemoteWriteConfig::new("bench", url.clone());
    remote.backfill = Duration::from_secs(2 * 3600);
    remote.max_samples_per_second = 100_000_000;
    remote.max_samples_per_send = env("PV_RW_PER_SEND", 2000) as usize;
    let started = Instant::now();
    let mut writers = RemoteWriters::start(
        &db,
        std::slice::from_ref(&remote),
        Duration::from_secs(7 * 86_400),
        None,
        None,
    )
    .expect("shipper");
    let mut cpu = 0.0;
    loop {
        let s = &writers.status()[0];
        cpu = f64::max(cpu, thread_cpu("perfvisor-rw-be"));
        if s.cursor_ms > end_ms {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "no catch-up within an hour: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed().as_secs_f64();
    let s = writers.status()[0].clone();
    writers.stop();
    let sent = s.sent_samples as f64;
    println!("remote: {url}");
    println!(
        "catch-up: {} samples in {wall:.2} s = {:.0} samples/s ({:.1} s of history per s); \
         {} requests, {} retries, {} dropped",
        s.sent_samples,
        sent / wall,
        seconds as f64 / wall,
        bodies.load(Ordering::Relaxed),
        s.retries,
        s.dropped_samples
    );
    println!(
        "shipper thread CPU: {cpu:.2} s = {:.2} s per million samples",
        cpu / (sent / 1e6)
    );
    println!(
        "wire: {} bytes = {:.2} bytes per sample (snappy-compressed protobuf)",
        s.sent_bytes,
        s.sent_bytes as f64 / sent
    );
}
