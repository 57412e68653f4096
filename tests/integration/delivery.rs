//! Alert delivery that operators can trust: state survives a restart without duplicates, a
//! real Alertmanager receives alerts and their resolution, a hanging webhook does not slow
//! host actors, and a confirmed leak restarts its daemon once through the host's control.

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use perfvisor::{
    AlertState, DaemonControl, DaemonId, DaemonSpec, Perfvisor, RuleAction, SinkConfig,
    ThresholdRule,
};

use crate::support::{self, loadgen, wait_for, Alertmanager};

const WAIT: Duration = Duration::from_secs(30);

fn builder(db: &std::path::Path) -> perfvisor::PerfvisorBuilder {
    Perfvisor::builder()
        .database(db)
        .probe_interval(Duration::from_millis(100))
        .host_interval(Duration::from_millis(500))
        .default_rules(false)
}

fn slow_rule() -> ThresholdRule {
    ThresholdRule::above("slow_search", "search.latency_seconds", 0.5).clear_at(0.3)
}

/// Acceptance 2: restart perfvisor while an alert fires; it is still firing afterwards with
/// its original start time, a still-breached value sends nothing new, and it resolves once.
#[tokio::test]
async fn firing_alert_survives_a_restart_without_duplicates() {
    support::quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perfvisor.db");

    let pv = builder(&db).rule(slow_rule()).start().unwrap();
    let (tx, rx) = mpsc::channel();
    pv.on_alert(move |a| {
        let _ = tx.send(a.clone());
    })
    .await
    .unwrap();
    pv.recorder()
        .for_daemon("searcher")
        .record("search.latency_seconds", 0.9);
    let fired = rx.recv_timeout(WAIT).expect("fires");
    assert_eq!(fired.state, AlertState::Firing);
    pv.shutdown().await.unwrap();

    let pv = builder(&db).rule(slow_rule()).start().unwrap();
    let (tx, rx) = mpsc::channel();
    pv.on_alert(move |a| {
        let _ = tx.send(a.clone());
    })
    .await
    .unwrap();
    let firing = pv.firing_alerts().await.unwrap();
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0].rule, "slow_search");
    assert_eq!(
        firing[0].since_ms, fired.since_ms,
        "original start time kept"
    );
    let rec = pv.recorder().for_daemon("searcher");
    rec.record("search.latency_seconds", 0.8);
    pv.flush().await.unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "no duplicate firing notice after the restart"
    );
    rec.record("search.latency_seconds", 0.1);
    let resolved = rx.recv_timeout(WAIT).expect("resolves");
    assert_eq!(resolved.state, AlertState::Resolved);
    assert_eq!(resolved.since_ms, fired.since_ms);
    pv.shutdown().await.unwrap();
    let history = perfvisor::StorageReader::open(&db)
        .unwrap()
        .alerts(i64::MIN, i64::MAX)
        .unwrap();
    let states: Vec<AlertState> = history.iter().map(|a| a.state).collect();
    assert_eq!(states, vec![AlertState::Firing, AlertState::Resolved]);
}

/// Acceptance 3: a real Alertmanager receives the alert and later its resolution; both are
/// read back through its API.
#[tokio::test]
async fn alertmanager_receives_the_alert_and_its_resolution() {
    support::quiet_panics();
    let Some(am) = Alertmanager::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perfvisor.db");
    let pv = builder(&db)
        .rule(slow_rule())
        .sink(
            "alertmanager",
            SinkConfig::Alertmanager {
                urls: vec![format!("http://127.0.0.1:{}", am.port)],
                timeout: Duration::from_secs(5),
                generator_url: None,
            },
        )
        .start()
        .unwrap();
    let rec = pv.recorder().for_daemon("searcher");
    rec.record("search.latency_seconds", 0.9);
    let listed = |active: bool| {
        am.alerts(active)
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "slow_search")
            .collect::<Vec<_>>()
    };
    wait_for(WAIT, "alertmanager lists the alert", || async {
        !listed(true).is_empty()
    })
    .await;
    let alert = &listed(true)[0];
    assert_eq!(alert["labels"]["daemon"], "searcher", "{alert}");
    assert!(alert["annotations"]["summary"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    rec.record("search.latency_seconds", 0.1);
    wait_for(WAIT, "alertmanager resolves the alert", || async {
        listed(true).is_empty()
    })
    .await;
    let status = pv.status().await.unwrap();
    let sink = status
        .alert_sinks
        .iter()
        .find(|s| s.name == "alertmanager")
        .expect("sink status");
    assert!(sink.delivered >= 2, "{sink:?}");
    pv.shutdown().await.unwrap();
    drop(am);
}

/// A webhook receiver on 127.0.0.1 that records the JSON body of every POST and answers 200;
/// it stops when dropped.
struct Receiver {
    port: u16,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, st) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        b.lock().unwrap().push(v);
                    }
                }
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver {
            port,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    /// How many notifications said `status` ("firing" or "resolved") for the alert of
    /// `alertname` on `daemon`.
    fn count(&self, alertname: &str, daemon: &str, status: &str) -> usize {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| {
                a["labels"]["alertname"] == alertname
                    && a["labels"]["daemon"] == daemon
                    && a["status"] == status
            })
            .count()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Alertmanager HA: one sink lists both members of a real two-node Alertmanager cluster.
/// With both up, an alert reaches the receiver once (the cluster deduplicates what both
/// got); with one stopped, a firing and its resolution still arrive, once each, through the
/// other, and perfvisor counts the failures against the stopped one only.
#[tokio::test]
async fn alertmanager_cluster_member_down_loses_nothing() {
    support::quiet_panics();
    let receiver = Receiver::start();
    let Some(mut cluster) =
        Alertmanager::cluster(2, &format!("http://127.0.0.1:{}/", receiver.port))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perfvisor.db");
    let urls: Vec<String> = cluster
        .iter()
        .map(|am| format!("http://127.0.0.1:{}", am.port))
        .collect();
    let pv = builder(&db)
        .rule(slow_rule())
        .sink(
            "am",
            SinkConfig::Alertmanager {
                urls: urls.clone(),
                timeout: Duration::from_secs(2),
                generator_url: None,
            },
        )
        .start()
        .unwrap();
    // That a duplicate does NOT arrive can only be watched for: the cluster's gossip and
    // peer timeout (1 s each member) plus group_interval (1 s), with margin for a loaded
    // machine. Real Alertmanagers run on wall-clock time; no manual clock reaches them.
    let settle = || std::thread::sleep(Duration::from_secs(4));

    // Both members up: each receives the alert; the receiver hears of it once.
    let first = pv.recorder().for_daemon("first");
    first.record("search.latency_seconds", 0.9);
    wait_for(WAIT, "the firing reaches the receiver", || async {
        receiver.count("slow_search", "first", "firing") >= 1
    })
    .await;
    for am in &cluster {
        let listed = am.alerts(true);
        assert!(
            listed
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["labels"]["daemon"] == "first")),
            "every member holds the alert: {listed}"
        );
    }
    settle();
    assert_eq!(
        receiver.count("slow_search", "first", "firing"),
        1,
        "{:?}",
        receiver.bodies.lock().unwrap()
    );

    // One member stops: the resolution and a new firing and its resolution arrive once.
    cluster[0].kill();
    first.record("search.latency_seconds", 0.1);
    let second = pv.recorder().for_daemon("second");
    second.record("search.latency_seconds", 0.9);
    wait_for(
        WAIT,
        "both reach the receiver through the member left",
        || async {
            receiver.count("slow_search", "first", "resolved") >= 1
                && receiver.count("slow_search", "second", "firing") >= 1
        },
    )
    .await;
    second.record("search.latency_seconds", 0.1);
    wait_for(
        WAIT,
        "the second resolution reaches the receiver",
        || async { receiver.count("slow_search", "second", "resolved") >= 1 },
    )
    .await;
    settle();
    let counts = [
        receiver.count("slow_search", "first", "resolved"),
        receiver.count("slow_search", "second", "firing"),
        receiver.count("slow_search", "second", "resolved"),
    ];
    assert_eq!(counts, [1, 1, 1], "{:?}", receiver.bodies.lock().unwrap());

    let status = pv.status().await.unwrap();
    let member = |i: usize| {
        let name = format!("am@{}", urls[i].trim_start_matches("http://"));
        status
            .alert_sinks
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no sink {name}: {:?}", status.alert_sinks))
    };
    let (down, up) = (member(0), member(1));
    assert!(up.delivered >= 4 && up.failed_attempts == 0, "{up:?}");
    assert!(down.failed_attempts >= 1 && down.delivered >= 1, "{down:?}");
    pv.shutdown().await.unwrap();
    drop(cluster);
}

/// Acceptance 4: a webhook that accepts connections and never answers, and one whose port
/// refuses them, do not slow delivery to a host actor.
#[tokio::test]
async fn hanging_webhooks_do_not_delay_host_actors() {
    support::quiet_panics();
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in hang.incoming().take(64) {
            match stream {
                Ok(s) => open.push(s),
                Err(_) => break,
            }
        }
    });
    let refused_port = support::refused_port();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perfvisor.db");
    let webhook = |port: u16| SinkConfig::Webhook {
        url: format!("http://127.0.0.1:{port}/hook"),
        headers: Vec::new(),
        timeout: Duration::from_secs(5),
    };
    let pv = builder(&db)
        .rule(slow_rule())
        .sink("hanging", webhook(hang_port))
        .sink("refused", webhook(refused_port))
        .start()
        .unwrap();
    let (recipient, log) = support::recording_sink();
    pv.subscribe_alerts(recipient).await.unwrap();
    let rec = pv.recorder().for_daemon("searcher");
    let mut latencies = Vec::new();
    for i in 0..20 {
        let value = if i % 2 == 0 { 0.9 } else { 0.1 };
        let before = log.lock().unwrap().len();
        let sent = Instant::now();
        rec.record("search.latency_seconds", value);
        let arrived = loop {
            if let Some((at, _)) = log.lock().unwrap().get(before) {
                break *at;
            }
            assert!(sent.elapsed() < WAIT, "alert {i} never reached the actor");
            std::thread::sleep(Duration::from_micros(200));
        };
        latencies.push(arrived.duration_since(sent));
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let worst = latencies[latencies.len() - 1];
    println!("host actor latency with two dead webhooks: median {median:?}, worst {worst:?}");
    assert!(median <= Duration::from_millis(10), "median {median:?}");
    assert!(
        worst < Duration::from_secs(1),
        "worst {worst:?}: blocked behind a sink"
    );
    let status = pv.status().await.unwrap();
    let refused = status
        .alert_sinks
        .iter()
        .find(|s| s.name == "refused")
        .unwrap();
    wait_for(
        WAIT,
        "the refused webhook's failures are counted",
        || async {
            let status = pv.status().await.unwrap();
            status
                .alert_sinks
                .iter()
                .find(|s| s.name == "refused")
                .is_some_and(|s| s.failed_attempts > 0)
        },
    )
    .await;
    assert_eq!(refused.delivered, 0);
    pv.shutdown().await.unwrap();
    drop(held);
}

/// Restarts a daemon by telling the test, which plays the host's daemon manager.
struct TestControl(mpsc::Sender<DaemonId>);

impl DaemonControl for TestControl {
    fn restart(&self, daemon: &DaemonId) -> Result<(), String> {
        self.0
            .send(daemon.clone())
            .map_err(|_| "the test host is gone".to_string())
    }
}

/// Acceptance 5: a confirmed leak restarts the daemon once through the host's control; the
/// history shows the alert, the action and the recovery.
#[tokio::test]
async fn confirmed_leak_restarts_the_daemon_once() {
    support::quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perfvisor.db");
    let (tx, restarts) = mpsc::channel();
    let rule = ThresholdRule::signal("restart_on_leak", "bottleneck.memory_leak")
        .action(RuleAction::RestartDaemon);
    let pv = builder(&db)
        .judge_interval(Duration::from_millis(300))
        .judge_config(crate::support::fast_judgement())
        .analysis_window(100)
        .rule(rule)
        .daemon_control(TestControl(tx))
        .start()
        .unwrap();
    let (alerts_tx, alerts) = mpsc::channel();
    pv.on_alert(move |a| {
        if a.rule == "restart_on_leak" {
            let _ = alerts_tx.send(a.clone());
        }
    })
    .await
    .unwrap();
    let mut child = loadgen(&["--leak-mib-per-sec", "20"]);
    pv.daemon_started(DaemonSpec::new("leaky", child.pid()))
        .await
        .unwrap();
    let fired = alerts.recv_timeout(WAIT).expect("the leak alert fires");
    assert_eq!(fired.state, AlertState::Firing);
    assert!(fired.auto_actionable);
    let asked = restarts.recv_timeout(WAIT).expect("a restart is asked for");
    assert_eq!(asked.as_str(), "leaky");
    // The host restarts it: a fixed build that does not leak.
    child.kill();
    let fresh = loadgen(&["--cpu", "0"]);
    pv.daemon_started(DaemonSpec::new("leaky", fresh.pid()))
        .await
        .unwrap();
    let resolved = alerts.recv_timeout(WAIT).expect("the leak alert resolves");
    assert_eq!(resolved.state, AlertState::Resolved);
    assert!(
        restarts.recv_timeout(Duration::from_secs(2)).is_err(),
        "restarted once per confirmed leak"
    );
    pv.shutdown().await.unwrap();
    let reader = perfvisor::StorageReader::open(&db).unwrap();
    let leaky = DaemonId::new("leaky");
    let history: Vec<(i64, String)> = reader
        .alerts_of(Some(&leaky), i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .filter(|a| a.rule == "restart_on_leak")
        .map(|a| (a.at_ms, format!("{:?}", a.state)))
        .collect();
    let actions = reader.actions(Some(&leaky), i64::MIN, i64::MAX).unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(
        (actions[0].action.as_str(), actions[0].outcome.as_str()),
        ("restart", "done")
    );
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(
        history[0].0 <= actions[0].ts_ms && actions[0].ts_ms <= history[1].0,
        "{history:?} {actions:?}"
    );
    drop(fresh);
}
