//! Turning probe snapshots into samples: counters, and rates between two probes. Plain logic.

use crate::metric_names as m;
use crate::types::{DaemonId, Labels, MetricKind, Sample, SeriesKey, Source, TimestampMs};

use super::probe::ProcSnapshot;

/// Keeps the previous snapshot of one daemon so rates can be computed.
#[derive(Debug, Default)]
pub struct RateTracker {
    previous: Option<(TimestampMs, f64, Option<u64>, Option<u64>)>,
}

impl RateTracker {
    /// The samples for one snapshot taken at `now`. The first snapshot after a (re)start
    /// yields counters but no rates: a rate needs two readings.
    pub fn samples(
        &mut self,
        daemon: &DaemonId,
        labels: &Labels,
        snap: &ProcSnapshot,
        now: TimestampMs,
    ) -> Vec<Sample> {
        let mut out = Vec::with_capacity(14);
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
        let cpu = snap.cpu_user_seconds + snap.cpu_system_seconds;
        push(m::PROCESS_CPU_TIME, c, cpu);
        if let Some((then, prev_cpu, prev_read, prev_write)) = self.previous {
            let dt = (now - then) as f64 / 1000.0;
            if dt > 0.0 {
                push(
                    m::PROCESS_CPU_UTILIZATION,
                    g,
                    ((cpu - prev_cpu) / dt).max(0.0),
                );
                if let (Some(r), Some(pr)) = (snap.read_bytes, prev_read) {
                    push(
                        m::PROCESS_DISK_READ_RATE,
                        g,
                        r.saturating_sub(pr) as f64 / dt,
                    );
                }
                if let (Some(w), Some(pw)) = (snap.write_bytes, prev_write) {
                    push(
                        m::PROCESS_DISK_WRITE_RATE,
                        g,
                        w.saturating_sub(pw) as f64 / dt,
                    );
                }
            }
        }
        self.previous = Some((now, cpu, snap.read_bytes, snap.write_bytes));
        push(m::PROCESS_MEMORY_RSS, g, snap.rss_bytes as f64);
        push(m::PROCESS_MEMORY_VIRTUAL, g, snap.virtual_bytes as f64);
        if let Some(r) = snap.read_bytes {
            push(m::PROCESS_DISK_READ, c, r as f64);
        }
        if let Some(w) = snap.write_bytes {
            push(m::PROCESS_DISK_WRITE, c, w as f64);
        }
        push(m::PROCESS_THREADS, g, snap.threads as f64);
        if let Some(n) = snap.open_fds {
            push(m::PROCESS_OPEN_FDS, g, n as f64);
        }
        if let Some(n) = snap.fd_limit {
            push(m::PROCESS_FD_LIMIT, g, n as f64);
        }
        push(m::PROCESS_UPTIME, g, snap.uptime_seconds);
        push(m::PROCESS_STATE, g, snap.state.code());
        out
    }
}
