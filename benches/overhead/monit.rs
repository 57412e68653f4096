//! monit as a monitor, asked with `monit status` after the window.

use super::*;

// --- monit -----------------------------------------------------------------------------

pub(crate) struct MonitMon {
    pub(crate) bin: PathBuf,
    pub(crate) proc: Option<Proc>,
    pub(crate) rc: PathBuf,
    pub(crate) log: PathBuf,
}

impl MonitMon {
    pub(crate) fn cli(&self, args: &[&str], dir: &Path) -> Result<String, String> {
        run_capture(
            Command::new(&self.bin).arg("-c").arg(&self.rc).args(args),
            &dir.join("monit-cli.out"),
            Duration::from_secs(20),
        )
    }

    /// The value of one `  key   value` line of `monit status NAME`.
    pub(crate) fn status_line(text: &str, key: &str) -> Option<String> {
        text.lines().find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix(key)?;
            rest.starts_with("  ").then(|| rest.trim().to_string())
        })
    }
}

/// Monit's size strings ("130.2 MB"): powers of 1024 whatever the unit's spelling.
pub(crate) fn monit_mib(text: &str) -> Option<f64> {
    let inner = text.split_once('[')?.1.split_once(']')?.0;
    let (num, unit) = inner.trim().split_once(' ')?;
    let num: f64 = num.parse().ok()?;
    let scale = match unit {
        "B" => 1.0 / MIB,
        "kB" | "KB" => 1.0 / 1024.0,
        "MB" => 1.0,
        "GB" => 1024.0,
        _ => return None,
    };
    Some(num * scale)
}

impl Monitor for MonitMon {
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let d = ctx.dir.display();
        let mut rc = format!(
            "set daemon 1\n\
             set logfile {d}/monit.log\n\
             set pidfile {d}/monit.pid\n\
             set idfile {d}/monit.id\n\
             set statefile {d}/monit.state\n\
             set httpd unixsocket {d}/monit.sock\n    allow localhost\n"
        );
        for (i, pid) in ctx.pids.iter().enumerate() {
            let pidfile = ctx.dir.join(format!("t{i}.pid"));
            fs::write(&pidfile, format!("{pid}\n")).map_err(|e| e.to_string())?;
            rc.push_str(&format!(
                "check process t{i} with pidfile {}\n    if cpu > 95% then alert\n    \
                 if totalmem > 1 GB then alert\n",
                pidfile.display()
            ));
        }
        fs::write(&self.rc, rc).map_err(|e| e.to_string())?;
        // monit refuses a control file readable by others.
        fs::set_permissions(&self.rc, fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        let log = File::create(&self.log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-I")
            .arg("-c")
            .arg(&self.rc)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        self.proc = Some(Proc::spawn(&mut cmd, "monit")?);
        // Ready when `monit summary` shows every target as an OK process, and a CPU
        // figure (which needs two cycles) is in for the burning one.
        let n = ctx.n;
        let cpu_name = format!("t{CPU_TARGET}");
        wait_until(
            Duration::from_secs(30) + Duration::from_millis(20) * n as u32,
            Duration::from_millis(500),
            "monit to check every target",
            || {
                if !self.proc().running() {
                    return Err("monit exited".into());
                }
                let Ok(summary) = self.cli(&["-B", "summary"], &ctx.dir) else {
                    return Ok(false);
                };
                let ok = summary
                    .lines()
                    .filter(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.len() == 3 && f[1] == "OK" && f[2] == "Process"
                    })
                    .count();
                if ok < n {
                    return Ok(false);
                }
                let status = self
                    .cli(&["status", &cpu_name], &ctx.dir)
                    .unwrap_or_default();
                Ok(Self::status_line(&status, "cpu").is_some_and(|c| {
                    c.trim_end_matches('%')
                        .parse::<f64>()
                        .is_ok_and(|v| v > 0.0)
                }))
            },
        )
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    /// `monit status tI` right after the window: its last cycle's figures (monit keeps no
    /// history). Its `cpu` line is the process's own CPU over the last cycle in % of one
    /// core (checked against the truth: 30 % reads ≈ 30 on a 2-core host); `memory` is its
    /// RSS in powers of 1024.
    fn report(&mut self, ctx: &Ctx, _w: &Window) -> Result<Reading, String> {
        let cpu = self.cli(&["status", &format!("t{CPU_TARGET}")], &ctx.dir)?;
        let mem = self.cli(&["status", &format!("t{MEM_TARGET}")], &ctx.dir)?;
        Ok(Reading {
            cpu_pct: Self::status_line(&cpu, "cpu")
                .and_then(|c| c.trim_end_matches('%').parse::<f64>().ok()),
            rss_mib: Self::status_line(&mem, "memory").and_then(|m| monit_mib(&m)),
        })
    }

    fn log(&self) -> PathBuf {
        self.log.clone()
    }

    fn notes(&self) -> Vec<String> {
        vec![
            "monit: `monit -I` with `set daemon 1` (a 1 s cycle is the shortest it has: \
              the interval is whole seconds), one `check process` by pidfile per target with \
              a cpu and a totalmem test; each cycle it also reads the whole process table (to \
              build the tree behind `totalmem`/`children`) and checks the host itself. \
              Its CPU figure needs two cycles. Readings are `monit status` after the window: \
              the last cycle's values (monit keeps no history)."
                .into(),
        ]
    }
}
