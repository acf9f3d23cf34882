//! Requests for another datacenter: `?dc=<other>` on any endpoint that
//! takes it, and catalog writes whose body names another datacenter, are
//! handed to a server there (`crate::federation`) before any handler runs,
//! and its answer is this agent's answer.

use super::wire::{ApiError, ApiResult, Ctx, ReadOpts};
use crate::consensus::api::{AclCall, AclReply};
use crate::federation::ForwardError;
use std::time::Duration;

/// Request extension: the datacenter forwards that brought a request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hops(pub u8);

/// Beyond a blocking query's wait: the remote answer and the time to reach it.
const CALL_MARGIN: Duration = Duration::from_secs(15);

/// Whether the endpoint at `pattern` answers for the datacenter `?dc=`
/// names. The agent endpoints are about this agent, and the datacenter
/// lists and the keyring span every datacenter.
pub(super) fn takes_dc(pattern: &str) -> bool {
    pattern.starts_with("/v1/")
        && !pattern.starts_with("/v1/agent/")
        && !matches!(
            pattern,
            "/v1/catalog/datacenters" | "/v1/coordinate/datacenters" | "/v1/operator/keyring"
        )
}

/// The other datacenter a request's `?dc=` names, if it must be forwarded.
pub(super) fn target(ctx: &Ctx, pattern: &str) -> Option<String> {
    let dc = ctx.query.get("dc").filter(|dc| !dc.is_empty())?;
    (dc != ctx.config.datacenter && takes_dc(pattern)).then(|| dc.to_string())
}

/// A catalog write's body named `datacenter`: `None` when that is this
/// one (or none), else the remote datacenter's answer.
pub(super) async fn forward_body(
    ctx: &Ctx,
    datacenter: &str,
) -> Result<Option<axum::response::Response>, ApiError> {
    if datacenter.is_empty() || datacenter == ctx.config.datacenter {
        return Ok(None);
    }
    forward(ctx, datacenter).await.map(Some)
}

/// Has a server of `dc` answer the request.
pub(super) async fn forward(ctx: &Ctx, dc: &str) -> ApiResult {
    send(ctx, dc, ctx.raw_query.clone()).await
}

/// Has a server of `dc` answer the request as if it had been made there
/// without `?dc=` (an ACL write a secondary datacenter hands to the
/// primary, whatever datacenter the caller named).
pub(super) async fn forward_to(ctx: &Ctx, dc: &str) -> ApiResult {
    let query = ctx.raw_query.as_deref().map(|q| {
        q.split('&')
            .filter(|kv| *kv != "dc" && !kv.starts_with("dc="))
            .collect::<Vec<_>>()
            .join("&")
    });
    send(ctx, dc, query.filter(|q| !q.is_empty())).await
}

async fn send(ctx: &Ctx, dc: &str, query: Option<String>) -> ApiResult {
    let timeout = match ReadOpts::parse_any_dc(&ctx.query, &ctx.config) {
        // Consul adds up to wait/16 of jitter to a blocking query.
        Ok(opts) if opts.index > 0 => opts.wait + opts.wait / 16 + CALL_MARGIN,
        _ => CALL_MARGIN,
    };
    let call = AclCall {
        method: ctx.method.to_string(),
        path: ctx.raw_path.clone(),
        query,
        token: ctx
            .token()
            .map(str::to_string)
            .or_else(|| ctx.acl.tokens().default_token()),
        body: ctx.body.to_vec(),
    };
    match ctx.federation.forward(dc, call, ctx.hops, timeout).await {
        Ok(reply) => Ok(super::acl_forward::into_response(reply)),
        Err(ForwardError::NoPath) => Err(ApiError::Internal(crate::federation::NO_PATH.into())),
        Err(ForwardError::Failed(m)) => Err(ApiError::Internal(m)),
    }
}

/// A reply standing for an error before the request reached a router.
pub(super) fn error_reply(status: u16, text: &str) -> AclReply {
    AclReply {
        status,
        headers: vec![("content-type".into(), b"text/plain; charset=utf-8".to_vec())],
        body: text.as_bytes().to_vec(),
    }
}
