//! DNS requests through cairn's handler: no panic, and every answer is a
//! DNS message with the request's id that fits the transport.
#![no_main]

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static DNS: OnceLock<cairn::fuzzing::Dns> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dns = DNS.get_or_init(cairn::fuzzing::Dns::new);
    // The corpus holds plain DNS messages; the length parity picks the
    // transport so both budgets see every input shape.
    let tcp = data.len() % 2 == 1;
    let response = match dns.answer(data, tcp) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => panic!("no valid response: {e}"),
    };
    let message = Message::from_vec(&response)
        .unwrap_or_else(|e| panic!("the response does not parse: {e}\n{response:02x?}"));
    let id = u16::from_be_bytes([data[0], data[1]]);
    assert_eq!(message.metadata.id, id, "the response has another id");
    if !tcp {
        assert!(response.len() <= 65535);
    }
});
