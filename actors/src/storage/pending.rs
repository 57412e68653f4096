//! What the writer flushed into the head log since the last fold, per series, packed.
//!
//! The fold writes head rows from this instead of reading the log back (see `headlog`). At
//! 1,000 daemons that is 18,000 series × 30 s of samples held between two folds: as
//! `(i64, f64)` pairs in doubling vectors it was about 17 MB, two fifths of the writer's
//! heap. Packed (see `packed`), a steady series costs 2 bytes a sample and a noisy one at
//! most 10.

use super::packed::{Packer, Unpacker};
use crate::types::FastMap;

/// One series' samples since the last fold.
#[derive(Debug, Default)]
struct Packed {
    bytes: Vec<u8>,
    packer: Packer,
}

impl Packed {
    fn push(&mut self, ts: i64, value: f64) {
        self.packer.push(&mut self.bytes, ts, value);
    }

    /// Decodes every sample into `out` (after what it holds) and empties itself, keeping
    /// its allocation.
    fn drain_into(&mut self, out: &mut Vec<(i64, f64)>) {
        let mut reader = Unpacker::new(&self.bytes, 0);
        while !reader.is_empty() {
            // The bytes were written above and never left memory: a read cannot fail, and
            // if it did the remaining samples are dropped rather than misread.
            match reader.next_sample() {
                Ok(sample) => out.push(sample),
                Err(_) => break,
            }
        }
        self.bytes.clear();
        self.packer = Packer::default();
    }
}

/// What the writer flushed into the log since the last fold, kept in memory per series so
/// a fold writes head rows straight from it instead of reading and decoding the log back.
///
/// The series sit in a vector in the order they were first added; each caller keeps its
/// series' slot as a hint. The writer adds its series in the same order every flush, so a
/// flush walks the vector front to back instead of missing the cache on a random hash
/// bucket per series (at 1,000 daemons that miss was a third of the writer's flush).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    slots: Vec<(i64, Packed)>,
    /// Slot by series, for the adds whose hint is stale.
    index: FastMap<i64, u32>,
    samples: u64,
}

impl Pending {
    /// Notes samples of `series` just committed to the log. `hint` is where the caller
    /// last found the series: used when it still holds the series, else set to its slot.
    pub(crate) fn add(&mut self, hint: &mut u32, series: i64, samples: &[(i64, f64)]) {
        if samples.is_empty() {
            return;
        }
        let slot = match self.slots.get(*hint as usize) {
            Some((id, _)) if *id == series => *hint as usize,
            _ => {
                let slot = match self.index.get(&series) {
                    Some(&slot) => slot as usize,
                    None => {
                        let slot = self.slots.len();
                        if slot == self.slots.capacity() {
                            // Grown by a quarter, not doubled: at 1,000 daemons the 34,000
                            // series would sit in 65,536 slots of 56 bytes (1.7 MB empty).
                            self.slots.reserve_exact((slot / 4).max(64));
                        }
                        self.slots.push((series, Packed::default()));
                        self.index.insert(series, slot as u32);
                        slot
                    }
                };
                *hint = slot as u32;
                slot
            }
        };
        let packed = &mut self.slots[slot].1;
        for &(ts, value) in samples {
            packed.push(ts, value);
        }
        self.samples += samples.len() as u64;
    }

    /// Samples held, all series together.
    pub(crate) fn samples(&self) -> u64 {
        self.samples
    }

    /// Calls `f` with each series holding samples and its samples in the order they were
    /// added, then forgets them. Keeps the allocations of series that had samples (they
    /// will have more) and drops those of series that had none since the last call.
    pub(crate) fn drain_each<E>(
        &mut self,
        mut f: impl FnMut(i64, &mut Vec<(i64, f64)>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut scratch = Vec::new();
        let mut result = Ok(());
        let before = self.slots.len();
        self.slots.retain_mut(|(series, packed)| {
            if packed.bytes.is_empty() {
                return false;
            }
            scratch.clear();
            packed.drain_into(&mut scratch);
            if result.is_ok() {
                result = f(*series, &mut scratch);
            }
            true
        });
        if self.slots.len() != before {
            self.index.clear();
            for (slot, (series, _)) in self.slots.iter().enumerate() {
                self.index.insert(*series, slot as u32);
            }
        }
        self.samples = 0;
        result
    }

    /// Bytes held for the samples (the packed streams' capacity), for the memory tests.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.iter().map(|(_, p)| p.bytes.capacity()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Pending {
        /// [`Pending::add`] with a hint that is never right (the slower path).
        fn add_unhinted(&mut self, series: i64, samples: &[(i64, f64)]) {
            self.add(&mut { u32::MAX }, series, samples);
        }
    }

    fn drained(p: &mut Pending) -> Vec<(i64, Vec<(i64, u64)>)> {
        let mut out = Vec::new();
        p.drain_each(|id, s| {
            out.push((id, s.iter().map(|&(t, v)| (t, v.to_bits())).collect()));
            Ok::<_, ()>(())
        })
        .unwrap();
        out.sort();
        out
    }

    /// Every sample reads back bit for bit: odd floats, NaN payloads, -0.0, extreme and
    /// out-of-order timestamps, repeats; across several adds and two drains.
    #[test]
    fn samples_read_back_bit_for_bit() {
        let odd = super::super::packed::ODD_SAMPLES;
        let steady: Vec<(i64, f64)> = (0..100)
            .map(|i| {
                (
                    1_700_000_000_000 + i * 1_000 + (i % 3),
                    (i % 7) as f64 * 1.5,
                )
            })
            .collect();
        let mut p = Pending::default();
        for round in 0..2 {
            p.add_unhinted(7, &odd[..4]);
            p.add_unhinted(1 << 40, &steady);
            p.add_unhinted(7, &odd[4..]);
            p.add_unhinted(9, &[]);
            assert_eq!(
                p.samples(),
                (odd.len() + steady.len()) as u64,
                "round {round}"
            );
            let got = drained(&mut p);
            let bits = |s: &[(i64, f64)]| s.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            assert_eq!(got, vec![(7, bits(&odd)), (1 << 40, bits(&steady))]);
            assert_eq!(p.samples(), 0);
        }
    }

    /// Hints that are right, stale (another series' slot) or out of range all put the
    /// samples in their own series.
    #[test]
    fn hints_right_or_stale_keep_series_apart() {
        let mut p = Pending::default();
        let mut hints = [u32::MAX; 3];
        for round in 0..4i64 {
            for (hint, id) in hints.iter_mut().zip([10i64, 20, 30]) {
                p.add(hint, id, &[(round, id as f64)]);
            }
            // Stale: each now points at another series' slot.
            hints.rotate_left(1);
        }
        let want: Vec<(i64, Vec<(i64, u64)>)> = [10i64, 20, 30]
            .iter()
            .map(|&id| (id, (0..4).map(|t| (t, (id as f64).to_bits())).collect()))
            .collect();
        assert_eq!(drained(&mut p), want);
    }

    /// A steady series costs about two bytes a sample, not sixteen.
    /// The series' slots grow by a quarter: 34,000 series (1,000 daemons) sit in fewer
    /// than 43,000 slots, not the 65,536 doubling would give.
    #[test]
    fn slots_grow_by_a_quarter() {
        let mut p = Pending::default();
        for series in 0..34_000 {
            p.add_unhinted(series, &[(1_000, 1.0)]);
        }
        let (len, capacity) = (p.slots.len(), p.slots.capacity());
        assert_eq!(len, 34_000);
        assert!(capacity <= len + len / 4 + 64, "{capacity} slots for {len}");
    }

    #[test]
    fn a_steady_series_packs_small() {
        let mut p = Pending::default();
        for i in 0..30 {
            p.add_unhinted(1, &[(1_700_000_000_000 + i * 1_000 + (i % 5), 42.0)]);
        }
        let bytes: usize = p.slots.iter().map(|(_, s)| s.bytes.len()).sum();
        assert!(bytes <= 2 * 30 + 16, "{bytes} bytes for 30 samples");
        // Idle series are dropped at the second drain, active ones keep their allocation.
        drained(&mut p);
        assert!(p.heap_bytes() > 0);
        drained(&mut p);
        assert_eq!(p.heap_bytes(), 0);
    }

    /// An error from the callback is returned, and everything is still forgotten (the caller
    /// rolls back and folds from the log).
    #[test]
    fn an_error_is_returned_and_everything_forgotten() {
        let mut p = Pending::default();
        p.add_unhinted(1, &[(1, 1.0)]);
        p.add_unhinted(2, &[(1, 2.0)]);
        let mut calls = 0;
        let r = p.drain_each(|_, _| {
            calls += 1;
            Err("disk")
        });
        assert_eq!(r, Err("disk"));
        assert_eq!(calls, 1, "no call after the first error");
        assert_eq!(p.samples(), 0);
        assert!(drained(&mut p).is_empty());
    }
}
