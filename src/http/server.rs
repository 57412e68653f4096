//! The server itself: [`serve`] builds the actix-web app (routes, body and query limits,
//! the `Host` middleware), binds it with the connection limit and idle timeouts on a
//! thread of its own, and [`ApiServer`] stops it. `State` is what every handler reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix_web::{web, App, HttpServer};

use super::config::{ApiConfig, ApiError, OtlpMapping, ReloadHook, IDLE_TIMEOUT};
use super::dashboard::dashboard;
use super::handlers::*;
#[cfg(feature = "otlp")]
use super::otlp;
use super::prometheus::metrics;
use super::query::query;
use super::{budget, guard, push, Problem, QueryBudget};
use crate::Perfvisor;

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

pub(super) struct State {
    pub(super) pv: Perfvisor,
    pub(super) tokens: guard::Tokens,
    pub(super) hosts: guard::AllowedHosts,
    /// Reads need no token (loopback, and no token or anonymous loopback reads allowed).
    pub(super) open_reads: bool,
    pub(super) budget: QueryBudget,
    /// Turns for queries: [`QueryBudget::concurrent`] permits.
    pub(super) queries: tokio::sync::Semaphore,
    /// Where queries run.
    pub(super) query_thread: budget::QueryThread,
    pub(super) manager: Option<Arc<crate::manager::Manager>>,
    pub(super) reload: Option<ReloadHook>,
    /// Series created by `POST /api/v1/metrics`, up to [`MAX_PUSHED_SERIES`].
    pub(super) pushed: std::sync::Mutex<push::PushedSeries>,
    /// Which resource attributes name an OTLP sender.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(super) otlp_mapping: OtlpMapping,
    /// The OTLP intake's label sets and previous totals.
    #[cfg(feature = "otlp")]
    pub(super) otlp: std::sync::Mutex<otlp::Intake>,
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
