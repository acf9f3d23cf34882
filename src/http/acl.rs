//! `/v1/acl/*`: tokens, policies, roles and bootstrap, in Consul's JSON
//! and with its errors [agent/acl_endpoint.go, agent/consul/acl_endpoint.go].
//! Writes go through raft like every other write; reads come from the
//! server's replica.

use super::blocking::{self, Watch};
use super::decode::decode;
use super::wire::{set_meta, ApiError, ApiResult, Consistency, Ctx};
use crate::acl::types::{
    id_key, Identities, Link, NodeIdentity, Policy, Role, ServiceIdentity, TemplatedPolicy, Token,
    ANONYMOUS_ACCESSOR, MANAGEMENT_POLICY_ID, RESERVED_PREFIX,
};
use crate::acl::{Access, Authorizer, Global};
use crate::catalog::acl::AclOp;
use crate::catalog::command::{Command, Response as CmdResponse};
use crate::catalog::query::Reader;
use axum::http::{Method, StatusCode};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Consul's bounds on a token's lifetime (`acl_token_min/max_expiration_ttl`).
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

fn disabled() -> ApiError {
    ApiError::Status(StatusCode::UNAUTHORIZED, "ACL support disabled".into())
}

/// The caller's authorizer, with ACLs required to be on.
async fn caller(ctx: &Ctx) -> Result<Authorizer, ApiError> {
    if !ctx.acl.enabled() {
        return Err(disabled());
    }
    ctx.authorizer().await
}

async fn require(ctx: &Ctx, access: Access) -> Result<Authorizer, ApiError> {
    let authz = caller(ctx).await?;
    if !authz.allows_global(Global::Acl, access) {
        return Err(crate::acl::denied(
            &authz,
            &format!("acl:{}", access.word()),
            "",
        ));
    }
    Ok(authz)
}

/// In a secondary datacenter: policies, roles and global tokens are the
/// primary datacenter's, written there and replicated here
/// (`crate::acl::replication`), so a write of one is sent to the primary
/// as Consul's servers send the RPC. The answer is the primary's.
async fn in_primary(ctx: &Ctx) -> Option<ApiResult> {
    let primary = ctx.config.acl_primary()?;
    Some(super::datacenter::forward_to(ctx, primary).await)
}

/// Whether the token `accessor` names is a local token of this datacenter
/// (or, in the primary, any token): its writes are made here.
fn written_here(ctx: &Ctx, accessor: &str) -> Result<bool, ApiError> {
    if ctx.config.acl_primary().is_none() {
        return Ok(true);
    }
    let r = ctx.catalog.reader().map_err(store)?;
    let t = match r.acl_token(accessor).map_err(store)? {
        Some(t) => Some(t),
        None => r.acl_token_by_secret(accessor).map_err(store)?,
    };
    Ok(t.is_some_and(|t| t.local))
}

fn store(e: heed::Error) -> ApiError {
    ApiError::Internal(format!("state store: {e}"))
}

/// Proposes an ACL command; a rejection becomes `reject`'s error.
async fn write(
    ctx: &Ctx,
    op: AclOp,
    reject: impl FnOnce(String) -> ApiError,
) -> Result<u64, ApiError> {
    let (index, resp) = ctx.consensus.write(Command::Acl(op)).await?;
    match resp {
        CmdResponse::Rejected(m) => Err(reject(m)),
        _ => Ok(index),
    }
}

fn internal(m: String) -> ApiError {
    ApiError::Internal(m)
}

fn now_nanos() -> i64 {
    crate::acl::resolver::now_nanos()
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

// ---------------------------------------------------------------- JSON out

#[derive(Serialize)]
struct LinkOut {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceIdentityOut {
    service_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    datacenters: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeIdentityOut {
    node_name: String,
    datacenter: String,
}

#[derive(Serialize)]
struct TemplateVars {
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TemplatedOut {
    template_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_variables: Option<TemplateVars>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    datacenters: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TokenOut {
    /// Bootstrap answers carry the deprecated `ID` (= SecretID).
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    legacy_id: Option<String>,
    #[serde(rename = "AccessorID")]
    accessor_id: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
    description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policies: Vec<LinkOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<LinkOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    service_identities: Vec<ServiceIdentityOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    node_identities: Vec<NodeIdentityOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    templated_policies: Vec<TemplatedOut>,
    local: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_time: Option<String>,
    #[serde(rename = "ExpirationTTL", skip_serializing_if = "Option::is_none")]
    expiration_ttl: Option<String>,
    create_time: String,
    hash: String,
    create_index: u64,
    modify_index: u64,
}

struct Identified<'a>(&'a Identities);

impl Identified<'_> {
    fn service(&self) -> Vec<ServiceIdentityOut> {
        self.0
            .service
            .iter()
            .map(|s| ServiceIdentityOut {
                service_name: s.service_name.clone(),
                datacenters: s.datacenters.clone(),
            })
            .collect()
    }
    fn node(&self) -> Vec<NodeIdentityOut> {
        self.0
            .node
            .iter()
            .map(|n| NodeIdentityOut {
                node_name: n.node_name.clone(),
                datacenter: n.datacenter.clone(),
            })
            .collect()
    }
    fn templated(&self) -> Vec<TemplatedOut> {
        self.0
            .templated
            .iter()
            .map(|t| TemplatedOut {
                template_name: t.template_name.clone(),
                template_variables: t.name.clone().map(|name| TemplateVars { name }),
                datacenters: t.datacenters.clone(),
            })
            .collect()
    }
}

/// Links are stored by ID and shown with the current names; links to
/// deleted objects are dropped, as Consul does.
fn policy_links(r: &Reader<'_>, links: &[Link]) -> Result<Vec<LinkOut>, ApiError> {
    let mut out = Vec::new();
    for l in links {
        if let Some(p) = r.acl_policy(&l.id).map_err(store)? {
            out.push(LinkOut {
                id: p.id,
                name: p.name,
            });
        }
    }
    Ok(out)
}

fn role_links(r: &Reader<'_>, links: &[Link]) -> Result<Vec<LinkOut>, ApiError> {
    let mut out = Vec::new();
    for l in links {
        if let Some(p) = r.acl_role(&l.id).map_err(store)? {
            out.push(LinkOut {
                id: p.id,
                name: p.name,
            });
        }
    }
    Ok(out)
}

fn token_out(r: &Reader<'_>, t: &Token, show_secret: bool) -> Result<TokenOut, ApiError> {
    let ids = Identified(&t.identities);
    Ok(TokenOut {
        legacy_id: None,
        accessor_id: t.accessor_id.clone(),
        secret_id: if show_secret {
            t.secret_id.clone()
        } else {
            "<hidden>".into()
        },
        description: t.description.clone(),
        policies: policy_links(r, &t.policies)?,
        roles: role_links(r, &t.roles)?,
        service_identities: ids.service(),
        node_identities: ids.node(),
        templated_policies: ids.templated(),
        local: t.local,
        expiration_time: t.expiration_time.map(rfc3339),
        expiration_ttl: (t.expiration_ttl > 0)
            .then(|| crate::duration::format(Duration::from_nanos(t.expiration_ttl))),
        create_time: rfc3339(t.create_time),
        hash: base64::engine::general_purpose::STANDARD.encode(&t.hash),
        create_index: t.create_index,
        modify_index: t.modify_index,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyOut {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    rules: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    datacenters: Vec<String>,
    hash: String,
    create_index: u64,
    modify_index: u64,
}

fn policy_out(p: &Policy) -> PolicyOut {
    PolicyOut {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        rules: p.rules.clone(),
        datacenters: p.datacenters.clone(),
        hash: base64::engine::general_purpose::STANDARD.encode(&p.hash),
        create_index: p.create_index,
        modify_index: p.modify_index,
    }
}

/// List stubs: `Datacenters` is not omitted (Go `null`) and there are no rules.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyStub {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    datacenters: Option<Vec<String>>,
    hash: String,
    create_index: u64,
    modify_index: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RoleOut {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policies: Vec<LinkOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    service_identities: Vec<ServiceIdentityOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    node_identities: Vec<NodeIdentityOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    templated_policies: Vec<TemplatedOut>,
    hash: String,
    create_index: u64,
    modify_index: u64,
}

fn role_out(r: &Reader<'_>, role: &Role) -> Result<RoleOut, ApiError> {
    let ids = Identified(&role.identities);
    Ok(RoleOut {
        id: role.id.clone(),
        name: role.name.clone(),
        description: role.description.clone(),
        policies: policy_links(r, &role.policies)?,
        service_identities: ids.service(),
        node_identities: ids.node(),
        templated_policies: ids.templated(),
        hash: base64::engine::general_purpose::STANDARD.encode(&role.hash),
        create_index: role.create_index,
        modify_index: role.modify_index,
    })
}

// ----------------------------------------------------------------- JSON in

#[derive(Deserialize, Default)]
#[serde(default)]
struct LinkIn {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct ServiceIdentityIn {
    service_name: String,
    datacenters: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct NodeIdentityIn {
    node_name: String,
    datacenter: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TemplateVarsIn {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TemplatedIn {
    template_name: String,
    template_variables: Option<TemplateVarsIn>,
    datacenters: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct IdentitiesIn {
    service_identities: Vec<ServiceIdentityIn>,
    node_identities: Vec<NodeIdentityIn>,
    templated_policies: Vec<TemplatedIn>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TokenIn {
    #[serde(rename = "AccessorID")]
    accessor_id: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
    description: String,
    policies: Vec<LinkIn>,
    roles: Vec<LinkIn>,
    service_identities: Vec<ServiceIdentityIn>,
    node_identities: Vec<NodeIdentityIn>,
    templated_policies: Vec<TemplatedIn>,
    local: bool,
    expiration_time: Option<String>,
    #[serde(rename = "ExpirationTTL")]
    expiration_ttl: Option<Value>,
    // Read-only fields a client may echo back.
    create_time: Option<Value>,
    hash: Option<Value>,
    create_index: Option<Value>,
    modify_index: Option<Value>,
    auth_method: Option<Value>,
    namespace: Option<Value>,
    partition: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct PolicyIn {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    rules: String,
    datacenters: Vec<String>,
    hash: Option<Value>,
    create_index: Option<Value>,
    modify_index: Option<Value>,
    namespace: Option<Value>,
    partition: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct RoleIn {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    policies: Vec<LinkIn>,
    service_identities: Vec<ServiceIdentityIn>,
    node_identities: Vec<NodeIdentityIn>,
    templated_policies: Vec<TemplatedIn>,
    hash: Option<Value>,
    create_index: Option<Value>,
    modify_index: Option<Value>,
    namespace: Option<Value>,
    partition: Option<Value>,
}

fn decode_as<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    decode(body).map_err(|e| ApiError::bad(format!("{what} decoding failed: {e}")))
}

fn valid_identity_name(n: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$").expect("regex"))
        .is_match(n)
        && n.len() <= 256
}

/// Identities from a token or role body, checked as Consul checks them.
fn identities(i: IdentitiesIn, local: bool, on: &str) -> Result<Identities, ApiError> {
    let mut out = Identities::default();
    for s in i.service_identities {
        if s.service_name.is_empty() {
            return Err(internal(format!(
                "Service identity is missing the service name field on this {on}"
            )));
        }
        if !valid_identity_name(&s.service_name) {
            return Err(internal(format!(
                "Service identity {:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
                s.service_name
            )));
        }
        if local && !s.datacenters.is_empty() {
            return Err(internal(format!(
                "Service identity {:?} cannot specify a list of datacenters on a local token",
                s.service_name
            )));
        }
        if !out.service.iter().any(|o| o.service_name == s.service_name) {
            out.service.push(ServiceIdentity {
                service_name: s.service_name,
                datacenters: s.datacenters,
            });
        }
    }
    for n in i.node_identities {
        if n.node_name.is_empty() {
            return Err(internal(format!(
                "Node identity is missing the node name field on this {on}"
            )));
        }
        if n.datacenter.is_empty() {
            return Err(internal(format!(
                "Node identity is missing the datacenter field on this {on}"
            )));
        }
        out.node.push(NodeIdentity {
            node_name: n.node_name,
            datacenter: n.datacenter,
        });
    }
    for t in i.templated_policies {
        match t.template_name.as_str() {
            "builtin/service" | "builtin/node" => {}
            other => {
                return Err(internal(format!(
                    "no such ACL templated policy with name {other:?}"
                )))
            }
        }
        let name = t.template_variables.map(|v| v.name);
        if name.as_deref().is_none_or(str::is_empty) {
            return Err(internal(format!(
                "Failed to validate templated policy variables for {:?}: name is required",
                t.template_name
            )));
        }
        out.templated.push(TemplatedPolicy {
            template_name: t.template_name,
            name,
            datacenters: t.datacenters,
        });
    }
    Ok(out)
}

/// Resolves policy links given by ID or name (deduplicated).
fn resolve_policy_links(r: &Reader<'_>, links: Vec<LinkIn>) -> Result<Vec<Link>, ApiError> {
    let mut out: Vec<Link> = Vec::new();
    for l in links {
        let p = if !l.id.is_empty() {
            r.acl_policy(&l.id)
                .map_err(store)?
                .ok_or_else(|| internal(format!("No such ACL policy with ID {:?}", l.id)))?
        } else {
            r.acl_policy_named(&l.name)
                .map_err(store)?
                .ok_or_else(|| internal(format!("No such ACL policy with name {:?}", l.name)))?
        };
        if !out.iter().any(|o| id_key(&o.id) == id_key(&p.id)) {
            out.push(Link {
                id: p.id,
                name: String::new(),
            });
        }
    }
    Ok(out)
}

fn resolve_role_links(r: &Reader<'_>, links: Vec<LinkIn>) -> Result<Vec<Link>, ApiError> {
    let mut out: Vec<Link> = Vec::new();
    for l in links {
        let p = if !l.id.is_empty() {
            r.acl_role(&l.id)
                .map_err(store)?
                .ok_or_else(|| internal(format!("No such ACL role with ID {:?}", l.id)))?
        } else {
            r.acl_role_named(&l.name)
                .map_err(store)?
                .ok_or_else(|| internal(format!("No such ACL role with name {:?}", l.name)))?
        };
        if !out.iter().any(|o| id_key(&o.id) == id_key(&p.id)) {
            out.push(Link {
                id: p.id,
                name: String::new(),
            });
        }
    }
    Ok(out)
}

fn parse_ttl(v: &Value) -> Result<Duration, ApiError> {
    match v {
        Value::String(s) => crate::duration::parse(s)
            .map_err(|e| ApiError::bad(format!("Token decoding failed: {e}"))),
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_nanos)
            .ok_or_else(|| ApiError::bad("Token decoding failed: invalid ExpirationTTL")),
        _ => Err(ApiError::bad(
            "Token decoding failed: invalid ExpirationTTL",
        )),
    }
}

// -------------------------------------------------------------- bootstrap

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct BootstrapIn {
    bootstrap_secret: String,
}

/// `PUT /v1/acl/bootstrap`: the first management token, once.
pub async fn bootstrap(ctx: Ctx) -> ApiResult {
    // A secondary datacenter's ACLs come from the primary, which is the
    // only one that bootstraps (Consul answers `ACL support disabled`).
    if !ctx.acl.enabled() || ctx.config.acl_primary().is_some() {
        return Err(disabled());
    }
    let body: BootstrapIn = decode_as(&ctx.body, "Bootstrap")?;
    let secret = if body.bootstrap_secret.is_empty() {
        new_uuid()
    } else if !is_uuid(&body.bootstrap_secret) {
        return Err(internal(
            "Invalid Token: SecretID is not a valid UUID".into(),
        ));
    } else {
        body.bootstrap_secret
    };
    let token = Token {
        accessor_id: new_uuid(),
        secret_id: secret,
        description: "Bootstrap Token (Global Management)".into(),
        policies: vec![Link {
            id: MANAGEMENT_POLICY_ID.into(),
            name: String::new(),
        }],
        create_time: now_nanos(),
        ..Token::default()
    };
    let accessor = token.accessor_id.clone();
    write(&ctx, AclOp::Bootstrap(token), |m| {
        if m.starts_with("ACL bootstrap no longer allowed") {
            ApiError::Status(StatusCode::FORBIDDEN, format!("Permission denied: {m}"))
        } else {
            internal(m)
        }
    })
    .await?;
    let r = ctx.catalog.reader().map_err(store)?;
    let t = r
        .acl_token(&accessor)
        .map_err(store)?
        .ok_or_else(|| internal("ACL not found".into()))?;
    let mut out = token_out(&r, &t, true)?;
    out.legacy_id = Some(t.secret_id.clone());
    Ok(ctx.json(&out))
}

// ------------------------------------------------------------------ tokens

/// `PUT /v1/acl/token`: create.
pub async fn token_create(ctx: Ctx) -> ApiResult {
    require(&ctx, Access::Write).await?;
    let body: TokenIn = decode_as(&ctx.body, "Token")?;
    if !body.local {
        if let Some(reply) = in_primary(&ctx).await {
            return reply;
        }
    }
    token_write(&ctx, body, None).await
}

/// `/v1/acl/token/<accessor>`, `/self`, `/<accessor>/clone`.
pub async fn token_item(ctx: Ctx) -> ApiResult {
    let rest = ctx.rest.clone();
    if rest == "self" && ctx.method == Method::GET {
        return token_self(ctx).await;
    }
    if let Some(id) = rest.strip_suffix("/clone") {
        if ctx.method != Method::PUT {
            return Err(ApiError::MethodNotAllowed {
                method: ctx.method.to_string(),
                allow: "OPTIONS,PUT".into(),
            });
        }
        return token_clone(&ctx, id).await;
    }
    if rest.is_empty() {
        return Err(ApiError::bad("Missing token AccessorID"));
    }
    match ctx.method {
        Method::GET => token_read(&ctx, &rest).await,
        Method::PUT => {
            require(&ctx, Access::Write).await?;
            let body: TokenIn = decode_as(&ctx.body, "Token")?;
            if !body.accessor_id.is_empty() && id_key(&body.accessor_id) != id_key(&rest) {
                return Err(ApiError::bad(
                    "Token Accessor ID in URL and payload do not match",
                ));
            }
            if !written_here(&ctx, &rest)? && !body.local {
                if let Some(reply) = in_primary(&ctx).await {
                    return reply;
                }
            }
            token_write(&ctx, body, Some(rest)).await
        }
        _ => token_delete(&ctx, &rest).await,
    }
}

async fn token_read(ctx: &Ctx, accessor: &str) -> ApiResult {
    let authz = require(ctx, Access::Read).await?;
    let r = ctx.catalog.reader().map_err(store)?;
    let t = match r.acl_token(accessor).map_err(store)? {
        Some(t) if !t.expired_at(now_nanos()) => t,
        _ => return Err(crate::acl::not_found()),
    };
    let out = token_out(&r, &t, authz.allows_global(Global::Acl, Access::Write))?;
    let index = r.index(&[crate::store::Table::Acl]).map_err(store)?;
    let mut resp = ctx.json(&out);
    set_meta(&mut resp, ctx, index, Consistency::Leader);
    Ok(resp)
}

async fn token_self(ctx: Ctx) -> ApiResult {
    caller(&ctx).await?;
    let secret = ctx
        .token()
        .map(str::to_string)
        .unwrap_or_else(|| ctx.acl.default_secret());
    let r = ctx.catalog.reader().map_err(store)?;
    let t = match r.acl_token_by_secret(&secret).map_err(store)? {
        Some(t) if !t.expired_at(now_nanos()) => t,
        _ => return Err(crate::acl::not_found()),
    };
    Ok(ctx.json(&token_out(&r, &t, true)?))
}

async fn token_write(ctx: &Ctx, body: TokenIn, update: Option<String>) -> ApiResult {
    let r = ctx.catalog.reader().map_err(store)?;
    let existing = match &update {
        Some(acc) => {
            if !is_uuid(acc) {
                return Err(internal("AccessorID is not a valid UUID".into()));
            }
            Some(
                r.acl_token(acc)
                    .map_err(store)?
                    .ok_or_else(|| internal(format!("Cannot find token {acc:?}")))?,
            )
        }
        None => None,
    };
    let mut token = Token::default();
    match &existing {
        None => {
            token.accessor_id = if body.accessor_id.is_empty() {
                new_uuid()
            } else {
                check_user_id(&body.accessor_id, "AccessorID")?;
                body.accessor_id.clone()
            };
            token.secret_id = if body.secret_id.is_empty() {
                new_uuid()
            } else {
                check_user_id(&body.secret_id, "SecretID")?;
                body.secret_id.clone()
            };
            token.create_time = now_nanos();
            if body.expiration_ttl.is_some() && body.expiration_time.is_some() {
                return Err(internal(
                    "Token Expiration TTL and Expiration Time cannot both be set".into(),
                ));
            }
            if let Some(v) = &body.expiration_ttl {
                let ttl = parse_ttl(v)?;
                if !ttl.is_zero() {
                    if ttl < MIN_TTL || ttl > MAX_TTL {
                        return Err(internal(format!(
                            "Token Expiration TTL '{}' should be between {} and {}",
                            crate::duration::format(ttl),
                            crate::duration::format(MIN_TTL),
                            crate::duration::format(MAX_TTL)
                        )));
                    }
                    token.expiration_ttl = ttl.as_nanos() as u64;
                    token.expiration_time = Some(token.create_time + ttl.as_nanos() as i64);
                }
            }
            if let Some(at) = &body.expiration_time {
                let at = chrono::DateTime::parse_from_rfc3339(at)
                    .map_err(|e| ApiError::bad(format!("Token decoding failed: {e}")))?;
                let nanos = at.timestamp_nanos_opt().unwrap_or(i64::MAX);
                if nanos <= token.create_time {
                    return Err(internal(
                        "ExpirationTime cannot be before CreateTime".into(),
                    ));
                }
                token.expiration_time = Some(nanos);
            }
            token.local = body.local;
        }
        Some(old) => {
            if !body.secret_id.is_empty() && body.secret_id != old.secret_id {
                return Err(internal(
                    "Changing a tokens SecretID is not permitted".into(),
                ));
            }
            if body.local != old.local {
                return Err(internal(format!(
                    "cannot toggle local mode of {}",
                    old.accessor_id
                )));
            }
            token = old.clone();
        }
    }
    token.description = body.description;
    token.policies = resolve_policy_links(&r, body.policies)?;
    token.roles = resolve_role_links(&r, body.roles)?;
    token.identities = identities(
        IdentitiesIn {
            service_identities: body.service_identities,
            node_identities: body.node_identities,
            templated_policies: body.templated_policies,
        },
        token.local,
        "token",
    )?;
    drop(r);
    let accessor = token.accessor_id.clone();
    write(
        ctx,
        AclOp::TokenSet {
            token,
            create: existing.is_none(),
        },
        internal,
    )
    .await?;
    let r = ctx.catalog.reader().map_err(store)?;
    let t = r
        .acl_token(&accessor)
        .map_err(store)?
        .ok_or_else(crate::acl::not_found)?;
    Ok(ctx.json(&token_out(&r, &t, true)?))
}

/// User-chosen IDs must be UUIDs outside Consul's reserved range.
fn check_user_id(id: &str, field: &str) -> Result<(), ApiError> {
    if !is_uuid(id) {
        return Err(internal(format!(
            "Invalid Token: {field} is not a valid UUID"
        )));
    }
    if id_key(id).starts_with(RESERVED_PREFIX) {
        return Err(internal(format!(
            "Invalid Token: UUIDs with the prefix {RESERVED_PREFIX:?} are reserved"
        )));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct CloneIn {
    description: String,
}

async fn token_clone(ctx: &Ctx, accessor: &str) -> ApiResult {
    require(ctx, Access::Write).await?;
    if !written_here(ctx, accessor)? {
        if let Some(reply) = in_primary(ctx).await {
            return reply;
        }
    }
    let body: CloneIn = decode_as(&ctx.body, "Token")?;
    let r = ctx.catalog.reader().map_err(store)?;
    let Some(src) = r.acl_token(accessor).map_err(store)? else {
        return Err(crate::acl::not_found());
    };
    drop(r);
    let now = now_nanos();
    let token = Token {
        accessor_id: new_uuid(),
        secret_id: new_uuid(),
        description: if body.description.is_empty() {
            src.description.clone()
        } else {
            body.description
        },
        create_time: now,
        ..src
    };
    let accessor = token.accessor_id.clone();
    write(
        ctx,
        AclOp::TokenSet {
            token,
            create: true,
        },
        internal,
    )
    .await?;
    let r = ctx.catalog.reader().map_err(store)?;
    let t = r
        .acl_token(&accessor)
        .map_err(store)?
        .ok_or_else(crate::acl::not_found)?;
    Ok(ctx.json(&token_out(&r, &t, true)?))
}

async fn token_delete(ctx: &Ctx, accessor: &str) -> ApiResult {
    require(ctx, Access::Write).await?;
    if !written_here(ctx, accessor)? {
        if let Some(reply) = in_primary(ctx).await {
            return reply;
        }
    }
    let r = ctx.catalog.reader().map_err(store)?;
    // rs-consul deletes by the SecretID: accept it too.
    let target = match r.acl_token(accessor).map_err(store)? {
        Some(t) => Some(t),
        None => r.acl_token_by_secret(accessor).map_err(store)?,
    };
    drop(r);
    let accessor = match &target {
        Some(t) => t.accessor_id.clone(),
        None if is_uuid(accessor) => accessor.to_string(),
        None => {
            return Err(ApiError::bad("Accessor ID is missing or an invalid UUID"));
        }
    };
    if id_key(&accessor) == ANONYMOUS_ACCESSOR {
        return Err(internal(
            "Delete operation not permitted on the anonymous token".into(),
        ));
    }
    if let (Some(t), Some(own)) = (&target, ctx.token()) {
        if t.secret_id == own {
            return Err(internal(
                "Deletion of the request's authorization token is not permitted".into(),
            ));
        }
    }
    write(ctx, AclOp::TokenDelete { accessor }, internal).await?;
    Ok(ctx.json(&true))
}

/// `GET /v1/acl/tokens` (`?policy=`, `?role=`, `?servicename=`).
pub async fn token_list(ctx: Ctx) -> ApiResult {
    let authz = require(&ctx, Access::Read).await?;
    let show = authz.allows_global(Global::Acl, Access::Write);
    let opts = ctx.read_opts()?;
    let policy = ctx.query.get("policy").filter(|s| !s.is_empty());
    let role = ctx.query.get("role").filter(|s| !s.is_empty());
    let service = ctx.query.get("servicename").filter(|s| !s.is_empty());
    let (out, index) = blocking::query(&ctx, &opts, Watch::Acl, |r| {
        let now = now_nanos();
        let mut out = Vec::new();
        let mut tokens = r.acl_tokens().map_err(store)?;
        tokens.sort_by_key(|t| t.create_index);
        for t in tokens {
            if t.expired_at(now) {
                continue;
            }
            if policy.is_some_and(|p| !t.policies.iter().any(|l| id_key(&l.id) == id_key(p))) {
                continue;
            }
            if role.is_some_and(|p| !t.roles.iter().any(|l| id_key(&l.id) == id_key(p))) {
                continue;
            }
            if service.is_some_and(|s| !t.identities.service.iter().any(|i| i.service_name == s)) {
                continue;
            }
            let mut stub = token_out(r, &t, show)?;
            stub.expiration_ttl = None;
            out.push(stub);
        }
        Ok((out, r.index(&[crate::store::Table::Acl]).map_err(store)?))
    })
    .await?;
    let mut resp = ctx.json(&out);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    Ok(resp)
}

// ---------------------------------------------------------------- policies

fn valid_policy_name(n: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[A-Za-z0-9\-_]{1,128}$").expect("regex"))
        .is_match(n)
}

/// `PUT /v1/acl/policy`.
pub async fn policy_create(ctx: Ctx) -> ApiResult {
    require(&ctx, Access::Write).await?;
    let body: PolicyIn = decode_as(&ctx.body, "Policy")?;
    if !body.id.is_empty() {
        return Err(ApiError::bad(
            "Cannot specify the ID when creating a new policy",
        ));
    }
    policy_write(&ctx, body, None).await
}

async fn policy_write(ctx: &Ctx, body: PolicyIn, update: Option<String>) -> ApiResult {
    if let Some(reply) = in_primary(ctx).await {
        return reply;
    }
    if body.name.is_empty() {
        return Err(internal("Invalid Policy: no Name is set".into()));
    }
    if !valid_policy_name(&body.name) {
        return Err(internal(
            "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
                .into(),
        ));
    }
    // Malformed rules are the caller's mistake: 400 with the parse error.
    crate::acl::rules::parse(&body.rules).map_err(ApiError::bad)?;
    let r = ctx.catalog.reader().map_err(store)?;
    let policy = match &update {
        None => {
            if r.acl_policy_named(&body.name).map_err(store)?.is_some() {
                return Err(internal(format!(
                    "Invalid Policy: A Policy with Name {:?} already exists",
                    body.name
                )));
            }
            Policy {
                id: new_uuid(),
                name: body.name,
                description: body.description,
                rules: body.rules,
                datacenters: body.datacenters,
                ..Policy::default()
            }
        }
        Some(id) => {
            let old = r
                .acl_policy(id)
                .map_err(store)?
                .ok_or_else(|| internal(format!("cannot find policy {id}")))?;
            if id_key(id) == MANAGEMENT_POLICY_ID {
                if body.rules != old.rules {
                    return Err(internal("Changing the Rules for the builtin global-management policy is not permitted".into()));
                }
                if body.datacenters != old.datacenters {
                    return Err(internal("Changing the Datacenters of the builtin global-management policy is not permitted".into()));
                }
            }
            Policy {
                name: body.name,
                description: body.description,
                rules: body.rules,
                datacenters: body.datacenters,
                ..old
            }
        }
    };
    drop(r);
    let id = policy.id.clone();
    write(
        ctx,
        AclOp::PolicySet {
            policy,
            create: update.is_none(),
        },
        internal,
    )
    .await?;
    let r = ctx.catalog.reader().map_err(store)?;
    let p = r
        .acl_policy(&id)
        .map_err(store)?
        .ok_or_else(|| ApiError::NotFound("Cannot find policy".into()))?;
    Ok(ctx.json(&policy_out(&p)))
}

/// `/v1/acl/policy/<id>` and `/v1/acl/policy/name/<name>`.
pub async fn policy_item(ctx: Ctx) -> ApiResult {
    let rest = ctx.rest.clone();
    if let Some(name) = rest.strip_prefix("name/") {
        if ctx.method != Method::GET {
            return Err(ApiError::MethodNotAllowed {
                method: ctx.method.to_string(),
                allow: "OPTIONS,GET".into(),
            });
        }
        if name.is_empty() {
            return Err(ApiError::bad("Missing policy Name"));
        }
        require(&ctx, Access::Read).await?;
        let r = ctx.catalog.reader().map_err(store)?;
        let p = r.acl_policy_named(name).map_err(store)?;
        return read_reply(&ctx, &r, p.as_ref().map(policy_out));
    }
    if rest.is_empty() {
        return Err(ApiError::bad("Missing policy ID"));
    }
    // Consul looks a policy up in a UUID index, which refuses an ID of
    // another length before anything is read or deleted.
    if ctx.method != Method::PUT && rest.len() != 36 {
        return Err(internal("index error: UUID must be 36 characters".into()));
    }
    match ctx.method {
        Method::GET => {
            require(&ctx, Access::Read).await?;
            let r = ctx.catalog.reader().map_err(store)?;
            let p = r.acl_policy(&rest).map_err(store)?;
            read_reply(&ctx, &r, p.as_ref().map(policy_out))
        }
        Method::PUT => {
            require(&ctx, Access::Write).await?;
            let body: PolicyIn = decode_as(&ctx.body, "Policy")?;
            if !body.id.is_empty() && id_key(&body.id) != id_key(&rest) {
                return Err(ApiError::bad("Policy ID in URL and payload do not match"));
            }
            policy_write(&ctx, body, Some(rest)).await
        }
        _ => {
            require(&ctx, Access::Write).await?;
            if let Some(reply) = in_primary(&ctx).await {
                return reply;
            }
            if id_key(&rest) == MANAGEMENT_POLICY_ID {
                return Err(internal(
                    "Delete operation not permitted on the builtin global-management policy".into(),
                ));
            }
            let r = ctx.catalog.reader().map_err(store)?;
            if r.acl_policy(&rest).map_err(store)?.is_none() {
                return Err(ApiError::NotFound("Cannot find policy to delete".into()));
            }
            drop(r);
            write(&ctx, AclOp::PolicyDelete { id: rest }, internal).await?;
            Ok(ctx.json(&true))
        }
    }
}

/// A single-object read: 404 when absent, with the index headers.
fn read_reply<T: Serialize>(ctx: &Ctx, r: &Reader<'_>, v: Option<T>) -> ApiResult {
    let index = r.index(&[crate::store::Table::Acl]).map_err(store)?;
    let mut resp = match v {
        Some(v) => ctx.json(&v),
        None => axum::response::IntoResponse::into_response(ApiError::NotFound(String::new())),
    };
    set_meta(&mut resp, ctx, index, Consistency::Leader);
    Ok(resp)
}

/// `GET /v1/acl/policies`.
pub async fn policy_list(ctx: Ctx) -> ApiResult {
    require(&ctx, Access::Read).await?;
    let opts = ctx.read_opts()?;
    let (out, index) = blocking::query(&ctx, &opts, Watch::Acl, |r| {
        let mut policies = r.acl_policies().map_err(store)?;
        policies.sort_by_key(|p| p.create_index);
        let out: Vec<PolicyStub> = policies
            .into_iter()
            .map(|p| PolicyStub {
                hash: base64::engine::general_purpose::STANDARD.encode(&p.hash),
                id: p.id,
                name: p.name,
                description: p.description,
                datacenters: (!p.datacenters.is_empty()).then_some(p.datacenters),
                create_index: p.create_index,
                modify_index: p.modify_index,
            })
            .collect();
        Ok((out, r.index(&[crate::store::Table::Acl]).map_err(store)?))
    })
    .await?;
    let mut resp = ctx.json(&out);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    Ok(resp)
}

// ------------------------------------------------------------------- roles

fn valid_role_name(n: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[A-Za-z0-9\-_]{1,256}$").expect("regex"))
        .is_match(n)
}

/// `PUT /v1/acl/role`.
pub async fn role_create(ctx: Ctx) -> ApiResult {
    require(&ctx, Access::Write).await?;
    let body: RoleIn = decode_as(&ctx.body, "Role")?;
    if !body.id.is_empty() {
        return Err(ApiError::bad(
            "Cannot specify the ID when creating a new role",
        ));
    }
    role_write(&ctx, body, None).await
}

async fn role_write(ctx: &Ctx, body: RoleIn, update: Option<String>) -> ApiResult {
    if let Some(reply) = in_primary(ctx).await {
        return reply;
    }
    if body.name.is_empty() {
        return Err(internal("Invalid Role: no Name is set".into()));
    }
    if !valid_role_name(&body.name) {
        return Err(internal(
            "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
                .into(),
        ));
    }
    let r = ctx.catalog.reader().map_err(store)?;
    let policies = resolve_policy_links(&r, body.policies)?;
    let ids = identities(
        IdentitiesIn {
            service_identities: body.service_identities,
            node_identities: body.node_identities,
            templated_policies: body.templated_policies,
        },
        false,
        "role",
    )?;
    let role = match &update {
        None => {
            if r.acl_role_named(&body.name).map_err(store)?.is_some() {
                return Err(internal(format!(
                    "Invalid Role: A Role with Name {:?} already exists",
                    body.name
                )));
            }
            Role {
                id: new_uuid(),
                ..Role::default()
            }
        }
        Some(id) => {
            if !is_uuid(id) {
                return Err(internal("Role ID invalid UUID".into()));
            }
            r.acl_role(id)
                .map_err(store)?
                .ok_or_else(|| internal(format!("cannot find role {id}")))?
        }
    };
    let role = Role {
        name: body.name,
        description: body.description,
        policies,
        identities: ids,
        ..role
    };
    drop(r);
    let id = role.id.clone();
    write(
        ctx,
        AclOp::RoleSet {
            role,
            create: update.is_none(),
        },
        internal,
    )
    .await?;
    let r = ctx.catalog.reader().map_err(store)?;
    let role = r
        .acl_role(&id)
        .map_err(store)?
        .ok_or_else(|| ApiError::NotFound("Cannot find role".into()))?;
    Ok(ctx.json(&role_out(&r, &role)?))
}

/// `/v1/acl/role/<id>` and `/v1/acl/role/name/<name>`.
pub async fn role_item(ctx: Ctx) -> ApiResult {
    let rest = ctx.rest.clone();
    if let Some(name) = rest.strip_prefix("name/") {
        if ctx.method != Method::GET {
            return Err(ApiError::MethodNotAllowed {
                method: ctx.method.to_string(),
                allow: "OPTIONS,GET".into(),
            });
        }
        require(&ctx, Access::Read).await?;
        let r = ctx.catalog.reader().map_err(store)?;
        let role = r.acl_role_named(name).map_err(store)?;
        let out = role.as_ref().map(|x| role_out(&r, x)).transpose()?;
        return read_reply(&ctx, &r, out);
    }
    if rest.is_empty() {
        return Err(ApiError::bad("Missing role ID"));
    }
    match ctx.method {
        Method::GET => {
            require(&ctx, Access::Read).await?;
            let r = ctx.catalog.reader().map_err(store)?;
            let role = r.acl_role(&rest).map_err(store)?;
            let out = role.as_ref().map(|x| role_out(&r, x)).transpose()?;
            read_reply(&ctx, &r, out)
        }
        Method::PUT => {
            require(&ctx, Access::Write).await?;
            let body: RoleIn = decode_as(&ctx.body, "Role")?;
            if !body.id.is_empty() && id_key(&body.id) != id_key(&rest) {
                return Err(ApiError::bad("Role ID in URL and payload do not match"));
            }
            role_write(&ctx, body, Some(rest)).await
        }
        _ => {
            require(&ctx, Access::Write).await?;
            if let Some(reply) = in_primary(&ctx).await {
                return reply;
            }
            let r = ctx.catalog.reader().map_err(store)?;
            if r.acl_role(&rest).map_err(store)?.is_none() {
                return Err(ApiError::NotFound("Cannot find role to delete".into()));
            }
            drop(r);
            write(&ctx, AclOp::RoleDelete { id: rest }, internal).await?;
            Ok(ctx.json(&true))
        }
    }
}

/// `GET /v1/acl/roles` (`?policy=`).
pub async fn role_list(ctx: Ctx) -> ApiResult {
    require(&ctx, Access::Read).await?;
    let opts = ctx.read_opts()?;
    let policy = ctx.query.get("policy").filter(|s| !s.is_empty());
    let (out, index) = blocking::query(&ctx, &opts, Watch::Acl, |r| {
        let mut roles = r.acl_roles().map_err(store)?;
        roles.sort_by_key(|x| x.create_index);
        let mut out = Vec::new();
        for role in roles {
            if policy.is_some_and(|p| !role.policies.iter().any(|l| id_key(&l.id) == id_key(p))) {
                continue;
            }
            out.push(role_out(r, &role)?);
        }
        Ok((out, r.index(&[crate::store::Table::Acl]).map_err(store)?))
    })
    .await?;
    let mut resp = ctx.json(&out);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    Ok(resp)
}

// ------------------------------------------------------------ login/logout

// ------------------------------------------------------------ replication

/// `GET /v1/acl/replication`: this server's view of ACL replication from
/// the primary datacenter (`crate::acl::replication`). Needs no token.
pub async fn replication(ctx: Ctx) -> ApiResult {
    if !ctx.acl.enabled() {
        return Err(disabled());
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Out<'a> {
        enabled: bool,
        running: bool,
        source_datacenter: &'a str,
        replication_type: &'a str,
        replicated_index: u64,
        replicated_role_index: u64,
        replicated_token_index: u64,
        last_success: String,
        last_error: String,
        last_error_message: String,
    }
    fn time(t: Option<std::time::SystemTime>) -> String {
        match t {
            Some(t) => chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            None => "0001-01-01T00:00:00Z".into(),
        }
    }
    let primary = ctx.config.acl_primary();
    let report = match primary {
        Some(_) => ctx.acl_replication.report(),
        None => Default::default(),
    };
    let index = report.replicated_index;
    Ok(ctx.json(&Out {
        enabled: primary.is_some(),
        running: report.running,
        source_datacenter: primary.unwrap_or(""),
        replication_type: if primary.is_some() { "tokens" } else { "" },
        replicated_index: index,
        replicated_role_index: index,
        replicated_token_index: index,
        last_success: time(report.last_success),
        last_error: time(report.last_error),
        last_error_message: report.last_error_message,
    }))
}

/// `GET /v1/internal/acl/state`: every policy, role and global token, for
/// a secondary datacenter's replication. Served only to a call another
/// datacenter forwarded here, with a token that has `acl:write` (the
/// tokens' secrets are in it); blocks on `?index=` like the ACL lists.
pub async fn replication_state(ctx: Ctx) -> ApiResult {
    if ctx.hops == 0 {
        return Err(ApiError::NotFound(String::new()));
    }
    require(&ctx, Access::Write).await?;
    let opts = ctx.read_opts()?;
    let (state, index) = blocking::query(&ctx, &opts, Watch::Acl, |r| {
        let state = crate::acl::replication::State::read(r).map_err(store)?;
        let index = state.index;
        Ok((state, index))
    })
    .await?;
    let mut resp = ctx.json(&state);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    Ok(resp)
}

/// `POST /v1/acl/login`: cairn has no auth methods, so every method name
/// is unknown (Consul answers `ACL not found` for one).
pub async fn login(ctx: Ctx) -> ApiResult {
    if !ctx.acl.enabled() {
        return Err(disabled());
    }
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct LoginIn {
        auth_method: String,
        bearer_token: String,
        meta: Option<Value>,
        namespace: Option<Value>,
        partition: Option<Value>,
    }
    let body: LoginIn = decode_as(&ctx.body, "Login")?;
    if body.auth_method.is_empty() {
        return Err(ApiError::bad("Invalid Login: Missing auth method name"));
    }
    let _ = (body.bearer_token, body.meta, body.namespace, body.partition);
    Err(crate::acl::not_found())
}

/// `POST /v1/acl/logout`: only tokens made by a login may log out, and
/// cairn's never are.
pub async fn logout(ctx: Ctx) -> ApiResult {
    if !ctx.acl.enabled() {
        return Err(disabled());
    }
    match ctx.token() {
        None => Err(ApiError::Status(
            StatusCode::UNAUTHORIZED,
            "Supplied token does not exist".into(),
        )),
        Some(secret) => {
            let r = ctx.catalog.reader().map_err(store)?;
            if r.acl_token_by_secret(secret).map_err(store)?.is_none() {
                return Err(crate::acl::not_found());
            }
            Err(ApiError::Status(
                StatusCode::FORBIDDEN,
                "Permission denied: The token specified was not created via a login method".into(),
            ))
        }
    }
}
