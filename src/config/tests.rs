//! Tests of the config file: every invalid fixture fails with its place and what is
//! accepted, valid fixtures parse and map onto the embedding API, the default text is
//! complete, and the reload diff names exactly what changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::units::{format_duration, format_size, parse_duration, parse_size};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

/// Each invalid fixture fails with every fragment of its `.expect` file (key path, line and
/// column, what is accepted), and there are at least 15 kinds of mistake.
#[test]
fn invalid_fixtures_fail_with_place_and_expectation() {
    let files = fixtures("invalid");
    assert!(files.len() >= 15, "only {} invalid fixtures", files.len());
    for path in files {
        let name = name_of(&path);
        let text = std::fs::read_to_string(&path).expect("fixture is readable");
        let expect = std::fs::read_to_string(path.with_extension("expect"))
            .unwrap_or_else(|e| panic!("{name}: no .expect file: {e}"));
        let err = match parse(&text, &name) {
            Ok(_) => panic!("{name} was accepted"),
            Err(e) => e,
        };
        let shown = err.to_string();
        let fragments: Vec<&str> = expect
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        assert!(
            fragments.iter().any(|f| f.starts_with(':')
                && f.split(':')
                    .nth(1)
                    .is_some_and(|n| n.parse::<usize>().is_ok())),
            "{name}.expect names no :LINE:"
        );
        for f in fragments {
            assert!(
                shown.contains(f),
                "{name}: {f:?} is not in the error:\n{shown}"
            );
        }
        assert!(
            shown.lines().all(|l| l.starts_with(&format!("{name}:"))),
            "{name}: every line names the file:\n{shown}"
        );
    }
}

/// A file with several mistakes reports all of them at once, in file order.
#[test]
fn every_problem_is_reported_at_once() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/several_mistakes.toml"),
    )
    .expect("fixture");
    let err = parse(&text, "f.toml").expect_err("invalid");
    let lines: Vec<usize> = err.problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [2, 3, 8, 9, 16], "{err}");
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "supervisor.probe_interval",
            "supervisor.colour",
            "daemon[0].jitter",
            "daemon[0].restart",
            "rule[0].severity"
        ]
    );
}

/// Valid fixtures parse, and map to builder, rules, sinks and silences the engine accepts.
#[test]
fn valid_fixtures_parse_and_map() {
    let files = fixtures("valid");
    assert!(files.len() >= 2);
    for path in files {
        let name = name_of(&path);
        let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
        for rule in config.rules() {
            rule.validate()
                .unwrap_or_else(|e| panic!("{name}: rule {}: {e}", rule.name));
        }
        for silence in config.silences(1_700_000_000_000) {
            silence.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let _builder = config.apply(crate::Perfvisor::builder());
    }
}

/// The full fixture's every section lands in the typed config as written.
#[test]
fn full_fixture_is_read_as_written() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/full.toml");
    let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let s = &c.supervisor;
    assert_eq!(s.probe_interval, Duration::from_millis(500));
    assert_eq!(s.max_database_size, Some(2 << 30));
    assert_eq!(s.retention.alerts, Duration::from_secs(5400));
    assert_eq!(
        s.token,
        Some(TokenSource::File("/etc/perfvisor/token".into()))
    );
    assert!(!s.default_rules);
    let names: Vec<&str> = c.daemons.iter().map(|d| d.name()).collect();
    assert_eq!(names, ["db", "api", "worker.1"]);
    let api = &c.daemons[1];
    assert_eq!(api.managed.depends_on, ["db"]);
    assert_eq!(api.managed.checks.len(), 2);
    assert_eq!(api.managed.checks[0].failures, 2);
    assert_eq!(api.managed.logs.max_size, 50 << 20);
    assert_eq!(api.managed.slow_retry, Some(Duration::from_secs(900)));
    assert_eq!(c.daemons[0].managed.stop_signal, libc::SIGINT);
    match &c.attached[2].selector {
        AttachSelector::MatchCmdline(p) => assert!(p.regex().is_match("java -jar legacy.jar")),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.attached[3].selector, AttachSelector::Pid(1));
    let rules = c.rules();
    assert_eq!(rules.len(), 6);
    assert_eq!(
        rules[0].condition,
        crate::Condition::Threshold {
            comparison: crate::Comparison::Above,
            raise: 0.9,
            clear: 0.8
        }
    );
    assert_eq!(rules[0].flap.map(|f| f.max_flips), Some(4));
    assert_eq!(
        rules[2].action,
        Some(crate::RuleAction::Exec {
            program: "/usr/local/bin/page".into(),
            args: vec!["--team".into(), "checkout".into()],
        })
    );
    let sinks = c.sinks();
    assert_eq!(
        sinks.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["hook", "am", "pager", "log"]
    );
    let silences = c.silences(1_000);
    assert_eq!(silences[0].starts_ms, 1_893_456_000_000);
    assert_eq!(silences[0].ends_ms, 1_893_456_000_000 + 3_600_000);
    assert_eq!(
        (silences[1].starts_ms, silences[1].ends_ms),
        (1_000, 1_000 + 7_200_000)
    );
}

/// The default text parses to exactly the defaults of an empty file.
#[test]
fn default_config_text_is_the_defaults() {
    let from_text = parse(default_config_text(), "default").unwrap_or_else(|e| panic!("{e}"));
    let empty = parse("", "empty").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_text, empty);
    assert_eq!(empty.supervisor.listen.to_string(), "127.0.0.1:9465");
    assert_eq!(empty.retention(), crate::Retention::default());
}

/// The default text's commented-out examples parse too once uncommented, and name every key
/// the sections accept.
#[test]
fn default_config_examples_parse() {
    let uncommented: String = default_config_text()
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.starts_with(' ') && !rest.is_empty() => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // token and token_file exclude each other; keep the first.
    let text = uncommented.replace("token_file = \"/etc/perfvisor/token\"\n", "");
    let c = parse(&text, "examples").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.daemons.len(), 2);
    assert_eq!(c.attached.len(), 1);
    assert_eq!(c.rules().len(), 8);
    assert_eq!(c.sinks().len(), 5);
    assert_eq!(c.silences(0).len(), 2);
    let text = default_config_text();
    for key in super::compile::documented_keys() {
        let shown = [
            format!("{key} ="),
            format!("[{key}]"),
            format!(".{key}]"),
            format!("[[{key}]]"),
            format!(".{key}]]"),
        ]
        .iter()
        .any(|p| text.contains(p.as_str()));
        assert!(shown, "the default config does not show {key:?}");
    }
}

/// Changing one daemon's command changes exactly that daemon; nothing else.
#[test]
fn diff_names_only_the_changed_daemon() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/full.toml");
    let text = std::fs::read_to_string(path).expect("fixture");
    let old = parse(&text, "old").unwrap_or_else(|e| panic!("{e}"));
    let new_text = text.replace(
        "command = [\"/usr/local/bin/worker\"]",
        "command = [\"/usr/local/bin/worker\", \"--threads\", \"4\"]",
    );
    let new = parse(&new_text, "new").unwrap_or_else(|e| panic!("{e}"));
    let d = diff(&old, &new);
    assert_eq!(
        d,
        ConfigDiff {
            daemons_changed: vec!["worker.1".into()],
            ..ConfigDiff::default()
        }
    );
    assert!(diff(&old, &old).is_empty());
}

/// Added, removed and supervisor changes are each named.
#[test]
fn diff_names_added_removed_and_supervisor_keys() {
    let old = parse(
        "[supervisor]\nlisten = \"127.0.0.1:1\"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n[[attach]]\nname = \"n\"\npid = 7\n",
        "old",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let new = parse(
        "[supervisor]\nlisten = \"127.0.0.1:2\"\n[supervisor.retention]\nraw = \"1d\"\n[[daemon]]\nname = \"b\"\ncommand = [\"x\"]\n[[attach]]\nname = \"n\"\npid = 8\n[[rule]]\nname = \"r\"\nkind = \"signal\"\nsignal = \"bottleneck.cpu_bound\"\n",
        "new",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d = diff(&old, &new);
    assert_eq!(d.daemons_added, ["b"]);
    assert_eq!(d.daemons_removed, ["a"]);
    assert_eq!(d.attach_changed, ["n"]);
    assert!(d.rules_changed && !d.sinks_changed && !d.silences_changed);
    assert_eq!(d.supervisor_changed, ["listen", "retention.raw"]);
}

/// A changed `[api]` key is named for a restart (the API is built at start), tokens by key
/// only.
#[test]
fn diff_names_api_keys() {
    let old = parse(
        "[api]
read_token = \"r1\"
",
        "old",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let new = parse(
        "[api]
read_token = \"r2\"
allowed_hosts = [\"perf.example.org\"]
",
        "new",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d = diff(&old, &new);
    assert_eq!(
        d.supervisor_changed,
        ["api.read_token", "api.allowed_hosts"]
    );
    assert_eq!(new.api.allowed_hosts, ["perf.example.org"]);
    let bad = parse(
        "[api]
allowed_hosts = [\"evil.com:80\"]
max_connections = 3
",
        "bad",
    )
    .unwrap_err();
    let text = format!("{bad:?}");
    assert!(
        text.contains("not a host name") && text.contains("max_connections"),
        "{text}"
    );
}

/// `[api] otlp_service_attribute` and `otlp_pid_attribute` name the resource attributes
/// of an OTLP sender (defaults `service.name`, `process.pid`); an empty one is refused with
/// its key; a change is a restart-needing change.
#[test]
fn otlp_attributes_are_read_and_checked() {
    let old = parse("", "old").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(old.api.otlp, crate::http::OtlpMapping::default());
    let new = parse(
        "[api]
otlp_service_attribute = \"app.id\"
otlp_pid_attribute = \"pid\"
",
        "new",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(new.api.otlp.service_attribute, "app.id");
    assert_eq!(new.api.otlp.pid_attribute, "pid");
    assert_eq!(
        diff(&old, &new).supervisor_changed,
        ["api.otlp_*_attribute"]
    );
    let bad = parse("[api]\notlp_pid_attribute = \" \"\n", "bad").unwrap_err();
    let text = format!("{bad:?}");
    assert!(
        text.contains("otlp_pid_attribute") && text.contains("empty"),
        "{text}"
    );
}

/// Durations and sizes read as people write them, and write back the same way.
#[test]
fn durations_and_sizes() {
    for (text, ms) in [
        ("250ms", 250),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("7d", 604_800_000),
        ("1w", 604_800_000),
        ("0s", 0),
        ("1h0m5s", 3_605_000),
    ] {
        assert_eq!(
            parse_duration(text),
            Some(Duration::from_millis(ms)),
            "{text}"
        );
    }
    for bad in [
        "",
        "5",
        "1.5s",
        "30m1h",
        "1h1h",
        "5 minutes",
        "-1s",
        "1y",
        "99999999999999999999s",
    ] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
    assert_eq!(
        format_duration(Duration::from_millis(5_400_250)),
        "1h30m250ms"
    );
    assert_eq!(format_duration(Duration::from_secs(30 * 86_400)), "30d");
    for (text, bytes) in [
        ("512B", 512),
        ("64KiB", 65_536),
        ("10MiB", 10 << 20),
        ("2GiB", 2 << 30),
        ("1GB", 1_000_000_000),
        ("3 KB", 3_000),
        ("1TiB", 1 << 40),
    ] {
        assert_eq!(parse_size(text), Some(bytes), "{text}");
    }
    for bad in ["", "10", "10mb", "1.5GiB", "GiB", "99999999999TiB"] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
    assert_eq!(format_size(10 << 20), "10MiB");
    assert_eq!(format_size(1_000), "1000B");
}

/// The error shows `FILE:LINE:COL: PATH: MESSAGE`, one problem per line, even for a message
/// that spans lines.
#[test]
fn error_display_is_one_line_per_problem() {
    let err = ConfigError {
        file: "pv.toml".into(),
        problems: vec![
            Problem {
                path: "daemon[2].restart".into(),
                line: 12,
                column: 11,
                message: "bad\n  value".into(),
            },
            Problem {
                path: String::new(),
                line: 0,
                column: 0,
                message: "cannot read".into(),
            },
        ],
        warnings: vec![],
    };
    assert_eq!(
        err.to_string(),
        "pv.toml:12:11: daemon[2].restart: bad value\npv.toml: cannot read"
    );
}

/// A missing file is one problem naming the file, without a line.
#[test]
fn missing_file_is_reported() {
    let err = load("/nonexistent/perfvisor.toml").expect_err("no such file");
    assert_eq!(err.problems.len(), 1);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/perfvisor.toml: cannot read"),
        "{err}"
    );
}

/// Columns count characters, not bytes, and lines are 1-based.
#[test]
fn positions_count_characters() {
    let err = parse("# é\n[supervisor]\nlisten = \"é\"\n", "f").expect_err("bad listen");
    assert_eq!((err.problems[0].line, err.problems[0].column), (3, 10));
}

/// Kind-specific mistakes of rules and sinks are named with the kind that takes the key.
#[test]
fn kind_specific_keys() {
    let err = parse(
        "[[sink]]\nname = \"l\"\nkind = \"log\"\nurl = \"http://x\"\n[[rule]]\nname = \"r\"\nkind = \"restart_rate\"\ncount = 0\nwindow = \"1m\"\nproject = \"p\"\n",
        "f",
    )
    .expect_err("invalid");
    let shown = err.to_string();
    assert!(
        shown.contains("f:4:1: sink[0].url: url is not accepted with kind = \"log\""),
        "{shown}"
    );
    assert!(
        shown.contains("f:8:9: rule[0].count: 0 is out of range"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "f:10:1: rule[0].project: project is not accepted with kind = \"restart_rate\""
        ),
        "{shown}"
    );
}

/// `enabled = false` on a built-in's name switches that built-in off and keeps the rest of
/// it; a built-in named without a kind is tuned; `enabled = true` on `app_anomaly` switches
/// it on.
#[test]
fn enabled_switches_builtins_off_and_on() {
    let c = parse(
        "[[rule]]\nname = \"high_cpu\"\nenabled = false\n\
         [[rule]]\nname = \"app_anomaly\"\nenabled = true\ncooldown = \"1h\"\n",
        "f",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rules = c.rules();
    assert_eq!(
        rules[0],
        perfvisor_actors::alerts::high_cpu_rule().enabled(false)
    );
    assert!(rules[1].enabled);
    assert_eq!(rules[1].cooldown, std::time::Duration::from_secs(3600));
    assert_eq!(
        rules[1].condition,
        perfvisor_actors::alerts::app_anomaly_rule().condition
    );
    // A rule of one's own may say enabled = true, or false with a kind (kept, listed off).
    let own = parse(
        "[[rule]]\nname = \"mine\"\nkind = \"signal\"\nsignal = \"anomaly.*\"\nhost = true\nenabled = true\n",
        "f",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(own.rules()[0].enabled);
}

/// `enabled = false` on a name no built-in has is refused, with the closest built-in and
/// the list of them.
#[test]
fn enabled_false_needs_a_builtin_name() {
    let err = parse("[[rule]]\nname = \"hihg_cpu\"\nenabled = false\n", "f")
        .expect_err("no such built-in");
    let shown = err.to_string();
    assert!(shown.contains("rule[0].enabled"), "{shown}");
    assert!(shown.contains("did you mean \"high_cpu\"?"), "{shown}");
    assert!(shown.contains("\"daemon_down\""), "{shown}");
    // Tuning keys that change what a built-in watches are refused.
    let err =
        parse("[[rule]]\nname = \"high_cpu\"\nabove = 0.5\n", "f").expect_err("above needs a kind");
    assert!(err.to_string().contains("rule[0].above"), "{err}");
}

/// `[judgement]` takes durations, sizes and ratios as people write them into the engine's
/// `JudgeConfig`; a bad value names the key, the line and what is accepted.
#[test]
fn judgement_section_compiles_and_names_bad_values() {
    let text = "[judgement]\ncpu_sustain = \"2m\"\nleak_floor = \"4MiB\"\n\
                latency_min_increase = \"50ms\"\nurgency_critical = \"5m\"\n";
    let config = parse(text, "judgement").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.judgement.cpu_sustain_ms, 120_000);
    assert_eq!(
        config.judgement.leak_floor_bytes_per_min,
        4.0 * 1024.0 * 1024.0
    );
    assert!((config.judgement.latency_min_increase_s - 0.05).abs() < 1e-12);
    assert_eq!(config.judgement.urgency_critical_ms, 300_000);
    assert_eq!(config.judgement.min_trend_span_ms, 120_000, "default kept");

    let err = parse(
        "[judgement]\ncpu_bound = 2000\nurgency_critical = \"2h\"\n",
        "bad",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bad:2:") && err.contains("cpu_bound"), "{err}");
    assert!(err.contains("urgency_critical"), "{err}");
}

/// The rule at line 5 of a config on `metric` with `threshold` (a TOML `key = value` line).
fn rule_text(metric: &str, threshold: &str) -> String {
    format!("[[rule]]\nname = \"r\"\nkind = \"threshold\"\nmetric = \"{metric}\"\n{threshold}\n")
}

fn raise_of(text: &str) -> f64 {
    let config = parse(text, "pv.toml").unwrap_or_else(|e| panic!("{e}"));
    match config.alert_rules[0].condition {
        crate::Condition::Threshold { raise, .. } => raise,
        ref other => panic!("{other:?}"),
    }
}

/// A misspelt metric is accepted (an application could push it) with a warning at its line
/// naming the closest metric perfvisor produces; known names and profile-guard names are not
/// warned about, and a name of the app's own gets a warning without a suggestion.
#[test]
fn unknown_metric_warns_with_the_closest_name() {
    let typo = rule_text("process.cpu.utilisation_ratio", "above = 0.9");
    let loaded = read_text(&typo, "pv.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let text = loaded.render_warnings(&loaded.warnings);
    assert!(
        text.starts_with("pv.toml:4:10: rule[0].metric: warning: perfvisor produces no metric \"process.cpu.utilisation_ratio\"; did you mean \"process.cpu.utilization_ratio\"?"),
        "{text}"
    );
    // Words in another order, or a part missing, still find it.
    assert_eq!(
        metrics::suggest("process.cpu.utilization"),
        Some("process.cpu.utilization_ratio")
    );
    assert_eq!(
        metrics::suggest("process.memory.rss_bytes"),
        Some("process.memory.usage_bytes")
    );
    assert_eq!(
        metrics::suggest("cpu.utilization_ratio").map(|s| s.ends_with(".cpu.utilization_ratio")),
        Some(true)
    );
    // An application's own names are not taken for perfvisor's.
    for own in [
        "search.queue_depth",
        "api.latency_seconds",
        "search.memory.usage_bytes",
    ] {
        assert_eq!(metrics::suggest(own), None, "{own}");
    }
    for known in [
        "process.cpu.utilization_ratio",
        "system.filesystem.usage_bytes",
        "check.latency_seconds",
        "app.operation.checkout.duration_seconds",
    ] {
        let loaded = read_text(&rule_text(known, "above = 0.5"), "pv.toml").unwrap();
        assert!(loaded.warnings.is_empty(), "{known}: {:?}", loaded.warnings);
    }
    let app = read_text(&rule_text("search.queue_depth", "above = 50"), "pv.toml").unwrap();
    assert!(
        app.render_warnings(&app.warnings)
            .contains("the rule sees it only if an application pushes it"),
        "{}",
        app.render_warnings(&app.warnings)
    );
    // Warnings travel with errors too.
    let both = format!("{typo}severity = \"urgent\"\n");
    let err = parse(&both, "pv.toml").unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.warnings.len(), 1);
    assert!(err
        .to_string()
        .contains("warning: perfvisor produces no metric"));
}

/// A ratio threshold outside 0–1 is refused naming the value and the likely meant one;
/// rates of ratios are not bounded; the per-core CPU ratio goes up to the machine's cores.
#[test]
fn ratio_thresholds_are_zero_to_one() {
    let err = parse(
        &rule_text("system.cpu.utilization_ratio", "above = 90"),
        "pv.toml",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("pv.toml:5:9: rule[0].above: above = 90 is out of range for \"system.cpu.utilization_ratio\": ratios are 0–1; did you mean 0.9?"),
        "{text}"
    );
    let err = parse(
        &rule_text("process.cpu.utilization_ratio", "above = 9000"),
        "pv.toml",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("ratios are 0–1 (this one is per core"),
        "{err}"
    );
    let err = parse(&rule_text("disk.busy_ratio", "below = -1"), "pv.toml").unwrap_err();
    assert!(
        err.to_string().contains("expected a number from 0 to 1"),
        "{err}"
    );
    let err = parse(
        &rule_text("system.cpu.utilization_ratio", "above = 0.9\nclear = 80"),
        "pv.toml",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("rule[0].clear: clear = 80"),
        "{err}"
    );
    assert_eq!(
        raise_of(&rule_text("system.cpu.utilization_ratio", "above = 0.9")),
        0.9
    );
    assert_eq!(
        raise_of(&rule_text("process.cpu.utilization_ratio", "above = 1")),
        1.0
    );
    let rate = "[[rule]]\nname = \"r\"\nkind = \"rate\"\nmetric = \"system.cpu.utilization_ratio\"\nabove = 5\nwindow = \"1m\"\n";
    parse(rate, "pv.toml").unwrap_or_else(|e| panic!("{e}"));
}

/// Thresholds of `*_bytes` metrics take sizes, of `*_seconds` metrics durations, both as
/// people write them; other metrics refuse them, saying which metrics take them.
#[test]
fn thresholds_in_the_metric_unit() {
    let bytes = "process.memory.usage_bytes";
    assert_eq!(
        raise_of(&rule_text(bytes, "above = \"16MiB\"")),
        16_777_216.0
    );
    assert_eq!(
        raise_of(&rule_text(bytes, "above = \"1.5 GiB\"")),
        1_610_612_736.0
    );
    assert_eq!(raise_of(&rule_text(bytes, "above = \"512KiB\"")), 524_288.0);
    assert_eq!(raise_of(&rule_text(bytes, "above = 1024")), 1024.0);
    assert_eq!(
        raise_of(&rule_text(
            "process.disk.write_bytes_per_second",
            "above = \"10MB\""
        )),
        10_000_000.0
    );
    assert_eq!(
        raise_of(&rule_text("check.latency_seconds", "above = \"250ms\"")),
        0.25
    );
    assert_eq!(
        raise_of(&rule_text(
            "app.operation.q.duration_seconds",
            "above = \"2s\""
        )),
        2.0
    );
    let err = parse(&rule_text(bytes, "above = \"16 mebibytes\""), "pv.toml").unwrap_err();
    assert!(
        err.to_string().contains(
            "\"16 mebibytes\" is not a size; expected a number of bytes or a size such as"
        ),
        "{err}"
    );
    let err = parse(
        &rule_text("process.thread.count", "above = \"16MiB\""),
        "pv.toml",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("pv.toml:5:9: rule[0].above: \"16MiB\" is a size, but \"process.thread.count\" is not measured in bytes or seconds (sizes go with *_bytes metrics, durations with *_seconds metrics); expected a number"),
        "{err}"
    );
    let err = parse(&rule_text(bytes, "above = \"2s\""), "pv.toml").unwrap_err();
    assert!(err.to_string().contains("\"2s\" is not a size"), "{err}");
}

/// A config whose managed daemon, database and address are described by `parts`, checked
/// against this machine: the problems' text, empty when there is none.
fn machine_problems(text: &str, which: MachineCheck) -> String {
    let loaded = read_text(text, "pv.toml").unwrap_or_else(|e| panic!("{e}"));
    match loaded.check_machine(which) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

fn machine_config(db: &Path, listen: &str, daemon: &str) -> String {
    format!(
        "[supervisor]\ndatabase = \"{}\"\nlisten = \"{listen}\"\n\n[[daemon]]\nname = \"api\"\n{daemon}\n",
        db.display()
    )
}

/// A config this machine can run passes: a program on PATH, an executable relative to cwd,
/// an existing user, a database directory, an existing SQLite database, a free port.
#[test]
fn machine_checks_pass_a_runnable_config() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pv.db");
    let daemon = format!(
        "command = [\"sh\", \"-c\", \"true\"]\ncwd = \"{}\"\nuser = \"root\"",
        dir.path().display()
    );
    let text = machine_config(&db, "127.0.0.1:0", &daemon);
    assert_eq!(machine_problems(&text, MachineCheck::All), "");
    // An existing database file, and an empty one, are fine.
    std::fs::write(&db, b"").unwrap();
    assert_eq!(machine_problems(&text, MachineCheck::All), "");
    let mut sqlite = b"SQLite format 3\0".to_vec();
    sqlite.extend([0u8; 84]);
    std::fs::write(&db, sqlite).unwrap();
    assert_eq!(machine_problems(&text, MachineCheck::All), "");
    // A program relative to cwd.
    use std::os::unix::fs::PermissionsExt;
    let app = dir.path().join("app");
    std::fs::write(&app, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    let relative = format!("command = [\"./app\"]\ncwd = \"{}\"", dir.path().display());
    assert_eq!(
        machine_problems(
            &machine_config(&db, "127.0.0.1:0", &relative),
            MachineCheck::All
        ),
        ""
    );
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = machine_problems(
        &machine_config(&db, "127.0.0.1:0", &relative),
        MachineCheck::All,
    );
    assert!(text.contains("pv.toml:7:11: daemon[0].command: "), "{text}");
    assert!(text.contains("is not executable (mode 644)"), "{text}");
}

/// Each thing a managed daemon needs that this machine lacks is a problem at its key's line:
/// a missing program (by path and by name), a missing cwd, a missing user.
#[test]
fn machine_checks_name_what_a_daemon_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pv.db");
    let missing = dir.path().join("nope");
    let cases = [
        (
            format!("command = [\"{}\"]", missing.display()),
            "pv.toml:7:11: daemon[0].command: program ",
            "does not exist; expected an executable file",
        ),
        (
            "command = [\"no-such-program-perfvisor\"]".to_owned(),
            "pv.toml:7:11: daemon[0].command: program \"no-such-program-perfvisor\" is not found on PATH",
            "expected an executable file",
        ),
        (
            format!(
                "command = [\"/bin/sh\"]\ncwd = \"{}\"",
                missing.display()
            ),
            "pv.toml:8:7: daemon[0].cwd: directory ",
            "does not exist; expected the daemon's working directory",
        ),
        (
            "command = [\"/bin/sh\"]\nuser = \"no-such-user-perfvisor\"".to_owned(),
            "pv.toml:8:8: daemon[0].user: user \"no-such-user-perfvisor\" does not exist",
            "",
        ),
    ];
    for (daemon, place, what) in cases {
        let text = machine_problems(
            &machine_config(&db, "127.0.0.1:0", &daemon),
            MachineCheck::All,
        );
        assert!(text.contains(place), "{daemon}: {text}");
        assert!(text.contains(what), "{daemon}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}

/// The database must be creatable or a SQLite file: a missing directory (not created), a
/// directory as database and a file of something else are problems at `database`'s line.
#[test]
fn machine_checks_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = "command = [\"/bin/sh\"]";
    let missing_dir = dir.path().join("missing").join("pv.db");
    let text = machine_problems(
        &machine_config(&missing_dir, "127.0.0.1:0", daemon),
        MachineCheck::All,
    );
    assert!(
        text.contains(&format!(
            "pv.toml:2:12: supervisor.database: the database's directory {} does not exist (perfvisor does not create it)",
            dir.path().join("missing").display()
        )),
        "{text}"
    );
    assert!(!dir.path().join("missing").exists());
    let text = machine_problems(
        &machine_config(dir.path(), "127.0.0.1:0", daemon),
        MachineCheck::All,
    );
    assert!(
        text.contains("pv.toml:2:12: supervisor.database: database ")
            && text.contains("is a directory; expected the path of a SQLite file"),
        "{text}"
    );
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a database, but long enough to have a header").unwrap();
    let text = machine_problems(
        &machine_config(&notes, "127.0.0.1:0", daemon),
        MachineCheck::All,
    );
    assert!(
        text.contains("pv.toml:2:12: supervisor.database: ")
            && text.contains("is not a SQLite database"),
        "{text}"
    );
}

/// An address in use is a problem at `listen`'s line, saying it may be a running perfvisor;
/// `BeforeLock` leaves it out, `Listen` checks only it.
#[test]
fn machine_checks_the_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let text = machine_config(
        &dir.path().join("pv.db"),
        &listen,
        "command = [\"/bin/sh\"]",
    );
    let all = machine_problems(&text, MachineCheck::All);
    assert!(
        all.contains(&format!(
            "pv.toml:3:10: supervisor.listen: {listen} is already in use, perhaps by a perfvisor already running"
        )),
        "{all}"
    );
    assert_eq!(machine_problems(&text, MachineCheck::BeforeLock), "");
    assert_eq!(machine_problems(&text, MachineCheck::Listen), all);
}

/// An address held by the live perfvisor running on this very database (as its lock file
/// says) is only a warning for `check-config` (a check before a reload), but a problem at
/// `run`, and any other holder's pid or address is a problem.
#[test]
fn address_of_the_running_perfvisor_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pv.db");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let text = machine_config(&db, &listen, "command = [\"/bin/sh\"]");
    let loaded = read_text(&text, "pv.toml").unwrap();
    let lock = crate::lock_path(&db);
    // The test runner's parent stands for the running perfvisor: alive, and not this process.
    let running = std::os::unix::process::parent_id();
    std::fs::write(&lock, format!("pid {running}, listening on {listen}\n")).unwrap();
    let warnings = loaded
        .check_machine(MachineCheck::All)
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = loaded.render_warnings(&warnings);
    assert!(
        shown.contains("pv.toml:3:10: supervisor.listen: warning: ")
            && shown.contains("in use by the perfvisor running on this database")
            && shown.contains("fine for `perfvisor reload`"),
        "{shown}"
    );
    assert!(loaded.check_machine(MachineCheck::Listen).is_err());
    // Another address, a pid that is gone, or this very process is someone else.
    std::fs::write(&lock, "pid 1, listening on 127.0.0.1:1\n").unwrap();
    assert!(loaded.check_machine(MachineCheck::All).is_err());
    for pid in [u32::MAX, std::process::id()] {
        std::fs::write(&lock, format!("pid {pid}, listening on {listen}\n")).unwrap();
        assert!(loaded.check_machine(MachineCheck::All).is_err());
    }
}

/// The programs perfvisor runs besides the daemons — command health checks, exec sinks,
/// exec rule actions — must exist too, each reported at its key's line.
#[test]
fn machine_checks_the_other_programs() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[daemon.check]]\nkind = \"command\"\ncommand = [\"/no/check\"]\n\n\
         [[sink]]\nname = \"page\"\nkind = \"exec\"\ncommand = [\"no-such-pager-perfvisor\"]\n\n\
         [[rule]]\nname = \"high_cpu\"\naction = {{ exec = [\"/no/action\"] }}\n",
        machine_config(
            &dir.path().join("pv.db"),
            "127.0.0.1:0",
            "command = [\"sh\"]"
        )
    );
    let shown = machine_problems(&text, MachineCheck::All);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(
        lines[0].starts_with(
            "pv.toml:11:11: daemon[0].check[0].command: program /no/check does not exist"
        ),
        "{shown}"
    );
    assert!(
        lines[1].starts_with("pv.toml:16:11: sink[0].command: program \"no-such-pager-perfvisor\" is not found on PATH"),
        "{shown}"
    );
    assert!(
        lines[2].starts_with("pv.toml:20:10: rule[0].action: program /no/action does not exist"),
        "{shown}"
    );
}

/// Starting a daemon as another user needs CAP_SETUID and CAP_SETGID (root has them) unless
/// the ids are perfvisor's own; the identity is read from `/proc/self/status`.
#[test]
fn switching_user_needs_the_capabilities() {
    let status = |uid: u32, caps: &str| {
        format!("Name:\tperfvisor\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t100\t100\t100\t100\nCapEff:\t{caps}\n")
    };
    let root = system::identity(&status(0, "000001ffffffffff")).unwrap();
    assert!(root.may_run_as(26, 26));
    let plain = system::identity(&status(1000, "0000000000000000")).unwrap();
    assert!(!plain.may_run_as(26, 26));
    assert!(plain.may_run_as(1000, 100));
    let setid_only = system::identity(&status(1000, "00000000000000c0")).unwrap();
    assert!(setid_only.may_run_as(26, 26));
    let setuid_only = system::identity(&status(1000, "0000000000000080")).unwrap();
    assert!(!setuid_only.may_run_as(26, 26));
    assert!(system::identity("Name:\tx\n").is_none());
    // This process's own status reads.
    let me = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(system::identity(&me).is_some());
}

/// `pick` parses; a pidfile may carry one match to check its process, other pairs are errors.
#[test]
fn attach_pick_and_pidfile_check() {
    let c = parse(
        "[[attach]]\nname = \"a\"\nmatch_exe = \"^x$\"\npick = \"oldest\"\n\
         [[attach]]\nname = \"b\"\npidfile = \"/run/b.pid\"\nmatch_cmdline = \"^b \"\n",
        "pick",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.attached[0].pick, Pick::Oldest);
    assert_eq!(c.attached[0].pidfile_check, None);
    assert_eq!(c.attached[1].pick, Pick::Only);
    assert_eq!(
        c.attached[1].selector,
        AttachSelector::Pidfile("/run/b.pid".into())
    );
    assert!(matches!(
        &c.attached[1].pidfile_check,
        Some(AttachSelector::MatchCmdline(p)) if p.regex().is_match("b --serve")
    ));
    let e = parse(
        "[[attach]]\nname = \"c\"\npidfile = \"/run/c.pid\"\nmatch_exe = \"x\"\nmatch_cmdline = \"y\"\n",
        "three",
    )
    .expect_err("three selectors");
    assert!(e.to_string().contains("are all set"), "{e}");
    let e = parse(
        "[[attach]]\nname = \"d\"\nmatch_exe = \"x\"\npick = \"newest\"\n",
        "bad pick",
    )
    .expect_err("unknown pick");
    assert!(e.to_string().contains("oldest"), "{e}");
}

/// An Alertmanager sink takes `url` or `urls` (the members of a cluster), not both, not an
/// empty or repeated list, and each URL is checked.
#[test]
fn alertmanager_sink_urls() {
    let sink = |keys: &str| format!("[[sink]]\nname = \"am\"\nkind = \"alertmanager\"\n{keys}\n");
    let c = parse(
        &sink("urls = [\"http://127.0.0.1:9093\", \"http://127.0.0.1:9094\"]"),
        "t",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    match &c.sinks()[0].1 {
        SinkConfig::Alertmanager { urls, .. } => assert_eq!(urls.len(), 2),
        other => panic!("{other:?}"),
    }
    for (keys, needle) in [
        (
            "url = \"http://a:1\"\nurls = [\"http://b:1\"]",
            "either url (one Alertmanager) or urls",
        ),
        ("urls = []", "the array is empty"),
        (
            "urls = [\"http://a:1\", \"http://a:1/\"]",
            "\"http://a:1/\" is listed twice",
        ),
        ("urls = [\"http://a:1\", \"ftp://b\"]", "ftp://b"),
        ("urls = [\"http://a:1\", 3]", "expected a string, found"),
    ] {
        let err = parse(&sink(keys), "t").unwrap_err().to_string();
        assert!(err.contains(needle), "{keys}: {err}");
    }
}
