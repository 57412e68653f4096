//! The alert rule engine (v2): rules, their selectors and conditions, and the per-(rule,
//! series) state machines that turn samples, lifecycle events and analyzer candidates into
//! [`Notification`]s. Plain logic: no actix, no threads, no I/O; time always comes in as
//! `now` (milliseconds), so every timer is exact on a manual clock.
//!
//! Here: the rule model, its builder and validation. Beside it: `engine.rs` (the state of
//! every (rule, series) pair and the entry points), `eval.rs` (one step of a state machine),
//! `text.rs` (what an alert says), `defaults.rs` (the built-in rules), `listing.rs` (rules as
//! listed to people) and `tests.rs`.
//!
//! # Rules
//!
//! A rule ([`ThresholdRule`], the general rule type despite its historical name) has a
//! [`Condition`], a [`Selector`] saying which series it watches, timing options and what its
//! notifications carry (severity, recommendations, an optional [`RuleAction`]).
//!
//! Conditions:
//! - **threshold** — the sample value beyond a *raise* level raises, at or inside a *clear*
//!   level clears (hysteresis; default clear = raise). Between the two nothing changes for a
//!   firing alert, but a pending one goes back to inactive: `for` needs the raise condition
//!   without a break.
//! - **rate of change** — the same on the change per second of the series, measured from its
//!   own samples over `window` (newest sample against the newest one at least `window` older;
//!   no verdict until the series has a full window; a counter reset restarts the window).
//! - **absence** — no (non-NaN) sample of a selected series for `after`: it raises at
//!   last sample + `after` (seen by [`RuleEngine::tick`]), the next sample clears. Only
//!   series seen at least once are watched; a daemon the host stops (`Stopped` lifecycle
//!   event) is forgotten, resolving its absence alerts.
//! - **restart rate** — at least `count` `Restarted`/`Exited` lifecycle events of a daemon
//!   within `window` (inclusive). Its series is `daemon:<id>/lifecycle.restarts`.
//! - **signal** — follows the candidates named `name` (`bottleneck.<kind>`,
//!   `anomaly.<metric>`, `perfvisor.storage_failing`), or every candidate with a prefix when
//!   `name` is `prefix.*` (`anomaly.*`): a firing candidate raises, a resolved one clears, so
//!   trend, time-to-threshold and anomaly verdicts and perfvisor's own trouble get the same
//!   treatment as any rule. The selector applies to the candidate's series (its metric,
//!   source, labels) and project. This is the only way a candidate becomes an alert: one
//!   that no enabled rule follows makes no notification.
//!
//! Selectors: exact metric, metric prefixes to leave out, one daemon (or all), project (the
//! `project` label), labels (all pairs must match), source kind (host, perfvisor, any
//! daemon). A host rule is a rule with [`SourceKind::Host`]. A disabled rule
//! (`enabled = false`) is kept and listed but never evaluated.
//!
//! [`RuleEngine::replace`] swaps the whole set (a reload): unchanged rules keep their
//! states; a removed, changed or switched-off rule's announced firing alert is resolved with
//! a message saying why, and its states dropped.
//!
//! # State machine, per (rule, series)
//!
//! ```text
//!            raise            held for `for`             clear held for `clear_for`
//! inactive ────────▶ pending ───────────────▶ firing ──────────────────────────────▶ resolved
//!    ▲                  │ no raise                │ ▲ clear stops holding: timer restarts   │
//!    └──────────────────┘                         └─┘                                        │
//!    ▲───────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! - `for_duration` (`for`): how long the raise condition must hold before firing. The
//!   alert's `since_ms` is the start of that pending period; it stays the same through
//!   repeats, flap holds and engine restarts ([`RuleEngine::snapshot`]/[`RuleEngine::restore`]).
//! - `clear_for`: how long the clear condition must hold before a firing alert resolves.
//! - `cooldown`: the least time between two firing notifications of one (rule, series). A
//!   firing held back by cooldown is tracked (it is in [`RuleEngine::firing`]) but neither it
//!   nor its resolution is sent, and it is not sent later either.
//! - `repeat_interval`: a still-firing, announced alert is sent again at exactly
//!   fired + k·interval (by `tick`), with [`Notification::repeat`] set.
//! - `flap` ([`FlapDamping`]): when a (rule, series) changes state (fires or resolves) more
//!   than `max_flips` times within `window`, it is held firing and marked flapping: the
//!   notification of that change is sent with [`Notification::flapping`] set (a firing one,
//!   or a repeat of the firing if the change was a resolution), then nothing more until no
//!   change happened for `window`; it then resolves once if the condition is gone (or simply
//!   stays firing, unmarked, if it holds).
//!
//! Timers move at two moments: in [`RuleEngine::evaluate`] at each sample's own timestamp
//! (capped at `now`; a sample older than the latest one seen by that state is ignored), and
//! in [`RuleEngine::tick`] at `now` (absence, `for` and `clear_for` without new samples,
//! restart windows, repeats, flap-window expiry). Call `tick` every 100 ms to 1 s.
//!
//! NaN (and infinite) sample values are ignored: they never raise, clear, or count as a
//! sample for absence.
//!
//! # Notifications
//!
//! Every notification carries a complete [`Alert`]: `threshold` is always the rule's raise
//! level (restart count, absence seconds; the candidate's for signals), also on resolutions,
//! whose message names the clear level. `value` is the value that fired or cleared (change
//! per second for rates, seconds without a sample for absence, event count for restarts).
//! Firing notifications carry the rule's action; resolutions carry none. [`group`] splits
//! the notifications of one evaluation by rule or by daemon for delivery.
//!
//! # Default rules ([`default_rules`])
//!
//! | Rule | Condition | Timing | Severity |
//! |---|---|---|---|
//! | `high_cpu` | `process.cpu.utilization_ratio` > 0.9, clears at ≤ 0.8 | for 5 min, cooldown 15 min | warning |
//! | `memory_growth` | signal `bottleneck.memory_leak` | cooldown 1 h | warning |
//! | `descriptors_near_limit` | signal `bottleneck.descriptor_exhaustion` | cooldown 30 min | critical |
//! | `crash_loop` | ≥ 3 restarts or exits within 10 min | cooldown 30 min | critical |
//! | `daemon_down` | no `process.uptime_seconds` for 30 s | — | critical |
//! | `app_anomaly` (disabled, [`APP_ANOMALY_ENABLED`]) | signal `anomaly.*` on daemons, not `process.`/`system.`/`perfvisor.` metrics | cooldown 30 min | warning |
//!
//! perfvisor's own rules ([`perfvisor_rules`], shipped even without the defaults):
//! `perfvisor_storage_failing` (signal `perfvisor.storage_failing`) and `perfvisor_degraded`
//! (signal `perfvisor.degraded`), both critical. [`effective_rules`] adds a
//! `bottleneck.<kind>` signal rule for every bottleneck kind no rule follows. No built-in rule
//! follows anomalies of host, process or perfvisor series: those move for many harmless
//! reasons and stay in reports.
//!
//! The rationale of each is on its constructor ([`high_cpu_rule`] and the others).
#![deny(missing_docs)]

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{DaemonId, Labels, SeriesKey, Severity, Source};

mod defaults;
mod engine;
mod eval;
mod listing;
#[cfg(test)]
mod tests;
mod text;

pub use defaults::*;
pub use engine::*;
use eval::*;
pub use listing::*;
use text::*;

/// The metric name of the series that restart-rate rules track per daemon.
pub const RESTARTS_METRIC: &str = "lifecycle.restarts";

/// Flip times kept per state at most, whatever the flap window (bounds memory).
const MAX_FLIPS_KEPT: usize = 256;

/// Which side of a level is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Values above the level are bad.
    Above,
    /// Values below the level are bad.
    Below,
}

impl Comparison {
    /// True when `value` is strictly on the bad side of `level` (false for NaN).
    pub fn beyond(self, value: f64, level: f64) -> bool {
        match self {
            Comparison::Above => value > level,
            Comparison::Below => value < level,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Comparison::Above => "above",
            Comparison::Below => "below",
        }
    }
    fn clear_word(self) -> &'static str {
        match self {
            Comparison::Above => "at or below",
            Comparison::Below => "at or above",
        }
    }
}

/// What makes a rule raise and clear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Condition {
    /// The sample value beyond `raise` raises; not beyond `clear` clears.
    Threshold {
        /// Bad side.
        comparison: Comparison,
        /// Level that raises (strictly beyond it).
        raise: f64,
        /// Level that clears (at it or on the good side); on the good side of `raise` or
        /// equal to it.
        clear: f64,
    },
    /// The change per second over `window` beyond `raise` raises; not beyond `clear` clears.
    RateOfChange {
        /// Bad side.
        comparison: Comparison,
        /// Change per second that raises.
        raise: f64,
        /// Change per second that clears.
        clear: f64,
        /// Span the rate is measured over (> 0).
        window: Duration,
    },
    /// No sample of the series for `after` raises; the next sample clears.
    Absence {
        /// Silence that raises (> 0).
        after: Duration,
    },
    /// At least `count` restarts or exits of a daemon within `window` raise; fewer clear.
    RestartRate {
        /// Events that raise (≥ 1).
        count: u32,
        /// Window they are counted in (> 0).
        window: Duration,
    },
    /// Follows candidates whose rule name is `name`, or starts with `prefix.` when `name`
    /// is `prefix.*`.
    Signal {
        /// The candidate rule name (`bottleneck.memory_leak`, `anomaly.<metric>`,
        /// `perfvisor.storage_failing`), or a prefix pattern (`anomaly.*`).
        name: String,
    },
}

impl Condition {
    /// True for conditions fed by samples (they need a metric).
    fn uses_samples(&self) -> bool {
        matches!(
            self,
            Condition::Threshold { .. }
                | Condition::RateOfChange { .. }
                | Condition::Absence { .. }
        )
    }
}

/// A kind of series source, for selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The host machine (`system.*` series).
    Host,
    /// perfvisor's own health series.
    Perfvisor,
    /// Any watched daemon.
    Daemon,
}

impl SourceKind {
    /// True when `source` is of this kind.
    pub fn matches(self, source: &Source) -> bool {
        matches!(
            (self, source),
            (SourceKind::Host, Source::Host)
                | (SourceKind::Perfvisor, Source::Perfvisor)
                | (SourceKind::Daemon, Source::Daemon(_))
        )
    }
}

/// Which series a rule watches; every field set must match (unset fields match anything).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Exact metric name. Required by threshold, rate and absence rules.
    pub metric: Option<String>,
    /// Only this daemon's series.
    pub daemon: Option<DaemonId>,
    /// Only series whose `project` label is this.
    pub project: Option<String>,
    /// Only series carrying all these label pairs.
    pub labels: Vec<(String, String)>,
    /// Only series from this kind of source.
    pub source: Option<SourceKind>,
    /// Only series whose metric starts with none of these (`process.`, `system.`): how the
    /// built-in `app_anomaly` keeps to a daemon's own app metrics.
    #[serde(default)]
    pub exclude_metric_prefixes: Vec<String>,
}

impl Selector {
    /// True when `series` is selected.
    pub fn matches(&self, series: &SeriesKey) -> bool {
        self.matches_parts(&series.source, series.metric.as_str(), &series.labels, None)
    }

    /// `project` is used when the labels have no `project` (analyzer candidates carry it
    /// on the alert).
    fn matches_parts(
        &self,
        source: &Source,
        metric: &str,
        labels: &Labels,
        project: Option<&str>,
    ) -> bool {
        if self.metric.as_deref().is_some_and(|m| m != metric) {
            return false;
        }
        if self
            .exclude_metric_prefixes
            .iter()
            .any(|p| metric.starts_with(p.as_str()))
        {
            return false;
        }
        if self
            .daemon
            .as_ref()
            .is_some_and(|d| source.daemon() != Some(d))
        {
            return false;
        }
        if self.source.is_some_and(|k| !k.matches(source)) {
            return false;
        }
        if let Some(p) = &self.project {
            if labels.get("project").or(project) != Some(p.as_str()) {
                return false;
            }
        }
        self.labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v.as_str()))
    }

    /// Restart-rate rules see daemons only (lifecycle events carry no labels).
    fn matches_daemon(&self, daemon: &DaemonId) -> bool {
        self.metric.is_none()
            && self.exclude_metric_prefixes.is_empty()
            && self.project.is_none()
            && self.labels.is_empty()
            && self.source.is_none_or(|k| k == SourceKind::Daemon)
            && self.daemon.as_ref().is_none_or(|d| d == daemon)
    }
}

/// Flap damping: more than `max_flips` state changes within `window` hold the alert firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlapDamping {
    /// State changes (fire or resolve) tolerated within `window` (≥ 1).
    pub max_flips: u32,
    /// Window the changes are counted in, and how long it must stay stable to be released
    /// (> 0).
    pub window: Duration,
}

/// Something the dispatcher may do by itself when the rule fires. The engine only carries
/// it on firing notifications; it never runs anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RuleAction {
    /// Ask the host to restart the alert's daemon.
    RestartDaemon,
    /// Run a program (no shell).
    Exec {
        /// Program path or name.
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// An alert rule (the general rule type; the name is kept from v1 so nothing else breaks).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdRule {
    /// Unique name (`high_cpu`).
    pub name: String,
    /// What raises and clears it.
    pub condition: Condition,
    /// Which series it watches.
    #[serde(default)]
    pub selector: Selector,
    /// How long the raise condition must hold before firing (`for`). Default zero.
    #[serde(default)]
    pub for_duration: Duration,
    /// How long the clear condition must hold before resolving. Default zero.
    #[serde(default)]
    pub clear_for: Duration,
    /// Least time between two firing notifications of one series. Default zero.
    #[serde(default)]
    pub cooldown: Duration,
    /// Re-send a still-firing alert this often. Default never.
    #[serde(default)]
    pub repeat_interval: Option<Duration>,
    /// Flap damping. Default none.
    #[serde(default)]
    pub flap: Option<FlapDamping>,
    /// Severity of its alerts. Default warning.
    pub severity: Severity,
    /// Remediation steps attached to its alerts.
    #[serde(default)]
    pub recommendations: Vec<String>,
    /// What the dispatcher may do when it fires. Default none.
    #[serde(default)]
    pub action: Option<RuleAction>,
    /// A disabled rule is listed but never evaluated (how a built-in is switched off).
    /// Default true.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn enabled_default() -> bool {
    true
}

impl ThresholdRule {
    /// A rule with this condition, selecting everything, no timing options, severity
    /// warning.
    pub fn new(name: impl Into<String>, condition: Condition) -> Self {
        ThresholdRule {
            name: name.into(),
            condition,
            selector: Selector::default(),
            for_duration: Duration::ZERO,
            clear_for: Duration::ZERO,
            cooldown: Duration::ZERO,
            repeat_interval: None,
            flap: None,
            severity: Severity::Warning,
            recommendations: Vec::new(),
            action: None,
            enabled: true,
        }
    }
    /// Fires when `metric` is above `threshold` (clear level = `threshold` until
    /// [`ThresholdRule::clear_at`]); no `for`, no cooldown, severity warning.
    pub fn above(name: impl Into<String>, metric: impl Into<String>, threshold: f64) -> Self {
        Self::threshold(name, metric, Comparison::Above, threshold)
    }
    /// Like [`ThresholdRule::above`], for values below the threshold.
    pub fn below(name: impl Into<String>, metric: impl Into<String>, threshold: f64) -> Self {
        Self::threshold(name, metric, Comparison::Below, threshold)
    }
    fn threshold(
        name: impl Into<String>,
        metric: impl Into<String>,
        comparison: Comparison,
        level: f64,
    ) -> Self {
        Self::new(
            name,
            Condition::Threshold {
                comparison,
                raise: level,
                clear: level,
            },
        )
        .metric(metric)
    }
    /// Fires when `metric` grows faster than `per_second` over `window`.
    pub fn rate_above(
        name: impl Into<String>,
        metric: impl Into<String>,
        per_second: f64,
        window: Duration,
    ) -> Self {
        Self::rate(name, metric, Comparison::Above, per_second, window)
    }
    /// Fires when `metric` changes by less than `per_second` (falls faster when negative)
    /// over `window`.
    pub fn rate_below(
        name: impl Into<String>,
        metric: impl Into<String>,
        per_second: f64,
        window: Duration,
    ) -> Self {
        Self::rate(name, metric, Comparison::Below, per_second, window)
    }
    fn rate(
        name: impl Into<String>,
        metric: impl Into<String>,
        comparison: Comparison,
        level: f64,
        window: Duration,
    ) -> Self {
        Self::new(
            name,
            Condition::RateOfChange {
                comparison,
                raise: level,
                clear: level,
                window,
            },
        )
        .metric(metric)
    }
    /// Fires when a series of `metric` that has been seen sends no sample for `after`.
    pub fn absent(name: impl Into<String>, metric: impl Into<String>, after: Duration) -> Self {
        Self::new(name, Condition::Absence { after }).metric(metric)
    }
    /// Fires when a daemon restarts or exits `count` times within `window`.
    pub fn restart_rate(name: impl Into<String>, count: u32, window: Duration) -> Self {
        Self::new(name, Condition::RestartRate { count, window })
    }
    /// Follows the analyzer's candidates named `signal` (`bottleneck.memory_leak`).
    pub fn signal(name: impl Into<String>, signal: impl Into<String>) -> Self {
        Self::new(
            name,
            Condition::Signal {
                name: signal.into(),
            },
        )
    }
    /// Selects this metric (exact name).
    pub fn metric(mut self, metric: impl Into<String>) -> Self {
        self.selector.metric = Some(metric.into());
        self
    }
    /// Restricts the rule to one daemon.
    pub fn for_daemon(mut self, id: impl Into<DaemonId>) -> Self {
        self.selector.daemon = Some(id.into());
        self
    }
    /// Restricts the rule to series whose `project` label is `project`.
    pub fn for_project(mut self, project: impl Into<String>) -> Self {
        self.selector.project = Some(project.into());
        self
    }
    /// Restricts the rule to series carrying this label pair (all pairs given must match).
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.selector.labels.push((key.into(), value.into()));
        self
    }
    /// Restricts the rule to one kind of source.
    pub fn on_source(mut self, kind: SourceKind) -> Self {
        self.selector.source = Some(kind);
        self
    }
    /// Restricts the rule to the host's series (a host rule).
    pub fn on_host(self) -> Self {
        self.on_source(SourceKind::Host)
    }
    /// Sets the clear level of a threshold or rate rule (hysteresis); ignored by the other
    /// conditions.
    pub fn clear_at(mut self, level: f64) -> Self {
        if let Condition::Threshold { clear, .. } | Condition::RateOfChange { clear, .. } =
            &mut self.condition
        {
            *clear = level;
        }
        self
    }
    /// Sets how long the condition must hold before firing.
    pub fn for_duration(mut self, d: Duration) -> Self {
        self.for_duration = d;
        self
    }
    /// Sets how long the clear condition must hold before resolving.
    pub fn clear_for(mut self, d: Duration) -> Self {
        self.clear_for = d;
        self
    }
    /// Sets the cooldown between two firing notifications.
    pub fn cooldown(mut self, d: Duration) -> Self {
        self.cooldown = d;
        self
    }
    /// Re-sends a still-firing alert every `d`.
    pub fn repeat_every(mut self, d: Duration) -> Self {
        self.repeat_interval = Some(d);
        self
    }
    /// Holds the alert firing when it changes state more than `max_flips` times within
    /// `window`.
    pub fn flap_damping(mut self, max_flips: u32, window: Duration) -> Self {
        self.flap = Some(FlapDamping { max_flips, window });
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
    /// Sets the action the dispatcher may take when it fires.
    pub fn action(mut self, action: RuleAction) -> Self {
        self.action = Some(action);
        self
    }
    /// Switches the rule on or off (off: listed, never evaluated).
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }
    /// Leaves out series whose metric starts with `prefix`.
    pub fn excluding_metrics(mut self, prefix: impl Into<String>) -> Self {
        self.selector.exclude_metric_prefixes.push(prefix.into());
        self
    }
    /// True when the rule watches samples of `series` (selector match, sample-fed
    /// conditions only).
    pub fn matches(&self, series: &SeriesKey) -> bool {
        self.enabled && self.condition.uses_samples() && self.selector.matches(series)
    }

    /// Checks every setting; the error lists every problem with the field, the value and
    /// what would be accepted.
    pub fn validate(&self) -> Result<(), RuleError> {
        let mut problems = Vec::new();
        self.check(&mut problems);
        RuleError::from_problems(problems)
    }

    fn check(&self, out: &mut Vec<RuleProblem>) {
        let mut bad = |field: &'static str, value: String, expected: String| {
            out.push(RuleProblem {
                rule: self.name.clone(),
                field,
                value,
                expected,
            })
        };
        if self.name.trim().is_empty() {
            bad(
                "name",
                format!("{:?}", self.name),
                "a non-empty name".into(),
            );
        }
        match &self.condition {
            Condition::Threshold {
                comparison,
                raise,
                clear,
            }
            | Condition::RateOfChange {
                comparison,
                raise,
                clear,
                ..
            } => {
                if !raise.is_finite() {
                    bad("raise", raise.to_string(), "a finite number".into());
                }
                if !clear.is_finite() {
                    bad("clear", clear.to_string(), "a finite number".into());
                } else if raise.is_finite() && comparison.beyond(*clear, *raise) {
                    bad(
                        "clear",
                        clear.to_string(),
                        format!(
                            "a level {} the raise level {} (clear must be on the good side \
                             of raise, or equal to it)",
                            comparison.clear_word(),
                            raise
                        ),
                    );
                }
            }
            _ => {}
        }
        match &self.condition {
            Condition::RateOfChange { window, .. } | Condition::RestartRate { window, .. }
                if window.is_zero() =>
            {
                bad("window", "0s".into(), "a window longer than zero".into());
            }
            Condition::Absence { after } if after.is_zero() => {
                bad("after", "0s".into(), "a duration longer than zero".into());
            }
            _ => {}
        }
        if let Condition::RestartRate { count, .. } = &self.condition {
            if *count == 0 {
                bad("count", "0".into(), "at least 1 restart".into());
            }
            let s = &self.selector;
            if s.metric.is_some() || s.project.is_some() || !s.labels.is_empty() {
                bad(
                    "selector",
                    format!("{s:?}"),
                    "only a daemon or the daemon source kind: lifecycle events carry no \
                     metric or labels"
                        .into(),
                );
            }
            if s.source.is_some_and(|k| k != SourceKind::Daemon) {
                bad(
                    "selector.source",
                    format!("{:?}", s.source),
                    "daemon or none: only daemons restart".into(),
                );
            }
        }
        if let Condition::Signal { name } = &self.condition {
            let pattern_ok = match name.find('*') {
                None => true,
                Some(i) => i + 1 == name.len() && name.len() > 2 && name.ends_with(".*"),
            };
            if name.trim().is_empty() || !pattern_ok {
                bad(
                    "signal",
                    format!("{name:?}"),
                    "a candidate name such as bottleneck.memory_leak, or a prefix ending in \
                     `.*` such as anomaly.*"
                        .into(),
                );
            } else if let Err(expected) = known_signal(name) {
                bad("signal", format!("{name:?}"), expected);
            }
        }
        if self.condition.uses_samples()
            && self.selector.metric.as_deref().is_none_or(str::is_empty)
        {
            bad(
                "selector.metric",
                format!("{:?}", self.selector.metric),
                "the exact metric the rule watches".into(),
            );
        }
        if let (Some(kind @ (SourceKind::Host | SourceKind::Perfvisor)), Some(d)) =
            (self.selector.source, &self.selector.daemon)
        {
            bad(
                "selector.daemon",
                d.to_string(),
                format!("no daemon on a rule for the {kind:?} source"),
            );
        }
        if let Some(f) = &self.flap {
            if f.max_flips == 0 {
                bad(
                    "flap.max_flips",
                    "0".into(),
                    "at least 1 state change".into(),
                );
            }
            if f.window.is_zero() {
                bad(
                    "flap.window",
                    "0s".into(),
                    "a window longer than zero".into(),
                );
            }
        }
        if self.repeat_interval.is_some_and(|d| d.is_zero()) {
            bad(
                "repeat_interval",
                "0s".into(),
                "an interval longer than zero, or none".into(),
            );
        }
        if let Some(RuleAction::Exec { program, .. }) = &self.action {
            if program.trim().is_empty() {
                bad(
                    "action.program",
                    format!("{program:?}"),
                    "a program path or name".into(),
                );
            }
        }
    }
}

/// Whether the analyzer or perfvisor itself can raise candidates of this name (or prefix):
/// `bottleneck.<kind>` of a known kind, `anomaly.<metric>` of any metric, `perfvisor.<…>`.
/// `Err` says what is accepted, with the nearest names.
fn known_signal(name: &str) -> Result<(), String> {
    let kinds: Vec<String> = crate::analyzer::BottleneckKind::ALL
        .iter()
        .map(|k| format!("bottleneck.{}", k.as_str()))
        .collect();
    if name.starts_with("anomaly.")
        || name.starts_with("perfvisor.")
        || name == "bottleneck.*"
        || kinds.iter().any(|k| k == name)
    {
        return Ok(());
    }
    let mut known: Vec<&str> = kinds.iter().map(String::as_str).collect();
    known.extend([
        STORAGE_FAILING_SIGNAL,
        DEGRADED_SIGNAL,
        "anomaly.*",
        "bottleneck.*",
    ]);
    let near = crate::suggest::nearest(name, &known, 2);
    let hint = match near.as_slice() {
        [] => String::new(),
        [one] => format!("did you mean {one}? "),
        [one, two, ..] => format!("did you mean {one} or {two}? "),
    };
    Err(format!(
        "{hint}a candidate perfvisor raises: bottleneck.<kind> ({}), anomaly.<metric>, \
         perfvisor.<own alert>, or a prefix ending in `.*`",
        crate::analyzer::BottleneckKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Checks a set of rules: every rule's settings, and that names are unique.
pub fn validate_rules(rules: &[ThresholdRule]) -> Result<(), RuleError> {
    let mut problems = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        r.check(&mut problems);
        if rules[..i].iter().any(|o| o.name == r.name) {
            problems.push(RuleProblem {
                rule: r.name.clone(),
                field: "name",
                value: format!("{:?}", r.name),
                expected: "a name no other rule has".into(),
            });
        }
    }
    RuleError::from_problems(problems)
}

/// One bad setting of one rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule:?}: {field} = {value} is not accepted; expected {expected}")]
pub struct RuleProblem {
    /// The rule's name.
    pub rule: String,
    /// The setting (`clear`, `flap.max_flips`...).
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What would be accepted.
    pub expected: String,
}

/// Every bad setting found by [`ThresholdRule::validate`] or [`validate_rules`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid alert rules: {}", join_problems(.problems))]
pub struct RuleError {
    /// The problems, in rule order.
    pub problems: Vec<RuleProblem>,
}

impl RuleError {
    fn from_problems(problems: Vec<RuleProblem>) -> Result<(), RuleError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RuleError { problems })
        }
    }
}

fn join_problems(p: &[RuleProblem]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
