//! Writing check state changes to the catalog.
//!
//! Runners and the TTL endpoints change a check in the agent's local state
//! and mark it here; one task writes the marked checks, each from the local
//! state as it is when the write starts, so a later change can never be
//! overwritten by an earlier one that was slower through raft. Marks made
//! while a round is in flight are picked up by the next round, so a burst
//! of changes costs one round of concurrent writes (which raft's group
//! commit turns into one fsync).
//!
//! The writes carry the agent's own token ([`super::Agent::as_agent`]),
//! not the token of the request that changed the check.
//!
//! Other writers of local state (registration, anti-entropy) write what
//! they saw and then call [`super::Agent::resync_if_stale`], which marks
//! whatever changed meanwhile: whoever writes last, the catalog ends equal
//! to the local state.

use super::{Agent, AgentError};
use crate::catalog::command::{Command, Deregistration, Registration};
use crate::catalog::types::Check;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How often a check whose status has not changed may have its output
/// rewritten in the catalog (Consul's `check_update_interval` idea: output
/// that changes every run must not cost a raft write every run). Anti-entropy
/// carries the latest output in between.
pub const OUTPUT_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// Back-off after a round whose writes failed (no leader, timeouts).
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pending {
    ids: BTreeSet<String>,
    /// Tickets handed out so far; a round covers all tickets up to the
    /// number it read when it started.
    issued: u64,
    last_write: HashMap<String, Instant>,
}

pub struct CheckSync {
    pending: Mutex<Pending>,
    wake: Notify,
    /// The highest ticket whose round has finished.
    done: watch::Sender<u64>,
}

impl Default for CheckSync {
    fn default() -> Self {
        CheckSync {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            done: watch::channel(0).0,
        }
    }
}

impl CheckSync {
    /// Marks a check to be written; returns a ticket to [`CheckSync::wait`] on.
    pub fn mark(&self, id: &str) -> u64 {
        let ticket = match self.pending.lock() {
            Ok(mut p) => {
                p.ids.insert(id.to_string());
                p.issued += 1;
                p.issued
            }
            Err(_) => 0,
        };
        self.wake.notify_one();
        ticket
    }

    /// Whether an output-only change of `id` may be written now.
    pub fn output_due(&self, id: &str) -> bool {
        self.pending.lock().is_ok_and(|p| {
            p.last_write
                .get(id)
                .is_none_or(|t| t.elapsed() >= OUTPUT_SYNC_INTERVAL)
        })
    }

    /// Forgets a removed check.
    pub fn forget(&self, id: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.last_write.remove(id);
        }
    }

    /// Waits until the round that covers `ticket` has finished (written, or
    /// failed and queued again).
    pub async fn wait(&self, ticket: u64) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|done| *done >= ticket).await;
    }

    fn take(&self) -> (Vec<String>, u64) {
        match self.pending.lock() {
            Ok(mut p) => (std::mem::take(&mut p.ids).into_iter().collect(), p.issued),
            Err(_) => (Vec::new(), 0),
        }
    }

    fn wrote(&self, ids: &[String]) {
        if let Ok(mut p) = self.pending.lock() {
            let now = Instant::now();
            for id in ids {
                p.last_write.insert(id.clone(), now);
            }
        }
    }
}

/// Two versions of a check that differ at most in output (and indexes).
pub fn same_but_output(a: &Check, b: &Check) -> bool {
    a.status == b.status
        && a.name == b.name
        && a.notes == b.notes
        && a.service_id == b.service_id
        && a.service_name == b.service_name
        && a.service_tags == b.service_tags
        && a.definition == b.definition
}

/// The writer task: one round per wake-up, until the process ends.
pub async fn run(agent: Arc<Agent>) {
    let sync = &agent.check_sync;
    loop {
        sync.wake.notified().await;
        let (ids, ticket) = sync.take();
        if ids.is_empty() {
            sync.done.send_replace(ticket);
            continue;
        }
        let current = agent.local.checks_by_id(&ids);
        let writes = current.iter().map(|(id, check)| {
            let agent = &agent;
            async move {
                let cmd = match check {
                    Some(c) => Command::Register(Registration {
                        node: agent.self_node(),
                        service: None,
                        checks: vec![c.clone()],
                        skip_node_update: true,
                    }),
                    // Removed locally after an older write may have put it
                    // back: take it out again.
                    None => Command::Deregister(Deregistration {
                        node: agent.node_name().to_string(),
                        service_id: None,
                        check_id: Some(id.clone()),
                    }),
                };
                (id, agent.write(cmd).await)
            }
        });
        // The agent's own writes: its `agent` token, whoever changed the check.
        let results = agent.as_agent(futures::future::join_all(writes)).await;
        let mut written = Vec::new();
        let mut failed = false;
        for (id, result) in results {
            match result {
                Ok(_) => written.push(id.clone()),
                // Rejected by the state machine (its service is not in the
                // catalog yet): anti-entropy registers both together.
                Err(AgentError::Internal(why)) => {
                    tracing::debug!(check = %id, "check sync rejected: {why}");
                }
                // Refused by the ACLs: retrying every second would only
                // repeat the refusal; anti-entropy writes the check with
                // its next pass (Consul marks it in sync until the next
                // full sync).
                Err(e) if super::sync::blocked_by_acls(&e) => {
                    tracing::warn!(check = %id, error = %e, "Check registration blocked by ACLs");
                }
                Err(e) => {
                    tracing::warn!(check = %id, "check sync failed, will retry: {e}");
                    sync.mark(id);
                    failed = true;
                }
            }
        }
        sync.wrote(&written);
        let seen: Vec<Check> = current
            .into_iter()
            .filter_map(|(id, c)| c.filter(|_| written.contains(&id)))
            .collect();
        agent.resync_if_stale(&seen);
        sync.done.send_replace(ticket);
        if failed {
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::HealthStatus;

    #[test]
    fn marks_coalesce_into_one_round() {
        let s = CheckSync::default();
        let t1 = s.mark("a");
        let t2 = s.mark("b");
        let t3 = s.mark("a");
        assert!(t1 < t2 && t2 < t3);
        let (ids, covered) = s.take();
        assert_eq!(ids, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(covered, t3);
        assert!(s.take().0.is_empty());
    }

    #[test]
    fn output_changes_wait_for_the_interval_after_a_write() {
        let s = CheckSync::default();
        assert!(s.output_due("a"), "never written: due at once");
        s.wrote(&["a".to_string()]);
        assert!(!s.output_due("a"));
        s.forget("a");
        assert!(s.output_due("a"));
    }

    #[test]
    fn output_alone_does_not_make_a_check_stale() {
        let a = Check {
            check_id: "c".into(),
            status: HealthStatus::Passing,
            output: "one".into(),
            ..Check::default()
        };
        let mut b = a.clone();
        b.output = "two".into();
        b.modify_index = 9;
        assert!(same_but_output(&a, &b));
        b.status = HealthStatus::Critical;
        assert!(!same_but_output(&a, &b));
    }

    #[tokio::test]
    async fn waiters_are_released_by_the_round_that_covers_them() {
        let s = Arc::new(CheckSync::default());
        let ticket = s.mark("a");
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait(ticket).await }
        });
        let (_, covered) = s.take();
        s.done.send_replace(covered);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released")
            .expect("joined");
    }
}
