//! Helpers shared by the storage tests: temp files, sample batches, alerts and failure hooks
//! that record or hold the writer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::{FailureHook, StorageFailure};
use crate::types::{
    Alert, AlertState, DaemonId, Labels, MetricBatch, MetricKind, Sample, SeriesKey, Severity,
    Source,
};

/// A fresh temp dir and a database path inside it (the file does not exist yet).
pub(crate) fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("perfvisor.db");
    (dir, path)
}

/// `len` samples of the host gauge `metric`, at `start..start+len` ms with value = ts.
pub(crate) fn batch(metric: &str, start: i64, len: i64) -> Arc<MetricBatch> {
    let key = SeriesKey::new(Source::Host, metric.to_string(), Labels::empty());
    Arc::new(MetricBatch {
        samples: (start..start + len)
            .map(|ts| Sample {
                series: key.clone(),
                kind: MetricKind::Gauge,
                ts_ms: ts,
                value: ts as f64,
            })
            .collect(),
    })
}

/// `len` samples spread over 10 labelled daemon series, like a collector's batch.
pub(crate) fn multi_series_batch(ts_ms: i64, len: usize) -> Arc<MetricBatch> {
    let keys: Vec<SeriesKey> = (0..10)
        .map(|i| {
            SeriesKey::new(
                Source::Daemon(DaemonId::new(format!("daemon-{i}"))),
                "process.memory.usage_bytes",
                Labels::from_pairs([("project", "bench")]),
            )
        })
        .collect();
    Arc::new(MetricBatch {
        samples: (0..len)
            .map(|i| Sample {
                series: keys[i % keys.len()].clone(),
                kind: MetricKind::Gauge,
                ts_ms: ts_ms + (i / keys.len()) as i64,
                value: i as f64 * 1.5,
            })
            .collect(),
    })
}

/// A firing alert produced at `at_ms`.
pub(crate) fn sample_alert(at_ms: i64) -> Alert {
    Alert {
        rule: "high_memory".to_string(),
        series: SeriesKey::new(
            Source::Daemon(DaemonId::new("indexer")),
            "process.memory.usage_bytes",
            Labels::from_pairs([("project", "ws1")]),
        ),
        daemon: Some(DaemonId::new("indexer")),
        project: Some("ws1".to_string()),
        severity: Severity::Warning,
        state: AlertState::Firing,
        value: 2.5e9,
        threshold: 2e9,
        since_ms: at_ms - 60_000,
        at_ms,
        message: "indexer uses 2.5 GB".to_string(),
        recommendations: vec!["check the cache size".to_string()],
        auto_actionable: false,
    }
}

/// A failure hook asking for no backoff.
pub(crate) fn zero_hook() -> FailureHook {
    Arc::new(|_| Duration::ZERO)
}

/// A failure hook that records every failure and asks for no backoff.
pub(crate) fn recording_hook() -> (FailureHook, Arc<Mutex<Vec<StorageFailure>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let hook: FailureHook = Arc::new(move |failure| {
        log.lock().expect("test lock").push(failure);
        Duration::ZERO
    });
    (hook, seen)
}

/// A failure hook that signals `entered` and then holds the writer until the returned gate
/// sender is dropped: a way to keep the writer busy without sleeping.
pub(crate) fn gated_hook() -> (FailureHook, Receiver<()>, Sender<()>) {
    let (entered_tx, entered_rx) = unbounded();
    let (gate_tx, gate_rx) = bounded::<()>(0);
    let hook: FailureHook = Arc::new(move |_| {
        let _ = entered_tx.send(());
        let _ = gate_rx.recv();
        Duration::ZERO
    });
    (hook, entered_rx, gate_tx)
}
