//! The analyzer: windowed statistics per series and per-daemon reports.
//! (The judgement issue adds trends, anomalies, score, bottlenecks and recommendations.)

mod actor;
mod stats;

pub use actor::Analyzer;
pub use stats::{counter_rates, DaemonReport, SeriesReport, SeriesWindow, WindowStats, Windows};
