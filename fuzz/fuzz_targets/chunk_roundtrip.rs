//! Round trip of the chunk encoders: arbitrary `(timestamp, value)` pairs (16 bytes each,
//! little-endian i64 and f64 bits; sorted or not) encode with `encode_chunk`, `encode_raw`,
//! `encode_packed` and the decimal encoder alone (`encode_decimal`, which must produce a blob for any
//! non-empty input), and decode back bit for bit (NaN payloads, -0.0 included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfvisor_actors::storage::fuzzing::{
    decode_chunk, encode_chunk, encode_decimal, encode_packed, encode_raw,
};

fuzz_target!(|data: &[u8]| {
    let mut samples: Vec<(i64, f64)> = data
        .chunks_exact(16)
        .map(|c| {
            let ts = i64::from_le_bytes(c[..8].try_into().unwrap());
            let bits = u64::from_le_bytes(c[8..].try_into().unwrap());
            (ts, f64::from_bits(bits))
        })
        .collect();
    // The writer sorts by timestamp; an odd length also tries the input's own order.
    if data.len() % 2 == 0 {
        samples.sort_by_key(|s| s.0);
    }
    let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
    let decimal = encode_decimal(&samples);
    assert_eq!(decimal.is_some(), !samples.is_empty(), "decimal blob for any samples");
    for blob in [encode_chunk(&samples), encode_raw(&samples), encode_packed(&samples)]
        .into_iter()
        .chain(decimal)
    {
        let got = decode_chunk(&blob).expect("a blob just encoded decodes");
        let got: Vec<(i64, u64)> = got.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
    }
});
