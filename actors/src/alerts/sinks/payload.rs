//! What sinks send: the versioned webhook document, Alertmanager's API v2 alerts with valid
//! label names, and RFC 3339 timestamps.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::types::{Alert, AlertState, TimestampMs};

use super::*;

/// The webhook and exec document.
#[derive(Serialize)]
pub(super) struct Envelope<'a> {
    version: u32,
    alerts: &'a [Alert],
}

pub(super) fn webhook_json(alerts: &[Alert]) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Envelope {
        version: PAYLOAD_VERSION,
        alerts,
    })
}

/// One alert in Alertmanager's API v2 (`postableAlert`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AlertmanagerAlert<'a> {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<&'a str>,
}

pub(super) fn alertmanager_json(
    alerts: &[Alert],
    generator_url: Option<&str>,
) -> serde_json::Result<Vec<u8>> {
    let alerts: Vec<_> = alerts
        .iter()
        .map(|a| alertmanager_alert(a, generator_url))
        .collect();
    serde_json::to_vec(&alerts)
}

pub(super) fn alertmanager_alert<'a>(
    alert: &Alert,
    generator_url: Option<&'a str>,
) -> AlertmanagerAlert<'a> {
    let mut labels = BTreeMap::new();
    let mut put = |name: String, value: &str| {
        // Alertmanager treats an empty label as absent; a collision keeps perfvisor's own.
        if !value.is_empty() {
            labels.entry(name).or_insert_with(|| value.to_owned());
        }
    };
    put("alertname".into(), &alert.rule);
    put("severity".into(), &alert.severity.to_string());
    let daemon = alert.daemon.as_ref().or(alert.series.source.daemon());
    put("daemon".into(), daemon.map_or("", |d| d.as_str()));
    put("project".into(), alert.project.as_deref().unwrap_or(""));
    put("metric".into(), alert.series.metric.as_str());
    put("source".into(), &alert.series.source.as_text());
    for (name, value) in alert.series.labels.iter() {
        put(label_name(name), value);
    }
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", alert.message.clone());
    if !alert.recommendations.is_empty() {
        annotations.insert("recommendations", alert.recommendations.join("\n"));
    }
    annotations.insert("value", alert.value.to_string());
    annotations.insert("threshold", alert.threshold.to_string());
    annotations.insert("auto_actionable", alert.auto_actionable.to_string());
    AlertmanagerAlert {
        labels,
        annotations,
        starts_at: rfc3339(alert.since_ms),
        ends_at: (alert.state == AlertState::Resolved).then(|| rfc3339(alert.at_ms)),
        generator_url,
    }
}

/// Label names as the exposition and remote write spell them ([`crate::names`]).
pub(super) use crate::names::label_name;

/// RFC 3339 in UTC with milliseconds, `2024-05-01T12:00:00.000Z`.
pub fn rfc3339(ms: TimestampMs) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}
