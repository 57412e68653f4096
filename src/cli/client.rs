//! The CLI's client side: talks to a running perfvisor over its HTTP API and prints tables or
//! JSON. Says clearly when no instance is running at the address.

use std::time::Duration;

use serde_json::Value;

/// Where the running instance listens and the token to use.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    address: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Why a command could not be carried out (the message is for people).
#[derive(Debug)]
pub struct CliError {
    /// What to print.
    pub message: String,
    /// Exit code: 1 for an unreachable instance or a refused call, 2 for bad usage.
    pub code: u8,
}

impl CliError {
    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 2,
        }
    }
    fn failed(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

impl Client {
    /// A client for the instance at `address` (`host:port`).
    pub fn new(address: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            base: format!("http://{address}"),
            address: address.to_string(),
            token,
            agent,
        }
    }

    fn unreachable(&self, e: &ureq::Error) -> CliError {
        match e {
            ureq::Error::ConnectionFailed | ureq::Error::Io(_) | ureq::Error::HostNotFound => {
                CliError::failed(format!(
                    "no perfvisor is running at {} ({e}); start one with `perfvisor run --config FILE`, \
                     or point --address at the running instance",
                    self.address
                ))
            }
            other => CliError::failed(format!("talking to perfvisor at {} failed: {other}", self.address)),
        }
    }

    fn answer(&self, mut response: ureq::http::Response<ureq::Body>) -> Result<Value, CliError> {
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| CliError::failed(format!("reading perfvisor's answer failed: {e}")))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let error = value["error"].as_str().unwrap_or(&text);
        let accepted = value["accepted"]
            .as_str()
            .map(|a| format!(" (accepted: {a})"))
            .unwrap_or_default();
        Err(CliError::failed(format!(
            "perfvisor refused ({status}): {error}{accepted}"
        )))
    }

    /// GET a JSON document.
    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let response = request.call().map_err(|e| self.unreachable(&e))?;
        self.answer(response)
    }

    /// POST (or DELETE with `body: None`) and return the JSON answer.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("DELETE", _) => {
                let mut r = self.agent.delete(url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = self.agent.post(url).content_type("application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.map(|b| b.to_string()).unwrap_or_default().as_bytes())
            }
        }
        .map_err(|e| self.unreachable(&e))?;
        self.answer(response)
    }
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

fn mib(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{:.1} MiB", x / 1048576.0))
}

/// The `status` table.
pub fn print_status(daemons: &Value, status: &Value) {
    println!(
        "perfvisor {} — {} watchers, {} samples collected, {} alerts sent, storage: {} stored, {} dropped{}",
        status["health"].as_str().unwrap_or("?"),
        daemons.as_array().map_or(0, Vec::len),
        status["samples_collected"],
        status["alerts_sent"],
        status["storage"]["stored_samples"],
        status["storage"]["dropped_samples"],
        status["storage"]["write_blocked"]
            .as_str()
            .map(|r| format!(", WRITES FAILING: {r}"))
            .unwrap_or_default()
    );
    for reason in status["health_reasons"].as_array().into_iter().flatten() {
        println!("  degraded: {}", reason.as_str().unwrap_or("?"));
    }
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>7} {:>12} {:>6} {:<10} {:>6}",
        "DAEMON", "PID", "PROBES", "RESTARTS", "CPU", "MEMORY", "SCORE", "LEVEL", "ALERTS"
    );
    for d in daemons.as_array().into_iter().flatten() {
        println!(
            "{:<20} {:>8} {:>8} {:>8} {:>6}% {:>12} {:>6} {:<10} {:>6}",
            d["daemon"].as_str().unwrap_or("?"),
            d["pid"],
            d["probes"],
            d["restarts"],
            d["cpu"]
                .as_f64()
                .map_or_else(|| "-".into(), |c| format!("{:.0}", c * 100.0)),
            mib(&d["rss_bytes"]),
            num(&d["score"], 0),
            d["level"].as_str().unwrap_or("-"),
            d["firing_alerts"]
        );
    }
}

/// The `report` text.
pub fn print_report(r: &Value) {
    println!(
        "{}: score {} ({}), {} restarts in the last 10 minutes",
        r["daemon"].as_str().unwrap_or("?"),
        num(&r["score"]["value"], 1),
        r["score"]["level"].as_str().unwrap_or("?"),
        r["restarts_recent"]
    );
    for d in r["score"]["breakdown"].as_array().into_iter().flatten() {
        println!(
            "  −{} {}: {}",
            num(&d["points"], 1),
            d["category"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or("")
        );
    }
    let bottlenecks = r["bottlenecks"].as_array().cloned().unwrap_or_default();
    if bottlenecks.is_empty() {
        println!("No bottleneck.");
    }
    for b in &bottlenecks {
        println!(
            "Bottleneck {} (severity {}): {}",
            b["kind"].as_str().unwrap_or("?"),
            num(&b["severity"], 2),
            b["summary"].as_str().unwrap_or("")
        );
        for e in b["evidence"].as_array().into_iter().flatten() {
            println!("    {}", e["detail"].as_str().unwrap_or(""));
        }
    }
    for (i, rec) in r["recommendations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        println!(
            "{}. {} — expected: {}{}",
            i + 1,
            rec["action"].as_str().unwrap_or(""),
            rec["expected_effect"].as_str().unwrap_or(""),
            if rec["auto_action"].is_null() {
                ""
            } else {
                " [perfvisor can do this]"
            }
        );
    }
    for p in r["predictions"].as_array().into_iter().flatten() {
        println!(
            "Prediction: {} reaches {} at {} ms",
            p["metric"].as_str().unwrap_or(""),
            p["limit"].as_str().unwrap_or(""),
            p["when"]["eta_ms"]
        );
    }
    println!(
        "{:<44} {:>12} {:>12} {:>12} {:>12}  TREND",
        "SERIES", "LAST", "MEAN", "P95", "MAX"
    );
    for s in r["series"].as_array().into_iter().flatten() {
        println!(
            "{:<44} {:>12} {:>12} {:>12} {:>12}  {}",
            s["metric"].as_str().unwrap_or("?"),
            num(&s["stats"]["last"], 3),
            num(&s["stats"]["mean"], 3),
            num(&s["stats"]["p95"], 3),
            num(&s["stats"]["max"], 3),
            s["trend"]["class"].as_str().unwrap_or("-")
        );
    }
}

/// The `alerts` table.
pub fn print_alerts(alerts: &Value) {
    let list = alerts.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("No alert is firing.");
    }
    for a in list {
        let since = a["since_ms"]
            .as_i64()
            .map_or_else(|| "?".into(), perfvisor_actors::alerts::rfc3339);
        println!(
            "{:<9} {:<28} {:<16} since {} — {}",
            a["severity"].as_str().unwrap_or("?"),
            a["rule"].as_str().unwrap_or("?"),
            a["daemon"].as_str().unwrap_or("-"),
            since,
            a["message"].as_str().unwrap_or("")
        );
    }
}

/// The `rules` table: every rule, enabled or not, with what it watches and where it comes
/// from.
pub fn print_rules(rules: &Value) {
    print!("{}", render_rules(rules));
}

/// The text of the `rules` table (pinned by a golden test).
pub fn render_rules(rules: &Value) -> String {
    use std::fmt::Write as _;
    let list = rules.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "No rule is defined.\n".into();
    }
    let width = |key: &str, min: usize| {
        list.iter()
            .map(|r| r[key].as_str().map_or(0, |s| s.chars().count()))
            .max()
            .unwrap_or(0)
            .max(min)
    };
    let (wn, wk, ww, wt) = (
        width("name", 4),
        width("kind", 4),
        width("watches", 7),
        width("timing", 6),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<wn$}  {:<wk$}  {:<ww$}  {:<wt$}  {:<8}  {:<8}  ENABLED",
        "NAME", "KIND", "WATCHES", "TIMING", "SEVERITY", "ORIGIN"
    );
    for r in list {
        let origin = match r["origin"].as_str() {
            Some("built_in") => "built-in",
            Some(o) => o,
            None => "?",
        };
        let _ = writeln!(
            out,
            "{:<wn$}  {:<wk$}  {:<ww$}  {:<wt$}  {:<8}  {:<8}  {}",
            r["name"].as_str().unwrap_or("?"),
            r["kind"].as_str().unwrap_or("?"),
            r["watches"].as_str().unwrap_or("?"),
            r["timing"].as_str().unwrap_or("?"),
            r["severity"].as_str().unwrap_or("?"),
            origin,
            if r["enabled"].as_bool().unwrap_or(true) {
                "yes"
            } else {
                "no"
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `rules` table of the built-ins, one switched off by the config and one rule of
    /// the host, matches `tests/golden/rules.txt` (rewrite it with UPDATE_GOLDEN=1).
    #[test]
    fn rules_table_is_pinned() {
        use perfvisor_actors::alerts::{high_cpu_rule, listed_rules, ThresholdRule};
        let host = [
            ThresholdRule::above("slow_search", "search.latency_seconds", 0.5)
                .clear_at(0.3)
                .for_project("shop"),
        ];
        let config = [high_cpu_rule().enabled(false)];
        let json = serde_json::to_value(listed_rules(&host, &config, true)).unwrap();
        let text = render_rules(&json);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/rules.txt");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            text, expected,
            "rerun with UPDATE_GOLDEN=1 if the change is intended"
        );
    }
}
