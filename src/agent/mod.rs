//! The agent's own work: the services and checks registered on it, their
//! sync to the catalog, and its identity. The agent owns [`local::Local`]
//! (persisted local state), the health supervisor's handle, and the
//! consensus handle it writes through; the HTTP API calls its operations
//! and reads its state through the accessors below, never its fields.
//!
//! - [`local`]: local services and checks, persisted row by row off the
//!   async runtime;
//! - [`check_sync`]: writes check status changes to the catalog;
//! - [`sync`]: anti-entropy, making the catalog's view of this node equal
//!   local state;
//! - [`from_files`]: services and checks defined in config files, and
//!   reloading them;
//! - [`reaper`]: deregisters services critical for longer than their
//!   `DeregisterCriticalServiceAfter`.

pub mod check_sync;
mod from_files;
pub mod local;
pub mod reaper;
pub mod sync;

use crate::acl::tokens::AgentTokens;
use crate::catalog::command::{Command, Deregistration, Registration, Response};
use crate::catalog::types::{
    Check, CheckDefinition, HealthStatus, Node, Service, NODE_MAINT_CHECK_ID, SERF_HEALTH_CHECK_ID,
    SERVICE_MAINT_CHECK_PREFIX,
};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::consensus::{Consensus, ConsensusError};
use crate::health::{HealthHandle, HealthReport};
use local::Local;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

pub const VERSION: &str = "1.22.0";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// 400 with this text.
    #[error("{0}")]
    Invalid(String),
    /// 404 with this text.
    #[error("{0}")]
    NotFound(String),
    /// 500 with this text (e.g. `CheckID "x" does not have associated TTL`).
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Write(#[from] ConsensusError),
}

impl From<std::io::Error> for AgentError {
    fn from(e: std::io::Error) -> Self {
        AgentError::Internal(format!("failed to persist local state: {e}"))
    }
}

impl From<heed::Error> for AgentError {
    fn from(e: heed::Error) -> Self {
        AgentError::Internal(format!("state store: {e}"))
    }
}

/// What the agent is built from.
pub struct AgentParts {
    pub config: Arc<Config>,
    pub node_id: String,
    pub data_dir: PathBuf,
    /// This agent's catalog: a server's replica or a client agent's view.
    pub catalog: Arc<Catalog>,
    pub consensus: Consensus,
    /// The agent's ACL tokens; its own writes carry the `agent` one.
    pub tokens: Arc<AgentTokens>,
    pub local: Local,
    pub health: HealthHandle,
    /// Builds the configuration again on reload; `None` for an agent
    /// without config files and flags to reread.
    pub loader: Option<crate::config::Loader>,
}

pub struct Agent {
    config: Arc<Config>,
    node_id: String,
    data_dir: PathBuf,
    catalog: Arc<Catalog>,
    consensus: Consensus,
    tokens: Arc<AgentTokens>,
    local: Local,
    health: HealthHandle,
    check_sync: check_sync::CheckSync,
    shutdown: watch::Sender<bool>,
    started: Instant,
    loader: Option<crate::config::Loader>,
    reloading: tokio::sync::Mutex<()>,
}

impl Agent {
    pub fn new(parts: AgentParts) -> Agent {
        Agent {
            config: parts.config,
            node_id: parts.node_id,
            data_dir: parts.data_dir,
            catalog: parts.catalog,
            consensus: parts.consensus,
            tokens: parts.tokens,
            local: parts.local,
            health: parts.health,
            check_sync: check_sync::CheckSync::default(),
            shutdown: watch::channel(false).0,
            started: Instant::now(),
            loader: parts.loader,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn node_name(&self) -> &str {
        &self.config.node_name
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs `f` as the agent itself: the writes it makes carry the agent's
    /// `agent` token (else `default`, Consul's `AgentToken()`) as it is
    /// now, whatever request `f` runs inside, and the server authorizes
    /// them with it. For anti-entropy, check sync, reaping and reloading
    /// the files' definitions.
    pub async fn as_agent<F: std::future::Future>(&self, f: F) -> F::Output {
        crate::acl::REQUEST_TOKEN
            .scope(self.tokens.agent_token(), f)
            .await
    }

    /// Proposes a command; a rejection by the state machine becomes a 500
    /// with its text, as Consul's RPC errors do.
    pub async fn write(&self, cmd: Command) -> Result<(u64, Response), AgentError> {
        let (index, resp) = self.consensus.write(cmd).await?;
        if let Response::Rejected(why) = resp {
            return Err(AgentError::Internal(why));
        }
        Ok((index, resp))
    }

    /// This agent's catalog node.
    pub fn self_node(&self) -> Node {
        let addr = self.config.advertise().to_string();
        let mut tagged = BTreeMap::new();
        tagged.insert("lan".to_string(), addr.clone());
        tagged.insert("lan_ipv4".to_string(), addr.clone());
        tagged.insert("wan".to_string(), addr.clone());
        tagged.insert("wan_ipv4".to_string(), addr.clone());
        let mut meta = self.config.node_meta.clone();
        meta.insert("consul-network-segment".into(), String::new());
        meta.insert("consul-version".into(), VERSION.into());
        Node {
            id: self.node_id.clone(),
            name: self.node_name().to_string(),
            address: addr,
            datacenter: self.config.datacenter.clone(),
            tagged_addresses: tagged,
            meta,
            create_index: 0,
            modify_index: 0,
        }
    }

    fn serf_check(&self) -> Check {
        Check {
            node: self.node_name().to_string(),
            check_id: SERF_HEALTH_CHECK_ID.into(),
            name: "Serf Health Status".into(),
            status: HealthStatus::Passing,
            output: "Agent alive and reachable".into(),
            ..Check::default()
        }
    }

    /// Registers this node with its `serfHealth` check and, on servers, the
    /// `consul` service on the server port, as a Consul leader does.
    pub async fn register_self(&self) -> Result<(), AgentError> {
        let service = self.config.server.then(|| Service {
            node: self.node_name().to_string(),
            id: "consul".into(),
            name: "consul".into(),
            port: self.config.ports.server.max(0) as u16,
            meta: BTreeMap::from([
                ("raft_version".to_string(), "3".to_string()),
                ("serf_protocol_current".to_string(), "2".to_string()),
                ("serf_protocol_max".to_string(), "5".to_string()),
                ("serf_protocol_min".to_string(), "1".to_string()),
                ("version".to_string(), VERSION.to_string()),
            ]),
            ..Service::default()
        });
        let reg = Registration {
            node: self.self_node(),
            service,
            checks: vec![self.serf_check()],
            skip_node_update: false,
        };
        self.write(Command::Register(reg)).await?;
        Ok(())
    }

    /// The registration that puts one local service and its checks in the
    /// catalog, from local state as it is now.
    fn service_registration(&self, id: &str) -> Option<Registration> {
        let state = self.local.snapshot_service(id)?;
        Some(Registration {
            node: self.self_node(),
            service: Some(state.0),
            checks: state.1,
            skip_node_update: false,
        })
    }

    fn deregistration(&self, service_id: Option<String>, check_id: Option<String>) -> Command {
        Command::Deregister(Deregistration {
            node: self.node_name().to_string(),
            service_id,
            check_id,
        })
    }

    /// `PUT /v1/agent/service/register`. `checks` carry their final IDs, names
    /// and initial statuses (the HTTP layer applies Consul's defaults).
    /// Re-registering keeps the status and output of checks that exist.
    /// Answers once the service is persisted and in the catalog.
    pub async fn register_service(
        &self,
        mut svc: Service,
        checks: Vec<Check>,
        replace_existing_checks: bool,
    ) -> Result<(), AgentError> {
        svc.node = self.node_name().to_string();
        let node = svc.node.clone();
        let id = svc.id.clone();
        let ((), persisted) = self.local.edit(true, |e| {
            if replace_existing_checks {
                let stale: Vec<String> = e
                    .state()
                    .checks
                    .values()
                    .filter(|c| {
                        c.service_id == svc.id
                            && !c.check_id.starts_with(SERVICE_MAINT_CHECK_PREFIX)
                    })
                    .map(|c| c.check_id.clone())
                    .collect();
                for c in stale {
                    e.remove_check(&c);
                }
            }
            let mut mine: Vec<Check> = e
                .state()
                .checks
                .values()
                .filter(|c| c.service_id == svc.id)
                .cloned()
                .collect();
            for mut c in checks {
                c.node = node.clone();
                c.service_id = svc.id.clone();
                if let Some(old) = e.state().checks.get(&c.check_id) {
                    c.status = old.status;
                    c.output = old.output.clone();
                }
                mine.retain(|m| m.check_id != c.check_id);
                mine.push(c);
            }
            // Keep service checks' name and tags in step with the service.
            for mut c in mine {
                c.service_name = svc.name.clone();
                c.service_tags = svc.tags.clone();
                e.put_check(c);
            }
            e.put_service(svc);
        });
        persisted.wait().await?;
        if replace_existing_checks {
            self.prune_catalog_checks().await?;
        }
        if let Some(reg) = self.service_registration(&id) {
            let written = reg.checks.clone();
            self.write(Command::Register(reg)).await?;
            self.resync_if_stale(&written);
        }
        Ok(())
    }

    /// `PUT /v1/agent/service/deregister/<id>`: unknown IDs are a no-op.
    pub async fn deregister_service(&self, id: &str) -> Result<(), AgentError> {
        let (existed, persisted) = self.local.edit(true, |e| e.remove_service(id));
        if !existed {
            return Ok(());
        }
        persisted.wait().await?;
        self.write(self.deregistration(Some(id.to_string()), None))
            .await?;
        Ok(())
    }

    /// `PUT /v1/agent/check/register`. A check naming a service must name a
    /// local one (404 `ServiceID "x" does not exist`).
    pub async fn register_check(&self, mut check: Check) -> Result<(), AgentError> {
        check.node = self.node_name().to_string();
        let (found, persisted) = self.local.edit(true, |e| {
            if !check.service_id.is_empty() {
                let Some(svc) = e.state().services.get(&check.service_id) else {
                    return Err(AgentError::NotFound(format!(
                        "ServiceID {:?} does not exist",
                        check.service_id
                    )));
                };
                check.service_name = svc.name.clone();
                check.service_tags = svc.tags.clone();
            }
            if let Some(old) = e.state().checks.get(&check.check_id) {
                check.status = old.status;
                check.output = old.output.clone();
            }
            e.put_check(check.clone());
            Ok(())
        });
        found?;
        persisted.wait().await?;
        let written = vec![check.clone()];
        let reg = Registration {
            node: self.self_node(),
            service: None,
            checks: vec![check],
            skip_node_update: true,
        };
        self.write(Command::Register(reg)).await?;
        self.resync_if_stale(&written);
        Ok(())
    }

    /// `PUT /v1/agent/check/deregister/<id>`.
    pub async fn deregister_check(&self, id: &str) -> Result<(), AgentError> {
        let (existed, persisted) = self.local.edit(true, |e| e.remove_check(id));
        if !existed {
            return Err(AgentError::NotFound(format!(
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            )));
        }
        persisted.wait().await?;
        self.check_sync.forget(id);
        self.write(self.deregistration(None, Some(id.to_string())))
            .await?;
        Ok(())
    }

    /// `PUT /v1/agent/check/{pass,warn,fail,update}/<id>`: only TTL checks.
    /// Restarts the check's TTL and answers once the catalog has the change.
    pub async fn update_ttl_check(
        &self,
        id: &str,
        status: HealthStatus,
        output: String,
    ) -> Result<(), AgentError> {
        let max = match self.local.check(id) {
            Some(cur) if cur.definition.kind.is_ttl() => {
                crate::health::output::max_size(&cur.definition)
            }
            _ => {
                return Err(AgentError::Internal(format!(
                    "CheckID {id:?} does not have associated TTL"
                )))
            }
        };
        let output = truncate_output(output, max);
        self.health.ttl_updated(id, &output);
        if let Some(ticket) = self.change_check(id, status, output, true) {
            self.check_sync.wait(ticket).await;
        }
        Ok(())
    }

    /// Reads the health runners' verdicts into local state until the
    /// channel closes. Verdicts on checks that are gone are ignored: their
    /// runner is being stopped.
    pub async fn take_reports(self: Arc<Self>, mut reports: mpsc::UnboundedReceiver<HealthReport>) {
        while let Some(r) = reports.recv().await {
            self.change_check(&r.check_id, r.status, r.output, false);
        }
    }

    /// Sets a check's status and output in local state; returns the sync
    /// ticket when the change was queued for the catalog. A status change
    /// is written to the catalog at once; a change of output alone at most
    /// once per [`check_sync::OUTPUT_SYNC_INTERVAL`] (and with every
    /// anti-entropy pass), unless `output_now`.
    fn change_check(
        &self,
        id: &str,
        status: HealthStatus,
        output: String,
        output_now: bool,
    ) -> Option<u64> {
        let status_changed = self.local.set_check_status(id, status, output)?;
        if status_changed {
            if let Some(c) = self.local.check(id) {
                crate::metrics::check_status_change(c.definition.kind.type_name(), status.as_str());
            }
            tracing::debug!(check = %id, status = status.as_str(), "check status changed");
        }
        if status_changed || output_now || self.check_sync.output_due(id) {
            Some(self.check_sync.mark(id))
        } else {
            None
        }
    }

    /// Marks for rewriting every check in `written` that local state no
    /// longer equals (output aside): a slower write of older state may have
    /// landed after a newer one.
    pub fn resync_if_stale(&self, written: &[Check]) {
        let ids: Vec<String> = written.iter().map(|w| w.check_id.clone()).collect();
        let current = self.local.checks_by_id(&ids);
        for (w, (id, cur)) in written.iter().zip(current) {
            if cur.is_none_or(|cur| !check_sync::same_but_output(&cur, w)) {
                self.check_sync.mark(&id);
            }
        }
    }

    pub fn local_check(&self, id: &str) -> Option<Check> {
        self.local.check(id)
    }

    pub fn local_services(&self) -> Vec<Service> {
        self.local.services()
    }

    pub fn local_service(&self, id: &str) -> Option<Service> {
        self.local.service(id)
    }

    pub fn local_checks(&self) -> Vec<Check> {
        self.local.checks()
    }

    /// `PUT /v1/agent/maintenance?enable=..&reason=..`
    pub async fn set_node_maintenance(
        &self,
        enable: bool,
        reason: Option<String>,
    ) -> Result<(), AgentError> {
        if !enable {
            return self.remove_local_check(NODE_MAINT_CHECK_ID).await;
        }
        let reason = reason.filter(|r| !r.is_empty()).unwrap_or_else(|| {
            "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.".into()
        });
        let check = Check {
            node: self.node_name().to_string(),
            check_id: NODE_MAINT_CHECK_ID.into(),
            name: "Node Maintenance Mode".into(),
            notes: reason,
            status: HealthStatus::Critical,
            definition: CheckDefinition::undefined("maintenance"),
            ..Check::default()
        };
        self.put_local_check(check).await
    }

    /// `PUT /v1/agent/service/maintenance/<id>?enable=..&reason=..`
    pub async fn set_service_maintenance(
        &self,
        service_id: &str,
        enable: bool,
        reason: Option<String>,
    ) -> Result<(), AgentError> {
        let Some(svc) = self.local.service(service_id) else {
            return Err(AgentError::NotFound(format!(
                "No service registered with ID {service_id:?}"
            )));
        };
        let check_id = format!("{SERVICE_MAINT_CHECK_PREFIX}{service_id}");
        if !enable {
            return self.remove_local_check(&check_id).await;
        }
        let reason = reason.filter(|r| !r.is_empty()).unwrap_or_else(|| {
            "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.".into()
        });
        let check = Check {
            node: self.node_name().to_string(),
            check_id,
            name: "Service Maintenance Mode".into(),
            notes: reason,
            status: HealthStatus::Critical,
            service_id: svc.id.clone(),
            service_name: svc.name.clone(),
            service_tags: svc.tags.clone(),
            definition: CheckDefinition::undefined("maintenance"),
            ..Check::default()
        };
        self.put_local_check(check).await
    }

    async fn put_local_check(&self, check: Check) -> Result<(), AgentError> {
        let ((), persisted) = self.local.edit(true, |e| e.put_check(check.clone()));
        persisted.wait().await?;
        let reg = Registration {
            node: self.self_node(),
            service: None,
            checks: vec![check],
            skip_node_update: true,
        };
        self.write(Command::Register(reg)).await?;
        Ok(())
    }

    async fn remove_local_check(&self, id: &str) -> Result<(), AgentError> {
        let (_, persisted) = self.local.edit(true, |e| e.remove_check(id));
        persisted.wait().await?;
        self.write(self.deregistration(None, Some(id.to_string())))
            .await?;
        Ok(())
    }

    /// Removes catalog checks on this node that the agent no longer has.
    async fn prune_catalog_checks(&self) -> Result<(), AgentError> {
        let local: std::collections::BTreeSet<String> = self
            .local
            .checks()
            .into_iter()
            .map(|c| c.check_id)
            .collect();
        let stale: Vec<String> = self
            .catalog
            .reader()?
            .node_checks(self.node_name())?
            .into_iter()
            .filter(|c| c.check_id != SERF_HEALTH_CHECK_ID && !local.contains(&c.check_id))
            .map(|c| c.check_id)
            .collect();
        for id in stale {
            self.write(self.deregistration(None, Some(id))).await?;
        }
        Ok(())
    }

    /// Asks the agent to stop (`PUT /v1/agent/leave`, SIGTERM).
    pub fn request_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// Caps check output at `max` bytes, as Consul does, noting the cut.
pub fn truncate_output(output: String, max: usize) -> String {
    if output.len() <= max {
        return output;
    }
    let mut cut = max;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{} ... (captured {} of {} bytes)",
        &output[..cut],
        cut,
        output.len()
    )
}
