//! One remote-write request over HTTP and what its answer means: success, try again
//! (connection failures, 5xx, 429, after `Retry-After` when given) or give up (any other
//! 4xx, whose samples are counted as dropped with the error kept), and the capped
//! exponential backoff with jitter between attempts.

use std::io::Read;
use std::time::Duration;

use crate::config::{RemoteAuth, RemoteWriteConfig};

/// The protocol version header's value for remote-write 1.0.
pub const PROTOCOL_VERSION: &str = "0.1.0";
/// Longest `Retry-After` honoured; a remote asking for more is asked again after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How much of an error answer's body is kept.
const EXCERPT_BYTES: u64 = 512;

/// What an answer's status means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 2xx: the samples are in.
    Accepted,
    /// 5xx or 429: the same request may succeed later.
    Retry,
    /// Any other status: sending it again cannot help.
    Refused,
}

/// Classifies a status code as the remote-write spec says.
pub fn classify(status: u16) -> Class {
    match status {
        200..=299 => Class::Accepted,
        429 | 500..=599 => Class::Retry,
        _ => Class::Refused,
    }
}

/// A `Retry-After` value in seconds (the HTTP-date form is not honoured: the backoff
/// applies instead), capped at five minutes.
pub fn retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// Why a request did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Worth sending again, after `after` if the remote said so.
    Retry {
        /// The remote's `Retry-After`.
        after: Option<Duration>,
        /// What happened.
        message: String,
    },
    /// Not worth sending again.
    Refused(String),
}

/// The pauses between attempts: perfvisor's one backoff ([`perfvisor_actors::backoff`]),
/// from `min` doubling per failure up to `max`, each pause within ±50 % of its step (never
/// above `max`), so many perfvisors that lost the same remote do not come back in step.
#[derive(Clone, Debug)]
pub struct Backoff {
    formula: perfvisor_actors::backoff::Backoff,
    /// Failures since the last success.
    attempt: u32,
}

impl Backoff {
    /// A backoff from `min` to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            formula: perfvisor_actors::backoff::Backoff {
                initial: min,
                factor: 2.0,
                max: max.max(min),
                jitter: 0.5,
            },
            attempt: 0,
        }
    }

    /// The pause before the next attempt; `retry_after` (the remote's wish) wins when given.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        retry_after.unwrap_or_else(|| self.formula.delay(self.attempt, fastrand::f64()))
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Sends request bodies to one endpoint.
pub struct Client {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
}

impl Client {
    /// A client for `remote`; reads its password or token file now. The error names the
    /// file.
    pub fn new(remote: &RemoteWriteConfig) -> Result<Self, String> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(remote.timeout))
            .user_agent(concat!("perfvisor/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut headers: Vec<(String, String)> = remote
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    format!(
                        "remote_write {:?}: cannot read {}: {e}",
                        remote.name,
                        path.display()
                    )
                })
        };
        match &remote.auth {
            Some(RemoteAuth::Basic {
                username,
                password_file,
            }) => {
                let password = read(password_file)?;
                headers.push((
                    "Authorization".into(),
                    format!(
                        "Basic {}",
                        base64(format!("{username}:{password}").as_bytes())
                    ),
                ));
            }
            Some(RemoteAuth::Bearer(path)) => {
                headers.push(("Authorization".into(), format!("Bearer {}", read(path)?)));
            }
            None => {}
        }
        Ok(Client {
            agent,
            url: remote.url.clone(),
            headers,
        })
    }

    /// Posts one compressed `WriteRequest`.
    pub fn send(&self, body: &[u8]) -> Result<(), Failure> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", PROTOCOL_VERSION);
        for (k, v) in &self.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let mut response = match request.send(body) {
            Ok(r) => r,
            Err(e) => {
                return Err(Failure::Retry {
                    after: None,
                    message: format!("POST {} failed: {e}", self.url),
                })
            }
        };
        let status = response.status().as_u16();
        let class = classify(status);
        if class == Class::Accepted {
            return Ok(());
        }
        let after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let mut excerpt = Vec::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(EXCERPT_BYTES)
            .read_to_end(&mut excerpt);
        let message = format!(
            "POST {} answered {status}: {}",
            self.url,
            String::from_utf8_lossy(&excerpt).trim()
        );
        match class {
            Class::Retry => Err(Failure::Retry { after, message }),
            _ => Err(Failure::Refused(message)),
        }
    }
}

/// Standard base64 with padding (for the basic-auth header).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5xx and 429 are retried, other 4xx (and 3xx) are refused, 2xx accepted.
    #[test]
    fn statuses_are_classified_as_the_spec_says() {
        for s in [200, 204, 299] {
            assert_eq!(classify(s), Class::Accepted, "{s}");
        }
        for s in [429, 500, 502, 503, 599] {
            assert_eq!(classify(s), Class::Retry, "{s}");
        }
        for s in [300, 400, 401, 403, 404, 409, 413, 422, 428, 430] {
            assert_eq!(classify(s), Class::Refused, "{s}");
        }
    }

    /// Retry-After in seconds is honoured and capped; other forms are ignored.
    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("100000"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    /// The backoff doubles up to its cap, each pause within ±50 % of its step and never
    /// above the cap, and a Retry-After wins.
    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let max = Duration::from_millis(400);
        let mut b = Backoff::new(Duration::from_millis(100), max);
        for step in [100u64, 200, 400, 400, 400] {
            let d = b.next(None);
            let step = Duration::from_millis(step);
            assert!(
                d >= step / 2 && d <= (step * 3 / 2).min(max),
                "{d:?} for step {step:?}"
            );
        }
        assert_eq!(b.next(Some(Duration::from_secs(3))), Duration::from_secs(3));
        b.reset();
        assert!(b.next(None) <= Duration::from_millis(150));
    }

    /// Base64 as RFC 4648 gives it, padding included.
    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }
}
