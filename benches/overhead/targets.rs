//! The watched processes: N `perfvisor-loadgen` targets, their shapes and cgroups, killed
//! and reaped together.

use super::*;

// ---------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------

/// The watched processes. Dropping kills them all first (a tree's whole process group),
/// then reaps them all, then removes the cgroups the harness made.
pub(crate) struct Targets {
    pub(crate) procs: Vec<Proc>,
    pub(crate) pids: Vec<u32>,
    pub(crate) cgroups: Vec<perfvisor_actors::watcher::cgroup::DaemonCgroup>,
    pub(crate) tree: bool,
}

impl Targets {
    /// Each loadgen gets `--as TAG-tI`: an argument loadgen accepts and only uses with
    /// `--report-latency` (so behaviour is unchanged), which lets process-exporter select
    /// exactly this run's targets by command line even when other loadgens are running.
    pub(crate) fn start(n: usize, tag: &str, shape: Shape) -> Result<Targets, String> {
        let mut t = Targets {
            procs: Vec::with_capacity(n),
            pids: Vec::with_capacity(n),
            cgroups: Vec::new(),
            tree: shape.is_tree(),
        };
        let parent = if shape.in_cgroup() {
            Some(
                perfvisor_actors::watcher::cgroup::resolve_parent(None)
                    .map_err(|e| format!("shape {}: no cgroup: {e}", shape.name()))?,
            )
        } else {
            None
        };
        for i in 0..n {
            let load: Vec<String> = match i {
                CPU_TARGET => vec!["--cpu".into(), BURN.to_string()],
                MEM_TARGET => vec!["--hold-mib".into(), HOLD_MIB.to_string()],
                _ => vec!["--cpu".into(), "0".into()],
            };
            // A cgroup target joins its cgroup before it runs (the shell writes its own pid
            // into each `cgroup.procs`, then starts the target): memory is charged to the
            // cgroup a page was first touched in and does not move with the process, so one
            // moved in after allocating would show little in its cgroup's memory figures.
            let join = match &parent {
                Some(parent) => {
                    let cg = perfvisor_actors::watcher::cgroup::DaemonCgroup::create(
                        &format!("bench-{tag}-t{i}"),
                        parent,
                    )
                    .map_err(|e| format!("cannot make a cgroup for target t{i}: {e}"))?;
                    let join: String = cg
                        .procs_files()
                        .iter()
                        .map(|f| format!("echo $$ > '{}'; ", f.display()))
                        .collect();
                    t.cgroups.push(cg);
                    join
                }
                None => String::new(),
            };
            let mut cmd = if shape.is_tree() {
                // sh ─┬─ loadgen, sleep
                //     └─ sh ── sleep            (five processes, one a grandchild)
                let mut c = Command::new("/bin/sh");
                c.arg("-c")
                    .arg(format!(
                        "{join}{LOADGEN} {} --as {tag}-t{i} & sleep 100000 & \
                         sh -c 'sleep 100000; :' & wait",
                        load.join(" ")
                    ))
                    .process_group(0);
                c
            } else if !join.is_empty() {
                // The shell execs the target: still one process.
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(format!(
                    "{join}exec {LOADGEN} {} --as {tag}-t{i}",
                    load.join(" ")
                ));
                c
            } else {
                let mut c = Command::new(LOADGEN);
                c.args(&load).args(["--as", &format!("{tag}-t{i}")]);
                c
            };
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let p = Proc::spawn(&mut cmd, &format!("target t{i}"))?;
            t.pids.push(p.pid());
            t.procs.push(p);
        }
        if shape.is_tree() {
            let pids = t.pids.clone();
            wait_until(
                Duration::from_secs(60),
                Duration::from_millis(200),
                "every tree target to have its five processes",
                || Ok(pids.iter().all(|p| Tree::new(*p).pids.len() == 5)),
            )?;
        }
        let mem = t.pids[MEM_TARGET];
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            "the 128 MiB target to touch its memory",
            || Ok(Tree::new(mem).sample().1 >= HOLD_MIB * 1024),
        )?;
        Ok(t)
    }

    pub(crate) fn all_alive(&mut self) -> bool {
        self.procs.iter_mut().all(Proc::running)
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if self.tree && p.running() {
                // SAFETY: plain syscall; the tree's sh leads its own group and is not reaped
                // yet, so the group id is still its.
                unsafe { libc::kill(-(p.pid() as libc::pid_t), libc::SIGKILL) };
            }
            p.signal(libc::SIGKILL);
        }
        for p in &mut self.procs {
            let _ = p.child.wait();
        }
        for cg in &self.cgroups {
            let _ = cg.kill(Duration::from_secs(2));
            let deadline = Instant::now() + Duration::from_secs(5);
            while !cg.remove() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
