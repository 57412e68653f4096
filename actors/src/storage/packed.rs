//! The packed sample stream: the cheap encoding of recent samples, written and read here
//! only. The writer holds its unfolded samples in it ([`Pending`](super::pending)), head
//! rows store it (chunk format 3, see `codec`) and head-log rows store it (version 2, see
//! `headlog`).
//!
//! A sample takes what it says beyond the previous one:
//!
//! - its timestamp as the zigzag varint of its delta-of-delta (one byte while the series
//!   keeps its step within ±63 ms; the first sample's delta is from the stream's base);
//! - its value as the XOR of its bits with the previous value's (the first value's with
//!   zero): a zero byte when the value repeats (a descriptor count, a resident size between
//!   two allocations), else a byte `0x80 | leading zero bytes << 3 | trailing zero bytes`
//!   and the XOR's middle bytes.
//!
//! So a steady series costs 2 bytes a sample and a noisy one at most 10 (16 raw), and
//! encoding is a few shifts per sample: no modelling, unlike the compacted chunks. Every
//! sample reads back bit for bit (NaN payloads, -0.0, any timestamps in any order), since
//! the arithmetic wraps and the XOR is exact. Every sample takes at least 2 bytes, which
//! bounds what a damaged count can make a reader allocate.

use super::varint::{self, unzigzag, zigzag};

/// The fewest bytes a packed sample takes (a one-byte timestamp and a repeated value).
pub(super) const MIN_SAMPLE_BYTES: usize = 2;

/// The state of one stream being written.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Packer {
    last_ts: i64,
    last_delta: i64,
    last_bits: u64,
}

impl Packer {
    /// A stream whose first timestamp is written as its distance from `base` (a short
    /// varint when `base` is near it, such as the first timestamp of a head-log row).
    pub(super) fn from_base(base: i64) -> Self {
        Packer {
            last_ts: base,
            ..Packer::default()
        }
    }

    /// Appends one sample to `out`.
    pub(super) fn push(&mut self, out: &mut Vec<u8>, ts: i64, value: f64) {
        let delta = ts.wrapping_sub(self.last_ts);
        varint::put(out, zigzag(delta.wrapping_sub(self.last_delta)));
        self.last_ts = ts;
        self.last_delta = delta;
        let bits = value.to_bits();
        let xor = bits ^ self.last_bits;
        self.last_bits = bits;
        if xor == 0 {
            out.push(0);
            return;
        }
        let lead = xor.leading_zeros() / 8;
        let trail = xor.trailing_zeros() / 8;
        out.push(0x80 | (lead << 3) as u8 | trail as u8);
        let middle = xor.to_be_bytes();
        out.extend_from_slice(&middle[lead as usize..(8 - trail) as usize]);
    }
}

/// Why packed bytes could not be read. Names the sample and what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum UnpackError {
    /// The bytes end (or a varint is malformed) inside sample `sample` (counted from 0).
    #[error("packed samples cut off or malformed in sample {sample}: expected a varint timestamp step, a value byte and its middle bytes")]
    Truncated {
        /// The sample being read.
        sample: usize,
    },
    /// A value byte that no encoder writes.
    #[error("packed sample {sample} has value byte {byte:#04x}: expected 0, or 0x80 with leading and trailing zero-byte counts summing to at most 7")]
    BadValueByte {
        /// The sample being read.
        sample: usize,
        /// The byte found.
        byte: u8,
    },
    /// More samples are claimed than the bytes could hold.
    #[error(
        "{count} packed samples claimed in {bytes} bytes: each takes at least {MIN_SAMPLE_BYTES}"
    )]
    TooMany {
        /// The count claimed.
        count: u64,
        /// The bytes there are.
        bytes: usize,
    },
    /// Bytes remain after the last sample.
    #[error("{extra} byte(s) after the last of {count} packed samples: expected the end")]
    Trailing {
        /// Samples read.
        count: usize,
        /// Bytes left.
        extra: usize,
    },
}

/// Reads a stream written by a [`Packer`] started from the same base.
#[derive(Debug, Clone)]
pub(super) struct Unpacker<'a> {
    rest: &'a [u8],
    ts: i64,
    delta: i64,
    bits: u64,
    read: usize,
}

impl<'a> Unpacker<'a> {
    /// A reader of `bytes`, written from [`Packer::from_base`]`(base)`.
    pub(super) fn new(bytes: &'a [u8], base: i64) -> Self {
        Unpacker {
            rest: bytes,
            ts: base,
            delta: 0,
            bits: 0,
            read: 0,
        }
    }

    /// Whether every byte has been read.
    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next sample, or why it cannot be read. Call only while bytes remain.
    pub(super) fn next_sample(&mut self) -> Result<(i64, f64), UnpackError> {
        let sample = self.read;
        let truncated = UnpackError::Truncated { sample };
        let (dod, after) = varint::read(self.rest).map_err(|_| truncated)?;
        let (&head, after) = after.split_first().ok_or(truncated)?;
        let mut rest = after;
        let mut bits = self.bits;
        if head != 0 {
            let lead = usize::from((head >> 3) & 0x7);
            let trail = usize::from(head & 0x7);
            if head & 0xc0 != 0x80 || lead + trail > 7 {
                return Err(UnpackError::BadValueByte { sample, byte: head });
            }
            let width = 8 - lead - trail;
            let middle = rest.get(..width).ok_or(truncated)?;
            let mut buf = [0u8; 8];
            buf[lead..lead + width].copy_from_slice(middle);
            bits ^= u64::from_be_bytes(buf);
            rest = &rest[width..];
        }
        self.delta = self.delta.wrapping_add(unzigzag(dod));
        self.ts = self.ts.wrapping_add(self.delta);
        self.bits = bits;
        self.rest = rest;
        self.read += 1;
        Ok((self.ts, f64::from_bits(bits)))
    }
}

/// Appends to `out` exactly `count` samples read from `bytes` (a stream started from
/// `base`), which must end after them.
pub(super) fn unpack_exact(
    bytes: &[u8],
    base: i64,
    count: u64,
    out: &mut Vec<(i64, f64)>,
) -> Result<(), UnpackError> {
    let n = usize::try_from(count)
        .ok()
        .filter(|&n| n <= bytes.len() / MIN_SAMPLE_BYTES)
        .ok_or(UnpackError::TooMany {
            count,
            bytes: bytes.len(),
        })?;
    out.reserve(n);
    let mut reader = Unpacker::new(bytes, base);
    for _ in 0..n {
        out.push(reader.next_sample()?);
    }
    if !reader.is_empty() {
        return Err(UnpackError::Trailing {
            count: n,
            extra: reader.rest.len(),
        });
    }
    Ok(())
}

/// Samples a bit-exact round trip must survive: infinities, -0.0, a NaN payload, the
/// smallest normal, extreme and repeated and out-of-order timestamps, decimals.
#[cfg(test)]
pub(super) const ODD_SAMPLES: [(i64, f64); 9] = [
    (i64::MIN, f64::INFINITY),
    (i64::MAX, f64::NEG_INFINITY),
    (0, -0.0),
    (5, f64::from_bits(0x7ff8_0000_dead_beef)),
    (5, f64::MIN_POSITIVE),
    (-3, 1e308),
    (1_700_000_000_000, 0.1),
    (1_700_000_000_000, 0.1),
    (1_700_000_001_003, 0.30000000000000004),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(base: i64, samples: &[(i64, f64)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut p = Packer::from_base(base);
        for &(ts, v) in samples {
            p.push(&mut out, ts, v);
        }
        out
    }

    /// Every sample reads back bit for bit from any base, and every cut or changed byte is
    /// an error or a clean read, never a panic.
    #[test]
    fn round_trips_and_never_panics_on_damage() {
        let samples = ODD_SAMPLES;
        for base in [0, 1_700_000_000_000, i64::MIN] {
            let bytes = pack(base, &samples);
            let mut back = Vec::new();
            unpack_exact(&bytes, base, samples.len() as u64, &mut back).unwrap();
            let bits = |s: &[(i64, f64)]| -> Vec<(i64, u64)> {
                s.iter().map(|&(t, v)| (t, v.to_bits())).collect()
            };
            assert_eq!(bits(&back), bits(&samples));
            for cut in 0..bytes.len() {
                assert!(unpack_exact(&bytes[..cut], base, 9, &mut Vec::new()).is_err());
            }
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0xff;
                let _ = unpack_exact(&bad, base, 9, &mut Vec::new());
            }
        }
    }

    /// Counts that do not match the bytes are refused, naming what was wrong.
    #[test]
    fn wrong_counts_are_refused() {
        let bytes = pack(0, &[(1, 1.0), (2, 1.0)]);
        let err = unpack_exact(&bytes, 0, 1, &mut Vec::new()).unwrap_err();
        assert_eq!(err, UnpackError::Trailing { count: 1, extra: 2 });
        let err = unpack_exact(&bytes, 0, u64::MAX, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("at least 2"), "{err}");
        let err = unpack_exact(&[0, 0xc0], 0, 1, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            UnpackError::BadValueByte {
                sample: 0,
                byte: 0xc0
            }
        );
    }

    /// A steady 1 Hz series costs two bytes a sample; a row's first sample near its base
    /// costs a few.
    #[test]
    fn steady_series_pack_small() {
        let steady: Vec<(i64, f64)> = (0..30)
            .map(|i| (1_700_000_000_000 + i * 1_000 + (i % 5), 42.0))
            .collect();
        let bytes = pack(0, &steady);
        assert!(bytes.len() <= 2 * 30 + 16, "{} bytes", bytes.len());
        let one = pack(1_700_000_000_000, &[(1_700_000_000_400, 0.0)]);
        assert_eq!(one.len(), 3, "{one:?}");
    }
}
