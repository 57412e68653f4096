//! Tests of `maintenance.rs`, kept beside it: an idle step asks each unit once, and the
//! vacuuming (a live file rewritten by the writer's own maintenance, the rewrite skipped
//! under another connection's write lock, big files left to incremental vacuum).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::storage::tests::{series_batch, temp_db, zero_hook};
use crate::storage::{vacuum, Retention, StorageHandle, StorageReader};
use crate::testdata::nab_series;
use crate::types::{Labels, ManualClock, MetricKind, SeriesKey, Source};

const WAIT: Duration = Duration::from_secs(60);
/// 2026-01-01T00:00:00Z: a day boundary.
const T0: i64 = 1_767_225_600_000;

fn forever() -> Retention {
    Retention::all(Duration::from_secs(100 * 365 * 86_400))
}

fn pragma(conn: &Connection, name: &str) -> i64 {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

fn settings() -> MaintenanceSettings {
    MaintenanceSettings::from_config(&StorageConfig::new("unused.db").retention(forever()))
}

/// An idle step calls each unit once; after a unit did work, it and every unit after it
/// run again until they find nothing (a unit before it does not).
#[test]
fn idle_step_calls_each_unit_once() {
    use std::sync::atomic::AtomicUsize;
    static CALLS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
    /// Work for the second unit, counted down by its calls.
    static WORK: AtomicUsize = AtomicUsize::new(0);
    fn unit<const I: usize>(
        _: &Connection,
        _: &MaintenanceSettings,
        _: i64,
        _: &StorageStats,
        _: bool,
    ) -> rusqlite::Result<bool> {
        CALLS[I].fetch_add(1, Ordering::Relaxed);
        let work = || WORK.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| w.checked_sub(1));
        Ok(I == 1 && work().is_ok())
    }
    let (_dir, path) = temp_db();
    let conn = crate::storage::schema::open_writer(&path).unwrap();
    let stats = StorageStats::default();
    let units: [Unit; 3] = [unit::<0>, unit::<1>, unit::<2>];
    let calls = || CALLS.each_ref().map(|c| c.swap(0, Ordering::Relaxed));
    let run = || step(&units, &conn, &settings(), T0, &stats, WAIT, true).unwrap();

    assert!(!run());
    assert_eq!(calls(), [1, 1, 1], "idle: each unit once");
    WORK.store(3, Ordering::Relaxed);
    assert!(!run());
    // The second works three times (once in the first round), then finds nothing; the
    // third runs again after it, the first does not.
    assert_eq!(calls(), [1, 4, 2]);
}

/// A file a live writer keeps (NAB's 5-minute series fed an hour at a time, compacted
/// hourly) is rewritten by the writer's own maintenance steps once a day closes, while a
/// reader holds a read transaction open on its own connection: nothing is left for a manual
/// `vacuum` to take, and every sample reads back.
#[test]
fn live_file_is_rewritten_after_a_day_closes() {
    let (_dir, path) = temp_db();
    let clock = ManualClock::new(T0);
    let stats = Arc::new(StorageStats::default());
    let config = StorageConfig::new(&path)
        .clock(Arc::new(clock.clone()))
        .retention(forever())
        .flush_interval(Duration::from_millis(10));
    let handle = StorageHandle::spawn(config, Arc::clone(&stats), zero_hook()).unwrap();
    // Every series moved to start at T0, side by side as a live writer receives them.
    let series: Vec<(SeriesKey, Vec<(i64, f64)>)> = nab_series()
        .into_iter()
        .map(|(name, samples)| {
            let first = samples.first().map_or(0, |s| s.0);
            let key = SeriesKey::new(Source::Host, name, Labels::empty());
            (
                key,
                samples
                    .iter()
                    .map(|&(ts, v)| (ts - first + T0, v))
                    .collect(),
            )
        })
        .collect();
    let end = series
        .iter()
        .filter_map(|(_, s)| s.last().map(|x| x.0))
        .max()
        .unwrap();
    assert!(end - T0 > 3 * DAY_MS, "NAB spans several days");
    // All but the last day an hour at a time, compacted as the hour closes.
    let last_day = end.div_euclid(DAY_MS) * DAY_MS;
    let mut next = vec![0usize; series.len()];
    let mut hour = T0;
    while hour < last_day {
        for ((key, samples), at) in series.iter().zip(next.iter_mut()) {
            let from = *at;
            while samples.get(*at).is_some_and(|s| s.0 < hour + HOUR_MS) {
                *at += 1;
            }
            if *at > from {
                assert!(handle.store(series_batch(key, MetricKind::Gauge, &samples[from..*at])));
            }
        }
        hour += HOUR_MS;
        clock.set_ms(hour + 3 * 60_000);
        handle.compact_now(WAIT).unwrap();
    }
    for ((key, samples), at) in series.iter().zip(&next) {
        if *at < samples.len() {
            assert!(handle.store(series_batch(key, MetricKind::Gauge, &samples[*at..])));
        }
    }
    handle.flush(WAIT).unwrap();
    let watch = Connection::open(&path).unwrap();
    let marks = || -> (Option<i64>, Option<i64>) {
        (
            mark(&watch, DAILY_MARK).unwrap(),
            mark(&watch, VACUUM_MARK).unwrap(),
        )
    };
    // Each closed day so far was followed by a rewrite (inside `compact_now`).
    let (daily, vacuumed) = marks();
    assert!(
        daily.is_some() && vacuumed == daily,
        "{daily:?} {vacuumed:?}"
    );
    // A reader in the middle of a read transaction.
    let reader_conn = Connection::open(&path).unwrap();
    reader_conn.execute_batch("BEGIN").unwrap();
    let chunks_seen: i64 = reader_conn
        .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
        .unwrap();
    // The last days close by the writer's own steps, then the file is rewritten.
    clock.set_ms(end + DAY_MS);
    let started = Instant::now();
    loop {
        let (daily, vacuumed) = marks();
        if daily.is_some_and(|d| d > end) && vacuumed == daily {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "no rewrite after the last day closed: {daily:?} {vacuumed:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The reader's snapshot is intact; it ends, and nothing failed meanwhile.
    let again: i64 = reader_conn
        .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(again, chunks_seen);
    reader_conn.execute_batch("COMMIT").unwrap();
    drop(reader_conn);
    assert_eq!(stats.write_errors.load(Ordering::Relaxed), 0);
    assert!(stats.blocked_reason().is_none());
    drop(watch);
    handle.shutdown(WAIT).unwrap();
    let conn = Connection::open(&path).unwrap();
    assert_eq!(pragma(&conn, "freelist_count"), 0);
    assert_eq!(pragma(&conn, "auto_vacuum"), 2);
    drop(conn);
    // A manual VACUUM finds nothing more to take: the pages are as full as it makes them.
    let report = vacuum(&path).unwrap();
    assert!(
        report.bytes_before <= report.bytes_after + 4096,
        "{report:?}"
    );
    let reader = StorageReader::open(&path).unwrap();
    let mut total = 0;
    for (key, samples) in &series {
        assert_eq!(
            &reader.query_range(key, T0, end + 1).unwrap(),
            samples,
            "{key:?}"
        );
        total += samples.len();
    }
    assert_eq!(reader.sample_count().unwrap(), total as u64);
}

/// While another connection holds the write lock, the rewrite is skipped at once (no wait
/// for the busy timeout, no error, no mark) and done at the next try once the lock is
/// gone, with a reader's transaction open meanwhile; the writer's pragmas are restored.
#[test]
fn rewrite_skips_a_held_write_lock_and_retries() {
    let (_dir, path) = temp_db();
    let conn = schema::open_writer(&path).unwrap();
    let stats = StorageStats::default();
    let settings = settings();
    set_mark(&conn, DAILY_MARK, T0).unwrap();
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    assert!(!vacuum_unit(&conn, &settings, T0, &stats, false).unwrap());
    assert!(
        started.elapsed() < schema::BUSY_TIMEOUT,
        "waited for the lock"
    );
    assert_eq!(mark(&conn, VACUUM_MARK).unwrap(), None);
    assert_eq!(stats.write_errors.load(Ordering::Relaxed), 0);
    assert_eq!(pragma(&conn, "busy_timeout"), 5_000);
    other.execute_batch("COMMIT").unwrap();
    other.execute_batch("BEGIN").unwrap();
    let marks: i64 = other
        .query_row("SELECT count(*) FROM maintenance", [], |r| r.get(0))
        .unwrap();
    assert!(vacuum_unit(&conn, &settings, T0, &stats, false).unwrap());
    assert_eq!(mark(&conn, VACUUM_MARK).unwrap(), Some(T0));
    // Done for this day: the next call has nothing to do.
    assert!(!vacuum_unit(&conn, &settings, T0, &stats, false).unwrap());
    let seen: i64 = other
        .query_row("SELECT count(*) FROM maintenance", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, marks);
    other.execute_batch("COMMIT").unwrap();
    // The writer's settings are back: busy timeout, temp store in memory.
    assert_eq!(pragma(&conn, "busy_timeout"), 5_000);
    assert_eq!(pragma(&conn, "temp_store"), 2);
    assert_eq!(stats.write_errors.load(Ordering::Relaxed), 0);
}

/// A file over [`SMALL_FILE_BYTES`] is never rewritten; its free pages go back in
/// incremental steps once they are a tenth of the file, down to below that tenth.
#[test]
fn big_files_get_incremental_vacuum_only() {
    let (_dir, path) = temp_db();
    let conn = schema::open_writer(&path).unwrap();
    let stats = StorageStats::default();
    let settings = settings();
    set_mark(&conn, DAILY_MARK, T0).unwrap();
    conn.execute_batch("CREATE TABLE filler (b BLOB)").unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..1_600 {
        tx.execute(
            "INSERT INTO filler (b) VALUES (zeroblob(3000 + ?1))",
            [i % 7],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    conn.execute_batch("DELETE FROM filler WHERE rowid % 4 = 0")
        .unwrap();
    let pages = pragma(&conn, "page_count");
    let free = pragma(&conn, "freelist_count");
    assert!(pages * 4096 > SMALL_FILE_BYTES, "{pages} pages");
    assert!(free >= incremental_threshold(pages), "{free} of {pages}");
    while vacuum_unit(&conn, &settings, T0, &stats, false).unwrap() {}
    assert_eq!(
        mark(&conn, VACUUM_MARK).unwrap(),
        None,
        "big file rewritten"
    );
    let after = pragma(&conn, "page_count");
    assert!(
        after <= pages - free + incremental_threshold(pages),
        "{after}"
    );
    assert!(pragma(&conn, "freelist_count") < incremental_threshold(after));
    assert_eq!(
        conn.query_row("SELECT count(*) FROM filler", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        1_200
    );
}

/// The incremental threshold is a tenth of the file, between its bounds.
#[test]
fn incremental_threshold_is_a_tenth_within_bounds() {
    assert_eq!(incremental_threshold(15), VACUUM_MIN_PAGES);
    assert_eq!(incremental_threshold(5_000), 500);
    assert_eq!(incremental_threshold(1_000_000), VACUUM_MAX_PAGES);
}
