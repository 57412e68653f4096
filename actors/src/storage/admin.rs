//! Maintenance entry points for operators and the CLI: compact now, vacuum, integrity
//! check, and export of a series range as CSV or JSON.
//!
//! They open their own connections, so they work on a file no perfvisor is running on. On a
//! file a running perfvisor writes to, use [`super::StorageHandle::compact_now`] for
//! compaction; `vacuum` then waits for the writer's lock (SQLite's busy timeout, 5 s) and
//! blocks its writes while it runs; the integrity check and exports only read.

use std::io::Write;
use std::path::Path;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::maintenance::{self, MaintenanceSettings};
use super::query::{Query, SeriesSelector};
use super::sketch::DdSketch;
use super::{codec, headlog, schema, StorageConfig, StorageError, StorageReader, StorageStats};
use crate::types::TimestampMs;

/// Compacts every head row of the file at `config.path` (closed window or not), builds the
/// rollups that completes and applies retention, with `config`'s retention and clock.
/// Returns what was done.
pub fn compact(config: &StorageConfig) -> Result<CompactReport, StorageError> {
    config.validate()?;
    let conn = schema::open_writer(&config.path)?;
    let stats = StorageStats::default();
    let settings = MaintenanceSettings::from_config(config);
    maintenance::run_to_completion(&conn, &settings, config.clock.now_ms(), &stats)?;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    Ok(CompactReport {
        compacted_samples: load(&stats.compacted_samples),
        chunks_written: load(&stats.chunks_written),
        rollups_written: load(&stats.rollups_written),
        rows_deleted: load(&stats.retention_deleted),
    })
}

/// What [`compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactReport {
    /// Samples moved from head rows into chunks.
    pub compacted_samples: u64,
    /// Chunks written.
    pub chunks_written: u64,
    /// Rollup rows written or updated.
    pub rollups_written: u64,
    /// Rows deleted by retention or the size cap.
    pub rows_deleted: u64,
}

/// Rewrites the file to its minimal size (SQLite `VACUUM`), switching an older file to
/// incremental auto-vacuum on the way. Needs free disk space about the size of the file.
/// A running writer's maintenance already does this for a file of at most 4 MiB after each
/// closed day; this is for bigger files, or for now.
pub fn vacuum(path: &Path) -> Result<VacuumReport, StorageError> {
    let conn = schema::open_writer(path)?;
    let size = || std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let before = size();
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.execute_batch("VACUUM")?;
    // Fold the WAL back into the file so its size is the real one.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    Ok(VacuumReport {
        bytes_before: before,
        bytes_after: size(),
    })
}

/// File sizes around a [`vacuum`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VacuumReport {
    /// Bytes before.
    pub bytes_before: u64,
    /// Bytes after.
    pub bytes_after: u64,
}

/// What [`integrity_check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityReport {
    /// SQLite's `PRAGMA integrity_check` lines (`["ok"]` when sound).
    pub sqlite: Vec<String>,
    /// Head rows, chunks and rollups decoded.
    pub rows_checked: u64,
    /// Rows whose data does not decode, with the reason.
    pub damaged: Vec<String>,
}

impl IntegrityReport {
    /// True when SQLite and every stored blob are sound.
    pub fn is_ok(&self) -> bool {
        self.sqlite == ["ok"] && self.damaged.is_empty()
    }
}

/// Checks the file read-only: SQLite's own integrity check, then every head row, chunk,
/// rollup sketch and head log row is decoded.
pub fn integrity_check(path: &Path) -> Result<IntegrityReport, StorageError> {
    let conn = schema::open_reader(path)?;
    let mut report = IntegrityReport::default();
    {
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for row in rows {
            report.sqlite.push(row?);
        }
    }
    for (sql, what) in [
        ("SELECT id, data FROM head", "head row"),
        ("SELECT id, data FROM chunks", "chunk"),
    ] {
        check_blobs(&conn, sql, what, &mut report, |b| {
            codec::decode_chunk(b)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
    }
    check_blobs(
        &conn,
        "SELECT series_id * 1000000 + tier, sketch FROM rollups",
        "rollup (series × 1e6 + tier)",
        &mut report,
        |b| DdSketch::decode(b).map(|_| ()).map_err(|e| e.to_string()),
    )?;
    check_blobs(
        &conn,
        "SELECT id, data FROM head_log",
        "head log row",
        &mut report,
        |b| headlog::for_each(b, |_, s| s.for_each(drop)).map_err(|e| e.to_string()),
    )?;
    Ok(report)
}

fn check_blobs(
    conn: &Connection,
    sql: &str,
    what: &str,
    report: &mut IntegrityReport,
    decode: impl Fn(&[u8]) -> Result<(), String>,
) -> Result<(), StorageError> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        report.rows_checked += 1;
        match row.get_ref(1)?.as_blob() {
            Ok(blob) => {
                if let Err(why) = decode(blob) {
                    report.damaged.push(format!("{what} {id}: {why}"));
                }
            }
            Err(e) => report.damaged.push(format!("{what} {id}: {e}")),
        }
    }
    Ok(())
}

/// Output format of [`export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// `source,metric,labels,timestamp_ms,value` rows with a header; NaN as `NaN`.
    Csv,
    /// One JSON object per series per line (`{"source", "metric", "labels", "kind",
    /// "samples": [[ts, value], …]}`); NaN and infinities as `null`.
    JsonLines,
}

/// Writes the raw samples of the selected series in `[from_ms, to_ms)` to `out`; returns
/// the number of samples written.
pub fn export(
    reader: &StorageReader,
    selector: &SeriesSelector,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, StorageError> {
    let results = reader.query(&Query::new(selector.clone(), from_ms, to_ms))?;
    let io = StorageError::Export;
    let mut written = 0u64;
    if format == ExportFormat::Csv {
        writeln!(out, "source,metric,labels,timestamp_ms,value").map_err(io)?;
    }
    for series in results {
        let source = series.key.source.as_text();
        let metric = series.key.metric.as_str();
        match format {
            ExportFormat::Csv => {
                let prefix = format!(
                    "{},{},{}",
                    csv_field(&source),
                    csv_field(metric),
                    csv_field(&series.key.labels.to_text())
                );
                for (ts, value) in &series.samples {
                    writeln!(out, "{prefix},{ts},{value}").map_err(io)?;
                }
            }
            ExportFormat::JsonLines => {
                let labels: serde_json::Map<String, serde_json::Value> = series
                    .key
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
                    .collect();
                let samples: Vec<(i64, Option<f64>)> = series
                    .samples
                    .iter()
                    .map(|&(ts, v)| (ts, v.is_finite().then_some(v)))
                    .collect();
                let line = serde_json::json!({
                    "source": source,
                    "metric": metric,
                    "labels": labels,
                    "kind": series.kind,
                    "samples": samples,
                });
                writeln!(out, "{line}").map_err(io)?;
            }
        }
        written += series.samples.len() as u64;
    }
    out.flush().map_err(io)?;
    Ok(written)
}

/// Quotes a CSV field when it holds a comma, quote or line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
