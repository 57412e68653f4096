//! `GET /metrics`: every series held, the per-source anomaly rate, the managed daemons'
//! states and perfvisor's own health in the Prometheus text exposition format.

use std::fmt::Write as _;

use actix_web::{web, HttpRequest, HttpResponse};

use super::guard::{authorize, Scope};
use super::handlers::managed_state_name;
use super::{Answer, State};
use crate::{DaemonId, MetricKind};
use perfvisor_actors::metric_names;
use perfvisor_actors::names::{self, label_name};
use perfvisor_actors::types::Source;

/// The per-source anomaly rate in `/metrics` (`perfvisor_anomalies_last_hour`).
pub const ANOMALIES_LAST_HOUR: &str = metric_names::PERFVISOR_ANOMALIES_LAST_HOUR;

/// A managed daemon's life-cycle state in `/metrics`
/// (`perfvisor_judgement_managed_state{daemon, state}`): one series per state of
/// [`MANAGED_STATES`], 1 for the current one, 0 for the others. Read from the manager when
/// `/metrics` is scraped (the engine does not know the manager), so it is not in history.
pub const MANAGED_STATE: &str = metric_names::JUDGEMENT_MANAGED_STATE;

/// Every managed state name ([`managed_state_name`]).
pub const MANAGED_STATES: [&str; 8] = [
    "waiting", "starting", "running", "backoff", "stopping", "stopped", "exited", "fatal",
];

/// A Prometheus metric name from a perfvisor one: dots and other characters to `_`,
/// counters end in `_total`, gauges do not end in `_count`.
pub fn prometheus_name(metric: &str, kind: MetricKind) -> String {
    let mut name = names::metric_name(metric);
    // Prometheus keeps `_count` for histograms and summaries: a gauge of items drops it
    // (`process.thread.count` → `process_thread`), as `process_open_fds` does.
    if kind == MetricKind::Gauge {
        if let Some(stem) = name.strip_suffix("_count") {
            name = stem.to_string();
        }
    }
    if kind == MetricKind::Counter && !name.ends_with("_total") {
        name.push_str("_total");
    }
    name
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders samples in the Prometheus text exposition format (version 0.0.4).
pub fn exposition(samples: &[crate::Sample], own: &[(String, MetricKind, f64)]) -> String {
    let mut families: std::collections::BTreeMap<String, (MetricKind, Vec<String>)> =
        Default::default();
    for s in samples {
        if !s.value.is_finite() && !s.value.is_nan() {
            continue;
        }
        let name = prometheus_name(s.series.metric.as_str(), s.kind);
        let mut labels: Vec<String> = Vec::new();
        match &s.series.source {
            Source::Daemon(d) => labels.push(format!("daemon=\"{}\"", escape_label(d.as_str()))),
            other => labels.push(format!("source=\"{}\"", escape_label(&other.as_text()))),
        }
        for (k, v) in s.series.labels.iter() {
            let k = label_name(k);
            if k != "daemon" && k != "source" {
                labels.push(format!("{k}=\"{}\"", escape_label(v)));
            }
        }
        let value = if s.value.is_nan() {
            "NaN".to_string()
        } else {
            format!("{}", s.value)
        };
        let entry = families.entry(name.clone()).or_insert((s.kind, Vec::new()));
        entry
            .1
            .push(format!("{name}{{{}}} {value}", labels.join(",")));
    }
    for (name, kind, value) in own {
        let n = prometheus_name(name, *kind);
        families
            .entry(n.clone())
            .or_insert((*kind, Vec::new()))
            .1
            .push(format!("{n} {value}"));
    }
    let mut out = String::new();
    for (name, (kind, lines)) in families {
        let t = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} perfvisor series {name}.");
        let _ = writeln!(out, "# TYPE {name} {t}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

/// perfvisor's own process CPU seconds and resident bytes, from /proc/self.
fn own_process() -> Vec<(String, MetricKind, f64)> {
    let mut out = Vec::new();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        if let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) {
            if let (Ok(u), Ok(s)) = (u.parse::<f64>(), s.parse::<f64>()) {
                out.push((
                    metric_names::PERFVISOR_CPU_TIME.into(),
                    MetricKind::Counter,
                    (u + s) / tick,
                ));
            }
        }
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
        if let Some(Ok(rss)) = statm.split_whitespace().nth(1).map(str::parse::<f64>) {
            out.push((
                metric_names::PERFVISOR_MEMORY_RSS.into(),
                MetricKind::Gauge,
                rss * page,
            ));
        }
    }
    out
}

pub(super) async fn metrics(req: HttpRequest, s: web::Data<State>) -> Answer {
    authorize(&req, &s, Scope::Read)?;
    let mut samples = s.pv.latest().await?;
    let status = s.pv.status().await?;
    // Anomaly candidates per source over the last hour: how restless each daemon and the
    // host are, without paging anyone. One series per source seen within the hour.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for (source, count) in s.pv.anomaly_rates().await? {
        samples.push(crate::Sample {
            series: crate::SeriesKey::new(source, ANOMALIES_LAST_HOUR, crate::Labels::empty()),
            kind: MetricKind::Gauge,
            ts_ms: now,
            value: count as f64,
        });
    }
    if let Some(m) = &s.manager {
        for d in m.status() {
            let current = managed_state_name(&d.state);
            for state in MANAGED_STATES {
                samples.push(crate::Sample {
                    series: crate::SeriesKey::new(
                        Source::Daemon(DaemonId::new(d.name.as_str())),
                        MANAGED_STATE,
                        crate::Labels::from_pairs([("state", state)]),
                    ),
                    kind: MetricKind::Gauge,
                    ts_ms: now,
                    value: f64::from(u8::from(state == current)),
                });
            }
        }
    }
    let mut own = own_process();
    own.push((
        metric_names::PERFVISOR_ACTOR_RESTARTS.into(),
        MetricKind::Counter,
        status.total_restarts() as f64,
    ));
    own.push((
        metric_names::PERFVISOR_RECORDER_DROPPED.into(),
        MetricKind::Counter,
        status.recorder.dropped as f64,
    ));
    own.push((
        metric_names::PERFVISOR_RECORDER_QUEUE.into(),
        MetricKind::Gauge,
        status.recorder.backlog as f64,
    ));
    own.push((
        metric_names::PERFVISOR_WATCHERS.into(),
        MetricKind::Gauge,
        status.watchers.len() as f64,
    ));
    own.push((metric_names::PERFVISOR_UP.into(), MetricKind::Gauge, 1.0));
    // Series perfvisor already reports about itself are not repeated.
    // Only perfvisor's own source counts: a series of another source with the same name
    // never replaces these.
    own.retain(|(n, _, _)| {
        !samples
            .iter()
            .any(|s| s.series.source == Source::Perfvisor && s.series.metric.as_str() == n.as_str())
    });
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(exposition(&samples, &own)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Labels, SeriesKey};

    /// Names and labels are made valid for Prometheus; counters get `_total`.
    #[test]
    fn exposition_is_valid_text_format() {
        let s = |metric: &str, kind, value| crate::Sample {
            series: SeriesKey::new(
                Source::Daemon(DaemonId::new("idx\"1")),
                metric.to_string(),
                Labels::from_pairs([("project", "ws 1"), ("9x", "y")]),
            ),
            kind,
            ts_ms: 0,
            value,
        };
        let text = exposition(
            &[
                s("process.cpu.time_seconds", MetricKind::Counter, 12.5),
                s("process.memory.usage_bytes", MetricKind::Gauge, 1e6),
            ],
            &[("perfvisor.up".into(), MetricKind::Gauge, 1.0)],
        );
        assert!(
            text.contains("# TYPE process_cpu_time_seconds_total counter"),
            "{text}"
        );
        assert!(text.contains("process_memory_usage_bytes{daemon=\"idx\\\"1\",l9x=\"y\",project=\"ws 1\"} 1000000"), "{text}");
        assert!(text.contains("perfvisor_up 1"), "{text}");
    }
}
