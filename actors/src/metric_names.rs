//! The metric names perfvisor itself produces, in one place.
//!
//! Names follow the OpenTelemetry semantic conventions for process and system metrics where
//! one exists, with the unit spelled out at the end (`_bytes`, `_seconds`, `_ratio`), so a
//! Prometheus exporter only has to replace dots with underscores.

// The `process.*` figures of a daemon are totals over its whole process tree (the watched
// pid and every descendant; see `watcher::tree` for what is counted), so the judgement sees
// a multi-process daemon whole. `process.main.*` are the watched pid alone.

/// Cumulative CPU time (user + system) of the daemon's process tree, reaped descendants
/// included, in seconds. Counter.
pub const PROCESS_CPU_TIME: &str = "process.cpu.time_seconds";
/// CPU used since the previous probe, as a fraction of one core (0.5 = half a core). Gauge.
/// The first probe after a watcher (re)starts yields no value: it is not a rate yet.
pub const PROCESS_CPU_UTILIZATION: &str = "process.cpu.utilization_ratio";
/// Resident set size, summed over the process tree. Gauge.
pub const PROCESS_MEMORY_RSS: &str = "process.memory.usage_bytes";
/// Virtual memory size, summed over the process tree. Gauge.
pub const PROCESS_MEMORY_VIRTUAL: &str = "process.memory.virtual_bytes";
/// Cumulative bytes the process caused to be read from storage. Counter.
pub const PROCESS_DISK_READ: &str = "process.disk.read_bytes";
/// Cumulative bytes the process caused to be written to storage. Counter.
pub const PROCESS_DISK_WRITE: &str = "process.disk.write_bytes";
/// Storage read rate since the previous probe. Gauge.
pub const PROCESS_DISK_READ_RATE: &str = "process.disk.read_bytes_per_second";
/// Storage write rate since the previous probe. Gauge.
pub const PROCESS_DISK_WRITE_RATE: &str = "process.disk.write_bytes_per_second";
/// Number of threads, summed over the process tree. Gauge.
pub const PROCESS_THREADS: &str = "process.thread.count";
/// Open file descriptors of the process of the tree nearest its descriptor limit (the limit
/// is per process, so a sum over the tree could not be compared with it). Gauge.
pub const PROCESS_OPEN_FDS: &str = "process.open_file_descriptor.count";
/// Soft limit on open file descriptors (RLIMIT_NOFILE) of that same process. Gauge.
pub const PROCESS_FD_LIMIT: &str = "process.open_file_descriptor.limit";
/// Seconds since the main process started. Gauge.
pub const PROCESS_UPTIME: &str = "process.uptime_seconds";
/// Processes in the daemon's tree, the main one and zombies included. Gauge.
pub const PROCESS_TREE_COUNT: &str = "process.tree.process.count";
/// Open file descriptors summed over the daemon's process tree. Gauge.
pub const PROCESS_TREE_OPEN_FDS: &str = "process.tree.open_file_descriptor.count";
/// Processes of the daemon's tree that exited and are not reaped yet. Gauge.
pub const PROCESS_TREE_ZOMBIES: &str = "process.tree.zombie.count";
/// CPU used by the main process alone since the previous probe, as a fraction of one core.
/// Gauge. Emitted once the daemon has had a child process, as are the other `process.main.*`.
pub const PROCESS_MAIN_CPU_UTILIZATION: &str = "process.main.cpu.utilization_ratio";
/// Resident set size of the main process alone. Gauge.
pub const PROCESS_MAIN_MEMORY_RSS: &str = "process.main.memory.usage_bytes";
/// Open file descriptors of the main process alone. Gauge.
pub const PROCESS_MAIN_OPEN_FDS: &str = "process.main.open_file_descriptor.count";
/// Threads of the main process alone. Gauge.
pub const PROCESS_MAIN_THREADS: &str = "process.main.thread.count";
/// Process state code of the main process: 1 running, 2 sleeping, 3 disk sleep, 4 stopped, 5 zombie, 6 idle,
/// 0 other. Gauge.
pub const PROCESS_STATE: &str = "process.state";

// `cgroup.*`: read from the daemon's own cgroup, when it has one to itself (see
// `watcher::cgroup`). They sit beside the tree's `process.*` figures, which stay the ones
// the judgement reads, so each figure's name says where it came from.

/// CPU time of everything that ran in the daemon's cgroup (`cpu.stat` `usage_usec`), in
/// seconds. Counter.
pub const CGROUP_CPU_TIME: &str = "cgroup.cpu.time_seconds";
/// CPU used by the cgroup since the previous probe, as a fraction of one core. Gauge.
pub const CGROUP_CPU_UTILIZATION: &str = "cgroup.cpu.utilization_ratio";
/// Memory charged to the cgroup (`memory.current`, or v1 `memory.usage_in_bytes`): resident
/// memory, page cache and kernel memory. Gauge.
pub const CGROUP_MEMORY: &str = "cgroup.memory.usage_bytes";
/// Tasks (threads) in the cgroup (`pids.current`). Gauge.
pub const CGROUP_TASKS: &str = "cgroup.task.count";
/// Processes in the cgroup (`cgroup.procs`), including any that left the process tree. Gauge.
pub const CGROUP_PROCESSES: &str = "cgroup.process.count";
/// OOM kills inside the cgroup (`memory.events` `oom_kill`). Counter.
pub const CGROUP_OOM_KILLS: &str = "cgroup.memory.oom_kill.count";
/// Fraction of the time since the previous probe some task of the cgroup waited for a CPU
/// (PSI `cpu.pressure` `some`). Gauge.
pub const CGROUP_CPU_PRESSURE_SOME: &str = "cgroup.pressure.cpu.some_ratio";
/// Fraction of the time all of the cgroup's tasks waited for a CPU at once. Gauge.
pub const CGROUP_CPU_PRESSURE_FULL: &str = "cgroup.pressure.cpu.full_ratio";
/// Fraction of the time some task waited for memory (reclaim, swap-in, refaults). Gauge.
pub const CGROUP_MEMORY_PRESSURE_SOME: &str = "cgroup.pressure.memory.some_ratio";
/// Fraction of the time all tasks waited for memory at once. Gauge.
pub const CGROUP_MEMORY_PRESSURE_FULL: &str = "cgroup.pressure.memory.full_ratio";
/// Fraction of the time some task waited for I/O. Gauge.
pub const CGROUP_IO_PRESSURE_SOME: &str = "cgroup.pressure.io.some_ratio";
/// Fraction of the time all tasks waited for I/O at once. Gauge.
pub const CGROUP_IO_PRESSURE_FULL: &str = "cgroup.pressure.io.full_ratio";

/// Host CPU in use, as a fraction of all cores (0..1). Gauge.
pub const SYSTEM_CPU_UTILIZATION: &str = "system.cpu.utilization_ratio";
/// Number of logical cores. Gauge.
pub const SYSTEM_CPU_COUNT: &str = "system.cpu.logical.count";
/// Host memory in use. Gauge.
pub const SYSTEM_MEMORY_USED: &str = "system.memory.usage_bytes";
/// Host memory in total. Gauge.
pub const SYSTEM_MEMORY_TOTAL: &str = "system.memory.limit_bytes";
/// Host memory available for new work (MemAvailable). Gauge.
pub const SYSTEM_MEMORY_AVAILABLE: &str = "system.memory.available_bytes";
/// Swap in use. Gauge.
pub const SYSTEM_SWAP_USED: &str = "system.paging.usage_bytes";
/// Load average over 1 minute. Gauge.
pub const SYSTEM_LOAD_1M: &str = "system.cpu.load_average.1m";
/// Load average over 5 minutes. Gauge.
pub const SYSTEM_LOAD_5M: &str = "system.cpu.load_average.5m";
/// Load average over 15 minutes. Gauge.
pub const SYSTEM_LOAD_15M: &str = "system.cpu.load_average.15m";
/// Cumulative bytes read from block devices, all disks. Counter.
pub const SYSTEM_DISK_READ: &str = "system.disk.read_bytes";
/// Cumulative bytes written to block devices, all disks. Counter.
pub const SYSTEM_DISK_WRITE: &str = "system.disk.write_bytes";
/// File system space in use (total − available to unprivileged users), per mount point
/// (label `mountpoint`). Gauge.
pub const SYSTEM_FILESYSTEM_USED: &str = "system.filesystem.usage_bytes";
/// File system size, per mount point (label `mountpoint`). Gauge.
pub const SYSTEM_FILESYSTEM_TOTAL: &str = "system.filesystem.limit_bytes";
/// Cumulative bytes received, per interface (label `interface`). Counter.
pub const SYSTEM_NETWORK_RECEIVE: &str = "system.network.receive_bytes";
/// Cumulative bytes transmitted, per interface (label `interface`). Counter.
pub const SYSTEM_NETWORK_TRANSMIT: &str = "system.network.transmit_bytes";

/// Duration of one profiled operation (label-free; the operation is in the metric name
/// as `app.operation.<name>.duration_seconds`). Gauge per occurrence.
pub const APP_OPERATION_PREFIX: &str = "app.operation.";
/// Suffix of the profile guard's duration metric.
pub const APP_OPERATION_DURATION_SUFFIX: &str = ".duration_seconds";

/// Samples dropped because the recorder channel was full. Counter.
pub const PERFVISOR_RECORDER_DROPPED: &str = "perfvisor.recorder.dropped_samples";
/// Commands waiting in the storage writer's queue. Gauge.
pub const PERFVISOR_STORAGE_QUEUE: &str = "perfvisor.storage.queue.count";
/// Samples accepted and held in memory by the storage writer, not yet committed. Gauge.
pub const PERFVISOR_STORAGE_BUFFERED: &str = "perfvisor.storage.buffered_samples";
/// Samples committed to the database. Counter.
pub const PERFVISOR_STORAGE_STORED: &str = "perfvisor.storage.stored_samples";
/// Samples the storage writer had to drop. Counter.
pub const PERFVISOR_STORAGE_DROPPED: &str = "perfvisor.storage.dropped_samples";
/// Failed storage writes. Counter.
pub const PERFVISOR_STORAGE_WRITE_ERRORS: &str = "perfvisor.storage.write_errors";
/// 1 while storage writes fail and the writer buffers, else 0. Gauge.
pub const PERFVISOR_STORAGE_BLOCKED: &str = "perfvisor.storage.write_blocked";
/// Head rows of closed hours waiting for compaction (one per series and half-minute fold).
/// Gauge.
pub const PERFVISOR_STORAGE_COMPACTION_BACKLOG: &str = "perfvisor.storage.compaction.backlog";
/// Samples compacted into chunks. Counter.
pub const PERFVISOR_STORAGE_COMPACTED: &str = "perfvisor.storage.compaction.samples";
/// Rows deleted by retention or the size cap. Counter.
pub const PERFVISOR_STORAGE_RETENTION_DELETED: &str = "perfvisor.storage.retention.deleted_rows";
/// Time spent in storage maintenance, in seconds. Counter.
pub const PERFVISOR_STORAGE_MAINTENANCE_TIME: &str = "perfvisor.storage.maintenance.time_seconds";
/// Restarts of perfvisor's own actors, all kinds. Counter.
pub const PERFVISOR_ACTOR_RESTARTS: &str = "perfvisor.actor.restarts";
/// Descriptors perfvisor itself holds open. Gauge.
pub const PERFVISOR_OPEN_FDS: &str = "perfvisor.process.open_fds";
/// perfvisor's own soft limit on open descriptors. Gauge.
pub const PERFVISOR_MAX_FDS: &str = "perfvisor.process.max_fds";
/// perfvisor's open descriptors as a share of its soft limit, 0 to 1. Gauge.
pub const PERFVISOR_FD_USAGE: &str = "perfvisor.process.fd_usage_ratio";

// `perfvisor.remote_write.*`: one series per `[[remote_write]]`, labelled `remote=<name>`.

/// Seconds between now and the oldest sample not yet shipped to the remote (0 when caught
/// up to the settle horizon). Gauge.
pub const PERFVISOR_REMOTE_WRITE_LAG: &str = "perfvisor.remote_write.lag_seconds";
/// Samples stored after the remote's cursor, about (counted by stored row). Gauge.
pub const PERFVISOR_REMOTE_WRITE_PENDING: &str = "perfvisor.remote_write.pending_samples";
/// Samples the remote accepted. Counter.
pub const PERFVISOR_REMOTE_WRITE_SENT: &str = "perfvisor.remote_write.sent_samples";
/// Requests sent again after a 5xx, a 429 or a connection failure. Counter.
pub const PERFVISOR_REMOTE_WRITE_RETRIES: &str = "perfvisor.remote_write.retries";
/// Samples given up on: refused by the remote with a 4xx other than 429, or older than raw
/// retention before they could be shipped. Counter.
pub const PERFVISOR_REMOTE_WRITE_DROPPED: &str = "perfvisor.remote_write.dropped_samples";
/// Samples that passed raw retention unshipped within the last hour; what the
/// `perfvisor_remote_write_expired` rule follows. Gauge.
pub const PERFVISOR_REMOTE_WRITE_EXPIRED: &str = "perfvisor.remote_write.expired_last_hour";
/// Bytes sent on the wire (snappy-compressed protobuf bodies). Counter.
pub const PERFVISOR_REMOTE_WRITE_BYTES: &str = "perfvisor.remote_write.sent_bytes";

/// Every fixed metric name above, for checking names written in a config. The profile
/// guard's `app.operation.<name>.duration_seconds` names are a pattern, not listed.
pub const ALL: &[&str] = &[
    PROCESS_CPU_TIME,
    PROCESS_CPU_UTILIZATION,
    PROCESS_MEMORY_RSS,
    PROCESS_MEMORY_VIRTUAL,
    PROCESS_DISK_READ,
    PROCESS_DISK_WRITE,
    PROCESS_DISK_READ_RATE,
    PROCESS_DISK_WRITE_RATE,
    PROCESS_THREADS,
    PROCESS_OPEN_FDS,
    PROCESS_FD_LIMIT,
    PROCESS_UPTIME,
    PROCESS_STATE,
    PROCESS_TREE_COUNT,
    PROCESS_TREE_ZOMBIES,
    PROCESS_TREE_OPEN_FDS,
    PROCESS_MAIN_CPU_UTILIZATION,
    PROCESS_MAIN_MEMORY_RSS,
    PROCESS_MAIN_OPEN_FDS,
    PROCESS_MAIN_THREADS,
    CGROUP_CPU_TIME,
    CGROUP_CPU_UTILIZATION,
    CGROUP_MEMORY,
    CGROUP_TASKS,
    CGROUP_PROCESSES,
    CGROUP_OOM_KILLS,
    CGROUP_CPU_PRESSURE_SOME,
    CGROUP_CPU_PRESSURE_FULL,
    CGROUP_MEMORY_PRESSURE_SOME,
    CGROUP_MEMORY_PRESSURE_FULL,
    CGROUP_IO_PRESSURE_SOME,
    CGROUP_IO_PRESSURE_FULL,
    SYSTEM_CPU_UTILIZATION,
    SYSTEM_CPU_COUNT,
    SYSTEM_MEMORY_USED,
    SYSTEM_MEMORY_TOTAL,
    SYSTEM_MEMORY_AVAILABLE,
    SYSTEM_SWAP_USED,
    SYSTEM_LOAD_1M,
    SYSTEM_LOAD_5M,
    SYSTEM_LOAD_15M,
    SYSTEM_DISK_READ,
    SYSTEM_DISK_WRITE,
    SYSTEM_FILESYSTEM_USED,
    SYSTEM_FILESYSTEM_TOTAL,
    SYSTEM_NETWORK_RECEIVE,
    SYSTEM_NETWORK_TRANSMIT,
    PERFVISOR_RECORDER_DROPPED,
    PERFVISOR_STORAGE_QUEUE,
    PERFVISOR_STORAGE_BUFFERED,
    PERFVISOR_STORAGE_STORED,
    PERFVISOR_STORAGE_DROPPED,
    PERFVISOR_STORAGE_WRITE_ERRORS,
    PERFVISOR_STORAGE_BLOCKED,
    PERFVISOR_STORAGE_COMPACTION_BACKLOG,
    PERFVISOR_STORAGE_COMPACTED,
    PERFVISOR_STORAGE_RETENTION_DELETED,
    PERFVISOR_STORAGE_MAINTENANCE_TIME,
    PERFVISOR_ACTOR_RESTARTS,
    PERFVISOR_OPEN_FDS,
    PERFVISOR_MAX_FDS,
    PERFVISOR_FD_USAGE,
    PERFVISOR_REMOTE_WRITE_LAG,
    PERFVISOR_REMOTE_WRITE_PENDING,
    PERFVISOR_REMOTE_WRITE_SENT,
    PERFVISOR_REMOTE_WRITE_RETRIES,
    PERFVISOR_REMOTE_WRITE_DROPPED,
    PERFVISOR_REMOTE_WRITE_EXPIRED,
    PERFVISOR_REMOTE_WRITE_BYTES,
];

/// The metric name a `profile("name")` guard records its duration under.
pub fn operation_duration(name: &str) -> String {
    format!("{APP_OPERATION_PREFIX}{name}{APP_OPERATION_DURATION_SUFFIX}")
}

// `perfvisor.judgement.*`: the analyzer's conclusions as series of each daemon (and of the
// host), written at every judgement into storage like any sample, so `/metrics` and
// remote-write carry them with their history (see `analyzer::judgement_metrics`). Their
// labels come from fixed sets: `kind` (bottleneck kinds), `severity` (none, warning,
// critical), `resource` (cpu, memory, descriptors, disk_read, disk_write, filesystem).

/// The judgement's score, 0 to 100. Gauge.
pub const JUDGEMENT_SCORE: &str = "perfvisor.judgement.score";
/// The score's level: 0 critical, 1 poor, 2 average, 3 good, 4 excellent. Gauge.
pub const JUDGEMENT_LEVEL: &str = "perfvisor.judgement.level";
/// One series per bottleneck kind (label `kind`): its severity in `(0, 1]` while found
/// (label `severity` warning, or critical from 0.8, as its alert), 0 with severity `none`
/// otherwise. Gauge.
pub const JUDGEMENT_BOTTLENECK: &str = "perfvisor.judgement.bottleneck";
/// The trend's least-squares slope per resource (label `resource`), in the resource's
/// unit per second. Gauge, present while a trend is fitted.
pub const JUDGEMENT_TREND_SLOPE: &str = "perfvisor.judgement.trend.slope_per_second";
/// Seconds until the trend reaches the resource's limit (label `resource`: memory,
/// descriptors; the host: filesystem with `mountpoint`). Gauge, present while predicted.
pub const JUDGEMENT_TIME_TO_LIMIT: &str = "perfvisor.judgement.time_to_limit_seconds";
/// Anomalies the analyzer found in the source's series over the last hour. Gauge.
pub const JUDGEMENT_ANOMALIES: &str = "perfvisor.judgement.anomalies_last_hour";
/// Unintended restarts and exits over the last 10 minutes. Gauge.
pub const JUDGEMENT_RESTARTS: &str = "perfvisor.judgement.restarts_recent";
/// 1 while the daemon runs, 0 after it stopped or exited (from its life-cycle events).
/// Gauge.
pub const JUDGEMENT_UP: &str = "perfvisor.judgement.up";
/// The judgement series, for listing and checks.
pub const JUDGEMENT_ALL: &[&str] = &[
    JUDGEMENT_SCORE,
    JUDGEMENT_LEVEL,
    JUDGEMENT_BOTTLENECK,
    JUDGEMENT_TREND_SLOPE,
    JUDGEMENT_TIME_TO_LIMIT,
    JUDGEMENT_ANOMALIES,
    JUDGEMENT_RESTARTS,
    JUDGEMENT_UP,
];

// Series the `/metrics` exposition adds when it is scraped: read from the process, the
// engine's status and the manager at that moment, not stored in history.

/// perfvisor's own CPU time (user + system) in seconds, from `/proc/self/stat`. Counter.
pub const PERFVISOR_CPU_TIME: &str = "perfvisor.process.cpu.time_seconds";
/// perfvisor's own resident memory in bytes, from `/proc/self/statm`. Gauge.
pub const PERFVISOR_MEMORY_RSS: &str = "perfvisor.process.memory.usage_bytes";
/// Samples waiting in the recorder's queue for the storage writer. Gauge.
pub const PERFVISOR_RECORDER_QUEUE: &str = "perfvisor.recorder.queue.count";
/// Daemons watched. Gauge.
pub const PERFVISOR_WATCHERS: &str = "perfvisor.watchers.count";
/// 1 while perfvisor answers. Gauge.
pub const PERFVISOR_UP: &str = "perfvisor.up";
/// Anomaly candidates per source over the last hour (`perfvisor_anomalies_last_hour`).
/// Gauge.
pub const PERFVISOR_ANOMALIES_LAST_HOUR: &str = "perfvisor.anomalies_last_hour";
/// A managed daemon's life-cycle state (`perfvisor_judgement_managed_state{daemon, state}`):
/// one series per state, 1 for the current one, 0 for the others. Gauge.
pub const JUDGEMENT_MANAGED_STATE: &str = "perfvisor.judgement.managed_state";
