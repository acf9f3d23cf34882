//! A connection's bytes on the RPC port, read frame by frame and decoded
//! as raft, forwarded-request and feed readers do. The first byte picks the
//! reader.
#![no_main]

use cairn::fuzzing::{rpc_stream, Rpc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, stream)) = data.split_first() else {
        return;
    };
    let side = Rpc::ALL[usize::from(which) % Rpc::ALL.len()];
    rpc_stream(side, stream);
});
