//! The deliverers: HTTP (webhook and Alertmanager bodies), exec (a program with the JSON on
//! its standard input, killed with its process group on timeout) and log.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use ureq::http::{HeaderName, HeaderValue};

use crate::types::{Alert, AlertState};

use super::*;

/// How an HTTP sink encodes its body.
pub(super) enum Format {
    Webhook,
    Alertmanager { generator_url: Option<String> },
}

/// Webhook and Alertmanager delivery over HTTP/1.1.
pub(super) struct HttpDeliverer {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    format: Format,
}

impl HttpDeliverer {
    pub(super) fn new(
        url: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
        format: Format,
    ) -> Self {
        let agent = ureq::Agent::config_builder()
            // Statuses are judged here (retry 5xx/429, not 4xx), with the body at hand.
            .http_status_as_error(false)
            // A redirected POST would silently become a GET; report the 3xx instead.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("perfvisor/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpDeliverer {
            agent,
            url,
            headers,
            timeout,
            format,
        }
    }
}

impl Deliver for HttpDeliverer {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn deliver(&mut self, alerts: &[Alert], timeout: Duration) -> Result<(), Failure> {
        let body = match &self.format {
            Format::Webhook => webhook_json(alerts),
            Format::Alertmanager { generator_url } => {
                alertmanager_json(alerts, generator_url.as_deref())
            }
        }
        .map_err(|e| Failure::permanent(format!("cannot encode the alerts as JSON: {e}")))?;
        let mut request = self.agent.post(&self.url).content_type("application/json");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request
            .config()
            // The whole request: resolution, connection, sending and the answer.
            .timeout_global(Some(timeout))
            .build()
            .send(&body[..]);
        let mut response = match response {
            Ok(response) => response,
            Err(e) => {
                let retryable = matches!(
                    e,
                    ureq::Error::Timeout(_)
                        | ureq::Error::Io(_)
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::HostNotFound
                        | ureq::Error::Protocol(_)
                );
                return Err(Failure {
                    message: format!("POST {} failed: {e}", self.url),
                    retryable,
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut excerpt = Vec::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(EXCERPT_BYTES as u64)
            .read_to_end(&mut excerpt);
        let message = format!(
            "POST {} answered {status}: {}",
            self.url,
            String::from_utf8_lossy(&excerpt).trim()
        );
        if status.as_u16() == 429 || status.is_server_error() {
            Err(Failure {
                message,
                retryable: true,
                retry_after,
            })
        } else {
            Err(Failure::permanent(message))
        }
    }
}

/// Runs a program per notification.
pub(super) struct ExecDeliverer {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) timeout: Duration,
}

impl Deliver for ExecDeliverer {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn deliver(&mut self, alerts: &[Alert], timeout: Duration) -> Result<(), Failure> {
        let body = webhook_json(alerts)
            .map_err(|e| Failure::permanent(format!("cannot encode the alerts as JSON: {e}")))?;
        crate::exec::run(&self.program, &self.args, Some(body), timeout)
            .map_err(|e| Failure::transient(e.to_string()))
    }
}

/// Writes alerts to the log.
pub(super) struct LogDeliverer {
    pub(super) name: String,
}

impl Deliver for LogDeliverer {
    fn timeout(&self) -> Duration {
        MAX_TIMEOUT
    }

    fn deliver(&mut self, alerts: &[Alert], _timeout: Duration) -> Result<(), Failure> {
        for a in alerts {
            match a.state {
                AlertState::Firing => tracing::warn!(
                    sink = %self.name, rule = %a.rule, series = %a.series, severity = %a.severity,
                    value = a.value, threshold = a.threshold, message = %a.message,
                    "Alert firing."
                ),
                AlertState::Resolved => tracing::info!(
                    sink = %self.name, rule = %a.rule, series = %a.series, severity = %a.severity,
                    value = a.value, threshold = a.threshold, message = %a.message,
                    "Alert resolved."
                ),
            }
        }
        Ok(())
    }
}
