//! The history benchmark harness (`cargo bench -p perfvisor-actors --bench history`): bytes
//! per sample after compaction, sustained ingest through the storage writer against a bare
//! rusqlite loop in the same run, and query latencies on 30 days of 1 Hz history for 100
//! series. It prints its figures; nothing is asserted (timings are not tests).
//!
//! Data:
//! - *Real process*: this process's own `/proc/self/{stat,statm,io,fd}` read every 5 ms
//!   while it works, stamped 1 s apart with the real overshoot of each sleep as millisecond
//!   jitter: real CPU time, RSS, I/O counters, descriptors and threads, exactly as a watcher
//!   records them (`process.cpu.time_seconds` etc.).
//! - *NAB*: the eight real series vendored at testdata/nab.
//! - *Modelled daemons*: 10 daemons × 10 watcher metrics = 100 series, with the shapes of
//!   the real ones (CPU ticks / 100 as a counter, utilisation as a noisy ratio, RSS in whole
//!   pages with steps, I/O counters in 4 KiB bursts, constant limits), 1 Hz with ms jitter.
//!   Used for the ingest comparison and the 30-day query file.
//!
//! Knobs: `PERFVISOR_BENCH_DAYS` (default 30) days in the query file, built once and kept
//! in `target/perfvisor-bench/` (delete it to rebuild); `PERFVISOR_BENCH_INGEST_HOURS`
//! (default 6) hours of 100 series for the ingest comparison.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perfvisor_actors::storage::{
    vacuum, Aggregation, Query, Retention, SeriesSelector, StorageConfig, StorageHandle,
    StorageReader, StorageStats, DAY_MS, HOUR_MS,
};
use perfvisor_actors::types::{
    DaemonId, Labels, ManualClock, MetricBatch, MetricKind, Sample, SeriesKey, Source,
};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const WAIT: Duration = Duration::from_secs(3600);

fn env_i64(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spawn(config: StorageConfig) -> (StorageHandle, Arc<StorageStats>) {
    let stats = Arc::new(StorageStats::default());
    let handle = StorageHandle::spawn(config, Arc::clone(&stats), Arc::new(|_| Duration::ZERO))
        .expect("storage writer starts");
    (handle, stats)
}

fn forever() -> Retention {
    Retention::all(Duration::from_secs(100 * 365 * 86_400))
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

// ---- data ------------------------------------------------------------------------------

/// One series of samples with its name and kind.
struct Series {
    key: SeriesKey,
    kind: MetricKind,
    samples: Vec<(i64, f64)>,
}

/// The latest timestamp of any of `series` (T0 when all are empty).
fn last_ts(series: &[Series]) -> i64 {
    series
        .iter()
        .filter_map(|s| s.samples.last())
        .map(|s| s.0)
        .max()
        .unwrap_or(T0)
}

/// Reads a whitespace-separated field list from a /proc file.
fn proc_fields(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn proc_io() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

/// `n` samples per watcher metric of this very process, taken every 5 ms while a
/// background thread works (hashing, allocating, writing a temp file), stamped 1 s apart
/// with the real sleep overshoot as jitter.
fn real_process_series(n: usize) -> Vec<Series> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut kept: Vec<Vec<u8>> = Vec::new();
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round += 1;
                // Bursty CPU, memory that grows and shrinks, writes now and then.
                let mut x = round;
                for _ in 0..(round % 7) * 20_000 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                }
                if round.is_multiple_of(3) {
                    kept.push(vec![x as u8; 64 * 1024 * ((round % 5) as usize + 1)]);
                }
                if kept.len() > 200 {
                    kept.drain(..150);
                }
                if round.is_multiple_of(50) {
                    let _ = std::fs::write(dir.path().join("w"), vec![1u8; 256 * 1024]);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let tick = 100.0; // CLK_TCK on Linux
    let page = 4096.0;
    let names = [
        ("process.cpu.time_seconds", MetricKind::Counter),
        ("process.cpu.utilization_ratio", MetricKind::Gauge),
        ("process.memory.usage_bytes", MetricKind::Gauge),
        ("process.memory.virtual_bytes", MetricKind::Gauge),
        ("process.disk.read_bytes", MetricKind::Counter),
        ("process.disk.write_bytes", MetricKind::Counter),
        ("process.open_file_descriptor.count", MetricKind::Gauge),
        ("process.thread.count", MetricKind::Gauge),
    ];
    let mut out: Vec<Series> = names
        .iter()
        .map(|(m, kind)| Series {
            key: SeriesKey::new(
                Source::Daemon(DaemonId::new("bench-self")),
                m.to_string(),
                Labels::empty(),
            ),
            kind: *kind,
            samples: Vec::with_capacity(n),
        })
        .collect();
    let mut previous_cpu: Option<(f64, Instant)> = None;
    for i in 0..n {
        let asked = Duration::from_millis(5);
        let before = Instant::now();
        std::thread::sleep(asked);
        let jitter_ms = (before.elapsed().saturating_sub(asked).as_micros() / 1000) as i64;
        let ts = T0 + i as i64 * 1000 + jitter_ms;
        let stat = proc_fields("/proc/self/stat");
        let statm = proc_fields("/proc/self/statm");
        let num =
            |v: &[String], i: usize| v.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        let cpu = (num(&stat, 13) + num(&stat, 14)) / tick;
        let now = Instant::now();
        let utilization = match previous_cpu {
            Some((c, t)) => (cpu - c) / now.duration_since(t).as_secs_f64() / 200.0,
            None => f64::NAN,
        };
        previous_cpu = Some((cpu, now));
        let (read, write) = proc_io();
        let fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0) as f64;
        let values = [
            cpu,
            utilization,
            num(&statm, 1) * page,
            num(&statm, 0) * page,
            read,
            write,
            fds,
            num(&stat, 19),
        ];
        for (series, value) in out.iter_mut().zip(values) {
            if !value.is_nan() {
                series.samples.push((ts, value));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = worker.join();
    out
}

/// The NAB series (timestamps parsed as UTC).
fn nab_series() -> Vec<Series> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/nab"));
    let mut out = Vec::new();
    for sub in ["realKnownCause", "realAWSCloudwatch"] {
        let Ok(dir) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let samples: Vec<(i64, f64)> = text
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let (ts, v) = line.split_once(',')?;
                    Some((parse_utc(ts)?, v.trim().parse().ok()?))
                })
                .collect();
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Series {
                key: SeriesKey::new(Source::Host, format!("nab.{name}"), Labels::empty()),
                kind: MetricKind::Gauge,
                samples,
            });
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` as UTC milliseconds.
fn parse_utc(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

/// A modelled daemon's watcher output, second by second.
struct ModelDaemon {
    rng: fastrand::Rng,
    ticks: u64,
    rss_pages: i64,
    read: u64,
    write: u64,
    fds: i64,
    keys: Vec<(SeriesKey, MetricKind)>,
}

const MODEL_METRICS: [(&str, MetricKind); 10] = [
    ("process.cpu.time_seconds", MetricKind::Counter),
    ("process.cpu.utilization_ratio", MetricKind::Gauge),
    ("process.memory.usage_bytes", MetricKind::Gauge),
    ("process.memory.virtual_bytes", MetricKind::Gauge),
    ("process.disk.read_bytes", MetricKind::Counter),
    ("process.disk.write_bytes", MetricKind::Counter),
    ("process.open_file_descriptor.count", MetricKind::Gauge),
    ("process.open_file_descriptor.limit", MetricKind::Gauge),
    ("process.thread.count", MetricKind::Gauge),
    ("process.uptime_seconds", MetricKind::Gauge),
];

impl ModelDaemon {
    fn new(i: usize) -> ModelDaemon {
        let labels = Labels::from_pairs([("project", "bench")]);
        ModelDaemon {
            rng: fastrand::Rng::with_seed(0xDAE_0000 + i as u64),
            ticks: 10_000 + i as u64 * 1000,
            rss_pages: 50_000 + i as i64 * 5000,
            read: 1 << 30,
            write: 1 << 28,
            fds: 40 + i as i64,
            keys: MODEL_METRICS
                .iter()
                .map(|(m, kind)| {
                    (
                        SeriesKey::new(
                            Source::Daemon(DaemonId::new(format!("daemon-{i}"))),
                            m.to_string(),
                            labels.clone(),
                        ),
                        *kind,
                    )
                })
                .collect(),
        }
    }

    /// The samples of second `s` (timestamps with 0–2 ms jitter).
    fn second(&mut self, s: i64, out: &mut Vec<Sample>) {
        let ts = T0 + s * 1000 + self.rng.i64(0..3);
        let busy = if self.rng.u8(..20) == 0 { 60 } else { 8 };
        let d_ticks = self.rng.u64(0..busy);
        self.ticks += d_ticks;
        if self.rng.u16(..600) == 0 {
            self.rss_pages += self.rng.i64(-2000..4000);
        } else if self.rng.u8(..4) == 0 {
            self.rss_pages += self.rng.i64(-3..4);
        }
        if self.rng.u8(..30) == 0 {
            self.read += 4096 * self.rng.u64(1..64);
        }
        if self.rng.u8(..5) == 0 {
            self.write += 4096 * self.rng.u64(1..16);
        }
        if self.rng.u16(..300) == 0 {
            self.fds += self.rng.i64(-2..3);
        }
        let elapsed = 1.0 + (self.rng.f64() - 0.5) * 0.004;
        let values = [
            self.ticks as f64 / 100.0,
            d_ticks as f64 / 100.0 / elapsed,
            (self.rss_pages * 4096) as f64,
            ((self.rss_pages + 250_000) * 4096) as f64,
            self.read as f64,
            self.write as f64,
            self.fds as f64,
            1024.0,
            12.0,
            (s + 86_400) as f64,
        ];
        for ((key, kind), value) in self.keys.iter().zip(values) {
            out.push(Sample {
                series: key.clone(),
                kind: *kind,
                ts_ms: ts,
                value,
            });
        }
    }
}

/// Batches of 100 series × `seconds_per_batch` seconds, from second `from` for `seconds`.
fn model_batches(
    daemons: &mut [ModelDaemon],
    from: i64,
    seconds: i64,
    per_batch: i64,
) -> Vec<Arc<MetricBatch>> {
    let mut out = Vec::new();
    let mut s = from;
    while s < from + seconds {
        let mut samples = Vec::with_capacity((per_batch as usize) * daemons.len() * 10);
        for t in s..(s + per_batch).min(from + seconds) {
            for d in daemons.iter_mut() {
                d.second(t, &mut samples);
            }
        }
        out.push(Arc::new(MetricBatch { samples }));
        s += per_batch;
    }
    out
}

// ---- 1. bytes per sample ---------------------------------------------------------------

fn bytes_per_sample(dir: &Path) {
    println!("\n## Bytes per sample after compaction");
    println!("(sampling this process's /proc for 3600 samples per metric, ~20 s)");
    let nab = nab_series();
    // The same NAB values one second apart: their value dynamics at a watcher's rate.
    let nab_1hz: Vec<Series> = nab
        .iter()
        .map(|s| Series {
            key: s.key.clone(),
            kind: s.kind,
            samples: s
                .samples
                .iter()
                .enumerate()
                .map(|(i, &(_, v))| (T0 + i as i64 * 1000, v))
                .collect(),
        })
        .collect();
    let trickle = nab_trickle(dir, &nab);
    let mut sets: Vec<(&str, Vec<Series>)> = vec![
        ("real process, 1 Hz", real_process_series(3600)),
        ("NAB, native 5-minute spacing", nab),
        ("NAB values replayed at 1 Hz", nab_1hz),
    ];
    let mut daemons: Vec<ModelDaemon> = (0..10).map(ModelDaemon::new).collect();
    let day: Vec<Series> = {
        let batches = model_batches(&mut daemons, 0, 86_400, 3600);
        let mut by_key: std::collections::BTreeMap<String, Series> = Default::default();
        for b in batches {
            for s in &b.samples {
                by_key
                    .entry(format!("{:?}", s.series))
                    .or_insert_with(|| Series {
                        key: s.series.clone(),
                        kind: s.kind,
                        samples: Vec::new(),
                    })
                    .samples
                    .push((s.ts_ms, s.value));
            }
        }
        by_key.into_values().collect()
    };
    sets.push(("modelled daemons (100 series, 1 day)", day));
    // The fixed cost of a database (schema pages), to tell it from the cost per sample.
    let empty = dir.join("empty.db");
    let (handle, _) = spawn(StorageConfig::new(&empty));
    handle.shutdown(WAIT).expect("shutdown");
    let unvacuumed = file_bytes(&empty);
    vacuum(&empty).expect("vacuum");
    let empty_bytes = file_bytes(&empty);
    println!(
        "(an empty database is {empty_bytes} bytes after VACUUM, {unvacuumed} before, \
         {} pages of 4 KiB)",
        empty_bytes / 4096
    );
    println!(
        "| data | samples | chunk payload B/sample | whole file B/sample (after VACUUM) | \
         (file − empty file) B/sample |"
    );
    println!("|---|---|---|---|---|");
    for (name, series) in sets {
        let path = dir.join(format!(
            "bytes-{}.db",
            name.replace([' ', ',', '(', ')'], "-")
        ));
        let _ = std::fs::remove_file(&path);
        let end = last_ts(&series);
        let clock = ManualClock::new(end + DAY_MS);
        let (handle, _) = spawn(
            StorageConfig::new(&path)
                .clock(Arc::new(clock))
                .retention(forever()),
        );
        let mut total = 0usize;
        for s in &series {
            total += s.samples.len();
            for part in s.samples.chunks(10_000) {
                let batch = MetricBatch {
                    samples: part
                        .iter()
                        .map(|&(ts_ms, value)| Sample {
                            series: s.key.clone(),
                            kind: s.kind,
                            ts_ms,
                            value,
                        })
                        .collect(),
                };
                assert!(handle.store_blocking(Arc::new(batch), WAIT));
            }
        }
        handle.compact_now(WAIT).expect("compact");
        handle.shutdown(WAIT).expect("shutdown");
        // What a user's file holds: no manual VACUUM, only maintenance's own vacuuming.
        let unvacuumed = (file_bytes(&path), free_pages(&path));
        vacuum(&path).expect("vacuum");
        let summary = StorageReader::open(&path)
            .expect("open")
            .summary()
            .expect("summary");
        println!(
            "| {name} | {total} | {:.2} | {:.3} | {:.3} |",
            summary.chunk_bytes as f64 / total as f64,
            file_bytes(&path) as f64 / total as f64,
            file_bytes(&path).saturating_sub(empty_bytes) as f64 / total as f64
        );
        if name.starts_with("NAB, native") {
            println!(
                "|   before a manual VACUUM: {} B ({:.2} B/sample), {} pages free | | | | |",
                unvacuumed.0,
                unvacuumed.0 as f64 / total as f64,
                unvacuumed.1
            );
            print_tables(&path, total);
        }
        if name.starts_with("NAB, native") {
            println!("{trickle}");
        }
        if name.starts_with("real") {
            println!("|   per metric (chunk payload) | | | | |");
            let reader = StorageReader::open(&path).expect("open");
            for s in &series {
                let q = reader
                    .query(&Query::new(
                        SeriesSelector::exact(&s.key),
                        i64::MIN / 2,
                        i64::MAX / 2,
                    ))
                    .expect("query");
                let n = q.first().map_or(0, |r| r.samples.len());
                let bytes: i64 = rusqlite::Connection::open(&path)
                    .and_then(|c| {
                        c.query_row(
                            "SELECT coalesce(sum(length(data)), 0) FROM chunks JOIN series ON series.id = chunks.series_id WHERE series.metric = ?1",
                            [s.key.metric.as_str()],
                            |r| r.get(0),
                        )
                    })
                    .unwrap_or(0);
                println!(
                    "|   {} | {n} | {:.2} | |",
                    s.key.metric.as_str(),
                    bytes as f64 / n.max(1) as f64
                );
            }
        }
    }
}

/// NAB's series as a live writer receives them: every series moved to start at `T0` (so
/// they run side by side, 5 minutes apart as recorded), stored an hour at a time with the
/// clock just past that hour and compacted then, as maintenance does, and no manual VACUUM
/// (maintenance vacuums by itself): the file a user has. Returns the table row to print.
fn nab_trickle(dir: &Path, nab: &[Series]) -> String {
    let path = dir.join("bytes-nab-trickle.db");
    let _ = std::fs::remove_file(&path);
    let series: Vec<Series> = nab
        .iter()
        .map(|s| {
            let first = s.samples.first().map_or(0, |f| f.0);
            Series {
                key: s.key.clone(),
                kind: s.kind,
                samples: s
                    .samples
                    .iter()
                    .map(|&(ts, v)| (ts - first + T0, v))
                    .collect(),
            }
        })
        .collect();
    let total: usize = series.iter().map(|s| s.samples.len()).sum();
    let end = last_ts(&series);
    let clock = ManualClock::new(T0);
    let (handle, _) = spawn(
        StorageConfig::new(&path)
            .clock(Arc::new(clock.clone()))
            .retention(forever()),
    );
    let mut next = vec![0usize; series.len()];
    let mut hour = T0;
    while hour <= end {
        let mut samples = Vec::new();
        for (s, at) in series.iter().zip(next.iter_mut()) {
            while let Some(&(ts_ms, value)) = s.samples.get(*at).filter(|x| x.0 < hour + HOUR_MS) {
                samples.push(Sample {
                    series: s.key.clone(),
                    kind: s.kind,
                    ts_ms,
                    value,
                });
                *at += 1;
            }
        }
        assert!(handle.store_blocking(Arc::new(MetricBatch { samples }), WAIT));
        hour += HOUR_MS;
        clock.set_ms(hour + 3 * 60_000);
        handle.compact_now(WAIT).expect("compact");
    }
    clock.set_ms(end + DAY_MS);
    handle.compact_now(WAIT).expect("compact");
    handle.shutdown(WAIT).expect("shutdown");
    let (bytes, free) = (file_bytes(&path), free_pages(&path));
    vacuum(&path).expect("vacuum");
    format!(
        "|   the same fed an hour at a time on one timeline, compacted hourly, no manual VACUUM: \
         {bytes} B, {:.2} B/sample, {free} pages free ({:.2} after VACUUM) | {total} | | | |",
        bytes as f64 / total as f64,
        file_bytes(&path) as f64 / total as f64
    )
}

/// Pages on the file's freelist.
fn free_pages(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .and_then(|c| c.query_row("PRAGMA freelist_count", [], |r| r.get(0)))
        .unwrap_or(-1)
}

/// Prints where a file's pages go: per table and index, its pages and bytes per sample
/// (SQLite's `dbstat`), the largest first.
fn print_tables(path: &Path, samples: usize) {
    let rows = rusqlite::Connection::open(path).and_then(|c| {
        let mut stmt = c.prepare(
            "SELECT name, count(*), sum(pgsize) FROM dbstat GROUP BY name ORDER BY 3 DESC, 1",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>();
        rows
    });
    match rows {
        Ok(rows) => {
            let line: Vec<String> = rows
                .iter()
                .map(|(name, pages, bytes)| {
                    format!(
                        "{name} {pages} p ({:.2})",
                        *bytes as f64 / samples.max(1) as f64
                    )
                })
                .collect();
            println!(
                "|   pages by b-tree (B/sample): {} | | | | |",
                line.join(", ")
            );
        }
        Err(e) => println!("|   (no page breakdown: {e}) | | | | |"),
    }
    let tiers = rusqlite::Connection::open(path).and_then(|c| {
        let mut stmt = c.prepare(
            "SELECT tier, count(*), avg(length(sketch)) FROM rollups GROUP BY tier ORDER BY tier",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(format!(
                    "tier {}: {} rows, sketch {:.0} B",
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, f64>(2)?
                ))
            })?
            .collect::<Result<Vec<_>, _>>();
        rows
    });
    if let Ok(tiers) = tiers {
        println!("|   rollups: {} | | | | |", tiers.join("; "));
    }
    let chunks = rusqlite::Connection::open(path).and_then(|c| {
        c.query_row(
            "SELECT count(*), avg(count), avg(length(data)) FROM chunks",
            [],
            |r| {
                Ok(format!(
                    "{} chunks, {:.0} samples and {:.0} B each",
                    r.get::<_, i64>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, f64>(2)?
                ))
            },
        )
    });
    if let Ok(chunks) = chunks {
        println!("|   chunks: {chunks} | | | | |");
    }
}

// ---- 2. ingest --------------------------------------------------------------------------

fn ingest(dir: &Path) {
    let hours = env_i64("PERFVISOR_BENCH_INGEST_HOURS", 6);
    let mut daemons: Vec<ModelDaemon> = (0..10).map(ModelDaemon::new).collect();
    // 10 seconds of 100 series per batch: 1000 samples, like a busy collector's batches.
    let batches = model_batches(&mut daemons, 0, hours * 3600, 10);
    let total: usize = batches.iter().map(|b| b.samples.len()).sum();
    println!("\n## Sustained ingest, {total} samples (100 series × {hours} h at 1 Hz), one writer thread");
    println!("| path | samples/s | ratio to bare loop |");
    println!("|---|---|---|");

    let bare = |indexed: bool| -> f64 {
        let path = dir.join(format!("bare-{indexed}.db"));
        let _ = std::fs::remove_file(&path);
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "journal_mode", "wal")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("sync");
        conn.execute_batch(
            "CREATE TABLE samples (series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL)",
        )
        .expect("table");
        if indexed {
            conn.execute_batch("CREATE INDEX by_series_time ON samples (series, ts)")
                .expect("index");
        }
        let mut ids: std::collections::HashMap<SeriesKey, i64> = Default::default();
        let started = Instant::now();
        for group in batches.chunks(100) {
            let tx = conn.transaction().expect("tx");
            {
                let mut insert = tx
                    .prepare_cached("INSERT INTO samples (series, ts, value) VALUES (?1, ?2, ?3)")
                    .expect("prepare");
                for batch in group {
                    for s in &batch.samples {
                        let next = ids.len() as i64 + 1;
                        let id = *ids.entry(s.series.clone()).or_insert(next);
                        insert
                            .execute(rusqlite::params![id, s.ts_ms, s.value])
                            .expect("insert");
                    }
                }
            }
            tx.commit().expect("commit");
        }
        total as f64 / started.elapsed().as_secs_f64()
    };
    let ours = || -> f64 {
        let path = dir.join("ingest.db");
        let _ = std::fs::remove_file(&path);
        let clock = ManualClock::new(T0);
        let (handle, stats) = spawn(StorageConfig::new(&path).clock(Arc::new(clock.clone())));
        let started = Instant::now();
        for (i, b) in batches.iter().enumerate() {
            // The clock follows the data, so windows close and compaction runs during ingest.
            clock.set_ms(T0 + (i as i64 + 1) * 10_000);
            assert!(handle.store_blocking(Arc::clone(b), WAIT));
        }
        handle.compact_now(WAIT).expect("compact");
        let elapsed = started.elapsed();
        handle.shutdown(WAIT).expect("shutdown");
        let stored = stats
            .stored_samples
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stored as usize, total);
        total as f64 / elapsed.as_secs_f64()
    };
    // Side by side, twice each, alternating, to see the noise of a shared machine.
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        (
            "StorageWriter (head rows + compaction + rollups)",
            Vec::new(),
        ),
        ("bare rusqlite loop, no index", Vec::new()),
        ("bare rusqlite loop, (series, ts) index", Vec::new()),
    ];
    for _ in 0..2 {
        rows[0].1.push(ours());
        rows[1].1.push(bare(false));
        rows[2].1.push(bare(true));
    }
    let best_bare = rows[1].1.iter().cloned().fold(0.0, f64::max);
    for (name, runs) in &rows {
        let best = runs.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {name} | {:.0} (runs: {}) | {:.2} |",
            best,
            runs.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            best / best_bare
        );
    }
}

// ---- 3. queries -------------------------------------------------------------------------

fn query_file(days: i64) -> (PathBuf, i64) {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/perfvisor-bench"
    ));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join(format!("history-{days}d-100s-v1.db"));
    let end = T0 + days * DAY_MS;
    if path.exists() {
        println!("(reusing {})", path.display());
        return (path, end);
    }
    let building = path.with_extension("building");
    let _ = std::fs::remove_file(&building);
    println!(
        "(building {days} days × 100 series at 1 Hz into {}; done once)",
        path.display()
    );
    let clock = ManualClock::new(T0);
    let (handle, stats) = spawn(StorageConfig::new(&building).clock(Arc::new(clock.clone())));
    let mut daemons: Vec<ModelDaemon> = (0..10).map(ModelDaemon::new).collect();
    let started = Instant::now();
    for hour in 0..days * 24 {
        for b in model_batches(&mut daemons, hour * 3600, 3600, 10) {
            assert!(handle.store_blocking(b, WAIT));
        }
        clock.set_ms(T0 + (hour + 1) * HOUR_MS);
        if hour % 24 == 23 {
            println!(
                "  day {} stored, {:.0} samples/s so far",
                hour / 24 + 1,
                stats
                    .stored_samples
                    .load(std::sync::atomic::Ordering::Relaxed) as f64
                    / started.elapsed().as_secs_f64()
            );
        }
    }
    clock.set_ms(end + 10 * 60_000);
    handle.compact_now(WAIT).expect("compact");
    handle.shutdown(WAIT).expect("shutdown");
    std::fs::rename(&building, &path).expect("rename");
    for suffix in ["-wal", "-shm"] {
        let mut from = building.clone().into_os_string();
        from.push(suffix);
        let _ = std::fs::remove_file(from);
    }
    (path, end)
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Vec<Duration>, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(f());
        times.push(started.elapsed());
    }
    times.sort();
    (times, last.expect("at least one run"))
}

fn queries() {
    let days = env_i64("PERFVISOR_BENCH_DAYS", 30);
    let (path, now) = query_file(days);
    let reader = StorageReader::open(&path).expect("open");
    let summary = reader.summary().expect("summary");
    println!("\n## Queries on {days} days of 1 Hz history for 100 series (default retention)");
    println!(
        "file {:.1} MiB; raw samples kept {} in {} chunks; {} hourly and {} daily rollups",
        summary.file_bytes as f64 / (1 << 20) as f64,
        summary.chunk_samples + summary.head_samples,
        summary.chunks,
        summary.hourly_rollups,
        summary.daily_rollups
    );
    let one = SeriesKey::new(
        Source::Daemon(DaemonId::new("daemon-3")),
        "process.memory.usage_bytes",
        Labels::from_pairs([("project", "bench")]),
    );
    let cases: Vec<(&str, Query, &str)> = vec![
        (
            "one series, last 24 h of raw samples",
            Query::new(SeriesSelector::exact(&one), now - DAY_MS, now),
            "≤ 20 ms",
        ),
        (
            "p95 of one series over 30 days",
            Query::new(SeriesSelector::exact(&one), now - 30 * DAY_MS, now)
                .aggregate(Aggregation::Quantile(0.95)),
            "≤ 20 ms",
        ),
        (
            "hourly averages of 100 series over 7 days",
            Query::new(
                SeriesSelector::all().label("project", "bench"),
                now - 7 * DAY_MS,
                now,
            )
            .step_ms(HOUR_MS)
            .aggregate(Aggregation::Avg),
            "≤ 100 ms",
        ),
    ];
    println!("| query | p50 | p95 | max | rows | tier | target |");
    println!("|---|---|---|---|---|---|---|");
    for (name, q, target) in cases {
        let (times, result) = time(30, || reader.query(&q).expect("query"));
        let rows: usize = result
            .iter()
            .map(|r| r.samples.len() + r.buckets.len())
            .sum();
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {rows} | {:?} | {target} |",
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() * 95 / 100].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            result.first().map(|r| r.tier),
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, in debug: skip.
    if !std::env::args().any(|a| a == "--bench") {
        println!("history harness: run with `cargo bench -p perfvisor-actors --bench history`");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let only = std::env::var("PERFVISOR_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only.contains("bytes") {
        bytes_per_sample(dir.path());
    }
    if only.is_empty() || only.contains("ingest") {
        ingest(dir.path());
    }
    if only.is_empty() || only.contains("query") {
        queries();
    }
}
