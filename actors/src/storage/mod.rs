//! Storage: the SQLite file that keeps perfvisor's history, the writer thread that fills it
//! and the read-only connections that query it.
//!
//! The writer owns the only read-write connection and runs on its own thread
//! ("perfvisor-storage"), because SQLite calls block and must never run on an async arbiter.
//! It is fed by a bounded crossbeam channel: producers never wait, a full queue drops and
//! counts. The channel outlives writer restarts, so a panic loses only the command being
//! handled. Readers open their own read-only connections and, thanks to WAL, never wait for
//! the writer.
//!
//! The surface is deliberately narrow (commands in, samples/events/alerts out) so that the
//! sample layout (today one row per sample) can become compressed chunks without touching
//! callers.
//!
//! - `config`: what the writer is told at spawn time.
//! - `error`: everything that can go wrong, as one [`StorageError`].
//! - `schema`: file identity (`application_id`), pragmas and migrations.
//! - `writer`: the thread's loop, its commands, failure handling and counters.
//! - `handle`: [`StorageHandle`], the cloneable front that hides the channel.
//! - `reader`: [`StorageReader`], queries over a read-only connection.

mod config;
mod error;
mod handle;
mod reader;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

pub use config::{StorageConfig, DEFAULT_MAX_BATCH_COMMANDS, DEFAULT_QUEUE_CAPACITY};
pub use error::StorageError;
pub use handle::StorageHandle;
pub use reader::StorageReader;
pub use writer::{FailureHook, StorageCommand, StorageFailure, StorageStats};
