//! Actor chaos: the standalone binary in chaos mode (panics injected into random actors at
//! 120 a minute) for a minute under load keeps serving, shows the restarts in its status,
//! and stores every pushed sample that it did not count as dropped.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{self, ChildGuard};

const TOKEN: &str = "chaos-token";
/// How long the chaos lasts.
const CHAOS: Duration = Duration::from_secs(60);

fn status(port: u16) -> Option<serde_json::Value> {
    match support::http_get(port, "/api/v1/status") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes.
fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

#[test]
fn chaos_mode_keeps_serving_and_accounts_for_every_sample() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _heavy = rt.block_on(support::cpu_heavy());
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let targets: Vec<ChildGuard> = (0..10).map(|_| support::loadgen(&["--cpu", "0"])).collect();
    let db = dir.path().join("pv.db");
    let mut config = format!(
        "[supervisor]\ndatabase = \"{}\"\nprobe_interval = \"200ms\"\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n\n[api]\nanonymous_loopback_reads = true\n",
        db.display()
    );
    for (i, t) in targets.iter().enumerate() {
        config.push_str(&format!(
            "\n[[attach]]\nname = \"t{i}\"\npid = {}\n",
            t.pid()
        ));
    }
    let file = dir.path().join("perfvisor.toml");
    std::fs::write(&file, config).unwrap();
    let log = std::fs::File::create(dir.path().join("perfvisor.log")).unwrap();
    let mut pv = ChildGuard(
        std::process::Command::new(env!("CARGO_BIN_EXE_perfvisor"))
            .args(["run", "--chaos-panics-per-minute", "120", "--config"])
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    assert!(
        poll(Duration::from_secs(60), || status(port).is_some()),
        "perfvisor does not serve"
    );

    // Load: 20 series pushed every 20 ms, counted as the API acknowledges them.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let pusher = {
        let (stop, accepted, refused) = (stop.clone(), accepted.clone(), refused.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body: Vec<String> = (0..20)
                    .map(|i| format!(r#"{{"metric":"chaos.load.s{i}","value":{seq}}}"#))
                    .collect();
                let body = format!("[{}]", body.join(","));
                match support::http_post(port, "/api/v1/metrics", TOKEN, &body) {
                    Ok((202, answer)) => {
                        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
                        accepted.fetch_add(v["accepted"].as_u64().unwrap(), Ordering::Relaxed);
                    }
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seq += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // Meanwhile the status must keep answering.
    let started = Instant::now();
    let (mut asked, mut answered) = (0u32, 0u32);
    while started.elapsed() < CHAOS {
        asked += 1;
        answered += u32::from(status(port).is_some());
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    pusher.join().unwrap();
    let last = status(port).expect("status after the chaos");
    let restarts: u64 = last["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["restarts"].as_u64().unwrap_or(0))
        .sum();
    let dropped = last["storage"]["dropped_samples"].as_u64().unwrap()
        + last["recorder"]["dropped"].as_u64().unwrap();
    let (accepted, refused) = (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    println!(
        "chaos: {restarts} restarts, status answered {answered}/{asked}, pushes refused {refused}, \
         samples accepted {accepted}, counted dropped {dropped}"
    );
    // 120 a minute for a minute (an injection into an actor still in its restart backoff
    // waits in its mailbox, so fewer restarts than injections are seen).
    assert!(restarts >= 30, "status shows {restarts} restarts");
    assert!(
        answered * 10 >= asked * 9,
        "status answered {answered} of {asked}"
    );
    assert_eq!(refused, 0, "pushes refused during the chaos");

    // A clean stop flushes everything; then every accepted sample is stored or counted.
    // SAFETY: plain kill(2) on our child's pid.
    unsafe { libc::kill(pv.pid() as i32, libc::SIGTERM) };
    let exited = poll(Duration::from_secs(60), || {
        matches!(pv.0.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "perfvisor did not stop");
    let stored: u64 = (0..20)
        .map(|i| support::stored_count(&db, &format!("chaos.load.s{i}")))
        .sum();
    assert!(accepted > 10_000, "only {accepted} samples accepted");
    // Drops are counted over all series, so every accepted sample is stored or among them.
    assert!(stored <= accepted, "stored {stored} > accepted {accepted}");
    assert!(
        stored + dropped >= accepted,
        "stored {stored} + counted drops {dropped} < accepted {accepted}"
    );
    let report = perfvisor_actors::storage::integrity_check(&db).unwrap();
    assert!(report.is_ok(), "{report:?}");
}
