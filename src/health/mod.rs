//! Health check runners: the agent that owns a check runs it and reports
//! each result through a channel ([`HealthReport`]) that the agent reads
//! into its local state, from where status changes reach the catalog at
//! once (see `agent::check_sync`) and so DNS and `?passing`. This module
//! knows nothing of the agent: it is given the checks to run as a watch
//! of their definitions, the channel to report into, and the catalog
//! (for alias checks).
//!
//! One supervisor task keeps one tokio task per runnable check. Whenever
//! the watched definitions change it reconciles: checks that are gone or
//! whose definition changed lose their runner, new ones get one.
//! Re-registering a check with the same definition keeps its runner (and
//! its TTL timer); a changed definition restarts it. At startup the checks
//! kept in local state are restored the same way.
//!
//! Runners by type:
//! - interval checks (HTTP, TCP, UDP, H2PING, gRPC, script, Docker,
//!   OSService): first run at a random point
//!   within the interval (so many checks do not fire together), then every
//!   `Interval` (at least 1 s); results pass through [`threshold::Thresholds`].
//! - TTL: critical with `TTL expired` when not refreshed within the TTL.
//! - alias: re-evaluated on every catalog change.
//!
//! Maintenance checks are ordinary critical checks with no runner, so a
//! runner reporting "passing" cannot bring a service out of maintenance.

pub mod alias;
pub mod docker;
pub mod grpc;
pub mod h2ping;
pub mod http;
pub mod os_service;
pub mod output;
pub mod script;
pub mod tcp;
pub mod threshold;
pub mod tls;
pub mod udp;

use crate::catalog::types::{CheckDefinition, CheckKind, HealthStatus};
use crate::catalog::Catalog;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Consul's `MinInterval`: shorter intervals are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default timeout of HTTP, TCP and gRPC checks.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout of script checks.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Text of the refusal of script checks registered over the HTTP API when
/// `enable_script_checks` is off (Consul's, for "remote" registrations;
/// `enable_local_script_checks` covers only checks from config files).
pub const SCRIPTS_DISABLED_REMOTE: &str =
    "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true";

/// One probe of an interval check: its result and output.
pub(crate) trait Probe {
    async fn probe(&self) -> (HealthStatus, String);
}

/// A runner's verdict on its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub check_id: String,
    pub status: HealthStatus,
    pub output: String,
}

/// What a runner needs to run one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckToRun {
    pub definition: CheckDefinition,
    pub service_id: String,
}

/// What the supervisor is given.
pub struct HealthDeps {
    /// Every check of the agent by ID; changes when one is added, removed
    /// or redefined.
    pub checks: watch::Receiver<Arc<BTreeMap<String, CheckToRun>>>,
    pub reports: mpsc::UnboundedSender<HealthReport>,
    /// The agent's catalog (its replica or view), for alias checks.
    pub catalog: Arc<Catalog>,
    /// This agent's node: alias checks without a node alias it.
    pub node_name: String,
    /// `enable_script_checks`: checks restored from local state after a
    /// restart without it do not run.
    pub script_checks: bool,
}

/// The agent's side of the supervisor: TTL updates restart a TTL check's
/// timer (and give it the output to quote when it next expires).
#[derive(Clone)]
pub struct HealthHandle {
    ttl: mpsc::UnboundedSender<(String, String)>,
}

impl HealthHandle {
    pub fn ttl_updated(&self, check_id: &str, output: &str) {
        let _ = self.ttl.send((check_id.to_string(), output.to_string()));
    }
}

/// Reports one check's results.
#[derive(Clone)]
struct Reporter {
    check_id: String,
    tx: mpsc::UnboundedSender<HealthReport>,
}

impl Reporter {
    fn report(&self, status: HealthStatus, output: String) {
        let _ = self.tx.send(HealthReport {
            check_id: self.check_id.clone(),
            status,
            output,
        });
    }
}

/// Starts the supervisor, which restores the runners of the checks it is
/// given at once.
pub fn start(deps: HealthDeps) -> HealthHandle {
    let (ttl, ttl_rx) = mpsc::unbounded_channel();
    tokio::spawn(supervise(deps, ttl_rx));
    HealthHandle { ttl }
}

/// Whether cairn runs checks of this kind (all but the ones without a
/// definition).
fn has_runner(d: &CheckDefinition) -> bool {
    matches!(
        d.kind,
        CheckKind::Http(_)
            | CheckKind::Tcp { .. }
            | CheckKind::Udp { .. }
            | CheckKind::H2ping { .. }
            | CheckKind::Ttl { .. }
            | CheckKind::Script { .. }
            | CheckKind::Docker { .. }
            | CheckKind::OsService { .. }
            | CheckKind::Grpc { .. }
            | CheckKind::Alias { .. }
    )
}

struct Running {
    check: CheckToRun,
    task: JoinHandle<()>,
    ttl_refresh: Option<mpsc::UnboundedSender<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn supervise(mut deps: HealthDeps, mut ttl: mpsc::UnboundedReceiver<(String, String)>) {
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let wanted = deps.checks.borrow_and_update().clone();
        reconcile(&deps, &wanted, &mut running);
        loop {
            tokio::select! {
                r = deps.checks.changed() => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
                t = ttl.recv() => match t {
                    None => return,
                    Some((id, output)) => {
                        if let Some(tx) = running.get(&id).and_then(|r| r.ttl_refresh.as_ref()) {
                            let _ = tx.send(output);
                        }
                    }
                },
            }
        }
    }
}

/// Stops runners of checks that are gone or redefined; starts missing ones.
fn reconcile(
    deps: &HealthDeps,
    wanted: &BTreeMap<String, CheckToRun>,
    running: &mut HashMap<String, Running>,
) {
    running.retain(|id, r| wanted.get(id).is_some_and(|c| *c == r.check));
    for (id, check) in wanted {
        if has_runner(&check.definition) && !running.contains_key(id) {
            running.insert(id.clone(), spawn_runner(deps, id, check));
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

fn spawn_runner(deps: &HealthDeps, id: &str, check: &CheckToRun) -> Running {
    let d = check.definition.clone();
    let reporter = Reporter {
        check_id: id.to_string(),
        tx: deps.reports.clone(),
    };
    let mut ttl_refresh = None;
    let task = match &d.kind {
        CheckKind::Ttl { ttl } => {
            let (tx, rx) = mpsc::unbounded_channel();
            ttl_refresh = Some(tx);
            tokio::spawn(run_ttl(reporter, *ttl, rx))
        }
        CheckKind::Alias { node, service } => {
            let node = if node.is_empty() {
                deps.node_name.clone()
            } else {
                node.clone()
            };
            let own = node == deps.node_name;
            tokio::spawn(alias::run(
                reporter.into_alias(own),
                deps.catalog.clone(),
                node,
                service.clone(),
            ))
        }
        _ => tokio::spawn(run_interval(reporter, d.clone(), deps.script_checks)),
    };
    Running {
        check: check.clone(),
        task,
        ttl_refresh,
    }
}

impl Reporter {
    fn into_alias(self, own_node: bool) -> alias::AliasReporter {
        alias::AliasReporter {
            own: own_node.then(|| self.check_id.clone()),
            report: Box::new(move |status, output| self.report(status, output)),
        }
    }
}

/// TTL checks: critical with `TTL expired` (and the last output) when no
/// update arrives within the TTL; the next update starts the timer again.
async fn run_ttl(
    reporter: Reporter,
    ttl: Duration,
    mut refreshed: mpsc::UnboundedReceiver<String>,
) {
    let mut last_output = String::new();
    loop {
        match tokio::time::timeout(ttl, refreshed.recv()).await {
            Ok(Some(output)) => last_output = output,
            Ok(None) => return,
            Err(_expired) => {
                let output = if !last_output.is_empty() && !last_output.starts_with("TTL expired") {
                    format!("TTL expired (last output before timeout follows): {last_output}")
                } else {
                    "TTL expired".to_string()
                };
                reporter.report(HealthStatus::Critical, output);
                match refreshed.recv().await {
                    Some(output) => last_output = output,
                    None => return,
                }
            }
        }
    }
}

/// A probe built from a definition, or why it cannot run.
enum AnyProbe {
    Http(http::HttpProbe),
    Tcp(tcp::TcpProbe),
    Udp(udp::UdpProbe),
    H2Ping(h2ping::H2PingProbe),
    Grpc(grpc::GrpcProbe),
    Script(script::ScriptProbe),
    Docker(docker::DockerProbe),
    OsService(os_service::OsServiceProbe),
}

impl Probe for AnyProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        match self {
            AnyProbe::Http(p) => p.probe().await,
            AnyProbe::Tcp(p) => p.probe().await,
            AnyProbe::Udp(p) => p.probe().await,
            AnyProbe::H2Ping(p) => p.probe().await,
            AnyProbe::Grpc(p) => p.probe().await,
            AnyProbe::Script(p) => p.probe().await,
            AnyProbe::Docker(p) => p.probe().await,
            AnyProbe::OsService(p) => p.probe().await,
        }
    }
}

async fn build_probe(d: &CheckDefinition, script_checks: bool) -> Result<AnyProbe, String> {
    let timeout = duration_or(d.timeout, DEFAULT_TIMEOUT);
    Ok(match &d.kind {
        CheckKind::Http(h) => {
            AnyProbe::Http(http::HttpProbe::new(h, timeout, output::max_size(d)).await?)
        }
        CheckKind::Tcp {
            address,
            use_tls,
            tls_server_name,
            tls_skip_verify,
        } => AnyProbe::Tcp(
            tcp::TcpProbe::new(
                address,
                *use_tls,
                *tls_skip_verify,
                tls_server_name,
                timeout,
            )
            .await?,
        ),
        CheckKind::Udp { address } => AnyProbe::Udp(udp::UdpProbe {
            addr: address.clone(),
            timeout,
        }),
        CheckKind::H2ping {
            address,
            use_tls,
            tls_server_name,
            tls_skip_verify,
        } => AnyProbe::H2Ping(
            h2ping::H2PingProbe::new(
                address,
                *use_tls,
                *tls_skip_verify,
                tls_server_name,
                timeout,
            )
            .await?,
        ),
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
            if !script_checks {
                return Err(SCRIPTS_DISABLED_REMOTE.to_string());
            }
            AnyProbe::Script(script::ScriptProbe {
                args: args.clone(),
                timeout: duration_or(d.timeout, DEFAULT_SCRIPT_TIMEOUT),
                max_output: output::max_size(d),
            })
        }
        CheckKind::Docker {
            container_id, args, ..
        } => {
            if !script_checks {
                return Err(SCRIPTS_DISABLED_REMOTE.to_string());
            }
            AnyProbe::Docker(docker::DockerProbe {
                container_id: container_id.clone(),
                args: args.clone(),
                timeout: duration_or(d.timeout, DEFAULT_SCRIPT_TIMEOUT),
                max_output: output::max_size(d),
            })
        }
        CheckKind::OsService { service } => AnyProbe::OsService(os_service::OsServiceProbe {
            service: service.clone(),
            timeout: duration_or(d.timeout, DEFAULT_SCRIPT_TIMEOUT),
        }),
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

/// Interval checks: probe every interval, report through
/// the thresholds.
async fn run_interval(reporter: Reporter, d: CheckDefinition, script_checks: bool) {
    let interval = effective_interval(&d);
    let probe = match build_probe(&d, script_checks).await {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(check = %reporter.check_id, "check cannot run: {why}");
            reporter.report(HealthStatus::Critical, why);
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
            reporter.report(status, output);
        }
    }
}
