//! Cost of probing one daemon: the kept-open `/proc` probe against open-read-close and
//! sysinfo, plus the two parts that could dominate it (the exe readlink and the fd count).
//! Run with `cargo bench -p perfvisor-actors --bench probe`.

#[cfg(target_os = "linux")]
criterion::criterion_main!(linux::benches);

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("benches/probe.rs measures /proc access and only runs on Linux");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::process::{Child, Command};
    use std::time::Duration;

    use criterion::{criterion_group, Criterion};
    use perfvisor_actors::watcher::probe::{probe_once, ProcessProbe, SysinfoProbe};

    /// The probed daemon stand-in, killed and reaped however the bench ends.
    struct Daemon(Child);

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn probes(c: &mut Criterion) {
        let daemon = Daemon(
            Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("spawn sleep 600"),
        );
        let pid = daemon.0.id();

        let mut group = c.benchmark_group("probe");
        let mut kept = ProcessProbe::open(pid).expect("open probe");
        group.bench_function("kept_open", |b| b.iter(|| kept.probe().expect("probe")));
        group.bench_function("probe_once", |b| {
            b.iter(|| probe_once(pid).expect("probe_once"))
        });
        let mut sysinfo = SysinfoProbe::open(pid).expect("open sysinfo probe");
        group.bench_function("sysinfo", |b| {
            b.iter(|| sysinfo.probe().expect("sysinfo probe"))
        });
        group.finish();

        exe_readlink(c, pid);
        fd_count(c, pid);
        drop(daemon);
    }

    /// What the exe identity check costs: through the kept `/proc/PID` descriptor (what the
    /// probe does) and through the path (allocating, as `std::fs::read_link` does).
    fn exe_readlink(c: &mut Criterion, pid: u32) {
        let mut group = c.benchmark_group("exe_readlink");
        let dir = File::open(format!("/proc/{pid}")).expect("open /proc/PID");
        let mut buf = vec![0u8; 4096];
        group.bench_function("readlinkat_kept_dir", |b| {
            b.iter(|| {
                // SAFETY: the name is NUL-terminated and `buf` is valid for its length.
                let n = unsafe {
                    libc::readlinkat(
                        dir.as_raw_fd(),
                        c"exe".as_ptr(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                };
                assert!(n > 0);
                n
            })
        });
        let path = format!("/proc/{pid}/exe");
        group.bench_function("read_link_path", |b| {
            b.iter(|| std::fs::read_link(&path).expect("read_link"))
        });
        group.finish();
    }

    /// What counting open descriptors costs: `fstat` of a kept `/proc/PID/fd` (its size is the
    /// count since Linux 6.2; what the probe does) against `read_dir` of the path, for the
    /// `sleep` child (3 fds) and for this process with 1000 more fds open.
    fn fd_count(c: &mut Criterion, pid: u32) {
        let mut group = c.benchmark_group("fd_count");
        let extra: Vec<File> = (0..1000)
            .map(|_| File::open("/dev/null").expect("open /dev/null"))
            .collect();
        for (label, pid) in [("child_3", pid), ("self_1000", std::process::id())] {
            let fd_dir = File::open(format!("/proc/{pid}/fd")).expect("open fd dir");
            group.bench_function(format!("fstat_kept_dir/{label}"), |b| {
                b.iter(|| fd_dir.metadata().expect("fstat").len())
            });
            let path = format!("/proc/{pid}/fd");
            group.bench_function(format!("read_dir_path/{label}"), |b| {
                b.iter(|| std::fs::read_dir(&path).expect("read_dir").count())
            });
        }
        drop(extra);
        group.finish();
    }

    criterion_group! {
        name = benches;
        config = Criterion::default().measurement_time(Duration::from_secs(3));
        targets = probes
    }
}
