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

use super::error::Problem;
use super::metrics;
use super::reader::{distance, quoted_list, show, type_name, Ctx, Places, Table};
use super::{
    AttachConfig, AttachSelector, CheckConfig, CheckKind, Config, DaemonConfig, LogsConfig,
    Pattern, Pick, RestartMode, SilenceConfig, SilenceEnd, StopSignal, SupervisorConfig,
    TokenSource,
};

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

const NAME_FORM: &str = "a name of letters, digits, '_', '.' and '-'";

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
        let (d, deps) = daemon(ctx, t, &mut names);
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

/// A valid daemon name, or a problem.
fn daemon_name(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, names: &mut Names) -> String {
    let Some(name) = t.required(ctx, "name", NAME_FORM) else {
        return String::new();
    };
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        t.bad(
            ctx,
            "name",
            format!("{name:?} is not accepted; expected {NAME_FORM}"),
        );
    } else if let Some(first) = names.daemons.get(&name) {
        t.bad(
            ctx,
            "name",
            format!(
                "daemon name {name:?} is already used by {first}; expected a name unique among \
                 [[daemon]] and [[attach]]"
            ),
        );
    } else {
        names.daemons.insert(name.clone(), t.path.clone());
    }
    name
}

fn daemon(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    names: &mut Names,
) -> (DaemonConfig, Vec<(String, Range<usize>)>) {
    let name = daemon_name(ctx, t, names);
    names.managed.insert(name.clone());
    for key in ["command", "cwd", "user"] {
        t.remember(ctx, key);
    }
    if !t.has("command") {
        t.missing(
            ctx,
            "command",
            "the program and its arguments, e.g. [\"/usr/bin/app\", \"--port\", \"8080\"]",
        );
    }
    let mut d = DaemonConfig {
        name,
        command: t.argv(ctx, "command").unwrap_or_default(),
        env: t.string_map(ctx, "env").unwrap_or_default(),
        cwd: t.path(ctx, "cwd"),
        user: t.nonempty(ctx, "user", "a user name"),
        project: t.nonempty(ctx, "project", "a project name"),
        labels: t.string_map(ctx, "labels").unwrap_or_default(),
        restart: RestartMode::OnFailure,
        backoff_initial: SECOND,
        backoff_max: Duration::from_secs(60),
        backoff_factor: 2.0,
        jitter: 0.2,
        stable_after: Duration::from_secs(60),
        startup_grace: Duration::from_secs(5),
        max_fast_failures: 5,
        slow_retry: t.duration(ctx, "slow_retry", SECOND, DAY),
        stop_signal: StopSignal::Term,
        stop_timeout: Duration::from_secs(10),
        depends_on: Vec::new(),
        logs: LogsConfig {
            dir: None,
            max_size: 10 << 20,
            keep: 5,
        },
        checks: Vec::new(),
    };
    for (k, v) in &d.env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            ctx.report(
                &format!("{}.{k}", t.key_path("env")),
                &t.key_span("env"),
                format!(
                    "environment variable {k:?} is not accepted; expected a non-empty name \
                     without '=' and values without NUL characters"
                ),
            );
        }
    }
    if let Some(r) = t.choice(ctx, "restart", &["always", "on-failure", "never"]) {
        d.restart = match r.as_str() {
            "always" => RestartMode::Always,
            "never" => RestartMode::Never,
            _ => RestartMode::OnFailure,
        };
    }
    if let Some(v) = t.duration(ctx, "backoff_initial", MS, HOUR) {
        d.backoff_initial = v;
    }
    if let Some(v) = t.duration(ctx, "backoff_max", MS, DAY) {
        d.backoff_max = v;
    }
    if d.backoff_max < d.backoff_initial {
        t.bad(
            ctx,
            if t.has("backoff_max") {
                "backoff_max"
            } else {
                "backoff_initial"
            },
            format!(
                "backoff_max ({}) is shorter than backoff_initial ({}); expected backoff_max at \
                 least backoff_initial",
                super::format_duration(d.backoff_max),
                super::format_duration(d.backoff_initial)
            ),
        );
    }
    if let Some(v) = t.ranged(ctx, "backoff_factor", 1.0, 10.0) {
        d.backoff_factor = v;
    }
    if let Some(v) = t.ranged(ctx, "jitter", 0.0, 1.0) {
        d.jitter = v;
    }
    if let Some(v) = t.duration(ctx, "stable_after", Duration::ZERO, DAY) {
        d.stable_after = v;
    }
    if let Some(v) = t.duration(ctx, "startup_grace", Duration::ZERO, HOUR) {
        d.startup_grace = v;
    }
    if let Some(v) = t.integer(ctx, "max_fast_failures", 1, 1000) {
        d.max_fast_failures = v as u32;
    }
    let signals = ["TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2"];
    if let Some(s) = t.choice(ctx, "stop_signal", &signals) {
        d.stop_signal = match s.as_str() {
            "INT" => StopSignal::Int,
            "QUIT" => StopSignal::Quit,
            "HUP" => StopSignal::Hup,
            "KILL" => StopSignal::Kill,
            "USR1" => StopSignal::Usr1,
            "USR2" => StopSignal::Usr2,
            _ => StopSignal::Term,
        };
    }
    if let Some(v) = t.duration(ctx, "stop_timeout", MS, HOUR) {
        d.stop_timeout = v;
    }
    let deps = t
        .strings(ctx, "depends_on", "an array of [[daemon]] names")
        .unwrap_or_default();
    d.depends_on = deps.iter().map(|(n, _)| n.clone()).collect();
    if let Some(l) = t.table(ctx, "logs", LOGS_KEYS) {
        d.logs.dir = l.path(ctx, "dir");
        if let Some(v) = l.size(ctx, "max_size", 4096) {
            d.logs.max_size = v;
        }
        if let Some(v) = l.integer(ctx, "keep", 0, 1000) {
            d.logs.keep = v as u32;
        }
    }
    for c in t.tables(ctx, "check", CHECK_KEYS) {
        if let Some(check) = check(ctx, &c) {
            d.checks.push(check);
        }
    }
    (d, deps)
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

fn check(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<CheckConfig> {
    t.remember(ctx, "command");
    let kinds = ["http", "tcp", "command"];
    if !t.has("kind") {
        t.missing(ctx, "kind", &format!("one of {}", quoted_list(&kinds)));
    }
    let kind = t.choice(ctx, "kind", &kinds);
    let interval = t
        .duration(ctx, "interval", 100 * MS, DAY)
        .unwrap_or(Duration::from_secs(10));
    let timeout = t
        .duration(ctx, "timeout", MS, HOUR)
        .unwrap_or(Duration::from_secs(2));
    if timeout > interval {
        t.bad(
            ctx,
            if t.has("timeout") { "timeout" } else { "interval" },
            format!(
                "timeout ({}) is longer than interval ({}); expected a timeout at most the interval",
                super::format_duration(timeout),
                super::format_duration(interval)
            ),
        );
    }
    let failures = t.integer(ctx, "failures", 1, 1000).unwrap_or(3) as u32;
    let readiness = t.bool(ctx, "readiness").unwrap_or(false);
    let kind = kind?;
    let table: &[(&str, &[&str])] = &[
        ("url", &["http"]),
        ("address", &["tcp"]),
        ("command", &["command"]),
    ];
    kind_keys(ctx, t, &kind, table);
    let kind = match kind.as_str() {
        "http" => {
            if !t.has("url") {
                t.missing(
                    ctx,
                    "url",
                    "the URL to GET, e.g. \"http://127.0.0.1:8080/health\"",
                );
            }
            let url = t.string(ctx, "url", "an http:// or https:// URL")?;
            check_url(ctx, t, "url", &url);
            CheckKind::Http { url }
        }
        "tcp" => {
            const ADDRESS: &str = "host:port, e.g. \"127.0.0.1:6379\" or \"localhost:6379\"";
            if !t.has("address") {
                t.missing(ctx, "address", ADDRESS);
            }
            let address = t.string(ctx, "address", ADDRESS)?;
            let ok = address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                t.bad(
                    ctx,
                    "address",
                    format!("{address:?} is not accepted; expected {ADDRESS}"),
                );
            }
            CheckKind::Tcp { address }
        }
        _ => {
            if !t.has("command") {
                t.missing(
                    ctx,
                    "command",
                    "the program and its arguments, e.g. [\"/usr/bin/check\"]",
                );
            }
            CheckKind::Command {
                command: t.argv(ctx, "command")?,
            }
        }
    };
    Some(CheckConfig {
        kind,
        interval,
        timeout,
        failures,
        readiness,
    })
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

/// Checks `depends_on`: every name a managed daemon, and no cycle.
fn check_dependencies(
    ctx: &mut Ctx<'_>,
    tables: &[Table<'_, '_>],
    daemons: &[DaemonConfig],
    depends: &[Vec<(String, Range<usize>)>],
    names: &Names,
) {
    let managed: Vec<&str> = names.managed.iter().map(String::as_str).collect();
    for (i, deps) in depends.iter().enumerate() {
        for (j, (dep, span)) in deps.iter().enumerate() {
            let path = format!("{}[{j}]", tables[i].key_path("depends_on"));
            if *dep == daemons[i].name {
                ctx.report(
                    &path,
                    span,
                    format!(
                        "daemon {dep:?} depends on itself; expected the names of other [[daemon]]s"
                    ),
                );
            } else if !names.managed.contains(dep) {
                let why = if names.daemons.contains_key(dep) {
                    "is an [[attach]], which perfvisor does not start"
                } else {
                    "is not a [[daemon]]"
                };
                ctx.report(
                    &path,
                    span,
                    format!("{dep:?} {why}; expected one of: {}", quoted_list(&managed)),
                );
            }
        }
    }
    // Cycles: depth-first search over valid edges; each cycle reported once, at the
    // depends_on of the daemon where it was closed.
    let index: BTreeMap<&str, usize> = daemons
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = daemons
        .iter()
        .enumerate()
        .map(|(i, d)| {
            d.depends_on
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; daemons.len()];
    for start in 0..daemons.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&to) = edges[node].get(*next) {
                *next += 1;
                match state[to] {
                    0 => {
                        state[to] = 1;
                        stack.push((to, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[from..]
                            .iter()
                            .map(|(n, _)| daemons[*n].name.as_str())
                            .collect();
                        cycle.push(daemons[to].name.as_str());
                        let t = &tables[node];
                        ctx.report(
                            &t.key_path("depends_on"),
                            &t.key_span("depends_on"),
                            format!(
                                "dependency cycle {}; expected daemons that can be started in some order",
                                cycle.join(" -> ")
                            ),
                        );
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
}

fn attach(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, names: &mut Names) -> Option<AttachConfig> {
    let name = daemon_name(ctx, t, names);
    let project = t.nonempty(ctx, "project", "a project name");
    let labels = t.string_map(ctx, "labels").unwrap_or_default();
    let pick = match t.choice(ctx, "pick", &["only", "oldest"]).as_deref() {
        Some("oldest") => Pick::Oldest,
        _ => Pick::Only,
    };
    let given: Vec<&str> = ATTACH_SELECTORS
        .iter()
        .copied()
        .filter(|k| t.has(k))
        .collect();
    let expected = format!("exactly one of {}", ATTACH_SELECTORS.join(", "));
    match given.as_slice() {
        [] => {
            ctx.report(
                &t.path,
                &t.span,
                format!("no way to find the process; expected {expected}"),
            );
            None
        }
        [key] | [key @ "pidfile", _] => {
            let check = match given.as_slice() {
                [_, check @ ("match_exe" | "match_cmdline")] => Some(*check),
                [_] => None,
                _ => {
                    let second = given[1];
                    ctx.report(
                        &t.key_path(second),
                        &t.key_span(second),
                        format!("{} are all set; expected {expected}", given.join(", ")),
                    );
                    return None;
                }
            };
            let pattern = |ctx: &mut Ctx<'_>, key: &str| -> Option<AttachSelector> {
                let pattern = t.nonempty(ctx, key, "a regular expression")?;
                let re = match regex::Regex::new(&pattern) {
                    Ok(re) => re,
                    Err(e) => {
                        let detail = e.to_string();
                        let reason = detail.lines().last().unwrap_or_default().trim().to_owned();
                        t.bad(
                            ctx,
                            key,
                            format!(
                                "{pattern:?} is not a valid regular expression ({reason}); \
                                 expected a regex in Rust's regex syntax, e.g. \"^nginx$\""
                            ),
                        );
                        return None;
                    }
                };
                Some(if key == "match_exe" {
                    AttachSelector::MatchExe(Pattern(re))
                } else {
                    AttachSelector::MatchCmdline(Pattern(re))
                })
            };
            let selector = match *key {
                "pid" => AttachSelector::Pid(t.integer(ctx, "pid", 1, i64::from(u32::MAX))? as u32),
                "pidfile" => AttachSelector::Pidfile(t.path(ctx, "pidfile")?),
                _ => pattern(ctx, key)?,
            };
            let pidfile_check = match check {
                Some(check) => Some(pattern(ctx, check)?),
                None => None,
            };
            Some(AttachConfig {
                name,
                selector,
                pick,
                pidfile_check,
                project,
                labels,
            })
        }
        [_, second, ..] => {
            ctx.report(
                &t.key_path(second),
                &t.key_span(second),
                format!("{} are all set; expected {expected}", given.join(", ")),
            );
            None
        }
    }
}

fn rule(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, names: &mut Names) -> Option<ThresholdRule> {
    let before = ctx.problems.len();
    t.remember(ctx, "action");
    let name = t.required(ctx, "name", "a rule name");
    let builtins = crate::builtin_rules();
    let builtin = name
        .as_deref()
        .and_then(|n| builtins.iter().find(|b| b.name == n));
    let enabled = t.bool(ctx, "enabled");
    if let (Some(n), Some(false), None) = (&name, enabled, builtin) {
        let hint = builtins
            .iter()
            .map(|b| (distance(n, &b.name), b.name.as_str()))
            .filter(|(d, _)| *d <= 3)
            .min()
            .map(|(_, b)| format!(" (did you mean {b:?}?)"))
            .unwrap_or_default();
        let names: Vec<&str> = builtins.iter().map(|b| b.name.as_str()).collect();
        t.bad(
            ctx,
            "enabled",
            format!(
                "enabled = false switches off a built-in rule, and no built-in is named \
                 {n:?}{hint}; expected one of: {} (or delete the rule)",
                quoted_list(&names)
            ),
        );
    }
    // A built-in named without a kind is tuned, not replaced: it keeps every setting the
    // entry does not give.
    if let (Some(b), false) = (builtin, t.has("kind")) {
        return tuned_builtin(ctx, t, b.clone(), enabled);
    }
    if !t.has("kind") {
        t.missing(ctx, "kind", &format!("one of {}", quoted_list(RULE_KINDS)));
    }
    let kind = t.choice(ctx, "kind", RULE_KINDS);
    if let Some(k) = &kind {
        kind_keys(ctx, t, k, RULE_KIND_KEYS);
    }
    let metric = t.nonempty(
        ctx,
        "metric",
        "an exact metric name, e.g. \"process.cpu.utilization_ratio\"",
    );
    let daemon = t.nonempty(ctx, "daemon", "a [[daemon]] or [[attach]] name");
    if let Some(d) = &daemon {
        names.rule_daemons.push((
            d.clone(),
            t.key_path("daemon"),
            t.get("daemon").map_or(t.span.clone(), |v| v.span()),
        ));
    }
    let project = t.nonempty(ctx, "project", "a project name");
    let labels = t.string_map(ctx, "labels").unwrap_or_default();
    let host = t.bool(ctx, "host").unwrap_or(false);
    if host && daemon.is_some() {
        t.bad(ctx, "host", "host = true and daemon are both set; expected one of them: a host rule watches the machine, not a daemon");
    }
    let for_ = t.duration(ctx, "for", Duration::ZERO, LONG);
    let clear_for = t.duration(ctx, "clear_for", Duration::ZERO, LONG);
    let cooldown = t.duration(ctx, "cooldown", Duration::ZERO, LONG);
    let repeat = t.duration(ctx, "repeat", SECOND, LONG);
    let flap_max = t.integer(ctx, "flap_max", 1, 10_000);
    let flap_window = t.duration(ctx, "flap_window", SECOND, LONG);
    for (have, missing) in [("flap_max", "flap_window"), ("flap_window", "flap_max")] {
        if t.has(have) && !t.has(missing) {
            t.bad(
                ctx,
                have,
                format!("{have} is set without {missing}; expected both or neither"),
            );
        }
    }
    let severity = t
        .choice(ctx, "severity", &["info", "warning", "critical"])
        .map(|s| match s.as_str() {
            "info" => Severity::Info,
            "critical" => Severity::Critical,
            _ => Severity::Warning,
        });
    let recommend = t
        .strings(ctx, "recommend", "an array of recommendation texts")
        .unwrap_or_default();
    let action = action(ctx, t);

    if let Some(m) = &metric {
        metrics::check_name(ctx, t, m);
    }
    let condition = condition(ctx, t, kind.as_deref()?, metric.as_deref());
    let mut rule = ThresholdRule::new(name.clone()?, condition?);
    rule.selector.metric = metric;
    if let Some(d) = daemon {
        rule = rule.for_daemon(d);
    }
    rule.selector.project = project;
    rule.selector.labels = labels.into_iter().collect();
    if host {
        rule = rule.on_host();
    }
    rule.for_duration = for_.unwrap_or_default();
    rule.clear_for = clear_for.unwrap_or_default();
    rule.cooldown = cooldown.unwrap_or_default();
    rule.repeat_interval = repeat;
    if let (Some(n), Some(w)) = (flap_max, flap_window) {
        rule = rule.flap_damping(n as u32, w);
    }
    if let Some(s) = severity {
        rule.severity = s;
    }
    rule.recommendations = recommend.into_iter().map(|(s, _)| s).collect();
    rule.action = action;
    rule.enabled = enabled.unwrap_or(true);
    // The engine's own check is the last word; anything it refuses that was not reported
    // above is reported here.
    if ctx.problems.len() == before {
        report_rule_problems(ctx, t, &rule);
    }
    Some(rule)
}

/// Reports what the engine's own check ([`ThresholdRule::validate`]) refuses in `rule`, at
/// the rule's table.
fn report_rule_problems(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, rule: &ThresholdRule) {
    if let Err(e) = rule.validate() {
        for p in e.problems {
            ctx.report(
                &t.path,
                &t.span,
                format!(
                    "{} = {} is not accepted; expected {}",
                    p.field, p.value, p.expected
                ),
            );
        }
    }
}

/// A built-in rule with the settings this `[[rule]]` gives (`enabled`, timing, severity,
/// recommendations, action, selector); keys that need a kind are refused.
fn tuned_builtin(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    mut rule: ThresholdRule,
    enabled: Option<bool>,
) -> Option<ThresholdRule> {
    for key in [
        "metric", "above", "below", "clear", "window", "after", "count", "signal",
    ] {
        if t.has(key) {
            t.bad(
                ctx,
                key,
                format!(
                    "{key} changes what the built-in rule {:?} watches; expected kind = ... \
                     with every setting to replace it, or only enabled, timing, severity, \
                     recommend, action and selector keys to tune it",
                    rule.name
                ),
            );
        }
    }
    if let Some(on) = enabled {
        rule.enabled = on;
    }
    if let Some(d) = t.duration(ctx, "for", Duration::ZERO, LONG) {
        rule.for_duration = d;
    }
    if let Some(d) = t.duration(ctx, "clear_for", Duration::ZERO, LONG) {
        rule.clear_for = d;
    }
    if let Some(d) = t.duration(ctx, "cooldown", Duration::ZERO, LONG) {
        rule.cooldown = d;
    }
    if let Some(d) = t.duration(ctx, "repeat", SECOND, LONG) {
        rule.repeat_interval = Some(d);
    }
    let flap_max = t.integer(ctx, "flap_max", 1, 10_000);
    let flap_window = t.duration(ctx, "flap_window", SECOND, LONG);
    if let (Some(n), Some(w)) = (flap_max, flap_window) {
        rule = rule.flap_damping(n as u32, w);
    } else if t.has("flap_max") != t.has("flap_window") {
        t.bad(
            ctx,
            "flap_max",
            "flap_max and flap_window go together; expected both or neither",
        );
    }
    if let Some(s) = t.choice(ctx, "severity", &["info", "warning", "critical"]) {
        rule.severity = match s.as_str() {
            "info" => Severity::Info,
            "critical" => Severity::Critical,
            _ => Severity::Warning,
        };
    }
    if let Some(r) = t.strings(ctx, "recommend", "an array of recommendation texts") {
        rule.recommendations = r.into_iter().map(|(s, _)| s).collect();
    }
    if let Some(a) = action(ctx, t) {
        rule.action = Some(a);
    }
    if let Some(p) = t.nonempty(ctx, "project", "a project name") {
        rule.selector.project = Some(p);
    }
    if let Some(l) = t.string_map(ctx, "labels") {
        rule.selector.labels = l.into_iter().collect();
    }
    if t.has("daemon") || t.has("host") {
        t.bad(
            ctx,
            if t.has("daemon") { "daemon" } else { "host" },
            format!(
                "the source of the built-in rule {:?} is fixed; expected kind = ... with \
                 every setting to make a rule of your own",
                rule.name
            ),
        );
    }
    report_rule_problems(ctx, t, &rule);
    Some(rule)
}

/// The rule's condition from its kind-specific keys.
fn condition(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    kind: &str,
    metric: Option<&str>,
) -> Option<Condition> {
    if matches!(kind, "threshold" | "rate" | "absent") && metric.is_none() && !t.has("metric") {
        t.missing(
            ctx,
            "metric",
            &format!("the metric a {kind} rule watches, e.g. \"process.cpu.utilization_ratio\""),
        );
    }
    match kind {
        "threshold" | "rate" => {
            let unit = if kind == "rate" {
                " (change per second)"
            } else {
                ""
            };
            let rate = kind == "rate";
            let above = metrics::threshold(ctx, t, "above", metric, rate);
            let below = metrics::threshold(ctx, t, "below", metric, rate);
            let clear = metrics::threshold(ctx, t, "clear", metric, rate);
            let window = if kind == "rate" {
                if !t.has("window") {
                    t.missing(
                        ctx,
                        "window",
                        "the span the rate is measured over, e.g. \"10m\"",
                    );
                }
                Some(t.duration(ctx, "window", SECOND, LONG)?)
            } else {
                None
            };
            let (comparison, raise) = match (above, below, t.has("above"), t.has("below")) {
                (_, _, true, true) => {
                    t.bad(
                        ctx,
                        "below",
                        "above and below are both set; expected exactly one of them",
                    );
                    return None;
                }
                (_, _, false, false) => {
                    t.missing(
                        ctx,
                        "above",
                        &format!("exactly one of above or below{unit}"),
                    );
                    return None;
                }
                (Some(a), _, _, _) => (Comparison::Above, a),
                (_, Some(b), _, _) => (Comparison::Below, b),
                _ => return None,
            };
            let clear = match clear {
                Some(c) if comparison.beyond(c, raise) => {
                    let (side, key) = match comparison {
                        Comparison::Above => ("at or below", "above"),
                        Comparison::Below => ("at or above", "below"),
                    };
                    t.bad(
                        ctx,
                        "clear",
                        format!("clear = {c} is on the wrong side; expected a level {side} {key} = {raise}"),
                    );
                    return None;
                }
                Some(c) => c,
                None => raise,
            };
            Some(match window {
                Some(window) => Condition::RateOfChange {
                    comparison,
                    raise,
                    clear,
                    window,
                },
                None => Condition::Threshold {
                    comparison,
                    raise,
                    clear,
                },
            })
        }
        "absent" => {
            if !t.has("after") {
                t.missing(
                    ctx,
                    "after",
                    "how long without a sample raises, e.g. \"30s\"",
                );
            }
            Some(Condition::Absence {
                after: t.duration(ctx, "after", 10 * MS, LONG)?,
            })
        }
        "restart_rate" => {
            for key in ["count", "window"] {
                if !t.has(key) {
                    t.missing(
                        ctx,
                        key,
                        if key == "count" {
                            "the restarts that raise, e.g. 3"
                        } else {
                            "the span they are counted in, e.g. \"10m\""
                        },
                    );
                }
            }
            let count = t.integer(ctx, "count", 1, 10_000);
            let window = t.duration(ctx, "window", SECOND, LONG);
            Some(Condition::RestartRate {
                count: count? as u32,
                window: window?,
            })
        }
        _ => {
            if !t.has("signal") {
                t.missing(
                    ctx,
                    "signal",
                    "an analyzer candidate, e.g. \"bottleneck.memory_leak\"",
                );
            }
            Some(Condition::Signal {
                name: t.nonempty(
                    ctx,
                    "signal",
                    "an analyzer candidate, e.g. \"bottleneck.memory_leak\"",
                )?,
            })
        }
    }
}

fn action(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<RuleAction> {
    const EXPECTED: &str = "\"restart\" or { exec = [\"program\", \"arg\"] }";
    let v = t.get("action")?;
    match v.get_ref() {
        DeValue::String(s) if s == "restart" => Some(RuleAction::RestartDaemon),
        DeValue::String(s) => {
            t.bad(
                ctx,
                "action",
                format!("{s:?} is not accepted; expected {EXPECTED}"),
            );
            None
        }
        DeValue::Table(inner) => {
            let a = Table::new(ctx, t.key_path("action"), v.span(), inner, &["exec"]);
            if !a.has("exec") {
                a.missing(ctx, "exec", "the program and its arguments");
            }
            let mut argv = a.argv(ctx, "exec")?.into_iter();
            Some(RuleAction::Exec {
                program: argv.next()?,
                args: argv.collect(),
            })
        }
        other => {
            t.bad(
                ctx,
                "action",
                format!(
                    "expected {EXPECTED}, found {} ({})",
                    type_name(other),
                    show(other)
                ),
            );
            None
        }
    }
}

fn sink(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<(String, SinkConfig)> {
    t.remember(ctx, "command");
    let name = t.required(ctx, "name", "a sink name");
    if !t.has("kind") {
        t.missing(ctx, "kind", &format!("one of {}", quoted_list(SINK_KINDS)));
    }
    let kind = t.choice(ctx, "kind", SINK_KINDS)?;
    kind_keys(ctx, t, &kind, SINK_KIND_KEYS);
    let timeout = t
        .duration(ctx, "timeout", MS, MAX_SINK_TIMEOUT)
        .unwrap_or(DEFAULT_SINK_TIMEOUT);
    let url = |ctx: &mut Ctx<'_>| -> Option<String> {
        if !t.has("url") {
            t.missing(ctx, "url", "an http:// or https:// URL");
        }
        let url = t.string(ctx, "url", "an http:// or https:// URL")?;
        let before = ctx.problems.len();
        check_url(ctx, t, "url", &url);
        (ctx.problems.len() == before).then_some(url)
    };
    let config = match kind.as_str() {
        "webhook" => {
            let headers = t.string_map(ctx, "headers").unwrap_or_default();
            for (k, v) in &headers {
                let name_ok = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                let value_ok = v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
                if !name_ok || !value_ok {
                    ctx.report(
                        &format!("{}.{k}", t.key_path("headers")),
                        &t.key_span("headers"),
                        format!("header {k:?} is not accepted; expected a name of letters, digits and -, and a value without control characters"),
                    );
                }
            }
            SinkConfig::Webhook {
                url: url(ctx)?,
                headers: headers.into_iter().collect(),
                timeout,
            }
        }
        "alertmanager" => {
            let generator_url = t.string(ctx, "generator_url", "a URL linking back to perfvisor");
            if let Some(g) = &generator_url {
                check_url(ctx, t, "generator_url", g);
            }
            const URLS: &str = "an array of http:// or https:// URLs, one per member of the \
                                Alertmanager cluster";
            let urls = match (t.has("url"), t.has("urls")) {
                (true, true) => {
                    t.bad(
                        ctx,
                        "urls",
                        "give either url (one Alertmanager) or urls (the members of a cluster), \
                         not both",
                    );
                    return None;
                }
                (false, true) => {
                    let urls = t.strings(ctx, "urls", URLS)?;
                    if urls.is_empty() {
                        t.bad(ctx, "urls", format!("the array is empty; expected {URLS}"));
                        return None;
                    }
                    let before = ctx.problems.len();
                    for (url, _) in &urls {
                        check_url(ctx, t, "urls", url);
                    }
                    let mut seen = std::collections::HashSet::new();
                    for (url, _) in &urls {
                        if !seen.insert(url.trim_end_matches('/')) {
                            t.bad(ctx, "urls", format!("{url:?} is listed twice"));
                        }
                    }
                    if ctx.problems.len() != before {
                        return None;
                    }
                    urls.into_iter().map(|(url, _)| url).collect()
                }
                _ => vec![url(ctx)?],
            };
            SinkConfig::Alertmanager {
                urls,
                timeout,
                generator_url,
            }
        }
        "exec" => {
            if !t.has("command") {
                t.missing(ctx, "command", "the program and its arguments (no shell)");
            }
            let mut argv = t.argv(ctx, "command")?.into_iter();
            SinkConfig::Exec {
                program: PathBuf::from(argv.next()?),
                args: argv.collect(),
                timeout,
            }
        }
        _ => SinkConfig::Log,
    };
    Some((name?, config))
}

/// Unix milliseconds of an RFC 3339 date-time with an offset.
fn timestamp(dt: &Datetime) -> Option<TimestampMs> {
    let date = dt.date?;
    let time = dt.time?;
    let offset_min = match dt.offset? {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = perfvisor_actors::types::days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let secs = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0))
        - offset_min * 60;
    Some(secs * 1000 + i64::from(time.nanosecond.unwrap_or(0) / 1_000_000))
}

fn instant(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, key: &str) -> Option<TimestampMs> {
    const EXPECTED: &str =
        "an RFC 3339 date-time with an offset, e.g. 2025-06-01T08:00:00Z or \"2025-06-01T10:00:00+02:00\"";
    let v = t.get(key)?;
    let dt = match v.get_ref() {
        DeValue::Datetime(dt) => *dt,
        DeValue::String(s) => match s.parse::<Datetime>() {
            Ok(dt) => dt,
            Err(_) => {
                t.bad(
                    ctx,
                    key,
                    format!("{s:?} is not a date-time; expected {EXPECTED}"),
                );
                return None;
            }
        },
        other => {
            t.bad(
                ctx,
                key,
                format!(
                    "expected {EXPECTED}, found {} ({})",
                    type_name(other),
                    show(other)
                ),
            );
            return None;
        }
    };
    let ts = timestamp(&dt);
    if ts.is_none() {
        t.bad(
            ctx,
            key,
            format!("{dt} has no date, time or offset; expected {EXPECTED}"),
        );
    }
    ts
}

fn silence(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<SilenceConfig> {
    let id = t.required(ctx, "id", "a silence id");
    if !t.has("matchers") {
        t.missing(
            ctx,
            "matchers",
            "a table of name = value, e.g. { daemon = \"indexer\" }",
        );
    }
    let matchers = t.string_map(ctx, "matchers").unwrap_or_default();
    if t.has("matchers") && matchers.is_empty() {
        t.bad(
            ctx,
            "matchers",
            "no matcher; expected at least one name = value (a silence must not mute everything)",
        );
    }
    for (k, v) in &matchers {
        if v.is_empty() {
            ctx.report(
                &format!("{}.{k}", t.key_path("matchers")),
                &t.key_span("matchers"),
                "the value is empty; expected a value (a trailing * matches a prefix)",
            );
        }
    }
    let comment = t.string(ctx, "comment", "a string").unwrap_or_default();
    let starts = instant(ctx, t, "starts");
    let ends_at = instant(ctx, t, "ends");
    let duration = t.duration(ctx, "duration", SECOND, LONG);
    let ends = match (t.has("ends"), t.has("duration")) {
        (true, true) => {
            t.bad(
                ctx,
                "duration",
                "ends and duration are both set; expected exactly one of them",
            );
            return None;
        }
        (false, false) => {
            t.missing(
                ctx,
                "ends",
                "exactly one of ends (a date-time) or duration (from the start)",
            );
            return None;
        }
        (true, false) => {
            let at = ends_at?;
            if let Some(s) = starts {
                if at <= s {
                    t.bad(
                        ctx,
                        "ends",
                        "the silence ends before (or when) it starts; expected ends after starts",
                    );
                    return None;
                }
            }
            SilenceEnd::At(at)
        }
        (false, true) => SilenceEnd::After(duration?),
    };
    Some(SilenceConfig {
        id: id?,
        matchers,
        starts,
        ends,
        comment,
    })
}
