//! Hard kills of the standalone binary under load: `perfvisor run` with three managed daemons,
//! pushed metrics and two firing alerts is SIGKILLed twenty times at random moments (the
//! seed is printed; `PERFVISOR_CRASH_SEED` replays it). After each kill the database passes
//! the integrity check and holds every pushed sample that was acknowledged long enough
//! before the kill; after each restart the alert fires on with its original start time and
//! no second notification, and every managed daemon runs exactly once — the same process as
//! before the kill, re-adopted, never a duplicate and never an orphan. A daemon that writes
//! to stdout keeps reaching its log through the kills without a restart; no file perfvisor
//! writes (logs, state file) holds the API token or a daemon's environment value, and each
//! is private. A last start ends with SIGTERM, and the daemons go with perfvisor.
//!
//! What "flushed" means here: a push answered `202 Accepted` is accepted, not committed. The
//! writer commits what it was handed at least every second, so a sample counts as flushed
//! once its acknowledgement is older than the flush interval plus a slack for the
//! recorder → collector → writer path on a loaded machine ([`FLUSH_MARGIN`]) when the
//! instance that acknowledged it is killed. The HTTP API has no flush call to make that
//! exact; samples acknowledged closer to their kill are counted (how many survived) but not
//! required. A push belongs to the instance started last before it was sent: SIGKILL is not
//! instantaneous, so an instance can still answer a moment after the test decided to kill
//! it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use perfvisor::{AlertState, StorageReader};
use perfvisor_actors::storage::integrity_check;

use crate::support::{self, leaders, ChildGuard, Sweeper};

const ROUNDS: usize = 20;
/// Pushed series whose every acknowledged sample is checked: `crash.load.<i>`.
const LOAD_SERIES: u64 = 4;
/// The writer's flush interval (1 s) plus slack for the path to it on a loaded machine.
const FLUSH_MARGIN: Duration = Duration::from_millis(1500);
/// Longest wait for anything that polls.
const WAIT: Duration = Duration::from_secs(30);
const DAEMONS: [&str; 3] = ["idle", "busy", "chatty"];
/// Fires on the pushed `crash.level` (always 100): steady, whatever the machine's load.
const LEVEL_RULE: &str = "crash_level_high";
/// Fires on the busy daemon's CPU (half a core); informational, CPU depends on the load.
const CPU_RULE: &str = "busy_cpu";

fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    match support::http_get(port, path) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// One push answered `202` with every sample accepted.
#[derive(Clone, Copy)]
struct Ack {
    seq: u64,
    /// When the request was sent: it went to the instance started last before this.
    sent: Instant,
    /// When the answer arrived.
    at: Instant,
}

/// Pushes `crash.load.<i>` = seq × 10 + i and `crash.level` = 100 every 20 ms from a
/// thread, through the whole test (failing while perfvisor is down), and keeps every
/// acknowledged push.
struct Pusher {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
    attempted: Arc<Mutex<u64>>,
    thread: Option<JoinHandle<()>>,
}

impl Pusher {
    fn start(port: u16, token: String) -> Pusher {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let attempted = Arc::new(Mutex::new(0));
        let thread = {
            let (stop, acked, attempted) = (stop.clone(), acked.clone(), attempted.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    seq += 1;
                    *attempted.lock().unwrap() = seq;
                    let mut items: Vec<String> = (0..LOAD_SERIES)
                        .map(|i| {
                            format!(r#"{{"metric":"crash.load.{i}","value":{}}}"#, seq * 10 + i)
                        })
                        .collect();
                    items.push(r#"{"metric":"crash.level","value":100}"#.to_string());
                    let body = format!("[{}]", items.join(","));
                    let sent = Instant::now();
                    if let Ok((202, answer)) =
                        support::http_post(port, "/api/v1/metrics", &token, &body)
                    {
                        let all = format!(r#""accepted":{}"#, LOAD_SERIES + 1);
                        if answer.contains(&all) {
                            acked.lock().unwrap().push(Ack {
                                seq,
                                sent,
                                at: Instant::now(),
                            });
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Pusher {
            stop,
            acked,
            attempted,
            thread: Some(thread),
        }
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The test's world: files, port, secrets, and the perfvisor log for failure messages.
struct World {
    dir: PathBuf,
    config: PathBuf,
    db: PathBuf,
    log: PathBuf,
    port: u16,
    token: String,
    env_secret: String,
}

impl World {
    /// Panics with `msg` and the end of perfvisor's log.
    fn fail(&self, msg: String) -> ! {
        support::fail_with_log(&self.log, msg)
    }

    fn start(&self) -> ChildGuard {
        support::start_run_logged(&self.config, &self.log)
    }

    /// Polls `f` until it returns `Ok`, failing after `timeout` with `what` and the last
    /// thing `f` said; perfvisor dying meanwhile fails at once.
    fn poll<T>(
        &self,
        run: &mut ChildGuard,
        timeout: Duration,
        what: &str,
        f: impl FnMut() -> Result<T, String>,
    ) -> T {
        support::poll_while_running(&mut run.0, &self.log, timeout, what, f)
    }
}

/// The managed daemons' pids as `GET /api/v1/managed` reports them, once all three have one.
fn managed_pids(port: u16) -> Result<BTreeMap<String, u32>, String> {
    let v = get_json(port, "/api/v1/managed").ok_or("no answer from /api/v1/managed")?;
    let mut out = BTreeMap::new();
    for d in v.as_array().into_iter().flatten() {
        if let (Some(name), Some(pid)) = (d["name"].as_str(), d["pid"].as_u64()) {
            out.insert(name.to_string(), pid as u32);
        }
    }
    if DAEMONS.iter().all(|d| out.contains_key(*d)) {
        Ok(out)
    } else {
        Err(format!("managed: {v}"))
    }
}

/// A firing alert of `rule` as `GET /api/v1/alerts` shows it: its `since_ms`.
fn firing_since(port: u16, rule: &str) -> Result<i64, String> {
    let v = get_json(port, "/api/v1/alerts").ok_or("no answer from /api/v1/alerts")?;
    v.as_array()
        .into_iter()
        .flatten()
        .find(|a| a["rule"] == rule && a["state"] == "firing")
        .and_then(|a| a["since_ms"].as_i64())
        .ok_or_else(|| format!("{rule} not firing: {v}"))
}

/// The `n`-th number of `tick <n>` lines in a log, in order.
fn ticks(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

#[test]
fn binary_survives_sigkill_under_load() {
    // Half a core of busy loop for a minute or two: not beside the CPU-measuring tests.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _cpu = rt.block_on(support::cpu_heavy());
    let test_started = Instant::now();

    let seed = std::env::var("PERFVISOR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("binary_survives_sigkill_under_load: seed {seed} (PERFVISOR_CRASH_SEED replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let tmp = tempfile::tempdir().expect("temp dir");
    let nonce = format!("{:08x}", fastrand::u32(..));
    let world = World {
        dir: tmp.path().to_path_buf(),
        config: tmp.path().join("perfvisor.toml"),
        db: tmp.path().join("pv.db"),
        log: tmp.path().join("perfvisor.stderr"),
        port: support::free_port(),
        token: format!("TOK-{nonce}-SECRET"),
        env_secret: format!("ENV-{nonce}-SECRET"),
    };
    let loadgen = env!("CARGO_BIN_EXE_perfvisor-loadgen");
    std::fs::write(
        &world.config,
        format!(
            r#"
[supervisor]
database = "{db}"
probe_interval = "200ms"
listen = "127.0.0.1:{port}"
token = "{token}"

[api]
# This test reads without the token.
anonymous_loopback_reads = true

[[daemon]]
name = "idle"
command = ["{loadgen}", "--cpu", "0", "--as", "crash-test-{nonce}-idle"]
stop_timeout = "2s"

[[daemon]]
name = "busy"
command = ["{loadgen}", "--cpu", "0.5", "--as", "crash-test-{nonce}-busy"]
stop_timeout = "2s"

[[daemon]]
name = "chatty"
command = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done", "crash-test-{nonce}-chatty"]
env = {{ API_KEY = "{env_secret}" }}
stop_timeout = "2s"

[[rule]]
name = "{LEVEL_RULE}"
kind = "threshold"
metric = "crash.level"
above = 50
clear = 10

[[rule]]
name = "{CPU_RULE}"
kind = "threshold"
metric = "process.cpu.utilization_ratio"
daemon = "busy"
above = 0.2
clear = 0.05
"#,
            db = world.db.display(),
            port = world.port,
            token = world.token,
            env_secret = world.env_secret,
        ),
    )
    .expect("config");

    // Declared first, dropped last: after perfvisor (and the pusher) are gone.
    let marker = format!("crash-test-{nonce}-");
    let _sweeper = Sweeper {
        prefix: marker.clone(),
    };
    let pusher = Pusher::start(world.port, world.token.clone());
    let chatty_log = world.dir.join("logs/chatty.out.log");

    let mut level_since: Option<i64> = None;
    let mut level_seen_at: Option<Instant> = None;
    let mut cpu_since_changes = 0;
    let mut last_cpu_since: Option<i64> = None;
    let mut pids_before_kill: Option<BTreeMap<String, u32>> = None;
    let mut kills: Vec<Instant> = Vec::new();
    let mut starts: Vec<Instant> = Vec::new();
    // The oldest acknowledgement (before its kill) of a sample the kill lost.
    let mut oldest_lost: Option<Duration> = None;
    let mut required_total = 0usize;
    let mut late_total = 0usize;
    let mut late_present_total = 0usize;

    for round in 0..=ROUNDS {
        let mut run = world.start();
        let started = Instant::now();
        starts.push(started);
        world.poll(&mut run, WAIT, "the API", || {
            get_json(world.port, "/api/v1/status")
                .map(drop)
                .ok_or_else(|| "not serving yet".to_string())
        });
        let pids = world.poll(&mut run, WAIT, "the managed daemons", || {
            managed_pids(world.port)
        });
        let serving_after = started.elapsed();

        // (d) Exactly one process per managed daemon, the one perfvisor reports; after a
        // kill, the same process as before (re-adopted).
        world.poll(
            &mut run,
            Duration::from_secs(10),
            "one process per daemon",
            || {
                let found = leaders(&marker);
                let ok = DAEMONS
                    .iter()
                    .all(|d| found.get(*d).map(Vec::as_slice) == Some(&[pids[*d]][..]));
                if ok {
                    Ok(())
                } else {
                    Err(format!("perfvisor reports {pids:?}, /proc has {found:?}"))
                }
            },
        );
        if let Some(before) = &pids_before_kill {
            if before != &pids {
                world.fail(format!(
                    "round {round}: daemons not re-adopted: before the kill {before:?}, after {pids:?}"
                ));
            }
        }
        // The engine watches those same pids.
        world.poll(&mut run, WAIT, "watchers of the managed daemons", || {
            let v = get_json(world.port, "/api/v1/daemons").ok_or("no daemon list")?;
            let watched: BTreeMap<String, u32> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    Some((d["daemon"].as_str()?.to_string(), d["pid"].as_u64()? as u32))
                })
                .collect();
            if DAEMONS.iter().all(|d| watched.get(*d) == Some(&pids[*d])) {
                Ok(())
            } else {
                Err(format!("watched {watched:?}, managed {pids:?}"))
            }
        });

        // (c) The level alert fires, with the start time it had before the kill.
        let since = world.poll(&mut run, WAIT, "the level alert", || {
            firing_since(world.port, LEVEL_RULE)
        });
        match level_since {
            None => {
                level_since = Some(since);
                level_seen_at = Some(Instant::now());
            }
            Some(first) if first != since => world.fail(format!(
                "round {round}: {LEVEL_RULE} fires again with since {since}, first since {first}"
            )),
            Some(_) => {}
        }
        let cpu_since = firing_since(world.port, CPU_RULE).ok();
        if cpu_since.is_some() && last_cpu_since.is_some() && cpu_since != last_cpu_since {
            cpu_since_changes += 1;
        }
        if cpu_since.is_some() {
            last_cpu_since = cpu_since;
        }

        // The chatty daemon's output keeps reaching its log.
        let before = ticks(&chatty_log).len();
        world.poll(&mut run, WAIT, "new lines in chatty's log", || {
            let n = ticks(&chatty_log).len();
            if n > before {
                Ok(())
            } else {
                Err(format!("{n} tick lines"))
            }
        });

        if round == ROUNDS {
            // The last start: stop it properly; its daemons go with it.
            // SAFETY: kill with a valid signal on our child's pid.
            unsafe { libc::kill(run.pid() as i32, libc::SIGTERM) };
            let status = run.0.wait().expect("wait");
            assert!(status.success(), "perfvisor stopped with {status}");
            let t = Instant::now();
            while !leaders(&marker).values().all(Vec::is_empty) {
                if t.elapsed() > Duration::from_secs(10) {
                    world.fail(format!(
                        "daemons outlive a SIGTERMed perfvisor: {:?}",
                        leaders(&marker)
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }

        // Load runs; the kill lands at a random moment (in the first round not before the
        // alert's start has had time to be committed).
        let mut delay = Duration::from_millis(rng.u64(500..3000));
        if round == 0 {
            let seen = level_seen_at.expect("seen").elapsed();
            delay = delay.max(FLUSH_MARGIN.saturating_sub(seen) + Duration::from_millis(100));
        }
        std::thread::sleep(delay);
        if let Ok(Some(status)) = run.0.try_wait() {
            world.fail(format!(
                "round {round}: perfvisor exited by itself ({status})"
            ));
        }
        let last_status = support::http_get(world.port, "/api/v1/status")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let kill_at = Instant::now();
        run.kill();
        kills.push(kill_at);
        pids_before_kill = Some(pids.clone());

        // (a) The database opens and is sound.
        let report = integrity_check(&world.db)
            .unwrap_or_else(|e| world.fail(format!("round {round}: integrity check: {e}")));
        if !report.is_ok() {
            world.fail(format!("round {round}: {report:?}"));
        }
        // (b) Every sample acknowledged before the flush margin is there, with its value.
        let reader = StorageReader::open(&world.db)
            .unwrap_or_else(|e| world.fail(format!("round {round}: open: {e}")));
        let series = reader.series().expect("series");
        let acked: Vec<Ack> = pusher.acked.lock().unwrap().clone();
        let attempted = *pusher.attempted.lock().unwrap();
        // The instance (index into `starts` and `kills`) each push went to. An answer can
        // arrive after `kill_at` (SIGKILL is not instantaneous): it is still that
        // instance's.
        let instance = |a: &Ack| starts.iter().rposition(|&s| s <= a.sent);
        let mut required = 0;
        let mut late = 0;
        let mut late_present = 0;
        for i in 0..LOAD_SERIES {
            let metric = format!("crash.load.{i}");
            let mut values: HashSet<u64> = HashSet::new();
            for (key, _) in series.iter().filter(|(k, _)| k.metric.as_str() == metric) {
                for (_, v) in reader.query_range(key, i64::MIN, i64::MAX).expect("read") {
                    let n = v as u64;
                    if v.fract() != 0.0 || n % 10 != i || n / 10 > attempted {
                        world.fail(format!("round {round}: {metric} holds {v}, never pushed"));
                    }
                    values.insert(n / 10);
                }
            }
            for a in &acked {
                let Some(n) = instance(a) else { continue };
                let Some(&killed) = kills.get(n) else {
                    continue;
                };
                if a.at + FLUSH_MARGIN <= killed {
                    required += 1;
                    if !values.contains(&a.seq) {
                        let missing: Vec<String> = acked
                            .iter()
                            .filter(|b| !values.contains(&b.seq))
                            .filter_map(|b| {
                                let n = instance(b)?;
                                Some(format!(
                                    "{} (instance {n}: acknowledged {:?} after its start, {:?} before its kill)",
                                    b.seq,
                                    b.at.saturating_duration_since(starts[n]),
                                    kills.get(n)?.saturating_duration_since(b.at),
                                ))
                            })
                            .collect();
                        world.fail(format!(
                            "round {round}: {metric} lost seq {}, acknowledged {:?} before the kill of \
                             instance {n}; missing: {missing:?}; status before the last kill: {last_status}",
                            a.seq,
                            killed - a.at,
                        ));
                    }
                } else if n == round {
                    late += 1;
                    if values.contains(&a.seq) {
                        late_present += 1;
                    } else {
                        let age = killed.saturating_duration_since(a.at);
                        oldest_lost = Some(oldest_lost.map_or(age, |o| o.max(age)));
                    }
                }
            }
        }
        required_total = required;
        late_total += late;
        late_present_total += late_present;
        // (c) One firing notification of the level alert in history, whatever the kills.
        let history: Vec<_> = reader
            .alerts(i64::MIN, i64::MAX)
            .expect("alerts")
            .into_iter()
            .filter(|a| a.rule == LEVEL_RULE)
            .collect();
        let firing: Vec<i64> = history
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .map(|a| a.since_ms)
            .collect();
        if firing != [level_since.expect("level since")] || history.len() != 1 {
            world.fail(format!(
                "round {round}: {LEVEL_RULE} history {:?}",
                history
                    .iter()
                    .map(|a| (a.state, a.since_ms, a.at_ms))
                    .collect::<Vec<_>>()
            ));
        }
        drop(reader);
        println!(
            "round {round:2}: serving after {serving_after:>6.0?}, killed after {delay:>6.0?}; \
             {required:6} samples required and present, {late:3} acknowledged within the margin \
             ({late_present} present); {LEVEL_RULE} since {}; {CPU_RULE} since {cpu_since:?}; pids {pids:?}",
            level_since.unwrap_or_default()
        );
    }
    drop(pusher);

    // The chatty daemon was one process all along: its counter never restarted.
    let ticks = ticks(&chatty_log);
    let restarts = ticks.windows(2).filter(|w| w[1] <= w[0]).count();
    let gaps: u64 = ticks
        .windows(2)
        .filter(|w| w[1] > w[0] + 1)
        .map(|w| w[1] - w[0] - 1)
        .sum();
    assert_eq!(restarts, 0, "chatty restarted: {ticks:?}");

    // No secret in any file perfvisor wrote; its files are private.
    let mut files = Vec::new();
    let mut stack = vec![world.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(
                    meta.permissions().mode() & 0o777,
                    0o700,
                    "{}",
                    path.display()
                );
                stack.push(path);
            } else {
                files.push((path, meta));
            }
        }
    }
    for (path, meta) in &files {
        if path == &world.config || path == &world.log {
            continue;
        }
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{} is not private",
            path.display()
        );
        if meta.file_type().is_fifo() {
            continue;
        }
        let bytes = std::fs::read(path).expect("read");
        for secret in [&world.token, &world.env_secret] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {}",
                path.display()
            );
        }
    }
    assert!(
        files
            .iter()
            .any(|(p, _)| p.ends_with("pv.db.managed/state.json")),
        "the state file was checked: {files:?}"
    );
    let logged = std::fs::read_to_string(&world.log).unwrap_or_default();
    for secret in [&world.token, &world.env_secret] {
        assert!(
            !logged.contains(secret.as_str()),
            "{secret} in perfvisor's log"
        );
    }
    println!(
        "{ROUNDS} kills in {:.0?}: {required_total} acknowledged samples required at the last \
         check, all present; {late_present_total} of {late_total} acknowledged within \
         {FLUSH_MARGIN:?} before their kill survived (the oldest lost one: acknowledged {} before \
         its kill); {} lines of chatty output, {gaps} missing; \
         {CPU_RULE} since changed {cpu_since_changes} times; files checked: {:?}",
        test_started.elapsed(),
        oldest_lost.map_or("-".to_string(), |d| format!("{d:.1?}")),
        ticks.len(),
        files
            .iter()
            .filter_map(|(p, _)| p.strip_prefix(&world.dir).ok())
            .collect::<Vec<_>>()
    );
}
