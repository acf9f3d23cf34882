//! The server RPC port (8300) as a transport: one TCP listener whose
//! connections each start with one byte naming their protocol, as Consul's
//! RPC port does, followed by length-prefixed bincode frames.
//!
//! This module knows nothing of what the frames mean. Raft traffic
//! ([`Protocol::Raft`]), forwarded requests from agents
//! ([`Protocol::Consul`]) and the catalog subscription feed
//! ([`Protocol::Feed`]) are defined and served by their own modules, which
//! register a [`listener::ConnHandler`] per protocol byte.
//!
//! - [`frame`]: the frame codec;
//! - [`dial`]: connecting from the agent's bind address, in TLS when
//!   `verify_outgoing` says so;
//! - [`mux`]: many concurrent calls over one connection per peer;
//! - [`listener`]: the accept loop, with Consul's per-client connection cap
//!   and orderly shutdown.

pub mod dial;
pub mod frame;
pub mod listener;
pub mod mux;

pub use dial::{DialTls, Dialer};

/// An RPC connection, in plain text or TLS.
pub type RpcStream = crate::tls::stream::MaybeTls;
pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use mux::{CallError, MuxClient};

/// Consul's `RPCTLS`: the first byte of a connection that continues in
/// TLS and names its real protocol inside the session.
pub const RPC_TLS: u8 = 0x03;

/// The first byte of every connection to the RPC port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Protocol {
    /// Request/response calls from agents and other servers: forwarded
    /// writes, read indexes, status (Consul's `RPCConsul`).
    Consul = 0x00,
    /// Raft's AppendEntries, Vote and InstallSnapshot (Consul's `RPCRaft`).
    Raft = 0x01,
    /// A client agent's subscription to the committed catalog changes.
    Feed = 0x10,
}

impl Protocol {
    pub fn from_byte(b: u8) -> Option<Protocol> {
        match b {
            0x00 => Some(Protocol::Consul),
            0x01 => Some(Protocol::Raft),
            0x10 => Some(Protocol::Feed),
            _ => None,
        }
    }
}
