//! Sink configuration checks: every problem of a sink reported at once, and the deliverer
//! it becomes when there is none.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::http::{HeaderName, HeaderValue, Uri};

use super::*;

/// Checks everything, building the deliverer when all is well.
pub(super) fn validate(
    name: &str,
    config: &SinkConfig,
    settings: &SinkSettings,
) -> Result<Box<dyn Deliver>, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    if name.trim().is_empty() {
        problems.push(ConfigProblem::EmptyName);
    }
    if settings.queue == 0 {
        problems.push(ConfigProblem::BadCount {
            field: "queue",
            value: 0,
            accepted: "at least 1 notification",
        });
    }
    if settings.max_attempts == 0 || settings.max_attempts > MAX_ATTEMPTS_LIMIT {
        problems.push(ConfigProblem::BadCount {
            field: "max_attempts",
            value: u64::from(settings.max_attempts),
            accepted: "1 to 100 attempts",
        });
    }
    check_duration(&mut problems, "backoff_initial", settings.backoff_initial);
    check_duration(&mut problems, "backoff_max", settings.backoff_max);
    if settings.backoff_initial > settings.backoff_max {
        problems.push(ConfigProblem::BackoffOrder {
            initial: settings.backoff_initial,
            max: settings.backoff_max,
        });
    }
    let deliverer: Option<Box<dyn Deliver>> = match config {
        SinkConfig::Webhook {
            url,
            headers,
            timeout,
        } => {
            check_duration(&mut problems, "timeout", *timeout);
            let uri = check_url(&mut problems, url);
            let headers = check_headers(&mut problems, headers);
            uri.map(|_| {
                Box::new(HttpDeliverer::new(
                    url.clone(),
                    headers,
                    *timeout,
                    Format::Webhook,
                )) as Box<dyn Deliver>
            })
        }
        SinkConfig::Alertmanager {
            urls,
            timeout,
            generator_url,
        } => {
            check_duration(&mut problems, "timeout", *timeout);
            let url = match urls.as_slice() {
                [url] => Some(url),
                [] => {
                    problems.push(ConfigProblem::NoUrl);
                    None
                }
                several => {
                    problems.push(ConfigProblem::SeveralUrls {
                        count: several.len(),
                    });
                    None
                }
            };
            let uri = url.and_then(|url| check_url(&mut problems, url));
            url.zip(uri).map(|(url, _)| {
                let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
                Box::new(HttpDeliverer::new(
                    endpoint,
                    Vec::new(),
                    *timeout,
                    Format::Alertmanager {
                        generator_url: generator_url.clone(),
                    },
                )) as Box<dyn Deliver>
            })
        }
        SinkConfig::Exec {
            program,
            args,
            timeout,
        } => {
            check_duration(&mut problems, "timeout", *timeout);
            match resolve_program(program) {
                Ok(path) => Some(Box::new(ExecDeliverer {
                    program: path,
                    args: args.clone(),
                    timeout: *timeout,
                }) as Box<dyn Deliver>),
                Err(reason) => {
                    problems.push(ConfigProblem::BadProgram {
                        path: program.clone(),
                        reason,
                    });
                    None
                }
            }
        }
        SinkConfig::Log => Some(Box::new(LogDeliverer {
            name: name.to_owned(),
        })),
    };
    match deliverer {
        Some(d) if problems.is_empty() => Ok(d),
        _ => Err(problems),
    }
}

pub(super) fn check_duration(
    problems: &mut Vec<ConfigProblem>,
    field: &'static str,
    value: Duration,
) {
    if value.is_zero() || value > MAX_TIMEOUT {
        problems.push(ConfigProblem::BadDuration { field, value });
    }
}

pub(super) fn check_url(problems: &mut Vec<ConfigProblem>, url: &str) -> Option<Uri> {
    let bad = |reason: &str| ConfigProblem::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri = match url.parse::<Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            problems.push(bad(&format!("not a URL: {e}")));
            return None;
        }
    };
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    match scheme.as_deref() {
        Some("http") => {}
        Some("https") if TLS_ENABLED => {}
        Some("https") => {
            problems.push(ConfigProblem::TlsUnavailable {
                url: url.to_owned(),
            });
            return None;
        }
        Some(other) => {
            problems.push(bad(&format!("scheme {other:?}")));
            return None;
        }
        None => {
            problems.push(bad("no scheme"));
            return None;
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        problems.push(bad("no host"));
        return None;
    }
    Some(uri)
}

pub(super) fn check_headers(
    problems: &mut Vec<ConfigProblem>,
    headers: &[(String, String)],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let bad = |reason: String| ConfigProblem::BadHeader {
            name: name.clone(),
            reason,
        };
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => out.push((n, v)),
            (Err(e), _) => problems.push(bad(format!("bad name: {e}"))),
            (_, Err(e)) => problems.push(bad(format!("bad value: {e}"))),
        }
    }
    out
}

/// Finds the program (a bare name in `PATH`) and checks it is an executable file.
pub(super) fn resolve_program(program: &Path) -> Result<PathBuf, String> {
    let is_bare = program.components().count() == 1 && !program.has_root();
    let candidates: Vec<PathBuf> = if is_bare && !program.as_os_str().is_empty() {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    } else {
        vec![program.to_path_buf()]
    };
    let mut last = String::from("does not exist");
    for candidate in candidates {
        match std::fs::metadata(&candidate) {
            Ok(meta) if !meta.is_file() => last = "is not a file".into(),
            Ok(meta) if meta.permissions().mode() & 0o111 == 0 => {
                last = "is not executable (no x permission bit)".into();
            }
            Ok(_) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => last = format!("cannot be read: {e}"),
        }
    }
    if is_bare && last == "does not exist" {
        last = "is not found in PATH".into();
    }
    Err(last)
}
