//! Gossip datagrams: plain, sealed with our key, and sealed with another
//! agent's key (which must never open). The first byte picks the case.
#![no_main]

use cairn::fuzzing::{Gossip, GOSSIP_KEY, GOSSIP_OTHER_KEY};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Agents {
    plain: Gossip,
    ours: Gossip,
    other: Gossip,
}

static AGENTS: OnceLock<Agents> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let agents = AGENTS.get_or_init(|| Agents {
        plain: Gossip::new(None),
        ours: Gossip::new(Some(GOSSIP_KEY)),
        other: Gossip::new(Some(GOSSIP_OTHER_KEY)),
    });
    let Some((&mode, packet)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // Whatever arrives on an unencrypted agent's port.
        0 => {
            agents.plain.receive(packet);
        }
        // Whatever arrives on an encrypted agent's port: garbage almost
        // never opens.
        1 => {
            agents.ours.receive(packet);
        }
        // A packet sealed with our key opens and reaches foca.
        2 => {
            let sealed = agents.ours.seal(packet);
            assert!(
                agents.ours.receive(&sealed),
                "our own sealed packet was rejected"
            );
        }
        // A packet sealed with another key is rejected, as is a plain one.
        _ => {
            let sealed = agents.other.seal(packet);
            assert!(
                !agents.ours.receive(&sealed),
                "another key's packet was accepted"
            );
            assert!(!agents.ours.receive(packet) || packet.len() >= 29);
        }
    }
});
