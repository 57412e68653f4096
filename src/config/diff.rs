//! What a reload changes: a pure comparison of the old and new [`Config`], so only what
//! changed is restarted (like vector's `config::diff`).

use std::collections::BTreeMap;

use super::{AttachConfig, Config, DaemonConfig};

/// The differences between two configs. Names are in the new file's order (removed ones
/// in the old file's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// `[[daemon]]`s only in the new config: start them.
    pub daemons_added: Vec<String>,
    /// `[[daemon]]`s only in the old config: stop them.
    pub daemons_removed: Vec<String>,
    /// `[[daemon]]`s in both whose settings differ (command, environment, checks, labels...):
    /// restart them.
    pub daemons_changed: Vec<String>,
    /// `[[attach]]`es only in the new config.
    pub attach_added: Vec<String>,
    /// `[[attach]]`es only in the old config.
    pub attach_removed: Vec<String>,
    /// `[[attach]]`es in both whose settings differ.
    pub attach_changed: Vec<String>,
    /// The `[[rule]]` list differs (any rule added, removed, changed or reordered).
    pub rules_changed: bool,
    /// The `[[sink]]` list differs.
    pub sinks_changed: bool,
    /// The `[[silence]]` list differs.
    pub silences_changed: bool,
    /// `[supervisor]` and `[api]` keys whose values differ (`database`, `listen`,
    /// `retention.raw`, `token`, `api.read_token`...). The engine and the API server are built from these, so any entry means
    /// a full restart of perfvisor's engine (managed daemons may keep running).
    pub supervisor_changed: Vec<String>,
}

impl ConfigDiff {
    /// True when the configs are equivalent: nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }
}

/// Names added, removed and changed between two named lists.
fn named<T: PartialEq>(
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let old_by_name: BTreeMap<&str, &T> = old.iter().map(|x| (name(x), x)).collect();
    let new_by_name: BTreeMap<&str, &T> = new.iter().map(|x| (name(x), x)).collect();
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for x in new {
        match old_by_name.get(name(x)) {
            None => added.push(name(x).to_owned()),
            Some(o) if *o != x => changed.push(name(x).to_owned()),
            Some(_) => {}
        }
    }
    let removed = old
        .iter()
        .filter(|x| !new_by_name.contains_key(name(x)))
        .map(|x| name(x).to_owned())
        .collect();
    (added, removed, changed)
}

/// Compares two configs.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let (daemons_added, daemons_removed, daemons_changed) =
        named(&old.daemons, &new.daemons, |d: &DaemonConfig| d.name());
    let (attach_added, attach_removed, attach_changed) =
        named(&old.attached, &new.attached, |a: &AttachConfig| &a.name);
    let (o, n) = (&old.supervisor, &new.supervisor);
    let mut supervisor_changed = Vec::new();
    let mut note = |key: &str, differs: bool| {
        if differs {
            supervisor_changed.push(key.to_owned());
        }
    };
    note("database", o.database != n.database);
    note("probe_interval", o.probe_interval != n.probe_interval);
    note("host_interval", o.host_interval != n.host_interval);
    note("judge_interval", o.judge_interval != n.judge_interval);
    note("listen", o.listen != n.listen);
    note("token", o.token != n.token);
    note("retention.raw", o.retention.raw != n.retention.raw);
    note("retention.hourly", o.retention.hourly != n.retention.hourly);
    note("retention.daily", o.retention.daily != n.retention.daily);
    note("retention.events", o.retention.events != n.retention.events);
    note("retention.alerts", o.retention.alerts != n.retention.alerts);
    note(
        "max_database_size",
        o.max_database_size != n.max_database_size,
    );
    note("default_rules", o.default_rules != n.default_rules);
    // The API server is built from `[api]` at start: a rotated token needs a restart, and
    // the reload says so rather than leaving the old one silently valid.
    let (a, b) = (&old.api, &new.api);
    note("api.read_token", a.read_token != b.read_token);
    note("api.push_token", a.push_token != b.push_token);
    note(
        "api.anonymous_loopback_reads",
        a.anonymous_loopback_reads != b.anonymous_loopback_reads,
    );
    note("api.allowed_hosts", a.allowed_hosts != b.allowed_hosts);
    note("api.otlp_*_attribute", a.otlp != b.otlp);
    note(
        "api.max_connections",
        a.max_connections != b.max_connections,
    );
    ConfigDiff {
        daemons_added,
        daemons_removed,
        daemons_changed,
        attach_added,
        attach_removed,
        attach_changed,
        rules_changed: old.alert_rules != new.alert_rules,
        sinks_changed: old.alert_sinks != new.alert_sinks,
        silences_changed: old.silence_specs != new.silence_specs,
        supervisor_changed,
    }
}
