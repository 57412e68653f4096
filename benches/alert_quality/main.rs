//! Alert-quality harness: owns the end-to-end measurement of what a person receives from
//! the real `perfvisor` binary watching real processes: how many alerts a quiet machine
//! produces (false alarms) and whether, how fast and how accurately real faults are alerted.
//!
//! ```text
//! cargo build --release --bin perfvisor --bin perfvisor-loadgen
//! cargo bench --bench alert_quality -- [--minutes 30] [--set quiet|fault|both]
//! ```
//!
//! Two `perfvisor run` instances (one per set, run at the same time, each with its own
//! database, port and webhook receiver) watch, at a 1 s probe interval with the default
//! rules:
//! - **quiet**: an idle process; a bursty worker (a full core 6 s in every 30 s, 20 % mean);
//!   a cache warming up (256 MiB over 2 min, then flat); a GC sawtooth (0 → 128 MiB every
//!   60 s); an HTTP server with an HTTP health check (managed); a start script that `exec`s
//!   the real program (managed); operator actions through the CLI (`stop`, `start`,
//!   `restart`, a config edit + `reload`); and host activity (a `gcc` compile loop, then a
//!   `tar czf` of /usr/share/doc).
//! - **fault**: leaks of 30 and 1 MiB/min; a descriptor leak towards a limit of 1024 that it
//!   would reach about 25 min after it starts; a crash loop (managed, `restart = "always"`,
//!   exits with status 1 every 3 s); a full core for 5 min; an app latency stepping 12 → 36 ms.
//!
//! The schedule scales with `--minutes` (each event at a fixed fraction of the run) but the
//! rates are real, so a short run cannot see the slow faults: they are reported as "not
//! reached in run", not as failures. Every alert is counted as received by the webhook sink,
//! timestamped on receipt. The table goes to stdout, the same figures as JSON to
//! `target/alert-quality.json`, and each run's configs and perfvisor logs stay in
//! `target/alert-quality-run/` for a post-mortem.
//!
//! It builds nothing: it runs `$PERFVISOR_BIN` (default: the `perfvisor` binary cargo built
//! for this bench, i.e. `target/release/perfvisor`) and `$PERFVISOR_LOADGEN_BIN` (default:
//! `target/release/perfvisor-loadgen`).
//!
//! Every process it starts is a `Proc`: in a process group of its own, with
//! `PR_SET_PDEATHSIG` = SIGKILL (so it dies with the harness even when the harness is killed
//! outright; PDEATHSIG fires when the forking *thread* exits, so everything is started from
//! the main thread), and killed by pid (its group, then itself) and reaped when dropped.
//! perfvisor instances are first asked to stop with SIGTERM, which stops their managed
//! daemons; as perfvisor deliberately leaves its daemons running when it is killed, any
//! process whose command line still names this run's directory is then killed by pid.
//! Ctrl-C and SIGTERM end the run early and still clean up and print what was measured.
//!
//! Where things are: `sets` (the two sets' targets, faults and instances), `receiver` (the
//! webhook receiver), `run` (the schedule and shutdown), `report` (judging and the table),
//! `procs` (stragglers, /proc, binaries); `../common` holds [`Proc`], HTTP through `ureq`
//! and the slope shared with the overhead harness.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MIB: f64 = 1024.0 * 1024.0;
/// The API token of both instances (mutating CLI calls and pushed metrics need one).
const TOKEN: &str = "alert-quality";
/// The descriptor leak's soft limit, and its rate: it reaches the limit ~25 min after it
/// starts, so "alerted at least 10 min before the limit" is measurable in a 30 min run.
const FD_LIMIT: f64 = 1024.0;
const FD_RATE: f64 = 1000.0 / (25.0 * 60.0);
/// The full-core fault's length.
const CPU_FAULT_SECS: f64 = 300.0;
const LATENCY_MS: f64 = 12.0;
const LATENCY_STEP: f64 = 3.0;

/// Set by SIGINT/SIGTERM: the main loop ends the run early (and still cleans up).
static STOP: AtomicBool = AtomicBool::new(false);
/// Numbers the CLI calls' output files.
static CLI_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

struct Opts {
    minutes: f64,
    quiet: bool,
    fault: bool,
}

const USAGE: &str = "cargo bench --bench alert_quality -- [--minutes 30] [--set quiet|fault|both]";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        minutes: 30.0,
        quiet: true,
        fault: true,
    };
    // `--key value` and `--key=value` alike.
    let mut flags = Flags::new(args);
    while let Some(key) = flags.next_key() {
        match key.as_str() {
            // cargo passes `--bench` to every bench binary.
            "--bench" => {}
            "--minutes" => {
                let v = flags.value(&key)?;
                opts.minutes = v
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m >= 0.5)
                    .ok_or_else(|| format!("--minutes {v}: expected minutes ≥ 0.5"))?;
            }
            "--set" => {
                let v = flags.value(&key)?;
                (opts.quiet, opts.fault) = match v.as_str() {
                    "quiet" => (true, false),
                    "fault" => (false, true),
                    "both" => (true, true),
                    _ => return Err(format!("--set {v}: expected quiet, fault or both")),
                };
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

#[path = "../common/mod.rs"]
mod common;
mod procs;
mod receiver;
mod report;
mod run;
mod sets;

use common::*;
use procs::*;
use receiver::*;
use report::*;
use run::*;
use sets::*;

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("alert_quality: {e}");
            }
            eprintln!("usage: {USAGE}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alert_quality: {e}");
            ExitCode::FAILURE
        }
    }
}
