//! The writer's connection and what it writes with it: the SQL, the series-id cache, one
//! flush of the buffers as a single transaction, and the write faults tests inject.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::buffers::{Buffers, Flushed};
use super::commands::StorageFault;
use crate::storage::config::HOUR_MS;
use crate::storage::schema::{self, Lazy};
use crate::storage::{headlog, StorageError};
use crate::types::{AlertState, MetricKind, SeriesKey};

const INSERT_LOG: &str =
    "INSERT INTO head_log (min_ts, max_ts, count, data) VALUES (?1, ?2, ?3, ?4)";
const SELECT_SERIES: &str =
    "SELECT id FROM series WHERE source = ?1 AND metric = ?2 AND labels = ?3";
const INSERT_SERIES: &str =
    "INSERT INTO series (source, metric, labels, kind) VALUES (?1, ?2, ?3, ?4)";
const INSERT_EVENT: &str =
    "INSERT INTO events (daemon, pid, ts_ms, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_ALERT: &str = "INSERT INTO alerts (ts_ms, rule, state, severity, daemon, json) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The start of the hour window `ts_ms` falls in.
pub(in crate::storage) fn window_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(HOUR_MS).saturating_mul(HOUR_MS)
}

/// The stored text of an alert state (the same words as its serde form).
fn alert_state_text(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

/// The state a writer builds from its config: the connection and what the head log holds.
/// Thrown away and rebuilt on restart. (Series ids are cached in the buffers' entries,
/// which survive restarts: ids are never reused, series rows never deleted.)
pub(in crate::storage) struct WriterState {
    path: PathBuf,
    pub(in crate::storage) conn: Connection,
    /// What the head log holds, per series, when this connection has seen every row of it
    /// written (from its first fold on); `None` when unknown, and the fold reads the log.
    pub(in crate::storage) pending: Option<headlog::Pending>,
}

impl WriterState {
    /// Opens (creating or migrating) the database at `path`.
    pub(in crate::storage) fn open(path: &Path) -> Result<Self, StorageError> {
        Ok(WriterState {
            path: path.to_path_buf(),
            conn: schema::open_writer(path)?,
            pending: None,
        })
    }

    /// Closes the connection, logging (not failing) if SQLite refuses.
    pub(in crate::storage) fn close(self) {
        if let Err((_conn, e)) = self.conn.close() {
            tracing::warn!(path = %self.path.display(), error = %e, "Closing the storage database failed.");
        }
    }

    /// Commits the buffers in one transaction. On error nothing is committed, the buffers
    /// are untouched and the series cache is cleared.
    pub(super) fn flush(&mut self, buffers: &mut Buffers) -> rusqlite::Result<Flushed> {
        match self.write_buffers(buffers) {
            Ok(flushed) => {
                if let Some(pending) = &mut self.pending {
                    // Only sources that brought samples since the last commit have any.
                    for (_, buffer) in buffers.series.touched_mut() {
                        if let Some(id) = buffer.id {
                            pending.add(&mut buffer.pending_slot, id, &buffer.samples);
                        }
                    }
                }
                Ok(flushed)
            }
            Err(e) => {
                // A rolled-back insert may have given a buffer an id that no longer exists.
                buffers.forget_ids();
                Err(e)
            }
        }
    }

    fn write_buffers(&mut self, buffers: &mut Buffers) -> rusqlite::Result<Flushed> {
        let WriterState { conn, .. } = self;
        // IMMEDIATE takes the write lock up front, so the commit cannot fail on lock upgrade.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut flushed = Flushed::default();
        {
            // Every series' new samples go into one head log row (`headlog`), folded into
            // per-series head rows later: one insert per flush however many series there are.
            let mut groups: Vec<(i64, &[(i64, f64)])> = Vec::with_capacity(buffers.series.len());
            let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
            // Only sources that brought samples since the last commit have any.
            for (key, buffer) in buffers.series.touched_mut() {
                if buffer.samples.is_empty() {
                    continue;
                }
                let id = match buffer.id {
                    Some(id) => id,
                    None => {
                        let id = series_id(&tx, key, buffer.kind)?;
                        buffer.id = Some(id);
                        id
                    }
                };
                for &(ts, _) in &buffer.samples {
                    min_ts = min_ts.min(ts);
                    max_ts = max_ts.max(ts);
                }
                flushed.samples += buffer.samples.len() as u64;
                groups.push((id, &buffer.samples));
            }
            flushed.min_ts = min_ts;
            flushed.max_ts = max_ts;
            if flushed.samples > 0 {
                tx.prepare_cached(INSERT_LOG)?.execute(params![
                    min_ts,
                    max_ts,
                    flushed.samples as i64,
                    headlog::encode(groups.into_iter()),
                ])?;
            }
            // Events, alerts, alert states and actions go to tables created when first
            // written (`schema::Lazy`), in this transaction: a rolled-back flush leaves none.
            if !buffers.events.is_empty() {
                schema::create_lazy(&tx, Lazy::Events)?;
                let mut insert = tx.prepare_cached(INSERT_EVENT)?;
                for event in &buffers.events {
                    insert.execute(params![
                        event.daemon.as_str(),
                        event.pid,
                        event.ts_ms,
                        event.kind.as_str(),
                        event.detail,
                    ])?;
                }
            }
            flushed.events = buffers.events.len() as u64;
            if !buffers.alerts.is_empty() {
                schema::create_lazy(&tx, Lazy::Alerts)?;
                let mut insert = tx.prepare_cached(INSERT_ALERT)?;
                for (alert, json) in &buffers.alerts {
                    insert.execute(params![
                        alert.at_ms,
                        alert.rule,
                        alert_state_text(alert.state),
                        alert.severity.to_string(),
                        alert.daemon.as_ref().map(|d| d.as_str()),
                        json,
                    ])?;
                }
            }
            flushed.alerts = buffers.alerts.len() as u64;
            if !buffers.alert_states.is_empty() {
                schema::create_lazy(&tx, Lazy::AlertState)?;
                let mut upsert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO alert_state (key, json, updated_ms) VALUES (?1, ?2, ?3)",
                )?;
                let mut delete = tx.prepare_cached("DELETE FROM alert_state WHERE key = ?1")?;
                for (key, json, ts) in &buffers.alert_states {
                    match json {
                        Some(json) => upsert.execute(params![key, json, ts])?,
                        None => delete.execute([key])?,
                    };
                }
            }
            if !buffers.actions.is_empty() {
                schema::create_lazy(&tx, Lazy::Actions)?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO actions (ts_ms, daemon, rule, action, outcome, detail) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for a in &buffers.actions {
                    insert.execute(params![
                        a.ts_ms,
                        a.daemon.as_ref().map(|d| d.as_str()),
                        a.rule,
                        a.action,
                        a.outcome,
                        a.detail
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(flushed)
    }
}

/// The id of a series, from the database (inserting it if new). The caller keeps it in the
/// series' buffer entry.
fn series_id(conn: &Connection, key: &SeriesKey, kind: MetricKind) -> rusqlite::Result<i64> {
    let source = key.source.as_text();
    let labels = key.labels.to_text();
    let metric = key.metric.as_str();
    let found: Option<i64> = conn
        .prepare_cached(SELECT_SERIES)?
        .query_row(params![source, metric, labels], |row| row.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => conn.prepare_cached(INSERT_SERIES)?.insert(params![
            source,
            metric,
            labels,
            kind.code()
        ])?,
    };
    Ok(id)
}

/// Applies a write fault to the writer's connection.
pub(super) fn apply_fault(conn: &Connection, fault: StorageFault) -> rusqlite::Result<()> {
    match fault {
        StorageFault::DiskFull => {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        }
        StorageFault::ReadOnly => conn.pragma_update(None, "query_only", true)?,
        StorageFault::Slow(_) => {}
        StorageFault::Clear => {
            conn.pragma_update(None, "query_only", false)?;
            // SQLite's default maximum (4294967294 pages).
            conn.query_row("PRAGMA max_page_count = 4294967294", [], |_| Ok(()))?;
        }
    }
    Ok(())
}
