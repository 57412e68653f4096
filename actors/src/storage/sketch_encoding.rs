//! The sketch's binary encoding: stores written as runs of buckets (format 1 varints, format 2
//! bit-packed) and read back field by field, naming the first wrong one. See `sketch.rs`'s
//! module documentation, "Encoding".

use super::*;

/// Empty buckets inside a run are written as one 0 byte each; a gap of this many or more
/// starts a new run instead (a run header costs at least 2 bytes).
pub(super) const RUN_SPLIT_GAP: usize = 3;

/// Writes the store's non-empty buckets as runs: the run count, then per run its header (the
/// first run's zigzag start offset, later runs' gap from the previous one, the length) and
/// its counts as `counts` writes them. A gap of more than `split_gap` empty buckets starts
/// a new run; both ends of a run are non-empty.
pub(super) fn put_runs(
    out: &mut Vec<u8>,
    store: &Store,
    split_gap: usize,
    mut counts: impl FnMut(&mut Vec<u8>, std::collections::vec_deque::Iter<'_, u64>),
) {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (slot, count) in store.counts.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        match runs.last_mut() {
            Some((_, end)) if slot - *end <= split_gap => *end = slot,
            _ => runs.push((slot, slot)),
        }
    }
    varint::put(out, runs.len() as u64);
    let mut previous_end: Option<usize> = None;
    for (start, end) in runs {
        match previous_end {
            None => varint::put(out, zigzag(store.offset + start as i64)),
            Some(previous) => varint::put(out, (start - previous - 1) as u64),
        }
        varint::put(out, (end - start + 1) as u64);
        counts(out, store.counts.range(start..=end));
        previous_end = Some(end);
    }
}

/// Writes a store as runs of buckets that skip long stretches of empty ones, each count a
/// varint (format version 1, written only by the tests of old rows).
#[cfg(test)]
pub(super) fn encode_store(out: &mut Vec<u8>, store: &Store) {
    put_runs(out, store, RUN_SPLIT_GAP, |out, counts| {
        for count in counts {
            varint::put(out, *count);
        }
    });
}

/// Bits a run header of format version 2 costs at most in practice (gap, length and width
/// bytes); a stretch of empty buckets longer than this many bits of counts starts a new run.
pub(super) const PACKED_RUN_HEADER_BITS: usize = 24;

/// Bits needed for `v` (0 for 0).
pub(super) fn bit_width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Writes a store as runs (like [`encode_store`]) whose counts are bit-packed: per run a
/// width byte `w` (1..=64) and the run's counts as `w`-bit integers, least significant bit
/// first, in `⌈len · w / 8⌉` bytes. Runs split where the empty buckets would cost more than
/// a new run header.
pub(super) fn encode_store_packed(out: &mut Vec<u8>, store: &Store) {
    let width = store
        .counts
        .iter()
        .map(|&c| bit_width(c))
        .max()
        .unwrap_or(0) as usize;
    let split_gap = PACKED_RUN_HEADER_BITS
        .div_ceil(width.max(1))
        .max(RUN_SPLIT_GAP);
    put_runs(out, store, split_gap, |out, counts| {
        let w = counts
            .clone()
            .map(|&c| bit_width(c))
            .max()
            .unwrap_or(1)
            .max(1);
        out.push(w as u8);
        let mut acc: u128 = 0;
        let mut bits = 0u32;
        for &count in counts {
            acc |= u128::from(count) << bits;
            bits += w;
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(acc as u8);
        }
    });
}

/// Names of a store's fields, for decode errors.
pub(super) struct StoreFields {
    /// The number of runs.
    pub(super) runs: &'static str,
    /// The first run's absolute index.
    pub(super) start: &'static str,
    /// A later run's gap.
    pub(super) gap: &'static str,
    /// A run's length.
    pub(super) len: &'static str,
    /// A bucket count.
    pub(super) count: &'static str,
}

/// Field names of the positive store.
pub(super) const POSITIVE_FIELDS: StoreFields = StoreFields {
    runs: "the positive store's run count",
    start: "the positive store's first index",
    gap: "the positive store's run gap",
    len: "the positive store's run length",
    count: "a positive bucket count",
};

/// Field names of the negative store.
pub(super) const NEGATIVE_FIELDS: StoreFields = StoreFields {
    runs: "the negative store's run count",
    start: "the negative store's first index",
    gap: "the negative store's run gap",
    len: "the negative store's run length",
    count: "a negative bucket count",
};

/// Reads a store written by [`encode_store`] into the empty `store`, checking that indices stay
/// in `lowest ..= highest` and that the range fits in [`MAX_BINS_PER_STORE`] buckets.
pub(super) fn decode_store(
    r: &mut Reader<'_>,
    store: &mut Store,
    lowest: i64,
    highest: i64,
    fields: &StoreFields,
    packed: bool,
) -> Result<(), SketchError> {
    let StoreFields {
        runs: runs_field,
        start: start_field,
        gap: gap_field,
        len: len_field,
        count: count_field,
    } = *fields;
    let cap = MAX_BINS_PER_STORE as u64;
    let at = r.pos;
    let runs = r.varint(runs_field)?;
    if runs > cap {
        return Err(SketchError::Invalid {
            offset: at,
            field: runs_field,
            found: runs.to_string(),
            expected: "a store holds at most 4096 buckets, so at most 4096 runs",
        });
    }
    let mut next: i64 = 0;
    for run in 0..runs {
        let at = r.pos;
        let start = if run == 0 {
            let start = unzigzag(r.varint(start_field)?);
            if !(lowest..=highest).contains(&start) {
                return Err(SketchError::Invalid {
                    offset: at,
                    field: start_field,
                    found: start.to_string(),
                    expected: "indices must map to magnitudes from 2.2e-308 to 1.8e308 at this α",
                });
            }
            start
        } else {
            let gap = r.varint(gap_field)?;
            i64::try_from(gap)
                .ok()
                .and_then(|gap| next.checked_add(gap))
                .filter(|start| *start <= highest)
                .ok_or_else(|| SketchError::Invalid {
                    offset: at,
                    field: gap_field,
                    found: gap.to_string(),
                    expected: "runs must stay below the index of 1.8e308 at this α",
                })?
        };
        let at = r.pos;
        let len = r.varint(len_field)?;
        let first = if run == 0 { start } else { store.offset };
        // The run must be non-empty, end at or below `highest` and keep the store's whole
        // range within the cap.
        let end = i64::try_from(len)
            .ok()
            .filter(|len| *len >= 1)
            .and_then(|len| start.checked_add(len - 1))
            .filter(|end| *end <= highest && end.saturating_sub(first) < cap as i64)
            .ok_or_else(|| SketchError::Invalid {
                offset: at,
                field: len_field,
                found: len.to_string(),
                expected: "runs must hold at least 1 bucket and the store at most 4096 in all",
            })?;
        if run == 0 {
            store.offset = start;
        }
        // Empty buckets between runs, then the run itself.
        while store.highest_index().is_some_and(|hi| hi < start - 1) {
            store.counts.push_back(0);
        }
        if packed {
            // `end - start < cap`, checked above.
            r.packed_counts(count_field, (end - start + 1) as usize, &mut store.counts)?;
        } else {
            for _ in start..=end {
                let count = r.varint(count_field)?;
                store.counts.push_back(count);
            }
        }
        next = end + 1;
    }
    // Drop empty buckets at both ends so that `iter`, collapse and `encode` see a tight range.
    while store.counts.front() == Some(&0) {
        store.counts.pop_front();
        store.offset += 1;
    }
    while store.counts.back() == Some(&0) {
        store.counts.pop_back();
    }
    Ok(())
}

/// A cursor over the bytes being decoded.
pub(super) struct Reader<'a> {
    /// The whole input.
    pub(super) bytes: &'a [u8],
    /// Next byte to read.
    pub(super) pos: usize,
}

impl Reader<'_> {
    /// Reads one byte of `field`.
    pub(super) fn byte(&mut self, field: &'static str) -> Result<u8, SketchError> {
        let byte = self
            .bytes
            .get(self.pos)
            .copied()
            .ok_or(SketchError::Truncated {
                offset: self.bytes.len(),
                field,
            })?;
        self.pos += 1;
        Ok(byte)
    }

    /// Reads a little-endian `f64` for `field`.
    pub(super) fn f64(&mut self, field: &'static str) -> Result<f64, SketchError> {
        let mut raw = [0u8; 8];
        for byte in &mut raw {
            *byte = self.byte(field)?;
        }
        Ok(f64::from_le_bytes(raw))
    }

    /// Reads a width byte (1..=64) and `len` bit-packed counts (see [`encode_store_packed`])
    /// for `field`, appending them to `counts`. The padding bits of the last byte must be 0.
    pub(super) fn packed_counts(
        &mut self,
        field: &'static str,
        len: usize,
        counts: &mut VecDeque<u64>,
    ) -> Result<(), SketchError> {
        let at = self.pos;
        let w = u32::from(self.byte(field)?);
        if !(1..=64).contains(&w) {
            return Err(SketchError::Invalid {
                offset: at,
                field,
                found: format!("bit width {w}"),
                expected: "bucket counts are packed 1 to 64 bits wide",
            });
        }
        let bytes = (len * w as usize).div_ceil(8);
        let Some(packed) = self.bytes.get(self.pos..self.pos + bytes) else {
            return Err(SketchError::Truncated {
                offset: self.bytes.len(),
                field,
            });
        };
        let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
        let mut acc: u128 = 0;
        let mut bits = 0u32;
        let mut next = packed.iter();
        for _ in 0..len {
            while bits < w {
                // `bytes` covers `len · w` bits, so a byte is always there.
                acc |= u128::from(next.next().copied().unwrap_or(0)) << bits;
                bits += 8;
            }
            counts.push_back(acc as u64 & mask);
            acc >>= w;
            bits -= w;
        }
        if acc != 0 {
            return Err(SketchError::Invalid {
                offset: self.pos + bytes - 1,
                field,
                found: "non-zero padding bits".to_string(),
                expected: "the bits after the last packed count must be 0",
            });
        }
        self.pos += bytes;
        Ok(())
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes for `field`.
    pub(super) fn varint(&mut self, field: &'static str) -> Result<u64, SketchError> {
        let at = self.pos;
        let rest = self.bytes.get(at..).unwrap_or_default();
        match varint::read(rest) {
            Ok((value, after)) => {
                self.pos = self.bytes.len() - after.len();
                Ok(value)
            }
            Err(VarintError::Truncated) => Err(SketchError::Truncated {
                offset: self.bytes.len(),
                field,
            }),
            Err(VarintError::TooLong | VarintError::Overflow) => Err(SketchError::Invalid {
                offset: at,
                field,
                found: "a varint longer than 64 bits".to_string(),
                expected: "varints must fit in 64 bits (at most 10 bytes)",
            }),
        }
    }
}
