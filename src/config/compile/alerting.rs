//! `[[rule]]`, `[[sink]]` and `[[silence]]`: alert rules (new ones and tuned built-ins),
//! their conditions and actions, notification sinks, and silences with their times.

use super::*;
pub(super) fn rule(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    names: &mut Names,
) -> Option<ThresholdRule> {
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

pub(super) fn sink(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<(String, SinkConfig)> {
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
            let headers = t.headers(ctx, "headers", &[]);
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

pub(super) fn silence(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<SilenceConfig> {
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
