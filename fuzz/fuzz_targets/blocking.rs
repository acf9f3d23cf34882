//! Query strings through the blocking/consistency query parser
//! (`?index=&wait=&stale&consistent&cached&max_stale=&dc=`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let _ = cairn::fuzzing::read_opts(&query);
});
