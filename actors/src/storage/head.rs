//! The head table: per-series rows of recent samples, written by each fold of the head log,
//! indexed in the order folds write them, and found per series through `head_folds`.
//!
//! Each fold (every half minute) writes one row per series that had samples, all under one
//! fold number, and notes `(window, fold)` in `head_folds`. The only index on `head` is
//! `(window_ms, fold, series_id)`, so a fold's rows land at the end of their window's part of
//! the index. Before schema version 8 the head was indexed by `(window_ms, series_id)` and
//! `(series_id, window_ms)`: each fold put one entry beside each series' earlier ones, which
//! touched every leaf page of both indexes, so every fold rewrote both whole. At 1,000
//! daemons (34,000 series) that grew to 80 MB per index and fold by the end of an hour, and
//! the writer wrote 2.6 MB/s to disk in the first minute of each hour and 4.8 MB/s ten
//! minutes in (`/proc/<pid>/io` `write_bytes`).
//!
//! A series' rows are found by walking its window's folds (about 120 an hour) and looking
//! each `(window, fold, series)` up in the index: [`series_head_rows!`].

use rusqlite::{params, CachedStatement, Connection, OptionalExtension};

use super::codec;
use super::writer::window_of;

/// `SELECT <columns> FROM` the head rows of series `?1` in the windows `?2 <= window_ms < ?3`
/// (`h` the row, `f` its fold), oldest fold first, then `<tail>` (more conditions, `ORDER BY`).
/// The cross join keeps `head_folds` outermost, so each fold is one index lookup.
macro_rules! series_head_rows {
    ($columns:literal, $tail:literal) => {
        concat!(
            "SELECT ",
            $columns,
            " FROM head_folds AS f CROSS JOIN head AS h ON h.window_ms = f.window_ms \
             AND h.fold = f.fold AND h.series_id = ?1 \
             WHERE f.window_ms >= ?2 AND f.window_ms < ?3",
            $tail
        )
    };
}
pub(crate) use series_head_rows;

/// Insert of one head row as schema version 2 made it (no fold column yet), for the version
/// 2 migration.
pub(super) const INSERT_HEAD_V2: &str =
    "INSERT INTO head (series_id, window_ms, min_ts, max_ts, count, data) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const INSERT_HEAD: &str =
    "INSERT INTO head (series_id, window_ms, fold, min_ts, max_ts, count, data) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// The `(min_ts, max_ts, count, blob)` of a head row holding `samples`.
pub(super) fn row_of(samples: &[(i64, f64)]) -> (i64, i64, i64, Vec<u8>) {
    let (min_ts, max_ts) = samples
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &(ts, _)| {
            (lo.min(ts), hi.max(ts))
        });
    (
        min_ts,
        max_ts,
        samples.len() as i64,
        codec::encode_packed(samples),
    )
}

/// Writes the head rows of one fold, in the caller's transaction: every row under one new
/// fold number, each window it writes to noted in `head_folds` with it.
pub(super) struct FoldWriter<'c> {
    conn: &'c Connection,
    insert: CachedStatement<'c>,
    fold: i64,
    /// Windows already noted for this fold (one or two: a fold rarely spans an hour's end).
    noted: Vec<i64>,
}

impl<'c> FoldWriter<'c> {
    /// A writer for the next fold (one past the highest fold any window still has).
    pub(super) fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
        let fold: i64 = conn
            .prepare_cached("SELECT coalesce(max(fold), 0) + 1 FROM head_folds")?
            .query_row([], |r| r.get(0))?;
        Ok(FoldWriter {
            conn,
            insert: conn.prepare_cached(INSERT_HEAD)?,
            fold,
            noted: Vec::new(),
        })
    }

    /// Writes one series' samples, sorted by timestamp, as one head row per hour window.
    pub(super) fn write(&mut self, series: i64, samples: &[(i64, f64)]) -> rusqlite::Result<()> {
        for run in samples.chunk_by(|a, b| window_of(a.0) == window_of(b.0)) {
            let window = window_of(run[0].0);
            if !self.noted.contains(&window) {
                self.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO head_folds (window_ms, fold) VALUES (?1, ?2)",
                    )?
                    .execute(params![window, self.fold])?;
                self.noted.push(window);
            }
            let (min_ts, max_ts, count, blob) = row_of(run);
            self.insert.execute(params![
                series, window, self.fold, min_ts, max_ts, count, blob
            ])?;
        }
        Ok(())
    }
}

/// The oldest closed `(window, fold)` still holding head rows, and up to `limit` of its
/// series, in series order; folds found empty (their rows all compacted) are forgotten on
/// the way. Every series left in a window has a row in some fold of it, and compacting a
/// series removes its rows from every fold, so taking series from the oldest non-empty
/// fold reaches them all.
pub(super) fn closed_series(
    conn: &Connection,
    horizon: i64,
    limit: i64,
) -> rusqlite::Result<Option<(i64, Vec<i64>)>> {
    loop {
        let oldest: Option<(i64, i64)> = conn
            .prepare_cached(
                "SELECT window_ms, fold FROM head_folds WHERE window_ms <= ?1 \
                 ORDER BY window_ms, fold LIMIT 1",
            )?
            .query_row([horizon], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((window, fold)) = oldest else {
            return Ok(None);
        };
        let series: Vec<i64> = conn
            .prepare_cached(
                "SELECT series_id FROM head WHERE window_ms = ?1 AND fold = ?2 \
                 ORDER BY series_id LIMIT ?3",
            )?
            .query_map(params![window, fold, limit], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if !series.is_empty() {
            return Ok(Some((window, series)));
        }
        conn.prepare_cached("DELETE FROM head_folds WHERE window_ms = ?1 AND fold = ?2")?
            .execute(params![window, fold])?;
    }
}
