//! What a persistent manager keeps on disk so that a perfvisor killed without a chance to
//! stop its daemons finds them again: a state file naming each managed process, and one
//! FIFO per output stream, so the daemons' output never depends on a pipe that dies with
//! perfvisor.
//!
//! # Layout
//! One private directory (mode 0700), for the standalone binary `<database>.managed/`:
//! `state.json` (mode 0600) and `<name>.stdout` / `<name>.stderr` (FIFOs, mode 0600).
//!
//! # The state file
//! `{"version": 1, "boot_id": …, "daemons": {name: {"pid", "start_ticks", "invocation",
//! "fingerprint"}}}`, rewritten whole (a temporary file, fsynced, renamed over it, then the
//! directory fsynced, so a reader or a crash never sees half of it) whenever a process starts
//! or ends. A process is identified by
//! its pid and its start time in clock ticks since boot (`/proc/<pid>/stat`), which together
//! never name another process; the boot id makes a file from a previous boot name nothing.
//! Before a spawn the record holds only the invocation id (also in the daemon's environment as
//! `PERFVISOR_INVOCATION_ID`), so a perfvisor killed between fork and the next write still finds
//! its process. The fingerprint is a 64-bit FNV-1a hash of the command, environment, working
//! directory and user; the file holds no argument, no environment value and no token.
//!
//! # No fork without a record
//! A write that fails (a full disk, EMFILE, EIO) is reported to the caller, and the
//! supervisor does not fork without the intent on disk (see `daemon.rs`). The file therefore
//! only ever lags behind in one direction: it may still name a process that has ended (a
//! removal that could not be written; such a record names nothing), never miss one that
//! runs. A record that could not be written is not kept in memory either, so a later write
//! for another daemon cannot put an unwritten start on disk behind the supervisor's back.
//! The fsyncs are there for the errors, not for a power cut (after a reboot the boot id voids
//! the file anyway): where blocks are allocated late (delayed allocation, NFS, a thin pool)
//! "no space" may only surface at fsync, and a start must learn of it before the fork.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::process::{proc_stat, signal_group};
use super::spec::ManagedSpec;

/// Name of the environment variable holding a process's invocation id.
pub(crate) const INVOCATION_ENV: &str = "PERFVISOR_INVOCATION_ID";
const STATE_FILE: &str = "state.json";
const VERSION: u32 = 1;
/// How often a foreign process is looked at while waiting for it to end.
const POLL: Duration = Duration::from_millis(50);
/// How long a leftover daemon gets between SIGTERM and SIGKILL.
const LEFTOVER_STOP_TIMEOUT: Duration = super::spec::DEFAULT_STOP_TIMEOUT;

/// One managed process as the state file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Its pid, once spawned.
    pub(crate) pid: Option<u32>,
    /// Its start time in clock ticks since boot, once spawned.
    pub(crate) start_ticks: Option<u64>,
    /// Random id in the process's environment ([`INVOCATION_ENV`]).
    pub(crate) invocation: String,
    /// [`fingerprint`] of the spec it was started from.
    pub(crate) fingerprint: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    version: u32,
    boot_id: String,
    daemons: BTreeMap<String, Record>,
}

/// The state directory and the records, written through on every change.
#[derive(Debug)]
pub(crate) struct StateStore {
    dir: PathBuf,
    contents: Contents,
    /// The last write failed: the file lags behind `contents` until the next write succeeds.
    dirty: bool,
    /// Test hook: writes that succeed before every further one fails (`EIO`), to reach
    /// failures a real disk cannot be made to produce at one exact write.
    #[cfg(test)]
    pub(crate) writes_left: Option<u32>,
}

/// The state file could not be written; it is unchanged.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", file.display())]
pub(crate) struct WriteError {
    /// The state file.
    pub(crate) file: PathBuf,
    /// What the operating system said.
    #[source]
    pub(crate) source: io::Error,
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl StateStore {
    /// Opens (creating it private) the directory `dir` and returns the store together with
    /// the records a previous run left there (none from a previous boot).
    pub(crate) fn open(dir: &Path) -> io::Result<(StateStore, BTreeMap<String, Record>)> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let boot_id = boot_id();
        let previous = match fs::read(dir.join(STATE_FILE)) {
            Ok(bytes) => match serde_json::from_slice::<Contents>(&bytes) {
                Ok(c) if c.version == VERSION && c.boot_id == boot_id => c.daemons,
                Ok(_) => BTreeMap::new(),
                Err(e) => {
                    warn!(file = %dir.join(STATE_FILE).display(), error = %e, "Unreadable state file; its daemons are not re-adopted.");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let store = StateStore {
            dir: dir.to_path_buf(),
            contents: Contents {
                version: VERSION,
                boot_id,
                // Kept until each is adopted or found gone, so a crash during start-up
                // forgets nothing.
                daemons: previous.clone(),
            },
            dirty: false,
            #[cfg(test)]
            writes_left: None,
        };
        Ok((store, previous))
    }

    /// The FIFO of `name`'s `stream` (`stdout` or `stderr`).
    pub(crate) fn fifo(&self, name: &str, stream: &str) -> PathBuf {
        self.dir.join(format!("{name}.{stream}"))
    }

    /// Removes `name`'s FIFOs (a daemon no longer managed).
    pub(crate) fn remove_fifos(&self, name: &str) {
        for stream in ["stdout", "stderr"] {
            let _ = fs::remove_file(self.fifo(name, stream));
        }
    }

    /// The state file's path.
    pub(crate) fn file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Sets (or with `None` removes) the record of `name` and rewrites the file (also when
    /// nothing changed but an earlier write failed). When the write fails, a record being set
    /// is dropped again from memory (the previous one, if any, comes back), so memory never
    /// holds a record the disk does not; a removal stays done in memory, and the file keeps
    /// naming a process that has ended, which is harmless.
    pub(crate) fn set(&mut self, name: &str, record: Option<Record>) -> Result<(), WriteError> {
        let setting = record.is_some();
        let previous = match record {
            Some(r) => self.contents.daemons.insert(name.to_string(), r),
            None => self.contents.daemons.remove(name),
        };
        let changed = previous.as_ref() != self.contents.daemons.get(name);
        if !changed && !self.dirty {
            return Ok(());
        }
        match self.write() {
            Ok(()) => {
                self.dirty = false;
                Ok(())
            }
            Err(source) => {
                self.dirty = true;
                if setting {
                    match previous {
                        Some(p) => self.contents.daemons.insert(name.to_string(), p),
                        None => self.contents.daemons.remove(name),
                    };
                }
                Err(WriteError {
                    file: self.file(),
                    source,
                })
            }
        }
    }

    /// Writes the whole file to a temporary file (0600), fsyncs it, renames it over the old
    /// one and fsyncs the directory; on failure removes the temporary file (on a full disk it
    /// would hold space) and leaves the old file as it was.
    fn write(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if let Some(left) = self.writes_left.as_mut() {
            if *left == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            *left -= 1;
        }
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        let written = self.write_via(&tmp);
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    fn write_via(&self, tmp: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.contents).map_err(io::Error::other)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(tmp, self.file())?;
        File::open(&self.dir)?.sync_all()
    }
}

/// A stable hash of what defines a daemon's process (command, environment, working
/// directory, user): an adopted process started from another spec is restarted. Restart
/// policy, checks, logs and stop settings apply to an adopted process as configured.
pub(crate) fn fingerprint(spec: &ManagedSpec) -> String {
    let bytes =
        serde_json::to_vec(&(&spec.command, &spec.env, &spec.cwd, &spec.user)).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A random invocation id.
pub(crate) fn invocation_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The live process a record names, as (pid, start ticks): the recorded pid if it still runs
/// with the recorded start time, else (a record written before the spawn returned) the
/// process-group leader whose environment carries the invocation id.
pub(crate) fn locate(record: &Record) -> Option<(u32, u64)> {
    let alive = |pid: u32| proc_stat(pid).filter(|s| !s.is_zombie());
    if let (Some(pid), Some(start)) = (record.pid, record.start_ticks) {
        return alive(pid)
            .filter(|s| s.start_ticks == start)
            .map(|_| (pid, start));
    }
    let needle = format!("{INVOCATION_ENV}={}", record.invocation);
    let me = std::process::id();
    fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .find_map(|pid| {
            let stat = alive(pid).filter(|s| s.pgid == pid)?;
            let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
            env.split(|&b| b == 0)
                .any(|v| v == needle.as_bytes())
                .then_some((pid, stat.start_ticks))
        })
}

/// Whether the process (pid, start ticks) still runs.
pub(crate) fn still_runs(pid: u32, start_ticks: u64) -> bool {
    proc_stat(pid).is_some_and(|s| !s.is_zombie() && s.start_ticks == start_ticks)
}

/// Whether `pid` now names another process than the one that started at `start_ticks`.
pub(crate) fn pid_reused(pid: u32, start_ticks: u64) -> bool {
    proc_stat(pid).is_some_and(|s| s.start_ticks != start_ticks)
}

/// Stops a process a previous run left and the config no longer declares: SIGTERM to its
/// group, SIGKILL after [`LEFTOVER_STOP_TIMEOUT`].
pub(crate) fn stop_leftover(name: &str, record: &Record) {
    let Some((pid, start)) = locate(record) else {
        return;
    };
    info!(daemon = %name, pid, "Stopping a daemon a previous run left and the config no longer declares.");
    let wait = |timeout: Duration| {
        let t = Instant::now();
        while still_runs(pid, start) && t.elapsed() < timeout {
            std::thread::sleep(POLL);
        }
        !still_runs(pid, start)
    };
    let _ = signal_group(pid, libc::SIGTERM);
    if !wait(LEFTOVER_STOP_TIMEOUT) {
        let _ = signal_group(pid, libc::SIGKILL);
        if !wait(Duration::from_secs(5)) {
            warn!(daemon = %name, pid, "A leftover daemon survived SIGKILL.");
        }
    }
    // What is left of its group goes with it, as for every managed daemon.
    if !pid_reused(pid, start) {
        let _ = signal_group(pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::TempDir;
    use super::*;

    fn record(pid: u32) -> Record {
        Record {
            pid: Some(pid),
            start_ticks: Some(7),
            invocation: "abc".into(),
            fingerprint: "0123".into(),
        }
    }

    /// The file is private, holds what was set, and survives a reopen; a removal is
    /// written too; the directory is private.
    #[test]
    fn state_file_is_private_and_round_trips() {
        let dir = TempDir::new("state");
        let state = dir.path().join("pv.db.managed");
        let (mut store, previous) = StateStore::open(&state).unwrap();
        assert!(previous.is_empty());
        store.set("a", Some(record(10))).unwrap();
        store.set("b", Some(record(11))).unwrap();
        store.set("b", None).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(STATE_FILE)), 0o600);
        let (_, previous) = StateStore::open(&state).unwrap();
        assert_eq!(
            previous.into_iter().collect::<Vec<_>>(),
            [("a".to_string(), record(10))]
        );
        assert!(!state.join(format!(".{STATE_FILE}.tmp")).exists());
    }

    /// A failed write leaves the file as it was and reports it with the file's path; a record
    /// that could not be set is not kept in memory (a later write does not put it on disk),
    /// while a removal that could not be written stays done and reaches the file with the
    /// next write that succeeds.
    #[test]
    fn a_failed_write_keeps_no_unwritten_record() {
        let dir = TempDir::new("state-fail");
        let state = dir.path().join("s");
        let (mut store, _) = StateStore::open(&state).unwrap();
        let on_disk = || {
            let (_, previous) = StateStore::open(&state).unwrap();
            previous.into_keys().collect::<Vec<_>>()
        };
        store.set("a", Some(record(10))).unwrap();
        store.writes_left = Some(0);
        let e = store.set("b", Some(record(11))).unwrap_err();
        assert_eq!(e.file, state.join(STATE_FILE));
        assert_eq!(e.source.raw_os_error(), Some(libc::EIO));
        assert!(e
            .to_string()
            .ends_with("state.json: Input/output error (os error 5)"));
        store.set("a", None).unwrap_err();
        assert_eq!(on_disk(), ["a"]);
        store.writes_left = None;
        store.set("c", Some(record(12))).unwrap();
        assert_eq!(on_disk(), ["c"]);
        // Nothing changed, but the file is not behind either: no write.
        store.writes_left = Some(0);
        store.set("c", Some(record(12))).unwrap();
    }

    /// A file from another boot names nothing.
    #[test]
    fn records_of_another_boot_are_ignored() {
        let dir = TempDir::new("state-boot");
        let state = dir.path().join("s");
        fs::create_dir_all(&state).unwrap();
        let text = serde_json::json!({
            "version": VERSION, "boot_id": "another boot",
            "daemons": {"a": record(10)}
        });
        fs::write(state.join(STATE_FILE), text.to_string()).unwrap();
        assert!(StateStore::open(&state).unwrap().1.is_empty());
    }

    /// The fingerprint follows the command and the environment, not the restart policy,
    /// and does not contain the environment's values.
    #[test]
    fn fingerprint_covers_the_process_only() {
        let mut a = ManagedSpec::new("d", vec!["/bin/true".into()], "/tmp");
        a.env.insert("KEY".into(), "secret-value".into());
        let f = fingerprint(&a);
        let mut b = a.clone();
        b.max_fast_failures = 1;
        assert_eq!(fingerprint(&b), f);
        b.env.insert("KEY".into(), "other".into());
        assert_ne!(fingerprint(&b), f);
        assert!(!f.contains("secret"));
        assert_eq!(f.len(), 16);
    }

    /// Our own process is found by pid and start time, and not with another start time.
    #[test]
    fn locate_checks_the_start_time() {
        let me = std::process::id();
        let start = proc_stat(me).unwrap().start_ticks;
        let mut r = record(me);
        r.start_ticks = Some(start);
        assert_eq!(locate(&r), Some((me, start)));
        r.start_ticks = Some(start + 1);
        assert_eq!(locate(&r), None);
    }
}
