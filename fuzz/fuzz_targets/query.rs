//! The query parameters of `GET /api/v1/query` (`from`, `to`, `step`, `metric`, `daemon`
//! and the `agg` expression list: `avg`, `p99.9`, `quantile(0.95)`...), read as the
//! handler does (`perfvisor::http::query_from_string`) and checked as the storage reader
//! does (`Query::validate`). Never a panic; a query that validates must give the query
//! engine at most `MAX_BUCKETS` buckets and put every timestamp of its range in one of
//! them; every aggregation parses back from its own name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfvisor::http::query_from_string;
use perfvisor::Aggregation;
use perfvisor_actors::storage::fuzzing::{query_bucket, query_buckets};
use perfvisor_actors::storage::MAX_BUCKETS;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The aggregation parser alone, on each comma-separated piece.
    for piece in text.split(',').take(16) {
        if let Ok(a) = Aggregation::parse(piece) {
            assert_eq!(Aggregation::parse(&a.name()).ok(), Some(a), "{piece:?}");
        }
    }
    let Ok(query) = query_from_string(text) else {
        return;
    };
    for a in &query.aggregations {
        assert_eq!(Aggregation::parse(&a.name()).ok(), Some(*a));
    }
    if query.validate().is_err() || query.aggregations.is_empty() {
        return;
    }
    let n = query_buckets(&query);
    assert!(
        n >= 1 && n as i64 <= MAX_BUCKETS,
        "{n} buckets for {query:?}"
    );
    let (from, to) = (query.from_ms, query.to_ms);
    let mid = ((i128::from(from) + i128::from(to)) / 2) as i64;
    for ts in [
        from,
        from.saturating_add(1),
        mid,
        to - 1,
        -1,
        0,
        1_700_000_000_000,
    ] {
        if (from..to).contains(&ts) {
            let i = query_bucket(&query, ts);
            assert!(
                i.is_some_and(|i| i < n),
                "timestamp {ts} in bucket {i:?} of {n} for {query:?}"
            );
        }
    }
});
