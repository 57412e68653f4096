//! The rule engine: the state of every (rule, series) pair, what it persists, and the
//! entry points that take samples, lifecycle events, candidates and the clock.

use crate::series_table::SeriesTable;
use crate::types::FastMap;
use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::types::{
    Alert, AlertState, DaemonId, Labels, LifecycleEvent, LifecycleKind, MetricBatch, SeriesKey,
    Source, TimestampMs,
};

use super::*;

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
pub enum Verdict {
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
    pub level: Verdict,
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
pub(super) struct Tracked {
    pub(super) rule: usize,
    pub(super) state: RuleState,
    pub(super) level: Verdict,
    pub(super) value: f64,
    /// Latest observation time; older samples are ignored.
    pub(super) last_ts: TimestampMs,
    pub(super) announced: bool,
    pub(super) episode_since: TimestampMs,
    pub(super) last_notified: Option<TimestampMs>,
    pub(super) fired_at: TimestampMs,
    pub(super) repeats: i64,
    pub(super) flips: VecDeque<TimestampMs>,
    pub(super) flapping: bool,
    pub(super) last_alert: Option<Box<Alert>>,
    pub(super) last_seen: Option<TimestampMs>,
    pub(super) samples: VecDeque<(TimestampMs, f64)>,
    pub(super) restarts: VecDeque<TimestampMs>,
    pub(super) candidate: Option<Box<Alert>>,
}

impl Tracked {
    pub(super) fn new(rule: usize) -> Self {
        Tracked {
            rule,
            state: RuleState::Inactive,
            level: Verdict::Clear,
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

    pub(super) fn is_firing(&self) -> bool {
        matches!(self.state, RuleState::Firing { .. }) || (self.flapping && self.announced)
    }

    /// Nothing worth keeping: no episode, no history a timer or cooldown still needs.
    pub(super) fn idle(&self, rule: &ThresholdRule, now: TimestampMs) -> bool {
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
    /// Sample-fed rules by metric (looked up once per sample: foldhash, as the states).
    by_metric: FastMap<String, Vec<usize>>,
    states: SeriesTable<Vec<Tracked>>,
    /// The latest intended stop or restart of each daemon: samples it took before that
    /// moment (still in flight when the event came) feed no absence rule, so the old
    /// process's last samples cannot start a `daemon_down` timer after the stop; and
    /// while a stopped daemon is not started again, none of its samples do (its watcher's
    /// last probe, taken as it retires, is stamped after the stop).
    intended_at: HashMap<DaemonId, Intent>,
}

/// A daemon's latest intended stop or restart.
#[derive(Debug, Clone, Copy)]
struct Intent {
    /// When it was recorded.
    at: TimestampMs,
    /// True from a stop until the daemon's next start or restart.
    stopped: bool,
}

impl Intent {
    /// True when a sample of this daemon stamped `ts` must feed no absence rule.
    fn mutes(&self, ts: TimestampMs) -> bool {
        self.stopped || ts <= self.at
    }
}

impl RuleEngine {
    /// An engine with these rules (not validated here: see [`validate_rules`]; an invalid
    /// rule never panics, it just may never fire).
    pub fn new(rules: Vec<ThresholdRule>) -> Self {
        let mut e = RuleEngine {
            intended_at: HashMap::new(),
            rules,
            by_metric: FastMap::default(),
            states: SeriesTable::new(),
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
                    Source::Daemon(d) => intended_at.get(d).is_some_and(|i| i.mutes(s.ts_ms)),
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
                    states.get_or_insert_with(&s.series, Vec::new)
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
            let stopped = event.kind == LifecycleKind::Stopped;
            let intent = Intent {
                at: event.ts_ms,
                stopped,
            };
            intended_at.insert(event.daemon.clone(), intent);
            // Bounded: only the last hour's intents can still have samples in flight, and
            // stopped daemons are at most the daemons ever watched.
            intended_at.retain(|_, i| i.stopped || i.at >= event.ts_ms - 3_600_000);
        } else if matches!(
            event.kind,
            LifecycleKind::Started | LifecycleKind::Restarted
        ) {
            // Started again: its samples count from here (the old process's, stamped up
            // to the stop, still do not).
            if let Some(i) = intended_at.get_mut(&event.daemon) {
                i.stopped = false;
            }
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
                            Verdict::Raise
                        } else {
                            Verdict::Clear
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
                AlertState::Firing => Verdict::Raise,
                AlertState::Resolved => Verdict::Clear,
            };
            let cx = Cx { rule, series, now };
            with_slot(states, series, i, level == Verdict::Raise, |tr| {
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
                                if tr.level == Verdict::Raise {
                                    tr.value = gap;
                                } else {
                                    observe(&cx, tr, Verdict::Raise, gap, due, &mut out);
                                }
                            }
                        }
                    }
                    Condition::RestartRate { count, window } => {
                        prune_restarts(tr, now, ms(*window));
                        let n = tr.restarts.len();
                        if tr.level == Verdict::Raise && n < *count as usize {
                            observe(&cx, tr, Verdict::Clear, n as f64, now, &mut out);
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
            let v = self.states.get_or_insert_with(&p.series, Vec::new);
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
