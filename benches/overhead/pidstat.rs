//! pidstat as a monitor (`pidstat -d -r -u` on the targets' pids).

use super::*;

// --- pidstat ---------------------------------------------------------------------------

pub(crate) struct PidstatMon {
    pub(crate) bin: PathBuf,
    pub(crate) proc: Option<Proc>,
    pub(crate) out: PathBuf,
    /// Byte offsets of the output at the window's start and end.
    pub(crate) from: u64,
    pub(crate) to: u64,
}

impl Monitor for PidstatMon {
    /// `pidstat -h -d -r -u -p PIDS 1`: `-h` puts one line per pid per report (all three
    /// activity groups side by side), which only changes the layout. `LC_ALL=C` keeps the
    /// time a single token and the decimal point a point.
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let pids = ctx.pid_list();
        let out = File::create(&self.out).map_err(|e| e.to_string())?;
        let err = File::create(self.log()).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-h", "-d", "-r", "-u", "-p", &pids, "1"])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let proc = self.proc.insert(Proc::spawn(&mut cmd, "pidstat")?);
        let path = self.out.clone();
        let cpu = ctx.cpu_pid.to_string();
        wait_until(
            Duration::from_secs(15),
            Duration::from_millis(200),
            "pidstat's first report",
            || {
                if !proc.running() {
                    return Err("pidstat exited".into());
                }
                let text = fs::read_to_string(&path).unwrap_or_default();
                Ok(text
                    .lines()
                    .any(|l| l.split_whitespace().nth(2) == Some(cpu.as_str())))
            },
        )
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    fn window_start(&mut self, _ctx: &Ctx) {
        self.from = fs::metadata(&self.out).map_or(0, |m| m.len());
    }

    fn window_end(&mut self, _ctx: &Ctx) {
        self.to = fs::metadata(&self.out).map_or(0, |m| m.len());
    }

    /// pidstat flushes once per report, so the rows written between the window's two
    /// offsets are the window's reports (give or take a report split at an edge). The
    /// means of `%CPU` and `RSS` over those rows are its readings.
    fn report(&mut self, ctx: &Ctx, _w: &Window) -> Result<Reading, String> {
        let bytes = fs::read(&self.out).map_err(|e| e.to_string())?;
        let to = (self.to as usize).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes);
        let header = text
            .lines()
            .find(|l| l.starts_with('#'))
            .ok_or("no header in pidstat's output")?;
        let cols: Vec<&str> = header.trim_start_matches('#').split_whitespace().collect();
        let col = |name: &str| cols.iter().position(|c| *c == name);
        let (pid_c, cpu_c, rss_c) = (
            col("PID").ok_or("no PID column")?,
            col("%CPU").ok_or("no %CPU column")?,
            col("RSS").ok_or("no RSS column")?,
        );
        let mut from = (self.from as usize).min(to);
        // A line cut at the window's first edge is left out.
        if from > 0 && bytes[from - 1] != b'\n' {
            from += bytes[from..to]
                .iter()
                .position(|c| *c == b'\n')
                .map_or(to - from, |i| i + 1);
        }
        let window = String::from_utf8_lossy(&bytes[from..to]);
        let (mut cpu, mut rss) = (Vec::new(), Vec::new());
        for l in window.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != cols.len() {
                continue;
            }
            let pid = f[pid_c].parse::<u32>().ok();
            if pid == Some(ctx.cpu_pid) {
                cpu.extend(f[cpu_c].parse::<f64>().ok());
            }
            if pid == Some(ctx.mem_pid) {
                rss.extend(f[rss_c].parse::<f64>().ok().map(|kb| kb / 1024.0));
            }
        }
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        Ok(Reading {
            cpu_pct: mean(&cpu),
            rss_mib: mean(&rss),
        })
    }

    fn log(&self) -> PathBuf {
        self.out.with_file_name("pidstat.err")
    }

    fn notes(&self) -> Vec<String> {
        vec![
            "pidstat: `pidstat -h -d -r -u -p PIDS 1` (sysstat), output to a file; readings \
              are the means of its per-second %CPU and RSS rows inside the window."
                .into(),
        ]
    }
}
