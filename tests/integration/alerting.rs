//! Alerts reach host actors and closures, through a rule with `for`.

use std::time::Duration;

use perfvisor::{AlertState, Severity, ThresholdRule};

use crate::support::{self, wait_for};

/// A threshold rule on an app metric fires to a host actor and a closure, and resolves;
/// a subscriber whose actor is gone does not stop delivery to the others.
#[tokio::test]
async fn alerts_reach_actors_and_closures() {
    let rule = ThresholdRule::above("slow_search", "search.latency_seconds", 0.5)
        .severity(Severity::Critical)
        .recommend("Cache query results.");
    let t = support::start(|b| b.rule(rule));
    let dead = support::dead_recipient();
    let (recipient, log) = support::recording_sink();
    let (tx, rx) = std::sync::mpsc::channel();
    t.pv.subscribe_alerts(dead).await.unwrap();
    t.pv.subscribe_alerts(recipient).await.unwrap();
    t.pv.on_alert(move |a| {
        let _ = tx.send(a.clone());
    })
    .await
    .unwrap();
    let rec = t.pv.recorder().for_daemon("searcher");
    rec.record("search.latency_seconds", 0.1);
    rec.record("search.latency_seconds", 0.9);
    let fired = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("firing via closure");
    assert_eq!(fired.state, AlertState::Firing);
    assert_eq!(fired.value, 0.9);
    assert_eq!(fired.daemon.as_ref().map(|d| d.as_str()), Some("searcher"));
    assert_eq!(
        fired.recommendations,
        vec!["Cache query results.".to_string()]
    );
    rec.record("search.latency_seconds", 0.2);
    let resolved = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("resolved via closure");
    assert_eq!(resolved.state, AlertState::Resolved);
    wait_for(Duration::from_secs(5), "actor got both", || async {
        log.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(t.pv.firing_alerts().await.unwrap().len(), 0);
    let status = t.pv.status().await.unwrap();
    assert!(
        status.alert_delivery_failures >= 1,
        "the dead subscriber's failure is counted"
    );
    t.pv.shutdown().await.unwrap();
    let reader = perfvisor::StorageReader::open(t.db()).unwrap();
    assert_eq!(reader.alerts(i64::MIN, i64::MAX).unwrap().len(), 2);
}

/// When the history database refuses writes, perfvisor keeps running: status reports the
/// block and the buffered samples, the critical `perfvisor_storage_failing` alert fires,
/// its own metrics show the block, and once writes succeed again the alert resolves and
/// the buffered samples are stored.
#[tokio::test]
async fn storage_failure_raises_and_resolves_an_alert() {
    let t = support::start(|b| b.host_interval(Duration::from_millis(100)));
    let (tx, rx) = std::sync::mpsc::channel();
    t.pv.on_alert(move |a| {
        if a.rule == perfvisor::STORAGE_FAILING_RULE {
            let _ = tx.send(a.clone());
        }
    })
    .await
    .unwrap();
    t.pv.inject_storage_fault(perfvisor::StorageFault::ReadOnly)
        .unwrap();
    let rec = t.pv.recorder().for_daemon("app");
    rec.record("request.latency_seconds", 0.1);
    let fired = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("storage alert fires");
    assert_eq!(fired.state, AlertState::Firing);
    assert_eq!(fired.severity, Severity::Critical);
    assert!(fired.message.contains("cannot write"), "{}", fired.message);
    let status = t.pv.status().await.unwrap();
    assert!(status.storage.write_blocked.is_some(), "{status:?}");
    // One pipeline: the alert is in the firing set (API, Alertmanager re-sends) and makes
    // perfvisor degraded, saying why.
    let firing = t.pv.firing_alerts().await.unwrap();
    assert!(
        firing
            .iter()
            .any(|a| a.rule == perfvisor::STORAGE_FAILING_RULE),
        "{firing:?}"
    );
    assert_eq!(status.health, perfvisor::Health::Degraded);
    assert!(
        status
            .health_reasons
            .iter()
            .any(|r| r.contains("cannot write")),
        "{:?}",
        status.health_reasons
    );
    assert!(
        t.pv.flush().await.is_err(),
        "a flush cannot succeed while writes fail"
    );

    t.pv.inject_storage_fault(perfvisor::StorageFault::Clear)
        .unwrap();
    let resolved = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("storage alert resolves");
    assert_eq!(resolved.state, AlertState::Resolved);
    t.pv.flush().await.unwrap();
    let status = t.pv.status().await.unwrap();
    assert_eq!(status.storage.write_blocked, None);
    assert_eq!(status.storage.buffered_samples, 0);
    assert_eq!(status.health, perfvisor::Health::Healthy, "{status:?}");
    assert!(t.pv.firing_alerts().await.unwrap().is_empty());
    let reader = t.pv.reader().unwrap();
    let latency = perfvisor::SeriesSelector::all().metric("request.latency_seconds");
    let stored = reader
        .query(&perfvisor::Query::new(latency, i64::MIN / 2, i64::MAX / 2))
        .unwrap();
    assert_eq!(
        stored.len(),
        1,
        "the sample recorded while blocked is stored"
    );
    // perfvisor's own metrics recorded the block (1) and its end (0).
    let blocked = perfvisor::SeriesSelector::all()
        .source(perfvisor::Source::Perfvisor)
        .metric(perfvisor::metric_names::PERFVISOR_STORAGE_BLOCKED);
    let history = reader
        .query(&perfvisor::Query::new(blocked, i64::MIN / 2, i64::MAX / 2))
        .unwrap();
    let values: Vec<f64> = history[0].samples.iter().map(|s| s.1).collect();
    assert!(
        values.contains(&1.0) && values.last() == Some(&0.0),
        "{values:?}"
    );
    t.pv.shutdown().await.unwrap();
}
