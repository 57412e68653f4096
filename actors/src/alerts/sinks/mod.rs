//! Alert delivery sinks: webhook, Alertmanager, exec and log, each on its own thread behind a
//! bounded queue, with retries, timeouts and counters.
//!
//! Here: the configuration, settings, errors, counters and the [`Sink`] handle. Beside it:
//! `validate.rs` (every problem of a configuration at once), `worker.rs` (the thread, its
//! retries and backoff), `deliver.rs` (HTTP, exec and log deliverers), `payload.rs` (the
//! JSON bodies and timestamps) and `tests.rs`.
//!
//! # Isolation
//!
//! A [`Sink`] owns one thread and one bounded queue (`SinkSettings::queue`, default
//! [`DEFAULT_QUEUE`] notifications). [`Sink::send`] only does a `try_send`: it never waits, so
//! a dead or hanging endpoint delays neither the caller nor any other sink. When the queue is
//! full the notification is dropped and counted. A sink delivers its notifications in order,
//! one at a time, so while it retries one notification the following ones wait in its queue.
//!
//! # Retries and timeouts
//!
//! Every attempt is bounded by the sink's `timeout` (HTTP: connect plus the whole request;
//! exec: the program's whole run, after which its process group is killed). A failed attempt
//! is retried up to `max_attempts` in total, after an exponential backoff with jitter that
//! starts at `backoff_initial` and doubles up to `backoff_max` (a `Retry-After` of a 429 or 5xx
//! response, in seconds, is honoured within `backoff_max`). Only transient failures are
//! retried: connection errors, timeouts, HTTP 5xx and 429, and any failure of an exec program.
//! Other HTTP statuses (4xx, unfollowed 3xx) are permanent: the notification is dropped at
//! once and the response body's beginning is logged.
//!
//! Every outcome is counted in [`SinkStats`] (readable as a [`SinkStatus`]): `delivered` and
//! `dropped` count notifications (one notification may carry several alerts),
//! `failed_attempts` and `retries` count attempts. Every failure is also logged, and the last
//! one is kept in `last_error`.
//!
//! [`Sink::shutdown`] (and dropping the handle, with [`DROP_DRAIN`]) stops the sink: what is
//! queued is still delivered until the drain deadline, and what is left after it is counted
//! as dropped.
//!
//! # Formats
//!
//! **Webhook** and **exec** receive the same JSON document (POST body with
//! `Content-Type: application/json`, or the program's standard input), perfvisor's own
//! [`Alert`] serialization inside a versioned envelope:
//!
//! ```json
//! {"version": 1, "alerts": [{"rule": "high_cpu", "state": "firing", "severity": "warning", ...}]}
//! ```
//!
//! **Alertmanager** receives its API v2 format, `POST {url}/api/v2/alerts`. Labels identify the
//! alert (series labels are added under their own names, made valid label names, unless they
//! collide with one of perfvisor's); `endsAt` is only set on a resolution, which makes
//! Alertmanager resolve the alert. A firing alert without `endsAt` is resolved by Alertmanager
//! after its `resolve_timeout` (5 min by default) unless it is sent again before. Several URLs
//! are the members of one cluster: [`Sink::spawn_each`] gives each a sink of its own.
//!
//! ```json
//! [{
//!   "labels": {"alertname": "high_cpu", "severity": "warning", "daemon": "indexer-ws1",
//!              "project": "search", "metric": "process.cpu.usage_ratio",
//!              "source": "daemon:indexer-ws1", "core": "all"},
//!   "annotations": {"summary": "CPU at 93% for 2 min", "recommendations": "Check ...\nThen ...",
//!                   "value": "0.93", "threshold": "0.8", "auto_actionable": "false"},
//!   "startsAt": "2024-05-01T12:00:00.000Z",
//!   "endsAt": "2024-05-01T12:05:00.000Z",
//!   "generatorURL": "http://perfvisor.local/"
//! }]
//! ```
//!
//! **Log** writes one `tracing` line per alert: `warn` when firing, `info` when resolved.
//!
//! # HTTPS
//!
//! `https://` URLs need the crate's `tls` feature (rustls through `ureq`); without it they are
//! refused when the sink is spawned, rather than sent as plain text.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;
use ureq::http::Uri;

use crate::types::Alert;

mod deliver;
mod payload;
#[cfg(test)]
mod tests;
mod validate;
mod worker;

use deliver::*;
pub use payload::rfc3339;
use payload::*;
use validate::*;
use worker::*;

/// Default queue length of a sink, in notifications.
pub const DEFAULT_QUEUE: usize = 256;
/// Default number of attempts per notification (the first one included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default pause before the first retry.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Default longest pause between two attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The longest timeout (and backoff) a sink accepts.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a sink whose handle is dropped keeps delivering what is queued.
pub const DROP_DRAIN: Duration = Duration::from_secs(2);
/// The most attempts a sink accepts per notification.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Version of the webhook and exec JSON document.
pub const PAYLOAD_VERSION: u32 = 1;

/// How many bytes of an error response body (or of an exec program's stderr) are kept.
const EXCERPT_BYTES: usize = 512;
/// Whether this build can speak TLS (see the module documentation).
const TLS_ENABLED: bool = cfg!(feature = "tls");

/// Where a sink delivers, and how.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkConfig {
    /// POSTs the versioned JSON document (see the module documentation) to a URL.
    Webhook {
        /// `http://` or `https://` URL with a host.
        url: String,
        /// Extra request headers (for example an `Authorization`).
        headers: Vec<(String, String)>,
        /// Bound of one attempt: connect plus the whole request.
        timeout: Duration,
    },
    /// POSTs to Alertmanager's API v2 (`{url}/api/v2/alerts`) of every URL given.
    ///
    /// Several URLs are the members of one Alertmanager cluster (high availability): every
    /// notification goes to each of them, through a sink of its own (see
    /// [`Sink::spawn_each`]), so one member down or slow neither loses nor delays what the
    /// others receive. The cluster deduplicates what reaches the receivers.
    Alertmanager {
        /// Base URLs, for example `["http://127.0.0.1:9093"]`; at least one.
        urls: Vec<String>,
        /// Bound of one attempt: connect plus the whole request.
        timeout: Duration,
        /// Sent as each alert's `generatorURL` (a link back to perfvisor), if given.
        generator_url: Option<String>,
    },
    /// Runs a program, without a shell, with the versioned JSON document on its standard input.
    ///
    /// A non-zero exit is a failure; a program still running after `timeout` is killed with
    /// its whole process group.
    Exec {
        /// Path of the program; a bare name is looked up in `PATH` when the sink is spawned.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// Bound of one run.
        timeout: Duration,
    },
    /// Logs one line per alert through `tracing`.
    Log,
}

impl SinkConfig {
    /// The kind as shown in [`SinkStatus::kind`]: `webhook`, `alertmanager`, `exec` or `log`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Webhook { .. } => "webhook",
            SinkConfig::Alertmanager { .. } => "alertmanager",
            SinkConfig::Exec { .. } => "exec",
            SinkConfig::Log => "log",
        }
    }
}

/// Queue and retry settings shared by every kind of sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkSettings {
    /// Notifications that may wait; more are dropped. Default [`DEFAULT_QUEUE`].
    pub queue: usize,
    /// Attempts per notification, the first included. Default [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// Pause before the first retry. Default [`DEFAULT_BACKOFF_INITIAL`].
    pub backoff_initial: Duration,
    /// Longest pause between attempts. Default [`DEFAULT_BACKOFF_MAX`].
    pub backoff_max: Duration,
}

impl Default for SinkSettings {
    fn default() -> Self {
        SinkSettings {
            queue: DEFAULT_QUEUE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

/// A sink could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The configuration has problems (all of them are listed).
    #[error("sink {sink:?} is misconfigured: {}", join_problems(.problems))]
    Invalid {
        /// The sink's name.
        sink: String,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
    /// The operating system refused a thread.
    #[error("sink {sink:?}: cannot start its thread: {source}")]
    Thread {
        /// The sink's name.
        sink: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One problem of a sink configuration, naming the bad value and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// The sink has no name.
    #[error("the sink name is empty; give every sink a name")]
    EmptyName,
    /// The URL is not an HTTP URL with a host.
    #[error(
        "url {url:?} is not accepted ({reason}); give an http:// or https:// URL with a host, \
         like \"http://127.0.0.1:9093\""
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `https://` URL in a build without TLS.
    #[error(
        "url {url:?} needs TLS, which this build leaves out; use an http:// URL, or build \
         perfvisor-actors with its `tls` feature"
    )]
    TlsUnavailable {
        /// The URL as given.
        url: String,
    },
    /// An Alertmanager sink without a URL.
    #[error("no url is given; give `url`, or `urls` with the members of an Alertmanager cluster")]
    NoUrl,
    /// Several Alertmanager URLs given to [`Sink::spawn`], which starts one sink.
    #[error(
        "{count} urls are given to one sink; start them with Sink::spawn_each, which makes \
         one sink per Alertmanager"
    )]
    SeveralUrls {
        /// How many URLs were given.
        count: usize,
    },
    /// A webhook header that HTTP does not allow.
    #[error(
        "header {name:?} is not accepted ({reason}); give a token name and a visible-ASCII value"
    )]
    BadHeader {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The exec program is missing or not executable.
    #[error("program {path:?} {reason}; give the path of an executable file")]
    BadProgram {
        /// The program as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration out of range.
    #[error("{field} {value:?} is not accepted; give a duration above 0 and at most 5 min")]
    BadDuration {
        /// Which setting.
        field: &'static str,
        /// The value given.
        value: Duration,
    },
    /// A count out of range.
    #[error("{field} {value} is not accepted; give {accepted}")]
    BadCount {
        /// Which setting.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The accepted range, in words.
        accepted: &'static str,
    },
    /// `backoff_initial` above `backoff_max`.
    #[error(
        "backoff_initial {initial:?} is above backoff_max {max:?}; give an initial backoff at \
         most the maximum"
    )]
    BackoffOrder {
        /// The initial backoff given.
        initial: Duration,
        /// The maximum backoff given.
        max: Duration,
    },
}

fn join_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Live counters of one sink, shared by its handle and its thread.
#[derive(Debug)]
pub struct SinkStats {
    name: String,
    kind: &'static str,
    /// Notifications delivered.
    pub delivered: AtomicU64,
    /// Attempts that failed (each retry that fails counts again).
    pub failed_attempts: AtomicU64,
    /// Attempts made after a failure.
    pub retries: AtomicU64,
    /// Notifications lost: queue full, permanent failure, attempts exhausted, or shutdown.
    pub dropped: AtomicU64,
    /// Notifications waiting in the queue (a gauge).
    pub queued: AtomicU64,
    /// The most recent failure, for people.
    pub last_error: Mutex<Option<String>>,
}

impl SinkStats {
    fn new(name: String, kind: &'static str) -> Self {
        SinkStats {
            name,
            kind,
            delivered: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// A consistent-enough copy of the counters (each is read atomically on its own).
    pub fn snapshot(&self) -> SinkStatus {
        SinkStatus {
            name: self.name.clone(),
            kind: self.kind.to_string(),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn record_error(&self, message: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message.to_owned());
    }
}

/// What a sink has done so far, as reported to people and to perfvisor's own metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SinkStatus {
    /// The sink's name.
    pub name: String,
    /// `webhook`, `alertmanager`, `exec` or `log`.
    pub kind: String,
    /// Notifications delivered.
    pub delivered: u64,
    /// Attempts that failed.
    pub failed_attempts: u64,
    /// Attempts made after a failure.
    pub retries: u64,
    /// Notifications lost.
    pub dropped: u64,
    /// Notifications waiting.
    pub queued: u64,
    /// The most recent failure.
    pub last_error: Option<String>,
}

/// State shared by a handle and its thread to stop the thread.
#[derive(Debug)]
struct Control {
    /// Disconnected (set to `None`) when the sink must stop; wakes a thread in backoff.
    stop: Mutex<Option<Sender<()>>>,
    /// Until when the stopping thread may still deliver.
    deadline: Mutex<Option<Instant>>,
}

impl Control {
    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the thread to stop, delivering what it can until `now + drain`. The first call's
    /// deadline holds.
    fn stop(&self, drain: Duration) {
        let mut deadline = self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        if deadline.is_none() {
            *deadline = Some(Instant::now() + drain);
        }
        drop(deadline);
        self.stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// Handle of a running sink. Dropping it stops the sink, which keeps delivering what is
/// queued for [`DROP_DRAIN`] without making the dropper wait.
///
/// The handle is `Send + Sync`; share it with an `Arc`.
#[derive(Debug)]
pub struct Sink {
    stats: Arc<SinkStats>,
    sender: Sender<Arc<[Alert]>>,
    control: Arc<Control>,
    /// Disconnected when the thread ends.
    done: Receiver<()>,
}

impl Sink {
    /// Validates the configuration (reporting every problem at once) and starts the sink's
    /// thread.
    pub fn spawn(
        name: impl Into<String>,
        config: SinkConfig,
        settings: SinkSettings,
    ) -> Result<Sink, SinkError> {
        let name = name.into();
        let kind = config.kind();
        let deliverer = match validate(&name, &config, &settings) {
            Ok(deliverer) => deliverer,
            Err(problems) => {
                return Err(SinkError::Invalid {
                    sink: name,
                    problems,
                })
            }
        };
        let stats = Arc::new(SinkStats::new(name.clone(), kind));
        let (sender, queue) = crossbeam_channel::bounded(settings.queue);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let control = Arc::new(Control {
            stop: Mutex::new(Some(stop_tx)),
            deadline: Mutex::new(None),
        });
        let worker = Worker {
            name: name.clone(),
            deliverer,
            settings,
            stats: Arc::clone(&stats),
            queue,
            stop: stop_rx,
            control: Arc::clone(&control),
        };
        thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                let _done = done_tx;
                worker.run();
            })
            .map_err(|source| SinkError::Thread { sink: name, source })?;
        Ok(Sink {
            stats,
            sender,
            control,
            done,
        })
    }

    /// Starts the sinks of one configured sink: one, or for an Alertmanager sink with
    /// several URLs one per Alertmanager, named `{name}@{host:port}`, each with its own queue
    /// and retries. Every problem of every member is reported at once, and nothing is left
    /// running when one is refused.
    pub fn spawn_each(
        name: impl Into<String>,
        config: SinkConfig,
        settings: SinkSettings,
    ) -> Result<Vec<Sink>, SinkError> {
        let name = name.into();
        let SinkConfig::Alertmanager {
            urls,
            timeout,
            generator_url,
        } = config
        else {
            return Ok(vec![Sink::spawn(name, config, settings)?]);
        };
        if urls.len() < 2 {
            let config = SinkConfig::Alertmanager {
                urls,
                timeout,
                generator_url,
            };
            return Ok(vec![Sink::spawn(name, config, settings)?]);
        }
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for url in &urls {
            let authority = check_url(&mut problems, url)
                .and_then(|uri| uri.authority().map(|a| a.as_str().to_owned()));
            if let Some(authority) = authority {
                if !seen.insert(authority.clone()) {
                    problems.push(ConfigProblem::BadUrl {
                        url: url.clone(),
                        reason: format!("{authority} is listed twice"),
                    });
                }
            }
        }
        if !problems.is_empty() {
            return Err(SinkError::Invalid {
                sink: name,
                problems,
            });
        }
        let mut sinks = Vec::with_capacity(urls.len());
        for url in urls {
            let authority = url
                .parse::<Uri>()
                .ok()
                .and_then(|uri| uri.authority().map(|a| a.as_str().to_owned()))
                .unwrap_or_else(|| url.clone());
            let member = SinkConfig::Alertmanager {
                urls: vec![url],
                timeout,
                generator_url: generator_url.clone(),
            };
            // A refused member drops (and so stops) the ones already started.
            sinks.push(Sink::spawn(
                format!("{name}@{authority}"),
                member,
                settings.clone(),
            )?);
        }
        Ok(sinks)
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// The live counters (for perfvisor's own metrics).
    pub fn stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.stats)
    }

    /// Queues one notification (a group of alerts) without waiting. Returns false, counting
    /// the notification as dropped, when the queue is full or the sink has stopped.
    pub fn send(&self, alerts: Arc<[Alert]>) -> bool {
        // Counted before the thread can take it, so that the gauge never goes below zero.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(alerts) {
            Ok(()) => true,
            Err(err) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let why = match err {
                    TrySendError::Full(_) => "queue full",
                    TrySendError::Disconnected(_) => "sink stopped",
                };
                // A flood would log a line per alert: log the 1st, 2nd, 4th, 8th... drop.
                if dropped.is_power_of_two() {
                    tracing::warn!(sink = %self.stats.name, reason = why, dropped,
                        "Alert notification dropped.");
                }
                self.stats
                    .record_error(&format!("notification dropped: {why}"));
                false
            }
        }
    }

    /// A copy of the counters.
    pub fn status(&self) -> SinkStatus {
        self.stats.snapshot()
    }

    /// Stops the sink: it delivers what is queued until `timeout` has passed, counts the rest
    /// as dropped, and its thread ends. Waits at most `timeout` (plus scheduling) for that.
    pub fn shutdown(&self, timeout: Duration) {
        let started = Instant::now();
        self.control.stop(timeout);
        let wait = self
            .control
            .deadline()
            .map_or(timeout, |d| d.saturating_duration_since(started));
        // The thread may be inside a last attempt bounded by the deadline; give it a moment.
        let _ = self.done.recv_timeout(wait + Duration::from_millis(50));
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.control.stop(DROP_DRAIN);
    }
}
