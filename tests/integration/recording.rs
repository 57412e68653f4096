//! The hot path and shutdown.

use crate::support;

/// With the recorder channel full, `record` returns false at once and the drop is counted
/// in status(); accepted + dropped equals what was recorded.
#[tokio::test]
async fn full_channel_drops_and_counts() {
    let t = support::start(|b| b.recorder_capacity(1));
    let rec = t.pv.recorder();
    let n = 200_000u64;
    let mut refused = 0u64;
    for i in 0..n {
        if !rec.record("test.flood", i as f64) {
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "a channel of one sample must overflow under a tight loop"
    );
    let status = t.pv.status().await.unwrap();
    assert_eq!(status.recorder.dropped, refused);
    assert_eq!(status.recorder.accepted + status.recorder.dropped, n);
    t.pv.shutdown().await.unwrap();
    assert_eq!(support::stored_count(&t.db(), "test.flood"), n - refused);
}

/// N samples recorded (gauges, counters, profiled operations), then shutdown(): all N are
/// in the SQLite file.
#[tokio::test]
async fn shutdown_stores_every_accepted_sample() {
    // 40,000 samples in a tight loop: a channel that holds them all, so none is refused.
    let t = support::start(|b| b.recorder_capacity(65_536));
    let rec = t.pv.recorder();
    let n = 20_000;
    for i in 0..n {
        assert!(rec.record("test.latency_seconds", i as f64 / 1e6));
        assert!(rec.increment("test.requests", 1.0));
    }
    for _ in 0..100 {
        let mut trace = rec.profile("ingest");
        trace.add_metric("files_processed", 3.0);
    }
    t.pv.shutdown().await.unwrap();
    assert!(
        t.pv.status().await.is_err(),
        "calls after shutdown are refused"
    );
    let db = t.db();
    assert_eq!(support::stored_count(&db, "test.latency_seconds"), n);
    assert_eq!(support::stored_count(&db, "test.requests"), n);
    assert_eq!(
        support::stored_count(&db, "app.operation.ingest.files_processed"),
        100
    );
    // The counter's last stored value is its total.
    let reader = perfvisor::StorageReader::open(&db).unwrap();
    let (key, _) = reader
        .series()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.metric.as_str() == "test.requests")
        .unwrap();
    let points = reader.query_range(&key, i64::MIN, i64::MAX).unwrap();
    assert_eq!(points.last().unwrap().1, n as f64);
    // Operation durations are a histogram: shutdown closed its interval, whose running
    // count holds every operation.
    let (key, _) = reader
        .series()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.metric.as_str() == "app.operation.ingest.duration_seconds.count")
        .unwrap();
    let points = reader.query_range(&key, i64::MIN, i64::MAX).unwrap();
    assert_eq!(points.last().unwrap().1, 100.0);
}

/// The handle is `Clone + Send + Sync` and works from another thread's runtime.
#[test]
fn handle_is_send_sync_clone() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<perfvisor::Perfvisor>();
    assert_traits::<perfvisor::Recorder>();
}
