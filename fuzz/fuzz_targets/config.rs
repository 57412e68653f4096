//! The TOML config parser on arbitrary UTF-8: `perfvisor::config::parse` must answer with
//! a config or problems, never panic. A parsed config is also mapped to the embedding API
//! and compared with itself, and duration text round-trips through `format_duration`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfvisor::config::{diff, format_duration, parse, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = parse(text, "fuzz.toml") {
        assert!(
            diff(&config, &config).is_empty(),
            "a config differs from itself"
        );
        for now in [0, 1_700_000_000_000, i64::MIN, i64::MAX] {
            let _ = config.silences(now);
        }
        let _ = config.apply(perfvisor::PerfvisorBuilder::default());
    }
    // The config reads every duration through `parse_duration`; check it directly on the
    // whole input and on each quoted piece, with the round trip through `format_duration`.
    for piece in std::iter::once(text).chain(text.split(['"', '\'', '\n']).take(64)) {
        if let Some(d) = parse_duration(piece) {
            let written = format_duration(d);
            assert_eq!(
                parse_duration(&written),
                Some(d),
                "{piece:?} -> {written:?}"
            );
        }
    }
});
