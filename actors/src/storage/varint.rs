//! Unsigned LEB128 varints and the zigzag mapping of signed integers: the integer encoding of
//! every storage blob (chunks, head-log rows, sketches), written and read here only.

/// Most bytes a varint holding a `u64` takes.
pub(super) const MAX_BYTES: usize = 10;

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VarintError {
    /// The bytes end inside the varint.
    Truncated,
    /// Its tenth byte takes it past `u64::MAX`.
    Overflow,
    /// Longer than [`MAX_BYTES`].
    TooLong,
}

/// Appends `v`.
pub(super) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The number of bytes [`put`] writes for `v`.
pub(super) fn len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Zigzag mapping of a signed integer to an unsigned one, so small magnitudes of either sign
/// make short varints: 0, -1, 1, -2 … become 0, 1, 2, 3 ….
pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads a varint from the front of `bytes`, returning it and the rest.
pub(super) fn read(bytes: &[u8]) -> Result<(u64, &[u8]), VarintError> {
    let mut v = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(MAX_BYTES) {
        let payload = u64::from(byte & 0x7f);
        if i == MAX_BYTES - 1 && payload > 1 {
            return Err(VarintError::Overflow);
        }
        v |= payload << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, &bytes[i + 1..]));
        }
    }
    if bytes.len() < MAX_BYTES {
        Err(VarintError::Truncated)
    } else {
        Err(VarintError::TooLong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ensures every length from 1 to 10 bytes round-trips, `len` matches what `put` writes,
    /// and truncated or overlong input is refused, never misread.
    #[test]
    fn round_trips_and_refuses_bad_input() {
        let mut values = vec![0, 1, 127, 128, 255, 16_383, 16_384, u64::MAX];
        values.extend((0..64).map(|s| 1u64 << s));
        for v in values {
            let mut out = Vec::new();
            put(&mut out, v);
            assert_eq!(out.len(), len(v), "length of {v}");
            out.push(0xAB);
            let (back, rest) = read(&out).expect("valid varint");
            assert_eq!((back, rest), (v, &[0xAB][..]));
            if out.len() > 2 {
                assert_eq!(read(&out[..out.len() - 2]), Err(VarintError::Truncated));
            }
        }
        assert_eq!(read(&[]), Err(VarintError::Truncated));
        assert_eq!(read(&[0x80; 11]), Err(VarintError::TooLong));
        let mut over = vec![0xFF; 9];
        over.push(0x02);
        assert_eq!(read(&over), Err(VarintError::Overflow));
    }
}
