//! A `perfvisor run` of the built binary for tests: its own temporary directory, database,
//! port and token, the `[supervisor]` table every such test needs, the client commands
//! pointed at it, and a stop (SIGTERM, then SIGKILL) when dropped.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, ChildGuard, RunGuard};

/// The token of an [`Instance`] unless [`Instance::with_token`] gives another.
pub const TOKEN: &str = "t0ken";

/// The built `perfvisor` binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_perfvisor"))
}

/// A `perfvisor run` on 127.0.0.1 (not started until [`Instance::start`]).
pub struct Instance {
    /// Holds the config, the database (`pv.db`), the log (`perfvisor.log`) and daemon logs.
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `127.0.0.1:{port}`.
    pub address: String,
    pub config: PathBuf,
    pub db: PathBuf,
    /// Where the run's standard error goes.
    pub log: PathBuf,
    pub token: String,
    /// Client commands find the instance through `--config` alone (see
    /// [`Instance::found_by_config`]).
    by_config: bool,
    run: Option<RunGuard>,
}

impl Instance {
    /// A fresh directory and port, token [`TOKEN`]; nothing written or started.
    pub fn new() -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        Instance {
            port,
            address: format!("127.0.0.1:{port}"),
            config: dir.path().join("perfvisor.toml"),
            db: dir.path().join("pv.db"),
            log: dir.path().join("perfvisor.log"),
            token: TOKEN.to_owned(),
            by_config: false,
            run: None,
            dir,
        }
    }

    /// The same with another token.
    pub fn with_token(mut self, token: &str) -> Instance {
        self.token = token.to_owned();
        self
    }

    /// The same, with client commands given `--config` and nothing else pointing at the
    /// instance (no address, no token, no `PERFVISOR_*` variables).
    pub fn found_by_config(mut self) -> Instance {
        self.by_config = true;
        self
    }

    /// The `[supervisor]` table: this instance's database, address and token, then `extra`
    /// (lines such as `probe_interval = "200ms"`), ending with a blank line.
    pub fn supervisor(&self, extra: &str) -> String {
        format!(
            "[supervisor]\ndatabase = \"{}\"\nlisten = \"{}\"\ntoken = \"{}\"\n{extra}\n\n",
            self.db.display(),
            self.address,
            self.token
        )
    }

    /// Writes the config: the `[supervisor]` table with `supervisor_extra`, then `rest`.
    pub fn write_config(&self, supervisor_extra: &str, rest: &str) {
        let text = format!("{}{rest}", self.supervisor(supervisor_extra));
        std::fs::write(&self.config, text).expect("config written");
    }

    /// Starts `perfvisor run --config` at log level `RUST_LOG=level`, its standard error
    /// appended to [`Instance::log`].
    pub fn start_logged(&mut self, level: &str) -> &mut Instance {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = bin()
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("perfvisor run starts");
        self.run = Some(RunGuard(ChildGuard(child)));
        self
    }

    /// [`Instance::start_logged`] at `warn`.
    pub fn start(&mut self) -> &mut Instance {
        self.start_logged("warn")
    }

    /// Writes the config and starts: the usual first two steps.
    pub fn run(supervisor_extra: &str, rest: &str) -> Instance {
        let mut instance = Instance::new();
        instance.write_config(supervisor_extra, rest);
        instance.start();
        instance
    }

    /// The run's pid (0 when not started).
    pub fn pid(&self) -> u32 {
        self.run.as_ref().map_or(0, RunGuard::pid)
    }

    /// A client command with `--address` and `--token` of this instance (or `--config`
    /// alone, see [`Instance::found_by_config`]).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = bin();
        command.args(args);
        if self.by_config {
            command
                .arg("--config")
                .arg(&self.config)
                .env_remove("PERFVISOR_ADDRESS")
                .env_remove("PERFVISOR_TOKEN")
                .env_remove("PERFVISOR_CONFIG");
        } else {
            command.args(["--address", &self.address, "--token", &self.token]);
        }
        command.output().expect("the client runs")
    }

    /// Polls `args` until it succeeds and `ok` holds for its stdout (30 s at most); returns
    /// that stdout.
    pub fn wait_for(&self, args: &[&str], what: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let out = self.cli(args);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && ok(&stdout) {
                return stdout;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: {args:?} said\n{stdout}\n{}\nlog:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the run wrote to its standard error so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (30 s at most) for the run to exit; its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut run = self.run.take().expect("a started instance");
        // SAFETY: kill with a valid signal number on our own child's pid.
        unsafe { libc::kill(run.pid() as i32, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = run.0 .0.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "run did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
