//! The perfvisor engine: supervised collector, per-daemon watchers, analyzer, storage writer
//! and alert dispatcher, exchanging the typed messages of [`messages`].
//!
//! The root crate `perfvisor` wraps this engine in a small embedding API; use that unless
//! you are building on the engine itself.
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
pub mod storage;
pub mod suggest;
pub mod supervisor;
pub mod telemetry;
#[cfg(test)]
mod testdata;
pub mod types;
pub mod watcher;

pub use types::*;
