//! The agent's periodic send of its own coordinate to the servers
//! (Consul's `sendCoordinate`): every sync interval, which grows with the
//! cluster so that the servers receive about [`SYNC_RATE_TARGET`] updates
//! a second in all, plus a random stagger of up to the interval so that
//! agents started together do not send together. The update carries the
//! agent's token (client agents) and a server batches it into raft
//! ([`super::batch`]).

use crate::consensus::{Consensus, ConsensusError};
use crate::gossip::Gossip;
use std::time::Duration;

/// The shortest sync interval (Consul: 15 s; cairn's clusters are small
/// LANs, where a coordinate showing up within seconds is worth the few
/// extra updates).
pub const SYNC_INTERVAL_MIN: Duration = Duration::from_secs(2);

/// Updates per second the servers should receive from all agents
/// together (Consul's `sync_coordinate_rate_target` default).
pub const SYNC_RATE_TARGET: f64 = 64.0;

/// Consul's `RateScaledInterval`: `members / rate` seconds, at least `min`.
pub fn rate_scaled_interval(rate: f64, min: Duration, members: usize) -> Duration {
    let scaled = Duration::from_secs_f64(members as f64 / rate.max(f64::MIN_POSITIVE));
    scaled.max(min)
}

/// Sends this agent's coordinate until the task is stopped.
pub async fn run(gossip: Gossip, consensus: Consensus, node: String) {
    loop {
        let interval =
            rate_scaled_interval(SYNC_RATE_TARGET, SYNC_INTERVAL_MIN, gossip.members().len());
        let stagger = interval.mul_f64(rand::random_range(0.0..1.0));
        tokio::time::sleep(interval + stagger).await;
        let update = super::CoordinateEntry {
            node: node.clone(),
            segment: String::new(),
            coord: gossip.coordinate(),
        };
        match consensus.update_coordinates(vec![update]).await {
            Ok(()) => {}
            Err(ConsensusError::AclDenied(_)) => {
                tracing::warn!("agent: Coordinate update blocked by ACLs")
            }
            Err(e @ (ConsensusError::NoLeader | ConsensusError::NoServers)) => {
                tracing::debug!("agent: Coordinate update error: {e}")
            }
            Err(e) => tracing::error!("agent: Coordinate update error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_grows_with_the_cluster_past_the_minimum() {
        let min = Duration::from_secs(15);
        assert_eq!(rate_scaled_interval(64.0, min, 3), min);
        assert_eq!(
            rate_scaled_interval(64.0, min, 6400),
            Duration::from_secs(100)
        );
        assert_eq!(rate_scaled_interval(0.0, min, 0), min);
    }
}
