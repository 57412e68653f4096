//! Helpers shared by the storage tests: temp files, sample batches, alerts and failure hooks
//! that record or hold the writer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::{FailureHook, StorageFailure};
use crate::types::{
    Alert, AlertState, DaemonId, Labels, MetricBatch, MetricKind, Sample, SeriesKey, Severity,
    Source,
};

/// A config for `path` whose clock stands still at the epoch, so the tests' small
/// timestamps are neither compacted nor aged out behind their back.
pub(crate) fn test_config(path: &std::path::Path) -> super::StorageConfig {
    super::StorageConfig::new(path).clock(Arc::new(crate::types::ManualClock::new(0)))
}

/// A fresh temp dir and a database path inside it (the file does not exist yet).
pub(crate) fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("perfvisor.db");
    (dir, path)
}

/// `len` samples of the host gauge `metric`, at `start..start+len` ms with value = ts.
pub(crate) fn batch(metric: &str, start: i64, len: i64) -> Arc<MetricBatch> {
    let key = SeriesKey::new(Source::Host, metric.to_string(), Labels::empty());
    Arc::new(MetricBatch {
        samples: (start..start + len)
            .map(|ts| Sample {
                series: key.clone(),
                kind: MetricKind::Gauge,
                ts_ms: ts,
                value: ts as f64,
            })
            .collect(),
    })
}

/// A firing alert produced at `at_ms`.
pub(crate) fn sample_alert(at_ms: i64) -> Alert {
    Alert {
        rule: "high_memory".to_string(),
        series: SeriesKey::new(
            Source::Daemon(DaemonId::new("indexer")),
            "process.memory.usage_bytes",
            Labels::from_pairs([("project", "ws1")]),
        ),
        daemon: Some(DaemonId::new("indexer")),
        project: Some("ws1".to_string()),
        severity: Severity::Warning,
        state: AlertState::Firing,
        value: 2.5e9,
        threshold: 2e9,
        since_ms: at_ms - 60_000,
        at_ms,
        message: "indexer uses 2.5 GB".to_string(),
        recommendations: vec!["check the cache size".to_string()],
        auto_actionable: false,
    }
}

/// A storage writer on `path` with [`test_config`], fresh stats and [`zero_hook`].
pub(crate) fn spawn_test(path: &std::path::Path) -> super::StorageHandle {
    super::StorageHandle::spawn(
        test_config(path),
        Arc::new(super::StorageStats::default()),
        zero_hook(),
    )
    .expect("storage writer starts")
}

/// A failure hook asking for no backoff.
pub(crate) fn zero_hook() -> FailureHook {
    Arc::new(|_| Duration::ZERO)
}

/// A failure hook that records every failure and asks for no backoff.
pub(crate) fn recording_hook() -> (FailureHook, Arc<Mutex<Vec<StorageFailure>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let hook: FailureHook = Arc::new(move |failure| {
        log.lock().expect("test lock").push(failure);
        Duration::ZERO
    });
    (hook, seen)
}

/// A failure hook that signals `entered` and then holds the writer until the returned gate
/// sender is dropped: a way to keep the writer busy without sleeping.
pub(crate) fn gated_hook() -> (FailureHook, Receiver<()>, Sender<()>) {
    let (entered_tx, entered_rx) = unbounded();
    let (gate_tx, gate_rx) = bounded::<()>(0);
    let hook: FailureHook = Arc::new(move |_| {
        let _ = entered_tx.send(());
        let _ = gate_rx.recv();
        Duration::ZERO
    });
    (hook, entered_rx, gate_tx)
}

/// A batch of one series' samples.
pub(crate) fn series_batch(
    key: &SeriesKey,
    kind: MetricKind,
    samples: &[(i64, f64)],
) -> Arc<MetricBatch> {
    Arc::new(MetricBatch {
        samples: samples
            .iter()
            .map(|&(ts_ms, value)| Sample {
                series: key.clone(),
                kind,
                ts_ms,
                value,
            })
            .collect(),
    })
}

/// End-to-end tests of the history: head rows, compaction, rollups, retention, write
/// failures, migrations, maintenance entry points and queries, on real SQLite files.
mod history {
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use super::*;
    use crate::storage::sketch::tests::{exact_quantile, generated_series};
    use crate::storage::{
        export, integrity_check, Aggregation, ExportFormat, Query, Retention, SeriesSelector,
        StorageConfig, StorageError, StorageFault, StorageHandle, StorageReader, StorageStats,
        Tier, DAY_MS, HOUR_MS,
    };
    use crate::testdata::nab_series;
    use crate::types::{Clock, ManualClock};

    const WAIT: Duration = Duration::from_secs(60);
    /// 2026-01-01T00:00:00Z: a day boundary.
    const T0: i64 = 1_767_225_600_000;

    fn key(metric: &str) -> SeriesKey {
        SeriesKey::new(Source::Host, metric.to_string(), Labels::empty())
    }

    fn spawn(config: StorageConfig) -> (StorageHandle, Arc<StorageStats>) {
        let stats = Arc::new(StorageStats::default());
        let handle = StorageHandle::spawn(config, Arc::clone(&stats), zero_hook()).unwrap();
        (handle, stats)
    }

    fn at(path: &std::path::Path, clock: &ManualClock) -> StorageConfig {
        StorageConfig::new(path).clock(Arc::new(clock.clone()))
    }

    fn one_hz(from: i64, seconds: i64, mut value: impl FnMut(i64) -> f64) -> Vec<(i64, f64)> {
        (0..seconds).map(|i| (from + i * 1000, value(i))).collect()
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
    }

    /// Closed hour windows are compacted by the writer's own maintenance (not before their
    /// grace has passed), the open one stays in the head, and reads see both as one series.
    #[test]
    fn head_and_chunks_read_as_one() {
        let (_dir, path) = temp_db();
        let clock = ManualClock::new(T0);
        let (handle, stats) = spawn(at(&path, &clock).compaction_grace(Duration::from_secs(120)));
        let k = key("cpu");
        let samples = one_hz(T0, 3 * 3600, |i| (i % 97) as f64 * 0.25);
        for part in samples.chunks(1000) {
            assert!(handle.store(series_batch(&k, MetricKind::Gauge, part)));
        }
        handle.flush(WAIT).unwrap();
        // One minute into the grace of window 1: only window 0 may be compacted.
        clock.set_ms(T0 + 2 * HOUR_MS + 60_000);
        let reader = StorageReader::open(&path).unwrap();
        wait_until("window 0 compacted", || {
            reader.summary().unwrap().chunk_samples == 3600
        });
        std::thread::sleep(Duration::from_millis(1500));
        let s = reader.summary().unwrap();
        assert_eq!((s.chunk_samples, s.head_samples), (3600, 7200), "{s:?}");
        // Past the grace of window 1.
        clock.set_ms(T0 + 2 * HOUR_MS + 121_000);
        wait_until("window 1 compacted", || {
            reader.summary().unwrap().chunk_samples == 7200
        });
        assert_eq!(
            reader.query_range(&k, T0, T0 + 3 * HOUR_MS).unwrap(),
            samples
        );
        assert_eq!(
            reader
                .query_range(&k, T0 + 3_599_000, T0 + 3_601_000)
                .unwrap(),
            samples[3599..3601].to_vec()
        );
        assert_eq!(reader.sample_count().unwrap(), 3 * 3600);
        // The writer updates its counters after the commit the reader already sees.
        wait_until("the compaction counted", || {
            stats.compaction_backlog.load(Ordering::Relaxed) == 0
                && stats.compacted_samples.load(Ordering::Relaxed) == 7200
        });
        assert_eq!(stats.compacted_samples.load(Ordering::Relaxed), 7200);
        assert_eq!(reader.summary().unwrap().hourly_rollups, 2);
        handle.shutdown(WAIT).unwrap();
    }

    /// Samples arriving after their window was compacted are compacted too and merged into
    /// the window's rollup; a NaN is kept raw and left out of the statistics.
    #[test]
    fn late_samples_are_merged() {
        let (_dir, path) = temp_db();
        let clock = ManualClock::new(T0 + 2 * HOUR_MS);
        let (handle, _) = spawn(at(&path, &clock));
        let k = key("late");
        let first = one_hz(T0, 1800, |i| i as f64);
        assert!(handle.store(series_batch(&k, MetricKind::Gauge, &first)));
        handle.compact_now(WAIT).unwrap();
        let late = vec![(T0 + 1_900_000, 5000.0), (T0 + 1_900_500, f64::NAN)];
        assert!(handle.store(series_batch(&k, MetricKind::Gauge, &late)));
        handle.compact_now(WAIT).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        assert_eq!(reader.summary().unwrap().chunks, 2);
        let raw = reader.query_range(&k, T0, T0 + HOUR_MS).unwrap();
        assert_eq!(raw.len(), 1802);
        assert!(raw[1801].1.is_nan());
        let q = Query::new(SeriesSelector::exact(&k), T0, T0 + HOUR_MS)
            .aggregate(Aggregation::Count)
            .aggregate(Aggregation::Max)
            .aggregate(Aggregation::Last);
        for tier in [Tier::Raw, Tier::Hourly] {
            let r = reader.query(&q.clone().tier(tier)).unwrap();
            assert_eq!(
                r[0].buckets[0].values,
                vec![Some(1801.0), Some(5000.0), Some(5000.0)],
                "{tier:?}"
            );
        }
        handle.shutdown(WAIT).unwrap();
    }

    /// Acceptance 2: hourly and daily rollups give the same count, sum, min, max, mean and
    /// stddev as the raw data they came from, and their percentiles are within 1 % of the
    /// exact order statistic, on fixed-seed series and on every NAB series.
    #[test]
    fn rollups_match_the_raw_data() {
        let (_dir, path) = temp_db();
        let mut sets: Vec<(String, Vec<(i64, f64)>)> = generated_series()
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect();
        sets.extend(nab_series());
        assert!(sets.len() >= 18, "generated and NAB series expected");
        let end = sets
            .iter()
            .map(|(_, s)| s.last().map_or(0, |x| x.0))
            .max()
            .unwrap();
        let clock = ManualClock::new(end + 3 * DAY_MS);
        let retention = Retention::all(Duration::from_secs(100 * 365 * 86_400));
        let (handle, _) = spawn(at(&path, &clock).retention(retention));
        for (name, samples) in &sets {
            for part in samples.chunks(20_000) {
                assert!(handle.store(series_batch(&key(name), MetricKind::Gauge, part)));
            }
        }
        handle.compact_now(WAIT).unwrap();
        handle.shutdown(WAIT).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        let s = reader.summary().unwrap();
        assert_eq!(s.head_rows, 0);
        assert!(s.daily_rollups > 0 && s.hourly_rollups > 0, "{s:?}");
        // The hours that kept a rollup row; the others (closed days of sparse series, whose
        // chunks cost less than their hourly rollups) are answered from raw samples.
        let conn = rusqlite::Connection::open(&path).unwrap();
        let hourly_rows = |name: &str| -> std::collections::HashSet<i64> {
            conn.prepare(
                "SELECT bucket_ms FROM rollups JOIN series ON series.id = rollups.series_id \
                 WHERE tier = 1 AND series.metric = ?1",
            )
            .unwrap()
            .query_map([name], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let mut thinned = 0;
        let stats = [
            Aggregation::Count,
            Aggregation::Sum,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Avg,
            Aggregation::Stddev,
        ];
        let quantiles = [0.0, 0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];
        for (name, samples) in &sets {
            let k = key(name);
            let from = samples[0].0.div_euclid(DAY_MS) * DAY_MS;
            let to = (samples[samples.len() - 1].0 / DAY_MS + 1) * DAY_MS;
            for (tier, step) in [(Tier::Hourly, HOUR_MS), (Tier::Daily, DAY_MS)] {
                let mut q = Query::new(SeriesSelector::exact(&k), from, to).step_ms(step);
                for a in stats
                    .iter()
                    .copied()
                    .chain(quantiles.iter().map(|&q| Aggregation::Quantile(q)))
                {
                    q = q.aggregate(a);
                }
                let rolled = reader.query(&q.clone().tier(tier)).unwrap().remove(0);
                let raw = reader.query(&q.clone().tier(Tier::Raw)).unwrap().remove(0);
                assert_eq!((rolled.tier, raw.tier), (tier, Tier::Raw));
                assert_eq!(rolled.buckets.len(), raw.buckets.len());
                let kept = hourly_rows(name);
                for (b, (r, x)) in rolled.buckets.iter().zip(&raw.buckets).enumerate() {
                    if tier == Tier::Hourly && !kept.contains(&r.start_ms) {
                        // A stand-in hour: the very answer of the raw tier.
                        assert_eq!(r.values, x.values, "{name} stand-in hour {b}");
                        thinned += usize::from(x.values[0].is_some_and(|c| c > 0.0));
                        continue;
                    }
                    for (i, what) in stats.iter().enumerate() {
                        match (r.values[i], x.values[i]) {
                            (Some(a), Some(e)) => assert!(
                                close(a, e, 1e-9),
                                "{name} {tier:?} bucket {b} {what:?}: rollup {a} raw {e}"
                            ),
                            (a, e) => assert_eq!(a, e, "{name} {tier:?} bucket {b} {what:?}"),
                        }
                    }
                    let mut values: Vec<f64> = reader
                        .query_range(&k, r.start_ms, r.start_ms + step)
                        .unwrap()
                        .into_iter()
                        .map(|(_, v)| v)
                        .filter(|v| v.is_finite())
                        .collect();
                    values.sort_by(f64::total_cmp);
                    for (j, &qv) in quantiles.iter().enumerate() {
                        let estimate = r.values[stats.len() + j];
                        if values.is_empty() {
                            assert_eq!(estimate, None);
                            continue;
                        }
                        let exact = exact_quantile(&values, qv);
                        let estimate = estimate.unwrap();
                        assert!(
                            close(estimate, exact, 0.01),
                            "{name} {tier:?} bucket {b} q {qv}: sketch {estimate} exact {exact}"
                        );
                    }
                }
            }
        }
        assert!(
            thinned > 0,
            "the NAB series (5-minute spacing) answer closed days' hours from raw samples"
        );
    }

    /// Acceptance 3: on a manual clock, retention deletes exactly the chunks whose last
    /// sample aged out of raw retention, the hourly and daily rollups whose bucket ended
    /// before their retention, and the old events and alerts; nothing else.
    #[test]
    fn retention_deletes_what_aged_out_and_nothing_else() {
        let (_dir, path) = temp_db();
        let days = 15;
        let clock = ManualClock::new(T0 + days * DAY_MS);
        let retention = Retention {
            raw: Duration::from_secs(2 * 86_400),
            hourly: Duration::from_secs(5 * 86_400),
            daily: Duration::from_secs(10 * 86_400),
            events: Duration::from_secs(3 * 86_400),
            alerts: Duration::from_secs(4 * 86_400),
        };
        let (handle, _) = spawn(at(&path, &clock).retention(retention));
        let k = key("mem");
        // Every 5 minutes for 15 days, 7 minutes past the start of the range.
        let samples: Vec<(i64, f64)> = (0..days * 288)
            .map(|i| (T0 + 420_000 + i * 300_000, (i % 50) as f64))
            .collect();
        assert!(handle.store(series_batch(&k, MetricKind::Gauge, &samples)));
        for day in 0..days {
            let mut event = crate::types::LifecycleEvent {
                daemon: DaemonId::new("d"),
                pid: 1,
                ts_ms: T0 + day * DAY_MS,
                kind: crate::types::LifecycleKind::Started,
                detail: String::new(),
                intended: false,
            };
            assert!(handle.record_event(event.clone()));
            event.ts_ms += 1;
            let mut alert = sample_alert(T0 + day * DAY_MS);
            alert.daemon = Some(DaemonId::new("d"));
            assert!(handle.record_alert(alert));
        }
        handle.compact_now(WAIT).unwrap();
        handle.shutdown(WAIT).unwrap();

        let now = clock.now_ms();
        let reader = StorageReader::open(&path).unwrap();
        let raw_cutoff = now - 2 * DAY_MS;
        let hourly_cutoff = now - 5 * DAY_MS;
        // A chunk goes when its last sample is older than the cutoff. This series is sparse
        // (12 samples an hour), so each closed day's hourly chunks became one day-long
        // chunk, which costs less than the day's hourly rollups: those were deleted, and the
        // chunk stands in for them until the hourly cutoff. The last day is not closed yet
        // (grace) and keeps hourly chunks and rollups.
        let unit_of = |ts: i64| {
            let day = ts.div_euclid(DAY_MS) * DAY_MS;
            if day + DAY_MS + 120_000 <= now {
                (day, DAY_MS, hourly_cutoff)
            } else {
                (ts.div_euclid(HOUR_MS) * HOUR_MS, HOUR_MS, raw_cutoff)
            }
        };
        let kept_raw: Vec<(i64, f64)> = samples
            .iter()
            .copied()
            .filter(|&(ts, _)| {
                let (start, len, cutoff) = unit_of(ts);
                let last = samples
                    .iter()
                    .filter(|s| s.0 >= start && s.0 < start + len)
                    .map(|s| s.0)
                    .max()
                    .unwrap();
                last >= cutoff
            })
            .collect();
        assert!(!kept_raw.is_empty() && kept_raw.len() < samples.len());
        assert_eq!(
            reader.query_range(&k, i64::MIN, i64::MAX).unwrap(),
            kept_raw
        );

        let buckets = |tier: Tier, step: i64| -> Vec<i64> {
            let q = Query::new(SeriesSelector::exact(&k), T0, now)
                .step_ms(step)
                .aggregate(Aggregation::Count)
                .tier(tier);
            reader.query(&q).unwrap()[0]
                .buckets
                .iter()
                .filter(|b| b.values[0] != Some(0.0))
                .map(|b| b.start_ms)
                .collect()
        };
        let mut expected_hours: Vec<i64> = samples
            .iter()
            .map(|&(ts, _)| ts.div_euclid(HOUR_MS) * HOUR_MS)
            .filter(|&b| b + HOUR_MS > hourly_cutoff)
            .collect();
        expected_hours.dedup();
        // The hourly tier answers every hour since the cutoff whose day's chunk is kept: from
        // the rollups of the open day and the stand-in chunks of the closed days.
        let answered: Vec<i64> = expected_hours
            .iter()
            .copied()
            .filter(|&h| h < now && kept_raw.iter().any(|s| s.0 >= h && s.0 < h + HOUR_MS))
            .collect();
        assert!(answered.len() > 3 * 24, "{}", answered.len());
        assert_eq!(buckets(Tier::Hourly, HOUR_MS), answered);
        // Rows stay only for the hours of the open day.
        let open_day = (now - 120_000 - DAY_MS).div_euclid(DAY_MS) * DAY_MS + DAY_MS;
        expected_hours.retain(|&h| h >= open_day);
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let stored = |conn: &mut rusqlite::Connection, tier: i64| -> Vec<i64> {
            conn.prepare("SELECT bucket_ms FROM rollups WHERE tier = ?1 ORDER BY bucket_ms")
                .unwrap()
                .query_map([tier], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(stored(&mut conn, 1), expected_hours);
        let daily_cutoff = now - 10 * DAY_MS;
        let expected_days: Vec<i64> = (0..days)
            .map(|d| T0 + d * DAY_MS)
            .filter(|&b| b + DAY_MS > daily_cutoff)
            .collect();
        // The last day is built once its grace (2 min) has passed; until then the daily
        // tier answers for it from its hourly rows.
        let grace = 120_000;
        let built: Vec<i64> = expected_days
            .iter()
            .copied()
            .filter(|&d| d + DAY_MS + grace <= now)
            .collect();
        assert_eq!(built.len(), expected_days.len() - 1);
        assert_eq!(stored(&mut conn, 2), built);
        // The daily tier still answers for days whose hours and raw samples are gone.
        assert_eq!(buckets(Tier::Daily, DAY_MS), expected_days);
        let daily = reader
            .query(
                &Query::new(
                    SeriesSelector::exact(&k),
                    expected_days[0],
                    expected_days[0] + DAY_MS,
                )
                .aggregate(Aggregation::Count)
                .tier(Tier::Daily),
            )
            .unwrap();
        assert_eq!(daily[0].buckets[0].values, vec![Some(288.0)]);

        let events = reader.events(None, i64::MIN, i64::MAX).unwrap();
        assert!(events.iter().all(|e| e.ts_ms >= now - 3 * DAY_MS));
        assert_eq!(events.len(), 3);
        let alerts = reader
            .alerts_of(Some(&DaemonId::new("d")), i64::MIN, i64::MAX)
            .unwrap();
        assert!(alerts.iter().all(|a| a.at_ms >= now - 4 * DAY_MS));
        assert_eq!(alerts.len(), 4);
    }

    /// A series sampled every 10 s keeps its hourly rollups (its chunks cost more than they
    /// do) and its chunks go at raw retention; one sampled every 5 minutes beside it keeps
    /// its chunks instead of hourly rollups, until hourly retention.
    #[test]
    fn sparse_series_keep_chunks_instead_of_hourly_rollups() {
        let (_dir, path) = temp_db();
        let days = 4;
        let clock = ManualClock::new(T0 + days * DAY_MS);
        let retention = Retention {
            raw: Duration::from_secs(86_400),
            hourly: Duration::from_secs(3 * 86_400),
            daily: Duration::from_secs(10 * 86_400),
            events: Duration::from_secs(86_400),
            alerts: Duration::from_secs(86_400),
        };
        let (handle, _) = spawn(at(&path, &clock).retention(retention));
        let mut rng = fastrand::Rng::with_seed(7);
        let every = |ms: i64| -> Vec<(i64, f64)> {
            (0..days * DAY_MS / ms)
                .map(|i| (T0 + i * ms, 0.0))
                .collect()
        };
        let dense: Vec<(i64, f64)> = every(10_000)
            .into_iter()
            .map(|(ts, _)| (ts, 1e6 + rng.f64() * 1e5))
            .collect();
        let sparse: Vec<(i64, f64)> = every(300_000)
            .into_iter()
            .map(|(ts, _)| (ts, rng.f64() * 100.0))
            .collect();
        for (name, samples) in [("dense", &dense), ("sparse", &sparse)] {
            for part in samples.chunks(20_000) {
                assert!(handle.store(series_batch(&key(name), MetricKind::Gauge, part)));
            }
        }
        handle.compact_now(WAIT).unwrap();
        handle.shutdown(WAIT).unwrap();
        let now = clock.now_ms();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let rows = |name: &str, tier: i64| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM rollups JOIN series ON series.id = rollups.series_id \
                 WHERE tier = ?1 AND series.metric = ?2",
                rusqlite::params![tier, name],
                |r| r.get(0),
            )
            .unwrap()
        };
        let oldest_chunk = |name: &str| -> i64 {
            conn.query_row(
                "SELECT min(start_ms) FROM chunks JOIN series ON series.id = chunks.series_id \
                 WHERE series.metric = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap()
        };
        // Hours within hourly retention: 3 days' worth, minus the cut ones.
        assert!(rows("dense", 1) >= 70, "{}", rows("dense", 1));
        assert!(
            oldest_chunk("dense") >= now - DAY_MS - HOUR_MS,
            "{} h",
            (now - oldest_chunk("dense")) / HOUR_MS
        );
        // The sparse series: hourly rows only for the day still open, chunks back to the
        // hourly cutoff, and its hours still answered.
        assert!(rows("sparse", 1) <= 24, "{}", rows("sparse", 1));
        assert!(rows("sparse", 2) >= 3);
        let oldest = oldest_chunk("sparse");
        assert!(
            oldest < now - 2 * DAY_MS && oldest >= now - 3 * DAY_MS - DAY_MS,
            "{}",
            (now - oldest) / HOUR_MS
        );
        let reader = StorageReader::open(&path).unwrap();
        for name in ["dense", "sparse"] {
            let from = now - 3 * DAY_MS + HOUR_MS;
            let q = Query::new(SeriesSelector::exact(&key(name)), from, now)
                .step_ms(HOUR_MS)
                .aggregate(Aggregation::Count);
            let answer = reader.query(&q).unwrap().remove(0);
            assert_eq!(answer.tier, Tier::Hourly, "{name}");
            assert!(!answer.partial, "{name}");
            let per_hour = if name == "dense" { 360.0 } else { 12.0 };
            assert!(
                answer.buckets.iter().all(|b| b.values[0] == Some(per_hour)),
                "{name}: {:?}",
                answer
                    .buckets
                    .iter()
                    .map(|b| b.values[0])
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Acceptance 4, for a full disk and for a read-only file: the writer buffers within its
    /// bound, counts what it drops, reports the condition in its stats, fails flushes
    /// meanwhile, and stores everything it kept once writes succeed again. Nothing panics.
    #[test]
    fn write_failures_buffer_within_bound_and_recover() {
        for fault in [StorageFault::DiskFull, StorageFault::ReadOnly] {
            let (_dir, path) = temp_db();
            let clock = ManualClock::new(T0);
            let bound = 50_000;
            let (handle, stats) = spawn(at(&path, &clock).max_buffered_samples(bound));
            let k = key("mem");
            let mut offered = 0u64;
            let mut ts = T0;
            let mut store = |n: i64| {
                let part: Vec<(i64, f64)> = (0..n).map(|i| (ts + i, (ts + i) as f64)).collect();
                ts += n;
                offered += n as u64;
                handle.store(series_batch(&k, MetricKind::Gauge, &part))
            };
            assert!(store(1000));
            handle.flush(WAIT).unwrap();
            handle.inject_fault(fault);
            // A full disk still has free pages to fill; keep writing until a flush fails.
            let mut blocked = false;
            for _ in 0..200 {
                store(5000);
                if handle.flush(WAIT).is_err() {
                    blocked = true;
                    break;
                }
            }
            assert!(blocked, "{fault:?}: writes never failed");
            assert!(stats.write_blocked.load(Ordering::Relaxed));
            let reason = stats.blocked_reason().unwrap();
            assert!(reason.contains(&path.display().to_string()), "{reason}");
            for _ in 0..30 {
                store(5000);
            }
            assert!(matches!(handle.flush(WAIT), Err(StorageError::FlushFailed)));
            wait_until("buffer at its bound", || {
                stats.buffered_samples.load(Ordering::Relaxed) == bound as u64
            });
            let dropped = stats.dropped_samples.load(Ordering::Relaxed);
            assert!(dropped > 0, "{fault:?}: nothing dropped past the bound");

            handle.inject_fault(StorageFault::Clear);
            wait_until("writes to succeed again", || {
                !stats.write_blocked.load(Ordering::Relaxed)
            });
            handle.flush(WAIT).unwrap();
            assert!(stats.blocked_reason().is_none());
            assert_eq!(stats.buffered_samples.load(Ordering::Relaxed), 0);
            let stored = stats.stored_samples.load(Ordering::Relaxed);
            assert_eq!(stored + dropped, offered, "{fault:?}");
            handle.shutdown(WAIT).unwrap();
            let reader = StorageReader::open(&path).unwrap();
            assert_eq!(reader.sample_count().unwrap(), stored, "{fault:?}");
            assert!(integrity_check(&path).unwrap().is_ok());
        }
    }

    /// `settled_ms` moves to the writer's clock when what it was sent is committed, and
    /// not while writes fail: a reader that follows the history forward up to it never
    /// passes over a sample committed late.
    #[test]
    fn settled_moment_waits_for_failed_writes() {
        let (_dir, path) = temp_db();
        let clock = ManualClock::new(T0);
        let (handle, stats) = spawn(at(&path, &clock));
        let settled = || stats.settled_ms.load(Ordering::Relaxed);
        let k = key("mem");
        assert!(handle.store(series_batch(&k, MetricKind::Gauge, &[(T0, 1.0)])));
        handle.flush(WAIT).unwrap();
        assert_eq!(settled(), T0);

        handle.inject_fault(StorageFault::ReadOnly);
        clock.set_ms(T0 + 1_000);
        assert!(handle.store(series_batch(&k, MetricKind::Gauge, &[(T0 + 1_000, 2.0)])));
        assert!(handle.flush(WAIT).is_err());
        let before = settled();
        assert!(before <= T0 + 1_000, "{before}");
        clock.set_ms(T0 + 60_000);
        assert!(handle.store(series_batch(&k, MetricKind::Gauge, &[(T0 + 60_000, 3.0)])));
        assert!(handle.flush(WAIT).is_err());
        assert_eq!(settled(), before, "moved while a sample waits uncommitted");

        handle.inject_fault(StorageFault::Clear);
        wait_until("writes to succeed again", || {
            !stats.write_blocked.load(Ordering::Relaxed)
        });
        handle.flush(WAIT).unwrap();
        assert_eq!(settled(), T0 + 60_000);
        handle.shutdown(WAIT).unwrap();
    }

    /// A version 1 database (one row per sample) is upgraded in place: its samples become
    /// head rows, readable as before, and are compacted like fresh ones.
    #[test]
    fn version_1_database_is_migrated() {
        let (_dir, path) = temp_db();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(crate::storage::schema::SCHEMA_V1_FOR_TESTS)
                .unwrap();
            conn.pragma_update(
                None,
                "application_id",
                crate::storage::schema::APPLICATION_ID,
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO series (source, metric, labels, kind) VALUES ('host', 'old', '', 0)",
                [],
            )
            .unwrap();
            let mut insert = conn
                .prepare("INSERT INTO samples (series_id, ts_ms, value) VALUES (1, ?1, ?2)")
                .unwrap();
            for i in 0..5000i64 {
                let value = if i == 7 { None } else { Some(i as f64) };
                insert
                    .execute(rusqlite::params![T0 + i * 1000, value])
                    .unwrap();
            }
        }
        assert!(matches!(
            StorageReader::open(&path),
            Err(StorageError::TooOld { found: 1, .. })
        ));
        let clock = ManualClock::new(T0 + 3 * HOUR_MS);
        let (handle, _) = spawn(at(&path, &clock));
        let reader = StorageReader::open(&path).unwrap();
        let k = key("old");
        let read = reader.query_range(&k, T0, T0 + 5_000_000).unwrap();
        assert_eq!(read.len(), 5000);
        assert!(read[7].1.is_nan());
        assert_eq!(read[4999], (T0 + 4_999_000, 4999.0));
        let applied: Vec<(i64, String)> = rusqlite::Connection::open(&path)
            .unwrap()
            .prepare("SELECT version, applied_by FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            applied.iter().map(|a| a.0).collect::<Vec<_>>(),
            (1..=crate::storage::schema::SCHEMA_VERSION).collect::<Vec<_>>()
        );
        assert!(applied[1].1.starts_with("perfvisor "), "{applied:?}");
        handle.compact_now(WAIT).unwrap();
        handle.shutdown(WAIT).unwrap();
        assert_eq!(reader.summary().unwrap().chunk_samples, 5000);
        assert_eq!(
            reader.query_range(&k, T0, T0 + 5_000_000).unwrap().len(),
            5000
        );
    }

    /// A damaged perfvisor database is refused with a message naming it and is left
    /// byte-identical.
    #[test]
    fn corrupt_database_is_refused_untouched() {
        let (_dir, path) = temp_db();
        let clock = ManualClock::new(T0 + 3 * HOUR_MS);
        let (handle, _) = spawn(at(&path, &clock));
        assert!(handle.store(series_batch(
            &key("x"),
            MetricKind::Gauge,
            &one_hz(T0, 7200, |i| i as f64)
        )));
        handle.compact_now(WAIT).unwrap();
        handle.shutdown(WAIT).unwrap();
        crate::storage::vacuum(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let page = 4096;
        assert!(bytes.len() > 4 * page);
        // Scribble over the b-tree page headers of every page after the first.
        for p in 1..bytes.len() / page {
            for b in &mut bytes[p * page..p * page + 12] {
                *b = 0xA5;
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = StorageHandle::spawn(
            at(&path, &clock),
            Arc::new(StorageStats::default()),
            zero_hook(),
        )
        .unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let report = integrity_check(&path);
        assert!(report.map_or(true, |r| !r.is_ok()));
    }

    /// Queries: selection by source, metric and labels; steps; reset-aware rates; bad
    /// queries named.
    #[test]
    fn queries_select_aggregate_and_refuse_bad_input() {
        let (_dir, path) = temp_db();
        // Standing at T0, nothing is compacted until the clock moves.
        let clock = ManualClock::new(T0);
        let (handle, _) = spawn(at(&path, &clock));
        let daemon = |d: &str, project: &str| {
            SeriesKey::new(
                Source::Daemon(DaemonId::new(d)),
                "process.disk.read_bytes",
                Labels::from_pairs([("project", project)]),
            )
        };
        // A counter growing 10 per second that resets to 0 at 1 h 30 min.
        let counter: Vec<(i64, f64)> = one_hz(T0, 3 * 3600, |i| {
            if i < 5400 {
                1e6 + i as f64 * 10.0
            } else {
                (i - 5400) as f64 * 10.0
            }
        });
        for (d, p) in [("a", "ws1"), ("b", "ws1"), ("c", "ws2")] {
            assert!(handle.store(series_batch(&daemon(d, p), MetricKind::Counter, &counter)));
        }
        handle.flush(WAIT).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        let all = SeriesSelector::all().metric("process.disk.read_bytes");
        let q = |selector: SeriesSelector| {
            Query::new(selector, T0, T0 + 3 * HOUR_MS)
                .step_ms(HOUR_MS)
                .aggregate(Aggregation::Rate)
        };
        assert_eq!(reader.query(&q(all.clone())).unwrap().len(), 3);
        assert_eq!(
            reader
                .query(&q(all.clone().label("project", "ws1")))
                .unwrap()
                .len(),
            2
        );
        let only_c = reader
            .query(&q(all.clone().source(Source::Daemon(DaemonId::new("c")))))
            .unwrap();
        assert_eq!(only_c.len(), 1);
        // Raw (nothing compacted yet): 10/s in every hour, the reset notwithstanding.
        assert_eq!(only_c[0].tier, Tier::Raw);
        for b in &only_c[0].buckets {
            let rate = b.values[0].unwrap();
            assert!((rate - 10.0).abs() < 0.01, "{rate}");
        }
        clock.set_ms(T0 + 4 * HOUR_MS);
        handle.compact_now(WAIT).unwrap();
        let rolled = reader
            .query(&q(all.clone().source(Source::Daemon(DaemonId::new("c")))))
            .unwrap();
        assert_eq!(rolled[0].tier, Tier::Hourly);
        for (r, x) in rolled[0].buckets.iter().zip(&only_c[0].buckets) {
            assert!(close(r.values[0].unwrap(), x.values[0].unwrap(), 1e-12));
        }
        // A step of 10 minutes can only come from raw samples.
        let fine = Query::new(all.clone(), T0, T0 + HOUR_MS)
            .step_ms(600_000)
            .aggregate(Aggregation::Count);
        let fine = reader.query(&fine).unwrap();
        assert_eq!(fine[0].tier, Tier::Raw);
        assert_eq!(fine[0].buckets.len(), 6);
        assert!(fine[0]
            .buckets
            .iter()
            .all(|b| b.values == vec![Some(600.0)]));
        // An unaligned query range over the hourly tier answers the cut hours from raw.
        let unaligned = Query::new(
            all.clone().source(Source::Daemon(DaemonId::new("a"))),
            T0 + 1_800_000,
            T0 + 3 * HOUR_MS,
        )
        .aggregate(Aggregation::Count)
        .tier(Tier::Hourly);
        assert_eq!(
            reader.query(&unaligned).unwrap()[0].buckets[0].values,
            vec![Some(9000.0)]
        );

        for (bad, field) in [
            (Query::new(all.clone(), 10, 10), "to_ms"),
            (
                Query::new(all.clone(), 0, 10)
                    .step_ms(0)
                    .aggregate(Aggregation::Avg),
                "step_ms",
            ),
            (Query::new(all.clone(), 0, 10).step_ms(5), "step_ms"),
            (
                Query::new(all.clone(), 0, 10).aggregate(Aggregation::Quantile(1.5)),
                "aggregation",
            ),
            (Query::new(all.clone(), 0, 10).tier(Tier::Hourly), "tier"),
        ] {
            let err = reader.query(&bad).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        assert_eq!(
            Aggregation::parse("p99").unwrap(),
            Aggregation::Quantile(0.99)
        );
        assert_eq!(
            Aggregation::parse("quantile(0.5)").unwrap(),
            Aggregation::Quantile(0.5)
        );
        assert!(Aggregation::parse("p101")
            .unwrap_err()
            .to_string()
            .contains("p101"));
        handle.shutdown(WAIT).unwrap();
    }

    /// Ranges wider than `i64::MAX` ms (found by the `query` fuzz target: `from=-1&
    /// to=9223372036854775807&agg=last` put a sample in bucket 1 of 1, an index out of
    /// bounds) answer like any other; a step over such a range counts its buckets without
    /// overflowing (it used to overflow, or in release wrap and pass validation with 10^15
    /// buckets to allocate).
    #[test]
    fn queries_over_the_whole_timeline() {
        let (_dir, path) = temp_db();
        let (handle, _) = spawn(at(&path, &ManualClock::new(T0)));
        let k = key("cpu");
        assert!(handle.store(series_batch(
            &k,
            MetricKind::Gauge,
            &one_hz(T0, 10, |i| i as f64)
        )));
        handle.flush(WAIT).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        let all = SeriesSelector::exact(&k);
        // With a step of 2^62 ms: the buckets' counts.
        let cases = [
            (-1, i64::MAX, vec![10.0, 0.0]),
            (i64::MIN, i64::MAX, vec![0.0, 0.0, 10.0, 0.0]),
            (i64::MIN, T0 + 10_000, vec![0.0, 0.0, 10.0]),
        ];
        for (from, to, counts) in cases {
            let q = Query::new(all.clone(), from, to)
                .aggregate(Aggregation::Count)
                .aggregate(Aggregation::Last);
            let r = reader.query(&q).unwrap();
            assert_eq!(r[0].buckets.len(), 1, "{from}..{to}");
            assert_eq!(r[0].buckets[0].values, vec![Some(10.0), Some(9.0)]);
            let r = reader.query(&q.step_ms(1 << 62)).unwrap();
            let got: Vec<f64> = r[0].buckets.iter().map(|b| b.values[0].unwrap()).collect();
            assert_eq!(got, counts, "{from}..{to}");
        }
        let err = reader
            .query(
                &Query::new(
                    all.clone(),
                    -9_000_000_000_000_000_000,
                    9_000_000_000_000_000_000,
                )
                .step_ms(1000)
                .aggregate(Aggregation::Avg),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("18000000000000000 buckets"), "{err}");
        handle.shutdown(WAIT).unwrap();
    }

    /// With a size cap the oldest chunks go first, and the file stays near the cap while
    /// newer history keeps arriving.
    #[test]
    fn size_cap_deletes_oldest_history() {
        let (_dir, path) = temp_db();
        let clock = ManualClock::new(T0);
        let cap = 2 << 20;
        let (handle, stats) = spawn(at(&path, &clock).max_bytes(Some(cap)));
        // Noisy values compress poorly: about 8 bytes per sample.
        let mut rng = fastrand::Rng::with_seed(7);
        for hour in 0..48 {
            let start = T0 + hour * HOUR_MS;
            let samples = one_hz(start, 3600, |_| rng.f64());
            for i in 0..4 {
                assert!(handle.store(series_batch(
                    &key(&format!("noise{i}")),
                    MetricKind::Gauge,
                    &samples
                )));
            }
            clock.set_ms(start + 2 * HOUR_MS);
            handle.compact_now(WAIT).unwrap();
        }
        handle.shutdown(WAIT).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        let s = reader.summary().unwrap();
        assert!(s.used_bytes <= cap + (256 << 10), "{s:?}");
        assert!(stats.retention_deleted.load(Ordering::Relaxed) > 0);
        let kept = reader
            .query_range(&key("noise0"), i64::MIN, i64::MAX)
            .unwrap();
        assert!(!kept.is_empty());
        // What is kept is the newest.
        assert_eq!(kept.last().unwrap().0, T0 + 47 * HOUR_MS + 3_599_000);
        assert!(kept[0].0 > T0);
    }

    /// Export writes every selected sample as CSV or JSON lines; the integrity check
    /// decodes every stored blob.
    #[test]
    fn export_and_integrity_check() {
        let (_dir, path) = temp_db();
        let clock = ManualClock::new(T0 + 3 * HOUR_MS);
        let (handle, _) = spawn(at(&path, &clock));
        let k = SeriesKey::new(Source::Host, "disk", Labels::from_pairs([("dev", "sda,1")]));
        let samples = vec![(T0, 1.5), (T0 + 1000, f64::NAN), (T0 + HOUR_MS + 5, 3.0)];
        assert!(handle.store(series_batch(&k, MetricKind::Gauge, &samples)));
        handle.flush(WAIT).unwrap();
        handle.compact_now(WAIT).unwrap();
        handle.shutdown(WAIT).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        let mut csv = Vec::new();
        let n = export(
            &reader,
            &SeriesSelector::all(),
            T0,
            T0 + 2 * HOUR_MS,
            ExportFormat::Csv,
            &mut csv,
        )
        .unwrap();
        assert_eq!(n, 3);
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(
            csv,
            format!(
                "source,metric,labels,timestamp_ms,value\nhost,disk,\"dev=sda,1\",{T0},1.5\n\
                 host,disk,\"dev=sda,1\",{},NaN\nhost,disk,\"dev=sda,1\",{},3\n",
                T0 + 1000,
                T0 + HOUR_MS + 5
            )
            .replace("dev=sda,1", &k.labels.to_text())
        );
        let mut json = Vec::new();
        export(
            &reader,
            &SeriesSelector::all(),
            T0,
            T0 + 2 * HOUR_MS,
            ExportFormat::JsonLines,
            &mut json,
        )
        .unwrap();
        let line: serde_json::Value =
            serde_json::from_slice(json.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(line["labels"]["dev"], "sda,1");
        assert_eq!(line["samples"][1][1], serde_json::Value::Null);
        assert_eq!(line["samples"][2][1], 3.0);
        let report = integrity_check(&path).unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert!(report.rows_checked >= 3);
    }
}

/// Alert-engine state and action history.
mod alert_state {
    use super::*;
    use crate::storage::StorageReader;
    use crate::types::ActionRecord;

    /// States are upserted by key and deleted with `None`; actions read back by daemon.
    #[test]
    fn states_and_actions_round_trip() {
        let (_dir, path) = temp_db();
        let handle = spawn_test(&path);
        assert!(handle.save_alert_state("a".into(), Some("{\"v\":1}".into()), 1));
        assert!(handle.save_alert_state("b".into(), Some("{\"v\":2}".into()), 2));
        assert!(handle.save_alert_state("a".into(), Some("{\"v\":3}".into()), 3));
        assert!(handle.save_alert_state("b".into(), None, 4));
        let action = |ts: i64, daemon: &str| ActionRecord {
            ts_ms: ts,
            daemon: Some(DaemonId::new(daemon)),
            rule: "leak".into(),
            action: "restart".into(),
            outcome: "done".into(),
            detail: String::new(),
        };
        assert!(handle.record_action(action(10, "x")));
        assert!(handle.record_action(action(20, "y")));
        handle.shutdown(Duration::from_secs(30)).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        assert_eq!(
            reader.alert_states().unwrap(),
            vec![("a".to_string(), "{\"v\":3}".to_string())]
        );
        assert_eq!(
            reader.actions(Some(&DaemonId::new("y")), 0, 100).unwrap(),
            vec![action(20, "y")]
        );
        assert_eq!(reader.actions(None, 0, 100).unwrap().len(), 2);
    }
}
