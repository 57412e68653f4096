//! The collector: host metrics, the application-metric intake, and fan-out of batches to
//! the analyzer and the storage writer.

mod actor;
mod host;
pub mod intake;
mod logic;

pub use actor::Collector;
pub use host::HostSampler;
pub use logic::AppSampleResolver;
