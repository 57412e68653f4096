//! Size-rotated log files for a daemon's stdout and stderr. One `RotatingLog` per stream
//! lives as long as the daemon is managed and is shared by every process generation, so a
//! restart appends to the same file and two generations never rotate it concurrently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use tracing::warn;

/// The log file of `daemon`'s `stream` (`out` for stdout, `err` for stderr) in `dir`:
/// `<dir>/<daemon>.<stream>.log`.
pub fn log_path(dir: &Path, daemon: &str, stream: &str) -> PathBuf {
    dir.join(format!("{daemon}.{stream}.log"))
}

/// The `n`th older file of a rotated log (`n` ≥ 1): `<path>.<n>`, `.1` the most recent.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// An append-only file rotated to `.1`, `.2`, … once it would pass `max_size`.
#[derive(Debug)]
pub(crate) struct RotatingLog {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

impl RotatingLog {
    /// A log at `path`; the file is opened (and its directory created) on first write.
    pub(crate) fn new(path: PathBuf, max_size: u64, keep: u32) -> Self {
        Self {
            path,
            max_size: max_size.max(1),
            keep,
            file: None,
            size: 0,
        }
    }

    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            // Daemon output may hold secrets: private directories and files.
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            if let Some(dir) = self.path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("log file not open"))
    }

    fn rotated(&self, n: u32) -> PathBuf {
        rotated_path(&self.path, n)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            fs::remove_file(self.rotated(self.keep)).or_else(ignore_missing)?;
            for n in (1..self.keep).rev() {
                fs::rename(self.rotated(n), self.rotated(n + 1)).or_else(ignore_missing)?;
            }
            fs::rename(&self.path, self.rotated(1)).or_else(ignore_missing)?;
        }
        self.size = 0;
        Ok(())
    }

    /// Append `data`, rotating first whenever the file would pass `max_size`; a cut is made
    /// after the last newline that fits, or mid-line when a line alone is too long.
    pub(crate) fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.open()?;
            let room = self.max_size.saturating_sub(self.size) as usize;
            if room == 0 {
                self.rotate()?;
                continue;
            }
            let take = if data.len() <= room {
                data.len()
            } else {
                match data[..room].iter().rposition(|b| *b == b'\n') {
                    Some(nl) => nl + 1,
                    None if self.size > 0 => {
                        self.rotate()?;
                        continue;
                    }
                    None => room,
                }
            };
            let file = self.open()?;
            file.write_all(&data[..take])?;
            self.size += take as u64;
            data = &data[take..];
        }
        Ok(())
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Copy `source` into `log` on a thread until end of file (every holder of the pipe closed).
pub(crate) fn pump(
    name: &str,
    stream: &'static str,
    mut source: impl Read + Send + 'static,
    log: Arc<Mutex<RotatingLog>>,
) {
    let thread_name = format!("log-{name}-{stream}");
    let daemon = name.to_string();
    let spawned = thread::Builder::new().name(thread_name).spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut failed = false;
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let result = match log.lock() {
                Ok(mut l) => l.write(&buf[..n]),
                Err(poisoned) => poisoned.into_inner().write(&buf[..n]),
            };
            // Keep draining the pipe on errors so the daemon never blocks on a full pipe.
            match result {
                Err(e) if !failed => {
                    failed = true;
                    warn!(daemon = %daemon, stream, error = %e, "Cannot write daemon log; dropping output.");
                }
                Ok(()) => failed = false,
                Err(_) => {}
            }
        }
    });
    if let Err(e) = spawned {
        warn!(daemon = %name, stream, error = %e, "Cannot start log thread; output is lost.");
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::TempDir;
    use super::*;

    /// Daemon output may hold secrets: log files are 0600, their directories 0700.
    #[test]
    fn log_files_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("private");
        let nested = dir.path().join("logs/deeper");
        let mut log = RotatingLog::new(nested.join("d.out.log"), 1024, 2);
        log.write(b"secret output\n").unwrap();
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&nested.join("d.out.log")), 0o600);
        assert_eq!(mode(&nested), 0o700);
    }

    /// Files are cut at line boundaries, never pass max_size, and only `keep` old files stay.
    #[test]
    fn rotates_at_max_size_keeping_files() {
        let dir = TempDir::new("rotate");
        let path = dir.path().join("d.out.log");
        let mut log = RotatingLog::new(path.clone(), 100, 2);
        for i in 0..40 {
            log.write(format!("line {i:04} ................\n").as_bytes())
                .unwrap();
        }
        let names = dir.names();
        assert_eq!(names, vec!["d.out.log", "d.out.log.1", "d.out.log.2"]);
        for n in &names {
            let text = fs::read_to_string(dir.path().join(n)).unwrap();
            assert!(
                text.len() <= 100 && text.ends_with('\n'),
                "{n}: {}",
                text.len()
            );
        }
        assert!(fs::read_to_string(&path).unwrap().contains("line 0039"));
        // A line longer than the limit is split rather than lost.
        log.write(&[b'x'; 250]).unwrap();
        assert!(fs::metadata(&path).unwrap().len() <= 100);
    }
}
