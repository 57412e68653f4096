//! `StorageError`: every way opening, writing to or reading from storage can fail.
//!
//! Messages name the file or value at fault and say what would have been accepted.

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{APPLICATION_ID, SCHEMA_VERSION};

/// An error of the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A setting of [`super::StorageConfig`] is out of range.
    #[error("invalid storage setting {setting} = {value}: it must be at least 1")]
    InvalidConfig {
        /// The setting's field name.
        setting: &'static str,
        /// The value given.
        value: usize,
    },

    /// A duration setting is out of range.
    #[error("invalid storage setting {setting} = {value:?}: it must be {accepted}")]
    InvalidDuration {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: Duration,
        /// What would be accepted.
        accepted: &'static str,
    },

    /// A size setting is out of range.
    #[error("invalid storage setting {setting} = {value}: it must be {accepted}")]
    InvalidSize {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// What would be accepted.
        accepted: &'static str,
    },

    /// A query asked for something that cannot be answered.
    #[error("invalid query: {field} = {value}: {accepted}")]
    InvalidQuery {
        /// The query field at fault.
        field: &'static str,
        /// The value given, as text.
        value: String,
        /// What would be accepted.
        accepted: &'static str,
    },

    /// A stored chunk or rollup could not be decoded (the file is damaged).
    #[error("damaged data in {}: {what}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which row and why.
        what: String,
    },

    /// Writing an export failed.
    #[error("cannot write the export: {0}")]
    Export(#[source] std::io::Error),

    /// The database file did not exist and could not be created.
    #[error("cannot create the storage file {}: {source}", .path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },

    /// SQLite could not open the file or read its header.
    #[error("cannot open the storage database {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },

    /// The file is not a perfvisor database; it was not modified.
    #[error(
        "{} is not a perfvisor database (expected an empty file or a SQLite database with \
         application_id {:#010x}); it was left untouched",
        .path.display(),
        APPLICATION_ID
    )]
    NotPerfvisor {
        /// The file.
        path: PathBuf,
    },

    /// The file was written by a newer perfvisor; it was not modified.
    #[error(
        "{} has storage schema version {found}, but this perfvisor supports versions up to \
         {supported}; upgrade perfvisor or use another file",
        .path.display()
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version (`PRAGMA user_version`).
        found: i64,
        /// The newest version this build supports.
        supported: i64,
    },

    /// A read-only open met a file with an older schema, which only the writer can migrate.
    #[error(
        "{} has storage schema version {found}, but readers need version {supported}; open it \
         once with the storage writer to migrate it",
        .path.display()
    )]
    TooOld {
        /// The file.
        path: PathBuf,
        /// Its schema version (`PRAGMA user_version`).
        found: i64,
        /// The version readers need.
        supported: i64,
    },

    /// Upgrading the schema failed; the failed step was rolled back.
    #[error(
        "cannot migrate {} to storage schema version {version} (newest is {}): {source}",
        .path.display(),
        SCHEMA_VERSION
    )]
    Migrate {
        /// The file.
        path: PathBuf,
        /// The version the failed step leads to.
        version: i64,
        /// What SQLite said.
        source: rusqlite::Error,
    },

    /// A query failed.
    #[error("storage query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// The writer thread could not be started.
    #[error("cannot start the storage writer thread: {0}")]
    Spawn(#[source] std::io::Error),

    /// The writer was shut down; nothing more is accepted.
    #[error("the storage writer is shut down and accepts nothing more")]
    Closed,

    /// The writer did not answer in time.
    #[error("timed out after {waited:?} waiting for the storage writer to {operation}")]
    Timeout {
        /// What was waited for (`"accept the flush"`, `"commit"`, `"shut down"`).
        operation: &'static str,
        /// How long.
        waited: Duration,
    },

    /// Something queued before a flush could not be committed (write error).
    #[error(
        "the storage writer could not commit what was queued before the flush; see its \
         write_errors and dropped_samples counters and the log"
    )]
    FlushFailed,

    /// The writer thread died of a panic outside its guarded handlers (a bug).
    #[error("the storage writer thread panicked outside its command handlers")]
    WriterPanicked,
}
