//! Cluster endpoints backed by gossip and raft: members, join, force-leave
//! and raft peer removal.
//!
//! ACLs as in Consul: members are filtered by `node:read`, `join` needs
//! `agent:write` on this agent, `force-leave` and raft peer removal
//! `operator:write`.

use super::wire::{empty_ok, require_global, set_filtered_by_acls, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Global, Resource};
use crate::agent::VERSION;
use crate::config::Config;
use crate::consensus::PeerRef;
use crate::gossip::Gossip;
use crate::gossip::MemberInfo;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One gossip member as `api.AgentMember`.
pub fn member_json(config: &Config, m: &MemberInfo) -> Value {
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
        tags.insert("wan_join_port", config.ports.serf_wan.to_string());
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
pub fn self_member(ctx: &Ctx) -> Value {
    let table = ctx.gossip.members();
    let name = ctx.agent.node_name();
    match table.get(name) {
        Some(m) => member_json(&ctx.config, m),
        None => {
            json!({"Name": name, "Status": 1, "Tags": {"build": format!("{VERSION}:cairn")}})
        }
    }
}

/// `GET /v1/agent/members`: the LAN member list as gossip sees it.
pub async fn members(ctx: Ctx) -> ApiResult {
    let expr = ctx.filter(crate::filter::Subject::Member)?;
    let authz = ctx.authorizer().await?;
    // `?wan`: the WAN pool, which only servers are in (a client agent
    // has none and lists nobody, as Consul's).
    let wan = ctx.query.has("wan");
    let members: Vec<MemberInfo> = if wan {
        ctx.federation.wan_members()
    } else {
        ctx.gossip.members().values().cloned().collect()
    };
    let mut filtered = false;
    let mut list: Vec<Value> = members
        .iter()
        .filter(|m| {
            // Consul's `filterMembers`: `node:read` on the member's name.
            let readable = authz.allows(Resource::Node, &m.id.name, Access::Read);
            filtered |= !readable;
            readable
        })
        .map(|m| member_json(&ctx.config, m))
        .collect();
    expr.retain(&mut list);
    let mut resp = ctx.json(&list);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// Counts for `Stats.serf_lan` (alive, failed, left) and the alive
/// servers of this datacenter.
pub fn serf_counts(gossip: &Gossip, datacenter: &str) -> (usize, usize, usize, usize) {
    use crate::gossip::MemberStatus::*;
    let table = gossip.members();
    let alive = table
        .values()
        .filter(|m| matches!(m.status, Alive | Leaving))
        .count();
    let failed = table.values().filter(|m| m.status == Failed).count();
    let left = table.values().filter(|m| m.status == Left).count();
    let servers = table
        .values()
        .filter(|m| m.status == Alive && m.id.server && m.id.dc == datacenter)
        .count();
    (alive, failed, left, servers)
}

/// `PUT /v1/agent/join/<address>`.
pub async fn join(ctx: Ctx) -> ApiResult {
    let target = ctx.rest.trim().to_string();
    if target.is_empty() {
        return Err(ApiError::bad("Missing address to join"));
    }
    super::agent::require_agent(&ctx, Access::Write).await?;
    let (pool, port) = if ctx.query.has("wan") {
        let Some(wan) = ctx.federation.wan() else {
            return Err(ApiError::Internal(
                "Must be a server to join WAN cluster".into(),
            ));
        };
        (wan, ctx.config.ports.serf_wan.max(0) as u16)
    } else {
        (&ctx.gossip, ctx.config.ports.serf_lan.max(0) as u16)
    };
    let n = crate::cluster::join_once(pool, std::slice::from_ref(&target), port).await;
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
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Operator, Access::Write)?;
    let prune = ctx.query.has("prune");
    let known = ctx
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

/// `DELETE /v1/operator/raft/peer?id=<uuid>|address=<ip:port>`: done by
/// the leader, wherever the request arrives.
pub async fn raft_peer_delete(ctx: Ctx) -> ApiResult {
    let id = ctx.query.get("id").filter(|s| !s.is_empty());
    let address = ctx.query.get("address").filter(|s| !s.is_empty());
    let peer = match (id, address) {
        (Some(id), None) => PeerRef::Id(id.to_string()),
        (None, Some(addr)) => PeerRef::Address(addr.to_string()),
        _ => return Err(ApiError::bad("Must specify either ?id with the server's ID or ?address with IP:port of peer to remove")),
    };
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Operator, Access::Write)?;
    ctx.consensus.remove_peer(peer).await?;
    Ok(empty_ok())
}
