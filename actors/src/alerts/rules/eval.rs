//! One evaluation step of a (rule, series) state machine: observe a value, advance its
//! timers, fire, resolve, damp flapping.

use crate::series_table::SeriesTable;

use crate::types::{Alert, AlertState, DaemonId, MetricKind, SeriesKey, Source, TimestampMs};

use super::*;

/// The rule and series a state belongs to, and the time notifications are stamped with.
pub(super) struct Cx<'a> {
    pub(super) rule: &'a ThresholdRule,
    pub(super) series: &'a SeriesKey,
    pub(super) now: TimestampMs,
}

/// Forgets the absence states of `daemon`'s series, resolving the announced ones with a
/// message saying it `why`.
pub(super) fn forget_absence(
    rules: &[ThresholdRule],
    states: &mut SeriesTable<Vec<Tracked>>,
    daemon: &DaemonId,
    why: &str,
    now: TimestampMs,
    out: &mut Vec<Notification>,
) {
    let source = Source::Daemon(daemon.clone());
    for (series, v) in states.of_source_mut(&source) {
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
pub(super) fn with_slot(
    states: &mut SeriesTable<Vec<Tracked>>,
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
pub(super) fn creates(rule: &ThresholdRule, value: f64) -> bool {
    match &rule.condition {
        Condition::Threshold {
            comparison, raise, ..
        } => comparison.beyond(value, *raise),
        Condition::RateOfChange { .. } | Condition::Absence { .. } => true,
        Condition::RestartRate { .. } | Condition::Signal { .. } => false,
    }
}

/// Feeds one finite sample at `t` to a sample-fed rule's state.
pub(super) fn sample(
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
            observe(cx, tr, Verdict::Clear, gap, t, out);
        }
        Condition::RestartRate { .. } | Condition::Signal { .. } => {}
    }
}

pub(super) fn level_of(cmp: Comparison, value: f64, raise: f64, clear: f64) -> Verdict {
    if cmp.beyond(value, raise) {
        Verdict::Raise
    } else if !cmp.beyond(value, clear) {
        Verdict::Clear
    } else {
        Verdict::Hold
    }
}

pub(super) fn prune_restarts(tr: &mut Tracked, at: TimestampMs, window: i64) {
    while tr
        .restarts
        .front()
        .is_some_and(|&f| at.saturating_sub(f) > window)
    {
        tr.restarts.pop_front();
    }
}

/// Records the verdict of the condition at `t`, then moves the timers to `t`.
pub(super) fn observe(
    cx: &Cx<'_>,
    tr: &mut Tracked,
    level: Verdict,
    value: f64,
    t: TimestampMs,
    out: &mut Vec<Notification>,
) {
    tr.level = level;
    tr.value = value;
    tr.last_ts = tr.last_ts.max(t);
    tr.state = match (tr.state, level) {
        (RuleState::Inactive, Verdict::Raise) => RuleState::Pending { since: t },
        (s @ RuleState::Pending { .. }, Verdict::Raise) => s,
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
            clearing_since: (level == Verdict::Clear).then(|| clearing_since.unwrap_or(t)),
        },
    };
    advance(cx, tr, t, out);
}

/// Applies `for` and `clear_for` at `t`.
pub(super) fn advance(cx: &Cx<'_>, tr: &mut Tracked, t: TimestampMs, out: &mut Vec<Notification>) {
    match tr.state {
        RuleState::Pending { since }
            if tr.level == Verdict::Raise
                && t.saturating_sub(since) >= ms(cx.rule.for_duration) =>
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
pub(super) fn flip(rule: &ThresholdRule, tr: &mut Tracked, t: TimestampMs) -> bool {
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

pub(super) fn fire(
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

pub(super) fn resolve(cx: &Cx<'_>, tr: &mut Tracked, t: TimestampMs, out: &mut Vec<Notification>) {
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
pub(super) fn timers(cx: &Cx<'_>, tr: &mut Tracked, out: &mut Vec<Notification>) {
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

pub(super) fn notification(
    rule: &ThresholdRule,
    alert: Alert,
    repeat: bool,
    flapping: bool,
) -> Notification {
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
