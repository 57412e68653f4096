//! What a judgement reads and what it says: the views of a daemon and of the host that the
//! analyzer builds ([`DaemonView`], [`HostView`], [`MetricView`]), and the verdict types
//! ([`Bottleneck`], [`Score`] with its [`Deduction`]s, [`Recommendation`], [`Judgement`]).
//! The rules that turn one into the other are `judge`'s; these are re-exported there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::anomaly::AnomalyKind;
use super::stats::WindowStats;
use super::trend::{TimeToThreshold, Trend};
use crate::types::{DaemonId, TimestampMs};

/// What the analyzer knows about one metric of a daemon.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricView {
    /// Statistics of the short window (rates for counters).
    pub stats: Option<WindowStats>,
    /// Trend of the long window, if it has enough points.
    pub trend: Option<Trend>,
    /// The latest anomaly event of the series within the short window.
    pub anomaly: Option<AnomalyEvent>,
    /// p95 of the older half of the short window and of the newer half (for regressions).
    pub p95_before_after: Option<(f64, f64)>,
    /// Statistics of the most recent samples (the last [`JudgeConfig::cpu_sustain_ms`](super::JudgeConfig::cpu_sustain_ms)),
    /// for rules that need a sustained level rather than a window average.
    #[serde(default)]
    pub recent: Option<RecentStats>,
    /// The lower envelope of the points the trend was fitted to: the minimum of each of
    /// [`JudgeConfig::leak_segments`](super::JudgeConfig::leak_segments) equal spans of time, oldest first (empty without a
    /// trend). A leak raises every minimum; a warm-up or a sawtooth does not.
    #[serde(default)]
    pub envelope: Vec<f64>,
}

/// Statistics of the most recent stretch of a series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentStats {
    /// The stretch asked for, ms.
    pub period_ms: i64,
    /// From the earliest to the latest sample within it, ms.
    pub span_ms: i64,
    /// Samples within it.
    pub count: usize,
    /// Their median.
    pub median: f64,
    /// Their mean.
    pub mean: f64,
}

/// An anomaly seen on a series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyEvent {
    /// When.
    pub at_ms: TimestampMs,
    /// Spike or level shift.
    pub kind: AnomalyKind,
    /// The value.
    pub value: f64,
    /// The baseline it was compared with.
    pub baseline: f64,
    /// The robust score.
    pub score: f64,
}

/// Everything the judgement of one daemon reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonView {
    /// The daemon.
    pub daemon: DaemonId,
    /// Judgement time.
    pub now_ms: TimestampMs,
    /// `process.cpu.utilization_ratio` (fraction of one core).
    pub cpu: MetricView,
    /// `process.memory.usage_bytes`.
    pub rss: MetricView,
    /// `process.disk.read_bytes` as a rate.
    pub disk_read: MetricView,
    /// `process.disk.write_bytes` as a rate.
    pub disk_write: MetricView,
    /// `process.open_file_descriptor.count`.
    pub fds: MetricView,
    /// `process.open_file_descriptor.limit` (latest).
    pub fd_limit: Option<f64>,
    /// Restarts and unexpected exits in the last 10 minutes.
    pub restarts_recent: u32,
    /// Latency-like app metrics, by name.
    pub latency: BTreeMap<String, MetricView>,
    /// The time the trend of `rss` needs to reach the host's memory, if rising.
    pub rss_time_to_limit: Option<TimeToThreshold>,
    /// The time the trend of `fds` needs to reach `fd_limit`, if rising.
    pub fds_time_to_limit: Option<TimeToThreshold>,
}

impl DaemonView {
    /// A view of `daemon` at `now_ms` with nothing known yet.
    pub fn new(daemon: DaemonId, now_ms: TimestampMs) -> Self {
        DaemonView {
            daemon,
            now_ms,
            cpu: MetricView::default(),
            rss: MetricView::default(),
            disk_read: MetricView::default(),
            disk_write: MetricView::default(),
            fds: MetricView::default(),
            fd_limit: None,
            restarts_recent: 0,
            latency: BTreeMap::new(),
            rss_time_to_limit: None,
            fds_time_to_limit: None,
        }
    }
}

/// What the judgement of the host reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    /// Judgement time.
    pub now_ms: TimestampMs,
    /// `system.cpu.utilization_ratio` (fraction of all cores).
    pub cpu: MetricView,
    /// Host memory in total, bytes.
    pub memory_total: Option<f64>,
    /// Host memory available, bytes (latest).
    pub memory_available: Option<f64>,
    /// Swap in use, bytes (latest).
    pub swap_used: Option<f64>,
    /// Logical cores.
    pub cores: Option<f64>,
    /// File systems, by mount point.
    pub filesystems: Vec<FilesystemView>,
}

/// One mounted file system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilesystemView {
    /// Where it is mounted.
    pub mountpoint: String,
    /// Bytes in use (latest).
    pub used: f64,
    /// Size in bytes.
    pub total: f64,
    /// When the trend of `used` reaches `total`, if it rises.
    pub time_to_full: Option<TimeToThreshold>,
}

/// CPU (fraction of one core) from which a daemon on a saturated host counts as contending.
pub const CONTENDING_CPU: f64 = 0.33;

/// The kinds of bottleneck perfvisor recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BottleneckKind {
    /// The daemon needs more CPU than it gets.
    CpuBound,
    /// The host is short of memory and the daemon is a large part of it.
    MemoryPressure,
    /// The daemon's memory grows steadily.
    MemoryLeak,
    /// The daemon spends its time reading or writing storage.
    IoBound,
    /// The daemon is running out of file descriptors.
    DescriptorExhaustion,
    /// The daemon keeps restarting or exiting.
    RestartInstability,
    /// An operation of the daemon got slower.
    LatencyRegression,
    /// Several daemons degrade together while the host saturates.
    HostContention,
}

impl BottleneckKind {
    /// Every kind.
    pub const ALL: [BottleneckKind; 8] = [
        BottleneckKind::CpuBound,
        BottleneckKind::MemoryPressure,
        BottleneckKind::MemoryLeak,
        BottleneckKind::IoBound,
        BottleneckKind::DescriptorExhaustion,
        BottleneckKind::RestartInstability,
        BottleneckKind::LatencyRegression,
        BottleneckKind::HostContention,
    ];

    /// The snake_case name (as in JSON and alert rules).
    pub fn as_str(self) -> &'static str {
        match self {
            BottleneckKind::CpuBound => "cpu_bound",
            BottleneckKind::MemoryPressure => "memory_pressure",
            BottleneckKind::MemoryLeak => "memory_leak",
            BottleneckKind::IoBound => "io_bound",
            BottleneckKind::DescriptorExhaustion => "descriptor_exhaustion",
            BottleneckKind::RestartInstability => "restart_instability",
            BottleneckKind::LatencyRegression => "latency_regression",
            BottleneckKind::HostContention => "host_contention",
        }
    }

    pub(super) fn category(self) -> Category {
        match self {
            BottleneckKind::CpuBound | BottleneckKind::HostContention => Category::Cpu,
            BottleneckKind::MemoryPressure | BottleneckKind::MemoryLeak => Category::Memory,
            BottleneckKind::IoBound => Category::Io,
            BottleneckKind::DescriptorExhaustion => Category::Descriptors,
            BottleneckKind::RestartInstability => Category::Stability,
            BottleneckKind::LatencyRegression => Category::Latency,
        }
    }
}

/// One piece of evidence: a metric, what it showed, and what that is compared with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The metric (or event kind).
    pub metric: String,
    /// The observed figure.
    pub observed: f64,
    /// The threshold or reference it was compared with.
    pub reference: f64,
    /// The comparison in words, with units.
    pub detail: String,
}

/// A bottleneck found, with its evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bottleneck {
    /// What kind.
    pub kind: BottleneckKind,
    /// How bad, in `(0, 1]`.
    pub severity: f64,
    /// One sentence.
    pub summary: String,
    /// The numbers behind it.
    pub evidence: Vec<Evidence>,
}

/// Score categories, each with its cap of points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// CPU use and contention (20 points).
    Cpu,
    /// Memory (25 points).
    Memory,
    /// Storage I/O (10 points).
    Io,
    /// File descriptors (10 points).
    Descriptors,
    /// Restarts and exits (20 points).
    Stability,
    /// Latency of the daemon's operations (15 points).
    Latency,
    /// A predicted exhaustion within the hour: takes the score down to Poor (within
    /// [`JudgeConfig::urgency_poor_ms`](super::JudgeConfig::urgency_poor_ms)) or Critical (within
    /// [`JudgeConfig::urgency_critical_ms`](super::JudgeConfig::urgency_critical_ms)), whatever the other categories lost (100
    /// points).
    Urgency,
}

impl Category {
    /// The most points the category can lose.
    pub fn cap(self) -> f64 {
        match self {
            Category::Cpu => 20.0,
            Category::Memory => 25.0,
            Category::Io => 10.0,
            Category::Descriptors => 10.0,
            Category::Stability => 20.0,
            Category::Latency => 15.0,
            Category::Urgency => 100.0,
        }
    }
}

/// Points lost, why, and the evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deduction {
    /// The category.
    pub category: Category,
    /// Points lost (tenths).
    pub points: f64,
    /// Why, in one sentence.
    pub reason: String,
    /// The numbers.
    pub evidence: Vec<Evidence>,
}

/// A score level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Below 40.
    Critical,
    /// 40 to 59.9.
    Poor,
    /// 60 to 74.9.
    Average,
    /// 75 to 89.9.
    Good,
    /// 90 and above.
    Excellent,
}

/// The lowest score of the level Average.
pub(super) const AVERAGE_FLOOR: f64 = 60.0;
/// The lowest score of the level Poor.
pub(super) const POOR_FLOOR: f64 = 40.0;

impl Level {
    /// The level of a score.
    pub fn of(score: f64) -> Level {
        match score {
            s if s >= 90.0 => Level::Excellent,
            s if s >= 75.0 => Level::Good,
            s if s >= AVERAGE_FLOOR => Level::Average,
            s if s >= POOR_FLOOR => Level::Poor,
            _ => Level::Critical,
        }
    }
}

/// A score with the breakdown of every lost point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// 0 to 100; exactly `100 − Σ breakdown.points`.
    pub value: f64,
    /// Its level.
    pub level: Level,
    /// Every lost point.
    pub breakdown: Vec<Deduction>,
}

impl Score {
    pub(super) fn from_deductions(mut breakdown: Vec<Deduction>) -> Score {
        // Cap each category, trimming its last deductions, so the total stays ≤ 100.
        let mut used: BTreeMap<Category, f64> = BTreeMap::new();
        for d in &mut breakdown {
            let spent = used.entry(d.category).or_insert(0.0);
            let room = (d.category.cap() - *spent).max(0.0);
            d.points = tenths(d.points.min(room));
            *spent += d.points;
        }
        breakdown.retain(|d| d.points > 0.0);
        let lost: f64 = breakdown.iter().map(|d| d.points).sum();
        let value = tenths(100.0 - lost).max(0.0);
        Score {
            value,
            level: Level::of(value),
            breakdown,
        }
    }
}

pub(super) fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// What perfvisor could do by itself about a recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoAction {
    /// Restart the daemon (through the host's daemon control).
    RestartDaemon,
}

/// A concrete recommendation tied to a bottleneck.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The bottleneck it answers.
    pub cause: BottleneckKind,
    /// What to do.
    pub action: String,
    /// Why, with the evidence's numbers.
    pub rationale: String,
    /// The expected effect as a range, e.g. "CPU −20 … −40 %".
    pub expected_effect: String,
    /// Set when perfvisor could carry it out itself.
    pub auto_action: Option<AutoAction>,
}

/// The full judgement of a daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// 0–100 with its breakdown.
    pub score: Score,
    /// Bottlenecks, worst first.
    pub bottlenecks: Vec<Bottleneck>,
    /// Recommendations, most important first.
    pub recommendations: Vec<Recommendation>,
}

/// The host's judgement: its score and whether it is a contended host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostJudgement {
    /// 0–100 with its breakdown (CPU saturation, memory, swap, contention).
    pub score: Score,
    /// Host contention, when found; names the daemons involved.
    pub contention: Option<Bottleneck>,
    /// The daemons involved in contention.
    pub contended_daemons: Vec<DaemonId>,
    /// Bottlenecks of the host's own app metrics (what the embedding application records
    /// about itself, source `host`): latency regressions, judged as a daemon's are.
    #[serde(default)]
    pub app_bottlenecks: Vec<Bottleneck>,
}
