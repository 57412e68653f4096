//! The deliverers: HTTP (webhook and Alertmanager bodies), exec (a program with the JSON on
//! its standard input, killed with its process group on timeout) and log.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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
        let program = self.program.display();
        let started = Instant::now();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so that a timeout kills what it started too.
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::transient(format!("cannot start {program}: {e}")))?;
        let pid = child.id();
        // Stdin and stderr on helper threads: a program that reads nothing, or writes much to
        // stderr, must not block this thread past the timeout.
        let stdin = child.stdin.take();
        let writer = thread::Builder::new()
            .name("sink-exec-stdin".into())
            .spawn(move || {
                if let Some(mut stdin) = stdin {
                    // A program that exits without reading gives EPIPE; its exit status says
                    // whether it failed.
                    let _ = stdin.write_all(&body);
                }
            });
        let (excerpt_tx, excerpt_rx) = crossbeam_channel::bounded(1);
        let stderr = child.stderr.take();
        let reader = thread::Builder::new()
            .name("sink-exec-stderr".into())
            .spawn(move || {
                let mut excerpt = Vec::new();
                if let Some(mut stderr) = stderr {
                    let _ = Read::by_ref(&mut stderr)
                        .take(EXCERPT_BYTES as u64)
                        .read_to_end(&mut excerpt);
                    let _ = excerpt_tx.try_send(excerpt);
                    let _ = io::copy(&mut stderr, &mut io::sink());
                }
            });
        if let Err(e) = writer.and(reader) {
            kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::transient(format!(
                "cannot start a helper thread for {program}: {e}"
            )));
        }
        let deadline = started + timeout;
        let mut nap = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // Not reaped yet, so the pid (and group id) cannot have been reused.
                        kill_group(pid);
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(Failure::transient(format!(
                            "{program} (pid {pid}) still ran after {timeout:?}; killed it"
                        )));
                    }
                    thread::sleep(nap.min(deadline - now));
                    nap = (nap * 2).min(Duration::from_millis(20));
                }
                Err(e) => {
                    kill_group(pid);
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Failure::transient(format!(
                        "cannot wait for {program}: {e}"
                    )));
                }
            }
        };
        if status.success() {
            return Ok(());
        }
        // A descendant may keep stderr open; do not wait for it long.
        let excerpt = excerpt_rx
            .recv_timeout(Duration::from_millis(100))
            .unwrap_or_default();
        Err(Failure::transient(format!(
            "{program} {status}: {}",
            String::from_utf8_lossy(&excerpt).trim()
        )))
    }
}

/// Kills the process group led by `pid` (the exec program and its descendants).
pub(super) fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory effects; the group is ours (spawned with process_group(0))
        // and its leader is not reaped yet.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
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
