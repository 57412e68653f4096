//! Maintenance of the history in bounded steps: compaction of head rows into compressed
//! chunks and hourly rollups, daily rollups, retention of every tier, the size cap, and
//! handing free pages back to the file system.
//!
//! Every unit of work is its own short transaction, so a failure (disk full) rolls back one
//! unit and leaves the rest done, and a step can stop between units when its time budget is
//! spent: the writer goes back to ingesting and resumes at the next step. The order of units
//! within a step is also their priority: compaction first (it frees the head), then daily
//! rollups, retention, the cap and vacuuming.
//!
//! Rules, with `now` from the writer's clock:
//! - The hour window `[w, w + 1h)` of a series is compacted once `now ≥ w + 1h + grace`.
//!   Its head rows become one chunk (more if it holds over [`MAX_CHUNK_SAMPLES`] samples) and
//!   the hourly rollup of `w`. Samples arriving later for a compacted window are compacted
//!   the same way; their chunk sits beside the first and their rollup is merged into the
//!   existing hourly (and daily, if built) row.
//! - The daily rollup of day `d` is the merge of its hourly rollups, built once
//!   `now ≥ d + 1d + grace` and no head row of that day is left. The mark `daily_until`
//!   in the `maintenance` table says up to where days are built. Closing a day also
//!   rewrites the hourly chunks of sparse series (under [`SPARSE_CHUNK_SAMPLES`] samples per
//!   chunk on average, e.g. one sample a minute) as day-long chunks.
//!   Then, for the series whose chunks of the day hold every sample and take no more room
//!   than its hourly rollups (sparse series: a dozen samples an hour cost a few dozen bytes,
//!   an hourly rollup row about 150), the day's hourly rollups are deleted: those chunks
//!   stand in for the hourly tier, and hourly queries read them.
//! - Retention works per stored unit: a chunk is deleted when its last sample is older than
//!   `now − raw` (a stand-in for the hourly tier when it is older than `now − hourly`), an
//!   hourly (daily) rollup when its bucket ended before `now − hourly` (`now − daily`), and
//!   only once it is part of a daily rollup; events and alerts when older than their
//!   retention.
//! - The size cap deletes the oldest chunks first, then the oldest hourly rollups already
//!   folded into daily ones, then the oldest daily rollups.
//! - Space goes back to the file system two ways. A file of at most [`SMALL_FILE_BYTES`] is
//!   rewritten whole (`VACUUM`) once after each day closes, when no compaction is waiting:
//!   closing a day replaces a sparse series' hourly chunks by one and deletes its hourly
//!   rollups, which leaves pages partly empty that only a rewrite packs again, and in a
//!   small file that waste is a large share of it while the rewrite costs milliseconds.
//!   A bigger file is never rewritten by maintenance (the rewrite would take seconds and
//!   needs room for a second copy); its free pages are handed back in bounded
//!   `incremental_vacuum` steps once they are a tenth of the file (at least
//!   [`VACUUM_MIN_PAGES`], at most [`VACUUM_MAX_PAGES`] needed). The rewrite takes the write
//!   lock without waiting: if another connection holds it, the rewrite is skipped and tried
//!   again at the next step; readers on their own connections are not disturbed (WAL).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::config::{Retention, DAY_MS, HOUR_MS};
use super::head;
use super::rollup::Rollup;
use super::schema::{self, Lazy};
use super::sketch::DdSketch;
use super::writer::count;
use super::{codec, StorageConfig, StorageStats};

/// Most samples in one chunk; a window holding more is split.
pub const MAX_CHUNK_SAMPLES: usize = 16_384;

/// Average samples per chunk below which a closed day's chunks of a series are rewritten
/// as day-long chunks.
pub const SPARSE_CHUNK_SAMPLES: i64 = 1024;

/// Series windows compacted per transaction.
const COMPACT_UNITS: i64 = 16;
/// Rows deleted per retention statement.
const DELETE_ROWS: i64 = 2_000;
/// Free pages that always start an incremental vacuum (4 MiB of 4 KiB pages); below it,
/// free pages start one once they are a tenth of the file, and never fewer than
/// [`VACUUM_MIN_PAGES`].
const VACUUM_MAX_PAGES: i64 = 1_024;
/// The fewest free pages worth an incremental vacuum.
const VACUUM_MIN_PAGES: i64 = 16;
/// Pages handed back per incremental vacuum.
const VACUUM_PAGES: i64 = 512;
/// Largest file maintenance rewrites whole (`VACUUM`) after a day closes: the rewrite
/// writes the file twice (a temporary copy, then the WAL) and blocks ingestion while it
/// runs, so only files where that is a few milliseconds.
pub const SMALL_FILE_BYTES: i64 = 4 << 20;

/// Rollup tier code of hourly rows.
pub const TIER_HOURLY: i64 = 1;
/// Rollup tier code of daily rows.
pub const TIER_DAILY: i64 = 2;

/// Name of the mark up to which daily rollups are built.
const DAILY_MARK: &str = "daily_until";
/// Name of the mark up to which chunks past raw retention have been deleted (all but the
/// stand-ins for the hourly tier).
const RAW_MARK: &str = "raw_deleted_until";
/// Name of the mark holding [`DAILY_MARK`]'s value at the last whole-file rewrite.
const VACUUM_MARK: &str = "vacuumed_daily_until";

/// The part of the storage config maintenance needs, in milliseconds.
#[derive(Clone, Debug)]
pub(super) struct MaintenanceSettings {
    grace_ms: i64,
    raw_ms: i64,
    hourly_ms: i64,
    daily_ms: i64,
    events_ms: i64,
    alerts_ms: i64,
    max_bytes: Option<u64>,
}

impl MaintenanceSettings {
    /// Takes the settings from the writer's config.
    pub(super) fn from_config(config: &StorageConfig) -> Self {
        let r = &config.retention;
        MaintenanceSettings {
            grace_ms: Retention::ms(config.compaction_grace),
            raw_ms: Retention::ms(r.raw),
            hourly_ms: Retention::ms(r.hourly),
            daily_ms: Retention::ms(r.daily),
            events_ms: Retention::ms(r.events),
            alerts_ms: Retention::ms(r.alerts),
            max_bytes: config.max_bytes,
        }
    }
}

/// A unit of maintenance: does a bounded piece of work, `Ok(true)` if it did any.
type Unit =
    fn(&Connection, &MaintenanceSettings, i64, &StorageStats, bool) -> rusqlite::Result<bool>;

/// Every unit, in priority order.
pub(super) const UNITS: [Unit; 5] = [
    compact_unit,
    daily_unit,
    retention_unit,
    cap_unit,
    vacuum_unit,
];

/// Runs `units` ([`UNITS`]; the tests count their calls) until `budget` is spent or
/// nothing is left; `Ok(true)` when work remains.
pub(super) fn step<const N: usize>(
    units: &[Unit; N],
    conn: &Connection,
    settings: &MaintenanceSettings,
    now_ms: i64,
    stats: &StorageStats,
    budget: Duration,
    publish: bool,
) -> rusqlite::Result<bool> {
    let deadline = Instant::now() + budget;
    // Counting the backlog scans every closed head row: with millions of them (20,000
    // series an hour) it cost more than the compaction itself when done at every step, so
    // the caller asks for it only every few seconds.
    if publish {
        publish_backlog(conn, settings, now_ms, stats)?;
    }
    // Every kind of work gets one bounded unit per step, so retention is not starved while
    // compaction has a backlog; then the budget goes to them in priority order.
    let mut worked = [false; N];
    for (unit, worked) in units.iter().zip(&mut worked) {
        if Instant::now() >= deadline {
            return Ok(true);
        }
        *worked = unit(conn, settings, now_ms, stats, false)?;
    }
    // A unit that found nothing to do runs again only after one before it did something
    // (compaction can complete a day for the daily rollups): an idle step, the usual one,
    // asks each question once, not twice.
    let mut after_work = false;
    for (unit, worked) in units.iter().zip(worked) {
        after_work |= worked;
        if !after_work {
            continue;
        }
        loop {
            if Instant::now() >= deadline {
                return Ok(true);
            }
            if !unit(conn, settings, now_ms, stats, false)? {
                break;
            }
        }
    }
    // Caught up: the backlog is now small, and 0 is worth telling at once (unless it was
    // counted at the start of this step and nothing has been done since).
    if after_work || !publish {
        publish_backlog(conn, settings, now_ms, stats)?;
    }
    Ok(false)
}

/// Compacts every head row, open window or not, then builds what that completes and applies
/// retention, without a time budget (the "compact now" maintenance entry point).
pub(super) fn run_to_completion(
    conn: &Connection,
    settings: &MaintenanceSettings,
    now_ms: i64,
    stats: &StorageStats,
) -> rusqlite::Result<bool> {
    // Everything flushed is compacted, including what is still in the head log.
    let tx = conn.unchecked_transaction()?;
    super::headlog::fold(&tx)?;
    tx.commit()?;
    for unit in UNITS {
        while unit(conn, settings, now_ms, stats, true)? {}
    }
    publish_backlog(conn, settings, now_ms, stats)?;
    Ok(false)
}

/// The newest window start that may be compacted at `now_ms`.
fn compaction_horizon(settings: &MaintenanceSettings, now_ms: i64, force: bool) -> i64 {
    if force {
        i64::MAX
    } else {
        now_ms
            .saturating_sub(settings.grace_ms)
            .saturating_sub(HOUR_MS)
    }
}

fn publish_backlog(
    conn: &Connection,
    settings: &MaintenanceSettings,
    now_ms: i64,
    stats: &StorageStats,
) -> rusqlite::Result<()> {
    let backlog: i64 = conn
        .prepare_cached("SELECT count(*) FROM head WHERE window_ms <= ?1")?
        .query_row([compaction_horizon(settings, now_ms, false)], |r| r.get(0))?;
    stats
        .compaction_backlog
        .store(backlog.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Compacts up to [`COMPACT_UNITS`] series of the oldest closed window (every head row of
/// each), taken from its oldest fold still holding rows.
fn compact_unit(
    conn: &Connection,
    settings: &MaintenanceSettings,
    now_ms: i64,
    stats: &StorageStats,
    force: bool,
) -> rusqlite::Result<bool> {
    let horizon = compaction_horizon(settings, now_ms, force);
    let Some((window, work)) = head::closed_series(conn, horizon, COMPACT_UNITS)? else {
        return Ok(false);
    };
    let daily_until = mark(conn, DAILY_MARK)?;
    let tx = conn.unchecked_transaction()?;
    let mut compacted = 0u64;
    let mut chunks = 0u64;
    let mut rollups = 0u64;
    for series in work {
        let mut ids = Vec::new();
        let mut samples: Vec<(i64, f64)> = Vec::new();
        {
            let mut select = tx.prepare_cached(head::series_head_rows!("h.id, h.data", ""))?;
            let mut rows = select.query(params![series, window, window.saturating_add(1)])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let data: Vec<u8> = row.get(1)?;
                ids.push(id);
                match codec::decode_chunk(&data) {
                    Ok(decoded) => samples.extend(decoded),
                    Err(e) => {
                        // Unreadable bytes cannot become readable; drop the row, loudly.
                        tracing::error!(head_row = id, series, error = %e, "Damaged head row dropped.");
                        count(&stats.write_errors, 1);
                    }
                }
            }
        }
        samples.sort_by_key(|&(ts, _)| ts);
        chunks += insert_chunks(&tx, series, &samples)?;
        if let Some(rollup) = Rollup::from_samples(&samples) {
            merge_rollup(&tx, TIER_HOURLY, series, window, &rollup)?;
            rollups += 1;
            let day = window.div_euclid(DAY_MS).saturating_mul(DAY_MS);
            if daily_until.is_some_and(|until| day < until) {
                merge_rollup(&tx, TIER_DAILY, series, day, &rollup)?;
                rollups += 1;
            }
        }
        let mut delete = tx.prepare_cached("DELETE FROM head WHERE id = ?1")?;
        for id in ids {
            delete.execute([id])?;
        }
        compacted += samples.len() as u64;
    }
    tx.commit()?;
    count(&stats.compacted_samples, compacted);
    count(&stats.chunks_written, chunks);
    count(&stats.rollups_written, rollups);
    Ok(true)
}

/// The start of the next day whose daily rollups are due (over, grace included, and not
/// built yet), if any.
fn next_closed_day(
    conn: &Connection,
    settings: &MaintenanceSettings,
    now_ms: i64,
) -> rusqlite::Result<Option<i64>> {
    // The first hourly bucket at or after the mark (or the oldest one): days without data
    // are skipped in one go.
    let from = mark(conn, DAILY_MARK)?.unwrap_or(i64::MIN);
    let next: Option<i64> = conn
        .prepare_cached("SELECT min(bucket_ms) FROM rollups WHERE tier = ?1 AND bucket_ms >= ?2")?
        .query_row(params![TIER_HOURLY, from], |r| r.get(0))?;
    Ok(next
        .map(|next| next.div_euclid(DAY_MS).saturating_mul(DAY_MS))
        .filter(|day| now_ms >= day.saturating_add(DAY_MS).saturating_add(settings.grace_ms)))
}

/// Builds the daily rollups of the next closed day.
fn daily_unit(
    conn: &Connection,
    settings: &MaintenanceSettings,
    now_ms: i64,
    stats: &StorageStats,
    _force: bool,
) -> rusqlite::Result<bool> {
    let Some(day) = next_closed_day(conn, settings, now_ms)? else {
        return Ok(false);
    };
    let day_end = day.saturating_add(DAY_MS);
    let pending: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM head WHERE window_ms >= ?1 AND window_ms < ?2 LIMIT 1")?
        .query_row(params![day, day_end], |r| r.get(0))
        .optional()?;
    if pending.is_some() {
        // The day's head rows are compacted first (compaction runs before this unit).
        return Ok(false);
    }
    let tx = conn.unchecked_transaction()?;
    let mut merged: BTreeMap<i64, Rollup> = BTreeMap::new();
    {
        let mut select = tx.prepare_cached(&format!(
            "SELECT series_id, {ROLLUP_COLUMNS} FROM rollups \
             WHERE tier = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3 ORDER BY series_id, bucket_ms"
        ))?;
        let mut rows = select.query(params![TIER_HOURLY, day, day_end])?;
        while let Some(row) = rows.next()? {
            let series: i64 = row.get(0)?;
            let Some(rollup) = read_rollup(row, 1, true)? else {
                tracing::error!(series, day, "Damaged hourly rollup skipped.");
                count(&stats.write_errors, 1);
                continue;
            };
            match merged.get_mut(&series) {
                Some(acc) => {
                    if let Err(e) = acc.merge(&rollup) {
                        tracing::error!(series, day, error = %e, "Hourly rollup not mergeable; skipped.");
                    }
                }
                None => {
                    merged.insert(series, rollup);
                }
            }
        }
    }
    let mut written = 0;
    for (series, rollup) in &merged {
        merge_rollup(&tx, TIER_DAILY, *series, day, rollup)?;
        written += 1;
    }
    let coalesced = coalesce_day(&tx, day, day_end)?;
    thin_sparse_hours(&tx, day, day_end)?;
    set_mark(&tx, DAILY_MARK, day_end)?;
    tx.commit()?;
    count(&stats.rollups_written, written);
    count(&stats.chunks_written, coalesced);
    Ok(true)
}

/// Rewrites the hourly chunks of sparse series (fewer than [`SPARSE_CHUNK_SAMPLES`] samples
/// per chunk on average) of a closed day as day-long chunks: a series sampled every few
/// minutes would otherwise pay a chunk's fixed cost for a dozen samples. Returns the chunks
/// written.
fn coalesce_day(conn: &Connection, day: i64, day_end: i64) -> rusqlite::Result<u64> {
    let sparse: Vec<i64> = conn
        .prepare_cached(
            "SELECT series_id FROM chunks WHERE end_ms >= ?1 AND end_ms < ?2 AND start_ms >= ?1 \
             GROUP BY series_id HAVING count(*) > 1 AND sum(count) < count(*) * ?3",
        )?
        .query_map(params![day, day_end, SPARSE_CHUNK_SAMPLES], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut written = 0;
    for series in sparse {
        let mut ids = Vec::new();
        let mut samples: Vec<(i64, f64)> = Vec::new();
        {
            let mut select = conn.prepare_cached(
                "SELECT id, data FROM chunks WHERE series_id = ?1 AND start_ms >= ?2 \
                 AND start_ms < ?3 AND end_ms < ?3 ORDER BY start_ms, id",
            )?;
            let mut rows = select.query(params![series, day, day_end])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let data: Vec<u8> = row.get(1)?;
                match codec::decode_chunk(&data) {
                    Ok(decoded) => {
                        ids.push(id);
                        samples.extend(decoded);
                    }
                    // A damaged chunk stays as it is, for the integrity check to report.
                    Err(e) => {
                        tracing::error!(chunk = id, series, error = %e, "Damaged chunk left out of coalescing.")
                    }
                }
            }
        }
        if ids.len() < 2 {
            continue;
        }
        samples.sort_by_key(|&(ts, _)| ts);
        written += insert_chunks(conn, series, &samples)?;
        let mut delete = conn.prepare_cached("DELETE FROM chunks WHERE id = ?1")?;
        for id in ids {
            delete.execute([id])?;
        }
    }
    Ok(written)
}

/// Deletes the hourly rollups of a closed day for the series whose raw samples of that day
/// take no more room than those rollups (a series sampled every few minutes: a dozen samples
/// cost a few dozen bytes, their hourly rollup row with its sketch about 150). Only where
/// the day's chunks still hold every sample the rollups summarise. Those chunks then stand
/// in for the hourly tier: retention keeps them as long as hourly rollups (see
/// [`is_stand_in`]) and hourly queries read them. Returns the rows deleted.
fn thin_sparse_hours(conn: &Connection, day: i64, day_end: i64) -> rusqlite::Result<u64> {
    let deleted = conn
        .prepare_cached(&format!(
            "DELETE FROM rollups WHERE tier = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3 \
             AND series_id IN ( \
               SELECT r.series_id FROM rollups r WHERE r.tier = ?1 AND r.bucket_ms >= ?2 \
               AND r.bucket_ms < ?3 GROUP BY r.series_id \
               HAVING (SELECT sum(c.count) FROM chunks c WHERE c.series_id = r.series_id \
                       AND c.start_ms >= ?2 AND c.end_ms < ?3) = sum(r.count + r.nan_count) \
               AND (SELECT sum(length(c.data)) FROM chunks c WHERE c.series_id = r.series_id \
                    AND c.start_ms >= ?2 AND c.end_ms < ?3) \
                   <= sum(length(r.sketch)) + count(*) * {ROLLUP_ROW_BYTES})"
        ))?
        .execute(params![TIER_HOURLY, day, day_end])?;
    Ok(deleted as u64)
}

/// About what an hourly rollup row takes besides its sketch: thirteen numbers and the
/// B-tree's overhead.
const ROLLUP_ROW_BYTES: i64 = 110;

/// The SQL condition, on a chunk row aliased `c`, that it stands in for the hourly tier: no
/// hourly rollup overlaps it while a daily one does (see [`thin_sparse_hours`]). Parameters:
/// `?3` the hourly tier code, `?4` an hour in ms, `?5` the daily tier code, `?6` a day in ms.
const STAND_IN: &str = "(NOT EXISTS (SELECT 1 FROM rollups h WHERE h.tier = ?3 \
     AND h.series_id = c.series_id AND h.bucket_ms > c.start_ms - ?4 AND h.bucket_ms <= c.end_ms) \
     AND EXISTS (SELECT 1 FROM rollups d WHERE d.tier = ?5 AND d.series_id = c.series_id \
     AND d.bucket_ms > c.start_ms - ?6 AND d.bucket_ms <= c.end_ms))";

/// Writes sorted samples as chunks of at most [`MAX_CHUNK_SAMPLES`]; returns how many.
fn insert_chunks(conn: &Connection, series: i64, samples: &[(i64, f64)]) -> rusqlite::Result<u64> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO chunks (series_id, start_ms, end_ms, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut written = 0;
    let mut earliest_end = i64::MAX;
    for part in samples.chunks(MAX_CHUNK_SAMPLES) {
        let (Some(first), Some(last)) = (part.first(), part.last()) else {
            continue;
        };
        insert.execute(params![
            series,
            first.0,
            last.0,
            part.len() as i64,
            codec::encode_chunk(part)
        ])?;
        written += 1;
        earliest_end = earliest_end.min(last.0);
    }
    if written > 0 {
        // A chunk written for a time already past raw retention (late samples, a restart
        // after downtime, an import) is looked at again by the next retention pass.
        conn.prepare_cached("UPDATE maintenance SET value = ?2 WHERE name = ?1 AND value > ?2")?
            .execute(params![RAW_MARK, earliest_end])?;
    }
    Ok(written)
}

/// Deletes one batch of aged-out rows from the first table that has any.
fn retention_unit(
    conn: &Connection,
    settings: &MaintenanceSettings,
    now_ms: i64,
    stats: &StorageStats,
    _force: bool,
) -> rusqlite::Result<bool> {
    let daily_until = mark(conn, DAILY_MARK)?.unwrap_or(i64::MIN);
    let raw_cutoff = now_ms.saturating_sub(settings.raw_ms);
    let hourly_cutoff = now_ms.saturating_sub(settings.hourly_ms);
    let daily_cutoff = now_ms.saturating_sub(settings.daily_ms);
    // Chunks past raw retention go unless they stand in for the hourly tier. Only those that
    // aged out since the last pass are looked at (from the mark on): the stand-ins left
    // behind are not scanned again at every step, and go with the hourly cutoff.
    let raw_done = mark(conn, RAW_MARK)?.unwrap_or(i64::MIN);
    let aged = conn
        .prepare_cached(&format!(
            "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks c WHERE end_ms >= ?1 \
             AND end_ms < ?2 AND NOT {STAND_IN} LIMIT ?7)"
        ))?
        .execute(params![
            raw_done,
            raw_cutoff,
            TIER_HOURLY,
            HOUR_MS,
            TIER_DAILY,
            DAY_MS,
            DELETE_ROWS
        ])?;
    if aged > 0 {
        count(&stats.retention_deleted, aged as u64);
        return Ok(true);
    }
    if raw_cutoff > raw_done {
        set_mark(conn, RAW_MARK, raw_cutoff)?;
    }
    // The lazy tables (`schema::Lazy`) are skipped where the file does not have them.
    let statements: [(Option<Lazy>, &str, Vec<i64>); 6] = [
        (
            None,
            "DELETE FROM chunks WHERE id IN \
             (SELECT id FROM chunks WHERE end_ms < ?1 LIMIT ?2)",
            vec![hourly_cutoff, DELETE_ROWS],
        ),
        (
            None,
            "DELETE FROM rollups WHERE (tier, series_id, bucket_ms) IN \
             (SELECT tier, series_id, bucket_ms FROM rollups \
              WHERE tier = ?3 AND bucket_ms <= ?1 - ?4 AND bucket_ms < ?5 LIMIT ?2)",
            vec![
                hourly_cutoff,
                DELETE_ROWS,
                TIER_HOURLY,
                HOUR_MS,
                daily_until,
            ],
        ),
        (
            None,
            "DELETE FROM rollups WHERE (tier, series_id, bucket_ms) IN \
             (SELECT tier, series_id, bucket_ms FROM rollups \
              WHERE tier = ?3 AND bucket_ms <= ?1 - ?4 LIMIT ?2)",
            vec![daily_cutoff, DELETE_ROWS, TIER_DAILY, DAY_MS],
        ),
        (
            Some(Lazy::Events),
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts_ms < ?1 LIMIT ?2)",
            vec![now_ms.saturating_sub(settings.events_ms), DELETE_ROWS],
        ),
        (
            Some(Lazy::Alerts),
            "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE ts_ms < ?1 LIMIT ?2)",
            vec![now_ms.saturating_sub(settings.alerts_ms), DELETE_ROWS],
        ),
        (
            Some(Lazy::Actions),
            "DELETE FROM actions WHERE id IN (SELECT id FROM actions WHERE ts_ms < ?1 LIMIT ?2)",
            vec![now_ms.saturating_sub(settings.alerts_ms), DELETE_ROWS],
        ),
    ];
    for (table, sql, args) in statements {
        if let Some(table) = table {
            if !schema::has_table(conn, table)? {
                continue;
            }
        }
        let deleted = conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(args))?;
        if deleted > 0 {
            count(&stats.retention_deleted, deleted as u64);
            return Ok(true);
        }
    }
    Ok(false)
}

/// The database's used size: pages in use times the page size.
pub(super) fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) as u64).saturating_mul(size.max(0) as u64))
}

/// Deletes the oldest data while the used size is above the cap.
fn cap_unit(
    conn: &Connection,
    settings: &MaintenanceSettings,
    _now_ms: i64,
    stats: &StorageStats,
    _force: bool,
) -> rusqlite::Result<bool> {
    let Some(cap) = settings.max_bytes else {
        return Ok(false);
    };
    if used_bytes(conn)? <= cap {
        return Ok(false);
    }
    let daily_until = mark(conn, DAILY_MARK)?.unwrap_or(i64::MIN);
    let statements: [(&str, Vec<i64>); 3] = [
        (
            "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks ORDER BY end_ms LIMIT ?1)",
            vec![200],
        ),
        (
            "DELETE FROM rollups WHERE (tier, series_id, bucket_ms) IN \
             (SELECT tier, series_id, bucket_ms FROM rollups WHERE tier = ?2 AND bucket_ms < ?3 \
              ORDER BY bucket_ms LIMIT ?1)",
            vec![500, TIER_HOURLY, daily_until],
        ),
        (
            "DELETE FROM rollups WHERE (tier, series_id, bucket_ms) IN \
             (SELECT tier, series_id, bucket_ms FROM rollups WHERE tier = ?2 \
              ORDER BY bucket_ms LIMIT ?1)",
            vec![500, TIER_DAILY],
        ),
    ];
    for (sql, args) in statements {
        let deleted = conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(args))?;
        if deleted > 0 {
            tracing::warn!(
                deleted,
                cap_bytes = cap,
                "Storage above its size cap; oldest history deleted."
            );
            count(&stats.retention_deleted, deleted as u64);
            return Ok(true);
        }
    }
    Ok(false)
}

/// Hands space back to the file system: rewrites a small file once a day has closed since
/// its last rewrite ([`rewrite_small_file`]), and otherwise returns free pages in bounded
/// steps once they are a tenth of the file (incremental auto-vacuum databases only: every
/// file created by this version, and every small file once rewritten).
fn vacuum_unit(
    conn: &Connection,
    settings: &MaintenanceSettings,
    now_ms: i64,
    stats: &StorageStats,
    force: bool,
) -> rusqlite::Result<bool> {
    if rewrite_small_file(conn, settings, now_ms, stats, force)? {
        return Ok(true);
    }
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    if mode != 2 || free < incremental_threshold(pages) {
        return Ok(false);
    }
    conn.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
    Ok(true)
}

/// Free pages that start an incremental vacuum in a file of `pages` pages.
fn incremental_threshold(pages: i64) -> i64 {
    (pages / 10).clamp(VACUUM_MIN_PAGES, VACUUM_MAX_PAGES)
}

/// Rewrites the file whole (`VACUUM`, switching an older file to incremental auto-vacuum on
/// the way) when it is at most [`SMALL_FILE_BYTES`], a day has closed since the last
/// rewrite, and neither a closed hour waits for compaction nor a day for its rollups.
/// `Ok(true)` when it did.
///
/// The rewrite never fails the writer and never waits for a lock: when another connection
/// holds the write lock (`SQLITE_BUSY`/`SQLITE_LOCKED`) it is skipped and tried at the next
/// step; any other failure (no room for the copy) rolls back whole, is logged and counted
/// in `write_errors`, and waits for the next closed day. Either way nothing is lost: a
/// `VACUUM` that does not finish leaves the file as it was.
fn rewrite_small_file(
    conn: &Connection,
    settings: &MaintenanceSettings,
    now_ms: i64,
    stats: &StorageStats,
    force: bool,
) -> rusqlite::Result<bool> {
    let Some(closed) = mark(conn, DAILY_MARK)? else {
        return Ok(false);
    };
    if mark(conn, VACUUM_MARK)?.is_some_and(|done| done >= closed) {
        return Ok(false);
    }
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    if pages.saturating_mul(page_size) > SMALL_FILE_BYTES {
        return Ok(false);
    }
    // Compaction frees head pages and lets days close, and after a downtime several days
    // close at once: rewrite once after all of them, not before.
    let waiting: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM head WHERE window_ms <= ?1 LIMIT 1")?
        .query_row([compaction_horizon(settings, now_ms, force)], |r| r.get(0))
        .optional()?;
    if waiting.is_some() || next_closed_day(conn, settings, now_ms)?.is_some() {
        return Ok(false);
    }
    // The copy goes through a temporary file, not the heap: with the writer's in-memory
    // temp store it took the file's size in memory, and the allocator kept most of it.
    conn.busy_timeout(Duration::ZERO)?;
    let outcome = conn
        .pragma_update(None, "temp_store", "FILE")
        .and_then(|()| conn.pragma_update(None, "auto_vacuum", "INCREMENTAL"))
        .and_then(|()| conn.execute_batch("VACUUM"));
    let restored = conn.pragma_update(None, "temp_store", "MEMORY");
    conn.busy_timeout(schema::BUSY_TIMEOUT)?;
    restored?;
    match outcome {
        Ok(()) => {}
        Err(e) if is_busy(&e) => {
            tracing::debug!(error = %e, "Storage file busy; rewrite tried again at the next step.");
            return Ok(false);
        }
        Err(e) => {
            tracing::warn!(error = %e, "Storage file not rewritten; tried again after the next day closes.");
            count(&stats.write_errors, 1);
            set_mark(conn, VACUUM_MARK, closed)?;
            return Ok(false);
        }
    }
    set_mark(conn, VACUUM_MARK, closed)?;
    // The rewrite is in the WAL; copy it back now so the file shrinks at once rather than
    // at the next automatic checkpoint. Passive: it waits for no reader, and what a reader
    // still needs is copied by a later checkpoint.
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::debug!(error = %e, "Checkpoint after the rewrite deferred.");
    }
    Ok(true)
}

/// True for the errors that mean another connection holds a lock the statement needed.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Reads a named progress mark.
fn mark(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM maintenance WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

fn set_mark(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO maintenance (name, value) VALUES (?1, ?2)")?
        .execute(params![name, value])?;
    Ok(())
}

/// The rollup columns, in the order [`read_rollup`] reads them.
pub(super) const ROLLUP_COLUMNS: &str =
    "count, nan_count, sum, min, max, m2, first_ts, first, last_ts, last, increase, sketch";
/// The rollup columns without the sketch, for queries that need no quantile.
pub(super) const ROLLUP_COLUMNS_NO_SKETCH: &str =
    "count, nan_count, sum, min, max, m2, first_ts, first, last_ts, last, increase";

/// Reads a rollup from the row's columns starting at `at` (see [`ROLLUP_COLUMNS`]).
/// `Ok(None)` when its sketch is damaged. Without `with_sketch`, the sketch is empty.
pub(super) fn read_rollup(
    row: &Row<'_>,
    at: usize,
    with_sketch: bool,
) -> rusqlite::Result<Option<Rollup>> {
    let real = |i: usize| -> rusqlite::Result<f64> {
        Ok(row.get::<_, Option<f64>>(at + i)?.unwrap_or(f64::NAN))
    };
    let sketch = if with_sketch {
        let bytes: Vec<u8> = row.get(at + 11)?;
        match DdSketch::decode(&bytes) {
            Ok(sketch) => sketch,
            Err(_) => return Ok(None),
        }
    } else {
        DdSketch::default()
    };
    Ok(Some(Rollup {
        count: row.get::<_, i64>(at)?.max(0) as u64,
        nan_count: row.get::<_, i64>(at + 1)?.max(0) as u64,
        sum: real(2)?,
        min: real(3)?,
        max: real(4)?,
        m2: real(5)?,
        first_ts: row.get::<_, Option<i64>>(at + 6)?.unwrap_or(0),
        first: real(7)?,
        last_ts: row.get::<_, Option<i64>>(at + 8)?.unwrap_or(0),
        last: real(9)?,
        increase: real(10)?,
        sketch,
    }))
}

/// Merges `rollup` into the stored row of (tier, series, bucket), creating it if missing.
fn merge_rollup(
    conn: &Connection,
    tier: i64,
    series: i64,
    bucket: i64,
    rollup: &Rollup,
) -> rusqlite::Result<()> {
    let existing = conn
        .prepare_cached(&format!(
            "SELECT {ROLLUP_COLUMNS} FROM rollups WHERE tier = ?1 AND series_id = ?2 AND bucket_ms = ?3"
        ))?
        .query_row(params![tier, series, bucket], |row| read_rollup(row, 0, true))
        .optional()?
        .flatten();
    let merged;
    let rollup = match existing {
        Some(mut stored) => match stored.merge(rollup) {
            Ok(()) => {
                merged = stored;
                &merged
            }
            Err(e) => {
                tracing::error!(tier, series, bucket, error = %e, "Stored rollup not mergeable; replaced.");
                rollup
            }
        },
        None => rollup,
    };
    let has = rollup.count > 0;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO rollups (tier, series_id, bucket_ms, count, nan_count, sum, min, \
         max, m2, first_ts, first, last_ts, last, increase, sketch) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        tier,
        series,
        bucket,
        rollup.count as i64,
        rollup.nan_count as i64,
        rollup.sum,
        has.then_some(rollup.min),
        has.then_some(rollup.max),
        rollup.m2,
        has.then_some(rollup.first_ts),
        has.then_some(rollup.first),
        has.then_some(rollup.last_ts),
        has.then_some(rollup.last),
        rollup.increase,
        rollup.sketch.encode(),
    ])?;
    Ok(())
}

#[cfg(test)]
#[path = "maintenance_tests.rs"]
mod tests;
