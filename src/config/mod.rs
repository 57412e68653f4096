//! The config file of the standalone `perfvisor` binary (TOML): supervisor settings,
//! managed and attached daemons, alert rules, sinks and silences.
//!
//! Reading is two stages. The TOML text is parsed into a tree that keeps every key's and
//! value's place; [`parse`] then walks it, checking every key (unknown keys are errors),
//! type, range and cross-reference (daemon names, `depends_on`, rule selectors), and
//! gathers every problem before failing, so one `check-config` run lists them all with
//! their lines. The result is a typed [`Config`] that maps onto the embedding API
//! ([`Config::apply`], [`Config::rules`], [`Config::sinks`], [`Config::silences`]) and
//! plain structs for the daemon manager ([`DaemonConfig`], [`AttachConfig`]). A reload
//! compares two configs with [`diff`] so only what changed is restarted.
//!
//! A [`Loaded`] config (from [`read`]) also carries warnings (a rule's metric that
//! perfvisor does not produce, with the closest name it does) and can be checked against
//! this machine ([`Loaded::check_machine`]: programs, directories, users, the database, the
//! API address) before anything is started.
//!
//! A rule's threshold is written in its metric's unit: on `*_ratio` metrics 0 to 1, on
//! `*_bytes` a size (`"16MiB"`, `"1.5 GiB"`) or a number of bytes, on `*_seconds` a
//! duration (`"250ms"`) or a number of seconds.
//!
//! Durations are written `"250ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"7d"` (units ms, s, m, h,
//! d, w); sizes `"512B"`, `"10MiB"`, `"2GiB"` (binary, powers of 1024) or `"1GB"`
//! (decimal, powers of 1000). [`default_config_text`] is the reference: every key with its
//! default.

mod compile;
mod diff;
mod error;
mod map;
mod metrics;
mod reader;
mod remote_write;
mod system;
use crate::units;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::manager::ManagedSpec;
use crate::{Retention, SinkConfig, ThresholdRule, TimestampMs};

pub use diff::{diff, ConfigDiff};
pub use error::{ConfigError, Problem};
pub use remote_write::{
    relabel_keeps, FullMatch, RelabelAction, RelabelRule, RemoteAuth, RemoteWriteConfig,
};
pub use units::{format_duration, format_size, parse_duration};

/// A validated config file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `[supervisor]`: perfvisor's own settings.
    pub supervisor: SupervisorConfig,
    /// `[api]`: who may call the HTTP API and how much it may hold.
    pub api: ApiSettings,
    /// `[judgement]`: how much evidence each finding needs (defaults:
    /// [`JudgeConfig`](perfvisor_actors::analyzer::JudgeConfig)).
    pub judgement: perfvisor_actors::analyzer::JudgeConfig,
    /// `[[daemon]]`: daemons perfvisor starts and keeps running, in file order.
    pub daemons: Vec<DaemonConfig>,
    /// `[[attach]]`: daemons started by someone else that perfvisor watches.
    pub attached: Vec<AttachConfig>,
    /// `[[rule]]`: alert rules, already in the embedding API's form.
    pub alert_rules: Vec<ThresholdRule>,
    /// `[[sink]]`: where alerts are delivered, by name.
    pub alert_sinks: Vec<(String, SinkConfig)>,
    /// `[[silence]]`: silences created at start-up.
    pub silence_specs: Vec<SilenceConfig>,
    /// `[[remote_write]]`: Prometheus remote-write endpoints, in file order.
    pub remote_write: Vec<RemoteWriteConfig>,
}

/// `[supervisor]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SupervisorConfig {
    /// `database`: the SQLite history file. Default `"perfvisor.db"`.
    pub database: PathBuf,
    /// `probe_interval`: how often each daemon is probed. Default 1 s; 10 ms to 1 h.
    pub probe_interval: Duration,
    /// `host_interval`: how often host metrics are sampled. Default 1 s; 10 ms to 1 h.
    pub host_interval: Duration,
    /// `judge_interval`: how often daemons are judged. Default 5 s; 100 ms to 1 h.
    pub judge_interval: Duration,
    /// `listen`: address of the HTTP API. Default `127.0.0.1:9465`.
    pub listen: SocketAddr,
    /// `token` or `token_file`: the API's bearer token. Default none.
    pub token: Option<TokenSource>,
    /// `[supervisor.retention]`: how long history is kept.
    pub retention: Retention,
    /// `max_database_size`: cap on the database's size, in bytes. Default none; at least
    /// 1 MiB.
    pub max_database_size: Option<u64>,
    /// `default_rules`: whether the built-in alert rules ship. Default true.
    pub default_rules: bool,
    /// `cgroup_parent`: the cgroup2 directory under which each managed daemon gets a cgroup
    /// of its own (absolute, or relative to the cgroup2 mount). Default none: perfvisor's own
    /// cgroup when delegated to it (systemd `Delegate=yes`), else the hierarchy's root when
    /// root, else no cgroup (the daemons are measured as process trees).
    pub cgroup_parent: Option<PathBuf>,
}

/// `[api]`: the HTTP API's scoped tokens, accepted host names and connection limit. The
/// admin token stays `[supervisor] token` (or `token_file`).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// `read_token`: a token that may only read. Default none.
    pub read_token: Option<String>,
    /// `push_token`: a token that may read and push metrics, nothing else. Default none.
    pub push_token: Option<String>,
    /// `anonymous_loopback_reads`: reads without a token on a loopback address even with
    /// tokens set (a local scraper without credentials). Default false.
    pub anonymous_loopback_reads: bool,
    /// `allowed_hosts`: names accepted in the `Host` header besides `localhost` and IP
    /// addresses. Default none.
    pub allowed_hosts: Vec<String>,
    /// `max_connections`: connections held open at once. Default
    /// [`crate::http::DEFAULT_MAX_CONNECTIONS`]; 16 to 1000000.
    pub max_connections: usize,
    /// `otlp_service_attribute` and `otlp_pid_attribute`: the resource attributes that name
    /// the daemon sending OTLP metrics. Default `service.name` and `process.pid`.
    pub otlp: crate::http::OtlpMapping,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            read_token: None,
            push_token: None,
            anonymous_loopback_reads: false,
            allowed_hosts: Vec::new(),
            max_connections: crate::http::DEFAULT_MAX_CONNECTIONS,
            otlp: crate::http::OtlpMapping::default(),
        }
    }
}

impl fmt::Debug for ApiSettings {
    // The tokens never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("ApiSettings")
            .field("read_token", &redacted(&self.read_token))
            .field("push_token", &redacted(&self.push_token))
            .field("anonymous_loopback_reads", &self.anonymous_loopback_reads)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_connections", &self.max_connections)
            .field("otlp", &self.otlp)
            .finish()
    }
}

/// Where the API token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `token = "..."`, in the file itself.
    Inline(String),
    /// `token_file = "..."`: read (and trimmed) when the server starts.
    File(PathBuf),
}

impl fmt::Debug for TokenSource {
    // The token itself never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            TokenSource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// `[[daemon]]`: a daemon perfvisor starts, restarts with backoff, health-checks and
/// stops. The config compiles it straight into the manager's runtime spec, with every
/// default resolved (the log directory included), so there is one description of a
/// managed daemon, not a config copy mapped by hand.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    /// Everything the daemon manager runs it by: `name`, `command`, `env`, `cwd`, `user`,
    /// `restart` and its backoff, `stop_signal`, `stop_timeout`, `depends_on`,
    /// `[daemon.logs]` and `[[daemon.check]]`.
    pub managed: ManagedSpec,
    /// `project`: the project label of its series.
    pub project: Option<String>,
    /// `labels`: extra labels of its series.
    pub labels: BTreeMap<String, String>,
}

impl DaemonConfig {
    /// `name`: unique among daemons and attached daemons.
    pub fn name(&self) -> &str {
        &self.managed.name
    }
}

/// A regular expression, compared by its text.
#[derive(Clone, Debug)]
pub struct Pattern(regex::Regex);

impl Pattern {
    /// The compiled expression.
    pub fn regex(&self) -> &regex::Regex {
        &self.0
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// How an attached daemon's process is found.
#[derive(Clone, Debug, PartialEq)]
pub enum AttachSelector {
    /// `pid`: this process.
    Pid(u32),
    /// `pidfile`: the pid written in this file.
    Pidfile(PathBuf),
    /// `match_exe`: processes whose executable name matches.
    MatchExe(Pattern),
    /// `match_cmdline`: processes whose command line (arguments joined by spaces) matches.
    MatchCmdline(Pattern),
}

/// `pick`: what an attach by `match_exe` / `match_cmdline` does when the pattern matches
/// several separate processes (not one process and its own descendants, which are one
/// daemon).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pick {
    /// `"only"` (default): attach only when exactly one process matches; otherwise refuse,
    /// naming the candidates.
    #[default]
    Only,
    /// `"oldest"`: attach to the one that started first.
    Oldest,
}

/// `[[attach]]`: a daemon perfvisor watches but does not start.
#[derive(Clone, Debug, PartialEq)]
pub struct AttachConfig {
    /// `name`: unique among daemons and attached daemons.
    pub name: String,
    /// Exactly one of `pid`, `pidfile`, `match_exe`, `match_cmdline`.
    pub selector: AttachSelector,
    /// `pick`: which of several matching processes to attach to.
    pub pick: Pick,
    /// `match_exe` or `match_cmdline` given beside `pidfile`: the pidfile's process must
    /// match it (always a `MatchExe` or `MatchCmdline`). A match also vouches for a pid whose
    /// process started after the pidfile was written, which is otherwise refused as stale.
    pub pidfile_check: Option<AttachSelector>,
    /// `project`: the project label of its series.
    pub project: Option<String>,
    /// `labels`: extra labels of its series.
    pub labels: BTreeMap<String, String>,
}

/// When a configured silence ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SilenceEnd {
    /// `ends`: at this time (Unix milliseconds).
    At(TimestampMs),
    /// `duration`: this long after it starts.
    After(Duration),
}

/// `[[silence]]`: a silence created when the config is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SilenceConfig {
    /// `id`: unique.
    pub id: String,
    /// `matchers`: name → value (a trailing `*` matches a prefix); all must match.
    pub matchers: BTreeMap<String, String>,
    /// `starts` (Unix milliseconds). Default: when applied.
    pub starts: Option<TimestampMs>,
    /// `ends` or `duration`.
    pub ends: SilenceEnd,
    /// `comment`.
    pub comment: String,
}

/// A config file that passed every check of its text, with its warnings and the places of
/// its keys, ready to be checked against this machine.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The validated config.
    pub config: Config,
    /// The file name problems refer to.
    pub file: String,
    /// Accepted but worth a look (a rule's metric perfvisor does not produce), in file
    /// order.
    pub warnings: Vec<Problem>,
    places: reader::Places,
}

/// Which checks against the machine [`Loaded::check_machine`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineCheck {
    /// All of them (`check-config`).
    All,
    /// All but the API address: what `perfvisor run` checks before it writes anything.
    BeforeLock,
    /// Only that the API address can be listened on: what `perfvisor run` checks once it
    /// holds the database lock (a second perfvisor on the same database is told who holds
    /// it, not that the port is taken).
    Listen,
}

impl Loaded {
    /// Checks what the config needs of this machine, without starting or creating
    /// anything: each managed daemon's program is an executable file (a path, a path
    /// relative to its `cwd`, or a name on its `PATH`), its `cwd` is a directory and its
    /// `user` exists; so are the programs of command checks, `exec` sinks and `exec`
    /// actions; the database's directory exists and is writable, and the database is
    /// not a directory and, if present, a SQLite file; `token_file` is readable; the API
    /// address is free. Every problem names the key's line.
    ///
    /// The answer is the warnings. With [`MachineCheck::All`] (`check-config`, perhaps run
    /// by another user than perfvisor) these are warnings, not problems: an address held by
    /// the perfvisor running on this same database (what a check before `perfvisor reload`
    /// finds), and a `user` this process could not start a daemon as (that needs root).
    pub fn check_machine(&self, which: MachineCheck) -> Result<Vec<Problem>, ConfigError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        if which != MachineCheck::Listen {
            let running = which == MachineCheck::BeforeLock;
            problems.extend(system::machine(
                &self.config,
                &self.places,
                running,
                &mut warnings,
            ));
        }
        if which != MachineCheck::BeforeLock {
            match system::listen(&self.config, &self.places) {
                system::Listen::Free => {}
                // At `run` this process holds the lock: a holder found is not another one.
                system::Listen::Ours(p) if which == MachineCheck::All => warnings.push(p),
                system::Listen::Ours(p) | system::Listen::Refused(p) => problems.push(p),
            }
        }
        if problems.is_empty() {
            return Ok(warnings);
        }
        problems.sort_by_key(|p| (p.line, p.column));
        Err(ConfigError {
            file: self.file.clone(),
            problems,
            warnings,
        })
    }

    /// `warnings` (these of the text, [`Loaded::warnings`], or those of
    /// [`Loaded::check_machine`]), one per line as `FILE:LINE:COL: PATH: warning: MESSAGE`;
    /// empty when there is none.
    pub fn render_warnings(&self, warnings: &[Problem]) -> String {
        error::render(&self.file, warnings, "warning: ")
    }
}

/// Reads and checks a config file; the error carries the warnings too.
pub fn read(path: impl AsRef<Path>) -> Result<Loaded, ConfigError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => read_text(&text, &file),
        Err(e) => Err(ConfigError {
            file,
            problems: vec![Problem {
                path: String::new(),
                line: 0,
                column: 0,
                message: format!("cannot read the config file: {e}"),
            }],
            warnings: Vec::new(),
        }),
    }
}

/// Checks config text; `file_name` is only used in problems.
pub fn read_text(text: &str, file_name: &str) -> Result<Loaded, ConfigError> {
    let compiled = compile::compile(text);
    match compiled.config {
        Ok(config) => Ok(Loaded {
            config,
            file: file_name.to_owned(),
            warnings: compiled.warnings,
            places: compiled.places,
        }),
        Err(problems) => Err(ConfigError {
            file: file_name.to_owned(),
            problems,
            warnings: compiled.warnings,
        }),
    }
}

/// Reads and checks a config file (its text only: see [`read`] for the warnings and the
/// checks against the machine).
pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
    read(path).map(|l| l.config)
}

/// Checks config text; `file_name` is only used in the error.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    read_text(text, file_name).map(|l| l.config)
}

/// A commented config with every key and its default (what `perfvisor
/// print-default-config` prints). It parses to the defaults; its commented-out examples of
/// every section parse too once uncommented.
pub fn default_config_text() -> &'static str {
    include_str!("default.toml")
}

/// Where a managed daemon's log files go when `[daemon.logs] dir` is not set: `logs/`
/// beside the database.
pub fn default_log_dir(database: &Path) -> PathBuf {
    database
        .parent()
        .map(|p| p.join("logs"))
        .unwrap_or_else(|| PathBuf::from("logs"))
}
