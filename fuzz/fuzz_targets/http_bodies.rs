//! The JSON bodies of the HTTP API's POST endpoints, read and checked as their handlers do
//! (`perfvisor::http::check_body`: serde_json, then the handler's and the engine's checks).
//! Every input is tried as each of the three bodies. Must never panic; a refusal must
//! carry a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfvisor::http::{check_body, Body};

fuzz_target!(|data: &[u8]| {
    for kind in [Body::Register, Body::Silence, Body::Metrics] {
        if let Err(message) = check_body(kind, data) {
            assert!(!message.is_empty(), "{kind:?}: empty error message");
        }
    }
});
