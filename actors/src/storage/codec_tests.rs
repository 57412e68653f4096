//! Tests of `codec.rs`, kept beside it so the module reads on its own.
use super::*;

/// Asserts that `decoded` equals `samples` bit for bit.
fn assert_bit_exact(samples: &[(i64, f64)], decoded: &[(i64, f64)]) {
    assert_eq!(samples.len(), decoded.len(), "sample count");
    for (i, (a, b)) in samples.iter().zip(decoded).enumerate() {
        assert_eq!(a.0, b.0, "timestamp of sample {i}");
        assert_eq!(
            a.1.to_bits(),
            b.1.to_bits(),
            "value of sample {i}: {:?} vs {:?}",
            a.1,
            b.1
        );
    }
}

/// Encodes with [`encode_chunk`], decodes, checks bit-exactness and returns the blob.
fn round_trip(samples: &[(i64, f64)]) -> Vec<u8> {
    let blob = encode_chunk(samples);
    let decoded = decode_chunk(&blob).expect("a blob we wrote decodes");
    assert_bit_exact(samples, &decoded);
    blob
}

/// 1 Hz timestamps in ms with a timer's jitter: a few ms late, now and then 4..30 ms.
fn jittered_ts(rng: &mut fastrand::Rng, n: usize) -> Vec<i64> {
    (0..n as i64)
        .map(|i| {
            let late = if rng.u8(..100) == 0 {
                rng.i64(4..30)
            } else {
                rng.i64(0..=3)
            };
            1_700_000_000_123 + 1000 * i + late
        })
        .collect()
}

/// Special floats that must survive bit for bit.
const SPECIALS: [u64; 14] = [
    0x7ff8_0000_0000_0000, // quiet NaN
    0xfff8_0000_0000_0000, // negative quiet NaN
    0x7ff0_0000_0000_0001, // signalling NaN with payload 1
    0x7ff4_dead_beef_cafe, // NaN with a payload
    0x8000_0000_0000_0000, // -0.0
    0x0000_0000_0000_0000, // 0.0
    0x7ff0_0000_0000_0000, // +inf
    0xfff0_0000_0000_0000, // -inf
    0x0000_0000_0000_0001, // smallest subnormal
    0x800f_ffff_ffff_ffff, // largest negative subnormal
    0x0010_0000_0000_0000, // MIN_POSITIVE
    0x7fef_ffff_ffff_ffff, // MAX
    0xffef_ffff_ffff_ffff, // MIN
    0x3cb0_0000_0000_0000, // EPSILON
];

#[test]
fn empty_input_round_trips_as_raw() {
    let blob = round_trip(&[]);
    assert_eq!(blob, vec![FORMAT_RAW, 0]);
    assert_eq!(decode_chunk(&encode_raw(&[])).expect("empty raw"), vec![]);
}

#[test]
fn one_sample_round_trips() {
    // A NaN costs its 64 bits and the coder's flush: raw is as small.
    let blob = round_trip(&[(i64::MIN, f64::NAN)]);
    assert!(blob.len() <= 2 + RAW_SAMPLE_BYTES);
    // A short decimal is cheapest as a decimal blob.
    for sample in [(0, 0.0), (1_700_000_000_123, 12.34)] {
        let blob = round_trip(&[sample]);
        assert_eq!(blob[0], FORMAT_DECIMAL);
        assert!(blob.len() < 2 + RAW_SAMPLE_BYTES, "{} B", blob.len());
    }
}

#[test]
fn special_floats_are_bit_exact_raw_and_compressed() {
    let specials: Vec<(i64, f64)> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, &bits)| (i as i64, f64::from_bits(bits)))
        .collect();
    round_trip(&specials);
    assert_bit_exact(
        &specials,
        &decode_chunk(&encode_raw(&specials)).expect("raw"),
    );
    assert_bit_exact(
        &specials,
        &decode_chunk(&encode_packed(&specials)).expect("packed"),
    );

    // Mixed into a long, otherwise compressible series so the pco path is taken.
    let mut rng = fastrand::Rng::with_seed(1);
    let ts = jittered_ts(&mut rng, 3600);
    let samples: Vec<(i64, f64)> = ts
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let v = if i % 97 == 0 {
                f64::from_bits(SPECIALS[i / 97 % SPECIALS.len()])
            } else {
                (i / 10) as f64 * 0.01
            };
            (t, v)
        })
        .collect();
    let blob = round_trip(&samples);
    assert_eq!(blob[0], FORMAT_PCO);
}

#[test]
fn duplicate_negative_and_extreme_timestamps_round_trip() {
    let ts = [
        i64::MIN,
        i64::MIN,
        -5,
        -5,
        -5,
        0,
        0,
        1,
        1_700_000_000_000,
        i64::MAX,
        i64::MAX,
    ];
    let samples: Vec<(i64, f64)> = ts.iter().map(|&t| (t, t as f64)).collect();
    round_trip(&samples);
    // Also compressed: a long series where every timestamp repeats.
    let samples: Vec<(i64, f64)> = (0..2000).map(|i| (-1000 + i / 3, 1.5)).collect();
    assert_eq!(round_trip(&samples)[0], FORMAT_PCO);
}

#[test]
fn property_round_trips_with_fixed_seed() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for case in 0..300 {
        let n = match case % 6 {
            0 => rng.usize(1..10),
            1 => 60,
            2 => rng.usize(10..700),
            3 => 3600,
            4 if case % 24 == 4 => 16384,
            _ => rng.usize(0..5000),
        };
        let ts: Vec<i64> = match rng.u8(..5) {
            0 => jittered_ts(&mut rng, n),
            1 => {
                // sorted random, wide range, with duplicates
                let mut ts: Vec<i64> = (0..n).map(|_| rng.i64(..) >> rng.u32(0..60)).collect();
                ts.sort_unstable();
                ts
            }
            2 => (0..n as i64).map(|i| i * 300_000 - 86_400_000).collect(),
            // unsorted: not what the caller sends, but still lossless
            3 => (0..n).map(|_| rng.i64(..)).collect(),
            _ => {
                let mut t = rng.i64(-1 << 50..1 << 50);
                (0..n)
                    .map(|_| {
                        t = t.saturating_add(rng.i64(0..3));
                        t
                    })
                    .collect()
            }
        };
        let mut level = rng.f64() * 100.0;
        let values: Vec<f64> = (0..n)
            .map(|_| match case % 5 {
                0 => f64::from_bits(rng.u64(..)),
                1 => (rng.u64(200..300) * 4096) as f64,
                2 => {
                    level += rng.f64() - 0.5;
                    level
                }
                3 if rng.u8(..20) == 0 => f64::from_bits(SPECIALS[rng.usize(..SPECIALS.len())]),
                3 => rng.u32(..1000) as f64 / 100.0,
                _ => 42.0,
            })
            .collect();
        let samples: Vec<(i64, f64)> = ts.into_iter().zip(values).collect();
        round_trip(&samples);
        assert_bit_exact(
            &samples,
            &decode_chunk(&encode_raw(&samples)).expect("raw decodes"),
        );
        let packed = encode_packed(&samples);
        assert_bit_exact(&samples, &decode_chunk(&packed).expect("packed decodes"));
    }
}

#[test]
fn raw_format_layout_and_round_trip() {
    let samples = [(1_700_000_000_123, 0.5), (-1, f64::NEG_INFINITY)];
    let blob = encode_raw(&samples);
    assert_eq!(blob.len(), 2 + 2 * RAW_SAMPLE_BYTES);
    assert_eq!(&blob[..2], &[FORMAT_RAW, 2]);
    assert_eq!(&blob[2..10], &1_700_000_000_123_i64.to_le_bytes());
    assert_eq!(&blob[10..18], &0.5_f64.to_bits().to_le_bytes());
    assert_bit_exact(&samples, &decode_chunk(&blob).expect("raw decodes"));
    // 200 samples need a two-byte varint count.
    let samples: Vec<(i64, f64)> = (0..200).map(|i| (i, i as f64)).collect();
    let blob = encode_raw(&samples);
    assert_eq!(blob.len(), raw_len(200));
    assert_eq!(&blob[..3], &[FORMAT_RAW, 0xc8, 0x01]);
    assert_bit_exact(&samples, &decode_chunk(&blob).expect("raw decodes"));
}

#[test]
fn oversized_chunk_is_written_raw_and_round_trips() {
    let samples: Vec<(i64, f64)> = (0..MAX_COMPRESSED_SAMPLES as i64 + 1)
        .map(|i| (i * 1000, 1.0))
        .collect();
    let blob = round_trip(&samples);
    assert_eq!(blob[0], FORMAT_RAW);
}

#[test]
fn realistic_1hz_process_series_compress_under_2_bytes_per_sample() {
    let mut rng = fastrand::Rng::with_seed(2024);
    let n = 3600;
    let ts = jittered_ts(&mut rng, n);
    // RSS: whole pages, mostly flat, sometimes a step of a few pages.
    let mut pages = 25_000_u64;
    let rss: Vec<f64> = (0..n)
        .map(|_| {
            if rng.u8(..10) == 0 {
                pages = pages.saturating_add_signed(rng.i64(-40..60));
            }
            (pages * 4096) as f64
        })
        .collect();
    // CPU time: utime/100 + stime/100 as perfvisor sums them, ~40 % busy.
    let (mut utime, mut stime) = (123_456_u64, 7_890_u64);
    let cpu: Vec<f64> = (0..n)
        .map(|_| {
            utime += rng.u64(30..50);
            stime += rng.u64(0..5);
            utime as f64 / 100.0 + stime as f64 / 100.0
        })
        .collect();
    for (name, values) in [("rss", rss), ("cpu time", cpu)] {
        let samples: Vec<(i64, f64)> = ts.iter().copied().zip(values).collect();
        let blob = round_trip(&samples);
        let per_sample = blob.len() as f64 / n as f64;
        assert!(
            per_sample <= 2.0,
            "{name}: {per_sample:.3} bytes/sample, expected <= 2"
        );
    }
}

/// Encodes `samples` as [`FORMAT_DECIMAL`] (whatever [`encode_chunk`] would pick), decodes
/// and checks bit-exactness; returns the blob.
fn decimal_round_trip(samples: &[(i64, f64)]) -> Vec<u8> {
    let blob = encode_decimal(samples).expect("a decimal blob that round-trips");
    assert_eq!(blob[0], FORMAT_DECIMAL);
    let decoded = decode_chunk(&blob).expect("a blob we wrote decodes");
    assert_bit_exact(samples, &decoded);
    blob
}

#[test]
fn decimal_format_round_trips_edge_values_bit_exactly() {
    let mut values: Vec<f64> = SPECIALS.iter().map(|&b| f64::from_bits(b)).collect();
    values.extend([
        -0.0,
        0.1 + 0.2,
        0.3,
        1e300,
        -1e-300,
        5e-324,
        -2.2250738585072014e-308,
        1e22,
        1e23,
        9_007_199_254_740_993.0,
        -9_007_199_254_740_992.0,
        123_456_789.0,
        0.123_456_789_012_345_68,
        51.846_000_000_000_004,
        51.846,
        f64::from_bits(0x7ff8_0000_0000_0001),
        f64::from_bits(0xfff0_0000_0000_0001),
    ]);
    // Each value alone, all together, and each among short decimals.
    for &v in &values {
        decimal_round_trip(&[(0, v)]);
        let mixed: Vec<(i64, f64)> = (0..40)
            .map(|i| (i * 300_000, if i == 17 { v } else { i as f64 * 0.125 }))
            .collect();
        decimal_round_trip(&mixed);
    }
    let all: Vec<(i64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as i64, v))
        .collect();
    decimal_round_trip(&all);
    // Integers, exact decimals of every scale, and the float noise of sums.
    for k in 0..=decimal::MAX_SCALE + 2 {
        let p = 10f64.powi(k as i32);
        let samples: Vec<(i64, f64)> = (0..100)
            .map(|i| (i, (i * 7919 % 1000) as f64 / p))
            .collect();
        decimal_round_trip(&samples);
    }
    let sums: Vec<(i64, f64)> = (0..200).map(|i| (i, 0.1 * i as f64 + 0.2)).collect();
    decimal_round_trip(&sums);
}

#[test]
fn decimal_format_round_trips_random_chunks() {
    let mut rng = fastrand::Rng::with_seed(0xdec);
    for case in 0..400 {
        let n = rng.usize(1..300);
        let mut t = rng.i64(..);
        let samples: Vec<(i64, f64)> = (0..n)
            .map(|_| {
                t = match case % 3 {
                    0 => t.wrapping_add(300_000),
                    1 => t.wrapping_add(rng.i64(-5..1000)),
                    _ => rng.i64(..),
                };
                let v = match case % 4 {
                    0 => f64::from_bits(rng.u64(..)),
                    1 => rng.i64(-100_000..100_000) as f64 / 10f64.powi(rng.i32(0..8)),
                    2 => rng.f64() * 1e6 - 5e5,
                    _ if rng.u8(..8) == 0 => f64::from_bits(SPECIALS[rng.usize(..SPECIALS.len())]),
                    _ => rng.u32(..100_000) as f64 * 0.001,
                };
                (t, v)
            })
            .collect();
        decimal_round_trip(&samples);
    }
}

#[test]
fn decimal_format_beats_pco_on_a_day_of_5_minute_decimals() {
    // A CPU percentage with three decimals and the float noise of how it was computed
    // (51.846000000000004), every 5 minutes for a day.
    let mut rng = fastrand::Rng::with_seed(288);
    let mut level = 45_000_i64;
    let samples: Vec<(i64, f64)> = (0..288)
        .map(|i| {
            level = (level + rng.i64(-2000..=2000)).clamp(0, 100_000);
            let v = level as f64 / 1000.0;
            let v = if rng.u8(..4) == 0 {
                f64::from_bits(v.to_bits() + 1)
            } else {
                v
            };
            (1_700_000_000_000 + i * 300_000, v)
        })
        .collect();
    let decimal = decimal_round_trip(&samples);
    let pco = encode_pco(&samples).expect("pco");
    assert!(
        decimal.len() + decimal.len() / 16 < pco.len(),
        "decimal {} B, pco {} B",
        decimal.len(),
        pco.len()
    );
    assert_eq!(encode_chunk(&samples), decimal);
}

/// Valid blobs of every format and several sizes, for the corruption tests.
fn valid_blobs() -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(9);
    let mut blobs = Vec::new();
    for n in [1, 3, 60, 700] {
        let ts = jittered_ts(&mut rng, n);
        let samples: Vec<(i64, f64)> = ts
            .into_iter()
            .map(|t| (t, rng.u32(..500) as f64 * 0.01))
            .collect();
        blobs.push(encode_chunk(&samples));
        blobs.push(encode_raw(&samples[..n.min(5)]));
        blobs.push(encode_decimal(&samples).expect("round-trips"));
    }
    assert!(blobs.iter().any(|b| b[0] == FORMAT_PCO));
    assert!(blobs.iter().any(|b| b[0] == FORMAT_DECIMAL));
    blobs
}

#[test]
fn every_truncation_is_an_error() {
    for blob in valid_blobs() {
        for len in 0..blob.len() {
            assert!(
                decode_chunk(&blob[..len]).is_err(),
                "a {len}-byte prefix of a {}-byte format-{} blob decoded",
                blob.len(),
                blob[0]
            );
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(
            decode_chunk(&longer).is_err(),
            "a trailing byte was accepted"
        );
    }
}

#[test]
fn corrupt_and_random_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(77);
    for blob in valid_blobs() {
        for i in 0..blob.len() {
            for bit in 0..8 {
                let mut bad = blob.clone();
                bad[i] ^= 1 << bit;
                let _ = decode_chunk(&bad);
            }
            for byte in [0x00, 0xff, rng.u8(..)] {
                let mut bad = blob.clone();
                bad[i] = byte;
                let _ = decode_chunk(&bad);
            }
        }
    }
    for _ in 0..3000 {
        let mut bytes: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
        if let Some(tag) = bytes.first_mut() {
            *tag = rng.u8(..5);
        }
        let _ = decode_chunk(&bytes);
    }
}

#[test]
fn errors_name_the_problem() {
    let msg = |blob: &[u8]| decode_chunk(blob).expect_err("must fail").to_string();
    assert_eq!(
        msg(&[7, 0]),
        "unknown chunk format 7 (this build reads 0 = raw, 1 = pco, 2 = decimal and 3 = packed)"
    );
    assert!(msg(&[FORMAT_PACKED, 2, 0, 0]).contains("corrupt packed chunk"));
    assert!(
        msg(&[FORMAT_PACKED, 0x90, 0x1c, 0, 0]).contains("3600 packed samples claimed in 2 bytes")
    );
    assert_eq!(
        msg(&[FORMAT_RAW, 0x90, 0x1c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
        "truncated chunk: header says 3600 samples (57600 bytes of raw data), \
         blob holds 12 bytes"
    );
    assert!(msg(&[]).starts_with("empty chunk blob"));
    assert!(msg(&[FORMAT_RAW, 0x80]).contains("found the end of the blob"));
    assert!(msg(&[FORMAT_RAW, 1, 0, 0]).starts_with("truncated chunk"));
    assert!(msg(&[FORMAT_PCO, 0]).contains("says 0 samples"));
    assert!(msg(&[FORMAT_PCO, 0xff, 0xff, 0xff, 0x7f]).contains("compressed chunks hold"));
    assert!(msg(&[FORMAT_PCO, 1, 0xde, 0xad]).starts_with("corrupt compressed chunk"));
    let mut blob = encode_raw(&[(1, 1.0)]);
    blob.push(9);
    assert_eq!(
        msg(&blob),
        "trailing data after the 1 samples of the chunk: 1 extra byte(s), expected the blob \
         to end there"
    );
    let max = [
        FORMAT_RAW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert!(msg(&max).contains("18446744073709551615 samples"));
    let over = [
        FORMAT_RAW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
    ];
    assert!(msg(&over).contains("over u64::MAX"));
}

/// Writes the seed corpora of the fuzz targets `chunk_decoder` (blobs of all formats,
/// written by the real encoders) and `chunk_roundtrip` (samples as 16-byte little-endian
/// `(i64, f64 bits)` pairs) under `fuzz/corpus/`. Run by hand:
/// `cargo test -p perfvisor-actors --lib write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes the fuzz seed corpora; run by hand"]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut rng = fastrand::Rng::with_seed(0xf022);
    let specials: Vec<(i64, f64)> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, &bits)| (1_700_000_000_000 + 1000 * i as i64, f64::from_bits(bits)))
        .collect();
    let jittered = |rng: &mut fastrand::Rng, n: usize, step: f64| -> Vec<(i64, f64)> {
        let mut level = 50.0;
        jittered_ts(rng, n)
            .into_iter()
            .map(|t| {
                level += (rng.f64() - 0.5) * step;
                (t, (level * 100.0_f64).round() / 100.0)
            })
            .collect()
    };
    let series: Vec<(&str, Vec<(i64, f64)>)> = vec![
        ("empty", vec![]),
        ("one", vec![(1_700_000_000_123, 12.34)]),
        ("three", jittered(&mut rng, 3, 1.0)),
        ("specials", specials),
        ("gauge_60", jittered(&mut rng, 60, 2.0)),
        (
            "counter_60",
            (0..60).map(|i| (i * 1000, (i * i) as f64)).collect(),
        ),
        (
            "pages_120",
            (0..120)
                .map(|i| {
                    (
                        1_700_000_000_000 + i * 1000,
                        ((25_000 + i / 7) * 4096) as f64,
                    )
                })
                .collect(),
        ),
        (
            "extreme_ts",
            [i64::MIN, i64::MIN, -5, 0, 0, 1, i64::MAX]
                .iter()
                .map(|&t| (t, t as f64))
                .collect(),
        ),
        (
            "repeated_ts_200",
            (0..200).map(|i| (-1000 + i / 3, 1.5)).collect(),
        ),
    ];
    let decoder = root.join("chunk_decoder");
    let roundtrip = root.join("chunk_roundtrip");
    std::fs::create_dir_all(&decoder).unwrap();
    std::fs::create_dir_all(&roundtrip).unwrap();
    for (name, samples) in &series {
        if let Some(blob) = (!samples.is_empty())
            .then(|| encode_decimal(samples))
            .flatten()
        {
            std::fs::write(decoder.join(format!("{name}.decimal")), blob).unwrap();
        }
        let pco = encode_pco(samples)
            .ok()
            .filter(|b| b.len() < raw_len(samples.len()))
            .unwrap_or_else(|| encode_raw(samples));
        let tag = if pco[0] == FORMAT_PCO { "pco" } else { "raw" };
        std::fs::write(decoder.join(format!("{name}.{tag}")), &pco).unwrap();
        if tag == "pco" {
            let head = &samples[..samples.len().min(4)];
            std::fs::write(decoder.join(format!("{name}_head.raw")), encode_raw(head)).unwrap();
        }
        let pairs: Vec<u8> = samples
            .iter()
            .flat_map(|&(t, v)| t.to_le_bytes().into_iter().chain(v.to_bits().to_le_bytes()))
            .collect();
        std::fs::write(roundtrip.join(format!("{name}.bin")), pairs).unwrap();
    }
}
