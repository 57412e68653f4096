//! One perfvisor per database: a second engine or a second `perfvisor run` on a database in
//! use is refused before it writes anything, naming the first; the first is untouched.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perfvisor::{Error, Perfvisor};

use crate::support::{self, ChildGuard, RunGuard};

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
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let address = format!("127.0.0.1:{port}");
    let write_config = |name: &str, listen: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[supervisor]\ndatabase = \"{db}\"\nprobe_interval = \"200ms\"\nlisten = \"{listen}\"\n\
                 token = \"t0ken\"\n\n[api]\nanonymous_loopback_reads = true\n\n[[daemon]]\nname = \"worker\"\ncommand = [\"{lg}\", \"--cpu\", \"0\"]\n\
                 stop_timeout = \"2s\"\n",
                db = dir.path().join("pv.db").display(),
                lg = env!("CARGO_BIN_EXE_perfvisor-loadgen"),
            ),
        )
        .unwrap();
        path
    };
    let first_config = write_config("first.toml", &address);
    let child = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
        .args(["run", "--config"])
        .arg(&first_config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = RunGuard(ChildGuard(child));
    let managed_pid = || -> u32 {
        let out = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
            .args(["status", "--json", "--address", &address])
            .output()
            .unwrap();
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

    let other = format!("127.0.0.1:{}", support::free_port());
    let second_config = write_config("second.toml", &other);
    let out = Command::new(env!("CARGO_BIN_EXE_perfvisor"))
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
    // SAFETY: kill with a valid signal number; the pid is our child.
    unsafe { libc::kill(first.pid() as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    while first.0 .0.try_wait().unwrap().is_none() {
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "run ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
