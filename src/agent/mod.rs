//! The running agent: owns the stores, raft, the agent-local services and
//! checks, and the listeners; offers the operations the HTTP API exposes.

pub mod check_sync;
pub mod local;

use crate::catalog::command::{Command, Deregistration, Registration, Response};
use crate::catalog::types::{
    Check, CheckDefinition, HealthStatus, Node, Service, NODE_MAINT_CHECK_ID, SERF_HEALTH_CHECK_ID,
    SERVICE_MAINT_CHECK_PREFIX,
};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::consensus::{Consensus, ConsensusError};
use local::{LocalState, LocalStore};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

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

pub struct Agent {
    pub config: Arc<Config>,
    pub node_name: String,
    pub node_id: String,
    pub data_dir: PathBuf,
    pub catalog: Arc<Catalog>,
    pub consensus: Consensus,
    pub metrics: crate::metrics::Metrics,
    pub gossip: crate::gossip::Gossip,
    pub started: Instant,
    local: tokio::sync::Mutex<LocalState>,
    local_store: LocalStore,
    shutdown: watch::Sender<bool>,
    /// Tells the check runners (`crate::health`) what changed.
    pub health: crate::health::Events,
    check_sync: check_sync::CheckSync,
}

impl Agent {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        node_id: String,
        data_dir: PathBuf,
        catalog: Arc<Catalog>,
        consensus: Consensus,
        metrics: crate::metrics::Metrics,
        gossip: crate::gossip::Gossip,
    ) -> std::io::Result<Agent> {
        let local_store = LocalStore::new(&data_dir);
        let local = local_store.load()?;
        let (shutdown, _) = watch::channel(false);
        Ok(Agent {
            node_name: config.node_name.clone(),
            config,
            node_id,
            data_dir,
            catalog,
            consensus,
            metrics,
            gossip,
            started: Instant::now(),
            local: tokio::sync::Mutex::new(local),
            local_store,
            shutdown,
            health: crate::health::Events::new(),
            check_sync: check_sync::CheckSync::default(),
        })
    }

    /// Proposes a command through raft; Rejected responses become 500s with
    /// the state machine's text, as Consul's RPC errors do.
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
            name: self.node_name.clone(),
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
            node: self.node_name.clone(),
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
            node: self.node_name.clone(),
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

    fn persist(&self, state: &LocalState) -> Result<(), AgentError> {
        self.local_store.save(state)?;
        Ok(())
    }

    /// The registration that puts one local service and its checks in the catalog.
    fn service_registration(&self, state: &LocalState, id: &str) -> Option<Registration> {
        let svc = state.services.get(id)?.clone();
        let checks = state
            .checks
            .values()
            .filter(|c| c.service_id == id)
            .cloned()
            .collect();
        Some(Registration {
            node: self.self_node(),
            service: Some(svc),
            checks,
            skip_node_update: false,
        })
    }

    /// `PUT /v1/agent/service/register`. `checks` carry their final IDs, names
    /// and initial statuses (the HTTP layer applies Consul's defaults).
    /// Re-registering keeps the status and output of checks that exist.
    pub async fn register_service(
        &self,
        mut svc: Service,
        checks: Vec<Check>,
        replace_existing_checks: bool,
    ) -> Result<(), AgentError> {
        svc.node = self.node_name.clone();
        let mut state = self.local.lock().await;
        let mut next = state.clone();
        if replace_existing_checks {
            next.checks.retain(|_, c| {
                c.service_id != svc.id || c.check_id.starts_with(SERVICE_MAINT_CHECK_PREFIX)
            });
        }
        for mut c in checks {
            c.node = self.node_name.clone();
            c.service_id = svc.id.clone();
            c.service_name = svc.name.clone();
            c.service_tags = svc.tags.clone();
            if let Some(old) = next.checks.get(&c.check_id) {
                c.status = old.status;
                c.output = old.output.clone();
            }
            next.checks.insert(c.check_id.clone(), c);
        }
        // Keep service checks' name/tags in step with the service.
        for c in next.checks.values_mut() {
            if c.service_id == svc.id {
                c.service_name = svc.name.clone();
                c.service_tags = svc.tags.clone();
            }
        }
        let id = svc.id.clone();
        next.services.insert(id.clone(), svc);
        self.persist(&next)?;
        *state = next;
        let reg = self.service_registration(&state, &id);
        drop(state);
        if replace_existing_checks {
            self.prune_catalog_checks().await?;
        }
        self.health.checks_changed();
        if let Some(reg) = reg {
            let written = reg.checks.clone();
            self.write(Command::Register(reg)).await?;
            self.resync_if_stale(&written).await;
        }
        Ok(())
    }

    /// `PUT /v1/agent/service/deregister/<id>`: unknown IDs are a no-op.
    pub async fn deregister_service(&self, id: &str) -> Result<(), AgentError> {
        let mut state = self.local.lock().await;
        if !state.services.contains_key(id) {
            return Ok(());
        }
        let mut next = state.clone();
        next.services.remove(id);
        next.checks.retain(|_, c| c.service_id != id);
        self.persist(&next)?;
        *state = next;
        drop(state);
        self.health.checks_changed();
        let d = Deregistration {
            node: self.node_name.clone(),
            service_id: Some(id.to_string()),
            check_id: None,
        };
        self.write(Command::Deregister(d)).await?;
        Ok(())
    }

    /// `PUT /v1/agent/check/register`. A check naming a service must name a
    /// local one (404 `ServiceID "x" does not exist`).
    pub async fn register_check(&self, mut check: Check) -> Result<(), AgentError> {
        check.node = self.node_name.clone();
        let mut state = self.local.lock().await;
        if !check.service_id.is_empty() {
            let Some(svc) = state.services.get(&check.service_id) else {
                return Err(AgentError::NotFound(format!(
                    "ServiceID {:?} does not exist",
                    check.service_id
                )));
            };
            check.service_name = svc.name.clone();
            check.service_tags = svc.tags.clone();
        }
        if let Some(old) = state.checks.get(&check.check_id) {
            check.status = old.status;
            check.output = old.output.clone();
        }
        let mut next = state.clone();
        next.checks.insert(check.check_id.clone(), check.clone());
        self.persist(&next)?;
        *state = next;
        drop(state);
        self.health.checks_changed();
        let written = vec![check.clone()];
        let reg = Registration {
            node: self.self_node(),
            service: None,
            checks: vec![check],
            skip_node_update: true,
        };
        self.write(Command::Register(reg)).await?;
        self.resync_if_stale(&written).await;
        Ok(())
    }

    /// `PUT /v1/agent/check/deregister/<id>`.
    pub async fn deregister_check(&self, id: &str) -> Result<(), AgentError> {
        let mut state = self.local.lock().await;
        if !state.checks.contains_key(id) {
            return Err(AgentError::NotFound(format!(
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            )));
        }
        let mut next = state.clone();
        next.checks.remove(id);
        self.persist(&next)?;
        *state = next;
        drop(state);
        self.health.checks_changed();
        self.check_sync.forget(id);
        let d = Deregistration {
            node: self.node_name.clone(),
            service_id: None,
            check_id: Some(id.to_string()),
        };
        self.write(Command::Deregister(d)).await?;
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
        let max = {
            let state = self.local.lock().await;
            match state.checks.get(id) {
                Some(cur) if cur.definition.kind.is_ttl() => {
                    crate::health::output::max_size(&cur.definition)
                }
                _ => {
                    return Err(AgentError::Internal(format!(
                        "CheckID {id:?} does not have associated TTL"
                    )))
                }
            }
        };
        self.health.ttl_refreshed(id);
        let output = truncate_output(output, max);
        if let Some(ticket) = self.change_check(id, status, output, true).await {
            self.check_sync.wait(ticket).await;
        }
        Ok(())
    }

    /// A runner's verdict on its check. A status change is persisted and
    /// written to the catalog at once; a change of output alone reaches the
    /// catalog at most once per [`check_sync::OUTPUT_SYNC_INTERVAL`] (and
    /// with every anti-entropy pass). Unknown checks are ignored: the runner
    /// is being stopped.
    pub async fn report_check(&self, id: &str, status: HealthStatus, output: String) {
        self.change_check(id, status, output, false).await;
    }

    /// Sets a check's status and output in local state; returns the sync
    /// ticket when the change was queued for the catalog.
    async fn change_check(
        &self,
        id: &str,
        status: HealthStatus,
        output: String,
        output_now: bool,
    ) -> Option<u64> {
        let mut state = self.local.lock().await;
        let cur = state.checks.get_mut(id)?;
        if cur.status == status && cur.output == output {
            return None;
        }
        let status_changed = cur.status != status;
        let kind = cur.definition.kind.type_name();
        cur.status = status;
        cur.output = output;
        if status_changed {
            crate::metrics::check_status_change(kind, status.as_str());
            tracing::debug!(check = %id, status = status.as_str(), "check status changed");
            // Status changes survive a restart; a failed save must not keep
            // the change from the catalog.
            if let Err(e) = self.local_store.save(&state) {
                tracing::warn!("failed to persist local state: {e}");
            }
        }
        drop(state);
        if status_changed || output_now || self.check_sync.output_due(id) {
            Some(self.check_sync.mark(id))
        } else {
            None
        }
    }

    /// Marks for rewriting every check in `written` that local state no
    /// longer equals (output aside): a slower write of older state may have
    /// landed after a newer one.
    pub async fn resync_if_stale(&self, written: &[Check]) {
        let stale: Vec<String> = {
            let state = self.local.lock().await;
            written
                .iter()
                .filter(|w| {
                    state
                        .checks
                        .get(&w.check_id)
                        .is_none_or(|cur| !check_sync::same_but_output(cur, w))
                })
                .map(|w| w.check_id.clone())
                .collect()
        };
        for id in stale {
            self.check_sync.mark(&id);
        }
    }

    /// The current local versions of `ids` (None for ones since removed).
    async fn local_checks_by_id(&self, ids: &[String]) -> Vec<(String, Option<Check>)> {
        let state = self.local.lock().await;
        ids.iter()
            .map(|id| (id.clone(), state.checks.get(id).cloned()))
            .collect()
    }

    pub async fn local_check(&self, id: &str) -> Option<Check> {
        self.local.lock().await.checks.get(id).cloned()
    }

    pub async fn local_services(&self) -> Vec<Service> {
        self.local.lock().await.services.values().cloned().collect()
    }

    pub async fn local_service(&self, id: &str) -> Option<Service> {
        self.local.lock().await.services.get(id).cloned()
    }

    pub async fn local_checks(&self) -> Vec<Check> {
        self.local.lock().await.checks.values().cloned().collect()
    }

    /// `PUT /v1/agent/maintenance?enable=..&reason=..`
    pub async fn set_node_maintenance(
        &self,
        enable: bool,
        reason: Option<String>,
    ) -> Result<(), AgentError> {
        if enable {
            let reason = reason.filter(|r| !r.is_empty()).unwrap_or_else(|| {
                "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.".into()
            });
            let check = Check {
                node: self.node_name.clone(),
                check_id: NODE_MAINT_CHECK_ID.into(),
                name: "Node Maintenance Mode".into(),
                notes: reason,
                status: HealthStatus::Critical,
                definition: CheckDefinition::undefined("maintenance"),
                ..Check::default()
            };
            self.put_local_check(check).await
        } else {
            self.remove_local_check(NODE_MAINT_CHECK_ID).await
        }
    }

    /// `PUT /v1/agent/service/maintenance/<id>?enable=..&reason=..`
    pub async fn set_service_maintenance(
        &self,
        service_id: &str,
        enable: bool,
        reason: Option<String>,
    ) -> Result<(), AgentError> {
        let Some(svc) = self.local_service(service_id).await else {
            return Err(AgentError::NotFound(format!(
                "No service registered with ID {service_id:?}"
            )));
        };
        let check_id = format!("{SERVICE_MAINT_CHECK_PREFIX}{service_id}");
        if enable {
            let reason = reason.filter(|r| !r.is_empty()).unwrap_or_else(|| {
                "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.".into()
            });
            let check = Check {
                node: self.node_name.clone(),
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
        } else {
            self.remove_local_check(&check_id).await
        }
    }

    async fn put_local_check(&self, check: Check) -> Result<(), AgentError> {
        let mut state = self.local.lock().await;
        let mut next = state.clone();
        next.checks.insert(check.check_id.clone(), check.clone());
        self.persist(&next)?;
        *state = next;
        drop(state);
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
        let mut state = self.local.lock().await;
        if state.checks.contains_key(id) {
            let mut next = state.clone();
            next.checks.remove(id);
            self.persist(&next)?;
            *state = next;
        }
        drop(state);
        let d = Deregistration {
            node: self.node_name.clone(),
            service_id: None,
            check_id: Some(id.to_string()),
        };
        self.write(Command::Deregister(d)).await?;
        Ok(())
    }

    /// Removes catalog checks on this node that the agent no longer has.
    async fn prune_catalog_checks(&self) -> Result<(), AgentError> {
        let local: std::collections::BTreeSet<String> =
            self.local.lock().await.checks.keys().cloned().collect();
        let stale: Vec<String> = {
            let r = self
                .catalog
                .reader()
                .map_err(|e| AgentError::Internal(e.to_string()))?;
            r.node_checks(&self.node_name)
                .map_err(|e| AgentError::Internal(e.to_string()))?
                .into_iter()
                .filter(|c| c.check_id != SERF_HEALTH_CHECK_ID && !local.contains(&c.check_id))
                .map(|c| c.check_id)
                .collect()
        };
        for id in stale {
            let d = Deregistration {
                node: self.node_name.clone(),
                service_id: None,
                check_id: Some(id),
            };
            self.write(Command::Deregister(d)).await?;
        }
        Ok(())
    }

    /// Full anti-entropy pass: make the catalog's view of this node equal the
    /// agent's local state (register what is missing or different, remove
    /// what the agent does not have).
    pub async fn anti_entropy(&self) -> Result<(), AgentError> {
        self.register_self().await?;
        let state = self.local.lock().await.clone();
        let (cat_services, cat_checks) = {
            let r = self
                .catalog
                .reader()
                .map_err(|e| AgentError::Internal(e.to_string()))?;
            (
                r.node_services(&self.node_name)
                    .map_err(|e| AgentError::Internal(e.to_string()))?,
                r.node_checks(&self.node_name)
                    .map_err(|e| AgentError::Internal(e.to_string()))?,
            )
        };
        for svc in &cat_services {
            if svc.id != "consul" && !state.services.contains_key(&svc.id) {
                let d = Deregistration {
                    node: self.node_name.clone(),
                    service_id: Some(svc.id.clone()),
                    check_id: None,
                };
                self.write(Command::Deregister(d)).await?;
            }
        }
        for c in &cat_checks {
            if c.check_id != SERF_HEALTH_CHECK_ID && !state.checks.contains_key(&c.check_id) {
                let d = Deregistration {
                    node: self.node_name.clone(),
                    service_id: None,
                    check_id: Some(c.check_id.clone()),
                };
                self.write(Command::Deregister(d)).await?;
            }
        }
        for id in state.services.keys() {
            if let Some(reg) = self.service_registration(&state, id) {
                self.write(Command::Register(reg)).await?;
            }
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
        self.resync_after_anti_entropy(&state, &written).await
    }

    /// Undoes what a pass wrote from a snapshot that changed while it ran:
    /// services removed meanwhile are deregistered again, checks changed
    /// meanwhile are rewritten.
    async fn resync_after_anti_entropy(
        &self,
        snapshot: &LocalState,
        written: &[Check],
    ) -> Result<(), AgentError> {
        let gone: Vec<String> = {
            let now = self.local.lock().await;
            snapshot
                .services
                .keys()
                .filter(|id| !now.services.contains_key(*id))
                .cloned()
                .collect()
        };
        for id in gone {
            let d = Deregistration {
                node: self.node_name.clone(),
                service_id: Some(id),
                check_id: None,
            };
            self.write(Command::Deregister(d)).await?;
        }
        self.resync_if_stale(written).await;
        Ok(())
    }

    /// Asks the agent to stop (`PUT /v1/agent/leave`, SIGTERM).
    pub fn request_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
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
