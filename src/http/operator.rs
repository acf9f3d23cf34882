//! `/v1/operator/raft/*` (the raft configuration as Consul reports it,
//! leadership transfer) and `/v1/operator/usage`.

use super::blocking::{self, Watch};
use super::wire::{require_global, set_meta, ApiError, ApiResult, Consistency, Ctx};
use crate::acl::{Access, Global};
use crate::catalog::Table;
use serde::Serialize;
use std::collections::BTreeMap;

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

/// Consul's `structs.ServiceUsage` (CE fields).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceUsageJson {
    services: usize,
    service_instances: usize,
    connect_service_instances: BTreeMap<&'static str, usize>,
    billable_service_instances: usize,
    nodes: usize,
}

/// `structs.Usage`: the usage per datacenter, then the query metadata
/// Consul embeds in it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UsageJson {
    usage: BTreeMap<String, ServiceUsageJson>,
    index: u64,
    last_contact: u64,
    known_leader: bool,
    consistency_level: &'static str,
    not_modified: bool,
    backend: u8,
    results_filtered_by_acls: bool,
}

/// The service kinds Consul counts as connect instances.
const CONNECT_KINDS: [&str; 6] = [
    "api-gateway",
    "connect-native",
    "connect-proxy",
    "ingress-gateway",
    "mesh-gateway",
    "terminating-gateway",
];

/// Counts as Consul's usage table keeps them: instances of every service,
/// its own `consul` service included; billable ones are those that are
/// neither `consul` nor a connect proxy or gateway.
fn usage_of(services: &[crate::catalog::types::Service], nodes: usize) -> ServiceUsageJson {
    let names: std::collections::BTreeSet<&str> =
        services.iter().map(|s| s.name.as_str()).collect();
    let mut connect: BTreeMap<&'static str, usize> =
        CONNECT_KINDS.iter().map(|k| (*k, 0)).collect();
    for s in services {
        if let Some(n) = connect.get_mut(s.kind.as_str()) {
            *n += 1;
        }
    }
    let billable = services
        .iter()
        .filter(|s| s.name != "consul" && s.kind.is_empty())
        .count();
    ServiceUsageJson {
        services: names.len(),
        service_instances: services.len(),
        connect_service_instances: connect,
        billable_service_instances: billable,
        nodes,
    }
}

/// `GET /v1/operator/usage`: the catalog's counts for this datacenter.
/// `operator:read`, as in Consul.
pub async fn usage(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Operator, Access::Read)?;
    let (counts, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let services = r.all_services()?;
        let nodes = r.nodes()?.len();
        let index = r.index(&[Table::Nodes, Table::Services])?;
        Ok((usage_of(&services, nodes), index))
    })
    .await?;
    let contact = ctx.consensus.contact();
    let body = UsageJson {
        usage: BTreeMap::from([(ctx.config.datacenter.clone(), counts)]),
        index: index.max(1),
        last_contact: contact.last_contact_ms,
        known_leader: contact.known_leader,
        consistency_level: opts.consistency.as_str(),
        not_modified: false,
        backend: 0,
        results_filtered_by_acls: false,
    };
    let mut resp = ctx.json(&body);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::Service;

    fn svc(name: &str, kind: &str) -> Service {
        Service {
            name: name.into(),
            kind: kind.into(),
            ..Service::default()
        }
    }

    #[test]
    fn usage_counts_names_instances_connect_and_billable() {
        let services = [
            svc("consul", ""),
            svc("web", ""),
            svc("web", ""),
            svc("web-sidecar-proxy", "connect-proxy"),
            svc("gw", "mesh-gateway"),
        ];
        let u = usage_of(&services, 2);
        assert_eq!(u.services, 4);
        assert_eq!(u.service_instances, 5);
        assert_eq!(u.billable_service_instances, 2);
        assert_eq!(u.connect_service_instances["connect-proxy"], 1);
        assert_eq!(u.connect_service_instances["mesh-gateway"], 1);
        assert_eq!(u.connect_service_instances["api-gateway"], 0);
        assert_eq!(u.nodes, 2);
    }
}
