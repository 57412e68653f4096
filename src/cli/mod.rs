//! The command line: every subcommand, its flags, and what it does. Read commands accept
//! `--json`; commands other than `run`, `replay`, `check-config` and `print-default-config` talk to the
//! running instance at `--address` (default 127.0.0.1:9465) with `--token` for mutating calls.

mod check_config;
mod client;
mod demo;
mod replay;
mod run;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

pub use client::CliError;
use client::Client;

/// perfvisor: runs your daemons, watches their performance, explains it, and alerts.
#[derive(Debug, Parser)]
#[command(name = "perfvisor", version, about)]
pub struct Cli {
    /// Address of the running instance's HTTP API.
    #[arg(
        long,
        global = true,
        env = "PERFVISOR_ADDRESS",
        default_value = "127.0.0.1:9465"
    )]
    address: String,
    /// API token for mutating calls (and for every call off loopback).
    #[arg(long, global = true, env = "PERFVISOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a supervisor in the foreground from a config file (logs to stderr; RUST_LOG
    /// filters them). SIGHUP reloads the config; SIGINT/SIGTERM stop everything in order.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
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
    /// Daemons: state, pid, probes, restarts, CPU, memory, score, level, firing alerts.
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

fn print(json_out: bool, value: &Value, human: impl FnOnce(&Value)) {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        human(value);
    }
}

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> Result<(), CliError> {
    let client = Client::new(&cli.address, cli.token.clone());
    match cli.command {
        Command::Run {
            config,
            chaos_panics_per_minute,
        } => run::run(&config, chaos_panics_per_minute),
        Command::CheckConfig {
            file,
            skip_host_checks,
        } => check_config::check_config(&file, !skip_host_checks),
        Command::PrintDefaultConfig => {
            print!("{}", perfvisor::config::default_config_text());
            Ok(())
        }
        Command::Status { json } => {
            let daemons = client.get("/api/v1/daemons")?;
            let status = client.get("/api/v1/status")?;
            let managed = client.get("/api/v1/managed").unwrap_or(Value::Null);
            let all = json!({"status": status, "daemons": daemons, "managed": managed});
            print(json, &all, |v| {
                client::print_status(&v["daemons"], &v["status"]);
                if let Some(list) = v["managed"].as_array() {
                    println!(
                        "\n{:<20} {:<12} {:>8} {:>8}",
                        "MANAGED", "STATE", "PID", "RESTARTS"
                    );
                    for d in list {
                        let state = d["state"]
                            .as_object()
                            .and_then(|o| o.keys().next().cloned())
                            .or_else(|| d["state"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        println!(
                            "{:<20} {:<12} {:>8} {:>8}",
                            d["name"].as_str().unwrap_or("?"),
                            state,
                            d["pid"].as_u64().map_or("-".into(), |p| p.to_string()),
                            d["restarts"]
                        );
                    }
                }
            });
            Ok(())
        }
        Command::Report { daemon, json } => {
            let report = client.get(&format!("/api/v1/daemons/{daemon}/report"))?;
            print(json, &report, client::print_report);
            Ok(())
        }
        Command::Alerts { json } => {
            let alerts = client.get("/api/v1/alerts")?;
            print(json, &alerts, client::print_alerts);
            Ok(())
        }
        Command::Rules { json } => {
            let rules = client.get("/api/v1/rules")?;
            print(json, &rules, client::print_rules);
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
            if let Some(d) = daemon {
                path.push_str(&format!("&daemon={d}"));
            }
            if let Some(s) = step {
                path.push_str(&format!("&step={}", duration("--step", &s)?.as_millis()));
            }
            if let Some(a) = agg {
                path.push_str(&format!("&agg={a}"));
            }
            let result = client.get(&path)?;
            print(json, &result, |v| {
                for series in v.as_array().into_iter().flatten() {
                    println!(
                        "{} {} ({} tier)",
                        series["key"]["source"],
                        series["key"]["metric"],
                        series["tier"].as_str().unwrap_or("?")
                    );
                    for s in series["samples"].as_array().into_iter().flatten() {
                        println!("  {} {}", s[0], s[1]);
                    }
                    for b in series["buckets"].as_array().into_iter().flatten() {
                        println!("  {} {}", b["start_ms"], b["values"]);
                    }
                }
            });
            Ok(())
        }
        Command::Silence { action } => match action {
            SilenceAction::List { json } => {
                let list = client.get("/api/v1/silences")?;
                print(json, &list, |v| {
                    for s in v.as_array().into_iter().flatten() {
                        println!(
                            "{} until {} by {}: {}",
                            s["id"], s["ends_ms"], s["created_by"], s["matchers"]
                        );
                    }
                });
                Ok(())
            }
            SilenceAction::Add {
                matchers,
                duration: d,
                id,
                comment,
            } => {
                let mut parsed = Vec::new();
                for m in &matchers {
                    let Some((name, value)) = m.split_once('=') else {
                        return Err(CliError::usage(format!(
                            "matcher {m:?} is not name=value (e.g. daemon=indexer)"
                        )));
                    };
                    parsed.push(json!({"name": name, "value": value}));
                }
                let now = now_ms();
                let id = id.unwrap_or_else(|| format!("cli-{now}"));
                let body = json!({
                    "id": id, "matchers": parsed, "starts_ms": now,
                    "ends_ms": now.saturating_add(millis(duration("--for", &d)?)),
                    "created_by": "cli", "comment": comment,
                });
                client.send("POST", "/api/v1/silences", Some(&body))?;
                println!("silence {id} added");
                Ok(())
            }
            SilenceAction::Remove { id } => {
                client.send("DELETE", &format!("/api/v1/silences/{id}"), None)?;
                println!("silence {id} removed");
                Ok(())
            }
        },
        Command::Start { daemon } => managed(&client, &daemon, "start"),
        Command::Stop { daemon } => managed(&client, &daemon, "stop"),
        Command::Restart { daemon } => managed(&client, &daemon, "restart"),
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
            let answer = client.send("POST", "/api/v1/reload", None)?;
            println!("{}", answer["reloaded"].as_str().unwrap_or("reloaded"));
            Ok(())
        }
    }
}

fn managed(client: &Client, daemon: &str, action: &str) -> Result<(), CliError> {
    client.send("POST", &format!("/api/v1/managed/{daemon}/{action}"), None)?;
    println!("{daemon}: {action} done");
    Ok(())
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
}
