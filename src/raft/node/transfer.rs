//! Leadership transfer (`/v1/operator/raft/transfer-leader`). openraft
//! 0.9 has no transfer call, so the leader does what hashicorp/raft's
//! `LeadershipTransfer` does with the means openraft offers: it stops
//! taking writes, waits until the target holds its whole log, stops its
//! heartbeats and, once the followers' leader lease has run out (they
//! refuse votes while it holds), has the target stand for election
//! through the RPC port ([`ServerRequest::StartElection`]). The target's
//! log is the longest, and it campaigns before any other follower's
//! election timer (lease plus election timeout) fires, so it wins.
//! Heartbeats resume whatever the outcome.

use super::RaftNode;
use crate::consensus::api::{mismatched, Reply, ServerRequest, MAX_HOPS};
use crate::consensus::ConsensusError;
use crate::raft::{raft_id, NodeId};
use std::time::Duration;

/// How long the target may take to catch up with the leader's log.
const CATCH_UP: Duration = Duration::from_secs(3);
/// How long the leader waits for the target to win.
const ELECTED: Duration = Duration::from_secs(3);
/// Past the followers' leader lease (openraft's is the maximum election
/// timeout), so that they grant the target's vote request.
const LEASE_MARGIN: Duration = Duration::from_millis(100);

/// hashicorp/raft's text when there is no other voter to hand over to.
const NO_PEER: &str = "cannot find peer";

/// Resumes the leader's heartbeats when the transfer ends, however it ends.
struct HeartbeatsOff<'a>(&'a crate::raft::Raft);

impl Drop for HeartbeatsOff<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
    }
}

impl RaftNode {
    /// Hands leadership to the voter with node ID `id`, or (None) to the
    /// most up-to-date other voter; done by the leader wherever asked.
    pub async fn transfer_leader_via(
        &self,
        id: Option<String>,
        hops: u8,
    ) -> Result<(), ConsensusError> {
        let leader = self.await_leader().await?;
        if leader.0 != self.id {
            if hops >= MAX_HOPS {
                return Err(ConsensusError::NoLeader);
            }
            let req = ServerRequest::TransferLeader { id, hops: hops + 1 };
            return match self.forward_to(&leader.1, &req).await? {
                Reply::Done => Ok(()),
                _ => Err(mismatched()),
            };
        }
        let (target, addr) = self.transfer_target(id.as_deref())?;
        let _writes = self.submit_order.lock().await;
        self.wait_caught_up(target).await?;
        let _off = HeartbeatsOff(&self.raft);
        self.raft.runtime_config().heartbeat(false);
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        tokio::time::sleep(lease + LEASE_MARGIN).await;
        match self
            .forward_to(&addr, &ServerRequest::StartElection)
            .await?
        {
            Reply::Done => {}
            _ => return Err(mismatched()),
        }
        let mut metrics = self.raft.metrics();
        let won = tokio::time::timeout(
            ELECTED,
            metrics.wait_for(|m| m.current_leader == Some(target)),
        )
        .await;
        match won {
            Ok(Ok(_)) => {
                tracing::info!(target, "raft: leadership transferred");
                Ok(())
            }
            _ => Err(ConsensusError::Raft("leadership transfer timeout".into())),
        }
    }

    /// The voter to hand over to, and its RPC address.
    fn transfer_target(&self, id: Option<&str>) -> Result<(NodeId, String), ConsensusError> {
        let others: Vec<(NodeId, String)> = self
            .members()
            .into_iter()
            .filter(|(m, _, voter)| *voter && *m != self.id)
            .map(|(m, addr, _)| (m, addr))
            .collect();
        match id.filter(|i| !i.is_empty()) {
            Some(id) => {
                let rid = raft_id(id);
                others.into_iter().find(|(m, _)| *m == rid).ok_or_else(|| {
                    ConsensusError::Raft(format!("Could not find address for server id {id}"))
                })
            }
            None => {
                let matched = self.matched_indexes();
                others
                    .into_iter()
                    .max_by_key(|(m, _)| matched.get(m).copied().unwrap_or(0))
                    .ok_or_else(|| ConsensusError::Raft(NO_PEER.into()))
            }
        }
    }

    /// How far each follower's log is known to match the leader's.
    fn matched_indexes(&self) -> std::collections::HashMap<NodeId, u64> {
        self.raft
            .metrics()
            .borrow()
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| (*id, l.map_or(0, |l| l.index)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `target` holds everything in the leader's log.
    async fn wait_caught_up(&self, target: NodeId) -> Result<(), ConsensusError> {
        let mut metrics = self.raft.metrics();
        let caught_up = metrics.wait_for(|m| {
            let last = m.last_log_index.unwrap_or(0);
            m.replication
                .as_ref()
                .and_then(|r| r.get(&target).cloned().flatten())
                .is_some_and(|l| l.index >= last)
        });
        let outcome = tokio::time::timeout(CATCH_UP, caught_up).await;
        match outcome {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ConsensusError::Raft(format!(
                "failed to make TimeoutNow RPC to {target}: the server did not catch up"
            ))),
        }
    }

    /// The leader asked this server to stand for election now.
    pub(crate) async fn start_election(&self) -> Result<(), ConsensusError> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))
    }
}
