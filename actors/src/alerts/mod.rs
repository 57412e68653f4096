//! Alerting: the rule engine (thresholds with hysteresis, rate of change, absence, restart
//! rate, analyzer signals; for/clear_for, cooldown, repeat, flap damping, grouping), silences,
//! delivery to host actors, closures and sinks (webhook, Alertmanager, exec, log), actions
//! (restart through the host's `DaemonControl`, commands), and persistence of alert state.

mod action;
mod actor;
mod rules;
mod silence;
mod sinks;

pub use action::{ActionLimits, DaemonControl};
pub use actor::{AlertCallback, AlertDispatcher, DispatcherConfig, CALLBACK_QUEUE, TICK};
pub use rules::{
    crash_loop_rule, daemon_down_rule, default_rules, descriptors_near_limit_rule, effective_rules,
    group, high_cpu_rule, memory_growth_rule, validate_rules, Comparison, Condition, FlapDamping,
    GroupBy, Level, Notification, PersistedState, RuleAction, RuleEngine, RuleError, RuleProblem,
    RuleState, Selector, SourceKind, ThresholdRule,
};
pub use silence::{Matcher, Silence, SilenceError, Silences};
pub use sinks::{Sink, SinkConfig, SinkError, SinkSettings, SinkStats, SinkStatus};
