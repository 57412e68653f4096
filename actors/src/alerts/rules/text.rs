//! What an alert says: its summary and description in words, with the numbers a person
//! needs (values, thresholds, durations) formatted for people.

use std::time::Duration;

use crate::types::{Alert, AlertState, SeriesKey, TimestampMs};

use super::*;

pub(super) fn build_alert(
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
pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

pub(super) fn num(v: f64) -> String {
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

pub(super) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms.is_multiple_of(3_600_000) => format!("{} h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{} min", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{} s", ms / 1000),
        _ => format!("{ms} ms"),
    }
}
