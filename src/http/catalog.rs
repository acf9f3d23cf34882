//! `/v1/catalog/*`: direct catalog registration and the catalog reads.
//!
//! ACLs as in Consul's Catalog endpoint: a registration needs `node:write`
//! when it creates or changes the node, `service:write` on the service it
//! registers (and on the one it replaces under the same ID), and write on
//! what each check belongs to; the reads drop what the token cannot read
//! (a service instance needs both `node:read` and `service:read`).

use super::blocking::{self, Watch};
use super::check::CheckFields;
use super::decode::{decode_body, GoDuration};
use super::types::{AddressJson, NodeJson, NodeServiceJson, ServiceNodeJson, WeightsJson};
use super::wire::{require, set_filtered_by_acls, set_meta, ApiError, ApiResult, Ctx, Query};
use crate::acl::{Access, Authorizer, Resource};
use crate::catalog::command::{changes_node, Command, Deregistration, Registration};
use crate::catalog::types::{
    Check, CheckDefinition, CheckKind, HealthStatus, Node, Service, ServiceAddress, Weights,
};
use crate::catalog::Table;
use crate::filter::Subject;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// `structs.RegisterRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct RegisterRequest {
    datacenter: String,
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    tagged_addresses: BTreeMap<String, String>,
    node_meta: BTreeMap<String, String>,
    service: Option<NodeServiceIn>,
    check: Option<HealthCheckIn>,
    checks: Vec<HealthCheckIn>,
    skip_node_update: bool,
    token: String,
    namespace: String,
    partition: String,
    peer_name: String,
    locality: Option<Value>,
}

/// `structs.NodeService` as a request body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NodeServiceIn {
    kind: String,
    #[serde(rename = "ID")]
    id: String,
    service: String,
    tags: Vec<String>,
    address: String,
    tagged_addresses: BTreeMap<String, AddressJson>,
    meta: BTreeMap<String, String>,
    port: u16,
    socket_path: String,
    weights: Option<WeightsJson>,
    enable_tag_override: bool,
    proxy: Option<Value>,
    connect: Option<Value>,
    locally_registered_as_sidecar: bool,
    peer_name: String,
    locality: Option<Value>,
    namespace: String,
    partition: String,
    create_index: u64,
    modify_index: u64,
}

/// `structs.HealthCheck` as a request body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HealthCheckIn {
    node: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    status: String,
    notes: String,
    output: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    service_tags: Vec<String>,
    #[serde(rename = "Type")]
    kind: String,
    interval: String,
    timeout: String,
    exposed_port: u16,
    definition: Option<DefinitionIn>,
    peer_name: String,
    namespace: String,
    partition: String,
    create_index: u64,
    modify_index: u64,
}

impl NodeServiceIn {
    /// The service as the catalog stores it, on `node`, or Consul's error
    /// for it. The ID defaults to the name. `lookup` is for a service that
    /// only names the one to read or delete, which needs no name.
    pub(crate) fn into_service(self, node: &str, lookup: bool) -> Result<Service, ApiError> {
        let s = self;
        let id = if s.id.is_empty() {
            s.service.clone()
        } else {
            s.id.clone()
        };
        if !lookup && !id.is_empty() && s.service.is_empty() {
            return Err(ApiError::Internal(
                "Must provide service name with ID".into(),
            ));
        }
        if is_any_addr(&s.address) {
            return Err(ApiError::Internal("Invalid service address".into()));
        }
        Ok(Service {
            node: node.to_string(),
            id,
            name: s.service,
            tags: s.tags,
            address: s.address,
            tagged_addresses: s
                .tagged_addresses
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        ServiceAddress {
                            address: v.address,
                            port: v.port,
                        },
                    )
                })
                .collect(),
            meta: s.meta,
            port: s.port,
            weights: s
                .weights
                .map(|w| Weights {
                    passing: w.passing.max(0) as u32,
                    warning: w.warning.max(0) as u32,
                })
                .unwrap_or_default(),
            enable_tag_override: s.enable_tag_override,
            kind: s.kind,
            create_index: s.create_index,
            modify_index: s.modify_index,
        })
    }
}

impl HealthCheckIn {
    /// The check as the catalog stores it, on `node` (its own `Node` when
    /// `node` is empty).
    pub(crate) fn into_check(self, node: &str) -> Result<Check, ApiError> {
        let node = if node.is_empty() {
            self.node.clone()
        } else {
            node.to_string()
        };
        let check_id = if self.check_id.is_empty() {
            self.name.clone()
        } else {
            self.check_id
        };
        let status = if self.status.is_empty() {
            HealthStatus::Critical
        } else {
            HealthStatus::parse(&self.status).ok_or_else(|| {
                ApiError::Internal(format!("Invalid check status: {:?}", self.status))
            })?
        };
        let mut definition = self
            .definition
            .map(DefinitionIn::into_definition)
            .unwrap_or_default();
        // A check without a definition is of the `Type` it was given; one
        // with a definition is of its definition's type.
        if let CheckKind::Undefined { type_name } = &mut definition.kind {
            *type_name = self.kind;
        }
        Ok(Check {
            node,
            check_id,
            name: self.name,
            status,
            notes: self.notes,
            output: self.output,
            service_id: self.service_id,
            service_name: self.service_name,
            service_tags: self.service_tags,
            definition,
            create_index: self.create_index,
            modify_index: self.modify_index,
        })
    }
}

/// `structs.HealthCheckDefinition`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DefinitionIn {
    #[serde(rename = "HTTP")]
    http: String,
    #[serde(rename = "TLSServerName")]
    tls_server_name: String,
    #[serde(rename = "TLSSkipVerify")]
    tls_skip_verify: bool,
    header: BTreeMap<String, Vec<String>>,
    method: String,
    body: String,
    disable_redirects: bool,
    #[serde(rename = "TCP")]
    tcp: String,
    #[serde(rename = "TCPUseTLS")]
    tcp_use_tls: bool,
    #[serde(rename = "UDP")]
    udp: String,
    #[serde(rename = "H2PING")]
    h2ping: String,
    #[serde(rename = "H2PingUseTLS")]
    h2ping_use_tls: bool,
    #[serde(rename = "OSService")]
    os_service: String,
    #[serde(skip_serializing)]
    interval: GoDuration,
    output_max_size: u64,
    #[serde(skip_serializing)]
    timeout: GoDuration,
    #[serde(skip_serializing)]
    deregister_critical_service_after: GoDuration,
    script_args: Vec<String>,
    #[serde(rename = "DockerContainerID")]
    docker_container_id: String,
    shell: String,
    #[serde(rename = "GRPC")]
    grpc: String,
    #[serde(rename = "GRPCUseTLS")]
    grpc_use_tls: bool,
    alias_node: String,
    alias_service: String,
    #[serde(rename = "TTL", skip_serializing)]
    ttl: GoDuration,
}

impl DefinitionIn {
    /// Unvalidated, as Consul's catalog stores definitions: nothing in the
    /// catalog runs them.
    fn into_definition(self) -> CheckDefinition {
        CheckFields {
            http: self.http,
            method: self.method,
            header: self.header,
            body: self.body,
            disable_redirects: self.disable_redirects,
            tls_server_name: self.tls_server_name,
            tls_skip_verify: self.tls_skip_verify,
            tcp: self.tcp,
            tcp_use_tls: self.tcp_use_tls,
            udp: self.udp,
            grpc: self.grpc,
            grpc_use_tls: self.grpc_use_tls,
            h2ping: self.h2ping,
            h2ping_use_tls: self.h2ping_use_tls,
            os_service: self.os_service,
            alias_node: self.alias_node,
            alias_service: self.alias_service,
            script_args: self.script_args,
            docker_container_id: self.docker_container_id,
            shell: self.shell,
            ttl: Duration::from_nanos(self.ttl.0),
            interval: Duration::from_nanos(self.interval.0),
            timeout: Duration::from_nanos(self.timeout.0),
            deregister_critical_service_after: Duration::from_nanos(
                self.deregister_critical_service_after.0,
            ),
            output_max_size: self.output_max_size,
            ..CheckFields::default()
        }
        .into_definition()
    }
}

/// `0.0.0.0` / `::` are not addresses anyone can reach (Consul's `ipaddr.IsAny`).
pub fn is_any_addr(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

fn meta_filter(q: &Query) -> Vec<(String, String)> {
    q.all("node-meta")
        .into_iter()
        .map(|kv| match kv.split_once(':') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect()
}

pub fn node_matches(node: &Node, filter: &[(String, String)]) -> bool {
    filter.iter().all(|(k, v)| node.meta.get(k) == Some(v))
}

/// `PUT /v1/catalog/register` => `true`.
pub async fn register(ctx: Ctx) -> ApiResult {
    let req: RegisterRequest = decode_body(&ctx.body)?;
    if let Some(resp) = super::datacenter::forward_body(&ctx, &req.datacenter).await? {
        return Ok(resp);
    }
    let reg = registration(req, &ctx.config.datacenter)?;
    let authz = ctx.authorizer().await?;
    if authz.enabled() {
        vet_register(&ctx, &authz, &reg)?;
    }
    ctx.agent.write(Command::Register(reg)).await?;
    Ok(ctx.json(&true))
}

/// Consul's `vetRegisterWithACL`, against the catalog as it is now.
fn vet_register(ctx: &Ctx, authz: &Authorizer, reg: &Registration) -> Result<(), ApiError> {
    let reader = ctx.catalog.reader()?;
    let node = &reg.node.name;
    let existing = reader.node(node)?;
    if existing.as_ref().is_none_or(|old| changes_node(reg, old)) {
        require(authz, Resource::Node, node, Access::Write)?;
    }
    let stored = reader.node_services(node)?;
    if let Some(svc) = &reg.service {
        require(authz, Resource::Service, &svc.name, Access::Write)?;
        // Taking over an ID registered under another name rewrites that
        // service too.
        if let Some(old) = stored.iter().find(|s| s.id == svc.id && s.name != svc.name) {
            require(authz, Resource::Service, &old.name, Access::Write)?;
        }
    }
    for check in &reg.checks {
        if check.service_id.is_empty() {
            require(authz, Resource::Node, node, Access::Write)?;
            continue;
        }
        if reg
            .service
            .as_ref()
            .is_some_and(|s| s.id == check.service_id)
        {
            continue;
        }
        if let Some(owner) = stored.iter().find(|s| s.id == check.service_id) {
            require(authz, Resource::Service, &owner.name, Access::Write)?;
        }
    }
    Ok(())
}

/// Consul's `vetDeregisterWithACL`: write on what is removed — the
/// service, the check's service (or node, for a node check), or the node.
fn vet_deregister(ctx: &Ctx, authz: &Authorizer, d: &Deregistration) -> Result<(), ApiError> {
    let reader = ctx.catalog.reader()?;
    if let Some(id) = &d.service_id {
        if let Some(svc) = reader.node_services(&d.node)?.iter().find(|s| &s.id == id) {
            require(authz, Resource::Service, &svc.name, Access::Write)?;
        }
        return Ok(());
    }
    if let Some(id) = &d.check_id {
        let checks = reader.node_checks(&d.node)?;
        match checks.iter().find(|c| &c.check_id == id) {
            Some(c) if !c.service_id.is_empty() => {
                require(authz, Resource::Service, &c.service_name, Access::Write)?
            }
            Some(_) => require(authz, Resource::Node, &d.node, Access::Write)?,
            None => {}
        }
        return Ok(());
    }
    require(authz, Resource::Node, &d.node, Access::Write)
}

/// A decoded `PUT /v1/catalog/register` body as the command it proposes,
/// or the error Consul answers it with; nodes without a datacenter are in
/// `local_dc`.
pub(crate) fn registration(req: RegisterRequest, local_dc: &str) -> Result<Registration, ApiError> {
    // The state machine's checks, with Consul's texts (Consul answers these with 500).
    if req.node.is_empty() {
        return Err(ApiError::Internal("Must provide node".into()));
    }
    if req.address.is_empty() && !req.skip_node_update {
        return Err(ApiError::Internal(
            "Must provide address if SkipNodeUpdate is not set".into(),
        ));
    }
    if !req.id.is_empty() && uuid::Uuid::parse_str(&req.id).is_err() {
        return Err(ApiError::Internal(format!(
            "Bad node ID: uuid string is wrong length: {}",
            req.id
        )));
    }
    let datacenter = if req.datacenter.is_empty() {
        local_dc.to_string()
    } else {
        req.datacenter.clone()
    };
    let node = Node {
        id: req.id.to_ascii_lowercase(),
        name: req.node.clone(),
        address: req.address.clone(),
        datacenter,
        tagged_addresses: req.tagged_addresses.clone(),
        meta: req.node_meta.clone(),
        create_index: 0,
        modify_index: 0,
    };
    let service = match req.service {
        None => None,
        Some(s) => Some(s.into_service(&req.node, false)?),
    };
    let checks = req
        .check
        .into_iter()
        .chain(req.checks)
        .map(|c| c.into_check(&req.node))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Registration {
        node,
        service,
        checks,
        skip_node_update: req.skip_node_update,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct DeregisterRequest {
    datacenter: String,
    node: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    token: String,
    namespace: String,
    partition: String,
    peer_name: String,
}

/// `PUT /v1/catalog/deregister` => `true`.
pub async fn deregister(ctx: Ctx) -> ApiResult {
    let req: DeregisterRequest = decode_body(&ctx.body)?;
    if let Some(resp) = super::datacenter::forward_body(&ctx, &req.datacenter).await? {
        return Ok(resp);
    }
    if req.node.is_empty() {
        return Err(ApiError::Internal("Must provide node".into()));
    }
    let d = Deregistration {
        node: req.node,
        service_id: (!req.service_id.is_empty()).then_some(req.service_id),
        check_id: (!req.check_id.is_empty()).then_some(req.check_id),
    };
    let authz = ctx.authorizer().await?;
    if authz.enabled() {
        vet_deregister(&ctx, &authz, &d)?;
    }
    ctx.agent.write(Command::Deregister(d)).await?;
    Ok(ctx.json(&true))
}

/// `GET /v1/catalog/datacenters`: no leader needed.
/// `GET /v1/catalog/datacenters`: every datacenter the WAN pool knows,
/// nearest first (a client agent asks a server).
pub async fn datacenters(ctx: Ctx) -> ApiResult {
    Ok(ctx.json(&ctx.federation.datacenters()))
}

/// `GET /v1/catalog/nodes`.
pub async fn nodes(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let filter = meta_filter(&ctx.query);
    let expr = ctx.filter(Subject::Node)?;
    let authz = ctx.authorizer().await?;
    let near = super::coordinate::near_node(&ctx);
    let mut filtered = false;
    let (nodes, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut nodes = r.nodes()?;
        nodes.retain(|n| node_matches(n, &filter));
        let before = nodes.len();
        nodes.retain(|n| authz.allows(Resource::Node, &n.name, Access::Read));
        filtered = nodes.len() != before;
        let mut nodes: Vec<NodeJson> = nodes.iter().map(NodeJson::from).collect();
        expr.retain(&mut nodes);
        super::coordinate::sort_near(r, near.as_deref(), &mut nodes, |n| &n.node)?;
        Ok((nodes, r.index(&[Table::Nodes])?))
    })
    .await?;
    let mut resp = ctx.json(&nodes);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// `GET /v1/catalog/services` => `{"name": ["tag", ...]}`.
pub async fn services(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let filter = meta_filter(&ctx.query);
    let expr = ctx.filter(Subject::ServiceNode)?;
    let authz = ctx.authorizer().await?;
    let mut filtered = false;
    let (services, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if filter.is_empty() && !expr.is_active() {
            for (name, tags) in r.service_tags()? {
                out.insert(name, tags.into_iter().collect());
            }
        } else {
            let mut sets: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
            for svc in r.all_services()? {
                let ok = filter.is_empty()
                    || r.node(&svc.node)?
                        .is_some_and(|n| node_matches(&n, &filter));
                // Consul filters the service instances as its state store
                // keeps them, before the node's fields are joined in.
                if ok && expr.matches(&ServiceNodeJson::stored(&svc)) {
                    sets.entry(svc.name).or_default().extend(svc.tags);
                }
            }
            out = sets
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect();
        }
        // Consul filters the name map by `service:read` alone.
        let before = out.len();
        out.retain(|name, _| authz.allows(Resource::Service, name, Access::Read));
        filtered = out.len() != before;
        Ok((out, r.index(&[Table::Services, Table::Nodes])?))
    })
    .await?;
    let mut resp = ctx.json(&services);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// Which instances of a service a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// The service's own instances (`catalog/service`, `health/service`).
    Instances,
    /// Its Connect-capable instances: proxies for it and Connect-native
    /// instances (`catalog/connect`, `health/connect`).
    Connect,
    /// The ingress gateways routing to it (`health/ingress`).
    Ingress,
}

impl Selection {
    /// Whether the read can only be empty: cairn stores no Connect proxies,
    /// Connect-native services or ingress gateway config, and has no
    /// cluster peerings, so `?peer=<name>` names none that exists (Consul
    /// answers an unknown peer with an empty list too).
    pub(crate) fn always_empty(self, ctx: &Ctx) -> bool {
        self != Selection::Instances || ctx.query.get("peer").is_some_and(|p| !p.is_empty())
    }
}

/// `GET /v1/catalog/service/<name>[?tag=..]`; unknown => `[]`.
pub async fn service(ctx: Ctx) -> ApiResult {
    service_nodes(ctx, Selection::Instances).await
}

/// `GET /v1/catalog/connect/<name>`: the service's Connect-capable
/// instances, with the same options as `catalog/service`.
pub async fn connect(ctx: Ctx) -> ApiResult {
    service_nodes(ctx, Selection::Connect).await
}

async fn service_nodes(ctx: Ctx, selection: Selection) -> ApiResult {
    let opts = ctx.read_opts()?;
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing service name"));
    }
    let tags = ctx.query.all("tag");
    let filter = meta_filter(&ctx.query);
    let expr = ctx.filter(Subject::ServiceNode)?;
    let name = ctx.rest.clone();
    let authz = ctx.authorizer().await?;
    let near = super::coordinate::near_node(&ctx);
    let mut filtered = false;
    let empty = selection.always_empty(&ctx);
    let (rows, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut rows = Vec::new();
        filtered = false;
        let services = if empty {
            Vec::new()
        } else {
            r.services_named(&name, &tags)?
        };
        for svc in services {
            if let Some(node) = r.node(&svc.node)? {
                if !node_matches(&node, &filter) {
                    continue;
                }
                if !instance_readable(&authz, &node.name, &svc.name) {
                    filtered = true;
                    continue;
                }
                rows.push(ServiceNodeJson::new(&node, &svc));
            }
        }
        expr.retain(&mut rows);
        super::coordinate::sort_near(r, near.as_deref(), &mut rows, |s| &s.node)?;
        Ok((rows, r.index(&[Table::Services, Table::Nodes])?))
    })
    .await?;
    let mut resp = ctx.json(&rows);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeServicesMap {
    node: NodeJson,
    services: BTreeMap<String, NodeServiceJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeServicesList {
    node: NodeJson,
    services: Vec<NodeServiceJson>,
}

/// `GET /v1/catalog/node/<node>` => `{Node, Services{id: ...}}` or `null`.
pub async fn node(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing node name"));
    }
    let name = ctx.rest.clone();
    let expr = ctx.filter(Subject::NodeService)?;
    let authz = ctx.authorizer().await?;
    let mut filtered = false;
    let (out, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let out = readable_node_services(r, &authz, &name, &mut filtered)?.map(|(n, services)| {
            let mut services: BTreeMap<String, NodeServiceJson> = services
                .iter()
                .map(|s| (s.id.clone(), NodeServiceJson::from(s)))
                .collect();
            expr.retain_values(&mut services);
            NodeServicesMap {
                node: (&n).into(),
                services,
            }
        });
        Ok((out, r.index(&[Table::Nodes, Table::Services])?))
    })
    .await?;
    let mut resp = ctx.json(&out);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// `GET /v1/catalog/node-services/<node>` => `{Node, Services[...]}` or `null`.
pub async fn node_services(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing node name"));
    }
    let name = ctx.rest.clone();
    let expr = ctx.filter(Subject::NodeService)?;
    let authz = ctx.authorizer().await?;
    let mut filtered = false;
    let (out, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let out = readable_node_services(r, &authz, &name, &mut filtered)?.map(|(n, services)| {
            let mut services: Vec<NodeServiceJson> =
                services.iter().map(NodeServiceJson::from).collect();
            expr.retain(&mut services);
            NodeServicesList {
                node: (&n).into(),
                services,
            }
        });
        Ok((out, r.index(&[Table::Nodes, Table::Services])?))
    })
    .await?;
    let mut resp = ctx.json(&out);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// Consul's ACL filter for one service instance: both its node and its
/// service must be readable.
pub(crate) fn instance_readable(authz: &Authorizer, node: &str, service: &str) -> bool {
    authz.allows(Resource::Node, node, Access::Read)
        && authz.allows(Resource::Service, service, Access::Read)
}

/// A node and its services as the token may see them (Consul's
/// `filterNodeServices`): an unreadable node is absent (`null`), and its
/// services are cut to those the token can read. `filtered` records
/// whether anything was dropped.
fn readable_node_services(
    r: &crate::catalog::query::Reader,
    authz: &Authorizer,
    name: &str,
    filtered: &mut bool,
) -> Result<Option<(Node, Vec<Service>)>, ApiError> {
    let Some(node) = r.node(name)? else {
        *filtered = false;
        return Ok(None);
    };
    if !authz.allows(Resource::Node, &node.name, Access::Read) {
        *filtered = true;
        return Ok(None);
    }
    let mut services = r.node_services(name)?;
    let before = services.len();
    services.retain(|s| authz.allows(Resource::Service, &s.name, Access::Read));
    *filtered = services.len() != before;
    Ok(Some((node, services)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::HttpCheck;
    use crate::http::decode::decode;
    use serde_json::json;
    use std::time::Duration;

    fn check(body: Value) -> Check {
        let c: HealthCheckIn = decode(body.to_string().as_bytes()).expect("decodes");
        c.into_check("n1").expect("valid")
    }

    #[test]
    fn definitions_parse_to_their_kind_unvalidated() {
        // ESM-style: lowercase keys, and no interval needed in the catalog.
        let c = check(
            json!({"CheckID": "c", "Definition": {"http": "http://x/health", "header": {"A": ["b"]}}}),
        );
        assert_eq!(
            c.definition.kind,
            CheckKind::Http(HttpCheck {
                url: "http://x/health".into(),
                header: [("A".to_string(), vec!["b".to_string()])].into(),
                ..HttpCheck::default()
            })
        );
        let c = check(
            json!({"CheckID": "c", "Definition": {"TCP": "db:1", "Interval": "10s", "TTL": "5s"}}),
        );
        assert_eq!(
            c.definition.kind,
            CheckKind::Ttl {
                ttl: Duration::from_secs(5)
            },
            "TTL comes before TCP in Consul's order"
        );
        assert_eq!(c.definition.interval, Duration::from_secs(10));
        let c = check(json!({"CheckID": "c", "Definition": {"AliasNode": "n2"}}));
        assert_eq!(
            c.definition.kind,
            CheckKind::Alias {
                node: "n2".into(),
                service: String::new()
            }
        );
    }

    #[test]
    fn the_type_given_names_checks_without_a_definition() {
        let c = check(json!({"CheckID": "c", "Type": "script"}));
        assert_eq!(
            c.definition.kind,
            CheckKind::Undefined {
                type_name: "script".into()
            }
        );
        assert_eq!(c.definition.kind.type_name(), "script");
        let c = check(json!({"CheckID": "c", "Definition": {"Interval": "10s"}}));
        assert_eq!(c.definition.kind.type_name(), "");
        let c = check(json!({"CheckID": "c", "Type": "http", "Definition": {"HTTP": "http://x"}}));
        assert_eq!(c.definition.kind.type_name(), "http");
        let c = check(json!({"CheckID": "c", "Definition": {"GRPC": "x:1"}}));
        assert_eq!(
            c.definition.kind.type_name(),
            "grpc",
            "an empty Type is derived"
        );
    }

    #[test]
    fn bad_status_is_refused() {
        let c: HealthCheckIn = decode(br#"{"CheckID":"c","Status":"ok"}"#).expect("decodes");
        assert!(matches!(
            c.into_check("n1"),
            Err(ApiError::Internal(m)) if m == r#"Invalid check status: "ok""#
        ));
    }
}
