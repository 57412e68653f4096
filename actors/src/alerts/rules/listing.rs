//! The rules as listed to people (`perfvisor rules`, the API): each with its origin and
//! whether it is switched off.

use serde::{Deserialize, Serialize};

use crate::types::Severity;

use super::*;

/// Where a rule in the running set comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOrigin {
    /// Shipped with perfvisor ([`builtin_rules`]), as shipped.
    BuiltIn,
    /// From the config file (a rule named like a built-in replaces it).
    Config,
    /// Added by the embedding host.
    Host,
}

impl RuleOrigin {
    /// `built-in`, `config`, `host`.
    pub fn word(self) -> &'static str {
        match self {
            RuleOrigin::BuiltIn => "built-in",
            RuleOrigin::Config => "config",
            RuleOrigin::Host => "host",
        }
    }
}

/// One rule as `perfvisor rules` and `GET /api/v1/rules` show it: the rule itself and its
/// settings in words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// The rule's name.
    pub name: String,
    /// `threshold`, `rate`, `absent`, `restart_rate` or `signal`.
    pub kind: String,
    /// What it watches, in words (condition and selector).
    pub watches: String,
    /// Its timing in words (`for 5 min, cooldown 15 min`), or `—`.
    pub timing: String,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Where it comes from.
    pub origin: RuleOrigin,
    /// False when switched off.
    pub enabled: bool,
    /// The rule.
    pub rule: ThresholdRule,
}

impl RuleInfo {
    /// The description of `rule`.
    pub fn of(rule: &ThresholdRule, origin: RuleOrigin) -> RuleInfo {
        let (kind, what) = match &rule.condition {
            Condition::Threshold {
                comparison,
                raise,
                clear,
            } => (
                "threshold",
                if clear == raise {
                    format!("{} {}", comparison.word(), num(*raise))
                } else {
                    format!(
                        "{} {} (clears {} {})",
                        comparison.word(),
                        num(*raise),
                        comparison.clear_word(),
                        num(*clear)
                    )
                },
            ),
            Condition::RateOfChange {
                comparison,
                raise,
                window,
                ..
            } => (
                "rate",
                format!(
                    "change {} {}/s over {}",
                    comparison.word(),
                    num(*raise),
                    human(*window)
                ),
            ),
            Condition::Absence { after } => ("absent", format!("no sample for {}", human(*after))),
            Condition::RestartRate { count, window } => (
                "restart_rate",
                format!("{count} restarts or exits within {}", human(*window)),
            ),
            Condition::Signal { name } => ("signal", format!("signal {name}")),
        };
        let s = &rule.selector;
        let mut scope = Vec::new();
        if let Some(m) = &s.metric {
            scope.push(m.clone());
        }
        if let Some(k) = s.source {
            scope.push(
                match k {
                    SourceKind::Host => "host",
                    SourceKind::Perfvisor => "perfvisor",
                    SourceKind::Daemon => "daemons",
                }
                .to_string(),
            );
        }
        if let Some(d) = &s.daemon {
            scope.push(format!("daemon {d}"));
        }
        if let Some(p) = &s.project {
            scope.push(format!("project {p}"));
        }
        for (k, v) in &s.labels {
            scope.push(format!("{k}={v}"));
        }
        if !s.exclude_metric_prefixes.is_empty() {
            scope.push(format!(
                "not {}",
                s.exclude_metric_prefixes
                    .iter()
                    .map(|p| format!("{p}*"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let watches = if scope.is_empty() {
            what
        } else {
            format!("{what} on {}", scope.join(", "))
        };
        let mut timing = Vec::new();
        for (word, d) in [
            ("for", rule.for_duration),
            ("clear_for", rule.clear_for),
            ("cooldown", rule.cooldown),
        ] {
            if !d.is_zero() {
                timing.push(format!("{word} {}", human(d)));
            }
        }
        if let Some(d) = rule.repeat_interval {
            timing.push(format!("repeat {}", human(d)));
        }
        if let Some(f) = rule.flap {
            timing.push(format!(
                "flap {} changes in {}",
                f.max_flips,
                human(f.window)
            ));
        }
        RuleInfo {
            name: rule.name.clone(),
            kind: kind.into(),
            watches,
            timing: if timing.is_empty() {
                "—".into()
            } else {
                timing.join(", ")
            },
            severity: rule.severity,
            origin,
            enabled: rule.enabled,
            rule: rule.clone(),
        }
    }
}

/// The running rule set with origins: [`effective_rules`] of the host's and the config's
/// rules, each tagged with where it comes from.
pub fn listed_rules(
    host: &[ThresholdRule],
    config: &[ThresholdRule],
    defaults: bool,
) -> Vec<RuleInfo> {
    let user: Vec<ThresholdRule> = host.iter().chain(config).cloned().collect();
    effective_rules(&user, defaults)
        .iter()
        .map(|r| {
            let origin = if config.iter().any(|c| c.name == r.name) {
                RuleOrigin::Config
            } else if host.iter().any(|h| h.name == r.name) {
                RuleOrigin::Host
            } else {
                RuleOrigin::BuiltIn
            };
            RuleInfo::of(r, origin)
        })
        .collect()
}
