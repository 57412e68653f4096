//! The HTTP API (actix-web) over a running [`Perfvisor`]: JSON for status, daemons, reports,
//! alerts, silences, queries, registering externally managed daemons and pushing application
//! metrics, plus `GET /metrics` in the Prometheus text format.
//!
//! Bound to 127.0.0.1 by default. Who may call what, and the `Host` check every request
//! goes through, are in `guard` (admin, push and read tokens); what a query may cost in
//! `budget`; what pushed metrics may name in `push`. Bodies are limited to
//! [`MAX_BODY_BYTES`]. Errors are JSON `{"error": "...", "accepted": "..."}` with 400 (bad
//! input, malformed JSON, wrong types, a query over its budget), 401 (missing or wrong
//! token), 403 (no token with the needed scope, or a token whose scope is too small), 404
//! (unknown daemon or silence), 413 (a query that ran over its budget), 421 (a `Host` this
//! server does not answer to) or 503 (perfvisor is shutting down) — never a 500 for bad
//! input.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/api/v1/status` | perfvisor's own status |
//! | GET | `/api/v1/daemons` | watched daemons with pid, probes, restarts, score, level, managed state, process restarts, uptime |
//! | POST | `/api/v1/daemons` | register an externally managed daemon `{"id", "pid", "project"?, "labels"?}` |
//! | DELETE | `/api/v1/daemons/{id}` | unregister it |
//! | GET | `/api/v1/daemons/{id}/report` | its full report |
//! | GET | `/api/v1/host` | the host's report |
//! | GET | `/api/v1/alerts` | firing alerts |
//! | GET/POST | `/api/v1/silences` | list / add a silence |
//! | DELETE | `/api/v1/silences/{id}` | remove one |
//! | POST | `/api/v1/metrics` | push app metrics `[{"metric", "value", "daemon"?, "kind"?: "gauge"/"counter"/"observation"}]` |
//! | GET | `/api/v1/query?metric=&daemon=&source=&from=&to=&step=&agg=` | stored history (`source=host` for the host's series) |
//! | GET | `/api/v1/managed` | managed daemons (standalone binary) |
//! | POST | `/api/v1/managed/{name}/{start,stop,restart}` | act on one |
//! | POST | `/api/v1/reload` | reload the config file (only what changed restarts) |
//! | GET | `/` | the dashboard (one self-contained page) |
//! | GET | `/api/v1/rules` | every alert rule (built-in, config, host; enabled or not) in words |
//! | GET | `/metrics` | Prometheus exposition of every series held, and perfvisor's own health |
//! | POST | `/v1/metrics` | OTLP/HTTP metrics (protobuf or JSON), feature `otlp`: see `otlp` |

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde::{Deserialize, Serialize};

use crate::{Aggregation, DaemonId, DaemonSpec, MetricKind, Perfvisor, Query, SeriesSelector};

mod budget;
mod guard;
#[cfg(feature = "otlp")]
pub mod otlp;
mod push;

use push::{check_pushed, Pushed};
pub use push::{
    MAX_PUSHED_NAME_BYTES, MAX_PUSHED_SERIES, MAX_PUSHED_SERIES_BYTES, RESERVED_PREFIXES,
};

use guard::{authorize, Scope};

pub use budget::{
    QueryBudget, DEFAULT_CONCURRENT_QUERIES, DEFAULT_MAX_BYTES, DEFAULT_MAX_POINTS_PER_SERIES,
    DEFAULT_MAX_SERIES, DEFAULT_MAX_TIME, DEFAULT_MAX_VALUES,
};
use perfvisor_actors::types::Source;

/// Reloads the configuration; answers what changed, or why it was refused.
pub type ReloadHook = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Where the API listens, the tokens it accepts, its limits, and what the standalone binary
/// adds.
#[derive(Clone)]
pub struct ApiConfig {
    /// Address to bind (default 127.0.0.1:9465).
    pub listen: SocketAddr,
    /// The admin token (config `token`): every call, including stop, restart and reload.
    pub token: Option<String>,
    /// A token for reads only (config `[api] read_token`).
    pub read_token: Option<String>,
    /// A token for reads and `POST /api/v1/metrics` only (config `[api] push_token`).
    pub push_token: Option<String>,
    /// Reads without a token on a loopback address even when tokens are set (config
    /// `[api] anonymous_loopback_reads`, default false): for a local scraper without
    /// credentials.
    pub anonymous_loopback_reads: bool,
    /// Host names accepted in the `Host` header besides `localhost` and IP addresses
    /// (config `[api] allowed_hosts`); any other name gets 421. Default none.
    pub allowed_hosts: Vec<String>,
    /// What one `GET /api/v1/query` may cost (default [`QueryBudget::default`]).
    pub query_budget: QueryBudget,
    /// Most connections held open at once (config `[api] max_connections`, default
    /// [`DEFAULT_MAX_CONNECTIONS`]); lowered to fit the process's descriptor limit.
    pub max_connections: usize,
    /// The daemon manager of the standalone binary (`/api/v1/managed…`), if any.
    pub manager: Option<Arc<crate::manager::Manager>>,
    /// Configuration reload (`POST /api/v1/reload`), if any.
    pub reload: Option<ReloadHook>,
    /// Which resource attributes of an OTLP export name the sending daemon (config
    /// `[api] otlp_service_attribute`, `otlp_pid_attribute`).
    pub otlp: OtlpMapping,
}

/// Which resource attributes of an OTLP export (`POST /v1/metrics`) name the daemon that
/// sent it: the watched daemon whose pid is in `pid_attribute`, else the daemon named by
/// `service_attribute`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpMapping {
    /// Resource attribute holding the daemon's id (default [`DEFAULT_OTLP_SERVICE_ATTRIBUTE`]).
    pub service_attribute: String,
    /// Resource attribute holding the sender's pid (default [`DEFAULT_OTLP_PID_ATTRIBUTE`]).
    pub pid_attribute: String,
}

/// Default [`OtlpMapping::service_attribute`]: OpenTelemetry's `service.name`.
pub const DEFAULT_OTLP_SERVICE_ATTRIBUTE: &str = "service.name";
/// Default [`OtlpMapping::pid_attribute`]: OpenTelemetry's `process.pid`.
pub const DEFAULT_OTLP_PID_ATTRIBUTE: &str = "process.pid";

impl Default for OtlpMapping {
    fn default() -> Self {
        OtlpMapping {
            service_attribute: DEFAULT_OTLP_SERVICE_ATTRIBUTE.into(),
            pid_attribute: DEFAULT_OTLP_PID_ATTRIBUTE.into(),
        }
    }
}

/// Default [`ApiConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// How long a connection may stay open between requests, and how long a client has to send
/// a request's headers once connected: idle connections do not hold descriptors for long.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl ApiConfig {
    /// Listen on `listen` with `token` (the admin token), every other setting at its
    /// default.
    pub fn new(listen: SocketAddr, token: Option<String>) -> Self {
        ApiConfig {
            listen,
            token,
            read_token: None,
            push_token: None,
            anonymous_loopback_reads: false,
            allowed_hosts: Vec::new(),
            query_budget: QueryBudget::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            manager: None,
            reload: None,
            otlp: OtlpMapping::default(),
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("token", &redacted(&self.token))
            .field("read_token", &redacted(&self.read_token))
            .field("push_token", &redacted(&self.push_token))
            .field("anonymous_loopback_reads", &self.anonymous_loopback_reads)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("query_budget", &self.query_budget)
            .field("max_connections", &self.max_connections)
            .field("manager", &self.manager.is_some())
            .field("reload", &self.reload.is_some())
            .field("otlp", &self.otlp)
            .finish()
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bound off loopback without a token.
    #[error(
        "listening on {0} (not a loopback address) needs a token; set one, or listen on 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server thread could not start.
    #[error("cannot start the HTTP thread: {0}")]
    Thread(std::io::Error),
}

/// A running API server; stops when [`ApiServer::stop`] is called.
pub struct ApiServer {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ApiServer {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes the calls in flight, and joins the server thread.
    pub fn stop(mut self) {
        let handle = self.handle.clone();
        let _ = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(true));
        })
        .join();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    pv: Perfvisor,
    tokens: guard::Tokens,
    hosts: guard::AllowedHosts,
    /// Reads need no token (loopback, and no token or anonymous loopback reads allowed).
    open_reads: bool,
    budget: QueryBudget,
    /// Turns for queries: [`QueryBudget::concurrent`] permits.
    queries: tokio::sync::Semaphore,
    /// Where queries run.
    query_thread: budget::QueryThread,
    manager: Option<Arc<crate::manager::Manager>>,
    reload: Option<ReloadHook>,
    /// Series created by `POST /api/v1/metrics`, up to [`MAX_PUSHED_SERIES`].
    pushed: std::sync::Mutex<push::PushedSeries>,
    /// Which resource attributes name an OTLP sender.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    otlp_mapping: OtlpMapping,
    /// The OTLP intake's label sets and previous totals.
    #[cfg(feature = "otlp")]
    otlp: std::sync::Mutex<otlp::Intake>,
}

/// Largest JSON body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The pushed series already stored, so the cap holds across restarts. An unreadable
/// database counts as none (the writer reports it).
fn stored_pushed(pv: &Perfvisor) -> push::PushedSeries {
    let keys = pv
        .reader()
        .ok()
        .and_then(|r| r.series().ok())
        .unwrap_or_default();
    push::PushedSeries::from_stored(
        keys.into_iter()
            .map(|(k, _)| (k.source, k.metric.as_str().to_string())),
    )
}

/// Starts the API on a thread of its own.
pub fn serve(pv: Perfvisor, config: ApiConfig) -> Result<ApiServer, ApiError> {
    let loopback = config.listen.ip().is_loopback();
    let tokens = guard::Tokens::new(config.token, config.read_token, config.push_token);
    if !loopback && !tokens.any() {
        return Err(ApiError::TokenRequired(config.listen));
    }
    let state_tokens_any = tokens.any();
    let max_connections = guard::connections_within_descriptors(config.max_connections);
    let pushed = std::sync::Mutex::new(stored_pushed(&pv));
    let state = web::Data::new(State {
        pv,
        tokens,
        hosts: guard::AllowedHosts::new(&config.allowed_hosts),
        open_reads: loopback && (!state_tokens_any || config.anonymous_loopback_reads),
        budget: config.query_budget,
        queries: tokio::sync::Semaphore::new(config.query_budget.concurrent.max(1)),
        query_thread: budget::QueryThread::start().map_err(ApiError::Thread)?,
        manager: config.manager,
        reload: config.reload,
        pushed,
        otlp_mapping: config.otlp,
        #[cfg(feature = "otlp")]
        otlp: std::sync::Mutex::new(otlp::Intake::default()),
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let listen = config.listen;
    let thread = std::thread::Builder::new()
        .name("perfvisor-http".into())
        .spawn(move || {
            let sys = actix_web::rt::System::new();
            sys.block_on(async move {
                let server = HttpServer::new(move || {
                    let app = App::new()
                        .wrap(actix_web::middleware::from_fn(guard::check_host))
                        .app_data(state.clone())
                        .app_data(
                            web::JsonConfig::default()
                                .limit(MAX_BODY_BYTES)
                                .error_handler(|err, _| {
                                    Problem::bad(
                                        format!("malformed JSON body: {err}"),
                                        "a JSON body as documented for this endpoint",
                                    )
                                    .into()
                                }),
                        )
                        .app_data(web::QueryConfig::default().error_handler(|err, _| {
                            Problem::bad(
                                format!("bad query string: {err}"),
                                "the documented parameters",
                            )
                            .into()
                        }))
                        .app_data(web::PathConfig::default().error_handler(|err, _| {
                            Problem::bad(format!("bad path: {err}"), "the documented path").into()
                        }))
                        .route("/", web::get().to(dashboard))
                        .route("/metrics", web::get().to(metrics))
                        .route("/api/v1/status", web::get().to(status))
                        .route("/api/v1/daemons", web::get().to(daemons))
                        .route("/api/v1/daemons", web::post().to(register))
                        .route("/api/v1/daemons/{id}", web::delete().to(unregister))
                        .route("/api/v1/daemons/{id}/report", web::get().to(report))
                        .route("/api/v1/host", web::get().to(host))
                        .route("/api/v1/alerts", web::get().to(alerts))
                        .route("/api/v1/rules", web::get().to(rules))
                        .route("/api/v1/silences", web::get().to(silences))
                        .route("/api/v1/silences", web::post().to(add_silence))
                        .route("/api/v1/silences/{id}", web::delete().to(remove_silence))
                        .route("/api/v1/metrics", web::post().to(push_metrics))
                        .route("/api/v1/query", web::get().to(query))
                        .route("/api/v1/managed", web::get().to(managed))
                        .route(
                            "/api/v1/managed/{name}/{action}",
                            web::post().to(managed_action),
                        )
                        .route("/api/v1/reload", web::post().to(reload));
                    #[cfg(feature = "otlp")]
                    let app = app.service(
                        web::resource("/v1/metrics")
                            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                            .route(web::post().to(otlp::export)),
                    );
                    app.default_service(web::to(not_found))
                })
                .workers(1)
                .max_connections(max_connections)
                .keep_alive(IDLE_TIMEOUT)
                .client_request_timeout(IDLE_TIMEOUT)
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .disable_signals();
                let bound = match server.bind(listen) {
                    Ok(b) => b,
                    Err(source) => {
                        let _ = tx.send(Err(ApiError::Bind {
                            addr: listen,
                            source,
                        }));
                        return;
                    }
                };
                let addr = bound.addrs().first().copied().unwrap_or(listen);
                let running = bound.run();
                let _ = tx.send(Ok((addr, running.handle())));
                let _ = running.await;
            });
        })
        .map_err(ApiError::Thread)?;
    match rx.recv() {
        Ok(Ok((addr, handle))) => Ok(ApiServer {
            addr,
            handle,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(ApiError::Thread(std::io::Error::other(
                "the HTTP thread ended early",
            )))
        }
    }
}

/// An error answer.
#[derive(Debug, Serialize)]
struct Problem {
    #[serde(skip)]
    status: StatusCode,
    error: String,
    accepted: String,
}

impl Problem {
    fn new(status: StatusCode, error: impl Into<String>, accepted: impl Into<String>) -> Self {
        Problem {
            status,
            error: error.into(),
            accepted: accepted.into(),
        }
    }
    fn bad(error: impl Into<String>, accepted: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, accepted)
    }
    fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error, "an existing resource")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(self)
    }
}

impl From<crate::Error> for Problem {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::NotRunning => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                "a running perfvisor",
            ),
            crate::Error::Silence(crate::SilenceError::Unavailable { .. }) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                "the same call again once the alert dispatcher has restarted",
            ),
            crate::Error::InvalidDaemon { .. } | crate::Error::Silence(_) => {
                Problem::bad(e.to_string(), "see the message")
            }
            crate::Error::Storage(ref s)
                if matches!(s, crate::StorageError::InvalidQuery { .. }) =>
            {
                Problem::bad(e.to_string(), "see the message")
            }
            other => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                other.to_string(),
                "a working perfvisor",
            ),
        }
    }
}

type Answer = Result<HttpResponse, Problem>;

/// The dashboard: one self-contained page (no CDN) that polls the JSON API.
const DASHBOARD: &str = include_str!("dashboard/index.html");

/// The page holds no data (it asks the API, with the token when one is needed), so it is
/// served to anyone who can reach the port.
async fn dashboard() -> Answer {
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"))
        .body(DASHBOARD))
}

async fn not_found(req: HttpRequest) -> Answer {
    Err(Problem::not_found(format!(
        "no endpoint {} {}",
        req.method(),
        req.path()
    )))
}

async fn status(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.status().await?))
}

/// One line of the daemon list.
#[derive(Debug, Serialize, Deserialize)]
pub struct DaemonLine {
    /// Its id.
    pub daemon: DaemonId,
    /// Its pid.
    pub pid: u32,
    /// Probes so far.
    pub probes: u64,
    /// Restarts of perfvisor's watcher actor for it (a panic in perfvisor, not the
    /// daemon's process restarting: that is [`DaemonLine::process_restarts`]).
    pub restarts: u64,
    /// Score, when judged.
    pub score: Option<f64>,
    /// Level, when judged.
    pub level: Option<crate::Level>,
    /// Latest CPU (fraction of one core).
    pub cpu: Option<f64>,
    /// Latest resident memory, bytes.
    pub rss_bytes: Option<f64>,
    /// Firing alerts about it.
    pub firing_alerts: usize,
    /// Its life-cycle state when this perfvisor manages it (`running`, `starting`,
    /// `backoff`, `stopping`, `stopped`, `exited`, `fatal`, `waiting`); `null` for a daemon
    /// perfvisor only watches.
    #[serde(default)]
    pub managed_state: Option<String>,
    /// Restarts of the daemon's process performed by this perfvisor (automatic, slow retries
    /// and manual): the manager's count, the same number as `restarts` in
    /// `GET /api/v1/managed`. `null` for a daemon perfvisor does not manage.
    #[serde(default)]
    pub process_restarts: Option<u32>,
    /// Seconds its current process has been running: from the manager's start time when
    /// managed, else from the latest `process.uptime_seconds` probe.
    #[serde(default)]
    pub uptime_seconds: Option<f64>,
}

/// The name of a managed daemon's state, as `managed_state` in `GET /api/v1/daemons` and
/// `state.state` in `GET /api/v1/managed` give it.
pub fn managed_state_name(state: &crate::manager::DaemonState) -> &'static str {
    use crate::manager::DaemonState as S;
    match state {
        S::Waiting { .. } => "waiting",
        S::Starting => "starting",
        S::Running => "running",
        S::Backoff { .. } => "backoff",
        S::Stopping => "stopping",
        S::Stopped => "stopped",
        S::Exited { .. } => "exited",
        S::Fatal { .. } => "fatal",
    }
}

/// Seconds from `started` to `now` while the managed process runs (`None` without one).
fn managed_uptime(
    status: &crate::manager::DaemonStatus,
    now: std::time::SystemTime,
) -> Option<f64> {
    use crate::manager::DaemonState as S;
    if !matches!(status.state, S::Starting | S::Running | S::Stopping) || status.pid.is_none() {
        return None;
    }
    let started = status.started_at?;
    Some(
        now.duration_since(started)
            .unwrap_or_default()
            .as_secs_f64(),
    )
}

async fn daemons(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    // One judgement of all daemons (the host report), not one report per daemon: the list
    // stays O(daemons) however many there are.
    let status = s.pv.status().await?;
    let firing = s.pv.firing_alerts().await?;
    let scores =
        s.pv.host_report()
            .await?
            .map(|h| h.daemon_scores)
            .unwrap_or_default();
    let latest = s.pv.latest().await?;
    let last = |daemon: &DaemonId, metric: &str| {
        latest
            .iter()
            .find(|x| {
                x.series.metric.as_str() == metric
                    && matches!(&x.series.source, Source::Daemon(d) if d == daemon)
            })
            .map(|x| x.value)
    };
    let managed = s.manager.as_ref().map(|m| m.status()).unwrap_or_default();
    let now = std::time::SystemTime::now();
    let mut out = Vec::new();
    for w in status.watchers {
        let score = scores.get(&w.daemon).copied();
        let m = managed.iter().find(|m| m.name == w.daemon.as_str());
        out.push(DaemonLine {
            firing_alerts: firing
                .iter()
                .filter(|a| a.daemon.as_ref() == Some(&w.daemon))
                .count(),
            score,
            level: score.map(crate::Level::of),
            cpu: last(&w.daemon, crate::metric_names::PROCESS_CPU_UTILIZATION),
            rss_bytes: last(&w.daemon, crate::metric_names::PROCESS_MEMORY_RSS),
            managed_state: m.map(|m| managed_state_name(&m.state).to_string()),
            process_restarts: m.map(|m| m.restarts),
            uptime_seconds: match m {
                Some(m) => managed_uptime(m, now),
                None => last(&w.daemon, crate::metric_names::PROCESS_UPTIME),
            },
            daemon: w.daemon,
            pid: w.pid,
            probes: w.probes,
            restarts: w.restarts,
        });
    }
    Ok(HttpResponse::Ok().json(out))
}

/// Body of `POST /api/v1/daemons`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    id: String,
    pid: u32,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

impl Register {
    /// The spec the body asks for ([`Perfvisor::daemon_started`] checks it).
    fn spec(self) -> DaemonSpec {
        let mut spec = DaemonSpec::new(self.id.as_str(), self.pid);
        spec.project = self.project;
        spec.labels = self.labels;
        spec
    }
}

async fn register(req: HttpRequest, s: web::Data<State>, body: web::Json<Register>) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let spec = body.into_inner().spec();
    let id = spec.id.to_string();
    s.pv.daemon_started(spec).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({"registered": id})))
}

async fn unregister(req: HttpRequest, s: web::Data<State>, id: web::Path<String>) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let id = id.into_inner();
    let known =
        s.pv.status()
            .await?
            .watchers
            .iter()
            .any(|w| w.daemon.as_str() == id);
    if !known {
        return Err(Problem::not_found(format!("no daemon {id:?} is watched")));
    }
    s.pv.daemon_stopped(id.as_str()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"unregistered": id})))
}

async fn report(req: HttpRequest, s: web::Data<State>, id: web::Path<String>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    let id = id.into_inner();
    match s.pv.report(id.as_str()).await? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(Problem::not_found(format!(
            "nothing is known about daemon {id:?}"
        ))),
    }
}

async fn host(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.host_report().await?))
}

async fn alerts(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.firing_alerts().await?))
}

async fn rules(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.rules().await?))
}

async fn silences(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    Ok(HttpResponse::Ok().json(s.pv.silences().await?))
}

async fn add_silence(
    req: HttpRequest,
    s: web::Data<State>,
    body: web::Json<crate::Silence>,
) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    s.pv.add_silence(body.into_inner()).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({"ok": true})))
}

async fn remove_silence(req: HttpRequest, s: web::Data<State>, id: web::Path<String>) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let id = id.into_inner();
    if s.pv.remove_silence(id.as_str()).await? {
        Ok(HttpResponse::Ok().json(serde_json::json!({"removed": id})))
    } else {
        Err(Problem::not_found(format!("no silence {id:?}")))
    }
}

async fn push_metrics(
    req: HttpRequest,
    s: web::Data<State>,
    body: web::Json<Vec<Pushed>>,
) -> Answer {
    authorize(&req, &s, Scope::Push)?;
    let samples = body.into_inner();
    check_pushed(&samples)?;
    s.pushed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .admit(&samples)?;
    let base = s.pv.recorder();
    let mut accepted = 0;
    for p in samples {
        let rec = match &p.daemon {
            Some(d) => base.for_daemon(d.as_str()),
            None => base.clone(),
        };
        let ok = match p.kind.as_deref() {
            Some("counter") => rec.increment(p.metric, p.value),
            Some("observation") => rec.observe(p.metric, p.value),
            _ => rec.record(p.metric, p.value),
        };
        accepted += usize::from(ok);
    }
    Ok(HttpResponse::Accepted().json(serde_json::json!({"accepted": accepted})))
}

/// Parameters of `GET /api/v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryParams {
    metric: Option<String>,
    daemon: Option<String>,
    /// `host`, `perfvisor` or `daemon:<id>` (as [`Source::as_text`] writes it).
    source: Option<String>,
    from: i64,
    to: i64,
    step: Option<i64>,
    agg: Option<String>,
}

/// Runs the query within the budget ([`QueryBudget`]) on the query thread, never on the
/// thread that serves requests, and at most [`QueryBudget::concurrent`] at once: `/status`
/// and `/metrics` answer while a query reads.
async fn query(req: HttpRequest, s: web::Data<State>, q: web::Query<QueryParams>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    let query = build_query(q.into_inner())?;
    query.validate().map_err(budget::storage_problem)?;
    let budget = s.budget;
    budget.check_shape(&query)?;
    let _turn = s.queries.acquire().await.map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "perfvisor is shutting down",
            "a running perfvisor",
        )
    })?;
    let pv = s.pv.clone();
    let body = s
        .query_thread
        .run(move || {
            let reader = pv.reader()?;
            budget.run(&reader, &query)
        })
        .await??;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// The query the parameters ask for (the reader validates it: [`Query::validate`]).
fn build_query(q: QueryParams) -> Result<Query, Problem> {
    let mut selector = SeriesSelector::all();
    if let Some(m) = q.metric {
        selector = selector.metric(m);
    }
    match (q.daemon, q.source) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad(
                "both daemon and source given",
                "daemon=<id> or source=host|perfvisor|daemon:<id>, not both",
            ))
        }
        (Some(d), None) => selector = selector.source(Source::Daemon(DaemonId::new(d))),
        (None, Some(text)) => {
            let source = Source::from_text(&text).ok_or_else(|| {
                Problem::bad(format!("source {text:?}"), "host, perfvisor or daemon:<id>")
            })?;
            selector = selector.source(source);
        }
        (None, None) => {}
    }
    let mut query = Query::new(selector, q.from, q.to);
    if let Some(aggs) = q.agg {
        for a in aggs.split(',') {
            query = query.aggregate(
                Aggregation::parse(a)
                    .map_err(|e| Problem::bad(e.to_string(), "see the message"))?,
            );
        }
    }
    if let Some(step) = q.step {
        query = query.step_ms(step);
    }
    Ok(query)
}

/// A JSON body [`check_body`] reads.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `POST /api/v1/daemons`.
    Register,
    /// `POST /api/v1/silences`.
    Silence,
    /// `POST /api/v1/metrics`.
    Metrics,
}

/// Reads a body as its handler does, without a running perfvisor: the size limit and
/// `serde_json` (what `web::Json` runs), then the handler's and the engine's checks (the
/// daemon spec's, [`crate::Silence::validate`], the pushed samples' checks and series
/// limit, from no series yet). `Ok` when the handler would act
/// on it; the error is the message the client would get. For the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn check_body(kind: Body, bytes: &[u8]) -> Result<(), String> {
    fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON body: {e}"))
    }
    if bytes.len() > MAX_BODY_BYTES {
        return Err(format!("body over {MAX_BODY_BYTES} bytes"));
    }
    let checked = match kind {
        Body::Register => {
            crate::handle::check_spec(&json::<Register>(bytes)?.spec()).map_err(Problem::from)
        }
        Body::Silence => json::<crate::Silence>(bytes)?
            .validate()
            .map_err(|e| Problem::from(crate::Error::Silence(e))),
        Body::Metrics => {
            let samples = json::<Vec<Pushed>>(bytes)?;
            check_pushed(&samples).and_then(|()| push::PushedSeries::default().admit(&samples))
        }
    };
    checked.map_err(|p| p.error)
}

/// Reads a `GET /api/v1/query` query string as its handler does (what `web::Query` runs,
/// then the handler's own parsing); the storage reader then runs [`Query::validate`]. For
/// the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn query_from_string(query_string: &str) -> Result<Query, String> {
    let params = web::Query::<QueryParams>::from_query(query_string)
        .map_err(|e| format!("bad query string: {e}"))?;
    build_query(params.into_inner()).map_err(|p| p.error)
}

async fn managed(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    let m = s.manager.as_ref().ok_or_else(no_manager)?;
    Ok(HttpResponse::Ok().json(m.status()))
}

fn no_manager() -> Problem {
    Problem::not_found("this perfvisor manages no daemons (embedded, or started without a config)")
}

async fn managed_action(
    req: HttpRequest,
    s: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let (name, action) = path.into_inner();
    let m = s.manager.clone().ok_or_else(no_manager)?;
    if !m.status().iter().any(|d| d.name == name) {
        return Err(Problem::not_found(format!("no managed daemon {name:?}")));
    }
    let run = {
        let name = name.clone();
        move || match action.as_str() {
            "start" => m.start(&name).map_err(|e| e.to_string()),
            "stop" => m.stop(&name).map_err(|e| e.to_string()),
            "restart" => m.restart(&name).map_err(|e| e.to_string()),
            other => Err(format!("unknown action {other:?}")),
        }
    };
    // Stopping waits for the process group: off the server's thread.
    match web::block(run).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(serde_json::json!({"daemon": name, "ok": true}))),
        Ok(Err(e)) if e.starts_with("unknown action") => {
            Err(Problem::bad(e, "start, stop or restart"))
        }
        Ok(Err(e)) => Err(Problem::new(
            StatusCode::CONFLICT,
            e,
            "a daemon in a state that allows it",
        )),
        Err(e) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            "a working perfvisor",
        )),
    }
}

async fn reload(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Admin)?;
    let hook = s
        .reload
        .clone()
        .ok_or_else(|| Problem::not_found("this perfvisor was not started from a config file"))?;
    match web::block(move || hook()).await {
        Ok(Ok(summary)) => Ok(HttpResponse::Ok().json(serde_json::json!({"reloaded": summary}))),
        Ok(Err(problems)) => Err(Problem::bad(
            problems,
            "a valid config file (see perfvisor check-config)",
        )),
        Err(e) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            "a working perfvisor",
        )),
    }
}

/// The per-source anomaly rate in `/metrics` (`perfvisor_anomalies_last_hour`).
pub const ANOMALIES_LAST_HOUR: &str = "perfvisor.anomalies_last_hour";

/// A managed daemon's life-cycle state in `/metrics`
/// (`perfvisor_judgement_managed_state{daemon, state}`): one series per state of
/// [`MANAGED_STATES`], 1 for the current one, 0 for the others. Read from the manager when
/// `/metrics` is scraped (the engine does not know the manager), so it is not in history.
pub const MANAGED_STATE: &str = "perfvisor.judgement.managed_state";

/// Every managed state name ([`managed_state_name`]).
pub const MANAGED_STATES: [&str; 8] = [
    "waiting", "starting", "running", "backoff", "stopping", "stopped", "exited", "fatal",
];

/// A Prometheus metric name from a perfvisor one: dots and other characters to `_`,
/// counters end in `_total`, gauges do not end in `_count`.
pub fn prometheus_name(metric: &str, kind: MetricKind) -> String {
    let mut name = underscored(metric);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    // Prometheus keeps `_count` for histograms and summaries: a gauge of items drops it
    // (`process.thread.count` → `process_thread`), as `process_open_fds` does.
    if kind == MetricKind::Gauge {
        if let Some(stem) = name.strip_suffix("_count") {
            name = stem.to_string();
        }
    }
    if kind == MetricKind::Counter && !name.ends_with("_total") {
        name.push_str("_total");
    }
    name
}

/// `text` with every character outside `[A-Za-z0-9_]` replaced by `_`.
fn underscored(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) fn label_name(key: &str) -> String {
    let mut n = underscored(key);
    if n.starts_with(|c: char| c.is_ascii_digit()) || n.starts_with("__") {
        n.insert(0, 'l');
    }
    n
}

/// Renders samples in the Prometheus text exposition format (version 0.0.4).
pub fn exposition(samples: &[crate::Sample], own: &[(String, MetricKind, f64)]) -> String {
    let mut families: std::collections::BTreeMap<String, (MetricKind, Vec<String>)> =
        Default::default();
    for s in samples {
        if !s.value.is_finite() && !s.value.is_nan() {
            continue;
        }
        let name = prometheus_name(s.series.metric.as_str(), s.kind);
        let mut labels: Vec<String> = Vec::new();
        match &s.series.source {
            Source::Daemon(d) => labels.push(format!("daemon=\"{}\"", escape_label(d.as_str()))),
            other => labels.push(format!("source=\"{}\"", escape_label(&other.as_text()))),
        }
        for (k, v) in s.series.labels.iter() {
            let k = label_name(k);
            if k != "daemon" && k != "source" {
                labels.push(format!("{k}=\"{}\"", escape_label(v)));
            }
        }
        let value = if s.value.is_nan() {
            "NaN".to_string()
        } else {
            format!("{}", s.value)
        };
        let entry = families.entry(name.clone()).or_insert((s.kind, Vec::new()));
        entry
            .1
            .push(format!("{name}{{{}}} {value}", labels.join(",")));
    }
    for (name, kind, value) in own {
        let n = prometheus_name(name, *kind);
        families
            .entry(n.clone())
            .or_insert((*kind, Vec::new()))
            .1
            .push(format!("{n} {value}"));
    }
    let mut out = String::new();
    for (name, (kind, lines)) in families {
        let t = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} perfvisor series {name}.");
        let _ = writeln!(out, "# TYPE {name} {t}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

/// perfvisor's own process CPU seconds and resident bytes, from /proc/self.
fn own_process() -> Vec<(String, MetricKind, f64)> {
    let mut out = Vec::new();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        if let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) {
            if let (Ok(u), Ok(s)) = (u.parse::<f64>(), s.parse::<f64>()) {
                out.push((
                    "perfvisor.process.cpu.time_seconds".into(),
                    MetricKind::Counter,
                    (u + s) / tick,
                ));
            }
        }
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
        if let Some(Ok(rss)) = statm.split_whitespace().nth(1).map(str::parse::<f64>) {
            out.push((
                "perfvisor.process.memory.usage_bytes".into(),
                MetricKind::Gauge,
                rss * page,
            ));
        }
    }
    out
}

async fn metrics(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    let mut samples = s.pv.latest().await?;
    let status = s.pv.status().await?;
    // Anomaly candidates per source over the last hour: how restless each daemon and the
    // host are, without paging anyone. One series per source seen within the hour.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for (source, count) in s.pv.anomaly_rates().await? {
        samples.push(crate::Sample {
            series: crate::SeriesKey::new(source, ANOMALIES_LAST_HOUR, crate::Labels::empty()),
            kind: MetricKind::Gauge,
            ts_ms: now,
            value: count as f64,
        });
    }
    if let Some(m) = &s.manager {
        for d in m.status() {
            let current = managed_state_name(&d.state);
            for state in MANAGED_STATES {
                samples.push(crate::Sample {
                    series: crate::SeriesKey::new(
                        Source::Daemon(DaemonId::new(d.name.as_str())),
                        MANAGED_STATE,
                        crate::Labels::from_pairs([("state", state)]),
                    ),
                    kind: MetricKind::Gauge,
                    ts_ms: now,
                    value: f64::from(u8::from(state == current)),
                });
            }
        }
    }
    let mut own = own_process();
    own.push((
        "perfvisor.actor.restarts".into(),
        MetricKind::Counter,
        status.total_restarts() as f64,
    ));
    own.push((
        "perfvisor.recorder.dropped_samples".into(),
        MetricKind::Counter,
        status.recorder.dropped as f64,
    ));
    own.push((
        "perfvisor.recorder.queue.count".into(),
        MetricKind::Gauge,
        status.recorder.backlog as f64,
    ));
    own.push((
        "perfvisor.watchers.count".into(),
        MetricKind::Gauge,
        status.watchers.len() as f64,
    ));
    own.push(("perfvisor.up".into(), MetricKind::Gauge, 1.0));
    // Series perfvisor already reports about itself are not repeated.
    // Only perfvisor's own source counts: a series of another source with the same name
    // never replaces these.
    own.retain(|(n, _, _)| {
        !samples
            .iter()
            .any(|s| s.series.source == Source::Perfvisor && s.series.metric.as_str() == n.as_str())
    });
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(exposition(&samples, &own)))
}

#[cfg(test)]
mod tests {
    use super::guard::constant_time_eq;
    use super::*;
    use crate::{Labels, SeriesKey};

    /// The token comparison: equal only for identical bytes; a difference at the first or
    /// the last byte, or a prefix, is refused alike.
    #[test]
    fn token_comparison_is_exact() {
        let token = b"s3cret-token-0123456789";
        assert!(constant_time_eq(token, token));
        let mut first = *token;
        first[0] ^= 1;
        let mut last = *token;
        last[token.len() - 1] ^= 0x80;
        assert!(!constant_time_eq(&first, token));
        assert!(!constant_time_eq(&last, token));
        assert!(!constant_time_eq(&token[..5], token));
        assert!(!constant_time_eq(b"", token));
        assert!(constant_time_eq(b"", b""));
    }

    /// `check_body` and `query_from_string` (the fuzz targets' entries) accept and refuse
    /// what the handlers do, with the handlers' messages.
    #[test]
    fn body_and_query_checks_are_the_handlers() {
        assert_eq!(
            check_body(Body::Register, br#"{"id": "x", "pid": 1}"#),
            Ok(())
        );
        let silence = br#"{"id":"s","matchers":[{"name":"daemon","value":"x"}],"starts_ms":0,"ends_ms":1,"created_by":"t","comment":""}"#;
        assert_eq!(check_body(Body::Silence, silence), Ok(()));
        assert_eq!(
            check_body(Body::Metrics, br#"[{"metric": "m", "value": 1}]"#),
            Ok(())
        );
        for (kind, body, message) in [
            (Body::Register, &br#"{"id": "x", "pid": 0}"#[..], "pid 0"),
            (Body::Register, br#"{"id": " ", "pid": 1}"#, "the id is empty"),
            (Body::Register, b"{not json", "malformed JSON body"),
            (Body::Silence, br#"{"id":"s","matchers":[],"starts_ms":0,"ends_ms":1,"created_by":"t","comment":""}"#, "no matcher"),
            (Body::Metrics, br#"[{"metric": "m", "value": 1, "kind": "histogram"}]"#, "kind"),
            (Body::Metrics, br#"[{"metric": " ", "value": 1}]"#, "empty metric name"),
        ] {
            let err = check_body(kind, body).unwrap_err();
            assert!(err.contains(message), "{kind:?}: {err}");
        }
        let q = query_from_string("metric=m&from=0&to=7200000&step=3600000&agg=avg,p99").unwrap();
        assert_eq!(
            q.aggregations,
            [Aggregation::Avg, Aggregation::Quantile(0.99)]
        );
        assert_eq!(
            (q.from_ms, q.to_ms, q.step_ms),
            (0, 7_200_000, Some(3_600_000))
        );
        assert!(query_from_string("from=x&to=2")
            .unwrap_err()
            .contains("bad query string"));
        assert!(query_from_string("from=0&to=2&agg=p200")
            .unwrap_err()
            .contains("p200"));
    }

    /// `source=` selects the host's (or perfvisor's, or a daemon's) series; an unknown
    /// source, or one given together with `daemon=`, is refused with what is accepted.
    #[test]
    fn query_source_parameter() {
        let q = query_from_string("source=host&from=0&to=10").unwrap();
        assert_eq!(q.selector.source, Some(Source::Host));
        let q = query_from_string("source=daemon:web&from=0&to=10&step=5&agg=avg,rate").unwrap();
        assert_eq!(
            q.selector.source,
            Some(Source::Daemon(DaemonId::new("web")))
        );
        assert_eq!(q.aggregations, [Aggregation::Avg, Aggregation::Rate]);
        let q = query_from_string("daemon=web&from=0&to=10").unwrap();
        assert_eq!(
            q.selector.source,
            Some(Source::Daemon(DaemonId::new("web")))
        );
        let err = query_from_string("source=disk&from=0&to=10").unwrap_err();
        assert!(err.contains("\"disk\""), "{err}");
        let err = query_from_string("source=host&daemon=web&from=0&to=10").unwrap_err();
        assert!(err.contains("both"), "{err}");
    }

    /// Each managed state has the lower-case name `GET /api/v1/managed` serialises it as.
    #[test]
    fn managed_state_names_match_the_managed_json() {
        use crate::manager::DaemonState as S;
        let now = std::time::SystemTime::now();
        for state in [
            S::Waiting {
                on: vec!["db".into()],
            },
            S::Starting,
            S::Running,
            S::Backoff { until: now },
            S::Stopping,
            S::Stopped,
            S::Exited {
                code: Some(1),
                signal: None,
            },
            S::Fatal {
                reason: "r".into(),
                retry_at: None,
            },
        ] {
            let json = serde_json::to_value(&state).unwrap();
            assert_eq!(json["state"], managed_state_name(&state), "{json}");
            assert!(MANAGED_STATES.contains(&managed_state_name(&state)));
        }
    }

    /// Names and labels are made valid for Prometheus; counters get `_total`.
    #[test]
    fn exposition_is_valid_text_format() {
        let s = |metric: &str, kind, value| crate::Sample {
            series: SeriesKey::new(
                Source::Daemon(DaemonId::new("idx\"1")),
                metric.to_string(),
                Labels::from_pairs([("project", "ws 1"), ("9x", "y")]),
            ),
            kind,
            ts_ms: 0,
            value,
        };
        let text = exposition(
            &[
                s("process.cpu.time_seconds", MetricKind::Counter, 12.5),
                s("process.memory.usage_bytes", MetricKind::Gauge, 1e6),
            ],
            &[("perfvisor.up".into(), MetricKind::Gauge, 1.0)],
        );
        assert!(
            text.contains("# TYPE process_cpu_time_seconds_total counter"),
            "{text}"
        );
        assert!(text.contains("process_memory_usage_bytes{daemon=\"idx\\\"1\",l9x=\"y\",project=\"ws 1\"} 1000000"), "{text}");
        assert!(text.contains("perfvisor_up 1"), "{text}");
    }
}
