//! Health probes (HTTP GET, TCP connect, command) and the timer thread that runs one check
//! of one process generation. A check thread only measures and reports to the daemon's
//! supervisor; counting failures, readiness and restarts are decided there, in one place.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tracing::warn;

use super::daemon::Control;
use super::spec::{CheckKind, CheckSpec};

/// Run one probe, failing once `timeout` has passed; `Err` says why it failed.
pub(crate) fn probe(kind: &CheckKind, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    match kind {
        CheckKind::Tcp { address } => connect(address, deadline).map(drop),
        CheckKind::Http { url } => http_get(url, deadline),
        CheckKind::Command { argv } => command(argv, deadline),
    }
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("timed out".to_string())
    } else {
        Ok(left)
    }
}

fn connect(address: &str, deadline: Instant) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address:?}: {e}"))?
        .collect();
    let mut last = format!("{address:?} resolved to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// GETs `url` before `deadline`; a 2xx or 3xx status (not followed) is healthy.
fn http_get(url: &str, deadline: Instant) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // The status is judged here.
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(remaining(deadline)?))
        .user_agent("perfvisor")
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {url}: status {status}"))
    }
}

/// Runs the check's command (no shell) until `deadline`; a timeout kills its process group.
fn command(argv: &[String], deadline: Instant) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty check command")?;
    let timeout = remaining(deadline)?;
    perfvisor_actors::exec::run(std::path::Path::new(program), args, None, timeout)
        .map_err(|e| e.to_string())
}

/// Start the timer thread of check `index` for process generation `generation`; it probes at
/// once, then every `interval`, and ends when `cancel` disconnects or `report` is closed.
pub(crate) fn spawn_check_thread(
    name: &str,
    generation: u64,
    index: usize,
    spec: CheckSpec,
    cancel: Receiver<()>,
    report: Sender<Control>,
) {
    let spawned = thread::Builder::new()
        .name(format!("check-{name}-{index}"))
        .spawn(move || loop {
            let started = Instant::now();
            let result = probe(&spec.kind, spec.timeout);
            let latency = started.elapsed();
            let msg = Control::Check {
                generation,
                index,
                ok: result.is_ok(),
                latency,
                error: result.err(),
            };
            if report.send(msg).is_err() {
                return;
            }
            let wait = (started + spec.interval).saturating_duration_since(Instant::now());
            match cancel.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        });
    if let Err(e) = spawned {
        warn!(daemon = %name, check = index, error = %e, "Cannot start check thread; the check will not run.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-request-per-connection HTTP server on 127.0.0.1: `/ok` → 200, anything else → 500.
    pub(crate) fn http_server(requests: usize) -> (SocketAddr, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut s = stream.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let status = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "500 Oops"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (addr, handle)
    }

    /// Port 1: below the ephemeral range, so no other test's server can be handed it while
    /// this test expects it closed (a bound-and-released port can be).
    fn closed_port() -> SocketAddr {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} is open"
        );
        addr
    }

    /// HTTP probes pass on 2xx and fail on 5xx or a closed port.
    #[test]
    fn http_probe() {
        let (addr, server) = http_server(2);
        let t = Duration::from_secs(2);
        assert_eq!(
            probe(
                &CheckKind::Http {
                    url: format!("http://{addr}/ok")
                },
                t
            ),
            Ok(())
        );
        let err = probe(
            &CheckKind::Http {
                url: format!("http://{addr}/bad"),
            },
            t,
        )
        .unwrap_err();
        assert!(err.contains("500"), "{err}");
        server.join().unwrap();
        assert!(probe(
            &CheckKind::Http {
                url: format!("http://{}/ok", closed_port())
            },
            t
        )
        .is_err());
    }

    /// TCP probes pass against a listener and fail against a closed port.
    #[test]
    fn tcp_probe() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Duration::from_secs(2);
        assert_eq!(
            probe(
                &CheckKind::Tcp {
                    address: l.local_addr().unwrap().to_string()
                },
                t
            ),
            Ok(())
        );
        assert!(probe(
            &CheckKind::Tcp {
                address: closed_port().to_string()
            },
            t
        )
        .is_err());
    }

    /// Command probes follow the exit code and are killed at the timeout.
    #[test]
    fn command_probe() {
        let t = Duration::from_secs(2);
        let cmd = |a: &[&str]| CheckKind::Command {
            argv: a.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(probe(&cmd(&["true"]), t), Ok(()));
        assert!(probe(&cmd(&["false"]), t).is_err());
        let started = Instant::now();
        let err = probe(&cmd(&["sleep", "5"]), Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
