//! The analyzer's alert candidates, as plain logic (no actix): which anomalies and
//! bottlenecks become `anomaly.<metric>` and `bottleneck.<kind>` candidates, when they
//! resolve, and what they carry. The analyzer actor and `perfvisor replay` both run this,
//! so a replay shows exactly the candidates the live analyzer would have raised.
//!
//! - A bottleneck that appears in a judgement raises a firing `bottleneck.<kind>` for its
//!   daemon (critical from severity 0.8, else warning) with the summary, the top
//!   recommendations and whether perfvisor could act itself; one that disappears resolves.
//! - An alert-worthy anomaly ([`AlertPolicy`]) raises a warning `anomaly.<metric>`; further
//!   anomalies on that series keep it firing; it resolves once the series has been quiet
//!   for the policy's quiet period.
//! - A bottleneck of the host's own app metrics (a latency regression of what the embedding
//!   application records about itself) raises `bottleneck.<kind>` with no daemon, its
//!   series the host's (`host`, the regressed metric), and resolves the same way.
//! - Candidates carry the daemon's `project` and labels (those of its series), so
//!   project- and label-scoped signal rules match bottlenecks as well as anomalies.
//!
//! Why the policy depends on the series' pace: a detector flags a fixed fraction of
//! ordinary samples, so a fixed score threshold gives a series sampled every second 300
//! times the false alerts per day of one sampled every five minutes. The spike threshold is
//! set from a budget of false alerts per day under Gaussian noise, so it rises with the
//! sample rate; and a burst of anomalies is one alert, the quiet period spanning several
//! samples as well as a few minutes.

use std::collections::{BTreeMap, HashMap};

use super::anomaly::AnomalyKind;
use super::judge::{AnomalyEvent, Bottleneck, BottleneckKind, HostJudgement, Judgement};
use super::state::AnalyzerState;
use crate::metric_names as names;
use crate::types::{
    Alert, AlertState, DaemonId, Labels, MetricBatch, SeriesKey, Severity, Source, TimestampMs,
};

/// Series without a sample for this long are forgotten (bounded memory under churn).
pub const EXPIRE_AFTER_MS: i64 = 60 * 60_000;

/// Default [`AlertPolicy::spike_score_floor`]: the detector's own threshold
/// ([`super::anomaly::DEFAULT_THRESHOLD`]), so on slow series the budget decides.
pub const DEFAULT_SPIKE_SCORE_FLOOR: f64 = super::anomaly::DEFAULT_THRESHOLD;
/// Default [`AlertPolicy::false_alerts_per_day`]: one false spike alert per series in ten
/// days of Gaussian noise. A spike then needs a score of 3.6 on a series sampled every
/// 5 minutes, 4.4 every 10 s, 4.9 every second.
pub const DEFAULT_FALSE_ALERTS_PER_DAY: f64 = 0.1;
/// Default [`AlertPolicy::quiet_ms`]: five minutes.
pub const DEFAULT_QUIET_MS: TimestampMs = 5 * 60_000;
/// Default [`AlertPolicy::quiet_samples`]: twelve sample intervals, so a burst of anomalies
/// on a slow series is one alert.
pub const DEFAULT_QUIET_SAMPLES: u32 = 12;

/// When an anomaly is worth an alert, and when that alert resolves.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertPolicy {
    /// Level shifts always alert (they are confirmed by several samples).
    pub level_shifts: bool,
    /// Spikes alert from this robust score whatever the pace.
    pub spike_score_floor: f64,
    /// False spike alerts a day allowed on Gaussian noise; sets the spike threshold from
    /// the series' pace (`None`: the floor alone).
    pub false_alerts_per_day: Option<f64>,
    /// An anomaly alert resolves after this long without another anomaly...
    pub quiet_ms: TimestampMs,
    /// ...and at least this many of the series' sample intervals.
    pub quiet_samples: u32,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            level_shifts: true,
            spike_score_floor: DEFAULT_SPIKE_SCORE_FLOOR,
            false_alerts_per_day: Some(DEFAULT_FALSE_ALERTS_PER_DAY),
            quiet_ms: DEFAULT_QUIET_MS,
            quiet_samples: DEFAULT_QUIET_SAMPLES,
        }
    }
}

/// The two-sided Gaussian tail beyond `z`, P(|Z| > z) (erfc by Abramowitz–Stegun 7.1.26,
/// relative error under 1e-7: plenty for a threshold).
fn gaussian_two_sided_tail(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    poly * (-x * x).exp()
}

impl AlertPolicy {
    /// The spike score that alerts on a series sampled every `interval_ms` (unknown: the
    /// floor).
    pub fn spike_threshold(&self, interval_ms: Option<f64>) -> f64 {
        let (Some(budget), Some(interval)) = (self.false_alerts_per_day, interval_ms) else {
            return self.spike_score_floor;
        };
        if !(interval > 0.0 && budget > 0.0) {
            return self.spike_score_floor;
        }
        let per_day = 86_400_000.0 / interval;
        let p = budget / per_day;
        // The smallest z (to 0.01) whose tail fits the budget; bisection, the tail falls.
        let (mut lo, mut hi) = (0.0_f64, 40.0_f64);
        for _ in 0..40 {
            let mid = (lo + hi) / 2.0;
            if gaussian_two_sided_tail(mid) > p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi.max(self.spike_score_floor)
    }

    /// Whether `event` is worth an alert on a series sampled every `interval_ms`.
    pub fn worthy(&self, event: &AnomalyEvent, interval_ms: Option<f64>) -> bool {
        match event.kind {
            AnomalyKind::LevelShiftUp | AnomalyKind::LevelShiftDown => self.level_shifts,
            AnomalyKind::Spike => event.score >= self.spike_threshold(interval_ms),
        }
    }

    /// How long a series must be quiet before its anomaly alert resolves.
    pub fn quiet_for(&self, interval_ms: Option<f64>) -> TimestampMs {
        let by_samples = interval_ms.map_or(0.0, |i| i * f64::from(self.quiet_samples));
        self.quiet_ms.max(by_samples as TimestampMs)
    }
}

/// Whether an anomaly is worth an alert under the default policy, pace unknown.
pub fn alert_worthy(event: &AnomalyEvent) -> bool {
    AlertPolicy::default().worthy(event, None)
}

/// A firing anomaly alert, the time of its series' latest anomaly and the series' pace
/// then.
#[derive(Clone, Debug)]
struct FiringAnomaly {
    last_ms: TimestampMs,
    interval_ms: Option<f64>,
    alert: Alert,
}

/// Turns anomalies and judgements into alert candidates (see the module documentation).
#[derive(Debug, Default)]
pub struct Signals {
    policy: AlertPolicy,
    /// Firing bottleneck alerts, by daemon and kind.
    bottlenecks: BTreeMap<(DaemonId, BottleneckKind), Alert>,
    /// Firing bottleneck alerts of the host's app metrics, by kind.
    host_bottlenecks: BTreeMap<BottleneckKind, Alert>,
    /// Firing anomaly alerts, by series.
    anomalies: HashMap<SeriesKey, FiringAnomaly>,
    /// A daemon's labels (those of its series), for its bottleneck candidates.
    labels: HashMap<DaemonId, Labels>,
}

impl Signals {
    /// Candidates under `policy`.
    pub fn new(policy: AlertPolicy) -> Self {
        Signals {
            policy,
            ..Signals::default()
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &AlertPolicy {
        &self.policy
    }

    /// Notes the labels of every daemon in `batch`. Call before [`Signals::anomalies`]
    /// with the same batch.
    pub fn observe(&mut self, batch: &MetricBatch) {
        let mut labelled: Option<&Source> = None;
        for s in &batch.samples {
            // Batches come grouped by daemon: look up each daemon once per run.
            if let Source::Daemon(d) = &s.series.source {
                // A histogram's quantile label belongs to that series, not to the daemon.
                if labelled != Some(&s.series.source)
                    && !s.series.labels.is_empty()
                    && s.series
                        .labels
                        .get(crate::collector::histogram::QUANTILE_LABEL)
                        .is_none()
                {
                    labelled = Some(&s.series.source);
                    match self.labels.get_mut(d) {
                        Some(l) if *l == s.series.labels => {}
                        // Prefer labels that name the project.
                        Some(l)
                            if l.get("project").is_some()
                                && s.series.labels.get("project").is_none() => {}
                        Some(l) => *l = s.series.labels.clone(),
                        None => {
                            self.labels.insert(d.clone(), s.series.labels.clone());
                        }
                    }
                }
            }
        }
    }

    /// The firing candidates for the anomalies [`AnalyzerState::add`] found in a batch.
    ///
    /// [`AnalyzerState::add`]: super::AnalyzerState::add
    /// The series' pace is `state`'s (the one that found them).
    pub fn anomalies(
        &mut self,
        found: Vec<(SeriesKey, AnomalyEvent)>,
        state: &AnalyzerState,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for (series, event) in found {
            let interval = state.interval_ms(&series);
            if !self.policy.worthy(&event, interval) {
                continue;
            }
            match self.anomalies.get_mut(&series) {
                Some(firing) => {
                    firing.last_ms = event.at_ms;
                    firing.interval_ms = interval;
                }
                None => {
                    let alert = anomaly_alert(&series, &event);
                    self.anomalies.insert(
                        series,
                        FiringAnomaly {
                            last_ms: event.at_ms,
                            interval_ms: interval,
                            alert: alert.clone(),
                        },
                    );
                    out.push(alert);
                }
            }
        }
        out
    }

    /// The candidates of a judgement at `now`: bottlenecks gone (resolved), bottlenecks
    /// new (firing), then anomaly alerts whose series has been quiet long enough
    /// (resolved).
    pub fn judged(
        &mut self,
        judgements: &BTreeMap<DaemonId, Judgement>,
        now: TimestampMs,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut current: BTreeMap<(DaemonId, BottleneckKind), (&Bottleneck, &Judgement)> =
            BTreeMap::new();
        for (daemon, judgement) in judgements {
            for b in &judgement.bottlenecks {
                current
                    .entry((daemon.clone(), b.kind))
                    .or_insert((b, judgement));
            }
        }
        let labels = &self.labels;
        reconcile(
            &mut self.bottlenecks,
            current,
            now,
            &mut out,
            |key, (b, judgement)| {
                let labels = labels.get(&key.0).cloned().unwrap_or_default();
                bottleneck_alert(&key.0, &labels, b, judgement, now)
            },
        );
        let mut quiet: Vec<SeriesKey> = self
            .anomalies
            .iter()
            .filter(|(_, f)| now - f.last_ms >= self.policy.quiet_for(f.interval_ms))
            .map(|(k, _)| k.clone())
            .collect();
        quiet.sort();
        for key in quiet {
            if let Some(FiringAnomaly { mut alert, .. }) = self.anomalies.remove(&key) {
                alert.state = AlertState::Resolved;
                alert.at_ms = now;
                out.push(alert);
            }
        }
        out
    }
}

impl Signals {
    /// The candidates of the host's judgement at `now`: bottlenecks of its own app metrics
    /// gone (resolved), then new ones (firing).
    pub fn judged_host(&mut self, host: &HostJudgement, now: TimestampMs) -> Vec<Alert> {
        let mut out = Vec::new();
        let current: BTreeMap<BottleneckKind, &Bottleneck> = host
            .app_bottlenecks
            .iter()
            .rev()
            .map(|b| (b.kind, b))
            .collect();
        reconcile(
            &mut self.host_bottlenecks,
            current,
            now,
            &mut out,
            |_, b| host_bottleneck_alert(b, now),
        );
        out
    }
}

/// Brings the firing bottleneck alerts in `firing` in line with the bottlenecks found now
/// (`current`): those no longer found are resolved, then each found one not firing yet fires
/// (made by `make`); both go to `out` in that order.
fn reconcile<K: Ord + Clone, V>(
    firing: &mut BTreeMap<K, Alert>,
    current: BTreeMap<K, V>,
    now: TimestampMs,
    out: &mut Vec<Alert>,
    mut make: impl FnMut(&K, V) -> Alert,
) {
    let gone: Vec<K> = firing
        .keys()
        .filter(|k| !current.contains_key(*k))
        .cloned()
        .collect();
    for key in gone {
        if let Some(mut alert) = firing.remove(&key) {
            alert.state = AlertState::Resolved;
            alert.at_ms = now;
            alert.message = format!("resolved: {}", alert.message);
            out.push(alert);
        }
    }
    for (key, found) in current {
        if firing.contains_key(&key) {
            continue;
        }
        let alert = make(&key, found);
        firing.insert(key, alert.clone());
        out.push(alert);
    }
}

/// A firing warning by `rule` about `series` at `at_ms`, its daemon and project read from
/// the series (none for the host's); the figures, words and severity are the caller's to
/// fill in. Every candidate the analyzer raises starts here, as does the probe with which
/// `perfvisor replay` asks the rules whether they follow a signal.
pub fn firing_candidate(rule: String, series: SeriesKey, at_ms: TimestampMs) -> Alert {
    Alert {
        rule,
        daemon: match &series.source {
            Source::Daemon(d) => Some(d.clone()),
            _ => None,
        },
        project: series.labels.get("project").map(str::to_string),
        series,
        severity: Severity::Warning,
        state: AlertState::Firing,
        value: 0.0,
        threshold: 0.0,
        since_ms: at_ms,
        at_ms,
        message: String::new(),
        recommendations: Vec::new(),
        auto_actionable: false,
    }
}

/// A bottleneck's candidate on `source` with `labels`: its first evidence's series (or the
/// kind's usual one), severity, figures and summary.
fn bottleneck_candidate(b: &Bottleneck, source: Source, labels: Labels, now: TimestampMs) -> Alert {
    let metric = b
        .evidence
        .first()
        .map(|e| e.metric.clone())
        .unwrap_or_else(|| bottleneck_metric(b.kind).to_string());
    let rule = format!("bottleneck.{}", b.kind.as_str());
    Alert {
        severity: if b.severity >= 0.8 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        value: b.evidence.first().map_or(b.severity, |e| e.observed),
        threshold: b.evidence.first().map_or(0.0, |e| e.reference),
        message: b.summary.clone(),
        ..firing_candidate(rule, SeriesKey::new(source, metric, labels), now)
    }
}

fn host_bottleneck_alert(b: &Bottleneck, now: TimestampMs) -> Alert {
    bottleneck_candidate(b, Source::Host, Labels::empty(), now)
}

fn anomaly_alert(series: &SeriesKey, event: &AnomalyEvent) -> Alert {
    let rule = format!("anomaly.{}", series.metric.as_str());
    Alert {
        value: event.value,
        threshold: event.baseline,
        message: format!(
            "{} of {}: {} to {:.4} from a baseline of {:.4} (robust score {:.1})",
            series.metric.as_str(),
            series.source.as_text(),
            kind_words(event.kind),
            event.value,
            event.baseline,
            event.score
        ),
        ..firing_candidate(rule, series.clone(), event.at_ms)
    }
}

/// An anomaly kind in words, for messages.
fn kind_words(kind: AnomalyKind) -> &'static str {
    match kind {
        AnomalyKind::Spike => "spike",
        AnomalyKind::LevelShiftUp => "level shift up",
        AnomalyKind::LevelShiftDown => "level shift down",
    }
}

/// The series an alert about a bottleneck points at.
fn bottleneck_metric(kind: BottleneckKind) -> &'static str {
    match kind {
        BottleneckKind::CpuBound | BottleneckKind::HostContention => names::PROCESS_CPU_UTILIZATION,
        BottleneckKind::MemoryPressure | BottleneckKind::MemoryLeak => names::PROCESS_MEMORY_RSS,
        BottleneckKind::IoBound => names::PROCESS_DISK_WRITE,
        BottleneckKind::DescriptorExhaustion => names::PROCESS_OPEN_FDS,
        BottleneckKind::RestartInstability => "lifecycle.restarts",
        BottleneckKind::LatencyRegression => "app.latency",
    }
}

fn bottleneck_alert(
    daemon: &DaemonId,
    labels: &Labels,
    b: &Bottleneck,
    j: &Judgement,
    now: TimestampMs,
) -> Alert {
    let recs: Vec<_> = j
        .recommendations
        .iter()
        .filter(|r| r.cause == b.kind)
        .collect();
    Alert {
        message: format!(
            "{} (score {:.0}, {:?})",
            b.summary, j.score.value, j.score.level
        ),
        recommendations: recs.iter().take(3).map(|r| r.action.clone()).collect(),
        auto_actionable: recs.iter().any(|r| r.auto_action.is_some()),
        ..bottleneck_candidate(b, Source::Daemon(daemon.clone()), labels.clone(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::anomaly::AnomalyKind;

    fn spike(score: f64) -> AnomalyEvent {
        AnomalyEvent {
            at_ms: 0,
            kind: AnomalyKind::Spike,
            value: 1.0,
            baseline: 0.0,
            score,
        }
    }

    /// A latency regression of the host's own metrics fires once as
    /// `bottleneck.latency_regression` with no daemon and the host's series, stays quiet while
    /// it lasts, and resolves when the judgement no longer finds it.
    #[test]
    fn host_app_bottleneck_fires_and_resolves() {
        use crate::analyzer::judge::{self, Evidence, HostView};
        let mut host = judge::judge_host(&HostView::default(), &[], &Default::default());
        host.app_bottlenecks.push(Bottleneck {
            kind: BottleneckKind::LatencyRegression,
            severity: 0.9,
            summary: "search.latency_seconds of host got slower".into(),
            evidence: vec![Evidence {
                metric: "search.latency_seconds".into(),
                observed: 10.0,
                reference: 1.2,
                detail: "stepped up".into(),
            }],
        });
        let mut signals = Signals::default();
        let fired = signals.judged_host(&host, 1_000);
        assert_eq!(fired.len(), 1, "{fired:?}");
        let a = &fired[0];
        assert_eq!(a.rule, "bottleneck.latency_regression");
        assert_eq!((a.daemon.as_ref(), a.state), (None, AlertState::Firing));
        assert_eq!(a.series.source, Source::Host);
        assert_eq!(a.series.metric.as_str(), "search.latency_seconds");
        assert_eq!(a.severity, Severity::Critical);
        assert!(signals.judged_host(&host, 2_000).is_empty());
        host.app_bottlenecks.clear();
        let resolved = signals.judged_host(&host, 3_000);
        assert_eq!(resolved.len(), 1);
        assert_eq!(
            (resolved[0].state, resolved[0].at_ms),
            (AlertState::Resolved, 3_000)
        );
        assert!(signals.judged_host(&host, 4_000).is_empty());
    }

    /// The spike threshold follows the daily budget: it rises with the sample rate and never
    /// falls under the floor; level shifts always alert.
    #[test]
    fn spike_threshold_rises_with_pace() {
        let p = AlertPolicy::default();
        let five_min = p.spike_threshold(Some(300_000.0));
        let ten_s = p.spike_threshold(Some(10_000.0));
        let one_s = p.spike_threshold(Some(1_000.0));
        assert!((five_min - 3.57).abs() < 0.02, "{five_min}");
        assert!((ten_s - 4.39).abs() < 0.05, "{ten_s}");
        assert!((one_s - 4.86).abs() < 0.05, "{one_s}");
        assert_eq!(p.spike_threshold(None), DEFAULT_SPIKE_SCORE_FLOOR);
        assert!(p.worthy(&spike(5.0), Some(1_000.0)));
        assert!(!p.worthy(&spike(4.5), Some(1_000.0)));
        let shift = AnomalyEvent {
            kind: AnomalyKind::LevelShiftDown,
            ..spike(0.1)
        };
        assert!(p.worthy(&shift, Some(1.0)));
        assert_eq!(p.quiet_for(Some(300_000.0)), 12 * 300_000);
        assert_eq!(p.quiet_for(Some(1_000.0)), DEFAULT_QUIET_MS);
    }

    fn scenario_batch(i: i64, labels: &Labels) -> MetricBatch {
        use crate::types::{MetricKind, Sample};
        let ts = T0 + i * 1000;
        let d = || Source::Daemon(DaemonId::new("d"));
        let latency = if i < 400 { 0.01 } else { 0.05 } + (i % 7) as f64 * 1e-4;
        let gauge = |source: Source, metric: &str, labels: Labels, value: f64| Sample {
            series: SeriesKey::new(source, metric.to_string(), labels),
            kind: MetricKind::Gauge,
            ts_ms: ts,
            value,
        };
        MetricBatch {
            samples: vec![
                gauge(
                    d(),
                    names::PROCESS_MEMORY_RSS,
                    labels.clone(),
                    1e8 + i as f64 * 2e5 + (i % 5) as f64 * 4096.0,
                ),
                gauge(
                    Source::Host,
                    names::SYSTEM_MEMORY_TOTAL,
                    Labels::empty(),
                    8e9,
                ),
                gauge(d(), "search.latency_seconds", labels.clone(), latency),
            ],
        }
    }

    const T0: TimestampMs = 1_767_225_600_000;

    /// On the analyzer's leak-and-latency-step scenario (state.rs), the candidates are those
    /// the actor raised before the extraction: one `anomaly.search.latency_seconds` warning
    /// at the step with the value and baseline, resolved after five quiet minutes, and a
    /// `bottleneck.memory_leak` firing at a judgement; and now they carry the daemon's
    /// project, which a project-scoped signal rule matches.
    #[test]
    fn scenario_candidates_carry_project() {
        use crate::alerts::{RuleEngine, ThresholdRule};

        let labels = Labels::from_pairs([("project", "ws1")]);
        let mut state = AnalyzerState::new(600);
        let mut signals = Signals::new(AlertPolicy::default());
        let mut candidates = Vec::new();
        for i in 0..600 {
            let batch = scenario_batch(i, &labels);
            signals.observe(&batch);
            let found = state.add(&batch);
            candidates.extend(signals.anomalies(found, &state));
            if i % 5 == 4 {
                let now = T0 + i * 1000;
                candidates.extend(signals.judged(&state.judge_all(now).1, now));
            }
        }
        let later = T0 + 1_000_000;
        candidates.extend(signals.judged(&state.judge_all(later).1, later));
        let anomaly: Vec<&Alert> = candidates
            .iter()
            .filter(|a| a.rule == "anomaly.search.latency_seconds")
            .collect();
        assert_eq!(anomaly.len(), 2, "{anomaly:#?}");
        let (fired, resolved) = (anomaly[0], anomaly[1]);
        assert_eq!(fired.state, AlertState::Firing);
        assert!(fired.at_ms >= T0 + 400_000 && fired.at_ms < T0 + 420_000);
        assert_eq!(fired.since_ms, fired.at_ms);
        assert!(fired.value > 0.04 && fired.threshold < 0.02, "{fired:?}");
        assert_eq!(fired.severity, Severity::Warning);
        assert_eq!(fired.daemon.as_ref().map(DaemonId::as_str), Some("d"));
        assert_eq!(fired.project.as_deref(), Some("ws1"));
        assert_eq!(resolved.state, AlertState::Resolved);
        assert_eq!(resolved.at_ms, later);
        let leak = candidates
            .iter()
            .find(|a| a.rule == "bottleneck.memory_leak")
            .expect("a leak candidate");
        assert_eq!(leak.state, AlertState::Firing);
        assert_eq!(leak.project.as_deref(), Some("ws1"));
        assert_eq!(leak.series.labels.get("project"), Some("ws1"));
        assert!(!leak.recommendations.is_empty());

        let mut engine = RuleEngine::new(vec![
            ThresholdRule::signal("ws1_leaks", "bottleneck.memory_leak").for_project("ws1"),
            ThresholdRule::signal("ws2_leaks", "bottleneck.memory_leak").for_project("ws2"),
        ]);
        let sent = engine.signal(leak, leak.at_ms);
        let rules: Vec<&str> = sent.iter().map(|n| n.alert.rule.as_str()).collect();
        assert_eq!(rules, vec!["ws1_leaks"]);
    }
}
