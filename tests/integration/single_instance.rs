//! One perfvisor per database: a second engine or a second `perfvisor run` on a database in
//! use is refused before it writes anything, naming the first; the first is untouched.

use std::process::Stdio;
use std::time::{Duration, Instant};

use perfvisor::{Error, Perfvisor};

use crate::support::{self, bin, Instance};

/// An embedding host that starts a second engine on a database in use gets
/// `Error::DatabaseInUse` naming the holder; after the first shuts down, the database is
/// free again.
#[tokio::test]
async fn second_engine_on_a_database_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pv.db");
    let first = Perfvisor::builder().database(&db).start().unwrap();
    let second = Perfvisor::builder().database(&db).start();
    match second {
        Err(Error::DatabaseInUse { database, holder }) => {
            assert_eq!(database, db);
            assert_eq!(holder, format!("pid {}", std::process::id()));
        }
        Err(other) => panic!("expected DatabaseInUse, got {other}"),
        Ok(_) => panic!("a second engine started on a database in use"),
    }
    first
        .status()
        .await
        .expect("the first engine still answers");
    first.shutdown().await.unwrap();
    let again = Perfvisor::builder().database(&db).start().unwrap();
    again.shutdown().await.unwrap();
}

/// A second `perfvisor run` on the database of a running one (another port) exits 2 at
/// once, naming the first one's pid and address; the first keeps serving with the same
/// daemon pid (the lock is taken before the second creates its daemon manager).
#[test]
fn second_run_on_the_same_database_is_refused() {
    let mut first = Instance::new();
    first.write_config(
        "probe_interval = \"200ms\"",
        &format!(
            "[api]\nanonymous_loopback_reads = true\n\n[[daemon]]\nname = \"worker\"\n\
             command = [\"{lg}\", \"--cpu\", \"0\"]\nstop_timeout = \"2s\"\n",
            lg = env!("CARGO_BIN_EXE_perfvisor-loadgen"),
        ),
    );
    first.start();
    let address = first.address.clone();
    let managed_pid = || -> u32 {
        let out = first.cli(&["status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["managed"][0]["pid"].as_u64())
            .unwrap_or(0) as u32
    };
    let started = Instant::now();
    let pid = loop {
        let pid = managed_pid();
        if pid != 0 {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "first never ran its daemon"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // The same config on another port.
    let other = format!("127.0.0.1:{}", support::free_port());
    let second_config = first.dir.path().join("second.toml");
    let text = std::fs::read_to_string(&first.config).unwrap();
    std::fs::write(&second_config, text.replace(&address, &other)).unwrap();
    let out = bin()
        .args(["run", "--config"])
        .arg(&second_config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("in use by another perfvisor"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.pid())) && stderr.contains(&address),
        "{stderr}"
    );
    assert_eq!(
        managed_pid(),
        pid,
        "the first instance's daemon is untouched"
    );
    first.terminate();
}
