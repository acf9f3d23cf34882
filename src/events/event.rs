//! One user event: what a firing names (the event, its payload and the
//! node, service and tag filters), its checks in Consul's words, how it
//! travels inside a serf user event, and how long Consul's own encoding of
//! it is (serf's size limit counts that).

use crate::filter::regex;
use serde::{Deserialize, Serialize};

/// The newest event version cairn understands (Consul's
/// `userEventMaxVersion`).
pub const VERSION: u32 = 1;

/// serf event names of Consul's user events start with this
/// (`userEventName`); other serf events are Consul's own.
pub const SERF_PREFIX: &str = "consul:event:";

/// Consul's remote-exec event, which is never listed (cairn does not run
/// remote commands, as Consul with `disable_remote_exec`).
pub const REMOTE_EXEC: &str = "_rexec";

/// Consul's `UserEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    pub id: String,
    pub name: String,
    /// `None` when fired without a body (Go's nil slice).
    pub payload: Option<Vec<u8>>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub version: u32,
    /// The Lamport time it was received at; 0 in the answer to the firing.
    #[serde(skip)]
    pub ltime: u64,
}

impl UserEvent {
    /// A new event to fire, with a fresh ID.
    pub fn new(
        name: String,
        payload: Option<Vec<u8>>,
        node_filter: String,
        service_filter: String,
        tag_filter: String,
    ) -> UserEvent {
        UserEvent {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            payload: payload.filter(|p| !p.is_empty()),
            node_filter,
            service_filter,
            tag_filter,
            version: VERSION,
            ltime: 0,
        }
    }

    /// Consul's `validateUserEventParams`, with its texts (the regex
    /// errors are Go's).
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("User event missing name".into());
        }
        if !self.tag_filter.is_empty() && self.service_filter.is_empty() {
            return Err("Cannot provide tag filter without service filter".into());
        }
        for (what, filter) in [
            ("node", &self.node_filter),
            ("service", &self.service_filter),
            ("tag", &self.tag_filter),
        ] {
            if !filter.is_empty() {
                regex::compile(filter.as_bytes())
                    .map_err(|e| format!("Invalid {what} filter: {e}"))?;
            }
        }
        Ok(())
    }

    /// The serf event name it travels under.
    pub fn serf_name(&self) -> String {
        format!("{SERF_PREFIX}{}", self.name)
    }

    /// The serf payload: cairn's encoding of the event.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings and bytes into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// A received serf payload; `None` when it does not decode.
    pub fn decode(payload: &[u8], ltime: u64) -> Option<UserEvent> {
        let mut e: UserEvent = postcard::from_bytes(payload).ok()?;
        e.ltime = ltime;
        Some(e)
    }

    /// The length of Consul's msgpack encoding of the event (go-codec with
    /// `WriteExt`: str8 and bin8 forms, `omitempty` fields left out, the
    /// Lamport time never encoded), which is what serf's size limit
    /// counts as the payload.
    pub fn consul_encoded_len(&self) -> usize {
        let payload = self.payload.as_deref().unwrap_or_default();
        let mut fields = 3; // ID, n, v
        let mut len = str_len(2) + str_len(self.id.len());
        len += str_len(1) + str_len(self.name.len());
        if !payload.is_empty() {
            fields += 1;
            len += str_len(1) + bin_len(payload.len());
        }
        for filter in [&self.node_filter, &self.service_filter, &self.tag_filter] {
            if !filter.is_empty() {
                fields += 1;
                len += str_len(2) + str_len(filter.len());
            }
        }
        len += str_len(1) + crate::gossip::user_event::uint_len(u64::from(self.version));
        map_len(fields) + len
    }
}

fn str_len(n: usize) -> usize {
    match n {
        0..=31 => 1 + n,
        32..=0xFF => 2 + n,
        0x100..=0xFFFF => 3 + n,
        _ => 5 + n,
    }
}

fn bin_len(n: usize) -> usize {
    match n {
        0..=0xFF => 2 + n,
        0x100..=0xFFFF => 3 + n,
        _ => 5 + n,
    }
}

fn map_len(fields: usize) -> usize {
    if fields <= 15 {
        1
    } else {
        3
    }
}

/// Consul's `uuidToUint64`: the event ID as two 64-bit halves XORed, which
/// `/v1/event/list` reports as its index. `None` for an ID that is not a
/// UUID.
pub fn id_to_index(id: &str) -> Option<u64> {
    let low = format!("{}{}{}", id.get(0..8)?, id.get(9..13)?, id.get(14..18)?);
    let high = format!("{}{}", id.get(19..23)?, id.get(24..36)?);
    let low = u64::from_str_radix(&low, 16).ok()?;
    let high = u64::from_str_radix(&high, 16).ok()?;
    Some(low ^ high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, payload: &[u8]) -> UserEvent {
        let mut e = UserEvent::new(
            name.into(),
            Some(payload.to_vec()),
            String::new(),
            String::new(),
            String::new(),
        );
        e.id = "b54fe110-7af5-cafc-d1fb-afc8ba432b1c".into();
        e
    }

    #[test]
    fn checks_are_consuls() {
        let mut e = event("deploy", b"");
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.payload, None, "an empty body is no payload");
        e.tag_filter = "v1".into();
        assert_eq!(
            e.validate(),
            Err("Cannot provide tag filter without service filter".into())
        );
        e.service_filter = "web".into();
        e.node_filter = "(".into();
        assert_eq!(
            e.validate(),
            Err("Invalid node filter: error parsing regexp: missing closing ): `(`".into())
        );
        e.node_filter = String::new();
        e.tag_filter = "a**".into();
        assert!(e
            .validate()
            .is_err_and(|m| m.starts_with("Invalid tag filter: error parsing regexp: ")));
        e.name = String::new();
        assert_eq!(e.validate(), Err("User event missing name".into()));
    }

    #[test]
    fn travels_in_a_serf_payload() {
        let mut e = event("deploy", b"v2");
        e.node_filter = "web-.*".into();
        let back = UserEvent::decode(&e.encode(), 7).unwrap();
        assert_eq!(back.ltime, 7);
        assert_eq!(UserEvent { ltime: 0, ..back }, e);
        assert_eq!(e.serf_name(), "consul:event:deploy");
        assert_eq!(UserEvent::decode(b"\xff\xff", 1), None);
    }

    #[test]
    fn the_encoded_length_is_consuls_msgpack() {
        // map(4) + "ID" 3 + uuid str8 38 + "n" 2 + "deploy" 7 + "p" 2 +
        // bin8 2+2 + "v" 2 + 1.
        assert_eq!(event("deploy", b"v2").consul_encoded_len(), 60);
        // No payload: the field is left out.
        assert_eq!(event("deploy", b"").consul_encoded_len(), 54);
        let mut e = event("deploy", &[0; 300]);
        e.service_filter = "web".into();
        // map(5) + 3 + 38 + 2 + 7 + 2 + bin16 3+300 + "sf" 3 + 4 + 2 + 1.
        assert_eq!(e.consul_encoded_len(), 366);
    }

    #[test]
    fn the_index_is_the_id_halves_xored() {
        let id = "b54fe110-7af5-cafc-d1fb-afc8ba432b1c";
        assert_eq!(
            id_to_index(id),
            Some(0xb54fe1107af5cafc ^ 0xd1fbafc8ba432b1c)
        );
        assert_eq!(id_to_index("not-a-uuid"), None);
    }
}
