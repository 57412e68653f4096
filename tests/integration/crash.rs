//! Hard kills: a child process writing history is SIGKILLed at random moments, twenty times;
//! after each kill the database opens, passes `PRAGMA integrity_check`, and holds everything
//! the child saw flushed (acceptance 1 of the history issue).
//!
//! The child is this same test binary, re-run with `--ignored --exact crash::crash_child`
//! and the database in `PERFVISOR_CRASH_CHILD_DB`; it prints `flushed <ts>` after each
//! acknowledged flush. Its clock runs an hour of data every 60 batches, so kills land during
//! flushes, compactions and rollups alike.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use perfvisor_actors::storage::{
    integrity_check, Retention, StorageConfig, StorageHandle, StorageReader, StorageStats,
};
use perfvisor_actors::types::{
    Labels, ManualClock, MetricBatch, MetricKind, Sample, SeriesKey, Source,
};

use crate::support::ChildGuard;

/// 2026-01-01T00:00:00Z, the first sample of every series.
const START: i64 = 1_767_225_600_000;
const SERIES: usize = 10;
const CHILD_ENV: &str = "PERFVISOR_CRASH_CHILD_DB";

fn key(i: usize) -> SeriesKey {
    SeriesKey::new(
        Source::Host,
        "crash.series",
        Labels::from_pairs([("n", i.to_string())]),
    )
}

/// The value every series has at `ts`: checkable after the fact.
fn value(i: usize, ts: i64) -> f64 {
    ((ts - START) / 1000) as f64 * 0.5 + i as f64
}

/// The child: continues each series after its last stored sample, one minute of 1 Hz
/// samples of all series per batch, and reports every acknowledged flush.
#[test]
#[ignore = "the child process of storage_survives_hard_kills; does nothing on its own"]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let next = match StorageReader::open(&db) {
        Ok(reader) => reader
            .query_range(&key(0), START, i64::MAX)
            .expect("read")
            .last()
            .map_or(START, |&(ts, _)| ts + 1000),
        Err(_) => START,
    };
    let clock = ManualClock::new(next);
    let config = StorageConfig::new(&db)
        .clock(Arc::new(clock.clone()))
        .retention(Retention::all(Duration::from_secs(100 * 365 * 86_400)));
    let handle = StorageHandle::spawn(
        config,
        Arc::new(StorageStats::default()),
        Arc::new(|_| Duration::ZERO),
    )
    .expect("writer starts");
    let mut ts = next;
    let mut out = std::io::stdout();
    loop {
        let mut samples = Vec::with_capacity(60 * SERIES);
        for s in 0..60 {
            for i in 0..SERIES {
                let t = ts + s * 1000;
                samples.push(Sample {
                    series: key(i),
                    kind: MetricKind::Gauge,
                    ts_ms: t,
                    value: value(i, t),
                });
            }
        }
        ts += 60_000;
        clock.set_ms(ts);
        while !handle.store(Arc::new(MetricBatch {
            samples: samples.clone(),
        })) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if (ts / 60_000) % 5 == 0 {
            handle.flush(Duration::from_secs(30)).expect("flush");
            use std::io::Write;
            writeln!(out, "flushed {}", ts - 1000).expect("stdout");
            out.flush().expect("stdout");
        }
    }
}

/// Starts the child on `db`; returns it and a channel of the flushed timestamps it prints.
fn spawn_child(db: &Path) -> (ChildGuard, crossbeam_channel::Receiver<i64>) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(ts) = line.strip_prefix("flushed ") {
                if let Ok(ts) = ts.trim().parse::<i64>() {
                    let _ = tx.send(ts);
                }
            }
        }
    });
    (ChildGuard(child), rx)
}

#[test]
fn storage_survives_hard_kills() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crash.db");
    let mut rng = fastrand::Rng::with_seed(0xC0FFEE);
    let mut flushed_total = 0;
    for round in 0..20 {
        let (mut child, flushed) = spawn_child(&db);
        // The first rounds also kill before the first flush (during opening/migration).
        let first = flushed.recv_timeout(Duration::from_secs(60));
        assert!(
            first.is_ok() || round == 0,
            "round {round}: the child never flushed"
        );
        // Each round carries the history at least an hour further, however fast this host
        // writes, so the twenty kills land across a day of compactions and rollups.
        let target = START + (round as i64 + 1) * 3_600_000;
        let mut seen = first.ok();
        while let Some(ts) = seen.filter(|&ts| ts < target) {
            match flushed.recv_timeout(Duration::from_secs(60)) {
                Ok(next) => seen = Some(next),
                Err(_) => panic!("round {round}: the child stopped flushing at {ts}"),
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
        // SIGKILL by pid, then reap.
        child.kill();
        let last = seen.into_iter().chain(flushed.iter()).max();

        let report = integrity_check(&db).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(report.is_ok(), "round {round}: {report:?}");
        let reader = StorageReader::open(&db).expect("opens after a kill");
        if let Some(last) = last {
            let expected = ((last - START) / 1000 + 1) as usize;
            for i in [0, SERIES - 1] {
                let read = reader.query_range(&key(i), START, last + 1).expect("read");
                assert_eq!(read.len(), expected, "round {round}, series {i}");
                for (n, &(ts, v)) in read.iter().enumerate() {
                    assert_eq!(ts, START + n as i64 * 1000, "round {round}, series {i}");
                    assert_eq!(v, value(i, ts), "round {round}, series {i}");
                }
            }
            flushed_total = expected;
        }
    }
    assert!(
        flushed_total >= 20 * 3600,
        "only {flushed_total} samples flushed in 20 rounds"
    );
    let summary = StorageReader::open(&db)
        .expect("open")
        .summary()
        .expect("summary");
    // Rollups were built, so kills landed among them too. Which tier holds them depends on
    // how far the rounds got: once a day closes, its hourly rollups of these straight-line
    // series are deleted, because their chunks (about 150 B an hour) take less room and
    // stand in for the hourly tier (`thin_sparse_hours`); the daily rollups stay.
    assert!(
        summary.chunks > 0 && summary.hourly_rollups + summary.daily_rollups > 0,
        "{summary:?}"
    );
}
