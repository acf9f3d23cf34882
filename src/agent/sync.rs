//! Anti-entropy: makes the catalog's view of this node equal the agent's
//! local state, at once after every leader change and every minute as
//! Consul does. Default-consistency reads (on a client agent: through a
//! server) give it a catalog at least as new as the leader's.

use super::{Agent, AgentError};
use crate::catalog::command::{Command, Registration};
use crate::catalog::types::{Check, SERF_HEALTH_CHECK_ID};
use std::sync::Arc;
use std::time::Duration;

impl Agent {
    /// Full anti-entropy pass: register what is missing or different,
    /// remove what the agent does not have.
    pub async fn anti_entropy(&self) -> Result<(), AgentError> {
        self.register_self().await?;
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
                self.write(self.deregistration(Some(svc.id.clone()), None))
                    .await?;
            }
        }
        for c in &cat_checks {
            if c.check_id != SERF_HEALTH_CHECK_ID && !state.checks.contains_key(&c.check_id) {
                self.write(self.deregistration(None, Some(c.check_id.clone())))
                    .await?;
            }
        }
        for (id, svc) in &state.services {
            let checks = state
                .checks
                .values()
                .filter(|c| c.service_id == *id)
                .cloned()
                .collect();
            let reg = Registration {
                node: self.self_node(),
                service: Some(svc.clone()),
                checks,
                skip_node_update: false,
            };
            self.write(Command::Register(reg)).await?;
        }
        let written: Vec<Check> = state.checks.values().cloned().collect();
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
                checks: node_checks,
                skip_node_update: true,
            };
            self.write(Command::Register(reg)).await?;
        }
        // Undo what this pass wrote from a snapshot that changed while it
        // ran: services removed meanwhile go again, checks changed
        // meanwhile are rewritten.
        for id in state.services.keys() {
            if self.local.service(id).is_none() {
                self.write(self.deregistration(Some(id.clone()), None))
                    .await?;
            }
        }
        self.resync_if_stale(&written);
        Ok(())
    }
}

/// Registers this node once a leader is known, then runs anti-entropy at
/// once after every leader change and every minute; a failed pass is
/// retried after a second.
pub async fn run(agent: Arc<Agent>) {
    let mut leader = agent.consensus.leader_watch();
    let mut synced_with: Option<String> = None;
    loop {
        let current = leader.borrow_and_update().clone();
        if current.is_some() {
            match agent.anti_entropy().await {
                Ok(()) => synced_with = current.clone(),
                Err(e) => {
                    tracing::warn!("anti-entropy: {e}");
                    synced_with = None;
                }
            }
        }
        let wait = if current.is_some() && synced_with == current {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = leader.changed() => if r.is_err() { return },
        }
    }
}
