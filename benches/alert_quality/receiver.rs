//! The webhook receiver: every alert perfvisor sends, timestamped on receipt.

use super::*;

// ---------------------------------------------------------------------------------------
// The webhook receiver
// ---------------------------------------------------------------------------------------

/// One alert notification as the webhook received it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Received {
    /// Seconds from the start of the run to receipt.
    pub(crate) at_s: f64,
    pub(crate) rule: String,
    pub(crate) state: String,
    pub(crate) severity: String,
    pub(crate) daemon: Option<String>,
    pub(crate) value: f64,
    pub(crate) message: String,
}

pub(crate) type Inbox = Arc<Mutex<Vec<Received>>>;

/// Listens on 127.0.0.1 (port 0) and records every alert POSTed to it; answers 200.
pub(crate) fn start_receiver(t0: Instant) -> Result<(u16, Inbox), String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("webhook receiver: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("webhook receiver: {e}"))?
        .port();
    let inbox: Inbox = Arc::default();
    let shared = inbox.clone();
    std::thread::Builder::new()
        .name("webhook".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let inbox = shared.clone();
                // A thread per connection: the sink keeps connections alive between posts.
                let _ = std::thread::Builder::new()
                    .name("webhook-conn".into())
                    .spawn(move || serve_webhook(stream, t0, &inbox));
            }
        })
        .map_err(|e| format!("webhook receiver thread: {e}"))?;
    Ok((port, inbox))
}

/// Serves one keep-alive connection: `Content-Length` bodies, each a webhook document.
pub(crate) fn serve_webhook(stream: TcpStream, t0: Instant, inbox: &Inbox) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if let Some((k, v)) = trimmed.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length.min(16 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let at_s = t0.elapsed().as_secs_f64();
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body) else {
            eprintln!("  webhook: a body that is not JSON ({} bytes)", body.len());
            continue;
        };
        let alerts = doc["alerts"].as_array().cloned().unwrap_or_default();
        let mut inbox = inbox.lock().unwrap_or_else(|p| p.into_inner());
        for a in alerts {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            inbox.push(Received {
                at_s,
                rule: text("rule"),
                state: text("state"),
                severity: text("severity"),
                daemon: a["daemon"].as_str().map(str::to_string),
                value: a["value"].as_f64().unwrap_or(f64::NAN),
                message: text("message"),
            });
        }
    }
}
