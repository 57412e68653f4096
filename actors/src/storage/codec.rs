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
//! - tag `2`, decimal: one adaptive binary range coder stream (see "Format 2" below).
//! - tag `3`, packed: `n` samples as the `packed` module writes them from base 0 (each
//!   timestamp's delta-of-delta as a varint, each value's XOR with the previous one with its
//!   zero bytes stripped).
//!
//! [`decode_chunk`] dispatches on the tag, so callers never need to know which format a blob
//! uses. [`encode_packed`] writes tag 3 for the write-ahead "head" rows (a few shifts per
//! sample, no modelling: 2 to 10 bytes a sample against raw's 16; head rows written before it
//! existed are tag 0, raw).
//! [`encode_chunk`] writes tag 1, or tag 2 for a chunk of at most [`MAX_DECIMAL_SAMPLES`]
//! whose decimal form is at least 1/16 smaller than its pco form (pco decodes faster), except
//! for an empty chunk, a chunk above [`MAX_COMPRESSED_SAMPLES`], or one whose compressed form
//! would not be smaller than raw; those are written raw. A compressed blob always
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
//! # Format 2 (decimal)
//!
//! Pco's fixed cost per chunk is about 100 bytes (40 for a perfectly regular timestamp
//! column, 40 to 80 for the value column's bins), which a day-long chunk of a series sampled
//! every 5 minutes (288 samples, the sparse series the compactor coalesces) pays for about
//! 500 bytes of data. Format 2 has no tables to send: after the tag and the sample count, the
//! rest of the blob is one stream of LZMA's binary range coder (11-bit probabilities that
//! adapt by 1/8 per bit, starting at one half; the coder's always-zero first byte is not
//! stored), holding in order:
//!
//! - the first timestamp, zigzagged; then each delta-of-delta, zigzagged (a regular series
//!   costs a few hundredths of a bit per sample);
//! - a decimal exponent `k` (4 direct bits, `0..=12`), chosen per chunk as the one that makes
//!   the values cheapest; one direct bit: whether scaled values are predicted from the one
//!   before (trends, counters) or from the chunk's median (noise around a level; then the
//!   median follows, zigzagged);
//! - per value, an escape bit. Escaped (NaN, ±inf, or `|v · 10^k| ≥ 2^53`): the 64 bits of
//!   the value, direct. Otherwise `m = round(v · 10^k)`; the zigzagged difference of `m`
//!   from its prediction, then the zigzagged difference of the value's bits from the bits of
//!   `m / 10^k` (the `f64` nearest to the decimal, a correctly rounded division of two exact
//!   `f64`s): 0 for a value that is exactly a short decimal (`0.134`), a few units for the
//!   float noise of a computed one (`51.846000000000004`, 1 ulp above `51.846`), and the
//!   whole difference, however large, for anything else, so every value is bit-exact.
//!
//! Each integer is coded by an adaptive model of its bit length (a 7-level bit tree), the
//! four bits below its leading one (an adaptive bit tree per length) and the rest direct. Every byte of
//! the blob must be used: a cut-off blob runs out of bytes and a longer one has trailing
//! bytes, both errors. The encoder decodes what it wrote and falls back to pco when the result
//! differs, so a blob that does not round-trip is never stored.
//!
//! On the NAB series cut in 288-sample chunks (46 274 samples) pco takes 2.02 B/sample and
//! format 2 1.75; with the 1/16 preference for pco, [`encode_chunk`] writes 1.77. Encoding a
//! chunk tries both formats, and decoding format 2 is slower than pco (one adaptive decision
//! per bit); both only for chunks of at most [`MAX_DECIMAL_SAMPLES`] samples.
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

/// Format tag of a range-coded blob of scaled decimals (see "Format 2" in the module docs).
pub(crate) const FORMAT_DECIMAL: u8 = 2;

/// Format tag of a packed blob (head rows; see the `packed` module).
pub(crate) const FORMAT_PACKED: u8 = 3;

/// The most samples [`encode_chunk`] tries [`FORMAT_DECIMAL`] for. Its gain is pco's fixed
/// cost per chunk (about 100 bytes of bins and headers), which matters for the day-long
/// chunks of sparse series (a few hundred samples); an hour of a 1 Hz series stays pco, which
/// decodes faster.
pub(crate) const MAX_DECIMAL_SAMPLES: usize = 1024;

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
        "unknown chunk format {tag} (this build reads {FORMAT_RAW} = raw, {FORMAT_PCO} = pco, \
         {FORMAT_DECIMAL} = decimal and {FORMAT_PACKED} = packed)"
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

    /// A decimal (tag 2) body is cut short or holds an impossible field.
    #[error("corrupt decimal chunk: {what}")]
    Decimal {
        /// What is wrong: the body ended early, or which field is impossible.
        what: String,
    },

    /// A packed (tag 3) body does not hold the samples its header says.
    #[error("corrupt packed chunk: {0}")]
    Packed(#[from] super::packed::UnpackError),

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
    let pco = encode_pco(samples).ok();
    let decimal = (n <= MAX_DECIMAL_SAMPLES)
        .then(|| encode_decimal(samples))
        .flatten();
    // Decimal only when clearly smaller: pco decodes several times faster.
    let best = match (pco, decimal) {
        (Some(p), Some(d)) if d.len() + d.len() / 16 < p.len() => Some(d),
        (Some(p), _) => Some(p),
        (None, d) => d,
    };
    match best {
        Some(blob) if blob.len() < raw_len(n) => blob,
        // A pco error cannot happen with these configs; raw is still a correct answer.
        _ => encode_raw(samples),
    }
}

/// Encodes a non-empty chunk as [`FORMAT_DECIMAL`], or `None` if the blob would not decode
/// back to `samples` bit for bit (checked by decoding it: the format is new, and a blob that
/// does not round-trip must never be stored).
pub(crate) fn encode_decimal(samples: &[(i64, f64)]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(16 + samples.len() * 2);
    out.push(FORMAT_DECIMAL);
    varint::put(&mut out, samples.len() as u64);
    let blob = decimal::encode(samples, out);
    let back = decode_chunk(&blob).ok()?;
    let same = back.len() == samples.len()
        && back
            .iter()
            .zip(samples)
            .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits());
    same.then_some(blob)
}

/// Encodes samples uncompressed (tag [`FORMAT_RAW`]): a header and then a little-endian
/// copy, ~1 ns per sample. What [`encode_chunk`] falls back to; head rows were written so
/// before [`FORMAT_PACKED`].
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
    if tag > FORMAT_PACKED {
        return Err(CodecError::UnknownFormat { tag });
    }
    let (samples, body) = read_varint(rest)?;
    match tag {
        FORMAT_RAW => decode_raw(samples, body),
        FORMAT_PCO => decode_pco(samples, body),
        FORMAT_DECIMAL => decode_decimal(samples, body),
        _ => {
            let mut out = Vec::new();
            super::packed::unpack_exact(body, 0, samples, &mut out)?;
            Ok(out)
        }
    }
}

/// Encodes samples packed (tag [`FORMAT_PACKED`]), for the write-ahead "head" rows: cheap
/// to write (no modelling), 2 to 10 bytes a sample. Any samples, in any order.
pub(crate) fn encode_packed(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + varint::MAX_BYTES + samples.len() * 4);
    out.push(FORMAT_PACKED);
    varint::put(&mut out, samples.len() as u64);
    let mut packer = super::packed::Packer::default();
    for &(ts, value) in samples {
        packer.push(&mut out, ts, value);
    }
    out
}

/// Decodes the body of a decimal blob whose header says `samples`.
fn decode_decimal(samples: u64, body: &[u8]) -> Result<Vec<(i64, f64)>, CodecError> {
    let n = match usize::try_from(samples) {
        Ok(n) if (1..=MAX_COMPRESSED_SAMPLES).contains(&n) => n,
        _ => return Err(CodecError::CompressedCount { samples }),
    };
    decimal::decode(n, body).map_err(|e| match e {
        decimal::Error::Truncated => CodecError::Decimal {
            what: format!(
                "the body ends after {} bytes, before all {n} samples are decoded",
                body.len()
            ),
        },
        decimal::Error::Invalid(field) => CodecError::Decimal {
            what: format!("{field} is out of range"),
        },
        decimal::Error::Trailing(extra) => CodecError::TrailingBytes { samples, extra },
    })
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
#[path = "codec_tests.rs"]
mod tests;

/// Tag-2 bodies: an adaptive binary range coder (the LZMA one) over timestamps as
/// delta-of-deltas and values as scaled decimals. See the module docs, "Format 2".
mod decimal {
    use super::super::varint::{unzigzag, zigzag};

    /// Bits of a probability: `prob / 2^11` is the chance of a 0 bit.
    const PROB_BITS: u32 = 11;
    /// A probability of one half, the start of every model.
    const PROB_HALF: u16 = 1 << (PROB_BITS - 1);
    /// How fast a probability moves towards what was seen (1/8 of the distance per bit): fast,
    /// since a chunk of a sparse series has a few hundred samples to learn from. On the NAB
    /// day-long chunks 1/8 gave 1.754 B/sample, 1/4 1.789, 1/16 1.807, 1/32 1.929, and a mean
    /// of a 1/8 and a 1/64 estimate 1.925.
    const ADAPT_SHIFT: u32 = 3;
    /// Bits below an integer's leading one that are coded adaptively (the rest are direct).
    const TOP_BITS: u32 = 4;
    /// Below this the range is renormalised by a byte.
    const TOP: u32 = 1 << 24;
    /// Largest decimal exponent tried: values are `m / 10^k` with `k <= MAX_SCALE`.
    pub(super) const MAX_SCALE: u32 = 12;
    /// Magnitude from which a scaled value is no longer an exact integer in an `f64`.
    const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

    /// Range encoder (LZMA's `RangeEnc`): carries propagate through a run of 0xff bytes.
    struct Encoder {
        low: u64,
        range: u32,
        cache: u8,
        cache_size: u64,
        out: Vec<u8>,
    }

    impl Encoder {
        fn new(out: Vec<u8>) -> Self {
            Encoder {
                low: 0,
                range: u32::MAX,
                cache: 0,
                cache_size: 1,
                out,
            }
        }

        fn shift_low(&mut self) {
            if (self.low as u32) < 0xff00_0000 || (self.low >> 32) != 0 {
                let carry = (self.low >> 32) as u8;
                let mut byte = self.cache;
                loop {
                    self.out.push(byte.wrapping_add(carry));
                    byte = 0xff;
                    self.cache_size -= 1;
                    if self.cache_size == 0 {
                        break;
                    }
                }
                self.cache = (self.low >> 24) as u8;
            }
            self.cache_size += 1;
            self.low = (self.low & 0x00ff_ffff) << 8;
        }

        fn normalize(&mut self) {
            while self.range < TOP {
                self.range <<= 8;
                self.shift_low();
            }
        }

        fn bit(&mut self, prob: &mut u16, bit: bool) {
            let bound = (self.range >> PROB_BITS) * u32::from(*prob);
            if bit {
                self.low += u64::from(bound);
                self.range -= bound;
                *prob -= *prob >> ADAPT_SHIFT;
            } else {
                self.range = bound;
                *prob += ((1 << PROB_BITS) - *prob) >> ADAPT_SHIFT;
            }
            self.normalize();
        }

        /// The low `count` bits of `v`, most significant first, each at probability one half.
        fn direct(&mut self, v: u64, count: u32) {
            for i in (0..count).rev() {
                self.range >>= 1;
                if (v >> i) & 1 == 1 {
                    self.low += u64::from(self.range);
                }
                self.normalize();
            }
        }

        /// The bytes written, without the leading 0 byte the LZMA coder always starts with.
        fn finish(mut self, header: usize) -> Vec<u8> {
            for _ in 0..5 {
                self.shift_low();
            }
            // The first byte written is the initial cache, 0 unless a carry reached it, which
            // cannot happen before a byte has been shifted out; kept when it is not 0, so the
            // caller sees a blob that does not decode and falls back to another format.
            if self.out.get(header) == Some(&0) {
                self.out.remove(header);
            }
            self.out
        }
    }

    /// Why a tag-2 body could not be decoded.
    #[derive(Debug)]
    pub(super) enum Error {
        /// The body ended while the coder still needed bytes.
        Truncated,
        /// A field decoded to an impossible value (named).
        Invalid(&'static str),
        /// This many bytes follow the last sample.
        Trailing(usize),
    }

    /// Range decoder mirroring [`Encoder`].
    struct Decoder<'a> {
        range: u32,
        code: u32,
        bytes: &'a [u8],
        pos: usize,
    }

    impl<'a> Decoder<'a> {
        fn new(bytes: &'a [u8]) -> Result<Self, Error> {
            let mut d = Decoder {
                range: u32::MAX,
                code: 0,
                bytes,
                pos: 0,
            };
            for _ in 0..4 {
                d.code = (d.code << 8) | u32::from(d.next()?);
            }
            if d.code == u32::MAX {
                return Err(Error::Invalid("the range coder's first word"));
            }
            Ok(d)
        }

        fn next(&mut self) -> Result<u8, Error> {
            let byte = *self.bytes.get(self.pos).ok_or(Error::Truncated)?;
            self.pos += 1;
            Ok(byte)
        }

        fn normalize(&mut self) -> Result<(), Error> {
            while self.range < TOP {
                self.range <<= 8;
                self.code = (self.code << 8) | u32::from(self.next()?);
            }
            Ok(())
        }

        fn bit(&mut self, prob: &mut u16) -> Result<bool, Error> {
            let bound = (self.range >> PROB_BITS) * u32::from(*prob);
            let bit = if self.code < bound {
                self.range = bound;
                *prob += ((1 << PROB_BITS) - *prob) >> ADAPT_SHIFT;
                false
            } else {
                self.code -= bound;
                self.range -= bound;
                *prob -= *prob >> ADAPT_SHIFT;
                true
            };
            self.normalize()?;
            Ok(bit)
        }

        fn direct(&mut self, count: u32) -> Result<u64, Error> {
            let mut v = 0u64;
            for _ in 0..count {
                self.range >>= 1;
                let bit = self.code >= self.range;
                if bit {
                    self.code -= self.range;
                }
                v = (v << 1) | u64::from(bit);
                self.normalize()?;
            }
            Ok(v)
        }
    }

    /// Adaptive model of an unsigned integer: its bit length `L` (0..=64) through a 7-level
    /// bit tree, then the two bits below the leading one adaptively (per `L`), the rest direct.
    struct Uint {
        length: [u16; 128],
        top: [[u16; 1 << TOP_BITS]; 65],
    }

    impl Uint {
        fn new() -> Self {
            Uint {
                length: [PROB_HALF; 128],
                top: [[PROB_HALF; 1 << TOP_BITS]; 65],
            }
        }

        fn encode(&mut self, e: &mut Encoder, v: u64) {
            let len = 64 - v.leading_zeros();
            let mut node = 1usize;
            for i in (0..7).rev() {
                let bit = (len >> i) & 1 == 1;
                e.bit(&mut self.length[node], bit);
                node = (node << 1) | usize::from(bit);
            }
            if len < 2 {
                return;
            }
            let below = len - 1;
            let adaptive = below.min(TOP_BITS);
            let mut node = 1usize;
            for i in 0..adaptive {
                let bit = (v >> (below - 1 - i)) & 1 == 1;
                e.bit(&mut self.top[len as usize][node], bit);
                node = (node << 1) | usize::from(bit);
            }
            e.direct(v, below - adaptive);
        }

        fn decode(&mut self, d: &mut Decoder<'_>) -> Result<u64, Error> {
            let mut node = 1usize;
            for _ in 0..7 {
                let bit = d.bit(&mut self.length[node])?;
                node = (node << 1) | usize::from(bit);
            }
            let len = (node - 128) as u32;
            if len > 64 {
                return Err(Error::Invalid("an integer's bit length"));
            }
            if len < 2 {
                return Ok(u64::from(len));
            }
            let below = len - 1;
            let adaptive = below.min(TOP_BITS);
            let mut v = 1u64;
            let mut node = 1usize;
            for _ in 0..adaptive {
                let bit = d.bit(&mut self.top[len as usize][node])?;
                node = (node << 1) | usize::from(bit);
                v = (v << 1) | u64::from(bit);
            }
            let rest = below - adaptive;
            Ok((v << rest) | d.direct(rest)?)
        }
    }

    /// `10^k` as an `f64` (exact for every `k <= MAX_SCALE`).
    fn power(k: u32) -> f64 {
        10f64.powi(k as i32)
    }

    /// `v` as the integer `m` with `v ≈ m / 10^k`, or `None` when `v` is not finite or
    /// `v · 10^k` is not an exact integer range for an `f64`.
    fn scaled(v: f64, p: f64) -> Option<i64> {
        let m = (v * p).round();
        (m.abs() < EXACT_INT).then_some(m as i64)
    }

    /// How a value is rebuilt from its scaled integer: the `f64` nearest to `m / 10^k`
    /// (a correctly rounded division of two exact `f64`s), as bits.
    fn base_bits(m: i64, p: f64) -> u64 {
        (m as f64 / p).to_bits()
    }

    /// Bits a varint-like code of `v` would take: a cheap stand-in for the coder's cost.
    fn cost(v: u64) -> u32 {
        64 - v.leading_zeros() + 2
    }

    /// The decimal exponent that makes the chunk's values cheapest: small deltas of the
    /// scaled integers and small residuals against `m / 10^k`.
    fn best_scale(values: &[f64]) -> u32 {
        let mut best = (u64::MAX, 0);
        for k in 0..=MAX_SCALE {
            let p = power(k);
            let mut total = 0u64;
            let mut prev = 0i64;
            for &v in values {
                total += u64::from(match scaled(v, p) {
                    Some(m) => {
                        let r = v.to_bits().wrapping_sub(base_bits(m, p)) as i64;
                        let c = cost(zigzag(m.wrapping_sub(prev))) + 2 * cost(zigzag(r));
                        prev = m;
                        c
                    }
                    None => 66,
                });
                if total >= best.0 {
                    break;
                }
            }
            if total < best.0 {
                best = (total, k);
            }
        }
        best.1
    }

    /// Appends the body of `samples` (non-empty) to `out`, which holds the blob's header.
    pub(super) fn encode(samples: &[(i64, f64)], out: Vec<u8>) -> Vec<u8> {
        let header = out.len();
        let mut e = Encoder::new(out);
        let mut first = Uint::new();
        let mut dods = Uint::new();
        let (mut prev_ts, mut prev_delta) = (0i64, 0i64);
        for (i, &(ts, _)) in samples.iter().enumerate() {
            if i == 0 {
                first.encode(&mut e, zigzag(ts));
            } else {
                let delta = ts.wrapping_sub(prev_ts);
                dods.encode(&mut e, zigzag(delta.wrapping_sub(prev_delta)));
                prev_delta = delta;
            }
            prev_ts = ts;
        }
        let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let k = best_scale(&values);
        e.direct(u64::from(k), 4);
        let p = power(k);
        // Predict each scaled value from the one before (trends, counters), or from the
        // chunk's median (noise around a level), whichever the deltas say is cheaper.
        let mut scaled_values: Vec<i64> = values.iter().filter_map(|&v| scaled(v, p)).collect();
        let from_previous: u64 = scaled_values
            .iter()
            .scan(0i64, |prev, &m| {
                let c = cost(zigzag(m.wrapping_sub(*prev)));
                *prev = m;
                Some(u64::from(c))
            })
            .sum();
        scaled_values.sort_unstable();
        let median = scaled_values
            .get(scaled_values.len() / 2)
            .copied()
            .unwrap_or(0);
        let from_median: u64 = scaled_values
            .iter()
            .map(|&m| u64::from(cost(zigzag(m.wrapping_sub(median)))))
            .sum();
        let centred = from_median + 64 < from_previous;
        e.direct(u64::from(centred), 1);
        if centred {
            Uint::new().encode(&mut e, zigzag(median));
        }
        let mut escape = PROB_HALF;
        let mut deltas = Uint::new();
        let mut residuals = Uint::new();
        let mut prev = 0i64;
        for &v in &values {
            match scaled(v, p) {
                Some(m) => {
                    e.bit(&mut escape, false);
                    let reference = if centred { median } else { prev };
                    deltas.encode(&mut e, zigzag(m.wrapping_sub(reference)));
                    let r = v.to_bits().wrapping_sub(base_bits(m, p)) as i64;
                    residuals.encode(&mut e, zigzag(r));
                    prev = m;
                }
                None => {
                    e.bit(&mut escape, true);
                    e.direct(v.to_bits(), 64);
                }
            }
        }
        e.finish(header)
    }

    /// Decodes a body of `n` samples; every byte must be used.
    pub(super) fn decode(n: usize, body: &[u8]) -> Result<Vec<(i64, f64)>, Error> {
        let mut d = Decoder::new(body)?;
        let mut ts = Vec::with_capacity(n.min(body.len() * 8));
        let mut first = Uint::new();
        let mut dods = Uint::new();
        let (mut prev_ts, mut prev_delta) = (0i64, 0i64);
        for i in 0..n {
            let t = if i == 0 {
                unzigzag(first.decode(&mut d)?)
            } else {
                prev_delta = prev_delta.wrapping_add(unzigzag(dods.decode(&mut d)?));
                prev_ts.wrapping_add(prev_delta)
            };
            ts.push(t);
            prev_ts = t;
        }
        let k = d.direct(4)? as u32;
        if k > MAX_SCALE {
            return Err(Error::Invalid("the decimal exponent"));
        }
        let p = power(k);
        let centred = d.direct(1)? == 1;
        let median = if centred {
            unzigzag(Uint::new().decode(&mut d)?)
        } else {
            0
        };
        let mut escape = PROB_HALF;
        let mut deltas = Uint::new();
        let mut residuals = Uint::new();
        let mut prev = 0i64;
        let mut out = Vec::with_capacity(ts.len());
        for t in ts {
            let v = if d.bit(&mut escape)? {
                f64::from_bits(d.direct(64)?)
            } else {
                let reference = if centred { median } else { prev };
                let m = reference.wrapping_add(unzigzag(deltas.decode(&mut d)?));
                prev = m;
                let r = unzigzag(residuals.decode(&mut d)?);
                f64::from_bits(base_bits(m, p).wrapping_add(r as u64))
            };
            out.push((t, v));
        }
        if d.pos != body.len() {
            return Err(Error::Trailing(body.len() - d.pos));
        }
        Ok(out)
    }
}
