//! What the API is started with: [`ApiConfig`] (address, tokens, limits, the standalone
//! binary's manager and reload hook, the OTLP mapping), its defaults, and [`ApiError`].

use std::net::SocketAddr;
use std::sync::Arc;

use super::QueryBudget;

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
