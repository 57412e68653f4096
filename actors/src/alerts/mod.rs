//! Alerting: the rule engine (thresholds with hysteresis, rate of change, absence, restart
//! rate, analyzer signals; for/clear_for, cooldown, repeat, flap damping, grouping), silences,
//! delivery to host actors, closures and sinks (webhook, Alertmanager, exec, log), actions
//! (restart through the host's `DaemonControl`, commands), and persistence of alert state.

mod action;
mod actor;
mod rate;
mod rules;
mod silence;
mod sinks;
mod stream;

pub use action::{ActionLimits, AsyncDaemonControl, BoxFuture, ControlSlot, DaemonControl};
pub use actor::{
    AlertCallback, AlertDispatcher, AlertingChange, DispatcherConfig, CALLBACK_QUEUE,
    CONFIG_SILENCE, TICK,
};
pub use rate::{AnomalyRates, ANOMALY_RATE_CAP, ANOMALY_RATE_WINDOW_MS};
pub use rules::{
    app_anomaly_rule, builtin_rules, crash_loop_rule, daemon_down_rule, default_rules,
    degraded_rule, descriptors_near_limit_rule, effective_rules, follows, group, high_cpu_rule,
    listed_rules, memory_growth_rule, perfvisor_rules, storage_failing_rule, validate_rules,
    Comparison, Condition, FlapDamping, GroupBy, Notification, PersistedState, RuleAction,
    RuleEngine, RuleError, RuleInfo, RuleOrigin, RuleProblem, RuleState, RulesChange, Selector,
    SourceKind, ThresholdRule, Verdict, APP_ANOMALY_ENABLED, DEGRADED_SIGNAL,
    STORAGE_FAILING_SIGNAL,
};
pub use silence::{Matcher, Silence, SilenceError, Silences};
pub use sinks::{rfc3339, Sink, SinkConfig, SinkError, SinkSettings, SinkStats, SinkStatus};
pub use stream::{AlertStream, Offer, StreamSender, STREAM_BUFFER};
