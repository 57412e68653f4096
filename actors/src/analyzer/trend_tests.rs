//! Tests of `trend.rs`: the unit tests of its private items, kept apart so the module reads
//! as its logic.

use super::*;
use crate::analyzer::stats::tests::assert_close;

/// One standard normal deviate (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `n` samples at 1 Hz from t = 0: `signal(i)` plus AR(1) noise with lag-1 correlation
/// `rho` and marginal standard deviation `sd`.
fn series(
    rng: &mut fastrand::Rng,
    n: usize,
    rho: f64,
    sd: f64,
    signal: impl Fn(usize) -> f64,
) -> Vec<(TimestampMs, f64)> {
    let innov = sd * (1.0 - rho * rho).sqrt();
    let mut e = sd * normal(rng);
    (0..n)
        .map(|i| {
            if i > 0 {
                e = rho * e + innov * normal(rng);
            }
            (i as TimestampMs * 1000, signal(i) + e)
        })
        .collect()
}

/// Share of `seeds` flat series of `n` points that are not classified `Stable`.
fn false_trend_rate(seeds: u64, n: usize, rho: f64, rule: &TrendRule) -> f64 {
    let mut trends = 0;
    for seed in 0..seeds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let s = series(&mut rng, n, rho, 1.0, |_| 100.0);
        if let Some(f) = fit(&s) {
            let t = classify(&f, 0, Polarity::LowerIsBetter, rule);
            if t.class != TrendClass::Stable || t.direction != Direction::Flat {
                trends += 1;
            }
        }
    }
    trends as f64 / seeds as f64
}

/// Slope, intercept, stderr, t and p-value match scipy.stats.linregress (plain OLS) and
/// the adjusted test matches an independent numpy/scipy implementation, within 1e-9.
#[test]
fn fit_matches_scipy_reference() {
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/trend_reference.json")).unwrap();
    let mut fitted = 0;
    for s in reference["series"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let ts: Vec<i64> = serde_json::from_value(s["ts_ms"].clone()).unwrap();
        let values: Vec<f64> = serde_json::from_value(s["values"].clone()).unwrap();
        let samples: Vec<(i64, f64)> = ts.into_iter().zip(values).collect();
        let got = fit(&samples);
        if s["fit"].is_null() {
            assert!(got.is_none(), "{name}: expected no fit");
            continue;
        }
        let got = got.unwrap();
        let e = &s["fit"];
        let f = |k: &str| e[k].as_f64().unwrap();
        assert_eq!(got.n as u64, e["n"].as_u64().unwrap(), "{name}");
        assert_eq!(got.t0_ms, e["t0_ms"].as_i64().unwrap(), "{name}");
        let pairs = [
            ("slope_per_s", got.slope_per_s),
            ("intercept", got.intercept),
            ("stderr_ols", got.stderr_ols),
            ("t_stat_ols", got.t_stat_ols),
            ("p_value_ols", got.p_value_ols),
            ("r_squared", got.r_squared),
            ("residual_stddev", got.residual_stddev),
            ("mean", got.mean),
            ("stddev", got.stddev),
            ("lag1_autocorr", got.lag1_autocorr),
            ("n_eff", got.n_eff),
            ("stderr", got.stderr),
            ("t_stat", got.t_stat),
            ("p_value", got.p_value),
        ];
        for (k, g) in pairs {
            assert_close(g, f(k), &format!("{name}.{k}"));
        }
        fitted += 1;
    }
    assert!(fitted >= 5, "only {fitted} fits compared");
}

/// NaN and ±∞ are ignored, fewer than 3 finite points or a single instant give `None`,
/// and degenerate inputs do not panic anywhere.
#[test]
fn bad_input() {
    assert!(fit(&[]).is_none());
    assert!(fit(&[(0, 1.0), (1000, 2.0)]).is_none());
    assert!(fit(&[
        (0, 1.0),
        (1000, f64::NAN),
        (2000, f64::INFINITY),
        (3000, 2.0)
    ])
    .is_none());
    assert!(fit(&[(5, 1.0), (5, 2.0), (5, 3.0), (5, 4.0)]).is_none());
    let with_junk = [
        (0, 1.0),
        (1000, f64::NAN),
        (2000, 3.0),
        (3000, f64::NEG_INFINITY),
        (4000, 5.0),
        (5000, 7.0),
    ];
    let clean = [(0, 1.0), (2000, 3.0), (4000, 5.0), (5000, 7.0)];
    assert_eq!(fit(&with_junk), fit(&clean));
    // Out of order input is sorted first.
    let shuffled = [(4000, 5.0), (0, 1.0), (5000, 7.0), (2000, 3.0)];
    assert_eq!(fit(&shuffled), fit(&clean));
    // Extreme timestamps do not overflow.
    let f = fit(&[(i64::MIN, 0.0), (0, 1.0), (i64::MAX, 2.0)]).unwrap();
    assert!(f.slope_per_s.is_finite());
    // A noise-free line: infinite t, p = 0; a constant: t = 0, p = 1.
    let line = fit(&[(0, 1.0), (1000, 2.0), (2000, 3.0), (3000, 4.0)]).unwrap();
    assert_eq!((line.p_value, line.p_value_ols), (0.0, 0.0));
    let flat = fit(&[(0, 2.0), (1000, 2.0), (2000, 2.0), (3000, 2.0)]).unwrap();
    assert_eq!((flat.t_stat, flat.p_value), (0.0, 1.0));
    let rule = TrendRule::default();
    for f in [&line, &flat, &f] {
        for p in [
            Polarity::LowerIsBetter,
            Polarity::HigherIsBetter,
            Polarity::Neutral,
        ] {
            let t = classify(f, 0, p, &rule);
            assert!(!t.reason.is_empty());
            // Without its sentence the trend is otherwise the same.
            let quiet = classify_with(f, 0, p, &rule, false);
            assert!(quiet.reason.is_empty());
            assert_eq!(
                Trend {
                    reason: t.reason.clone(),
                    ..quiet
                },
                t
            );
            let _ = classify(f, -5, p, &rule);
        }
        for c in [0.0, 1.0, f64::NAN, 0.95] {
            for thr in [f64::NAN, 10.0, -10.0, 1e300] {
                let _ = time_to_threshold(f, 0, thr, c);
            }
        }
    }
    assert_eq!(
        classify(&flat, 0, Polarity::LowerIsBetter, &rule).class,
        TrendClass::Stable
    );
    assert_eq!(
        classify(&line, 0, Polarity::LowerIsBetter, &rule).class,
        TrendClass::Degrading
    );
    assert!(time_to_threshold(&line, 3000, 10.0, 1.0).is_none());
    assert!(
        time_to_threshold(&line, 3000, 0.0, 0.95).is_none(),
        "moving away"
    );
    let ttt = time_to_threshold(&line, 3000, 10.0, 0.95).unwrap();
    assert_eq!(
        (ttt.eta_ms, ttt.earliest_ms, ttt.latest_ms),
        (9000, 9000, Some(9000))
    );
}

/// A trend survives a JSON round trip, including the noise-free case whose ratios are
/// "infinite" (`f64::MAX`, since JSON has no ∞).
#[test]
fn trend_round_trips_through_json() {
    let uptime: Vec<(i64, f64)> = (0..600).map(|i| (i * 1000, 5.0 + i as f64)).collect();
    let mut rng = fastrand::Rng::with_seed(9);
    let step = series(&mut rng, 600, 0.0, 1.0, |i| if i < 200 { 1.0 } else { 9.0 });
    for samples in [uptime, step] {
        let f = fit(&samples).unwrap();
        let t = classify(&f, 0, Polarity::Neutral, &TrendRule::default());
        let json = serde_json::to_string(&t).unwrap();
        let back: Trend = serde_json::from_str(&json).unwrap();
        // serde_json's default float parser may be off by one ulp (the workspace does not
        // enable `float_roundtrip`), so numbers are compared to 1e-15.
        assert_json_close(
            &serde_json::to_value(&back).unwrap(),
            &serde_json::to_value(&t).unwrap(),
        );
        assert_eq!(
            (back.class, back.direction, back.reason),
            (t.class, t.direction, t.reason)
        );
    }
    let f = fit(&[(0, 0.0), (1000, 1.0), (2000, 2.0)]).unwrap();
    assert_eq!((f.t_stat, f.p_value), (f64::MAX, 0.0));
}

/// Equal JSON values, numbers within 1e-15 relative.
fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-15 * x.abs().max(y.abs()), "{x} vs {y}");
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len());
            for (k, v) in x {
                assert_json_close(v, &y[k]);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).for_each(|(v, w)| assert_json_close(v, w));
        }
        _ => assert_eq!(a, b),
    }
}

/// Flat noise, white and AR(1) with ρ = 0.5, is `Stable` in at least 99 % of 1,000
/// seeds of 600 points.
#[test]
fn flat_noise_is_stable() {
    let rule = TrendRule::default();
    for rho in [0.0, 0.5] {
        let rate = false_trend_rate(1000, 600, rho, &rule);
        assert!(rate <= 0.01, "rho {rho}: false-trend rate {rate}");
    }
}

/// A leak of 1 MiB/min over an hour at 1 Hz with noise is found as `Degrading` with the
/// slope within 5 % of the truth, and the time it reaches a limit is bracketed.
#[test]
fn slow_leak_is_degrading_and_time_to_limit_is_bracketed() {
    const MIB: f64 = 1024.0 * 1024.0;
    let truth = MIB / 60.0;
    let base = 200.0 * MIB;
    let limit = 300.0 * MIB; // reached 100 min after the start, 40 min after "now"
    let truth_crossing_ms = ((limit - base) / truth * 1000.0).round() as i64;
    let mut covered = 0;
    let seeds = 200;
    for seed in 0..seeds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let s = series(&mut rng, 3600, 0.5, 4.0 * MIB, |i| base + truth * i as f64);
        let f = fit(&s).unwrap();
        let t = classify(
            &f,
            3_600_000,
            polarity_of(names::PROCESS_MEMORY_RSS),
            &TrendRule::default(),
        );
        assert_eq!(t.class, TrendClass::Degrading, "seed {seed}: {}", t.reason);
        assert_eq!(t.direction, Direction::Rising);
        assert!(t.step.is_none());
        let err = (f.slope_per_s - truth).abs() / truth;
        assert!(err < 0.05, "seed {seed}: slope error {err}");
        let now = s[s.len() - 1].0;
        let ttt = time_to_threshold(&f, now, limit, 0.95).unwrap();
        let latest = ttt.latest_ms.unwrap();
        assert!(ttt.earliest_ms <= ttt.eta_ms && ttt.eta_ms <= latest);
        if (ttt.earliest_ms..=latest).contains(&truth_crossing_ms) {
            covered += 1;
        }
    }
    // Nominal 95 %; the lag-1 correction is slightly optimistic.
    assert!(covered >= seeds * 90 / 100, "coverage {covered}/{seeds}");
}

/// A level jump halfway is reported as a step (Stable, Flat), not as a trend, even though
/// the line through it is highly significant.
#[test]
fn step_is_not_a_trend() {
    let rule = TrendRule::default();
    for seed in 0..100 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let s = series(
            &mut rng,
            600,
            0.5,
            1.0,
            |i| if i < 300 { 100.0 } else { 104.0 },
        );
        let f = fit(&s).unwrap();
        assert!(f.p_value < 1e-6);
        let t = classify(&f, 0, Polarity::LowerIsBetter, &rule);
        let step = t
            .step
            .as_ref()
            .unwrap_or_else(|| panic!("seed {seed}: {}", t.reason));
        assert_eq!(
            (t.class, t.direction),
            (TrendClass::Stable, Direction::Flat)
        );
        assert!((step.at_ms - 300_000).abs() <= 10_000, "{}", step.at_ms);
        assert!((step.after_mean - step.before_mean - 4.0).abs() < 0.5);
        assert!(t.reason.contains("step"), "{}", t.reason);
    }
}

/// Numbers in reasons are short: four significant digits, no trailing zeros.
#[test]
fn reason_numbers_are_short() {
    let cases = [
        (0.05, "0.05"),
        (12.0, "12"),
        (-0.35634, "-0.3563"),
        (1234.56, "1235"),
        (2.5e-7, "2.500e-7"),
        (0.0, "0"),
    ];
    for (x, want) in cases {
        assert_eq!(num(x), want);
    }
}

/// Polarity follows the documented table for perfvisor's own names.
#[test]
fn polarity_of_perfvisor_names() {
    use Polarity::*;
    let cases = [
        (names::PROCESS_MEMORY_RSS, LowerIsBetter),
        (names::PROCESS_CPU_UTILIZATION, LowerIsBetter),
        (names::PROCESS_DISK_WRITE_RATE, LowerIsBetter),
        (names::PROCESS_OPEN_FDS, LowerIsBetter),
        (names::PROCESS_FD_LIMIT, Neutral),
        (names::PROCESS_THREADS, Neutral),
        (names::PROCESS_STATE, Neutral),
        (names::PROCESS_UPTIME, Neutral),
        (names::SYSTEM_CPU_COUNT, Neutral),
        (names::SYSTEM_MEMORY_TOTAL, Neutral),
        (names::SYSTEM_MEMORY_AVAILABLE, HigherIsBetter),
        (names::SYSTEM_LOAD_1M, LowerIsBetter),
        (names::SYSTEM_SWAP_USED, LowerIsBetter),
        (names::PERFVISOR_STORAGE_DROPPED, LowerIsBetter),
        (names::PERFVISOR_STORAGE_QUEUE, LowerIsBetter),
        (names::PERFVISOR_STORAGE_STORED, Neutral),
        ("app.operation.parse.duration_seconds", LowerIsBetter),
        ("app.http.requests_per_second", HigherIsBetter),
        ("app.ingest.throughput", HigherIsBetter),
        ("app.cache.entries", Neutral),
        ("app.queue.drops", Neutral),
        ("app.http.errors_total", LowerIsBetter),
        ("app.http.requests_total", HigherIsBetter),
        ("system.disk.free_bytes", HigherIsBetter),
        (names::PERFVISOR_STORAGE_WRITE_ERRORS, LowerIsBetter),
        (names::PERFVISOR_STORAGE_COMPACTION_BACKLOG, LowerIsBetter),
        (names::PERFVISOR_ACTOR_RESTARTS, LowerIsBetter),
        ("some.other.metric", Neutral),
    ];
    for (name, want) in cases {
        assert_eq!(polarity_of(name), want, "{name}");
    }
    assert_eq!(polarity_of(&names::operation_duration("x")), LowerIsBetter);
}

/// A falling throughput is degrading; a rising one improving; a neutral metric keeps its
/// direction but stays `Stable`.
#[test]
fn polarity_decides_the_class() {
    let rule = TrendRule::default();
    let mut rng = fastrand::Rng::with_seed(1);
    let falling = series(&mut rng, 600, 0.0, 1.0, |i| 500.0 - 0.05 * i as f64);
    let f = fit(&falling).unwrap();
    let t = classify(&f, 0, Polarity::HigherIsBetter, &rule);
    assert_eq!(
        (t.direction, t.class),
        (Direction::Falling, TrendClass::Degrading)
    );
    let t = classify(&f, 0, Polarity::LowerIsBetter, &rule);
    assert_eq!(t.class, TrendClass::Improving);
    let t = classify(&f, 0, Polarity::Neutral, &rule);
    assert_eq!(
        (t.direction, t.class),
        (Direction::Falling, TrendClass::Stable)
    );
    assert!(t.reason.starts_with("Falling"), "{}", t.reason);
}

/// Prints the false-trend and detection rates the module doc quotes.
#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn trend_rule_measurements() {
    let rule = TrendRule::default();
    // Columns: plain OLS p < 0.05; adjusted p < 0.05; the full rule with effect floors
    // of 0.5, 1 (the default) and 2 residual SD.
    let floors = [0.5, 1.0, 2.0];
    let verdicts = |f: &LinearFit| {
        let mut v = vec![f.p_value_ols < 0.05, f.p_value < 0.05];
        for floor in floors {
            let r = TrendRule {
                min_effect_sd: floor,
                ..TrendRule::default()
            };
            v.push(classify(f, 0, Polarity::LowerIsBetter, &r).direction != Direction::Flat);
        }
        v
    };
    let rates = |n: usize, rho: f64, change: f64| {
        let mut counts = [0usize; 5];
        for seed in 0..1000 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let slope = change / n as f64;
            let s = series(&mut rng, n, rho, 1.0, |i| 100.0 + slope * i as f64);
            for (c, v) in counts.iter_mut().zip(verdicts(&fit(&s).unwrap())) {
                *c += usize::from(v);
            }
        }
        counts.map(|c| c as f64 / 10.0)
    };
    println!("trend called %: change/SD, n, rho | OLS | adjusted | floor 0.5 | 1 | 2");
    for change in [0.0, 1.0, 2.0] {
        for n in [60, 120, 600] {
            for rho in [0.0, 0.5, 0.8, 0.9] {
                let r = rates(n, rho, change);
                println!(
                    "{change:3.1} {n:4} {rho:.1} | {:5.1} | {:5.1} | {:5.1} | {:5.1} | {:5.1}",
                    r[0], r[1], r[2], r[3], r[4]
                );
            }
        }
    }

    // Ramps of a given total change (in noise SDs) over 600 points: detected as a
    // trend, mistaken for a step, and slope error.
    println!("ramp: change/SD, rho | trend % | step % | max slope error %");
    for rho in [0.0, 0.5] {
        for change in [0.5, 1.0, 2.0, 5.0, 15.0] {
            let (mut found, mut steps, mut worst) = (0, 0, 0.0f64);
            for seed in 0..1000 {
                let mut rng = fastrand::Rng::with_seed(seed);
                let slope = change / 600.0;
                let s = series(&mut rng, 600, rho, 1.0, |i| 100.0 + slope * i as f64);
                let f = fit(&s).unwrap();
                let t = classify(&f, 600_000, Polarity::LowerIsBetter, &rule);
                found += usize::from(t.direction == Direction::Rising);
                steps += usize::from(t.step.is_some());
                worst = worst.max((f.slope_per_s / slope - 1.0).abs());
            }
            println!(
                "{change:4.1} {rho:.1} | {:5.1} | {:5.1} | {:5.1}",
                found as f64 / 10.0,
                steps as f64 / 10.0,
                100.0 * worst
            );
        }
    }

    // The leak of `slow_leak_is_degrading_and_time_to_limit_is_bracketed`, 1,000 seeds.
    const MIB: f64 = 1024.0 * 1024.0;
    let truth = MIB / 60.0;
    let (base, limit) = (200.0 * MIB, 300.0 * MIB);
    let crossing = ((limit - base) / truth * 1000.0).round() as i64;
    for rho in [0.0, 0.5, 0.9] {
        let (mut found, mut worst, mut covered, mut width) = (0, 0.0f64, 0, 0i64);
        for seed in 0..1000 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let s = series(&mut rng, 3600, rho, 4.0 * MIB, |i| base + truth * i as f64);
            let f = fit(&s).unwrap();
            let t = classify(&f, 3_600_000, Polarity::LowerIsBetter, &rule);
            found += usize::from(t.class == TrendClass::Degrading);
            worst = worst.max((f.slope_per_s / truth - 1.0).abs());
            if let Some(ttt) = time_to_threshold(&f, 3_599_000, limit, 0.95) {
                let latest = ttt.latest_ms.unwrap_or(i64::MAX);
                covered += usize::from((ttt.earliest_ms..=latest).contains(&crossing));
                width += (latest - ttt.earliest_ms) / 1000;
            }
        }
        println!(
            "leak 1 MiB/min, noise 4 MiB, rho {rho}: degrading {:.1} %, max slope error \
             {:.2} %, 95 % interval covers the crossing {:.1} %, mean width {} s",
            found as f64 / 10.0,
            100.0 * worst,
            covered as f64 / 10.0,
            width / 1000
        );
    }

    // Steps halfway of a given height (in noise SDs): reported as a step, as a trend.
    println!("step: height/SD, rho | step % | trend %");
    for rho in [0.0, 0.5] {
        for height in [0.0, 0.25, 0.5, 1.0, 2.0, 4.0] {
            let (mut steps, mut trends) = (0, 0);
            for seed in 0..1000 {
                let mut rng = fastrand::Rng::with_seed(seed);
                let s = series(&mut rng, 600, rho, 1.0, |i| {
                    100.0 + if i < 300 { 0.0 } else { height }
                });
                let f = fit(&s).unwrap();
                let t = classify(&f, 600_000, Polarity::LowerIsBetter, &rule);
                steps += usize::from(t.step.is_some());
                trends += usize::from(t.direction != Direction::Flat);
            }
            println!(
                "{height:4.2} {rho:.1} | {:5.1} | {:5.1}",
                steps as f64 / 10.0,
                trends as f64 / 10.0
            );
        }
    }
}

/// Cost of `fit` + `classify` on a 600-point window.
#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn trend_cost() {
    let mut rng = fastrand::Rng::with_seed(3);
    let s = series(&mut rng, 600, 0.5, 1.0, |i| 100.0 + 0.001 * i as f64);
    let rule = TrendRule::default();
    let iters = 20_000;
    let start = std::time::Instant::now();
    let mut keep = 0.0;
    for _ in 0..iters {
        let f = fit(std::hint::black_box(&s)).unwrap();
        let t = classify(&f, 600_000, Polarity::LowerIsBetter, &rule);
        keep += t.effect_sd;
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    println!("fit+classify, 600 points: {ns:.0} ns/window ({keep:.1})");
}

/// A series that holds one value fits as exactly flat: slope, spread and residuals 0,
/// p-values 1, no step, the mean the value itself; its time figures are those of any
/// series sampled at the same moments; and it classifies `Stable` under every polarity.
#[test]
fn a_steady_series_fits_exactly_flat() {
    let times: Vec<TimestampMs> = (0..601).map(|i| i * 1000 + (i % 7) * 13).collect();
    let steady: Vec<(TimestampMs, f64)> = times.iter().map(|&t| (t, 0.1)).collect();
    let varying: Vec<(TimestampMs, f64)> =
        times.iter().map(|&t| (t, 0.1 + (t % 5) as f64)).collect();
    let f = fit(&steady).unwrap();
    let g = fit(&varying).unwrap();
    assert_eq!(
        (
            f.slope_per_s,
            f.stderr,
            f.stderr_ols,
            f.sse,
            f.stddev,
            f.residual_stddev
        ),
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(
        (f.p_value, f.p_value_ols, f.t_stat, f.r_squared),
        (1.0, 1.0, 0.0, 0.0)
    );
    assert_eq!(
        (f.mean, f.intercept, f.n, &f.best_step),
        (0.1, 0.1, 601, &None)
    );
    assert_eq!((f.t0_ms, f.span_ms), (g.t0_ms, g.span_ms));
    assert_close(f.time_mean_s, g.time_mean_s, "time mean");
    assert_close(f.time_sxx, g.time_sxx, "time sxx");
    for polarity in [
        Polarity::HigherIsBetter,
        Polarity::LowerIsBetter,
        Polarity::Neutral,
    ] {
        let t = classify(&f, 0, polarity, &TrendRule::default());
        assert_eq!(t.class, TrendClass::Stable, "{polarity:?}");
    }
    // Two points, or one moment, are no line.
    assert!(fit(&steady[..2]).is_none());
    assert!(fit(&[(5, 1.0), (5, 1.0), (5, 1.0)]).is_none());
}
