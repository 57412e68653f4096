//! The soak: perfvisor alone for minutes, with pushed series, its RSS and sample accounting.

use super::*;

// ---------------------------------------------------------------------------------------
// Soak
// ---------------------------------------------------------------------------------------

/// perfvisor alone, for `minutes`, watching N targets plus `push_series` synthetic series
/// pushed every second: every 30 s its RSS, queues and counters; at the end the RSS slope
/// (whole run and second half) and the sample accounting (collected = stored + counted
/// drops, the stored count read back from the file).
pub(crate) fn soak(minutes: u64, opts: &Opts) -> Result<(), String> {
    let n = *opts.sizes.first().unwrap_or(&1000);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tag = format!("pvsoak{}", std::process::id());
    let mut targets = Targets::start(n, &tag, Shape::Single)?;
    let token = format!("soak-{}", std::process::id());
    let mut mon = PerfvisorMon {
        bin: PERFVISOR.to_string(),
        tag: "perfvisor",
        proc: None,
        port: free_port()?,
        log: dir.path().join("perfvisor.log"),
        token: Some(token.clone()),
    };
    let ctx = Ctx {
        n,
        pids: &targets.pids,
        cpu_pid: targets.pids[CPU_TARGET],
        mem_pid: targets.pids[MEM_TARGET],
        tag: &tag,
        dir: dir.path().to_path_buf(),
    };
    mon.start(&ctx)?;
    let port = mon.port;
    let pid = mon.proc().pid();
    let status = || -> Result<serde_json::Value, String> {
        let (code, body) = http_get(port, "/api/v1/status", Duration::from_secs(10))?;
        if code != 200 {
            return Err(format!("status {code}"));
        }
        serde_json::from_str(&body).map_err(|e| e.to_string())
    };
    println!(
        "soak: {n} watched processes + {} pushed series for {minutes} min, 1 s interval; \
         perfvisor pid {pid}",
        opts.push_series
    );
    // Synthetic series: K metrics of the host application, one sample each per second.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pusher = {
        let (stop, pushed, token, k) = (
            stop.clone(),
            pushed.clone(),
            token.clone(),
            opts.push_series,
        );
        std::thread::spawn(move || {
            let mut next = Instant::now();
            let mut tick = 0u64;
            while k > 0 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for chunk in (0..k).collect::<Vec<_>>().chunks(5000) {
                    let body: Vec<String> = chunk
                        .iter()
                        .map(|i| {
                            format!(
                                r#"{{"metric":"soak.synthetic.s{i}","value":{}}}"#,
                                (tick + *i as u64) % 97
                            )
                        })
                        .collect();
                    if let Ok((202, answer)) = http_post(
                        port,
                        "/api/v1/metrics",
                        &token,
                        &format!("[{}]", body.join(",")),
                        Duration::from_secs(10),
                    ) {
                        let v: serde_json::Value =
                            serde_json::from_str(&answer).unwrap_or_default();
                        pushed.fetch_add(
                            v["accepted"].as_u64().unwrap_or(0),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                }
                tick += 1;
                next += TICK;
                sleep_until(next);
            }
        })
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let mut rss = Vec::new();
    let mut cpu0 = read_pstat(pid).map_or(0, |p| p.ticks);
    let mut t0 = Instant::now();
    println!(
        "| min | RSS MiB | CPU % (last 30 s) | storage queue | buffered | collected | stored | \
         dropped | pushed | compaction backlog (series windows) | compacted |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    while Instant::now() < end {
        sleep_until((Instant::now() + Duration::from_secs(30)).min(end));
        if !mon.proc().running() {
            return Err("perfvisor exited during the soak".into());
        }
        let kib = status_kib(pid, "VmRSS:").unwrap_or(0);
        let ticks = read_pstat(pid).map_or(0, |p| p.ticks);
        let cpu = (ticks - cpu0) as f64 / clk_tck() / t0.elapsed().as_secs_f64() * 100.0;
        (cpu0, t0) = (ticks, Instant::now());
        let at = started.elapsed().as_secs_f64() / 60.0;
        rss.push((at, kib as f64 / 1024.0));
        let v = status()?;
        println!(
            "| {at:.1} | {:.1} | {cpu:.2} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kib as f64 / 1024.0,
            v["storage"]["backlog"],
            v["storage"]["buffered_samples"],
            v["samples_collected"],
            v["storage"]["stored_samples"],
            v["storage"]["dropped_samples"],
            pushed.load(std::sync::atomic::Ordering::Relaxed),
            v["storage"]["compaction_backlog"],
            v["storage"]["compacted_samples"],
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = pusher.join();
    // Stop the sources: the targets go (their watchers retire), then only host and self
    // metrics remain (a few dozen a second).
    drop(std::mem::take(&mut targets.procs));
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(250),
        "the watchers to retire",
        || {
            Ok(status()?["watchers"]
                .as_array()
                .is_some_and(|w| w.is_empty()))
        },
    )?;
    let last = status()?;
    let at_status = Instant::now();
    let collected = last["samples_collected"].as_u64().unwrap_or(0);
    let dropped = last["storage"]["dropped_samples"].as_u64().unwrap_or(0);
    mon.proc().stop(libc::SIGTERM, Duration::from_secs(60));
    let tail_secs = at_status.elapsed().as_secs_f64();
    let db = dir.path().join("perfvisor.db");
    let stored = perfvisor::StorageReader::open(&db)
        .and_then(|r| r.sample_count())
        .map_err(|e| e.to_string())?;
    let half: Vec<(f64, f64)> = rss
        .iter()
        .copied()
        .filter(|p| p.0 >= minutes as f64 / 2.0)
        .collect();
    println!();
    println!(
        "RSS slope: whole run {:.3} MiB/min, second half {:.3} MiB/min (first {:.1} MiB, last {:.1} MiB)",
        slope(&rss).unwrap_or(0.0),
        slope(&half).unwrap_or(0.0),
        rss.first().map_or(0.0, |p| p.1),
        rss.last().map_or(0.0, |p| p.1)
    );
    println!(
        "accounting: collected {collected} when the sources stopped, counted drops {dropped}, \
         stored in the file {stored} (the file may hold up to {tail_secs:.1} s more of host and \
         self metrics collected after that status); collected − dropped − stored = {}",
        collected as i64 - dropped as i64 - stored as i64
    );
    Ok(())
}
