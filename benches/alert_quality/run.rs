//! The run: both instances side by side, the schedule of actions, and the shutdown.

use super::*;

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

pub(crate) fn run(opts: &Opts) -> Result<(), String> {
    let build = "cargo build --release --bin perfvisor --bin perfvisor-loadgen";
    let perfvisor = binary("PERFVISOR_BIN", env!("CARGO_BIN_EXE_perfvisor"), build)?;
    let loadgen = binary(
        "PERFVISOR_LOADGEN_BIN",
        env!("CARGO_BIN_EXE_perfvisor-loadgen"),
        build,
    )?;
    let run_dir = target_dir().join("alert-quality-run");
    if run_dir.exists() {
        fs::remove_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    }
    fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let run_dir = run_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let env = Env {
        perfvisor,
        loadgen,
        run_dir,
        t0: Instant::now(),
        t0_unix: unix_secs(),
        run_s: opts.minutes * 60.0,
    };
    println!(
        "alert quality: {} min, set {}; perfvisor {}; working files in {}",
        opts.minutes,
        match (opts.quiet, opts.fault) {
            (true, true) => "both",
            (true, false) => "quiet",
            _ => "fault",
        },
        env.perfvisor.display(),
        env.run_dir.display()
    );
    let marker = env.run_dir.display().to_string();
    let mut instances = Vec::new();
    let mut actions: Vec<(f64, Action)> = Vec::new();
    let result = (|| {
        for (on, set) in [(opts.quiet, Set::Quiet), (opts.fault, Set::Fault)] {
            if on {
                instances.push(start_instance(&env, set, &mut actions)?);
            }
        }
        drive(&env, &mut instances, actions)
    })();
    let mut log = match result {
        Ok(log) => log,
        Err(e) => {
            shut_down(&mut instances, &marker, &env.loadgen);
            return Err(e);
        }
    };
    let ended_s = env.t0.elapsed().as_secs_f64();
    log.extend(shut_down(&mut instances, &marker, &env.loadgen));
    report(&env, &instances, &log, ended_s)
}

/// Stops every instance (SIGTERM: it stops its daemons), the targets, and any straggler.
pub(crate) fn shut_down(instances: &mut [Instance], marker: &str, loadgen: &Path) -> Vec<String> {
    let mut log = Vec::new();
    for i in instances.iter_mut() {
        if let Some(mut p) = i.perfvisor.take() {
            p.stop(libc::SIGTERM, Duration::from_secs(30));
        }
        i.targets.clear();
    }
    let killed = kill_stragglers(marker, loadgen);
    if killed > 0 {
        log.push(format!("killed {killed} leftover process(es) of this run"));
    }
    log
}

/// Runs the schedule until the end (or Ctrl-C); returns the log of operator actions.
pub(crate) fn drive(
    env: &Env,
    instances: &mut [Instance],
    mut actions: Vec<(f64, Action)>,
) -> Result<Vec<String>, String> {
    actions.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut actions = std::collections::VecDeque::from(actions);
    let mut log = Vec::new();
    let mut host: BTreeMap<&'static str, Proc> = BTreeMap::new();
    let mut next_poll = 0.0;
    let mut next_progress = 60.0;
    let has_quiet = instances.iter().any(|i| i.set == Set::Quiet);
    loop {
        let now = env.t0.elapsed().as_secs_f64();
        if now >= env.run_s {
            break;
        }
        if STOP.load(Ordering::SeqCst) {
            log.push(format!("interrupted at {now:.0} s"));
            println!("interrupted: cleaning up and reporting what was measured");
            break;
        }
        while actions.front().is_some_and(|a| a.0 <= now) {
            let Some((at, action)) = actions.pop_front() else {
                break;
            };
            let line = match action {
                Action::Cli(set, args) => match instances.iter().find(|i| i.set == set) {
                    Some(i) => format!(
                        "{} perfvisor {}: {}",
                        set.name(),
                        args.join(" "),
                        run_cli(env, i, &args)
                    ),
                    None => continue,
                },
                Action::EditAndReload(set) => match instances.iter().find(|i| i.set == set) {
                    Some(i) => {
                        let added = managed(
                            "added",
                            &env.loadgen_argv(&["--hold-mib", "8"]),
                            "on-failure",
                            "",
                        );
                        let edit = fs::OpenOptions::new()
                            .append(true)
                            .open(&i.config)
                            .and_then(|mut f| f.write_all(added.as_bytes()));
                        match edit {
                            Ok(()) => format!(
                                "{} config edit (+ daemon \"added\") and perfvisor reload: {}",
                                set.name(),
                                run_cli(env, i, &strs(&["reload"]))
                            ),
                            Err(e) => format!("config edit failed: {e}"),
                        }
                    }
                    None => continue,
                },
                Action::StartHostActivity(what) if has_quiet => match host_activity(env, what) {
                    Ok(p) => {
                        host.insert(what, p);
                        format!("host activity {what} started")
                    }
                    Err(e) => format!("host activity {what} not started: {e}"),
                },
                Action::StopHostActivity(what) => match host.remove(what) {
                    Some(mut p) => {
                        p.kill();
                        format!("host activity {what} stopped")
                    }
                    None => continue,
                },
                Action::StartHostActivity(_) => continue,
            };
            println!("  [{}] {line}", clock(at));
            log.push(format!("[{}] {line}", clock(at)));
        }
        for i in instances.iter_mut() {
            if i.exited.is_none() {
                if let Some(p) = i.perfvisor.as_mut() {
                    if let Ok(Some(status)) = p.child.try_wait() {
                        let line = format!(
                            "perfvisor ({}) exited at {} with {status}; see {}",
                            i.set.name(),
                            clock(now),
                            i.dir.join("perfvisor.log").display()
                        );
                        println!("  {line}");
                        log.push(line.clone());
                        i.exited = Some(line);
                    }
                }
            }
            for f in i.faults.iter_mut() {
                if now >= f.start_s {
                    if let Some(pid) = f.pid {
                        if f.name == "descriptors" && f.fd_base.is_none() {
                            f.fd_base = fd_count(pid).map(|n| n as f64);
                        }
                    }
                }
            }
        }
        if now >= next_poll {
            next_poll = now + 10.0;
            for i in instances.iter_mut() {
                let port = i.port;
                for f in i.faults.iter_mut().filter(|f| f.leak_mib_per_min.is_some()) {
                    if now >= f.start_s {
                        if let Some(rss) = f.pid.and_then(rss_bytes) {
                            f.rss_samples.push((now, rss));
                        }
                        if let Some(slope) = reported_slope(port, f.daemon) {
                            f.reported_mib_per_min = Some(slope);
                        }
                    }
                }
            }
        }
        if now >= next_progress {
            next_progress += 60.0;
            let counts: Vec<String> = instances
                .iter()
                .map(|i| {
                    let n = i
                        .inbox
                        .lock()
                        .map(|v| v.iter().filter(|a| a.state == "firing").count())
                        .unwrap_or(0);
                    format!("{}: {n} firing", i.set.name())
                })
                .collect();
            println!("  [{}] {}", clock(now), counts.join(", "));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for (what, mut p) in host {
        p.kill();
        log.push(format!("host activity {what} stopped at the end"));
    }
    Ok(log)
}

pub(crate) fn clock(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}
