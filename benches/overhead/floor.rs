//! The floor: a hand-written reader that keeps /proc files open and reads them each tick
//! (the bench binary re-executed with `--floor-child`).

use super::*;

// --- floor -----------------------------------------------------------------------------

pub(crate) struct FloorMon {
    pub(crate) proc: Option<Proc>,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) out: PathBuf,
    pub(crate) log: PathBuf,
}

impl Monitor for FloorMon {
    fn start(&mut self, ctx: &Ctx) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let pids = ctx.pid_list();
        let mut cmd = Command::new(exe);
        cmd.arg("--floor-child")
            .arg(format!("{},{}", ctx.cpu_pid, ctx.mem_pid))
            .arg(pids)
            .stdin(Stdio::piped())
            .stdout(File::create(&self.out).map_err(|e| e.to_string())?)
            .stderr(File::create(&self.log).map_err(|e| e.to_string())?);
        let mut proc = Proc::spawn(&mut cmd, "floor")?;
        self.stdin = proc.child.stdin.take();
        self.proc = Some(proc);
        Ok(())
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| not_started())
    }

    fn window_start(&mut self, _ctx: &Ctx) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(b"mark\n").and_then(|_| stdin.flush());
        }
    }

    /// Closes its stdin: it prints its readings (CPU since the mark, last RSS) and exits.
    fn report(&mut self, ctx: &Ctx, _w: &Window) -> Result<Reading, String> {
        drop(self.stdin.take());
        self.proc()
            .wait_exit(Duration::from_secs(10))
            .ok_or("the floor did not exit on stdin EOF")?;
        let text = fs::read_to_string(&self.out).map_err(|e| e.to_string())?;
        let mut r = Reading::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["cpu", pid, ticks, secs] if pid.parse() == Ok(ctx.cpu_pid) => {
                    let (t, s) = (ticks.parse::<f64>(), secs.parse::<f64>());
                    if let (Ok(t), Ok(s)) = (t, s) {
                        r.cpu_pct = (s > 0.0).then(|| t / clk_tck() / s * 100.0);
                    }
                }
                ["rss", pid, kib] if pid.parse() == Ok(ctx.mem_pid) => {
                    r.rss_mib = kib.parse::<f64>().ok().map(|k| k / 1024.0);
                }
                _ => {}
            }
        }
        Ok(r)
    }

    fn stop(&mut self) {
        drop(self.stdin.take());
        self.proc().stop(libc::SIGTERM, Duration::from_secs(5));
    }

    fn log(&self) -> PathBuf {
        self.log.clone()
    }

    fn notes(&self) -> Vec<String> {
        vec![
            "floor: this bench re-executed as a minimal reader: per pid, /proc/PID/stat, \
              statm and io opened once and re-read with pread into one buffer every second; \
              CPU reading since the window's start, RSS the last value."
                .into(),
        ]
    }
}

/// The floor monitor: every second, for each pid, re-reads /proc/PID/stat, statm and io
/// (opened once, read with `pread` at offset 0, which regenerates them, into one reused
/// buffer) and keeps utime, stime, rss, read_bytes and write_bytes. Prints nothing until
/// stdin closes; a `mark` line on stdin notes the baseline for the CPU reading. On EOF it
/// prints `cpu PID TICKS SECONDS` (CPU ticks of the first special pid between the mark's
/// sample and the last one, and the seconds between them) and `rss PID KIB` (the second
/// special pid's last RSS).
pub(crate) fn floor_child(args: &[String]) {
    struct Watched {
        pid: u32,
        stat: Option<File>,
        statm: Option<File>,
        io: Option<File>,
        ticks: u64,
        rss_pages: u64,
        read_bytes: u64,
        write_bytes: u64,
    }
    fn num(b: &[u8]) -> u64 {
        b.iter()
            .take_while(|c| c.is_ascii_digit())
            .fold(0, |n, c| n * 10 + u64::from(c - b'0'))
    }
    fn read<'b>(f: &Option<File>, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let n = f.as_ref()?.read_at(buf, 0).ok()?;
        (n > 0).then(|| &buf[..n])
    }
    fn sample(w: &mut Watched, buf: &mut [u8]) {
        if let Some(b) = read(&w.stat, buf) {
            // Fields after the last ')': state is field 3, utime 14, stime 15.
            if let Some(close) = b.iter().rposition(|c| *c == b')') {
                let mut f = b[close + 1..]
                    .split(|c| *c == b' ')
                    .filter(|s| !s.is_empty());
                let utime = f.nth(11).map(num);
                let stime = f.next().map(num);
                if let (Some(u), Some(s)) = (utime, stime) {
                    w.ticks = u + s;
                }
            }
        }
        if let Some(b) = read(&w.statm, buf) {
            if let Some(rss) = b.split(|c| *c == b' ').nth(1) {
                w.rss_pages = num(rss);
            }
        }
        if let Some(b) = read(&w.io, buf) {
            for line in b.split(|c| *c == b'\n') {
                if let Some(v) = line.strip_prefix(b"read_bytes: ") {
                    w.read_bytes = num(v);
                } else if let Some(v) = line.strip_prefix(b"write_bytes: ") {
                    w.write_bytes = num(v);
                }
            }
        }
    }

    let list = |s: Option<&String>| -> Vec<u32> {
        s.map(|s| s.split(',').filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    };
    let special = list(args.first());
    let (cpu_pid, mem_pid) = (special.first().copied(), special.get(1).copied());
    let open = |pid: u32, what: &str| File::open(format!("/proc/{pid}/{what}")).ok();
    let mut watched: Vec<Watched> = list(args.get(1))
        .into_iter()
        .map(|pid| Watched {
            pid,
            stat: open(pid, "stat"),
            statm: open(pid, "statm"),
            io: open(pid, "io"),
            ticks: 0,
            rss_pages: 0,
            read_bytes: 0,
            write_bytes: 0,
        })
        .collect();
    // SAFETY: sysconf has no preconditions.
    let page_kib = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(1) as u64 / 1024;
    let cpu_i = watched.iter().position(|w| Some(w.pid) == cpu_pid);
    let mem_i = watched.iter().position(|w| Some(w.pid) == mem_pid);

    enum Msg {
        Mark,
        Eof,
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == "mark" => {
                    let _ = tx.send(Msg::Mark);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(Msg::Eof);
    });

    let mut buf = vec![0u8; 4096];
    let mut next = Instant::now();
    let mut last_at: Instant;
    let mut mark: Option<(u64, Instant)> = None;
    'run: loop {
        for w in &mut watched {
            sample(w, &mut buf);
        }
        last_at = Instant::now();
        next += TICK;
        loop {
            match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Msg::Mark) => {
                    mark = cpu_i.map(|i| (watched[i].ticks, last_at));
                }
                Ok(Msg::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => break 'run,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
    }
    std::hint::black_box(
        watched
            .iter()
            .map(|w| w.read_bytes + w.write_bytes)
            .sum::<u64>(),
    );
    if let (Some(i), Some((ticks0, at0))) = (cpu_i, mark) {
        println!(
            "cpu {} {} {:.3}",
            watched[i].pid,
            watched[i].ticks - ticks0,
            last_at.duration_since(at0).as_secs_f64()
        );
    }
    if let Some(i) = mem_i {
        println!("rss {} {}", watched[i].pid, watched[i].rss_pages * page_kib);
    }
}
