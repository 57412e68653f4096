//! The load generator behind `perfvisor-loadgen` and `perfvisor loadgen`: a small,
//! well-behaved program used as a watched daemon by the
//! tests, the examples and the demo. It burns a given fraction of one core, holds (and
//! touches) a given amount of memory, can leak memory at a steady rate, and exits after a
//! given time or when killed.
//!
//! ```text
//! perfvisor-loadgen [--cpu FRACTION] [--burst-cpu-secs B --burst-every E] [--hold-mib N]
//!                   [--leak-mib-per-sec X | --leak-mib-per-min X]
//!                   [--warmup-mib N --warmup-secs S] [--sawtooth-mib N --sawtooth-period S]
//!                   [--write-mib-per-sec X [--write-dir DIR]] [--open-fds N] [--fd-limit N]
//!                   [--fd-leak-per-sec X] [--start-after SECS] [--stop-after SECS]
//!                   [--report-latency HOST:PORT --as ID [--token T] [--latency-ms A]
//!                    [--regress-after SECS --regress-latency-ms B]]
//!                   [--http HOST:PORT] [--exit-after SECS [--exit-code N]]
//! ```
//!
//! Every behaviour is a function of the time since start, so a run is reproducible:
//! - `--burst-cpu-secs B --burst-every E`: a full core for the first B s of every E s, idle
//!   the rest (mean B/E of a core); adds to `--cpu`.
//! - `--warmup-mib N --warmup-secs S`: a cache warming up: N MiB allocated and touched
//!   evenly over S s, then held flat.
//! - `--sawtooth-mib N --sawtooth-period S`: a garbage-collected heap: grows evenly to N MiB
//!   over S s, is freed at once, and grows again.
//! - `--leak-mib-per-min X` is `--leak-mib-per-sec X/60` (fractions are fine either way).
//! - `--fd-leak-per-sec X`: opens descriptors on `/dev/null` at X per second and never closes
//!   them; at the limit (see `--fd-limit`) it keeps what it has and says so once on stderr.
//! - `--start-after S` delays the CPU load, the leaks and the writes (not `--hold-mib`, the
//!   warm-up or the sawtooth) by S s, `--stop-after T` ends them T s after they began: a fault
//!   with a known start and end while the process itself lives on.
//! - `--http HOST:PORT` answers every HTTP request with `200 ok` (a health endpoint).
//! - `--exit-code N` is the status of the `--exit-after` exit (default 0), so a managed
//!   daemon with `restart = "always"` and a short `--exit-after` is a crash loop.
//!
//! `--report-latency` makes it a service that reports its own request latency to a running
//! perfvisor (`POST /api/v1/metrics` as daemon `--as`, ten times a second, `A` ms ± 10 %),
//! stepping up to `B` ms after `--regress-after` seconds: the demo's latency regression.
//!
//! Writes go to a scratch file in `--write-dir` (default: the temp dir), appended and
//! truncated every 256 MiB so that every write dirties fresh pages (which is what the
//! kernel counts as written bytes) while the disk use stays bounded; the file is removed at
//! exit. `--open-fds` opens that many descriptors on `/dev/null` and holds them;
//! `--fd-limit` lowers the soft `RLIMIT_NOFILE` first.

use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Args {
    cpu: f64,
    hold_mib: usize,
    leak_mib_per_sec: f64,
    write_mib_per_sec: f64,
    write_dir: std::path::PathBuf,
    open_fds: usize,
    fd_limit: Option<u64>,
    exit_after: Option<Duration>,
    report_to: Option<String>,
    report_as: String,
    token: Option<String>,
    latency_ms: f64,
    regress_after: Option<Duration>,
    regress_latency_ms: f64,
    burst_cpu_secs: f64,
    burst_every: f64,
    warmup_mib: usize,
    warmup_secs: f64,
    sawtooth_mib: usize,
    sawtooth_period: f64,
    fd_leak_per_sec: f64,
    start_after: Duration,
    stop_after: Option<Duration>,
    http: Option<String>,
    exit_code: u8,
}

/// Parses a non-negative, finite number of `what` for `flag`.
fn non_negative(flag: &str, v: &str, what: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("{flag} {v}: expected {what} ≥ 0"))
}

/// Parses a whole number of MiB for `flag`.
fn whole_mib(flag: &str, v: &str) -> Result<usize, String> {
    v.parse()
        .map_err(|_| format!("{flag} {v}: expected a whole number of MiB"))
}

fn parse(argv: Vec<String>) -> Result<Args, String> {
    let mut args = Args {
        cpu: 0.0,
        hold_mib: 0,
        leak_mib_per_sec: 0.0,
        write_mib_per_sec: 0.0,
        write_dir: std::env::temp_dir(),
        open_fds: 0,
        fd_limit: None,
        exit_after: None,
        report_to: None,
        report_as: "loadgen".into(),
        token: None,
        latency_ms: 10.0,
        regress_after: None,
        regress_latency_ms: 40.0,
        burst_cpu_secs: 0.0,
        burst_every: 0.0,
        warmup_mib: 0,
        warmup_secs: 0.0,
        sawtooth_mib: 0,
        sawtooth_period: 0.0,
        fd_leak_per_sec: 0.0,
        start_after: Duration::ZERO,
        stop_after: None,
        http: None,
        exit_code: 0,
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value ({what})"))
        };
        match flag.as_str() {
            "--cpu" => {
                let v = value("a fraction of one core, 0 to 1")?;
                args.cpu = v
                    .parse::<f64>()
                    .ok()
                    .filter(|c| (0.0..=1.0).contains(c))
                    .ok_or_else(|| {
                        format!("--cpu {v}: expected a fraction of one core from 0 to 1")
                    })?;
            }
            "--hold-mib" => {
                let v = value("MiB to hold")?;
                args.hold_mib = v
                    .parse()
                    .map_err(|_| format!("--hold-mib {v}: expected a whole number of MiB"))?;
            }
            "--leak-mib-per-sec" => {
                let v = value("MiB per second")?;
                args.leak_mib_per_sec = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("--leak-mib-per-sec {v}: expected a number ≥ 0"))?;
            }
            "--report-latency" => args.report_to = Some(value("HOST:PORT of perfvisor's API")?),
            "--as" => args.report_as = value("the daemon id")?,
            "--token" => args.token = Some(value("the API token")?),
            "--latency-ms" | "--regress-latency-ms" => {
                let v = value("milliseconds")?;
                let ms = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| format!("{flag} {v}: expected milliseconds > 0"))?;
                if flag == "--latency-ms" {
                    args.latency_ms = ms;
                } else {
                    args.regress_latency_ms = ms;
                }
            }
            "--regress-after" => {
                let v = value("seconds")?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("--regress-after {v}: expected seconds ≥ 0"))?;
                args.regress_after = Some(Duration::from_secs_f64(secs));
            }
            "--exit-after" => {
                let v = value("seconds")?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("--exit-after {v}: expected seconds ≥ 0"))?;
                args.exit_after = Some(Duration::from_secs_f64(secs));
            }
            "--write-mib-per-sec" => {
                let v = value("MiB per second")?;
                args.write_mib_per_sec = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("--write-mib-per-sec {v}: expected a number ≥ 0"))?;
            }
            "--write-dir" => {
                args.write_dir = value("a directory")?.into();
            }
            "--open-fds" => {
                let v = value("descriptors to hold open")?;
                args.open_fds = v
                    .parse()
                    .map_err(|_| format!("--open-fds {v}: expected a whole number"))?;
            }
            "--fd-limit" => {
                let v = value("soft RLIMIT_NOFILE")?;
                args.fd_limit = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| *n >= 16)
                        .ok_or_else(|| format!("--fd-limit {v}: expected a whole number ≥ 16"))?,
                );
            }
            "--leak-mib-per-min" => {
                let v = value("MiB per minute")?;
                args.leak_mib_per_sec = non_negative(&flag, &v, "MiB per minute")? / 60.0;
            }
            "--burst-cpu-secs" => {
                let v = value("seconds of a full core per burst")?;
                args.burst_cpu_secs = non_negative(&flag, &v, "seconds")?;
            }
            "--burst-every" => {
                let v = value("seconds between burst starts")?;
                args.burst_every = non_negative(&flag, &v, "seconds")?;
            }
            "--warmup-mib" => args.warmup_mib = whole_mib(&flag, &value("MiB to warm up")?)?,
            "--warmup-secs" => {
                let v = value("seconds of warm-up")?;
                args.warmup_secs = non_negative(&flag, &v, "seconds")?;
            }
            "--sawtooth-mib" => args.sawtooth_mib = whole_mib(&flag, &value("peak MiB")?)?,
            "--sawtooth-period" => {
                let v = value("seconds per tooth")?;
                args.sawtooth_period = non_negative(&flag, &v, "seconds")?;
            }
            "--fd-leak-per-sec" => {
                let v = value("descriptors per second")?;
                args.fd_leak_per_sec = non_negative(&flag, &v, "descriptors per second")?;
            }
            "--start-after" => {
                let v = value("seconds")?;
                args.start_after = Duration::from_secs_f64(non_negative(&flag, &v, "seconds")?);
            }
            "--stop-after" => {
                let v = value("seconds")?;
                args.stop_after =
                    Some(Duration::from_secs_f64(non_negative(&flag, &v, "seconds")?));
            }
            "--http" => args.http = Some(value("HOST:PORT to answer HTTP on")?),
            "--exit-code" => {
                let v = value("exit status, 0 to 255")?;
                args.exit_code = v
                    .parse()
                    .map_err(|_| format!("--exit-code {v}: expected a whole number 0 to 255"))?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; accepted: --cpu, --burst-cpu-secs, --burst-every, \
                     --hold-mib, --leak-mib-per-sec, --leak-mib-per-min, --warmup-mib, \
                     --warmup-secs, --sawtooth-mib, --sawtooth-period, --write-mib-per-sec, \
                     --write-dir, --open-fds, --fd-limit, --fd-leak-per-sec, --start-after, \
                     --stop-after, --report-latency, --as, --token, --latency-ms, \
                     --regress-after, --regress-latency-ms, --http, --exit-after, --exit-code"
                ))
            }
        }
    }
    if (args.burst_cpu_secs > 0.0) != (args.burst_every > 0.0)
        || args.burst_cpu_secs > args.burst_every
    {
        return Err(format!(
            "--burst-cpu-secs {} --burst-every {}: give both, with the burst no longer than \
             the period",
            args.burst_cpu_secs, args.burst_every
        ));
    }
    if args.sawtooth_mib > 0 && args.sawtooth_period <= 0.0 {
        return Err("--sawtooth-mib needs --sawtooth-period > 0".into());
    }
    Ok(args)
}

/// CPU seconds this process has used.
fn own_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes through it.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Allocates `mib` MiB and writes every page so it is resident.
fn touched(mib: usize) -> Vec<u8> {
    let mut v = vec![0u8; mib * 1024 * 1024];
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    v
}

/// Lowers the soft limit on open descriptors.
fn set_fd_limit(soft: u64) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit; getrlimit/setrlimit only read/write it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err("getrlimit(RLIMIT_NOFILE) failed".into());
        }
        limit.rlim_cur = soft.min(limit.rlim_max);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(format!("setrlimit(RLIMIT_NOFILE, {soft}) failed"));
        }
    }
    Ok(())
}

/// A scratch file that is appended to and truncated every 256 MiB, removed on drop.
struct Scratch {
    path: std::path::PathBuf,
    file: std::fs::File,
    written: u64,
    chunk: Vec<u8>,
}

impl Scratch {
    fn create(dir: &std::path::Path) -> Result<Scratch, String> {
        let path = dir.join(format!("perfvisor-loadgen-{}.scratch", std::process::id()));
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Scratch {
            path,
            file,
            written: 0,
            chunk: vec![0x5a; 64 * 1024],
        })
    }

    fn write_kib(&mut self, kib: usize) {
        use std::io::{Seek, Write};
        let mut left = kib * 1024;
        while left > 0 {
            if self.written >= 256 << 20 {
                let _ = self.file.set_len(0);
                let _ = self.file.seek(std::io::SeekFrom::Start(0));
                self.written = 0;
            }
            let n = left.min(self.chunk.len());
            if self.file.write_all(&self.chunk[..n]).is_err() {
                return;
            }
            self.written += n as u64;
            left -= n;
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Posts one latency observation to perfvisor's API; failures (perfvisor not up yet) are
/// ignored: the next one will do.
fn report_latency(to: &str, daemon: &str, token: Option<&str>, seconds: f64) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(to) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let body = format!(
        r#"[{{"metric":"request.latency_seconds","value":{seconds},"daemon":"{daemon}","kind":"observation"}}]"#
    );
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let _ = write!(
        stream,
        "POST /api/v1/metrics HTTP/1.1\r\nHost: {to}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

/// Runs the load generator with these arguments (without the program name); returns the
/// process exit code (2 for bad arguments).
pub fn run(argv: Vec<String>) -> ExitCode {
    let args = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perfvisor-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(limit) = args.fd_limit {
        if let Err(e) = set_fd_limit(limit) {
            eprintln!("perfvisor-loadgen: {e}");
            return ExitCode::from(2);
        }
    }
    let mut open = Vec::with_capacity(args.open_fds);
    for _ in 0..args.open_fds {
        match std::fs::File::open("/dev/null") {
            Ok(f) => open.push(f),
            Err(e) => {
                eprintln!(
                    "perfvisor-loadgen: opening descriptor {}: {e}",
                    open.len() + 1
                );
                return ExitCode::from(2);
            }
        }
    }
    let mut scratch = if args.write_mib_per_sec > 0.0 {
        match Scratch::create(&args.write_dir) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("perfvisor-loadgen: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let mut write_debt = 0.0f64;
    if let Some(addr) = &args.http {
        if let Err(e) = serve_http(addr) {
            eprintln!("perfvisor-loadgen: {e}");
            return ExitCode::from(2);
        }
    }
    let held = touched(args.hold_mib);
    let mut leaked: Vec<Vec<u8>> = Vec::new();
    let mut warmed: Vec<Vec<u8>> = Vec::new();
    let mut heap: Vec<Mapped> = Vec::new();
    let start = Instant::now();
    let mut next_report = Duration::ZERO;
    let mut noise: u64 = u64::from(std::process::id());
    // 10 ms steps while there is work to pace; an idle target (nothing to burn, leak, write
    // or report, no exit time to keep) wakes only once a second, so a thousand of them cost
    // next to nothing and do not disturb what an overhead measurement sees.
    let idle = args.cpu <= 0.0
        && args.burst_every <= 0.0
        && args.leak_mib_per_sec <= 0.0
        && args.write_mib_per_sec <= 0.0
        && args.fd_leak_per_sec <= 0.0
        && args.warmup_mib == 0
        && args.sawtooth_mib == 0
        && args.report_to.is_none()
        && args.exit_after.is_none();
    let period = if idle {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(10)
    };
    let mut leak_debt = 0.0f64;
    let mut fd_debt = 0.0f64;
    let mut fds_full = false;
    // CPU time already used when the load began, plus what bursts burned: the steady `--cpu`
    // target is paced against the rest.
    let mut cpu_base: Option<f64> = None;
    let exit = loop {
        let tick = Instant::now();
        let elapsed = start.elapsed();
        if let Some(limit) = args.exit_after {
            if elapsed >= limit {
                break ExitCode::from(args.exit_code);
            }
        }
        // Time since the load (CPU, leaks, writes) began, while it lasts.
        let load = elapsed
            .checked_sub(args.start_after)
            .filter(|t| args.stop_after.is_none_or(|stop| *t < stop));
        if let Some(t) = load {
            let base = *cpu_base.get_or_insert_with(own_cpu_seconds);
            let t = t.as_secs_f64();
            let bursting = args.burst_every > 0.0 && t % args.burst_every < args.burst_cpu_secs;
            if bursting {
                let before = own_cpu_seconds();
                burn_until(|| tick.elapsed() >= period);
                cpu_base = Some(base + own_cpu_seconds() - before);
            } else if args.cpu > 0.0 {
                // Burn until this process's CPU time reaches `cpu` × load time, so that the
                // target holds on average even when the machine is contended (a plain duty
                // cycle would fall short whenever the scheduler takes the core away).
                let due = base + t * args.cpu;
                burn_until(|| own_cpu_seconds() >= due || tick.elapsed() >= period);
            }
            if args.leak_mib_per_sec > 0.0 {
                leak_debt += args.leak_mib_per_sec * period.as_secs_f64() * 1024.0;
                let kib = leak_debt.floor() as usize;
                if kib >= 64 {
                    // vec![1; n] writes every byte, so the leak is resident at once.
                    leaked.push(vec![1u8; kib * 1024]);
                    leak_debt -= kib as f64;
                }
            }
            if args.fd_leak_per_sec > 0.0 && !fds_full {
                fd_debt += args.fd_leak_per_sec * period.as_secs_f64();
                while fd_debt >= 1.0 {
                    fd_debt -= 1.0;
                    match std::fs::File::open("/dev/null") {
                        Ok(f) => open.push(f),
                        Err(e) => {
                            eprintln!(
                                "perfvisor-loadgen: descriptor leak stopped at {} leaked: {e}",
                                open.len()
                            );
                            fds_full = true;
                            break;
                        }
                    }
                }
            }
            if let Some(scratch) = scratch.as_mut() {
                write_debt += args.write_mib_per_sec * period.as_secs_f64() * 1024.0;
                let kib = write_debt.floor() as usize;
                if kib >= 64 {
                    scratch.write_kib(kib);
                    write_debt -= kib as f64;
                }
            }
        }
        let secs = elapsed.as_secs_f64();
        if args.warmup_mib > 0 {
            let due = if args.warmup_secs > 0.0 {
                (args.warmup_mib as f64 * secs / args.warmup_secs).min(args.warmup_mib as f64)
            } else {
                args.warmup_mib as f64
            };
            while (warmed.len() as f64) + 1.0 <= due {
                warmed.push(touched(1));
            }
        }
        if args.sawtooth_mib > 0 {
            let phase = secs % args.sawtooth_period / args.sawtooth_period;
            let due = (args.sawtooth_mib as f64 * phase) as usize;
            if heap.len() > due {
                // The collection: everything goes back to the kernel at once.
                heap.clear();
            }
            while heap.len() < due {
                match Mapped::touched(1 << 20) {
                    Some(m) => heap.push(m),
                    None => break,
                }
            }
        }
        if let Some(to) = &args.report_to {
            if elapsed >= next_report {
                next_report += Duration::from_millis(100);
                let regressed = args.regress_after.is_some_and(|after| elapsed >= after);
                let base = if regressed {
                    args.regress_latency_ms
                } else {
                    args.latency_ms
                };
                // A small LCG: ±10 % noise without a dependency.
                noise = noise
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let jitter = ((noise >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.2;
                report_latency(
                    to,
                    &args.report_as,
                    args.token.as_deref(),
                    base * (1.0 + jitter) / 1000.0,
                );
            }
        }
        if let Some(rest) = period.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    };
    std::hint::black_box((&held, &leaked, &warmed, &open));
    exit
}

/// Spins until `done` says so.
fn burn_until(mut done: impl FnMut() -> bool) {
    let mut x = 0u64;
    while !done() {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// Anonymous memory mapped, touched, and unmapped on drop: freeing it returns it to the
/// kernel at once, which the allocator does not promise (glibc keeps freed heap memory), so
/// the sawtooth's drops are real drops in resident memory.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn touched(len: usize) -> Option<Mapped> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is referred to.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        for i in (0..len).step_by(4096) {
            // SAFETY: `i < len`, inside the mapping just made writable.
            unsafe { ptr.cast::<u8>().add(i).write_volatile(1) };
        }
        Some(Mapped { ptr, len })
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `touched`, unmapped only here.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// Answers every HTTP request on `addr` with `200 ok`, on a thread of its own, for the rest
/// of the process's life: a health endpoint for checks.
fn serve_http(addr: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("--http {addr}: cannot bind: {e}"))?;
    std::thread::Builder::new()
        .name("loadgen-http".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                // One request per connection: read the head, answer, close.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
                      Connection: close\r\n\r\nok\n",
                );
            }
        })
        .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        parse(v.iter().map(|s| s.to_string()).collect())
    }

    /// Ensures a leak given per minute is the same leak per second, fractions included.
    #[test]
    fn leak_per_minute_is_a_sixtieth_per_second() {
        let a = args(&["--leak-mib-per-min", "1"]).unwrap();
        assert!((a.leak_mib_per_sec - 1.0 / 60.0).abs() < 1e-12);
        let a = args(&["--leak-mib-per-sec", "0.0166"]).unwrap();
        assert!((a.leak_mib_per_sec - 0.0166).abs() < 1e-12);
    }

    /// Ensures bursts need both flags and fit in their period, and a sawtooth needs a period.
    #[test]
    fn bursts_and_sawtooth_are_checked_whole() {
        assert!(args(&["--burst-cpu-secs", "6"]).is_err());
        assert!(args(&["--burst-cpu-secs", "6", "--burst-every", "5"]).is_err());
        assert!(args(&["--burst-cpu-secs", "6", "--burst-every", "30"]).is_ok());
        assert!(args(&["--sawtooth-mib", "64"]).is_err());
        assert!(args(&["--sawtooth-mib", "64", "--sawtooth-period", "60"]).is_ok());
    }

    /// Ensures the fault window flags, the exit code and the old flags parse together.
    #[test]
    fn fault_window_exit_code_and_old_flags_parse() {
        let a = args(&[
            "--cpu",
            "1",
            "--start-after",
            "60",
            "--stop-after",
            "300",
            "--exit-after",
            "3",
            "--exit-code",
            "1",
            "--fd-leak-per-sec",
            "0.5",
            "--fd-limit",
            "1024",
            "--hold-mib",
            "4",
            "--http",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(a.start_after, Duration::from_secs(60));
        assert_eq!(a.stop_after, Some(Duration::from_secs(300)));
        assert_eq!(a.exit_code, 1);
        assert_eq!(a.fd_limit, Some(1024));
        assert!(args(&["--exit-code", "256"]).is_err());
        assert!(args(&["--no-such-flag"])
            .unwrap_err()
            .contains("--fd-leak-per-sec"));
    }
}
