//! Storage: the SQLite file that keeps perfvisor's history, the writer thread that fills it,
//! the maintenance that compacts and ages it, and the read-only connections that query it.
//!
//! The writer owns the only read-write connection and runs on its own thread
//! ("perfvisor-storage"), because SQLite calls block and must never run on an async arbiter.
//! It is fed by a bounded crossbeam channel: producers never wait, a full queue drops and
//! counts. The channel outlives writer restarts, so a panic loses only the command being
//! handled. Readers open their own read-only connections and, thanks to WAL, never wait for
//! the writer.
//!
//! History layout: recent samples are head log rows (flushed at least every second, folded
//! into per-series head rows every half minute); closed
//! hour windows are compacted into compressed chunks and hourly rollups; days into daily
//! rollups; each tier has its retention. Queries read all of it as one.
//!
//! - `config`: what the writer is told at spawn time, retention included.
//! - `error`: everything that can go wrong, as one [`StorageError`].
//! - `schema`: file identity (`application_id`), pragmas and migrations.
//! - `codec`: the chunk and head-row encodings.
//! - `head`: the head table's rows, written per fold and found per series through its folds.
//! - `packed`: the cheap sample encoding of head rows, head-log rows and unfolded samples.
//! - `headlog`: one row per flush with every series' samples, folded into head rows.
//! - `sketch`, `rollup`: the mergeable quantile sketch and the rollup accumulator.
//! - `writer`: the thread's loop, buffers, failure handling and counters.
//! - `maintenance`: compaction, rollups, retention, the size cap and vacuuming in bounded steps.
//! - `handle`: [`StorageHandle`], the cloneable front that hides the channel.
//! - `query`, `reader`: [`Query`] and its planner, [`StorageReader`].
//! - `admin`: compact, vacuum, integrity check and export for operators.

mod admin;
mod codec;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod head;
mod headlog;
mod maintenance;
mod packed;
mod pending;
mod query;
mod reader;
mod rollup;
mod schema;
mod sketch;
mod varint;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

pub use admin::{
    compact, export, integrity_check, vacuum, CompactReport, ExportFormat, IntegrityReport,
    VacuumReport,
};
pub use config::{
    Retention, StorageConfig, DAY_MS, DEFAULT_MAX_BATCH_COMMANDS, DEFAULT_MAX_BUFFERED_SAMPLES,
    DEFAULT_QUEUE_CAPACITY, HOUR_MS,
};
pub use error::StorageError;
pub use handle::StorageHandle;
pub use maintenance::MAX_CHUNK_SAMPLES;
pub use query::{Aggregation, Bucket, Query, SeriesResult, SeriesSelector, Tier, MAX_BUCKETS};
pub use reader::{RemoteCursors, StorageReader, StorageSummary};
pub(crate) use sketch::DdSketch;
pub use writer::{
    AlertStateChange, FailureHook, StorageCommand, StorageFailure, StorageFault, StorageStats,
    FLUSH_SAMPLES,
};
