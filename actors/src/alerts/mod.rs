//! Alerting: threshold rules with `for` and cooldown, their state machines, and delivery to
//! subscribers. (The alerting issue adds hysteresis, silences, sinks and actions.)

mod actor;
mod rules;

pub use actor::{AlertCallback, AlertDispatcher};
pub use rules::{Comparison, RuleEngine, RuleState, ThresholdRule};
