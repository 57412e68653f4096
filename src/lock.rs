//! The single-instance lock of a history database: one perfvisor per database file, taken
//! before anything is written, so a second instance can neither re-adopt the first one's
//! daemons nor interleave its history and alert state with the first one's.
//!
//! The lock is an exclusive `flock` on `<database>.lock`. The kernel releases it when the
//! holder exits, however it exits (a SIGKILL included), so a crash never leaves a stale lock;
//! the file itself stays and names the last holder for the error message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// An exclusive hold on a history database, released when dropped (or when the process
/// ends). [`PerfvisorBuilder::start`](crate::PerfvisorBuilder::start) takes one itself; a
/// program that writes next to the database before starting the engine (the `perfvisor`
/// binary's managed-daemon state) takes it first with [`DatabaseLock::acquire`] and hands
/// it over with [`PerfvisorBuilder::database_lock`](crate::PerfvisorBuilder::database_lock).
#[derive(Debug)]
pub struct DatabaseLock {
    /// Held open: the lock lives as long as this descriptor.
    file: File,
    database: PathBuf,
}

impl DatabaseLock {
    /// Locks `database` (through `<database>.lock`, created 0600 beside it) and records
    /// `holder` (e.g. "pid 123, listening on 127.0.0.1:9465") in the lock file. Fails with
    /// [`Error::DatabaseInUse`], naming the holder, when another process has it.
    pub fn acquire(database: &Path, holder: &str) -> Result<DatabaseLock, Error> {
        let path = lock_path(database);
        let io = |e: std::io::Error| Error::DatabaseLock {
            path: path.clone(),
            source: e,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut recorded = String::new();
                let _ = file.read_to_string(&mut recorded);
                let recorded = recorded.trim();
                return Err(Error::DatabaseInUse {
                    database: database.to_path_buf(),
                    holder: if recorded.is_empty() {
                        "a process that has not said who it is".to_string()
                    } else {
                        recorded.to_string()
                    },
                });
            }
            return Err(io(err));
        }
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{holder}")?;
            file.sync_data()
        };
        write(&mut file).map_err(io)?;
        Ok(DatabaseLock {
            file,
            database: database.to_path_buf(),
        })
    }

    /// The database this lock holds.
    pub fn database(&self) -> &Path {
        &self.database
    }
}

impl Drop for DatabaseLock {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock; unlocking first makes it explicit.
        // SAFETY: flock on a descriptor this value owns.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// `<database>.lock`: the file the lock is taken on.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// What a holder says of itself by default: this process's pid.
pub(crate) fn default_holder() -> String {
    format!("pid {}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second lock on the same database is refused with the first holder's words; once
    /// the first is dropped, the database can be locked again.
    #[test]
    fn second_lock_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pv.db");
        let first = DatabaseLock::acquire(&db, "pid 1, listening on 127.0.0.1:1").unwrap();
        let err = DatabaseLock::acquire(&db, "pid 2").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pid 1, listening on 127.0.0.1:1"), "{text}");
        assert!(text.contains(&db.display().to_string()), "{text}");
        drop(first);
        let again = DatabaseLock::acquire(&db, "pid 3").unwrap();
        assert_eq!(again.database(), db.as_path());
    }
}
