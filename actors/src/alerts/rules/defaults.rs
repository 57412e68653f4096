//! The built-in rules (the defaults, perfvisor's own rules, one per bottleneck kind) and
//! how they combine with the user's rules.

use std::time::Duration;

use crate::metric_names as names;
use crate::types::Severity;

use super::*;

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
pub(super) fn bottleneck_rules(rules: &[ThresholdRule]) -> Vec<ThresholdRule> {
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
