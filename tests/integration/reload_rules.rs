//! Rules users can see and reload: `perfvisor rules` lists built-ins, config rules and what
//! is switched off; a rule removed from the config file stops firing after `perfvisor
//! reload`, which says what changed in words.

use std::time::{Duration, Instant};

use crate::support::Instance;

/// A threshold rule on perfvisor's own storage queue that always holds (queue ≥ 0).
fn always(name: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\nkind = \"threshold\"\nmetric = \"perfvisor.storage.queue.count\"\nabove = -1\n\n"
    )
}

/// A config silence that matches nothing here.
fn silence(id: &str) -> String {
    format!("[[silence]]\nid = \"{id}\"\nmatchers = {{ rule = \"nothing_{id}\" }}\nduration = \"1h\"\n\n")
}

fn firing_rules(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["rule"].as_str().map(str::to_string))
        .collect()
}

/// A rule removed from the config file stops firing after `reload` (its alert resolved, a
/// rule kept keeps firing), `reload` names the removed and changed rules, and `rules` shows
/// a built-in switched off by `enabled = false` with its origin.
#[test]
fn removed_rule_stops_firing_after_reload() {
    let mut pv = Instance::new();
    let extra = "host_interval = \"200ms\"";
    pv.write_config(
        extra,
        &format!("{}{}{}", always("api_cpu"), always("kept"), silence("old")),
    );
    pv.start();
    let cli = |args: &[&str]| pv.cli(args);
    let started = Instant::now();
    loop {
        let out = cli(&["alerts", "--json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let rules = firing_rules(&v);
            if rules.contains(&"api_cpu".into()) && rules.contains(&"kept".into()) {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    pv.write_config(
        extra,
        &format!(
            "{}{}[[rule]]\nname = \"high_cpu\"\nenabled = false\n",
            always("kept"),
            silence("new")
        ),
    );
    let out = cli(&["reload"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("removed api_cpu"), "{said}");
    assert!(said.contains("changed high_cpu"), "{said}");
    assert!(said.contains("config silences replaced: new"), "{said}");
    assert!(
        !said.contains("ConfigDiff") && !said.contains('{'),
        "no Debug rendering: {said}"
    );

    // Several self-metric rounds later the removed rule still does not fire; the kept one does.
    let since = Instant::now();
    while since.elapsed() < Duration::from_millis(1500) {
        let out = cli(&["alerts", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rules = firing_rules(&v);
        assert!(!rules.contains(&"api_cpu".into()), "{rules:?}");
        assert!(rules.contains(&"kept".into()), "{rules:?}");
        std::thread::sleep(Duration::from_millis(300));
    }

    let out = cli(&["silence", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["new"], "the config's silences are replaced");

    let out = cli(&["rules", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str| {
        v.as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == name)
            .cloned()
    };
    assert!(find("api_cpu").is_none());
    let cpu = find("high_cpu").expect("high_cpu listed");
    assert_eq!(
        (cpu["origin"].as_str(), cpu["enabled"].as_bool()),
        (Some("config"), Some(false))
    );
    let storage = find("perfvisor_storage_failing").expect("perfvisor's own rule listed");
    assert_eq!(storage["origin"], "built_in");
    let table = String::from_utf8_lossy(&cli(&["rules"]).stdout).to_string();
    assert!(
        table.contains("app_anomaly") && table.contains("built-in"),
        "{table}"
    );

    pv.terminate();
}

/// A rule removed from the config while perfvisor was down: its firing alert, restored
/// from the database, is resolved at the next start with a message saying why, not left
/// firing forever.
#[tokio::test]
async fn firing_alert_of_a_rule_removed_while_down_resolves_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perfvisor.db");
    let builder = || {
        perfvisor::Perfvisor::builder()
            .database(&db)
            .host_interval(Duration::from_millis(500))
            .default_rules(false)
    };
    let slow = perfvisor::ThresholdRule::above("slow_search", "search.latency_seconds", 0.5);
    let pv = builder().config_rules(vec![slow]).start().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    pv.on_alert(move |a| {
        let _ = tx.send(a.clone());
    })
    .await
    .unwrap();
    pv.recorder()
        .for_daemon("searcher")
        .record("search.latency_seconds", 0.9);
    let fired = rx.recv_timeout(Duration::from_secs(30)).expect("fires");
    assert_eq!(fired.state, perfvisor::AlertState::Firing);
    pv.shutdown().await.unwrap();

    let pv = builder().start().unwrap();
    assert!(pv.firing_alerts().await.unwrap().is_empty());
    // The resolution is made when the dispatcher restores its state, which may come before
    // any subscriber of this new engine: read it from the alert history, where every
    // delivered notification is kept.
    let started = std::time::Instant::now();
    let resolved = loop {
        pv.flush().await.unwrap();
        let history = pv.reader().unwrap().alerts(0, i64::MAX).unwrap();
        if let Some(a) = history
            .into_iter()
            .find(|a| a.state == perfvisor::AlertState::Resolved)
        {
            break a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "resolution of the orphaned alert"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resolved.rule, "slow_search");
    assert_eq!(resolved.state, perfvisor::AlertState::Resolved);
    assert!(
        resolved.message.contains("the rule was removed"),
        "{}",
        resolved.message
    );
    assert_eq!(resolved.since_ms, fired.since_ms);
    pv.shutdown().await.unwrap();
}
