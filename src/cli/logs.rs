//! `perfvisor logs DAEMON [-n N] [-f] [--stderr]`: a managed daemon's output, read from the
//! rotating log files the manager writes (`<name>.out.log`, `<name>.err.log` and their `.1`,
//! `.2`, … predecessors). The files are found from the config (a daemon's `logs.dir`, else
//! `logs/` next to the database), so the command works on the same host without the API.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use perfvisor::config::Config;
use perfvisor::manager::{log_path, rotated_path};

use super::CliError;

/// How often `-f` looks for new output and for a rotation.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The last `n` lines of `current` (the content of the log at `path`), reaching into its
/// rotated files (`.1`, `.2`, …, up to `keep`) when the current one holds fewer.
fn last_lines_of(current: &[u8], path: &Path, keep: u32, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for generation in 0..=keep {
        if lines.len() >= n {
            break;
        }
        let older;
        let bytes = if generation == 0 {
            current
        } else {
            match std::fs::read(rotated_path(path, generation)) {
                Ok(b) => {
                    older = b;
                    &older[..]
                }
                Err(_) => break,
            }
        };
        let text = String::from_utf8_lossy(bytes);
        let found: Vec<&str> = text.lines().collect();
        let from = found.len().saturating_sub(n - lines.len());
        let mut merged: Vec<String> = found[from..].iter().map(|l| (*l).to_string()).collect();
        merged.append(&mut lines);
        lines = merged;
    }
    lines
}

/// Runs `logs` for the daemon `name` of `config` (read from `config_path`).
pub(super) fn run(
    config_path: &Path,
    config: &Config,
    name: &str,
    lines: usize,
    follow: bool,
    stderr: bool,
) -> Result<(), CliError> {
    let Some(daemon) = config.daemons.iter().find(|d| d.name() == name) else {
        let names: Vec<&str> = config.daemons.iter().map(|d| d.name()).collect();
        return Err(CliError::usage(format!(
            "{} manages no daemon {name:?}; its managed daemons: {} (attached daemons have \
             their own logs)",
            config_path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let stream = if stderr { "err" } else { "out" };
    let path = log_path(&daemon.managed.logs.dir, name, stream);
    // The file is read through the handle `-f` goes on reading: nothing written between the
    // last lines and the follow is lost or printed twice.
    let opened = match File::open(&path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound && follow => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CliError::failed(format!(
                "no log file at {}: {name} has written nothing to {} yet, or perfvisor has not \
                 started it (is `perfvisor run --config {}` running? `logs.dir` in the config \
                 moves the files)",
                path.display(),
                if stderr { "stderr" } else { "stdout" },
                config_path.display()
            )))
        }
        Err(e) => {
            return Err(CliError::failed(format!(
                "cannot read {}: {e} (the files are private to the user perfvisor runs as)",
                path.display()
            )))
        }
    };
    let read_failed =
        |e: io::Error| CliError::failed(format!("reading {} failed: {e}", path.display()));
    let mut current = Vec::new();
    let handle = match opened {
        Some(mut file) => {
            file.read_to_end(&mut current).map_err(read_failed)?;
            let ino = file.metadata().map_err(read_failed)?.ino();
            Some((file, ino))
        }
        None => None,
    };
    let mut out = io::stdout().lock();
    for line in last_lines_of(&current, &path, daemon.managed.logs.keep, lines) {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    drop(out);
    if follow {
        follow_file(&path, handle)
            .map_err(|e| CliError::failed(format!("following {} failed: {e}", path.display())))?;
    }
    Ok(())
}

/// Prints what is appended to the log at `path` after `handle`'s position (the file and its
/// inode, when it existed), forever; when the file is rotated (a new file at the path) the
/// rest of the old one is printed, then the new one from its start.
fn follow_file(path: &Path, handle: Option<(File, u64)>) -> io::Result<()> {
    let mut current = handle;
    let mut stdout = io::stdout();
    loop {
        if current.is_none() {
            if let Ok(file) = File::open(path) {
                let ino = file.metadata()?.ino();
                current = Some((file, ino));
            }
        }
        if let Some((file, ino)) = current.as_mut() {
            let mut chunk = Vec::new();
            file.read_to_end(&mut chunk)?;
            stdout.write_all(&chunk)?;
            stdout.flush()?;
            let rotated = match std::fs::metadata(path) {
                Ok(m) => m.ino() != *ino,
                Err(_) => true,
            };
            if rotated {
                // Drain what was written to the old file before the rename, then switch.
                let mut rest = Vec::new();
                file.read_to_end(&mut rest)?;
                stdout.write_all(&rest)?;
                stdout.flush()?;
                current = None;
                continue;
            }
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last lines come from the current file first, then from `.1`, `.2` in order.
    #[test]
    fn last_lines_reach_into_rotated_files() {
        let last_lines =
            |path: &Path, keep, n| last_lines_of(&std::fs::read(path).unwrap(), path, keep, n);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.out.log");
        std::fs::write(rotated_path(&path, 2), "a1\na2\n").unwrap();
        std::fs::write(rotated_path(&path, 1), "b1\nb2\n").unwrap();
        std::fs::write(&path, "c1\n").unwrap();
        assert_eq!(last_lines(&path, 3, 1), ["c1"]);
        assert_eq!(last_lines(&path, 3, 4), ["a2", "b1", "b2", "c1"]);
        assert_eq!(last_lines(&path, 3, 10), ["a1", "a2", "b1", "b2", "c1"]);
        assert_eq!(last_lines(&path, 1, 10), ["b1", "b2", "c1"]);
    }
}
