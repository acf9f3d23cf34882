//! The consensus backend of a client agent: no raft state, every request
//! forwarded to a server. Which server is [`ServerList`]'s choice; a server
//! that cannot be dialled is skipped for the next one (the request never
//! left, so even a write is safe to send elsewhere), while a failure after
//! the request was sent is reported, because the write may have happened.
//!
//! Reads are answered from the agent's view of the catalog (fed by
//! `crate::feed`): a default or `?consistent` read first asks a server for
//! the leader's index and then waits until the view has applied it, so it
//! is as fresh as a read served by the leader. A write waits (briefly) for
//! the view to show it too, so this agent's own DNS and stale reads see
//! what it just wrote.

use super::api::{mismatched, AclCall, AclReply, Reply, ServerRequest, ServerResponse};
use super::servers::ServerList;
use super::{Backend, ConsensusError, Contact, PeerRef, RaftConfiguration, RaftStats};
use crate::acl::tokens::AgentTokens;
use crate::catalog::command::{Command, Response};
use crate::catalog::Catalog;
use crate::rpc::{Dialer, MuxClient, Protocol};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Upper bound on one forwarded call: the server may hold it for a leader
/// (`LEADER_HOLD`) and then for the commit.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a forwarded write waits for the local view to show it.
const WRITE_VISIBLE_WAIT: Duration = Duration::from_secs(2);

/// How current a client agent's view is, as its subscription reports it.
pub struct ViewStatus {
    inner: parking_lot::Mutex<ViewContact>,
    leader: watch::Sender<Option<String>>,
}

#[derive(Debug, Clone, Copy)]
struct ViewContact {
    /// When the view was last known to be as current as its server.
    current_at: Option<Instant>,
    /// How far the server itself was behind the leader then.
    server_lag_ms: u64,
    known_leader: bool,
}

impl Default for ViewStatus {
    fn default() -> Self {
        ViewStatus {
            inner: parking_lot::Mutex::new(ViewContact {
                current_at: None,
                server_lag_ms: 0,
                known_leader: false,
            }),
            leader: watch::channel(None).0,
        }
    }
}

impl ViewStatus {
    /// The server reported its state (a heartbeat); `caught_up` when the
    /// view holds everything the server had applied.
    pub fn heard(&self, leader: Option<String>, server_lag_ms: u64, caught_up: bool) {
        {
            let mut c = self.inner.lock();
            if caught_up {
                c.current_at = Some(Instant::now());
                c.server_lag_ms = server_lag_ms;
            }
            c.known_leader = leader.is_some();
        }
        self.leader.send_if_modified(|cur| {
            if *cur != leader {
                *cur = leader;
                true
            } else {
                false
            }
        });
    }

    /// Entries arrived: the view is as current as its server right now.
    pub fn current(&self) {
        self.inner.lock().current_at = Some(Instant::now());
    }

    pub fn contact(&self) -> Contact {
        let c = *self.inner.lock();
        let last_contact_ms = match c.current_at {
            Some(t) => t.elapsed().as_millis() as u64 + c.server_lag_ms,
            // Never synced: as stale as it gets (Consul reports the time
            // since the last contact; there was none).
            None => u64::from(u32::MAX),
        };
        Contact {
            known_leader: c.known_leader,
            last_contact_ms,
        }
    }

    pub fn leader_watch(&self) -> watch::Receiver<Option<String>> {
        self.leader.subscribe()
    }
}

pub struct Forwarder {
    /// The agent's tokens: writes made outside any request carry its
    /// `agent` token (else `default`), as it is at the time of the write.
    tokens: Arc<AgentTokens>,
    servers: Arc<ServerList>,
    rpc: MuxClient,
    view: Arc<Catalog>,
    status: Arc<ViewStatus>,
}

impl Forwarder {
    /// `dialer`: how RPC connections to servers are made.
    pub fn new(
        servers: Arc<ServerList>,
        dialer: Dialer,
        view: Arc<Catalog>,
        status: Arc<ViewStatus>,
        tokens: Arc<AgentTokens>,
    ) -> Forwarder {
        Forwarder {
            tokens,
            servers,
            rpc: MuxClient::new(dialer, Protocol::Consul),
            view,
            status,
        }
    }

    /// Sends `req` to the first server that can be reached.
    async fn call(&self, req: &ServerRequest) -> Result<Reply, ConsensusError> {
        self.call_within(req, CALL_TIMEOUT).await
    }

    /// [`Forwarder::call`] with a timeout of its own.
    async fn call_within(
        &self,
        req: &ServerRequest,
        timeout: Duration,
    ) -> Result<Reply, ConsensusError> {
        let servers = self.servers.ordered();
        if servers.is_empty() {
            return Err(ConsensusError::NoServers);
        }
        let mut last = None;
        for addr in servers {
            match self
                .rpc
                .call::<_, ServerResponse>(&addr, req, timeout)
                .await
            {
                Ok(resp) => return resp,
                Err(e) => {
                    tracing::debug!(server = %addr, "forwarding failed: {e}");
                    self.servers.failed(&addr);
                    if !e.not_sent() {
                        return Err(ConsensusError::Rpc(e.to_string()));
                    }
                    last = Some(e);
                }
            }
        }
        Err(ConsensusError::Rpc(
            last.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }

    /// Waits until the view has applied `index`.
    async fn view_reaches(&self, index: u64, limit: Duration) -> bool {
        let mut rx = self.view.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|c| c.applied >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[async_trait::async_trait]
impl Backend for Forwarder {
    async fn write(&self, cmd: Command) -> Result<(u64, Response), ConsensusError> {
        let token = crate::acl::request_token().unwrap_or_else(|| self.tokens.agent_token());
        match self
            .call(&ServerRequest::Write {
                cmd,
                hops: 0,
                token,
            })
            .await?
        {
            Reply::Written { index, response } => {
                self.view_reaches(index, WRITE_VISIBLE_WAIT).await;
                Ok((index, response))
            }
            _ => Err(mismatched()),
        }
    }

    async fn update_coordinates(
        &self,
        updates: Vec<crate::coordinate::CoordinateEntry>,
    ) -> Result<(), ConsensusError> {
        let token = crate::acl::request_token().unwrap_or_else(|| self.tokens.agent_token());
        match self
            .call(&ServerRequest::UpdateCoordinates { updates, token })
            .await?
        {
            Reply::Done => Ok(()),
            _ => Err(mismatched()),
        }
    }

    async fn read_index(&self, linearizable: bool) -> Result<u64, ConsensusError> {
        let req = ServerRequest::ReadIndex {
            linearizable,
            hops: 0,
        };
        match self.call(&req).await? {
            Reply::Index(index) => {
                if self.view_reaches(index, CALL_TIMEOUT).await {
                    Ok(index)
                } else {
                    Err(ConsensusError::StaleReplica(index))
                }
            }
            _ => Err(mismatched()),
        }
    }

    async fn leader(&self) -> Result<Option<String>, ConsensusError> {
        match self.call(&ServerRequest::Leader).await? {
            Reply::Leader(l) => Ok(l),
            _ => Err(mismatched()),
        }
    }

    async fn peers(&self) -> Result<Vec<String>, ConsensusError> {
        match self.call(&ServerRequest::Peers).await? {
            Reply::Peers(p) => Ok(p),
            _ => Err(mismatched()),
        }
    }

    async fn configuration(&self, stale: bool) -> Result<RaftConfiguration, ConsensusError> {
        match self
            .call(&ServerRequest::Configuration { stale, hops: 0 })
            .await?
        {
            Reply::Configuration(c) => Ok(c),
            _ => Err(mismatched()),
        }
    }

    async fn remove_peer(&self, peer: PeerRef) -> Result<(), ConsensusError> {
        match self
            .call(&ServerRequest::RemovePeer { peer, hops: 0 })
            .await?
        {
            Reply::Done => Ok(()),
            _ => Err(mismatched()),
        }
    }

    async fn autopilot_health(&self) -> Result<super::autopilot::HealthReport, ConsensusError> {
        match self
            .call(&ServerRequest::AutopilotHealth { hops: 0 })
            .await?
        {
            Reply::Health(h) => Ok(h),
            _ => Err(mismatched()),
        }
    }

    async fn transfer_leader(&self, id: Option<String>) -> Result<(), ConsensusError> {
        match self
            .call(&ServerRequest::TransferLeader { id, hops: 0 })
            .await?
        {
            Reply::Done => Ok(()),
            _ => Err(mismatched()),
        }
    }

    fn contact(&self) -> Contact {
        self.status.contact()
    }

    fn is_leader(&self) -> bool {
        false
    }

    fn leader_watch(&self) -> watch::Receiver<Option<String>> {
        self.status.leader_watch()
    }

    async fn raft_stats(&self) -> Option<RaftStats> {
        None
    }

    async fn resolve_token(
        &self,
        secret: &str,
    ) -> Result<Option<crate::acl::Identity>, ConsensusError> {
        let req = ServerRequest::ResolveToken {
            secret: secret.to_string(),
        };
        match self.call(&req).await? {
            Reply::Identity(i) => Ok(i),
            _ => Err(mismatched()),
        }
    }

    async fn forward_acl(
        &self,
        call: AclCall,
        timeout: Duration,
    ) -> Result<AclReply, ConsensusError> {
        match self.call_within(&ServerRequest::Acl(call), timeout).await? {
            Reply::Acl(r) => Ok(r),
            _ => Err(mismatched()),
        }
    }

    async fn forward_datacenter(
        &self,
        call: AclCall,
        hops: u8,
        timeout: Duration,
    ) -> Result<AclReply, ConsensusError> {
        match self
            .call_within(&ServerRequest::Datacenter { call, hops }, timeout)
            .await?
        {
            Reply::Acl(r) => Ok(r),
            _ => Err(mismatched()),
        }
    }
}
