//! One watcher per daemon: the process probe and (in actor.rs) the watcher actor.
pub mod probe;
pub mod tree;

mod actor;
mod logic;

pub use actor::Watcher;
pub use logic::RateTracker;
