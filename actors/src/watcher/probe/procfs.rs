//! The Linux backend: `/proc/PID` files kept open and re-read with `pread`.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ProbeError, ProcSnapshot, ProcState, ProcessIdentity, FD_LIMIT_EVERY};

const STAT: &str = "/proc/[pid]/stat";
const SCHEDSTAT: &str = "/proc/[pid]/schedstat";
const IO: &str = "/proc/[pid]/io";
const LIMITS: &str = "/proc/[pid]/limits";
const FD: &str = "/proc/[pid]/fd";
const EXE: &str = "/proc/[pid]/exe";
const DIR: &str = "/proc/[pid]";
const CHILDREN: &str = "/proc/[pid]/task/[tid]/children";
const TASK: &str = "/proc/[pid]/task";
const PROC_STAT: &str = "/proc/stat";

/// Reads of a file skipped in a row at most because the process had not run since it was
/// read (see `ProcfsProbe::idle_runtime`): the next one is made regardless.
pub(super) const IDLE_SKIPS_MAX: u64 = 9;

/// Large enough for every file read here (`limits`, the largest, is about 1.4 KiB).
const BUF_LEN: usize = 4096;

thread_local! {
    /// The one buffer every probe on this thread reads its files into, so a probe
    /// allocates nothing and a thousand watchers do not keep a thousand buffers.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; BUF_LEN]);
}
/// What the kernel appends to `/proc/PID/exe` once the binary was replaced on disk.
const DELETED: &[u8] = b" (deleted)";

/// Clock ticks per second and page size, asked once per process.
struct SysConsts {
    ticks_per_second: f64,
    page_size: u64,
}

fn sys_consts() -> &'static SysConsts {
    static CONSTS: OnceLock<SysConsts> = OnceLock::new();
    CONSTS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        SysConsts {
            // USER_HZ is 100 on every Linux ABI; sysconf only fails on unknown names.
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: if page > 0 { page as u64 } else { 4096 },
        }
    })
}

/// Boot time in seconds since the epoch (`btime` of `/proc/stat`), read once per process.
fn boot_time(pid: u32) -> Result<u64, ProbeError> {
    static BOOT_TIME: OnceLock<u64> = OnceLock::new();
    if let Some(btime) = BOOT_TIME.get() {
        return Ok(*btime);
    }
    let io_err = |source| ProbeError::Io {
        pid,
        what: PROC_STAT,
        source,
    };
    let text = std::fs::read(PROC_STAT).map_err(io_err)?;
    let btime = text
        .split(|b| *b == b'\n')
        .find_map(|line| line.strip_prefix(b"btime "))
        .and_then(|rest| parse_u64(rest.trim_ascii()))
        .ok_or_else(|| io_err(invalid("no `btime` line")))?;
    Ok(*BOOT_TIME.get_or_init(|| btime))
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// ESRCH and ENOENT mean the process is gone; anything else is an I/O failure on `what`.
fn classify(pid: u32, what: &'static str, source: io::Error) -> ProbeError {
    match source.raw_os_error() {
        Some(libc::ESRCH) | Some(libc::ENOENT) => ProbeError::Gone { pid },
        _ => ProbeError::Io { pid, what, source },
    }
}

fn is_eacces(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

/// Opens `name` under the `/proc/PID` directory, so it refers to the same process.
fn open_at(dir: &File, name: &CStr, flags: libc::c_int) -> io::Result<File> {
    // SAFETY: `name` is NUL-terminated and `dir` is an open descriptor for the call.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Like [`open_at`], but a refusal or a missing file (`io` needs task I/O accounting in
/// the kernel) yields `Ok(None)`. Called after `stat` was opened: if the process is what
/// went missing, the first probe reports it as gone through `stat`.
fn open_optional(
    pid: u32,
    dir: &File,
    name: &CStr,
    flags: libc::c_int,
    what: &'static str,
) -> Result<Option<File>, ProbeError> {
    match open_at(dir, name, flags) {
        Ok(file) => Ok(Some(file)),
        Err(e) if is_eacces(&e) || e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(classify(pid, what, e)),
    }
}

/// Re-reads a kept-open `/proc` file from offset 0 into `buf`, growing it only if the
/// contents did not fit. `Ok(0)` means the process is gone.
fn read_whole(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        match file.read_at(buf, 0) {
            Ok(n) if n < buf.len() => return Ok(n),
            Ok(_) => buf.resize(buf.len() * 2, 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads the `exe` link of the directory's process into `buf`.
pub(super) fn read_exe<'b>(dir: &File, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
    loop {
        // SAFETY: the name is NUL-terminated and `buf` is valid for `buf.len()` bytes.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                c"exe".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            let link = &buf[..n];
            return Ok(link.strip_suffix(DELETED).unwrap_or(link));
        }
        // Possibly truncated.
        buf.resize(buf.len() * 2, 0);
    }
}

/// Maps a `/proc/PID/stat` state letter.
pub(super) fn state_from_letter(letter: char) -> ProcState {
    match letter {
        'R' => ProcState::Running,
        'S' => ProcState::Sleeping,
        'D' => ProcState::DiskSleep,
        'Z' => ProcState::Zombie,
        'T' | 't' => ProcState::Stopped,
        'I' => ProcState::Idle,
        other => ProcState::Other(other),
    }
}

/// The fields of `/proc/PID/stat` the probe uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StatFields {
    /// Field 3.
    pub(super) state: ProcState,
    /// Field 4.
    pub(super) ppid: u32,
    /// Fields 14 and 15, in clock ticks.
    pub(super) utime: u64,
    pub(super) stime: u64,
    /// Fields 16 and 17 (waited-for children), in clock ticks.
    pub(super) cutime: u64,
    pub(super) cstime: u64,
    /// Field 20.
    pub(super) threads: u64,
    /// Field 22, in clock ticks since boot.
    pub(super) start_time: u64,
    /// Field 23: virtual memory size, in bytes.
    pub(super) vsize: u64,
    /// Field 24: resident set size, in pages (the same count as `statm`'s second field:
    /// both are the file, anonymous and shared-memory pages of the address space).
    pub(super) rss_pages: u64,
    /// Fields 26 and 27: where the program text is mapped. Set by `exec` (and moved by
    /// ASLR even when the same binary is exec'd again); 1 when the reader lacks ptrace
    /// access, 0 without an address space (zombie, kernel thread).
    pub(super) code_range: (u64, u64),
}

/// Parses `/proc/PID/stat`. Field 2 (comm) is in parentheses and may itself contain spaces
/// and `)`, so the fixed fields are counted from the last `)`.
pub(super) fn parse_stat(text: &[u8]) -> Option<StatFields> {
    let close = text.iter().rposition(|b| *b == b')')?;
    // Fields 3.. follow; field n is at index n - 3.
    let mut fields = text[close + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    let state = match fields.next()? {
        [letter] => state_from_letter(char::from(*letter)),
        _ => return None,
    };
    let ppid = u32::try_from(parse_u64(fields.next()?)?).ok()?; // 4
    let mut fields = fields.skip(9); // fields 5..=13
    let utime = parse_u64(fields.next()?)?; // 14
    let stime = parse_u64(fields.next()?)?; // 15
    let cutime = parse_u64(fields.next()?)?; // 16, signed by the kernel, never negative
    let cstime = parse_u64(fields.next()?)?; // 17, the same
    let mut fields = fields.skip(2); // 18..=19
    let threads = parse_u64(fields.next()?)?; // 20
    let start_time = parse_u64(fields.nth(1)?)?; // 22
    let vsize = parse_u64(fields.next()?)?; // 23
    let rss_pages = parse_u64(fields.next()?)?; // 24, signed by older kernels, never negative
    let mut fields = fields.skip(1); // 25
    let start_code = parse_u64(fields.next()?)?; // 26
    let end_code = parse_u64(fields.next()?)?; // 27
    Some(StatFields {
        state,
        ppid,
        utime,
        stime,
        cutime,
        cstime,
        threads,
        start_time,
        vsize,
        rss_pages,
        code_range: (start_code, end_code),
    })
}

/// Field 2 of `/proc/PID/stat`: the command name between the first `(` and the last `)`
/// (it may itself hold parentheses); empty when malformed.
pub(super) fn comm_of(text: &[u8]) -> &[u8] {
    let open = text.iter().position(|b| *b == b'(');
    let close = text.iter().rposition(|b| *b == b')');
    match (open, close) {
        (Some(o), Some(c)) if o < c => &text[o + 1..c],
        _ => &[],
    }
}

/// Parses the first field of `/proc/PID/schedstat`: the nanoseconds the task has run on a
/// CPU. `None` when malformed, or 0 (the kernel prints `0 0 0` when it keeps no scheduler
/// statistics, and a task that ran has run for more than 0 ns).
pub(super) fn parse_schedstat(text: &[u8]) -> Option<u64> {
    let first = text.split(u8::is_ascii_whitespace).next()?;
    parse_u64(first).filter(|ns| *ns > 0)
}

/// Parses the `read_bytes:` and `write_bytes:` lines of `/proc/PID/io`.
pub(super) fn parse_io(text: &[u8]) -> Option<(u64, u64)> {
    let (mut read, mut write) = (None, None);
    for line in text.split(|b| *b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"read_bytes:") {
            read = parse_u64(rest.trim_ascii());
        } else if let Some(rest) = line.strip_prefix(b"write_bytes:") {
            write = parse_u64(rest.trim_ascii());
        }
    }
    Some((read?, write?))
}

/// Parses the soft limit of the `Max open files` line of `/proc/PID/limits`: `Ok(None)`
/// for `unlimited`, `Err(())` when the line is missing or malformed.
pub(super) fn parse_fd_limit(text: &[u8]) -> Result<Option<u64>, ()> {
    let line = text
        .split(|b| *b == b'\n')
        .find_map(|line| line.strip_prefix(b"Max open files"))
        .ok_or(())?;
    match line.split(u8::is_ascii_whitespace).find(|f| !f.is_empty()) {
        Some(b"unlimited") => Ok(None),
        Some(soft) => parse_u64(soft).map(Some).ok_or(()),
        None => Err(()),
    }
}

pub(super) fn scan_parents(out: &mut Vec<(u32, u32)>) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    SCRATCH.with_borrow_mut(|buf| {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = parse_u64(name.as_bytes()).and_then(|n| u32::try_from(n).ok()) else {
                continue;
            };
            let Ok(file) = File::open(format!("/proc/{pid}/stat")) else {
                continue;
            };
            if let Ok(n) = read_whole(&file, buf) {
                if let Some(fields) = parse_stat(&buf[..n]) {
                    out.push((pid, fields.ppid));
                }
            }
        }
    });
}

/// Appends the space-separated pids of a `children` file to `out`.
pub(super) fn parse_pids(text: &[u8], out: &mut Vec<u32>) {
    out.extend(
        text.split(u8::is_ascii_whitespace)
            .filter_map(|f| parse_u64(f).and_then(|n| u32::try_from(n).ok())),
    );
}

/// Parses a decimal `u64` with no sign or spaces.
pub(super) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// Counts open descriptors through a kept-open `/proc/PID/fd`.
///
/// Since Linux 6.2 `stat` of that directory reports the count as its size, computed from
/// the descriptor bitmap without building a dentry per descriptor as `readdir` does. Older
/// kernels report 0, so 0 falls back to counting entries (which also gives 0 when there
/// really are none).
pub(super) fn count_fds(fd_dir: &File, buf: &mut [u8]) -> io::Result<u64> {
    let size = fd_dir.metadata()?.len();
    if size > 0 {
        return Ok(size);
    }
    count_dir_entries(fd_dir, buf)
}

/// Counts the entries other than `.` and `..` of an open directory with `getdents64`,
/// rewinding it first.
pub(super) fn count_dir_entries(dir: &File, buf: &mut [u8]) -> io::Result<u64> {
    let fd = dir.as_raw_fd();
    // SAFETY: plain syscall on an open descriptor.
    if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Layout of `struct linux_dirent64`: d_ino u64, d_off i64, d_reclen u16, d_type u8,
    // then the NUL-terminated name.
    const RECLEN_AT: usize = 16;
    const NAME_AT: usize = 19;
    let mut count = 0;
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(count);
        }
        let filled = &buf[..n as usize];
        let mut at = 0;
        while let Some(record) = filled.get(at..) {
            let Some(&[lo, hi]) = record.get(RECLEN_AT..RECLEN_AT + 2) else {
                break;
            };
            let reclen = usize::from(u16::from_ne_bytes([lo, hi]));
            let name = record.get(NAME_AT..reclen.min(record.len())).unwrap_or(&[]);
            if !(name.starts_with(b".\0") || name.starts_with(b"..\0")) {
                count += 1;
            }
            if reclen == 0 {
                break;
            }
            at += reclen;
        }
    }
}

/// Re-reads a kept-open file that must be readable.
fn read_required<'b>(
    pid: u32,
    file: &File,
    buf: &'b mut Vec<u8>,
    what: &'static str,
) -> Result<&'b [u8], ProbeError> {
    match read_whole(file, buf) {
        Ok(0) => Err(ProbeError::Gone { pid }),
        Ok(n) => Ok(&buf[..n]),
        Err(e) => Err(classify(pid, what, e)),
    }
}

/// Re-reads a kept-open file that may be refused: `None` when it could not be opened or
/// reading it is refused now (e.g. `/proc/PID/io` after the daemon changed credentials).
fn read_optional<'b>(
    pid: u32,
    file: Option<&File>,
    buf: &'b mut Vec<u8>,
    what: &'static str,
) -> Result<Option<&'b [u8]>, ProbeError> {
    let Some(file) = file else {
        return Ok(None);
    };
    match read_whole(file, buf) {
        Ok(0) => Err(ProbeError::Gone { pid }),
        Ok(n) => Ok(Some(&buf[..n])),
        Err(e) if is_eacces(&e) => Ok(None),
        Err(e) => Err(classify(pid, what, e)),
    }
}

/// Seconds since the process started, from its start in ticks since boot.
fn uptime_seconds(btime: u64, start_ticks: u64) -> f64 {
    let start = btime as f64 + start_ticks as f64 / sys_consts().ticks_per_second;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (now - start).max(0.0)
}

/// The kept-open files of one process.
pub(crate) struct ProcfsProbe {
    identity: ProcessIdentity,
    /// `/proc/PID` itself: the other files are opened relative to it and `exe` is read
    /// through it, so everything refers to the one process even if the pid is reused:
    /// once that process is reaped, reads through these descriptors fail.
    dir: File,
    stat: File,
    /// `schedstat`: the main thread's run time, which tells whether it ran since the last
    /// detail read; `None` without `CONFIG_SCHED_INFO`.
    schedstat: Option<File>,
    io: Option<File>,
    limits: Option<File>,
    fd_dir: Option<File>,
    /// `task/PID/children` of the main thread; `None` without `CONFIG_PROC_CHILDREN`.
    children: Option<File>,
    btime: u64,
    /// Text mapping at the last exe check; a change means the process exec'd.
    code_range: (u64, u64),
    probes: u64,
    fd_limit: Option<u64>,
    /// An exec seen and not yet taken.
    pub(crate) exec: Option<super::Exec>,
    /// Storage I/O and descriptors are re-read every this many probes (1: every probe).
    pub(crate) detail_every: u64,
    last_io: (Option<u64>, Option<u64>),
    last_fds: Option<u64>,
    /// The last `stat` read, given again while the process has not run since.
    last_fields: Option<StatFields>,
    /// The main thread's run time (ns, `schedstat`) just before `stat` was last read, when
    /// the process had one thread (see [`ProcfsProbe::idle_runtime`]).
    stat_runtime: Option<u64>,
    /// The same just before storage I/O and descriptors were last read.
    detail_runtime: Option<u64>,
    /// Probes in a row that skipped `stat` because the process had not run.
    stat_skips: u64,
    /// Due reads of storage I/O and descriptors skipped in a row for the same reason.
    detail_skips: u64,
    /// The command name of the last probe (`stat` field 2), replaced only when it changes.
    comm: String,
}

impl ProcfsProbe {
    pub(crate) fn open(pid: u32) -> Result<Self, ProbeError> {
        let dir = File::open(format!("/proc/{pid}")).map_err(|e| classify(pid, DIR, e))?;
        let stat = open_at(&dir, c"stat", 0).map_err(|e| classify(pid, STAT, e))?;
        let schedstat = open_optional(pid, &dir, c"schedstat", 0, SCHEDSTAT)?;
        let io = open_optional(pid, &dir, c"io", 0, IO)?;
        let limits = open_optional(pid, &dir, c"limits", 0, LIMITS)?;
        let fd_dir = open_optional(pid, &dir, c"fd", libc::O_DIRECTORY, FD)?;
        let children_name = std::ffi::CString::new(format!("task/{pid}/children"))
            .map_err(|_| classify(pid, CHILDREN, invalid("NUL in a pid")))?;
        let children = open_optional(pid, &dir, &children_name, 0, CHILDREN)?;
        let btime = boot_time(pid)?;

        let mut buf = vec![0; BUF_LEN];
        let n = read_whole(&stat, &mut buf).map_err(|e| classify(pid, STAT, e))?;
        if n == 0 {
            return Err(ProbeError::Gone { pid });
        }
        let fields = parse_stat(&buf[..n]).ok_or_else(|| ProbeError::Io {
            pid,
            what: STAT,
            source: invalid("malformed /proc/PID/stat"),
        })?;

        let mut link_buf = vec![0; BUF_LEN];
        let exe = match read_exe(&dir, &mut link_buf) {
            Ok(link) => Some(PathBuf::from(OsStr::from_bytes(link))),
            // Refused, or no executable (kernel thread, zombie; or just exited, which the
            // first probe reports as Gone).
            Err(e) if is_eacces(&e) || e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(classify(pid, EXE, e)),
        };

        Ok(Self {
            identity: ProcessIdentity {
                pid,
                start_time_ticks: fields.start_time,
                exe,
            },
            dir,
            stat,
            schedstat,
            io,
            limits,
            fd_dir,
            children,
            btime,
            code_range: fields.code_range,
            probes: 0,
            fd_limit: None,
            exec: None,
            detail_every: 1,
            last_io: (None, None),
            last_fds: None,
            last_fields: Some(fields),
            stat_runtime: None,
            detail_runtime: None,
            stat_skips: 0,
            detail_skips: 0,
            comm: String::from_utf8_lossy(comm_of(&buf[..n])).into_owned(),
        })
    }

    pub(crate) fn identity(&self) -> &ProcessIdentity {
        &self.identity
    }

    /// Probes in a row that skipped `stat` because the process had not run (for tests).
    #[cfg(test)]
    pub(crate) fn idle_skips(&self) -> u64 {
        self.stat_skips
    }

    pub(crate) fn comm(&self) -> &str {
        &self.comm
    }

    pub(crate) fn probe(&mut self) -> Result<ProcSnapshot, ProbeError> {
        SCRATCH.with_borrow_mut(|buf| self.probe_with(buf, 1))
    }

    /// Like [`ProcfsProbe::probe`], but storage I/O and descriptors are re-read only at
    /// every `every`th probe (counted over all probes), the last figures given between;
    /// `stat` (CPU, memory, threads and the identity check) at every call.
    pub(crate) fn probe_sparse(&mut self, every: u64) -> Result<ProcSnapshot, ProbeError> {
        SCRATCH.with_borrow_mut(|buf| self.probe_with(buf, every.max(1)))
    }

    /// One probe: `stat`, and storage I/O and descriptors at every `detail_every`th probe
    /// and every `sparse_every`th of those; each skipped, its last figures given again,
    /// while the process has not run since it was read (see [`ProcfsProbe::idle_runtime`]).
    fn probe_with(
        &mut self,
        buf: &mut Vec<u8>,
        sparse_every: u64,
    ) -> Result<ProcSnapshot, ProbeError> {
        let pid = self.identity.pid;
        let consts = sys_consts();
        let runtime = self.idle_runtime(pid, buf)?;
        let unchanged = |since: Option<u64>, skips: u64| {
            runtime.is_some() && runtime == since && skips < IDLE_SKIPS_MAX
        };

        let fields = match self.last_fields {
            Some(last) if unchanged(self.stat_runtime, self.stat_skips) => {
                self.stat_skips += 1;
                last
            }
            _ => {
                let fields = self.read_stat(pid, buf)?;
                self.last_fields = Some(fields);
                self.stat_runtime = runtime;
                self.stat_skips = 0;
                fields
            }
        };
        let state = fields.state;

        // A probe opened with `detail_every` > 1 re-reads storage I/O and descriptors only
        // at every that many probes, and gives the last figures between; so does a sparse
        // probe.
        let due = self.probes.is_multiple_of(sparse_every)
            && self.probes.is_multiple_of(self.detail_every);
        let detail = due && !unchanged(self.detail_runtime, self.detail_skips);
        if detail {
            self.detail_runtime = runtime;
            self.detail_skips = 0;
        } else if due {
            self.detail_skips += 1;
        }

        let io = self.io.as_ref().filter(|_| detail);
        let (read_bytes, write_bytes) = match read_optional(pid, io, buf, IO)? {
            None if !detail => self.last_io,
            None => (None, None),
            Some(text) => {
                let (r, w) = parse_io(text).ok_or_else(|| ProbeError::Io {
                    pid,
                    what: IO,
                    source: invalid("no read_bytes/write_bytes in /proc/PID/io"),
                })?;
                (Some(r), Some(w))
            }
        };

        let open_fds = match &self.fd_dir {
            None => None,
            Some(_) if !detail => self.last_fds,
            Some(fd_dir) => match count_fds(fd_dir, buf) {
                Ok(n) => Some(n),
                Err(e) if is_eacces(&e) => None,
                Err(e) => return Err(classify(pid, FD, e)),
            },
        };

        self.last_io = (read_bytes, write_bytes);
        self.last_fds = open_fds;
        if self.probes.is_multiple_of(FD_LIMIT_EVERY) {
            self.fd_limit = match read_optional(pid, self.limits.as_ref(), buf, LIMITS)? {
                None => None,
                Some(text) => parse_fd_limit(text).map_err(|()| ProbeError::Io {
                    pid,
                    what: LIMITS,
                    source: invalid("no `Max open files` line in /proc/PID/limits"),
                })?,
            };
        }
        self.probes += 1;

        Ok(ProcSnapshot {
            cpu_user_seconds: fields.utime as f64 / consts.ticks_per_second,
            cpu_system_seconds: fields.stime as f64 / consts.ticks_per_second,
            rss_bytes: fields.rss_pages.saturating_mul(consts.page_size),
            virtual_bytes: fields.vsize,
            threads: fields.threads,
            state,
            read_bytes,
            write_bytes,
            open_fds,
            fd_limit: self.fd_limit,
            uptime_seconds: uptime_seconds(self.btime, fields.start_time),
            ppid: fields.ppid,
            children_cpu_seconds: (fields.cutime + fields.cstime) as f64 / consts.ticks_per_second,
        })
    }

    /// Reads and parses `stat`, checks the identity and follows an exec.
    fn read_stat(&mut self, pid: u32, buf: &mut Vec<u8>) -> Result<StatFields, ProbeError> {
        let fields = {
            let text = read_required(pid, &self.stat, buf, STAT)?;
            // The name changes rarely (exec, prctl): no allocation unless it did.
            let comm = comm_of(text);
            if comm != self.comm.as_bytes() {
                self.comm = String::from_utf8_lossy(comm).into_owned();
            }
            parse_stat(text).ok_or_else(|| ProbeError::Io {
                pid,
                what: STAT,
                source: invalid("malformed /proc/PID/stat"),
            })?
        };
        // The kept descriptors already fail once the process is gone, so a reused pid
        // cannot be read through them; comparing costs nothing and guards the assumption.
        if fields.start_time != self.identity.start_time_ticks {
            return Err(self.identity_changed(fields.start_time, None));
        }
        // An exec keeps pid and start time, so only the exe tells it apart. Reading the
        // exe link every probe costs 2.2 µs (benches/probe.rs, `exe_readlink`), a quarter
        // of the probe and over its 2 µs budget; but every exec remaps the program text,
        // which the stat just read shows for free. So the link is read only when that
        // moved, and an exec of the same binary is accepted as the same daemon. A zombie
        // has no text (0) and no exe left to compare.
        if fields.state != ProcState::Zombie && fields.code_range != self.code_range {
            self.check_exe(fields.start_time, buf)?;
            self.code_range = fields.code_range;
        }
        Ok(fields)
    }

    /// The main thread's run time (nanoseconds, `schedstat`), read before anything else of
    /// a probe, when it can vouch that the process has not run: when the last `stat` showed
    /// one thread, not running. `None` otherwise, and without scheduler statistics.
    ///
    /// A file read when the run time was what it is now is not read again: only a
    /// process's own threads change its `stat` figures (CPU time, threads, state, memory
    /// grown), open and close its descriptors and are charged its storage I/O, and a thread
    /// that ran has its run time grown (the kernel adds each stretch on a CPU when the
    /// thread leaves it, and a running one's at each tick). Reading `schedstat` costs 1.3 µs
    /// against 4.4 for `stat`, 2.1 for `io` and 1.1 for the `fd` directory (cold reads at
    /// 1,000 processes). What a process's own run does not show is bounded by reading
    /// everything at least every [`IDLE_SKIPS_MAX`] + 1 probes: memory the kernel reclaims
    /// from an idle process, a parent change when its parent exits, and a descriptor table
    /// shared with another process (`CLONE_FILES`).
    fn idle_runtime(&mut self, pid: u32, buf: &mut Vec<u8>) -> Result<Option<u64>, ProbeError> {
        let single = self
            .last_fields
            .is_some_and(|f| f.threads == 1 && f.state != ProcState::Running);
        match &self.schedstat {
            Some(file) if single => match read_whole(file, buf) {
                Ok(0) => Err(ProbeError::Gone { pid }),
                Ok(n) => Ok(parse_schedstat(&buf[..n])),
                Err(e) if is_eacces(&e) => Ok(None),
                Err(e) => Err(classify(pid, SCHEDSTAT, e)),
            },
            _ => Ok(None),
        }
    }

    pub(crate) fn children(
        &mut self,
        threads: u64,
        out: &mut Vec<u32>,
    ) -> Result<bool, ProbeError> {
        let pid = self.identity.pid;
        let Some(main) = &self.children else {
            return Ok(false);
        };
        if threads <= 1 {
            SCRATCH.with_borrow_mut(|buf| -> Result<(), ProbeError> {
                let n = read_whole(main, buf).map_err(|e| classify(pid, CHILDREN, e))?;
                parse_pids(&buf[..n], out);
                Ok(())
            })?;
            return Ok(true);
        }
        // Several threads: each one's children file. Threads come and go between the
        // listing and the read, so a vanished one is skipped.
        let task =
            open_at(&self.dir, c"task", libc::O_DIRECTORY).map_err(|e| classify(pid, TASK, e))?;
        let entries = std::fs::read_dir(format!("/proc/self/fd/{}", task.as_raw_fd()))
            .map_err(|e| classify(pid, TASK, e))?;
        SCRATCH.with_borrow_mut(|buf| {
            for entry in entries.flatten() {
                let mut name = entry.file_name().into_encoded_bytes();
                name.extend_from_slice(b"/children");
                let Ok(name) = std::ffi::CString::new(name) else {
                    continue;
                };
                let Ok(file) = open_at(&task, &name, 0) else {
                    continue;
                };
                if let Ok(n) = read_whole(&file, buf) {
                    parse_pids(&buf[..n], out);
                }
            }
        });
        Ok(true)
    }

    /// Same pid and start time with another executable is an exec: the same process,
    /// now running another program. The identity follows it and the exec is kept for
    /// [`ProcessProbe::take_exec`]; the watcher carries on.
    fn check_exe(&mut self, _start_time: u64, buf: &mut Vec<u8>) -> Result<(), ProbeError> {
        let Some(expected) = &self.identity.exe else {
            return Ok(());
        };
        match read_exe(&self.dir, buf) {
            Ok(found) if found == expected.as_os_str().as_bytes() => Ok(()),
            Ok(found) => {
                let found = PathBuf::from(OsStr::from_bytes(found));
                let from = self.identity.exe.replace(found.clone());
                self.exec = Some(super::Exec { from, to: found });
                Ok(())
            }
            // Refused now (e.g. the daemon became non-dumpable): cannot compare.
            Err(e) if is_eacces(&e) => Ok(()),
            Err(e) => Err(classify(self.identity.pid, EXE, e)),
        }
    }

    fn identity_changed(&self, start_time: u64, exe: Option<PathBuf>) -> ProbeError {
        ProbeError::IdentityChanged {
            pid: self.identity.pid,
            expected: ProcessIdentity::describe(
                self.identity.start_time_ticks,
                self.identity.exe.as_deref(),
            ),
            found: ProcessIdentity::describe(start_time, exe.as_deref()),
        }
    }
}
