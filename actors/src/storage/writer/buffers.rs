//! What the writer holds in memory between two commits: per-series samples, events,
//! alerts, alert-engine states and actions, and the flushes waiting for the next commit.
//! Survives writer restarts, so a panic elsewhere does not lose it.

use std::time::Instant;

use crossbeam_channel::Sender;

use smallvec::SmallVec;

use crate::series_table::SeriesTable;
use crate::types::{ActionRecord, Alert, LifecycleEvent, MetricBatch, MetricKind, TimestampMs};

/// Flushes an idle series' entry (and so its id) is kept through: an hour of 1 s flushes,
/// so a series sampled every minute or every few keeps its id, while the series of a daemon
/// gone for an hour are forgotten (a series that comes back is looked up once).
pub(super) const IDLE_FLUSHES_KEPT: u16 = 3_600;

/// Flushes after which an idle series' sample buffer is freed (its entry stays).
const IDLE_FLUSHES_BUFFERED: u16 = 8;

/// A commit walks only the sources that brought samples since the last one
/// ([`SeriesTable::touched_mut`]); every this many commits it walks every entry, freeing
/// the buffers and forgetting the entries of series idle long enough. So an idle series'
/// buffer is freed after 8 to 15 idle flushes and its entry forgotten after 3,600 to 3,607.
const SWEEP_EVERY: u32 = IDLE_FLUSHES_BUFFERED as u32;

/// One series' samples waiting for the next flush.
#[derive(Debug)]
pub(super) struct SeriesBuffer {
    pub(super) kind: MetricKind,
    /// The series' id in the database once a flush has looked it up (so later flushes
    /// neither look it up nor hash the key again); forgotten when a transaction is rolled
    /// back. The entry is the writer's only cache of ids: it is kept while the series is
    /// idle, up to [`IDLE_FLUSHES_KEPT`] flushes.
    pub(super) id: Option<i64>,
    /// The samples since the last flush: at one sample a second and two flushes a second,
    /// one at most, so it is held inline (no allocation, no pointer to follow when the
    /// flush walks 34,000 series); more spill to the heap.
    pub(super) samples: SmallVec<[(i64, f64); 1]>,
    /// Where the series sat in the writer's pending samples at the last flush (a hint: see
    /// `headlog::Pending::add`).
    pub(super) pending_slot: u32,
    /// [`Buffers::commits`] when this entry last had samples committed (or was made).
    pub(super) last_commit: u32,
}

/// Everything accepted and not yet committed. Survives writer restarts (it is not rebuilt
/// from the config), so a panic elsewhere does not lose it.
#[derive(Debug, Default)]
pub(in crate::storage) struct Buffers {
    /// Grouped by source, so a watcher's batch finds its series side by side.
    pub(super) series: SeriesTable<SeriesBuffer>,
    pub(super) events: Vec<LifecycleEvent>,
    /// Alerts with their JSON, encoded when accepted so an unencodable one is refused early.
    pub(super) alerts: Vec<(Alert, String)>,
    /// Alert-engine states to set or delete, latest per key wins.
    pub(super) alert_states: Vec<(String, Option<String>, TimestampMs)>,
    /// Actions to record.
    pub(super) actions: Vec<ActionRecord>,
    pub(super) samples: usize,
    /// When the oldest uncommitted item was accepted.
    pub(super) oldest: Option<Instant>,
    /// Flushes to acknowledge after the next successful commit.
    pub(super) acks: Vec<Sender<()>>,
    /// Commits so far (wrapping): entries note the last one that had their samples.
    commits: u32,
}

impl Buffers {
    pub(super) fn is_empty(&self) -> bool {
        self.samples == 0
            && self.events.is_empty()
            && self.alerts.is_empty()
            && self.alert_states.is_empty()
            && self.actions.is_empty()
    }

    pub(super) fn touch(&mut self) {
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
    }

    /// Takes the batch's samples, up to `limit` buffered samples in all; returns how many
    /// were taken.
    pub(super) fn add_samples(&mut self, batch: &MetricBatch, limit: usize) -> usize {
        let room = limit.saturating_sub(self.samples);
        let take = batch.samples.len().min(room);
        let commits = self.commits;
        for sample in &batch.samples[..take] {
            let buffer = self
                .series
                .get_or_insert_with(&sample.series, || SeriesBuffer {
                    kind: sample.kind,
                    id: None,
                    samples: SmallVec::new(),
                    pending_slot: u32::MAX,
                    last_commit: commits,
                });
            buffer.samples.push((sample.ts_ms, sample.value));
        }
        if take > 0 {
            self.samples += take;
            self.touch();
        }
        take
    }

    /// Forgets the series ids looked up, after a rollback that may have undone their
    /// inserts.
    pub(super) fn forget_ids(&mut self) {
        for buffer in self.series.values_mut() {
            buffer.id = None;
        }
    }

    /// Forgets what was just committed; every [`SWEEP_EVERY`] commits also frees the sample
    /// buffers of series idle for [`IDLE_FLUSHES_BUFFERED`] flushes and forgets series idle
    /// for [`IDLE_FLUSHES_KEPT`]. Only the sources that brought samples are walked otherwise:
    /// an entry of any other source has none.
    pub(super) fn committed(&mut self) {
        self.commits = self.commits.wrapping_add(1);
        let commits = self.commits;
        if commits.is_multiple_of(SWEEP_EVERY) {
            self.series.retain(|_, buffer| {
                if !buffer.samples.is_empty() {
                    buffer.samples.clear();
                    buffer.last_commit = commits;
                    return true;
                }
                let idle = commits.wrapping_sub(buffer.last_commit);
                if idle >= u32::from(IDLE_FLUSHES_BUFFERED) && buffer.samples.spilled() {
                    buffer.samples = SmallVec::new();
                }
                idle < u32::from(IDLE_FLUSHES_KEPT)
            });
        } else {
            for (_, buffer) in self.series.touched_mut() {
                if !buffer.samples.is_empty() {
                    buffer.samples.clear();
                    buffer.last_commit = commits;
                }
            }
        }
        self.series.untouch();
        self.clear_records();
    }

    /// Drops everything (after a panic while flushing); returns the samples, events and
    /// alerts lost.
    pub(super) fn discard(&mut self) -> (u64, u64, u64) {
        let lost = (
            self.samples as u64,
            self.events.len() as u64,
            self.alerts.len() as u64,
        );
        self.series.clear();
        self.clear_records();
        lost
    }

    /// Empties everything but the per-series entries (kept, or not, by the caller).
    fn clear_records(&mut self) {
        self.events.clear();
        self.alerts.clear();
        self.alert_states.clear();
        self.actions.clear();
        self.samples = 0;
        self.oldest = None;
    }
}

/// What one flush committed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flushed {
    pub(super) samples: u64,
    /// Oldest and newest sample timestamp committed (`i64::MAX`, `i64::MIN` without any).
    pub(super) min_ts: i64,
    pub(super) max_ts: i64,
    pub(super) events: u64,
    pub(super) alerts: u64,
}

impl Default for Flushed {
    fn default() -> Self {
        Flushed {
            samples: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            events: 0,
            alerts: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Labels, Sample, SeriesKey, Source};

    fn batch(metric: &'static str, ts_ms: i64) -> MetricBatch {
        MetricBatch {
            samples: vec![Sample {
                series: SeriesKey::new(Source::Host, metric, Labels::empty()),
                kind: MetricKind::Gauge,
                ts_ms,
                value: 1.0,
            }],
        }
    }

    /// An idle series keeps its entry and id (the writer's only id cache) but frees its
    /// sample buffer after a few flushes; after an hour of flushes (and at most a sweep's
    /// worth more) it is forgotten, while a series sampled now and then never is.
    #[test]
    fn idle_series_keep_their_id_for_an_hour_of_flushes() {
        let mut b = Buffers::default();
        // Three samples in one flush: more than the entry holds inline.
        for ts in 0..3 {
            b.add_samples(&batch("idle", ts), usize::MAX);
        }
        b.add_samples(&batch("sometimes", 0), usize::MAX);
        for buffer in b.series.values_mut() {
            buffer.id = Some(7);
        }
        b.committed();
        let idle = SeriesKey::new(Source::Host, "idle", Labels::empty());
        for flush in 1..u32::from(IDLE_FLUSHES_KEPT) {
            if flush % 600 == 0 {
                b.add_samples(&batch("sometimes", i64::from(flush) * 1_000), usize::MAX);
            }
            b.committed();
            let entry = b.series.get(&idle);
            assert_eq!(entry.and_then(|e| e.id), Some(7), "flush {flush}");
            // The heap buffer is kept while the series may come back, then freed at the
            // next sweep (every `SWEEP_EVERY` commits).
            let spilled = entry.map(|e| e.samples.spilled());
            if flush < u32::from(IDLE_FLUSHES_BUFFERED) {
                assert_eq!(spilled, Some(true), "flush {flush}");
            } else if flush >= u32::from(IDLE_FLUSHES_BUFFERED) + SWEEP_EVERY {
                assert_eq!(spilled, Some(false), "flush {flush}");
            }
        }
        for _ in 0..SWEEP_EVERY {
            b.committed();
        }
        assert!(
            !b.series.contains_key(&idle),
            "forgotten after an hour idle"
        );
        let sometimes = SeriesKey::new(Source::Host, "sometimes", Labels::empty());
        assert_eq!(b.series.get(&sometimes).and_then(|e| e.id), Some(7));
    }
}
