//! `perfvisor-loadgen`: a small, well-behaved load generator used as a watched daemon by the
//! tests, the examples and the demo. It burns a given fraction of one core, holds (and
//! touches) a given amount of memory, can leak memory at a steady rate, and exits after a
//! given time or when killed.
//!
//! ```text
//! perfvisor-loadgen [--cpu FRACTION] [--hold-mib N] [--leak-mib-per-sec X] [--exit-after SECS]
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    cpu: f64,
    hold_mib: usize,
    leak_mib_per_sec: f64,
    exit_after: Option<Duration>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        cpu: 0.0,
        hold_mib: 0,
        leak_mib_per_sec: 0.0,
        exit_after: None,
    };
    let mut it = std::env::args().skip(1);
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
                    .ok_or_else(|| format!("--cpu {v}: expected a fraction of one core from 0 to 1"))?;
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
            "--exit-after" => {
                let v = value("seconds")?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("--exit-after {v}: expected seconds ≥ 0"))?;
                args.exit_after = Some(Duration::from_secs_f64(secs));
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; accepted: --cpu, --hold-mib, --leak-mib-per-sec, --exit-after"
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

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perfvisor-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let held = touched(args.hold_mib);
    let mut leaked: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    let period = Duration::from_millis(10);
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
        if let Some(rest) = period.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    std::hint::black_box((&held, &leaked));
    ExitCode::SUCCESS
}
