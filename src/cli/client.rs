//! The CLI's client side: talks to a running perfvisor over its HTTP API and prints tables or
//! JSON. Says clearly when no instance is running at the address.

use std::time::Duration;

use serde_json::Value;

/// Where the running instance listens and the token to use.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    address: String,
    origin: Origin,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Where the client's address came from, so an error can say what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--address` or `PERFVISOR_ADDRESS`.
    Flag,
    /// The `listen` key of this config file.
    Config(std::path::PathBuf),
    /// Nothing was given: the default address.
    Default,
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
    /// A failed command (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

impl Client {
    /// A client for the instance at `address` (`host:port`), which came from `origin`.
    pub fn new(address: &str, origin: Origin, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            base: format!("http://{address}"),
            address: address.to_string(),
            origin,
            token,
            agent,
        }
    }

    fn unreachable(&self, e: &ureq::Error) -> CliError {
        match e {
            ureq::Error::ConnectionFailed | ureq::Error::Io(_) | ureq::Error::HostNotFound => {
                let (whose, what) = match &self.origin {
                    Origin::Config(path) => (
                        format!("the `listen` address of {}", path.display()),
                        format!(
                            "start it with `perfvisor run --config {}`, or set --address or \
                             PERFVISOR_ADDRESS",
                            path.display()
                        ),
                    ),
                    Origin::Flag => (
                        "given by --address or PERFVISOR_ADDRESS".to_string(),
                        "start one with `perfvisor run --config FILE`, fix the address, or \
                         use --config/PERFVISOR_CONFIG to read `listen` from the config"
                            .to_string(),
                    ),
                    Origin::Default => (
                        "the default address".to_string(),
                        "start one with `perfvisor run --config FILE`, or set --address or \
                         PERFVISOR_ADDRESS, or --config/PERFVISOR_CONFIG to read `listen` \
                         from the config"
                            .to_string(),
                    ),
                };
                CliError::failed(format!(
                    "no perfvisor is running at {}, {whose} ({e}); {what}",
                    self.address
                ))
            }
            other => CliError::failed(format!(
                "talking to perfvisor at {} failed: {other}",
                self.address
            )),
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
        let accepted = if status == 401 {
            let had = if self.token.is_some() {
                "the token given was not accepted; "
            } else {
                ""
            };
            format!(
                " ({had}pass --token or set PERFVISOR_TOKEN, or give --config/PERFVISOR_CONFIG \
                 to use the config's `token` or `token_file`)"
            )
        } else {
            value["accepted"]
                .as_str()
                .map(|a| format!(" (accepted: {a})"))
                .unwrap_or_default()
        };
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

/// The text of the `rules` table: every rule, enabled or not, with what it watches and
/// where it comes from (pinned by a golden test).
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
        super::super::human::tests::assert_human("rules", &text);
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
