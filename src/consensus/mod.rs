//! Consensus as the rest of the agent sees it: one handle ([`Consensus`])
//! that proposes commands, makes reads as fresh as the leader's, and
//! reports who leads, whichever kind of agent this is.
//!
//! - On a **server** the handle is backed by raft (`crate::raft::RaftNode`):
//!   a write is proposed locally when this server leads, else forwarded to
//!   the leader over the RPC port.
//! - On a **client agent** it is backed by [`forward::Forwarder`], which holds
//!   no raft state: every write, read index and status question goes to a
//!   server picked from gossip ([`servers::ServerList`]), failing over to
//!   the next server when one cannot be reached, as Consul's client RPC
//!   does. Reads are then answered from the agent's local view of the
//!   catalog once it has caught up with the index the server gave.
//!
//! The wire messages of forwarded requests are [`api`]'s; errors are one
//! typed enum ([`ConsensusError`]) from raft to the HTTP edge.

pub mod api;
pub mod autopilot;
pub mod error;
pub mod forward;
pub mod servers;

use crate::catalog::command::{Command, Response};
pub use error::ConsensusError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a write or read waits for a leader before failing with
/// `No cluster leader` (Consul's `rpc_hold_timeout` is 7 s).
pub const LEADER_HOLD: Duration = Duration::from_secs(5);

/// One server in the raft configuration (`/v1/operator/raft/configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftServer {
    /// The server's node ID (UUID).
    pub id: String,
    pub node: String,
    /// RPC address, `ip:port`.
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    /// The last log index this server is known to hold.
    pub last_index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfiguration {
    pub servers: Vec<RaftServer>,
    /// The raft index of this configuration (never 0).
    pub index: u64,
}

/// A raft peer named as `operator raft remove-peer` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRef {
    /// Node ID (UUID).
    Id(String),
    /// RPC address, `ip:port`.
    Address(String),
}

/// What reads report in `X-Consul-KnownLeader` and `X-Consul-LastContact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Contact {
    pub known_leader: bool,
    /// Milliseconds since this agent's data was last known to be current
    /// with the leader (0 on the leader).
    pub last_contact_ms: u64,
}

/// The `raft` section of `/v1/agent/self` `Stats` (servers only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStats {
    pub state: &'static str,
    pub term: u64,
    pub applied_index: u64,
    pub commit_index: u64,
    pub last_log_index: u64,
    pub last_snapshot_index: u64,
    pub last_snapshot_term: u64,
    pub latest_configuration_index: u64,
    pub voters: usize,
    pub last_contact: String,
}

/// What a consensus backend does; see the module docs for the two kinds.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Proposes `cmd` (through the leader) and returns its index and the
    /// state machine's response once it is applied.
    async fn write(&self, cmd: Command) -> Result<(u64, Response), ConsensusError>;
    /// Waits until this agent's catalog holds everything the leader had
    /// applied when the call began; `linearizable` has the leader confirm
    /// its leadership with a quorum first. Returns that index.
    async fn read_index(&self, linearizable: bool) -> Result<u64, ConsensusError>;
    /// The leader's RPC address as the servers see it (`None` without one).
    async fn leader(&self) -> Result<Option<String>, ConsensusError>;
    /// The voters' RPC addresses.
    async fn peers(&self) -> Result<Vec<String>, ConsensusError>;
    /// The raft configuration: from the leader, or with `stale` from any server.
    async fn configuration(&self, stale: bool) -> Result<RaftConfiguration, ConsensusError>;
    /// Removes a server from the raft configuration (through the leader).
    async fn remove_peer(&self, peer: PeerRef) -> Result<(), ConsensusError>;
    /// The leader's autopilot health report.
    async fn autopilot_health(&self) -> Result<autopilot::HealthReport, ConsensusError>;
    /// Hands leadership to the voter with node ID `id` (None: the most
    /// up-to-date other voter), through the leader.
    async fn transfer_leader(&self, id: Option<String>) -> Result<(), ConsensusError>;
    /// Leader knowledge and staleness of this agent's catalog, for headers.
    fn contact(&self) -> Contact;
    /// Whether this agent is the raft leader.
    fn is_leader(&self) -> bool;
    /// Changes whenever the known leader (its RPC address) changes.
    fn leader_watch(&self) -> watch::Receiver<Option<String>>;
    /// Raft statistics; `None` on client agents.
    async fn raft_stats(&self) -> Option<RaftStats>;
    /// The compiled inputs of the token with `secret` (None: no such
    /// token, or expired), from a server's replica.
    async fn resolve_token(
        &self,
        secret: &str,
    ) -> Result<Option<crate::acl::Identity>, ConsensusError>;
    /// Queues network coordinates on a server (this one, or one a client
    /// agent reaches), which writes them through raft in its next batch
    /// (`crate::coordinate::batch`). Returns once they are queued.
    async fn update_coordinates(
        &self,
        updates: Vec<crate::coordinate::CoordinateEntry>,
    ) -> Result<(), ConsensusError>;
    /// Client agents: has a server answer an `/v1/acl/*` request, waiting
    /// at most `timeout` (a blocking query waits on the server). Servers
    /// answer those requests themselves and refuse this.
    async fn forward_acl(
        &self,
        call: api::AclCall,
        timeout: Duration,
    ) -> Result<api::AclReply, ConsensusError>;
    /// Client agents: has a server of this datacenter answer a request
    /// for another datacenter (it forwards it there), after `hops`
    /// forwards. Servers forward over the WAN themselves and refuse this.
    async fn forward_datacenter(
        &self,
        call: api::AclCall,
        hops: u8,
        timeout: Duration,
    ) -> Result<api::AclReply, ConsensusError>;
}

/// The shared consensus handle.
#[derive(Clone)]
pub struct Consensus(Arc<dyn Backend>);

impl Consensus {
    pub fn new(backend: Arc<dyn Backend>) -> Consensus {
        Consensus(backend)
    }
}

impl std::ops::Deref for Consensus {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
