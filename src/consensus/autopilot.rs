//! What the leader reports about its servers' health
//! (`/v1/operator/autopilot/health` and `/state`), computed in
//! `crate::raft::node` from raft's replication metrics, the followers'
//! acknowledgements and gossip, and judged by the replicated autopilot
//! configuration as Consul's autopilot judges it.

use serde::{Deserialize, Serialize};

/// One server as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealth {
    /// Node ID (UUID).
    pub id: String,
    pub name: String,
    /// RPC address.
    pub address: String,
    /// Gossip status: `alive`, `leaving`, `left`, `failed`, or `none`
    /// when gossip does not know the server.
    pub serf_status: String,
    pub version: String,
    pub leader: bool,
    /// Milliseconds since the leader last heard from it (0 for the
    /// leader); `None` when it never has.
    pub last_contact_ms: Option<u64>,
    pub last_term: u64,
    pub last_index: u64,
    pub healthy: bool,
    pub voter: bool,
    /// Unix milliseconds since when `healthy` has held its value.
    pub stable_since_ms: u64,
}

/// The whole report, from the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Every voter is healthy.
    pub healthy: bool,
    /// How many voters may fail with a quorum of healthy ones left.
    pub failure_tolerance: u32,
    /// The leader's node ID.
    pub leader: String,
    pub servers: Vec<ServerHealth>,
}

impl HealthReport {
    /// Voters' node IDs, in the report's order.
    pub fn voters(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| s.voter)
            .map(|s| s.id.clone())
            .collect()
    }
}

/// Consul's failure tolerance: healthy voters beyond a quorum.
pub fn failure_tolerance(voters: usize, healthy_voters: usize) -> u32 {
    let quorum = voters / 2 + 1;
    healthy_voters.saturating_sub(quorum) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_tolerance_is_healthy_voters_beyond_quorum() {
        assert_eq!(failure_tolerance(1, 1), 0);
        assert_eq!(failure_tolerance(3, 3), 1);
        assert_eq!(failure_tolerance(3, 2), 0);
        assert_eq!(failure_tolerance(5, 5), 2);
        assert_eq!(failure_tolerance(3, 1), 0);
    }
}
