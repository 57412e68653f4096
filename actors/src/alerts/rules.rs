//! The alert rule engine (v2): rules, their selectors and conditions, and the per-(rule,
//! series) state machines that turn samples, lifecycle events and analyzer candidates into
//! [`Notification`]s. Plain logic: no actix, no threads, no I/O; time always comes in as
//! `now` (milliseconds), so every timer is exact on a manual clock.
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

use crate::types::FastMap;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metric_names as names;
use crate::types::{
    Alert, AlertState, DaemonId, Labels, LifecycleEvent, LifecycleKind, MetricBatch, MetricKind,
    SeriesKey, Severity, Source, TimestampMs,
};

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

/// The state of one (rule, series), as its condition drives it (a flapping alert held
/// firing may be `Inactive` here; see [`RuleEngine::firing`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RuleState {
    /// The raise condition does not hold.
    Inactive,
    /// The raise condition holds since `since`, not yet for `for`.
    Pending {
        /// When it started to hold.
        since: TimestampMs,
    },
    /// Firing since `since` (start of the pending period).
    Firing {
        /// When the raise condition started to hold.
        since: TimestampMs,
        /// False when cooldown held the firing notification back.
        notified: bool,
        /// When the clear condition started to hold, if it holds.
        clearing_since: Option<TimestampMs>,
    },
}

/// The latest verdict of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The raise condition holds.
    Raise,
    /// Between the clear and raise levels (hysteresis band).
    Hold,
    /// The clear condition holds.
    Clear,
}

/// What the engine asks the dispatcher to send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The alert, every field filled.
    pub alert: Alert,
    /// A re-send of an alert already announced as firing (repeat interval, or the notice
    /// that it started flapping).
    pub repeat: bool,
    /// The (rule, series) is flapping (held firing) or this resolves a flapping alert.
    pub flapping: bool,
    /// The rule's action, on firing notifications (including repeats); none on
    /// resolutions. The dispatcher decides whether to run it.
    pub action: Option<RuleAction>,
}

/// How [`group`] groups notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One group per rule name.
    Rule,
    /// One group per daemon (alerts without a daemon form one group).
    Daemon,
}

/// Groups the notifications of one evaluation: groups in order of first appearance,
/// notifications in their order inside each group.
pub fn group(notifications: Vec<Notification>, by: GroupBy) -> Vec<Vec<Notification>> {
    let mut groups: Vec<Vec<Notification>> = Vec::new();
    for n in notifications {
        let same = |g: &Vec<Notification>| {
            g.first().is_some_and(|f| match by {
                GroupBy::Rule => f.alert.rule == n.alert.rule,
                GroupBy::Daemon => f.alert.daemon == n.alert.daemon,
            })
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.push(n),
            None => groups.push(vec![n]),
        }
    }
    groups
}

/// One (rule, series) state as stored by the dispatcher between runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    /// The rule's name (states of rules that no longer exist are dropped on restore).
    pub rule: String,
    /// The series.
    pub series: SeriesKey,
    /// The condition-driven state.
    pub state: RuleState,
    /// Start of the announced episode (`since_ms` of its alerts).
    pub since: Option<TimestampMs>,
    /// Whether subscribers were told it fires (and not yet that it resolved).
    pub announced: bool,
    /// Time of the last firing notification (cooldown).
    pub last_notified: Option<TimestampMs>,
    /// Time the announced firing was sent (repeat schedule).
    pub fired_at: Option<TimestampMs>,
    /// Times of recent state changes (flap damping).
    pub flips: Vec<TimestampMs>,
    /// Held firing by flap damping.
    pub flapping: bool,
    /// The latest verdict of the condition.
    pub level: Level,
    /// The latest value.
    pub value: f64,
    /// The last alert built (the firing one while firing).
    pub last_alert: Option<Alert>,
    /// Absence rules: time of the latest sample.
    pub last_seen: Option<TimestampMs>,
    /// Restart-rate rules: times of the restarts in the window.
    pub restarts: Vec<TimestampMs>,
}

#[derive(Clone, Debug)]
struct Tracked {
    rule: usize,
    state: RuleState,
    level: Level,
    value: f64,
    /// Latest observation time; older samples are ignored.
    last_ts: TimestampMs,
    announced: bool,
    episode_since: TimestampMs,
    last_notified: Option<TimestampMs>,
    fired_at: TimestampMs,
    repeats: i64,
    flips: VecDeque<TimestampMs>,
    flapping: bool,
    last_alert: Option<Box<Alert>>,
    last_seen: Option<TimestampMs>,
    samples: VecDeque<(TimestampMs, f64)>,
    restarts: VecDeque<TimestampMs>,
    candidate: Option<Box<Alert>>,
}

impl Tracked {
    fn new(rule: usize) -> Self {
        Tracked {
            rule,
            state: RuleState::Inactive,
            level: Level::Clear,
            value: f64::NAN,
            last_ts: TimestampMs::MIN,
            announced: false,
            episode_since: 0,
            last_notified: None,
            fired_at: 0,
            repeats: 0,
            flips: VecDeque::new(),
            flapping: false,
            last_alert: None,
            last_seen: None,
            samples: VecDeque::new(),
            restarts: VecDeque::new(),
            candidate: None,
        }
    }

    fn is_firing(&self) -> bool {
        matches!(self.state, RuleState::Firing { .. }) || (self.flapping && self.announced)
    }

    /// Nothing worth keeping: no episode, no history a timer or cooldown still needs.
    fn idle(&self, rule: &ThresholdRule, now: TimestampMs) -> bool {
        self.state == RuleState::Inactive
            && !self.announced
            && !self.flapping
            && self.flips.is_empty()
            && self.restarts.is_empty()
            && self.last_seen.is_none()
            && self
                .last_notified
                .is_none_or(|l| now.saturating_sub(l) >= ms(rule.cooldown))
            && match &rule.condition {
                Condition::RateOfChange { window, .. } => self
                    .samples
                    .back()
                    .is_none_or(|s| now.saturating_sub(s.0) > ms(*window).saturating_mul(2)),
                _ => true,
            }
    }
}

/// All rules and their per-(rule, series) states.
#[derive(Debug, Default)]
pub struct RuleEngine {
    rules: Vec<ThresholdRule>,
    /// Sample-fed rules by metric.
    by_metric: HashMap<String, Vec<usize>>,
    states: FastMap<SeriesKey, Vec<Tracked>>,
    /// The latest intended stop or restart of each daemon: samples it took before that
    /// moment (still in flight when the event came) feed no absence rule, so the old
    /// process's last samples cannot start a `daemon_down` timer after the stop.
    intended_at: HashMap<DaemonId, TimestampMs>,
}

impl RuleEngine {
    /// An engine with these rules (not validated here: see [`validate_rules`]; an invalid
    /// rule never panics, it just may never fire).
    pub fn new(rules: Vec<ThresholdRule>) -> Self {
        let mut e = RuleEngine {
            intended_at: HashMap::new(),
            rules,
            by_metric: HashMap::new(),
            states: FastMap::default(),
        };
        e.index();
        e
    }

    fn index(&mut self) {
        self.by_metric.clear();
        for (i, r) in self.rules.iter().enumerate() {
            if let (true, Some(m)) = (r.enabled && r.condition.uses_samples(), &r.selector.metric) {
                self.by_metric.entry(m.clone()).or_default().push(i);
            }
        }
    }

    /// Adds a rule; a rule with the same name replaces the old one, whose states are
    /// dropped without notifications.
    pub fn add(&mut self, rule: ThresholdRule) {
        if let Some(i) = self.rules.iter().position(|r| r.name == rule.name) {
            self.rules[i] = rule;
            for v in self.states.values_mut() {
                v.retain(|t| t.rule != i);
            }
            self.states.retain(|_, v| !v.is_empty());
        } else {
            self.rules.push(rule);
        }
        self.index();
    }

    /// The rules.
    pub fn rules(&self) -> &[ThresholdRule] {
        &self.rules
    }

    /// Replaces the whole rule set. States of unchanged rules are kept; states of removed
    /// and changed rules are dropped, and an alert of theirs that subscribers were told is
    /// firing is resolved, with a message saying the rule was removed, switched off or
    /// changed (so no one is left with an alert nothing will ever resolve).
    pub fn replace(
        &mut self,
        rules: Vec<ThresholdRule>,
        now: TimestampMs,
    ) -> (Vec<Notification>, RulesChange) {
        let mut change = RulesChange::default();
        // Old index → new index, for rules kept as they were.
        let mut kept: HashMap<usize, usize> = HashMap::new();
        let mut gone: HashMap<usize, &'static str> = HashMap::new();
        for (i, old) in self.rules.iter().enumerate() {
            match rules.iter().position(|r| r.name == old.name) {
                None => {
                    change.removed.push(old.name.clone());
                    gone.insert(i, "the rule was removed");
                }
                Some(j) if rules[j] == *old => {
                    kept.insert(i, j);
                }
                Some(j) => {
                    change.changed.push(old.name.clone());
                    let why = if rules[j].enabled {
                        "the rule was changed and is evaluated afresh"
                    } else {
                        "the rule was switched off"
                    };
                    gone.insert(i, why);
                }
            }
        }
        change.added = rules
            .iter()
            .filter(|r| !self.rules.iter().any(|o| o.name == r.name))
            .map(|r| r.name.clone())
            .collect();
        let mut out = Vec::new();
        for (series, v) in self.states.iter_mut() {
            v.retain_mut(|tr| {
                if let Some(&j) = kept.get(&tr.rule) {
                    tr.rule = j;
                    return true;
                }
                if let (Some(why), Some(rule)) = (gone.get(&tr.rule), self.rules.get(tr.rule)) {
                    if tr.announced && tr.is_firing() {
                        let mut a = build_alert(rule, series, tr, AlertState::Resolved, now);
                        a.message = format!("{} resolved: {why}", rule.name);
                        out.push(notification(rule, a, false, tr.flapping));
                    }
                }
                false
            });
        }
        self.states.retain(|_, v| !v.is_empty());
        self.rules = rules;
        self.index();
        out.sort_by(|a, b| (&a.alert.rule, &a.alert.series).cmp(&(&b.alert.rule, &b.alert.series)));
        (out, change)
    }

    fn tracked(&self, rule: &str, series: &SeriesKey) -> Option<&Tracked> {
        let i = self.rules.iter().position(|r| r.name == rule)?;
        self.states.get(series)?.iter().find(|t| t.rule == i)
    }

    /// The condition-driven state of one (rule, series).
    pub fn state(&self, rule: &str, series: &SeriesKey) -> RuleState {
        self.tracked(rule, series)
            .map_or(RuleState::Inactive, |t| t.state)
    }

    /// True when flap damping holds this (rule, series).
    pub fn is_flapping(&self, rule: &str, series: &SeriesKey) -> bool {
        self.tracked(rule, series).is_some_and(|t| t.flapping)
    }

    /// Feeds every sample of a batch, in order. Timers move to each sample's timestamp
    /// (capped at `now`); notifications are stamped `now`.
    pub fn evaluate(&mut self, batch: &MetricBatch, now: TimestampMs) -> Vec<Notification> {
        let mut out = Vec::new();
        let RuleEngine {
            rules,
            by_metric,
            states,
            intended_at,
        } = self;
        for s in &batch.samples {
            if !s.value.is_finite() {
                continue;
            }
            let Some(indices) = by_metric.get(s.series.metric.as_str()) else {
                continue;
            };
            let before_intent = !intended_at.is_empty()
                && match &s.series.source {
                    Source::Daemon(d) => intended_at.get(d).is_some_and(|&at| s.ts_ms <= at),
                    _ => false,
                };
            let t = s.ts_ms.min(now);
            // One map lookup per sample; a state is created only when a rule needs one.
            let slots = match states.get_mut(&s.series) {
                Some(v) => v,
                None => {
                    let wanted = indices.iter().any(|&i| {
                        rules
                            .get(i)
                            .is_some_and(|r| r.selector.matches(&s.series) && creates(r, s.value))
                    });
                    if !wanted {
                        continue;
                    }
                    states.entry(s.series.clone()).or_default()
                }
            };
            for &i in indices {
                let Some(rule) = rules.get(i) else { continue };
                if !rule.selector.matches(&s.series)
                    || (before_intent && matches!(rule.condition, Condition::Absence { .. }))
                {
                    continue;
                }
                let tr = match slots.iter().position(|t| t.rule == i) {
                    Some(p) => &mut slots[p],
                    None if creates(rule, s.value) => {
                        slots.push(Tracked::new(i));
                        let last = slots.len() - 1;
                        &mut slots[last]
                    }
                    None => continue,
                };
                let cx = Cx {
                    rule,
                    series: &s.series,
                    now,
                };
                sample(&cx, tr, s.kind, s.value, t, &mut out);
            }
        }
        out
    }

    /// Feeds a lifecycle event: unintended restarts and exits count for restart-rate rules;
    /// a stop, and an intended exit or restart, forget the daemon's absence states (resolving
    /// announced ones): the old process's silence is no outage, and the new process's first
    /// sample starts a fresh timer.
    pub fn lifecycle(&mut self, event: &LifecycleEvent, now: TimestampMs) -> Vec<Notification> {
        let mut out = Vec::new();
        let t = event.ts_ms.min(now);
        let RuleEngine {
            rules,
            states,
            intended_at,
            ..
        } = self;
        if event.intended {
            intended_at.insert(event.daemon.clone(), event.ts_ms);
            // Bounded: only the last hour's intents can still have samples in flight.
            intended_at.retain(|_, at| *at >= event.ts_ms - 3_600_000);
        }
        match event.kind {
            LifecycleKind::Restarted | LifecycleKind::Exited | LifecycleKind::Stopped
                if event.intended =>
            {
                let why = match event.kind {
                    LifecycleKind::Stopped => "was stopped by the host",
                    _ => "is being restarted on purpose",
                };
                forget_absence(rules, states, &event.daemon, why, now, &mut out);
            }
            LifecycleKind::Restarted | LifecycleKind::Exited => {
                let series = SeriesKey::new(
                    Source::Daemon(event.daemon.clone()),
                    RESTARTS_METRIC,
                    Labels::empty(),
                );
                for (i, rule) in rules.iter().enumerate() {
                    let Condition::RestartRate { count, window } = &rule.condition else {
                        continue;
                    };
                    if !rule.enabled || !rule.selector.matches_daemon(&event.daemon) {
                        continue;
                    }
                    let cx = Cx {
                        rule,
                        series: &series,
                        now,
                    };
                    with_slot(states, &series, i, true, |tr| {
                        tr.restarts.push_back(t);
                        tr.restarts.make_contiguous().sort_unstable();
                        let at = t.max(tr.last_ts);
                        prune_restarts(tr, at, ms(*window));
                        let n = tr.restarts.len();
                        let level = if n >= *count as usize && *count > 0 {
                            Level::Raise
                        } else {
                            Level::Clear
                        };
                        observe(&cx, tr, level, n as f64, at, &mut out);
                    });
                }
            }
            LifecycleKind::Stopped => {
                forget_absence(
                    rules,
                    states,
                    &event.daemon,
                    "was stopped by the host",
                    now,
                    &mut out,
                );
            }
            LifecycleKind::Started | LifecycleKind::Exec => {}
        }
        out
    }

    /// Feeds an analyzer candidate (`bottleneck.<kind>`, `anomaly.<metric>`) to the signal
    /// rules that follow it: firing raises, resolved clears, at `now`.
    pub fn signal(&mut self, candidate: &Alert, now: TimestampMs) -> Vec<Notification> {
        let mut out = Vec::new();
        let RuleEngine { rules, states, .. } = self;
        let series = &candidate.series;
        for (i, rule) in rules.iter().enumerate() {
            let Condition::Signal { name } = &rule.condition else {
                continue;
            };
            if !rule.enabled
                || !follows(name, &candidate.rule)
                || !rule.selector.matches_parts(
                    &series.source,
                    series.metric.as_str(),
                    &series.labels,
                    candidate.project.as_deref(),
                )
            {
                continue;
            }
            let level = match candidate.state {
                AlertState::Firing => Level::Raise,
                AlertState::Resolved => Level::Clear,
            };
            let cx = Cx { rule, series, now };
            with_slot(states, series, i, level == Level::Raise, |tr| {
                if now < tr.last_ts {
                    return;
                }
                tr.candidate = Some(Box::new(candidate.clone()));
                observe(&cx, tr, level, candidate.value, now, &mut out);
            });
        }
        out
    }

    /// Moves every timer to `now`: absence, `for` and `clear_for` without new samples,
    /// restart windows, repeats, flap-window expiry. Drops states with nothing left to
    /// remember. Notifications are sorted by rule, then series.
    pub fn tick(&mut self, now: TimestampMs) -> Vec<Notification> {
        let mut out = Vec::new();
        let RuleEngine { rules, states, .. } = self;
        for (series, v) in states.iter_mut() {
            for tr in v.iter_mut() {
                let Some(rule) = rules.get(tr.rule) else {
                    continue;
                };
                let cx = Cx { rule, series, now };
                match &rule.condition {
                    Condition::Absence { after } => {
                        if let Some(seen) = tr.last_seen {
                            let due = seen.saturating_add(ms(*after));
                            if now >= due {
                                let gap = secs(now.saturating_sub(seen));
                                if tr.level == Level::Raise {
                                    tr.value = gap;
                                } else {
                                    observe(&cx, tr, Level::Raise, gap, due, &mut out);
                                }
                            }
                        }
                    }
                    Condition::RestartRate { count, window } => {
                        prune_restarts(tr, now, ms(*window));
                        let n = tr.restarts.len();
                        if tr.level == Level::Raise && n < *count as usize {
                            observe(&cx, tr, Level::Clear, n as f64, now, &mut out);
                        }
                    }
                    _ => {}
                }
                advance(&cx, tr, now, &mut out);
                timers(&cx, tr, &mut out);
            }
            v.retain(|tr| rules.get(tr.rule).is_some_and(|r| !tr.idle(r, now)));
        }
        states.retain(|_, v| !v.is_empty());
        out.sort_by(|a, b| (&a.alert.rule, &a.alert.series).cmp(&(&b.alert.rule, &b.alert.series)));
        out
    }

    /// The alerts currently firing, including those cooldown held back and those flap
    /// damping holds, oldest first.
    pub fn firing(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .states
            .values()
            .flatten()
            .filter(|t| t.is_firing())
            .filter_map(|t| t.last_alert.as_deref().cloned())
            .filter(|a| a.state == AlertState::Firing)
            .collect();
        v.sort_by(|a, b| {
            a.since_ms
                .cmp(&b.since_ms)
                .then_with(|| a.rule.cmp(&b.rule))
                .then_with(|| a.series.cmp(&b.series))
        });
        v
    }

    /// Every state worth keeping across a restart of the dispatcher.
    pub fn snapshot(&self) -> Vec<PersistedState> {
        let mut v: Vec<PersistedState> = self
            .states
            .iter()
            .flat_map(|(series, v)| v.iter().map(move |t| (series, t)))
            .filter_map(|(series, t)| {
                let rule = self.rules.get(t.rule)?;
                Some(PersistedState {
                    rule: rule.name.clone(),
                    series: series.clone(),
                    state: t.state,
                    since: (t.announced || t.is_firing()).then_some(t.episode_since),
                    announced: t.announced,
                    last_notified: t.last_notified,
                    fired_at: t.announced.then_some(t.fired_at),
                    flips: t.flips.iter().copied().collect(),
                    flapping: t.flapping,
                    level: t.level,
                    value: t.value,
                    last_alert: t.last_alert.as_deref().cloned(),
                    last_seen: t.last_seen,
                    restarts: t.restarts.iter().copied().collect(),
                })
            })
            .collect();
        v.sort_by(|a, b| (&a.rule, &a.series).cmp(&(&b.rule, &b.series)));
        v
    }

    /// Restores states saved by [`RuleEngine::snapshot`]: a firing alert stays firing with
    /// its original `since_ms` and is not announced again; states of rules that no longer
    /// exist or are disabled are dropped; absence timers restart at `now` (the engine was not listening
    /// while it was down); the repeat schedule resumes at its next boundary after `now`.
    pub fn restore(&mut self, states: Vec<PersistedState>, now: TimestampMs) {
        for p in states {
            let Some(i) = self.rules.iter().position(|r| r.name == p.rule) else {
                continue;
            };
            let Some(rule) = self.rules.get(i).filter(|r| r.enabled) else {
                continue;
            };
            let mut t = Tracked::new(i);
            t.state = p.state;
            t.level = p.level;
            t.value = p.value;
            t.announced = p.announced;
            t.episode_since = p.since.unwrap_or(match p.state {
                RuleState::Pending { since } | RuleState::Firing { since, .. } => since,
                RuleState::Inactive => now,
            });
            t.last_notified = p.last_notified;
            t.fired_at = p.fired_at.unwrap_or(now);
            t.repeats = match rule.repeat_interval.map(ms) {
                Some(iv) if iv > 0 => now.saturating_sub(t.fired_at).max(0) / iv,
                _ => 0,
            };
            t.flips = p.flips.into_iter().collect();
            t.flapping = p.flapping;
            t.last_alert = p.last_alert.map(Box::new);
            t.last_seen = p.last_seen.map(|s| s.max(now));
            t.restarts = p.restarts.into_iter().collect();
            t.last_ts = match t.state {
                RuleState::Pending { since } => since,
                RuleState::Firing { since, .. } => since,
                RuleState::Inactive => TimestampMs::MIN,
            };
            let v = self.states.entry(p.series).or_default();
            v.retain(|o| o.rule != i);
            v.push(t);
        }
    }
}

/// True when a signal rule following `signal` takes the candidate named `candidate`:
/// the same name, or for `prefix.*` any name that starts with `prefix.`.
pub fn follows(signal: &str, candidate: &str) -> bool {
    match signal.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('.') => candidate.starts_with(prefix),
        _ => signal == candidate,
    }
}

/// What [`RuleEngine::replace`] changed, by rule name (in the new set's order; removed ones
/// in the old set's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesChange {
    /// Rules only in the new set.
    pub added: Vec<String>,
    /// Rules only in the old set: their states are dropped, their firing alerts resolved.
    pub removed: Vec<String>,
    /// Rules in both whose settings differ: evaluated afresh, their firing alerts resolved.
    pub changed: Vec<String>,
}

impl RulesChange {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The rule and series a state belongs to, and the time notifications are stamped with.
struct Cx<'a> {
    rule: &'a ThresholdRule,
    series: &'a SeriesKey,
    now: TimestampMs,
}

/// Forgets the absence states of `daemon`'s series, resolving the announced ones with a
/// message saying it `why`.
fn forget_absence(
    rules: &[ThresholdRule],
    states: &mut FastMap<SeriesKey, Vec<Tracked>>,
    daemon: &DaemonId,
    why: &str,
    now: TimestampMs,
    out: &mut Vec<Notification>,
) {
    let source = Source::Daemon(daemon.clone());
    for (series, v) in states.iter_mut().filter(|(k, _)| k.source == source) {
        v.retain(|tr| {
            let Some(rule) = rules.get(tr.rule) else {
                return false;
            };
            if !matches!(rule.condition, Condition::Absence { .. }) {
                return true;
            }
            if tr.announced && tr.is_firing() {
                let mut a = build_alert(rule, series, tr, AlertState::Resolved, now);
                a.message = format!("{} resolved: daemon {daemon} {why}", rule.name);
                out.push(notification(rule, a, false, tr.flapping));
            }
            false
        });
    }
    states.retain(|_, v| !v.is_empty());
}

/// Runs `f` on the state of rule `rule` for `series`, creating it when `create`.
fn with_slot(
    states: &mut FastMap<SeriesKey, Vec<Tracked>>,
    series: &SeriesKey,
    rule: usize,
    create: bool,
    f: impl FnOnce(&mut Tracked),
) {
    if let Some(v) = states.get_mut(series) {
        if let Some(tr) = v.iter_mut().find(|t| t.rule == rule) {
            f(tr);
        } else if create {
            let mut tr = Tracked::new(rule);
            f(&mut tr);
            v.push(tr);
        }
    } else if create {
        let mut tr = Tracked::new(rule);
        f(&mut tr);
        states.insert(series.clone(), vec![tr]);
    }
}

/// Whether a sample of `value` needs a state for `rule` where there is none: threshold
/// rules only when it raises (most series never breach), the others always.
fn creates(rule: &ThresholdRule, value: f64) -> bool {
    match &rule.condition {
        Condition::Threshold {
            comparison, raise, ..
        } => comparison.beyond(value, *raise),
        Condition::RateOfChange { .. } | Condition::Absence { .. } => true,
        Condition::RestartRate { .. } | Condition::Signal { .. } => false,
    }
}

/// Feeds one finite sample at `t` to a sample-fed rule's state.
fn sample(
    cx: &Cx<'_>,
    tr: &mut Tracked,
    kind: MetricKind,
    value: f64,
    t: TimestampMs,
    out: &mut Vec<Notification>,
) {
    match &cx.rule.condition {
        Condition::Threshold {
            comparison,
            raise,
            clear,
        } => {
            if t >= tr.last_ts {
                let level = level_of(*comparison, value, *raise, *clear);
                observe(cx, tr, level, value, t, out);
            }
        }
        Condition::RateOfChange {
            comparison,
            raise,
            clear,
            window,
        } => {
            if t <= tr.last_ts && !tr.samples.is_empty() {
                return;
            }
            if kind == MetricKind::Counter && tr.samples.back().is_some_and(|b| value < b.1) {
                tr.samples.clear();
            }
            tr.samples.push_back((t, value));
            tr.last_ts = t;
            let w = ms(*window);
            let horizon = t.saturating_sub(w);
            while tr.samples.get(1).is_some_and(|p| p.0 <= horizon) {
                tr.samples.pop_front();
            }
            let Some(&(t0, v0)) = tr.samples.front() else {
                return;
            };
            let span = t.saturating_sub(t0);
            if w <= 0 || span < w {
                return;
            }
            let rate = (value - v0) / (span as f64 / 1000.0);
            if rate.is_finite() {
                let level = level_of(*comparison, rate, *raise, *clear);
                observe(cx, tr, level, rate, t, out);
            }
        }
        Condition::Absence { .. } => {
            if t < tr.last_ts {
                return;
            }
            let gap = tr.last_seen.map_or(0.0, |p| secs(t.saturating_sub(p)));
            tr.last_seen = Some(t);
            observe(cx, tr, Level::Clear, gap, t, out);
        }
        Condition::RestartRate { .. } | Condition::Signal { .. } => {}
    }
}

fn level_of(cmp: Comparison, value: f64, raise: f64, clear: f64) -> Level {
    if cmp.beyond(value, raise) {
        Level::Raise
    } else if !cmp.beyond(value, clear) {
        Level::Clear
    } else {
        Level::Hold
    }
}

fn prune_restarts(tr: &mut Tracked, at: TimestampMs, window: i64) {
    while tr
        .restarts
        .front()
        .is_some_and(|&f| at.saturating_sub(f) > window)
    {
        tr.restarts.pop_front();
    }
}

/// Records the verdict of the condition at `t`, then moves the timers to `t`.
fn observe(
    cx: &Cx<'_>,
    tr: &mut Tracked,
    level: Level,
    value: f64,
    t: TimestampMs,
    out: &mut Vec<Notification>,
) {
    tr.level = level;
    tr.value = value;
    tr.last_ts = tr.last_ts.max(t);
    tr.state = match (tr.state, level) {
        (RuleState::Inactive, Level::Raise) => RuleState::Pending { since: t },
        (s @ RuleState::Pending { .. }, Level::Raise) => s,
        (RuleState::Pending { .. } | RuleState::Inactive, _) => RuleState::Inactive,
        (
            RuleState::Firing {
                since,
                notified,
                clearing_since,
            },
            level,
        ) => RuleState::Firing {
            since,
            notified,
            clearing_since: (level == Level::Clear).then(|| clearing_since.unwrap_or(t)),
        },
    };
    advance(cx, tr, t, out);
}

/// Applies `for` and `clear_for` at `t`.
fn advance(cx: &Cx<'_>, tr: &mut Tracked, t: TimestampMs, out: &mut Vec<Notification>) {
    match tr.state {
        RuleState::Pending { since }
            if tr.level == Level::Raise && t.saturating_sub(since) >= ms(cx.rule.for_duration) =>
        {
            fire(cx, tr, since, t, out)
        }
        RuleState::Firing {
            clearing_since: Some(c),
            ..
        } if t.saturating_sub(c) >= ms(cx.rule.clear_for) => resolve(cx, tr, t, out),
        _ => {}
    }
}

/// Notes a state change at `t`; true when it makes the state start flapping.
fn flip(rule: &ThresholdRule, tr: &mut Tracked, t: TimestampMs) -> bool {
    let Some(f) = rule.flap else {
        return false;
    };
    tr.flips.push_back(t);
    let w = ms(f.window);
    while tr.flips.front().is_some_and(|&x| t.saturating_sub(x) >= w)
        || tr.flips.len() > MAX_FLIPS_KEPT
    {
        tr.flips.pop_front();
    }
    if !tr.flapping && tr.flips.len() > f.max_flips as usize {
        tr.flapping = true;
        return true;
    }
    false
}

fn fire(
    cx: &Cx<'_>,
    tr: &mut Tracked,
    since: TimestampMs,
    t: TimestampMs,
    out: &mut Vec<Notification>,
) {
    let was_flapping = tr.flapping;
    flip(cx.rule, tr, t);
    tr.state = RuleState::Firing {
        since,
        notified: false,
        clearing_since: None,
    };
    if was_flapping {
        // Held firing: silent; the announced episode (and its since) goes on.
        if let RuleState::Firing { notified, .. } = &mut tr.state {
            *notified = tr.announced;
        }
        if !tr.announced {
            tr.episode_since = since;
            tr.last_alert = Some(Box::new(build_alert(
                cx.rule,
                cx.series,
                tr,
                AlertState::Firing,
                cx.now,
            )));
        }
        return;
    }
    tr.episode_since = since;
    let alert = build_alert(cx.rule, cx.series, tr, AlertState::Firing, cx.now);
    let cooled = tr
        .last_notified
        .is_none_or(|l| t.saturating_sub(l) >= ms(cx.rule.cooldown));
    if cooled {
        tr.announced = true;
        tr.last_notified = Some(t);
        tr.fired_at = t;
        tr.repeats = 0;
        if let RuleState::Firing { notified, .. } = &mut tr.state {
            *notified = true;
        }
        out.push(notification(cx.rule, alert.clone(), false, tr.flapping));
    }
    tr.last_alert = Some(Box::new(alert));
}

fn resolve(cx: &Cx<'_>, tr: &mut Tracked, t: TimestampMs, out: &mut Vec<Notification>) {
    let was_flapping = tr.flapping;
    let starts = flip(cx.rule, tr, t);
    tr.state = RuleState::Inactive;
    if was_flapping {
        return;
    }
    if starts {
        if tr.announced {
            let alert = build_alert(cx.rule, cx.series, tr, AlertState::Firing, cx.now);
            out.push(notification(cx.rule, alert, true, true));
        }
        return;
    }
    if tr.announced {
        let alert = build_alert(cx.rule, cx.series, tr, AlertState::Resolved, cx.now);
        out.push(notification(cx.rule, alert.clone(), false, false));
        tr.announced = false;
        tr.last_alert = Some(Box::new(alert));
    }
}

/// Flap-window expiry and repeats at `cx.now`.
fn timers(cx: &Cx<'_>, tr: &mut Tracked, out: &mut Vec<Notification>) {
    let now = cx.now;
    match cx.rule.flap {
        Some(f) => {
            let w = ms(f.window);
            while tr
                .flips
                .front()
                .is_some_and(|&x| now.saturating_sub(x) >= w)
            {
                tr.flips.pop_front();
            }
        }
        None => tr.flips.clear(),
    }
    if tr.flapping && tr.flips.is_empty() {
        tr.flapping = false;
        if !matches!(tr.state, RuleState::Firing { .. }) && tr.announced {
            let alert = build_alert(cx.rule, cx.series, tr, AlertState::Resolved, now);
            out.push(notification(cx.rule, alert.clone(), false, true));
            tr.announced = false;
            tr.last_alert = Some(Box::new(alert));
        }
    }
    let Some(iv) = cx.rule.repeat_interval.map(ms) else {
        return;
    };
    if iv <= 0 || !tr.announced || tr.flapping || !matches!(tr.state, RuleState::Firing { .. }) {
        return;
    }
    let due = tr
        .fired_at
        .saturating_add(iv.saturating_mul(tr.repeats.saturating_add(1)));
    if now >= due {
        tr.repeats = now.saturating_sub(tr.fired_at) / iv;
        let alert = build_alert(cx.rule, cx.series, tr, AlertState::Firing, now);
        out.push(notification(cx.rule, alert, true, false));
    }
}

fn notification(rule: &ThresholdRule, alert: Alert, repeat: bool, flapping: bool) -> Notification {
    let action = match alert.state {
        AlertState::Firing => rule.action.clone(),
        AlertState::Resolved => None,
    };
    Notification {
        alert,
        repeat,
        flapping,
        action,
    }
}

fn build_alert(
    rule: &ThresholdRule,
    series: &SeriesKey,
    tr: &Tracked,
    state: AlertState,
    now: TimestampMs,
) -> Alert {
    let daemon = series.source.daemon().cloned();
    let who = daemon
        .as_ref()
        .map(|d| format!("daemon {d}"))
        .unwrap_or_else(|| series.source.to_string());
    let metric = series.metric.as_str();
    let value = tr.value;
    let name = &rule.name;
    let firing = state == AlertState::Firing;
    let mut recommendations = rule.recommendations.clone();
    let (threshold, message) = match &rule.condition {
        Condition::Threshold {
            comparison,
            raise,
            clear,
        } => (
            *raise,
            if firing {
                format!(
                    "{name}: {metric} of {who} is {} ({} threshold {}; clears {} {})",
                    num(value),
                    comparison.word(),
                    num(*raise),
                    comparison.clear_word(),
                    num(*clear)
                )
            } else {
                format!(
                    "{name} resolved: {metric} of {who} is back to {} (clear level {}, \
                     threshold {})",
                    num(value),
                    num(*clear),
                    num(*raise)
                )
            },
        ),
        Condition::RateOfChange {
            comparison,
            raise,
            clear,
            window,
        } => (
            *raise,
            if firing {
                format!(
                    "{name}: {metric} of {who} changes by {}/s over {} ({} threshold {}/s; \
                     clears {} {}/s)",
                    num(value),
                    human(*window),
                    comparison.word(),
                    num(*raise),
                    comparison.clear_word(),
                    num(*clear)
                )
            } else {
                format!(
                    "{name} resolved: {metric} of {who} changes by {}/s over {} (clear level \
                     {}/s, threshold {}/s)",
                    num(value),
                    human(*window),
                    num(*clear),
                    num(*raise)
                )
            },
        ),
        Condition::Absence { after } => (
            secs(ms(*after)),
            if firing {
                format!(
                    "{name}: no sample of {metric} from {who} for {} s (threshold {})",
                    num(value),
                    human(*after)
                )
            } else {
                format!(
                    "{name} resolved: {metric} from {who} is reporting again (threshold {})",
                    human(*after)
                )
            },
        ),
        Condition::RestartRate { count, window } => (
            f64::from(*count),
            if firing {
                format!(
                    "{name}: {who} restarted or exited {} times within {} (threshold {})",
                    num(value),
                    human(*window),
                    count
                )
            } else {
                format!(
                    "{name} resolved: {who} restarted or exited {} times within {} \
                     (threshold {})",
                    num(value),
                    human(*window),
                    count
                )
            },
        ),
        Condition::Signal { name: signal } => {
            let c = tr.candidate.as_deref();
            if let Some(c) = c {
                for r in &c.recommendations {
                    if !recommendations.contains(r) {
                        recommendations.push(r.clone());
                    }
                }
            }
            // A resolved candidate's message already says "resolved: ".
            let said = c.map_or_else(
                || signal.clone(),
                |c| {
                    c.message
                        .strip_prefix("resolved: ")
                        .unwrap_or(&c.message)
                        .to_string()
                },
            );
            (
                c.map_or(f64::NAN, |c| c.threshold),
                if firing {
                    format!("{name}: {said} (value {})", num(value))
                } else {
                    format!("{name} resolved: {said} (value {})", num(value))
                },
            )
        }
    };
    Alert {
        rule: rule.name.clone(),
        series: series.clone(),
        daemon,
        project: series
            .labels
            .get("project")
            .map(str::to_string)
            .or_else(|| tr.candidate.as_ref().and_then(|c| c.project.clone())),
        severity: rule.severity,
        state,
        value,
        threshold,
        since_ms: tr.episode_since,
        at_ms: now,
        message,
        recommendations,
        // Perfvisor could act when the rule has an action, or when the analyzer says so.
        auto_actionable: rule.action.is_some()
            || tr.candidate.as_ref().is_some_and(|c| c.auto_actionable),
    }
}

/// A duration in milliseconds, saturating.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn human(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms.is_multiple_of(3_600_000) => format!("{} h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{} min", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{} s", ms / 1000),
        _ => format!("{ms} ms"),
    }
}

/// `high_cpu`: a daemon using more than 90 % of a core for 5 minutes.
///
/// Rationale: short bursts are normal (a request spike, a compaction); five minutes near a
/// full core means the daemon is CPU-bound and latency will suffer. It clears only below
/// 80 % so a daemon hovering at the limit does not flap, and a 15-minute cooldown keeps a
/// recurring hot phase to one notification per quarter hour.
pub fn high_cpu_rule() -> ThresholdRule {
    ThresholdRule::above("high_cpu", names::PROCESS_CPU_UTILIZATION, 0.9)
        .clear_at(0.8)
        .for_duration(Duration::from_secs(5 * 60))
        .cooldown(Duration::from_secs(15 * 60))
        .severity(Severity::Warning)
        .recommend(
            "Profile the daemon (perf, flame graph) to find the hot path; if the load is \
             legitimate, give it more cores or spread it over more instances.",
        )
}

/// `memory_growth`: the analyzer's memory-leak verdict (steady RSS growth that does not
/// come back down).
///
/// Rationale: a leak is a trend, not a level, so a threshold rule cannot see it early; the
/// analyzer's trend and time-to-threshold judgement can. The rule gives that verdict
/// cooldown, repeat and flap handling; the one-hour cooldown matches how slowly leaks move.
pub fn memory_growth_rule() -> ThresholdRule {
    ThresholdRule::signal("memory_growth", "bottleneck.memory_leak")
        .cooldown(Duration::from_secs(60 * 60))
        .severity(Severity::Warning)
        .recommend(
            "Take two heap profiles some minutes apart and compare what grows; plan a \
             restart before memory runs out.",
        )
}

/// `descriptors_near_limit`: the analyzer's descriptor-exhaustion verdict (open file
/// descriptors approaching the process limit).
///
/// Rationale: running out of descriptors fails every new connection or file at once, so
/// it is critical; the analyzer already compares the count with the limit and its trend.
pub fn descriptors_near_limit_rule() -> ThresholdRule {
    ThresholdRule::signal("descriptors_near_limit", "bottleneck.descriptor_exhaustion")
        .cooldown(Duration::from_secs(30 * 60))
        .severity(Severity::Critical)
        .recommend(
            "Look for leaked sockets or files (ls /proc/<pid>/fd); raise the limit \
             (LimitNOFILE, ulimit -n) if the use is legitimate.",
        )
}

/// `crash_loop`: 3 restarts or exits of a daemon within 10 minutes.
///
/// Rationale: one restart is an incident the host handles; three in ten minutes means
/// restarting does not help and someone has to look. No automatic action: restarting a
/// crash-looping daemon is what already fails.
pub fn crash_loop_rule() -> ThresholdRule {
    ThresholdRule::restart_rate("crash_loop", 3, Duration::from_secs(10 * 60))
        .cooldown(Duration::from_secs(30 * 60))
        .severity(Severity::Critical)
        .recommend(
            "Read the daemon's last log lines and exit reasons in its lifecycle history; \
             check recent deployments and configuration changes.",
        )
}

/// `daemon_down`: no `process.uptime_seconds` sample from a daemon for 30 seconds.
///
/// Rationale: the watcher samples uptime on every probe, so 30 s of silence is several
/// missed probes — the process is gone or perfvisor cannot see it — while a single slow
/// probe does not fire. A daemon the host stops on purpose is forgotten, not alerted on.
pub fn daemon_down_rule() -> ThresholdRule {
    ThresholdRule::absent(
        "daemon_down",
        names::PROCESS_UPTIME,
        Duration::from_secs(30),
    )
    .on_source(SourceKind::Daemon)
    .severity(Severity::Critical)
    .recommend(
        "Check whether the process is still running and why it exited (lifecycle \
             history, system journal, OOM killer).",
    )
}

/// Whether the built-in `app_anomaly` rule ships enabled. Off until its precision on
/// labelled data is measured: an anomaly is a statistical surprise, not a failure, and
/// paging on every surprise is what made anomaly alerts noise. Flip this one constant to
/// ship it on; users switch it on with `[[rule]] name = "app_anomaly" enabled = true`.
pub const APP_ANOMALY_ENABLED: bool = false;

/// Candidate name the supervisor raises while storage writes fail.
pub const STORAGE_FAILING_SIGNAL: &str = "perfvisor.storage_failing";
/// Candidate name the supervisor raises when an actor exceeds its restart budget.
pub const DEGRADED_SIGNAL: &str = "perfvisor.degraded";

/// `app_anomaly`: an anomaly (level shift, spike) on a daemon's own app metrics, against
/// its learned baseline. Shipped disabled ([`APP_ANOMALY_ENABLED`]).
///
/// Rationale: app metrics (latency, queue depth, errors) are what users feel; process
/// (`process.*`), host (`system.*`) and perfvisor series move for many harmless reasons, so
/// no built-in rule follows their anomalies: they stay in reports. A 30-minute cooldown per
/// series keeps a restless metric to two notifications an hour.
pub fn app_anomaly_rule() -> ThresholdRule {
    ThresholdRule::signal("app_anomaly", "anomaly.*")
        .on_source(SourceKind::Daemon)
        .excluding_metrics("process.")
        .excluding_metrics("system.")
        .excluding_metrics("perfvisor.")
        .cooldown(Duration::from_secs(30 * 60))
        .severity(Severity::Warning)
        .enabled(APP_ANOMALY_ENABLED)
        .recommend(
            "Compare the metric with the daemon's recent deployments, load and \
             dependencies; tune or switch off app_anomaly if the change is expected.",
        )
}

/// `perfvisor_storage_failing`: perfvisor cannot write its history (disk full, read-only
/// file, a disk slower than the samples arrive).
///
/// Rationale: history that is not written is lost at the next restart, and the alert state
/// with it; critical, and it stays firing (re-sent to Alertmanager) until writes succeed
/// again. The supervisor already waits for a quiet period before resolving, so no timing
/// here.
pub fn storage_failing_rule() -> ThresholdRule {
    ThresholdRule::signal(crate::selfmon::STORAGE_FAILING_RULE, STORAGE_FAILING_SIGNAL)
        .on_source(SourceKind::Perfvisor)
        .severity(Severity::Critical)
}

/// `perfvisor_descriptors_high`: perfvisor holds more than 80 % of its descriptor limit
/// for 30 seconds.
///
/// Rationale: when perfvisor runs out, accepting API connections, spawning managed daemons
/// and writing its state fail together; 80 % leaves room to act (raise `LimitNOFILE`, find
/// who holds connections open). Clears below 70 % so it does not flap.
pub fn descriptors_high_rule() -> ThresholdRule {
    ThresholdRule::above("perfvisor_descriptors_high", names::PERFVISOR_FD_USAGE, 0.8)
        .clear_at(0.7)
        .for_duration(Duration::from_secs(30))
        .on_source(SourceKind::Perfvisor)
        .severity(Severity::Warning)
        .recommend(
            "See who holds connections to the API (ss -tnp) and raise perfvisor's limit \
             (LimitNOFILE in its systemd unit); perfvisor_process_open_fds shows the trend.",
        )
}

/// `perfvisor_degraded`: one of perfvisor's actors failed more often than its restart
/// budget allows.
///
/// Rationale: perfvisor is then watching less than it says; critical, and it stays firing
/// until perfvisor is restarted (the degraded state is cleared only by a restart).
pub fn degraded_rule() -> ThresholdRule {
    ThresholdRule::signal("perfvisor_degraded", DEGRADED_SIGNAL)
        .on_source(SourceKind::Perfvisor)
        .severity(Severity::Critical)
        .recommend(
            "Read perfvisor's log for the failing actor's panic messages and report them \
             as a bug; restart perfvisor once the cause is fixed.",
        )
}

/// The rules perfvisor ships (see the table in the module documentation), `app_anomaly`
/// among them, disabled.
pub fn default_rules() -> Vec<ThresholdRule> {
    vec![
        high_cpu_rule(),
        memory_growth_rule(),
        descriptors_near_limit_rule(),
        crash_loop_rule(),
        daemon_down_rule(),
        app_anomaly_rule(),
    ]
}

/// The rules about perfvisor itself. They ship even without the default rules: before
/// they were rules, these alerts were always delivered. A user switches one off by name.
pub fn perfvisor_rules() -> Vec<ThresholdRule> {
    vec![
        storage_failing_rule(),
        degraded_rule(),
        descriptors_high_rule(),
    ]
}

/// Every built-in rule by name: the default rules, perfvisor's own, and the signal rule of
/// each bottleneck kind.
pub fn builtin_rules() -> Vec<ThresholdRule> {
    let mut rules = default_rules();
    rules.extend(perfvisor_rules());
    let extra = bottleneck_rules(&rules);
    rules.extend(extra);
    rules
}

/// The bottleneck kinds the analyzer raises candidates for; each gets a signal rule.
pub const BOTTLENECK_SIGNALS: [&str; 8] = [
    "cpu_bound",
    "memory_pressure",
    "memory_leak",
    "io_bound",
    "descriptor_exhaustion",
    "restart_instability",
    "latency_regression",
    "host_contention",
];

/// The signal rules perfvisor ships for the analyzer's bottleneck candidates that no rule
/// in `rules` follows yet (so one candidate never makes two notifications). Each is named
/// after its candidate.
fn bottleneck_rules(rules: &[ThresholdRule]) -> Vec<ThresholdRule> {
    let followed: Vec<&str> = rules
        .iter()
        .filter_map(|r| match &r.condition {
            Condition::Signal { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    BOTTLENECK_SIGNALS
        .iter()
        .map(|kind| format!("bottleneck.{kind}"))
        .filter(|name| !followed.contains(&name.as_str()))
        .map(|name| ThresholdRule::signal(name.clone(), name))
        .collect()
}

/// The rules the engine runs: with `defaults`, the [`default_rules`] (a user rule of the
/// same name replaces one), perfvisor's own rules ([`perfvisor_rules`], also without
/// `defaults`), the user's rules, and with `defaults` a signal rule for every bottleneck kind
/// no rule follows yet. Disabled rules are in the list (so they can be shown) and never
/// evaluated. The live dispatcher and
/// `perfvisor replay` both build their engine from this.
pub fn effective_rules(user: &[ThresholdRule], defaults: bool) -> Vec<ThresholdRule> {
    let mut rules: Vec<ThresholdRule> = Vec::new();
    if defaults {
        rules.extend(default_rules());
    }
    rules.extend(perfvisor_rules());
    for rule in user {
        rules.retain(|r| r.name != rule.name);
        rules.push(rule.clone());
    }
    if defaults {
        let extra = bottleneck_rules(&rules);
        rules.extend(extra);
    }
    rules
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Sample;

    const M: &str = "process.cpu.utilization_ratio";
    const MIN: i64 = 60_000;

    fn key(daemon: &str, metric: &str) -> SeriesKey {
        SeriesKey::new(
            Source::Daemon(daemon.into()),
            metric.to_string(),
            Labels::empty(),
        )
    }

    fn cpu() -> SeriesKey {
        key("d1", M)
    }

    fn batch(series: &SeriesKey, points: &[(i64, f64)]) -> MetricBatch {
        MetricBatch {
            samples: points
                .iter()
                .map(|&(t, v)| Sample {
                    series: series.clone(),
                    kind: MetricKind::Gauge,
                    ts_ms: t,
                    value: v,
                })
                .collect(),
        }
    }

    /// One sample of `series` at `t`, evaluated with now = `t`.
    fn at(e: &mut RuleEngine, series: &SeriesKey, t: i64, v: f64) -> Vec<Notification> {
        e.evaluate(&batch(series, &[(t, v)]), t)
    }

    fn states(ns: &[Notification]) -> Vec<AlertState> {
        ns.iter().map(|n| n.alert.state).collect()
    }

    fn event(daemon: &str, t: i64, kind: LifecycleKind) -> LifecycleEvent {
        LifecycleEvent {
            daemon: daemon.into(),
            pid: 42,
            ts_ms: t,
            kind,
            detail: String::new(),
            intended: false,
        }
    }

    fn candidate(rule: &str, daemon: &str, state: AlertState, t: i64) -> Alert {
        Alert {
            rule: rule.into(),
            series: key(daemon, names::PROCESS_MEMORY_RSS),
            daemon: Some(daemon.into()),
            project: Some("ws1".into()),
            severity: Severity::Warning,
            state,
            value: 5e8,
            threshold: 1e9,
            since_ms: t,
            at_ms: t,
            message: "memory grows 2 MiB/min".into(),
            recommendations: vec!["From the analyzer.".into()],
            auto_actionable: false,
        }
    }

    /// Acceptance 1a: a value oscillating around the raise level with a lower clear level
    /// fires once, and resolves once when it really drops.
    #[test]
    fn hysteresis_oscillation_fires_once_resolves_once() {
        let mut e = RuleEngine::new(vec![ThresholdRule::above("cpu", M, 0.9).clear_at(0.8)]);
        let mut all = Vec::new();
        for i in 0..600 {
            let v = if i % 2 == 0 { 0.91 } else { 0.89 };
            all.extend(at(&mut e, &cpu(), i * 1000, v));
            all.extend(e.tick(i * 1000 + 500));
        }
        assert_eq!(states(&all), vec![AlertState::Firing]);
        assert_eq!(all[0].alert.since_ms, 0);
        let done = at(&mut e, &cpu(), 600_000, 0.5);
        assert_eq!(states(&done), vec![AlertState::Resolved]);
        assert_eq!(done[0].alert.since_ms, 0);
        assert!(e.tick(700_000).is_empty());
    }

    /// Acceptance 1b: without hysteresis the same input flaps; flap damping (4 changes in
    /// 10 min) detects it, holds it firing marked flapping, and resolves once when stable.
    #[test]
    fn flap_damping_holds_and_resolves_once() {
        let plain = ThresholdRule::above("cpu", M, 0.9);
        let mut e = RuleEngine::new(vec![plain.clone()]);
        let mut n = 0;
        for i in 0..600 {
            n += at(
                &mut e,
                &cpu(),
                i * 1000,
                if i % 2 == 0 { 0.91 } else { 0.89 },
            )
            .len();
        }
        assert_eq!(n, 600, "without damping every sample is a notification");

        let mut e = RuleEngine::new(vec![plain.flap_damping(4, Duration::from_secs(600))]);
        let mut all = Vec::new();
        for i in 0..600 {
            all.extend(at(
                &mut e,
                &cpu(),
                i * 1000,
                if i % 2 == 0 { 0.91 } else { 0.89 },
            ));
            all.extend(e.tick(i * 1000 + 500));
        }
        // fire, resolve, fire, resolve, then the fifth change starts flapping.
        use AlertState::{Firing as F, Resolved as R};
        assert_eq!(states(&all), vec![F, R, F, R, F]);
        assert!(all[..4].iter().all(|n| !n.flapping));
        assert!(all[4].flapping && !all[4].repeat);
        assert!(e.is_flapping("cpu", &cpu()));
        assert_eq!(e.firing().len(), 1, "held firing");
        assert!(at(&mut e, &cpu(), 600_000, 0.5).is_empty());
        // Last change: the resolution at 599 s; stable for 10 min at 1199 s.
        assert!(e.tick(1_198_999).is_empty());
        assert_eq!(e.firing().len(), 1);
        let done = e.tick(1_199_000);
        assert_eq!(states(&done), vec![R]);
        assert!(done[0].flapping);
        assert_eq!(done[0].alert.since_ms, 4_000);
        assert!(e.firing().is_empty());
        assert!(e.tick(2_000_000).is_empty());
    }

    /// Flapping that starts on a resolution sends a repeat of the firing marked flapping,
    /// and a series still breached when the window expires stays firing, unmarked.
    #[test]
    fn flapping_started_by_resolution_and_ending_while_breached() {
        let rule = ThresholdRule::above("cpu", M, 0.9).flap_damping(3, Duration::from_secs(60));
        let mut e = RuleEngine::new(vec![rule]);
        let mut all = Vec::new();
        for (i, v) in [0.95, 0.5, 0.95, 0.5].into_iter().enumerate() {
            all.extend(at(&mut e, &cpu(), i as i64 * 1000, v));
        }
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].alert.state, AlertState::Firing);
        assert!(all[3].repeat && all[3].flapping);
        assert!(at(&mut e, &cpu(), 4_000, 0.95).is_empty());
        assert!(e.tick(63_999).is_empty());
        assert!(
            e.tick(64_000).is_empty(),
            "still breached: stays firing quietly"
        );
        assert!(!e.is_flapping("cpu", &cpu()));
        assert_eq!(e.firing().len(), 1);
        assert_eq!(
            states(&at(&mut e, &cpu(), 65_000, 0.5)),
            vec![AlertState::Resolved]
        );
    }

    /// Acceptance 2a: repeats come exactly at fired + k·interval, one per due boundary, with
    /// the original since; none after resolution.
    #[test]
    fn repeat_interval_is_exact() {
        let rule = ThresholdRule::above("cpu", M, 0.9).repeat_every(Duration::from_secs(60));
        let mut e = RuleEngine::new(vec![rule]);
        let t = 1_000;
        assert_eq!(
            states(&at(&mut e, &cpu(), t, 0.95)),
            vec![AlertState::Firing]
        );
        assert!(e.tick(t + MIN - 1).is_empty());
        let r = e.tick(t + MIN);
        assert_eq!(r.len(), 1);
        assert!(r[0].repeat && r[0].alert.state == AlertState::Firing);
        assert_eq!((r[0].alert.since_ms, r[0].alert.at_ms), (t, t + MIN));
        assert!(e.tick(t + MIN + 500).is_empty());
        assert!(e.tick(t + 2 * MIN - 1).is_empty());
        assert_eq!(e.tick(t + 2 * MIN).len(), 1);
        // A late tick sends one repeat, and the schedule stays on the boundaries.
        assert_eq!(e.tick(t + 5 * MIN + 30_000).len(), 1);
        assert!(e.tick(t + 6 * MIN - 1).is_empty());
        assert_eq!(e.tick(t + 6 * MIN).len(), 1);
        assert!(at(&mut e, &cpu(), t + 6 * MIN + 1, 0.95).is_empty());
        assert_eq!(
            states(&at(&mut e, &cpu(), t + 6 * MIN + 2, 0.1)),
            vec![AlertState::Resolved]
        );
        assert!(e.tick(t + 7 * MIN).is_empty());
    }

    /// Acceptance 2b: a re-fire within cooldown is tracked but neither it nor its
    /// resolution is sent; the first re-fire at or after cooldown is.
    #[test]
    fn cooldown_is_exact() {
        let rule = ThresholdRule::above("cpu", M, 0.9).cooldown(Duration::from_secs(600));
        let mut e = RuleEngine::new(vec![rule]);
        assert_eq!(
            states(&at(&mut e, &cpu(), 0, 1.0)),
            vec![AlertState::Firing]
        );
        assert_eq!(
            states(&at(&mut e, &cpu(), 1_000, 0.0)),
            vec![AlertState::Resolved]
        );
        assert!(at(&mut e, &cpu(), 2_000, 1.0).is_empty());
        assert_eq!(
            e.state("cpu", &cpu()),
            RuleState::Firing {
                since: 2_000,
                notified: false,
                clearing_since: None
            }
        );
        assert_eq!(e.firing().len(), 1, "held back but tracked");
        assert!(e.tick(3_000).is_empty());
        assert!(
            at(&mut e, &cpu(), 4_000, 0.0).is_empty(),
            "its resolution is not sent"
        );
        assert!(at(&mut e, &cpu(), 599_999, 1.0).is_empty());
        assert!(at(&mut e, &cpu(), 599_999 + 1, 0.0).is_empty());
        let sent = at(&mut e, &cpu(), 600_001, 1.0);
        assert_eq!(states(&sent), vec![AlertState::Firing]);
        assert_eq!(sent[0].alert.since_ms, 600_001);
    }

    /// Acceptance 3a: `for` and `clear_for` are exact to the millisecond, through samples
    /// and ticks; an interruption restarts each timer.
    #[test]
    fn for_and_clear_for_are_exact() {
        let rule = ThresholdRule::above("cpu", M, 0.9)
            .clear_at(0.8)
            .for_duration(Duration::from_millis(5_000))
            .clear_for(Duration::from_millis(3_000));
        let mut e = RuleEngine::new(vec![rule]);
        assert!(at(&mut e, &cpu(), 1_000, 0.95).is_empty());
        assert!(e.tick(5_999).is_empty());
        assert_eq!(e.state("cpu", &cpu()), RuleState::Pending { since: 1_000 });
        // A dip into the hysteresis band while pending restarts `for`.
        assert!(at(&mut e, &cpu(), 3_000, 0.85).is_empty());
        assert!(at(&mut e, &cpu(), 4_000, 0.95).is_empty());
        assert!(e.tick(8_999).is_empty());
        let f = e.tick(9_000);
        assert_eq!(states(&f), vec![AlertState::Firing]);
        assert_eq!((f[0].alert.since_ms, f[0].alert.at_ms), (4_000, 9_000));
        // Clear holds from 10 s; a band value at 11 s restarts the clear timer.
        assert!(at(&mut e, &cpu(), 10_000, 0.5).is_empty());
        assert!(at(&mut e, &cpu(), 11_000, 0.85).is_empty());
        assert!(at(&mut e, &cpu(), 12_000, 0.5).is_empty());
        assert!(e.tick(14_999).is_empty());
        let r = e.tick(15_000);
        assert_eq!(states(&r), vec![AlertState::Resolved]);
        assert_eq!((r[0].alert.since_ms, r[0].alert.at_ms), (4_000, 15_000));
        // The same through samples only: fires on the sample at since + for exactly.
        let mut e = RuleEngine::new(vec![
            ThresholdRule::above("cpu", M, 0.9).for_duration(Duration::from_millis(10_000))
        ]);
        assert!(at(&mut e, &cpu(), 0, 1.0).is_empty());
        assert!(at(&mut e, &cpu(), 9_999, 1.0).is_empty());
        assert_eq!(
            states(&at(&mut e, &cpu(), 10_000, 1.0)),
            vec![AlertState::Firing]
        );
    }

    /// Acceptance 3b: absence fires exactly `after` past the last sample (via tick) and
    /// resolves on the next sample; a stopped daemon is forgotten, resolving its alert.
    #[test]
    fn absence_fires_after_silence_and_resolves_on_sample() {
        let up = key("d1", names::PROCESS_UPTIME);
        let mut e = RuleEngine::new(vec![daemon_down_rule()]);
        assert!(at(&mut e, &up, 1_000, 10.0).is_empty());
        assert!(e.tick(30_999).is_empty());
        let f = e.tick(31_000);
        assert_eq!(states(&f), vec![AlertState::Firing]);
        assert_eq!(f[0].alert.since_ms, 31_000);
        assert_eq!(f[0].alert.value, 30.0);
        assert_eq!(f[0].alert.threshold, 30.0);
        assert!(f[0]
            .alert
            .message
            .contains("no sample of process.uptime_seconds"));
        assert!(e.tick(40_000).is_empty());
        // NaN is not a sample.
        assert!(at(&mut e, &up, 41_000, f64::NAN).is_empty());
        let r = at(&mut e, &up, 50_000, 11.0);
        assert_eq!(states(&r), vec![AlertState::Resolved]);
        assert_eq!(r[0].alert.value, 49.0, "the gap that ended");
        // Down again, then stopped by the host: resolved and forgotten.
        assert_eq!(e.tick(80_000).len(), 1);
        let s = e.lifecycle(&event("d1", 81_000, LifecycleKind::Stopped), 81_000);
        assert_eq!(states(&s), vec![AlertState::Resolved]);
        assert!(s[0].alert.message.contains("stopped by the host"));
        assert!(e.tick(1_000_000).is_empty());
        assert!(e.snapshot().is_empty());
    }

    /// Intended stops and restarts are context: a stop's in-flight samples (taken before the
    /// stop) start no `daemon_down` timer, an intended restart forgets the absence timer and
    /// counts for no crash loop, and the new process's first sample starts a fresh timer.
    #[test]
    fn intended_stops_and_restarts_page_nothing() {
        let up = key("d1", names::PROCESS_UPTIME);
        let mut e = RuleEngine::new(vec![daemon_down_rule(), crash_loop_rule()]);
        let intended = |t, kind| LifecycleEvent {
            intended: true,
            ..event("d1", t, kind)
        };
        assert!(at(&mut e, &up, 1_000, 1.0).is_empty());
        assert!(e
            .lifecycle(&intended(2_000, LifecycleKind::Stopped), 2_000)
            .is_empty());
        // A sample the watcher took before the stop arrives after it.
        assert!(at(&mut e, &up, 1_900, 1.9).is_empty());
        assert!(e.tick(100_000).is_empty(), "no daemon_down after a stop");
        // Started again, then restarted on purpose five times: no crash loop, no down.
        assert!(at(&mut e, &up, 200_000, 0.1).is_empty());
        for k in 0..5 {
            let t = 201_000 + k * 40_000;
            for kind in [LifecycleKind::Exited, LifecycleKind::Restarted] {
                assert!(e.lifecycle(&intended(t, kind), t).is_empty());
            }
            // The new process's first sample comes 35 s later (a slow start).
            assert!(e.tick(t + 34_000).is_empty());
            assert!(at(&mut e, &up, t + 35_000, 0.1).is_empty());
        }
        assert!(e.tick(400_000).is_empty());
        // The restarted process then vanishes: that is an outage.
        let f = e.tick(500_000);
        assert_eq!(states(&f), vec![AlertState::Firing]);
        assert_eq!(f[0].alert.rule, "daemon_down");
        // And unintended exits still make a crash loop.
        let mut e = RuleEngine::new(vec![crash_loop_rule()]);
        let mut last = Vec::new();
        for t in [1_000, 2_000, 3_000] {
            last = e.lifecycle(&event("d1", t, LifecycleKind::Exited), t);
        }
        assert_eq!(states(&last), vec![AlertState::Firing]);
    }

    /// Acceptance 3c: restart rate fires on the n-th restart within the window (inclusive),
    /// not for the same count spread wider; it resolves when one leaves the window.
    #[test]
    fn restart_rate_fires_on_nth_within_window() {
        let mut e = RuleEngine::new(vec![crash_loop_rule()]);
        let ev = |e: &mut RuleEngine, t, k| e.lifecycle(&event("d1", t, k), t);
        assert!(ev(&mut e, 0, LifecycleKind::Exited).is_empty());
        assert!(ev(&mut e, 5 * MIN, LifecycleKind::Started).is_empty());
        assert!(ev(&mut e, 6 * MIN, LifecycleKind::Restarted).is_empty());
        let f = ev(&mut e, 10 * MIN, LifecycleKind::Restarted);
        assert_eq!(states(&f), vec![AlertState::Firing]);
        let a = &f[0].alert;
        assert_eq!(a.series, key("d1", RESTARTS_METRIC));
        assert_eq!((a.value, a.threshold, a.since_ms), (3.0, 3.0, 10 * MIN));
        assert_eq!(a.severity, Severity::Critical);
        assert!(
            e.tick(10 * MIN).is_empty(),
            "the event at 0 is still inside at 10 min"
        );
        let r = e.tick(10 * MIN + 1);
        assert_eq!(states(&r), vec![AlertState::Resolved]);
        // Spread over more than the window: never fires; other daemons are separate.
        let mut e = RuleEngine::new(vec![crash_loop_rule()]);
        for (d, t) in [
            ("a", 0),
            ("b", 1),
            ("a", 6 * MIN),
            ("a", 12 * MIN),
            ("b", 2),
        ] {
            assert!(ev_d(&mut e, d, t).is_empty());
        }
        fn ev_d(e: &mut RuleEngine, d: &str, t: i64) -> Vec<Notification> {
            e.lifecycle(&event(d, t, LifecycleKind::Exited), t)
        }
    }

    /// Acceptance 3d: a signal rule follows the analyzer's candidates with its own `for`,
    /// severity and recommendations; other candidates and other daemons are ignored.
    #[test]
    fn signal_rules_follow_candidates() {
        let rule = memory_growth_rule()
            .for_duration(Duration::from_secs(60))
            .for_daemon("d1");
        let mut e = RuleEngine::new(vec![rule]);
        let c = candidate("bottleneck.memory_leak", "d1", AlertState::Firing, 0);
        assert!(e.signal(&c, 0).is_empty());
        assert!(e
            .signal(
                &candidate("bottleneck.cpu_bound", "d1", AlertState::Firing, 0),
                0
            )
            .is_empty());
        assert!(e
            .signal(
                &candidate("bottleneck.memory_leak", "d2", AlertState::Firing, 0),
                0
            )
            .is_empty());
        assert!(e.tick(59_999).is_empty());
        let f = e.tick(60_000);
        assert_eq!(states(&f), vec![AlertState::Firing]);
        let a = &f[0].alert;
        assert_eq!(a.rule, "memory_growth");
        assert_eq!(a.since_ms, 0);
        assert_eq!(a.project.as_deref(), Some("ws1"));
        assert_eq!((a.value, a.threshold), (5e8, 1e9));
        assert!(a.message.contains("memory grows 2 MiB/min"));
        assert_eq!(
            a.recommendations.len(),
            2,
            "the rule's, then the analyzer's"
        );
        assert_eq!(a.recommendations[1], "From the analyzer.");
        assert_eq!(e.firing().len(), 1);
        let r = e.signal(
            &candidate("bottleneck.memory_leak", "d1", AlertState::Resolved, 90_000),
            90_000,
        );
        assert_eq!(states(&r), vec![AlertState::Resolved]);
        assert!(e.firing().is_empty());
    }

    /// Acceptance 3e: selectors by project, labels, daemon and host source.
    #[test]
    fn selectors_by_project_labels_daemon_and_host() {
        let with = |d: &str, pairs: &[(&str, &str)]| {
            SeriesKey::new(
                Source::Daemon(d.into()),
                M,
                Labels::from_pairs(pairs.iter().copied()),
            )
        };
        let mut e = RuleEngine::new(vec![
            ThresholdRule::above("proj", M, 0.9).for_project("ws1"),
            ThresholdRule::above("lab", M, 0.9)
                .with_label("tier", "db")
                .with_label("zone", "a"),
            ThresholdRule::above("one", M, 0.9).for_daemon("d2"),
            ThresholdRule::above("host", M, 0.9).on_host(),
            ThresholdRule::above("other_metric", "x", 0.9),
        ]);
        let fired = |e: &mut RuleEngine, s: &SeriesKey, t| {
            let mut v: Vec<String> = at(e, s, t, 1.0).into_iter().map(|n| n.alert.rule).collect();
            v.sort();
            v
        };
        assert_eq!(
            fired(&mut e, &with("d1", &[("project", "ws1")]), 0),
            vec!["proj"]
        );
        assert!(fired(&mut e, &with("d1", &[("project", "ws2")]), 0).is_empty());
        assert!(fired(&mut e, &with("d1", &[("tier", "db")]), 0).is_empty());
        assert_eq!(
            fired(&mut e, &with("d1", &[("tier", "db"), ("zone", "a")]), 0),
            vec!["lab"]
        );
        assert_eq!(fired(&mut e, &with("d2", &[]), 0), vec!["one"]);
        let host = SeriesKey::new(Source::Host, M, Labels::empty());
        assert_eq!(fired(&mut e, &host, 0), vec!["host"]);
        let own = SeriesKey::new(Source::Perfvisor, M, Labels::empty());
        assert!(fired(&mut e, &own, 0).is_empty());
        let n = at(&mut e, &with("d3", &[("project", "ws1")]), 0, 1.0);
        assert_eq!(n[0].alert.project.as_deref(), Some("ws1"));
        assert_eq!(n[0].alert.daemon.as_ref().map(DaemonId::as_str), Some("d3"));
    }

    /// Acceptance 4: snapshot → restore keeps a firing alert firing with its since, sends
    /// nothing on restore nor for a still-breached value, and resolves normally later.
    #[test]
    fn snapshot_restore_keeps_firing_without_resending() {
        let rules = || {
            vec![
                ThresholdRule::above("cpu", M, 0.9).for_duration(Duration::from_secs(5)),
                daemon_down_rule(),
                ThresholdRule::above("gone", M, 0.5),
            ]
        };
        let mut e = RuleEngine::new(rules());
        assert_eq!(at(&mut e, &cpu(), 1_000, 0.95)[0].alert.rule, "gone");
        assert_eq!(at(&mut e, &cpu(), 6_000, 0.95)[0].alert.rule, "cpu");
        assert!(at(&mut e, &key("d1", names::PROCESS_UPTIME), 6_000, 5.0).is_empty());
        let saved = e.snapshot();
        let json = serde_json::to_string(&saved).unwrap();
        let back: Vec<PersistedState> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, saved);

        // A new engine without the `gone` rule, restored 60 s later.
        let mut e = RuleEngine::new(rules().into_iter().take(2).collect());
        e.restore(back, 66_000);
        let firing = e.firing();
        assert_eq!(firing.len(), 1, "the `gone` rule's state is dropped");
        assert_eq!(
            (firing[0].rule.as_str(), firing[0].since_ms),
            ("cpu", 1_000)
        );
        assert!(
            e.tick(66_000).is_empty(),
            "absence restarts its timer at restore"
        );
        assert!(at(&mut e, &cpu(), 67_000, 0.97).is_empty());
        assert!(e.tick(68_000).is_empty());
        let r = at(&mut e, &cpu(), 69_000, 0.3);
        assert_eq!(states(&r), vec![AlertState::Resolved]);
        assert_eq!(r[0].alert.since_ms, 1_000);
        let down = e.tick(96_000);
        assert_eq!(
            states(&down),
            vec![AlertState::Firing],
            "absence works after restore"
        );
    }

    /// Notifications fill every alert field and carry the rule's action on firings only.
    #[test]
    fn notification_fields_and_action() {
        let rule = ThresholdRule::below("low", "app.free_ratio", 0.1)
            .clear_at(0.2)
            .severity(Severity::Critical)
            .recommend("Free some.")
            .action(RuleAction::RestartDaemon);
        let mut e = RuleEngine::new(vec![rule]);
        let s = SeriesKey::new(
            Source::Daemon("d9".into()),
            "app.free_ratio",
            Labels::from_pairs([("project", "p")]),
        );
        let f = e.evaluate(&batch(&s, &[(100, 0.05)]), 150);
        let n = &f[0];
        assert_eq!((n.repeat, n.flapping), (false, false));
        assert_eq!(n.action, Some(RuleAction::RestartDaemon));
        let a = &n.alert;
        assert_eq!(a.rule, "low");
        assert_eq!(a.series, s);
        assert_eq!(a.daemon, Some("d9".into()));
        assert_eq!(a.project.as_deref(), Some("p"));
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(
            (a.value, a.threshold, a.since_ms, a.at_ms),
            (0.05, 0.1, 100, 150)
        );
        assert_eq!(
            a.message,
            "low: app.free_ratio of daemon d9 is 0.05 (below threshold 0.1; clears at or above 0.2)"
        );
        assert_eq!(a.recommendations, vec!["Free some.".to_string()]);
        assert!(a.auto_actionable);
        assert!(at(&mut e, &s, 200, 0.15).is_empty(), "in the band");
        let r = at(&mut e, &s, 300, 0.25);
        assert_eq!(r[0].action, None);
        assert!(r[0].alert.message.contains("back to 0.25 (clear level 0.2"));
    }

    /// Rate-of-change rules measure the series' own change per second over a full window.
    #[test]
    fn rate_of_change_fires_and_clears() {
        let rule = ThresholdRule::rate_above("grow", "m", 10.0, Duration::from_secs(10));
        let mut e = RuleEngine::new(vec![rule]);
        let s = key("d1", "m");
        let mut all = Vec::new();
        for i in 0..=10 {
            all.extend(at(&mut e, &s, i * 1000, 0.0));
        }
        // +100 per second from 11 s: over [1 s, 11 s] the rate is exactly 10 (not above).
        all.extend(at(&mut e, &s, 11_000, 100.0));
        assert!(all.is_empty());
        let f = at(&mut e, &s, 12_000, 200.0);
        assert_eq!(states(&f), vec![AlertState::Firing]);
        assert_eq!(f[0].alert.value, 20.0);
        assert!(f[0].alert.message.contains("changes by 20/s over 10 s"));
        let mut r = Vec::new();
        for i in 13..=30 {
            r.extend(at(&mut e, &s, i * 1000, 200.0));
        }
        assert_eq!(states(&r), vec![AlertState::Resolved]);
        // Counter reset: the window restarts instead of reading a huge negative rate.
        let rule = ThresholdRule::rate_below("drop", "c", -1.0, Duration::from_secs(2));
        let mut e = RuleEngine::new(vec![rule]);
        let c = key("d1", "c");
        let counter = |t, v| MetricBatch {
            samples: vec![Sample {
                series: c.clone(),
                kind: MetricKind::Counter,
                ts_ms: t,
                value: v,
            }],
        };
        assert!(e.evaluate(&counter(0, 100.0), 0).is_empty());
        assert!(e.evaluate(&counter(2_000, 0.0), 2_000).is_empty());
        assert!(e.evaluate(&counter(4_000, 2.0), 4_000).is_empty());
    }

    /// NaN never fires or clears; old samples (out of order) are ignored.
    #[test]
    fn nan_and_out_of_order_samples_are_ignored() {
        let mut e = RuleEngine::new(vec![ThresholdRule::above("cpu", M, 0.9)]);
        assert!(at(&mut e, &cpu(), 0, f64::NAN).is_empty());
        assert!(at(&mut e, &cpu(), 0, f64::INFINITY).is_empty());
        assert_eq!(at(&mut e, &cpu(), 1_000, 1.0).len(), 1);
        assert!(at(&mut e, &cpu(), 2_000, f64::NAN).is_empty());
        assert!(e.evaluate(&batch(&cpu(), &[(500, 0.1)]), 3_000).is_empty());
        assert_eq!(e.firing().len(), 1);
        // Future timestamps are capped at now.
        let r = e.evaluate(&batch(&cpu(), &[(99_000, 0.1)]), 3_000);
        assert_eq!(r[0].alert.at_ms, 3_000);
    }

    /// `validate` names the field, the value and what is accepted, for every problem.
    #[test]
    fn validation_reports_every_problem() {
        let err = ThresholdRule::above("cpu", M, 0.9)
            .clear_at(0.95)
            .flap_damping(0, Duration::ZERO)
            .repeat_every(Duration::ZERO)
            .validate()
            .unwrap_err();
        let fields: Vec<_> = err.problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec!["clear", "flap.max_flips", "flap.window", "repeat_interval"]
        );
        let text = err.to_string();
        assert!(
            text.contains(
                "clear = 0.95 is not accepted; expected a level at or below the raise level 0.9"
            ),
            "{text}"
        );
        assert!(ThresholdRule::below("x", M, 0.1)
            .clear_at(0.05)
            .validate()
            .is_err());
        assert!(ThresholdRule::below("x", M, 0.1)
            .clear_at(0.2)
            .validate()
            .is_ok());
        let bad = [
            ThresholdRule::rate_above("r", M, 1.0, Duration::ZERO),
            ThresholdRule::absent("a", M, Duration::ZERO),
            ThresholdRule::restart_rate("c", 0, Duration::from_secs(1)),
            ThresholdRule::restart_rate("c", 1, Duration::from_secs(1)).for_project("p"),
            ThresholdRule::signal("s", " "),
            ThresholdRule::above("n", M, f64::NAN),
            ThresholdRule::above("", M, 1.0),
            ThresholdRule::above("h", M, 1.0).on_host().for_daemon("d"),
            ThresholdRule::new(
                "t",
                Condition::Absence {
                    after: Duration::from_secs(1),
                },
            ),
            ThresholdRule::above("e", M, 1.0).action(RuleAction::Exec {
                program: String::new(),
                args: vec![],
            }),
        ];
        for r in &bad {
            assert!(r.validate().is_err(), "{r:?}");
        }
        let dup = validate_rules(&[
            ThresholdRule::above("a", M, 1.0),
            ThresholdRule::above("a", M, 2.0),
        ]);
        assert_eq!(
            dup.unwrap_err().problems[0].expected,
            "a name no other rule has"
        );
        // Invalid rules in an engine never panic.
        let mut e = RuleEngine::new(bad.to_vec());
        for t in 0..5 {
            e.evaluate(&batch(&cpu(), &[(t, 1.0)]), t);
            e.lifecycle(&event("d1", t, LifecycleKind::Exited), t);
            e.signal(&candidate(" ", "d1", AlertState::Firing, t), t);
            e.tick(t);
        }
    }

    /// The shipped rules are valid and uniquely named, each with a recommendation.
    #[test]
    fn default_rules_are_valid() {
        let rules = default_rules();
        assert_eq!(validate_rules(&rules), Ok(()));
        assert_eq!(rules.len(), 6);
        assert!(rules.iter().all(|r| !r.recommendations.is_empty()));
        assert_eq!(validate_rules(&builtin_rules()), Ok(()));
        // high_cpu: 5 minutes at 0.95 fire, hovering at 0.85 does not resolve.
        let mut e = RuleEngine::new(rules);
        assert!(at(&mut e, &cpu(), 0, 0.95).is_empty());
        assert_eq!(at(&mut e, &cpu(), 5 * MIN, 0.95).len(), 1);
        assert!(at(&mut e, &cpu(), 6 * MIN, 0.85).is_empty());
        assert_eq!(at(&mut e, &cpu(), 7 * MIN, 0.8).len(), 1);
    }

    /// `group` splits one evaluation's notifications by rule or by daemon, in order.
    #[test]
    fn grouping_by_rule_and_daemon() {
        let mut e = RuleEngine::new(vec![
            ThresholdRule::above("a", M, 0.5),
            ThresholdRule::above("b", M, 0.5),
        ]);
        let mut samples = batch(&key("d1", M), &[(0, 1.0)]).samples;
        samples.extend(batch(&key("d2", M), &[(0, 1.0)]).samples);
        samples.extend(
            batch(
                &SeriesKey::new(Source::Host, M, Labels::empty()),
                &[(0, 1.0)],
            )
            .samples,
        );
        let ns = e.evaluate(&MetricBatch { samples }, 0);
        assert_eq!(ns.len(), 6);
        let by_rule = group(ns.clone(), GroupBy::Rule);
        assert_eq!(by_rule.len(), 2);
        assert!(by_rule[0].iter().all(|n| n.alert.rule == "a") && by_rule[0].len() == 3);
        let by_daemon = group(ns, GroupBy::Daemon);
        let sizes: Vec<_> = by_daemon.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, 2]);
        assert_eq!(by_daemon[2][0].alert.daemon, None);
        assert!(group(Vec::new(), GroupBy::Rule).is_empty());
    }

    /// `add` replaces a rule of the same name (dropping its states) and indexes new ones.
    #[test]
    fn add_replaces_by_name() {
        let mut e = RuleEngine::new(vec![ThresholdRule::above("cpu", M, 0.9)]);
        assert_eq!(at(&mut e, &cpu(), 0, 0.95).len(), 1);
        e.add(ThresholdRule::above("cpu", M, 0.99));
        assert_eq!(e.rules().len(), 1);
        assert_eq!(e.state("cpu", &cpu()), RuleState::Inactive);
        assert!(at(&mut e, &cpu(), 1_000, 0.95).is_empty());
        e.add(ThresholdRule::above("mem", "mem", 1.0));
        assert_eq!(e.rules().len(), 2);
        assert_eq!(at(&mut e, &key("d1", "mem"), 2_000, 2.0).len(), 1);
    }

    /// Acceptance 5: cost per `evaluate` sample with 20 rules × 1,000 series, for
    /// quiet series (nothing breaches) and noisy ones (uniform 0..1: constant firing,
    /// resolving and flapping).
    #[test]
    #[ignore]
    fn rules_cost() {
        let mut rules = Vec::new();
        for i in 0..12 {
            rules.push(
                ThresholdRule::above(format!("t{i}"), M, 0.5 + i as f64 * 0.04)
                    .clear_at(0.4)
                    .for_duration(Duration::from_secs(5))
                    .flap_damping(4, Duration::from_secs(600))
                    .repeat_every(Duration::from_secs(60)),
            );
        }
        for i in 0..4 {
            rules.push(ThresholdRule::rate_above(
                format!("r{i}"),
                M,
                0.01 * (i + 1) as f64,
                Duration::from_secs(10),
            ));
        }
        for i in 0..4 {
            rules.push(ThresholdRule::absent(
                format!("a{i}"),
                M,
                Duration::from_secs(30 + i),
            ));
        }
        assert_eq!(rules.len(), 20);
        let series: Vec<SeriesKey> = (0..1000)
            .map(|i| {
                SeriesKey::new(
                    Source::Daemon(format!("d{i}").into()),
                    M,
                    Labels::from_pairs([("project", format!("p{}", i % 10))]),
                )
            })
            .collect();
        for (label, lo, span) in [("quiet", 0.1, 0.0), ("noisy", 0.0, 1.0)] {
            let mut e = RuleEngine::new(rules.clone());
            let rounds = 200;
            let mut rng = fastrand::Rng::with_seed(7);
            let batches: Vec<MetricBatch> = (0..rounds)
                .map(|r| MetricBatch {
                    samples: series
                        .iter()
                        .map(|s| Sample {
                            series: s.clone(),
                            kind: MetricKind::Gauge,
                            ts_ms: r as i64 * 1000,
                            value: lo + span * rng.f64(),
                        })
                        .collect(),
                })
                .collect();
            let (mut notes, mut eval_ns, mut tick_ns) = (0, 0u128, 0u128);
            for (r, b) in batches.iter().enumerate() {
                let now = r as i64 * 1000;
                let t0 = std::time::Instant::now();
                notes += e.evaluate(b, now).len();
                eval_ns += t0.elapsed().as_nanos();
                let t1 = std::time::Instant::now();
                notes += e.tick(now + 500).len();
                tick_ns += t1.elapsed().as_nanos();
            }
            let samples = (rounds * series.len()) as u128;
            println!(
                "rules_cost {label}: 20 rules x 1000 series, {samples} samples: {} ns per \
                 evaluate sample ({} ns per sample x rule); tick {} us; {notes} notifications",
                eval_ns / samples,
                eval_ns / samples / 20,
                tick_ns / rounds as u128 / 1000,
            );
        }
    }

    fn anomaly(source: Source, metric: &str, state: AlertState, t: i64) -> Alert {
        let series = SeriesKey::new(
            source,
            metric.to_string(),
            Labels::from_pairs([("project", "ws1")]),
        );
        Alert {
            rule: format!("anomaly.{metric}"),
            daemon: series.source.daemon().cloned(),
            project: Some("ws1".into()),
            series,
            severity: Severity::Warning,
            state,
            value: 0.95,
            threshold: 0.92,
            since_ms: t,
            at_ms: t,
            message: format!("{metric}: LevelShiftUp to 0.95 from a baseline of 0.92"),
            recommendations: Vec::new(),
            auto_actionable: false,
        }
    }

    fn own(signal: &str, state: AlertState, t: i64) -> Alert {
        Alert {
            rule: signal.into(),
            series: SeriesKey::new(
                Source::Perfvisor,
                names::PERFVISOR_STORAGE_BLOCKED,
                Labels::empty(),
            ),
            daemon: None,
            project: None,
            severity: Severity::Critical,
            state,
            value: 42.0,
            threshold: 0.0,
            since_ms: t,
            at_ms: t,
            message: "perfvisor cannot write its history (disk full)".into(),
            recommendations: Vec::new(),
            auto_actionable: false,
        }
    }

    /// A signal ending in `.*` follows every candidate with that prefix, and only those;
    /// a `*` anywhere else is refused by validation.
    #[test]
    fn prefix_signals_follow_every_candidate_with_the_prefix() {
        assert!(follows("anomaly.*", "anomaly.app.latency_seconds"));
        assert!(follows("anomaly.*", "anomaly.system.cpu.load_average.15m"));
        assert!(!follows("anomaly.*", "anomalyx"));
        assert!(!follows("anomaly.*", "bottleneck.cpu_bound"));
        assert!(follows("bottleneck.cpu_bound", "bottleneck.cpu_bound"));
        assert!(!follows("bottleneck.cpu", "bottleneck.cpu_bound"));
        assert!(ThresholdRule::signal("a", "anomaly.*").validate().is_ok());
        for bad in ["*", "anomaly*", "anomaly.*.x", ".*"] {
            assert!(
                ThresholdRule::signal("a", bad).validate().is_err(),
                "{bad} accepted"
            );
        }
        // Selectors apply to the candidate's series: metric, daemon, project labels.
        let mut e = RuleEngine::new(vec![ThresholdRule::signal("lat", "anomaly.*")
            .metric("app.latency_seconds")
            .for_project("ws1")]);
        let d = || Source::Daemon("d1".into());
        assert!(e
            .signal(&anomaly(d(), "app.queue", AlertState::Firing, 0), 0)
            .is_empty());
        let f = e.signal(
            &anomaly(d(), "app.latency_seconds", AlertState::Firing, 0),
            0,
        );
        assert_eq!(states(&f), vec![AlertState::Firing]);
        assert_eq!(f[0].alert.rule, "lat");
    }

    /// The issue's noise: with the default rules, an anomaly on a host series, a perfvisor
    /// series or a process series raises nothing (app_anomaly ships disabled, and would not
    /// take those series anyway).
    #[test]
    fn host_and_process_anomalies_raise_nothing_with_defaults() {
        let mut e = RuleEngine::new(effective_rules(&[], true));
        for (source, metric) in [
            (Source::Host, "system.cpu.load_average.15m"),
            (
                Source::Perfvisor,
                "perfvisor.storage.maintenance.time_seconds",
            ),
            (Source::Daemon("d1".into()), "process.cpu.utilization_ratio"),
            (Source::Daemon("d1".into()), "app.latency_seconds"),
        ] {
            assert!(e
                .signal(&anomaly(source.clone(), metric, AlertState::Firing, 0), 0)
                .is_empty());
        }
        assert!(e.firing().is_empty());
        // Switched on, app_anomaly takes a daemon's app metric and nothing else.
        let mut e = RuleEngine::new(effective_rules(&[app_anomaly_rule().enabled(true)], true));
        let d = || Source::Daemon("d1".into());
        assert!(e
            .signal(
                &anomaly(d(), "process.cpu.utilization_ratio", AlertState::Firing, 0),
                0
            )
            .is_empty());
        assert!(e
            .signal(
                &anomaly(
                    Source::Host,
                    "system.cpu.load_average.15m",
                    AlertState::Firing,
                    0
                ),
                0
            )
            .is_empty());
        let f = e.signal(
            &anomaly(d(), "app.latency_seconds", AlertState::Firing, 0),
            0,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].alert.rule, "app_anomaly");
    }

    /// A user rule following `anomaly.*` on the host fires for a host anomaly, is in the
    /// firing set, and resolves when the candidate does.
    #[test]
    fn user_host_anomaly_rule_fires_and_resolves() {
        let rule = ThresholdRule::signal("host_anomaly", "anomaly.*").on_host();
        let mut e = RuleEngine::new(effective_rules(&[rule], true));
        let m = "system.cpu.load_average.15m";
        let f = e.signal(&anomaly(Source::Host, m, AlertState::Firing, 1000), 1000);
        assert_eq!(states(&f), vec![AlertState::Firing]);
        assert_eq!(f[0].alert.rule, "host_anomaly");
        assert!(f[0].alert.message.contains("LevelShiftUp"));
        assert_eq!(e.firing().len(), 1);
        let r = e.signal(&anomaly(Source::Host, m, AlertState::Resolved, 9000), 9000);
        assert_eq!(states(&r), vec![AlertState::Resolved]);
        assert!(e.firing().is_empty());
    }

    /// perfvisor's storage candidate goes through its built-in rule even without the
    /// default rules: in `firing()` while it fires, resolved when storage recovers.
    #[test]
    fn storage_failing_signal_is_in_the_firing_set_and_resolves() {
        let mut e = RuleEngine::new(effective_rules(&[], false));
        let f = e.signal(&own(STORAGE_FAILING_SIGNAL, AlertState::Firing, 0), 0);
        assert_eq!(states(&f), vec![AlertState::Firing]);
        let firing = e.firing();
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].rule, "perfvisor_storage_failing");
        assert_eq!(firing[0].severity, Severity::Critical);
        assert!(firing[0].message.contains("disk full"));
        let r = e.signal(
            &own(STORAGE_FAILING_SIGNAL, AlertState::Resolved, 5000),
            5000,
        );
        assert_eq!(states(&r), vec![AlertState::Resolved]);
        assert!(e.firing().is_empty());
        // The degraded candidate likewise.
        let f = e.signal(&own(DEGRADED_SIGNAL, AlertState::Firing, 6000), 6000);
        assert_eq!(f[0].alert.rule, "perfvisor_degraded");
    }

    /// Replacing the rule set: a removed rule's firing alert resolves with a message saying
    /// so and its state is gone; an unchanged rule keeps its state (no new notification);
    /// a changed rule starts afresh.
    #[test]
    fn replacing_rules_drops_removed_and_keeps_unchanged() {
        let api = ThresholdRule::above("api_cpu", M, 0.5);
        let keep = ThresholdRule::above("keep", M, 0.5);
        let disk = ThresholdRule::above("disk_low", M, 0.5);
        let mut e = RuleEngine::new(vec![api.clone(), keep.clone(), disk.clone()]);
        assert_eq!(at(&mut e, &cpu(), 0, 0.9).len(), 3);
        let (out, change) = e.replace(
            vec![keep.clone(), disk.clone().severity(Severity::Critical)],
            1000,
        );
        assert_eq!(change.removed, vec!["api_cpu".to_string()]);
        assert_eq!(change.changed, vec!["disk_low".to_string()]);
        assert!(change.added.is_empty());
        assert_eq!(out.len(), 2);
        let removed = out.iter().find(|n| n.alert.rule == "api_cpu").unwrap();
        assert_eq!(removed.alert.state, AlertState::Resolved);
        assert!(removed.alert.message.contains("rule was removed"));
        assert_eq!(e.state("api_cpu", &cpu()), RuleState::Inactive);
        assert!(matches!(e.state("keep", &cpu()), RuleState::Firing { .. }));
        let firing: Vec<String> = e.firing().into_iter().map(|a| a.rule).collect();
        assert_eq!(firing, vec!["keep".to_string()]);
        // The removed rule no longer fires; the kept one stays quiet (already announced);
        // the changed one fires afresh.
        let next = at(&mut e, &cpu(), 2000, 0.9);
        let rules: Vec<&str> = next.iter().map(|n| n.alert.rule.as_str()).collect();
        assert_eq!(rules, vec!["disk_low"]);
        // Replacing with the same set changes nothing.
        let same = e.rules().to_vec();
        let (out, change) = e.replace(same, 3000);
        assert!(out.is_empty() && change.is_empty());
    }

    /// `enabled = false` on a built-in (a user rule of the same name) takes it out of the
    /// evaluation but keeps it listed; its bottleneck signal gets no stand-in rule.
    #[test]
    fn disabled_builtin_is_listed_but_never_evaluated() {
        let off = high_cpu_rule().enabled(false);
        let leak_off = memory_growth_rule().enabled(false);
        let rules = effective_rules(&[off, leak_off], true);
        assert!(rules.iter().any(|r| r.name == "high_cpu" && !r.enabled));
        assert!(!rules.iter().any(|r| r.name == "bottleneck.memory_leak"));
        let mut e = RuleEngine::new(rules);
        assert!(at(&mut e, &cpu(), 0, 0.95).is_empty());
        assert!(at(&mut e, &cpu(), 10 * MIN, 0.95).is_empty());
        assert!(e
            .signal(
                &candidate("bottleneck.memory_leak", "d1", AlertState::Firing, 0),
                0
            )
            .is_empty());
        let listed = listed_rules(&[], &[high_cpu_rule().enabled(false)], true);
        let cpu_info = listed.iter().find(|r| r.name == "high_cpu").unwrap();
        assert_eq!(
            (cpu_info.origin, cpu_info.enabled),
            (RuleOrigin::Config, false)
        );
        assert_eq!(cpu_info.timing, "for 5 min, cooldown 15 min");
        let app = listed.iter().find(|r| r.name == "app_anomaly").unwrap();
        assert_eq!(
            (app.origin, app.enabled),
            (RuleOrigin::BuiltIn, APP_ANOMALY_ENABLED)
        );
        assert!(listed
            .iter()
            .any(|r| r.name == "perfvisor_storage_failing" && r.origin == RuleOrigin::BuiltIn));
    }

    /// `perfvisor_descriptors_high` fires once perfvisor's own descriptors stay above 80 %
    /// of its limit for 30 s (from `selfmon::descriptor_samples`), and clears below 70 %.
    #[test]
    fn descriptors_high_fires_on_perfvisor_descriptor_use() {
        let mut e = RuleEngine::new(vec![descriptors_high_rule()]);
        let mut all = Vec::new();
        for i in 0..40 {
            let b = MetricBatch {
                samples: crate::selfmon::descriptor_samples(i * 1000, 900, 1024),
            };
            all.extend(e.evaluate(&b, i * 1000));
            all.extend(e.tick(i * 1000 + 500));
        }
        assert_eq!(states(&all), vec![AlertState::Firing]);
        assert_eq!(all[0].alert.rule, "perfvisor_descriptors_high");
        assert!(all[0].alert.at_ms >= 30_000);
        let b = MetricBatch {
            samples: crate::selfmon::descriptor_samples(50_000, 600, 1024),
        };
        assert_eq!(states(&e.evaluate(&b, 50_000)), vec![AlertState::Resolved]);
    }
}
