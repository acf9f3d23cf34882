//! `GET /v1/agent/monitor`: the agent's log, streamed as it is written
//! (`src/monitor.rs`), at `?loglevel` (INFO by default), as JSON with
//! `?logjson`. Needs `agent:read` on this agent, as in Consul. The stream
//! has no end of its own: it lasts until the client goes away or the agent
//! stops.

use super::agent::require_agent;
use super::wire::{ApiError, ApiResult, Ctx};
use crate::acl::Access;
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;

pub async fn monitor(ctx: Ctx) -> ApiResult {
    require_agent(&ctx, Access::Read).await?;
    let requested = ctx
        .query
        .get("loglevel")
        .filter(|l| !l.is_empty())
        .unwrap_or("INFO")
        .to_string();
    let Some(level) = crate::monitor::parse_level(&requested) else {
        return Err(ApiError::bad(format!("Unknown log level: {requested}")));
    };
    let json = ctx.query.has("logjson");
    let attached = crate::monitor::attach(level);
    let lines = futures::stream::unfold(attached, move |mut m| async move {
        let record = m.next().await?;
        let mut line = if json {
            record.json.clone()
        } else {
            record.text.clone()
        };
        line.push('\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), m))
    });
    let mut r = Response::new(Body::from_stream(lines));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}
