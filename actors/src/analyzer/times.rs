//! The sample times of a series' short window, in 1 byte a sample while they allow it.
//!
//! A watched series is sampled at a steady pace, so each time is stored as its step from the
//! one before: as the step's difference from the series' nominal step (its second sample's)
//! in an `i8` of milliseconds while it is within ±127 ms of it (a steady series with timer
//! jitter), else in a `u16` of milliseconds (up to 65.5 s). A step that does not fit that
//! either (a longer gap, or a time earlier than the one before) switches the window to
//! `u32` offsets from a base (49 days of range). A window that widens stays wide until it
//! is next empty. Times read back exactly in every form.

use std::collections::VecDeque;

use crate::types::TimestampMs;

/// Sample times, oldest first.
#[derive(Clone, Debug)]
pub(super) enum Times {
    /// Every step is within ±127 ms of `nominal`: the oldest time, the newest, and per
    /// sample its step minus `nominal` (ignored for the oldest). `nominal` is 0 until the
    /// second sample sets it.
    Jitter {
        first: TimestampMs,
        last: TimestampMs,
        nominal: u16,
        steps: VecDeque<i8>,
    },
    /// Every step fits a `u16`: the oldest time, the newest, and per sample its step from
    /// the one before (0 for the oldest).
    Steps {
        first: TimestampMs,
        last: TimestampMs,
        steps: VecDeque<u16>,
    },
    /// Offsets from a base.
    Offsets {
        base: TimestampMs,
        offsets: VecDeque<u32>,
    },
}

impl Default for Times {
    fn default() -> Self {
        Times::Jitter {
            first: 0,
            last: 0,
            nominal: 0,
            steps: VecDeque::new(),
        }
    }
}

impl Times {
    /// Times held.
    pub(super) fn len(&self) -> usize {
        match self {
            Times::Jitter { steps, .. } => steps.len(),
            Times::Steps { steps, .. } => steps.len(),
            Times::Offsets { offsets, .. } => offsets.len(),
        }
    }

    /// Room before the buffer grows.
    pub(super) fn capacity(&self) -> usize {
        match self {
            Times::Jitter { steps, .. } => steps.capacity(),
            Times::Steps { steps, .. } => steps.capacity(),
            Times::Offsets { offsets, .. } => offsets.capacity(),
        }
    }

    /// Makes room for `more` times.
    pub(super) fn reserve_exact(&mut self, more: usize) {
        match self {
            Times::Jitter { steps, .. } => steps.reserve_exact(more),
            Times::Steps { steps, .. } => steps.reserve_exact(more),
            Times::Offsets { offsets, .. } => offsets.reserve_exact(more),
        }
    }

    /// Bytes held by the buffer.
    pub(super) fn memory_bytes(&self) -> usize {
        match self {
            Times::Jitter { steps, .. } => steps.capacity(),
            Times::Steps { steps, .. } => steps.capacity() * std::mem::size_of::<u16>(),
            Times::Offsets { offsets, .. } => offsets.capacity() * std::mem::size_of::<u32>(),
        }
    }

    /// The oldest time.
    pub(super) fn front(&self) -> Option<TimestampMs> {
        match self {
            Times::Jitter { first, steps, .. } => (!steps.is_empty()).then_some(*first),
            Times::Steps { first, steps, .. } => (!steps.is_empty()).then_some(*first),
            Times::Offsets { base, offsets } => offsets.front().map(|&o| base + i64::from(o)),
        }
    }

    /// Drops the oldest time.
    pub(super) fn pop_front(&mut self) {
        match self {
            Times::Jitter {
                first,
                nominal,
                steps,
                ..
            } => {
                steps.pop_front();
                if let Some(step) = steps.front_mut() {
                    *first += i64::from(*nominal) + i64::from(*step);
                    *step = 0;
                }
            }
            Times::Steps { first, steps, .. } => {
                steps.pop_front();
                if let Some(step) = steps.front_mut() {
                    *first += i64::from(*step);
                    *step = 0;
                }
            }
            Times::Offsets { offsets, .. } => {
                offsets.pop_front();
            }
        }
    }

    /// Adds `ts` as the newest time. Returns true when the times held before were dropped:
    /// `ts` lies more than 49 days from one of them, so they cannot share a base.
    pub(super) fn push(&mut self, ts: TimestampMs) -> bool {
        if self.len() == 0 && !matches!(self, Times::Jitter { .. }) {
            *self = Times::default();
        }
        match self {
            Times::Jitter {
                first,
                last,
                nominal,
                steps,
            } => {
                if steps.is_empty() {
                    (*first, *last, *nominal) = (ts, ts, 0);
                    steps.push_back(0);
                    return false;
                }
                if steps.len() == 1 {
                    if let Some(step) = ts.checked_sub(*last).and_then(|d| u16::try_from(d).ok()) {
                        *nominal = step;
                    }
                }
                let dev = ts
                    .checked_sub(*last)
                    .and_then(|d| d.checked_sub(i64::from(*nominal)))
                    .and_then(|d| i8::try_from(d).ok());
                if let Some(dev) = dev {
                    steps.push_back(dev);
                    *last = ts;
                    return false;
                }
                self.widen();
                self.push(ts)
            }
            Times::Steps { first, last, steps } => {
                if steps.is_empty() {
                    (*first, *last) = (ts, ts);
                    steps.push_back(0);
                    return false;
                }
                if let Some(step) = ts.checked_sub(*last).and_then(|d| u16::try_from(d).ok()) {
                    steps.push_back(step);
                    *last = ts;
                    return false;
                }
                self.widen();
                self.push(ts)
            }
            Times::Offsets { base, offsets } => {
                let offset_of = |base: TimestampMs| u32::try_from(ts.checked_sub(base)?).ok();
                if let Some(offset) = offset_of(*base) {
                    offsets.push_back(offset);
                    return false;
                }
                // Move the base to the earliest of the kept times and `ts`.
                let kept = offsets.iter().map(|&o| *base + i64::from(o));
                let (lo, hi) = kept.fold((ts, ts), |(lo, hi), t| (lo.min(t), hi.max(t)));
                let dropped = hi - lo > i64::from(u32::MAX);
                if dropped {
                    offsets.clear();
                    *base = ts;
                } else {
                    for o in offsets.iter_mut() {
                        // In range: every kept time lies within [lo, lo + u32::MAX].
                        *o = u32::try_from(*base + i64::from(*o) - lo).unwrap_or(u32::MAX);
                    }
                    *base = lo;
                }
                offsets.push_back(offset_of(*base).unwrap_or(0));
                dropped
            }
        }
    }

    /// Switches to the next wider form: `u16` steps, or offsets from the oldest time (steps
    /// are never negative, so every time held is at or after it); from jitter straight to
    /// offsets when a held step does not fit a `u16`.
    fn widen(&mut self) {
        if let Times::Jitter {
            first,
            last,
            nominal,
            steps,
        } = self
        {
            let (first, last, nominal) = (*first, *last, i64::from(*nominal));
            let mut wide = VecDeque::with_capacity(steps.capacity());
            let mut fits = true;
            for (i, &dev) in steps.iter().enumerate() {
                let step = if i == 0 { 0 } else { nominal + i64::from(dev) };
                match u16::try_from(step) {
                    Ok(step) => wide.push_back(step),
                    Err(_) => {
                        fits = false;
                        break;
                    }
                }
            }
            if fits {
                *self = Times::Steps {
                    first,
                    last,
                    steps: wide,
                };
                return;
            }
            let mut offsets = VecDeque::with_capacity(steps.capacity());
            let mut at = 0i64;
            for (i, &dev) in steps.iter().enumerate() {
                at += if i == 0 { 0 } else { nominal + i64::from(dev) };
                offsets.push_back(u32::try_from(at).unwrap_or(u32::MAX));
            }
            *self = Times::Offsets {
                base: first,
                offsets,
            };
            return;
        }
        let Times::Steps { first, steps, .. } = self else {
            return;
        };
        let base = *first;
        let mut offsets = VecDeque::with_capacity(steps.capacity());
        let mut at = 0u64;
        for &step in steps.iter() {
            at += u64::from(step);
            // A window of tens of thousands of 65 s steps could pass 49 days: such times
            // are kept at the far end rather than lost (the next push rebases).
            offsets.push_back(u32::try_from(at).unwrap_or(u32::MAX));
        }
        *self = Times::Offsets { base, offsets };
    }

    /// The times, oldest first.
    pub(super) fn iter(&self) -> TimesIter<'_> {
        match self {
            Times::Jitter {
                first,
                nominal,
                steps,
                ..
            } => TimesIter::Jitter {
                at: *first,
                nominal: i64::from(*nominal),
                started: false,
                steps: steps.iter(),
            },
            Times::Steps { first, steps, .. } => TimesIter::Steps {
                at: *first,
                steps: steps.iter(),
            },
            Times::Offsets { base, offsets } => TimesIter::Offsets {
                base: *base,
                offsets: offsets.iter(),
            },
        }
    }
}

/// The times of a [`Times`], oldest first.
pub(super) enum TimesIter<'a> {
    /// Running sum of the nominal step plus each difference (the oldest's is ignored).
    Jitter {
        at: TimestampMs,
        nominal: i64,
        started: bool,
        steps: std::collections::vec_deque::Iter<'a, i8>,
    },
    /// Running sum of the steps.
    Steps {
        at: TimestampMs,
        steps: std::collections::vec_deque::Iter<'a, u16>,
    },
    /// Base plus each offset.
    Offsets {
        base: TimestampMs,
        offsets: std::collections::vec_deque::Iter<'a, u32>,
    },
}

impl Iterator for TimesIter<'_> {
    type Item = TimestampMs;

    fn next(&mut self) -> Option<TimestampMs> {
        match self {
            TimesIter::Jitter {
                at,
                nominal,
                started,
                steps,
            } => {
                let dev = *steps.next()?;
                if *started {
                    *at += *nominal + i64::from(dev);
                }
                *started = true;
                Some(*at)
            }
            TimesIter::Steps { at, steps } => {
                *at += i64::from(*steps.next()?);
                Some(*at)
            }
            TimesIter::Offsets { base, offsets } => offsets.next().map(|&o| *base + i64::from(o)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            TimesIter::Jitter { steps, .. } => steps.size_hint(),
            TimesIter::Steps { steps, .. } => steps.size_hint(),
            TimesIter::Offsets { offsets, .. } => offsets.size_hint(),
        }
    }
}

impl ExactSizeIterator for TimesIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times read back exactly against a plain list under the same pushes and evictions:
    /// steady steps, gaps beyond 65.5 s, times going backwards, and jumps beyond 49 days
    /// (which drop what was held, as the list does).
    #[test]
    fn times_read_back_exactly() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut times = Times::default();
        let mut plain: Vec<TimestampMs> = Vec::new();
        let mut ts: TimestampMs = 1_767_225_600_000;
        for i in 0..200_000 {
            ts += match rng.u32(0..1000) {
                0..=900 => 1_000 + rng.i64(-20..20),
                901..=990 => rng.i64(0..200_000),
                991..=997 => -rng.i64(0..5_000),
                _ => 60 * 86_400_000 * rng.i64(-1..=1),
            };
            if rng.u32(0..3) == 0 && !plain.is_empty() {
                times.pop_front();
                plain.remove(0);
            }
            let (lo, hi) = plain
                .iter()
                .fold((ts, ts), |(lo, hi), &t| (lo.min(t), hi.max(t)));
            let expect_drop = hi - lo > i64::from(u32::MAX);
            if expect_drop {
                plain.clear();
            }
            assert_eq!(times.push(ts), expect_drop, "push {i}");
            plain.push(ts);
            if plain.len() > 700 {
                times.pop_front();
                plain.remove(0);
            }
            assert_eq!(times.len(), plain.len());
            assert_eq!(times.front(), plain.first().copied());
            assert!(times.iter().eq(plain.iter().copied()), "after push {i}");
            assert_eq!(times.iter().len(), plain.len());
        }
    }

    /// A steady series keeps 1 byte a time (jitter within ±127 ms of its step), a step
    /// off by more 2 bytes, and a gap of over 65.5 s widens to 4.
    #[test]
    fn steady_steps_take_two_bytes() {
        let mut times = Times::default();
        times.reserve_exact(601);
        let mut rng = fastrand::Rng::with_seed(3);
        let jittered: Vec<i64> = (0..601).map(|i| i * 1_000 + rng.i64(0..100)).collect();
        for &t in &jittered {
            times.push(t);
        }
        assert_eq!(times.memory_bytes(), times.capacity());
        assert!(times.iter().eq(jittered.iter().copied()));
        let mut times = Times::default();
        times.reserve_exact(601);
        for i in 0..600 {
            times.push(i * 1_000);
        }
        times.push(599_000 + 1_500);
        assert_eq!(times.memory_bytes(), 2 * times.capacity());
        assert_eq!(times.iter().last(), Some(600_500));
        times.pop_front();
        assert_eq!(times.front(), Some(1_000));
        times.push(601_000 + 70_000);
        assert_eq!(times.memory_bytes(), 4 * times.capacity());
        assert_eq!(times.iter().last(), Some(671_000));
    }
}
