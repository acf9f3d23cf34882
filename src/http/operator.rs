//! `/v1/operator/raft/*`: the raft configuration as Consul reports it,
//! and leadership transfer.

use super::wire::{require_global, set_meta, ApiError, ApiResult, Consistency, Ctx};
use crate::acl::{Access, Global};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServerJson {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    voter: bool,
    protocol_version: &'static str,
    last_index: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftConfigurationJson {
    servers: Vec<RaftServerJson>,
    index: u64,
}

/// `GET /v1/operator/raft/configuration`: served by the leader (each
/// server's `LastIndex` is what the leader's replication has confirmed),
/// or with `?stale` by any server.
/// Needs `operator:read`, as in Consul.
pub async fn raft_configuration(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Operator, Access::Read)?;
    let stale = opts.consistency == Consistency::Stale;
    let conf = ctx.consensus.configuration(stale).await?;
    let servers = conf
        .servers
        .into_iter()
        .map(|s| RaftServerJson {
            id: s.id,
            node: s.node,
            address: s.address,
            leader: s.leader,
            voter: s.voter,
            protocol_version: "3",
            last_index: s.last_index,
        })
        .collect();
    let mut resp = ctx.json(&RaftConfigurationJson {
        servers,
        index: conf.index,
    });
    set_meta(&mut resp, &ctx, conf.index, opts.consistency);
    Ok(resp)
}

/// `PUT /v1/operator/raft/transfer-leader[?id=<node id>]`: done by the
/// leader, wherever the request arrives. `operator:write`, as in Consul;
/// answers `api.TransferLeaderResponse`.
pub async fn transfer_leader(ctx: Ctx) -> ApiResult {
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Operator, Access::Write)?;
    let id = ctx
        .query
        .get("id")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    ctx.consensus
        .transfer_leader(id)
        .await
        // Consul's HTTP handler reports the gRPC status of its RPC.
        .map_err(|e| ApiError::Internal(format!("rpc error: code = Unknown desc = {e}")))?;
    Ok(ctx.json(&serde_json::json!({ "Success": true })))
}
