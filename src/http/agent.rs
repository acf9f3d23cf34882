//! `/v1/agent/*`: the agent's own services and checks (registration, TTL
//! updates, maintenance), its identity (`self`, `members`, `version`), and
//! `leave`. Writes answer 200 with an empty body, as Consul's do.
//!
//! ACLs as in Consul's agent endpoint: the agent's own identity needs
//! `agent:read`/`agent:write` on its node name, `host` `operator:read`;
//! a service registration, deregistration or maintenance `service:write`
//! on the service's name; a check write `service:write` on its service,
//! or `node:write` on the agent's node for a node check; node maintenance
//! `node:write`. The service and check lists drop what the token cannot
//! read.

use super::catalog::is_any_addr;
use super::check::CheckFields;
use super::decode::{decode_body, GoDuration};
use super::types::{tagged_json, AddressJson, HealthCheckJson, WeightsJson};
use super::wire::{
    empty_ok, parse_bool, require, require_global, set_filtered_by_acls, ApiError, ApiResult, Ctx,
};
use crate::acl::{Access, Authorizer, Global, Resource};
use crate::agent::VERSION;
use crate::catalog::types::{
    Check, HealthStatus, Service, ServiceAddress, Weights, NODE_MAINT_CHECK_ID,
    SERVICE_MAINT_CHECK_PREFIX,
};
use crate::consensus::RaftStats;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A check inside a service definition (`CheckType`) or on its own
/// (`CheckDefinition`): the union of both field sets, with Consul's
/// snake_case spellings as separate fields.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "PascalCase")]
#[allow(dead_code)] // accepted for compatibility, not used
pub struct CheckIn {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    notes: String,
    status: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    #[serde(rename = "service_id")]
    service_id_snake: String,
    token: String,
    script_args: Vec<String>,
    #[serde(rename = "args")]
    args_snake: Vec<String>,
    #[serde(rename = "script_args")]
    script_args_snake: Vec<String>,
    #[serde(rename = "HTTP")]
    http: String,
    header: BTreeMap<String, Vec<String>>,
    method: String,
    body: String,
    disable_redirects: bool,
    #[serde(rename = "disable_redirects")]
    disable_redirects_snake: bool,
    #[serde(rename = "TCP")]
    tcp: String,
    #[serde(rename = "TCPUseTLS")]
    tcp_use_tls: bool,
    #[serde(rename = "UDP")]
    udp: String,
    interval: GoDuration,
    alias_node: String,
    alias_service: String,
    #[serde(rename = "DockerContainerID")]
    docker_container_id: String,
    #[serde(rename = "docker_container_id")]
    docker_container_id_snake: String,
    shell: String,
    #[serde(rename = "GRPC")]
    grpc: String,
    #[serde(rename = "GRPCUseTLS")]
    grpc_use_tls: bool,
    #[serde(rename = "grpc_use_tls")]
    grpc_use_tls_snake: bool,
    #[serde(rename = "H2PING")]
    h2ping: String,
    /// TLS unless turned off: Consul defaults both spellings to true.
    #[serde(rename = "H2PingUseTLS")]
    h2ping_use_tls: Option<bool>,
    #[serde(rename = "h2ping_use_tls")]
    h2ping_use_tls_snake: Option<bool>,
    #[serde(rename = "OSService")]
    os_service: String,
    #[serde(rename = "TLSServerName")]
    tls_server_name: String,
    #[serde(rename = "tls_server_name")]
    tls_server_name_snake: String,
    #[serde(rename = "TLSSkipVerify")]
    tls_skip_verify: bool,
    #[serde(rename = "tls_skip_verify")]
    tls_skip_verify_snake: bool,
    timeout: GoDuration,
    #[serde(rename = "TTL")]
    ttl: GoDuration,
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    #[serde(rename = "ProxyHTTP")]
    proxy_http: String,
    #[serde(rename = "ProxyGRPC")]
    proxy_grpc: String,
    deregister_critical_service_after: GoDuration,
    #[serde(rename = "deregister_critical_service_after")]
    deregister_critical_service_after_snake: GoDuration,
    output_max_size: u64,
    namespace: String,
    partition: String,
}

fn or_str(a: String, b: String) -> String {
    if a.is_empty() {
        b
    } else {
        a
    }
}

impl CheckIn {
    /// The definition's fields, the snake_case spellings merged into the
    /// canonical ones.
    fn fields(&self) -> CheckFields {
        let script_args = if !self.script_args.is_empty() {
            self.script_args.clone()
        } else if !self.args_snake.is_empty() {
            self.args_snake.clone()
        } else {
            self.script_args_snake.clone()
        };
        let dcsa = if self.deregister_critical_service_after.0 > 0 {
            self.deregister_critical_service_after.0
        } else {
            self.deregister_critical_service_after_snake.0
        };
        CheckFields {
            http: self.http.clone(),
            method: self.method.clone(),
            header: self.header.clone(),
            body: self.body.clone(),
            disable_redirects: self.disable_redirects || self.disable_redirects_snake,
            tls_server_name: or_str(
                self.tls_server_name.clone(),
                self.tls_server_name_snake.clone(),
            ),
            tls_skip_verify: self.tls_skip_verify || self.tls_skip_verify_snake,
            tcp: self.tcp.clone(),
            tcp_use_tls: self.tcp_use_tls,
            udp: self.udp.clone(),
            grpc: self.grpc.clone(),
            grpc_use_tls: self.grpc_use_tls || self.grpc_use_tls_snake,
            h2ping: self.h2ping.clone(),
            h2ping_use_tls: self.h2ping_use_tls.unwrap_or(true)
                && self.h2ping_use_tls_snake.unwrap_or(true),
            os_service: self.os_service.clone(),
            alias_node: self.alias_node.clone(),
            alias_service: self.alias_service.clone(),
            script_args,
            docker_container_id: or_str(
                self.docker_container_id.clone(),
                self.docker_container_id_snake.clone(),
            ),
            shell: self.shell.clone(),
            ttl: Duration::from_nanos(self.ttl.0),
            interval: Duration::from_nanos(self.interval.0),
            timeout: Duration::from_nanos(self.timeout.0),
            deregister_critical_service_after: Duration::from_nanos(dcsa),
            output_max_size: self.output_max_size,
            success_before_passing: self.success_before_passing,
            failures_before_warning: self.failures_before_warning,
            failures_before_critical: self.failures_before_critical,
        }
    }

    /// The validated fields (`Invalid check: ...` when refused).
    pub(crate) fn validated_fields(&self) -> Result<CheckFields, String> {
        let f = self.fields();
        f.validate().map_err(|e| format!("Invalid check: {e}"))?;
        Ok(f)
    }

    fn is_empty(&self) -> bool {
        *self == CheckIn::default()
    }
}

/// `structs.ServiceDefinition`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[allow(dead_code)] // accepted for compatibility, not used
pub(crate) struct ServiceDefinition {
    kind: String,
    #[serde(rename = "ID")]
    id: String,
    name: String,
    tags: Vec<String>,
    address: String,
    tagged_addresses: BTreeMap<String, AddressJson>,
    #[serde(rename = "tagged_addresses")]
    tagged_addresses_snake: BTreeMap<String, AddressJson>,
    meta: BTreeMap<String, String>,
    port: u16,
    socket_path: String,
    check: Option<CheckIn>,
    checks: Vec<CheckIn>,
    weights: Option<WeightsJson>,
    token: String,
    enable_tag_override: bool,
    #[serde(rename = "enable_tag_override")]
    enable_tag_override_snake: bool,
    proxy: Option<Value>,
    connect: Option<Value>,
    namespace: String,
    partition: String,
    locality: Option<Value>,
}

/// Consul's `ValidateServiceMetadata` for typical services.
fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > 64 {
        return Err("Service metadata cannot contain more than 64 key/value pairs".into());
    }
    for (k, v) in meta {
        let why = if k.is_empty() {
            Some("Key cannot be blank".to_string())
        } else if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            Some("Key contains invalid characters".to_string())
        } else if k.len() > 128 {
            Some("Key is too long (limit: 128 characters)".to_string())
        } else if k.starts_with("consul-") {
            Some("Key prefix 'consul-' is reserved for internal use".to_string())
        } else if v.len() > 512 {
            Some("Value is too long (limit: 512 characters)".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(format!("Couldn't load metadata pair ('{k}', '{v}'): {why}"));
        }
    }
    Ok(())
}

/// Consul fills `lan_ipv4`/`wan_ipv4` (or `_ipv6`) tagged addresses from a
/// service's own address unless they were given.
fn default_tagged_addresses(
    address: &str,
    port: u16,
    tagged: &mut BTreeMap<String, ServiceAddress>,
) {
    let Ok(ip) = address.parse::<std::net::IpAddr>() else {
        return;
    };
    let (lan, wan) = if ip.is_ipv4() {
        ("lan_ipv4", "wan_ipv4")
    } else {
        ("lan_ipv6", "wan_ipv6")
    };
    for k in [lan, wan] {
        tagged
            .entry(k.to_string())
            .or_insert_with(|| ServiceAddress {
                address: address.to_string(),
                port,
            });
    }
}

impl ServiceDefinition {
    /// `Check` (unless empty) and then `Checks`, as Consul registers them.
    pub(crate) fn check_ins(&self) -> Vec<&CheckIn> {
        let mut check_ins: Vec<&CheckIn> = Vec::new();
        if let Some(c) = self.check.as_ref().filter(|c| !c.is_empty()) {
            check_ins.push(c);
        }
        check_ins.extend(self.checks.iter());
        check_ins
    }
}

impl ServiceDefinition {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The service and its checks this definition registers, with
    /// Consul's defaults (ID from the name, check IDs `service:<id>[:n]`,
    /// check names `Service '<name>' check`), and whether any check runs
    /// commands. Refusals carry the text of Consul's 400 answers. The node
    /// is left for the agent to fill in. Shared by the HTTP API and
    /// service definitions in config files.
    pub(crate) fn to_registration(&self) -> Result<(Service, Vec<Check>, bool), String> {
        if self.name.is_empty() {
            return Err("Missing service name".into());
        }
        if is_any_addr(&self.address) {
            return Err("Invalid service address".into());
        }
        let weights = self.weights()?;
        validate_meta(&self.meta).map_err(|e| format!("Invalid Service Meta: {e}"))?;
        let check_ins = self.check_ins();
        let fields = check_ins
            .iter()
            .map(|c| c.validated_fields())
            .collect::<Result<Vec<_>, _>>()?;
        for c in &check_ins {
            if !c.status.is_empty() && HealthStatus::parse(&c.status).is_none() {
                return Err("Status for checks must 'passing', 'warning', 'critical'".into());
            }
        }
        let runs_commands = fields.iter().any(CheckFields::runs_commands);
        let id = or_str(self.id.clone(), self.name.clone());
        let service = Service {
            node: String::new(),
            id: id.clone(),
            name: self.name.clone(),
            tags: self.tags.clone(),
            address: self.address.clone(),
            tagged_addresses: self.tagged_addresses(),
            meta: self.meta.clone(),
            port: self.port,
            weights,
            enable_tag_override: self.enable_tag_override || self.enable_tag_override_snake,
            kind: self.kind.clone(),
            create_index: 0,
            modify_index: 0,
        };
        let many = check_ins.len() > 1;
        let checks = check_ins
            .iter()
            .zip(fields)
            .enumerate()
            .map(|(i, (c, fields))| {
                let mut check_id = or_str(c.check_id.clone(), c.id.clone());
                if check_id.is_empty() {
                    check_id = if many {
                        format!("service:{id}:{}", i + 1)
                    } else {
                        format!("service:{id}")
                    };
                }
                let name = if c.name.is_empty() {
                    format!("Service '{}' check", self.name)
                } else {
                    c.name.clone()
                };
                Check {
                    check_id,
                    name,
                    status: HealthStatus::parse(&c.status).unwrap_or(HealthStatus::Critical),
                    notes: c.notes.clone(),
                    service_id: id.clone(),
                    service_name: self.name.clone(),
                    service_tags: self.tags.clone(),
                    definition: fields.into_definition(),
                    ..Check::default()
                }
            })
            .collect();
        Ok((service, checks, runs_commands))
    }

    fn weights(&self) -> Result<Weights, String> {
        let Some(w) = self.weights else {
            return Ok(Weights::default());
        };
        if w.passing < 1 {
            return Err("Invalid Weights: Passing must be greater than 0".into());
        }
        if w.warning < 0 {
            return Err("Invalid Weights: Warning must be greater or equal than 0".into());
        }
        Ok(Weights {
            passing: w.passing.min(u32::MAX as i64) as u32,
            warning: w.warning.min(u32::MAX as i64) as u32,
        })
    }

    /// `TaggedAddresses` (either spelling) with Consul's `lan_ipv4` and
    /// `wan_ipv4` defaults from the service's own address.
    fn tagged_addresses(&self) -> BTreeMap<String, ServiceAddress> {
        let given = if self.tagged_addresses.is_empty() {
            &self.tagged_addresses_snake
        } else {
            &self.tagged_addresses
        };
        let mut tagged: BTreeMap<String, ServiceAddress> = given
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    ServiceAddress {
                        address: v.address.clone(),
                        port: v.port,
                    },
                )
            })
            .collect();
        default_tagged_addresses(&self.address, self.port, &mut tagged);
        tagged
    }
}

/// `PUT /v1/agent/service/register[?replace-existing-checks]`.
pub async fn register_service(ctx: Ctx) -> ApiResult {
    let def: ServiceDefinition = decode_body(&ctx.body)?;
    let (service, checks, runs_commands) = def.to_registration().map_err(ApiError::bad)?;
    if runs_commands && !ctx.config.enable_script_checks {
        return Err(ApiError::Internal(
            crate::health::SCRIPTS_DISABLED_REMOTE.into(),
        ));
    }
    let replace = match ctx.query.get("replace-existing-checks") {
        None => false,
        Some(v) => v.is_empty() || parse_bool(v).unwrap_or(false),
    };
    // Consul's `vetServiceRegister`: write on the name registered, and on
    // the name of a service this one replaces under the same ID.
    let authz = ctx.authorizer().await?;
    require(&authz, Resource::Service, &service.name, Access::Write)?;
    if let Some(old) = ctx.agent.local_service(&service.id) {
        if old.name != service.name {
            require(&authz, Resource::Service, &old.name, Access::Write)?;
        }
    }
    ctx.agent.register_service(service, checks, replace).await?;
    Ok(empty_ok())
}

/// `PUT /v1/agent/service/deregister/<id>`: unknown IDs are a no-op.
pub async fn deregister_service(ctx: Ctx) -> ApiResult {
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing service ID"));
    }
    let authz = ctx.authorizer().await?;
    vet_service_update(&ctx, &authz, &ctx.rest)?;
    ctx.agent.deregister_service(&ctx.rest).await?;
    Ok(empty_ok())
}

/// Consul's `vetServiceUpdate`: `service:write` on the local service's
/// name. An unknown ID passes, to be answered as without ACLs.
fn vet_service_update(ctx: &Ctx, authz: &Authorizer, id: &str) -> Result<(), ApiError> {
    match ctx.agent.local_service(id) {
        Some(svc) => require(authz, Resource::Service, &svc.name, Access::Write),
        None => Ok(()),
    }
}

/// Consul's `vetCheckRegister`/`vetCheckUpdate`: a service's check needs
/// `service:write` on that service, a node check `node:write` on the
/// agent's node.
fn vet_check_write(ctx: &Ctx, authz: &Authorizer, service_id: &str) -> Result<(), ApiError> {
    if service_id.is_empty() {
        return require(authz, Resource::Node, ctx.agent.node_name(), Access::Write);
    }
    vet_service_update(ctx, authz, service_id)
}

/// The write vetting for an existing check; an unknown ID passes, to be
/// answered as without ACLs.
fn vet_check_update(ctx: &Ctx, authz: &Authorizer, check_id: &str) -> Result<(), ApiError> {
    match ctx.agent.local_check(check_id) {
        Some(c) => vet_check_write(ctx, authz, &c.service_id),
        None => Ok(()),
    }
}

/// Whether the token may see a local check (Consul's `filterChecks`).
fn check_visible(ctx: &Ctx, authz: &Authorizer, c: &Check) -> bool {
    if c.service_id.is_empty() {
        return authz.allows(Resource::Node, &c.node, Access::Read);
    }
    let name = match ctx.agent.local_service(&c.service_id) {
        Some(svc) => svc.name,
        None => c.service_name.clone(),
    };
    authz.allows(Resource::Service, &name, Access::Read)
}

/// `api.AgentService`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentServiceJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(rename = "ID")]
    id: String,
    service: String,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    port: u16,
    address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tagged_addresses: BTreeMap<String, AddressJson>,
    weights: WeightsJson,
    enable_tag_override: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    content_hash: String,
    datacenter: String,
}

fn agent_service(datacenter: &str, s: &Service) -> AgentServiceJson {
    AgentServiceJson {
        kind: s.kind.clone(),
        id: s.id.clone(),
        service: s.name.clone(),
        tags: s.tags.clone(),
        meta: s.meta.clone(),
        port: s.port,
        address: s.address.clone(),
        tagged_addresses: tagged_json(&s.tagged_addresses),
        weights: s.weights.into(),
        enable_tag_override: s.enable_tag_override,
        content_hash: String::new(),
        datacenter: datacenter.to_string(),
    }
}

/// `GET /v1/agent/services` => `{id: AgentService}`.
pub async fn services(ctx: Ctx) -> ApiResult {
    let expr = ctx.filter(crate::filter::Subject::AgentService)?;
    let authz = ctx.authorizer().await?;
    let mut services = ctx.agent.local_services();
    let before = services.len();
    services.retain(|s| authz.allows(Resource::Service, &s.name, Access::Read));
    let filtered = services.len() != before;
    let mut out: BTreeMap<String, AgentServiceJson> = services
        .iter()
        .map(|s| (s.id.clone(), agent_service(&ctx.config.datacenter, s)))
        .collect();
    expr.retain_values(&mut out);
    let mut resp = ctx.json(&out);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// A stable hash of what the endpoint returns, for `?hash` blocking.
fn content_hash(s: &AgentServiceJson) -> String {
    let bytes = serde_json::to_vec(s).unwrap_or_default();
    // FNV-1a: stable across processes, unlike `DefaultHasher`'s seed.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// `GET /v1/agent/service/<id>`, with hash blocking (`?hash=&wait=`).
pub async fn service(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let id = ctx.rest.clone();
    let want_change = ctx
        .query
        .get("hash")
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    let authz = ctx.authorizer().await?;
    let deadline = tokio::time::Instant::now() + opts.wait;
    let mut rx = ctx.catalog.subscribe();
    loop {
        rx.borrow_and_update();
        let Some(svc) = ctx.agent.local_service(&id) else {
            return Err(ApiError::NotFound(format!("unknown service ID: {id}")));
        };
        require(&authz, Resource::Service, &svc.name, Access::Read)?;
        let mut out = agent_service(&ctx.config.datacenter, &svc);
        let hash = content_hash(&out);
        out.content_hash = hash.clone();
        let done = want_change.as_deref() != Some(hash.as_str());
        let timed_out = !done
            && tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err();
        if done || timed_out {
            let mut resp = ctx.json(&out);
            if let Ok(v) = HeaderValue::from_str(&hash) {
                resp.headers_mut().insert("X-Consul-ContentHash", v);
            }
            return Ok(resp);
        }
    }
}

/// `GET /v1/agent/checks` => `{checkID: HealthCheck}`.
pub async fn checks(ctx: Ctx) -> ApiResult {
    // Consul creates this filter without a type: it is checked against
    // the checks only when there is one.
    let expr = crate::filter::DeferredFilter::new(ctx.query.get("filter"))?;
    let authz = ctx.authorizer().await?;
    let mut checks = ctx.agent.local_checks();
    let before = checks.len();
    if authz.enabled() {
        checks.retain(|c| check_visible(&ctx, &authz, c));
    }
    let filtered = checks.len() != before;
    let mut out: BTreeMap<String, HealthCheckJson> = checks
        .iter()
        .map(|c| (c.check_id.clone(), HealthCheckJson::from(c)))
        .collect();
    expr.retain_values(crate::filter::Subject::HealthCheck, &mut out)?;
    let mut resp = ctx.json(&out);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

impl CheckIn {
    /// The check a stand-alone definition registers (its ID defaults to
    /// its name), and whether it runs commands. Refusals carry the text of
    /// Consul's 400 answers. Shared by the HTTP API and check definitions
    /// in config files.
    pub(crate) fn to_check(&self) -> Result<(Check, bool), String> {
        if self.name.is_empty() {
            return Err("Missing check name".into());
        }
        if !self.status.is_empty() && HealthStatus::parse(&self.status).is_none() {
            return Err("Bad check status".into());
        }
        let fields = self.validated_fields()?;
        let runs_commands = fields.runs_commands();
        let check_id = or_str(
            or_str(self.id.clone(), self.check_id.clone()),
            self.name.clone(),
        );
        let check = Check {
            check_id,
            name: self.name.clone(),
            status: HealthStatus::parse(&self.status).unwrap_or(HealthStatus::Critical),
            notes: self.notes.clone(),
            service_id: or_str(self.service_id.clone(), self.service_id_snake.clone()),
            definition: fields.into_definition(),
            ..Check::default()
        };
        Ok((check, runs_commands))
    }
}

/// `PUT /v1/agent/check/register`.
pub async fn register_check(ctx: Ctx) -> ApiResult {
    let c: CheckIn = decode_body(&ctx.body)?;
    let (check, runs_commands) = c.to_check().map_err(ApiError::bad)?;
    if runs_commands && !ctx.config.enable_script_checks {
        return Err(ApiError::Internal(
            crate::health::SCRIPTS_DISABLED_REMOTE.into(),
        ));
    }
    let authz = ctx.authorizer().await?;
    vet_check_write(&ctx, &authz, &check.service_id)?;
    // Replacing a check of another service needs write on that one too.
    vet_check_update(&ctx, &authz, &check.check_id)?;
    ctx.agent.register_check(check).await?;
    Ok(empty_ok())
}

/// `PUT /v1/agent/check/deregister/<id>`.
pub async fn deregister_check(ctx: Ctx) -> ApiResult {
    let authz = ctx.authorizer().await?;
    vet_check_update(&ctx, &authz, &ctx.rest)?;
    ctx.agent.deregister_check(&ctx.rest).await?;
    Ok(empty_ok())
}

async fn ttl_update(ctx: Ctx, status: HealthStatus) -> ApiResult {
    let note = ctx.query.get("note").unwrap_or("").to_string();
    let authz = ctx.authorizer().await?;
    vet_check_update(&ctx, &authz, &ctx.rest)?;
    ctx.agent.update_ttl_check(&ctx.rest, status, note).await?;
    Ok(empty_ok())
}

/// `PUT /v1/agent/check/pass/<id>?note=`.
pub async fn check_pass(ctx: Ctx) -> ApiResult {
    ttl_update(ctx, HealthStatus::Passing).await
}

/// `PUT /v1/agent/check/warn/<id>?note=`.
pub async fn check_warn(ctx: Ctx) -> ApiResult {
    ttl_update(ctx, HealthStatus::Warning).await
}

/// `PUT /v1/agent/check/fail/<id>?note=`.
pub async fn check_fail(ctx: Ctx) -> ApiResult {
    ttl_update(ctx, HealthStatus::Critical).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct CheckUpdate {
    status: String,
    output: String,
}

/// `PUT /v1/agent/check/update/<id>` body `{Status, Output}`.
pub async fn check_update(ctx: Ctx) -> ApiResult {
    let u: CheckUpdate = decode_body(&ctx.body)?;
    let Some(status) = HealthStatus::parse(&u.status) else {
        return Err(ApiError::bad(format!(
            "Invalid check status: '{}'",
            u.status
        )));
    };
    let authz = ctx.authorizer().await?;
    vet_check_update(&ctx, &authz, &ctx.rest)?;
    ctx.agent
        .update_ttl_check(&ctx.rest, status, u.output)
        .await?;
    Ok(empty_ok())
}

/// Consul's `enable` parameter: required, `strconv.ParseBool`.
fn enable_param(ctx: &Ctx) -> Result<bool, ApiError> {
    let Some(raw) = ctx.query.get("enable") else {
        return Err(ApiError::bad("Missing value for enable"));
    };
    parse_bool(raw).ok_or_else(|| ApiError::bad(format!("Invalid value for enable: {raw:?}")))
}

/// `PUT /v1/agent/maintenance?enable=&reason=`.
pub async fn node_maintenance(ctx: Ctx) -> ApiResult {
    let enable = enable_param(&ctx)?;
    let reason = ctx.query.get("reason").map(str::to_string);
    let authz = ctx.authorizer().await?;
    require(&authz, Resource::Node, ctx.agent.node_name(), Access::Write)?;
    ctx.agent.set_node_maintenance(enable, reason).await?;
    Ok(empty_ok())
}

/// `PUT /v1/agent/service/maintenance/<id>?enable=&reason=`.
pub async fn service_maintenance(ctx: Ctx) -> ApiResult {
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing service ID"));
    }
    let enable = enable_param(&ctx)?;
    let reason = ctx.query.get("reason").map(str::to_string);
    let authz = ctx.authorizer().await?;
    vet_service_update(&ctx, &authz, &ctx.rest)?;
    ctx.agent
        .set_service_maintenance(&ctx.rest, enable, reason)
        .await?;
    Ok(empty_ok())
}

/// `PUT /v1/agent/leave`: answers, then shuts the agent down cleanly.
pub async fn leave(ctx: Ctx) -> ApiResult {
    require_agent(&ctx, Access::Write).await?;
    let agent = ctx.agent.clone();
    tokio::spawn(async move {
        // Let the response reach the client before the process winds down.
        tokio::time::sleep(Duration::from_millis(100)).await;
        agent.request_shutdown();
    });
    Ok(empty_ok())
}

/// `PUT /v1/agent/reload`: rereads the config files and applies their
/// service and check definitions. A configuration that does not build is
/// a 500 with the reason, and the running one stays.
pub async fn reload(ctx: Ctx) -> ApiResult {
    require_agent(&ctx, Access::Write).await?;
    ctx.agent.reload().await?;
    Ok(empty_ok())
}

/// `agent:<access>` on this agent's node name, which Consul requires for
/// `self`, `metrics`, `join`, `leave` and `reload`.
pub(crate) async fn require_agent(ctx: &Ctx, access: Access) -> Result<(), ApiError> {
    let authz = ctx.authorizer().await?;
    require(&authz, Resource::Agent, ctx.agent.node_name(), access)
}

fn stats(ctx: &Ctx, services: usize, checks: &[Check], raft: Option<RaftStats>) -> Value {
    let cfg = &ctx.config;
    let leader_addr = ctx.consensus.leader_watch().borrow().clone();
    let ttl_checks = checks.iter().filter(|c| c.definition.kind.is_ttl()).count();
    let s = |v: &dyn ToString| v.to_string();
    let serf = super::cluster::serf_counts(&ctx.gossip, &cfg.datacenter);
    let mut consul = json!({
        "acl": "disabled",
        "server": s(&cfg.server),
    });
    if cfg.server {
        consul["bootstrap"] = json!(s(&cfg.bootstrap));
        consul["known_datacenters"] = json!("1");
        consul["leader"] = json!(s(&ctx.consensus.is_leader()));
        consul["leader_addr"] = json!(leader_addr.unwrap_or_default());
    } else {
        // Consul's client agents report the servers they know instead.
        consul["known_servers"] = json!(s(&serf.3));
    }
    let mut out = json!({
        "agent": {
            "check_monitors": "0",
            "check_ttls": s(&ttl_checks),
            "checks": s(&checks.len()),
            "services": s(&services),
        },
        "build": {"prerelease": "", "revision": "", "version": VERSION, "version_metadata": ""},
        "consul": consul,
        "runtime": {
            "arch": std::env::consts::ARCH,
            "cpu_count": s(&std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
            "goroutines": "0",
            "max_procs": s(&std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
            "os": std::env::consts::OS,
            "version": "rust",
        },
        "serf_lan": {"members": s(&serf.0), "failed": s(&serf.1), "left": s(&serf.2), "health_score": "0", "encrypted": s(&ctx.gossip.encrypted())},
    });
    // Only servers have raft and the WAN pool.
    if let Some(r) = raft {
        out["raft"] = json!({
            "applied_index": s(&r.applied_index),
            "commit_index": s(&r.commit_index),
            "fsm_pending": "0",
            "last_contact": r.last_contact,
            "last_log_index": s(&r.last_log_index),
            "last_log_term": s(&r.term),
            "last_snapshot_index": s(&r.last_snapshot_index),
            "last_snapshot_term": s(&r.last_snapshot_term),
            "latest_configuration_index": s(&r.latest_configuration_index),
            "num_peers": s(&r.voters.saturating_sub(1)),
            "protocol_version": "3",
            "protocol_version_max": "3",
            "protocol_version_min": "0",
            "snapshot_version_max": "1",
            "snapshot_version_min": "0",
            "state": r.state,
            "term": s(&r.term),
        });
        out["serf_wan"] = json!({"members": "1", "failed": "0", "left": "0", "health_score": "0", "encrypted": s(&ctx.gossip.encrypted())});
    }
    out
}

/// `GET /v1/agent/self`.
pub async fn self_(ctx: Ctx) -> ApiResult {
    require_agent(&ctx, Access::Read).await?;
    let agent = &ctx.agent;
    let cfg = &ctx.config;
    let services = agent.local_services().len();
    let checks = agent.local_checks();
    let raft = ctx.consensus.raft_stats().await;
    let out = json!({
        "Config": {
            "Datacenter": cfg.datacenter,
            "PrimaryDatacenter": cfg.datacenter,
            "NodeName": agent.node_name(),
            "NodeID": agent.node_id(),
            "Revision": "",
            "Server": cfg.server,
            "Version": VERSION,
            "BuildDate": "",
        },
        "DebugConfig": {
            "Bootstrap": cfg.bootstrap,
            "BootstrapExpect": cfg.bootstrap_expect,
            "ClientAddrs": cfg.client_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "DataDir": agent.data_dir().display().to_string(),
            "Datacenter": cfg.datacenter,
            "DevMode": cfg.dev,
            "DNSDomain": cfg.domain,
            "DNSPort": cfg.ports.dns,
            "HTTPPort": cfg.ports.http,
            "NodeID": agent.node_id(),
            "NodeName": agent.node_name(),
            "ServerMode": cfg.server,
            "ServerPort": cfg.ports.server,
            "SerfPortLAN": cfg.ports.serf_lan,
            "SerfPortWAN": cfg.ports.serf_wan,
            "KVMaxValueSize": cfg.kv_max_value_size,
            "UIConfig": {"Enabled": cfg.ui},
            "Version": VERSION,
        },
        // The agent's LAN coordinate, as its gossip pings have shaped it.
        "Coord": ctx.gossip.coordinate(),
        "xDS": xds_self(cfg),
        "Member": super::cluster::self_member(&ctx),
        "Stats": stats(&ctx, services, &checks, raft),
        "Meta": agent.self_node().meta,
    });
    Ok(ctx.json(&out))
}

/// `xDS` of `/v1/agent/self` (Consul's `XDSSelf`): the gRPC ports as
/// configured, `Port` the TLS one when enabled, else the plaintext one.
/// cairn serves no xDS, so it lists no supported Envoy versions.
fn xds_self(cfg: &crate::config::Config) -> Value {
    // cairn has no gRPC TLS listener (`ports.grpc_tls` is accepted and unused).
    let tls = -1;
    let port = if tls > 0 { tls } else { cfg.ports.grpc };
    json!({
        "SupportedProxies": {"envoy": []},
        "Port": port,
        "Ports": {"Plaintext": cfg.ports.grpc, "TLS": tls},
    })
}

/// `GET /v1/agent/version`.
pub async fn version(ctx: Ctx) -> ApiResult {
    Ok(ctx.json(&json!({"SHA": "", "BuildDate": "", "HumanVersion": VERSION, "FIPS": ""})))
}

/// `GET /v1/agent/host`: a minimal host report.
pub async fn host(ctx: Ctx) -> ApiResult {
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Operator, Access::Read)?;
    let hostname = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(ctx.json(&json!({
        "Host": {"hostname": hostname, "os": std::env::consts::OS, "platform": std::env::consts::OS, "uptime": ctx.agent.uptime().as_secs()},
        "CPU": [],
        "Memory": {},
        "Disk": {},
        "CollectionTime": now as u64,
        "Errors": null,
    })))
}

/// Status of a local service for the agent health endpoints: maintenance
/// wins, then the worst check (node checks included).
fn local_service_health(
    svc: &Service,
    checks: &[Check],
) -> (StatusCode, &'static str, Vec<HealthCheckJson>) {
    let mine: Vec<&Check> = checks
        .iter()
        .filter(|c| c.service_id.is_empty() || c.service_id == svc.id)
        .collect();
    let maint = mine.iter().any(|c| {
        c.check_id == NODE_MAINT_CHECK_ID || c.check_id.starts_with(SERVICE_MAINT_CHECK_PREFIX)
    });
    let worst = HealthStatus::aggregate(mine.iter().map(|c| &c.status));
    let json = mine.iter().map(|c| HealthCheckJson::from(*c)).collect();
    if maint {
        return (StatusCode::SERVICE_UNAVAILABLE, "maintenance", json);
    }
    match worst {
        HealthStatus::Passing => (StatusCode::OK, "passing", json),
        HealthStatus::Warning => (StatusCode::TOO_MANY_REQUESTS, "warning", json),
        HealthStatus::Critical => (StatusCode::SERVICE_UNAVAILABLE, "critical", json),
    }
}

fn wants_text(ctx: &Ctx) -> bool {
    ctx.query.get("format") == Some("text")
        || ctx
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("text/plain"))
}

fn with_status(mut resp: Response, code: StatusCode) -> Response {
    *resp.status_mut() = code;
    resp
}

fn text(code: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// `GET /v1/agent/health/service/id/<id>`: the HTTP status is the health.
pub async fn health_service_by_id(ctx: Ctx) -> ApiResult {
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing serviceID"));
    }
    let authz = ctx.authorizer().await?;
    let checks = ctx.agent.local_checks();
    let Some(svc) = ctx.agent.local_service(&ctx.rest) else {
        let reason = format!("ServiceId {} not found", ctx.rest);
        if wants_text(&ctx) {
            return Ok(text(StatusCode::NOT_FOUND, reason));
        }
        let body = json!({"AggregatedStatus": "critical", "Service": null, "Checks": null});
        return Ok(with_status(ctx.json(&body), StatusCode::NOT_FOUND));
    };
    require(&authz, Resource::Service, &svc.name, Access::Read)?;
    let (code, status, checks) = local_service_health(&svc, &checks);
    if wants_text(&ctx) {
        return Ok(text(code, status.to_string()));
    }
    let body = json!({"AggregatedStatus": status, "Service": agent_service(&ctx.config.datacenter, &svc), "Checks": checks});
    Ok(with_status(ctx.json(&body), code))
}

/// `GET /v1/agent/health/service/name/<name>`: worst status over instances.
pub async fn health_service_by_name(ctx: Ctx) -> ApiResult {
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing service Name"));
    }
    let authz = ctx.authorizer().await?;
    require(&authz, Resource::Service, &ctx.rest, Access::Read)?;
    let checks = ctx.agent.local_checks();
    let mut code = StatusCode::NOT_FOUND;
    let mut status = format!("ServiceName {} Not Found", ctx.rest);
    let mut out = Vec::new();
    let rank = |c: StatusCode| match c.as_u16() {
        200 => 0,
        429 => 1,
        _ => 2,
    };
    for svc in ctx
        .agent
        .local_services()
        .iter()
        .filter(|s| s.name == ctx.rest)
    {
        let (c, s, json_checks) = local_service_health(svc, &checks);
        if code == StatusCode::NOT_FOUND || rank(c) > rank(code) {
            code = c;
            status = s.to_string();
        }
        out.push(json!({"AggregatedStatus": s, "Service": agent_service(&ctx.config.datacenter, svc), "Checks": json_checks}));
    }
    if wants_text(&ctx) {
        return Ok(text(code, status));
    }
    Ok(with_status(ctx.json(&out), code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::{CheckDefinition, CheckKind, HttpCheck};
    use crate::http::decode::decode;

    /// A check body as `/v1/agent/check/register` reads it.
    fn parse(body: Value) -> Result<CheckDefinition, String> {
        let c: CheckIn = decode(body.to_string().as_bytes()).map_err(|e| e.to_string())?;
        c.validated_fields().map(CheckFields::into_definition)
    }

    fn kind(body: Value) -> CheckKind {
        parse(body).expect("valid check").kind
    }

    #[test]
    fn every_type_parses_to_its_kind() {
        assert_eq!(
            kind(json!({"Name": "t", "TTL": "30s"})),
            CheckKind::Ttl {
                ttl: Duration::from_secs(30)
            }
        );
        assert_eq!(
            kind(json!({
                "HTTP": "https://web/health", "Method": "POST", "Body": "{}",
                "Header": {"X-A": ["1", "2"]}, "DisableRedirects": true,
                "TLSServerName": "web.internal", "TLSSkipVerify": true, "Interval": "10s"
            })),
            CheckKind::Http(HttpCheck {
                url: "https://web/health".into(),
                method: "POST".into(),
                header: [("X-A".to_string(), vec!["1".to_string(), "2".to_string()])].into(),
                body: "{}".into(),
                disable_redirects: true,
                tls_server_name: "web.internal".into(),
                tls_skip_verify: true,
            })
        );
        assert_eq!(
            kind(json!({"TCP": "db:5432", "TCPUseTLS": true, "Interval": "5s"})),
            CheckKind::Tcp {
                address: "db:5432".into(),
                use_tls: true,
                tls_server_name: String::new(),
                tls_skip_verify: false,
            }
        );
        assert_eq!(
            kind(json!({"UDP": "dns:53", "Interval": "5s"})),
            CheckKind::Udp {
                address: "dns:53".into()
            }
        );
        assert_eq!(
            kind(json!({"GRPC": "rpc:9000/svc", "GRPCUseTLS": true, "Interval": "5s"})),
            CheckKind::Grpc {
                target: "rpc:9000/svc".into(),
                use_tls: true,
                tls_server_name: String::new(),
                tls_skip_verify: false,
            }
        );
        assert_eq!(
            kind(json!({"H2PING": "h2:443", "H2PingUseTLS": true, "Interval": "5s"})),
            CheckKind::H2ping {
                address: "h2:443".into(),
                use_tls: true,
                tls_server_name: String::new(),
                tls_skip_verify: false,
            }
        );
        for (body, use_tls) in [
            (json!({"H2PING": "h2:443", "Interval": "5s"}), true),
            (
                json!({"H2PING": "h2:443", "Interval": "5s", "H2PingUseTLS": false}),
                false,
            ),
            (
                json!({"H2PING": "h2:443", "Interval": "5s", "h2ping_use_tls": false}),
                false,
            ),
        ] {
            assert_eq!(
                kind(body.clone()),
                CheckKind::H2ping {
                    address: "h2:443".into(),
                    use_tls,
                    tls_server_name: String::new(),
                    tls_skip_verify: false,
                },
                "{body}: H2PING uses TLS unless told not to"
            );
        }
        assert_eq!(
            kind(json!({"Args": ["/bin/check", "-q"], "Interval": "5s"})),
            CheckKind::Script {
                args: vec!["/bin/check".into(), "-q".into()]
            }
        );
        assert_eq!(
            kind(
                json!({"DockerContainerID": "f00", "Shell": "/bin/sh", "Args": ["ok"], "Interval": "5s"})
            ),
            CheckKind::Docker {
                container_id: "f00".into(),
                shell: "/bin/sh".into(),
                args: vec!["ok".into()],
            }
        );
        assert_eq!(
            kind(json!({"OSService": "sshd", "Interval": "5s"})),
            CheckKind::OsService {
                service: "sshd".into()
            }
        );
        assert_eq!(
            kind(json!({"AliasNode": "n2", "AliasService": "web"})),
            CheckKind::Alias {
                node: "n2".into(),
                service: "web".into()
            }
        );
    }

    #[test]
    fn snake_case_and_lowercase_spellings_fill_the_same_kinds() {
        assert_eq!(
            kind(
                json!({"grpc": "rpc:9000", "grpc_use_tls": true, "tls_server_name": "rpc",
                        "tls_skip_verify": true, "interval": "5s"})
            ),
            CheckKind::Grpc {
                target: "rpc:9000".into(),
                use_tls: true,
                tls_server_name: "rpc".into(),
                tls_skip_verify: true,
            }
        );
        assert_eq!(
            kind(json!({"docker_container_id": "f00", "script_args": ["ok"], "interval": "5s"})),
            CheckKind::Docker {
                container_id: "f00".into(),
                shell: String::new(),
                args: vec!["ok".into()],
            }
        );
        assert_eq!(
            kind(json!({"h2ping": "h2:443", "h2ping_use_tls": true, "interval": "5s"})),
            CheckKind::H2ping {
                address: "h2:443".into(),
                use_tls: true,
                tls_server_name: String::new(),
                tls_skip_verify: false,
            }
        );
        let d = parse(
            json!({"http": "http://x", "disable_redirects": true, "interval": 5_000_000_000u64,
                             "deregister_critical_service_after": "1m", "timeout": "2s"}),
        )
        .expect("valid");
        assert!(matches!(d.kind, CheckKind::Http(ref h) if h.disable_redirects));
        assert_eq!(d.interval, Duration::from_secs(5));
        assert_eq!(d.timeout, Duration::from_secs(2));
        assert_eq!(d.deregister_critical_service_after, Duration::from_secs(60));
    }

    #[test]
    fn two_types_in_one_definition() {
        // Consul accepts it; the type that comes first in its order wins.
        let d = parse(json!({"HTTP": "http://x", "TCP": "x:80", "Interval": "5s"})).expect("valid");
        assert_eq!(d.kind.type_name(), "http");
        let d = parse(json!({"TCP": "x:80", "GRPC": "x:81", "Interval": "5s"})).expect("valid");
        assert_eq!(d.kind.type_name(), "grpc");
        // And rejects what its validation rejects, whichever type wins.
        assert_eq!(
            parse(json!({"HTTP": "http://x", "AliasService": "web", "Interval": "5s"})),
            Err("Invalid check: Interval must not be set for Alias checks".into())
        );
        assert_eq!(
            parse(json!({"GRPC": "x:81", "TTL": "5s"})),
            Err(
                "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or gRPC checks"
                    .into()
            )
        );
        assert_eq!(
            parse(json!({"Name": "nothing"})),
            Err("Invalid check: TTL must be > 0 for TTL checks".into())
        );
    }
}
