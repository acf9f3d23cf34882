//! Consensus through openraft: type configuration, node identity, and the
//! write path every replicated change takes (`Consensus::propose`).

pub mod network;
pub mod state_machine;

use crate::catalog::command::{Command, KvOp, Response, SessionOp, TxnError, TxnOp};
use crate::catalog::Catalog;
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Response,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;

/// Raft node ID derived from the agent's UUID node ID (its first 8 bytes).
pub fn raft_id(node_uuid: &str) -> NodeId {
    match uuid::Uuid::parse_str(node_uuid) {
        Ok(u) => {
            let b = u.as_bytes();
            u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        }
        Err(_) => {
            // Not a UUID: hash it (FNV-1a) so any stable string still works.
            let mut h: u64 = 0xcbf29ce484222325;
            for byte in node_uuid.bytes() {
                h ^= byte as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
            h
        }
    }
}

/// Timing tuned for a LAN: elections in well under a second, not Consul's
/// `raft_multiplier=5` defaults.
pub fn raft_config(config: &crate::config::Config) -> openraft::Config {
    openraft::Config {
        cluster_name: "cairn".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        install_snapshot_timeout: 5000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.raft_snapshot_threshold),
        max_in_snapshot_log_to_keep: config.raft_trailing_logs,
        max_payload_entries: 512,
        ..Default::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Consul's text for a write with no leader to take it.
    #[error("No cluster leader")]
    NoLeader,
    #[error("raft: {0}")]
    Raft(String),
}

/// How long a write or read waits for a leader before failing with
/// `No cluster leader` (Consul's rpc_hold_timeout is 7 s).
pub const LEADER_HOLD: Duration = Duration::from_secs(5);
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(7);

/// The write path: propose a command (forwarding it to the leader when this
/// agent is not the leader), wait until it is committed and applied, return
/// its index and the state machine's response.
pub struct Consensus {
    pub raft: Raft,
    pub id: NodeId,
    pub pool: crate::rpc::RpcPool,
    /// When the leader last reached this server (AppendEntries received).
    last_contact: std::sync::Mutex<Option<std::time::Instant>>,
    /// The local replica, for the checks the leader makes before proposing
    /// (lock-delay, session renewal).
    catalog: Arc<Catalog>,
}

impl Consensus {
    /// `local`: the address outgoing RPC connections are made from.
    pub fn new(
        raft: Raft,
        id: NodeId,
        local: Option<std::net::IpAddr>,
        catalog: Arc<Catalog>,
    ) -> Consensus {
        Consensus {
            raft,
            id,
            pool: crate::rpc::RpcPool::new(local),
            last_contact: std::sync::Mutex::new(None),
            catalog,
        }
    }

    /// What the leader decides before a command enters the log, on its own
    /// clock (as Consul's leader does): an acquire of a key in lock-delay
    /// fails without a log entry, and a session renewal only re-arms the
    /// leader's TTL timer. `Some` answers the command without proposing it.
    fn before_propose(&self, cmd: &Command) -> Option<Response> {
        let now = std::time::Instant::now();
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
                let session = match self.catalog.reader() {
                    Ok(r) => match r.session(id) {
                        Ok(s) => s,
                        Err(e) => return Some(Response::Rejected(format!("state store: {e}"))),
                    },
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
                    leases.reset_ttl(&s.id, ttl, std::time::Instant::now());
                }
            }
            (SessionOp::Destroy { id }, _) => leases.clear_ttl_of(id),
            _ => {}
        }
    }

    pub fn touch_contact(&self) {
        if let Ok(mut t) = self.last_contact.lock() {
            *t = Some(std::time::Instant::now());
        }
    }

    /// Milliseconds since this agent last heard from the leader
    /// (`X-Consul-LastContact`): 0 on the leader.
    pub fn last_contact_ms(&self) -> u64 {
        if self.is_leader() {
            return 0;
        }
        match self.last_contact.lock().ok().and_then(|t| *t) {
            Some(t) => t.elapsed().as_millis() as u64,
            None => 0,
        }
    }

    /// Propose `cmd` from this agent.
    pub async fn propose(&self, cmd: Command) -> Result<(u64, Response), WriteError> {
        self.write(cmd, 0).await
    }

    /// Propose locally if leader, else forward to the leader (at most two hops).
    pub async fn write(&self, cmd: Command, hops: u8) -> Result<(u64, Response), WriteError> {
        let leader = self.await_leader().await?;
        if leader.0 == self.id {
            if let Some(resp) = self.before_propose(&cmd) {
                let index = self
                    .raft
                    .metrics()
                    .borrow()
                    .last_applied
                    .map(|l| l.index)
                    .unwrap_or(0);
                return Ok((index, resp));
            }
            let session_op = match &cmd {
                Command::Session(op) => Some(op.clone()),
                _ => None,
            };
            let name = cmd.name();
            let started = std::time::Instant::now();
            // A leader cut off from its quorum cannot commit: give up like
            // Consul's RPC hold timeout instead of hanging the client.
            let res = match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.client_write(cmd)).await
            {
                Ok(r) => r,
                Err(_) => {
                    return Err(WriteError::Raft(
                        "timed out waiting for the write to commit".into(),
                    ))
                }
            };
            crate::metrics::raft_apply(name, started.elapsed());
            return match res {
                Ok(resp) => {
                    if let Some(op) = &session_op {
                        self.after_commit(op, &resp.data);
                    }
                    Ok((resp.log_id.index, resp.data))
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    Err(WriteError::NoLeader)
                }
                Err(e) => Err(WriteError::Raft(e.to_string())),
            };
        }
        if hops >= 2 {
            return Err(WriteError::NoLeader);
        }
        let req = crate::rpc::RpcRequest::Forward {
            cmd,
            hops: hops + 1,
        };
        match self.pool.call(&leader.1, &req, RPC_TIMEOUT).await {
            Ok(crate::rpc::RpcResponse::Forward(Ok(r))) => Ok(r),
            Ok(crate::rpc::RpcResponse::Forward(Err(text)))
                if text == WriteError::NoLeader.to_string() =>
            {
                Err(WriteError::NoLeader)
            }
            Ok(crate::rpc::RpcResponse::Forward(Err(text))) => Err(WriteError::Raft(text)),
            Ok(_) => Err(WriteError::Raft("mismatched rpc response".into())),
            Err(e) => Err(WriteError::Raft(format!("rpc error making call: {e}"))),
        }
    }

    /// The index a read must have applied locally to be as fresh as the
    /// leader; waits until this replica has applied it. `linearizable`
    /// makes the leader confirm its leadership with a quorum first.
    pub async fn read_index(&self, linearizable: bool, hops: u8) -> Result<u64, WriteError> {
        let leader = self.await_leader().await?;
        let index = if leader.0 == self.id {
            if linearizable {
                match self.raft.ensure_linearizable().await {
                    Ok(Some(l)) => l.index,
                    Ok(None) => 0,
                    Err(_) => return Err(WriteError::NoLeader),
                }
            } else {
                self.raft
                    .metrics()
                    .borrow()
                    .last_applied
                    .map(|l| l.index)
                    .unwrap_or(0)
            }
        } else {
            if hops >= 2 {
                return Err(WriteError::NoLeader);
            }
            let req = crate::rpc::RpcRequest::ReadIndex {
                linearizable,
                hops: hops + 1,
            };
            match self.pool.call(&leader.1, &req, RPC_TIMEOUT).await {
                Ok(crate::rpc::RpcResponse::ReadIndex(Ok(i))) => i,
                Ok(crate::rpc::RpcResponse::ReadIndex(Err(_))) => return Err(WriteError::NoLeader),
                Ok(_) => return Err(WriteError::Raft("mismatched rpc response".into())),
                Err(e) => return Err(WriteError::Raft(format!("rpc error making call: {e}"))),
            }
        };
        if index > 0 {
            self.raft
                .wait(Some(RPC_TIMEOUT))
                .applied_index_at_least(Some(index), "read index")
                .await
                .map_err(|e| WriteError::Raft(e.to_string()))?;
        }
        Ok(index)
    }

    pub async fn status(&self) -> crate::rpc::StatusReply {
        let initialized = self.raft.is_initialized().await.unwrap_or(false);
        let m = self.raft.metrics();
        let m = m.borrow();
        crate::rpc::StatusReply {
            initialized,
            leader: m.current_leader,
            voters: m.membership_config.membership().voter_ids().count(),
        }
    }

    /// The leader's ID and RPC address, waiting up to [`LEADER_HOLD`] for one.
    async fn await_leader(&self) -> Result<(NodeId, String), WriteError> {
        if let Some(l) = self.leader() {
            return Ok(l);
        }
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + LEADER_HOLD;
        loop {
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        return Err(WriteError::NoLeader);
                    }
                    if let Some(l) = self.leader() {
                        return Ok(l);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(WriteError::NoLeader),
            }
        }
    }

    /// Single-server bootstrap (`-dev`, `-bootstrap`, `-bootstrap-expect=1`).
    /// A no-op if the log already holds a membership.
    pub async fn bootstrap_alone(&self, rpc_addr: &str) -> Result<(), WriteError> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| WriteError::Raft(e.to_string()))?
        {
            return Ok(());
        }
        let mut members = BTreeMap::new();
        members.insert(
            self.id,
            BasicNode {
                addr: rpc_addr.to_string(),
            },
        );
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(WriteError::Raft(e.to_string())),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
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

    /// Waits until some node is leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> bool {
        let mut rx = self.raft.metrics();
        let fut = async {
            loop {
                if rx.borrow().current_leader.is_some() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.is_ok() && rx.borrow().current_leader.is_some()
    }

    /// Voters and learners with their RPC addresses.
    pub fn members(&self) -> Vec<(NodeId, String, bool)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
            .collect()
    }
}

pub type SharedConsensus = Arc<Consensus>;
