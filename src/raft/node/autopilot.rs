//! The leader's view of its servers' health, as Consul's autopilot
//! computes it (`raft-autopilot`'s `isServerHealthy`): a server is healthy
//! when gossip sees it alive, the leader heard from it within
//! `LastContactThreshold`, its last log entry is of the leader's term and
//! it trails the leader's log by at most `MaxTrailingLogs`. The leader
//! itself only needs to be alive. `StableSince` is when a server's health
//! last changed, as this leader observed it (a new leader starts counting
//! afresh, as Consul's does).

use super::RaftNode;
use crate::catalog::operator::AutopilotConfig;
use crate::consensus::api::{mismatched, Reply, ServerRequest, MAX_HOPS};
use crate::consensus::autopilot::{failure_tolerance, HealthReport, ServerHealth};
use crate::consensus::ConsensusError;
use crate::gossip::MemberStatus;
use crate::raft::{raft_id, NodeId};
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

/// When each server's health last changed, on this leader.
#[derive(Default)]
pub(crate) struct Stability(parking_lot::Mutex<HashMap<NodeId, (bool, u64)>>);

impl Stability {
    /// Records `healthy` for `id` at `now_ms`; returns since when it holds.
    fn observe(&self, id: NodeId, healthy: bool, now_ms: u64) -> u64 {
        let mut seen = self.0.lock();
        let e = seen.entry(id).or_insert((healthy, now_ms));
        if e.0 != healthy {
            *e = (healthy, now_ms);
        }
        e.1
    }

    fn forget_others(&self, keep: &[NodeId]) {
        self.0.lock().retain(|id, _| keep.contains(id));
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the leader knows of one server before it is judged.
struct Observed {
    alive: bool,
    last_contact_ms: Option<u64>,
    last_term: u64,
    last_index: u64,
}

/// Consul's `isServerHealthy`.
fn judge(
    o: &Observed,
    leader: bool,
    term: u64,
    leader_last: u64,
    config: &AutopilotConfig,
) -> bool {
    if !o.alive {
        return false;
    }
    if leader {
        return true;
    }
    let threshold = config.last_contact_threshold.as_millis() as u64;
    o.last_contact_ms.is_some_and(|ms| ms <= threshold)
        && o.last_term == term
        && o.last_index + config.max_trailing_logs >= leader_last
}

impl RaftNode {
    /// The autopilot configuration in force: the replicated one, else
    /// Consul's defaults.
    pub fn autopilot_config(&self) -> AutopilotConfig {
        self.catalog
            .reader()
            .ok()
            .and_then(|r| r.autopilot().ok().flatten())
            .unwrap_or_default()
    }

    /// The health report, from the leader wherever it is asked.
    pub async fn health_via(&self, hops: u8) -> Result<HealthReport, ConsensusError> {
        let leader = self.await_leader().await?;
        if leader.0 == self.id {
            return Ok(self.local_health());
        }
        if hops >= MAX_HOPS {
            return Err(ConsensusError::NoLeader);
        }
        let req = ServerRequest::AutopilotHealth { hops: hops + 1 };
        match self.forward_to(&leader.1, &req).await? {
            Reply::Health(h) => Ok(h),
            _ => Err(mismatched()),
        }
    }

    /// The report as this server (the leader) sees it.
    fn local_health(&self) -> HealthReport {
        let config = self.autopilot_config();
        let names = self.server_names();
        let m = self.raft.metrics().borrow().clone();
        let term = m.current_term;
        let leader_last = m.last_log_index.unwrap_or(0);
        let matched: BTreeMap<NodeId, (u64, u64)> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| (*id, l.map_or((0, 0), |l| (l.leader_id.term, l.index))))
                    .collect()
            })
            .unwrap_or_default();
        let members = self.gossip.members();
        let gossip_of: HashMap<NodeId, (MemberStatus, String)> = members
            .values()
            .map(|g| (raft_id(&g.id.node_id), (g.status, g.id.version.clone())))
            .collect();
        let now_ms = unix_ms();
        let mut servers = Vec::new();
        let (mut voters, mut healthy_voters) = (0usize, 0usize);
        for (id, address, voter) in self.members() {
            let leader = id == self.id;
            let (status, version) = match gossip_of.get(&id) {
                Some((s, v)) => (s.as_str(), v.clone()),
                None => ("none", String::new()),
            };
            let (last_term, last_index) = if leader {
                (term, leader_last)
            } else {
                matched.get(&id).copied().unwrap_or((0, 0))
            };
            let last_contact_ms = if leader {
                Some(0)
            } else {
                self.acks
                    .last(id)
                    .map(|(_, at)| at.elapsed().as_millis() as u64)
            };
            let observed = Observed {
                alive: status == "alive",
                last_contact_ms,
                last_term,
                last_index,
            };
            let healthy = judge(&observed, leader, term, leader_last, &config);
            if voter {
                voters += 1;
                healthy_voters += usize::from(healthy);
            }
            let (uuid, name) = names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| (id.to_string(), String::new()));
            servers.push(ServerHealth {
                id: uuid,
                name,
                address,
                serf_status: status.to_string(),
                version,
                leader,
                last_contact_ms,
                last_term,
                last_index,
                healthy,
                voter,
                stable_since_ms: self.stability.observe(id, healthy, now_ms),
            });
        }
        let ids: Vec<NodeId> = self.members().into_iter().map(|(id, _, _)| id).collect();
        self.stability.forget_others(&ids);
        let leader = servers
            .iter()
            .find(|s| s.leader)
            .map(|s| s.id.clone())
            .unwrap_or_default();
        HealthReport {
            healthy: voters > 0 && healthy_voters == voters,
            failure_tolerance: failure_tolerance(voters, healthy_voters),
            leader,
            servers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn seen(alive: bool, contact: Option<u64>, term: u64, index: u64) -> Observed {
        Observed {
            alive,
            last_contact_ms: contact,
            last_term: term,
            last_index: index,
        }
    }

    #[test]
    fn a_follower_is_healthy_when_alive_recent_and_close_behind() {
        let c = AutopilotConfig::default();
        assert!(judge(&seen(true, Some(50), 3, 90), false, 3, 100, &c));
        assert!(!judge(&seen(false, Some(50), 3, 100), false, 3, 100, &c));
        assert!(!judge(&seen(true, Some(201), 3, 100), false, 3, 100, &c));
        assert!(!judge(&seen(true, None, 3, 100), false, 3, 100, &c));
        assert!(!judge(&seen(true, Some(1), 2, 100), false, 3, 100, &c));
        assert!(!judge(&seen(true, Some(1), 3, 10), false, 3, 300, &c));
        let lax = AutopilotConfig {
            last_contact_threshold: Duration::from_secs(1),
            ..c
        };
        assert!(judge(&seen(true, Some(900), 3, 100), false, 3, 100, &lax));
        assert!(judge(&seen(true, None, 0, 0), true, 3, 100, &lax));
    }

    #[test]
    fn stable_since_moves_only_when_health_changes() {
        let s = Stability::default();
        assert_eq!(s.observe(1, true, 10), 10);
        assert_eq!(s.observe(1, true, 20), 10);
        assert_eq!(s.observe(1, false, 30), 30);
        s.forget_others(&[]);
        assert_eq!(s.observe(1, false, 40), 40);
    }
}
