//! The storage file's identity, pragmas and schema migrations.
//!
//! A perfvisor database is recognised by `PRAGMA application_id` ([`APPLICATION_ID`]) and
//! versioned by `PRAGMA user_version`. Opening checks the identity before anything writes to
//! the file, so a file that belongs to someone else (or is not SQLite at all), or comes from a
//! newer perfvisor, is refused and left byte-identical. Migrations are a list: step `n`
//! brings a file from version `n - 1` to `n`, each in its own transaction.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::StorageError;

/// `PRAGMA application_id` of every perfvisor database: the ASCII bytes `PFVS`.
pub(crate) const APPLICATION_ID: i32 = 0x5046_5653;

/// The schema version this build writes and reads (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection retries when the file is locked. In WAL mode only schema changes,
/// checkpoints and WAL resets take locks that others wait for, so this is rarely used.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page size of a new file (`PRAGMA page_size`, set before anything is written; existing
/// files keep theirs, and `vacuum` keeps a file's page size too). SQLite's default, set
/// explicitly because it is a measured trade-off. Every table and index takes at least a
/// page, so a smaller page shrinks a fresh file (100 KiB at 4 KiB, 54 KiB at 2 KiB): with
/// 2 KiB the history bench's NAB file (46,274 samples at 5-minute spacing) is 4.20 B/sample
/// instead of 4.87 and the dense set 1.12 instead of 1.11, but the writer's sustained
/// ingest (`PERFVISOR_BENCH_ONLY=ingest`, 100 series, 1 h) fell from ~2.1 M to ~1.55 M
/// samples/s (ratio to the bare loop 0.91–1.06 → 0.73–0.79; twice each, same load): more
/// pages and WAL frames per flush. 1 KiB is worse for NAB too (4.85): a day-long chunk of
/// ~500 B then fills a page alone.
pub(crate) const PAGE_SIZE: i64 = 4096;

/// The writer connection's page cache, in KiB (`PRAGMA cache_size`; SQLite's default is
/// 2,000 KiB). The writer appends: its flushes and folds touch the right edge of a few
/// b-trees, and compaction reads each head row once, so a larger cache is resident memory
/// that saves only reads the OS page cache answers.
const WRITER_CACHE_KIB: i64 = 512;

/// One step of the schema history.
struct Migration {
    /// The version the file has after this step.
    version: i64,
    /// The statements of the step.
    sql: &'static str,
    /// Data conversion run after `sql`, in the same transaction.
    convert: Option<fn(&Connection) -> rusqlite::Result<()>>,
}

/// Every step, oldest first; `MIGRATIONS[i].version == i + 1`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: SCHEMA_V1,
        convert: None,
    },
    Migration {
        version: 2,
        sql: SCHEMA_V2,
        convert: Some(samples_to_head),
    },
    Migration {
        version: 3,
        sql: SCHEMA_V3,
        convert: None,
    },
    Migration {
        version: 4,
        sql: SCHEMA_V4,
        convert: None,
    },
    Migration {
        version: 5,
        sql: SCHEMA_V5,
        convert: None,
    },
    Migration {
        version: 6,
        sql: SCHEMA_V6,
        convert: None,
    },
    Migration {
        version: 7,
        sql: SCHEMA_V7,
        convert: None,
    },
    Migration {
        version: 8,
        sql: SCHEMA_V8,
        convert: None,
    },
];

/// Version 1's sample tables: the statements [`SCHEMA_V1`] runs, and the start of what
/// version 1 ran (`SCHEMA_V1_FOR_TESTS`, which adds the tables created lazily since).
macro_rules! schema_v1_samples {
    () => {
        "
CREATE TABLE series (
    id     INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    metric TEXT NOT NULL,
    labels TEXT NOT NULL,
    kind   INTEGER NOT NULL,
    UNIQUE (source, metric, labels)
);
CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    ts_ms     INTEGER NOT NULL,
    value     REAL
);
CREATE INDEX samples_by_series_time ON samples (series_id, ts_ms);
"
    };
}

/// Version 1: one row per sample. Version 1 also created `events` and `alerts` (with the
/// indexes [`Lazy::Events`] and [`Lazy::Alerts`] create, and `alerts_by_rule_time`); since
/// version 7 they are created when first written, and files made before keep them.
///
/// `value` may be NULL because SQLite stores NaN as NULL.
const SCHEMA_V1: &str = schema_v1_samples!();

/// Version 1's statements as a perfvisor of that version ran them (with `events` and
/// `alerts`), for tests that build an old database.
#[cfg(test)]
pub(crate) const SCHEMA_V1_FOR_TESTS: &str = concat!(
    schema_v1_samples!(),
    "CREATE TABLE events (
    id     INTEGER PRIMARY KEY,
    daemon TEXT NOT NULL,
    pid    INTEGER NOT NULL,
    ts_ms  INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (ts_ms);
CREATE INDEX events_by_daemon_time ON events (daemon, ts_ms);
CREATE TABLE alerts (
    id       INTEGER PRIMARY KEY,
    ts_ms    INTEGER NOT NULL,
    rule     TEXT NOT NULL,
    state    TEXT NOT NULL,
    severity TEXT NOT NULL,
    daemon   TEXT,
    json     TEXT NOT NULL
);
CREATE INDEX alerts_by_time ON alerts (ts_ms);
CREATE INDEX alerts_by_rule_time ON alerts (rule, ts_ms);
CREATE INDEX alerts_by_daemon_time ON alerts (daemon, ts_ms);
"
);

/// Version 2: head rows, compressed chunks and rollup tiers replace one row per sample.
///
/// - `head`: what the writer flushed (at least every second) and the compactor has not yet
///   compacted. One row per series per flush per hour window, its samples in a blob
///   (`codec::encode_raw` then; `codec::encode_packed` since the packed format). `window_ms` is the start of the hour the samples fall in.
/// - `chunks`: closed hour windows of one series, compressed (`codec::encode_chunk`).
///   `start_ms`/`end_ms` are the first and last sample's timestamps (both inclusive); a
///   window normally has one chunk, more when samples arrived after it was compacted or it
///   held more samples than one chunk takes.
/// - `rollups`: one row per tier (1 = hourly, 2 = daily), series and bucket start. `m2` is
///   the sum of squared deviations from the bucket's mean (Σx² = m2 + sum²/count), kept
///   instead of Σx² because Σx² cancels catastrophically for large values with small
///   spread (memory in bytes). `sketch` is a DDSketch (`sketch::DdSketch::encode`).
/// - `maintenance`: named progress marks of the compactor (e.g. up to where daily rollups
///   are built).
/// - `schema_migrations`: one row per migration step applied to the file, with when and by
///   which perfvisor version (`PRAGMA user_version` remains the authority).
const SCHEMA_V2: &str = "
CREATE TABLE head (
    id        INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    window_ms INTEGER NOT NULL,
    min_ts    INTEGER NOT NULL,
    max_ts    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    data      BLOB NOT NULL
);
CREATE INDEX head_by_window ON head (window_ms, series_id);
CREATE INDEX head_by_series ON head (series_id, window_ms);
CREATE TABLE chunks (
    id        INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    start_ms  INTEGER NOT NULL,
    end_ms    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    data      BLOB NOT NULL
);
CREATE INDEX chunks_by_series_time ON chunks (series_id, start_ms);
CREATE INDEX chunks_by_end ON chunks (end_ms);
CREATE TABLE rollups (
    tier      INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    nan_count INTEGER NOT NULL,
    sum       REAL NOT NULL,
    min       REAL,
    max       REAL,
    m2        REAL NOT NULL,
    first_ts  INTEGER,
    first     REAL,
    last_ts   INTEGER,
    last      REAL,
    increase  REAL NOT NULL,
    sketch    BLOB NOT NULL,
    PRIMARY KEY (tier, series_id, bucket_ms)
) WITHOUT ROWID;
CREATE INDEX rollups_by_age ON rollups (tier, bucket_ms);
CREATE TABLE maintenance (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_ms INTEGER,
    applied_by TEXT NOT NULL
);
INSERT INTO schema_migrations (version, applied_ms, applied_by)
    VALUES (1, NULL, 'a perfvisor before migrations were recorded');
";

/// Version 3: alert state that survives a restart (`alert_state`), and the history of
/// actions (`actions`). Since version 7 both are created when first written
/// ([`Lazy::AlertState`], [`Lazy::Actions`]); files migrated before keep them (with the
/// `actions_by_daemon_time` index, which version 6 drops).
const SCHEMA_V3: &str = "";

/// Version 3's statements as a perfvisor of versions 3 to 6 ran them, for tests that build
/// an old database.
#[cfg(test)]
const SCHEMA_V3_FOR_TESTS: &str = "
CREATE TABLE alert_state (
    key        TEXT PRIMARY KEY,
    json       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE actions (
    id      INTEGER PRIMARY KEY,
    ts_ms   INTEGER NOT NULL,
    daemon  TEXT,
    rule    TEXT NOT NULL,
    action  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX actions_by_time ON actions (ts_ms);
CREATE INDEX actions_by_daemon_time ON actions (daemon, ts_ms);
";

/// Version 4: the head log (`headlog`). Each flush appends one row with every series' new
/// samples (`min_ts`/`max_ts`/`count` over all of them); the writer folds the rows into
/// head rows every half minute. Small (tens of rows), so it has no index.
const SCHEMA_V4: &str = "
CREATE TABLE head_log (
    id     INTEGER PRIMARY KEY,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    data   BLOB NOT NULL
);
";

/// Version 5: remote-write cursors (`remote_write_cursor`). Since version 7 the table is
/// created when first written ([`Lazy::RemoteWriteCursor`]); files migrated before keep it.
const SCHEMA_V5: &str = "";

/// Version 5's statement as a perfvisor of versions 5 and 6 ran it, for tests that build an
/// old database.
#[cfg(test)]
const SCHEMA_V5_FOR_TESTS: &str = "
CREATE TABLE remote_write_cursor (
    name       TEXT PRIMARY KEY,
    ts_ms      INTEGER NOT NULL,
    series_id  INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 6: drops two indexes no query can use, each a b-tree of at least one page in
/// every file. `alerts_by_rule_time`: nothing selects alerts by rule. `actions_by_daemon_time`:
/// the actions query filters `(?3 IS NULL OR daemon = ?3)`, which SQLite cannot answer from
/// an index on the daemon, so it reads `actions_by_time`.
const SCHEMA_V6: &str = "
DROP INDEX IF EXISTS alerts_by_rule_time;
DROP INDEX IF EXISTS actions_by_daemon_time;
";

/// Version 7: the tables many files never write ([`Lazy`]: events, alerts, alert state,
/// actions, remote-write cursors) are created by the transaction that writes their first
/// row, and a reader takes a missing one as empty. A fresh file holds 10 fewer b-trees (10
/// pages of 4 KiB). Nothing is converted: a file that has the tables keeps them. The
/// version marks that the file may lack them, so a perfvisor before this one refuses it
/// (`TooNew`) instead of failing on the first event it writes.
const SCHEMA_V7: &str = "";

/// Version 8: head rows are indexed in the order folds write them (see `head`). Each row
/// gets the number of the fold that wrote it (rows written before are fold 0), the two
/// indexes that put each fold's rows beside every series' earlier ones are replaced by
/// `head_by_fold`, and `head_folds` lists each window's folds, by which a series' rows are
/// found.
const SCHEMA_V8: &str = "
ALTER TABLE head ADD COLUMN fold INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS head_by_window;
DROP INDEX IF EXISTS head_by_series;
CREATE INDEX head_by_fold ON head (window_ms, fold, series_id);
CREATE TABLE head_folds (
    window_ms INTEGER NOT NULL,
    fold      INTEGER NOT NULL,
    PRIMARY KEY (window_ms, fold)
) WITHOUT ROWID;
INSERT INTO head_folds (window_ms, fold) SELECT DISTINCT window_ms, 0 FROM head;
";

/// A table created by the transaction that writes its first row (schema version 7): one
/// that many files never write, so a file without alerts pays no pages for them. Writers
/// call [`create_lazy`] before their first write in a transaction; readers check
/// [`has_table`] and answer empty without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lazy {
    /// Lifecycle events (`events`), written by the storage writer.
    Events,
    /// Alert history (`alerts`), written by the storage writer.
    Alerts,
    /// Alert-engine states and silences (`alert_state`), written by the storage writer.
    AlertState,
    /// Actions taken or refused (`actions`), written by the storage writer.
    Actions,
    /// Remote-write positions (`remote_write_cursor`), written by the shipper's own
    /// connection ([`open_sidecar`]).
    RemoteWriteCursor,
}

impl Lazy {
    /// Every lazy table.
    #[cfg(test)]
    pub(crate) const ALL: [Lazy; 5] = [
        Lazy::Events,
        Lazy::Alerts,
        Lazy::AlertState,
        Lazy::Actions,
        Lazy::RemoteWriteCursor,
    ];

    /// The table's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Lazy::Events => "events",
            Lazy::Alerts => "alerts",
            Lazy::AlertState => "alert_state",
            Lazy::Actions => "actions",
            Lazy::RemoteWriteCursor => "remote_write_cursor",
        }
    }

    /// The table and its indexes as versions 1–6 created them (less the two indexes
    /// version 6 drops), each `IF NOT EXISTS`.
    fn sql(self) -> &'static str {
        match self {
            Lazy::Events => {
                "
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY,
    daemon TEXT NOT NULL,
    pid    INTEGER NOT NULL,
    ts_ms  INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (ts_ms);
CREATE INDEX IF NOT EXISTS events_by_daemon_time ON events (daemon, ts_ms);
"
            }
            Lazy::Alerts => {
                "
CREATE TABLE IF NOT EXISTS alerts (
    id       INTEGER PRIMARY KEY,
    ts_ms    INTEGER NOT NULL,
    rule     TEXT NOT NULL,
    state    TEXT NOT NULL,
    severity TEXT NOT NULL,
    daemon   TEXT,
    json     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (ts_ms);
CREATE INDEX IF NOT EXISTS alerts_by_daemon_time ON alerts (daemon, ts_ms);
"
            }
            // One row per key: the alert engine's own JSON, rewritten when it changes,
            // deleted when it goes back to inactive or expires.
            Lazy::AlertState => {
                "
CREATE TABLE IF NOT EXISTS alert_state (
    key        TEXT PRIMARY KEY,
    json       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
"
            }
            // Every action perfvisor took or refused, with the alert that asked for it.
            Lazy::Actions => {
                "
CREATE TABLE IF NOT EXISTS actions (
    id      INTEGER PRIMARY KEY,
    ts_ms   INTEGER NOT NULL,
    daemon  TEXT,
    rule    TEXT NOT NULL,
    action  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_by_time ON actions (ts_ms);
"
            }
            // One row per `[[remote_write]]` name: everything at or after
            // (`ts_ms`, `series_id`), in that order, is still to be shipped.
            Lazy::RemoteWriteCursor => {
                "
CREATE TABLE IF NOT EXISTS remote_write_cursor (
    name       TEXT PRIMARY KEY,
    ts_ms      INTEGER NOT NULL,
    series_id  INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
"
            }
        }
    }
}

/// Whether the file has `table` (a reader takes a missing lazy table as empty). Tables are
/// never dropped, so once true it stays true.
pub(crate) fn has_table(conn: &Connection, table: Lazy) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([table.name()])
}

/// Creates `table` and its indexes unless the file has them. Call it in the transaction
/// that writes the table's first row, so a rolled-back write leaves no empty table.
pub(crate) fn create_lazy(conn: &Connection, table: Lazy) -> rusqlite::Result<()> {
    if !has_table(conn, table)? {
        conn.execute_batch(table.sql())?;
    }
    Ok(())
}

/// Moves version 1's sample rows into head rows (one per series and hour window), so the
/// compactor turns them into chunks and rollups like any other fresh data, then drops the
/// old table.
fn samples_to_head(conn: &Connection) -> rusqlite::Result<()> {
    let mut select = conn
        .prepare("SELECT series_id, ts_ms, value FROM samples ORDER BY series_id, ts_ms, rowid")?;
    let mut insert = conn.prepare(super::head::INSERT_HEAD_V2)?;
    let mut rows = select.query([])?;
    let mut current: Option<(i64, i64)> = None;
    let mut pending: Vec<(i64, f64)> = Vec::new();
    let mut write = |key: (i64, i64), samples: &mut Vec<(i64, f64)>| -> rusqlite::Result<()> {
        let (min_ts, max_ts, count, blob) = super::head::row_of(samples);
        insert.execute(rusqlite::params![key.0, key.1, min_ts, max_ts, count, blob])?;
        samples.clear();
        Ok(())
    };
    while let Some(row) = rows.next()? {
        let series: i64 = row.get(0)?;
        let ts: i64 = row.get(1)?;
        let value = row.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN);
        let key = (series, super::writer::window_of(ts));
        if current.is_some_and(|c| c != key) || pending.len() >= MIGRATION_ROW_SAMPLES {
            if let Some(c) = current {
                write(c, &mut pending)?;
            }
        }
        current = Some(key);
        pending.push((ts, value));
    }
    if let Some(c) = current {
        write(c, &mut pending)?;
    }
    drop(rows);
    conn.execute_batch("DROP TABLE samples;")
}

/// Most samples per head row written by the version 2 migration.
const MIGRATION_ROW_SAMPLES: usize = 4096;

/// What an opened file turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Identity {
    /// An empty file or an empty SQLite database: free to become ours.
    Empty,
    /// A perfvisor database at this schema version (never above [`SCHEMA_VERSION`]).
    Perfvisor {
        /// Its `user_version`.
        version: i64,
    },
}

/// Opens (creating if needed) the writer's read-write connection: checks the identity,
/// switches to WAL, and migrates to [`SCHEMA_VERSION`].
pub(super) fn open_writer(path: &Path) -> Result<Connection, StorageError> {
    create_private_file(path)?;
    let open_error = |source| StorageError::Open {
        path: path.to_path_buf(),
        source,
    };
    // No SQLITE_OPEN_CREATE: the file was created above with private permissions, and
    // SQLite gives its -wal and -shm files the same mode.
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    // Nothing above wrote to the file; the identity check must come before anything that does.
    let from = match identify(&conn, path)? {
        Identity::Empty => 0,
        Identity::Perfvisor { version } => version,
    };
    if from == 0 {
        // Only possible before anything is written, WAL mode included: lets maintenance
        // hand free pages back to the file system in bounded steps (`incremental_vacuum`).
        // Page size first: once auto_vacuum is set, SQLite keeps its default page size.
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(open_error)?;
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(open_error)?;
    } else {
        check_not_corrupt(&conn, path)?;
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .map_err(open_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            path = %path.display(),
            journal_mode = %mode,
            "WAL unavailable; readers will wait for the writer."
        );
    }
    // NORMAL is durable against application crashes in WAL mode; a power loss may lose the
    // last commits, never corrupt the file.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_error)?;
    // The writer wraps each command in a savepoint; its statement journal is a temp file
    // unless temp storage is in memory, and writing it was a third of the insert cost.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(open_error)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(open_error)?;
    migrate(&mut conn, path, from)?;
    if from == 0 {
        // Version 2 drops version 1's sample table; in a new file its pages are free at
        // once and would stay so (maintenance hands pages back only past a threshold).
        conn.execute_batch("PRAGMA incremental_vacuum")
            .map_err(open_error)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens a read-only connection to an existing perfvisor database at [`SCHEMA_VERSION`].
pub(super) fn open_reader(path: &Path) -> Result<Connection, StorageError> {
    let open_error = |source| StorageError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    match identify(&conn, path)? {
        Identity::Empty => Err(StorageError::NotPerfvisor {
            path: path.to_path_buf(),
        }),
        Identity::Perfvisor { version } if version < SCHEMA_VERSION => Err(StorageError::TooOld {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        }),
        Identity::Perfvisor { .. } => Ok(conn),
    }
}

/// Opens a read-write connection to an existing perfvisor database at [`SCHEMA_VERSION`]
/// for a table owned by someone other than the storage writer (the remote-write cursors).
/// Never creates or migrates: the writer has done that before anyone else opens the file.
pub(super) fn open_sidecar(path: &Path) -> Result<Connection, StorageError> {
    let open_error = |source| StorageError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    match identify(&conn, path)? {
        Identity::Perfvisor { version } if version == SCHEMA_VERSION => {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(open_error)?;
            Ok(conn)
        }
        Identity::Perfvisor { version } => Err(StorageError::TooOld {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        }),
        Identity::Empty => Err(StorageError::NotPerfvisor {
            path: path.to_path_buf(),
        }),
    }
}

/// Runs SQLite's `quick_check` (structure of every page, no index cross-check) and refuses
/// a damaged file before anything writes to it.
fn check_not_corrupt(conn: &Connection, path: &Path) -> Result<(), StorageError> {
    let corrupt = |what: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let first: String = conn
        .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
        .map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                corrupt(format!("{e}; restore it from a backup or move it aside"))
            }
            _ => StorageError::Open {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
    if first == "ok" {
        Ok(())
    } else {
        Err(corrupt(format!(
            "quick_check reports: {first}; restore it from a backup or move it aside \
             (it was left untouched)"
        )))
    }
}

/// Reads the file's identity without writing to it.
pub(super) fn identify(conn: &Connection, path: &Path) -> Result<Identity, StorageError> {
    let not_ours = || StorageError::NotPerfvisor {
        path: path.to_path_buf(),
    };
    let read_error = |source: rusqlite::Error| {
        if source.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
            not_ours()
        } else if source.sqlite_error_code() == Some(ErrorCode::DatabaseCorrupt) {
            StorageError::Corrupt {
                path: path.to_path_buf(),
                what: format!("{source}; restore it from a backup or move it aside"),
            }
        } else {
            StorageError::Open {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let application_id: i64 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(read_error)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(read_error)?;
    if application_id == i64::from(APPLICATION_ID) {
        if version > SCHEMA_VERSION {
            return Err(StorageError::TooNew {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        return Ok(Identity::Perfvisor { version });
    }
    if application_id == 0 && version == 0 {
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(read_error)?;
        if objects == 0 {
            return Ok(Identity::Empty);
        }
    }
    Err(not_ours())
}

/// Applies every migration above `from`, one transaction each.
fn migrate(conn: &mut Connection, path: &Path, from: i64) -> Result<(), StorageError> {
    for step in MIGRATIONS.iter().filter(|m| m.version > from) {
        let failed = |source| StorageError::Migrate {
            path: path.to_path_buf(),
            version: step.version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        // Another process may have migrated the file while we waited for the write lock.
        let current: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(failed)?;
        if current >= step.version {
            continue;
        }
        tx.execute_batch(step.sql).map_err(failed)?;
        if let Some(convert) = step.convert {
            convert(&tx).map_err(failed)?;
        }
        if step.version >= 2 {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            tx.execute(
                "INSERT OR REPLACE INTO schema_migrations (version, applied_ms, applied_by) \
                 VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    step.version,
                    now_ms,
                    concat!("perfvisor ", env!("CARGO_PKG_VERSION"))
                ],
            )
            .map_err(failed)?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(failed)?;
        tx.pragma_update(None, "user_version", step.version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(
            path = %path.display(),
            version = step.version,
            "Storage schema migrated."
        );
    }
    Ok(())
}

/// Creates the file readable and writable by its owner only, unless it already exists.
fn create_private_file(path: &Path) -> Result<(), StorageError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StorageError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
