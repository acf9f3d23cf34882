//! Anti-entropy: makes the catalog's view of this node equal the agent's
//! local state, at once after every leader change, whenever the agent's
//! `agent` or `default` token is replaced, and every minute, as Consul
//! does. Default-consistency reads (on a client agent: through a server)
//! give it a catalog at least as new as the leader's.
//!
//! Every write of a pass carries the agent's own token (`agent`, else
//! `default`; see [`Agent::as_agent`]) and the server authorizes it. A
//! write the ACLs refuse is logged with Consul's text ("Service
//! registration blocked by ACLs") and the pass goes on with the rest; the
//! pass is then tried again after a back-off that grows to
//! [`BLOCKED_RETRY_MAX`], or at once when a token is replaced. Any other
//! failure (no leader, a server that cannot be reached) ends the pass and
//! it is tried again after a second.

use super::{Agent, AgentError};
use crate::acl::tokens::TokenKind;
use crate::catalog::command::{Command, Registration};
use crate::catalog::types::{Check, SERF_HEALTH_CHECK_ID};
use crate::consensus::ConsensusError;
use std::sync::Arc;
use std::time::Duration;

/// How often a pass runs while everything is in sync.
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// The wait after a pass that failed for a reason other than ACLs.
const RETRY: Duration = Duration::from_secs(1);
/// The longest wait after a pass the ACLs refused part of.
pub const BLOCKED_RETRY_MAX: Duration = Duration::from_secs(30);

/// Whether `e` is the servers refusing a write under ACLs.
pub fn blocked_by_acls(e: &AgentError) -> bool {
    matches!(e, AgentError::Write(ConsensusError::AclDenied(_)))
}

/// What one pass ran into: the first ACL refusal, if any (the pass went on
/// past it).
#[derive(Default)]
struct PassErrors {
    blocked: Option<AgentError>,
}

impl PassErrors {
    /// Records a failed write: an ACL refusal is logged with Consul's
    /// message and kept; anything else ends the pass.
    fn note(
        &mut self,
        result: Result<(), AgentError>,
        what: &'static str,
        id: &str,
    ) -> Result<(), AgentError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if blocked_by_acls(&e) => {
                tracing::warn!(id = %id, error = %e, "{what} blocked by ACLs");
                self.blocked.get_or_insert(e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn finish(self) -> Result<(), AgentError> {
        self.blocked.map_or(Ok(()), Err)
    }
}

impl Agent {
    /// Full anti-entropy pass: register what is missing or different,
    /// remove what the agent does not have.
    pub async fn anti_entropy(&self) -> Result<(), AgentError> {
        // Nothing else can be written for a node the catalog lacks.
        if let Err(e) = self.register_self().await {
            if blocked_by_acls(&e) {
                tracing::warn!(error = %e, "Node info update blocked by ACLs");
            }
            return Err(e);
        }
        let mut errors = PassErrors::default();
        let state = self.local.snapshot();
        self.consensus.read_index(false).await?;
        let (cat_services, cat_checks) = {
            let r = self.catalog.reader()?;
            (
                r.node_services(self.node_name())?,
                r.node_checks(self.node_name())?,
            )
        };
        for svc in &cat_services {
            if svc.id != "consul" && !state.services.contains_key(&svc.id) {
                let res = self.write_unit(self.deregistration(Some(svc.id.clone()), None));
                errors.note(res.await, "Service deregistration", &svc.id)?;
            }
        }
        for c in &cat_checks {
            if c.check_id != SERF_HEALTH_CHECK_ID && !state.checks.contains_key(&c.check_id) {
                let res = self.write_unit(self.deregistration(None, Some(c.check_id.clone())));
                errors.note(res.await, "Check deregistration", &c.check_id)?;
            }
        }
        let mut written: Vec<Check> = Vec::new();
        for (id, svc) in &state.services {
            let checks: Vec<Check> = state
                .checks
                .values()
                .filter(|c| c.service_id == *id)
                .cloned()
                .collect();
            let reg = Registration {
                node: self.self_node(),
                service: Some(svc.clone()),
                checks: checks.clone(),
                skip_node_update: false,
            };
            let res = self.write_unit(Command::Register(reg)).await;
            if res.is_ok() {
                written.extend(checks);
            }
            errors.note(res, "Service registration", id)?;
        }
        let node_checks: Vec<Check> = state
            .checks
            .values()
            .filter(|c| c.service_id.is_empty())
            .cloned()
            .collect();
        if !node_checks.is_empty() {
            let reg = Registration {
                node: self.self_node(),
                service: None,
                checks: node_checks.clone(),
                skip_node_update: true,
            };
            let res = self.write_unit(Command::Register(reg)).await;
            if res.is_ok() {
                written.extend(node_checks);
            }
            errors.note(res, "Check registration", "node checks")?;
        }
        // Undo what this pass wrote from a snapshot that changed while it
        // ran: services removed meanwhile go again, checks changed
        // meanwhile are rewritten.
        for id in state.services.keys() {
            if self.local.service(id).is_none() {
                let res = self.write_unit(self.deregistration(Some(id.clone()), None));
                errors.note(res.await, "Service deregistration", id)?;
            }
        }
        self.resync_if_stale(&written);
        errors.finish()
    }

    async fn write_unit(&self, cmd: Command) -> Result<(), AgentError> {
        self.write(cmd).await.map(|_| ())
    }
}

/// Registers this node once a leader is known, then runs anti-entropy at
/// once after every leader change and every token change, and every
/// minute; a failed pass is retried (see the module docs).
pub async fn run(agent: Arc<Agent>) {
    let mut leader = agent.consensus.leader_watch();
    let mut tokens = agent.tokens.watch(&[TokenKind::Agent, TokenKind::Default]);
    let mut synced_with: Option<String> = None;
    let mut blocked_wait = RETRY;
    loop {
        let current = leader.borrow_and_update().clone();
        let mut wait = RETRY;
        if current.is_some() {
            match agent.as_agent(agent.anti_entropy()).await {
                Ok(()) => {
                    synced_with = current.clone();
                    blocked_wait = RETRY;
                }
                Err(e) if blocked_by_acls(&e) => {
                    synced_with = None;
                    wait = blocked_wait;
                    blocked_wait = (blocked_wait * 2).min(BLOCKED_RETRY_MAX);
                    tracing::debug!("anti-entropy blocked by ACLs; next pass in {wait:?}");
                }
                Err(e) => {
                    tracing::warn!("anti-entropy: {e}");
                    synced_with = None;
                }
            }
        }
        if current.is_some() && synced_with == current {
            wait = FULL_SYNC_INTERVAL;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = leader.changed() => if r.is_err() { return },
            _ = tokens.changed() => {
                tracing::debug!("agent token changed; syncing");
                blocked_wait = RETRY;
            }
        }
    }
}
