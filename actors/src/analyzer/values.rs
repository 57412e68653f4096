//! The values of a series' short window: runs of equal values while the series holds
//! steady, plain `f32`s once it varies.
//!
//! Many watched series hold one value for minutes (an idle daemon's CPU increase, its
//! thread and descriptor counts, its resident memory between allocations): 601 samples at
//! 1 s are then one run of 8 bytes instead of 2.4 KB. Every [`CHECK_EVERY`] pushes a window
//! checks its form: runs that outnumber half its values (a run takes twice a plain value's
//! 4 bytes) turn plain, and a plain window whose runs are at most a quarter of its values
//! turns back into runs. Between checks a push is only the push. Values are compared and
//! kept by their bits, so every value reads back exactly (NaN payloads and the sign of
//! zero included) in either form.

use std::collections::VecDeque;

/// A window checks whether the other form would be smaller after this many pushes.
const CHECK_EVERY: u16 = 64;

/// Fewest runs at which a window may turn plain (below it, runs are never the larger).
const MIN_RUNS_TO_PLAIN: usize = 8;

/// One value repeated `count` times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Run {
    bits: u32,
    count: u32,
}

/// A window's values, oldest first.
#[derive(Clone, Debug)]
pub(super) enum Values {
    /// Runs of equal values; `pushes` counts pushes since the form was last checked.
    Runs { runs: VecDeque<Run>, pushes: u16 },
    /// One `f32` a value; `pushes` as for runs.
    Plain { values: VecDeque<f32>, pushes: u16 },
}

impl Default for Values {
    fn default() -> Self {
        Values::Runs {
            runs: VecDeque::new(),
            pushes: 0,
        }
    }
}

impl Values {
    /// Values held.
    pub(super) fn len(&self) -> usize {
        match self {
            Values::Runs { runs, .. } => runs.iter().map(|r| r.count as usize).sum(),
            Values::Plain { values, .. } => values.len(),
        }
    }

    /// Makes room for `more` values when plain (runs grow as they come).
    pub(super) fn reserve_exact(&mut self, more: usize) {
        if let Values::Plain { values, .. } = self {
            values.reserve_exact(more);
        }
    }

    /// Bytes held by the buffer.
    pub(super) fn memory_bytes(&self) -> usize {
        match self {
            Values::Runs { runs, .. } => runs.capacity() * std::mem::size_of::<Run>(),
            Values::Plain { values, .. } => values.capacity() * std::mem::size_of::<f32>(),
        }
    }

    /// Forgets every value (and gives the buffer back).
    pub(super) fn clear(&mut self) {
        *self = Values::default();
    }

    /// Drops the oldest value.
    pub(super) fn pop_front(&mut self) {
        match self {
            Values::Runs { runs, .. } => {
                if let Some(front) = runs.front_mut() {
                    front.count -= 1;
                    if front.count == 0 {
                        runs.pop_front();
                    }
                }
            }
            Values::Plain { values, .. } => {
                values.pop_front();
            }
        }
    }

    /// Adds a value after the others; `room` is how many values a plain buffer made now
    /// should have room for.
    pub(super) fn push_back(&mut self, value: f32, room: usize) {
        let bits = value.to_bits();
        let pushes = match self {
            Values::Runs { runs, pushes } => {
                push_run(runs, bits);
                pushes
            }
            Values::Plain { values, pushes } => {
                values.push_back(value);
                pushes
            }
        };
        *pushes += 1;
        if *pushes < CHECK_EVERY {
            return;
        }
        *pushes = 0;
        let turn = match self {
            Values::Runs { runs, .. } => {
                runs.len() >= MIN_RUNS_TO_PLAIN && runs.len() * 2 > self.len()
            }
            Values::Plain { values, .. } => count_runs(values) * 4 <= values.len(),
        };
        if turn {
            *self = self.turned(room);
        }
    }

    /// The same values in the other form.
    fn turned(&self, room: usize) -> Values {
        match self {
            Values::Runs { .. } => {
                let mut values = VecDeque::with_capacity(room.max(self.len()));
                values.extend(self.iter());
                Values::Plain { values, pushes: 0 }
            }
            Values::Plain { values, .. } => {
                let mut runs = VecDeque::with_capacity(count_runs(values));
                for v in values {
                    push_run(&mut runs, v.to_bits());
                }
                Values::Runs { runs, pushes: 0 }
            }
        }
    }

    /// The values as runs `(value, count)`, oldest first, when they are held as runs.
    pub(super) fn runs(&self) -> Option<impl Iterator<Item = (f32, u32)> + '_> {
        match self {
            Values::Runs { runs, .. } => {
                Some(runs.iter().map(|r| (f32::from_bits(r.bits), r.count)))
            }
            Values::Plain { .. } => None,
        }
    }

    /// The values, oldest first.
    pub(super) fn iter(&self) -> ValuesIter<'_> {
        let form = match self {
            Values::Runs { runs, .. } => IterForm::Runs {
                runs: runs.iter(),
                current: (0, 0),
            },
            Values::Plain { values, .. } => IterForm::Plain(values.iter()),
        };
        ValuesIter {
            left: self.len(),
            form,
        }
    }
}

/// Appends one value to runs.
fn push_run(runs: &mut VecDeque<Run>, bits: u32) {
    match runs.back_mut() {
        Some(back) if back.bits == bits => back.count += 1,
        _ => runs.push_back(Run { bits, count: 1 }),
    }
}

/// How many runs of equal values `values` holds.
fn count_runs(values: &VecDeque<f32>) -> usize {
    let mut runs = 0;
    let mut prev = None;
    for v in values {
        let bits = v.to_bits();
        if prev != Some(bits) {
            runs += 1;
            prev = Some(bits);
        }
    }
    runs
}

/// Iterator over [`Values`], oldest first.
#[derive(Clone)]
pub(super) struct ValuesIter<'a> {
    /// Values not yet read.
    left: usize,
    form: IterForm<'a>,
}

#[derive(Clone)]
enum IterForm<'a> {
    Runs {
        runs: std::collections::vec_deque::Iter<'a, Run>,
        /// The run being read and how many of its values are left.
        current: (u32, u32),
    },
    Plain(std::collections::vec_deque::Iter<'a, f32>),
}

impl Iterator for ValuesIter<'_> {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        let value = match &mut self.form {
            IterForm::Runs { runs, current } => {
                while current.1 == 0 {
                    let run = runs.next()?;
                    *current = (run.bits, run.count);
                }
                current.1 -= 1;
                f32::from_bits(current.0)
            }
            IterForm::Plain(it) => *it.next()?,
        };
        self.left -= 1;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ValuesIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value reads back bit for bit through pushes, pops and both forms, against a
    /// plain list.
    #[test]
    fn values_read_back_exactly() {
        let specials = [
            0.0f32,
            -0.0,
            f32::NAN,
            f32::from_bits(0x7fc0_1234),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            1.5,
        ];
        for seed in [7, 8] {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut v = Values::default();
            let mut truth: VecDeque<f32> = VecDeque::new();
            let (mut was_plain, mut was_runs) = (false, false);
            for i in 0..3_000 {
                // Steady stretches of 250 and noisy ones, so the window changes form both
                // ways.
                let value = if (i / 500) % 2 == 0 {
                    specials[(i / 250) % specials.len()]
                } else {
                    specials[rng.usize(..specials.len())]
                };
                v.push_back(value, 16);
                truth.push_back(value);
                if truth.len() > 601 {
                    v.pop_front();
                    truth.pop_front();
                }
                if rng.usize(..50) == 0 {
                    v.pop_front();
                    truth.pop_front();
                }
                was_plain |= matches!(v, Values::Plain { .. });
                was_runs |= matches!(v, Values::Runs { .. }) && v.len() > 100;
                assert_eq!(v.len(), truth.len());
                let got: Vec<u32> = v.iter().map(f32::to_bits).collect();
                let want: Vec<u32> = truth.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "after {i} pushes, seed {seed}");
            }
            assert!(was_plain && was_runs, "seed {seed}: both forms seen");
        }
    }

    /// A steady window of 601 values takes one run; a noisy one turns plain; it turns back
    /// into runs once steady again.
    #[test]
    fn steady_windows_take_one_run() {
        let mut v = Values::default();
        for _ in 0..601 {
            v.push_back(3.0, 16);
        }
        assert!(v.memory_bytes() <= 64, "{} bytes", v.memory_bytes());
        for i in 0..601 {
            v.pop_front();
            v.push_back(i as f32, 620);
        }
        assert!(matches!(v, Values::Plain { .. }));
        for _ in 0..601 {
            v.pop_front();
            v.push_back(7.0, 620);
        }
        assert!(matches!(v, Values::Runs { .. }));
        assert_eq!(v.len(), 601);
        assert!(v.iter().all(|x| x == 7.0));
    }
}
