//! One watcher per daemon: the process probe and (in actor.rs) the watcher actor.
#[cfg(unix)]
pub mod cgroup;
pub mod probe;
pub mod tree;
pub mod view;

mod actor;
mod logic;
#[cfg(all(test, unix))]
pub(crate) mod testkit;

pub use actor::{Watcher, WatcherLinks};
#[cfg(unix)]
pub use logic::CgroupTracker;
pub use logic::RateTracker;
pub use logic::{CGROUP_SLOW_EVERY, CGROUP_WALK_EVERY};
