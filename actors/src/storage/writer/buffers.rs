//! What the writer holds in memory between two commits: per-series samples, events,
//! alerts, alert-engine states and actions, and the flushes waiting for the next commit.
//! Survives writer restarts, so a panic elsewhere does not lose it.

use std::time::Instant;

use crossbeam_channel::Sender;

use crate::types::{
    ActionRecord, Alert, FastMap, LifecycleEvent, MetricBatch, MetricKind, SeriesKey, TimestampMs,
};

/// One series' samples waiting for the next flush.
#[derive(Debug)]
pub(super) struct SeriesBuffer {
    pub(super) kind: MetricKind,
    /// The series' id in the database once a flush has looked it up (so later flushes do
    /// not hash the key again); forgotten when a transaction is rolled back.
    pub(super) id: Option<i64>,
    pub(super) samples: Vec<(i64, f64)>,
    /// Flushes this entry has sat through empty; idle entries are forgotten.
    pub(super) idle_flushes: u8,
}

/// Everything accepted and not yet committed. Survives writer restarts (it is not rebuilt
/// from the config), so a panic elsewhere does not lose it.
#[derive(Debug, Default)]
pub(in crate::storage) struct Buffers {
    pub(super) series: FastMap<SeriesKey, SeriesBuffer>,
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
        for sample in &batch.samples[..take] {
            match self.series.get_mut(&sample.series) {
                Some(buffer) => buffer.samples.push((sample.ts_ms, sample.value)),
                None => {
                    self.series.insert(
                        sample.series.clone(),
                        SeriesBuffer {
                            kind: sample.kind,
                            id: None,
                            samples: vec![(sample.ts_ms, sample.value)],
                            idle_flushes: 0,
                        },
                    );
                }
            }
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

    /// Forgets what was just committed and series idle for a while.
    pub(super) fn committed(&mut self) {
        self.series.retain(|_, buffer| {
            if buffer.samples.is_empty() {
                buffer.idle_flushes = buffer.idle_flushes.saturating_add(1);
            } else {
                buffer.idle_flushes = 0;
                buffer.samples.clear();
            }
            buffer.idle_flushes < 8
        });
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
