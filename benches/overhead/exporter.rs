//! prometheus-process-exporter as a monitor, scraped every second as Prometheus would.

use super::*;

// --- process-exporter ------------------------------------------------------------------

/// One scrape's figures for the two special targets.
pub(crate) struct Scrape {
    pub(crate) at: Instant,
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident: Option<f64>,
}

pub(crate) struct ExporterMon {
    pub(crate) bin: PathBuf,
    pub(crate) proc: Option<Proc>,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
    pub(crate) scrapes: Vec<Scrape>,
    pub(crate) failures: usize,
}

/// The exporter's binary, from the Debian package's file list, else from PATH.
pub(crate) fn find_exporter() -> Option<PathBuf> {
    let listed = Command::new("dpkg")
        .args(["-L", "prometheus-process-exporter"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed
        .lines()
        .map(PathBuf::from)
        .find(|p| {
            p.parent().is_some_and(|d| d.ends_with("bin"))
                && fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .or_else(|| which("prometheus-process-exporter"))
        .or_else(|| which("process-exporter"))
}

impl ExporterMon {
    pub(crate) fn scrape(&mut self, ctx: &Ctx) -> Result<(Scrape, usize), String> {
        let (code, body) = http_get(self.port, "/metrics", Duration::from_secs(10))?;
        if code != 200 {
            return Err(format!("GET /metrics: {code}"));
        }
        let at = Instant::now();
        let cpu_group = format!("groupname=\"{}\"", ctx.cpu_pid);
        let mem_group = format!("groupname=\"{}\"", ctx.mem_pid);
        let mut s = Scrape {
            at,
            cpu_seconds: None,
            resident: None,
        };
        let mut groups = 0;
        for line in body.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value = value.parse::<f64>().ok();
            if series.starts_with("namedprocess_namegroup_num_procs{") {
                groups += 1;
            } else if series.starts_with("namedprocess_namegroup_cpu_seconds_total{")
                && series.contains(&cpu_group)
            {
                // One line per mode (user, system).
                s.cpu_seconds = Some(s.cpu_seconds.unwrap_or(0.0) + value.unwrap_or(0.0));
            } else if series.starts_with("namedprocess_namegroup_memory_bytes{")
                && series.contains(&mem_group)
                && series.contains("memtype=\"resident\"")
            {
                s.resident = value;
            }
        }
        Ok((s, groups))
    }
}

impl Monitor for ExporterMon {
    /// Config: one group per pid (`name: "{{.PID}}"`), selecting this run's targets by
    /// executable and by the `--as TAG-tI` argument. Everything else is the exporter's
    /// defaults (smaps gathered, per-thread metrics on, children tracked).
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let config = ctx.dir.join("process-exporter.yaml");
        fs::write(
            &config,
            format!(
                "process_names:\n  - name: \"{{{{.PID}}}}\"\n    exe:\n    - {LOADGEN}\n    \
                 cmdline:\n    - '--as {}-t[0-9]+$'\n",
                ctx.tag
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = File::create(&self.log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-config.path")
            .arg(&config)
            .arg("-web.listen-address")
            .arg(format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        self.proc = Some(Proc::spawn(&mut cmd, "process-exporter")?);
        let n = ctx.n;
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(250),
            "process-exporter to list one group per target",
            || {
                if !self.proc().running() {
                    return Err("process-exporter exited".into());
                }
                Ok(
                    matches!(self.scrape(ctx), Ok((s, groups)) if groups == n && s.cpu_seconds.is_some()),
                )
            },
        )
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    /// Scrapes every second, warm-up included, as a Prometheus server would; only the
    /// window's scrapes are kept.
    fn tick(&mut self, ctx: &Ctx, in_window: bool) {
        match self.scrape(ctx) {
            Ok((s, _)) if in_window => self.scrapes.push(s),
            Ok(_) => {}
            Err(e) => {
                self.failures += 1;
                eprintln!("  process-exporter scrape failed: {e}");
            }
        }
    }

    /// CPU: the rate of `namedprocess_namegroup_cpu_seconds_total` (user + system) from the
    /// window's first scrape to its last; RSS: the mean of `memory_bytes{resident}`.
    fn report(&mut self, _ctx: &Ctx, _w: &Window) -> Result<Reading, String> {
        let cpu: Vec<(Instant, f64)> = self
            .scrapes
            .iter()
            .filter_map(|s| Some((s.at, s.cpu_seconds?)))
            .collect();
        let cpu_pct = match (cpu.first(), cpu.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                Some((b.1 - a.1) / (b.0 - a.0).as_secs_f64() * 100.0)
            }
            _ => None,
        };
        let rss: Vec<f64> = self.scrapes.iter().filter_map(|s| s.resident).collect();
        let rss_mib = (!rss.is_empty()).then(|| rss.iter().sum::<f64>() / rss.len() as f64 / MIB);
        Ok(Reading { cpu_pct, rss_mib })
    }

    fn log(&self) -> PathBuf {
        self.log.clone()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![
            "process-exporter: Debian's prometheus-process-exporter, one group \
                              per target pid; its cost includes the harness's scrape of \
                              /metrics every second (it collects when scraped), and it walks \
                              all of /proc on each scrape whatever it is told to watch."
                .to_string(),
        ];
        if self.failures > 0 {
            notes.push(format!(
                "process-exporter: {} scrapes failed",
                self.failures
            ));
        }
        notes
    }
}
