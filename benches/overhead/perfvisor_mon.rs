//! perfvisor as a monitor: the binary on the targets, read back through its API.

use super::*;

// --- perfvisor -------------------------------------------------------------------------

pub(crate) struct PerfvisorMon {
    /// The binary to run.
    pub(crate) bin: String,
    /// Names its database and config in the shared directory.
    pub(crate) tag: &'static str,
    pub(crate) proc: Option<Proc>,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
    /// API token (the soak pushes samples, which needs one).
    pub(crate) token: Option<String>,
}

impl PerfvisorMon {
    /// Raw samples of one daemon's metric in `[from, to)`: `(unix ms, value)`.
    pub(crate) fn samples(
        &self,
        daemon: &str,
        metric: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, f64)>, String> {
        let path = format!("/api/v1/query?metric={metric}&daemon={daemon}&from={from}&to={to}");
        let (code, body) = http_get(self.port, &path, Duration::from_secs(10))?;
        if code != 200 {
            return Err(format!("GET {path}: {code} {body}"));
        }
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let samples = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|s| s["samples"].as_array())
            .ok_or_else(|| format!("GET {path}: no series in {body}"))?;
        Ok(samples
            .iter()
            .filter_map(|s| Some((s[0].as_i64()?, s[1].as_f64()?)))
            .collect())
    }
}

impl Monitor for PerfvisorMon {
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let addr = format!("127.0.0.1:{}", self.port);
        let mut config = format!(
            "[supervisor]\ndatabase = \"{}\"\nprobe_interval = \"1s\"\nlisten = \"{addr}\"\n",
            ctx.dir.join(format!("{}.db", self.tag)).display()
        );
        if let Some(token) = &self.token {
            // The harness reads status and history without it (the token is for pushing).
            config.push_str(&format!(
                "token = \"{token}\"\n\n[api]\nanonymous_loopback_reads = true\n"
            ));
        }
        for (i, pid) in ctx.pids.iter().enumerate() {
            config.push_str(&format!("\n[[attach]]\nname = \"d{i}\"\npid = {pid}\n"));
        }
        let file = ctx.dir.join(format!("{}.toml", self.tag));
        fs::write(&file, config).map_err(|e| e.to_string())?;
        let log = File::create(&self.log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["run", "--config"])
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let proc = self.proc.insert(Proc::spawn(&mut cmd, "perfvisor")?);
        // Ready when /api/v1/status lists one watcher per target pid, each having probed.
        let want: HashSet<u32> = ctx.pids.iter().copied().collect();
        let port = self.port;
        wait_until(
            Duration::from_secs(30) + Duration::from_millis(50) * ctx.n as u32,
            Duration::from_millis(250),
            "perfvisor to list every target in /api/v1/status",
            || {
                if !proc.running() {
                    return Err("perfvisor exited".into());
                }
                let Ok((200, body)) = http_get(port, "/api/v1/status", Duration::from_secs(5))
                else {
                    return Ok(false);
                };
                let v: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| e.to_string())?;
                let ready = v["watchers"].as_array().map_or(0, |ws| {
                    ws.iter()
                        .filter(|w| {
                            w["probes"].as_u64().unwrap_or(0) >= 1
                                && w["pid"]
                                    .as_u64()
                                    .is_some_and(|p| want.contains(&(p as u32)))
                        })
                        .count()
                });
                Ok(ready == ctx.n)
            },
        )
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    /// From the stored history (`/api/v1/query`, raw samples over the window): the CPU
    /// counter's increase over its time span, and the mean of the RSS samples.
    fn report(&mut self, _ctx: &Ctx, w: &Window) -> Result<Reading, String> {
        let cpu_daemon = format!("d{CPU_TARGET}");
        let mem_daemon = format!("d{MEM_TARGET}");
        // Samples reach the database at the next flush (1 s by default): wait for the
        // window's last ones.
        let mut cpu = Vec::new();
        wait_until(
            Duration::from_secs(15),
            Duration::from_millis(250),
            "perfvisor to commit the window's samples",
            || {
                cpu = self.samples(
                    &cpu_daemon,
                    "process.cpu.time_seconds",
                    w.wall0_ms,
                    w.wall1_ms,
                )?;
                Ok(cpu.last().is_some_and(|(t, _)| *t >= w.wall1_ms - 2_000))
            },
        )?;
        let mem = self.samples(
            &mem_daemon,
            "process.memory.usage_bytes",
            w.wall0_ms,
            w.wall1_ms,
        )?;
        let cpu_pct = match (cpu.first(), cpu.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                Some((b.1 - a.1) / ((b.0 - a.0) as f64 / 1e3) * 100.0)
            }
            _ => None,
        };
        let rss_mib = (!mem.is_empty())
            .then(|| mem.iter().map(|s| s.1).sum::<f64>() / mem.len() as f64 / MIB);
        Ok(Reading { cpu_pct, rss_mib })
    }

    fn log(&self) -> PathBuf {
        self.log.clone()
    }

    fn notes(&self) -> Vec<String> {
        let which = if self.tag == "perfvisor" {
            String::new()
        } else {
            " of PERFVISOR_BASELINE_BIN".to_string()
        };
        vec![format!(
            "{}: `perfvisor run`{which} with defaults (storage, analysis, alerting on), one \
             `[[attach]]` per target; readings are its stored history over the window \
             (/api/v1/query, raw samples: CPU counter increase, mean RSS).",
            self.tag
        )]
    }
}
