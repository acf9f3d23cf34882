//! `PUT /v1/agent/token/:type`: replaces one of the agent's own ACL tokens
//! while it runs [agent/agent_endpoint.go AgentToken].
//!
//! In Consul's order: ACLs off is 401 `ACL support disabled`; the caller
//! needs `agent:write` on this agent's node name (what the code checks; the
//! CLI docs say `acl:write`); then the body `{"Token": "..."}` is decoded
//! (400 `Request decode failed: ...`); then the type is looked up (404
//! `Token "<type>" is unknown`). The new token is in use from the next
//! request on, and with `acl.enable_token_persistence` it is written to
//! `acl-tokens.json` before the answer (500 `Failed to persist tokens -
//! ...` if that fails; the new token is in use all the same, as in
//! Consul). A change of the `default` or `agent` token starts an
//! anti-entropy pass (the sync task watches the tokens).

use super::agent::require_agent;
use super::decode::decode_body;
use super::wire::{empty_ok, ApiError, ApiResult, Ctx};
use crate::acl::tokens::TokenKind;
use crate::acl::Access;
use axum::http::StatusCode;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct AgentTokenIn {
    token: String,
}

pub async fn update(ctx: Ctx) -> ApiResult {
    if !ctx.acl.enabled() {
        return Err(ApiError::Status(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled".into(),
        ));
    }
    require_agent(&ctx, Access::Write).await?;
    let body: AgentTokenIn = decode_body(&ctx.body)?;
    let Some(kind) = TokenKind::from_api_name(&ctx.rest) else {
        return Err(ApiError::NotFound(format!(
            "Token {} is unknown",
            crate::acl::go_quote(&ctx.rest)
        )));
    };
    let tokens = ctx.acl.tokens().clone();
    tokens.set(kind, &body.token);
    if tokens.persistent() {
        let store = tokens.clone();
        tokio::task::spawn_blocking(move || store.persist())
            .await
            .map_err(|e| ApiError::Internal(format!("Failed to persist tokens - {e}")))?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    if matches!(kind, TokenKind::Dns | TokenKind::Default) {
        // A client agent answers DNS from what a server last said about
        // the DNS token: ask about the new one before answering, so the
        // next query is answered under it.
        ctx.acl.prime_dns().await;
    }
    tracing::info!(token = %ctx.rest, "Updated agent's ACL token");
    Ok(empty_ok())
}
