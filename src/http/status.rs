//! `/v1/status/*`: the raft leader and voters, as `ip:port` strings (a
//! client agent asks a server). Consul checks no ACL here: any token,
//! even an unknown one, gets an answer.

use super::wire::{ApiResult, Ctx};

/// `GET /v1/status/leader` => `"10.0.0.1:8300"`, or `""` with no leader.
pub async fn leader(ctx: Ctx) -> ApiResult {
    ctx.read_opts()?;
    let addr = ctx.consensus.leader().await?.unwrap_or_default();
    Ok(ctx.json(&addr))
}

/// `GET /v1/status/peers` => the voters' raft addresses.
pub async fn peers(ctx: Ctx) -> ApiResult {
    ctx.read_opts()?;
    let peers = ctx.consensus.peers().await?;
    Ok(ctx.json(&peers))
}
