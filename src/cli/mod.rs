//! The command line: every subcommand, its flags, and what it does. Read commands print for
//! people (`human.rs`) or, with `--json`, the API's answer unchanged; commands other than
//! `run`, `replay`, `check-config` and `print-default-config` talk to the running instance
//! found from `--address`/`--token`, else `PERFVISOR_ADDRESS`/`PERFVISOR_TOKEN`, else the
//! `listen` and token of the config (`--config`/`PERFVISOR_CONFIG`), else 127.0.0.1:9465.

mod check_config;
mod client;
mod demo;
mod human;
mod logs;
mod replay;
mod run;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

pub use client::CliError;
use client::{Client, Origin};
use human::Clock;

/// Where client commands look for perfvisor when nothing says otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9465";

/// perfvisor: runs your daemons, watches their performance, explains it, and alerts.
#[derive(Debug, Parser)]
#[command(name = "perfvisor", version, about)]
pub struct Cli {
    /// The TOML config file: what `run` runs; the other commands read its `listen` address
    /// and token (`logs` its log directories) unless --address/--token say otherwise.
    #[arg(long, short = 'c', global = true, env = "PERFVISOR_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the running instance's HTTP API [default: the config's `listen`, else
    /// 127.0.0.1:9465].
    #[arg(long, global = true, env = "PERFVISOR_ADDRESS")]
    address: Option<String>,
    /// API token: needed for mutating calls, for reads once the instance has any token, and
    /// for every call off loopback [default: the config's `token` or `token_file`].
    #[arg(long, global = true, env = "PERFVISOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a supervisor in the foreground from the config file given with --config (logs to
    /// stderr; RUST_LOG filters them). SIGHUP reloads the config; SIGINT/SIGTERM stop
    /// everything in order.
    Run {
        /// Test mode: inject panics into random actors at this average rate (per minute),
        /// to see supervision work under load. Never for production.
        #[arg(long, hide = true, value_name = "RATE")]
        chaos_panics_per_minute: Option<f64>,
    },
    /// Check a config file and what it needs of this machine (programs, directories, users,
    /// the database, the API address); reports every problem with its line, exit code 2 if
    /// any. Warnings (a metric perfvisor does not produce) leave the exit code 0.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
        /// Check the file only, not this machine: for a config meant for another host.
        #[arg(long)]
        skip_host_checks: bool,
    },
    /// Print a commented config with every key and its default.
    PrintDefaultConfig,
    /// Daemons: state, pid, uptime, restarts, CPU (average of the last minute), memory,
    /// score, level, firing alerts.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One daemon's report: score and why, bottlenecks, recommendations, statistics, trends.
    Report {
        /// The daemon.
        daemon: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Firing alerts.
    Alerts {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Alert rules, built-in ones included: what each watches, timing, severity, origin
    /// (built-in, config, host), enabled.
    Rules {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stored history of a metric.
    Query {
        /// The metric (e.g. process.memory.usage_bytes).
        #[arg(long)]
        metric: String,
        /// Only this daemon.
        #[arg(long)]
        daemon: Option<String>,
        /// How far back, e.g. 1h, 7d.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Bucket length, e.g. 1m, 1h (needs --agg).
        #[arg(long)]
        step: Option<String>,
        /// Aggregations, comma-separated: avg,min,max,sum,count,stddev,last,rate,p95,…
        #[arg(long)]
        agg: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Silences: list, add, remove.
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
    },
    /// Start a managed daemon.
    Start {
        /// Its name in the config.
        daemon: String,
    },
    /// Stop a managed daemon (its whole process tree).
    Stop {
        /// Its name in the config.
        daemon: String,
    },
    /// Restart a managed daemon.
    Restart {
        /// Its name in the config.
        daemon: String,
    },
    /// A managed daemon's output: the last lines of its stdout (or stderr) log file, read
    /// from the log directory the config gives it (needs --config or PERFVISOR_CONFIG).
    Logs {
        /// Its name in the config.
        daemon: String,
        /// How many lines.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
        /// Keep printing what it writes, across log rotation (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
        /// Its stderr instead of its stdout.
        #[arg(long)]
        stderr: bool,
    },
    /// Reload the running instance's config file (only what changed restarts).
    Reload,
    /// Replay recorded series (CSV files, or a range of a perfvisor database) through the
    /// analyzer and alert rules on a simulated clock: the alerts that would have fired, and
    /// the reports. Offline; no running instance needed.
    Replay(replay::ReplayArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The load generator the demo and tests use as a daemon (same as `perfvisor-loadgen`).
    #[command(hide = true)]
    Loadgen {
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A supervisor with two demo daemons (a memory leak, a latency regression): prints the
    /// dashboard address, then the problems as they are detected, alerts and recommendations.
    Demo {
        /// Where its API and dashboard listen.
        #[arg(long, default_value = "127.0.0.1:9465")]
        listen: String,
        /// Stop once both problems are detected (exit 0), or after --timeout (exit 1).
        #[arg(long)]
        until_detected: bool,
        /// With --until-detected: how long to wait.
        #[arg(long, default_value = "2m")]
        timeout: String,
    },
}

#[derive(Debug, Subcommand)]
enum SilenceAction {
    /// List silences.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a silence: `perfvisor silence add daemon=indexer rule=high_cpu --for 2h`.
    Add {
        /// Matchers `name=value` (rule, daemon, project, severity, metric, source or a label).
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, e.g. 30m, 2h.
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        /// Its id (default: generated).
        #[arg(long)]
        id: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Remove a silence by id.
    Remove {
        /// The id.
        id: String,
    },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `d` in milliseconds, saturated to `i64::MAX`: `parse_duration` accepts up to `u64::MAX` ms,
/// so a time computed from it must saturate instead of overflowing.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration(flag: &str, text: &str) -> Result<Duration, CliError> {
    perfvisor::config::parse_duration(text).ok_or_else(|| {
        CliError::usage(format!(
            "{flag} {text:?} is not a duration; write it like 30s, 5m, 2h or 7d"
        ))
    })
}

/// Prints `value` as JSON with `--json`, else the text `human` renders from it.
fn print(json_out: bool, value: &Value, human: impl FnOnce(&Value) -> String) {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        print!("{}", human(value));
    }
}

/// What the command line says about where perfvisor runs; the config is read only when a
/// command needs it.
struct Target {
    config: Option<PathBuf>,
    address: Option<String>,
    token: Option<String>,
}

/// Reads the config a client command was pointed at.
fn load_config(path: &Path) -> Result<perfvisor::config::Config, CliError> {
    perfvisor::config::load(path).map_err(|e| CliError {
        message: format!(
            "cannot use the config {} (from --config or PERFVISOR_CONFIG): {} problem(s):\n{e}",
            path.display(),
            e.problems.len()
        ),
        code: 2,
    })
}

/// The address to connect to for a `listen` address: an unspecified one (`0.0.0.0`, `::`)
/// is reached on loopback.
fn connect_address(listen: std::net::SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    std::net::SocketAddr::new(ip, listen.port()).to_string()
}

impl Target {
    /// The client: --address/--token (or their variables), else the config's `listen` and
    /// token, else the default address without a token.
    fn client(&self) -> Result<Client, CliError> {
        let config = match &self.config {
            Some(path) if self.address.is_none() || self.token.is_none() => {
                Some((path.clone(), load_config(path)?))
            }
            _ => None,
        };
        let (address, origin) = match (&self.address, &config) {
            (Some(a), _) => (a.clone(), Origin::Flag),
            (None, Some((path, c))) => (
                connect_address(c.supervisor.listen),
                Origin::Config(path.clone()),
            ),
            (None, None) => (DEFAULT_ADDRESS.to_string(), Origin::Default),
        };
        let token = match (&self.token, &config) {
            (Some(t), _) => Some(t.clone()),
            (None, Some((_, c))) => run::token(c)?,
            (None, None) => None,
        };
        Ok(Client::new(&address, origin, token))
    }
}

/// A best-effort extra answer for the human output: null when the call failed.
fn optional(result: Result<Value, CliError>) -> Value {
    result.unwrap_or(Value::Null)
}

/// Answers of the API `status` renders (`human::render_status` documents them).
fn status_answers(client: &Client, json_out: bool) -> Result<Value, CliError> {
    let daemons = client.get("/api/v1/daemons")?;
    let status = client.get("/api/v1/status")?;
    let managed = client.get("/api/v1/managed").unwrap_or(Value::Null);
    if json_out {
        return Ok(json!({"status": status, "daemons": daemons, "managed": managed}));
    }
    let to = now_ms() + 1;
    let from = to - human::CPU_WINDOW_MS;
    let cpu = optional(client.get(&format!(
        "/api/v1/query?metric={}&from={from}&to={to}&agg=avg",
        perfvisor::metric_names::PROCESS_CPU_UTILIZATION
    )));
    let uptime = optional(client.get(&format!(
        "/api/v1/query?metric={}&from={from}&to={to}&agg=last",
        perfvisor::metric_names::PROCESS_UPTIME
    )));
    let alerts = optional(client.get("/api/v1/alerts"));
    Ok(json!({
        "status": status, "daemons": daemons, "managed": managed,
        "alerts": alerts, "cpu": cpu, "uptime": uptime,
    }))
}

/// The metric names (and label keys) of the series recorded in `[from, to)`, of `daemon`
/// only when given.
fn recorded(
    client: &Client,
    from: i64,
    to: i64,
    daemon: Option<&str>,
) -> Result<(Vec<String>, Vec<String>), CliError> {
    let mut path = format!("/api/v1/query?from={from}&to={to}&agg=count");
    if let Some(d) = daemon {
        path.push_str(&format!("&daemon={d}"));
    }
    let all = client.get(&path)?;
    let mut metrics = Vec::new();
    let mut labels = Vec::new();
    for s in all.as_array().into_iter().flatten() {
        if let Some(m) = s["key"]["metric"].as_str() {
            metrics.push(m.to_string());
        }
        for k in s["key"]["labels"].as_object().into_iter().flatten() {
            labels.push(k.0.clone());
        }
    }
    metrics.sort();
    metrics.dedup();
    labels.sort();
    labels.dedup();
    Ok((metrics, labels))
}

/// What a silence matcher may name besides the labels of a series.
const MATCHER_KEYS: [&str; 6] = ["rule", "daemon", "project", "severity", "metric", "source"];

/// Checks a matcher's key against what alerts carry (the fixed keys, and the label keys of
/// the series recorded in the last hour), and a `severity` value against the severities.
fn check_matcher(name: &str, value: &str, labels: &[String]) -> Result<(), CliError> {
    if name == "severity"
        && !["info", "warning", "critical"].contains(&value)
        && !value.ends_with('*')
    {
        return Err(CliError::usage(format!(
            "severity={value}: a severity is info, warning or critical"
        )));
    }
    if MATCHER_KEYS.contains(&name) || labels.iter().any(|l| l == name) {
        return Ok(());
    }
    let mut candidates: Vec<&str> = MATCHER_KEYS.to_vec();
    candidates.extend(labels.iter().map(String::as_str));
    let near = perfvisor_actors::suggest::nearest(name, &candidates, 3);
    let hint = if near.is_empty() {
        String::new()
    } else {
        format!("did you mean {}? ", near.join(" or "))
    };
    let label_list = if labels.is_empty() {
        "none recorded in the last hour".to_string()
    } else {
        labels.join(", ")
    };
    Err(CliError::usage(format!(
        "no alert carries the key {name:?} (in {name}={value}): {hint}alerts carry {}, and \
         the labels of their series ({label_list})",
        MATCHER_KEYS.join(", ")
    )))
}

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> Result<(), CliError> {
    let target = Target {
        config: cli.config,
        address: cli.address,
        token: cli.token,
    };
    let client = || target.client();
    match cli.command {
        Command::Run {
            chaos_panics_per_minute,
        } => {
            let config = target.config.as_deref().ok_or_else(|| {
                CliError::usage(
                    "run needs a config file: pass --config FILE or set PERFVISOR_CONFIG \
                     (`perfvisor print-default-config` writes one to start from)",
                )
            })?;
            run::run(config, chaos_panics_per_minute)
        }
        Command::CheckConfig {
            file,
            skip_host_checks,
        } => check_config::check_config(&file, !skip_host_checks),
        Command::PrintDefaultConfig => {
            print!("{}", perfvisor::config::default_config_text());
            Ok(())
        }
        Command::Status { json } => {
            let all = status_answers(&client()?, json)?;
            print(json, &all, |v| human::render_status(v, &Clock::local()));
            Ok(())
        }
        Command::Report { daemon, json } => {
            let report = client()?.get(&format!("/api/v1/daemons/{daemon}/report"))?;
            print(json, &report, |v| human::render_report(v, &Clock::local()));
            Ok(())
        }
        Command::Alerts { json } => {
            let alerts = client()?.get("/api/v1/alerts")?;
            print(json, &alerts, |v| human::render_alerts(v, &Clock::local()));
            Ok(())
        }
        Command::Rules { json } => {
            let rules = client()?.get("/api/v1/rules")?;
            print(json, &rules, client::render_rules);
            Ok(())
        }
        Command::Query {
            metric,
            daemon,
            since,
            step,
            agg,
            json,
        } => {
            let to = now_ms() + 1;
            let from = to.saturating_sub(millis(duration("--since", &since)?));
            let mut path = format!("/api/v1/query?metric={metric}&from={from}&to={to}");
            if let Some(d) = &daemon {
                path.push_str(&format!("&daemon={d}"));
            }
            if let Some(s) = step {
                path.push_str(&format!("&step={}", duration("--step", &s)?.as_millis()));
            }
            if let Some(a) = &agg {
                path.push_str(&format!("&agg={a}"));
            }
            let client = client()?;
            let result = client.get(&path)?;
            if result.as_array().is_some_and(Vec::is_empty) {
                return Err(no_such_metric(
                    &client,
                    &metric,
                    daemon.as_deref(),
                    from,
                    to,
                    &since,
                ));
            }
            let aggs: Vec<String> = agg
                .iter()
                .flat_map(|a| a.split(','))
                .map(|a| a.trim().to_string())
                .collect();
            print(json, &result, |v| {
                human::render_query(v, &aggs, &Clock::local())
            });
            Ok(())
        }
        Command::Silence { action } => match action {
            SilenceAction::List { json } => {
                let list = client()?.get("/api/v1/silences")?;
                print(json, &list, |v| human::render_silences(v, &Clock::local()));
                Ok(())
            }
            SilenceAction::Add {
                matchers,
                duration: d,
                id,
                comment,
            } => {
                let client = client()?;
                let now = now_ms();
                let mut parsed = Vec::new();
                let mut labels: Option<Vec<String>> = None;
                for m in &matchers {
                    let Some((name, value)) = m.split_once('=') else {
                        return Err(CliError::usage(format!(
                            "matcher {m:?} is not name=value (e.g. daemon=indexer)"
                        )));
                    };
                    if !MATCHER_KEYS.contains(&name) && labels.is_none() {
                        labels = Some(recorded(&client, now - 3_600_000, now + 1, None)?.1);
                    }
                    check_matcher(name, value, labels.as_deref().unwrap_or_default())?;
                    parsed.push(json!({"name": name, "value": value}));
                }
                let id = id.unwrap_or_else(|| format!("cli-{:08x}", fastrand::u32(..)));
                let body = json!({
                    "id": id, "matchers": parsed, "starts_ms": now,
                    "ends_ms": now.saturating_add(millis(duration("--for", &d)?)),
                    "created_by": "cli", "comment": comment,
                });
                client.send("POST", "/api/v1/silences", Some(&body))?;
                let until = body["ends_ms"]
                    .as_i64()
                    .map(|t| format!(" until {}", Clock::local().time_ago(t)))
                    .unwrap_or_default();
                println!("silence {id} added: {}{until}", matchers.join(" "));
                Ok(())
            }
            SilenceAction::Remove { id } => {
                client()?.send("DELETE", &format!("/api/v1/silences/{id}"), None)?;
                println!("silence {id} removed");
                Ok(())
            }
        },
        Command::Start { daemon } => managed(&client()?, &daemon, "start"),
        Command::Stop { daemon } => managed(&client()?, &daemon, "stop"),
        Command::Restart { daemon } => managed(&client()?, &daemon, "restart"),
        Command::Logs {
            daemon,
            lines,
            follow,
            stderr,
        } => {
            let path = target.config.as_deref().ok_or_else(|| {
                CliError::usage(
                    "logs reads the daemon's log files and needs the config to find them: \
                     pass --config FILE or set PERFVISOR_CONFIG (the one `perfvisor run` uses)",
                )
            })?;
            let config = load_config(path)?;
            logs::run(path, &config, &daemon, lines, follow, stderr)
        }
        Command::Replay(args) => replay::run(&args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "perfvisor",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Loadgen { args } => {
            let code = perfvisor::loadgen::run(args);
            if code == std::process::ExitCode::SUCCESS {
                Ok(())
            } else {
                Err(CliError {
                    message: "loadgen failed".into(),
                    code: 2,
                })
            }
        }
        Command::Demo {
            listen,
            until_detected,
            timeout,
        } => demo::demo(&listen, until_detected, duration("--timeout", &timeout)?),
        Command::Reload => {
            let answer = client()?.send("POST", "/api/v1/reload", None)?;
            print!("{}", human::render_reload(&answer));
            Ok(())
        }
    }
}

/// Starts, stops or restarts a managed daemon; a stop of a stopped daemon and a start of a
/// running one say so instead of acting.
fn managed(client: &Client, daemon: &str, action: &str) -> Result<(), CliError> {
    let list = client.get("/api/v1/managed")?;
    let current = list
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == daemon);
    let state = current.and_then(|d| d["state"]["state"].as_str());
    match (action, state) {
        ("stop", Some("stopped")) => {
            println!("{daemon} is already stopped; nothing to do");
            return Ok(());
        }
        ("stop", Some("exited")) => {
            println!(
                "{daemon} is already stopped (it exited and its restart policy does not \
                 restart it); nothing to do"
            );
            return Ok(());
        }
        ("start", Some(s @ ("running" | "starting"))) => {
            let pid = current
                .and_then(|d| d["pid"].as_u64())
                .map(|p| format!(", pid {p}"))
                .unwrap_or_default();
            println!("{daemon} is already running ({s}{pid}); nothing to do");
            return Ok(());
        }
        _ => {}
    }
    client.send("POST", &format!("/api/v1/managed/{daemon}/{action}"), None)?;
    let done = match action {
        "start" => "started",
        "stop" => "stopped",
        _ => "restarted",
    };
    println!("{daemon} {done}");
    Ok(())
}

/// The error of a query that found no series: the metric is unknown (here, in this window),
/// with the recorded names nearest to it.
fn no_such_metric(
    client: &Client,
    metric: &str,
    daemon: Option<&str>,
    from: i64,
    to: i64,
    since: &str,
) -> CliError {
    let of = daemon
        .map(|d| format!(" for daemon {d}"))
        .unwrap_or_default();
    let known = match recorded(client, from, to, daemon) {
        Ok((metrics, _)) => metrics,
        Err(e) => return e,
    };
    if known.is_empty() {
        return CliError::failed(format!(
            "nothing was recorded{of} in the last {since}; try a longer --since"
        ));
    }
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    let near = perfvisor_actors::suggest::nearest(metric, &names, 8);
    let hint = if near.is_empty() {
        format!("recorded metrics: {}", names.join(", "))
    } else {
        format!("did you mean {}?", near.join(", "))
    };
    CliError::failed(format!(
        "no metric {metric:?} was recorded{of} in the last {since}; {hint} \
         (`perfvisor query --metric NAME`; `perfvisor report DAEMON` lists a daemon's series)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest durations the parser accepts (up to `u64::MAX` ms) saturate: `query
    /// --since 9223372036854775808ms` and `silence add --for` of as much used to overflow
    /// (a panic in debug builds, a wrapped time in release).
    #[test]
    fn huge_durations_saturate() {
        let now: i64 = 1_700_000_000_000;
        for text in [
            "9223372036854775807ms",
            "9223372036854775808ms",
            "18446744073709551615ms",
        ] {
            let d = duration("--since", text).unwrap_or_else(|e| panic!("{}", e.message));
            assert_eq!(millis(d), i64::MAX, "{text}");
            assert_eq!(now.saturating_sub(millis(d)), now - i64::MAX, "{text}");
            assert_eq!(now.saturating_add(millis(d)), i64::MAX, "{text}");
        }
        assert_eq!(millis(duration("--for", "1h30m").unwrap()), 5_400_000);
    }

    /// A `listen` on every interface is reached on loopback; others as they are.
    #[test]
    fn listen_addresses_are_reached_on_loopback() {
        let at = |s: &str| connect_address(s.parse().unwrap());
        assert_eq!(at("0.0.0.0:29500"), "127.0.0.1:29500");
        assert_eq!(at("[::]:29500"), "[::1]:29500");
        assert_eq!(at("10.1.2.3:9465"), "10.1.2.3:9465");
    }

    /// A matcher key no alert carries is refused with the nearest accepted one; labels
    /// recorded on series are accepted; a severity must be one.
    #[test]
    fn silence_keys_are_checked() {
        let labels = vec!["shard".to_string()];
        let e = check_matcher("deamon", "worker", &labels).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("did you mean daemon?"), "{}", e.message);
        assert!(e.message.contains("(shard)"), "{}", e.message);
        assert!(check_matcher("daemon", "worker", &labels).is_ok());
        assert!(check_matcher("shard", "eu-1", &labels).is_ok());
        assert!(check_matcher("severity", "critical", &labels).is_ok());
        assert!(check_matcher("severity", "high", &labels).is_err());
    }
}
