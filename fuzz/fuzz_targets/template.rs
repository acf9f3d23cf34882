//! Template text through the Go template parser and executor with
//! consul-template's functions. Execution must end: a template that loops
//! or recurses without bound is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn::fuzzing::template(data);
});
