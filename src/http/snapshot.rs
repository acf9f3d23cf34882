//! `/v1/snapshot`: save (`GET`) and restore (`PUT`) the whole replicated
//! state as a Consul-layout archive (`crate::snapshot`). Both need
//! `acl = "write"`, as in Consul.
//!
//! - `GET` dumps the catalog from one read transaction on this server
//!   (after a read index unless `?stale`, so a default save is as fresh as
//!   the leader's state, as Consul's leader-forwarded save is);
//!   `X-Consul-Index` is the index the dump is at.
//! - `PUT` reads and verifies the archive completely, state decoded
//!   included, before anything changes; a bad archive is answered 500 with
//!   the reason (Consul's status for a failed restore RPC) and nothing is
//!   written. The state then goes through raft as one `Command::Restore`,
//!   applied by every server (and every client agent's view, from the
//!   feed) at the same index, which re-dates everything it holds to that
//!   index: indexes only move forward (see `CatalogSnapshot::restamp`).
//!
//! Client agents hand both to a server (`acl_forward`), as Consul's client
//! agent forwards its snapshot RPC.

use super::blocking::ensure_readable;
use super::wire::{require_global, set_meta, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Global};
use crate::catalog::command::{Command, Response as CmdResponse};
use crate::snapshot::{self as archive, ConfigServer, Meta};
use axum::body::Body;
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;

pub async fn snapshot(ctx: Ctx) -> ApiResult {
    if !ctx.config.server {
        // Client agents forward before reaching here (acl_forward).
        return Err(ApiError::Internal("No known Consul servers".into()));
    }
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Acl, Access::Write)?;
    if ctx.method == Method::PUT {
        restore(ctx).await
    } else {
        save(ctx).await
    }
}

async fn save(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    ensure_readable(&ctx, &opts).await?;
    let catalog = ctx.catalog.clone();
    let (pos, state) = tokio::task::spawn_blocking(move || {
        let (pos, snap, ()) = catalog
            .dump(|_, _| Ok(()))
            .map_err(|e| ApiError::Internal(format!("state store: {e}")))?;
        let state = archive::encode_state(&snap).map_err(|e| ApiError::Internal(e.0))?;
        Ok::<_, ApiError>((pos, state))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("snapshot: {e}")))??;
    let mut meta = Meta::new(pos.index, pos.term, state.len());
    if let Ok(conf) = ctx.consensus.configuration(true).await {
        meta.configuration_index = conf.index;
        meta.configuration.servers = conf
            .servers
            .into_iter()
            .map(|s| ConfigServer {
                suffrage: if s.voter { 0 } else { 1 },
                id: s.id,
                address: s.address,
            })
            .collect();
    }
    let bytes = tokio::task::spawn_blocking(move || archive::write(&meta, &state))
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot: {e}")))?
        .map_err(|e| ApiError::Internal(e.0))?;
    let mut resp = Response::new(Body::from(bytes));
    // What Go's content sniffing names a gzip body, as Consul serves it.
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    set_meta(&mut resp, &ctx, pos.index, opts.consistency);
    Ok(resp)
}

async fn restore(ctx: Ctx) -> ApiResult {
    let body = ctx.body.clone();
    let (verified, snap) = tokio::task::spawn_blocking(move || archive::read(&body))
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot: {e}")))?
        .map_err(|e| ApiError::Internal(e.0))?;
    tracing::info!(
        id = %verified.meta.id,
        from_index = verified.meta.index,
        bytes = verified.state.len(),
        "restoring snapshot"
    );
    drop(verified);
    let (index, resp) = ctx
        .consensus
        .write(Command::Restore(Box::new(snap)))
        .await?;
    match resp {
        CmdResponse::Rejected(why) => Err(ApiError::Internal(why)),
        _ => {
            tracing::info!(index, "restored snapshot");
            Ok(Response::new(Body::empty()))
        }
    }
}
