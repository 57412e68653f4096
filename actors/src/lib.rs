//! The perfvisor engine: supervised collector, per-daemon watchers, analyzer, storage writer
//! and alert dispatcher, exchanging the typed messages of [`messages`].
//!
//! The root crate `perfvisor` wraps this engine in a small embedding API; use that unless
//! you are building on the engine itself.
//!
//! # Where everything is
//!
//! | module | owns |
//! |---|---|
//! | [`supervisor`] | the tree: engine wiring, restart policy, watcher diff, the one handler wrapper every actor's handlers go through |
//! | [`watcher`] | one actor per daemon and its probes: `/proc`, process trees, cgroups |
//! | [`collector`] | host metrics, the recorder intake, histograms of observations |
//! | [`analyzer`] | per-series windows, statistics, trends, anomalies, the judgement and its score |
//! | [`alerts`] | the rule engine, silences, actions, sinks and the alert dispatcher actor |
//! | [`storage`] | the SQLite history: writer thread, head log, chunks, rollups, retention, queries |
//! | [`messages`] | every message that crosses actors |
//! | [`recorder`] | the application-metric hot path (`record`, `observe`, `profile`) |
//! | [`replay`] | recorded series through the real analyzer and rules, for `perfvisor replay` |
//! | [`telemetry`], [`counters`], [`selfmon`] | perfvisor's own health: `status()`, its counters, its self-watch |
//! | [`types`], [`metric_names`], [`names`] | shared vocabulary: ids, series keys, samples, alerts; metric names; Prometheus-safe names |
//! | [`series_table`] | per-series entries grouped by source, which the writer, analyzer and alert engine keep their state in |
//! | [`backoff`], [`exec`], [`panic_guard`], [`suggest`] | one of each: backoff with jitter, programs run with a timeout, the panic guard, "did you mean" |
#![deny(missing_docs)]

pub mod alerts;
pub mod analyzer;
pub mod backoff;
pub mod collector;
pub mod counters;
pub mod exec;
pub mod messages;
pub mod metric_names;
pub mod names;
pub mod panic_guard;
pub mod recorder;
pub mod replay;
pub mod selfmon;
pub mod series_table;
pub mod storage;
pub mod suggest;
pub mod supervisor;
pub mod telemetry;
#[cfg(test)]
mod testdata;
pub mod types;
pub mod watcher;

pub use types::*;
