//! The load generator behind `perfvisor-loadgen` and `perfvisor loadgen`: a small,
//! well-behaved program used as a watched daemon by the
//! tests, the examples and the demo. It burns a given fraction of one core, holds (and
//! touches) a given amount of memory, can leak memory at a steady rate, and exits after a
//! given time or when killed.
//!
//! ```text
//! perfvisor-loadgen [--cpu FRACTION] [--hold-mib N] [--leak-mib-per-sec X]
//!                   [--write-mib-per-sec X [--write-dir DIR]] [--open-fds N] [--fd-limit N]
//!                   [--report-latency HOST:PORT --as ID [--token T] [--latency-ms A]
//!                    [--regress-after SECS --regress-latency-ms B]]
//!                   [--exit-after SECS]
//! ```
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
            other => {
                return Err(format!(
                    "unknown argument {other:?}; accepted: --cpu, --hold-mib, --leak-mib-per-sec, \
                     --write-mib-per-sec, --write-dir, --open-fds, --fd-limit, --report-latency, \
                     --as, --token, --latency-ms, --regress-after, --regress-latency-ms, --exit-after"
                ))
            }
        }
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
    let held = touched(args.hold_mib);
    let mut leaked: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    let mut next_report = Duration::ZERO;
    let mut noise: u64 = u64::from(std::process::id());
    // 10 ms steps while there is work to pace; an idle target (nothing to burn, leak, write
    // or report, no exit time to keep) wakes only once a second, so a thousand of them cost next to nothing and
    // do not disturb what an overhead measurement sees.
    let idle = args.cpu <= 0.0
        && args.leak_mib_per_sec <= 0.0
        && args.write_mib_per_sec <= 0.0
        && args.report_to.is_none()
        && args.exit_after.is_none();
    let period = if idle {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(10)
    };
    let mut leak_debt = 0.0f64;
    loop {
        let tick = Instant::now();
        if let Some(limit) = args.exit_after {
            if start.elapsed() >= limit {
                break;
            }
        }
        // Burn until this process's CPU time reaches `cpu` × wall time, so that the target
        // holds on average even when the machine is contended (a plain duty cycle would
        // fall short whenever the scheduler takes the core away).
        if args.cpu > 0.0 {
            let due = start.elapsed().as_secs_f64() * args.cpu;
            let mut x = 0u64;
            while own_cpu_seconds() < due && tick.elapsed() < period {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
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
        if let Some(scratch) = scratch.as_mut() {
            write_debt += args.write_mib_per_sec * period.as_secs_f64() * 1024.0;
            let kib = write_debt.floor() as usize;
            if kib >= 64 {
                scratch.write_kib(kib);
                write_debt -= kib as f64;
            }
        }
        if let Some(to) = &args.report_to {
            if start.elapsed() >= next_report {
                next_report += Duration::from_millis(100);
                let regressed = args
                    .regress_after
                    .is_some_and(|after| start.elapsed() >= after);
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
    }
    std::hint::black_box((&held, &leaked, &open));
    ExitCode::SUCCESS
}
