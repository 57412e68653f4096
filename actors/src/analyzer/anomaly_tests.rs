//! Tests of `anomaly.rs`: the unit tests of its private items, kept apart so the module reads
//! as its logic.

use super::*;
use crate::testdata::{nab_dir, parse_nab_ts, read_nab_csv};
use std::collections::HashMap;

/// One NAB series with its labelled anomaly windows (epoch ms, both ends inclusive).
struct NabFile {
    name: String,
    rows: Vec<(i64, f64)>,
    windows: Vec<(i64, i64)>,
}

/// Scores of one file, NAB-style.
struct FileResult {
    name: String,
    rows: usize,
    /// Per window: fraction of the window elapsed at its first detection, if any.
    first_detection: Vec<Option<f64>>,
    false_positives: usize,
    /// Detections inside the probationary period (not counted).
    probation_detections: usize,
    /// Level shifts confirmed after the probationary period.
    level_shifts: usize,
}

impl FileResult {
    fn detected(&self) -> usize {
        self.first_detection.iter().flatten().count()
    }
}

/// Loads every file named in `labels.json` with its windows.
fn load_nab() -> Result<Vec<NabFile>, String> {
    let dir = nab_dir();
    let labels_path = dir.join("labels.json");
    let text = std::fs::read_to_string(&labels_path)
        .map_err(|e| format!("{}: {e}", labels_path.display()))?;
    let labels: HashMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&text).map_err(|e| format!("labels.json: {e}"))?;
    let mut names: Vec<&String> = labels.keys().collect();
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let rows = read_nab_csv(&dir.join(name))?;
        let mut windows = Vec::new();
        for [start, end] in &labels[name] {
            windows.push((parse_nab_ts(start)?, parse_nab_ts(end)?));
        }
        files.push(NabFile {
            name: name.clone(),
            rows,
            windows,
        });
    }
    Ok(files)
}

/// NAB's probationary period: `min(floor(0.15 · rows), 0.15 · 5000)` rows
/// (`nab/util.py`, `getProbationaryLength`).
fn probation_rows(rows: usize) -> usize {
    (rows * 15 / 100).min(750)
}

/// Runs a fresh detector over `file` and scores it: a detection is the first sample of a
/// run of anomalous verdicts.
fn evaluate(file: &NabFile, config: &AnomalyConfig) -> FileResult {
    let mut detector = AnomalyDetector::new(config.clone());
    let probation = probation_rows(file.rows.len());
    let mut first_detection = vec![None; file.windows.len()];
    let mut false_positives = 0;
    let mut probation_detections = 0;
    let mut level_shifts = 0;
    let mut previous_anomalous = false;
    for (i, &(ts, value)) in file.rows.iter().enumerate() {
        let verdict = detector.update(ts, value);
        if i >= probation
            && matches!(
                verdict.kind,
                Some(AnomalyKind::LevelShiftUp | AnomalyKind::LevelShiftDown)
            )
        {
            level_shifts += 1;
        }
        let starts_run = verdict.anomalous && !previous_anomalous;
        previous_anomalous = verdict.anomalous;
        if !starts_run {
            continue;
        }
        if i < probation {
            probation_detections += 1;
            continue;
        }
        match file.windows.iter().position(|&(s, e)| s <= ts && ts <= e) {
            Some(w) => {
                let (s, e) = file.windows[w];
                if first_detection[w].is_none() {
                    first_detection[w] = Some((ts - s) as f64 / (e - s).max(1) as f64);
                }
            }
            None => false_positives += 1,
        }
    }
    FileResult {
        name: file.name.clone(),
        rows: file.rows.len(),
        first_detection,
        false_positives,
        probation_detections,
        level_shifts,
    }
}

/// Samples of N(mean, sd) from a seeded generator (Box–Muller).
/// The lazy detector gives the eager detector's verdicts, sample for sample: nothing
/// anomalous while flat (the eager one agrees), then exactly the same verdicts once the
/// series varies, however long the flat run was (past the replay limit too).
#[test]
fn lazy_detector_matches_the_eager_one() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut cases: Vec<Vec<f64>> = Vec::new();
    for flat_len in [
        0usize, 1, 10, 63, 64, 65, 1023, 1024, 1025, 2200, 3000, 20_000,
    ] {
        for flat in [0.0, 5.0, -1.5e9] {
            let mut v = vec![flat; flat_len];
            // Then noise, a spike, a level shift, and flat again.
            v.extend((0..400).map(|_| gaussian(&mut rng, flat + 1.0, 0.5)));
            v.push(flat + 1_000.0);
            v.extend((0..400).map(|_| gaussian(&mut rng, flat + 40.0, 0.5)));
            v.extend(std::iter::repeat_n(flat + 40.0, 300));
            cases.push(v);
        }
    }
    // A CPU rate of an idle process: mostly 0, now and then one tick; a NaN while flat
    // and one after (ignored by both).
    cases.push(
        (0..5000)
            .map(|i| match i {
                700 | 4000 => f64::NAN,
                _ if i % 97 == 0 && i > 2500 => 0.01,
                _ => 0.0,
            })
            .collect(),
    );
    let mut activated = 0;
    for (c, values) in cases.iter().enumerate() {
        let mut eager = AnomalyDetector::new(AnomalyConfig::default());
        let mut lazy = LazyDetector::new(AnomalyConfig::default());
        for (i, &v) in values.iter().enumerate() {
            let ts = 1_000 * i as i64;
            let e = eager.update(ts, v);
            match lazy.update(ts, v) {
                Some(l) => assert_eq!(l, e, "case {c}, sample {i}: verdicts differ"),
                None => assert!(!e.anomalous, "case {c}, sample {i}: flat but anomalous"),
            }
        }
        activated += usize::from(lazy.is_active());
        assert!(lazy.memory_bytes() <= eager.memory_bytes() + std::mem::size_of::<LazyDetector>());
    }
    assert_eq!(activated, cases.len(), "every case varies at some point");
    let mut flat = LazyDetector::new(AnomalyConfig::default());
    for i in 0..5000 {
        assert_eq!(flat.update(i, 3.0), None);
    }
    assert!(
        flat.memory_bytes() < 200,
        "{} bytes while flat",
        flat.memory_bytes()
    );
}

fn gaussian(rng: &mut fastrand::Rng, mean: f64, sd: f64) -> f64 {
    let u = rng.f64().max(f64::MIN_POSITIVE);
    let v = rng.f64();
    mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Feeds `values` one per 5 minutes and returns the verdicts.
fn run(detector: &mut AnomalyDetector, values: &[f64]) -> Vec<Verdict> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| detector.update(i as i64 * 300_000, v))
        .collect()
}

fn noise(seed: u64, n: usize, mean: f64, sd: f64) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|_| gaussian(&mut rng, mean, sd)).collect()
}

/// Ensures the O(log n) k-th absolute deviation agrees with sorting the deviations.
#[test]
fn kth_abs_deviation_matches_brute_force() {
    let mut rng = fastrand::Rng::with_seed(7);
    for n in 1..60 {
        let mut v: Vec<f32> = (0..n).map(|_| (rng.f32() * 20.0).round() - 10.0).collect();
        v.sort_unstable_by(f32::total_cmp);
        for m in [quantile_linear(&v, 0.5), f64::from(v[0]) - 1.0, 3.5] {
            let mut dev: Vec<f64> = v.iter().map(|&x| (f64::from(x) - m).abs()).collect();
            dev.sort_unstable_by(f64::total_cmp);
            for (k, want) in dev.iter().enumerate() {
                let at = |i: usize| f64::from(v[i]);
                assert_eq!(
                    kth_abs_deviation(v.len(), at, m, k),
                    *want,
                    "n={n} m={m} k={k}"
                );
            }
        }
    }
}

/// Ensures the baseline of Gaussian noise is its mean and σ, whichever scale is read.
#[test]
fn baseline_of_gaussian_noise_is_mean_and_sigma() {
    let mut detector = AnomalyDetector::new(AnomalyConfig::default());
    run(&mut detector, &noise(1, 3000, 50.0, 2.0));
    let b = detector.baseline().expect("baseline after 3000 samples");
    assert!((b.level - 50.0).abs() < 0.3, "{b:?}");
    for spread in [b.spread, b.spread_above, b.spread_below] {
        assert!((spread - 2.0).abs() < 0.4, "{b:?}");
    }
    assert_eq!((b.samples, b.window_len), (3000, DEFAULT_WINDOW));
}

/// Ensures a spike in white noise is flagged as a spike, once, and does not drag the
/// baseline, and that the noise itself stays quiet.
#[test]
fn spike_in_noise_is_a_spike_and_leaves_the_baseline() {
    let mut values = noise(2, 3000, 100.0, 1.0);
    values[2000] = 115.0;
    let mut detector = AnomalyDetector::new(AnomalyConfig::default());
    let verdicts = run(&mut detector, &values[..2000]);
    let before = detector.baseline().expect("baseline");
    let spike = detector.update(2000 * 300_000, values[2000]);
    let after = detector.baseline().expect("baseline");
    assert!(spike.anomalous && spike.score > 10.0, "{spike:?}");
    assert_eq!(spike.kind, Some(AnomalyKind::Spike));
    assert!(
        (after.level - before.level).abs() < 0.01,
        "{before:?} → {after:?}"
    );
    assert!((after.spread_above - before.spread_above).abs() < 0.05);
    let rest = run(&mut detector, &values[2001..]);
    let others = verdicts.iter().chain(&rest).filter(|v| v.anomalous).count();
    assert!(others <= 1, "{others} anomalies in pure noise");
    assert_eq!(detector.counters().level_shifts, 0);
}

/// Ensures a step up and a step down are each reported once as a level shift, and that
/// afterwards the new level is normal (no endless alarms).
#[test]
fn step_is_one_level_shift_then_normal() {
    for (to, kind) in [
        (110.0, AnomalyKind::LevelShiftUp),
        (90.0, AnomalyKind::LevelShiftDown),
    ] {
        let mut values = noise(3, 1500, 100.0, 1.0);
        values.extend(noise(4, 1500, to, 1.0));
        let mut detector = AnomalyDetector::new(AnomalyConfig::default());
        let verdicts = run(&mut detector, &values);
        let shifts: Vec<usize> = (0..verdicts.len())
            .filter(|&i| matches!(verdicts[i].kind, Some(k) if k != AnomalyKind::Spike))
            .collect();
        assert_eq!(shifts.len(), 1, "to {to}: shifts at {shifts:?}");
        assert_eq!(verdicts[shifts[0]].kind, Some(kind));
        assert!(
            (1500..1500 + DEFAULT_SHIFT_WINDOW).contains(&shifts[0]),
            "{shifts:?}"
        );
        let late = verdicts[shifts[0] + 1..]
            .iter()
            .filter(|v| v.anomalous)
            .count();
        assert!(late <= 1, "to {to}: {late} anomalies after the shift");
        let b = detector.baseline().expect("baseline");
        assert!((b.level - to).abs() < 0.3, "to {to}: {b:?}");
    }
}

/// Ensures a spike lasting a few samples stays a spike: no level shift, and the series
/// is normal again once it returns.
#[test]
fn short_excursion_is_not_a_level_shift() {
    let mut values = noise(5, 2000, 20.0, 1.0);
    for v in &mut values[1500..1505] {
        *v += 30.0;
    }
    let mut detector = AnomalyDetector::new(AnomalyConfig::default());
    let verdicts = run(&mut detector, &values);
    assert!(verdicts[1500..1505]
        .iter()
        .all(|v| v.kind == Some(AnomalyKind::Spike)));
    assert_eq!(detector.counters().level_shifts, 0);
    assert!(verdicts[1505..].iter().filter(|v| v.anomalous).count() <= 1);
}

/// Ensures a slow linear trend raises few anomalies over its course: at most about twice
/// the same noise without the trend (the median lags the trend by 0.5 σ, so the upper
/// tail is reached more often; at 3.5 σ Gaussian noise alone gives about 9 in 20 000
/// samples), and no level shift.
#[test]
fn slow_trend_raises_almost_nothing() {
    let n = 20_000;
    let count = |slope: f64| {
        let mut rng = fastrand::Rng::with_seed(6);
        // 20 σ over the run: 0.5 σ of lag for a 1024-sample window.
        let values: Vec<f64> = (0..n)
            .map(|i| gaussian(&mut rng, 50.0 + slope * i as f64 / n as f64, 1.0))
            .collect();
        let mut detector = AnomalyDetector::new(AnomalyConfig::default());
        let anomalies = run(&mut detector, &values)
            .iter()
            .filter(|v| v.anomalous)
            .count();
        (anomalies, detector.counters().level_shifts)
    };
    let (noise, _) = count(0.0);
    let (trend, shifts) = count(20.0);
    assert!(
        trend <= 2 * noise + 5,
        "{trend} anomalies over a slow trend, {noise} over the noise alone"
    );
    assert_eq!(shifts, 0);
}

/// Ensures a constant series with one different value scores finitely (no division by
/// zero), flags the value, and is quiet again afterwards.
#[test]
fn constant_series_with_one_different_value() {
    for (level, other) in [(5.0, 6.0), (0.0, 1.0), (-3.0, -3.0 - 1e-9)] {
        let mut values = vec![level; 500];
        values[300] = other;
        let mut detector = AnomalyDetector::new(AnomalyConfig::default());
        let verdicts = run(&mut detector, &values);
        for v in &verdicts[1..] {
            assert!(
                v.score.is_finite() && v.score >= 0.0 && v.spread > 0.0,
                "{v:?}"
            );
        }
        assert!(
            verdicts[300].anomalous || (other - level).abs() < 1e-6,
            "{level}"
        );
        assert!(verdicts[301..].iter().all(|v| !v.anomalous), "{level}");
    }
}

/// Ensures NaN and infinities are ignored, counted and change nothing.
#[test]
fn non_finite_values_are_ignored() {
    let values = noise(7, 200, 10.0, 1.0);
    let mut detector = AnomalyDetector::new(AnomalyConfig::default());
    let first = detector.update(0, f64::NAN);
    assert_eq!(
        (first.score, first.anomalous, first.kind),
        (0.0, false, None)
    );
    assert!(detector.baseline().is_none());
    run(&mut detector, &values);
    let before = detector.baseline();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let v = detector.update(1, bad);
        assert_eq!((v.score, v.anomalous, v.kind), (0.0, false, None));
    }
    assert_eq!(detector.baseline(), before);
    let c = detector.counters();
    assert_eq!((c.invalid, c.samples), (4, 200));
    // Extreme finite values are judged without overflow.
    for extreme in [f64::MAX, f64::MIN, f64::MIN_POSITIVE] {
        let v = detector.update(2, extreme);
        assert!(v.score.is_finite(), "{v:?}");
    }
}

/// Ensures verdicts depend on the order of samples only: gaps, repeated and backwards
/// timestamps give the same verdicts, and the odd ones are counted.
#[test]
fn timestamp_gaps_change_nothing() {
    let mut values = noise(8, 1500, 30.0, 1.0);
    values[1200] = 45.0;
    let mut regular = AnomalyDetector::new(AnomalyConfig::default());
    let mut gappy = AnomalyDetector::new(AnomalyConfig::default());
    let mut ts = 0;
    for (i, &v) in values.iter().enumerate() {
        ts += match i % 100 {
            10 => 86_400_000, // a day missing
            20 => 0,          // repeated timestamp
            30 => -3_600_000, // clock stepped back an hour
            _ => 300_000,
        };
        assert_eq!(regular.update(i as i64 * 300_000, v), gappy.update(ts, v));
    }
    assert_eq!(gappy.counters().out_of_order, 30);
    assert_eq!(regular.counters().out_of_order, 0);
}

/// Ensures the memory of a detector is bounded: once its window is full it stays unchanged
/// after 1,000,000 updates of a wandering series with spikes, steps and invalid values, at
/// 4 bytes a value (a value and its tag packed in a `u32`).
#[test]
fn memory_stays_bounded() {
    let mut detector = AnomalyDetector::new(AnomalyConfig::default());
    let empty = detector.memory_bytes();
    let mut at_full = 0;
    let mut rng = fastrand::Rng::with_seed(9);
    let mut level = 0.0;
    for i in 0..1_000_000i64 {
        if i % 50_000 == 0 {
            level += 10.0;
        }
        let v = match i % 997 {
            0 => f64::NAN,
            1 => level + 100.0,
            _ => level + rng.f64(),
        };
        detector.update(i, v);
        if i == 2 * DEFAULT_WINDOW as i64 {
            at_full = detector.memory_bytes();
        }
    }
    assert_eq!(empty, std::mem::size_of::<AnomalyDetector>());
    assert_eq!(detector.memory_bytes(), at_full);
    assert_eq!(
        at_full,
        std::mem::size_of::<AnomalyDetector>() + 4 * DEFAULT_WINDOW
    );
    assert!(at_full < 4_500, "{at_full} bytes");
    assert!(detector.counters().level_shifts >= 19);
}

/// `find_tag` finds every tag at every position, in and past the 32-wide chunks, and
/// nothing that is not there.
#[test]
fn find_tag_finds_each_position() {
    let mask = 0xFFFF;
    for len in [0usize, 1, 31, 32, 33, 64, 100, 1024] {
        // Distinct tags under arbitrary value bits above them.
        let keys: Vec<u32> = (0..len as u32)
            .map(|t| (t.wrapping_mul(2_654_435_761) & !mask) | (t.wrapping_mul(7919) & mask))
            .collect();
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(find_tag(&keys, mask, k & mask), Some(i), "len {len}");
        }
        for probe in [1u32, 2, 65_535] {
            assert_eq!(
                find_tag(&keys, mask, probe),
                keys.iter().position(|&k| k & mask == probe)
            );
        }
    }
}

/// A packed key reads back the value within half its quantum (relative to the value),
/// keeps numeric order across signs and zero, and never decodes to a non-finite value.
#[test]
fn packed_keys_keep_order_and_precision() {
    let w = Packed::for_window(DEFAULT_WINDOW);
    assert_eq!(w.mask, 1023);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut values: Vec<f64> = (0..10_000)
        .map(|_| (rng.f64() - 0.5) * 10f64.powi(rng.i32(-30..30)))
        .collect();
    values.extend([0.0, -0.0, 1.0, -1.0, f64::MAX, f64::MIN, 1e-45, -1e-45]);
    let mut keys: Vec<(u32, f64)> = values.iter().map(|&v| (w.key_of(v), v)).collect();
    keys.sort_by(|a, b| a.1.total_cmp(&b.1));
    for pair in keys.windows(2) {
        assert!(pair[0].0 <= pair[1].0 || pair[0].1 == pair[1].1, "{pair:?}");
    }
    let read = |k: u32| f64::from(f32::from_bits(unordered(k & !w.mask).to_bits() & !w.mask));
    for &(k, v) in &keys {
        let got = read(k);
        assert!(got.is_finite(), "{v} read back as {got}");
        let v32 = f64::from(v.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32);
        // 13 bits of mantissa: within 2⁻¹⁴ of the value (denormals: of the smallest normal).
        let tol = (v32.abs() * 2f64.powi(-13)).max(2f64.powi(-126 - 13) * 1024.0);
        assert!((got - v32).abs() <= tol, "{v} read back as {got}");
    }
    // The largest window keeps 7 bits, the smallest 20.
    assert_eq!(Packed::for_window(MAX_WINDOW).mask, 0xFFFF);
    assert_eq!(Packed::for_window(8).mask, 7);
    // Small integers read back exactly, on both sides of the center.
    for v in -300..300 {
        let k = w.key_of(f64::from(v));
        assert_eq!(read(k), f64::from(v));
    }
}

/// Ensures the window is the last `window` values, sorted, whatever order they came in and
/// however often values repeat: eviction by arrival tag removes the oldest exactly.
#[test]
fn window_holds_the_last_values_sorted() {
    let config = AnomalyConfig {
        window: 50,
        ..AnomalyConfig::default()
    };
    let mut detector = AnomalyDetector::new(config);
    let mut rng = fastrand::Rng::with_seed(4);
    let mut pushed = Vec::new();
    for i in 0..70_000 {
        // Few distinct values, so equal values are evicted and inserted side by side.
        let v = f64::from(rng.u8(0..6));
        detector.push(v, None);
        pushed.push(v);
        let mut expect = pushed[pushed.len().saturating_sub(50)..].to_vec();
        expect.sort_unstable_by(f64::total_cmp);
        let w = &detector.window;
        let held: Vec<f64> = (0..w.len()).map(|i| w.value(i)).collect();
        assert_eq!(held, expect, "after {i} values");
        let oldest = pushed.len().saturating_sub(50);
        let mut tags: Vec<u32> = (oldest..pushed.len()).map(|k| k as u32 & w.mask).collect();
        let mut held = w.keys.iter().map(|k| k & w.mask).collect::<Vec<_>>();
        tags.sort_unstable();
        held.sort_unstable();
        assert_eq!(held, tags, "after {i} values");
    }
}

/// Ensures a config reports every problem at once and that `new` clamps instead.
#[test]
fn config_validation_reports_every_problem() {
    assert_eq!(AnomalyConfig::default().validate(), Ok(()));
    let bad = AnomalyConfig {
        window: 2,
        threshold: f64::NAN,
        tail_quantile: 1.0,
        shift_window: 100,
        shift_count: 0,
        ..AnomalyConfig::default()
    };
    let problems = bad
        .validate()
        .map_err(|e| e.problems)
        .err()
        .unwrap_or_default();
    assert_eq!(problems.len(), 6, "{problems:?}");
    assert!(problems[0].contains("window = 2"));
    let clamped = AnomalyDetector::new(bad).config().clone();
    assert_eq!(clamped.validate(), Ok(()));
    let parsed: Result<AnomalyConfig, _> = serde_json::from_str(r#"{"windw": 10}"#);
    assert!(parsed.is_err(), "unknown fields are refused");
}

/// Ensures the detector with the default config finds labelled anomalies in real NAB
/// series with few false positives (the acceptance floor of docs/ANOMALIES.md).
#[test]
fn nab_evaluation() {
    let files = match load_nab() {
        Ok(files) => files,
        Err(e) => panic!(
            "NAB data missing or unreadable ({}): {e}",
            nab_dir().display()
        ),
    };
    assert_eq!(files.len(), 8, "expected the 8 labelled NAB files");
    let config = AnomalyConfig::default();
    println!(
        "| file | rows | windows | detected | first detection (fraction of window) \
         | false positives | level shifts | in probation |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---:|");
    let (mut windows, mut detected, mut false_positives) = (0, 0, 0);
    for file in &files {
        let r = evaluate(file, &config);
        let early: Vec<String> = r
            .first_detection
            .iter()
            .map(|d| d.map_or("missed".to_string(), |f| format!("{f:.2}")))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.rows,
            r.first_detection.len(),
            r.detected(),
            early.join(", "),
            r.false_positives,
            r.level_shifts,
            r.probation_detections
        );
        windows += r.first_detection.len();
        detected += r.detected();
        false_positives += r.false_positives;
    }
    println!("| **total** | | {windows} | {detected} | | {false_positives} | | |");
    assert_eq!(windows, 16);
    assert!(
        detected >= NAB_MIN_DETECTED,
        "{detected} of 16 windows detected"
    );
    assert!(
        false_positives <= NAB_MAX_FALSE_POSITIVES,
        "{false_positives} false positives"
    );
}

/// Acceptance floor of [`nab_evaluation`]: windows detected out of 16.
const NAB_MIN_DETECTED: usize = 12;
/// Acceptance ceiling of [`nab_evaluation`]: false positives over the 8 files.
const NAB_MAX_FALSE_POSITIVES: usize = 9;

/// Measures the cost of an update and the memory of a series (run in release:
/// `cargo test --release -p perfvisor-actors --lib -- --ignored --nocapture anomaly_cost`).
#[test]
#[ignore = "a measurement; run in release with --nocapture"]
fn anomaly_cost() {
    let n = 2_000_000;
    let mut rng = fastrand::Rng::with_seed(10);
    let values: Vec<f64> = (0..n)
        .map(|i| match i % 5000 {
            0 => 500.0,
            _ => gaussian(&mut rng, 100.0, 5.0),
        })
        .collect();
    for window in [256, DEFAULT_WINDOW, 4096] {
        let mut detector = AnomalyDetector::new(AnomalyConfig {
            window,
            ..AnomalyConfig::default()
        });
        let start = std::time::Instant::now();
        let mut anomalies = 0usize;
        for (i, &v) in values.iter().enumerate() {
            anomalies += usize::from(detector.update(i as i64, v).anomalous);
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        let bytes = detector.memory_bytes();
        println!(
            "window {window:>5}: {ns:6.1} ns per update, {bytes:>6} bytes per series \
             ({anomalies} anomalies in {n} samples)"
        );
    }
}
