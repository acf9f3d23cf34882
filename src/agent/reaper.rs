//! Deregisters services whose check has been critical longer than its
//! `DeregisterCriticalServiceAfter`, looked at every second. Unlike Consul
//! (1 minute minimum, reaping in 30 s passes) the configured time is
//! honoured as given, so a service goes when a user expects it to.
//! Services in maintenance (their own or the node's) are never reaped:
//! maintenance is someone working on them.

use super::Agent;
use crate::catalog::types::{HealthStatus, NODE_MAINT_CHECK_ID, SERVICE_MAINT_CHECK_PREFIX};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REAP_EVERY: Duration = Duration::from_secs(1);

pub async fn run(agent: Arc<Agent>) {
    let mut critical_since: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let checks = agent.local_checks();
        let node_maint = checks.iter().any(|c| c.check_id == NODE_MAINT_CHECK_ID);
        let maint_services: HashSet<&str> = checks
            .iter()
            .filter(|c| c.check_id.starts_with(SERVICE_MAINT_CHECK_PREFIX))
            .map(|c| c.service_id.as_str())
            .collect();
        let now = Instant::now();
        let mut critical = HashSet::new();
        let mut reap = Vec::new();
        for c in &checks {
            let limit = c.definition.deregister_critical_service_after;
            if limit.is_zero()
                || c.service_id.is_empty()
                || c.status != HealthStatus::Critical
                || node_maint
                || maint_services.contains(c.service_id.as_str())
            {
                continue;
            }
            critical.insert(c.check_id.clone());
            let since = *critical_since.entry(c.check_id.clone()).or_insert(now);
            if now.duration_since(since) >= limit {
                reap.push((c.service_id.clone(), c.check_id.clone()));
            }
        }
        critical_since.retain(|id, _| critical.contains(id));
        for (service_id, check_id) in reap {
            tracing::info!(
                service = %service_id, check = %check_id,
                "check has been critical for too long; deregistering its service"
            );
            match agent.as_agent(agent.deregister_service(&service_id)).await {
                Ok(()) => crate::metrics::check_reaped(),
                Err(e) => tracing::warn!(service = %service_id, "reaping failed: {e}"),
            }
            critical_since.remove(&check_id);
        }
    }
}
