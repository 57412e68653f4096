//! The storage chunk decoder (`decode_chunk`, raw, pco and decimal formats) on arbitrary bytes: an
//! error or samples, never a panic. What decodes must re-encode (both encoders) and decode
//! again to the same samples, bit for bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfvisor_actors::storage::fuzzing::{decode_chunk, encode_chunk, encode_packed, encode_raw};

fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
    samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(samples) = decode_chunk(data) else {
        return;
    };
    for blob in [encode_chunk(&samples), encode_raw(&samples), encode_packed(&samples)] {
        let again = decode_chunk(&blob).expect("a blob just encoded decodes");
        assert_eq!(bits(&again), bits(&samples));
    }
});
