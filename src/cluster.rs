//! Cluster formation and upkeep: joining through gossip (with a short
//! backoff, so agents started together find each other within a second or
//! two), `-bootstrap-expect` bootstrapping, and the leader's reconciliation
//! of gossip membership with raft membership (servers only: client agents
//! never enter raft) and with the catalog (`serfHealth` checks, reaping
//! nodes that left).

use crate::catalog::command::{Command, Deregistration, Registration, Response};
use crate::catalog::types::{Check, HealthStatus, Node, SERF_HEALTH_CHECK_ID};
use crate::catalog::Catalog;
use crate::consensus::api::{Reply, ServerRequest, ServerResponse};
use crate::consensus::Consensus;
use crate::gossip::{Gossip, MemberId, MemberInfo, MemberStatus};
use crate::raft::{raft_id, NodeId, RaftNode};
use crate::rpc::{MuxClient, Protocol};
use openraft::{BasicNode, ChangeMembers};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a server must have been failed before the leader removes it
/// from the voters (autopilot's dead-server cleanup).
const DEAD_SERVER_GRACE: Duration = Duration::from_secs(10);
/// Periodic reconcile backstop (Consul: 60 s; events trigger it at once).
const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);

pub fn rpc_addr(m: &MemberId) -> String {
    SocketAddr::new(m.addr.ip(), m.rpc_port).to_string()
}

/// Resolves `host`, `host:port`, `[v6]:port` with `default_port`.
pub async fn resolve(target: &str, default_port: u16) -> Vec<SocketAddr> {
    let with_port = if target.parse::<SocketAddr>().is_ok() {
        target.to_string()
    } else if target.parse::<std::net::IpAddr>().is_ok() {
        if target.contains(':') {
            format!("[{target}]:{default_port}")
        } else {
            format!("{target}:{default_port}")
        }
    } else if target
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        target.to_string()
    } else {
        format!("{target}:{default_port}")
    };
    match tokio::net::lookup_host(with_port).await {
        Ok(it) => it.filter(|a| a.is_ipv4()).collect(),
        Err(_) => vec![],
    }
}

/// Joins the given agents once; returns how many were reached.
pub async fn join_once(gossip: &Gossip, targets: &[String], default_port: u16) -> usize {
    let mut addrs = Vec::new();
    for t in targets {
        addrs.extend(resolve(t, default_port).await);
    }
    addrs.retain(|a| *a != gossip.identity.addr);
    if addrs.is_empty() {
        return 0;
    }
    gossip
        .join(&addrs, Duration::from_secs(2))
        .await
        .unwrap_or(0)
}

/// The wait before join attempt `attempt` (1-based) fails over to the
/// next: about 1 s, doubling up to `interval` (`-retry-interval`), with a
/// little jitter so agents started together do not retry in lockstep.
pub fn join_backoff(attempt: u32, interval: Duration) -> Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(interval.max(Duration::from_millis(100)));
    let jitter = rand::random_range(0..=base.as_millis() as u64 / 10);
    base + Duration::from_millis(jitter)
}

/// `-join` and `-retry-join`: keeps trying, first after about a second and
/// then less often (see [`join_backoff`]), until one join succeeds or `max`
/// attempts (0 = unlimited) have failed; then the agent must exit.
pub async fn retry_join(
    gossip: Gossip,
    targets: Vec<String>,
    default_port: u16,
    interval: Duration,
    max: u32,
) -> Result<(), String> {
    if targets.is_empty() {
        return Ok(());
    }
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let n = join_once(&gossip, &targets, default_port).await;
        if n > 0 {
            tracing::info!("agent: Join cluster completed. Synced with {n} initial agents");
            return Ok(());
        }
        if max > 0 && attempt >= max {
            return Err(format!(
                "agent: max join retry exhausted, exiting ({targets:?})"
            ));
        }
        let wait = join_backoff(attempt, interval);
        tracing::warn!(
            "agent: Join cluster failed, will retry: cluster={targets:?} retry_in={:?}",
            wait
        );
        tokio::time::sleep(wait).await;
    }
}

/// What the server-side cluster tasks work with.
#[derive(Clone)]
pub struct ClusterCtx {
    pub node: Arc<RaftNode>,
    pub consensus: Consensus,
    pub catalog: Arc<Catalog>,
    pub gossip: Gossip,
    pub datacenter: String,
    /// How outgoing RPC connections are made.
    pub dialer: crate::rpc::Dialer,
}

impl ClusterCtx {
    /// Proposes `cmd`; a rejection by the state machine is an error too.
    async fn write(&self, cmd: Command) -> Result<(), String> {
        match self.consensus.write(cmd).await {
            Ok((_, Response::Rejected(why))) => Err(why),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// What the subscription feed asks about the server it runs on.
pub struct FeedServing {
    node: Arc<RaftNode>,
    gossip: Gossip,
    datacenter: String,
}

impl FeedServing {
    pub fn new(node: Arc<RaftNode>, gossip: Gossip, datacenter: String) -> FeedServing {
        FeedServing {
            node,
            gossip,
            datacenter,
        }
    }

    /// Another server of this datacenter is alive.
    fn others_alive(&self) -> bool {
        let me = &self.gossip.identity.name;
        self.gossip.members().values().any(|m| {
            m.id.server
                && m.id.dc == self.datacenter
                && m.status == MemberStatus::Alive
                && &m.id.name != me
        })
    }
}

impl crate::feed::publisher::Serving for FeedServing {
    fn state(&self) -> crate::feed::ServerState {
        let applied = self
            .node
            .raft()
            .metrics()
            .borrow()
            .last_applied
            .map(|l| crate::catalog::LogPos {
                index: l.index,
                term: l.leader_id.term,
            })
            .unwrap_or_default();
        crate::feed::ServerState {
            applied,
            leader: self.node.leader().map(|(_, a)| a),
            last_contact_ms: self.node.last_contact_ms(),
        }
    }

    fn turn_away(&self) -> bool {
        self.node.is_leader_now() && self.others_alive()
    }
}

/// Sends a new leader's subscribers to the other servers, so that
/// serving client agents never competes with committing writes.
pub async fn feed_leadership_loop(ctx: ClusterCtx, feed: Arc<crate::feed::publisher::Publisher>) {
    let serving = FeedServing::new(ctx.node.clone(), ctx.gossip.clone(), ctx.datacenter.clone());
    let mut leader = ctx.consensus.leader_watch();
    let mut members = ctx.gossip.subscribe();
    // Move at most this often, so a flapping member list cannot keep
    // client agents hopping.
    let mut last_move: Option<Instant> = None;
    loop {
        let should = ctx.consensus.is_leader() && feed.subscribers() > 0 && serving.others_alive();
        if should && last_move.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::info!(
                subscribers = feed.subscribers(),
                "feed: this server leads; moving its subscribers to the other servers"
            );
            feed.move_subscribers();
            last_move = Some(Instant::now());
        }
        tokio::select! {
            r = leader.changed() => if r.is_err() { return },
            r = members.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// `-bootstrap-expect=N` (N > 1): bootstrap raft exactly once, when N servers
/// of this datacenter see each other and none of them already belongs to a
/// cluster. A restarted server (its log holds a membership) never bootstraps.
pub async fn bootstrap_expect(ctx: ClusterCtx, expect: u32) {
    let node = &ctx.node;
    let mut members = ctx.gossip.subscribe();
    let probe = MuxClient::new(ctx.dialer.clone(), Protocol::Consul);
    loop {
        if node.raft().is_initialized().await.unwrap_or(true) {
            return;
        }
        let servers: Vec<MemberId> = members
            .borrow()
            .values()
            .filter(|m| m.status == MemberStatus::Alive && m.id.server && m.id.dc == ctx.datacenter)
            .map(|m| m.id.clone())
            .collect();
        if servers.len() >= expect as usize {
            let mut someone_formed = false;
            for s in servers
                .iter()
                .filter(|s| s.name != ctx.gossip.identity.name)
            {
                let reply = probe
                    .call::<_, ServerResponse>(
                        &rpc_addr(s),
                        &ServerRequest::Status,
                        Duration::from_secs(2),
                    )
                    .await;
                match reply {
                    Ok(Ok(Reply::Status(st))) if st.initialized || st.leader.is_some() => {
                        someone_formed = true
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("bootstrap: status of {}: {e}", s.name),
                }
            }
            if someone_formed {
                tracing::info!(
                    "bootstrap: a cluster already exists; waiting to be added by its leader"
                );
                return;
            }
            let nodes: BTreeMap<NodeId, BasicNode> = servers
                .iter()
                .map(|s| (raft_id(&s.node_id), BasicNode { addr: rpc_addr(s) }))
                .collect();
            tracing::info!(
                "bootstrap: found {} servers, bootstrapping the cluster",
                nodes.len()
            );
            match node.raft().initialize(nodes).await {
                Ok(()) => return,
                Err(e) => tracing::warn!("bootstrap: {e}"),
            }
        }
        tokio::select! {
            _ = members.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Runs for the server's lifetime; while this server is leader, reconciles
/// on every membership change and periodically.
pub async fn leader_loop(ctx: ClusterCtx) {
    let mut members = ctx.gossip.subscribe();
    let mut metrics = ctx.node.raft().metrics();
    let mut failed_since: HashMap<String, Instant> = HashMap::new();
    // Names gossip has shown this process: only those are reaped from the
    // catalog when they drop out of the member list, so nodes registered
    // directly through /v1/catalog/register are left alone.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    loop {
        seen.extend(members.borrow().keys().cloned());
        if ctx.consensus.is_leader() {
            let table = members.borrow().clone();
            let now = Instant::now();
            failed_since.retain(|name, _| {
                table
                    .get(name)
                    .is_some_and(|m| m.status == MemberStatus::Failed)
            });
            for (name, m) in table.iter() {
                if m.status == MemberStatus::Failed {
                    failed_since.entry(name.clone()).or_insert(now);
                }
            }
            init_autopilot(&ctx).await;
            if let Err(e) = reconcile_raft(&ctx, &table, &failed_since).await {
                tracing::warn!("reconcile raft membership: {e}");
            }
            if let Err(e) = reconcile_catalog(&ctx, &table, &seen).await {
                tracing::warn!("reconcile catalog: {e}");
            }
        }
        tokio::select! {
            r = members.changed() => if r.is_err() { return },
            r = metrics.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
        }
    }
}

/// A leader with no autopilot configuration stored writes Consul's
/// defaults, as Consul's leader does on taking office, so that it has a
/// `CreateIndex` and `?cas` works from the first read.
async fn init_autopilot(ctx: &ClusterCtx) {
    use crate::catalog::operator::{AutopilotConfig, AutopilotWrite, OperatorOp};
    let stored = ctx.catalog.reader().and_then(|r| r.autopilot());
    if !matches!(stored, Ok(None)) {
        return;
    }
    let cmd = Command::Operator(OperatorOp::Autopilot {
        config: AutopilotConfig::default(),
        write: AutopilotWrite::Init,
    });
    if let Err(e) = ctx.write(cmd).await {
        tracing::warn!("writing the default autopilot configuration: {e}");
    }
}

/// While this server is leader, invalidates TTL sessions that went
/// unrenewed for twice their TTL (the deadlines live in
/// `catalog::leases`; renewals re-arm them through the leader). Gaining
/// leadership starts every timer afresh, as Consul's new leader does.
pub async fn session_ttl_loop(ctx: ClusterCtx) {
    use crate::catalog::command::SessionOp;
    let mut changes = ctx.catalog.subscribe();
    let mut was_leader = false;
    let mut synced_at = None;
    loop {
        let leader = ctx.consensus.is_leader();
        let leases = &ctx.catalog.leases;
        if !leader {
            if was_leader {
                leases.clear_ttl();
            }
            was_leader = false;
            synced_at = None;
        } else {
            was_leader = true;
            let index = changes.borrow().sessions;
            if synced_at != Some(index) {
                // Arm timers for sessions that have none (new leader, or
                // created through another path) and drop timers of gone ones.
                if let Ok(sessions) = ctx.catalog.reader().and_then(|r| r.sessions()) {
                    let now = Instant::now();
                    let mut live = std::collections::HashSet::new();
                    for s in &sessions {
                        if let Some(ttl) = s.ttl() {
                            leases.ensure_ttl(&s.id, ttl, now);
                            live.insert(s.id.clone());
                        }
                    }
                    leases.retain_ttl(|id| live.contains(id));
                    synced_at = Some(index);
                }
            }
            for id in leases.expired(Instant::now()) {
                tracing::info!(session = %id, "session TTL expired, invalidating");
                leases.clear_ttl_of(&id);
                let cmd = Command::Session(SessionOp::Destroy { id: id.clone() });
                if let Err(e) = ctx.write(cmd).await {
                    tracing::warn!(session = %id, "invalidating expired session: {e}");
                }
            }
        }
        // Leadership is polled each second; deadlines and session changes
        // wake the loop at once.
        let mut wake = Instant::now() + Duration::from_secs(1);
        if let Some(d) = ctx.catalog.leases.next_deadline().filter(|_| leader) {
            wake = wake.min(d);
        }
        let seen = changes.borrow().sessions;
        tokio::select! {
            r = changes.wait_for(|c| c.sessions != seen) => if r.is_err() { return },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    }
}

/// Keeps raft membership equal to the alive servers of this datacenter:
/// a new server joins as a learner and becomes a voter once caught up; a
/// server that left, or has been failed for [`DEAD_SERVER_GRACE`], is
/// removed while a quorum of healthy voters remains; anything else in the
/// configuration (client agents that older versions added as learners) is
/// removed at once.
async fn reconcile_raft(
    ctx: &ClusterCtx,
    table: &BTreeMap<String, MemberInfo>,
    failed_since: &HashMap<String, Instant>,
) -> Result<(), String> {
    let m = {
        let metrics = ctx.node.raft().metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        Membership {
            voters: membership.voter_ids().collect(),
            nodes: membership.nodes().map(|(id, _)| *id).collect(),
        }
    };
    let by_id: HashMap<NodeId, &MemberInfo> = table
        .values()
        .map(|m| (raft_id(&m.id.node_id), m))
        .collect();
    add_servers(ctx, table, &m).await?;
    // Consul removes servers that left whatever the autopilot
    // configuration says; failed ones only with CleanupDeadServers (and
    // not below MinQuorum voters).
    let autopilot = ctx.node.autopilot_config();
    let cleanup = autopilot.cleanup_dead_servers && m.voters.len() > autopilot.min_quorum as usize;
    let failed_since = if cleanup {
        failed_since.clone()
    } else {
        HashMap::new()
    };
    let failed_since = &failed_since;
    if remove_a_dead_voter(ctx, table, &by_id, failed_since, &m).await? {
        return Ok(());
    }
    remove_non_voters(ctx, table, &by_id, failed_since, &m).await
}

/// The raft configuration as the leader sees it.
struct Membership {
    voters: BTreeSet<NodeId>,
    nodes: BTreeSet<NodeId>,
}

fn is_server(ctx: &ClusterCtx, m: &MemberInfo) -> bool {
    m.id.server && m.id.dc == ctx.datacenter
}

fn failed_too_long(failed_since: &HashMap<String, Instant>, m: &MemberInfo) -> bool {
    failed_since
        .get(&m.id.name)
        .is_some_and(|t| t.elapsed() >= DEAD_SERVER_GRACE)
}

/// Alive servers join as learners, and become voters once caught up.
async fn add_servers(
    ctx: &ClusterCtx,
    table: &BTreeMap<String, MemberInfo>,
    m: &Membership,
) -> Result<(), String> {
    let raft = ctx.node.raft();
    for member in table.values() {
        if member.status != MemberStatus::Alive || !is_server(ctx, member) {
            continue;
        }
        let id = raft_id(&member.id.node_id);
        if id == ctx.node.id() {
            continue;
        }
        let addr = rpc_addr(&member.id);
        if !m.nodes.contains(&id) {
            tracing::info!("adding server {} ({addr}) to raft", member.id.name);
            // Never block the loop on a catch-up: a server that dies while
            // it syncs would stall every later reconcile.
            raft.add_learner(id, BasicNode { addr }, false)
                .await
                .map_err(|e| e.to_string())?;
            continue;
        }
        if !m.voters.contains(&id) && caught_up(&ctx.node, id) {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Removes one voter that left, or failed long enough, while a quorum of
/// healthy voters remains; true if it did.
async fn remove_a_dead_voter(
    ctx: &ClusterCtx,
    table: &BTreeMap<String, MemberInfo>,
    by_id: &HashMap<NodeId, &MemberInfo>,
    failed_since: &HashMap<String, Instant>,
    m: &Membership,
) -> Result<bool, String> {
    let me = ctx.node.id();
    let healthy = m
        .voters
        .iter()
        .filter(|id| {
            **id == me
                || by_id
                    .get(id)
                    .is_some_and(|m| m.status == MemberStatus::Alive)
        })
        .count();
    for id in m.voters.iter().filter(|id| **id != me) {
        let remove = match by_id.get(id) {
            Some(m) if m.status == MemberStatus::Left => true,
            Some(m) if m.status == MemberStatus::Failed => failed_too_long(failed_since, m),
            Some(_) => false,
            // Not in gossip at all (pruned): treat as left.
            None => !table.is_empty(),
        };
        if remove && healthy > (m.voters.len() - 1) / 2 {
            tracing::info!("removing raft voter {id}");
            ctx.node
                .raft()
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([*id])), false)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes non-voters that are not alive (or briefly failed) servers:
/// servers gone for good, and anything that is not a server (client agents
/// that older versions added as learners).
async fn remove_non_voters(
    ctx: &ClusterCtx,
    table: &BTreeMap<String, MemberInfo>,
    by_id: &HashMap<NodeId, &MemberInfo>,
    failed_since: &HashMap<String, Instant>,
    m: &Membership,
) -> Result<(), String> {
    let gone: BTreeSet<NodeId> = m
        .nodes
        .iter()
        .filter(|id| !m.voters.contains(id) && **id != ctx.node.id())
        .filter(|id| match by_id.get(id) {
            Some(member) if !is_server(ctx, member) => true,
            Some(member) => match member.status {
                MemberStatus::Alive | MemberStatus::Leaving => false,
                MemberStatus::Left => true,
                MemberStatus::Failed => failed_too_long(failed_since, member),
            },
            None => !table.is_empty(),
        })
        .copied()
        .collect();
    if !gone.is_empty() {
        tracing::info!("removing non-voters {gone:?} from raft");
        ctx.node
            .raft()
            .change_membership(ChangeMembers::RemoveNodes(gone), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Whether a learner's replicated log is close enough to the leader's to
/// promote it to voter without stalling commits. A learner that has never
/// acknowledged an entry is not caught up, however short the log: the
/// leader may be unable to reach it at all (a server whose TLS
/// certificate it refuses), and a voter that never answers only lowers
/// the cluster's fault tolerance.
fn caught_up(node: &RaftNode, id: NodeId) -> bool {
    let m = node.raft().metrics();
    let m = m.borrow();
    let last = m.last_log_index.unwrap_or(0);
    let Some(matched) = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
    else {
        return false;
    };
    last.saturating_sub(matched.index) <= 100
}

fn serf_check(node: &str, status: HealthStatus) -> Check {
    Check {
        node: node.to_string(),
        check_id: SERF_HEALTH_CHECK_ID.into(),
        name: "Serf Health Status".into(),
        status,
        output: match status {
            HealthStatus::Passing => "Agent alive and reachable".into(),
            _ => "Agent not live or unreachable".into(),
        },
        ..Check::default()
    }
}

/// Makes the catalog agree with gossip: alive members have a passing
/// `serfHealth`, failed ones a critical one (so DNS and `?passing` drop
/// every service on them), and nodes that left are deregistered.
async fn reconcile_catalog(
    ctx: &ClusterCtx,
    table: &BTreeMap<String, MemberInfo>,
    seen: &BTreeSet<String>,
) -> Result<(), String> {
    let (nodes, serf): (BTreeMap<String, Node>, BTreeMap<String, HealthStatus>) = {
        let r = ctx.catalog.reader().map_err(|e| e.to_string())?;
        let nodes = r
            .nodes()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        let serf = r
            .checks_in_state(None)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|c| c.check_id == SERF_HEALTH_CHECK_ID)
            .map(|c| (c.node, c.status))
            .collect();
        (nodes, serf)
    };
    for (name, m) in table {
        if m.id.dc != ctx.datacenter {
            continue;
        }
        let want = match m.status {
            MemberStatus::Alive | MemberStatus::Leaving => HealthStatus::Passing,
            MemberStatus::Failed => HealthStatus::Critical,
            MemberStatus::Left => {
                if nodes.contains_key(name) {
                    tracing::info!("deregistering node {name} that left");
                    let d = Deregistration {
                        node: name.clone(),
                        service_id: None,
                        check_id: None,
                    };
                    ctx.write(Command::Deregister(d)).await?;
                }
                continue;
            }
        };
        if serf.get(name) == Some(&want) {
            continue;
        }
        let exists = nodes.contains_key(name);
        let node = nodes.get(name).cloned().unwrap_or_else(|| Node {
            id: m.id.node_id.clone(),
            name: name.clone(),
            address: m.id.addr.ip().to_string(),
            datacenter: m.id.dc.clone(),
            ..Node::default()
        });
        if !exists && want == HealthStatus::Critical {
            continue;
        }
        let reg = Registration {
            node,
            service: None,
            checks: vec![serf_check(name, want)],
            skip_node_update: true,
        };
        ctx.write(Command::Register(reg)).await?;
    }
    // Nodes gossip no longer knows (pruned or reaped) that were gossip-managed.
    for name in serf.keys() {
        if !table.contains_key(name) && seen.contains(name) && nodes.contains_key(name) {
            let d = Deregistration {
                node: name.clone(),
                service_id: None,
                check_id: None,
            };
            ctx.write(Command::Deregister(d)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_backoff_starts_near_a_second_and_stops_at_the_interval() {
        let interval = Duration::from_secs(30);
        let first = join_backoff(1, interval);
        assert!(first >= Duration::from_secs(1) && first <= Duration::from_millis(1100));
        let second = join_backoff(2, interval);
        assert!(second >= Duration::from_secs(2) && second <= Duration::from_millis(2200));
        let late = join_backoff(20, interval);
        assert!(late >= interval && late <= interval + interval / 10);
        // A short -retry-interval caps it from the start.
        assert!(join_backoff(1, Duration::from_millis(500)) <= Duration::from_millis(550));
    }
}
