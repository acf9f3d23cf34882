//! The catalog subscription: how a client agent keeps a read-only view of
//! the catalog without being part of raft.
//!
//! A server publishes every batch of entries its state machine applies
//! into an in-memory ring ([`publisher::Publisher`]); the apply path only
//! moves the batch's commands into the ring. Each subscriber connection
//! is served by its own task, off the commit path: it encodes nothing
//! itself (a batch's frame is encoded once, lazily, and shared by every
//! subscriber), paces its writes so a busy server sends each subscriber a
//! few frames per second rather than one per batch, and sends a heartbeat
//! when idle. A leader turns subscriptions away while other servers are
//! alive, and asks its subscribers to move when it gains leadership, so
//! fan-out never runs where writes commit.
//!
//! The protocol, on the RPC port with [`crate::rpc::Protocol::Feed`]:
//! the client sends one [`Subscribe`] naming the last position its view
//! applied (index and term), or none; the server answers with a stream of
//! [`Frame`]s: a [`Frame::Snapshot`] (in chunks) when the client must
//! resync in full, then [`Frame::Batch`]es of entries in log order,
//! [`Frame::Heartbeat`]s when idle, and [`Frame::Moved`] or
//! [`Frame::Refused`] to send the client elsewhere. The client applies
//! entries with the same `apply` as the servers' state machines
//! ([`crate::catalog::Catalog::apply_entries`]), so its view equals a
//! server's replica at the same index, and never moves backwards.

pub mod publisher;
pub mod subscriber;

use crate::catalog::command::Command;
use crate::catalog::LogPos;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The protocol version a [`Subscribe`] names.
pub const VERSION: u32 = 1;
/// An idle subscription carries a heartbeat this often.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// A subscription that carried nothing for this long is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// Snapshot bytes per frame.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// One committed log entry; `cmd` is `None` for raft's own entries
/// (blank and membership), which only move the position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEntry {
    pub pos: LogPos,
    pub cmd: Option<Command>,
}

/// The first and only frame a subscriber sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscribe {
    pub version: u32,
    /// The subscribing agent's node name, for logs.
    pub node: String,
    /// The last position the subscriber's view applied; `None` asks for a
    /// full sync.
    pub from: Option<LogPos>,
    /// Whether a leader should serve this subscription even though other
    /// servers are alive (the subscriber could reach no other).
    pub accept_leader: bool,
}

/// What a server says about itself in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    pub applied: LogPos,
    /// The leader's RPC address, as the server knows it.
    pub leader: Option<String>,
    /// Milliseconds since the server last heard from the leader (0 on the leader).
    pub last_contact_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// This server leads and others can serve the subscription.
    Leader,
    /// The subscriber's view is ahead of this server's replica.
    Behind {
        applied: u64,
    },
    /// The server speaks another protocol version.
    Version {
        supported: u32,
    },
    ShuttingDown,
}

/// Frames from server to subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Entries in log order, contiguous. The first may be at or below the
    /// subscriber's position (it skips those), never above its next index.
    Batch(Vec<FeedEntry>),
    /// A chunk of the bincode-encoded [`crate::catalog::snapshot::CatalogSnapshot`]
    /// at `pos`; `total` bytes in all, this chunk starting at `offset`.
    Snapshot {
        pos: LogPos,
        total: u64,
        offset: u64,
        data: Vec<u8>,
    },
    Heartbeat(ServerState),
    Refused(Refusal),
    /// Subscribe to another server, resuming from the current position.
    Moved,
    /// A [`Frame::Batch`]'s entries, bincode-encoded and LZ4-compressed
    /// (with the uncompressed size in front, little-endian u32). A batch is
    /// compressed once and sent to every subscriber, so the bytes each
    /// subscriber costs its server shrink while the compression is paid
    /// once.
    Packed(Vec<u8>),
}

/// The largest batch a [`Frame::Packed`] may unpack to.
pub const MAX_UNPACKED: usize = crate::rpc::MAX_FRAME;

/// Compresses a batch's entries; `None` when that would not save a tenth.
pub fn pack(entries: &[FeedEntry]) -> Option<Vec<u8>> {
    let raw = bincode::serialize(entries).ok()?;
    if raw.len() < 256 {
        return None;
    }
    let packed = lz4_flex::compress_prepend_size(&raw);
    (packed.len() * 10 < raw.len() * 9).then_some(packed)
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("packed batch of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("packed batch: {0}")]
    Lz4(#[from] lz4_flex::block::DecompressError),
    #[error("packed batch: {0}")]
    Decode(#[from] bincode::Error),
}

/// The entries of a [`Frame::Packed`], refusing one that claims to unpack
/// to more than [`MAX_UNPACKED`] bytes before allocating anything.
pub fn unpack(data: &[u8]) -> Result<Vec<FeedEntry>, UnpackError> {
    let claimed = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0);
    if claimed > MAX_UNPACKED {
        return Err(UnpackError::TooLarge(claimed));
    }
    let raw = lz4_flex::decompress_size_prepended(data)?;
    Ok(bincode::deserialize(&raw)?)
}

/// [`Frame`] with borrowed payloads, for encoding without copies. It must
/// keep [`Frame`]'s variant order and field types (a test pins this).
#[derive(Serialize)]
enum FrameOut<'a> {
    Batch(&'a [FeedEntry]),
    Snapshot {
        pos: LogPos,
        total: u64,
        offset: u64,
        data: &'a [u8],
    },
    Heartbeat(&'a ServerState),
    Refused(&'a Refusal),
    Moved,
    Packed(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::command::KvOp;

    #[test]
    fn borrowed_frames_decode_as_frames() {
        let entries = vec![
            FeedEntry {
                pos: LogPos { index: 4, term: 2 },
                cmd: None,
            },
            FeedEntry {
                pos: LogPos { index: 5, term: 2 },
                cmd: Some(Command::Kv(KvOp::Set {
                    key: "k".into(),
                    value: b"v".to_vec(),
                    flags: 0,
                })),
            },
        ];
        let state = ServerState {
            applied: LogPos { index: 5, term: 2 },
            leader: Some("10.0.0.1:8300".into()),
            last_contact_ms: 3,
        };
        let cases = [
            (FrameOut::Batch(&entries), Frame::Batch(entries.clone())),
            (
                FrameOut::Snapshot {
                    pos: LogPos { index: 9, term: 1 },
                    total: 3,
                    offset: 0,
                    data: b"abc",
                },
                Frame::Snapshot {
                    pos: LogPos { index: 9, term: 1 },
                    total: 3,
                    offset: 0,
                    data: b"abc".to_vec(),
                },
            ),
            (FrameOut::Heartbeat(&state), Frame::Heartbeat(state.clone())),
            (
                FrameOut::Refused(&Refusal::Behind { applied: 3 }),
                Frame::Refused(Refusal::Behind { applied: 3 }),
            ),
            (FrameOut::Moved, Frame::Moved),
            (FrameOut::Packed(b"xyz"), Frame::Packed(b"xyz".to_vec())),
        ];
        for (out, want) in cases {
            let bytes = bincode::serialize(&out).unwrap();
            let got: Frame = bincode::deserialize(&bytes).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn packed_batches_unpack_and_bombs_are_refused() {
        let entries: Vec<FeedEntry> = (1..=50)
            .map(|i| FeedEntry {
                pos: LogPos { index: i, term: 3 },
                cmd: Some(Command::Kv(KvOp::Set {
                    key: format!("bench/worker-1/{i}"),
                    value: format!("value-{i}").into_bytes(),
                    flags: 0,
                })),
            })
            .collect();
        let packed = pack(&entries).expect("worth compressing");
        let raw = bincode::serialize(&entries).unwrap().len();
        assert!(packed.len() * 2 < raw, "{} of {raw} bytes", packed.len());
        assert_eq!(unpack(&packed).unwrap(), entries);
        // Tiny batches are not packed.
        assert!(pack(&entries[..1]).is_none());
        // A claimed size over the limit is refused before decompressing.
        let mut bomb = (u32::MAX).to_le_bytes().to_vec();
        bomb.extend_from_slice(&packed[4..]);
        assert!(matches!(unpack(&bomb), Err(UnpackError::TooLarge(_))));
        assert!(unpack(&packed[..packed.len() / 2]).is_err());
        assert!(unpack(&[1, 2]).is_err());
    }
}
