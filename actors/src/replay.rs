//! Replay: recorded series through the real analyzer, candidate logic and rule engine on a
//! simulated clock, as fast as the CPU allows, collecting the notifications a user would
//! have received and the final reports. Used by `perfvisor replay` (operators tuning rules
//! on their own data) and by the NAB precision measurement (`nab_alert_score` in
//! `replay/nab.rs`).
//!
//! The clock: samples are fed in time order, in batches of one judge interval; after each
//! batch the analyzer judges at the interval's end and the engine's timers move there. The
//! clock does not stop in gaps between samples: it jumps to the next sample, so timers due
//! in a gap (an anomaly alert's quiet period, `clear_for`) fire at the first judgement
//! after it. Anomaly candidates are raised at their sample's time, bottleneck candidates
//! at the judgement's.

#[cfg(test)]
mod nab;

use std::time::Duration;

use serde::Serialize;

use crate::alerts::{RuleEngine, ThresholdRule};
use crate::analyzer::signals::{AlertPolicy, Signals, EXPIRE_AFTER_MS};
use crate::analyzer::{AnalyzerState, DaemonReport};
use crate::types::{Alert, MetricBatch, MetricKind, Sample, SeriesKey, TimestampMs};

/// One recorded series to replay.
#[derive(Clone, Debug)]
pub struct ReplaySeries {
    /// Its key (source, metric, labels) as the analyzer will see it.
    pub key: SeriesKey,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// Samples `(ms since the epoch, value)`, in any order.
    pub samples: Vec<(TimestampMs, f64)>,
}

/// How to replay.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// The rules the engine runs (build them with `alerts::effective_rules`).
    pub rules: Vec<ThresholdRule>,
    /// How often the analyzer judges (the live default is 5 s).
    pub judge_interval: Duration,
    /// Raw samples kept per series (the live default is 600).
    pub window: usize,
    /// When anomalies become candidates.
    pub policy: AlertPolicy,
    /// The judgement's thresholds (the live defaults unless a config says otherwise).
    pub judge: crate::analyzer::JudgeConfig,
}

impl ReplayConfig {
    /// Live defaults (judge every 5 s, windows of 600 samples, default policy) with `rules`.
    pub fn new(rules: Vec<ThresholdRule>) -> Self {
        ReplayConfig {
            rules,
            judge_interval: Duration::from_secs(5),
            window: 600,
            policy: AlertPolicy::default(),
            judge: crate::analyzer::JudgeConfig::default(),
        }
    }
}

/// What a replay produced.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayOutcome {
    /// The notifications the engine sent, in order: what a user would have received.
    pub notifications: Vec<Alert>,
    /// The analyzer's candidates, in order (what the rules were fed).
    pub candidates: Vec<Alert>,
    /// Each daemon's report at the end of the replay.
    pub reports: Vec<DaemonReport>,
    /// Samples replayed.
    pub samples: usize,
    /// The first and last sample times (`None` without samples).
    pub span_ms: Option<(TimestampMs, TimestampMs)>,
}

/// Replays `series` under `config` (see the module documentation for the clock).
pub fn replay(series: &[ReplaySeries], config: &ReplayConfig) -> ReplayOutcome {
    let mut merged: Vec<(TimestampMs, usize, f64)> = series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.samples.iter().map(move |&(t, v)| (t, i, v)))
        .collect();
    // Stable: samples of one time keep their series order.
    merged.sort_by_key(|&(t, i, _)| (t, i));
    let interval = i64::try_from(config.judge_interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let mut state = AnalyzerState::with_config(config.window, config.judge.clone());
    let mut signals = Signals::new(config.policy.clone());
    let mut engine = RuleEngine::new(config.rules.clone());
    let mut out = ReplayOutcome {
        notifications: Vec::new(),
        candidates: Vec::new(),
        reports: Vec::new(),
        samples: merged.len(),
        span_ms: merged.first().zip(merged.last()).map(|(a, b)| (a.0, b.0)),
    };
    let mut rest = merged.as_slice();
    while let Some(&(first, _, _)) = rest.first() {
        // The judge interval this sample falls in; the batch is every sample up to its end.
        let end = first
            .div_euclid(interval)
            .saturating_add(1)
            .saturating_mul(interval);
        let n = rest.iter().take_while(|s| s.0 < end).count();
        let (now_batch, later) = rest.split_at(n);
        rest = later;
        let batch = MetricBatch {
            samples: now_batch
                .iter()
                .map(|&(ts_ms, i, value)| Sample {
                    series: series[i].key.clone(),
                    kind: series[i].kind,
                    ts_ms,
                    value,
                })
                .collect(),
        };
        let batch_now = now_batch.last().map_or(first, |s| s.0);
        signals.observe(&batch);
        let found = state.add(&batch);
        for candidate in signals.anomalies(found, &state) {
            let at = candidate.at_ms;
            out.notifications
                .extend(engine.signal(&candidate, at).into_iter().map(|n| n.alert));
            out.candidates.push(candidate);
        }
        out.notifications.extend(
            engine
                .evaluate(&batch, batch_now)
                .into_iter()
                .map(|n| n.alert),
        );
        // The judgement at the interval's end, as the live analyzer's timer would.
        state.expire(end - EXPIRE_AFTER_MS);
        let (_, judgements) = state.judge_all(end);
        for candidate in signals.judged(&judgements, end) {
            out.notifications
                .extend(engine.signal(&candidate, end).into_iter().map(|n| n.alert));
            out.candidates.push(candidate);
        }
        out.notifications
            .extend(engine.tick(end).into_iter().map(|n| n.alert));
    }
    if let Some((_, last)) = out.span_ms {
        out.reports = state
            .daemons()
            .iter()
            .filter_map(|d| state.report(d, last))
            .collect();
    }
    out
}

/// A CSV file that cannot be replayed; the message names the file, the line and what is
/// accepted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CsvError {
    /// A timestamp that is not one of the accepted forms.
    #[error(
        "{file}:{line}: bad timestamp {value:?}; accepted: epoch seconds or milliseconds, \
         or YYYY-MM-DD HH:MM:SS[.fff] in UTC"
    )]
    Timestamp {
        /// The file.
        file: String,
        /// The line (from 1).
        line: usize,
        /// The text found.
        value: String,
    },
    /// A value that is not a number.
    #[error("{file}:{line}: bad value {value:?}; accepted: a number (1.5, -3, 2e9)")]
    Value {
        /// The file.
        file: String,
        /// The line (from 1).
        line: usize,
        /// The text found.
        value: String,
    },
    /// A line without two fields.
    #[error("{file}:{line}: {text:?} is not timestamp,value")]
    Fields {
        /// The file.
        file: String,
        /// The line (from 1).
        line: usize,
        /// The line's text.
        text: String,
    },
    /// No sample at all.
    #[error("{file}: no samples; expected lines of timestamp,value (a header line is optional)")]
    Empty {
        /// The file.
        file: String,
    },
}

/// Epoch numbers below this are seconds, above it milliseconds (1e11 s is the year 5138;
/// 1e11 ms is 1973).
const SECONDS_BELOW: f64 = 1e11;

/// Parses a timestamp into ms since the epoch: epoch seconds (integer or decimal) or
/// milliseconds (an integer from 1e11), or `YYYY-MM-DD HH:MM:SS[.fff]` in UTC (`T` for the
/// space and a final `Z` accepted). `None` when it is none of these.
pub fn parse_timestamp(text: &str) -> Option<TimestampMs> {
    let t = text.trim().trim_matches('"');
    if let Ok(n) = t.parse::<f64>() {
        if !n.is_finite() || t.contains(['e', 'E', 'n', 'N', 'i', 'I']) {
            return None;
        }
        let ms = if n.abs() < SECONDS_BELOW {
            n * 1000.0
        } else {
            n
        };
        return (ms.abs() < 9e15).then(|| ms.round() as TimestampMs);
    }
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = t.split_once([' ', 'T'])?;
    let (time, frac) = time.split_once('.').unwrap_or((time, ""));
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let d: Vec<&str> = date.split('-').collect();
    let c: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || c.len() != 3 {
        return None;
    }
    let (y, mo, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (h, mi, sec) = (num(c[0])?, num(c[1])?, num(c[2])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let millis = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        num(&digits)?
    };
    Some(
        ((crate::types::days_from_civil(y, mo, day) * 24 + h) * 60 + mi) * 60_000
            + sec * 1000
            + millis,
    )
}

/// Parses a CSV of `timestamp,value` lines (`file` names it in errors). A first line that
/// is not a sample is a header; blank lines are skipped; further fields are ignored.
pub fn parse_csv(file: &str, text: &str) -> Result<Vec<(TimestampMs, f64)>, CsvError> {
    let mut out = Vec::new();
    let mut first = true;
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        let header = std::mem::replace(&mut first, false);
        let mut fields = trimmed.split(',');
        let (Some(ts), Some(value)) = (fields.next(), fields.next()) else {
            if header {
                continue;
            }
            return Err(CsvError::Fields {
                file: file.into(),
                line,
                text: trimmed.into(),
            });
        };
        let value_text = value.trim().trim_matches('"');
        let Some(ts_ms) = parse_timestamp(ts) else {
            if header && value_text.parse::<f64>().is_err() {
                continue;
            }
            return Err(CsvError::Timestamp {
                file: file.into(),
                line,
                value: ts.trim().into(),
            });
        };
        let value = value_text.parse::<f64>().map_err(|_| CsvError::Value {
            file: file.into(),
            line,
            value: value_text.into(),
        })?;
        out.push((ts_ms, value));
    }
    if out.is_empty() {
        return Err(CsvError::Empty { file: file.into() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::effective_rules;
    use crate::types::{AlertState, DaemonId, Labels, Source};

    const T0: TimestampMs = 1_767_225_600_000;

    fn key(metric: &str) -> SeriesKey {
        SeriesKey::new(
            Source::Daemon(DaemonId::new("replay")),
            metric.to_string(),
            Labels::empty(),
        )
    }

    /// A level shift in a noisy series (one sample a minute, 10 → 20 at sample 500) gives
    /// one firing notification from the anomaly signal rule, at the shift's confirmation
    /// (within 12 samples of the step), and it resolves once the series is quiet.
    #[test]
    fn level_shift_alert_at_its_simulated_time() {
        let samples: Vec<(TimestampMs, f64)> = (0..800)
            .map(|i| {
                // Deterministic noise in [-0.5, 0.5).
                let noise = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
                let level = if i < 500 { 10.0 } else { 20.0 };
                (T0 + i * 60_000, level + noise)
            })
            .collect();
        let series = [ReplaySeries {
            key: key("app.queue_depth"),
            kind: MetricKind::Gauge,
            samples,
        }];
        let rules = effective_rules(
            &[ThresholdRule::signal(
                "anomaly.app.queue_depth",
                "anomaly.app.queue_depth",
            )],
            true,
        );
        let out = replay(&series, &ReplayConfig::new(rules));
        assert_eq!(out.samples, 800);
        let anomaly: Vec<&Alert> = out
            .notifications
            .iter()
            .filter(|a| a.rule == "anomaly.app.queue_depth")
            .collect();
        assert_eq!(anomaly.len(), 2, "{anomaly:#?}");
        assert_eq!(anomaly[0].state, AlertState::Firing);
        let step = T0 + 500 * 60_000;
        assert!(
            anomaly[0].at_ms >= step && anomaly[0].at_ms < step + 12 * 60_000,
            "fired at minute {}",
            (anomaly[0].at_ms - T0) / 60_000
        );
        assert_eq!(anomaly[1].state, AlertState::Resolved);
        assert_eq!(out.reports.len(), 1);
    }

    /// Without a rule that follows anomaly candidates, candidates are made but nothing is
    /// notified: replay shows what the rules let through, not the analyzer's raw output.
    #[test]
    fn candidates_without_rule_are_not_notified() {
        let samples: Vec<(TimestampMs, f64)> = (0..300)
            .map(|i| {
                (
                    T0 + i * 1000,
                    if i < 200 {
                        1.0 + (i % 3) as f64 * 0.01
                    } else {
                        50.0
                    },
                )
            })
            .collect();
        let series = [ReplaySeries {
            key: key("app.x"),
            kind: MetricKind::Gauge,
            samples,
        }];
        let out = replay(&series, &ReplayConfig::new(Vec::new()));
        assert!(!out.candidates.is_empty());
        assert!(out.notifications.is_empty(), "{:#?}", out.notifications);
    }

    /// The accepted timestamp forms parse to the same instant; NAB's format included.
    #[test]
    fn timestamps_in_every_accepted_form() {
        let t = 1_395_000_000_000; // 2014-03-16 20:00:00 UTC
        for text in [
            "1395000000",
            "1395000000000",
            "1395000000.0",
            "2014-03-16 20:00:00",
            "2014-03-16T20:00:00Z",
            "2014-03-16 20:00:00.000000",
            "\"2014-03-16 20:00:00\"",
        ] {
            assert_eq!(parse_timestamp(text), Some(t), "{text}");
        }
        for bad in [
            "",
            "yesterday",
            "2014-13-01 00:00:00",
            "2014-03-16",
            "1e9",
            "NaN",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    /// A header is optional; bad timestamps, bad values, lines without a comma and empty
    /// files are refused with the file and line and what is accepted.
    #[test]
    fn csv_errors_name_file_and_line() {
        let ok = parse_csv(
            "a.csv",
            "timestamp,value\n2014-03-16 20:00:00,1.5\n\n1395000300,2\n",
        );
        assert_eq!(
            ok,
            Ok(vec![(1_395_000_000_000, 1.5), (1_395_000_300_000, 2.0)])
        );
        assert_eq!(parse_csv("a.csv", "1395000000,1\n").map(|v| v.len()), Ok(1));
        let err = |text: &str| match parse_csv("d/a.csv", text) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("accepted {v:?}"),
        };
        let e = err("timestamp,value\n1395000000,1\nlater,2\n");
        assert!(e.starts_with("d/a.csv:3: bad timestamp \"later\""), "{e}");
        assert!(e.contains("YYYY-MM-DD HH:MM:SS"), "{e}");
        let e = err("1395000000,1\n1395000300,high\n");
        assert!(
            e.starts_with("d/a.csv:2: bad value \"high\"; accepted: a number"),
            "{e}"
        );
        let e = err("1395000000,1\n1395000300\n");
        assert!(
            e.starts_with("d/a.csv:2: \"1395000300\" is not timestamp,value"),
            "{e}"
        );
        let e = err("");
        assert!(e.starts_with("d/a.csv: no samples"), "{e}");
        let e = err("timestamp,value\n");
        assert!(e.starts_with("d/a.csv: no samples"), "{e}");
    }
}
