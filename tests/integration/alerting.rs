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
    rec.observe("search.latency_seconds", 0.1);
    rec.observe("search.latency_seconds", 0.9);
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
    rec.observe("search.latency_seconds", 0.2);
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
