//! Alert delivery sinks: webhook, Alertmanager, exec and log, each on its own thread behind a
//! bounded queue, with retries, timeouts and counters.
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

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::Serialize;
use ureq::http::{HeaderName, HeaderValue, Uri};

use crate::types::{Alert, AlertState, TimestampMs};

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

/// Checks everything, building the deliverer when all is well.
fn validate(
    name: &str,
    config: &SinkConfig,
    settings: &SinkSettings,
) -> Result<Box<dyn Deliver>, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    if name.trim().is_empty() {
        problems.push(ConfigProblem::EmptyName);
    }
    if settings.queue == 0 {
        problems.push(ConfigProblem::BadCount {
            field: "queue",
            value: 0,
            accepted: "at least 1 notification",
        });
    }
    if settings.max_attempts == 0 || settings.max_attempts > MAX_ATTEMPTS_LIMIT {
        problems.push(ConfigProblem::BadCount {
            field: "max_attempts",
            value: u64::from(settings.max_attempts),
            accepted: "1 to 100 attempts",
        });
    }
    check_duration(&mut problems, "backoff_initial", settings.backoff_initial);
    check_duration(&mut problems, "backoff_max", settings.backoff_max);
    if settings.backoff_initial > settings.backoff_max {
        problems.push(ConfigProblem::BackoffOrder {
            initial: settings.backoff_initial,
            max: settings.backoff_max,
        });
    }
    let deliverer: Option<Box<dyn Deliver>> = match config {
        SinkConfig::Webhook {
            url,
            headers,
            timeout,
        } => {
            check_duration(&mut problems, "timeout", *timeout);
            let uri = check_url(&mut problems, url);
            let headers = check_headers(&mut problems, headers);
            uri.map(|_| {
                Box::new(HttpDeliverer::new(
                    url.clone(),
                    headers,
                    *timeout,
                    Format::Webhook,
                )) as Box<dyn Deliver>
            })
        }
        SinkConfig::Alertmanager {
            urls,
            timeout,
            generator_url,
        } => {
            check_duration(&mut problems, "timeout", *timeout);
            let url = match urls.as_slice() {
                [url] => Some(url),
                [] => {
                    problems.push(ConfigProblem::NoUrl);
                    None
                }
                several => {
                    problems.push(ConfigProblem::SeveralUrls {
                        count: several.len(),
                    });
                    None
                }
            };
            let uri = url.and_then(|url| check_url(&mut problems, url));
            url.zip(uri).map(|(url, _)| {
                let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
                Box::new(HttpDeliverer::new(
                    endpoint,
                    Vec::new(),
                    *timeout,
                    Format::Alertmanager {
                        generator_url: generator_url.clone(),
                    },
                )) as Box<dyn Deliver>
            })
        }
        SinkConfig::Exec {
            program,
            args,
            timeout,
        } => {
            check_duration(&mut problems, "timeout", *timeout);
            match resolve_program(program) {
                Ok(path) => Some(Box::new(ExecDeliverer {
                    program: path,
                    args: args.clone(),
                    timeout: *timeout,
                }) as Box<dyn Deliver>),
                Err(reason) => {
                    problems.push(ConfigProblem::BadProgram {
                        path: program.clone(),
                        reason,
                    });
                    None
                }
            }
        }
        SinkConfig::Log => Some(Box::new(LogDeliverer {
            name: name.to_owned(),
        })),
    };
    match deliverer {
        Some(d) if problems.is_empty() => Ok(d),
        _ => Err(problems),
    }
}

fn check_duration(problems: &mut Vec<ConfigProblem>, field: &'static str, value: Duration) {
    if value.is_zero() || value > MAX_TIMEOUT {
        problems.push(ConfigProblem::BadDuration { field, value });
    }
}

fn check_url(problems: &mut Vec<ConfigProblem>, url: &str) -> Option<Uri> {
    let bad = |reason: &str| ConfigProblem::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri = match url.parse::<Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            problems.push(bad(&format!("not a URL: {e}")));
            return None;
        }
    };
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    match scheme.as_deref() {
        Some("http") => {}
        Some("https") if TLS_ENABLED => {}
        Some("https") => {
            problems.push(ConfigProblem::TlsUnavailable {
                url: url.to_owned(),
            });
            return None;
        }
        Some(other) => {
            problems.push(bad(&format!("scheme {other:?}")));
            return None;
        }
        None => {
            problems.push(bad("no scheme"));
            return None;
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        problems.push(bad("no host"));
        return None;
    }
    Some(uri)
}

fn check_headers(
    problems: &mut Vec<ConfigProblem>,
    headers: &[(String, String)],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let bad = |reason: String| ConfigProblem::BadHeader {
            name: name.clone(),
            reason,
        };
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => out.push((n, v)),
            (Err(e), _) => problems.push(bad(format!("bad name: {e}"))),
            (_, Err(e)) => problems.push(bad(format!("bad value: {e}"))),
        }
    }
    out
}

/// Finds the program (a bare name in `PATH`) and checks it is an executable file.
fn resolve_program(program: &Path) -> Result<PathBuf, String> {
    let is_bare = program.components().count() == 1 && !program.has_root();
    let candidates: Vec<PathBuf> = if is_bare && !program.as_os_str().is_empty() {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    } else {
        vec![program.to_path_buf()]
    };
    let mut last = String::from("does not exist");
    for candidate in candidates {
        match std::fs::metadata(&candidate) {
            Ok(meta) if !meta.is_file() => last = "is not a file".into(),
            Ok(meta) if meta.permissions().mode() & 0o111 == 0 => {
                last = "is not executable (no x permission bit)".into();
            }
            Ok(_) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => last = format!("cannot be read: {e}"),
        }
    }
    if is_bare && last == "does not exist" {
        last = "is not found in PATH".into();
    }
    Err(last)
}

/// Why an attempt failed, and whether trying again may help.
#[derive(Debug)]
struct Failure {
    message: String,
    retryable: bool,
    /// The server's `Retry-After`, if it gave one.
    retry_after: Option<Duration>,
}

impl Failure {
    fn transient(message: String) -> Self {
        Failure {
            message,
            retryable: true,
            retry_after: None,
        }
    }
    fn permanent(message: String) -> Self {
        Failure {
            message,
            retryable: false,
            retry_after: None,
        }
    }
}

/// One way of delivering a notification; called on the sink's thread only.
trait Deliver: Send {
    /// The configured bound of one attempt.
    fn timeout(&self) -> Duration;
    /// One attempt, bounded by `timeout`.
    fn deliver(&mut self, alerts: &[Alert], timeout: Duration) -> Result<(), Failure>;
}

/// The sink's thread: takes notifications one by one and retries each.
struct Worker {
    name: String,
    deliverer: Box<dyn Deliver>,
    settings: SinkSettings,
    stats: Arc<SinkStats>,
    queue: Receiver<Arc<[Alert]>>,
    stop: Receiver<()>,
    control: Arc<Control>,
}

impl Worker {
    fn run(mut self) {
        loop {
            crossbeam_channel::select! {
                recv(self.queue) -> next => match next {
                    Ok(alerts) => self.handle(&alerts),
                    Err(_) => break,
                },
                recv(self.stop) -> _ => break,
            }
        }
        // Stopping: drain what is queued (each attempt bounded by the deadline), then count
        // what is left in one go.
        let mut abandoned = 0u64;
        while let Ok(alerts) = self.queue.try_recv() {
            if self.attempt_timeout().is_some() {
                self.handle(&alerts);
            } else {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                abandoned += 1;
            }
        }
        if abandoned > 0 {
            tracing::warn!(sink = %self.name, dropped = abandoned,
                "Sink stopped with notifications undelivered at its deadline.");
        } else {
            tracing::debug!(sink = %self.name, "Sink stopped.");
        }
    }

    fn handle(&mut self, alerts: &[Alert]) {
        self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        let mut backoff = self.settings.backoff_initial;
        for attempt in 1..=self.settings.max_attempts {
            let Some(timeout) = self.attempt_timeout() else {
                self.give_up("shutdown deadline passed", attempt - 1);
                return;
            };
            if attempt > 1 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            match self.deliverer.deliver(alerts, timeout) {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(failure) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    self.stats.record_error(&failure.message);
                    if !failure.retryable {
                        tracing::warn!(sink = %self.name, attempt, error = %failure.message,
                            "Alert delivery failed permanently.");
                        self.give_up(&failure.message, attempt);
                        return;
                    }
                    if attempt == self.settings.max_attempts {
                        self.give_up(&failure.message, attempt);
                        return;
                    }
                    let pause = failure
                        .retry_after
                        .unwrap_or_else(|| jittered(backoff))
                        .min(self.settings.backoff_max);
                    let retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
                    tracing::info!(sink = %self.name, attempt, error = %failure.message,
                        retry_in_ms, "Alert delivery failed; will retry.");
                    if !self.pause(pause) {
                        self.give_up("shutdown deadline passed during backoff", attempt);
                        return;
                    }
                    backoff = backoff.saturating_mul(2).min(self.settings.backoff_max);
                }
            }
        }
    }

    fn give_up(&self, reason: &str, attempts: u32) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(sink = %self.name, attempts, error = %reason, "Alert notification dropped.");
    }

    /// The bound of the next attempt: the sink's timeout, cut by the shutdown deadline. None
    /// once the deadline has passed.
    fn attempt_timeout(&self) -> Option<Duration> {
        let timeout = self.deliverer.timeout();
        match self.control.deadline() {
            None => Some(timeout),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| timeout.min(left))
            }
        }
    }

    /// Waits before a retry; false when the sink is stopping and the retry would come after
    /// the drain deadline.
    fn pause(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        match self.stop.recv_timeout(pause) {
            Err(RecvTimeoutError::Timeout) => true,
            // Stopping: the only message is the disconnection.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => match self.control.deadline() {
                Some(deadline) if until <= deadline => {
                    thread::sleep(until.saturating_duration_since(Instant::now()));
                    true
                }
                _ => false,
            },
        }
    }
}

/// Exponential backoff's pause with jitter: between half and all of `base`, so that sinks
/// that failed together do not retry together.
fn jittered(base: Duration) -> Duration {
    let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(nanos / 2 + fastrand::u64(0..=nanos / 2))
}

/// How an HTTP sink encodes its body.
enum Format {
    Webhook,
    Alertmanager { generator_url: Option<String> },
}

/// Webhook and Alertmanager delivery over HTTP/1.1.
struct HttpDeliverer {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    format: Format,
}

impl HttpDeliverer {
    fn new(
        url: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
        format: Format,
    ) -> Self {
        let agent = ureq::Agent::config_builder()
            // Statuses are judged here (retry 5xx/429, not 4xx), with the body at hand.
            .http_status_as_error(false)
            // A redirected POST would silently become a GET; report the 3xx instead.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("perfvisor/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpDeliverer {
            agent,
            url,
            headers,
            timeout,
            format,
        }
    }
}

impl Deliver for HttpDeliverer {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn deliver(&mut self, alerts: &[Alert], timeout: Duration) -> Result<(), Failure> {
        let body = match &self.format {
            Format::Webhook => webhook_json(alerts),
            Format::Alertmanager { generator_url } => {
                alertmanager_json(alerts, generator_url.as_deref())
            }
        }
        .map_err(|e| Failure::permanent(format!("cannot encode the alerts as JSON: {e}")))?;
        let mut request = self.agent.post(&self.url).content_type("application/json");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request
            .config()
            // The whole request: resolution, connection, sending and the answer.
            .timeout_global(Some(timeout))
            .build()
            .send(&body[..]);
        let mut response = match response {
            Ok(response) => response,
            Err(e) => {
                let retryable = matches!(
                    e,
                    ureq::Error::Timeout(_)
                        | ureq::Error::Io(_)
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::HostNotFound
                        | ureq::Error::Protocol(_)
                );
                return Err(Failure {
                    message: format!("POST {} failed: {e}", self.url),
                    retryable,
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut excerpt = Vec::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(EXCERPT_BYTES as u64)
            .read_to_end(&mut excerpt);
        let message = format!(
            "POST {} answered {status}: {}",
            self.url,
            String::from_utf8_lossy(&excerpt).trim()
        );
        if status.as_u16() == 429 || status.is_server_error() {
            Err(Failure {
                message,
                retryable: true,
                retry_after,
            })
        } else {
            Err(Failure::permanent(message))
        }
    }
}

/// Runs a program per notification.
struct ExecDeliverer {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
}

impl Deliver for ExecDeliverer {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn deliver(&mut self, alerts: &[Alert], timeout: Duration) -> Result<(), Failure> {
        let body = webhook_json(alerts)
            .map_err(|e| Failure::permanent(format!("cannot encode the alerts as JSON: {e}")))?;
        let program = self.program.display();
        let started = Instant::now();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so that a timeout kills what it started too.
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::transient(format!("cannot start {program}: {e}")))?;
        let pid = child.id();
        // Stdin and stderr on helper threads: a program that reads nothing, or writes much to
        // stderr, must not block this thread past the timeout.
        let stdin = child.stdin.take();
        let writer = thread::Builder::new()
            .name("sink-exec-stdin".into())
            .spawn(move || {
                if let Some(mut stdin) = stdin {
                    // A program that exits without reading gives EPIPE; its exit status says
                    // whether it failed.
                    let _ = stdin.write_all(&body);
                }
            });
        let (excerpt_tx, excerpt_rx) = crossbeam_channel::bounded(1);
        let stderr = child.stderr.take();
        let reader = thread::Builder::new()
            .name("sink-exec-stderr".into())
            .spawn(move || {
                let mut excerpt = Vec::new();
                if let Some(mut stderr) = stderr {
                    let _ = Read::by_ref(&mut stderr)
                        .take(EXCERPT_BYTES as u64)
                        .read_to_end(&mut excerpt);
                    let _ = excerpt_tx.try_send(excerpt);
                    let _ = io::copy(&mut stderr, &mut io::sink());
                }
            });
        if let Err(e) = writer.and(reader) {
            kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::transient(format!(
                "cannot start a helper thread for {program}: {e}"
            )));
        }
        let deadline = started + timeout;
        let mut nap = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // Not reaped yet, so the pid (and group id) cannot have been reused.
                        kill_group(pid);
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(Failure::transient(format!(
                            "{program} (pid {pid}) still ran after {timeout:?}; killed it"
                        )));
                    }
                    thread::sleep(nap.min(deadline - now));
                    nap = (nap * 2).min(Duration::from_millis(20));
                }
                Err(e) => {
                    kill_group(pid);
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Failure::transient(format!(
                        "cannot wait for {program}: {e}"
                    )));
                }
            }
        };
        if status.success() {
            return Ok(());
        }
        // A descendant may keep stderr open; do not wait for it long.
        let excerpt = excerpt_rx
            .recv_timeout(Duration::from_millis(100))
            .unwrap_or_default();
        Err(Failure::transient(format!(
            "{program} {status}: {}",
            String::from_utf8_lossy(&excerpt).trim()
        )))
    }
}

/// Kills the process group led by `pid` (the exec program and its descendants).
fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory effects; the group is ours (spawned with process_group(0))
        // and its leader is not reaped yet.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// Writes alerts to the log.
struct LogDeliverer {
    name: String,
}

impl Deliver for LogDeliverer {
    fn timeout(&self) -> Duration {
        MAX_TIMEOUT
    }

    fn deliver(&mut self, alerts: &[Alert], _timeout: Duration) -> Result<(), Failure> {
        for a in alerts {
            match a.state {
                AlertState::Firing => tracing::warn!(
                    sink = %self.name, rule = %a.rule, series = %a.series, severity = %a.severity,
                    value = a.value, threshold = a.threshold, message = %a.message,
                    "Alert firing."
                ),
                AlertState::Resolved => tracing::info!(
                    sink = %self.name, rule = %a.rule, series = %a.series, severity = %a.severity,
                    value = a.value, threshold = a.threshold, message = %a.message,
                    "Alert resolved."
                ),
            }
        }
        Ok(())
    }
}

/// The webhook and exec document.
#[derive(Serialize)]
struct Envelope<'a> {
    version: u32,
    alerts: &'a [Alert],
}

fn webhook_json(alerts: &[Alert]) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Envelope {
        version: PAYLOAD_VERSION,
        alerts,
    })
}

/// One alert in Alertmanager's API v2 (`postableAlert`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerAlert<'a> {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<&'a str>,
}

fn alertmanager_json(alerts: &[Alert], generator_url: Option<&str>) -> serde_json::Result<Vec<u8>> {
    let alerts: Vec<_> = alerts
        .iter()
        .map(|a| alertmanager_alert(a, generator_url))
        .collect();
    serde_json::to_vec(&alerts)
}

fn alertmanager_alert<'a>(alert: &Alert, generator_url: Option<&'a str>) -> AlertmanagerAlert<'a> {
    let mut labels = BTreeMap::new();
    let mut put = |name: String, value: &str| {
        // Alertmanager treats an empty label as absent; a collision keeps perfvisor's own.
        if !value.is_empty() {
            labels.entry(name).or_insert_with(|| value.to_owned());
        }
    };
    put("alertname".into(), &alert.rule);
    put("severity".into(), &alert.severity.to_string());
    let daemon = alert.daemon.as_ref().or(alert.series.source.daemon());
    put("daemon".into(), daemon.map_or("", |d| d.as_str()));
    put("project".into(), alert.project.as_deref().unwrap_or(""));
    put("metric".into(), alert.series.metric.as_str());
    put("source".into(), &alert.series.source.as_text());
    for (name, value) in alert.series.labels.iter() {
        put(label_name(name), value);
    }
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", alert.message.clone());
    if !alert.recommendations.is_empty() {
        annotations.insert("recommendations", alert.recommendations.join("\n"));
    }
    annotations.insert("value", alert.value.to_string());
    annotations.insert("threshold", alert.threshold.to_string());
    annotations.insert("auto_actionable", alert.auto_actionable.to_string());
    AlertmanagerAlert {
        labels,
        annotations,
        starts_at: rfc3339(alert.since_ms),
        ends_at: (alert.state == AlertState::Resolved).then(|| rfc3339(alert.at_ms)),
        generator_url,
    }
}

/// A valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`): other characters become `_`.
fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// RFC 3339 in UTC with milliseconds, `2024-05-01T12:00:00.000Z`.
pub fn rfc3339(ms: TimestampMs) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DaemonId, Labels, SeriesKey, Severity, Source};
    use std::collections::VecDeque;
    use std::net::{SocketAddr, TcpListener, TcpStream};
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
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
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
        let json: serde_json::Value = serde_json::from_slice(
            &alertmanager_json(std::slice::from_ref(&resolved), None).unwrap(),
        )
        .unwrap();
        assert_eq!(json[0]["endsAt"], rfc3339(resolved.at_ms));
        assert!(json[0].get("generatorURL").is_none());
        assert_eq!(label_name("9lives"), "_9lives");
    }

    /// Ensures the jittered pause stays within half and all of the base.
    #[test]
    fn jitter_stays_within_half_and_all_of_the_base() {
        let base = Duration::from_millis(100);
        for _ in 0..1000 {
            let d = jittered(base);
            assert!(d >= base / 2 && d <= base, "{d:?}");
        }
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
}
