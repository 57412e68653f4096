//! The budget of `GET /api/v1/query`: how many points per series, series, bytes of answer
//! and seconds one query may cost, checked before it runs (from the parameters alone) and
//! while it runs (series by series), so that one unauthenticated GET cannot take the
//! process's memory or the server's time. Every refusal names the limit that was hit and
//! what to change.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;

use super::Problem;
use crate::{Query, StorageReader};

/// What one query may cost. Defaults are the `DEFAULT_*` constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryBudget {
    /// Most points one series may answer: buckets for an aggregated query, raw samples
    /// otherwise ([`DEFAULT_MAX_POINTS_PER_SERIES`]).
    pub max_points_per_series: u64,
    /// Most series one query may answer ([`DEFAULT_MAX_SERIES`]).
    pub max_series: u64,
    /// Most values (buckets × aggregations, summed over series) one query may answer
    /// ([`DEFAULT_MAX_VALUES`]).
    pub max_values: u64,
    /// Most bytes of JSON one answer may hold ([`DEFAULT_MAX_BYTES`]).
    pub max_bytes: usize,
    /// Longest a query may run ([`DEFAULT_MAX_TIME`]).
    pub max_time: Duration,
    /// Queries admitted at once, running on the one query thread or queued for it; later
    /// ones wait their turn before that ([`DEFAULT_CONCURRENT_QUERIES`]).
    pub concurrent: usize,
}

/// Default [`QueryBudget::max_points_per_series`].
pub const DEFAULT_MAX_POINTS_PER_SERIES: u64 = 100_000;
/// Default [`QueryBudget::max_series`].
pub const DEFAULT_MAX_SERIES: u64 = 2_000;
/// Default [`QueryBudget::max_values`].
pub const DEFAULT_MAX_VALUES: u64 = 1_000_000;
/// Default [`QueryBudget::max_bytes`]: 8 MiB (the buffer then never holds more than
/// 16 MiB, even while it grows).
pub const DEFAULT_MAX_BYTES: usize = 8 << 20;
/// Default [`QueryBudget::max_time`].
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(10);
/// Default [`QueryBudget::concurrent`].
pub const DEFAULT_CONCURRENT_QUERIES: usize = 1;

impl Default for QueryBudget {
    fn default() -> Self {
        QueryBudget {
            max_points_per_series: DEFAULT_MAX_POINTS_PER_SERIES,
            max_series: DEFAULT_MAX_SERIES,
            max_values: DEFAULT_MAX_VALUES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_time: DEFAULT_MAX_TIME,
            concurrent: DEFAULT_CONCURRENT_QUERIES,
        }
    }
}

/// `n` with thousands separators: `3600000` → `3,600,000`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A span of milliseconds as people write it (`36ms`, `1h`).
fn span(ms: u64) -> String {
    crate::config::format_duration(Duration::from_millis(ms))
}

fn too_large(error: String, accepted: impl Into<String>) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, error, accepted)
}

impl QueryBudget {
    /// Buckets per series the query asks for (`None` for raw samples, whose number is
    /// known only once read).
    fn buckets(query: &Query) -> Option<u64> {
        if query.aggregations.is_empty() {
            return None;
        }
        let range = query.to_ms.abs_diff(query.from_ms);
        Some(match query.step_ms {
            Some(step) if step > 0 => range.div_ceil(step.unsigned_abs()),
            _ => 1,
        })
    }

    /// Refuses (400) a query whose parameters alone ask for more points per series than the
    /// budget allows, saying which step would fit.
    pub(super) fn check_shape(&self, query: &Query) -> Result<(), Problem> {
        let Some(buckets) = Self::buckets(query) else {
            return Ok(());
        };
        if buckets <= self.max_points_per_series {
            return Ok(());
        }
        let range = query.to_ms.abs_diff(query.from_ms);
        let step = query.step_ms.map_or(range, i64::unsigned_abs);
        let min_step = range.div_ceil(self.max_points_per_series).max(1);
        Err(Problem::bad(
            format!(
                "step {} over {} is {} points per series; the limit is {}",
                span(step),
                span(range),
                grouped(buckets),
                grouped(self.max_points_per_series)
            ),
            format!("step >= {} or a shorter range", span(min_step)),
        ))
    }

    /// Refuses (400) a query selecting more series, or more values in all, than the budget
    /// allows; `series` is how many series its selector matches.
    pub(super) fn check_series(&self, query: &Query, series: u64) -> Result<(), Problem> {
        if series > self.max_series {
            return Err(Problem::bad(
                format!(
                    "the query selects {} series; the limit is {}",
                    grouped(series),
                    grouped(self.max_series)
                ),
                "metric=<name>, daemon=<id> or source=<source> to select fewer series",
            ));
        }
        let Some(buckets) = Self::buckets(query) else {
            return Ok(());
        };
        let aggs = query.aggregations.len() as u64;
        let values = buckets.saturating_mul(aggs).saturating_mul(series);
        if values > self.max_values {
            let per_series = buckets.saturating_mul(aggs).max(1);
            return Err(Problem::bad(
                format!(
                    "{} series × {} buckets × {aggs} aggregations is {} values; the limit is {}",
                    grouped(series),
                    grouped(buckets),
                    grouped(values),
                    grouped(self.max_values)
                ),
                format!(
                    "at most {} series at this step and aggregations (metric=, daemon= or \
                     source= select fewer), a larger step, or a shorter range",
                    grouped(self.max_values / per_series)
                ),
            ));
        }
        Ok(())
    }

    /// Runs `query` on `reader` within the budget and returns the JSON answer (an array of
    /// series results, as `Vec<SeriesResult>` serialises). Each series is serialised as
    /// soon as it is read, so memory holds the answer so far and one series; the query
    /// stops (413) as soon as the answer, a series' raw samples or the time run over.
    pub(super) fn run(&self, reader: &StorageReader, query: &Query) -> Result<Vec<u8>, Problem> {
        let started = Instant::now();
        self.check_shape(query)?;
        let series = reader
            .series()
            .map_err(storage_problem)?
            .iter()
            .filter(|(k, _)| query.selector.matches(k))
            .count() as u64;
        self.check_series(query, series)?;
        let mut out = Vec::with_capacity(256);
        out.push(b'[');
        let mut first = true;
        let mut over: Option<Problem> = None;
        let max_raw = usize::try_from(self.max_points_per_series).unwrap_or(usize::MAX);
        reader
            .query_each(query, max_raw, |result| {
                let points = result.samples.len() as u64;
                if points > self.max_points_per_series {
                    over = Some(too_large(
                        format!(
                            "{} has more raw samples in the range than the limit of {} per series",
                            result.key.metric.as_str(),
                            grouped(self.max_points_per_series)
                        ),
                        "step=<ms>&agg=avg (buckets instead of raw samples), or a shorter range",
                    ));
                    return ControlFlow::Break(());
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                if let Err(e) = serde_json::to_writer(&mut out, &result) {
                    over = Some(Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot encode the answer: {e}"),
                        "a working perfvisor",
                    ));
                    return ControlFlow::Break(());
                }
                if out.len() > self.max_bytes {
                    over = Some(too_large(
                        format!(
                            "the answer is over {} bytes; the limit is {}",
                            grouped(out.len() as u64),
                            grouped(self.max_bytes as u64)
                        ),
                        "fewer series (metric=, daemon=), a larger step, or a shorter range",
                    ));
                    return ControlFlow::Break(());
                }
                if started.elapsed() > self.max_time {
                    over = Some(too_large(
                        format!(
                            "the query ran over its {} time limit",
                            crate::config::format_duration(self.max_time)
                        ),
                        "fewer series (metric=, daemon=), a larger step, or a shorter range",
                    ));
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })
            .map_err(storage_problem)?;
        if let Some(p) = over {
            return Err(p);
        }
        out.push(b']');
        Ok(out)
    }
}

/// A job for the query thread.
type Job = Box<dyn FnOnce() + Send>;

/// The thread queries run on: one thread, so the memory one query's buffers took is reused
/// by the next (on the blocking pool, every new thread's allocator arena would keep its own
/// high-water mark), and handed back to the OS after each query.
pub(super) struct QueryThread {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl QueryThread {
    /// Starts the thread; it ends when the `QueryThread` is dropped.
    pub(super) fn start() -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("perfvisor-query".into())
            .spawn(move || {
                for job in rx {
                    job();
                    give_back_memory();
                }
            })?;
        Ok(QueryThread {
            jobs: std::sync::Mutex::new(tx),
        })
    }

    /// Runs `f` on the query thread and waits (asynchronously) for its result.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Problem> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(Box::new(move || {
                let _ = tx.send(f());
            }));
        let gone = || {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the query thread has stopped",
                "a running perfvisor",
            )
        };
        sent.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

/// Returns freed heap memory to the OS, so a large answer does not stay in perfvisor's RSS.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A storage error as the client sees it: 400 for an invalid query, else 500.
pub(super) fn storage_problem(e: crate::StorageError) -> Problem {
    match e {
        crate::StorageError::InvalidQuery { .. } => Problem::bad(e.to_string(), "see the message"),
        other => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            other.to_string(),
            "a readable database",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeriesSelector;

    /// The example: a 1 ms step over an hour is refused before anything is read,
    /// with the points it would cost, the limit, and the smallest step that fits.
    #[test]
    fn a_fine_step_is_refused_naming_the_limit_and_the_step_that_fits() {
        let q = Query::new(SeriesSelector::all(), 0, 3_600_000)
            .step_ms(1)
            .aggregate(crate::Aggregation::Avg);
        let p = QueryBudget::default().check_shape(&q).unwrap_err();
        assert_eq!(p.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p.error,
            "step 1ms over 1h is 3,600,000 points per series; the limit is 100,000"
        );
        assert_eq!(p.accepted, "step >= 36ms or a shorter range");
        let fits = Query::new(SeriesSelector::all(), 0, 3_600_000)
            .step_ms(36)
            .aggregate(crate::Aggregation::Avg);
        assert!(QueryBudget::default().check_shape(&fits).is_ok());
    }

    /// Too many series, or too many values in all, is refused with what would fit.
    #[test]
    fn series_and_values_are_bounded() {
        let q = Query::new(SeriesSelector::all(), 0, 3_600_000)
            .step_ms(36)
            .aggregate(crate::Aggregation::Avg)
            .aggregate(crate::Aggregation::Rate);
        let b = QueryBudget::default();
        let p = b.check_series(&q, 10_000).unwrap_err();
        assert!(p.error.contains("10,000 series; the limit is 2,000"), "{p}");
        let p = b.check_series(&q, 6).unwrap_err();
        assert!(p.error.contains("1,200,000 values"), "{p}");
        assert!(p.accepted.starts_with("at most 5 series"), "{p:?}");
        assert!(b.check_series(&q, 5).is_ok());
    }

    /// The dashboard's widest asks (src/dashboard/index.html: 10 min at 2 s up to 7 d at
    /// 1 h, `avg,rate`, one daemon's series) fit the default budget with room to spare.
    #[test]
    fn the_dashboard_queries_fit_the_default_budget() {
        for (range, step) in [
            (600_000, 2_000),
            (3_600_000, 15_000),
            (21_600_000, 60_000),
            (86_400_000, 300_000),
            (604_800_000, 3_600_000),
        ] {
            // The page widens the range by up to two steps to align buckets.
            let q = Query::new(SeriesSelector::all(), 0, range + 2 * step)
                .step_ms(step)
                .aggregate(crate::Aggregation::Avg)
                .aggregate(crate::Aggregation::Rate);
            let b = QueryBudget::default();
            assert!(b.check_shape(&q).is_ok());
            assert!(b.check_series(&q, 500).is_ok(), "{range} / {step}");
        }
    }

    /// Thousands separators as the messages print them.
    #[test]
    fn grouped_numbers() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(3_600_000), "3,600,000");
    }
}
