//! The head log: what each flush commits, as one row holding every series' new samples.
//!
//! A flush used to write one head row per series, so 100 daemons × 13 metrics probed every
//! second cost 1,300 row inserts (and as many deletes at compaction) per second. Now a
//! flush appends a single `head_log` row, and every [`FOLD_INTERVAL`] (or when the log
//! grows large, or before a forced compaction, or when the writer opens the file after a
//! crash) [`fold`] turns the log into per-series head rows in one transaction, deleting the
//! log rows it folded. Durability is unchanged (a flush is one commit), and the per-series
//! row traffic drops by the fold interval over the flush interval. Readers merge the log
//! in exactly like head rows ([`samples_of`]).
//!
//! The fold is due once the log's samples span [`FOLD_SPAN_MS`] of sample time, or
//! [`FOLD_MAX_AGE`] after the last one. The writer remembers, per series, what it flushed
//! since the last fold ([`Pending`]) and folds from that ([`fold_pending`]) instead of reading
//! and decoding the log back, which was most of a fold's cost; it reads the log back
//! ([`fold`]) only when it has not seen the log since it was last empty (a log left by a crash
//! or by a writer restart) or when the log holds other samples than it remembers.
//!
//! Row blob format (all integers LEB128 varints): `version (1 byte = 2)`, `base` (the first
//! sample's timestamp, zigzag), `series count`, then per series: `series id`, `sample count`,
//! `byte length` and the samples packed (see `packed`) from `base`. A sample costs 3 to 11
//! bytes plus its series' 3 or 4 (24 in version 1), and a reader after one series skips the
//! others by their length. Version 1 rows (written before; read still) hold per series
//! `series id`, `sample count`, `count × (i64 timestamp, f64 value bits)` little-endian.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{params, Connection};

use super::head::FoldWriter;
use super::packed::{unpack_exact, Packer, UnpackError};
pub(crate) use super::pending::Pending;
use super::varint::{self, unzigzag, zigzag};
use super::StorageError;

/// The log is folded once its samples span this much sample time (30 s).
pub(crate) const FOLD_SPAN_MS: i64 = 30_000;

/// ... or at the latest this long after the last fold (and at the first maintenance step
/// after the file is opened, so a log left by a crash is folded).
pub(crate) const FOLD_MAX_AGE: Duration = Duration::from_secs(30);

/// Folding starts early once the log holds this many samples (30 s of 20,000 series at
/// 1 Hz is 600,000: big hosts still fold every half minute, not more often, which would
/// only multiply head rows).
pub(crate) const FOLD_SAMPLES: u64 = 1_000_000;

/// How many samples the log holds and the span of their timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    /// Samples in the log.
    pub(crate) samples: u64,
    /// Oldest sample timestamp (`i64::MAX` when empty).
    pub(crate) min_ts: i64,
    /// Newest sample timestamp (`i64::MIN` when empty).
    pub(crate) max_ts: i64,
}

impl Default for Extent {
    fn default() -> Self {
        Extent {
            samples: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        }
    }
}

impl Extent {
    /// Counts a flush of `samples` between `min_ts` and `max_ts` in.
    pub(crate) fn add(&mut self, samples: u64, min_ts: i64, max_ts: i64) {
        if samples > 0 {
            self.samples += samples;
            self.min_ts = self.min_ts.min(min_ts);
            self.max_ts = self.max_ts.max(max_ts);
        }
    }
}

/// The blob version this build writes.
const VERSION: u8 = 2;

/// The version of rows written before samples were packed (read still).
const VERSION_RAW: u8 = 1;

/// Bytes of one sample in a version 1 blob.
const SAMPLE_BYTES: usize = 16;

/// Why a log blob could not be read. Names the offset and what was expected there.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    /// The first byte is not a version this build reads.
    #[error(
        "head log blob version {found:?} (this build reads versions {VERSION_RAW} and {VERSION})"
    )]
    Version {
        /// The byte found, if any.
        found: Option<u8>,
    },
    /// The blob ends or a varint is malformed at `at`.
    #[error("head log blob cut off or malformed at byte {at}: expected {expected}")]
    Malformed {
        /// Byte offset.
        at: usize,
        /// What should have been there.
        expected: &'static str,
    },
    /// A series' packed samples (version 2) starting at `at` do not read back.
    #[error("head log blob's packed samples at byte {at}: {source}")]
    Packed {
        /// Byte offset of the series' samples.
        at: usize,
        /// What was wrong.
        source: UnpackError,
    },
}

/// Encodes the samples of several series into one blob.
pub(crate) fn encode<'a>(series: impl Iterator<Item = (i64, &'a [(i64, f64)])>) -> Vec<u8> {
    let groups: Vec<(i64, &[(i64, f64)])> = series.filter(|(_, s)| !s.is_empty()).collect();
    let total: usize = groups.iter().map(|(_, s)| s.len()).sum();
    let base = groups.first().map_or(0, |(_, s)| s[0].0);
    let mut out = Vec::with_capacity(24 + groups.len() * 8 + total * 8);
    out.push(VERSION);
    varint::put(&mut out, zigzag(base));
    varint::put(&mut out, groups.len() as u64);
    let mut packed = Vec::new();
    for (id, samples) in groups {
        packed.clear();
        let mut packer = Packer::from_base(base);
        for &(ts, value) in samples {
            packer.push(&mut packed, ts, value);
        }
        varint::put(&mut out, id as u64);
        varint::put(&mut out, samples.len() as u64);
        varint::put(&mut out, packed.len() as u64);
        out.extend_from_slice(&packed);
    }
    out
}

/// Calls `each(series_id, samples)` for every series in the blob, in blob order. Never
/// panics: a damaged blob yields a [`LogError`] (groups before the damage were visited).
pub(crate) fn for_each(
    blob: &[u8],
    each: impl FnMut(i64, &mut dyn Iterator<Item = (i64, f64)>),
) -> Result<(), LogError> {
    visit(blob, None, each)
}

/// Reads a varint from `rest`, the tail of a blob of `blob_len` bytes; the error names its
/// offset and what it was to be.
fn read_varint<'a>(
    blob_len: usize,
    rest: &'a [u8],
    expected: &'static str,
) -> Result<(u64, &'a [u8]), LogError> {
    varint::read(rest).ok().ok_or(LogError::Malformed {
        at: blob_len - rest.len(),
        expected,
    })
}

/// [`for_each`], for the series `only` alone when given (the others are skipped unread).
fn visit(
    blob: &[u8],
    only: Option<i64>,
    mut each: impl FnMut(i64, &mut dyn Iterator<Item = (i64, f64)>),
) -> Result<(), LogError> {
    let Some((&version, mut rest)) = blob.split_first() else {
        return Err(LogError::Version { found: None });
    };
    if version != VERSION && version != VERSION_RAW {
        return Err(LogError::Version {
            found: Some(version),
        });
    }
    let at = |rest: &[u8]| blob.len() - rest.len();
    let varint_at = |rest, expected| read_varint(blob.len(), rest, expected);
    let mut base = 0;
    if version == VERSION {
        let zz;
        (zz, rest) = varint_at(rest, "a varint base timestamp")?;
        base = unzigzag(zz);
    }
    let groups;
    (groups, rest) = varint_at(rest, "a varint series count")?;
    let mut scratch = Vec::new();
    for _ in 0..groups {
        let (id, after) = varint_at(rest, "a varint series id")?;
        let (n, after) = varint_at(after, "a varint sample count")?;
        let id = id as i64;
        let wanted = only.is_none_or(|only| only == id);
        if version == VERSION_RAW {
            let len = usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(SAMPLE_BYTES))
                .filter(|&len| len <= after.len())
                .ok_or(LogError::Malformed {
                    at: at(after),
                    expected: "as many 16-byte samples as the count says",
                })?;
            let (body, next) = after.split_at(len);
            if wanted {
                let mut samples = body.chunks_exact(SAMPLE_BYTES).map(|s| {
                    let (t, v) = s.split_at(8);
                    let mut tb = [0u8; 8];
                    let mut vb = [0u8; 8];
                    tb.copy_from_slice(t);
                    vb.copy_from_slice(v);
                    (
                        i64::from_le_bytes(tb),
                        f64::from_bits(u64::from_le_bytes(vb)),
                    )
                });
                each(id, &mut samples);
            }
            rest = next;
            continue;
        }
        let (len, after) = varint_at(after, "a varint byte length")?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= after.len())
            .ok_or(LogError::Malformed {
                at: at(after),
                expected: "as many packed bytes as the byte length says",
            })?;
        let (body, next) = after.split_at(len);
        if wanted {
            scratch.clear();
            unpack_exact(body, base, n, &mut scratch).map_err(|source| LogError::Packed {
                at: at(body),
                source,
            })?;
            each(id, &mut scratch.drain(..));
        }
        rest = next;
    }
    if !rest.is_empty() {
        return Err(LogError::Malformed {
            at: at(rest),
            expected: "the end of the blob after the last series",
        });
    }
    Ok(())
}

/// The samples of `series` with `from <= ts < to` held in the log, in log order. A damaged
/// log row is a [`StorageError::Corrupt`] naming it.
pub(crate) fn samples_of(
    conn: &Connection,
    series: i64,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, f64)>, StorageError> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT id, data FROM head_log WHERE max_ts >= ?1 AND min_ts < ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![from, to])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let blob = row.get_ref(1)?.as_blob().unwrap_or(&[]);
        visit(blob, Some(series), |_, samples| {
            out.extend(samples.filter(|&(ts, _)| ts >= from && ts < to));
        })
        .map_err(|e| StorageError::Corrupt {
            path: conn.path().unwrap_or("").into(),
            what: format!("head log row {id}: {e}"),
        })?;
    }
    Ok(out)
}

/// Moves every log row into head rows (one per series and hour window) and deletes the log
/// rows, in the caller's transaction. Returns the samples moved. A damaged log row is
/// dropped with an error in the log (its samples cannot be read by anyone).
pub(crate) fn fold(conn: &Connection) -> rusqlite::Result<u64> {
    let mut by_series: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
    let mut last_id = None;
    {
        let mut stmt = conn.prepare_cached("SELECT id, data FROM head_log ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            last_id = Some(id);
            let blob = row.get_ref(1)?.as_blob().unwrap_or(&[]);
            let visited = for_each(blob, |series, samples| {
                by_series.entry(series).or_default().extend(samples);
            });
            if let Err(e) = visited {
                tracing::error!(head_log_row = id, error = %e, "Damaged head log row dropped.");
            }
        }
    }
    let Some(last_id) = last_id else {
        return Ok(0);
    };
    let mut moved = 0u64;
    let mut head = FoldWriter::new(conn)?;
    for (series, mut samples) in by_series {
        samples.sort_by_key(|&(ts, _)| ts);
        head.write(series, &samples)?;
        moved += samples.len() as u64;
    }
    conn.prepare_cached("DELETE FROM head_log WHERE id <= ?1")?
        .execute([last_id])?;
    Ok(moved)
}

/// [`fold`] from what the writer kept in memory: the same head rows, without reading the
/// log back. Checks in the caller's transaction that the log holds exactly the samples
/// `pending` holds (another process, `perfvisor compact`, may have folded it meanwhile);
/// `Ok(None)` and nothing written when it does not, and the caller folds from the log.
pub(crate) fn fold_pending(
    conn: &Connection,
    pending: &mut Pending,
) -> rusqlite::Result<Option<u64>> {
    let logged: i64 = conn
        .prepare_cached("SELECT coalesce(sum(count), 0) FROM head_log")?
        .query_row([], |r| r.get(0))?;
    if logged.max(0) as u64 != pending.samples() {
        return Ok(None);
    }
    let moved = pending.samples();
    let mut head = FoldWriter::new(conn)?;
    pending.drain_each(|series, samples| {
        if !samples.is_sorted_by_key(|&(ts, _)| ts) {
            samples.sort_by_key(|&(ts, _)| ts);
        }
        head.write(series, samples)
    })?;
    conn.prepare_cached("DELETE FROM head_log")?.execute([])?;
    Ok(Some(moved))
}

/// What the log holds now.
pub(crate) fn extent(conn: &Connection) -> rusqlite::Result<Extent> {
    let (samples, min_ts, max_ts): (i64, Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT coalesce(sum(count), 0), min(min_ts), max(max_ts) FROM head_log")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let mut extent = Extent::default();
    if let (Some(min_ts), Some(max_ts)) = (min_ts, max_ts) {
        extent.add(samples.max(0) as u64, min_ts, max_ts);
    }
    Ok(extent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_groups_and_never_panics_on_damage() {
        let a = [(1i64, 1.5f64), (2, f64::NAN), (3, -0.0)];
        let b = [(i64::MIN, f64::INFINITY)];
        let blob = encode([(7i64, &a[..]), (1 << 40, &b[..]), (9, &[][..])].into_iter());
        let mut seen = Vec::new();
        for_each(&blob, |id, s| seen.push((id, s.collect::<Vec<_>>()))).unwrap();
        assert_eq!(seen.len(), 2, "empty groups are not written");
        assert_eq!(seen[0].0, 7);
        assert_eq!(seen[0].1[0], (1, 1.5));
        assert!(seen[0].1[1].1.is_nan());
        assert_eq!(seen[1], (1 << 40, vec![(i64::MIN, f64::INFINITY)]));
        // Every truncation and every single-byte change is an error or a clean read.
        for cut in 0..blob.len() {
            assert!(for_each(&blob[..cut], |_, s| s.for_each(drop)).is_err());
        }
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0xff;
            let _ = for_each(&bad, |_, s| s.for_each(drop));
        }
        let err = for_each(&[3, 0], |_, _| {}).unwrap_err().to_string();
        assert!(
            err.contains("version Some(3)") && err.contains("reads versions 1 and 2"),
            "{err}"
        );
        // One series alone: the others are skipped, not decoded.
        let mut only = Vec::new();
        visit(&blob, Some(1 << 40), |id, s| {
            only.push((id, s.collect::<Vec<_>>()))
        })
        .unwrap();
        assert_eq!(only, vec![(1 << 40, vec![(i64::MIN, f64::INFINITY)])]);
    }

    /// Rows written before samples were packed (version 1) still read, whole or one series.
    #[test]
    fn version_1_rows_still_read() {
        let mut blob = vec![VERSION_RAW, 2];
        for (id, (ts, v)) in [(5u8, (1_000i64, 2.5f64)), (6, (2_000, -0.0))] {
            blob.extend_from_slice(&[id, 1]);
            blob.extend_from_slice(&ts.to_le_bytes());
            blob.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        let mut seen = Vec::new();
        for_each(&blob, |id, s| {
            seen.extend(s.map(|(t, v)| (id, t, v.to_bits())));
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (5, 1_000, 2.5f64.to_bits()),
                (6, 2_000, (-0.0f64).to_bits())
            ]
        );
        let mut six = Vec::new();
        visit(&blob, Some(6), |id, s| six.extend(s.map(|(t, _)| (id, t)))).unwrap();
        assert_eq!(six, vec![(6, 2_000)]);
    }

    /// A flush of one sample per series near the row's base costs a few bytes a sample, not
    /// the 20 of version 1.
    #[test]
    fn a_flush_packs_small() {
        let ts = 1_800_000_000_000i64;
        let samples: Vec<[(i64, f64); 1]> = (0..1_000)
            .map(|i| [(ts + i % 7, if i % 2 == 0 { 0.0 } else { 4096.0 })])
            .collect();
        let blob = encode((0..1_000).map(|i| (100_000 + i as i64, &samples[i][..])));
        assert!(
            blob.len() <= 1_000 * 9,
            "{} bytes for 1,000 samples",
            blob.len()
        );
    }

    /// A head row as (series, window, samples with their value bits).
    type HeadRow = (i64, i64, Vec<(i64, u64)>);
    /// A flush as (series, samples) groups.
    type Flush = Vec<(i64, Vec<(i64, f64)>)>;

    /// Head rows of a file, in a stable order.
    fn head_rows(conn: &Connection) -> Vec<HeadRow> {
        let mut stmt = conn
            .prepare("SELECT series_id, window_ms, data FROM head ORDER BY series_id, window_ms")
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                let data: Vec<u8> = r.get(2)?;
                let samples = super::super::codec::decode_chunk(&data)
                    .unwrap()
                    .into_iter()
                    .map(|(ts, v)| (ts, v.to_bits()))
                    .collect();
                Ok((r.get(0)?, r.get(1)?, samples))
            })
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// Writes a log row the way a flush does.
    fn log_row(conn: &Connection, groups: &[(i64, &[(i64, f64)])]) {
        let n: usize = groups.iter().map(|(_, s)| s.len()).sum();
        conn.execute(
            "INSERT INTO head_log (min_ts, max_ts, count, data) VALUES (0, 0, ?1, ?2)",
            params![n as i64, encode(groups.iter().copied())],
        )
        .unwrap();
    }

    /// Folding from memory writes the same head rows as folding the log read back (an
    /// hour boundary and out-of-order samples included), and refuses, writing nothing, when
    /// the log holds other samples than the writer remembers.
    #[test]
    fn folding_from_memory_matches_folding_the_log() {
        let hour = crate::storage::HOUR_MS;
        let flushes: Vec<Flush> = vec![
            vec![(1, vec![(hour - 500, 1.0)]), (2, vec![(hour - 400, 2.0)])],
            vec![(1, vec![(hour + 500, 3.0), (hour - 100, 4.0)])],
            vec![(2, vec![(hour + 600, f64::NAN)]), (3, vec![(5, -0.0)])],
        ];
        let (_a_dir, a_path) = crate::storage::tests::temp_db();
        let (_b_dir, b_path) = crate::storage::tests::temp_db();
        let a = crate::storage::schema::open_writer(&a_path).unwrap();
        let b = crate::storage::schema::open_writer(&b_path).unwrap();
        let mut pending = Pending::default();
        for flush in &flushes {
            let groups: Vec<(i64, &[(i64, f64)])> =
                flush.iter().map(|(id, s)| (*id, s.as_slice())).collect();
            log_row(&a, &groups);
            log_row(&b, &groups);
            for (id, samples) in &groups {
                pending.add(&mut { u32::MAX }, *id, samples);
            }
        }
        // Another process folded (or wrote) the log: the writer's memory is stale.
        let mut stale = Pending::default();
        stale.add(&mut { u32::MAX }, 1, &[(hour - 500, 1.0)]);
        assert_eq!(fold_pending(&a, &mut stale).unwrap(), None);
        assert_eq!(extent(&a).unwrap().samples, 6, "the log is left as it was");
        assert!(head_rows(&a).is_empty());

        assert_eq!(fold_pending(&a, &mut pending).unwrap(), Some(6));
        assert_eq!(fold(&b).unwrap(), 6);
        let folded = head_rows(&a);
        assert_eq!(folded, head_rows(&b));
        assert_eq!(
            folded.len(),
            5,
            "series 1 and 2 span two windows: {folded:?}"
        );
        assert_eq!(folded[1].2, vec![(hour + 500, 3.0f64.to_bits())]);
        assert_eq!(extent(&a).unwrap(), Extent::default(), "the log is emptied");
        // What was folded is forgotten; the next fold starts from nothing.
        assert_eq!(fold_pending(&a, &mut pending).unwrap(), Some(0));
        assert_eq!(head_rows(&a).len(), 5);
    }
}
