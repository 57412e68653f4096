//! Queries over the stored history: which series, which time range, which step, which
//! aggregations; the planner that picks a tier; and the execution that reads head rows,
//! chunks and rollups as one.
//!
//! **Semantics.** Time ranges are `[from_ms, to_ms)`. Without aggregations a query returns
//! the raw samples of each selected series, oldest first. With aggregations the range is cut
//! into buckets of `step_ms` starting at `from_ms` (one bucket for the whole range when no
//! step is given), and each bucket gets one value per aggregation:
//! - `count`, `sum`, `min`, `max`, `avg`, `stddev` (sample standard deviation, divisor
//!   n − 1, like the analyzer), `last` (value of the latest sample): exact from any tier.
//!   NaN samples are left out of all of them.
//! - `quantile(q)` (p50 = `quantile(0.5)`): from raw samples exactly, with linear
//!   interpolation between order statistics (numpy's default, R type 7); from rollups via
//!   their DDSketch, within 1 % relative error of the order statistic at rank ⌊q(n−1)⌋.
//! - `rate`: for counters, per second and reset-aware (a drop counts as a reset to zero, as
//!   in Prometheus): the increase from the last sample of the previous bucket (if any) to
//!   the last sample of this one, divided by the time between them. Exact from any tier.
//!
//! **Planner** (per series, recorded in the result): a forced tier is used as is; a query
//! without aggregations reads raw samples; a step that is not a whole number of hours reads
//! raw samples; otherwise the finest rollup tier (hourly, then daily) whose bucket divides
//! the step and whose data reaches back to the start of the range (or of the series) is
//! used, else raw samples if they reach back that far, else the tier reaching furthest back
//! (`partial` is then set). Rollup tiers answer whole buckets: where a query bucket edge cuts
//! a rollup bucket, that rollup bucket is answered from raw samples while they are kept, and
//! otherwise counted whole in the query bucket holding its start. Samples not yet compacted
//! (head rows) are always read raw and merged in, so rollup answers include the last hour.
//! The hourly tier of a sparse series' closed days is its raw samples (the maintenance keeps
//! those instead of hourly rollups, which would cost more); they are read raw the same way.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::config::{DAY_MS, HOUR_MS};
use super::head::series_head_rows;
use super::maintenance::{
    read_rollup, ROLLUP_COLUMNS, ROLLUP_COLUMNS_NO_SKETCH, TIER_DAILY, TIER_HOURLY,
};
use super::rollup::Rollup;
use super::{codec, headlog, StorageError};
use crate::types::{MetricKind, SeriesKey, Source, TimestampMs};

/// Which series a query reads: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesSelector {
    /// The source (`host`, `perfvisor` or a daemon), if restricted.
    pub source: Option<Source>,
    /// The exact metric name, if restricted.
    pub metric: Option<String>,
    /// Labels the series must carry with these values (others may be present).
    pub labels: Vec<(String, String)>,
}

impl SeriesSelector {
    /// Selects every series.
    pub fn all() -> Self {
        SeriesSelector::default()
    }

    /// Restricts to one source.
    pub fn source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }

    /// Restricts to one metric name.
    pub fn metric(mut self, metric: impl Into<String>) -> Self {
        self.metric = Some(metric.into());
        self
    }

    /// Requires a label value.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Selects exactly this series.
    pub fn exact(key: &SeriesKey) -> Self {
        SeriesSelector {
            source: Some(key.source.clone()),
            metric: Some(key.metric.as_str().to_string()),
            labels: key
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Whether a series matches.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        self.source.as_ref().is_none_or(|s| *s == key.source)
            && self
                .metric
                .as_deref()
                .is_none_or(|m| m == key.metric.as_str())
            && self
                .labels
                .iter()
                .all(|(k, v)| key.labels.get(k) == Some(v.as_str()))
    }
}

/// One value computed per bucket. See the module documentation for definitions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Mean of the values.
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Sum of the values.
    Sum,
    /// Number of (non-NaN) values.
    Count,
    /// Sample standard deviation.
    Stddev,
    /// Quantile `q` in `[0, 1]`.
    Quantile(f64),
    /// Value of the latest sample.
    Last,
    /// Reset-aware per-second increase (for counters).
    Rate,
}

impl Aggregation {
    /// Parses `avg`, `min`, `max`, `sum`, `count`, `stddev`, `last`, `rate`, `p50`/`p99.9`
    /// style percentiles, or `quantile(0.95)`.
    pub fn parse(text: &str) -> Result<Aggregation, StorageError> {
        let bad = || StorageError::InvalidQuery {
            field: "aggregation",
            value: text.to_string(),
            accepted: "avg, min, max, sum, count, stddev, last, rate, pNN (0 ≤ NN ≤ 100) \
                       or quantile(q) with 0 ≤ q ≤ 1",
        };
        let t = text.trim().to_ascii_lowercase();
        let aggregation = match t.as_str() {
            "avg" | "mean" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "sum" => Aggregation::Sum,
            "count" => Aggregation::Count,
            "stddev" => Aggregation::Stddev,
            "last" => Aggregation::Last,
            "rate" => Aggregation::Rate,
            "median" => Aggregation::Quantile(0.5),
            _ => {
                let q = if let Some(p) = t.strip_prefix('p') {
                    p.parse::<f64>().map_err(|_| bad())? / 100.0
                } else if let Some(inner) = t
                    .strip_prefix("quantile(")
                    .and_then(|r| r.strip_suffix(')'))
                {
                    inner.trim().parse::<f64>().map_err(|_| bad())?
                } else {
                    return Err(bad());
                };
                if !(0.0..=1.0).contains(&q) {
                    return Err(bad());
                }
                Aggregation::Quantile(q)
            }
        };
        Ok(aggregation)
    }

    /// The aggregation's name as [`Aggregation::parse`] reads it.
    pub fn name(&self) -> String {
        match self {
            Aggregation::Avg => "avg".into(),
            Aggregation::Min => "min".into(),
            Aggregation::Max => "max".into(),
            Aggregation::Sum => "sum".into(),
            Aggregation::Count => "count".into(),
            Aggregation::Stddev => "stddev".into(),
            Aggregation::Quantile(q) => format!("quantile({q})"),
            Aggregation::Last => "last".into(),
            Aggregation::Rate => "rate".into(),
        }
    }
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Raw samples (head rows and chunks).
    Raw,
    /// Hourly rollups.
    Hourly,
    /// Daily rollups.
    Daily,
}

impl Tier {
    /// The bucket length of a rollup tier; `None` for raw.
    pub fn bucket_ms(self) -> Option<i64> {
        match self {
            Tier::Raw => None,
            Tier::Hourly => Some(HOUR_MS),
            Tier::Daily => Some(DAY_MS),
        }
    }
}

/// A query. Build with [`Query::new`] and the setters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Which series.
    pub selector: SeriesSelector,
    /// Start of the range (inclusive), ms since the epoch.
    pub from_ms: TimestampMs,
    /// End of the range (exclusive).
    pub to_ms: TimestampMs,
    /// Bucket length; `None` for one bucket over the whole range.
    pub step_ms: Option<i64>,
    /// Values per bucket; empty for raw samples.
    pub aggregations: Vec<Aggregation>,
    /// Forces a tier instead of letting the planner choose.
    pub tier: Option<Tier>,
}

/// Most buckets one series may produce in one query.
pub const MAX_BUCKETS: i64 = 1_000_000;

impl Query {
    /// Raw samples of the selected series in `[from_ms, to_ms)`.
    pub fn new(selector: SeriesSelector, from_ms: TimestampMs, to_ms: TimestampMs) -> Self {
        Query {
            selector,
            from_ms,
            to_ms,
            step_ms: None,
            aggregations: Vec::new(),
            tier: None,
        }
    }

    /// Sets the bucket length.
    pub fn step_ms(mut self, step_ms: i64) -> Self {
        self.step_ms = Some(step_ms);
        self
    }

    /// Adds an aggregation.
    pub fn aggregate(mut self, aggregation: Aggregation) -> Self {
        self.aggregations.push(aggregation);
        self
    }

    /// Forces a tier.
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = Some(tier);
        self
    }

    /// Checks the range, step and aggregations; the error names the field and value.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.to_ms <= self.from_ms {
            return Err(StorageError::InvalidQuery {
                field: "to_ms",
                value: format!("{} (from_ms is {})", self.to_ms, self.from_ms),
                accepted: "a time after from_ms",
            });
        }
        if let Some(step) = self.step_ms {
            if step <= 0 {
                return Err(StorageError::InvalidQuery {
                    field: "step_ms",
                    value: step.to_string(),
                    accepted: "a positive number of milliseconds",
                });
            }
            // The range may be wider than i64::MAX ms: count in u64.
            let buckets = self
                .to_ms
                .abs_diff(self.from_ms)
                .div_ceil(step.unsigned_abs());
            if buckets > MAX_BUCKETS.unsigned_abs() {
                return Err(StorageError::InvalidQuery {
                    field: "step_ms",
                    value: format!("{step} ({buckets} buckets)"),
                    accepted: "a step giving at most 1000000 buckets over the range",
                });
            }
            if self.aggregations.is_empty() {
                return Err(StorageError::InvalidQuery {
                    field: "step_ms",
                    value: step.to_string(),
                    accepted: "a step only together with at least one aggregation",
                });
            }
        }
        for a in &self.aggregations {
            if let Aggregation::Quantile(q) = a {
                if !(0.0..=1.0).contains(q) {
                    return Err(StorageError::InvalidQuery {
                        field: "aggregation",
                        value: a.name(),
                        accepted: "a quantile between 0 and 1",
                    });
                }
            }
        }
        if let (Some(tier), Some(bucket)) = (self.tier, self.tier.and_then(Tier::bucket_ms)) {
            if self.aggregations.is_empty() {
                return Err(StorageError::InvalidQuery {
                    field: "tier",
                    value: format!("{tier:?}"),
                    accepted: "a rollup tier only together with at least one aggregation",
                });
            }
            if self.step_ms.is_some_and(|s| s % bucket != 0) {
                return Err(StorageError::InvalidQuery {
                    field: "step_ms",
                    value: format!("{:?}", self.step_ms),
                    accepted: "a whole number of the forced tier's buckets",
                });
            }
        }
        Ok(())
    }
}

/// One bucket of an aggregated answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the bucket.
    pub start_ms: TimestampMs,
    /// One value per aggregation, in query order; `None` when undefined (no samples, or
    /// one sample for stddev and rate).
    pub values: Vec<Option<f64>>,
}

/// The answer for one series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesResult {
    /// The series.
    pub key: SeriesKey,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// The tier the answer comes from.
    pub tier: Tier,
    /// True when no tier reaches back to the start of the range.
    pub partial: bool,
    /// Raw samples (queries without aggregations).
    pub samples: Vec<(TimestampMs, f64)>,
    /// Buckets (queries with aggregations), oldest first; empty buckets included.
    pub buckets: Vec<Bucket>,
}

/// A series as stored: id, key and kind.
#[derive(Clone, Debug)]
pub(super) struct StoredSeries {
    pub(super) id: i64,
    pub(super) key: SeriesKey,
    pub(super) kind: MetricKind,
}

/// Raw samples of one series in `[from, to)`, oldest first (stable for equal timestamps:
/// chunks before head rows, each in write order). `chunks_only` leaves head rows out.
pub(super) fn raw_samples(
    conn: &Connection,
    series: i64,
    from: i64,
    to: i64,
    chunks_only: bool,
) -> Result<Vec<(i64, f64)>, StorageError> {
    raw_samples_capped(conn, series, from, to, chunks_only, usize::MAX)
}

/// [`raw_samples`], reading no further once more than `cap` samples are in: the answer then
/// holds more than `cap` samples (not necessarily the first ones) and says only that the
/// range has too many. Memory stays near `cap` samples however dense the series.
pub(super) fn raw_samples_capped(
    conn: &Connection,
    series: i64,
    from: i64,
    to: i64,
    chunks_only: bool,
    cap: usize,
) -> Result<Vec<(i64, f64)>, StorageError> {
    let mut out = Vec::new();
    // A chunk never spans more than a day (an hour window, or a sparse series' day), so its
    // start is within a day of any sample it holds: that bounds the index range scanned.
    let mut stmt = conn.prepare_cached(
        "SELECT id, data FROM chunks WHERE series_id = ?1 AND start_ms >= ?2 AND start_ms < ?3 \
         AND end_ms >= ?4 ORDER BY start_ms, id",
    )?;
    let mut rows = stmt.query(params![series, from.saturating_sub(DAY_MS), to, from])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let data = blob(conn, row, "chunk", id)?;
        let decoded =
            codec::decode_chunk(data).map_err(|e| corrupt(conn, format!("chunk {id}: {e}")))?;
        out.extend(decoded.into_iter().filter(|&(ts, _)| ts >= from && ts < to));
        if out.len() > cap {
            return Ok(out);
        }
    }
    if !chunks_only {
        let mut stmt = conn.prepare_cached(series_head_rows!(
            "h.id, h.data",
            " AND h.max_ts >= ?4 AND h.min_ts < ?3 ORDER BY f.window_ms, f.fold"
        ))?;
        let mut rows = stmt.query(params![series, window_floor(from), to, from])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let data = blob(conn, row, "head row", id)?;
            let decoded = codec::decode_chunk(data)
                .map_err(|e| corrupt(conn, format!("head row {id}: {e}")))?;
            out.extend(decoded.into_iter().filter(|&(ts, _)| ts >= from && ts < to));
            if out.len() > cap {
                return Ok(out);
            }
        }
        out.extend(headlog::samples_of(conn, series, from, to)?);
    }
    // Chunks of one window can overlap (late samples), and head rows follow chunks.
    out.sort_by_key(|&(ts, _)| ts);
    Ok(out)
}

/// The blob in column 1 of a row, or a corruption error naming the row.
fn blob<'r>(
    conn: &Connection,
    row: &'r rusqlite::Row<'_>,
    what: &str,
    id: i64,
) -> Result<&'r [u8], StorageError> {
    row.get_ref(1)?
        .as_blob()
        .map_err(|e| corrupt(conn, format!("{what} {id}: {e}")))
}

fn window_floor(ts: i64) -> i64 {
    floor_to(ts, HOUR_MS)
}

/// `ts` rounded down to a multiple of `unit` (saturating at `i64::MIN`).
fn floor_to(ts: i64, unit: i64) -> i64 {
    ts.div_euclid(unit).saturating_mul(unit)
}

fn corrupt(conn: &Connection, what: String) -> StorageError {
    StorageError::Corrupt {
        path: conn.path().unwrap_or("").into(),
        what,
    }
}

/// The earliest data of a series in each tier.
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    raw: Option<i64>,
    hourly: Option<i64>,
    daily: Option<i64>,
}

impl Coverage {
    fn of(conn: &Connection, series: i64) -> Result<Coverage, StorageError> {
        let chunk: Option<i64> = conn
            .prepare_cached("SELECT min(start_ms) FROM chunks WHERE series_id = ?1")?
            .query_row([series], |r| r.get(0))?;
        let head_rows: Option<i64> = conn
            .prepare_cached(series_head_rows!("min(h.min_ts)", ""))?
            .query_row(params![series, i64::MIN, i64::MAX], |r| r.get(0))?;
        let logged = headlog::samples_of(conn, series, i64::MIN, i64::MAX)?;
        let head = logged.iter().map(|&(ts, _)| ts).chain(head_rows).min();
        let bucket = |tier: i64| -> Result<Option<i64>, StorageError> {
            Ok(conn
                .prepare_cached(
                    "SELECT min(bucket_ms) FROM rollups WHERE tier = ?1 AND series_id = ?2",
                )?
                .query_row(params![tier, series], |r| r.get(0))?)
        };
        let raw = match (chunk, head) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Coverage {
            raw,
            hourly: bucket(TIER_HOURLY)?.map(|h| h.min(raw.unwrap_or(i64::MAX))),
            daily: bucket(TIER_DAILY)?,
        })
    }

    fn start(&self, tier: Tier) -> Option<i64> {
        match tier {
            Tier::Raw => self.raw,
            Tier::Hourly => self.hourly,
            // Days past the daily mark are answered from hourly rows.
            Tier::Daily => match (self.daily, self.hourly) {
                (Some(d), Some(h)) => Some(d.min(h)),
                (d, h) => d.or(h),
            },
        }
    }

    fn earliest(&self) -> Option<i64> {
        [self.raw, self.hourly, self.daily]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The planner's choice for one series.
fn plan(query: &Query, coverage: &Coverage) -> (Tier, bool) {
    let need = coverage
        .earliest()
        .map_or(query.from_ms, |e| e.max(query.from_ms));
    let covers = |tier: Tier| coverage.start(tier).is_some_and(|s| s <= need);
    if let Some(tier) = query.tier {
        return (tier, !covers(tier));
    }
    if query.aggregations.is_empty() {
        return (Tier::Raw, !covers(Tier::Raw));
    }
    let step = query
        .step_ms
        .unwrap_or(query.to_ms.saturating_sub(query.from_ms));
    let eligible: Vec<Tier> = [Tier::Hourly, Tier::Daily]
        .into_iter()
        .filter(|t| t.bucket_ms().is_some_and(|b| step % b == 0))
        .collect();
    if let Some(&tier) = eligible.iter().find(|&&t| covers(t)) {
        return (tier, false);
    }
    if covers(Tier::Raw) || eligible.is_empty() {
        return (Tier::Raw, !covers(Tier::Raw));
    }
    let furthest = eligible
        .iter()
        .copied()
        .filter(|&t| coverage.start(t).is_some())
        .min_by_key(|&t| coverage.start(t))
        .unwrap_or(Tier::Raw);
    (furthest, true)
}

/// Runs a query over the given series.
pub(super) fn run(
    conn: &Connection,
    series: &[StoredSeries],
    query: &Query,
) -> Result<Vec<SeriesResult>, StorageError> {
    let mut out = Vec::new();
    run_each(conn, series, query, usize::MAX, |r| {
        out.push(r);
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Runs `query` one series at a time, handing each answer to `each` before the next series
/// is read, and stopping early when `each` breaks: a caller that streams or budgets the
/// answer never holds more than one series' result. A raw answer stops being read past
/// `max_raw` samples (it then holds more than `max_raw`, see [`raw_samples_capped`]).
pub(super) fn run_each(
    conn: &Connection,
    series: &[StoredSeries],
    query: &Query,
    max_raw: usize,
    mut each: impl FnMut(SeriesResult) -> std::ops::ControlFlow<()>,
) -> Result<(), StorageError> {
    query.validate()?;
    for s in series.iter().filter(|s| query.selector.matches(&s.key)) {
        let coverage = Coverage::of(conn, s.id)?;
        let (tier, partial) = plan(query, &coverage);
        let mut result = SeriesResult {
            key: s.key.clone(),
            kind: s.kind,
            tier,
            partial,
            samples: Vec::new(),
            buckets: Vec::new(),
        };
        if query.aggregations.is_empty() {
            result.samples =
                raw_samples_capped(conn, s.id, query.from_ms, query.to_ms, false, max_raw)?;
        } else {
            let acc = match tier {
                Tier::Raw => accumulate_raw(conn, s.id, query)?,
                rollup_tier => accumulate_rollups(conn, s.id, query, rollup_tier, &coverage)?,
            };
            result.buckets = finish(query, acc);
        }
        if each(result).is_break() {
            break;
        }
    }
    Ok(())
}

/// What is gathered per query bucket before the aggregations are read off it.
#[derive(Debug, Default)]
struct BucketAcc {
    /// Boxed: most buckets of a fine step are empty, and an empty accumulator is then a
    /// pointer instead of a whole rollup with its sketch (a 100,000-bucket query held
    /// megabytes of empty rollups).
    rollup: Option<Box<Rollup>>,
    /// Raw samples, kept only while the bucket is answered from raw data alone (exact
    /// quantiles).
    raw: Option<Vec<f64>>,
    /// True once any rollup row went in (quantiles then come from the sketch).
    from_rollups: bool,
}

impl BucketAcc {
    fn add(&mut self, rollup: &Rollup) {
        match &mut self.rollup {
            Some(acc) => {
                if let Err(e) = acc.merge(rollup) {
                    tracing::warn!(error = %e, "Rollup not mergeable; left out of the answer.");
                }
            }
            None => self.rollup = Some(Box::new(rollup.clone())),
        }
    }
}

/// Geometry of the query buckets. Offsets from `from` are u64: a range may be wider than
/// `i64::MAX` ms.
struct Buckets {
    from: i64,
    to: i64,
    step: u64,
    n: usize,
}

impl Buckets {
    /// For a validated query (`to > from`, a positive step giving at most [`MAX_BUCKETS`]).
    fn of(query: &Query) -> Buckets {
        let span = query.to_ms.abs_diff(query.from_ms);
        let step = query.step_ms.map_or(span, i64::unsigned_abs).max(1);
        let n = span.div_ceil(step).max(1) as usize;
        Buckets {
            from: query.from_ms,
            to: query.to_ms,
            step,
            n,
        }
    }

    fn index(&self, ts: i64) -> Option<usize> {
        if ts < self.from || ts >= self.to {
            return None;
        }
        Some((ts.abs_diff(self.from) / self.step) as usize)
    }

    fn start(&self, i: usize) -> i64 {
        self.from
            .saturating_add_unsigned((i as u64).saturating_mul(self.step))
    }

    fn end(&self, i: usize) -> i64 {
        self.start(i)
            .saturating_add_unsigned(self.step)
            .min(self.to)
    }
}

/// The number of buckets [`Buckets::of`] gives a query (for the fuzz targets).
pub(super) fn bucket_count(query: &Query) -> usize {
    Buckets::of(query).n
}

/// The bucket [`Buckets::index`] gives `ts` in a query (for the fuzz targets).
pub(super) fn bucket_index(query: &Query, ts: i64) -> Option<usize> {
    Buckets::of(query).index(ts)
}

/// Adds raw samples, split by bucket, as per-bucket rollups (keeping the values for exact
/// quantiles where the bucket has no rollup rows).
fn add_raw(b: &Buckets, accs: &mut [BucketAcc], samples: &[(i64, f64)]) {
    let mut start = 0;
    while start < samples.len() {
        let Some(i) = b.index(samples[start].0) else {
            start += 1;
            continue;
        };
        let end_ts = b.end(i);
        let len = samples[start..]
            .iter()
            .take_while(|&&(ts, _)| ts < end_ts)
            .count();
        let run = &samples[start..start + len];
        if let Some(rollup) = Rollup::from_samples(run) {
            accs[i].add(&rollup);
        }
        if !accs[i].from_rollups {
            accs[i]
                .raw
                .get_or_insert_with(Vec::new)
                .extend(run.iter().map(|&(_, v)| v).filter(|v| v.is_finite()));
        }
        start += len.max(1);
    }
}

fn accumulate_raw(
    conn: &Connection,
    series: i64,
    query: &Query,
) -> Result<Vec<BucketAcc>, StorageError> {
    let b = Buckets::of(query);
    let mut accs: Vec<BucketAcc> = (0..b.n).map(|_| BucketAcc::default()).collect();
    let samples = raw_samples(conn, series, query.from_ms, query.to_ms, false)?;
    add_raw(&b, &mut accs, &samples);
    Ok(accs)
}

/// Answers the hourly tier from raw samples on the closed days whose hourly rollups were
/// deleted because the day's chunks stand in for them (a sparse series; see
/// `maintenance::thin_sparse_hours`): days with a daily rollup of the series and no hourly
/// one among `pieces`.
fn stand_in_days(
    conn: &Connection,
    series: i64,
    lo: i64,
    b: &Buckets,
    pieces: &[(i64, i64, Rollup)],
    accs: &mut [BucketAcc],
) -> Result<(), StorageError> {
    let days: Vec<i64> = conn
        .prepare_cached(
            "SELECT bucket_ms FROM rollups WHERE tier = ?1 AND series_id = ?2 \
             AND bucket_ms >= ?3 AND bucket_ms < ?4 ORDER BY bucket_ms",
        )?
        .query_map(
            params![TIER_DAILY, series, floor_to(lo, DAY_MS), b.to],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    for day in days {
        let end = day.saturating_add(DAY_MS);
        if pieces
            .iter()
            .any(|(start, _, _)| *start >= day && *start < end)
        {
            continue;
        }
        let samples = raw_samples(conn, series, day.max(b.from), end.min(b.to), true)?;
        add_raw(b, accs, &samples);
    }
    Ok(())
}

fn accumulate_rollups(
    conn: &Connection,
    series: i64,
    query: &Query,
    tier: Tier,
    coverage: &Coverage,
) -> Result<Vec<BucketAcc>, StorageError> {
    let b = Buckets::of(query);
    let mut accs: Vec<BucketAcc> = (0..b.n).map(|_| BucketAcc::default()).collect();
    let with_sketch = query
        .aggregations
        .iter()
        .any(|a| matches!(a, Aggregation::Quantile(_)));
    let columns = if with_sketch {
        ROLLUP_COLUMNS
    } else {
        ROLLUP_COLUMNS_NO_SKETCH
    };
    let unit = tier.bucket_ms().unwrap_or(HOUR_MS);
    let lo = floor_to(query.from_ms, unit);
    // (bucket start, bucket length, rollup)
    let mut pieces: Vec<(i64, i64, Rollup)> = Vec::new();
    let mut read = |tier_code: i64, len: i64, from: i64, to: i64| -> Result<(), StorageError> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT bucket_ms, {columns} FROM rollups WHERE tier = ?1 AND series_id = ?2 \
             AND bucket_ms >= ?3 AND bucket_ms < ?4 ORDER BY bucket_ms"
        ))?;
        let mut rows = stmt.query(params![tier_code, series, from, to])?;
        while let Some(row) = rows.next()? {
            let bucket: i64 = row.get(0)?;
            match read_rollup(row, 1, with_sketch)? {
                Some(r) => pieces.push((bucket, len, r)),
                None => {
                    return Err(corrupt(
                        conn,
                        format!("rollup of series {series} at {bucket}"),
                    ))
                }
            }
        }
        Ok(())
    };
    match tier {
        Tier::Daily => {
            // Daily rows up to the mark, hourly rows of the days after it.
            let mark: i64 = conn
                .prepare_cached("SELECT value FROM maintenance WHERE name = 'daily_until'")?
                .query_row([], |r| r.get(0))
                .unwrap_or(i64::MIN);
            let split = mark.clamp(lo, query.to_ms.max(lo));
            read(TIER_DAILY, DAY_MS, lo, split)?;
            read(TIER_HOURLY, HOUR_MS, split, query.to_ms)?;
        }
        _ => {
            read(TIER_HOURLY, HOUR_MS, lo, query.to_ms)?;
            stand_in_days(conn, series, lo, &b, &pieces, &mut accs)?;
        }
    }
    let raw_from = coverage.raw.unwrap_or(i64::MAX);
    for (start, len, rollup) in &pieces {
        let end = start.saturating_add(*len);
        let first = b.index((*start).max(b.from));
        let last = b.index((end - 1).min(b.to - 1));
        match (first, last) {
            (Some(i), Some(j)) if i == j && *start >= b.from && end <= b.to => {
                accs[i].from_rollups = true;
                accs[i].raw = None;
                accs[i].add(rollup);
            }
            (Some(i), _) if *start >= raw_from => {
                // Cut by a query bucket edge, and raw samples are still kept: exact pieces.
                let samples = raw_samples(conn, series, (*start).max(b.from), end.min(b.to), true)?;
                for acc in &mut accs[i..=last.unwrap_or(i)] {
                    acc.from_rollups = true;
                    acc.raw = None;
                }
                add_raw(&b, &mut accs, &samples);
            }
            (Some(i), _) | (None, Some(i)) => {
                accs[i].from_rollups = true;
                accs[i].raw = None;
                accs[i].add(rollup);
            }
            (None, None) => {}
        }
    }
    // Head rows are never in a rollup: add them raw.
    let mut head = Vec::new();
    {
        let mut stmt = conn.prepare_cached(series_head_rows!("h.id, h.data", ""))?;
        let mut rows = stmt.query(params![series, window_floor(b.from), b.to])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let data = blob(conn, row, "head row", id)?;
            let decoded = codec::decode_chunk(data)
                .map_err(|e| corrupt(conn, format!("head row {id}: {e}")))?;
            head.extend(decoded);
        }
    }
    head.extend(headlog::samples_of(
        conn,
        series,
        window_floor(b.from),
        b.to,
    )?);
    head.sort_by_key(|&(ts, _)| ts);
    for acc in accs.iter_mut() {
        if acc.from_rollups {
            acc.raw = None;
        }
    }
    add_raw(&b, &mut accs, &head);
    Ok(accs)
}

/// Reads the aggregations off each bucket.
fn finish(query: &Query, accs: Vec<BucketAcc>) -> Vec<Bucket> {
    let b = Buckets::of(query);
    let mut previous_last: Option<(i64, f64)> = None;
    let mut out = Vec::with_capacity(accs.len());
    for (i, mut acc) in accs.into_iter().enumerate() {
        let mut sorted: Option<Vec<f64>> = acc.raw.take().filter(|_| !acc.from_rollups);
        if let Some(v) = &mut sorted {
            v.sort_by(f64::total_cmp);
        }
        let r = acc.rollup.as_deref().filter(|r| r.count > 0);
        let values = query
            .aggregations
            .iter()
            .map(|a| match (a, r) {
                (Aggregation::Count, _) => Some(r.map_or(0.0, |r| r.count as f64)),
                (Aggregation::Sum, _) => Some(r.map_or(0.0, |r| r.sum)),
                (_, None) => None,
                (Aggregation::Avg, Some(r)) => r.mean(),
                (Aggregation::Min, Some(r)) => Some(r.min),
                (Aggregation::Max, Some(r)) => Some(r.max),
                (Aggregation::Stddev, Some(r)) => r.stddev(),
                (Aggregation::Last, Some(r)) => Some(r.last),
                (Aggregation::Quantile(q), Some(r)) => match &sorted {
                    Some(v) if !v.is_empty() => Some(crate::analyzer::quantile_linear(v, *q)),
                    _ => r.quantile(*q),
                },
                (Aggregation::Rate, Some(r)) => rate(previous_last, r),
            })
            .collect();
        if let Some(r) = r {
            previous_last = Some((r.last_ts, r.last));
        }
        out.push(Bucket {
            start_ms: b.start(i),
            values,
        });
    }
    out
}

/// Reset-aware per-second increase up to the bucket's last sample (see module docs).
fn rate(previous: Option<(i64, f64)>, r: &Rollup) -> Option<f64> {
    let (start_ts, boundary) = match previous {
        Some((ts, value)) => (
            ts,
            if r.first < value {
                r.first
            } else {
                r.first - value
            },
        ),
        None => (r.first_ts, 0.0),
    };
    let seconds = (r.last_ts - start_ts) as f64 / 1000.0;
    (seconds > 0.0).then(|| (r.increase + boundary) / seconds)
}

/// Series ids, keys and kinds, in the order they were first stored.
pub(super) fn load_series(conn: &Connection) -> Result<Vec<StoredSeries>, StorageError> {
    let mut stmt =
        conn.prepare_cached("SELECT id, source, metric, labels, kind FROM series ORDER BY id")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, source, metric, labels, kind) = row?;
        match Source::from_text(&source) {
            Some(source) => out.push(StoredSeries {
                id,
                key: SeriesKey::new(
                    source,
                    crate::types::MetricName::from(metric),
                    crate::types::Labels::from_text(&labels),
                ),
                kind: MetricKind::from_code(kind),
            }),
            None => tracing::warn!(
                series = id,
                source,
                "Series with an unknown source skipped."
            ),
        }
    }
    Ok(out)
}
