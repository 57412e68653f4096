//! Threshold rules and their per-series state machines. Plain logic: time comes in as `now`.
//!
//! A rule watches one metric, on one daemon or on every source that has it. Per
//! (rule, series) the state moves inactive → pending (the condition holds) → firing (it has
//! held for `for`) → inactive again when it stops holding, which sends a resolved notice.
//! `cooldown` is the least time between two firing notifications of the same
//! (rule, series): a rule that fires again sooner is still tracked as firing, but neither
//! that firing nor its resolution is sent.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{
    Alert, AlertState, DaemonId, MetricBatch, SeriesKey, Severity, Source, TimestampMs,
};

/// Which side of the threshold is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Values above the threshold are bad.
    Above,
    /// Values below the threshold are bad.
    Below,
}

/// A threshold rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdRule {
    /// Unique name (`high_cpu`).
    pub name: String,
    /// The metric it watches.
    pub metric: String,
    /// Only this daemon's series; `None` for every source that has the metric.
    pub daemon: Option<DaemonId>,
    /// Bad side.
    pub comparison: Comparison,
    /// The threshold.
    pub threshold: f64,
    /// How long the condition must hold before firing.
    pub for_duration: Duration,
    /// Least time between two firing notifications of one series.
    pub cooldown: Duration,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Remediation steps attached to its alerts.
    pub recommendations: Vec<String>,
}

impl ThresholdRule {
    /// A rule that fires when `metric` is above `threshold`; no `for`, no cooldown,
    /// severity warning.
    pub fn above(name: impl Into<String>, metric: impl Into<String>, threshold: f64) -> Self {
        ThresholdRule {
            name: name.into(),
            metric: metric.into(),
            daemon: None,
            comparison: Comparison::Above,
            threshold,
            for_duration: Duration::ZERO,
            cooldown: Duration::ZERO,
            severity: Severity::Warning,
            recommendations: Vec::new(),
        }
    }
    /// Like [`ThresholdRule::above`], for values below the threshold.
    pub fn below(name: impl Into<String>, metric: impl Into<String>, threshold: f64) -> Self {
        ThresholdRule {
            comparison: Comparison::Below,
            ..Self::above(name, metric, threshold)
        }
    }
    /// Restricts the rule to one daemon.
    pub fn for_daemon(mut self, id: impl Into<DaemonId>) -> Self {
        self.daemon = Some(id.into());
        self
    }
    /// Sets how long the condition must hold before firing.
    pub fn for_duration(mut self, d: Duration) -> Self {
        self.for_duration = d;
        self
    }
    /// Sets the cooldown between two firing notifications.
    pub fn cooldown(mut self, d: Duration) -> Self {
        self.cooldown = d;
        self
    }
    /// Sets the severity.
    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }
    /// Adds a recommendation.
    pub fn recommend(mut self, r: impl Into<String>) -> Self {
        self.recommendations.push(r.into());
        self
    }
    /// True when the rule applies to `series`.
    pub fn matches(&self, series: &SeriesKey) -> bool {
        series.metric.as_str() == self.metric
            && match &self.daemon {
                None => true,
                Some(id) => series.source.daemon() == Some(id),
            }
    }
    /// True when `value` is on the bad side.
    pub fn breached(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Above => value > self.threshold,
            Comparison::Below => value < self.threshold,
        }
    }
}

/// The state of one (rule, series).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RuleState {
    /// The condition does not hold.
    Inactive,
    /// The condition holds since `since`, not yet for long enough.
    Pending {
        /// When it started to hold.
        since: TimestampMs,
    },
    /// Firing since `since`; `notified` is false when cooldown held the notification back.
    Firing {
        /// When the condition started to hold.
        since: TimestampMs,
        /// Whether subscribers were told.
        notified: bool,
    },
}

#[derive(Debug)]
struct Tracked {
    state: RuleState,
    last_notified: Option<TimestampMs>,
}

/// All rules and their states.
#[derive(Debug, Default)]
pub struct RuleEngine {
    rules: Vec<ThresholdRule>,
    states: HashMap<(usize, SeriesKey), Tracked>,
}

impl RuleEngine {
    /// An engine with these rules.
    pub fn new(rules: Vec<ThresholdRule>) -> Self {
        RuleEngine {
            rules,
            states: HashMap::new(),
        }
    }

    /// Adds a rule; a rule with the same name replaces the old one (and its states).
    pub fn add(&mut self, rule: ThresholdRule) {
        if let Some(i) = self.rules.iter().position(|r| r.name == rule.name) {
            self.rules[i] = rule;
            self.states.retain(|(idx, _), _| *idx != i);
        } else {
            self.rules.push(rule);
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[ThresholdRule] {
        &self.rules
    }

    /// The state of one (rule, series).
    pub fn state(&self, rule: &str, series: &SeriesKey) -> RuleState {
        self.rules
            .iter()
            .position(|r| r.name == rule)
            .and_then(|i| self.states.get(&(i, series.clone())))
            .map(|t| t.state)
            .unwrap_or(RuleState::Inactive)
    }

    /// Feeds every sample of a batch, in order; returns the notifications to send.
    pub fn evaluate(&mut self, batch: &MetricBatch) -> Vec<Alert> {
        let mut out = Vec::new();
        for s in &batch.samples {
            for i in 0..self.rules.len() {
                if self.rules[i].matches(&s.series) {
                    if let Some(a) = self.observe(i, &s.series, s.value, s.ts_ms) {
                        out.push(a);
                    }
                }
            }
        }
        out
    }

    /// Feeds one observation of `series` to rule `index` at `now`.
    pub fn observe(
        &mut self,
        index: usize,
        series: &SeriesKey,
        value: f64,
        now: TimestampMs,
    ) -> Option<Alert> {
        let rule = self.rules.get(index)?;
        if !value.is_finite() {
            return None;
        }
        let breached = rule.breached(value);
        let key = (index, series.clone());
        if !breached && !self.states.contains_key(&key) {
            return None;
        }
        let tracked = self.states.entry(key).or_insert(Tracked {
            state: RuleState::Inactive,
            last_notified: None,
        });
        let for_ms = rule.for_duration.as_millis() as i64;
        let cooldown_ms = rule.cooldown.as_millis() as i64;
        let (next, notice) = match (tracked.state, breached) {
            (RuleState::Inactive, true) | (RuleState::Pending { .. }, true) => {
                let since = match tracked.state {
                    RuleState::Pending { since } => since,
                    _ => now,
                };
                if now - since >= for_ms {
                    let notify = tracked
                        .last_notified
                        .is_none_or(|last| now - last >= cooldown_ms);
                    if notify {
                        tracked.last_notified = Some(now);
                    }
                    (
                        RuleState::Firing {
                            since,
                            notified: notify,
                        },
                        notify.then_some((AlertState::Firing, since)),
                    )
                } else {
                    (RuleState::Pending { since }, None)
                }
            }
            (RuleState::Firing { since, notified }, false) => (
                RuleState::Inactive,
                notified.then_some((AlertState::Resolved, since)),
            ),
            (state @ RuleState::Firing { .. }, true) => (state, None),
            (_, false) => (RuleState::Inactive, None),
        };
        tracked.state = next;
        notice.map(|(state, since)| build_alert(rule, series, state, value, since, now))
    }
}

fn build_alert(
    rule: &ThresholdRule,
    series: &SeriesKey,
    state: AlertState,
    value: f64,
    since: TimestampMs,
    now: TimestampMs,
) -> Alert {
    let daemon = match &series.source {
        Source::Daemon(id) => Some(id.clone()),
        _ => None,
    };
    let side = match rule.comparison {
        Comparison::Above => "above",
        Comparison::Below => "below",
    };
    let who = daemon
        .as_ref()
        .map(|d| format!("daemon {d}"))
        .unwrap_or_else(|| series.source.to_string());
    let message = match state {
        AlertState::Firing => format!(
            "{}: {} of {} is {} ({} threshold {})",
            rule.name, rule.metric, who, value, side, rule.threshold
        ),
        AlertState::Resolved => format!(
            "{} resolved: {} of {} is back to {} (threshold {})",
            rule.name, rule.metric, who, value, rule.threshold
        ),
    };
    Alert {
        rule: rule.name.clone(),
        series: series.clone(),
        daemon,
        project: series.labels.get("project").map(str::to_string),
        severity: rule.severity,
        state,
        value,
        threshold: rule.threshold,
        since_ms: since,
        at_ms: now,
        message,
        recommendations: rule.recommendations.clone(),
        auto_actionable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Labels, MetricKind, Sample};

    fn series() -> SeriesKey {
        SeriesKey::new(Source::Daemon("d".into()), "cpu", Labels::empty())
    }

    fn feed(e: &mut RuleEngine, points: &[(i64, f64)]) -> Vec<(i64, AlertState)> {
        let batch = MetricBatch {
            samples: points
                .iter()
                .map(|&(t, v)| Sample {
                    series: series(),
                    kind: MetricKind::Gauge,
                    ts_ms: t,
                    value: v,
                })
                .collect(),
        };
        e.evaluate(&batch)
            .into_iter()
            .map(|a| (a.at_ms, a.state))
            .collect()
    }

    /// `for` is exact on a manual clock: fires at since + for, not a millisecond earlier.
    #[test]
    fn for_duration_is_exact() {
        let mut e = RuleEngine::new(vec![
            ThresholdRule::above("hot", "cpu", 0.9).for_duration(Duration::from_secs(10))
        ]);
        assert!(feed(&mut e, &[(0, 1.0), (5_000, 1.0), (9_999, 1.0)]).is_empty());
        assert_eq!(e.state("hot", &series()), RuleState::Pending { since: 0 });
        assert_eq!(
            feed(&mut e, &[(10_000, 1.0)]),
            vec![(10_000, AlertState::Firing)]
        );
        assert!(
            feed(&mut e, &[(11_000, 1.0)]).is_empty(),
            "no repeat while firing"
        );
        assert_eq!(
            feed(&mut e, &[(12_000, 0.5)]),
            vec![(12_000, AlertState::Resolved)]
        );
    }

    /// A dip below the threshold while pending restarts the `for` period.
    #[test]
    fn pending_resets_on_dip() {
        let mut e = RuleEngine::new(vec![
            ThresholdRule::above("hot", "cpu", 0.9).for_duration(Duration::from_secs(10))
        ]);
        assert!(feed(
            &mut e,
            &[(0, 1.0), (9_000, 0.1), (10_000, 1.0), (19_000, 1.0)]
        )
        .is_empty());
        assert_eq!(
            feed(&mut e, &[(20_000, 1.0)]),
            vec![(20_000, AlertState::Firing)]
        );
    }

    /// Cooldown holds back a second firing (and its resolution) within the cooldown, and
    /// lets the next one through exactly when it has elapsed.
    #[test]
    fn cooldown_is_exact() {
        let mut e = RuleEngine::new(vec![
            ThresholdRule::above("hot", "cpu", 0.9).cooldown(Duration::from_secs(60))
        ]);
        assert_eq!(feed(&mut e, &[(0, 1.0)]), vec![(0, AlertState::Firing)]);
        assert_eq!(
            feed(&mut e, &[(1_000, 0.0)]),
            vec![(1_000, AlertState::Resolved)]
        );
        assert!(feed(&mut e, &[(59_999, 1.0), (60_500, 0.0)]).is_empty());
        assert_eq!(
            feed(&mut e, &[(61_000, 1.0)]),
            vec![(61_000, AlertState::Firing)]
        );
    }

    /// A rule scoped to one daemon ignores the others; NaN never fires.
    #[test]
    fn scoping_and_nan() {
        let mut e = RuleEngine::new(vec![
            ThresholdRule::above("hot", "cpu", 0.9).for_daemon("other")
        ]);
        assert!(feed(&mut e, &[(0, 1.0)]).is_empty());
        let mut e = RuleEngine::new(vec![ThresholdRule::above("hot", "cpu", 0.9)]);
        assert!(feed(&mut e, &[(0, f64::NAN)]).is_empty());
    }
}
