//! Cost of probing one daemon: the kept-open `/proc` probe against open-read-close and
//! sysinfo, plus the two parts that could dominate it (the exe readlink and the fd count);
//! and per daemon of 1, 5 and 50 processes, the tree walk (children files, or the `/proc`
//! scan fallback) against reading the daemon's cgroup files (as root only).
//! Run with `cargo bench -p perfvisor-actors --bench probe` (filter e.g. `-- tree`).

#[cfg(target_os = "linux")]
criterion::criterion_main!(linux::benches);

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("benches/probe.rs measures /proc access and only runs on Linux");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::process::{Child, Command};
    use std::time::Duration;

    use criterion::{criterion_group, Criterion};
    use perfvisor_actors::watcher::cgroup::{resolve_parent, CgroupProbe, DaemonCgroup};
    use perfvisor_actors::watcher::probe::{
        probe_once, read_exe_link, scan_parents, ProcessProbe, SysinfoProbe,
    };
    use perfvisor_actors::watcher::tree::{TreeProbe, SCAN_EVERY, TOP_CHILDREN};
    use perfvisor_actors::watcher::{CGROUP_SLOW_EVERY, CGROUP_WALK_EVERY};

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
        trees(c);
    }

    /// A shell with `n - 1` sleeping children in its own process group; the group is killed
    /// by its id (the shell's pid) and the shell reaped when dropped.
    struct Tree(Child);

    impl Tree {
        fn spawn(n: usize) -> Tree {
            use std::os::unix::process::CommandExt;
            let script = format!("{}wait", "sleep 600 & ".repeat(n - 1));
            let child = Command::new("sh")
                .args(["-c", &script])
                .process_group(0)
                .spawn()
                .expect("spawn sh");
            let tree = Tree(child);
            let pid = tree.0.id();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut probe = TreeProbe::open(pid).expect("open tree");
            while probe.probe().expect("probe").total.processes < n as u64 {
                assert!(std::time::Instant::now() < deadline, "{n} processes not up");
                std::thread::sleep(Duration::from_millis(10));
            }
            tree
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            // SAFETY: plain syscall; the shell is not reaped yet, so its pid names the group.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }

    /// A cgroup holding a bench tree, emptied and removed when dropped.
    struct BenchCgroup(DaemonCgroup);

    impl Drop for BenchCgroup {
        fn drop(&mut self) {
            let _ = self.0.kill(Duration::from_secs(2));
            self.0.remove();
        }
    }

    /// Per daemon of 1, 5 and 50 processes: the tree walk through `children` files, the
    /// top-children breakdown built from its readings, the
    /// `/proc` scan fallback (one scan, and a probe amortised over SCAN_EVERY), and reading
    /// the daemon's cgroup files.
    fn trees(c: &mut Criterion) {
        let mut group = c.benchmark_group("tree");
        for n in [1usize, 5, 50] {
            let tree = Tree::spawn(n);
            let pid = tree.0.id();
            let mut walk = TreeProbe::open(pid).expect("open");
            group.bench_function(format!("children_files/{n}"), |b| {
                b.iter(|| walk.probe().expect("probe"))
            });
            // What the watcher adds per probe for the report's top children.
            walk.probe().expect("probe");
            group.bench_function(format!("top_children/{n}"), |b| {
                b.iter(|| walk.top_children(TOP_CHILDREN))
            });
            let mut scan = TreeProbe::open(pid).expect("open").without_children_files();
            group.bench_function(format!("proc_scan_every_{SCAN_EVERY}/{n}"), |b| {
                b.iter(|| scan.probe().expect("probe"))
            });
            let mut parents = Vec::new();
            group.bench_function(format!("one_proc_scan/{n}"), |b| {
                b.iter(|| {
                    parents.clear();
                    scan_parents(&mut parents);
                    parents.len()
                })
            });
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                let made = resolve_parent(None)
                    .map_err(std::io::Error::other)
                    .and_then(|parent| {
                        DaemonCgroup::create(&format!("bench-{n}-{}", std::process::id()), &parent)
                    });
                match made {
                    Ok(cg) => {
                        let cg = BenchCgroup(cg);
                        for procs in cg.0.procs_files() {
                            for p in walk.descendants().into_iter().chain([pid]) {
                                let _ = std::fs::write(&procs, p.to_string());
                            }
                        }
                        let probe = CgroupProbe::open(cg.0.clone());
                        group.bench_function(format!("cgroup_files/{n}"), |b| {
                            b.iter(|| probe.probe())
                        });
                        // What the watcher reads per probe of a daemon whose totals come from
                        // its cgroup, amortised: the main process's `stat` and the CPU and
                        // memory files, and at every 10th probe the slow files and a walk.
                        let mut main = TreeProbe::open(pid).expect("open");
                        let mut i = 0u64;
                        group.bench_function(format!("cgroup_daemon_amortised/{n}"), |b| {
                            b.iter(|| {
                                let walk = i.is_multiple_of(CGROUP_WALK_EVERY);
                                let slow = i.is_multiple_of(CGROUP_SLOW_EVERY);
                                i += 1;
                                if walk {
                                    main.probe().expect("walk");
                                } else {
                                    main.probe_main().expect("main");
                                }
                                probe.probe_figures(slow)
                            })
                        });
                        drop(tree);
                        drop(cg);
                        continue;
                    }
                    Err(e) => eprintln!("cgroup benchmarks skipped: cannot create one ({e})"),
                }
            } else {
                eprintln!("cgroup benchmarks skipped: not root");
            }
            drop(tree);
        }
        group.finish();
    }

    /// What the exe identity check costs: through the kept `/proc/PID` descriptor (what the
    /// probe does) and through the path (allocating, as `std::fs::read_link` does).
    fn exe_readlink(c: &mut Criterion, pid: u32) {
        let mut group = c.benchmark_group("exe_readlink");
        let dir = File::open(format!("/proc/{pid}")).expect("open /proc/PID");
        let mut buf = vec![0u8; 4096];
        group.bench_function("readlinkat_kept_dir", |b| {
            b.iter(|| read_exe_link(&dir, &mut buf).expect("readlinkat").len())
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
