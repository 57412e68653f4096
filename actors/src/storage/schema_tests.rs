//! Tests of `schema.rs`, kept beside it so the module reads on its own.
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
    let vacuum: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .unwrap();
    assert_eq!(vacuum, 2, "INCREMENTAL");
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    assert_eq!(page_size, PAGE_SIZE);
    for table in [
        "series",
        "head",
        "chunks",
        "rollups",
        "maintenance",
        "schema_migrations",
        "head_log",
    ] {
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

/// Builds a file as a perfvisor of schema `version` (1 to 7) left it: the statements
/// that version ran, not today's.
fn historic_file(path: &Path, version: usize) -> Connection {
    let historic = [
        SCHEMA_V1_FOR_TESTS,
        SCHEMA_V2,
        SCHEMA_V3_FOR_TESTS,
        SCHEMA_V4,
        SCHEMA_V5_FOR_TESTS,
        SCHEMA_V6,
        SCHEMA_V7,
    ];
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "page_size", PAGE_SIZE).unwrap();
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    for (sql, step) in historic.iter().zip(MIGRATIONS).take(version) {
        conn.execute_batch(sql).unwrap();
        if let Some(convert) = step.convert {
            convert(&conn).unwrap();
        }
    }
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    conn.pragma_update(None, "user_version", version as i64)
        .unwrap();
    conn
}

/// `(type, name, sql)` of every schema object, by name.
fn schema_of(conn: &Connection) -> Vec<(String, String, String)> {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

fn tables(conn: &Connection) -> Vec<String> {
    schema_of(conn)
        .into_iter()
        .filter(|o| o.0 == "table")
        .map(|o| o.1)
        .collect()
}

/// Version 6 drops the two indexes no query uses from a version 5 file.
#[test]
fn unused_indexes_are_dropped() {
    let (_dir, path) = temp_db();
    let conn = historic_file(&path, 5);
    let names = |conn: &Connection| -> Vec<String> {
        schema_of(conn)
            .into_iter()
            .filter(|o| o.0 == "index")
            .map(|o| o.1)
            .collect()
    };
    let old = names(&conn);
    for gone in ["alerts_by_rule_time", "actions_by_daemon_time"] {
        assert!(old.iter().any(|n| n == gone), "{gone} not in {old:?}");
    }
    drop(conn);
    let conn = open_writer(&path).unwrap();
    let now = names(&conn);
    for gone in ["alerts_by_rule_time", "actions_by_daemon_time"] {
        assert!(!now.iter().any(|n| n == gone), "{gone} in {now:?}");
    }
    for kept in [
        "alerts_by_daemon_time",
        "actions_by_time",
        "events_by_daemon_time",
    ] {
        assert!(now.iter().any(|n| n == kept), "{kept} missing from {now:?}");
    }
}

/// Version 7: a fresh file has none of the lazy tables, and its fixed cost is 15 pages
/// (25 before); a lazy table created later is the very table (and indexes) an old file
/// migrated to this version has, so both kinds of file are one schema.
#[test]
fn lazy_tables_are_created_when_first_written() {
    let (_dir, path) = temp_db();
    let conn = open_writer(&path).unwrap();
    let fresh = tables(&conn);
    for table in Lazy::ALL {
        assert!(!has_table(&conn, table).unwrap(), "{table:?}");
        assert!(!fresh.iter().any(|t| t == table.name()), "{fresh:?}");
    }
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    let free: i64 = conn
        .pragma_query_value(None, "freelist_count", |r| r.get(0))
        .unwrap();
    assert_eq!(
        (pages, free),
        (15, 0),
        "page 1, the pointer map and 13 b-trees"
    );
    for table in Lazy::ALL {
        create_lazy(&conn, table).unwrap();
        assert!(has_table(&conn, table).unwrap(), "{table:?}");
        // A second time changes nothing.
        create_lazy(&conn, table).unwrap();
    }
    let (_dir6, old) = temp_db();
    drop(historic_file(&old, 6));
    let migrated = open_writer(&old).unwrap();
    assert_eq!(schema_of(&migrated), schema_of(&conn));
}

/// A file of every older version migrates to this one and keeps the lazy tables it had,
/// rows included; the ones its version never created are left to their first write.
#[test]
fn old_files_keep_their_tables() {
    for version in 1..=6usize {
        let (_dir, path) = temp_db();
        let conn = historic_file(&path, version);
        conn.execute(
            "INSERT INTO events (daemon, pid, ts_ms, kind, detail) VALUES ('d', 1, 5, 'started', '')",
            [],
        )
        .unwrap();
        let mut had = vec![Lazy::Events, Lazy::Alerts];
        if version >= 3 {
            conn.execute(
                "INSERT INTO alert_state (key, json, updated_ms) VALUES ('k', '{}', 1)",
                [],
            )
            .unwrap();
            had.extend([Lazy::AlertState, Lazy::Actions]);
        }
        if version >= 5 {
            had.push(Lazy::RemoteWriteCursor);
        }
        drop(conn);
        let conn = open_writer(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION, "from version {version}");
        for table in Lazy::ALL {
            assert_eq!(
                has_table(&conn, table).unwrap(),
                had.contains(&table),
                "{table:?} from version {version}"
            );
        }
        let events: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 1, "from version {version}");
        if version >= 3 {
            let states: i64 = conn
                .query_row("SELECT count(*) FROM alert_state", [], |r| r.get(0))
                .unwrap();
            assert_eq!(states, 1, "from version {version}");
        }
    }
}

/// Version 8: head rows written before it (fold 0) are still found per series, listed for
/// compaction, and the two per-series indexes are gone.
#[test]
fn head_rows_of_version_7_are_found_after_version_8() {
    let (_dir, path) = temp_db();
    let conn = historic_file(&path, 7);
    let hour = crate::storage::HOUR_MS;
    {
        let mut insert = conn.prepare(crate::storage::head::INSERT_HEAD_V2).unwrap();
        for (series, window) in [(1i64, 0i64), (2, 0), (1, hour)] {
            let samples = [(window + 5, series as f64), (window + 6, 0.5)];
            let (min_ts, max_ts, count, blob) = crate::storage::head::row_of(&samples);
            insert
                .execute(rusqlite::params![
                    series, window, min_ts, max_ts, count, blob
                ])
                .unwrap();
        }
    }
    drop(conn);
    let conn = open_writer(&path).unwrap();
    let indexes: Vec<String> = schema_of(&conn)
        .into_iter()
        .filter(|o| o.0 == "index" && o.1.starts_with("head"))
        .map(|o| o.1)
        .collect();
    assert_eq!(indexes, vec!["head_by_fold".to_string()]);
    let rows = |series: i64| -> Vec<(i64, i64)> {
        conn.prepare(crate::storage::head::series_head_rows!(
            "h.window_ms, h.count",
            ""
        ))
        .unwrap()
        .query_map(rusqlite::params![series, i64::MIN, i64::MAX], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert_eq!(rows(1), vec![(0, 2), (hour, 2)]);
    assert_eq!(rows(2), vec![(0, 2)]);
    assert_eq!(
        crate::storage::head::closed_series(&conn, i64::MAX, 16).unwrap(),
        Some((0, vec![1, 2]))
    );
}

/// A reader refuses an empty file instead of reporting an empty history.
#[test]
fn reader_refuses_empty_file() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, b"").unwrap();
    let err = open_reader(&path).unwrap_err();
    assert!(matches!(err, StorageError::NotPerfvisor { .. }), "{err}");
}
