//! Host metrics (CPU, memory, swap, load, disk I/O, file system use per mount point,
//! network per interface) through sysinfo, and network through a kept-open
//! `/proc/net/dev` on Linux.

use std::collections::BTreeSet;

use sysinfo::{DiskRefreshKind, Disks, Networks, System};

use crate::metric_names as m;
use crate::types::{Labels, MetricKind, Sample, SeriesKey, Source, TimestampMs};

/// Most mount points reported (containers can list hundreds).
const MAX_MOUNTS: usize = 32;

/// File system use is re-read (one `statvfs` per mount) at every this many samples and
/// repeated between: it moves slowly, and the per-mount reads were a fifth of the host
/// sampler's CPU. Disk I/O is read every sample.
const FILESYSTEM_EVERY: u64 = 10;

/// Samples the host. Keeps sysinfo's state between calls so CPU usage is a delta.
pub struct HostSampler {
    system: Option<System>,
    networks: Option<Networks>,
    #[cfg(target_os = "linux")]
    netdev: Option<super::netdev::NetDev>,
    disks: Option<Disks>,
    /// `(labels, used, total)` per mount from the last file-system read.
    filesystems: Vec<(Labels, u64, u64)>,
    samples: u64,
    primed: bool,
}

impl std::fmt::Debug for HostSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSampler")
            .field("primed", &self.primed)
            .finish()
    }
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl HostSampler {
    /// A sampler; a part sysinfo cannot read on this platform is skipped, not fatal.
    pub fn new() -> Self {
        let system = System::new().ok();
        #[cfg(target_os = "linux")]
        let netdev = super::netdev::NetDev::open();
        #[cfg(target_os = "linux")]
        let networks = match netdev {
            Some(_) => None,
            None => Networks::new_with_refreshed_list().ok(),
        };
        #[cfg(not(target_os = "linux"))]
        let networks = Networks::new_with_refreshed_list().ok();
        let disks = Disks::new_with_refreshed_list_specifics(
            DiskRefreshKind::nothing().with_io_usage().with_storage(),
        )
        .ok();
        HostSampler {
            system,
            networks,
            #[cfg(target_os = "linux")]
            netdev,
            disks,
            filesystems: Vec::new(),
            samples: 0,
            primed: false,
        }
    }

    /// Reads the host now and returns its samples. The first call yields no CPU
    /// utilisation: it needs two readings.
    pub fn sample(&mut self, now: TimestampMs) -> Vec<Sample> {
        let mut out = Vec::with_capacity(24);
        let mut push = |metric: &'static str, kind: MetricKind, value: f64, labels: Labels| {
            if value.is_finite() {
                out.push(Sample {
                    series: SeriesKey::new(Source::Host, metric, labels),
                    kind,
                    ts_ms: now,
                    value,
                });
            }
        };
        let gauge = MetricKind::Gauge;
        let counter = MetricKind::Counter;
        if let Some(sys) = self.system.as_mut() {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            if self.primed {
                push(
                    m::SYSTEM_CPU_UTILIZATION,
                    gauge,
                    f64::from(sys.global_cpu_usage()) / 100.0,
                    Labels::empty(),
                );
            }
            push(
                m::SYSTEM_CPU_COUNT,
                gauge,
                sys.cpus().len() as f64,
                Labels::empty(),
            );
            push(
                m::SYSTEM_MEMORY_USED,
                gauge,
                sys.used_memory() as f64,
                Labels::empty(),
            );
            push(
                m::SYSTEM_MEMORY_TOTAL,
                gauge,
                sys.total_memory() as f64,
                Labels::empty(),
            );
            push(
                m::SYSTEM_MEMORY_AVAILABLE,
                gauge,
                sys.available_memory() as f64,
                Labels::empty(),
            );
            push(
                m::SYSTEM_SWAP_USED,
                gauge,
                sys.used_swap() as f64,
                Labels::empty(),
            );
        }
        if let Ok(load) = System::load_average() {
            push(m::SYSTEM_LOAD_1M, gauge, load.one, Labels::empty());
            push(m::SYSTEM_LOAD_5M, gauge, load.five, Labels::empty());
            push(m::SYSTEM_LOAD_15M, gauge, load.fifteen, Labels::empty());
        }
        let filesystems_due = self.samples.is_multiple_of(FILESYSTEM_EVERY);
        self.samples += 1;
        if let Some(disks) = self.disks.as_mut() {
            let kind = DiskRefreshKind::nothing().with_io_usage();
            disks.refresh_specifics(
                true,
                if filesystems_due {
                    kind.with_storage()
                } else {
                    kind
                },
            );
            // Several mounts can share one device; count each device once.
            let mut seen = BTreeSet::new();
            let (mut read, mut written) = (0u64, 0u64);
            for disk in disks.iter() {
                if seen.insert(disk.name()) {
                    let u = disk.usage();
                    read = read.saturating_add(u.total_read_bytes);
                    written = written.saturating_add(u.total_written_bytes);
                }
            }
            if filesystems_due {
                let old = std::mem::take(&mut self.filesystems);
                let mut mounts = BTreeSet::new();
                for disk in disks.iter() {
                    let total = disk.total_space();
                    // Pseudo file systems have no size; the label set stays bounded.
                    if total == 0 || mounts.len() >= MAX_MOUNTS {
                        continue;
                    }
                    let mount = disk.mount_point().to_string_lossy();
                    if !mounts.insert(mount.clone()) {
                        continue;
                    }
                    // The same label `Arc` as last time when the mount is still there.
                    let labels = old
                        .iter()
                        .find(|(l, _, _)| l.get("mountpoint") == Some(mount.as_ref()))
                        .map(|(l, _, _)| l.clone())
                        .unwrap_or_else(|| {
                            Labels::from_pairs([("mountpoint", mount.clone().into_owned())])
                        });
                    let used = total.saturating_sub(disk.available_space());
                    self.filesystems.push((labels, used, total));
                }
            }
            for (labels, used, total) in &self.filesystems {
                push(
                    m::SYSTEM_FILESYSTEM_USED,
                    gauge,
                    *used as f64,
                    labels.clone(),
                );
                push(
                    m::SYSTEM_FILESYSTEM_TOTAL,
                    gauge,
                    *total as f64,
                    labels.clone(),
                );
            }
            push(m::SYSTEM_DISK_READ, counter, read as f64, Labels::empty());
            push(
                m::SYSTEM_DISK_WRITE,
                counter,
                written as f64,
                Labels::empty(),
            );
        }
        #[cfg(target_os = "linux")]
        if let Some(interfaces) = self.netdev.as_mut().and_then(|d| d.read()) {
            for i in interfaces {
                push(
                    m::SYSTEM_NETWORK_RECEIVE,
                    counter,
                    i.received as f64,
                    i.labels.clone(),
                );
                push(
                    m::SYSTEM_NETWORK_TRANSMIT,
                    counter,
                    i.transmitted as f64,
                    i.labels,
                );
            }
        }
        if let Some(networks) = self.networks.as_mut() {
            networks.refresh(true);
            for (name, data) in networks.iter() {
                let iface = name.to_string_lossy().into_owned();
                let labels = Labels::from_pairs([("interface", iface)]);
                push(
                    m::SYSTEM_NETWORK_RECEIVE,
                    counter,
                    data.total_received() as f64,
                    labels.clone(),
                );
                push(
                    m::SYSTEM_NETWORK_TRANSMIT,
                    counter,
                    data.total_transmitted() as f64,
                    labels,
                );
            }
        }
        self.primed = true;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host sampler reports memory on the first call and CPU from the second on.
    #[test]
    fn samples_host() {
        let mut h = HostSampler::new();
        let first = h.sample(1);
        let has = |v: &[Sample], name: &str| v.iter().any(|s| s.series.metric.as_str() == name);
        assert!(has(&first, m::SYSTEM_MEMORY_TOTAL));
        assert!(!has(&first, m::SYSTEM_CPU_UTILIZATION));
        std::thread::sleep(std::time::Duration::from_millis(250));
        let second = h.sample(2);
        let cpu = second
            .iter()
            .find(|s| s.series.metric.as_str() == m::SYSTEM_CPU_UTILIZATION)
            .expect("cpu utilisation on the second sample");
        assert!((0.0..=1.0).contains(&cpu.value), "{}", cpu.value);
    }

    /// File systems are read at the first sample and repeated (same labels, same figures)
    /// until the next file-system read; network counters come every sample.
    #[test]
    fn file_systems_repeat_between_reads_and_network_comes_every_sample() {
        let mut h = HostSampler::new();
        let of = |v: &[Sample], name: &str| -> Vec<(String, f64)> {
            v.iter()
                .filter(|s| s.series.metric.as_str() == name)
                .map(|s| (s.series.labels.to_text(), s.value))
                .collect()
        };
        let first = h.sample(1);
        let fs = of(&first, m::SYSTEM_FILESYSTEM_TOTAL);
        assert!(!fs.is_empty(), "no file system on this host");
        for i in 2..=FILESYSTEM_EVERY {
            let next = h.sample(i as i64);
            assert_eq!(of(&next, m::SYSTEM_FILESYSTEM_TOTAL), fs, "sample {i}");
            assert_eq!(
                of(&next, m::SYSTEM_FILESYSTEM_USED).len(),
                fs.len(),
                "sample {i}"
            );
            let received = of(&next, m::SYSTEM_NETWORK_RECEIVE);
            assert!(
                received.iter().any(|(l, _)| l.contains("lo")),
                "no loopback in {received:?}"
            );
        }
    }
}
