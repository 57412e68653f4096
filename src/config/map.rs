//! From a [`Config`] to the embedding API's types: the builder's settings, rules, sinks,
//! silences and retention, and daemon specs for the watchers.

use crate::{
    DaemonSpec, Matcher, PerfvisorBuilder, Retention, Silence, SinkConfig, ThresholdRule,
    TimestampMs,
};

use super::{AttachConfig, Config, DaemonConfig, SilenceEnd};

impl Config {
    /// The `[[rule]]`s, in file order.
    pub fn rules(&self) -> Vec<ThresholdRule> {
        self.alert_rules.clone()
    }

    /// The `[[sink]]`s with their names, in file order.
    pub fn sinks(&self) -> Vec<(String, SinkConfig)> {
        self.alert_sinks.clone()
    }

    /// The `[[silence]]`s as of `now_ms`: a silence without `starts` starts now, and one
    /// with a `duration` ends that long after its start.
    pub fn silences(&self, now_ms: TimestampMs) -> Vec<Silence> {
        self.silence_specs
            .iter()
            .map(|s| {
                let starts_ms = s.starts.unwrap_or(now_ms);
                let ends_ms = match s.ends {
                    SilenceEnd::At(t) => t,
                    SilenceEnd::After(d) => {
                        starts_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    }
                };
                Silence {
                    id: s.id.clone(),
                    matchers: s
                        .matchers
                        .iter()
                        .map(|(k, v)| Matcher::new(k.clone(), v.clone()))
                        .collect(),
                    starts_ms,
                    ends_ms,
                    created_by: perfvisor_actors::alerts::CONFIG_SILENCE.into(),
                    comment: s.comment.clone(),
                }
            })
            .collect()
    }

    /// `[supervisor.retention]`.
    pub fn retention(&self) -> Retention {
        self.supervisor.retention
    }

    /// Sets the builder's database, intervals, retention, size cap, default rules, the config
    /// rules ([`PerfvisorBuilder::config_rules`]) and sinks. Daemons, the API server and
    /// silences are the binary's to handle.
    pub fn apply(&self, builder: PerfvisorBuilder) -> PerfvisorBuilder {
        let s = &self.supervisor;
        let mut b = builder
            .database(s.database.clone())
            .probe_interval(s.probe_interval)
            .host_interval(s.host_interval)
            .judge_interval(s.judge_interval)
            .judge_config(self.judgement.clone())
            .retention(s.retention)
            .max_database_bytes(s.max_database_size)
            .default_rules(s.default_rules);
        b = b.config_rules(self.rules());
        for (name, sink) in self.sinks() {
            b = b.sink(name, sink);
        }
        b
    }
}

impl DaemonConfig {
    /// The watcher spec of this daemon running as `pid`.
    pub fn spec(&self, pid: u32) -> DaemonSpec {
        spec(self.name(), pid, self.project.as_deref(), &self.labels)
    }
}

impl AttachConfig {
    /// The watcher spec of this daemon found as `pid`.
    pub fn spec(&self, pid: u32) -> DaemonSpec {
        spec(&self.name, pid, self.project.as_deref(), &self.labels)
    }
}

fn spec(
    name: &str,
    pid: u32,
    project: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
) -> DaemonSpec {
    let mut spec = DaemonSpec::new(name, pid);
    if let Some(p) = project {
        spec = spec.project(p);
    }
    for (k, v) in labels {
        spec = spec.label(k.clone(), v.clone());
    }
    spec
}
