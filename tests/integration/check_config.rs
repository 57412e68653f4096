//! `check-config` and `run` through the real binary on configs that cannot work: metric
//! names and thresholds in the wrong unit (issue 14), and what the machine lacks — program,
//! directory, user, port, database — each named with the file's line (issue 16); a `run`
//! that cannot start leaves nothing behind, and a second `run` on a database in use still
//! names the perfvisor that holds it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, ChildGuard, RunGuard};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_perfvisor"))
}

/// Writes `text` as `pv.toml` in `dir`.
fn write(dir: &Path, text: &str) -> PathBuf {
    let file = dir.join("pv.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn check(file: &Path) -> (Option<i32>, String, String) {
    let out: Output = bin().arg("check-config").arg(file).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config with a database in `dir`, the API on a free port, and one managed daemon
/// described by `daemon` (its keys from line 7 on).
fn config(dir: &Path, listen: &str, daemon: &str) -> String {
    format!(
        "[supervisor]\ndatabase = \"{}\"\nlisten = \"{listen}\"\n\n[[daemon]]\nname = \"api\"\n{daemon}\n",
        dir.join("pv.db").display()
    )
}

fn free_listen() -> String {
    format!("127.0.0.1:{}", support::free_port())
}

/// A misspelt metric is a warning with the closest real name, at its line, and exit 0; a
/// ratio threshold of 90 exits 2 with the likely meant 0.9; a size on a bytes metric passes.
#[test]
fn metric_names_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |metric: &str, threshold: &str| {
        format!(
            "{}\n[[rule]]\nname = \"r\"\nkind = \"threshold\"\nmetric = \"{metric}\"\n{threshold}\n",
            config(dir.path(), &free_listen(), "command = [\"/bin/sh\"]")
        )
    };
    let file = write(
        dir.path(),
        &rule("process.cpu.utilisation_ratio", "above = 0.9"),
    );
    let (code, stdout, stderr) = check(&file);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:12:10: rule[0].metric: warning: perfvisor produces no metric \"process.cpu.utilisation_ratio\"; did you mean \"process.cpu.utilization_ratio\"?",
            file.display()
        )),
        "{stderr}"
    );
    assert!(
        stdout.contains("ok (1 managed daemons") && stdout.contains("1 warning(s)"),
        "{stdout}"
    );

    let file = write(
        dir.path(),
        &rule("process.cpu.utilization_ratio", "above = 90"),
    );
    let (code, _, stderr) = check(&file);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:13:9: rule[0].above: above = 90",
            file.display()
        )) && stderr.contains("ratios are 0–1")
            && stderr.contains("did you mean 0.9?"),
        "{stderr}"
    );

    let file = write(
        dir.path(),
        &rule("process.memory.usage_bytes", "above = \"16MiB\""),
    );
    let (code, _, stderr) = check(&file);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// Every thing this machine lacks exits 2 naming FILE:LINE:COL and the key: a missing
/// program, cwd or user, a port in use, a database directory that does not exist, a
/// directory as database, a database that is not SQLite. `--skip-host-checks` checks the
/// text only.
#[test]
fn what_the_machine_lacks_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nowhere");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let not_sqlite = dir.path().join("notes.txt");
    std::fs::write(&not_sqlite, "these are notes, not a database").unwrap();
    let sh = "command = [\"/bin/sh\"]";
    let with_db = |db: &Path| {
        format!(
            "[supervisor]\ndatabase = \"{}\"\nlisten = \"{}\"\n\n[[daemon]]\nname = \"api\"\n{sh}\n",
            db.display(),
            free_listen()
        )
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            config(
                dir.path(),
                &free_listen(),
                &format!("command = [\"{}\"]", nowhere.display()),
            ),
            ":7:11: daemon[0].command:",
            "does not exist",
        ),
        (
            config(
                dir.path(),
                &free_listen(),
                &format!("{sh}\ncwd = \"{}\"", nowhere.display()),
            ),
            ":8:7: daemon[0].cwd:",
            "does not exist",
        ),
        (
            config(
                dir.path(),
                &free_listen(),
                &format!("{sh}\nuser = \"no-such-user-perfvisor\""),
            ),
            ":8:8: daemon[0].user:",
            "does not exist",
        ),
        (
            config(dir.path(), &taken_addr, sh),
            ":3:10: supervisor.listen:",
            "perhaps by a perfvisor already running",
        ),
        (
            with_db(&nowhere.join("pv.db")),
            ":2:12: supervisor.database:",
            "does not exist (perfvisor does not create it)",
        ),
        (
            with_db(dir.path()),
            ":2:12: supervisor.database:",
            "is a directory",
        ),
        (
            with_db(&not_sqlite),
            ":2:12: supervisor.database:",
            "is not a SQLite database",
        ),
    ];
    for (text, place, what) in cases {
        let file = write(dir.path(), &text);
        let (code, _, stderr) = check(&file);
        assert_eq!(code, Some(2), "{text}\n{stderr}");
        let at = format!("{}{place}", file.display());
        assert!(
            stderr.contains(&at) && stderr.contains(what),
            "{at} {what:?} not in\n{stderr}"
        );
        let out = bin()
            .args(["check-config", "--skip-host-checks"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!nowhere.exists(), "a check created {}", nowhere.display());
    drop(taken);
}

/// The files a perfvisor on `dir/pv.db` would leave.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pv.db"))
        .collect();
    names.sort();
    names
}

/// `run` with a missing program, or with its port taken by something else, exits 2 naming
/// the line, and leaves no database, WAL, lock file or `.managed` directory behind; with its
/// database in a missing directory it does not create the directory.
#[test]
fn run_that_cannot_start_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = |file: &Path| {
        let out = bin()
            .args(["run", "--config"])
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = write(
        dir.path(),
        &config(
            dir.path(),
            &free_listen(),
            "command = [\"/no/such/program\"]",
        ),
    );
    let (code, stderr) = run(&file);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:7:11: daemon[0].command: program /no/such/program does not exist",
            file.display()
        )),
        "{stderr}"
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file = write(
        dir.path(),
        &config(
            dir.path(),
            &taken.local_addr().unwrap().to_string(),
            "command = [\"/bin/sh\"]",
        ),
    );
    let (code, stderr) = run(&file);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:10: supervisor.listen:", file.display()))
            && stderr.contains("perhaps by a perfvisor already running"),
        "{stderr}"
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    drop(taken);

    let missing = dir.path().join("missing");
    let file = write(
        dir.path(),
        &format!(
            "[supervisor]\ndatabase = \"{}\"\nlisten = \"{}\"\n",
            missing.join("pv.db").display(),
            free_listen()
        ),
    );
    let (code, stderr) = run(&file);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(":2:12: supervisor.database:"), "{stderr}");
    assert!(!missing.exists());
}

/// A second `run` of the same config (same database, same port) is refused for the
/// database, naming the running perfvisor's pid, not for the port; `check-config` of that
/// config (before a reload) only warns that the address is the running perfvisor's.
#[test]
fn second_run_of_the_same_config_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let file = write(
        dir.path(),
        &config(
            dir.path(),
            &listen,
            "command = [\"/bin/sleep\", \"1000\"]\nstop_timeout = \"2s\"",
        ),
    );
    let child = bin()
        .args(["run", "--config"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = RunGuard(ChildGuard(child));
    let started = Instant::now();
    while bin()
        .args(["status", "--address", &listen])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first run never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = bin()
        .args(["run", "--config"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("in use by another perfvisor")
            && stderr.contains(&format!("pid {}", first.pid())),
        "{stderr}"
    );
    assert!(!stderr.contains("supervisor.listen"), "{stderr}");
    // Checking the config before a reload: the address is the running perfvisor's.
    let (code, _, stderr) = check(&file);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(":3:10: supervisor.listen: warning: ")
            && stderr.contains("fine for `perfvisor reload`"),
        "{stderr}"
    );
}
