//! `/v1/event/fire/:name` and `/v1/event/list`: Consul's user events
//! (`agent/event_endpoint.go`).
//!
//! Firing answers with the event as Consul does: its new ID, `Version` 1,
//! `LTime` 0 (the time is stamped when gossip delivers it), the payload
//! base64 or `null`. The payload is the body only when the request says a
//! `Content-Length` above zero, as Consul reads it. Bad filters are 500s
//! with Consul's texts, a refused token is a bare `403 Permission denied`,
//! and serf's size limits are 413s in serf's words (Consul answers them
//! 500).
//!
//! The list is this agent's last 256 accepted events, oldest first, with
//! `?name` matched exactly and the events the token may not read left
//! out. Consul documents `?node`, `?service` and `?tag` for it but never
//! reads them, and neither does cairn. Its index is derived from the last
//! listed event's ID (`uuidToUint64`), so it is not monotonic: a blocking
//! list waits while its `?index` equals the current one.

use super::wire::{set_filtered_by_acls, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Resource};
use crate::events::{id_to_index, UserEvent};
use crate::gossip::user_event::UserEventError;
use axum::http::{header, HeaderValue, StatusCode};
use base64::Engine;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

/// Consul's `UserEvent` as JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct UserEventJson {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    /// Go's `[]byte`: base64, `null` when nil.
    payload: Option<String>,
    node_filter: String,
    service_filter: String,
    tag_filter: String,
    version: u32,
    #[serde(rename = "LTime")]
    ltime: u64,
}

impl From<&UserEvent> for UserEventJson {
    fn from(e: &UserEvent) -> Self {
        UserEventJson {
            id: e.id.clone(),
            name: e.name.clone(),
            payload: e
                .payload
                .as_ref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            node_filter: e.node_filter.clone(),
            service_filter: e.service_filter.clone(),
            tag_filter: e.tag_filter.clone(),
            version: e.version,
            ltime: e.ltime,
        }
    }
}

/// Whether Consul would read the body: only with `Content-Length` > 0
/// (a chunked body is no payload).
fn declared_body(ctx: &Ctx) -> bool {
    ctx.headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// `PUT /v1/event/fire/:name`.
pub async fn fire(ctx: Ctx) -> ApiResult {
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing name"));
    }
    let filter = |key: &str| ctx.query.get(key).unwrap_or_default().to_string();
    let payload = declared_body(&ctx).then(|| ctx.body.to_vec());
    let event = UserEvent::new(
        ctx.rest.clone(),
        payload,
        filter("node"),
        filter("service"),
        filter("tag"),
    );
    event.validate().map_err(ApiError::Internal)?;
    if let Some(dc) = ctx.query.get("dc").filter(|dc| !dc.is_empty()) {
        if dc != ctx.config.datacenter {
            return Err(ApiError::Internal("No path to datacenter".into()));
        }
    }
    // Consul's handler answers every failure of its RPC with a 500, but a
    // permission denial with a bare 403.
    let authz = ctx.authorizer().await.map_err(|e| match e {
        ApiError::Status(_, m) => ApiError::Internal(m),
        e => e,
    })?;
    if !authz.allows(Resource::Event, &event.name, Access::Write) {
        tracing::warn!(event = %event.name, accessor = authz.accessor_id(), "user event blocked by ACLs");
        return Err(ApiError::Status(
            StatusCode::FORBIDDEN,
            "Permission denied".into(),
        ));
    }
    let fired = ctx.events.fire(event).await.map_err(|e| match e {
        // Consul answers these 500; a payload over the limit is the
        // client's to fix, so it is 413 here, with serf's words.
        crate::events::FireError::Gossip(size) if size != UserEventError::Stopped => {
            ApiError::Status(StatusCode::PAYLOAD_TOO_LARGE, size.to_string())
        }
        e => ApiError::Internal(e.to_string()),
    })?;
    Ok(ctx.json(&UserEventJson::from(&fired)))
}

/// Consul's `parseWait`: `?wait` (a Go duration) and `?index`.
fn parse_wait(ctx: &Ctx) -> Result<(u64, Option<Duration>), ApiError> {
    let wait = match ctx.query.get("wait").filter(|w| !w.is_empty()) {
        Some(w) => Some(crate::duration::parse(w).map_err(|_| ApiError::bad("Invalid wait time"))?),
        None => None,
    };
    let index = match ctx.query.get("index").filter(|i| !i.is_empty()) {
        Some(i) => i
            .parse::<u64>()
            .map_err(|_| ApiError::bad("Invalid index"))?,
        None => 0,
    };
    Ok((index, wait))
}

/// `GET /v1/event/list`.
pub async fn list(ctx: Ctx) -> ApiResult {
    let (min_index, wait) = parse_wait(&ctx)?;
    let authz = ctx.authorizer().await?;
    let name = ctx.query.get("name").filter(|n| !n.is_empty());
    // A blocking list waits at most the agent's longest query time, and
    // that long when no wait is given.
    let max = ctx.config.max_query_time;
    let wait = wait.filter(|w| !w.is_zero()).unwrap_or(max).min(max);
    let deadline = Instant::now() + wait;
    let mut changed = ctx.events.subscribe();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        changed.borrow_and_update();
        let mut events = ctx.events.list();
        if let Some(name) = name {
            events.retain(|e| e.name == name);
        }
        let before = events.len();
        events.retain(|e| authz.allows(Resource::Event, &e.name, Access::Read));
        let removed = events.len() != before;
        // Never 0, so that a watch with nothing to list does not spin.
        let index = events
            .last()
            .map(|e| id_to_index(&e.id).unwrap_or(1))
            .unwrap_or(1);
        if min_index > 0 && index == min_index {
            let woke = tokio::select! {
                r = tokio::time::timeout_at(deadline, changed.changed()) => matches!(r, Ok(Ok(()))),
                _ = shutdown.wait_for(|s| *s) => false,
            };
            if woke {
                continue;
            }
        }
        let json: Vec<UserEventJson> = events.iter().map(UserEventJson::from).collect();
        let mut resp = ctx.json(&json);
        if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
            resp.headers_mut().insert("X-Consul-Index", v);
        }
        if removed {
            set_filtered_by_acls(&mut resp, &authz);
        }
        return Ok(resp);
    }
}
