//! Consul's HTTP wire conventions in one place: how errors become status
//! codes and plain-text bodies, how JSON is rendered (`?pretty`, Go's HTML
//! escaping), the query-string grammar (presence flags, Go durations), and
//! the `X-Consul-*` headers every read carries.

use crate::acl::{Access, Authorizer, Global, Resource};
use crate::agent::{Agent, AgentError};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::consensus::Consensus;
use crate::consensus::ConsensusError;
use crate::gossip::Gossip;
use crate::metrics::Metrics;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Every way a request can fail, with the status Consul uses for it. The
/// body is always the plain-text reason.
#[derive(Debug)]
pub enum ApiError {
    /// 400.
    BadRequest(String),
    /// 404.
    NotFound(String),
    /// 500: RPC and internal errors (`No cluster leader`, ...).
    Internal(String),
    /// Any other status with a text body (413, 415, ...).
    Status(StatusCode, String),
    /// 405 with `Allow: OPTIONS,<methods>`.
    MethodNotAllowed { method: String, allow: String },
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError::BadRequest(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Status(code, _) => *code,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Invalid(m) => ApiError::BadRequest(m),
            AgentError::NotFound(m) => ApiError::NotFound(m),
            AgentError::Internal(m) => ApiError::Internal(m),
            AgentError::Write(w) => w.into(),
        }
    }
}

/// Every consensus failure is a 500 with Consul's text, as its RPC errors are.
impl From<ConsensusError> for ApiError {
    fn from(e: ConsensusError) -> Self {
        match e {
            ConsensusError::AclDenied(m) => ApiError::Status(StatusCode::FORBIDDEN, m),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// Consul answers a filter it cannot create with a 500 (hashicorp/consul#7338).
impl From<crate::filter::FilterError> for ApiError {
    fn from(e: crate::filter::FilterError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::filter::EvaluateError> for ApiError {
    fn from(e: crate::filter::EvaluateError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<heed::Error> for ApiError {
    fn from(e: heed::Error) -> Self {
        ApiError::Internal(format!("state store: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (body, allow) = match self {
            ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::Internal(m)
            | ApiError::Status(_, m) => (m, None),
            ApiError::MethodNotAllowed { method, allow } => {
                (format!("method {method} not allowed"), Some(allow))
            }
        };
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(allow) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            h.insert(header::ALLOW, allow);
        }
        resp
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// The parsed query string, in order, with repeats kept.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((form_decode(k), form_decode(v)));
        }
        Query { pairs }
    }

    /// Presence, as Consul's flags (`?recurse`, `?stale`, ...) are tested.
    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// First value (Go's `Values.Get`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Go's `Values.Encode()`: sorted by key, form-encoded.
    pub fn encode(&self) -> String {
        let mut pairs = self.pairs.clone();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// A `uint64` parameter; `None` when absent. Errors carry Go's strconv text.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("strconv.ParseUint: parsing {v:?}: invalid syntax")),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes; malformed escapes are kept literally.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_decode(s: &str) -> String {
    percent_decode(s, true)
}

fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// What the HTTP API is given: a handle per concern, never the agent's
/// insides.
#[derive(Clone)]
pub struct Api {
    /// This agent's own services and checks, and its identity.
    pub agent: Arc<Agent>,
    /// The catalog reads are answered from (a server's replica or a client
    /// agent's view).
    pub catalog: Arc<Catalog>,
    pub consensus: Consensus,
    pub gossip: Gossip,
    pub config: Arc<Config>,
    pub metrics: Metrics,
    /// Token resolution (ACLs).
    pub acl: crate::acl::Resolver,
    /// User events: firing, and the ones this agent accepted.
    pub events: crate::events::Events,
    /// The other datacenters, and requests for them.
    pub federation: Arc<crate::federation::Federation>,
    /// ACL replication from the primary datacenter (secondary servers).
    pub acl_replication: Arc<crate::acl::replication::Status>,
}

/// One request as handlers see it; the handles are reached through it
/// (`ctx.catalog`, `ctx.consensus`, ...).
pub struct Ctx {
    pub api: Api,
    /// Turns true when the agent shuts down: blocking queries return.
    pub shutdown: watch::Receiver<bool>,
    pub method: Method,
    /// The decoded path after the route's prefix (the key, the service ID, ...).
    pub rest: String,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The path and query as received, for forwarding the request to
    /// another datacenter.
    pub raw_path: String,
    pub raw_query: Option<String>,
    /// How many datacenter forwards brought this request here.
    pub hops: u8,
}

impl std::ops::Deref for Ctx {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Ctx {
    /// Consul pretty-prints with `?pretty`, and always in `-dev` mode.
    pub fn pretty(&self) -> bool {
        self.query.has("pretty") || self.config.dev
    }

    /// Renders `value` as Consul does: `application/json`, Go's escaping,
    /// 4-space indentation and a trailing newline when pretty.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Response {
        json_response(value, self.pretty())
    }

    /// `?filter` for a list of `subject`s, created before any read so a
    /// bad one fails at once (also under `?index`).
    pub fn filter(
        &self,
        subject: crate::filter::Subject,
    ) -> Result<crate::filter::Filter, ApiError> {
        Ok(crate::filter::Filter::new(
            self.query.get("filter"),
            subject,
        )?)
    }

    /// Parses the consistency and blocking parameters every RPC-backed
    /// endpoint accepts.
    pub fn read_opts(&self) -> Result<ReadOpts, ApiError> {
        ReadOpts::parse(&self.query, &self.config)
    }

    /// What this request's token may do: the token from `?token=`,
    /// `X-Consul-Token`, `Authorization: Bearer`, else the agent's
    /// `default` token, else anonymous. Unknown or expired → 403 `ACL not
    /// found`. ACLs off → [`Authorizer::allow_all`].
    pub async fn authorizer(&self) -> Result<crate::acl::Authorizer, ApiError> {
        if !self.acl.enabled() {
            return Ok(crate::acl::Authorizer::allow_all());
        }
        let secret = self.token();
        self.acl.resolve(secret).await.map_err(|e| match e {
            crate::acl::ResolveError::NotFound => crate::acl::not_found(),
            crate::acl::ResolveError::Unavailable(m) => ApiError::Internal(m),
        })
    }

    /// The request's own token, in Consul's order [agent/http.go
    /// parseTokenInternal]: `?token=`, `X-Consul-Token`, then
    /// `Authorization: Bearer`. Empty values count as absent.
    pub fn token(&self) -> Option<&str> {
        if let Some(t) = self.query.get("token").filter(|t| !t.is_empty()) {
            return Some(t);
        }
        if let Some(t) = self
            .headers
            .get("X-Consul-Token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
        {
            return Some(t);
        }
        let auth = self.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, rest) = auth.trim().split_once(' ')?;
        let rest = rest.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty()).then_some(rest)
    }
}

pub fn json_response<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Response {
    let mut buf = Vec::new();
    let res = if pretty {
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        value.serialize(&mut ser)
    } else {
        let mut ser = serde_json::Serializer::new(&mut buf);
        value.serialize(&mut ser)
    };
    if let Err(e) = res {
        return ApiError::Internal(format!("failed to encode response: {e}")).into_response();
    }
    if pretty {
        buf.push(b'\n');
    }
    let body = go_html_escape(buf);
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Go's encoding/json escapes `<`, `>`, `&`, U+2028 and U+2029 inside
/// strings. Outside strings those characters cannot occur in JSON, so a
/// byte-level pass over the output is exact.
pub(crate) fn go_html_escape(buf: Vec<u8>) -> Vec<u8> {
    let needs = buf.iter().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2));
    if !needs {
        return buf;
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 if i + 2 < buf.len()
                && buf[i + 1] == 0x80
                && (buf[i + 2] == 0xA8 || buf[i + 2] == 0xA9) =>
            {
                out.extend_from_slice(if buf[i + 2] == 0xA8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// 200 with an empty body: agent writes return nothing.
pub fn empty_ok() -> Response {
    Response::new(Body::empty())
}

/// Consistency mode of a read, echoed in `X-Consul-Effective-Consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Leader,
    Stale,
    Consistent,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Leader => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// The query options of RPC-backed endpoints (`agent/http.go parse()`).
#[derive(Debug, Clone, Copy)]
pub struct ReadOpts {
    pub consistency: Consistency,
    /// `?index=`; 0 = do not block.
    pub index: u64,
    /// Effective wait for a blocking query (default and cap from config).
    pub wait: Duration,
}

impl ReadOpts {
    pub fn parse(q: &Query, config: &Config) -> Result<ReadOpts, ApiError> {
        // Requests for another datacenter are forwarded before any handler
        // runs (`http::datacenter`); one that reaches here has no path.
        if let Some(dc) = q.get("dc").filter(|dc| !dc.is_empty()) {
            if dc != config.datacenter {
                return Err(ApiError::Internal("No path to datacenter".into()));
            }
        }
        ReadOpts::parse_any_dc(q, config)
    }

    /// [`ReadOpts::parse`] without the datacenter check: the options as a
    /// request forwarded to another datacenter carries them.
    pub fn parse_any_dc(q: &Query, config: &Config) -> Result<ReadOpts, ApiError> {
        let stale = q.has("stale");
        let consistent = q.has("consistent");
        if stale && consistent {
            return Err(ApiError::bad(
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ));
        }
        let mut wait = config.default_query_time;
        if let Some(w) = q.get("wait").filter(|w| !w.is_empty()) {
            let d = crate::duration::parse(w).map_err(|_| ApiError::bad("Invalid wait time"))?;
            if !d.is_zero() {
                wait = d;
            }
        }
        if wait > config.max_query_time {
            wait = config.max_query_time;
        }
        let index = match q.get("index").filter(|i| !i.is_empty()) {
            Some(i) => i
                .parse::<u64>()
                .map_err(|_| ApiError::bad("Invalid index"))?,
            None => 0,
        };
        if let Some(ms) = q.get("max_stale").filter(|w| !w.is_empty()) {
            crate::duration::parse(ms).map_err(|_| ApiError::bad("Invalid max_stale value"))?;
        }
        let consistency = if stale {
            Consistency::Stale
        } else if consistent {
            Consistency::Consistent
        } else {
            Consistency::Leader
        };
        Ok(ReadOpts {
            consistency,
            index,
            wait,
        })
    }
}

/// Adds the headers of an RPC-backed read: index (never 0), leader
/// knowledge, last contact and effective consistency.
pub fn set_meta(resp: &mut Response, ctx: &Ctx, index: u64, consistency: Consistency) {
    let h = resp.headers_mut();
    let index = index.max(1);
    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
        h.insert("X-Consul-Index", v);
    }
    let contact = ctx.consensus.contact();
    h.insert(
        "X-Consul-KnownLeader",
        HeaderValue::from_static(if contact.known_leader {
            "true"
        } else {
            "false"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&contact.last_contact_ms.to_string()) {
        h.insert("X-Consul-LastContact", v);
    }
    h.insert(
        "X-Consul-Effective-Consistency",
        HeaderValue::from_static(consistency.as_str()),
    );
}

/// Header added to every response of a registered endpoint: the agent's
/// `acl.default_policy` (`allow` while ACLs are off, as in Consul).
pub fn set_acl_policy(resp: &mut Response, acl: &crate::acl::Resolver) {
    resp.headers_mut().insert(
        "X-Consul-Default-ACL-Policy",
        HeaderValue::from_static(if acl.default_allow() { "allow" } else { "deny" }),
    );
}

/// The accessor of the anonymous token, which a request without a token
/// resolves to.
const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";

/// Marks a response whose list lost items the token cannot read, as
/// Consul's `X-Consul-Results-Filtered-By-ACLs: true`. Consul blanks the
/// flag for unauthenticated requests (`maskResultsFilteredByACLs`), so
/// that an anonymous caller cannot probe which hidden objects exist.
pub fn set_filtered_by_acls(resp: &mut Response, authz: &Authorizer) {
    if authz.accessor_id() == ANONYMOUS_ACCESSOR {
        return;
    }
    resp.headers_mut().insert(
        "X-Consul-Results-Filtered-By-ACLs",
        HeaderValue::from_static("true"),
    );
}

/// `access` on the named resource, or Consul's 403 naming what is missing.
/// The permission text is built only for a denial, so an allowed request
/// (and every request with ACLs off) allocates nothing here.
pub fn require(
    authz: &Authorizer,
    resource: Resource,
    name: &str,
    access: Access,
) -> Result<(), ApiError> {
    if authz.allows(resource, name, access) {
        return Ok(());
    }
    let permission = format!("{}:{}", resource.word(), access.word());
    Err(crate::acl::denied(authz, &permission, name))
}

/// `access` on a resource without names (`operator`, `keyring`, `acl`);
/// Consul's denial then has no ` on "..."` part.
pub fn require_global(authz: &Authorizer, global: Global, access: Access) -> Result<(), ApiError> {
    if authz.allows_global(global, access) {
        return Ok(());
    }
    let permission = format!("{}:{}", global.word(), access.word());
    Err(crate::acl::denied(authz, &permission, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags_and_values() {
        let q = Query::parse(Some("recurse&tag=a&tag=b%20c&sep=%2F&x=1+2"));
        assert!(q.has("recurse"));
        assert_eq!(q.get("recurse"), Some(""));
        assert_eq!(q.all("tag"), vec!["a".to_string(), "b c".to_string()]);
        assert_eq!(q.get("sep"), Some("/"));
        assert_eq!(q.get("x"), Some("1 2"));
        assert_eq!(q.encode(), "recurse=&sep=%2F&tag=a&tag=b+c&x=1+2");
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb", false), "a/b");
        assert_eq!(percent_decode("a%zz", false), "a%zz");
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }

    #[test]
    fn go_escaping() {
        let out = go_html_escape(br#"{"a":"<b>&"}"#.to_vec());
        assert_eq!(out, br#"{"a":"\u003cb\u003e\u0026"}"#.to_vec());
    }

    async fn body_of(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn json_is_compact_or_four_space_pretty() {
        let v = serde_json::json!({"A": [1], "B": {}});
        let compact = json_response(&v, false);
        assert_eq!(compact.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body_of(compact).await, r#"{"A":[1],"B":{}}"#);
        let pretty = body_of(json_response(&v, true)).await;
        assert_eq!(
            pretty,
            "{\n    \"A\": [\n        1\n    ],\n    \"B\": {}\n}\n"
        );
    }

    #[tokio::test]
    async fn errors_are_plain_text_with_allow_on_405() {
        let r = ApiError::MethodNotAllowed {
            method: "GET".into(),
            allow: "OPTIONS,PUT".into(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "OPTIONS,PUT");
        assert_eq!(body_of(r).await, "method GET not allowed");
        let r = ApiError::from(AgentError::NotFound("gone".into())).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_of(r).await, "gone");
        let r = ApiError::from(ConsensusError::NoLeader).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_of(r).await, "No cluster leader");
    }

    #[test]
    fn parse_bool_is_strconv() {
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
