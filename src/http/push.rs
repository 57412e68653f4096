//! What `POST /api/v1/metrics` may write: application metrics only. A pushed name can never
//! land on a series perfvisor produces itself (`process.*`, `system.*`, `perfvisor.*`,
//! `check.*`, `lifecycle.*`, compared after the Prometheus mapping so `process_x` is as
//! reserved as `process.x`), names and daemon ids are short and plain, two names that
//! `/metrics` would print alike are refused, and the pushed series are bounded in count
//! and in bytes, counted from the database at start so a restart does not reset the cap.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::Problem;
use perfvisor_actors::types::Source;

/// Most distinct series (daemon, metric) that pushed metrics may create: a client that
/// invents names cannot grow perfvisor's memory and history without bound.
pub const MAX_PUSHED_SERIES: usize = 10_000;

/// Longest pushed metric name, and longest daemon id, in bytes.
pub const MAX_PUSHED_NAME_BYTES: usize = 200;

/// Most bytes of names (metric plus daemon) over all pushed series.
pub const MAX_PUSHED_SERIES_BYTES: usize = 1 << 20;

/// Name prefixes perfvisor's own series use, as `/metrics` prints them (`.` → `_`):
/// pushed metrics may not start with any of them.
pub const RESERVED_PREFIXES: &[&str] = &["process", "system", "perfvisor", "check", "lifecycle"];

/// One pushed application sample.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Pushed {
    pub(super) metric: String,
    pub(super) value: f64,
    #[serde(default)]
    pub(super) daemon: Option<String>,
    #[serde(default)]
    pub(super) kind: Option<String>,
}

/// A metric name as `/metrics` prints it, before the kind's suffixes: every character
/// outside `[A-Za-z0-9_]` becomes `_`.
fn exposed(metric: &str) -> String {
    perfvisor_actors::names::underscored(metric)
}

/// The reserved prefix `metric` starts with, if any.
fn reserved(metric: &str) -> Option<&'static str> {
    let name = exposed(metric);
    RESERVED_PREFIXES.iter().copied().find(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
    })
}

/// Refuses a push with a name that is empty, long, outside `[A-Za-z0-9_.:-]` or reserved,
/// a daemon id that is long or holds control characters, a value that is not finite, or
/// an unknown kind. The message names the sample and what is accepted.
pub(super) fn check_pushed(samples: &[Pushed]) -> Result<(), Problem> {
    for (i, p) in samples.iter().enumerate() {
        if p.metric.trim().is_empty() {
            return Err(Problem::bad(
                format!("sample {i}: empty metric name"),
                "a non-empty metric name",
            ));
        }
        if p.metric.len() > MAX_PUSHED_NAME_BYTES {
            return Err(Problem::bad(
                format!(
                    "sample {i}: the metric name is {} bytes; the limit is {MAX_PUSHED_NAME_BYTES}",
                    p.metric.len()
                ),
                "a shorter metric name",
            ));
        }
        if let Some(c) = p
            .metric
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
        {
            return Err(Problem::bad(
                format!("sample {i}: metric name {:?} holds {c:?}", p.metric),
                "letters, digits, '_', '.', ':' and '-'",
            ));
        }
        if let Some(prefix) = reserved(&p.metric) {
            return Err(Problem::bad(
                format!(
                    "sample {i}: metric {:?} is in perfvisor's reserved namespace {prefix}.*",
                    p.metric
                ),
                format!(
                    "a name outside {} (for example app.{})",
                    RESERVED_PREFIXES
                        .iter()
                        .map(|p| format!("{p}.*"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.metric
                ),
            ));
        }
        if let Some(d) = &p.daemon {
            if d.trim().is_empty()
                || d.len() > MAX_PUSHED_NAME_BYTES
                || d.chars().any(char::is_control)
            {
                return Err(Problem::bad(
                    format!("sample {i}: daemon id of {} bytes", d.len()),
                    format!("a daemon id of 1 to {MAX_PUSHED_NAME_BYTES} bytes without control characters"),
                ));
            }
        }
        if !p.value.is_finite() {
            return Err(Problem::bad(
                format!("sample {i}: value {} is not finite", p.value),
                "a finite number",
            ));
        }
        if let Some(k) = &p.kind {
            if !matches!(k.as_str(), "gauge" | "counter" | "observation") {
                return Err(Problem::bad(
                    format!("sample {i}: kind {k:?}"),
                    "gauge, counter (an increment) or observation",
                ));
            }
        }
    }
    Ok(())
}

/// The series pushed so far: their keys, the Prometheus name each metric name is printed
/// as, and the bytes their names take.
#[derive(Debug, Default)]
pub(super) struct PushedSeries {
    series: HashSet<(Option<String>, String)>,
    /// Exposed name → the metric name that has it.
    exposed: HashMap<String, String>,
    bytes: usize,
}

impl PushedSeries {
    /// The pushed series already in the database: every series of a daemon or the host
    /// whose name is outside the reserved namespaces (what perfvisor writes there itself
    /// is inside them).
    pub(super) fn from_stored(keys: impl IntoIterator<Item = (Source, String)>) -> Self {
        let mut out = PushedSeries::default();
        for (source, metric) in keys {
            let daemon = match source {
                Source::Daemon(d) => Some(d.as_str().to_string()),
                Source::Host => None,
                _ => continue,
            };
            if reserved(&metric).is_some() {
                continue;
            }
            out.insert((daemon, metric));
        }
        out
    }

    /// How many series are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.series.len()
    }

    fn insert(&mut self, key: (Option<String>, String)) {
        self.bytes += key.1.len() + key.0.as_ref().map_or(0, String::len);
        self.exposed
            .entry(exposed(&key.1))
            .or_insert_with(|| key.1.clone());
        self.series.insert(key);
    }

    /// Adds the push's new series, or refuses the whole push when a name would be printed
    /// like another one, or the series would exceed [`MAX_PUSHED_SERIES`] or
    /// [`MAX_PUSHED_SERIES_BYTES`].
    pub(super) fn admit(&mut self, samples: &[Pushed]) -> Result<(), Problem> {
        let mut new: Vec<(Option<String>, String)> = Vec::new();
        let mut names: HashMap<String, &str> = HashMap::new();
        let mut bytes = 0;
        for p in samples {
            let key = (p.daemon.clone(), p.metric.clone());
            let mapped = exposed(&p.metric);
            let owner = self
                .exposed
                .get(&mapped)
                .map(String::as_str)
                .or_else(|| names.get(&mapped).copied());
            if let Some(other) = owner.filter(|o| *o != p.metric) {
                return Err(Problem::bad(
                    format!(
                        "metric {:?} would be exported as {mapped} like {other:?}",
                        p.metric
                    ),
                    format!(
                        "{other:?} itself, or a name that differs in more than '.', ':' and '-'"
                    ),
                ));
            }
            names.entry(mapped).or_insert(p.metric.as_str());
            if !self.series.contains(&key) && !new.contains(&key) {
                bytes += key.1.len() + key.0.as_ref().map_or(0, String::len);
                new.push(key);
            }
        }
        if self.series.len() + new.len() > MAX_PUSHED_SERIES {
            return Err(Problem::bad(
                format!(
                    "this push would create {} new series; {} of at most {MAX_PUSHED_SERIES} exist",
                    new.len(),
                    self.series.len()
                ),
                "samples of existing series, or fewer distinct metric names (the limit keeps memory bounded)",
            ));
        }
        if self.bytes + bytes > MAX_PUSHED_SERIES_BYTES {
            return Err(Problem::bad(
                format!(
                    "this push's new series names take {bytes} bytes; {} of at most {MAX_PUSHED_SERIES_BYTES} are taken",
                    self.bytes
                ),
                "samples of existing series, or shorter names (the limit keeps memory bounded)",
            ));
        }
        for key in new {
            self.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(metric: &str, daemon: Option<&str>) -> Pushed {
        Pushed {
            metric: metric.into(),
            value: 1.0,
            daemon: daemon.map(Into::into),
            kind: None,
        }
    }

    /// perfvisor's own namespaces are refused whatever the spelling; look-alikes outside
    /// them pass.
    #[test]
    fn reserved_namespaces_are_refused() {
        for bad in [
            "process.memory.usage_bytes",
            "process_memory_usage_bytes",
            "perfvisor.up",
            "perfvisor:up",
            "system-cpu",
            "check.ok",
            "lifecycle.restarts",
            "perfvisor",
        ] {
            let err = check_pushed(&[push(bad, Some("web"))]).unwrap_err();
            assert!(err.error.contains("reserved namespace"), "{bad}: {err}");
            assert!(err.accepted.contains("app."), "{bad}: {:?}", err.accepted);
        }
        for ok in [
            "app.requests",
            "processing.time",
            "systemd_units",
            "perfvisors",
        ] {
            assert!(check_pushed(&[push(ok, None)]).is_ok(), "{ok}");
        }
    }

    /// Names are bounded in length and charset, daemon ids in length.
    #[test]
    fn names_are_short_and_plain() {
        let long = "a".repeat(MAX_PUSHED_NAME_BYTES + 1);
        assert!(check_pushed(&[push(&long, None)])
            .unwrap_err()
            .error
            .contains("201 bytes"));
        assert!(check_pushed(&[push(&long[1..], None)]).is_ok());
        assert!(check_pushed(&[push("a b", None)]).is_err());
        assert!(check_pushed(&[push("a{b}", None)]).is_err());
        assert!(check_pushed(&[push("a.b:c-d_e", None)]).is_ok());
        assert!(check_pushed(&[push("m", Some(&long))]).is_err());
    }

    /// Two names printed alike in `/metrics` cannot both exist, in one push or across
    /// pushes; the same name again is fine.
    #[test]
    fn names_colliding_in_prometheus_are_refused() {
        let mut known = PushedSeries::default();
        known.admit(&[push("app.req", None)]).unwrap();
        known.admit(&[push("app.req", Some("web"))]).unwrap();
        let err = known.admit(&[push("app_req", None)]).unwrap_err();
        assert!(err.error.contains("app_req"), "{err}");
        let err = PushedSeries::default()
            .admit(&[push("x.y", None), push("x-y", None)])
            .unwrap_err();
        assert!(err.error.contains("\"x.y\""), "{err}");
    }

    /// The cap counts series and bytes, and starts from what the database holds.
    #[test]
    fn the_cap_bounds_series_and_bytes_and_counts_stored_series() {
        let stored = PushedSeries::from_stored([
            (Source::Host, "app.a".to_string()),
            (Source::Daemon(crate::DaemonId::new("web")), "app.b".into()),
            (
                Source::Daemon(crate::DaemonId::new("web")),
                "process.cpu.utilization".into(),
            ),
            (Source::Perfvisor, "app.c".into()),
        ]);
        assert_eq!(stored.len(), 2);
        let mut known = PushedSeries::default();
        let name = |i: usize| format!("app.{i:0>196}");
        let per_push: Vec<Pushed> = (0..100).map(|i| push(&name(i), None)).collect();
        known.admit(&per_push).unwrap();
        // 200-byte names: the byte cap (1 MiB) is reached near 5,243 series.
        let mut refused = None;
        for round in 1..100 {
            let batch: Vec<Pushed> = (0..100)
                .map(|i| push(&name(round * 100 + i), None))
                .collect();
            if let Err(e) = known.admit(&batch) {
                refused = Some(e);
                break;
            }
        }
        let err = refused.expect("the byte cap");
        assert!(err.error.contains("bytes"), "{err}");
        assert!(known.bytes <= MAX_PUSHED_SERIES_BYTES);
    }
}
