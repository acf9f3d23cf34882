//! HTTP JSON request bodies through every route's decoder and checks. The
//! first byte picks the route; the rest is the body.
#![no_main]

use cairn::fuzzing::{http_body, Body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let kind = Body::ALL[usize::from(which) % Body::ALL.len()];
    if let Some(err) = http_body(kind, body) {
        assert!(!err.is_empty(), "an empty error for {kind:?}");
    }
});
