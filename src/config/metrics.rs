//! What the config knows of metric names: which ones perfvisor produces (a rule on any other
//! name sees only what an application pushes, so an unknown name is worth a warning, with
//! the closest real name when there is one), the unit a name's suffix promises, and how a
//! rule's threshold is written in that unit: a size on `*_bytes`, a duration on
//! `*_seconds`, 0 to 1 on `*_ratio`.

use perfvisor_actors::metric_names as names;
use toml::de::DeValue;

use super::reader::{distance, show, Ctx, Table};
use crate::units::{parse_duration, parse_size_value, DURATION_FORMS, SIZE_FORMS};

/// Metrics the `perfvisor` binary records besides the engine's: each health check's latency
/// and outcome (see `on_event` in `src/cli/run.rs`).
const BINARY_METRICS: &[&str] = &["check.latency_seconds", "check.ok"];

/// Name prefixes that belong to perfvisor: a name under them that it does not produce is
/// almost surely a mistake.
const OWN_PREFIXES: &[&str] = &["process.", "system.", "perfvisor.", "check."];

/// What a metric's name says its values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unit {
    /// `*_ratio`: a fraction from 0 to 1.
    Ratio,
    /// `process.cpu.utilization_ratio`: a fraction of one core, so up to the number of cores.
    CoreRatio,
    /// `*_bytes` and `*_bytes_per_second`: sizes.
    Bytes,
    /// `*_seconds`: durations.
    Seconds,
    /// Anything else: plain numbers.
    Plain,
}

/// The unit `metric`'s name promises.
pub(super) fn unit(metric: &str) -> Unit {
    if metric == names::PROCESS_CPU_UTILIZATION {
        Unit::CoreRatio
    } else if metric.ends_with("_ratio") {
        Unit::Ratio
    } else if metric.ends_with("_bytes") || metric.ends_with("_bytes_per_second") {
        Unit::Bytes
    } else if metric.ends_with("_seconds") {
        Unit::Seconds
    } else {
        Unit::Plain
    }
}

/// True when perfvisor (the engine, the binary or a profile guard) produces `metric`.
pub(super) fn known(metric: &str) -> bool {
    names::ALL.contains(&metric)
        || BINARY_METRICS.contains(&metric)
        || metric
            .strip_prefix(names::APP_OPERATION_PREFIX)
            .and_then(|rest| rest.strip_suffix(names::APP_OPERATION_DURATION_SUFFIX))
            .is_some_and(|op| !op.is_empty())
}

/// The words of a metric name (`process.cpu.utilization_ratio` → process, cpu, utilization,
/// ratio).
fn words(name: &str) -> Vec<&str> {
    name.split(['.', '_']).filter(|w| !w.is_empty()).collect()
}

/// Words that only say the unit: shared, they say nothing about what is measured.
const UNIT_WORDS: &[&str] = &["bytes", "seconds", "ratio", "count", "per", "second"];

/// The produced metric `metric` was most likely meant to be: a name a few edits away (a
/// misspelling), or else one sharing most of its words, its first among them (a missing or
/// swapped part). An application's own name (`api.latency_seconds`) shares too little
/// with any of them to get a suggestion.
pub(super) fn suggest(metric: &str) -> Option<&'static str> {
    let candidates = || names::ALL.iter().chain(BINARY_METRICS).copied();
    let limit = (metric.chars().count() / 6).max(2);
    let close = candidates()
        .map(|c| (distance(metric, c), c))
        .filter(|(d, _)| *d <= limit)
        .min();
    if let Some((_, c)) = close {
        return Some(c);
    }
    let mine = words(metric);
    let first = mine.first()?;
    candidates()
        .filter_map(|c| {
            let theirs = words(c);
            let shared: Vec<&&str> = mine.iter().filter(|w| theirs.contains(w)).collect();
            let meaningful = shared.iter().filter(|w| !UNIT_WORDS.contains(w)).count();
            (theirs.contains(first)
                && meaningful >= 2
                && shared.len() * 3 >= mine.len().max(theirs.len()) * 2)
                .then(|| (std::cmp::Reverse(shared.len()), distance(metric, c), c))
        })
        .min()
        .map(|(_, _, c)| c)
}

/// Warns about the rule's `metric` when perfvisor does not produce it.
pub(super) fn check_name(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, metric: &str) {
    if known(metric) {
        return;
    }
    let message = match (
        suggest(metric),
        OWN_PREFIXES.iter().find(|p| metric.starts_with(*p)),
    ) {
        (Some(s), _) => format!(
            "perfvisor produces no metric {metric:?}; did you mean {s:?}? (under this name the \
             rule sees only what an application pushes)"
        ),
        (None, Some(prefix)) => format!(
            "perfvisor produces no metric {metric:?}, and {prefix:?} names are its own; the \
             rule sees only what an application pushes under this name (the names perfvisor \
             produces are listed in the README)"
        ),
        (None, None) => format!(
            "perfvisor produces no metric {metric:?}; the rule sees it only if an application \
             pushes it (POST /api/v1/metrics) or records it through the embedding API"
        ),
    };
    let span = t.get("metric").map_or(t.span.clone(), |v| v.span());
    ctx.warn(&t.key_path("metric"), &span, message);
}

/// Logical CPUs of this machine: the most of a core-fraction metric any process can reach.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A threshold (`above`, `below`, `clear`) of a rule on `metric`, in the metric's unit: a
/// number, or a size on `*_bytes` metrics and a duration on `*_seconds` metrics; on a
/// `threshold` rule (not `rate`) of a `*_ratio` metric, 0 to 1.
pub(super) fn threshold(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    key: &str,
    metric: Option<&str>,
    rate: bool,
) -> Option<f64> {
    let v = t.get(key)?;
    let unit = metric.map_or(Unit::Plain, unit);
    let per = if rate { " (change per second)" } else { "" };
    let value = match (v.get_ref(), unit) {
        (DeValue::String(s), Unit::Bytes) => match parse_size_value(s) {
            Some(b) => b,
            None => {
                t.bad(
                    ctx,
                    key,
                    format!("{s:?} is not a size; expected a number of bytes{per} or {SIZE_FORMS}"),
                );
                return None;
            }
        },
        (DeValue::String(s), Unit::Seconds) => match parse_duration(s) {
            Some(d) => d.as_secs_f64(),
            None => {
                t.bad(
                    ctx,
                    key,
                    format!(
                        "{s:?} is not a duration; expected a number of seconds{per} or {DURATION_FORMS}"
                    ),
                );
                return None;
            }
        },
        (DeValue::String(s), _) => {
            let what = if parse_size_value(s).is_some() {
                Some("a size")
            } else if parse_duration(s).is_some() {
                Some("a duration")
            } else {
                None
            };
            let message = match (what, metric) {
                (Some(what), Some(m)) => format!(
                    "{s:?} is {what}, but {m:?} is not measured in bytes or seconds (sizes go \
                     with *_bytes metrics, durations with *_seconds metrics); expected a number{per}"
                ),
                _ => format!("expected a number{per}, found a string ({s:?})"),
            };
            t.bad(ctx, key, message);
            return None;
        }
        _ => {
            let expected = match unit {
                Unit::Bytes => format!("a number of bytes{per} or {SIZE_FORMS}"),
                Unit::Seconds => format!("a number of seconds{per} or {DURATION_FORMS}"),
                _ => format!("a number{per}"),
            };
            t.number(ctx, key, &expected)?
        }
    };
    if rate {
        return Some(value);
    }
    let (top, per_core) = match unit {
        Unit::Ratio => (1.0, String::new()),
        Unit::CoreRatio => {
            let n = cores();
            (
                n as f64,
                format!(
                    " (this one is per core: 1 is one whole core, so at most {n} on this \
                     machine's {n} cores)"
                ),
            )
        }
        _ => return Some(value),
    };
    if (0.0..=top).contains(&value) {
        return Some(value);
    }
    let hint = if value > top && value <= 100.0 * top {
        format!("; did you mean {}?", value / 100.0)
    } else {
        format!("; expected a number from 0 to {top}")
    };
    t.bad(
        ctx,
        key,
        format!(
            "{key} = {} is out of range for {:?}: ratios are 0–1{per_core}{hint}",
            show(v.get_ref()),
            metric.unwrap_or_default()
        ),
    );
    None
}
