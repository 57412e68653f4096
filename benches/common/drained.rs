//! What the recorder benches (hot_path, facades) share: a recorder whose channel a bare thread drains, so
//! a figure is what the caller pays when its sample is accepted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use perfvisor::SystemClock;
use perfvisor_actors::recorder::{self, RawSample};
use perfvisor_actors::telemetry::RecorderStats;

/// A recorder whose channel a bare thread drains; dropping it stops the thread.
pub struct Drained {
    /// The recorder under test.
    pub rec: recorder::Recorder,
    /// Its counters (drained, dropped).
    #[allow(dead_code)]
    pub stats: Arc<RecorderStats>,
    stop: Arc<AtomicBool>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Drained {
    /// A recorder on the system clock with room for 64 Ki samples, and its drain thread.
    pub fn new() -> Self {
        let stats = Arc::new(RecorderStats::default());
        let (rec, rx) = recorder::channel(1 << 16, Arc::new(SystemClock), stats.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (until, counts) = (stop.clone(), stats.clone());
        let drain = Some(std::thread::spawn(move || {
            drain_until(&rx, &until, &counts)
        }));
        Drained {
            drain,
            rec,
            stats,
            stop,
        }
    }
}

/// Empties `rx` every 200 µs until `stop` is set, counting what it took in `stats.drained`
/// (so a bench can say which share of its calls were accepted rather than dropped).
fn drain_until(rx: &Receiver<RawSample>, stop: &AtomicBool, stats: &RecorderStats) {
    while !stop.load(Ordering::Relaxed) {
        let n = rx.try_iter().count() as u64;
        stats.drained.fetch_add(n, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(200));
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.drain.take().map(std::thread::JoinHandle::join);
    }
}
