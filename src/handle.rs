//! The handle a host keeps: typed async methods over the engine's addresses.
//!
//! perfvisor runs its actix `System` on a thread it owns, so the handle's methods work from
//! any executor (tokio, async-std, a plain `block_on`): they only await replies on channels.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix::Recipient;
use perfvisor_actors::alerts::{
    AlertCallback, AlertStream, AlertingChange, AsyncDaemonControl, DaemonControl, RuleInfo,
    Silence, SinkConfig, ThresholdRule,
};
use perfvisor_actors::analyzer::{DaemonReport, HostReport};
use perfvisor_actors::messages::*;
use perfvisor_actors::recorder::Recorder;
use perfvisor_actors::storage::{StorageFault, StorageReader};
use perfvisor_actors::supervisor::{start_engine, EngineConfig, EngineParts};
use perfvisor_actors::telemetry::Status;
use perfvisor_actors::types::{Alert, DaemonId, DaemonSpec, Sample, Source};

use crate::{Error, PerfvisorBuilder};

/// How long `flush()` waits for the storage writer.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long `compact_now` waits for the writer (compaction of a large backlog takes time).
const COMPACT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A running perfvisor. Cheap to clone, `Send + Sync`; every clone talks to the same engine.
#[derive(Clone, Debug)]
pub struct Perfvisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    parts: EngineParts,
    system: actix::System,
    database: PathBuf,
    /// One perfvisor per database: held until `shutdown()` has stored everything (or the
    /// last handle is dropped).
    lock: Mutex<Option<Arc<crate::DatabaseLock>>>,
    stopped: AtomicBool,
    done: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    /// The remote-write shippers, once started ([`Perfvisor::start_remote_write`]).
    #[cfg(feature = "remote-write")]
    remote: Mutex<Option<crate::remote_write::RemoteWriters>>,
}

/// Why [`Perfvisor::daemon_started`] refuses a spec (also run on API bodies by
/// [`crate::http::check_body`]).
pub(crate) fn check_spec(spec: &DaemonSpec) -> Result<(), Error> {
    if spec.id.as_str().trim().is_empty() {
        return Err(Error::InvalidDaemon {
            id: spec.id.to_string(),
            problem: "the id is empty; give a non-empty name such as \"indexer-1\"".into(),
        });
    }
    if spec.pid == 0 {
        return Err(Error::InvalidDaemon {
            id: spec.id.to_string(),
            problem: "pid 0 is not a process; give the daemon's pid (1 or more)".into(),
        });
    }
    Ok(())
}

/// Why [`Perfvisor::daemon_started`] refuses a pid: no such process runs now (a watcher
/// of it would only report it gone, and a report of it would score what is not there).
fn check_pid_runs(spec: &DaemonSpec) -> Result<(), Error> {
    let proc_dir = Path::new("/proc").join(spec.pid.to_string());
    if Path::new("/proc/self").exists() && !proc_dir.exists() {
        return Err(Error::InvalidDaemon {
            id: spec.id.to_string(),
            problem: format!(
                "no process with pid {} is running; give the pid of the daemon's running \
                 process (announce it after the spawn, and daemon_stopped when it ends)",
                spec.pid
            ),
        });
    }
    Ok(())
}

/// Runs a blocking call where it blocks no executor: on the tokio runtime's blocking pool
/// when one is current (threads reused), else on a thread of its own.
async fn off_executor<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        return runtime
            .spawn_blocking(f)
            .await
            .map_err(|_| Error::NotRunning);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(Error::Thread)?;
    rx.await.map_err(|_| Error::NotRunning)
}

impl Perfvisor {
    /// A builder with every setting at its default.
    pub fn builder() -> PerfvisorBuilder {
        PerfvisorBuilder::default()
    }

    pub(crate) fn start(
        config: EngineConfig,
        lock: Arc<crate::DatabaseLock>,
    ) -> Result<Perfvisor, Error> {
        let database = config.database.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("perfvisor-system".into())
            .spawn(move || {
                let sys = actix::System::new();
                let started = sys.block_on(async move {
                    start_engine(config).map(|parts| (parts, actix::System::current()))
                });
                let ok = started.is_ok();
                let _ = ready_tx.send(started);
                if ok {
                    if let Err(e) = sys.run() {
                        tracing::error!(error = %e, "perfvisor's system ended with an error.");
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(Error::Thread)?;
        let (parts, system) = ready_rx.recv().map_err(|_| Error::NotRunning)??;
        Ok(Perfvisor {
            inner: Arc::new(Inner {
                parts,
                system,
                database,
                lock: Mutex::new(Some(lock)),
                stopped: AtomicBool::new(false),
                done: Mutex::new(Some(done_rx)),
                #[cfg(feature = "remote-write")]
                remote: Mutex::new(None),
            }),
        })
    }

    fn check_running(&self) -> Result<(), Error> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            Err(Error::NotRunning)
        } else {
            Ok(())
        }
    }

    /// Tells perfvisor a daemon started (or restarted under a new pid): a watcher is spawned
    /// for it. Announcing the same id with a new pid replaces its watcher.
    pub async fn daemon_started(&self, spec: DaemonSpec) -> Result<(), Error> {
        self.check_running()?;
        check_spec(&spec)?;
        check_pid_runs(&spec)?;
        self.inner
            .parts
            .supervisor
            .send(DaemonStarted { spec })
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// Tells perfvisor a daemon was stopped on purpose: its watcher takes a last sample and
    /// retires, and the stop is recorded in its history.
    pub async fn daemon_stopped(&self, id: impl Into<DaemonId>) -> Result<(), Error> {
        self.check_running()?;
        self.inner
            .parts
            .supervisor
            .send(DaemonStopped { id: id.into() })
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// The hot-path recorder for the host's own metrics. It never blocks.
    pub fn recorder(&self) -> Recorder {
        self.inner.parts.recorder.clone()
    }

    /// A `metrics::Recorder` feeding this perfvisor (feature `metrics`): install it with
    /// `metrics::set_global_recorder` (or in a fanout beside another recorder) and the
    /// host's `counter!`, `gauge!` and `histogram!` calls become app metrics; a `daemon`
    /// label routes to that daemon, other labels become series labels.
    #[cfg(feature = "metrics")]
    pub fn metrics_recorder(&self) -> crate::MetricsRecorder {
        crate::MetricsRecorder::new(self.recorder())
    }

    /// A `tracing_subscriber::Layer` feeding this perfvisor (feature `tracing`): every
    /// closed span becomes an operation duration with its numeric fields as extras; filter
    /// which spans with `Layer::with_filter`.
    #[cfg(feature = "tracing")]
    pub fn tracing_layer(&self) -> crate::SpanLayer {
        crate::SpanLayer::new(self.recorder())
    }

    /// Subscribes a host actor to every alert notification (firing and resolved).
    pub async fn subscribe_alerts(&self, recipient: Recipient<Alert>) -> Result<(), Error> {
        self.check_running()?;
        self.inner
            .parts
            .dispatcher
            .send(SubscribeAlerts { recipient })
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// Subscribes a closure to every alert notification. It runs on a thread of its own.
    pub async fn on_alert<F>(&self, callback: F) -> Result<(), Error>
    where
        F: Fn(&Alert) + Send + Sync + 'static,
    {
        self.check_running()?;
        let callback: AlertCallback = Arc::new(callback);
        self.inner
            .parts
            .dispatcher
            .send(SubscribeCallback { callback })
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// Every alert notification (firing and resolved) from now on, as a tokio-friendly
    /// stream: `while let Some(alert) = alerts.recv().await`, or a `futures_core::Stream`.
    /// No actix code is needed in the host. A reader that falls more than
    /// [`STREAM_BUFFER`](perfvisor_actors::alerts::STREAM_BUFFER) alerts behind loses the
    /// newest ones for itself only, counted by [`AlertStream::lagged`]; perfvisor never
    /// waits for it. The stream ends when perfvisor shuts down.
    pub async fn alerts(&self) -> Result<AlertStream, Error> {
        self.check_running()?;
        let (sender, stream) = AlertStream::channel(perfvisor_actors::alerts::STREAM_BUFFER);
        self.inner
            .parts
            .dispatcher
            .send(SubscribeStream { sender })
            .await
            .map_err(|_| Error::NotRunning)?;
        Ok(stream)
    }

    /// Sets (or replaces) who restarts daemons for `action = restart` rules, while perfvisor
    /// runs: the host's restart logic often exists only once this handle does. Called on
    /// perfvisor's action thread; may block there (never on an engine actor).
    pub fn set_daemon_control(&self, control: impl DaemonControl) {
        self.inner.parts.control.set(Arc::new(control));
    }

    /// Sets (or replaces) an async daemon control: each restart is a future run on the
    /// tokio runtime current when this is called (or, outside one, on a single-threaded
    /// runtime of perfvisor's own), driven from perfvisor's action thread, so it never
    /// occupies one of the host's worker threads while it waits. A closure
    /// `|daemon: DaemonId| async move { … }` returning `Result<(), String>` is one.
    pub fn set_async_daemon_control(&self, control: impl AsyncDaemonControl) -> Result<(), Error> {
        self.inner
            .parts
            .control
            .set_async(Arc::new(control))
            .map_err(Error::Thread)
    }

    /// Adds (or replaces, by name) an alert rule. A rule with a bad setting (a non-finite
    /// threshold, a signal perfvisor never raises, …) is refused with every problem named.
    pub async fn add_rule(&self, rule: ThresholdRule) -> Result<(), Error> {
        self.check_running()?;
        rule.validate().map_err(Error::InvalidRule)?;
        self.inner
            .parts
            .dispatcher
            .send(AddRule { rule })
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// Every rule perfvisor runs, enabled or not: built-ins, the config's and the host's,
    /// each with its origin and its settings in words.
    pub async fn rules(&self) -> Result<Vec<RuleInfo>, Error> {
        self.check_running()?;
        self.inner
            .parts
            .dispatcher
            .send(GetRules)
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// Anomaly candidates seen per source (a daemon, the host, perfvisor) over the last
    /// hour; sources with none are left out.
    pub async fn anomaly_rates(&self) -> Result<Vec<(Source, u64)>, Error> {
        self.check_running()?;
        self.inner
            .parts
            .dispatcher
            .send(GetAnomalyRates)
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// Replaces the config file's alerting (a reload): `rules` replace the config rules
    /// whole (a removed rule's firing alert is resolved, unchanged rules keep their state);
    /// `sinks`, when given, are rebuilt; `silences`, when given, replace the silences made
    /// with `created_by = "config"`. Rules the host added and other silences are kept.
    pub async fn replace_config_alerting(
        &self,
        rules: Vec<ThresholdRule>,
        sinks: Option<Vec<(String, SinkConfig)>>,
        silences: Option<Vec<Silence>>,
    ) -> Result<AlertingChange, Error> {
        self.check_running()?;
        self.inner
            .parts
            .supervisor
            .send(ReplaceAlerting {
                rules,
                sinks,
                silences,
            })
            .await
            .map_err(|_| Error::NotRunning)?
            .map_err(Error::Alerting)
    }

    /// The alerts firing now.
    pub async fn firing_alerts(&self) -> Result<Vec<Alert>, Error> {
        self.check_running()?;
        self.inner
            .parts
            .dispatcher
            .send(GetFiring)
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// One daemon's report, or `None` when nothing was collected for it yet.
    pub async fn report(&self, id: impl Into<DaemonId>) -> Result<Option<DaemonReport>, Error> {
        self.check_running()?;
        let daemon = id.into();
        let mut report = self
            .inner
            .parts
            .analyzer
            .send(GetReport {
                daemon: daemon.clone(),
            })
            .await
            .map_err(|_| Error::NotRunning)?;
        if let Some(r) = report.as_mut() {
            // The top children live with the daemon's watcher, not in the analyzer's series.
            r.children = self
                .inner
                .parts
                .supervisor
                .send(GetTopChildren { daemon })
                .await
                .map_err(|_| Error::NotRunning)?;
        }
        Ok(report)
    }

    /// The host's report: its score with the breakdown, contention between daemons, every
    /// daemon's score, and the host series' statistics and trends.
    pub async fn host_report(&self) -> Result<Option<HostReport>, Error> {
        self.check_running()?;
        self.inner
            .parts
            .analyzer
            .send(GetHostReport)
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// The latest sample of every series perfvisor holds in memory (daemons, host, app
    /// metrics and perfvisor's own), sorted by series.
    pub async fn latest(&self) -> Result<Vec<Sample>, Error> {
        self.check_running()?;
        self.inner
            .parts
            .analyzer
            .send(GetLatest)
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// perfvisor's own status: health, restarts, backlogs, drops.
    pub async fn status(&self) -> Result<Status, Error> {
        self.check_running()?;
        #[allow(unused_mut)]
        let mut status = self
            .inner
            .parts
            .supervisor
            .send(GetStatus)
            .await
            .map_err(|_| Error::NotRunning)?;
        #[cfg(feature = "remote-write")]
        if let Ok(remote) = self.inner.remote.lock() {
            if let Some(r) = remote.as_ref() {
                status.remote_write = r.status();
            }
        }
        Ok(status)
    }

    /// Starts shipping the stored history to Prometheus remote-write endpoints, each from
    /// its durable cursor (see `crate::remote_write`); their progress is in
    /// [`Perfvisor::status`] and in perfvisor's own metrics (`perfvisor.remote_write.*`).
    /// `raw_retention` is the raw tier's retention: unshipped samples older than that are
    /// dropped and raise `perfvisor_remote_write_expired` (add
    /// [`crate::remote_write::expired_rule`] to the builder's rules). Replaces shippers
    /// started before: they are stopped (and their cursors saved) before the new ones
    /// start.
    #[cfg(feature = "remote-write")]
    pub fn start_remote_write(
        &self,
        remotes: &[crate::config::RemoteWriteConfig],
        raw_retention: std::time::Duration,
    ) -> Result<(), Error> {
        self.check_running()?;
        let collector = self.inner.parts.collector.clone();
        let publish: crate::remote_write::Publisher = std::sync::Arc::new(move |samples| {
            collector.do_send(SamplesCollected {
                batch: perfvisor_actors::types::MetricBatch { samples },
            });
        });
        // The shippers running now stop first (a request in flight finishes and its cursor
        // is saved): the new ones start from the saved cursors, and two shippers of one
        // remote at once would send the same samples twice.
        let slot = || {
            self.inner
                .remote
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let old = slot().take();
        drop(old);
        let writers = crate::remote_write::RemoteWriters::start(
            &self.inner.database,
            remotes,
            raw_retention,
            Some(publish),
            Some(self.inner.parts.storage.stats()),
        )
        .map_err(Error::Thread)?;
        let replaced = slot().replace(writers);
        drop(replaced);
        Ok(())
    }

    /// Makes an actor panic inside its handler, as a bug would. For fault-injection tests
    /// and chaos runs; returns false when the target does not exist.
    pub async fn inject_panic(&self, target: PanicTarget) -> Result<bool, Error> {
        self.check_running()?;
        self.inner
            .parts
            .supervisor
            .send(InjectPanicInto { target })
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// Waits until every sample recorded or collected before the call is committed to the
    /// database. Handy before reading history, and in tests.
    pub async fn flush(&self) -> Result<(), Error> {
        self.check_running()?;
        // Paused until the collector has drained the channel: see `IntakeHandle::pause`.
        let paused = self.inner.parts.intake.pause();
        let drained = self.inner.parts.collector.send(DrainRecorder).await;
        drop(paused);
        drained.map_err(|_| Error::NotRunning)?;
        let storage = self.inner.parts.storage.clone();
        off_executor("perfvisor-flush", move || storage.flush(FLUSH_TIMEOUT)).await??;
        Ok(())
    }

    /// Compacts every recent sample into chunks and rollups now, builds what that
    /// completes and applies retention (normally done in bounded steps in the background).
    pub async fn compact_now(&self) -> Result<(), Error> {
        self.check_running()?;
        let storage = self.inner.parts.storage.clone();
        off_executor("perfvisor-compact", move || {
            storage.compact_now(COMPACT_TIMEOUT)
        })
        .await??;
        Ok(())
    }

    /// Makes the history database refuse writes, or stop refusing (fault injection for
    /// tests and chaos drills): perfvisor buffers, reports `write_blocked` in status, raises
    /// the critical `perfvisor_storage_failing` alert, and recovers once cleared.
    pub fn inject_storage_fault(&self, fault: StorageFault) -> Result<(), Error> {
        self.check_running()?;
        self.inner.parts.storage.inject_fault(fault);
        Ok(())
    }

    /// The host restarts or redeploys a daemon on purpose: until its new process is
    /// announced (at most `expected`), its exit and restart are recorded as intended and
    /// count against nothing (no crash-loop alert, no `daemon_down`, no restart instability).
    /// Its alerts are not silenced: a resolution still reaches subscribers.
    pub async fn daemon_restarting(
        &self,
        id: impl Into<DaemonId>,
        expected: std::time::Duration,
    ) -> Result<(), Error> {
        self.check_running()?;
        self.inner
            .parts
            .supervisor
            .send(DaemonRestarting {
                id: id.into(),
                expected,
            })
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// Adds (or replaces, by id) a silence; it is kept across restarts until it ends.
    pub async fn add_silence(&self, silence: Silence) -> Result<(), Error> {
        self.check_running()?;
        self.inner
            .parts
            .dispatcher
            .send(AddSilence { silence })
            .await
            .map_err(|_| Error::NotRunning)?
            .map_err(Error::Silence)
    }

    /// Removes a silence; `true` when it existed.
    pub async fn remove_silence(&self, id: impl Into<String>) -> Result<bool, Error> {
        self.check_running()?;
        self.inner
            .parts
            .dispatcher
            .send(RemoveSilence { id: id.into() })
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// The silences in force or to come.
    pub async fn silences(&self) -> Result<Vec<Silence>, Error> {
        self.check_running()?;
        self.inner
            .parts
            .dispatcher
            .send(GetSilences)
            .await
            .map_err(|_| Error::NotRunning)
    }

    /// The history database's path.
    pub fn database_path(&self) -> &Path {
        &self.inner.database
    }

    /// A read-only connection to the history database; it never waits for the writer.
    /// Opening it and its queries are blocking SQLite calls (milliseconds to seconds for
    /// long ranges): from async code run them in `tokio::task::spawn_blocking`.
    pub fn reader(&self) -> Result<StorageReader, Error> {
        Ok(StorageReader::open(&self.inner.database)?)
    }

    /// Stops everything in order and returns only when every accepted sample is in the
    /// database. Later calls on any clone return [`Error::NotRunning`]; a second
    /// `shutdown()` returns at once.
    pub async fn shutdown(&self) -> Result<(), Error> {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // The shippers first: they read the history and save their cursors in the file.
        #[cfg(feature = "remote-write")]
        {
            let writers = self.inner.remote.lock().ok().and_then(|mut r| r.take());
            if let Some(mut writers) = writers {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let joined = std::thread::Builder::new()
                    .name("perfvisor-rw-stop".into())
                    .spawn(move || {
                        writers.stop();
                        let _ = tx.send(());
                    });
                if joined.is_ok() {
                    let _ = rx.await;
                }
            }
        }
        let result = self.inner.parts.supervisor.send(Shutdown).await;
        self.inner.system.stop();
        let done = self.inner.done.lock().ok().and_then(|mut d| d.take());
        if let Some(done) = done {
            let _ = done.await;
        }
        // Everything is stored: another perfvisor may use the database now.
        self.inner.lock.lock().ok().and_then(|mut l| l.take());
        result.map_err(|_| Error::NotRunning)
    }
}
