//! The two sets (quiet, fault): their targets, faults, actions and perfvisor instances.

use super::*;

// ---------------------------------------------------------------------------------------
// The sets
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Set {
    Quiet,
    Fault,
}

impl Set {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Set::Quiet => "quiet",
            Set::Fault => "fault",
        }
    }
}

/// A fault of the fault set: which daemon, when it starts, and what the acceptance asks.
#[derive(Clone, Debug)]
pub(crate) struct Fault {
    pub(crate) name: &'static str,
    pub(crate) daemon: &'static str,
    pub(crate) start_s: f64,
    /// Alerted within this many seconds of the start (for descriptors: see `fd`).
    pub(crate) within_s: f64,
    /// The leak's true rate, MiB/min.
    pub(crate) leak_mib_per_min: Option<f64>,
    /// The descriptor leak: the process's descriptors when it started leaking.
    pub(crate) fd_base: Option<f64>,
    pub(crate) pid: Option<u32>,
    /// The latest memory slope perfvisor reported, MiB/min, and the harness's own.
    pub(crate) reported_mib_per_min: Option<f64>,
    pub(crate) rss_samples: Vec<(f64, f64)>,
}

impl Fault {
    pub(crate) fn new(
        name: &'static str,
        daemon: &'static str,
        start_s: f64,
        within_s: f64,
    ) -> Fault {
        Fault {
            name,
            daemon,
            start_s,
            within_s,
            leak_mib_per_min: None,
            fd_base: None,
            pid: None,
            reported_mib_per_min: None,
            rss_samples: Vec::new(),
        }
    }

    /// When the descriptor leak would reach its limit.
    pub(crate) fn fd_limit_at_s(&self) -> Option<f64> {
        self.fd_base
            .map(|base| self.start_s + (FD_LIMIT - base) / FD_RATE)
    }

    /// The last moment an alert still passes.
    pub(crate) fn deadline_s(&self) -> f64 {
        match self.name {
            "descriptors" => self.fd_limit_at_s().unwrap_or(self.start_s + 25.0 * 60.0) - 600.0,
            _ => self.start_s + self.within_s,
        }
    }
}

/// What happens at a moment of the run.
pub(crate) enum Action {
    /// A perfvisor CLI command against the set's instance.
    Cli(Set, Vec<String>),
    /// Append a managed daemon to the set's config, then `perfvisor reload`.
    EditAndReload(Set),
    /// Start the compile loop / the archive (host activity).
    StartHostActivity(&'static str),
    StopHostActivity(&'static str),
}

pub(crate) struct Instance {
    pub(crate) set: Set,
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) inbox: Inbox,
    /// Attached targets: started before perfvisor (their pids go into the config).
    pub(crate) targets: Vec<Proc>,
    pub(crate) perfvisor: Option<Proc>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) exited: Option<String>,
}

pub(crate) struct Env {
    pub(crate) perfvisor: PathBuf,
    pub(crate) loadgen: PathBuf,
    pub(crate) run_dir: PathBuf,
    pub(crate) t0: Instant,
    pub(crate) t0_unix: u64,
    pub(crate) run_s: f64,
}

impl Env {
    pub(crate) fn loadgen_cmd(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.loadgen);
        // `--write-dir` only matters with `--write-mib-per-sec`; here it puts this run's
        // directory in every command line, which is how stragglers are found.
        cmd.args(args)
            .arg("--write-dir")
            .arg(&self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    pub(crate) fn loadgen_argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.loadgen.display().to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        v.push("--write-dir".into());
        v.push(self.run_dir.display().to_string());
        v
    }

    pub(crate) fn at(&self, fraction: f64) -> f64 {
        self.run_s * fraction
    }
}

pub(crate) fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn write_script(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn managed(name: &str, argv: &[String], restart: &str, extra: &str) -> String {
    let argv: Vec<String> = argv.iter().map(|a| q(a)).collect();
    format!(
        "\n[[daemon]]\nname = {}\ncommand = [{}]\nrestart = {}\n{extra}",
        q(name),
        argv.join(", "),
        q(restart)
    )
}

pub(crate) fn attached(name: &str, pid: u32) -> String {
    format!("\n[[attach]]\nname = {}\npid = {pid}\n", q(name))
}

/// Starts the set's targets, writes its config, checks it, and starts perfvisor.
pub(crate) fn start_instance(
    env: &Env,
    set: Set,
    actions: &mut Vec<(f64, Action)>,
) -> Result<Instance, String> {
    let dir = env.run_dir.join(set.name());
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = free_port()?;
    let (hook_port, inbox) = start_receiver(env.t0)?;
    // The harness reads status and reports without the token (set for the CLI's mutating
    // calls and pushed metrics): reads need `anonymous_loopback_reads` since token scopes.
    let mut config = format!(
        "[supervisor]\ndatabase = {}\nprobe_interval = \"1s\"\nhost_interval = \"1s\"\n\
         listen = \"127.0.0.1:{port}\"\ntoken = {}\ndefault_rules = true\n\n\
         [api]\nanonymous_loopback_reads = true\n\n\
         [[sink]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/alerts\"\n",
        q(&dir.join("perfvisor.db").display().to_string()),
        q(TOKEN)
    );
    let mut targets = Vec::new();
    let mut faults = Vec::new();
    let mut target = |name: &str, args: Vec<String>, config: &mut String| -> Result<u32, String> {
        let p = Proc::spawn_group(&mut env.loadgen_cmd(&args), name)?;
        let pid = p.pid();
        config.push_str(&attached(name, pid));
        targets.push(p);
        Ok(pid)
    };
    match set {
        Set::Quiet => {
            target("idle", vec![], &mut config)?;
            target(
                "bursty",
                strs(&["--burst-cpu-secs", "6", "--burst-every", "30"]),
                &mut config,
            )?;
            target(
                "warmup",
                strs(&["--warmup-mib", "256", "--warmup-secs", "120"]),
                &mut config,
            )?;
            target(
                "sawtooth",
                strs(&["--sawtooth-mib", "128", "--sawtooth-period", "60"]),
                &mut config,
            )?;
            let web_port = free_port()?;
            config.push_str(&managed(
                "web",
                &env.loadgen_argv(&["--http", &format!("127.0.0.1:{web_port}")]),
                "on-failure",
                &format!(
                    "[[daemon.check]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{web_port}/health\"\n\
                     interval = \"5s\"\ntimeout = \"2s\"\n"
                ),
            ));
            // It spends a second preparing before the `exec`, as real ones do (environment
            // files, directories, waiting for a lock): long enough for perfvisor to probe the
            // shell first, so the exec's change of executable is always exercised, not by race.
            let script = dir.join("start-scripted.sh");
            write_script(
                &script,
                &format!(
                    "#!/bin/sh\n# A start script: prepares, then hands its pid to the program.\n\
                     cd {}\nmkdir -p state\nsleep 1\nexec {} --cpu 0.02 --hold-mib 16 --write-dir {}\n",
                    shell_quote(&dir.display().to_string()),
                    shell_quote(&env.loadgen.display().to_string()),
                    shell_quote(&env.run_dir.display().to_string()),
                ),
            )?;
            config.push_str(&managed(
                "scripted",
                &[script.display().to_string()],
                "on-failure",
                "",
            ));
            let cli = |args: &[&str]| Action::Cli(Set::Quiet, strs(args));
            actions.push((env.at(0.25), cli(&["stop", "web"])));
            actions.push((env.at(0.30), cli(&["start", "web"])));
            actions.push((env.at(0.45), cli(&["restart", "scripted"])));
            actions.push((env.at(0.60), Action::EditAndReload(Set::Quiet)));
            actions.push((env.at(0.40), Action::StartHostActivity("compile")));
            actions.push((env.at(0.55), Action::StopHostActivity("compile")));
            actions.push((env.at(0.70), Action::StartHostActivity("archive")));
        }
        Set::Fault => {
            let leak_at = env.at(1.0 / 15.0);
            let cpu_at = env.at(0.33);
            let latency_at = env.at(0.45);
            let leak = |name, daemon, rate: f64, within| Fault {
                leak_mib_per_min: Some(rate),
                ..Fault::new(name, daemon, leak_at, within)
            };
            let leak_args = |rate: f64| {
                strs(&[
                    "--leak-mib-per-min",
                    &rate.to_string(),
                    "--start-after",
                    &format!("{leak_at:.1}"),
                ])
            };
            // Each fault is one load generator, watched under the fault's daemon name.
            for (fault, args) in [
                (
                    leak("leak 30 MiB/min", "leak30", 30.0, 180.0),
                    leak_args(30.0),
                ),
                (leak("leak 1 MiB/min", "leak1", 1.0, 1200.0), leak_args(1.0)),
                (
                    Fault::new("descriptors", "fdleak", leak_at, f64::NAN),
                    strs(&[
                        "--fd-limit",
                        &FD_LIMIT.to_string(),
                        "--fd-leak-per-sec",
                        &format!("{FD_RATE:.6}"),
                        "--start-after",
                        &format!("{leak_at:.1}"),
                    ]),
                ),
                (
                    Fault::new("full core 5 min", "spinner", cpu_at, 120.0),
                    strs(&[
                        "--cpu",
                        "1",
                        "--start-after",
                        &format!("{cpu_at:.1}"),
                        "--stop-after",
                        &CPU_FAULT_SECS.to_string(),
                    ]),
                ),
                (
                    Fault::new("latency ×3", "api", latency_at, 120.0),
                    strs(&[
                        "--report-latency",
                        &format!("127.0.0.1:{port}"),
                        "--as",
                        "api",
                        "--token",
                        TOKEN,
                        "--latency-ms",
                        &LATENCY_MS.to_string(),
                        "--regress-after",
                        &format!("{latency_at:.1}"),
                        "--regress-latency-ms",
                        &(LATENCY_MS * LATENCY_STEP).to_string(),
                    ]),
                ),
            ] {
                let pid = target(fault.daemon, args, &mut config)?;
                faults.push(Fault {
                    pid: Some(pid),
                    ..fault
                });
            }
            // The crash loop: runs normally until its start, then exits with status 1 after
            // 3 s at every start; perfvisor restarts it (`always`).
            let crash_at = env.at(0.2);
            let script = dir.join("start-crashy.sh");
            let lg = shell_quote(&env.loadgen.display().to_string());
            let wd = shell_quote(&env.run_dir.display().to_string());
            write_script(
                &script,
                &format!(
                    "#!/bin/sh\nleft=$(( {} - $(date +%s) ))\n\
                     if [ \"$left\" -gt 0 ]; then exec {lg} --exit-after \"$left\" --exit-code 1 --write-dir {wd}; fi\n\
                     exec {lg} --exit-after 3 --exit-code 1 --write-dir {wd}\n",
                    env.t0_unix + crash_at.round() as u64
                ),
            )?;
            config.push_str(&managed(
                "crashy",
                &[script.display().to_string()],
                "always",
                "",
            ));
            faults.push(Fault::new("crash loop", "crashy", crash_at, 60.0));
        }
    }
    let config_path = dir.join("perfvisor.toml");
    fs::write(&config_path, &config).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let check = Command::new(&env.perfvisor)
        .arg("check-config")
        .arg(&config_path)
        .output()
        .map_err(|e| format!("perfvisor check-config: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "{} does not pass check-config:\n{}{}",
            config_path.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    let log = fs::File::create(dir.join("perfvisor.log"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = Command::new(&env.perfvisor);
    cmd.arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let perfvisor = Proc::spawn_group(&mut cmd, &format!("perfvisor ({})", set.name()))?;
    let instance = Instance {
        set,
        port,
        dir,
        config: config_path,
        inbox,
        targets,
        perfvisor: Some(perfvisor),
        faults,
        exited: None,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/api/v1/status", Duration::from_secs(2)).map(|r| r.0) != Ok(200) {
        if Instant::now() > deadline {
            return Err(format!(
                "perfvisor ({}) did not answer on 127.0.0.1:{port} within 60 s; see {}",
                set.name(),
                instance.dir.join("perfvisor.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(instance)
}

pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs a perfvisor CLI command against an instance; returns its status and output.
pub(crate) fn run_cli(env: &Env, instance: &Instance, args: &[String]) -> String {
    let out = instance.dir.join(format!(
        "cli-{}.out",
        CLI_CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    let Ok(file) = fs::File::create(&out) else {
        return format!("cannot create {}", out.display());
    };
    let Ok(err) = file.try_clone() else {
        return "cannot duplicate a descriptor".into();
    };
    let mut cmd = Command::new(&env.perfvisor);
    cmd.arg("--address")
        .arg(format!("127.0.0.1:{}", instance.port))
        .arg("--token")
        .arg(TOKEN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err);
    let status = match Proc::spawn_group(&mut cmd, "perfvisor CLI") {
        Ok(mut p) => {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match p.child.try_wait() {
                    Ok(Some(s)) => break s.to_string(),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => break "timed out after 60 s".into(),
                }
            }
        }
        Err(e) => e,
    };
    let text = fs::read_to_string(&out).unwrap_or_default();
    format!("{status}: {}", text.trim().replace('\n', " | "))
}

/// Host activity: a compile loop or an archive of /usr/share/doc, in the run directory.
pub(crate) fn host_activity(env: &Env, what: &str) -> Result<Proc, String> {
    let dir = env.run_dir.join("host");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = match what {
        "compile" => {
            // Enough generated code to keep gcc busy for a few seconds per pass.
            let mut c = String::new();
            for i in 0..400 {
                c.push_str(&format!(
                    "double f{i}(double x) {{ double s = 0; for (int k = 0; k < 100; k++) \
                     s += x * k / ({i} + k + 1.0); return s; }}\n"
                ));
            }
            let src = dir.join("big.c");
            fs::write(&src, c).map_err(|e| format!("{}: {e}", src.display()))?;
            format!(
                "while :; do gcc -O2 -c {} -o {}; done",
                shell_quote(&src.display().to_string()),
                shell_quote(&dir.join("big.o").display().to_string())
            )
        }
        _ => format!(
            "tar czf {} /usr/share/doc 2>/dev/null; rm -f {}",
            shell_quote(&dir.join("doc.tgz").display().to_string()),
            shell_quote(&dir.join("doc.tgz").display().to_string())
        ),
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proc::spawn_group(&mut cmd, what)
}

/// Reads perfvisor's memory slope for a leaking daemon (MiB/min) from its report.
pub(crate) fn reported_slope(port: u16, daemon: &str) -> Option<f64> {
    let (code, body) = http_get(
        port,
        &format!("/api/v1/daemons/{daemon}/report"),
        Duration::from_secs(5),
    )
    .ok()?;
    if code != 200 {
        return None;
    }
    let report: serde_json::Value = serde_json::from_str(&body).ok()?;
    let series = report["series"].as_array()?;
    let memory = series
        .iter()
        .find(|s| s["metric"] == "process.memory.usage_bytes")?;
    memory["trend"]["fit"]["slope_per_s"]
        .as_f64()
        .map(|b| b * 60.0 / MIB)
}

/// Least-squares slope of (seconds, bytes) samples, in MiB/min.
pub(crate) fn slope_mib_per_min(samples: &[(f64, f64)]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    slope(samples).map(|s| s * 60.0 / MIB)
}
