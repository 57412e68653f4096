//! Shared vocabulary of the engine: daemon ids, series keys, samples, alerts, the clock.
//!
//! Everything here is plain data that crosses actors and the embedding API. It has no actix
//! behaviour beyond `Alert` being a message, so that a host actor can be a `Recipient<Alert>`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). Every stored timestamp uses this unit.
pub type TimestampMs = i64;

/// The identifier a host gives one of its daemons (for example `"indexer-ws1"`).
///
/// Cheap to clone (a shared string). Ids are compared as exact strings. The id's hash is
/// computed once when it is made and kept beside the text, so hashing a [`SeriesKey`] on a
/// sample's way through the writer, analyzer and alert maps does not read the string again,
/// and two clones of one id compare equal by pointer.
#[derive(Clone)]
pub struct DaemonId(Arc<DaemonText>);

/// The text of a daemon id with its hash, shared by every clone of the id.
struct DaemonText {
    hash: u64,
    text: Box<str>,
}

impl DaemonId {
    /// Wraps a string as a daemon id.
    pub fn new(id: impl AsRef<str>) -> Self {
        DaemonId::from_box(Box::from(id.as_ref()))
    }
    fn from_box(text: Box<str>) -> Self {
        DaemonId(Arc::new(DaemonText {
            hash: content_hash(&*text),
            text,
        }))
    }
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }
}

impl PartialEq for DaemonId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash && self.0.text == other.0.text)
    }
}

impl Eq for DaemonId {}

impl std::hash::Hash for DaemonId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl PartialOrd for DaemonId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DaemonId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Serialize for DaemonId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DaemonId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(DaemonId::from)
    }
}

/// The hash a [`DaemonId`] or [`Labels`] keeps of its content: foldhash's quality hasher,
/// seeded once per process (so ids and labels from the API cannot be chosen to collide).
/// Equal contents have equal hashes within a process; hashes are never stored.
fn content_hash<T: std::hash::Hash + ?Sized>(value: &T) -> u64 {
    use std::hash::BuildHasher;
    static STATE: std::sync::OnceLock<foldhash::quality::RandomState> = std::sync::OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(value)
}

impl fmt::Display for DaemonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DaemonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl From<&str> for DaemonId {
    fn from(s: &str) -> Self {
        DaemonId::new(s)
    }
}

impl From<String> for DaemonId {
    fn from(s: String) -> Self {
        DaemonId::from_box(s.into_boxed_str())
    }
}

/// Where a series comes from: a watched daemon, the host machine, or perfvisor itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Source {
    /// The machine perfvisor runs on (`system.*` metrics).
    Host,
    /// perfvisor's own health (restarts, drops, queue depths).
    Perfvisor,
    /// One watched daemon.
    Daemon(DaemonId),
}

impl Source {
    /// The source as stored text: `host`, `perfvisor`, or the daemon id prefixed by `daemon:`.
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            Source::Host => Cow::Borrowed("host"),
            Source::Perfvisor => Cow::Borrowed("perfvisor"),
            Source::Daemon(id) => Cow::Owned(format!("daemon:{id}")),
        }
    }

    /// Parses the text written by [`Source::as_text`].
    pub fn from_text(text: &str) -> Option<Source> {
        match text {
            "host" => Some(Source::Host),
            "perfvisor" => Some(Source::Perfvisor),
            _ => text
                .strip_prefix("daemon:")
                .filter(|id| !id.is_empty())
                .map(|id| Source::Daemon(DaemonId::new(id))),
        }
    }

    /// The daemon this source names, if it is one.
    pub fn daemon(&self) -> Option<&DaemonId> {
        match self {
            Source::Daemon(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_text())
    }
}

/// A metric name with its unit spelled out (`process.memory.usage_bytes`).
///
/// Static names cost no allocation, which keeps [`crate::recorder::Recorder::record`] cheap.
/// Two names at one address (clones, or the same constant) compare equal without reading
/// the text.
#[derive(Clone, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MetricName(Cow<'static, str>);

impl PartialEq for MetricName {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        std::ptr::eq(a, b) || a == b
    }
}

impl Eq for MetricName {}

impl std::hash::Hash for MetricName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl MetricName {
    /// A name known at compile time.
    pub const fn from_static(name: &'static str) -> Self {
        MetricName(Cow::Borrowed(name))
    }
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl From<&'static str> for MetricName {
    fn from(s: &'static str) -> Self {
        MetricName(Cow::Borrowed(s))
    }
}

impl From<String> for MetricName {
    fn from(s: String) -> Self {
        MetricName(Cow::Owned(s))
    }
}

/// A bounded label set (daemon project, network interface...), sorted by key.
///
/// Never put a pid or a request id here: every distinct label set is a new series.
///
/// Like [`DaemonId`], a label set is shared and keeps the hash of its pairs, computed once
/// when it is built: hashing it costs one word, and two clones compare equal by pointer.
#[derive(Clone, Default)]
pub struct Labels(Option<Arc<LabelSet>>);

/// The pairs of a non-empty [`Labels`] with their hash.
struct LabelSet {
    hash: u64,
    map: BTreeMap<String, String>,
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || (a.hash == b.hash && a.map == b.map),
            _ => false,
        }
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.as_ref().map_or(0, |set| set.hash));
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.map().cmp(&other.map())
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Labels").field(&self.map()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Option::<BTreeMap<String, String>>::deserialize(deserializer)?;
        Ok(Labels::from_map(map.unwrap_or_default()))
    }
}

impl Labels {
    /// The pairs, if there is any.
    fn map(&self) -> Option<&BTreeMap<String, String>> {
        self.0.as_ref().map(|set| &set.map)
    }
    /// A label set of `map` (none for an empty map), its hash computed here once.
    fn from_map(map: BTreeMap<String, String>) -> Self {
        if map.is_empty() {
            Labels(None)
        } else {
            Labels(Some(Arc::new(LabelSet {
                hash: content_hash(&map),
                map,
            })))
        }
    }
    /// No labels.
    pub const fn empty() -> Self {
        Labels(None)
    }
    /// Builds a label set from pairs; later duplicates win.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Labels::from_map(map)
    }
    /// The value of one label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map()?.get(key).map(String::as_str)
    }
    /// Iterates over `(key, value)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map()
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
    /// True when there is no label.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
    /// The canonical text form `k1=v1,k2=v2` (empty string for no labels), used as a storage
    /// key. A backslash, `,` and `=` inside keys and values are escaped with a backslash, so two
    /// different label sets never share a text form.
    pub fn to_text(&self) -> String {
        fn escaped(out: &mut String, s: &str) {
            for c in s.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        let mut out = String::new();
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            escaped(&mut out, k);
            out.push('=');
            escaped(&mut out, v);
        }
        out
    }
    /// Parses the text written by [`Labels::to_text`]; a pair without `=` is skipped.
    pub fn from_text(text: &str) -> Labels {
        let mut pairs = Vec::new();
        let (mut key, mut cur) = (None::<String>, String::new());
        let mut chars = text.chars();
        let mut finish = |key: &mut Option<String>, cur: &mut String| {
            if let Some(k) = key.take() {
                pairs.push((k, std::mem::take(cur)));
            }
            cur.clear();
        };
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                '=' if key.is_none() => key = Some(std::mem::take(&mut cur)),
                ',' => finish(&mut key, &mut cur),
                _ => cur.push(c),
            }
        }
        finish(&mut key, &mut cur);
        Labels::from_pairs(pairs)
    }
}

/// Whether a series is a gauge (a level) or a monotonically increasing counter.
///
/// Counters are stored as counters and turned into rates at read time or by the analyzer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A level that goes up and down (memory in use, latency of one operation).
    Gauge,
    /// A cumulative total that only grows, except on reset (CPU seconds, bytes read).
    Counter,
}

impl MetricKind {
    /// The stored code: 0 for gauges, 1 for counters.
    pub fn code(self) -> i64 {
        match self {
            MetricKind::Gauge => 0,
            MetricKind::Counter => 1,
        }
    }
    /// Inverse of [`MetricKind::code`]; unknown codes read as gauges.
    pub fn from_code(code: i64) -> Self {
        if code == 1 {
            MetricKind::Counter
        } else {
            MetricKind::Gauge
        }
    }
}

/// The identity of one time series: (source, metric, labels).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Who the series describes.
    pub source: Source,
    /// What is measured, unit included.
    pub metric: MetricName,
    /// Bounded extra dimensions.
    pub labels: Labels,
}

impl SeriesKey {
    /// Builds a key.
    pub fn new(source: Source, metric: impl Into<MetricName>, labels: Labels) -> Self {
        SeriesKey {
            source,
            metric: metric.into(),
            labels,
        }
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.source, self.metric)?;
        if !self.labels.is_empty() {
            write!(f, "{{{}}}", self.labels.to_text())?;
        }
        Ok(())
    }
}

/// One measurement of one series at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Which series.
    pub series: SeriesKey,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// When it was measured.
    pub ts_ms: TimestampMs,
    /// The value, in the unit the metric name states.
    pub value: f64,
}

/// A group of samples that travel together from the collector to analyzer and storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricBatch {
    /// The samples, in the order they were collected.
    pub samples: Vec<Sample>,
}

/// What the host tells perfvisor about a daemon it has started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSpec {
    /// The host's id for the daemon; one watcher per id.
    pub id: DaemonId,
    /// The daemon's current process id.
    pub pid: u32,
    /// The project the daemon serves, if any; becomes the `project` label of its series.
    pub project: Option<String>,
    /// Extra bounded labels for all of the daemon's series.
    pub labels: BTreeMap<String, String>,
}

impl DaemonSpec {
    /// A spec with no project and no extra labels.
    pub fn new(id: impl Into<DaemonId>, pid: u32) -> Self {
        DaemonSpec {
            id: id.into(),
            pid,
            project: None,
            labels: BTreeMap::new(),
        }
    }
    /// Sets the project.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }
    /// Adds one label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
    /// The label set every series of this daemon carries (`project` plus extra labels).
    pub fn series_labels(&self) -> Labels {
        Labels::from_pairs(
            self.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(
                    self.project
                        .iter()
                        .map(|p| ("project".to_string(), p.clone())),
                ),
        )
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nobody needs to act now.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs action now.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// Whether a notification announces a problem or its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds (and has held for the rule's `for` duration).
    Firing,
    /// The condition no longer holds.
    Resolved,
}

/// A notification sent to subscribers when a rule fires or resolves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, actix::Message)]
#[rtype(result = "()")]
pub struct Alert {
    /// The rule's name (`high_cpu`, or `perfvisor_degraded` for internal alerts).
    pub rule: String,
    /// The series that crossed the threshold.
    pub series: SeriesKey,
    /// The daemon concerned, if any.
    pub daemon: Option<DaemonId>,
    /// The daemon's project, if any.
    pub project: Option<String>,
    /// How urgent.
    pub severity: Severity,
    /// Firing or resolved.
    pub state: AlertState,
    /// The value that fired (or, when resolved, the value that cleared it).
    pub value: f64,
    /// The threshold of the rule.
    pub threshold: f64,
    /// When the condition started to hold (start of the pending period).
    pub since_ms: TimestampMs,
    /// When this notification was produced.
    pub at_ms: TimestampMs,
    /// A sentence for people.
    pub message: String,
    /// What to do about it, most useful first.
    pub recommendations: Vec<String>,
    /// True when perfvisor could act on it by itself (for example a restart).
    pub auto_actionable: bool,
}

/// An action perfvisor took (or refused to take) because of an alert, as stored in history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// When.
    pub ts_ms: TimestampMs,
    /// The daemon acted on, if any.
    pub daemon: Option<DaemonId>,
    /// The rule whose alert asked for it.
    pub rule: String,
    /// What: `restart`, `exec <program>`.
    pub action: String,
    /// `done`, `failed`, `refused` (rate limit, no daemon control) or `skipped`.
    pub outcome: String,
    /// Why, or what the control said.
    pub detail: String,
}

/// What happened to a daemon, as stored in its lifecycle history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleKind {
    /// The host announced the daemon (or perfvisor adopted it).
    Started,
    /// The host said the daemon stopped.
    Stopped,
    /// A probe found the process gone (or its pid reused) without anybody saying so.
    Exited,
    /// The daemon came back under a new pid.
    Restarted,
    /// The daemon's process replaced its program (`exec`: same pid and start time, another
    /// executable), as a start script or a version shim does. The same daemon carries on;
    /// its process trends start afresh.
    Exec,
}

impl LifecycleKind {
    /// The stored text of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleKind::Started => "started",
            LifecycleKind::Stopped => "stopped",
            LifecycleKind::Exited => "exited",
            LifecycleKind::Restarted => "restarted",
            LifecycleKind::Exec => "exec",
        }
    }
    /// Parses [`LifecycleKind::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "started" => LifecycleKind::Started,
            "stopped" => LifecycleKind::Stopped,
            "exited" => LifecycleKind::Exited,
            "restarted" => LifecycleKind::Restarted,
            "exec" => LifecycleKind::Exec,
            _ => return None,
        })
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`):
/// the one civil-date helper, for CSV timestamps and config dates alike.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One entry of a daemon's lifecycle history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// Which daemon.
    pub daemon: DaemonId,
    /// Its pid at the time.
    pub pid: u32,
    /// When it was seen.
    pub ts_ms: TimestampMs,
    /// What happened.
    pub kind: LifecycleKind,
    /// Free text (exit reason, what the probe saw). An intended event's detail starts
    /// with [`INTENDED_PREFIX`], which is how the flag survives in history.
    pub detail: String,
    /// Done on purpose: a stop, or an exit or restart within a restart the host or the
    /// operator announced (CLI, API, config reload, an alert action). Intended events are
    /// context, never failure: they count against no restart rule or stability score.
    #[serde(default)]
    pub intended: bool,
}

/// How the detail of an intended lifecycle event starts.
pub const INTENDED_PREFIX: &str = "on purpose: ";

/// A source of "now". Logic takes `now` as an argument; actors read it from a `Clock` so
/// that tests can drive time by hand.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> TimestampMs;
    /// Like `now_ms`, possibly up to a kernel tick (1 to 4 ms) behind, and cheaper. The
    /// recorder's hot path uses it. Defaults to `now_ms`.
    fn now_ms_coarse(&self) -> TimestampMs {
        self.now_ms()
    }
    /// True when `now_ms` is the system's wall clock. The recorder then stamps a profiled
    /// operation's samples with the time-stamp counter reading that ends it, and the
    /// collector converts that to the system's wall time. Defaults to false.
    fn is_system_time(&self) -> bool {
        false
    }
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimestampMs {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
    fn now_ms_coarse(&self) -> TimestampMs {
        coarse_now_ms()
    }
    fn is_system_time(&self) -> bool {
        true
    }
}

/// The wall clock read through `CLOCK_REALTIME_COARSE` on Linux: a few nanoseconds instead of
/// a few tens, at the kernel tick's resolution (1 to 4 ms). The recorder stamps hot-path
/// samples with it when perfvisor runs on the system clock; elsewhere it is the plain wall
/// clock.
pub fn coarse_now_ms() -> TimestampMs {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME_COARSE exists on every
        // Linux since 2.6.32 and clock_gettime only writes through the pointer.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
        if rc == 0 {
            // time_t and c_long are 32 bits on some Linux targets.
            #[allow(clippy::unnecessary_cast)]
            return ts.tv_sec as i64 * 1000 + ts.tv_nsec as i64 / 1_000_000;
        }
    }
    SystemClock.now_ms()
}

/// A clock that moves only when told to; for tests and simulations.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: TimestampMs) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start_ms)))
    }
    /// Moves the clock forward by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    /// Sets the clock.
    pub fn set_ms(&self, ms: TimestampMs) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> TimestampMs {
        self.0.load(Ordering::SeqCst)
    }
}

/// A shared clock, as actors hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The hash map of the per-sample paths (keyed by series): foldhash instead of SipHash,
/// because hashing series keys was the largest single cost of a sample's way through the
/// writer, the analyzer and the alert engine (100 daemons: ≈ 8 % of perfvisor's CPU).
/// Seeded per process, so keys from the API cannot be chosen to collide.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Source text round-trips, and a daemon id with a colon stays intact.
    #[test]
    fn source_text_round_trips() {
        for s in [
            Source::Host,
            Source::Perfvisor,
            Source::Daemon(DaemonId::new("a:b")),
        ] {
            assert_eq!(Source::from_text(&s.as_text()), Some(s.clone()));
        }
        assert_eq!(Source::from_text("daemon:"), None);
        assert_eq!(Source::from_text("elsewhere"), None);
    }

    /// Ids and label sets built apart from the same text are equal, hash alike (the kept
    /// hash is of the content, not of the allocation), order by text, and survive serde;
    /// different contents differ.
    #[test]
    fn kept_hashes_follow_content() {
        use std::hash::BuildHasher;
        let state = foldhash::fast::RandomState::default();
        let key = |d: &str, l: Labels| SeriesKey::new(Source::Daemon(DaemonId::new(d)), "m", l);
        let (a, b) = (
            key("d1", Labels::from_pairs([("project", "p")])),
            key("d1", Labels::from_pairs([("project", "p")])),
        );
        assert_eq!(a, b);
        assert_eq!(state.hash_one(&a), state.hash_one(&b));
        assert_eq!(a.clone(), a);
        for other in [
            key("d2", Labels::from_pairs([("project", "p")])),
            key("d1", Labels::from_pairs([("project", "q")])),
            key("d1", Labels::empty()),
        ] {
            assert_ne!(a, other);
        }
        assert!(DaemonId::new("a") < DaemonId::new("b"));
        assert!(Labels::empty() < Labels::from_pairs([("a", "1")]));
        assert!(Labels::from_pairs([("a", "1")]) < Labels::from_pairs([("a", "2")]));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"source":{"kind":"daemon","id":"d1"},"metric":"m","labels":{"project":"p"}}"#
        );
        let back: SeriesKey = serde_json::from_str(&json).unwrap();
        assert_eq!((state.hash_one(&back), back), (state.hash_one(&a), a));
        // An empty map reads as no labels, like `from_pairs` of nothing.
        let empty: Labels = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty, Labels::empty());
        assert_eq!(
            format!("{:?}", Labels::from_pairs([("a", "1")])),
            r#"Labels(Some({"a": "1"}))"#
        );
        // A daemon id is one pointer (its length and hash sit behind it), so a key is
        // 48 bytes in every per-series map (56 with an `Arc<str>` id).
        if cfg!(target_pointer_width = "64") {
            assert_eq!(std::mem::size_of::<DaemonId>(), 8);
            assert_eq!(std::mem::size_of::<SeriesKey>(), 48);
        }
    }

    /// Labels are sorted and their text form round-trips.
    #[test]
    fn labels_text_round_trips() {
        let l = Labels::from_pairs([("project", "ws1"), ("iface", "eth0")]);
        assert_eq!(l.to_text(), "iface=eth0,project=ws1");
        assert_eq!(Labels::from_text(&l.to_text()), l);
        assert!(Labels::from_text("").is_empty());
        let tricky = Labels::from_pairs([("a,b", "c=d"), ("e", "f\\,")]);
        assert_eq!(Labels::from_text(&tricky.to_text()), tricky);
        assert_ne!(
            Labels::from_pairs([("a", "1,b=2")]).to_text(),
            Labels::from_pairs([("a", "1"), ("b", "2")]).to_text()
        );
    }
}
