//! Entry points for the fuzz targets in `fuzz/` (`cargo fuzz`). Not a public API: hidden
//! from the docs and free to change. Each function runs the real storage code, only
//! widening its visibility.

use super::query::Query;

/// [`decode_chunk`](super::codec::decode_chunk) as storage reads chunks and head rows; the
/// error as its message.
pub fn decode_chunk(blob: &[u8]) -> Result<Vec<(i64, f64)>, String> {
    super::codec::decode_chunk(blob).map_err(|e| e.to_string())
}

/// [`encode_chunk`](super::codec::encode_chunk), the compacted-chunk encoder.
pub fn encode_chunk(samples: &[(i64, f64)]) -> Vec<u8> {
    super::codec::encode_chunk(samples)
}

/// The decimal (format 2) encoder alone, whatever [`encode_chunk`] would pick: `None` for
/// an empty input or when its blob would not round-trip (the encoder checks by decoding).
pub fn encode_decimal(samples: &[(i64, f64)]) -> Option<Vec<u8>> {
    if samples.is_empty() {
        return None;
    }
    super::codec::encode_decimal(samples)
}

/// [`encode_raw`](super::codec::encode_raw), the fallback chunk encoder.
pub fn encode_raw(samples: &[(i64, f64)]) -> Vec<u8> {
    super::codec::encode_raw(samples)
}

/// [`encode_packed`](super::codec::encode_packed), the head-row encoder.
pub fn encode_packed(samples: &[(i64, f64)]) -> Vec<u8> {
    super::codec::encode_packed(samples)
}

/// How many buckets per series a query with aggregations allocates (what the query
/// engine sizes its accumulators by), for a query that [`Query::validate`] accepted.
pub fn query_buckets(query: &Query) -> usize {
    super::query::bucket_count(query)
}

/// The bucket the query engine puts a sample at `ts` in (for a validated query with
/// aggregations); `None` outside the query's range.
pub fn query_bucket(query: &Query, ts: i64) -> Option<usize> {
    super::query::bucket_index(query, ts)
}
