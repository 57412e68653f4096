//! Network byte counters per interface from `/proc/net/dev`, kept open and re-read with one
//! `pread` a sample (sysinfo opens several files per interface under `/sys/class/net` every
//! refresh: 60 % of the host sampler's CPU).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::types::Labels;

/// Most interfaces reported (a container host can have hundreds of veth pairs).
pub(super) const MAX_INTERFACES: usize = 64;

/// The kept-open `/proc/net/dev` and one label set per interface seen.
#[derive(Debug)]
pub(super) struct NetDev {
    file: File,
    buf: Vec<u8>,
    labels: Vec<(String, Labels)>,
}

/// One interface's totals.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Interface {
    /// `{interface="…"}`, the same `Arc` every sample.
    pub labels: Labels,
    /// Bytes received since boot.
    pub received: u64,
    /// Bytes transmitted since boot.
    pub transmitted: u64,
}

impl NetDev {
    /// Opens `/proc/net/dev`; `None` where it cannot be read (no procfs).
    pub(super) fn open() -> Option<NetDev> {
        let file = File::open("/proc/net/dev").ok()?;
        let mut me = NetDev {
            file,
            buf: vec![0; 16 * 1024],
            labels: Vec::new(),
        };
        me.read().map(|_| me)
    }

    /// Every interface's totals now, in the file's order; `None` when the read fails.
    pub(super) fn read(&mut self) -> Option<Vec<Interface>> {
        let mut len = 0;
        loop {
            let n = self.file.read_at(&mut self.buf[len..], len as u64).ok()?;
            len += n;
            if n == 0 {
                break;
            }
            if len == self.buf.len() {
                // Long file: grow and read on (bounded by the interface cap below anyway).
                if self.buf.len() >= 1 << 20 {
                    break;
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let text = std::str::from_utf8(&self.buf[..len]).ok()?;
        let mut out = Vec::new();
        for (name, received, transmitted) in parse(text).take(MAX_INTERFACES) {
            let labels = match self.labels.iter().find(|(n, _)| n == name) {
                Some((_, l)) => l.clone(),
                None => {
                    let l = Labels::from_pairs([("interface", name)]);
                    if self.labels.len() < MAX_INTERFACES * 2 {
                        self.labels.push((name.to_owned(), l.clone()));
                    }
                    l
                }
            };
            out.push(Interface {
                labels,
                received,
                transmitted,
            });
        }
        Some(out)
    }
}

/// `(interface, received bytes, transmitted bytes)` of every well-formed line of a
/// `/proc/net/dev` text; the two header lines and malformed lines are skipped.
pub(super) fn parse(text: &str) -> impl Iterator<Item = (&str, u64, u64)> {
    text.lines().filter_map(|line| {
        let (name, rest) = line.split_once(':')?;
        let name = name.trim();
        if name.is_empty() || name.contains('|') {
            return None;
        }
        let mut fields = rest.split_ascii_whitespace();
        let received = fields.next()?.parse().ok()?;
        // Receive has 8 fields; the first transmit field is the ninth.
        let transmitted = fields.nth(7)?.parse().ok()?;
        Some((name, received, transmitted))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's layout: two header lines, then one line per interface whose name is
    /// right-aligned and may run into the first number.
    #[test]
    fn parses_the_kernels_layout() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 2480161851 6740140    0    0    0     0          0         0 2480161851 6740140    0    0    0     0       0          0
  eth0:583269038   40098    0    0    0     0          0         0  2739543   29399    0    0    0     0       0          0
 broken: 12 13
";
        let got: Vec<_> = parse(text).collect();
        assert_eq!(
            got,
            vec![
                ("lo", 2_480_161_851, 2_480_161_851),
                ("eth0", 583_269_038, 2_739_543)
            ]
        );
    }

    /// This machine's file reads, names `lo`, and gives the same label `Arc` every read.
    #[test]
    fn reads_this_host() {
        let Some(mut dev) = NetDev::open() else {
            eprintln!("skipped: no /proc/net/dev here");
            return;
        };
        let first = dev.read().unwrap();
        let second = dev.read().unwrap();
        assert!(!first.is_empty());
        assert_eq!(first.len(), second.len());
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.labels, b.labels);
            assert!(b.received >= a.received && b.transmitted >= a.transmitted);
        }
        let names: Vec<String> = first.iter().map(|i| i.labels.to_text()).collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("\"lo\"") || n.contains("=lo")),
            "{names:?}"
        );
    }
}
