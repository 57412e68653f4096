//! The anomaly rate per source (a daemon, the host, perfvisor): how many anomaly candidates
//! each source raised over the last hour. Anomalies do not page by default; this count is
//! how an operator still sees which daemon is restless (`/metrics`). Plain logic, `now` in.

use std::collections::{BTreeMap, VecDeque};

use crate::types::{Source, TimestampMs};

/// Window of the rate.
pub const ANOMALY_RATE_WINDOW_MS: i64 = 3_600_000;

/// Candidates remembered per source at most (bounds memory under a flood; the count then
/// reads as at least this).
pub const ANOMALY_RATE_CAP: usize = 10_000;

/// Times of recent anomaly candidates, per source.
#[derive(Debug, Default)]
pub struct AnomalyRates {
    times: BTreeMap<Source, VecDeque<TimestampMs>>,
}

impl AnomalyRates {
    /// Counts one candidate of `source` at `now`.
    pub fn record(&mut self, source: &Source, now: TimestampMs) {
        let times = self.times.entry(source.clone()).or_default();
        times.push_back(now);
        if times.len() > ANOMALY_RATE_CAP {
            times.pop_front();
        }
        self.prune(now);
    }

    /// Candidates per source within the window ending at `now`. A source with none left is
    /// forgotten, so the label set is bounded by the sources seen within the hour.
    pub fn counts(&mut self, now: TimestampMs) -> Vec<(Source, u64)> {
        self.prune(now);
        self.times
            .iter()
            .map(|(s, t)| (s.clone(), t.len() as u64))
            .collect()
    }

    fn prune(&mut self, now: TimestampMs) {
        for times in self.times.values_mut() {
            while times
                .front()
                .is_some_and(|&t| now.saturating_sub(t) >= ANOMALY_RATE_WINDOW_MS)
            {
                times.pop_front();
            }
        }
        self.times.retain(|_, t| !t.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts per source over the last hour, on a manual clock: a candidate an hour old
    /// no longer counts, and a source with none left disappears.
    #[test]
    fn counts_per_source_over_the_last_hour() {
        let mut r = AnomalyRates::default();
        let d = Source::Daemon("api".into());
        r.record(&d, 0);
        r.record(&d, 1_000);
        r.record(&Source::Host, 2_000);
        assert_eq!(r.counts(2_000), vec![(Source::Host, 1), (d.clone(), 2)]);
        assert_eq!(
            r.counts(ANOMALY_RATE_WINDOW_MS),
            vec![(Source::Host, 1), (d.clone(), 1)]
        );
        assert_eq!(r.counts(ANOMALY_RATE_WINDOW_MS + 2_000), vec![]);
        for i in 0..(ANOMALY_RATE_CAP as i64 + 5) {
            r.record(&d, 10_000_000 + i);
        }
        assert_eq!(
            r.counts(10_000_000 + 20_000),
            vec![(d, ANOMALY_RATE_CAP as u64)]
        );
    }
}
