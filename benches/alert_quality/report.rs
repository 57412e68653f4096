//! The report: each fault judged against what was received, the table and the JSON.

use super::*;

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

#[derive(serde::Serialize)]
pub(crate) struct FaultResult {
    pub(crate) fault: String,
    pub(crate) daemon: String,
    pub(crate) start_s: f64,
    pub(crate) alerted: bool,
    pub(crate) rule: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) seconds_to_alert: Option<f64>,
    pub(crate) acceptance: String,
    /// "PASS", "FAIL" or "not reached in run".
    pub(crate) verdict: String,
    pub(crate) true_leak_mib_per_min: Option<f64>,
    pub(crate) reported_leak_mib_per_min: Option<f64>,
    pub(crate) harness_measured_leak_mib_per_min: Option<f64>,
    pub(crate) leak_rate_error_pct: Option<f64>,
    pub(crate) leak_rate_verdict: Option<String>,
    pub(crate) minutes_before_fd_limit: Option<f64>,
    pub(crate) alerts_before_start: usize,
}

pub(crate) fn report(
    env: &Env,
    instances: &[Instance],
    log: &[String],
    ended_s: f64,
) -> Result<(), String> {
    let hours = ended_s / 3600.0;
    let mut json = serde_json::Map::new();
    json.insert("minutes".into(), (ended_s / 60.0).into());
    json.insert("actions".into(), serde_json::json!(log));
    println!();
    println!("== alert quality: {:.1} min run ==", ended_s / 60.0);
    for i in instances {
        let inbox = i.inbox.lock().map(|v| v.clone()).unwrap_or_default();
        let firing: Vec<&Received> = inbox.iter().filter(|a| a.state == "firing").collect();
        let resolved = inbox.len() - firing.len();
        if let Some(exited) = &i.exited {
            println!();
            println!(
                "WARNING: {exited}; the {} set's figures stop there",
                i.set.name()
            );
        }
        match i.set {
            Set::Quiet => {
                let per_hour = firing.len() as f64 / hours;
                println!();
                println!(
                    "quiet set: {} alerts received ({} firing, {resolved} resolved)",
                    inbox.len(),
                    firing.len()
                );
                println!(
                    "  {:>6}  {:<40} {:<10} {:<9} message",
                    "at", "rule", "daemon", "severity"
                );
                for a in &firing {
                    println!("  {}", alert_line(a, true));
                }
                let verdict = if per_hour <= 1.0 { "PASS" } else { "FAIL" };
                println!(
                    "  alerts per hour: {per_hour:.1} (acceptance ≤ 1, goal 0): {verdict}{}",
                    if firing.is_empty() { " (goal met)" } else { "" }
                );
                json.insert(
                    "quiet".into(),
                    serde_json::json!({
                        "alerts": firing,
                        "resolved": resolved,
                        "alerts_per_hour": per_hour,
                        "verdict": verdict,
                        "perfvisor_exited": i.exited,
                    }),
                );
            }
            Set::Fault => {
                let mut results = Vec::new();
                for f in &i.faults {
                    results.push(judge(f, &firing, ended_s));
                }
                let known: Vec<&str> = i.faults.iter().map(|f| f.daemon).collect();
                let others: Vec<&&Received> = firing
                    .iter()
                    .filter(|a| !a.daemon.as_deref().is_some_and(|d| known.contains(&d)))
                    .collect();
                println!();
                println!(
                    "fault set: {} alerts received ({} firing, {resolved} resolved)",
                    inbox.len(),
                    firing.len()
                );
                println!(
                    "  {:<16} {:>6} {:<8} {:<38} {:>8}  {:<22} verdict",
                    "fault", "start", "alerted", "first rule", "after s", "acceptance"
                );
                for r in &results {
                    println!(
                        "  {:<16} {:>6} {:<8} {:<38} {:>8}  {:<22} {}",
                        r.fault,
                        clock(r.start_s),
                        if r.alerted { "yes" } else { "no" },
                        r.rule.as_deref().unwrap_or("-"),
                        r.seconds_to_alert
                            .map(|s| format!("{s:.0}"))
                            .unwrap_or_else(|| "-".into()),
                        r.acceptance,
                        r.verdict
                    );
                }
                for r in &results {
                    if let Some(truth) = r.true_leak_mib_per_min {
                        println!(
                            "  {}: rate reported {} MiB/min vs truth {truth} (harness /proc: {}): {}",
                            r.fault,
                            r.reported_leak_mib_per_min
                                .map(|v| format!("{v:.2}"))
                                .unwrap_or_else(|| "none".into()),
                            r.harness_measured_leak_mib_per_min
                                .map(|v| format!("{v:.2}"))
                                .unwrap_or_else(|| "-".into()),
                            match (r.leak_rate_error_pct, &r.leak_rate_verdict) {
                                (Some(e), Some(v)) => format!("{e:+.0} % ({v}, acceptance ±10 %)"),
                                _ => "no rate reported: FAIL".into(),
                            }
                        );
                    }
                    if let Some(m) = r.minutes_before_fd_limit {
                        println!(
                            "  descriptors: alerted {m:.1} min before the limit (acceptance ≥ 10)"
                        );
                    }
                    if r.alerts_before_start > 0 {
                        println!(
                            "  {}: {} alert(s) on its daemon before the fault started",
                            r.fault, r.alerts_before_start
                        );
                    }
                    if let Some(m) = &r.message {
                        println!("  {} first alert: {m}", r.fault);
                    }
                }
                let count = |v: &str| results.iter().filter(|r| r.verdict == v).count();
                let rates = results
                    .iter()
                    .filter(|r| r.true_leak_mib_per_min.is_some())
                    .filter(|r| r.leak_rate_verdict.as_deref() != Some("PASS"))
                    .count();
                println!(
                    "  faults: {} PASS, {} FAIL, {} not reached in run; leak rates off by more \
                     than 10 % (or not reported): {rates}",
                    count("PASS"),
                    count("FAIL"),
                    count("not reached in run")
                );
                if !others.is_empty() {
                    println!("  alerts on no fault daemon (host, perfvisor itself):");
                    for a in &others {
                        println!("    {}", alert_line(a, false));
                    }
                }
                json.insert(
                    "fault".into(),
                    serde_json::json!({
                        "faults": results,
                        "other_alerts": others,
                        "all_alerts": firing,
                        "perfvisor_exited": i.exited,
                    }),
                );
            }
        }
    }
    if !log.is_empty() {
        println!();
        println!("operator actions and events:");
        for l in log {
            println!("  {l}");
        }
    }
    let out = target_dir().join("alert-quality.json");
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(json))
        .map_err(|e| format!("cannot encode the results: {e}"))?;
    fs::write(&out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    println!();
    println!(
        "JSON: {}; configs and logs: {}",
        out.display(),
        env.run_dir.display()
    );
    Ok(())
}

pub(crate) fn judge(f: &Fault, firing: &[&Received], ended_s: f64) -> FaultResult {
    let on_daemon: Vec<&&Received> = firing
        .iter()
        .filter(|a| a.daemon.as_deref() == Some(f.daemon))
        .collect();
    // A small grace: the start is the harness's schedule, and the process's own clock may
    // run a few hundred milliseconds ahead.
    let first = on_daemon.iter().find(|a| a.at_s >= f.start_s - 1.0);
    let before = on_daemon
        .iter()
        .filter(|a| a.at_s < f.start_s - 1.0)
        .count();
    let deadline = f.deadline_s();
    let verdict = match first {
        Some(a) if a.at_s <= deadline => "PASS",
        Some(_) => "FAIL",
        None if ended_s < deadline => "not reached in run",
        None => "FAIL",
    };
    let acceptance = match f.name {
        "descriptors" => "≥ 10 min before limit".to_string(),
        _ if f.within_s >= 120.0 => format!("within {:.0} min", f.within_s / 60.0),
        _ => format!("within {:.0} s", f.within_s),
    };
    let (error, rate_verdict) = match (f.leak_mib_per_min, f.reported_mib_per_min) {
        (Some(truth), Some(got)) => {
            let e = (got - truth) / truth * 100.0;
            (
                Some(e),
                Some(if e.abs() <= 10.0 { "PASS" } else { "FAIL" }.to_string()),
            )
        }
        _ => (None, None),
    };
    FaultResult {
        fault: f.name.to_string(),
        daemon: f.daemon.to_string(),
        start_s: f.start_s,
        alerted: first.is_some(),
        rule: first.map(|a| a.rule.clone()),
        message: first.map(|a| a.message.clone()),
        seconds_to_alert: first.map(|a| a.at_s - f.start_s),
        acceptance,
        verdict: verdict.to_string(),
        true_leak_mib_per_min: f.leak_mib_per_min,
        reported_leak_mib_per_min: f.reported_mib_per_min,
        harness_measured_leak_mib_per_min: slope_mib_per_min(&f.rss_samples),
        leak_rate_error_pct: error,
        leak_rate_verdict: rate_verdict,
        minutes_before_fd_limit: match (f.fd_limit_at_s(), first) {
            (Some(limit), Some(a)) if f.name == "descriptors" => Some((limit - a.at_s) / 60.0),
            _ => None,
        },
        alerts_before_start: before,
    }
}

/// One received alert as a line of the table: when, rule, daemon, the severity when asked
/// for, and the message.
fn alert_line(a: &Received, severity: bool) -> String {
    let severity = if severity {
        format!("{:<9} ", a.severity)
    } else {
        String::new()
    };
    format!(
        "{:>6}  {:<40} {:<10} {severity}{}",
        clock(a.at_s),
        a.rule,
        a.daemon.as_deref().unwrap_or("-"),
        a.message
    )
}
