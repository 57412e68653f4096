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
//!
//! Where everything is:
//!
//! | module | what it owns |
//! |---|---|
//! | `mod.rs` | this map, [`ApiConfig`] and its defaults, [`ApiError`] |
//! | `server` | [`serve`]: the actix-web app, its routes, connection and body limits, [`ApiServer`] |
//! | `problem` | the JSON error answer (`Problem`) and how engine errors map to status codes |
//! | `guard` | the `Host` check, token scopes (admin, push, read), the descriptor-bound connection limit |
//! | `dashboard` | `GET /`: the self-contained dashboard page (`src/dashboard/index.html`) |
//! | `handlers` | the JSON handlers: status, daemons, reports, alerts, rules, silences, push, managed, reload; [`check_body`] |
//! | `query` | `GET /api/v1/query`: parameters, [`query_from_string`] |
//! | `budget` | what a query may cost, and the thread queries run on |
//! | `push` | what `POST /api/v1/metrics` may name and how many series it may create |
//! | `prometheus` | `GET /metrics`: the Prometheus text exposition ([`exposition`], [`prometheus_name`]) |
//! | `otlp` | `POST /v1/metrics`: OTLP/HTTP intake (feature `otlp`) |
//!
//! Metric and label names are made Prometheus-valid by [`perfvisor_actors::names`], the one
//! sanitiser the exposition, remote write and the Alertmanager payload share.

mod budget;
mod config;
mod dashboard;
mod guard;
mod handlers;
#[cfg(feature = "otlp")]
pub mod otlp;
mod problem;
mod prometheus;
mod push;
mod query;
mod server;

pub use budget::{
    QueryBudget, DEFAULT_CONCURRENT_QUERIES, DEFAULT_MAX_BYTES, DEFAULT_MAX_POINTS_PER_SERIES,
    DEFAULT_MAX_SERIES, DEFAULT_MAX_TIME, DEFAULT_MAX_VALUES,
};
pub use config::{
    ApiConfig, ApiError, OtlpMapping, ReloadHook, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_OTLP_PID_ATTRIBUTE, DEFAULT_OTLP_SERVICE_ATTRIBUTE, IDLE_TIMEOUT,
};
pub use handlers::{check_body, managed_state_name, Body, DaemonLine};
pub use prometheus::{
    exposition, prometheus_name, ANOMALIES_LAST_HOUR, MANAGED_STATE, MANAGED_STATES,
};
pub use push::{
    MAX_PUSHED_NAME_BYTES, MAX_PUSHED_SERIES, MAX_PUSHED_SERIES_BYTES, RESERVED_PREFIXES,
};
pub use query::query_from_string;
pub use server::{serve, ApiServer, MAX_BODY_BYTES};

pub(crate) use perfvisor_actors::names::label_name;
use problem::{Answer, Problem};
use server::State;
