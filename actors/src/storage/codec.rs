//! Chunk codec: owns the byte layout of the time-series chunks kept as SQLite BLOBs, turning
//! one series' `(timestamp ms, value)` samples into a self-describing blob and back.
//!
//! # Format
//!
//! Every blob is `[format tag: 1 byte][sample count n: unsigned LEB128 varint][body]`:
//!
//! - tag `0`, raw: `n` × (timestamp as i64 little-endian, value as f64 bits little-endian),
//!   exactly `16·n` bytes.
//! - tag `1`, pco: one [pco] "wrapped" stream: the pco header (its format version), then the
//!   timestamp column (i64: chunk metadata, then one page of `n`), then the value column (f64:
//!   chunk metadata, then one page of `n`).
//!
//! [`decode_chunk`] dispatches on the tag, so callers never need to know which format a blob
//! uses. [`encode_raw`] writes tag 0 for the write-ahead "head" rows (a copy, no modelling).
//! [`encode_chunk`] writes tag 1, except for an empty chunk, a chunk above
//! [`MAX_COMPRESSED_SAMPLES`], or one whose compressed form would not be smaller than raw (in
//! practice only chunks of 1 to 3 samples); those are written raw. A compressed blob always
//! holds `1..=`[`MAX_COMPRESSED_SAMPLES`] samples, which bounds what a corrupt header can make
//! the decoder allocate; a raw blob's count must match its length exactly. New formats get new
//! tags; a reader refuses tags it does not know instead of guessing. The pco header carries
//! pco's own format version and pco reads all its older formats, so upgrading the crate keeps
//! old blobs readable under the same tag.
//!
//! Values are stored bit-exactly (NaN payloads, `-0.0`, infinities, subnormals); timestamps
//! may be any `i64`, repeated or even unsorted (pco's deltas wrap), though the caller sorts.
//!
//! # Why pco
//!
//! Measured against our own Facebook Gorilla implementation (delta-of-delta timestamps, XOR
//! values; Pelkonen et al. 2015), bytes per sample on 3600-sample chunks:
//!
//! | data | samples | Gorilla | pco (this codec) |
//! |------|--------:|--------:|-----------------:|
//! | NAB: 8 series, 5-minute steps, decimal values | 46 274 | 6.34 | 1.64 |
//! | `/proc`, 7 metrics of 2 processes, read every 5 ms, stamped 1 s apart | 51 798 | 2.22 | 0.59 |
//! | the same metrics read at a true 1 Hz for 2000 s | 27 998 | 2.79 | 0.79 |
//! | all | 126 070 | 3.86 | 1.02 |
//!
//! Decimal floats (`0.4987`, `12.34`) share few XOR bits, while pco's float-multiplier mode
//! turns them into small integers; jittered ms timestamps cost Gorilla a 9-bit delta-of-delta
//! bucket where pco entropy-codes the first deltas in 1-3 bits. The worst series left is
//! `process.cpu.utilization_ratio` (a quotient with a full mantissa): about 2 B/sample.
//!
//! Speed on one core of the 2-core dev box, 3600-sample chunks: encode ~16 M samples/s,
//! decode ~105 M samples/s (Gorilla: ~200 M/s and ~60 M/s). Pco pays a fixed cost per chunk
//! (~17 µs to encode, ~3 µs to decode), so 60-sample chunks get only ~3 M/s encode and
//! ~18 M/s decode, still at 2.5 B/sample against Gorilla's 4.3. Below about 20 samples Gorilla
//! would be smaller (10 samples: 3.7 against 5.2 B/sample); such chunks are rare enough that
//! one compressed format is worth more.
//!
//! Timestamps use pco's first-order deltas (`DeltaSpec::TryConsecutive(1)`: same size as its
//! automatic choice on our data, twice as fast to encode); values use pco's automatic mode and
//! delta choice at the default level 8.
//!
//! [pco]: https://docs.rs/pco

use pco::data_types::Number;
use pco::errors::PcoError;
use pco::wrapped::{FileCompressor, FileDecompressor};
use pco::{ChunkConfig, DeltaSpec, PagingSpec};

use super::varint::{self, VarintError};

/// Format tag of a raw blob: 16 bytes per sample, no modelling.
pub(crate) const FORMAT_RAW: u8 = 0;

/// Format tag of a pco-compressed blob.
pub(crate) const FORMAT_PCO: u8 = 1;

/// The most samples [`encode_chunk`] compresses into one blob (larger inputs are written raw),
/// and so the most a compressed blob may claim: 16× the largest chunk the writer makes.
pub(crate) const MAX_COMPRESSED_SAMPLES: usize = 1 << 18;

/// Bytes one sample takes in the raw format.
const RAW_SAMPLE_BYTES: usize = 16;

/// The longest LEB128 encoding of a `u64`.
const MAX_VARINT_BYTES: usize = varint::MAX_BYTES;

/// Why a blob could not be decoded. Messages name the offending byte or length and what was
/// expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CodecError {
    /// The blob has no bytes at all, not even a format tag.
    #[error("empty chunk blob: expected at least a format tag byte and a sample count")]
    Empty,

    /// The first byte is not a format this build knows.
    #[error(
        "unknown chunk format {tag} (this build reads {FORMAT_RAW} = raw and {FORMAT_PCO} = pco)"
    )]
    UnknownFormat {
        /// The tag byte found.
        tag: u8,
    },

    /// The sample count after the tag is not a valid LEB128 varint.
    #[error(
        "malformed sample count at byte 1: expected a LEB128 varint of at most \
         {MAX_VARINT_BYTES} bytes holding a u64, found {found}"
    )]
    BadCount {
        /// What was there instead.
        found: &'static str,
    },

    /// A raw blob is shorter than its sample count requires.
    #[error(
        "truncated chunk: header says {samples} samples ({expected} bytes of raw data), \
         blob holds {actual} bytes"
    )]
    Truncated {
        /// The sample count in the header.
        samples: u64,
        /// The body length those samples need (saturated at `u64::MAX`).
        expected: u64,
        /// The body length found.
        actual: usize,
    },

    /// Bytes remain after the last sample.
    #[error(
        "trailing data after the {samples} samples of the chunk: {extra} extra byte(s), \
         expected the blob to end there"
    )]
    TrailingBytes {
        /// The sample count in the header.
        samples: u64,
        /// How many bytes follow the last sample.
        extra: usize,
    },

    /// A compressed blob claims a sample count this build never writes compressed.
    #[error(
        "compressed chunk header says {samples} samples, but compressed chunks hold \
         1..={MAX_COMPRESSED_SAMPLES}"
    )]
    CompressedCount {
        /// The sample count in the header.
        samples: u64,
    },

    /// pco rejected a column (corrupt or cut-off data).
    #[error("corrupt compressed chunk ({part}): {source}")]
    Pco {
        /// Which part was being read: "pco header", "timestamp column" or "value column".
        part: &'static str,
        /// What pco said.
        source: PcoError,
    },

    /// A compressed column decoded to fewer values than the header's sample count.
    #[error("compressed {part} holds {got} values, but the chunk header says {samples}")]
    ShortColumn {
        /// "timestamp column" or "value column".
        part: &'static str,
        /// Values decoded.
        got: usize,
        /// The sample count in the header.
        samples: usize,
    },
}

/// Encodes one series' samples (sorted by timestamp, equal timestamps allowed) into a
/// compressed, self-describing blob; see the module docs for when it falls back to raw.
pub(crate) fn encode_chunk(samples: &[(i64, f64)]) -> Vec<u8> {
    let n = samples.len();
    if n == 0 || n > MAX_COMPRESSED_SAMPLES {
        return encode_raw(samples);
    }
    match encode_pco(samples) {
        Ok(blob) if blob.len() < raw_len(n) => blob,
        // A pco error cannot happen with these configs; raw is still a correct answer.
        _ => encode_raw(samples),
    }
}

/// Encodes samples uncompressed (tag [`FORMAT_RAW`]), for the write-ahead "head" rows: a
/// header and then a little-endian copy, ~1 ns per sample.
pub(crate) fn encode_raw(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_len(samples.len()));
    out.push(FORMAT_RAW);
    varint::put(&mut out, samples.len() as u64);
    let header = out.len();
    out.resize(header + samples.len() * RAW_SAMPLE_BYTES, 0);
    for (dst, &(ts, value)) in out[header..]
        .chunks_exact_mut(RAW_SAMPLE_BYTES)
        .zip(samples)
    {
        let (t, v) = dst.split_at_mut(8);
        t.copy_from_slice(&ts.to_le_bytes());
        v.copy_from_slice(&value.to_bits().to_le_bytes());
    }
    out
}

/// Decodes a blob of any format this build knows. Never panics: corrupt or truncated input
/// yields a [`CodecError`].
pub(crate) fn decode_chunk(blob: &[u8]) -> Result<Vec<(i64, f64)>, CodecError> {
    let (&tag, rest) = blob.split_first().ok_or(CodecError::Empty)?;
    if tag != FORMAT_RAW && tag != FORMAT_PCO {
        return Err(CodecError::UnknownFormat { tag });
    }
    let (samples, body) = read_varint(rest)?;
    if tag == FORMAT_RAW {
        decode_raw(samples, body)
    } else {
        decode_pco(samples, body)
    }
}

/// The length of the raw blob of `n` samples.
fn raw_len(n: usize) -> usize {
    1 + varint::len(n as u64) + n * RAW_SAMPLE_BYTES
}

/// Compresses a non-empty chunk of at most [`MAX_COMPRESSED_SAMPLES`] samples with pco.
fn encode_pco(samples: &[(i64, f64)]) -> Result<Vec<u8>, PcoError> {
    let n = samples.len();
    let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let one_page = PagingSpec::Exact(vec![n]);
    let ts_config = ChunkConfig::default()
        .with_delta_spec(DeltaSpec::TryConsecutive(1))
        .with_paging_spec(one_page.clone());
    let value_config = ChunkConfig::default().with_paging_spec(one_page);

    let mut out = Vec::with_capacity(64 + n * 2);
    out.push(FORMAT_PCO);
    varint::put(&mut out, n as u64);
    let file = FileCompressor::default();
    file.write_header(&mut out)?;
    let mut column = file.chunk_compressor(&ts, &ts_config)?;
    column.write_meta(&mut out)?;
    column.write_page(0, &mut out)?;
    let mut column = file.chunk_compressor(&values, &value_config)?;
    column.write_meta(&mut out)?;
    column.write_page(0, &mut out)?;
    Ok(out)
}

/// Decodes the body of a raw blob whose header says `samples`.
fn decode_raw(samples: u64, body: &[u8]) -> Result<Vec<(i64, f64)>, CodecError> {
    let expected = samples.saturating_mul(RAW_SAMPLE_BYTES as u64);
    if (body.len() as u64) < expected {
        return Err(CodecError::Truncated {
            samples,
            expected,
            actual: body.len(),
        });
    }
    // `expected <= body.len()`, so it fits in a usize.
    let expected = expected as usize;
    if body.len() > expected {
        return Err(CodecError::TrailingBytes {
            samples,
            extra: body.len() - expected,
        });
    }
    let mut out = Vec::with_capacity(expected / RAW_SAMPLE_BYTES);
    for sample in body.chunks_exact(RAW_SAMPLE_BYTES) {
        let mut ts = [0; 8];
        let mut value = [0; 8];
        ts.copy_from_slice(&sample[..8]);
        value.copy_from_slice(&sample[8..]);
        out.push((
            i64::from_le_bytes(ts),
            f64::from_bits(u64::from_le_bytes(value)),
        ));
    }
    Ok(out)
}

/// Decodes the body of a pco blob whose header says `samples`.
fn decode_pco(samples: u64, body: &[u8]) -> Result<Vec<(i64, f64)>, CodecError> {
    let n = match usize::try_from(samples) {
        Ok(n) if (1..=MAX_COMPRESSED_SAMPLES).contains(&n) => n,
        _ => return Err(CodecError::CompressedCount { samples }),
    };
    let (file, rest) = FileDecompressor::new(body).map_err(|source| CodecError::Pco {
        part: "pco header",
        source,
    })?;
    let (ts, rest) = decode_column::<i64>(&file, rest, n, "timestamp column")?;
    let (values, rest) = decode_column::<f64>(&file, rest, n, "value column")?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes {
            samples,
            extra: rest.len(),
        });
    }
    Ok(ts.into_iter().zip(values).collect())
}

/// Decodes one pco column of exactly `n` numbers from the front of `src`, returning the
/// numbers and the bytes after the column.
fn decode_column<'a, T: Number>(
    file: &FileDecompressor,
    src: &'a [u8],
    n: usize,
    part: &'static str,
) -> Result<(Vec<T>, &'a [u8]), CodecError> {
    let pco = |source| CodecError::Pco { part, source };
    let (mut chunk, rest) = file.chunk_decompressor::<T, &[u8]>(src).map_err(pco)?;
    let mut page = chunk.page_decompressor(rest, n).map_err(pco)?;
    let mut out = vec![T::default(); n];
    let progress = page.read(&mut out).map_err(pco)?;
    if progress.n_processed != n || !progress.finished {
        return Err(CodecError::ShortColumn {
            part,
            got: progress.n_processed,
            samples: n,
        });
    }
    Ok((out, page.into_src()))
}

/// Reads the sample count's varint from the front of `bytes`, returning it and the rest.
fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), CodecError> {
    varint::read(bytes).map_err(|e| CodecError::BadCount {
        found: match e {
            VarintError::Truncated => "the end of the blob",
            VarintError::TooLong => "more than 10 bytes",
            VarintError::Overflow => "a value over u64::MAX",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `decoded` equals `samples` bit for bit.
    fn assert_bit_exact(samples: &[(i64, f64)], decoded: &[(i64, f64)]) {
        assert_eq!(samples.len(), decoded.len(), "sample count");
        for (i, (a, b)) in samples.iter().zip(decoded).enumerate() {
            assert_eq!(a.0, b.0, "timestamp of sample {i}");
            assert_eq!(
                a.1.to_bits(),
                b.1.to_bits(),
                "value of sample {i}: {:?} vs {:?}",
                a.1,
                b.1
            );
        }
    }

    /// Encodes with [`encode_chunk`], decodes, checks bit-exactness and returns the blob.
    fn round_trip(samples: &[(i64, f64)]) -> Vec<u8> {
        let blob = encode_chunk(samples);
        let decoded = decode_chunk(&blob).expect("a blob we wrote decodes");
        assert_bit_exact(samples, &decoded);
        blob
    }

    /// 1 Hz timestamps in ms with a timer's jitter: a few ms late, now and then 4..30 ms.
    fn jittered_ts(rng: &mut fastrand::Rng, n: usize) -> Vec<i64> {
        (0..n as i64)
            .map(|i| {
                let late = if rng.u8(..100) == 0 {
                    rng.i64(4..30)
                } else {
                    rng.i64(0..=3)
                };
                1_700_000_000_123 + 1000 * i + late
            })
            .collect()
    }

    /// Special floats that must survive bit for bit.
    const SPECIALS: [u64; 14] = [
        0x7ff8_0000_0000_0000, // quiet NaN
        0xfff8_0000_0000_0000, // negative quiet NaN
        0x7ff0_0000_0000_0001, // signalling NaN with payload 1
        0x7ff4_dead_beef_cafe, // NaN with a payload
        0x8000_0000_0000_0000, // -0.0
        0x0000_0000_0000_0000, // 0.0
        0x7ff0_0000_0000_0000, // +inf
        0xfff0_0000_0000_0000, // -inf
        0x0000_0000_0000_0001, // smallest subnormal
        0x800f_ffff_ffff_ffff, // largest negative subnormal
        0x0010_0000_0000_0000, // MIN_POSITIVE
        0x7fef_ffff_ffff_ffff, // MAX
        0xffef_ffff_ffff_ffff, // MIN
        0x3cb0_0000_0000_0000, // EPSILON
    ];

    #[test]
    fn empty_input_round_trips_as_raw() {
        let blob = round_trip(&[]);
        assert_eq!(blob, vec![FORMAT_RAW, 0]);
        assert_eq!(decode_chunk(&encode_raw(&[])).expect("empty raw"), vec![]);
    }

    #[test]
    fn one_sample_round_trips() {
        for sample in [(0, 0.0), (i64::MIN, f64::NAN), (1_700_000_000_123, 12.34)] {
            let blob = round_trip(&[sample]);
            assert_eq!(
                blob.len(),
                2 + RAW_SAMPLE_BYTES,
                "one sample is cheapest raw"
            );
        }
    }

    #[test]
    fn special_floats_are_bit_exact_raw_and_compressed() {
        let specials: Vec<(i64, f64)> = SPECIALS
            .iter()
            .enumerate()
            .map(|(i, &bits)| (i as i64, f64::from_bits(bits)))
            .collect();
        round_trip(&specials);
        assert_bit_exact(
            &specials,
            &decode_chunk(&encode_raw(&specials)).expect("raw"),
        );

        // Mixed into a long, otherwise compressible series so the pco path is taken.
        let mut rng = fastrand::Rng::with_seed(1);
        let ts = jittered_ts(&mut rng, 3600);
        let samples: Vec<(i64, f64)> = ts
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let v = if i % 97 == 0 {
                    f64::from_bits(SPECIALS[i / 97 % SPECIALS.len()])
                } else {
                    (i / 10) as f64 * 0.01
                };
                (t, v)
            })
            .collect();
        let blob = round_trip(&samples);
        assert_eq!(blob[0], FORMAT_PCO);
    }

    #[test]
    fn duplicate_negative_and_extreme_timestamps_round_trip() {
        let ts = [
            i64::MIN,
            i64::MIN,
            -5,
            -5,
            -5,
            0,
            0,
            1,
            1_700_000_000_000,
            i64::MAX,
            i64::MAX,
        ];
        let samples: Vec<(i64, f64)> = ts.iter().map(|&t| (t, t as f64)).collect();
        round_trip(&samples);
        // Also compressed: a long series where every timestamp repeats.
        let samples: Vec<(i64, f64)> = (0..2000).map(|i| (-1000 + i / 3, 1.5)).collect();
        assert_eq!(round_trip(&samples)[0], FORMAT_PCO);
    }

    #[test]
    fn property_round_trips_with_fixed_seed() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for case in 0..300 {
            let n = match case % 6 {
                0 => rng.usize(1..10),
                1 => 60,
                2 => rng.usize(10..700),
                3 => 3600,
                4 if case % 24 == 4 => 16384,
                _ => rng.usize(0..5000),
            };
            let ts: Vec<i64> = match rng.u8(..5) {
                0 => jittered_ts(&mut rng, n),
                1 => {
                    // sorted random, wide range, with duplicates
                    let mut ts: Vec<i64> = (0..n).map(|_| rng.i64(..) >> rng.u32(0..60)).collect();
                    ts.sort_unstable();
                    ts
                }
                2 => (0..n as i64).map(|i| i * 300_000 - 86_400_000).collect(),
                // unsorted: not what the caller sends, but still lossless
                3 => (0..n).map(|_| rng.i64(..)).collect(),
                _ => {
                    let mut t = rng.i64(-1 << 50..1 << 50);
                    (0..n)
                        .map(|_| {
                            t = t.saturating_add(rng.i64(0..3));
                            t
                        })
                        .collect()
                }
            };
            let mut level = rng.f64() * 100.0;
            let values: Vec<f64> = (0..n)
                .map(|_| match case % 5 {
                    0 => f64::from_bits(rng.u64(..)),
                    1 => (rng.u64(200..300) * 4096) as f64,
                    2 => {
                        level += rng.f64() - 0.5;
                        level
                    }
                    3 if rng.u8(..20) == 0 => f64::from_bits(SPECIALS[rng.usize(..SPECIALS.len())]),
                    3 => rng.u32(..1000) as f64 / 100.0,
                    _ => 42.0,
                })
                .collect();
            let samples: Vec<(i64, f64)> = ts.into_iter().zip(values).collect();
            round_trip(&samples);
            assert_bit_exact(
                &samples,
                &decode_chunk(&encode_raw(&samples)).expect("raw decodes"),
            );
        }
    }

    #[test]
    fn raw_format_layout_and_round_trip() {
        let samples = [(1_700_000_000_123, 0.5), (-1, f64::NEG_INFINITY)];
        let blob = encode_raw(&samples);
        assert_eq!(blob.len(), 2 + 2 * RAW_SAMPLE_BYTES);
        assert_eq!(&blob[..2], &[FORMAT_RAW, 2]);
        assert_eq!(&blob[2..10], &1_700_000_000_123_i64.to_le_bytes());
        assert_eq!(&blob[10..18], &0.5_f64.to_bits().to_le_bytes());
        assert_bit_exact(&samples, &decode_chunk(&blob).expect("raw decodes"));
        // 200 samples need a two-byte varint count.
        let samples: Vec<(i64, f64)> = (0..200).map(|i| (i, i as f64)).collect();
        let blob = encode_raw(&samples);
        assert_eq!(blob.len(), raw_len(200));
        assert_eq!(&blob[..3], &[FORMAT_RAW, 0xc8, 0x01]);
        assert_bit_exact(&samples, &decode_chunk(&blob).expect("raw decodes"));
    }

    #[test]
    fn oversized_chunk_is_written_raw_and_round_trips() {
        let samples: Vec<(i64, f64)> = (0..MAX_COMPRESSED_SAMPLES as i64 + 1)
            .map(|i| (i * 1000, 1.0))
            .collect();
        let blob = round_trip(&samples);
        assert_eq!(blob[0], FORMAT_RAW);
    }

    #[test]
    fn realistic_1hz_process_series_compress_under_2_bytes_per_sample() {
        let mut rng = fastrand::Rng::with_seed(2024);
        let n = 3600;
        let ts = jittered_ts(&mut rng, n);
        // RSS: whole pages, mostly flat, sometimes a step of a few pages.
        let mut pages = 25_000_u64;
        let rss: Vec<f64> = (0..n)
            .map(|_| {
                if rng.u8(..10) == 0 {
                    pages = pages.saturating_add_signed(rng.i64(-40..60));
                }
                (pages * 4096) as f64
            })
            .collect();
        // CPU time: utime/100 + stime/100 as perfvisor sums them, ~40 % busy.
        let (mut utime, mut stime) = (123_456_u64, 7_890_u64);
        let cpu: Vec<f64> = (0..n)
            .map(|_| {
                utime += rng.u64(30..50);
                stime += rng.u64(0..5);
                utime as f64 / 100.0 + stime as f64 / 100.0
            })
            .collect();
        for (name, values) in [("rss", rss), ("cpu time", cpu)] {
            let samples: Vec<(i64, f64)> = ts.iter().copied().zip(values).collect();
            let blob = round_trip(&samples);
            let per_sample = blob.len() as f64 / n as f64;
            assert!(
                per_sample <= 2.0,
                "{name}: {per_sample:.3} bytes/sample, expected <= 2"
            );
        }
    }

    /// Valid blobs of both formats and several sizes, for the corruption tests.
    fn valid_blobs() -> Vec<Vec<u8>> {
        let mut rng = fastrand::Rng::with_seed(9);
        let mut blobs = Vec::new();
        for n in [1, 3, 60, 700] {
            let ts = jittered_ts(&mut rng, n);
            let samples: Vec<(i64, f64)> = ts
                .into_iter()
                .map(|t| (t, rng.u32(..500) as f64 * 0.01))
                .collect();
            blobs.push(encode_chunk(&samples));
            blobs.push(encode_raw(&samples[..n.min(5)]));
        }
        assert!(blobs.iter().any(|b| b[0] == FORMAT_PCO));
        blobs
    }

    #[test]
    fn every_truncation_is_an_error() {
        for blob in valid_blobs() {
            for len in 0..blob.len() {
                assert!(
                    decode_chunk(&blob[..len]).is_err(),
                    "a {len}-byte prefix of a {}-byte format-{} blob decoded",
                    blob.len(),
                    blob[0]
                );
            }
            let mut longer = blob.clone();
            longer.push(0);
            assert!(
                decode_chunk(&longer).is_err(),
                "a trailing byte was accepted"
            );
        }
    }

    #[test]
    fn corrupt_and_random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(77);
        for blob in valid_blobs() {
            for i in 0..blob.len() {
                for bit in 0..8 {
                    let mut bad = blob.clone();
                    bad[i] ^= 1 << bit;
                    let _ = decode_chunk(&bad);
                }
                for byte in [0x00, 0xff, rng.u8(..)] {
                    let mut bad = blob.clone();
                    bad[i] = byte;
                    let _ = decode_chunk(&bad);
                }
            }
        }
        for _ in 0..3000 {
            let mut bytes: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
            if let Some(tag) = bytes.first_mut() {
                *tag = rng.u8(..3);
            }
            let _ = decode_chunk(&bytes);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let msg = |blob: &[u8]| decode_chunk(blob).expect_err("must fail").to_string();
        assert_eq!(
            msg(&[7, 0]),
            "unknown chunk format 7 (this build reads 0 = raw and 1 = pco)"
        );
        assert_eq!(
            msg(&[FORMAT_RAW, 0x90, 0x1c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
            "truncated chunk: header says 3600 samples (57600 bytes of raw data), \
             blob holds 12 bytes"
        );
        assert!(msg(&[]).starts_with("empty chunk blob"));
        assert!(msg(&[FORMAT_RAW, 0x80]).contains("found the end of the blob"));
        assert!(msg(&[FORMAT_RAW, 1, 0, 0]).starts_with("truncated chunk"));
        assert!(msg(&[FORMAT_PCO, 0]).contains("says 0 samples"));
        assert!(msg(&[FORMAT_PCO, 0xff, 0xff, 0xff, 0x7f]).contains("compressed chunks hold"));
        assert!(msg(&[FORMAT_PCO, 1, 0xde, 0xad]).starts_with("corrupt compressed chunk"));
        let mut blob = encode_raw(&[(1, 1.0)]);
        blob.push(9);
        assert_eq!(
            msg(&blob),
            "trailing data after the 1 samples of the chunk: 1 extra byte(s), expected the blob \
             to end there"
        );
        let max = [
            FORMAT_RAW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert!(msg(&max).contains("18446744073709551615 samples"));
        let over = [
            FORMAT_RAW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert!(msg(&over).contains("over u64::MAX"));
    }

    /// Writes the seed corpora of the fuzz targets `chunk_decoder` (blobs of both formats,
    /// written by the real encoders) and `chunk_roundtrip` (samples as 16-byte little-endian
    /// `(i64, f64 bits)` pairs) under `fuzz/corpus/`. Run by hand:
    /// `cargo test -p perfvisor-actors --lib write_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes the fuzz seed corpora; run by hand"]
    fn write_fuzz_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut rng = fastrand::Rng::with_seed(0xf022);
        let specials: Vec<(i64, f64)> = SPECIALS
            .iter()
            .enumerate()
            .map(|(i, &bits)| (1_700_000_000_000 + 1000 * i as i64, f64::from_bits(bits)))
            .collect();
        let jittered = |rng: &mut fastrand::Rng, n: usize, step: f64| -> Vec<(i64, f64)> {
            let mut level = 50.0;
            jittered_ts(rng, n)
                .into_iter()
                .map(|t| {
                    level += (rng.f64() - 0.5) * step;
                    (t, (level * 100.0_f64).round() / 100.0)
                })
                .collect()
        };
        let series: Vec<(&str, Vec<(i64, f64)>)> = vec![
            ("empty", vec![]),
            ("one", vec![(1_700_000_000_123, 12.34)]),
            ("three", jittered(&mut rng, 3, 1.0)),
            ("specials", specials),
            ("gauge_60", jittered(&mut rng, 60, 2.0)),
            (
                "counter_60",
                (0..60).map(|i| (i * 1000, (i * i) as f64)).collect(),
            ),
            (
                "pages_120",
                (0..120)
                    .map(|i| {
                        (
                            1_700_000_000_000 + i * 1000,
                            ((25_000 + i / 7) * 4096) as f64,
                        )
                    })
                    .collect(),
            ),
            (
                "extreme_ts",
                [i64::MIN, i64::MIN, -5, 0, 0, 1, i64::MAX]
                    .iter()
                    .map(|&t| (t, t as f64))
                    .collect(),
            ),
            (
                "repeated_ts_200",
                (0..200).map(|i| (-1000 + i / 3, 1.5)).collect(),
            ),
        ];
        let decoder = root.join("chunk_decoder");
        let roundtrip = root.join("chunk_roundtrip");
        std::fs::create_dir_all(&decoder).unwrap();
        std::fs::create_dir_all(&roundtrip).unwrap();
        for (name, samples) in &series {
            let pco = encode_chunk(samples);
            let tag = if pco[0] == FORMAT_PCO { "pco" } else { "raw" };
            std::fs::write(decoder.join(format!("{name}.{tag}")), &pco).unwrap();
            if tag == "pco" {
                let head = &samples[..samples.len().min(4)];
                std::fs::write(decoder.join(format!("{name}_head.raw")), encode_raw(head)).unwrap();
            }
            let pairs: Vec<u8> = samples
                .iter()
                .flat_map(|&(t, v)| t.to_le_bytes().into_iter().chain(v.to_bits().to_le_bytes()))
                .collect();
            std::fs::write(roundtrip.join(format!("{name}.bin")), pairs).unwrap();
        }
    }
}
