//! `perfvisor run`: a supervisor in the foreground, built from a config file through the same
//! public API a host uses. It starts the embedded engine, launches the managed daemons (and
//! registers each new pid), attaches to existing processes (pid, pidfile, or a match on the
//! executable or command line, rescanned every 10 s), serves the HTTP API, reloads on SIGHUP
//! or `POST /api/v1/reload` (only what changed restarts), and on SIGINT/SIGTERM stops the API,
//! the daemons (whole process trees) and the engine, in that order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use perfvisor::config::{self, AttachConfig, AttachSelector, Config, MachineCheck, Pick};
use perfvisor::http::{serve, ApiConfig};
use perfvisor::manager::{self as mgr, Manager, ManagerEvent};
use perfvisor::{ActorKind, DaemonControl, DaemonId, DatabaseLock, PanicTarget, Perfvisor};

use super::CliError;

/// How long a reload waits for the engine to swap rules, sinks and silences.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How often attached daemons are looked for again.
const ATTACH_SCAN: Duration = Duration::from_secs(10);

/// Restarts managed daemons for alert actions; attached ones are not ours to restart.
struct ManagerControl(Arc<Manager>);

impl DaemonControl for ManagerControl {
    fn restart(&self, daemon: &DaemonId) -> Result<(), String> {
        if !self.0.status().iter().any(|d| d.name == daemon.as_str()) {
            return Err(format!(
                "{daemon} is attached, not managed by perfvisor; its own manager must restart it"
            ));
        }
        self.0.restart(daemon.as_str()).map_err(|e| e.to_string())
    }
}

/// The API token of a config: inline, or the trimmed content of `token_file`.
pub(super) fn token(config: &Config) -> Result<Option<String>, CliError> {
    match &config.supervisor.token {
        None => Ok(None),
        Some(config::TokenSource::Inline(t)) => Ok(Some(t.clone())),
        Some(config::TokenSource::File(path)) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| {
                CliError::usage(format!("cannot read token_file {}: {e}", path.display()))
            }),
    }
}

/// The directory of the managed daemons' state file and FIFOs: `<database>.managed`.
fn managed_state_dir(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_os_string();
    name.push(".managed");
    PathBuf::from(name)
}

/// The pid an attach entry points at now: `Ok(None)` when there is none yet, `Err` with the
/// reason when what is there must not be attached (a stale pidfile, an ambiguous match).
fn resolve(attach: &AttachConfig) -> Result<Option<u32>, String> {
    let alive = |pid: &u32| Path::new(&format!("/proc/{pid}")).exists();
    match &attach.selector {
        AttachSelector::Pid(pid) => Ok(Some(*pid).filter(alive)),
        AttachSelector::Pidfile(path) => {
            let Some(pid) = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .filter(alive)
            else {
                return Ok(None);
            };
            if let Some(check) = &attach.pidfile_check {
                // The declared program vouches for the process, however old the file.
                let (key, text, pattern) = match check {
                    AttachSelector::MatchExe(p) => ("match_exe", exe_name(pid), p),
                    AttachSelector::MatchCmdline(p) => ("match_cmdline", Some(cmdline(pid)), p),
                    _ => return Ok(Some(pid)),
                };
                let text = text.unwrap_or_default();
                return if pattern.regex().is_match(text.trim()) {
                    Ok(Some(pid))
                } else {
                    Err(format!(
                        "pidfile {} names pid {pid}, which runs {:?}: that does not match \
                         {key} {:?}",
                        path.display(),
                        text.trim(),
                        pattern.regex().as_str()
                    ))
                };
            }
            let written = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            match (written, started_at(pid)) {
                (Some(written), Some(started)) if is_stale(started, written) => Err(format!(
                    "pidfile {} names pid {pid}, but that process started at {} — after the \
                     file was last written at {}: the daemon that wrote it is gone and its pid \
                     was reused",
                    path.display(),
                    rfc3339(started),
                    rfc3339(written)
                )),
                _ => Ok(Some(pid)),
            }
        }
        AttachSelector::MatchExe(pattern) | AttachSelector::MatchCmdline(pattern) => {
            let by_exe = matches!(attach.selector, AttachSelector::MatchExe(_));
            let (key, me) = (
                if by_exe { "match_exe" } else { "match_cmdline" },
                std::process::id(),
            );
            let Ok(dir) = std::fs::read_dir("/proc") else {
                return Ok(None);
            };
            let found: Vec<u32> = dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| pid != me)
                .filter(|pid| {
                    let text = if by_exe {
                        exe_name(*pid)
                    } else {
                        Some(cmdline(*pid))
                    };
                    text.is_some_and(|t| pattern.regex().is_match(t.trim()))
                })
                .collect();
            // A match whose parent (or grandparent...) also matches is part of that daemon's
            // tree: only the topmost matches are separate candidates.
            let mut roots: Vec<(u64, u32)> = found
                .iter()
                .filter(|pid| {
                    let mut at = parent_of(**pid);
                    for _ in 0..64 {
                        match at {
                            Some(p) if p > 1 => {
                                if found.contains(&p) {
                                    return false;
                                }
                                at = parent_of(p);
                            }
                            _ => break,
                        }
                    }
                    true
                })
                .map(|&pid| (start_ticks(pid).unwrap_or(u64::MAX), pid))
                .collect();
            roots.sort_unstable();
            match (roots.as_slice(), attach.pick) {
                ([], _) => Ok(None),
                ([(_, pid)], _) | ([(_, pid), ..], Pick::Oldest) => Ok(Some(*pid)),
                (many, Pick::Only) => Err(format!(
                    "{key} {:?} matches {} separate processes: {}; set pick = \"oldest\" to \
                     attach to the one that started first, or narrow the pattern",
                    pattern.regex().as_str(),
                    many.len(),
                    many.iter()
                        .map(|(_, pid)| format!("pid {pid} ({})", cmdline(*pid)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

/// A process's executable name (of `/proc/PID/exe`, else its `comm`).
fn exe_name(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
}

/// A process's command line, arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Field `n` (numbered as in proc(5), from 3 on) of `/proc/PID/stat`.
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

/// The parent pid of a process (field 4).
fn parent_of(pid: u32) -> Option<u32> {
    stat_field(pid, 4).and_then(|p| u32::try_from(p).ok())
}

/// When a process started, in clock ticks since boot (field 22).
fn start_ticks(pid: u32) -> Option<u64> {
    stat_field(pid, 22)
}

/// When a process started, as wall-clock time: boot time plus its start in clock ticks. Boot
/// time is given in whole seconds, so this is good to about a second.
fn started_at(pid: u32) -> Option<SystemTime> {
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = start_ticks(pid)?;
    Some(UNIX_EPOCH + Duration::from_secs(btime) + Duration::from_millis(ticks * 1000 / hz))
}

/// A pidfile is stale when the process it names started after the file was last written:
/// a daemon writes its pidfile once running, so that process cannot be the writer. Two
/// seconds of slack cover the whole-second boot time and a file written in the same instant.
fn is_stale(started: SystemTime, written: SystemTime) -> bool {
    started > written + Duration::from_secs(2)
}

fn rfc3339(t: SystemTime) -> String {
    perfvisor_actors::alerts::rfc3339(
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    )
}

/// Most injected panics per minute the chaos mode accepts.
const MAX_CHAOS_RATE: f64 = 6000.0;

/// Runs a supervisor from `path` until SIGINT or SIGTERM; with `chaos` (panics per minute),
/// injects panics into random actors meanwhile.
pub fn run(path: &Path, chaos: Option<f64>) -> Result<(), CliError> {
    if let Some(rate) = chaos {
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_CHAOS_RATE) {
            return Err(CliError::usage(format!(
                "--chaos-panics-per-minute {rate}: expected a rate above 0 and at most {MAX_CHAOS_RATE}"
            )));
        }
    }
    // The text, then what it needs of this machine, before anything is written: a start
    // that cannot work names the line and leaves no database, WAL or state behind.
    let loaded = config::read(path).map_err(config_failed)?;
    if !loaded.warnings.is_empty() {
        eprintln!("{}", loaded.render_warnings(&loaded.warnings));
    }
    loaded
        .check_machine(MachineCheck::BeforeLock)
        .map_err(config_failed)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: escape codes would land in log files and journals.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    raise_descriptor_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(supervise(path.to_path_buf(), loaded, chaos))
}

/// Raises this process's soft limit on open descriptors to its hard limit: the default soft
/// limit (1024) is what API connections, managed daemons' pipes and the database share,
/// and running out of it fails spawns and state writes. Logged, never fatal.
fn raise_descriptor_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur >= lim.rlim_max {
        return;
    }
    let from = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        tracing::info!(from, to = lim.rlim_max, "Descriptor limit raised.");
    } else {
        tracing::warn!(
            soft = from,
            hard = lim.rlim_max,
            error = %std::io::Error::last_os_error(),
            "Cannot raise the descriptor limit."
        );
    }
}

/// Problems of the config (its text or what it needs of this machine): exit code 2.
fn config_failed(e: config::ConfigError) -> CliError {
    CliError {
        message: format!("{} problem(s) in the config:\n{e}", e.problems.len()),
        code: 2,
    }
}

struct Running {
    pv: Perfvisor,
    manager: Arc<Manager>,
    config: Mutex<Config>,
    path: PathBuf,
    attached: Mutex<HashMap<String, u32>>,
    /// The last reason each attach entry was refused for, so it is logged once.
    refused: Mutex<HashMap<String, String>>,
    handle: tokio::runtime::Handle,
}

impl Running {
    /// Looks for every attached daemon and registers new pids.
    async fn scan(&self) {
        let entries: Vec<AttachConfig> = self
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .attached
            .clone();
        for a in entries {
            let pid = match resolve(&a) {
                Ok(Some(pid)) => pid,
                Ok(None) => continue,
                Err(reason) => {
                    // Said once per distinct reason, not at every rescan.
                    let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
                    if refused.get(&a.name) != Some(&reason) {
                        tracing::warn!(daemon = %a.name, "Not attaching: {reason}.");
                        refused.insert(a.name.clone(), reason);
                    }
                    continue;
                }
            };
            self.refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&a.name);
            let known = self
                .attached
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(a.name.clone(), pid);
            if known != Some(pid) {
                tracing::info!(daemon = %a.name, pid, "Attached.");
                if let Err(e) = self.pv.daemon_started(a.spec(pid)).await {
                    tracing::warn!(daemon = %a.name, error = %e, "Attaching failed.");
                }
            }
        }
    }

    /// Reloads the config file: applies what changed, says what it did. Alerting goes
    /// first: a sink that does not start refuses the reload before any daemon is touched.
    fn reload(&self) -> Result<String, String> {
        let new = config::load(&self.path).map_err(|e| e.to_string())?;
        // Daemons started from now on go under the new parent.
        mgr::set_cgroup_parent(new.supervisor.cgroup_parent.clone());
        let mut current = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        let diff = config::diff(&current, &new);
        let remote_write_changed = current.remote_write != new.remote_write;
        if diff.is_empty() && !remote_write_changed {
            return Ok("nothing changed".into());
        }
        let alerting = if diff.rules_changed || diff.sinks_changed || diff.silences_changed {
            let pv = self.pv.clone();
            let (rules, sinks, silences) = (
                new.rules(),
                diff.sinks_changed.then(|| new.sinks()),
                diff.silences_changed.then(|| new.silences(super::now_ms())),
            );
            let replace = async move { pv.replace_config_alerting(rules, sinks, silences).await };
            // Run on the runtime and wait here: this is a blocking thread, of this runtime or
            // of the HTTP server's.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.handle.spawn(async move {
                let _ = tx.send(replace.await);
            });
            let answer = rx.recv_timeout(RELOAD_TIMEOUT).map_err(|_| {
                "the engine did not apply the alerting settings in time".to_string()
            })?;
            Some(answer.map_err(|e| e.to_string())?)
        } else {
            None
        };
        let specs = new.daemons.iter().map(|d| d.managed.clone()).collect();
        let managed = self.manager.update(specs).map_err(|e| e.to_string())?;
        let mut summary = reload_summary(&diff, &managed, alerting.as_ref());
        if remote_write_changed {
            // Every shipper restarts from its cursor (kept by name in the database).
            self.pv
                .start_remote_write(&new.remote_write, new.supervisor.retention.raw)
                .map_err(|e| format!("remote write not restarted: {e}"))?;
            summary = if diff.is_empty() {
                "remote_write: restarted".into()
            } else {
                format!("{summary}; remote_write: restarted")
            };
        }
        tracing::info!(%summary, "Config reloaded.");
        *current = new;
        Ok(summary)
    }
}

/// What a reload did, in words: `daemons: restarted api; rules: removed api_cpu; changed
/// disk_low`.
fn reload_summary(
    diff: &config::ConfigDiff,
    managed: &mgr::ManagerDiff,
    alerting: Option<&perfvisor::AlertingChange>,
) -> String {
    let mut parts = Vec::new();
    let mut group = |what: &str, lists: [(&str, &Vec<String>); 3]| {
        let said: Vec<String> = lists
            .iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(word, names)| format!("{word} {}", names.join(", ")))
            .collect();
        if !said.is_empty() {
            parts.push(format!("{what}: {}", said.join("; ")));
        }
    };
    group(
        "daemons",
        [
            ("started", &managed.added),
            ("stopped", &managed.removed),
            ("restarted", &managed.changed),
        ],
    );
    group(
        "attached",
        [
            ("added", &diff.attach_added),
            ("removed", &diff.attach_removed),
            ("changed", &diff.attach_changed),
        ],
    );
    if let Some(change) = alerting {
        let said = change.describe();
        if said.is_empty() {
            // The file changed (order, comments in values) but the running rules did not.
            parts.push("rules: no change in effect".into());
        } else {
            parts.push(said);
        }
    }
    if !diff.supervisor_changed.is_empty() {
        parts.push(format!(
            "restart perfvisor to apply {}",
            diff.supervisor_changed.join(", ")
        ));
    }
    if parts.is_empty() {
        "nothing changed".into()
    } else {
        parts.join("; ")
    }
}

async fn supervise(
    path: PathBuf,
    loaded: config::Loaded,
    chaos: Option<f64>,
) -> Result<(), CliError> {
    let token = token(&loaded.config)?;
    let api_settings = loaded.config.api.clone();
    // Before anything is written next to the database: a second instance on it would
    // re-adopt this one's daemons and interleave its history.
    let database = &loaded.config.supervisor.database;
    let lock_file = perfvisor::lock_path(database);
    let lock_existed = lock_file.exists();
    let lock = DatabaseLock::acquire(
        database,
        &format!(
            "pid {}, listening on {}",
            std::process::id(),
            loaded.config.supervisor.listen
        ),
    )
    .map_err(|e| CliError::usage(e.to_string()))?;
    // The address only now: a second perfvisor on this database has been told above which
    // process holds it; a port taken by anything else is this config's problem.
    if let Err(e) = loaded.check_machine(MachineCheck::Listen) {
        if !lock_existed {
            // Removed while still held, so no other instance can lock the old file meanwhile.
            let _ = std::fs::remove_file(&lock_file);
        }
        drop(lock);
        return Err(config_failed(e));
    }
    let config = loaded.config;
    mgr::set_cgroup_parent(config.supervisor.cgroup_parent.clone());
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    // Next to the database: the record of the managed processes and their output FIFOs, so
    // a perfvisor killed without stopping them re-adopts them instead of starting copies.
    let state_dir = managed_state_dir(&config.supervisor.database);
    let manager = Arc::new(Manager::with_state_dir(events_tx, &state_dir).map_err(|e| {
        CliError::usage(format!(
            "cannot use {} for the managed daemons' state: {e}",
            state_dir.display()
        ))
    })?);
    let mut builder = config
        .apply(Perfvisor::builder())
        .daemon_control(ManagerControl(Arc::clone(&manager)))
        .database_lock(lock);
    if !config.remote_write.is_empty() {
        builder = builder.rule(perfvisor::remote_write::expired_rule());
    }
    let pv = builder
        .start()
        .map_err(|e| CliError::usage(format!("cannot start: {e}")))?;
    if !config.remote_write.is_empty() {
        pv.start_remote_write(&config.remote_write, config.supervisor.retention.raw)
            .map_err(|e| CliError::usage(format!("cannot start remote write: {e}")))?;
    }
    for silence in config.silences(super::now_ms()) {
        if let Err(e) = pv.add_silence(silence).await {
            tracing::warn!(error = %e, "Silence from the config refused.");
        }
    }
    let specs: Vec<mgr::ManagedSpec> = config.daemons.iter().map(|d| d.managed.clone()).collect();
    let listen = config.supervisor.listen;
    let running = Arc::new(Running {
        pv: pv.clone(),
        manager: Arc::clone(&manager),
        config: Mutex::new(config),
        path,
        attached: Mutex::new(HashMap::new()),
        refused: Mutex::new(HashMap::new()),
        handle: tokio::runtime::Handle::current(),
    });

    // Manager events → watchers and metrics.
    let events = {
        let running = Arc::clone(&running);
        let handle = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("perfvisor-manager-events".into())
            .spawn(move || {
                for event in events_rx {
                    on_event(&running, &handle, event);
                }
            })
            .map_err(|e| CliError::usage(format!("cannot start a thread: {e}")))?
    };
    manager
        .start_all(specs)
        .map_err(|e| CliError::usage(format!("managed daemons refused: {e}")))?;
    running.scan().await;

    let reload_target = Arc::clone(&running);
    let api = serve(
        pv.clone(),
        ApiConfig {
            listen,
            token,
            read_token: api_settings.read_token,
            push_token: api_settings.push_token,
            anonymous_loopback_reads: api_settings.anonymous_loopback_reads,
            allowed_hosts: api_settings.allowed_hosts,
            query_budget: perfvisor::http::QueryBudget::default(),
            max_connections: api_settings.max_connections,
            manager: Some(Arc::clone(&manager)),
            reload: Some(Arc::new(move || reload_target.reload())),
            otlp: api_settings.otlp,
        },
    )
    .map_err(|e| CliError::usage(e.to_string()))?;
    tracing::info!(address = %api.addr(), "perfvisor is running.");
    notify_systemd("READY=1\nSTATUS=supervising");
    println!(
        "perfvisor is running; API and dashboard at http://{}",
        api.addr()
    );

    use tokio::signal::unix::{signal, SignalKind};
    let (mut hup, mut int, mut term) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(h), Ok(i), Ok(t)) => (h, i, t),
        _ => return Err(CliError::usage("cannot install signal handlers")),
    };
    let chaos = chaos.map(|rate| tokio::spawn(chaos_monkey(pv.clone(), rate)));
    let mut scan = tokio::time::interval(ATTACH_SCAN);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let r = Arc::clone(&running);
                match tokio::task::spawn_blocking(move || r.reload()).await {
                    Ok(Ok(summary)) => println!("reloaded: {summary}"),
                    Ok(Err(problems)) => eprintln!("reload refused:\n{problems}"),
                    Err(e) => eprintln!("reload failed: {e}"),
                }
            }
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = scan.tick() => running.scan().await,
        }
    }
    if let Some(chaos) = chaos {
        chaos.abort();
    }
    tracing::info!("Stopping: API, daemons, engine.");
    notify_systemd("STOPPING=1");
    api.stop();
    let m = Arc::clone(&manager);
    let _ = tokio::task::spawn_blocking(move || m.shutdown(Duration::from_secs(30))).await;
    let _ = pv.shutdown().await;
    // The event thread ends with the process: the engine's daemon control may still hold
    // the manager (and so its event sender) until then.
    drop(events);
    Ok(())
}

/// Chaos mode: panics injected into random actors (each kind alike; a watcher is any one),
/// at exponentially distributed intervals averaging `per_minute`. The seed is logged so a
/// run can be told apart; every injection is logged with its target.
async fn chaos_monkey(pv: Perfvisor, per_minute: f64) {
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    tracing::warn!(
        per_minute,
        seed,
        "Chaos mode: injecting panics into random actors."
    );
    const TARGETS: [ActorKind; 6] = [
        ActorKind::Supervisor,
        ActorKind::Collector,
        ActorKind::Watcher,
        ActorKind::Analyzer,
        ActorKind::StorageWriter,
        ActorKind::AlertDispatcher,
    ];
    loop {
        // 1 − U is in (0, 1], so the logarithm is finite.
        let wait = -(1.0 - rng.f64()).ln() * 60.0 / per_minute;
        tokio::time::sleep(Duration::from_secs_f64(wait.min(3600.0))).await;
        let target = TARGETS[rng.usize(..TARGETS.len())];
        match pv.inject_panic(PanicTarget::Kind(target)).await {
            Ok(hit) => tracing::warn!(?target, hit, "Chaos: panic injected."),
            Err(e) => tracing::warn!(?target, error = %e, "Chaos: injection failed."),
        }
    }
}

/// Tells systemd (`Type=notify` units) about readiness and stopping, when it asked to be
/// told (`NOTIFY_SOCKET`); nothing otherwise.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket address.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "Cannot notify systemd.");
    }
}

/// Turns a manager event into what perfvisor records: new pids become watchers, check
/// latencies and outcomes become metrics of the daemon.
fn on_event(running: &Running, handle: &tokio::runtime::Handle, event: ManagerEvent) {
    match event {
        ManagerEvent::Started { name, pid } | ManagerEvent::Adopted { name, pid } => {
            let spec = {
                let config = running
                    .config
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                config
                    .daemons
                    .iter()
                    .find(|d| d.name() == name)
                    .map(|d| d.spec(pid))
            };
            if let Some(spec) = spec {
                let pv = running.pv.clone();
                handle.spawn(async move {
                    if let Err(e) = pv.daemon_started(spec).await {
                        tracing::warn!(error = %e, "Watching a managed daemon failed.");
                    }
                });
            }
        }
        ManagerEvent::CheckResult {
            name,
            ok,
            latency,
            error,
            ..
        } => {
            let rec = running.pv.recorder().for_daemon(name.as_str());
            rec.observe("check.latency_seconds", latency.as_secs_f64());
            rec.record("check.ok", if ok { 1.0 } else { 0.0 });
            if let Some(e) = error {
                tracing::debug!(daemon = %name, error = %e, "Check failed.");
            }
        }
        ManagerEvent::Stopping {
            name,
            pid,
            intent,
            expected,
        } => {
            // Waited for here, before the next event, so that the engine knows the exit
            // that follows is intended before the watcher can see it: a stop retires the
            // watcher (no `daemon_down`), a restart opens a planned-restart window (its exit
            // and the new start count as no crash).
            tracing::info!(daemon = %name, pid, "Daemon {}.", intent.as_str());
            let pv = running.pv.clone();
            let told = if intent.restarts() {
                handle.block_on(pv.daemon_restarting(name.as_str(), expected))
            } else {
                handle.block_on(pv.daemon_stopped(name.as_str()))
            };
            if let Err(e) = told {
                tracing::warn!(daemon = %name, error = %e, "Could not tell the engine about an intended stop.");
            }
        }
        ManagerEvent::Fatal { name, reason, .. } => {
            tracing::error!(daemon = %name, %reason, "Managed daemon given up (fatal).");
        }
        other => tracing::debug!(?other, "Manager event."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reload answer is words naming what changed, never a Debug rendering.
    #[test]
    fn reload_summary_is_words() {
        let diff = config::ConfigDiff {
            rules_changed: true,
            supervisor_changed: vec!["listen".into()],
            ..Default::default()
        };
        let managed = mgr::ManagerDiff {
            changed: vec!["api".into()],
            ..Default::default()
        };
        let alerting = perfvisor::AlertingChange {
            rules: perfvisor::RulesChange {
                added: vec![],
                removed: vec!["api_cpu".into()],
                changed: vec!["disk_low".into()],
            },
            sinks: Some(vec!["hook".into()]),
            silences: None,
        };
        assert_eq!(
            reload_summary(&diff, &managed, Some(&alerting)),
            "daemons: restarted api; rules: removed api_cpu; changed disk_low; \
             sinks rebuilt: hook; restart perfvisor to apply listen"
        );
        assert_eq!(
            reload_summary(
                &config::ConfigDiff::default(),
                &mgr::ManagerDiff::default(),
                None
            ),
            "nothing changed"
        );
    }
}
