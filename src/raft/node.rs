//! The raft-backed consensus backend of a server. A write is proposed
//! here when this server leads, else forwarded to the leader over the RPC
//! port (at most [`MAX_HOPS`] server-to-server hops). Reads get a read
//! index from the leader and then wait until this server's replica has
//! applied it.

mod autopilot;
mod transfer;

use super::{NodeId, Raft};
use crate::catalog::command::{Command, KvOp, Response, SessionOp, TxnError, TxnOp};
use crate::catalog::Catalog;
use crate::consensus::api::{
    mismatched, AclCall, AclEndpoints, AclReply, Reply, ServerRequest, ServerResponse, StatusReply,
    MAX_HOPS,
};
use crate::consensus::autopilot::HealthReport;
use crate::consensus::{
    Backend, ConsensusError, Contact, PeerRef, RaftConfiguration, RaftServer, RaftStats,
    LEADER_HOLD,
};
use crate::gossip::Gossip;
use crate::rpc::{Dialer, MuxClient, Protocol};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Timeout of one forwarded call to the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(12);
/// How long a leader waits for a write to commit before giving up, like
/// Consul's RPC hold timeout, instead of hanging a client when it has lost
/// its quorum.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(7);
/// The pause before a write no leader took is sent again (the new leader
/// may not be known yet).
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long a read waits for the local replica to reach its read index.
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// How long after a quorum last acknowledged it (a heartbeat or an append
/// that a quorum accepted, a committed write, or a leadership
/// confirmation) a leader answers default reads from its own state without
/// asking the quorum again. Shorter than the election timeout: a quorum
/// that acknowledged this leader at `t` elects no other before `t` +
/// [`super::ELECTION_TIMEOUT_MIN_MS`], so no write can commit elsewhere
/// while the lease holds. Consul's leader steps
/// down after its 500 ms leader lease for the same reason.
const LEADER_LEASE: Duration = Duration::from_millis(super::ELECTION_TIMEOUT_MIN_MS * 3 / 4);

/// The leader's lease: the term and the instant before the last request a
/// quorum acknowledged (a committed write or a leadership confirmation).
#[derive(Clone, Copy, Debug, Default)]
struct Lease(Option<(u64, Instant)>);

impl Lease {
    /// Whether a default read may be answered from the leader's state in
    /// `term` at `now`.
    fn holds(self, term: u64, now: Instant) -> bool {
        self.0
            .is_some_and(|(t, at)| t == term && now.saturating_duration_since(at) < LEADER_LEASE)
    }

    /// Records that a quorum acknowledged a request of `term` sent after
    /// `asked`.
    fn renew(&mut self, term: u64, asked: Instant) {
        match self.0 {
            Some((t, at)) if t == term && at >= asked => {}
            _ => self.0 = Some((term, asked)),
        }
    }
}

/// Runs `attempt` (given the overall deadline) again after
/// [`RETRY_PAUSE`] for as long as it finds no leader, until
/// [`LEADER_HOLD`] has passed.
async fn held_through_elections<T, F, Fut>(mut attempt: F) -> Result<T, ConsensusError>
where
    F: FnMut(tokio::time::Instant) -> Fut,
    Fut: std::future::Future<Output = Result<T, ConsensusError>>,
{
    let deadline = tokio::time::Instant::now() + LEADER_HOLD;
    loop {
        match attempt(deadline).await {
            Err(ConsensusError::NoLeader)
                if tokio::time::Instant::now() + RETRY_PAUSE < deadline =>
            {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            r => return r,
        }
    }
}

pub struct RaftNode {
    pub(crate) raft: Raft,
    id: NodeId,
    forward: MuxClient,
    /// When the leader last reached this server (AppendEntries received).
    last_contact: parking_lot::Mutex<Option<Instant>>,
    /// The local replica, for the checks the leader makes before proposing
    /// (lock-delay, session renewal).
    catalog: Arc<Catalog>,
    /// Names the servers in the raft configuration.
    gossip: Gossip,
    leader_tx: watch::Sender<Option<String>>,
    lease: parking_lot::Mutex<Lease>,
    /// Which followers accepted this server's AppendEntries, and when.
    acks: super::network::Acks,
    /// Held while the leader decides on a command and hands it to raft, so
    /// entries enter the log in the order they were decided (see
    /// [`RaftNode::submit`]).
    submit_order: tokio::sync::Mutex<()>,
    /// Token resolution for writes forwarded by client agents.
    acl: std::sync::OnceLock<crate::acl::Resolver>,
    /// The HTTP API's ACL endpoints, for requests client agents forward.
    acl_endpoints: std::sync::OnceLock<Arc<dyn AclEndpoints>>,
    /// Commands this leader handed to raft that have not been applied (or
    /// failed) yet.
    unapplied: Arc<watch::Sender<usize>>,
    /// Coordinate updates waiting for the next batch.
    coordinates: Arc<crate::coordinate::batch::Batcher>,
    /// Since when each server's autopilot health holds (on the leader).
    stability: autopilot::Stability,
}

type ClientWriteResult = Result<
    openraft::raft::ClientWriteResponse<super::TypeConfig>,
    ClientWriteError<NodeId, BasicNode>,
>;

/// Whether `cmd` acquires a lock (alone or inside a transaction).
fn takes_lock(cmd: &Command) -> bool {
    match cmd {
        Command::Kv(KvOp::Lock { .. }) => true,
        Command::Txn(ops) => ops
            .iter()
            .any(|op| matches!(op, TxnOp::Write(KvOp::Lock { .. }))),
        _ => false,
    }
}

impl RaftNode {
    /// `dialer`: how outgoing RPC connections are made.
    pub fn start(
        raft: Raft,
        id: NodeId,
        dialer: Dialer,
        catalog: Arc<Catalog>,
        gossip: Gossip,
        acks: super::network::Acks,
        coordinate_timings: crate::coordinate::Timings,
    ) -> Arc<RaftNode> {
        let node = Arc::new(RaftNode {
            raft,
            id,
            forward: MuxClient::new(dialer, Protocol::Consul),
            last_contact: parking_lot::Mutex::new(None),
            catalog,
            gossip,
            leader_tx: watch::channel(None).0,
            lease: parking_lot::Mutex::new(Lease::default()),
            acks,
            submit_order: tokio::sync::Mutex::new(()),
            acl: std::sync::OnceLock::new(),
            acl_endpoints: std::sync::OnceLock::new(),
            unapplied: Arc::new(watch::channel(0).0),
            coordinates: Arc::new(crate::coordinate::batch::Batcher::new(coordinate_timings)),
            stability: Default::default(),
        });
        tokio::spawn(propose_coordinates(Arc::downgrade(&node)));
        let weak = Arc::downgrade(&node);
        let mut metrics = node.raft.metrics();
        tokio::spawn(async move {
            loop {
                let Some(node) = weak.upgrade() else { return };
                let leader = node.leader().map(|(_, addr)| addr);
                node.leader_tx.send_if_modified(|cur| {
                    if *cur != leader {
                        *cur = leader;
                        true
                    } else {
                        false
                    }
                });
                drop(node);
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        node
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether this server leads right now.
    pub fn is_leader_now(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// What the leader decides before a command enters the log, on its own
    /// clock (as Consul's leader does): an acquire of a key in lock-delay
    /// fails without a log entry, and a session renewal only re-arms the
    /// leader's TTL timer. `Some` answers the command without proposing it.
    fn before_propose(&self, cmd: &Command) -> Option<Response> {
        let now = Instant::now();
        let leases = &self.catalog.leases;
        match cmd {
            Command::Kv(KvOp::Lock { key, .. }) if leases.lock_delay(key, now).is_some() => {
                tracing::warn!(key = %key, "rejecting lock of key due to lock-delay");
                Some(Response::Bool(false))
            }
            Command::Txn(ops) => {
                let errors: Vec<TxnError> = ops
                    .iter()
                    .enumerate()
                    .filter_map(|(i, op)| match op {
                        TxnOp::Write(KvOp::Lock { key, .. })
                            if leases.lock_delay(key, now).is_some() =>
                        {
                            Some(TxnError {
                                op_index: i,
                                what: format!("failed to lock key {key:?} due to lock delay"),
                            })
                        }
                        _ => None,
                    })
                    .collect();
                (!errors.is_empty()).then_some(Response::Txn(Err(errors)))
            }
            Command::Session(SessionOp::Renew { id }) => {
                let session = match self.catalog.reader().and_then(|r| r.session(id)) {
                    Ok(s) => s,
                    Err(e) => return Some(Response::Rejected(format!("state store: {e}"))),
                };
                if let Some(ttl) = session.as_ref().and_then(|s| s.ttl()) {
                    leases.reset_ttl(id, ttl, now);
                }
                Some(Response::Session(session))
            }
            _ => None,
        }
    }

    /// The leader's TTL bookkeeping after a session command committed.
    fn after_commit(&self, cmd: &SessionOp, resp: &Response) {
        let leases = &self.catalog.leases;
        match (cmd, resp) {
            (SessionOp::Create(s), Response::Bool(true)) => {
                if let Some(ttl) = s.ttl() {
                    leases.reset_ttl(&s.id, ttl, Instant::now());
                }
            }
            (SessionOp::Destroy { id }, _) => leases.clear_ttl_of(id),
            _ => {}
        }
    }

    /// AppendEntries arrived from the leader.
    pub fn touch_contact(&self) {
        *self.last_contact.lock() = Some(Instant::now());
    }

    /// Milliseconds since this server last heard from the leader
    /// (`X-Consul-LastContact`): 0 on the leader.
    pub fn last_contact_ms(&self) -> u64 {
        if self.is_leader() {
            return 0;
        }
        match *self.last_contact.lock() {
            Some(t) => t.elapsed().as_millis() as u64,
            None => 0,
        }
    }

    fn current_term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Whether this leader's lease holds and it applied an entry of its
    /// term. The lease runs from the latest instant a quorum is known to
    /// have accepted this leadership: the heartbeats raft sends every
    /// 100 ms renew it with no round trip of the read's own, so a default
    /// read on a leader whose followers answer needs no quorum round.
    fn lease_holds(&self) -> bool {
        let (term, own_applied, acked) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let own = m
                .last_applied
                .is_some_and(|l| l.leader_id.term == m.current_term);
            let now = Instant::now();
            let acked = self.acks.quorum_since(
                m.current_term,
                self.id,
                m.membership_config.membership().get_joint_config(),
                now,
            );
            (m.current_term, own, acked)
        };
        if !own_applied {
            return false;
        }
        let mut lease = self.lease.lock();
        if let Some(at) = acked {
            lease.renew(term, at);
        }
        lease.holds(term, Instant::now())
    }

    /// The leader's commit index: the read index of a default read. Not
    /// its applied index, which can trail it: a follower learns the commit
    /// from the next AppendEntries and may apply an entry before the
    /// leader's own state machine has, so a reader served at the leader's
    /// applied index could miss a write another reader already saw. The
    /// caller waits until its replica has applied what this returns.
    async fn committed_index(&self) -> Result<u64, ConsensusError> {
        let committed = self
            .raft
            .with_raft_state(|st| st.committed.map_or(0, |l| l.index))
            .await
            .map_err(|_| ConsensusError::NoLeader)?;
        Ok(committed.max(self.applied_index()))
    }

    fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Proposes on the leader, or forwards there. A write that no leader
    /// took is tried again on the next one until [`LEADER_HOLD`] has passed,
    /// as Consul holds an RPC through an election: "No cluster leader" means
    /// the entry never entered a leader's log (this server lost the lead
    /// before appending it, or the new leader truncated it; raft answers
    /// both with `ForwardToLeader`), so sending it again cannot apply it
    /// twice.
    pub async fn propose(&self, cmd: Command, hops: u8) -> Result<(u64, Response), ConsensusError> {
        held_through_elections(|deadline| self.propose_once(cmd.clone(), hops, deadline)).await
    }

    async fn propose_once(
        &self,
        cmd: Command,
        hops: u8,
        deadline: tokio::time::Instant,
    ) -> Result<(u64, Response), ConsensusError> {
        let leader = self.await_leader_until(deadline).await?;
        if leader.0 != self.id {
            if hops >= MAX_HOPS {
                return Err(ConsensusError::NoLeader);
            }
            let req = ServerRequest::Write {
                cmd,
                hops: hops + 1,
                // Inside a request (or a forwarded write): its token; the
                // server's own writes: its agent token.
                token: crate::acl::request_token()
                    .unwrap_or_else(|| self.acl.get().and_then(|a| a.agent_secret())),
            };
            return match self.forward_to(&leader.1, &req).await? {
                Reply::Written { index, response } => Ok((index, response)),
                _ => Err(mismatched()),
            };
        }
        let session_op = match &cmd {
            Command::Session(op) => Some(op.clone()),
            _ => None,
        };
        let name = cmd.name();
        let term = self.current_term();
        let started = Instant::now();
        let applied = {
            let _order = self.submit_order.lock().await;
            if takes_lock(&cmd) {
                self.wait_all_applied().await?;
            }
            if let Some(resp) = self.before_propose(&cmd) {
                return Ok((self.applied_index(), resp));
            }
            self.submit(cmd).await?
        };
        let res = tokio::time::timeout(COMMIT_TIMEOUT, applied)
            .await
            .map_err(|_| ConsensusError::CommitTimeout)?
            .map_err(|_| ConsensusError::Raft("raft stopped".into()))?;
        crate::metrics::raft_apply(name, started.elapsed());
        match res {
            Ok(resp) => {
                if resp.log_id.leader_id.term == term {
                    self.lease.lock().renew(term, started);
                }
                if let Some(op) = &session_op {
                    self.after_commit(op, &resp.data);
                }
                Ok((resp.log_id.index, resp.data))
            }
            Err(ClientWriteError::ForwardToLeader(_)) => Err(ConsensusError::NoLeader),
            Err(e) => Err(ConsensusError::Raft(e.to_string())),
        }
    }

    /// Hands `cmd` to raft (it is appended in the order of these calls) and
    /// returns its result once this server has applied it. Counted in
    /// `unapplied` until then.
    async fn submit(
        &self,
        cmd: Command,
    ) -> Result<tokio::sync::oneshot::Receiver<ClientWriteResult>, ConsensusError> {
        let rx = self
            .raft
            .client_write_ff(cmd)
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))?;
        self.unapplied.send_modify(|n| *n += 1);
        let unapplied = self.unapplied.clone();
        let (tx, out) = tokio::sync::oneshot::channel();
        // A task of its own, so the count drops when raft is done with the
        // entry even if the caller has given up waiting.
        tokio::spawn(async move {
            let res = rx.await;
            unapplied.send_modify(|n| *n = n.saturating_sub(1));
            if let Ok(res) = res {
                let _ = tx.send(res);
            }
        });
        Ok(out)
    }

    /// Waits until every entry in this leader's log, and every command it
    /// has handed to raft, has been applied here. An acquire is checked
    /// against lock-delay only after this: an invalidation that entered the
    /// log before the acquire has then started its lock-delay. Without it an
    /// acquire decided while the release was committing went through at
    /// once, and a second holder took a lock its invalidated holder could
    /// still own (tests/lock_faults.rs). Called with `submit_order` held,
    /// so nothing enters the log meanwhile.
    async fn wait_all_applied(&self) -> Result<(), ConsensusError> {
        let last_log = self.raft.metrics().borrow().last_log_index;
        let mut unapplied = self.unapplied.subscribe();
        let wait = async {
            let _ = unapplied.wait_for(|n| *n == 0).await;
            self.raft
                .wait(None)
                .applied_index_at_least(last_log, "lock-delay barrier")
                .await
        };
        match tokio::time::timeout(COMMIT_TIMEOUT, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ConsensusError::Raft(e.to_string())),
            Err(_) => Err(ConsensusError::CommitTimeout),
        }
    }

    /// The index a read must see to be as fresh as the leader (confirmed
    /// with a quorum when `linearizable`), from the leader.
    ///
    /// A leadership confirmation that fails (no quorum answered the
    /// heartbeat in time, as under CPU starvation or during an election) is
    /// tried again, on this leader or the next, until [`LEADER_HOLD`] has
    /// passed, as writes are: the read stays linearizable and the client
    /// waits instead of getting "No cluster leader" for a slow heartbeat.
    pub async fn leader_index(&self, linearizable: bool, hops: u8) -> Result<u64, ConsensusError> {
        held_through_elections(|deadline| self.leader_index_once(linearizable, hops, deadline))
            .await
    }

    async fn leader_index_once(
        &self,
        linearizable: bool,
        hops: u8,
        deadline: tokio::time::Instant,
    ) -> Result<u64, ConsensusError> {
        let leader = self.await_leader_until(deadline).await?;
        if leader.0 == self.id {
            // A default read is answered from this leader's state while its
            // lease holds and it has applied an entry of its own term (so
            // everything its predecessors committed); otherwise, like a
            // `?consistent` one, once a quorum confirms the leadership. A
            // leader cut off from its quorum so stops serving old data
            // within the lease instead of for as long as the partition lasts.
            if !linearizable && self.lease_holds() {
                return self.committed_index().await;
            }
            let term = self.current_term();
            let asked = Instant::now();
            return match self.raft.ensure_linearizable().await {
                Ok(l) => {
                    self.lease.lock().renew(term, asked);
                    Ok(l.map_or(0, |l| l.index))
                }
                Err(_) => Err(ConsensusError::NoLeader),
            };
        }
        if hops >= MAX_HOPS {
            return Err(ConsensusError::NoLeader);
        }
        let req = ServerRequest::ReadIndex {
            linearizable,
            hops: hops + 1,
        };
        match self.forward_to(&leader.1, &req).await? {
            Reply::Index(i) => Ok(i),
            _ => Err(mismatched()),
        }
    }

    async fn forward_to(&self, addr: &str, req: &ServerRequest) -> Result<Reply, ConsensusError> {
        self.forward
            .call::<_, ServerResponse>(addr, req, FORWARD_TIMEOUT)
            .await
            .map_err(|e| ConsensusError::Rpc(e.to_string()))?
    }

    /// The leader's ID and RPC address, waiting up to [`LEADER_HOLD`] for one.
    async fn await_leader(&self) -> Result<(NodeId, String), ConsensusError> {
        self.await_leader_until(tokio::time::Instant::now() + LEADER_HOLD)
            .await
    }

    async fn await_leader_until(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(NodeId, String), ConsensusError> {
        if let Some(l) = self.leader() {
            return Ok(l);
        }
        let mut rx = self.raft.metrics();
        loop {
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        return Err(ConsensusError::NoLeader);
                    }
                    if let Some(l) = self.leader() {
                        return Ok(l);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(ConsensusError::NoLeader),
            }
        }
    }

    /// Single-server bootstrap (`-dev`, `-bootstrap`, `-bootstrap-expect=1`).
    /// A no-op if the log already holds a membership.
    pub async fn bootstrap_alone(&self, rpc_addr: &str) -> Result<(), ConsensusError> {
        if self.initialized().await {
            return Ok(());
        }
        let members = BTreeMap::from([(
            self.id,
            BasicNode {
                addr: rpc_addr.to_string(),
            },
        )]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ConsensusError::Raft(e.to_string())),
        }
    }

    pub async fn initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    pub async fn status(&self) -> StatusReply {
        let initialized = self.initialized().await;
        let m = self.raft.metrics();
        let m = m.borrow();
        StatusReply {
            initialized,
            leader: m.current_leader,
            voters: m.membership_config.membership().voter_ids().count(),
        }
    }

    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())?;
        Some((leader, addr))
    }

    /// Members of the raft configuration: (ID, RPC address, voter).
    pub fn members(&self) -> Vec<(NodeId, String, bool)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
            .collect()
    }

    /// Node UUIDs and names of the servers gossip knows, by raft ID.
    fn server_names(&self) -> HashMap<NodeId, (String, String)> {
        let mut names: HashMap<NodeId, (String, String)> = HashMap::new();
        if let Ok(r) = self.catalog.reader() {
            if let Ok(nodes) = r.nodes() {
                for n in nodes.into_iter().filter(|n| !n.id.is_empty()) {
                    names.insert(super::raft_id(&n.id), (n.id, n.name));
                }
            }
        }
        for m in self.gossip.members().values() {
            names.insert(
                super::raft_id(&m.id.node_id),
                (m.id.node_id.clone(), m.id.name.clone()),
            );
        }
        names
    }

    /// The raft configuration as this server sees it. On the leader each
    /// server's last index is what replication has confirmed it holds; a
    /// follower knows only its own.
    pub fn local_configuration(&self) -> RaftConfiguration {
        let names = self.server_names();
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader;
        let own_last = m.last_log_index.unwrap_or(0);
        let matched: BTreeMap<NodeId, u64> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| (*id, l.map(|l| l.index).unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        let index = m
            .membership_config
            .log_id()
            .map(|l| l.index)
            .unwrap_or(0)
            // A bootstrap configuration sits at raft index 0; Consul's is never 0.
            .max(1);
        let servers = self
            .members()
            .into_iter()
            .map(|(id, address, voter)| {
                let (uuid, node) = names
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| (id.to_string(), String::new()));
                let last_index = if id == self.id {
                    own_last
                } else {
                    matched.get(&id).copied().unwrap_or(0)
                };
                RaftServer {
                    id: uuid,
                    node,
                    address,
                    leader: leader == Some(id),
                    voter,
                    last_index,
                }
            })
            .collect();
        RaftConfiguration { servers, index }
    }

    pub async fn configuration_via(
        &self,
        stale: bool,
        hops: u8,
    ) -> Result<RaftConfiguration, ConsensusError> {
        if stale {
            return Ok(self.local_configuration());
        }
        let leader = self.await_leader().await?;
        if leader.0 == self.id {
            return Ok(self.local_configuration());
        }
        if hops >= MAX_HOPS {
            return Err(ConsensusError::NoLeader);
        }
        let req = ServerRequest::Configuration {
            stale,
            hops: hops + 1,
        };
        match self.forward_to(&leader.1, &req).await? {
            Reply::Configuration(c) => Ok(c),
            _ => Err(mismatched()),
        }
    }

    /// Removes a server from the configuration, on the leader.
    pub async fn remove_peer_via(&self, peer: PeerRef, hops: u8) -> Result<(), ConsensusError> {
        let members = self.members();
        let target = match &peer {
            PeerRef::Id(id) => {
                let rid = super::raft_id(id);
                members
                    .iter()
                    .find(|(m, _, _)| *m == rid)
                    .ok_or_else(|| ConsensusError::PeerNotFound(format!("id {id:?}")))?
                    .0
            }
            PeerRef::Address(addr) => {
                members
                    .iter()
                    .find(|(_, a, _)| a == addr)
                    .ok_or_else(|| ConsensusError::PeerNotFound(format!("address {addr:?}")))?
                    .0
            }
        };
        let leader = self.await_leader().await?;
        if leader.0 != self.id {
            if hops >= MAX_HOPS {
                return Err(ConsensusError::NoLeader);
            }
            let req = ServerRequest::RemovePeer {
                peer,
                hops: hops + 1,
            };
            return match self.forward_to(&leader.1, &req).await? {
                Reply::Done => Ok(()),
                _ => Err(mismatched()),
            };
        }
        let voter = members.iter().any(|(id, _, v)| *id == target && *v);
        let change = if voter {
            // retain=false drops the removed voter from the node set as well.
            ChangeMembers::RemoveVoters(BTreeSet::from([target]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([target]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))?;
        Ok(())
    }

    /// Answers a forwarded request.
    pub async fn handle(&self, req: ServerRequest) -> ServerResponse {
        match req {
            ServerRequest::Write { cmd, hops, token } => {
                self.authorize(&cmd, token.as_deref()).await?;
                crate::acl::REQUEST_TOKEN
                    .scope(token, self.propose(cmd, hops))
                    .await
                    .map(|(index, response)| Reply::Written { index, response })
            }
            ServerRequest::ReadIndex { linearizable, hops } => self
                .leader_index(linearizable, hops)
                .await
                .map(Reply::Index),
            ServerRequest::Leader => Ok(Reply::Leader(self.leader().map(|(_, a)| a))),
            ServerRequest::Peers => Ok(Reply::Peers(self.voter_addrs())),
            ServerRequest::Configuration { stale, hops } => self
                .configuration_via(stale, hops)
                .await
                .map(Reply::Configuration),
            ServerRequest::RemovePeer { peer, hops } => {
                self.remove_peer_via(peer, hops).await.map(|()| Reply::Done)
            }
            ServerRequest::Status => Ok(Reply::Status(self.status().await)),
            ServerRequest::AutopilotHealth { hops } => {
                self.health_via(hops).await.map(Reply::Health)
            }
            ServerRequest::TransferLeader { id, hops } => self
                .transfer_leader_via(id, hops)
                .await
                .map(|()| Reply::Done),
            ServerRequest::StartElection => self.start_election().await.map(|()| Reply::Done),
            ServerRequest::ResolveToken { secret } => {
                self.resolve_local(&secret).map(Reply::Identity)
            }
            ServerRequest::UpdateCoordinates { updates, token } => {
                let cmd = Command::Coordinates(updates);
                self.authorize(&cmd, token.as_deref()).await?;
                let Command::Coordinates(updates) = cmd else {
                    return Err(mismatched());
                };
                self.queue_coordinates(updates).map(|()| Reply::Done)
            }
            ServerRequest::Acl(call) => match self.acl_endpoints.get() {
                Some(endpoints) => Ok(Reply::Acl(endpoints.serve(call).await)),
                // The HTTP API is built after the RPC port opens.
                None => Err(ConsensusError::Rpc("the server is starting".into())),
            },
            ServerRequest::Datacenter { call, hops } => match self.acl_endpoints.get() {
                Some(endpoints) => Ok(Reply::Acl(endpoints.serve_datacenter(call, hops).await)),
                None => Err(ConsensusError::Rpc("the server is starting".into())),
            },
        }
    }

    fn queue_coordinates(
        &self,
        updates: Vec<crate::coordinate::CoordinateEntry>,
    ) -> Result<(), ConsensusError> {
        self.coordinates
            .queue(updates)
            .map_err(|e| ConsensusError::Raft(e.to_string()))
    }

    /// Gives the server its HTTP API's ACL endpoints, for the `/v1/acl/*`
    /// requests client agents forward.
    pub fn set_acl_endpoints(&self, endpoints: Arc<dyn AclEndpoints>) {
        let _ = self.acl_endpoints.set(endpoints);
    }

    /// Authorizes a forwarded write with the token it carries (None: the
    /// server's default token, else anonymous). ACLs off: everything passes.
    async fn authorize(&self, cmd: &Command, token: Option<&str>) -> Result<(), ConsensusError> {
        let Some(acl) = self.acl.get().filter(|a| a.enabled()) else {
            return Ok(());
        };
        let authz = match acl.resolve(token).await {
            Ok(a) => a,
            Err(crate::acl::ResolveError::NotFound) => {
                return Err(ConsensusError::AclDenied("ACL not found".into()))
            }
            Err(crate::acl::ResolveError::Unavailable(m)) => return Err(ConsensusError::Rpc(m)),
        };
        let r = self
            .catalog
            .reader()
            .map_err(|e| ConsensusError::Rpc(format!("state store: {e}")))?;
        crate::acl::command::authorize(&authz, cmd, &r).map_err(ConsensusError::AclDenied)
    }

    /// Gives the server its token resolver, for forwarded writes.
    pub fn set_acl(&self, acl: crate::acl::Resolver) {
        let _ = self.acl.set(acl);
    }

    fn resolve_local(&self, secret: &str) -> Result<Option<crate::acl::Identity>, ConsensusError> {
        let r = self
            .catalog
            .reader()
            .map_err(|e| ConsensusError::Rpc(format!("state store: {e}")))?;
        // The client agent asking is in this server's datacenter.
        let dc = self.acl.get().map_or("", |a| a.datacenter());
        crate::acl::resolver::identity_of(&r, secret, crate::acl::resolver::now_nanos(), dc)
            .map_err(|e| ConsensusError::Rpc(format!("state store: {e}")))
    }

    fn voter_addrs(&self) -> Vec<String> {
        self.members()
            .into_iter()
            .filter(|(_, _, voter)| *voter)
            .map(|(_, addr, _)| addr)
            .collect()
    }
}

/// Proposes the queued coordinate updates every batch period, for as long
/// as the server runs. A batch that fails (no leader) is dropped: agents
/// send their coordinates again at their next sync.
async fn propose_coordinates(node: std::sync::Weak<RaftNode>) {
    let Some(period) = node.upgrade().map(|n| n.coordinates.period()) else {
        return;
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        let (batches, dropped) = node.coordinates.take();
        if dropped > 0 {
            tracing::warn!(dropped, "Discarded coordinate updates");
        }
        for batch in batches {
            if let Err(e) = node.propose(Command::Coordinates(batch), 0).await {
                tracing::debug!("coordinate batch update: {e}");
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for RaftNode {
    async fn write(&self, cmd: Command) -> Result<(u64, Response), ConsensusError> {
        self.propose(cmd, 0).await
    }

    async fn update_coordinates(
        &self,
        updates: Vec<crate::coordinate::CoordinateEntry>,
    ) -> Result<(), ConsensusError> {
        self.queue_coordinates(updates)
    }

    async fn read_index(&self, linearizable: bool) -> Result<u64, ConsensusError> {
        let index = self.leader_index(linearizable, 0).await?;
        if index > 0 {
            self.raft
                .wait(Some(APPLY_WAIT))
                .applied_index_at_least(Some(index), "read index")
                .await
                .map_err(|_| ConsensusError::StaleReplica(index))?;
        }
        Ok(index)
    }

    async fn leader(&self) -> Result<Option<String>, ConsensusError> {
        Ok(RaftNode::leader(self).map(|(_, a)| a))
    }

    async fn peers(&self) -> Result<Vec<String>, ConsensusError> {
        Ok(self.voter_addrs())
    }

    async fn configuration(&self, stale: bool) -> Result<RaftConfiguration, ConsensusError> {
        self.configuration_via(stale, 0).await
    }

    async fn remove_peer(&self, peer: PeerRef) -> Result<(), ConsensusError> {
        self.remove_peer_via(peer, 0).await
    }

    async fn autopilot_health(&self) -> Result<HealthReport, ConsensusError> {
        self.health_via(0).await
    }

    async fn transfer_leader(&self, id: Option<String>) -> Result<(), ConsensusError> {
        self.transfer_leader_via(id, 0).await
    }

    fn contact(&self) -> Contact {
        Contact {
            known_leader: RaftNode::leader(self).is_some(),
            last_contact_ms: self.last_contact_ms(),
        }
    }

    fn is_leader(&self) -> bool {
        self.is_leader_now()
    }

    fn leader_watch(&self) -> watch::Receiver<Option<String>> {
        self.leader_tx.subscribe()
    }

    async fn resolve_token(
        &self,
        secret: &str,
    ) -> Result<Option<crate::acl::Identity>, ConsensusError> {
        self.resolve_local(secret)
    }

    async fn forward_acl(
        &self,
        _call: AclCall,
        _timeout: Duration,
    ) -> Result<AclReply, ConsensusError> {
        Err(ConsensusError::Raft(
            "a server answers ACL requests itself".into(),
        ))
    }

    async fn forward_datacenter(
        &self,
        _call: AclCall,
        _hops: u8,
        _timeout: Duration,
    ) -> Result<AclReply, ConsensusError> {
        Err(ConsensusError::Raft(
            "a server forwards to other datacenters itself".into(),
        ))
    }

    async fn raft_stats(&self) -> Option<RaftStats> {
        let m = self.raft.metrics().borrow().clone();
        // The metrics have no commit index; raft's own state does.
        let committed = self
            .raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .ok()
            .flatten();
        let leader = m.current_leader == Some(self.id);
        let state = match format!("{:?}", m.state).as_str() {
            "Leader" => "Leader",
            "Candidate" => "Candidate",
            _ => "Follower",
        };
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        Some(RaftStats {
            state,
            term: m.current_term,
            applied_index: applied,
            commit_index: committed.unwrap_or(applied),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            last_snapshot_term: m.snapshot.map(|l| l.leader_id.term).unwrap_or(0),
            latest_configuration_index: m.membership_config.log_id().map(|l| l.index).unwrap_or(0),
            voters: m.membership_config.membership().voter_ids().count(),
            last_contact: if leader {
                "0".into()
            } else {
                match *self.last_contact.lock() {
                    Some(t) => format!("{}ms", t.elapsed().as_millis()),
                    None => "never".into(),
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_holds_only_in_its_term_and_for_less_than_an_election_timeout() {
        let t0 = Instant::now();
        let mut lease = Lease::default();
        assert!(
            !lease.holds(1, t0),
            "no quorum has acknowledged anything yet"
        );
        lease.renew(1, t0);
        assert!(lease.holds(1, t0 + LEADER_LEASE / 2));
        assert!(!lease.holds(1, t0 + LEADER_LEASE));
        assert!(
            !lease.holds(2, t0),
            "a lease is for the term it was granted in"
        );
        assert!(LEADER_LEASE < Duration::from_millis(crate::raft::ELECTION_TIMEOUT_MIN_MS));
    }

    #[test]
    fn lease_renewal_never_moves_it_back() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(200);
        let mut lease = Lease::default();
        lease.renew(1, later);
        // A slower request that was sent earlier completes afterwards.
        lease.renew(1, t0);
        assert!(lease.holds(1, later + LEADER_LEASE - Duration::from_millis(1)));
        // A new term replaces it whatever its time.
        lease.renew(2, t0);
        assert!(lease.holds(2, t0) && !lease.holds(1, later));
    }
}
