//! Full and slow disks under load, both real. The full disk is a 32 MiB tmpfs (mounted by
//! the test, which needs root) filled up to ENOSPC while 200 series are recorded. The slow
//! disk is an ext4 file system on a loop device whose backing file is an NBD export made
//! slow by nbdkit's rate filter (`nbdfuse` + `nbdkit --filter=rate memory`, Debian's
//! `nbdkit` and `nbdfuse`; this machine has no device-mapper `delay` target), throttled and
//! released while perfvisor writes to it; the writer's `StorageFault::Slow` covers the same
//! path without root. Either way the backlog stays bounded, what cannot be kept is
//! counted, the storage alert fires, and recovery needs nobody.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perfvisor::{AlertState, Perfvisor, PerfvisorBuilder, StorageFault};

use crate::support::{self, Tmpfs};

/// A real slow disk: ext4 on a loop device backed by an NBD export (nbdkit's in-memory
/// disk behind its rate filter) that `nbdfuse` shows as a file. Writing a rate in bits per
/// second to `rate` throttles every write and flush that reaches the device within a
/// second; everything is torn down (unthrottled first) when dropped.
struct SlowDisk {
    dir: PathBuf,
    rate: PathBuf,
    fuse: PathBuf,
    loop_dev: Option<String>,
    nbdfuse: Option<std::process::Child>,
    _parent: tempfile::TempDir,
}

/// As fast as the device goes (no throttle).
const UNTHROTTLED: &str = "100G";

impl SlowDisk {
    /// Sets it up, or says why not.
    fn mount() -> Result<SlowDisk, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let fuse = parent.path().join("fuse");
        let dir = parent.path().join("slow-disk");
        let rate = parent.path().join("rate");
        for d in [&fuse, &dir] {
            std::fs::create_dir(d).map_err(|e| e.to_string())?;
        }
        std::fs::write(&rate, UNTHROTTLED).map_err(|e| e.to_string())?;
        let child = std::process::Command::new("nbdfuse")
            .arg(fuse.join("disk"))
            .args([
                "--command",
                "nbdkit",
                "-s",
                "--filter=rate",
                "memory",
                "64M",
            ])
            .arg(format!("rate={UNTHROTTLED}"))
            .arg(format!("rate-file={}", rate.display()))
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("nbdfuse (Debian's nbdfuse and nbdkit): {e}"))?;
        let mut disk = SlowDisk {
            dir,
            rate,
            fuse,
            loop_dev: None,
            nbdfuse: Some(child),
            _parent: parent,
        };
        let image = disk.fuse.join("disk");
        let started = Instant::now();
        while std::fs::metadata(&image).map_or(0, |m| m.len()) < 64 << 20 {
            if let Some(status) = disk
                .nbdfuse
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("nbdfuse exited: {status} (is /dev/fuse there?)"));
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!("{} did not appear", image.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let run = |cmd: &mut std::process::Command| -> Result<String, String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let dev = run(std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image))?;
        disk.loop_dev = Some(dev.clone());
        run(std::process::Command::new("mkfs.ext4").args(["-q", &dev]))?;
        run(std::process::Command::new("mount").arg(&dev).arg(&disk.dir))?;
        Ok(disk)
    }

    /// Limits the device to `rate` (bits per second, nbdkit's syntax: "1M"); nbdkit
    /// re-reads the file every second.
    fn throttle(&self, rate: &str) {
        std::fs::write(&self.rate, rate).unwrap();
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.rate, UNTHROTTLED);
        let quiet = |cmd: &mut std::process::Command| {
            let _ = cmd
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        quiet(std::process::Command::new("umount").arg(&self.dir));
        quiet(
            std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir),
        );
        if let Some(dev) = &self.loop_dev {
            quiet(std::process::Command::new("losetup").args(["-d", dev]));
        }
        quiet(
            std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.fuse),
        );
        if let Some(mut child) = self.nbdfuse.take() {
            // SAFETY: plain kill(2) of the child this test started, by its pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fills the file system of `dir` with a file until writes fail with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Whatever is left (less than a block) goes too.
    for _ in 0..64 {
        if f.write(&block[..1024]).is_err() {
            break;
        }
    }
    path
}

/// Records 200 series (one sample each, every 20 ms: 10,000 samples a second) until stopped; counts what the
/// recorder accepted.
fn load(
    pv: &Perfvisor,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let rec = pv.recorder().for_daemon("app");
    std::thread::spawn(move || {
        let names: Vec<perfvisor::MetricName> = (0..200)
            .map(|i| perfvisor::MetricName::from(format!("disk.load.s{i}")))
            .collect();
        let mut v = 0.0;
        while !stop.load(Ordering::Relaxed) {
            for name in &names {
                if rec.record(name.clone(), v) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
            v += 1.0;
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// perfvisor on `db` (tuned by `tune`), and the storage alerts it raises.
async fn start(
    db: &Path,
    tune: impl FnOnce(PerfvisorBuilder) -> PerfvisorBuilder,
) -> (Perfvisor, std::sync::mpsc::Receiver<perfvisor::Alert>) {
    let builder = Perfvisor::builder()
        .database(db)
        .probe_interval(Duration::from_millis(200))
        .host_interval(Duration::from_millis(200));
    let pv = tune(builder).start().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    pv.on_alert(move |a| {
        if a.rule == perfvisor::STORAGE_FAILING_RULE {
            let _ = tx.send(a.clone());
        }
    })
    .await
    .unwrap();
    (pv, rx)
}

/// Waits for the storage alert to reach `state`.
fn storage_alert(
    rx: &std::sync::mpsc::Receiver<perfvisor::Alert>,
    state: AlertState,
    within: Duration,
) -> perfvisor::Alert {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let alert = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {state:?} storage alert within {within:?}"));
        if alert.state == state {
            return alert;
        }
    }
}

fn stored(db: &Path) -> u64 {
    (0..200)
        .map(|i| support::stored_count(db, &format!("disk.load.s{i}")))
        .sum()
}

/// Waits until `n` samples are in the file (the WAL has grown to its working size).
async fn wait_stored(pv: &Perfvisor, n: u64, before: &str) {
    let started = Instant::now();
    while pv.status().await.unwrap().storage.stored_samples < n {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing stored before {before}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the write queue 20 times over 2 s, asserting it stays within `bound`; its peak.
async fn watch_queue(pv: &Perfvisor, bound: usize) -> u64 {
    let mut peak = 0;
    for _ in 0..20 {
        let s = pv.status().await.unwrap();
        peak = peak.max(s.storage.backlog);
        assert!(
            s.storage.backlog as usize <= bound,
            "queue {} over {bound}",
            s.storage.backlog
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}

/// Drops are counted over all series (host and self metrics too), so every accepted
/// sample of the load is stored or among them.
fn assert_accounted(accepted: u64, stored: u64, dropped: u64) {
    assert!(stored <= accepted, "stored {stored} > accepted {accepted}");
    assert!(
        stored + dropped >= accepted,
        "stored {stored} + counted drops {dropped} < accepted {accepted}"
    );
}

#[tokio::test]
async fn full_disk_under_load_buffers_within_bound_alerts_and_recovers() {
    let Some(disk) = support::or_skip(
        Tmpfs::mount("32m"),
        "cannot mount a small tmpfs (needs root)",
    ) else {
        return;
    };
    let db = disk.dir.join("perfvisor.db");
    const BOUND: usize = 50_000;
    let (pv, rx) = start(&db, |b| b.max_buffered_samples(BOUND)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let loader = load(&pv, stop.clone(), accepted.clone());
    // Let some history be written first, then take the rest of the space.
    wait_stored(&pv, 20_000, "the disk fills").await;
    let filler = fill(&disk.dir);

    let fired = storage_alert(&rx, AlertState::Firing, Duration::from_secs(30));
    println!("fired: {}", fired.message);
    // Keep loading until the bound is reached and drops are counted.
    let started = Instant::now();
    let mut peak = 0;
    loop {
        let s = pv.status().await.unwrap();
        assert!(
            s.storage.write_blocked.is_some(),
            "unblocked on a full disk: {s:?}"
        );
        peak = peak.max(s.storage.buffered_samples);
        assert!(
            s.storage.buffered_samples as usize <= BOUND,
            "buffer {} over its bound {BOUND}",
            s.storage.buffered_samples
        );
        if s.storage.dropped_samples > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never reached the bound: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Space comes back; nobody intervenes.
    std::fs::remove_file(&filler).unwrap();
    let resolved = storage_alert(&rx, AlertState::Resolved, Duration::from_secs(90));
    println!("resolved: {}", resolved.message);
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    pv.flush().await.unwrap();
    let s = pv.status().await.unwrap();
    assert_eq!(s.storage.write_blocked, None);
    let accepted = accepted.load(Ordering::Relaxed);
    let dropped = s.storage.dropped_samples + s.recorder.dropped;
    pv.shutdown().await.unwrap();
    let stored = stored(&db);
    println!(
        "full disk: peak buffer {peak} (bound {BOUND}), accepted {accepted}, stored {stored}, \
         counted dropped {dropped}"
    );
    assert_accounted(accepted, stored, dropped);
    assert!(perfvisor_actors::storage::integrity_check(&db)
        .unwrap()
        .is_ok());
}

#[tokio::test]
async fn slow_disk_under_load_keeps_the_backlog_bounded_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perfvisor.db");
    const QUEUE: usize = 8;
    let (pv, rx) = start(&db, |b| b.storage_queue(QUEUE)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let loader = load(&pv, stop.clone(), accepted.clone());
    pv.inject_storage_fault(StorageFault::Slow(Duration::from_millis(300)))
        .unwrap();
    let fired = storage_alert(&rx, AlertState::Firing, Duration::from_secs(30));
    println!("fired: {}", fired.message);
    assert!(fired.message.contains("dropped"), "{}", fired.message);
    let peak = watch_queue(&pv, QUEUE).await;
    pv.inject_storage_fault(StorageFault::Clear).unwrap();
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    // Quiet for 30 s after the last drop, then resolved by itself.
    let resolved = storage_alert(&rx, AlertState::Resolved, Duration::from_secs(90));
    println!("resolved: {}", resolved.message);
    pv.flush().await.unwrap();
    let s = pv.status().await.unwrap();
    let accepted = accepted.load(Ordering::Relaxed);
    let dropped = s.storage.dropped_samples + s.recorder.dropped;
    assert!(
        dropped > 0,
        "a 300 ms commit under this load must overflow the queue"
    );
    pv.shutdown().await.unwrap();
    let stored = stored(&db);
    println!(
        "slow disk: peak queue {peak} (bound {QUEUE}), accepted {accepted}, stored {stored}, \
         counted dropped {dropped}"
    );
    assert_accounted(accepted, stored, dropped);
}

#[tokio::test]
async fn real_slow_disk_under_load_keeps_the_backlog_bounded_and_recovers() {
    let Some(disk) = support::or_skip(
        SlowDisk::mount(),
        "cannot set up a slow disk (needs root, /dev/fuse, nbdkit, nbdfuse)",
    ) else {
        return;
    };
    let db = disk.dir.join("perfvisor.db");
    const QUEUE: usize = 8;
    let (pv, rx) = start(&db, |b| b.storage_queue(QUEUE)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let loader = load(&pv, stop.clone(), accepted.clone());
    // Some history at full speed first, then 1 Mbit/s (125 kB/s): a second of this load
    // takes longer than a second to commit. (Much slower, and the requests already queued
    // at that rate outlast the test once the throttle is lifted.)
    wait_stored(&pv, 20_000, "the throttle").await;
    disk.throttle("1M");
    let fired = storage_alert(&rx, AlertState::Firing, Duration::from_secs(60));
    println!("fired: {}", fired.message);
    assert!(fired.message.contains("dropped"), "{}", fired.message);
    let peak = watch_queue(&pv, QUEUE).await;
    // The disk is fast again; nobody intervenes.
    disk.throttle(UNTHROTTLED);
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    let resolved = storage_alert(&rx, AlertState::Resolved, Duration::from_secs(120));
    println!("resolved: {}", resolved.message);
    pv.flush().await.unwrap();
    let s = pv.status().await.unwrap();
    let accepted = accepted.load(Ordering::Relaxed);
    let dropped = s.storage.dropped_samples + s.recorder.dropped;
    assert!(
        dropped > 0,
        "a 125 kB/s disk under this load must overflow the queue"
    );
    pv.shutdown().await.unwrap();
    let stored = stored(&db);
    println!(
        "real slow disk: peak queue {peak} (bound {QUEUE}), accepted {accepted}, stored \
         {stored}, counted dropped {dropped}"
    );
    assert_accounted(accepted, stored, dropped);
    assert!(perfvisor_actors::storage::integrity_check(&db)
        .unwrap()
        .is_ok());
}
