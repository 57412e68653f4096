//! `check-config` through the real binary on configs that cannot work: metric names and
//! thresholds in the wrong unit (issue 14).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support;

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
