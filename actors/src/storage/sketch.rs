//! `DdSketch`: the mergeable quantile sketch kept with every rollup row, and its compact binary
//! encoding (the rollup's BLOB column).
//!
//! This is an own implementation of DDSketch (Masson, Rim, Lee, VLDB 2019, "DDSketch: A fast
//! and fully-mergeable quantile sketch with relative-error guarantees"), logarithmic mapping,
//! dense stores, collapsing-lowest variant.
//!
//! # Definitions
//!
//! - **Mapping.** With relative accuracy `α` and `γ = (1 + α) / (1 − α)`, a value `x` with
//!   `|x| ≥ MIN_INDEXABLE` (the smallest normal `f64`, about 2.2e-308) goes to bucket
//!   `i = ⌈ln|x| / ln γ⌉` of the positive or the negative store by its sign; bucket `i` holds
//!   the magnitudes in `(γ^(i−1), γ^i]`. Values with `|x| < MIN_INDEXABLE` (zero, `-0.0` and
//!   subnormals) are counted in the zero bucket. A bucket is represented by
//!   `γ^i · (1 − α) = 2γ^i / (γ + 1)`, which is within relative error `α` of every magnitude in
//!   the bucket.
//! - **Quantile.** For `n` values and `q ∈ [0, 1]`, `quantile(q)` estimates the order statistic
//!   `x_(k)` (0-based, sorted ascending) with rank `k = ⌊q · (n − 1)⌋`, the expression evaluated
//!   in `f64` exactly as written: the *lower* rank, no interpolation. The estimate is the
//!   representative of the bucket holding the `k`-th value (the walk goes from the most negative
//!   bucket up through zero to the largest positive one), clamped into the exact `[min, max]`.
//!   Rank 0 returns the exact minimum and rank `n − 1` the exact maximum.
//! - **Guarantee.** `|quantile(q) − x_(k)| ≤ α · |x_(k)|` (plus a few ulps of rounding in `ln`
//!   and `exp`), for every `q` and for merged sketches alike, because merging adds bucket counts
//!   exactly. An exact zero is returned as exactly 0. Two exceptions, both documented where they
//!   happen: subnormal values are counted as zero (relative error 100 % on values below
//!   2.2e-308), and once a store has collapsed (below) the lowest ranks lose the guarantee.
//! - **Bounded size.** Each store keeps at most [`MAX_BINS_PER_STORE`] contiguous buckets. When
//!   the data spans more, the buckets of the smallest values are merged into the lowest kept one
//!   (the paper's collapsing variant): the smallest positive magnitudes in the positive store,
//!   the largest magnitudes (most negative values) in the negative store. So only low ranks
//!   degrade (the lowest of the positive values, or the most negative values; their estimate
//!   becomes too high), the exact min and max stay, and only when one sign's magnitudes span
//!   more than `γ^4096`: a factor of about 6·10^17 at the default `α = 0.005`.
//! - **Non-finite input.** NaN and ±inf are refused: `insert` returns `false` and nothing
//!   changes; the caller counts them (the rollup keeps a `nan_count`).
//!
//! # Default accuracy and sizes
//!
//! [`DEFAULT_ALPHA`] is 0.005, half the 1 % the rollups promise, so the promise holds with a
//! wide margin over rounding. Bucket width is then about 1 % (`ln γ ≈ 0.01`): an hour of 1 Hz
//! CPU-like data (20 % ± 5) encodes to about 250 bytes (about 190 buckets), a day of it to
//! about 500 bytes, and an hour of RSS-like data (512 MiB ± 1 MiB) to 35 bytes. α = 0.01
//! would take about 60 % of that.
//!
//! # Encoding (format version 2; version 1 is still read)
//!
//! All integers are LEB128 varints, signed ones zigzag-encoded, floats are 8 bytes little endian:
//! `version (1 byte, 2) · flags (1 byte) · [α (f64), only when flag bit 0 is set, i.e. α is not
//! the default] · zero count · positive store · negative store`. A store is `number of runs`,
//! then per run `start` (zigzag absolute index for the first run, for later runs the count of
//! empty buckets skipped since the previous run), `length`, a bit width `w` (1 byte, 1..=64) and
//! the run's `length` bucket counts packed `w` bits each, least significant bit first, in
//! `⌈length · w / 8⌉` bytes (padding bits 0). A stretch of empty buckets starts a new run when
//! its packed zeros would cost more than about 3 bytes. The exact minimum and maximum are not
//! encoded: every sketch stored is a rollup's, whose row holds them, and
//! [`DdSketch::quantile_within`] takes them from there; a decoded sketch alone uses its lowest
//! and highest bucket's representatives (within α) instead.
//!
//! Version 1 (rollup rows written before): `version (1) · α (f64) · zero count · positive store ·
//! negative store · [min (f64) · max (f64), only when the count is not 0]`, with each bucket
//! count a varint and runs split at gaps of 3 or more empty buckets. Version 2 saves the α and
//! the bounds (24 bytes) and, for the few-values-per-bucket sketches of sparse series, about
//! half of the counts' bytes (a day of 5-minute NAB samples: 116 → 72 bytes on average).
//!
//! [`DdSketch::decode`] checks every field, never allocates more than a capped store, never
//! panics, and names the first field that is wrong.

use std::collections::VecDeque;

use super::varint::{self, unzigzag, zigzag, VarintError};

/// Default relative accuracy: estimates are within 0.5 % of the exact order statistic.
pub(crate) const DEFAULT_ALPHA: f64 = 0.005;

/// Smallest accepted relative accuracy. Below it buckets are so narrow that a capped store spans
/// less than a factor 1.01 and `γ` gets too close to 1 for `f64`.
pub(crate) const MIN_ALPHA: f64 = 1e-6;

/// Most buckets one store (positive or negative) keeps before collapsing its lowest ones.
pub(crate) const MAX_BINS_PER_STORE: usize = 4096;

/// Smallest magnitude that gets its own bucket; smaller ones (zero, subnormals) count as zero.
pub(crate) const MIN_INDEXABLE: f64 = f64::MIN_POSITIVE;

/// Version byte that opens every encoding this build writes.
pub(crate) const FORMAT_VERSION: u8 = 2;

/// The first format version, still read (rollup rows written before version 2).
pub(crate) const FORMAT_VERSION_1: u8 = 1;

/// Version 2 flag bit: a relative accuracy other than [`DEFAULT_ALPHA`] follows as an `f64`.
const FLAG_CUSTOM_ALPHA: u8 = 1;

/// Everything that can go wrong building, merging or decoding a [`DdSketch`].
///
/// Messages name the value at fault and say what would have been accepted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SketchError {
    /// The relative accuracy is not a number in `[MIN_ALPHA, 1)`.
    #[error(
        "invalid DDSketch relative accuracy α = {alpha}: it must be a number from {:e} up to \
         (but excluding) 1; the default is {}",
        MIN_ALPHA,
        DEFAULT_ALPHA
    )]
    InvalidAlpha {
        /// The value given.
        alpha: f64,
    },

    /// Two sketches with different relative accuracy cannot be merged.
    #[error(
        "cannot merge DDSketches of different relative accuracy: this one has α = {ours}, the \
         other α = {theirs}; only sketches built with the same α merge"
    )]
    AlphaMismatch {
        /// The receiver's α.
        ours: f64,
        /// The argument's α.
        theirs: f64,
    },

    /// The encoding ends before a field is complete.
    #[error(
        "cannot decode a DDSketch: the input ends at byte {offset} in the middle of {field}; \
         it was cut short"
    )]
    Truncated {
        /// Length of the input.
        offset: usize,
        /// The field being read.
        field: &'static str,
    },

    /// The encoding starts with a version this build does not know.
    #[error(
        "cannot decode a DDSketch: format version {found} is unknown; this build reads versions \
         {} and {}",
        FORMAT_VERSION_1,
        FORMAT_VERSION
    )]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },

    /// A field of the encoding holds an impossible value.
    #[error("cannot decode a DDSketch: {field} at byte {offset} is {found}, but {expected}")]
    Invalid {
        /// Where the field starts.
        offset: usize,
        /// The field.
        field: &'static str,
        /// The value found, printed.
        found: String,
        /// What would have been accepted.
        expected: &'static str,
    },

    /// Bytes follow a complete sketch.
    #[error(
        "cannot decode a DDSketch: {extra} unexpected byte(s) follow the end of the sketch at \
         byte {offset}; the input must hold exactly one sketch"
    )]
    TrailingBytes {
        /// Where the sketch ended.
        offset: usize,
        /// How many bytes follow.
        extra: usize,
    },
}

/// Which end of its index range a store sacrifices when it would exceed
/// [`MAX_BINS_PER_STORE`] buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Collapse {
    /// Merge the lowest indices (smallest magnitudes): the positive store.
    Lowest,
    /// Merge the highest indices (largest magnitudes, i.e. most negative values): the negative
    /// store.
    Highest,
}

/// Dense bucket counts over a contiguous index range `offset .. offset + counts.len()`.
///
/// Invariant: `counts.len() <= MAX_BINS_PER_STORE`. Interior buckets may be 0.
#[derive(Clone, Debug)]
struct Store {
    /// The end sacrificed when the range would exceed the cap.
    collapse: Collapse,
    /// Index of `counts[0]`.
    offset: i64,
    /// Count per bucket; a deque so that growing at either end is amortised O(1).
    counts: VecDeque<u64>,
}

impl Store {
    /// An empty store collapsing at `collapse`.
    fn new(collapse: Collapse) -> Self {
        Store {
            collapse,
            offset: 0,
            counts: VecDeque::new(),
        }
    }

    /// Adds `n` to bucket `index` (or to the bucket it collapses into).
    fn add(&mut self, index: i64, n: u64) {
        if n == 0 {
            return;
        }
        let index = self.make_room(index);
        let slot = index.saturating_sub(self.offset);
        if let Some(count) = usize::try_from(slot)
            .ok()
            .and_then(|slot| self.counts.get_mut(slot))
        {
            *count = count.saturating_add(n);
        }
    }

    /// Grows (and if needed collapses) the range so that it holds `index`, and returns the
    /// index the value must be counted in: `index` itself, or the lowest kept bucket when it
    /// falls into the collapsed end.
    fn make_room(&mut self, index: i64) -> i64 {
        let cap = MAX_BINS_PER_STORE as i64;
        let Some(hi) = self.highest_index() else {
            self.offset = index;
            self.counts.push_back(0);
            return index;
        };
        let lo = self.offset;
        if index < lo {
            if hi - index < cap {
                self.extend_front(index);
                return index;
            }
            match self.collapse {
                Collapse::Lowest => {
                    let target = hi - cap + 1;
                    self.extend_front(target);
                    target
                }
                Collapse::Highest => {
                    self.fold_back_into(index + cap - 1);
                    self.extend_front(index);
                    index
                }
            }
        } else if index > hi {
            if index - lo < cap {
                self.extend_back(index);
                return index;
            }
            match self.collapse {
                Collapse::Lowest => {
                    self.fold_front_into(index - cap + 1);
                    self.extend_back(index);
                    index
                }
                Collapse::Highest => {
                    let target = lo + cap - 1;
                    self.extend_back(target);
                    target
                }
            }
        } else {
            index
        }
    }

    /// Index of the last bucket, `None` when the store has no buckets.
    fn highest_index(&self) -> Option<i64> {
        if self.counts.is_empty() {
            None
        } else {
            Some(self.offset + self.counts.len() as i64 - 1)
        }
    }

    /// Prepends empty buckets down to `index` (callers keep the range within the cap).
    fn extend_front(&mut self, index: i64) {
        while self.offset > index {
            self.counts.push_front(0);
            self.offset -= 1;
        }
    }

    /// Appends empty buckets up to `index` (callers keep the range within the cap).
    fn extend_back(&mut self, index: i64) {
        while self.highest_index().is_some_and(|hi| hi < index) {
            self.counts.push_back(0);
        }
    }

    /// Merges every bucket below `new_lo` into bucket `new_lo`.
    fn fold_front_into(&mut self, new_lo: i64) {
        let mut folded = 0u64;
        while self.offset < new_lo {
            match self.counts.pop_front() {
                Some(count) => {
                    folded = folded.saturating_add(count);
                    self.offset += 1;
                }
                None => break,
            }
        }
        if self.counts.is_empty() {
            self.offset = new_lo;
            self.counts.push_back(0);
        }
        if let Some(front) = self.counts.front_mut() {
            *front = front.saturating_add(folded);
        }
    }

    /// Merges every bucket above `new_hi` into bucket `new_hi`.
    fn fold_back_into(&mut self, new_hi: i64) {
        let mut folded = 0u64;
        while self.highest_index().is_some_and(|hi| hi > new_hi) {
            if let Some(count) = self.counts.pop_back() {
                folded = folded.saturating_add(count);
            }
        }
        if self.counts.is_empty() {
            self.offset = new_hi;
            self.counts.push_back(0);
        }
        if let Some(back) = self.counts.back_mut() {
            *back = back.saturating_add(folded);
        }
    }

    /// The non-empty buckets as `(index, count)`, ascending by index (`.rev()` for descending).
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i64, u64)> + '_ {
        let offset = self.offset;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count != 0)
            .map(move |(slot, count)| (offset + slot as i64, *count))
    }

    /// Sum of the bucket counts (saturating).
    fn total(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |total, count| total.saturating_add(*count))
    }

    /// Adds every bucket of `other`. The range first grows to hold both of `other`'s ends
    /// (the kept end first, so that it moves at most once); then indices that fall in the
    /// collapsed end clamp into the range, and the counts add up in one pass.
    fn merge(&mut self, other: &Store) {
        let Some(other_hi) = other.highest_index() else {
            return;
        };
        let other_lo = other.offset;
        match self.collapse {
            Collapse::Lowest => {
                self.make_room(other_hi);
                self.make_room(other_lo);
            }
            Collapse::Highest => {
                self.make_room(other_lo);
                self.make_room(other_hi);
            }
        }
        let Some(hi) = self.highest_index() else {
            return;
        };
        let lo = self.offset;
        let counts = self.counts.make_contiguous();
        for (index, n) in other.iter() {
            let slot = index.clamp(lo, hi) - lo;
            if let Some(count) = usize::try_from(slot)
                .ok()
                .and_then(|slot| counts.get_mut(slot))
            {
                *count = count.saturating_add(n);
            }
        }
    }
}

/// A DDSketch: a quantile sketch with relative-error guarantee `α` that merges exactly.
///
/// See the module documentation for the mapping, the quantile rank definition and the
/// guarantee. Equality (`==`) compares α, the counts of every non-empty bucket, the zero count
/// and the exact min/max, not the internal layout.
#[derive(Clone, Debug)]
pub(crate) struct DdSketch {
    /// Relative accuracy α.
    alpha: f64,
    /// `ln γ`.
    ln_gamma: f64,
    /// `1 / ln γ`, so that the hot path multiplies.
    inv_ln_gamma: f64,
    /// `ln(1 − α)`: the representative of bucket `i` is `exp(i · ln γ + ln(1 − α))`.
    ln_one_minus_alpha: f64,
    /// Positive values by bucket.
    positive: Store,
    /// Negative values by the bucket of their magnitude.
    negative: Store,
    /// Values with magnitude below [`MIN_INDEXABLE`].
    zero_count: u64,
    /// Values inserted (saturating).
    count: u64,
    /// Exact smallest value inserted; `+inf` while empty.
    min: f64,
    /// Exact largest value inserted; `-inf` while empty.
    max: f64,
}

impl Default for DdSketch {
    /// An empty sketch with [`DEFAULT_ALPHA`].
    fn default() -> Self {
        Self::with_valid_alpha(DEFAULT_ALPHA)
    }
}

/// Equal when α, the counts and every bucket are equal. The minimum and maximum are not
/// compared: format version 2 leaves them to the rollup row, so a decoded sketch holds only
/// stand-ins for them.
impl PartialEq for DdSketch {
    fn eq(&self, other: &Self) -> bool {
        self.alpha.to_bits() == other.alpha.to_bits()
            && self.count == other.count
            && self.zero_count == other.zero_count
            && self.positive.iter().eq(other.positive.iter())
            && self.negative.iter().eq(other.negative.iter())
    }
}

impl DdSketch {
    /// An empty sketch with relative accuracy `alpha`, which must be in `[MIN_ALPHA, 1)`.
    pub(crate) fn new(alpha: f64) -> Result<Self, SketchError> {
        if (MIN_ALPHA..1.0).contains(&alpha) {
            Ok(Self::with_valid_alpha(alpha))
        } else {
            Err(SketchError::InvalidAlpha { alpha })
        }
    }

    /// An empty sketch; `alpha` has been checked.
    fn with_valid_alpha(alpha: f64) -> Self {
        // ln γ = ln(1 + α) − ln(1 − α), computed without forming γ to keep precision for small α.
        let ln_one_minus_alpha = (-alpha).ln_1p();
        let ln_gamma = alpha.ln_1p() - ln_one_minus_alpha;
        DdSketch {
            alpha,
            ln_gamma,
            inv_ln_gamma: 1.0 / ln_gamma,
            ln_one_minus_alpha,
            positive: Store::new(Collapse::Lowest),
            negative: Store::new(Collapse::Highest),
            zero_count: 0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Inserts `v` once. Returns `false`, changing nothing, when `v` is NaN or ±inf.
    pub(crate) fn insert(&mut self, v: f64) -> bool {
        self.insert_n(v, 1)
    }

    /// Inserts `v` `n` times. Returns `false`, changing nothing, when `v` is NaN or ±inf;
    /// `n = 0` changes nothing and returns `true` for a finite `v`.
    pub(crate) fn insert_n(&mut self, v: f64, n: u64) -> bool {
        if !v.is_finite() {
            return false;
        }
        if n == 0 {
            return true;
        }
        let magnitude = v.abs();
        if magnitude < MIN_INDEXABLE {
            self.zero_count = self.zero_count.saturating_add(n);
        } else {
            let index = self.index_of(magnitude);
            if v > 0.0 {
                self.positive.add(index, n);
            } else {
                self.negative.add(index, n);
            }
        }
        self.count = self.count.saturating_add(n);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        true
    }

    /// Adds every value of `other` to this sketch (exact: bucket counts add up).
    ///
    /// Refuses, changing nothing, when the two sketches have different α.
    pub(crate) fn merge(&mut self, other: &DdSketch) -> Result<(), SketchError> {
        if self.alpha.to_bits() != other.alpha.to_bits() {
            return Err(SketchError::AlphaMismatch {
                ours: self.alpha,
                theirs: other.alpha,
            });
        }
        if other.count == 0 {
            return Ok(());
        }
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zero_count = self.zero_count.saturating_add(other.zero_count);
        self.count = self.count.saturating_add(other.count);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        Ok(())
    }

    /// Estimates the order statistic of rank `⌊q · (n − 1)⌋` (0-based, ascending) within
    /// relative error α; see the module documentation. `None` when the sketch is empty or `q` is
    /// not in `[0, 1]`.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        self.quantile_within(q, self.min, self.max)
    }

    /// [`DdSketch::quantile`] with the exact minimum and maximum given by the caller: a
    /// rollup keeps them in its own columns, so a sketch decoded from format version 2 (which
    /// does not repeat them) answers ranks 0 and `n − 1` and clamps exactly through this.
    /// Bounds that are not finite with `min <= max` are replaced by the sketch's own.
    pub(crate) fn quantile_within(&self, q: f64, min: f64, max: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let (min, max) = if min.is_finite() && max.is_finite() && min <= max {
            (min, max)
        } else {
            (self.min, self.max)
        };
        let clamp = |estimate: f64| estimate.max(min).min(max);
        let last = self.count - 1;
        // `as` saturates; a rank past the end (only possible through f64 rounding of huge
        // counts) answers the maximum below.
        let rank = (q * last as f64).floor() as u64;
        if rank == 0 {
            return Some(min);
        }
        if rank >= last {
            return Some(max);
        }
        let mut seen = 0u64;
        for (index, n) in self.negative.iter().rev() {
            seen = seen.saturating_add(n);
            if seen > rank {
                return Some(clamp(-self.value_of(index)));
            }
        }
        seen = seen.saturating_add(self.zero_count);
        if seen > rank {
            return Some(clamp(0.0));
        }
        for (index, n) in self.positive.iter() {
            seen = seen.saturating_add(n);
            if seen > rank {
                return Some(clamp(self.value_of(index)));
            }
        }
        Some(max)
    }

    /// Bucket of a magnitude `≥ MIN_INDEXABLE`: `⌈ln m / ln γ⌉`. Monotone in `m`, so bucket
    /// order is value order.
    fn index_of(&self, magnitude: f64) -> i64 {
        (magnitude.ln() * self.inv_ln_gamma).ceil() as i64
    }

    /// Representative magnitude of bucket `index`: `γ^index · (1 − α)`.
    fn value_of(&self, index: i64) -> f64 {
        (index as f64 * self.ln_gamma + self.ln_one_minus_alpha).exp()
    }

    /// The compact binary encoding (format version [`FORMAT_VERSION`], see the module
    /// documentation).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.push(FORMAT_VERSION);
        if self.alpha.to_bits() == DEFAULT_ALPHA.to_bits() {
            out.push(0);
        } else {
            out.push(FLAG_CUSTOM_ALPHA);
            out.extend_from_slice(&self.alpha.to_le_bytes());
        }
        varint::put(&mut out, self.zero_count);
        encode_store_packed(&mut out, &self.positive);
        encode_store_packed(&mut out, &self.negative);
        out
    }

    /// The format version 1 encoding (full α, varint counts, exact min and max), which this
    /// build still reads; for the tests of old rollup rows.
    #[cfg(test)]
    pub(crate) fn encode_v1(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.push(FORMAT_VERSION_1);
        out.extend_from_slice(&self.alpha.to_le_bytes());
        varint::put(&mut out, self.zero_count);
        encode_store(&mut out, &self.positive);
        encode_store(&mut out, &self.negative);
        if self.count > 0 {
            out.extend_from_slice(&self.min.to_le_bytes());
            out.extend_from_slice(&self.max.to_le_bytes());
        }
        out
    }

    /// Decodes what [`DdSketch::encode`] wrote. Never panics; any other input is refused with
    /// an error naming the first field that is wrong.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, SketchError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.byte("the format version")?;
        if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
            return Err(SketchError::UnknownVersion { found: version });
        }
        let packed = version == FORMAT_VERSION;
        let custom_alpha = if packed {
            let at = r.pos;
            let flags = r.byte("the flags")?;
            if flags & !FLAG_CUSTOM_ALPHA != 0 {
                return Err(SketchError::Invalid {
                    offset: at,
                    field: "the flags",
                    found: format!("{flags:#04x}"),
                    expected: "only bit 0 (a custom α follows) may be set",
                });
            }
            flags & FLAG_CUSTOM_ALPHA != 0
        } else {
            true
        };
        let at = r.pos;
        let alpha = if custom_alpha {
            r.f64("the relative accuracy α")?
        } else {
            DEFAULT_ALPHA
        };
        let mut sketch = DdSketch::new(alpha).map_err(|_| SketchError::Invalid {
            offset: at,
            field: "the relative accuracy α",
            found: format!("{alpha}"),
            expected: "it must be a number from 1e-6 up to (but excluding) 1",
        })?;
        sketch.zero_count = r.varint("the zero count")?;
        let (lowest, highest) = (sketch.index_of(MIN_INDEXABLE), sketch.index_of(f64::MAX));
        decode_store(
            &mut r,
            &mut sketch.positive,
            lowest,
            highest,
            &POSITIVE_FIELDS,
            packed,
        )?;
        decode_store(
            &mut r,
            &mut sketch.negative,
            lowest,
            highest,
            &NEGATIVE_FIELDS,
            packed,
        )?;
        let count = [sketch.positive.total(), sketch.negative.total()]
            .into_iter()
            .try_fold(sketch.zero_count, u64::checked_add)
            .ok_or_else(|| SketchError::Invalid {
                offset: r.pos,
                field: "the total count",
                found: "more than 2^64 - 1".to_string(),
                expected: "bucket and zero counts must add up to at most 2^64 - 1",
            })?;
        sketch.count = count;
        if count > 0 && packed {
            (sketch.min, sketch.max) = sketch.bucket_bounds();
        } else if count > 0 {
            let at = r.pos;
            let min = r.f64("the minimum")?;
            let max = r.f64("the maximum")?;
            if !(min.is_finite() && max.is_finite() && min <= max) {
                return Err(SketchError::Invalid {
                    offset: at,
                    field: "the minimum and maximum",
                    found: format!("min {min}, max {max}"),
                    expected: "both must be finite with min <= max",
                });
            }
            sketch.min = min;
            sketch.max = max;
        }
        if r.pos < bytes.len() {
            return Err(SketchError::TrailingBytes {
                offset: r.pos,
                extra: bytes.len() - r.pos,
            });
        }
        Ok(sketch)
    }
}

impl DdSketch {
    /// Stand-ins for the exact minimum and maximum of a sketch decoded from format version 2:
    /// the representatives of its lowest and highest non-empty buckets (within α of the true
    /// ones), finite and ordered. Rollups answer with their own exact bounds instead
    /// ([`DdSketch::quantile_within`]).
    fn bucket_bounds(&self) -> (f64, f64) {
        let finite = |v: f64| v.clamp(-f64::MAX, f64::MAX);
        let negative = |index: i64| finite(-self.value_of(index));
        let positive = |index: i64| finite(self.value_of(index));
        let lowest = self
            .negative
            .highest_index()
            .map(negative)
            .or((self.zero_count > 0).then_some(0.0))
            .or(self.positive.iter().next().map(|(i, _)| positive(i)));
        let highest = self
            .positive
            .highest_index()
            .map(positive)
            .or((self.zero_count > 0).then_some(0.0))
            .or(self.negative.iter().next().map(|(i, _)| negative(i)));
        match (lowest, highest) {
            (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
            _ => (0.0, 0.0),
        }
    }
}

/// Accessors. Part of the sketch's API (tests, queries and the analyzer read them); the storage
/// code does not need all of them yet, hence the allowance.
#[allow(
    dead_code,
    reason = "API accessors not all used by the storage code yet"
)]
impl DdSketch {
    /// The relative accuracy α.
    pub(crate) fn alpha(&self) -> f64 {
        self.alpha
    }

    /// How many values were inserted (saturating at `u64::MAX`).
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing was inserted.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The exact smallest value inserted, `None` when empty.
    pub(crate) fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The exact largest value inserted, `None` when empty.
    pub(crate) fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Bytes held by the sketch, buckets included (for memory accounting).
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.positive.counts.capacity() + self.negative.counts.capacity())
                * std::mem::size_of::<u64>()
    }
}

#[path = "sketch_encoding.rs"]
mod encoding;
use encoding::*;

#[cfg(test)]
#[path = "sketch_tests.rs"]
pub(crate) mod tests;
