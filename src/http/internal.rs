//! `/v1/internal/ui/*`: the summaries Consul's web UI reads, in Consul's
//! JSON (`agent/ui_endpoint.go`). Each is one read of the node, service and
//! check tables (`Reader::dump`) summarised in one pass
//! (`catalog::summary`), with the blocking and consistency options of the
//! health endpoints and their `X-Consul-Index`.

use super::blocking::{self, Watch};
use super::types::{HealthCheckJson, NodeServiceJson, ServiceEntryJson};
use super::wire::{set_filtered_by_acls, set_meta, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Authorizer, Resource};
use crate::catalog::summary::{
    self, CatalogDump, CatalogOverview, HealthSummary, NodeInfo, ServiceSummary,
};
use crate::catalog::types::{Check, Node};
use crate::catalog::Table;
use crate::filter::{Filter, Subject};
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// What every summary can change with.
const TABLES: &[Table] = &[Table::Nodes, Table::Services, Table::Checks];

/// Consul's `GatewayConfig` for a service no gateway fronts: every field
/// is omitted when empty, so `{}`.
#[derive(Serialize)]
struct GatewayConfigJson {}

/// `ServiceListingSummary`, OSS fields in Consul's order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceSummaryJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    name: String,
    datacenter: String,
    /// Go's nil slice: `null` when no instance has a tag.
    tags: Option<Vec<String>>,
    nodes: Vec<String>,
    external_sources: Option<Vec<String>>,
    instance_count: usize,
    checks_passing: usize,
    checks_warning: usize,
    checks_critical: usize,
    gateway_config: GatewayConfigJson,
    transparent_proxy: bool,
    connect_native: bool,
    connected_with_proxy: bool,
    connected_with_gateway: bool,
}

fn non_empty(v: Vec<String>) -> Option<Vec<String>> {
    (!v.is_empty()).then_some(v)
}

impl From<ServiceSummary> for ServiceSummaryJson {
    fn from(s: ServiceSummary) -> Self {
        ServiceSummaryJson {
            kind: s.kind,
            name: s.name,
            datacenter: s.datacenter,
            tags: non_empty(s.tags),
            nodes: s.nodes,
            external_sources: non_empty(s.external_sources),
            instance_count: s.instance_count,
            checks_passing: s.checks.passing,
            checks_warning: s.checks.warning,
            checks_critical: s.checks.critical,
            gateway_config: GatewayConfigJson {},
            transparent_proxy: false,
            connect_native: false,
            connected_with_proxy: false,
            connected_with_gateway: false,
        }
    }
}

/// `structs.NodeInfo`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeInfoJson {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    tagged_addresses: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
    services: Vec<NodeServiceJson>,
    checks: Vec<HealthCheckJson>,
}

impl From<&NodeInfo<'_>> for NodeInfoJson {
    fn from(info: &NodeInfo<'_>) -> Self {
        let n = info.node;
        NodeInfoJson {
            id: n.id.clone(),
            node: n.name.clone(),
            address: n.address.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            meta: n.meta.clone(),
            services: info.services.iter().map(|s| (*s).into()).collect(),
            checks: info.checks.iter().map(|c| (*c).into()).collect(),
        }
    }
}

/// `structs.HealthSummary`; the nodes' group has no name.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HealthSummaryJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    total: usize,
    passing: usize,
    warning: usize,
    critical: usize,
}

impl From<HealthSummary> for HealthSummaryJson {
    fn from(s: HealthSummary) -> Self {
        HealthSummaryJson {
            name: s.name,
            total: s.counts.total(),
            passing: s.counts.passing,
            warning: s.counts.warning,
            critical: s.counts.critical,
        }
    }
}

/// `structs.CatalogSummary`: an empty group list is Go's nil, `null`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogOverviewJson {
    nodes: Option<Vec<HealthSummaryJson>>,
    services: Option<Vec<HealthSummaryJson>>,
    checks: Option<Vec<HealthSummaryJson>>,
}

impl From<CatalogOverview> for CatalogOverviewJson {
    fn from(o: CatalogOverview) -> Self {
        let list = |v: Vec<HealthSummary>| {
            (!v.is_empty()).then(|| v.into_iter().map(HealthSummaryJson::from).collect())
        };
        CatalogOverviewJson {
            nodes: list(o.nodes),
            services: list(o.services),
            checks: list(o.checks),
        }
    }
}

/// What of `dump` the token may read, as Consul's ACL filter trims the
/// dump its UI endpoints summarise: a node needs `node:read`, an instance
/// `node:read` on its node and `service:read` on its name, a check the
/// same as what it belongs to. Returns whether anything was dropped.
fn readable(dump: &mut CatalogDump, authz: &Authorizer) -> bool {
    if authz.is_management() {
        return false;
    }
    let node_ok = |n: &str| authz.allows(Resource::Node, n, Access::Read);
    let service_ok = |s: &str| authz.allows(Resource::Service, s, Access::Read);
    let before = dump.nodes.len() + dump.services.len() + dump.checks.len();
    dump.nodes.retain(|n| node_ok(&n.name));
    dump.services
        .retain(|s| node_ok(&s.node) && service_ok(&s.name));
    dump.checks
        .retain(|c| node_ok(&c.node) && (c.service_id.is_empty() || service_ok(&c.service_name)));
    before != dump.nodes.len() + dump.services.len() + dump.checks.len()
}

/// Runs `summarise` over one dump of the catalog, trimmed to what the
/// token may read, with blocking semantics and renders it with the read's
/// headers.
async fn summary_read<T: Serialize>(
    ctx: &Ctx,
    summarise: impl Fn(&mut CatalogDump) -> T,
) -> ApiResult {
    let opts = ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    let ((out, filtered), index) = blocking::query(ctx, &opts, Watch::Catalog, |r| {
        let mut dump = r.dump()?;
        let filtered = readable(&mut dump, &authz);
        Ok(((summarise(&mut dump), filtered), r.index(TABLES)?))
    })
    .await?;
    let mut resp = ctx.json(&out);
    set_meta(&mut resp, ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// `GET /v1/internal/ui/services`: one row per service name, by name.
pub async fn services(ctx: Ctx) -> ApiResult {
    let expr = ctx.filter(Subject::CheckServiceNode)?;
    summary_read(&ctx, |dump| {
        retain_instances(dump, &expr);
        summary::service_summaries(dump)
            .into_iter()
            .map(ServiceSummaryJson::from)
            .collect::<Vec<_>>()
    })
    .await
}

/// `GET /v1/internal/ui/nodes`: every node with its services and checks;
/// `[]` when there are none.
pub async fn nodes(ctx: Ctx) -> ApiResult {
    let expr = ctx.filter(Subject::NodeInfo)?;
    summary_read(&ctx, |dump| {
        let mut infos: Vec<NodeInfoJson> = summary::node_infos(dump)
            .iter()
            .map(NodeInfoJson::from)
            .collect();
        expr.retain(&mut infos);
        infos
    })
    .await
}

/// Keeps the service instances of `dump` that pass `expr` as Consul's
/// `Internal.ServiceDump` filters them before the UI summarises: each as a
/// `CheckServiceNode`, with its node and its node's and its own checks.
fn retain_instances(dump: &mut CatalogDump, expr: &Filter) {
    if !expr.is_active() {
        return;
    }
    let nodes: HashMap<&str, &Node> = dump.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut checks: HashMap<(&str, &str), Vec<&Check>> = HashMap::new();
    for c in &dump.checks {
        checks
            .entry((c.node.as_str(), c.service_id.as_str()))
            .or_default()
            .push(c);
    }
    let keep: Vec<bool> = dump
        .services
        .iter()
        .map(|svc| {
            let Some(node) = nodes.get(svc.node.as_str()) else {
                return false;
            };
            let of_node = checks.get(&(svc.node.as_str(), ""));
            let of_instance = checks.get(&(svc.node.as_str(), svc.id.as_str()));
            let entry = ServiceEntryJson {
                node: (*node).into(),
                service: svc.into(),
                checks: of_node
                    .into_iter()
                    .chain(of_instance)
                    .flatten()
                    .map(|c| (*c).into())
                    .collect(),
            };
            expr.matches(&entry)
        })
        .collect();
    let mut keep = keep.into_iter();
    dump.services.retain(|_| keep.next().unwrap_or(false));
}

/// `GET /v1/internal/ui/node/<node>`: that node alone. Consul answers an
/// unknown node with a bare 404 (no body, no index).
pub async fn node(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing node name"));
    }
    let name = ctx.rest.clone();
    let authz = ctx.authorizer().await?;
    // A node the token cannot read is answered as one that does not exist.
    let node_ok = authz.allows(Resource::Node, &name, Access::Read);
    let service_ok = |s: &str| authz.allows(Resource::Service, s, Access::Read);
    let ((out, filtered), index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut filtered = !node_ok;
        let out = match r.node(&name)?.filter(|_| node_ok) {
            None => None,
            Some(node) => {
                let mut services = r.node_services(&name)?;
                let mut checks = r.node_checks(&name)?;
                let before = services.len() + checks.len();
                services.retain(|s| service_ok(&s.name));
                checks.retain(|c| c.service_id.is_empty() || service_ok(&c.service_name));
                filtered |= before != services.len() + checks.len();
                let info = NodeInfo {
                    node: &node,
                    services: services.iter().collect(),
                    checks: checks.iter().collect(),
                };
                Some(NodeInfoJson::from(&info))
            }
        };
        Ok(((out, filtered), r.index(TABLES)?))
    })
    .await?;
    let Some(out) = out else {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    };
    let mut resp = ctx.json(&out);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// `GET /v1/internal/ui/catalog-overview`: totals of nodes, service
/// instances and checks by status. Consul recomputes it every few seconds;
/// cairn computes it per read, which is as cheap and never stale.
pub async fn catalog_overview(ctx: Ctx) -> ApiResult {
    summary_read(&ctx, |dump| {
        CatalogOverviewJson::from(summary::overview(dump))
    })
    .await
}
