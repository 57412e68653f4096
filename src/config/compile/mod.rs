//! From config text to a [`Config`]: every section read and checked, cross-references
//! (unique names, `depends_on`, rule selectors) resolved, and every problem gathered.

use perfvisor_actors::analyzer::JudgeConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::{
    Comparison, Condition, Retention, RuleAction, Severity, SinkConfig, ThresholdRule, TimestampMs,
};
use toml::de::{DeTable, DeValue};
use toml::value::{Datetime, Offset};

mod alerting;
mod daemons;

use alerting::{rule, silence, sink};
use daemons::{attach, check_dependencies, daemon};

use crate::config::error::Problem;
use crate::config::metrics;
use crate::config::reader::{distance, quoted_list, show, type_name, Ctx, Places, Table};
use crate::config::{
    AttachConfig, AttachSelector, Config, DaemonConfig, Pattern, Pick, SilenceConfig, SilenceEnd,
    SupervisorConfig, TokenSource,
};
use crate::manager::{CheckKind, CheckSpec, ManagedSpec, RestartMode};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Upper bound of durations with no natural one (ten years): catches unit slips.
const LONG: Duration = Duration::from_secs(3650 * 86_400);

/// Default timeout of a sink's attempt.
pub(super) const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest timeout a sink accepts.
const MAX_SINK_TIMEOUT: Duration = Duration::from_secs(300);

const TOP_KEYS: &[&str] = &[
    "supervisor",
    "api",
    "judgement",
    "daemon",
    "attach",
    "rule",
    "sink",
    "silence",
    "remote_write",
];
const JUDGEMENT_KEYS: &[&str] = &[
    "cpu_bound",
    "cpu_sustain",
    "leak_floor",
    "min_trend_span",
    "startup_grace",
    "latency_min_increase",
    "latency_min_ratio",
    "latency_p95_ratio",
    "io_bound",
    "descriptor_share",
    "descriptor_horizon",
    "urgency_poor",
    "urgency_critical",
];
const SUPERVISOR_KEYS: &[&str] = &[
    "database",
    "probe_interval",
    "host_interval",
    "judge_interval",
    "listen",
    "token",
    "token_file",
    "retention",
    "max_database_size",
    "default_rules",
    "cgroup_parent",
];
const API_KEYS: &[&str] = &[
    "read_token",
    "push_token",
    "anonymous_loopback_reads",
    "allowed_hosts",
    "max_connections",
    "otlp_service_attribute",
    "otlp_pid_attribute",
];
const RETENTION_KEYS: &[&str] = &["raw", "hourly", "daily", "events", "alerts"];
const DAEMON_KEYS: &[&str] = &[
    "name",
    "command",
    "env",
    "cwd",
    "user",
    "project",
    "labels",
    "restart",
    "backoff_initial",
    "backoff_max",
    "backoff_factor",
    "jitter",
    "stable_after",
    "startup_grace",
    "max_fast_failures",
    "slow_retry",
    "stop_signal",
    "stop_timeout",
    "depends_on",
    "logs",
    "check",
];
const LOGS_KEYS: &[&str] = &["dir", "max_size", "keep"];
const CHECK_KEYS: &[&str] = &[
    "kind",
    "url",
    "address",
    "command",
    "interval",
    "timeout",
    "failures",
    "readiness",
];
const ATTACH_KEYS: &[&str] = &[
    "name",
    "pid",
    "pidfile",
    "match_exe",
    "match_cmdline",
    "pick",
    "project",
    "labels",
];
const ATTACH_SELECTORS: &[&str] = &["pid", "pidfile", "match_exe", "match_cmdline"];
const RULE_KEYS: &[&str] = &[
    "name",
    "kind",
    "metric",
    "above",
    "below",
    "clear",
    "window",
    "after",
    "count",
    "signal",
    "daemon",
    "project",
    "labels",
    "host",
    "for",
    "clear_for",
    "cooldown",
    "repeat",
    "flap_max",
    "flap_window",
    "severity",
    "recommend",
    "action",
    "enabled",
];
const RULE_KINDS: &[&str] = &["threshold", "rate", "absent", "restart_rate", "signal"];
/// Keys that only some kinds of rule take, with those kinds.
const RULE_KIND_KEYS: &[(&str, &[&str])] = &[
    ("metric", &["threshold", "rate", "absent", "signal"]),
    ("above", &["threshold", "rate"]),
    ("below", &["threshold", "rate"]),
    ("clear", &["threshold", "rate"]),
    ("window", &["rate", "restart_rate"]),
    ("after", &["absent"]),
    ("count", &["restart_rate"]),
    ("signal", &["signal"]),
    ("project", &["threshold", "rate", "absent", "signal"]),
    ("labels", &["threshold", "rate", "absent", "signal"]),
];
const SINK_KEYS: &[&str] = &[
    "name",
    "kind",
    "url",
    "urls",
    "headers",
    "timeout",
    "generator_url",
    "command",
];
const SINK_KINDS: &[&str] = &["webhook", "alertmanager", "exec", "log"];
const SINK_KIND_KEYS: &[(&str, &[&str])] = &[
    ("url", &["webhook", "alertmanager"]),
    ("urls", &["alertmanager"]),
    ("headers", &["webhook"]),
    ("timeout", &["webhook", "alertmanager", "exec"]),
    ("generator_url", &["alertmanager"]),
    ("command", &["exec"]),
];
const SILENCE_KEYS: &[&str] = &["id", "matchers", "starts", "ends", "duration", "comment"];
/// Every key of every section, for the test that the default config shows them all.
#[cfg(test)]
pub(super) fn documented_keys() -> Vec<&'static str> {
    [
        TOP_KEYS,
        SUPERVISOR_KEYS,
        RETENTION_KEYS,
        DAEMON_KEYS,
        LOGS_KEYS,
        CHECK_KEYS,
        ATTACH_KEYS,
        RULE_KEYS,
        SINK_KEYS,
        SILENCE_KEYS,
    ]
    .concat()
}

/// Names seen so far, for uniqueness and references.
#[derive(Default)]
struct Names {
    /// Managed and attached daemons: name → (key path, place).
    daemons: BTreeMap<String, String>,
    managed: BTreeSet<String>,
    /// Rule `daemon` selectors to resolve once every daemon is known.
    rule_daemons: Vec<(String, String, Range<usize>)>,
}

/// What reading a document gives: the config or every problem, and in both cases the
/// warnings and the places of the keys the checks against the machine report on.
pub(super) struct Compiled {
    /// The config, or every problem, in file order.
    pub(super) config: Result<Config, Vec<Problem>>,
    /// Accepted but worth a look, in file order.
    pub(super) warnings: Vec<Problem>,
    /// Where the keys the machine checks name are.
    pub(super) places: Places,
}

/// Reads and checks the whole document.
pub(super) fn compile(text: &str) -> Compiled {
    let mut ctx = Ctx::new(text);
    let config = compile_into(&mut ctx, text);
    let mut warnings = ctx.warnings;
    warnings.sort_by_key(|p| (p.line, p.column));
    warnings.dedup();
    Compiled {
        config,
        warnings,
        places: ctx.places,
    }
}

fn compile_into(ctx: &mut Ctx<'_>, text: &str) -> Result<Config, Vec<Problem>> {
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let (path, line) = syntax_context(text, span.start);
            let hint = if line.contains('=') {
                " (expected key = value, with strings in quotes)"
            } else {
                ""
            };
            ctx.report(
                &path,
                &span,
                format!(
                    "TOML syntax error: {}; the line reads `{line}`{hint}",
                    e.message().trim()
                ),
            );
            return Err(std::mem::take(&mut ctx.problems));
        }
    };
    let root = Table::new(ctx, String::new(), 0..0, doc.get_ref(), TOP_KEYS);
    let mut names = Names::default();

    let supervisor_table = root.table(ctx, "supervisor", SUPERVISOR_KEYS);
    let supervisor = supervisor(ctx, supervisor_table);
    let api_table = root.table(ctx, "api", API_KEYS);
    let api = api(ctx, api_table);
    let judgement_table = root.table(ctx, "judgement", JUDGEMENT_KEYS);
    let judgement = judgement(ctx, judgement_table);
    let daemon_tables = root.tables(ctx, "daemon", DAEMON_KEYS);
    let mut daemons = Vec::new();
    let mut depends: Vec<Vec<(String, Range<usize>)>> = Vec::new();
    for t in &daemon_tables {
        let (d, deps) = daemon(ctx, t, &mut names, &supervisor.database);
        daemons.push(d);
        depends.push(deps);
    }
    let mut attached = Vec::new();
    for t in root.tables(ctx, "attach", ATTACH_KEYS) {
        if let Some(a) = attach(ctx, &t, &mut names) {
            attached.push(a);
        }
    }
    check_dependencies(ctx, &daemon_tables, &daemons, &depends, &names);

    let mut rules = Vec::new();
    let mut rule_names = BTreeMap::new();
    for t in root.tables(ctx, "rule", RULE_KEYS) {
        if let Some(r) = rule(ctx, &t, &mut names) {
            unique(ctx, &t, "name", &r.name, &mut rule_names, "rule");
            rules.push(r);
        }
    }
    for (daemon, path, span) in std::mem::take(&mut names.rule_daemons) {
        if !names.daemons.contains_key(&daemon) {
            let known: Vec<&str> = names.daemons.keys().map(String::as_str).collect();
            ctx.report(
                &path,
                &span,
                format!(
                    "no [[daemon]] or [[attach]] is named {daemon:?}; expected one of: {}",
                    if known.is_empty() {
                        "(none is configured)".to_owned()
                    } else {
                        quoted_list(&known)
                    }
                ),
            );
        }
    }

    let mut sinks = Vec::new();
    let mut sink_names = BTreeMap::new();
    for t in root.tables(ctx, "sink", SINK_KEYS) {
        if let Some((name, s)) = sink(ctx, &t) {
            unique(ctx, &t, "name", &name, &mut sink_names, "sink");
            sinks.push((name, s));
        }
    }

    let mut silences = Vec::new();
    let mut silence_ids = BTreeMap::new();
    for t in root.tables(ctx, "silence", SILENCE_KEYS) {
        if let Some(s) = silence(ctx, &t) {
            unique(ctx, &t, "id", &s.id, &mut silence_ids, "silence");
            silences.push(s);
        }
    }

    let remote_write = super::remote_write::remote_writes(ctx, &root);

    let mut problems = std::mem::take(&mut ctx.problems);
    if problems.is_empty() {
        Ok(Config {
            supervisor,
            api,
            judgement,
            daemons,
            attached,
            alert_rules: rules,
            alert_sinks: sinks,
            silence_specs: silences,
            remote_write,
        })
    } else {
        problems.sort_by_key(|p| (p.line, p.column));
        problems.dedup();
        Err(problems)
    }
}

/// The key path (best effort: the last table header and the line's key) and the text of
/// the line holding byte `offset`, for a syntax error.
fn syntax_context(text: &str, offset: usize) -> (String, String) {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or_default().trim();
    let header = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
        .unwrap_or_default();
    let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|k| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    });
    let path = match (header.is_empty(), key) {
        (_, None) => header,
        (true, Some(k)) => k.to_owned(),
        (false, Some(k)) => format!("{header}.{k}"),
    };
    (path, line.to_owned())
}

/// Reports `value` of `key` when an earlier entry of the same section has it.
fn unique(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    key: &str,
    value: &str,
    seen: &mut BTreeMap<String, String>,
    what: &str,
) {
    if let Some(first) = seen.get(value) {
        t.bad(
            ctx,
            key,
            format!("{what} {key} {value:?} is already used by {first}; expected a unique {key}"),
        );
    } else {
        seen.insert(value.to_owned(), t.path.clone());
    }
}

/// `[judgement]`: the thresholds of the judgement, as people write them (durations, sizes
/// per minute or second, ratios); what is not given keeps [`JudgeConfig`]'s default.
fn judgement(ctx: &mut Ctx<'_>, t: Option<Table<'_, '_>>) -> JudgeConfig {
    let mut j = JudgeConfig::default();
    let Some(t) = t else {
        return j;
    };
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if let Some(v) = t.ranged(ctx, "cpu_bound", 0.05, 1024.0) {
        j.cpu_bound_floor = v;
    }
    if let Some(d) = t.duration(ctx, "cpu_sustain", Duration::from_secs(1), HOUR) {
        j.cpu_sustain_ms = ms(d);
    }
    if let Some(b) = t.size(ctx, "leak_floor", 1) {
        j.leak_floor_bytes_per_min = b as f64;
    }
    if let Some(d) = t.duration(ctx, "min_trend_span", Duration::from_secs(1), 6 * HOUR) {
        j.min_trend_span_ms = ms(d);
    }
    if let Some(d) = t.duration(ctx, "startup_grace", Duration::ZERO, HOUR) {
        j.startup_grace_ms = ms(d);
    }
    if let Some(d) = t.duration(ctx, "latency_min_increase", Duration::ZERO, HOUR) {
        j.latency_min_increase_s = d.as_secs_f64();
    }
    if let Some(v) = t.ranged(ctx, "latency_min_ratio", 1.0, 1000.0) {
        j.latency_min_ratio = v;
    }
    if let Some(v) = t.ranged(ctx, "latency_p95_ratio", 1.0, 1000.0) {
        j.latency_p95_ratio = v;
    }
    if let Some(b) = t.size(ctx, "io_bound", 1) {
        j.io_bound_bytes_per_s = b as f64;
    }
    if let Some(v) = t.ranged(ctx, "descriptor_share", 0.05, 1.0) {
        j.descriptor_share = v;
    }
    if let Some(d) = t.duration(ctx, "descriptor_horizon", Duration::from_secs(1), LONG) {
        j.descriptor_horizon_ms = ms(d);
    }
    if let Some(d) = t.duration(ctx, "urgency_poor", Duration::ZERO, LONG) {
        j.urgency_poor_ms = ms(d);
    }
    if let Some(d) = t.duration(ctx, "urgency_critical", Duration::ZERO, LONG) {
        j.urgency_critical_ms = ms(d);
    }
    if j.urgency_critical_ms > j.urgency_poor_ms {
        t.bad(
            ctx,
            "urgency_critical",
            "is longer than urgency_poor; expected urgency_critical at most urgency_poor",
        );
    }
    j
}

fn supervisor(ctx: &mut Ctx<'_>, t: Option<Table<'_, '_>>) -> SupervisorConfig {
    let default_listen = SocketAddr::from(([127, 0, 0, 1], 9465));
    let mut s = SupervisorConfig {
        database: PathBuf::from(crate::DEFAULT_DATABASE),
        probe_interval: crate::DEFAULT_PROBE_INTERVAL,
        host_interval: crate::DEFAULT_HOST_INTERVAL,
        judge_interval: crate::DEFAULT_JUDGE_INTERVAL,
        listen: default_listen,
        token: None,
        retention: Retention::default(),
        max_database_size: None,
        default_rules: true,
        cgroup_parent: None,
    };
    let Some(t) = t else {
        return s;
    };
    for key in ["database", "listen", "token_file", "cgroup_parent"] {
        t.remember(ctx, key);
    }
    if let Some(p) = t.path(ctx, "database") {
        s.database = p;
    }
    let ms10 = 10 * MS;
    if let Some(d) = t.duration(ctx, "probe_interval", ms10, HOUR) {
        s.probe_interval = d;
    }
    if let Some(d) = t.duration(ctx, "host_interval", ms10, HOUR) {
        s.host_interval = d;
    }
    if let Some(d) = t.duration(ctx, "judge_interval", 100 * MS, HOUR) {
        s.judge_interval = d;
    }
    const LISTEN: &str = "an IP address and port such as \"127.0.0.1:9465\" or \"[::1]:9465\"";
    if let Some(l) = t.string(ctx, "listen", LISTEN) {
        match l.parse::<SocketAddr>() {
            Ok(a) => s.listen = a,
            Err(_) => t.bad(
                ctx,
                "listen",
                format!("{l:?} is not an address; expected {LISTEN}"),
            ),
        }
    }
    let token = t.nonempty(ctx, "token", "the API token (a non-empty string)");
    let token_file = t.path(ctx, "token_file");
    s.token = match (token, token_file) {
        (Some(_), Some(_)) => {
            t.bad(
                ctx,
                "token_file",
                "both token and token_file are set; expected at most one of them",
            );
            None
        }
        (Some(tok), None) => Some(TokenSource::Inline(tok)),
        (None, Some(f)) => Some(TokenSource::File(f)),
        (None, None) => None,
    };
    if let Some(r) = t.table(ctx, "retention", RETENTION_KEYS) {
        s.retention = retention(ctx, &r);
    }
    s.max_database_size = t.size(ctx, "max_database_size", 1 << 20);
    if let Some(b) = t.bool(ctx, "default_rules") {
        s.default_rules = b;
    }
    s.cgroup_parent = t.nonempty(
        ctx,
        "cgroup_parent",
        "a cgroup2 directory: an absolute path under the cgroup2 mount, or a path relative to it",
    )
    .map(PathBuf::from);
    s
}

fn api(ctx: &mut Ctx<'_>, t: Option<Table<'_, '_>>) -> super::ApiSettings {
    let mut a = super::ApiSettings::default();
    let Some(t) = t else {
        return a;
    };
    a.read_token = t.nonempty(
        ctx,
        "read_token",
        "a token for reads only (a non-empty string)",
    );
    a.push_token = t.nonempty(
        ctx,
        "push_token",
        "a token for reads and pushed metrics (a non-empty string)",
    );
    const HOSTS: &str =
        "host names (such as \"perf.example.org\") besides localhost and IP addresses";
    if let Some(names) = t.strings(ctx, "allowed_hosts", HOSTS) {
        for (name, span) in names {
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if valid {
                a.allowed_hosts.push(name);
            } else {
                ctx.report(
                    &t.key_path("allowed_hosts"),
                    &span,
                    format!("{name:?} is not a host name; expected {HOSTS}, without a port"),
                );
            }
        }
    }
    if let Some(b) = t.bool(ctx, "anonymous_loopback_reads") {
        a.anonymous_loopback_reads = b;
    }
    if let Some(n) = t.integer(ctx, "max_connections", 16, 1_000_000) {
        a.max_connections = n as usize;
    }
    const ATTRIBUTE: &str = "an OpenTelemetry resource attribute name (a non-empty string)";
    if let Some(name) = t.nonempty(ctx, "otlp_service_attribute", ATTRIBUTE) {
        a.otlp.service_attribute = name;
    }
    if let Some(name) = t.nonempty(ctx, "otlp_pid_attribute", ATTRIBUTE) {
        a.otlp.pid_attribute = name;
    }
    a
}

fn retention(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Retention {
    let mut r = Retention::default();
    for (key, slot) in [
        ("raw", &mut r.raw),
        ("hourly", &mut r.hourly),
        ("daily", &mut r.daily),
        ("events", &mut r.events),
        ("alerts", &mut r.alerts),
    ] {
        if let Some(d) = t.duration(ctx, key, HOUR, LONG) {
            *slot = d;
        }
    }
    if r.hourly < r.raw {
        t.bad(
            ctx,
            if t.has("hourly") { "hourly" } else { "raw" },
            format!(
                "hourly ({}) is shorter than raw ({}); expected hourly at least as long as raw",
                super::format_duration(r.hourly),
                super::format_duration(r.raw)
            ),
        );
    }
    if r.daily < r.hourly {
        t.bad(
            ctx,
            if t.has("daily") { "daily" } else { "hourly" },
            format!(
                "daily ({}) is shorter than hourly ({}); expected daily at least as long as hourly",
                super::format_duration(r.daily),
                super::format_duration(r.hourly)
            ),
        );
    }
    r
}

/// Reports keys present in `t` that the chosen `kind` does not take.
fn kind_keys(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, kind: &str, table: &[(&str, &[&str])]) {
    for (key, kinds) in table {
        if t.has(key) && !kinds.contains(&kind) {
            ctx.report(
                &t.key_path(key),
                &t.key_span(key),
                format!(
                    "{key} is not accepted with kind = {kind:?}; it is for kind {}",
                    quoted_list(kinds)
                ),
            );
        }
    }
}

/// Reports `url` unless it is an `http://` or `https://` URL with a host.
fn check_url(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, key: &str, url: &str) {
    let problem = match url.split_once("://") {
        _ if url.chars().any(|c| c.is_whitespace() || c.is_control()) => Some("it contains spaces"),
        None => Some("it has no scheme"),
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
                match v6.split_once(']') {
                    Some((h, p)) => (h, p.strip_prefix(':')),
                    None => ("", None),
                }
            } else {
                match host_port.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (host_port, None),
                }
            };
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                Some("its scheme is neither http nor https")
            } else if host.is_empty() {
                Some("it has no host")
            } else if port.is_some_and(|p| p.parse::<u16>().is_err()) {
                Some("its port is not a number from 0 to 65535")
            } else {
                None
            }
        }
    };
    if let Some(why) = problem {
        t.bad(
            ctx,
            key,
            format!(
                "{url:?} is not a usable URL ({why}); expected an http:// or https:// URL with a \
                 host, e.g. \"http://127.0.0.1:9093\""
            ),
        );
    }
}
