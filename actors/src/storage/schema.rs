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

/// One step of the schema history.
struct Migration {
    /// The version the file has after this step.
    version: i64,
    /// The statements of the step.
    sql: &'static str,
}

/// Every step, oldest first; `MIGRATIONS[i].version == i + 1`.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: SCHEMA_V1,
}];

/// Version 1: one row per sample, plus events and alerts.
///
/// `samples` is a rowid table with an index on `(series_id, ts_ms)` rather than a
/// `WITHOUT ROWID` table keyed by `(series_id, ts_ms)`: several observations of one series
/// may share a millisecond (two requests timed by a host in the same ms), and a primary key
/// would force dropping or overwriting one of them. Appends go to the end of the rowid tree,
/// and the index entry carries the rowid, so `ORDER BY ts_ms, rowid` is read in index order.
/// `value` may be NULL because SQLite stores NaN as NULL; readers turn it back into NaN.
const SCHEMA_V1: &str = "
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
CREATE TABLE events (
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
";

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
    migrate(&mut conn, path, from)?;
    conn.set_prepared_statement_cache_capacity(32);
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

/// Reads the file's identity without writing to it.
pub(super) fn identify(conn: &Connection, path: &Path) -> Result<Identity, StorageError> {
    let not_ours = || StorageError::NotPerfvisor {
        path: path.to_path_buf(),
    };
    let read_error = |source: rusqlite::Error| {
        if source.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
            not_ours()
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
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::storage::tests::temp_db;

    /// Migration versions are consecutive from 1, so `SCHEMA_VERSION` is the newest one.
    #[test]
    fn migrations_are_consecutive() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        assert_eq!(SCHEMA_VERSION, MIGRATIONS.last().map_or(0, |m| m.version));
    }

    /// A new file gets the schema, our application_id, WAL, synchronous=NORMAL and mode 0600.
    #[test]
    fn new_file_is_initialised() {
        let (_dir, path) = temp_db();
        let conn = open_writer(&path).unwrap();
        assert_eq!(
            identify(&conn, &path).unwrap(),
            Identity::Perfvisor {
                version: SCHEMA_VERSION
            }
        );
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        for table in ["series", "samples", "events", "alerts"] {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{table}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            conn.execute(
                "INSERT INTO series (source, metric, labels, kind) VALUES ('host', 'm', '', 0)",
                [],
            )
            .unwrap();
            let mut wal = path.clone().into_os_string();
            wal.push("-wal");
            for file in [path.clone(), PathBuf::from(wal)] {
                let mode = std::fs::metadata(&file).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", file.display());
            }
        }
    }

    /// Reopening a current database changes nothing and keeps its rows.
    #[test]
    fn reopening_keeps_data() {
        let (_dir, path) = temp_db();
        let conn = open_writer(&path).unwrap();
        conn.execute(
            "INSERT INTO series (source, metric, labels, kind) VALUES ('host', 'm', '', 0)",
            [],
        )
        .unwrap();
        drop(conn);
        let conn = open_writer(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM series", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    /// An empty SQLite database is adopted, but one holding another application's tables is not.
    #[test]
    fn foreign_sqlite_database_is_refused() {
        let (_dir, path) = temp_db();
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE theirs (x); INSERT INTO theirs VALUES (1);")
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = open_writer(&path).unwrap_err();
        assert!(matches!(err, StorageError::NotPerfvisor { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);

        let (_dir2, other) = temp_db();
        Connection::open(&other)
            .unwrap()
            .pragma_update(None, "application_id", 42)
            .unwrap();
        let err = open_writer(&other).unwrap_err();
        assert!(matches!(err, StorageError::NotPerfvisor { .. }), "{err}");
    }

    /// A reader refuses an empty file instead of reporting an empty history.
    #[test]
    fn reader_refuses_empty_file() {
        let (_dir, path) = temp_db();
        std::fs::write(&path, b"").unwrap();
        let err = open_reader(&path).unwrap_err();
        assert!(matches!(err, StorageError::NotPerfvisor { .. }), "{err}");
    }
}
