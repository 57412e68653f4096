//! Unit tests of the supervisor: the restart policy and the watcher diff (pure), and the
//! panic test over every message type every supervised actor handles.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::types::{DaemonId, DaemonSpec};

fn policy() -> RestartPolicy {
    RestartPolicy {
        kind: RestartKind::Permanent,
        max_restarts: 3,
        period: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(100),
        backoff_factor: 2.0,
        backoff_max: Duration::from_secs(1),
        jitter: 0.0,
        stable_after: Duration::from_secs(30),
    }
}

fn delay(d: RestartDecision) -> (Duration, bool) {
    match d {
        RestartDecision::Restart {
            delay,
            budget_exceeded,
        } => (delay, budget_exceeded),
        RestartDecision::Stop => panic!("expected a restart"),
    }
}

/// Backoff doubles per consecutive failure, on a manual clock, and is capped.
#[test]
fn backoff_grows_exponentially_and_caps() {
    let mut t = RestartTracker::new(RestartPolicy {
        max_restarts: 100,
        ..policy()
    });
    let got: Vec<u128> = (0..6)
        .map(|i| delay(t.on_failure(i * 1000, 0.5)).0.as_millis())
        .collect();
    assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
}

/// Jitter stays within ±jitter of the nominal delay and never exceeds the cap.
#[test]
fn jitter_is_bounded() {
    let t = RestartTracker::new(RestartPolicy {
        jitter: 0.2,
        ..policy()
    });
    assert_eq!(t.backoff(1, 0.0).as_millis(), 80);
    assert_eq!(t.backoff(1, 1.0).as_millis(), 120);
    assert_eq!(t.backoff(10, 1.0), Duration::from_secs(1));
}

/// The budget counts failures within the period only: the 4th failure within 10 s
/// exceeds 3 restarts, while failures spread over more than 10 s never do.
#[test]
fn restart_window_is_exact() {
    let mut t = RestartTracker::new(policy());
    for now in [0, 1000, 2000] {
        assert!(!delay(t.on_failure(now, 0.5)).1);
    }
    let (d, exceeded) = delay(t.on_failure(3000, 0.5));
    assert!(exceeded);
    assert_eq!(
        d,
        Duration::from_secs(1),
        "past the budget, restart at the cap"
    );

    let mut t = RestartTracker::new(policy());
    for i in 0..10 {
        // 5 000 ms apart: at most two failures are ever inside the 10 s window.
        assert!(!delay(t.on_failure(i * 5000, 0.5)).1, "failure {i}");
    }
    assert_eq!(t.recent_failures(), 2);
}

/// A stable period resets the backoff to its initial delay.
#[test]
fn stable_period_resets_backoff() {
    let mut t = RestartTracker::new(RestartPolicy {
        max_restarts: 100,
        ..policy()
    });
    delay(t.on_failure(0, 0.5));
    assert_eq!(delay(t.on_failure(100, 0.5)).0.as_millis(), 200);
    assert_eq!(delay(t.on_failure(30_100, 0.5)).0.as_millis(), 100);
}

/// Temporary children are never restarted.
#[test]
fn temporary_children_stop() {
    let mut t = RestartTracker::new(RestartPolicy::new(RestartKind::Temporary));
    assert_eq!(t.on_failure(0, 0.5), RestartDecision::Stop);
}

/// The watcher diff adds new daemons, replaces changed ones and removes the gone.
#[test]
fn watcher_diff() {
    let spec = |id: &str, pid| DaemonSpec::new(id, pid);
    let desired: BTreeMap<_, _> = [spec("a", 1), spec("b", 22), spec("c", 3)]
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let running: BTreeMap<_, _> = [spec("b", 2), spec("c", 3), spec("d", 4)]
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let d = diff_watchers(&desired, &running);
    assert_eq!(d.to_add, vec![spec("a", 1)]);
    assert_eq!(d.to_change, vec![spec("b", 22)]);
    assert_eq!(d.to_remove, vec![DaemonId::new("d")]);
    assert!(diff_watchers(&desired, &desired).is_empty());
}

// ---- every handler through the one wrapper ---------------------------------------------

mod every_handler {
    use std::future::Future;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use actix::prelude::*;

    use crate::alerts::{AlertDispatcher, AlertStream, Silence};
    use crate::analyzer::Analyzer;
    use crate::collector::Collector;
    use crate::messages::*;
    use crate::storage::StorageCommand;
    use crate::supervisor::{
        start_engine, ChildHandle, EngineConfig, EngineParts, FaultPlan, RestartKind,
        RestartPolicy, Supervisor,
    };
    use crate::telemetry::{ActorKind, EngineStats, Status, StorageStatus};
    use crate::types::*;
    use crate::watcher::{view::SharedView, Watcher, WatcherLinks};

    /// An alert subscriber that drops what it gets (a test double, not supervised).
    struct Subscriber;

    impl Actor for Subscriber {
        type Context = Context<Self>;
    }

    impl Handler<Alert> for Subscriber {
        type Result = ();
        fn handle(&mut self, _: Alert, _: &mut Self::Context) {}
    }

    /// A policy that restarts at once and never runs out of budget.
    fn quick(kind: RestartKind) -> RestartPolicy {
        RestartPolicy {
            max_restarts: 10_000,
            backoff_initial: Duration::from_millis(1),
            backoff_factor: 1.0,
            backoff_max: Duration::from_millis(1),
            jitter: 0.0,
            ..RestartPolicy::new(kind)
        }
    }

    fn config(database: std::path::PathBuf, faults: FaultPlan) -> EngineConfig {
        EngineConfig {
            database,
            probe_interval: Duration::from_millis(50),
            host_interval: Duration::from_millis(200),
            recorder_capacity: 1024,
            storage_queue: 1024,
            max_buffered_samples: 100_000,
            analysis_window: 100,
            histogram_interval: Duration::from_secs(1),
            judge_interval: Duration::from_millis(500),
            judge: crate::analyzer::JudgeConfig::default(),
            singleton_policy: quick(RestartKind::Permanent),
            watcher_policy: quick(RestartKind::Transient),
            rules: Vec::new(),
            config_rules: Vec::new(),
            clock: Arc::new(SystemClock),
            default_rules: true,
            sinks: Vec::new(),
            daemon_control: None,
            action_limits: crate::alerts::ActionLimits::default(),
            retention: crate::storage::Retention::default(),
            max_database_bytes: None,
            faults,
        }
    }

    /// Polls `cond` every 5 ms until it holds, for at most 10 s.
    async fn until<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn status(parts: &EngineParts) -> Status {
        loop {
            // A failing supervisor answers one request with a minimal status; ask again.
            if let Ok(s) = parts.supervisor.send(GetStatus).await {
                if !s.actors.is_empty() {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn restarts(parts: &EngineParts, actor: &str) -> u64 {
        status(parts).await.actor(actor).map_or(0, |a| a.restarts)
    }

    fn alert() -> Alert {
        crate::selfmon::storage_alert(1, 1, None, &StorageStatus::default())
    }

    fn event() -> LifecycleEvent {
        LifecycleEvent {
            daemon: DaemonId::new("nobody"),
            pid: 1,
            ts_ms: 1,
            kind: LifecycleKind::Started,
            detail: String::new(),
            intended: false,
        }
    }

    fn silence() -> Silence {
        Silence {
            id: "s".into(),
            matchers: Vec::new(),
            starts_ms: 0,
            ends_ms: i64::MAX / 2,
            created_by: "test".into(),
            comment: String::new(),
        }
    }

    fn batch() -> MetricBatch {
        MetricBatch {
            samples: Vec::new(),
        }
    }

    /// Sends `$msg` to `$addr` and waits for the answer (the fallback, when it panicked).
    macro_rules! ask {
        ($addr:expr, $msg:expr) => {{
            let _ = $addr.send($msg).await;
        }};
    }

    /// Sends one message of type `message` to the singleton `actor`; false when this test
    /// knows no such message (a handler added without a case here fails the test).
    async fn send(parts: &EngineParts, actor: &str, message: &str) -> bool {
        let (sup, dis, ana, col) = (
            &parts.supervisor,
            &parts.dispatcher,
            &parts.analyzer,
            &parts.collector,
        );
        let id = DaemonId::new("nobody");
        let spec = DaemonSpec::new("nobody", 1);
        let (reason, to, expected) = (String::new(), "/bin/true".into(), Duration::from_secs(1));
        let failed = ActorFailed {
            kind: ActorKind::Collector,
            name: "x".into(),
            reason: "x".into(),
            budget_exceeded: false,
        };
        let rule = crate::alerts::perfvisor_rules().remove(0);
        let callback: crate::alerts::AlertCallback = Arc::new(|_| {});
        let (sender, _stream) = AlertStream::channel(1);
        let (event, alert, batch) = (event(), alert(), Arc::new(batch()));
        let (intervals, samples) = (Vec::new(), Vec::new());
        match (actor, message) {
            ("supervisor", "DaemonStarted") => ask!(sup, DaemonStarted { spec }),
            ("supervisor", "DaemonRestarting") => ask!(sup, DaemonRestarting { id, expected }),
            ("supervisor", "DaemonStopped") => ask!(sup, DaemonStopped { id }),
            ("supervisor", "WatcherRetired") => ask!(sup, WatcherRetired { id, pid: 1, reason }),
            ("supervisor", "DaemonExeced") => {
                ask!(
                    sup,
                    DaemonExeced {
                        id,
                        pid: 1,
                        from: None,
                        to
                    }
                )
            }
            ("supervisor", "GetTopChildren") => ask!(sup, GetTopChildren { daemon: id }),
            ("supervisor", "ActorFailed") => ask!(sup, failed),
            ("supervisor", "GetStatus") => ask!(sup, GetStatus),
            ("supervisor", "ReplaceAlerting") => ask!(
                sup,
                ReplaceAlerting {
                    rules: Vec::new(),
                    sinks: None,
                    silences: None
                }
            ),
            ("supervisor", "InjectPanic") => sup.do_send(InjectPanic),
            ("supervisor", "InjectPanicInto") => {
                ask!(
                    sup,
                    InjectPanicInto {
                        target: PanicTarget::Watcher(id)
                    }
                )
            }
            ("supervisor", "Shutdown") => ask!(sup, Shutdown),
            ("alert_dispatcher", "EvaluateRules") => ask!(dis, EvaluateRules { now_ms: 1, batch }),
            ("alert_dispatcher", "RaiseAlert") => ask!(dis, RaiseAlert { alert }),
            ("alert_dispatcher", "DaemonLifecycle") => ask!(dis, DaemonLifecycle { event }),
            ("alert_dispatcher", "AddRule") => ask!(dis, AddRule { rule }),
            ("alert_dispatcher", "ReplaceRules") => ask!(
                dis,
                ReplaceRules {
                    rules: Vec::new(),
                    sinks: None,
                    silences: None
                }
            ),
            ("alert_dispatcher", "GetRules") => ask!(dis, GetRules),
            ("alert_dispatcher", "GetAnomalyRates") => ask!(dis, GetAnomalyRates),
            ("alert_dispatcher", "AddSilence") => {
                let answer = dis.send(AddSilence { silence: silence() }).await;
                // The panicking handler answers with its fallback, naming the silence.
                assert!(
                    matches!(answer, Ok(Err(crate::alerts::SilenceError::Unavailable { ref id })) if id == "s"),
                    "{answer:?}"
                );
            }
            ("alert_dispatcher", "RemoveSilence") => ask!(dis, RemoveSilence { id: "s".into() }),
            ("alert_dispatcher", "GetSilences") => ask!(dis, GetSilences),
            ("alert_dispatcher", "SubscribeAlerts") => {
                ask!(
                    dis,
                    SubscribeAlerts {
                        recipient: Subscriber.start().recipient()
                    }
                )
            }
            ("alert_dispatcher", "SubscribeStream") => ask!(dis, SubscribeStream { sender }),
            ("alert_dispatcher", "SubscribeCallback") => ask!(dis, SubscribeCallback { callback }),
            ("alert_dispatcher", "GetFiring") => ask!(dis, GetFiring),
            ("alert_dispatcher", "Flush") => ask!(dis, Flush),
            ("alert_dispatcher", "InjectPanic") => dis.do_send(InjectPanic),
            ("analyzer", "AnalyzeBatch") => ask!(ana, AnalyzeBatch { batch }),
            ("analyzer", "AnalyzeHistograms") => {
                ask!(ana, AnalyzeHistograms { intervals })
            }
            ("analyzer", "DaemonLifecycle") => ask!(ana, DaemonLifecycle { event }),
            ("analyzer", "GetReport") => ask!(ana, GetReport { daemon: id }),
            ("analyzer", "GetHostReport") => ask!(ana, GetHostReport),
            ("analyzer", "GetLatest") => ask!(ana, GetLatest),
            ("analyzer", "Flush") => ask!(ana, Flush),
            ("analyzer", "InjectPanic") => ana.do_send(InjectPanic),
            ("collector", "SamplesCollected") => {
                ask!(
                    col,
                    SamplesCollected {
                        batch: self::batch()
                    }
                )
            }
            ("collector", "AppSamplesReceived") => {
                ask!(col, AppSamplesReceived { samples })
            }
            ("collector", "RegisterDaemon") => ask!(col, RegisterDaemon { spec }),
            ("collector", "DrainRecorder") => ask!(col, DrainRecorder),
            ("collector", "InjectPanic") => col.do_send(InjectPanic),
            _ => return false,
        }
        true
    }

    /// A normal request to `actor`, answered once it serves again after its restart.
    async fn serves(parts: &EngineParts, actor: &str) {
        let answered = match actor {
            "supervisor" => parts.supervisor.send(GetStatus).await.is_ok(),
            "alert_dispatcher" => parts
                .dispatcher
                .send(GetRules)
                .await
                .is_ok_and(|rules| !rules.is_empty()),
            "analyzer" => parts.analyzer.send(GetLatest).await.is_ok(),
            "collector" => parts.collector.send(DrainRecorder).await.is_ok(),
            "storage_writer" => {
                let storage = parts.storage.clone();
                tokio::task::spawn_blocking(move || storage.flush(Duration::from_secs(10)))
                    .await
                    .is_ok_and(|flushed| flushed.is_ok())
            }
            other => panic!("no request for {other}"),
        };
        assert!(answered, "{actor} does not serve after its restart");
    }

    /// A storage command named `name`, for the writer's panic test.
    fn command(name: &str) -> Option<StorageCommand> {
        let (ack, _) = crossbeam_channel::bounded(1);
        Some(match name {
            "Store" => StorageCommand::Store(Arc::new(batch())),
            "Event" => StorageCommand::Event(Box::new(event())),
            "Alert" => StorageCommand::Alert(Box::new(alert())),
            "AlertState" => {
                StorageCommand::AlertState(Box::new(crate::storage::AlertStateChange {
                    key: "k".into(),
                    json: None,
                    ts_ms: 1,
                }))
            }
            "Action" => StorageCommand::Action(Box::new(ActionRecord {
                ts_ms: 1,
                daemon: None,
                rule: "r".into(),
                action: "a".into(),
                outcome: "o".into(),
                detail: String::new(),
            })),
            "Flush" => StorageCommand::Flush(ack),
            "Compact" => StorageCommand::Compact(ack),
            "Fault" => StorageCommand::Fault(crate::storage::StorageFault::Clear),
            "InjectPanic" => StorageCommand::InjectPanic,
            _ => return None,
        })
    }

    /// Watchers' batches that reach the collector together go on as one batch: 200 batches
    /// sent at once, each counted in as watchers count theirs, make at most a few analyzer
    /// messages (not 200), and every sample arrives; a lone batch goes on without a flush.
    #[test]
    fn a_burst_of_batches_goes_on_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("pv.db");
        actix::System::new().block_on(async move {
            let mut config = config(database, FaultPlan::default());
            // No host samples meanwhile: only perfvisor's own metrics add messages.
            config.host_interval = Duration::from_secs(3600);
            let parts = start_engine(config).unwrap();
            let series = |i: usize| {
                SeriesKey::new(
                    Source::Daemon(DaemonId::new("burst")),
                    "burst.value",
                    Labels::from_pairs([("i", i.to_string())]),
                )
            };
            let sample = |i: usize| Sample {
                series: series(i),
                kind: MetricKind::Gauge,
                ts_ms: SystemClock.now_ms(),
                value: i as f64,
            };
            let handled = |s: &Status| s.actor("analyzer").map_or(0, |a| a.handled);
            let before = handled(&status(&parts).await);
            // No await in between: the collector runs only once all 200 are queued.
            for i in 0..200 {
                parts.collector_stats.enqueued();
                parts.collector.do_send(SamplesCollected {
                    batch: MetricBatch {
                        samples: vec![sample(i)],
                    },
                });
            }
            let seen = |latest: &[Sample], i: usize| latest.iter().any(|s| s.series == series(i));
            until("all 200 burst samples at the analyzer", || async {
                parts
                    .analyzer
                    .send(GetLatest)
                    .await
                    .is_ok_and(|latest| (0..200).all(|i| seen(&latest, i)))
            })
            .await;
            let messages = handled(&status(&parts).await) - before;
            assert!(
                messages < 10,
                "the burst of 200 batches took {messages} analyzer messages"
            );

            parts.collector_stats.enqueued();
            parts.collector.do_send(SamplesCollected {
                batch: MetricBatch {
                    samples: vec![sample(200)],
                },
            });
            until("a lone batch at the analyzer", || async {
                parts
                    .analyzer
                    .send(GetLatest)
                    .await
                    .is_ok_and(|latest| seen(&latest, 200))
            })
            .await;
            let _ = parts.supervisor.send(Shutdown).await;
        });
    }

    /// Every message type every supervised actor handles, taken from the list its handlers
    /// are declared in (`HANDLED`), made to panic once through the test fault hook: each
    /// panic restarts the actor (its restart count in `status()` grows by one) and the
    /// actor answers a normal request afterwards. The storage writer's commands go through
    /// the same guard and report. A handler that skipped the wrapper would not panic (the
    /// hook is in the wrapper) and would not restart, and this test would time out.
    #[test]
    fn every_handled_message_type_survives_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("pv.db");
        actix::System::new().block_on(async move {
            let faults = FaultPlan::default();
            let parts = start_engine(config(database, faults.clone())).unwrap();
            let singletons: [(&str, &[&str]); 4] = [
                ("supervisor", Supervisor::HANDLED),
                ("alert_dispatcher", AlertDispatcher::HANDLED),
                ("analyzer", Analyzer::HANDLED),
                ("collector", Collector::HANDLED),
            ];
            let (mut handlers, mut types) = (0, std::collections::BTreeSet::new());
            for (actor, handled) in singletons {
                for &message in handled {
                    let before = restarts(&parts, actor).await;
                    faults.arm(actor, message);
                    assert!(
                        send(&parts, actor, message).await,
                        "no test message for {actor}'s {message}: add one"
                    );
                    until(&format!("{actor} restarted after {message}"), || async {
                        restarts(&parts, actor).await == before + 1
                    })
                    .await;
                    serves(&parts, actor).await;
                    handlers += 1;
                    types.insert(message);
                }
            }

            for &name in StorageCommand::HANDLED {
                let before = restarts(&parts, "storage_writer").await;
                faults.arm("storage_writer", name);
                let cmd = command(name).unwrap_or_else(|| panic!("no test command {name}"));
                assert_eq!(cmd.name(), name);
                assert!(parts.storage.send_command(cmd));
                until(
                    &format!("storage writer restarted after {name}"),
                    || async { restarts(&parts, "storage_writer").await == before + 1 },
                )
                .await;
                serves(&parts, "storage_writer").await;
            }

            // perfvisor's own restart count (a self metric, summed without building a
            // status) reaches what the status says after all those restarts.
            let total = status(&parts).await.total_restarts();
            assert!(total >= 40, "only {total} restarts in the status");
            until(
                "perfvisor.actor.restarts to reach the status total",
                || async {
                    parts.analyzer.send(GetLatest).await.is_ok_and(|latest| {
                        latest.iter().any(|s| {
                            s.series.source == Source::Perfvisor
                                && s.series.metric.as_str()
                                    == crate::metric_names::PERFVISOR_ACTOR_RESTARTS
                                && s.value == total as f64
                        })
                    })
                },
            )
            .await;

            // A watcher, built as the supervisor builds one but with its handle here.
            let child = ChildHandle::new(
                "watcher:self",
                ActorKind::Watcher,
                quick(RestartKind::Transient),
                Arc::new(SystemClock),
            );
            child.arm_from(&faults);
            let probes = Arc::new(AtomicU64::new(0));
            let links = WatcherLinks {
                samples: parts.collector.clone().recipient(),
                samples_stats: Arc::new(Default::default()),
                retired: parts.supervisor.clone().recipient(),
                execed: parts.supervisor.clone().recipient(),
                clock: Arc::new(SystemClock),
                interval: Duration::from_millis(20),
                probes: probes.clone(),
                engine: Arc::new(EngineStats::default()),
                view: SharedView::default(),
            };
            let spec = DaemonSpec::new("self", std::process::id());
            let (c, s) = (child.clone(), spec.clone());
            let watcher = actix::Supervisor::start(move |_| Watcher::new(s, c, links));
            for &message in Watcher::HANDLED {
                let before = child.stats.restarts.load(Ordering::Relaxed);
                faults.arm("watcher:self", message);
                match message {
                    "Retire" => watcher.do_send(Retire),
                    "InjectPanic" => watcher.do_send(InjectPanic),
                    other => panic!("no test message for the watcher's {other}: add one"),
                }
                until(&format!("watcher restarted after {message}"), || async {
                    child.stats.restarts.load(Ordering::Relaxed) == before + 1
                })
                .await;
                let seen = probes.load(Ordering::Relaxed);
                until("the watcher probing again", || async {
                    probes.load(Ordering::Relaxed) > seen
                })
                .await;
                handlers += 1;
                types.insert(message);
            }

            let commands = StorageCommand::HANDLED.len();
            eprintln!(
                "panic test: {handlers} actor handlers over {} message types, and {commands} \
                 storage commands",
                types.len()
            );
            assert!(handlers >= 40, "only {handlers} handlers were declared");
            let _ = parts.supervisor.send(Shutdown).await;
        });
    }
}

/// No `impl Handler` is written by hand anywhere in the engine: every one comes from
/// `supervised_handlers!`, so every handler runs through the guard.
#[test]
fn no_handler_bypasses_the_wrapper() {
    fn visit(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("supervisor/handlers.rs")
                // The panic test's alert subscriber is a test double, not a supervised actor.
                && !path.ends_with("supervisor/tests.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    if code.contains("impl") && code.contains("Handler<") {
                        found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    visit(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(
        found.is_empty(),
        "handlers written outside supervised_handlers!:\n{}",
        found.join("\n")
    );
}
