//! Turning probe snapshots into samples: counters, and rates between two probes. Plain logic.

use crate::metric_names as m;
use crate::types::{DaemonId, Labels, MetricKind, Sample, SeriesKey, Source, TimestampMs};

use super::tree::TreeSnapshot;

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
            if value.is_finite() {
                out.push(Sample {
                    series: SeriesKey::new(Source::Daemon(daemon.clone()), metric, labels.clone()),
                    kind,
                    ts_ms: now,
                    value,
                });
            }
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

/// Keeps the previous reading of one daemon's cgroup so rates can be computed.
#[cfg(unix)]
#[derive(Debug, Default)]
pub struct CgroupTracker {
    previous: Option<(TimestampMs, super::cgroup::CgroupSnapshot)>,
}

#[cfg(unix)]
impl CgroupTracker {
    /// The `cgroup.*` samples for one reading taken at `now`; rates (CPU, pressure) from the
    /// second reading on.
    pub fn samples(
        &mut self,
        daemon: &DaemonId,
        labels: &Labels,
        snap: &super::cgroup::CgroupSnapshot,
        now: TimestampMs,
    ) -> Vec<Sample> {
        let mut out = Vec::with_capacity(12);
        let mut push = |metric: &'static str, kind: MetricKind, value: Option<f64>| {
            if let Some(value) = value.filter(|v| v.is_finite()) {
                out.push(Sample {
                    series: SeriesKey::new(Source::Daemon(daemon.clone()), metric, labels.clone()),
                    kind,
                    ts_ms: now,
                    value,
                });
            }
        };
        let (g, c) = (MetricKind::Gauge, MetricKind::Counter);
        push(m::CGROUP_CPU_TIME, c, snap.cpu_seconds);
        push(m::CGROUP_MEMORY, g, snap.memory_bytes.map(|v| v as f64));
        push(m::CGROUP_TASKS, g, snap.tasks.map(|v| v as f64));
        push(m::CGROUP_PROCESSES, g, snap.processes.map(|v| v as f64));
        push(m::CGROUP_OOM_KILLS, c, snap.oom_kills.map(|v| v as f64));
        if let Some((then, prev)) = &self.previous {
            let dt = (now - then) as f64 / 1000.0;
            if dt > 0.0 {
                let rate = |a: Option<f64>, b: Option<f64>| Some(((a? - b?) / dt).max(0.0));
                push(
                    m::CGROUP_CPU_UTILIZATION,
                    g,
                    rate(snap.cpu_seconds, prev.cpu_seconds),
                );
                let names = [
                    (m::CGROUP_CPU_PRESSURE_SOME, m::CGROUP_CPU_PRESSURE_FULL),
                    (
                        m::CGROUP_MEMORY_PRESSURE_SOME,
                        m::CGROUP_MEMORY_PRESSURE_FULL,
                    ),
                    (m::CGROUP_IO_PRESSURE_SOME, m::CGROUP_IO_PRESSURE_FULL),
                ];
                let us = |v: Option<u64>| v.map(|v| v as f64 / 1e6);
                for ((some, full), (now_p, prev_p)) in names
                    .into_iter()
                    .zip(snap.pressure.iter().zip(&prev.pressure))
                {
                    push(some, g, rate(us(now_p.some_us), us(prev_p.some_us)));
                    push(full, g, rate(us(now_p.full_us), us(prev_p.full_us)));
                }
            }
        }
        self.previous = Some((now, snap.clone()));
        out
    }
}
