//! The checks of a config against the machine it is to run on, made without starting or
//! creating anything: each managed daemon's program is an executable file (a path, or a
//! name found on `PATH`), its `cwd` is a directory and its `user` exists and can be
//! switched to (at `run`; `check-config` may be run by someone else, so it only warns); so
//! are the programs of command health checks, `exec` sinks and rule `exec` actions; the
//! history database's directory exists and is writable, and the database is not a
//! directory and, if present, a SQLite file; `token_file` is readable; the API's address
//! can be listened on. Each problem names the key's place in the file.
//!
//! `check-config` runs them all. `perfvisor run` runs them before it writes anything (the
//! database, its WAL, the `.managed` directory and FIFOs), so a start that cannot work fails
//! with the file's line and leaves nothing behind; the address it checks only once it
//! holds the database lock, so that a second perfvisor on the same database is told which
//! process holds it rather than that the port is taken.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::Problem;
use super::reader::Places;
use super::{Config, TokenSource};
use crate::manager::CheckKind;
use crate::{RuleAction, SinkConfig};

/// The first bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

const PROGRAM_FORMS: &str = "an executable file: an absolute path, a path relative to cwd, or \
                             a program name found on PATH";

/// A problem at the place of `path` (line 0 when the file does not have the key).
fn problem(places: &Places, path: &str, message: String) -> Problem {
    let (line, column) = places.get(path).copied().unwrap_or((0, 0));
    Problem {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

/// Everything but the API address. A `user` this process could not switch to is a problem
/// when `running` (this process is the perfvisor), else a warning (`check-config` may be
/// run by another user than the one that runs perfvisor).
pub(super) fn machine(
    config: &Config,
    places: &Places,
    running: bool,
    warnings: &mut Vec<Problem>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let me = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| identity(&s));
    for (i, d) in config.daemons.iter().map(|d| &d.managed).enumerate() {
        let key = |k: &str| format!("daemon[{i}].{k}");
        let mut cwd_ok = true;
        if let Some(cwd) = &d.cwd {
            if let Err(why) = directory(cwd) {
                cwd_ok = false;
                out.push(problem(
                    places,
                    &key("cwd"),
                    format!(
                        "{why}; expected the daemon's working directory, an existing directory"
                    ),
                ));
            }
        }
        if let Some(program) = d.command.first() {
            // A relative path under a missing cwd is reported with the cwd.
            let relative = program.contains('/') && !program.starts_with('/');
            if cwd_ok || !relative {
                if let Err(why) = find_program(program, d.cwd.as_deref(), d.env.get("PATH")) {
                    out.push(problem(
                        places,
                        &key("command"),
                        format!("{why}; expected {PROGRAM_FORMS}"),
                    ));
                }
            }
        }
        if let Some(user) = &d.user {
            match crate::manager::lookup_user(user) {
                Err(why) => out.push(problem(places, &key("user"), why)),
                Ok(ids) => match me {
                    Some(me) if !me.may_run_as(ids.uid, ids.gid) => {
                        let why = format!(
                            "perfvisor running as uid {} could not start the daemon as user \
                             {user:?} (uid {}): that needs root, or CAP_SETUID and CAP_SETGID",
                            me.uid, ids.uid
                        );
                        if running {
                            out.push(problem(
                                places,
                                &key("user"),
                                format!("{why}; expected perfvisor run as root, or no user"),
                            ));
                        } else {
                            warnings.push(problem(
                                places,
                                &key("user"),
                                format!("{why}; fine if `perfvisor run` runs as root"),
                            ));
                        }
                    }
                    _ => {}
                },
            }
        }
        // Health checks run from perfvisor's directory with its PATH.
        for (j, c) in d.checks.iter().enumerate() {
            if let CheckKind::Command { argv: command } = &c.kind {
                out.extend(program_problem(
                    places,
                    &key(&format!("check[{j}].command")),
                    command.first(),
                ));
            }
        }
    }
    // So do alert sinks and rule actions.
    for (k, (_, sink)) in config.alert_sinks.iter().enumerate() {
        if let SinkConfig::Exec { program, .. } = sink {
            let program = program.to_string_lossy().into_owned();
            out.extend(program_problem(
                places,
                &format!("sink[{k}].command"),
                Some(&program),
            ));
        }
    }
    for (r, rule) in config.alert_rules.iter().enumerate() {
        if let Some(RuleAction::Exec { program, .. }) = &rule.action {
            out.extend(program_problem(
                places,
                &format!("rule[{r}].action"),
                Some(program),
            ));
        }
    }
    out.extend(
        database(&config.supervisor.database)
            .err()
            .map(|why| problem(places, "supervisor.database", why)),
    );
    if let Some(parent) = &config.supervisor.cgroup_parent {
        use perfvisor_actors::watcher::cgroup::{configured_parent, Mounts};
        let checked = match Mounts::host().v2.as_deref() {
            None => Err(format!(
                "cgroup_parent {:?} is set but this host has no cgroup2 hierarchy mounted; \
                 expected no cgroup_parent here (the daemons are measured as process trees)",
                parent.display().to_string()
            )),
            // Checked without creating anything: `run` creates it if missing.
            Some(mount) => configured_parent(mount, parent, false).map(drop),
        };
        if let Err(why) = checked {
            out.push(problem(places, "supervisor.cgroup_parent", why));
        }
    }
    if let Some(TokenSource::File(path)) = &config.supervisor.token {
        if let Err(e) = std::fs::read_to_string(path) {
            out.push(problem(
                places,
                "supervisor.token_file",
                format!(
                    "cannot read token_file {}: {e}; expected a file this user can read",
                    path.display()
                ),
            ));
        }
    }
    out
}

/// What the API address check found.
pub(super) enum Listen {
    /// It can be listened on.
    Free,
    /// The perfvisor running on this very database listens on it: fine for a `reload`
    /// (a second `run` is refused for the database).
    Ours(Problem),
    /// It cannot be listened on.
    Refused(Problem),
}

/// Who a process is: its effective uid and gid, and whether it may switch to other ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    uid: u32,
    gid: u32,
    /// Holds CAP_SETUID and CAP_SETGID (root normally does).
    can_switch: bool,
}

impl Identity {
    /// Whether a child of this process can run as `uid`/`gid` (std's `Command::uid` and
    /// `gid` call setgid and setuid, which need the capabilities unless the ids are ours).
    pub(super) fn may_run_as(self, uid: u32, gid: u32) -> bool {
        self.can_switch || (self.uid == uid && self.gid == gid)
    }
}

/// Who this process is, from the text of `/proc/self/status`.
pub(super) fn identity(status: &str) -> Option<Identity> {
    const CAP_SETGID: u32 = 6;
    const CAP_SETUID: u32 = 7;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::split_whitespace)
    };
    let uid = field("Uid:")?.nth(1)?.parse().ok()?;
    let gid = field("Gid:")?.nth(1)?.parse().ok()?;
    let caps = u64::from_str_radix(field("CapEff:")?.next()?, 16).ok()?;
    let has = |cap: u32| caps & (1 << cap) != 0;
    Some(Identity {
        uid,
        gid,
        can_switch: has(CAP_SETUID) && has(CAP_SETGID),
    })
}

/// A problem at `path` when `program` (run from perfvisor's directory with its `PATH`) is
/// not an executable file.
fn program_problem(places: &Places, path: &str, program: Option<&String>) -> Option<Problem> {
    let why = find_program(program?, None, None).err()?;
    Some(problem(
        places,
        path,
        format!("{why}; expected {PROGRAM_FORMS}"),
    ))
}

/// The API address: can it be listened on now?
pub(super) fn listen(config: &Config, places: &Places) -> Listen {
    let addr = config.supervisor.listen;
    let why = match std::net::TcpListener::bind(addr) {
        Ok(_) => return Listen::Free,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if let Some(holder) = running_holder(&config.supervisor.database, addr) {
                return Listen::Ours(problem(
                    places,
                    "supervisor.listen",
                    format!(
                        "{addr} is in use by the perfvisor running on this database ({holder}): \
                         fine for `perfvisor reload`; a second `perfvisor run` would be refused"
                    ),
                ));
            }
            format!(
                "{addr} is already in use, perhaps by a perfvisor already running (`perfvisor \
                 status --address {addr}` tells); expected a free port, or stop what holds it"
            )
        }
        Err(e) => format!(
            "cannot listen on {addr}: {e}; expected an address of this machine and a port this \
             user may listen on"
        ),
    };
    Listen::Refused(problem(places, "supervisor.listen", why))
}

/// What the live perfvisor holding `database`'s lock says of itself, when it says it
/// listens on `addr` (`pid 123, listening on 127.0.0.1:9465`, as `perfvisor run` writes)
/// and is another process than this one (at `run`, this one holds the lock itself). Read
/// without taking the lock, so a perfvisor starting meanwhile is not disturbed.
fn running_holder(database: &Path, addr: std::net::SocketAddr) -> Option<String> {
    let text = std::fs::read_to_string(crate::lock_path(database)).ok()?;
    let holder = text.trim();
    let pid: u32 = holder
        .strip_prefix("pid ")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let alive = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
    (alive && holder.ends_with(&format!("listening on {addr}"))).then(|| holder.to_owned())
}

/// `Ok` when `path` is an existing directory.
fn directory(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("directory {} does not exist", path.display()))
        }
        Err(e) => Err(format!("cannot use directory {}: {e}", path.display())),
    }
}

/// `Ok` when `path` is a file with an execute bit.
fn executable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(format!("{} is a directory", path.display())),
        Ok(m) if !m.is_file() => Err(format!("{} is not a regular file", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!(
            "{} is not executable (mode {:o})",
            path.display(),
            m.permissions().mode() & 0o7777
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("program {} does not exist", path.display()))
        }
        Err(e) => Err(format!("cannot use program {}: {e}", path.display())),
    }
}

/// The file `program` runs, found the way the daemon is spawned: a name with a `/` is a path
/// (a relative one from `cwd` when given), any other name is looked up on the daemon's
/// `PATH` (its `env`'s, else perfvisor's).
fn find_program(
    program: &str,
    cwd: Option<&Path>,
    env_path: Option<&String>,
) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = match cwd {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => PathBuf::from(program),
        };
        return executable(&path).map(|()| path);
    }
    let search = env_path
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    for dir in search.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(program);
        if executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "program {program:?} is not found on PATH ({search})"
    ))
}

/// `Ok` when this process may write in (or to) `path` (`access(2)` with `W_OK`).
fn writable(path: &Path) -> Result<(), std::io::Error> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `Ok` when the history database can be opened or created at `db`: its directory exists
/// and is writable, and it is not a directory and, if present, a SQLite file.
fn database(db: &Path) -> Result<(), String> {
    let dir = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Err(why) = directory(dir) {
        return Err(format!(
            "the database's {why} (perfvisor does not create it); expected a path in an \
             existing directory"
        ));
    }
    if let Err(e) = writable(dir) {
        return Err(format!(
            "the database's directory {} is not writable ({e}); expected a directory where \
             perfvisor can create the database, its WAL and its lock file",
            dir.display()
        ));
    }
    let meta = match std::fs::metadata(db) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot use database {}: {e}", db.display())),
    };
    if meta.is_dir() {
        return Err(format!(
            "database {} is a directory; expected the path of a SQLite file (created when missing)",
            db.display()
        ));
    }
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    let read = std::fs::File::open(db).and_then(|f| {
        f.take(SQLITE_HEADER.len() as u64)
            .read_to_end(&mut header)
            .map(|_| ())
    });
    if let Err(e) = read {
        return Err(format!("cannot read database {}: {e}", db.display()));
    }
    // An empty file is a database SQLite has not written yet.
    if !header.is_empty() && header.as_slice() != SQLITE_HEADER {
        return Err(format!(
            "{} is not a SQLite database (it does not begin with \"SQLite format 3\"); expected \
             perfvisor's history database, or a path where none exists yet",
            db.display()
        ));
    }
    if let Err(e) = writable(db) {
        return Err(format!(
            "database {} is not writable ({e}); expected a file this user can write",
            db.display()
        ));
    }
    Ok(())
}
