//! `/v1/health/*`: checks by node, service and state, and service
//! instances joined with their health.
//!
//! Under ACLs every list drops what the token cannot read, as Consul's
//! `filterHealthChecks` and `filterCheckServiceNodes` do: a check needs
//! `node:read` on its node and, for a service check, `service:read` on its
//! service; an instance needs both.

use super::blocking::{self, Watch};
use super::catalog::{instance_readable, node_matches, Selection};
use super::types::{HealthCheckJson, ServiceEntryJson};
use super::wire::{parse_bool, set_filtered_by_acls, set_meta, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Authorizer, Resource};
use crate::catalog::types::{Check, HealthStatus};
use crate::catalog::Table;
use crate::filter::Subject;

const CHECK_TABLES: &[Table] = &[Table::Checks];
const INSTANCE_TABLES: &[Table] = &[Table::Nodes, Table::Services, Table::Checks];

fn node_meta(ctx: &Ctx) -> Vec<(String, String)> {
    ctx.query
        .all("node-meta")
        .into_iter()
        .map(|kv| match kv.split_once(':') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect()
}

fn check_readable(authz: &Authorizer, c: &Check) -> bool {
    authz.allows(Resource::Node, &c.node, Access::Read)
        && (c.service_name.is_empty()
            || authz.allows(Resource::Service, &c.service_name, Access::Read))
}

/// Drops the checks the token cannot read; true when any was dropped.
fn retain_readable(authz: &Authorizer, checks: &mut Vec<Check>) -> bool {
    let before = checks.len();
    checks.retain(|c| check_readable(authz, c));
    checks.len() != before
}

/// `GET /v1/health/node/<node>`.
pub async fn node(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing node name"));
    }
    let name = ctx.rest.clone();
    let expr = ctx.filter(Subject::HealthCheck)?;
    let authz = ctx.authorizer().await?;
    let mut filtered = false;
    let (checks, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut checks = r.node_checks(&name)?;
        filtered = retain_readable(&authz, &mut checks);
        let mut checks: Vec<HealthCheckJson> = checks.iter().map(HealthCheckJson::from).collect();
        expr.retain(&mut checks);
        Ok((checks, r.index(CHECK_TABLES)?))
    })
    .await?;
    let mut resp = ctx.json(&checks);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// `GET /v1/health/checks/<service>`.
pub async fn checks(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing service name"));
    }
    let name = ctx.rest.clone();
    let filter = node_meta(&ctx);
    let expr = ctx.filter(Subject::HealthCheck)?;
    let authz = ctx.authorizer().await?;
    let near = super::coordinate::near_node(&ctx);
    let mut filtered = false;
    let (checks, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut out = Vec::new();
        let mut checks = r.service_checks(&name)?;
        filtered = retain_readable(&authz, &mut checks);
        for c in checks {
            if filter.is_empty() || r.node(&c.node)?.is_some_and(|n| node_matches(&n, &filter)) {
                out.push(HealthCheckJson::from(&c));
            }
        }
        expr.retain(&mut out);
        super::coordinate::sort_near(r, near.as_deref(), &mut out, |c| &c.node)?;
        Ok((out, r.index(CHECK_TABLES)?))
    })
    .await?;
    let mut resp = ctx.json(&checks);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

#[derive(Clone, Copy)]
enum StateFilter {
    Any,
    Is(HealthStatus),
    Nothing,
}

/// `GET /v1/health/state/<any|passing|warning|critical>`.
pub async fn state(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    // Consul looks the state up as given: a state no check can be in
    // matches nothing (200 `[]`), it is not an error.
    let state = match ctx.rest.as_str() {
        "" => return Err(ApiError::bad("Missing check state")),
        "any" => StateFilter::Any,
        s => HealthStatus::parse(s)
            .map(StateFilter::Is)
            .unwrap_or(StateFilter::Nothing),
    };
    let filter = node_meta(&ctx);
    let expr = ctx.filter(Subject::HealthCheck)?;
    let authz = ctx.authorizer().await?;
    let near = super::coordinate::near_node(&ctx);
    let mut filtered = false;
    let (checks, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut out = Vec::new();
        let mut checks = match state {
            StateFilter::Any => r.checks_in_state(None)?,
            StateFilter::Is(s) => r.checks_in_state(Some(s))?,
            StateFilter::Nothing => Vec::new(),
        };
        filtered = retain_readable(&authz, &mut checks);
        for c in checks {
            if filter.is_empty() || r.node(&c.node)?.is_some_and(|n| node_matches(&n, &filter)) {
                out.push(HealthCheckJson::from(&c));
            }
        }
        expr.retain(&mut out);
        super::coordinate::sort_near(r, near.as_deref(), &mut out, |c| &c.node)?;
        Ok((out, r.index(CHECK_TABLES)?))
    })
    .await?;
    let mut resp = ctx.json(&checks);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// `GET /v1/health/service/<name>[?passing][&tag=..]`.
pub async fn service(ctx: Ctx) -> ApiResult {
    service_entries(ctx, Selection::Instances).await
}

/// `GET /v1/health/connect/<name>`: the service's Connect-capable
/// instances with their checks, with the same options as `health/service`.
pub async fn connect(ctx: Ctx) -> ApiResult {
    service_entries(ctx, Selection::Connect).await
}

/// `GET /v1/health/ingress/<name>`: the ingress gateways that route to the
/// service, with their checks.
pub async fn ingress(ctx: Ctx) -> ApiResult {
    service_entries(ctx, Selection::Ingress).await
}

async fn service_entries(ctx: Ctx, selection: Selection) -> ApiResult {
    let opts = ctx.read_opts()?;
    // `?passing` is parsed, not a presence flag: empty means true.
    let passing = match ctx.query.get("passing") {
        None => false,
        Some("") => true,
        Some(v) => parse_bool(v).ok_or_else(|| ApiError::bad("Invalid value for ?passing"))?,
    };
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing service name"));
    }
    let name = ctx.rest.clone();
    let tags = ctx.query.all("tag");
    let filter = node_meta(&ctx);
    let expr = ctx.filter(Subject::CheckServiceNode)?;
    let authz = ctx.authorizer().await?;
    let near = super::coordinate::near_node(&ctx);
    let mut filtered = false;
    let empty = selection.always_empty(&ctx);
    let (entries, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut instances = if empty {
            Vec::new()
        } else {
            r.service_instances(&name, &tags)?
        };
        let before = instances.len();
        instances.retain(|i| instance_readable(&authz, &i.node.name, &i.service.name));
        filtered = instances.len() != before;
        let mut entries: Vec<ServiceEntryJson> = instances
            .iter()
            .filter(|i| node_matches(&i.node, &filter))
            .filter(|i| !passing || i.checks.iter().all(|c| c.status == HealthStatus::Passing))
            .map(ServiceEntryJson::from)
            .collect();
        expr.retain(&mut entries);
        super::coordinate::sort_near(r, near.as_deref(), &mut entries, |e| &e.node.node)?;
        Ok((entries, r.index(INSTANCE_TABLES)?))
    })
    .await?;
    let mut resp = ctx.json(&entries);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}
