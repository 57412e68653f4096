//! `perfvisor replay`: recorded series (CSV files, or a range of perfvisor's own history)
//! through the real analyzer and alert rules on a simulated clock, printing the alerts that
//! would have fired, with their times, and each daemon's report at the end. Operators use it
//! to tune rules on their own data; the NAB precision figures come from it. Runs offline:
//! no running instance is needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use perfvisor_actors::alerts::{effective_rules, RuleEngine, ThresholdRule};
use perfvisor_actors::analyzer::signals::firing_candidate;
use perfvisor_actors::analyzer::JudgeConfig;
use perfvisor_actors::replay::{
    parse_csv, parse_timestamp, replay, ReplayConfig, ReplayOutcome, ReplaySeries,
};
use perfvisor_actors::storage::StorageReader;
use perfvisor_actors::types::{
    Alert, AlertState, DaemonId, Labels, MetricKind, SeriesKey, Source, TimestampMs,
};
use serde_json::json;

use super::CliError;

/// `perfvisor replay` arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// CSV files of `timestamp,value` lines (header optional; timestamps in epoch seconds or
    /// milliseconds, or YYYY-MM-DD HH:MM:SS[.fff] in UTC), each one metric of the daemon.
    #[arg(required_unless_present = "from_db")]
    files: Vec<PathBuf>,
    /// The daemon the series belong to (with --from-db: the daemon whose history to replay).
    #[arg(long, default_value = "replay")]
    daemon: String,
    /// The metric of each file, in file order (default: app.<file name without .csv>).
    #[arg(long)]
    metric: Vec<String>,
    /// A project label for the CSV series, so project-scoped rules apply.
    #[arg(long)]
    project: Option<String>,
    /// Replay the daemon's history from this perfvisor database instead of CSV files.
    #[arg(long, conflicts_with = "files", value_name = "PATH")]
    from_db: Option<PathBuf>,
    /// With --from-db: where to start, as a time ago (2h, 7d), a UTC time
    /// (YYYY-MM-DD HH:MM:SS) or epoch seconds. Default: the oldest sample.
    #[arg(long, requires = "from_db")]
    since: Option<String>,
    /// With --from-db: where to stop, in the same forms. Default: now.
    #[arg(long, requires = "from_db")]
    until: Option<String>,
    /// Use this config file's rules, `default_rules` and `judge_interval`.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Run the configured rules only. Without it, replay also follows the anomaly
    /// candidates of every replayed series (a rule `anomaly.<metric>` each).
    #[arg(long)]
    rules_only: bool,
    /// Print JSON: alerts, candidates, reports.
    #[arg(long)]
    json: bool,
}

fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A `--since`/`--until` value: a time ago, or an instant.
fn parse_when(flag: &str, text: &str, now: TimestampMs) -> Result<TimestampMs, CliError> {
    if let Some(d) = perfvisor::config::parse_duration(text) {
        let ago = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        return Ok(now.saturating_sub(ago));
    }
    parse_timestamp(text).ok_or_else(|| {
        CliError::usage(format!(
            "{flag} {text:?} is neither a time ago (30m, 2h, 7d) nor a time \
             (YYYY-MM-DD HH:MM:SS in UTC, or epoch seconds)"
        ))
    })
}

/// The metric a CSV file is replayed as: `app.<stem>`.
fn metric_of(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "series".to_string(), |s| s.to_string_lossy().to_string());
    format!("app.{stem}")
}

fn csv_series(args: &ReplayArgs) -> Result<Vec<ReplaySeries>, CliError> {
    if args.metric.len() > args.files.len() {
        return Err(CliError::usage(format!(
            "{} --metric given for {} file(s); give at most one per file, in file order",
            args.metric.len(),
            args.files.len()
        )));
    }
    let labels = match &args.project {
        Some(p) => Labels::from_pairs([("project", p.as_str())]),
        None => Labels::empty(),
    };
    let mut out = Vec::new();
    for (i, path) in args.files.iter().enumerate() {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("{name}: cannot read it: {e}")))?;
        let samples = parse_csv(&name, &text).map_err(|e| CliError::usage(e.to_string()))?;
        let metric = args
            .metric
            .get(i)
            .cloned()
            .unwrap_or_else(|| metric_of(path));
        out.push(ReplaySeries {
            key: SeriesKey::new(
                Source::Daemon(DaemonId::new(&args.daemon)),
                metric,
                labels.clone(),
            ),
            kind: MetricKind::Gauge,
            samples,
        });
    }
    Ok(out)
}

fn db_series(args: &ReplayArgs, path: &Path) -> Result<Vec<ReplaySeries>, CliError> {
    let now = now_ms();
    let from = match &args.since {
        Some(t) => parse_when("--since", t, now)?,
        None => i64::MIN,
    };
    let to = match &args.until {
        Some(t) => parse_when("--until", t, now)?,
        None => now.saturating_add(1),
    };
    if to <= from {
        return Err(CliError::usage(format!(
            "--until {:?} is not after --since {:?}",
            args.until.as_deref().unwrap_or("now"),
            args.since.as_deref().unwrap_or("")
        )));
    }
    let bad = |e: perfvisor_actors::storage::StorageError| {
        CliError::usage(format!("{}: {e}", path.display()))
    };
    let reader = StorageReader::open(path).map_err(bad)?;
    let source = Source::Daemon(DaemonId::new(&args.daemon));
    let mut out = Vec::new();
    for (key, kind) in reader.series().map_err(bad)? {
        if key.source != source {
            continue;
        }
        let samples = reader.query_range(&key, from, to).map_err(bad)?;
        if !samples.is_empty() {
            out.push(ReplaySeries { key, kind, samples });
        }
    }
    if out.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no samples of daemon {:?} in the range; `perfvisor query` shows what is stored",
            path.display(),
            args.daemon
        )));
    }
    Ok(out)
}

/// The replay's rules, judge interval and judgement thresholds.
fn rules(
    args: &ReplayArgs,
    series: &[ReplaySeries],
) -> Result<(Vec<ThresholdRule>, Duration, JudgeConfig), CliError> {
    let (user, defaults, judge, thresholds) = match &args.config {
        Some(path) => {
            let config = perfvisor::config::load(path)
                .map_err(|e| CliError::usage(format!("{} problem(s):\n{e}", e.problems.len())))?;
            (
                config.rules(),
                config.supervisor.default_rules,
                config.supervisor.judge_interval,
                config.judgement.clone(),
            )
        }
        None => (
            Vec::new(),
            true,
            Duration::from_secs(5),
            JudgeConfig::default(),
        ),
    };
    let mut rules = effective_rules(&user, defaults);
    if !args.rules_only {
        for s in series {
            let signal = format!("anomaly.{}", s.key.metric.as_str());
            if !followed(&rules, &signal, &s.key) {
                rules.push(ThresholdRule::signal(signal.clone(), signal));
            }
        }
    }
    Ok((rules, judge, thresholds))
}

/// Whether some rule in `rules` notifies an anomaly candidate `signal` on `series`. Asked
/// of a scratch engine rather than read from the rules' fields, so whatever decides it
/// (exact names, `anomaly.*` prefixes, selectors, rules switched off) is the engine's.
fn followed(rules: &[ThresholdRule], signal: &str, series: &SeriesKey) -> bool {
    let mut engine = RuleEngine::new(rules.to_vec());
    let probe = Alert {
        value: 1.0,
        ..firing_candidate(signal.to_string(), series.clone(), 0)
    };
    // Far later, so a rule with a `for` duration counts too.
    let mut sent = engine.signal(&probe, 0);
    sent.extend(engine.tick(1 << 50));
    sent.iter().any(|n| n.alert.state == AlertState::Firing)
}

/// Runs `perfvisor replay`.
pub fn run(args: &ReplayArgs) -> Result<(), CliError> {
    let series = match &args.from_db {
        Some(path) => db_series(args, path)?,
        None => csv_series(args)?,
    };
    let (rules, judge_interval, judge) = rules(args, &series)?;
    let mut config = ReplayConfig::new(rules);
    config.judge_interval = judge_interval;
    config.judge = judge;
    let started = Instant::now();
    let outcome = replay(&series, &config);
    let elapsed = started.elapsed();
    let per_second = outcome.samples as f64 / elapsed.as_secs_f64().max(1e-9);
    if args.json {
        let value = json!({
            "series": series.iter().map(|s| json!({
                "key": s.key, "kind": s.kind, "samples": s.samples.len(),
            })).collect::<Vec<_>>(),
            "rules": config.rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            "samples": outcome.samples,
            "from_ms": outcome.span_ms.map(|s| s.0),
            "to_ms": outcome.span_ms.map(|s| s.1),
            "alerts": outcome.notifications,
            "candidates": outcome.candidates,
            "reports": outcome.reports,
            "elapsed_seconds": elapsed.as_secs_f64(),
            "samples_per_second": per_second,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        print!("{}", render(&series, &outcome, elapsed, per_second));
    }
    Ok(())
}

/// A time as local wall-clock time, `YYYY-MM-DD HH:MM:SS`.
fn local_time(ms: TimestampMs) -> String {
    let secs = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fills; both pointers are valid for the
    // call, and localtime_r is the thread-safe variant.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return "(time out of range)".into();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// The local offset from UTC at `ms`, as `UTC+01:00`.
fn local_offset(ms: TimestampMs) -> String {
    let secs = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: as in `local_time`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm).is_null() } {
        return "local time".into();
    }
    let off = tm.tm_gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "UTC{sign}{:02}:{:02}",
        off.abs() / 3600,
        off.abs() % 3600 / 60
    )
}

/// The human output: what was replayed, the alerts, then each daemon's report in short.
fn render(
    series: &[ReplaySeries],
    outcome: &ReplayOutcome,
    elapsed: Duration,
    per_second: f64,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (from, to) = outcome.span_ms.unwrap_or((0, 0));
    let _ = writeln!(
        out,
        "Replayed {} samples of {} series, {} to {} (local time, {}), in {:.2} s ({:.0} samples/s).",
        outcome.samples,
        series.len(),
        local_time(from),
        local_time(to),
        local_offset(from),
        elapsed.as_secs_f64(),
        per_second
    );
    let firing = outcome
        .notifications
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .count();
    let _ = writeln!(
        out,
        "\nAlerts: {firing} fired, {} resolved.",
        outcome.notifications.len() - firing
    );
    for a in &outcome.notifications {
        let _ = writeln!(out, "{}", alert_line(a));
    }
    for r in &outcome.reports {
        let level = serde_json::to_value(r.score.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\nReport of {} at the end: score {:.0} ({level}).",
            r.daemon.as_str(),
            r.score.value
        );
        if r.bottlenecks.is_empty() {
            let _ = writeln!(out, "  No bottleneck.");
        }
        for b in &r.bottlenecks {
            let _ = writeln!(out, "  {}: {}", b.kind.as_str(), b.summary);
        }
        for rec in r.recommendations.iter().take(3) {
            let _ = writeln!(out, "  - {}", rec.action);
        }
    }
    out
}

fn alert_line(a: &Alert) -> String {
    let state = match a.state {
        AlertState::Firing => "FIRING  ",
        AlertState::Resolved => "resolved",
    };
    let severity = serde_json::to_value(a.severity)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    // The message names the rule and the series already.
    format!(
        "{}  {state}  {severity:<8} {}",
        local_time(a.at_ms),
        a.message
    )
}
