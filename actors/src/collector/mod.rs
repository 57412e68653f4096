//! The collector: host metrics, the application-metric intake, histograms of observations
//! per interval, and fan-out of batches to the analyzer and the storage writer.

mod actor;
pub mod histogram;
mod host;
pub mod intake;
mod logic;
#[cfg(target_os = "linux")]
mod netdev;

pub use actor::{Collector, CollectorSetup};
pub use histogram::{ClosedInterval, Histograms, DEFAULT_HISTOGRAM_INTERVAL_MS};
pub use host::HostSampler;
pub use logic::{AppSampleResolver, Resolved};
