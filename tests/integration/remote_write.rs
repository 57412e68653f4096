//! Remote write against real engines: Debian's Prometheus (remote-write receiver) and
//! VictoriaMetrics receive a watched daemon's series; each is stopped for 20 s while
//! perfvisor keeps probing, started again on the same storage, and the gap is filled from
//! perfvisor's history with no sample lost or repeated (count and values compared with
//! perfvisor's own history). A receiver double checks what the engines cannot show: 5xx and
//! 429 are retried, other 4xx dropped with the error kept, a perfvisor restart resumes
//! from the cursor without resending, and samples the storage writer commits late (its disk
//! refused writes for a while) are not passed over.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perfvisor::config::RemoteWriteConfig;
use perfvisor::{MetricKind, Perfvisor, SeriesKey, Source};

use crate::support::{self, http_get, ChildGuard};

/// The daemon whose series are compared.
const DAEMON: &str = "rw-daemon";
/// How long the remote is down.
const OUTAGE: Duration = Duration::from_secs(20);

/// The command-line arguments of an engine for a port and a storage directory.
type Args = Box<dyn Fn(u16, &Path) -> Vec<String>>;

/// A remote-write engine started by the test on 127.0.0.1, restartable on its storage.
struct Engine {
    binary: &'static str,
    args: Args,
    write_path: &'static str,
    ready_path: &'static str,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<ChildGuard>,
}

impl Engine {
    /// `None` (skipped with a notice) when the package is missing, unless CI requires it.
    fn new(
        binary: &'static str,
        package: &str,
        write_path: &'static str,
        ready_path: &'static str,
        args: Args,
    ) -> Option<Engine> {
        if !Path::new(binary).exists() {
            support::skip(format!("{binary} is missing (apt-get install {package})"));
            return None;
        }
        Some(Engine {
            binary,
            args,
            write_path,
            ready_path,
            port: support::free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        })
    }

    fn start(&mut self) {
        let child = Command::new(self.binary)
            .args((self.args)(self.port, self.dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("engine starts");
        self.child = Some(ChildGuard(child));
        let started = Instant::now();
        while !matches!(http_get(self.port, self.ready_path), Ok((200, _))) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} not ready on 127.0.0.1:{}",
                self.binary,
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM (both engines flush on it) and wait for the exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill with a valid signal number on our own child's pid.
            unsafe { libc::kill(child.pid() as i32, libc::SIGTERM) };
            let started = Instant::now();
            while child.0.try_wait().ok().flatten().is_none() {
                if started.elapsed() > Duration::from_secs(30) {
                    child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.write_path)
    }

    /// The raw samples of `name{daemon=DAEMON}` over the last `range_s` seconds, read with
    /// PromQL (a range selector in an instant query returns the stored samples).
    fn samples(&self, name: &str, range_s: u64) -> Vec<(i64, f64)> {
        let query = format!("{name}{{daemon=\"{DAEMON}\"}}[{range_s}s]");
        let path = format!("/api/v1/query?query={}", encode(&query));
        let (status, body) = http_get(self.port, &path).expect("engine answers");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let mut out = Vec::new();
        for series in v["data"]["result"].as_array().into_iter().flatten() {
            for pair in series["values"].as_array().into_iter().flatten() {
                let ts = (pair[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
                let value = pair[1]
                    .as_str()
                    .unwrap_or("NaN")
                    .parse()
                    .unwrap_or(f64::NAN);
                out.push((ts, value));
            }
        }
        out.sort_by_key(|s| s.0);
        out
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn prometheus() -> Option<Engine> {
    Engine::new(
        "/usr/bin/prometheus",
        "prometheus",
        "/api/v1/write",
        "/-/ready",
        Box::new(|port, dir| {
            let config = dir.join("prometheus.yml");
            std::fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("config");
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--web.enable-remote-write-receiver".into(),
            ]
        }),
    )
}

fn victoria_metrics() -> Option<Engine> {
    Engine::new(
        "/usr/bin/victoria-metrics",
        "victoria-metrics",
        "/api/v1/write",
        "/health",
        Box::new(|port, dir| {
            vec![
                format!("-storageDataPath={}", dir.join("data").display()),
                format!("-httpListenAddr=127.0.0.1:{port}"),
                // Fresh samples are searchable at once, and answers are not cached.
                "-search.latencyOffset=0s".into(),
                "-search.disableCache".into(),
            ]
        }),
    )
}

/// The stored key of `metric` of the daemon.
fn key_of(pv: &Perfvisor, metric: &str) -> SeriesKey {
    let reader = pv.reader().expect("reader");
    reader
        .series()
        .expect("series")
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| {
            k.metric.as_str() == metric
                && matches!(&k.source, Source::Daemon(d) if d.as_str() == DAEMON)
        })
        .unwrap_or_else(|| panic!("no stored series {metric} of {DAEMON}"))
}

fn remote(url: String) -> RemoteWriteConfig {
    let mut r = RemoteWriteConfig::new("central", url);
    r.backfill = Duration::from_secs(3600);
    r.min_backoff = Duration::from_millis(50);
    r.max_backoff = Duration::from_millis(500);
    r
}

async fn remote_status(pv: &Perfvisor) -> perfvisor::RemoteWriteStatus {
    pv.status()
        .await
        .expect("status")
        .remote_write
        .into_iter()
        .next()
        .expect("a remote in status")
}

/// Ships to `engine`, stops it for [`OUTAGE`] under load, starts it again and compares.
async fn outage_is_filled(mut engine: Engine) {
    engine.start();
    let t = support::start(|b| b.probe_interval(Duration::from_millis(200)));
    let _child = support::watched_idle_daemon(&t.pv, DAEMON).await;
    t.pv.start_remote_write(&[remote(engine.url())], Duration::from_secs(7 * 86_400))
        .expect("remote write starts");
    let first = Instant::now();
    while engine.samples("process_memory_usage_bytes", 600).is_empty() {
        assert!(
            first.elapsed() < Duration::from_secs(60),
            "{} never received the series",
            engine.binary
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    engine.stop();
    let down_ms = now_ms();
    std::thread::sleep(OUTAGE);
    let during = remote_status(&t.pv).await;
    assert!(during.retries > 0, "{during:?}");
    assert!(during.lag_seconds > 5.0, "{during:?}");
    assert!(during.last_error.is_some(), "{during:?}");
    let up_ms = now_ms();
    engine.start();

    // Caught up: the cursor passes the end of the outage and then some.
    support::wait_for(Duration::from_secs(60), "catch-up", || async {
        remote_status(&t.pv).await.cursor_ms > up_ms + 2_000
    })
    .await;
    let status = remote_status(&t.pv).await;
    assert_eq!(status.dropped_samples, 0, "{status:?}");
    let cursor = status.cursor_ms;
    // The engines make fresh samples searchable within a second or two: poll until the
    // memory series holds everything shipped before the cursor (the exact comparisons
    // below then say what differs, if anything).
    let stored =
        t.pv.reader()
            .expect("reader")
            .query_range(&key_of(&t.pv, "process.memory.usage_bytes"), 0, cursor)
            .expect("history")
            .len();
    let searchable = Instant::now();
    while engine
        .samples("process_memory_usage_bytes", 900)
        .iter()
        .filter(|s| s.0 < cursor)
        .count()
        < stored
        && searchable.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(200));
    }

    // perfvisor's judgement reaches the engine too, every judgement once: the score series
    // (one sample per judgement, every few seconds, so fewer than the process series).
    let key = key_of(&t.pv, "perfvisor.judgement.score");
    let ours =
        t.pv.reader()
            .expect("reader")
            .query_range(&key, 0, cursor)
            .expect("history");
    let theirs: Vec<(i64, f64)> = engine
        .samples("perfvisor_judgement_score", 900)
        .into_iter()
        .filter(|s| s.0 < cursor)
        .collect();
    assert!(ours.len() >= 3, "only {} judgements stored", ours.len());
    assert_eq!(
        ours, theirs,
        "judgement scores stored and in {}",
        engine.binary
    );

    for (metric, prom) in [
        ("process.memory.usage_bytes", "process_memory_usage_bytes"),
        ("process.cpu.time_seconds", "process_cpu_time_seconds_total"),
    ] {
        let key = key_of(&t.pv, metric);
        let ours =
            t.pv.reader()
                .expect("reader")
                .query_range(&key, 0, cursor)
                .expect("history");
        let theirs: Vec<(i64, f64)> = engine
            .samples(prom, 900)
            .into_iter()
            .filter(|s| s.0 < cursor)
            .collect();
        let gap = |s: &[(i64, f64)]| s.iter().filter(|x| x.0 > down_ms && x.0 < up_ms).count();
        assert!(
            gap(&ours) >= 50,
            "{metric}: only {} samples during the outage",
            gap(&ours)
        );
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{metric}: {} stored, {} in {} ({} vs {} in the outage)",
            ours.len(),
            theirs.len(),
            engine.binary,
            gap(&ours),
            gap(&theirs)
        );
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a.0, b.0, "{metric}: timestamps differ");
            let close = a.1 == b.1 || (a.1 - b.1).abs() <= 1e-9 * a.1.abs().max(1.0);
            assert!(close, "{metric} at {}: {} stored, {} remote", a.0, a.1, b.1);
        }
    }
    t.pv.shutdown().await.expect("shutdown");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A real Prometheus receives the daemon's series; a 20 s outage under load is filled
/// from perfvisor's history, every sample once, values equal.
#[tokio::test]
async fn prometheus_outage_is_filled_from_history() {
    if let Some(engine) = prometheus() {
        outage_is_filled(engine).await;
    }
}

/// The same against VictoriaMetrics, which keeps duplicates (so a resent sample would show).
#[tokio::test]
async fn victoria_metrics_outage_is_filled_from_history() {
    if let Some(engine) = victoria_metrics() {
        outage_is_filled(engine).await;
    }
}

/// What the receiver double saw: every (series labels, timestamp) and its value, and the
/// requests with their headers.
#[derive(Default)]
struct Received {
    samples: BTreeMap<(String, i64), Vec<f64>>,
    requests: u64,
    headers: Vec<String>,
    /// Statuses to answer with next, in order; 204 once empty.
    script: Vec<(u16, Option<&'static str>)>,
}

/// A remote-write receiver on 127.0.0.1 that decodes every body and answers as scripted.
fn receiver() -> (u16, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let state = Arc::new(Mutex::new(Received::default()));
    let shared = Arc::clone(&state);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut headers = Vec::new();
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end().to_string();
                        if line.is_empty() {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        headers.push(line);
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let (status, retry_after) = {
                        let mut s = shared.lock().unwrap();
                        s.requests += 1;
                        s.headers = headers;
                        let answer = if s.script.is_empty() {
                            (204, None)
                        } else {
                            s.script.remove(0)
                        };
                        if answer.0 == 204 {
                            let request = perfvisor::remote_write::decode(&body).expect("body");
                            for ts in request.timeseries {
                                let name: Vec<String> = ts
                                    .labels
                                    .iter()
                                    .map(|l| format!("{}={}", l.name, l.value))
                                    .collect();
                                for sample in ts.samples {
                                    s.samples
                                        .entry((name.join(","), sample.timestamp))
                                        .or_default()
                                        .push(sample.value);
                                }
                            }
                        }
                        answer
                    };
                    let extra = retry_after
                        .map(|r| format!("Retry-After: {r}\r\n"))
                        .unwrap_or_default();
                    let reply =
                        format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 4\r\n\r\nnope");
                    if reader.get_mut().write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, state)
}

fn start_on(db: &PathBuf) -> Perfvisor {
    Perfvisor::builder()
        .database(db)
        .probe_interval(Duration::from_millis(100))
        .host_interval(Duration::from_millis(500))
        .start()
        .expect("perfvisor starts")
}

/// 503 and 429 are retried (nothing lost), a 400 drops its request's samples with the
/// error kept, the protocol headers are sent, and a perfvisor restarted on the same
/// database resumes from its cursor: the receiver never gets a (series, timestamp) twice
/// and has every sample stored before the cursor.
/// Samples the storage writer commits late are shipped all the same: while the database
/// refuses writes for 8 s the writer holds what it is sent and commits it afterwards, with
/// its own timestamps, long after `SETTLE`. The shipper reads no further than what the
/// writer has committed everything up to, so its cursor does not pass them meanwhile.
#[tokio::test]
async fn samples_committed_late_are_shipped() {
    let (port, seen) = receiver();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("perfvisor.db");
    let pv = start_on(&db);
    let _child = support::watched_idle_daemon(&pv, DAEMON).await;
    pv.start_remote_write(
        &[remote(format!("http://127.0.0.1:{port}/api/v1/write"))],
        Duration::from_secs(86_400),
    )
    .expect("remote write starts");
    support::wait_for(Duration::from_secs(30), "shipping", || async {
        remote_status(&pv).await.sent_samples > 100
    })
    .await;

    pv.inject_storage_fault(perfvisor::StorageFault::ReadOnly)
        .expect("fault");
    let blocked_ms = now_ms();
    // Held until the writer keeps uncommitted samples older than the shipper's `SETTLE`
    // (by 3 s): without the writer's settled moment the cursor would pass them.
    let held_past = blocked_ms + perfvisor::remote_write::SETTLE.as_millis() as i64 + 3_000;
    support::wait_for(
        Duration::from_secs(60),
        "samples held past SETTLE",
        || async {
            let storage = pv.status().await.expect("status").storage;
            storage.write_blocked.is_some()
                && storage.buffered_samples >= 20
                && now_ms() > held_past
        },
    )
    .await;
    let cleared_ms = now_ms();
    pv.inject_storage_fault(perfvisor::StorageFault::Clear)
        .expect("fault cleared");
    support::wait_for(Duration::from_secs(60), "catch-up", || async {
        remote_status(&pv).await.cursor_ms > cleared_ms + 2_000
    })
    .await;
    let status = remote_status(&pv).await;
    pv.shutdown().await.expect("shutdown");
    assert_eq!(status.dropped_samples, 0, "{status:?}");

    let reader = perfvisor::StorageReader::open(&db).expect("reader");
    let key = reader
        .series()
        .expect("series")
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| {
            k.metric.as_str() == "process.memory.usage_bytes"
                && matches!(&k.source, Source::Daemon(d) if d.as_str() == DAEMON)
        })
        .expect("memory series");
    let stored: Vec<i64> = reader
        .query_range(&key, 0, status.cursor_ms)
        .expect("history")
        .into_iter()
        .map(|s| s.0)
        .collect();
    let late = stored
        .iter()
        .filter(|&&ts| ts > blocked_ms && ts < cleared_ms)
        .count();
    assert!(late >= 20, "only {late} samples stored while writes failed");
    let s = seen.lock().unwrap();
    let received: Vec<i64> = s
        .samples
        .keys()
        .filter(|(n, ts)| {
            *ts < status.cursor_ms
                && n.contains("__name__=process_memory_usage_bytes")
                && n.contains(DAEMON)
        })
        .map(|k| k.1)
        .collect();
    let missing: Vec<&i64> = stored.iter().filter(|ts| !received.contains(ts)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} stored samples never shipped ({late} stored while writes failed), \
         the first at {:?} (writes failed from {blocked_ms} to {cleared_ms})",
        missing.len(),
        stored.len(),
        missing.first()
    );
    assert_eq!(received.len(), stored.len());
}

#[tokio::test]
async fn retries_drops_and_restart_resume_from_the_cursor() {
    let (port, seen) = receiver();
    seen.lock().unwrap().script = vec![(503, None), (429, Some("1")), (400, None)];
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("perfvisor.db");
    let mut r = remote(format!("http://127.0.0.1:{port}/api/v1/write"));
    r.max_samples_per_send = 50;

    let pv = start_on(&db);
    let _child = support::watched_idle_daemon(&pv, DAEMON).await;
    pv.start_remote_write(std::slice::from_ref(&r), Duration::from_secs(86_400))
        .expect("remote write starts");
    support::wait_for(Duration::from_secs(30), "shipping", || async {
        remote_status(&pv).await.sent_samples > 500
    })
    .await;
    let first = remote_status(&pv).await;
    assert_eq!(first.retries, 2, "{first:?}");
    // The refused request's samples, a whole request at most.
    assert!(
        first.dropped_samples > 0 && first.dropped_samples <= 50,
        "{first:?}"
    );
    assert!(
        first
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("400")),
        "{first:?}"
    );
    {
        let s = seen.lock().unwrap();
        let h = s.headers.join("\n").to_ascii_lowercase();
        for needle in [
            "content-encoding: snappy",
            "content-type: application/x-protobuf",
            "x-prometheus-remote-write-version: 0.1.0",
            "user-agent: perfvisor/",
        ] {
            assert!(h.contains(needle), "{needle} not in {h}");
        }
    }
    pv.shutdown().await.expect("shutdown");
    let sent_before = seen.lock().unwrap().samples.len();

    let pv = start_on(&db);
    let _child2 = support::watched_idle_daemon(&pv, DAEMON).await;
    pv.start_remote_write(std::slice::from_ref(&r), Duration::from_secs(86_400))
        .expect("remote write starts again");
    support::wait_for(Duration::from_secs(30), "shipping again", || async {
        remote_status(&pv).await.sent_samples > 200
    })
    .await;
    let last = remote_status(&pv).await;
    assert_eq!(last.dropped_samples, 0, "{last:?}");
    pv.shutdown().await.expect("shutdown");
    // The cursor as saved at shutdown (a request in flight then still counts).
    let cursor = perfvisor_actors::storage::RemoteCursors::open(&db)
        .expect("cursors")
        .load("central")
        .expect("cursor")
        .expect("a saved cursor")
        .0;

    let s = seen.lock().unwrap();
    assert!(
        s.samples.len() > sent_before,
        "nothing shipped after the restart"
    );
    let repeated: Vec<_> = s.samples.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        repeated.is_empty(),
        "sent twice: {:?}",
        &repeated[..repeated.len().min(3)]
    );
    // Every stored sample of the daemon's memory series before the cursor arrived, but
    // those of the refused request (at most 50, and most of them of other series).
    let reader = perfvisor::StorageReader::open(&db).expect("reader");
    let key = reader
        .series()
        .expect("series")
        .into_iter()
        .find(|(k, kind)| {
            k.metric.as_str() == "process.memory.usage_bytes"
                && *kind == MetricKind::Gauge
                && matches!(&k.source, Source::Daemon(d) if d.as_str() == DAEMON)
        })
        .expect("memory series")
        .0;
    let stored = reader.query_range(&key, 0, cursor).expect("history");
    let received = s
        .samples
        .keys()
        .filter(|(n, ts)| {
            *ts < cursor && n.contains("__name__=process_memory_usage_bytes") && n.contains(DAEMON)
        })
        .count();
    assert!(stored.len() > 20);
    assert!(
        received <= stored.len() && received as u64 + first.dropped_samples >= stored.len() as u64,
        "{received} received of {} stored",
        stored.len()
    );
}

/// A remote that stays away longer than raw retention: the samples that pass it unshipped
/// are counted as dropped (and expired) instead of sent, and the critical
/// `perfvisor_remote_write_expired` alert fires from the self-metric.
#[tokio::test]
async fn samples_past_retention_are_dropped_and_alerted() {
    let t = support::start(|b| b.rule(perfvisor::remote_write::expired_rule()));
    let mut r = remote(format!(
        "http://127.0.0.1:{}/api/v1/write",
        support::refused_port()
    ));
    r.backfill = Duration::ZERO;
    t.pv.start_remote_write(&[r], Duration::from_secs(3))
        .expect("remote write starts");
    support::wait_for(Duration::from_secs(30), "expired samples", || async {
        remote_status(&t.pv).await.expired_samples > 0
    })
    .await;
    support::wait_for(Duration::from_secs(30), "the expired alert", || async {
        t.pv.firing_alerts()
            .await
            .expect("alerts")
            .iter()
            .any(|a| a.rule == perfvisor::remote_write::EXPIRED_RULE)
    })
    .await;
    let s = remote_status(&t.pv).await;
    assert_eq!(s.sent_samples, 0, "{s:?}");
    assert_eq!(s.dropped_samples, s.expired_samples, "{s:?}");
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("raw retention") || e.contains("failed")),
        "{s:?}"
    );
    t.pv.shutdown().await.expect("shutdown");
}

/// Through the binary: `perfvisor run` with a `[[remote_write]]` ships (with its extra
/// label and the basic-auth header from `password_file`), and `perfvisor status` shows the
/// remote's line and `--json` its counters.
#[test]
fn binary_ships_and_status_shows_the_remote() {
    let (port, seen) = receiver();
    let dir = tempfile::tempdir().expect("temp dir");
    let password = dir.path().join("rw-password");
    std::fs::write(&password, "s3cret\n").expect("password file");
    let listen = format!("127.0.0.1:{}", support::free_port());
    let config = dir.path().join("pv.toml");
    std::fs::write(
        &config,
        format!(
            "[supervisor]\ndatabase = \"{}\"\nlisten = \"{listen}\"\nprobe_interval = \"200ms\"\nhost_interval = \"200ms\"\n\n\
             [api]\nanonymous_loopback_reads = true\n\n\
             [[remote_write]]\nname = \"central\"\nurl = \"http://127.0.0.1:{port}/api/v1/write\"\n\
             labels = {{ host = \"web-1\" }}\nbackfill = \"1h\"\n\
             basic_auth = {{ username = \"pv\", password_file = \"{}\" }}\n",
            dir.path().join("pv.db").display(),
            password.display()
        ),
    )
    .expect("config");
    let run = support::RunGuard(support::start_run_logged(
        &config,
        &dir.path().join("run.log"),
    ));
    let started = Instant::now();
    let json = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
            .args(["status", "--json", "--address", &listen])
            .output()
            .expect("status runs");
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let r = &v["status"]["remote_write"][0];
            if r["sent_samples"].as_u64().unwrap_or(0) > 0 {
                break v;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing shipped; log: {}",
            std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let r = &json["status"]["remote_write"][0];
    assert_eq!(r["name"], "central", "{r}");
    assert_eq!(r["dropped_samples"], 0, "{r}");
    let out = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
        .args(["status", "--address", &listen])
        .output()
        .expect("status runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("remote write central: lag "), "{text}");
    // Host and perfvisor series follow (the first requests may hold only a few series).
    let started = Instant::now();
    while !seen
        .lock()
        .unwrap()
        .samples
        .keys()
        .any(|(n, _)| n.contains("source=host"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no host series shipped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = seen.lock().unwrap();
    let h = s.headers.join("\n").to_ascii_lowercase();
    // "pv:s3cret" in base64.
    assert!(h.contains("authorization: basic chy6cznjcmv0"), "{h}");
    let names: Vec<&String> = s.samples.keys().map(|(n, _)| n).collect();
    assert!(
        names.iter().all(|n| n.contains("host=web-1")),
        "a series without the extra label: {:?}",
        names.iter().find(|n| !n.contains("host=web-1"))
    );
    assert!(
        names.iter().any(|n| n.contains("source=perfvisor"))
            && names.iter().any(|n| n.contains("source=host")),
        "no perfvisor or no host series in {:?}",
        names
            .iter()
            .map(|n| n
                .split(',')
                .find(|l| l.starts_with("__name__"))
                .unwrap_or(""))
            .collect::<std::collections::BTreeSet<_>>()
    );
    drop(s);

    // A reload that moves the remote to another URL (same name): the shipper restarts from
    // its cursor, so the second receiver gets only what the first did not.
    let (port2, seen2) = receiver();
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(&format!(":{port}/"), &format!(":{port2}/")),
    )
    .expect("config");
    // SAFETY: kill with a valid signal number on our own child's pid.
    unsafe { libc::kill(run.pid() as i32, libc::SIGHUP) };
    let started = Instant::now();
    while seen2.lock().unwrap().samples.len() < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing reached the second receiver after the reload; log: {}",
            std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (a, b) = (seen.lock().unwrap(), seen2.lock().unwrap());
    let twice: Vec<_> = b
        .samples
        .keys()
        .filter(|k| a.samples.contains_key(*k))
        .collect();
    assert!(
        twice.is_empty(),
        "sent to both: {:?}",
        &twice[..twice.len().min(3)]
    );
}
