//! `/v1/operator/raft/*`: the raft configuration as Consul reports it.

use super::blocking;
use super::wire::{set_meta, ApiResult, Ctx};
use crate::raft::raft_id;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServer {
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
struct RaftConfiguration {
    servers: Vec<RaftServer>,
    index: u64,
}

/// `GET /v1/operator/raft/configuration`. Raft member IDs are derived from
/// node UUIDs, so each member is mapped back to its catalog node by
/// recomputing that derivation over the catalog's nodes.
pub async fn raft_configuration(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    blocking::ensure_readable(&ctx.agent, &opts).await?;
    let agent = &ctx.agent;
    let mut by_raft_id: HashMap<u64, (String, String)> = HashMap::new();
    {
        let r = agent.catalog.reader()?;
        for n in r.nodes()? {
            if !n.id.is_empty() {
                by_raft_id.insert(raft_id(&n.id), (n.id.clone(), n.name.clone()));
            }
        }
    }
    by_raft_id.insert(
        agent.consensus.id,
        (agent.node_id.clone(), agent.node_name.clone()),
    );
    let metrics = agent.consensus.raft.metrics().borrow().clone();
    let leader = metrics.current_leader;
    let index = metrics
        .membership_config
        .log_id()
        .map(|l| l.index)
        .unwrap_or(0)
        // A bootstrap configuration sits at raft index 0; Consul's is never 0.
        .max(1);
    let last_index = metrics.last_log_index.unwrap_or(0);
    let servers = agent
        .consensus
        .members()
        .into_iter()
        .map(|(id, addr, voter)| {
            let (uuid, node) = by_raft_id
                .get(&id)
                .cloned()
                .unwrap_or_else(|| (id.to_string(), String::new()));
            RaftServer {
                id: uuid,
                node,
                address: addr,
                leader: leader == Some(id),
                voter,
                protocol_version: "3",
                last_index: if id == agent.consensus.id {
                    last_index
                } else {
                    0
                },
            }
        })
        .collect::<Vec<_>>();
    let mut resp = ctx.json(&RaftConfiguration { servers, index });
    set_meta(&mut resp, agent, index, opts.consistency);
    Ok(resp)
}
