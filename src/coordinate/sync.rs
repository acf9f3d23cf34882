//! The agent's periodic send of its own coordinate to the servers
//! (Consul's `sendCoordinate`): every sync interval, which grows with the
//! cluster so that the servers receive about the rate target's updates
//! a second in all ([`super::Timings`]), plus a random stagger of up to the interval so that
//! agents started together do not send together. The update carries the
//! agent's token (client agents) and a server batches it into raft
//! ([`super::batch`]).

use crate::consensus::{Consensus, ConsensusError};
use crate::gossip::Gossip;
use std::time::Duration;

/// Consul's `RateScaledInterval`: `members / rate` seconds, at least `min`.
pub fn rate_scaled_interval(rate: f64, min: Duration, members: usize) -> Duration {
    let scaled = Duration::from_secs_f64(members as f64 / rate.max(f64::MIN_POSITIVE));
    scaled.max(min)
}

/// Sends this agent's coordinate until the task is stopped.
pub async fn run(gossip: Gossip, consensus: Consensus, node: String, timings: super::Timings) {
    loop {
        let interval = rate_scaled_interval(
            timings.sync_rate_target,
            timings.sync_interval_min,
            gossip.members().len(),
        );
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
