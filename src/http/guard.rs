//! Who may call the API and how: the `Host` check every request goes through (against DNS
//! rebinding from a browser on this machine), the token scopes (read, push, admin), and the
//! connection limit derived from the process's descriptor limit.
//!
//! Scopes nest: the admin token (`token` in the config, as before scopes existed) may do
//! everything, the push token may read and push metrics, the read token may only read.
//! Reads need no token only on a loopback address with no token configured at all, or with
//! `[api] anonymous_loopback_reads = true`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, ResponseError};

use super::{Problem, State};

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Scope {
    /// Reading: every GET.
    Read,
    /// Pushing application metrics (`POST /api/v1/metrics`).
    Push,
    /// Everything else that changes state: register, silences, managed actions, reload.
    Admin,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Push => "push",
            Scope::Admin => "admin",
        }
    }
}

/// The configured tokens, one per scope; an empty string counts as none.
#[derive(Default)]
pub(super) struct Tokens {
    admin: Option<String>,
    push: Option<String>,
    read: Option<String>,
}

impl Tokens {
    pub(super) fn new(admin: Option<String>, read: Option<String>, push: Option<String>) -> Self {
        let set = |t: Option<String>| t.filter(|t| !t.is_empty());
        Tokens {
            admin: set(admin),
            push: set(push),
            read: set(read),
        }
    }

    /// Whether any token is configured.
    pub(super) fn any(&self) -> bool {
        self.admin.is_some() || self.push.is_some() || self.read.is_some()
    }

    /// Whether some configured token grants `scope`.
    fn grantable(&self, scope: Scope) -> bool {
        match scope {
            Scope::Read => self.any(),
            Scope::Push => self.admin.is_some() || self.push.is_some(),
            Scope::Admin => self.admin.is_some(),
        }
    }

    /// The scope `given` grants, if it is one of the tokens. Every configured token is
    /// compared, in constant time each, whatever matched.
    fn scope_of(&self, given: &str) -> Option<Scope> {
        let mut best = None;
        for (token, scope) in [
            (&self.read, Scope::Read),
            (&self.push, Scope::Push),
            (&self.admin, Scope::Admin),
        ] {
            if let Some(t) = token {
                if constant_time_eq(given.as_bytes(), t.as_bytes()) {
                    best = best.max(Some(scope));
                }
            }
        }
        best
    }
}

/// Checks the bearer token against what the call needs: reads are open only on loopback
/// with no token configured (or anonymous loopback reads allowed); otherwise the presented token's scope must cover `needed`.
pub(super) fn authorize(req: &HttpRequest, state: &State, needed: Scope) -> Result<(), Problem> {
    let tokens = &state.tokens;
    if needed == Scope::Read && state.open_reads {
        return Ok(());
    }
    if !tokens.grantable(needed) {
        let what = match needed {
            Scope::Admin => "configure supervisor.token (or token_file), the admin token, and send Authorization: Bearer <token>",
            _ => "configure supervisor.token or [api] push_token and send Authorization: Bearer <token>",
        };
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "this call changes perfvisor's state and no API token with the {} scope is configured",
                needed.name()
            ),
            what,
        ));
    }
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing token",
            "Authorization: Bearer <a configured token>",
        ));
    };
    match tokens.scope_of(given) {
        Some(scope) if scope >= needed => Ok(()),
        Some(scope) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "the {} token may not make this call; it needs the {} scope",
                scope.name(),
                needed.name()
            ),
            match needed {
                Scope::Push => "the push token or the admin token",
                _ => "the admin token",
            },
        )),
        None => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "wrong token",
            "Authorization: Bearer <a configured token>",
        )),
    }
}

/// Compares a presented token with the configured one without an early exit: every byte
/// is looked at whatever the first difference, so the time taken does not tell an attacker
/// how much of a guess was right (only whether its length was). `black_box` keeps the
/// optimiser from turning the fold back into a short-circuiting comparison.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// Host names a request may be addressed to, besides `localhost` and IP addresses.
#[derive(Debug, Default)]
pub(super) struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    pub(super) fn new(names: &[String]) -> Self {
        AllowedHosts(names.iter().map(|n| normalise(n)).collect())
    }

    /// Whether a `Host` header value is acceptable: an IP address (a browser's page from
    /// another site never has one as its origin, so DNS rebinding cannot produce it),
    /// `localhost`, or a configured name; with or without a port.
    pub(super) fn allows(&self, host: &str) -> bool {
        let name = without_port(host);
        if name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        let name = normalise(name);
        name == "localhost" || self.0.contains(&name)
    }
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `example.org:80` → `example.org`, `[::1]:80` → `::1`, `127.0.0.1` → itself.
fn without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // Only `[v6]` or `[v6]:port`; anything else stays whole and fails to parse.
        return match rest.split_once(']') {
            Some((ip, "")) => ip,
            Some((ip, port))
                if port.len() > 1
                    && port[1..].bytes().all(|b| b.is_ascii_digit())
                    && port.starts_with(':') =>
            {
                ip
            }
            _ => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Middleware: refuses (421) a request whose `Host` header names this server by a name it
/// does not answer to. A request without a `Host` header (HTTP/1.0) is let through: no
/// browser sends one.
pub(super) async fn check_host(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .map(|h| h.to_str().unwrap_or("<not text>").to_string());
    let allowed = match (&host, req.app_data::<web::Data<State>>()) {
        (Some(h), Some(state)) => state.hosts.allows(h),
        _ => true,
    };
    if !allowed {
        let problem = Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this server does not answer to the host {:?}",
                host.unwrap_or_default()
            ),
            "localhost, an IP address, or a name listed in [api] allowed_hosts",
        );
        return Ok(req
            .into_response(problem.error_response())
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Descriptors kept free for everything but connections: the database, log files, managed
/// daemons' pipes, /proc reads.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// `wanted` connections, lowered so that connections can never take the descriptors the
/// rest of perfvisor needs: at most the soft `RLIMIT_NOFILE` less [`RESERVED_DESCRIPTORS`],
/// halved, and at least 16.
pub(super) fn connections_within_descriptors(wanted: usize) -> usize {
    let soft = descriptor_limit().unwrap_or(1024);
    let room = soft.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(16)
}

/// The soft limit on open descriptors of this process.
pub fn descriptor_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IP literals, `localhost` and configured names pass, with or without a port; any
    /// other name (a rebinding attacker's domain) does not.
    #[test]
    fn host_names() {
        let hosts = AllowedHosts::new(&["perf.example.org".to_string()]);
        for ok in [
            "localhost",
            "LOCALHOST:9465",
            "127.0.0.1:9465",
            "127.0.0.1",
            "[::1]:9465",
            "[::1]",
            "10.1.2.3:80",
            "perf.example.org",
            "Perf.Example.Org.:9465",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example.com",
            "evil.example.com:9465",
            "localhost.evil.com",
            "127.0.0.1.evil.com",
            "",
            "[::1",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
    }

    /// Each token grants its scope and the scopes below it, and only those.
    #[test]
    fn token_scopes_nest() {
        let t = Tokens::new(Some("a".into()), Some("r".into()), Some("p".into()));
        assert_eq!(t.scope_of("a"), Some(Scope::Admin));
        assert_eq!(t.scope_of("p"), Some(Scope::Push));
        assert_eq!(t.scope_of("r"), Some(Scope::Read));
        assert_eq!(t.scope_of("x"), None);
        let only_read = Tokens::new(None, Some("r".into()), None);
        assert!(only_read.any());
        assert!(only_read.grantable(Scope::Read));
        assert!(!only_read.grantable(Scope::Push));
        assert!(!only_read.grantable(Scope::Admin));
        assert!(!Tokens::new(Some(String::new()), None, None).any());
    }

    /// The connection limit leaves the reserved descriptors free, and never drops below 16.
    #[test]
    fn connections_fit_the_descriptor_limit() {
        let soft = descriptor_limit().unwrap();
        let n = connections_within_descriptors(usize::MAX);
        assert!(n as u64 <= soft.saturating_sub(RESERVED_DESCRIPTORS).max(32));
        assert_eq!(connections_within_descriptors(1), 16);
    }

    /// The token comparison: equal only for identical bytes; a difference at the first or
    /// the last byte, or a prefix, is refused alike.
    #[test]
    fn token_comparison_is_exact() {
        let token = b"s3cret-token-0123456789";
        assert!(constant_time_eq(token, token));
        let mut first = *token;
        first[0] ^= 1;
        let mut last = *token;
        last[token.len() - 1] ^= 0x80;
        assert!(!constant_time_eq(&first, token));
        assert!(!constant_time_eq(&last, token));
        assert!(!constant_time_eq(&token[..5], token));
        assert!(!constant_time_eq(b"", token));
        assert!(constant_time_eq(b"", b""));
    }
}
