//! Silences: matchers with a time span that keep matching alerts from being delivered
//! (they are still tracked and kept in history, marked as silenced). Created through the
//! API or config, and automatically while the host restarts a daemon on purpose.

use serde::{Deserialize, Serialize};

use crate::types::{Alert, TimestampMs};

/// One `name = value` condition on an alert.
///
/// Names: `rule`, `daemon`, `project`, `severity` (`info`, `warning`, `critical`),
/// `metric`, `source` (`host`, `perfvisor`, `daemon:ID`), or the key of one of the series'
/// labels. A value ending in `*` matches every value starting with what precedes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// What is compared.
    pub name: String,
    /// The value it must have.
    pub value: String,
}

impl Matcher {
    /// `name = value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            value: value.into(),
        }
    }

    fn matches(&self, alert: &Alert) -> bool {
        let actual: Option<String> = match self.name.as_str() {
            "rule" => Some(alert.rule.clone()),
            "daemon" => alert.daemon.as_ref().map(|d| d.as_str().to_string()),
            "project" => alert.project.clone(),
            "severity" => Some(alert.severity.to_string()),
            "metric" => Some(alert.series.metric.as_str().to_string()),
            "source" => Some(alert.series.source.as_text().into_owned()),
            label => alert.series.labels.get(label).map(str::to_string),
        };
        let Some(actual) = actual else {
            return false;
        };
        match self.value.strip_suffix('*') {
            Some(prefix) => actual.starts_with(prefix),
            None => actual == self.value,
        }
    }
}

/// A silence: every matcher must match, between `starts_ms` and `ends_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Unique id (chosen by the creator, or generated).
    pub id: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// From (inclusive).
    pub starts_ms: TimestampMs,
    /// Until (exclusive).
    pub ends_ms: TimestampMs,
    /// Who created it (`api`, `config`, `perfvisor: planned restart`).
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No matcher: a silence must not mute everything by accident.
    #[error("silence {id:?} has no matcher; give at least one (e.g. daemon=indexer)")]
    NoMatcher {
        /// The silence.
        id: String,
    },
    /// A matcher with an empty name or value.
    #[error("silence {id:?}: matcher {name:?}={value:?} needs a non-empty name and value")]
    EmptyMatcher {
        /// The silence.
        id: String,
        /// The matcher's name.
        name: String,
        /// The matcher's value.
        value: String,
    },
    /// It ends before it starts.
    #[error("silence {id:?} ends at {ends_ms} before it starts at {starts_ms}; the end must come after the start")]
    BadSpan {
        /// The silence.
        id: String,
        /// Start.
        starts_ms: TimestampMs,
        /// End.
        ends_ms: TimestampMs,
    },
    /// The id is empty.
    #[error("a silence needs a non-empty id")]
    EmptyId,
    /// The alert dispatcher failed while adding it (it restarts from its spec and the
    /// database); nothing was added.
    #[error(
        "silence {id:?} was not added: the alert dispatcher failed and is restarting; try again"
    )]
    Unavailable {
        /// The silence.
        id: String,
    },
}

impl Silence {
    /// Checks the silence; the error names what is wrong.
    pub fn validate(&self) -> Result<(), SilenceError> {
        if self.id.trim().is_empty() {
            return Err(SilenceError::EmptyId);
        }
        if self.matchers.is_empty() {
            return Err(SilenceError::NoMatcher {
                id: self.id.clone(),
            });
        }
        if let Some(m) = self
            .matchers
            .iter()
            .find(|m| m.name.trim().is_empty() || m.value.is_empty())
        {
            return Err(SilenceError::EmptyMatcher {
                id: self.id.clone(),
                name: m.name.clone(),
                value: m.value.clone(),
            });
        }
        if self.ends_ms <= self.starts_ms {
            return Err(SilenceError::BadSpan {
                id: self.id.clone(),
                starts_ms: self.starts_ms,
                ends_ms: self.ends_ms,
            });
        }
        Ok(())
    }

    /// In force at `now`.
    pub fn active(&self, now: TimestampMs) -> bool {
        self.starts_ms <= now && now < self.ends_ms
    }

    /// Every matcher matches the alert.
    pub fn matches(&self, alert: &Alert) -> bool {
        self.matchers.iter().all(|m| m.matches(alert))
    }
}

/// The silences in force or to come.
#[derive(Clone, Debug, Default)]
pub struct Silences {
    list: Vec<Silence>,
}

impl Silences {
    /// Adds (or replaces, by id) a silence after validating it.
    pub fn add(&mut self, silence: Silence) -> Result<(), SilenceError> {
        silence.validate()?;
        self.list.retain(|s| s.id != silence.id);
        self.list.push(silence);
        Ok(())
    }

    /// Removes a silence; true when it existed.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|s| s.id != id);
        before != self.list.len()
    }

    /// Drops the silences that ended before `now`; returns their ids.
    pub fn expire(&mut self, now: TimestampMs) -> Vec<String> {
        let (gone, kept): (Vec<Silence>, Vec<Silence>) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|s| s.ends_ms <= now);
        self.list = kept;
        gone.into_iter().map(|s| s.id).collect()
    }

    /// The id of the first silence in force that matches the alert.
    pub fn silenced_by(&self, alert: &Alert, now: TimestampMs) -> Option<&str> {
        self.list
            .iter()
            .find(|s| s.active(now) && s.matches(alert))
            .map(|s| s.id.as_str())
    }

    /// All silences.
    pub fn all(&self) -> &[Silence] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AlertState, DaemonId, Labels, SeriesKey, Severity, Source};

    fn alert(daemon: &str, rule: &str) -> Alert {
        Alert {
            rule: rule.into(),
            series: SeriesKey::new(
                Source::Daemon(DaemonId::new(daemon)),
                "process.cpu.utilization_ratio",
                Labels::from_pairs([("project", "ws1")]),
            ),
            daemon: Some(DaemonId::new(daemon)),
            project: Some("ws1".into()),
            severity: Severity::Warning,
            state: AlertState::Firing,
            value: 1.0,
            threshold: 0.9,
            since_ms: 0,
            at_ms: 0,
            message: String::new(),
            recommendations: Vec::new(),
            auto_actionable: false,
        }
    }

    fn silence(id: &str, matchers: Vec<Matcher>, starts: i64, ends: i64) -> Silence {
        Silence {
            id: id.into(),
            matchers,
            starts_ms: starts,
            ends_ms: ends,
            created_by: "test".into(),
            comment: String::new(),
        }
    }

    /// Matchers on daemon, rule prefix, severity, source and labels; the span is [start, end).
    #[test]
    fn matching_and_span() {
        let mut s = Silences::default();
        s.add(silence(
            "a",
            vec![
                Matcher::new("daemon", "idx"),
                Matcher::new("rule", "bottleneck.*"),
            ],
            100,
            200,
        ))
        .unwrap();
        assert_eq!(
            s.silenced_by(&alert("idx", "bottleneck.cpu_bound"), 150),
            Some("a")
        );
        assert_eq!(s.silenced_by(&alert("idx", "high_cpu"), 150), None);
        assert_eq!(
            s.silenced_by(&alert("other", "bottleneck.cpu_bound"), 150),
            None
        );
        assert_eq!(
            s.silenced_by(&alert("idx", "bottleneck.cpu_bound"), 200),
            None
        );
        assert_eq!(
            s.silenced_by(&alert("idx", "bottleneck.cpu_bound"), 99),
            None
        );
        s.add(silence(
            "b",
            vec![
                Matcher::new("project", "ws1"),
                Matcher::new("severity", "warning"),
                Matcher::new("source", "daemon:*"),
            ],
            0,
            1000,
        ))
        .unwrap();
        assert_eq!(s.silenced_by(&alert("z", "x"), 500), Some("b"));
        assert_eq!(s.expire(250), vec!["a".to_string()]);
        assert!(s.remove("b") && s.all().is_empty());
    }

    /// Bad silences are refused with a message naming the problem.
    #[test]
    fn bad_silences_are_refused() {
        let mut s = Silences::default();
        let err = s.add(silence("x", vec![], 0, 10)).unwrap_err();
        assert!(err.to_string().contains("no matcher"), "{err}");
        let err = s
            .add(silence("x", vec![Matcher::new("daemon", "d")], 10, 10))
            .unwrap_err();
        assert!(err.to_string().contains("before it starts"), "{err}");
        let err = s
            .add(silence("x", vec![Matcher::new("", "d")], 0, 10))
            .unwrap_err();
        assert!(err.to_string().contains("non-empty"), "{err}");
    }
}
