//! One size: start the targets, run each monitor in turn, and render the table.

use super::*;

// ---------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------

pub(crate) struct Measured {
    /// Fraction of one core.
    pub(crate) cpu: f64,
    pub(crate) peak_mib: f64,
    pub(crate) hwm_mib: Option<f64>,
    pub(crate) truth_cpu_pct: f64,
    pub(crate) truth_rss_mib: f64,
    /// Share of all the host's cores busy during the window (everything, not just the
    /// monitor): how contended the measurement was.
    pub(crate) host_busy_pct: Option<f64>,
    pub(crate) reading: Result<Reading, String>,
    pub(crate) notes: Vec<String>,
}

pub(crate) enum Outcome {
    NotInstalled(String),
    Failed(String),
    Done(Measured),
}

pub(crate) fn make_monitor(kind: Kind, dir: &Path) -> Result<Box<dyn Monitor>, String> {
    let log = dir.join(format!("{}.log", kind.name()));
    Ok(match kind {
        Kind::Perfvisor => Box::new(PerfvisorMon {
            bin: PERFVISOR.to_string(),
            tag: "perfvisor",
            proc: None,
            port: free_port()?,
            log,
            token: None,
        }),
        Kind::PerfvisorBaseline => Box::new(PerfvisorMon {
            bin: std::env::var("PERFVISOR_BASELINE_BIN")
                .map_err(|_| "PERFVISOR_BASELINE_BIN (the baseline perfvisor binary)")?,
            tag: "perfvisor-baseline",
            proc: None,
            port: free_port()?,
            log,
            token: None,
        }),
        Kind::Pidstat => Box::new(PidstatMon {
            bin: which("pidstat").ok_or("pidstat (sysstat)")?,
            proc: None,
            out: dir.join("pidstat.out"),
            from: 0,
            to: 0,
        }),
        Kind::ProcessExporter => Box::new(ExporterMon {
            bin: find_exporter().ok_or("prometheus-process-exporter")?,
            proc: None,
            port: free_port()?,
            log,
            scrapes: Vec::new(),
            failures: 0,
        }),
        Kind::Monit => Box::new(MonitMon {
            bin: which("monit").ok_or("monit")?,
            proc: None,
            rc: dir.join("monitrc"),
            log,
        }),
        Kind::Floor => Box::new(FloorMon {
            proc: None,
            stdin: None,
            out: dir.join("floor.out"),
            log,
        }),
    })
}

pub(crate) fn run_monitor(kind: Kind, ctx: &Ctx, opts: &Opts) -> Outcome {
    let mut mon = match make_monitor(kind, &ctx.dir) {
        Ok(m) => m,
        Err(missing) => return Outcome::NotInstalled(missing),
    };
    let failed = |mon: &mut Box<dyn Monitor>, what: String| {
        let log = tail(&mon.log(), 5);
        Outcome::Failed(if log.is_empty() {
            what
        } else {
            format!("{what}; log: {}", log.replace('\n', " | "))
        })
    };
    let started = Instant::now();
    if let Err(e) = mon.start(ctx) {
        return failed(&mut mon, e);
    }
    eprintln!(
        "  {}: watching {} targets after {:.1} s; warm-up {} s, window {} s",
        kind.name(),
        ctx.n,
        started.elapsed().as_secs_f64(),
        opts.warmup,
        opts.seconds
    );
    let mut tree = Tree::new(mon.proc().pid());
    let mut next = Instant::now();
    for _ in 0..opts.warmup {
        next += TICK;
        sleep_until(next);
        if !mon.proc().running() {
            return failed(&mut mon, "exited during warm-up".into());
        }
        tree.sample();
        mon.tick(ctx, false);
    }

    // Truth over the target's whole process tree (one process for the single shape).
    let mut cpu_truth = Tree::new(ctx.cpu_pid);
    let mut mem_truth = Tree::new(ctx.mem_pid);
    let mut truth_ticks = |_pid: u32| cpu_truth.sample().0;
    tree.rescan();
    let (cpu0, _) = tree.sample();
    let t0 = Instant::now();
    let wall0_ms = unix_ms();
    let target0 = truth_ticks(ctx.cpu_pid);
    let host0 = host_cpu();
    mon.window_start(ctx);
    let (mut cpu1, mut t1, mut target1) = (cpu0, t0, target0);
    let mut rss_truth = Vec::new();
    for i in 1..=opts.seconds {
        next += TICK;
        sleep_until(next);
        if i % 5 == 0 || i == opts.seconds {
            tree.rescan();
        }
        if !mon.proc().running() {
            return failed(&mut mon, "exited during the window".into());
        }
        (cpu1, _) = tree.sample();
        t1 = Instant::now();
        target1 = truth_ticks(ctx.cpu_pid);
        rss_truth.push(mem_truth.sample().1 as f64 / 1024.0);
        if i < opts.seconds {
            mon.tick(ctx, true);
        }
    }
    let wall1_ms = unix_ms();
    let host_busy_pct = match (host0, host_cpu()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some((b1 - b0) as f64 / (t1 - t0) as f64 * 100.0)
        }
        _ => None,
    };
    mon.window_end(ctx);
    let secs = t1.duration_since(t0).as_secs_f64();
    let hwm_mib = status_kib(tree.root, "VmHWM:").map(|k| k as f64 / 1024.0);
    let reading = mon.report(ctx, &Window { wall0_ms, wall1_ms });
    mon.stop();
    Outcome::Done(Measured {
        cpu: (cpu1 - cpu0) as f64 / clk_tck() / secs,
        peak_mib: tree.peak_kib as f64 / 1024.0,
        hwm_mib,
        truth_cpu_pct: (target1 - target0) as f64 / clk_tck() / secs * 100.0,
        truth_rss_mib: rss_truth.iter().sum::<f64>() / rss_truth.len().max(1) as f64,
        host_busy_pct,
        reading,
        notes: mon.notes(),
    })
}

pub(crate) fn run_size(n: usize, opts: &Opts) -> Result<String, String> {
    let tag = format!("pvh{}n{n}", std::process::id());
    let dir = tempfile::Builder::new()
        .prefix("pv-overhead-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (round, &shape) in opts.shapes.iter().enumerate() {
        eprintln!("N = {n}: starting {n} targets, shape {}", shape.name());
        // The targets' `--as` names carry the round: monitors that select by name (the
        // exporter's cmdline pattern) must use the same tag.
        let round_tag = format!("{tag}r{round}");
        let mut targets = Targets::start(n, &round_tag, shape)?;
        for &kind in &opts.monitors {
            if !targets.all_alive() {
                return Err("a target exited".into());
            }
            let mdir = dir.path().join(format!("{}-{round}", kind.name()));
            fs::create_dir_all(&mdir).map_err(|e| e.to_string())?;
            let ctx = Ctx {
                n,
                pids: &targets.pids,
                cpu_pid: targets.pids[CPU_TARGET],
                mem_pid: targets.pids[MEM_TARGET],
                tag: &round_tag,
                dir: mdir,
            };
            eprintln!("N = {n}: {}", kind.name());
            let outcome = run_monitor(kind, &ctx, opts);
            match &outcome {
                Outcome::NotInstalled(what) => {
                    if opts.require_external {
                        return Err(format!(
                            "{} not installed ({what}) and PERFVISOR_REQUIRE_EXTERNAL=1",
                            kind.name()
                        ));
                    }
                }
                Outcome::Failed(e) => {
                    eprintln!("  {} failed: {e}", kind.name());
                    notes.push(format!("{}: FAILED: {e}", kind.name()));
                }
                Outcome::Done(m) => {
                    if let Err(e) = &m.reading {
                        notes.push(format!("{}: no readings: {e}", kind.name()));
                    }
                    notes.extend(m.notes.iter().cloned());
                }
            }
            let label = if opts.shapes.len() > 1 || shape != Shape::Single {
                format!("{} ({})", kind.name(), shape.name())
            } else {
                kind.name().to_string()
            };
            rows.push((label, outcome));
        }
        drop(targets);
    }
    if opts.require_external && rows.iter().any(|(_, o)| matches!(o, Outcome::Failed(_))) {
        return Err(format!("a monitor failed: {}", notes.join("; ")));
    }
    Ok(render(n, opts, &rows, &notes))
}

pub(crate) fn render(
    n: usize,
    opts: &Opts,
    rows: &[(String, Outcome)],
    notes: &[String],
) -> String {
    let mut s = format!(
        "\n### N = {n} watched daemons, {} s window after {} s warm-up, 1 s interval\n\n\
         | monitor | CPU % of one core | µs CPU per s per watched daemon | peak RSS MiB (tree sampled / VmHWM) \
         | 30 %-target CPU %: reported / truth | 128 MiB-target RSS MiB: reported / truth \
         | host busy % (all cores) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        opts.seconds, opts.warmup
    );
    let opt = |v: Option<f64>, prec: usize| v.map_or("–".to_string(), |v| format!("{v:.prec$}"));
    for (name, outcome) in rows {
        match outcome {
            Outcome::NotInstalled(_) => {
                s.push_str(&format!("| {name} | not installed | | | | | |\n"))
            }
            Outcome::Failed(_) => {
                s.push_str(&format!("| {name} | failed (see below) | | | | | |\n"))
            }
            Outcome::Done(m) => {
                let (rc, rr) = match &m.reading {
                    Ok(r) => (r.cpu_pct, r.rss_mib),
                    Err(_) => (None, None),
                };
                s.push_str(&format!(
                    "| {name} | {:.3} | {:.1} | {:.1} / {} | {} / {:.1} | {} / {:.1} | {} |\n",
                    m.cpu * 100.0,
                    m.cpu * 1e6 / n as f64,
                    m.peak_mib,
                    opt(m.hwm_mib, 1),
                    opt(rc, 1),
                    m.truth_cpu_pct,
                    opt(rr, 1),
                    m.truth_rss_mib,
                    opt(m.host_busy_pct, 0)
                ));
            }
        }
    }
    if !notes.is_empty() {
        s.push('\n');
        for note in notes {
            s.push_str(&format!("- {note}\n"));
        }
    }
    s
}

pub(crate) fn print_header(opts: &Opts) {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default().trim().to_string();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_total = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|r| r.trim().to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version = |bin: &Path, arg: &str| -> String {
        Command::new(bin)
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .ok()
            .map(|o| {
                let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
                t.push_str(&String::from_utf8_lossy(&o.stderr));
                t.lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|| "?".into())
    };
    let git = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("## perfvisor overhead harness\n");
    println!(
        "- host: {} (kernel {}), {cpu_model} × {cores} cores, {mem_total} RAM, load average at start {}",
        read("/proc/sys/kernel/hostname"),
        read("/proc/sys/kernel/osrelease"),
        read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "- perfvisor: {} ({git}), release build",
        version(Path::new(PERFVISOR), "--version")
    );
    for (name, bin, arg) in [
        ("pidstat", which("pidstat"), "-V"),
        ("process-exporter", find_exporter(), "--version"),
        ("monit", which("monit"), "-V"),
    ] {
        match bin {
            Some(b) => println!("- {name}: {} ({})", version(&b, arg), b.display()),
            None => println!("- {name}: not installed"),
        }
    }
    println!(
        "- run: N = {}; monitors {}; warm-up {} s, window {} s, interval 1 s",
        opts.sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        opts.monitors
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        opts.warmup,
        opts.seconds
    );
    println!(
        "- targets: N−2 idle `perfvisor-loadgen --cpu 0`, t{CPU_TARGET} `--cpu {BURN}`, \
         t{MEM_TARGET} `--hold-mib {HOLD_MIB}`; the same targets for every monitor, monitors \
         one after another"
    );
    println!(
        "- CPU resolution: one clock tick (1/{} s) per window, i.e. {:.3} % of one core over {} s",
        clk_tck(),
        100.0 / clk_tck() / opts.seconds as f64,
        opts.seconds
    );
    println!(
        "- CPU: utime+stime (+cutime+cstime) of the monitor's process tree over the window's \
         wall time; the harness's own sampling is not counted. Truth: the harness's reading \
         of the targets' /proc over the same window (CPU) or its mean VmRSS (memory)."
    );
}
