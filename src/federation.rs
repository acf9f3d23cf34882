//! Multiple datacenters. Each datacenter runs its own servers and raft;
//! the servers of every datacenter also gossip in one WAN pool (serf WAN,
//! port 8302), as `<node>.<dc>`, and that pool is how a server finds the
//! servers of another datacenter and how far away they are.
//!
//! **Forwarding.** A request for another datacenter (`?dc=`, or a catalog
//! write whose body names one) is handed, as the HTTP request it is, to a
//! server there, which answers it through its own router as if it had been
//! made to it, and the answer (status, headers, body) is returned as is:
//! blocking queries wait on the remote server, and consistency modes,
//! `X-Consul-Index` and the ACL checks (with the request's token) are the
//! remote datacenter's. A client agent hands such a request to a server of
//! its own datacenter, which forwards it over the WAN. The call counts its
//! hops, so a request never circles between datacenters that disagree
//! about a name.
//!
//! An unknown datacenter, or one whose servers are all failed, is Consul's
//! 500 `No path to datacenter`; a server that does not answer is given up
//! on after [`DIAL_TIMEOUT`] and the next one is tried.
//!
//! A WAN member claiming this datacenter that is not one of this
//! datacenter's servers (another cluster with the same name) is refused:
//! it is never forwarded to, and it is logged once.

use crate::consensus::api::{AclCall, AclReply, ServerRequest, ServerResponse};
use crate::consensus::{Consensus, ConsensusError};
use crate::coordinate::Coordinate;
use crate::gossip::{Gossip, MemberInfo, MemberStatus};
use crate::rpc::{Dialer, MuxClient, Protocol};
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Forwards a request may make: client agent -> local server -> remote
/// server. A remote server never forwards again.
pub const MAX_HOPS: u8 = 2;

/// How long a new connection to a remote server may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// Consul's error for a datacenter nothing leads to.
pub const NO_PATH: &str = "No path to datacenter";

/// Why a request for another datacenter got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No known datacenter by that name, or no alive server in it.
    #[error("No path to datacenter")]
    NoPath,
    /// The remote servers could not be reached or failed the call.
    #[error("{0}")]
    Failed(String),
}

/// This agent's view of the other datacenters.
pub struct Federation {
    datacenter: String,
    /// The LAN pool, which tells this datacenter's servers.
    lan: Gossip,
    /// Servers: the WAN pool. Client agents have none.
    wan: Option<Gossip>,
    /// Client agents reach a local server through their consensus handle.
    consensus: Consensus,
    dialer: Dialer,
    domain: String,
    /// One multiplexed client per remote datacenter (each checks its own
    /// `server.<dc>.<domain>` name under `verify_server_hostname`).
    rpc: parking_lot::Mutex<std::collections::HashMap<String, std::sync::Arc<MuxClient>>>,
    /// WAN members already logged as refused.
    refused: parking_lot::Mutex<HashSet<String>>,
}

impl Federation {
    pub fn new(
        datacenter: String,
        domain: String,
        lan: Gossip,
        wan: Option<Gossip>,
        consensus: Consensus,
        dialer: Dialer,
    ) -> Federation {
        Federation {
            datacenter,
            lan,
            wan,
            consensus,
            dialer,
            domain,
            rpc: Default::default(),
            refused: Default::default(),
        }
    }

    fn client_for(&self, dc: &str) -> std::sync::Arc<MuxClient> {
        self.rpc
            .lock()
            .entry(dc.to_string())
            .or_insert_with(|| {
                std::sync::Arc::new(MuxClient::new(
                    self.dialer.for_datacenter(dc, &self.domain),
                    Protocol::Consul,
                ))
            })
            .clone()
    }

    /// The WAN pool (servers only).
    pub fn wan(&self) -> Option<&Gossip> {
        self.wan.as_ref()
    }

    /// The datacenter this agent is in.
    pub fn local(&self) -> &str {
        &self.datacenter
    }

    /// Whether a WAN member may be used: another datacenter's server, or
    /// one of this datacenter's servers that the LAN pool knows.
    fn accepted(&self, m: &MemberInfo, lan_servers: &HashSet<String>) -> bool {
        if !m.id.server {
            return false;
        }
        if m.id.dc != self.datacenter {
            return true;
        }
        let local_name =
            m.id.name
                .strip_suffix(&format!(".{}", self.datacenter))
                .unwrap_or(&m.id.name);
        if lan_servers.contains(local_name) {
            return true;
        }
        if self.refused.lock().insert(m.id.name.clone()) {
            tracing::warn!(
                member = %m.id.name, addr = %m.id.addr,
                "wan: refusing a server that claims this datacenter ({}) but is not one of its servers",
                self.datacenter
            );
        }
        false
    }

    fn lan_servers(&self) -> HashSet<String> {
        self.lan
            .members()
            .values()
            .filter(|m| m.id.server && m.id.dc == self.datacenter)
            .map(|m| m.id.name.clone())
            .collect()
    }

    /// The WAN members this agent accepts, alive or not.
    pub fn wan_members(&self) -> Vec<MemberInfo> {
        let Some(wan) = &self.wan else {
            return Vec::new();
        };
        let lan = self.lan_servers();
        wan.members()
            .values()
            .filter(|m| self.accepted(m, &lan))
            .cloned()
            .collect()
    }

    /// Every datacenter known, nearest first by the estimated round trip
    /// to its servers (the median over them, from this server's WAN
    /// coordinate), as Consul's `GetDatacentersByDistance`: this
    /// datacenter is at distance zero; datacenters without coordinates
    /// come after those with, and ties go by name.
    pub fn datacenters(&self) -> Vec<String> {
        let Some(wan) = &self.wan else {
            return vec![self.datacenter.clone()];
        };
        let me = wan.coordinate();
        let peers = wan.peer_coordinates();
        let mut by_dc: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        by_dc.insert(self.datacenter.clone(), vec![Duration::ZERO]);
        for m in self.wan_members() {
            let distances = by_dc.entry(m.id.dc.clone()).or_default();
            if m.id.dc == self.datacenter || m.status != MemberStatus::Alive {
                continue;
            }
            if let Some(c) = peers.get(&m.id.name).filter(|c| me.is_compatible_with(c)) {
                distances.push(me.distance_to(c));
            }
        }
        let mut ranked: Vec<(Option<Duration>, String)> = by_dc
            .into_iter()
            .map(|(dc, mut d)| {
                d.sort();
                (d.get(d.len().saturating_sub(1) / 2).copied(), dc)
            })
            .collect();
        ranked.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.1.cmp(&b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        ranked.into_iter().map(|(_, dc)| dc).collect()
    }

    /// [`Federation::datacenters`] from any agent: a client agent asks a
    /// server of its datacenter (just this one when none answers).
    pub async fn datacenters_from_servers(&self) -> Vec<String> {
        if self.wan.is_some() {
            return self.datacenters();
        }
        let call = AclCall {
            method: "GET".into(),
            path: "/v1/catalog/datacenters".into(),
            query: None,
            token: None,
            body: Vec::new(),
        };
        match self
            .consensus
            .forward_acl(call, Duration::from_secs(5))
            .await
        {
            Ok(r) if r.status == 200 => {
                serde_json::from_slice(&r.body).unwrap_or_else(|_| vec![self.datacenter.clone()])
            }
            _ => vec![self.datacenter.clone()],
        }
    }

    /// The WAN coordinates of each datacenter's alive servers (names
    /// without `.<dc>`), for `/v1/coordinate/datacenters`.
    pub fn wan_coordinates(&self) -> BTreeMap<String, Vec<(String, Coordinate)>> {
        let mut out: BTreeMap<String, Vec<(String, Coordinate)>> = BTreeMap::new();
        let Some(wan) = &self.wan else {
            return out;
        };
        let peers = wan.peer_coordinates();
        for m in self.wan_members() {
            if m.status != MemberStatus::Alive {
                continue;
            }
            let coord = if m.id.name == wan.identity.name {
                Some(wan.coordinate())
            } else {
                peers.get(&m.id.name).cloned()
            };
            let name =
                m.id.name
                    .strip_suffix(&format!(".{}", m.id.dc))
                    .unwrap_or(&m.id.name)
                    .to_string();
            let entry = out.entry(m.id.dc.clone()).or_default();
            if let Some(c) = coord {
                entry.push((name, c));
            }
        }
        for list in out.values_mut() {
            list.sort_by(|a, b| a.0.cmp(&b.0));
        }
        out
    }
}

/// Consul's flood join: every alive server of this datacenter in the LAN
/// pool is joined into the WAN pool too (at its LAN address and this
/// agent's WAN port), so a datacenter's servers are all in the WAN pool
/// once any one of them is, whichever of them `-retry-join-wan` reached.
pub async fn flood_join(lan: Gossip, wan: Gossip, datacenter: String, wan_port: u16) {
    let mut members = lan.subscribe();
    loop {
        let missing: Vec<std::net::SocketAddr> = {
            let wan_table = wan.members();
            lan.members()
                .values()
                .filter(|m| {
                    m.id.server
                        && m.id.dc == datacenter
                        && m.status == MemberStatus::Alive
                        && m.id.name != lan.identity.name
                })
                .filter(|m| {
                    wan_table
                        .get(&format!("{}.{}", m.id.name, datacenter))
                        .is_none_or(|w| w.status != MemberStatus::Alive)
                })
                .map(|m| std::net::SocketAddr::new(m.id.addr.ip(), wan_port))
                .collect()
        };
        if !missing.is_empty() {
            if let Err(e) = wan.join(&missing, Duration::from_secs(2)).await {
                tracing::debug!("wan: flood join: {e}");
            }
        }
        tokio::select! {
            changed = members.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

impl Federation {
    /// The RPC addresses of `dc`'s alive servers, in random order.
    fn servers_in(&self, dc: &str) -> Vec<String> {
        let mut addrs: Vec<String> = self
            .wan_members()
            .into_iter()
            .filter(|m| m.id.dc == dc && m.status == MemberStatus::Alive)
            .map(|m| crate::cluster::rpc_addr(&m.id))
            .collect();
        addrs.shuffle(&mut rand::rng());
        addrs
    }

    /// Has a server of `dc` answer `call`, waiting at most `timeout` for
    /// its answer; `hops` is how many forwards the call has made so far.
    pub async fn forward(
        &self,
        dc: &str,
        call: AclCall,
        hops: u8,
        timeout: Duration,
    ) -> Result<AclReply, ForwardError> {
        if hops >= MAX_HOPS {
            return Err(ForwardError::NoPath);
        }
        let Some(_) = &self.wan else {
            // A client agent: a server of this datacenter forwards it.
            return self
                .consensus
                .forward_datacenter(call, hops + 1, timeout)
                .await
                .map_err(|e| match e {
                    ConsensusError::Rpc(m) if m == NO_PATH => ForwardError::NoPath,
                    e => ForwardError::Failed(e.to_string()),
                });
        };
        let servers = self.servers_in(dc);
        if servers.is_empty() {
            return Err(ForwardError::NoPath);
        }
        crate::metrics::wan_forward(dc);
        let req = ServerRequest::Datacenter {
            call,
            hops: hops + 1,
        };
        let rpc = self.client_for(dc);
        let mut last = String::new();
        for addr in servers {
            match rpc
                .call_dialing_within::<_, ServerResponse>(&addr, &req, DIAL_TIMEOUT, timeout)
                .await
            {
                Ok(Ok(crate::consensus::api::Reply::Acl(r))) => return Ok(r),
                Ok(Ok(_)) => return Err(ForwardError::Failed("mismatched rpc response".into())),
                Ok(Err(e)) => return Err(ForwardError::Failed(e.to_string())),
                Err(e) => {
                    tracing::debug!(datacenter = dc, server = %addr, "wan forward failed: {e}");
                    let not_sent = e.not_sent();
                    last = e.to_string();
                    if !not_sent {
                        break;
                    }
                }
            }
        }
        Err(ForwardError::Failed(format!(
            "rpc error: forwarding to datacenter {dc}: {last}"
        )))
    }
}

/// A query definition for another datacenter to run (Consul's
/// `PreparedQuery.ExecuteRemote`), as it travels in a forwarded call.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RemoteExecution {
    pub query: crate::catalog::prepared_query::PreparedQuery,
    pub limit: usize,
}

/// Consul's `queryFailover`: with no instance here, the query runs in the
/// `NearestN` nearest other datacenters, then in `Datacenters` in their
/// order (each tried once, this one and unknown ones skipped). Returns the
/// first answer with instances (`/v1/query/:id/execute`'s JSON, its
/// `Datacenter` the one that served it, `Failovers` how many were tried);
/// `None`: no failover configured, or no datacenter had an instance.
pub async fn failover(
    federation: &Federation,
    query: &crate::catalog::prepared_query::PreparedQuery,
    limit: usize,
    token: Option<String>,
    hops: u8,
) -> Option<serde_json::Value> {
    let policy = &query.service.failover;
    if policy.nearest_n <= 0 && policy.datacenters.is_empty() {
        return None;
    }
    let local = federation.local();
    let known = federation.datacenters_from_servers().await;
    let mut order: Vec<String> = known
        .iter()
        .filter(|dc| dc.as_str() != local)
        .take(policy.nearest_n.max(0) as usize)
        .cloned()
        .collect();
    for dc in &policy.datacenters {
        if dc == local || order.contains(dc) {
            continue;
        }
        if !known.contains(dc) {
            tracing::debug!(datacenter = %dc, query = %query.id, "prepared query failover: skipping an unknown datacenter");
            continue;
        }
        order.push(dc.clone());
    }
    let body = serde_json::to_vec(&RemoteExecution {
        query: query.clone(),
        limit,
    })
    .ok()?;
    let mut tried = 0u32;
    for dc in order {
        tried += 1;
        let call = AclCall {
            method: "PUT".into(),
            path: format!("/v1/query/{}/execute", query.id),
            // Named, so a client agent's server passes it on.
            query: Some(format!("dc={dc}")),
            token: token.clone(),
            body: body.clone(),
        };
        let reply = match federation
            .forward(&dc, call, hops, Duration::from_secs(10))
            .await
        {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                tracing::warn!(datacenter = %dc, status = r.status, "prepared query failover: {}", String::from_utf8_lossy(&r.body));
                continue;
            }
            Err(e) => {
                tracing::warn!(datacenter = %dc, "prepared query failover: {e}");
                continue;
            }
        };
        let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
            continue;
        };
        if answer["Nodes"].as_array().is_none_or(|n| n.is_empty()) {
            continue;
        }
        answer["Failovers"] = serde_json::json!(tried);
        return Some(answer);
    }
    None
}
