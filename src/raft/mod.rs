//! Consensus through openraft, on servers only: the type configuration,
//! node identity and timing ([`raft_config`]), the raft-backed consensus
//! backend ([`node::RaftNode`]), the state machine over the catalog
//! ([`state_machine`]), openraft's network over the RPC port
//! ([`network`]) and the RPC services a server offers ([`service`]).

pub mod network;
pub mod node;
pub mod service;
pub mod state_machine;

use crate::catalog::command::{Command, Response};
use std::io::Cursor;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Response,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;

pub use node::RaftNode;

/// Raft node ID derived from the agent's UUID node ID (its first 8 bytes).
pub fn raft_id(node_uuid: &str) -> NodeId {
    match uuid::Uuid::parse_str(node_uuid) {
        Ok(u) => {
            let b = u.as_bytes();
            u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        }
        Err(_) => {
            // Not a UUID: hash it (FNV-1a) so any stable string still works.
            let mut h: u64 = 0xcbf29ce484222325;
            for byte in node_uuid.bytes() {
                h ^= byte as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
            h
        }
    }
}

/// A follower waits at least this long without hearing from the leader
/// before it stands for election (milliseconds).
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 300;

/// The longest a follower waits. openraft also makes this the leader lease
/// a voter keeps for the last leader it heard: it refuses every vote
/// request until this long after the last heartbeat, so the first election
/// after a leader dies can succeed no earlier, and a shorter maximum is
/// what brings failover under a second (`benches/cluster.py`).
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 500;

/// Timing tuned for a LAN: elections in well under a second, not Consul's
/// `raft_multiplier=5` defaults.
pub fn raft_config(config: &crate::config::Config) -> openraft::Config {
    openraft::Config {
        cluster_name: "cairn".into(),
        heartbeat_interval: 100,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        install_snapshot_timeout: 5000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.raft_snapshot_threshold),
        max_in_snapshot_log_to_keep: config.raft_trailing_logs,
        max_payload_entries: 512,
        ..Default::default()
    }
}
