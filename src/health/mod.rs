//! Health check runners: the agent that owns a check runs it and reports
//! the result into its local state, from where status changes reach the
//! catalog at once (see `agent::check_sync`) and so DNS and `?passing`.
//!
//! One supervisor task keeps one tokio task per runnable check. It is told
//! (through [`Events`]) whenever the agent's checks change and reconciles:
//! checks that are gone or whose definition changed lose their runner,
//! new ones get one. Re-registering a check with the same definition keeps
//! its runner (and its TTL timer); a changed definition restarts it. At
//! startup the checks kept in local state are restored the same way.
//!
//! Runners by type:
//! - interval checks (HTTP, TCP, gRPC, script): first run at a random point
//!   within the interval (so many checks do not fire together), then every
//!   `Interval` (at least 1 s); results pass through [`threshold::Thresholds`].
//! - TTL: critical with `TTL expired` when not refreshed within the TTL.
//! - alias: re-evaluated on every catalog change.
//!
//! The supervisor also reaps services whose check stayed critical longer
//! than its `DeregisterCriticalServiceAfter`, checked every second. Unlike
//! Consul (1 minute minimum, reaping in 30 s passes) the configured time is
//! honoured as given, so a service goes when a user expects it to. Services
//! in maintenance (their own or the node's) are never reaped: maintenance is
//! someone working on them.
//!
//! Maintenance checks are ordinary critical checks with no runner, so a
//! runner reporting "passing" cannot bring a service out of maintenance.

pub mod alias;
pub mod grpc;
pub mod http;
pub mod output;
pub mod script;
pub mod tcp;
pub mod threshold;
pub mod tls;

use crate::agent::Agent;
use crate::catalog::types::{
    Check, CheckDefinition, CheckKind, HealthStatus, NODE_MAINT_CHECK_ID,
    SERVICE_MAINT_CHECK_PREFIX,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Consul's `MinInterval`: shorter intervals are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default timeout of HTTP, TCP and gRPC checks.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout of script checks.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the reaper looks for services critical for too long.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Text of the refusal of script checks registered over the HTTP API when
/// `enable_script_checks` is off (Consul's, for "remote" registrations;
/// `enable_local_script_checks` covers only checks from config files).
pub const SCRIPTS_DISABLED_REMOTE: &str =
    "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true";

/// One probe of an interval check: its result and output.
pub(crate) trait Probe {
    async fn probe(&self) -> (HealthStatus, String);
}

enum Event {
    ChecksChanged,
    TtlRefreshed(String),
}

/// The agent's side of the channel to the supervisor.
pub struct Events {
    tx: mpsc::UnboundedSender<Event>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        Events {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Local checks were added, removed or redefined.
    pub fn checks_changed(&self) {
        let _ = self.tx.send(Event::ChecksChanged);
    }

    /// A TTL check was updated: its timer starts again.
    pub fn ttl_refreshed(&self, id: &str) {
        let _ = self.tx.send(Event::TtlRefreshed(id.to_string()));
    }

    fn take(&self) -> Option<mpsc::UnboundedReceiver<Event>> {
        self.rx.lock().ok()?.take()
    }
}

/// Starts the supervisor (once per agent) and restores local checks' runners.
pub fn start(agent: Arc<Agent>) {
    let Some(rx) = agent.health.take() else {
        return;
    };
    tokio::spawn(supervise(agent, rx));
}

/// Whether cairn runs checks of this kind (UDP, H2PING, Docker and
/// OS-service checks keep the status they were registered with).
fn has_runner(d: &CheckDefinition) -> bool {
    matches!(
        d.kind,
        CheckKind::Http(_)
            | CheckKind::Tcp { .. }
            | CheckKind::Ttl { .. }
            | CheckKind::Script { .. }
            | CheckKind::Grpc { .. }
            | CheckKind::Alias { .. }
    )
}

struct Running {
    definition: CheckDefinition,
    service_id: String,
    task: JoinHandle<()>,
    ttl_refresh: Option<mpsc::UnboundedSender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn supervise(agent: Arc<Agent>, mut events: mpsc::UnboundedReceiver<Event>) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut reaper = Reaper::default();
    reconcile(&agent, &mut running).await;
    let mut reap = tokio::time::interval(REAP_EVERY);
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => return,
                Some(Event::ChecksChanged) => {
                    // Coalesce a burst of registrations into one pass.
                    while let Ok(e) = events.try_recv() {
                        if let Event::TtlRefreshed(id) = e {
                            refresh_ttl(&running, &id);
                        }
                    }
                    reconcile(&agent, &mut running).await;
                }
                Some(Event::TtlRefreshed(id)) => refresh_ttl(&running, &id),
            },
            _ = reap.tick() => reaper.tick(&agent).await,
        }
    }
}

fn refresh_ttl(running: &HashMap<String, Running>, id: &str) {
    if let Some(tx) = running.get(id).and_then(|r| r.ttl_refresh.as_ref()) {
        let _ = tx.send(());
    }
}

/// Stops runners of checks that are gone or redefined; starts missing ones.
async fn reconcile(agent: &Arc<Agent>, running: &mut HashMap<String, Running>) {
    let checks = agent.local_checks().await;
    let wanted: HashMap<&str, &Check> = checks
        .iter()
        .filter(|c| has_runner(&c.definition))
        .map(|c| (c.check_id.as_str(), c))
        .collect();
    running.retain(|id, r| {
        wanted
            .get(id.as_str())
            .is_some_and(|c| c.definition == r.definition && c.service_id == r.service_id)
    });
    for (id, check) in wanted {
        if !running.contains_key(id) {
            running.insert(id.to_string(), spawn_runner(agent, check));
        }
    }
}

fn duration_or(d: Duration, default: Duration) -> Duration {
    if d.is_zero() {
        default
    } else {
        d
    }
}

fn spawn_runner(agent: &Arc<Agent>, check: &Check) -> Running {
    let d = check.definition.clone();
    let id = check.check_id.clone();
    let agent = agent.clone();
    let mut ttl_refresh = None;
    let task = match &d.kind {
        CheckKind::Ttl { ttl } => {
            let (tx, rx) = mpsc::unbounded_channel();
            ttl_refresh = Some(tx);
            tokio::spawn(run_ttl(agent, id, *ttl, rx))
        }
        CheckKind::Alias { node, service } => {
            tokio::spawn(alias::run(agent, id, node.clone(), service.clone()))
        }
        _ => tokio::spawn(run_interval(agent, id, d.clone())),
    };
    Running {
        definition: d,
        service_id: check.service_id.clone(),
        task,
        ttl_refresh,
    }
}

/// TTL checks: critical with `TTL expired` (and the last output) when no
/// update arrives within the TTL; the next update starts the timer again.
async fn run_ttl(
    agent: Arc<Agent>,
    id: String,
    ttl: Duration,
    mut refreshed: mpsc::UnboundedReceiver<()>,
) {
    loop {
        match tokio::time::timeout(ttl, refreshed.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) => return,
            Err(_expired) => {
                let last = agent.local_check(&id).await.map(|c| c.output);
                let output = match last {
                    Some(o) if !o.is_empty() && !o.starts_with("TTL expired") => {
                        format!("TTL expired (last output before timeout follows): {o}")
                    }
                    _ => "TTL expired".to_string(),
                };
                agent
                    .report_check(&id, HealthStatus::Critical, output)
                    .await;
                if refreshed.recv().await.is_none() {
                    return;
                }
            }
        }
    }
}

/// A probe built from a definition, or why it cannot run.
enum AnyProbe {
    Http(http::HttpProbe),
    Tcp(tcp::TcpProbe),
    Grpc(grpc::GrpcProbe),
    Script(script::ScriptProbe),
}

impl Probe for AnyProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        match self {
            AnyProbe::Http(p) => p.probe().await,
            AnyProbe::Tcp(p) => p.probe().await,
            AnyProbe::Grpc(p) => p.probe().await,
            AnyProbe::Script(p) => p.probe().await,
        }
    }
}

async fn build_probe(agent: &Agent, d: &CheckDefinition) -> Result<AnyProbe, String> {
    let timeout = duration_or(d.timeout, DEFAULT_TIMEOUT);
    Ok(match &d.kind {
        CheckKind::Http(h) => {
            AnyProbe::Http(http::HttpProbe::new(h, timeout, output::max_size(d)).await?)
        }
        CheckKind::Tcp { address, .. } => AnyProbe::Tcp(tcp::TcpProbe {
            addr: address.clone(),
            timeout,
        }),
        CheckKind::Grpc {
            target,
            use_tls,
            tls_server_name,
            tls_skip_verify,
        } => AnyProbe::Grpc(
            grpc::GrpcProbe::new(target, *use_tls, *tls_skip_verify, tls_server_name, timeout)
                .await?,
        ),
        CheckKind::Script { args } => {
            // Checks restored from local state after the agent was
            // restarted without script checks do not run.
            if !agent.config.enable_script_checks {
                return Err(SCRIPTS_DISABLED_REMOTE.to_string());
            }
            AnyProbe::Script(script::ScriptProbe {
                args: args.clone(),
                timeout: duration_or(d.timeout, DEFAULT_SCRIPT_TIMEOUT),
                max_output: output::max_size(d),
            })
        }
        other => {
            return Err(format!(
                "{} checks are not run by this agent",
                other.type_name()
            ))
        }
    })
}

/// The interval a check runs at: its own, raised to [`MIN_INTERVAL`].
pub fn effective_interval(d: &CheckDefinition) -> Duration {
    d.interval.max(MIN_INTERVAL)
}

/// HTTP, TCP, gRPC and script checks: probe every interval, report through
/// the thresholds.
async fn run_interval(agent: Arc<Agent>, id: String, d: CheckDefinition) {
    let interval = effective_interval(&d);
    let probe = match build_probe(&agent, &d).await {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(check = %id, "check cannot run: {why}");
            agent.report_check(&id, HealthStatus::Critical, why).await;
            return;
        }
    };
    let stagger_ms = rand::random_range(0..interval.as_millis().max(1) as u64);
    let first = tokio::time::Instant::now() + Duration::from_millis(stagger_ms);
    let mut ticks = tokio::time::interval_at(first, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut thresholds = threshold::Thresholds::for_definition(&d);
    loop {
        ticks.tick().await;
        let (result, output) = probe.probe().await;
        if let Some(status) = thresholds.observe(result) {
            agent.report_check(&id, status, output).await;
        }
    }
}

/// Deregisters services whose check has been critical longer than its
/// `DeregisterCriticalServiceAfter`.
#[derive(Default)]
struct Reaper {
    critical_since: HashMap<String, Instant>,
}

impl Reaper {
    async fn tick(&mut self, agent: &Agent) {
        let checks = agent.local_checks().await;
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
            let since = *self.critical_since.entry(c.check_id.clone()).or_insert(now);
            if now.duration_since(since) >= limit {
                reap.push((c.service_id.clone(), c.check_id.clone()));
            }
        }
        self.critical_since.retain(|id, _| critical.contains(id));
        for (service_id, check_id) in reap {
            tracing::info!(
                service = %service_id, check = %check_id,
                "check has been critical for too long; deregistering its service"
            );
            match agent.deregister_service(&service_id).await {
                Ok(()) => crate::metrics::check_reaped(),
                Err(e) => tracing::warn!(service = %service_id, "reaping failed: {e}"),
            }
            self.critical_since.remove(&check_id);
        }
    }
}
