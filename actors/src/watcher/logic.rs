//! Turning probe snapshots into samples: counters, and rates between two probes. Plain logic.

use crate::metric_names as m;
use crate::types::{DaemonId, Labels, MetricKind, Sample, SeriesKey, Source, TimestampMs};

#[cfg(unix)]
use super::probe::ProcSnapshot;
use super::tree::TreeSnapshot;
#[cfg(unix)]
use super::tree::TreeTotals;

/// The cumulative figures of one probe that rates are computed from.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: TimestampMs,
    cpu: f64,
    main_cpu: f64,
    read: Option<u64>,
    write: Option<u64>,
}

/// Keeps the previous snapshot of one daemon so rates can be computed.
#[derive(Debug, Default)]
pub struct RateTracker {
    previous: Option<Reading>,
    /// Whether the daemon has had a child since the watcher started: from then on the main
    /// process's own figures are emitted too (before, they equal the totals).
    had_children: bool,
}

impl RateTracker {
    /// The samples for one snapshot taken at `now`. The first snapshot after a (re)start
    /// yields counters but no rates: a rate needs two readings.
    ///
    /// `process.*` are the tree's totals; `process.main.*` the watched pid alone, emitted once
    /// the daemon has had a child process.
    pub fn samples(
        &mut self,
        daemon: &DaemonId,
        labels: &Labels,
        snap: &TreeSnapshot,
        now: TimestampMs,
    ) -> Vec<Sample> {
        let (main, total) = (&snap.main, &snap.total);
        self.had_children |= total.processes > 1;
        let mut out = Vec::with_capacity(if self.had_children { 22 } else { 16 });
        let mut push = |metric: &'static str, kind: MetricKind, value: f64| {
            out.extend(sample_of(daemon, labels, metric, kind, now, value));
        };
        let (g, c) = (MetricKind::Gauge, MetricKind::Counter);
        let reading = Reading {
            at: now,
            cpu: total.cpu_seconds,
            main_cpu: main.cpu_seconds(),
            read: total.read_bytes,
            write: total.write_bytes,
        };
        push(m::PROCESS_CPU_TIME, c, reading.cpu);
        if let Some(prev) = self.previous {
            let dt = (now - prev.at) as f64 / 1000.0;
            if dt > 0.0 {
                push(
                    m::PROCESS_CPU_UTILIZATION,
                    g,
                    ((reading.cpu - prev.cpu) / dt).max(0.0),
                );
                if self.had_children {
                    push(
                        m::PROCESS_MAIN_CPU_UTILIZATION,
                        g,
                        ((reading.main_cpu - prev.main_cpu) / dt).max(0.0),
                    );
                }
                if let (Some(r), Some(pr)) = (reading.read, prev.read) {
                    push(
                        m::PROCESS_DISK_READ_RATE,
                        g,
                        r.saturating_sub(pr) as f64 / dt,
                    );
                }
                if let (Some(w), Some(pw)) = (reading.write, prev.write) {
                    push(
                        m::PROCESS_DISK_WRITE_RATE,
                        g,
                        w.saturating_sub(pw) as f64 / dt,
                    );
                }
            }
        }
        self.previous = Some(reading);
        push(m::PROCESS_MEMORY_RSS, g, total.rss_bytes as f64);
        push(m::PROCESS_MEMORY_VIRTUAL, g, total.virtual_bytes as f64);
        if let Some(r) = total.read_bytes {
            push(m::PROCESS_DISK_READ, c, r as f64);
        }
        if let Some(w) = total.write_bytes {
            push(m::PROCESS_DISK_WRITE, c, w as f64);
        }
        push(m::PROCESS_THREADS, g, total.threads as f64);
        let (nearest_fds, nearest_limit) = total.nearest_fd_limit;
        if let Some(n) = nearest_fds {
            push(m::PROCESS_OPEN_FDS, g, n as f64);
        }
        if let Some(n) = nearest_limit {
            push(m::PROCESS_FD_LIMIT, g, n as f64);
        }
        if let Some(n) = total.open_fds {
            push(m::PROCESS_TREE_OPEN_FDS, g, n as f64);
        }
        push(m::PROCESS_TREE_COUNT, g, total.processes as f64);
        push(m::PROCESS_TREE_ZOMBIES, g, total.zombies as f64);
        push(m::PROCESS_UPTIME, g, main.uptime_seconds);
        push(m::PROCESS_STATE, g, main.state.code());
        if self.had_children {
            push(m::PROCESS_MAIN_MEMORY_RSS, g, main.rss_bytes as f64);
            if let Some(n) = main.open_fds {
                push(m::PROCESS_MAIN_OPEN_FDS, g, n as f64);
            }
            push(m::PROCESS_MAIN_THREADS, g, main.threads as f64);
        }
        out
    }
}

/// How often, in probes, the process tree of a daemon whose totals come from its cgroup is
/// walked: for its top children, and for the figures a cgroup has no file for (virtual
/// memory, descriptors, zombies; threads, process count and storage I/O where the cgroup lacks
/// `pids.current`, `cgroup.procs` or `io.stat`). Those figures are sampled at these probes only.
pub const CGROUP_WALK_EVERY: u64 = 10;

/// How often, in probes, the task count (`pids.current`), `io.stat`, the pressure files, the
/// OOM kill count and `cgroup.procs` of a daemon's cgroup are read (the storage and pressure
/// rates are then over that many probes): only `cpu.stat` and the memory file are read at
/// every probe, so a cgroup-read daemon costs less per probe than one read through `/proc`.
/// The same probes walk the tree of a cgroup-read daemon ([`CGROUP_WALK_EVERY`]).
pub const CGROUP_SLOW_EVERY: u64 = 10;

// Every probe that walks a cgroup-read daemon's tree also reads its slow files, so a figure
// the cgroup has a file for never comes from the walk (its series would mix two sources).
const _: () = assert!(CGROUP_WALK_EVERY.is_multiple_of(CGROUP_SLOW_EVERY));

/// The cumulative figures of one cgroup reading that rates are computed from.
#[cfg(unix)]
#[derive(Debug, Clone, Copy)]
struct CgroupReading {
    at: TimestampMs,
    cpu: Option<f64>,
    main_cpu: f64,
}

/// Keeps the previous reading of a daemon with a cgroup of its own so rates can be computed.
#[cfg(unix)]
#[derive(Debug, Default)]
pub struct CgroupTracker {
    previous: Option<CgroupReading>,
    /// The pressure totals at the last probe that read them, and when.
    previous_pressure: Option<(TimestampMs, [super::cgroup::Pressure; 3])>,
    /// Storage bytes read and written at the last probe that had them, and when.
    previous_io: Option<(TimestampMs, u64, u64)>,
    /// As in [`RateTracker`]: `process.main.*` once the daemon has had a child.
    had_children: bool,
}

#[cfg(unix)]
impl CgroupTracker {
    /// The samples of a daemon whose totals come from its cgroup (see
    /// [`super::cgroup::CgroupProbe::reads_totals`]), for one probe at `now`:
    ///
    /// - `process.cpu.*` from `cpu.stat` `usage_usec` (everything that ran in the cgroup),
    ///   `process.memory.usage_bytes` from `memory.current` (v1 `memory.usage_in_bytes`):
    ///   memory charged to the cgroup, page cache and kernel memory included, at every
    ///   probe; `process.thread.count` from `pids.current`, `process.tree.process.count` from
    ///   `cgroup.procs` and `process.disk.*` from `io.stat` at the `slow` probes. These
    ///   replace the `cgroup.*` series of the same figures, which are not emitted (one series
    ///   per figure).
    /// - From `walk`, the tree's totals when this probe walked the tree (every
    ///   [`CGROUP_WALK_EVERY`]th): virtual memory, descriptors and their limit, zombies, and
    ///   any figure above whose cgroup file is missing.
    /// - From `main`, read at every probe: `process.uptime_seconds`, `process.state` and, once
    ///   the daemon has had a child, `process.main.*`.
    /// - `cgroup.memory.oom_kill.count` and the pressure rates, which have no `process.*`
    ///   counterpart, and `process.tree.process.count`: at the `slow` probes, which read
    ///   those files (every [`CGROUP_SLOW_EVERY`]th), the rates over the time since the last
    ///   such probe.
    #[allow(clippy::too_many_arguments)]
    pub fn samples(
        &mut self,
        daemon: &DaemonId,
        labels: &Labels,
        main: &ProcSnapshot,
        cg: &super::cgroup::CgroupSnapshot,
        walk: Option<&TreeTotals>,
        slow: bool,
        now: TimestampMs,
    ) -> Vec<Sample> {
        self.had_children |=
            cg.processes.is_some_and(|n| n > 1) || walk.is_some_and(|w| w.processes > 1);
        let mut out = Vec::with_capacity(24);
        let mut push = |metric: &'static str, kind: MetricKind, value: Option<f64>| {
            out.extend(value.and_then(|v| sample_of(daemon, labels, metric, kind, now, v)));
        };
        let (g, c) = (MetricKind::Gauge, MetricKind::Counter);
        let reading = CgroupReading {
            at: now,
            cpu: cg.cpu_seconds,
            main_cpu: main.cpu_seconds(),
        };
        push(m::PROCESS_CPU_TIME, c, reading.cpu);
        if let Some(prev) = self.previous {
            let dt = (now - prev.at) as f64 / 1000.0;
            if dt > 0.0 {
                let rate = |a: Option<f64>, b: Option<f64>| Some(((a? - b?) / dt).max(0.0));
                push(m::PROCESS_CPU_UTILIZATION, g, rate(reading.cpu, prev.cpu));
                if self.had_children {
                    push(
                        m::PROCESS_MAIN_CPU_UTILIZATION,
                        g,
                        rate(Some(reading.main_cpu), Some(prev.main_cpu)),
                    );
                }
            }
        }
        self.previous = Some(reading);
        if slow {
            self.pressure(&mut push, cg, now);
        }
        let u = |v: Option<u64>| v.map(|v| v as f64);
        push(m::PROCESS_MEMORY_RSS, g, u(cg.memory_bytes));
        push(
            m::PROCESS_THREADS,
            g,
            u(cg.tasks.or(walk.map(|w| w.threads))),
        );
        push(
            m::PROCESS_TREE_COUNT,
            g,
            u(cg.processes.or(walk.map(|w| w.processes))),
        );
        let io = cg.io.or_else(|| {
            let w = walk?;
            Some((w.read_bytes?, w.write_bytes?))
        });
        if let Some((r, w)) = io {
            push(m::PROCESS_DISK_READ, c, Some(r as f64));
            push(m::PROCESS_DISK_WRITE, c, Some(w as f64));
            if let Some((then, pr, pw)) = self.previous_io {
                let dt = (now - then) as f64 / 1000.0;
                if dt > 0.0 {
                    push(
                        m::PROCESS_DISK_READ_RATE,
                        g,
                        Some(r.saturating_sub(pr) as f64 / dt),
                    );
                    push(
                        m::PROCESS_DISK_WRITE_RATE,
                        g,
                        Some(w.saturating_sub(pw) as f64 / dt),
                    );
                }
            }
            self.previous_io = Some((now, r, w));
        }
        if let Some(w) = walk {
            push(m::PROCESS_MEMORY_VIRTUAL, g, Some(w.virtual_bytes as f64));
            push(m::PROCESS_OPEN_FDS, g, u(w.nearest_fd_limit.0));
            push(m::PROCESS_FD_LIMIT, g, u(w.nearest_fd_limit.1));
            push(m::PROCESS_TREE_OPEN_FDS, g, u(w.open_fds));
            push(m::PROCESS_TREE_ZOMBIES, g, Some(w.zombies as f64));
        }
        push(m::PROCESS_UPTIME, g, Some(main.uptime_seconds));
        push(m::PROCESS_STATE, g, Some(main.state.code()));
        if self.had_children {
            push(m::PROCESS_MAIN_MEMORY_RSS, g, Some(main.rss_bytes as f64));
            push(m::PROCESS_MAIN_OPEN_FDS, g, u(main.open_fds));
            push(m::PROCESS_MAIN_THREADS, g, Some(main.threads as f64));
        }
        push(m::CGROUP_OOM_KILLS, c, u(cg.oom_kills));
        out
    }

    /// The `cgroup.*` samples of a daemon whose totals come from its process tree because its
    /// cgroup lacks the CPU or memory file: OOM kills and the pressure rates only (what the
    /// tree cannot give).
    pub fn extra_samples(
        &mut self,
        daemon: &DaemonId,
        labels: &Labels,
        cg: &super::cgroup::CgroupSnapshot,
        slow: bool,
        now: TimestampMs,
    ) -> Vec<Sample> {
        let mut out = Vec::with_capacity(7);
        let mut push = |metric: &'static str, kind: MetricKind, value: Option<f64>| {
            out.extend(value.and_then(|v| sample_of(daemon, labels, metric, kind, now, v)));
        };
        push(
            m::CGROUP_OOM_KILLS,
            MetricKind::Counter,
            cg.oom_kills.map(|v| v as f64),
        );
        if slow {
            self.pressure(&mut push, cg, now);
        }
        out
    }

    /// Pushes the pressure rates since the last reading of the pressure files, and keeps
    /// this one.
    fn pressure(
        &mut self,
        push: &mut impl FnMut(&'static str, MetricKind, Option<f64>),
        cg: &super::cgroup::CgroupSnapshot,
        now: TimestampMs,
    ) {
        if let Some((then, prev)) = &self.previous_pressure {
            let dt = (now - then) as f64 / 1000.0;
            if dt > 0.0 {
                pressure_rates(push, &cg.pressure, prev, dt);
            }
        }
        self.previous_pressure = Some((now, cg.pressure));
    }
}

/// Pushes the six pressure rates (fraction of the time since the previous reading).
#[cfg(unix)]
fn pressure_rates(
    push: &mut impl FnMut(&'static str, MetricKind, Option<f64>),
    now: &[super::cgroup::Pressure; 3],
    prev: &[super::cgroup::Pressure; 3],
    dt: f64,
) {
    let names = [
        (m::CGROUP_CPU_PRESSURE_SOME, m::CGROUP_CPU_PRESSURE_FULL),
        (
            m::CGROUP_MEMORY_PRESSURE_SOME,
            m::CGROUP_MEMORY_PRESSURE_FULL,
        ),
        (m::CGROUP_IO_PRESSURE_SOME, m::CGROUP_IO_PRESSURE_FULL),
    ];
    let rate = |a: Option<u64>, b: Option<u64>| Some(((a? as f64 - b? as f64) / 1e6 / dt).max(0.0));
    for ((some, full), (n, p)) in names.into_iter().zip(now.iter().zip(prev)) {
        push(some, MetricKind::Gauge, rate(n.some_us, p.some_us));
        push(full, MetricKind::Gauge, rate(n.full_us, p.full_us));
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::watcher::cgroup::{CgroupSnapshot, Pressure};
    use crate::watcher::probe::ProcState;

    fn main_snapshot() -> ProcSnapshot {
        ProcSnapshot {
            cpu_user_seconds: 1.0,
            cpu_system_seconds: 0.5,
            rss_bytes: 10,
            virtual_bytes: 100,
            threads: 2,
            state: ProcState::Sleeping,
            read_bytes: Some(1),
            write_bytes: Some(2),
            open_fds: Some(5),
            fd_limit: Some(1024),
            uptime_seconds: 3.0,
            ppid: 1,
            children_cpu_seconds: 0.0,
        }
    }

    /// A cgroup-read daemon's totals are the cgroup's, each figure in one series only (no
    /// `cgroup.*` twin), the walk's figures only at probes that walked, and rates from the
    /// second probe on.
    #[test]
    fn cgroup_totals_replace_the_tree_and_have_no_twins() {
        let (id, labels) = (DaemonId::new("d"), Labels::default());
        let mut cg = CgroupSnapshot {
            cpu_seconds: Some(10.0),
            memory_bytes: Some(4096),
            tasks: Some(7),
            processes: Some(3),
            oom_kills: Some(0),
            io: None,
            pressure: [Pressure {
                some_us: Some(0),
                full_us: Some(0),
            }; 3],
        };
        let walk = TreeTotals {
            cpu_seconds: 9.0,
            rss_bytes: 1,
            virtual_bytes: 300,
            read_bytes: Some(50),
            write_bytes: Some(60),
            threads: 6,
            open_fds: Some(12),
            nearest_fd_limit: (Some(5), Some(1024)),
            processes: 3,
            zombies: 0,
            capped: false,
        };
        let mut t = CgroupTracker::default();
        let first = t.samples(&id, &labels, &main_snapshot(), &cg, Some(&walk), true, 1000);
        let value = |s: &[Sample], metric: &str| {
            let found: Vec<f64> = s
                .iter()
                .filter(|x| x.series.metric.as_str() == metric)
                .map(|x| x.value)
                .collect();
            assert!(found.len() <= 1, "{metric} twice");
            found.first().copied()
        };
        assert_eq!(value(&first, m::PROCESS_CPU_TIME), Some(10.0));
        assert_eq!(value(&first, m::PROCESS_MEMORY_RSS), Some(4096.0));
        assert_eq!(value(&first, m::PROCESS_THREADS), Some(7.0));
        assert_eq!(value(&first, m::PROCESS_TREE_COUNT), Some(3.0));
        assert_eq!(value(&first, m::PROCESS_DISK_READ), Some(50.0));
        assert_eq!(value(&first, m::PROCESS_MEMORY_VIRTUAL), Some(300.0));
        assert_eq!(value(&first, m::PROCESS_MAIN_MEMORY_RSS), Some(10.0));
        assert_eq!(value(&first, m::PROCESS_CPU_UTILIZATION), None);
        for twin in [
            m::CGROUP_CPU_TIME,
            m::CGROUP_CPU_UTILIZATION,
            m::CGROUP_MEMORY,
            m::CGROUP_TASKS,
            m::CGROUP_PROCESSES,
        ] {
            assert_eq!(value(&first, twin), None, "{twin}");
        }
        // A probe that did not walk: no walk figures, no stale storage figures; CPU rate.
        cg.cpu_seconds = Some(10.5);
        cg.pressure[0].some_us = Some(250_000);
        let second = t.samples(&id, &labels, &main_snapshot(), &cg, None, true, 2000);
        assert_eq!(value(&second, m::PROCESS_CPU_UTILIZATION), Some(0.5));
        assert_eq!(value(&second, m::CGROUP_CPU_PRESSURE_SOME), Some(0.25));
        assert_eq!(value(&second, m::PROCESS_MEMORY_VIRTUAL), None);
        assert_eq!(value(&second, m::PROCESS_DISK_READ), None);
        assert_eq!(value(&second, m::PROCESS_OPEN_FDS), None);
        // With io.stat (read at the slow probes), storage comes from the cgroup.
        cg.io = Some((1000, 2000));
        let third = t.samples(&id, &labels, &main_snapshot(), &cg, None, false, 3000);
        assert_eq!(
            value(&third, m::CGROUP_CPU_PRESSURE_SOME),
            None,
            "not a slow probe"
        );
        assert_eq!(value(&third, m::PROCESS_DISK_WRITE), Some(2000.0));
        // The rate spans the two seconds since the last probe that had storage figures.
        assert_eq!(value(&third, m::PROCESS_DISK_READ_RATE), Some(475.0));
        assert_eq!(
            crate::watcher::cgroup::parse_io_stat(
                "8:0 rbytes=100 wbytes=20 rios=1 wios=2\n8:16 rbytes=5 wbytes=1 rios=0 wios=0\n"
            ),
            (105, 21)
        );
    }
}

/// A sample of the daemon's `metric` at `now`; nothing for a non-finite value.
fn sample_of(
    daemon: &DaemonId,
    labels: &Labels,
    metric: &'static str,
    kind: MetricKind,
    now: TimestampMs,
    value: f64,
) -> Option<Sample> {
    value.is_finite().then(|| Sample {
        series: SeriesKey::new(Source::Daemon(daemon.clone()), metric, labels.clone()),
        kind,
        ts_ms: now,
        value,
    })
}
