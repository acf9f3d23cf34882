//! `/v1/acl/*` on a client agent: every request, read or write, is answered
//! by a server, as a Consul client agent sends each one to the servers as
//! an RPC. A client agent has no ACL tables to answer from: its catalog
//! view is never fed tokens, policies or roles (tokens carry secrets), so
//! answering reads locally would give empty lists and "not found".
//!
//! **What crosses the wire.** The client sends the request as its HTTP
//! layer received it, restricted to the ACL routes ([`AclCall`]: method,
//! path, query, body, and the token the request acts with, which is its
//! own or else the client agent's `default` token), and the server runs it
//! through its own router and ACL handlers and sends back the status, the
//! headers and the body ([`AclReply`]), which the client returns as they
//! are. This is a proxy of the HTTP request rather than one typed RPC per
//! endpoint, on purpose:
//!
//! - The answer must be byte-for-byte the server's: the order of Consul's
//!   checks (401, 403, 400 decode errors, 404/500 texts), `<hidden>`
//!   secrets without `acl:write`, blocking queries (`?index=&wait=`), the
//!   consistency modes and `X-Consul-Index`/`KnownLeader`/`LastContact`.
//!   With one implementation (the server's handlers) there is nothing to
//!   drift; a typed request and answer per endpoint (about twenty of them)
//!   would be a second rendering of the same objects on the client, and
//!   the JSON shapes with their optional fields do not survive the RPC
//!   port's bincode anyway, so the answers would travel as JSON bytes all
//!   the same.
//! - Only ACL paths are sent, and a server serves a forwarded call only
//!   when its path is one (anything else is answered 404 as an unknown
//!   path), so this is no general way into a server's HTTP API.
//! - The token is authorized where the ACL tables are: the server resolves
//!   it against its replica and checks what each endpoint needs, exactly
//!   as for the writes client agents forward. The client checks nothing
//!   itself (it could only ask a server anyway).
//!
//! `/v1/snapshot` travels the same way, with ACLs on or off (a client
//! agent has no raft state to save or restore), its archive being the
//! body both ways.
//!
//! A server answers the call against its own replica; writes go through its
//! raft node, which forwards them to the leader with the same token. A
//! blocking query waits on the server, so the call's timeout is the query's
//! wait plus a margin. With ACLs off on the client, its own handlers answer
//! (401 `ACL support disabled`), as a Consul client agent checks that
//! before making the RPC.

use super::wire::{ApiError, Query, ReadOpts};
use super::{Route, Server};
use crate::consensus::api::{AclCall, AclEndpoints, AclReply};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// The path prefix of every endpoint forwarded.
const ACL_PREFIX: &str = "/v1/acl/";
/// `/v1/snapshot` is handed to a server the same way, ACLs on or off: a
/// client agent's view holds neither the ACL tables a snapshot carries nor
/// a raft position to restore at (see `http::snapshot`).
pub(super) const SNAPSHOT_PATH: &str = "/v1/snapshot";

/// `/v1/query` too, ACLs on or off: a prepared query runs on a server, as
/// Consul's client agents send every `PreparedQuery` call to one (their
/// views carry no query tokens to execute with).
const QUERY_PATH: &str = "/v1/query";

fn is_query_path(path: &str) -> bool {
    path == QUERY_PATH || path.starts_with("/v1/query/")
}

/// The datacenter lists, which only servers (in the WAN pool) know, as a
/// Consul client agent asks a server for them.
const DATACENTER_PATHS: [&str; 2] = ["/v1/catalog/datacenters", "/v1/coordinate/datacenters"];

/// Whether a server serves a forwarded call for `path`.
fn forwarded_path(path: &str) -> bool {
    path.starts_with(ACL_PREFIX)
        || path == SNAPSHOT_PATH
        || is_query_path(path)
        || DATACENTER_PATHS.contains(&path)
}

/// Headers that describe this connection or the body's framing: the
/// receiving side sets its own.
const HOP_HEADERS: [HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// Beyond a blocking query's wait: the server's reply, and the time to
/// reach it.
const CALL_MARGIN: Duration = Duration::from_secs(15);

/// Largest answer body a server returns (ACL lists of very many tokens
/// stay far below it; a snapshot archive may come close; the RPC frame
/// limit is larger).
const MAX_REPLY: usize = 56 * 1024 * 1024;

/// Whether this agent hands `route` to a server: a client agent with ACLs
/// on, for every `/v1/acl/*` route; any client agent for `/v1/snapshot`.
pub(super) fn forwards(server: &Server, route: &Route) -> bool {
    if server.api.config.server {
        return false;
    }
    (route.pattern.starts_with(ACL_PREFIX) && server.api.acl.enabled())
        || route.pattern == SNAPSHOT_PATH
        || is_query_path(route.pattern)
        || DATACENTER_PATHS.contains(&route.pattern)
}

/// Has a server answer the request and returns its answer.
pub(super) async fn forward(server: &Server, call: AclCall) -> Result<Response, ApiError> {
    let query = Query::parse(call.query.as_deref());
    let timeout = match ReadOpts::parse(&query, &server.api.config) {
        // Consul adds up to wait/16 of jitter to a blocking query.
        Ok(opts) if opts.index > 0 => opts.wait + opts.wait / 16 + CALL_MARGIN,
        _ => CALL_MARGIN,
    };
    let reply = server.api.consensus.forward_acl(call, timeout).await?;
    Ok(into_response(reply))
}

pub(super) fn into_response(reply: AclReply) -> Response {
    let mut resp = Response::new(Body::from(reply.body));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = resp.headers_mut();
    for (name, value) in reply.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) else {
            continue;
        };
        if !HOP_HEADERS.contains(&name) {
            headers.append(name, value);
        }
    }
    resp
}

/// A server's ACL endpoints, answering the calls client agents forward
/// ([`crate::raft::RaftNode::set_acl_endpoints`]).
pub struct Endpoints {
    pub(super) server: Arc<Server>,
}

impl AclEndpoints for Endpoints {
    fn serve(&self, call: AclCall) -> BoxFuture<'static, AclReply> {
        let server = self.server.clone();
        Box::pin(async move { serve(&server, call).await })
    }

    fn serve_datacenter(&self, call: AclCall, hops: u8) -> BoxFuture<'static, AclReply> {
        let server = self.server.clone();
        Box::pin(async move {
            let forwardable = server
                .find(&call.path)
                .is_some_and(|r| super::datacenter::takes_dc(r.pattern));
            if !forwardable {
                return super::datacenter::error_reply(
                    404,
                    "Invalid URL path: not a recognized HTTP API endpoint",
                );
            }
            match build_request(call) {
                Ok(mut req) => {
                    req.extensions_mut().insert(super::datacenter::Hops(hops));
                    answer(super::route_request(&server, req).await.1).await
                }
                Err(e) => answer(e.into_response()).await,
            }
        })
    }
}

async fn serve(server: &Server, call: AclCall) -> AclReply {
    let resp = match request_of(call) {
        Ok(req) => super::route_request(server, req).await.1,
        Err(e) => e.into_response(),
    };
    answer(resp).await
}

/// An answer as it travels back.
async fn answer(resp: Response) -> AclReply {
    let (parts, body) = resp.into_parts();
    let body = match axum::body::to_bytes(body, MAX_REPLY).await {
        Ok(b) => b,
        Err(e) => {
            return AclReply {
                status: 500,
                headers: Vec::new(),
                body: format!("reading the ACL answer: {e}").into_bytes(),
            }
        }
    };
    AclReply {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| !HOP_HEADERS.contains(name))
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
    }
}

/// The HTTP request a forwarded call stands for; only ACL and snapshot paths.
fn request_of(call: AclCall) -> Result<Request, ApiError> {
    if !forwarded_path(&call.path) {
        return Err(ApiError::NotFound(
            "Invalid URL path: not a recognized HTTP API endpoint".into(),
        ));
    }
    build_request(call)
}

/// The HTTP request a forwarded call stands for.
fn build_request(call: AclCall) -> Result<Request, ApiError> {
    let uri = match &call.query {
        Some(q) => format!("{}?{q}", call.path),
        None => call.path.clone(),
    };
    let mut builder = Request::builder().method(call.method.as_str()).uri(uri);
    if let Some(token) = &call.token {
        builder = builder.header("X-Consul-Token", token);
    }
    builder
        .body(Body::from(Bytes::from(call.body)))
        .map_err(|e| ApiError::bad(format!("Invalid forwarded request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_acl_paths_are_served() {
        let call = |path: &str| AclCall {
            method: "GET".into(),
            path: path.into(),
            query: None,
            token: None,
            body: Vec::new(),
        };
        assert!(request_of(call("/v1/acl/tokens")).is_ok());
        assert!(request_of(call("/v1/snapshot")).is_ok());
        for path in [
            "/v1/kv/x",
            "/v1/acl",
            "/v1/agent/token/default",
            "/",
            "/v1/snapshots",
        ] {
            let err = request_of(call(path)).expect_err(path);
            assert_eq!(err.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn replies_keep_their_headers_but_not_the_framing() {
        let resp = into_response(AclReply {
            status: 403,
            headers: vec![
                ("x-consul-index".into(), b"42".to_vec()),
                ("content-length".into(), b"999".to_vec()),
                ("content-type".into(), b"text/plain".to_vec()),
            ],
            body: b"ACL not found".to_vec(),
        });
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(resp.headers()["x-consul-index"], "42");
        assert_eq!(resp.headers()["content-type"], "text/plain");
        assert!(resp.headers().get("content-length").is_none());
    }
}
