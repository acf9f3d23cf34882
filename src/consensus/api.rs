//! Requests that agents and servers forward to a server over the RPC port
//! ([`crate::rpc::Protocol::Consul`], multiplexed), and their replies.
//! Servers answer them in `crate::raft::service`.

use super::{ConsensusError, PeerRef, RaftConfiguration};
use crate::catalog::command::{Command, Response};
use serde::{Deserialize, Serialize};

/// `hops` counts server-to-server forwards, so a request chasing a moving
/// leader gives up instead of circling.
pub const MAX_HOPS: u8 = 2;

/// Requests are decoded once and handled at once; boxing the command
/// would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub enum ServerRequest {
    /// Propose a command (on the leader).
    Write {
        cmd: Command,
        hops: u8,
        /// The secret the write is made with (None: the agent's default
        /// token applies); the server authorizes the command with it.
        token: Option<String>,
    },
    /// The index a read must reach to be as fresh as the leader.
    ReadIndex {
        linearizable: bool,
        hops: u8,
    },
    /// The leader's RPC address as this server sees it.
    Leader,
    /// The voters' RPC addresses.
    Peers,
    /// The raft configuration; the leader's unless `stale`.
    Configuration {
        stale: bool,
        hops: u8,
    },
    RemovePeer {
        peer: PeerRef,
        hops: u8,
    },
    /// Whether this server's raft is initialized and whom it follows (the
    /// probe servers make before bootstrapping).
    Status,
    /// What the token with this secret may do (client agents hold no ACL
    /// state). Answered from the server's replica.
    ResolveToken {
        secret: String,
    },
    /// An `/v1/acl/*` request made to a client agent, answered by the
    /// server's own endpoint (see `crate::http::acl_forward`).
    Acl(AclCall),
    /// Network coordinates for the server to batch into raft (Consul's
    /// `Coordinate.Update`), made with the token (None: the server's
    /// default token) that must have `node:write` on each node.
    UpdateCoordinates {
        updates: Vec<crate::coordinate::CoordinateEntry>,
        token: Option<String>,
    },
    /// The leader's autopilot health report.
    AutopilotHealth {
        hops: u8,
    },
    /// Hand leadership to the voter with this node ID (None: any), on the leader.
    TransferLeader {
        id: Option<String>,
        hops: u8,
    },
    /// From the leader handing over to this server: stand for election now.
    StartElection,
    /// An HTTP request for another datacenter (`crate::federation`): from
    /// a client agent to a server of its own datacenter, which forwards it
    /// on, or from a server to one in the datacenter named. `hops` counts
    /// the forwards so far.
    Datacenter {
        call: AclCall,
        hops: u8,
    },
}

/// An `/v1/acl/*` HTTP request as a client agent received it, for a server
/// to answer as if it had been made to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AclCall {
    pub method: String,
    /// The path as received, still percent-encoded (`/v1/acl/token/self`).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// The secret the request acts with: its own token, else the client
    /// agent's `default` token (None: neither).
    pub token: Option<String>,
    pub body: Vec<u8>,
}

/// The server's answer to an [`AclCall`], to be given to the caller as is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AclReply {
    pub status: u16,
    /// Every header but the ones about the connection and the body's framing.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// What answers [`ServerRequest::Acl`] on a server: its HTTP API's ACL
/// endpoints, handed to the RPC side once the HTTP API is built.
pub trait AclEndpoints: Send + Sync + 'static {
    fn serve(&self, call: AclCall) -> futures::future::BoxFuture<'static, AclReply>;
    /// A request for a datacenter ([`ServerRequest::Datacenter`]), any
    /// path, as if it had been made to this server.
    fn serve_datacenter(
        &self,
        call: AclCall,
        hops: u8,
    ) -> futures::future::BoxFuture<'static, AclReply>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    pub initialized: bool,
    pub leader: Option<u64>,
    pub voters: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Written { index: u64, response: Response },
    Index(u64),
    Leader(Option<String>),
    Peers(Vec<String>),
    Configuration(RaftConfiguration),
    Done,
    Status(StatusReply),
    Identity(Option<crate::acl::Identity>),
    Acl(AclReply),
    Health(super::autopilot::HealthReport),
}

pub type ServerResponse = Result<Reply, ConsensusError>;

/// A reply of the wrong kind for the request: a peer speaking another
/// version of the protocol.
pub fn mismatched() -> ConsensusError {
    ConsensusError::Rpc("mismatched rpc response".into())
}
