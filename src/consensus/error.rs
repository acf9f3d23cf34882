//! The one error type of the consensus path. It is what a proposal or a
//! read index returns on the server that runs raft, what crosses the RPC
//! port back to the agent that forwarded the request, and what the HTTP
//! layer maps to Consul's status codes and texts (in `http::wire`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ConsensusError {
    /// Consul's text when no leader takes the request within the hold time.
    #[error("No cluster leader")]
    NoLeader,
    /// Consul's `structs.ErrNoServers`: a client agent knows no server.
    #[error("No known Consul servers")]
    NoServers,
    /// The leader could not commit the write in time (it may have lost its
    /// quorum); the write may or may not take effect later.
    #[error("timed out waiting for the write to commit")]
    CommitTimeout,
    /// This agent's copy of the catalog did not reach the index a read
    /// needs in time.
    #[error("timed out waiting for the local catalog to reach index {0}")]
    StaleReplica(u64),
    /// Reaching a server failed (dial, timeout, connection lost).
    #[error("rpc error making call: {0}")]
    Rpc(String),
    /// A raft peer named by ID or address is not in the configuration.
    #[error("{0} was not found in the Raft configuration")]
    PeerNotFound(String),
    /// The local state store failed.
    #[error("state store: {0}")]
    Store(String),
    /// The server refused a forwarded write under ACLs (403 with the
    /// text: `ACL not found` or Consul's permission denial).
    #[error("{0}")]
    AclDenied(String),
    /// Any other raft failure, with raft's text.
    #[error("{0}")]
    Raft(String),
}
