//! `/v1/health/*`: checks by node, service and state, and service
//! instances joined with their health.

use super::blocking::{self, Watch};
use super::catalog::node_matches;
use super::types::{HealthCheckJson, ServiceEntryJson};
use super::wire::{parse_bool, set_meta, ApiError, ApiResult, Ctx};
use crate::catalog::types::HealthStatus;
use crate::catalog::Table;

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

/// `GET /v1/health/node/<node>`.
pub async fn node(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing node name"));
    }
    let name = ctx.rest.clone();
    let (checks, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let checks: Vec<HealthCheckJson> = r
            .node_checks(&name)?
            .iter()
            .map(HealthCheckJson::from)
            .collect();
        Ok((checks, r.index(CHECK_TABLES)?))
    })
    .await?;
    let mut resp = ctx.json(&checks);
    set_meta(&mut resp, &ctx, index, opts.consistency);
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
    let (checks, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut out = Vec::new();
        for c in r.service_checks(&name)? {
            if filter.is_empty() || r.node(&c.node)?.is_some_and(|n| node_matches(&n, &filter)) {
                out.push(HealthCheckJson::from(&c));
            }
        }
        Ok((out, r.index(CHECK_TABLES)?))
    })
    .await?;
    let mut resp = ctx.json(&checks);
    set_meta(&mut resp, &ctx, index, opts.consistency);
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
    let (checks, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut out = Vec::new();
        let checks = match state {
            StateFilter::Any => r.checks_in_state(None)?,
            StateFilter::Is(s) => r.checks_in_state(Some(s))?,
            StateFilter::Nothing => Vec::new(),
        };
        for c in checks {
            if filter.is_empty() || r.node(&c.node)?.is_some_and(|n| node_matches(&n, &filter)) {
                out.push(HealthCheckJson::from(&c));
            }
        }
        Ok((out, r.index(CHECK_TABLES)?))
    })
    .await?;
    let mut resp = ctx.json(&checks);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    Ok(resp)
}

/// `GET /v1/health/service/<name>[?passing][&tag=..]`.
pub async fn service(ctx: Ctx) -> ApiResult {
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
    let (entries, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let entries: Vec<ServiceEntryJson> = r
            .service_instances(&name, &tags)?
            .iter()
            .filter(|i| node_matches(&i.node, &filter))
            .filter(|i| !passing || i.checks.iter().all(|c| c.status == HealthStatus::Passing))
            .map(ServiceEntryJson::from)
            .collect();
        Ok((entries, r.index(INSTANCE_TABLES)?))
    })
    .await?;
    let mut resp = ctx.json(&entries);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    Ok(resp)
}
