//! Cluster endpoints backed by gossip and raft: members, join, force-leave
//! and raft peer removal.

use super::wire::{empty_ok, ApiError, ApiResult, Ctx};
use crate::agent::{Agent, VERSION};
use crate::gossip::MemberInfo;
use crate::raft::raft_id;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One gossip member as `api.AgentMember`.
pub fn member_json(agent: &Agent, m: &MemberInfo) -> Value {
    let id = &m.id;
    let mut tags = BTreeMap::new();
    tags.insert("build", format!("{}:cairn", id.version));
    tags.insert("dc", id.dc.clone());
    tags.insert("id", id.node_id.clone());
    tags.insert("segment", String::new());
    tags.insert("vsn", "2".into());
    tags.insert("vsn_min", "2".into());
    tags.insert("vsn_max", "3".into());
    tags.insert("acls", "0".into());
    tags.insert("ft_fs", "1".into());
    tags.insert("ft_si", "1".into());
    if id.server {
        tags.insert("role", "consul".into());
        tags.insert("port", id.rpc_port.to_string());
        tags.insert("raft_vsn", "3".into());
        tags.insert("wan_join_port", agent.config.ports.serf_wan.to_string());
        if id.bootstrap_expect > 0 {
            tags.insert("expect", id.bootstrap_expect.to_string());
        }
    } else {
        tags.insert("role", "node".into());
    }
    json!({
        "Name": id.name,
        "Addr": id.addr.ip().to_string(),
        "Port": id.addr.port(),
        "Tags": tags,
        "Status": m.status as u8,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// This agent's own member entry.
pub fn self_member(agent: &Agent) -> Value {
    let table = agent.gossip.members();
    match table.get(&agent.node_name) {
        Some(m) => member_json(agent, m),
        None => {
            json!({"Name": agent.node_name, "Status": 1, "Tags": {"build": format!("{VERSION}:cairn")}})
        }
    }
}

/// `GET /v1/agent/members`: the LAN member list as gossip sees it.
pub async fn members(ctx: Ctx) -> ApiResult {
    if ctx.query.has("wan") {
        // One datacenter: the WAN pool is the servers.
        let table = ctx.agent.gossip.members();
        let list: Vec<Value> = table
            .values()
            .filter(|m| m.id.server)
            .map(|m| member_json(&ctx.agent, m))
            .collect();
        return Ok(ctx.json(&list));
    }
    let table = ctx.agent.gossip.members();
    let list: Vec<Value> = table.values().map(|m| member_json(&ctx.agent, m)).collect();
    Ok(ctx.json(&list))
}

/// Counts for `Stats.serf_lan`.
pub fn serf_counts(agent: &Agent) -> (usize, usize, usize) {
    use crate::gossip::MemberStatus::*;
    let table = agent.gossip.members();
    let alive = table
        .values()
        .filter(|m| matches!(m.status, Alive | Leaving))
        .count();
    let failed = table.values().filter(|m| m.status == Failed).count();
    let left = table.values().filter(|m| m.status == Left).count();
    (alive, failed, left)
}

/// `PUT /v1/agent/join/<address>`.
pub async fn join(ctx: Ctx) -> ApiResult {
    let target = ctx.rest.trim().to_string();
    if target.is_empty() {
        return Err(ApiError::bad("Missing address to join"));
    }
    let port = ctx.agent.config.ports.serf_lan.max(0) as u16;
    let n = crate::cluster::join_once(&ctx.agent.gossip, std::slice::from_ref(&target), port).await;
    if n == 0 {
        return Err(ApiError::Internal(format!(
            "1 error occurred:\n\t* Failed to join {target}: no response\n\n"
        )));
    }
    Ok(empty_ok())
}

/// `PUT /v1/agent/force-leave/<node>[?prune]`.
pub async fn force_leave(ctx: Ctx) -> ApiResult {
    let node = ctx.rest.trim().to_string();
    if node.is_empty() {
        return Err(ApiError::bad("Missing node name"));
    }
    let prune = ctx.query.has("prune");
    let known = ctx
        .agent
        .gossip
        .force_leave(&node, prune)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !known {
        return Err(ApiError::Internal(format!(
            "agent: No node found with name '{node}'"
        )));
    }
    Ok(empty_ok())
}

/// `DELETE /v1/operator/raft/peer?id=<uuid>|address=<ip:port>`.
pub async fn raft_peer_delete(ctx: Ctx) -> ApiResult {
    let id = ctx.query.get("id").filter(|s| !s.is_empty());
    let address = ctx.query.get("address").filter(|s| !s.is_empty());
    let members = ctx.agent.consensus.members();
    let target = match (id, address) {
        (Some(id), None) => {
            let rid = raft_id(id);
            members.iter().find(|(m, _, _)| *m == rid).map(|(m, _, _)| *m).ok_or_else(|| {
                ApiError::Internal(format!("id \"{id}\" was not found in the Raft configuration"))
            })?
        }
        (None, Some(addr)) => members.iter().find(|(_, a, _)| a == addr).map(|(m, _, _)| *m).ok_or_else(|| {
            ApiError::Internal(format!("address \"{addr}\" was not found in the Raft configuration"))
        })?,
        _ => return Err(ApiError::bad("Must specify either ?id with the server's ID or ?address with IP:port of peer to remove")),
    };
    let raft = &ctx.agent.consensus.raft;
    if !ctx.agent.consensus.is_leader() {
        return forward_to_leader(&ctx).await;
    }
    let voter = members.iter().any(|(id, _, v)| *id == target && *v);
    let change = if voter {
        // retain=false drops the removed voter from the node set as well.
        openraft::ChangeMembers::RemoveVoters(BTreeSet::from([target]))
    } else {
        openraft::ChangeMembers::RemoveNodes(BTreeSet::from([target]))
    };
    raft.change_membership(change, false)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(empty_ok())
}

/// Membership changes happen on the leader: relay the request to the
/// leader's HTTP API (found through gossip) and pass its answer back.
async fn forward_to_leader(ctx: &Ctx) -> ApiResult {
    let no_leader = || ApiError::Internal("No cluster leader".into());
    let (leader_id, _) = ctx.agent.consensus.leader().ok_or_else(no_leader)?;
    let table = ctx.agent.gossip.members();
    let leader = table
        .values()
        .find(|m| raft_id(&m.id.node_id) == leader_id)
        .ok_or_else(no_leader)?;
    let url = format!(
        "http://{}:{}/v1/operator/raft/peer?{}",
        leader.id.addr.ip(),
        leader.id.http_port,
        ctx.query.encode()
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = client
        .delete(url)
        .send()
        .await
        .map_err(|e| ApiError::Internal(format!("rpc error making call: {e}")))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(empty_ok())
    } else {
        Err(ApiError::Status(status, body))
    }
}
