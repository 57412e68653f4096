//! The thresholds of the judgement ([`JudgeConfig`]): how much evidence each bottleneck rule
//! needs before it speaks, and how near a predicted exhaustion must be to set the level.
//! One serde struct with documented defaults, so an embedder or the config file can tune
//! them and replay can be run with the same numbers as live.

use serde::{Deserialize, Serialize};

use crate::types::TimestampMs;

const MIB: f64 = 1024.0 * 1024.0;

/// The judgement's thresholds. Every field has a default (see each field) chosen against
/// the noise seen on ordinary hosts: bursty workers, cache warm-ups, GC sawtooths, fast
/// health checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeConfig {
    /// How far back the analyzer's windows reach, in ms: the statistics, trends, latency
    /// tests and reports of a series cover the last `window_ms` before its latest sample
    /// (at most the engine's `analysis_window` samples; a report says when that cap, not
    /// the time, decided), and histogram reports the last `window_ms` before the report.
    /// Default 600 000 (10 minutes).
    pub window_ms: i64,
    /// CPU (fraction of one core) from which a daemon is CPU-bound, read as the median of the
    /// last `cpu_sustain_ms`. Default 0.7: above that a single-threaded daemon has no
    /// headroom for a burst.
    pub cpu_bound_floor: f64,
    /// How long CPU must stay at `cpu_bound_floor` to be CPU-bound, in ms. Default 90 000
    /// (90 s): long enough that a bursty worker (full core for seconds, idle between) is
    /// never called saturated, short enough that a saturated daemon is found within two
    /// minutes. The 10-minute window mean would take five minutes to notice.
    pub cpu_sustain_ms: i64,
    /// Share of `cpu_sustain_ms` the samples must cover. Default 0.8: a daemon seen for 20 s
    /// has not shown that it is saturated for 90.
    pub cpu_sustain_coverage: f64,
    /// Slowest growth of resident memory called a leak, in bytes per minute. Default 922 KiB
    /// (0.9 MiB): 1 MiB/min, the slowest leak perfvisor promises to catch (within 20 min),
    /// less the 10 % its slope estimate may be off, so a 1 MiB/min leak measured at 0.99 is
    /// still caught while no leak is announced at a rate more than 10 % below the truth;
    /// slower growth is too slow to matter within a day on most hosts.
    pub leak_floor_bytes_per_min: f64,
    /// Shortest span of data a trend-based finding (memory leak, descriptor trend, latency
    /// trend) and a predicted exhaustion may rest on, in ms. Default 120 000 (2 min): a
    /// line through seconds of data extrapolates the start-up ramp or one burst.
    pub min_trend_span_ms: i64,
    /// Time after a process starts that its process series (`process.*`) are not used for
    /// trends, in ms. Default 30 000: start-up allocation, loading and cache filling are not
    /// a leak.
    pub startup_grace_ms: i64,
    /// Segments the leak window is split into for the lower-envelope test. Default 4 (at
    /// least 2 are used): each segment's minimum must rise over the previous one's, which a
    /// warm-up followed by a flat level and a GC sawtooth do not.
    pub leak_segments: usize,
    /// How much each segment's minimum must rise over the previous one's, as a share of the
    /// fitted line's rise over one segment. Default 0.25: a real leak raises the floor by
    /// about the whole share (1.0), while noise may take some of it away.
    pub leak_envelope_share: f64,
    /// A leak that began within the window is judged on the window's recent half or quarter
    /// alone only when that part rises by at least this many times the range (max − min)
    /// the memory kept before it. Default 2: a fast leak after a flat stretch is found
    /// within minutes, while the wander of a flat but noisy series, which also has short
    /// rising stretches, is not taken for one.
    pub leak_breakout: f64,
    /// Smallest increase of a latency, in seconds, that is a regression, whatever the ratio.
    /// Default 0.020 (20 ms): a health check going from 1 to 8 ms is eight times slower and
    /// still harmless. Metrics named `*_ms`/`*_milliseconds`, `*_us`/`*_microseconds`,
    /// `*_ns`/`*_nanoseconds` are converted; other latency metrics are read as seconds.
    pub latency_min_increase_s: f64,
    /// Smallest relative increase of a latency called a regression (trend over the window,
    /// step, level shift). Default 0.2 (20 %).
    pub latency_min_ratio: f64,
    /// Smallest ratio of the recent p95 over the earlier p95 called a regression. Default
    /// 1.5.
    pub latency_p95_ratio: f64,
    /// Disk reads + writes, bytes per second on average, from which a daemon is I/O-bound.
    /// Default 32 MiB/s.
    pub io_bound_bytes_per_s: f64,
    /// Share of the descriptor limit in use from which a daemon is exhausting descriptors,
    /// without waiting for a trend. Default 0.8.
    pub descriptor_share: f64,
    /// A descriptor trend predicted to reach the limit within this long is a bottleneck, in
    /// ms. Default 3 600 000 (1 h).
    pub descriptor_horizon_ms: i64,
    /// A predicted exhaustion (memory reaching the host's memory, descriptors their limit, a
    /// file system its size) within this long caps the score at Poor (59.9), in ms. Default
    /// 3 600 000 (1 h): there is time to act, but only if somebody acts now.
    pub urgency_poor_ms: i64,
    /// A predicted exhaustion within this long makes the score Critical (39.9 at most), in
    /// ms. Default 600 000 (10 min).
    pub urgency_critical_ms: i64,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            window_ms: 600_000,
            cpu_bound_floor: 0.7,
            cpu_sustain_ms: 90_000,
            cpu_sustain_coverage: 0.8,
            leak_floor_bytes_per_min: 922.0 * 1024.0,
            min_trend_span_ms: 120_000,
            startup_grace_ms: 30_000,
            leak_segments: 4,
            leak_envelope_share: 0.25,
            leak_breakout: 2.0,
            latency_min_increase_s: 0.020,
            latency_min_ratio: 1.2,
            latency_p95_ratio: 1.5,
            io_bound_bytes_per_s: 32.0 * MIB,
            descriptor_share: 0.8,
            descriptor_horizon_ms: 3_600_000,
            urgency_poor_ms: 3_600_000,
            urgency_critical_ms: 600_000,
        }
    }
}

impl JudgeConfig {
    /// Every problem with the values, each naming the field, the bad value and what is
    /// accepted; empty when the config is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut positive = |name: &str, v: f64| {
            if !(v.is_finite() && v > 0.0) {
                out.push(format!("{name} = {v}: must be a finite number above 0"));
            }
        };
        positive("cpu_bound_floor", self.cpu_bound_floor);
        positive("leak_floor_bytes_per_min", self.leak_floor_bytes_per_min);
        positive("leak_envelope_share", self.leak_envelope_share);
        positive("leak_breakout", self.leak_breakout);
        positive("latency_min_ratio", self.latency_min_ratio);
        positive("latency_p95_ratio", self.latency_p95_ratio);
        positive("io_bound_bytes_per_s", self.io_bound_bytes_per_s);
        positive("descriptor_share", self.descriptor_share);
        if !(self.latency_min_increase_s.is_finite() && self.latency_min_increase_s >= 0.0) {
            out.push(format!(
                "latency_min_increase_s = {}: must be a finite number of seconds, 0 or more",
                self.latency_min_increase_s
            ));
        }
        if !(self.cpu_sustain_coverage > 0.0 && self.cpu_sustain_coverage <= 1.0) {
            out.push(format!(
                "cpu_sustain_coverage = {}: must be in (0, 1]",
                self.cpu_sustain_coverage
            ));
        }
        if self.window_ms < 1_000 {
            out.push(format!(
                "window_ms = {}: the analysis window must be at least 1000 ms (1 s)",
                self.window_ms
            ));
        }
        let durations: [(&str, TimestampMs); 6] = [
            ("cpu_sustain_ms", self.cpu_sustain_ms),
            ("min_trend_span_ms", self.min_trend_span_ms),
            ("startup_grace_ms", self.startup_grace_ms),
            ("descriptor_horizon_ms", self.descriptor_horizon_ms),
            ("urgency_poor_ms", self.urgency_poor_ms),
            ("urgency_critical_ms", self.urgency_critical_ms),
        ];
        for (name, v) in durations {
            if v < 0 {
                out.push(format!("{name} = {v}: must be 0 ms or more"));
            }
        }
        if self.urgency_critical_ms > self.urgency_poor_ms {
            out.push(format!(
                "urgency_critical_ms = {} is above urgency_poor_ms = {}: the critical horizon \
                 must be the shorter",
                self.urgency_critical_ms, self.urgency_poor_ms
            ));
        }
        out
    }

    /// The factor that turns a latency metric's values into seconds, from its name's unit
    /// suffix (seconds when it names none).
    pub fn latency_unit_s(metric: &str) -> f64 {
        let suffix = |s: &[&str]| s.iter().any(|x| metric.ends_with(x));
        if suffix(&["_ms", "_milliseconds", ".ms", ".milliseconds"]) {
            1e-3
        } else if suffix(&["_us", "_microseconds", ".us", ".microseconds"]) {
            1e-6
        } else if suffix(&["_ns", "_nanoseconds", ".ns", ".nanoseconds"]) {
            1e-9
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are usable, a config survives JSON, unknown fields are refused and bad
    /// values are all named at once.
    #[test]
    fn defaults_roundtrip_and_problems() {
        let c = JudgeConfig::default();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let back: JudgeConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let partial: JudgeConfig = serde_json::from_str(r#"{"cpu_sustain_ms": 60000}"#).unwrap();
        assert_eq!(partial.cpu_sustain_ms, 60_000);
        assert_eq!(partial.startup_grace_ms, 30_000);
        assert!(serde_json::from_str::<JudgeConfig>(r#"{"cpu_floor": 1}"#).is_err());
        let bad = JudgeConfig {
            cpu_bound_floor: -1.0,
            urgency_critical_ms: 7_200_000,
            ..JudgeConfig::default()
        };
        let problems = bad.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("cpu_bound_floor = -1"), "{problems:?}");
    }

    /// Latency units come from the name's suffix.
    #[test]
    fn latency_units() {
        assert_eq!(JudgeConfig::latency_unit_s("http.duration_seconds"), 1.0);
        assert_eq!(JudgeConfig::latency_unit_s("http.latency_ms"), 1e-3);
        assert_eq!(JudgeConfig::latency_unit_s("db.time_us"), 1e-6);
        assert_eq!(JudgeConfig::latency_unit_s("search.latency"), 1.0);
    }
}
