//! `StorageReader`: queries over a read-only connection: series, raw ranges, aggregated
//! queries (`query`), events, alerts and a summary of what is stored.
//!
//! Each reader has its own connection opened with `SQLITE_OPEN_READ_ONLY`. In WAL mode a
//! reader sees the last commit made before its query started and never waits for the writer.
//! Rows that cannot be decoded (a source or kind this build does not know, a corrupted alert)
//! are skipped with a warning rather than failing the whole query.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::config::{DAY_MS, HOUR_MS};
use super::query::{self, Query, SeriesResult};
use super::schema::{self, Lazy};
use super::StorageError;
use super::{codec, headlog, maintenance};
use crate::types::{
    ActionRecord, Alert, DaemonId, LifecycleEvent, LifecycleKind, MetricKind, SeriesKey,
    TimestampMs,
};

const SELECT_EVENTS: &str = "SELECT daemon, pid, ts_ms, kind, detail FROM events \
     WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id";
const SELECT_DAEMON_EVENTS: &str = "SELECT daemon, pid, ts_ms, kind, detail FROM events \
     WHERE daemon = ?3 AND ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id";
const SELECT_ALERTS: &str =
    "SELECT id, json FROM alerts WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id";
const SELECT_DAEMON_ALERTS: &str = "SELECT id, json FROM alerts \
     WHERE daemon = ?3 AND ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id";

/// What the database holds, tier by tier (see [`StorageReader::summary`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageSummary {
    /// Series known.
    pub series: u64,
    /// Head rows (flushed, not yet compacted) and the samples in them.
    pub head_rows: u64,
    /// Samples not yet compacted: in head rows and in the head log.
    pub head_samples: u64,
    /// Compressed chunks and the samples in them.
    pub chunks: u64,
    /// Samples in chunks.
    pub chunk_samples: u64,
    /// Bytes of chunk data (compressed samples only, no row overhead).
    pub chunk_bytes: u64,
    /// Hourly rollup rows.
    pub hourly_rollups: u64,
    /// Daily rollup rows.
    pub daily_rollups: u64,
    /// Lifecycle events.
    pub events: u64,
    /// Alert history rows.
    pub alerts: u64,
    /// Bytes in use in the file (pages in use × page size).
    pub used_bytes: u64,
    /// Size of the file on disk.
    pub file_bytes: u64,
}

/// A read-only view of a perfvisor database. Time ranges are `[from_ms, to_ms)`.
#[derive(Debug)]
pub struct StorageReader {
    path: PathBuf,
    conn: Connection,
}

impl StorageReader {
    /// Opens an existing perfvisor database read-only. Refuses files that are not perfvisor
    /// databases or have another schema version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref();
        Ok(StorageReader {
            conn: schema::open_reader(path)?,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every series with its kind, in the order they were first stored.
    pub fn series(&self) -> Result<Vec<(SeriesKey, MetricKind)>, StorageError> {
        Ok(query::load_series(&self.conn)?
            .into_iter()
            .map(|s| (s.key, s.kind))
            .collect())
    }

    /// Runs a query (see [`Query`] for its semantics and the tier planner).
    pub fn query(&self, query: &Query) -> Result<Vec<SeriesResult>, StorageError> {
        let series = query::load_series(&self.conn)?;
        query::run(&self.conn, &series, query)
    }

    /// Runs a query one series at a time: `each` gets every series' answer before the next
    /// is read, and stops the query by returning `ControlFlow::Break`. Peak memory is then
    /// one series' answer, whatever the selector matches. A raw answer (no aggregations) is
    /// read no further than `max_raw` samples: one with more than `max_raw` samples is
    /// incomplete and only says that the range holds too many.
    pub fn query_each(
        &self,
        query: &Query,
        max_raw: usize,
        each: impl FnMut(SeriesResult) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let series = query::load_series(&self.conn)?;
        query::run_each(&self.conn, &series, query, max_raw, each)
    }

    /// The samples of one series in `[from_ms, to_ms)`, oldest first, read from head rows
    /// and chunks alike. A NaN value reads back as NaN; an unknown series has no samples.
    pub fn query_range(
        &self,
        series: &SeriesKey,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    ) -> Result<Vec<(TimestampMs, f64)>, StorageError> {
        let id: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT id FROM series WHERE source = ?1 AND metric = ?2 AND labels = ?3",
            )?
            .query_row(
                params![
                    series.source.as_text(),
                    series.metric.as_str(),
                    series.labels.to_text()
                ],
                |row| row.get(0),
            )
            .optional()?;
        match id {
            Some(id) if to_ms > from_ms => {
                query::raw_samples(&self.conn, id, from_ms, to_ms, false)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Every series with its storage id and kind, by id. Ids are stable for the life of the
    /// file; [`StorageReader::samples_forward`] names series by them.
    pub fn series_by_id(&self) -> Result<Vec<(i64, SeriesKey, MetricKind)>, StorageError> {
        Ok(query::load_series(&self.conn)?
            .into_iter()
            .map(|s| (s.id, s.key, s.kind))
            .collect())
    }

    /// Every raw sample of every series at or after `from` and before `to_ms`, in
    /// (timestamp, series id) order, as `(ts_ms, series_id, value)`: the order a remote-write
    /// cursor walks the history in. `from` is `(ts_ms, series_id)`: samples at `from.0` of a
    /// series with a smaller id are left out. Head log, head rows and chunks are read in one
    /// read transaction, so a compaction between two statements neither hides nor repeats a
    /// sample; a sample stored twice at one timestamp is returned once.
    pub fn samples_forward(
        &self,
        from: (TimestampMs, i64),
        to_ms: TimestampMs,
    ) -> Result<Vec<(TimestampMs, i64, f64)>, StorageError> {
        let (from_ms, from_id) = from;
        let mut out: Vec<(TimestampMs, i64, f64)> = Vec::new();
        if to_ms <= from_ms {
            return Ok(out);
        }
        let keep =
            |ts: i64, id: i64| ts >= from_ms && ts < to_ms && (ts > from_ms || id >= from_id);
        let tx = self.conn.unchecked_transaction()?;
        {
            // A chunk spans at most a day, so its end is within a day after `to_ms`: that
            // bounds the index range.
            let mut stmt = tx.prepare_cached(
                "SELECT id, series_id, data FROM chunks \
                 WHERE end_ms >= ?1 AND end_ms < ?3 AND start_ms < ?2",
            )?;
            let rows = stmt.query(params![from_ms, to_ms, to_ms.saturating_add(DAY_MS)])?;
            self.decode_rows(rows, "chunk", &keep, &mut out)?;
            let mut stmt = tx.prepare_cached(
                "SELECT id, series_id, data FROM head \
                 WHERE window_ms >= ?1 AND window_ms < ?2 AND max_ts >= ?3 AND min_ts < ?2",
            )?;
            let floor = from_ms.div_euclid(HOUR_MS).saturating_mul(HOUR_MS);
            let rows = stmt.query(params![floor, to_ms, from_ms])?;
            self.decode_rows(rows, "head row", &keep, &mut out)?;
            let mut stmt = tx.prepare_cached(
                "SELECT id, data FROM head_log WHERE max_ts >= ?1 AND min_ts < ?2 ORDER BY id",
            )?;
            let mut rows = stmt.query(params![from_ms, to_ms])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let blob = row.get_ref(1)?.as_blob().unwrap_or(&[]);
                headlog::for_each(blob, |series, samples| {
                    out.extend(
                        samples
                            .filter(|&(ts, _)| keep(ts, series))
                            .map(|(ts, v)| (ts, series, v)),
                    );
                })
                .map_err(|e| self.corrupt(format!("head log row {id}: {e}")))?;
            }
        }
        tx.finish()?;
        out.sort_by_key(|&(ts, id, _)| (ts, id));
        out.dedup_by_key(|&mut (ts, id, _)| (ts, id));
        Ok(out)
    }

    /// About how many raw samples are stored at or after `from_ms`: every head log row, head
    /// row and chunk reaching that far counts whole, so the figure is high by at most one
    /// row per series. Cheap (row counts, no decoding); a remote-write backlog estimate.
    pub fn samples_after_estimate(&self, from_ms: TimestampMs) -> Result<u64, StorageError> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT (SELECT coalesce(sum(count), 0) FROM chunks WHERE end_ms >= ?1) \
                 + (SELECT coalesce(sum(count), 0) FROM head WHERE max_ts >= ?1) \
                 + (SELECT coalesce(sum(count), 0) FROM head_log WHERE max_ts >= ?1)",
            )?
            .query_row(params![from_ms], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// How many raw samples are stored (head log, head rows and chunks), all series together.
    pub fn sample_count(&self) -> Result<u64, StorageError> {
        let n: i64 = self.conn.prepare_cached(
            "SELECT (SELECT coalesce(sum(count), 0) FROM head) + (SELECT coalesce(sum(count), 0) FROM head_log) \
             + (SELECT coalesce(sum(count), 0) FROM chunks)",
        )?
        .query_row([], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Row counts and sizes, tier by tier.
    pub fn summary(&self) -> Result<StorageSummary, StorageError> {
        let one = |sql: &str| -> Result<u64, StorageError> {
            let n: i64 = self.conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(StorageSummary {
            series: one("SELECT count(*) FROM series")?,
            head_rows: one("SELECT count(*) FROM head")?,
            head_samples: one("SELECT (SELECT coalesce(sum(count), 0) FROM head) \
                 + (SELECT coalesce(sum(count), 0) FROM head_log)")?,
            chunks: one("SELECT count(*) FROM chunks")?,
            chunk_samples: one("SELECT coalesce(sum(count), 0) FROM chunks")?,
            chunk_bytes: one("SELECT coalesce(sum(length(data)), 0) FROM chunks")?,
            hourly_rollups: one("SELECT count(*) FROM rollups WHERE tier = 1")?,
            daily_rollups: one("SELECT count(*) FROM rollups WHERE tier = 2")?,
            events: self.count_rows(Lazy::Events)?,
            alerts: self.count_rows(Lazy::Alerts)?,
            used_bytes: maintenance::used_bytes(&self.conn)?,
            file_bytes: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
        })
    }

    /// Lifecycle events in `[from_ms, to_ms)`, of one daemon or all, oldest first.
    pub fn events(
        &self,
        daemon: Option<&DaemonId>,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    ) -> Result<Vec<LifecycleEvent>, StorageError> {
        if !schema::has_table(&self.conn, Lazy::Events)? {
            return Ok(Vec::new());
        }
        let mut stmt;
        let rows = match daemon {
            Some(d) => {
                stmt = self.conn.prepare_cached(SELECT_DAEMON_EVENTS)?;
                stmt.query(params![from_ms, to_ms, d.as_str()])?
            }
            None => {
                stmt = self.conn.prepare_cached(SELECT_EVENTS)?;
                stmt.query(params![from_ms, to_ms])?
            }
        };
        let mut out = Vec::new();
        let mut rows = rows;
        while let Some(row) = rows.next()? {
            match decode_event(row)? {
                Ok(event) => out.push(event),
                Err(why) => self.skip("events", &why),
            }
        }
        Ok(out)
    }

    /// Alerts produced in `[from_ms, to_ms)`, oldest first.
    pub fn alerts(
        &self,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    ) -> Result<Vec<Alert>, StorageError> {
        self.alerts_of(None, from_ms, to_ms)
    }

    /// Alerts about one daemon (or all, with `None`) produced in `[from_ms, to_ms)`, oldest
    /// first.
    pub fn alerts_of(
        &self,
        daemon: Option<&DaemonId>,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    ) -> Result<Vec<Alert>, StorageError> {
        if !schema::has_table(&self.conn, Lazy::Alerts)? {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String)> = match daemon {
            Some(d) => self
                .conn
                .prepare_cached(SELECT_DAEMON_ALERTS)?
                .query_map(params![from_ms, to_ms, d.as_str()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<Result<_, _>>()?,
            None => self
                .conn
                .prepare_cached(SELECT_ALERTS)?
                .query_map(params![from_ms, to_ms], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<Result<_, _>>()?,
        };
        let mut out = Vec::new();
        for (id, json) in rows {
            match serde_json::from_str(&json) {
                Ok(alert) => out.push(alert),
                // serde_json writes a NaN value as null, which does not read back as f64.
                Err(e) => self.skip("alerts", &format!("row {id}: {e}")),
            }
        }
        Ok(out)
    }

    /// Every persisted alert-engine state, as (key, JSON), by key.
    pub fn alert_states(&self) -> Result<Vec<(String, String)>, StorageError> {
        if !schema::has_table(&self.conn, Lazy::AlertState)? {
            return Ok(Vec::new());
        }
        let rows = self
            .conn
            .prepare_cached("SELECT key, json FROM alert_state ORDER BY key")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Actions on one daemon (or all) in `[from_ms, to_ms)`, oldest first.
    pub fn actions(
        &self,
        daemon: Option<&DaemonId>,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    ) -> Result<Vec<ActionRecord>, StorageError> {
        if !schema::has_table(&self.conn, Lazy::Actions)? {
            return Ok(Vec::new());
        }
        let map = |r: &Row<'_>| -> rusqlite::Result<ActionRecord> {
            Ok(ActionRecord {
                ts_ms: r.get(0)?,
                daemon: r.get::<_, Option<String>>(1)?.map(DaemonId::from),
                rule: r.get(2)?,
                action: r.get(3)?,
                outcome: r.get(4)?,
                detail: r.get(5)?,
            })
        };
        let sql = "SELECT ts_ms, daemon, rule, action, outcome, detail FROM actions \
                   WHERE ts_ms >= ?1 AND ts_ms < ?2 AND (?3 IS NULL OR daemon = ?3) \
                   ORDER BY ts_ms, id";
        let rows = self
            .conn
            .prepare_cached(sql)?
            .query_map(params![from_ms, to_ms, daemon.map(|d| d.as_str())], map)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Decodes every `(id, series_id, blob)` row into `out` as `(ts, series_id, value)`,
    /// keeping the samples `keep` accepts; a blob that does not decode is corruption, named
    /// by `what` and its id.
    fn decode_rows(
        &self,
        mut rows: rusqlite::Rows<'_>,
        what: &str,
        keep: &impl Fn(i64, i64) -> bool,
        out: &mut Vec<(TimestampMs, i64, f64)>,
    ) -> Result<(), StorageError> {
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let series: i64 = row.get(1)?;
            let data = row.get_ref(2)?.as_blob().unwrap_or(&[]);
            let decoded =
                codec::decode_chunk(data).map_err(|e| self.corrupt(format!("{what} {id}: {e}")))?;
            out.extend(
                decoded
                    .into_iter()
                    .filter(|&(ts, _)| keep(ts, series))
                    .map(|(ts, v)| (ts, series, v)),
            );
        }
        Ok(())
    }

    /// Rows of a lazy table; none when the file does not have it.
    fn count_rows(&self, table: Lazy) -> Result<u64, StorageError> {
        if !schema::has_table(&self.conn, table)? {
            return Ok(0);
        }
        let n: i64 =
            self.conn
                .query_row(&format!("SELECT count(*) FROM {}", table.name()), [], |r| {
                    r.get(0)
                })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn corrupt(&self, what: String) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn skip(&self, table: &str, why: &str) {
        tracing::warn!(path = %self.path.display(), table, reason = why, "Unreadable row skipped.");
    }
}

/// The remote-write cursors (`remote_write_cursor`, created by the first save): where each remote
/// has shipped up to. Owned by the remote-write shipper, which writes it through this
/// connection of its own (one small row per send), never through the storage writer.
#[derive(Debug)]
pub struct RemoteCursors {
    conn: Connection,
}

impl RemoteCursors {
    /// Opens the cursor table of an existing perfvisor database (created and migrated by
    /// the storage writer first).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Ok(RemoteCursors {
            conn: schema::open_sidecar(path.as_ref())?,
        })
    }

    /// Where remote `name` is: the next `(ts_ms, series_id)` to ship, if it has a cursor.
    pub fn load(&self, name: &str) -> Result<Option<(TimestampMs, i64)>, StorageError> {
        if !schema::has_table(&self.conn, Lazy::RemoteWriteCursor)? {
            return Ok(None);
        }
        Ok(self
            .conn
            .prepare_cached("SELECT ts_ms, series_id FROM remote_write_cursor WHERE name = ?1")?
            .query_row(params![name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Records that everything before `(ts_ms, series_id)` reached remote `name` (or was
    /// given up on), at `now_ms`.
    pub fn save(
        &self,
        name: &str,
        cursor: (TimestampMs, i64),
        now_ms: TimestampMs,
    ) -> Result<(), StorageError> {
        // The first save creates the table (a statement of its own: should the insert
        // below fail, an empty table is left, which reads as no cursor).
        schema::create_lazy(&self.conn, Lazy::RemoteWriteCursor)?;
        self.conn
            .prepare_cached(
                "INSERT INTO remote_write_cursor (name, ts_ms, series_id, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET \
                 ts_ms = excluded.ts_ms, series_id = excluded.series_id, \
                 updated_ms = excluded.updated_ms",
            )?
            .execute(params![name, cursor.0, cursor.1, now_ms])?;
        Ok(())
    }
}

/// Decodes one event row; the inner error says why a row is unusable.
fn decode_event(row: &Row<'_>) -> Result<Result<LifecycleEvent, String>, rusqlite::Error> {
    let daemon: String = row.get(0)?;
    let pid: i64 = row.get(1)?;
    let ts_ms: i64 = row.get(2)?;
    let kind: String = row.get(3)?;
    let detail: String = row.get(4)?;
    let Some(kind) = LifecycleKind::parse(&kind) else {
        return Ok(Err(format!("unknown event kind {kind:?}")));
    };
    let Ok(pid) = u32::try_from(pid) else {
        return Ok(Err(format!("pid {pid} out of range")));
    };
    Ok(Ok(LifecycleEvent {
        daemon: DaemonId::from(daemon),
        pid,
        ts_ms,
        kind,
        intended: detail.starts_with(crate::types::INTENDED_PREFIX),
        detail,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::storage::tests::{sample_alert, temp_db, test_config, zero_hook};
    use crate::storage::{StorageHandle, StorageStats};
    use crate::types::{Labels, MetricBatch, Sample, Source};

    /// A missing file is an open error naming the path, and nothing gets created.
    #[test]
    fn missing_file_is_an_open_error() {
        let (_dir, path) = temp_db();
        let err = StorageReader::open(&path).unwrap_err();
        assert!(matches!(err, StorageError::Open { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert!(!path.exists());
    }

    /// Non-finite values and labelled, counter and daemon series round-trip; unknown series
    /// read as empty.
    #[test]
    fn values_and_keys_round_trip() {
        let (_dir, path) = temp_db();
        let stats = Arc::new(StorageStats::default());
        let handle =
            StorageHandle::spawn(test_config(&path), Arc::clone(&stats), zero_hook()).unwrap();
        let key = SeriesKey::new(
            Source::Daemon(DaemonId::new("idx:1")),
            "process.cpu.time_seconds",
            Labels::from_pairs([("project", "ws1"), ("cpu", "0")]),
        );
        let values = [f64::NAN, f64::INFINITY, -0.5, f64::NEG_INFINITY];
        let samples = values
            .iter()
            .enumerate()
            .map(|(i, &value)| Sample {
                series: key.clone(),
                kind: MetricKind::Counter,
                ts_ms: i as i64,
                value,
            })
            .collect();
        assert!(handle.store(Arc::new(MetricBatch { samples })));
        handle.shutdown(Duration::from_secs(30)).unwrap();
        assert_eq!(stats.stored_samples.load(Ordering::Relaxed), 4);

        let reader = StorageReader::open(&path).unwrap();
        assert_eq!(
            reader.series().unwrap(),
            vec![(key.clone(), MetricKind::Counter)]
        );
        let read = reader.query_range(&key, i64::MIN, i64::MAX).unwrap();
        assert!(read[0].1.is_nan());
        assert_eq!(
            &read[1..],
            &[(1, f64::INFINITY), (2, -0.5), (3, f64::NEG_INFINITY)]
        );
        let unknown = SeriesKey::new(Source::Host, "nope", Labels::empty());
        assert!(reader.query_range(&unknown, 0, 10).unwrap().is_empty());
    }

    /// An alert whose JSON cannot be read back (NaN value) is skipped, not fatal.
    #[test]
    fn unreadable_alert_is_skipped() {
        let (_dir, path) = temp_db();
        let handle = crate::storage::tests::spawn_test(&path);
        let mut bad = sample_alert(5);
        bad.value = f64::NAN;
        assert!(handle.record_alert(bad));
        assert!(handle.record_alert(sample_alert(6)));
        handle.shutdown(Duration::from_secs(30)).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        assert_eq!(reader.alerts(0, 10).unwrap(), vec![sample_alert(6)]);
    }

    /// A file that never had an event, alert, alert state, action or remote-write cursor has
    /// none of those tables, and every read of them answers empty; maintenance (retention
    /// of events, alerts and actions) runs without them. Each first write creates its table
    /// only, and a reader opened before sees it.
    #[test]
    fn lazy_tables_read_empty_until_first_written() {
        use crate::storage::schema::{has_table, Lazy};
        use crate::types::{ActionRecord, LifecycleKind};

        let (_dir, path) = temp_db();
        let handle = crate::storage::tests::spawn_test(&path);
        let key = SeriesKey::new(Source::Host, "app.requests", Labels::empty());
        let samples = (0..10)
            .map(|i| Sample {
                series: key.clone(),
                kind: MetricKind::Gauge,
                ts_ms: i * 300_000,
                value: i as f64,
            })
            .collect();
        assert!(handle.store(Arc::new(MetricBatch { samples })));
        handle.compact_now(Duration::from_secs(30)).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        let lazy_present = || -> Vec<Lazy> {
            let conn = Connection::open(&path).unwrap();
            Lazy::ALL
                .into_iter()
                .filter(|&t| has_table(&conn, t).unwrap())
                .collect()
        };
        assert_eq!(lazy_present(), vec![]);
        let d = DaemonId::new("d");
        let (all, one) = (None, Some(&d));
        assert_eq!(reader.events(all, i64::MIN, i64::MAX).unwrap(), vec![]);
        assert_eq!(reader.events(one, i64::MIN, i64::MAX).unwrap(), vec![]);
        assert_eq!(reader.alerts(i64::MIN, i64::MAX).unwrap(), vec![]);
        assert_eq!(reader.alerts_of(one, i64::MIN, i64::MAX).unwrap(), vec![]);
        assert_eq!(reader.alert_states().unwrap(), vec![]);
        assert_eq!(reader.actions(all, i64::MIN, i64::MAX).unwrap(), vec![]);
        assert_eq!(reader.actions(one, i64::MIN, i64::MAX).unwrap(), vec![]);
        let summary = reader.summary().unwrap();
        assert_eq!((summary.events, summary.alerts), (0, 0));
        assert_eq!(summary.chunk_samples, 10);
        let cursors = RemoteCursors::open(&path).unwrap();
        assert_eq!(cursors.load("central").unwrap(), None);
        assert_eq!(lazy_present(), vec![]);

        let event = LifecycleEvent {
            daemon: d.clone(),
            pid: 7,
            ts_ms: 5,
            kind: LifecycleKind::Started,
            detail: String::new(),
            intended: false,
        };
        assert!(handle.record_event(event.clone()));
        handle.flush(Duration::from_secs(30)).unwrap();
        assert_eq!(lazy_present(), vec![Lazy::Events]);
        assert_eq!(reader.events(one, 0, 10).unwrap(), vec![event]);
        assert!(handle.record_alert(sample_alert(6)));
        assert!(handle.save_alert_state("k".into(), Some("{}".into()), 6));
        let action = ActionRecord {
            ts_ms: 7,
            daemon: Some(d.clone()),
            rule: "leak".into(),
            action: "restart".into(),
            outcome: "done".into(),
            detail: String::new(),
        };
        assert!(handle.record_action(action.clone()));
        handle.flush(Duration::from_secs(30)).unwrap();
        cursors.save("central", (8, 1), 8).unwrap();
        assert_eq!(lazy_present(), Lazy::ALL.to_vec());
        assert_eq!(reader.alerts(0, 10).unwrap(), vec![sample_alert(6)]);
        assert_eq!(
            reader.alert_states().unwrap(),
            vec![("k".to_string(), "{}".to_string())]
        );
        assert_eq!(reader.actions(one, 0, 10).unwrap(), vec![action]);
        assert_eq!(cursors.load("central").unwrap(), Some((8, 1)));
        let summary = reader.summary().unwrap();
        assert_eq!((summary.events, summary.alerts), (1, 1));
        handle.compact_now(Duration::from_secs(30)).unwrap();
        handle.shutdown(Duration::from_secs(30)).unwrap();
    }

    /// The forward read returns every series' samples in (timestamp, series id) order from
    /// head log, head rows and chunks alike (before and after a compaction), starts within
    /// a timestamp at the cursor's series, and the cursor table keeps a position per remote.
    #[test]
    fn forward_read_walks_all_tiers_in_cursor_order() {
        let (_dir, path) = temp_db();
        let handle = crate::storage::tests::spawn_test(&path);
        // Two series with samples at the same timestamps, 0..3 s every 100 ms.
        let key = |m: &str| SeriesKey::new(Source::Host, m.to_string(), Labels::empty());
        let samples = (0..30)
            .flat_map(|i| {
                ["a", "b"].map(|m| Sample {
                    series: key(m),
                    kind: MetricKind::Gauge,
                    ts_ms: i * 100,
                    value: i as f64,
                })
            })
            .collect();
        assert!(handle.store(Arc::new(MetricBatch { samples })));
        handle.flush(Duration::from_secs(30)).unwrap();
        let reader = StorageReader::open(&path).unwrap();
        let ids: Vec<i64> = reader.series_by_id().unwrap().iter().map(|s| s.0).collect();
        assert_eq!(ids.len(), 2);
        let check = |reader: &StorageReader| {
            let all = reader.samples_forward((0, 0), 3_000).unwrap();
            assert_eq!(all.len(), 60);
            assert!(all.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
            // From the middle of timestamp 500: the second series only, then onwards.
            let from = reader.samples_forward((500, ids[1]), 700).unwrap();
            assert_eq!(
                from,
                vec![(500, ids[1], 5.0), (600, ids[0], 6.0), (600, ids[1], 6.0)]
            );
            assert_eq!(reader.samples_forward((700, 0), 700).unwrap(), vec![]);
            assert!(reader.samples_after_estimate(2_850).unwrap() >= 2);
        };
        check(&reader);
        handle.compact_now(Duration::from_secs(30)).unwrap();
        check(&reader);
        handle.shutdown(Duration::from_secs(30)).unwrap();

        let cursors = RemoteCursors::open(&path).unwrap();
        assert_eq!(cursors.load("central").unwrap(), None);
        cursors.save("central", (600, ids[1]), 1).unwrap();
        cursors.save("central", (700, 0), 2).unwrap();
        cursors.save("other", (5, 5), 2).unwrap();
        drop(cursors);
        let cursors = RemoteCursors::open(&path).unwrap();
        assert_eq!(cursors.load("central").unwrap(), Some((700, 0)));
        assert_eq!(cursors.load("other").unwrap(), Some((5, 5)));
    }
}
