//! The analyzer: per-series windows, statistics, trends and anomalies; per-daemon and host
//! judgements (score, bottlenecks, recommendations); reports; and the alert candidates it
//! hands to the dispatcher.
//!
//! - `stats`: window statistics (numpy-linear percentiles) and counter rates.
//! - `times`: a short window's sample times, 1 byte each while the steps allow.
//! - `values`: a short window's values, runs of equal values while the series holds steady.
//! - `trend`: least-squares trends with significance and effect size, time-to-threshold.
//! - `anomaly`: robust learned baselines and anomaly scores.
//! - `config`: the judgement's thresholds ([`JudgeConfig`]) and their defaults.
//! - `judge`: bottlenecks and score from what the analyzer knows.
//! - `verdict`: the views a judgement reads and the verdict types it returns.
//! - `recommend`: what to do about each bottleneck (texts in `recommendations.txt`).
//! - `signals`: the alert candidates made from anomalies and judgements.
//! - `histogram`: per histogram, the merged sketches of its last minutes (window statistics).
//! - `series`: what is kept per series (windows, per-minute means, detector) and its view.
//! - `state`: the series and daemons known, and the reports built from them.
//! - `judgement_metrics`: the judgement as `perfvisor.judgement.*` samples.
//! - `actor`: the actix actor.

mod actor;
pub mod anomaly;
mod config;
mod histogram;
pub mod judge;
pub mod judgement_metrics;
mod recommend;
mod series;
pub mod signals;
mod state;
mod stats;
mod times;
pub mod trend;
mod values;
mod verdict;

pub use actor::{Analyzer, AnalyzerSetup};
pub use config::JudgeConfig;
pub use histogram::HistogramReport;
pub use judge::{
    AnomalyEvent, AutoAction, Bottleneck, BottleneckKind, Category, Deduction, Evidence,
    HostJudgement, Judgement, Level, RecentStats, Recommendation, Score,
};
pub use series::MemoryParts;
pub use signals::{AlertPolicy, Signals};
pub use state::{AnalyzerState, DaemonReport, HostReport, Prediction, SeriesReport};
pub use stats::{counter_rates, quantile_linear, SeriesWindow, WindowStats};
pub use trend::{Trend, TrendClass};
