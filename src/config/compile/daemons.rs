//! `[[daemon]]` and `[[attach]]`: a managed daemon compiled straight into the manager's
//! [`ManagedSpec`] (checks, logs, restart policy), `depends_on` checked for unknown names
//! and cycles, and an attached daemon's selector.

use super::*;
/// A valid daemon name, or a problem.
fn daemon_name(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, names: &mut Names) -> String {
    let Some(name) = t.required_name(ctx, "name") else {
        return String::new();
    };
    if let Some(first) = names.daemons.get(&name) {
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

pub(super) fn daemon(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    names: &mut Names,
    database: &std::path::Path,
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
    let mut d = ManagedSpec::new(
        name,
        t.argv(ctx, "command").unwrap_or_default(),
        crate::config::default_log_dir(database),
    );
    d.env = t.string_map(ctx, "env").unwrap_or_default();
    d.cwd = t.path(ctx, "cwd");
    d.user = t.nonempty(ctx, "user", "a user name");
    d.slow_retry = t.duration(ctx, "slow_retry", SECOND, DAY);
    let project = t.nonempty(ctx, "project", "a project name");
    let labels = t.string_map(ctx, "labels").unwrap_or_default();
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
                crate::config::format_duration(d.backoff_max),
                crate::config::format_duration(d.backoff_initial)
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
            "INT" => libc::SIGINT,
            "QUIT" => libc::SIGQUIT,
            "HUP" => libc::SIGHUP,
            "KILL" => libc::SIGKILL,
            "USR1" => libc::SIGUSR1,
            "USR2" => libc::SIGUSR2,
            _ => libc::SIGTERM,
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
        if let Some(dir) = l.path(ctx, "dir") {
            d.logs.dir = dir;
        }
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
    let daemon = DaemonConfig {
        managed: d,
        project,
        labels,
    };
    (daemon, deps)
}

fn check(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<CheckSpec> {
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
                crate::config::format_duration(timeout),
                crate::config::format_duration(interval)
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
                argv: t.argv(ctx, "command")?,
            }
        }
    };
    Some(CheckSpec {
        kind,
        interval,
        timeout,
        failures,
        readiness,
    })
}

/// Checks `depends_on`: every name a managed daemon, and no cycle.
pub(super) fn check_dependencies(
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
            if *dep == daemons[i].managed.name {
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
        .map(|(i, d)| (d.name(), i))
        .collect();
    let edges: Vec<Vec<usize>> = daemons
        .iter()
        .enumerate()
        .map(|(i, d)| {
            d.managed
                .depends_on
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
                            .map(|(n, _)| daemons[*n].name())
                            .collect();
                        cycle.push(daemons[to].name());
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

pub(super) fn attach(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    names: &mut Names,
) -> Option<AttachConfig> {
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
