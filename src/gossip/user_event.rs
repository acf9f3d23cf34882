//! Serf's user events on cairn's gossip: a named payload spread to every
//! member with foca's custom broadcasts (each member that takes it in
//! passes it on, so it reaches members the sender cannot reach itself),
//! stamped with the sender's event Lamport clock, and taken in once per
//! member however many copies arrive.
//!
//! The size limits are serf's, in serf's words: `UserEventSizeLimit` (512
//! bytes by default, and Consul keeps the default) on the name plus payload
//! before encoding, and on the encoded message after. Serf counts the
//! payload as it travels on Consul's wire (Consul's msgpack encoding of the
//! event), which is not how cairn encodes it, so the caller says how long
//! that encoding is.

use serde::{Deserialize, Serialize};

/// serf's `DefaultConfig().UserEventSizeLimit`, which Consul does not change.
pub const SIZE_LIMIT: usize = 512;

/// serf's hard cap (`UserEventSizeLimit` constant, 9 KiB).
const SANE_LIMIT: usize = 9 * 1024;

/// How many event keys a member remembers to tell repeats from new events.
/// A copy is passed on only a few times (foca's retransmission limit), so
/// a copy older than this many newer events does not arrive.
pub(crate) const REMEMBERED: usize = 4096;

/// One user event as gossip carries it (serf's `messageUserEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEventMsg {
    /// The sender's event clock when it sent the event.
    pub ltime: u64,
    pub name: String,
    pub payload: Vec<u8>,
}

/// Why an event was not sent, in serf's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserEventError {
    #[error("user event exceeds configured limit of {SIZE_LIMIT} bytes before encoding")]
    TooLarge,
    #[error("user event exceeds sane limit of {SANE_LIMIT} bytes before encoding")]
    NotSane,
    #[error("encoded user event exceeds configured limit of {SIZE_LIMIT} bytes after encoding")]
    EncodedTooLarge,
    #[error("encoded user event exceeds sane limit of {SANE_LIMIT} bytes after encoding")]
    EncodedNotSane,
    #[error("gossip task stopped")]
    Stopped,
}

/// serf's checks on an event about to be sent at `ltime`: `name` is the
/// serf event name, `payload_len` the payload's length on Consul's wire.
pub fn check_size(ltime: u64, name: &str, payload_len: usize) -> Result<(), UserEventError> {
    let before = name.len() + payload_len;
    if before > SIZE_LIMIT {
        return Err(UserEventError::TooLarge);
    }
    if before > SANE_LIMIT {
        return Err(UserEventError::NotSane);
    }
    let after = encoded_len(ltime, name.len(), payload_len);
    if after > SIZE_LIMIT {
        return Err(UserEventError::EncodedTooLarge);
    }
    if after > SANE_LIMIT {
        return Err(UserEventError::EncodedNotSane);
    }
    Ok(())
}

/// The length of serf's encoded `messageUserEvent`: a type byte, then a
/// msgpack map `{LTime, Name, Payload, CC}` written by go-codec's default
/// handle (strings and bytes both as msgpack raw, integers in their
/// smallest form).
fn encoded_len(ltime: u64, name_len: usize, payload_len: usize) -> usize {
    let keys = ["LTime", "Name", "Payload", "CC"]
        .iter()
        .map(|k| raw_len(k.len()))
        .sum::<usize>();
    1 + 1 + keys + uint_len(ltime) + raw_len(name_len) + raw_len(payload_len) + 1
}

/// A msgpack raw (old-spec string) of `n` bytes.
fn raw_len(n: usize) -> usize {
    match n {
        0..=31 => 1 + n,
        32..=0xFFFF => 3 + n,
        _ => 5 + n,
    }
}

/// A msgpack unsigned integer in its smallest form.
pub(crate) fn uint_len(v: u64) -> usize {
    match v {
        0..=127 => 1,
        128..=0xFF => 2,
        0x100..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

/// serf's `LamportClock` for user events: starts at 1 (serf increments a
/// new clock once), stamps an event with its current time and then moves
/// past it, and moves past any later time it witnesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventClock(u64);

impl Default for EventClock {
    fn default() -> Self {
        EventClock(1)
    }
}

impl EventClock {
    pub fn time(&self) -> u64 {
        self.0
    }

    pub fn increment(&mut self) {
        self.0 = self.0.saturating_add(1);
    }

    pub fn witness(&mut self, seen: u64) {
        if seen >= self.0 {
            self.0 = seen.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_serfs_before_and_after_encoding() {
        let name = "consul:event:deploy";
        assert_eq!(check_size(1, name, 512 - name.len()), {
            // Fits before encoding, but serf's header and keys push the
            // encoded message past the limit.
            Err(UserEventError::EncodedTooLarge)
        });
        assert_eq!(
            check_size(1, name, 513 - name.len()),
            Err(UserEventError::TooLarge)
        );
        // Type, map, keys (6+5+8+3), LTime 1, name raw 1+19, payload raw
        // 3+n, CC 1: 49 + n.
        assert_eq!(encoded_len(1, name.len(), 100), 149);
        let largest = SIZE_LIMIT - 49;
        assert_eq!(check_size(1, name, largest), Ok(()));
        assert_eq!(
            check_size(1, name, largest + 1),
            Err(UserEventError::EncodedTooLarge)
        );
        // A later clock takes more bytes.
        assert_eq!(
            check_size(300, name, largest),
            Err(UserEventError::EncodedTooLarge)
        );
        assert_eq!(
            UserEventError::TooLarge.to_string(),
            "user event exceeds configured limit of 512 bytes before encoding"
        );
    }

    #[test]
    fn the_clock_is_serfs_lamport_clock() {
        let mut c = EventClock::default();
        assert_eq!(c.time(), 1);
        c.increment();
        assert_eq!(c.time(), 2);
        c.witness(1);
        assert_eq!(c.time(), 2);
        c.witness(7);
        assert_eq!(c.time(), 8);
    }
}
