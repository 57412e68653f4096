//! Accuracy against exact order statistics on generated and NAB data, merging, collapse,
//! encoding and bad input. Also the data helpers the rollup tests share.

use crate::testdata::nab_series;

use super::*;

/// The percentiles the acceptance criteria name, as fractions.
pub(crate) const QUANTILES: [f64; 9] = [0.0, 0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];

/// The promised relative error.
const PROMISED: f64 = 0.01;

/// A standard normal deviate (Box–Muller).
pub(crate) fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = 1.0 - rng.f64(); // (0, 1]
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A day of 1 Hz samples (timestamps in ms) per named fixed-seed distribution.
pub(crate) fn generated_series() -> Vec<(&'static str, Vec<(i64, f64)>)> {
    const N: usize = 86_400;
    const T0: i64 = 1_700_000_000_000;
    type Gen = fn(&mut fastrand::Rng, usize) -> f64;
    let gens: [(&'static str, Gen); 10] = [
        ("uniform", |r, _| 100.0 * r.f64()),
        ("lognormal", |r, _| (2.0 * normal(r)).exp()),
        ("pareto", |r, _| (1.0 - r.f64()).powf(-1.0 / 1.2)),
        ("constant", |_, _| 42.5),
        ("rss_offset", |r, _| 1e9 + 1000.0 * normal(r)),
        ("negative", |r, _| -50.0 * normal(r).exp()),
        ("mixed_signs_zeros", |r, _| {
            if r.u8(..10) == 0 {
                0.0
            } else {
                10.0 + 100.0 * normal(r)
            }
        }),
        ("cpu", |r, _| (20.0 + 5.0 * normal(r)).clamp(0.0, 100.0)),
        ("tiny", |r, _| 1e-200 * normal(r).exp()),
        ("counter_resets", |r, i| {
            // Bytes sent: grows ~1 MB/s, restarts from 0 every ~3 h (period 10_007 s).
            let since_reset = (i % 10_007) as f64;
            since_reset * 1e6 + r.f64() * 1e3
        }),
    ];
    gens.iter()
        .enumerate()
        .map(|(k, (name, generate))| {
            let mut rng = fastrand::Rng::with_seed(0x5eed_0000 + k as u64);
            let samples = (0..N)
                .map(|i| (T0 + 1000 * i as i64, generate(&mut rng, i)))
                .collect();
            (*name, samples)
        })
        .collect()
}

/// Every data set: generated and NAB, as (name, values).
fn all_value_sets() -> Vec<(String, Vec<f64>)> {
    let values = |s: &[(i64, f64)]| s.iter().map(|p| p.1).collect::<Vec<_>>();
    let mut sets: Vec<_> = generated_series()
        .into_iter()
        .map(|(name, s)| (name.to_string(), values(&s)))
        .collect();
    sets.extend(nab_series().into_iter().map(|(name, s)| (name, values(&s))));
    sets
}

/// The exact order statistic of rank `⌊q · (n − 1)⌋` of ascending `sorted`.
pub(crate) fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
    sorted[rank]
}

/// A sketch of `values` with the default α.
fn sketch_of(values: &[f64]) -> DdSketch {
    let mut sketch = DdSketch::default();
    for v in values {
        assert!(sketch.insert(*v));
    }
    sketch
}

/// Asserts every [`QUANTILES`] estimate is within `PROMISED` relative error of the exact
/// order statistic (exactly 0 when that is 0).
pub(crate) fn assert_quantiles_accurate(what: &str, sketch: &DdSketch, values: &[f64]) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    for q in QUANTILES {
        let exact = exact_quantile(&sorted, q);
        let estimate = sketch.quantile(q).expect("non-empty sketch");
        if exact == 0.0 {
            assert_eq!(estimate, 0.0, "{what}: q {q}: exact 0, estimate {estimate}");
        } else {
            let error = (estimate - exact).abs() / exact.abs();
            assert!(
                error <= PROMISED,
                "{what}: q {q}: exact {exact}, estimate {estimate}, relative error {error}"
            );
        }
    }
}

#[test]
fn quantiles_within_one_percent_on_generated_and_nab_data() {
    let sets = all_value_sets();
    assert!(sets.len() >= 11, "expected generated and NAB sets");
    for (name, values) in &sets {
        let sketch = sketch_of(values);
        assert_eq!(sketch.count(), values.len() as u64);
        assert_quantiles_accurate(name, &sketch, values);
    }
}

#[test]
fn quantiles_of_a_dense_grid_stay_within_alpha() {
    // Every rank of a sketch over a wide dense range, not just the named percentiles.
    let mut rng = fastrand::Rng::with_seed(7);
    let values: Vec<f64> = (0..20_000)
        .map(|_| (rng.f64() * 40.0 - 20.0).exp() * if rng.bool() { 1.0 } else { -1.0 })
        .collect();
    let sketch = sketch_of(&values);
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let mut worst = 0.0f64;
    for i in 0..=2000 {
        let q = i as f64 / 2000.0;
        let exact = exact_quantile(&sorted, q);
        let estimate = sketch.quantile(q).expect("non-empty");
        worst = worst.max((estimate - exact).abs() / exact.abs());
    }
    assert!(worst <= DEFAULT_ALPHA * (1.0 + 1e-9), "worst error {worst}");
}

#[test]
fn merged_sketches_equal_the_whole_and_stay_accurate() {
    for (name, values) in all_value_sets() {
        // 24 even chunks, merged left to right.
        let whole = sketch_of(&values);
        let chunk = values.len().div_ceil(24);
        let mut merged = DdSketch::default();
        for part in values.chunks(chunk) {
            merged.merge(&sketch_of(part)).expect("same alpha");
        }
        assert_eq!(merged, whole, "{name}: 24 chunks");
        assert_quantiles_accurate(&format!("{name} merged 24"), &merged, &values);

        // Uneven cuts, merged right to left.
        let mut rng = fastrand::Rng::with_seed(values.len() as u64);
        let mut cuts: Vec<usize> = (0..7).map(|_| rng.usize(0..=values.len())).collect();
        cuts.extend([0, values.len()]);
        cuts.sort_unstable();
        let mut merged = DdSketch::default();
        for pair in cuts.windows(2).rev() {
            merged
                .merge(&sketch_of(&values[pair[0]..pair[1]]))
                .expect("same alpha");
        }
        assert_eq!(merged, whole, "{name}: uneven cuts {cuts:?}");
        assert_quantiles_accurate(&format!("{name} merged uneven"), &merged, &values);
    }
}

#[test]
fn zero_is_exact_and_subnormals_count_as_zero() {
    let mut sketch = DdSketch::default();
    for v in [0.0, -0.0, 0.0, 5e-324, -1e-310, 3.0, -2.0] {
        assert!(sketch.insert(v));
    }
    // Sorted: -2, -1e-310, -0, 0, 0, 5e-324, 3: ranks 1..=5 fall in the zero bucket.
    assert_eq!(sketch.quantile(0.5), Some(0.0));
    assert_eq!(sketch.quantile(0.0), Some(-2.0));
    assert_eq!(sketch.quantile(1.0), Some(3.0));
    let only_zeros = sketch_of(&[0.0; 10]);
    for q in QUANTILES {
        assert_eq!(only_zeros.quantile(q), Some(0.0));
    }
}

#[test]
fn quantile_edge_cases() {
    let empty = DdSketch::default();
    assert!(empty.is_empty());
    assert_eq!(empty.quantile(0.5), None);
    assert_eq!(empty.min(), None);
    let sketch = sketch_of(&[1.0, 2.0, 3.0]);
    for q in [-0.1, 1.1, f64::NAN, f64::INFINITY] {
        assert_eq!(sketch.quantile(q), None, "q {q}");
    }
    assert_eq!(sketch.min(), Some(1.0));
    assert_eq!(sketch.max(), Some(3.0));
    let one = sketch_of(&[7.25]);
    for q in QUANTILES {
        assert_eq!(one.quantile(q), Some(7.25));
    }
    let mut repeated = DdSketch::default();
    assert!(repeated.insert_n(4.0, 1000));
    assert!(repeated.insert_n(9.0, 0));
    assert_eq!(repeated.count(), 1000);
    assert_eq!(repeated.max(), Some(4.0));
    // Extreme magnitudes index, estimate and round-trip without overflow or underflow.
    let m = f64::MIN_POSITIVE;
    for values in [
        vec![m, 1.5 * m, 2.0 * m, 3.0 * m, -m, -2.0 * m],
        vec![
            f64::MAX,
            0.7 * f64::MAX,
            0.5 * f64::MAX,
            -f64::MAX,
            -0.6 * f64::MAX,
        ],
    ] {
        let sketch = sketch_of(&values);
        assert_quantiles_accurate("extremes", &sketch, &values);
        let back = DdSketch::decode(&sketch.encode()).expect("decodes");
        assert_eq!(back, sketch);
    }
    // Both ends in one store: far beyond 4096 buckets, so the smallest collapse upwards.
    let both = sketch_of(&[m, 1.0, f64::MAX, f64::MAX]);
    assert!(both.quantile(0.34).expect("non-empty") > 1e280);
    assert_eq!(both.quantile(0.0), Some(m));
}

#[test]
fn non_finite_values_are_refused() {
    let mut sketch = sketch_of(&[1.0, 2.0]);
    let before = sketch.clone();
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(!sketch.insert(v), "{v} accepted");
        assert!(!sketch.insert_n(v, 3), "{v} accepted");
    }
    assert_eq!(sketch, before);
    assert_eq!(sketch.count(), 2);
}

#[test]
fn alpha_out_of_range_is_refused_naming_the_value() {
    for (alpha, shown) in [
        (0.0, "α = 0:"),
        (-0.01, "α = -0.01:"),
        (1.0, "α = 1:"),
        (1.5, "α = 1.5:"),
        (1e-9, "α = 0.000000001:"),
        (f64::NAN, "α = NaN:"),
        (f64::INFINITY, "α = inf:"),
    ] {
        let err = DdSketch::new(alpha).expect_err("refused");
        let message = err.to_string();
        assert!(message.contains(shown), "{message}");
        assert!(
            message.contains("from 1e-6 up to (but excluding) 1"),
            "{message}"
        );
    }
    // Every accepted α keeps its guarantee while the data fits in 4096 buckets: a narrow
    // set for all, a wide one (a factor 1000) where it fits.
    let narrow: Vec<f64> = (0..1000).map(|i| 100.0 * (1.0 + i as f64 * 1e-6)).collect();
    let wide: Vec<f64> = (1..1000).map(|i| i as f64 * 0.37).collect();
    for alpha in [MIN_ALPHA, 1e-4, 0.001, 0.01, 0.5, 0.999] {
        assert_eq!(DdSketch::new(alpha).expect("accepted").alpha(), alpha);
        for values in [&narrow, &wide] {
            if values == &wide && alpha < 0.001 {
                continue;
            }
            let mut sketch = DdSketch::new(alpha).expect("accepted");
            for v in values {
                sketch.insert(*v);
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            for q in QUANTILES {
                let exact = exact_quantile(&sorted, q);
                let estimate = sketch.quantile(q).expect("non-empty");
                let error = (estimate - exact).abs() / exact;
                assert!(error <= alpha * (1.0 + 1e-9), "α {alpha} q {q}: {error}");
            }
        }
    }
}

#[test]
fn merging_different_alpha_is_refused() {
    let mut a = sketch_of(&[1.0, 2.0]);
    let b = DdSketch::new(0.01).expect("valid");
    let before = a.clone();
    let err = a.merge(&b).expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("α = 0.005") && message.contains("α = 0.01"),
        "{message}"
    );
    assert_eq!(a, before);
}

#[test]
fn collapse_bounds_size_and_keeps_high_quantiles() {
    // Magnitudes from 1e-300 to 1e300, far beyond 4096 buckets, both signs.
    let mut rng = fastrand::Rng::with_seed(99);
    let values: Vec<f64> = (0..50_000)
        .map(|_| {
            let v = 10f64.powf(rng.f64() * 600.0 - 300.0);
            if rng.u8(..4) == 0 {
                -v
            } else {
                v
            }
        })
        .collect();
    let whole = sketch_of(&values);
    assert!(whole.positive.counts.len() <= MAX_BINS_PER_STORE);
    assert!(whole.negative.counts.len() <= MAX_BINS_PER_STORE);
    let mut merged = DdSketch::default();
    for part in values.chunks(3000) {
        merged.merge(&sketch_of(part)).expect("same alpha");
    }
    assert!(merged.positive.counts.len() <= MAX_BINS_PER_STORE);
    assert!(merged.negative.counts.len() <= MAX_BINS_PER_STORE);
    assert_eq!(merged.count(), values.len() as u64);
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    // The positive store keeps the largest magnitudes (a factor γ^4095 ≈ 6e17 below the
    // maximum), the negative store the smallest (the same factor above the negative value
    // closest to zero); the rest collapsed.
    let max = sorted[sorted.len() - 1];
    let kept_from = whole.value_of(whole.index_of(max) - 4095);
    let closest_negative = sorted
        .iter()
        .copied()
        .filter(|v| *v < 0.0)
        .fold(f64::MIN, f64::max);
    let kept_to = whole.value_of(whole.index_of(closest_negative.abs()) + 4095);
    for sketch in [&whole, &merged] {
        for i in 0..=1000 {
            let q = i as f64 / 1000.0;
            let exact = exact_quantile(&sorted, q);
            let estimate = sketch.quantile(q).expect("non-empty");
            let kept = exact > kept_from || (exact < 0.0 && exact.abs() < kept_to);
            if kept || q == 0.0 || q == 1.0 {
                assert!(
                    (estimate - exact).abs() <= DEFAULT_ALPHA * exact.abs() * 1.000_001,
                    "q {q}: {estimate} vs {exact}"
                );
            } else {
                // Collapsed ranks: only ever over-estimated.
                assert!(estimate >= exact * (1.0 - DEFAULT_ALPHA), "q {q}");
            }
        }
    }
    let back = DdSketch::decode(&merged.encode()).expect("decodes");
    assert_eq!(back, merged);
}

/// Sketches worth round-tripping: generated, NAB, empty, zeros only, collapsed.
fn sample_sketches() -> Vec<DdSketch> {
    let mut sketches: Vec<DdSketch> = all_value_sets()
        .iter()
        .map(|(_, values)| sketch_of(values))
        .collect();
    sketches.push(DdSketch::default());
    sketches.push(sketch_of(&[0.0, -0.0]));
    sketches.push(sketch_of(&[1.0, 1e10, 1e300, -1e-300, -5.0]));
    let mut coarse = DdSketch::new(0.2).expect("valid");
    coarse.insert_n(3.0, u64::MAX / 2);
    sketches.push(coarse);
    let mut wide = DdSketch::default();
    for e in -300..300 {
        wide.insert(10f64.powi(e));
    }
    sketches.push(wide);
    sketches
}

#[test]
fn encode_decode_round_trip() {
    for sketch in sample_sketches() {
        let bytes = sketch.encode();
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back = DdSketch::decode(&bytes).expect("own encoding decodes");
        assert_eq!(back, sketch);
        assert_eq!(back.encode(), bytes, "encoding is canonical");
        // Version 2 leaves the bounds to the rollup row: given them, every answer is the same.
        let (min, max) = (sketch.min, sketch.max);
        for q in QUANTILES {
            assert_eq!(back.quantile_within(q, min, max), sketch.quantile(q));
        }
        if let (Some(lo), Some(hi)) = (back.min(), back.max()) {
            assert!(lo.is_finite() && hi.is_finite() && lo <= hi, "{lo} {hi}");
        }
        // Version 1 rows (written before) still decode, bounds included, and re-encode as 2.
        let old = sketch.encode_v1();
        assert_eq!(old[0], FORMAT_VERSION_1);
        let back = DdSketch::decode(&old).expect("version 1 decodes");
        assert_eq!(back, sketch);
        assert_eq!((back.min(), back.max()), (sketch.min(), sketch.max()));
        for q in QUANTILES {
            assert_eq!(back.quantile(q), sketch.quantile(q));
        }
        assert_eq!(back.encode(), bytes);
    }
}

#[test]
fn version_2_is_smaller_and_packs_counts() {
    // A day of 5-minute samples of a CPU percentage: few values per bucket.
    let mut rng = fastrand::Rng::with_seed(5);
    let day: Vec<f64> = (0..288)
        .map(|_| (rng.f64() * 40_000.0).round() / 1000.0 + 20.0)
        .collect();
    let sketch = sketch_of(&day);
    let (v1, v2) = (sketch.encode_v1().len(), sketch.encode().len());
    assert!(
        v2 * 2 < v1 + 24,
        "version 2 {v2} B against version 1 {v1} B"
    );
    // Counts wider than a byte and a custom α round-trip.
    let mut wide = DdSketch::new(0.01).expect("valid");
    wide.insert_n(5.0, u64::MAX / 4);
    wide.insert_n(-7.0, 300);
    wide.insert(0.0);
    let bytes = wide.encode();
    assert_eq!(bytes[1], FLAG_CUSTOM_ALPHA);
    let back = DdSketch::decode(&bytes).expect("decodes");
    assert_eq!(back, wide);
    assert_eq!(back.alpha(), 0.01);
    let lo = back.min().expect("non-empty");
    let hi = back.max().expect("non-empty");
    assert!((lo + 7.0).abs() <= 0.01 * 7.0 * 1.000_001, "{lo}");
    assert!((hi - 5.0).abs() <= 0.01 * 5.0 * 1.000_001, "{hi}");
}

/// Uses a decoded sketch every way, to show nothing panics on it.
fn exercise(sketch: &DdSketch) {
    for q in QUANTILES {
        let _ = sketch.quantile(q);
    }
    let bytes = sketch.encode();
    assert_eq!(DdSketch::decode(&bytes).as_ref(), Ok(sketch));
    let mut copy = sketch.clone();
    let _ = copy.merge(sketch);
    copy.insert(1.0);
    copy.insert(-1e300);
}

#[test]
fn decode_never_panics_on_random_truncated_or_mutated_bytes() {
    let mut rng = fastrand::Rng::with_seed(0xbad);
    let header = DdSketch::default().encode()[..2].to_vec();
    let header_v1 = DdSketch::default().encode_v1()[..9].to_vec();
    let mut decoded = 0;
    for round in 0..60_000 {
        let len = rng.usize(0..48);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        match round % 5 {
            // Fully random.
            0 => {}
            // A valid version byte.
            1 if !bytes.is_empty() => bytes[0] = FORMAT_VERSION,
            2 if !bytes.is_empty() => bytes[0] = FORMAT_VERSION_1,
            // A valid version 1 header (version and α), random stores and bounds.
            3 => bytes.splice(0..0, header_v1.iter().copied()).for_each(drop),
            // A valid version 2 header (version and flags), random stores.
            _ => bytes.splice(0..0, header.iter().copied()).for_each(drop),
        }
        if let Ok(sketch) = DdSketch::decode(&bytes) {
            exercise(&sketch);
        }
    }
    for bytes in sample_sketches()
        .iter()
        .flat_map(|s| [s.encode(), s.encode_v1()])
    {
        for cut in 0..bytes.len() {
            let err = DdSketch::decode(&bytes[..cut]);
            assert!(
                err.is_err(),
                "prefix of {cut} of {} bytes decoded",
                bytes.len()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            DdSketch::decode(&longer),
            Err(SketchError::TrailingBytes { extra: 1, .. })
        ));
        for _ in 0..500 {
            let mut mutated = bytes.clone();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..mutated.len());
                mutated[at] = rng.u8(..);
            }
            if let Ok(sketch) = DdSketch::decode(&mutated) {
                decoded += 1;
                exercise(&sketch);
            }
        }
    }
    // Mutated counts and bounds often stay valid: the decoded sketches were exercised too.
    assert!(decoded > 1000, "only {decoded} mutated inputs decoded");
}

#[test]
fn decode_errors_name_the_field() {
    let cases: [(&[u8], &str); 10] = [
        (&[2, 4, 0], "the flags at byte 1 is 0x04"),
        (&[2], "ends at byte 1 in the middle of the flags"),
        (&[2, 0, 0, 1, 0, 1, 0], "bit width 0"),
        (&[2, 0, 0, 1, 0, 1, 65, 1], "bit width 65"),
        (&[2, 0, 0, 1, 0, 1, 1, 0x03, 0], "non-zero padding bits"),
        (&[], "ends at byte 0 in the middle of the format version"),
        (&[9], "format version 9 is unknown"),
        (
            &[1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f],
            "the relative accuracy α at byte 1 is 1",
        ),
        (
            &[
                1, 0x7b, 0x14, 0xae, 0x47, 0xe1, 0x7a, 0x74, 0x3f, 0, 0xff, 0x7f,
            ],
            "the positive store's run count at byte 10 is 16383",
        ),
        (
            &[
                1, 0x7b, 0x14, 0xae, 0x47, 0xe1, 0x7a, 0x74, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            "the zero count at byte 9 is a varint longer than 64 bits",
        ),
    ];
    for (bytes, expected) in cases {
        let message = DdSketch::decode(bytes).expect_err("refused").to_string();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

/// Nanoseconds per iteration of `f` over `iterations`.
fn time_ns(iterations: u32, mut f: impl FnMut()) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// An hour of 1 Hz CPU-like percentages: 20 % ± 5 with a spike to ~90 % now and then.
fn cpu_hour(rng: &mut fastrand::Rng) -> Vec<f64> {
    (0..3600)
        .map(|_| {
            let base = if rng.u16(..600) == 0 { 90.0 } else { 20.0 };
            (base + 5.0 * normal(rng)).clamp(0.0, 100.0)
        })
        .collect()
}

/// An hour of 1 Hz RSS-like bytes: 512 MiB growing 1 MiB over the hour, ± 1 MiB noise.
fn rss_hour(rng: &mut fastrand::Rng) -> Vec<f64> {
    (0..3600)
        .map(|i| (512.0 + i as f64 / 3600.0 + normal(rng)) * 1048576.0)
        .collect()
}

#[test]
#[ignore = "figures; run with --release -- --ignored --nocapture"]
fn measure_figures() {
    let mut rng = fastrand::Rng::with_seed(1);
    let cpu = cpu_hour(&mut rng);
    let rss = rss_hour(&mut rng);
    let cpu2 = cpu_hour(&mut rng);
    for alpha in [0.005, 0.01] {
        let build = |values: &[f64]| {
            let mut s = DdSketch::new(alpha).expect("valid");
            values.iter().for_each(|v| {
                s.insert(*v);
            });
            s
        };
        let (c, r) = (build(&cpu), build(&rss));
        println!(
            "α {alpha}: encoded hour @1 Hz: cpu-like {} B ({} buckets), rss-like {} B ({} buckets)",
            c.encode().len(),
            c.positive.iter().count(),
            r.encode().len(),
            r.positive.iter().count(),
        );
        let mut day = DdSketch::new(alpha).expect("valid");
        for _ in 0..24 {
            day.merge(&build(&cpu_hour(&mut rng))).expect("same alpha");
        }
        println!(
            "α {alpha}: encoded day of cpu-like (24 merged hours): {} B",
            day.encode().len()
        );
        for (name, samples) in nab_series() {
            let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
            println!(
                "α {alpha}: NAB {name}: {} values -> {} B",
                values.len(),
                build(&values).encode().len()
            );
        }
    }

    let mut sink = DdSketch::default();
    let values: Vec<f64> = (0..100).flat_map(|_| cpu.iter().copied()).collect();
    let insert = time_ns(1, || {
        for v in &values {
            sink.insert(std::hint::black_box(*v));
        }
    }) / values.len() as f64;
    let rss_values: Vec<f64> = (0..100).flat_map(|_| rss.iter().copied()).collect();
    let insert_rss = time_ns(1, || {
        let mut s = DdSketch::default();
        for v in &rss_values {
            s.insert(std::hint::black_box(*v));
        }
        std::hint::black_box(&s);
    }) / rss_values.len() as f64;
    println!("insert: {insert:.1} ns/value (cpu-like), {insert_rss:.1} ns/value (rss-like, incl. new sketches)");

    let a = sketch_of(&cpu);
    let b = sketch_of(&cpu2);
    let mut targets: Vec<DdSketch> = (0..10_000).map(|_| a.clone()).collect();
    let mut it = targets.iter_mut();
    let merge = time_ns(10_000, || {
        if let Some(t) = it.next() {
            t.merge(std::hint::black_box(&b)).expect("same alpha");
        }
    });
    let clone_merge = time_ns(10_000, || {
        let mut t = a.clone();
        t.merge(std::hint::black_box(&b)).expect("same alpha");
        std::hint::black_box(&t);
    });
    let clone = time_ns(10_000, || {
        std::hint::black_box(a.clone());
    });
    println!(
        "merge two hourly cpu-like sketches: {:.3} µs into 10k distinct targets (cold), \
         {:.3} µs clone + merge (hot), of which clone {:.3} µs",
        merge / 1000.0,
        clone_merge / 1000.0,
        clone / 1000.0
    );

    let mut day = DdSketch::default();
    for _ in 0..24 {
        day.merge(&sketch_of(&cpu_hour(&mut rng)))
            .expect("same alpha");
    }
    for (name, s) in [("hourly cpu", &a), ("daily cpu", &day)] {
        let mut acc = 0.0;
        let quantile = time_ns(100_000, || {
            acc += s.quantile(std::hint::black_box(0.99)).unwrap_or(0.0);
        });
        let p50 = time_ns(100_000, || {
            acc += s.quantile(std::hint::black_box(0.5)).unwrap_or(0.0);
        });
        let bytes = s.encode();
        let encode = time_ns(100_000, || {
            std::hint::black_box(s.encode());
        });
        let decode = time_ns(100_000, || {
            std::hint::black_box(DdSketch::decode(std::hint::black_box(&bytes)).is_ok());
        });
        println!(
            "{name}: quantile p99 {:.3} µs, p50 {:.3} µs, encode {:.3} µs, decode {:.3} µs ({} B) [{acc:.0}]",
            quantile / 1000.0,
            p50 / 1000.0,
            encode / 1000.0,
            decode / 1000.0,
            bytes.len()
        );
    }
}
