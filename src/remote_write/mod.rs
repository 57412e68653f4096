//! Prometheus remote-write (protocol 1.0) to the endpoints of `[[remote_write]]`, from a
//! durable cursor into perfvisor's own history.
//!
//! It lives in the root crate rather than among the actors because it is a consumer of the
//! stored history, like the HTTP API: it reads through read-only connections, names series
//! with the same sanitiser as `/metrics` (`crate::http`), and needs no message from any
//! actor. Each remote runs on a thread of its own (blocking HTTP, blocking SQLite), so a
//! slow or absent remote never holds up the engine.
//!
//! - `proto`: the protobuf messages and the snappy body.
//! - `send`: one request, what its answer means, the backoff.
//! - `shipper`: the cursor, the forward read, pacing, counters and self-metrics.

mod proto;
mod send;
mod shipper;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use perfvisor_actors::alerts::SourceKind;
use perfvisor_actors::metric_names as names;
use perfvisor_actors::storage::StorageStats;
use perfvisor_actors::telemetry::RemoteWriteStatus;

use crate::config::RemoteWriteConfig;
use crate::{Severity, ThresholdRule};

pub use proto::{decode, encode, Label, Sample, TimeSeries, WriteRequest};
pub use send::{classify, retry_after, Backoff, Class, PROTOCOL_VERSION};
pub use shipper::{build_request, series_labels, Publisher, SETTLE};

/// Name of the alert raised while a remote loses samples to raw retention.
pub const EXPIRED_RULE: &str = "perfvisor_remote_write_expired";

/// `perfvisor_remote_write_expired`: samples passed raw retention before they could be
/// shipped to a remote within the last hour. Critical: that history is now missing in the
/// central store for good.
pub fn expired_rule() -> ThresholdRule {
    ThresholdRule::above(EXPIRED_RULE, names::PERFVISOR_REMOTE_WRITE_EXPIRED, 0.0)
        .on_source(SourceKind::Perfvisor)
        .severity(Severity::Critical)
        .recommend(
            "A remote-write endpoint was unreachable (or too slow) for longer than raw \
             retention; see perfvisor status for its last error, and raise \
             [supervisor.retention] raw or max_samples_per_second.",
        )
}

/// One shipper: its counters, its stop flag and its thread (until joined).
type Running = (
    Arc<shipper::Stats>,
    Arc<shipper::Stop>,
    Option<JoinHandle<()>>,
);

/// The running shippers, one per remote.
pub struct RemoteWriters {
    shippers: Vec<Running>,
}

impl std::fmt::Debug for RemoteWriters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriters")
            .field("remotes", &self.shippers.len())
            .finish()
    }
}

impl RemoteWriters {
    /// Starts one shipper thread per remote on `database` (which perfvisor's storage writer
    /// has created). `raw_retention` is the raw tier's retention; `publish` receives the
    /// self-metrics every few seconds; `writer` is the counters of the storage writer
    /// filling `database` when it runs in this process (the shippers then wait for what it
    /// has not committed yet).
    pub fn start(
        database: &Path,
        remotes: &[RemoteWriteConfig],
        raw_retention: Duration,
        publish: Option<Publisher>,
        writer: Option<Arc<StorageStats>>,
    ) -> std::io::Result<Self> {
        let mut shippers = Vec::new();
        for remote in remotes {
            let stats = Arc::new(shipper::Stats::new(&remote.name, &remote.url));
            let stop = Arc::new(shipper::Stop::default());
            let s = shipper::Shipper {
                remote: remote.clone(),
                database: database.to_path_buf(),
                raw_retention,
                stats: Arc::clone(&stats),
                stop: Arc::clone(&stop),
                publish: publish.clone(),
                writer: writer.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("perfvisor-rw-{}", remote.name))
                .spawn(move || s.run())?;
            shippers.push((stats, stop, Some(thread)));
        }
        Ok(RemoteWriters { shippers })
    }

    /// Each remote's status, in config order.
    pub fn status(&self) -> Vec<RemoteWriteStatus> {
        self.shippers.iter().map(|s| s.0.status()).collect()
    }

    /// Stops every shipper and waits for them: a request in flight finishes (bounded by
    /// the remote's `timeout`) and its cursor is saved; a retry wait is cut short.
    pub fn stop(&mut self) {
        for s in &self.shippers {
            s.1.stop();
        }
        for s in &mut self.shippers {
            if let Some(t) = s.2.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for RemoteWriters {
    fn drop(&mut self) {
        self.stop();
    }
}
