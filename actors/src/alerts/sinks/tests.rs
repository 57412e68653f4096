//! Sink tests: real HTTP servers on 127.0.0.1, real programs, a real Alertmanager.

use super::*;
use crate::types::{AlertState, DaemonId, Labels, SeriesKey, Severity, Source, TimestampMs};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> TimestampMs {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

fn alert(rule: &str, state: AlertState) -> Alert {
    let now = now_ms();
    Alert {
        rule: rule.to_owned(),
        series: SeriesKey::new(
            Source::Daemon(DaemonId::new("indexer-ws1")),
            "process.cpu.usage_ratio",
            Labels::from_pairs([
                ("core", "all"),
                ("severity", "shadowed"),
                ("disk.name", "sda"),
            ]),
        ),
        daemon: Some(DaemonId::new("indexer-ws1")),
        project: Some("search".into()),
        severity: Severity::Warning,
        state,
        value: 0.93,
        threshold: 0.8,
        since_ms: now - 60_000,
        at_ms: now,
        message: "CPU at 93% for 1 min".into(),
        recommendations: vec![
            "Check the indexer's queue.".into(),
            "Then add a worker.".into(),
        ],
        auto_actionable: false,
    }
}

fn one(rule: &str, state: AlertState) -> Arc<[Alert]> {
    Arc::from(vec![alert(rule, state)])
}

/// Quick retries so that tests finish fast.
fn fast() -> SinkSettings {
    SinkSettings {
        queue: 256,
        max_attempts: 3,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
    }
}

fn webhook(url: String, timeout_ms: u64) -> SinkConfig {
    SinkConfig::Webhook {
        url,
        headers: vec![("X-Token".into(), "secret".into())],
        timeout: Duration::from_millis(timeout_ms),
    }
}

/// Polls `cond` until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

#[derive(Clone, Debug)]
struct Recorded {
    request_line: String,
    head: String,
    body: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers each request with the next scripted status (200 once the script is out).
    Answer,
    /// Accepts connections and never answers.
    Hang,
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that records requests.
struct TestServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(behaviour: Behaviour, statuses: &[u16]) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut script: VecDeque<u16> = statuses.iter().copied().collect();
        let (recorded, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                if behaviour == Behaviour::Hang {
                    held.push(stream);
                    continue;
                }
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                recorded.lock().unwrap().push(request);
                let status = script.pop_front().unwrap_or(200);
                let body = if status == 200 {
                    ""
                } else {
                    "scripted failure"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TestServer {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some(Recorded {
        request_line: head.lines().next().unwrap_or("").to_owned(),
        head,
        body,
    })
}

/// Ensures the handle can be shared between threads.
#[test]
fn sink_handle_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sink>();
    assert_send_sync::<SinkStats>();
}

/// Ensures a webhook POSTs `{"version":1,"alerts":[...]}` with perfvisor's serialization
/// and the configured headers.
#[test]
fn webhook_posts_the_versioned_json_of_the_alerts() {
    let server = TestServer::start(Behaviour::Answer, &[]);
    let sink = Sink::spawn("hook", webhook(server.url(), 2000), fast()).unwrap();
    let alerts: Arc<[Alert]> = Arc::from(vec![
        alert("high_cpu", AlertState::Firing),
        alert("high_rss", AlertState::Resolved),
    ]);
    assert!(sink.send(Arc::clone(&alerts)));
    assert!(wait_until(Duration::from_secs(5), || sink
        .status()
        .delivered
        == 1));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.request_line, "POST /hook HTTP/1.1");
    let head = request.head.to_ascii_lowercase();
    assert!(head.contains("x-token: secret"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(body["alerts"][0]["state"], "firing");
    let sent: Vec<Alert> = serde_json::from_value(body["alerts"].clone()).unwrap();
    assert_eq!(sent, alerts.to_vec());
    let status = sink.status();
    assert_eq!(
        (
            status.kind.as_str(),
            status.failed_attempts,
            status.dropped,
            status.queued
        ),
        ("webhook", 0, 0, 0)
    );
}

/// Ensures a 500 is retried and the notification then delivered exactly once.
#[test]
fn webhook_retries_a_server_error_then_delivers_once() {
    let server = TestServer::start(Behaviour::Answer, &[500]);
    let sink = Sink::spawn("hook", webhook(server.url(), 2000), fast()).unwrap();
    assert!(sink.send(one("high_cpu", AlertState::Firing)));
    assert!(wait_until(Duration::from_secs(5), || sink
        .status()
        .delivered
        == 1));
    let status = sink.status();
    assert_eq!(
        (status.failed_attempts, status.retries, status.dropped),
        (1, 1, 0)
    );
    assert!(status.last_error.unwrap().contains("500"));
    assert_eq!(server.requests().len(), 2);
}

/// Ensures an Alertmanager sink with several URLs becomes one sink per member, each
/// delivering on its own, and that `Sink::spawn` refuses several URLs, naming the way.
#[test]
fn alertmanager_cluster_members_get_a_sink_each() {
    let (a, b) = (
        TestServer::start(Behaviour::Answer, &[]),
        TestServer::start(Behaviour::Answer, &[500, 500, 500, 500, 500]),
    );
    let base = |s: &TestServer| s.url().trim_end_matches("/hook").to_owned();
    let config = SinkConfig::Alertmanager {
        urls: vec![base(&a), base(&b)],
        timeout: Duration::from_secs(2),
        generator_url: None,
    };
    let err = Sink::spawn("am", config.clone(), fast())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 urls") && err.contains("spawn_each"),
        "{err}"
    );
    let sinks = Sink::spawn_each("am", config, fast()).unwrap();
    let names: Vec<&str> = sinks.iter().map(Sink::name).collect();
    let authority = |s: &TestServer| base(s).trim_start_matches("http://").to_owned();
    assert_eq!(
        names,
        [
            format!("am@{}", authority(&a)),
            format!("am@{}", authority(&b))
        ]
    );
    for sink in &sinks {
        assert!(sink.send(one("high_cpu", AlertState::Firing)));
    }
    assert!(wait_until(Duration::from_secs(5), || sinks[0]
        .status()
        .delivered
        == 1));
    assert!(wait_until(Duration::from_secs(5), || sinks[1]
        .status()
        .failed_attempts
        >= 2));
    assert_eq!(a.requests().len(), 1);

    let twice = SinkConfig::Alertmanager {
        urls: vec![base(&a), format!("{}/", base(&a))],
        timeout: Duration::from_secs(2),
        generator_url: None,
    };
    let err = Sink::spawn_each("am", twice, fast())
        .unwrap_err()
        .to_string();
    assert!(err.contains("listed twice"), "{err}");
    let none = SinkConfig::Alertmanager {
        urls: Vec::new(),
        timeout: Duration::from_secs(2),
        generator_url: None,
    };
    let err = Sink::spawn_each("am", none, fast())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no url is given"), "{err}");
}

/// Ensures a 400 is a permanent failure: not retried, counted, its body kept.
#[test]
fn webhook_does_not_retry_a_client_error() {
    let server = TestServer::start(Behaviour::Answer, &[400]);
    let sink = Sink::spawn("hook", webhook(server.url(), 2000), fast()).unwrap();
    assert!(sink.send(one("high_cpu", AlertState::Firing)));
    assert!(wait_until(Duration::from_secs(5), || sink.status().dropped == 1));
    let status = sink.status();
    assert_eq!(
        (status.delivered, status.failed_attempts, status.retries),
        (0, 1, 0)
    );
    let error = status.last_error.unwrap();
    assert!(
        error.contains("400") && error.contains("scripted failure"),
        "{error}"
    );
    assert_eq!(server.requests().len(), 1);
}

/// Ensures hanging and refusing endpoints cost the caller no wait, fail after their
/// timeout, and leave another sink delivering at once.
#[test]
fn hanging_and_refusing_endpoints_delay_neither_caller_nor_other_sinks() {
    let hanging = TestServer::start(Behaviour::Hang, &[]);
    // Port 1 is below the ephemeral range, so no other test's server can be handed it
    // (a bound-and-released port can be, and then "refused" delivers).
    let refused_port = 1;
    assert!(std::net::TcpStream::connect(("127.0.0.1", refused_port)).is_err());
    let healthy = TestServer::start(Behaviour::Answer, &[]);
    let settings = SinkSettings {
        max_attempts: 2,
        ..fast()
    };
    let hang = Sink::spawn("hang", webhook(hanging.url(), 200), settings.clone()).unwrap();
    let refuse = Sink::spawn(
        "refuse",
        webhook(format!("http://127.0.0.1:{refused_port}/hook"), 200),
        settings.clone(),
    )
    .unwrap();
    let good = Sink::spawn("good", webhook(healthy.url(), 2000), settings.clone()).unwrap();
    let log = Sink::spawn("log", SinkConfig::Log, settings).unwrap();

    let alerts = one("high_cpu", AlertState::Firing);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        for sink in [&hang, &refuse] {
            let t = Instant::now();
            assert!(sink.send(Arc::clone(&alerts)));
            slowest = slowest.max(t.elapsed());
        }
    }
    let mean = started.elapsed() / 200;
    eprintln!("send(): mean {mean:?}, slowest {slowest:?} over 200 calls");
    assert!(mean < Duration::from_millis(1), "mean send {mean:?}");

    let mut latencies = Vec::new();
    for i in 1..=5 {
        let t = Instant::now();
        assert!(good.send(Arc::clone(&alerts)) && log.send(Arc::clone(&alerts)));
        while good.status().delivered < i {
            assert!(t.elapsed() < Duration::from_secs(2), "healthy sink stuck");
            thread::yield_now();
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    eprintln!("healthy webhook delivery under a hanging sink: {latencies:?}");
    // A sink held up by the hanging one would take its 200 ms timeout; the margins above
    // 10 ms absorb a CPU-starved CI runner.
    assert!(latencies[0] < Duration::from_millis(10), "{latencies:?}");
    assert!(latencies[2] < Duration::from_millis(50), "{latencies:?}");
    assert!(wait_until(Duration::from_secs(2), || log
        .status()
        .delivered
        == 5));

    assert!(wait_until(Duration::from_secs(3), || hang
        .status()
        .failed_attempts
        >= 1));
    let first_timeout = started.elapsed();
    assert!(
        first_timeout >= Duration::from_millis(190),
        "timed out after {first_timeout:?}"
    );
    assert!(hang.status().last_error.unwrap().contains("imeout"));
    assert!(wait_until(Duration::from_secs(3), || refuse
        .status()
        .failed_attempts
        >= 2));
    assert_eq!(hang.status().delivered + refuse.status().delivered, 0);

    // Shutdown: bounded, and everything not delivered is counted as dropped.
    let t = Instant::now();
    hang.shutdown(Duration::from_millis(100));
    refuse.shutdown(Duration::from_millis(100));
    let shutdown = t.elapsed();
    assert!(
        shutdown < Duration::from_millis(600),
        "shutdown took {shutdown:?}"
    );
    for sink in [&hang, &refuse] {
        assert!(
            wait_until(Duration::from_secs(2), || sink.status().dropped == 100),
            "{:?}",
            sink.status()
        );
        assert_eq!(sink.status().queued, 0);
        assert!(
            !sink.send(Arc::clone(&alerts)),
            "a stopped sink takes nothing"
        );
    }
}

/// Ensures a full queue drops (and counts) instead of blocking.
#[test]
fn full_queue_drops_and_counts() {
    let hanging = TestServer::start(Behaviour::Hang, &[]);
    let settings = SinkSettings {
        queue: 2,
        max_attempts: 1,
        ..fast()
    };
    let sink = Sink::spawn("hang", webhook(hanging.url(), 300), settings).unwrap();
    let refused = (0..10)
        .filter(|_| !sink.send(one("high_cpu", AlertState::Firing)))
        .count();
    assert!(refused >= 7, "{refused} refused");
    let status = sink.status();
    assert_eq!(status.dropped, refused as u64);
    assert!(status.last_error.unwrap().contains("queue full"));
    sink.shutdown(Duration::from_millis(10));
}

/// Ensures an exec program gets the JSON document on stdin.
#[test]
fn exec_program_receives_the_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let config = SinkConfig::Exec {
        program: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            r#"cat > "$1""#.into(),
            "sh".into(),
            out.display().to_string(),
        ],
        timeout: Duration::from_secs(5),
    };
    let sink = Sink::spawn("exec", config, fast()).unwrap();
    assert!(sink.send(one("high_cpu", AlertState::Firing)));
    assert!(wait_until(Duration::from_secs(5), || sink
        .status()
        .delivered
        == 1));
    let body: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(body["alerts"][0]["rule"], "high_cpu");
}

/// Ensures a program running past its timeout is killed with what it started, and counted.
#[test]
fn exec_program_past_timeout_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("sleep.pid");
    let config = SinkConfig::Exec {
        program: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            r#"sleep 30 & echo $! > "$1"; wait"#.into(),
            "sh".into(),
            pidfile.display().to_string(),
        ],
        timeout: Duration::from_millis(300),
    };
    let settings = SinkSettings {
        max_attempts: 1,
        ..fast()
    };
    let sink = Sink::spawn("exec", config, settings).unwrap();
    let t = Instant::now();
    assert!(sink.send(one("high_cpu", AlertState::Firing)));
    assert!(wait_until(Duration::from_secs(3), || sink.status().dropped == 1));
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    let status = sink.status();
    assert_eq!((status.delivered, status.failed_attempts), (0, 1));
    assert!(status.last_error.unwrap().contains("killed"));
    // The grandchild went with the group: gone, or a zombie waiting for its new parent.
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // SIGKILL is delivered asynchronously: poll until the process has finished dying.
    let dead = wait_until(Duration::from_secs(2), || {
        let stat = stat();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        stat.is_empty() || matches!(state, Some('Z' | 'X'))
    });
    assert!(dead, "sleep still alive: {}", stat());
}

/// Ensures a non-zero exit is a failure, retried, with the stderr excerpt kept.
#[test]
fn exec_program_failing_is_retried_and_counted() {
    let config = SinkConfig::Exec {
        program: "sh".into(),
        args: vec!["-c".into(), "echo nope >&2; exit 3".into()],
        timeout: Duration::from_secs(5),
    };
    let settings = SinkSettings {
        max_attempts: 2,
        ..fast()
    };
    let sink = Sink::spawn("exec", config, settings).unwrap();
    assert!(sink.send(one("high_cpu", AlertState::Firing)));
    assert!(wait_until(Duration::from_secs(5), || sink.status().dropped == 1));
    let status = sink.status();
    assert_eq!((status.failed_attempts, status.retries), (2, 1));
    let error = status.last_error.unwrap();
    assert!(
        error.contains("exit status: 3") && error.contains("nope"),
        "{error}"
    );
}

/// Ensures a missing or non-executable program is refused at spawn, named.
#[test]
fn exec_program_must_exist_and_be_executable() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-notifier");
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    for (program, why) in [(&missing, "does not exist"), (&plain, "not executable")] {
        let config = SinkConfig::Exec {
            program: program.clone(),
            args: vec![],
            timeout: Duration::from_secs(1),
        };
        let err = Sink::spawn("exec", config, SinkSettings::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&program.display().to_string()) && err.contains(why),
            "{err}"
        );
    }
    let config = SinkConfig::Exec {
        program: "no-such-notifier-in-path".into(),
        args: vec![],
        timeout: Duration::from_secs(1),
    };
    let err = Sink::spawn("exec", config, SinkSettings::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-such-notifier-in-path") && err.contains("PATH"),
        "{err}"
    );
}

/// Ensures bad values are refused together, each naming the value and what is accepted.
#[test]
fn bad_config_values_are_named_with_what_is_accepted() {
    let bad = SinkSettings {
        queue: 0,
        max_attempts: 0,
        backoff_initial: Duration::from_secs(20),
        backoff_max: Duration::from_secs(10),
    };
    let config = SinkConfig::Webhook {
        url: "ftp://example.com/x".into(),
        headers: vec![("bad header".into(), "v".into())],
        timeout: Duration::ZERO,
    };
    let err = Sink::spawn("hook", config, bad).unwrap_err();
    let SinkError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 6, "{err}");
    let text = err.to_string();
    for needle in [
        "\"ftp://example.com/x\"",
        "http:// or https://",
        "queue 0",
        "at least 1",
        "max_attempts 0",
        "1 to 100",
        "timeout 0ns",
        "at most 5 min",
        "\"bad header\"",
        "backoff_initial 20s is above backoff_max 10s",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    for (url, needle) in [
        ("http://", "http://"),
        ("127.0.0.1:9093", "127.0.0.1:9093"),
        ("not a url", "not a URL"),
    ] {
        let config = SinkConfig::Alertmanager {
            urls: vec![url.into()],
            timeout: Duration::from_secs(1),
            generator_url: None,
        };
        let err = Sink::spawn("am", config, SinkSettings::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(needle) && err.contains("http:// or https://"),
            "{err}"
        );
    }
    let config = SinkConfig::Alertmanager {
        urls: vec!["https://am.example.com".into()],
        timeout: Duration::from_secs(6 * 60),
        generator_url: None,
    };
    let err = Sink::spawn("am", config, SinkSettings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("timeout 360s"), "{err}");
    assert_eq!(err.contains("needs TLS"), !TLS_ENABLED, "{err}");
    let err = Sink::spawn(" ", SinkConfig::Log, SinkSettings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("name is empty"), "{err}");
}

/// Ensures timestamps are RFC 3339 UTC with milliseconds, leap days included.
#[test]
fn rfc3339_formats_utc_milliseconds() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_714_564_800_000), "2024-05-01T12:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
    assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
}

/// Ensures the Alertmanager shape: labels (valid names, no shadowing), annotations, and
/// endsAt only on a resolution.
#[test]
fn alertmanager_payload_shape() {
    let firing = alert("high_cpu", AlertState::Firing);
    let json: serde_json::Value = serde_json::from_slice(
        &alertmanager_json(std::slice::from_ref(&firing), Some("http://pv/")).unwrap(),
    )
    .unwrap();
    let a = &json[0];
    assert_eq!(
        a["labels"],
        serde_json::json!({
            "alertname": "high_cpu", "severity": "warning", "daemon": "indexer-ws1",
            "project": "search", "metric": "process.cpu.usage_ratio",
            "source": "daemon:indexer-ws1", "core": "all", "disk_name": "sda"
        })
    );
    assert_eq!(a["annotations"]["summary"], "CPU at 93% for 1 min");
    assert_eq!(
        a["annotations"]["recommendations"],
        "Check the indexer's queue.\nThen add a worker."
    );
    assert_eq!(a["annotations"]["value"], "0.93");
    assert_eq!(a["annotations"]["auto_actionable"], "false");
    assert_eq!(a["startsAt"], rfc3339(firing.since_ms));
    assert_eq!(a["generatorURL"], "http://pv/");
    assert!(a.get("endsAt").is_none());
    let resolved = alert("high_cpu", AlertState::Resolved);
    let json: serde_json::Value =
        serde_json::from_slice(&alertmanager_json(std::slice::from_ref(&resolved), None).unwrap())
            .unwrap();
    assert_eq!(json[0]["endsAt"], rfc3339(resolved.at_ms));
    assert!(json[0].get("generatorURL").is_none());
    assert_eq!(label_name("9lives"), "l9lives");
}

/// Kills the child (by its pid) when dropped, panics included.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(url: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent.get(url).call().ok()?.body_mut().read_to_string().ok()
}

fn find_alert(alerts: &serde_json::Value, rule: &str) -> Option<serde_json::Value> {
    alerts
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == rule)
        .cloned()
}

/// Ensures a real Alertmanager takes a firing alert (labels, annotations, startsAt) and
/// then resolves it on perfvisor's resolution.
#[test]
fn alertmanager_receives_and_resolves_alerts() {
    let binary = Path::new("/usr/bin/prometheus-alertmanager");
    if !binary.exists() {
        assert!(
            std::env::var("PERFVISOR_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "{} is missing and PERFVISOR_REQUIRE_EXTERNAL=1: \
             apt-get install prometheus-alertmanager",
            binary.display()
        );
        eprintln!(
            "SKIPPED: {} is missing (apt-get install prometheus-alertmanager)",
            binary.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _alertmanager = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let ready = wait_until(Duration::from_secs(10), || {
        http_get(&format!("{base}/-/ready")).is_some()
    });
    let am_log =
        || std::fs::read_to_string(dir.path().join("alertmanager.log")).unwrap_or_default();
    assert!(ready, "Alertmanager not ready: {}", am_log());

    let config = SinkConfig::Alertmanager {
        urls: vec![format!("{base}/")],
        timeout: Duration::from_secs(2),
        generator_url: Some("http://perfvisor.test/".into()),
    };
    let sink = Sink::spawn("am", config, fast()).unwrap();
    let rule = "perfvisor_sink_test";
    let firing = alert(rule, AlertState::Firing);
    assert!(sink.send(Arc::from(vec![firing.clone()])));
    assert!(
        wait_until(Duration::from_secs(5), || sink.status().delivered == 1),
        "{:?}",
        sink.status()
    );

    let alerts: serde_json::Value =
        serde_json::from_str(&http_get(&format!("{base}/api/v2/alerts")).unwrap()).unwrap();
    let got = find_alert(&alerts, rule).unwrap_or_else(|| panic!("not listed: {alerts}"));
    let labels = &got["labels"];
    assert_eq!(labels["severity"], "warning");
    assert_eq!(labels["daemon"], "indexer-ws1");
    assert_eq!(labels["project"], "search");
    assert_eq!(labels["metric"], "process.cpu.usage_ratio");
    assert_eq!(labels["source"], "daemon:indexer-ws1");
    assert_eq!(labels["core"], "all");
    let annotations = &got["annotations"];
    assert_eq!(annotations["summary"], firing.message.as_str());
    assert_eq!(
        annotations["recommendations"],
        firing.recommendations.join("\n").as_str()
    );
    assert_eq!(annotations["value"], "0.93");
    assert_eq!(annotations["threshold"], "0.8");
    assert_eq!(got["startsAt"], rfc3339(firing.since_ms));
    assert_eq!(got["generatorURL"], "http://perfvisor.test/");
    let state = got["status"]["state"].as_str().unwrap_or("");
    assert!(state == "active" || state == "unprocessed", "{got}");

    let mut resolved = firing.clone();
    resolved.state = AlertState::Resolved;
    resolved.at_ms = now_ms();
    assert!(sink.send(Arc::from(vec![resolved])));
    assert!(
        wait_until(Duration::from_secs(5), || sink.status().delivered == 2),
        "{:?}",
        sink.status()
    );
    let gone = wait_until(Duration::from_secs(3), || {
        http_get(&format!("{base}/api/v2/alerts?active=true"))
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
            .is_some_and(|alerts| find_alert(&alerts, rule).is_none())
    });
    assert!(gone, "still active after the resolution");
    assert_eq!(sink.status().failed_attempts, 0);
}
