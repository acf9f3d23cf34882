//! `/v1/query`: prepared queries (Consul's `agent/prepared_query_endpoint.go`
//! and the `PreparedQuery` RPC endpoint behind it).
//!
//! - `POST /v1/query` creates (the ID is chosen here, before proposing,
//!   since apply must be deterministic) and answers `{"ID": ...}`;
//!   `GET /v1/query` lists.
//! - `GET|PUT|DELETE /v1/query/<id>` read, replace (the ID from the URL,
//!   the body optional) and delete one query, by ID only, as Consul.
//! - `GET /v1/query/<id or name>/execute` and `/explain` resolve an ID, a
//!   name, or a template by the longest name prefix, then run it or show it
//!   rendered.
//!
//! Errors are Consul's: decoding `400 Request decode failed: ...`, an
//! unknown query `404 Query not found` (get, execute, explain), the
//! validation and integrity texts as 500s, denials `403 Permission denied`.
//!
//! ACLs as Consul's: writing needs `query:write` on the name of the query
//! written and of the query it replaces (an unnamed, session-bound query
//! has no prefix rule and is open to whoever has its ID); reading needs
//! `query:read` on the name, and the token a query carries is shown only
//! to a management token (`acl:write`), `<hidden>` to others. Executing
//! needs no `query` rule: the instances are filtered with the query's own
//! token when it has one, else the caller's.
//!
//! Execute and explain are not blocking reads: like Consul's, their
//! `X-Consul-Index` is 1 and the body's `Index` 0, beside the other
//! `QueryMeta` fields Consul's JSON carries.

use super::blocking::{self, Watch};
use super::decode::decode_body;
use super::types::ServiceEntryJson;
use super::wire::{set_filtered_by_acls, set_meta, ApiError, ApiResult, Consistency, Ctx};
use crate::acl::{Access, Authorizer, Global, Resource};
use crate::catalog::command::Command;
use crate::catalog::prepared_query::execute::{self, Source};
use crate::catalog::prepared_query::{
    self as pq, FailoverTarget, PreparedQuery, PreparedQueryOp, QueryDns, QueryFailover,
    QueryTemplate, ResolveError, ServiceQuery, PERMISSION_DENIED, REDACTED_TOKEN,
};
use crate::catalog::Table;
use axum::http::{header, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/query` and `GET /v1/query`.
pub async fn general(ctx: Ctx) -> ApiResult {
    if ctx.method == axum::http::Method::POST {
        create(ctx).await
    } else {
        list(ctx).await
    }
}

/// What `OPTIONS` answers for `path` when it is not its route's method
/// list: execute and explain take GET only (Consul's
/// `preparedQuerySpecificOptions`).
pub(super) fn options_allow(path: &str) -> Option<&'static str> {
    (path.starts_with("/v1/query/") && (path.ends_with("/execute") || path.ends_with("/explain")))
        .then_some(EXECUTE_ALLOW)
}

const EXECUTE_ALLOW: &str = "OPTIONS,GET";

/// `/v1/query/<id>[/execute|/explain]`.
pub async fn specific(ctx: Ctx) -> ApiResult {
    let rest = ctx.rest.clone();
    if ctx.hops > 0 && ctx.method == axum::http::Method::PUT && rest.ends_with("/execute") {
        return execute_remote(ctx).await;
    }
    for (suffix, run) in [("/execute", true), ("/explain", false)] {
        if let Some(id) = rest.strip_suffix(suffix) {
            if ctx.method != axum::http::Method::GET {
                return Err(ApiError::MethodNotAllowed {
                    method: ctx.method.to_string(),
                    allow: EXECUTE_ALLOW.into(),
                });
            }
            let id = id.to_string();
            return if run {
                execute(ctx, id).await
            } else {
                explain(ctx, id).await
            };
        }
    }
    match ctx.method.as_str() {
        "GET" => get(ctx, rest).await,
        "PUT" => update(ctx, rest).await,
        _ => delete(ctx, rest).await,
    }
}

async fn create(ctx: Ctx) -> ApiResult {
    ctx.read_opts()?;
    let mut query = decode_body::<QueryIn>(&ctx.body)?.into_query();
    if !query.id.is_empty() {
        return Err(ApiError::Internal(
            "ID must be empty when creating a new prepared query".into(),
        ));
    }
    query.id = uuid::Uuid::new_v4().to_string();
    let authz = ctx.authorizer().await?;
    vet_write(&authz, &query)?;
    propose(&ctx, query.clone()).await?;
    Ok(ctx.json(&CreatedJson { id: query.id }))
}

async fn update(ctx: Ctx, id: String) -> ApiResult {
    let opts = ctx.read_opts()?;
    // Consul decodes the body only when Content-Length is above 0.
    let has_body = ctx
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    let mut query = if has_body {
        decode_body::<QueryIn>(&ctx.body)?.into_query()
    } else {
        PreparedQuery::default()
    };
    query.id = id;
    let authz = ctx.authorizer().await?;
    vet_write(&authz, &query)?;
    vet_existing(&ctx, &opts, &authz, &query.id).await?;
    propose(&ctx, query).await?;
    Ok(super::wire::empty_ok())
}

async fn delete(ctx: Ctx, id: String) -> ApiResult {
    let opts = ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    vet_existing(&ctx, &opts, &authz, &id).await?;
    ctx.agent
        .write(Command::PreparedQuery(PreparedQueryOp::Delete { id }))
        .await?;
    Ok(super::wire::empty_ok())
}

/// `query:write` on the name the query is written under.
fn vet_write(authz: &Authorizer, query: &PreparedQuery) -> Result<(), ApiError> {
    match query.acl_prefix() {
        Some(prefix) if !authz.allows(Resource::Query, prefix, Access::Write) => Err(denied()),
        _ => Ok(()),
    }
}

/// The query replaced or deleted exists, and the token may write its name.
async fn vet_existing(
    ctx: &Ctx,
    opts: &super::wire::ReadOpts,
    authz: &Authorizer,
    id: &str,
) -> Result<(), ApiError> {
    blocking::ensure_readable(ctx, opts).await?;
    let existing = ctx.catalog.reader()?.prepared_query(id)?;
    let Some(existing) = existing else {
        return Err(ApiError::Internal(format!(
            "Cannot modify non-existent prepared query: '{id}'"
        )));
    };
    vet_write(authz, &existing)
}

/// Validates as Consul's `parseQuery` and proposes the definition.
async fn propose(ctx: &Ctx, query: PreparedQuery) -> Result<(), ApiError> {
    pq::validate(&query).map_err(|e| ApiError::Internal(format!("Invalid prepared query: {e}")))?;
    ctx.agent
        .write(Command::PreparedQuery(PreparedQueryOp::Set(Box::new(
            query,
        ))))
        .await?;
    Ok(())
}

fn denied() -> ApiError {
    ApiError::Status(StatusCode::FORBIDDEN, PERMISSION_DENIED.into())
}

/// What a reader may see of a query (Consul's `filterPreparedQueries`): all
/// of it with `acl:write`; with `query:read` on its name, all but its
/// token; nothing otherwise (an unnamed query included).
fn visible(authz: &Authorizer, q: &PreparedQuery) -> Option<QueryJson> {
    if authz.allows_global(Global::Acl, Access::Write) {
        return Some(QueryJson::from_query(q, false));
    }
    let prefix = q.acl_prefix()?;
    authz
        .allows(Resource::Query, prefix, Access::Read)
        .then(|| QueryJson::from_query(q, true))
}

async fn list(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    let mut filtered = false;
    let (queries, index) = blocking::query(&ctx, &opts, Watch::PreparedQueries, |r| {
        let all = r.prepared_queries()?;
        let shown: Vec<QueryJson> = all.iter().filter_map(|q| visible(&authz, q)).collect();
        filtered = shown.len() != all.len();
        Ok((shown, r.index(&[Table::PreparedQueries])?))
    })
    .await?;
    let mut resp = ctx.json(&queries);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

async fn get(ctx: Ctx, id: String) -> ApiResult {
    let opts = ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    let (query, index) = blocking::query(&ctx, &opts, Watch::PreparedQueries, |r| {
        Ok((r.prepared_query(&id)?, r.index(&[Table::PreparedQueries])?))
    })
    .await?;
    let query = query.ok_or_else(query_not_found)?;
    // Whoever has the ID of an unnamed query may read it (its token
    // redacted unless they are management), as Consul's Get.
    let shown = match query.acl_prefix() {
        None => QueryJson::from_query(&query, !authz.allows_global(Global::Acl, Access::Write)),
        Some(_) => visible(&authz, &query).ok_or_else(denied)?,
    };
    let mut resp = ctx.json(&[shown]);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    Ok(resp)
}

fn query_not_found() -> ApiError {
    ApiError::NotFound(ResolveError::NotFound.to_string())
}

/// Looks the query up as execute and explain do.
async fn resolve(
    ctx: &Ctx,
    opts: &super::wire::ReadOpts,
    id: &str,
) -> Result<PreparedQuery, ApiError> {
    blocking::ensure_readable(ctx, opts).await?;
    let queries = ctx.catalog.reader()?.prepared_queries()?;
    pq::resolve(&queries, id).map_err(|e| match e {
        ResolveError::NotFound => query_not_found(),
        ResolveError::Invalid(m) => ApiError::Internal(m),
    })
}

async fn explain(ctx: Ctx, id: String) -> ApiResult {
    let opts = ctx.read_opts()?;
    parse_limit(&ctx)?;
    let query = resolve(&ctx, &opts, &id).await?;
    let authz = ctx.authorizer().await?;
    let shown = visible(&authz, &query).ok_or_else(denied)?;
    let mut resp = ctx.json(&ExplainJson {
        query: shown,
        meta: QueryMetaJson::new(&ctx, opts.consistency, false),
    });
    set_meta(&mut resp, &ctx, 0, opts.consistency);
    Ok(resp)
}

async fn execute(ctx: Ctx, id: String) -> ApiResult {
    let opts = ctx.read_opts()?;
    let limit = parse_limit(&ctx)?;
    let query = resolve(&ctx, &opts, &id).await?;
    let caller = ctx.authorizer().await?;
    let authz = if query.token.is_empty() || !ctx.acl.enabled() {
        caller.clone()
    } else {
        ctx.acl
            .resolve(Some(&query.token))
            .await
            .map_err(|e| match e {
                crate::acl::ResolveError::NotFound => crate::acl::not_found(),
                crate::acl::ResolveError::Unavailable(m) => ApiError::Internal(m),
            })?
    };
    let source = Source {
        near: ctx.query.get("near").unwrap_or_default().to_string(),
        agent_node: ctx.agent.node_name().to_string(),
        ip: forwarded_for(&ctx),
        limit,
    };
    let executed = {
        let reader = ctx.catalog.reader()?;
        execute::execute(&reader, &query, &source, &authz, &ctx.config.datacenter)?
    };
    if executed.instances.is_empty() {
        if let Some(resp) = failover(&ctx, &query, limit).await {
            return Ok(resp);
        }
    }
    // Consul blanks the flag for callers without a token.
    let shown_filtered =
        executed.filtered_by_acls && caller.accessor_id() != crate::acl::types::ANONYMOUS_ACCESSOR;
    let body = ExecuteJson {
        service: executed.service,
        nodes: executed
            .instances
            .iter()
            .map(ServiceEntryJson::from)
            .collect(),
        dns: DnsJson {
            ttl: executed.dns.ttl,
        },
        datacenter: executed.datacenter,
        peer_name: String::new(),
        failovers: executed.failovers,
        meta: QueryMetaJson::new(&ctx, opts.consistency, shown_filtered),
    };
    let mut resp = ctx.json(&body);
    set_meta(&mut resp, &ctx, 0, opts.consistency);
    if executed.filtered_by_acls {
        set_filtered_by_acls(&mut resp, &caller);
    }
    Ok(resp)
}

/// Consul's `queryFailover` (`crate::federation::failover`), as the
/// HTTP answer: the remote datacenter's, with `Failovers` set.
async fn failover(
    ctx: &Ctx,
    query: &PreparedQuery,
    limit: usize,
) -> Option<axum::response::Response> {
    let token = ctx
        .token()
        .map(str::to_string)
        .or_else(|| ctx.acl.tokens().default_token());
    let answer =
        crate::federation::failover(&ctx.federation, query, limit, token, ctx.hops).await?;
    let mut resp = ctx.json(&answer);
    set_meta(&mut resp, ctx, 0, crate::http::wire::Consistency::Leader);
    Some(resp)
}

/// Another datacenter's failover: runs the definition it sent against
/// this datacenter's catalog. Only ever reached through a forwarded call.
async fn execute_remote(ctx: Ctx) -> ApiResult {
    let remote: crate::federation::RemoteExecution = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad(format!("Invalid remote query: {e}")))?;
    let query = remote.query;
    let caller = ctx.authorizer().await?;
    let authz = if query.token.is_empty() || !ctx.acl.enabled() {
        caller.clone()
    } else {
        // The query's token is another datacenter's; without it here the
        // caller's applies.
        ctx.acl
            .resolve(Some(&query.token))
            .await
            .unwrap_or_else(|_| caller.clone())
    };
    let source = Source {
        near: String::new(),
        agent_node: String::new(),
        ip: None,
        limit: remote.limit,
    };
    let executed = {
        let reader = ctx.catalog.reader()?;
        execute::execute(&reader, &query, &source, &authz, &ctx.config.datacenter)?
    };
    let body = ExecuteJson {
        service: executed.service,
        nodes: executed
            .instances
            .iter()
            .map(ServiceEntryJson::from)
            .collect(),
        dns: DnsJson {
            ttl: executed.dns.ttl,
        },
        datacenter: executed.datacenter,
        peer_name: String::new(),
        failovers: 0,
        meta: QueryMetaJson::new(&ctx, super::wire::Consistency::Leader, false),
    };
    Ok(ctx.json(&body))
}

/// `?limit=` (Consul's `parseLimit`: `strconv.Atoi`, 0 when absent).
fn parse_limit(ctx: &Ctx) -> Result<usize, ApiError> {
    match ctx.query.get("limit").filter(|l| !l.is_empty()) {
        None => Ok(0),
        Some(l) => l.parse::<i64>().map(|n| n.max(0) as usize).map_err(|_| {
            ApiError::Internal(format!(
                "Bad limit: strconv.Atoi: parsing {}: invalid syntax",
                crate::acl::go_quote(l)
            ))
        }),
    }
}

/// The client address `?near=_ip` sorts near: the first `X-Forwarded-For`
/// entry.
fn forwarded_for(ctx: &Ctx) -> Option<std::net::IpAddr> {
    ctx.headers
        .get("X-Forwarded-For")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

// ---- wire shapes ----

/// Consul's `structs.PreparedQuery` as the endpoints decode it (an
/// unknown field is refused, as everywhere in `decode`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct QueryIn {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    session: String,
    token: String,
    template: TemplateIn,
    service: ServiceIn,
    #[serde(rename = "DNS")]
    dns: DnsJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct TemplateIn {
    #[serde(rename = "Type")]
    kind: String,
    regexp: String,
    remove_empty_tags: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ServiceIn {
    service: String,
    sameness_group: String,
    failover: FailoverIn,
    only_passing: bool,
    #[serde(rename = "IgnoreCheckIDs")]
    ignore_check_ids: Vec<String>,
    near: String,
    tags: Vec<String>,
    node_meta: BTreeMap<String, String>,
    service_meta: BTreeMap<String, String>,
    connect: bool,
    peer: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct FailoverIn {
    nearest_n: i64,
    datacenters: Vec<String>,
    targets: Vec<TargetJson>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct TargetJson {
    peer: String,
    datacenter: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
struct DnsJson {
    #[serde(rename = "TTL")]
    ttl: String,
}

impl QueryIn {
    fn into_query(self) -> PreparedQuery {
        let s = self.service;
        PreparedQuery {
            id: self.id,
            name: self.name,
            session: self.session,
            token: self.token,
            template: QueryTemplate {
                kind: self.template.kind,
                regexp: self.template.regexp,
                remove_empty_tags: self.template.remove_empty_tags,
            },
            service: ServiceQuery {
                service: s.service,
                sameness_group: s.sameness_group,
                failover: QueryFailover {
                    nearest_n: s.failover.nearest_n,
                    datacenters: s.failover.datacenters,
                    targets: s
                        .failover
                        .targets
                        .into_iter()
                        .map(|t| FailoverTarget {
                            peer: t.peer,
                            datacenter: t.datacenter,
                        })
                        .collect(),
                },
                only_passing: s.only_passing,
                ignore_check_ids: s.ignore_check_ids,
                near: s.near,
                tags: s.tags,
                node_meta: s.node_meta,
                service_meta: s.service_meta,
                connect: s.connect,
                peer: s.peer,
            },
            dns: QueryDns { ttl: self.dns.ttl },
            create_index: 0,
            modify_index: 0,
        }
    }
}

#[derive(Serialize)]
struct CreatedJson {
    #[serde(rename = "ID")]
    id: String,
}

/// A query as Consul renders it; empty lists and maps are Go's `null`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct QueryJson {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    session: String,
    token: String,
    template: TemplateJson,
    service: ServiceJson,
    #[serde(rename = "DNS")]
    dns: DnsJson,
    create_index: u64,
    modify_index: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TemplateJson {
    #[serde(rename = "Type")]
    kind: String,
    regexp: String,
    remove_empty_tags: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceJson {
    service: String,
    sameness_group: String,
    failover: FailoverJson,
    only_passing: bool,
    #[serde(rename = "IgnoreCheckIDs")]
    ignore_check_ids: Option<Vec<String>>,
    near: String,
    tags: Option<Vec<String>>,
    node_meta: Option<BTreeMap<String, String>>,
    service_meta: Option<BTreeMap<String, String>>,
    connect: bool,
    peer: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct FailoverJson {
    nearest_n: i64,
    datacenters: Option<Vec<String>>,
    targets: Option<Vec<TargetJson>>,
}

fn non_empty<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn non_empty_map(m: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then(|| m.clone())
}

impl QueryJson {
    /// `redact`: show `<hidden>` for a token the reader may not see.
    fn from_query(q: &PreparedQuery, redact: bool) -> QueryJson {
        let s = &q.service;
        QueryJson {
            id: q.id.clone(),
            name: q.name.clone(),
            session: q.session.clone(),
            token: if redact && !q.token.is_empty() {
                REDACTED_TOKEN.to_string()
            } else {
                q.token.clone()
            },
            template: TemplateJson {
                kind: q.template.kind.clone(),
                regexp: q.template.regexp.clone(),
                remove_empty_tags: q.template.remove_empty_tags,
            },
            service: ServiceJson {
                service: s.service.clone(),
                sameness_group: s.sameness_group.clone(),
                failover: FailoverJson {
                    nearest_n: s.failover.nearest_n,
                    datacenters: non_empty(&s.failover.datacenters),
                    targets: (!s.failover.targets.is_empty()).then(|| {
                        s.failover
                            .targets
                            .iter()
                            .map(|t| TargetJson {
                                peer: t.peer.clone(),
                                datacenter: t.datacenter.clone(),
                            })
                            .collect()
                    }),
                },
                only_passing: s.only_passing,
                ignore_check_ids: non_empty(&s.ignore_check_ids),
                near: s.near.clone(),
                tags: non_empty(&s.tags),
                node_meta: non_empty_map(&s.node_meta),
                service_meta: non_empty_map(&s.service_meta),
                connect: s.connect,
                peer: s.peer.clone(),
            },
            dns: DnsJson {
                ttl: q.dns.ttl.clone(),
            },
            create_index: q.create_index,
            modify_index: q.modify_index,
        }
    }
}

/// The `QueryMeta` fields Consul's execute and explain bodies embed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct QueryMetaJson {
    index: u64,
    /// Nanoseconds, as Go renders a `time.Duration`.
    last_contact: u64,
    known_leader: bool,
    consistency_level: &'static str,
    not_modified: bool,
    backend: u8,
    #[serde(rename = "ResultsFilteredByACLs")]
    results_filtered_by_acls: bool,
}

impl QueryMetaJson {
    fn new(ctx: &Ctx, consistency: Consistency, filtered: bool) -> QueryMetaJson {
        let contact = ctx.consensus.contact();
        QueryMetaJson {
            index: 0,
            last_contact: contact.last_contact_ms.saturating_mul(1_000_000),
            known_leader: contact.known_leader,
            consistency_level: consistency.as_str(),
            not_modified: false,
            backend: 0,
            results_filtered_by_acls: filtered,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExplainJson {
    query: QueryJson,
    #[serde(flatten)]
    meta: QueryMetaJson,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExecuteJson {
    service: String,
    nodes: Vec<ServiceEntryJson>,
    #[serde(rename = "DNS")]
    dns: DnsJson,
    datacenter: String,
    peer_name: String,
    failovers: u32,
    #[serde(flatten)]
    meta: QueryMetaJson,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_consuls_body_and_renders_nulls_for_empty_lists() {
        let body = br#"{"Name":"db","Token":"secret","Service":{"Service":"mysql",
            "Failover":{"NearestN":2,"Datacenters":["dc2"]},"OnlyPassing":true,
            "Tags":["primary","!canary"],"IgnoreCheckIDs":["flaky"]},
            "DNS":{"TTL":"10s"},"Template":{"Type":"name_prefix_match","Regexp":"^db-(.*)$"}}"#;
        let q = decode_body::<QueryIn>(body).unwrap().into_query();
        let unknown = decode_body::<QueryIn>(br#"{"Nmae":"x"}"#).unwrap_err();
        assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
        assert_eq!(q.service.failover.nearest_n, 2);
        assert_eq!(q.service.tags, ["primary", "!canary"]);
        assert_eq!(q.dns.ttl, "10s");
        assert!(q.is_template());
        let v = serde_json::to_value(QueryJson::from_query(&q, true)).unwrap();
        assert_eq!(v["Token"], "<hidden>");
        assert_eq!(v["Service"]["NodeMeta"], serde_json::Value::Null);
        assert_eq!(v["Service"]["Failover"]["Datacenters"][0], "dc2");
        assert_eq!(v["Template"]["Type"], "name_prefix_match");
        assert_eq!(v["DNS"]["TTL"], "10s");
        let shown = serde_json::to_value(QueryJson::from_query(&q, false)).unwrap();
        assert_eq!(shown["Token"], "secret");
    }
}
