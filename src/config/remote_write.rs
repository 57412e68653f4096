//! `[[remote_write]]`: where perfvisor ships its history with Prometheus remote-write 1.0,
//! how it authenticates, how fast it may catch up, and which series it leaves out. Read
//! here into [`RemoteWriteConfig`], the type the shipper (`crate::remote_write`) runs from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::reader::{quoted_list, Ctx, Table};

pub(super) const REMOTE_WRITE_KEYS: &[&str] = &[
    "name",
    "url",
    "headers",
    "labels",
    "basic_auth",
    "bearer_token_file",
    "timeout",
    "max_samples_per_send",
    "max_samples_per_second",
    "backfill",
    "min_backoff",
    "max_backoff",
    "relabel",
];
const BASIC_AUTH_KEYS: &[&str] = &["username", "password_file"];
const RELABEL_KEYS: &[&str] = &["action", "metric", "label", "regex"];
const ACTIONS: &[&str] = &["keep", "drop"];

/// Default `timeout` of one request (Prometheus' `remote_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `max_samples_per_send` (Prometheus' own queue default).
pub const DEFAULT_MAX_SAMPLES_PER_SEND: usize = 2000;
/// Default `max_samples_per_second`: the catch-up rate after an outage.
pub const DEFAULT_MAX_SAMPLES_PER_SECOND: u64 = 50_000;
/// Default `min_backoff` (Prometheus' default).
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(30);
/// Default `max_backoff` (Prometheus' default).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a remote is authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum RemoteAuth {
    /// `basic_auth = { username, password_file }`.
    Basic {
        /// `username`.
        username: String,
        /// `password_file`: read (and trimmed) when the shipper starts.
        password_file: PathBuf,
    },
    /// `bearer_token_file`: read (and trimmed) when the shipper starts.
    Bearer(PathBuf),
}

impl fmt::Debug for RemoteAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteAuth::Basic {
                username,
                password_file,
            } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password_file", password_file)
                .finish(),
            RemoteAuth::Bearer(p) => f.debug_tuple("Bearer").field(p).finish(),
        }
    }
}

/// A regular expression matched against a whole name or value, kept with its text.
#[derive(Clone, Debug)]
pub struct FullMatch {
    text: String,
    regex: regex::Regex,
}

impl FullMatch {
    /// Compiles `text` anchored at both ends.
    pub fn new(text: &str) -> Result<Self, regex::Error> {
        Ok(FullMatch {
            text: text.to_owned(),
            regex: regex::Regex::new(&format!("^(?:{text})$"))?,
        })
    }

    /// True when the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for FullMatch {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// What a relabel rule does with the series it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelabelAction {
    /// `"keep"`: series that do not match are left out.
    Keep,
    /// `"drop"`: series that match are left out.
    Drop,
}

/// `[[remote_write.relabel]]`: keep or drop series by Prometheus metric name and/or label
/// value (both regular expressions matched in full; a series matches when every condition
/// given holds). Rules apply in order.
#[derive(Clone, Debug, PartialEq)]
pub struct RelabelRule {
    /// `action`.
    pub action: RelabelAction,
    /// `metric`: on the Prometheus name (`process_memory_usage_bytes`).
    pub metric: Option<FullMatch>,
    /// `label` and `regex`: on that label's value (`daemon`, `source`, `project`...); a
    /// series without the label matches against the empty string.
    pub label: Option<(String, FullMatch)>,
}

impl RelabelRule {
    /// True when the series with Prometheus name `name` and `labels` matches.
    pub fn matches(&self, name: &str, labels: &[(String, String)]) -> bool {
        self.metric.as_ref().is_none_or(|m| m.is_match(name))
            && self.label.as_ref().is_none_or(|(key, re)| {
                let value = labels
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or("", |(_, v)| v.as_str());
                re.is_match(value)
            })
    }
}

/// Whether a series passes every rule, in order.
pub fn relabel_keeps(rules: &[RelabelRule], name: &str, labels: &[(String, String)]) -> bool {
    rules.iter().all(|r| match r.action {
        RelabelAction::Keep => r.matches(name, labels),
        RelabelAction::Drop => !r.matches(name, labels),
    })
}

/// `[[remote_write]]`: one Prometheus remote-write endpoint.
#[derive(Clone, PartialEq)]
pub struct RemoteWriteConfig {
    /// `name`: unique; names its cursor, self-metrics (`remote` label) and status entry.
    pub name: String,
    /// `url`: the endpoint, e.g. `http://prometheus:9090/api/v1/write`; `https://` needs the
    /// `tls` feature.
    pub url: String,
    /// `headers`: extra request headers (a tenant id...). Default none.
    pub headers: BTreeMap<String, String>,
    /// `labels`: labels added to every series shipped (which host it came from, like
    /// Prometheus' external labels); a series' own label of the same name wins. Default
    /// none.
    pub labels: BTreeMap<String, String>,
    /// `basic_auth` or `bearer_token_file`. Default none.
    pub auth: Option<RemoteAuth>,
    /// `timeout`: bound of one request. Default [`DEFAULT_TIMEOUT`]; 100 ms to 5 min.
    pub timeout: Duration,
    /// `max_samples_per_send`: samples per request. Default
    /// [`DEFAULT_MAX_SAMPLES_PER_SEND`]; 1 to 100000.
    pub max_samples_per_send: usize,
    /// `max_samples_per_second`: the catch-up rate. Default
    /// [`DEFAULT_MAX_SAMPLES_PER_SECOND`]; 1 to 100000000.
    pub max_samples_per_second: u64,
    /// `backfill`: how far back a remote without a cursor starts. Default 0 (from now); at
    /// most 365 days.
    pub backfill: Duration,
    /// `min_backoff`: first pause before a retry. Default [`DEFAULT_MIN_BACKOFF`].
    pub min_backoff: Duration,
    /// `max_backoff`: longest pause. Default [`DEFAULT_MAX_BACKOFF`]; at least
    /// `min_backoff`.
    pub max_backoff: Duration,
    /// `[[remote_write.relabel]]`, in order.
    pub relabel: Vec<RelabelRule>,
}

impl RemoteWriteConfig {
    /// A remote with every default, for embedders and tests.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        RemoteWriteConfig {
            name: name.into(),
            url: url.into(),
            headers: BTreeMap::new(),
            labels: BTreeMap::new(),
            auth: None,
            timeout: DEFAULT_TIMEOUT,
            max_samples_per_send: DEFAULT_MAX_SAMPLES_PER_SEND,
            max_samples_per_second: DEFAULT_MAX_SAMPLES_PER_SECOND,
            backfill: Duration::ZERO,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            relabel: Vec::new(),
        }
    }
}

impl fmt::Debug for RemoteWriteConfig {
    // Header values may be credentials: they never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&String> = self.headers.keys().collect();
        f.debug_struct("RemoteWriteConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("labels", &self.labels)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("max_samples_per_send", &self.max_samples_per_send)
            .field("max_samples_per_second", &self.max_samples_per_second)
            .field("backfill", &self.backfill)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("relabel", &self.relabel)
            .finish()
    }
}

/// Reads every `[[remote_write]]` of the document.
pub(super) fn remote_writes(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Vec<RemoteWriteConfig> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for t in root.tables(ctx, "remote_write", REMOTE_WRITE_KEYS) {
        if let Some(toml::de::DeValue::String(name)) = t.get("name").map(|v| v.get_ref()) {
            if let Some(first) = seen.get(name.as_ref()) {
                t.bad(
                    ctx,
                    "name",
                    format!(
                        "remote_write name {name:?} is already used by {first}; expected a unique name"
                    ),
                );
            } else {
                seen.insert(name.to_string(), t.path.clone());
            }
        }
        if let Some(r) = remote_write(ctx, &t) {
            out.push(r);
        }
    }
    out
}

fn remote_write(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<RemoteWriteConfig> {
    let before = ctx.problems.len();
    let name = t.required_name(ctx, "name");
    const URL: &str = "an http:// URL with a host, e.g. \"http://127.0.0.1:9090/api/v1/write\"";
    let url = t.required(ctx, "url", URL);
    if let Some(u) = &url {
        if let Some(problem) = url_problem(u) {
            t.bad(
                ctx,
                "url",
                format!("{u:?} is not accepted ({problem}); expected {URL}"),
            );
        }
    }
    let headers = t.headers(
        ctx,
        "headers",
        &[
            "Content-Type",
            "Content-Encoding",
            "X-Prometheus-Remote-Write-Version",
        ],
    );
    let labels = t.string_map(ctx, "labels").unwrap_or_default();
    for k in labels.keys() {
        let ok = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && !k.starts_with("__")
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            t.bad(
                ctx,
                "labels",
                format!("label name {k:?} is not accepted; expected a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"),
            );
        }
    }
    let basic = t.table(ctx, "basic_auth", BASIC_AUTH_KEYS).and_then(|b| {
        let username = b.required(ctx, "username", "a user name");
        let password_file = if b.has("password_file") {
            b.path(ctx, "password_file")
        } else {
            b.missing(ctx, "password_file", "a file holding the password");
            None
        };
        Some(RemoteAuth::Basic {
            username: username?,
            password_file: password_file?,
        })
    });
    let bearer = t.path(ctx, "bearer_token_file").map(RemoteAuth::Bearer);
    let has_authorization = headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("authorization"));
    if (basic.is_some() as u8 + bearer.is_some() as u8 + has_authorization as u8) > 1 {
        t.bad(
            ctx,
            "bearer_token_file",
            "basic_auth, bearer_token_file and an Authorization header exclude each other; \
             expected at most one of them",
        );
    }
    let timeout = t
        .duration(
            ctx,
            "timeout",
            Duration::from_millis(100),
            Duration::from_secs(300),
        )
        .unwrap_or(DEFAULT_TIMEOUT);
    let max_samples_per_send = t
        .integer(ctx, "max_samples_per_send", 1, 100_000)
        .map_or(DEFAULT_MAX_SAMPLES_PER_SEND, |n| n as usize);
    let max_samples_per_second = t
        .integer(ctx, "max_samples_per_second", 1, 100_000_000)
        .map_or(DEFAULT_MAX_SAMPLES_PER_SECOND, |n| n as u64);
    let backfill = t
        .duration(
            ctx,
            "backfill",
            Duration::ZERO,
            Duration::from_secs(365 * 86_400),
        )
        .unwrap_or(Duration::ZERO);
    let min_backoff = t
        .duration(
            ctx,
            "min_backoff",
            Duration::from_millis(1),
            Duration::from_secs(60),
        )
        .unwrap_or(DEFAULT_MIN_BACKOFF);
    let max_backoff = t
        .duration(
            ctx,
            "max_backoff",
            Duration::from_millis(1),
            Duration::from_secs(600),
        )
        .unwrap_or(DEFAULT_MAX_BACKOFF.max(min_backoff));
    if max_backoff < min_backoff {
        t.bad(
            ctx,
            "max_backoff",
            format!(
                "{} is shorter than min_backoff ({}); expected at least min_backoff",
                crate::units::format_duration(max_backoff),
                crate::units::format_duration(min_backoff)
            ),
        );
    }
    let mut relabel = Vec::new();
    for r in t.tables(ctx, "relabel", RELABEL_KEYS) {
        if let Some(rule) = relabel_rule(ctx, &r) {
            relabel.push(rule);
        }
    }
    if ctx.problems.len() != before {
        return None;
    }
    Some(RemoteWriteConfig {
        name: name?,
        url: url?,
        headers,
        labels,
        auth: basic.or(bearer),
        timeout,
        max_samples_per_send,
        max_samples_per_second,
        backfill,
        min_backoff,
        max_backoff,
        relabel,
    })
}

fn relabel_rule(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<RelabelRule> {
    if !t.has("action") {
        t.missing(ctx, "action", &format!("one of {}", quoted_list(ACTIONS)));
    }
    let action = match t.choice(ctx, "action", ACTIONS)?.as_str() {
        "keep" => RelabelAction::Keep,
        _ => RelabelAction::Drop,
    };
    let compile = |ctx: &mut Ctx<'_>, key: &str| -> Option<FullMatch> {
        let text = t.string(ctx, key, "a regular expression")?;
        match FullMatch::new(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                let why = e.to_string();
                let last = why.lines().last().unwrap_or("invalid").trim().to_owned();
                t.bad(
                    ctx,
                    key,
                    format!("{text:?} is not a regular expression ({last}); expected a regex such as \"process_.*\""),
                );
                None
            }
        }
    };
    let metric = if t.has("metric") {
        Some(compile(ctx, "metric")?)
    } else {
        None
    };
    let label = match (t.has("label"), t.has("regex")) {
        (true, true) => Some((
            t.nonempty(ctx, "label", "a label name such as \"daemon\"")?,
            compile(ctx, "regex")?,
        )),
        (true, false) => {
            t.missing(ctx, "regex", "a regular expression for the label's value");
            return None;
        }
        (false, true) => {
            t.missing(
                ctx,
                "label",
                "the label the regex applies to, e.g. \"daemon\"",
            );
            return None;
        }
        (false, false) => None,
    };
    if metric.is_none() && label.is_none() {
        t.missing(
            ctx,
            "metric",
            "metric (a regex on the Prometheus name) or label and regex",
        );
        return None;
    }
    Some(RelabelRule {
        action,
        metric,
        label,
    })
}

/// Why `url` cannot be a remote-write endpoint, or `None`.
fn url_problem(url: &str) -> Option<&'static str> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("it contains spaces");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("it has no scheme");
    };
    if scheme.eq_ignore_ascii_case("https") && !cfg!(feature = "tls") {
        return Some(
            "https:// needs TLS, which this build leaves out; use http://, or build perfvisor \
             with its `tls` feature",
        );
    }
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Some("its scheme is neither http nor https");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => ("", None),
        },
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        Some("it has no host")
    } else if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        Some("its port is not a number from 0 to 65535")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keep and drop rules apply in order on the Prometheus name and on label values.
    #[test]
    fn relabel_keeps_and_drops_in_order() {
        let rules = vec![
            RelabelRule {
                action: RelabelAction::Keep,
                metric: Some(FullMatch::new("process_.*").unwrap()),
                label: None,
            },
            RelabelRule {
                action: RelabelAction::Drop,
                metric: None,
                label: Some(("daemon".into(), FullMatch::new("noisy|test-.*").unwrap())),
            },
        ];
        let d = |v: &str| vec![("daemon".to_string(), v.to_string())];
        assert!(relabel_keeps(&rules, "process_thread", &d("api")));
        assert!(!relabel_keeps(&rules, "host_cpu", &d("api")));
        assert!(!relabel_keeps(&rules, "process_thread", &d("noisy")));
        assert!(!relabel_keeps(&rules, "process_thread", &d("test-1")));
        // Anchored: a rule on "process" alone does not match "process_thread".
        let exact = [RelabelRule {
            action: RelabelAction::Drop,
            metric: Some(FullMatch::new("process").unwrap()),
            label: None,
        }];
        assert!(relabel_keeps(&exact, "process_thread", &[]));
    }

    /// https URLs are refused with the reason unless the build has TLS; http URLs with a
    /// host pass.
    #[test]
    fn urls_need_http_and_a_host() {
        assert_eq!(url_problem("http://127.0.0.1:9090/api/v1/write"), None);
        assert_eq!(
            url_problem("https://x/api/v1/write").is_some_and(|p| p.contains("TLS")),
            !cfg!(feature = "tls")
        );
        assert_eq!(url_problem("http:///x"), Some("it has no host"));
        assert_eq!(
            url_problem("ftp://x"),
            Some("its scheme is neither http nor https")
        );
        assert_eq!(
            url_problem("http://x:99999/"),
            Some("its port is not a number from 0 to 65535")
        );
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<RemoteWriteConfig>, String> {
        crate::config::parse(text, "test.toml")
            .map(|c| c.remote_write)
            .map_err(|e| e.to_string())
    }

    /// Every key is read into the config, defaults fill the rest.
    #[test]
    fn full_remote_write_parses() {
        let r = parse(
            r#"
[[remote_write]]
name = "central"
url = "http://127.0.0.1:9090/api/v1/write"
headers = { X-Scope-OrgID = "a" }
labels = { host = "web-1" }
bearer_token_file = "/run/token"
max_samples_per_send = 500
max_samples_per_second = 1000
backfill = "1h"
[[remote_write.relabel]]
action = "keep"
label = "daemon"
regex = "api"

[[remote_write]]
name = "second"
url = "http://127.0.0.1:8428/api/v1/write"
"#,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].max_samples_per_send, 500);
        assert_eq!(r[0].backfill, Duration::from_secs(3600));
        assert_eq!(r[0].auth, Some(RemoteAuth::Bearer("/run/token".into())));
        assert_eq!(r[0].labels.get("host").map(String::as_str), Some("web-1"));
        assert_eq!(r[0].relabel.len(), 1);
        assert_eq!(
            r[1],
            RemoteWriteConfig::new("second", "http://127.0.0.1:8428/api/v1/write")
        );
    }

    /// Bad values are named with what would be accepted, all at once.
    #[test]
    fn bad_values_are_named() {
        let err = parse(
            r#"
[[remote_write]]
name = "a"
url = "https://x/api/v1/write"
min_backoff = "2s"
max_backoff = "1s"
bearer_token_file = "/t"
headers = { Authorization = "Bearer x", Content-Type = "text/plain" }
[[remote_write.relabel]]
action = "delete"
metric = "x"

[[remote_write]]
name = "a"
url = "http://x/"
"#,
        )
        .unwrap_err();
        for needle in [
            "is shorter than min_backoff",
            "exclude each other",
            "header \"Content-Type\" is not accepted",
            "\"delete\" is not accepted; expected one of",
            "remote_write name \"a\" is already used by remote_write[0]",
        ] {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
        if !cfg!(feature = "tls") {
            let needle = "\"https://x/api/v1/write\" is not accepted (https:// needs TLS";
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }
}
