//! Overhead harness: owns the side-by-side measurement of what watching N daemons at a 1 s
//! interval costs with perfvisor and with its peers (pidstat, prometheus-process-exporter,
//! monit) and with a hand-written /proc reader (the floor), all on the same target
//! processes in one run, and how close each one's readings are to the truth.
//!
//! ```text
//! cargo bench --bench overhead -- [--n 10,100,1000] [--seconds 60] [--warmup 10]
//!                                 [--monitors perfvisor,pidstat,process-exporter,monit,floor]
//! ```
//!
//! For each N: N `perfvisor-loadgen` targets (N−2 idle, one burning 30 % of a core, one
//! holding 128 MiB), then each monitor in turn: started on exactly those pids, warmed up,
//! measured over a fixed window, asked what it saw, stopped. Figures:
//! - CPU: utime+stime of the monitor's whole process tree, plus cutime+cstime (children that
//!   exited and were reaped inside the tree), over the window's wall time, in % of one core.
//! - Memory: the peak of the tree's summed VmRSS sampled every second (warm-up included),
//!   and VmHWM of the monitor's main process.
//! - Truth: the harness reads the two special targets' /proc over the same window.
//!
//! Only the monitors' own work is counted. The harness's sampling and its calls to the
//! monitors' interfaces are not, with one deliberate exception: process-exporter collects
//! when scraped, so the harness scrapes it every second (as Prometheus would) and the
//! scrape's cost lands in the exporter. perfvisor's API and `monit status` are asked only
//! after the window closes.
//!
//! Every process the harness starts is a `Proc`, killed by pid (SIGKILL, then reaped) when
//! dropped, panics included; they also get `PR_SET_PDEATHSIG` = SIGKILL, so they die with
//! the harness even when it is killed outright. PDEATHSIG fires when the *thread* that
//! forked exits, so every process is started from the main thread.
//!
//! A monitor whose binary is missing is reported as "not installed", unless
//! `PERFVISOR_REQUIRE_EXTERNAL=1`, which makes that an error.
//!
//! Where things are: `opts` (the command line), `targets` (the watched processes), `monitor`
//! (what a monitor is to the harness) and one file per monitor (`perfvisor_mon`, `pidstat`,
//! `exporter`, `monit`, `floor`), `run` (one size and its table), `soak`, `system` (short
//! commands, polling, /proc); `../common` holds [`Proc`], HTTP through `ureq` and the slope
//! shared with the alert-quality harness.
//!
//! Hidden mode: `--floor-child CPU_PID,MEM_PID PID,PID,...` is the floor monitor itself
//! (the bench binary re-executed), see [`floor_child`].

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PERFVISOR: &str = env!("CARGO_BIN_EXE_perfvisor");
const LOADGEN: &str = env!("CARGO_BIN_EXE_perfvisor-loadgen");

/// The probe interval asked of every monitor, and the harness's sampling cadence.
const TICK: Duration = Duration::from_secs(1);
/// Index of the target burning `BURN` of a core.
const CPU_TARGET: usize = 0;
/// Index of the target holding `HOLD_MIB`.
const MEM_TARGET: usize = 1;
const BURN: f64 = 0.3;
const HOLD_MIB: u64 = 128;
const MIB: f64 = 1024.0 * 1024.0;

#[path = "../common/mod.rs"]
mod common;
mod exporter;
mod floor;
mod monit;
mod monitor;
mod opts;
mod perfvisor_mon;
mod pidstat;
mod run;
mod soak;
mod system;
mod targets;

use common::*;
use exporter::*;
use floor::*;
use monit::*;
use monitor::*;
use opts::*;
use perfvisor_mon::*;
use pidstat::*;
use run::*;
use soak::*;
use system::*;
use targets::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--floor-child") {
        floor_child(&args[i + 1..]);
        return;
    }
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("overhead: {e}");
            }
            eprintln!("usage: {USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    // 1000 targets and monitors that keep a few descriptors per target open.
    raise_nofile();
    if let Some(minutes) = opts.soak_minutes {
        match soak(minutes, &opts) {
            Ok(()) => return,
            Err(e) => {
                println!("soak failed: {e}");
                std::process::exit(1);
            }
        }
    }
    print_header(&opts);
    for &n in &opts.sizes {
        match run_size(n, &opts) {
            Ok(table) => println!("{table}"),
            Err(e) => {
                println!("\n### N = {n}: failed: {e}\n");
                if opts.require_external {
                    std::process::exit(1);
                }
            }
        }
    }
}
