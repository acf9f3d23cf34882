//! `/v1/operator/raft/*`: the raft configuration as Consul reports it.

use super::wire::{require_global, set_meta, ApiResult, Consistency, Ctx};
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
    // Consul's body `Index` is raft's `GetConfiguration().Index()`, which
    // hashicorp/raft (since v1.1.2) leaves unset: it is always 0. The
    // configuration's index is still the `X-Consul-Index` header.
    let mut resp = ctx.json(&RaftConfigurationJson { servers, index: 0 });
    set_meta(&mut resp, &ctx, conf.index, opts.consistency);
    Ok(resp)
}
